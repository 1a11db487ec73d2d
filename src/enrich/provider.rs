//! The contract every enrichment adapter implements, and the HTTP plumbing they share.
//!
//! An adapter turns subjects into one provider request, and that provider's response into
//! canonical answers, one per subject in order. It does not retry, pace, cache or bill: the
//! waterfall in `pipeline` does all of that the same way for every provider. Status codes mean
//! different things to different providers (Hunter's 403 is "slow down"), so each adapter
//! classifies its own responses, starting from `classify_status`.

pub use crate::domain::ProviderKind;
use crate::domain::{Group, GroupData, Subject};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use std::time::Duration;

/// A provider's answer for one subject.
#[allow(clippy::large_enum_variant)] // answers live briefly, one per subject
#[derive(Clone, PartialEq, Debug)]
pub enum Answer {
    /// The provider knew something. `confidence` is 0–1, normalised from the provider's own
    /// scale; `credits` is what this answer was billed.
    Found {
        data: GroupData,
        confidence: f64,
        credits: u32,
    },
    /// The provider knows nothing about the subject; `credits` is usually 0 (misses are free
    /// with every provider we speak to) but is kept for those that bill them.
    NotFound { credits: u32 },
    /// The provider is still working on it (Clearbit 202, Hunter verifier 202): ask again
    /// later; not a miss, so nothing is remembered.
    Pending { retry_after: Option<Duration> },
    /// The provider may not return data on this person (e.g. HTTP 451).
    LegalSuppressed,
    /// This subject failed while others in the same call succeeded.
    Failed(ProviderError),
}

impl Answer {
    /// The same answer with `api_key` removed from a failure's text.
    pub fn redacted(self, api_key: &str) -> Self {
        match self {
            Answer::Failed(e) => Answer::Failed(e.redacted(api_key)),
            other => other,
        }
    }
}

/// Why a call (or one subject in a bulk call) failed.
#[derive(Clone, PartialEq, Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider asks us to slow down; worth retrying after `retry_after`.
    #[error("rate limited by the provider")]
    RateLimited { retry_after: Option<Duration> },
    /// The account has no credits left for this period.
    #[error("the provider account is out of credits")]
    QuotaExhausted,
    /// The API key was rejected; the provider is disabled for the workspace until fixed.
    #[error("the provider rejected the API key")]
    Unauthorized,
    /// A failure that may pass: 5xx, connection reset, timeout.
    #[error("transient provider failure: {message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The provider refused the request itself (400, 422); retrying will not help.
    #[error("the provider refused the request: {0}")]
    Rejected(String),
    /// The response could not be read in the provider's documented shape.
    #[error("malformed provider response: {0}")]
    Malformed(String),
}

impl ProviderError {
    /// Whether the same call may succeed if tried again.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited { .. } | ProviderError::Transient { .. }
        )
    }

    /// The wait the provider asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::RateLimited { retry_after } | ProviderError::Transient { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// The same error with `api_key` removed from its text: provider bodies and parse
    /// messages end up in error texts and could echo the key back.
    pub fn redacted(self, api_key: &str) -> Self {
        if api_key.is_empty() {
            return self;
        }
        let scrub = |text: String| text.replace(api_key, "[redacted]");
        match self {
            ProviderError::Transient { message, retry_after } => ProviderError::Transient {
                message: scrub(message),
                retry_after,
            },
            ProviderError::Rejected(text) => ProviderError::Rejected(scrub(text)),
            ProviderError::Malformed(text) => ProviderError::Malformed(scrub(text)),
            other => other,
        }
    }

    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            ProviderError::RateLimited { .. } => "rate_limited",
            ProviderError::QuotaExhausted => "quota_exhausted",
            ProviderError::Unauthorized => "unauthorized",
            ProviderError::Transient { .. } => "transient",
            ProviderError::Rejected(_) => "rejected",
            ProviderError::Malformed(_) => "malformed",
        }
    }
}

/// What one call gets besides its subjects. The key is only ever placed in the request; it is
/// never logged and never part of an error message.
pub struct CallContext<'a> {
    pub http: &'a reqwest::Client,
    /// The workspace's key for this provider, decrypted just for this call.
    pub api_key: &'a str,
    /// The provider's per-workspace options (only the sandbox has any).
    pub options: &'a serde_json::Value,
}

/// An enrichment provider adapter.
#[async_trait::async_trait]
pub trait Provider: Send + Sync + 'static {
    fn kind(&self) -> ProviderKind;

    /// The groups this provider can fill.
    fn groups(&self) -> &'static [Group];

    /// Most subjects one call for `group` takes: the bulk endpoint's limit, or 1 when the
    /// provider has none (the pipeline then makes calls concurrently, bounded per provider).
    fn batch_size(&self, group: Group) -> usize;

    /// Credits one hit for `group` costs by default; reserved against quotas and budgets
    /// before a call, and the unused part released after it.
    fn credits_per_hit(&self, group: Group) -> u32;

    /// Whether `subject` carries enough for this provider to try (e.g. Hunter's finder needs
    /// a name and a domain). Subjects it cannot try are skipped for free.
    fn can_look_up(&self, group: Group, subject: &Subject) -> bool;

    /// Looks subjects up: one answer per subject, in order. An `Err` fails the whole call.
    async fn lookup(
        &self,
        ctx: &CallContext<'_>,
        group: Group,
        subjects: &[Subject],
    ) -> Result<Vec<Answer>, ProviderError>;
}

/// A response read to the end.
pub struct HttpReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl HttpReply {
    /// Parses the body as JSON of type `T`, or `Malformed`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ProviderError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ProviderError::Malformed(format!("{} (HTTP {})", e, self.status)))
    }
}

