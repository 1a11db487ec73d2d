//! CRM connectors: the `CrmConnector` contract one CRM implements (`hubspot/`,
//! `salesforce/`, `pipedrive/`, one folder each like the enrichment providers), and their
//! metrics. The sync around them (pushes through the job queue, inbound webhooks, polling) is
//! `service::crm`.
//!
//! A connector speaks one CRM's HTTP API and nothing else: it renders a batch of mapped
//! records into the CRM's request and reads per-record outcomes back, lists changed records
//! for a poll, and verifies and parses the CRM's webhooks. What to send, when, how often and
//! what to do with the answers is the engine's. Every request goes through the outbound
//! address guard (`net::OutboundClient`), since `apiBaseUrl` and the token URL are an admin's
//! input. Answers are classified once, here (`classify`): 429 and 5xx are worth retrying
//! (`Retry-After` honoured), 401 means the token, other 4xx are the request's fault.

pub mod hubspot;
pub mod metrics;
pub mod pipedrive;
pub mod salesforce;

use crate::domain::{CrmCredentials, CrmKind, LeadId};
use crate::net::{OutboundClient, refusal};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::time::Duration;

/// Characters of a CRM's answer kept with an error (and in a dead job's history).
pub const EXCERPT: usize = 600;

/// One record to write: the lead, its known CRM id, and its mapped property values.
#[derive(Clone, Debug, PartialEq)]
pub struct OutgoingRecord {
    pub lead_id: LeadId,
    pub external_id: Option<String>,
    pub properties: BTreeMap<String, String>,
}

/// What the CRM said about one record of a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordOutcome {
    pub lead_id: LeadId,
    pub result: Written,
}

/// One record's fate in a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Written {
    /// Written; the record's CRM id.
    Ok(String),
    /// Refused for this record's values: retrying cannot help until the lead changes.
    Refused(String),
    /// Not written because another record failed the request: worth sending again.
    NotWritten(String),
}

/// A record as a poll or a fetch found it.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteRecord {
    pub external_id: String,
    /// Property values (`None` = empty in the CRM).
    pub properties: BTreeMap<String, Option<String>>,
    /// When the CRM last changed it, epoch milliseconds.
    pub updated_at_ms: i64,
}

/// One page of a poll.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ChangePage {
    pub records: Vec<RemoteRecord>,
    /// Records deleted (archived) in the CRM since the cursor.
    pub deleted: Vec<(String, i64)>,
    /// Where the next page starts; `None` when this was the last one (the next poll then
    /// starts from `CrmConnector::resume_cursor`).
    pub next: Option<String>,
}

/// What an inbound event says happened to a record.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A new record; its values are fetched when the event carries none.
    Created(Option<BTreeMap<String, Option<String>>>),
    /// Properties changed (the new values).
    Changed(BTreeMap<String, Option<String>>),
    Deleted,
}

/// One event of an inbound webhook.
#[derive(Clone, Debug, PartialEq)]
pub struct InboundEvent {
    /// The CRM's id of the event (idempotence).
    pub event_id: String,
    pub external_id: String,
    /// When it happened in the CRM, epoch milliseconds.
    pub occurred_at_ms: i64,
    pub change: Change,
}

/// An inbound webhook request as received, for verification.
#[derive(Clone, Debug)]
pub struct InboundRequest<'a> {
    pub method: &'a str,
    /// The full URL the CRM called (scheme, host, path and query).
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl InboundRequest<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a CRM call did not do its work.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CrmError {
    /// 429: slow down; retry after the delay when known.
    #[error("rate limited by the CRM{}", after(.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx, a timeout or a lost connection: worth retrying.
    #[error("{message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// 401: the token is missing, wrong or expired.
    #[error("the CRM refused the credentials: {0}")]
    Unauthorized(String),
    /// Any other refusal of the request as a whole (4xx, a malformed answer, a refused
    /// address): retrying the same request cannot help.
    #[error("{0}")]
    Rejected(String),
}

fn after(d: &Option<Duration>) -> String {
    d.map(|d| format!(" (retry after {} s)", d.as_secs_f64().ceil()))
        .unwrap_or_default()
}

