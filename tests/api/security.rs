//! Security defaults, each shown by sending the attack to the real server over HTTP (or its
//! WebSocket): introspection only for authenticated callers outside `--demo`, no circular
//! introspection, no field repeated or directive stacked past the limits, no "Did you mean"
//! outside `--demo`, no cross-site (CORS-simple) request that runs without a CSRF header, and
//! no webhook delivery to an internal address — literal, resolved or redirected to — unless
//! `outbound_allow` names it.

use crate::helpers::{
    Backend, FAKES_NET, Protocol, TestApp, backends, first_code, poll_until, spawn_app, spawn_app_with,
};
use crate::limits::{INTROSPECTION_QUERY, INTROSPECTION_QUERY_ALL_OPTIONS};
use leadgate::domain::Role;
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const SCHEMA: &str = "{ __schema { queryType { name } } }";
const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// A refusal before execution: `status`, the code, and no `data` at all.
fn assert_refused(status: u16, body: &Value, code: &str, needle: &str) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(first_code(body), code, "{body}");
    assert!(body.get("data").is_none(), "`data` must be absent: {body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "expected `{needle}` in: {body}");
}

/// Expects `query` to run for `token` without errors; returns `data`.
async fn assert_runs(app: &TestApp, token: Option<&str>, query: &str) -> Value {
    let (status, body) = app.post(token, json!({ "query": query })).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    body["data"].clone()
}

// ---- introspection ----

#[tokio::test]
async fn anonymous_introspection_is_refused_outside_demo_mode() {
    let app = spawn_app(Backend::Sqlite).await;
    let via_fragment = "{ ...Root } fragment Root on Query { __type(name: \"Lead\") { name } }";
    for query in [SCHEMA, "{ __type(name: \"Lead\") { name } }", via_fragment] {
        let (status, body) = app.post(None, json!({ "query": query })).await;
        assert_refused(status, &body, "INTROSPECTION_DISABLED", "Authorization: Bearer");
    }
    // over GET as well
    let url = url::Url::parse_with_params(&app.url("/graphql"), [("query", SCHEMA)]).unwrap();
    let res = app
        .client
        .get(url)
        .header("accept", GRAPHQL_RESPONSE_JSON)
        .header("x-leadgate-csrf", "1")
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    assert_refused(status, &body, "INTROSPECTION_DISABLED", "authentication");
    // `__typename` is not introspection
    let data = assert_runs(&app, None, "{ __typename }").await;
    assert_eq!(data, json!({"__typename": "Query"}));

    // a token opens it
    let token = app.token(Role::Viewer);
    let data = assert_runs(&app, Some(&token), SCHEMA).await;
    assert_eq!(data["__schema"]["queryType"]["name"], "Query");

    // `never` closes it to everyone, `always` opens it to everyone
    let closed = spawn_app_with(Backend::Sqlite, |s| {
        s.introspection = Some(leadgate::config::Introspection::Never);
    })
    .await;
    let token = closed.token(Role::Admin);
    let (status, body) = closed.post(Some(&token), json!({ "query": SCHEMA })).await;
    assert_refused(status, &body, "INTROSPECTION_DISABLED", "disabled on this server");
    let open = spawn_app_with(Backend::Sqlite, |s| {
        s.introspection = Some(leadgate::config::Introspection::Always);
    })
    .await;
    assert_runs(&open, None, SCHEMA).await;
}

#[tokio::test]
async fn demo_mode_lets_anyone_run_the_standard_introspection_queries() {
    let demo = spawn_app_with(Backend::Sqlite, |s| s.demo = true).await;
    let app = spawn_app(Backend::Sqlite).await;
    let token = app.token(Role::Viewer);
    for query in [INTROSPECTION_QUERY, INTROSPECTION_QUERY_ALL_OPTIONS] {
        // anonymous in demo mode (GraphiQL before a token is set), with a token elsewhere
        for (server, token) in [(&demo, None), (&app, Some(token.as_str()))] {
            let data = assert_runs(server, token, query).await;
            let types = data["__schema"]["types"].as_array().unwrap();
            assert!(types.iter().any(|t| t["name"] == "Lead"), "{data}");
        }
    }
}

