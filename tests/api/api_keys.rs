//! API keys: created by admins (the secret shown once), sent as `Authorization: Bearer
//! lg_live_…` over HTTP and WebSocket, narrowed by scopes on top of the role, refused with a
//! short reason when malformed, forged, expired or revoked, rotated with a grace period, revoked
//! across instances within a second, never logged, and managed from the command line.

use crate::cli::{run, stderr, stdout};
use crate::helpers::{Protocol, TestApp, backends, poll_until, spawn_app, spawn_second_app};
use leadgate::domain::Role;
use serde_json::{Value, json};
use std::time::Duration;

const CREATE: &str = "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { \
     apiKey { id name prefix role scopes rateLimit createdBy lastUsedAt expiresAt revokedAt } secret \
     userErrors { field message code } } }";
const LIST: &str = "{ apiKeys(first: 10) { edges { cursor node { id name prefix role scopes rateLimit \
     createdAt createdBy lastUsedAt expiresAt revokedAt } } pageInfo { hasNextPage } } }";
const REVOKE: &str =
    "mutation($id: ID!) { revokeApiKey(id: $id) { apiKey { id revokedAt } userErrors { field message } } }";
const ROTATE: &str = "mutation($id: ID!, $grace: Int) { rotateApiKey(id: $id, gracePeriod: $grace) { \
     apiKey { prefix } secret userErrors { field message code } } }";
const VIEWER: &str = "{ viewer { subject role canWriteLeads } }";
const LEADS: &str = "{ leads(first: 5) { edges { node { email } } } }";
const CREATE_LEAD: &str = "mutation($email: String!) { createLead(input: {email: $email}) { lead { email } \
     userErrors { message } } }";

/// Creates a key as an admin of the test workspace; returns its global id and secret.
async fn create_key(app: &TestApp, role: &str, scopes: &[&str]) -> (String, String) {
    create_key_with(
        app,
        json!({"name": "partner sync", "role": role, "scopes": scopes}),
    )
    .await
}

pub async fn create_key_with(app: &TestApp, input: Value) -> (String, String) {
    let data = app.gql(Role::Admin, CREATE, json!({ "input": input })).await;
    let payload = &data["createApiKey"];
    assert_eq!(payload["userErrors"], json!([]), "{payload}");
    (
        payload["apiKey"]["id"].as_str().unwrap().to_owned(),
        payload["secret"].as_str().unwrap().to_owned(),
    )
}

/// A GraphQL request sent with `secret`; (status, body).
async fn with_key(app: &TestApp, secret: &str, query: &str, variables: Value) -> (u16, Value) {
    app.post(Some(secret), json!({"query": query, "variables": variables}))
        .await
}

/// The first error's message, or "" when there is none.
fn message(body: &Value) -> String {
    body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn an_admin_creates_a_key_whose_secret_is_shown_once_and_that_authenticates() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let data = app
            .gql(
                Role::Admin,
                CREATE,
                json!({"input": {"name": " CRM bridge ", "role": "MEMBER", "scopes": ["READ_LEADS", "WRITE_LEADS"], "rateLimit": "600/min"}}),
            )
            .await;
        let payload = &data["createApiKey"];
        let secret = payload["secret"].as_str().unwrap();
        assert!(
            secret.starts_with("lg_live_") && secret.len() == 51,
            "{backend:?}: {payload}"
        );
        let key = &payload["apiKey"];
        assert_eq!(key["name"], "CRM bridge");
        assert_eq!(key["prefix"], secret[..12]);
        assert_eq!(key["role"], "MEMBER");
        assert_eq!(key["scopes"], json!(["READ_LEADS", "WRITE_LEADS"]));
        assert_eq!(key["rateLimit"], "600/min");
        assert_eq!(key["createdBy"], "tester");
        assert_eq!(key["revokedAt"], Value::Null);

        // the key speaks for its workspace with its role
        let (status, body) = with_key(&app, secret, VIEWER, json!({})).await;
        assert_eq!(status, 200, "{backend:?}: {body}");
        assert_eq!(body["data"]["viewer"]["role"], "MEMBER", "{body}");
        assert_eq!(body["data"]["viewer"]["canWriteLeads"], true);
        let (_, body) = with_key(&app, secret, CREATE_LEAD, json!({"email": "kim@keys.example"})).await;
        assert_eq!(
            body["data"]["createLead"]["lead"]["email"], "kim@keys.example",
            "{body}"
        );

        // the list shows it without the secret; last use is written within a few seconds
        let list = app.gql(Role::Admin, LIST, json!({})).await;
        let node = &list["apiKeys"]["edges"][0]["node"];
        assert_eq!(node["id"], key["id"], "{list}");
        assert_eq!(node["prefix"], secret[..12]);
        assert!(!list.to_string().contains(&secret[12..]), "{list}");
        app.services.api_keys.ring().flush_uses().await.unwrap();
        let list = app.gql(Role::Admin, LIST, json!({})).await;
        assert!(
            list["apiKeys"]["edges"][0]["node"]["lastUsedAt"].is_string(),
            "{backend:?}: {list}"
        );

        // and only to its workspace
        let theirs = app
            .post(
                Some(&app.token_in(&app.other, Role::Admin)),
                json!({"query": LIST}),
            )
            .await
            .1;
        assert_eq!(theirs["data"]["apiKeys"]["edges"], json!([]), "{backend:?}");
    }
}

