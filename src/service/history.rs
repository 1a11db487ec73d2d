//! The last hour of each workspace's traffic on this server, a minute at a time, for the
//! console's charts (`metricsHistory`), so they work without Prometheus.
//!
//! What is counted: GraphQL requests answered for a workspace's callers (HTTP and WebSocket
//! operations alike), those answered with an error, their latency (a log-scale histogram, so
//! the p99 of a minute costs 48 counters, and the slowest request, which bounds it), and
//! enrichment credits spent (by requests and by bulk refresh jobs). Beside these, the job
//! queue's gauges — queued jobs, the age of the oldest due one, dead jobs — are sampled when
//! the history is read and then once a minute for an hour, for the workspaces whose history
//! someone reads (an open console): one small query each, none for the others.
//!
//! It is per process and in memory: a restart starts it empty, and behind a load balancer each
//! instance shows its share of the traffic (Prometheus is the place for the sum). Memory is
//! bounded: a workspace keeps only minutes that had something, at most 60, and at most
//! `MAX_WORKSPACES` workspaces are kept, the least recently active leaving first. Written by
//! hand: a metrics crate keeps counters since start, not a per-minute window per tenant.

use crate::domain::{JobScope, JobState, WorkspaceId};
use crate::store::Store;
use chrono::{DateTime, TimeZone, Utc};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Minutes kept and the most `metricsHistory` returns.
pub const MINUTES: usize = 60;
/// Workspaces whose minutes are kept at once.
pub const MAX_WORKSPACES: u64 = 10_000;
/// Latency buckets: bucket `i` holds requests of at most `FIRST_BOUND_MS · GROWTH^i`, the
/// last one everything slower (0.25 ms to about 9 s, each bound 25 % above the one before).
const BUCKETS: usize = 48;
const FIRST_BOUND_MS: f64 = 0.25;
const GROWTH: f64 = 1.25;

/// The time now; injected so tests move it.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// One minute of one workspace, as `metricsHistory` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct MinuteStats {
    /// The minute's start.
    pub at: DateTime<Utc>,
    pub requests: u64,
    pub errors: u64,
    /// The 99th percentile of request latency, `None` without requests.
    pub p99_ms: Option<f64>,
    pub credits_spent: u64,
    /// The queue as last sampled in the minute; `None` when it was not sampled.
    pub queue: Option<QueueGauges>,
}

/// The job queue of a workspace at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QueueGauges {
    pub queued: u64,
    /// How long the oldest due queued job has waited; `None` when none is queued.
    pub oldest_queued_age: Option<Duration>,
    pub dead: u64,
}

#[derive(Clone)]
struct Minute {
    /// Minutes since the epoch.
    index: i64,
    requests: u64,
    errors: u64,
    latency: [u32; BUCKETS],
    slowest_ms: f64,
    credits: u64,
    queue: Option<QueueGauges>,
}

impl Minute {
    fn new(index: i64) -> Self {
        Self {
            index,
            requests: 0,
            errors: 0,
            latency: [0; BUCKETS],
            slowest_ms: 0.0,
            credits: 0,
            queue: None,
        }
    }

    /// The upper bound of the bucket the 99th percentile falls in, never above the slowest
    /// request.
    fn p99_ms(&self) -> Option<f64> {
        let total: u64 = self.latency.iter().map(|&n| u64::from(n)).sum();
        if total == 0 {
            return None;
        }
        // the smallest count that covers 99 % of the requests
        let rank = total - total / 100;
        let mut seen = 0u64;
        for (i, &n) in self.latency.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return Some(bucket_bound_ms(i).min(self.slowest_ms));
            }
        }
        Some(self.slowest_ms)
    }
}

fn bucket_bound_ms(i: usize) -> f64 {
    if i + 1 == BUCKETS {
        f64::INFINITY
    } else {
        FIRST_BOUND_MS * GROWTH.powi(i as i32)
    }
}

fn bucket_of(ms: f64) -> usize {
    if ms <= FIRST_BOUND_MS {
        return 0;
    }
    let i = ((ms / FIRST_BOUND_MS).ln() / GROWTH.ln()).ceil() as usize;
    // rounding at a bound can land one below: a bound belongs to its own bucket
    let i = if bucket_bound_ms(i.saturating_sub(1)) >= ms {
        i.saturating_sub(1)
    } else {
        i
    };
    i.min(BUCKETS - 1)
}

/// The minutes of one workspace that had something, oldest first.
#[derive(Default)]
struct Ring {
    minutes: VecDeque<Minute>,
}

impl Ring {
    /// The entry of minute `index`, made (and minutes older than the window dropped) if needed.
    fn at(&mut self, index: i64) -> &mut Minute {
        while self
            .minutes
            .front()
            .is_some_and(|m| m.index <= index - MINUTES as i64)
        {
            self.minutes.pop_front();
        }
        // a clock that stepped back writes into the newest minute rather than reorder
        if self.minutes.back().is_none_or(|m| m.index < index) {
            self.minutes.push_back(Minute::new(index));
        }
        self.minutes.back_mut().expect("a minute was just pushed")
    }
}