/// `__type(name: "Lead") { fields { type { fields { type { … } } } } }` with `lists` nested
/// `fields`.
fn circular(lists: usize) -> String {
    format!(
        "{{ __type(name: \"Lead\") {{ {}name{} }} }}",
        "fields { type { ".repeat(lists),
        " } }".repeat(lists)
    )
}

#[tokio::test]
async fn circular_introspection_is_refused_before_execution_even_when_allowed() {
    let app = spawn_app(Backend::Sqlite).await;
    let demo = spawn_app_with(Backend::Sqlite, |s| s.demo = true).await;
    let token = app.token(Role::Admin);
    // two nested lists run: the limit, not introspection as such, refuses the third
    assert_runs(&app, Some(&token), &circular(2)).await;
    let by_schema = "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }";
    let by_fragments = "{ __type(name: \"Lead\") { ...A } } \
        fragment A on __Type { fields { type { ...B } } } \
        fragment B on __Type { interfaces { ...C } } \
        fragment C on __Type { possibleTypes { name } }";
    let deep = circular(3);
    for (server, token) in [(&app, Some(token.as_str())), (&demo, None)] {
        for query in [deep.as_str(), by_schema, by_fragments] {
            let (status, body) = server.post(token, json!({ "query": query })).await;
            assert_refused(
                status,
                &body,
                "GRAPHQL_VALIDATION_FAILED",
                "introspection nested too deep",
            );
        }
    }
    // a fragment cycle is left to validation, not looped on
    let cycle = "{ __type(name: \"Lead\") { ...A } } fragment A on __Type { ofType { ...A } }";
    let (status, body) = app.post(Some(&token), json!({ "query": cycle })).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(first_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");

    // the WebSocket runs the same checks
    for protocol in [Protocol::TransportWs, Protocol::LegacyWs] {
        let mut ws = app.ws_ready(protocol, Role::Viewer).await;
        ws.start("1", &deep, json!({})).await;
        let message = ws.recv().await;
        let errors = ws.errors_of(&message);
        assert_eq!(
            errors[0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
            "{protocol:?}: {message}"
        );
        ws.close().await;
    }
}

// ---- operation limits ----

#[tokio::test]
async fn a_field_repeated_1000_times_and_a_directive_repeated_500_times_are_refused() {
    let app = spawn_app(Backend::Sqlite).await;
    assert_eq!(
        (app.settings.max_field_repeats, app.settings.max_directives),
        (20, 5)
    );
    let token = app.token(Role::Viewer);
    let repeated = format!("{{ viewer {{ {} }} }}", "role ".repeat(1000));
    let (status, body) = app.post(Some(&token), json!({ "query": repeated })).await;
    assert_refused(
        status,
        &body,
        "GRAPHQL_VALIDATION_FAILED",
        "`role` is selected more than 20 times",
    );
    let stacked = format!("{{ viewer {} {{ role }} }}", "@include(if: true) ".repeat(500));
    let (status, body) = app.post(Some(&token), json!({ "query": stacked })).await;
    assert_refused(status, &body, "GRAPHQL_VALIDATION_FAILED", "500 directives");

    // fragments spread into a selection set count; 20 in all still run
    let split = |a: usize, b: usize| {
        format!(
            "{{ viewer {{ ...A ...B }} }} fragment A on Viewer {{ {} }} fragment B on Viewer {{ {} }}",
            "role ".repeat(a),
            "role ".repeat(b)
        )
    };
    let data = assert_runs(&app, Some(&token), &split(10, 10)).await;
    assert_eq!(data["viewer"]["role"], "VIEWER");
    let (status, body) = app.post(Some(&token), json!({ "query": split(11, 10) })).await;
    assert_refused(status, &body, "GRAPHQL_VALIDATION_FAILED", "more than 20 times");
    // so do fragments spread twice, and aliases are keys of their own
    let twice = format!(
        "{{ viewer {{ ...A ...A }} }} fragment A on Viewer {{ {} }}",
        "role ".repeat(11)
    );
    let (status, body) = app.post(Some(&token), json!({ "query": twice })).await;
    assert_refused(status, &body, "GRAPHQL_VALIDATION_FAILED", "more than 20 times");
    assert_runs(
        &app,
        Some(&token),
        &format!("{{ viewer {{ {} a: role }} }}", "role ".repeat(20)),
    )
    .await;

    // a lower directive limit refuses what the default lets through
    let two = "{ viewer @include(if: true) @skip(if: false) { role } }";
    assert_runs(&app, Some(&token), two).await;
    let strict = spawn_app_with(Backend::Sqlite, |s| s.max_directives = 1).await;
    let token = strict.token(Role::Viewer);
    let (status, body) = strict.post(Some(&token), json!({ "query": two })).await;
    assert_refused(
        status,
        &body,
        "GRAPHQL_VALIDATION_FAILED",
        "at most 1 are allowed",
    );

    // and so does the WebSocket
    let mut ws = app.ws_ready(Protocol::TransportWs, Role::Viewer).await;
    let repeated = format!("{{ viewer {{ {} }} }}", "role ".repeat(1000));
    ws.start("1", &repeated, json!({})).await;
    let message = ws.recv().await;
    assert_eq!(
        ws.errors_of(&message)[0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED",
        "{message}"
    );
}

// ---- suggestions ----

#[tokio::test]
async fn a_misspelled_field_gets_no_suggestion_outside_demo_mode() {
    let misspelled = "{ viewr { role } }";
    let app = spawn_app(Backend::Sqlite).await;
    let token = app.token(Role::Viewer);
    let (status, body) = app.post(Some(&token), json!({ "query": misspelled })).await;
    assert_eq!(status, 400, "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("Unknown field \"viewr\""), "{message}");
    assert!(!message.contains("Did you mean"), "{message}");
    assert!(!body.to_string().contains("\"viewer\""), "{body}");

    let demo = spawn_app_with(Backend::Sqlite, |s| s.demo = true).await;
    let (status, body) = demo.post(None, json!({ "query": misspelled })).await;
    assert_eq!(status, 400, "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("Did you mean \"viewer\""), "{message}");
}

// ---- CSRF ----

const CREATE: &str = r#"mutation { createLead(input: {email: "forged@example.com"}) { lead { id } } }"#;
const BOUNDARY: &str = "----leadgate-csrf-test";

/// The multipart body a cross-site form could post: `operations` (the mutation) and an empty
/// `map`.
fn form_multipart(query: &str) -> Vec<u8> {
    let operations = json!({ "query": query, "variables": {} }).to_string();
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{operations}\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"map\"\r\n\r\n{{}}\r\n--{BOUNDARY}--\r\n"
    )
    .into_bytes()
}

