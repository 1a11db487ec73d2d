//! Background work on the durable queue: `Queue` (what services enqueue through), the
//! `Handler` contract one job kind implements, the `Registry` of kinds and their schedules,
//! `worker::Workers` (claim, run, heartbeat, retry, dead-letter, reclaim) and
//! `schedule::Scheduler` (cron ticks fired once across instances).
//!
//! Delivery is at least once: a job whose worker dies is run again after its lease expires,
//! so handlers must be idempotent. The queue's rows live in `store`; nothing here speaks SQL.
//!
//! Job kinds have one list, `app::JOB_KINDS` (it sits in `app` because handlers live in the
//! layers above this one): a line per kind with its handler's constructor and its schedule,
//! from which `app::registry` fills the `Registry`. A kind's name is a `domain::JobKind`
//! constant beside its handler, and a `NewJob` takes nothing else; `JobKind::new` is called
//! only with a literal, so a test (`tests/api/contracts.rs`,
//! `every_job_kind_the_code_names_is_registered`) can read every kind the code can enqueue
//! from the source and fail when one is not in the list. A new kind is its handler and one line
//! there. The test kinds (`test_kinds`) exist only with the `test-kinds` cargo feature.
//!
//! Delivery is the database queue unless a `amqp::Broker` is attached to the `Queue`
//! (`queue_url`): then enqueues also publish a message per job and workers consume RabbitMQ,
//! falling back to claiming from the database while the broker is down (`amqp`'s header).

pub mod amqp;
pub mod builtin;
pub mod metrics;
pub mod schedule;
#[cfg(feature = "test-kinds")]
pub mod test_kinds;
pub mod worker;

use crate::domain::{Enqueued, Job, JobId, JobKind, NewJob, RetryPolicy, Timestamp, now};
use crate::store::{Store, StoreError};
use futures_util::future::BoxFuture;
use metrics::JobMetrics;
use schedule::{ScheduleError, ScheduleSpec};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;

/// Why a job's attempt failed, which decides what happens next.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth retrying with the kind's backoff.
    #[error("{0}")]
    Transient(String),
    /// Worth retrying, not before the given delay (e.g. a provider's `Retry-After`).
    #[error("{1}")]
    RetryAfter(Duration, String),
    /// Retrying cannot help: the job goes straight to the dead state.
    #[error("{0}")]
    Permanent(String),
}

/// One kind of job.
pub trait Handler: Send + Sync + 'static {
    /// The kind this handler runs, e.g. `enrich.leads`: the constant beside the handler.
    fn kind(&self) -> JobKind;
    /// How often and how soon failed attempts are retried.
    fn policy(&self) -> RetryPolicy {
        RetryPolicy::default()
    }
    /// Runs one attempt. Must be idempotent: an attempt can be repeated after a crash.
    fn run<'a>(&'a self, job: &'a Job, ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>>;
    /// Called once after the job moved to the dead state.
    fn on_dead<'a>(&'a self, _job: &'a Job, _error: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// What a running job may use besides its row: progress reports and whether its lease is
/// still held (a job whose lease was lost should stop early; its result would be ignored).
pub struct JobContext {
    store: Store,
    id: JobId,
    token: String,
    lost: Arc<AtomicBool>,
}

impl JobContext {
    pub(crate) fn new(store: Store, id: JobId, token: String, lost: Arc<AtomicBool>) -> Self {
        Self {
            store,
            id,
            token,
            lost,
        }
    }

    /// Stores `progress` in the job's row (shown to whoever reads the job).
    pub async fn progress(&self, progress: serde_json::Value) -> Result<(), JobError> {
        let held = self
            .store
            .save_job_progress(self.id, &self.token, &progress, now())
            .await
            .map_err(|e| JobError::Transient(format!("cannot save progress: {e}")))?;
        if !held {
            self.lost.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// True once the worker learnt that another claim owns the job now.
    pub fn lease_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

/// Enqueues jobs and wakes this process's workers at once.
#[derive(Clone)]
pub struct Queue {
    store: Store,
    wake: Arc<Notify>,
    /// The registered kinds and their attempts, from the registry once installed.
    attempts: Arc<OnceLock<HashMap<&'static str, (JobKind, u32)>>>,
    metrics: JobMetrics,
    /// RabbitMQ, when it delivers the jobs.
    broker: Arc<OnceLock<amqp::Broker>>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Queue")
    }
}

impl Queue {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            wake: Arc::new(Notify::new()),
            attempts: Arc::new(OnceLock::new()),
            metrics: JobMetrics::new(),
            broker: Arc::new(OnceLock::new()),
        }
    }

    /// Delivers jobs through `broker` from now on (every clone of this queue); the first
    /// broker attached wins.
    pub fn attach(&self, broker: amqp::Broker) {
        let _ = self.broker.set(broker);
    }

    /// The broker that delivers jobs, if one is attached.
    pub fn broker(&self) -> Option<&amqp::Broker> {
        self.broker.get()
    }

