//! GraphQL over WebSocket at `/graphql/ws` through a real client. Every test runs on each
//! backend and on both subprotocols, `graphql-transport-ws` and the legacy `graphql-ws`
//! (subscriptions-transport-ws), through the protocol adapter in `helpers` (`WsClient`), and
//! asserts what each protocol document prescribes: negotiation, authentication, every close
//! code (4400, 4401, 4403, 4408, 4409, 4429, and 1008 for a token over its connection limit)
//! and, on `graphql-ws`, the `connection_error`/`error` answers that replace most of them;
//! ping/pong and `ka`; queries and mutations through `subscribe`/`start`; validation and query
//! limits; malformed input.

use crate::helpers::{
    Backend, Protocol, TestApp, WsClient, WsFrame, backends, poll_until, spawn_app, spawn_app_with,
};
use leadgate::domain::Role;
use serde_json::{Value, json};
use std::time::Duration;

const VIEWER: &str = "{ viewer { subject role workspace { slug } } }";
const CREATE: &str = "mutation($input: CreateLeadInput!) { createLead(input: $input) { lead { id email } userErrors { message } } }";
const CHANGES: &str =
    "subscription($after: EventCursor) { leadChanged(after: $after) { type lead { email } } }";

/// Each backend with each subprotocol.
fn matrix() -> Vec<(Backend, Protocol)> {
    backends()
        .into_iter()
        .flat_map(|b| Protocol::ALL.into_iter().map(move |p| (b, p)))
        .collect()
}

/// The connection still works: a query runs on it.
async fn still_usable(ws: &mut WsClient, id: &str) {
    let viewer = ws.execute(id, VIEWER, json!({})).await;
    assert!(viewer["data"]["viewer"]["role"].is_string(), "{viewer}");
}

#[tokio::test]
async fn queries_and_mutations_run_through_both_subprotocols() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        for protocol in Protocol::ALL {
            let mut ws = app.ws_ready(protocol, Role::Member).await;
            let viewer = ws.execute("v", VIEWER, json!({})).await;
            assert_eq!(
                viewer,
                json!({"data": {"viewer": {"subject": "tester", "role": "MEMBER", "workspace": {"slug": "acme"}}}}),
                "{backend:?} {protocol:?}"
            );
            let email = format!("ws-{}@example.com", protocol.name());
            let created = ws.execute("m", CREATE, json!({"input": {"email": email}})).await;
            let id = created["data"]["createLead"]["lead"]["id"].clone();
            assert!(id.is_string(), "{backend:?} {protocol:?}: {created}");
            let read = app
                .gql(
                    Role::Viewer,
                    "query($id: ID!) { lead(id: $id) { email } }",
                    json!({"id": id}),
                )
                .await;
            assert_eq!(read["lead"]["email"], email.as_str(), "{backend:?} {protocol:?}");
        }
    }
}

#[tokio::test]
async fn an_operation_sees_only_the_tokens_workspace() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let lead = app.create_lead(json!({"email": "mine@acme.io"})).await;
        for protocol in Protocol::ALL {
            let mut ws = app.ws(protocol).await;
            ws.init(&app.token_in(&app.other, Role::Admin)).await;
            let payload = ws
                .execute(
                    "1",
                    "query($id: ID!) { lead(id: $id) { id } viewer { workspace { slug } } }",
                    json!({"id": lead["id"]}),
                )
                .await;
            assert_eq!(payload["data"]["lead"], json!(null), "{backend:?} {protocol:?}");
            assert_eq!(payload["data"]["viewer"]["workspace"]["slug"], "globex");
        }
    }
}

