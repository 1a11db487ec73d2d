//! The soak benchmark (`bench/soak.sh`): two release servers on one database and one Redis
//! (shared rate limits at a limit never reached, the shared enrichment cache, persisted
//! queries), driven by a mixed load for `--duration` seconds at `--load` of the capacity the
//! same mix reached in a closed-loop probe just before. The mix, per operation: a page of 20
//! leads (55 %), one lead with enrichment through the sandbox provider (15 %, a cold lead
//! about every other time, since created leads join the pool), `updateLead` (20 %) and
//! `createLead` (10 %), spread evenly over both instances; beside it `--subscribers` WebSocket
//! clients (half per instance, the two subprotocols alternating) hold `leadChanged` and count
//! the events they are sent. They connect before the probe, so the capacity is that of the
//! whole mix, subscription fan-out included.
//!
//! The soak is open loop: operation k is due at start + k / rate, and its latency runs from
//! when it was due (so a stall shows as latency instead of hiding as fewer requests). Each
//! minute gets its own count, errors and p50/p99, and both servers' RSS is read at its end.
//! Figures: errors (HTTP status other than 200, GraphQL errors, user errors, a subscription
//! that ends or errs, operations dropped because too many were outstanding), the p99 drift
//! (last minute vs the first minute after `--warmup` seconds) and the RSS growth (both
//! servers' RSS at the end vs after the warm-up). Printed and written to
//! bench/results/<stamp>-soak-<backend>.json; nothing is asserted.

mod common;

use anyhow::{Context as _, bail};
use clap::Parser;
use common::{Leadgate, Server, round1, row, status_mb, table};
use futures_util::{SinkExt, StreamExt};
use rand::Rng as _;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const JWT_SECRET: &str = "soak-benchmark-secret-that-is-long-enough-0123456789";
const WORKSPACE: &str = "bench";
/// Operations allowed in flight before a due one is dropped (and counted as an error).
const MAX_OUTSTANDING: usize = 2000;

#[derive(Parser)]
struct Args {
    /// The leadgate binary (default: target/release/leadgate).
    #[arg(long)]
    bin: Option<PathBuf>,
    #[arg(long, default_value = "postgres")]
    backend: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Seconds of soak.
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Seconds excluded at the start of the soak before the first minute counts.
    #[arg(long, default_value_t = 30)]
    warmup: u64,
    /// Seconds of the closed-loop capacity probe.
    #[arg(long, default_value_t = 30)]
    probe: u64,
    /// Closed-loop clients of the probe.
    #[arg(long, default_value_t = 16)]
    probe_clients: usize,
    /// The soak's rate as a share of the probe's throughput.
    #[arg(long, default_value_t = 0.7)]
    load: f64,
    /// WebSocket subscribers held through the probe and the soak.
    #[arg(long, default_value_t = 20)]
    subscribers: usize,
    /// Leads seeded before the run.
    #[arg(long, default_value_t = 10000)]
    leads: u32,
    /// The sandbox provider's answer time, ms.
    #[arg(long, default_value_t = 20)]
    provider_ms: u32,
    /// Extra server settings, LEADGATE_NAME=VALUE (e.g. a queue URL).
    #[arg(long = "server-env")]
    server_env: Vec<String>,
}

const PAGE: &str = "query Page($status: [LeadStatus!]) { leads(first: 20, filter: {status: $status}) { edges { cursor node { id \
    email firstName lastName companyName title status score updatedAt } } pageInfo { hasNextPage endCursor } } }";
const ENRICHED: &str = "query Lead($id: ID!) { lead(id: $id) { id email person { fullName } } }";
const UPDATE: &str = "mutation Update($input: UpdateLeadInput!) { updateLead(input: $input) { lead { id } userErrors { message } } }";
const CREATE: &str = "mutation Create($input: CreateLeadInput!) { createLead(input: $input) { lead { id } userErrors { message } } }";
const SUBSCRIPTION: &str = "subscription { leadChanged { cursor type lead { id } } }";
const STATUSES: [&str; 4] = ["NEW", "CONTACTED", "QUALIFIED", "UNQUALIFIED"];

#[derive(Clone, Copy, Debug)]
enum Op {
    Page,
    Enriched,
    Update,
    Create,
}

impl Op {
    fn pick(r: f64) -> Self {
        match r {
            r if r < 0.55 => Op::Page,
            r if r < 0.70 => Op::Enriched,
            r if r < 0.90 => Op::Update,
            _ => Op::Create,
        }
    }
}

