//! Workspaces, settings and leads: keyset pages, counts, single writes with their events, upserts
//! by email and bulk loads.
//!
//! A workspace's `lead_count` and `archived_lead_count` move in the transaction of every
//! insert, archive and restore, so an unfiltered `totalCount` is one row read. Each single
//! write appends its event (`store::events`) in the same transaction; bulk loads write none.
//!
//! **Absent names sort as ''**: `last_name` and `company_name` are stored `NOT NULL DEFAULT ''` so
//! that they are ordinary keyset keys; the domain turns '' back into `None`. PostgreSQL text
//! columns that sort use `COLLATE "C"` so both backends order byte for byte alike.
//!
//! **Counts**: `workspaces.lead_count` and `archived_lead_count` are maintained in the same
//! transaction as every insert/archive/restore, so an unfiltered `totalCount` costs one row read —
//! and when the page selects it, that read is a join in the page's own statement
//! (`list_leads_counted`). Filtered counts stop at 10,000 (`totalCountIsExact` says when they
//! did).
//!
//! **Tags** are stored on the lead (JSON) and, for filtering, in `lead_tags` (one row per tag).
//!
//! **Search** matches a lower-cased `search_text` column with `LIKE '%…%'`; it walks the sort
//! index and stops at the page size, so it is cheap for common terms and a scan for rare ones.
//!
//! **Indexes**: one per sort, `(workspace_id, key, id, status, country)` over non-archived leads,
//! so default listings and the common status/country filters are served in order from the index;
//! archived leads have their own small index and are sorted after lookup.

use super::dialect::{Conn, Dialect, Row, Sql};
use super::events::append_events;
use super::sql::{self, TAG_COLUMNS, lead_insert_columns, lead_values, tag_rows};
use super::{LeadCounts, Store, StoreError, StoreResult};
use crate::domain::{
    Cursor, CursorSide as Side, EmailAddress, Event, LEAD_CREATED, Lead, LeadFilter, LeadId, LeadPatch,
    LeadQuery, NewEvent, Timestamp, UpsertOutcome, Workspace, WorkspaceId, WorkspaceSlug,
};
use std::collections::HashMap;

/// Leads appended per bulk statement or COPY message group.
const LOAD_CHUNK: u64 = 20_000;

fn workspace_from_row(r: &Row) -> StoreResult<Workspace> {
    Ok(Workspace {
        id: WorkspaceId::from_uuid(r.get(0)?),
        slug: WorkspaceSlug::from_trusted(r.get(1)?),
        name: r.get(2)?,
        created_at: r.get(3)?,
    })
}

/// Adds to the maintained counts of a workspace.
async fn bump_counts(conn: &mut Conn, ws: WorkspaceId, active: i64, archived: i64) -> StoreResult<()> {
    if active == 0 && archived == 0 {
        return Ok(());
    }
    let mut qb = conn.sql("UPDATE workspaces SET lead_count = lead_count + ");
    qb.bind(active);
    qb.push(", archived_lead_count = archived_lead_count + ");
    qb.bind(archived);
    qb.push(" WHERE id = ");
    qb.bind(ws);
    conn.execute(qb).await.map(drop)
}

/// Inserts leads and their tags within the caller's transaction: COPY on PostgreSQL,
/// multi-row INSERTs on SQLite.
pub(super) async fn append_leads(conn: &mut Conn, leads: &[Lead]) -> StoreResult<()> {
    conn.append_rows("leads", lead_insert_columns(), leads.iter().map(lead_values))
        .await?;
    conn.append_rows("lead_tags", TAG_COLUMNS, tag_rows(leads))
        .await?;
    Ok(())
}

async fn replace_tags(conn: &mut Conn, lead: &Lead) -> StoreResult<()> {
    let mut qb = conn.sql("DELETE FROM lead_tags WHERE lead_id = ");
    qb.bind(lead.id);
    conn.execute(qb).await?;
    conn.append_rows("lead_tags", TAG_COLUMNS, tag_rows([lead]))
        .await?;
    Ok(())
}

