//! Hunter.io adapter: Email Finder (`GET /v2/email-finder`) → `Person`, Email Verifier
//! (`GET /v2/email-verifier`) → `EmailVerification`, key in the `api_key` query parameter. Sources:
//! <https://github.com/VonStruddle/PyHunter>, <https://help.hunter.io/en/articles/1911617> (billing),
//! <https://rate-limits.apis.io/rate-limits/hunter/hunter-rate-limits/> (limits). Peculiar signals:
//! 403 = slow down, 429 = monthly credits exhausted (the reverse of the usual convention), verifier
//! 202 = still verifying (poll, billed once), finder miss = 404 or a 200 without `data.email`.

#[cfg(test)]
mod tests;

use crate::domain::{EmailStatus, EmailVerificationData, Group, GroupData, PersonData, Subject};
use super::Adapter;
use crate::enrich::provider::{
    self, Answer, CallContext, HttpReply, Provider, ProviderError, ProviderKind, bare_domain,
    classify_status, profile_handle,
};
use serde::{Deserialize, Deserializer};
use std::time::Duration;
use std::sync::Arc;
use url::Url;

/// Where Hunter's API lives.
#[derive(Clone, Debug)]
pub struct Config {
    /// The versioned root, e.g. `https://api.hunter.io/v2`; endpoint names are appended to it.
    pub base_url: Url,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            base_url: Url::parse(BASE_URL).expect("valid default URL"),
        }
    }
}

/// The API's versioned root, unless the `provider_urls` setting names another.
pub const BASE_URL: &str = "https://api.hunter.io/v2";

/// This adapter for the registry (`providers::ADAPTERS`).
pub const ADAPTER: Adapter = Adapter::Remote {
    base_url: BASE_URL,
    build: |base_url| Arc::new(Hunter::new(Config { base_url })),
};

const GROUPS: [Group; 2] = [Group::Person, Group::EmailVerification];

/// Hunter documents no `Retry-After` on its 403, so we back off this long unless it sends one.
const RATE_LIMIT_BACKOFF: Duration = Duration::from_secs(1);

/// A slow verification runs for about 20 s on Hunter's side; polling every few seconds catches it
/// soon after it ends without hammering the verifier's tighter rate limit.
const VERIFICATION_POLL: Duration = Duration::from_secs(5);

/// Confidence when Hunter leaves out its score: we know the answer, not how sure Hunter is.
const UNSCORED_CONFIDENCE: f64 = 0.5;

pub struct Hunter {
    config: Config,
}

impl Hunter {
    pub fn new(config: Config) -> Self {
        Self { config }
    }

    /// Looks one subject up; every error leaves here with the key scrubbed from its text.
    async fn lookup_one(
        &self,
        ctx: &CallContext<'_>,
        group: Group,
        subject: &Subject,
    ) -> Result<Answer, ProviderError> {
        let answer = match group {
            Group::Person => self.find_person(ctx, subject).await,
            Group::EmailVerification => self.verify_email(ctx, subject).await,
            Group::Company | Group::Phone => Err(ProviderError::Rejected(format!(
                "Hunter does not offer the {group} group"
            ))),
        };
        answer.map_err(|e| e.redacted(ctx.api_key))
    }

    async fn find_person(&self, ctx: &CallContext<'_>, subject: &Subject) -> Result<Answer, ProviderError> {
        let params = finder_params(subject)
            .ok_or_else(|| ProviderError::Rejected("the email finder needs a domain and a name".into()))?;
        let reply = self.get(ctx, "email-finder", &params).await?;
        if let Some(early) = early_answer(&reply)? {
            return Ok(early);
        }
        let finding: Option<Finding> = data_of(&reply)?;
        Ok(finding.map_or(Answer::NotFound { credits: 0 }, Finding::into_answer))
    }

    async fn verify_email(&self, ctx: &CallContext<'_>, subject: &Subject) -> Result<Answer, ProviderError> {
        let email = filled(subject.email.as_deref())
            .ok_or_else(|| ProviderError::Rejected("the email verifier needs an email".into()))?;
        let reply = self.get(ctx, "email-verifier", &[("email", email)]).await?;
        if let Some(early) = early_answer(&reply)? {
            return Ok(early);
        }
        let verification: Option<Verification> = data_of(&reply)?;
        verification
            .ok_or_else(|| ProviderError::Malformed("the verifier returned no data".into()))?
            .into_answer()
    }

    async fn get(
        &self,
        ctx: &CallContext<'_>,
        endpoint: &str,
        params: &[(&str, String)],
    ) -> Result<HttpReply, ProviderError> {
        let url = self.endpoint_url(endpoint, params, ctx.api_key)?;
        provider::send(ctx.http.get(url)).await
    }

