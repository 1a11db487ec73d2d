//! CRM sync against fake CRMs on 127.0.0.1: connections (admins only, credentials never
//! returned, bad input refused), pushes through the queue (coalesced, batched, per-record
//! outcomes, 429 and 5xx, dead jobs replayed, token refresh, idempotent resends), inbound
//! webhooks (signatures, duplicates, order, loop prevention, creations and deletions,
//! malformed bodies) and polling.

use crate::fake_crm::{FakeHubSpot, epoch_ms, sign_v3};
use crate::helpers::{TestApp, backends, poll_until, spawn_app, spawn_app_with};
use leadgate::domain::Role;
use leadgate::service::Actor;
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CREATE: &str = "mutation($input: CreateCrmConnectionInput!) { createCrmConnection(input: $input) { \
     connection { id kind name apiBaseUrl credentialsSet pushOnChange pollInterval onDeletion webhookPath \
     fieldMapping { field property direction transform valueMap { ours theirs } default conflict } } \
     userErrors { field message code } } }";
const UPDATE: &str = "mutation($input: UpdateCrmConnectionInput!) { updateCrmConnection(input: $input) { \
     connection { id credentialsSet pollInterval } userErrors { field message code } } }";
const LINKS: &str = "query($id: ID!) { node(id: $id) { ... on Lead { firstName archivedAt crmLinks { externalId status lastError lastSyncedAt connection { name } } } } }";
const WAIT: Duration = Duration::from_secs(20);

fn hubspot_input(fake: &FakeHubSpot) -> Value {
    json!({
        "kind": "HUBSPOT",
        "name": "Sales HubSpot",
        "apiBaseUrl": fake.url(),
        "credentials": {"accessToken": fake.token, "clientSecret": fake.secret},
    })
}

async fn connect(app: &TestApp, input: Value) -> String {
    let data = app.gql(Role::Admin, CREATE, json!({"input": input})).await;
    let payload = &data["createCrmConnection"];
    assert_eq!(payload["userErrors"], json!([]), "{payload}");
    payload["connection"]["id"].as_str().unwrap().to_owned()
}

async fn links(app: &TestApp, lead: &str) -> Value {
    app.gql(Role::Member, LINKS, json!({"id": lead})).await["node"].clone()
}

/// Waits until the lead's first link has `status`; returns the lead node.
async fn link_status(app: &TestApp, lead: &str, status: &str) -> Value {
    poll_until(WAIT, &format!("a {status} link"), || async {
        let node = links(app, lead).await;
        (node["crmLinks"][0]["status"] == status).then_some(node)
    })
    .await
}

fn raw_id(global: &str) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(global.trim_end_matches('='))
        .unwrap();
    String::from_utf8(text)
        .unwrap()
        .split_once(':')
        .unwrap()
        .1
        .to_owned()
}

fn admin(app: &TestApp) -> Actor {
    Actor {
        subject: "test-admin".into(),
        workspace_id: app.workspace.id,
        role: Role::Admin,
        key: None,
    }
}

