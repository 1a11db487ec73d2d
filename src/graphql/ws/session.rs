//! One socket's protocol state machine: waits for `connection_init` (authenticating it and
//! counting the connection against its token), then runs operations until the client leaves,
//! answering every message as its protocol document says. Never panics on input: anything it
//! cannot accept is an `Invalid` answered per protocol.
//!
//! Operations run privately (a task per operation) or, for shareable subscriptions, as a
//! member of a `Hub` group. Either way their ending comes back through `done` so that the
//! session alone writes `complete`/`error` and forgets the id.

use super::hub::{GroupKey, Member, Membership, is_shareable};
use super::message::{ClientMessage, Invalid, Operation, decode, token_in};
use super::{
    CLOSE_TOO_MANY_CONNECTIONS, ConnectionPermit, Engine, Inbound, Outbound, Protocol, SLOW_CONSUMER,
    SUBSCRIPTION_LIMIT, WsContext, close_reason, result_json,
};
use crate::graphql::guard::with_code;
use crate::graphql::metrics::GaugeGuard;
use crate::graphql::query::Caller;
use crate::graphql::{is_request_error, operation_type};
use crate::service::Actor;
use async_graphql::parser::types::OperationType;
use async_graphql::{Request, Response, ServerError, Variables};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::{Instant, Interval};
use tracing::Instrument;

type Flow = ControlFlow<()>;

/// How an operation ended, reported to its session.
#[derive(Clone, Debug)]
pub(super) enum Ending {
    /// The source stream ended: `complete`.
    Complete,
    /// It failed before execution: `error`.
    Errors(Vec<ServerError>),
    /// Its results could not be queued: `error` with `SLOW_CONSUMER`.
    SlowConsumer,
}

/// An operation's ending, addressed by id and sequence number.
#[derive(Debug)]
pub(super) struct Done {
    pub id: Arc<str>,
    pub seq: u64,
    pub ending: Ending,
}

enum Phase {
    AwaitingInit,
    Ready { actor: Actor, _permit: ConnectionPermit },
}

enum Running {
    Private(AbortHandle),
    /// Dropping the membership leaves the group.
    Shared {
        _membership: Membership,
    },
}

struct Op {
    seq: u64,
    subscription: bool,
    running: Running,
    /// Counts a subscription as active while it runs.
    _active: Option<GaugeGuard>,
}

impl Drop for Op {
    fn drop(&mut self) {
        if let Running::Private(task) = &self.running {
            task.abort();
        }
    }
}

/// One connection's protocol state.
pub struct Session<E> {
    ctx: Arc<WsContext<E>>,
    protocol: Protocol,
    /// The bearer token of the upgrade request's `Authorization` header, if any.
    header_token: Option<String>,
    phase: Phase,
    ops: HashMap<String, Op>,
    next_seq: u64,
    out: mpsc::Sender<Outbound>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    /// Counts the connection as open while the session lives.
    _connection: GaugeGuard,
}

impl<E: Engine> Session<E> {
    /// A session for a socket that negotiated `protocol`; the receiver yields what to write,
    /// ending with a `Close` when the server closes.
    pub fn new(
        ctx: Arc<WsContext<E>>,
        protocol: Protocol,
        header_token: Option<String>,
    ) -> (Self, mpsc::Receiver<Outbound>) {
        let (out, out_rx) = mpsc::channel(ctx.config.send_queue.max(1));
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let connection = ctx.metrics.connection(protocol.name());
        let session = Self {
            ctx,
            protocol,
            header_token,
            phase: Phase::AwaitingInit,
            ops: HashMap::new(),
            next_seq: 0,
            out,
            done_tx,
            done_rx,
            _connection: connection,
        };
        (session, out_rx)
    }

