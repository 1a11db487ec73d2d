//! Subscriptions through a real WebSocket client: lead changes in order on both subprotocols,
//! resuming after a dropped connection with no gap and no duplicate, workspace isolation,
//! filters, malformed cursors, and a change made by another process on the same database;
//! each on every backend and both subprotocols.

use crate::helpers::{Protocol, TestApp, WsClient, backends, spawn_app};
use leadgate::domain::Role;
use serde_json::{Value, json};

const CHANGES: &str = "subscription($after: EventCursor, $filter: LeadFilter) { \
     leadChanged(after: $after, filter: $filter) { cursor type changedFields lead { email status archivedAt } } }";
const UPDATE: &str = "mutation($input: UpdateLeadInput!) { updateLead(input: $input) { lead { version } userErrors { message } } }";

/// Where the workspace's log stands now, as a client would ask before subscribing.
async fn head(app: &TestApp) -> Value {
    app.gql(Role::Viewer, "{ latestEventCursor }", json!({})).await["latestEventCursor"].clone()
}

/// The next result on subscription `id`: its `leadChanged` event.
async fn next_change(client: &mut WsClient, id: &str) -> Value {
    let message = client.recv().await;
    assert_eq!(message["id"], id, "{message}");
    assert_eq!(message["type"], client.result_type(), "{message}");
    assert!(message["payload"].get("errors").is_none(), "{message}");
    message["payload"]["data"]["leadChanged"].clone()
}

async fn set_status(app: &TestApp, id: &Value, status: &str) {
    let data = app
        .gql(
            Role::Member,
            UPDATE,
            json!({"input": {"id": id, "status": status}}),
        )
        .await;
    assert_eq!(data["updateLead"]["userErrors"], json!([]), "{data}");
}

#[tokio::test]
async fn lead_changes_arrive_in_order_on_both_protocols() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        for protocol in [Protocol::TransportWs, Protocol::LegacyWs] {
            let mut client = app.ws_ready(protocol, Role::Partner).await;
            client
                .start("s1", CHANGES, json!({"after": head(&app).await}))
                .await;
            let email = format!("{}@stream.example", protocol.name());
            let lead = app.create_lead(json!({"email": email})).await;
            set_status(&app, &lead["id"], "QUALIFIED").await;
            app.gql(
                Role::Member,
                "mutation($id: ID!) { archiveLead(input: {id: $id}) { lead { id } } }",
                json!({"id": lead["id"]}),
            )
            .await;

            let mut seen = Vec::new();
            for _ in 0..3 {
                seen.push(next_change(&mut client, "s1").await);
            }
            let kinds: Vec<&str> = seen.iter().map(|e| e["type"].as_str().unwrap()).collect();
            assert_eq!(
                kinds,
                ["LEAD_CREATED", "LEAD_UPDATED", "LEAD_ARCHIVED"],
                "{backend:?} {protocol:?}"
            );
            assert_eq!(seen[1]["changedFields"], json!(["status"]));
            assert_eq!(seen[1]["lead"]["status"], "QUALIFIED");
            assert!(seen[2]["lead"]["archivedAt"].is_string());
            assert!(seen.iter().all(|e| e["lead"]["email"] == email.as_str()));
            let cursors: Vec<&str> = seen.iter().map(|e| e["cursor"].as_str().unwrap()).collect();
            assert_eq!(cursors.len(), 3);
            assert!(cursors[0] != cursors[1] && cursors[1] != cursors[2]);
            client.stop("s1").await;
            client.close().await;
        }
    }
}

