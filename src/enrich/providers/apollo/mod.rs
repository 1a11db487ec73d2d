//! Apollo.io (docs.apollo.io/docs/enrich-people-data, docs.apollo.io/reference/people-enrichment,
//! docs.apollo.io/reference/rate-limits): people and phones via `POST /people/bulk_match` (10 per call;
//! used instead of `people/match`, same credit per match but a tenth of the requests), companies via
//! `GET /organizations/enrich?domain=`. Signals: a `null` match or a 200 without `organization` is a
//! free miss; 403 is a key without access to the endpoint; an `insufficient credits` error body is a
//! spent quota whatever the status; a 429 without `Retry-After` waits for the spent usage window.

#[cfg(test)]
mod tests;

use crate::domain::{CompanyData, Group, GroupData, PersonData, PhoneData, PhoneKind, PhoneNumber, Subject};
use super::Adapter;
use crate::enrich::provider::{
    self, Answer, CallContext, HttpReply, Provider, ProviderError, ProviderKind, bare_domain,
    classify_status, country_code, e164, profile_handle,
};
use reqwest::header::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;
use std::sync::Arc;
use url::Url;

/// Most people one `bulk_match` call takes (Apollo's documented limit).
pub const BULK_LIMIT: usize = 10;

/// Apollo gives no match score: a person whose email Apollo verified is a stronger match.
const VERIFIED_CONFIDENCE: f64 = 0.8;
const UNVERIFIED_CONFIDENCE: f64 = 0.6;
const COMPANY_CONFIDENCE: f64 = 0.7;

/// Longest provider error text kept in an error message.
const MAX_MESSAGE_CHARS: usize = 200;

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
pub const BASE_URL: &str = "https://api.apollo.io/api/v1";

/// This adapter for the registry (`providers::ADAPTERS`).
pub const ADAPTER: Adapter = Adapter::Remote {
    base_url: BASE_URL,
    build: |base_url| Arc::new(Apollo::new(Config { base_url })),
};

pub struct Apollo {
    config: Config,
}

impl Apollo {
    pub fn new(config: Config) -> Self {
        Self { config }
    }