/// The compare-and-set update, telling a vanished lead from a stale version.
pub(super) async fn update_one(conn: &mut Conn, lead: &Lead, expected_version: i64) -> StoreResult<()> {
    let changed = conn
        .execute(sql::update_query(conn.dialect(), lead, expected_version))
        .await?;
    if changed == 0 {
        let mut qb = conn.sql("SELECT 1 FROM leads WHERE workspace_id = ");
        qb.bind(lead.workspace_id);
        qb.push(" AND id = ");
        qb.bind(lead.id);
        return Err(if conn.fetch_optional(qb).await?.is_some() {
            StoreError::VersionMismatch
        } else {
            StoreError::NotFound
        });
    }
    replace_tags(conn, lead).await
}

/// Updates at or above which `update_many` stages them and applies one statement.
const STAGED_UPDATES_FROM: usize = 64;

/// Compare-and-set updates of many leads of `ws` (the caller checks that they all belong to it)
/// within the caller's transaction. Few go one by one;
/// more are staged in a temporary table (COPY on PostgreSQL, multi-row INSERTs on SQLite) and
/// applied by one `UPDATE … FROM`, their tags replaced by one DELETE and one append. A lead that
/// changed or vanished since it was read leaves the count short: `VersionMismatch`, and the
/// caller rolls the transaction back.
pub(super) async fn update_many(
    conn: &mut Conn,
    ws: WorkspaceId,
    updates: &[(Lead, i64)],
) -> StoreResult<()> {
    if updates.len() < STAGED_UPDATES_FROM {
        for (lead, expected_version) in updates {
            update_one(conn, lead, *expected_version).await?;
        }
        return Ok(());
    }
    let staged = sql::LEAD_UPDATES;
    conn.execute_text(format!("DROP TABLE IF EXISTS {staged}"))
        .await?;
    conn.execute_text(sql::create_lead_updates()).await?;
    conn.append_rows(
        staged,
        sql::lead_update_columns(),
        updates.iter().map(|(l, v)| sql::lead_update_values(l, *v)),
    )
    .await?;
    if conn.dialect() == Dialect::Postgres {
        // a fresh temporary table has no statistics: without them the join may scan `leads`
        conn.execute_text(format!("ANALYZE {staged}")).await?;
    }
    let changed = conn
        .execute(sql::update_from_staged_query(conn.dialect(), ws))
        .await?;
    if changed != updates.len() as u64 {
        return Err(StoreError::VersionMismatch);
    }
    conn.execute_text(format!(
        "DELETE FROM lead_tags WHERE lead_id IN (SELECT id FROM {staged})"
    ))
    .await?;
    conn.append_rows("lead_tags", TAG_COLUMNS, tag_rows(updates.iter().map(|(l, _)| l)))
        .await?;
    conn.execute_text(format!("DROP TABLE {staged}")).await?;
    Ok(())
}

/// (active, archived) among `leads`.
pub(super) fn counts_of<'l>(leads: impl IntoIterator<Item = &'l Lead>) -> (i64, i64) {
    leads.into_iter().fold((0, 0), |(active, archived), l| {
        if l.archived_at.is_some() {
            (active, archived + 1)
        } else {
            (active + 1, archived)
        }
    })
}

/// Applies `delta` (active, archived) to the counts of `ws` within the caller's transaction.
pub(super) async fn bump(conn: &mut Conn, ws: WorkspaceId, delta: (i64, i64)) -> StoreResult<()> {
    bump_counts(conn, ws, delta.0, delta.1).await
}

impl Store {
    /// Fails with `Conflict { field: "slug" }` when the slug is taken.
    pub async fn create_workspace(&self, ws: &Workspace) -> StoreResult<()> {
        let mut qb = self.sql("INSERT INTO workspaces (id, slug, name, created_at) VALUES (");
        qb.bind(ws.id);
        qb.push(", ");
        qb.bind(ws.slug.as_str());
        qb.push(", ");
        qb.bind(ws.name.clone());
        qb.push(", ");
        qb.bind(ws.created_at);
        qb.push(")");
        self.execute(qb).await.map(drop)
    }