/// POSTs a signed HubSpot webhook to the connection; returns status and body.
async fn deliver(
    app: &TestApp,
    fake: &FakeHubSpot,
    connection: &str,
    events: &Value,
    signed_at: i64,
) -> (u16, Value) {
    let url = app.url(&format!("/webhooks/crm/{}", raw_id(connection)));
    let body = events.to_string();
    let mut request = app.client.post(&url).body(body.clone());
    for (k, v) in fake.sign(&url, &body, signed_at) {
        request = request.header(k, v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_admin_connects_a_crm_and_the_credentials_never_come_back() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let fake = FakeHubSpot::start().await;
        let data = app
            .gql(Role::Admin, CREATE, json!({"input": hubspot_input(&fake)}))
            .await;
        let conn = &data["createCrmConnection"]["connection"];
        assert_eq!(conn["kind"], "HUBSPOT", "{backend:?}: {data}");
        assert_eq!(conn["credentialsSet"], json!(["accessToken", "clientSecret"]));
        assert_eq!(conn["pushOnChange"], true);
        assert_eq!(conn["onDeletion"], "ARCHIVE");
        let status = conn["fieldMapping"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["field"] == "STATUS")
            .unwrap();
        assert_eq!(status["property"], "lifecyclestage");
        assert_eq!(status["transform"], "VALUE_MAP");
        let text = data.to_string();
        assert!(
            !text.contains(&fake.token) && !text.contains(&fake.secret),
            "{text}"
        );
        let id = conn["id"].as_str().unwrap();
        assert!(conn["webhookPath"].as_str().unwrap().ends_with(&raw_id(id)));

        // listed as a Relay connection and as a node, to admins of the workspace only
        let list = app
            .gql(
                Role::Admin,
                "{ crmConnections(first: 5) { edges { cursor node { id name } } pageInfo { hasNextPage } } }",
                json!({}),
            )
            .await;
        assert_eq!(list["crmConnections"]["edges"][0]["node"]["id"], id);
        let node = app
            .gql(
                Role::Admin,
                "query($id: ID!) { node(id: $id) { ... on CrmIntegration { name } } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(node["node"]["name"], "Sales HubSpot");
        let member = app
            .gql_err(
                Role::Member,
                "{ crmConnections(first: 5) { edges { node { id } } } }",
                json!({}),
            )
            .await;
        assert_eq!(crate::helpers::first_code(&member), "FORBIDDEN", "{member}");
        let theirs = app
            .post(
                Some(&app.token_in(&app.other, Role::Admin)),
                json!({"query": "{ crmConnections(first: 5) { edges { node { id } } } }"}),
            )
            .await
            .1;
        assert_eq!(
            theirs["data"]["crmConnections"]["edges"],
            json!([]),
            "{backend:?}"
        );

        // the credentials are checked against the CRM, and a bad token is said in words
        let tested = app
            .gql(
                Role::Admin,
                "mutation($id: ID!) { testCrmConnection(id: $id) { ok message } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(tested["testCrmConnection"]["ok"], true, "{tested}");
        let updated = app
            .gql(Role::Admin, UPDATE, json!({"input": {"id": id, "credentials": {"accessToken": "pat-wrong"}, "pollInterval": 300}}))
            .await;
        assert_eq!(
            updated["updateCrmConnection"]["connection"]["credentialsSet"],
            json!(["accessToken", "clientSecret"])
        );
        assert_eq!(updated["updateCrmConnection"]["connection"]["pollInterval"], 300);
        let tested = app
            .gql(
                Role::Admin,
                "mutation($id: ID!) { testCrmConnection(id: $id) { ok message } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(tested["testCrmConnection"]["ok"], false);
        assert!(
            tested["testCrmConnection"]["message"]
                .as_str()
                .unwrap()
                .contains("refused the credentials"),
            "{tested}"
        );
        assert!(!tested.to_string().contains("pat-wrong"));
    }
}

#[tokio::test]
async fn malformed_connections_are_refused_field_by_field_and_nothing_is_stored() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let fake = FakeHubSpot::start().await;
        let cases = [
            (json!({"credentials": {}}), "input.credentials.accessToken"),
            (
                json!({"credentials": {"accessToken": "t", "apiToken": "x"}}),
                "input.credentials.apiToken",
            ),
            (json!({"apiBaseUrl": "ftp://crm.example"}), "input.apiBaseUrl"),
            (
                json!({"apiBaseUrl": "http://169.254.169.254/latest"}),
                "input.apiBaseUrl",
            ),
            (
                json!({"apiBaseUrl": "https://api.hubapi.com?x=1"}),
                "input.apiBaseUrl",
            ),
            (
                json!({"tokenUrl": "https://login.example/token"}),
                "input.tokenUrl",
            ),
            (json!({"name": "  "}), "input.name"),
            (json!({"pollInterval": 5}), "input.pollInterval"),
            (
                json!({"fieldMapping": [
                    {"field": "EMAIL", "property": "email", "direction": "BOTH"},
                    {"field": "FIRST_NAME", "property": "EMAIL", "direction": "PUSH"}
                ]}),
                "input.fieldMapping.1.property",
            ),
            (
                json!({"fieldMapping": [{"field": "EMAIL", "property": "e mail", "direction": "BOTH"}]}),
                "input.fieldMapping.0.property",
            ),
        ];
        for (change, field) in cases {
            let mut input = hubspot_input(&fake);
            for (k, v) in change.as_object().unwrap() {
                input[k] = v.clone();
            }
            let data = app.gql(Role::Admin, CREATE, json!({"input": input})).await;
            let errors = &data["createCrmConnection"]["userErrors"];
            let fields: Vec<String> = errors
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    e["field"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p.as_str().unwrap().to_owned())
                        .collect::<Vec<_>>()
                        .join(".")
                })
                .collect();
            assert!(
                fields.contains(&field.to_owned()),
                "{backend:?} {change}: {errors}"
            );
            assert_eq!(data["createCrmConnection"]["connection"], Value::Null);
        }
        // a value map without pairs is refused before it reaches the service
        let mut input = hubspot_input(&fake);
        input["fieldMapping"] = json!([{"field": "STATUS", "property": "lifecyclestage", "direction": "BOTH", "transform": "VALUE_MAP"}]);
        let body = app.gql_err(Role::Admin, CREATE, json!({"input": input})).await;
        assert!(body.to_string().contains("valueMap"), "{body}");
        let list = app
            .gql(
                Role::Admin,
                "{ crmConnections { edges { node { id } } } }",
                json!({}),
            )
            .await;
        assert_eq!(list["crmConnections"]["edges"], json!([]), "{backend:?}");
    }
}