    /// `{base}/<segments…>`, whatever trailing slash the base URL has.
    fn endpoint(&self, segments: &[&str]) -> Result<Url, ProviderError> {
        let mut url = self.config.base_url.clone();
        url.path_segments_mut()
            .map_err(|()| ProviderError::Rejected("the Apollo base URL cannot take a path".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// The lookup proper; its errors may still carry provider text (see `ProviderError::redacted`).
    async fn dispatch(
        &self,
        ctx: &CallContext<'_>,
        group: Group,
        subjects: &[Subject],
    ) -> Result<Vec<Answer>, ProviderError> {
        match group {
            Group::Person | Group::Phone => self.people(ctx, group, subjects).await,
            Group::Company => {
                let mut answers = Vec::with_capacity(subjects.len());
                for subject in subjects {
                    answers.push(self.company(ctx, subject).await?);
                }
                Ok(answers)
            }
            Group::EmailVerification => Err(ProviderError::Rejected("Apollo does not verify emails".into())),
        }
    }

    async fn people(
        &self,
        ctx: &CallContext<'_>,
        group: Group,
        subjects: &[Subject],
    ) -> Result<Vec<Answer>, ProviderError> {
        let request = BulkMatchRequest {
            details: subjects.iter().map(Detail::of).collect(),
            reveal_personal_emails: false,
        };
        let url = self.endpoint(&["people", "bulk_match"])?;
        let reply = provider::send(
            ctx.http
                .post(url)
                .header("x-api-key", api_key_header(ctx)?)
                .json(&request),
        )
        .await?;
        if let Some(error) = apollo_error(&reply) {
            return Err(error);
        }
        if reply.status.as_u16() == 404 {
            // A bulk call cannot say "this one person is unknown" with a status code: a 404 is
            // a wrong endpoint, which must not pass for ten silent misses.
            return Err(ProviderError::Rejected("HTTP 404".into()));
        }
        let body: BulkMatchResponse = reply.json()?;
        let matches = body.matches.ok_or_else(|| {
            ProviderError::Malformed(format!(
                "bulk_match reply without `matches` (HTTP {})",
                reply.status
            ))
        })?;
        if matches.len() != subjects.len() {
            // Matches come back in request order; with a different count there is no telling
            // whose record is whose, and a wrong attribution is worse than a failed call.
            return Err(ProviderError::Malformed(format!(
                "bulk_match returned {} matches for {} details",
                matches.len(),
                subjects.len()
            )));
        }
        let answers: Vec<Answer> = matches.into_iter().map(|m| person_answer(group, m)).collect();
        note_credit_mismatch(body.credits_consumed, &answers);
        Ok(answers)
    }

    async fn company(&self, ctx: &CallContext<'_>, subject: &Subject) -> Result<Answer, ProviderError> {
        let Some(domain) = subject
            .domain
            .as_deref()
            .map(bare_domain)
            .filter(|d| !d.is_empty())
        else {
            return Ok(Answer::Failed(ProviderError::Rejected(
                "no domain to enrich the company by".into(),
            )));
        };
        let mut url = self.endpoint(&["organizations", "enrich"])?;
        url.query_pairs_mut().append_pair("domain", &domain);
        let reply = provider::send(ctx.http.get(url).header("x-api-key", api_key_header(ctx)?)).await?;
        if let Some(error) = apollo_error(&reply) {
            return Err(error);
        }
        if reply.status.as_u16() == 404 {
            // Apollo's documented miss is a 200 without `organization`; its 404 is not
            // documented either way, so for a single domain it is read as the same miss.
            return Ok(Answer::NotFound { credits: 0 });
        }
        let body: OrganizationResponse = read_object(&reply)?;
        Ok(match body.organization {
            Some(organization) => found(GroupData::Company(company_data(organization)), COMPANY_CONFIDENCE),
            None => Answer::NotFound { credits: 0 },
        })
    }
}

#[async_trait::async_trait]
impl Provider for Apollo {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Apollo
    }

    fn groups(&self) -> &'static [Group] {
        &[Group::Person, Group::Company, Group::Phone]
    }

    fn batch_size(&self, group: Group) -> usize {
        match group {
            Group::Person | Group::Phone => BULK_LIMIT,
            Group::Company | Group::EmailVerification => 1,
        }
    }

    fn credits_per_hit(&self, _group: Group) -> u32 {
        1
    }

    fn can_look_up(&self, group: Group, s: &Subject) -> bool {
        match group {
            Group::Person | Group::Phone => {
                let named = filled(&s.full_name) || (filled(&s.first_name) && filled(&s.last_name));
                let employer = filled(&s.domain) || filled(&s.company_name);
                filled(&s.email) || filled(&s.linkedin_url) || (named && employer)
            }
            Group::Company => s.domain.as_deref().is_some_and(|d| !bare_domain(d).is_empty()),
            Group::EmailVerification => false,
        }
    }

    async fn lookup(
        &self,
        ctx: &CallContext<'_>,
        group: Group,
        subjects: &[Subject],
    ) -> Result<Vec<Answer>, ProviderError> {
        // Provider text ends up in messages (error bodies, serde excerpts of the body): make
        // sure the key never does, whatever Apollo echoes back.
        self.dispatch(ctx, group, subjects)
            .await
            .map(|answers| answers.into_iter().map(|a| a.redacted(ctx.api_key)).collect())
            .map_err(|e| e.redacted(ctx.api_key))
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

#[derive(Serialize)]
struct BulkMatchRequest {
    details: Vec<Detail>,
    reveal_personal_emails: bool,
}

/// One person to match; only the keys the subject has are sent.
#[derive(Serialize, Default)]
struct Detail {
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_name: Option<String>,
    /// Only when first and last name are unknown: Apollo also matches on a full name.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    organization_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    linkedin_url: Option<String>,
}

impl Detail {
    fn of(s: &Subject) -> Self {
        let first_name = trimmed(&s.first_name);
        let last_name = trimmed(&s.last_name);
        let name = if first_name.is_none() && last_name.is_none() {
            trimmed(&s.full_name)
        } else {
            None
        };
        Self {
            email: trimmed(&s.email),
            first_name,
            last_name,
            name,
            organization_name: trimmed(&s.company_name),
            domain: s.domain.as_deref().map(bare_domain).filter(|d| !d.is_empty()),
            linkedin_url: trimmed(&s.linkedin_url),
        }
    }
}

/// The key as a header value, marked sensitive so it is hidden from `Debug` of the request. A
/// key that cannot be a header value is unusable, which is the key's fault, not the network's.
fn api_key_header(ctx: &CallContext<'_>) -> Result<HeaderValue, ProviderError> {
    let mut value = HeaderValue::from_str(ctx.api_key).map_err(|_| ProviderError::Unauthorized)?;
    value.set_sensitive(true);
    Ok(value)
}

// ---------------------------------------------------------------------------------------------
// Replies: Apollo's shapes

#[derive(Deserialize, Default)]
#[serde(default)]
struct BulkMatchResponse {
    /// One element per detail, in order; `null` for a miss. `None` when the wrapper is missing.
    matches: Option<Vec<Value>>,
    credits_consumed: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ApolloPerson {
    id: Option<String>,
    name: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    title: Option<String>,
    seniority: Option<String>,
    departments: Option<Vec<String>>,
    email_status: Option<String>,
    linkedin_url: Option<String>,
    twitter_url: Option<String>,
    city: Option<String>,
    state: Option<String>,
    country: Option<String>,
    phone_numbers: Option<Vec<ApolloPhone>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ApolloPhone {
    raw_number: Option<String>,
    sanitized_number: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct OrganizationResponse {
    organization: Option<ApolloOrganization>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ApolloOrganization {
    name: Option<String>,
    primary_domain: Option<String>,
    website_url: Option<String>,
    industry: Option<String>,
    // Numbers Apollo has been seen to send as floats (`annual_revenue: 1.0e8`), so read loosely.
    estimated_num_employees: Option<Value>,
    annual_revenue: Option<Value>,
    founded_year: Option<Value>,
    country: Option<String>,
    city: Option<String>,
    linkedin_url: Option<String>,
    technology_names: Option<Vec<String>>,
    current_technologies: Option<Vec<ApolloTechnology>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ApolloTechnology {
    name: Option<String>,
}

/// Apollo's error body, e.g. `{"error":"…"}`; some gateways answer `{"message":"…"}`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorBody {
    error: Option<Value>,
    message: Option<Value>,
}

// ---------------------------------------------------------------------------------------------
// Replies: status and error signals

/// What an Apollo reply means when it is not data: `None` for a 2xx carrying data (or a miss)
/// and for 404, whose meaning depends on the endpoint.
fn apollo_error(reply: &HttpReply) -> Option<ProviderError> {
    let body = error_body(reply);
    let message = body.as_ref().and_then(|b| text(&b.error));
    if message.as_deref().is_some_and(is_out_of_credits) {
        // Apollo reports spent credits in the body, with statuses that vary (402, 422, 200).
        return Some(ProviderError::QuotaExhausted);
    }
    let status = reply.status.as_u16();
    match status {
        // A success that carries an error instead of data is a refusal, not an empty record.
        200..=299 => message.map(|m| ProviderError::Rejected(describe(status, Some(&m)))),
        // Apollo answers 403 when the key may not use this endpoint (it needs a master key or
        // the endpoint enabled for the key): retrying will not help, fixing the key will.
        403 => Some(ProviderError::Unauthorized),
        429 => Some(ProviderError::RateLimited {
            retry_after: provider::retry_after(&reply.headers).or_else(|| exhausted_window(&reply.headers)),
        }),
        401 | 402 | 404 | 408 => classify_status(reply),
        400..=499 => {
            let detail = message.or_else(|| body.as_ref().and_then(|b| text(&b.message)));
            Some(ProviderError::Rejected(describe(status, detail.as_deref())))
        }
        _ => classify_status(reply),
    }
}

fn error_body(reply: &HttpReply) -> Option<ErrorBody> {
    serde_json::from_slice::<ErrorBody>(&reply.body).ok()
}

fn text(value: &Option<Value>) -> Option<String> {
    match value {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

fn is_out_of_credits(message: &str) -> bool {
    message.to_ascii_lowercase().contains("insufficient credit")
}

fn describe(status: u16, message: Option<&str>) -> String {
    match message {
        Some(m) => format!(
            "HTTP {status}: {}",
            m.chars().take(MAX_MESSAGE_CHARS).collect::<String>()
        ),
        None => format!("HTTP {status}"),
    }
}

/// Without `Retry-After`, the usage headers tell which fixed window is spent; the wait is that
/// window (an hour at most, like `retry_after`), the longest one when several are spent.
fn exhausted_window(headers: &HeaderMap) -> Option<Duration> {
    let spent = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
            .is_some_and(|left| left <= 0)
    };
    [
        ("x-daily-requests-left", 3600),
        ("x-hourly-requests-left", 3600),
        ("x-minute-requests-left", 60),
    ]
    .into_iter()
    .find(|(name, _)| spent(name))
    .map(|(_, secs)| Duration::from_secs(secs))
}

/// Reads a reply whose wrapper is optional (a miss is `{}`), but which must be a JSON object.
fn read_object<T: serde::de::DeserializeOwned>(reply: &HttpReply) -> Result<T, ProviderError> {
    let value: Value = reply.json()?;
    if !value.is_object() {
        return Err(ProviderError::Malformed(format!(
            "expected a JSON object (HTTP {})",
            reply.status
        )));
    }
    serde_json::from_value(value)
        .map_err(|e| ProviderError::Malformed(format!("{e} (HTTP {})", reply.status)))
}

// ---------------------------------------------------------------------------------------------
// Mapping to the canonical model

/// One `matches` element: `null` or a record without `id` is a miss; a record that does not
/// read as a person fails that subject only.
fn person_answer(group: Group, element: Value) -> Answer {
    if element.is_null() {
        return Answer::NotFound { credits: 0 };
    }
    let person: ApolloPerson = match serde_json::from_value(element) {
        Ok(person) => person,
        Err(e) => return Answer::Failed(ProviderError::Malformed(format!("match: {e}"))),
    };
    if !filled(&person.id) {
        return Answer::NotFound { credits: 0 };
    }
    let confidence = person_confidence(&person);
    let data = match group {
        Group::Phone => GroupData::Phone(phone_data(&person)),
        _ => GroupData::Person(person_data(person)),
    };
    found(data, confidence)
}

/// A hit costs one credit; a record with nothing canonical in it is a miss, billed nothing.
fn found(data: GroupData, confidence: f64) -> Answer {
    if data.clone().into_fields().is_empty() {
        return Answer::NotFound { credits: 0 };
    }
    Answer::Found {
        data,
        confidence,
        credits: 1,
    }
}

fn person_confidence(person: &ApolloPerson) -> f64 {
    let verified = person
        .email_status
        .as_deref()
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("verified"));
    if verified {
        VERIFIED_CONFIDENCE
    } else {
        UNVERIFIED_CONFIDENCE
    }
}

fn person_data(p: ApolloPerson) -> PersonData {
    let full_name = trimmed(&p.name).or_else(|| {
        let parts: Vec<String> = [trimmed(&p.first_name), trimmed(&p.last_name)]
            .into_iter()
            .flatten()
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    });
    PersonData {
        full_name,
        title: trimmed(&p.title),
        seniority: trimmed(&p.seniority),
        department: p
            .departments
            .unwrap_or_default()
            .into_iter()
            .find(|d| !d.trim().is_empty()),
        linkedin_handle: p.linkedin_url.as_deref().and_then(profile_handle),
        twitter_handle: p.twitter_url.as_deref().and_then(profile_handle),
        location: location(&p.city, &p.state, &p.country),
    }
}

/// "City, Country"; the state stands in for a missing city, so a location is never just a
/// country when Apollo knows more.
fn location(city: &Option<String>, state: &Option<String>, country: &Option<String>) -> Option<String> {
    let parts: Vec<String> = [trimmed(city).or_else(|| trimmed(state)), trimmed(country)]
        .into_iter()
        .flatten()
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Numbers Apollo already revealed; the sanitized form is preferred, numbers that are not
/// plausibly E.164 are dropped, duplicates kept once.
fn phone_data(person: &ApolloPerson) -> PhoneData {
    let mut numbers: Vec<PhoneNumber> = Vec::new();
    for phone in person.phone_numbers.iter().flatten() {
        let number = phone
            .sanitized_number
            .as_deref()
            .and_then(e164)
            .or_else(|| phone.raw_number.as_deref().and_then(e164));
        let Some(number) = number else { continue };
        if numbers.iter().any(|n| n.number == number) {
            continue;
        }
        let kind = phone
            .kind
            .as_deref()
            .map_or(PhoneKind::Other, PhoneKind::from_provider);
        numbers.push(PhoneNumber { number, kind });
    }
    PhoneData { numbers }
}

fn company_data(o: ApolloOrganization) -> CompanyData {
    let employee_count = o
        .estimated_num_employees
        .as_ref()
        .and_then(whole_number)
        .filter(|n| *n > 0);
    CompanyData {
        name: trimmed(&o.name),
        domain: trimmed(&o.primary_domain)
            .or_else(|| trimmed(&o.website_url))
            .map(|d| bare_domain(&d))
            .filter(|d| !d.is_empty()),
        industry: trimmed(&o.industry),
        employee_count,
        employee_range: employee_count.map(|n| employee_range(n).to_owned()),
        annual_revenue: o
            .annual_revenue
            .as_ref()
            .and_then(whole_number)
            .filter(|n| *n > 0),
        founded_year: o
            .founded_year
            .as_ref()
            .and_then(whole_number)
            .and_then(|y| i32::try_from(y).ok())
            .filter(|y| *y > 0),
        country: o.country.as_deref().and_then(country_code),
        city: trimmed(&o.city),
        linkedin_url: trimmed(&o.linkedin_url),
        technologies: technologies(o.technology_names, o.current_technologies),
    }
}

/// `technology_names`, or else the names in `current_technologies`; blanks dropped, each once.
fn technologies(names: Option<Vec<String>>, current: Option<Vec<ApolloTechnology>>) -> Vec<String> {
    let names = names
        .filter(|n| n.iter().any(|t| !t.trim().is_empty()))
        .unwrap_or_else(|| {
            current
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| t.name)
                .collect()
        });
    names
        .into_iter()
        .map(|t| t.trim().to_owned())
        .fold(Vec::new(), |mut acc, t| {
            if !t.is_empty() && !acc.contains(&t) {
                acc.push(t);
            }
            acc
        })
}

fn employee_range(count: i64) -> &'static str {
    match count {
        ..=10 => "1-10",
        11..=50 => "11-50",
        51..=200 => "51-200",
        201..=1000 => "201-1000",
        1001..=5000 => "1001-5000",
        _ => "5001+",
    }
}

/// An integer from a JSON number (integer or float) or a numeric string.
fn whole_number(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f.round() as i64)),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|f| f.round() as i64),
        _ => None,
    }
}

/// Apollo reports `credits_consumed` for the whole call, but we bill each hit 1 credit anyway:
/// the pipeline reserves `credits_per_hit` per subject and needs a per-subject figure, a smaller
/// total cannot be attributed to particular matches (records Apollo already revealed to the
/// account are not charged again), and over-counting keeps budgets safe. A difference is only
/// worth a debug line.
fn note_credit_mismatch(reported: Option<f64>, answers: &[Answer]) {
    let billed: u32 = answers
        .iter()
        .map(|a| match a {
            Answer::Found { credits, .. } => *credits,
            _ => 0,
        })
        .sum();
    if let Some(reported) = reported.filter(|r| *r != f64::from(billed)) {
        tracing::debug!(
            reported,
            billed,
            "apollo credits_consumed differs from the matches billed"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

fn filled(value: &Option<String>) -> bool {
    value.as_deref().is_some_and(|v| !v.trim().is_empty())
}

fn trimmed(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}
