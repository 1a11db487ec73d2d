//! The enrichment benchmark: a fake People Data Labs bulk endpoint in this process, the release
//! `leadgate` server as a child, and closed-loop GraphQL clients measuring a page of 50 leads
//! with `person`, `company` and `emailVerification` cold, warm, behind a rate-limited provider,
//! and under 200 identical concurrent requests. See bench/README.md, section "Enrichment".
//!
//! It talks to leadgate only as a client would: the CLI (`workspace`, `seed`, `token`), HTTP
//! (`/graphql`, `/metrics`, `/readyz`) and `/proc` for the server's CPU time and peak RSS.
//! Run it through `bench/enrich.sh`, which builds both binaries first.

mod common;

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use clap::{Parser, ValueEnum};
use common::{
    Leadgate, Row, Server, clk_tck, cpu_ticks, markdown, psql, round1, round2, round3, row, server_env,
    status_mb, table,
};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// HS256 secret for the bench server only (48 bytes).
const JWT_SECRET: &str = "leadgate-bench-only-secret-0123456789abcdefghijk";
const WORKSPACE: &str = "bench";
const DATA_SEED: &str = "1";
const PDL_KEY: &str = "bench-key-0000";
const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";
const PG_DB: &str = "leadgate_bench_enrich";
/// Leads per page under test, and how far apart the kept cursors are.
const PAGE: usize = 50;
/// Pages in the sequential cold run and in the warm set.
const COLD_SEQUENTIAL_PAGES: usize = 100;
const WARM_PAGES: usize = 200;
const CLIENTS: usize = 16;
const IDENTICAL_REQUESTS: usize = 200;
/// The job title the fake PDL gives everyone: tells a PDL answer from the sandbox's in a response.
const PDL_TITLE: &str = "director of revenue operations";

const PAGE_QUERY: &str = "query EnrichPage($after: String) { leads(first: 50, after: $after) { edges { node { \
    id email person { fullName title seniority } company { name industry employeeCount } \
    emailVerification { status score } } } } }";
const WALK_QUERY: &str = "query Walk($after: String) { leads(first: 500, after: $after) { \
    edges { cursor } pageInfo { hasNextPage endCursor } } }";
const PROBE_QUERY: &str = "query Probe($after: String) { leads(first: 50, after: $after) { edges { node { \
    person(policy: CACHE_ONLY) { fullName } company(policy: CACHE_ONLY) { name } \
    emailVerification(policy: CACHE_ONLY) { status } } } } }";
const CONFIGURE: &str = "mutation Configure($input: ConfigureProviderInput!) { configureProvider(input: $input) { \
    provider { name enabled ratePerSecond } userErrors { field message } } }";
const WATERFALL: &str = "mutation Waterfall($group: EnrichmentGroup!, $providers: [ProviderName!]!) { \
    setWaterfall(group: $group, providers: $providers) { userErrors { field message } } }";

#[derive(Parser, Debug)]
#[command(about = "Benchmarks leadgate's lazy enrichment against a fake People Data Labs")]
struct Args {
    /// Leads in the `bench` workspace (default 1,000,000; 200,000 with --quick).
    #[arg(long)]
    leads: Option<u64>,
    /// Seconds of each timed concurrent scenario (default 30; 5 with --quick).
    #[arg(long)]
    duration: Option<u64>,
    #[arg(long, value_enum, default_value_t = Backend::Sqlite)]
    backend: Backend,
    /// Development run: 200,000 leads and 5-second scenarios (explicit flags still win).
    #[arg(long)]
    quick: bool,
    /// Re-create the database even if it holds the leads.
    #[arg(long)]
    reseed: bool,
    /// Latency of the fake PDL per call and of the sandbox, in ms.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Calls per second allowed to PDL in the rate-limited scenario (leadgate's and the fake's limit).
    #[arg(long, default_value_t = 5)]
    rate: u32,
    /// The leadgate binary (default: target/release/leadgate).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// An extra `LEADGATE_*` setting for the server, e.g. `LEADGATE_ENRICHMENT_CACHE_MB=64`
    /// (repeatable; recorded in the results).
    #[arg(long, value_name = "KEY=VALUE")]
    server_env: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Backend {
    Sqlite,
    Postgres,
}

// ------------------------------------------------------------------ the fake People Data Labs

/// One call the fake received.
#[derive(Clone, Debug)]
struct FakeCall {
    at: Instant,
    elements: usize,
    status: u16,
}

#[derive(Default)]
struct FakeState {
    calls: Vec<FakeCall>,
    /// Calls that named each lead in `metadata.lead` (every call that reached the fake).
    per_lead: HashMap<String, u32>,
    /// Its own limit in calls per second (sliding window); `None` for no limit.
    limit: Option<u32>,
    /// Arrival times of the answered calls of the last second.
    window: VecDeque<Instant>,
    sent_429: u64,
    rejected: u64,
}

/// PDL's `POST /v5/person/bulk`: 50 ms per call, every element a 200 with a person record.
struct FakePdl {
    latency: Duration,
    state: Mutex<FakeState>,
}

impl FakePdl {
    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_limit(&self, limit: Option<u32>) {
        let mut s = self.lock();
        s.limit = limit;
        s.window.clear();
    }

    fn snapshot(&self) -> FakeSnapshot {
        let s = self.lock();
        FakeSnapshot {
            calls: s.calls.len(),
            per_lead: s.per_lead.clone(),
            sent_429: s.sent_429,
            rejected: s.rejected,
        }
    }

    /// Calls that arrived in `[from, to]`.
    fn calls_between(&self, from: Instant, to: Instant) -> Vec<FakeCall> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.at >= from && c.at <= to)
            .cloned()
            .collect()
    }
}

#[derive(Clone, Default)]
struct FakeSnapshot {
    calls: usize,
    per_lead: HashMap<String, u32>,
    sent_429: u64,
    rejected: u64,
}

impl FakeSnapshot {
    /// The most calls any one lead saw between `self` and `later`, and how many leads were named.
    fn per_lead_delta(&self, later: &FakeSnapshot) -> (u32, usize) {
        let mut max = 0;
        let mut leads = 0;
        for (lead, n) in &later.per_lead {
            let d = n - self.per_lead.get(lead).copied().unwrap_or(0);
            if d > 0 {
                leads += 1;
                max = max.max(d);
            }
        }
        (max, leads)
    }
}

fn pdl_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"status": status.as_u16(), "error": {"type": kind, "message": message}});
    (status, axum::Json(body)).into_response()
}

async fn fake_bulk(State(fake): State<Arc<FakePdl>>, headers: HeaderMap, body: Bytes) -> Response {
    let arrived = Instant::now();
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(PDL_KEY) {
        fake.lock().rejected += 1;
        return pdl_error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "Invalid API key",
        );
    }
    let requests = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(mut top)) => match top.remove("requests") {
            Some(Value::Array(requests)) => requests,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    if requests.is_empty() {
        fake.lock().rejected += 1;
        return pdl_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "`requests` must be a non-empty array",
        );
    }
    let limited = {
        let mut s = fake.lock();
        for r in &requests {
            if let Some(lead) = r.pointer("/metadata/lead").and_then(Value::as_str) {
                *s.per_lead.entry(lead.to_owned()).or_insert(0) += 1;
            }
        }
        while s
            .window
            .front()
            .is_some_and(|t| arrived.duration_since(*t) >= Duration::from_secs(1))
        {
            s.window.pop_front();
        }
        let limited = s.limit.is_some_and(|l| s.window.len() >= l as usize);
        if limited {
            s.sent_429 += 1;
        } else {
            s.window.push_back(arrived);
        }
        s.calls.push(FakeCall {
            at: arrived,
            elements: requests.len(),
            status: if limited { 429 } else { 200 },
        });
        limited
    };
    if limited {
        return pdl_error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "An error occurred due to requests hitting the API too quickly",
        );
    }
    tokio::time::sleep(fake.latency).await;
    let elements: Vec<Value> = requests.iter().map(person_element).collect();
    (StatusCode::OK, axum::Json(Value::Array(elements))).into_response()
}

