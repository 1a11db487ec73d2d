//! GraphQL over WebSocket at `/graphql/ws` through a real client, on both subprotocols:
//! negotiation, authentication, every close code, ping/pong and `ka`, queries and mutations
//! through `subscribe`/`start`, validation and query limits, malformed input, and the limit on
//! connections per token.

use crate::helpers::{Protocol, backends, poll_until, spawn_app, spawn_app_with};
use leadgate::domain::Role;
use serde_json::json;
use std::time::Duration;

const VIEWER: &str = "{ viewer { subject role workspace { slug } } }";
const CREATE: &str = "mutation($input: CreateLeadInput!) { createLead(input: $input) { lead { id email } userErrors { message } } }";

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
                "{protocol:?}"
            );
            let email = format!("ws-{}@example.com", protocol.name());
            let created = ws.execute("m", CREATE, json!({"input": {"email": email}})).await;
            let id = created["data"]["createLead"]["lead"]["id"].clone();
            assert!(id.is_string(), "{created}");
            let read = app
                .gql(
                    Role::Viewer,
                    "query($id: ID!) { lead(id: $id) { email } }",
                    json!({"id": id}),
                )
                .await;
            assert_eq!(read["lead"]["email"], email.as_str());
        }
    }
}

#[tokio::test]
async fn an_operation_sees_only_the_tokens_workspace() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let lead = app.create_lead(json!({"email": "mine@acme.io"})).await;
        let mut ws = app.ws(Protocol::TransportWs).await;
        ws.init(&app.token_in(&app.other, Role::Admin)).await;
        let payload = ws
            .execute(
                "1",
                "query($id: ID!) { lead(id: $id) { id } viewer { workspace { slug } } }",
                json!({"id": lead["id"]}),
            )
            .await;
        assert_eq!(payload["data"]["lead"], json!(null));
        assert_eq!(payload["data"]["viewer"]["workspace"]["slug"], "globex");
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
                assert_eq!(viewer["data"]["viewer"]["role"], "VIEWER");
            }
            let mut ws = app
                .ws_with(Some(protocol.name()), Some(&token))
                .await
                .expect("handshake");
            ws.init_with(json!({})).await;
            let viewer = ws.execute("1", VIEWER, json!({})).await;
            assert_eq!(viewer["data"]["viewer"]["role"], "VIEWER");
        }
    }
}

#[tokio::test]
async fn a_wrong_or_missing_token_is_forbidden() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let foreign = leadgate::auth::Authenticator::new(&leadgate::auth::AuthConfig {
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
        .expect("mint");
        for payload in [
            json!({"Authorization": format!("Bearer {foreign}")}),
            json!({"token": "not-a-jwt"}),
            json!({}),
        ] {
            let mut ws = app.ws(Protocol::TransportWs).await;
            ws.send(json!({"type": "connection_init", "payload": payload}))
                .await;
            assert_eq!(ws.closed().await, (4403, "Forbidden".to_owned()), "{payload}");

            let mut legacy = app.ws(Protocol::LegacyWs).await;
            legacy
                .send(json!({"type": "connection_init", "payload": payload}))
                .await;
            let error = legacy.recv_any().await;
            assert_eq!(error["type"], "connection_error", "{error}");
            assert!(error["payload"]["message"].is_string());
            assert_eq!(legacy.closed().await.0, 4403);
        }
        let mut header = app
            .ws_with(Some("graphql-transport-ws"), Some("not-a-jwt"))
            .await
            .expect("handshake");
        header.send(json!({"type": "connection_init"})).await;
        assert_eq!(header.closed().await.0, 4403);
    }
}

#[tokio::test]
async fn subprotocols_are_negotiated_and_unknown_ones_refused() {
    let app = spawn_app(backends()[0]).await;
    let ws = app
        .ws_with(Some("graphql-ws, graphql-transport-ws"), None)
        .await
        .expect("handshake");
    assert_eq!(
        ws.protocol,
        Protocol::TransportWs,
        "graphql-transport-ws is preferred"
    );
    let ws = app.ws_with(Some("graphql-ws"), None).await.expect("handshake");
    assert_eq!(ws.protocol, Protocol::LegacyWs);
    for offered in [Some("soap"), None] {
        match app.ws_with(offered, None).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 400);
                let body =
                    String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
                assert!(body.contains("graphql-transport-ws"), "{body}");
            }
            Err(other) => panic!("expected a 400, got {other}"),
            Ok(_) => panic!("{offered:?} must be refused"),
        }
    }
}

