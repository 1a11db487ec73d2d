//! Outbound webhooks: signing, one delivery attempt, and the bookkeeping around it.
//!
//! A delivery is a POST of the event as JSON. `Leadgate-Signature: t=<unix seconds>,v1=<hex>`
//! carries HMAC-SHA256 under the endpoint's secret over `"<t>.<raw body>"`; it is computed
//! anew for every attempt, so a receiver can reject replays older than a few minutes. Any
//! 2xx is success; 410 Gone means "never again" (the delivery is dead at once); everything
//! else — other statuses, timeouts, refused connections — is retried by the queue with backoff.
//! Every attempt is logged with the receiver's status and the start of its answer.
//!
//! Requests go through the outbound guard (`net`): a receiver whose address is internal (a
//! literal one, what its name resolves to at send time, or a redirect's target) is not
//! contacted, and the delivery is dead at once with the reason in its log. A 307 or 308 is
//! followed (at most `MAX_REDIRECTS` hops, method and body kept); other redirects are answers
//! like any non-2xx, since following them would turn the POST into a bodiless GET.

use crate::crypto::KeySealer;
use crate::domain::{
    DeliveryId, Event, Timestamp, WebhookDelivery, WebhookEndpoint, WebhookId, WorkspaceId, now,
};
use crate::net::{OutboundClient, OutboundPolicy, Redirects};
use crate::store::{Store, StoreError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use std::time::{Duration, Instant};

pub const SIGNATURE_HEADER: &str = "Leadgate-Signature";
pub const EVENT_ID_HEADER: &str = "Leadgate-Event-Id";
pub const EVENT_TYPE_HEADER: &str = "Leadgate-Event-Type";
pub const ATTEMPT_HEADER: &str = "Leadgate-Delivery-Attempt";
/// Characters of a receiver's answer kept in the delivery log.
const BODY_EXCERPT: usize = 1024;
/// 307/308 redirects followed for one delivery attempt.
pub const MAX_REDIRECTS: usize = 3;

/// A fresh signing secret: `whsec_` and 32 random bytes in URL-safe base64.
pub fn new_secret() -> SecretString {
    SecretString::from(format!(
        "whsec_{}",
        URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    ))
}

/// The signature header value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex(&mac(secret, timestamp, body)))
}

/// Checks a signature header as a receiver should: a `v1` that matches the body under
/// `secret`, with a timestamp within `tolerance` of `now` (unix seconds).
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance: Duration) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", s)) => signatures.push(s.to_owned()),
            _ => {}
        }
    }
    let Some(t) = timestamp else { return false };
    if now.abs_diff(t) > tolerance.as_secs() {
        return false;
    }
    signatures
        .iter()
        .any(|s| unhex(s).is_some_and(|bytes| keyed(secret, t, body).verify_slice(&bytes).is_ok()))
}

/// HMAC-SHA256 under `secret` fed with `"<timestamp>.<body>"`.
fn keyed(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut m =
        <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    m.update(format!("{timestamp}.").as_bytes());
    m.update(body);
    m
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    keyed(secret, timestamp, body).finalize().into_bytes().to_vec()
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

/// The sealing purpose of an endpoint's secret (associated data with the workspace).
pub fn secret_purpose(endpoint: WebhookId) -> String {
    format!("webhook:{endpoint}")
}

/// The JSON body delivered for an event (`Event::envelope`).
pub fn body(event: &Event) -> Vec<u8> {
    event.envelope().to_string().into_bytes()
}

/// Stable across attempts, so receivers can drop duplicates: `<workspace>:<number>`.
pub fn event_id(event: &Event) -> String {
    event.public_id()
}

/// What an attempt came to.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Worth another attempt, not before the receiver's `Retry-After` when it sent one.
    #[error("{0}")]
    Retry(String, Option<Duration>),
    /// Another attempt cannot help.
    #[error("{0}")]
    Permanent(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Delivery settings.
#[derive(Clone, Debug)]
pub struct WebhookOptions {
    /// How long a receiver may take to answer.
    pub timeout: Duration,
    /// Dead-lettered deliveries in a row after which an endpoint is switched off.
    pub disable_after: u32,
    /// Attempts per delivery before it is dead-lettered.
    pub max_attempts: u32,
    /// Which receiver addresses may be contacted.
    pub outbound: OutboundPolicy,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            disable_after: 5,
            max_attempts: 8,
            outbound: OutboundPolicy::default(),
        }
    }
}