fn first_text(params: &Value, key: &str) -> Option<String> {
    match params.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => items.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// A bulk element in PDL's shape, built from what the request asked about.
fn person_element(request: &Value) -> Value {
    let params = request.get("params").cloned().unwrap_or(Value::Null);
    let first = first_text(&params, "first_name")
        .unwrap_or_default()
        .to_lowercase();
    let last = first_text(&params, "last_name")
        .unwrap_or_default()
        .to_lowercase();
    let full = first_text(&params, "name")
        .map(|n| n.to_lowercase())
        .unwrap_or_else(|| format!("{first} {last}").trim().to_owned());
    let company = first_text(&params, "company");
    let profile = first_text(&params, "profile").map(|p| {
        p.trim_start_matches("https://")
            .trim_start_matches("www.")
            .to_owned()
    });
    let username = profile
        .as_deref()
        .and_then(|p| p.rsplit('/').find(|s| !s.is_empty()))
        .map(str::to_owned);
    let lead = request.pointer("/metadata/lead").cloned().unwrap_or(Value::Null);
    json!({
        "status": 200,
        "likelihood": 8,
        "data": {
            "id": format!("bench_{}", lead.as_str().unwrap_or("unknown")),
            "full_name": full,
            "first_name": first,
            "last_name": last,
            "work_email": first_text(&params, "email"),
            "linkedin_url": profile,
            "linkedin_username": username,
            "twitter_username": null,
            "job_title": PDL_TITLE,
            "job_title_role": "sales",
            "job_title_levels": ["director"],
            "job_company_name": company,
            "location_name": "berlin, berlin, germany",
            "mobile_phone": null,
            "phone_numbers": [],
        },
        "metadata": request.get("metadata").cloned().unwrap_or(Value::Null),
    })
}

/// Serves the fake on its own single-threaded runtime, so the load client's tasks never delay
/// its answers; returns its base URL (`…/v5`).
fn start_fake(fake: Arc<FakePdl>) -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("fake-pdl".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("fake PDL: cannot start a runtime: {e}");
                    return;
                }
            };
            runtime.block_on(async move {
                let app = axum::Router::new()
                    .route("/v5/person/bulk", axum::routing::post(fake_bulk))
                    .with_state(fake);
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        if let Err(e) = axum::serve(listener, app).await {
                            eprintln!("fake PDL stopped: {e}");
                        }
                    }
                    Err(e) => eprintln!("fake PDL: {e}"),
                }
            });
        })?;
    Ok(format!("http://{addr}/v5"))
}

// ------------------------------------------------------------------ leadgate: CLI and server

struct Env {
    lg: Leadgate,
    backend: Backend,
    sqlite_file: PathBuf,
    leads: u64,
}

impl std::ops::Deref for Env {
    type Target = Leadgate;
    fn deref(&self) -> &Leadgate {
        &self.lg
    }
}

impl Env {
    async fn psql(&self, sql: &str) -> anyhow::Result<String> {
        psql(PG_SERVER, sql).await
    }

    /// Leads in the `bench` workspace, `None` when it does not exist.
    async fn workspace_leads(&self) -> anyhow::Result<Option<u64>> {
        let list = self.run(&["workspace", "list"]).await?;
        Ok(list.lines().find_map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            (cols.first() == Some(&WORKSPACE))
                .then(|| cols.get(2)?.split_whitespace().next()?.parse().ok())
                .flatten()
        }))
    }

    async fn wipe(&self) -> anyhow::Result<()> {
        match self.backend {
            Backend::Sqlite => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut name = self.sqlite_file.clone().into_os_string();
                    name.push(suffix);
                    let path = PathBuf::from(name);
                    if path.exists() {
                        std::fs::remove_file(&path)
                            .with_context(|| format!("cannot remove {}", path.display()))?;
                    }
                }
            }
            Backend::Postgres => {
                self.psql(&format!("DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)"))
                    .await?;
                self.psql(&format!("CREATE DATABASE {PG_DB}")).await?;
            }
        }
        Ok(())
    }

    /// Makes sure the `bench` workspace holds exactly `leads` leads; returns the seed's wall time
    /// when it seeded.
    async fn prepare(&self, reseed: bool) -> anyhow::Result<Option<f64>> {
        if self.backend == Backend::Postgres {
            let exists = self
                .psql(&format!("SELECT 1 FROM pg_database WHERE datname = '{PG_DB}'"))
                .await?;
            if exists != "1" {
                eprintln!("== postgres: creating database {PG_DB}");
                self.psql(&format!("CREATE DATABASE {PG_DB}")).await?;
            }
        }
        if reseed {
            self.wipe().await?;
        }
        self.run(&["migrate"]).await?;
        match self.workspace_leads().await? {
            Some(n) if n == self.leads => {
                eprintln!(
                    "== {:?}: reusing the `{WORKSPACE}` workspace ({n} leads)",
                    self.backend
                );
                return Ok(None);
            }
            Some(n) => {
                eprintln!(
                    "== {:?}: the workspace holds {n} leads, not {}; re-creating the database",
                    self.backend, self.leads
                );
                self.wipe().await?;
                self.run(&["migrate"]).await?;
            }
            None => {}
        }
        self.run(&["workspace", "create", WORKSPACE, "--name", "Enrichment benchmark"])
            .await?;
        eprintln!("== {:?}: seeding {} leads", self.backend, self.leads);
        let started = Instant::now();
        let status = self
            .leadgate()
            .args([
                "seed",
                "--workspace",
                WORKSPACE,
                "--leads",
                &self.leads.to_string(),
                "--seed",
                DATA_SEED,
            ])
            .stdout(Stdio::null())
            .status()
            .await?;
        if !status.success() {
            bail!("`leadgate seed` failed");
        }
        Ok(Some(started.elapsed().as_secs_f64()))
    }

    /// Starts `leadgate serve` with the master key and the fake PDL's URL.
    async fn serve(&self, pdl_url: &str, master_key: &str, log: &Path) -> anyhow::Result<Server> {
        let env = [
            ("LEADGATE_PROVIDER_URLS", format!("pdl={pdl_url}")),
            ("LEADGATE_MASTER_KEY", master_key.to_owned()),
        ];
        self.lg.serve(&env, log).await
    }
}

// ------------------------------------------------------------------ /proc

/// utime + stime of a process's threads in clock ticks, summed by thread name (digits dropped,
/// so `sqlx-sqlite-worker-3` counts with the other SQLite workers).
fn thread_ticks(pid: u32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let tid = task.file_name().to_string_lossy().into_owned();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
        let name: String = comm
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
            .to_owned();
        *out.entry(name).or_insert(0) += cpu_ticks(&format!("{pid}/task/{tid}"));
    }
    out
}

// ------------------------------------------------------------------ GraphQL and metrics

#[derive(Clone)]
struct Gql {
    http: reqwest::Client,
    url: String,
    base: String,
    token: String,
}

impl Gql {
    async fn post_raw(&self, body: Bytes) -> Result<(u16, Bytes), String> {
        let reply = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/graphql-response+json")
            .header("authorization", format!("Bearer {}", self.token))
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = reply.status().as_u16();
        let bytes = reply.bytes().await.map_err(|e| format!("body failed: {e}"))?;
        Ok((status, bytes))
    }