    /// `{base}/{endpoint}?{params}&api_key=…`; built on the URL rather than with string
    /// concatenation so names like `O'Brien & Co` are escaped properly.
    fn endpoint_url(
        &self,
        endpoint: &str,
        params: &[(&str, String)],
        api_key: &str,
    ) -> Result<Url, ProviderError> {
        let mut url = self.config.base_url.clone();
        url.path_segments_mut()
            .map_err(|()| ProviderError::Rejected("the Hunter base URL cannot take a path".into()))?
            .pop_if_empty()
            .push(endpoint);
        url.query_pairs_mut()
            .extend_pairs(params.iter().map(|(name, value)| (*name, value.as_str())))
            .append_pair("api_key", api_key);
        Ok(url)
    }
}

#[async_trait::async_trait]
impl Provider for Hunter {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Hunter
    }

    fn groups(&self) -> &'static [Group] {
        &GROUPS
    }

    /// Neither endpoint has a bulk form we use (Hunter's bulk jobs are asynchronous uploads).
    fn batch_size(&self, _group: Group) -> usize {
        1
    }

    fn credits_per_hit(&self, _group: Group) -> u32 {
        1
    }

    fn can_look_up(&self, group: Group, subject: &Subject) -> bool {
        match group {
            Group::Person => finder_params(subject).is_some(),
            Group::EmailVerification => filled(subject.email.as_deref()).is_some(),
            Group::Company | Group::Phone => false,
        }
    }

    async fn lookup(
        &self,
        ctx: &CallContext<'_>,
        group: Group,
        subjects: &[Subject],
    ) -> Result<Vec<Answer>, ProviderError> {
        match subjects {
            // The normal case (batch size 1): a failure is the whole call's failure.
            [subject] => Ok(vec![self.lookup_one(ctx, group, subject).await?]),
            // Defensive: should the pipeline ever pass several, each is its own request, and one
            // failing must not discard the answers (and credits) of the others.
            many => {
                let mut answers = Vec::with_capacity(many.len());
                for subject in many {
                    answers.push(
                        self.lookup_one(ctx, group, subject)
                            .await
                            .unwrap_or_else(Answer::Failed),
                    );
                }
                Ok(answers)
            }
        }
    }
}

/// The finder's query: the bare domain plus first and last name when both are known, else the
/// full name (Hunter splits it itself). `None` when the subject lacks either.
fn finder_params(subject: &Subject) -> Option<Vec<(&'static str, String)>> {
    let domain = filled(subject.domain.as_deref())
        .map(|d| bare_domain(&d))
        .filter(|d| !d.is_empty())?;
    let mut params = vec![("domain", domain)];
    match (
        filled(subject.first_name.as_deref()),
        filled(subject.last_name.as_deref()),
    ) {
        (Some(first), Some(last)) => {
            params.push(("first_name", first));
            params.push(("last_name", last));
        }
        _ => params.push(("full_name", filled(subject.full_name.as_deref())?)),
    }
    Some(params)
}

/// Statuses that decide the answer before any body is read: Hunter's own meanings first, then
/// the conventional ones. `Ok(None)` means "a 200, read the body".
fn early_answer(reply: &HttpReply) -> Result<Option<Answer>, ProviderError> {
    match reply.status.as_u16() {
        // The verification outlasted Hunter's ~20 s window; the poll is billed once, so the 202
        // itself costs nothing and is not a miss.
        202 => Ok(Some(Answer::Pending {
            retry_after: Some(provider::retry_after(&reply.headers).unwrap_or(VERIFICATION_POLL)),
        })),
        // Misses are free with Hunter; whether the finder uses a 404 or an empty 200 is
        // unconfirmed, so both are a miss.
        404 => Ok(Some(Answer::NotFound { credits: 0 })),
        // The person asked to be removed: a per-subject answer here, as every call has one subject.
        451 => Ok(Some(Answer::LegalSuppressed)),
        _ => classify(reply).map_or(Ok(None), Err),
    }
}

/// Error statuses as Hunter means them.
fn classify(reply: &HttpReply) -> Option<ProviderError> {
    match reply.status.as_u16() {
        403 => Some(ProviderError::RateLimited {
            retry_after: Some(provider::retry_after(&reply.headers).unwrap_or(RATE_LIMIT_BACKOFF)),
        }),
        429 => Some(ProviderError::QuotaExhausted),
        _ => match classify_status(reply)? {
            // Hunter explains refusals (wrong_params, invalid email…) in its error body.
            ProviderError::Rejected(_) => Some(ProviderError::Rejected(error_details(reply))),
            other => Some(other),
        },
    }
}

