//! The worker runtime: claims due jobs in batches as slots free up, runs them concurrently
//! with a heartbeat each, batches completions, retries failures by the kind's policy, sends
//! exhausted ones to the dead state (calling `on_dead`), reclaims expired leases, fires
//! schedules, samples queue metrics, and stops gracefully.
//!
//! A claim leases jobs for `visibility_timeout`; heartbeats extend it every third of that.
//! A worker that dies stops heartbeating, so another one reclaims its jobs once the lease
//! ends: at-least-once delivery.

use super::schedule::Scheduler;
use super::{Handler, JobContext, JobError, Queue, Registry};
use crate::domain::{Job, JobFailure, JobId, JobScope, now};
use crate::store::{Lease, StoreError};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

/// How a process runs its workers.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Jobs run at once.
    pub concurrency: usize,
    /// Most jobs one claim takes.
    pub batch_size: u32,
    /// How long a claim owns a job without a heartbeat.
    pub visibility_timeout: Duration,
    /// How often to look for due jobs when nothing woke the workers.
    pub poll_interval: Duration,
    /// How often expired leases are reclaimed and schedules checked.
    pub maintenance_interval: Duration,
    /// How often queue depth and age are sampled for metrics.
    pub stats_interval: Duration,
    /// How long a shutdown waits for running jobs before handing them back to the queue.
    pub shutdown_grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 8,
            batch_size: 32,
            visibility_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            maintenance_interval: Duration::from_secs(5),
            stats_interval: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Running workers; `shutdown` stops them. Dropping the handle leaves them running.
pub struct Workers {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    /// Starts the claim loop, maintenance (reclaim, schedules) and metrics sampling.
    pub async fn start(
        queue: Queue,
        registry: Registry,
        config: WorkerConfig,
    ) -> Result<Self, super::schedule::ScheduleError> {
        queue.install(&registry);
        let scheduler = Scheduler::new(queue.clone(), registry.schedules())?;
        scheduler.register(now()).await?;
        let (stop, stopped) = watch::channel(false);
        let runtime = Arc::new(Runtime {
            queue,
            registry,
            config,
        });
        let tasks = vec![
            tokio::spawn(runtime.clone().claim_loop(stopped.clone())),
            tokio::spawn(runtime.clone().maintenance_loop(scheduler, stopped.clone())),
            tokio::spawn(runtime.stats_loop(stopped)),
        ];
        Ok(Self { stop, tasks })
    }