    /// A request that must succeed without GraphQL errors; returns `data`.
    async fn query(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let body = serde_json::to_vec(&json!({"query": query, "variables": variables}))?;
        let (status, bytes) = self
            .post_raw(Bytes::from(body))
            .await
            .map_err(anyhow::Error::msg)?;
        let reply: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)))?;
        if status != 200 || reply.get("errors").is_some() {
            bail!("HTTP {status}: {reply}");
        }
        Ok(reply.get("data").cloned().unwrap_or(Value::Null))
    }

    async fn metrics(&self) -> anyhow::Result<Metrics> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(Metrics::parse(&text))
    }
}

/// Prometheus counters by series (`name{labels}`).
#[derive(Clone, Default, Debug)]
struct Metrics(BTreeMap<String, f64>);

impl Metrics {
    fn parse(text: &str) -> Self {
        let mut series = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some((name, value)) = line.rsplit_once(' ')
                && let Ok(v) = value.parse::<f64>()
            {
                series.insert(name.to_owned(), v);
            }
        }
        Self(series)
    }

    fn delta(&self, later: &Metrics) -> Metrics {
        Metrics(
            later
                .0
                .iter()
                .map(|(k, v)| (k.clone(), v - self.0.get(k).copied().unwrap_or(0.0)))
                .filter(|(_, d)| *d != 0.0)
                .collect(),
        )
    }

    /// Sum of the series of `family` whose labels include every `label="value"` in `with`.
    fn sum(&self, family: &str, with: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with(family) && k[family.len()..].starts_with('{'))
            .filter(|(k, _)| with.iter().all(|(l, v)| k.contains(&format!("{l}=\"{v}\""))))
            .map(|(_, v)| v)
            .sum::<f64>()
            + 0.0 // an empty f64 sum is -0.0
    }

    /// Provider calls by `provider/group` (all outcomes).
    fn calls_by_provider_group(&self) -> BTreeMap<String, f64> {
        self.calls_by(&["provider", "group"])
    }

    /// Provider calls keyed by the values of `labels`, joined with `/` (all other labels summed).
    fn calls_by(&self, labels: &[&str]) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.0 {
            if !k.starts_with("leadgate_provider_calls_total{") {
                continue;
            }
            let label = |name: &str| {
                k.split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("?")
                    .to_owned()
            };
            let key: Vec<String> = labels.iter().map(|l| label(l)).collect();
            *out.entry(key.join("/")).or_insert(0.0) += v;
        }
        out
    }
}

// ------------------------------------------------------------------ load

/// Page numbers handed to clients: fresh pages from a shared pool, or a fixed set in a cycle.
enum Pages {
    /// Takes the pool's next page while it is below `limit`; consumed pages stay a prefix of
    /// the walk, which is how a later run finds the first page never enriched.
    Fresh {
        pool: Arc<AtomicUsize>,
        limit: usize,
    },
    Cycle {
        set: Vec<usize>,
        next: AtomicUsize,
    },
}

impl Pages {
    fn take(&self) -> Option<usize> {
        match self {
            Pages::Fresh { pool, limit } => pool
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < *limit).then_some(n + 1)
                })
                .ok(),
            Pages::Cycle { set, next } => {
                let i = next.fetch_add(1, Ordering::Relaxed);
                set.get(i % set.len().max(1)).copied()
            }
        }
    }
}

/// How a person group was served on one page, judged from the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Served {
    Pdl,
    Sandbox,
    Mixed,
    Unknown,
}

#[derive(Clone, Debug)]
struct Sample {
    ms: f64,
    ok: bool,
    served: Served,
    credits: u64,
    calls: u64,
    cache_hits: u64,
    nulls: [u64; 3],
    error: Option<String>,
}

/// Reads one page response. `full` parses and checks everything; otherwise the body is parsed
/// only when it mentions errors.
fn inspect(status: u16, body: &[u8], full: bool) -> Sample {
    let mut s = Sample {
        ms: 0.0,
        ok: status == 200,
        served: Served::Unknown,
        credits: 0,
        calls: 0,
        cache_hits: 0,
        nulls: [0; 3],
        error: None,
    };
    if status != 200 {
        s.error = Some(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
        return s;
    }
    let mentions_errors = body.windows(9).any(|w| w == b"\"errors\":");
    if !full && !mentions_errors {
        return s;
    }
    let reply: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            s.ok = false;
            s.error = Some(format!("unparsable response: {e}"));
            return s;
        }
    };
    if let Some(errors) = reply.get("errors") {
        s.ok = false;
        let first = errors
            .pointer("/0/message")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let code = errors
            .pointer("/0/extensions/code")
            .and_then(Value::as_str)
            .unwrap_or("-");
        s.error = Some(format!("{code}: {first}"));
    }
    let edges = reply
        .pointer("/data/leads/edges")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if edges.len() != PAGE && s.error.is_none() {
        s.ok = false;
        s.error = Some(format!("{} edges instead of {PAGE}", edges.len()));
    }
    let (mut pdl, mut other) = (0, 0);
    for edge in &edges {
        let node = &edge["node"];
        for (i, group) in ["person", "company", "emailVerification"].iter().enumerate() {
            if node[group].is_null() {
                s.nulls[i] += 1;
            }
        }
        match node.pointer("/person/title").and_then(Value::as_str) {
            Some(PDL_TITLE) => pdl += 1,
            Some(_) => other += 1,
            None => {}
        }
    }
    s.served = match (pdl, other) {
        (0, 0) => Served::Unknown,
        (_, 0) => Served::Pdl,
        (0, _) => Served::Sandbox,
        _ => Served::Mixed,
    };
    let spend = reply.pointer("/extensions/enrichment");
    let num = |k: &str| spend.and_then(|e| e.get(k)).and_then(Value::as_u64).unwrap_or(0);
    s.credits = num("creditsSpent");
    s.calls = num("providerCalls");
    s.cache_hits = num("cacheHits");
    s
}

async fn one_request(gql: &Gql, body: Bytes, full: bool) -> Sample {
    let started = Instant::now();
    let mut sample = match gql.post_raw(body).await {
        Ok((status, bytes)) => inspect(status, &bytes, full),
        Err(e) => Sample {
            ms: 0.0,
            ok: false,
            served: Served::Unknown,
            credits: 0,
            calls: 0,
            cache_hits: 0,
            nulls: [0; 3],
            error: Some(e),
        },
    };
    sample.ms = started.elapsed().as_secs_f64() * 1e3;
    sample
}

/// `clients` closed-loop clients until `duration` passes or the pages run out; requests in
/// flight at the deadline complete and count.
async fn closed_loop(
    gql: &Gql,
    bodies: &Arc<Vec<Bytes>>,
    pages: Pages,
    clients: usize,
    duration: Duration,
    full: bool,
) -> (Vec<Sample>, f64, bool) {
    let pages = Arc::new(pages);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let gql = gql.clone();
        let bodies = bodies.clone();
        let pages = pages.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut ran_out = false;
            while Instant::now() < deadline {
                let Some(page) = pages.take() else {
                    ran_out = true;
                    break;
                };
                samples.push(one_request(&gql, bodies[page].clone(), full).await);
            }
            (samples, ran_out)
        }));
    }
    let mut all = Vec::new();
    let mut ran_out = false;
    for task in tasks {
        if let Ok((samples, out)) = task.await {
            all.extend(samples);
            ran_out |= out;
        }
    }
    (all, started.elapsed().as_secs_f64(), ran_out)
}

// ------------------------------------------------------------------ figures

#[derive(Serialize, Default, Clone)]
struct Latency {
    n: usize,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p99_9_ms: f64,
    max_ms: f64,
    mean_ms: f64,
}