#[tokio::test]
async fn a_key_authenticates_over_websocket_and_subscribes_only_with_its_scope() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (_, subscriber) = create_key(&app, "PARTNER", &["READ_LEADS", "SUBSCRIBE"]).await;
        let (_, reader) = create_key(&app, "PARTNER", &["READ_LEADS"]).await;

        let mut ws = app.ws(Protocol::TransportWs).await;
        ws.init(&subscriber).await;
        let viewer = ws.execute("v", VIEWER, json!({})).await;
        assert_eq!(
            viewer["data"]["viewer"]["role"], "PARTNER",
            "{backend:?}: {viewer}"
        );
        let cursor =
            ws.execute("c", "{ latestEventCursor }", json!({})).await["data"]["latestEventCursor"].clone();
        ws.start(
            "s",
            "subscription($after: EventCursor) { leadChanged(after: $after) { lead { email } } }",
            json!({"after": cursor}),
        )
        .await;
        app.create_lead(json!({"email": "sub@keys.example"})).await;
        let next = ws.recv().await;
        assert_eq!(next["type"], "next", "{backend:?}: {next}");
        assert_eq!(
            next["payload"]["data"]["leadChanged"]["lead"]["email"],
            "sub@keys.example"
        );
        ws.close().await;

        // a key without SUBSCRIBE is refused, naming the scope
        let mut ws = app.ws(Protocol::TransportWs).await;
        ws.init(&reader).await;
        ws.start("s", "subscription { leadChanged { cursor } }", json!({}))
            .await;
        // the stream fails as it starts: one result carrying the error
        let refused = ws.recv().await;
        assert_eq!(refused["type"], "next", "{backend:?}: {refused}");
        let errors = refused["payload"]["errors"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(errors[0]["extensions"]["code"], "FORBIDDEN", "{refused}");
        assert!(
            errors[0]["message"].as_str().unwrap().contains("SUBSCRIBE"),
            "{refused}"
        );
        ws.close().await;

        // a refused key closes the connection with 4403 (graphql-ws says why first)
        let mut ws = app.ws(Protocol::LegacyWs).await;
        ws.send(json!({"type": "connection_init", "payload": {"Authorization": "Bearer lg_live_nope"}}))
            .await;
        let (said, _) = ws.expect_rejected(4403).await;
        let said = said.unwrap_or_default();
        assert_eq!(said["message"], "API key is not valid", "{backend:?}: {said}");
    }
}