/// Per-minute aggregates of every workspace (see the module header); cheap to clone.
#[derive(Clone)]
pub struct History {
    workspaces: moka::sync::Cache<WorkspaceId, Arc<Mutex<Ring>>>,
    /// Workspaces whose history was read in the last hour: their queue is sampled.
    watched: moka::sync::Cache<WorkspaceId, ()>,
    clock: Clock,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("workspaces", &self.workspaces.entry_count())
            .finish()
    }
}

impl Default for History {
    fn default() -> Self {
        Self::new(Arc::new(Utc::now))
    }
}

impl History {
    pub fn new(clock: Clock) -> Self {
        Self {
            workspaces: moka::sync::Cache::builder()
                .max_capacity(MAX_WORKSPACES)
                .time_to_idle(Duration::from_secs(MINUTES as u64 * 60))
                .build(),
            watched: moka::sync::Cache::builder()
                .max_capacity(MAX_WORKSPACES)
                .time_to_live(Duration::from_secs(MINUTES as u64 * 60))
                .build(),
            clock,
        }
    }

    fn update(&self, workspace: WorkspaceId, f: impl FnOnce(&mut Minute)) {
        let index = minute_index((self.clock)());
        let ring = self.workspaces.get_with(workspace, Default::default);
        let mut ring = ring.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(ring.at(index));
    }

    /// One GraphQL request of `workspace` answered after `took`, with or without errors.
    pub fn request(&self, workspace: WorkspaceId, took: Duration, failed: bool) {
        let ms = took.as_secs_f64() * 1000.0;
        self.update(workspace, |m| {
            m.requests += 1;
            m.errors += u64::from(failed);
            m.latency[bucket_of(ms)] += 1;
            m.slowest_ms = m.slowest_ms.max(ms);
        });
    }

    /// Enrichment credits `workspace` spent.
    pub fn credits(&self, workspace: WorkspaceId, credits: u64) {
        if credits > 0 {
            self.update(workspace, |m| m.credits += credits);
        }
    }

    /// The queue of `workspace` as just read.
    pub fn queue(&self, workspace: WorkspaceId, gauges: QueueGauges) {
        self.update(workspace, |m| m.queue = Some(gauges));
    }

    /// The last `minutes` minutes of `workspace` (1 to `MINUTES`), oldest first, one entry
    /// per minute including the idle ones; the newest is the minute in progress.
    pub fn read(&self, workspace: WorkspaceId, minutes: usize) -> Vec<MinuteStats> {
        let minutes = minutes.clamp(1, MINUTES) as i64;
        let now = minute_index((self.clock)());
        let ring = self.workspaces.get(&workspace);
        let ring = ring
            .as_ref()
            .map(|r| r.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        let mut kept = ring.iter().flat_map(|r| r.minutes.iter()).peekable();
        let mut out = Vec::with_capacity(minutes as usize);
        for index in now - minutes + 1..=now {
            while kept.peek().is_some_and(|m| m.index < index) {
                kept.next();
            }
            let at = Utc.timestamp_opt(index * 60, 0).single().unwrap_or_default();
            out.push(match kept.peek() {
                Some(m) if m.index == index => MinuteStats {
                    at,
                    requests: m.requests,
                    errors: m.errors,
                    p99_ms: m.p99_ms(),
                    credits_spent: m.credits,
                    queue: m.queue,
                },
                _ => MinuteStats {
                    at,
                    requests: 0,
                    errors: 0,
                    p99_ms: None,
                    credits_spent: 0,
                    queue: None,
                },
            });
        }
        out
    }

    /// The workspaces whose history was read in the last hour.
    fn watched(&self) -> Vec<WorkspaceId> {
        self.watched.iter().map(|(ws, _)| *ws).collect()
    }

    /// Reads the queue of `workspace` from `store` into the minute in progress, and keeps
    /// sampling it once a minute for the next hour (`run_sampler`).
    pub async fn watch(&self, store: &Store, workspace: WorkspaceId) -> crate::store::StoreResult<()> {
        self.watched.insert(workspace, ());
        self.sample_queue(store, workspace).await
    }

    /// Reads the queue of `workspace` from `store` into the minute in progress.
    async fn sample_queue(&self, store: &Store, workspace: WorkspaceId) -> crate::store::StoreResult<()> {
        let stats = store.job_stats(JobScope::Workspace(workspace)).await?;
        let now = (self.clock)();
        let mut gauges = QueueGauges {
            queued: 0,
            oldest_queued_age: None,
            dead: 0,
        };
        for stat in &stats {
            match stat.state {
                JobState::Queued => {
                    gauges.queued += stat.count;
                    if stat.oldest_run_at.is_some() {
                        let age = stat.oldest_age(now);
                        gauges.oldest_queued_age = Some(gauges.oldest_queued_age.map_or(age, |a| a.max(age)));
                    }
                }
                JobState::Dead => gauges.dead += stat.count,
                JobState::Running | JobState::Succeeded => {}
            }
        }
        self.queue(workspace, gauges);
        Ok(())
    }

    /// Samples the queue of every watched workspace once a minute, until the process ends.
    pub async fn run_sampler(self, store: Store) {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for workspace in self.watched() {
                if let Err(e) = self.sample_queue(&store, workspace).await {
                    tracing::warn!(error = %e, "cannot sample the job queue for the console history");
                    break;
                }
            }
        }
    }
}