/// Leads in the test workspace, read back through the API.
async fn lead_count(app: &TestApp) -> u64 {
    let data = assert_runs(
        app,
        Some(&app.token(Role::Viewer)),
        "{ leads(first: 1) { totalCount } }",
    )
    .await;
    data["leads"]["totalCount"].as_u64().unwrap()
}

async fn exchange(request: reqwest::RequestBuilder) -> (u16, Value) {
    let res = request.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, body)
}

#[tokio::test]
async fn cross_site_requests_run_only_with_a_csrf_header() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let token = app.token(Role::Admin);
        let post = |content_type: &str, body: Vec<u8>| {
            app.client
                .post(app.url("/graphql"))
                .header("content-type", content_type)
                .header("accept", GRAPHQL_RESPONSE_JSON)
                .bearer_auth(&token)
                .body(body)
        };
        let multipart = format!("multipart/form-data; boundary={BOUNDARY}");

        // a multipart mutation without the header is refused and changes nothing
        let (status, body) = exchange(post(&multipart, form_multipart(CREATE))).await;
        assert_refused(status, &body, "CSRF_HEADER_REQUIRED", "x-leadgate-csrf: 1");
        assert_eq!(lead_count(&app).await, 0, "{backend:?}");
        // an empty header value is no header
        let (status, body) =
            exchange(post(&multipart, form_multipart(CREATE)).header("x-leadgate-csrf", "")).await;
        assert_refused(status, &body, "CSRF_HEADER_REQUIRED", "apollo-require-preflight");
        // text/plain and form-urlencoded bodies never run
        let json_body = json!({ "query": CREATE }).to_string().into_bytes();
        let form_body = format!(
            "query={}",
            url::form_urlencoded::byte_serialize(CREATE.as_bytes()).collect::<String>()
        )
        .into_bytes();
        for (content_type, body) in [
            ("text/plain", json_body.clone()),
            ("text/plain;charset=UTF-8", json_body),
            ("application/x-www-form-urlencoded", form_body),
        ] {
            let (status, reply) = exchange(post(content_type, body)).await;
            assert_eq!(status, 415, "{content_type}: {reply}");
            assert!(reply.get("data").is_none(), "{reply}");
        }
        assert_eq!(lead_count(&app).await, 0, "{backend:?}");

        // with either header the same multipart request runs
        let (status, body) =
            exchange(post(&multipart, form_multipart(CREATE)).header("x-leadgate-csrf", "1")).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["data"]["createLead"]["lead"]["id"].is_string(), "{body}");
        assert_eq!(lead_count(&app).await, 1, "{backend:?}");
        let second = CREATE.replace("forged@", "second@");
        let (status, body) =
            exchange(post(&multipart, form_multipart(&second)).header("apollo-require-preflight", "true"))
                .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(lead_count(&app).await, 2, "{backend:?}");

        // GET: refused without the header, runs with it (or with a content type no form sends)
        let get = || {
            let url = url::Url::parse_with_params(&app.url("/graphql"), [("query", "{ viewer { role } }")])
                .unwrap();
            app.client
                .get(url)
                .header("accept", GRAPHQL_RESPONSE_JSON)
                .bearer_auth(&token)
        };
        let (status, body) = exchange(get()).await;
        assert_refused(status, &body, "CSRF_HEADER_REQUIRED", "x-leadgate-csrf");
        for (name, value) in [
            ("x-leadgate-csrf", "1"),
            ("apollo-require-preflight", "true"),
            ("content-type", "application/json"),
        ] {
            let (status, body) = exchange(get().header(name, value)).await;
            assert_eq!(status, 200, "{name}: {body}");
            assert_eq!(body["data"]["viewer"]["role"], "ADMIN", "{body}");
        }
        // JSON POSTs are preflighted by browsers and need nothing more
        let data = app
            .gql(
                Role::Member,
                CREATE.replace("forged@", "json@").as_str(),
                json!({}),
            )
            .await;
        assert!(data["createLead"]["lead"]["id"].is_string());
        assert_eq!(lead_count(&app).await, 3, "{backend:?}");
    }
}

