//! Retention policies, the record of each run, and the bounded batches a run is made of,
//! shared by both backends and stamped out per backend by `impl_retention_repo!` like
//! `repo::impl_repos!`; a backend provides `read_time`, `read_opt_time` and, as `lock`, the
//! clause that locks selected rows for the rest of the transaction (PostgreSQL `FOR UPDATE`;
//! SQLite's single writer needs none).
//!
//! Each batch is one short transaction over at most `limit` leads (or records, or events), so a
//! run never holds the writer for long; the counts and the `lead.archived` events are written in
//! the batch's own transaction.

macro_rules! impl_retention_repo {
    ($store:ty, lock = $lock:literal) => {
        pub(super) mod retention_repo {
            use super::{read_opt_time, read_time};
            use sqlx::Row as _;
            use $crate::domain::{
                Cutoffs, Event, LEAD_ARCHIVED, Lead, NewEvent, RetentionCounts, RetentionDays, RetentionPolicy,
                RetentionRun, RetentionRunId, RunTrigger, Timestamp, WorkspaceId,
            };
            use $crate::store::repo::interpret;
            use $crate::store::sql::{LEAD_COLUMNS, SqlBuilder, push_newest_first};
            use $crate::store::{RetentionRepo, StoreError, StoreResult};

            type Qb = sqlx::QueryBuilder<super::Db>;
            type Row = <super::Db as sqlx::Database>::Row;

            const RUN_COLUMNS: &str = "SELECT id, workspace_id, trigger_kind, dry_run, started_at, finished_at, \
                 archived, deleted, enrichment_compacted, events_compacted, error FROM retention_runs WHERE ";

            fn count(v: i64) -> u64 {
                v.max(0) as u64
            }

            fn days(v: Option<i64>) -> Option<RetentionDays> {
                v.map(RetentionDays::from_trusted)
            }

            fn run_from_row(r: &Row) -> Result<RetentionRun, sqlx::Error> {
                let trigger: String = r.try_get(2)?;
                Ok(RetentionRun {
                    id: RetentionRunId::from_uuid(r.try_get(0)?),
                    workspace_id: WorkspaceId::from_uuid(r.try_get(1)?),
                    trigger: RunTrigger::parse(&trigger)
                        .ok_or_else(|| sqlx::Error::Decode(format!("unknown trigger {trigger}").into()))?,
                    dry_run: r.try_get::<i64, _>(3)? != 0,
                    started_at: read_time(r, 4)?,
                    finished_at: read_opt_time(r, 5)?,
                    counts: RetentionCounts {
                        archived: count(r.try_get(6)?),
                        deleted: count(r.try_get(7)?),
                        enrichment_compacted: count(r.try_get(8)?),
                        events_compacted: count(r.try_get(9)?),
                    },
                    error: r.try_get(10)?,
                })
            }

            fn policy_from_row(r: &Row, first: usize) -> Result<RetentionPolicy, sqlx::Error> {
                Ok(RetentionPolicy {
                    archive_after_days: days(r.try_get(first)?),
                    delete_archived_after_days: days(r.try_get(first + 1)?),
                    compact_enrichment: r.try_get::<i64, _>(first + 2)? != 0,
                    event_ttl_days: days(r.try_get(first + 3)?),
                })
            }

            fn push_opt_days(qb: &mut Qb, d: Option<RetentionDays>) {
                match d {
                    Some(d) => qb.push_int(i64::from(d.get())),
                    None => qb.push_null(),
                }
            }

            /// `AND <leads of ws that are active and untouched since before `before`>`.
            fn push_stale(qb: &mut Qb, ws: WorkspaceId, before: Timestamp) {
                qb.push("l.workspace_id = ");
                qb.push_uuid(ws.as_uuid());
                qb.push(" AND l.archived_at IS NULL AND l.updated_at < ");
                qb.push_time(before);
            }

            fn push_expired_archive(qb: &mut Qb, ws: WorkspaceId, before: Timestamp) {
                qb.push("l.workspace_id = ");
                qb.push_uuid(ws.as_uuid());
                qb.push(" AND l.archived_at IS NOT NULL AND l.archived_at < ");
                qb.push_time(before);
            }

            fn push_uuid_list(qb: &mut Qb, ids: &[uuid::Uuid]) {
                qb.push("(");
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        qb.push(", ");
                    }
                    qb.push_uuid(*id);
                }
                qb.push(")");
            }

            async fn scalar(qb: &mut Qb, pool: &sqlx::Pool<super::Db>) -> StoreResult<u64> {
                let row = qb.build().fetch_one(pool).await.map_err(interpret)?;
                Ok(count(row.try_get(0).map_err(interpret)?))
            }

            impl RetentionRepo for $store {
                async fn retention_policy(&self, ws: WorkspaceId) -> StoreResult<Option<RetentionPolicy>> {
                    let mut qb = Qb::new(
                        "SELECT archive_after_days, delete_archived_after_days, compact_enrichment, event_ttl_days \
                         FROM retention_policies WHERE workspace_id = ",
                    );
                    qb.push_uuid(ws.as_uuid());
                    let row = qb.build().fetch_optional(&self.read).await.map_err(interpret)?;
                    row.map(|r| policy_from_row(&r, 0)).transpose().map_err(interpret)
                }

                async fn save_retention_policy(
                    &self,
                    ws: WorkspaceId,
                    policy: &RetentionPolicy,
                    at: Timestamp,
                ) -> StoreResult<()> {
                    let mut qb = Qb::new(
                        "INSERT INTO retention_policies (workspace_id, archive_after_days, \
                         delete_archived_after_days, compact_enrichment, event_ttl_days, updated_at) VALUES (",
                    );
                    qb.push_uuid(ws.as_uuid());
                    qb.push(", ");
                    push_opt_days(&mut qb, policy.archive_after_days);
                    qb.push(", ");
                    push_opt_days(&mut qb, policy.delete_archived_after_days);
                    qb.push(", ");
                    qb.push_int(i64::from(policy.compact_enrichment));
                    qb.push(", ");
                    push_opt_days(&mut qb, policy.event_ttl_days);
                    qb.push(", ");
                    qb.push_time(at);
                    qb.push(
                        ") ON CONFLICT (workspace_id) DO UPDATE SET \
                         archive_after_days = excluded.archive_after_days, \
                         delete_archived_after_days = excluded.delete_archived_after_days, \
                         compact_enrichment = excluded.compact_enrichment, \
                         event_ttl_days = excluded.event_ttl_days, updated_at = excluded.updated_at",
                    );
                    qb.build().execute(&self.write).await.map_err(interpret)?;
                    Ok(())
                }

                async fn retention_policies(&self) -> StoreResult<Vec<(WorkspaceId, RetentionPolicy)>> {
                    let rows = sqlx::query(
                        "SELECT workspace_id, archive_after_days, delete_archived_after_days, compact_enrichment, \
                         event_ttl_days FROM retention_policies ORDER BY workspace_id",
                    )
                    .fetch_all(&self.read)
                    .await
                    .map_err(interpret)?;
                    rows.iter()
                        .map(|r| Ok((WorkspaceId::from_uuid(r.try_get(0)?), policy_from_row(r, 1)?)))
                        .collect::<Result<_, sqlx::Error>>()
                        .map_err(interpret)
                }

                async fn save_retention_run(&self, run: &RetentionRun) -> StoreResult<()> {
                    let mut qb = Qb::new(
                        "INSERT INTO retention_runs (id, workspace_id, trigger_kind, dry_run, started_at, \
                         finished_at, archived, deleted, enrichment_compacted, events_compacted, error) VALUES (",
                    );
                    qb.push_uuid(run.id.as_uuid());
                    qb.push(", ");
                    qb.push_uuid(run.workspace_id.as_uuid());
                    qb.push(", ");
                    qb.push_text(run.trigger.as_str().to_owned());
                    qb.push(", ");
                    qb.push_int(i64::from(run.dry_run));
                    qb.push(", ");
                    qb.push_time(run.started_at);
                    qb.push(", ");
                    match run.finished_at {
                        Some(t) => qb.push_time(t),
                        None => qb.push_null(),
                    }
                    for v in [
                        run.counts.archived,
                        run.counts.deleted,
                        run.counts.enrichment_compacted,
                        run.counts.events_compacted,
                    ] {
                        qb.push(", ");
                        qb.push_int(i64::try_from(v).unwrap_or(i64::MAX));
                    }
                    qb.push(", ");
                    qb.push_opt_text(run.error.clone());
                    // never moves a run to another workspace
                    qb.push(
                        ") ON CONFLICT (id) DO UPDATE SET finished_at = excluded.finished_at, \
                         archived = excluded.archived, deleted = excluded.deleted, \
                         enrichment_compacted = excluded.enrichment_compacted, \
                         events_compacted = excluded.events_compacted, error = excluded.error \
                         WHERE retention_runs.workspace_id = excluded.workspace_id",
                    );
                    qb.build().execute(&self.write).await.map_err(interpret)?;
                    Ok(())
                }

                async fn delete_retention_run(&self, ws: WorkspaceId, id: RetentionRunId) -> StoreResult<()> {
                    let mut qb = Qb::new("DELETE FROM retention_runs WHERE workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND id = ");
                    qb.push_uuid(id.as_uuid());
                    qb.build().execute(&self.write).await.map_err(interpret)?;
                    Ok(())
                }

                async fn retention_run(&self, ws: WorkspaceId, id: RetentionRunId) -> StoreResult<Option<RetentionRun>> {
                    let mut qb = Qb::new(RUN_COLUMNS);
                    qb.push("workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND id = ");
                    qb.push_uuid(id.as_uuid());
                    let row = qb.build().fetch_optional(&self.read).await.map_err(interpret)?;
                    row.as_ref().map(run_from_row).transpose().map_err(interpret)
                }

                async fn retention_runs(
                    &self,
                    ws: WorkspaceId,
                    before: Option<RetentionRunId>,
                    limit: u32,
                ) -> StoreResult<Vec<RetentionRun>> {
                    let mut qb = Qb::new(RUN_COLUMNS);
                    qb.push("workspace_id = ");
                    push_newest_first(&mut qb, ws, before.map(|b| b.as_uuid()), limit);
                    let rows = qb.build().fetch_all(&self.read).await.map_err(interpret)?;
                    rows.iter().map(run_from_row).collect::<Result<_, _>>().map_err(interpret)
                }

                async fn count_retention(&self, ws: WorkspaceId, cutoffs: &Cutoffs) -> StoreResult<RetentionCounts> {
                    let mut counts = RetentionCounts::default();
                    if let Some(before) = cutoffs.archive_updated_before {
                        let mut qb = Qb::new("SELECT count(*) FROM leads l WHERE ");
                        push_stale(&mut qb, ws, before);
                        counts.archived = scalar(&mut qb, &self.read).await?;
                    }
                    if let Some(before) = cutoffs.delete_archived_before {
                        let mut qb = Qb::new("SELECT count(*) FROM leads l WHERE ");
                        push_expired_archive(&mut qb, ws, before);
                        counts.deleted = scalar(&mut qb, &self.read).await?;
                    }
                    if let Some(before) = cutoffs.compact_expired_before {
                        let mut qb = Qb::new("SELECT count(*) FROM enrichment_records WHERE workspace_id = ");
                        qb.push_uuid(ws.as_uuid());
                        qb.push(" AND expires_at < ");
                        qb.push_time(before);
                        counts.enrichment_compacted = scalar(&mut qb, &self.read).await?;
                    }
                    if let Some(before) = cutoffs.events_before {
                        let mut qb = Qb::new("SELECT count(*) FROM events WHERE workspace_id = ");
                        qb.push_uuid(ws.as_uuid());
                        qb.push(" AND created_at < ");
                        qb.push_time(before);
                        counts.events_compacted = scalar(&mut qb, &self.read).await?;
                    }
                    Ok(counts)
                }

                async fn archive_stale_leads(
                    &self,
                    ws: WorkspaceId,
                    before: Timestamp,
                    at: Timestamp,
                    limit: u32,
                ) -> StoreResult<Vec<Event>> {
                    let mut tx = self.write.begin().await.map_err(interpret)?;
                    let mut qb = Qb::new(format!("SELECT {LEAD_COLUMNS} FROM leads l WHERE "));
                    push_stale(&mut qb, ws, before);
                    qb.push(" ORDER BY l.updated_at, l.id LIMIT ");
                    qb.push_int(i64::from(limit));
                    qb.push($lock);
                    let rows = qb.build().fetch_all(&mut *tx).await.map_err(interpret)?;
                    let leads: Vec<Lead> = super::leads_from_rows(&rows)?;
                    if leads.is_empty() {
                        return Ok(Vec::new());
                    }
                    let ids: Vec<uuid::Uuid> = leads.iter().map(|l| l.id.as_uuid()).collect();
                    let mut qb = Qb::new("UPDATE leads SET archived_at = ");
                    qb.push_time(at);
                    qb.push(", updated_at = ");
                    qb.push_time(at);
                    qb.push(", version = version + 1 WHERE workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND archived_at IS NULL AND id IN ");
                    push_uuid_list(&mut qb, &ids);
                    let done = qb.build().execute(&mut *tx).await.map_err(interpret)?;
                    if done.rows_affected() != leads.len() as u64 {
                        // the rows were locked (PostgreSQL) or the writer is single (SQLite)
                        return Err(StoreError::VersionMismatch);
                    }
                    let n = leads.len() as i64;
                    super::bump_counts(&mut tx, ws, -n, n).await?;
                    let events: Vec<NewEvent> = leads
                        .into_iter()
                        .map(|mut lead| {
                            lead.archived_at = Some(at);
                            lead.updated_at = at;
                            lead.version += 1;
                            NewEvent::lead_change(LEAD_ARCHIVED, &lead, &["archivedAt"])
                        })
                        .collect();
                    let events = super::event_repo::append(&mut tx, &events).await?;
                    tx.commit().await.map_err(interpret)?;
                    Ok(events)
                }

                async fn delete_archived_leads(
                    &self,
                    ws: WorkspaceId,
                    before: Timestamp,
                    limit: u32,
                ) -> StoreResult<u64> {
                    let mut tx = self.write.begin().await.map_err(interpret)?;
                    let mut qb = Qb::new("SELECT l.id FROM leads l WHERE ");
                    push_expired_archive(&mut qb, ws, before);
                    qb.push(" ORDER BY l.archived_at, l.id LIMIT ");
                    qb.push_int(i64::from(limit));
                    qb.push($lock);
                    let rows = qb.build().fetch_all(&mut *tx).await.map_err(interpret)?;
                    let ids = rows
                        .iter()
                        .map(|r| r.try_get::<uuid::Uuid, _>(0))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(interpret)?;
                    if ids.is_empty() {
                        return Ok(0);
                    }
                    for table in ["enrichment_records", "lead_tags"] {
                        let mut qb = Qb::new(format!("DELETE FROM {table} WHERE workspace_id = "));
                        qb.push_uuid(ws.as_uuid());
                        qb.push(" AND lead_id IN ");
                        push_uuid_list(&mut qb, &ids);
                        qb.build().execute(&mut *tx).await.map_err(interpret)?;
                    }
                    let mut qb = Qb::new("DELETE FROM leads WHERE workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND archived_at IS NOT NULL AND id IN ");
                    push_uuid_list(&mut qb, &ids);
                    let deleted = qb.build().execute(&mut *tx).await.map_err(interpret)?.rows_affected();
                    super::bump_counts(&mut tx, ws, 0, -(deleted as i64)).await?;
                    tx.commit().await.map_err(interpret)?;
                    Ok(deleted)
                }

                async fn compact_enrichment(&self, ws: WorkspaceId, before: Timestamp, limit: u32) -> StoreResult<u64> {
                    let mut qb = Qb::new("DELETE FROM enrichment_records WHERE workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND expires_at < ");
                    qb.push_time(before);
                    qb.push(" AND lead_id IN (SELECT lead_id FROM enrichment_records WHERE workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND expires_at < ");
                    qb.push_time(before);
                    qb.push(" LIMIT ");
                    qb.push_int(i64::from(limit));
                    qb.push(")");
                    let done = qb.build().execute(&self.write).await.map_err(interpret)?;
                    Ok(done.rows_affected())
                }

                async fn compact_events(&self, ws: WorkspaceId, before: Timestamp, limit: u32) -> StoreResult<u64> {
                    let mut qb = Qb::new("DELETE FROM events WHERE workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND seq IN (SELECT seq FROM events WHERE workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND created_at < ");
                    qb.push_time(before);
                    qb.push(" ORDER BY seq LIMIT ");
                    qb.push_int(i64::from(limit));
                    qb.push(")");
                    let done = qb.build().execute(&self.write).await.map_err(interpret)?;
                    Ok(done.rows_affected())
                }
            }
        }
    };
}

pub(crate) use impl_retention_repo;
