//! Built-in job kinds: `jobs.prune` (deletes succeeded jobs past their retention, scheduled
//! hourly), and the test kinds `noop`, `sleep` and `flaky`, registered only when the
//! `job_test_kinds` setting is on (the benchmark and the process-level tests use them).

use super::schedule::{ScheduleError, ScheduleSpec};
use super::{Handler, JobContext, JobError, Registry};
use crate::domain::{Jitter, Job, RetryPolicy, now};
use crate::store::Store;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::time::Duration;

pub const PRUNE: &str = "jobs.prune";
pub const NOOP: &str = "noop";
pub const SLEEP: &str = "sleep";
pub const FLAKY: &str = "flaky";

/// Deletes succeeded jobs that finished more than `retention` ago.
pub struct Prune {
    pub store: Store,
    pub retention: Duration,
}

impl Handler for Prune {
    fn kind(&self) -> &'static str {
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

/// Registers pruning: the handler and its hourly schedule.
pub fn register_prune(
    registry: &mut Registry,
    store: Store,
    retention: Duration,
) -> Result<(), ScheduleError> {
    registry.register(Prune { store, retention });
    registry.schedule(ScheduleSpec {
        name: PRUNE.into(),
        cron: "17 * * * *".into(),
        tz: "UTC".into(),
        kind: PRUNE.into(),
        payload: serde_json::json!({}),
    })?;
    Ok(())
}

/// Test kinds retry fast.
fn quick_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base: Duration::from_millis(20),
        max: Duration::from_millis(200),
        jitter: Jitter::Equal,
    }
}

/// `noop`: succeeds at once.
pub struct Noop;

impl Handler for Noop {
    fn kind(&self) -> &'static str {
        NOOP
    }

    fn policy(&self) -> RetryPolicy {
        quick_policy()
    }

    fn run<'a>(&'a self, _job: &'a Job, _ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async { Ok(()) })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SleepPayload {
    ms: u64,
    /// Sleep on the first attempt only; later attempts succeed at once.
    #[serde(default)]
    first_attempt_only: bool,
}

/// `sleep`: `{"ms": N}` waits N milliseconds, then succeeds (a job that blocks);
/// `{"ms": N, "firstAttemptOnly": true}` blocks only its first attempt.
pub struct Sleep;

impl Handler for Sleep {
    fn kind(&self) -> &'static str {
        SLEEP
    }

    fn policy(&self) -> RetryPolicy {
        quick_policy()
    }

    fn run<'a>(&'a self, job: &'a Job, _ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let p: SleepPayload = serde_json::from_value(job.payload.clone())
                .map_err(|e| JobError::Permanent(format!("bad sleep payload: {e}")))?;
            if job.attempts == 1 || !p.first_attempt_only {
                tokio::time::sleep(Duration::from_millis(p.ms)).await;
            }
            Ok(())
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FlakyPayload {
    /// Attempts fail (transiently) until the job's history holds this many failures.
    #[serde(default)]
    failures: usize,
    /// Fail permanently instead.
    #[serde(default)]
    permanent: bool,
}

/// `flaky`: `{"failures": N}` fails transiently until its error history holds N failures
/// (replays included), then succeeds; `{"permanent": true}` fails permanently.
pub struct Flaky;

impl Handler for Flaky {
    fn kind(&self) -> &'static str {
        FLAKY
    }

    fn policy(&self) -> RetryPolicy {
        quick_policy()
    }

    fn run<'a>(&'a self, job: &'a Job, _ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let p: FlakyPayload = serde_json::from_value(job.payload.clone())
                .map_err(|e| JobError::Permanent(format!("bad flaky payload: {e}")))?;
            if p.permanent {
                return Err(JobError::Permanent("flaky: told to fail for good".into()));
            }
            if job.errors.len() < p.failures {
                return Err(JobError::Transient(format!(
                    "flaky: attempt {} fails",
                    job.attempts
                )));
            }
            Ok(())
        })
    }
}

/// Registers `noop`, `sleep` and `flaky`.
pub fn register_test_kinds(registry: &mut Registry) {
    registry.register(Noop).register(Sleep).register(Flaky);
}
