//! `spawn_app()`: the real application on port 0 with a fresh database, and a client for it.
//!
//! SQLite always; PostgreSQL too when `LEADGATE_TEST_POSTGRES_URL` is set, in which case an
//! unreachable server fails the test rather than skipping it. In CI (`CI=true`) an unset URL
//! fails every test that needs PostgreSQL (`postgres_url_or_skip`, `backends`); elsewhere
//! such a test says on stderr what it skipped. Each app gets its own database
//! (a temporary file, or a new PostgreSQL database named `lgt_…`).

use leadgate::app;
use leadgate::config::Settings;
use leadgate::domain::{Role, Workspace};
use leadgate::service::Services;
use leadgate::store::{PoolOptions, Store};
use secrecy::SecretString;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const SECRET: &str = "test-secret-that-is-long-enough-for-hs256-0123456789";
/// Where the fakes listen: allowed for outbound requests in every test app unless a test says
/// otherwise.
pub const FAKES_NET: &str = "127.0.0.1/32";
/// 32 bytes, base64: seals provider keys in tests.
pub const MASTER_KEY: &str = "dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmchISE=";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Whether this is a CI run (`CI` set, and not to `false` or `0`): there a test that needs a
/// service which is not configured fails instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The value of `var`, the URL of a service some tests need. When it is not set, the test
/// fails in CI (a run that skips what it cannot reach must not pass) and otherwise says on
/// stderr what it skipped and gets `None`.
pub fn service_url_or_skip(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let test = std::thread::current().name().unwrap_or("this test").to_owned();
            assert!(
                !in_ci(),
                "{test} needs {what}, but {var} is not set; CI must configure it"
            );
            eprintln!("{test}: skipped {what}: {var} is not set");
            None
        }
    }
}

/// `LEADGATE_TEST_POSTGRES_URL`, per `service_url_or_skip`: `None` (skipped, said on stderr)
/// outside CI when unset, a failure in CI.
pub fn postgres_url_or_skip() -> Option<String> {
    service_url_or_skip("LEADGATE_TEST_POSTGRES_URL", "PostgreSQL")
}

/// The backends every test runs against: SQLite, and PostgreSQL when configured (in CI it
/// must be: see `postgres_url_or_skip`).
pub fn backends() -> Vec<Backend> {
    let mut list = vec![Backend::Sqlite];
    if postgres_url_or_skip().is_some() {
        list.push(Backend::Postgres);
    }
    list
}

static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A fresh, empty database of `backend`; the guard keeps a SQLite file alive.
pub async fn fresh_database(backend: Backend) -> (String, Option<tempfile::TempDir>) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("test.db").display());
            (url, Some(dir))
        }
        Backend::Postgres => {
            let base =
                postgres_url_or_skip().expect("a PostgreSQL test database needs LEADGATE_TEST_POSTGRES_URL");
            let name = format!(
                "lgt_{}_{}_{}",
                std::process::id(),
                NEXT_DB.fetch_add(1, Ordering::Relaxed),
                uuid::Uuid::now_v7().simple()
            );
            leadgate_test_admin::create_database(&base, &name).await;
            let mut url = url::Url::parse(&base).expect("LEADGATE_TEST_POSTGRES_URL is a URL");
            url.set_path(&name);
            (url.to_string(), None)
        }
    }
}

/// Opens a migrated store on a fresh database.
pub async fn fresh_store(backend: Backend) -> (Store, Option<tempfile::TempDir>) {
    let (url, guard) = fresh_database(backend).await;
    let store = Store::connect(&url, &PoolOptions { max_connections: 4 })
        .await
        .unwrap_or_else(|e| panic!("cannot open {backend:?} test database: {e}"));
    (store, guard)
}

/// Creating databases needs a connection to the server, made with the store's own driver.
mod leadgate_test_admin {
    pub async fn create_database(base_url: &str, name: &str) {
        leadgate::store::admin::create_postgres_database(base_url, name)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at LEADGATE_TEST_POSTGRES_URL is unreachable: {e}"));
    }
}

