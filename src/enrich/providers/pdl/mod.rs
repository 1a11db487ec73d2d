//! People Data Labs: Person and Phone through Person Bulk Enrichment (`POST /v5/person/bulk`, see
//! <https://docs.peopledatalabs.com/docs/reference-person-enrichment-api>), Company through Company
//! Enrichment (`GET /v5/company/enrich`, <https://docs.peopledatalabs.com/docs/example-company-record>).
//! Signals (<https://docs.peopledatalabs.com/docs/errors>): 404 is a free miss, 402 `payment_required` means
//! out of credits; each bulk element carries its own status, so one element's 402/429 fails only its
//! subject. `likelihood` 1–10 becomes confidence/10; one credit per match.

#[cfg(test)]
mod tests;

use crate::domain::{CompanyData, Group, GroupData, PersonData, PhoneData, PhoneKind, PhoneNumber, Subject};
use super::Adapter;
use crate::enrich::provider::{
    Answer, CallContext, HttpReply, Provider, ProviderError, ProviderKind, bare_domain, classify_status,
    country_code, e164, profile_handle, send,
};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use url::Url;

/// Most requests one Person Bulk call takes.
const BULK_LIMIT: usize = 100;
/// PDL bills one credit per matched record; misses are free.
const CREDITS_PER_MATCH: u32 = 1;
/// Used when an answer carries no `likelihood`.
const DEFAULT_CONFIDENCE: f64 = 0.5;
const KEY_HEADER: &str = "X-Api-Key";

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
pub const BASE_URL: &str = "https://api.peopledatalabs.com/v5";

/// This adapter for the registry (`providers::ADAPTERS`).
pub const ADAPTER: Adapter = Adapter::Remote {
    base_url: BASE_URL,
    build: |base_url| Arc::new(PeopleDataLabs::new(Config { base_url })),
};

pub struct PeopleDataLabs {
    config: Config,
}

impl PeopleDataLabs {
    pub fn new(config: Config) -> Self {
        Self { config }
    }

    /// `{base}/{path}`; appended segment by segment because `Url::join` would drop the `/v5`.
    fn endpoint(&self, path: &str) -> Result<Url, ProviderError> {
        let mut url = self.config.base_url.clone();
        url.path_segments_mut()
            .map_err(|()| ProviderError::Rejected("the PDL base URL cannot take a path".into()))?
            .pop_if_empty()
            .extend(path.split('/'));
        Ok(url)
    }

    /// Person and Phone: one bulk call for every subject that has enough to be matched on.
    async fn enrich_people(
        &self,
        ctx: &CallContext<'_>,
        group: Group,
        subjects: &[Subject],
    ) -> Result<Vec<Answer>, ProviderError> {
        if subjects.len() > BULK_LIMIT {
            return Err(ProviderError::Rejected(format!(
                "PDL bulk takes at most {BULK_LIMIT} people"
            )));
        }
        let sent: Vec<&Subject> = subjects.iter().filter(|s| has_person_inputs(s)).collect();
        let mut results = if sent.is_empty() {
            HashMap::new()
        } else {
            self.bulk_answers(ctx, group, &sent).await?
        };
        let answers = subjects
            .iter()
            .map(|s| match results.remove(&s.lead_id.to_string()) {
                Some(answer) => answer,
                None => Answer::Failed(ProviderError::Rejected(
                    "PDL needs an email, a LinkedIn URL, or a name and a company".into(),
                )),
            })
            .collect();
        Ok(answers)
    }

    /// Sends one bulk request and answers each sent subject, keyed by its lead id.
    async fn bulk_answers(
        &self,
        ctx: &CallContext<'_>,
        group: Group,
        sent: &[&Subject],
    ) -> Result<HashMap<String, Answer>, ProviderError> {
        let request = ctx
            .http
            .post(self.endpoint("person/bulk")?)
            .header(KEY_HEADER, ctx.api_key)
            .json(&bulk_body(sent));
        let reply = send(request).await?;
        let leads = sent.iter().map(|s| s.lead_id.to_string());
        if reply.status == StatusCode::NOT_FOUND {
            // PDL's 404 is "no records found": a free miss for everyone in the call.
            return Ok(leads
                .map(|lead| (lead, Answer::NotFound { credits: 0 }))
                .collect());
        }
        if let Some(error) = call_error(&reply) {
            return Err(error);
        }
        let elements: Vec<Value> = reply.json()?;
        let matched = match_elements(sent, &elements);
        Ok(leads
            .zip(matched)
            .map(|(lead, element)| {
                let answer = match element {
                    Some(element) => element_answer(group, element, &reply.headers),
                    None => Answer::Failed(ProviderError::Malformed(
                        "the PDL bulk response has no element for this subject".into(),
                    )),
                };
                (lead, answer)
            })
            .collect())
    }

