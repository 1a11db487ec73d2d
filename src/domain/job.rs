//! Background jobs as the durable queue stores them: identity, state, the error history, the
//! recurring schedules that enqueue them, and the retry policy (exponential backoff with
//! jitter) as a pure function. Running jobs lives in `crate::jobs`; storing them in `store`.

use super::event::{JOB_DEAD, NewEvent};
use super::ids::WorkspaceId;
use super::lead::Timestamp;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Identifies a job: the queue's row id, increasing with every enqueue.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct JobId(i64);

impl JobId {
    /// Wraps a row id the store assigned or a client sent back.
    pub fn from_i64(n: i64) -> Self {
        Self(n)
    }
    pub fn as_i64(self) -> i64 {
        self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a job is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum JobState {
    /// Waiting for `run_at` and a free worker.
    Queued,
    /// Leased by a worker until `lease_until`.
    Running,
    Succeeded,
    /// Out of attempts, or failed permanently; kept until an admin replays or discards it.
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 4] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Dead,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// One failed attempt, as kept in a job's error history.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct JobFailure {
    /// 1 for the first attempt.
    pub attempt: u32,
    pub at: Timestamp,
    pub error: String,
}

/// A stored job, every column.
#[derive(Clone, PartialEq, Debug)]
pub struct Job {
    pub id: JobId,
    /// Selects the handler, e.g. `enrich.leads`.
    pub kind: String,
    /// The tenant the job works for; `None` for system jobs (pruning, …).
    pub workspace_id: Option<WorkspaceId>,
    pub payload: serde_json::Value,
    /// Higher runs first among due jobs.
    pub priority: i16,
    /// Not claimed before this time.
    pub run_at: Timestamp,
    pub state: JobState,
    /// Attempts started so far (a claim starts one).
    pub attempts: u32,
    pub max_attempts: u32,
    /// At most one queued or running job holds a given key.
    pub unique_key: Option<String>,
    /// The claim that owns a running job; only its holder may complete or fail it.
    pub lease_token: Option<String>,
    pub lease_until: Option<Timestamp>,
    /// Every failed attempt, oldest first; kept across replays.
    pub errors: Vec<JobFailure>,
    /// What a running job reported about itself.
    pub progress: Option<serde_json::Value>,
    pub result: Option<serde_json::Value>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

impl Job {
    /// The `job.dead` event for the workspace's log; `None` for system jobs.
    pub fn dead_event(&self, error: &str, at: Timestamp) -> Option<NewEvent> {
        self.workspace_id.map(|ws| NewEvent {
            workspace_id: ws,
            kind: JOB_DEAD,
            subject_id: None,
            payload: serde_json::json!({ "jobId": self.id.as_i64(), "kind": self.kind, "error": error }),
            at,
        })
    }

    /// The error history with one more failure of the current attempt appended.
    pub fn history_with(&self, error: &str, at: Timestamp) -> Vec<JobFailure> {
        let mut errors = self.errors.clone();
        errors.push(JobFailure {
            attempt: self.attempts,
            at,
            error: error.to_owned(),
        });
        errors
    }
}

/// What to do when a job with the same unique key is already queued or running.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Duplicate {
    /// Dedupe: keep the existing job and return its id.
    #[default]
    Keep,
    /// Debounce: a still-queued job takes the new payload and `run_at` (a running one is left
    /// alone and its id returned).
    Replace,
}

/// The name of a job kind, e.g. `enrich.leads`: what a job is enqueued as and what picks its
/// handler.
///
/// It is made only from a string literal, `JobKind::new("enrich.leads")`, kept as a constant
/// beside the kind's handler, and a `NewJob` takes nothing else. So every kind the code can
/// enqueue is one of those literals, and the test that reads them all from the source
/// (`tests/api/contracts.rs`, `every_job_kind_the_code_names_is_registered`) checks each
/// against the registry (`app::JOB_KINDS`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct JobKind(&'static str);

impl JobKind {
    /// A kind's name; use it once, for the kind's constant.
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl PartialEq<str> for JobKind {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<JobKind> for String {
    fn eq(&self, other: &JobKind) -> bool {
        self == other.0
    }
}

/// A job to enqueue.
#[derive(Clone, PartialEq, Debug)]
pub struct NewJob {
    pub kind: JobKind,
    pub workspace_id: Option<WorkspaceId>,
    pub payload: serde_json::Value,
    /// Now when `None`.
    pub run_at: Option<Timestamp>,
    pub priority: i16,
    /// The kind's retry policy decides when `None`.
    pub max_attempts: Option<u32>,
    pub unique_key: Option<String>,
    pub on_duplicate: Duplicate,
}

impl NewJob {
    /// A job of `kind` with `payload`, due now, default priority and attempts, no unique key.
    pub fn new(kind: JobKind, payload: serde_json::Value) -> Self {
        Self {
            kind,
            workspace_id: None,
            payload,
            run_at: None,
            priority: 0,
            max_attempts: None,
            unique_key: None,
            on_duplicate: Duplicate::Keep,
        }
    }

    /// The same job for a workspace.
    pub fn in_workspace(mut self, ws: WorkspaceId) -> Self {
        self.workspace_id = Some(ws);
        self
    }

    /// The same job with a unique key and what to do about a duplicate.
    pub fn unique(mut self, key: impl Into<String>, on_duplicate: Duplicate) -> Self {
        self.unique_key = Some(key.into());
        self.on_duplicate = on_duplicate;
        self
    }
}

/// The outcome of an enqueue.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Enqueued {
    pub id: JobId,
    /// False when a job with the same unique key was already queued or running.
    pub created: bool,
}

/// Which jobs an operation covers: one tenant's (what admins see), or every workspace's and
/// the system's (operators on the command line, metrics).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum JobScope {
    Workspace(WorkspaceId),
    AllWorkspaces,
}

/// Jobs picked for replay or discard: by ids, by kind, or both (both must match).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct JobSelection {
    pub ids: Vec<JobId>,
    pub kind: Option<String>,
}

