//! The subscription fan-out benchmark: N `graphql-transport-ws` clients subscribed to
//! `leadChanged`, `updateLead` mutations over HTTP at R per second, and the delivery latency
//! (receive time − the event's `at`), lost and duplicate events, connect+subscribe time, the
//! server's RSS per idle subscriber and its CPU time. See bench/README.md, section "Fan-out".
//!
//! It starts the release `leadgate` server as a child on a fresh SQLite database and talks to
//! it only as a client would: the CLI (`workspace`, `seed`, `token`), HTTP and WebSocket, and
//! `/proc` for the server's memory and CPU. Run it through `bench/fanout.sh`.

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const JWT_SECRET: &str = "leadgate-bench-only-secret-0123456789abcdefghijk";
const WORKSPACE: &str = "bench";
/// The subscription every client holds.
const SUBSCRIPTION: &str = "subscription { leadChanged { cursor type at lead { id status updatedAt } } }";
const UPDATE: &str =
    "mutation($input: UpdateLeadInput!) { updateLead(input: $input) { lead { id } userErrors { message } } }";
/// Connections opened at once while connecting.
const CONNECT_CONCURRENCY: usize = 256;

#[derive(Parser, Debug)]
#[command(about = "leadgate subscription fan-out benchmark")]
struct Args {
    /// The leadgate binary (release build).
    #[arg(long)]
    bin: PathBuf,
    /// Subscribed clients.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Mutations (events) per second.
    #[arg(long, default_value_t = 10)]
    rate: u32,
    /// Seconds of driving events.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Leads the mutations cycle through.
    #[arg(long, default_value_t = 200)]
    leads: usize,
    /// Where the SQLite database is created (replaced on every run).
    #[arg(long, default_value = "bench/results/fanout.sqlite")]
    database: PathBuf,
    /// Only connect and acknowledge the clients (no subscription, no events): measures the
    /// memory of idle connections, which works before the subscription fields exist.
    #[arg(long)]
    idle_only: bool,
}

/// One delivered event, as a client saw it.
#[derive(Debug, PartialEq)]
struct Delivery {
    cursor: String,
    at: chrono::DateTime<chrono::Utc>,
}

/// The event in a `next` message, if it is one.
fn delivery_of(message: &Value) -> Option<Delivery> {
    if message["type"] != "next" {
        return None;
    }
    let event = &message["payload"]["data"]["leadChanged"];
    let cursor = event["cursor"].as_str()?.to_owned();
    let at = chrono::DateTime::parse_from_rfc3339(event["at"].as_str()?)
        .ok()?
        .with_timezone(&chrono::Utc);
    Some(Delivery { cursor, at })
}

/// What one client received: latencies and the cursors it saw.
#[derive(Default)]
struct Tracker {
    latencies_ms: Vec<f64>,
    seen: HashSet<String>,
    duplicates: u64,
}

impl Tracker {
    /// Records a delivery received at `now`.
    fn record(&mut self, delivery: Delivery, now: chrono::DateTime<chrono::Utc>) {
        let latency = (now - delivery.at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0;
        if self.seen.insert(delivery.cursor) {
            self.latencies_ms.push(latency);
        } else {
            self.duplicates += 1;
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, PartialEq, serde::Serialize)]
struct Percentiles {
    p50: f64,
    p99: f64,
    max: f64,
    samples: usize,
}

fn percentiles(samples: &mut [f64]) -> Percentiles {
    if samples.is_empty() {
        return Percentiles {
            p50: 0.0,
            p99: 0.0,
            max: 0.0,
            samples: 0,
        };
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
        max: samples[samples.len() - 1],
        samples: samples.len(),
    }
}

/// `VmRSS` in kB from `/proc/<pid>/status`.
fn vm_rss_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
}

/// utime + stime in clock ticks from `/proc/<pid>/stat` (fields 14 and 15, after the
/// parenthesised command name, which may hold spaces).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// When the k-th event is due, for `rate` events per second.
fn due(start: Instant, k: u64, rate: u32) -> Instant {
    start + Duration::from_secs_f64(k as f64 / f64::from(rate.max(1)))
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| vm_rss_kb(&s))
        .unwrap_or(0)
}

fn server_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| cpu_ticks(&s))
        .unwrap_or(0)
}

/// The server under test and how to reach it.
struct Server {
    child: tokio::process::Child,
    base: String,
    token: String,
}