    /// Company: one call per subject (the pipeline sends one, as `batch_size` is 1).
    async fn enrich_companies(
        &self,
        ctx: &CallContext<'_>,
        subjects: &[Subject],
    ) -> Result<Vec<Answer>, ProviderError> {
        let mut answers = Vec::with_capacity(subjects.len());
        for subject in subjects {
            answers.push(self.enrich_company(ctx, subject).await?);
        }
        Ok(answers)
    }

    /// Company: one Company Enrich call for one subject.
    async fn enrich_company(
        &self,
        ctx: &CallContext<'_>,
        subject: &Subject,
    ) -> Result<Answer, ProviderError> {
        let Some((param, value)) = company_query(subject) else {
            return Ok(Answer::Failed(ProviderError::Rejected(
                "PDL needs a company domain or name".into(),
            )));
        };
        let request = ctx
            .http
            .get(self.endpoint("company/enrich")?)
            .query(&[(param, value)])
            .header(KEY_HEADER, ctx.api_key);
        let reply = send(request).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(Answer::NotFound { credits: 0 });
        }
        if let Some(error) = call_error(&reply) {
            return Err(error);
        }
        company_answer(reply.json()?)
    }
}

#[async_trait::async_trait]
impl Provider for PeopleDataLabs {
    fn kind(&self) -> ProviderKind {
        ProviderKind::PeopleDataLabs
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
        CREDITS_PER_MATCH
    }

    fn can_look_up(&self, group: Group, subject: &Subject) -> bool {
        match group {
            Group::Person | Group::Phone => has_person_inputs(subject),
            Group::Company => company_query(subject).is_some(),
            Group::EmailVerification => false,
        }
    }

    async fn lookup(
        &self,
        ctx: &CallContext<'_>,
        group: Group,
        subjects: &[Subject],
    ) -> Result<Vec<Answer>, ProviderError> {
        let result = match group {
            Group::Person | Group::Phone => self.enrich_people(ctx, group, subjects).await,
            Group::Company => self.enrich_companies(ctx, subjects).await,
            Group::EmailVerification => Err(ProviderError::Rejected("PDL does not verify emails".into())),
        };
        // Every path, errors included, leaves through here so the key is scrubbed once for all.
        without_key(result, ctx.api_key)
    }
}

// ---- requests ----

/// A subject's value, unless missing or blank.
fn filled(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The person's name as PDL takes it: first and last when both are known, else the full name.
enum Name<'a> {
    Parts(&'a str, &'a str),
    Full(&'a str),
}

fn name_of(s: &Subject) -> Option<Name<'_>> {
    match (filled(&s.first_name), filled(&s.last_name)) {
        (Some(first), Some(last)) => Some(Name::Parts(first, last)),
        _ => filled(&s.full_name).map(Name::Full),
    }
}

/// The employer as PDL's `company` takes it: the domain, which is unambiguous, else the name.
fn employer_of(s: &Subject) -> Option<&str> {
    filled(&s.domain).or_else(|| filled(&s.company_name))
}

/// PDL cannot match a name alone: it needs an email, a profile, or a name at a company.
fn has_person_inputs(s: &Subject) -> bool {
    filled(&s.email).is_some()
        || filled(&s.linkedin_url).is_some()
        || (name_of(s).is_some() && employer_of(s).is_some())
}

/// One bulk request's `params`, in the shapes PDL's official examples use (lists for `email`,
/// `profile` and `name`, plain strings for `first_name`, `last_name` and `company`).
fn person_params(s: &Subject) -> Map<String, Value> {
    let mut params = Map::new();
    if let Some(email) = filled(&s.email) {
        params.insert("email".into(), json!([email]));
    }
    if let Some(profile) = filled(&s.linkedin_url) {
        params.insert("profile".into(), json!([profile]));
    }
    match name_of(s) {
        Some(Name::Parts(first, last)) => {
            params.insert("first_name".into(), json!(first));
            params.insert("last_name".into(), json!(last));
        }
        Some(Name::Full(full)) => {
            params.insert("name".into(), json!([full]));
        }
        None => {}
    }
    if let Some(company) = employer_of(s) {
        params.insert("company".into(), json!(company));
    }
    params
}

