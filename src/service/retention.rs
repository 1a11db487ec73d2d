//! Retention use cases: the workspace's policy (admins write, admins and members read), runs
//! on demand (`runRetention`) and on the daily schedule, and the list of past runs. A run is a
//! `retention.run` job on the queue; `RetentionRunHandler` carries it out through
//! `ops::retention`, and `RetentionScheduleHandler` (the daily cron tick) queues one per
//! workspace that has a policy.

use super::{Actor, ServiceError};
use crate::domain::{
    Job, JobKind, JobScope, KeysetPage, NewJob, Paged, RetentionCounts, RetentionDays, RetentionPolicy,
    RetentionRun, RetentionRunId, Role, RunTrigger, ValidationErrors, WorkspaceId, now,
};
use crate::events::Bus;
use crate::jobs::{Handler, JobContext, JobError, Queue};
use crate::store::{Store, StoreError};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tracing::instrument;

/// The job kind of one retention run.
pub const RETENTION_RUN: JobKind = JobKind::new("retention.run");
/// The job kind of the daily tick that queues a run per workspace with a policy.
pub const RETENTION_SCHEDULE: JobKind = JobKind::new("retention.schedule");
/// Most runs one page holds.
pub const MAX_RUN_PAGE: u32 = 100;

/// A policy as a client sends it: each part optional; days are checked here.
#[derive(Clone, Debug, Default)]
pub struct PolicyDraft {
    pub archive_after_days: Option<i64>,
    pub delete_archived_after_days: Option<i64>,
    pub compact_enrichment: bool,
    pub event_ttl_days: Option<i64>,
}