    pub async fn workspace(&self, id: WorkspaceId) -> StoreResult<Option<Workspace>> {
        let mut qb = self.sql("SELECT id, slug, name, created_at FROM workspaces WHERE id = ");
        qb.bind(id);
        self.fetch_optional(qb)
            .await?
            .as_ref()
            .map(workspace_from_row)
            .transpose()
    }

    pub async fn workspace_by_slug(&self, slug: &str) -> StoreResult<Option<Workspace>> {
        let mut qb = self.sql("SELECT id, slug, name, created_at FROM workspaces WHERE slug = ");
        qb.bind(slug);
        self.fetch_optional(qb)
            .await?
            .as_ref()
            .map(workspace_from_row)
            .transpose()
    }

    pub async fn list_workspaces(&self) -> StoreResult<Vec<Workspace>> {
        let qb = self.sql("SELECT id, slug, name, created_at FROM workspaces ORDER BY slug");
        self.fetch_all(qb).await?.iter().map(workspace_from_row).collect()
    }

    pub async fn lead_counts(&self, ws: WorkspaceId) -> StoreResult<LeadCounts> {
        let mut qb = self.sql("SELECT lead_count, archived_lead_count FROM workspaces WHERE id = ");
        qb.bind(ws);
        let Some(row) = self.fetch_optional(qb).await? else {
            return Ok(LeadCounts::default());
        };
        Ok(LeadCounts {
            active: row.count(0)?,
            archived: row.count(1)?,
        })
    }

