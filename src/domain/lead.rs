//! The lead entity, its status, and validated partial changes (`LeadPatch`).
//!
//! **Timestamps** are microsecond-precise everywhere (`domain::now` truncates), stored as INTEGER
//! microseconds on SQLite and `timestamptz` on PostgreSQL.

use super::error::{FieldError, FieldErrorCode, ValidationErrors};
use super::ids::{LeadId, WorkspaceId};
use super::values::{
    CountryCode, CustomFields, Domain, EmailAddress, LinkedInUrl, Phone, Score, Tags, TimeZone, text,
};
use chrono::{DateTime, SubsecRound, Utc};

/// Instants are UTC with microsecond precision, the precision both databases store.
pub type Timestamp = DateTime<Utc>;

/// The current instant, truncated to microseconds so a value survives a database round trip.
pub fn now() -> Timestamp {
    Utc::now().trunc_subsecs(6)
}

/// Where a lead stands in the sales funnel.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum LeadStatus {
    #[default]
    New,
    Contacted,
    Qualified,
    Unqualified,
    Customer,
}

impl LeadStatus {
    pub const ALL: [LeadStatus; 5] = [
        LeadStatus::New,
        LeadStatus::Contacted,
        LeadStatus::Qualified,
        LeadStatus::Unqualified,
        LeadStatus::Customer,
    ];

    /// The stored spelling, also used in cursors and exports.
    pub fn as_str(self) -> &'static str {
        match self {
            LeadStatus::New => "NEW",
            LeadStatus::Contacted => "CONTACTED",
            LeadStatus::Qualified => "QUALIFIED",
            LeadStatus::Unqualified => "UNQUALIFIED",
            LeadStatus::Customer => "CUSTOMER",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(raw.trim()))
    }
}

/// A sales lead in one workspace. Optional text is `None` when absent, never an empty string.
#[derive(Clone, PartialEq, Debug)]
pub struct Lead {
    pub id: LeadId,
    pub workspace_id: WorkspaceId,
    /// Unique within the workspace when present.
    pub email: Option<EmailAddress>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub title: Option<String>,
    pub company_name: Option<String>,
    pub company_domain: Option<Domain>,
    pub phone: Option<Phone>,
    pub linkedin_url: Option<LinkedInUrl>,
    pub country: Option<CountryCode>,
    /// The lead's IANA time zone (`Europe/Berlin`), when known: campaign send windows use it.
    pub time_zone: Option<TimeZone>,
    /// Where the lead came from (`webinar`, `import`, …), free text.
    pub source: Option<String>,
    pub status: LeadStatus,
    /// Who works the lead: a user id or email, free text.
    pub owner: Option<String>,
    pub score: Score,
    pub tags: Tags,
    pub custom_fields: CustomFields,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub archived_at: Option<Timestamp>,
    /// Incremented on every change, for optimistic concurrency.
    pub version: i64,
}

impl Lead {
    /// A fresh lead with every optional field absent.
    pub fn new(workspace_id: WorkspaceId, at: Timestamp) -> Self {
        Self::with_id(LeadId::new(), workspace_id, at)
    }

    /// `new` with the id given: decoders fill in a stored lead without drawing a fresh id
    /// (a random draw per row is a measurable share of reading a page).
    pub fn with_id(id: LeadId, workspace_id: WorkspaceId, at: Timestamp) -> Self {
        Self {
            id,
            workspace_id,
            email: None,
            first_name: None,
            last_name: None,
            title: None,
            company_name: None,
            company_domain: None,
            phone: None,
            linkedin_url: None,
            country: None,
            time_zone: None,
            source: None,
            status: LeadStatus::New,
            owner: None,
            score: Score::default(),
            tags: Tags::default(),
            custom_fields: CustomFields::default(),
            created_at: at,
            updated_at: at,
            archived_at: None,
            version: 1,
        }
    }

