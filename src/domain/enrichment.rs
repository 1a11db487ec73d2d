//! Enrichment's canonical model: the groups a lead can be enriched with, the record each
//! provider's answer is mapped into, the merged record with per-field provenance, and the
//! policies a query may ask for.
//!
//! Field names here are the GraphQL names (camelCase), so provenance lists `company.industry`
//! exactly as a client selects it. Provider-specific shapes never reach this module.

use super::ids::LeadId;
use super::lead::{Lead, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// What a lead can be enriched with; each group is resolved, cached and billed on its own.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Group {
    Person,
    Company,
    EmailVerification,
    Phone,
}

impl Group {
    pub const ALL: [Group; 4] = [
        Group::Person,
        Group::Company,
        Group::EmailVerification,
        Group::Phone,
    ];

    /// The stored and GraphQL field spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Person => "person",
            Group::Company => "company",
            Group::EmailVerification => "emailVerification",
            Group::Phone => "phone",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == raw)
    }

    /// Every field of the group, by its canonical name.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Group::Person => &[
                "fullName",
                "title",
                "seniority",
                "department",
                "linkedinHandle",
                "twitterHandle",
                "location",
            ],
            Group::Company => &[
                "name",
                "domain",
                "industry",
                "employeeCount",
                "employeeRange",
                "annualRevenue",
                "foundedYear",
                "country",
                "city",
                "linkedinUrl",
                "technologies",
            ],
            Group::EmailVerification => &["status", "score"],
            Group::Phone => &["numbers"],
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far a query may go to fill a group.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Policy {
    /// Answer from the cache and stored records only; never call a provider.
    CacheOnly,
    /// Use fresh cached values; call providers for what is missing or expired.
    #[default]
    FetchIfMissing,
    /// Ignore cached values and ask the providers again.
    Refresh,
}

impl Policy {
    pub const ALL: [Policy; 3] = [Policy::CacheOnly, Policy::FetchIfMissing, Policy::Refresh];

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::CacheOnly => "CACHE_ONLY",
            Policy::FetchIfMissing => "FETCH_IF_MISSING",
            Policy::Refresh => "REFRESH",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == raw)
    }
}

/// Who someone is at work.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PersonData {
    pub full_name: Option<String>,
    pub title: Option<String>,
    /// e.g. `senior`, `manager`, `director`, `vp`, `c_suite`.
    pub seniority: Option<String>,
    /// e.g. `engineering`, `sales`.
    pub department: Option<String>,
    /// The LinkedIn profile handle, e.g. `jane-doe` (from `linkedin.com/in/jane-doe`).
    pub linkedin_handle: Option<String>,
    /// The Twitter/X handle without `@`.
    pub twitter_handle: Option<String>,
    /// Free text, e.g. `Berlin, Germany`.
    pub location: Option<String>,
}

/// Firmographics and technographics of the lead's company.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CompanyData {
    pub name: Option<String>,
    pub domain: Option<String>,
    pub industry: Option<String>,
    pub employee_count: Option<i64>,
    /// e.g. `51-200`.
    pub employee_range: Option<String>,
    /// Annual revenue in US dollars.
    pub annual_revenue: Option<i64>,
    pub founded_year: Option<i32>,
    /// ISO 3166-1 alpha-2 when the provider gives a recognisable country.
    pub country: Option<String>,
    pub city: Option<String>,
    pub linkedin_url: Option<String>,
    pub technologies: Vec<String>,
}

/// Deliverability of an email address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EmailStatus {
    Valid,
    Invalid,
    AcceptAll,
    Disposable,
    Webmail,
    Unknown,
}

impl EmailStatus {
    /// Reads the usual provider spellings (`valid`, `accept_all`, `catch_all`, `risky`, …).
    pub fn from_provider(raw: &str) -> Self {
        match raw.trim().to_ascii_lowercase().replace(['-', ' '], "_").as_str() {
            "valid" | "deliverable" | "verified" => EmailStatus::Valid,
            "invalid" | "undeliverable" | "bounced" => EmailStatus::Invalid,
            "accept_all" | "catch_all" | "acceptall" | "catchall" => EmailStatus::AcceptAll,
            "disposable" => EmailStatus::Disposable,
            "webmail" => EmailStatus::Webmail,
            _ => EmailStatus::Unknown,
        }
    }
}

