//! CRM connections: which CRM a workspace syncs with, its credentials (sealed), the field
//! mapping between a lead and the CRM's record, the link of each lead to its record, and the
//! record of each sync run.
//!
//! The mapping is data, checked here once: each rule ties one lead field to one CRM property,
//! with a direction, a transform, a default and who wins a conflict. `outgoing` turns a lead
//! into the property values a push sends; `incoming` turns the properties a CRM reported into
//! a `LeadDraft` (validated by `LeadPatch::parse` like any other input). `values_digest` is the
//! digest a link keeps of the values both sides last agreed on: a change that would send the
//! same values again is not sent, which is also what keeps a pulled change from coming back as
//! a push (loop prevention by content, not by guessing who made a change).

use super::error::{FieldError, FieldErrorCode};
use super::ids::{CrmConnectionId, CrmRunId, LeadId, WorkspaceId};
use super::lead::{Lead, LeadDraft, LeadStatus, Patch, Timestamp};
use super::providers::SealedKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// Rules one connection's mapping may hold.
pub const MAX_MAPPING_RULES: usize = 64;
/// Longest CRM property name accepted.
const MAX_PROPERTY: usize = 100;
/// Longest connection name.
pub const MAX_CONNECTION_NAME: usize = 100;

/// The CRMs leadgate speaks.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrmKind {
    HubSpot,
    Salesforce,
    Pipedrive,
}

impl CrmKind {
    pub const ALL: [CrmKind; 3] = [CrmKind::HubSpot, CrmKind::Salesforce, CrmKind::Pipedrive];

    pub fn as_str(self) -> &'static str {
        match self {
            CrmKind::HubSpot => "hubspot",
            CrmKind::Salesforce => "salesforce",
            CrmKind::Pipedrive => "pipedrive",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }

    /// How the CRM calls itself.
    pub fn label(self) -> &'static str {
        match self {
            CrmKind::HubSpot => "HubSpot",
            CrmKind::Salesforce => "Salesforce",
            CrmKind::Pipedrive => "Pipedrive",
        }
    }

    /// The public API root a connection uses unless it names another.
    pub fn default_api_base_url(self) -> &'static str {
        match self {
            CrmKind::HubSpot => "https://api.hubapi.com",
            // the org's instance URL is per customer; this is the login host
            CrmKind::Salesforce => "https://login.salesforce.com",
            CrmKind::Pipedrive => "https://api.pipedrive.com",
        }
    }

    /// Where an OAuth refresh token is exchanged, for the CRMs that use one.
    pub fn default_token_url(self) -> Option<&'static str> {
        match self {
            CrmKind::Salesforce => Some("https://login.salesforce.com/services/oauth2/token"),
            CrmKind::HubSpot | CrmKind::Pipedrive => None,
        }
    }

    /// Records per write request: HubSpot's batch upsert takes 100, Salesforce's sObject
    /// Collections 200; Pipedrive writes one person per request.
    pub fn batch_size(self) -> usize {
        match self {
            CrmKind::HubSpot => 100,
            CrmKind::Salesforce => 200,
            CrmKind::Pipedrive => 1,
        }
    }

    /// Requests per second the client keeps under: HubSpot's private apps 100 per 10 s (10/s),
    /// Pipedrive's lowest burst tier 20 per 2 s (10/s); Salesforce limits per day, not per
    /// second, so the pace is one that a shared org tolerates.
    pub fn requests_per_second(self) -> f64 {
        match self {
            CrmKind::HubSpot | CrmKind::Pipedrive => 10.0,
            CrmKind::Salesforce => 20.0,
        }
    }

    /// Whether the CRM calls us with webhooks leadgate can verify.
    pub fn has_webhooks(self) -> bool {
        matches!(self, CrmKind::HubSpot | CrmKind::Pipedrive)
    }
}

