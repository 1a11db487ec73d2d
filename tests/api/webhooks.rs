//! Outbound webhooks: registering endpoints (admins only, secret shown once, bad input
//! refused), and delivery to receivers on 127.0.0.1 through the job queue.

use crate::helpers::{TestApp, backends, poll_until, spawn_app, spawn_app_with};
use leadgate::domain::{JobState, Role};
use leadgate::events::webhooks::{ATTEMPT_HEADER, EVENT_ID_HEADER, SIGNATURE_HEADER, verify};
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const CREATE: &str = "mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { \
     endpoint { id url eventTypes enabled secretLast4 description } secret userErrors { field message code } } }";
const UPDATE: &str = "mutation($input: UpdateWebhookEndpointInput!) { updateWebhookEndpoint(input: $input) { \
     endpoint { id url eventTypes enabled disabledReason consecutiveFailures } userErrors { field message code } } }";
const LIST: &str = "{ webhookEndpoints { id url eventTypes enabled secretLast4 } }";
const DELIVERIES: &str = "{ webhookEndpoints { deliveries(first: 10) { nodes { attempt succeeded statusCode responseBody error eventType } } } }";

pub async fn register(app: &TestApp, url: &str, types: &[&str]) -> (String, String) {
    let data = app
        .gql(
            Role::Admin,
            CREATE,
            json!({"input": {"url": url, "eventTypes": types}}),
        )
        .await;
    let payload = &data["createWebhookEndpoint"];
    assert_eq!(payload["userErrors"], json!([]), "{payload}");
    (
        payload["endpoint"]["id"].as_str().unwrap().to_owned(),
        payload["secret"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn an_admin_registers_an_endpoint_and_sees_its_secret_once() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let data = app
            .gql(
                Role::Admin,
                CREATE,
                json!({"input": {"url": " https://hooks.partner.example/leadgate ", "eventTypes": ["LEAD_CREATED", "LEAD_UPDATED", "LEAD_CREATED"], "description": "CRM bridge"}}),
            )
            .await;
        let payload = &data["createWebhookEndpoint"];
        let secret = payload["secret"].as_str().unwrap();
        assert!(
            secret.starts_with("whsec_") && secret.len() > 40,
            "{backend:?}: {payload}"
        );
        let endpoint = &payload["endpoint"];
        assert_eq!(endpoint["url"], "https://hooks.partner.example/leadgate");
        assert_eq!(endpoint["eventTypes"], json!(["LEAD_CREATED", "LEAD_UPDATED"]));
        assert_eq!(endpoint["enabled"], true);
        assert_eq!(endpoint["secretLast4"], secret[secret.len() - 4..]);

        // the list shows it without the secret, and only to its workspace
        let list = app.gql(Role::Admin, LIST, json!({})).await;
        assert_eq!(list["webhookEndpoints"][0]["id"], endpoint["id"]);
        assert!(!list.to_string().contains(secret));
        let theirs = app
            .post(
                Some(&app.token_in(&app.other, Role::Admin)),
                json!({"query": LIST}),
            )
            .await
            .1;
        assert_eq!(theirs["data"]["webhookEndpoints"], json!([]), "{backend:?}");

        // rotation gives a new secret
        let rotated = app
            .gql(
                Role::Admin,
                "mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret endpoint { secretLast4 } } }",
                json!({"id": endpoint["id"]}),
            )
            .await;
        let new_secret = rotated["rotateWebhookSecret"]["secret"].as_str().unwrap();
        assert_ne!(new_secret, secret);

        // switching off and on
        let off = app
            .gql(
                Role::Admin,
                UPDATE,
                json!({"input": {"id": endpoint["id"], "enabled": false}}),
            )
            .await;
        assert_eq!(off["updateWebhookEndpoint"]["endpoint"]["enabled"], false);
        assert_eq!(
            off["updateWebhookEndpoint"]["endpoint"]["disabledReason"],
            "switched off by an admin"
        );
        let on = app
            .gql(
                Role::Admin,
                UPDATE,
                json!({"input": {"id": endpoint["id"], "enabled": true}}),
            )
            .await;
        assert_eq!(
            on["updateWebhookEndpoint"]["endpoint"]["disabledReason"],
            Value::Null
        );

        let deleted = app
            .gql(
                Role::Admin,
                "mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { deletedId } }",
                json!({"id": endpoint["id"]}),
            )
            .await;
        assert_eq!(deleted["deleteWebhookEndpoint"]["deletedId"], endpoint["id"]);
        assert_eq!(
            app.gql(Role::Admin, LIST, json!({})).await["webhookEndpoints"],
            json!([])
        );
    }
}

#[tokio::test]
async fn malformed_endpoints_are_refused_field_by_field() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let cases = [
            (
                json!({"url": "ftp://x.example", "eventTypes": ["LEAD_CREATED"]}),
                "url",
            ),
            (json!({"url": "https://", "eventTypes": ["LEAD_CREATED"]}), "url"),
            (
                json!({"url": "https://user:pw@x.example/", "eventTypes": ["LEAD_CREATED"]}),
                "url",
            ),
            (
                json!({"url": "https://x.example/", "eventTypes": []}),
                "eventTypes",
            ),
            (
                json!({"url": "https://x.example/", "eventTypes": ["LEAD_CREATED"], "description": "d".repeat(501)}),
                "description",
            ),
        ];
        for (input, field) in cases {
            let data = app.gql(Role::Admin, CREATE, json!({"input": input})).await;
            let payload = &data["createWebhookEndpoint"];
            assert_eq!(payload["endpoint"], Value::Null, "{backend:?}: {payload}");
            assert_eq!(payload["secret"], Value::Null);
            assert_eq!(
                payload["userErrors"][0]["field"],
                json!(["input", field]),
                "{payload}"
            );
        }
        // an unknown event type is not even a valid document
        let body = app
            .gql_err(
                Role::Admin,
                CREATE,
                json!({"input": {"url": "https://x.example/", "eventTypes": ["LEAD_EXPLODED"]}}),
            )
            .await;
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("LEAD_EXPLODED")
        );
        // ids of other types, garbage ids and unknown endpoints
        for (id, code) in [
            (
                app.create_lead(json!({"email": "x@acme.io"})).await["id"].clone(),
                "BAD_USER_INPUT",
            ),
            (json!("garbage"), "BAD_USER_INPUT"),
        ] {
            let body = app
                .gql_err(
                    Role::Admin,
                    UPDATE,
                    json!({"input": {"id": id, "enabled": false}}),
                )
                .await;
            assert_eq!(body["errors"][0]["extensions"]["code"], code, "{body}");
        }
        let (id, _) = register(&app, "https://x.example/", &["LEAD_CREATED"]).await;
        let body = app
            .post(
                Some(&app.token_in(&app.other, Role::Admin)),
                json!({"query": UPDATE, "variables": {"input": {"id": id, "enabled": false}}}),
            )
            .await
            .1;
        assert_eq!(body["errors"][0]["extensions"]["code"], "NOT_FOUND", "{body}");
    }
}

