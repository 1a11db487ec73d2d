//! Query input types: the lead filter and order, with their conversion into domain values.
//! Filters on queries have no `userErrors`, so a bad filter value is a `BAD_USER_INPUT` error.
//! The lead's mutation inputs live beside the `Lead` type in `types`.

use super::errors::bad_input;
use super::types::LeadStatus;
use crate::domain::{
    self, ArchivedFilter, CountryCode, Direction, LeadOrder, Score, SortField, TagMatch, Tags,
};
use async_graphql::{Enum, InputObject};
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