/// The bulk body; `metadata.lead` comes back with each element so answers can be matched to leads.
fn bulk_body(subjects: &[&Subject]) -> Value {
    let requests: Vec<Value> = subjects
        .iter()
        .map(|s| json!({"metadata": {"lead": s.lead_id.to_string()}, "params": person_params(s)}))
        .collect();
    json!({ "requests": requests })
}

/// Company Enrich's query: `website` when the domain is known, else `name`.
fn company_query(s: &Subject) -> Option<(&'static str, String)> {
    if let Some(domain) = filled(&s.domain).map(bare_domain).filter(|d| !d.is_empty()) {
        return Some(("website", domain));
    }
    filled(&s.company_name).map(|name| ("name", name.to_owned()))
}

// ---- replies ----

/// PDL's error body: `{"status":N,"error":{"type":"…","message":"…"}}`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorBody {
    error: Option<ApiError>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ApiError {
    #[serde(rename = "type", deserialize_with = "text")]
    kind: Option<String>,
    #[serde(deserialize_with = "text")]
    message: Option<String>,
}

/// What an error status means for PDL: the conventional meanings (401, 402 `payment_required`,
/// 429 `rate_limit_error`, 5xx) plus PDL's own message for a refused request (400
/// `invalid_request_error`). `None` for 2xx and 404.
fn status_error(status: StatusCode, headers: &HeaderMap, error: Option<&ApiError>) -> Option<ProviderError> {
    let reply = HttpReply {
        status,
        headers: headers.clone(),
        body: bytes::Bytes::new(),
    };
    match classify_status(&reply)? {
        ProviderError::Rejected(_) => Some(ProviderError::Rejected(refusal(status, error))),
        other => Some(other),
    }
}

fn refusal(status: StatusCode, error: Option<&ApiError>) -> String {
    let mut text = format!("HTTP {}", status.as_u16());
    if let Some(kind) = error.and_then(|e| e.kind.as_deref()) {
        text.push_str(&format!(" {kind}"));
    }
    if let Some(message) = error.and_then(|e| e.message.as_deref()) {
        text.push_str(&format!(": {message}"));
    }
    text
}

fn call_error(reply: &HttpReply) -> Option<ProviderError> {
    let body: Option<ErrorBody> = serde_json::from_slice(&reply.body).ok();
    status_error(
        reply.status,
        &reply.headers,
        body.as_ref().and_then(|b| b.error.as_ref()),
    )
}

/// One element of the bulk response, shaped like a single Person Enrich response.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Enrichment {
    status: Option<u16>,
    likelihood: Option<f64>,
    data: Option<PersonRecord>,
    error: Option<ApiError>,
}

fn lead_of(element: &Value) -> Option<&str> {
    element.pointer("/metadata/lead").and_then(Value::as_str)
}

/// Pairs each sent subject with its element: by `metadata.lead` when PDL echoes it, else by
/// position (an element tagged with another lead is never taken by position).
fn match_elements<'a>(sent: &[&Subject], elements: &'a [Value]) -> Vec<Option<&'a Value>> {
    let mut by_lead: HashMap<&str, &Value> = HashMap::new();
    for element in elements {
        if let Some(lead) = lead_of(element) {
            by_lead.entry(lead).or_insert(element);
        }
    }
    sent.iter()
        .enumerate()
        .map(|(i, s)| {
            by_lead
                .get(s.lead_id.to_string().as_str())
                .copied()
                .or_else(|| elements.get(i).filter(|e| lead_of(e).is_none()))
        })
        .collect()
}

fn element_answer(group: Group, element: &Value, headers: &HeaderMap) -> Answer {
    let enrichment: Enrichment = match serde_json::from_value(element.clone()) {
        Ok(enrichment) => enrichment,
        Err(e) => return Answer::Failed(ProviderError::Malformed(format!("PDL bulk element: {e}"))),
    };
    // A record without a status is still a record; an element with neither says nothing.
    let status = match (enrichment.status, &enrichment.data) {
        (Some(status), _) => status,
        (None, Some(_)) => 200,
        (None, None) => {
            return Answer::Failed(ProviderError::Malformed("PDL bulk element has no status".into()));
        }
    };
    match (status, enrichment.data) {
        (200, Some(record)) => person_answer(group, record, enrichment.likelihood),
        (200, None) => Answer::Failed(ProviderError::Malformed(
            "PDL bulk element 200 has no data".into(),
        )),
        (404, _) => Answer::NotFound { credits: 0 },
        (other, _) => Answer::Failed(element_error(other, headers, enrichment.error.as_ref())),
    }
}

