//! Retention policies, the record of each run, and the bounded batches a run is made of. Rows a
//! batch reads and then changes are locked for the rest of its transaction
//! (`Dialect::for_update`: PostgreSQL `FOR UPDATE`; SQLite's single writer needs none).
//!
//! Each batch is one short transaction over at most `limit` leads (or records, or events), so a
//! run never holds the writer for long; the counts and the `lead.archived` events are written in
//! the batch's own transaction.

use super::dialect::{Row, Sql};
use super::events::append_events;
use super::keyset::KeyOrder;
use super::leads::{bump, leads_in};
use super::sql::lead_select;
use super::{Store, StoreError, StoreResult};
use crate::domain::{
    Cutoffs, Event, KeysetPage, LEAD_ARCHIVED, Lead, NewEvent, Paged, RetentionCounts, RetentionDays,
    RetentionPolicy, RetentionRun, RetentionRunId, RunTrigger, Timestamp, WorkspaceId,
};

const RUN_COLUMNS: &str = "SELECT id, workspace_id, trigger_kind, dry_run, started_at, finished_at, \
     archived, deleted, enrichment_compacted, events_compacted, error FROM retention_runs WHERE ";

fn count(v: i64) -> u64 {
    v.max(0) as u64
}

fn days(v: Option<i64>) -> Option<RetentionDays> {
    v.map(RetentionDays::from_trusted)
}

fn run_from_row(r: &Row) -> StoreResult<RetentionRun> {
    let trigger: String = r.get(2)?;
    Ok(RetentionRun {
        id: RetentionRunId::from_uuid(r.get(0)?),
        workspace_id: WorkspaceId::from_uuid(r.get(1)?),
        trigger: RunTrigger::parse(&trigger)
            .ok_or_else(|| StoreError::corrupt(format!("unknown trigger {trigger}")))?,
        dry_run: r.get::<i64>(3)? != 0,
        started_at: r.get(4)?,
        finished_at: r.get(5)?,
        counts: RetentionCounts {
            archived: count(r.get(6)?),
            deleted: count(r.get(7)?),
            enrichment_compacted: count(r.get(8)?),
            events_compacted: count(r.get(9)?),
        },
        error: r.get(10)?,
    })
}

fn policy_from_row(r: &Row, first: usize) -> StoreResult<RetentionPolicy> {
    Ok(RetentionPolicy {
        archive_after_days: days(r.get(first)?),
        delete_archived_after_days: days(r.get(first + 1)?),
        compact_enrichment: r.get::<i64>(first + 2)? != 0,
        event_ttl_days: days(r.get(first + 3)?),
    })
}

fn push_opt_days(qb: &mut Sql, d: Option<RetentionDays>) {
    qb.bind(d.map(|d| i64::from(d.get())));
}

/// `AND <leads of ws that are active and untouched since before `before`>`.
fn push_stale(qb: &mut Sql, ws: WorkspaceId, before: Timestamp) {
    qb.push("l.workspace_id = ");
    qb.bind(ws);
    qb.push(" AND l.archived_at IS NULL AND l.updated_at < ");
    qb.bind(before);
}

fn push_expired_archive(qb: &mut Sql, ws: WorkspaceId, before: Timestamp) {
    qb.push("l.workspace_id = ");
    qb.bind(ws);
    qb.push(" AND l.archived_at IS NOT NULL AND l.archived_at < ");
    qb.bind(before);
}

fn push_uuid_list(qb: &mut Sql, ids: &[uuid::Uuid]) {
    qb.push("(");
    qb.bind_list(ids.iter().copied());
    qb.push(")");
}

impl Store {
    pub async fn retention_policy(&self, ws: WorkspaceId) -> StoreResult<Option<RetentionPolicy>> {
        let mut qb = self.sql(
            "SELECT archive_after_days, delete_archived_after_days, compact_enrichment, event_ttl_days \
             FROM retention_policies WHERE workspace_id = ",
        );
        qb.bind(ws);
        let row = self.fetch_optional(qb).await?;
        row.map(|r| policy_from_row(&r, 0)).transpose()
    }