// ---- outbound address guard ----

const CREATE_HOOK: &str = "mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { \
     endpoint { id } userErrors { field message } } }";
const DELIVERIES: &str =
    "{ webhookEndpoints { deliveries(first: 10) { nodes { attempt succeeded statusCode error } } } }";
const DEAD: &str = "{ jobQueue { dead(first: 10) { edges { node { kind attempts errors { error } } } } } }";

/// `createWebhookEndpoint` as an admin: the endpoint's id, or the user errors.
async fn register(app: &TestApp, url: &str) -> Result<String, Value> {
    let data = app
        .gql(
            Role::Admin,
            CREATE_HOOK,
            json!({"input": {"url": url, "eventTypes": ["LEAD_CREATED"]}}),
        )
        .await;
    let payload = &data["createWebhookEndpoint"];
    match payload["endpoint"]["id"].as_str() {
        Some(id) => Ok(id.to_owned()),
        None => Err(payload["userErrors"].clone()),
    }
}

/// A receiver on `ip` answering every POST with 204.
async fn receiver_on(ip: &str) -> MockServer {
    let listener = std::net::TcpListener::bind((ip, 0)).expect("a loopback port");
    let server = MockServer::builder().listener(listener).start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    server
}

/// An app whose deliveries would be retried fast, three times, if they were retried.
async fn delivering(backend: Backend, allow: &[&str]) -> TestApp {
    let allow: Vec<String> = allow.iter().map(|a| (*a).to_owned()).collect();
    spawn_app_with(backend, move |s| {
        s.outbound_allow = allow;
        s.webhook_max_attempts = 3;
        s.webhook_retry_base_ms = 20;
        s.webhook_timeout_ms = 2_000;
    })
    .await
}