/// What a connector call may use: the guarded client, where the CRM lives, the credentials.
pub struct CallContext<'a> {
    pub client: &'a OutboundClient,
    /// `apiBaseUrl` without a trailing slash.
    pub base_url: &'a str,
    pub token_url: Option<&'a str>,
    pub credentials: &'a CrmCredentials,
}

/// A fresh access token from a refresh (Salesforce).
#[derive(Clone, Debug, PartialEq)]
pub struct Refreshed {
    pub access_token: String,
    /// The instance URL the token is for, when the CRM says.
    pub instance_url: Option<String>,
}

/// One CRM's API.
#[async_trait]
pub trait CrmConnector: Send + Sync {
    fn kind(&self) -> CrmKind;

    /// Checks the credentials with a cheap read; `Ok` says what was reached.
    async fn check(&self, ctx: &CallContext<'_>) -> Result<String, CrmError>;

    /// Why the CRM cannot take `record` at all (HubSpot: no email and no contact id yet), so
    /// it is settled before batching instead of taking a place in a request.
    fn unsendable(&self, _record: &OutgoingRecord) -> Option<String> {
        None
    }

    /// The exact request body a batch becomes (for `previewCrmPush` and for dead jobs).
    fn render(&self, records: &[OutgoingRecord]) -> serde_json::Value;

    /// Writes one batch (at most `kind().batch_size()` records); one outcome per record, in
    /// the batch's order.
    async fn upsert(
        &self,
        ctx: &CallContext<'_>,
        records: &[OutgoingRecord],
    ) -> Result<Vec<RecordOutcome>, CrmError>;

    /// Records changed since `cursor` (`None`: from the beginning), one page, with the values
    /// of `properties`.
    async fn changed_since(
        &self,
        ctx: &CallContext<'_>,
        cursor: Option<&str>,
        properties: &[String],
    ) -> Result<ChangePage, CrmError>;

    /// The cursor a poll starts from that picks up every change at or after `newest_ms`.
    fn resume_cursor(&self, newest_ms: i64) -> String;

    /// One record by its CRM id, with the values of `properties`; `None` when the CRM has no
    /// such record.
    async fn fetch(
        &self,
        ctx: &CallContext<'_>,
        external_id: &str,
        properties: &[String],
    ) -> Result<Option<RemoteRecord>, CrmError>;

    /// A new access token from the refresh token, for CRMs with OAuth refresh.
    async fn refresh(&self, _ctx: &CallContext<'_>) -> Result<Option<Refreshed>, CrmError> {
        Ok(None)
    }

    /// Whether an inbound webhook request really comes from the CRM; the reason when not.
    fn verify(
        &self,
        credentials: &CrmCredentials,
        request: &InboundRequest<'_>,
        now_ms: i64,
    ) -> Result<(), String>;

    /// The events of a verified request's body; the reason when it is malformed.
    fn parse_events(&self, body: &[u8]) -> Result<Vec<InboundEvent>, String>;
}

/// The connector for `kind`.
pub fn connector(kind: CrmKind) -> Box<dyn CrmConnector> {
    match kind {
        CrmKind::HubSpot => Box::new(hubspot::HubSpot),
        CrmKind::Salesforce => Box::new(salesforce::Salesforce),
        CrmKind::Pipedrive => Box::new(pipedrive::Pipedrive),
    }
}

/// Request timeout towards a CRM.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The guarded client CRM requests go through: no redirects (an API answer that redirects is
/// an answer), a timeout, and the outbound address guard of `policy`.
pub fn client(policy: &crate::net::OutboundPolicy) -> OutboundClient {
    policy
        .client(
            reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .user_agent(concat!("leadgate/", env!("CARGO_PKG_VERSION"))),
            crate::net::Redirects::None,
        )
        .expect("a TLS backend is compiled in")
}

/// An answer read whole: status, the headers a connector needs, and the body.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The start of the body, for error messages.
    pub fn excerpt(&self) -> String {
        excerpt(&self.body)
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, CrmError> {
        serde_json::from_str(&self.body).map_err(|e| {
            CrmError::Rejected(format!(
                "the CRM's answer to {what} is not what its API documents ({e}): {}",
                self.excerpt()
            ))
        })
    }
}

pub fn excerpt(text: &str) -> String {
    let mut end = text.len().min(EXCERPT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() {
        format!("{}…", &text[..end])
    } else {
        text.to_owned()
    }
}

/// Sends a request and reads the answer; a transport failure is `Transient` (or `Rejected`
/// when the address guard refused the destination).
pub async fn send(request: reqwest::RequestBuilder) -> Result<Reply, CrmError> {
    let response = request.send().await.map_err(|e| {
        if let Some(refused) = refusal(&e) {
            CrmError::Rejected(refused.to_string())
        } else {
            CrmError::Transient {
                message: format!("cannot reach the CRM: {}", without_url(&e)),
                retry_after: None,
            }
        }
    })?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.map_err(|e| CrmError::Transient {
        message: format!("the CRM's answer broke off: {}", without_url(&e)),
        retry_after: None,
    })?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// What went wrong with a request, without the URL (whose query can carry a token).
fn without_url(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the body could not be read"
    } else {
        "request failed"
    }
}

/// A guarded request; a URL the guard refuses is `Rejected` before anything is sent.
pub fn request(
    ctx: &CallContext<'_>,
    method: reqwest::Method,
    url: &str,
) -> Result<reqwest::RequestBuilder, CrmError> {
    ctx.client
        .request(method, url)
        .map_err(|e| CrmError::Rejected(e.to_string()))
}

pub fn get(ctx: &CallContext<'_>, url: &str) -> Result<reqwest::RequestBuilder, CrmError> {
    request(ctx, reqwest::Method::GET, url)
}

pub fn post(ctx: &CallContext<'_>, url: &str) -> Result<reqwest::RequestBuilder, CrmError> {
    request(ctx, reqwest::Method::POST, url)
}

/// Turns a non-2xx answer into the error it means: 429 → `RateLimited`, 5xx → `Transient`,
/// 401 → `Unauthorized`, other 4xx → `Rejected`; `what` names the call in the message.
pub fn classify(reply: &Reply, what: &str) -> CrmError {
    let retry_after = reply.header("retry-after").and_then(parse_retry_after);
    match reply.status {
        429 => CrmError::RateLimited { retry_after },
        500..=599 => CrmError::Transient {
            message: format!("{what}: the CRM answered {}: {}", reply.status, reply.excerpt()),
            retry_after,
        },
        401 => CrmError::Unauthorized(format!("{what}: {}", reply.excerpt())),
        status => CrmError::Rejected(format!("{what}: the CRM answered {status}: {}", reply.excerpt())),
    }
}

/// `Retry-After` in seconds (HTTP dates are read too).
pub fn parse_retry_after(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    if let Ok(secs) = raw.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(raw).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// A JSON value as property text: strings as they are, numbers and booleans spelled out,
/// null and empty as `None`.
pub fn property_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) if s.is_empty() => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) => items.iter().find_map(property_text),
        serde_json::Value::Object(o) => o.get("value").and_then(property_text),
        other => Some(other.to_string()),
    }
}