fn latency(samples: &[&Sample]) -> Latency {
    let mut ms: Vec<f64> = samples.iter().map(|s| s.ms).collect();
    if ms.is_empty() {
        return Latency::default();
    }
    ms.sort_by(f64::total_cmp);
    // nearest rank
    let pct = |p: f64| {
        let rank = ((p / 100.0) * ms.len() as f64).ceil() as usize;
        round2(ms[rank.clamp(1, ms.len()) - 1])
    };
    Latency {
        n: ms.len(),
        p50_ms: pct(50.0),
        p90_ms: pct(90.0),
        p99_ms: pct(99.0),
        p99_9_ms: pct(99.9),
        max_ms: round2(ms[ms.len() - 1]),
        mean_ms: round2(ms.iter().sum::<f64>() / ms.len() as f64),
    }
}

/// Everything measured around one scenario.
#[derive(Serialize, Default)]
struct Scenario {
    name: String,
    clients: usize,
    requests: usize,
    ok: usize,
    errors: usize,
    first_errors: Vec<String>,
    elapsed_s: f64,
    ok_rps: f64,
    pages_ran_out: bool,
    latency: Latency,
    /// From leadgate's `/metrics`: provider calls by `provider/group` during the scenario.
    provider_calls: BTreeMap<String, f64>,
    provider_calls_per_page: BTreeMap<String, f64>,
    /// Provider calls by `provider/group/outcome` (each attempt counts, retries included).
    provider_calls_by_outcome: BTreeMap<String, f64>,
    provider_skips: BTreeMap<String, f64>,
    /// From the fake PDL.
    pdl_calls: usize,
    pdl_calls_per_page: f64,
    pdl_elements_per_call: f64,
    pdl_max_calls_per_lead: u32,
    pdl_leads_named: usize,
    pdl_429s: u64,
    /// Calls the fake refused as malformed or with a wrong key.
    pdl_rejected: u64,
    /// From `extensions.enrichment`, averaged per request.
    credits_per_page: f64,
    extension_calls_per_page: f64,
    cache_hits_per_page: f64,
    /// Leads per request whose group came back null (person, company, emailVerification).
    nulls_per_page: [f64; 3],
    memory_cache_misses_per_request: f64,
    store_lookups_per_request: f64,
    server_cpu_us_per_req: f64,
    server_cpu_cores: f64,
    /// Server CPU per request by thread name (tokio workers, SQLite workers, blocking pool…).
    server_cpu_us_per_req_by_thread: BTreeMap<String, f64>,
    bench_process_cpu_cores: f64,
    server_rss_mb_after: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra: Option<Value>,
}

/// Snapshots taken before a scenario.
struct Before {
    at: Instant,
    metrics: Metrics,
    fake: FakeSnapshot,
    server_ticks: u64,
    server_threads: BTreeMap<String, u64>,
    own_ticks: u64,
}

struct Bench {
    gql: Gql,
    fake: Arc<FakePdl>,
    server_pid: u32,
    clk_tck: f64,
}

impl Bench {
    async fn before(&self) -> anyhow::Result<Before> {
        Ok(Before {
            at: Instant::now(),
            metrics: self.gql.metrics().await?,
            fake: self.fake.snapshot(),
            server_ticks: cpu_ticks(&self.server_pid.to_string()),
            server_threads: thread_ticks(self.server_pid),
            own_ticks: cpu_ticks("self"),
        })
    }

    async fn after(
        &self,
        name: &str,
        clients: usize,
        before: Before,
        samples: &[Sample],
        elapsed: f64,
    ) -> anyhow::Result<Scenario> {
        let server_ticks = cpu_ticks(&self.server_pid.to_string());
        let threads = thread_ticks(self.server_pid);
        let own_ticks = cpu_ticks("self");
        let now = Instant::now();
        let metrics = before.metrics.delta(&self.gql.metrics().await?);
        let fake_now = self.fake.snapshot();
        let calls = self.fake.calls_between(before.at, now);
        let (max_per_lead, leads_named) = before.fake.per_lead_delta(&fake_now);
        let requests = samples.len();
        let ok = samples.iter().filter(|s| s.ok).count();
        let per = |x: f64| {
            if requests > 0 {
                round3(x / requests as f64)
            } else {
                0.0
            }
        };
        let cpu_s = (server_ticks - before.server_ticks) as f64 / self.clk_tck;
        let mut first_errors: Vec<String> = Vec::new();
        for e in samples.iter().filter_map(|s| s.error.clone()) {
            if first_errors.len() < 5 && !first_errors.contains(&e) {
                first_errors.push(e);
            }
        }
        let provider_calls = metrics.calls_by_provider_group();
        let provider_calls_by_outcome = metrics.calls_by(&["provider", "group", "outcome"]);
        let provider_calls_per_page = provider_calls.iter().map(|(k, v)| (k.clone(), per(*v))).collect();
        let provider_skips = metrics
            .0
            .iter()
            .filter(|(k, _)| k.starts_with("leadgate_provider_skips_total{"))
            .map(|(k, v)| {
                (
                    k.trim_start_matches("leadgate_provider_skips_total").to_owned(),
                    *v,
                )
            })
            .collect();
        let all: Vec<&Sample> = samples.iter().collect();
        Ok(Scenario {
            name: name.to_owned(),
            clients,
            requests,
            ok,
            errors: requests - ok,
            first_errors,
            elapsed_s: round3(elapsed),
            ok_rps: if elapsed > 0.0 {
                round1(ok as f64 / elapsed)
            } else {
                0.0
            },
            pages_ran_out: false,
            latency: latency(&all),
            provider_calls,
            provider_calls_per_page,
            provider_calls_by_outcome,
            provider_skips,
            pdl_calls: fake_now.calls - before.fake.calls,
            pdl_calls_per_page: per((fake_now.calls - before.fake.calls) as f64),
            pdl_elements_per_call: if calls.is_empty() {
                0.0
            } else {
                round1(calls.iter().map(|c| c.elements).sum::<usize>() as f64 / calls.len() as f64)
            },
            pdl_max_calls_per_lead: max_per_lead,
            pdl_leads_named: leads_named,
            pdl_429s: fake_now.sent_429 - before.fake.sent_429,
            pdl_rejected: fake_now.rejected - before.fake.rejected,
            credits_per_page: per(samples.iter().map(|s| s.credits).sum::<u64>() as f64),
            extension_calls_per_page: per(samples.iter().map(|s| s.calls).sum::<u64>() as f64),
            cache_hits_per_page: per(samples.iter().map(|s| s.cache_hits).sum::<u64>() as f64),
            nulls_per_page: [0, 1, 2].map(|i| per(samples.iter().map(|s| s.nulls[i]).sum::<u64>() as f64)),
            memory_cache_misses_per_request: per(metrics.sum(
                "leadgate_enrichment_cache_lookups_total",
                &[("tier", "memory"), ("result", "miss")],
            )),
            store_lookups_per_request: per(
                metrics.sum("leadgate_enrichment_cache_lookups_total", &[("tier", "store")])
            ),
            server_cpu_us_per_req: if ok > 0 {
                round1(cpu_s * 1e6 / ok as f64)
            } else {
                0.0
            },
            server_cpu_cores: if elapsed > 0.0 {
                round2(cpu_s / elapsed)
            } else {
                0.0
            },
            server_cpu_us_per_req_by_thread: threads
                .iter()
                .map(|(name, t)| {
                    let d = t - before.server_threads.get(name).copied().unwrap_or(0).min(*t);
                    (name.clone(), d)
                })
                .filter(|(_, d)| *d > 0 && ok > 0)
                .map(|(name, d)| (name, round1(d as f64 / self.clk_tck * 1e6 / ok as f64)))
                .collect(),
            bench_process_cpu_cores: if elapsed > 0.0 {
                round2((own_ticks - before.own_ticks) as f64 / self.clk_tck / elapsed)
            } else {
                0.0
            },
            server_rss_mb_after: status_mb(self.server_pid, "VmRSS"),
            extra: None,
        })
    }
}

