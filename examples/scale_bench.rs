//! The scale-out benchmark (`bench/scale.sh`): what rate limiting adds to a request (off, in
//! process, on Redis), how close two instances sharing one Redis limit stay to it, and what a
//! persisted query saves (request bytes and server CPU per request, full text vs hash only), and
//! what 100 concurrent requests for one cold lead spread over two instances cost in provider
//! calls (the built-in sandbox provider answering in 300 ms, counted from both servers'
//! `leadgate_provider_calls_total`).
//!
//! Everything runs against release servers this program starts on a fresh SQLite database
//! (or PostgreSQL with `--backend postgres`) and a Redis given by `--redis-url`, with a fresh
//! key prefix per run. Figures are printed and written to bench/results/<stamp>-scale.json;
//! nothing is asserted.

mod common;

use anyhow::{Context as _, bail};
use clap::Parser;
use common::{Leadgate, Server, clk_tck, cpu_ticks, round1, round2, row, table};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const JWT_SECRET: &str = "scale-benchmark-secret-that-is-long-enough-0123456789";
const WORKSPACE: &str = "bench";

#[derive(Parser)]
struct Args {
    /// The leadgate binary (default: target/release/leadgate).
    #[arg(long)]
    bin: Option<PathBuf>,
    #[arg(long, default_value = "sqlite")]
    backend: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Sequential requests per latency round.
    #[arg(long, default_value_t = 3000)]
    requests: usize,
    /// Latency rounds per mode (the modes alternate; the median round's p50 counts).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The shared limit of the two-instance scenario, per second.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Seconds the two instances are driven past their limit.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Requests per persisted-query variant.
    #[arg(long, default_value_t = 6000)]
    apq_requests: usize,
}

const SMALL: &str = "{ __typename }";

const PAGE: &str = "query Page($after: String) { leads(first: 20, after: $after) { edges { cursor node { id \
    email firstName lastName companyName title phone status score tags createdAt updatedAt } } pageInfo { \
    hasNextPage endCursor } } }";

fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn post(http: &reqwest::Client, base: &str, token: &str, body: &str) -> anyhow::Result<u16> {
    let res = http
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await?;
    let status = res.status().as_u16();
    res.bytes().await?;
    Ok(status)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// Sequential requests over one connection; (p50, p90) in µs.
async fn latency(base: &str, token: &str, n: usize) -> anyhow::Result<(f64, f64)> {
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let body = json!({ "query": SMALL }).to_string();
    for _ in 0..200 {
        post(&http, base, token, &body).await?;
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let status = post(&http, base, token, &body).await?;
        times.push(start.elapsed());
        if status != 200 {
            bail!("latency request answered {status}");
        }
    }
    times.sort();
    Ok((percentile(&times, 0.5), percentile(&times, 0.9)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let results = common::results_dir()?;
    let bin = common::release_bin(args.bin.clone());
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let database_url = common::fresh_database(&results, &args.backend, "scale").await?;
    let lg = Leadgate {
        bin: bin.clone(),
        results: results.clone(),
        database_url,
        jwt_secret: JWT_SECRET,
        server_env: Vec::new(),
    };
    lg.run(&["migrate"]).await?;
    lg.run(&["workspace", "create", WORKSPACE, "--name", "Scale benchmark"])
        .await?;
    lg.run(&["seed", "--workspace", WORKSPACE, "--leads", "2000", "--seed", "7"])
        .await?;
    let token = lg
        .run(&[
            "token",
            "--workspace",
            WORKSPACE,
            "--role",
            "member",
            "--ttl",
            "12h",
        ])
        .await?
        .trim()
        .to_owned();
    let prefix = format!("bench:{stamp}:");
    let redis = |extra: &str| {
        vec![
            ("LEADGATE_REDIS_URL", args.redis_url.clone()),
            ("LEADGATE_REDIS_PREFIX", format!("{prefix}{extra}:")),
        ]
    };
    let log = results.join(format!("{stamp}-scale-server.log"));
    let mut rows = Vec::new();
    let mut json_out = json!({ "stamp": stamp, "backend": args.backend, "args": {
        "requests": args.requests, "rounds": args.rounds, "limit": args.limit,
        "duration": args.duration, "apq_requests": args.apq_requests } });

    // 1. latency added by rate limiting: off, in process, on Redis (alternating rounds)
    let high = "10000000/min".to_owned();
    let modes: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("off", vec![("LEADGATE_RATE_LIMIT", "off".into())]),
        ("in-process", vec![("LEADGATE_RATE_LIMIT", high.clone())]),
        ("redis", {
            let mut env = redis("latency");
            env.push(("LEADGATE_RATE_LIMIT", high.clone()));
            env
        }),
    ];
    let mut p50s: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut p90s: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for round in 0..args.rounds {
        for (i, (name, env)) in modes.iter().enumerate() {
            let server = lg.serve(env, &log).await?;
            let (p50, p90) = latency(&server.base, &token, args.requests).await?;
            eprintln!("== round {round} {name}: p50 {p50:.0} µs, p90 {p90:.0} µs");
            p50s[i].push(p50);
            p90s[i].push(p90);
            server.stop().await;
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let p50: Vec<f64> = p50s.iter_mut().map(median).collect();
    let p90: Vec<f64> = p90s.iter_mut().map(median).collect();
    for (i, (name, _)) in modes.iter().enumerate() {
        rows.push(row(
            "latency",
            &format!("{{ __typename }} p50 / p90, limits {name}"),
            format!("{:.0} / {:.0} µs", p50[i], p90[i]),
            "",
            None,
        ));
    }
    let added_local = p50[1] - p50[0];
    let added_redis = p50[2] - p50[0];
    rows.push(row(
        "latency",
        "p50 added by limits in process",
        format!("{added_local:.0} µs"),
        "",
        None,
    ));
    rows.push(row(
        "latency",
        "p50 added by limits on Redis",
        format!("{added_redis:.0} µs"),
        "≤ 150 µs",
        Some(added_redis <= 150.0),
    ));
    json_out["latency"] = json!({ "modes": modes.iter().map(|m| m.0).collect::<Vec<_>>(),
        "p50_us": p50, "p90_us": p90, "rounds_p50_us": p50s, "added_p50_us": { "in_process": added_local, "redis": added_redis } });

    // 2. two instances, one limit on Redis, driven far past it
    let limit_env = {
        let mut env = redis("shared");
        env.push(("LEADGATE_RATE_LIMIT", format!("{}/s", args.limit)));
        env
    };
    let (a, b) = (
        lg.serve(&limit_env, &log).await?,
        lg.serve(&limit_env, &log).await?,
    );
    let admitted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let base = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let (token, admitted, refused) = (token.clone(), admitted.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
            let body = json!({ "query": SMALL }).to_string();
            while Instant::now() < deadline {
                match post(&http, &base, &token, &body).await? {
                    200 => admitted.fetch_add(1, Ordering::Relaxed),
                    429 => refused.fetch_add(1, Ordering::Relaxed),
                    other => bail!("answered {other}"),
                };
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    a.stop().await;
    b.stop().await;
    let admitted = admitted.load(Ordering::Relaxed) as f64;
    let refused = refused.load(Ordering::Relaxed) as f64;
    // GCRA admits the burst (the whole rate) from rest, then the rate
    let expected = f64::from(args.limit) * (1.0 + elapsed);
    let deviation = (admitted - expected) / expected * 100.0;
    rows.push(row(
        "two instances",
        &format!(
            "admitted of {} (limit {}/s over {:.1} s, burst included)",
            admitted + refused,
            args.limit,
            elapsed
        ),
        format!("{admitted:.0} (expected {expected:.0}, {deviation:+.2} %)"),
        "within 5 %",
        Some(deviation.abs() <= 5.0),
    ));
    json_out["two_instances"] = json!({ "limit_per_s": args.limit, "seconds": elapsed, "admitted": admitted,
        "refused": refused, "expected": expected, "deviation_pct": deviation });

    // 3. persisted queries: the page query as full text vs as its hash (no limits)
    let server = lg.serve(&[("LEADGATE_RATE_LIMIT", "off".into())], &log).await?;
    let full = json!({ "query": PAGE, "variables": { "after": null } }).to_string();
    let hashed = json!({ "variables": { "after": null }, "extensions": { "persistedQuery": {
        "version": 1, "sha256Hash": sha256_hex(PAGE) } } })
    .to_string();
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    // register the hash (the first hash-only request is a miss), then both variants are warm
    let register = json!({ "query": PAGE, "variables": { "after": null }, "extensions": { "persistedQuery": {
        "version": 1, "sha256Hash": sha256_hex(PAGE) } } })
    .to_string();
    if post(&http, &server.base, &token, &register).await? != 200 {
        bail!("registering the persisted query failed");
    }
    let cpu = |server: &Server| cpu_ticks(&server.pid.to_string());
    let mut apq = Vec::new();
    for _ in 0..2 {
        for (name, body) in [("full text", &full), ("hash only", &hashed)] {
            let before = cpu(&server);
            let t0 = Instant::now();
            let mut tasks = Vec::new();
            let per_task = args.apq_requests / 4;
            for _ in 0..4 {
                let (http, base, token, body) =
                    (http.clone(), server.base.clone(), token.clone(), body.clone());
                tasks.push(tokio::spawn(async move {
                    for _ in 0..per_task {
                        if post(&http, &base, &token, &body).await? != 200 {
                            bail!("a page request failed");
                        }
                    }
                    anyhow::Ok(())
                }));
            }
            for t in tasks {
                t.await??;
            }
            let secs = t0.elapsed().as_secs_f64();
            let n = (per_task * 4) as f64;
            let cpu_us = (cpu(&server) - before) as f64 / clk_tck() * 1e6 / n;
            apq.push((name, body.len(), cpu_us, n / secs));
        }
    }
    server.stop().await;
    // the second pass of each variant counts (the first warms caches)
    for (name, bytes, cpu_us, rps) in apq.iter().skip(2) {
        rows.push(row(
            "persisted query",
            &format!("page of 20, {name}: body bytes, server CPU per request, req/s"),
            format!("{bytes} B, {:.0} µs, {:.0}/s", cpu_us, rps),
            "",
            None,
        ));
    }
    let (full_cpu, hash_cpu) = (apq[2].2, apq[3].2);
    rows.push(row(
        "persisted query",
        "CPU per request, hash only vs full text",
        format!("{:+.1} %", (hash_cpu - full_cpu) / full_cpu * 100.0),
        "",
        None,
    ));
    json_out["persisted"] = json!(
        apq.iter()
            .map(|(n, b, c, r)| json!({"variant": n, "body_bytes": b,
        "cpu_us_per_request": round1(*c), "req_per_s": round2(*r)}))
            .collect::<Vec<_>>()
    );

    // 4. single flight across instances: 100 concurrent requests for one cold lead
    let admin = lg
        .run(&[
            "token",
            "--workspace",
            WORKSPACE,
            "--role",
            "admin",
            "--ttl",
            "12h",
        ])
        .await?
        .trim()
        .to_owned();
    let flight_env = {
        let mut env = redis("flight");
        env.push(("LEADGATE_RATE_LIMIT", "off".into()));
        env
    };
    let (a, b) = (
        lg.serve(&flight_env, &log).await?,
        lg.serve(&flight_env, &log).await?,
    );
    let gql = |base: String, token: String, query: &'static str, variables: serde_json::Value| {
        let http = http.clone();
        async move {
            let body = json!({ "query": query, "variables": variables }).to_string();
            let res = http
                .post(format!("{base}/graphql"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            let value: serde_json::Value = res.json().await?;
            if value.get("errors").is_some() {
                bail!("{query}: {value}");
            }
            anyhow::Ok(value)
        }
    };
    gql(a.base.clone(), admin.clone(), "mutation($input: ConfigureProviderInput!) { configureProvider(input: $input) { userErrors { message } } }",
        json!({"input": {"provider": "SANDBOX", "options": {"latencyMs": 300, "missRate": 0.0, "creditsPerHit": 1}}})).await?;
    gql(
        a.base.clone(),
        admin.clone(),
        "mutation { setWaterfall(group: PERSON, providers: [SANDBOX]) { userErrors { message } } }",
        json!({}),
    )
    .await?;
    let created = gql(
        a.base.clone(),
        token.clone(),
        "mutation { createLead(input: {email: \"cold.lead@flight.example\"}) { lead { id } } }",
        json!({}),
    )
    .await?;
    let id = created["data"]["createLead"]["lead"]["id"]
        .as_str()
        .context("lead id")?
        .to_owned();
    let calls = |base: String| {
        let http = http.clone();
        async move {
            let text = http.get(format!("{base}/metrics")).send().await?.text().await?;
            let total: f64 = text
                .lines()
                .filter(|l| l.starts_with("leadgate_provider_calls_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            anyhow::Ok(total)
        }
    };
    let before = calls(a.base.clone()).await? + calls(b.base.clone()).await?;
    let started = Instant::now();
    let requests = (0..100).map(|i| {
        let base = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        gql(
            base,
            token.clone(),
            "query($id: ID!) { lead(id: $id) { person { fullName } } }",
            json!({"id": id}),
        )
    });
    let answers = futures_util::future::join_all(requests).await;
    let flight_ms = started.elapsed().as_secs_f64() * 1e3;
    let answered = answers
        .iter()
        .filter(|a| {
            a.as_ref()
                .is_ok_and(|v| v["data"]["lead"]["person"]["fullName"].is_string())
        })
        .count();
    let provider_calls = calls(a.base.clone()).await? + calls(b.base.clone()).await? - before;
    a.stop().await;
    b.stop().await;
    rows.push(row(
        "single flight",
        &format!("100 concurrent requests for one cold lead on 2 instances ({answered} answered, {flight_ms:.0} ms)"),
        format!("{provider_calls:.0} provider call(s)"),
        "1",
        Some(provider_calls == 1.0 && answered == 100),
    ));
    json_out["single_flight"] = json!({ "requests": 100, "answered": answered, "provider_calls": provider_calls,
        "elapsed_ms": flight_ms });

    println!("{}", table(&rows));
    let out = results.join(format!("{stamp}-scale-{}.json", args.backend));
    std::fs::write(&out, serde_json::to_string_pretty(&json_out)?).context("write results")?;
    eprintln!("== results: {}", out.display());
    Ok(())
}
