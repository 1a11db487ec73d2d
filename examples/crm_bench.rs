//! The CRM sync benchmark: a fake HubSpot in this process, the `leadgate` server as a child,
//! and three scenarios against one HubSpot connection — a push of every lead through the batch
//! upsert (answers in 100 ms, 10 requests a second allowed), signed webhook ingest from
//! concurrent closed-loop senders, and a reconciliation poll after every contact changed in
//! the CRM. See bench/crm.sh.
//!
//! It talks to leadgate only as a client would: the CLI (`workspace`, `seed`, `token`), HTTP
//! (`/graphql`, `/metrics`, `/readyz`, `/webhooks/crm/<id>`) and `/proc` for the server's CPU
//! time and memory. The fake HubSpot speaks the documented API: batch upsert by email, the
//! contacts search on `lastmodifieddate` (10,000 results at most per query), the archived
//! listing, reads by id, the rate-limit headers and 429 body, and webhook signature v3.

mod common;

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use clap::{Parser, ValueEnum};
use common::{
    Leadgate, Row, Server, clk_tck, cpu_ticks, getconf, markdown, psql, round1, round2, round3, row,
    server_env, status_mb, table,
};
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// HS256 secret for the bench server only (48 bytes).
const JWT_SECRET: &str = "leadgate-bench-only-secret-0123456789abcdefghijk";
const WORKSPACE: &str = "bench";
const DATA_SEED: &str = "1";
const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";
const PG_DB: &str = "leadgate_bench_crm";
/// The private-app token the fake HubSpot accepts, and the app secret that signs webhooks.
const HS_TOKEN: &str = "pat-na1-00000000-1111-2222-3333-444444444444";
const HS_SECRET: &str = "hubspot-bench-app-secret-0123456789";
/// HubSpot's batch size for contacts and the results its search pages through at most.
const BATCH: usize = 100;
const SEARCH_CAP: usize = 10_000;
/// HubSpot contact ids start here in the fake (index = id - FIRST_ID).
const FIRST_ID: u64 = 1001;
/// Leads whose names are checked after the webhooks and after the poll (from each end).
const SAMPLE_EACH_END: usize = 100;
/// A scenario gives up when nothing moves for this long.
const STALL: Duration = Duration::from_secs(120);

const CREATE_CONNECTION: &str = "mutation Create($input: CreateCrmConnectionInput!) { \
    createCrmConnection(input: $input) { connection { id webhookPath } userErrors { field message } } }";
const TEST_CONNECTION: &str = "mutation Test($id: ID!) { testCrmConnection(id: $id) { ok message } }";
const SYNC_LEADS: &str = "mutation Sync($input: SyncLeadsInput!) { syncLeads(input: $input) { marked } }";
const POLL: &str = "mutation Poll($id: ID!) { pollCrmConnection(id: $id) { queued } }";
const CONNECTIONS: &str = "query Connections { crmConnections(first: 100) { nodes { id \
    linkCounts { synced pending failed } blockedUntil webhookReceipts } } }";
const RUNS: &str = "query Runs($id: ID!) { crmSyncRuns(connectionId: $id, first: 100) { nodes { \
    id trigger startedAt finishedAt pushed pulled failed skipped } } }";
const SAMPLE_LEADS: &str = "query Sample($order: LeadOrder!, $first: Int!) { \
    leads(first: $first, orderBy: $order) { nodes { id email firstName crmLinks { externalId status } } } }";
const NAMES: &str = "query Names($ids: [ID!]!) { nodes(ids: $ids) { ... on Lead { id firstName } } }";
const NO_EMAIL: &str = "query NoEmail { leads(first: 100, filter: {hasEmail: false}) { nodes { id \
    crmLinks { status lastError } } } }";

#[derive(Parser, Debug)]
#[command(about = "Benchmarks leadgate's CRM sync against a fake HubSpot")]
struct Args {
    /// Leads in the `bench` workspace (default 100,000; 10,000 with --quick).
    #[arg(long)]
    leads: Option<u64>,
    #[arg(long, value_enum, default_value_t = Backend::Sqlite)]
    backend: Backend,
    /// Development run: 10,000 leads and a 5-second webhook ingest (explicit flags still win).
    #[arg(long)]
    quick: bool,
    /// How long the fake HubSpot takes to answer a batch upsert, in ms.
    #[arg(long, default_value_t = 100)]
    latency_ms: u64,
    /// How long the fake HubSpot takes to answer a search page, in ms (not rate-limited).
    #[arg(long, default_value_t = 0)]
    search_latency_ms: u64,
    /// Batch upserts the fake HubSpot allows per rolling second (beyond: 429).
    #[arg(long, default_value_t = 10)]
    rate: u32,
    /// Concurrent closed-loop webhook senders.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Events in each webhook request (HubSpot sends up to 100).
    #[arg(long, default_value_t = 10)]
    events_per_request: usize,
    /// Seconds of webhook ingest (default 20; 5 with --quick).
    #[arg(long)]
    duration: Option<u64>,
    /// Measure only this scenario; the push always runs, since it creates the contacts.
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// The leadgate binary (default: $CARGO_TARGET_DIR or target, then release/leadgate).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// An extra `LEADGATE_*` setting for the server, e.g. `LEADGATE_WORKER_CONCURRENCY=8`
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Only {
    Push,
    Webhooks,
    Poll,
}

// ------------------------------------------------------------------ the fake HubSpot

#[derive(Clone, Debug)]
struct Contact {
    id: u64,
    properties: BTreeMap<String, Value>,
    created_ms: i64,
    updated_ms: i64,
    archived_ms: Option<i64>,
}

#[derive(Default)]
struct HubState {
    /// Contacts by index (`id - FIRST_ID`).
    contacts: Vec<Contact>,
    by_email: HashMap<String, usize>,
    /// Live contacts sorted by (`lastmodifieddate`, id), rebuilt before a search when stale.
    order: Vec<(i64, usize)>,
    order_stale: bool,
    archived: Vec<usize>,
    /// The fake's clock for `lastmodifieddate` and `occurredAt`, in ms; moves forward on
    /// every change, so no two changes share a time.
    clock_ms: i64,
    /// Its own limit on batch upserts per rolling second; `None` for no limit.
    limit: Option<u32>,
    /// Arrival times of the upserts admitted in the last second.
    window: VecDeque<Instant>,
    counts: HubCounts,
    /// Arrival times of the admitted upserts.
    upsert_arrivals: Vec<Instant>,
    last_upsert_answer: Option<Instant>,
    last_search: Option<Instant>,
}

#[derive(Clone, Copy, Default, Debug, Serialize)]
struct HubCounts {
    upsert_requests: u64,
    upsert_records: u64,
    upsert_created: u64,
    upsert_refused: u64,
    upsert_429: u64,
    unauthorized: u64,
    malformed: u64,
    search_requests: u64,
    search_records: u64,
    search_over_cap: u64,
    listing_requests: u64,
    archived_listing_final: u64,
    reads_by_id: u64,
}

impl HubState {
    fn tick(&mut self) -> i64 {
        self.clock_ms = self.clock_ms.max(epoch_ms()).max(self.clock_ms + 1);
        self.clock_ms
    }
}

/// HubSpot's contacts API in memory.
struct FakeHubSpot {
    latency: Duration,
    search_latency: Duration,
    state: Mutex<HubState>,
}

impl FakeHubSpot {
    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn counts(&self) -> HubCounts {
        self.lock().counts
    }

    fn contact_ids(&self) -> Vec<u64> {
        self.lock()
            .contacts
            .iter()
            .filter(|c| c.archived_ms.is_none())
            .map(|c| c.id)
            .collect()
    }

