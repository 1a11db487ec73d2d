//! Inbound mail events: a verified HTTP POST from a mail provider becomes normalized
//! [`MailEvent`]s (delivered, bounced, deferred, replied, unsubscribed, complained, clicked,
//! opened). [`receive`] is the one entry point; the caller limits the body size, picks the
//! [`Provider`] from the path segment (`generic`, `mailgun`, `sendgrid`) and maps
//! [`InboundError`] to an HTTP status ([`InboundError::http_status`]).
//!
//! Every request is authenticated before any event is produced, and a batch is all or nothing:
//! one malformed event refuses the whole request (`Malformed`, naming the index), so a provider
//! retry never half-applies. Events a provider sends that mean nothing here (Mailgun `accepted`,
//! SendGrid `processed`, unknown future names) are skipped, not refused. Message ids are
//! normalized (angle brackets and whitespace removed); `detail` keeps at most 500 characters.
//! An event without a provider id gets a stable id: a SHA-256 over its normalized fields, so a
//! redelivery dedupes to the same id.
//!
//! Sources: documentation.mailgun.com (Securing Webhooks, Webhook Payloads, Event Types,
//! Receiving Messages via HTTP) and twilio.com/docs/sendgrid (Event Webhook Reference, Event
//! Webhook Security Features, Inbound Parse); what could not be re-checked against them is
//! marked "unconfirmed".
//!
//! Retries: whether Mailgun and SendGrid sign a retried delivery anew, with a fresh timestamp,
//! could not be checked (unconfirmed). If a retry carries the first attempt's signature, one
//! made later than the tolerance is refused as stale (401) and the provider keeps retrying
//! until it gives up; widen the tolerance with [`Verifier::with_tolerance`] if that shows.
//!
//! # Generic (`generic`)
//!
//! The project's own format, signed like its outbound webhooks: header
//! `Leadgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>` (several
//! `v1` are allowed, for secret rotation), under `generic_secret`, with `t` within the tolerance
//! of now. Body (`application/json`), at most 1000 events:
//!
//! ```json
//! {"events": [{"id": "evt_1", "type": "bounced", "messageId": "<a@b>", "inReplyTo": "<c@d>",
//!   "references": ["<e@f>"], "recipient": "ada@example.com", "occurredAt": "2026-03-01T12:00:05Z",
//!   "url": "https://…", "permanent": true, "detail": "550 5.1.1 user unknown"}]}
//! ```
//!
//! `type` (one of `delivered bounced deferred replied unsubscribed complained clicked opened`)
//! and `occurredAt` (RFC 3339) are required; an unknown `type` is refused, since this format is
//! ours. `permanent` only matters for `bounced` and defaults to `true` when absent. Without
//! `id`, the event gets the stable hash id.
//!
//! # Mailgun (`mailgun`)
//!
//! Signature (Mailgun's "Securing Webhooks"): hex HMAC-SHA256 under the webhook signing key
//! over `timestamp` immediately followed by `token`; the `timestamp` (unix seconds) must lie
//! within the tolerance. A subaccount's events also carry `parent-signature` (same scheme, the
//! primary account's key); either one verifying is enough.
//!
//! * Event webhooks, `application/json`, one event per request:
//!   `{"signature": {"timestamp": "1529006854", "token": "…", "signature": "<hex>"},
//!   "event-data": {"event": "…", "id": "…", "timestamp": 1529006854.329574, "recipient": "…",
//!   "severity": "permanent|temporary", "reason": "…", "url": "…",
//!   "message": {"headers": {"message-id": "…"}},
//!   "delivery-status": {"code": 550, "message": "…", "description": "…"}}}`.
//!   `delivered` → Delivered; `failed` with severity `permanent` → Bounced (permanent), with
//!   `temporary` → Deferred (a `failed` event without a severity is refused); `rejected` →
//!   Bounced (permanent); `opened`, `clicked`, `unsubscribed`, `complained` as named; `accepted`
//!   and unknown names → skipped. `event` and `timestamp` are required. The id is
//!   `event-data.id`. The `reject.reason`/`reject.description` object of `rejected` is from
//!   documentation memory (unconfirmed).
//! * Inbound routes (`forward()` to a URL; replies), `application/x-www-form-urlencoded`, or
//!   `multipart/form-data` when the mail has attachments: `timestamp`, `token`, `signature`
//!   (same scheme), `recipient`, `sender` (MAIL FROM), `from` (the From header), `subject`,
//!   `body-plain`, `stripped-text`, `message-headers` (JSON list of `[name, value]`), and the
//!   mail's headers as fields of their own (`Message-Id`, `In-Reply-To`, `References`, …). The
//!   header fields are looked up case-insensitively, falling back to `message-headers`; that
//!   each header is posted as a field of its own is seen in captured payloads but could not be
//!   re-checked against the documentation here (unconfirmed). One Replied event: id = the
//!   reply's Message-Id, `in_reply_to` = In-Reply-To then References ids, `occurred_at` = the
//!   signed timestamp. A form that looks like a legacy (pre-2018) form-encoded tracking webhook
//!   is refused with a message saying so.
//!
//! # SendGrid (`sendgrid`)
//!
//! * Event Webhook, `application/json`: an array of events
//!   `[{"email": "…", "timestamp": 1513299569, "smtp-id": "<…>", "event": "…",
//!   "sg_event_id": "…", "sg_message_id": "…", "type": "bounce|blocked", "reason": "…",
//!   "status": "5.0.0", "url": "…", "bounce_classification": "…"}]`. Signed Event Webhook:
//!   `X-Twilio-Email-Event-Webhook-Signature` is base64 of a DER ECDSA P-256 signature over
//!   SHA-256 of the `X-Twilio-Email-Event-Webhook-Timestamp` value's bytes followed by the raw
//!   body; the verification key is the base64 DER SubjectPublicKeyInfo the SendGrid UI shows
//!   (a PEM-wrapped copy is accepted too). SendGrid documents no timestamp window; the
//!   tolerance applies here all the same. Mapping: `processed` → skipped; `dropped` → Bounced
//!   (permanent); `delivered` → Delivered; `deferred` → Deferred; `bounce` with `type`
//!   `blocked` → Bounced (not permanent), other bounces → Bounced (permanent); `open` → Opened;
//!   `click` → Clicked; `spamreport` → Complained; `unsubscribe`, `group_unsubscribe` →
//!   Unsubscribed; `group_resubscribe` and unknown names → skipped. `event` and `timestamp` are
//!   required. `message_id` comes from `smtp-id` (the sent mail's Message-ID); SendGrid leaves
//!   `smtp-id` out of some events (opens and clicks among them), which then have none. The id
//!   is `sg_event_id`. `bounce_classification` is from documentation memory (unconfirmed); it
//!   only ends up in `detail`.
//! * Inbound Parse (replies), `multipart/form-data`: `headers` (the reply's raw header block,
//!   folded lines allowed), `from`, `to`, `subject`, `text`, `html`, `envelope` (JSON
//!   `{"to": […], "from": "…"}`), `charsets`, `dkim`, `SPF`, …; with "send raw" the whole
//!   message comes as `email` instead of `headers`/`text`, and its header block is used. Inbound
//!   Parse signs nothing, so it is accepted only with HTTP Basic credentials
//!   (`Authorization: Basic …`, compared in constant time) equal to `sendgrid_inbound_basic`;
//!   that SendGrid sends credentials embedded in the configured URL as Basic authorization is
//!   from documentation memory (unconfirmed). One Replied event: id = Message-ID,
//!   `in_reply_to` = In-Reply-To then References ids, `occurred_at` = the Date header (else the
//!   time of receipt). Field values are read as UTF-8 (lossy); `charsets` is not applied.
//!
//! The two SendGrid requests are told apart by content type: JSON is the Event Webhook,
//! multipart is Inbound Parse.
//!
//! For Replied events `recipient` is the address of whoever replied (the reply's From, else
//! its envelope sender): the campaign recipient the reply comes from, the same address the
//! other events of that mail carry.
//!
//! Multipart bodies are parsed with `multer`: maintained, the parser behind axum's multipart
//! extractor, and already in the project's dependency tree (through async-graphql), which a
//! hand-written parser or a synchronous multipart crate would not be. Its interface is a
//! stream; since the whole body is in memory, the stream holds a single chunk and is polled to
//! completion with a no-op waker (a parse that would wait for more input is refused as
//! truncated, so it can never spin). URL-encoded forms use `url::form_urlencoded`.