impl fmt::Display for CrmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a connection authenticates with. One shape for every CRM; `check` says which fields
/// each CRM needs. Kept sealed as JSON; never returned.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrmCredentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_password: Option<String>,
}

impl fmt::Debug for CrmCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CrmCredentials({})", self.hint())
    }
}

impl CrmCredentials {
    fn fields(&self) -> [(&'static str, &Option<String>); 7] {
        [
            ("accessToken", &self.access_token),
            ("clientId", &self.client_id),
            ("clientSecret", &self.client_secret),
            ("refreshToken", &self.refresh_token),
            ("apiToken", &self.api_token),
            ("webhookUser", &self.webhook_user),
            ("webhookPassword", &self.webhook_password),
        ]
    }

    /// The names of the fields that are set, e.g. `accessToken, clientSecret`: what an admin
    /// sees instead of the values.
    pub fn hint(&self) -> String {
        let set: Vec<&str> = self
            .fields()
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(n, _)| *n)
            .collect();
        set.join(", ")
    }

    /// Trims every value, drops empty ones, and checks that `kind` gets what it needs and
    /// nothing it would ignore.
    pub fn check(mut self, kind: CrmKind) -> Result<Self, Vec<FieldError>> {
        for slot in [
            &mut self.access_token,
            &mut self.client_id,
            &mut self.client_secret,
            &mut self.refresh_token,
            &mut self.api_token,
            &mut self.webhook_user,
            &mut self.webhook_password,
        ] {
            *slot = slot.take().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        }
        let (required, allowed): (&[&str], &[&str]) = match kind {
            CrmKind::HubSpot => (&["accessToken"], &["accessToken", "clientSecret"]),
            CrmKind::Salesforce => (
                &["clientId", "clientSecret", "refreshToken"],
                &["clientId", "clientSecret", "refreshToken", "accessToken"],
            ),
            CrmKind::Pipedrive => (&["apiToken"], &["apiToken", "webhookUser", "webhookPassword"]),
        };
        let mut errors = Vec::new();
        for (name, value) in self.fields() {
            let field = format!("credentials.{name}");
            if value.is_none() && required.contains(&name) {
                errors.push(FieldError::new(
                    &field,
                    FieldErrorCode::Required,
                    format!("{} connections need {name}", kind.label()),
                ));
            } else if value.is_some() && !allowed.contains(&name) {
                errors.push(FieldError::invalid(
                    &field,
                    format!("{} connections do not use {name}", kind.label()),
                ));
            } else if value
                .as_ref()
                .is_some_and(|v| v.len() > 4096 || v.chars().any(char::is_control))
            {
                errors.push(FieldError::invalid(
                    &field,
                    "must be at most 4096 printable characters",
                ));
            }
        }
        if kind == CrmKind::Pipedrive && self.webhook_user.is_some() != self.webhook_password.is_some() {
            errors.push(FieldError::new(
                "credentials.webhookPassword",
                FieldErrorCode::Required,
                "webhookUser and webhookPassword go together",
            ));
        }
        if errors.is_empty() { Ok(self) } else { Err(errors) }
    }

    /// Fills the fields `update` sets, keeping the others (a token refresh, a new secret).
    pub fn merged(mut self, update: CrmCredentials) -> Self {
        macro_rules! take {
            ($($f:ident),*) => {$(if update.$f.is_some() { self.$f = update.$f; })*};
        }
        take!(
            access_token,
            client_id,
            client_secret,
            refresh_token,
            api_token,
            webhook_user,
            webhook_password
        );
        self
    }
}

/// The lead fields a mapping can name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MappedField {
    Email,
    FirstName,
    LastName,
    Title,
    CompanyName,
    CompanyDomain,
    Phone,
    LinkedinUrl,
    Country,
    Source,
    Status,
    Owner,
    Score,
}