#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EmailVerificationData {
    pub status: Option<EmailStatus>,
    /// 0–100, the provider's deliverability score.
    pub score: Option<i32>,
}

/// The kind of a phone line.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PhoneKind {
    Mobile,
    Work,
    Home,
    Other,
}

impl PhoneKind {
    pub fn from_provider(raw: &str) -> Self {
        let raw = raw.to_ascii_lowercase();
        if raw.contains("mobile") || raw.contains("cell") {
            PhoneKind::Mobile
        } else if raw.contains("work")
            || raw.contains("office")
            || raw.contains("direct")
            || raw.contains("hq")
        {
            PhoneKind::Work
        } else if raw.contains("home") {
            PhoneKind::Home
        } else {
            PhoneKind::Other
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PhoneNumber {
    /// E.164, e.g. `+14155550100`.
    pub number: String,
    pub kind: PhoneKind,
}

#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PhoneData {
    pub numbers: Vec<PhoneNumber>,
}

/// One group's values as a provider answered them, already in canonical form.
#[derive(Clone, PartialEq, Debug)]
pub enum GroupData {
    Person(PersonData),
    Company(CompanyData),
    EmailVerification(EmailVerificationData),
    Phone(PhoneData),
}

impl GroupData {
    pub fn group(&self) -> Group {
        match self {
            GroupData::Person(_) => Group::Person,
            GroupData::Company(_) => Group::Company,
            GroupData::EmailVerification(_) => Group::EmailVerification,
            GroupData::Phone(_) => Group::Phone,
        }
    }

    /// The filled fields only: nulls, blank strings and empty lists are dropped.
    pub fn into_fields(self) -> Fields {
        let value = match self {
            GroupData::Person(d) => serde_json::to_value(d),
            GroupData::Company(d) => serde_json::to_value(d),
            GroupData::EmailVerification(d) => serde_json::to_value(d),
            GroupData::Phone(d) => serde_json::to_value(d),
        };
        let Ok(Value::Object(map)) = value else {
            return Fields::default();
        };
        Fields(map.into_iter().filter(|(_, v)| is_filled(v)).collect())
    }
}

fn is_filled(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

/// Filled canonical fields of one group, by name.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fields(pub Map<String, Value>);

impl Fields {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }

    /// Reads the fields back as one group's typed data.
    pub fn to_data<T: serde::de::DeserializeOwned + Default>(&self) -> T {
        serde_json::from_value(Value::Object(self.0.clone())).unwrap_or_default()
    }
}

/// Where a set of values came from.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// The provider's id, e.g. `pdl`.
    pub provider: String,
    pub fetched_at: Timestamp,
    pub expires_at: Timestamp,
    /// 0–1, normalised from the provider's own scale.
    pub confidence: f64,
    /// Credits the answer cost; shared by every field it supplied.
    pub credits: u32,
    /// The canonical fields this answer supplied.
    pub fields: Vec<String>,
}

/// One (lead, group) as resolved so far: merged values, where each came from, and which
/// providers were asked, so a later query that wants more fields continues the waterfall after
/// them instead of paying for the same answers again.
#[derive(Clone, PartialEq, Debug)]
pub struct EnrichmentRecord {
    pub lead_id: LeadId,
    pub group: Group,
    pub fields: Fields,
    pub sources: Vec<Source>,
    /// Providers asked, hits and misses alike, in waterfall order.
    pub tried: Vec<String>,
    /// Fingerprint of the lead inputs the answers were for; a changed email or domain makes
    /// the record stale.
    pub subject_hash: String,
    pub fetched_at: Timestamp,
    pub expires_at: Timestamp,
}

impl EnrichmentRecord {
    pub fn empty(lead_id: LeadId, group: Group, subject_hash: String, at: Timestamp) -> Self {
        Self {
            lead_id,
            group,
            fields: Fields::default(),
            sources: Vec::new(),
            tried: Vec::new(),
            subject_hash,
            fetched_at: at,
            expires_at: at,
        }
    }