#[cfg(test)]
mod tests;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Header of the generic format's signature (the project's own scheme).
pub const GENERIC_SIGNATURE_HEADER: &str = "leadgate-signature";
/// Header with SendGrid's base64 DER ECDSA signature.
pub const SENDGRID_SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
/// Header with the timestamp SendGrid signed along with the body.
pub const SENDGRID_TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";
/// Events accepted in one generic request.
pub const MAX_GENERIC_EVENTS: usize = 1000;
/// Characters kept of a `detail`.
pub const DETAIL_MAX_CHARS: usize = 500;
/// How far a signed timestamp may be from now, either way, unless configured otherwise.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// Polls of a multipart parser that made no progress before the body counts as truncated.
const MAX_IDLE_POLLS: usize = 16;

/// The mail provider a request comes from, named by the last path segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// The project's own signed JSON format.
    Generic,
    /// Mailgun event webhooks and inbound routes.
    Mailgun,
    /// SendGrid Event Webhook and Inbound Parse.
    Sendgrid,
}

impl Provider {
    /// The path segment naming this provider.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Generic => "generic",
            Provider::Mailgun => "mailgun",
            Provider::Sendgrid => "sendgrid",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A path segment that names no provider.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown mail provider {0:?}: expected generic, mailgun or sendgrid")]
pub struct UnknownProvider(pub String);

impl FromStr for Provider {
    type Err = UnknownProvider;