    pub async fn save_retention_policy(
        &self,
        ws: WorkspaceId,
        policy: &RetentionPolicy,
        at: Timestamp,
    ) -> StoreResult<()> {
        let mut qb = self.sql(
            "INSERT INTO retention_policies (workspace_id, archive_after_days, \
             delete_archived_after_days, compact_enrichment, event_ttl_days, updated_at) VALUES (",
        );
        qb.bind(ws);
        qb.push(", ");
        push_opt_days(&mut qb, policy.archive_after_days);
        qb.push(", ");
        push_opt_days(&mut qb, policy.delete_archived_after_days);
        qb.push(", ");
        qb.bind(i64::from(policy.compact_enrichment));
        qb.push(", ");
        push_opt_days(&mut qb, policy.event_ttl_days);
        qb.push(", ");
        qb.bind(at);
        qb.push(
            ") ON CONFLICT (workspace_id) DO UPDATE SET \
             archive_after_days = excluded.archive_after_days, \
             delete_archived_after_days = excluded.delete_archived_after_days, \
             compact_enrichment = excluded.compact_enrichment, \
             event_ttl_days = excluded.event_ttl_days, updated_at = excluded.updated_at",
        );
        self.execute(qb).await?;
        Ok(())
    }

    pub async fn retention_policies(&self) -> StoreResult<Vec<(WorkspaceId, RetentionPolicy)>> {
        let rows = self
            .fetch_all(self.sql(
                "SELECT workspace_id, archive_after_days, delete_archived_after_days, compact_enrichment, \
                 event_ttl_days FROM retention_policies ORDER BY workspace_id",
            ))
            .await?;
        rows.iter()
            .map(|r| Ok((WorkspaceId::from_uuid(r.get(0)?), policy_from_row(r, 1)?)))
            .collect::<StoreResult<_>>()
    }

    pub async fn save_retention_run(&self, run: &RetentionRun) -> StoreResult<()> {
        let mut qb = self.sql(
            "INSERT INTO retention_runs (id, workspace_id, trigger_kind, dry_run, started_at, \
             finished_at, archived, deleted, enrichment_compacted, events_compacted, error) VALUES (",
        );
        qb.bind(run.id);
        qb.push(", ");
        qb.bind(run.workspace_id);
        qb.push(", ");
        qb.bind(run.trigger.as_str().to_owned());
        qb.push(", ");
        qb.bind(i64::from(run.dry_run));
        qb.push(", ");
        qb.bind(run.started_at);
        qb.push(", ");
        qb.bind(run.finished_at);
        for v in [
            run.counts.archived,
            run.counts.deleted,
            run.counts.enrichment_compacted,
            run.counts.events_compacted,
        ] {
            qb.push(", ");
            qb.bind(i64::try_from(v).unwrap_or(i64::MAX));
        }
        qb.push(", ");
        qb.bind(run.error.clone());
        // never moves a run to another workspace
        qb.push(
            ") ON CONFLICT (id) DO UPDATE SET finished_at = excluded.finished_at, \
             archived = excluded.archived, deleted = excluded.deleted, \
             enrichment_compacted = excluded.enrichment_compacted, \
             events_compacted = excluded.events_compacted, error = excluded.error \
             WHERE retention_runs.workspace_id = excluded.workspace_id",
        );
        self.execute(qb).await?;
        Ok(())
    }

    pub async fn delete_retention_run(&self, ws: WorkspaceId, id: RetentionRunId) -> StoreResult<()> {
        let mut qb = self.sql("DELETE FROM retention_runs WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND id = ");
        qb.bind(id);
        self.execute(qb).await?;
        Ok(())
    }