#[tokio::test]
async fn a_resumed_subscription_gets_what_it_missed_once_and_in_order() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        for protocol in Protocol::ALL {
            // the client comes back on either protocol
            let other = match protocol {
                Protocol::TransportWs => Protocol::LegacyWs,
                Protocol::LegacyWs => Protocol::TransportWs,
            };
            let tag = protocol.name();
            let email = |n: usize| format!("r{n}-{tag}@resume.example");
            let start = head(&app).await;
            let mut client = app.ws_ready(protocol, Role::Partner).await;
            client.start("live", CHANGES, json!({"after": start})).await;
            let mut ids = Vec::new();
            for n in 0..2 {
                ids.push(app.create_lead(json!({"email": email(n)})).await["id"].clone());
            }
            let first = next_change(&mut client, "live").await;
            let second = next_change(&mut client, "live").await;
            assert_eq!(first["lead"]["email"], email(0).as_str());
            assert_eq!(second["lead"]["email"], email(1).as_str());
            client.close().await;

            // while nobody listens
            set_status(&app, &ids[0], "CONTACTED").await;
            for n in 2..4 {
                app.create_lead(json!({"email": email(n)})).await;
            }

            // resume after the last event processed: exactly the three missed, then live ones
            let mut client = app.ws_ready(other, Role::Partner).await;
            client
                .start("again", CHANGES, json!({"after": second["cursor"]}))
                .await;
            let mut missed = Vec::new();
            for _ in 0..3 {
                missed.push(next_change(&mut client, "again").await);
            }
            let described: Vec<(Value, Value)> = missed
                .iter()
                .map(|e| (e["type"].clone(), e["lead"]["email"].clone()))
                .collect();
            assert_eq!(
                described,
                vec![
                    (json!("LEAD_UPDATED"), json!(email(0))),
                    (json!("LEAD_CREATED"), json!(email(2))),
                    (json!("LEAD_CREATED"), json!(email(3))),
                ],
                "{backend:?} {protocol:?} then {other:?}"
            );
            set_status(&app, &ids[1], "CUSTOMER").await;
            let live = next_change(&mut client, "again").await;
            assert_eq!(
                (live["type"].as_str(), live["lead"]["email"].as_str()),
                (Some("LEAD_UPDATED"), Some(email(1).as_str()))
            );
            client.close().await;

            // resuming from the very first cursor replays everything after it, still once each
            let mut client = app.ws_ready(protocol, Role::Partner).await;
            client
                .start("all", CHANGES, json!({"after": first["cursor"]}))
                .await;
            let mut replay = Vec::new();
            for _ in 0..5 {
                replay.push(next_change(&mut client, "all").await["cursor"].clone());
            }
            let mut unique = replay.clone();
            unique.dedup();
            assert_eq!(unique.len(), 5, "{backend:?} {protocol:?}: {replay:?}");
            assert_eq!(replay[0], second["cursor"]);
            assert_eq!(replay[4], live["cursor"]);
            client.close().await;
        }
    }
}

#[tokio::test]
async fn subscribers_see_only_their_workspace_and_their_filter() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        for protocol in Protocol::ALL {
            let mine = format!("mine-{}@acme.example", protocol.name());
            let mut client = app.ws_ready(protocol, Role::Viewer).await;
            let after = head(&app).await;
            client.start("all", CHANGES, json!({"after": after})).await;
            client
                .start(
                    "hot",
                    CHANGES,
                    json!({"after": after, "filter": {"status": ["QUALIFIED"]}}),
                )
                .await;

            // the other tenant's change is not seen
            let theirs = app
                .post(
                    Some(&app.token_in(&app.other, Role::Member)),
                    json!({"query": "mutation($e: String!) { createLead(input: {email: $e}) { lead { id } } }",
                           "variables": {"e": format!("x-{}@other.example", protocol.name())}}),
                )
                .await;
            assert_eq!(theirs.0, 200, "{}", theirs.1);
            let lead = app.create_lead(json!({"email": mine})).await;
            set_status(&app, &lead["id"], "QUALIFIED").await;

            let mut by_id: Vec<(String, String)> = Vec::new();
            for _ in 0..3 {
                let message = client.recv().await;
                assert_eq!(message["type"], client.result_type(), "{message}");
                let event = &message["payload"]["data"]["leadChanged"];
                assert_eq!(
                    event["lead"]["email"],
                    mine.as_str(),
                    "{backend:?} {protocol:?}: {message}"
                );
                by_id.push((
                    message["id"].as_str().unwrap().into(),
                    event["type"].as_str().unwrap().into(),
                ));
            }
            by_id.sort();
            assert_eq!(
                by_id,
                vec![
                    ("all".into(), "LEAD_CREATED".into()),
                    ("all".into(), "LEAD_UPDATED".into()),
                    ("hot".into(), "LEAD_UPDATED".into()),
                ],
                "{backend:?} {protocol:?}"
            );
            client.close().await;
        }
    }
}

#[tokio::test]
async fn the_event_stream_filters_by_type() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        for protocol in Protocol::ALL {
            let mut client = app.ws_ready(protocol, Role::Partner).await;
            client
                .start(
                    "e",
                    "subscription($after: EventCursor) { events(after: $after, types: [LEAD_UPDATED]) { cursor type leadId payload } }",
                    json!({"after": head(&app).await}),
                )
                .await;
            let lead = app
                .create_lead(json!({"email": format!("typed-{}@acme.example", protocol.name())}))
                .await;
            set_status(&app, &lead["id"], "CONTACTED").await;
            let message = client.recv().await;
            assert_eq!(message["type"], client.result_type(), "{message}");
            let event = &message["payload"]["data"]["events"];
            assert_eq!(
                event["type"], "LEAD_UPDATED",
                "{backend:?} {protocol:?}: {message}"
            );
            assert_eq!(event["leadId"], lead["id"]);
            assert_eq!(event["payload"]["changedFields"], json!(["status"]));
            client.close().await;
        }
    }
}