    /// Parses the path segment, exactly `generic`, `mailgun` or `sendgrid`.
    fn from_str(segment: &str) -> Result<Self, Self::Err> {
        match segment {
            "generic" => Ok(Provider::Generic),
            "mailgun" => Ok(Provider::Mailgun),
            "sendgrid" => Ok(Provider::Sendgrid),
            other => Err(UnknownProvider(other.to_owned())),
        }
    }
}

/// The secrets requests are verified with; a provider without its secret is not configured.
/// Empty or blank secrets count as absent. `Debug` never shows a secret.
#[derive(Clone)]
pub struct Verifier {
    generic_secret: Option<String>,
    mailgun_signing_key: Option<String>,
    sendgrid_public_key: Option<String>,
    sendgrid_inbound_basic: Option<(String, String)>,
    tolerance: Duration,
}

impl Default for Verifier {
    fn default() -> Self {
        Self {
            generic_secret: None,
            mailgun_signing_key: None,
            sendgrid_public_key: None,
            sendgrid_inbound_basic: None,
            tolerance: DEFAULT_TOLERANCE,
        }
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |present: bool| if present { "<set>" } else { "<none>" };
        f.debug_struct("Verifier")
            .field("generic_secret", &set(self.generic_secret.is_some()))
            .field("mailgun_signing_key", &set(self.mailgun_signing_key.is_some()))
            .field("sendgrid_public_key", &set(self.sendgrid_public_key.is_some()))
            .field(
                "sendgrid_inbound_basic",
                &set(self.sendgrid_inbound_basic.is_some()),
            )
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

fn non_blank(value: String) -> Option<String> {
    (!value.trim().is_empty()).then_some(value)
}

impl Verifier {
    /// Nothing configured, and a tolerance of five minutes.
    pub fn new() -> Self {
        Self::default()
    }

    /// The secret the generic format's `Leadgate-Signature` is made with.
    pub fn with_generic_secret(mut self, secret: impl Into<String>) -> Self {
        self.generic_secret = non_blank(secret.into());
        self
    }

    /// Mailgun's HTTP webhook signing key (for event webhooks and inbound routes alike).
    pub fn with_mailgun_signing_key(mut self, key: impl Into<String>) -> Self {
        self.mailgun_signing_key = non_blank(key.into());
        self
    }

    /// SendGrid's signed Event Webhook verification key: base64 of the DER
    /// SubjectPublicKeyInfo, as the SendGrid UI shows it.
    pub fn with_sendgrid_public_key(mut self, key: impl Into<String>) -> Self {
        self.sendgrid_public_key = non_blank(key.into());
        self
    }

    /// The HTTP Basic user and password SendGrid Inbound Parse must present.
    pub fn with_sendgrid_inbound_basic(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        let (user, password) = (user.into(), password.into());
        self.sendgrid_inbound_basic = (!user.is_empty() && !password.is_empty()).then_some((user, password));
        self
    }

    /// How far a signed timestamp may be from the request's `now`, either way.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The configured timestamp tolerance.
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// Whether requests from `provider` can be verified at all (for SendGrid: either the
    /// Event Webhook key or the Inbound Parse credentials).
    pub fn is_configured(&self, provider: Provider) -> bool {
        match provider {
            Provider::Generic => self.generic_secret.is_some(),
            Provider::Mailgun => self.mailgun_signing_key.is_some(),
            Provider::Sendgrid => self.sendgrid_public_key.is_some() || self.sendgrid_inbound_basic.is_some(),
        }
    }

    /// Checks the configuration as far as it can be checked without a request: the SendGrid
    /// key must be a P-256 public key. Meant for start-up; a key that does not parse makes
    /// SendGrid Event Webhook requests fail as not configured.
    pub fn check(&self) -> Result<(), String> {
        if let Some(key) = &self.sendgrid_public_key {
            sendgrid_key(key)?;
        }
        Ok(())
    }
}

/// One HTTP request as the web layer received it.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    headers: &'a [(String, String)],
    content_type: Option<&'a str>,
    body: &'a [u8],
    now: DateTime<Utc>,
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Request")
            .field("header_names", &names)
            .field("content_type", &self.content_type)
            .field("body_len", &self.body.len())
            .field("now", &self.now)
            .finish()
    }
}

impl<'a> Request<'a> {
    /// `headers` with lower-cased names (looked up case-insensitively all the same);
    /// `content_type` is the `Content-Type` value, and when `None` that header is used; `now`
    /// is what signed timestamps are compared with.
    pub fn new(
        headers: &'a [(String, String)],
        content_type: Option<&'a str>,
        body: &'a [u8],
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            headers,
            content_type,
            body,
            now,
        }
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_type(&self) -> Option<&'a str> {
        self.content_type.or_else(|| self.header("content-type"))
    }

    /// The media type alone, lower-cased: `multipart/form-data` of `Multipart/Form-Data; boundary=x`.
    fn media_type(&self) -> Option<String> {
        self.content_type()
            .and_then(|ct| ct.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .filter(|m| !m.is_empty())
    }
}

/// A provider's event in normalized form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MailEvent {
    /// The provider's event id (for replies: the reply's Message-ID), or `sha256:<32 hex>`
    /// over the normalized event when there is none (leaving out the time, for replies); stable
    /// across redeliveries, for dedupe.
    pub id: String,
    /// What happened.
    pub kind: MailEventKind,
    /// The Message-ID of the mail the event is about (for replies: of the reply itself),
    /// without angle brackets or whitespace.
    pub message_id: Option<String>,
    /// For replies: the In-Reply-To ids, then the References ids, normalized, without repeats.
    pub in_reply_to: Vec<String>,
    /// The campaign recipient concerned; for replies, the address that replied.
    pub recipient: Option<String>,
    /// When the provider says it happened.
    pub occurred_at: DateTime<Utc>,
    /// The link clicked, for clicks.
    pub url: Option<String>,
    /// Bounce or deferral reason, reply excerpt and the like, at most 500 characters.
    pub detail: Option<String>,
}

/// The normalized kinds of mail events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum MailEventKind {
    /// The receiving server accepted the mail.
    Delivered,
    /// The mail will not be delivered; `permanent` is false for blocks and soft bounces.
    Bounced {
        /// A hard bounce: the address should not be mailed again.
        permanent: bool,
    },
    /// Delivery failed for now and will be retried.
    Deferred,
    /// The recipient answered.
    Replied,
    /// The recipient unsubscribed.
    Unsubscribed,
    /// The recipient reported the mail as spam.
    Complained,
    /// The recipient clicked a tracked link.
    Clicked,
    /// The recipient opened the mail (tracking pixel).
    Opened,
}

impl MailEventKind {
    /// The kind's name, as the generic format spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            MailEventKind::Delivered => "delivered",
            MailEventKind::Bounced { .. } => "bounced",
            MailEventKind::Deferred => "deferred",
            MailEventKind::Replied => "replied",
            MailEventKind::Unsubscribed => "unsubscribed",
            MailEventKind::Complained => "complained",
            MailEventKind::Clicked => "clicked",
            MailEventKind::Opened => "opened",
        }
    }
}

/// Why a request produced no events.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    /// The provider has no secret configured (or its SendGrid key does not parse): 404.
    #[error("inbound mail events from {0} are not configured")]
    NotConfigured(Provider),
    /// Missing, malformed, wrong or stale signature or credentials: 401.
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// The body is not what the provider sends; the message says what is wrong: 400.
    #[error("malformed request: {0}")]
    Malformed(String),
}

impl InboundError {
    /// The HTTP status to answer with: 404, 401 or 400.
    pub fn http_status(&self) -> u16 {
        match self {
            InboundError::NotConfigured(_) => 404,
            InboundError::Unauthorized(_) => 401,
            InboundError::Malformed(_) => 400,
        }
    }
}

fn malformed(message: impl Into<String>) -> InboundError {
    InboundError::Malformed(message.into())
}