#[tokio::test]
async fn a_burst_of_edits_is_pushed_once_and_linked() {
    for backend in backends() {
        // a wide window, so the burst below lands in it however slow the machine
        let app = spawn_app_with(backend, |s| s.crm_push_delay_ms = 3_000).await;
        let fake = FakeHubSpot::start().await;
        let conn = connect(&app, hubspot_input(&fake)).await;
        let lead = app
            .create_lead(json!({"email": "ada@example.com", "firstName": "Ada", "status": "QUALIFIED"}))
            .await;
        let id = lead["id"].as_str().unwrap();
        for i in 0..9 {
            app.gql(
                Role::Member,
                "mutation($input: UpdateLeadInput!) { updateLead(input: $input) { userErrors { message } } }",
                json!({"input": {"id": id, "title": format!("Engineer {i}")}}),
            )
            .await;
        }
        let node = link_status(&app, id, "SYNCED").await;
        let contact = fake.contact_by_email("ada@example.com").expect("pushed");
        assert_eq!(node["crmLinks"][0]["externalId"], contact.id, "{backend:?}");
        assert_eq!(node["crmLinks"][0]["connection"]["name"], "Sales HubSpot");
        assert_eq!(fake.upserts().len(), 1, "{backend:?}: ten edits, one send");
        assert_eq!(contact.properties["jobtitle"], "Engineer 8");
        assert_eq!(contact.properties["lifecyclestage"], "salesqualifiedlead");
        // the preview shows the exact body a push sends
        let preview = app
            .gql(Role::Admin, "query($c: ID!, $l: ID!) { previewCrmPush(connectionId: $c, leadId: $l) { method url body } }", json!({"c": conn, "l": id}))
            .await;
        let p = &preview["previewCrmPush"];
        assert_eq!(p["method"], "POST");
        assert_eq!(
            p["url"],
            format!("{}/crm/v3/objects/contacts/batch/upsert", fake.url())
        );
        assert_eq!(p["body"]["inputs"][0]["idProperty"], "email");
        assert_eq!(p["body"]["inputs"][0]["properties"]["jobtitle"], "Engineer 8");
        // a run was recorded
        let runs = app
            .gql(
                Role::Admin,
                "{ crmSyncRuns(first: 5) { nodes { trigger pushed failed skipped } } }",
                json!({}),
            )
            .await;
        assert_eq!(
            runs["crmSyncRuns"]["nodes"][0],
            json!({"trigger": "PUSH", "pushed": 1, "failed": 0, "skipped": 0})
        );
        let metrics = app.metrics().await;
        assert!(
            metrics.contains("leadgate_crm_requests_total{connection="),
            "{metrics}"
        );
    }
}

