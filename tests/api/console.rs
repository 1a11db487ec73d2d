//! The operator console in a real browser: Debian's Chromium, driven over WebDriver
//! (`chromedriver` on a port it picks, `fantoccini`), against the app on each backend. An admin
//! signs in, creates and revokes a key (the revoked key then gets 401), replays a dead job and
//! imports a CSV to the end; a permission-limited key sees no admin page. Every page is
//! screenshotted to `target/console-screenshots/`, and the browser's log is read after each
//! step: a Content-Security-Policy violation, a console error or a failed request fails the
//! test. Outside CI, without Chromium and ChromeDriver the tests say so and skip; in CI that is
//! a failure (`.ci/run` installs them).

use crate::helpers::{Backend, TestApp, backends, in_ci, poll_until, spawn_app_with_test_jobs};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use leadgate::domain::{NewJob, Role};
use leadgate::jobs::test_kinds::FLAKY;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a page or an action may take before the test fails.
const WAIT: Duration = Duration::from_secs(30);

fn program(var: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    path.exists().then_some(path)
}

/// A headless Chromium session; the driver process dies with it.
struct Browser {
    client: Client,
    _driver: Child,
    shots: PathBuf,
    label: String,
}

/// `POST /session/{id}/se/log`: the browser's log since the last read (chromedriver).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (axum::http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

impl Browser {
    /// A browser for `label`, or `None` (said) outside CI when Chromium is not installed.
    async fn start(label: &str) -> Option<Browser> {
        let chromium = program("LEADGATE_TEST_CHROMIUM", "/usr/bin/chromium");
        let driver = program("LEADGATE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            assert!(
                !in_ci(),
                "the console tests need chromium and chromedriver (apt-get install chromium chromium-driver)"
            );
            eprintln!("{label}: skipped: chromium or chromedriver is not installed");
            return None;
        };
        let mut child = Command::new(driver)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.expect("chromedriver's output") {
                if let Some(port) = line
                    .split("started successfully on port ")
                    .nth(1)
                    .and_then(|rest| rest.trim_end_matches('.').trim().parse::<u16>().ok())
                {
                    return port;
                }
            }
            panic!("chromedriver ended without saying its port");
        })
        .await
        .expect("chromedriver says its port");
        // keep reading its output, so it never blocks on a full pipe
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1280,800", "--no-first-run"],
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");
        let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
        std::fs::create_dir_all(&shots).expect("screenshot folder");
        Some(Browser {
            client,
            _driver: child,
            shots,
            label: label.to_owned(),
        })
    }

    async fn open(&self, app: &TestApp, route: &str) {
        self.client
            .goto(&app.url(&format!("/console#/{route}")))
            .await
            .expect("the console loads");
    }

    /// Moves to `route` within the page (a new page load would forget the credential).
    async fn route(&self, route: &str) {
        self.client
            .execute("location.hash = arguments[0]", vec![json!(format!("#/{route}"))])
            .await
            .expect("the route changes");
    }

    /// Follows a link of the navigation (as a user would) and waits for its page.
    async fn go(&self, route: &str) {
        self.click(&format!("#nav a[href='#/{route}']")).await;
        self.ready(route).await;
    }

    /// Waits until `page` has rendered (`<main data-page=… aria-busy="false">`).
    async fn ready(&self, page: &str) {
        self.wait_for(&format!("main#main[data-page='{page}'][aria-busy='false']"))
            .await;
    }

    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{}: `{css}` never appeared: {e}", self.label))
    }

    async fn click(&self, css: &str) {
        self.wait_for(css).await.click().await.expect("click");
    }

    async fn fill(&self, css: &str, text: &str) {
        let input = self.wait_for(css).await;
        input.clear().await.expect("clear");
        input.send_keys(text).await.expect("type");
    }

    /// Runs `script` (a function body) in the page until it returns something truthy.
    async fn until(&self, what: &str, script: &str) -> Value {
        let client = &self.client;
        poll_until(WAIT, what, || async move {
            let value = client.execute(script, vec![]).await.expect("script runs");
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!("")
                && value != json!(0);
            truthy.then_some(value)
        })
        .await
    }

    async fn text(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.expect("text")
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let file = self.shots.join(format!("{}-{name}.png", self.label));
        std::fs::write(&file, png).expect("screenshot written");
    }

    /// Fails on anything the browser logged as an error since the last call (CSP violations,
    /// uncaught exceptions, `console.error`, failed requests).
    async fn no_errors(&self, step: &str) {
        let log = self.client.issue_cmd(BrowserLog).await.expect("the browser log");
        let errors: Vec<&Value> = log
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .collect();
        assert!(
            errors.is_empty(),
            "{}: the browser logged errors at {step}: {errors:#?}",
            self.label
        );
    }

    async fn close(self) {
        self.client.close().await.expect("the session ends");
    }
}