/// Verifies `req` as coming from `provider` and turns it into events (possibly none). Nothing
/// is returned unless the whole request is authentic and every event in it is well-formed.
pub fn receive(
    provider: Provider,
    verifier: &Verifier,
    req: &Request<'_>,
) -> Result<Vec<MailEvent>, InboundError> {
    match provider {
        Provider::Generic => receive_generic(verifier, req),
        Provider::Mailgun => receive_mailgun(verifier, req),
        Provider::Sendgrid => receive_sendgrid(verifier, req),
    }
}

// ---------------------------------------------------------------------------------------------
// Generic

fn receive_generic(verifier: &Verifier, req: &Request<'_>) -> Result<Vec<MailEvent>, InboundError> {
    let secret = verifier
        .generic_secret
        .as_deref()
        .ok_or(InboundError::NotConfigured(Provider::Generic))?;
    if req.media_type().as_deref() != Some("application/json") {
        return Err(malformed(format!(
            "expected application/json with {{\"events\": [...]}}, got {}",
            shown_type(req)
        )));
    }
    let header = req
        .header(GENERIC_SIGNATURE_HEADER)
        .ok_or(InboundError::Unauthorized("missing signature"))?;
    verify_leadgate_signature(secret, header, req.body, req.now, verifier.tolerance)?;

    let root = json_body(req.body)?;
    let events = root
        .as_object()
        .and_then(|o| o.get("events"))
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("expected a JSON object with an \"events\" array"))?;
    if events.len() > MAX_GENERIC_EVENTS {
        return Err(malformed(format!(
            "at most {MAX_GENERIC_EVENTS} events per request, got {}",
            events.len()
        )));
    }
    events
        .iter()
        .enumerate()
        .map(|(i, e)| generic_event(e).map_err(|m| malformed(format!("event {i}: {m}"))))
        .collect()
}

/// Checks `t=<unix>,v1=<hex>` as the project's `events::webhooks::verify` does, with reasons.
fn verify_leadgate_signature(
    secret: &str,
    header: &str,
    body: &[u8],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), InboundError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.trim().parse::<i64>().ok(),
            Some(("v1", s)) => signatures.push(s.trim()),
            _ => {}
        }
    }
    let (Some(t), false) = (timestamp, signatures.is_empty()) else {
        return Err(InboundError::Unauthorized("malformed signature header"));
    };
    check_fresh(t, now, tolerance)?;
    let mac = hmac(secret.as_bytes(), &[t.to_string().as_bytes(), b".", body])
        .ok_or(InboundError::Unauthorized("bad signature"))?;
    if signatures
        .iter()
        .any(|s| unhex(s).is_some_and(|tag| mac.clone().verify_slice(&tag).is_ok()))
    {
        Ok(())
    } else {
        Err(InboundError::Unauthorized("bad signature"))
    }
}

fn generic_event(value: &Value) -> Result<MailEvent, String> {
    let o = value.as_object().ok_or("not a JSON object")?;
    let kind = match text(o, "type")? {
        None => return Err("has no type".into()),
        Some("delivered") => MailEventKind::Delivered,
        Some("bounced") => MailEventKind::Bounced {
            permanent: flag(o, "permanent")?.unwrap_or(true),
        },
        Some("deferred") => MailEventKind::Deferred,
        Some("replied") => MailEventKind::Replied,
        Some("unsubscribed") => MailEventKind::Unsubscribed,
        Some("complained") => MailEventKind::Complained,
        Some("clicked") => MailEventKind::Clicked,
        Some("opened") => MailEventKind::Opened,
        Some(other) => {
            return Err(format!(
                "unknown type {other:?} (expected delivered, bounced, deferred, replied, \
                 unsubscribed, complained, clicked or opened)"
            ));
        }
    };
    let occurred = text(o, "occurredAt")?.ok_or("has no occurredAt")?;
    let occurred_at = DateTime::parse_from_rfc3339(occurred.trim())
        .map_err(|_| format!("occurredAt {occurred:?} is not an RFC 3339 time"))?
        .with_timezone(&Utc);
    let references: Vec<&str> = match o.get("references") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().ok_or("references must be an array of strings"))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("references must be an array of strings".into()),
    };
    let in_reply_to = thread_ids(text(o, "inReplyTo")?, references);
    let event = PendingEvent {
        kind,
        message_id: text(o, "messageId")?.and_then(first_message_id),
        in_reply_to,
        recipient: text(o, "recipient")?.and_then(address),
        occurred_at,
        url: text(o, "url")?.and_then(trimmed),
        detail: text(o, "detail")?.and_then(detail),
    };
    Ok(event.into_event(Provider::Generic, text(o, "id")?))
}

// ---------------------------------------------------------------------------------------------
// Mailgun

fn receive_mailgun(verifier: &Verifier, req: &Request<'_>) -> Result<Vec<MailEvent>, InboundError> {
    let key = verifier
        .mailgun_signing_key
        .as_deref()
        .ok_or(InboundError::NotConfigured(Provider::Mailgun))?;
    match req.media_type().as_deref() {
        Some("application/json") => mailgun_webhook(key, verifier.tolerance, req),
        Some("application/x-www-form-urlencoded") => {
            mailgun_route(key, verifier.tolerance, req.now, &Form::urlencoded(req.body))
        }
        Some("multipart/form-data") => {
            let form = Form::multipart(req.content_type().unwrap_or_default(), req.body)?;
            mailgun_route(key, verifier.tolerance, req.now, &form)
        }
        _ => Err(malformed(format!(
            "expected application/json (event webhook), or application/x-www-form-urlencoded or \
             multipart/form-data (inbound route), got {}",
            shown_type(req)
        ))),
    }
}