#[tokio::test]
async fn a_partly_refused_batch_keeps_the_reason_on_the_refused_link_only() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| s.crm_push_delay_ms = 60_000).await;
        let fake = FakeHubSpot::start().await;
        let mut input = hubspot_input(&fake);
        input["pushOnChange"] = json!(false);
        let conn = connect(&app, input).await;
        fake.refuse("bad@example.com");
        let ids = app
            .create_leads(vec![
                json!({"email": "one@example.com"}),
                json!({"email": "bad@example.com"}),
                json!({"email": "two@example.com"}),
            ])
            .await;
        let synced = app
            .gql(
                Role::Member,
                "mutation($input: SyncLeadsInput!) { syncLeads(input: $input) { marked } }",
                json!({"input": {"connectionId": conn, "leadIds": ids}}),
            )
            .await;
        assert_eq!(synced["syncLeads"]["marked"], 3);
        link_status(&app, &ids[0], "SYNCED").await;
        link_status(&app, &ids[2], "SYNCED").await;
        let bad = link_status(&app, &ids[1], "FAILED").await;
        let why = bad["crmLinks"][0]["lastError"].as_str().unwrap();
        assert!(why.contains("VALIDATION_ERROR"), "{backend:?}: {why}");
        assert_eq!(fake.upserts().len(), 1, "the refused record is not retried");
        // a page's links (prefetched for the page) are each lead's own links
        let page = app
            .gql(
                Role::Member,
                "{ leads(first: 10) { nodes { id crmLinks { externalId status lastError connection { name } } } } }",
                json!({}),
            )
            .await;
        let nodes = page["leads"]["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 3);
        for node in nodes {
            let one = app
                .gql(
                    Role::Member,
                    "query($id: ID!) { node(id: $id) { ... on Lead { crmLinks { externalId status lastError connection { name } } } } }",
                    json!({"id": node["id"]}),
                )
                .await;
            assert_eq!(node["crmLinks"], one["node"]["crmLinks"], "{backend:?}");
            assert_eq!(node["crmLinks"][0]["connection"]["name"], "Sales HubSpot");
        }
        // neither named nor filtered: refused
        let body = app
            .gql_err(
                Role::Member,
                "mutation($input: SyncLeadsInput!) { syncLeads(input: $input) { marked } }",
                json!({"input": {"connectionId": conn}}),
            )
            .await;
        assert!(body.to_string().contains("leadIds"), "{body}");
    }
}

#[tokio::test]
async fn a_429_blocks_every_worker_until_retry_after_and_a_5xx_is_retried() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| s.crm_push_delay_ms = 0).await;
        let fake = FakeHubSpot::start().await;
        fake.script(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_json(json!({"status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT"})),
        );
        fake.script(ResponseTemplate::new(503).set_body_string("upstream unavailable"));
        let conn = connect(&app, hubspot_input(&fake)).await;
        let lead = app.create_lead(json!({"email": "ada@example.com"})).await;
        let id = lead["id"].as_str().unwrap();
        // blocked first
        poll_until(WAIT, "the connection blocked", || async {
            let c = app
                .services
                .crm
                .get(
                    &admin(&app),
                    leadgate::domain::CrmConnectionId::from_uuid(raw_id(&conn).parse().unwrap()),
                )
                .await
                .unwrap();
            c.blocked_until.map(|_| ())
        })
        .await;
        link_status(&app, id, "SYNCED").await;
        assert_eq!(
            fake.upserts().len(),
            1,
            "{backend:?}: the scripted answers were not upserts"
        );
        let metrics = app.metrics().await;
        assert!(metrics.contains("outcome=\"rate_limited\""), "{metrics}");
        assert!(metrics.contains("outcome=\"transient\""), "{metrics}");
    }
}

#[tokio::test]
async fn a_refused_token_sends_the_push_to_the_dead_letter_queue_and_a_replay_resends_it() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| s.crm_push_delay_ms = 0).await;
        let fake = FakeHubSpot::start().await;
        let mut input = hubspot_input(&fake);
        input["credentials"]["accessToken"] = json!("pat-revoked");
        let conn = connect(&app, input).await;
        let lead = app.create_lead(json!({"email": "ada@example.com"})).await;
        let id = lead["id"].as_str().unwrap();
        let dead = poll_until(WAIT, "a dead push", || async {
            let data = app
                .gql(Role::Admin, "{ jobQueue { dead(first: 5, kind: \"crm.push\") { edges { node { id errors { error } } } } } }", json!({}))
                .await;
            let edges = data["jobQueue"]["dead"]["edges"].as_array().cloned().unwrap_or_default();
            edges.first().map(|e| e["node"].clone())
        })
        .await;
        let error = dead["errors"][0]["error"].as_str().unwrap();
        assert!(
            error.contains("HubSpot") && error.contains("refused the credentials"),
            "{backend:?}: {error}"
        );
        assert!(!error.contains("pat-revoked"));
        assert_eq!(links(&app, id).await["crmLinks"][0]["status"], "PENDING");
        // the admin fixes the token and replays
        app.gql(
            Role::Admin,
            UPDATE,
            json!({"input": {"id": conn, "credentials": {"accessToken": fake.token}}}),
        )
        .await;
        let replayed = app
            .gql(
                Role::Admin,
                "mutation { replayJobs(kind: \"crm.push\") { count } }",
                json!({}),
            )
            .await;
        assert_eq!(replayed["replayJobs"]["count"], 1);
        link_status(&app, id, "SYNCED").await;
    }
}

