//! Client messages of both subprotocols, decoded strictly: every field has the type its
//! protocol document gives it, and anything else is an `Invalid` with a short reason.

use super::Protocol;
use serde_json::{Map, Value};

/// A decoded client message, in terms common to both protocols.
#[derive(Debug, PartialEq)]
pub(super) enum ClientMessage {
    /// `connection_init`, with its payload when it is an object.
    Init(Option<Map<String, Value>>),
    /// `ping` (graphql-transport-ws), with the payload to echo.
    Ping(Option<Value>),
    /// `pong` (graphql-transport-ws): ignored.
    Pong,
    /// `subscribe` or `start`.
    Subscribe { id: String, payload: Operation },
    /// `complete` from the client or `stop`.
    Stop { id: String },
    /// `connection_terminate` (graphql-ws).
    Terminate,
}

/// The operation a `subscribe`/`start` asks for.
#[derive(Debug, PartialEq)]
pub(super) struct Operation {
    pub query: String,
    pub operation_name: Option<String>,
    pub variables: Option<Value>,
    pub extensions: Option<Map<String, Value>>,
}

/// Why a message was refused.
#[derive(Debug, PartialEq)]
pub(super) enum Invalid {
    /// Not a JSON object.
    NotJson,
    /// A JSON object that is not a valid message; `id` when it carried a usable one.
    Message { id: Option<String>, reason: String },
}

impl Invalid {
    fn message(id: Option<&str>, reason: impl Into<String>) -> Self {
        Invalid::Message {
            id: id.map(str::to_owned),
            reason: reason.into(),
        }
    }

    /// The reason, for a close frame or an error message.
    pub(super) fn reason(&self) -> &str {
        match self {
            Invalid::NotJson => "Invalid message: not a JSON object",
            Invalid::Message { reason, .. } => reason,
        }
    }
}

/// Decodes one text frame.
pub(super) fn decode(protocol: Protocol, text: &str) -> Result<ClientMessage, Invalid> {
    let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(text) else {
        return Err(Invalid::NotJson);
    };
    let id = match map.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(Invalid::message(None, "Invalid message: `id` must be a string")),
    };
    let Some(Value::String(kind)) = map.remove("type") else {
        return Err(Invalid::message(
            id.as_deref(),
            "Invalid message: `type` must be a string",
        ));
    };
    let payload = map.remove("payload");
    match (protocol, kind.as_str()) {
        (_, "connection_init") => init(protocol, payload),
        (Protocol::TransportWs, "ping") => optional_object(payload, "ping").map(ClientMessage::Ping),
        (Protocol::TransportWs, "pong") => optional_object(payload, "pong").map(|_| ClientMessage::Pong),
        (Protocol::TransportWs, "subscribe") | (Protocol::LegacyWs, "start") => {
            let id = required_id(id, &kind)?;
            let payload = operation(payload).map_err(|reason| Invalid::message(Some(&id), reason))?;
            Ok(ClientMessage::Subscribe { id, payload })
        }
        (Protocol::TransportWs, "complete") | (Protocol::LegacyWs, "stop") => {
            required_id(id, &kind).map(|id| ClientMessage::Stop { id })
        }
        (Protocol::LegacyWs, "connection_terminate") => Ok(ClientMessage::Terminate),
        _ => Err(Invalid::message(
            id.as_deref(),
            format!(
                "Invalid message: unknown type `{}`",
                kind.chars().take(40).collect::<String>()
            ),
        )),
    }
}

/// graphql-transport-ws wants an object or null; the legacy document only says "Object", so a
/// legacy payload of another type counts as carrying no parameters.
fn init(protocol: Protocol, payload: Option<Value>) -> Result<ClientMessage, Invalid> {
    match (protocol, payload) {
        (_, Some(Value::Object(map))) => Ok(ClientMessage::Init(Some(map))),
        (_, None | Some(Value::Null)) | (Protocol::LegacyWs, Some(_)) => Ok(ClientMessage::Init(None)),
        (Protocol::TransportWs, Some(_)) => Err(Invalid::message(
            None,
            "Invalid message: `connection_init` payload must be an object",
        )),
    }
}

fn optional_object(payload: Option<Value>, kind: &str) -> Result<Option<Value>, Invalid> {
    match payload {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v)),
        Some(_) => Err(Invalid::message(
            None,
            format!("Invalid message: `{kind}` payload must be an object"),
        )),
    }
}

fn required_id(id: Option<String>, kind: &str) -> Result<String, Invalid> {
    id.filter(|id| !id.is_empty()).ok_or_else(|| {
        Invalid::message(
            None,
            format!("Invalid message: `{kind}` needs a non-empty string `id`"),
        )
    })
}

fn operation(payload: Option<Value>) -> Result<Operation, String> {
    let Some(Value::Object(mut map)) = payload else {
        return Err("Invalid message: `payload` must be an object with a `query`".into());
    };
    let query = match map.remove("query") {
        Some(Value::String(q)) => q,
        _ => return Err("Invalid message: `payload.query` must be a string".into()),
    };
    let operation_name = match map.remove("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err("Invalid message: `payload.operationName` must be a string".into()),
    };
    let variables = match map.remove("variables") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v),
        Some(_) => return Err("Invalid message: `payload.variables` must be an object".into()),
    };
    let extensions = match map.remove("extensions") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err("Invalid message: `payload.extensions` must be an object".into()),
    };
    Ok(Operation {
        query,
        operation_name,
        variables,
        extensions,
    })
}