fn mailgun_webhook(
    key: &str,
    tolerance: Duration,
    req: &Request<'_>,
) -> Result<Vec<MailEvent>, InboundError> {
    let root = json_body(req.body)?;
    let o = root
        .as_object()
        .ok_or_else(|| malformed("expected a JSON object with \"signature\" and \"event-data\""))?;
    let signature = o
        .get("signature")
        .and_then(Value::as_object)
        .ok_or(InboundError::Unauthorized("missing signature"))?;
    let timestamp = signature.get("timestamp").and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let token = signature.get("token").and_then(Value::as_str);
    let tags: Vec<&str> = ["signature", "parent-signature"]
        .iter()
        .filter_map(|k| signature.get(*k).and_then(Value::as_str))
        .collect();
    let (Some(timestamp), Some(token), false) = (timestamp, token, tags.is_empty()) else {
        return Err(InboundError::Unauthorized("missing signature"));
    };
    verify_mailgun_signature(key, &timestamp, token, &tags, req.now, tolerance)?;

    let data = o
        .get("event-data")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed("no \"event-data\" object"))?;
    let event = mailgun_event(data).map_err(|m| malformed(format!("event-data: {m}")))?;
    Ok(event.into_iter().collect())
}

fn verify_mailgun_signature(
    key: &str,
    timestamp: &str,
    token: &str,
    tags: &[&str],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<DateTime<Utc>, InboundError> {
    let t = timestamp
        .trim()
        .parse::<i64>()
        .map_err(|_| InboundError::Unauthorized("malformed signature timestamp"))?;
    check_fresh(t, now, tolerance)?;
    let mac = hmac(key.as_bytes(), &[timestamp.as_bytes(), token.as_bytes()])
        .ok_or(InboundError::Unauthorized("bad signature"))?;
    if tags
        .iter()
        .any(|s| unhex(s.trim()).is_some_and(|tag| mac.clone().verify_slice(&tag).is_ok()))
    {
        // within the tolerance of `now`, so always in range
        Ok(DateTime::from_timestamp(t, 0).unwrap_or(now))
    } else {
        Err(InboundError::Unauthorized("bad signature"))
    }
}

fn mailgun_event(data: &Map<String, Value>) -> Result<Option<MailEvent>, String> {
    let name = text(data, "event")?.ok_or("has no event")?;
    let seconds = data
        .get("timestamp")
        .and_then(unix_seconds)
        .ok_or("has no timestamp in unix seconds")?;
    let occurred_at = from_unix(seconds).ok_or("timestamp is out of range")?;
    let kind = match name {
        "delivered" => MailEventKind::Delivered,
        "failed" => match text(data, "severity")? {
            Some("permanent") => MailEventKind::Bounced { permanent: true },
            Some("temporary") => MailEventKind::Deferred,
            Some(other) => return Err(format!("failed event with unknown severity {other:?}")),
            None => return Err("failed event has no severity".into()),
        },
        "rejected" => MailEventKind::Bounced { permanent: true },
        "opened" => MailEventKind::Opened,
        "clicked" => MailEventKind::Clicked,
        "unsubscribed" => MailEventKind::Unsubscribed,
        "complained" => MailEventKind::Complained,
        // `accepted`, `stored`, list events and whatever comes later
        _ => return Ok(None),
    };
    let message_id = match data
        .get("message")
        .and_then(|m| m.get("headers"))
        .and_then(|h| h.get("message-id"))
    {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => first_message_id(id),
        Some(_) => return Err("message.headers.message-id must be a string".into()),
    };
    let detail = match kind {
        MailEventKind::Bounced { .. } | MailEventKind::Deferred => mailgun_failure(data)?,
        _ => None,
    };
    let event = PendingEvent {
        kind,
        message_id,
        in_reply_to: Vec::new(),
        recipient: text(data, "recipient")?.and_then(address),
        occurred_at,
        url: text(data, "url")?.and_then(trimmed),
        detail,
    };
    Ok(Some(event.into_event(Provider::Mailgun, text(data, "id")?)))
}

/// `reason: code message (description)` of a failed event, or the `reject` object's text.
fn mailgun_failure(data: &Map<String, Value>) -> Result<Option<String>, String> {
    let mut parts: Vec<String> = Vec::new();
    if let Some(reason) = text(data, "reason")?.and_then(trimmed) {
        parts.push(format!("{reason}:"));
    }
    if let Some(status) = data.get("delivery-status").and_then(Value::as_object) {
        if let Some(code) = status.get("code").filter(|c| !c.is_null()) {
            parts.push(match code {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
        let message = text(status, "message")?.and_then(trimmed);
        let description = text(status, "description")?.and_then(trimmed);
        if let Some(m) = &message {
            parts.push(m.clone());
        }
        if let Some(d) = description.filter(|d| Some(d) != message.as_ref()) {
            parts.push(format!("({d})"));
        }
    }
    if let Some(reject) = data.get("reject").and_then(Value::as_object) {
        for key in ["reason", "description"] {
            if let Some(t) = text(reject, key)?.and_then(trimmed) {
                parts.push(t);
            }
        }
    }
    let joined = parts.join(" ");
    Ok(detail(joined.trim_end_matches(':')))
}

fn mailgun_route(
    key: &str,
    tolerance: Duration,
    now: DateTime<Utc>,
    form: &Form,
) -> Result<Vec<MailEvent>, InboundError> {
    let (Some(timestamp), Some(token), Some(signature)) =
        (form.get("timestamp"), form.get("token"), form.get("signature"))
    else {
        return Err(InboundError::Unauthorized("missing signature"));
    };
    let occurred_at = verify_mailgun_signature(key, timestamp, token, &[signature], now, tolerance)?;
    if form.get("event").is_some()
        && form.get("message-headers").is_none()
        && form.get("body-plain").is_none()
    {
        return Err(malformed(
            "this is a legacy form-encoded Mailgun tracking webhook; point Mailgun's JSON event \
             webhooks here, or an inbound route's forward()",
        ));
    }
    let listed: Vec<(String, String)> = match form.get("message-headers") {
        None => Vec::new(),
        Some(raw) => serde_json::from_str::<Vec<(String, String)>>(raw)
            .map_err(|_| malformed("message-headers is not a JSON list of [name, value] pairs"))?,
    };
    let header = |name: &str| {
        form.get_ignore_case(name).or_else(|| {
            listed
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        })
    };
    let event = PendingEvent {
        kind: MailEventKind::Replied,
        message_id: header("Message-Id").and_then(first_message_id),
        in_reply_to: thread_ids(header("In-Reply-To"), header("References")),
        recipient: form
            .get("from")
            .or_else(|| header("From"))
            .and_then(address)
            .or_else(|| form.get("sender").and_then(address)),
        occurred_at,
        url: None,
        detail: ["stripped-text", "body-plain", "subject"]
            .iter()
            .find_map(|k| form.get(k).and_then(detail)),
    };
    let id = event.message_id.clone();
    Ok(vec![event.into_event(Provider::Mailgun, id.as_deref())])
}

// ---------------------------------------------------------------------------------------------
// SendGrid

fn receive_sendgrid(verifier: &Verifier, req: &Request<'_>) -> Result<Vec<MailEvent>, InboundError> {
    if !verifier.is_configured(Provider::Sendgrid) {
        return Err(InboundError::NotConfigured(Provider::Sendgrid));
    }
    match req.media_type().as_deref() {
        Some("application/json") => {
            let key = verifier
                .sendgrid_public_key
                .as_deref()
                .and_then(|k| sendgrid_key(k).ok())
                .ok_or(InboundError::NotConfigured(Provider::Sendgrid))?;
            verify_sendgrid_signature(&key, req, verifier.tolerance)?;
            sendgrid_events(req.body)
        }
        Some("multipart/form-data") => {
            let (user, password) = verifier
                .sendgrid_inbound_basic
                .as_ref()
                .ok_or(InboundError::NotConfigured(Provider::Sendgrid))?;
            check_basic(req, user, password)?;
            let form = Form::multipart(req.content_type().unwrap_or_default(), req.body)?;
            sendgrid_inbound(&form, req.now)
        }
        _ => Err(malformed(format!(
            "expected application/json (Event Webhook) or multipart/form-data (Inbound Parse), got {}",
            shown_type(req)
        ))),
    }
}

/// The verification key from base64 DER SPKI; PEM armour and whitespace are tolerated.
fn sendgrid_key(text: &str) -> Result<VerifyingKey, String> {
    let base64: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(str::chars)
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = STANDARD
        .decode(base64)
        .map_err(|_| "the SendGrid verification key is not base64".to_owned())?;
    VerifyingKey::from_public_key_der(&der)
        .map_err(|_| "the SendGrid verification key is not a P-256 SubjectPublicKeyInfo".to_owned())
}

fn verify_sendgrid_signature(
    key: &VerifyingKey,
    req: &Request<'_>,
    tolerance: Duration,
) -> Result<(), InboundError> {
    let (Some(signature), Some(timestamp)) = (
        req.header(SENDGRID_SIGNATURE_HEADER),
        req.header(SENDGRID_TIMESTAMP_HEADER),
    ) else {
        return Err(InboundError::Unauthorized("missing signature"));
    };
    let t = timestamp
        .trim()
        .parse::<i64>()
        .map_err(|_| InboundError::Unauthorized("malformed signature timestamp"))?;
    check_fresh(t, req.now, tolerance)?;
    let signature = STANDARD
        .decode(signature.trim())
        .ok()
        .and_then(|der| Signature::from_der(&der).ok())
        .ok_or(InboundError::Unauthorized("bad signature"))?;
    let digest = Sha256::new()
        .chain_update(timestamp.as_bytes())
        .chain_update(req.body)
        .finalize();
    key.verify_prehash(&digest, &signature)
        .map_err(|_| InboundError::Unauthorized("bad signature"))
}

fn sendgrid_events(body: &[u8]) -> Result<Vec<MailEvent>, InboundError> {
    let root = json_body(body)?;
    let items = root
        .as_array()
        .ok_or_else(|| malformed("expected a JSON array of events"))?;
    let mut events = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(event) = sendgrid_event(item).map_err(|m| malformed(format!("event {i}: {m}")))? {
            events.push(event);
        }
    }
    Ok(events)
}

fn sendgrid_event(value: &Value) -> Result<Option<MailEvent>, String> {
    let o = value.as_object().ok_or("not a JSON object")?;
    let name = text(o, "event")?.ok_or("has no event field")?;
    let seconds = o
        .get("timestamp")
        .and_then(unix_seconds)
        .ok_or("has no timestamp in unix seconds")?;
    let occurred_at = from_unix(seconds).ok_or("timestamp is out of range")?;
    let kind = match name {
        "dropped" => MailEventKind::Bounced { permanent: true },
        "delivered" => MailEventKind::Delivered,
        "deferred" => MailEventKind::Deferred,
        "bounce" => MailEventKind::Bounced {
            permanent: text(o, "type")? != Some("blocked"),
        },
        "open" => MailEventKind::Opened,
        "click" => MailEventKind::Clicked,
        "spamreport" => MailEventKind::Complained,
        "unsubscribe" | "group_unsubscribe" => MailEventKind::Unsubscribed,
        // `processed`, `group_resubscribe`, account events and whatever comes later
        _ => return Ok(None),
    };
    let detail = match kind {
        MailEventKind::Bounced { .. } | MailEventKind::Deferred => {
            let mut text_parts: Vec<String> = Vec::new();
            if let Some(reason) = text(o, "reason")?.or(text(o, "response")?).and_then(trimmed) {
                text_parts.push(reason);
            }
            let status = text(o, "status")?.and_then(trimmed);
            let class = text(o, "bounce_classification")?.and_then(trimmed);
            match (status, class) {
                (Some(s), Some(c)) => text_parts.push(format!("(status {s}, {c})")),
                (Some(s), None) => text_parts.push(format!("(status {s})")),
                (None, Some(c)) => text_parts.push(format!("({c})")),
                (None, None) => {}
            }
            detail(&text_parts.join(" "))
        }
        _ => None,
    };
    let event = PendingEvent {
        kind,
        message_id: text(o, "smtp-id")?.and_then(first_message_id),
        in_reply_to: Vec::new(),
        recipient: text(o, "email")?.and_then(address),
        occurred_at,
        url: text(o, "url")?.and_then(trimmed),
        detail,
    };
    Ok(Some(
        event.into_event(Provider::Sendgrid, text(o, "sg_event_id")?),
    ))
}

/// `Authorization: Basic` matching the configured pair. Both sides go through the same HMAC
/// and the tags are compared with `verify_slice` (constant time), so neither the content nor
/// the length of the expected credentials shows in the timing.
fn check_basic(req: &Request<'_>, user: &str, password: &str) -> Result<(), InboundError> {
    let value = req
        .header("authorization")
        .ok_or(InboundError::Unauthorized("missing credentials"))?;
    let bad = InboundError::Unauthorized("malformed credentials");
    let (scheme, encoded) = value.trim().split_once(' ').ok_or(bad.clone())?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad);
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad.clone())?;
    let colon = decoded.iter().position(|b| *b == b':').ok_or(bad)?;
    let (given_user, given_password) = (&decoded[..colon], &decoded[colon + 1..]);
    const KEY: &[u8] = b"leadgate inbound basic credentials";
    let framed = |u: &[u8], p: &[u8]| hmac(KEY, &[&(u.len() as u64).to_be_bytes(), u, p]);
    let (Some(given), Some(expected)) = (
        framed(given_user, given_password),
        framed(user.as_bytes(), password.as_bytes()),
    ) else {
        return Err(InboundError::Unauthorized("bad credentials"));
    };
    given
        .verify_slice(&expected.finalize().into_bytes())
        .map_err(|_| InboundError::Unauthorized("bad credentials"))
}

fn sendgrid_inbound(form: &Form, now: DateTime<Utc>) -> Result<Vec<MailEvent>, InboundError> {
    let block = form
        .get("headers")
        .or_else(|| form.get("email"))
        .ok_or_else(|| malformed("the Inbound Parse form has neither a headers nor an email field"))?;
    let headers = header_block(block);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let envelope_from = match form.get("envelope") {
        None => None,
        Some(raw) => {
            let envelope: Value =
                serde_json::from_str(raw).map_err(|_| malformed("the envelope field is not JSON"))?;
            envelope.get("from").and_then(Value::as_str).and_then(address)
        }
    };
    let occurred_at = header("Date")
        .and_then(|d| DateTime::parse_from_rfc2822(d.trim()).ok())
        .map_or(now, |d| d.with_timezone(&Utc));
    let event = PendingEvent {
        kind: MailEventKind::Replied,
        message_id: header("Message-ID").and_then(first_message_id),
        in_reply_to: thread_ids(header("In-Reply-To"), header("References")),
        recipient: form
            .get("from")
            .or_else(|| header("From"))
            .and_then(address)
            .or(envelope_from),
        occurred_at,
        url: None,
        detail: ["text", "subject"]
            .iter()
            .find_map(|k| form.get(k).and_then(detail))
            .or_else(|| header("Subject").and_then(detail)),
    };
    let id = event.message_id.clone();
    Ok(vec![event.into_event(Provider::Sendgrid, id.as_deref())])
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

/// An event before its id is settled.
struct PendingEvent {
    kind: MailEventKind,
    message_id: Option<String>,
    in_reply_to: Vec<String>,
    recipient: Option<String>,
    occurred_at: DateTime<Utc>,
    url: Option<String>,
    detail: Option<String>,
}

impl PendingEvent {
    /// The event with the provider's id, or with a hash of everything else when there is none.
    fn into_event(self, provider: Provider, id: Option<&str>) -> MailEvent {
        let id = id.and_then(trimmed).unwrap_or_else(|| self.fingerprint(provider));
        MailEvent {
            id,
            kind: self.kind,
            message_id: self.message_id,
            in_reply_to: self.in_reply_to,
            recipient: self.recipient,
            occurred_at: self.occurred_at,
            url: self.url,
            detail: self.detail,
        }
    }

    fn fingerprint(&self, provider: Provider) -> String {
        let kind = match self.kind {
            MailEventKind::Bounced { permanent: true } => "bounced/permanent",
            MailEventKind::Bounced { permanent: false } => "bounced/temporary",
            other => other.as_str(),
        };
        // a reply redelivered may carry a new time (the time of receipt, a new signed
        // timestamp), so replies are told apart by their content alone
        let occurred = (self.kind != MailEventKind::Replied).then(|| {
            self.occurred_at
                .timestamp_nanos_opt()
                .unwrap_or_default()
                .to_string()
        });
        let mut hash = Sha256::new();
        let mut field = |value: Option<&str>| {
            // length-prefixed, so that no two different events feed the same bytes
            let bytes = value.map(str::as_bytes);
            hash.update(bytes.map_or(u64::MAX, |b| b.len() as u64).to_be_bytes());
            hash.update(bytes.unwrap_or_default());
        };
        field(Some(provider.as_str()));
        field(Some(kind));
        field(self.message_id.as_deref());
        field(Some(&self.in_reply_to.join(" ")));
        field(self.recipient.as_deref());
        field(occurred.as_deref());
        field(self.url.as_deref());
        field(self.detail.as_deref());
        let digest = hash.finalize();
        format!("sha256:{}", hex(&digest[..16]))
    }
}

/// A form's text fields in order (file parts left out), urlencoded or multipart.
struct Form(Vec<(String, String)>);

impl Form {
    fn urlencoded(body: &[u8]) -> Self {
        Form(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// Parses a complete in-memory multipart body (see the module header for why polling).
    fn multipart(content_type: &str, body: &[u8]) -> Result<Self, InboundError> {
        let boundary = multer::parse_boundary(content_type)
            .map_err(|_| malformed("multipart/form-data without a usable boundary parameter"))?;
        let chunk = Bytes::copy_from_slice(body);
        let stream = futures_util::stream::iter([Ok::<Bytes, Infallible>(chunk)]);
        let mut multipart = multer::Multipart::new(stream, boundary);
        let mut cx = Context::from_waker(Waker::noop());
        let broken = |e: multer::Error| malformed(format!("broken multipart/form-data body: {e}"));
        let truncated = || malformed("the multipart/form-data body ends early");
        let mut fields = Vec::new();
        'fields: loop {
            let mut idle = 0;
            let mut field = loop {
                match multipart.poll_next_field(&mut cx) {
                    Poll::Ready(Ok(Some(field))) => break field,
                    Poll::Ready(Ok(None)) => break 'fields,
                    Poll::Ready(Err(e)) => return Err(broken(e)),
                    Poll::Pending if idle < MAX_IDLE_POLLS => idle += 1,
                    Poll::Pending => return Err(truncated()),
                }
            };
            let name = field.name().map(str::to_owned);
            let is_file = field.file_name().is_some();
            let mut value = Vec::new();
            let mut idle = 0;
            loop {
                match field.poll_next_unpin(&mut cx) {
                    Poll::Ready(Some(Ok(bytes))) => {
                        if !is_file {
                            value.extend_from_slice(&bytes);
                        }
                    }
                    Poll::Ready(Some(Err(e))) => return Err(broken(e)),
                    Poll::Ready(None) => break,
                    Poll::Pending if idle < MAX_IDLE_POLLS => idle += 1,
                    Poll::Pending => return Err(truncated()),
                }
            }
            if let (Some(name), false) = (name, is_file) {
                fields.push((name, String::from_utf8_lossy(&value).into_owned()));
            }
        }
        Ok(Form(fields))
    }

    /// The first value of a field, by exact name (the provider's own parameters).
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The first value of a field named like a mail header, in any case.
    fn get_ignore_case(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Name/value pairs of a raw header block, folded lines joined; stops at the first empty line
/// after a header (the end of the block when a whole message is given).
fn header_block(raw: &str) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in raw.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if headers.is_empty() {
                continue;
            }
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    headers
}

/// The body as JSON, or a 400 that says why not.
fn json_body(body: &[u8]) -> Result<Value, InboundError> {
    serde_json::from_slice(body).map_err(|e| malformed(format!("the body is not valid JSON: {e}")))
}

fn shown_type(req: &Request<'_>) -> String {
    match req.content_type() {
        Some(ct) => format!("{:?}", ct.chars().take(100).collect::<String>()),
        None => "no content type".to_owned(),
    }
}

/// A string field: `None` when absent or null, an error when of another type.
fn text<'v>(o: &'v Map<String, Value>, name: &str) -> Result<Option<&'v str>, String> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{name} must be a string")),
    }
}

/// A boolean field: `None` when absent or null, an error when of another type.
fn flag(o: &Map<String, Value>, name: &str) -> Result<Option<bool>, String> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("{name} must be true or false")),
    }
}