impl MappedField {
    pub const ALL: [MappedField; 13] = [
        MappedField::Email,
        MappedField::FirstName,
        MappedField::LastName,
        MappedField::Title,
        MappedField::CompanyName,
        MappedField::CompanyDomain,
        MappedField::Phone,
        MappedField::LinkedinUrl,
        MappedField::Country,
        MappedField::Source,
        MappedField::Status,
        MappedField::Owner,
        MappedField::Score,
    ];

    /// The API's name of the field.
    pub fn as_str(self) -> &'static str {
        match self {
            MappedField::Email => "email",
            MappedField::FirstName => "firstName",
            MappedField::LastName => "lastName",
            MappedField::Title => "title",
            MappedField::CompanyName => "companyName",
            MappedField::CompanyDomain => "companyDomain",
            MappedField::Phone => "phone",
            MappedField::LinkedinUrl => "linkedinUrl",
            MappedField::Country => "country",
            MappedField::Source => "source",
            MappedField::Status => "status",
            MappedField::Owner => "owner",
            MappedField::Score => "score",
        }
    }

    /// The lead's value as text, `None` when absent.
    pub fn read(self, lead: &Lead) -> Option<String> {
        match self {
            MappedField::Email => lead.email.as_ref().map(|v| v.as_str().to_owned()),
            MappedField::FirstName => lead.first_name.clone(),
            MappedField::LastName => lead.last_name.clone(),
            MappedField::Title => lead.title.clone(),
            MappedField::CompanyName => lead.company_name.clone(),
            MappedField::CompanyDomain => lead.company_domain.as_ref().map(|v| v.as_str().to_owned()),
            MappedField::Phone => lead.phone.as_ref().map(|v| v.as_str().to_owned()),
            MappedField::LinkedinUrl => lead.linkedin_url.as_ref().map(|v| v.as_str().to_owned()),
            MappedField::Country => lead.country.as_ref().map(|v| v.as_str().to_owned()),
            MappedField::Source => lead.source.clone(),
            MappedField::Status => Some(lead.status.as_str().to_owned()),
            MappedField::Owner => lead.owner.clone(),
            MappedField::Score => Some(lead.score.value().to_string()),
        }
    }

    /// Puts `value` (or clears the field for `None`) into `draft`; the draft's own parsing
    /// validates it.
    fn write(self, draft: &mut LeadDraft, value: Option<String>) -> Result<(), FieldError> {
        let text = |v: Option<String>| v.map_or(Patch::Clear, Patch::Set);
        match self {
            MappedField::Email => draft.email = text(value),
            MappedField::FirstName => draft.first_name = text(value),
            MappedField::LastName => draft.last_name = text(value),
            MappedField::Title => draft.title = text(value),
            MappedField::CompanyName => draft.company_name = text(value),
            MappedField::CompanyDomain => draft.company_domain = text(value),
            MappedField::Phone => draft.phone = text(value),
            MappedField::LinkedinUrl => draft.linkedin_url = text(value),
            MappedField::Country => draft.country = text(value),
            MappedField::Source => draft.source = text(value),
            MappedField::Owner => draft.owner = text(value),
            MappedField::Status => {
                draft.status = match value {
                    None => Patch::Keep,
                    Some(v) => Patch::Set(LeadStatus::parse(&v.to_ascii_lowercase()).ok_or_else(|| {
                        FieldError::invalid("status", format!("'{v}' maps to no lead status"))
                    })?),
                }
            }
            MappedField::Score => {
                draft.score = match value {
                    None => Patch::Keep,
                    Some(v) => Patch::Set(
                        v.trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|n| n.is_finite())
                            .map(|n| n.round() as i64)
                            .ok_or_else(|| FieldError::invalid("score", format!("'{v}' is not a number")))?,
                    ),
                }
            }
        }
        Ok(())
    }
}

/// Which way a mapped field travels.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncDirection {
    Push,
    Pull,
    Both,
}