pub struct TestApp {
    pub backend: Backend,
    pub base: String,
    pub client: reqwest::Client,
    pub services: Services,
    pub auth: leadgate::auth::Authenticator,
    /// The workspace tokens from `token` are for.
    pub workspace: Workspace,
    /// A second tenant, for isolation tests.
    pub other: Workspace,
    pub settings: Settings,
    /// Starts this instance's graceful shutdown (`/readyz` unready, WebSockets closed).
    pub drain: leadgate::graphql::ws::Drain,
    /// This instance's job workers, when it runs them (`shutdown_workers` stops them).
    workers: std::sync::Arc<tokio::sync::Mutex<Option<leadgate::jobs::worker::Workers>>>,
    _db: Option<tempfile::TempDir>,
    _server: tokio::task::JoinHandle<()>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    spawn(backend, None, adjust).await
}

/// An app whose workers also run the test job kinds and poll the queue every 50 ms.
pub async fn spawn_app_with_test_jobs(backend: Backend) -> TestApp {
    spawn_app_with(backend, |s| {
        s.job_test_kinds = true;
        s.job_poll_interval_ms = 50;
        s.job_maintenance_interval_ms = 100;
    })
    .await
}

/// `spawn_app_with`, with the enrichment pipeline's rate gates reading `clock`.
pub async fn spawn_app_with_clock(
    backend: Backend,
    clock: leadgate::enrich::Clock,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn(backend, Some(clock), adjust).await
}

/// The settings every test app starts from, on the database at `url`.
fn test_settings(url: String) -> Settings {
    Settings {
        database_url: url,
        database_max_connections: 4,
        jwt_secret: Some(SecretString::from(SECRET)),
        master_key: Some(SecretString::from(MASTER_KEY)),
        // the fake receivers listen on 127.0.0.1, which the outbound guard refuses by default
        outbound_allow: vec![FAKES_NET.into()],
        // the rate-limit tests turn limits on; the others send as fast as they like
        rate_limit: "off".into(),
        rate_limit_anonymous: "off".into(),
        ..Settings::default()
    }
}

async fn spawn(
    backend: Backend,
    clock: Option<leadgate::enrich::Clock>,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    let (url, guard) = fresh_database(backend).await;
    let mut settings = test_settings(url);
    adjust(&mut settings);
    start(backend, settings, guard, false, clock).await
}

/// The app on a database that already holds the `acme` and `globex` workspaces (a restored
/// backup, say); `guard` keeps a SQLite file alive.
pub async fn spawn_app_on(backend: Backend, url: String, guard: Option<tempfile::TempDir>) -> TestApp {
    let settings = test_settings(url);
    start(backend, settings, guard, true, None).await
}

async fn start(
    backend: Backend,
    settings: Settings,
    guard: Option<tempfile::TempDir>,
    existing: bool,
    clock: Option<leadgate::enrich::Clock>,
) -> TestApp {
    let store = app::open_store(&settings).await.expect("store");
    let auth = app::authenticator(&settings, &store, false)
        .await
        .expect("authenticator");
    let mut enrich = settings.enrich_options();
    if let Some(clock) = clock {
        enrich.clock = clock;
    }
    let services = app::services_with(&settings, enrich, store).expect("services");
    let built = app::assemble(&settings, services, auth.clone(), None)
        .await
        .expect("assemble");
    let tenant = |slug: &'static str, name: &'static str| {
        let workspaces = built.services.workspaces.clone();
        async move {
            if existing {
                workspaces.by_slug(slug).await.unwrap()
            } else {
                workspaces.create(slug, Some(name)).await.unwrap()
            }
        }
    };
    let workspace = tenant("acme", "Acme").await;
    let other = tenant("globex", "Globex").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = built.router;
    let server = tokio::spawn(async move {
        let _ = leadgate::http::serve(listener, router, std::future::pending()).await;
    });
    TestApp {
        backend,
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        services: built.services,
        auth: built.auth,
        workspace,
        other,
        settings,
        drain: built.drain,
        workers: std::sync::Arc::new(tokio::sync::Mutex::new(built.workers)),
        _db: guard,
        _server: server,
    }
}