async fn app(backend: Backend) -> TestApp {
    spawn_app_with_test_jobs(backend).await
}

/// Signs in by pasting `token`, and waits for the overview.
async fn sign_in(browser: &Browser, app: &TestApp, token: &str) {
    browser.open(app, "sign-in").await;
    browser.ready("sign-in").await;
    browser.fill("#token", token).await;
    browser.click("#sign-in").await;
    browser.ready("overview").await;
}

/// The status of a request to `/graphql` made with `token`.
async fn status_with(app: &TestApp, token: &str) -> u16 {
    app.client
        .post(app.url("/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": "{ viewer { subject } }"}))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

const DEAD: &str = "{ jobQueue { dead(first: 10) { edges { node { id } } } } }";

#[tokio::test]
async fn an_admin_manages_keys_replays_a_dead_job_and_imports_a_file_in_the_console() {
    for backend in backends() {
        let label = format!("admin-{backend:?}").to_lowercase();
        let Some(browser) = Browser::start(&label).await else {
            return;
        };
        let app = app(backend).await;
        // a job that fails its three attempts, and succeeds once replayed
        let job = NewJob::new(FLAKY, json!({"failures": 3})).in_workspace(app.workspace.id);
        app.services.jobs.queue().enqueue(job).await.expect("enqueued");
        poll_until(WAIT, "the job to be dead", || async {
            let data = app.gql(Role::Admin, DEAD, json!({})).await;
            (!data["jobQueue"]["dead"]["edges"].as_array()?.is_empty()).then_some(())
        })
        .await;

        browser.open(&app, "overview").await;
        browser.ready("sign-in").await;
        browser.screenshot("sign-in").await;
        sign_in(&browser, &app, &app.token(Role::Admin)).await;
        browser
            .until(
                "the overview's charts",
                "return document.querySelectorAll('main svg').length",
            )
            .await;
        browser.screenshot("overview").await;
        browser
            .client
            .execute("document.querySelector('[data-chart]').scrollIntoView()", vec![])
            .await
            .expect("scroll");
        browser.screenshot("overview-charts").await;
        browser.no_errors("the overview").await;

        // create a key: its secret is shown once and works
        browser.go("keys").await;
        browser
            .until(
                "focus on the page's heading after navigating",
                "return document.activeElement && document.activeElement.tagName === 'H1'",
            )
            .await;
        browser.fill("#key-name", "console key").await;
        browser
            .wait_for("#key-role")
            .await
            .select_by_value("ADMIN")
            .await
            .expect("role");
        browser.click("input[name='scope'][value='READ_LEADS']").await;
        browser.fill("#key-rate-limit", "very fast").await;
        browser.click("#create-key").await;
        let explained = browser
            .until(
                "the rate limit's error beside its field",
                "const f = document.querySelector('#key-rate-limit').closest('.field'); const e = f && f.querySelector('.field-error[role=alert]'); return e && e.textContent",
            )
            .await;
        assert!(
            explained.as_str().is_some_and(|t| t.contains("rate")),
            "{label}: a refused input is explained beside its control: {explained}"
        );
        browser.no_errors("a refused key").await;
        browser.fill("#key-rate-limit", "600/min").await;
        browser.click("#create-key").await;
        let secret = browser
            .until(
                "the new key's secret",
                "const s = document.querySelector('#new-secret'); return s && s.value.startsWith('lg_') && s.value",
            )
            .await;
        let secret = secret.as_str().expect("secret").to_owned();
        assert_eq!(status_with(&app, &secret).await, 200, "{label}");
        browser.screenshot("keys").await;

        // revoke it: the row says so and the key is refused
        let row = "#keys-table tbody tr[data-id]";
        let id = browser
            .until(
                "the new key's row",
                &format!(
                    "const r = [...document.querySelectorAll(\"{row}\")].find(r => r.textContent.includes('console key')); return r && r.dataset.id"
                ),
            )
            .await;
        let id = id.as_str().expect("id").to_owned();
        let this_row = format!("#keys-table tbody tr[data-id='{id}']");
        browser
            .click(&format!("{this_row} button[data-action='revoke']"))
            .await;
        browser.click("#confirm-ok").await;
        browser
            .until(
                "the row to say revoked",
                &format!(
                    "const c = document.querySelector(\"{this_row} td[data-col='status']\"); return c && c.textContent.toLowerCase().includes('revoked')"
                ),
            )
            .await;
        let refused = poll_until(WAIT, "the revoked key to be refused", || async {
            let status = status_with(&app, &secret).await;
            (status != 200).then_some(status)
        })
        .await;
        assert_eq!(refused, 401, "{label}");
        browser.no_errors("the keys page").await;

        // replay the dead job
        browser.go("queue").await;
        browser
            .click("#dead-table tbody tr[data-id] button[data-action='replay']")
            .await;
        browser
            .until(
                "the dead job to leave the table",
                "return document.querySelectorAll('#dead-table tbody tr[data-id]').length === 0",
            )
            .await;
        assert!(
            !browser.text("#queue-status").await.is_empty(),
            "{label}: the replay is reported"
        );
        browser.screenshot("queue").await;
        poll_until(WAIT, "the replayed job to succeed", || async {
            let data = app
                .gql(
                    Role::Admin,
                    "{ jobQueue { stats { kind state count } } }",
                    json!({}),
                )
                .await;
            let stats = data["jobQueue"]["stats"].as_array()?.clone();
            stats
                .iter()
                .any(|s| s["kind"] == "flaky" && s["state"] == "SUCCEEDED")
                .then_some(())
        })
        .await;
        browser.no_errors("the queue page").await;

        // import a CSV with one bad row to the end
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("leads.csv");
        std::fs::write(
            &file,
            "email,first_name,last_name,company_name\n\
             ada@example.com,Ada,Lovelace,Analytical\n\
             not-an-email,Bad,Row,Nowhere\n\
             grace@example.com,Grace,Hopper,Navy\n",
        )
        .expect("csv written");
        browser.go("imports").await;
        browser
            .wait_for("#import-file")
            .await
            .send_keys(file.to_str().expect("path"))
            .await
            .expect("file chosen");
        browser.click("#start-import").await;
        browser
            .until(
                "the import to succeed",
                "const s = document.querySelector('#import-status'); return s && s.textContent.includes('SUCCEEDED')",
            )
            .await;
        browser.wait_for("#import-errors").await;
        let metrics = app.metrics().await;
        assert!(
            metrics.contains(
                r#"leadgate_graphql_operations_total{operation="ImportProgress",type="subscription"} 1"#
            ),
            "{label}: the progress came over the WebSocket subscription"
        );
        browser.screenshot("imports").await;
        let data = app
            .gql(Role::Admin, "{ leads(first: 10) { totalCount } }", json!({}))
            .await;
        assert_eq!(data["leads"]["totalCount"], 2, "{label}");
        browser.no_errors("the imports page").await;

        browser.go("providers").await;
        browser.screenshot("providers").await;
        browser.no_errors("the providers page").await;

        // a CRM connection synced from the console: its run is listed when it ends
        let hubspot = crate::fake_crm::FakeHubSpot::start().await;
        let created = app
            .gql(
                Role::Admin,
                "mutation($input: CreateCrmConnectionInput!) { createCrmConnection(input: $input) { userErrors { message } } }",
                json!({"input": {
                    "kind": "HUBSPOT", "name": "Sales HubSpot", "apiBaseUrl": hubspot.url(),
                    "credentials": {"accessToken": hubspot.token, "clientSecret": hubspot.secret},
                }}),
            )
            .await;
        assert_eq!(created["createCrmConnection"]["userErrors"], json!([]));
        browser.go("crm").await;
        browser
            .click("#crm-table tbody tr[data-id] button[data-action='poll']")
            .await;
        browser
            .until(
                "the poll's run in the table",
                "return [...document.querySelectorAll('#crm-runs-table tbody tr')].some(r => /poll/i.test(r.textContent))",
            )
            .await;
        browser.screenshot("crm").await;
        browser.no_errors("the CRM page").await;

        // a campaign activated, then paused, from its row
        let campaign = app
            .gql(
                Role::Admin,
                "mutation($input: CreateCampaignInput!) { createCampaign(input: $input) { userErrors { message } } }",
                json!({"input": {
                    "name": "Welcome", "segment": {"filter": {"tags": {"anyOf": ["new"]}}},
                    "senders": ["Sales <sales@example.com>"],
                    "steps": [{"key": "hello", "email": {"subject": "Hi", "body": "Hello {{ unsubscribeUrl }}"}}],
                }}),
            )
            .await;
        assert_eq!(campaign["createCampaign"]["userErrors"], json!([]));
        browser.go("campaigns").await;
        let row = "#campaigns-table tbody tr[data-id]";
        browser
            .click(&format!("{row} button[data-action='activate']"))
            .await;
        browser.click(&format!("{row} button[data-action='pause']")).await;
        browser
            .until(
                "the campaign to be paused",
                &format!(
                    "const r = document.querySelector(\"{row}\"); return r && /paused/i.test(r.textContent) && r.querySelector(\"button[data-action='activate']\")"
                ),
            )
            .await;
        browser.screenshot("campaigns").await;
        browser.no_errors("the campaigns page").await;

        // a phone: nothing wider than the screen
        browser.client.set_window_size(390, 844).await.expect("resize");
        for page in ["overview", "keys"] {
            browser.go(page).await;
            browser
                .until(
                    "the page to fit a phone",
                    "return document.documentElement.scrollWidth <= window.innerWidth",
                )
                .await;
            browser.screenshot(&format!("{page}-phone")).await;
        }
        browser.no_errors("the phone layout").await;
        browser.close().await;
    }
}