impl SyncDirection {
    pub fn pushes(self) -> bool {
        matches!(self, SyncDirection::Push | SyncDirection::Both)
    }
    pub fn pulls(self) -> bool {
        matches!(self, SyncDirection::Pull | SyncDirection::Both)
    }
}

/// How a value is changed on its way across. Applied to what is sent, and (except value maps,
/// which are reversed) to what is received.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "pairs")]
pub enum Transform {
    #[default]
    None,
    Lowercase,
    Trim,
    /// Phone numbers in E.164 (`+` and digits).
    E164,
    /// ISO 3166-1 alpha-2, upper-case.
    IsoCountry,
    /// Ours → theirs, e.g. `qualified` → `salesqualifiedlead`; received values map back.
    ValueMap(Vec<(String, String)>),
}

impl Transform {
    fn outgoing(&self, value: String) -> String {
        match self {
            Transform::None => value,
            Transform::Lowercase => value.trim().to_lowercase(),
            Transform::Trim => value.trim().to_owned(),
            Transform::E164 => {
                let digits: String = value.chars().filter(char::is_ascii_digit).collect();
                format!("+{digits}")
            }
            Transform::IsoCountry => value.trim().to_ascii_uppercase(),
            Transform::ValueMap(pairs) => pairs
                .iter()
                .find(|(ours, _)| ours.eq_ignore_ascii_case(&value))
                .map_or(value, |(_, theirs)| theirs.clone()),
        }
    }

    fn incoming(&self, value: String) -> String {
        match self {
            Transform::None | Transform::E164 => value,
            Transform::Lowercase => value.trim().to_lowercase(),
            Transform::Trim => value.trim().to_owned(),
            Transform::IsoCountry => value.trim().to_ascii_uppercase(),
            Transform::ValueMap(pairs) => pairs
                .iter()
                .find(|(_, theirs)| theirs.eq_ignore_ascii_case(value.trim()))
                .map_or(value, |(ours, _)| ours.clone()),
        }
    }
}

/// Who wins when both sides changed a field.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConflictPolicy {
    /// The change with the newer timestamp.
    #[default]
    Newest,
    CrmWins,
    LeadgateWins,
}

/// One lead field ↔ one CRM property.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MappingRule {
    pub field: MappedField,
    pub property: String,
    pub direction: SyncDirection,
    #[serde(default)]
    pub transform: Transform,
    /// Sent when the lead has no value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default)]
    pub conflict: ConflictPolicy,
}

impl MappingRule {
    fn new(field: MappedField, property: &str, direction: SyncDirection, transform: Transform) -> Self {
        Self {
            field,
            property: property.to_owned(),
            direction,
            transform,
            default: None,
            conflict: ConflictPolicy::Newest,
        }
    }

    fn with_default(mut self, value: &str) -> Self {
        self.default = Some(value.to_owned());
        self
    }
}

/// A connection's mapping: rules in order.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct FieldMapping {
    pub rules: Vec<MappingRule>,
}

fn pairs(list: &[(&str, &str)]) -> Transform {
    Transform::ValueMap(
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect(),
    )
}