#[tokio::test]
async fn the_token_may_come_from_the_payload_or_the_upgrade_header() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let token = app.token(Role::Viewer);
        for protocol in Protocol::ALL {
            for payload in [
                json!({"authorization": format!("Bearer {token}")}),
                json!({"token": token}),
            ] {
                let mut ws = app.ws(protocol).await;
                ws.init_with(payload).await;
                let viewer = ws.execute("1", VIEWER, json!({})).await;
                assert_eq!(
                    viewer["data"]["viewer"]["role"], "VIEWER",
                    "{backend:?} {protocol:?}"
                );
            }
            let mut ws = app
                .ws_with(Some(protocol.name()), Some(&token))
                .await
                .expect("handshake");
            ws.init_with(json!({})).await;
            let viewer = ws.execute("1", VIEWER, json!({})).await;
            assert_eq!(
                viewer["data"]["viewer"]["role"], "VIEWER",
                "{backend:?} {protocol:?}"
            );
        }
    }
}

/// A token for the test workspace signed with another secret.
fn foreign_token(app: &TestApp) -> String {
    leadgate::auth::Authenticator::new(&leadgate::auth::AuthConfig {
        hs256_secret: Some(
            "another-secret-that-is-long-enough-for-hs256-xyz"
                .to_owned()
                .into(),
        ),
        public_keys: Vec::new(),
        issuer: app.settings.jwt_issuer.clone(),
        audience: app.settings.jwt_audience.clone(),
        leeway_secs: 30,
    })
    .expect("authenticator")
    .mint("intruder", app.workspace.id, Role::Admin, Duration::from_secs(60))
    .expect("mint")
}

#[tokio::test]
async fn a_wrong_or_missing_token_closes_4403() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let foreign = foreign_token(&app);
        for protocol in Protocol::ALL {
            for payload in [
                json!({"Authorization": format!("Bearer {foreign}")}),
                json!({"token": "not-a-jwt"}),
                json!({}),
            ] {
                let mut ws = app.ws(protocol).await;
                ws.send(json!({"type": "connection_init", "payload": payload}))
                    .await;
                // graphql-ws says why in `connection_error` first; both then close 4403
                let (_, reason) = ws.expect_rejected(4403).await;
                assert_eq!(reason, "Forbidden", "{backend:?} {protocol:?} {payload}");
            }
            let mut header = app
                .ws_with(Some(protocol.name()), Some("not-a-jwt"))
                .await
                .expect("handshake");
            header.send(json!({"type": "connection_init"})).await;
            let (_, reason) = header.expect_rejected(4403).await;
            assert_eq!(reason, "Forbidden", "{backend:?} {protocol:?}");
        }
    }
}

#[tokio::test]
async fn subprotocols_are_negotiated_and_unknown_ones_refused() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let ws = app
            .ws_with(Some("graphql-ws, graphql-transport-ws"), None)
            .await
            .expect("handshake");
        assert_eq!(
            ws.protocol,
            Protocol::TransportWs,
            "graphql-transport-ws is preferred"
        );
        for protocol in Protocol::ALL {
            let ws = app.ws_with(Some(protocol.name()), None).await.expect("handshake");
            assert_eq!(ws.protocol, protocol, "{backend:?}");
        }
        for offered in [Some("soap"), None] {
            match app.ws_with(offered, None).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    assert_eq!(response.status().as_u16(), 400, "{backend:?}");
                    let body =
                        String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
                    assert!(body.contains("graphql-transport-ws"), "{body}");
                }
                Err(other) => panic!("expected a 400, got {other}"),
                Ok(_) => panic!("{offered:?} must be refused"),
            }
        }
    }
}

#[tokio::test]
async fn an_operation_before_connection_init_is_4401_or_an_error() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        for protocol in Protocol::ALL {
            let mut ws = app.ws(protocol).await;
            ws.start("1", VIEWER, json!({})).await;
            match (protocol, ws.frame().await) {
                (Protocol::TransportWs, frame) => {
                    assert_eq!(frame, WsFrame::Closed(4401, "Unauthorized".into()), "{backend:?}");
                }
                (Protocol::LegacyWs, WsFrame::Message(error)) => {
                    assert_eq!(
                        error,
                        json!({"id": "1", "type": "error", "payload": {"message": "send connection_init before start"}}),
                        "{backend:?}"
                    );
                    // the connection stays open and can still be initialised
                    ws.init(&app.token(Role::Viewer)).await;
                    still_usable(&mut ws, "after").await;
                }
                (Protocol::LegacyWs, frame) => panic!("{backend:?}: graphql-ws must not close: {frame:?}"),
            }
        }
    }
}

