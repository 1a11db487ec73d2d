//! SQL written once for both backends: the lead column list, filters and keyset conditions.
//!
//! Values are always bound, never formatted into SQL; the few type differences (timestamps as
//! microseconds on SQLite, `timestamptz` on PostgreSQL) sit behind `SqlBuilder`.

use super::Side;
use crate::domain::{
    ArchivedFilter, Cursor, Direction, Lead, LeadFilter, LeadQuery, PageDirection, SortField, SortValue,
    TagMatch, Timestamp, WorkspaceId,
};
use uuid::Uuid;

/// Where the shared SQL is written: a statement under construction that takes SQL text and
/// bound values. Implemented by sqlx's `QueryBuilder` for each backend (which differ in how
/// timestamps are stored) and by the SQLite read path's own statement type.
pub(crate) trait SqlBuilder: Sized {
    fn new(init: impl Into<String>) -> Self;
    fn push(&mut self, sql: impl std::fmt::Display) -> &mut Self;
    fn push_opt_text(&mut self, v: Option<String>);
    fn push_uuid(&mut self, v: Uuid);
    fn push_text(&mut self, v: String);
    fn push_int(&mut self, v: i64);
    fn push_time(&mut self, v: Timestamp);
    /// An SQL NULL where a value is expected.
    fn push_null(&mut self) {
        self.push("NULL");
    }
}

/// `SqlBuilder` for a backend's sqlx `QueryBuilder`; `$time` turns a timestamp into the
/// value that backend stores.
macro_rules! query_builder_impl {
    ($db:ty, |$t:ident| $time:expr) => {
        impl $crate::store::sql::SqlBuilder for sqlx::QueryBuilder<$db> {
            fn new(init: impl Into<String>) -> Self {
                sqlx::QueryBuilder::new(init)
            }
            fn push(&mut self, sql: impl std::fmt::Display) -> &mut Self {
                sqlx::QueryBuilder::push(self, sql)
            }
            fn push_opt_text(&mut self, v: Option<String>) {
                self.push_bind(v);
            }
            fn push_uuid(&mut self, v: uuid::Uuid) {
                self.push_bind(v);
            }
            fn push_text(&mut self, v: String) {
                self.push_bind(v);
            }
            fn push_int(&mut self, v: i64) {
                self.push_bind(v);
            }
            fn push_time(&mut self, $t: $crate::domain::Timestamp) {
                self.push_bind($time);
            }
        }
    };
}
pub(crate) use query_builder_impl;

/// Columns of `leads` in the order the backends decode them.
pub(crate) const LEAD_COLUMNS: &str = "l.id, l.workspace_id, l.email, l.first_name, l.last_name, \
    l.title, l.company_name, l.company_domain, l.phone, l.linkedin_url, l.country, l.source, \
    l.status, l.owner, l.score, l.tags, l.custom_fields, l.created_at, l.updated_at, \
    l.archived_at, l.version";

pub(crate) fn sort_column(field: SortField) -> &'static str {
    match field {
        SortField::CreatedAt => "l.created_at",
        SortField::UpdatedAt => "l.updated_at",
        SortField::LastName => "l.last_name",
        SortField::CompanyName => "l.company_name",
        SortField::Score => "l.score",
    }
}

fn push_sort_value<B: SqlBuilder>(qb: &mut B, v: &SortValue) {
    match v {
        SortValue::Time(t) => qb.push_time(*t),
        SortValue::Text(s) => qb.push_text(s.clone()),
        SortValue::Int(i) => qb.push_int(*i),
    }
}

fn push_in_list<B: SqlBuilder>(qb: &mut B, column: &str, values: &[String]) {
    qb.push(" AND ").push(column).push(" IN (");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            qb.push(", ");
        }
        qb.push_text(v.clone());
    }
    qb.push(")");
}

/// Appends `WHERE l.workspace_id = … AND <filter>` for the table aliased `l`.
pub(crate) fn push_where<B: SqlBuilder>(qb: &mut B, ws: WorkspaceId, filter: &LeadFilter) {
    qb.push(" WHERE l.workspace_id = ");
    qb.push_uuid(ws.as_uuid());
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
        qb.push_int(i64::from(min.value()));
    }
    if let Some(max) = filter.score_max {
        qb.push(" AND l.score <= ");
        qb.push_int(i64::from(max.value()));
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
            qb.push_time(t);
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
        qb.push_text(format!("%{}%", escape_like(search)));
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
                qb.push_uuid(ws.as_uuid());
                push_in_list(qb, "t.tag", &tags);
                qb.push(")");
            }
            TagMatch::All => {
                qb.push(" AND (SELECT count(*) FROM lead_tags t WHERE t.workspace_id = ");
                qb.push_uuid(ws.as_uuid());
                qb.push(" AND t.lead_id = l.id");
                push_in_list(qb, "t.tag", &tags);
                qb.push(") = ");
                qb.push_int(tags.len() as i64);
            }
        }
    }
}