/// Sends a request and reads the whole body; network failures become `Transient`. The
/// message never contains the URL, which may carry an API key in its query string.
pub async fn send(request: reqwest::RequestBuilder) -> Result<HttpReply, ProviderError> {
    let response = request.send().await.map_err(network_error)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(network_error)?;
    Ok(HttpReply {
        status,
        headers,
        body,
    })
}

fn network_error(e: reqwest::Error) -> ProviderError {
    let message = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "response body could not be read"
    } else {
        "request failed"
    };
    ProviderError::Transient {
        message: message.to_owned(),
        retry_after: None,
    }
}

/// `Retry-After` in seconds or as an HTTP date, capped at an hour.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = if let Ok(secs) = raw.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(raw).ok()?;
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or_default()
    };
    Some(wait.min(Duration::from_secs(3600)))
}

/// The conventional meaning of an error status, for adapters to start from: 401 bad key,
/// 402 out of credits, 429 slow down, 451 legal suppression (as a call error it is
/// `Rejected`), other 4xx rejected, 5xx transient. `None` for 2xx and 404, whose meaning
/// differs by provider.
pub fn classify_status(reply: &HttpReply) -> Option<ProviderError> {
    let status = reply.status;
    let detail = || format!("HTTP {}", status.as_u16());
    match status.as_u16() {
        200..=299 | 404 => None,
        401 => Some(ProviderError::Unauthorized),
        402 => Some(ProviderError::QuotaExhausted),
        429 => Some(ProviderError::RateLimited {
            retry_after: retry_after(&reply.headers),
        }),
        408 | 500..=599 => Some(ProviderError::Transient {
            message: detail(),
            retry_after: retry_after(&reply.headers),
        }),
        _ => Some(ProviderError::Rejected(detail())),
    }
}

/// Normalises a domain for providers: lower case, no scheme, no `www.`, no path.
pub fn bare_domain(raw: &str) -> String {
    let raw = raw.trim().to_ascii_lowercase();
    let raw = raw.split("://").last().unwrap_or(&raw);
    let raw = raw.split(['/', '?', '#']).next().unwrap_or(raw);
    raw.strip_prefix("www.").unwrap_or(raw).to_owned()
}

/// The handle in a profile URL (`https://www.linkedin.com/in/jane-doe/` → `jane-doe`), or the
/// input itself when it already is one.
pub fn profile_handle(raw: &str) -> Option<String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let handle = trimmed
        .rsplit('/')
        .next()
        .unwrap_or(trimmed)
        .trim_start_matches('@');
    (!handle.is_empty()).then(|| handle.to_owned())
}

/// A two-letter country code for a provider's country (ISO code or English name).
pub fn country_code(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.len() == 2 && raw.chars().all(|c| c.is_ascii_alphabetic()) {
        return Some(raw.to_ascii_uppercase());
    }
    let known = [
        ("united states", "US"),
        ("usa", "US"),
        ("united kingdom", "GB"),
        ("uk", "GB"),
        ("germany", "DE"),
        ("france", "FR"),
        ("canada", "CA"),
        ("australia", "AU"),
        ("india", "IN"),
        ("netherlands", "NL"),
        ("spain", "ES"),
        ("italy", "IT"),
        ("sweden", "SE"),
        ("switzerland", "CH"),
        ("brazil", "BR"),
        ("japan", "JP"),
        ("ireland", "IE"),
        ("israel", "IL"),
        ("singapore", "SG"),
        ("poland", "PL"),
        ("denmark", "DK"),
        ("norway", "NO"),
        ("finland", "FI"),
        ("austria", "AT"),
        ("belgium", "BE"),
        ("portugal", "PT"),
        ("mexico", "MX"),
        ("china", "CN"),
    ];
    let lower = raw.to_ascii_lowercase();
    known
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|(_, code)| (*code).to_owned())
}

/// A phone number in E.164 when it plausibly is one (`+` and 8–15 digits after cleanup).
pub fn e164(raw: &str) -> Option<String> {
    let digits: String = raw.chars().filter(|c| c.is_ascii_digit()).collect();
    let plus = raw.trim_start().starts_with('+') || raw.trim_start().starts_with("00");
    let digits = if raw.trim_start().starts_with("00") {
        digits.trim_start_matches("00").to_owned()
    } else {
        digits
    };
    (plus && (8..=15).contains(&digits.len())).then(|| format!("+{digits}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_domain_strips_scheme_www_and_path() {
        assert_eq!(bare_domain("https://www.Acme.com/about"), "acme.com");
        assert_eq!(bare_domain("acme.io"), "acme.io");
    }

    #[test]
    fn profile_handle_takes_the_last_segment() {
        assert_eq!(
            profile_handle("https://www.linkedin.com/in/jane-doe/").as_deref(),
            Some("jane-doe")
        );
        assert_eq!(profile_handle("@jane").as_deref(), Some("jane"));
        assert_eq!(profile_handle(" "), None);
    }

    #[test]
    fn country_code_accepts_codes_and_names() {
        assert_eq!(country_code("de").as_deref(), Some("DE"));
        assert_eq!(country_code("United States").as_deref(), Some("US"));
        assert_eq!(country_code("Atlantis"), None);
    }

    #[test]
    fn e164_needs_a_country_prefix() {
        assert_eq!(e164("+1 (415) 555-0100").as_deref(), Some("+14155550100"));
        assert_eq!(e164("0049 30 1234567").as_deref(), Some("+49301234567"));
        assert_eq!(e164("415 555 0100"), None);
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