#[tokio::test]
async fn each_scope_allows_what_it_names_and_refuses_the_rest() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.create_lead(json!({"email": "seen@keys.example"})).await;
        // admin-role keys, so that only the scopes narrow what they may do
        let (_, read) = create_key(&app, "ADMIN", &["READ_LEADS"]).await;
        let (_, write) = create_key(&app, "ADMIN", &["WRITE_LEADS"]).await;
        let (_, subscribe) = create_key(&app, "ADMIN", &["SUBSCRIBE"]).await;
        let (_, bulk) = create_key(&app, "ADMIN", &["READ_LEADS", "IMPORT_EXPORT"]).await;
        let (_, admin) = create_key(&app, "ADMIN", &["ADMIN"]).await;

        let refused = async |secret: &str, query: &str, variables: Value, scope: &str| {
            let (status, body) = with_key(&app, secret, query, variables).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(
                crate::helpers::first_code(&body),
                "FORBIDDEN",
                "{backend:?} {query}: {body}"
            );
            assert!(
                message(&body).contains(scope),
                "{backend:?} {query}: the message names {scope}: {body}"
            );
        };
        let allowed = async |secret: &str, query: &str, variables: Value| {
            let (status, body) = with_key(&app, secret, query, variables).await;
            assert_eq!(status, 200, "{body}");
            assert!(body.get("errors").is_none(), "{backend:?} {query}: {body}");
            body["data"].clone()
        };
        let email = |n: &str| json!({"email": format!("{n}@keys.example")});

        // READ_LEADS
        let data = allowed(&read, LEADS, json!({})).await;
        assert_eq!(data["leads"]["edges"][0]["node"]["email"], "seen@keys.example");
        refused(&read, CREATE_LEAD, email("r"), "WRITE_LEADS").await;
        refused(&read, "{ latestEventCursor }", json!({}), "SUBSCRIBE").await;
        refused(&read, LIST, json!({}), "ADMIN").await;
        // WRITE_LEADS
        allowed(&write, CREATE_LEAD, email("w")).await;
        refused(&write, LEADS, json!({}), "READ_LEADS").await;
        refused(&write, "{ webhookEndpoints { id } }", json!({}), "ADMIN").await;
        // SUBSCRIBE
        allowed(&subscribe, "{ latestEventCursor }", json!({})).await;
        refused(&subscribe, LEADS, json!({}), "READ_LEADS").await;
        refused(&subscribe, CREATE_LEAD, email("s"), "WRITE_LEADS").await;
        // ADMIN
        allowed(&admin, LIST, json!({})).await;
        allowed(&admin, "{ webhookEndpoints { id } }", json!({})).await;
        refused(&admin, LEADS, json!({}), "READ_LEADS").await;
        let data = allowed(
            &admin,
            CREATE,
            json!({"input": {"name": "x", "role": "VIEWER", "scopes": ["READ_LEADS"]}}),
        )
        .await;
        assert!(
            data["createApiKey"]["apiKey"]["createdBy"]
                .as_str()
                .unwrap()
                .starts_with("apikey:"),
            "{data}"
        );

        // IMPORT_EXPORT: exports (which also read leads) and imports
        let export = async |secret: &str| {
            let res = app
                .client
                .get(app.url("/export/leads.csv"))
                .bearer_auth(secret)
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        };
        let (status, body) = export(&bulk).await;
        assert_eq!(status, 200, "{backend:?}: {body}");
        assert!(body.contains("seen@keys.example"), "{body}");
        let (status, body) = export(&read).await;
        assert_eq!(status, 403, "{backend:?}: {body}");
        assert!(body.contains("IMPORT_EXPORT"), "{body}");
        allowed(&bulk, "{ imports(first: 1) { edges { cursor } } }", json!({})).await;
        refused(
            &read,
            "{ imports(first: 1) { edges { cursor } } }",
            json!({}),
            "IMPORT_EXPORT",
        )
        .await;
    }
}

#[tokio::test]
async fn a_viewer_key_with_the_write_scope_still_cannot_write() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (_, secret) = create_key(&app, "VIEWER", &["READ_LEADS", "WRITE_LEADS"]).await;
        let (_, body) = with_key(&app, &secret, CREATE_LEAD, json!({"email": "no@keys.example"})).await;
        assert_eq!(
            crate::helpers::first_code(&body),
            "FORBIDDEN",
            "{backend:?}: {body}"
        );
        assert!(message(&body).contains("viewer role"), "{body}");
        let (_, body) = with_key(&app, &secret, VIEWER, json!({})).await;
        assert_eq!(body["data"]["viewer"]["canWriteLeads"], false, "{body}");
        // and an admin-scoped key of a member cannot manage anything
        let (_, member) = create_key(&app, "MEMBER", &["ADMIN"]).await;
        let (_, body) = with_key(&app, &member, LIST, json!({})).await;
        assert_eq!(
            crate::helpers::first_code(&body),
            "FORBIDDEN",
            "{backend:?}: {body}"
        );
    }
}

