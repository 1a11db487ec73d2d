//! Lead SQL written once for both backends: the column lists (from `domain::LEAD_COLUMNS`),
//! filters, keyset conditions and the statements built from them.
//!
//! Values are always bound, never formatted into SQL; how each backend binds and stores them
//! is `dialect`'s business.

use super::dialect::{Dialect, Sql};
use crate::domain::{
    ArchivedFilter, Cursor, CursorSide as Side, Direction, LEAD_COLUMNS, Lead, LeadColumn, LeadFilter,
    LeadQuery, PageDirection, SortField, SortValue, TagMatch, Value, WorkspaceId, read_columns,
};
use std::sync::LazyLock;

/// `l.id, l.workspace_id, …`: the columns `dialect::lead_from_row` reads, in order.
pub(crate) fn lead_select() -> &'static str {
    static SELECT: LazyLock<String> = LazyLock::new(|| {
        read_columns()
            .map(|c| format!("l.{}", c.name))
            .collect::<Vec<_>>()
            .join(", ")
    });
    &SELECT
}

/// Every column of `leads` (derived ones included), as INSERT and COPY write them.
pub(crate) fn lead_insert_columns() -> &'static [&'static str] {
    static COLUMNS: LazyLock<Vec<&'static str>> =
        LazyLock::new(|| LEAD_COLUMNS.iter().map(|c| c.name).collect());
    &COLUMNS
}

/// One lead's stored values in `lead_insert_columns()` order.
pub(crate) fn lead_values(lead: &Lead) -> Vec<Value> {
    LEAD_COLUMNS.iter().map(|c| c.stored(lead)).collect()
}

pub(crate) fn sort_column(field: SortField) -> &'static str {
    match field {
        SortField::CreatedAt => "l.created_at",
        SortField::UpdatedAt => "l.updated_at",
        SortField::LastName => "l.last_name",
        SortField::CompanyName => "l.company_name",
        SortField::Score => "l.score",
    }
}

fn push_sort_value(qb: &mut Sql, v: &SortValue) {
    match v {
        SortValue::Time(t) => qb.bind(*t),
        SortValue::Text(s) => qb.bind(s.clone()),
        SortValue::Int(i) => qb.bind(*i),
    };
}

fn push_in_list(qb: &mut Sql, column: &str, values: &[String]) {
    qb.push(" AND ").push(column).push(" IN (");
    qb.bind_list(values.iter().map(String::as_str));
    qb.push(")");
}

/// Appends `WHERE l.workspace_id = … AND <filter>` for the table aliased `l`.
pub(crate) fn push_where(qb: &mut Sql, ws: WorkspaceId, filter: &LeadFilter) {
    qb.push(" WHERE l.workspace_id = ");
    qb.bind(ws);
    qb.push(match filter.archived {
        ArchivedFilter::Exclude => " AND l.archived_at IS NULL",
        ArchivedFilter::Only => " AND l.archived_at IS NOT NULL",
    });
    if !filter.statuses.is_empty() {
        let statuses: Vec<String> = filter.statuses.iter().map(|s| s.as_str().to_owned()).collect();
        push_in_list(qb, "l.status", &statuses);
    }
    if !filter.owners.is_empty() {
        push_in_list(qb, "l.owner", &filter.owners);
    }
    if !filter.countries.is_empty() {
        let countries: Vec<String> = filter.countries.iter().map(|c| c.as_str().to_owned()).collect();
        push_in_list(qb, "l.country", &countries);
    }
    if !filter.sources.is_empty() {
        push_in_list(qb, "l.source", &filter.sources);
    }
    if let Some(min) = filter.score_min {
        qb.push(" AND l.score >= ");
        qb.bind(i64::from(min.value()));
    }
    if let Some(max) = filter.score_max {
        qb.push(" AND l.score <= ");
        qb.bind(i64::from(max.value()));
    }
    let ranges = [
        ("l.created_at >= ", filter.created_from),
        ("l.created_at < ", filter.created_to),
        ("l.updated_at >= ", filter.updated_from),
        ("l.updated_at < ", filter.updated_to),
    ];
    for (cond, bound) in ranges {
        if let Some(t) = bound {
            qb.push(" AND ").push(cond);
            qb.bind(t);
        }
    }
    match filter.has_email {
        Some(true) => {
            qb.push(" AND l.email IS NOT NULL");
        }
        Some(false) => {
            qb.push(" AND l.email IS NULL");
        }
        None => {}
    }
    if let Some(search) = &filter.search {
        qb.push(" AND l.search_text LIKE ");
        qb.bind(format!("%{}%", escape_like(search)));
        qb.push(" ESCAPE '\\'");
    }
    if let Some((mode, tags)) = filter.tags.as_ref().filter(|(_, tags)| !tags.is_empty()) {
        let mut tags: Vec<String> = tags.iter().map(|t| t.as_str().to_owned()).collect();
        // `All` compares the number of matching tag rows with the number of distinct tags
        tags.sort();
        tags.dedup();
        match mode {
            TagMatch::Any => {
                qb.push(" AND l.id IN (SELECT t.lead_id FROM lead_tags t WHERE t.workspace_id = ");
                qb.bind(ws);
                push_in_list(qb, "t.tag", &tags);
                qb.push(")");
            }
            TagMatch::All => {
                qb.push(" AND (SELECT count(*) FROM lead_tags t WHERE t.workspace_id = ");
                qb.bind(ws);
                qb.push(" AND t.lead_id = l.id");
                push_in_list(qb, "t.tag", &tags);
                qb.push(") = ");
                qb.bind(tags.len() as i64);
            }
        }
    }
}