    /// Stops claiming, lets running jobs finish within the grace period (the rest go back to
    /// the queue), flushes completions and waits for every task.
    /// Runs a task beside the workers (e.g. a dispatcher that queues jobs): it is handed a
    /// future that resolves when shutdown is asked for, and `shutdown` waits for it.
    pub fn run_beside<F>(&mut self, task: impl FnOnce(futures_util::future::BoxFuture<'static, ()>) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut rx = self.stop.subscribe();
        let signal = Box::pin(async move { stopped(&mut rx).await });
        self.tasks.push(tokio::spawn(task(signal)));
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

struct Runtime {
    queue: Queue,
    registry: Registry,
    config: WorkerConfig,
}

/// Resolves once shutdown was asked for; never when the handle was dropped without asking.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The span one attempt runs in: the job's id, kind and workspace, which error reports are
/// tagged with (a panic in the handler included).
fn job_span(job: &Job) -> tracing::Span {
    tracing::info_span!(
        "job",
        job_id = %job.id,
        job_kind = %job.kind,
        workspace_id = job.workspace_id.map(tracing::field::display)
    )
}

/// A finished attempt, for the claim loop.
enum Outcome {
    Done(JobId, String),
    Settled,
}

impl Runtime {
    async fn claim_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let kinds = self.registry.kinds();
        let concurrency = self.config.concurrency.max(1);
        let refill_at = (concurrency / 2).max(1);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let completer = tokio::spawn(self.clone().complete_loop(done_rx));
        let mut running: JoinSet<Outcome> = JoinSet::new();
        let wake = self.queue.wake().clone();
        loop {
            // Armed before claiming, so an enqueue during the claim is not missed.
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let free = concurrency - running.len();
            let mut claimed_full = false;
            if free >= refill_at || running.is_empty() {
                let want = (free as u32).min(self.config.batch_size.max(1));
                match self.claim(&kinds, want).await {
                    Ok(jobs) => {
                        claimed_full = jobs.len() as u32 == want;
                        for job in jobs {
                            let span = job_span(&job);
                            running.spawn(self.clone().run_one(job).instrument(span));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming jobs failed"),
                }
            }
            if claimed_full && running.len() < concurrency {
                continue;
            }
            tokio::select! {
                Some(finished) = running.join_next() => {
                    if let Ok(Outcome::Done(id, token)) = finished {
                        let _ = done_tx.send((id, token));
                    }
                }
                _ = notified => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = stopped(&mut stop) => break,
            }
        }
        self.drain(running, &done_tx).await;
        drop(done_tx);
        let _ = completer.await;
    }

    async fn claim(&self, kinds: &[&'static str], want: u32) -> Result<Vec<Job>, StoreError> {
        let at = now();
        let lease = Lease {
            token: uuid::Uuid::now_v7().simple().to_string(),
            until: super::after(at, self.config.visibility_timeout),
        };
        self.queue.store().claim_jobs(kinds, want, &lease, at).await
    }

    /// Waits for running jobs up to the grace period; hands back the rest.
    async fn drain(&self, mut running: JoinSet<Outcome>, done: &mpsc::UnboundedSender<(JobId, String)>) {
        let deadline = tokio::time::Instant::now() + self.config.shutdown_grace;
        while !running.is_empty() {
            match tokio::time::timeout_at(deadline, running.join_next()).await {
                Ok(Some(Ok(Outcome::Done(id, token)))) => {
                    let _ = done.send((id, token));
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    // Aborted jobs keep their lease until it expires and are then reclaimed.
                    tracing::warn!(
                        jobs = running.len(),
                        "shutdown grace over; leaving jobs to lease expiry"
                    );
                    running.abort_all();
                    break;
                }
            }
        }
    }

    /// Marks finished jobs succeeded, many per statement.
    async fn complete_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<(JobId, String)>) {
        let mut batch = Vec::with_capacity(256);
        while rx.recv_many(&mut batch, 256).await > 0 {
            if let Err(e) = self.queue.store().complete_jobs(&batch, now()).await {
                tracing::warn!(error = %e, jobs = batch.len(), "recording completed jobs failed; their leases will expire");
            }
            batch.clear();
        }
    }

    /// Runs one attempt with heartbeats; settles failures itself.
    async fn run_one(self: Arc<Self>, job: Job) -> Outcome {
        let Some(token) = job.lease_token.clone() else {
            return Outcome::Settled;
        };
        let Some(handler) = self.registry.handler(&job.kind).cloned() else {
            self.settle(
                &job,
                JobError::Permanent(format!("no handler for kind {}", job.kind)),
                None,
            )
            .await;
            return Outcome::Settled;
        };
        let lost = Arc::new(AtomicBool::new(false));
        let ctx = JobContext::new(self.queue.store().clone(), job.id, token.clone(), lost.clone());
        let started = Instant::now();
        let result = tokio::select! {
            r = handler.run(&job, &ctx) => r,
            _ = self.heartbeat(job.id, &token, &lost) => Err(JobError::Transient("heartbeat ended".into())),
        };
        let metrics = self.queue.metrics();
        metrics.ran(&job.kind, started.elapsed());
        match result {
            Ok(()) => {
                metrics.completed(&job.kind, 1);
                Outcome::Done(job.id, token)
            }
            Err(e) => {
                self.settle(&job, e, Some(&handler)).await;
                Outcome::Settled
            }
        }
    }

    /// Extends the lease every third of the visibility timeout, forever (the job's future
    /// ends first); a lost lease is flagged for the job to see.
    async fn heartbeat(&self, id: JobId, token: &str, lost: &AtomicBool) {
        let every = self.config.visibility_timeout / 3;
        loop {
            tokio::time::sleep(every).await;
            let at = now();
            match self
                .queue
                .store()
                .heartbeat_job(id, token, super::after(at, self.config.visibility_timeout), at)
                .await
            {
                Ok(true) => {}
                Ok(false) => lost.store(true, std::sync::atomic::Ordering::Relaxed),
                Err(e) => tracing::warn!(error = %e, job = %id, "heartbeat failed"),
            }
        }
    }

    /// Records a failed attempt: retry with backoff, or dead (then `on_dead`).
    async fn settle(&self, job: &Job, error: JobError, handler: Option<&Arc<dyn Handler>>) {
        let metrics = self.queue.metrics();
        metrics.failed(&job.kind);
        let at = now();
        let policy = handler.map(|h| h.policy()).unwrap_or_default();
        let retry_at = match &error {
            JobError::Permanent(_) => None,
            _ if job.attempts >= job.max_attempts => None,
            JobError::RetryAfter(delay, _) => Some(super::after(at, *delay)),
            JobError::Transient(_) => Some(super::after(at, policy.delay(job.attempts, &mut rand::rng()))),
        };
        let message = error.to_string();
        let failure = JobFailure {
            attempt: job.attempts,
            at,
            error: message.clone(),
        };
        match self.queue.store().fail_job(job, &failure, retry_at).await {
            Ok(true) if retry_at.is_none() => {
                metrics.dead(&job.kind);
                // an error: it waits for an admin, and error reporting sees it
                tracing::error!(job = %job.id, kind = %job.kind, error = %message, "job is dead");
                if let Some(h) = handler {
                    let dead = Job {
                        errors: job.history_with(&message, at),
                        state: crate::domain::JobState::Dead,
                        ..job.clone()
                    };
                    h.on_dead(&dead, &message).await;
                }
            }
            Ok(true) => {
                tracing::debug!(job = %job.id, kind = %job.kind, error = %message, "job will be retried")
            }
            Ok(false) => {
                tracing::info!(job = %job.id, "job's lease was lost before its failure was recorded")
            }
            Err(e) => tracing::warn!(error = %e, job = %job.id, "recording a job failure failed"),
        }
    }

    async fn maintenance_loop(self: Arc<Self>, scheduler: Scheduler, mut stop: watch::Receiver<bool>) {
        loop {
            self.reclaim().await;
            if let Err(e) = scheduler.tick(now()).await {
                tracing::warn!(error = %e, "firing schedules failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.maintenance_interval) => {}
                _ = stopped(&mut stop) => return,
            }
        }
    }

    async fn reclaim(&self) {
        match self.queue.store().reclaim_expired_jobs(now()).await {
            Ok(reclaimed) => {
                if reclaimed.requeued > 0 {
                    tracing::info!(jobs = reclaimed.requeued, "requeued jobs whose lease expired");
                    self.queue.wake().notify_waiters();
                }
                for job in &reclaimed.dead {
                    self.queue.metrics().dead(&job.kind);
                    if let Some(h) = self.registry.handler(&job.kind) {
                        h.on_dead(job, "lease expired").await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reclaiming expired leases failed"),
        }
    }

    async fn stats_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            match self.queue.store().job_stats(JobScope::AllWorkspaces).await {
                Ok(stats) => self.queue.metrics().sample(&stats, now()),
                Err(e) => tracing::warn!(error = %e, "sampling queue depth failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.stats_interval) => {}
                _ = stopped(&mut stop) => return,
            }
        }
    }
}