/// What the load shares: both servers' addresses, the token, the lead pool, a counter for
/// unique emails.
struct Load {
    http: reqwest::Client,
    bases: [String; 2],
    token: String,
    ids: Mutex<Vec<String>>,
    next: AtomicU64,
    stamp: String,
}

impl Load {
    fn random_id(&self) -> String {
        let ids = self.ids.lock().expect("ids");
        ids[rand::rng().random_range(0..ids.len())].clone()
    }

    /// One operation on instance `i`: Ok, or what went wrong.
    async fn run(&self, op: Op, i: usize) -> Result<(), String> {
        let (query, variables) = match op {
            Op::Page => (
                PAGE,
                json!({"status": [STATUSES[rand::rng().random_range(0..STATUSES.len())]]}),
            ),
            Op::Enriched => (ENRICHED, json!({"id": self.random_id()})),
            Op::Update => (
                UPDATE,
                json!({"input": {"id": self.random_id(), "title": format!("Title {}", rand::rng().random_range(0..1000))}}),
            ),
            Op::Create => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                (
                    CREATE,
                    json!({"input": {"email": format!("soak.{}.{n}@soak.example", self.stamp), "firstName": "Soak", "lastName": format!("Lead{n}")}}),
                )
            }
        };
        let res = self
            .http
            .post(format!("{}/graphql", self.bases[i % 2]))
            .bearer_auth(&self.token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = res.status().as_u16();
        let body: Value = res.json().await.map_err(|e| format!("body: {e}"))?;
        if status != 200 {
            return Err(format!("{op:?}: HTTP {status}: {body}"));
        }
        if body.get("errors").is_some() {
            return Err(format!("{op:?}: {}", body["errors"]));
        }
        let payload = match op {
            Op::Update => &body["data"]["updateLead"],
            Op::Create => &body["data"]["createLead"],
            _ => return Ok(()),
        };
        if payload["userErrors"].as_array().is_some_and(|e| !e.is_empty()) {
            return Err(format!("{op:?}: {}", payload["userErrors"]));
        }
        if let (Op::Create, Some(id)) = (op, payload["lead"]["id"].as_str()) {
            self.ids.lock().expect("ids").push(id.to_owned());
        }
        Ok(())
    }
}

/// One minute of the soak.
#[derive(Default)]
struct Window {
    latencies_us: Vec<u64>,
    errors: u64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1e3
}