/// Sends deliveries and keeps their log; the one HTTP client for webhooks.
#[derive(Clone, Debug)]
pub struct Deliverer {
    store: Store,
    sealer: Option<KeySealer>,
    http: OutboundClient,
    options: WebhookOptions,
}

impl Deliverer {
    /// Fails only when no HTTP client can be built (no TLS backend).
    pub fn new(
        store: Store,
        sealer: Option<KeySealer>,
        options: WebhookOptions,
    ) -> Result<Self, reqwest::Error> {
        let builder = reqwest::Client::builder()
            .user_agent(concat!("leadgate-webhooks/", env!("CARGO_PKG_VERSION")))
            .timeout(options.timeout)
            .connect_timeout(options.timeout);
        let http = options
            .outbound
            .client(builder, Redirects::KeepingMethod(MAX_REDIRECTS))?;
        Ok(Self {
            store,
            sealer,
            http,
            options,
        })
    }

    pub fn options(&self) -> &WebhookOptions {
        &self.options
    }

    /// One attempt (`attempt` counts from 1) to deliver event `seq` of `ws` to `endpoint`.
    /// An endpoint that was deleted or switched off meanwhile is skipped (`Ok`).
    pub async fn deliver(
        &self,
        ws: WorkspaceId,
        endpoint: WebhookId,
        seq: i64,
        attempt: u32,
    ) -> Result<(), DeliveryError> {
        let Some(ep) = self.store.webhook(ws, endpoint).await? else {
            return Ok(());
        };
        if !ep.enabled {
            return Ok(());
        }
        let event = self
            .store
            .events_after(ws, seq - 1, 1)
            .await?
            .into_iter()
            .next()
            .filter(|e| e.seq == seq)
            .ok_or_else(|| DeliveryError::Permanent(format!("event {seq} is no longer in the log")))?;
        let secret = self.open_secret(&ep)?;
        let body = body(&event);
        let started = Instant::now();
        let sent = match self.http.post(&ep.url) {
            Ok(request) => request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(
                    SIGNATURE_HEADER,
                    sign(secret.expose_secret(), now().timestamp(), &body),
                )
                .header(EVENT_ID_HEADER, event_id(&event))
                .header(EVENT_TYPE_HEADER, event.kind.as_str())
                .header(ATTEMPT_HEADER, attempt.to_string())
                .body(body)
                .send()
                .await
                .map_err(|e| self.failure(&e)),
            // the URL names a refused address: no attempt can reach it
            Err(e) => Err(DeliveryError::Permanent(e.to_string())),
        };
        let mut log = WebhookDelivery {
            id: DeliveryId::from_i64(0),
            workspace_id: ws,
            endpoint_id: endpoint,
            event_seq: seq,
            event_type: event.kind.clone(),
            attempt,
            status: None,
            response_body: None,
            error: None,
            duration_ms: 0,
            succeeded: false,
            at: now(),
        };
        let outcome = match sent {
            Ok(response) => {
                let status = response.status();
                let retry_after = retry_after(&response);
                let text = response.text().await.unwrap_or_default();
                let excerpt: String = text.chars().take(BODY_EXCERPT).collect();
                log.status = Some(status.as_u16());
                log.response_body = (!excerpt.is_empty()).then_some(excerpt.clone());
                if status.is_success() {
                    log.succeeded = true;
                    Ok(())
                } else {
                    let summary: String = excerpt.chars().take(200).collect();
                    let message = format!("receiver answered HTTP {}: {summary}", status.as_u16());
                    log.error = Some(message.clone());
                    if status == reqwest::StatusCode::GONE {
                        Err(DeliveryError::Permanent(message))
                    } else {
                        Err(DeliveryError::Retry(message, retry_after))
                    }
                }
            }
            Err(e) => {
                log.error = Some(e.to_string());
                Err(e)
            }
        };
        log.duration_ms = started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32;
        self.store.record_delivery(&log).await?;
        outcome
    }

