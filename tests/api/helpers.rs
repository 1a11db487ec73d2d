//! `spawn_app()`: the real application on port 0 with a fresh database, and a client for it.
//!
//! SQLite always; PostgreSQL too when `LEADGATE_TEST_POSTGRES_URL` is set, in which case an
//! unreachable server fails the test rather than skipping it. Each app gets its own database
//! (a temporary file, or a new PostgreSQL database named `lgt_…`).

use leadgate::app;
use leadgate::config::Settings;
use leadgate::domain::{Role, Workspace};
use leadgate::service::Services;
use leadgate::store::{PoolOptions, Store};
use secrecy::SecretString;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const SECRET: &str = "test-secret-that-is-long-enough-for-hs256-0123456789";
/// 32 bytes, base64: seals provider keys in tests.
pub const MASTER_KEY: &str = "dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmchISE=";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backends every test runs against.
pub fn backends() -> Vec<Backend> {
    let mut list = vec![Backend::Sqlite];
    if std::env::var("LEADGATE_TEST_POSTGRES_URL").is_ok_and(|v| !v.is_empty()) {
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
            let base = std::env::var("LEADGATE_TEST_POSTGRES_URL").expect("LEADGATE_TEST_POSTGRES_URL");
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
    _db: Option<tempfile::TempDir>,
    _server: tokio::task::JoinHandle<()>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let (url, guard) = fresh_database(backend).await;
    let mut settings = Settings {
        database_url: url,
        database_max_connections: 4,
        jwt_secret: Some(SecretString::from(SECRET)),
        master_key: Some(SecretString::from(MASTER_KEY)),
        ..Settings::default()
    };
    adjust(&mut settings);
    let store = app::open_store(&settings).await.expect("store");
    let auth = app::authenticator(&settings, &store, false)
        .await
        .expect("authenticator");
    let services = app::services(&settings, store).expect("services");
    let built = app::assemble(&settings, services, auth.clone(), None);
    let workspace = built
        .services
        .workspaces
        .create("acme", Some("Acme"))
        .await
        .unwrap();
    let other = built
        .services
        .workspaces
        .create("globex", Some("Globex"))
        .await
        .unwrap();
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
        _db: guard,
        _server: server,
    }
}

impl TestApp {
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