impl JobSelection {
    /// Whether nothing narrows the selection (refused: it would mean every dead job).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.kind.is_none()
    }
}

/// Counts of one (kind, state).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct QueueStat {
    pub kind: String,
    pub state: JobState,
    pub count: u64,
    /// For queued jobs: the earliest `run_at` among them (its age is how long work waits).
    pub oldest_run_at: Option<Timestamp>,
}

impl QueueStat {
    /// How long the oldest due queued job has waited at `now`; zero when none is due.
    pub fn oldest_age(&self, now: Timestamp) -> Duration {
        self.oldest_run_at
            .and_then(|t| (now - t).to_std().ok())
            .unwrap_or_default()
    }
}

/// A recurring schedule: enqueues a job of `kind` at each tick of `cron` in `tz`.
#[derive(Clone, PartialEq, Debug)]
pub struct Schedule {
    /// Unique; registering the same name again updates the schedule.
    pub name: String,
    /// Standard five fields: minute, hour, day of month, month, day of week.
    pub cron: String,
    /// IANA time zone name the cron fields are read in, e.g. `Europe/Berlin`.
    pub tz: String,
    pub kind: String,
    pub payload: serde_json::Value,
    /// The next tick to fire.
    pub next_run_at: Timestamp,
    /// The tick fired last; after downtime, the first of the missed ticks, which were fired
    /// as one.
    pub last_run_at: Option<Timestamp>,
    pub enabled: bool,
}

/// How the delay before a retry is randomised.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Jitter {
    /// Anywhere between zero and the exponential delay: spreads a burst the most.
    Full,
    /// Half the exponential delay plus up to the other half: never retries too soon.
    Equal,
}

/// A kind's retry policy: how often, and how long to wait between attempts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The delay after the first failure, doubled after each further one.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::from_secs(2),
            max: Duration::from_secs(600),
            jitter: Jitter::Equal,
        }
    }
}

impl RetryPolicy {
    /// The delay before the attempt after failed attempt `attempt` (1-based):
    /// `min(max, base · 2^(attempt-1))`, jittered.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let exponent = attempt.saturating_sub(1).min(32);
        let ceiling = self
            .base
            .checked_mul(1u32 << exponent.min(31))
            .unwrap_or(self.max)
            .min(self.max);
        let micros = ceiling.as_micros().min(u128::from(u64::MAX)) as u64;
        match self.jitter {
            Jitter::Full => Duration::from_micros(rng.random_range(0..=micros)),
            Jitter::Equal => {
                let half = micros / 2;
                Duration::from_micros(half + rng.random_range(0..=micros - half))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn policy(jitter: Jitter) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
            jitter,
        }
    }

    #[test]
    fn equal_jitter_stays_between_half_and_the_exponential_delay() {
        let mut rng = StdRng::seed_from_u64(7);
        let p = policy(Jitter::Equal);
        for (attempt, ceiling) in [(1, 1), (2, 2), (3, 4), (4, 8), (6, 32)] {
            for _ in 0..200 {
                let d = p.delay(attempt, &mut rng);
                let ceiling = Duration::from_secs(ceiling);
                assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn full_jitter_stays_below_the_exponential_delay_and_spreads() {
        let mut rng = StdRng::seed_from_u64(7);
        let p = policy(Jitter::Full);
        let delays: Vec<Duration> = (0..200).map(|_| p.delay(4, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(8)));
        assert!(
            delays.iter().any(|d| *d < Duration::from_secs(2)),
            "some are short"
        );
        assert!(
            delays.iter().any(|d| *d > Duration::from_secs(6)),
            "some are long"
        );
    }

    #[test]
    fn delays_are_capped_at_max_even_for_huge_attempts() {
        let mut rng = StdRng::seed_from_u64(7);
        let p = policy(Jitter::Equal);
        for attempt in [7, 20, 40, u32::MAX] {
            let d = p.delay(attempt, &mut rng);
            assert!(
                d <= Duration::from_secs(60) && d >= Duration::from_secs(30),
                "{d:?}"
            );
        }
    }

    #[test]
    fn job_states_round_trip_their_stored_names() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
        }
        assert_eq!(JobState::parse("failed"), None);
    }

    #[test]
    fn selection_without_ids_or_kind_is_empty() {
        assert!(JobSelection::default().is_empty());
        assert!(
            !JobSelection {
                ids: vec![JobId::from_i64(1)],
                kind: None
            }
            .is_empty()
        );
    }
}