#[tokio::test]
async fn transport_ws_close_codes() {
    let app = spawn_app_with(backends()[0], |s| s.ws_init_timeout_ms = 150).await;

    let mut ws = app.ws(Protocol::TransportWs).await;
    ws.start("1", VIEWER, json!({})).await;
    assert_eq!(ws.closed().await, (4401, "Unauthorized".to_owned()));

    let mut ws = app.ws_ready(Protocol::TransportWs, Role::Viewer).await;
    ws.send(json!({"type": "connection_init"})).await;
    assert_eq!(
        ws.closed().await,
        (4429, "Too many initialisation requests".to_owned())
    );

    let mut ws = app.ws(Protocol::TransportWs).await;
    assert_eq!(
        ws.closed().await,
        (4408, "Connection initialisation timeout".to_owned())
    );

    for (text, reason) in [
        ("{\"type\":", "Invalid message: not a JSON object"),
        (
            r#"{"type":"start","id":"1"}"#,
            "Invalid message: unknown type `start`",
        ),
        (
            r#"{"type":"subscribe","id":"1","payload":{"query":7}}"#,
            "Invalid message: `payload.query` must be a string",
        ),
        (
            r#"{"type":"complete"}"#,
            "Invalid message: `complete` needs a non-empty string `id`",
        ),
        (
            r#"{"type":"ping","payload":[1]}"#,
            "Invalid message: `ping` payload must be an object",
        ),
    ] {
        let mut ws = app.ws_ready(Protocol::TransportWs, Role::Viewer).await;
        ws.send_raw(text).await;
        let (code, got) = ws.closed().await;
        assert_eq!((code, got.as_str()), (4400, reason), "{text}");
    }
}

#[tokio::test]
async fn ping_gets_pong_with_its_payload_and_complete_is_quiet() {
    let app = spawn_app(backends()[0]).await;
    let mut ws = app.ws(Protocol::TransportWs).await;
    ws.send(json!({"type": "ping", "payload": {"t": 1}})).await;
    assert_eq!(ws.recv().await, json!({"type": "pong", "payload": {"t": 1}}));
    ws.init(&app.token(Role::Viewer)).await;
    ws.send(json!({"type": "pong"})).await;
    ws.stop("never-started").await;
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(
        ws.recv().await,
        json!({"type": "pong"}),
        "pong and unknown ids are ignored"
    );
}

#[tokio::test]
async fn legacy_keeps_alive_and_answers_bad_messages_without_closing() {
    let app = spawn_app_with(backends()[0], |s| s.ws_keepalive_ms = 50).await;
    let mut ws = app.ws_ready(Protocol::LegacyWs, Role::Viewer).await;
    assert_eq!(ws.recv_any().await, json!({"type": "ka"}), "keep-alives repeat");
    ws.send_raw("{oops").await;
    let error = ws.recv().await;
    assert_eq!(error["type"], "connection_error");
    ws.send(json!({"id": "x", "type": "subscribe"})).await;
    let error = ws.recv().await;
    assert_eq!(
        (error["type"].as_str(), error["id"].as_str()),
        (Some("error"), Some("x")),
        "{error}"
    );
    let viewer = ws.execute("after", VIEWER, json!({})).await;
    assert_eq!(viewer["data"]["viewer"]["role"], "VIEWER");
    ws.send(json!({"type": "connection_terminate"})).await;
    assert_eq!(ws.closed().await.0, 1000);
}

#[tokio::test]
async fn failures_before_execution_are_error_messages() {
    let app = spawn_app_with(backends()[0], |s| {
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
            assert_eq!(error["type"], "error", "{error}");
            assert_eq!(error["id"], "q");
            let first = match protocol {
                Protocol::TransportWs => error["payload"][0].clone(),
                Protocol::LegacyWs => error["payload"].clone(),
            };
            assert_eq!(first["extensions"]["code"], code, "{query}: {error}");
        }
        ws.start(
            "c",
            "{ leads(first: 100) { edges { node { id email } } } }",
            json!({}),
        )
        .await;
        let error = ws.recv().await;
        assert_eq!(error["type"], "error", "complexity limit: {error}");
        // no `complete` follows an `error`, and the connection goes on
        let viewer = ws.execute("ok", VIEWER, json!({})).await;
        assert_eq!(viewer["data"]["viewer"]["role"], "VIEWER");
    }
}

#[tokio::test]
async fn connections_per_token_are_limited_and_released() {
    let app = spawn_app_with(backends()[0], |s| s.ws_max_connections_per_token = 1).await;
    let token = app.token(Role::Viewer);
    let mut first = app.ws(Protocol::TransportWs).await;
    first.init(&token).await;

    let mut second = app.ws(Protocol::TransportWs).await;
    second
        .send(json!({"type": "connection_init", "payload": {"token": token}}))
        .await;
    assert_eq!(
        second.closed().await,
        (1008, "Too many connections for this token".to_owned())
    );
    let mut legacy = app.ws(Protocol::LegacyWs).await;
    legacy
        .send(json!({"type": "connection_init", "payload": {"token": token}}))
        .await;
    assert_eq!(legacy.recv_any().await["type"], "connection_error");
    assert_eq!(legacy.closed().await.0, 1008);

    let mut other = app.ws(Protocol::TransportWs).await;
    other.init(&app.token(Role::Admin)).await;

    first.close().await;
    poll_until(Duration::from_secs(5), "the released slot", || async {
        let mut again = app.ws(Protocol::TransportWs).await;
        again
            .send(json!({"type": "connection_init", "payload": {"token": token}}))
            .await;
        (again.recv_or_close().await == Some(json!({"type": "connection_ack"}))).then_some(())
    })
    .await;
}