/// The first message on `id`: a result (`next`/`data`) carrying errors, then `complete`;
/// returns the first error.
async fn failed_result(client: &mut WsClient, id: &str) -> Value {
    let message = client.recv().await;
    assert_eq!(
        (message["id"].as_str(), message["type"].as_str()),
        (Some(id), Some(client.result_type())),
        "{message}"
    );
    let error = message["payload"]["errors"][0].clone();
    assert!(error.is_object(), "{message}");
    assert_eq!(client.recv().await, json!({"id": id, "type": "complete"}));
    error
}

#[tokio::test]
async fn bad_cursors_are_refused_per_protocol() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        for protocol in Protocol::ALL {
            // not a cursor at all: the operation fails with the reason and completes
            let mut client = app.ws_ready(protocol, Role::Partner).await;
            client
                .start("bad", CHANGES, json!({"after": "not-a-cursor"}))
                .await;
            let error = failed_result(&mut client, "bad").await;
            assert!(
                error["message"]
                    .as_str()
                    .unwrap()
                    .contains("malformed event cursor"),
                "{backend:?} {protocol:?}: {error}"
            );

            // a well-formed cursor beyond the log: the operation fails and completes
            let beyond = json!("ZXZlbnQ6OTk5OTk5"); // event:999999
            client.start("ahead", CHANGES, json!({"after": beyond})).await;
            let error = failed_result(&mut client, "ahead").await;
            assert_eq!(
                error["extensions"]["code"], "BAD_USER_INPUT",
                "{backend:?} {protocol:?}: {error}"
            );

            // the connection is still usable
            let data = client.execute("q", "{ latestEventCursor }", json!({})).await;
            assert!(
                data["data"]["latestEventCursor"].is_string(),
                "{backend:?} {protocol:?}: {data}"
            );
            client.close().await;
        }
    }
}

#[tokio::test]
async fn a_change_made_by_another_process_reaches_a_subscriber() {
    // PostgreSQL relays it by NOTIFY, SQLite by the bus's poll of the shared file
    for backend in backends() {
        let app = spawn_app(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let other = crate::cli::start(
            dir.path(),
            &[
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                &app.settings.database_url,
            ],
            &[
                ("LEADGATE_MASTER_KEY", crate::helpers::MASTER_KEY),
                ("LEADGATE_JWT_SECRET", crate::helpers::SECRET),
            ],
            false,
        )
        .await;
        for protocol in Protocol::ALL {
            let email = format!("remote-{}@process.example", protocol.name());
            let mut client = app.ws_ready(protocol, Role::Partner).await;
            client
                .start("x", CHANGES, json!({"after": head(&app).await}))
                .await;

            let response = reqwest::Client::new()
                .post(format!("{}/graphql", other.base))
                .bearer_auth(app.token(Role::Member))
                .json(&json!({"query": "mutation($e: String!) { createLead(input: {email: $e}) { lead { id } } }",
                              "variables": {"e": email}}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
            let event = next_change(&mut client, "x").await;
            assert_eq!(event["lead"]["email"], email.as_str(), "{backend:?} {protocol:?}");
            client.close().await;
        }
    }
}

#[tokio::test]
async fn a_cursor_older_than_the_retained_log_is_refused_not_skipped() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let start = head(&app).await;
        for n in 0..3 {
            app.create_lead(json!({"email": format!("old{n}@retention.example")}))
                .await;
        }
        // retention removes everything written so far
        let pruned = app
            .services
            .store
            .prune_events(leadgate::domain::now() + chrono::TimeDelta::seconds(1))
            .await
            .unwrap();
        assert!(pruned >= 3, "{backend:?}: {pruned}");
        for protocol in Protocol::ALL {
            let mut client = app.ws_ready(protocol, Role::Partner).await;
            client.start("old", CHANGES, json!({"after": start})).await;
            let error = failed_result(&mut client, "old").await;
            assert_eq!(
                error["extensions"]["code"], "BAD_USER_INPUT",
                "{backend:?} {protocol:?}: {error}"
            );
            assert!(
                error["message"].as_str().unwrap().contains("no longer kept"),
                "{error}"
            );

            // from the current head it works, and new events still arrive
            client
                .start("new", CHANGES, json!({"after": head(&app).await}))
                .await;
            let email = format!("fresh-{}@retention.example", protocol.name());
            app.create_lead(json!({"email": email})).await;
            assert_eq!(
                next_change(&mut client, "new").await["lead"]["email"],
                email.as_str(),
                "{backend:?} {protocol:?}"
            );
            client.close().await;
        }
    }
}
