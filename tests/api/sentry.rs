//! Errors to Sentry from real `serve` and `worker` processes, against a fake ingest endpoint on
//! 127.0.0.1 (`FakeSentry`) that records what arrives at `POST /api/{project}/envelope/`. The
//! envelope format is Sentry's own (a JSON header line, then per item a JSON item header line
//! and its payload, `length` bytes long when the item header says so); the reqwest transport
//! sends it without a content encoding, and the fake records any it is given, so a change there
//! fails the tests instead of going unseen. An `INTERNAL` error is made the way a corrupt row
//! makes one: a campaign's stored state is overwritten with text the store cannot read and
//! echoes in its error.

use crate::cli::{Server, run, start, stderr, terminate};
use crate::helpers::{MASTER_KEY, SECRET, TestApp, backends, spawn_app};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use leadgate::domain::{JobId, NewJob, Role};
use leadgate::jobs::test_kinds::{FLAKY, PANIC};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long a test waits for something to arrive before it fails.
const WAIT: Duration = Duration::from_secs(30);

const LIST_CAMPAIGNS: &str = "query ListCampaigns { campaigns(first: 5) { edges { node { id state } } } }";

/// One envelope as it arrived.
#[derive(Clone, Debug)]
struct Envelope {
    /// The body, byte for byte.
    raw: Vec<u8>,
    /// `Content-Encoding`, if the sender set one.
    encoding: Option<String>,
    project: String,
    /// Item header and payload, in order.
    items: Vec<(Value, Vec<u8>)>,
}

impl Envelope {
    /// The `event` items' payloads.
    fn events(&self) -> Vec<Value> {
        self.items
            .iter()
            .filter(|(header, _)| header["type"] == "event")
            .map(|(_, payload)| serde_json::from_slice(payload).expect("an event item is JSON"))
            .collect()
    }
}

/// Splits off the first line (without its `\n`).
fn line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|b| *b == b'\n') {
        Some(at) => (&bytes[..at], &bytes[at + 1..]),
        None => (bytes, &[]),
    }
}

/// An envelope's items, per <https://develop.sentry.dev/sdk/data-model/envelopes/>.
fn items(body: &[u8]) -> Vec<(Value, Vec<u8>)> {
    let (header, mut rest) = line(body);
    serde_json::from_slice::<Value>(header).expect("the envelope header is JSON");
    let mut items = Vec::new();
    while !rest.is_empty() {
        let (item_header, after) = line(rest);
        if item_header.is_empty() {
            rest = after;
            continue;
        }
        let item_header: Value = serde_json::from_slice(item_header).expect("an item header is JSON");
        let (payload, after) = match item_header["length"].as_u64() {
            Some(n) => {
                let (payload, tail) = after.split_at(n as usize);
                (payload, tail.strip_prefix(b"\n").unwrap_or(tail))
            }
            None => line(after),
        };
        items.push((item_header, payload.to_vec()));
        rest = after;
    }
    items
}

/// A Sentry ingest endpoint that records envelopes; while `hold` is on it receives them but
/// answers none until it is turned off.
struct FakeSentry {
    port: u16,
    received: mpsc::UnboundedReceiver<Envelope>,
    all: Arc<Mutex<Vec<Envelope>>>,
    hold: watch::Sender<bool>,
}

#[derive(Clone)]
struct FakeState {
    received: mpsc::UnboundedSender<Envelope>,
    all: Arc<Mutex<Vec<Envelope>>>,
    hold: watch::Receiver<bool>,
}

async fn envelope(
    State(state): State<FakeState>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let items = if encoding.is_none() {
        items(&body)
    } else {
        Vec::new()
    };
    let envelope = Envelope {
        raw: body.to_vec(),
        encoding,
        project,
        items,
    };
    state.all.lock().unwrap().push(envelope.clone());
    let _ = state.received.send(envelope);
    let mut hold = state.hold.clone();
    let _ = hold.wait_for(|held| !*held).await;
    StatusCode::OK
}