impl TestApp {
    /// Stops this instance's workers and what runs beside them, as a shutting-down process does.
    pub async fn shutdown_workers(&self) {
        if let Some(workers) = self.workers.lock().await.take() {
            workers.shutdown().await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A token for the test workspace.
    pub fn token(&self, role: Role) -> String {
        self.token_in(&self.workspace, role)
    }

    pub fn token_in(&self, ws: &Workspace, role: Role) -> String {
        self.auth
            .mint("tester", ws.id, role, Duration::from_secs(3600))
            .expect("mint")
    }

    /// POSTs a GraphQL request and returns (status, body).
    pub async fn post(&self, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self
            .client
            .post(self.url("/graphql"))
            .header("content-type", "application/json")
            .header("accept", "application/graphql-response+json")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
        (status, json)
    }

    /// Runs a query as `role` in the test workspace, expecting no errors; returns `data`.
    pub async fn gql(&self, role: Role, query: &str, variables: Value) -> Value {
        let token = self.token(role);
        let (status, body) = self
            .post(Some(&token), json!({"query": query, "variables": variables}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// Runs a query expecting errors; returns the whole body.
    pub async fn gql_err(&self, role: Role, query: &str, variables: Value) -> Value {
        let token = self.token(role);
        let (_, body) = self
            .post(Some(&token), json!({"query": query, "variables": variables}))
            .await;
        assert!(body.get("errors").is_some(), "expected errors: {body}");
        body
    }

    /// Creates a lead through the API and returns its node.
    pub async fn create_lead(&self, input: Value) -> Value {
        let data = self
            .gql(
                Role::Member,
                "mutation($input: CreateLeadInput!) { createLead(input: $input) { lead { id email version companyName lastName score } userErrors { field message code } } }",
                json!({ "input": input }),
            )
            .await;
        let payload = &data["createLead"];
        assert_eq!(payload["userErrors"], json!([]), "{payload}");
        payload["lead"].clone()
    }
}

/// The `extensions.code` of the first error.
pub fn first_code(body: &Value) -> String {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

// ---- Enrichment: used by `enrichment.rs` and `provider_controls.rs` ----

impl TestApp {
    /// POSTs a GraphQL request as `role` in the test workspace with extra headers; returns
    /// (status, body) whatever the body holds.
    pub async fn post_with_headers(&self, role: Role, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
        let mut req = self
            .client
            .post(self.url("/graphql"))
            .header("content-type", "application/json")
            .header("accept", "application/graphql-response+json")
            .bearer_auth(self.token(role))
            .body(body.to_string());
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
        (status, json)
    }

    /// Runs a query as `role` and returns the whole body (`data`, `errors`, `extensions`),
    /// errors or not; asserts only that the request itself was answered with 200.
    pub async fn gql_body(&self, role: Role, query: &str, variables: Value) -> Value {
        let (status, body) = self
            .post_with_headers(role, &[], json!({"query": query, "variables": variables}))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The `/metrics` page (Prometheus text).
    pub async fn metrics(&self) -> String {
        let res = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics");
        assert_eq!(res.status().as_u16(), 200);
        res.text().await.expect("metrics body")
    }

    /// `configureProvider` as an admin, expecting no user errors; returns the provider.
    pub async fn configure_provider(&self, input: Value) -> Value {
        let data = self
            .gql(Role::Admin, CONFIGURE_PROVIDER, json!({ "input": input }))
            .await;
        let payload = &data["configureProvider"];
        assert_eq!(payload["userErrors"], json!([]), "{payload}");
        payload["provider"].clone()
    }

    /// `setWaterfall` as an admin, expecting no user errors.
    pub async fn set_waterfall(&self, group: &str, providers: &[&str]) {
        let data = self
            .gql(
                Role::Admin,
                "mutation($g: EnrichmentGroup!, $p: [ProviderName!]!) { setWaterfall(group: $g, providers: $p) { userErrors { field message code } } }",
                json!({ "g": group, "p": providers }),
            )
            .await;
        assert_eq!(data["setWaterfall"]["userErrors"], json!([]), "{data}");
    }

    /// The sandbox answers `groups` first, at `credits` per hit, with no latency and no misses.
    pub async fn use_sandbox(&self, groups: &[&str], credits: u32) {
        self.configure_provider(json!({
            "provider": "SANDBOX",
            "options": {"latencyMs": 0, "missRate": 0.0, "creditsPerHit": credits},
        }))
        .await;
        for group in groups {
            self.set_waterfall(group, &["SANDBOX"]).await;
        }
    }

    /// Creates leads with one `upsertLeads`; returns their ids in input order.
    pub async fn create_leads(&self, leads: Vec<Value>) -> Vec<String> {
        let data = self
            .gql(
                Role::Member,
                "mutation($leads: [CreateLeadInput!]!) { upsertLeads(input: {leads: $leads}) { results { lead { id } userErrors { message } } userErrors { message } } }",
                json!({ "leads": leads }),
            )
            .await;
        let payload = &data["upsertLeads"];
        assert_eq!(payload["userErrors"], json!([]), "{payload}");
        payload["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| {
                assert_eq!(r["userErrors"], json!([]), "{r}");
                r["lead"]["id"].as_str().expect("lead id").to_owned()
            })
            .collect()
    }
}

/// `configureProvider` with everything an assertion may want to look at.
pub const CONFIGURE_PROVIDER: &str = "mutation($input: ConfigureProviderInput!) {
  configureProvider(input: $input) {
    provider { name enabled disabledReason hasApiKey apiKeyLast4 dailyCreditCap monthlyCreditCap ratePerSecond timeoutMs options circuit usage { period used limit remaining resetsAt } }
    userErrors { field message code }
  }
}";

/// The value of one sample in Prometheus text (`name{labels}` exactly as rendered); 0 when the
/// sample is absent, as an untouched counter is.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter_map(|line| line.strip_prefix(sample))
        .filter_map(|rest| rest.strip_prefix(' '))
        .find_map(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `deadline`.
pub async fn poll_until<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "gave up after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- Outside services: RabbitMQ, and a proxy to cut a service off ----

/// `LEADGATE_TEST_AMQP_URL` (e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`), per
/// `service_url_or_skip`: `None` (skipped, said on stderr) outside CI when unset, a failure in CI.
pub fn amqp_url_or_skip() -> Option<String> {
    service_url_or_skip("LEADGATE_TEST_AMQP_URL", "RabbitMQ")
}

/// A TCP proxy on 127.0.0.1 in front of a service (Redis, RabbitMQ) that can drop every
/// connection and refuse new ones, or hold them without answering.
pub struct Proxy {
    port: u16,
    state: Arc<std::sync::Mutex<ProxyState>>,
}

#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    Pass,
    Refuse,
    Stall,
}

struct ProxyState {
    mode: Mode,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Proxy {
    /// Starts forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(std::sync::Mutex::new(ProxyState {
            mode: Mode::Pass,
            tasks: Vec::new(),
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let mode = shared.lock().expect("lock").mode;
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    match mode {
                        Mode::Refuse => drop(inbound),
                        Mode::Stall => {
                            let mut sink = [0u8; 1024];
                            use tokio::io::AsyncReadExt;
                            while let Ok(n) = inbound.read(&mut sink).await {
                                if n == 0 {
                                    break;
                                }
                            }
                        }
                        Mode::Pass => {
                            if let Ok(mut out) = tokio::net::TcpStream::connect(&upstream).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                            }
                        }
                    }
                });
                shared.lock().expect("lock").tasks.push(task.abort_handle());
            }
        });
        Self { port, state }
    }

    /// Drops every open connection and treats new ones as `mode` says.
    pub fn set(&self, mode: Mode) {
        let mut state = self.state.lock().expect("lock");
        state.mode = mode;
        for task in state.tasks.drain(..) {
            task.abort();
        }
    }

    /// `127.0.0.1:<port>`, where clients connect.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A second server instance on the same database as `first`, with the same settings and