    /// Whether no provider knew anything (a miss, cached like a hit).
    pub fn is_miss(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn is_fresh(&self, at: Timestamp) -> bool {
        self.expires_at > at
    }

    /// Whether every one of `wanted` is filled.
    pub fn covers(&self, wanted: &[&str]) -> bool {
        wanted.iter().all(|f| self.fields.contains(f))
    }

    /// Merges a provider's answer field by field: a field keeps the first value it got.
    /// Returns the fields this answer contributed.
    pub fn merge(&mut self, provider: &str, answer: Fields, mut source: Source) -> Vec<String> {
        let mut taken = Vec::new();
        for (name, value) in answer.0 {
            if !self.fields.0.contains_key(&name) {
                self.fields.0.insert(name.clone(), value);
                taken.push(name);
            }
        }
        if !self.tried.iter().any(|p| p == provider) {
            self.tried.push(provider.to_owned());
        }
        if !taken.is_empty() || source.credits > 0 {
            source.fields = taken.clone();
            self.sources.push(source);
        }
        taken
    }

    /// Records that `provider` was asked and knew nothing.
    pub fn note_miss(&mut self, provider: &str) {
        if !self.tried.iter().any(|p| p == provider) {
            self.tried.push(provider.to_owned());
        }
    }

    /// The source that supplied `field`.
    pub fn source_of(&self, field: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.fields.iter().any(|f| f == field))
    }

    pub fn credits(&self) -> u32 {
        self.sources.iter().map(|s| s.credits).sum()
    }
}

/// What providers get to look a lead up by: the lead's own identifying values.
#[derive(Clone, PartialEq, Debug)]
pub struct Subject {
    pub lead_id: LeadId,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub full_name: Option<String>,
    pub company_name: Option<String>,
    /// The company's domain, without scheme or `www.`.
    pub domain: Option<String>,
    pub linkedin_url: Option<String>,
    /// E.164.
    pub phone: Option<String>,
}

impl Subject {
    pub fn of(lead: &Lead) -> Self {
        Self {
            lead_id: lead.id,
            email: lead.email.as_ref().map(|e| e.as_str().to_owned()),
            first_name: lead.first_name.clone(),
            last_name: lead.last_name.clone(),
            full_name: lead.full_name(),
            company_name: lead.company_name.clone(),
            domain: lead
                .company_domain
                .as_ref()
                .map(|d| d.as_str().to_owned())
                .or_else(|| lead.email.as_ref().map(|e| e.domain().to_owned())),
            linkedin_url: lead.linkedin_url.as_ref().map(|u| u.as_str().to_owned()),
            phone: lead.phone.as_ref().map(|p| p.as_str().to_owned()),
        }
    }

    /// A stable fingerprint of the identifying values (FNV-1a, hex), stored with records.
    pub fn fingerprint(&self) -> String {
        fingerprint([
            self.email.as_deref(),
            self.first_name.as_deref(),
            self.last_name.as_deref(),
            self.company_name.as_deref(),
            self.domain.as_deref(),
            self.linkedin_url.as_deref(),
            self.phone.as_deref(),
        ])
    }

