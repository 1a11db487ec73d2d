//! The test job kinds `noop`, `sleep`, `flaky` and `panic`, for the process-level tests (error
//! reporting among them) and the queue benchmark. Compiled only with the `test-kinds` cargo
//! feature (the integration tests turn it on through the crate's dev-dependency on itself; the
//! benchmarks build with `--features test-kinds`), so a default build cannot run them, and
//! registered only when the `job_test_kinds` setting is on as well.

use super::{Handler, JobContext, JobError};
use crate::domain::{Jitter, Job, JobKind, RetryPolicy};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::time::Duration;

pub const NOOP: JobKind = JobKind::new("noop");
pub const SLEEP: JobKind = JobKind::new("sleep");
pub const FLAKY: JobKind = JobKind::new("flaky");
pub const PANIC: JobKind = JobKind::new("panic");

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
    fn kind(&self) -> JobKind {
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
    fn kind(&self) -> JobKind {
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
    /// Ask for the retry after this many milliseconds (`JobError::RetryAfter`) instead of the
    /// kind's backoff.
    #[serde(default)]
    retry_after_ms: Option<u64>,
}

/// `flaky`: `{"failures": N}` fails transiently until its error history holds N failures
/// (replays included), then succeeds (`"retryAfterMs": M` asks for each retry after M ms);
/// `{"permanent": true}` fails permanently.
pub struct Flaky;

impl Handler for Flaky {
    fn kind(&self) -> JobKind {
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
                let error = format!("flaky: attempt {} fails", job.attempts);
                return Err(match p.retry_after_ms {
                    Some(ms) => JobError::RetryAfter(Duration::from_millis(ms), error),
                    None => JobError::Transient(error),
                });
            }
            Ok(())
        })
    }
}

#[derive(Deserialize)]
struct PanicPayload {
    message: String,
}

/// `panic`: `{"message": "…"}` panics with the message, as a handler with a bug would.
pub struct Panic;

impl Handler for Panic {
    fn kind(&self) -> JobKind {
        PANIC
    }

    fn policy(&self) -> RetryPolicy {
        quick_policy()
    }

    fn run<'a>(&'a self, job: &'a Job, _ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let p: PanicPayload = serde_json::from_value(job.payload.clone())
                .map_err(|e| JobError::Permanent(format!("bad panic payload: {e}")))?;
            panic!("{}", p.message)
        })
    }
}
