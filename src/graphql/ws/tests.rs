//! The session without a socket: a small schema with controllable subscriptions, sessions fed
//! through channels, and every protocol rule checked on both subprotocols.

use super::*;
use crate::domain::{Role, WorkspaceId};
use crate::graphql::guard;
use async_graphql::{Context, EmptyMutation, Object, Schema, Subscription};
use futures_util::Stream;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{broadcast, mpsc};

struct Query;

#[Object]
impl Query {
    /// The caller's subject.
    async fn hello(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        let caller = ctx.data::<Caller>()?;
        Ok(caller.0.as_ref().map(|a| a.subject.clone()).unwrap_or_default())
    }

    async fn nested(&self) -> Query {
        Query
    }
}

/// Counts how many executions `events` started.
#[derive(Default)]
struct Started(AtomicUsize);

struct Subscription;

#[Subscription]
impl Subscription {
    /// The numbers published on the test's channel, from `after` on.
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<i32>,
    ) -> async_graphql::Result<impl Stream<Item = i32>> {
        ctx.data::<Arc<Started>>()?.0.fetch_add(1, Ordering::SeqCst);
        let rx = ctx.data::<broadcast::Sender<i32>>()?.subscribe();
        let from = after.unwrap_or(i32::MIN);
        Ok(
            futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.ok().map(|v| (v, rx)) })
                .filter(move |v| std::future::ready(*v > from)),
        )
    }

    /// `n` numbers, then the end.
    async fn count(&self, n: i32) -> impl Stream<Item = i32> {
        futures_util::stream::iter(0..n)
    }
}

type TestSchema = Schema<Query, EmptyMutation, Subscription>;

struct TestEngine {
    schema: TestSchema,
    started: Arc<Started>,
    publish: broadcast::Sender<i32>,
}

impl Engine for TestEngine {
    fn prepare(&self, mut request: Request, caller: Caller) -> Result<Request, Vec<ServerError>> {
        let limits = crate::graphql::Limits {
            depth: 15,
            complexity: 1_000,
            aliases: 3,
            batch: 1,
            field_repeats: 10,
            directives: 5,
            introspection: crate::graphql::IntrospectionPolicy::Authenticated,
            suggestions: false,
        };
        let authenticated = caller.0.is_some();
        guard::prepare(&mut request, &limits, authenticated).map_err(|e| vec![e])?;
        Ok(request.data(caller))
    }

    fn execute_stream(&self, request: Request) -> BoxStream<'static, Response> {
        self.schema
            .execute_stream(request)
            .map(|mut r| {
                label_request_errors(&mut r);
                r
            })
            .boxed()
    }
}

fn workspace(n: u128) -> WorkspaceId {
    WorkspaceId::from_uuid(uuid::Uuid::from_u128(n))
}

fn config() -> WsConfig {
    WsConfig {
        init_timeout: Duration::from_secs(5),
        keepalive: Duration::from_secs(60),
        max_subscriptions: 10,
        max_connections_per_token: 10,
        send_queue: 64,
    }
}

fn context(config: WsConfig) -> Arc<WsContext<TestEngine>> {
    let (publish, _) = broadcast::channel(1024);
    let started = Arc::new(Started::default());
    let schema = Schema::build(Query, EmptyMutation, Subscription)
        .data(publish.clone())
        .data(started.clone())
        .limit_depth(4)
        .finish();
    let verify: TokenVerifier = Arc::new(|token: &str| match token {
        "good" | "good-2" => Ok(Actor {
            subject: token.to_owned(),
            workspace_id: workspace(1),
            role: Role::Member,
            key: None,
        }),
        "elsewhere" => Ok(Actor {
            subject: token.to_owned(),
            workspace_id: workspace(2),
            role: Role::Member,
            key: None,
        }),
        _ => Err("the token is not valid".to_owned()),
    });
    Arc::new(WsContext {
        engine: TestEngine {
            schema,
            started,
            publish,
        },
        verify,
        limiter: ConnectionLimiter::new(config.max_connections_per_token),
        hub: Hub::new(),
        drain: super::Drain::default(),
        metrics: crate::graphql::GraphqlMetrics::default(),
        config,
    })
}