#[tokio::test]
async fn a_permission_limited_key_sees_no_admin_pages() {
    for backend in backends() {
        let label = format!("limited-{backend:?}").to_lowercase();
        let Some(browser) = Browser::start(&label).await else {
            return;
        };
        let app = app(backend).await;
        let created = app
            .gql(
                Role::Admin,
                "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret userErrors { message } } }",
                json!({"input": {"name": "reader", "role": "MEMBER", "scopes": ["READ_LEADS"]}}),
            )
            .await;
        let secret = created["createApiKey"]["secret"]
            .as_str()
            .expect("secret")
            .to_owned();
        sign_in(&browser, &app, &secret).await;
        let links: Vec<String> = browser
            .until(
                "the navigation",
                "const a = [...document.querySelectorAll('#nav a')].map(a => a.getAttribute('href')); return a.length && a",
            )
            .await
            .as_array()
            .expect("links")
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect();
        for admin in ["#/keys", "#/providers", "#/queue", "#/crm"] {
            assert!(!links.contains(&admin.to_owned()), "{label}: {links:?}");
        }
        assert!(links.contains(&"#/overview".to_owned()), "{label}: {links:?}");
        browser.screenshot("overview").await;
        // typing an admin page's address shows why, and asks nothing of the server
        browser.route("keys").await;
        browser.ready("keys").await;
        let text = browser.text("main#main").await;
        assert!(text.contains("admin"), "{label}: {text}");
        assert!(
            browser
                .client
                .find_all(Locator::Css("#keys-table"))
                .await
                .expect("find")
                .is_empty(),
            "{label}"
        );
        browser.screenshot("keys-refused").await;
        browser.no_errors("the limited console").await;
        browser.close().await;
    }
}