/// A subscriber on `base` over `protocol`: counts `next` events; an error, a `complete` or a
/// close before `stop` counts as an error.
async fn subscriber(
    base: String,
    token: String,
    protocol: &'static str,
    events: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    stop: Arc<tokio::sync::Notify>,
) -> anyhow::Result<()> {
    let url = base.replacen("http://", "ws://", 1) + "/graphql/ws";
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
    socket.send(Message::Text(init.to_string().into())).await?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(t))) if t.as_str().contains("connection_ack") => break,
            Some(Ok(Message::Text(t))) if t.as_str().contains("ka") => continue,
            Some(Ok(Message::Text(t))) => bail!("unexpected {t}"),
            Some(Ok(_)) => continue,
            other => bail!("no ack: {other:?}"),
        }
    }
    let (start, data) = if protocol == "graphql-ws" {
        ("start", "data")
    } else {
        ("subscribe", "next")
    };
    let sub = json!({"id": "1", "type": start, "payload": {"query": SUBSCRIPTION}});
    socket.send(Message::Text(sub.to_string().into())).await?;
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => return Ok(()),
            message = socket.next() => match message {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    match v["type"].as_str() {
                        Some(t) if t == data => {
                            if v["payload"].get("errors").is_some() {
                                errors.fetch_add(1, Ordering::Relaxed);
                                eprintln!("subscription error: {v}");
                            } else {
                                events.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Some("ka" | "ping" | "pong") => {
                            if v["type"] == "ping" {
                                socket.send(Message::Text(json!({"type": "pong"}).to_string().into())).await?;
                            }
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            eprintln!("subscription ended: {v}");
                            return Ok(());
                        }
                    }
                }
                Some(Ok(Message::Ping(p))) => socket.send(Message::Pong(p)).await?,
                Some(Ok(_)) => {}
                other => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("subscription closed: {other:?}");
                    return Ok(());
                }
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let results = common::results_dir()?;
    let bin = common::release_bin(args.bin.clone());
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let database_url = common::fresh_database(&results, &args.backend, "soak").await?;
    let mut server_env = common::server_env(&args.server_env)?;
    server_env.extend([
        ("LEADGATE_REDIS_URL".to_owned(), args.redis_url.clone()),
        ("LEADGATE_REDIS_PREFIX".to_owned(), format!("soak:{stamp}:")),
        // the limiter runs on Redis for every request, at a limit the load never reaches
        ("LEADGATE_RATE_LIMIT".to_owned(), "10000000/min".to_owned()),
    ]);
    let lg = Leadgate {
        bin: bin.clone(),
        results: results.clone(),
        database_url,
        jwt_secret: JWT_SECRET,
        server_env: server_env.clone(),
    };
    lg.run(&["migrate"]).await?;
    lg.run(&["workspace", "create", WORKSPACE, "--name", "Soak benchmark"])
        .await?;
    let leads = args.leads.to_string();
    lg.run(&[
        "seed",
        "--workspace",
        WORKSPACE,
        "--leads",
        &leads,
        "--seed",
        "11",
    ])
    .await?;
    let mint = |role: &'static str| {
        let lg = &lg;
        async move {
            anyhow::Ok(
                lg.run(&["token", "--workspace", WORKSPACE, "--role", role, "--ttl", "12h"])
                    .await?
                    .trim()
                    .to_owned(),
            )
        }
    };
    let (token, admin) = (mint("member").await?, mint("admin").await?);
    let log = results.join(format!("{stamp}-soak-server.log"));
    let servers: [Server; 2] = [lg.serve(&[], &log).await?, lg.serve(&[], &log).await?];
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;
    let admin_gql = |query: &'static str, variables: Value| {
        let (http, base, admin) = (http.clone(), servers[0].base.clone(), admin.clone());
        async move {
            let v: Value = http
                .post(format!("{base}/graphql"))
                .bearer_auth(admin)
                .json(&json!({"query": query, "variables": variables}))
                .send()
                .await?
                .json()
                .await?;
            if v.get("errors").is_some() {
                bail!("{query}: {v}");
            }
            anyhow::Ok(v)
        }
    };
    admin_gql(
        "mutation($input: ConfigureProviderInput!) { configureProvider(input: $input) { userErrors { message } } }",
        json!({"input": {"provider": "SANDBOX", "options": {"latencyMs": args.provider_ms, "missRate": 0.0, "creditsPerHit": 1}}}),
    )
    .await?;
    admin_gql(
        "mutation { setWaterfall(group: PERSON, providers: [SANDBOX]) { userErrors { message } } }",
        json!({}),
    )
    .await?;
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    while ids.len() < 2000 {
        let v = admin_gql(
            "query($after: String) { leads(first: 500, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } } }",
            json!({"after": after}),
        )
        .await?;
        let page = &v["data"]["leads"];
        ids.extend(
            page["edges"]
                .as_array()
                .context("edges")?
                .iter()
                .filter_map(|e| e["node"]["id"].as_str().map(str::to_owned)),
        );
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    let load = Arc::new(Load {
        http: http.clone(),
        bases: [servers[0].base.clone(), servers[1].base.clone()],
        token: token.clone(),
        ids: Mutex::new(ids),
        next: AtomicU64::new(0),
        stamp: stamp.clone(),
    });

    // 1. subscribers, held through the probe and the soak: capacity is that of the whole mix
    let events = Arc::new(AtomicU64::new(0));
    let sub_errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut subs = Vec::new();
    for s in 0..args.subscribers {
        let protocol = if s % 4 < 2 {
            "graphql-transport-ws"
        } else {
            "graphql-ws"
        };
        subs.push(tokio::spawn(subscriber(
            servers[s % 2].base.clone(),
            token.clone(),
            protocol,
            events.clone(),
            sub_errors.clone(),
            stop.clone(),
        )));
    }

    // 2. capacity: closed loop, the same mix, with the subscribers
    eprintln!("== probe: {} clients for {} s", args.probe_clients, args.probe);
    let probe_done = Arc::new(AtomicU64::new(0));
    let probe_errors = Arc::new(AtomicU64::new(0));
    let probe_end = Instant::now() + Duration::from_secs(args.probe);
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.probe_clients)
        .map(|c| {
            let (load, done, errors) = (load.clone(), probe_done.clone(), probe_errors.clone());
            tokio::spawn(async move {
                while Instant::now() < probe_end {
                    let op = Op::pick(rand::rng().random());
                    match load.run(op, c).await {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            eprintln!("probe: {e}");
                            errors.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    let capacity = probe_done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let rate = capacity * args.load;
    eprintln!(
        "== capacity {capacity:.0} ops/s; soaking at {rate:.0} ops/s for {} s",
        args.duration
    );

    // 3. the soak, open loop
    let minutes = args.duration.div_ceil(60) as usize;
    let windows: Arc<Mutex<Vec<Window>>> =
        Arc::new(Mutex::new((0..minutes + 1).map(|_| Window::default()).collect()));
    let outstanding = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let pids = [servers[0].pid, servers[1].pid];
    let rss = |pids: [u32; 2]| [status_mb(pids[0], "VmRSS"), status_mb(pids[1], "VmRSS")];
    let mut rss_by_minute: Vec<[f64; 2]> = Vec::new();
    let start = Instant::now();
    let warm = start + Duration::from_secs(args.warmup);
    let end = warm + Duration::from_secs(args.duration);
    let mut rss_after_warmup = None;
    let mut next_minute = warm + Duration::from_secs(60);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut k: u64 = 0;
    let mut errors_shown = 0u32;
    let (report_tx, mut report_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    loop {
        let due = start + interval.mul_f64(k as f64);
        if due >= end {
            break;
        }
        if rss_after_warmup.is_none() && due >= warm {
            rss_after_warmup = Some(rss(pids));
        }
        if due >= next_minute {
            let r = rss(pids);
            eprintln!(
                "== minute {}: RSS {:.1} + {:.1} MB, events {}, in flight {}",
                rss_by_minute.len() + 1,
                r[0],
                r[1],
                events.load(Ordering::Relaxed),
                outstanding.load(Ordering::Relaxed)
            );
            rss_by_minute.push(r);
            next_minute += Duration::from_secs(60);
        }
        tokio::time::sleep_until(due.into()).await;
        while let Ok(e) = report_rx.try_recv() {
            if errors_shown < 20 {
                eprintln!("error: {e}");
                errors_shown += 1;
            }
        }
        let window = if due < warm {
            minutes
        } else {
            (((due - warm).as_secs() / 60) as usize).min(minutes - 1)
        };
        if outstanding.load(Ordering::Relaxed) >= MAX_OUTSTANDING {
            dropped.fetch_add(1, Ordering::Relaxed);
            windows.lock().expect("windows")[window].errors += 1;
            k += 1;
            continue;
        }
        outstanding.fetch_add(1, Ordering::Relaxed);
        let (load, windows, outstanding, report) = (
            load.clone(),
            windows.clone(),
            outstanding.clone(),
            report_tx.clone(),
        );
        let op = Op::pick(rand::rng().random());
        tokio::spawn(async move {
            let result = load.run(op, k as usize).await;
            let took = due.elapsed().as_micros() as u64;
            outstanding.fetch_sub(1, Ordering::Relaxed);
            let mut w = windows.lock().expect("windows");
            match result {
                Ok(()) => w[window].latencies_us.push(took),
                Err(e) => {
                    w[window].errors += 1;
                    let _ = report.send(e);
                }
            }
        });
        k += 1;
    }
    let drain_deadline = Instant::now() + Duration::from_secs(60);
    while outstanding.load(Ordering::Relaxed) > 0 && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_end = rss(pids);
    if rss_by_minute.len() < minutes {
        rss_by_minute.push(rss_end);
    }
    let events_seen = events.load(Ordering::Relaxed);
    stop.notify_waiters();
    let mut subscriber_failures = 0;
    for s in subs {
        if let Err(e) | Ok(Err(e)) = s.await.map_err(anyhow::Error::from) {
            eprintln!("subscriber failed: {e}");
            subscriber_failures += 1;
        }
    }
    for s in servers {
        s.stop().await;
    }

    // 4. figures
    let mut windows = std::mem::take(&mut *windows.lock().expect("windows"));
    windows.truncate(minutes);
    let mut per_minute = Vec::new();
    let (mut total_ops, mut total_errors) = (0u64, 0u64);
    for (m, w) in windows.iter_mut().enumerate() {
        w.latencies_us.sort_unstable();
        total_ops += w.latencies_us.len() as u64 + w.errors;
        total_errors += w.errors;
        per_minute.push(
            json!({"minute": m + 1, "ops": w.latencies_us.len(), "errors": w.errors,
            "p50_ms": percentile(&w.latencies_us, 0.5), "p99_ms": percentile(&w.latencies_us, 0.99),
            "rss_mb": rss_by_minute.get(m)}),
        );
        eprintln!(
            "== minute {}: {} ops, {} errors, p50 {:.2} ms, p99 {:.2} ms",
            m + 1,
            w.latencies_us.len(),
            w.errors,
            percentile(&w.latencies_us, 0.5),
            percentile(&w.latencies_us, 0.99)
        );
    }
    let first_p99 = percentile(&windows[0].latencies_us, 0.99);
    let last_p99 = percentile(&windows[minutes - 1].latencies_us, 0.99);
    let drift = (last_p99 / first_p99 - 1.0) * 100.0;
    let rss_start = rss_after_warmup.unwrap_or_default();
    let growth = |i: usize| (rss_end[i] / rss_start[i] - 1.0) * 100.0;
    let both = ((rss_end[0] + rss_end[1]) / (rss_start[0] + rss_start[1]) - 1.0) * 100.0;
    let errors = total_errors + sub_errors.load(Ordering::Relaxed) + subscriber_failures;
    let mut rows = vec![
        row(
            "probe",
            &format!("closed loop, {} clients, {} s", args.probe_clients, args.probe),
            format!(
                "{capacity:.0} ops/s ({} errors)",
                probe_errors.load(Ordering::Relaxed)
            ),
            "",
            None,
        ),
        row(
            "soak",
            &format!(
                "open loop at {:.0} % of it for {} s (+{} s warm-up)",
                args.load * 100.0,
                args.duration,
                args.warmup
            ),
            format!("{rate:.0} ops/s, {total_ops} ops"),
            "",
            None,
        ),
        row(
            "soak",
            "errors (HTTP, GraphQL, user errors, dropped, subscriptions)",
            format!("{errors} ({} dropped)", dropped.load(Ordering::Relaxed)),
            "0",
            Some(errors == 0),
        ),
        row(
            "soak",
            &format!("events received by {} subscribers", args.subscribers),
            events_seen.to_string(),
            "",
            None,
        ),
        row(
            "soak",
            "p99 first minute → last minute",
            format!("{first_p99:.2} → {last_p99:.2} ms"),
            "",
            None,
        ),
        row(
            "soak",
            "p99 drift",
            format!("{drift:+.1} %"),
            "≤ 20 %",
            Some(drift <= 20.0),
        ),
        row(
            "soak",
            "RSS after warm-up → end (A, B)",
            format!(
                "{:.1} → {:.1} MB, {:.1} → {:.1} MB ({:+.1} %, {:+.1} %)",
                rss_start[0],
                rss_end[0],
                rss_start[1],
                rss_end[1],
                growth(0),
                growth(1)
            ),
            "",
            None,
        ),
        row(
            "soak",
            "RSS growth, both servers",
            format!("{both:+.1} %"),
            "≤ 5 %",
            Some(both <= 5.0),
        ),
    ];
    rows.shrink_to_fit();
    println!("{}", table(&rows));
    let out = results.join(format!("{stamp}-soak-{}.json", args.backend));
    let json_out = json!({
        "stamp": stamp, "backend": args.backend,
        "args": {"duration": args.duration, "warmup": args.warmup, "probe": args.probe, "probe_clients": args.probe_clients,
            "load": args.load, "subscribers": args.subscribers, "leads": args.leads, "provider_ms": args.provider_ms,
            "server_env": server_env.iter().filter(|(k, _)| !k.contains("URL")).collect::<Vec<_>>()},
        "capacity_ops_s": round1(capacity), "rate_ops_s": round1(rate), "ops": total_ops, "errors": errors,
        "dropped": dropped.load(Ordering::Relaxed), "subscription_events": events_seen,
        "p99_first_ms": first_p99, "p99_last_ms": last_p99, "p99_drift_pct": round1(drift),
        "rss_after_warmup_mb": rss_start, "rss_end_mb": rss_end, "rss_growth_pct": round1(both),
        "minutes": per_minute,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&json_out)?).context("write results")?;
    eprintln!("== results: {}", out.display());
    Ok(())
}