/// A running session and its two channels.
struct Client {
    tx: Option<mpsc::Sender<Inbound>>,
    rx: mpsc::Receiver<Outbound>,
    task: tokio::task::JoinHandle<()>,
}

fn connect(ctx: &Arc<WsContext<TestEngine>>, protocol: Protocol, header_token: Option<&str>) -> Client {
    let (session, rx) = Session::new(ctx.clone(), protocol, header_token.map(str::to_owned));
    let (tx, inbound) = mpsc::channel(16);
    let inbound =
        futures_util::stream::unfold(inbound, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let task = tokio::spawn(session.run(Box::pin(inbound)));
    Client {
        tx: Some(tx),
        rx,
        task,
    }
}

impl Client {
    async fn send(&self, message: Value) {
        self.send_raw(&message.to_string()).await;
    }

    async fn send_raw(&self, text: &str) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Inbound::Text(text.to_owned())).await;
        }
    }

    async fn frame(&mut self) -> Frame {
        let next = tokio::time::timeout(Duration::from_secs(5), self.rx.recv())
            .await
            .expect("a frame within 5 s")
            .expect("the session is still writing");
        next.into_frame()
    }

    async fn json(&mut self) -> Value {
        match self.frame().await {
            Frame::Text(text) => serde_json::from_str(&text).expect("frames are JSON"),
            Frame::Close(code, reason) => panic!("closed with {code} {reason}"),
        }
    }

    async fn closed(&mut self) -> (u16, String) {
        match self.frame().await {
            Frame::Close(code, reason) => (code, reason),
            Frame::Text(text) => panic!("expected a close, got {text}"),
        }
    }

    async fn init(&mut self, token: &str) {
        self.send(
            json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}}),
        )
        .await;
        assert_eq!(self.json().await["type"], "connection_ack");
    }

    /// A ping answered proves every earlier frame was handled.
    async fn round_trip(&mut self) {
        self.send(json!({"type": "ping", "payload": {"probe": true}}))
            .await;
        assert_eq!(
            self.json().await,
            json!({"type": "pong", "payload": {"probe": true}})
        );
    }

    /// The client leaves; waits until the session has finished.
    async fn leave(mut self) {
        self.tx = None;
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

fn subscribe(id: &str, query: &str) -> Value {
    json!({"id": id, "type": "subscribe", "payload": {"query": query}})
}

/// Lets the sessions' tasks run until `check` holds (they need no I/O, only turns), for at
/// most 5 s.
async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let until = async {
        while !check() {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), until)
        .await
        .unwrap_or_else(|_| panic!("gave up waiting for {what}"));
}

#[tokio::test]
async fn a_query_through_subscribe_is_one_next_then_complete() {
    let ctx = context(config());
    let mut client = connect(&ctx, Protocol::TransportWs, None);
    client.init("good").await;
    client.send(subscribe("q1", "{ hello }")).await;
    assert_eq!(
        client.json().await,
        json!({"id": "q1", "type": "next", "payload": {"data": {"hello": "good"}}})
    );
    assert_eq!(client.json().await, json!({"id": "q1", "type": "complete"}));
}

#[tokio::test]
async fn the_upgrade_header_token_authenticates_an_empty_init() {
    let ctx = context(config());
    let mut client = connect(&ctx, Protocol::TransportWs, Some("good-2"));
    client.send(json!({"type": "connection_init"})).await;
    assert_eq!(client.json().await, json!({"type": "connection_ack"}));
    client.send(subscribe("1", "{ hello }")).await;
    assert_eq!(client.json().await["payload"]["data"]["hello"], "good-2");
}

#[tokio::test]
async fn subscribe_before_ack_closes_4401() {
    let ctx = context(config());
    let mut client = connect(&ctx, Protocol::TransportWs, None);
    client.send(subscribe("1", "{ hello }")).await;
    assert_eq!(client.closed().await, (4401, "Unauthorized".to_owned()));
}

#[tokio::test]
async fn a_second_init_closes_4429() {
    let ctx = context(config());
    let mut client = connect(&ctx, Protocol::TransportWs, None);
    client.init("good").await;
    client.send(json!({"type": "connection_init"})).await;
    assert_eq!(
        client.closed().await,
        (4429, "Too many initialisation requests".to_owned())
    );
}

