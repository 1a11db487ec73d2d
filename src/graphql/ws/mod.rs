//! GraphQL over WebSocket, without a web framework: the two subprotocols, their state machine
//! (`Session`), the per-token connection limit (`ConnectionLimiter`) and the shared fan-out of
//! subscription results (`Hub`).
//!
//! Implements `graphql-transport-ws`
//! (<https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md>) and the legacy
//! `graphql-ws` (<https://github.com/apollographql/subscriptions-transport-ws/blob/master/PROTOCOL.md>).
//! A session is fed client text frames and answers through a bounded channel of `Outbound`
//! frames; the `http` module only moves those between the socket and the session.
//!
//! **WebSocket close codes** follow the two protocol documents (4400 invalid message, 4401
//! subscribe before ack, 4403 rejected or missing token, 4408 no `connection_init` in time, 4409
//! duplicate active id, 4429 second `connection_init`; on legacy `graphql-ws` bad messages are
//! answered with `connection_error`/`error` and only auth failures close). A request offering
//! neither subprotocol gets 400 before the upgrade (the documents define no code, and a client
//! that asked for a subprotocol fails a handshake that selects none). A token over its connection
//! limit is closed with **1008** (policy violation), not 4403: the token is valid and a retry
//! succeeds once a connection ends. Close reasons are cut to 122 bytes.

mod hub;
mod limit;
mod message;
mod session;
#[cfg(test)]
mod tests;

pub use hub::Hub;
pub use limit::{ConnectionLimiter, ConnectionPermit};
pub use session::Session;

use super::Gateway;
use super::query::Caller;
use super::transport::{label_request_errors, prepare_execution};
use crate::service::Actor;
use async_graphql::{Request, Response, ServerError};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use std::sync::Arc;
use std::time::Duration;

/// `extensions.code` of an operation ended because its client did not read fast enough.
pub const SLOW_CONSUMER: &str = "SLOW_CONSUMER";
/// `extensions.code` of a subscription refused because the connection has too many.
pub const SUBSCRIPTION_LIMIT: &str = "SUBSCRIPTION_LIMIT";

/// Close code when a token already has as many connections as allowed: 1008 (policy
/// violation) rather than 4403, because the token is valid and a later retry may succeed.
pub const CLOSE_TOO_MANY_CONNECTIONS: u16 = 1008;

/// The subprotocols, in order of preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws`, the current protocol.
    TransportWs,
    /// `graphql-ws`, the legacy subscriptions-transport-ws protocol.
    LegacyWs,
}

impl Protocol {
    /// Every protocol, preferred first.
    pub const ALL: [Protocol; 2] = [Protocol::TransportWs, Protocol::LegacyWs];

    /// The `Sec-WebSocket-Protocol` token.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::TransportWs => "graphql-transport-ws",
            Protocol::LegacyWs => "graphql-ws",
        }
    }

    /// The preferred protocol among those a `Sec-WebSocket-Protocol` header offers
    /// (comma-separated; the header may be repeated, so pass every value).
    pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<Protocol> {
        let offered: Vec<&str> = offered
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        Protocol::ALL
            .into_iter()
            .find(|p| offered.iter().any(|o| o.eq_ignore_ascii_case(p.name())))
    }

    /// The message type that carries a result.
    fn next_type(self) -> &'static str {
        match self {
            Protocol::TransportWs => "next",
            Protocol::LegacyWs => "data",
        }
    }
}

/// Socket settings; their defaults live in `config::Settings`.
#[derive(Clone, Debug)]
pub struct WsConfig {
    /// How long a client may take to send `connection_init`.
    pub init_timeout: Duration,
    /// Interval of legacy `ka` messages.
    pub keepalive: Duration,
    /// Active subscriptions allowed on one connection.
    pub max_subscriptions: usize,
    /// Connections allowed at once for one token.
    pub max_connections_per_token: usize,
    /// Frames queued for one connection's socket; a shared subscription whose connection
    /// queue is full is ended with `SLOW_CONSUMER`.
    pub send_queue: usize,
}

/// A frame from the client, as the transport received it.
#[derive(Debug)]
pub enum Inbound {
    Text(String),
    /// Neither protocol uses binary frames.
    Binary,
}

/// A frame for the client.
#[derive(Debug)]
pub enum Outbound {
    /// A complete text message.
    Text(String),
    /// A result whose serialised payload may be shared with other subscribers; wrapped with
    /// the operation's id only when written.
    Result {
        /// `next` or `data`.
        kind: &'static str,
        /// The operation id, already a JSON string literal.
        id: Arc<str>,
        /// The ExecutionResult JSON.
        payload: Arc<str>,
    },
    /// Close the socket with this code and reason (under 123 bytes); nothing follows.
    Close { code: u16, reason: String },
}

/// What the transport writes: a text message or a close frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Close(u16, String),
}