#[tokio::test]
async fn only_admins_manage_webhooks_and_a_master_key_is_needed() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        for role in [Role::Member, Role::Viewer, Role::Partner] {
            let body = app.gql_err(role, LIST, json!({})).await;
            assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN", "{role:?}");
            let body = app
                .gql_err(
                    role,
                    CREATE,
                    json!({"input": {"url": "https://x.example/", "eventTypes": ["LEAD_CREATED"]}}),
                )
                .await;
            assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN", "{role:?}");
        }
        let keyless = spawn_app_with(backend, |s| s.master_key = None).await;
        let data = keyless
            .gql(
                Role::Admin,
                CREATE,
                json!({"input": {"url": "https://x.example/", "eventTypes": ["LEAD_CREATED"]}}),
            )
            .await;
        let message = data["createWebhookEndpoint"]["userErrors"][0]["message"]
            .as_str()
            .unwrap();
        assert!(message.contains("LEADGATE_MASTER_KEY"), "{message}");
    }
}

/// An app whose deliveries retry fast and give up after three attempts.
async fn fast_retrying(backend: crate::helpers::Backend, disable_after: u32) -> TestApp {
    spawn_app_with(backend, |s| {
        s.webhook_max_attempts = 3;
        s.webhook_retry_base_ms = 20;
        s.webhook_timeout_ms = 2_000;
        s.webhook_disable_after = disable_after;
    })
    .await
}

/// Checks a received delivery as a partner would, returning its attempt number.
fn verified(request: &wiremock::Request, secret: &str) -> u32 {
    let signature = request.headers.get(SIGNATURE_HEADER).unwrap().to_str().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        verify(secret, signature, &request.body, now, Duration::from_secs(300)),
        "bad signature {signature}"
    );
    assert!(!verify(
        "whsec_wrong",
        signature,
        &request.body,
        now,
        Duration::from_secs(300)
    ));
    request
        .headers
        .get(ATTEMPT_HEADER)
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_receiver_that_fails_twice_gets_the_event_signed_each_time() {
    for backend in backends() {
        let app = fast_retrying(backend, 5).await;
        let receiver = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503).set_body_string("busy"))
            .up_to_n_times(2)
            .with_priority(1)
            .mount(&receiver)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(204))
            .with_priority(2)
            .mount(&receiver)
            .await;
        let (id, secret) = register(&app, &format!("{}/hooks", receiver.uri()), &["LEAD_CREATED"]).await;
        let lead = app.create_lead(json!({"email": "ada@engines.example"})).await;

        let requests = poll_until(Duration::from_secs(20), "three attempts", || async {
            let got = receiver.received_requests().await.unwrap_or_default();
            (got.len() >= 3).then_some(got)
        })
        .await;
        let attempts: Vec<u32> = requests.iter().map(|r| verified(r, &secret)).collect();
        assert_eq!(attempts, vec![1, 2, 3], "{backend:?}");
        let body: Value = serde_json::from_slice(&requests[2].body).unwrap();
        assert_eq!(body["type"], "lead.created");
        assert_eq!(body["data"]["lead"]["email"], "ada@engines.example");
        assert!(
            requests
                .iter()
                .all(|r| r.headers.get(EVENT_ID_HEADER) == requests[0].headers.get(EVENT_ID_HEADER))
        );
        assert!(lead["id"].is_string());

        // the log shows the two failures with the receiver's answer, then the success
        let log = poll_until(Duration::from_secs(10), "three logged attempts", || async {
            let data = app.gql(Role::Admin, DELIVERIES, json!({})).await;
            let nodes = data["webhookEndpoints"][0]["deliveries"]["nodes"]
                .as_array()
                .cloned()
                .unwrap();
            (nodes.len() == 3).then_some(nodes)
        })
        .await;
        let summary: Vec<(Value, Value, Value)> = log
            .iter()
            .map(|d| {
                (
                    d["attempt"].clone(),
                    d["succeeded"].clone(),
                    d["statusCode"].clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (json!(3), json!(true), json!(204)),
                (json!(2), json!(false), json!(503)),
                (json!(1), json!(false), json!(503))
            ],
            "{backend:?}"
        );
        assert_eq!(log[1]["responseBody"], "busy");
        let endpoint = &app.gql(Role::Admin, LIST, json!({})).await["webhookEndpoints"][0];
        assert_eq!(
            (endpoint["id"].as_str(), endpoint["enabled"].clone()),
            (Some(id.as_str()), json!(true))
        );
    }
}

