//! Clearbit (legacy; now HubSpot Breeze Intelligence): Person and Company from one Combined Find
//! call, `GET https://person.clearbit.com/v2/combined/find?email=` with a Bearer key (statuses as
//! in github.com/yocontra/clearbit-node, rate-limit headers as in clearbit/clearbit-ruby issue #6,
//! billing per help.clearbit.com article 22910775621399). Peculiar signals: 202 means queued, ask
//! again later (not a miss); 404 and a null `person`/`company` are free misses; a 429 without
//! `Retry-After` waits for `X-RateLimit-Reset`.

#[cfg(test)]
mod tests;

use crate::domain::{CompanyData, Group, GroupData, PersonData, Subject};
use super::Adapter;
use crate::enrich::provider::{
    self, Answer, CallContext, HttpReply, Provider, ProviderError, ProviderKind, bare_domain,
    classify_status, country_code, profile_handle, retry_after,
};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use std::time::Duration;
use std::sync::Arc;
use url::Url;

/// The groups one Combined Find answers.
const GROUPS: [Group; 2] = [Group::Person, Group::Company];
/// Clearbit gives no match score; its answers are keyed on the exact email, so fairly sure.
const CONFIDENCE: f64 = 0.75;
/// Clearbit bills a credit whenever it appends data, once per group answered.
const CREDITS_PER_HIT: u32 = 1;
/// How long to wait for a queued (202) lookup when Clearbit does not say.
const QUEUED_RETRY: Duration = Duration::from_secs(10);
/// The longest wait taken from `X-RateLimit-Reset`, the same cap `retry_after` applies.
const MAX_RESET_WAIT: Duration = Duration::from_secs(3600);
/// An `X-RateLimit-Reset` this large is a Unix time (some gateways send one), not seconds.
const UNIX_TIME_FLOOR: u64 = 1_000_000_000;

#[derive(Clone, Debug)]
pub struct Config {
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
pub const BASE_URL: &str = "https://person.clearbit.com/v2";

/// This adapter for the registry (`providers::ADAPTERS`).
pub const ADAPTER: Adapter = Adapter::Remote {
    base_url: BASE_URL,
    build: |base_url| Arc::new(Clearbit::new(Config { base_url })),
};

pub struct Clearbit {
    config: Config,
}

impl Clearbit {
    pub fn new(config: Config) -> Self {
        Self { config }
    }

    /// `{base}/combined/find?email=…`, keeping the base URL's own path (`/v2`). The query is
    /// built on the URL because reqwest's `query` needs a feature this crate does not enable.
    fn combined_find_url(&self, email: &str) -> Result<Url, ProviderError> {
        let mut url = self.config.base_url.clone();
        url.path_segments_mut()
            .map_err(|()| ProviderError::Rejected("the Clearbit base URL cannot take a path".into()))?
            .pop_if_empty()
            .extend(["combined", "find"]);
        url.query_pairs_mut().append_pair("email", email);
        Ok(url)
    }

    async fn look_up_one(
        &self,
        ctx: &CallContext<'_>,
        group: Group,
        subject: &Subject,
    ) -> Result<Answer, ProviderError> {
        let Some(email) = email_of(subject) else {
            // The pipeline skips such subjects; answering keeps "one answer per subject" anyway.
            return Ok(Answer::Failed(ProviderError::Rejected(
                "Clearbit needs an email".into(),
            )));
        };
        let request = ctx
            .http
            .get(self.combined_find_url(email)?)
            .bearer_auth(ctx.api_key);
        let reply = provider::send(request).await?;
        answer_from(group, &reply)
    }
}

#[async_trait::async_trait]
impl Provider for Clearbit {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Clearbit
    }

    fn groups(&self) -> &'static [Group] {
        &GROUPS
    }

    fn batch_size(&self, _group: Group) -> usize {
        1
    }

    fn credits_per_hit(&self, _group: Group) -> u32 {
        CREDITS_PER_HIT
    }

    fn can_look_up(&self, group: Group, subject: &Subject) -> bool {
        GROUPS.contains(&group) && email_of(subject).is_some()
    }

    async fn lookup(
        &self,
        ctx: &CallContext<'_>,
        group: Group,
        subjects: &[Subject],
    ) -> Result<Vec<Answer>, ProviderError> {
        if !GROUPS.contains(&group) {
            return Err(ProviderError::Rejected(format!(
                "Clearbit does not fill {}",
                group.as_str()
            )));
        }
        // batch_size is 1, so this is one call; more subjects are simply asked in turn.
        let mut answers = Vec::with_capacity(subjects.len());
        for subject in subjects {
            let answer = self
                .look_up_one(ctx, group, subject)
                .await
                .map_err(|e| e.redacted(ctx.api_key))?;
            answers.push(answer);
        }
        Ok(answers)
    }
}