/// The delivery log once it holds `n` attempts.
async fn deliveries(app: &TestApp, n: usize) -> Vec<Value> {
    poll_until(Duration::from_secs(20), "logged delivery attempts", || async {
        let data = app.gql(Role::Admin, DELIVERIES, json!({})).await;
        let nodes = data["webhookEndpoints"][0]["deliveries"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (nodes.len() >= n).then_some(nodes)
    })
    .await
}

/// The dead delivery job, once there is one.
async fn dead_delivery(app: &TestApp) -> Value {
    poll_until(Duration::from_secs(20), "a dead delivery", || async {
        let data = app.gql(Role::Admin, DEAD, json!({})).await;
        let node = data["jobQueue"]["dead"]["edges"][0]["node"].clone();
        (node["kind"] == "webhook.deliver").then_some(node)
    })
    .await
}

#[tokio::test]
async fn webhooks_to_internal_addresses_are_refused_at_registration() {
    for backend in backends() {
        let strict = delivering(backend, &[]).await;
        let receiver = receiver_on("127.0.0.1").await;
        let port = receiver.address().port();
        let cases = [
            (
                format!("http://127.0.0.1:{port}/"),
                "127.0.0.1 is a loopback address",
            ),
            (
                "http://169.254.169.254/latest/meta-data/".into(),
                "cloud metadata address",
            ),
            ("http://10.0.0.1/".into(), "private-network address"),
            ("http://[::1]/".into(), "::1 is a loopback address"),
            ("http://[::ffff:127.0.0.1]/".into(), "a loopback address"),
            ("http://[fd00:ec2::254]/".into(), "cloud metadata address"),
            ("http://100.100.100.200/".into(), "carrier-grade NAT"),
            (format!("http://localhost:{port}/"), "localhost resolves to"),
        ];
        for (url, reason) in &cases {
            let errors = register(&strict, url).await.expect_err(url);
            assert_eq!(errors[0]["field"], json!(["input", "url"]), "{url}: {errors}");
            let message = errors[0]["message"].as_str().unwrap();
            assert!(message.contains(reason), "{url}: {message}");
            assert!(message.contains("outbound_allow"), "{url}: {message}");
        }
        let listed = strict
            .gql(Role::Admin, "{ webhookEndpoints { id } }", json!({}))
            .await;
        assert_eq!(listed["webhookEndpoints"], json!([]), "{backend:?}");
        // changing a good endpoint's URL to an internal one is refused the same way
        let id = register(&strict, "http://93.184.216.34/hook").await.unwrap();
        let data = strict
            .gql(
                Role::Admin,
                "mutation($input: UpdateWebhookEndpointInput!) { updateWebhookEndpoint(input: $input) { endpoint { url } userErrors { field message } } }",
                json!({"input": {"id": id, "url": "http://192.168.1.1/"}}),
            )
            .await;
        let payload = &data["updateWebhookEndpoint"];
        assert_eq!(payload["endpoint"], Value::Null, "{payload}");
        assert!(
            payload["userErrors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("private-network address"),
            "{payload}"
        );

        // the allow-list opens exactly what it names: 127.0.0.1 is delivered to
        let open = delivering(backend, &[FAKES_NET]).await;
        register(&open, &format!("http://127.0.0.1:{port}/hook"))
            .await
            .unwrap();
        assert!(register(&open, "http://127.0.0.2/").await.is_err(), "{backend:?}");
        open.create_lead(json!({"email": "allowed@example.com"})).await;
        let log = deliveries(&open, 1).await;
        assert_eq!(log[0]["succeeded"], true, "{backend:?}: {log:?}");
        let received = receiver.received_requests().await.unwrap();
        assert_eq!(received.len(), 1, "{backend:?}");
        let body: Value = serde_json::from_slice(&received[0].body).unwrap();
        assert_eq!(body["data"]["lead"]["email"], "allowed@example.com");
    }
}

#[tokio::test]
async fn a_delivery_to_an_address_refused_at_send_time_fails_once_with_the_reason() {
    for backend in backends() {
        // a literal address, and a name resolved when the delivery connects
        for by_name in [false, true] {
            let (allow, ip): (&[&str], &str) = if by_name {
                (&[], "127.0.0.1")
            } else {
                (&[FAKES_NET], "127.0.0.2")
            };
            let app = delivering(backend, allow).await;
            let receiver = receiver_on(ip).await;
            let (url, reason) = if by_name {
                let port = receiver.address().port();
                (format!("http://localhost:{port}/"), "localhost resolves to")
            } else {
                (receiver.uri(), "127.0.0.2 is a loopback address")
            };
            // registered while loopback was allowed, as a name that moved since would have been
            let mut earlier = app.services.webhooks.clone();
            earlier.set_outbound(leadgate::net::OutboundPolicy::new([
                leadgate::net::parse_net("127.0.0.0/8").unwrap(),
                leadgate::net::parse_net("::1").unwrap(),
            ]));
            let admin = leadgate::service::Actor {
                subject: "tester".into(),
                workspace_id: app.workspace.id,
                role: Role::Admin,
                key: None,
            };
            earlier
                .create(&admin, &url, &["lead.created".to_owned()], None)
                .await
                .expect("registered under the old policy");
            app.create_lead(json!({"email": "moved@example.com"})).await;

            let dead = dead_delivery(&app).await;
            assert_eq!(dead["attempts"], 1, "{backend:?} {url}: not retried: {dead}");
            let error = dead["errors"][0]["error"].as_str().unwrap();
            assert!(error.contains(reason), "{url}: {error}");
            assert!(error.contains("a loopback address"), "{url}: {error}");
            let log = deliveries(&app, 1).await;
            assert_eq!(log.len(), 1, "{log:?}");
            assert_eq!(log[0]["succeeded"], false);
            assert_eq!(log[0]["statusCode"], Value::Null);
            assert!(log[0]["error"].as_str().unwrap().contains(reason), "{log:?}");
            assert!(
                receiver.received_requests().await.unwrap().is_empty(),
                "{backend:?} {url}: the receiver was contacted"
            );
        }
    }
}

#[tokio::test]
async fn a_redirect_to_a_refused_address_is_not_followed() {
    for backend in backends() {
        for follow in [false, true] {
            let allow: &[&str] = if follow {
                &[FAKES_NET, "127.0.0.2/32"]
            } else {
                &[FAKES_NET]
            };
            let app = delivering(backend, allow).await;
            let target = receiver_on("127.0.0.2").await;
            let redirector = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(
                    ResponseTemplate::new(307).insert_header("location", format!("{}/moved", target.uri())),
                )
                .mount(&redirector)
                .await;
            register(&app, &format!("{}/hook", redirector.uri()))
                .await
                .unwrap();
            app.create_lead(json!({"email": "redirected@example.com"})).await;

            let log = deliveries(&app, 1).await;
            let hit = target.received_requests().await.unwrap();
            assert_eq!(redirector.received_requests().await.unwrap().len(), 1);
            if follow {
                // the control: an allowed hop is followed with the body kept
                assert_eq!(log[0]["succeeded"], true, "{backend:?}: {log:?}");
                assert_eq!(hit.len(), 1, "{backend:?}");
                let body: Value = serde_json::from_slice(&hit[0].body).unwrap();
                assert_eq!(body["data"]["lead"]["email"], "redirected@example.com");
            } else {
                assert!(hit.is_empty(), "{backend:?}: the refused hop was contacted");
                assert_eq!(log[0]["succeeded"], false, "{log:?}");
                let error = log[0]["error"].as_str().unwrap();
                assert!(error.contains("127.0.0.2 is a loopback address"), "{error}");
                let dead = dead_delivery(&app).await;
                assert_eq!(dead["attempts"], 1, "{backend:?}: {dead}");
            }
        }
    }
}
