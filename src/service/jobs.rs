//! Job queue administration for admins of a workspace: queue statistics, dead jobs with their
//! error history, replay and discard. Everything is scoped to the actor's workspace; system
//! jobs (no workspace) are for operators on the command line.

use super::{Actor, ServiceError};
use crate::domain::{
    FieldErrorCode, Job, JobId, JobScope, JobSelection, KeysetPage, Paged, QueueStat, Schedule, now,
};
use crate::jobs::Queue;

/// Most dead jobs one page holds.
pub const MAX_DEAD_PAGE: u32 = 100;
/// Most ids one replay or discard names.
pub const MAX_JOB_IDS: usize = 1_000;

#[derive(Clone, Debug)]
pub struct JobService {
    queue: Queue,
}

impl JobService {
    pub fn new(queue: Queue) -> Self {
        Self { queue }
    }

    /// The queue this service and the workers share.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Counts by kind and state of the workspace's jobs.
    pub async fn stats(&self, actor: &Actor) -> Result<Vec<QueueStat>, ServiceError> {
        actor.require_admin()?;
        Ok(self.queue.store().job_stats(scope(actor)).await?)
    }

    /// A page of the workspace's dead jobs, newest first (at most `MAX_DEAD_PAGE`).
    pub async fn dead(
        &self,
        actor: &Actor,
        kind: Option<&str>,
        page: KeysetPage<JobId>,
    ) -> Result<Paged<Job>, ServiceError> {
        actor.require_admin()?;
        if let Some(kind) = kind {
            self.check_kind(kind)?;
        }
        let page = page.capped(MAX_DEAD_PAGE as usize);
        Ok(self.queue.store().dead_jobs(scope(actor), kind, &page).await?)
    }

    /// The recurring schedules of the deployment (the same for every workspace).
    pub async fn schedules(&self, actor: &Actor) -> Result<Vec<Schedule>, ServiceError> {
        actor.require_admin()?;
        Ok(self.queue.store().schedules().await?)
    }

    /// Queues the selected dead jobs of the workspace again; returns how many.
    pub async fn replay(&self, actor: &Actor, selection: JobSelection) -> Result<u64, ServiceError> {
        actor.require_admin()?;
        self.check_selection(&selection)?;
        let at = now();
        let replayed = self
            .queue
            .store()
            .replay_jobs(scope(actor), &selection, at)
            .await?;
        if !replayed.is_empty() {
            self.queue.requeued(&replayed, at);
        }
        Ok(replayed.len() as u64)
    }

    /// Deletes the selected dead jobs of the workspace; returns how many.
    pub async fn discard(&self, actor: &Actor, selection: JobSelection) -> Result<u64, ServiceError> {
        actor.require_admin()?;
        self.check_selection(&selection)?;
        Ok(self.queue.store().discard_jobs(scope(actor), &selection).await?)
    }

    fn check_selection(&self, selection: &JobSelection) -> Result<(), ServiceError> {
        if selection.is_empty() {
            return Err(ServiceError::invalid(
                "ids",
                FieldErrorCode::Required,
                "name the jobs by `ids`, by `kind`, or both",
            ));
        }
        if selection.ids.len() > MAX_JOB_IDS {
            return Err(ServiceError::invalid(
                "ids",
                FieldErrorCode::TooLong,
                format!("at most {MAX_JOB_IDS} ids at once"),
            ));
        }
        match &selection.kind {
            Some(kind) => self.check_kind(kind),
            None => Ok(()),
        }
    }

    fn check_kind(&self, kind: &str) -> Result<(), ServiceError> {
        if self.queue.knows(kind) {
            Ok(())
        } else {
            Err(ServiceError::invalid(
                "kind",
                FieldErrorCode::Invalid,
                format!("`{kind}` is not a job kind"),
            ))
        }
    }
}

fn scope(actor: &Actor) -> JobScope {
    JobScope::Workspace(actor.workspace_id)
}
