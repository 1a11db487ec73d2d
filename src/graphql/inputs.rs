//! Input types: the lead filter and order, and mutation inputs, with their conversion into
//! domain values. Filters on queries have no `userErrors`, so a bad filter value is a
//! `BAD_USER_INPUT` error.

use super::errors::bad_input;
use super::types::LeadStatus;
use crate::domain::{
    self, ArchivedFilter, CountryCode, Direction, LeadDraft, LeadOrder, Patch, Score, SortField, TagMatch,
    Tags,
};
use async_graphql::{Enum, ID, InputObject, Json, MaybeUndefined};
use chrono::{DateTime, Utc};

const MAX_LIST: usize = 100;

/// A range of scores, both ends inclusive.
#[derive(InputObject, Default)]
pub struct ScoreRange {
    pub min: Option<i32>,
    pub max: Option<i32>,
}

/// A range of instants: `from` inclusive, `to` exclusive.
#[derive(InputObject, Default)]
pub struct DateTimeRange {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Tags a lead must carry: give exactly one of `anyOf` and `allOf`.
#[derive(InputObject, Default)]
pub struct TagFilter {
    /// The lead has at least one of these tags.
    pub any_of: Option<Vec<String>>,
    /// The lead has every one of these tags.
    pub all_of: Option<Vec<String>>,
}

/// Which leads to list. All conditions must hold; list conditions match any of their values.
#[derive(InputObject, Default)]
pub struct LeadFilter {
    pub status: Option<Vec<LeadStatus>>,
    pub owner: Option<Vec<String>>,
    pub tags: Option<TagFilter>,
    /// ISO 3166-1 alpha-2 codes.
    pub country: Option<Vec<String>>,
    pub source: Option<Vec<String>>,
    pub score: Option<ScoreRange>,
    pub created_at: Option<DateTimeRange>,
    pub updated_at: Option<DateTimeRange>,
    /// True: only leads with an email; false: only leads without.
    pub has_email: Option<bool>,
    /// False or absent: leads that are not archived. True: only archived leads.
    pub archived: Option<bool>,
    /// Case-insensitive text found in the lead's first name, last name, email and company name,
    /// joined by spaces (so `ann lee` finds Ann Lee).
    pub search: Option<String>,
}

fn bounded_list<T>(name: &str, list: Option<Vec<T>>) -> async_graphql::Result<Vec<T>> {
    let list = list.unwrap_or_default();
    if list.len() > MAX_LIST {
        return Err(bad_input(format!(
            "filter `{name}` takes at most {MAX_LIST} values"
        )));
    }
    Ok(list)
}

fn score_bound(name: &str, v: Option<i32>) -> async_graphql::Result<Option<Score>> {
    v.map(|v| Score::parse(name, i64::from(v)).map_err(|e| bad_input(e.message)))
        .transpose()
}

impl LeadFilter {
    pub fn into_domain(self) -> async_graphql::Result<domain::LeadFilter> {
        let countries = bounded_list("country", self.country)?
            .iter()
            .map(|c| CountryCode::parse("country", c).map_err(|e| bad_input(e.message)))
            .collect::<async_graphql::Result<Vec<_>>>()?;
        let tags = match self.tags {
            None => None,
            Some(TagFilter {
                any_of: Some(_),
                all_of: Some(_),
            }) => {
                return Err(bad_input("tag filter takes `anyOf` or `allOf`, not both"));
            }
            Some(TagFilter {
                any_of: Some(t),
                all_of: None,
            }) => Some((TagMatch::Any, t)),
            Some(TagFilter {
                any_of: None,
                all_of: Some(t),
            }) => Some((TagMatch::All, t)),
            Some(TagFilter {
                any_of: None,
                all_of: None,
            }) => None,
        };
        let tags = match tags {
            Some((mode, raw)) if !raw.is_empty() => {
                let parsed = Tags::parse("tags", &raw).map_err(|e| bad_input(e.message))?;
                Some((mode, parsed.iter().cloned().collect()))
            }
            _ => None,
        };
        let score = self.score.unwrap_or_default();
        let created = self.created_at.unwrap_or_default();
        let updated = self.updated_at.unwrap_or_default();
        let search = match self.search.as_deref().map(str::trim) {
            Some(s) if s.chars().count() > 100 => {
                return Err(bad_input("`search` has at most 100 characters"));
            }
            Some("") | None => None,
            Some(s) => Some(s.to_lowercase()),
        };
        let trimmed =
            |v: Vec<String>| -> Vec<String> { v.into_iter().map(|s| s.trim().to_owned()).collect() };
        Ok(domain::LeadFilter {
            statuses: bounded_list("status", self.status)?
                .into_iter()
                .map(Into::into)
                .collect(),
            owners: trimmed(bounded_list("owner", self.owner)?),
            tags,
            countries,
            sources: trimmed(bounded_list("source", self.source)?),
            score_min: score_bound("score.min", score.min)?,
            score_max: score_bound("score.max", score.max)?,
            created_from: created.from,
            created_to: created.to,
            updated_from: updated.from,
            updated_to: updated.to,
            has_email: self.has_email,
            archived: if self.archived.unwrap_or(false) {
                ArchivedFilter::Only
            } else {
                ArchivedFilter::Exclude
            },
            search,
        })
    }
}

/// Fields leads can be sorted by; ties are broken by id.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum LeadOrderField {
    CreatedAt,
    UpdatedAt,
    /// Leads without a last name sort first in ascending order.
    LastName,
    /// Leads without a company name sort first in ascending order.
    CompanyName,
    Score,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum OrderDirection {
    Asc,
    Desc,
}

/// Sort order of a lead connection, e.g. `{field: COMPANY_NAME, direction: ASC}`.
#[derive(InputObject)]
#[graphql(name = "LeadOrder")]
pub struct LeadOrderInput {
    pub field: LeadOrderField,
    #[graphql(default_with = "OrderDirection::Asc")]
    pub direction: OrderDirection,
}

impl LeadOrderInput {
    pub fn into_domain(self) -> LeadOrder {
        LeadOrder {
            field: match self.field {
                LeadOrderField::CreatedAt => SortField::CreatedAt,
                LeadOrderField::UpdatedAt => SortField::UpdatedAt,
                LeadOrderField::LastName => SortField::LastName,
                LeadOrderField::CompanyName => SortField::CompanyName,
                LeadOrderField::Score => SortField::Score,
            },
            direction: match self.direction {
                OrderDirection::Asc => Direction::Asc,
                OrderDirection::Desc => Direction::Desc,
            },
        }
    }
}

/// Fields of a new lead. Every field is optional; blank text counts as absent.
#[derive(InputObject, Default)]
pub struct CreateLeadInput {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub title: Option<String>,
    pub company_name: Option<String>,
    /// A domain or website URL; derived from a business email when absent.
    pub company_domain: Option<String>,
    /// International form, e.g. `+1 415 555 0100`; stored as E.164.
    pub phone: Option<String>,
    pub linkedin_url: Option<String>,
    /// ISO 3166-1 alpha-2 code.
    pub country: Option<String>,
    pub source: Option<String>,
    /// Defaults to `NEW`.
    pub status: Option<LeadStatus>,
    pub owner: Option<String>,
    /// 0 to 100; defaults to 0.
    pub score: Option<i32>,
    pub tags: Option<Vec<String>>,
    /// A JSON object of at most 100 keys and 16 KiB.
    pub custom_fields: Option<Json<serde_json::Value>>,
}

fn set<T>(v: Option<T>) -> Patch<T> {
    v.map_or(Patch::Keep, Patch::Set)
}

impl CreateLeadInput {
    pub fn into_draft(self) -> LeadDraft {
        LeadDraft {
            email: set(self.email),
            first_name: set(self.first_name),
            last_name: set(self.last_name),
            title: set(self.title),
            company_name: set(self.company_name),
            company_domain: set(self.company_domain),
            phone: set(self.phone),
            linkedin_url: set(self.linkedin_url),
            country: set(self.country),
            source: set(self.source),
            status: set(self.status.map(Into::into)),
            owner: set(self.owner),
            score: set(self.score.map(i64::from)),
            tags: set(self.tags),
            custom_fields: set(self.custom_fields.map(|j| j.0)),
        }
    }
}

/// A partial update: absent fields stay as they are, `null` clears a field.
#[derive(InputObject)]
pub struct UpdateLeadInput {
    pub id: ID,
    /// When given, the update is refused with a `STALE_VERSION` user error unless the lead is
    /// still at this version.
    pub expected_version: Option<i64>,
    pub email: MaybeUndefined<String>,
    pub first_name: MaybeUndefined<String>,
    pub last_name: MaybeUndefined<String>,
    pub title: MaybeUndefined<String>,
    pub company_name: MaybeUndefined<String>,
    pub company_domain: MaybeUndefined<String>,
    pub phone: MaybeUndefined<String>,
    pub linkedin_url: MaybeUndefined<String>,
    pub country: MaybeUndefined<String>,
    pub source: MaybeUndefined<String>,
    pub status: MaybeUndefined<LeadStatus>,
    pub owner: MaybeUndefined<String>,
    pub score: MaybeUndefined<i32>,
    pub tags: MaybeUndefined<Vec<String>>,
    pub custom_fields: MaybeUndefined<Json<serde_json::Value>>,
}

fn patch<T>(v: MaybeUndefined<T>) -> Patch<T> {
    match v {
        MaybeUndefined::Undefined => Patch::Keep,
        MaybeUndefined::Null => Patch::Clear,
        MaybeUndefined::Value(v) => Patch::Set(v),
    }
}

impl UpdateLeadInput {
    pub fn into_draft(self) -> LeadDraft {
        LeadDraft {
            email: patch(self.email),
            first_name: patch(self.first_name),
            last_name: patch(self.last_name),
            title: patch(self.title),
            company_name: patch(self.company_name),
            company_domain: patch(self.company_domain),
            phone: patch(self.phone),
            linkedin_url: patch(self.linkedin_url),
            country: patch(self.country),
            source: patch(self.source),
            status: patch(self.status.map_value(Into::into)),
            owner: patch(self.owner),
            score: patch(self.score.map_value(i64::from)),
            tags: patch(self.tags),
            custom_fields: patch(self.custom_fields.map_value(|j| j.0)),
        }
    }
}

/// Identifies one lead.
#[derive(InputObject)]
pub struct LeadIdInput {
    pub id: ID,
}

/// Leads to create or update, matched by email.
#[derive(InputObject)]
pub struct UpsertLeadsInput {
    /// At most 1,000 leads; each needs an `email`.
    pub leads: Vec<CreateLeadInput>,
}
