//! The queue's own job kind: `jobs.prune`, which deletes succeeded jobs past their retention
//! (scheduled hourly in `app::JOB_KINDS`).

use super::{Handler, JobContext, JobError};
use crate::domain::{Job, JobKind, now};
use crate::store::Store;
use futures_util::future::BoxFuture;
use std::time::Duration;

pub const PRUNE: JobKind = JobKind::new("jobs.prune");

/// Deletes succeeded jobs that finished more than `retention` ago.
pub struct Prune {
    pub store: Store,
    pub retention: Duration,
}

impl Handler for Prune {
    fn kind(&self) -> JobKind {
        PRUNE
    }

    fn run<'a>(&'a self, _job: &'a Job, _ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let Some(before) = retention_cutoff(self.retention) else {
                return Ok(());
            };
            let pruned = self
                .store
                .prune_jobs(before)
                .await
                .map_err(|e| JobError::Transient(e.to_string()))?;
            tracing::info!(pruned, "pruned succeeded jobs");
            Ok(())
        })
    }
}

/// The instant before which rows older than `retention` were written; `None` when the
/// retention reaches back past the start of time (nothing is old enough).
pub fn retention_cutoff(retention: Duration) -> Option<crate::domain::Timestamp> {
    let retention = chrono::TimeDelta::from_std(retention).unwrap_or(chrono::TimeDelta::MAX);
    now().checked_sub_signed(retention)
}