    pub async fn retention_run(
        &self,
        ws: WorkspaceId,
        id: RetentionRunId,
    ) -> StoreResult<Option<RetentionRun>> {
        let mut qb = self.sql(RUN_COLUMNS);
        qb.push("workspace_id = ");
        qb.bind(ws);
        qb.push(" AND id = ");
        qb.bind(id);
        let row = self.fetch_optional(qb).await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// A page of the workspace's runs, newest first.
    pub async fn retention_runs(
        &self,
        ws: WorkspaceId,
        page: &KeysetPage<RetentionRunId>,
    ) -> StoreResult<Paged<RetentionRun>> {
        let mut qb = self.sql(RUN_COLUMNS);
        qb.push("workspace_id = ");
        qb.bind(ws);
        self.keyset_page(qb, KeyOrder::NEWEST_FIRST, page, run_from_row)
            .await
    }

    pub async fn count_retention(&self, ws: WorkspaceId, cutoffs: &Cutoffs) -> StoreResult<RetentionCounts> {
        let mut counts = RetentionCounts::default();
        if let Some(before) = cutoffs.archive_updated_before {
            let mut qb = self.sql("SELECT count(*) FROM leads l WHERE ");
            push_stale(&mut qb, ws, before);
            counts.archived = self.fetch_one(qb).await?.count(0)?;
        }
        if let Some(before) = cutoffs.delete_archived_before {
            let mut qb = self.sql("SELECT count(*) FROM leads l WHERE ");
            push_expired_archive(&mut qb, ws, before);
            counts.deleted = self.fetch_one(qb).await?.count(0)?;
        }
        if let Some(before) = cutoffs.compact_expired_before {
            let mut qb = self.sql("SELECT count(*) FROM enrichment_records WHERE workspace_id = ");
            qb.bind(ws);
            qb.push(" AND expires_at < ");
            qb.bind(before);
            counts.enrichment_compacted = self.fetch_one(qb).await?.count(0)?;
        }
        if let Some(before) = cutoffs.events_before {
            let mut qb = self.sql("SELECT count(*) FROM events WHERE workspace_id = ");
            qb.bind(ws);
            qb.push(" AND created_at < ");
            qb.bind(before);
            counts.events_compacted = self.fetch_one(qb).await?.count(0)?;
        }
        Ok(counts)
    }

    pub async fn archive_stale_leads(
        &self,
        ws: WorkspaceId,
        before: Timestamp,
        at: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        let mut tx = self.begin().await?;
        let mut qb = self.sql(format!("SELECT {} FROM leads l WHERE ", lead_select()));
        push_stale(&mut qb, ws, before);
        qb.push(" ORDER BY l.updated_at, l.id LIMIT ");
        qb.bind(i64::from(limit));
        qb.push(tx.dialect().for_update());
        let leads: Vec<Lead> = leads_in(&mut tx, qb).await?;
        if leads.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<uuid::Uuid> = leads.iter().map(|l| l.id.as_uuid()).collect();
        let mut qb = self.sql("UPDATE leads SET archived_at = ");
        qb.bind(at);
        qb.push(", updated_at = ");
        qb.bind(at);
        qb.push(", version = version + 1 WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND archived_at IS NULL AND id IN ");
        push_uuid_list(&mut qb, &ids);
        let done = tx.execute(qb).await?;
        if done != leads.len() as u64 {
            // the rows were locked (PostgreSQL) or the writer is single (SQLite)
            return Err(StoreError::VersionMismatch);
        }
        let n = leads.len() as i64;
        bump(&mut tx, ws, (-n, n)).await?;
        let events: Vec<NewEvent> = leads
            .into_iter()
            .map(|mut lead| {
                lead.archived_at = Some(at);
                lead.updated_at = at;
                lead.version += 1;
                NewEvent::lead_change(LEAD_ARCHIVED, &lead, &["archivedAt"])
            })
            .collect();
        let events = append_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(events)
    }

    pub async fn delete_archived_leads(
        &self,
        ws: WorkspaceId,
        before: Timestamp,
        limit: u32,
    ) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let mut qb = self.sql("SELECT l.id FROM leads l WHERE ");
        push_expired_archive(&mut qb, ws, before);
        qb.push(" ORDER BY l.archived_at, l.id LIMIT ");
        qb.bind(i64::from(limit));
        qb.push(tx.dialect().for_update());
        let rows = tx.fetch_all(qb).await?;
        let ids = rows
            .iter()
            .map(|r| r.get::<uuid::Uuid>(0))
            .collect::<Result<Vec<_>, _>>()?;
        if ids.is_empty() {
            return Ok(0);
        }
        for table in ["enrichment_records", "lead_tags"] {
            let mut qb = self.sql(format!("DELETE FROM {table} WHERE workspace_id = "));
            qb.bind(ws);
            qb.push(" AND lead_id IN ");
            push_uuid_list(&mut qb, &ids);
            tx.execute(qb).await?;
        }
        let mut qb = self.sql("DELETE FROM leads WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND archived_at IS NOT NULL AND id IN ");
        push_uuid_list(&mut qb, &ids);
        let deleted = tx.execute(qb).await?;
        bump(&mut tx, ws, (0, -(deleted as i64))).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    pub async fn compact_enrichment(
        &self,
        ws: WorkspaceId,
        before: Timestamp,
        limit: u32,
    ) -> StoreResult<u64> {
        let mut qb = self.sql("DELETE FROM enrichment_records WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND expires_at < ");
        qb.bind(before);
        qb.push(" AND lead_id IN (SELECT lead_id FROM enrichment_records WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND expires_at < ");
        qb.bind(before);
        qb.push(" LIMIT ");
        qb.bind(i64::from(limit));
        qb.push(")");
        let done = self.execute(qb).await?;
        Ok(done)
    }

    pub async fn compact_events(&self, ws: WorkspaceId, before: Timestamp, limit: u32) -> StoreResult<u64> {
        let mut qb = self.sql("DELETE FROM events WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND seq IN (SELECT seq FROM events WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND created_at < ");
        qb.bind(before);
        qb.push(" ORDER BY seq LIMIT ");
        qb.bind(i64::from(limit));
        qb.push(")");
        let done = self.execute(qb).await?;
        Ok(done)
    }
}