#[tokio::test]
async fn a_second_connection_init_is_4429_or_a_connection_error() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        for protocol in Protocol::ALL {
            let mut ws = app.ws_ready(protocol, Role::Viewer).await;
            ws.send(json!({"type": "connection_init", "payload": {"token": app.token(Role::Viewer)}}))
                .await;
            match (protocol, ws.frame().await) {
                (Protocol::TransportWs, frame) => assert_eq!(
                    frame,
                    WsFrame::Closed(4429, "Too many initialisation requests".into()),
                    "{backend:?}"
                ),
                (Protocol::LegacyWs, WsFrame::Message(error)) => {
                    assert_eq!(
                        error,
                        json!({"type": "connection_error", "payload": {"message": "the connection is already initialised"}}),
                        "{backend:?}"
                    );
                    still_usable(&mut ws, "after").await;
                }
                (Protocol::LegacyWs, frame) => panic!("{backend:?}: graphql-ws must not close: {frame:?}"),
            }
        }
    }
}

#[tokio::test]
async fn no_connection_init_in_time_closes_4408() {
    for backend in backends() {
        // only this app has a short initialisation window, so no other test races it
        let app = spawn_app_with(backend, |s| s.ws_init_timeout_ms = 100).await;
        for protocol in Protocol::ALL {
            let mut ws = app.ws(protocol).await;
            assert_eq!(
                ws.frame().await,
                WsFrame::Closed(4408, "Connection initialisation timeout".into()),
                "{backend:?} {protocol:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_duplicate_active_id_closes_4409_or_replaces_the_operation() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        for protocol in Protocol::ALL {
            let mut ws = app.ws_ready(protocol, Role::Viewer).await;
            let head =
                app.gql(Role::Viewer, "{ latestEventCursor }", json!({})).await["latestEventCursor"].clone();
            ws.start("dup", CHANGES, json!({"after": head})).await;
            ws.start("dup", CHANGES, json!({"after": head})).await;
            match protocol {
                Protocol::TransportWs => assert_eq!(
                    ws.frame().await,
                    WsFrame::Closed(4409, "Subscriber for dup already exists".into()),
                    "{backend:?}"
                ),
                Protocol::LegacyWs => {
                    // subscriptions-transport-ws replaces the operation: once the second
                    // `start` is handled, one subscription runs under the id, not two
                    ws.sync("sync").await;
                    let email = format!("dup-{}@example.com", protocol.name());
                    app.create_lead(json!({"email": email})).await;
                    // the event's first delivery, before `stop` (which may otherwise overtake
                    // it: the mutation's answer does not wait for subscribers)
                    let first = ws.recv().await;
                    assert_eq!(
                        (&first["id"], &first["type"]),
                        (&json!("dup"), &json!("data")),
                        "{backend:?}: {first}"
                    );
                    ws.stop("dup").await;
                    let mut results = vec![first["payload"]["data"]["leadChanged"]["lead"]["email"].clone()];
                    loop {
                        let message = ws.recv().await;
                        assert_eq!(message["id"], "dup", "{backend:?}: {message}");
                        if message["type"] == "complete" {
                            break;
                        }
                        assert_eq!(message["type"], "data", "{backend:?}: {message}");
                        results.push(message["payload"]["data"]["leadChanged"]["lead"]["email"].clone());
                    }
                    assert_eq!(results, vec![json!(email)], "{backend:?}: one result per event");
                }
            }
        }
    }
}

/// A malformed or unknown message, as each protocol spells it, and what the server answers:
/// graphql-transport-ws closes 4400 with the reason; graphql-ws answers `connection_error`
/// for what is not JSON and `error` (with the id when there is one) for the rest, and stays
/// open.
#[tokio::test]
async fn invalid_messages_close_4400_or_are_answered_with_errors() {
    for (backend, protocol) in matrix() {
        let app = spawn_app(backend).await;
        let cases: Vec<(String, Value)> = match protocol {
            Protocol::TransportWs => vec![
                (
                    "{\"type\":".into(),
                    json!([4400, "Invalid message: not a JSON object"]),
                ),
                (
                    r#"{"type":"start","id":"1"}"#.into(),
                    json!([4400, "Invalid message: unknown type `start`"]),
                ),
                (
                    r#"{"type":"subscribe","id":"1","payload":{"query":7}}"#.into(),
                    json!([4400, "Invalid message: `payload.query` must be a string"]),
                ),
                (
                    r#"{"type":"complete"}"#.into(),
                    json!([4400, "Invalid message: `complete` needs a non-empty string `id`"]),
                ),
                (
                    r#"{"type":"ping","payload":[1]}"#.into(),
                    json!([4400, "Invalid message: `ping` payload must be an object"]),
                ),
                (
                    r#"{"type":"connection_init","payload":"token"}"#.into(),
                    json!([
                        4400,
                        "Invalid message: `connection_init` payload must be an object"
                    ]),
                ),
            ],
            Protocol::LegacyWs => vec![
                (
                    "{\"type\":".into(),
                    json!({"type": "connection_error", "payload": {"message": "Invalid message: not a JSON object"}}),
                ),
                (
                    r#"{"type":"subscribe","id":"1"}"#.into(),
                    json!({"id": "1", "type": "error", "payload": {"message": "Invalid message: unknown type `subscribe`"}}),
                ),
                (
                    r#"{"type":"start","id":"1","payload":{"query":7}}"#.into(),
                    json!({"id": "1", "type": "error", "payload": {"message": "Invalid message: `payload.query` must be a string"}}),
                ),
                (
                    r#"{"type":"stop"}"#.into(),
                    json!({"type": "error", "payload": {"message": "Invalid message: `stop` needs a non-empty string `id`"}}),
                ),
                (
                    r#"{"type":"ping","payload":{}}"#.into(),
                    json!({"type": "error", "payload": {"message": "Invalid message: unknown type `ping`"}}),
                ),
            ],
        };
        for (text, expected) in cases {
            let mut ws = app.ws_ready(protocol, Role::Viewer).await;
            ws.send_raw(&text).await;
            let got = match ws.frame().await {
                WsFrame::Closed(code, reason) => json!([code, reason]),
                WsFrame::Message(message) => message,
            };
            assert_eq!(got, expected, "{backend:?} {protocol:?}: {text}");
            if protocol == Protocol::LegacyWs {
                still_usable(&mut ws, "after").await;
            }
        }
    }
}

#[tokio::test]
async fn ping_pong_and_stopping_an_unknown_id() {
    for (backend, protocol) in matrix() {
        let app = spawn_app(backend).await;
        let mut ws = app.ws(protocol).await;
        match protocol {
            Protocol::TransportWs => {
                // a ping is answered before and after initialisation, with its payload
                ws.send(json!({"type": "ping", "payload": {"t": 1}})).await;
                assert_eq!(ws.recv().await, json!({"type": "pong", "payload": {"t": 1}}));
                ws.init(&app.token(Role::Viewer)).await;
                ws.send(json!({"type": "pong"})).await;
            }
            Protocol::LegacyWs => {
                ws.init(&app.token(Role::Viewer)).await;
                // graphql-ws has no ping: it is an unknown message, answered with an error
                ws.send(json!({"type": "ping"})).await;
                assert_eq!(
                    ws.recv().await,
                    json!({"type": "error", "payload": {"message": "Invalid message: unknown type `ping`"}}),
                    "{backend:?}"
                );
            }
        }
        // stopping an id that never ran is quiet: the next answer is the round trip's own
        ws.stop("never-started").await;
        ws.sync("quiet").await;
        still_usable(&mut ws, "after").await;
    }
}

#[tokio::test]
async fn only_graphql_ws_sends_keep_alives_and_connection_terminate_closes_1000() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| s.ws_keepalive_ms = 50).await;
        let mut transport = app.ws_ready(Protocol::TransportWs, Role::Viewer).await;
        let mut legacy = app.ws_ready(Protocol::LegacyWs, Role::Viewer).await;
        // two more `ka` on the legacy connection: at least one interval has passed since both
        // connections were acknowledged
        for _ in 0..2 {
            assert_eq!(legacy.recv_any().await, json!({"type": "ka"}), "{backend:?}");
        }
        // the transport connection sent nothing meanwhile: its next message is the pong
        transport.send(json!({"type": "ping"})).await;
        assert_eq!(transport.recv_any().await, json!({"type": "pong"}), "{backend:?}");

        legacy.send(json!({"type": "connection_terminate"})).await;
        assert_eq!(legacy.closed().await.0, 1000, "{backend:?}");
    }
}