    fn firstname(&self, id: u64) -> Option<String> {
        let s = self.lock();
        let c = s.contacts.get(id.checked_sub(FIRST_ID)? as usize)?;
        c.properties
            .get("firstname")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// A rep changes a property in HubSpot: the contact changes now; returns when (the event's
    /// `occurredAt`).
    fn edit(&self, id: u64, property: &str, value: &str) -> i64 {
        let mut s = self.lock();
        let at = s.tick();
        if let Some(c) = s.contacts.get_mut((id - FIRST_ID) as usize) {
            c.properties.insert(property.to_owned(), json!(value));
            c.updated_ms = at;
        }
        s.order_stale = true;
        at
    }

    /// Every live contact gets a new first name (a bulk edit in HubSpot, no webhooks).
    fn rename_all(&self, prefix: &str) -> usize {
        let mut s = self.lock();
        let mut n = 0;
        for i in 0..s.contacts.len() {
            if s.contacts[i].archived_ms.is_some() {
                continue;
            }
            let at = s.tick();
            let c = &mut s.contacts[i];
            c.properties
                .insert("firstname".into(), json!(format!("{prefix}{}", c.id)));
            c.updated_ms = at;
            n += 1;
        }
        s.order_stale = true;
        n
    }

    /// The most admitted upserts that arrived within any one second, and the mean gap.
    /// Also the distribution of the gaps between consecutive upserts.
    fn upsert_pacing(&self, from: Instant) -> (usize, f64, Latency) {
        let s = self.lock();
        let times: Vec<Instant> = s.upsert_arrivals.iter().copied().filter(|t| *t >= from).collect();
        let mut best = 0;
        let mut j = 0;
        for i in 0..times.len() {
            while times[i].duration_since(times[j]) >= Duration::from_secs(1) {
                j += 1;
            }
            best = best.max(i - j + 1);
        }
        let gap = if times.len() > 1 {
            times[times.len() - 1].duration_since(times[0]).as_secs_f64() * 1e3 / (times.len() - 1) as f64
        } else {
            0.0
        };
        let gaps = times
            .windows(2)
            .map(|w| w[1].duration_since(w[0]).as_secs_f64() * 1e3)
            .collect();
        (best, round2(gap), latency(gaps))
    }
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn epoch_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A contact in the API's shape: every property, or only `wanted` (plus the ones HubSpot
/// always returns).
fn contact_json(c: &Contact, wanted: Option<&[String]>) -> Value {
    let mut props = serde_json::Map::new();
    match wanted {
        Some(names) => {
            for n in names {
                props.insert(n.clone(), c.properties.get(n).cloned().unwrap_or(Value::Null));
            }
        }
        None => {
            for (k, v) in &c.properties {
                props.insert(k.clone(), v.clone());
            }
        }
    }
    props.insert("hs_object_id".into(), json!(c.id.to_string()));
    props.insert("createdate".into(), json!(iso(c.created_ms)));
    props.insert("lastmodifieddate".into(), json!(iso(c.updated_ms)));
    let mut out = json!({
        "id": c.id.to_string(),
        "properties": props,
        "createdAt": iso(c.created_ms),
        "updatedAt": iso(c.updated_ms),
        "archived": c.archived_ms.is_some(),
    });
    if let Some(a) = c.archived_ms {
        out["archivedAt"] = json!(iso(a));
    }
    out
}

fn hubspot_error(status: StatusCode, category: &str, message: &str) -> Response {
    let body = json!({
        "status": "error",
        "message": message,
        "correlationId": "00000000-0000-4000-8000-000000000000",
        "category": category,
    });
    (status, axum::Json(body)).into_response()
}

/// HubSpot's 401 when the bearer token is not the fake's.
fn refused(fake: &FakeHubSpot, headers: &HeaderMap) -> Option<Response> {
    let ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {HS_TOKEN}"));
    if ok {
        return None;
    }
    fake.lock().counts.unauthorized += 1;
    Some(hubspot_error(
        StatusCode::UNAUTHORIZED,
        "INVALID_AUTHENTICATION",
        "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can \
         find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
    ))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// `POST /crm/v3/objects/contacts/batch/upsert`.
async fn upsert(State(fake): State<Arc<FakeHubSpot>>, headers: HeaderMap, body: Bytes) -> Response {
    let arrived = Instant::now();
    if let Some(r) = refused(&fake, &headers) {
        return r;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        fake.lock().counts.malformed += 1;
        return hubspot_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Invalid input JSON on line 1",
        );
    };
    let (limit, remaining, limited, answer, refused) = {
        let mut s = fake.lock();
        while s
            .window
            .front()
            .is_some_and(|t| arrived.duration_since(*t) >= Duration::from_secs(1))
        {
            s.window.pop_front();
        }
        let limit = s.limit;
        if limit.is_some_and(|l| s.window.len() >= l as usize) {
            s.counts.upsert_429 += 1;
            (limit, 0, true, Value::Null, 0)
        } else {
            s.window.push_back(arrived);
            s.upsert_arrivals.push(arrived);
            s.counts.upsert_requests += 1;
            let remaining = limit.map_or(0, |l| l as usize - s.window.len());
            let inputs = body
                .get("inputs")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut results = Vec::with_capacity(inputs.len());
            let mut errors = Vec::new();
            for input in &inputs {
                let key = input.get("id").and_then(text).unwrap_or_default().to_lowercase();
                let by = input.get("idProperty").and_then(Value::as_str).unwrap_or("email");
                let found = match by {
                    "hs_object_id" => key
                        .parse::<u64>()
                        .ok()
                        .and_then(|id| id.checked_sub(FIRST_ID))
                        .map(|i| i as usize)
                        .filter(|i| *i < s.contacts.len()),
                    _ => s.by_email.get(&key).copied(),
                };
                let (index, new) = match (found, by) {
                    (Some(i), _) if s.contacts[i].archived_ms.is_none() => (i, false),
                    (_, "email") if !key.is_empty() => {
                        let at = s.tick();
                        let i = s.contacts.len();
                        s.contacts.push(Contact {
                            id: FIRST_ID + i as u64,
                            properties: BTreeMap::new(),
                            created_ms: at,
                            updated_ms: at,
                            archived_ms: None,
                        });
                        s.by_email.insert(key.clone(), i);
                        s.counts.upsert_created += 1;
                        (i, true)
                    }
                    _ => {
                        s.counts.upsert_refused += 1;
                        errors.push(json!({
                            "status": "error",
                            "category": "OBJECT_NOT_FOUND",
                            "message": format!("No contact with {by} {key}"),
                            "context": {"ids": [key]},
                        }));
                        continue;
                    }
                };
                let at = s.tick();
                let c = &mut s.contacts[index];
                if let Some(props) = input.get("properties").and_then(Value::as_object) {
                    for (k, v) in props {
                        c.properties.insert(k.clone(), v.clone());
                    }
                }
                c.updated_ms = at;
                let mut result = contact_json(c, None);
                result["new"] = json!(new);
                if let Some(trace) = input.get("objectWriteTraceId") {
                    result["objectWriteTraceId"] = trace.clone();
                }
                results.push(result);
            }
            s.order_stale = true;
            s.counts.upsert_records += results.len() as u64;
            let refused = errors.len();
            let now = iso(s.clock_ms);
            let mut answer = json!({
                "status": "COMPLETE",
                "results": results,
                "requestedAt": now,
                "startedAt": now,
                "completedAt": now,
                "links": {},
            });
            if !errors.is_empty() {
                answer["numErrors"] = json!(errors.len());
                answer["errors"] = json!(errors);
            }
            (limit, remaining, false, answer, refused)
        }
    };
    let mut headers = HeaderMap::new();
    if let Some(l) = limit {
        headers.insert("x-hubspot-ratelimit-max", HeaderValue::from(l));
        headers.insert("x-hubspot-ratelimit-remaining", HeaderValue::from(remaining));
        headers.insert(
            "x-hubspot-ratelimit-interval-milliseconds",
            HeaderValue::from(1000u32),
        );
    }
    if limited {
        let body = json!({
            "status": "error",
            "message": "You have reached your secondly limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": "c6d2e7a4-0000-4000-8000-000000000000",
            "policyName": "SECONDLY",
            "groupName": "publicapi:private-app:secondly:1",
        });
        return (StatusCode::TOO_MANY_REQUESTS, headers, axum::Json(body)).into_response();
    }
    tokio::time::sleep(fake.latency).await;
    fake.lock().last_upsert_answer = Some(Instant::now());
    let status = if refused > 0 {
        StatusCode::MULTI_STATUS
    } else {
        StatusCode::OK
    };
    (status, headers, axum::Json(answer)).into_response()
}

/// `POST /crm/v3/objects/contacts/search`: the filter on `lastmodifieddate` (`GTE`), sorted
/// ascending, `after` as an offset; a query pages through 10,000 results at most.
async fn search(State(fake): State<Arc<FakeHubSpot>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = refused(&fake, &headers) {
        return r;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        fake.lock().counts.malformed += 1;
        return hubspot_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Invalid input JSON on line 1",
        );
    };
    let filter = body.pointer("/filterGroups/0/filters/0");
    let since = match filter {
        None => i64::MIN,
        Some(f) => {
            let on_modified = f.get("propertyName").and_then(Value::as_str) == Some("lastmodifieddate");
            let gte = f.get("operator").and_then(Value::as_str) == Some("GTE");
            let value = f.get("value").and_then(text).and_then(|v| v.parse::<i64>().ok());
            match (on_modified, gte, value) {
                (true, true, Some(v)) => v,
                _ => {
                    fake.lock().counts.malformed += 1;
                    return hubspot_error(
                        StatusCode::BAD_REQUEST,
                        "VALIDATION_ERROR",
                        "the fake HubSpot filters only on lastmodifieddate GTE <epoch ms>",
                    );
                }
            }
        }
    };
    let ascending = body
        .pointer("/sorts/0/direction")
        .and_then(Value::as_str)
        .is_none_or(|d| d == "ASCENDING");
    let after: usize = body
        .get("after")
        .and_then(text)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let limit = body
        .get("limit")
        .and_then(Value::as_u64)
        .unwrap_or(10)
        .clamp(1, 200) as usize;
    let wanted: Vec<String> = body
        .get("properties")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(text).collect())
        .unwrap_or_else(|| vec!["email".into(), "firstname".into(), "lastname".into()]);
    if after + limit > SEARCH_CAP {
        fake.lock().counts.search_over_cap += 1;
        return hubspot_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "There was a problem with the request. Paging through more than 10000 results is not supported.",
        );
    }
    let answer = {
        let mut s = fake.lock();
        if s.order_stale {
            let mut order: Vec<(i64, usize)> = s
                .contacts
                .iter()
                .enumerate()
                .filter(|(_, c)| c.archived_ms.is_none())
                .map(|(i, c)| (c.updated_ms, i))
                .collect();
            order.sort_unstable();
            s.order = order;
            s.order_stale = false;
        }
        let start = s.order.partition_point(|(t, _)| *t < since);
        let total = s.order.len() - start;
        let take = |k: usize| {
            if ascending {
                s.order.get(start + k)
            } else {
                s.order
                    .len()
                    .checked_sub(k + 1)
                    .filter(|i| *i >= start)
                    .and_then(|i| s.order.get(i))
            }
        };
        let results: Vec<Value> = (after..(after + limit).min(total))
            .filter_map(take)
            .map(|(_, i)| contact_json(&s.contacts[*i], Some(&wanted)))
            .collect();
        let mut answer = json!({"total": total, "results": results});
        if after + limit < total {
            let next = (after + limit).to_string();
            answer["paging"] = json!({"next": {"after": next, "link": format!("?after={next}")}});
        }
        s.counts.search_requests += 1;
        s.counts.search_records += results.len() as u64;
        s.last_search = Some(Instant::now());
        answer
    };
    if !fake.search_latency.is_zero() {
        tokio::time::sleep(fake.search_latency).await;
    }
    (StatusCode::OK, axum::Json(answer)).into_response()
}