/// Expects a 401 whose message is `reason` and which does not quote the key.
async fn expect_refused(app: &TestApp, secret: &str, reason: &str) {
    let (status, body) = with_key(app, secret, VIEWER, json!({})).await;
    assert_eq!(status, 401, "{:?} {secret:?}: {body}", app.backend);
    assert_eq!(crate::helpers::first_code(&body), "UNAUTHENTICATED", "{body}");
    assert_eq!(message(&body), reason, "{secret:?}: {body}");
    if secret.len() > 8 {
        assert!(
            !body.to_string().contains(&secret[8..]),
            "the key is echoed: {body}"
        );
    }
}

#[tokio::test]
async fn revoked_keys_are_refused_with_the_reason() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (id, secret) = create_key(&app, "MEMBER", &["READ_LEADS"]).await;
        assert_eq!(with_key(&app, &secret, VIEWER, json!({})).await.0, 200);
        let data = app.gql(Role::Admin, REVOKE, json!({"id": id})).await;
        assert!(
            data["revokeApiKey"]["apiKey"]["revokedAt"].is_string(),
            "{backend:?}: {data}"
        );
        expect_refused(&app, &secret, "API key is revoked").await;
        // a revoked key cannot be rotated back to life
        let data = app.gql(Role::Admin, ROTATE, json!({"id": id, "grace": 0})).await;
        assert_eq!(data["rotateApiKey"]["secret"], Value::Null, "{data}");
        assert_eq!(
            data["rotateApiKey"]["userErrors"][0]["field"],
            json!(["id"]),
            "{data}"
        );
        expect_refused(&app, &secret, "API key is revoked").await;
    }
}

#[tokio::test]
async fn expired_keys_are_refused_with_the_reason() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let expires = chrono::Utc::now() + chrono::Duration::hours(1);
        let (_, secret) = create_key_with(
            &app,
            json!({"name": "short-lived", "role": "VIEWER", "scopes": ["READ_LEADS"], "expiresAt": expires.to_rfc3339()}),
        )
        .await;
        assert_eq!(with_key(&app, &secret, VIEWER, json!({})).await.0, 200);
        // the ring judges expiry by its clock: two hours on
        let later = expires + chrono::Duration::hours(1);
        app.services
            .api_keys
            .ring()
            .set_clock(std::sync::Arc::new(move || later));
        expect_refused(&app, &secret, "API key has expired").await;
    }
}

#[tokio::test]
async fn malformed_and_forged_keys_are_refused() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (_, secret) = create_key(&app, "MEMBER", &["READ_LEADS"]).await;
        let body = &secret[8..];
        let forged = leadgate::domain::secret_from_bytes(&[42u8; 32]);
        for bad in [
            "lg_live_".to_owned(),
            "lg_test_".to_owned() + body,
            format!("lg_live_{}", &body[1..]),
            format!("{secret}x"),
            format!("lg_live_{}!", &body[1..]),
            format!("lg_live_{}=", &body[1..]),
            format!("lg_{}", &secret[3..secret.len() - 1]),
            forged,
        ] {
            expect_refused(&app, &bad, "API key is not valid").await;
        }
        // the real one still works
        assert_eq!(with_key(&app, &secret, VIEWER, json!({})).await.0, 200);
    }
}

