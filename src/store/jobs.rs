//! The job queue's persistence. A claim locks the rows it takes with `FOR UPDATE SKIP LOCKED`
//! on PostgreSQL; on SQLite the single writer connection serialises claims.
//!
//! Ownership of a running job is its lease token: every write by a worker names it, so a
//! worker whose lease expired changes nothing. A dead job leaves only by `replay_jobs` or
//! `discard_jobs`.
//!
//! **The job queue** is a table, not a broker: a claim is one `UPDATE … WHERE id IN (SELECT …
//! ORDER BY priority DESC, run_at, id LIMIT n [FOR UPDATE SKIP LOCKED]) RETURNING …` that starts
//! an attempt and sets a lease (token, expiry); on SQLite the single writer connection serialises
//! claims, on PostgreSQL `SKIP LOCKED` lets workers in many processes claim without waiting on
//! each other. Delivery is **at least once**: a worker that dies stops heartbeating and its jobs
//! are reclaimed when the lease ends (or dead-lettered with "lease expired" when out of attempts),
//! so handlers must be idempotent. Completions are **batched** (one statement for everything
//! finished while the previous one ran); failures are written one by one because each appends to
//! the job's error history and may append a `job.dead` event in the same transaction. Unique keys
//! are a partial unique index over queued and running jobs (`ON CONFLICT … WHERE`). A cron tick
//! fires once across instances because firing is a compare-and-set on the stored `next_run_at` in
//! the same transaction as the enqueue; after downtime only the latest missed tick fires.
//!
//! **With a broker** (`jobs::amqp`) the rows stay the truth and messages only carry ids:
//! `claim_jobs_by_id` takes the rows a delivery names if they are still queued and due,
//! `published_at` records that a message for a row's current wait reached the broker, and the
//! relay takes rows without one (`take_unpublished_jobs`, or `take_stale_jobs` when a message
//! went missing). Everything that puts a row back in the queue clears `published_at`.

use super::dialect::{Conn, Row, Sql};
use super::events::append_events;
use super::keyset::KeyOrder;
use super::{Lease, Reclaimed, Store, StoreError, StoreResult, Unpublished};
use crate::domain::{
    Duplicate, Enqueued, Job, JobFailure, JobId, JobScope, JobSelection, JobState, KeysetPage, NewJob, Paged,
    QueueStat, Schedule, Timestamp, WorkspaceId,
};

/// Columns of `jobs` in the order `job_from_row` reads them.
const JOB_COLUMNS: &str = "id, kind, workspace_id, payload, CAST(priority AS BIGINT), run_at, state, \
     CAST(attempts AS BIGINT), CAST(max_attempts AS BIGINT), unique_key, lease_token, lease_until, \
     errors, progress, result, created_at, updated_at, finished_at";
const SCHEDULE_COLUMNS: &str = "name, cron, tz, kind, payload, next_run_at, last_run_at, enabled";
/// Most rows one statement names, well under both backends' bind limits.
const CHUNK: usize = 500;
/// Most expired leases one reclaim pass handles.
const RECLAIM_BATCH: i64 = 200;

fn count(v: i64) -> u32 {
    v.clamp(0, i64::from(u32::MAX)) as u32
}

fn job_from_row(r: &Row) -> StoreResult<Job> {
    let state: String = r.get(6)?;
    Ok(Job {
        id: JobId::from_i64(r.get(0)?),
        kind: r.get(1)?,
        workspace_id: r.get::<Option<uuid::Uuid>>(2)?.map(WorkspaceId::from_uuid),
        payload: r.json(3)?,
        priority: r.get::<i64>(4)?.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16,
        run_at: r.get(5)?,
        state: JobState::parse(&state)
            .ok_or_else(|| StoreError::corrupt(format!("unknown job state {state}")))?,
        attempts: count(r.get(7)?),
        max_attempts: count(r.get(8)?),
        unique_key: r.get(9)?,
        lease_token: r.get(10)?,
        lease_until: r.get(11)?,
        errors: r.json(12)?,
        progress: r.opt_json(13)?,
        result: r.opt_json(14)?,
        created_at: r.get(15)?,
        updated_at: r.get(16)?,
        finished_at: r.get(17)?,
    })
}