impl FieldMapping {
    /// The mapping a new connection starts with: the CRM's standard properties.
    pub fn default_for(kind: CrmKind) -> Self {
        use MappedField as F;
        use SyncDirection::{Both, Push};
        let rule = MappingRule::new;
        let rules = match kind {
            CrmKind::HubSpot => vec![
                rule(F::Email, "email", Both, Transform::Lowercase),
                rule(F::FirstName, "firstname", Both, Transform::Trim),
                rule(F::LastName, "lastname", Both, Transform::Trim),
                rule(F::Title, "jobtitle", Both, Transform::Trim),
                rule(F::CompanyName, "company", Both, Transform::Trim),
                rule(F::CompanyDomain, "website", Push, Transform::Lowercase),
                rule(F::Phone, "phone", Both, Transform::E164),
                rule(F::Country, "country", Both, Transform::IsoCountry),
                rule(
                    F::Status,
                    "lifecyclestage",
                    Both,
                    pairs(&[
                        ("new", "lead"),
                        ("contacted", "marketingqualifiedlead"),
                        ("qualified", "salesqualifiedlead"),
                        ("unqualified", "other"),
                        ("customer", "customer"),
                    ]),
                ),
            ],
            CrmKind::Salesforce => vec![
                rule(F::Email, "Email", Both, Transform::Lowercase),
                rule(F::FirstName, "FirstName", Both, Transform::Trim),
                // required by Salesforce: a lead without one is sent with a placeholder
                rule(F::LastName, "LastName", Both, Transform::Trim).with_default("[not provided]"),
                rule(F::CompanyName, "Company", Both, Transform::Trim).with_default("[not provided]"),
                rule(F::Title, "Title", Both, Transform::Trim),
                rule(F::CompanyDomain, "Website", Push, Transform::Lowercase),
                rule(F::Phone, "Phone", Both, Transform::E164),
                rule(F::Country, "CountryCode", Both, Transform::IsoCountry),
                rule(F::Source, "LeadSource", Both, Transform::Trim),
                rule(
                    F::Status,
                    "Status",
                    Both,
                    pairs(&[
                        ("new", "Open - Not Contacted"),
                        ("contacted", "Working - Contacted"),
                        ("qualified", "Closed - Converted"),
                        ("unqualified", "Closed - Not Converted"),
                    ]),
                ),
            ],
            CrmKind::Pipedrive => vec![
                rule(F::Email, "email", Both, Transform::Lowercase),
                rule(F::FirstName, "first_name", Both, Transform::Trim),
                rule(F::LastName, "last_name", Both, Transform::Trim),
                rule(F::Phone, "phone", Both, Transform::E164),
                rule(F::CompanyName, "org_name", Push, Transform::Trim),
                rule(F::Title, "job_title", Both, Transform::Trim),
            ],
        };
        Self { rules }
    }

