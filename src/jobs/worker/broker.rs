//! The consume loop: jobs delivered by RabbitMQ (`jobs::amqp`). Deliveries that arrive
//! together are claimed with one statement (`Store::claim_jobs_by_id`) as slots free up; each
//! claimed job runs as in the claim loop and its delivery is settled after the outcome is in
//! the database: acked once the completion is recorded (in the completer's batch), acked after
//! a retry was written and published to a delay queue, rejected into the dead-letter queue
//! when the job died.
//!
//! A delivery whose row cannot be claimed is looked at alone (`unclaimed`): gone (poison:
//! dead-lettered), done (a duplicate: acked), not due yet (sent on through a delay queue),
//! running under a live lease (sent on until the lease ends, so a worker killed mid-job has its
//! job run again by whoever gets the message then), or running under an expired lease
//! (reclaimed and claimed here). A body that is no job message is dead-lettered at once.

use super::{Finished, Outcome, Runtime, Settlement, stopped, take_slots};
use crate::domain::{Job, JobId, JobScope, JobState, now};
use crate::jobs::after;
use crate::jobs::amqp::consumer::{Ack, Delivered, Deliveries};
use crate::jobs::amqp::{Announcement, Bookkeeping, Broker, HORIZON, JobMessage};
use crate::store::Lease;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::task::JoinSet;

/// How long after a lease's end a message sent on for its running job comes back.
const AFTER_LEASE: Duration = Duration::from_millis(50);
/// The pause before a delivery is handed back when the database failed.
const DATABASE_PAUSE: Duration = Duration::from_secs(1);