#[tokio::test]
async fn failures_before_execution_are_error_messages() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| {
            s.max_aliases = 1;
            s.max_complexity = 50;
        })
        .await;
        for protocol in Protocol::ALL {
            let mut ws = app.ws_ready(protocol, Role::Viewer).await;
            for (query, code) in [
                ("{ nope }", "GRAPHQL_VALIDATION_FAILED"),
                ("{ viewer { ", "GRAPHQL_PARSE_FAILED"),
                (
                    "{ a: viewer { role } b: viewer { role } }",
                    "GRAPHQL_VALIDATION_FAILED",
                ),
            ] {
                ws.start("q", query, json!({})).await;
                let error = ws.recv().await;
                assert_eq!(error["id"], "q", "{error}");
                let errors = ws.errors_of(&error);
                assert_eq!(
                    errors[0]["extensions"]["code"], code,
                    "{backend:?} {protocol:?} {query}: {error}"
                );
            }
            ws.start(
                "c",
                "{ leads(first: 100) { edges { node { id email } } } }",
                json!({}),
            )
            .await;
            let error = ws.recv().await;
            assert_eq!(error["id"], "c", "complexity limit: {error}");
            assert!(!ws.errors_of(&error).is_empty(), "{error}");
            // no `complete` follows an `error`, and the connection goes on
            still_usable(&mut ws, "ok").await;
        }
    }
}