    /// Checks rules given by an admin: known shapes, property names that can be sent, no
    /// property twice, and no field pulled from two properties.
    pub fn check(self) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        if self.rules.len() > MAX_MAPPING_RULES {
            errors.push(FieldError::new(
                "fieldMapping",
                FieldErrorCode::TooLong,
                format!("at most {MAX_MAPPING_RULES} rules"),
            ));
        }
        let mut properties = Vec::new();
        let mut pulled = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = format!("fieldMapping.{i}.property");
            let ok_name = !rule.property.is_empty()
                && rule.property.len() <= MAX_PROPERTY
                && rule
                    .property
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if !ok_name {
                errors.push(FieldError::invalid(
                    &at,
                    format!("a property name is 1 to {MAX_PROPERTY} letters, digits, '_' or '.'"),
                ));
            }
            if properties.contains(&rule.property.to_ascii_lowercase()) {
                errors.push(FieldError::invalid(
                    &at,
                    format!("{} is mapped twice", rule.property),
                ));
            }
            properties.push(rule.property.to_ascii_lowercase());
            if rule.direction.pulls() {
                if pulled.contains(&rule.field) {
                    errors.push(FieldError::invalid(
                        &format!("fieldMapping.{i}.field"),
                        format!("{} is pulled from two properties", rule.field.as_str()),
                    ));
                }
                pulled.push(rule.field);
            }
            if let Transform::ValueMap(pairs) = &rule.transform
                && (pairs.is_empty() || pairs.len() > 100)
            {
                errors.push(FieldError::invalid(
                    &format!("fieldMapping.{i}.transform"),
                    "a value map has 1 to 100 pairs",
                ));
            }
            if rule.default.as_ref().is_some_and(|d| d.len() > 1000) {
                errors.push(FieldError::new(
                    &format!("fieldMapping.{i}.default"),
                    FieldErrorCode::TooLong,
                    "at most 1000 characters",
                ));
            }
        }
        if errors.is_empty() { Ok(self) } else { Err(errors) }
    }

    /// The rule that maps `property`, if any (CRM property names compare case-insensitively).
    pub fn rule_for(&self, property: &str) -> Option<&MappingRule> {
        self.rules
            .iter()
            .find(|r| r.property.eq_ignore_ascii_case(property))
    }

    /// The property values a push sends for `lead`: every push rule with a value (the lead's,
    /// transformed, else the rule's default). Ordered by property, so digests are stable.
    pub fn outgoing(&self, lead: &Lead) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for rule in self.rules.iter().filter(|r| r.direction.pushes()) {
            let value = rule
                .field
                .read(lead)
                .map(|v| rule.transform.outgoing(v))
                .filter(|v| !v.is_empty())
                .or_else(|| rule.default.clone());
            if let Some(value) = value {
                out.insert(rule.property.clone(), value);
            }
        }
        out
    }

    /// The changes a CRM's record asks for, as a draft: each pulled property present in
    /// `properties` (`None` = the CRM cleared it) that `wins` lets through. A value that no
    /// field can hold (a lifecycle stage no status maps to) is an error naming the property.
    pub fn incoming(
        &self,
        properties: &BTreeMap<String, Option<String>>,
        mut wins: impl FnMut(&MappingRule) -> bool,
    ) -> Result<(LeadDraft, usize), Vec<FieldError>> {
        let mut draft = LeadDraft::default();
        let mut errors = Vec::new();
        let mut fields = 0;
        for (property, value) in properties {
            let Some(rule) = self.rule_for(property).filter(|r| r.direction.pulls()) else {
                continue;
            };
            if !wins(rule) {
                continue;
            }
            let value = value
                .clone()
                .map(|v| rule.transform.incoming(v))
                .filter(|v| !v.trim().is_empty());
            match rule.field.write(&mut draft, value) {
                Ok(()) => fields += 1,
                Err(mut e) => {
                    e.field = vec!["properties".into(), property.clone()];
                    errors.push(e);
                }
            }
        }
        if errors.is_empty() {
            Ok((draft, fields))
        } else {
            Err(errors)
        }
    }
}