fn schedule_from_row(r: &Row) -> StoreResult<Schedule> {
    Ok(Schedule {
        name: r.get(0)?,
        cron: r.get(1)?,
        tz: r.get(2)?,
        kind: r.get(3)?,
        payload: r.json(4)?,
        next_run_at: r.get(5)?,
        last_run_at: r.get(6)?,
        enabled: r.get::<i64>(7)? != 0,
    })
}

fn jobs_from_rows(rows: &[Row]) -> StoreResult<Vec<Job>> {
    rows.iter().map(job_from_row).collect()
}

fn unpublished_from_rows(rows: &[Row]) -> StoreResult<Vec<Unpublished>> {
    rows.iter()
        .map(|r| {
            Ok(Unpublished {
                id: JobId::from_i64(r.get(0)?),
                kind: r.get(1)?,
                run_at: r.get(2)?,
            })
        })
        .collect()
}

/// Only a running job still held with `token`: a worker that lost its lease changes
/// nothing.
fn push_owned(qb: &mut Sql, id: i64, token: &str) {
    qb.push(" WHERE state = 'running' AND id = ");
    qb.bind(id);
    qb.push(" AND lease_token = ");
    qb.bind(token.to_owned());
}

fn push_scope(qb: &mut Sql, scope: JobScope) {
    if let JobScope::Workspace(ws) = scope {
        qb.push(" AND workspace_id = ");
        qb.bind(ws);
    }
}

fn push_ids(qb: &mut Sql, ids: &[JobId]) {
    qb.bind_list(ids.iter().map(|id| id.as_i64()));
}

/// ` AND …` conditions of a selection of dead jobs in `scope`.
fn push_selection(qb: &mut Sql, scope: JobScope, selection: &JobSelection) {
    push_scope(qb, scope);
    if !selection.ids.is_empty() {
        qb.push(" AND id IN (");
        push_ids(qb, &selection.ids);
        qb.push(")");
    }
    if let Some(kind) = &selection.kind {
        qb.push(" AND kind = ");
        qb.bind(kind.clone());
    }
}

async fn insert_job(
    conn: &mut Conn,
    job: &NewJob,
    max_attempts: u32,
    at: Timestamp,
) -> StoreResult<Option<JobId>> {
    let mut qb = conn.sql(
        "INSERT INTO jobs (kind, workspace_id, payload, priority, run_at, state, attempts, \
         max_attempts, unique_key, errors, created_at, updated_at) VALUES (",
    );
    qb.bind(job.kind.as_str().to_owned());
    qb.push(", ");
    qb.bind(job.workspace_id.map(|ws| ws.as_uuid()));
    qb.push(", ");
    qb.bind(job.payload.to_string());
    qb.push(", ");
    qb.bind(i64::from(job.priority));
    qb.push(", ");
    qb.bind(job.run_at.unwrap_or(at));
    qb.push(", 'queued', 0, ");
    qb.bind(i64::from(max_attempts));
    qb.push(", ");
    qb.bind(job.unique_key.clone());
    qb.push(", '[]', ");
    qb.bind(at);
    qb.push(", ");
    qb.bind(at);
    qb.push(") ON CONFLICT (unique_key) WHERE state IN ('queued', 'running') DO NOTHING RETURNING id");
    let row = conn.fetch_optional(qb).await?;
    row.map(|r| r.get(0).map(JobId::from_i64)).transpose()
}

/// Debounce: a queued job holding `key` takes the new payload, priority and time.
async fn replace_queued(
    conn: &mut Conn,
    key: &str,
    job: &NewJob,
    at: Timestamp,
) -> StoreResult<Option<JobId>> {
    let mut qb = conn.sql("UPDATE jobs SET published_at = NULL, payload = ");
    qb.bind(job.payload.to_string());
    qb.push(", priority = ");
    qb.bind(i64::from(job.priority));
    qb.push(", run_at = ");
    qb.bind(job.run_at.unwrap_or(at));
    qb.push(", updated_at = ");
    qb.bind(at);
    qb.push(" WHERE state = 'queued' AND unique_key = ");
    qb.bind(key.to_owned());
    qb.push(" RETURNING id");
    let row = conn.fetch_optional(qb).await?;
    row.map(|r| r.get(0).map(JobId::from_i64)).transpose()
}

