//! Job queue administration for admins: `jobQueue` (stats by kind and state, dead jobs with
//! their error history as a Relay connection, schedules), `replayJobs` and `discardJobs`.
//! Everything is the caller's workspace only, through `service::JobService`.
//!
//! Job ids are opaque global ids (`Job:<n>`, base64url), shared with `enrichmentJob`.

use super::connection::{PageInfo, PageSize, keyset_connection, keyset_page};
use super::errors::{UserError, bad_input, split, to_gql};
use super::query::actor;
use crate::domain::{self, JobId, JobSelection, JobState};
use crate::service::{self, Services};
use async_graphql::{Context, Enum, ID, Json, Object, SimpleObject};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

const DEAD_PAGE: PageSize = PageSize {
    default: 20,
    max: service::MAX_DEAD_PAGE as usize,
};

/// The global id of a job.
pub fn job_global_id(id: JobId) -> ID {
    ID(URL_SAFE_NO_PAD.encode(format!("Job:{}", id.as_i64())))
}

/// Decodes a global id that must name a job.
pub fn decode_job_id(id: &str) -> async_graphql::Result<JobId> {
    let invalid = || {
        bad_input(format!(
            "'{}' is not a valid job id",
            id.chars().take(64).collect::<String>()
        ))
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(id.trim_end_matches('='))
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let raw = text.strip_prefix("Job:").ok_or_else(invalid)?;
    raw.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .map(JobId::from_i64)
        .ok_or_else(invalid)
}

/// Where a job is in its life.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum JobStatus {
    /// Waiting for its time and a free worker.
    Queued,
    /// Leased by a worker.
    Running,
    Succeeded,
    /// Out of attempts or failed for good; kept until replayed or discarded.
    Dead,
}

impl From<JobState> for JobStatus {
    fn from(s: JobState) -> Self {
        match s {
            JobState::Queued => JobStatus::Queued,
            JobState::Running => JobStatus::Running,
            JobState::Succeeded => JobStatus::Succeeded,
            JobState::Dead => JobStatus::Dead,
        }
    }
}

/// Jobs of one kind in one state.
#[derive(SimpleObject)]
pub struct JobStat {
    pub kind: String,
    pub state: JobStatus,
    pub count: i64,
    /// For queued jobs: how long the oldest due one has waited.
    pub oldest_age_seconds: Option<f64>,
}

/// One failed attempt.
#[derive(SimpleObject)]
pub struct JobAttemptError {
    /// 1 for the first attempt.
    pub attempt: i32,
    pub at: DateTime<Utc>,
    pub error: String,
}

/// A job that ran out of attempts or failed for good, with every error it met.
#[derive(SimpleObject)]
pub struct DeadJob {
    pub id: ID,
    pub kind: String,
    pub attempts: i32,
    pub max_attempts: i32,
    /// Every failed attempt, oldest first (kept across replays).
    pub errors: Vec<JobAttemptError>,
    pub payload: Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    /// When it moved to the dead state.
    pub failed_at: Option<DateTime<Utc>>,
}

impl From<domain::Job> for DeadJob {
    fn from(j: domain::Job) -> Self {
        Self {
            id: job_global_id(j.id),
            kind: j.kind,
            attempts: j.attempts.min(i32::MAX as u32) as i32,
            max_attempts: j.max_attempts.min(i32::MAX as u32) as i32,
            errors: j
                .errors
                .into_iter()
                .map(|e| JobAttemptError {
                    attempt: e.attempt.min(i32::MAX as u32) as i32,
                    at: e.at,
                    error: e.error,
                })
                .collect(),
            payload: Json(j.payload),
            created_at: j.created_at,
            failed_at: j.finished_at,
        }
    }
}

#[derive(SimpleObject)]
pub struct DeadJobEdge {
    pub cursor: String,
    pub node: DeadJob,
}

/// Dead jobs, newest first.
#[derive(SimpleObject)]
pub struct DeadJobConnection {
    pub edges: Vec<DeadJobEdge>,
    pub page_info: PageInfo,
}