impl FakeSentry {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, received) = mpsc::unbounded_channel();
        let all = Arc::new(Mutex::new(Vec::new()));
        let (hold, held) = watch::channel(false);
        let state = FakeState {
            received: tx,
            all: all.clone(),
            hold: held,
        };
        let app = axum::Router::new()
            .route("/api/{project}/envelope/", axum::routing::post(envelope))
            .with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            port,
            received,
            all,
            hold,
        }
    }

    /// The DSN of project 1 here.
    fn dsn(&self) -> String {
        format!("http://publickey@127.0.0.1:{}/1", self.port)
    }

    /// The next envelope that holds an event; the test fails when none comes in time.
    async fn next_event(&mut self) -> Value {
        loop {
            let envelope = tokio::time::timeout(WAIT, self.received.recv())
                .await
                .expect("an envelope reached the fake Sentry in time")
                .expect("the fake is running");
            assert_eq!(envelope.encoding, None, "the transport sends envelopes unencoded");
            assert_eq!(envelope.project, "1");
            if let Some(event) = envelope.events().into_iter().next() {
                return event;
            }
        }
    }

    /// Every envelope so far, byte for byte, one after the other.
    fn bytes(&self) -> Vec<u8> {
        self.all
            .lock()
            .unwrap()
            .iter()
            .flat_map(|e| e.raw.clone())
            .collect()
    }
}

/// The env of a `serve` or `worker` on `app`'s database reporting to `dsn`.
fn reporting_env(dsn: &str) -> Vec<(&'static str, String)> {
    vec![
        ("LEADGATE_MASTER_KEY", MASTER_KEY.to_owned()),
        ("LEADGATE_JWT_SECRET", SECRET.to_owned()),
        ("LEADGATE_SENTRY_DSN", dsn.to_owned()),
        ("LEADGATE_SENTRY_ENVIRONMENT", "staging-eu".to_owned()),
    ]
}

/// `serve` on `app`'s database without workers, reporting to `dsn`.
async fn serve_reporting_to(app: &TestApp, dsn: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let env = reporting_env(dsn);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &app.settings.database_url,
        "--no-workers",
    ];
    let server = start(dir.path(), &args, &env, false).await;
    (server, dir)
}

/// `worker` on `app`'s database with the test job kinds, reporting to `dsn` (a lease long
/// enough that a panicking job is not run again during the test); returns it and its banner.
async fn worker_reporting_to(app: &TestApp, dsn: &str) -> (tokio::process::Child, String) {
    let mut env = reporting_env(dsn);
    env.push(("LEADGATE_JOB_VISIBILITY_TIMEOUT_SECS", "600".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (worker, banner) = crate::jobs::start_worker_with(&app.settings.database_url, &env).await;
    (worker, banner.join("\n"))
}

/// Makes every campaign of `app`'s database unreadable: its state becomes `text`, which the
/// store reports back in its error (an `INTERNAL` error for whoever lists campaigns).
async fn corrupt_campaigns(app: &TestApp, text: &str) {
    let data = app
        .gql(
            Role::Admin,
            "mutation($input: CreateCampaignInput!) { createCampaign(input: $input) { campaign { id } userErrors { message } } }",
            json!({"input": {
                "name": "Spring",
                "segment": {"filter": {"tags": {"anyOf": ["spring"]}}},
                "senders": ["Sales <sales@example.com>"],
                "steps": [{"key": "hello", "email": {"subject": "Hi", "body": "Hello"}}]
            }}),
        )
        .await;
    assert_eq!(data["createCampaign"]["userErrors"], json!([]), "{data}");
    let url = &app.settings.database_url;
    let sql = "UPDATE campaigns SET state = $1";
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(sql).bind(text).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query(sql).bind(text).execute(&pool).await.unwrap();
        pool.close().await;
    }
}

/// `ListCampaigns` POSTed to `server` with `token`; the response must come (in `WAIT`) and
/// carry `INTERNAL`. Returns its request id.
async fn failing_request(server: &Server, token: &str) -> String {
    let send = reqwest::Client::new()
        .post(format!("{}/graphql", server.base))
        .bearer_auth(token)
        .json(&json!({"query": LIST_CAMPAIGNS, "operationName": "ListCampaigns"}))
        .send();
    let response = tokio::time::timeout(WAIT, send)
        .await
        .expect("the response arrives")
        .expect("a response");
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "INTERNAL", "{body}");
    request_id
}