/// The subject's email when it plausibly is one; the endpoint takes nothing else.
fn email_of(subject: &Subject) -> Option<&str> {
    subject
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| e.contains('@'))
}

/// Clearbit's status codes, from the generic meaning plus its own: 202 queued, 404 a miss.
fn answer_from(group: Group, reply: &HttpReply) -> Result<Answer, ProviderError> {
    match reply.status.as_u16() {
        200 => found_or_missed(group, reply),
        202 => Ok(Answer::Pending {
            retry_after: Some(retry_after(&reply.headers).unwrap_or(QUEUED_RETRY)),
        }),
        404 => Ok(Answer::NotFound { credits: 0 }),
        // Not documented by Clearbit, but the generic meaning, and with one subject per call it
        // belongs to that subject.
        451 => Ok(Answer::LegalSuppressed),
        _ => Err(call_error(reply)),
    }
}

fn call_error(reply: &HttpReply) -> ProviderError {
    match classify_status(reply) {
        // The 429 is assumed (unconfirmed); the reset header is what Clearbit documents.
        Some(ProviderError::RateLimited { retry_after }) => ProviderError::RateLimited {
            retry_after: retry_after.or_else(|| rate_limit_reset(&reply.headers)),
        },
        // 422 `email_invalid` and friends: Clearbit's message says what to fix.
        Some(ProviderError::Rejected(status)) => ProviderError::Rejected(with_clearbit_reason(status, reply)),
        Some(other) => other,
        // A 2xx other than 200 and 202 (e.g. 204) is undocumented and carries nothing usable.
        None => ProviderError::Malformed(format!("unexpected HTTP {} from Clearbit", reply.status.as_u16())),
    }
}

/// `X-RateLimit-Reset` as a wait: seconds until the window resets, or a Unix time.
fn rate_limit_reset(headers: &HeaderMap) -> Option<Duration> {
    let raw: u64 = headers
        .get("x-ratelimit-reset")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let seconds = if raw >= UNIX_TIME_FLOOR {
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        raw.saturating_sub(now)
    } else {
        raw
    };
    Some(Duration::from_secs(seconds).min(MAX_RESET_WAIT))
}

/// `HTTP 422` plus Clearbit's `error.type` and `error.message` when the body has them.
fn with_clearbit_reason(status: String, reply: &HttpReply) -> String {
    let Ok(ErrorBody { error: Some(error) }) = serde_json::from_slice::<ErrorBody>(&reply.body) else {
        return status;
    };
    match (filled(error.kind), filled(error.message)) {
        (Some(kind), Some(message)) => format!("{status} {kind}: {message}"),
        (Some(reason), None) | (None, Some(reason)) => format!("{status}: {reason}"),
        (None, None) => status,
    }
}

/// A 200: the group's half of the combined record, or a free miss when Clearbit has none.
fn found_or_missed(group: Group, reply: &HttpReply) -> Result<Answer, ProviderError> {
    let combined = combined_response(reply)?;
    let data = match group {
        Group::Person => combined.person.map(|p| GroupData::Person(person_data(p))),
        Group::Company => combined.company.map(|c| GroupData::Company(company_data(c))),
        other => {
            return Err(ProviderError::Rejected(format!(
                "Clearbit does not fill {}",
                other.as_str()
            )));
        }
    };
    // A record with none of our fields appends nothing, so Clearbit bills nothing for it.
    Ok(match data {
        Some(data) if !data.clone().into_fields().is_empty() => Answer::Found {
            data,
            confidence: CONFIDENCE,
            credits: CREDITS_PER_HIT,
        },
        _ => Answer::NotFound { credits: 0 },
    })
}

/// The body must be the documented `{"person":…,"company":…}` wrapper; anything else is not
/// a miss but a response we cannot read.
fn combined_response(reply: &HttpReply) -> Result<CombinedResponse, ProviderError> {
    let body: serde_json::Value = reply.json()?;
    let has_wrapper = body
        .as_object()
        .is_some_and(|o| o.contains_key("person") || o.contains_key("company"));
    if !has_wrapper {
        return Err(ProviderError::Malformed(
            "Clearbit's reply has neither `person` nor `company` (HTTP 200)".into(),
        ));
    }
    serde_json::from_value(body).map_err(|e| ProviderError::Malformed(format!("{e} (HTTP 200)")))
}