#[tokio::test]
async fn a_resend_after_a_lost_outcome_updates_the_same_contact() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| s.crm_push_delay_ms = 0).await;
        let fake = FakeHubSpot::start().await;
        let conn = connect(&app, hubspot_input(&fake)).await;
        let lead = app
            .create_lead(json!({"email": "ada@example.com", "firstName": "Ada"}))
            .await;
        let id = lead["id"].as_str().unwrap();
        let first = link_status(&app, id, "SYNCED").await;
        // the process died after the CRM wrote the batch and before the outcome was stored
        let store = &app.services.store;
        let conn_id = leadgate::domain::CrmConnectionId::from_uuid(raw_id(&conn).parse().unwrap());
        let lead_id = leadgate::domain::LeadId::from_uuid(raw_id(id).parse().unwrap());
        let mut link = store.crm_link(conn_id, lead_id).await.unwrap().unwrap();
        link.external_id = None;
        link.synced_digest = None;
        link.status = leadgate::domain::LinkStatus::Pending;
        store.save_crm_link(&link).await.unwrap();
        app.gql(
            Role::Member,
            "mutation($input: SyncLeadsInput!) { syncLeads(input: $input) { marked } }",
            json!({"input": {"connectionId": conn, "leadIds": [id]}}),
        )
        .await;
        poll_until(WAIT, "the resend", || async {
            (fake.upserts().len() == 2).then_some(())
        })
        .await;
        let again = link_status(&app, id, "SYNCED").await;
        poll_until(WAIT, "the external id back", || async {
            let node = links(&app, id).await;
            (node["crmLinks"][0]["externalId"] == first["crmLinks"][0]["externalId"]).then_some(())
        })
        .await;
        assert_eq!(
            fake.contacts().len(),
            1,
            "{backend:?}: one contact, not two: {again}"
        );
    }
}

#[tokio::test]
async fn a_salesforce_push_renews_its_token_once_on_401() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| s.crm_push_delay_ms = 0).await;
        let sf = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/services/oauth2/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "access_token": "00D!fresh", "instance_url": sf.uri(), "token_type": "Bearer",
                "issued_at": "1764842400000", "signature": "c2ln", "id": "https://login.salesforce.com/id/00D/005"
            })))
            .expect(1)
            .mount(&sf)
            .await;
        Mock::given(method("PATCH"))
            .and(path(
                "/services/data/v60.0/composite/sobjects/Lead/Leadgate_Id__c",
            ))
            .and(header("authorization", "Bearer 00D!fresh"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!([{"id": "00Q5e00000AbCdEAAZ", "success": true, "errors": [], "created": true}]),
            ))
            .mount(&sf)
            .await;
        Mock::given(method("PATCH"))
            .respond_with(ResponseTemplate::new(401).set_body_json(
                json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]),
            ))
            .mount(&sf)
            .await;
        let conn = connect(
            &app,
            json!({
                "kind": "SALESFORCE", "name": "SF", "apiBaseUrl": sf.uri(),
                "tokenUrl": format!("{}/services/oauth2/token", sf.uri()),
                "credentials": {"clientId": "3MVG9", "clientSecret": "sfsecret", "refreshToken": "5Aep", "accessToken": "00D!stale"},
            }),
        )
        .await;
        let lead = app
            .create_lead(json!({"email": "ada@example.com", "lastName": "Lovelace"}))
            .await;
        let id = lead["id"].as_str().unwrap();
        let node = link_status(&app, id, "SYNCED").await;
        assert_eq!(
            node["crmLinks"][0]["externalId"], "00Q5e00000AbCdEAAZ",
            "{backend:?}"
        );
        // the renewed token was kept (sealed): a check needs no second refresh
        Mock::given(method("GET"))
            .and(path("/services/data/v60.0/limits"))
            .and(header("authorization", "Bearer 00D!fresh"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("Sforce-Limit-Info", "api-usage=3/5000")
                    .set_body_json(json!({})),
            )
            .mount(&sf)
            .await;
        let tested = app
            .gql(
                Role::Admin,
                "mutation($id: ID!) { testCrmConnection(id: $id) { ok message } }",
                json!({"id": conn}),
            )
            .await;
        assert_eq!(tested["testCrmConnection"]["ok"], true, "{tested}");
        assert!(
            tested["testCrmConnection"]["message"]
                .as_str()
                .unwrap()
                .contains("3 of 5000"),
            "{tested}"
        );
    }
}