#[tokio::test]
async fn a_receiver_that_never_succeeds_ends_dead_lettered_and_switched_off() {
    for backend in backends() {
        let app = fast_retrying(backend, 1).await;
        let receiver = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(500).set_body_string("kaput"))
            .mount(&receiver)
            .await;
        let (_, secret) = register(&app, &receiver.uri(), &["LEAD_CREATED", "WEBHOOK_DISABLED"]).await;
        app.create_lead(json!({"email": "grace@navy.example"})).await;

        let endpoint = poll_until(Duration::from_secs(20), "the endpoint switched off", || async {
            let data = app
                .gql(
                    Role::Admin,
                    "{ webhookEndpoints { enabled disabledReason consecutiveFailures } }",
                    json!({}),
                )
                .await;
            let e = data["webhookEndpoints"][0].clone();
            (e["enabled"] == false).then_some(e)
        })
        .await;
        assert_eq!(endpoint["consecutiveFailures"], 1, "{backend:?}");
        assert!(
            endpoint["disabledReason"]
                .as_str()
                .unwrap()
                .contains("failed every attempt")
        );
        let requests = receiver.received_requests().await.unwrap();
        assert_eq!(requests.len(), 3, "{backend:?}: one job, three attempts");
        for r in &requests {
            verified(r, &secret);
        }

        // the delivery waits in the dead-letter queue with the receiver's answer
        let queue = app
            .gql(
                Role::Admin,
                "{ jobQueue { dead(first: 10) { edges { node { kind attempts errors { error } } } } } }",
                json!({}),
            )
            .await;
        let dead = &queue["jobQueue"]["dead"]["edges"][0]["node"];
        assert_eq!(dead["kind"], "webhook.deliver", "{queue}");
        assert_eq!(dead["attempts"], 3);
        assert!(
            dead["errors"][2]["error"]
                .as_str()
                .unwrap()
                .contains("HTTP 500: kaput"),
            "{dead}"
        );

        // and the switch-off is itself an event in the log
        let events = app
            .services
            .store
            .events_after(app.workspace.id, 0, 100)
            .await
            .unwrap();
        assert!(events.iter().any(|e| e.kind == "webhook.disabled"), "{events:?}");
        // a disabled endpoint is not called again. A second, healthy endpoint proves the new
        // event was dispatched; once it got it and the queue holds nothing queued or running,
        // a delivery to the disabled one would have been made (or would still be waiting).
        let canary = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&canary)
            .await;
        register(&app, &canary.uri(), &["LEAD_CREATED"]).await;
        app.create_lead(json!({"email": "later@navy.example"})).await;
        poll_until(
            Duration::from_secs(20),
            "the healthy endpoint's delivery",
            || async {
                let got = canary.received_requests().await.unwrap_or_default();
                got.iter()
                    .any(|r| String::from_utf8_lossy(&r.body).contains("later@navy.example"))
                    .then_some(())
            },
        )
        .await;
        poll_until(
            Duration::from_secs(20),
            "no delivery queued or running",
            || async {
                let stats = app
                    .services
                    .store
                    .job_stats(leadgate::domain::JobScope::AllWorkspaces)
                    .await
                    .unwrap();
                stats
                    .iter()
                    .filter(|s| s.kind == "webhook.deliver")
                    .all(|s| !matches!(s.state, JobState::Queued | JobState::Running) || s.count == 0)
                    .then_some(())
            },
        )
        .await;
        let requests = receiver.received_requests().await.unwrap();
        assert_eq!(
            requests.len(),
            3,
            "{backend:?}: the disabled endpoint was called again"
        );
        assert!(
            requests
                .iter()
                .all(|r| !String::from_utf8_lossy(&r.body).contains("later@navy.example"))
        );
    }
}