fn element_error(status: u16, headers: &HeaderMap, error: Option<&ApiError>) -> ProviderError {
    let Ok(code) = StatusCode::from_u16(status) else {
        return ProviderError::Malformed(format!("PDL bulk element has status {status}"));
    };
    status_error(code, headers, error)
        .unwrap_or_else(|| ProviderError::Malformed(format!("PDL bulk element has status {status}")))
}

fn confidence(likelihood: Option<f64>) -> f64 {
    likelihood.map_or(DEFAULT_CONFIDENCE, |l| (l / 10.0).clamp(0.0, 1.0))
}

/// A PDL person record; only the fields we map. Every field may be `null`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct PersonRecord {
    #[serde(deserialize_with = "text")]
    full_name: Option<String>,
    #[serde(deserialize_with = "text")]
    job_title: Option<String>,
    #[serde(deserialize_with = "texts")]
    job_title_levels: Vec<String>,
    #[serde(deserialize_with = "text")]
    job_title_role: Option<String>,
    #[serde(deserialize_with = "text")]
    linkedin_username: Option<String>,
    #[serde(deserialize_with = "text")]
    linkedin_url: Option<String>,
    #[serde(deserialize_with = "text")]
    twitter_username: Option<String>,
    #[serde(deserialize_with = "text")]
    location_name: Option<String>,
    #[serde(deserialize_with = "text")]
    mobile_phone: Option<String>,
    #[serde(deserialize_with = "texts")]
    phone_numbers: Vec<String>,
}

/// A matched person: a billed hit, except that a match without phone numbers answers nothing
/// for the Phone group and is treated as a free miss.
fn person_answer(group: Group, record: PersonRecord, likelihood: Option<f64>) -> Answer {
    let confidence = confidence(likelihood);
    let data = if group == Group::Phone {
        let phones = phone_data(&record);
        if phones.numbers.is_empty() {
            return Answer::NotFound { credits: 0 };
        }
        GroupData::Phone(phones)
    } else {
        GroupData::Person(person_data(record))
    };
    Answer::Found {
        data,
        confidence,
        credits: CREDITS_PER_MATCH,
    }
}

fn person_data(record: PersonRecord) -> PersonData {
    PersonData {
        full_name: record.full_name,
        title: record.job_title,
        seniority: record.job_title_levels.into_iter().find(|l| !l.trim().is_empty()),
        department: record.job_title_role,
        linkedin_handle: record
            .linkedin_username
            .or_else(|| record.linkedin_url.as_deref().and_then(profile_handle)),
        twitter_handle: record
            .twitter_username
            .map(|h| h.trim_start_matches('@').to_owned()),
        location: record.location_name,
    }
}

/// The mobile first, then the other numbers, in E.164, each number once.
fn phone_data(record: &PersonRecord) -> PhoneData {
    let mobile = record.mobile_phone.iter().map(|n| (n, PhoneKind::Mobile));
    let others = record.phone_numbers.iter().map(|n| (n, PhoneKind::Other));
    let mut numbers: Vec<PhoneNumber> = Vec::new();
    for (raw, kind) in mobile.chain(others) {
        let Some(number) = e164(raw) else { continue };
        if !numbers.iter().any(|known| known.number == number) {
            numbers.push(PhoneNumber { number, kind });
        }
    }
    PhoneData { numbers }
}