    /// Runs until the client leaves (the inbound stream ends) or the session closes the
    /// socket. Running operations stop when this returns.
    pub async fn run(mut self, mut inbound: impl Stream<Item = Inbound> + Unpin) {
        let init_deadline = tokio::time::sleep(self.ctx.config.init_timeout);
        tokio::pin!(init_deadline);
        let drain = self.ctx.drain.clone();
        let draining = drain.started();
        tokio::pin!(draining);
        let mut keepalive: Option<Interval> = None;
        loop {
            let awaiting_init = matches!(self.phase, Phase::AwaitingInit);
            let flow = tokio::select! {
                frame = inbound.next() => match frame {
                    Some(frame) => self.on_frame(frame, &mut keepalive).await,
                    None => ControlFlow::Break(()),
                },
                Some(done) = self.done_rx.recv() => self.on_done(done).await,
                () = &mut init_deadline, if awaiting_init => {
                    self.close(4408, "Connection initialisation timeout").await
                }
                () = tick(&mut keepalive) => self.send_text(json!({"type": "ka"})).await,
                // a reconnecting client lands on an instance that is not shutting down
                () = &mut draining => self.close(1012, "Service restart: reconnect").await,
            };
            if flow.is_break() {
                break;
            }
        }
    }

    async fn on_frame(&mut self, frame: Inbound, keepalive: &mut Option<Interval>) -> Flow {
        let message = match frame {
            Inbound::Text(text) => decode(self.protocol, &text),
            Inbound::Binary => Err(Invalid::Message {
                id: None,
                reason: "Invalid message: binary frames are not supported".into(),
            }),
        };
        match message {
            Ok(message) => self.on_message(message, keepalive).await,
            Err(invalid) => self.on_invalid(invalid).await,
        }
    }

    /// graphql-transport-ws closes with 4400; graphql-ws answers `connection_error` for
    /// unparsable JSON and `error` (with the id) for a message it does not understand.
    async fn on_invalid(&mut self, invalid: Invalid) -> Flow {
        match (self.protocol, invalid) {
            (Protocol::TransportWs, invalid) => self.close(4400, invalid.reason()).await,
            (Protocol::LegacyWs, Invalid::NotJson) => self.connection_error(Invalid::NotJson.reason()).await,
            (Protocol::LegacyWs, Invalid::Message { id, reason }) => {
                let mut message = json!({"type": "error", "payload": {"message": reason}});
                if let Some(id) = id {
                    message["id"] = Value::String(id);
                }
                self.send_text(message).await
            }
        }
    }

    async fn on_message(&mut self, message: ClientMessage, keepalive: &mut Option<Interval>) -> Flow {
        match message {
            ClientMessage::Init(payload) => self.on_init(payload, keepalive).await,
            ClientMessage::Ping(payload) => {
                let mut pong = json!({"type": "pong"});
                if let Some(payload) = payload {
                    pong["payload"] = payload;
                }
                self.send_text(pong).await
            }
            ClientMessage::Pong => ControlFlow::Continue(()),
            ClientMessage::Subscribe { id, payload } => self.on_subscribe(id, payload).await,
            ClientMessage::Stop { id } => {
                if self.ops.remove(&id).is_some() && self.protocol == Protocol::LegacyWs {
                    return self.send_text(json!({"id": id, "type": "complete"})).await;
                }
                ControlFlow::Continue(())
            }
            ClientMessage::Terminate => self.close(1000, "Normal Closure").await,
        }
    }

    async fn on_init(
        &mut self,
        payload: Option<serde_json::Map<String, Value>>,
        keepalive: &mut Option<Interval>,
    ) -> Flow {
        if matches!(self.phase, Phase::Ready { .. }) {
            return match self.protocol {
                Protocol::TransportWs => self.close(4429, "Too many initialisation requests").await,
                Protocol::LegacyWs => {
                    self.connection_error("the connection is already initialised")
                        .await
                }
            };
        }
        let token = payload
            .as_ref()
            .and_then(token_in)
            .or(self.header_token.as_deref())
            .map(str::to_owned);
        let Some(token) = token else {
            return self
                .reject(
                    4403,
                    "Forbidden",
                    "authentication required: send {\"Authorization\": \"Bearer <token>\"} in the connection_init payload",
                )
                .await;
        };
        let actor = match (self.ctx.verify)(&token) {
            Ok(actor) => actor,
            Err(message) => return self.reject(4403, "Forbidden", &message).await,
        };
        let Some(permit) = self.ctx.limiter.try_acquire(&token) else {
            let message = "Too many connections for this token";
            return self.reject(CLOSE_TOO_MANY_CONNECTIONS, message, message).await;
        };
        self.phase = Phase::Ready {
            actor,
            _permit: permit,
        };
        self.send_text(json!({"type": "connection_ack"})).await?;
        if self.protocol == Protocol::LegacyWs {
            let every = self.ctx.config.keepalive;
            *keepalive = Some(tokio::time::interval_at(Instant::now() + every, every));
            return self.send_text(json!({"type": "ka"})).await;
        }
        ControlFlow::Continue(())
    }

