//! The worker runtime: claims due jobs in batches as slots free up, runs them concurrently
//! with a heartbeat each, batches completions, retries failures by the kind's policy, sends
//! exhausted ones to the dead state (calling `on_dead`), reclaims expired leases, fires
//! schedules, samples queue metrics, and stops gracefully.
//!
//! A claim leases jobs for `visibility_timeout`; heartbeats extend it every third of that.
//! A worker that dies stops heartbeating, so another one reclaims its jobs once the lease
//! ends: at-least-once delivery.
//!
//! With a broker attached to the queue (`jobs::amqp`) the jobs come from RabbitMQ deliveries
//! (`broker`: the consume loop) and the relay runs beside the workers; the database claim loop
//! then claims only while the broker is down. Both share the `concurrency` slots.

mod broker;

use super::amqp::consumer::Ack;
use super::amqp::relay::{self, RelayConfig};
use super::schedule::Scheduler;
use super::{Handler, JobContext, JobError, Queue, Registry};
use crate::domain::{Job, JobFailure, JobId, JobScope, Timestamp, now};
use crate::store::{Lease, StoreError};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
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
        let broker = queue.broker().cloned();
        let runtime = Arc::new(Runtime {
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
            queue,
            registry,
            config,
        });
        let mut tasks = vec![
            tokio::spawn(runtime.clone().claim_loop(stopped.clone())),
            tokio::spawn(runtime.clone().maintenance_loop(scheduler, stopped.clone())),
            tokio::spawn(runtime.clone().stats_loop(stopped.clone())),
        ];
        if let Some(broker) = broker {
            let config = RelayConfig {
                interval: runtime.config.poll_interval,
                grace: relay::GRACE,
                stale_after: runtime.config.visibility_timeout,
            };
            let mut rx = stopped.clone();
            let store = runtime.queue.store().clone();
            tasks.push(tokio::spawn(relay::run(
                broker.clone(),
                store,
                config,
                async move { stopped_signal(&mut rx).await },
            )));
            tasks.push(tokio::spawn(runtime.consume_loop(broker, stopped)));
        }
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
    /// One permit per job running, whichever loop started it.
    slots: Arc<Semaphore>,
}

async fn stopped_signal(rx: &mut watch::Receiver<bool>) {
    stopped(rx).await
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
    /// Succeeded: to be recorded (in a batch) under this lease token.
    Done(JobId, String),
    /// Failed, and recorded as such.
    Settled(Settlement),
}

/// What recording a failed attempt did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settlement {
    /// Queued again, due at this time.
    Retry(Timestamp),
    /// Moved to the dead state.
    Dead,
    /// Not recorded: the lease was lost, or the database failed (the lease then expires).
    NotRecorded,
}

/// A succeeded job for the completer, and the delivery to acknowledge once it is recorded.
struct Finished {
    id: JobId,
    token: String,
    ack: Option<Ack>,
}

/// Up to `n` free slots, taken now.
fn take_slots(slots: &Arc<Semaphore>, n: usize) -> Vec<OwnedSemaphorePermit> {
    (0..n)
        .map_while(|_| slots.clone().try_acquire_owned().ok())
        .collect()
}

