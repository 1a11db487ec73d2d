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

/// A filter as stored in a saved segment, in the API's own field names (`status`, `tags:
/// {anyOf}`, `score: {min, max}`, …), so a stored segment reads like the query that made it.
pub fn filter_to_json(filter: &LeadFilter) -> serde_json::Value {
    use serde_json::{Map, Value, json};
    let mut out = Map::new();
    let strings = |v: Vec<String>| Value::from(v);
    if !filter.statuses.is_empty() {
        out.insert(
            "status".into(),
            strings(filter.statuses.iter().map(|s| s.as_str().to_owned()).collect()),
        );
    }
    if !filter.owners.is_empty() {
        out.insert("owner".into(), strings(filter.owners.clone()));
    }
    if let Some((mode, tags)) = &filter.tags {
        let key = match mode {
            TagMatch::Any => "anyOf",
            TagMatch::All => "allOf",
        };
        let list: Vec<String> = tags.iter().map(|t| t.as_str().to_owned()).collect();
        out.insert("tags".into(), json!({ key: list }));
    }
    if !filter.countries.is_empty() {
        out.insert(
            "country".into(),
            strings(filter.countries.iter().map(|c| c.as_str().to_owned()).collect()),
        );
    }
    if !filter.sources.is_empty() {
        out.insert("source".into(), strings(filter.sources.clone()));
    }
    if filter.score_min.is_some() || filter.score_max.is_some() {
        out.insert(
            "score".into(),
            json!({ "min": filter.score_min.map(|s| s.value()), "max": filter.score_max.map(|s| s.value()) }),
        );
    }
    let range = |from: Option<Timestamp>, to: Option<Timestamp>| json!({ "from": from.map(|t| t.to_rfc3339()), "to": to.map(|t| t.to_rfc3339()) });
    if filter.created_from.is_some() || filter.created_to.is_some() {
        out.insert("createdAt".into(), range(filter.created_from, filter.created_to));
    }
    if filter.updated_from.is_some() || filter.updated_to.is_some() {
        out.insert("updatedAt".into(), range(filter.updated_from, filter.updated_to));
    }
    if let Some(has) = filter.has_email {
        out.insert("hasEmail".into(), Value::Bool(has));
    }
    if filter.archived == ArchivedFilter::Only {
        out.insert("archived".into(), Value::Bool(true));
    }
    if let Some(search) = &filter.search {
        out.insert("search".into(), Value::String(search.clone()));
    }
    Value::Object(out)
}

/// Reads back what `filter_to_json` wrote; a stored value that does not parse is reported with
/// the key at fault.
pub fn filter_from_json(value: &serde_json::Value) -> Result<LeadFilter, String> {
    use serde_json::Value;
    let object = value.as_object().ok_or("a filter is a JSON object")?;
    let strings = |key: &str| -> Result<Vec<String>, String> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or(format!("`{key}` holds strings"))
                })
                .collect(),
            Some(_) => Err(format!("`{key}` is a list of strings")),
        }
    };
    let time = |v: Option<&Value>, key: &str| -> Result<Option<Timestamp>, String> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| Some(t.with_timezone(&chrono::Utc)))
                .map_err(|_| format!("`{key}` is an RFC 3339 time")),
            Some(_) => Err(format!("`{key}` is an RFC 3339 time")),
        }
    };
    let mut filter = LeadFilter::default();
    for raw in strings("status")? {
        filter
            .statuses
            .push(LeadStatus::parse(&raw).ok_or(format!("unknown status {raw}"))?);
    }
    filter.owners = strings("owner")?;
    for raw in strings("country")? {
        filter
            .countries
            .push(CountryCode::parse("country", &raw).map_err(|e| e.message)?);
    }
    filter.sources = strings("source")?;
    if let Some(tags) = object.get("tags").and_then(Value::as_object) {
        let (mode, list) = match (tags.get("anyOf"), tags.get("allOf")) {
            (Some(list), None) => (TagMatch::Any, list),
            (None, Some(list)) => (TagMatch::All, list),
            _ => return Err("`tags` holds `anyOf` or `allOf`".into()),
        };
        let raw: Vec<String> = list
            .as_array()
            .ok_or("tag lists are lists")?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let parsed = super::values::Tags::parse("tags", &raw).map_err(|e| e.message)?;
        filter.tags = Some((mode, parsed.iter().cloned().collect()));
    }
    if let Some(score) = object.get("score").and_then(Value::as_object) {
        let bound = |k: &str| -> Result<Option<Score>, String> {
            score
                .get(k)
                .and_then(Value::as_i64)
                .map(|v| Score::parse("score", v).map_err(|e| e.message))
                .transpose()
        };
        filter.score_min = bound("min")?;
        filter.score_max = bound("max")?;
    }
    if let Some(range) = object.get("createdAt").and_then(Value::as_object) {
        filter.created_from = time(range.get("from"), "createdAt.from")?;
        filter.created_to = time(range.get("to"), "createdAt.to")?;
    }
    if let Some(range) = object.get("updatedAt").and_then(Value::as_object) {
        filter.updated_from = time(range.get("from"), "updatedAt.from")?;
        filter.updated_to = time(range.get("to"), "updatedAt.to")?;
    }
    filter.has_email = object.get("hasEmail").and_then(Value::as_bool);
    if object.get("archived").and_then(Value::as_bool) == Some(true) {
        filter.archived = ArchivedFilter::Only;
    }
    filter.search = object.get("search").and_then(Value::as_str).map(str::to_owned);
    Ok(filter)
}

#[cfg(test)]
mod json_tests {
    use super::*;

    #[test]
    fn a_filter_round_trips_through_its_stored_form() {
        let filter = LeadFilter {
            statuses: vec![LeadStatus::New, LeadStatus::Qualified],
            countries: vec![CountryCode::parse("c", "de").unwrap()],
            tags: Some((TagMatch::All, vec![Tag::parse("t", "vip").unwrap()])),
            score_min: Some(Score::parse("s", 10).unwrap()),
            has_email: Some(true),
            search: Some("ann".into()),
            created_from: Some(
                chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                    .unwrap()
                    .into(),
            ),
            ..Default::default()
        };
        let json = filter_to_json(&filter);
        assert_eq!(filter_from_json(&json).unwrap(), filter);
        assert!(filter_from_json(&serde_json::json!({"status": ["NOPE"]})).is_err());
        assert!(filter_from_json(&serde_json::json!([])).is_err());
    }
}