/// `GET /crm/v3/objects/contacts?limit=&after=&archived=`: contacts by id, `after` the next id.
async fn listing(
    State(fake): State<Arc<FakeHubSpot>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = refused(&fake, &headers) {
        return r;
    }
    let archived = q.get("archived").is_some_and(|v| v == "true");
    let limit = q
        .get("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    let after = q
        .get("after")
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |id| id.saturating_sub(FIRST_ID) as usize);
    let mut s = fake.lock();
    s.counts.listing_requests += 1;
    let (page, next): (Vec<Value>, Option<u64>) = if archived {
        let mut idx: Vec<usize> = s.archived.iter().copied().filter(|i| *i >= after).collect();
        idx.sort_unstable();
        let next = idx.get(limit).map(|i| s.contacts[*i].id);
        (
            idx.iter()
                .take(limit)
                .map(|i| contact_json(&s.contacts[*i], None))
                .collect(),
            next,
        )
    } else {
        let mut page = Vec::new();
        let mut next = None;
        for c in s.contacts.iter().skip(after).filter(|c| c.archived_ms.is_none()) {
            if page.len() == limit {
                next = Some(c.id);
                break;
            }
            page.push(contact_json(c, None));
        }
        (page, next)
    };
    if archived && next.is_none() {
        s.counts.archived_listing_final += 1;
    }
    let mut answer = json!({"results": page});
    if let Some(n) = next {
        answer["paging"] = json!({"next": {"after": n.to_string(), "link": format!("?after={n}")}});
    }
    (StatusCode::OK, axum::Json(answer)).into_response()
}

/// `GET /crm/v3/objects/contacts/{id}?properties=a,b`.
async fn read_one(
    State(fake): State<Arc<FakeHubSpot>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = refused(&fake, &headers) {
        return r;
    }
    let wanted: Option<Vec<String>> = q.get("properties").map(|p| {
        p.split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    });
    let mut s = fake.lock();
    s.counts.reads_by_id += 1;
    let found = id
        .parse::<u64>()
        .ok()
        .and_then(|id| id.checked_sub(FIRST_ID))
        .and_then(|i| s.contacts.get(i as usize))
        .filter(|c| c.archived_ms.is_none());
    match found {
        Some(c) => (StatusCode::OK, axum::Json(contact_json(c, wanted.as_deref()))).into_response(),
        None => hubspot_error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "resource not found"),
    }
}

/// Serves the fake on its own single-threaded runtime, so the webhook senders never delay its
/// answers; returns its base URL.
fn start_fake(fake: Arc<FakeHubSpot>) -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("fake-hubspot".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("fake HubSpot: cannot start a runtime: {e}");
                    return;
                }
            };
            runtime.block_on(async move {
                use axum::routing::{get, post};
                let app = axum::Router::new()
                    .route("/crm/v3/objects/contacts/batch/upsert", post(upsert))
                    .route("/crm/v3/objects/contacts/search", post(search))
                    .route("/crm/v3/objects/contacts", get(listing))
                    .route("/crm/v3/objects/contacts/{id}", get(read_one))
                    .layer(axum::extract::DefaultBodyLimit::max(16 << 20))
                    .with_state(fake);
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        if let Err(e) = axum::serve(listener, app).await {
                            eprintln!("fake HubSpot stopped: {e}");
                        }
                    }
                    Err(e) => eprintln!("fake HubSpot: {e}"),
                }
            });
        })?;
    Ok(format!("http://{addr}"))
}