/// `HTTP 400: <details>` from Hunter's `{"errors":[{"id","code","details"}]}`, or just the status
/// when the body says nothing readable.
fn error_details(reply: &HttpReply) -> String {
    let status = format!("HTTP {}", reply.status.as_u16());
    let details: Vec<String> = serde_json::from_slice::<ErrorBody>(&reply.body)
        .map(|body| body.errors.into_iter().filter_map(ErrorItem::describe).collect())
        .unwrap_or_default();
    if details.is_empty() {
        status
    } else {
        format!("{status}: {}", details.join("; "))
    }
}

/// The `data` of a 200; a body that is not JSON or has no `data` key is malformed, while
/// `"data": null` is an explicit empty answer.
fn data_of<T: serde::de::DeserializeOwned>(reply: &HttpReply) -> Result<Option<T>, ProviderError> {
    if reply.status.as_u16() != 200 {
        return Err(ProviderError::Malformed(format!(
            "unexpected HTTP {}",
            reply.status.as_u16()
        )));
    }
    Ok(reply.json::<Envelope<T>>()?.data)
}

/// The trimmed value, or `None` when blank: Hunter sends `""` as often as `null`.
fn filled(raw: Option<&str>) -> Option<String> {
    raw.map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// Hunter's 0–100 score as a 0–1 confidence.
fn confidence(score: Option<f64>) -> f64 {
    score.map_or(UNSCORED_CONFIDENCE, |s| (s / 100.0).clamp(0.0, 1.0))
}

/// Every Hunter reply wraps its payload in `data` (with `meta` beside it, which we do not need).
#[derive(Deserialize)]
struct Envelope<T> {
    /// Required key: without `deserialize_with`, serde would read a missing `data` as `None`.
    #[serde(deserialize_with = "nullable", bound(deserialize = "T: Deserialize<'de>"))]
    data: Option<T>,
}

fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(deserializer)
}

/// The Email Finder's `data`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Finding {
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    score: Option<f64>,
    position: Option<String>,
    twitter: Option<String>,
    linkedin_url: Option<String>,
}

impl Finding {
    /// A hit only when Hunter found an email: that is what the finder bills for.
    fn into_answer(self) -> Answer {
        if filled(self.email.as_deref()).is_none() {
            return Answer::NotFound { credits: 0 };
        }
        let full_name = [
            filled(self.first_name.as_deref()),
            filled(self.last_name.as_deref()),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        let person = PersonData {
            full_name: Some(full_name).filter(|n| !n.is_empty()),
            title: filled(self.position.as_deref()),
            linkedin_handle: filled(self.linkedin_url.as_deref()).and_then(|u| profile_handle(&u)),
            twitter_handle: filled(self.twitter.as_deref()).and_then(|t| profile_handle(&t)),
            ..PersonData::default()
        };
        Answer::Found {
            data: GroupData::Person(person),
            confidence: confidence(self.score),
            credits: 1,
        }
    }
}

/// The Email Verifier's `data`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Verification {
    /// `valid|invalid|accept_all|webmail|disposable|unknown`.
    status: Option<String>,
    /// Deprecated `deliverable|undeliverable|risky|unknown`, read only when `status` is missing.
    result: Option<String>,
    score: Option<f64>,
    accept_all: Option<bool>,
}

impl Verification {
    fn into_answer(self) -> Result<Answer, ProviderError> {
        let status = self.email_status().ok_or_else(|| {
            ProviderError::Malformed("the verification has neither status nor result".into())
        })?;
        let data = EmailVerificationData {
            status: Some(status),
            score: self.score.map(|s| s.round().clamp(0.0, 100.0) as i32),
        };
        Ok(Answer::Found {
            data: GroupData::EmailVerification(data),
            confidence: confidence(self.score),
            credits: 1,
        })
    }

    fn email_status(&self) -> Option<EmailStatus> {
        if let Some(status) = filled(self.status.as_deref()) {
            return Some(EmailStatus::from_provider(&status));
        }
        let result = filled(self.result.as_deref())?.to_ascii_lowercase();
        Some(match result.as_str() {
            "deliverable" => EmailStatus::Valid,
            "undeliverable" => EmailStatus::Invalid,
            // "risky" covers catch-all domains but also gibberish or blocked addresses, so it
            // only means ACCEPT_ALL when Hunter says the domain accepts everything.
            "risky" if self.accept_all == Some(true) => EmailStatus::AcceptAll,
            _ => EmailStatus::Unknown,
        })
    }
}

/// Hunter's error body: `{"errors":[{"id":"wrong_params","code":400,"details":"…"}]}`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorBody {
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorItem {
    id: Option<String>,
    details: Option<String>,
}

impl ErrorItem {
    fn describe(self) -> Option<String> {
        match (filled(self.id.as_deref()), filled(self.details.as_deref())) {
            (Some(id), Some(details)) => Some(format!("{details} ({id})")),
            (None, Some(text)) | (Some(text), None) => Some(text),
            (None, None) => None,
        }
    }
}
