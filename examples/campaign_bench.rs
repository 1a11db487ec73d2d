//! The campaign benchmark: the `leadgate` server as a child, a real SMTP server
//! (`leadgate::mail::sink`) in this process, and four scenarios — activating a campaign over a
//! large segment, sending through pooled SMTP connections with throttles off, a per-mailbox
//! daily cap under load, and the scheduler's memory at 10k and at 1M scheduled steps. See
//! bench/campaigns.sh.
//!
//! It talks to leadgate as an operator and a client would: the CLI (`workspace`, `seed`,
//! `token`, `campaigns run-due`), HTTP (`/graphql`, `/readyz`) and `/proc` for memory.

mod common;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use common::{Leadgate, Row, Server, markdown, psql, round1, round2, row, status_mb, table};
use leadgate::mail::sink::Sink;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const JWT_SECRET: &str = "leadgate-bench-only-secret-0123456789abcdefghijk";
const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";
/// A scenario gives up when nothing moves for this long.
const STALL: Duration = Duration::from_secs(120);

const CREATE: &str = "mutation($input: CreateCampaignInput!) { createCampaign(input: $input) { \
     campaign { id } userErrors { field message } } }";
const ACTIVATE: &str =
    "mutation($id: ID!) { activateCampaign(input: {id: $id}) { enrolled userErrors { message } } }";
const STATS: &str = "query($id: ID!) { node(id: $id) { ... on Campaign { stats { enrolled sent active exited \
     unconfirmed rejected } } } }";