    /// Applies a validated patch; returns whether anything changed. Does not touch timestamps
    /// or the version: the store does that when it writes.
    pub fn apply(&mut self, patch: &LeadPatch) -> bool {
        let before = self.clone();
        patch.email.apply_to(&mut self.email);
        patch.first_name.apply_to(&mut self.first_name);
        patch.last_name.apply_to(&mut self.last_name);
        patch.title.apply_to(&mut self.title);
        patch.company_name.apply_to(&mut self.company_name);
        patch.company_domain.apply_to(&mut self.company_domain);
        patch.phone.apply_to(&mut self.phone);
        patch.linkedin_url.apply_to(&mut self.linkedin_url);
        patch.country.apply_to(&mut self.country);
        patch.time_zone.apply_to(&mut self.time_zone);
        patch.source.apply_to(&mut self.source);
        patch.owner.apply_to(&mut self.owner);
        if let Some(status) = patch.status {
            self.status = status;
        }
        if let Some(score) = patch.score {
            self.score = score;
        }
        if let Some(tags) = &patch.tags {
            self.tags = tags.clone();
        }
        if let Some(fields) = &patch.custom_fields {
            self.custom_fields = fields.clone();
        }
        if let (None, Some(email)) = (&self.company_domain, &self.email)
            && patch.email.is_set()
            && !is_webmail(email.domain())
        {
            self.company_domain = Some(Domain::from_trusted(email.domain().to_owned()));
        }
        *self != before
    }

    /// What `search` matches: names, email and company, joined by spaces and lower-cased, so
    /// a full name such as "ann lee" matches too.
    pub fn search_text(&self) -> String {
        let email = self.email.as_ref().map(|e| e.as_str());
        [
            self.first_name.as_deref(),
            self.last_name.as_deref(),
            email,
            self.company_name.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
    }

    /// First and last name joined, when either is present.
    pub fn full_name(&self) -> Option<String> {
        match (&self.first_name, &self.last_name) {
            (Some(f), Some(l)) => Some(format!("{f} {l}")),
            (Some(n), None) | (None, Some(n)) => Some(n.clone()),
            (None, None) => None,
        }
    }
}

/// Free-mail domains whose email does not reveal a company.
fn is_webmail(domain: &str) -> bool {
    matches!(
        domain,
        "gmail.com"
            | "googlemail.com"
            | "yahoo.com"
            | "hotmail.com"
            | "outlook.com"
            | "live.com"
            | "icloud.com"
            | "me.com"
            | "aol.com"
            | "proton.me"
            | "protonmail.com"
            | "gmx.de"
            | "gmx.net"
            | "web.de"
            | "mail.ru"
            | "yandex.ru"
            | "qq.com"
            | "163.com"
    )
}

/// The outcome of one row of an upsert by email.
#[derive(Clone, PartialEq, Debug)]
pub enum UpsertOutcome {
    Created(Lead),
    Updated(Lead),
    Unchanged(Lead),
}

/// One field of a partial update: leave it, clear it, or set it.
#[derive(Clone, PartialEq, Debug, Default)]
pub enum Patch<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T: Clone> Patch<T> {
    fn apply_to(&self, slot: &mut Option<T>) {
        match self {
            Patch::Keep => {}
            Patch::Clear => *slot = None,
            Patch::Set(v) => *slot = Some(v.clone()),
        }
    }

    pub fn is_set(&self) -> bool {
        matches!(self, Patch::Set(_))
    }

    /// Validates a raw value with `parse`, keeping `Keep` and `Clear` as they are.
    fn parse_with<R>(
        raw: Patch<R>,
        errors: &mut ValidationErrors,
        parse: impl FnOnce(R) -> Result<Option<T>, FieldError>,
    ) -> Patch<T> {
        match raw {
            Patch::Keep => Patch::Keep,
            Patch::Clear => Patch::Clear,
            Patch::Set(r) => match errors.check(parse(r)) {
                Some(Some(v)) => Patch::Set(v),
                Some(None) => Patch::Clear,
                None => Patch::Keep,
            },
        }
    }
}

/// Unvalidated field values as a client sent them, for create, update and upsert alike.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct LeadDraft {
    pub email: Patch<String>,
    pub first_name: Patch<String>,
    pub last_name: Patch<String>,
    pub title: Patch<String>,
    pub company_name: Patch<String>,
    pub company_domain: Patch<String>,
    pub phone: Patch<String>,
    pub linkedin_url: Patch<String>,
    pub country: Patch<String>,
    pub time_zone: Patch<String>,
    pub source: Patch<String>,
    pub status: Patch<LeadStatus>,
    pub owner: Patch<String>,
    pub score: Patch<i64>,
    pub tags: Patch<Vec<String>>,
    pub custom_fields: Patch<serde_json::Value>,
}