impl PolicyDraft {
    fn parse(self) -> Result<RetentionPolicy, ValidationErrors> {
        let mut errors = Vec::new();
        let mut days =
            |field: &str, v: Option<i64>| match v.map(|d| RetentionDays::parse(field, d)).transpose() {
                Ok(d) => d,
                Err(e) => {
                    errors.push(e);
                    None
                }
            };
        let policy = RetentionPolicy {
            archive_after_days: days("archiveAfterDays", self.archive_after_days),
            delete_archived_after_days: days("deleteArchivedAfterDays", self.delete_archived_after_days),
            compact_enrichment: self.compact_enrichment,
            event_ttl_days: days("eventTtlDays", self.event_ttl_days),
        };
        if errors.is_empty() {
            Ok(policy)
        } else {
            Err(ValidationErrors(errors))
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunPayload {
    run_id: uuid::Uuid,
}

#[derive(Clone, Debug)]
pub struct RetentionService {
    store: Store,
    queue: Queue,
}

impl RetentionService {
    pub fn new(store: Store, queue: Queue) -> Self {
        Self { store, queue }
    }

    /// The workspace's policy (an empty one when none is set).
    pub async fn policy(&self, actor: &Actor) -> Result<RetentionPolicy, ServiceError> {
        require_reader(actor)?;
        Ok(self
            .store
            .retention_policy(actor.workspace_id)
            .await?
            .unwrap_or_default())
    }

    /// Replaces the workspace's policy.
    #[instrument(skip_all, fields(workspace = %actor.workspace_id))]
    pub async fn set_policy(
        &self,
        actor: &Actor,
        draft: PolicyDraft,
    ) -> Result<RetentionPolicy, ServiceError> {
        actor.require_admin()?;
        let policy = draft.parse().map_err(ServiceError::Invalid)?;
        self.store
            .save_retention_policy(actor.workspace_id, &policy, now())
            .await?;
        Ok(policy)
    }

    /// Queues a run now. While a run of the same kind (dry or not) is queued or running, that
    /// one is returned instead of queueing another.
    #[instrument(skip_all, fields(workspace = %actor.workspace_id, dry_run))]
    pub async fn run_now(&self, actor: &Actor, dry_run: bool) -> Result<RetentionRun, ServiceError> {
        actor.require_admin()?;
        Ok(queue_run(
            &self.store,
            &self.queue,
            actor.workspace_id,
            RunTrigger::Manual,
            dry_run,
        )
        .await?)
    }

    /// A page of the workspace's runs, newest first (at most `MAX_RUN_PAGE`).
    pub async fn runs(
        &self,
        actor: &Actor,
        page: KeysetPage<RetentionRunId>,
    ) -> Result<Paged<RetentionRun>, ServiceError> {
        require_reader(actor)?;
        let page = page.capped(MAX_RUN_PAGE as usize);
        Ok(self.store.retention_runs(actor.workspace_id, &page).await?)
    }
}

/// Admins and members may read retention settings and runs.
fn require_reader(actor: &Actor) -> Result<(), ServiceError> {
    match actor.role {
        Role::Admin | Role::Member => Ok(()),
        other => Err(ServiceError::Forbidden(format!(
            "the {} role cannot see retention settings",
            other.as_str()
        ))),
    }
}

/// Queues a `retention.run` job for `ws` and records the run; returns the run already queued
/// or running when there is one of the same kind.
async fn queue_run(
    store: &Store,
    queue: &Queue,
    ws: WorkspaceId,
    trigger: RunTrigger,
    dry_run: bool,
) -> Result<RetentionRun, StoreError> {
    let run = RetentionRun {
        id: RetentionRunId::new(),
        workspace_id: ws,
        trigger,
        dry_run,
        started_at: now(),
        finished_at: None,
        counts: RetentionCounts::default(),
        error: None,
    };
    // recorded first, so the worker always finds it; a duplicate's record is removed below
    store.save_retention_run(&run).await?;
    let mut job = NewJob::new(
        RETENTION_RUN,
        serde_json::to_value(RunPayload {
            run_id: run.id.as_uuid(),
        })
        .unwrap_or_default(),
    );
    job.workspace_id = Some(ws);
    job.unique_key = Some(format!("retention:{ws}:{}", if dry_run { "dry" } else { "run" }));
    let enqueued = match queue.enqueue(job).await {
        Ok(enqueued) => enqueued,
        Err(e) => {
            store.delete_retention_run(ws, run.id).await?;
            return Err(e);
        }
    };
    if enqueued.created {
        return Ok(run);
    }
    store.delete_retention_run(ws, run.id).await?;
    let existing = store
        .job(JobScope::Workspace(ws), enqueued.id)
        .await?
        .and_then(|j| serde_json::from_value::<RunPayload>(j.payload).ok());
    match existing {
        Some(p) => store
            .retention_run(ws, RetentionRunId::from_uuid(p.run_id))
            .await?
            .ok_or(StoreError::NotFound),
        None => Err(StoreError::NotFound),
    }
}

/// Carries out one `retention.run` job.
pub struct RetentionRunHandler {
    pub store: Store,
    pub bus: Bus,
    /// Rows per transaction (`ops::retention::BATCH`).
    pub batch: u32,
}

impl RetentionRunHandler {
    async fn run_job(&self, job: &Job) -> Result<(), JobError> {
        let ws = job
            .workspace_id
            .ok_or_else(|| JobError::Permanent("a retention run needs a workspace".into()))?;
        let payload: RunPayload = serde_json::from_value(job.payload.clone())
            .map_err(|e| JobError::Permanent(format!("malformed retention job: {e}")))?;
        let transient = |e: StoreError| JobError::Transient(e.to_string());
        let mut run = self
            .store
            .retention_run(ws, RetentionRunId::from_uuid(payload.run_id))
            .await
            .map_err(transient)?
            .ok_or_else(|| JobError::Permanent("the retention run record is gone".into()))?;
        if run.finished_at.is_some() {
            return Ok(());
        }
        let policy = self
            .store
            .retention_policy(ws)
            .await
            .map_err(transient)?
            .unwrap_or_default();
        let bus = self.bus.clone();
        match crate::ops::retention::run(&self.store, &mut run, &policy, self.batch, |events| {
            bus.publish(events)
        })
        .await
        {
            Ok(()) => {
                tracing::info!(
                    run = %run.id,
                    archived = run.counts.archived,
                    deleted = run.counts.deleted,
                    enrichment_compacted = run.counts.enrichment_compacted,
                    events_compacted = run.counts.events_compacted,
                    dry_run = run.dry_run,
                    "retention run finished"
                );
                Ok(())
            }
            Err(e) => {
                run.error = Some(e.to_string());
                let _ = self.store.save_retention_run(&run).await;
                Err(transient(e))
            }
        }
    }
}

impl Handler for RetentionRunHandler {
    fn kind(&self) -> JobKind {
        RETENTION_RUN
    }

    fn run<'a>(&'a self, job: &'a Job, _ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(self.run_job(job))
    }

    /// A run that exhausted its attempts is finished with its last error.
    fn on_dead<'a>(&'a self, job: &'a Job, error: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let (Some(ws), Ok(p)) = (
                job.workspace_id,
                serde_json::from_value::<RunPayload>(job.payload.clone()),
            ) else {
                return;
            };
            if let Ok(Some(mut run)) = self
                .store
                .retention_run(ws, RetentionRunId::from_uuid(p.run_id))
                .await
            {
                run.finished_at = Some(now());
                run.error = Some(error.to_owned());
                if let Err(e) = self.store.save_retention_run(&run).await {
                    tracing::error!(error = %e, "cannot record a failed retention run");
                }
            }
        })
    }
}

/// The daily tick: queues a run for every workspace whose policy does something.
pub struct RetentionScheduleHandler {
    pub store: Store,
    pub queue: Queue,
}

impl RetentionScheduleHandler {
    /// Queues the scheduled runs; returns how many workspaces got one.
    pub async fn fire(&self) -> Result<usize, StoreError> {
        let mut queued = 0;
        for (ws, policy) in self.store.retention_policies().await? {
            if policy.is_empty() {
                continue;
            }
            queue_run(&self.store, &self.queue, ws, RunTrigger::Schedule, false).await?;
            queued += 1;
        }
        Ok(queued)
    }
}

impl Handler for RetentionScheduleHandler {
    fn kind(&self) -> JobKind {
        RETENTION_SCHEDULE
    }

    fn run<'a>(&'a self, _job: &'a Job, _ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let queued = self
                .fire()
                .await
                .map_err(|e| JobError::Transient(e.to_string()))?;
            tracing::info!(queued, "queued scheduled retention runs");
            Ok(())
        })
    }
}