/// HubSpot's signature v3: base64 of HMAC-SHA256, under the app secret, of `POST` + the URI
/// (with HubSpot's list of `%XX` sequences decoded) + the body + the timestamp.
fn sign_v3(secret: &str, url: &str, body: &[u8], ms: i64) -> String {
    let mut uri = url.to_owned();
    for (enc, plain) in [
        ("%3A", ":"),
        ("%2F", "/"),
        ("%3F", "?"),
        ("%40", "@"),
        ("%21", "!"),
        ("%24", "$"),
        ("%27", "'"),
        ("%28", "("),
        ("%29", ")"),
        ("%2A", "*"),
        ("%2C", ","),
        ("%3B", ";"),
    ] {
        uri = uri.replace(enc, plain).replace(&enc.to_lowercase(), plain);
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(b"POST");
    mac.update(uri.as_bytes());
    mac.update(body);
    mac.update(ms.to_string().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
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

    /// A fresh database with the `bench` workspace and its leads; returns the seed's wall time.
    /// Every run starts from a fresh database: links, contacts and sync runs of an earlier
    /// run would change what the scenarios measure.
    async fn prepare(&self) -> anyhow::Result<f64> {
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
        self.run(&["migrate"]).await?;
        self.run(&["workspace", "create", WORKSPACE, "--name", "CRM benchmark"])
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
        Ok(started.elapsed().as_secs_f64())
    }

    /// Starts `leadgate serve` with the master key; the fake HubSpot listens on loopback, which
    /// the outbound guard refuses otherwise.
    async fn serve(&self, master_key: &str, log: &Path) -> anyhow::Result<Server> {
        let env = [
            ("LEADGATE_MASTER_KEY", master_key.to_owned()),
            ("LEADGATE_OUTBOUND_ALLOW", "127.0.0.1/32".to_owned()),
        ];
        self.lg.serve(&env, log).await
    }
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
    /// A request that must succeed without GraphQL errors; returns `data`.
    async fn query(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let reply = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/graphql-response+json")
            .header("authorization", format!("Bearer {}", self.token))
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await?;
        let status = reply.status().as_u16();
        let bytes = reply.bytes().await?;
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

    /// The connection's links by status, when it waits until, and its webhook receipts.
    async fn connection(&self, id: &str) -> anyhow::Result<ConnState> {
        let data = self.query(CONNECTIONS, json!({})).await?;
        let nodes = data
            .pointer("/crmConnections/nodes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let node = nodes
            .iter()
            .find(|n| n["id"].as_str() == Some(id))
            .context("the connection is not listed")?;
        let n = |k: &str| {
            node.pointer(&format!("/linkCounts/{k}"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        Ok(ConnState {
            synced: n("synced"),
            pending: n("pending"),
            failed: n("failed"),
            blocked_until: node["blockedUntil"].as_str().map(str::to_owned),
            receipts: node["webhookReceipts"].clone(),
        })
    }

    /// The connection's sync runs, newest first (at most 100).
    async fn runs(&self, id: &str) -> anyhow::Result<Vec<Value>> {
        let data = self.query(RUNS, json!({"id": id})).await?;
        Ok(data
            .pointer("/crmSyncRuns/nodes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// First names of leads by id.
    async fn names(&self, ids: &[String]) -> anyhow::Result<HashMap<String, Option<String>>> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(500) {
            let data = self.query(NAMES, json!({"ids": chunk})).await?;
            for n in data["nodes"].as_array().cloned().unwrap_or_default() {
                if let Some(id) = n["id"].as_str() {
                    out.insert(id.to_owned(), n["firstName"].as_str().map(str::to_owned));
                }
            }
        }
        Ok(out)
    }
}

#[derive(Clone, Debug, Default)]
struct ConnState {
    synced: u64,
    pending: u64,
    failed: u64,
    blocked_until: Option<String>,
    receipts: Value,
}

/// Prometheus series (`name{labels}`).
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

    /// The change of the `leadgate_crm_*` counters (histogram buckets left out).
    fn crm_delta(&self, later: &Metrics) -> BTreeMap<String, f64> {
        later
            .0
            .iter()
            .filter(|(k, _)| k.starts_with("leadgate_crm_") && !k.contains("_bucket{"))
            .map(|(k, v)| (k.clone(), v - self.0.get(k).copied().unwrap_or(0.0)))
            .filter(|(_, d)| *d != 0.0)
            .collect()
    }
}

// ------------------------------------------------------------------ figures

#[derive(Serialize, Default, Clone)]
struct Latency {
    n: usize,
    p50_ms: f64,
    p90_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    mean_ms: f64,
}

fn latency(mut ms: Vec<f64>) -> Latency {
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
        p95_ms: pct(95.0),
        p99_ms: pct(99.0),
        max_ms: round2(ms[ms.len() - 1]),
        mean_ms: round2(ms.iter().sum::<f64>() / ms.len() as f64),
    }
}

/// Server CPU and memory around a scenario.
struct Usage {
    pid: u32,
    ticks: u64,
    own_ticks: u64,
    at: Instant,
    clk_tck: f64,
}

impl Usage {
    fn start(pid: u32, clk_tck: f64) -> Self {
        Self {
            pid,
            ticks: cpu_ticks(&pid.to_string()),
            own_ticks: cpu_ticks("self"),
            at: Instant::now(),
            clk_tck,
        }
    }

    fn end(&self) -> Value {
        let elapsed = self.at.elapsed().as_secs_f64();
        let cpu = (cpu_ticks(&self.pid.to_string()) - self.ticks) as f64 / self.clk_tck;
        let own = (cpu_ticks("self") - self.own_ticks) as f64 / self.clk_tck;
        json!({
            "server_cpu_s": round2(cpu),
            "server_cpu_cores": if elapsed > 0.0 { round2(cpu / elapsed) } else { 0.0 },
            "bench_process_cpu_cores": if elapsed > 0.0 { round2(own / elapsed) } else { 0.0 },
            "server_vm_rss_mb": status_mb(self.pid, "VmRSS"),
            "server_vm_hwm_mb": status_mb(self.pid, "VmHWM"),
        })
    }
}

fn machine(bin: &Path) -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| (kb / 1024.0).round());
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
    let profile = bin
        .parent()
        .and_then(Path::file_name)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unknown".into());
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "getconf_nprocessors_onln": getconf("_NPROCESSORS_ONLN"),
        "getconf_clk_tck": getconf("CLK_TCK"),
        "getconf_pagesize": getconf("PAGESIZE"),
        "cpu_model": cpu,
        "mem_total_mb": mem_mb,
        "loadavg_at_start": loadavg.split_whitespace().take(3).collect::<Vec<_>>(),
        "git_rev": git,
        "git_dirty": dirty,
        "leadgate_bin": bin.display().to_string(),
        "leadgate_profile": profile,
        "bench_profile": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}

// ------------------------------------------------------------------ scenarios

/// Everything a scenario shares.
struct Bench {
    gql: Gql,
    fake: Arc<FakeHubSpot>,
    server_pid: u32,
    clk_tck: f64,
    /// The connection's GraphQL id and its webhook URL as leadgate sees it.
    conn_id: String,
    webhook_url: String,
}

/// Leads whose names are checked, with their HubSpot contact ids.
#[derive(Clone, Default)]
struct Sampled {
    /// (lead id, contact id)
    leads: Vec<(String, u64)>,
}

impl Bench {
    /// The oldest and the newest leads that have a contact.
    async fn sample(&self) -> anyhow::Result<Sampled> {
        let mut out = Sampled::default();
        let mut seen = HashSet::new();
        for direction in ["ASC", "DESC"] {
            let data = self
                .gql
                .query(
                    SAMPLE_LEADS,
                    json!({"order": {"field": "CREATED_AT", "direction": direction}, "first": SAMPLE_EACH_END}),
                )
                .await?;
            for n in data
                .pointer("/leads/nodes")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
            {
                let Some(id) = n["id"].as_str() else { continue };
                let contact = n["crmLinks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find_map(|l| l["externalId"].as_str().and_then(|e| e.parse::<u64>().ok()));
                if let Some(c) = contact
                    && seen.insert(id.to_owned())
                {
                    out.leads.push((id.to_owned(), c));
                }
            }
        }
        Ok(out)
    }

    /// How many sampled leads carry their contact's current first name in HubSpot; the first
    /// few mismatches.
    async fn check_names(&self, sample: &Sampled) -> anyhow::Result<(usize, usize, Vec<String>)> {
        let ids: Vec<String> = sample.leads.iter().map(|(l, _)| l.clone()).collect();
        let names = self.gql.names(&ids).await?;
        let mut same = 0;
        let mut wrong = Vec::new();
        for (lead, contact) in &sample.leads {
            let theirs = self.fake.firstname(*contact);
            let ours = names.get(lead).cloned().flatten();
            if theirs == ours {
                same += 1;
            } else if wrong.len() < 5 {
                wrong.push(format!(
                    "contact {contact}: HubSpot {theirs:?}, leadgate {ours:?}"
                ));
            }
        }
        Ok((same, sample.leads.len(), wrong))
    }
}

#[derive(Serialize, Default)]
struct PushResult {
    marked: u64,
    mutation_s: f64,
    /// From the mutation's answer until no link is pending.
    push_s: f64,
    finished: bool,
    synced: u64,
    failed: u64,
    pending_left: u64,
    records_with_email: u64,
    floor_s: f64,
    ratio_to_floor: f64,
    fake: HubCounts,
    /// First admitted upsert to the last answer, as the fake saw them.
    fake_span_s: f64,
    max_upserts_in_any_1s: usize,
    mean_gap_between_upserts_ms: f64,
    gaps_between_upserts: Latency,
    blocked_until_seen: Option<String>,
    push_runs: usize,
    runs_pushed: u64,
    runs_failed: u64,
    runs_skipped: u64,
    /// Of the first 100 leads without an email: links FAILED, and one reason.
    no_email_failed: String,
    no_email_reason: Option<String>,
    /// (seconds after the mutation's answer, synced, pending, failed), every 5 s.
    progress: Vec<(f64, u64, u64, u64)>,
    metrics: BTreeMap<String, f64>,
    usage: Value,
}

async fn push(bench: &Bench, rate: u32) -> anyhow::Result<PushResult> {
    let mut r = PushResult::default();
    let metrics_before = bench.gql.metrics().await?;
    let usage = Usage::start(bench.server_pid, bench.clk_tck);
    let counts_before = bench.fake.counts();
    let started = Instant::now();
    let data = bench
        .gql
        .query(
            SYNC_LEADS,
            json!({"input": {"connectionId": bench.conn_id, "filter": {}}}),
        )
        .await?;
    r.marked = data
        .pointer("/syncLeads/marked")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let answered = Instant::now();
    r.mutation_s = round3(answered.duration_since(started).as_secs_f64());
    eprintln!(
        "== push: {} leads marked in {:.2} s; waiting until none is pending",
        r.marked, r.mutation_s
    );
    let mut last_move = Instant::now();
    let mut last = (u64::MAX, 0u64);
    let mut next_progress = 0.0;
    let state = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let s = bench.gql.connection(&bench.conn_id).await?;
        let at = answered.elapsed().as_secs_f64();
        if s.blocked_until.is_some() && r.blocked_until_seen.is_none() {
            r.blocked_until_seen = s.blocked_until.clone();
        }
        if at >= next_progress {
            r.progress.push((round1(at), s.synced, s.pending, s.failed));
            eprintln!(
                "   {at:>6.1} s: synced {}, pending {}, failed {}, upserts {}",
                s.synced,
                s.pending,
                s.failed,
                bench.fake.counts().upsert_requests - counts_before.upsert_requests
            );
            next_progress += 5.0;
        }
        if s.pending == 0 {
            r.push_s = round3(at);
            r.finished = true;
            break s;
        }
        let now = (s.pending, bench.fake.counts().upsert_requests);
        if now != last {
            last = now;
            last_move = Instant::now();
        } else if last_move.elapsed() > STALL {
            eprintln!("== push: nothing moved for {} s; giving up", STALL.as_secs());
            r.push_s = round3(at);
            break s;
        }
    };
    r.usage = usage.end();
    r.synced = state.synced;
    r.failed = state.failed;
    r.pending_left = state.pending;
    let after = bench.fake.counts();
    r.fake = HubCounts {
        upsert_requests: after.upsert_requests - counts_before.upsert_requests,
        upsert_records: after.upsert_records - counts_before.upsert_records,
        upsert_created: after.upsert_created - counts_before.upsert_created,
        upsert_refused: after.upsert_refused - counts_before.upsert_refused,
        upsert_429: after.upsert_429 - counts_before.upsert_429,
        unauthorized: after.unauthorized - counts_before.unauthorized,
        malformed: after.malformed - counts_before.malformed,
        ..HubCounts::default()
    };
    r.records_with_email = r.marked.saturating_sub(r.failed);
    let batches = r.records_with_email.div_ceil(BATCH as u64);
    r.floor_s = round2(batches as f64 / f64::from(rate.max(1)));
    r.ratio_to_floor = if r.floor_s > 0.0 {
        round3(r.push_s / r.floor_s)
    } else {
        0.0
    };
    {
        let s = bench.fake.lock();
        let first = s.upsert_arrivals.iter().find(|t| **t >= started).copied();
        if let (Some(first), Some(last)) = (first, s.last_upsert_answer) {
            r.fake_span_s = round3(last.duration_since(first).as_secs_f64());
        }
    }
    let (max_1s, gap, gaps) = bench.fake.upsert_pacing(started);
    r.gaps_between_upserts = gaps;
    r.max_upserts_in_any_1s = max_1s;
    r.mean_gap_between_upserts_ms = gap;
    // the push run(s) are recorded when the job ends, just after the last outcome
    tokio::time::sleep(Duration::from_millis(500)).await;
    for run in bench.gql.runs(&bench.conn_id).await? {
        if run["trigger"].as_str() == Some("PUSH") {
            r.push_runs += 1;
            r.runs_pushed += run["pushed"].as_u64().unwrap_or(0);
            r.runs_failed += run["failed"].as_u64().unwrap_or(0);
            r.runs_skipped += run["skipped"].as_u64().unwrap_or(0);
        }
    }
    let no_email = bench.gql.query(NO_EMAIL, json!({})).await?;
    let nodes = no_email
        .pointer("/leads/nodes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let failed: Vec<&Value> = nodes
        .iter()
        .filter_map(|n| n["crmLinks"].as_array().and_then(|l| l.first()))
        .filter(|l| l["status"].as_str() == Some("FAILED"))
        .collect();
    r.no_email_failed = format!("{} of {}", failed.len(), nodes.len());
    r.no_email_reason = failed
        .first()
        .and_then(|l| l["lastError"].as_str())
        .map(str::to_owned);
    r.metrics = metrics_before.crm_delta(&bench.gql.metrics().await?);
    Ok(r)
}

#[derive(Serialize, Default)]
struct WebhookResult {
    clients: usize,
    events_per_request: usize,
    elapsed_s: f64,
    requests: usize,
    ok_requests: usize,
    non_200: BTreeMap<String, usize>,
    first_errors: Vec<String>,
    events_sent: u64,
    events_accepted: u64,
    events_applied: u64,
    events_skipped: u64,
    events_failed: u64,
    events_per_s: f64,
    applied_per_s: f64,
    requests_per_s: f64,
    latency: Latency,
    sample_same: usize,
    sample_size: usize,
    sample_mismatches: Vec<String>,
    duplicate_status: u16,
    duplicate_answer: Value,
    duplicate_applied: Option<u64>,
    sample_same_after_duplicate: usize,
    receipts: Value,
    /// WEBHOOK runs among the newest 100 runs: each accepted request is recorded as a run.
    webhook_runs_in_newest_100: usize,
    metrics: BTreeMap<String, f64>,
    usage: Value,
}

struct Sent {
    ms: f64,
    status: u16,
    answer: Value,
    error: Option<String>,
}

async fn send_webhook(http: &reqwest::Client, url: &str, body: Bytes) -> Sent {
    let ts = epoch_ms();
    let signature = sign_v3(HS_SECRET, url, &body, ts);
    let started = Instant::now();
    let reply = http
        .post(url)
        .header("content-type", "application/json")
        .header("X-HubSpot-Signature-v3", signature)
        .header("X-HubSpot-Request-Timestamp", ts.to_string())
        .body(body)
        .send()
        .await;
    let (status, answer, error) = match reply {
        Ok(r) => {
            let status = r.status().as_u16();
            match r.bytes().await {
                Ok(b) => {
                    let answer = serde_json::from_slice(&b).unwrap_or(Value::Null);
                    let error = (status != 200).then(|| {
                        format!(
                            "HTTP {status}: {}",
                            String::from_utf8_lossy(&b[..b.len().min(300)])
                        )
                    });
                    (status, answer, error)
                }
                Err(e) => (status, Value::Null, Some(format!("body failed: {e}"))),
            }
        }
        Err(e) => (0, Value::Null, Some(format!("request failed: {e}"))),
    };
    Sent {
        ms: started.elapsed().as_secs_f64() * 1e3,
        status,
        answer,
        error,
    }
}

async fn webhooks(
    bench: &Bench,
    sample: &Sampled,
    clients: usize,
    per_request: usize,
    duration: Duration,
) -> anyhow::Result<WebhookResult> {
    let mut r = WebhookResult {
        clients,
        events_per_request: per_request,
        ..WebhookResult::default()
    };
    // the sampled contacts first, so each gets at least one change; then every other contact
    let mut targets: Vec<u64> = sample.leads.iter().map(|(_, c)| *c).collect();
    let sampled: HashSet<u64> = targets.iter().copied().collect();
    targets.extend(
        bench
            .fake
            .contact_ids()
            .into_iter()
            .filter(|c| !sampled.contains(c)),
    );
    if targets.is_empty() {
        bail!("no contact in the fake HubSpot to send changes of");
    }
    let targets = Arc::new(targets);
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(clients * 2)
        .timeout(Duration::from_secs(30))
        .build()?;
    let next_target = Arc::new(AtomicUsize::new(0));
    let next_event = Arc::new(AtomicU64::new(9_000_000_001));
    let first_body: Arc<Mutex<Option<Bytes>>> = Arc::new(Mutex::new(None));
    let metrics_before = bench.gql.metrics().await?;
    let usage = Usage::start(bench.server_pid, bench.clk_tck);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let http = http.clone();
        let url = bench.webhook_url.clone();
        let fake = bench.fake.clone();
        let targets = targets.clone();
        let next_target = next_target.clone();
        let next_event = next_event.clone();
        let first_body = first_body.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            while Instant::now() < deadline {
                let mut events = Vec::with_capacity(per_request);
                for _ in 0..per_request {
                    let t = next_target.fetch_add(1, Ordering::Relaxed) % targets.len();
                    let contact = targets[t];
                    let event_id = next_event.fetch_add(1, Ordering::Relaxed);
                    let value = format!("Hook{event_id}");
                    let at = fake.edit(contact, "firstname", &value);
                    events.push(json!({
                        "eventId": event_id,
                        "subscriptionId": 7,
                        "portalId": 62515,
                        "appId": 4242,
                        "occurredAt": at,
                        "subscriptionType": "contact.propertyChange",
                        "attemptNumber": 0,
                        "objectId": contact,
                        "propertyName": "firstname",
                        "propertyValue": value,
                        "changeSource": "CRM_UI",
                        "sourceId": "userId:9",
                    }));
                }
                let body = Bytes::from(serde_json::to_vec(&events).unwrap_or_default());
                {
                    let mut first = first_body.lock().unwrap_or_else(|p| p.into_inner());
                    if first.is_none() {
                        *first = Some(body.clone());
                    }
                }
                sent.push(send_webhook(&http, &url, body).await);
            }
            sent
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        if let Ok(sent) = task.await {
            all.extend(sent);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    r.usage = usage.end();
    r.elapsed_s = round3(elapsed);
    r.requests = all.len();
    r.events_sent = (all.len() * per_request) as u64;
    for s in &all {
        if s.status == 200 {
            r.ok_requests += 1;
            let n = |k: &str| s.answer[k].as_u64().unwrap_or(0);
            r.events_accepted += n("received");
            r.events_applied += n("applied");
            r.events_skipped += n("skipped");
            r.events_failed += s.answer["failed"].as_array().map_or(0, |a| a.len() as u64);
        } else {
            *r.non_200.entry(s.status.to_string()).or_insert(0) += 1;
        }
        if let Some(e) = &s.error
            && r.first_errors.len() < 5
            && !r.first_errors.contains(e)
        {
            r.first_errors.push(e.clone());
        }
    }
    r.events_per_s = round1(r.events_accepted as f64 / elapsed);
    r.applied_per_s = round1(r.events_applied as f64 / elapsed);
    r.requests_per_s = round1(r.ok_requests as f64 / elapsed);
    r.latency = latency(all.iter().map(|s| s.ms).collect());
    // applied, not only accepted: the sampled leads carry the last value HubSpot holds
    let (same, size, wrong) = bench.check_names(sample).await?;
    r.sample_same = same;
    r.sample_size = size;
    r.sample_mismatches = wrong;
    // HubSpot retries a request it saw fail: the same events again apply nothing
    let first = first_body.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(body) = first {
        let again = send_webhook(&http, &bench.webhook_url, body).await;
        r.duplicate_status = again.status;
        r.duplicate_applied = again.answer["applied"].as_u64();
        r.duplicate_answer = again.answer;
        r.sample_same_after_duplicate = bench.check_names(sample).await?.0;
    }
    let conn = bench.gql.connection(&bench.conn_id).await?;
    r.receipts = conn.receipts;
    r.webhook_runs_in_newest_100 = bench
        .gql
        .runs(&bench.conn_id)
        .await?
        .iter()
        .filter(|run| run["trigger"].as_str() == Some("WEBHOOK"))
        .count();
    r.metrics = metrics_before.crm_delta(&bench.gql.metrics().await?);
    Ok(r)
}

#[derive(Serialize, Default)]
struct PollResult {
    contacts_changed: usize,
    queued: bool,
    /// From the mutation's answer until its POLL run is listed as finished.
    poll_s: f64,
    /// The run's own startedAt → finishedAt.
    run_s: Option<f64>,
    finished: bool,
    pulled: u64,
    skipped: u64,
    failed: u64,
    poll_runs: usize,
    records_per_s: f64,
    search_pages: u64,
    search_records: u64,
    search_over_cap: u64,
    listing_requests: u64,
    reads_by_id: u64,
    vm_hwm_before_mb: f64,
    vm_hwm_after_mb: f64,
    vm_rss_before_mb: f64,
    vm_rss_after_mb: f64,
    vm_rss_max_during_mb: f64,
    sample_same: usize,
    sample_size: usize,
    sample_mismatches: Vec<String>,
    links_after: (u64, u64, u64),
    metrics: BTreeMap<String, f64>,
    usage: Value,
}

async fn poll(bench: &Bench, sample: &Sampled) -> anyhow::Result<PollResult> {
    let mut r = PollResult::default();
    let earlier: HashSet<String> = bench
        .gql
        .runs(&bench.conn_id)
        .await?
        .iter()
        .filter_map(|run| run["id"].as_str().map(str::to_owned))
        .collect();
    r.vm_hwm_before_mb = status_mb(bench.server_pid, "VmHWM");
    r.vm_rss_before_mb = status_mb(bench.server_pid, "VmRSS");
    r.contacts_changed = bench.fake.rename_all("Polled");
    let counts_before = bench.fake.counts();
    let metrics_before = bench.gql.metrics().await?;
    let usage = Usage::start(bench.server_pid, bench.clk_tck);
    let data = bench.gql.query(POLL, json!({"id": bench.conn_id})).await?;
    r.queued = data
        .pointer("/pollCrmConnection/queued")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let answered = Instant::now();
    eprintln!(
        "== poll: {} contacts changed in HubSpot; poll queued: {}",
        r.contacts_changed, r.queued
    );
    let mut last_move = Instant::now();
    let mut last = 0;
    let mut next_progress = 5.0;
    let mut runs: Vec<Value>;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        r.vm_rss_max_during_mb = r.vm_rss_max_during_mb.max(status_mb(bench.server_pid, "VmRSS"));
        let at = answered.elapsed().as_secs_f64();
        let counts = bench.fake.counts();
        runs = bench
            .gql
            .runs(&bench.conn_id)
            .await?
            .into_iter()
            .filter(|run| {
                run["trigger"].as_str() == Some("POLL")
                    && run["id"].as_str().is_some_and(|id| !earlier.contains(id))
            })
            .collect();
        // done: a run was recorded and the final page of the deletions listing was read
        if !runs.is_empty() && counts.archived_listing_final > counts_before.archived_listing_final {
            r.poll_s = round3(at);
            r.finished = true;
            break;
        }
        if at >= next_progress {
            eprintln!(
                "   {at:>6.1} s: {} search pages, {} records read",
                counts.search_requests - counts_before.search_requests,
                counts.search_records - counts_before.search_records
            );
            next_progress += 5.0;
        }
        if counts.search_requests != last {
            last = counts.search_requests;
            last_move = Instant::now();
        } else if last_move.elapsed() > STALL {
            eprintln!("== poll: nothing moved for {} s; giving up", STALL.as_secs());
            r.poll_s = round3(at);
            break;
        }
    }
    r.usage = usage.end();
    r.vm_hwm_after_mb = status_mb(bench.server_pid, "VmHWM");
    r.vm_rss_after_mb = status_mb(bench.server_pid, "VmRSS");
    r.vm_rss_max_during_mb = r.vm_rss_max_during_mb.max(r.vm_rss_after_mb);
    r.poll_runs = runs.len();
    for run in &runs {
        r.pulled += run["pulled"].as_u64().unwrap_or(0);
        r.skipped += run["skipped"].as_u64().unwrap_or(0);
        r.failed += run["failed"].as_u64().unwrap_or(0);
    }
    let time = |v: &Value| {
        v.as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.timestamp_millis())
    };
    if let [run] = runs.as_slice()
        && let (Some(a), Some(b)) = (time(&run["startedAt"]), time(&run["finishedAt"]))
    {
        r.run_s = Some(round3((b - a) as f64 / 1e3));
    }
    let counts = bench.fake.counts();
    r.search_pages = counts.search_requests - counts_before.search_requests;
    r.search_records = counts.search_records - counts_before.search_records;
    r.search_over_cap = counts.search_over_cap - counts_before.search_over_cap;
    r.listing_requests = counts.listing_requests - counts_before.listing_requests;
    r.reads_by_id = counts.reads_by_id - counts_before.reads_by_id;
    r.records_per_s = if r.poll_s > 0.0 {
        round1(r.search_records as f64 / r.poll_s)
    } else {
        0.0
    };
    let (same, size, wrong) = bench.check_names(sample).await?;
    r.sample_same = same;
    r.sample_size = size;
    r.sample_mismatches = wrong;
    let conn = bench.gql.connection(&bench.conn_id).await?;
    r.links_after = (conn.synced, conn.pending, conn.failed);
    r.metrics = metrics_before.crm_delta(&bench.gql.metrics().await?);
    Ok(r)
}

// ------------------------------------------------------------------ the printed figures

fn push_rows(p: &PushResult, rate: u32, rows: &mut Vec<Row>) {
    let s = "push";
    rows.push(row(
        s,
        "leads marked by syncLeads (mutation time)",
        format!("{} ({} s)", p.marked, p.mutation_s),
        "-",
        None,
    ));
    rows.push(row(
        s,
        "seconds until no link is PENDING",
        format!("{}{}", p.push_s, if p.finished { "" } else { " (gave up)" }),
        "-",
        Some(p.finished),
    ));
    rows.push(row(
        s,
        &format!("floor: ceil(records with email / {BATCH}) / {rate} req/s"),
        format!("{} s ({} records)", p.floor_s, p.records_with_email),
        "-",
        None,
    ));
    rows.push(row(
        s,
        "ratio to the floor",
        format!("{}", p.ratio_to_floor),
        "<= 1.05",
        Some(p.finished && p.ratio_to_floor <= 1.05),
    ));
    rows.push(row(
        s,
        "batches answered / records upserted (mean per batch)",
        format!(
            "{} / {} ({})",
            p.fake.upsert_requests,
            p.fake.upsert_records,
            if p.fake.upsert_requests > 0 {
                round1(p.fake.upsert_records as f64 / p.fake.upsert_requests as f64)
            } else {
                0.0
            }
        ),
        &format!("{} batches", p.records_with_email.div_ceil(BATCH as u64)),
        Some(p.fake.upsert_requests == p.records_with_email.div_ceil(BATCH as u64)),
    ));
    rows.push(row(
        s,
        "429s sent by the fake",
        format!("{}", p.fake.upsert_429),
        "0",
        Some(p.fake.upsert_429 == 0),
    ));
    rows.push(row(
        s,
        "links SYNCED / FAILED / PENDING",
        format!("{} / {} / {}", p.synced, p.failed, p.pending_left),
        "FAILED = leads without email",
        None,
    ));
    rows.push(row(
        s,
        "leads without email whose link is FAILED",
        p.no_email_failed.clone(),
        "all",
        None,
    ));
    rows.push(row(
        s,
        "fake: first upsert to last answer",
        format!("{} s", p.fake_span_s),
        "-",
        None,
    ));
    rows.push(row(
        s,
        "mean gap between upserts / most in any 1 s",
        format!(
            "{} ms / {}",
            p.mean_gap_between_upserts_ms, p.max_upserts_in_any_1s
        ),
        &format!(">= {} ms / <= {rate}", 1000 / rate.max(1)),
        None,
    ));
    rows.push(row(
        s,
        "gap between upserts: p50 / p90 / p99 / max ms",
        format!(
            "{} / {} / {} / {}",
            p.gaps_between_upserts.p50_ms,
            p.gaps_between_upserts.p90_ms,
            p.gaps_between_upserts.p99_ms,
            p.gaps_between_upserts.max_ms
        ),
        "-",
        None,
    ));
    rows.push(row(
        s,
        "PUSH runs: pushed / failed / skipped",
        format!(
            "{} run(s): {} / {} / {}",
            p.push_runs, p.runs_pushed, p.runs_failed, p.runs_skipped
        ),
        "-",
        None,
    ));
    rows.push(row(
        s,
        "server CPU (cores)",
        format!("{} s ({})", p.usage["server_cpu_s"], p.usage["server_cpu_cores"]),
        "-",
        None,
    ));
    if let Some(b) = &p.blocked_until_seen {
        rows.push(row(
            s,
            "connection blocked (429) until",
            b.clone(),
            "never",
            Some(false),
        ));
    }
}

fn webhook_rows(w: &WebhookResult, rows: &mut Vec<Row>) {
    let s = "webhooks";
    rows.push(row(
        s,
        "accepted events/s",
        format!("{}", w.events_per_s),
        ">= 2,000",
        Some(w.events_per_s >= 2000.0),
    ));
    rows.push(row(
        s,
        "applied events/s",
        format!("{}", w.applied_per_s),
        "-",
        None,
    ));
    rows.push(row(
        s,
        &format!(
            "requests/s ({} events each, {} clients)",
            w.events_per_request, w.clients
        ),
        format!("{}", w.requests_per_s),
        "-",
        None,
    ));
    rows.push(row(
        s,
        "p50 / p95 / p99 / max ms",
        format!(
            "{} / {} / {} / {}",
            w.latency.p50_ms, w.latency.p95_ms, w.latency.p99_ms, w.latency.max_ms
        ),
        "p99 <= 50",
        Some(w.latency.n > 0 && w.latency.p99_ms <= 50.0),
    ));
    let non_200: usize = w.non_200.values().sum();
    rows.push(row(
        s,
        "non-200 answers",
        if w.non_200.is_empty() {
            format!("0 of {}", w.requests)
        } else {
            format!(
                "{non_200} of {} ({})",
                w.requests,
                w.non_200
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        "0",
        Some(non_200 == 0),
    ));
    rows.push(row(
        s,
        "events sent / accepted / applied / skipped / failed",
        format!(
            "{} / {} / {} / {} / {}",
            w.events_sent, w.events_accepted, w.events_applied, w.events_skipped, w.events_failed
        ),
        "-",
        None,
    ));
    rows.push(row(
        s,
        "sampled leads with HubSpot's last first name",
        format!("{} of {}", w.sample_same, w.sample_size),
        "all",
        Some(w.sample_size > 0 && w.sample_same == w.sample_size),
    ));
    rows.push(row(
        s,
        "a request sent again: status, applied",
        format!(
            "{}, {}",
            w.duplicate_status,
            w.duplicate_applied.map_or("?".into(), |a| a.to_string())
        ),
        "200, 0",
        Some(w.duplicate_status == 200 && w.duplicate_applied == Some(0)),
    ));
    rows.push(row(
        s,
        "sampled names unchanged after it",
        format!("{} of {}", w.sample_same_after_duplicate, w.sample_size),
        "all",
        Some(w.sample_size > 0 && w.sample_same_after_duplicate == w.sample_size),
    ));
    rows.push(row(
        s,
        "server CPU (cores)",
        format!("{} s ({})", w.usage["server_cpu_s"], w.usage["server_cpu_cores"]),
        "-",
        None,
    ));
}

fn poll_rows(p: &PollResult, rows: &mut Vec<Row>) {
    let s = "poll";
    rows.push(row(
        s,
        "seconds until the POLL run finished",
        format!(
            "{}{}{}",
            p.poll_s,
            p.run_s.map_or(String::new(), |r| format!(" (run {r} s)")),
            if p.finished { "" } else { " (gave up)" }
        ),
        "<= 30",
        Some(p.finished && p.poll_s <= 30.0),
    ));
    rows.push(row(
        s,
        "contacts changed / pulled / skipped / failed",
        format!(
            "{} / {} / {} / {}",
            p.contacts_changed, p.pulled, p.skipped, p.failed
        ),
        "pulled = changed",
        Some(p.pulled == p.contacts_changed as u64),
    ));
    rows.push(row(
        s,
        "search pages / records read / records per s",
        format!("{} / {} / {}", p.search_pages, p.search_records, p.records_per_s),
        "-",
        None,
    ));
    rows.push(row(
        s,
        "VmHWM before -> after (MB)",
        format!("{} -> {}", p.vm_hwm_before_mb, p.vm_hwm_after_mb),
        "flat (<= +10 %)",
        Some(p.vm_hwm_after_mb <= p.vm_hwm_before_mb * 1.10),
    ));
    rows.push(row(
        s,
        "VmRSS before / max during / after (MB)",
        format!(
            "{} / {} / {}",
            p.vm_rss_before_mb, p.vm_rss_max_during_mb, p.vm_rss_after_mb
        ),
        "-",
        None,
    ));
    rows.push(row(
        s,
        "sampled leads with HubSpot's new first name",
        format!("{} of {}", p.sample_same, p.sample_size),
        "all",
        Some(p.sample_size > 0 && p.sample_same == p.sample_size),
    ));
    rows.push(row(
        s,
        "server CPU (cores)",
        format!("{} s ({})", p.usage["server_cpu_s"], p.usage["server_cpu_cores"]),
        "-",
        None,
    ));
}

// ------------------------------------------------------------------ main

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let leads = args.leads.unwrap_or(if args.quick { 10_000 } else { 100_000 });
    let duration = Duration::from_secs(args.duration.unwrap_or(if args.quick { 5 } else { 20 }).max(1));
    if leads < 2 * SAMPLE_EACH_END as u64 {
        bail!("--leads must be at least {}", 2 * SAMPLE_EACH_END);
    }
    if args.events_per_request == 0 || args.events_per_request > 100 {
        bail!("--events-per-request takes 1 to 100 (HubSpot sends at most 100)");
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
    let sqlite_file = results.join("crm.sqlite");
    let env = Env {
        lg: Leadgate {
            bin: bin.clone(),
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
    let machine = machine(&bin);
    let machine_line = format!(
        "{} CPUs (getconf _NPROCESSORS_ONLN {}), {}, {} MB; shared by the leadgate server, the \
         webhook senders and the fake HubSpot (same process as the senders); nothing pinned",
        machine["cpus"],
        machine["getconf_nprocessors_onln"].as_str().unwrap_or("?"),
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["mem_total_mb"]
    );
    let build_line = format!(
        "leadgate {}{} ({} build at {}); benchmark program {} build",
        machine["git_rev"].as_str().unwrap_or("?"),
        if machine["git_dirty"].as_bool() == Some(true) {
            "-dirty"
        } else {
            ""
        },
        machine["leadgate_profile"].as_str().unwrap_or("?"),
        bin.display(),
        machine["bench_profile"].as_str().unwrap_or("?"),
    );
    println!(
        "CRM sync benchmark: {leads} leads on {backend_name}; fake HubSpot upserts in {} ms, {} req/s allowed, \
         search in {} ms; webhooks: {} clients x {} events for {} s",
        args.latency_ms,
        args.rate,
        args.search_latency_ms,
        args.clients,
        args.events_per_request,
        duration.as_secs()
    );
    println!("Machine: {machine_line}.");
    println!("Build: {build_line}.");

    // 1. the fake HubSpot
    let fake = Arc::new(FakeHubSpot {
        latency: Duration::from_millis(args.latency_ms),
        search_latency: Duration::from_millis(args.search_latency_ms),
        state: Mutex::new(HubState {
            limit: Some(args.rate.max(1)),
            ..HubState::default()
        }),
    });
    let hubspot_url = start_fake(fake.clone())?;
    eprintln!("== fake HubSpot at {hubspot_url}");

    // 2. a fresh database
    let seed_s = env.prepare().await?;
    eprintln!("== seeded in {seed_s:.1} s");

    // 3. the server and the connection
    let mut key = [0u8; 32];
    rand::fill(&mut key);
    let master_key = base64::engine::general_purpose::STANDARD.encode(key);
    let log = results.join(format!("{stamp}-crm-server-{backend_name}.log"));
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
    let server = env.serve(&master_key, &log).await?;
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .build()?;
    let gql = Gql {
        http,
        url: format!("{}/graphql", server.base),
        base: server.base.clone(),
        token,
    };
    let result = run_scenarios(&args, &gql, &fake, &server, &hubspot_url, duration).await;
    let vm_hwm = status_mb(server.pid, "VmHWM");
    let vm_rss = status_mb(server.pid, "VmRSS");
    server.stop().await;
    let (push_r, webhook_r, poll_r, error) = match result {
        Ok((p, w, q, e)) => (p, w, q, e),
        Err(e) => (None, None, None, Some(format!("{e:#}"))),
    };
    if let Some(e) = &error {
        eprintln!("benchmark failed: {e}");
    }

    // 4. the table and the JSON
    let mut rows = Vec::new();
    if let Some(p) = &push_r {
        push_rows(p, args.rate, &mut rows);
    }
    if let Some(w) = &webhook_r {
        webhook_rows(w, &mut rows);
    }
    if let Some(p) = &poll_r {
        poll_rows(p, &mut rows);
    }
    let total_s = run_started.elapsed().as_secs_f64();
    println!();
    println!("{}", table(&rows));
    println!("Server peak RSS (VmHWM): {vm_hwm} MB; RSS at the end: {vm_rss} MB");
    println!("Run took {total_s:.0} s (seeding {seed_s:.1} s of it)");
    if let Some(e) = &error {
        println!("The run stopped early: {e}");
    }
    let out = results.join(format!("{stamp}-crm.json"));
    let report = json!({
        "kind": "crm",
        "backend": args.backend,
        "leads": leads,
        "upsert_latency_ms": args.latency_ms,
        "search_latency_ms": args.search_latency_ms,
        "rate_limit_per_s": args.rate,
        "webhook_clients": args.clients,
        "events_per_request": args.events_per_request,
        "webhook_duration_s": duration.as_secs(),
        "only": args.only,
        "server_env": args.server_env,
        "machine": machine,
        "note": machine_line,
        "build": build_line,
        "seed_wall_s": round1(seed_s),
        "server_vm_hwm_mb": vm_hwm,
        "server_vm_rss_end_mb": vm_rss,
        "run_wall_s": round1(total_s),
        "server_log": log.file_name().map(|n| n.to_string_lossy().into_owned()),
        "error": error,
        "push": push_r,
        "webhooks": webhook_r,
        "poll": poll_r,
        "figures": rows.iter().map(|r| json!({
            "scenario": r.scenario, "figure": r.figure, "value": r.value, "target": r.target, "verdict": r.verdict,
        })).collect::<Vec<_>>(),
        "markdown": markdown(&rows),
    });
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    println!("results: {}", out.display());
    Ok(())
}

type Outcome = (
    Option<PushResult>,
    Option<WebhookResult>,
    Option<PollResult>,
    Option<String>,
);

/// The connection, then the scenarios in order; a failure after the push keeps what was
/// measured before it.
async fn run_scenarios(
    args: &Args,
    gql: &Gql,
    fake: &Arc<FakeHubSpot>,
    server: &Server,
    hubspot_url: &str,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let data = gql
        .query(
            CREATE_CONNECTION,
            json!({"input": {
                "kind": "HUBSPOT",
                "name": "CRM benchmark",
                "apiBaseUrl": hubspot_url,
                "credentials": {"accessToken": HS_TOKEN, "clientSecret": HS_SECRET},
                "pushOnChange": false,
            }}),
        )
        .await?;
    let errors = &data["createCrmConnection"]["userErrors"];
    if errors.as_array().is_some_and(|e| !e.is_empty()) {
        bail!("createCrmConnection refused: {errors}");
    }
    let conn = &data["createCrmConnection"]["connection"];
    let conn_id = conn["id"].as_str().context("no connection id")?.to_owned();
    let path = conn["webhookPath"].as_str().context("no webhookPath")?;
    let tested = gql.query(TEST_CONNECTION, json!({"id": conn_id})).await?;
    if tested.pointer("/testCrmConnection/ok").and_then(Value::as_bool) != Some(true) {
        bail!("testCrmConnection failed: {tested}");
    }
    let bench = Bench {
        gql: gql.clone(),
        fake: fake.clone(),
        server_pid: server.pid,
        clk_tck: clk_tck(),
        conn_id,
        webhook_url: format!("{}{path}", server.base),
    };
    eprintln!(
        "== connection {} (webhooks at {})",
        bench.conn_id, bench.webhook_url
    );

    let p = push(&bench, args.rate).await?;
    eprintln!(
        "   push: {} s ({}x the floor of {} s), {} batches, {} 429s, {} FAILED",
        p.push_s, p.ratio_to_floor, p.floor_s, p.fake.upsert_requests, p.fake.upsert_429, p.failed
    );
    if !p.finished {
        return Ok((Some(p), None, None, Some("the push did not finish".into())));
    }
    let sample = match bench.sample().await {
        Ok(s) => s,
        Err(e) => return Ok((Some(p), None, None, Some(format!("sampling leads: {e:#}")))),
    };
    let mut w = None;
    if matches!(args.only, None | Some(Only::Webhooks)) {
        eprintln!(
            "== webhooks: {} clients x {} events for {} s",
            args.clients,
            args.events_per_request,
            duration.as_secs()
        );
        match webhooks(&bench, &sample, args.clients, args.events_per_request, duration).await {
            Ok(r) => {
                eprintln!(
                    "   webhooks: {} events/s accepted, p99 {} ms, {} non-200",
                    r.events_per_s,
                    r.latency.p99_ms,
                    r.non_200.values().sum::<usize>()
                );
                w = Some(r);
            }
            Err(e) => return Ok((Some(p), None, None, Some(format!("webhooks: {e:#}")))),
        }
    }
    let mut q = None;
    if matches!(args.only, None | Some(Only::Poll)) {
        match poll(&bench, &sample).await {
            Ok(r) => {
                eprintln!(
                    "   poll: {} s, pulled {}, skipped {}, failed {}",
                    r.poll_s, r.pulled, r.skipped, r.failed
                );
                q = Some(r);
            }
            Err(e) => return Ok((Some(p), w, None, Some(format!("poll: {e:#}")))),
        }
    }
    Ok((Some(p), w, q, None))
}