#[tokio::test]
async fn connections_per_token_are_limited_with_1008_and_released() {
    for (backend, protocol) in matrix() {
        let app = spawn_app_with(backend, |s| s.ws_max_connections_per_token = 1).await;
        let token = app.token(Role::Viewer);
        let mut first = app.ws(protocol).await;
        first.init(&token).await;

        for over in Protocol::ALL {
            let mut second = app.ws(over).await;
            second
                .send(json!({"type": "connection_init", "payload": {"token": token}}))
                .await;
            let (said, reason) = second.expect_rejected(1008).await;
            assert_eq!(
                reason, "Too many connections for this token",
                "{backend:?} {protocol:?} then {over:?}"
            );
            if let Some(said) = said {
                assert_eq!(said["message"], "Too many connections for this token");
            }
        }

        // another token is not affected
        let mut other = app.ws(protocol).await;
        other.init(&app.token(Role::Admin)).await;

        // the slot is released once the first connection is gone; the server notices the
        // close on its own time, so the new connection is retried until it is accepted
        first.close().await;
        poll_until(Duration::from_secs(10), "the released slot", || async {
            let mut again = app.ws(protocol).await;
            again
                .send(json!({"type": "connection_init", "payload": {"token": token}}))
                .await;
            match again.frame().await {
                WsFrame::Message(ack) if ack["type"] == "connection_ack" => Some(()),
                _ => None,
            }
        })
        .await;
    }
}