    /// Counts a delivery that exhausted its attempts; returns the `webhook.disabled` event when
    /// that switched the endpoint off.
    pub async fn dead(
        &self,
        ws: WorkspaceId,
        endpoint: WebhookId,
        at: Timestamp,
    ) -> Result<Vec<Event>, StoreError> {
        let events = self
            .store
            .webhook_dead(ws, endpoint, self.options.disable_after.max(1), at)
            .await?;
        if !events.is_empty() {
            tracing::warn!(endpoint = %endpoint, workspace = %ws, "webhook endpoint switched off after repeated failures");
        }
        Ok(events)
    }

    /// What a request that got no answer comes to: dead at once when the outbound guard
    /// refused the receiver's address (it resolved or redirected somewhere internal), else
    /// worth another attempt.
    fn failure(&self, e: &reqwest::Error) -> DeliveryError {
        if let Some(refused) = crate::net::refusal(e) {
            return DeliveryError::Permanent(refused.to_string());
        }
        let message = if e.is_timeout() {
            format!("no answer within {} ms", self.options.timeout.as_millis())
        } else if e.is_connect() {
            "could not connect to the receiver".to_owned()
        } else {
            "the request failed before an answer arrived".to_owned()
        };
        DeliveryError::Retry(message, None)
    }

    fn open_secret(&self, ep: &WebhookEndpoint) -> Result<SecretString, DeliveryError> {
        let sealer = self.sealer.as_ref().ok_or_else(|| {
            DeliveryError::Retry(
                "no master key is configured to open the signing secret".into(),
                None,
            )
        })?;
        sealer
            .open_for(ep.workspace_id, &secret_purpose(ep.id), &ep.secret)
            .map_err(|e| DeliveryError::Permanent(e.to_string()))
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let raw = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    raw.trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time() {
        let header = sign("whsec_x", 1_700_000_000, b"{\"a\":1}");
        assert!(header.starts_with("t=1700000000,v1="));
        let ok = |secret: &str, body: &[u8], now: i64| {
            verify(secret, &header, body, now, Duration::from_secs(300))
        };
        assert!(ok("whsec_x", b"{\"a\":1}", 1_700_000_100));
        assert!(!ok("whsec_y", b"{\"a\":1}", 1_700_000_100));
        assert!(!ok("whsec_x", b"{\"a\":2}", 1_700_000_100));
        assert!(!ok("whsec_x", b"{\"a\":1}", 1_700_001_000));
        for garbage in ["", "t=1", "v1=00", "t=x,v1=zz", "t=1700000000,v1=abc"] {
            assert!(!verify(
                "whsec_x",
                garbage,
                b"{}",
                1_700_000_000,
                Duration::from_secs(300)
            ));
        }
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // computed independently: HMAC-SHA256("whsec_test", "1700000000.{\"type\":\"lead.created\"}")
        assert_eq!(
            sign("whsec_test", 1_700_000_000, br#"{"type":"lead.created"}"#),
            "t=1700000000,v1=f4ab7ff07e975aca79e20f4f3519fd5b0da6471071d75d1bd6ba666cc98d2ebe"
        );
    }

    #[test]
    fn secrets_are_random_and_prefixed() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.expose_secret().starts_with("whsec_"));
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