fn tag<'a>(event: &'a Value, name: &str) -> &'a str {
    event["tags"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no tag {name}: {event}"))
}

/// An event's level; the protocol leaves out `error`, its default.
fn level(event: &Value) -> &str {
    event["level"].as_str().unwrap_or("error")
}

fn release() -> String {
    format!("leadgate@{}", env!("CARGO_PKG_VERSION"))
}

#[tokio::test]
async fn an_internal_error_reaches_sentry_with_its_request_operation_and_workspace() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let mut sentry = FakeSentry::start().await;
        corrupt_campaigns(&app, "unreadable").await;
        let (server, _dir) = serve_reporting_to(&app, &sentry.dsn()).await;
        let expected = format!("Errors: Sentry at http://127.0.0.1:{}, project 1", sentry.port);
        assert!(server.banner.contains(&expected), "{}", server.banner);
        assert!(!server.banner.contains("publickey"), "{}", server.banner);

        let request_id = failing_request(&server, &app.token(Role::Admin)).await;
        let event = sentry.next_event().await;
        assert_eq!(event["release"], release().as_str(), "{backend:?}: {event}");
        assert_eq!(event["environment"], "staging-eu");
        assert_eq!(level(&event), "error");
        assert_eq!(event["message"], "internal error", "{event}");
        assert_eq!(tag(&event, "request_id"), request_id);
        assert_eq!(tag(&event, "operation"), "ListCampaigns");
        assert_eq!(tag(&event, "workspace_id"), app.workspace.id.to_string());
        assert_eq!(event["request"]["method"], "POST", "{event}");
        assert!(event.get("user").is_none(), "{event}");
        terminate(server).await;
    }
}

#[tokio::test]
async fn a_panicking_job_and_a_dead_job_in_the_worker_reach_sentry() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let mut sentry = FakeSentry::start().await;
        let queue = app.services.jobs.queue();
        let enqueue = |job: NewJob| async move { queue.enqueue(job).await.unwrap().id };
        let panicking: JobId = enqueue(
            NewJob::new(PANIC, json!({"message": "the handler has a bug"})).in_workspace(app.workspace.id),
        )
        .await;
        let dead: JobId =
            enqueue(NewJob::new(FLAKY, json!({"permanent": true})).in_workspace(app.workspace.id)).await;
        let (_worker, banner) = worker_reporting_to(&app, &sentry.dsn()).await;
        assert!(banner.contains("Errors: Sentry at http://127.0.0.1:"), "{banner}");

        let mut seen = Vec::new();
        while seen.len() < 2 {
            seen.push(sentry.next_event().await);
        }
        let by_kind = |kind: &str| {
            seen.iter()
                .find(|e| e["tags"]["job_kind"] == kind)
                .unwrap_or_else(|| panic!("no {kind} event in {seen:?}"))
                .clone()
        };
        let panic = by_kind("panic");
        assert_eq!(level(&panic), "fatal", "{backend:?}: {panic}");
        assert_eq!(panic["exception"]["values"][0]["type"], "panic");
        assert_eq!(panic["exception"]["values"][0]["value"], "the handler has a bug");
        assert_eq!(tag(&panic, "job_id"), panicking.to_string());
        assert_eq!(tag(&panic, "workspace_id"), app.workspace.id.to_string());
        assert_eq!(panic["release"], release().as_str());
        assert_eq!(panic["environment"], "staging-eu");
        let dead_event = by_kind("flaky");
        assert_eq!(dead_event["message"], "job is dead", "{dead_event}");
        assert_eq!(level(&dead_event), "error");
        assert_eq!(tag(&dead_event, "job_id"), dead.to_string());
        assert_eq!(tag(&dead_event, "workspace_id"), app.workspace.id.to_string());
    }
}