    /// Refuses the connection: a close on graphql-transport-ws; `connection_error` then a
    /// close on graphql-ws.
    async fn reject(&mut self, code: u16, reason: &str, message: &str) -> Flow {
        if self.protocol == Protocol::LegacyWs {
            self.connection_error(message).await?;
        }
        self.close(code, reason).await
    }

    async fn on_subscribe(&mut self, id: String, operation: Operation) -> Flow {
        let actor = match &self.phase {
            Phase::Ready { actor, .. } => actor.clone(),
            Phase::AwaitingInit => {
                return match self.protocol {
                    Protocol::TransportWs => self.close(4401, "Unauthorized").await,
                    Protocol::LegacyWs => {
                        let error = ServerError::new("send connection_init before start", None);
                        self.send_error(&id, vec![error]).await
                    }
                };
            }
        };
        if self.ops.contains_key(&id) {
            match self.protocol {
                Protocol::TransportWs => {
                    return self
                        .close(4409, &format!("Subscriber for {id} already exists"))
                        .await;
                }
                // subscriptions-transport-ws servers replace an operation whose id is reused
                Protocol::LegacyWs => {
                    self.ops.remove(&id);
                }
            }
        }
        let operation_name = operation.operation_name.clone();
        let mut request = match self
            .ctx
            .engine
            .prepare(request_of(operation), Caller(Some(actor.clone())))
        {
            Ok(request) => request,
            Err(errors) => return self.send_error(&id, errors).await,
        };
        if let Err(reason) = self
            .ctx
            .engine
            .admit(&mut request, &Caller(Some(actor.clone())))
            .await
        {
            return self.close(4429, &reason).await;
        }
        let (subscription, shareable) = match request.parsed_query() {
            Ok(doc) => (
                operation_type(doc, operation_name.as_deref()) == Some(OperationType::Subscription),
                is_shareable(doc, operation_name.as_deref()),
            ),
            Err(_) => (false, false),
        };
        if subscription && self.subscription_count() >= self.ctx.config.max_subscriptions {
            let error = with_code(
                ServerError::new(
                    format!(
                        "this connection already has {} active subscriptions; complete one first",
                        self.ctx.config.max_subscriptions
                    ),
                    None,
                ),
                SUBSCRIPTION_LIMIT,
            );
            return self.send_error(&id, vec![error]).await;
        }
        self.start(id, actor, request, subscription && shareable, subscription);
        ControlFlow::Continue(())
    }

    fn subscription_count(&self) -> usize {
        self.ops.values().filter(|op| op.subscription).count()
    }

    fn start(&mut self, id: String, actor: Actor, mut request: Request, shared: bool, subscription: bool) {
        self.next_seq += 1;
        let seq = self.next_seq;
        let id_arc: Arc<str> = Arc::from(id.as_str());
        let id_json: Arc<str> = serde_json::to_string(&id).unwrap_or_default().into();
        let kind = self.protocol.next_type();
        let running = if shared {
            let key = GroupKey {
                workspace: actor.workspace_id,
                role: actor.role,
                scopes: actor.key.as_ref().map(|k| k.scopes),
                query: request.query.clone(),
                variables: serde_json::to_string(&request.variables).unwrap_or_default(),
                operation_name: request.operation_name.clone(),
            };
            let member = Member {
                id: id_arc,
                id_json,
                seq,
                kind,
                out: self.out.clone(),
                done: self.done_tx.clone(),
            };
            let engine = &self.ctx.engine;
            Running::Shared {
                _membership: self.ctx.hub.join(key, member, || engine.execute_stream(request)),
            }
        } else {
            // a shared group serves many callers: only a private operation has one to name
            let span = crate::graphql::operation_span(&mut request, Some(actor.workspace_id));
            let stream = self.ctx.engine.execute_stream(request);
            let private = Private {
                id: id_arc,
                id_json,
                seq,
                kind,
                out: self.out.clone(),
                done: self.done_tx.clone(),
            };
            Running::Private(tokio::spawn(private.run(stream).instrument(span)).abort_handle())
        };
        let active = subscription.then(|| self.ctx.metrics.subscription(self.protocol.name()));
        self.ops.insert(
            id,
            Op {
                seq,
                subscription,
                running,
                _active: active,
            },
        );
    }