    /// Whether `hash` (a stored `subject_hash`) is this lead's fingerprint; the same as
    /// comparing with `Subject::of(lead).fingerprint()`, without building the subject or a
    /// string (the warm path checks every cached record against its lead).
    pub fn matches(lead: &Lead, hash: &str) -> bool {
        let domain = match (&lead.company_domain, &lead.email) {
            (Some(d), _) => Some(d.as_str()),
            (None, Some(e)) => Some(e.domain()),
            (None, None) => None,
        };
        let fp = fnv([
            lead.email.as_ref().map(|e| e.as_str()),
            lead.first_name.as_deref(),
            lead.last_name.as_deref(),
            lead.company_name.as_deref(),
            domain,
            lead.linkedin_url.as_ref().map(|u| u.as_str()),
            lead.phone.as_ref().map(|p| p.as_str()),
        ]);
        u64::from_str_radix(hash, 16) == Ok(fp)
    }
}

fn fingerprint(parts: [Option<&str>; 7]) -> String {
    format!("{:016x}", fnv(parts))
}

fn fnv(parts: [Option<&str>; 7]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.unwrap_or("").bytes().chain([0x1f]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn source(provider: &str) -> Source {
        let at = crate::domain::now();
        Source {
            provider: provider.into(),
            fetched_at: at,
            expires_at: at + Duration::days(1),
            confidence: 0.9,
            credits: 1,
            fields: vec![],
        }
    }

    fn company(name: Option<&str>, industry: Option<&str>) -> Fields {
        GroupData::Company(CompanyData {
            name: name.map(Into::into),
            industry: industry.map(Into::into),
            ..Default::default()
        })
        .into_fields()
    }

    #[test]
    fn into_fields_drops_empty_values() {
        let fields = company(Some("Acme"), Some("  "));
        assert_eq!(fields.0.keys().collect::<Vec<_>>(), vec!["name"]);
    }

    #[test]
    fn merge_keeps_the_first_value_of_each_field() {
        let mut record =
            EnrichmentRecord::empty(LeadId::new(), Group::Company, "h".into(), crate::domain::now());
        let taken = record.merge("a", company(Some("Acme"), None), source("a"));
        assert_eq!(taken, vec!["name"]);
        let taken = record.merge("b", company(Some("Other"), Some("Software")), source("b"));
        assert_eq!(taken, vec!["industry"]);
        assert_eq!(record.fields.0["name"], "Acme");
        assert_eq!(record.source_of("industry").unwrap().provider, "b");
        assert_eq!(record.tried, vec!["a", "b"]);
        assert!(record.covers(&["name", "industry"]));
        assert!(!record.covers(&["city"]));
    }

    #[test]
    fn a_miss_is_remembered_without_a_source() {
        let mut record =
            EnrichmentRecord::empty(LeadId::new(), Group::Person, "h".into(), crate::domain::now());
        record.note_miss("pdl");
        assert!(record.is_miss());
        assert!(record.sources.is_empty());
        assert_eq!(record.tried, vec!["pdl"]);
    }

    #[test]
    fn fields_read_back_as_typed_data() {
        let data: CompanyData = company(Some("Acme"), Some("Software")).to_data();
        assert_eq!(data.name.as_deref(), Some("Acme"));
        assert!(data.technologies.is_empty());
    }

    #[test]
    fn email_status_reads_provider_spellings() {
        assert_eq!(EmailStatus::from_provider("accept_all"), EmailStatus::AcceptAll);
        assert_eq!(EmailStatus::from_provider("catch-all"), EmailStatus::AcceptAll);
        assert_eq!(EmailStatus::from_provider("deliverable"), EmailStatus::Valid);
        assert_eq!(EmailStatus::from_provider("whatever"), EmailStatus::Unknown);
    }

    #[test]
    fn fingerprint_of_a_lead_matches_its_subjects() {
        let mut lead = Lead::new(crate::domain::WorkspaceId::new(), crate::domain::now());
        lead.email = Some(crate::domain::EmailAddress::parse("email", "Jane@Acme.com").unwrap());
        lead.first_name = Some("Jane".into());
        assert!(Subject::matches(&lead, &Subject::of(&lead).fingerprint()));
        let before = Subject::of(&lead).fingerprint();
        lead.company_domain = Some(crate::domain::Domain::parse("d", "acme.io").unwrap());
        assert!(Subject::matches(&lead, &Subject::of(&lead).fingerprint()));
        assert!(!Subject::matches(&lead, &before));
        assert!(!Subject::matches(&lead, "not hex"));
    }

    #[test]
    fn fingerprint_changes_with_the_email() {
        let mut s = Subject {
            lead_id: LeadId::new(),
            email: Some("a@x.com".into()),
            first_name: None,
            last_name: None,
            full_name: None,
            company_name: None,
            domain: Some("x.com".into()),
            linkedin_url: None,
            phone: None,
        };
        let before = s.fingerprint();
        s.email = Some("b@x.com".into());
        assert_ne!(before, s.fingerprint());
    }

    #[test]
    fn group_and_policy_spellings_round_trip() {
        for g in Group::ALL {
            assert_eq!(Group::parse(g.as_str()), Some(g));
        }
        for p in Policy::ALL {
            assert_eq!(Policy::parse(p.as_str()), Some(p));
        }
    }
}