async fn live_holder(conn: &mut Conn, key: &str) -> StoreResult<Option<JobId>> {
    let mut qb = conn.sql("SELECT id FROM jobs WHERE state IN ('queued', 'running') AND unique_key = ");
    qb.bind(key.to_owned());
    let row = conn.fetch_optional(qb).await?;
    row.map(|r| r.get(0).map(JobId::from_i64)).transpose()
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
    let mut qb =
        conn.sql("UPDATE jobs SET lease_token = NULL, lease_until = NULL, published_at = NULL, errors = ");
    qb.bind(errors);
    qb.push(", updated_at = ");
    qb.bind(at);
    match retry_at {
        Some(t) => {
            qb.push(", state = 'queued', run_at = ");
            qb.bind(t);
        }
        None => {
            qb.push(", state = 'dead', finished_at = ");
            qb.bind(at);
        }
    }
    push_owned(&mut qb, job.id.as_i64(), token);
    let done = conn.execute(qb).await?;
    Ok(done == 1)
}

impl Store {
    pub async fn enqueue_job(&self, job: &NewJob, max_attempts: u32, at: Timestamp) -> StoreResult<Enqueued> {
        let mut conn = self.writer().await?;
        enqueue_on(&mut conn, job, max_attempts, at).await
    }

    pub async fn claim_jobs(
        &self,
        kinds: &[&str],
        limit: u32,
        lease: &Lease,
        at: Timestamp,
    ) -> StoreResult<Vec<Job>> {
        if kinds.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let mut qb = self.sql("UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_token = ");
        qb.bind(lease.token.clone());
        qb.push(", lease_until = ");
        qb.bind(lease.until);
        qb.push(", updated_at = ");
        qb.bind(at);
        qb.push(" WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND run_at <= ");
        qb.bind(at);
        qb.push(" AND kind IN (");
        for (i, kind) in kinds.iter().enumerate() {
            if i > 0 {
                qb.push(", ");
            }
            qb.bind((*kind).to_owned());
        }
        qb.push(") ORDER BY priority DESC, run_at, id LIMIT ");
        qb.bind(i64::from(limit));
        qb.push(self.dialect().skip_locked());
        qb.push(") RETURNING ");
        qb.push(JOB_COLUMNS);
        let rows = self.write_all(qb).await?;
        let mut jobs = jobs_from_rows(&rows)?;
        jobs.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a.id.cmp(&b.id))
        });
        Ok(jobs)
    }

    /// Enqueues several jobs in one transaction (one commit for all); each as `enqueue_job`.
    pub async fn enqueue_jobs(&self, jobs: &[(NewJob, u32)], at: Timestamp) -> StoreResult<Vec<Enqueued>> {
        let mut tx = self.begin().await?;
        let mut out = Vec::with_capacity(jobs.len());
        for (job, max_attempts) in jobs {
            out.push(enqueue_on(&mut tx, job, *max_attempts, at).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Claims the named jobs that are still queued and due, whatever their kind (a broker
    /// delivered their ids; a kind without a handler is then failed by the worker, visibly):
    /// one statement, so of two workers holding the same id only one gets the row.
    pub async fn claim_jobs_by_id(
        &self,
        ids: &[JobId],
        lease: &Lease,
        at: Timestamp,
    ) -> StoreResult<Vec<Job>> {
        let mut jobs = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let mut qb =
                self.sql("UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_token = ");
            qb.bind(lease.token.clone());
            qb.push(", lease_until = ");
            qb.bind(lease.until);
            qb.push(", published_at = NULL, updated_at = ");
            qb.bind(at);
            // rows locked in id order, so that claims never wait on each other in a circle
            qb.push(" WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND run_at <= ");
            qb.bind(at);
            qb.push(" AND id IN (");
            push_ids(&mut qb, chunk);
            qb.push(") ORDER BY id");
            qb.push(self.dialect().for_update());
            qb.push(") RETURNING ");
            qb.push(JOB_COLUMNS);
            let rows = self.write_all(qb).await?;
            jobs.extend(jobs_from_rows(&rows)?);
        }
        Ok(jobs)
    }

    /// Takes up to `limit` queued jobs due by `until`, last written before `written_before`,
    /// that have no message at the broker, marking them published at `at` (so a second relay
    /// does not take them too); the caller publishes them and hands back those it could not
    /// (`unpublish_jobs`).
    pub async fn take_unpublished_jobs(
        &self,
        until: Timestamp,
        written_before: Timestamp,
        limit: u32,
        at: Timestamp,
    ) -> StoreResult<Vec<Unpublished>> {
        self.take_for_publishing(limit, at, |qb| {
            qb.push(" AND published_at IS NULL AND run_at <= ");
            qb.bind(until);
            qb.push(" AND updated_at <= ");
            qb.bind(written_before);
        })
        .await
    }

    /// Takes up to `limit` jobs due since `before` whose message was handed to the broker
    /// before then and has not led to a claim (lost with a broker, or held by a consumer that
    /// is busy), marking them published again at `at`.
    pub async fn take_stale_jobs(
        &self,
        before: Timestamp,
        limit: u32,
        at: Timestamp,
    ) -> StoreResult<Vec<Unpublished>> {
        self.take_for_publishing(limit, at, |qb| {
            qb.push(" AND run_at <= ");
            qb.bind(before);
            qb.push(" AND published_at <= ");
            qb.bind(before);
        })
        .await
    }

    /// Marks up to `limit` queued jobs that `conditions` (` AND …`) select as published at
    /// `at`, in one statement, and returns them.
    async fn take_for_publishing(
        &self,
        limit: u32,
        at: Timestamp,
        conditions: impl FnOnce(&mut Sql),
    ) -> StoreResult<Vec<Unpublished>> {
        let mut qb = self.sql("UPDATE jobs SET published_at = ");
        qb.bind(at);
        qb.push(" WHERE id IN (SELECT id FROM jobs WHERE state = 'queued'");
        conditions(&mut qb);
        qb.push(" ORDER BY run_at, id LIMIT ");
        qb.bind(i64::from(limit));
        qb.push(self.dialect().skip_locked());
        qb.push(") RETURNING id, kind, run_at");
        let rows = self.write_all(qb).await?;
        unpublished_from_rows(&rows)
    }

    /// Records that the broker confirmed messages for these queued jobs, unless a job changed
    /// after `sent` (then its current wait needs a message of its own). Rows another
    /// statement holds are skipped: a worker is claiming them (the mark would be cleared), or
    /// a relay is taking them (it marks them itself).
    pub async fn mark_jobs_published(
        &self,
        ids: &[JobId],
        sent: Timestamp,
        at: Timestamp,
    ) -> StoreResult<u64> {
        let mut marked = 0;
        for chunk in ids.chunks(CHUNK) {
            let mut qb = self.sql("UPDATE jobs SET published_at = ");
            qb.bind(at);
            qb.push(
                " WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND published_at IS NULL \
                 AND updated_at <= ",
            );
            qb.bind(sent);
            qb.push(" AND id IN (");
            push_ids(&mut qb, chunk);
            qb.push(")");
            qb.push(self.dialect().skip_locked());
            qb.push(")");
            marked += self.execute(qb).await?;
        }
        Ok(marked)
    }

    /// Hands queued jobs back to the relay: their message was not confirmed. Rows another
    /// statement holds are skipped (a claim or a relay is already moving them on).
    pub async fn unpublish_jobs(&self, ids: &[JobId]) -> StoreResult<u64> {
        let mut done = 0;
        for chunk in ids.chunks(CHUNK) {
            let mut qb = self.sql(
                "UPDATE jobs SET published_at = NULL WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' \
                 AND id IN (",
            );
            push_ids(&mut qb, chunk);
            qb.push(")");
            qb.push(self.dialect().skip_locked());
            qb.push(")");
            done += self.execute(qb).await?;
        }
        Ok(done)
    }

    pub async fn heartbeat_job(
        &self,
        id: JobId,
        token: &str,
        until: Timestamp,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let mut qb = self.sql("UPDATE jobs SET lease_until = ");
        qb.bind(until);
        qb.push(", updated_at = ");
        qb.bind(at);
        push_owned(&mut qb, id.as_i64(), token);
        let done = self.execute(qb).await?;
        Ok(done == 1)
    }

    pub async fn save_job_progress(
        &self,
        id: JobId,
        token: &str,
        progress: &serde_json::Value,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let mut qb = self.sql("UPDATE jobs SET progress = ");
        qb.bind(progress.to_string());
        qb.push(", updated_at = ");
        qb.bind(at);
        push_owned(&mut qb, id.as_i64(), token);
        let done = self.execute(qb).await?;
        Ok(done == 1)
    }

    pub async fn complete_jobs(&self, done: &[(JobId, String)], at: Timestamp) -> StoreResult<u64> {
        let mut completed = 0;
        for chunk in done.chunks(CHUNK / 2) {
            let mut qb = self.sql(
                "UPDATE jobs SET state = 'succeeded', lease_token = NULL, lease_until = NULL, finished_at = ",
            );
            qb.bind(at);
            qb.push(", updated_at = ");
            qb.bind(at);
            qb.push(" WHERE state = 'running' AND (");
            for (i, (id, token)) in chunk.iter().enumerate() {
                qb.push(if i == 0 { "(id = " } else { " OR (id = " });
                qb.bind(id.as_i64());
                qb.push(" AND lease_token = ");
                qb.bind(token.clone());
                qb.push(")");
            }
            qb.push(")");
            completed += self.execute(qb).await?;
        }
        Ok(completed)
    }

    pub async fn fail_job(
        &self,
        job: &Job,
        failure: &JobFailure,
        retry_at: Option<Timestamp>,
    ) -> StoreResult<bool> {
        let mut errors = job.errors.clone();
        errors.push(failure.clone());
        let mut tx = self.begin().await?;
        if !record_failure(&mut tx, job, &errors, retry_at, failure.at).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        if retry_at.is_none()
            && let Some(event) = job.dead_event(&failure.error, failure.at)
        {
            append_events(&mut tx, &[event]).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn reclaim_expired_jobs(&self, at: Timestamp) -> StoreResult<Reclaimed> {
        let mut tx = self.begin().await?;
        let mut qb = self.sql("SELECT ");
        qb.push(JOB_COLUMNS);
        qb.push(" FROM jobs WHERE state = 'running' AND lease_until < ");
        qb.bind(at);
        qb.push(" ORDER BY lease_until LIMIT ");
        qb.bind(RECLAIM_BATCH);
        qb.push(self.dialect().skip_locked());
        let rows = tx.fetch_all(qb).await?;
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
        tx.commit().await?;
        Ok(reclaimed)
    }

    pub async fn job(&self, scope: JobScope, id: JobId) -> StoreResult<Option<Job>> {
        let mut qb = self.sql("SELECT ");
        qb.push(JOB_COLUMNS);
        qb.push(" FROM jobs WHERE id = ");
        qb.bind(id.as_i64());
        push_scope(&mut qb, scope);
        let row = self.fetch_optional(qb).await?;
        row.map(|r| job_from_row(&r)).transpose()
    }

    pub async fn job_stats(&self, scope: JobScope) -> StoreResult<Vec<QueueStat>> {
        let mut qb = self.sql(
            "SELECT kind, state, COUNT(*), MIN(CASE WHEN state = 'queued' THEN run_at END) \
             FROM jobs WHERE 1 = 1",
        );
        push_scope(&mut qb, scope);
        qb.push(" GROUP BY kind, state ORDER BY kind, state");
        let rows = self.fetch_all(qb).await?;
        let mut stats = Vec::with_capacity(rows.len());
        for r in &rows {
            let state: String = r.get(1)?;
            let Some(state) = JobState::parse(&state) else {
                continue;
            };
            stats.push(QueueStat {
                kind: r.get(0)?,
                state,
                count: r.get::<i64>(2)?.max(0) as u64,
                oldest_run_at: r.get(3)?,
            });
        }
        Ok(stats)
    }

    /// A page of dead jobs, newest first.
    pub async fn dead_jobs(
        &self,
        scope: JobScope,
        kind: Option<&str>,
        page: &KeysetPage<JobId>,
    ) -> StoreResult<Paged<Job>> {
        let mut qb = self.sql("SELECT ");
        qb.push(JOB_COLUMNS);
        qb.push(" FROM jobs WHERE state = 'dead'");
        push_scope(&mut qb, scope);
        if let Some(kind) = kind {
            qb.push(" AND kind = ");
            qb.bind(kind.to_owned());
        }
        self.keyset_page(qb, KeyOrder::NEWEST_FIRST, page, job_from_row)
            .await
    }

    /// Queues the selected dead jobs again; returns them as queued (they need a message).
    pub async fn replay_jobs(
        &self,
        scope: JobScope,
        selection: &JobSelection,
        at: Timestamp,
    ) -> StoreResult<Vec<Unpublished>> {
        let mut qb = self.sql("UPDATE jobs SET state = 'queued', attempts = 0, run_at = ");
        qb.bind(at);
        qb.push(", finished_at = NULL, lease_token = NULL, lease_until = NULL, published_at = NULL, updated_at = ");
        qb.bind(at);
        qb.push(" WHERE state = 'dead'");
        push_selection(&mut qb, scope, selection);
        qb.push(
            " AND (unique_key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs live \
             WHERE live.unique_key = jobs.unique_key AND live.state IN ('queued', 'running')))",
        );
        qb.push(" RETURNING id, kind, run_at");
        let rows = self.write_all(qb).await?;
        unpublished_from_rows(&rows)
    }

    pub async fn discard_jobs(&self, scope: JobScope, selection: &JobSelection) -> StoreResult<u64> {
        let mut qb = self.sql("DELETE FROM jobs WHERE state = 'dead'");
        push_selection(&mut qb, scope, selection);
        let done = self.execute(qb).await?;
        Ok(done)
    }

    pub async fn prune_jobs(&self, before: Timestamp) -> StoreResult<u64> {
        let mut qb = self.sql("DELETE FROM jobs WHERE state = 'succeeded' AND finished_at < ");
        qb.bind(before);
        let done = self.execute(qb).await?;
        Ok(done)
    }

    pub async fn upsert_schedule(&self, s: &Schedule) -> StoreResult<()> {
        let mut qb = self.sql("INSERT INTO schedules (");
        qb.push(SCHEDULE_COLUMNS);
        qb.push(") VALUES (");
        qb.bind(s.name.clone());
        qb.push(", ");
        qb.bind(s.cron.clone());
        qb.push(", ");
        qb.bind(s.tz.clone());
        qb.push(", ");
        qb.bind(s.kind.clone());
        qb.push(", ");
        qb.bind(s.payload.to_string());
        qb.push(", ");
        qb.bind(s.next_run_at);
        qb.push(", ");
        qb.bind(s.last_run_at);
        qb.push(", ");
        qb.bind(i64::from(s.enabled));
        // A changed cron or zone restarts the schedule; otherwise the stored next
        // tick stands, so a restarting instance neither skips nor repeats one.
        qb.push(
            ") ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, payload = excluded.payload, \
             enabled = excluded.enabled, next_run_at = CASE WHEN schedules.cron = excluded.cron \
             AND schedules.tz = excluded.tz THEN schedules.next_run_at ELSE excluded.next_run_at END, \
             cron = excluded.cron, tz = excluded.tz",
        );
        self.execute(qb).await.map(drop)
    }

    pub async fn schedules(&self) -> StoreResult<Vec<Schedule>> {
        let mut qb = self.sql("SELECT ");
        qb.push(SCHEDULE_COLUMNS);
        qb.push(" FROM schedules ORDER BY name");
        let rows = self.fetch_all(qb).await?;
        rows.iter().map(schedule_from_row).collect()
    }

    pub async fn fire_schedule(
        &self,
        name: &str,
        due: Timestamp,
        next: Timestamp,
        job: &NewJob,
        max_attempts: u32,
        at: Timestamp,
    ) -> StoreResult<Option<Enqueued>> {
        let mut tx = self.begin().await?;
        let mut qb = self.sql("UPDATE schedules SET next_run_at = ");
        qb.bind(next);
        qb.push(", last_run_at = ");
        qb.bind(due);
        qb.push(" WHERE enabled = 1 AND name = ");
        qb.bind(name.to_owned());
        qb.push(" AND next_run_at = ");
        qb.bind(due);
        let moved = tx.execute(qb).await?;
        if moved != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        let enqueued = enqueue_on(&mut tx, job, max_attempts, at).await?;
        tx.commit().await?;
        Ok(Some(enqueued))
    }
}
