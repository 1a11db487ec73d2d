//! `/graphql/ws`: negotiates the subprotocol, upgrades with small socket buffers (an idle
//! connection should cost a few kilobytes), and moves frames between the socket and a
//! `graphql::ws::Session`, which owns the protocol.
//!
//! A request offering neither `graphql-transport-ws` nor `graphql-ws` is refused with 400
//! before the upgrade: neither protocol document defines a close code for it, and a client
//! that asked for a subprotocol must fail a handshake that selects none anyway.

use super::AppState;
use crate::graphql::Gateway;
use crate::graphql::ws::{Frame, Inbound, Protocol, Session, WsContext};
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use std::future::ready;
use std::sync::Arc;

/// Bytes tungstenite reads at a time; messages larger than this still arrive whole.
const READ_BUFFER: usize = 4 * 1024;

pub(super) async fn graphql_ws(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let Some(protocol) = Protocol::negotiate(offered) else {
        return (
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Protocol must offer graphql-transport-ws or graphql-ws",
        )
            .into_response();
    };
    let header_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| super::strip_bearer(v).unwrap_or(v).to_owned());
    let ctx = state.ws.clone();
    upgrade
        .protocols([protocol.name()])
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(state.config.max_body_bytes)
        .on_upgrade(move |socket| connection(ctx, protocol, header_token, socket))
}

async fn connection(
    ctx: Arc<WsContext<Gateway>>,
    protocol: Protocol,
    header_token: Option<String>,
    socket: WebSocket,
) {
    let (session, mut outbound) = Session::new(ctx, protocol, header_token);
    let (mut sink, stream) = socket.split();
    let inbound = stream
        .take_while(|message| ready(message.is_ok()))
        .filter_map(|message| {
            ready(match message {
                Ok(Message::Text(text)) => Some(Inbound::Text(text.as_str().to_owned())),
                Ok(Message::Binary(_)) => Some(Inbound::Binary),
                _ => None,
            })
        })
        .boxed();
    let writer = async move {
        while let Some(frame) = outbound.recv().await {
            let message = match frame.into_frame() {
                Frame::Text(text) => Message::Text(text.into()),
                Frame::Close(code, reason) => {
                    let close = CloseFrame {
                        code,
                        reason: reason.into(),
                    };
                    let _ = sink.send(Message::Close(Some(close))).await;
                    return;
                }
            };
            if sink.send(message).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(session.run(inbound), writer);
}