#[tokio::test]
async fn no_lead_data_token_or_key_reaches_sentry() {
    const EMAIL: &str = "amara.okonkwo@northwind-trading.example";
    const FIRST: &str = "Amara";
    const LAST: &str = "Okonkwo";
    const PHONE: &str = "+44 20 7946 0958";
    const PROVIDER_KEY: &str = "3f9a1c7e5b2d8f4a6c0e9b7d5f3a1c8e2b4d6f0a";
    for backend in backends() {
        let app = spawn_app(backend).await;
        let mut sentry = FakeSentry::start().await;
        app.create_lead(json!({"email": EMAIL, "firstName": FIRST, "lastName": LAST, "phone": PHONE}))
            .await;
        app.configure_provider(json!({"provider": "HUNTER", "apiKey": PROVIDER_KEY}))
            .await;
        let key = app
            .gql(
                Role::Admin,
                "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret userErrors { message } } }",
                json!({"input": {"name": "ops", "role": "ADMIN", "scopes": ["ADMIN", "READ_LEADS"]}}),
            )
            .await["createApiKey"]["secret"]
            .as_str()
            .expect("a key")
            .to_owned();
        assert!(key.starts_with("lg_live_"), "{key}");
        let jwt = app.token(Role::Admin);
        let secrets = [EMAIL, FIRST, LAST, PHONE, PROVIDER_KEY, &key, &jwt];
        // the store echoes the value it cannot read in its error
        corrupt_campaigns(
            &app,
            &format!(
                "{{\"email\": \"{EMAIL}\", \"name\": \"{FIRST} {LAST}\"}} {FIRST} {LAST} {EMAIL} {PHONE} \
                 {jwt} {key} api_key={PROVIDER_KEY} {PROVIDER_KEY}"
            ),
        )
        .await;
        let (server, _dir) = serve_reporting_to(&app, &sentry.dsn()).await;
        let (mut worker, _) = worker_reporting_to(&app, &sentry.dsn()).await;

        // over GET, with the lead in the variables and secrets in the query string and headers
        let variables = json!({"email": EMAIL, "name": format!("{FIRST} {LAST}"), "phone": PHONE});
        let get = reqwest::Client::new()
            .get(format!("{}/graphql", server.base))
            .query(&[
                ("query", LIST_CAMPAIGNS),
                ("operationName", "ListCampaigns"),
                ("variables", &variables.to_string()),
                ("token", &jwt),
                ("apiKey", &key),
            ])
            .bearer_auth(&key)
            .header("x-leadgate-csrf", "1")
            .header("cookie", format!("session={jwt}; email={EMAIL}"))
            .header("x-provider-key", PROVIDER_KEY)
            .header("x-lead-email", EMAIL)
            .send();
        let response = tokio::time::timeout(WAIT, get).await.unwrap().unwrap();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "INTERNAL", "{body}");
        // over POST, with the JWT
        failing_request(&server, &jwt).await;
        // a job whose handler panics with the lead in its message
        app.services
            .jobs
            .queue()
            .enqueue(
                NewJob::new(
                    PANIC,
                    json!({"message": format!(
                        "cannot enrich lead {{\"email\": \"{EMAIL}\", \"firstName\": \"{FIRST}\"}} \
                         for {FIRST} {LAST} ({PHONE}) with key {PROVIDER_KEY} for {key}, {jwt}"
                    )}),
                )
                .in_workspace(app.workspace.id),
            )
            .await
            .unwrap();

        let mut events = Vec::new();
        while events.len() < 3 {
            events.push(sentry.next_event().await);
        }
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| e["message"].as_str().unwrap_or("panic"))
            .collect();
        assert_eq!(
            kinds.iter().filter(|k| **k == "internal error").count(),
            2,
            "{backend:?}: {events:?}"
        );
        let get_event = events
            .iter()
            .find(|e| e["request"]["method"] == "GET")
            .expect("the GET's event");
        assert_eq!(tag(get_event, "operation"), "ListCampaigns");
        terminate(server).await;
        worker.kill().await.unwrap();

        let bytes = String::from_utf8_lossy(&sentry.bytes()).to_lowercase();
        let leaked: Vec<&str> = secrets
            .iter()
            .copied()
            .filter(|s| bytes.contains(&s.to_lowercase()))
            .collect();
        assert!(
            leaked.is_empty(),
            "{backend:?}: {leaked:?} reached Sentry: {bytes}"
        );
        for fragment in ["northwind", "20 7946 0958", "2079460958", &jwt[..24], &key[..14]] {
            assert!(
                !bytes.contains(&fragment.to_lowercase()),
                "{backend:?}: `{fragment}` in {bytes}"
            );
        }
    }
}