/// Milliseconds since the epoch of an RFC 3339 time (`2026-12-04T10:00:00.000Z`, or
/// Salesforce's `+0000` offset).
pub fn epoch_ms(raw: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .or_else(|_| chrono::DateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S")
                .map(|t| t.and_utc().fixed_offset())
        })
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn times_read_in_every_crm_spelling() {
        assert_eq!(epoch_ms("1970-01-01T00:00:01.500Z"), Some(1500));
        assert_eq!(epoch_ms("1970-01-01T00:00:02.000+0000"), Some(2000));
        assert_eq!(epoch_ms("1970-01-01 00:00:03"), Some(3000));
        assert_eq!(epoch_ms("yesterday"), None);
    }

    #[test]
    fn property_values_read_as_text() {
        use serde_json::json;
        assert_eq!(property_text(&json!("x")), Some("x".into()));
        assert_eq!(property_text(&json!("")), None);
        assert_eq!(property_text(&json!(42)), Some("42".into()));
        assert_eq!(
            property_text(&json!([{"value": "a@b.c", "primary": true}])),
            Some("a@b.c".into())
        );
    }

    #[test]
    fn excerpts_cut_on_character_boundaries() {
        let long = "é".repeat(EXCERPT);
        let cut = excerpt(&long);
        assert!(cut.ends_with('…'));
        assert!(cut.len() <= EXCERPT + '…'.len_utf8());
    }
}