/// Lets every ready task run without moving the (paused) clock.
async fn settle() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn no_init_within_the_timeout_closes_4408() {
    for protocol in Protocol::ALL {
        let ctx = context(WsConfig {
            init_timeout: Duration::from_secs(10),
            ..config()
        });
        let mut client = connect(&ctx, protocol, None);
        settle().await;
        tokio::time::advance(Duration::from_millis(9_999)).await;
        settle().await;
        assert!(
            client.rx.try_recv().is_err(),
            "{protocol:?}: nothing before the timeout"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            client.closed().await,
            (4408, "Connection initialisation timeout".to_owned()),
            "{protocol:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_init_in_time_is_not_closed_when_the_timeout_passes() {
    let ctx = context(WsConfig {
        init_timeout: Duration::from_secs(10),
        ..config()
    });
    let mut client = connect(&ctx, Protocol::TransportWs, None);
    tokio::time::advance(Duration::from_millis(9_999)).await;
    client.init("good").await;
    tokio::time::advance(Duration::from_secs(60)).await;
    client.round_trip().await;
}

#[tokio::test]
async fn rejected_and_missing_tokens_close_4403() {
    let ctx = context(config());
    for init in [
        json!({"type": "connection_init", "payload": {"token": "forged"}}),
        json!({"type": "connection_init", "payload": {}}),
        json!({"type": "connection_init"}),
    ] {
        let mut client = connect(&ctx, Protocol::TransportWs, None);
        client.send(init).await;
        assert_eq!(client.closed().await, (4403, "Forbidden".to_owned()));
    }
}

#[tokio::test]
async fn a_duplicate_active_id_closes_4409() {
    let ctx = context(config());
    let mut client = connect(&ctx, Protocol::TransportWs, None);
    client.init("good").await;
    client.send(subscribe("dup", "subscription { events }")).await;
    client.send(subscribe("dup", "subscription { events }")).await;
    assert_eq!(
        client.closed().await,
        (4409, "Subscriber for dup already exists".to_owned())
    );
}

#[tokio::test]
async fn a_completed_id_may_be_reused() {
    let ctx = context(config());
    let mut client = connect(&ctx, Protocol::TransportWs, None);
    client.init("good").await;
    for _ in 0..2 {
        client.send(subscribe("same", "{ hello }")).await;
        assert_eq!(client.json().await["type"], "next");
        assert_eq!(client.json().await["type"], "complete");
    }
}

#[tokio::test]
async fn invalid_messages_close_4400_with_a_reason() {
    let ctx = context(config());
    for (text, reason) in [
        ("{not json", "Invalid message: not a JSON object"),
        (r#"{"type":"bogus"}"#, "Invalid message: unknown type `bogus`"),
        (
            r#"{"type":"subscribe","id":"1"}"#,
            "Invalid message: `payload` must be an object with a `query`",
        ),
        (r#"{"id":"1"}"#, "Invalid message: `type` must be a string"),
    ] {
        let mut client = connect(&ctx, Protocol::TransportWs, None);
        client.init("good").await;
        client.send_raw(text).await;
        assert_eq!(client.closed().await, (4400, reason.to_owned()), "{text}");
    }
}

#[tokio::test]
async fn ping_is_answered_with_its_payload_and_pong_is_ignored() {
    let ctx = context(config());
    let mut client = connect(&ctx, Protocol::TransportWs, None);
    client.send(json!({"type": "pong"})).await;
    client.round_trip().await;
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.json().await, json!({"type": "pong"}));
}

#[tokio::test]
async fn validation_and_limit_failures_are_error_messages() {
    let ctx = context(config());
    let mut client = connect(&ctx, Protocol::TransportWs, None);
    client.init("good").await;
    client.send(subscribe("v", "{ nope }")).await;
    let error = client.json().await;
    assert_eq!(error["type"], "error");
    assert_eq!(
        error["payload"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
    client.send(subscribe("p", "{ hello ")).await;
    assert_eq!(
        client.json().await["payload"][0]["extensions"]["code"],
        "GRAPHQL_PARSE_FAILED"
    );
    client
        .send(subscribe(
            "d",
            "{ nested { nested { nested { nested { hello } } } } }",
        ))
        .await;
    assert_eq!(client.json().await["type"], "error", "depth limit");
    client
        .send(subscribe("a", "{ a: hello b: hello c: hello d: hello }"))
        .await;
    assert_eq!(
        client.json().await["payload"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
    // no `complete` follows an `error`: the next frame answers the ping
    client.round_trip().await;
}

#[tokio::test]
async fn complete_from_the_client_stops_the_subscription() {
    let ctx = context(config());
    let mut client = connect(&ctx, Protocol::TransportWs, None);
    client.init("good").await;
    client
        .send(subscribe("s", "subscription { events(after: 0) }"))
        .await;
    wait_for("the subscription to start", || {
        ctx.engine.started.0.load(Ordering::SeqCst) == 1
    })
    .await;
    let _ = ctx.engine.publish.send(1);
    assert_eq!(
        client.json().await,
        json!({"id": "s", "type": "next", "payload": {"data": {"events": 1}}})
    );
    client.send(json!({"id": "s", "type": "complete"})).await;
    client.round_trip().await;
    let _ = ctx.engine.publish.send(2);
    client.round_trip().await;
    // an unknown id is ignored
    client.send(json!({"id": "s", "type": "complete"})).await;
    client.round_trip().await;
}

#[tokio::test]
async fn a_finite_subscription_ends_with_complete() {
    let ctx = context(config());
    let mut client = connect(&ctx, Protocol::TransportWs, None);
    client.init("good").await;
    client.send(subscribe("c", "subscription { count(n: 2) }")).await;
    assert_eq!(client.json().await["payload"]["data"]["count"], 0);
    assert_eq!(client.json().await["payload"]["data"]["count"], 1);
    assert_eq!(client.json().await, json!({"id": "c", "type": "complete"}));
    assert!(ctx.hub.group_sizes().is_empty());
}

#[tokio::test]
async fn subscriptions_beyond_the_limit_are_refused_one_by_one() {
    let ctx = context(WsConfig {
        max_subscriptions: 1,
        ..config()
    });
    let mut client = connect(&ctx, Protocol::TransportWs, None);
    client.init("good").await;
    client.send(subscribe("1", "subscription { events }")).await;
    client.send(subscribe("2", "subscription { events }")).await;
    let refused = client.json().await;
    assert_eq!(refused["id"], "2");
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["payload"][0]["extensions"]["code"], SUBSCRIPTION_LIMIT);
    // queries still run, and completing the first frees its slot
    client.send(subscribe("q", "{ hello }")).await;
    assert_eq!(client.json().await["type"], "next");
    assert_eq!(client.json().await["type"], "complete");
    client.send(json!({"id": "1", "type": "complete"})).await;
    client.send(subscribe("3", "subscription { count(n: 1) }")).await;
    assert_eq!(client.json().await["payload"]["data"]["count"], 0);
}

#[tokio::test]
async fn connections_per_token_are_limited_and_released() {
    let ctx = context(WsConfig {
        max_connections_per_token: 1,
        ..config()
    });
    let mut first = connect(&ctx, Protocol::TransportWs, None);
    first.init("good").await;
    let mut second = connect(&ctx, Protocol::TransportWs, None);
    second
        .send(json!({"type": "connection_init", "payload": {"token": "good"}}))
        .await;
    assert_eq!(
        second.closed().await,
        (
            CLOSE_TOO_MANY_CONNECTIONS,
            "Too many connections for this token".to_owned()
        )
    );
    let mut other_token = connect(&ctx, Protocol::TransportWs, None);
    other_token.init("good-2").await;
    first.leave().await;
    assert_eq!(ctx.limiter.open_for("good"), 0);
    let mut third = connect(&ctx, Protocol::TransportWs, None);
    third.init("good").await;
}

#[tokio::test]
async fn identical_subscriptions_share_one_execution() {
    let ctx = context(config());
    let mut a = connect(&ctx, Protocol::TransportWs, None);
    let mut b = connect(&ctx, Protocol::LegacyWs, None);
    a.init("good").await;
    b.init("good-2").await;
    assert_eq!(b.json().await["type"], "ka");
    a.send(subscribe("a1", "subscription { events }")).await;
    b.send(json!({"id": "b1", "type": "start", "payload": {"query": "subscription { events }"}}))
        .await;
    wait_for("both members", || ctx.hub.group_sizes() == vec![2]).await;
    let _ = ctx.engine.publish.send(7);
    assert_eq!(
        a.json().await,
        json!({"id": "a1", "type": "next", "payload": {"data": {"events": 7}}})
    );
    assert_eq!(
        b.json().await,
        json!({"id": "b1", "type": "data", "payload": {"data": {"events": 7}}})
    );
    assert_eq!(ctx.engine.started.0.load(Ordering::SeqCst), 1);
    b.send(json!({"id": "b1", "type": "stop"})).await;
    assert_eq!(b.json().await, json!({"id": "b1", "type": "complete"}));
    assert_eq!(ctx.hub.group_sizes(), vec![1]);
    a.leave().await;
    wait_for("the group to end", || ctx.hub.group_sizes().is_empty()).await;
}

#[tokio::test]
async fn different_workspaces_variables_or_cursors_do_not_share() {
    let ctx = context(config());
    let mut a = connect(&ctx, Protocol::TransportWs, None);
    let mut b = connect(&ctx, Protocol::TransportWs, None);
    a.init("good").await;
    b.init("elsewhere").await;
    a.send(subscribe("1", "subscription { events }")).await;
    b.send(subscribe("1", "subscription { events }")).await;
    a.send(subscribe("2", "subscription { events(after: 0) }")).await;
    wait_for("three executions", || {
        ctx.engine.started.0.load(Ordering::SeqCst) == 3
    })
    .await;
    let mut sizes = ctx.hub.group_sizes();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![1, 1], "only the two without a cursor are groups");
}

#[tokio::test]
async fn a_slow_member_is_ended_without_stalling_the_others() {
    let ctx = context(WsConfig {
        send_queue: 4,
        ..config()
    });
    let mut fast = connect(&ctx, Protocol::TransportWs, None);
    let mut slow = connect(&ctx, Protocol::TransportWs, None);
    fast.init("good").await;
    slow.init("good").await;
    fast.send(subscribe("f", "subscription { events }")).await;
    slow.send(subscribe("s", "subscription { events }")).await;
    wait_for("both members", || ctx.hub.group_sizes() == vec![2]).await;
    for n in 0..20 {
        let _ = ctx.engine.publish.send(n);
        assert_eq!(fast.json().await["payload"]["data"]["events"], n);
    }
    assert_eq!(ctx.hub.group_sizes(), vec![1]);
    let mut last = json!(null);
    for _ in 0..5 {
        last = slow.json().await;
        if last["type"] == "error" {
            break;
        }
        assert_eq!(last["type"], "next");
    }
    assert_eq!(last["id"], "s");
    assert_eq!(last["payload"][0]["extensions"]["code"], SLOW_CONSUMER);
    slow.round_trip().await;
}

#[tokio::test(start_paused = true)]
async fn legacy_init_is_acked_then_kept_alive() {
    let ctx = context(WsConfig {
        keepalive: Duration::from_secs(30),
        ..config()
    });
    let mut client = connect(&ctx, Protocol::LegacyWs, None);
    client.init("good").await;
    // one `ka` right after the ack, then one per interval and none in between
    assert_eq!(client.json().await, json!({"type": "ka"}));
    for _ in 0..3 {
        tokio::time::advance(Duration::from_millis(29_999)).await;
        settle().await;
        assert!(client.rx.try_recv().is_err(), "no ka before the interval");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(client.json().await, json!({"type": "ka"}));
    }
}

#[tokio::test]
async fn legacy_start_runs_queries_and_stop_completes() {
    let ctx = context(config());
    let mut client = connect(&ctx, Protocol::LegacyWs, None);
    client.init("good").await;
    assert_eq!(client.json().await["type"], "ka");
    client
        .send(json!({"id": "1", "type": "start", "payload": {"query": "{ hello }"}}))
        .await;
    assert_eq!(
        client.json().await,
        json!({"id": "1", "type": "data", "payload": {"data": {"hello": "good"}}})
    );
    assert_eq!(client.json().await, json!({"id": "1", "type": "complete"}));
    client
        .send(json!({"id": "2", "type": "start", "payload": {"query": "{ nope }"}}))
        .await;
    let error = client.json().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["id"], "2");
    assert_eq!(
        error["payload"]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
    client.send(json!({"type": "connection_terminate"})).await;
    assert_eq!(client.closed().await.0, 1000);
}

#[tokio::test]
async fn legacy_bad_input_is_answered_without_closing() {
    let ctx = context(config());
    let mut client = connect(&ctx, Protocol::LegacyWs, None);
    client.send_raw("{nope").await;
    let answer = client.json().await;
    assert_eq!(answer["type"], "connection_error");
    client.send(json!({"id": "9", "type": "bogus"})).await;
    let answer = client.json().await;
    assert_eq!(
        (answer["type"].as_str(), answer["id"].as_str()),
        (Some("error"), Some("9"))
    );
    client
        .send(json!({"id": "3", "type": "start", "payload": {"query": "{ hello }"}}))
        .await;
    assert_eq!(client.json().await["type"], "error", "start before init");
    client.init("good").await;
}

#[tokio::test]
async fn legacy_rejection_is_connection_error_then_close() {
    let ctx = context(config());
    let mut client = connect(&ctx, Protocol::LegacyWs, None);
    client
        .send(json!({"type": "connection_init", "payload": {"authorization": "Bearer forged"}}))
        .await;
    assert_eq!(
        client.json().await,
        json!({"type": "connection_error", "payload": {"message": "the token is not valid"}})
    );
    assert_eq!(client.closed().await, (4403, "Forbidden".to_owned()));
}

#[tokio::test]
async fn arbitrary_input_never_breaks_the_session() {
    let ctx = context(config());
    let inputs = [
        "",
        "null",
        "[]",
        "\"text\"",
        "123",
        "{}",
        r#"{"type":null}"#,
        r#"{"type":"subscribe","id":{}}"#,
        r#"{"type":"start","id":"1","payload":{"query":"subscription { events"}}"#,
        r#"{"type":"connection_init","payload":[1,2]}"#,
        "\u{0}\u{ffff}",
        r#"{"type":"stop"}"#,
        r#"{"type":"subscribe","id":"1","payload":{"query":"{ hello }","variables":{"x":[{"y":null}]}}}"#,
    ];
    for protocol in Protocol::ALL {
        let mut client = connect(&ctx, protocol, None);
        client.init("good").await;
        for input in inputs {
            client.send_raw(input).await;
        }
        // graphql-transport-ws closed at the first; graphql-ws answered each and is still open
        match protocol {
            Protocol::TransportWs => assert_eq!(client.closed().await.0, 4400),
            Protocol::LegacyWs => {
                client
                    .send(json!({"id": "last", "type": "start", "payload": {"query": "{ hello }"}}))
                    .await;
                loop {
                    let frame = client.json().await;
                    if frame["id"] == "last" {
                        assert_eq!(frame["type"], "data");
                        break;
                    }
                }
            }
        }
    }
}

#[test]
fn negotiation_prefers_graphql_transport_ws() {
    assert_eq!(
        Protocol::negotiate(["graphql-ws, graphql-transport-ws"]),
        Some(Protocol::TransportWs)
    );
    assert_eq!(Protocol::negotiate(["graphql-ws"]), Some(Protocol::LegacyWs));
    assert_eq!(Protocol::negotiate(["soap", "wamp"]), None);
    assert_eq!(Protocol::negotiate([]), None);
}

#[test]
fn close_reasons_stay_under_123_bytes() {
    let long = "é".repeat(100);
    let cut = close_reason(&format!("Subscriber for {long} already exists"));
    assert!(cut.len() < 123);
    assert!(cut.starts_with("Subscriber for é"));
}

#[test]
fn shared_results_are_wrapped_with_their_id() {
    let frame = Outbound::Result {
        kind: "next",
        id: Arc::from("\"a\\\"b\""),
        payload: Arc::from(r#"{"data":{"x":1}}"#),
    };
    assert_eq!(
        frame.into_frame(),
        Frame::Text(r#"{"id":"a\"b","type":"next","payload":{"data":{"x":1}}}"#.to_owned())
    );
}