/// A HubSpot connection with one lead pushed: the contact's id.
async fn pushed_contact(app: &TestApp, fake: &FakeHubSpot, email: &str) -> (String, String, String) {
    let mut input = hubspot_input(fake);
    input["pollInterval"] = json!(3600);
    let conn = connect(app, input).await;
    let lead = app.create_lead(json!({"email": email, "firstName": "Ada"})).await;
    let id = lead["id"].as_str().unwrap().to_owned();
    let node = link_status(app, &id, "SYNCED").await;
    (
        conn,
        id,
        node["crmLinks"][0]["externalId"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn hubspot_webhooks_are_verified_deduplicated_and_applied_in_order() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| s.crm_push_delay_ms = 0).await;
        let fake = FakeHubSpot::start().await;
        let (conn, lead, contact) = pushed_contact(&app, &fake, "ada@example.com").await;
        let older = fake.edit(&contact, "firstname", "Augusta", 5001);
        let newer = fake.edit(&contact, "firstname", "Countess", 5002);
        // the newer change arrives first; the older one must not undo it
        let (status, body) = deliver(&app, &fake, &conn, &json!([newer]), epoch_ms()).await;
        assert_eq!(status, 200, "{backend:?}: {body}");
        assert_eq!(body["applied"], 1);
        let (status, _) = deliver(&app, &fake, &conn, &json!([older]), epoch_ms()).await;
        assert_eq!(status, 200);
        assert_eq!(links(&app, &lead).await["firstName"], "Countess", "{backend:?}");
        // a retry of the same event is a duplicate
        let (status, body) = deliver(&app, &fake, &conn, &json!([newer]), epoch_ms()).await;
        assert_eq!((status, body["applied"].clone()), (200, json!(0)));

        // refused before anything is applied: wrong secret, stale, tampered, missing header
        let url = app.url(&format!("/webhooks/crm/{}", raw_id(&conn)));
        let change = fake.edit(&contact, "firstname", "Mallory", 5003);
        let body = json!([change]).to_string();
        let now = epoch_ms();
        let attempts: Vec<(Vec<(String, String)>, String)> = vec![
            (sign_v3("not-the-secret", &url, &body, now), body.clone()),
            (fake.sign(&url, &body, now - 301_000), body.clone()),
            (fake.sign(&url, &body, now), body.replace("Mallory", "Eve")),
            (fake.sign(&format!("{url}?x=1"), &body, now), body.clone()),
            (
                vec![("Content-Type".into(), "application/json".into())],
                body.clone(),
            ),
        ];
        for (headers, sent) in attempts {
            let mut request = app.client.post(&url).body(sent);
            for (k, v) in headers {
                request = request.header(k, v);
            }
            assert_eq!(request.send().await.unwrap().status(), 401, "{backend:?}");
        }
        // signed but malformed: 400
        let (status, body) = deliver(&app, &fake, &conn, &json!({"not": "an array"}), epoch_ms()).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().unwrap().contains("array"));
        let (status, _) = deliver(
            &app,
            &fake,
            &conn,
            &json!([{"eventId": 1, "objectId": contact}]),
            epoch_ms(),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(
            links(&app, &lead).await["firstName"],
            "Countess",
            "{backend:?}: nothing applied"
        );
        let receipts = app
            .gql(
                Role::Admin,
                "query($id: ID!) { node(id: $id) { ... on CrmIntegration { webhookReceipts } } }",
                json!({"id": conn}),
            )
            .await;
        let r = &receipts["node"]["webhookReceipts"];
        assert_eq!(r["bad_signature"], 5, "{r}");
        assert_eq!(r["malformed"], 2, "{r}");
        assert_eq!(r["duplicate"], 1, "{r}");
        // a URL with encoded characters and a query string verifies as HubSpot signs it
        let encoded = format!("{url}?source=hub%3Aspot&list=a%2Cb");
        let change = fake.edit(&contact, "jobtitle", "Analyst", 5004);
        let sent = json!([change]).to_string();
        let mut request = app.client.post(&encoded).body(sent.clone());
        for (k, v) in fake.sign(&encoded, &sent, epoch_ms()) {
            request = request.header(k, v);
        }
        assert_eq!(request.send().await.unwrap().status(), 200, "{backend:?}");
        // four accepted deliveries add up in one run a minute (two if a minute ended between)
        let runs = app
            .gql(
                Role::Admin,
                "{ crmSyncRuns(first: 20) { nodes { trigger pulled skipped failed } } }",
                json!({}),
            )
            .await;
        let webhook: Vec<&Value> = runs["crmSyncRuns"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["trigger"] == "WEBHOOK")
            .collect();
        assert!((1..=2).contains(&webhook.len()), "{backend:?}: {runs}");
        let total: u64 = webhook
            .iter()
            .map(|r| {
                r["pulled"].as_u64().unwrap() + r["skipped"].as_u64().unwrap() + r["failed"].as_u64().unwrap()
            })
            .sum();
        assert_eq!(total, 4, "{backend:?}: {runs}");
    }
}