/// The port of a listener that was closed: connecting to it is refused.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_sentry_that_refuses_or_stalls_never_holds_up_a_request() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        corrupt_campaigns(&app, "unreadable").await;
        let token = app.token(Role::Admin);

        // refused: every request is answered, and the server stops when told
        let down = format!("http://publickey@127.0.0.1:{}/1", closed_port().await);
        let (server, _dir) = serve_reporting_to(&app, &down).await;
        for _ in 0..40 {
            failing_request(&server, &token).await;
        }
        terminate(server).await;

        // stalled: the fake takes the first envelope and answers nothing; the transport waits
        // on it while requests go on being answered, more of them than its queue holds
        let mut sentry = FakeSentry::start().await;
        sentry.hold.send_replace(true);
        let (server, _dir) = serve_reporting_to(&app, &sentry.dsn()).await;
        failing_request(&server, &token).await;
        sentry.next_event().await;
        for _ in 0..40 {
            failing_request(&server, &token).await;
        }
        let health = tokio::time::timeout(WAIT, reqwest::get(format!("{}/healthz", server.base)))
            .await
            .expect("healthz answers")
            .unwrap();
        assert_eq!(health.status(), 200, "{backend:?}");
        // shutdown's flush is bounded: the server exits while the fake still holds
        terminate(server).await;
        sentry.hold.send_replace(false);
    }
}

#[tokio::test]
async fn a_malformed_dsn_is_refused_at_start_naming_the_setting() {
    for backend in backends() {
        let (url, _guard) = crate::helpers::fresh_database(backend).await;
        let dir = tempfile::tempdir().unwrap();
        for command in ["serve", "worker"] {
            let env = [
                ("LEADGATE_DATABASE_URL", url.as_str()),
                ("LEADGATE_JWT_SECRET", SECRET),
                ("LEADGATE_SENTRY_DSN", "https://sekrit-key@sentry.example"),
            ];
            let out = run(dir.path(), &[command], &env).await;
            assert!(!out.status.success(), "{command}");
            let err = stderr(&out);
            assert!(
                err.contains("setting `sentry_dsn` (from LEADGATE_SENTRY_DSN): is not a Sentry DSN"),
                "{backend:?} {command}: {err}"
            );
            assert!(!err.contains("sekrit"), "{err}");
            let env = [
                ("LEADGATE_DATABASE_URL", url.as_str()),
                ("LEADGATE_JWT_SECRET", SECRET),
            ];
            let out = run(dir.path(), &[command, "--sentry-dsn", "sentry.example/1"], &env).await;
            assert!(!out.status.success(), "{command}");
            assert!(
                stderr(&out).contains("setting `sentry_dsn` (from --sentry-dsn)"),
                "{command}: {}",
                stderr(&out)
            );
        }
        // without a DSN, the banner says where errors go
        let env = [
            ("LEADGATE_DATABASE_URL", url.as_str()),
            ("LEADGATE_JWT_SECRET", SECRET),
        ];
        let server = start(dir.path(), &["--listen", "127.0.0.1:0"], &env, false).await;
        assert!(
            server
                .banner
                .contains("Errors: logs only (set LEADGATE_SENTRY_DSN to report them to Sentry)"),
            "{}",
            server.banner
        );
        terminate(server).await;
    }
}