/// A recurring schedule.
#[derive(SimpleObject)]
pub struct JobSchedule {
    pub name: String,
    /// Five fields: minute hour day-of-month month day-of-week.
    pub cron: String,
    /// IANA time zone the cron fields are read in.
    pub time_zone: String,
    pub kind: String,
    pub next_run_at: DateTime<Utc>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub enabled: bool,
}

impl From<domain::Schedule> for JobSchedule {
    fn from(s: domain::Schedule) -> Self {
        Self {
            name: s.name,
            cron: s.cron,
            time_zone: s.tz,
            kind: s.kind,
            next_run_at: s.next_run_at,
            last_run_at: s.last_run_at,
            enabled: s.enabled,
        }
    }
}

/// The workspace's view of the job queue (admins only).
pub struct JobQueue;

#[Object]
impl JobQueue {
    /// Counts by kind and state of the workspace's jobs.
    async fn stats(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<JobStat>> {
        let actor = actor(ctx)?;
        let services = ctx.data::<Services>()?;
        let now = domain::now();
        let stats = services.jobs.stats(actor).await.map_err(to_gql)?;
        Ok(stats
            .into_iter()
            .map(|s| JobStat {
                oldest_age_seconds: s.oldest_run_at.map(|_| s.oldest_age(now).as_secs_f64()),
                kind: s.kind,
                state: s.state.into(),
                count: s.count.min(i64::MAX as u64) as i64,
            })
            .collect())
    }

    /// Dead jobs of the workspace, newest first, with their error history.
    async fn dead(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "At most 100; 20 when neither `first` nor `last` is given.")] first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "At most 100.")] last: Option<i32>,
        before: Option<String>,
        #[graphql(desc = "Only jobs of this kind.")] kind: Option<String>,
    ) -> async_graphql::Result<DeadJobConnection> {
        let page = keyset_page(first, after, last, before, DEAD_PAGE)?;
        let actor = actor(ctx)?.clone();
        let (edges, page_info) = keyset_connection(
            ctx,
            page,
            move |services, page| {
                let (actor, kind) = (actor.clone(), kind.clone());
                async move { services.jobs.dead(&actor, kind.as_deref(), page).await }
            },
            |j| j.id,
            |cursor, j| DeadJobEdge {
                cursor,
                node: j.into(),
            },
        )
        .await?;
        Ok(DeadJobConnection { edges, page_info })
    }

    /// The deployment's recurring schedules.
    async fn schedules(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<JobSchedule>> {
        let actor = actor(ctx)?;
        let services = ctx.data::<Services>()?;
        let list = services.jobs.schedules(actor).await.map_err(to_gql)?;
        Ok(list.into_iter().map(Into::into).collect())
    }
}

#[derive(Default)]
pub struct JobsQuery;

#[Object]
impl JobsQuery {
    /// The job queue of the caller's workspace (admins only).
    async fn job_queue(&self, ctx: &Context<'_>) -> async_graphql::Result<JobQueue> {
        actor(ctx)?.require_admin().map_err(to_gql)?;
        Ok(JobQueue)
    }

    /// This server's per-minute aggregates of the caller's workspace for the last `minutes`
    /// minutes (1–60), oldest first, one entry per minute including idle ones; the last is
    /// the minute in progress (admins only). Kept in memory by each instance for an hour, so
    /// behind a load balancer it is the share of the instance that answers.
    async fn metrics_history(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 60)] minutes: i32,
    ) -> async_graphql::Result<Vec<MetricsMinute>> {
        let services = ctx.data::<Services>()?;
        let minutes = usize::try_from(minutes).unwrap_or(0);
        let history = services
            .metrics_history(actor(ctx)?, minutes)
            .await
            .map_err(to_gql)?;
        Ok(history.into_iter().map(MetricsMinute::from).collect())
    }
}