/// The most calls in any one-second sliding window (`[t, t + 1 s)`).
fn max_per_second(calls: &[FakeCall]) -> usize {
    let mut times: Vec<Instant> = calls.iter().map(|c| c.at).collect();
    times.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= Duration::from_secs(1) {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// Time between consecutive calls as they arrived: the smallest, how many were closer than
/// 200 ms, and the median.
fn gaps(calls: &[FakeCall]) -> Value {
    let mut times: Vec<Instant> = calls.iter().map(|c| c.at).collect();
    times.sort();
    let mut gaps: Vec<f64> = times
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64() * 1e3)
        .collect();
    gaps.sort_by(f64::total_cmp);
    json!({
        "min_ms": gaps.first().map(|g| round2(*g)),
        "median_ms": gaps.get(gaps.len() / 2).map(|g| round2(*g)),
        "under_200_ms": gaps.iter().filter(|g| **g < 200.0).count(),
        "under_100_ms": gaps.iter().filter(|g| **g < 100.0).count(),
    })
}

/// Calls per whole second since the start of the scenario.
fn calls_per_second(calls: &[FakeCall], from: Instant) -> Vec<usize> {
    let mut buckets: Vec<usize> = Vec::new();
    for c in calls {
        let i = c.at.duration_since(from).as_secs() as usize;
        if buckets.len() <= i {
            buckets.resize(i + 1, 0);
        }
        buckets[i] += 1;
    }
    buckets
}

// ------------------------------------------------------------------ setup through GraphQL

async fn configure(gql: &Gql, input: Value) -> anyhow::Result<()> {
    let data = gql.query(CONFIGURE, json!({"input": input})).await?;
    let errors = &data["configureProvider"]["userErrors"];
    if errors.as_array().is_some_and(|e| !e.is_empty()) {
        bail!("configureProvider({input}) refused: {errors}");
    }
    Ok(())
}

async fn configure_all(gql: &Gql, latency_ms: u64) -> anyhow::Result<()> {
    configure(
        gql,
        json!({"provider": "PEOPLE_DATA_LABS", "apiKey": PDL_KEY, "enabled": true, "ratePerSecond": null,
               "dailyCreditCap": null, "monthlyCreditCap": null}),
    )
    .await?;
    configure(
        gql,
        json!({"provider": "SANDBOX", "enabled": true,
               "options": {"latencyMs": latency_ms, "missRate": 0, "creditsPerHit": 1}}),
    )
    .await?;
    for (group, providers) in [
        ("PERSON", json!(["PEOPLE_DATA_LABS", "SANDBOX"])),
        ("COMPANY", json!(["SANDBOX"])),
        ("EMAIL_VERIFICATION", json!(["SANDBOX"])),
    ] {
        let data = gql
            .query(WATERFALL, json!({"group": group, "providers": providers}))
            .await?;
        let errors = &data["setWaterfall"]["userErrors"];
        if errors.as_array().is_some_and(|e| !e.is_empty()) {
            bail!("setWaterfall({group}) refused: {errors}");
        }
    }
    Ok(())
}

/// `after` cursors of every full page of 50 in the default order (`None` for the first page).
async fn walk(gql: &Gql, leads: u64) -> anyhow::Result<Vec<Option<String>>> {
    let started = Instant::now();
    let mut pages: Vec<Option<String>> = vec![None];
    let mut after: Option<String> = None;
    let mut seen = 0usize;
    loop {
        let data = gql.query(WALK_QUERY, json!({"after": after})).await?;
        let conn = &data["leads"];
        for edge in conn["edges"].as_array().map(Vec::as_slice).unwrap_or_default() {
            seen += 1;
            if seen.is_multiple_of(PAGE)
                && let Some(c) = edge["cursor"].as_str()
            {
                pages.push(Some(c.to_owned()));
            }
        }
        if seen.is_multiple_of(100_000) {
            eprintln!("   walked {seen} leads");
        }
        if conn["pageInfo"]["hasNextPage"].as_bool() != Some(true) {
            break;
        }
        after = conn["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    // the cursor of the very last lead opens no page
    if seen.is_multiple_of(PAGE) {
        pages.pop();
    }
    if seen as u64 != leads {
        bail!("walked {seen} leads, expected {leads}");
    }
    eprintln!(
        "== walked {seen} leads in {:.1} s: {} pages of {PAGE}",
        started.elapsed().as_secs_f64(),
        pages.len()
    );
    Ok(pages)
}

/// Whether any lead of the page has a cached or stored enrichment (asks with CACHE_ONLY).
async fn touched(gql: &Gql, after: &Option<String>) -> anyhow::Result<bool> {
    let data = gql.query(PROBE_QUERY, json!({"after": after})).await?;
    let edges = data["leads"]["edges"].as_array().cloned().unwrap_or_default();
    Ok(edges.iter().any(|e| {
        ["person", "company", "emailVerification"]
            .iter()
            .any(|g| !e["node"][g].is_null())
    }))
}

/// The first page never enriched. Runs consume pages in walk order, so enriched pages form a
/// prefix: a binary search finds its end, and a sample after it is checked.
async fn first_fresh(gql: &Gql, pages: &[Option<String>]) -> anyhow::Result<usize> {
    let (mut lo, mut hi) = (0, pages.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if touched(gql, &pages[mid]).await? {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let rest = pages.len() - lo;
    for k in 0..8.min(rest) {
        let i = lo + k * rest / 8.min(rest).max(1);
        if touched(gql, &pages[i]).await? {
            bail!("page {i} was enriched although page {lo} was not: run again with --reseed");
        }
    }
    Ok(lo)
}

// ------------------------------------------------------------------ output

fn fmt_calls(per_page: &BTreeMap<String, f64>) -> String {
    if per_page.is_empty() {
        return "none".into();
    }
    per_page
        .iter()
        .map(|(k, v)| format!("{k} {v:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Calls per page summed by provider.
fn by_provider(per_page: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (k, v) in per_page {
        let provider = k.split('/').next().unwrap_or("?").to_owned();
        *out.entry(provider).or_insert(0.0) += v;
    }
    out
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let git = std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let dirty = std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "status",
            "--porcelain",
            "--untracked-files=no",
        ])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu,
        "loadavg_at_start": loadavg.split_whitespace().take(3).collect::<Vec<_>>(),
        "git_rev": git,
        "git_dirty": dirty,
    })
}

// ------------------------------------------------------------------ main

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let leads = args.leads.unwrap_or(if args.quick { 200_000 } else { 1_000_000 });
    let duration = Duration::from_secs(args.duration.unwrap_or(if args.quick { 5 } else { 30 }).max(1));
    if leads < (PAGE * (COLD_SEQUENTIAL_PAGES + WARM_PAGES + 2)) as u64 {
        bail!(
            "--leads must be at least {}",
            PAGE * (COLD_SEQUENTIAL_PAGES + WARM_PAGES + 2)
        );
    }
    let run_started = Instant::now();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let results = root.join("bench/results");
    std::fs::create_dir_all(&results)?;
    let bin = args.bin.clone().unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root.join("target"), PathBuf::from)
            .join("release/leadgate")
    });
    if !bin.exists() {
        bail!(
            "no leadgate binary at {}; build it with `cargo build --release --bin leadgate`",
            bin.display()
        );
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let backend_name = match args.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let sqlite_file = results.join("enrich.sqlite");
    let env = Env {
        lg: Leadgate {
            bin,
            results: results.clone(),
            database_url: match args.backend {
                Backend::Sqlite => format!("sqlite://{}", sqlite_file.display()),
                Backend::Postgres => format!("{PG_SERVER}/{PG_DB}"),
            },
            jwt_secret: JWT_SECRET,
            server_env: server_env(&args.server_env)?,
        },
        backend: args.backend,
        sqlite_file,
        leads,
    };
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let machine_line = format!(
        "{cpus} CPUs shared by the leadgate server, this load client and the fake PDL (same process \
         as the client); nothing pinned"
    );
    eprintln!(
        "== enrichment benchmark: {leads} leads on {backend_name}, {} s per timed scenario",
        duration.as_secs()
    );
    eprintln!("== {machine_line}");
    let machine = machine();

    // 1. the fake PDL
    let fake = Arc::new(FakePdl {
        latency: Duration::from_millis(args.latency_ms),
        state: Mutex::new(FakeState::default()),
    });
    let pdl_url = start_fake(fake.clone())?;
    eprintln!("== fake PDL at {pdl_url}");

    // 2. the database
    let mut seed_s = env.prepare(args.reseed).await?;

    // 3. the server, configured; 4. the pages
    let mut key = [0u8; 32];
    rand::fill(&mut key);
    let master_key = base64::engine::general_purpose::STANDARD.encode(key);
    let log = results.join(format!("{stamp}-enrich-server-{backend_name}.log"));
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()?;
    // a cold c=16 request takes at least one provider latency, which bounds what it can consume
    let latency_s = (args.latency_ms.max(1) as f64) / 1e3;
    let cold_cap = ((CLIENTS as f64 / latency_s) * duration.as_secs_f64()).ceil() as usize + CLIENTS;
    let needed = COLD_SEQUENTIAL_PAGES + WARM_PAGES + 1 + 2 * cold_cap;
    let mut reseeded = false;
    let (server, gql, pages, fresh_from) = loop {
        // minted after every (re)seed: a re-created workspace has a new id
        let token = env
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
        let server = env.serve(&pdl_url, &master_key, &log).await?;
        let gql = Gql {
            http: http.clone(),
            url: format!("{}/graphql", server.base),
            base: server.base.clone(),
            token,
        };
        configure_all(&gql, args.latency_ms).await?;
        let pages = walk(&gql, leads).await?;
        let fresh_from = first_fresh(&gql, &pages).await?;
        let fresh = pages.len() - fresh_from;
        eprintln!(
            "== {fresh} of {} pages never enriched (first: page {fresh_from})",
            pages.len()
        );
        if fresh < needed && pages.len() > fresh && !reseeded {
            eprintln!(
                "== up to {needed} fresh pages may be needed at {} s per scenario; re-creating the database",
                duration.as_secs()
            );
            server.stop().await;
            seed_s = env.prepare(true).await?;
            reseeded = true;
            continue;
        }
        if fresh < needed {
            eprintln!(
                "== warning: {fresh} fresh pages for up to {needed}; the cold c={CLIENTS} scenarios may stop \
                 early (more --leads or a shorter --duration avoids it)"
            );
        }
        break (server, gql, pages, fresh_from);
    };
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        pages
            .iter()
            .map(|after| {
                Bytes::from(
                    serde_json::to_vec(&json!({"query": PAGE_QUERY, "variables": {"after": after}}))
                        .unwrap_or_default(),
                )
            })
            .collect(),
    );
    let pool = Arc::new(AtomicUsize::new(fresh_from));
    let total = pages.len();
    let bench = Bench {
        gql: gql.clone(),
        fake: fake.clone(),
        server_pid: server.pid,
        clk_tck: clk_tck(),
    };
    let mut scenarios: Vec<Scenario> = Vec::new();
    let result = run_scenarios(
        &bench,
        &bodies,
        &pool,
        total,
        cold_cap,
        duration,
        args.rate,
        args.latency_ms,
        &mut scenarios,
    )
    .await;
    let vm_hwm = status_mb(server.pid, "VmHWM");
    let vm_rss = status_mb(server.pid, "VmRSS");
    server.stop().await;
    if let Err(e) = result {
        eprintln!("benchmark failed: {e:#}");
    }

    // 6. the table and the JSON
    let rows = figures(&scenarios, args.latency_ms, args.rate);
    let total_s = run_started.elapsed().as_secs_f64();
    println!();
    println!(
        "Enrichment benchmark: {leads} leads, {backend_name}, {} s per timed scenario, fake PDL and sandbox at {} ms",
        duration.as_secs(),
        args.latency_ms
    );
    println!("Machine: {machine_line}.");
    println!("{}", table(&rows));
    println!("Server peak RSS (VmHWM): {vm_hwm} MB; RSS at the end: {vm_rss} MB");
    println!(
        "Run took {total_s:.0} s{}",
        seed_s.map_or(String::new(), |s| format!(" (seeding {s:.0} s of it)"))
    );
    let out = results.join(format!("{stamp}-enrich.json"));
    let report = json!({
        "kind": "enrichment",
        "backend": args.backend,
        "leads": leads,
        "duration_s": duration.as_secs(),
        "latency_ms": args.latency_ms,
        "rate_limit_per_s": args.rate,
        "server_env": args.server_env,
        "clients": CLIENTS,
        "machine": machine,
        "note": machine_line,
        "seed_wall_s": seed_s,
        "pages_total": total,
        "pages_fresh_at_start": total - fresh_from,
        "server_vm_hwm_mb": vm_hwm,
        "server_vm_rss_end_mb": vm_rss,
        "run_wall_s": round1(total_s),
        "server_log": log.file_name().map(|n| n.to_string_lossy().into_owned()),
        "scenarios": scenarios,
        "figures": rows.iter().map(|r| json!({
            "scenario": r.scenario, "figure": r.figure, "value": r.value, "target": r.target, "verdict": r.verdict,
        })).collect::<Vec<_>>(),
        "markdown": markdown(&rows),
    });
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    println!("results: {}", out.display());
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run_scenarios(
    bench: &Bench,
    bodies: &Arc<Vec<Bytes>>,
    pool: &Arc<AtomicUsize>,
    total: usize,
    cold_cap: usize,
    duration: Duration,
    rate: u32,
    latency_ms: u64,
    scenarios: &mut Vec<Scenario>,
) -> anyhow::Result<()> {
    let gql = &bench.gql;
    let fresh = |n: usize| Pages::Fresh {
        pool: pool.clone(),
        limit: (pool.load(Ordering::SeqCst) + n).min(total),
    };
    let left = || total.saturating_sub(pool.load(Ordering::SeqCst));

    // cold, one client
    eprintln!("-- cold c=1: {COLD_SEQUENTIAL_PAGES} fresh pages one after another");
    let before = bench.before().await?;
    let pages = fresh(COLD_SEQUENTIAL_PAGES);
    let started = Instant::now();
    let mut samples = Vec::new();
    while let Some(page) = pages.take() {
        samples.push(one_request(gql, bodies[page].clone(), true).await);
    }
    let s = bench
        .after("cold c=1", 1, before, &samples, started.elapsed().as_secs_f64())
        .await?;
    report(&s);
    scenarios.push(s);

    // cold, 16 clients
    let share = cold_cap.min(left().saturating_sub(WARM_PAGES + 1) / 2);
    eprintln!(
        "-- cold c={CLIENTS}: {} s on fresh pages (at most {share})",
        duration.as_secs()
    );
    let before = bench.before().await?;
    eprintln!("   timed run started");
    let (samples, elapsed, ran_out) = closed_loop(gql, bodies, fresh(share), CLIENTS, duration, true).await;
    let mut s = bench
        .after("cold c=16", CLIENTS, before, &samples, elapsed)
        .await?;
    s.pages_ran_out = ran_out;
    report(&s);
    scenarios.push(s);

    // warm, 16 clients over 200 enriched pages
    eprintln!(
        "-- warm c={CLIENTS}: enriching {WARM_PAGES} pages, then {} s over them",
        duration.as_secs()
    );
    let set_pages = fresh(WARM_PAGES);
    let mut set = Vec::new();
    let mut prep_errors = 0;
    while let Some(page) = set_pages.take() {
        set.push(page);
        if !one_request(gql, bodies[page].clone(), true).await.ok {
            prep_errors += 1;
        }
    }
    // a second pass checks that the set is fully served from the cache before timing starts
    let mut check = Vec::new();
    for &page in &set {
        check.push(one_request(gql, bodies[page].clone(), true).await);
    }
    let check_calls: u64 = check.iter().map(|s| s.calls).sum();
    let before = bench.before().await?;
    let cycle = Pages::Cycle {
        set,
        next: AtomicUsize::new(0),
    };
    eprintln!("   timed run started");
    let (samples, elapsed, _) = closed_loop(gql, bodies, cycle, CLIENTS, duration, false).await;
    let mut s = bench
        .after("warm c=16", CLIENTS, before, &samples, elapsed)
        .await?;
    s.extra = Some(json!({
        "enrich_pass_errors": prep_errors,
        "second_pass_provider_calls": check_calls,
        "second_pass_p50_ms": latency(&check.iter().collect::<Vec<_>>()).p50_ms,
    }));
    report(&s);
    scenarios.push(s);

    // single flight: 200 identical concurrent requests for one fresh page
    eprintln!("-- single flight: {IDENTICAL_REQUESTS} identical concurrent requests for one fresh page");
    let one = fresh(1)
        .take()
        .context("no fresh page left for the single-flight scenario")?;
    // open the connections first, so the 200 requests leave together
    let warmups: Vec<_> = (0..IDENTICAL_REQUESTS)
        .map(|_| {
            let gql = gql.clone();
            tokio::spawn(async move {
                let _ = gql
                    .post_raw(Bytes::from_static(br#"{"query":"{ __typename }"}"#))
                    .await;
            })
        })
        .collect();
    for w in warmups {
        let _ = w.await;
    }
    let before = bench.before().await?;
    let barrier = Arc::new(tokio::sync::Barrier::new(IDENTICAL_REQUESTS));
    let started = Instant::now();
    let tasks: Vec<_> = (0..IDENTICAL_REQUESTS)
        .map(|_| {
            let gql = gql.clone();
            let body = bodies[one].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                one_request(&gql, body, true).await
            })
        })
        .collect();
    let mut samples = Vec::new();
    for t in tasks {
        if let Ok(s) = t.await {
            samples.push(s);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let s = bench
        .after("single flight", IDENTICAL_REQUESTS, before, &samples, elapsed)
        .await?;
    report(&s);
    scenarios.push(s);

    // rate-limited provider
    eprintln!(
        "-- rate-limited PDL ({rate}/s in leadgate and in the fake): c={CLIENTS} cold for {} s",
        duration.as_secs()
    );
    configure(
        gql,
        json!({"provider": "PEOPLE_DATA_LABS", "ratePerSecond": rate}),
    )
    .await?;
    bench.fake.set_limit(Some(rate));
    let share = cold_cap.min(left());
    let before = bench.before().await?;
    let from = before.at;
    eprintln!("   timed run started");
    let (samples, elapsed, ran_out) = closed_loop(gql, bodies, fresh(share), CLIENTS, duration, true).await;
    let calls = bench.fake.calls_between(from, Instant::now());
    let mut s = bench
        .after("rate-limited", CLIENTS, before, &samples, elapsed)
        .await?;
    bench.fake.set_limit(None);
    configure(
        gql,
        json!({"provider": "PEOPLE_DATA_LABS", "ratePerSecond": null}),
    )
    .await?;
    s.pages_ran_out = ran_out;
    let class = |c: Served| samples.iter().filter(|x| x.served == c).collect::<Vec<_>>();
    let (pdl, sandbox, mixed) = (class(Served::Pdl), class(Served::Sandbox), class(Served::Mixed));
    let person_pdl = s.provider_calls.get("pdl/person").copied().unwrap_or(0.0);
    let person_sandbox = s.provider_calls.get("sandbox/person").copied().unwrap_or(0.0);
    let degraded = latency(&sandbox);
    s.extra = Some(json!({
        "max_pdl_calls_in_any_1s_window": max_per_second(&calls),
        "pdl_calls_answered_429": calls.iter().filter(|c| c.status == 429).count(),
        "pdl_calls_per_whole_second": calls_per_second(&calls, from),
        "pdl_gaps_ms": gaps(&calls),
        "pages_person_from_pdl": pdl.len(),
        "pages_person_from_sandbox": sandbox.len(),
        "pages_person_mixed": mixed.len(),
        "latency_person_from_pdl": latency(&pdl),
        "latency_person_from_sandbox": degraded,
        "fallback_overhead_p50_ms": round2(degraded.p50_ms - latency_ms as f64),
        "degraded_minus_pdl_served_p50_ms": round2(degraded.p50_ms - latency(&pdl).p50_ms),
        "person_calls_pdl_share": if person_pdl + person_sandbox > 0.0 {
            round3(person_pdl / (person_pdl + person_sandbox))
        } else {
            0.0
        },
    }));
    report(&s);
    scenarios.push(s);
    Ok(())
}

fn report(s: &Scenario) {
    eprintln!(
        "   {} requests ({} errors) in {:.1} s: {:.1} ok req/s, p50 {} ms, p99 {} ms; server CPU {} us/req; \
         PDL calls {}; calls/page: {}",
        s.requests,
        s.errors,
        s.elapsed_s,
        s.ok_rps,
        s.latency.p50_ms,
        s.latency.p99_ms,
        s.server_cpu_us_per_req,
        s.pdl_calls,
        fmt_calls(&s.provider_calls_per_page)
    );
    if !s.server_cpu_us_per_req_by_thread.is_empty() {
        eprintln!(
            "   server CPU us/req by thread: {}",
            fmt_calls(&s.server_cpu_us_per_req_by_thread)
        );
    }
    for e in &s.first_errors {
        eprintln!("   error: {e}");
    }
}

/// The printed figures, each beside its target.
fn figures(scenarios: &[Scenario], latency_ms: u64, rate: u32) -> Vec<Row> {
    let mut rows = Vec::new();
    let get = |name: &str| scenarios.iter().find(|s| s.name == name);
    let errors = |s: &Scenario| format!("{} of {}", s.errors, s.requests);
    let one_per_group = |s: &Scenario| {
        !s.provider_calls_per_page.is_empty() && s.provider_calls_per_page.values().all(|v| *v <= 1.0 + 1e-9)
    };
    if let Some(s) = get("cold c=1") {
        rows.push(row(
            "cold c=1",
            "p50 / p99 ms",
            format!("{} / {}", s.latency.p50_ms, s.latency.p99_ms),
            "p50 < 55",
            Some(s.latency.p50_ms < 55.0),
        ));
        rows.push(row(
            "cold c=1",
            "calls per page (provider/group)",
            fmt_calls(&s.provider_calls_per_page),
            "1 each: one round of batched calls",
            Some(
                s.provider_calls_per_page
                    .values()
                    .all(|v| (*v - 1.0).abs() < 1e-9)
                    && !s.provider_calls_per_page.is_empty(),
            ),
        ));
        rows.push(row(
            "cold c=1",
            "PDL calls per page (fake) / leads per call",
            format!("{:.2} / {}", s.pdl_calls_per_page, s.pdl_elements_per_call),
            "1 / 50",
            Some((s.pdl_calls_per_page - 1.0).abs() < 1e-9),
        ));
        rows.push(row(
            "cold c=1",
            "credits per page",
            format!("{}", s.credits_per_page),
            "-",
            None,
        ));
        rows.push(row(
            "cold c=1",
            "server CPU us/req",
            format!("{}", s.server_cpu_us_per_req),
            "-",
            None,
        ));
        rows.push(row("cold c=1", "errors", errors(s), "0", Some(s.errors == 0)));
    }
    if let Some(s) = get("cold c=16") {
        rows.push(row(
            "cold c=16",
            "req/s",
            format!(
                "{}{}",
                s.ok_rps,
                if s.pages_ran_out {
                    " (fresh pages ran out)"
                } else {
                    ""
                }
            ),
            "-",
            None,
        ));
        rows.push(row(
            "cold c=16",
            "p50 / p99 ms",
            format!("{} / {}", s.latency.p50_ms, s.latency.p99_ms),
            "-",
            None,
        ));
        rows.push(row(
            "cold c=16",
            "calls per page (provider/group)",
            fmt_calls(&s.provider_calls_per_page),
            "<= 1 per provider per page",
            Some(one_per_group(s)),
        ));
        rows.push(row(
            "cold c=16",
            "calls per page (provider)",
            fmt_calls(&by_provider(&s.provider_calls_per_page)),
            "-",
            None,
        ));
        rows.push(row(
            "cold c=16",
            "credits per page",
            format!("{}", s.credits_per_page),
            "-",
            None,
        ));
        rows.push(row(
            "cold c=16",
            "server CPU us/req",
            format!("{}", s.server_cpu_us_per_req),
            "-",
            None,
        ));
        rows.push(row(
            "cold c=16",
            "server CPU us/req by thread",
            fmt_calls(&s.server_cpu_us_per_req_by_thread),
            "-",
            None,
        ));
        rows.push(row("cold c=16", "errors", errors(s), "0", Some(s.errors == 0)));
    }
    if let Some(s) = get("warm c=16") {
        let calls = (s.provider_calls.values().sum::<f64>() + 0.0) + s.pdl_calls as f64;
        rows.push(row(
            "warm c=16",
            "req/s",
            format!("{}", s.ok_rps),
            ">= 2,000",
            Some(s.ok_rps >= 2000.0),
        ));
        rows.push(row(
            "warm c=16",
            "p50 / p99 ms",
            format!("{} / {}", s.latency.p50_ms, s.latency.p99_ms),
            "p99 < 15",
            Some(s.latency.p99_ms < 15.0),
        ));
        rows.push(row(
            "warm c=16",
            "server CPU us/req",
            format!("{}", s.server_cpu_us_per_req),
            "<= 900 (performance.md S3)",
            Some(s.server_cpu_us_per_req <= 900.0),
        ));
        rows.push(row(
            "warm c=16",
            "provider calls during the run",
            format!(
                "{} (metrics), {} (fake PDL)",
                (s.provider_calls.values().sum::<f64>() + 0.0),
                s.pdl_calls
            ),
            "0",
            Some(calls == 0.0),
        ));
        rows.push(row(
            "warm c=16",
            "pipeline cache misses per request (memory / store lookups)",
            format!(
                "{} / {}",
                s.memory_cache_misses_per_request, s.store_lookups_per_request
            ),
            "-",
            None,
        ));
        rows.push(row("warm c=16", "errors", errors(s), "0", Some(s.errors == 0)));
    }
    if let Some(s) = get("rate-limited") {
        let x = s.extra.clone().unwrap_or(Value::Null);
        let max_window = x["max_pdl_calls_in_any_1s_window"].as_u64().unwrap_or(0);
        let overhead = x["fallback_overhead_p50_ms"].as_f64().unwrap_or(f64::NAN);
        let degraded = x["pages_person_from_sandbox"].as_u64().unwrap_or(0);
        rows.push(row(
            "rate-limited",
            "max PDL calls in any 1 s window",
            format!("{max_window}"),
            &format!("<= {rate}"),
            Some(max_window <= u64::from(rate)),
        ));
        rows.push(row(
            "rate-limited",
            "429s sent by the fake PDL",
            format!("{}", s.pdl_429s),
            "0",
            Some(s.pdl_429s == 0),
        ));
        rows.push(row(
            "rate-limited",
            "req/s",
            format!(
                "{}{}",
                s.ok_rps,
                if s.pages_ran_out {
                    " (fresh pages ran out)"
                } else {
                    ""
                }
            ),
            "-",
            None,
        ));
        rows.push(row(
            "rate-limited",
            "p50 / p99 ms (all)",
            format!("{} / {}", s.latency.p50_ms, s.latency.p99_ms),
            "-",
            None,
        ));
        rows.push(row(
            "rate-limited",
            "p50 / p99 ms, person from PDL",
            format!(
                "{} / {}",
                x["latency_person_from_pdl"]["p50_ms"], x["latency_person_from_pdl"]["p99_ms"]
            ),
            "-",
            None,
        ));
        rows.push(row(
            "rate-limited",
            "p50 / p99 ms, person from the sandbox (degraded)",
            format!(
                "{} / {}",
                x["latency_person_from_sandbox"]["p50_ms"], x["latency_person_from_sandbox"]["p99_ms"]
            ),
            "-",
            None,
        ));
        rows.push(row(
            "rate-limited",
            &format!("fallback: degraded p50 - {latency_ms} ms"),
            format!("{overhead} ms"),
            "<= 5 ms",
            (degraded > 0).then_some(overhead <= 5.0),
        ));
        rows.push(row(
            "rate-limited",
            "degraded p50 - PDL-served p50 (same load)",
            format!("{} ms", x["degraded_minus_pdl_served_p50_ms"]),
            "-",
            None,
        ));
        rows.push(row(
            "rate-limited",
            "pages: person from PDL / sandbox / mixed",
            format!(
                "{} / {} / {}",
                x["pages_person_from_pdl"], x["pages_person_from_sandbox"], x["pages_person_mixed"]
            ),
            "-",
            None,
        ));
        rows.push(row(
            "rate-limited",
            "person calls: PDL share (metrics)",
            format!(
                "{} (pdl {}, sandbox {})",
                x["person_calls_pdl_share"],
                s.provider_calls.get("pdl/person").copied().unwrap_or(0.0),
                s.provider_calls.get("sandbox/person").copied().unwrap_or(0.0)
            ),
            "-",
            None,
        ));
        rows.push(row("rate-limited", "errors", errors(s), "0", Some(s.errors == 0)));
    }
    if let Some(s) = get("single flight") {
        rows.push(row(
            "single flight",
            "max PDL calls per lead",
            format!("{} ({} leads)", s.pdl_max_calls_per_lead, s.pdl_leads_named),
            "1",
            Some(s.pdl_max_calls_per_lead == 1),
        ));
        rows.push(row(
            "single flight",
            "PDL calls (fake)",
            format!("{}", s.pdl_calls),
            "1",
            Some(s.pdl_calls == 1),
        ));
        rows.push(row(
            "single flight",
            "calls (metrics, provider/group)",
            fmt_calls(&s.provider_calls),
            "1 each",
            Some(!s.provider_calls.is_empty() && s.provider_calls.values().all(|v| *v == 1.0)),
        ));
        rows.push(row(
            "single flight",
            "p50 / p99 / max ms",
            format!(
                "{} / {} / {}",
                s.latency.p50_ms, s.latency.p99_ms, s.latency.max_ms
            ),
            "-",
            None,
        ));
        rows.push(row(
            "single flight",
            "errors",
            errors(s),
            "0",
            Some(s.errors == 0),
        ));
    }
    rows
}