impl Server {
    fn leadgate(bin: &PathBuf, database_url: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(bin);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("LEADGATE_") {
                cmd.env_remove(key);
            }
        }
        // fan-out is measured without rate limits (bench/scale.sh measures those)
        cmd.env("LEADGATE_DATABASE_URL", database_url)
            .env("LEADGATE_JWT_SECRET", JWT_SECRET)
            .env("LEADGATE_LOG", "error")
            .env("LEADGATE_RATE_LIMIT", "off")
            .env("LEADGATE_RATE_LIMIT_ANONYMOUS", "off")
            .kill_on_drop(true);
        cmd
    }

    async fn run(bin: &PathBuf, database_url: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = Self::leadgate(bin, database_url).args(args).output().await?;
        if !out.status.success() {
            bail!("leadgate {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    async fn start(args: &Args) -> anyhow::Result<Self> {
        if let Some(dir) = args.database.parent() {
            std::fs::create_dir_all(dir)?;
        }
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", args.database.display()));
        }
        let url = format!("sqlite://{}", args.database.display());
        Self::run(&args.bin, &url, &["workspace", "create", WORKSPACE]).await?;
        let leads = args.leads.to_string();
        Self::run(
            &args.bin,
            &url,
            &["seed", "--workspace", WORKSPACE, "--leads", &leads, "--seed", "1"],
        )
        .await?;
        let token = Self::run(
            &args.bin,
            &url,
            &["token", "--workspace", WORKSPACE, "--role", "admin"],
        )
        .await?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Self::leadgate(&args.bin, &url)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env(
                "LEADGATE_WS_MAX_CONNECTIONS_PER_TOKEN",
                (args.clients + 16).to_string(),
            )
            .spawn()
            .context("start leadgate serve")?;
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            token,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(res) = client.get(format!("{}/readyz", self.base)).send().await
                && res.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the server did not become ready")
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }
}

async fn lead_ids(http: &reqwest::Client, server: &Server, n: usize) -> anyhow::Result<Vec<String>> {
    let body = json!({"query": "query($n: Int!) { leads(first: $n) { edges { node { id } } } }", "variables": {"n": n.min(500)}});
    let res: Value = http
        .post(format!("{}/graphql", server.base))
        .bearer_auth(&server.token)
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    let ids: Vec<String> = res["data"]["leads"]["edges"]
        .as_array()
        .map(|edges| {
            edges
                .iter()
                .filter_map(|e| e["node"]["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() {
        bail!("no leads to update: {res}");
    }
    Ok(ids)
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects, initialises and (unless idle) subscribes one client.
async fn connect_one(server: &Server, subscribe: bool) -> anyhow::Result<Socket> {
    let url = server.base.replacen("http://", "ws://", 1) + "/graphql/ws";
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    let init =
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {}", server.token)}});
    socket.send(Message::Text(init.to_string().into())).await?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(t))) if t.as_str().contains("connection_ack") => break,
            Some(Ok(Message::Text(t))) => bail!("unexpected {t}"),
            Some(Ok(_)) => continue,
            other => bail!("no ack: {other:?}"),
        }
    }
    if subscribe {
        let sub = json!({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION}});
        socket.send(Message::Text(sub.to_string().into())).await?;
    }
    Ok(socket)
}