#[tokio::test]
async fn a_rotated_key_keeps_its_old_secret_for_the_grace_period_only() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (id, first) = create_key(&app, "MEMBER", &["READ_LEADS"]).await;
        let rotate = async |grace: i64| {
            let data = app
                .gql(Role::Admin, ROTATE, json!({"id": id, "grace": grace}))
                .await;
            let payload = &data["rotateApiKey"];
            assert_eq!(payload["userErrors"], json!([]), "{payload}");
            let secret = payload["secret"].as_str().unwrap().to_owned();
            assert_eq!(payload["apiKey"]["prefix"], secret[..12]);
            secret
        };
        let second = rotate(3600).await;
        assert_ne!(first, second);
        for secret in [&first, &second] {
            assert_eq!(
                with_key(&app, secret, VIEWER, json!({})).await.0,
                200,
                "{backend:?}"
            );
        }
        // with no grace the replaced secret stops at once (and the one before it is gone)
        let third = rotate(0).await;
        assert_eq!(
            with_key(&app, &third, VIEWER, json!({})).await.0,
            200,
            "{backend:?}"
        );
        expect_refused(&app, &second, "API key is not valid").await;
        expect_refused(&app, &first, "API key is not valid").await;
        // the default grace is a day
        let data = app
            .gql(
                Role::Admin,
                "mutation($id: ID!) { rotateApiKey(id: $id) { secret } }",
                json!({"id": id}),
            )
            .await;
        assert!(data["rotateApiKey"]["secret"].is_string());
        assert_eq!(
            with_key(&app, &third, VIEWER, json!({})).await.0,
            200,
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn a_revocation_on_one_instance_is_refused_by_another_within_a_second() {
    for backend in backends() {
        let first = spawn_app(backend).await;
        let (id, secret) = create_key(&first, "MEMBER", &["READ_LEADS"]).await;
        let second = spawn_second_app(&first).await;
        assert_eq!(with_key(&second, &secret, VIEWER, json!({})).await.0, 200);
        first.gql(Role::Admin, REVOKE, json!({"id": id})).await;
        // the instance that revoked refuses at once, the other after its next poll (250 ms)
        expect_refused(&first, &secret, "API key is revoked").await;
        poll_until(
            Duration::from_secs(5),
            "the second instance to refuse",
            || async {
                let (status, _) = with_key(&second, &secret, VIEWER, json!({})).await;
                (status == 401).then_some(())
            },
        )
        .await;
        expect_refused(&second, &secret, "API key is revoked").await;
    }
}

#[tokio::test]
async fn malformed_key_inputs_get_a_clear_error_and_change_nothing() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let past = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
        for (input, field, code) in [
            (
                json!({"name": " ", "role": "MEMBER", "scopes": ["READ_LEADS"]}),
                "name",
                "REQUIRED",
            ),
            (
                json!({"name": "x".repeat(101), "role": "MEMBER", "scopes": ["READ_LEADS"]}),
                "name",
                "TOO_LONG",
            ),
            (
                json!({"name": "k", "role": "MEMBER", "scopes": []}),
                "scopes",
                "REQUIRED",
            ),
            (
                json!({"name": "k", "role": "MEMBER", "scopes": ["READ_LEADS"], "expiresAt": past}),
                "expiresAt",
                "INVALID",
            ),
            (
                json!({"name": "k", "role": "MEMBER", "scopes": ["READ_LEADS"], "rateLimit": "600/fortnight"}),
                "rateLimit",
                "INVALID",
            ),
        ] {
            let data = app.gql(Role::Admin, CREATE, json!({ "input": input })).await;
            let payload = &data["createApiKey"];
            assert_eq!(payload["secret"], Value::Null, "{backend:?}: {payload}");
            let error = &payload["userErrors"][0];
            assert_eq!(error["field"], json!(["input", field]), "{backend:?}: {payload}");
            assert_eq!(error["code"], code, "{payload}");
            assert!(!error["message"].as_str().unwrap().is_empty());
        }
        // an unknown scope is not a value of the enum
        let body = app
            .gql_err(
                Role::Admin,
                CREATE,
                json!({"input": {"name": "k", "role": "MEMBER", "scopes": ["EVERYTHING"]}}),
            )
            .await;
        assert!(message(&body).contains("EVERYTHING"), "{backend:?}: {body}");
        // only admins manage keys
        for role in [Role::Member, Role::Viewer, Role::Partner] {
            let body = app
                .gql_err(
                    role,
                    CREATE,
                    json!({"input": {"name": "k", "role": "VIEWER", "scopes": ["READ_LEADS"]}}),
                )
                .await;
            assert_eq!(crate::helpers::first_code(&body), "FORBIDDEN", "{body}");
            let body = app.gql_err(role, LIST, json!({})).await;
            assert_eq!(crate::helpers::first_code(&body), "FORBIDDEN", "{body}");
        }
        // a bad grace period, an id of another kind, and a key of another workspace
        let (id, secret) = create_key(&app, "MEMBER", &["READ_LEADS"]).await;
        let data = app.gql(Role::Admin, ROTATE, json!({"id": id, "grace": -1})).await;
        assert_eq!(
            data["rotateApiKey"]["userErrors"][0]["field"],
            json!(["gracePeriod"]),
            "{data}"
        );
        let lead = app.create_lead(json!({"email": "lead@keys.example"})).await;
        let body = app.gql_err(Role::Admin, REVOKE, json!({"id": lead["id"]})).await;
        assert_eq!(crate::helpers::first_code(&body), "BAD_USER_INPUT", "{body}");
        let (_, body) = app
            .post(
                Some(&app.token_in(&app.other, Role::Admin)),
                json!({"query": REVOKE, "variables": {"id": id}}),
            )
            .await;
        assert_eq!(
            crate::helpers::first_code(&body),
            "NOT_FOUND",
            "{backend:?}: {body}"
        );

        // nothing changed: one key, working, its secret as it was
        let list = app.gql(Role::Admin, LIST, json!({})).await;
        let edges = list["apiKeys"]["edges"].as_array().unwrap();
        assert_eq!(edges.len(), 1, "{backend:?}: {list}");
        assert_eq!(edges[0]["node"]["revokedAt"], Value::Null);
        assert_eq!(edges[0]["node"]["prefix"], secret[..12]);
        assert_eq!(with_key(&app, &secret, VIEWER, json!({})).await.0, 200);
    }
}