fn minute_index(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    fn clock_at(start: &str) -> (Clock, Arc<AtomicI64>) {
        let secs = Arc::new(AtomicI64::new(
            DateTime::parse_from_rfc3339(start).expect("time").timestamp(),
        ));
        let read = secs.clone();
        let clock: Clock = Arc::new(move || {
            Utc.timestamp_opt(read.load(Ordering::SeqCst), 0)
                .single()
                .expect("time")
        });
        (clock, secs)
    }

    fn ws(n: u128) -> WorkspaceId {
        WorkspaceId::from_uuid(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn every_minute_of_the_window_is_listed_oldest_first_with_idle_ones_empty() {
        let (clock, secs) = clock_at("2026-12-06T10:00:30Z");
        let history = History::new(clock);
        history.request(ws(1), Duration::from_millis(10), false);
        history.request(ws(1), Duration::from_millis(20), true);
        history.credits(ws(1), 3);
        secs.fetch_add(120, Ordering::SeqCst); // 10:02:30
        history.request(ws(1), Duration::from_millis(5), false);
        let minutes = history.read(ws(1), 5);
        assert_eq!(minutes.len(), 5);
        let at: Vec<String> = minutes.iter().map(|m| m.at.format("%H:%M").to_string()).collect();
        assert_eq!(at, ["09:58", "09:59", "10:00", "10:01", "10:02"]);
        assert_eq!(
            minutes.iter().map(|m| m.requests).collect::<Vec<_>>(),
            [0, 0, 2, 0, 1]
        );
        assert_eq!(minutes[2].errors, 1);
        assert_eq!(minutes[2].credits_spent, 3);
        assert_eq!(minutes[1].p99_ms, None);
        assert_eq!(minutes[4].p99_ms, Some(5.0), "bounded by the slowest request");
    }

    #[test]
    fn workspaces_are_kept_apart() {
        let (clock, _) = clock_at("2026-12-06T10:00:00Z");
        let history = History::new(clock);
        history.request(ws(1), Duration::from_millis(1), false);
        assert_eq!(history.read(ws(2), 1)[0].requests, 0);
        assert_eq!(history.read(ws(1), 1)[0].requests, 1);
    }

    #[test]
    fn minutes_older_than_an_hour_are_dropped() {
        let (clock, secs) = clock_at("2026-12-06T10:00:00Z");
        let history = History::new(clock);
        history.request(ws(1), Duration::from_millis(1), false);
        secs.fetch_add(60 * 60, Ordering::SeqCst);
        history.request(ws(1), Duration::from_millis(1), false);
        let minutes = history.read(ws(1), 60);
        assert_eq!(minutes.iter().map(|m| m.requests).sum::<u64>(), 1);
        let ring = history.workspaces.get(&ws(1)).expect("ring");
        assert_eq!(ring.lock().expect("lock").minutes.len(), 1);
    }

    #[test]
    fn the_p99_is_the_bucket_bound_that_covers_99_percent() {
        let (clock, _) = clock_at("2026-12-06T10:00:00Z");
        let history = History::new(clock);
        for _ in 0..990 {
            history.request(ws(1), Duration::from_millis(2), false);
        }
        for _ in 0..10 {
            history.request(ws(1), Duration::from_millis(900), false);
        }
        let p99 = history.read(ws(1), 1)[0].p99_ms.expect("p99");
        // 99 % of requests took 2 ms: the p99 is the bound of 2 ms's bucket, within 25 %
        assert!((2.0..2.5).contains(&p99), "{p99}");
        history.request(ws(1), Duration::from_millis(900), false);
        let p99 = history.read(ws(1), 1)[0].p99_ms.expect("p99");
        assert!((900.0..1125.0).contains(&p99), "{p99}");
    }

    #[test]
    fn a_latency_falls_in_the_first_bucket_whose_bound_holds_it() {
        for ms in [0.0, 0.1, 0.25, 0.26, 1.0, 3.3, 100.0, 8_000.0, 1e9] {
            let i = bucket_of(ms);
            assert!(bucket_bound_ms(i) >= ms, "{ms} in {i}");
            if i > 0 {
                assert!(bucket_bound_ms(i - 1) < ms, "{ms} in {i}");
            }
        }
    }

    #[test]
    fn a_queue_sample_is_shown_in_its_minute_only() {
        let (clock, secs) = clock_at("2026-12-06T10:00:00Z");
        let history = History::new(clock);
        let gauges = QueueGauges {
            queued: 4,
            oldest_queued_age: Some(Duration::from_secs(9)),
            dead: 1,
        };
        history.queue(ws(1), gauges);
        secs.fetch_add(60, Ordering::SeqCst);
        let minutes = history.read(ws(1), 2);
        assert_eq!(minutes[0].queue, Some(gauges));
        assert_eq!(minutes[1].queue, None);
    }
}
