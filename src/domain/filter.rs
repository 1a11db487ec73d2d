//! What a lead listing asks for: filter, order, and a keyset page (`LeadQuery`).
//!
//! Cursors carry the sort key and the id of the edge they point at, plus the order they were
//! made for, so a cursor from one order cannot be replayed against another.

use super::ids::LeadId;
use super::lead::{Lead, LeadStatus, Timestamp};
use super::values::{CountryCode, Score, Tag};

/// How a tag filter combines its tags.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TagMatch {
    /// The lead has at least one of the tags.
    Any,
    /// The lead has every one of the tags.
    All,
}

/// Which leads a listing includes by archive state.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum ArchivedFilter {
    /// Only leads that are not archived (the default).
    #[default]
    Exclude,
    /// Only archived leads.
    Only,
}

/// Conditions a lead must meet; empty lists and `None` mean "no condition".
#[derive(Clone, PartialEq, Debug, Default)]
pub struct LeadFilter {
    pub statuses: Vec<LeadStatus>,
    pub owners: Vec<String>,
    pub tags: Option<(TagMatch, Vec<Tag>)>,
    pub countries: Vec<CountryCode>,
    pub sources: Vec<String>,
    pub score_min: Option<Score>,
    pub score_max: Option<Score>,
    /// Inclusive lower bound.
    pub created_from: Option<Timestamp>,
    /// Exclusive upper bound.
    pub created_to: Option<Timestamp>,
    pub updated_from: Option<Timestamp>,
    pub updated_to: Option<Timestamp>,
    pub has_email: Option<bool>,
    pub archived: ArchivedFilter,
    /// Lower-cased text matched anywhere in name, email or company name.
    pub search: Option<String>,
}

impl LeadFilter {
    /// True when only the archive state restricts the listing, so a maintained count answers
    /// `totalCount` exactly without counting rows.
    pub fn is_unrestricted(&self) -> bool {
        *self
            == LeadFilter {
                archived: self.archived,
                ..Default::default()
            }
    }

    /// Whether a lead meets every condition; the in-memory twin of the store's SQL, used by
    /// subscriptions and tests.
    pub fn matches(&self, lead: &Lead) -> bool {
        let archived_ok = match self.archived {
            ArchivedFilter::Exclude => lead.archived_at.is_none(),
            ArchivedFilter::Only => lead.archived_at.is_some(),
        };
        let any_of = |list: &[String], v: &Option<String>| {
            list.is_empty() || v.as_ref().is_some_and(|v| list.contains(v))
        };
        let tags_ok = match &self.tags {
            None => true,
            Some((_, tags)) if tags.is_empty() => true,
            Some((TagMatch::Any, tags)) => tags.iter().any(|t| lead.tags.iter().any(|l| l == t)),
            Some((TagMatch::All, tags)) => tags.iter().all(|t| lead.tags.iter().any(|l| l == t)),
        };
        let search_ok = self
            .search
            .as_ref()
            .is_none_or(|s| lead.search_text().contains(s.as_str()));
        archived_ok
            && tags_ok
            && search_ok
            && (self.statuses.is_empty() || self.statuses.contains(&lead.status))
            && any_of(&self.owners, &lead.owner)
            && any_of(&self.sources, &lead.source)
            && (self.countries.is_empty()
                || lead.country.as_ref().is_some_and(|c| self.countries.contains(c)))
            && self.score_min.is_none_or(|m| lead.score >= m)
            && self.score_max.is_none_or(|m| lead.score <= m)
            && self.created_from.is_none_or(|t| lead.created_at >= t)
            && self.created_to.is_none_or(|t| lead.created_at < t)
            && self.updated_from.is_none_or(|t| lead.updated_at >= t)
            && self.updated_to.is_none_or(|t| lead.updated_at < t)
            && self.has_email.is_none_or(|h| lead.email.is_some() == h)
    }
}

/// The key a listing is sorted by; ties are always broken by id in the same direction.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum SortField {
    #[default]
    CreatedAt,
    UpdatedAt,
    LastName,
    CompanyName,
    Score,
}

impl SortField {
    pub const ALL: [SortField; 5] = [
        SortField::CreatedAt,
        SortField::UpdatedAt,
        SortField::LastName,
        SortField::CompanyName,
        SortField::Score,
    ];

    /// The sort key of a lead under this field. Absent names sort as the empty string.
    pub fn key_of(self, lead: &Lead) -> SortValue {
        match self {
            SortField::CreatedAt => SortValue::Time(lead.created_at),
            SortField::UpdatedAt => SortValue::Time(lead.updated_at),
            SortField::LastName => SortValue::Text(lead.last_name.clone().unwrap_or_default()),
            SortField::CompanyName => SortValue::Text(lead.company_name.clone().unwrap_or_default()),
            SortField::Score => SortValue::Int(i64::from(lead.score.value())),
        }
    }

    pub fn code(self) -> u8 {
        match self {
            SortField::CreatedAt => 0,
            SortField::UpdatedAt => 1,
            SortField::LastName => 2,
            SortField::CompanyName => 3,
            SortField::Score => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.code() == code)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Direction {
    #[default]
    Asc,
    Desc,
}

/// A sort order: `{field: COMPANY_NAME, direction: ASC}`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct LeadOrder {
    pub field: SortField,
    pub direction: Direction,
}

/// A value of a sort key, as kept in a cursor.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum SortValue {
    Time(Timestamp),
    Text(String),
    Int(i64),
}

impl SortValue {
    /// Whether this value has the kind that `field` sorts by.
    pub fn fits(&self, field: SortField) -> bool {
        matches!(
            (self, field),
            (SortValue::Time(_), SortField::CreatedAt | SortField::UpdatedAt)
                | (SortValue::Text(_), SortField::LastName | SortField::CompanyName)
                | (SortValue::Int(_), SortField::Score)
        )
    }
}

/// A position in a listing: just after (or before) the lead with this key and id.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Cursor {
    pub order: LeadOrder,
    pub key: SortValue,
    pub id: LeadId,
}

impl Cursor {
    pub fn for_lead(order: LeadOrder, lead: &Lead) -> Self {
        Self {
            order,
            key: order.field.key_of(lead),
            id: lead.id,
        }
    }
}

/// Which end of the window a page is taken from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PageDirection {
    /// `first`: from the start of the window, in sort order.
    Forward,
    /// `last`: from the end of the window; the store reads in reverse order.
    Backward,
}

/// One keyset page request: the rows strictly between `after` and `before`, `limit` of them,
/// from the end `direction` names.
#[derive(Clone, PartialEq, Debug)]
pub struct LeadQuery {
    pub filter: LeadFilter,
    pub order: LeadOrder,
    pub after: Option<Cursor>,
    pub before: Option<Cursor>,
    pub limit: usize,
    pub direction: PageDirection,
}

/// Which side of a cursor an existence check looks at, the cursor's own row included.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CursorSide {
    AtOrBefore,
    AtOrAfter,
}