/// `AND (key, id) <op> (…, …)`: the row-value comparison both databases serve from the sort
/// index.
fn push_keyset(qb: &mut Sql, field: SortField, op: &str, cursor: &Cursor) {
    qb.push(" AND (")
        .push(sort_column(field))
        .push(", l.id) ")
        .push(op)
        .push(" (");
    push_sort_value(qb, &cursor.key);
    qb.push(", ");
    qb.bind(cursor.id);
    qb.push(")");
}

/// `SELECT … FROM leads l WHERE … ORDER BY … LIMIT limit + 1` for one keyset page.
/// With `with_counts`, each row also carries the workspace's maintained counts (columns 21
/// and 22), so a page that shows `totalCount` needs no second round trip. They are scalar
/// subqueries, not a join: with a join SQLite's planner may put `workspaces` outside and then
/// read and sort every lead of the workspace for a page of 50.
pub(crate) fn page_query(dialect: Dialect, ws: WorkspaceId, q: &LeadQuery, with_counts: bool) -> Sql {
    let select = lead_select();
    let mut qb = Sql::new(
        dialect,
        if with_counts {
            format!(
                "SELECT {select}, \
                 (SELECT w.lead_count FROM workspaces w WHERE w.id = l.workspace_id), \
                 (SELECT w.archived_lead_count FROM workspaces w WHERE w.id = l.workspace_id) \
                 FROM leads l"
            )
        } else {
            format!("SELECT {select} FROM leads l")
        },
    );
    push_where(&mut qb, ws, &q.filter);
    let asc = q.order.direction == Direction::Asc;
    // "after" means later in sort order: greater when ascending, smaller when descending.
    let (after_op, before_op) = if asc { (">", "<") } else { ("<", ">") };
    if let Some(c) = &q.after {
        push_keyset(&mut qb, q.order.field, after_op, c);
    }
    if let Some(c) = &q.before {
        push_keyset(&mut qb, q.order.field, before_op, c);
    }
    // A backward page reads from the end of the window, i.e. in reverse order.
    let read_asc = asc == (q.direction == PageDirection::Forward);
    let dir = if read_asc { " ASC" } else { " DESC" };
    qb.push(" ORDER BY ")
        .push(sort_column(q.order.field))
        .push(dir)
        .push(", l.id")
        .push(dir)
        .push(" LIMIT ");
    qb.bind(q.limit as i64 + 1);
    qb
}

/// `SELECT 1 … LIMIT 1` for a lead at or on one side of a cursor.
pub(crate) fn beside_query(
    dialect: Dialect,
    ws: WorkspaceId,
    filter: &LeadFilter,
    cursor: &Cursor,
    side: Side,
) -> Sql {
    let mut qb = Sql::new(dialect, "SELECT 1 FROM leads l");
    push_where(&mut qb, ws, filter);
    let asc = cursor.order.direction == Direction::Asc;
    let op = match (side, asc) {
        (Side::AtOrBefore, true) | (Side::AtOrAfter, false) => "<=",
        (Side::AtOrAfter, true) | (Side::AtOrBefore, false) => ">=",
    };
    push_keyset(&mut qb, cursor.order.field, op, cursor);
    qb.push(" LIMIT 1");
    qb
}

/// `SELECT count(*) FROM (SELECT 1 … LIMIT cap)`: a count that stops at `cap`.
pub(crate) fn count_query(dialect: Dialect, ws: WorkspaceId, filter: &LeadFilter, cap: u64) -> Sql {
    let mut qb = Sql::new(dialect, "SELECT count(*) FROM (SELECT 1 FROM leads l");
    push_where(&mut qb, ws, filter);
    qb.push(" LIMIT ");
    qb.bind(i64::try_from(cap).unwrap_or(i64::MAX));
    qb.push(") AS capped");
    qb
}