impl Outbound {
    /// The frame to write.
    pub fn into_frame(self) -> Frame {
        match self {
            Outbound::Text(text) => Frame::Text(text),
            Outbound::Result { kind, id, payload } => {
                let mut text = String::with_capacity(id.len() + payload.len() + 32);
                text.push_str("{\"id\":");
                text.push_str(&id);
                text.push_str(",\"type\":\"");
                text.push_str(kind);
                text.push_str("\",\"payload\":");
                text.push_str(&payload);
                text.push('}');
                Frame::Text(text)
            }
            Outbound::Close { code, reason } => Frame::Close(code, reason),
        }
    }
}

/// Turns a bearer token into the actor it speaks for; the error is a message fit to show.
pub type TokenVerifier = Arc<dyn Fn(&str) -> Result<Actor, String> + Send + Sync>;

/// What a session executes operations on: the gateway, or a small schema in unit tests.
pub trait Engine: Send + Sync + 'static {
    /// Parses and checks a request and attaches what resolvers read; the errors are the
    /// failure before execution.
    fn prepare(&self, request: Request, caller: Caller) -> Result<Request, Vec<ServerError>>;
    /// Runs a prepared request: one response for a query or mutation, a stream for a
    /// subscription. A first response that failed before execution carries no data.
    fn execute_stream(&self, request: Request) -> BoxStream<'static, Response>;
    /// Checks a prepared operation against the caller's rate limits; `Err` is the reason to
    /// close with (4429).
    fn admit<'a>(
        &'a self,
        _request: &'a mut Request,
        _caller: &'a Caller,
    ) -> futures_util::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

impl Engine for Gateway {
    fn prepare(&self, request: Request, caller: Caller) -> Result<Request, Vec<ServerError>> {
        let requested = request.operation_name.clone();
        prepare_execution(self, request, caller, None)
            .map(|(request, _scope)| request)
            .map_err(|response| {
                let metrics = self.metrics();
                metrics.answered(&metrics.unread(requested.as_deref()), &response, None);
                response.errors
            })
    }

    /// Counted once per execution (a `Hub` group shares one); a query or mutation is timed to
    /// its response, a subscription not at all.
    fn execute_stream(&self, mut request: Request) -> BoxStream<'static, Response> {
        let metrics = self.metrics().clone();
        let operation = metrics.operation_of(&mut request);
        metrics.count(&operation);
        let mut timed = (operation.kind() != "subscription").then(std::time::Instant::now);
        self.schema()
            .execute_stream(request)
            .map(move |mut response| {
                label_request_errors(&mut response);
                metrics.errors(&response.errors);
                if let Some(started) = timed.take() {
                    metrics.took(&operation, started.elapsed());
                }
                response
            })
            .boxed()
    }

    fn admit<'a>(
        &'a self,
        request: &'a mut Request,
        caller: &'a Caller,
    ) -> futures_util::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let subject = super::transport::rate_subject(caller, None);
            match super::transport::admit(self, request, &subject).await {
                Ok(_) => Ok(()),
                Err((response, decision)) => Err({
                    let metrics = self.metrics();
                    metrics.answered(&metrics.operation_of(request), &response, None);
                    format!(
                        "Too many requests: rate limit exceeded; retry after {} s",
                        decision.retry_after_secs()
                    )
                }),
            }
        })
    }
}

/// What every session on one server shares.
pub struct WsContext<E> {
    pub engine: E,
    pub verify: TokenVerifier,
    pub limiter: ConnectionLimiter,
    pub hub: Hub,
    pub config: WsConfig,
    /// Set when the server begins to shut down: every session closes with 1012.
    pub drain: Drain,
    /// Where open connections and active subscriptions are counted.
    pub metrics: super::GraphqlMetrics,
}

/// The start of a graceful shutdown, seen by every session and by `/readyz`; cheap to clone.
#[derive(Clone, Debug)]
pub struct Drain {
    tx: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            tx: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }
}

impl Drain {
    /// Begins draining: `/readyz` turns unready and WebSockets close with a code clients
    /// reconnect after (1012, service restart).
    pub fn start(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once draining has begun.
    pub async fn started(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|draining| *draining).await;
    }
}

/// Cuts a close reason to the 123 bytes a close frame allows, on a character boundary.
fn close_reason(reason: &str) -> String {
    const MAX: usize = 122;
    if reason.len() <= MAX {
        return reason.to_owned();
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

/// Serialises an execution result once, as the payload of `next`/`data`.
fn result_json(response: &Response) -> Arc<str> {
    match serde_json::to_string(&super::transport::body_of(response)) {
        Ok(json) => json.into(),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise a subscription result");
            Arc::from(r#"{"errors":[{"message":"internal error","extensions":{"code":"INTERNAL"}}]}"#)
        }
    }
}