    async fn on_done(&mut self, done: Done) -> Flow {
        if self.ops.get(&*done.id).is_none_or(|op| op.seq != done.seq) {
            return ControlFlow::Continue(());
        }
        self.ops.remove(&*done.id);
        match done.ending {
            Ending::Complete => self.send_text(json!({"id": &*done.id, "type": "complete"})).await,
            Ending::Errors(errors) => self.send_error(&done.id, errors).await,
            Ending::SlowConsumer => {
                let error = with_code(
                    ServerError::new(
                        "the client did not read results fast enough; the subscription was ended",
                        None,
                    ),
                    SLOW_CONSUMER,
                );
                self.send_error(&done.id, vec![error]).await
            }
        }
    }

    /// `error` for one operation: a GraphQLError array on graphql-transport-ws, one error
    /// object on graphql-ws (its document's `payload: Error`).
    async fn send_error(&mut self, id: &str, errors: Vec<ServerError>) -> Flow {
        let payload = match self.protocol {
            Protocol::TransportWs => json!(errors),
            Protocol::LegacyWs => errors
                .first()
                .map(|e| json!(e))
                .unwrap_or_else(|| json!({"message": "the operation failed"})),
        };
        self.send_text(json!({"id": id, "type": "error", "payload": payload}))
            .await
    }

    async fn connection_error(&mut self, message: &str) -> Flow {
        self.send_text(json!({"type": "connection_error", "payload": {"message": message}}))
            .await
    }

    async fn send_text(&mut self, message: Value) -> Flow {
        match self.out.send(Outbound::Text(message.to_string())).await {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    }

    async fn close(&mut self, code: u16, reason: &str) -> Flow {
        let _ = self
            .out
            .send(Outbound::Close {
                code,
                reason: close_reason(reason),
            })
            .await;
        ControlFlow::Break(())
    }
}

/// Resolves at the next keep-alive tick, or never when there is no keep-alive.
async fn tick(keepalive: &mut Option<Interval>) {
    match keepalive {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn request_of(operation: Operation) -> Request {
    let mut request = Request::new(operation.query);
    request.operation_name = operation.operation_name;
    if let Some(variables) = operation.variables {
        request.variables = Variables::from_json(variables);
    }
    if let Some(extensions) = operation.extensions {
        request.extensions = async_graphql::Extensions(
            extensions
                .into_iter()
                .filter_map(|(k, v)| async_graphql::Value::from_json(v).ok().map(|v| (k, v)))
                .collect(),
        );
    }
    request
}

/// An operation that runs on its own: its results wait for room in the connection's queue.
struct Private {
    id: Arc<str>,
    id_json: Arc<str>,
    seq: u64,
    kind: &'static str,
    out: mpsc::Sender<Outbound>,
    done: mpsc::UnboundedSender<Done>,
}

impl Private {
    async fn run(self, mut stream: BoxStream<'static, Response>) {
        let mut first = true;
        while let Some(response) = stream.next().await {
            if first && is_request_error(&response) {
                self.end(Ending::Errors(response.errors));
                return;
            }
            first = false;
            let frame = Outbound::Result {
                kind: self.kind,
                id: self.id_json.clone(),
                payload: result_json(&response),
            };
            if self.out.send(frame).await.is_err() {
                return;
            }
        }
        self.end(Ending::Complete);
    }

    fn end(&self, ending: Ending) {
        let _ = self.done.send(Done {
            id: self.id.clone(),
            seq: self.seq,
            ending,
        });
    }
}