/// Escapes `%`, `_` and the escape character itself for a LIKE pattern.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `UPDATE leads SET … WHERE workspace_id, id and version match`: a compare-and-set write of
/// every column but the id, the tenant and the creation time.
/// The columns an update writes.
fn updated_columns() -> impl Iterator<Item = &'static LeadColumn> {
    LEAD_COLUMNS.iter().filter(|c| c.is_updated())
}

pub(crate) fn update_query(dialect: Dialect, lead: &Lead, expected_version: i64) -> Sql {
    let mut qb = Sql::new(dialect, "UPDATE leads SET ");
    for (i, column) in updated_columns().enumerate() {
        if i > 0 {
            qb.push(", ");
        }
        qb.push(column.name).push(" = ");
        qb.bind(column.stored(lead));
    }
    qb.push(" WHERE workspace_id = ");
    qb.bind(lead.workspace_id);
    qb.push(" AND id = ");
    qb.bind(lead.id);
    qb.push(" AND version = ");
    qb.bind(expected_version);
    qb
}

/// The temporary table of `update_many`: a lead's id, its updated columns and the version
/// the update expects.
pub(crate) const LEAD_UPDATES: &str = "lead_updates";

/// The columns of `LEAD_UPDATES` in the order of `lead_update_values`.
pub(crate) fn lead_update_columns() -> &'static [&'static str] {
    static COLUMNS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
        std::iter::once("id")
            .chain(updated_columns().map(|c| c.name))
            .chain(std::iter::once("expected_version"))
            .collect()
    });
    &COLUMNS
}

/// One compare-and-set update as a row of `LEAD_UPDATES`.
pub(crate) fn lead_update_values(lead: &Lead, expected_version: i64) -> Vec<Value> {
    std::iter::once(lead.id.into())
        .chain(updated_columns().map(|c| c.stored(lead)))
        .chain(std::iter::once(Value::Integer(expected_version)))
        .collect()
}

/// `CREATE TEMP TABLE lead_updates …` with the types of the columns it copies.
pub(crate) fn create_lead_updates() -> String {
    let columns = lead_update_columns();
    // every column but the last, `expected_version`, which is the lead's `version`
    format!(
        "CREATE TEMP TABLE {LEAD_UPDATES} AS SELECT {}, version AS expected_version FROM leads WHERE 1 = 0",
        columns[..columns.len() - 1].join(", ")
    )
}

/// One `UPDATE … FROM lead_updates` applying every staged update whose version still matches.
pub(crate) fn update_from_staged_query(dialect: Dialect, ws: WorkspaceId) -> Sql {
    let mut qb = Sql::new(dialect, "UPDATE leads SET ");
    for (i, column) in updated_columns().enumerate() {
        if i > 0 {
            qb.push(", ");
        }
        qb.push(column.name).push(" = u.").push(column.name);
    }
    qb.push(" FROM ")
        .push(LEAD_UPDATES)
        .push(" AS u WHERE leads.id = u.id AND leads.workspace_id = ");
    qb.bind(ws);
    qb.push(" AND leads.version = u.expected_version");
    qb
}

/// The columns of `lead_tags`.
pub(crate) const TAG_COLUMNS: &[&str] = &["workspace_id", "tag", "lead_id"];

/// The `lead_tags` rows of some leads.
pub(crate) fn tag_rows<'l>(leads: impl IntoIterator<Item = &'l Lead>) -> Vec<Vec<Value>> {
    leads
        .into_iter()
        .flat_map(|l| {
            l.tags.iter().map(|t| {
                vec![
                    l.workspace_id.into(),
                    Value::Text(t.as_str().to_owned()),
                    l.id.into(),
                ]
            })
        })
        .collect()
}

/// `SELECT … WHERE workspace_id = … AND <column> IN (…)` for lookups by id or email.
pub(crate) fn select_in_query<V: Into<Value>>(
    dialect: Dialect,
    ws: WorkspaceId,
    column: &str,
    values: impl IntoIterator<Item = V>,
) -> Sql {
    let mut qb = Sql::new(
        dialect,
        format!("SELECT {} FROM leads l WHERE l.workspace_id = ", lead_select()),
    );
    qb.bind(ws);
    qb.push(" AND ").push(column).push(" IN (");
    qb.bind_list(values);
    qb.push(")");
    qb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_metacharacters_are_escaped() {
        assert_eq!(escape_like(r"50%_a\b"), r"50\%\_a\\b");
    }
}