fn person_data(person: ClearbitPerson) -> PersonData {
    let employment = person.employment.unwrap_or_default();
    PersonData {
        full_name: person.name.and_then(full_name),
        title: filled(employment.title),
        seniority: filled(employment.seniority),
        department: filled(employment.role),
        // LinkedIn handles come as `in/jane-doe`; we keep the last segment.
        linkedin_handle: handle(person.linkedin).as_deref().and_then(profile_handle),
        twitter_handle: handle(person.twitter).as_deref().and_then(profile_handle),
        location: filled(person.location).or_else(|| person.geo.and_then(city_and_country)),
    }
}

fn full_name(name: Name) -> Option<String> {
    filled(name.full_name).or_else(|| {
        let parts: Vec<String> = [name.given_name, name.family_name]
            .into_iter()
            .filter_map(filled)
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    })
}

/// `Berlin, Germany` from the structured location, when the free-text one is missing.
fn city_and_country(geo: Geo) -> Option<String> {
    let parts: Vec<String> = [geo.city, geo.country].into_iter().filter_map(filled).collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn company_data(company: ClearbitCompany) -> CompanyData {
    let category = company.category.unwrap_or_default();
    let metrics = company.metrics.unwrap_or_default();
    let geo = company.geo.unwrap_or_default();
    CompanyData {
        name: filled(company.name),
        domain: filled(company.domain).map(|d| bare_domain(&d)),
        industry: filled(category.industry).or_else(|| filled(category.sector)),
        employee_count: metrics.employees.and_then(whole_number),
        employee_range: filled(metrics.employees_range),
        annual_revenue: metrics.annual_revenue.and_then(whole_number),
        founded_year: company
            .founded_year
            .and_then(whole_number)
            .and_then(|y| i32::try_from(y).ok()),
        country: filled(geo.country_code)
            .and_then(|c| country_code(&c))
            .or_else(|| filled(geo.country).and_then(|c| country_code(&c))),
        city: filled(geo.city),
        linkedin_url: handle(company.linkedin).map(|h| company_linkedin_url(&h)),
        technologies: company
            .tech
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| filled(Some(t)))
            .collect(),
    }
}

/// Clearbit's company handle is a path such as `company/acme`; tolerate a bare slug or a URL.
fn company_linkedin_url(handle: &str) -> String {
    let path = handle.trim().trim_matches('/');
    if path.starts_with("http://") || path.starts_with("https://") {
        return path.to_owned();
    }
    let path = path
        .trim_start_matches("www.")
        .trim_start_matches("linkedin.com/");
    if path.contains('/') {
        format!("https://www.linkedin.com/{path}")
    } else {
        format!("https://www.linkedin.com/company/{path}")
    }
}

fn handle(profile: Option<Handle>) -> Option<String> {
    profile.and_then(|p| filled(p.handle))
}

/// Trimmed text, or `None` when blank: Clearbit sends `""` as well as `null` for nothing.
fn filled(text: Option<String>) -> Option<String> {
    let text = text?;
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// Counts and dollars are JSON numbers, possibly written with a fraction (`1.2e9`).
fn whole_number(value: f64) -> Option<i64> {
    (value.is_finite() && value >= 0.0 && value <= i64::MAX as f64).then(|| value.round() as i64)
}

// Clearbit's JSON, only the parts we map. Every field may be missing or null.

#[derive(Deserialize, Default)]
#[serde(default)]
struct CombinedResponse {
    person: Option<ClearbitPerson>,
    company: Option<ClearbitCompany>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ClearbitPerson {
    name: Option<Name>,
    employment: Option<Employment>,
    linkedin: Option<Handle>,
    twitter: Option<Handle>,
    location: Option<String>,
    geo: Option<Geo>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Name {
    full_name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Employment {
    title: Option<String>,
    role: Option<String>,
    seniority: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Handle {
    handle: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Geo {
    city: Option<String>,
    country: Option<String>,
    country_code: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ClearbitCompany {
    name: Option<String>,
    domain: Option<String>,
    category: Option<Category>,
    metrics: Option<Metrics>,
    founded_year: Option<f64>,
    geo: Option<Geo>,
    linkedin: Option<Handle>,
    tech: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Category {
    sector: Option<String>,
    industry: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Metrics {
    employees: Option<f64>,
    employees_range: Option<String>,
    annual_revenue: Option<f64>,
}

/// `{"error":{"type":"email_invalid","message":"…"}}`
#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorBody {
    error: Option<ErrorDetail>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorDetail {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}
