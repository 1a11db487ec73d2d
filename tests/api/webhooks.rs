//! Outbound webhooks: registering endpoints (admins only, secret shown once, bad input
//! refused), and delivery to receivers on 127.0.0.1 through the job queue.

use crate::helpers::{TestApp, backends, spawn_app, spawn_app_with};
use leadgate::domain::Role;
use serde_json::{Value, json};

const CREATE: &str = "mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { \
     endpoint { id url eventTypes enabled secretLast4 description } secret userErrors { field message code } } }";
const UPDATE: &str = "mutation($input: UpdateWebhookEndpointInput!) { updateWebhookEndpoint(input: $input) { \
     endpoint { id url eventTypes enabled disabledReason consecutiveFailures } userErrors { field message code } } }";
const LIST: &str = "{ webhookEndpoints { id url eventTypes enabled secretLast4 } }";

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