#[tokio::test]
async fn the_demo_signs_in_with_one_click() {
    let Some(browser) = Browser::start("demo").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, _guard) = crate::helpers::fresh_database(Backend::Sqlite).await;
    let server = crate::cli::start(
        dir.path(),
        &["--demo", "--listen", "127.0.0.1:0"],
        &[("LEADGATE_DATABASE_URL", url.as_str())],
        true,
    )
    .await;
    browser
        .client
        .goto(&format!("{}/console", server.base))
        .await
        .expect("the console loads");
    browser.ready("sign-in").await;
    browser.click("#demo-sign-in").await;
    browser.ready("overview").await;
    browser
        .until(
            "the demo's 10,000 leads on the overview",
            "return document.querySelector('main#main').textContent.includes('10,000')",
        )
        .await;
    browser.screenshot("overview").await;
    browser.no_errors("the demo's overview").await;
    browser.close().await;
    crate::cli::terminate(server).await;
}

const HISTORY: &str = "query($minutes: Int!) { metricsHistory(minutes: $minutes) { at requests errors p99Ms creditsSpent queueDepth oldestQueuedAgeSeconds deadJobs } }";

fn total(history: &Value, field: &str) -> i64 {
    history["metricsHistory"]
        .as_array()
        .expect("minutes")
        .iter()
        .map(|m| m[field].as_i64().unwrap_or_default())
        .sum()
}