/// The bearer token in a `connection_init` payload: `Authorization` (any case; `Bearer ` is
/// optional) or `token`.
pub(super) fn token_in(payload: &Map<String, Value>) -> Option<&str> {
    let authorization = payload
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| v.as_str())
        .map(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .unwrap_or(v)
        });
    authorization
        .or_else(|| payload.get("token").and_then(Value::as_str))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn invalid_reason(protocol: Protocol, text: &str) -> String {
        decode(protocol, text).unwrap_err().reason().to_owned()
    }

    #[test]
    fn malformed_json_is_not_json() {
        assert_eq!(decode(Protocol::TransportWs, "{oops"), Err(Invalid::NotJson));
        assert_eq!(decode(Protocol::TransportWs, "[1]"), Err(Invalid::NotJson));
    }

    #[test]
    fn a_type_that_is_not_a_string_is_invalid() {
        assert!(invalid_reason(Protocol::TransportWs, r#"{"type":3}"#).contains("`type`"));
        assert!(invalid_reason(Protocol::TransportWs, r#"{"id":1,"type":"complete"}"#).contains("`id`"));
    }

    #[test]
    fn each_protocol_knows_only_its_own_types() {
        assert!(
            decode(
                Protocol::TransportWs,
                r#"{"type":"start","id":"1","payload":{"query":"{a}"}}"#
            )
            .is_err()
        );
        assert!(
            decode(
                Protocol::LegacyWs,
                r#"{"type":"subscribe","id":"1","payload":{"query":"{a}"}}"#
            )
            .is_err()
        );
        assert!(decode(Protocol::LegacyWs, r#"{"type":"ping"}"#).is_err());
        assert_eq!(
            decode(Protocol::LegacyWs, r#"{"type":"connection_terminate"}"#),
            Ok(ClientMessage::Terminate)
        );
    }

    #[test]
    fn unknown_types_keep_their_id() {
        assert_eq!(
            decode(Protocol::LegacyWs, r#"{"type":"bogus","id":"7"}"#),
            Err(Invalid::Message {
                id: Some("7".into()),
                reason: "Invalid message: unknown type `bogus`".into()
            })
        );
    }

    #[test]
    fn subscribe_needs_an_id_and_a_string_query() {
        assert!(
            decode(
                Protocol::TransportWs,
                r#"{"type":"subscribe","payload":{"query":"{a}"}}"#
            )
            .is_err()
        );
        assert!(
            decode(
                Protocol::TransportWs,
                r#"{"type":"subscribe","id":"","payload":{"query":"{a}"}}"#
            )
            .is_err()
        );
        assert!(
            decode(
                Protocol::TransportWs,
                r#"{"type":"subscribe","id":"1","payload":{"query":1}}"#
            )
            .is_err()
        );
        assert!(decode(Protocol::TransportWs, r#"{"type":"subscribe","id":"1"}"#).is_err());
        assert!(
            decode(
                Protocol::TransportWs,
                r#"{"type":"subscribe","id":"1","payload":{"query":"{a}","variables":[1]}}"#
            )
            .is_err()
        );
    }

    #[test]
    fn subscribe_decodes_every_field() {
        let message = decode(
            Protocol::TransportWs,
            r#"{"type":"subscribe","id":"a","payload":{"query":"{a}","operationName":"A","variables":{"x":1},"extensions":null}}"#,
        );
        assert_eq!(
            message,
            Ok(ClientMessage::Subscribe {
                id: "a".into(),
                payload: Operation {
                    query: "{a}".into(),
                    operation_name: Some("A".into()),
                    variables: Some(json!({"x": 1})),
                    extensions: None,
                }
            })
        );
    }

    #[test]
    fn ping_payload_must_be_an_object_or_null() {
        assert_eq!(
            decode(Protocol::TransportWs, r#"{"type":"ping","payload":{"n":1}}"#),
            Ok(ClientMessage::Ping(Some(json!({"n": 1}))))
        );
        assert!(decode(Protocol::TransportWs, r#"{"type":"ping","payload":"x"}"#).is_err());
    }

    #[test]
    fn init_payload_must_be_an_object_on_transport_ws_only() {
        assert!(
            decode(
                Protocol::TransportWs,
                r#"{"type":"connection_init","payload":"x"}"#
            )
            .is_err()
        );
        assert_eq!(
            decode(Protocol::LegacyWs, r#"{"type":"connection_init","payload":"x"}"#),
            Ok(ClientMessage::Init(None))
        );
    }

    #[test]
    fn tokens_come_from_authorization_or_token() {
        let map = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(
            token_in(&map(json!({"Authorization": "Bearer abc"}))),
            Some("abc")
        );
        assert_eq!(
            token_in(&map(json!({"authorization": "bearer abc"}))),
            Some("abc")
        );
        assert_eq!(token_in(&map(json!({"token": "abc"}))), Some("abc"));
        assert_eq!(token_in(&map(json!({"token": ""}))), None);
        assert_eq!(token_in(&map(json!({"other": "abc"}))), None);
    }
}