/// `AND (key, id) <op> (…, …)`: the row-value comparison both databases serve from the sort
/// index.
fn push_keyset<B: SqlBuilder>(qb: &mut B, field: SortField, op: &str, cursor: &Cursor) {
    qb.push(" AND (")
        .push(sort_column(field))
        .push(", l.id) ")
        .push(op)
        .push(" (");
    push_sort_value(qb, &cursor.key);
    qb.push(", ");
    qb.push_uuid(cursor.id.as_uuid());
    qb.push(")");
}

/// `SELECT … FROM leads l WHERE … ORDER BY … LIMIT limit + 1` for one keyset page.
/// With `with_counts`, each row also carries the workspace's maintained counts (columns 21
/// and 22), so a page that shows `totalCount` needs no second round trip.
pub(crate) fn page_query<B: SqlBuilder>(ws: WorkspaceId, q: &LeadQuery, with_counts: bool) -> B {
    let mut qb = B::new(if with_counts {
        format!(
            "SELECT {LEAD_COLUMNS}, w.lead_count, w.archived_lead_count \
             FROM leads l JOIN workspaces w ON w.id = l.workspace_id"
        )
    } else {
        format!("SELECT {LEAD_COLUMNS} FROM leads l")
    });
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
    qb.push_int(q.limit as i64 + 1);
    qb
}