/// A validated partial change to a lead.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct LeadPatch {
    pub email: Patch<EmailAddress>,
    pub first_name: Patch<String>,
    pub last_name: Patch<String>,
    pub title: Patch<String>,
    pub company_name: Patch<String>,
    pub company_domain: Patch<Domain>,
    pub phone: Patch<Phone>,
    pub linkedin_url: Patch<LinkedInUrl>,
    pub country: Patch<CountryCode>,
    pub time_zone: Patch<TimeZone>,
    pub source: Patch<String>,
    pub owner: Patch<String>,
    pub status: Option<LeadStatus>,
    pub score: Option<Score>,
    pub tags: Option<Tags>,
    pub custom_fields: Option<CustomFields>,
}

impl LeadPatch {
    /// Validates every field of a draft, collecting all errors. Field names in errors are the
    /// API's camelCase names.
    pub fn parse(draft: LeadDraft) -> Result<Self, ValidationErrors> {
        let mut e = ValidationErrors::default();
        let email = Patch::parse_with(draft.email, &mut e, |r| some(EmailAddress::parse("email", &r)));
        let first_name = Patch::parse_with(draft.first_name, &mut e, |r| text("firstName", &r, 100));
        let last_name = Patch::parse_with(draft.last_name, &mut e, |r| text("lastName", &r, 100));
        let title = Patch::parse_with(draft.title, &mut e, |r| text("title", &r, 200));
        let company_name = Patch::parse_with(draft.company_name, &mut e, |r| text("companyName", &r, 200));
        let company_domain = Patch::parse_with(draft.company_domain, &mut e, |r| {
            some(Domain::parse("companyDomain", &r))
        });
        let phone = Patch::parse_with(draft.phone, &mut e, |r| some(Phone::parse("phone", &r)));
        let linkedin_url = Patch::parse_with(draft.linkedin_url, &mut e, |r| {
            some(LinkedInUrl::parse("linkedinUrl", &r))
        });
        let country = Patch::parse_with(draft.country, &mut e, |r| some(CountryCode::parse("country", &r)));
        let time_zone = Patch::parse_with(draft.time_zone, &mut e, |r| some(TimeZone::parse("timeZone", &r)));
        let source = Patch::parse_with(draft.source, &mut e, |r| text("source", &r, 64));
        let owner = Patch::parse_with(draft.owner, &mut e, |r| text("owner", &r, 128));
        let status = match draft.status {
            Patch::Keep => None,
            Patch::Set(s) => Some(s),
            Patch::Clear => {
                e.push(FieldError::new(
                    "status",
                    FieldErrorCode::Required,
                    "status cannot be cleared",
                ));
                None
            }
        };
        let score = match draft.score {
            Patch::Keep => None,
            Patch::Clear => Some(Score::default()),
            Patch::Set(v) => e.check(Score::parse("score", v)),
        };
        let tags = match draft.tags {
            Patch::Keep => None,
            Patch::Clear => Some(Tags::default()),
            Patch::Set(v) => e.check(Tags::parse("tags", &v)),
        };
        let custom_fields = match draft.custom_fields {
            Patch::Keep => None,
            Patch::Clear => Some(CustomFields::default()),
            Patch::Set(v) => e.check(CustomFields::parse("customFields", v)),
        };
        e.into_result(|| Self {
            email,
            first_name,
            last_name,
            title,
            company_name,
            company_domain,
            phone,
            linkedin_url,
            country,
            time_zone,
            source,
            owner,
            status,
            score,
            tags,
            custom_fields,
        })
    }
}