    pub async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        let mut qb = self.sql("SELECT value FROM settings WHERE key = ");
        qb.bind(key);
        self.fetch_optional(qb).await?.map(|r| r.get(0)).transpose()
    }

    /// Stores `value` unless the key has one already; returns the value that is stored now,
    /// so two processes racing to create a setting agree on the winner.
    pub async fn setting_or_insert(&self, key: &str, value: &str) -> StoreResult<String> {
        let mut conn = self.writer().await?;
        let mut qb = conn.sql("INSERT INTO settings (key, value) VALUES (");
        qb.bind(key);
        qb.push(", ");
        qb.bind(value);
        qb.push(") ON CONFLICT (key) DO NOTHING");
        conn.execute(qb).await?;
        let mut qb = conn.sql("SELECT value FROM settings WHERE key = ");
        qb.bind(key);
        conn.fetch_one(qb).await?.get(0)
    }

    pub async fn lead(&self, ws: WorkspaceId, id: LeadId) -> StoreResult<Option<Lead>> {
        Ok(self.leads_by_ids(ws, &[id]).await?.pop())
    }

    /// The leads among `ids` that exist in `ws`, in no particular order.
    pub async fn leads_by_ids(&self, ws: WorkspaceId, ids: &[LeadId]) -> StoreResult<Vec<Lead>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read_leads(sql::select_in_query(
            self.dialect(),
            ws,
            "l.id",
            ids.iter().copied(),
        ))
        .await
    }

    /// One keyset page: up to `limit + 1` rows in traversal order (reversed for `Backward`),
    /// the extra row telling the caller that more exist.
    pub async fn list_leads(&self, ws: WorkspaceId, query: &LeadQuery) -> StoreResult<Vec<Lead>> {
        self.read_leads(sql::page_query(self.dialect(), ws, query, false))
            .await
    }

    /// `list_leads`, plus the workspace's maintained counts read in the same statement (`None`
    /// when the page is empty).
    pub async fn list_leads_counted(
        &self,
        ws: WorkspaceId,
        query: &LeadQuery,
    ) -> StoreResult<(Vec<Lead>, Option<LeadCounts>)> {
        let (leads, counts) = self
            .read_leads_counted(sql::page_query(self.dialect(), ws, query, true))
            .await?;
        let counts = counts.map(|(active, archived)| LeadCounts {
            active: active.max(0) as u64,
            archived: archived.max(0) as u64,
        });
        Ok((leads, counts))
    }

    /// Whether any lead matching `filter` lies on `side` of `cursor`, the cursor's row included.
    pub async fn any_lead_beside(
        &self,
        ws: WorkspaceId,
        filter: &LeadFilter,
        cursor: &Cursor,
        side: Side,
    ) -> StoreResult<bool> {
        let found = self
            .read_ints(sql::beside_query(self.dialect(), ws, filter, cursor, side))
            .await?;
        Ok(!found.is_empty())
    }

    /// Counts matching leads, stopping at `cap`.
    pub async fn count_leads(&self, ws: WorkspaceId, filter: &LeadFilter, cap: u64) -> StoreResult<u64> {
        let row = self
            .read_ints(sql::count_query(self.dialect(), ws, filter, cap))
            .await?;
        Ok(row.first().copied().unwrap_or_default().max(0) as u64)
    }

    /// Fails with `Conflict { field: "email" }` when the email is taken in the workspace.
    /// Appends the `lead.created` event in the same transaction and returns it.
    pub async fn insert_lead(&self, lead: &Lead) -> StoreResult<Vec<Event>> {
        let mut tx = self.begin().await?;
        append_leads(&mut tx, std::slice::from_ref(lead)).await?;
        bump(&mut tx, lead.workspace_id, counts_of([lead])).await?;
        let events = append_events(&mut tx, &[NewEvent::lead_change(LEAD_CREATED, lead, &[])]).await?;
        tx.commit().await?;
        Ok(events)
    }

    /// Writes `lead` (whose `version` is already the new one) if the stored version is still
    /// `previous.version`; `VersionMismatch` otherwise, `NotFound` when the lead is gone.
    /// Appends the event of the change from `previous` (updated, archived or restored) in the
    /// same transaction and returns it.
    pub async fn update_lead(&self, lead: &Lead, previous: &Lead) -> StoreResult<Vec<Event>> {
        let mut tx = self.begin().await?;
        update_one(&mut tx, lead, previous.version).await?;
        let delta = match (previous.archived_at.is_some(), lead.archived_at.is_some()) {
            (false, true) => (-1, 1),
            (true, false) => (1, -1),
            _ => (0, 0),
        };
        bump(&mut tx, lead.workspace_id, delta).await?;
        let events = append_events(&mut tx, &[NewEvent::lead_transition(previous, lead)]).await?;
        tx.commit().await?;
        Ok(events)
    }

    /// Creates or patches leads by email in one transaction; one outcome per item, in order,
    /// and the events of the leads created or changed.
    pub async fn upsert_leads(
        &self,
        ws: WorkspaceId,
        items: &[(EmailAddress, LeadPatch)],
        at: Timestamp,
    ) -> StoreResult<(Vec<UpsertOutcome>, Vec<Event>)> {
        let mut tx = self.begin().await?;
        let mut known: HashMap<String, Lead> = HashMap::new();
        if !items.is_empty() {
            let emails = items.iter().map(|(e, _)| e.as_str());
            let rows = tx
                .fetch_all(sql::select_in_query(tx.dialect(), ws, "l.email", emails))
                .await?;
            for row in &rows {
                let lead = super::dialect::lead_from_row(row)?;
                if let Some(email) = &lead.email {
                    known.insert(email.as_str().to_owned(), lead.clone());
                }
            }
        }
        let mut outcomes = Vec::with_capacity(items.len());
        let mut created = 0;
        // each updated lead as it was before this upsert, for its event
        let mut previous: HashMap<LeadId, Lead> = HashMap::new();
        for (email, patch) in items {
            match known.get(email.as_str()) {
                Some(existing) => {
                    let mut lead = existing.clone();
                    if lead.apply(patch) {
                        lead.updated_at = at;
                        lead.version = existing.version + 1;
                        update_one(&mut tx, &lead, existing.version).await?;
                        previous.entry(lead.id).or_insert_with(|| existing.clone());
                        known.insert(email.as_str().to_owned(), lead.clone());
                        outcomes.push(UpsertOutcome::Updated(lead));
                    } else {
                        outcomes.push(UpsertOutcome::Unchanged(lead));
                    }
                }
                None => {
                    let mut lead = Lead::new(ws, at);
                    lead.apply(patch);
                    lead.email = Some(email.clone());
                    append_leads(&mut tx, std::slice::from_ref(&lead)).await?;
                    known.insert(email.as_str().to_owned(), lead.clone());
                    created += 1;
                    outcomes.push(UpsertOutcome::Created(lead));
                }
            }
        }
        bump(&mut tx, ws, (created, 0)).await?;
        let events: Vec<NewEvent> = outcomes
            .iter()
            .filter_map(|o| match o {
                UpsertOutcome::Created(lead) => Some(NewEvent::lead_change(LEAD_CREATED, lead, &[])),
                UpsertOutcome::Updated(lead) => Some(NewEvent::lead_transition(&previous[&lead.id], lead)),
                UpsertOutcome::Unchanged(_) => None,
            })
            .collect();
        let events = append_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok((outcomes, events))
    }

    /// Inserts many new leads with bulk statements in one transaction (seed, import). Bulk
    /// paths write no per-lead events.
    pub async fn insert_leads_bulk(&self, ws: WorkspaceId, leads: &[Lead]) -> StoreResult<u64> {
        if leads.iter().any(|l| l.workspace_id != ws) {
            return Err(StoreError::Config("bulk insert mixes workspaces".into()));
        }
        let mut tx = self.begin().await?;
        append_leads(&mut tx, leads).await?;
        bump(&mut tx, ws, counts_of(leads)).await?;
        tx.commit().await?;
        Ok(leads.len() as u64)
    }

    /// Loads `total` new leads into `ws` in one transaction, asking `next_chunk(n)` for up to
    /// `n` leads at a time (an empty chunk ends the load early) and reporting the running
    /// total to `progress`. With `rebuild_indexes` the secondary indexes are dropped first and
    /// rebuilt at the end, several times faster than maintaining them row by row for large
    /// loads (see `REBUILD_INDEXES_FROM`); on PostgreSQL that locks the leads table until the
    /// load commits.
    pub async fn load_leads<F, P>(
        &self,
        ws: WorkspaceId,
        total: u64,
        rebuild_indexes: bool,
        mut next_chunk: F,
        mut progress: P,
    ) -> StoreResult<u64>
    where
        F: FnMut(usize) -> Vec<Lead> + Send,
        P: FnMut(u64) + Send,
    {
        let mut tx = self.begin().await?;
        let rebuild = if rebuild_indexes {
            tx.drop_secondary_indexes(&["leads", "lead_tags"]).await?
        } else {
            Vec::new()
        };
        let (mut done, mut active, mut archived) = (0u64, 0i64, 0i64);
        while done < total {
            let chunk = next_chunk((total - done).min(LOAD_CHUNK) as usize);
            if chunk.is_empty() {
                break;
            }
            if chunk.iter().any(|l| l.workspace_id != ws) {
                return Err(StoreError::Config("bulk load mixes workspaces".into()));
            }
            append_leads(&mut tx, &chunk).await?;
            let (a, r) = counts_of(&chunk);
            active += a;
            archived += r;
            done += chunk.len() as u64;
            progress(done);
        }
        tx.rebuild_indexes(rebuild).await?;
        bump(&mut tx, ws, (active, archived)).await?;
        tx.commit().await?;
        Ok(done)
    }
}

/// `SELECT <lead columns> FROM leads l WHERE l.workspace_id = ws AND <column> IN (values)`
/// within a transaction (imports and erasure read what they then write).
pub(super) async fn leads_in(conn: &mut Conn, query: Sql) -> StoreResult<Vec<Lead>> {
    conn.fetch_all(query)
        .await?
        .iter()
        .map(super::dialect::lead_from_row)
        .collect()
}