#[tokio::test]
async fn secrets_appear_only_in_the_create_and_rotate_payloads_and_never_in_a_log_line() {
    use crate::provider_controls::Serve;
    for backend in backends() {
        let (url, _guard) = crate::helpers::fresh_database(backend).await;
        let settings = leadgate::config::Settings {
            database_url: url.clone(),
            jwt_secret: Some(secrecy::SecretString::from(crate::helpers::SECRET)),
            ..leadgate::config::Settings::default()
        };
        let store = leadgate::app::open_store(&settings).await.unwrap();
        let auth = leadgate::app::authenticator(&settings, &store, false)
            .await
            .unwrap();
        let services = leadgate::app::services(&settings, store.clone()).unwrap();
        let ws = services.workspaces.create("keys", None).await.unwrap();
        let token = auth
            .mint("admin", ws.id, Role::Admin, Duration::from_secs(3600))
            .unwrap();
        store.close().await;
        let env = [
            ("LEADGATE_DATABASE_URL", url.as_str()),
            ("LEADGATE_JWT_SECRET", crate::helpers::SECRET),
            ("LEADGATE_LISTEN", "127.0.0.1:0"),
            ("LEADGATE_LOG", "debug"),
        ];
        let server = Serve::start(&env).await;
        let client = reqwest::Client::new();
        let post = async |bearer: &str, query: &str, variables: Value| -> String {
            client
                .post(format!("{}/graphql", server.base))
                .bearer_auth(bearer)
                .json(&json!({"query": query, "variables": variables}))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        };
        let created: Value = serde_json::from_str(
            &post(
                &token,
                CREATE,
                json!({"input": {"name": "logged?", "role": "MEMBER", "scopes": ["READ_LEADS", "WRITE_LEADS"]}}),
            )
            .await,
        )
        .unwrap();
        let id = created["data"]["createApiKey"]["apiKey"]["id"].clone();
        let first = created["data"]["createApiKey"]["secret"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut bodies = vec![
            post(&first, VIEWER, json!({})).await,
            post(&first, CREATE_LEAD, json!({"email": "log@keys.example"})).await,
            post(&first, LEADS, json!({})).await,
            post(&token, LIST, json!({})).await,
        ];
        let rotated: Value =
            serde_json::from_str(&post(&token, ROTATE, json!({"id": id, "grace": 0})).await).unwrap();
        let second = rotated["data"]["rotateApiKey"]["secret"]
            .as_str()
            .unwrap()
            .to_owned();
        bodies.push(post(&first, VIEWER, json!({})).await);
        bodies.push(post(&second, VIEWER, json!({})).await);
        bodies.push(post(&token, REVOKE, json!({"id": id})).await);
        bodies.push(post(&second, VIEWER, json!({})).await);
        bodies.push(post(&token, LIST, json!({})).await);
        assert!(bodies[0].contains("MEMBER"), "{backend:?}: {}", bodies[0]);
        assert!(bodies.last().unwrap().contains("revokedAt"), "{bodies:?}");

        let logs = server.stop().await;
        assert!(
            logs.contains("DEBUG"),
            "{backend:?}: debug logging was on:\n{logs}"
        );
        for secret in [&first, &second] {
            // what follows the displayed prefix is the part that must never show
            let hidden = &secret[12..];
            for body in &bodies {
                assert!(
                    !body.contains(hidden),
                    "{backend:?}: a response shows a secret: {body}"
                );
            }
            assert!(
                !logs.contains(hidden),
                "{backend:?}: the logs show a secret:\n{}",
                logs.lines()
                    .filter(|l| l.contains(hidden))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

#[tokio::test]
async fn keys_are_created_listed_and_revoked_from_the_command_line() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let env = [("LEADGATE_DATABASE_URL", app.settings.database_url.as_str())];
        let out = run(
            dir.path(),
            &[
                "keys",
                "create",
                "--workspace",
                "acme",
                "--name",
                "nightly export",
                "--role",
                "member",
                "--scope",
                "leads:read",
                "--scope",
                "IMPORT_EXPORT",
                "--rate-limit",
                "10/s",
            ],
            &env,
        )
        .await;
        assert!(out.status.success(), "{backend:?}: {}", stderr(&out));
        let secret = stdout(&out).trim().to_owned();
        assert!(secret.starts_with("lg_live_") && secret.len() == 51, "{secret}");
        assert!(stderr(&out).contains(&secret[..12]), "{}", stderr(&out));
        assert!(!stderr(&out).contains(&secret[12..]));

        // the running app loads it with its next poll
        poll_until(
            Duration::from_secs(5),
            "the app to accept the new key",
            || async { (with_key(&app, &secret, VIEWER, json!({})).await.0 == 200).then_some(()) },
        )
        .await;

        let out = run(
            dir.path(),
            &["keys", "list", "--workspace", &app.workspace.id.to_string()],
            &env,
        )
        .await;
        assert!(out.status.success(), "{backend:?}: {}", stderr(&out));
        let listing = stdout(&out);
        let mut lines = listing.lines();
        assert_eq!(
            lines.next(),
            Some("id\tname\tprefix\trole\tscopes\tlast used\texpires\trevoked")
        );
        let row: Vec<&str> = lines.next().expect("one key").split('\t').collect();
        assert_eq!(
            row[1..5],
            ["nightly export", &secret[..12], "member", "leads:read,bulk"]
        );
        assert_eq!(row[6..8], ["-", "-"]);
        assert!(!listing.contains(&secret[12..]));

        // bad input is refused with the reason, and creates nothing
        for (args, says) in [
            (vec!["--scope", "everything"], "unknown scope `everything`"),
            (vec!["--scope", "subscribe", "--rate-limit", "lots"], "rateLimit"),
            (
                vec!["--scope", "subscribe", "--expires-at", "2001-01-01T00:00:00Z"],
                "expiresAt",
            ),
        ] {
            let mut all = vec![
                "keys",
                "create",
                "--workspace",
                "acme",
                "--name",
                "bad",
                "--role",
                "viewer",
            ];
            all.extend(args);
            let out = run(dir.path(), &all, &env).await;
            assert!(!out.status.success(), "{backend:?}: {all:?}");
            assert!(stderr(&out).contains(says), "{all:?}: {}", stderr(&out));
        }
        let out = run(dir.path(), &["keys", "list", "--workspace", "acme"], &env).await;
        assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));

        let out = run(dir.path(), &["keys", "revoke", row[0]], &env).await;
        assert!(out.status.success(), "{backend:?}: {}", stderr(&out));
        poll_until(
            Duration::from_secs(5),
            "the app to refuse the revoked key",
            || async { (with_key(&app, &secret, VIEWER, json!({})).await.0 == 401).then_some(()) },
        )
        .await;
        expect_refused(&app, &secret, "API key is revoked").await;
        let out = run(dir.path(), &["keys", "list", "--workspace", "acme"], &env).await;
        let row: Vec<String> = stdout(&out)
            .lines()
            .nth(1)
            .unwrap()
            .split('\t')
            .map(str::to_owned)
            .collect();
        assert_ne!(row[7], "-", "{row:?}");
        let out = run(
            dir.path(),
            &["keys", "revoke", "0190d7a0-0000-7000-8000-000000000000"],
            &env,
        )
        .await;
        assert!(!out.status.success());
        assert!(stderr(&out).contains("no API key"), "{}", stderr(&out));
    }
}