/// A PDL company record; only the fields we map.
#[derive(Deserialize, Default)]
#[serde(default)]
struct CompanyRecord {
    #[serde(deserialize_with = "text")]
    name: Option<String>,
    #[serde(deserialize_with = "text")]
    display_name: Option<String>,
    #[serde(deserialize_with = "text")]
    website: Option<String>,
    #[serde(deserialize_with = "text")]
    size: Option<String>,
    employee_count: Option<i64>,
    founded: Option<i32>,
    #[serde(deserialize_with = "text")]
    industry: Option<String>,
    #[serde(deserialize_with = "text")]
    inferred_revenue: Option<String>,
    #[serde(deserialize_with = "text")]
    linkedin_url: Option<String>,
    location: Option<CompanyLocation>,
    likelihood: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CompanyLocation {
    #[serde(deserialize_with = "text")]
    locality: Option<String>,
    #[serde(deserialize_with = "text")]
    country: Option<String>,
}

/// Fields one of which any real company record has; a 200 without them is not a record.
const COMPANY_MARKERS: [&str; 4] = ["id", "name", "display_name", "website"];

/// Company Enrich's 200: documented flat (record fields beside `status` and `likelihood`), but
/// the same record wrapped in `data` like the person API is accepted too.
fn company_answer(body: Value) -> Result<Answer, ProviderError> {
    let Value::Object(mut top) = body else {
        return Err(ProviderError::Malformed(
            "the PDL company response is not an object".into(),
        ));
    };
    if top.get("status").and_then(Value::as_u64) == Some(404) {
        return Ok(Answer::NotFound { credits: 0 });
    }
    let likelihood = top.get("likelihood").and_then(Value::as_f64);
    let record = match top.remove("data") {
        Some(Value::Object(wrapped)) => wrapped,
        _ => top,
    };
    if !COMPANY_MARKERS
        .iter()
        .any(|k| record.get(*k).is_some_and(|v| !v.is_null()))
    {
        return Err(ProviderError::Malformed(
            "the PDL company response has no company record".into(),
        ));
    }
    let record: CompanyRecord = serde_json::from_value(Value::Object(record))
        .map_err(|e| ProviderError::Malformed(format!("PDL company record: {e}")))?;
    let confidence = confidence(likelihood.or(record.likelihood));
    Ok(Answer::Found {
        data: GroupData::Company(company_data(record)),
        confidence,
        credits: CREDITS_PER_MATCH,
    })
}

fn company_data(record: CompanyRecord) -> CompanyData {
    let location = record.location.unwrap_or_default();
    CompanyData {
        name: record.display_name.or(record.name),
        domain: record.website.map(|w| bare_domain(&w)).filter(|d| !d.is_empty()),
        industry: record.industry,
        employee_count: record.employee_count,
        employee_range: record.size,
        annual_revenue: record.inferred_revenue.as_deref().and_then(revenue_lower_bound),
        founded_year: record.founded,
        country: location.country.as_deref().and_then(country_code),
        city: location.locality,
        linkedin_url: record.linkedin_url.map(|u| with_https(&u)),
        technologies: Vec::new(),
    }
}

/// The lower bound of a PDL revenue band (`$10M-$25M` → 10 000 000, `$10B+` → 10 000 000 000).
/// A zero bound (`$0-$1M`) says nothing and would shadow a real figure from a later provider,
/// so it is `None`.
fn revenue_lower_bound(raw: &str) -> Option<i64> {
    let lower = raw.split(['-', '–']).next()?.trim().trim_end_matches('+');
    let lower = lower.trim_start_matches('$').trim().replace(',', "");
    let (amount, multiplier) = match lower.chars().last()?.to_ascii_uppercase() {
        'K' => (&lower[..lower.len() - 1], 1e3),
        'M' => (&lower[..lower.len() - 1], 1e6),
        'B' => (&lower[..lower.len() - 1], 1e9),
        'T' => (&lower[..lower.len() - 1], 1e12),
        _ => (lower.as_str(), 1.0),
    };
    let dollars = (amount.trim().parse::<f64>().ok()? * multiplier).round();
    (dollars.is_finite() && dollars >= 1.0).then_some(dollars as i64)
}

/// PDL gives LinkedIn URLs without a scheme (`linkedin.com/company/…`).
fn with_https(url: &str) -> String {
    let url = url.trim();
    if url.starts_with("https://") || url.starts_with("http://") {
        url.to_owned()
    } else {
        format!("https://{url}")
    }
}

/// A string field; anything else (null, or a placeholder such as a boolean) is unknown rather
/// than a reason to throw the whole record away.
fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::String(s) if !s.trim().is_empty() => Some(s),
        _ => None,
    })
}

/// A list of strings; non-string items and non-list values are dropped, for the same reason.
fn texts<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| match item {
                Value::String(s) if !s.trim().is_empty() => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    })
}

// ---- the key stays out of errors ----

/// Error texts are built from the provider's bodies, which could echo anything back; the key is
/// scrubbed from every one before it leaves the adapter.
fn without_key(result: Result<Vec<Answer>, ProviderError>, key: &str) -> Result<Vec<Answer>, ProviderError> {
    let answers = result.map_err(|e| e.redacted(key))?;
    Ok(answers.into_iter().map(|answer| answer.redacted(key)).collect())
}