#[derive(Parser, Debug)]
#[command(about = "Benchmarks leadgate's campaigns against a local SMTP server")]
struct Args {
    #[arg(long, value_enum, default_value_t = Backend::Sqlite)]
    backend: Backend,
    /// Leads in the segment of the activation scenario.
    #[arg(long, default_value_t = 100_000)]
    activate_leads: u64,
    /// Leads mailed in the throughput scenario.
    #[arg(long, default_value_t = 20_000)]
    send_leads: u64,
    /// Leads and the per-mailbox daily cap of the cap scenario.
    #[arg(long, default_value_t = 3_000)]
    cap_leads: u64,
    #[arg(long, default_value_t = 1_000)]
    cap: u64,
    /// Scheduled steps of the two memory runs.
    #[arg(long, value_delimiter = ',', default_value = "10000,1000000")]
    rss_steps: Vec<u64>,
    /// Batches of 100 steps `campaigns run-due` runs in each memory run.
    #[arg(long, default_value_t = 50)]
    rss_batches: u32,
    /// Smaller sizes for a development run (explicit sizes still win).
    #[arg(long)]
    quick: bool,
    /// The leadgate binary (default: $CARGO_TARGET_DIR or target, then release/leadgate).
    #[arg(long)]
    bin: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database named after `name` and the CLI on it.
async fn fresh_db(backend: Backend, bin: &Path, results: &Path, name: &str) -> anyhow::Result<Leadgate> {
    let database_url = match backend {
        Backend::Sqlite => {
            let file = results.join(format!("{name}.sqlite"));
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
            format!("sqlite://{}", file.display())
        }
        Backend::Postgres => {
            let db = format!("leadgate_bench_{name}");
            psql(PG_SERVER, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await?;
            psql(PG_SERVER, &format!("CREATE DATABASE {db}")).await?;
            format!("{PG_SERVER}/{db}")
        }
    };
    Ok(Leadgate {
        bin: bin.to_path_buf(),
        results: results.to_path_buf(),
        database_url,
        jwt_secret: JWT_SECRET,
        server_env: Vec::new(),
    })
}

/// A workspace with `leads` synthetic leads.
async fn seeded(db: &Leadgate, slug: &str, leads: u64) -> anyhow::Result<()> {
    db.run(&["workspace", "create", slug]).await?;
    db.run(&[
        "seed",
        "--workspace",
        slug,
        "--leads",
        &leads.to_string(),
        "--seed",
        "7",
    ])
    .await?;
    Ok(())
}

/// An admin token of a workspace.
async fn admin_token(db: &Leadgate, slug: &str) -> anyhow::Result<String> {
    let token = db.run(&["token", "--workspace", slug, "--role", "admin"]).await?;
    Ok(token.trim().to_owned())
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn gql(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let body: Value = self
            .http
            .post(format!("{}/graphql", self.base))
            .bearer_auth(&self.token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await?
            .json()
            .await?;
        if let Some(errors) = body.get("errors") {
            bail!("GraphQL errors: {errors}");
        }
        Ok(body["data"].clone())
    }

    async fn create(&self, input: Value) -> anyhow::Result<String> {
        let data = self.gql(CREATE, json!({"input": input})).await?;
        let errors = &data["createCampaign"]["userErrors"];
        if errors.as_array().is_some_and(|e| !e.is_empty()) {
            bail!("createCampaign: {errors}");
        }
        Ok(data["createCampaign"]["campaign"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    async fn stats(&self, id: &str) -> anyhow::Result<Value> {
        Ok(self.gql(STATS, json!({"id": id})).await?["node"]["stats"].clone())
    }
}

/// `leadgate serve` sending to `sink`, with or without its workers.
async fn start_server(db: &Leadgate, sink: &Sink, log: &Path, workers: bool) -> anyhow::Result<Server> {
    let env = [
        ("LEADGATE_SMTP_URL", sink.url()),
        ("LEADGATE_PUBLIC_URL", "http://127.0.0.1:9".to_owned()),
        ("LEADGATE_WORKERS", workers.to_string()),
    ];
    db.serve(&env, log).await
}

fn campaign(name: &str, first_step: Value, throttles: Value) -> Value {
    json!({
        "name": name,
        "segment": {"filter": {"hasEmail": true}},
        "senders": ["Bench <bench@example.com>"],
        "throttles": throttles,
        "steps": [first_step, {"wait": {"duration": "P1D"}}]
    })
}

fn email_step() -> Value {
    json!({"email": {"subject": "Hello {{ firstName | default('there') }}",
                     "body": "Hello {{ firstName | default('there') }} at {{ companyName | default('your company') }},\nunsubscribe: {{ unsubscribeUrl }}\n"}})
}

/// Waits until `done` holds, polling every 200 ms; fails after `STALL` without progress.
async fn wait_progress<F, Fut>(what: &str, mut probe: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(u64, bool)>>,
{
    let mut last = (0, Instant::now());
    loop {
        let (n, done) = probe().await?;
        if done {
            return Ok(());
        }
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > STALL {
            bail!("{what}: no progress for {} s at {n}", STALL.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Peak RSS (MB) of a `campaigns run-due` process over `db`, and what it printed.
async fn run_due_rss(db: &Leadgate, batches: u32) -> anyhow::Result<(f64, String, f64)> {
    let mut cmd = db.leadgate();
    let started = Instant::now();
    let mut child = cmd
        .args(["campaigns", "run-due", "--max-batches", &batches.to_string()])
        .env(
            "LEADGATE_MAIL_FOLDER",
            std::env::temp_dir().join("leadgate-bench-outbox"),
        )
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id().context("pid")?;
    let mut peak: f64 = 0.0;
    loop {
        peak = peak.max(status_mb(pid, "VmHWM:"));
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("campaigns run-due failed");
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        use tokio::io::AsyncReadExt;
        stdout.read_to_string(&mut out).await?;
    }
    Ok((peak, out.lines().last().unwrap_or_default().to_owned(), secs))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.activate_leads = args.activate_leads.min(10_000);
        args.send_leads = args.send_leads.min(2_000);
        args.rss_steps = vec![1_000, 20_000];
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let results = root.join("bench/results");
    std::fs::create_dir_all(&results)?;
    let bin = args.bin.clone().unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root.join("target"), PathBuf::from)
            .join("release/leadgate")
    });
    if !bin.exists() {
        bail!("no leadgate binary at {}", bin.display());
    }
    let backend = match args.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let git = std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!(
        "Campaign benchmark on {backend}: leadgate {git}, {cpus} CPUs shared by the server, the SMTP sink and \
         this program; nothing pinned."
    );
    let mut rows: Vec<Row> = Vec::new();
    let mut record = json!({"backend": backend, "git": git, "cpus": cpus, "args": format!("{args:?}")});

    // 1-3. one server over one database with three workspaces
    let db = fresh_db(args.backend, &bin, &results, "campaigns").await?;
    let seed_started = Instant::now();
    seeded(&db, "activate", args.activate_leads).await?;
    seeded(&db, "send", args.send_leads).await?;
    seeded(&db, "cap", args.cap_leads).await?;
    println!("seeded in {:.1} s", seed_started.elapsed().as_secs_f64());
    let sink = Sink::start().await;
    let log = results.join(format!("{stamp}-campaigns-server.log"));
    let server = start_server(&db, &sink, &log, true).await?;
    let client_for = |slug: &'static str| {
        let db = &db;
        let base = server.base.clone();
        async move {
            anyhow::Ok(Client {
                http: reqwest::Client::new(),
                base,
                token: admin_token(db, slug).await?,
            })
        }
    };

    // 1. activation over the whole segment; its steps are due only at its start, a week from
    // now, so that they do not compete with the next scenarios
    let c = client_for("activate").await?;
    let mut input = campaign("activate", json!({"wait": {"duration": "P7D"}}), json!({}));
    input["schedule"] = json!({"start": (chrono::Utc::now() + chrono::TimeDelta::days(7)).to_rfc3339()});
    let id = c.create(input).await?;
    let started = Instant::now();
    let data = c.gql(ACTIVATE, json!({"id": id})).await?;
    let activate_s = started.elapsed().as_secs_f64();
    let enrolled = data["activateCampaign"]["enrolled"].as_u64().unwrap_or(0);
    println!("activation: {enrolled} enrolled in {activate_s:.2} s");
    rows.push(row(
        "activate",
        &format!("activateCampaign over {} leads with email", enrolled),
        format!("{} s", round2(activate_s)),
        "≤ 10 s",
        Some(activate_s <= 10.0),
    ));
    record["activate"] = json!({"enrolled": enrolled, "seconds": activate_s});

    // 2. throughput: every lead with an email gets one message, throttles off
    let c = client_for("send").await?;
    let id = c.create(campaign("send", email_step(), json!({}))).await?;
    sink.clear();
    let started = Instant::now();
    let data = c.gql(ACTIVATE, json!({"id": id})).await?;
    let to_send = data["activateCampaign"]["enrolled"].as_u64().unwrap_or(0);
    wait_progress("throughput", || {
        let n = sink.messages().len() as u64;
        async move { Ok((n, n >= to_send)) }
    })
    .await?;
    let send_s = started.elapsed().as_secs_f64();
    let rate = to_send as f64 / send_s;
    let stats = c.stats(&id).await?;
    let connections = sink.connections_opened();
    println!(
        "throughput: {to_send} emails in {send_s:.2} s = {rate:.0}/s over {connections} SMTP connections"
    );
    rows.push(row(
        "send",
        &format!("{to_send} emails, activation to the last one at the sink"),
        format!("{} emails/s", round1(rate)),
        "≥ 500/s",
        Some(rate >= 500.0),
    ));
    rows.push(row(
        "send",
        "SMTP connections opened (pool of 8)",
        connections.to_string(),
        "≤ 8",
        Some(connections <= 8),
    ));
    record["send"] = json!({"emails": to_send, "seconds": send_s, "per_second": rate,
                             "connections": connections, "stats": stats});

    // 3. a per-mailbox daily cap under load: never more than the cap
    let c = client_for("cap").await?;
    let id = c
        .create(campaign("cap", email_step(), json!({"perMailboxDay": args.cap})))
        .await?;
    sink.clear();
    c.gql(ACTIVATE, json!({"id": id})).await?;
    // the cap is reached, and the scheduler then goes round the rest without sending
    let mut settled = 0;
    wait_progress("cap", || {
        let n = sink.messages().len() as u64;
        if n >= args.cap {
            settled += 1;
        }
        async move { Ok((n, n >= args.cap && settled > 25)) }
    })
    .await?;
    let sent = sink.messages().len() as u64;
    let stats = c.stats(&id).await?;
    println!("cap: {sent} sent under a cap of {} ({stats})", args.cap);
    rows.push(row(
        "cap",
        &format!(
            "sent of {} leads under perMailboxDay = {}, 5 s after the cap",
            args.cap_leads, args.cap
        ),
        sent.to_string(),
        &format!("= {}", args.cap),
        Some(sent == args.cap),
    ));
    record["cap"] = json!({"sent": sent, "cap": args.cap, "stats": stats});
    server.stop().await;

    // 4. the scheduler's memory does not grow with the steps it has scheduled
    let mut peaks = Vec::new();
    for &n in &args.rss_steps {
        let db = fresh_db(args.backend, &bin, &results, &format!("campaigns_rss_{n}")).await?;
        seeded(&db, "rss", n).await?;
        let log = results.join(format!("{stamp}-campaigns-rss-{n}.log"));
        // no workers: only run-due works the steps
        let server = start_server(&db, &sink, &log, false).await?;
        let c = Client {
            http: reqwest::Client::new(),
            base: server.base.clone(),
            token: admin_token(&db, "rss").await?,
        };
        let mut input = campaign("rss", json!({"wait": {"duration": "PT1S"}}), json!({}));
        input["segment"] = json!({"filter": {}});
        let id = c.create(input).await?;
        let data = c.gql(ACTIVATE, json!({"id": id})).await?;
        let scheduled = data["activateCampaign"]["enrolled"].as_u64().unwrap_or(0);
        server.stop().await;
        let (peak, said, secs) = run_due_rss(&db, args.rss_batches).await?;
        println!("memory: {scheduled} scheduled steps, run-due peak RSS {peak} MB in {secs:.1} s ({said})");
        peaks.push((scheduled, peak, secs, said));
    }
    if let (Some(small), Some(large)) = (peaks.first(), peaks.last()) {
        let ratio = large.1 / small.1.max(0.1);
        rows.push(row(
            "memory",
            &format!(
                "run-due peak RSS, {} vs {} scheduled steps ({} steps run each)",
                large.0,
                small.0,
                args.rss_batches * 100
            ),
            format!("{} MB vs {} MB = {}×", large.1, small.1, round2(ratio)),
            "≤ 1.2×",
            Some(ratio <= 1.2),
        ));
    }
    record["memory"] = json!(
        peaks
            .iter()
            .map(|(n, mb, s, said)| json!({"scheduled": n, "peak_rss_mb": mb, "seconds": s, "output": said}))
            .collect::<Vec<_>>()
    );

    println!("\n{}", table(&rows));
    println!("{}", markdown(&rows));
    let out = results.join(format!("{stamp}-campaigns-{backend}.json"));
    std::fs::write(&out, serde_json::to_string_pretty(&record)?)?;
    println!("results: {}", out.display());
    Ok(())
}