/// A digest of mapped values: equal values, equal digest.
pub fn values_digest(values: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (k, v) in values {
        hasher.update(k.as_bytes());
        hasher.update([0]);
        hasher.update(v.as_bytes());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What happens to a lead whose CRM record was deleted.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum OnDeletion {
    /// The lead is archived (and its link kept, marked failed with the reason).
    #[default]
    Archive,
    /// The link is removed; the lead stays as it is.
    Unlink,
}

impl OnDeletion {
    pub fn as_str(self) -> &'static str {
        match self {
            OnDeletion::Archive => "archive",
            OnDeletion::Unlink => "unlink",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        [OnDeletion::Archive, OnDeletion::Unlink]
            .into_iter()
            .find(|d| d.as_str() == raw)
    }
}

/// A workspace's connection to one CRM account.
#[derive(Clone, PartialEq, Debug)]
pub struct CrmConnection {
    pub id: CrmConnectionId,
    pub workspace_id: WorkspaceId,
    pub kind: CrmKind,
    pub name: String,
    pub api_base_url: String,
    /// Where OAuth tokens are refreshed (Salesforce).
    pub token_url: Option<String>,
    /// `CrmCredentials` as JSON, sealed under the master key.
    pub credentials: SealedKey,
    /// Which credentials are set (names only).
    pub credentials_hint: String,
    pub field_mapping: FieldMapping,
    /// Whether lead changes are pushed as they happen.
    pub push_on_change: bool,
    /// How often the CRM is polled for changes; `None` = never.
    pub poll_interval_secs: Option<u32>,
    pub on_deletion: OnDeletion,
    /// The newest event number looked at for pushes.
    pub event_cursor: i64,
    /// The CRM's own position of the last completed poll page.
    pub poll_cursor: Option<String>,
    pub polled_at: Option<Timestamp>,
    /// No request before this (the CRM asked us to wait).
    pub blocked_until: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl CrmConnection {
    /// The sealing purpose of the credentials (associated data with the workspace).
    pub fn credentials_purpose(id: CrmConnectionId) -> String {
        format!("crm:{id}")
    }
}

/// Where a lead stands with one connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LinkStatus {
    Synced,
    Pending,
    Failed,
}

impl LinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkStatus::Synced => "synced",
            LinkStatus::Pending => "pending",
            LinkStatus::Failed => "failed",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        [LinkStatus::Synced, LinkStatus::Pending, LinkStatus::Failed]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

/// A lead's link to its record in one CRM.
#[derive(Clone, PartialEq, Debug)]
pub struct CrmLink {
    pub workspace_id: WorkspaceId,
    pub connection_id: CrmConnectionId,
    pub lead_id: LeadId,
    /// The CRM's id of the record, once known.
    pub external_id: Option<String>,
    pub status: LinkStatus,
    /// Bumped each time the lead is marked for a push; an outcome is recorded only for the
    /// generation that was sent.
    pub generation: i64,
    /// `values_digest` of what both sides last agreed on.
    pub synced_digest: Option<String>,
    /// Per CRM property, the newest change applied from the CRM (`occurredAt`, epoch ms); `*`
    /// for the record as a whole (creation, deletion).
    pub remote_clock: BTreeMap<String, i64>,
    pub last_synced_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub pending_since: Option<Timestamp>,
}

/// What started a sync run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SyncTrigger {
    Push,
    Poll,
    Webhook,
    Manual,
}

impl SyncTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncTrigger::Push => "push",
            SyncTrigger::Poll => "poll",
            SyncTrigger::Webhook => "webhook",
            SyncTrigger::Manual => "manual",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        [
            SyncTrigger::Push,
            SyncTrigger::Poll,
            SyncTrigger::Webhook,
            SyncTrigger::Manual,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

/// Records moved by one run, by outcome.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct SyncCounts {
    pub pushed: u64,
    pub pulled: u64,
    pub failed: u64,
    /// Nothing to send or apply: the values were already the same on both sides.
    pub skipped: u64,
}

impl std::ops::AddAssign for SyncCounts {
    fn add_assign(&mut self, o: Self) {
        self.pushed += o.pushed;
        self.pulled += o.pulled;
        self.failed += o.failed;
        self.skipped += o.skipped;
    }
}

/// One push, poll or webhook batch against one connection.
#[derive(Clone, PartialEq, Debug)]
pub struct CrmSyncRun {
    pub id: CrmRunId,
    pub workspace_id: WorkspaceId,
    pub connection_id: CrmConnectionId,
    pub trigger: SyncTrigger,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub counts: SyncCounts,
}

/// `crm.sync`: a run finished; its counts are the payload.
pub const CRM_SYNC_FINISHED: &str = "crm.sync.finished";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EmailAddress, LeadPatch, WorkspaceId, now};

    fn lead() -> Lead {
        let mut lead = Lead::new(WorkspaceId::new(), now());
        lead.email = Some(EmailAddress::parse("email", "Ada@Example.com").unwrap());
        lead.first_name = Some("Ada".into());
        lead.status = LeadStatus::Qualified;
        lead
    }

    #[test]
    fn credentials_are_checked_per_crm() {
        let hub = CrmCredentials {
            access_token: Some(" pat-na1-x ".into()),
            ..Default::default()
        };
        assert_eq!(
            hub.clone()
                .check(CrmKind::HubSpot)
                .unwrap()
                .access_token
                .as_deref(),
            Some("pat-na1-x")
        );
        let errors = hub.clone().check(CrmKind::Salesforce).unwrap_err();
        let fields: Vec<String> = errors.iter().map(|e| e.field.join(".")).collect();
        assert!(fields.contains(&"credentials.clientId".to_owned()), "{fields:?}");
        assert!(!fields.contains(&"credentials.accessToken".to_owned()));
        let pd = CrmCredentials {
            api_token: Some("t".into()),
            webhook_user: Some("u".into()),
            ..Default::default()
        };
        assert!(pd.check(CrmKind::Pipedrive).is_err(), "user without password");
        let wrong = CrmCredentials {
            api_token: Some("t".into()),
            access_token: Some("a".into()),
            ..Default::default()
        };
        assert!(
            wrong.check(CrmKind::HubSpot).is_err(),
            "apiToken is not HubSpot's"
        );
        assert_eq!(
            format!(
                "{:?}",
                CrmCredentials {
                    access_token: Some("secret-value".into()),
                    ..Default::default()
                }
            ),
            "CrmCredentials(accessToken)"
        );
    }

    #[test]
    fn outgoing_values_are_transformed_and_defaulted() {
        let mapping = FieldMapping::default_for(CrmKind::HubSpot);
        let out = mapping.outgoing(&lead());
        assert_eq!(out["email"], "ada@example.com");
        assert_eq!(out["lifecyclestage"], "salesqualifiedlead");
        assert!(!out.contains_key("lastname"));
        let sf = FieldMapping::default_for(CrmKind::Salesforce).outgoing(&lead());
        assert_eq!(sf["LastName"], "[not provided]");
        assert_eq!(sf["Status"], "Closed - Converted");
    }

    #[test]
    fn incoming_values_map_back_and_validate() {
        let mapping = FieldMapping::default_for(CrmKind::HubSpot);
        let props: BTreeMap<String, Option<String>> = [
            ("lifecyclestage".to_owned(), Some("customer".to_owned())),
            ("firstname".to_owned(), Some(" Grace ".to_owned())),
            ("jobtitle".to_owned(), None),
            ("unmapped".to_owned(), Some("x".to_owned())),
        ]
        .into();
        let (draft, fields) = mapping.incoming(&props, |_| true).unwrap();
        assert_eq!(fields, 3);
        let patch = LeadPatch::parse(draft).unwrap();
        assert_eq!(patch.status, Some(LeadStatus::Customer));
        assert_eq!(patch.first_name, Patch::Set("Grace".into()));
        assert_eq!(patch.title, Patch::Clear);
        let bad: BTreeMap<String, Option<String>> =
            [("lifecyclestage".to_owned(), Some("evangelist".to_owned()))].into();
        let errors = mapping.incoming(&bad, |_| true).unwrap_err();
        assert_eq!(errors[0].field, vec!["properties", "lifecyclestage"]);
        let (_, none) = mapping.incoming(&props, |_| false).unwrap();
        assert_eq!(none, 0);
    }

    #[test]
    fn mappings_refuse_bad_rules() {
        let mut mapping = FieldMapping::default_for(CrmKind::HubSpot);
        mapping.rules.push(MappingRule::new(
            MappedField::Email,
            "EMAIL",
            SyncDirection::Pull,
            Transform::None,
        ));
        mapping.rules.push(MappingRule::new(
            MappedField::Owner,
            "bad name!",
            SyncDirection::Push,
            Transform::None,
        ));
        let errors = mapping.check().unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        for kind in CrmKind::ALL {
            FieldMapping::default_for(kind).check().unwrap();
        }
    }

    #[test]
    fn digests_follow_the_values() {
        let mapping = FieldMapping::default_for(CrmKind::HubSpot);
        let mut l = lead();
        let a = values_digest(&mapping.outgoing(&l));
        l.owner = Some("rep@x".into()); // not mapped
        assert_eq!(a, values_digest(&mapping.outgoing(&l)));
        l.first_name = Some("Grace".into());
        assert_ne!(a, values_digest(&mapping.outgoing(&l)));
    }
}