#[tokio::test]
async fn metrics_history_counts_each_workspaces_requests_errors_credits_and_queue() {
    for backend in backends() {
        let app = app(backend).await;
        app.use_sandbox(&["PERSON"], 2).await;
        app.create_leads(vec![
            json!({"email": "ada@example.com", "firstName": "Ada"}),
            json!({"email": "alan@example.com", "firstName": "Alan"}),
        ])
        .await;
        let before = app.gql(Role::Admin, HISTORY, json!({"minutes": 60})).await;
        let enriched = app
            .gql(
                Role::Admin,
                "{ leads(first: 10) { nodes { person { fullName } } } }",
                json!({}),
            )
            .await;
        assert_eq!(enriched["leads"]["nodes"].as_array().map(Vec::len), Some(2));
        app.gql_err(Role::Admin, "{ lead(id: \"nope\") { id } }", json!({}))
            .await;
        let mut job = NewJob::new(FLAKY, json!({"failures": 0})).in_workspace(app.workspace.id);
        job.run_at = Some(leadgate::domain::now() + chrono::TimeDelta::hours(1));
        app.services.jobs.queue().enqueue(job).await.expect("enqueued");

        let after = app.gql(Role::Admin, HISTORY, json!({"minutes": 60})).await;
        let minutes = after["metricsHistory"].as_array().expect("minutes");
        assert_eq!(minutes.len(), 60, "{backend:?}: one entry a minute");
        let starts: Vec<&str> = minutes.iter().map(|m| m["at"].as_str().unwrap()).collect();
        let mut sorted = starts.clone();
        sorted.sort();
        assert_eq!(starts, sorted, "oldest first");
        // the reads of `before` and `after` themselves are requests too: count from `before`
        assert_eq!(
            total(&after, "requests") - total(&before, "requests"),
            3,
            "{backend:?}: the enrichment, the failed lookup and the first history read"
        );
        assert_eq!(total(&after, "errors") - total(&before, "errors"), 1);
        assert_eq!(
            total(&after, "creditsSpent") - total(&before, "creditsSpent"),
            4,
            "{backend:?}: two hits at two credits"
        );
        let now = minutes.last().expect("the minute in progress");
        assert_eq!(now["queueDepth"], 1, "{backend:?}: sampled when read: {now}");
        assert_eq!(now["deadJobs"], 0);
        assert!(now["p99Ms"].as_f64().is_some(), "{now}");

        // another workspace sees none of it
        let theirs = app
            .post(
                Some(&app.token_in(&app.other, Role::Admin)),
                json!({"query": HISTORY, "variables": {"minutes": 60}}),
            )
            .await
            .1;
        assert_eq!(total(&theirs["data"], "requests"), 0, "{theirs}");
        assert_eq!(total(&theirs["data"], "creditsSpent"), 0);

        // admins only; the window is 1 to 60 minutes
        let refused = app.gql_err(Role::Member, HISTORY, json!({"minutes": 5})).await;
        assert_eq!(crate::helpers::first_code(&refused), "FORBIDDEN");
        for minutes in [0, 61, -1] {
            let bad = app
                .gql_err(Role::Admin, HISTORY, json!({"minutes": minutes}))
                .await;
            assert_eq!(
                crate::helpers::first_code(&bad),
                "BAD_USER_INPUT",
                "{minutes}: {bad}"
            );
        }
    }
}