/// One minute of a workspace's traffic on this server.
#[derive(SimpleObject)]
pub struct MetricsMinute {
    /// Start of the minute (UTC).
    pub at: DateTime<Utc>,
    /// GraphQL requests answered over HTTP.
    pub requests: i64,
    /// Requests answered with at least one error (refusals included).
    pub errors: i64,
    /// 99th percentile of request latency in milliseconds, within 25 %; null when there were
    /// no requests.
    pub p99_ms: Option<f64>,
    /// Enrichment credits spent by requests and bulk refreshes.
    pub credits_spent: i64,
    /// Queued jobs when sampled (once a minute); null when not sampled that minute.
    pub queue_depth: Option<i64>,
    /// Age of the oldest due queued job in seconds when sampled; null when not sampled or
    /// none is queued.
    pub oldest_queued_age_seconds: Option<f64>,
    /// Dead jobs when sampled; null when not sampled that minute.
    pub dead_jobs: Option<i64>,
}

impl From<service::history::MinuteStats> for MetricsMinute {
    fn from(m: service::history::MinuteStats) -> Self {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Self {
            at: m.at,
            requests: count(m.requests),
            errors: count(m.errors),
            p99_ms: m.p99_ms,
            credits_spent: count(m.credits_spent),
            queue_depth: m.queue.map(|q| count(q.queued)),
            oldest_queued_age_seconds: m.queue.and_then(|q| q.oldest_queued_age).map(|a| a.as_secs_f64()),
            dead_jobs: m.queue.map(|q| count(q.dead)),
        }
    }
}

/// The result of `replayJobs`.
#[derive(SimpleObject)]
pub struct ReplayJobsPayload {
    /// How many dead jobs were queued again.
    pub count: i64,
    pub user_errors: Vec<UserError>,
}

/// The result of `discardJobs`.
#[derive(SimpleObject)]
pub struct DiscardJobsPayload {
    /// How many dead jobs were deleted.
    pub count: i64,
    pub user_errors: Vec<UserError>,
}

fn count(n: Option<u64>) -> i64 {
    n.map_or(0, |n| n.min(i64::MAX as u64) as i64)
}

fn selection(ids: Option<Vec<ID>>, kind: Option<String>) -> async_graphql::Result<JobSelection> {
    let ids = ids
        .unwrap_or_default()
        .iter()
        .map(|id| decode_job_id(id))
        .collect::<async_graphql::Result<Vec<_>>>()?;
    Ok(JobSelection { ids, kind })
}

#[derive(Default)]
pub struct JobsMutation;

#[Object]
impl JobsMutation {
    /// Queues dead jobs of the workspace again with fresh attempts (their error history is
    /// kept), picked by ids, by kind, or both (admins only).
    async fn replay_jobs(
        &self,
        ctx: &Context<'_>,
        ids: Option<Vec<ID>>,
        kind: Option<String>,
    ) -> async_graphql::Result<ReplayJobsPayload> {
        let actor = actor(ctx)?;
        let services = ctx.data::<Services>()?;
        actor.require_admin().map_err(to_gql)?;
        let selection = selection(ids, kind)?;
        let (n, user_errors) = split(services.jobs.replay(actor, selection).await, &[])?;
        Ok(ReplayJobsPayload {
            count: count(n),
            user_errors,
        })
    }

    /// Deletes dead jobs of the workspace for good, picked by ids, by kind, or both (admins
    /// only).
    async fn discard_jobs(
        &self,
        ctx: &Context<'_>,
        ids: Option<Vec<ID>>,
        kind: Option<String>,
    ) -> async_graphql::Result<DiscardJobsPayload> {
        let actor = actor(ctx)?;
        let services = ctx.data::<Services>()?;
        actor.require_admin().map_err(to_gql)?;
        let selection = selection(ids, kind)?;
        let (n, user_errors) = split(services.jobs.discard(actor, selection).await, &[])?;
        Ok(DiscardJobsPayload {
            count: count(n),
            user_errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_round_trip_and_reject_other_ids() {
        let id = job_global_id(JobId::from_i64(42));
        assert_eq!(decode_job_id(&id).unwrap(), JobId::from_i64(42));
        for bad in [
            "42",
            "not-a-job",
            &URL_SAFE_NO_PAD.encode("Lead:42"),
            &URL_SAFE_NO_PAD.encode("Job:-1"),
        ] {
            assert!(decode_job_id(bad).is_err(), "{bad}");
        }
    }
}