/// workspaces, as two leadgate processes sharing one PostgreSQL would be.
pub async fn spawn_second_app(first: &TestApp) -> TestApp {
    spawn_instance_with(first, first.settings.clone()).await
}

/// Another instance on the same database as `first` (and with its workspaces), with `settings`
/// (e.g. `first`'s with workers turned on).
pub async fn spawn_instance_with(first: &TestApp, settings: Settings) -> TestApp {
    let store = app::open_store(&settings).await.expect("store");
    let auth = app::authenticator(&settings, &store, false)
        .await
        .expect("authenticator");
    let services = app::services(&settings, store).expect("services");
    let built = app::assemble(&settings, services, auth, None)
        .await
        .expect("assemble");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = built.router;
    let server = tokio::spawn(async move {
        let _ = leadgate::http::serve(listener, router, std::future::pending()).await;
    });
    TestApp {
        backend: first.backend,
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        services: built.services,
        auth: built.auth,
        workspace: first.workspace.clone(),
        other: first.other.clone(),
        settings,
        drain: built.drain,
        workers: std::sync::Arc::new(tokio::sync::Mutex::new(built.workers)),
        _db: None,
        _server: server,
    }
}

// ---- GraphQL over WebSocket: used by `ws_protocol.rs` and subscription tests ----

use futures_util::{SinkExt, StreamExt};
pub use leadgate::graphql::ws::Protocol;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};

/// How long a WebSocket test waits for one frame.
pub const WS_WAIT: Duration = Duration::from_secs(10);