/// `SELECT 1 … LIMIT 1` for a lead at or on one side of a cursor.
pub(crate) fn beside_query<B: SqlBuilder>(
    ws: WorkspaceId,
    filter: &LeadFilter,
    cursor: &Cursor,
    side: Side,
) -> B {
    let mut qb = B::new("SELECT 1 FROM leads l");
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
pub(crate) fn count_query<B: SqlBuilder>(ws: WorkspaceId, filter: &LeadFilter, cap: u64) -> B {
    let mut qb = B::new("SELECT count(*) FROM (SELECT 1 FROM leads l");
    push_where(&mut qb, ws, filter);
    qb.push(" LIMIT ");
    qb.push_int(i64::try_from(cap).unwrap_or(i64::MAX));
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

/// Stored form of tags: a JSON array of strings.
pub(crate) fn tags_json(lead: &Lead) -> String {
    serde_json::to_string(&lead.tags.as_strs()).unwrap_or_else(|_| "[]".into())
}

/// Number of lead columns written by `INSERT`, for sizing multi-row statements.
pub(crate) const INSERT_COLUMNS: usize = 22;

/// The column list for `INSERT INTO leads`.
macro_rules! insert_columns {
    () => {
        "id, workspace_id, email, first_name, last_name, title, company_name, company_domain, \
         phone, linkedin_url, country, source, status, owner, score, tags, custom_fields, \
         search_text, created_at, updated_at, archived_at, version"
    };
}

/// `INSERT INTO leads (…) ` in the column order of `push_lead_values`.
pub(crate) const INSERT_LEAD: &str = concat!("INSERT INTO leads (", insert_columns!(), ") ");

/// `COPY leads (…) FROM STDIN` in the column order of `push_lead_values` (PostgreSQL).
pub(crate) const COPY_LEADS: &str = concat!("COPY leads (", insert_columns!(), ") FROM STDIN");

/// Binds one lead's values in `INSERT_LEAD` column order.
pub(crate) fn push_lead_values<B: SqlBuilder>(qb: &mut B, lead: &Lead) {
    let opt = |v: Option<&str>| v.map(str::to_owned);
    qb.push("(");
    qb.push_uuid(lead.id.as_uuid());
    qb.push(", ");
    qb.push_uuid(lead.workspace_id.as_uuid());
    let texts: [Option<String>; 10] = [
        opt(lead.email.as_ref().map(|v| v.as_str())),
        lead.first_name.clone(),
        Some(lead.last_name.clone().unwrap_or_default()),
        lead.title.clone(),
        Some(lead.company_name.clone().unwrap_or_default()),
        opt(lead.company_domain.as_ref().map(|v| v.as_str())),
        opt(lead.phone.as_ref().map(|v| v.as_str())),
        opt(lead.linkedin_url.as_ref().map(|v| v.as_str())),
        opt(lead.country.as_ref().map(|v| v.as_str())),
        lead.source.clone(),
    ];
    for t in texts {
        qb.push(", ");
        qb.push_opt_text(t);
    }
    qb.push(", ");
    qb.push_text(lead.status.as_str().to_owned());
    qb.push(", ");
    qb.push_opt_text(lead.owner.clone());
    qb.push(", ");
    qb.push_int(i64::from(lead.score.value()));
    qb.push(", ");
    qb.push_text(tags_json(lead));
    qb.push(", ");
    qb.push_text(lead.custom_fields.to_json_string());
    qb.push(", ");
    qb.push_text(lead.search_text());
    qb.push(", ");
    qb.push_time(lead.created_at);
    qb.push(", ");
    qb.push_time(lead.updated_at);
    qb.push(", ");
    match lead.archived_at {
        Some(t) => qb.push_time(t),
        None => qb.push_null(),
    }
    qb.push(", ");
    qb.push_int(lead.version);
    qb.push(")");
}

/// `UPDATE leads SET … WHERE workspace_id, id and version match`: a compare-and-set write.
pub(crate) fn update_query<B: SqlBuilder>(lead: &Lead, expected_version: i64) -> B {
    let mut qb = B::new("UPDATE leads SET ");
    let texts: [(&str, Option<String>); 11] = [
        ("email", lead.email.as_ref().map(|v| v.as_str().to_owned())),
        ("first_name", lead.first_name.clone()),
        ("last_name", Some(lead.last_name.clone().unwrap_or_default())),
        ("title", lead.title.clone()),
        (
            "company_name",
            Some(lead.company_name.clone().unwrap_or_default()),
        ),
        (
            "company_domain",
            lead.company_domain.as_ref().map(|v| v.as_str().to_owned()),
        ),
        ("phone", lead.phone.as_ref().map(|v| v.as_str().to_owned())),
        (
            "linkedin_url",
            lead.linkedin_url.as_ref().map(|v| v.as_str().to_owned()),
        ),
        ("country", lead.country.as_ref().map(|v| v.as_str().to_owned())),
        ("source", lead.source.clone()),
        ("owner", lead.owner.clone()),
    ];
    for (column, value) in texts {
        qb.push(column).push(" = ");
        qb.push_opt_text(value);
        qb.push(", ");
    }
    qb.push("status = ");
    qb.push_text(lead.status.as_str().to_owned());
    qb.push(", score = ");
    qb.push_int(i64::from(lead.score.value()));
    qb.push(", tags = ");
    qb.push_text(tags_json(lead));
    qb.push(", custom_fields = ");
    qb.push_text(lead.custom_fields.to_json_string());
    qb.push(", search_text = ");
    qb.push_text(lead.search_text());
    qb.push(", updated_at = ");
    qb.push_time(lead.updated_at);
    qb.push(", archived_at = ");
    match lead.archived_at {
        Some(t) => qb.push_time(t),
        None => {
            qb.push("NULL");
        }
    }
    qb.push(", version = ");
    qb.push_int(lead.version);
    qb.push(" WHERE workspace_id = ");
    qb.push_uuid(lead.workspace_id.as_uuid());
    qb.push(" AND id = ");
    qb.push_uuid(lead.id.as_uuid());
    qb.push(" AND version = ");
    qb.push_int(expected_version);
    qb
}

/// One row of `lead_tags`.
pub(crate) struct TagRow {
    pub workspace_id: Uuid,
    pub tag: String,
    pub lead_id: Uuid,
}

/// The tag rows of some leads.
pub(crate) fn tag_rows<'l>(leads: impl IntoIterator<Item = &'l Lead>) -> Vec<TagRow> {
    leads
        .into_iter()
        .flat_map(|l| {
            l.tags.iter().map(|t| TagRow {
                workspace_id: l.workspace_id.as_uuid(),
                tag: t.as_str().to_owned(),
                lead_id: l.id.as_uuid(),
            })
        })
        .collect()
}

/// Tag rows per multi-row `INSERT INTO lead_tags`.
pub(crate) const TAG_CHUNK: usize = 10_000;

/// `INSERT INTO lead_tags … VALUES (…), (…)` for a non-empty chunk of rows.
pub(crate) fn insert_tags_query<B: SqlBuilder>(rows: &[TagRow]) -> B {
    let mut qb = B::new("INSERT INTO lead_tags (workspace_id, tag, lead_id) VALUES ");
    for (i, row) in rows.iter().enumerate() {
        qb.push(if i == 0 { "(" } else { ", (" });
        qb.push_uuid(row.workspace_id);
        qb.push(", ");
        qb.push_text(row.tag.clone());
        qb.push(", ");
        qb.push_uuid(row.lead_id);
        qb.push(")");
    }
    qb
}

/// `SELECT … WHERE workspace_id = … AND <column> IN (…)` for lookups by id or email.
pub(crate) fn select_in_query<B: SqlBuilder>(
    ws: WorkspaceId,
    column: &str,
    values: impl Iterator<Item = KeyValue>,
) -> B {
    let mut qb = B::new(format!(
        "SELECT {LEAD_COLUMNS} FROM leads l WHERE l.workspace_id = "
    ));
    qb.push_uuid(ws.as_uuid());
    qb.push(" AND ").push(column).push(" IN (");
    for (i, v) in values.enumerate() {
        if i > 0 {
            qb.push(", ");
        }
        match v {
            KeyValue::Uuid(u) => qb.push_uuid(u),
            KeyValue::Text(t) => qb.push_text(t),
        }
    }
    qb.push(")");
    qb
}

/// Ends a `… WHERE workspace_id = ` statement over a table keyed by time-ordered UUIDs: the
/// workspace's rows older than `before`, newest first, at most `limit`.
pub(crate) fn push_newest_first<B: SqlBuilder>(
    qb: &mut B,
    ws: WorkspaceId,
    before: Option<Uuid>,
    limit: u32,
) {
    qb.push_uuid(ws.as_uuid());
    if let Some(before) = before {
        qb.push(" AND id < ");
        qb.push_uuid(before);
    }
    qb.push(" ORDER BY id DESC LIMIT ");
    qb.push_int(i64::from(limit));
}

/// A lookup key for `select_in_query`.
pub(crate) enum KeyValue {
    Uuid(Uuid),
    Text(String),
}

/// Leads per multi-row `INSERT`: stays under SQLite's 32,766 bound parameters.
pub(crate) const BULK_CHUNK: usize = 32_000 / INSERT_COLUMNS;

/// A lead row as read, before conversion to the domain type; each backend fills it from its
/// own row type.
pub(crate) struct LeadRow {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: String,
    pub title: Option<String>,
    pub company_name: String,
    pub company_domain: Option<String>,
    pub phone: Option<String>,
    pub linkedin_url: Option<String>,
    pub country: Option<String>,
    pub source: Option<String>,
    pub status: String,
    pub owner: Option<String>,
    pub score: i64,
    pub tags: String,
    pub custom_fields: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub archived_at: Option<Timestamp>,
    pub version: i64,
}

impl LeadRow {
    pub(crate) fn into_lead(self) -> Result<Lead, sqlx::Error> {
        use crate::domain::{
            CountryCode, CustomFields, Domain, EmailAddress, LeadId, LeadStatus, LinkedInUrl, Phone, Score,
            Tags,
        };
        let corrupt = |what: &str| sqlx::Error::Decode(format!("corrupt {what} in lead {}", self.id).into());
        let tags: Vec<String> = serde_json::from_str(&self.tags).map_err(|_| corrupt("tags"))?;
        let custom_fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&self.custom_fields).map_err(|_| corrupt("custom_fields"))?;
        let status = LeadStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?;
        let non_empty = |s: String| (!s.is_empty()).then_some(s);
        Ok(Lead {
            id: LeadId::from_uuid(self.id),
            workspace_id: WorkspaceId::from_uuid(self.workspace_id),
            email: self.email.map(EmailAddress::from_trusted),
            first_name: self.first_name,
            last_name: non_empty(self.last_name),
            title: self.title,
            company_name: non_empty(self.company_name),
            company_domain: self.company_domain.map(Domain::from_trusted),
            phone: self.phone.map(Phone::from_trusted),
            linkedin_url: self.linkedin_url.map(LinkedInUrl::from_trusted),
            country: self.country.map(CountryCode::from_trusted),
            source: self.source,
            status,
            owner: self.owner,
            score: Score::from_trusted(self.score),
            tags: Tags::from_trusted(tags),
            custom_fields: CustomFields::from_trusted(custom_fields),
            created_at: self.created_at,
            updated_at: self.updated_at,
            archived_at: self.archived_at,
            version: self.version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_metacharacters_are_escaped() {
        assert_eq!(escape_like(r"50%_a\b"), r"50\%\_a\\b");
    }
}