#[tokio::test]
async fn viewer_scopes_are_what_the_role_and_the_keys_scopes_both_allow() {
    for backend in backends() {
        let app = app(backend).await;
        let scopes = |body: &Value| body["viewer"]["scopes"].clone();
        let admin = app.gql(Role::Admin, "{ viewer { scopes } }", json!({})).await;
        assert_eq!(
            scopes(&admin),
            json!(["READ_LEADS", "WRITE_LEADS", "SUBSCRIBE", "IMPORT_EXPORT", "ADMIN"])
        );
        let viewer = app.gql(Role::Viewer, "{ viewer { scopes } }", json!({})).await;
        assert_eq!(
            scopes(&viewer),
            json!(["READ_LEADS", "SUBSCRIBE", "IMPORT_EXPORT"]),
            "{backend:?}: a viewer exports, never writes or administers"
        );
        let partner = app.gql(Role::Partner, "{ viewer { scopes } }", json!({})).await;
        assert_eq!(scopes(&partner), json!(["READ_LEADS", "SUBSCRIBE"]));
        // a member key holding ADMIN still is no admin
        let created = app
            .gql(
                Role::Admin,
                "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret } }",
                json!({"input": {"name": "k", "role": "MEMBER", "scopes": ["READ_LEADS", "ADMIN"]}}),
            )
            .await;
        let secret = created["createApiKey"]["secret"].as_str().expect("secret");
        let (_, body) = app
            .post(Some(secret), json!({"query": "{ viewer { scopes } }"}))
            .await;
        assert_eq!(scopes(&body["data"]), json!(["READ_LEADS"]), "{body}");
    }
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_policy_and_no_token_outside_demo_mode() {
    let app = app(Backend::Sqlite).await;
    let page = app.client.get(app.url("/console")).send().await.expect("page");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.expect("html");
    assert!(
        html.contains(r#"<meta name="leadgate-demo-token" content="">"#),
        "no token outside demo mode"
    );
    for asset in ["/console/app.js", "/console/app.css"] {
        let response = app.client.get(app.url(asset)).send().await.expect("asset");
        assert_eq!(response.status(), 200, "{asset}");
        assert!(response.headers().contains_key("etag"), "{asset}");
        assert!(!response.text().await.expect("body").is_empty(), "{asset}");
    }
}
