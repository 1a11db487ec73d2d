//! An independent reference model of lead listings: which leads a `LeadFilter` selects, in
//! which order a `LeadOrder` puts them, and what a keyset page holds, written here from the
//! documented rules over a plain `Vec<Lead>`. It calls nothing of the code under test
//! (`LeadFilter::matches`, `SortField::key_of`, `Cursor::for_lead`, `Lead::search_text`), so
//! the store's SQL and the in-memory filter are both checked against it rather than against
//! each other.

use leadgate::domain::{
    ArchivedFilter, Cursor, Direction, Lead, LeadFilter, LeadOrder, SortField, SortValue, TagMatch,
};
use std::cmp::Ordering;

/// Whether `lead` meets every condition of `filter`, as the API documents them: each list is
/// any-of, an empty list or `None` is no condition, `*_from` bounds are inclusive and `*_to`
/// exclusive, archived leads only with `archived: ONLY` (and only they), `search` is a
/// case-insensitive substring of first name, last name, email and company name joined by
/// single spaces.
pub fn matches(filter: &LeadFilter, lead: &Lead) -> bool {
    let archived = lead.archived_at.is_some();
    if archived != (filter.archived == ArchivedFilter::Only) {
        return false;
    }
    if !filter.statuses.is_empty() && !filter.statuses.contains(&lead.status) {
        return false;
    }
    let one_of = |wanted: &[String], value: &Option<String>| {
        wanted.is_empty() || matches!(value, Some(v) if wanted.iter().any(|w| w == v))
    };
    if !one_of(&filter.owners, &lead.owner) || !one_of(&filter.sources, &lead.source) {
        return false;
    }
    if !filter.countries.is_empty() {
        match &lead.country {
            Some(c) if filter.countries.iter().any(|w| w.as_str() == c.as_str()) => {}
            _ => return false,
        }
    }
    if let Some((mode, wanted)) = &filter.tags {
        let has = |t: &str| lead.tags.iter().any(|l| l.as_str() == t);
        let ok = wanted.is_empty()
            || match mode {
                TagMatch::Any => wanted.iter().any(|t| has(t.as_str())),
                TagMatch::All => wanted.iter().all(|t| has(t.as_str())),
            };
        if !ok {
            return false;
        }
    }
    let score = i64::from(lead.score.value());
    if filter.score_min.is_some_and(|m| score < i64::from(m.value()))
        || filter.score_max.is_some_and(|m| score > i64::from(m.value()))
    {
        return false;
    }
    let within = |t, from: Option<_>, to: Option<_>| from.is_none_or(|f| t >= f) && to.is_none_or(|e| t < e);
    if !within(lead.created_at, filter.created_from, filter.created_to)
        || !within(lead.updated_at, filter.updated_from, filter.updated_to)
    {
        return false;
    }
    if let Some(wanted) = filter.has_email
        && lead.email.is_some() != wanted
    {
        return false;
    }
    if let Some(search) = &filter.search {
        let mut text = String::new();
        for part in [
            lead.first_name.clone(),
            lead.last_name.clone(),
            lead.email.as_ref().map(|e| e.as_str().to_owned()),
            lead.company_name.clone(),
        ]
        .into_iter()
        .flatten()
        {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&part);
        }
        if !text.to_lowercase().contains(&search.to_lowercase()) {
            return false;
        }
    }
    true
}

/// A sort key: times, bytes of a name (absent names are empty), or the score.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Time(i64),
    Bytes(Vec<u8>),
    Int(i64),
}

fn key(field: SortField, lead: &Lead) -> Key {
    let name = |n: &Option<String>| Key::Bytes(n.clone().unwrap_or_default().into_bytes());
    match field {
        SortField::CreatedAt => Key::Time(lead.created_at.timestamp_micros()),
        SortField::UpdatedAt => Key::Time(lead.updated_at.timestamp_micros()),
        SortField::LastName => name(&lead.last_name),
        SortField::CompanyName => name(&lead.company_name),
        SortField::Score => Key::Int(i64::from(lead.score.value())),
    }
}

fn key_of_value(value: &SortValue) -> Key {
    match value {
        SortValue::Time(t) => Key::Time(t.timestamp_micros()),
        SortValue::Text(s) => Key::Bytes(s.as_bytes().to_vec()),
        SortValue::Int(i) => Key::Int(*i),
    }
}

/// (key, id bytes) in the order's direction: ties are broken by id the same way.
fn compare_at(order: LeadOrder, a: (Key, [u8; 16]), b: (Key, [u8; 16])) -> Ordering {
    let raw = a.cmp(&b);
    match order.direction {
        Direction::Asc => raw,
        Direction::Desc => raw.reverse(),
    }
}

fn position_of(order: LeadOrder, lead: &Lead) -> (Key, [u8; 16]) {
    (key(order.field, lead), *lead.id.as_uuid().as_bytes())
}

/// Where `lead` lies relative to `cursor` in the cursor's traversal order.
pub fn position(lead: &Lead, cursor: &Cursor) -> Ordering {
    compare_at(
        cursor.order,
        position_of(cursor.order, lead),
        (key_of_value(&cursor.key), *cursor.id.as_uuid().as_bytes()),
    )
}

/// The cursor a client holds after seeing `lead` in a listing ordered by `order`.
pub fn cursor(order: LeadOrder, lead: &Lead) -> Cursor {
    let key = match order.field {
        SortField::CreatedAt => SortValue::Time(lead.created_at),
        SortField::UpdatedAt => SortValue::Time(lead.updated_at),
        SortField::LastName => SortValue::Text(lead.last_name.clone().unwrap_or_default()),
        SortField::CompanyName => SortValue::Text(lead.company_name.clone().unwrap_or_default()),
        SortField::Score => SortValue::Int(i64::from(lead.score.value())),
    };
    Cursor {
        order,
        key,
        id: lead.id,
    }
}

/// The leads `filter` selects, in `order`.
pub fn select<'a>(leads: &'a [Lead], filter: &LeadFilter, order: LeadOrder) -> Vec<&'a Lead> {
    let mut selected: Vec<&Lead> = leads.iter().filter(|l| matches(filter, l)).collect();
    selected.sort_by(|a, b| compare_at(order, position_of(order, a), position_of(order, b)));
    selected
}

/// A keyset page of an already selected and ordered list: the leads strictly after `after`
/// and strictly before `before`; going forward the first `limit` of them, going backward the
/// last `limit`, in traversal order (the nearest to `before` first).
pub fn page<'a>(
    ordered: &[&'a Lead],
    after: Option<&Cursor>,
    before: Option<&Cursor>,
    limit: usize,
    forward: bool,
) -> Vec<&'a Lead> {
    let window: Vec<&Lead> = ordered
        .iter()
        .copied()
        .filter(|l| after.is_none_or(|c| position(l, c) == Ordering::Greater))
        .filter(|l| before.is_none_or(|c| position(l, c) == Ordering::Less))
        .collect();
    if forward {
        window.into_iter().take(limit).collect()
    } else {
        window.into_iter().rev().take(limit).collect()
    }
}