/// Resolves when the broker's link changes; never without a broker.
async fn link_changed(rx: &mut Option<watch::Receiver<super::amqp::Link>>) {
    match rx {
        Some(rx) => {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

impl Runtime {
    /// Whether RabbitMQ delivers the jobs now (a broker is attached and not down).
    fn broker_delivers(&self) -> bool {
        self.queue.broker().is_some_and(|b| !b.is_down())
    }

    /// Claims due jobs from the database: always without a broker, only while it is down
    /// with one.
    async fn claim_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let kinds = self.registry.kinds();
        let concurrency = self.config.concurrency.max(1);
        let refill_at = (concurrency / 2).max(1);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let completer = tokio::spawn(self.clone().complete_loop(done_rx));
        let mut running: JoinSet<Outcome> = JoinSet::new();
        let wake = self.queue.wake().clone();
        let mut link = self.queue.broker().map(|b| b.watch());
        loop {
            // Armed before claiming, so an enqueue during the claim is not missed.
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let free = self.slots.available_permits();
            let mut claimed_full = false;
            if !self.broker_delivers() && free > 0 && (free >= refill_at || running.is_empty()) {
                let want = free.min(self.config.batch_size.max(1) as usize);
                let mut slots = take_slots(&self.slots, want);
                match self.claim(&kinds, slots.len() as u32).await {
                    Ok(jobs) => {
                        claimed_full = !slots.is_empty() && jobs.len() == slots.len();
                        for job in jobs {
                            let Some(slot) = slots.pop() else { break };
                            let runtime = self.clone();
                            let span = job_span(&job);
                            running.spawn(
                                async move {
                                    let outcome = runtime.run_one(job).await;
                                    drop(slot);
                                    outcome
                                }
                                .instrument(span),
                            );
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming jobs failed"),
                }
            }
            if claimed_full && self.slots.available_permits() > 0 {
                continue;
            }
            tokio::select! {
                Some(finished) = running.join_next() => {
                    if let Ok(Outcome::Done(id, token)) = finished {
                        let _ = done_tx.send(Finished { id, token, ack: None });
                    }
                }
                _ = notified => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = link_changed(&mut link) => {}
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
    async fn drain(&self, mut running: JoinSet<Outcome>, done: &mpsc::UnboundedSender<Finished>) {
        let deadline = tokio::time::Instant::now() + self.config.shutdown_grace;
        while !running.is_empty() {
            match tokio::time::timeout_at(deadline, running.join_next()).await {
                Ok(Some(Ok(Outcome::Done(id, token)))) => {
                    let _ = done.send(Finished { id, token, ack: None });
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

    /// Marks finished jobs succeeded, many per statement, then acknowledges their deliveries.
    async fn complete_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Finished>) {
        let mut batch = Vec::with_capacity(256);
        let mut acking = JoinSet::new();
        while rx.recv_many(&mut batch, 256).await > 0 {
            while acking.try_join_next().is_some() {}
            let done: Vec<(JobId, String)> = batch.iter().map(|f| (f.id, f.token.clone())).collect();
            if let Err(e) = self.queue.store().complete_jobs(&done, now()).await {
                // acknowledged anyway: the row decides, and its lease expiry requeues it
                tracing::warn!(error = %e, jobs = batch.len(), "recording completed jobs failed; their leases will expire");
            }
            let acks: Vec<Ack> = batch.drain(..).filter_map(|f| f.ack).collect();
            if !acks.is_empty() {
                // beside the next batch: an ack on a connection that died waits for a timeout
                acking.spawn(Ack::ack_all(acks));
            }
        }
        // the last acknowledgements go out before the channel closes
        while acking.join_next().await.is_some() {}
    }

    /// Runs one attempt with heartbeats; settles failures itself.
    async fn run_one(self: Arc<Self>, job: Job) -> Outcome {
        let Some(token) = job.lease_token.clone() else {
            return Outcome::Settled(Settlement::NotRecorded);
        };
        let Some(handler) = self.registry.handler(&job.kind).cloned() else {
            let settled = self
                .settle(
                    &job,
                    JobError::Permanent(format!("no handler for kind {}", job.kind)),
                    None,
                )
                .await;
            return Outcome::Settled(settled);
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
            Err(e) => Outcome::Settled(self.settle(&job, e, Some(&handler)).await),
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
    async fn settle(&self, job: &Job, error: JobError, handler: Option<&Arc<dyn Handler>>) -> Settlement {
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
                Settlement::Dead
            }
            Ok(true) => {
                tracing::debug!(job = %job.id, kind = %job.kind, error = %message, "job will be retried");
                retry_at.map_or(Settlement::Dead, Settlement::Retry)
            }
            Ok(false) => {
                tracing::info!(job = %job.id, "job's lease was lost before its failure was recorded");
                Settlement::NotRecorded
            }
            Err(e) => {
                tracing::warn!(error = %e, job = %job.id, "recording a job failure failed");
                Settlement::NotRecorded
            }
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