/// Unix seconds as a JSON number, or a string holding one.
fn unix_seconds(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

/// Fractional unix seconds at microsecond precision (Mailgun's resolution).
fn from_unix(seconds: f64) -> Option<DateTime<Utc>> {
    if !seconds.is_finite() {
        return None;
    }
    let whole = seconds.floor();
    if !(-1e15..=1e15).contains(&whole) {
        return None;
    }
    let micros = (((seconds - whole) * 1e6).round() as u32).min(999_999);
    DateTime::from_timestamp(whole as i64, micros * 1000)
}

fn check_fresh(timestamp: i64, now: DateTime<Utc>, tolerance: Duration) -> Result<(), InboundError> {
    if now.timestamp().abs_diff(timestamp) > tolerance.as_secs() {
        Err(InboundError::Unauthorized("stale timestamp"))
    } else {
        Ok(())
    }
}

/// HMAC-SHA256 under `key` fed with `parts` in order (`None` cannot happen: HMAC takes keys of
/// any length).
fn hmac(key: &[u8], parts: &[&[u8]]) -> Option<Hmac<Sha256>> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    for part in parts {
        mac.update(part);
    }
    Some(mac)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn trimmed(value: &str) -> Option<String> {
    let t = value.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// At most `DETAIL_MAX_CHARS` characters of the trimmed text, cut on a character boundary.
fn detail(value: &str) -> Option<String> {
    let t = value.trim();
    if t.is_empty() {
        return None;
    }
    let cut = t.char_indices().nth(DETAIL_MAX_CHARS).map_or(t.len(), |(i, _)| i);
    Some(t.get(..cut).unwrap_or(t).trim_end().to_owned())
}

/// The address of `Name <addr>` (the first one of a list), or the bare address.
fn address(value: &str) -> Option<String> {
    let value = value.trim();
    if let Some(open) = value.find('<')
        && let Some(inside) = value.get(open + 1..)
        && let Some(close) = inside.find('>')
    {
        return inside.get(..close).and_then(trimmed);
    }
    let first = value.split(',').next().unwrap_or(value);
    trimmed(first)
}

/// The message ids in a header value: every `<…>`, or when there is none, every
/// whitespace- or comma-separated token; normalized, without repeats.
fn message_ids(value: &str) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let mut push = |raw: &str| {
        let id: String = raw
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '<' && *c != '>')
            .collect();
        if !id.is_empty() && !ids.contains(&id) {
            ids.push(id);
        }
    };
    if value.contains('<') {
        let mut rest = value;
        while let Some(open) = rest.find('<') {
            let after = &rest[open + 1..];
            match after.find('>') {
                Some(close) => {
                    push(&after[..close]);
                    rest = &after[close + 1..];
                }
                None => {
                    push(after);
                    break;
                }
            }
        }
    } else {
        value
            .split(|c: char| c.is_whitespace() || c == ',')
            .for_each(&mut push);
    }
    ids
}

fn first_message_id(value: &str) -> Option<String> {
    message_ids(value).into_iter().next()
}

/// In-Reply-To ids then References ids, without repeats.
fn thread_ids<'a>(
    in_reply_to: Option<&'a str>,
    references: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let mut ids = Vec::new();
    for id in in_reply_to.into_iter().chain(references).flat_map(message_ids) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}