async fn connect_all(server: &Arc<Server>, n: usize, subscribe: bool) -> anyhow::Result<Vec<Socket>> {
    let sockets = futures_util::stream::iter(0..n)
        .map(|_| {
            let server = server.clone();
            async move { connect_one(&server, subscribe).await }
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    sockets.into_iter().collect()
}

/// Reads one client's events until `stop`; errors and closes end it early.
async fn receive(
    mut socket: Socket,
    tracker: Arc<Mutex<Tracker>>,
    first_event: Arc<AtomicU64>,
    started: Instant,
) {
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else { continue };
        let now = chrono::Utc::now();
        let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        if let Some(delivery) = delivery_of(&value) {
            let _ = first_event.compare_exchange(
                0,
                started.elapsed().as_micros() as u64,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            if let Ok(mut t) = tracker.lock() {
                t.record(delivery, now);
            }
        } else if value["type"] == "error" || value["type"] == "complete" {
            eprintln!("subscription ended: {value}");
            return;
        }
    }
}

/// Sends `updateLead` at `rate` per second for `duration`; returns how many succeeded.
async fn drive(
    http: reqwest::Client,
    server: Arc<Server>,
    ids: Vec<String>,
    rate: u32,
    duration: Duration,
) -> u64 {
    let start = Instant::now();
    let total = u64::from(rate) * duration.as_secs();
    let ok = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for k in 0..total {
        tokio::time::sleep_until(due(start, k, rate).into()).await;
        let (http, server, ok) = (http.clone(), server.clone(), ok.clone());
        let id = ids[(k as usize) % ids.len()].clone();
        let ids_len = ids.len() as u64;
        tasks.push(tokio::spawn(async move {
            // a score the lead does not have yet (0 at first, one more per round), so every
            // update is a change and commits an event
            let score = (k / ids_len) % 100 + 1;
            let body = json!({"query": UPDATE, "variables": {"input": {"id": id, "score": score as i64}}});
            let res = http
                .post(format!("{}/graphql", server.base))
                .bearer_auth(&server.token)
                .json(&body)
                .send()
                .await;
            if let Ok(res) = res
                && let Ok(body) = res.json::<Value>().await
                && body["errors"].is_null()
            {
                ok.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    ok.load(Ordering::Relaxed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = Arc::new(Server::start(&args).await?);
    let pid = server.pid();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let ids = lead_ids(&http, &server, args.leads).await?;
    let rss_before = rss_kb(pid);

    let connect_start = Instant::now();
    let sockets = connect_all(&server, args.clients, !args.idle_only).await?;
    let connect_secs = connect_start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = rss_kb(pid);
    let per_subscriber_kb = rss_connected.saturating_sub(rss_before) as f64 / args.clients.max(1) as f64;
    let mut report = json!({
        "clients": args.clients,
        "rate": args.rate,
        "connect_and_subscribe_secs": connect_secs,
        "server_rss_kb": {"before": rss_before, "connected": rss_connected, "per_client": per_subscriber_kb},
    });
    if args.idle_only {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }

    let trackers: Vec<Arc<Mutex<Tracker>>> = (0..sockets.len()).map(|_| Arc::default()).collect();
    let first_event = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = sockets
        .into_iter()
        .zip(&trackers)
        .map(|(socket, tracker)| {
            tokio::spawn(receive(
                socket,
                tracker.clone(),
                first_event.clone(),
                connect_start,
            ))
        })
        .collect();
    let ticks_before = server_ticks(pid);
    let drive_start = Instant::now();
    let sent = drive(
        http,
        server.clone(),
        ids,
        args.rate,
        Duration::from_secs(args.duration),
    )
    .await;
    let drain_deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < drain_deadline
        && trackers
            .iter()
            .any(|t| t.lock().map(|t| (t.seen.len() as u64) < sent).unwrap_or(false))
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu_secs = server_ticks(pid).saturating_sub(ticks_before) as f64 / 100.0;
    let wall = drive_start.elapsed().as_secs_f64();
    for reader in &readers {
        reader.abort();
    }
    let mut all = Vec::new();
    let (mut lost, mut duplicates) = (0u64, 0u64);
    for tracker in &trackers {
        let t = tracker.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        lost += sent.saturating_sub(t.seen.len() as u64);
        duplicates += t.duplicates;
        all.extend_from_slice(&t.latencies_ms);
    }
    report["events_sent"] = json!(sent);
    report["latency_ms"] = json!(percentiles(&mut all));
    report["lost"] = json!(lost);
    report["duplicates"] = json!(duplicates);
    report["server_cpu"] =
        json!({"secs": cpu_secs, "wall_secs": wall, "cores_used": cpu_secs / wall.max(0.001)});
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_messages_carry_a_delivery() {
        let message = json!({"id": "1", "type": "next", "payload": {"data": {"leadChanged": {
            "cursor": "c1", "type": "UPDATED", "at": "2026-01-02T03:04:05.123456Z", "lead": {"id": "l"}}}}});
        let delivery = delivery_of(&message).unwrap();
        assert_eq!(delivery.cursor, "c1");
        assert_eq!(delivery.at.timestamp_subsec_micros(), 123_456);
        assert!(delivery_of(&json!({"type": "complete", "id": "1"})).is_none());
    }

    #[test]
    fn duplicates_are_counted_once_and_not_timed() {
        let mut t = Tracker::default();
        let at = chrono::Utc::now();
        for cursor in ["a", "b", "a"] {
            t.record(
                Delivery {
                    cursor: cursor.into(),
                    at,
                },
                at + chrono::Duration::milliseconds(5),
            );
        }
        assert_eq!((t.seen.len(), t.duplicates, t.latencies_ms.len()), (2, 1, 2));
        assert!((t.latencies_ms[0] - 5.0).abs() < 1e-9);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(
            percentiles(&mut samples),
            Percentiles {
                p50: 50.0,
                p99: 99.0,
                max: 100.0,
                samples: 100
            }
        );
        assert_eq!(percentiles(&mut []).samples, 0);
    }

    #[test]
    fn proc_files_are_parsed() {
        assert_eq!(vm_rss_kb("Name:\tleadgate\nVmRSS:\t   12345 kB\n"), Some(12345));
        let stat = "42 (lead gate) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0";
        assert_eq!(cpu_ticks(stat), Some(175));
    }

    #[test]
    fn events_are_paced_evenly() {
        let start = Instant::now();
        assert_eq!(due(start, 10, 10) - start, Duration::from_secs(1));
        assert_eq!(due(start, 1, 50) - start, Duration::from_millis(20));
    }
}
