//! The job queue's persistence shared by both backends, stamped out per backend by
//! `impl_job_repo!` like `enrichment::impl_enrichment_repo!`. A backend provides `read_time`,
//! `read_opt_time` and the row-locking clause of its claim (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, nothing on SQLite, whose single writer connection serialises claims).
//!
//! Ownership of a running job is its lease token: every write by a worker names it, so a
//! worker whose lease expired changes nothing. A dead job leaves only by `replay_jobs` or
//! `discard_jobs`.

macro_rules! impl_job_repo {
    ($store:ty, skip_locked = $skip_locked:literal) => {
        mod job_repo {
            use super::event_repo::append as append_events;
            use super::{read_opt_time, read_time};
            use sqlx::Row as _;
            use $crate::domain::{
                Duplicate, Enqueued, Job, JobFailure, JobId, JobScope, JobSelection, JobState, NewJob, QueueStat,
                Schedule, Timestamp, WorkspaceId,
            };
            use $crate::store::repo::interpret;
            use $crate::store::sql::SqlBuilder;
            use $crate::store::{JobRepo, Lease, Reclaimed, StoreError, StoreResult};

            type Qb = sqlx::QueryBuilder<super::Db>;
            type Row = <super::Db as sqlx::Database>::Row;
            type Conn = <super::Db as sqlx::Database>::Connection;

            /// Columns of `jobs` in the order `job_from_row` reads them.
            const JOB_COLUMNS: &str = "id, kind, workspace_id, payload, CAST(priority AS BIGINT), run_at, state, \
                 CAST(attempts AS BIGINT), CAST(max_attempts AS BIGINT), unique_key, lease_token, lease_until, \
                 errors, progress, result, created_at, updated_at, finished_at";
            const SCHEDULE_COLUMNS: &str = "name, cron, tz, kind, payload, next_run_at, last_run_at, enabled";
            /// Most rows one statement names, well under both backends' bind limits.
            const CHUNK: usize = 500;
            /// Most expired leases one reclaim pass handles.
            const RECLAIM_BATCH: i64 = 200;

            fn decode_json<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, sqlx::Error> {
                serde_json::from_str(raw).map_err(|e| sqlx::Error::Decode(Box::new(e)))
            }

            fn opt_json(r: &Row, i: usize) -> Result<Option<serde_json::Value>, sqlx::Error> {
                r.try_get::<Option<String>, _>(i)?
                    .map(|raw| decode_json(&raw))
                    .transpose()
            }

            fn count(v: i64) -> u32 {
                v.clamp(0, i64::from(u32::MAX)) as u32
            }

            fn job_from_row(r: &Row) -> Result<Job, sqlx::Error> {
                let state: String = r.try_get(6)?;
                Ok(Job {
                    id: JobId(r.try_get(0)?),
                    kind: r.try_get(1)?,
                    workspace_id: r.try_get::<Option<uuid::Uuid>, _>(2)?.map(WorkspaceId::from_uuid),
                    payload: decode_json(&r.try_get::<String, _>(3)?)?,
                    priority: r.try_get::<i64, _>(4)?.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16,
                    run_at: read_time(r, 5)?,
                    state: JobState::parse(&state)
                        .ok_or_else(|| sqlx::Error::Decode(format!("unknown job state {state}").into()))?,
                    attempts: count(r.try_get(7)?),
                    max_attempts: count(r.try_get(8)?),
                    unique_key: r.try_get(9)?,
                    lease_token: r.try_get(10)?,
                    lease_until: read_opt_time(r, 11)?,
                    errors: decode_json(&r.try_get::<String, _>(12)?)?,
                    progress: opt_json(r, 13)?,
                    result: opt_json(r, 14)?,
                    created_at: read_time(r, 15)?,
                    updated_at: read_time(r, 16)?,
                    finished_at: read_opt_time(r, 17)?,
                })
            }

            fn schedule_from_row(r: &Row) -> Result<Schedule, sqlx::Error> {
                Ok(Schedule {
                    name: r.try_get(0)?,
                    cron: r.try_get(1)?,
                    tz: r.try_get(2)?,
                    kind: r.try_get(3)?,
                    payload: decode_json(&r.try_get::<String, _>(4)?)?,
                    next_run_at: read_time(r, 5)?,
                    last_run_at: read_opt_time(r, 6)?,
                    enabled: r.try_get::<i64, _>(7)? != 0,
                })
            }

            fn jobs_from_rows(rows: &[Row]) -> StoreResult<Vec<Job>> {
                rows.iter().map(|r| job_from_row(r).map_err(interpret)).collect()
            }

            /// Only a running job still held with `token`: a worker that lost its lease changes
            /// nothing.
            fn push_owned(qb: &mut Qb, id: i64, token: &str) {
                qb.push(" WHERE state = 'running' AND id = ");
                qb.push_int(id);
                qb.push(" AND lease_token = ");
                qb.push_text(token.to_owned());
            }

            fn push_scope(qb: &mut Qb, scope: JobScope) {
                if let JobScope::Workspace(ws) = scope {
                    qb.push(" AND workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                }
            }

            fn push_ids(qb: &mut Qb, ids: &[JobId]) {
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        qb.push(", ");
                    }
                    qb.push_int(id.0);
                }
            }

            /// ` AND …` conditions of a selection of dead jobs in `scope`.
            fn push_selection(qb: &mut Qb, scope: JobScope, selection: &JobSelection) {
                push_scope(qb, scope);
                if !selection.ids.is_empty() {
                    qb.push(" AND id IN (");
                    push_ids(qb, &selection.ids);
                    qb.push(")");
                }
                if let Some(kind) = &selection.kind {
                    qb.push(" AND kind = ");
                    qb.push_text(kind.clone());
                }
            }

            async fn insert_job(
                conn: &mut Conn,
                job: &NewJob,
                max_attempts: u32,
                at: Timestamp,
            ) -> StoreResult<Option<JobId>> {
                let mut qb = Qb::new(
                    "INSERT INTO jobs (kind, workspace_id, payload, priority, run_at, state, attempts, \
                     max_attempts, unique_key, errors, created_at, updated_at) VALUES (",
                );
                qb.push_text(job.kind.clone());
                qb.push(", ");
                match job.workspace_id {
                    Some(ws) => qb.push_uuid(ws.as_uuid()),
                    None => qb.push_null(),
                }
                qb.push(", ");
                qb.push_text(job.payload.to_string());
                qb.push(", ");
                qb.push_int(i64::from(job.priority));
                qb.push(", ");
                qb.push_time(job.run_at.unwrap_or(at));
                qb.push(", 'queued', 0, ");
                qb.push_int(i64::from(max_attempts));
                qb.push(", ");
                qb.push_opt_text(job.unique_key.clone());
                qb.push(", '[]', ");
                qb.push_time(at);
                qb.push(", ");
                qb.push_time(at);
                qb.push(
                    ") ON CONFLICT (unique_key) WHERE state IN ('queued', 'running') DO NOTHING RETURNING id",
                );
                let row = qb.build().fetch_optional(&mut *conn).await.map_err(interpret)?;
                row.map(|r| r.try_get(0).map(JobId).map_err(interpret)).transpose()
            }

            /// Debounce: a queued job holding `key` takes the new payload, priority and time.
            async fn replace_queued(
                conn: &mut Conn,
                key: &str,
                job: &NewJob,
                at: Timestamp,
            ) -> StoreResult<Option<JobId>> {
                let mut qb = Qb::new("UPDATE jobs SET payload = ");
                qb.push_text(job.payload.to_string());
                qb.push(", priority = ");
                qb.push_int(i64::from(job.priority));
                qb.push(", run_at = ");
                qb.push_time(job.run_at.unwrap_or(at));
                qb.push(", updated_at = ");
                qb.push_time(at);
                qb.push(" WHERE state = 'queued' AND unique_key = ");
                qb.push_text(key.to_owned());
                qb.push(" RETURNING id");
                let row = qb.build().fetch_optional(&mut *conn).await.map_err(interpret)?;
                row.map(|r| r.try_get(0).map(JobId).map_err(interpret)).transpose()
            }

            async fn live_holder(conn: &mut Conn, key: &str) -> StoreResult<Option<JobId>> {
                let mut qb = Qb::new("SELECT id FROM jobs WHERE state IN ('queued', 'running') AND unique_key = ");
                qb.push_text(key.to_owned());
                let row = qb.build().fetch_optional(&mut *conn).await.map_err(interpret)?;
                row.map(|r| r.try_get(0).map(JobId).map_err(interpret)).transpose()
            }

            /// Enqueues on `conn` (a transaction's or a pooled one). The holder of a unique key
            /// can finish between the statements; then the insert is simply tried again.
            async fn enqueue_on(
                conn: &mut Conn,
                job: &NewJob,
                max_attempts: u32,
                at: Timestamp,
            ) -> StoreResult<Enqueued> {
                let Some(key) = &job.unique_key else {
                    let id = insert_job(conn, job, max_attempts, at).await?;
                    return id
                        .map(|id| Enqueued { id, created: true })
                        .ok_or_else(|| StoreError::Database("insert returned no id".into()));
                };
                for _ in 0..3 {
                    if job.on_duplicate == Duplicate::Replace
                        && let Some(id) = replace_queued(conn, key, job, at).await?
                    {
                        return Ok(Enqueued { id, created: false });
                    }
                    if let Some(id) = insert_job(conn, job, max_attempts, at).await? {
                        return Ok(Enqueued { id, created: true });
                    }
                    if let Some(id) = live_holder(conn, key).await? {
                        return Ok(Enqueued { id, created: false });
                    }
                }
                Err(StoreError::Database(
                    format!("unique key {key} kept changing hands while enqueueing").into(),
                ))
            }

            /// Writes a failed attempt of `job` (which `job.lease_token` must still own).
            async fn record_failure(
                conn: &mut Conn,
                job: &Job,
                errors: &[JobFailure],
                retry_at: Option<Timestamp>,
                at: Timestamp,
            ) -> StoreResult<bool> {
                let Some(token) = &job.lease_token else {
                    return Ok(false);
                };
                let errors = serde_json::to_string(errors).map_err(|e| StoreError::Database(Box::new(e)))?;
                let mut qb = Qb::new("UPDATE jobs SET lease_token = NULL, lease_until = NULL, errors = ");
                qb.push_text(errors);
                qb.push(", updated_at = ");
                qb.push_time(at);
                match retry_at {
                    Some(t) => {
                        qb.push(", state = 'queued', run_at = ");
                        qb.push_time(t);
                    }
                    None => {
                        qb.push(", state = 'dead', finished_at = ");
                        qb.push_time(at);
                    }
                }
                push_owned(&mut qb, job.id.0, token);
                let done = qb.build().execute(&mut *conn).await.map_err(interpret)?;
                Ok(done.rows_affected() == 1)
            }

            impl JobRepo for $store {
                async fn enqueue_job(&self, job: &NewJob, max_attempts: u32, at: Timestamp) -> StoreResult<Enqueued> {
                    let mut conn = self.write.acquire().await.map_err(interpret)?;
                    enqueue_on(&mut conn, job, max_attempts, at).await
                }

                async fn claim_jobs(
                    &self,
                    kinds: &[&str],
                    limit: u32,
                    lease: &Lease,
                    at: Timestamp,
                ) -> StoreResult<Vec<Job>> {
                    if kinds.is_empty() || limit == 0 {
                        return Ok(Vec::new());
                    }
                    let mut qb = Qb::new("UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_token = ");
                    qb.push_text(lease.token.clone());
                    qb.push(", lease_until = ");
                    qb.push_time(lease.until);
                    qb.push(", updated_at = ");
                    qb.push_time(at);
                    qb.push(" WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND run_at <= ");
                    qb.push_time(at);
                    qb.push(" AND kind IN (");
                    for (i, kind) in kinds.iter().enumerate() {
                        if i > 0 {
                            qb.push(", ");
                        }
                        qb.push_text((*kind).to_owned());
                    }
                    qb.push(") ORDER BY priority DESC, run_at, id LIMIT ");
                    qb.push_int(i64::from(limit));
                    qb.push($skip_locked);
                    qb.push(") RETURNING ");
                    qb.push(JOB_COLUMNS);
                    let rows = qb.build().fetch_all(&self.write).await.map_err(interpret)?;
                    let mut jobs = jobs_from_rows(&rows)?;
                    jobs.sort_by(|a, b| {
                        b.priority
                            .cmp(&a.priority)
                            .then(a.run_at.cmp(&b.run_at))
                            .then(a.id.cmp(&b.id))
                    });
                    Ok(jobs)
                }

                async fn heartbeat_job(
                    &self,
                    id: JobId,
                    token: &str,
                    until: Timestamp,
                    at: Timestamp,
                ) -> StoreResult<bool> {
                    let mut qb = Qb::new("UPDATE jobs SET lease_until = ");
                    qb.push_time(until);
                    qb.push(", updated_at = ");
                    qb.push_time(at);
                    push_owned(&mut qb, id.0, token);
                    let done = qb.build().execute(&self.write).await.map_err(interpret)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn save_job_progress(
                    &self,
                    id: JobId,
                    token: &str,
                    progress: &serde_json::Value,
                    at: Timestamp,
                ) -> StoreResult<bool> {
                    let mut qb = Qb::new("UPDATE jobs SET progress = ");
                    qb.push_text(progress.to_string());
                    qb.push(", updated_at = ");
                    qb.push_time(at);
                    push_owned(&mut qb, id.0, token);
                    let done = qb.build().execute(&self.write).await.map_err(interpret)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn complete_jobs(&self, done: &[(JobId, String)], at: Timestamp) -> StoreResult<u64> {
                    let mut completed = 0;
                    for chunk in done.chunks(CHUNK / 2) {
                        let mut qb = Qb::new(
                            "UPDATE jobs SET state = 'succeeded', lease_token = NULL, lease_until = NULL, finished_at = ",
                        );
                        qb.push_time(at);
                        qb.push(", updated_at = ");
                        qb.push_time(at);
                        qb.push(" WHERE state = 'running' AND (");
                        for (i, (id, token)) in chunk.iter().enumerate() {
                            qb.push(if i == 0 { "(id = " } else { " OR (id = " });
                            qb.push_int(id.0);
                            qb.push(" AND lease_token = ");
                            qb.push_text(token.clone());
                            qb.push(")");
                        }
                        qb.push(")");
                        completed += qb.build().execute(&self.write).await.map_err(interpret)?.rows_affected();
                    }
                    Ok(completed)
                }

                async fn fail_job(
                    &self,
                    job: &Job,
                    failure: &JobFailure,
                    retry_at: Option<Timestamp>,
                ) -> StoreResult<bool> {
                    let mut errors = job.errors.clone();
                    errors.push(failure.clone());
                    let mut tx = self.write.begin().await.map_err(interpret)?;
                    if !record_failure(&mut tx, job, &errors, retry_at, failure.at).await? {
                        tx.rollback().await.map_err(interpret)?;
                        return Ok(false);
                    }
                    if retry_at.is_none()
                        && let Some(event) = job.dead_event(&failure.error, failure.at)
                    {
                        append_events(&mut tx, &[event]).await?;
                    }
                    tx.commit().await.map_err(interpret)?;
                    Ok(true)
                }

                async fn reclaim_expired_jobs(&self, at: Timestamp) -> StoreResult<Reclaimed> {
                    let mut tx = self.write.begin().await.map_err(interpret)?;
                    let mut qb = Qb::new("SELECT ");
                    qb.push(JOB_COLUMNS);
                    qb.push(" FROM jobs WHERE state = 'running' AND lease_until < ");
                    qb.push_time(at);
                    qb.push(" ORDER BY lease_until LIMIT ");
                    qb.push_int(RECLAIM_BATCH);
                    qb.push($skip_locked);
                    let rows = qb.build().fetch_all(&mut *tx).await.map_err(interpret)?;
                    let mut reclaimed = Reclaimed::default();
                    for job in jobs_from_rows(&rows)? {
                        let error = "lease expired";
                        let errors = job.history_with(error, at);
                        if job.attempts < job.max_attempts {
                            if record_failure(&mut tx, &job, &errors, Some(at), at).await? {
                                reclaimed.requeued += 1;
                            }
                        } else if record_failure(&mut tx, &job, &errors, None, at).await? {
                            if let Some(event) = job.dead_event(error, at) {
                                append_events(&mut tx, &[event]).await?;
                            }
                            reclaimed.dead.push(Job {
                                state: JobState::Dead,
                                errors,
                                lease_token: None,
                                lease_until: None,
                                finished_at: Some(at),
                                updated_at: at,
                                ..job
                            });
                        }
                    }
                    tx.commit().await.map_err(interpret)?;
                    Ok(reclaimed)
                }

                async fn job(&self, scope: JobScope, id: JobId) -> StoreResult<Option<Job>> {
                    let mut qb = Qb::new("SELECT ");
                    qb.push(JOB_COLUMNS);
                    qb.push(" FROM jobs WHERE id = ");
                    qb.push_int(id.0);
                    push_scope(&mut qb, scope);
                    let row = qb.build().fetch_optional(&self.read).await.map_err(interpret)?;
                    row.map(|r| job_from_row(&r).map_err(interpret)).transpose()
                }

                async fn job_stats(&self, scope: JobScope) -> StoreResult<Vec<QueueStat>> {
                    let mut qb = Qb::new(
                        "SELECT kind, state, COUNT(*), MIN(CASE WHEN state = 'queued' THEN run_at END) \
                         FROM jobs WHERE 1 = 1",
                    );
                    push_scope(&mut qb, scope);
                    qb.push(" GROUP BY kind, state ORDER BY kind, state");
                    let rows = qb.build().fetch_all(&self.read).await.map_err(interpret)?;
                    let mut stats = Vec::with_capacity(rows.len());
                    for r in &rows {
                        let state: String = r.try_get(1).map_err(interpret)?;
                        let Some(state) = JobState::parse(&state) else { continue };
                        stats.push(QueueStat {
                            kind: r.try_get(0).map_err(interpret)?,
                            state,
                            count: r.try_get::<i64, _>(2).map_err(interpret)?.max(0) as u64,
                            oldest_run_at: read_opt_time(r, 3).map_err(interpret)?,
                        });
                    }
                    Ok(stats)
                }

                async fn dead_jobs(
                    &self,
                    scope: JobScope,
                    kind: Option<&str>,
                    before: Option<JobId>,
                    limit: u32,
                ) -> StoreResult<Vec<Job>> {
                    let mut qb = Qb::new("SELECT ");
                    qb.push(JOB_COLUMNS);
                    qb.push(" FROM jobs WHERE state = 'dead'");
                    push_scope(&mut qb, scope);
                    if let Some(kind) = kind {
                        qb.push(" AND kind = ");
                        qb.push_text(kind.to_owned());
                    }
                    if let Some(before) = before {
                        qb.push(" AND id < ");
                        qb.push_int(before.0);
                    }
                    qb.push(" ORDER BY id DESC LIMIT ");
                    qb.push_int(i64::from(limit));
                    let rows = qb.build().fetch_all(&self.read).await.map_err(interpret)?;
                    jobs_from_rows(&rows)
                }

                async fn replay_jobs(
                    &self,
                    scope: JobScope,
                    selection: &JobSelection,
                    at: Timestamp,
                ) -> StoreResult<u64> {
                    let mut qb = Qb::new("UPDATE jobs SET state = 'queued', attempts = 0, run_at = ");
                    qb.push_time(at);
                    qb.push(", finished_at = NULL, lease_token = NULL, lease_until = NULL, updated_at = ");
                    qb.push_time(at);
                    qb.push(" WHERE state = 'dead'");
                    push_selection(&mut qb, scope, selection);
                    qb.push(
                        " AND (unique_key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs live \
                         WHERE live.unique_key = jobs.unique_key AND live.state IN ('queued', 'running')))",
                    );
                    let done = qb.build().execute(&self.write).await.map_err(interpret)?;
                    Ok(done.rows_affected())
                }

                async fn discard_jobs(&self, scope: JobScope, selection: &JobSelection) -> StoreResult<u64> {
                    let mut qb = Qb::new("DELETE FROM jobs WHERE state = 'dead'");
                    push_selection(&mut qb, scope, selection);
                    let done = qb.build().execute(&self.write).await.map_err(interpret)?;
                    Ok(done.rows_affected())
                }

                async fn prune_jobs(&self, before: Timestamp) -> StoreResult<u64> {
                    let mut qb = Qb::new("DELETE FROM jobs WHERE state = 'succeeded' AND finished_at < ");
                    qb.push_time(before);
                    let done = qb.build().execute(&self.write).await.map_err(interpret)?;
                    Ok(done.rows_affected())
                }

                async fn upsert_schedule(&self, s: &Schedule) -> StoreResult<()> {
                    let mut qb = Qb::new("INSERT INTO schedules (");
                    qb.push(SCHEDULE_COLUMNS);
                    qb.push(") VALUES (");
                    qb.push_text(s.name.clone());
                    qb.push(", ");
                    qb.push_text(s.cron.clone());
                    qb.push(", ");
                    qb.push_text(s.tz.clone());
                    qb.push(", ");
                    qb.push_text(s.kind.clone());
                    qb.push(", ");
                    qb.push_text(s.payload.to_string());
                    qb.push(", ");
                    qb.push_time(s.next_run_at);
                    qb.push(", ");
                    match s.last_run_at {
                        Some(t) => qb.push_time(t),
                        None => qb.push_null(),
                    }
                    qb.push(", ");
                    qb.push_int(i64::from(s.enabled));
                    // A changed cron or zone restarts the schedule; otherwise the stored next
                    // tick stands, so a restarting instance neither skips nor repeats one.
                    qb.push(
                        ") ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, payload = excluded.payload, \
                         enabled = excluded.enabled, next_run_at = CASE WHEN schedules.cron = excluded.cron \
                         AND schedules.tz = excluded.tz THEN schedules.next_run_at ELSE excluded.next_run_at END, \
                         cron = excluded.cron, tz = excluded.tz",
                    );
                    qb.build().execute(&self.write).await.map(drop).map_err(interpret)
                }

                async fn schedules(&self) -> StoreResult<Vec<Schedule>> {
                    let mut qb = Qb::new("SELECT ");
                    qb.push(SCHEDULE_COLUMNS);
                    qb.push(" FROM schedules ORDER BY name");
                    let rows = qb.build().fetch_all(&self.read).await.map_err(interpret)?;
                    rows.iter().map(|r| schedule_from_row(r).map_err(interpret)).collect()
                }

                async fn fire_schedule(
                    &self,
                    name: &str,
                    due: Timestamp,
                    next: Timestamp,
                    job: &NewJob,
                    max_attempts: u32,
                    at: Timestamp,
                ) -> StoreResult<Option<Enqueued>> {
                    let mut tx = self.write.begin().await.map_err(interpret)?;
                    let mut qb = Qb::new("UPDATE schedules SET next_run_at = ");
                    qb.push_time(next);
                    qb.push(", last_run_at = ");
                    qb.push_time(due);
                    qb.push(" WHERE enabled = 1 AND name = ");
                    qb.push_text(name.to_owned());
                    qb.push(" AND next_run_at = ");
                    qb.push_time(due);
                    let moved = qb.build().execute(&mut *tx).await.map_err(interpret)?;
                    if moved.rows_affected() != 1 {
                        tx.rollback().await.map_err(interpret)?;
                        return Ok(None);
                    }
                    let enqueued = enqueue_on(&mut tx, job, max_attempts, at).await?;
                    tx.commit().await.map_err(interpret)?;
                    Ok(Some(enqueued))
                }
            }
        }
    };
}
pub(crate) use impl_job_repo;