/// What the server sent next, keep-alives aside.
#[derive(Debug, PartialEq)]
pub enum WsFrame {
    Message(Value),
    Closed(u16, String),
}

/// A WebSocket client speaking one of the two subprotocols to `/graphql/ws`: the protocol
/// adapter of the WebSocket tests, which are written once and run on both (`start`/`stop`,
/// `result_type`, `errors_of`, `expect_rejected`, `sync` name each protocol's messages).
pub struct WsClient {
    pub protocol: Protocol,
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl WsClient {
    /// Connects to `/graphql/ws` of the server at `base` (`http://host:port`) offering
    /// `protocol` (for servers run as processes).
    pub async fn connect(base: &str, protocol: Protocol) -> WsClient {
        let url = format!("{}/graphql/ws", base.replacen("http://", "ws://", 1));
        let mut request = url.into_client_request().expect("request");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            protocol.name().parse().expect("header value"),
        );
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("handshake");
        WsClient { protocol, socket }
    }
}

impl TestApp {
    /// Connects to `/graphql/ws` offering `protocol`.
    pub async fn ws(&self, protocol: Protocol) -> WsClient {
        self.ws_with(Some(protocol.name()), None)
            .await
            .unwrap_or_else(|e| panic!("WebSocket handshake failed: {e}"))
    }

    /// Connects offering `protocols` (the raw `Sec-WebSocket-Protocol` value) and sending
    /// `Authorization: Bearer <token>` when given; the handshake's error when refused.
    pub async fn ws_with(
        &self,
        protocols: Option<&str>,
        token: Option<&str>,
    ) -> Result<WsClient, tungstenite::Error> {
        let url = self.url("/graphql/ws").replacen("http://", "ws://", 1);
        let mut request = url.into_client_request()?;
        if let Some(protocols) = protocols {
            request
                .headers_mut()
                .insert("sec-websocket-protocol", protocols.parse().expect("header value"));
        }
        if let Some(token) = token {
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header value"),
            );
        }
        let (socket, response) = tokio_tungstenite::connect_async(request).await?;
        let chosen = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Protocol::negotiate([v]))
            .expect("the server selects a subprotocol");
        Ok(WsClient {
            protocol: chosen,
            socket,
        })
    }

    /// A connection already acknowledged for a token of `role` in the test workspace.
    pub async fn ws_ready(&self, protocol: Protocol, role: Role) -> WsClient {
        let mut client = self.ws(protocol).await;
        client.init(&self.token(role)).await;
        client
    }
}

impl WsClient {
    pub async fn send(&mut self, message: Value) {
        self.send_raw(&message.to_string()).await;
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.socket
            .send(Message::Text(text.into()))
            .await
            .expect("send a frame");
    }