    /// Enqueues `job` (see `Store::enqueue_job` for unique keys); attempts default to the
    /// kind's retry policy.
    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued, StoreError> {
        let attempts = job
            .max_attempts
            .unwrap_or_else(|| self.default_attempts(job.kind.as_str()));
        let at = now();
        let enqueued = self.store.enqueue_job(&job, attempts, at).await?;
        self.announce(&job, enqueued, at);
        self.wake.notify_waiters();
        Ok(enqueued)
    }

    /// Enqueues several jobs in one transaction (one commit); each as `enqueue`.
    pub async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, StoreError> {
        let with_attempts: Vec<(NewJob, u32)> = jobs
            .into_iter()
            .map(|job| {
                let attempts = job
                    .max_attempts
                    .unwrap_or_else(|| self.default_attempts(job.kind.as_str()));
                (job, attempts)
            })
            .collect();
        let at = now();
        let enqueued = self.store.enqueue_jobs(&with_attempts, at).await?;
        for ((job, _), e) in with_attempts.iter().zip(&enqueued) {
            self.announce(job, *e, at);
        }
        self.wake.notify_waiters();
        Ok(enqueued)
    }

    /// Publishes a message for a row just written, when a broker delivers jobs: a new job, or
    /// a debounced one whose payload and time were replaced.
    fn announce(&self, job: &NewJob, enqueued: Enqueued, at: Timestamp) {
        let changed = enqueued.created || job.on_duplicate == crate::domain::Duplicate::Replace;
        if let Some(broker) = self.broker()
            && changed
        {
            broker.announce_row(enqueued.id, job.kind.as_str(), job.run_at.unwrap_or(at), at);
        }
    }

    /// Jobs put back in the queue outside `enqueue` (a replay, a cron tick): publishes their
    /// messages when a broker delivers jobs, and wakes this process's workers.
    pub fn requeued(&self, jobs: &[crate::store::Unpublished], at: Timestamp) {
        if let Some(broker) = self.broker() {
            for job in jobs {
                broker.announce_row(job.id, &job.kind, job.run_at, at);
            }
        }
        self.wake.notify_waiters();
    }

    /// Whether a handler for `kind` is registered (false before the registry is installed).
    pub fn knows(&self, kind: &str) -> bool {
        self.kind(kind).is_some()
    }

    /// The registered kind named `kind`, if any (none before the registry is installed).
    pub fn kind(&self, kind: &str) -> Option<JobKind> {
        self.attempts.get().and_then(|m| m.get(kind)).map(|(k, _)| *k)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn metrics(&self) -> &JobMetrics {
        &self.metrics
    }

    pub(crate) fn wake(&self) -> &Arc<Notify> {
        &self.wake
    }

    fn default_attempts(&self, kind: &str) -> u32 {
        self.attempts
            .get()
            .and_then(|m| m.get(kind))
            .map_or(RetryPolicy::default().max_attempts, |(_, attempts)| *attempts)
    }

    /// Takes the kinds and their attempts from `registry`; the first registry wins.
    pub fn install(&self, registry: &Registry) {
        let attempts = registry
            .handlers
            .iter()
            .map(|(kind, h)| (*kind, (h.kind(), h.policy().max_attempts)))
            .collect();
        let _ = self.attempts.set(attempts);
    }
}

/// The job kinds a process can run, and the recurring schedules it keeps.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<&'static str, Arc<dyn Handler>>,
    schedules: Vec<ScheduleSpec>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a handler; a later one for the same kind replaces it.
    pub fn register(&mut self, handler: impl Handler) -> &mut Self {
        self.insert(Arc::new(handler))
    }

    /// `register` for a handler already shared.
    pub fn insert(&mut self, handler: Arc<dyn Handler>) -> &mut Self {
        self.handlers.insert(handler.kind().as_str(), handler);
        self
    }

    /// Adds a recurring schedule, checked now: a bad cron or time zone, or a kind without a
    /// handler, is refused with a message that says which.
    pub fn schedule(&mut self, spec: ScheduleSpec) -> Result<&mut Self, ScheduleError> {
        spec.validate()?;
        if !self.handlers.contains_key(spec.kind.as_str()) {
            return Err(ScheduleError::UnknownKind(spec.kind.to_string()));
        }
        self.schedules.retain(|s| s.name != spec.name);
        self.schedules.push(spec);
        Ok(self)
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds: Vec<_> = self.handlers.keys().copied().collect();
        kinds.sort_unstable();
        kinds
    }

    pub fn handler(&self, kind: &str) -> Option<&Arc<dyn Handler>> {
        self.handlers.get(kind)
    }

    pub fn schedules(&self) -> &[ScheduleSpec] {
        &self.schedules
    }
}

/// `at` plus `d`, in whole microseconds as stored (saturating far in the future).
pub(crate) fn after(at: Timestamp, d: Duration) -> Timestamp {
    let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    at.checked_add_signed(chrono::TimeDelta::microseconds(micros))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}
