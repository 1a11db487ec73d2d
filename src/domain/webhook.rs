//! Outbound webhooks: endpoints partners register to receive events, and the log of every
//! delivery attempt.

use super::error::{FieldError, FieldErrorCode};
use super::event::EVENT_TYPES;
use super::ids::{DeliveryId, WebhookId, WorkspaceId};
use super::lead::Timestamp;
use super::providers::SealedKey;

/// Longest accepted endpoint URL.
pub const MAX_URL_LEN: usize = 2048;

/// A registered receiver of events.
#[derive(Clone, PartialEq, Debug)]
pub struct WebhookEndpoint {
    pub id: WebhookId,
    pub workspace_id: WorkspaceId,
    pub url: String,
    pub description: Option<String>,
    /// Event types delivered (log spellings, e.g. `lead.created`).
    pub event_types: Vec<String>,
    /// The signing secret, sealed under the master key.
    pub secret: SealedKey,
    pub enabled: bool,
    /// Why the endpoint was switched off, when it was.
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<Timestamp>,
    /// Deliveries dead-lettered in a row; reset by any success.
    pub consecutive_failures: u32,
    /// The newest event number already queued for delivery.
    pub cursor: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl WebhookEndpoint {
    /// Whether events of `kind` go to this endpoint.
    pub fn wants(&self, kind: &str) -> bool {
        self.event_types.iter().any(|t| t == kind)
    }
}

/// One attempt to deliver one event to one endpoint.
#[derive(Clone, PartialEq, Debug)]
pub struct WebhookDelivery {
    /// Assigned by the store; 0 before it is written.
    pub id: DeliveryId,
    pub workspace_id: WorkspaceId,
    pub endpoint_id: WebhookId,
    pub event_seq: i64,
    pub event_type: String,
    pub attempt: u32,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// The start of the receiver's answer.
    pub response_body: Option<String>,
    /// Why the attempt failed, when it did.
    pub error: Option<String>,
    pub duration_ms: u32,
    pub succeeded: bool,
    pub at: Timestamp,
}

/// Checks an endpoint URL: absolute `http(s)`, a host, no spaces, not too long.
pub fn parse_webhook_url(field: &str, raw: &str) -> Result<String, FieldError> {
    let url = raw.trim();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| FieldError::invalid(field, "must be an absolute http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') || host.contains('@') {
        return Err(FieldError::invalid(field, "must name a host (and no user info)"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(FieldError::invalid(
            field,
            "must not contain spaces or control characters",
        ));
    }
    if url.len() > MAX_URL_LEN {
        return Err(FieldError::new(
            field,
            FieldErrorCode::TooLong,
            format!("must be at most {MAX_URL_LEN} characters"),
        ));
    }
    Ok(url.to_owned())
}

/// Checks the event types an endpoint asks for: at least one, all known, no repeats.
pub fn parse_event_types(field: &str, raw: &[String]) -> Result<Vec<String>, FieldError> {
    if raw.is_empty() {
        return Err(FieldError::new(
            field,
            FieldErrorCode::Required,
            "name at least one event type",
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for t in raw {
        if !EVENT_TYPES.contains(&t.as_str()) {
            return Err(FieldError::invalid(field, format!("unknown event type {t}")));
        }
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_absolute_http_with_a_host() {
        assert_eq!(
            parse_webhook_url("url", " https://hooks.example/in?x=1 ").unwrap(),
            "https://hooks.example/in?x=1"
        );
        assert!(parse_webhook_url("url", "http://127.0.0.1:9000/").is_ok());
        for bad in [
            "",
            "hooks.example/in",
            "ftp://x",
            "https://",
            "https:///path",
            "https://u:p@x/",
            "https://a b/",
            "http://:80/",
        ] {
            assert!(parse_webhook_url("url", bad).is_err(), "{bad}");
        }
        let long = format!("https://x/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(
            parse_webhook_url("url", &long).unwrap_err().code,
            FieldErrorCode::TooLong
        );
    }

    #[test]
    fn event_types_must_be_known_and_present() {
        let ok = parse_event_types("eventTypes", &["lead.created".into(), "lead.created".into()]).unwrap();
        assert_eq!(ok, vec!["lead.created".to_owned()]);
        assert!(parse_event_types("eventTypes", &[]).is_err());
        assert!(parse_event_types("eventTypes", &["lead.exploded".into()]).is_err());
    }
}
