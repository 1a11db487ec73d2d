//! The built-in `sandbox` provider: plausible, deterministic values derived from the lead
//! itself, with no key and no network. The demo workspace puts it first in every waterfall so
//! enrichment works out of the box, and tests and benchmarks use it to stand in for a
//! provider with a given latency, miss rate and price.
//!
//! Options (per workspace, see `SandboxOptions`): `latencyMs` per call, `missRate` 0–1 (the
//! same leads miss every time), `creditsPerHit`.

#[cfg(test)]
mod tests;

use crate::domain::{
    CompanyData, EmailStatus, EmailVerificationData, Group, GroupData, PersonData, PhoneData, PhoneKind,
    PhoneNumber, Subject,
};
use super::Adapter;
use crate::enrich::provider::{Answer, CallContext, Provider, ProviderError, ProviderKind};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// How many subjects one sandbox call takes.
pub const BATCH: usize = 100;

/// Per-workspace behaviour of the sandbox.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SandboxOptions {
    /// Milliseconds each call takes.
    pub latency_ms: u64,
    /// Share of subjects the sandbox knows nothing about, 0–1.
    pub miss_rate: f64,
    /// Credits billed per hit.
    pub credits_per_hit: u32,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            miss_rate: 0.0,
            credits_per_hit: 1,
        }
    }
}

impl SandboxOptions {
    /// Reads options from their stored JSON; an empty value means the defaults.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, String> {
        if value.is_null() {
            return Ok(Self::default());
        }
        let options: Self = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        if !(0.0..=1.0).contains(&options.miss_rate) {
            return Err("missRate must be between 0 and 1".into());
        }
        if options.latency_ms > 60_000 {
            return Err("latencyMs must be at most 60000".into());
        }
        Ok(options)
    }
}

#[derive(Default)]
pub struct Sandbox;

/// This adapter for the registry (`providers::ADAPTERS`): it calls nothing.
pub const ADAPTER: Adapter = Adapter::Local(|| Arc::new(Sandbox));

#[async_trait::async_trait]
impl Provider for Sandbox {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Sandbox
    }

    fn groups(&self) -> &'static [Group] {
        &Group::ALL
    }

    fn batch_size(&self, _group: Group) -> usize {
        BATCH
    }

    fn credits_per_hit(&self, _group: Group) -> u32 {
        1
    }

    fn can_look_up(&self, group: Group, s: &Subject) -> bool {
        match group {
            Group::Person | Group::Phone => s.email.is_some() || s.full_name.is_some(),
            Group::Company => s.domain.is_some() || s.company_name.is_some(),
            Group::EmailVerification => s.email.is_some(),
        }
    }

    async fn lookup(
        &self,
        ctx: &CallContext<'_>,
        group: Group,
        subjects: &[Subject],
    ) -> Result<Vec<Answer>, ProviderError> {
        let options = SandboxOptions::from_json(ctx.options).map_err(ProviderError::Rejected)?;
        if options.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(options.latency_ms)).await;
        }
        Ok(subjects.iter().map(|s| answer(&options, group, s)).collect())
    }
}

/// The sandbox's answer for one subject: a pure function of the subject and the options.
pub fn answer(options: &SandboxOptions, group: Group, s: &Subject) -> Answer {
    let seed = seed(group, s);
    if (seed % 10_000) as f64 / 10_000.0 < options.miss_rate {
        return Answer::NotFound { credits: 0 };
    }
    let data = match group {
        Group::Person => GroupData::Person(person(s, seed)),
        Group::Company => GroupData::Company(company(s, seed)),
        Group::EmailVerification => GroupData::EmailVerification(verification(s, seed)),
        Group::Phone => GroupData::Phone(phone(seed)),
    };
    Answer::Found {
        data,
        confidence: (50 + (seed >> 16) % 46) as f64 / 100.0,
        credits: options.credits_per_hit,
    }
}

fn seed(group: Group, s: &Subject) -> u64 {
    let key = format!(
        "{}|{}|{}|{}",
        group.as_str(),
        s.email.as_deref().unwrap_or(""),
        s.full_name.as_deref().unwrap_or(""),
        s.domain.as_deref().or(s.company_name.as_deref()).unwrap_or("")
    );
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn pick<'a>(items: &[&'a str], seed: u64, salt: u64) -> &'a str {
    items[((seed.rotate_left(salt as u32 * 7) ^ salt) % items.len() as u64) as usize]
}