impl LeadPatch {
    /// The part of this patch that fills fields `lead` lacks (an import's
    /// `UPDATE_EMPTY_FIELDS`): a lead always has a status and a score, so those are never
    /// "empty"; tags fill an empty list; custom fields add only the keys the lead lacks.
    pub fn filling(&self, lead: &Lead) -> LeadPatch {
        fn fill<T: Clone>(slot: &Option<T>, value: &Patch<T>) -> Patch<T> {
            match (slot, value) {
                (None, Patch::Set(v)) => Patch::Set(v.clone()),
                _ => Patch::Keep,
            }
        }
        LeadPatch {
            email: Patch::Keep,
            first_name: fill(&lead.first_name, &self.first_name),
            last_name: fill(&lead.last_name, &self.last_name),
            title: fill(&lead.title, &self.title),
            company_name: fill(&lead.company_name, &self.company_name),
            company_domain: fill(&lead.company_domain, &self.company_domain),
            phone: fill(&lead.phone, &self.phone),
            linkedin_url: fill(&lead.linkedin_url, &self.linkedin_url),
            country: fill(&lead.country, &self.country),
            time_zone: fill(&lead.time_zone, &self.time_zone),
            source: fill(&lead.source, &self.source),
            owner: fill(&lead.owner, &self.owner),
            status: None,
            score: None,
            tags: self.tags.clone().filter(|_| lead.tags.is_empty()),
            custom_fields: self.custom_fields.as_ref().and_then(|fields| {
                let have = lead.custom_fields.as_map();
                let mut merged = have.clone();
                for (key, value) in fields.as_map() {
                    merged.entry(key.clone()).or_insert_with(|| value.clone());
                }
                (merged.len() > have.len()).then(|| CustomFields::from_trusted(merged))
            }),
        }
    }
}

/// Lifts a required parse into the optional shape `parse_with` takes.
fn some<T>(r: Result<T, FieldError>) -> Result<Option<T>, FieldError> {
    r.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft_with_email(email: &str) -> LeadDraft {
        LeadDraft {
            email: Patch::Set(email.into()),
            ..Default::default()
        }
    }

    #[test]
    fn patch_collects_every_error() {
        let draft = LeadDraft {
            email: Patch::Set("nope".into()),
            phone: Patch::Set("12".into()),
            score: Patch::Set(300),
            ..Default::default()
        };
        let errors = LeadPatch::parse(draft).unwrap_err();
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field[0].as_str()).collect();
        assert_eq!(fields, vec!["email", "phone", "score"]);
    }

    #[test]
    fn blank_text_clears_the_field() {
        let mut lead = Lead::new(WorkspaceId::new(), now());
        lead.title = Some("CTO".into());
        let patch = LeadPatch::parse(LeadDraft {
            title: Patch::Set("   ".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(lead.apply(&patch));
        assert_eq!(lead.title, None);
    }

    #[test]
    fn company_domain_is_derived_from_a_business_email() {
        let mut lead = Lead::new(WorkspaceId::new(), now());
        lead.apply(&LeadPatch::parse(draft_with_email("ann@acme.io")).unwrap());
        assert_eq!(lead.company_domain.unwrap().as_str(), "acme.io");
    }

    #[test]
    fn company_domain_is_not_derived_from_webmail() {
        let mut lead = Lead::new(WorkspaceId::new(), now());
        lead.apply(&LeadPatch::parse(draft_with_email("ann@gmail.com")).unwrap());
        assert_eq!(lead.company_domain, None);
    }

    #[test]
    fn status_cannot_be_cleared() {
        let draft = LeadDraft {
            status: Patch::Clear,
            ..Default::default()
        };
        assert!(LeadPatch::parse(draft).is_err());
    }

    #[test]
    fn applying_identical_values_reports_no_change() {
        let mut lead = Lead::new(WorkspaceId::new(), now());
        let patch = LeadPatch::parse(draft_with_email("ann@acme.io")).unwrap();
        assert!(lead.apply(&patch));
        assert!(!lead.apply(&patch));
    }

    #[test]
    fn status_parses_case_insensitively() {
        assert_eq!(LeadStatus::parse("qualified"), Some(LeadStatus::Qualified));
        assert_eq!(LeadStatus::parse("WON"), None);
    }
}