#[tokio::test]
async fn a_change_applied_from_the_crm_is_not_pushed_back() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| s.crm_push_delay_ms = 0).await;
        let fake = FakeHubSpot::start().await;
        let (conn, lead, contact) = pushed_contact(&app, &fake, "ada@example.com").await;
        let sends = fake.upserts().len();
        let change = fake.edit(&contact, "firstname", "Augusta", 6001);
        let (status, _) = deliver(&app, &fake, &conn, &json!([change]), epoch_ms()).await;
        assert_eq!(status, 200);
        assert_eq!(links(&app, &lead).await["firstName"], "Augusta");
        // the update's own event reaches the push, which finds nothing to send
        poll_until(WAIT, "a push run that skipped the lead", || async {
            let runs = app
                .gql(
                    Role::Admin,
                    "{ crmSyncRuns(first: 10) { nodes { trigger skipped } } }",
                    json!({}),
                )
                .await;
            runs["crmSyncRuns"]["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["trigger"] == "PUSH" && r["skipped"].as_u64() >= Some(1))
                .then_some(())
        })
        .await;
        assert_eq!(
            fake.upserts().len(),
            sends,
            "{backend:?}: nothing went back to HubSpot"
        );
        // an edit made in leadgate still goes out
        app.gql(
            Role::Member,
            "mutation($input: UpdateLeadInput!) { updateLead(input: $input) { userErrors { message } } }",
            json!({"input": {"id": lead, "title": "CTO"}}),
        )
        .await;
        poll_until(WAIT, "the leadgate edit pushed", || async {
            (fake.upserts().len() == sends + 1).then_some(())
        })
        .await;
        assert_eq!(
            fake.contact_by_email("ada@example.com").unwrap().properties["firstname"],
            "Augusta"
        );
    }
}

#[tokio::test]
async fn creations_and_deletions_in_the_crm_reach_leadgate() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| s.crm_push_delay_ms = 0).await;
        let fake = FakeHubSpot::start().await;
        let (conn, lead, contact) = pushed_contact(&app, &fake, "ada@example.com").await;
        let (new_id, created) = fake.create(
            json!({"email": "grace@example.com", "firstname": "Grace", "lifecyclestage": "customer"}),
            7001,
        );
        let (status, body) = deliver(&app, &fake, &conn, &json!([created]), epoch_ms()).await;
        assert_eq!(
            (status, body["applied"].clone()),
            (200, json!(1)),
            "{backend:?}: {body}"
        );
        let found = app
            .gql(Role::Member, "{ leads(first: 5, filter: {search: \"grace\"}) { nodes { id email firstName status crmLinks { externalId status } } } }", json!({}))
            .await;
        let grace = &found["leads"]["nodes"][0];
        assert_eq!(grace["firstName"], "Grace", "{found}");
        assert_eq!(grace["status"], "CUSTOMER");
        assert_eq!(grace["crmLinks"][0]["externalId"], new_id);
        // a deletion archives the lead (the connection's setting)
        let deleted = fake.delete(&contact, 7002);
        let (status, _) = deliver(&app, &fake, &conn, &json!([deleted]), epoch_ms()).await;
        assert_eq!(status, 200);
        let node = links(&app, &lead).await;
        assert!(node["archivedAt"].is_string(), "{backend:?}: {node}");
        assert_eq!(node["crmLinks"][0]["status"], "FAILED");
        assert!(
            node["crmLinks"][0]["lastError"]
                .as_str()
                .unwrap()
                .contains("deleted in HubSpot")
        );
    }
}