impl Runtime {
    /// Consumes the work queue until shutdown, reconnecting after the connection is lost.
    pub(super) async fn consume_loop(self: Arc<Self>, broker: Broker, mut stop: watch::Receiver<bool>) {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let completer = tokio::spawn(self.clone().complete_loop(done_rx));
        let mut running: JoinSet<()> = JoinSet::new();
        let tag = format!("leadgate-{}", uuid::Uuid::now_v7().simple());
        let mut backoff = Duration::from_millis(100);
        let mut open: Option<Deliveries> = None;
        'connect: loop {
            let mut deliveries = tokio::select! {
                opened = Deliveries::open(&broker, &tag) => match opened {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot consume job messages; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = stopped(&mut stop) => break 'connect,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue 'connect;
                    }
                },
                _ = stopped(&mut stop) => break 'connect,
            };
            backoff = Duration::from_millis(100);
            let mut pending: VecDeque<Delivered> = VecDeque::new();
            loop {
                while running.try_join_next().is_some() {}
                self.start_pending(&broker, &mut pending, &mut running, &done_tx)
                    .await;
                tokio::select! {
                    next = deliveries.next() => match next {
                        Some(d) => {
                            pending.push_back(d);
                            while let Some(d) = deliveries.ready() {
                                pending.push_back(d);
                            }
                        }
                        None => {
                            // unacked deliveries are redelivered by the broker; the jobs that
                            // run on record their outcome, and their redeliveries are duplicates
                            tracing::warn!(
                                waiting = pending.len(),
                                "job deliveries stopped (connection lost); reconnecting"
                            );
                            continue 'connect;
                        }
                    },
                    slot = self.slots.clone().acquire_owned(), if !pending.is_empty() => {
                        drop(slot);
                    }
                    _ = stopped(&mut stop) => {
                        for d in pending.drain(..) {
                            d.ack.requeue().await;
                        }
                        open = Some(deliveries);
                        break 'connect;
                    }
                }
            }
        }
        let deadline = tokio::time::Instant::now() + self.config.shutdown_grace;
        while !running.is_empty() {
            if tokio::time::timeout_at(deadline, running.join_next())
                .await
                .is_err()
            {
                tracing::warn!(
                    jobs = running.len(),
                    "shutdown grace over; leaving jobs to lease expiry"
                );
                running.abort_all();
                break;
            }
        }
        drop(done_tx);
        let _ = completer.await;
        if let Some(deliveries) = open {
            deliveries.close().await;
        }
    }

    /// Starts as many waiting deliveries as there are free slots: poison is dead-lettered,
    /// early messages are sent on, the rest claimed together.
    async fn start_pending(
        self: &Arc<Self>,
        broker: &Broker,
        pending: &mut VecDeque<Delivered>,
        running: &mut JoinSet<()>,
        done: &mpsc::UnboundedSender<Finished>,
    ) {
        while !pending.is_empty() {
            let slots = take_slots(&self.slots, pending.len());
            if slots.is_empty() {
                return;
            }
            let at = now();
            let mut due = Vec::with_capacity(slots.len());
            for d in pending.drain(..slots.len()) {
                match d.message {
                    Err(reason) => {
                        tracing::warn!(%reason, "a job message is poison; dead-lettered");
                        d.ack.dead_letter("poison").await;
                    }
                    Ok(message) if !message.wait(at).is_zero() => {
                        broker.announce(Announcement {
                            message,
                            sent: at,
                            bookkeeping: Bookkeeping::UnmarkOnFailure,
                        });
                        d.ack.ack().await;
                    }
                    Ok(message) => due.push((message, d.ack)),
                }
            }
            let mut slots = slots.into_iter();
            let ids: Vec<JobId> = due.iter().map(|(m, _)| m.job_id()).collect();
            let mut claimed: HashMap<JobId, Job> = match self.claim_ids(&ids).await {
                Ok(jobs) => jobs.into_iter().map(|j| (j.id, j)).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "claiming delivered jobs failed");
                    tokio::time::sleep(DATABASE_PAUSE).await;
                    for (_, ack) in due {
                        ack.requeue().await;
                    }
                    continue;
                }
            };
            for (message, ack) in due {
                let Some(slot) = slots.next() else {
                    ack.requeue().await;
                    continue;
                };
                let runtime = self.clone();
                let broker = broker.clone();
                let done = done.clone();
                match claimed.remove(&message.job_id()) {
                    Some(job) => running.spawn(runtime.run_delivered(broker, job, ack, slot, done)),
                    None => running.spawn(runtime.unclaimed(broker, message, ack, slot, done)),
                };
            }
        }
    }

    async fn claim_ids(&self, ids: &[JobId]) -> Result<Vec<Job>, crate::store::StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let at = now();
        let lease = Lease {
            token: uuid::Uuid::now_v7().simple().to_string(),
            until: after(at, self.config.visibility_timeout),
        };
        self.queue.store().claim_jobs_by_id(ids, &lease, at).await
    }

    /// Runs a claimed job and settles its delivery by the outcome.
    async fn run_delivered(
        self: Arc<Self>,
        broker: Broker,
        job: Job,
        ack: Ack,
        slot: OwnedSemaphorePermit,
        done: mpsc::UnboundedSender<Finished>,
    ) {
        let (id, kind) = (job.id, job.kind.clone());
        let outcome = self.run_one(job).await;
        drop(slot);
        match outcome {
            Outcome::Done(id, token) => {
                let _ = done.send(Finished {
                    id,
                    token,
                    ack: Some(ack),
                });
            }
            Outcome::Settled(Settlement::Retry(at)) => {
                broker.announce_row(id, &kind, at, now());
                ack.ack().await;
            }
            Outcome::Settled(Settlement::Dead) => ack.dead_letter("dead").await,
            Outcome::Settled(Settlement::NotRecorded) => ack.ack().await,
        }
    }

    /// A delivery whose job could not be claimed with the others.
    async fn unclaimed(
        self: Arc<Self>,
        broker: Broker,
        message: JobMessage,
        ack: Ack,
        slot: OwnedSemaphorePermit,
        done: mpsc::UnboundedSender<Finished>,
    ) {
        let id = message.job_id();
        let job = match self.queue.store().job(JobScope::AllWorkspaces, id).await {
            Ok(Some(job)) => job,
            Ok(None) => {
                tracing::warn!(job = %id, kind = %message.kind, "a job message names no job; dead-lettered");
                ack.dead_letter("unknown").await;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, job = %id, "reading a delivered job failed");
                tokio::time::sleep(DATABASE_PAUSE).await;
                ack.requeue().await;
                return;
            }
        };
        let at = now();
        match job.state {
            JobState::Succeeded | JobState::Dead => {
                broker.metrics().duplicate();
                ack.ack().await;
            }
            JobState::Queued if job.run_at > at => {
                // its time moved (a debounce) after the message was sent
                if job.run_at <= after(at, HORIZON) {
                    broker.announce(Announcement {
                        message: JobMessage::new(id, &job.kind, job.run_at),
                        sent: at,
                        bookkeeping: Bookkeeping::UnmarkOnFailure,
                    });
                } else if let Err(e) = self.queue.store().unpublish_jobs(&[id]).await {
                    tracing::warn!(error = %e, job = %id, "handing a far job to the relay failed");
                }
                ack.ack().await;
            }
            JobState::Running if job.lease_until.is_some_and(|until| until > at) => {
                let until = job.lease_until.unwrap_or(at);
                broker.announce(Announcement {
                    message: JobMessage::new(id, &job.kind, after(until, AFTER_LEASE)),
                    sent: at,
                    bookkeeping: Bookkeeping::Nothing,
                });
                ack.ack().await;
            }
            JobState::Queued | JobState::Running => {
                if job.state == JobState::Running {
                    self.reclaim().await;
                }
                match self.claim_ids(&[id]).await {
                    Ok(mut jobs) if !jobs.is_empty() => {
                        let job = jobs.remove(0);
                        self.run_delivered(broker, job, ack, slot, done).await;
                    }
                    Ok(_) => {
                        broker.metrics().duplicate();
                        ack.ack().await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, job = %id, "claiming a delivered job failed");
                        tokio::time::sleep(DATABASE_PAUSE).await;
                        ack.requeue().await;
                    }
                }
            }
        }
    }
}