fn title_case(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn name_of(s: &Subject) -> Option<String> {
    s.full_name.clone().or_else(|| {
        let local = s.email.as_deref()?.split('@').next()?;
        let parts: Vec<String> = local
            .split(['.', '_', '-'])
            .filter(|p| !p.is_empty() && p.chars().all(|c| c.is_alphabetic()))
            .map(title_case)
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    })
}

const TITLES: &[&str] = &[
    "Head of Sales",
    "Software Engineer",
    "Marketing Manager",
    "VP Engineering",
    "Account Executive",
    "Chief Executive Officer",
    "Product Manager",
    "Data Analyst",
];
const SENIORITIES: &[&str] = &["entry", "senior", "manager", "director", "vp", "c_suite"];
const DEPARTMENTS: &[&str] = &[
    "sales",
    "engineering",
    "marketing",
    "product",
    "finance",
    "operations",
];
const CITIES: &[(&str, &str)] = &[
    ("Berlin", "DE"),
    ("San Francisco", "US"),
    ("London", "GB"),
    ("Paris", "FR"),
    ("Toronto", "CA"),
    ("Amsterdam", "NL"),
    ("New York", "US"),
    ("Sydney", "AU"),
];
const INDUSTRIES: &[&str] = &[
    "Software",
    "Financial Services",
    "Healthcare",
    "Retail",
    "Manufacturing",
    "Education",
    "Logistics",
];
const TECHNOLOGIES: &[&str] = &[
    "Salesforce",
    "HubSpot",
    "Google Analytics",
    "AWS",
    "Stripe",
    "Segment",
    "Intercom",
    "Zendesk",
    "React",
    "PostgreSQL",
];
const WEBMAIL: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "proton.me",
];

fn person(s: &Subject, seed: u64) -> PersonData {
    let name = name_of(s);
    let handle = name.as_ref().map(|n| n.to_lowercase().replace(' ', "-"));
    let (city, _) = CITIES[(seed % CITIES.len() as u64) as usize];
    PersonData {
        full_name: name,
        title: Some(pick(TITLES, seed, 1).to_owned()),
        seniority: Some(pick(SENIORITIES, seed, 2).to_owned()),
        department: Some(pick(DEPARTMENTS, seed, 3).to_owned()),
        linkedin_handle: handle.clone(),
        twitter_handle: handle.map(|h| h.replace('-', "_")),
        location: Some(city.to_owned()),
    }
}

fn company(s: &Subject, seed: u64) -> CompanyData {
    let domain = s.domain.clone();
    let label = domain
        .as_deref()
        .and_then(|d| d.split('.').next())
        .map(title_case)
        .or_else(|| s.company_name.clone());
    let employees = [8, 35, 120, 450, 1_800, 12_000][(seed % 6) as usize] + (seed % 7) as i64;
    let range = match employees {
        0..=10 => "1-10",
        11..=50 => "11-50",
        51..=200 => "51-200",
        201..=1000 => "201-1000",
        1001..=5000 => "1001-5000",
        _ => "5001+",
    };
    let (city, country) = CITIES[((seed >> 8) % CITIES.len() as u64) as usize];
    let technologies = (0..3).map(|i| pick(TECHNOLOGIES, seed, 10 + i).to_owned()).fold(
        Vec::<String>::new(),
        |mut acc, t| {
            if !acc.contains(&t) {
                acc.push(t);
            }
            acc
        },
    );
    CompanyData {
        name: s.company_name.clone().or(label.clone()),
        linkedin_url: label.as_ref().map(|l| {
            format!(
                "https://www.linkedin.com/company/{}",
                l.to_lowercase().replace(' ', "-")
            )
        }),
        domain,
        industry: Some(pick(INDUSTRIES, seed, 4).to_owned()),
        employee_count: Some(employees),
        employee_range: Some(range.to_owned()),
        annual_revenue: Some(employees * 150_000),
        founded_year: Some(1950 + (seed % 74) as i32),
        country: Some(country.to_owned()),
        city: Some(city.to_owned()),
        technologies,
    }
}

fn verification(s: &Subject, seed: u64) -> EmailVerificationData {
    let domain = s.email.as_deref().and_then(|e| e.split('@').nth(1)).unwrap_or("");
    let status = if WEBMAIL.contains(&domain) {
        EmailStatus::Webmail
    } else {
        match seed % 20 {
            0 => EmailStatus::Invalid,
            1 | 2 => EmailStatus::AcceptAll,
            3 => EmailStatus::Unknown,
            _ => EmailStatus::Valid,
        }
    };
    let score = match status {
        EmailStatus::Valid => 85 + (seed % 15) as i32,
        EmailStatus::Webmail => 70 + (seed % 20) as i32,
        EmailStatus::AcceptAll => 50 + (seed % 20) as i32,
        EmailStatus::Unknown => 30 + (seed % 20) as i32,
        _ => (seed % 20) as i32,
    };
    EmailVerificationData {
        status: Some(status),
        score: Some(score),
    }
}

fn phone(seed: u64) -> PhoneData {
    let number = format!("+1415555{:04}", seed % 10_000);
    let kind = if seed.is_multiple_of(3) {
        PhoneKind::Work
    } else {
        PhoneKind::Mobile
    };
    PhoneData {
        numbers: vec![PhoneNumber { number, kind }],
    }
}