#[tokio::test]
async fn polling_picks_up_an_edit_whose_webhook_was_dropped_and_a_deletion() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| s.crm_push_delay_ms = 0).await;
        let fake = FakeHubSpot::start().await;
        let (conn, lead, contact) = pushed_contact(&app, &fake, "ada@example.com").await;
        let other = app.create_lead(json!({"email": "grace@example.com"})).await;
        let other_id = other["id"].as_str().unwrap();
        let node = link_status(&app, other_id, "SYNCED").await;
        let other_contact = node["crmLinks"][0]["externalId"].as_str().unwrap().to_owned();
        // changes whose webhooks never arrive
        fake.edit(&contact, "firstname", "Augusta", 8001);
        fake.edit(&contact, "lifecyclestage", "customer", 8002);
        fake.delete(&other_contact, 8003);
        let id = leadgate::domain::CrmConnectionId::from_uuid(raw_id(&conn).parse().unwrap());
        const POLL: &str = "mutation($id: ID!) { pollCrmConnection(id: $id) { queued } }";
        let refused = app.gql_err(Role::Member, POLL, json!({"id": conn})).await;
        assert!(refused.to_string().contains("admin"), "{refused}");
        let polled = app.gql(Role::Admin, POLL, json!({"id": conn})).await;
        assert_eq!(polled["pollCrmConnection"]["queued"], true, "{polled}");
        poll_until(WAIT, "the polled edit", || async {
            let node = links(&app, &lead).await;
            (node["firstName"] == "Augusta").then_some(())
        })
        .await;
        poll_until(WAIT, "the polled deletion", || async {
            let node = links(&app, other_id).await;
            node["archivedAt"].is_string().then_some(())
        })
        .await;
        let status = app
            .gql(
                Role::Member,
                "query($id: ID!) { node(id: $id) { ... on Lead { status } } }",
                json!({"id": lead}),
            )
            .await;
        assert_eq!(status["node"]["status"], "CUSTOMER", "{backend:?}");
        // the cursor was kept: a second poll starts after what the first one read
        let c = app.services.crm.get(&admin(&app), id).await.unwrap();
        assert!(
            c.poll_cursor
                .as_deref()
                .is_some_and(|p| p.starts_with("c:") && !p.starts_with("c:0:")),
            "{:?}",
            c.poll_cursor
        );
    }
}

#[tokio::test]
async fn webhooks_for_polled_or_unknown_connections_and_pipedrive_without_credentials_are_refused() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let sf = connect(
            &app,
            json!({"kind": "SALESFORCE", "name": "SF", "apiBaseUrl": "https://example.my.salesforce.com",
                   "credentials": {"clientId": "a", "clientSecret": "b", "refreshToken": "c"}}),
        )
        .await;
        let response = app
            .client
            .post(app.url(&format!("/webhooks/crm/{}", raw_id(&sf))))
            .body("[]")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{backend:?}");
        let response = app
            .client
            .post(app.url("/webhooks/crm/not-a-uuid"))
            .body("[]")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
        let pd = connect(
            &app,
            json!({"kind": "PIPEDRIVE", "name": "PD", "apiBaseUrl": "https://acme.pipedrive.com",
                   "credentials": {"apiToken": "t", "webhookUser": "hook", "webhookPassword": "pw"}}),
        )
        .await;
        let url = app.url(&format!("/webhooks/crm/{}", raw_id(&pd)));
        let payload = json!({"meta": {"action": "change", "entity": "person", "entity_id": "7", "timestamp": "2026-12-04T10:00:00Z", "version": "2.0"}, "data": {"id": 7, "first_name": "X"}});
        let bad = app
            .client
            .post(&url)
            .basic_auth("hook", Some("wrong"))
            .json(&payload)
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 401);
        let malformed = app
            .client
            .post(&url)
            .basic_auth("hook", Some("pw"))
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(malformed.status(), 400);
    }
}

#[tokio::test]
async fn a_poll_an_admin_asks_for_is_listed_even_when_nothing_changed() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let fake = FakeHubSpot::start().await;
        let conn = connect(&app, hubspot_input(&fake)).await;
        let polled = app
            .gql(
                Role::Admin,
                "mutation($id: ID!) { pollCrmConnection(id: $id) { queued } }",
                json!({"id": conn}),
            )
            .await;
        assert_eq!(polled["pollCrmConnection"]["queued"], true, "{polled}");
        let run = poll_until(WAIT, "the requested poll's run", || async {
            let data = app
                .gql(
                    Role::Admin,
                    "query($id: ID) { crmSyncRuns(connectionId: $id, first: 5) { nodes { trigger pushed pulled failed skipped finishedAt } } }",
                    json!({"id": conn}),
                )
                .await;
            data["crmSyncRuns"]["nodes"].as_array()?.first().cloned()
        })
        .await;
        assert_eq!(run["trigger"], "POLL", "{backend:?}: {run}");
        assert_eq!(
            (&run["pushed"], &run["pulled"], &run["failed"], &run["skipped"]),
            (&json!(0), &json!(0), &json!(0), &json!(0))
        );
        assert!(run["finishedAt"].is_string(), "{run}");
    }
}