    /// The next message, keep-alives (`ka`) included; panics on a close.
    pub async fn recv_any(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(WS_WAIT, self.socket.next())
                .await
                .expect("a frame in time")
                .expect("the socket is open")
                .expect("a readable frame");
            match frame {
                Message::Text(text) => return serde_json::from_str(text.as_str()).expect("JSON message"),
                Message::Close(close) => panic!("closed: {close:?}"),
                _ => continue,
            }
        }
    }

    /// The next message that is not a `ka`.
    pub async fn recv(&mut self) -> Value {
        loop {
            let message = self.recv_any().await;
            if message["type"] != "ka" {
                return message;
            }
        }
    }

    /// Waits for the server's close frame (skipping keep-alives) and returns its code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            let frame = tokio::time::timeout(WS_WAIT, self.socket.next())
                .await
                .expect("a close in time");
            match frame {
                Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
                    return (u16::from(code), reason.as_str().to_owned());
                }
                Some(Ok(Message::Text(text))) if text.as_str().contains("\"ka\"") => continue,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// `connection_init` with `{"Authorization": "Bearer <token>"}`; expects the ack.
    pub async fn init(&mut self, token: &str) {
        self.init_with(json!({"Authorization": format!("Bearer {token}")}))
            .await;
    }

    /// `connection_init` with this payload; expects the ack (and the first `ka` on graphql-ws).
    pub async fn init_with(&mut self, payload: Value) {
        self.send(json!({"type": "connection_init", "payload": payload}))
            .await;
        assert_eq!(self.recv_any().await, json!({"type": "connection_ack"}));
        if self.protocol == Protocol::LegacyWs {
            assert_eq!(self.recv_any().await, json!({"type": "ka"}));
        }
    }

    /// Starts an operation: `subscribe` or `start`, as the protocol names it.
    pub async fn start(&mut self, id: &str, query: &str, variables: Value) {
        let kind = self.subscribe_type();
        self.send(json!({"id": id, "type": kind, "payload": {"query": query, "variables": variables}}))
            .await;
    }

    /// Stops an operation: `complete` or `stop`.
    pub async fn stop(&mut self, id: &str) {
        let kind = self.stop_type();
        self.send(json!({"id": id, "type": kind})).await;
    }

    /// The message type that starts an operation: `subscribe` or `start`.
    pub fn subscribe_type(&self) -> &'static str {
        match self.protocol {
            Protocol::TransportWs => "subscribe",
            Protocol::LegacyWs => "start",
        }
    }

    /// The message type that stops an operation: `complete` or `stop`.
    pub fn stop_type(&self) -> &'static str {
        match self.protocol {
            Protocol::TransportWs => "complete",
            Protocol::LegacyWs => "stop",
        }
    }

    /// The errors of an `error` message: graphql-transport-ws sends an array of GraphQL
    /// errors, graphql-ws one error object.
    pub fn errors_of(&self, message: &Value) -> Vec<Value> {
        assert_eq!(message["type"], "error", "{message}");
        match self.protocol {
            Protocol::TransportWs => message["payload"]
                .as_array()
                .unwrap_or_else(|| panic!("an array of errors: {message}"))
                .clone(),
            Protocol::LegacyWs => {
                assert!(message["payload"].is_object(), "one error object: {message}");
                vec![message["payload"].clone()]
            }
        }
    }

    /// The next frame that is not a keep-alive: a message, or the server's close.
    pub async fn frame(&mut self) -> WsFrame {
        loop {
            let frame = tokio::time::timeout(WS_WAIT, self.socket.next())
                .await
                .expect("a frame in time");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(text.as_str()).expect("JSON message");
                    if message["type"] != "ka" {
                        return WsFrame::Message(message);
                    }
                }
                Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
                    return WsFrame::Closed(u16::from(code), reason.as_str().to_owned());
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a message or a close frame, got {other:?}"),
            }
        }
    }

    /// Expects `connection_init` to be refused: graphql-ws first answers `connection_error`
    /// (its payload is returned), then both protocols close with `code`; returns the close
    /// reason too.
    pub async fn expect_rejected(&mut self, code: u16) -> (Option<Value>, String) {
        let said = match self.protocol {
            Protocol::TransportWs => None,
            Protocol::LegacyWs => {
                let error = self.recv_any().await;
                assert_eq!(error["type"], "connection_error", "{error}");
                assert!(error["payload"]["message"].is_string(), "{error}");
                Some(error["payload"].clone())
            }
        };
        let (got, reason) = self.closed().await;
        assert_eq!(got, code, "{:?}: closed with {got} {reason}", self.protocol);
        (said, reason)
    }

    /// A round trip that proves the server handled every earlier frame: `ping`/`pong` on
    /// graphql-transport-ws, a query on graphql-ws (initialised connections only), which has
    /// no ping.
    pub async fn sync(&mut self, id: &str) {
        match self.protocol {
            Protocol::TransportWs => {
                self.send(json!({"type": "ping", "payload": {"sync": id}})).await;
                assert_eq!(
                    self.recv().await,
                    json!({"type": "pong", "payload": {"sync": id}})
                );
            }
            Protocol::LegacyWs => {
                let answer = self.execute(id, "{ __typename }", json!({})).await;
                assert_eq!(answer, json!({"data": {"__typename": "Query"}}));
            }
        }
    }

    /// The type of a result message on this protocol (`next` or `data`).
    pub fn result_type(&self) -> &'static str {
        match self.protocol {
            Protocol::TransportWs => "next",
            Protocol::LegacyWs => "data",
        }
    }

    /// Runs a query or mutation: expects one result then `complete`; returns the result payload.
    pub async fn execute(&mut self, id: &str, query: &str, variables: Value) -> Value {
        self.start(id, query, variables).await;
        let result = self.recv().await;
        assert_eq!(result["id"], id, "{result}");
        assert_eq!(result["type"], self.result_type(), "{result}");
        assert_eq!(self.recv().await, json!({"id": id, "type": "complete"}));
        result["payload"].clone()
    }

    /// Closes the socket normally.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
