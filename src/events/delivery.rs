//! Webhook deliveries on the job queue, and event-log retention.
//!
//! `Dispatcher` runs beside the workers: woken by the bus (and once a second), it reads each
//! enabled endpoint's events after the endpoint's cursor, queues one `webhook.deliver` job per
//! wanted event (unique per endpoint and event, so two dispatchers queue it once), then moves
//! the cursor with a compare-and-set. A crash between queueing and moving the cursor queues
//! again what was already delivered: deliveries are at least once, and receivers drop
//! duplicates by `Leadgate-Event-Id`. `DeliveryHandler` makes one attempt per job; a delivery
//! that exhausts its attempts is dead-lettered with the receiver's answer in its error history
//! and counts towards switching the endpoint off.
//!
//! **Webhooks are at least once.** Deliveries are queued per (endpoint, event) with a unique key;
//! the endpoint's cursor moves after queueing, so a crash in between queues again, and receivers
//! drop duplicates by `Leadgate-Event-Id`. The signature (`t=<unix>,v1=<hex>`, HMAC-SHA256 over
//! `"<t>.<body>"`) is computed on every attempt. A delivery that exhausts its attempts stays in
//! the dead-letter queue with the receiver's answer in its history; after `webhook_disable_after`
//! such deliveries in a row the endpoint is switched off and a `webhook.disabled` event reports
//! it. Re-enabling it resumes with new events, not the backlog.

use super::Bus;
use super::webhooks::{Deliverer, DeliveryError};
use crate::domain::{Duplicate, Jitter, Job, JobKind, NewJob, RetryPolicy, WebhookId, WorkspaceId, now};
use crate::jobs::builtin::retention_cutoff;
use crate::jobs::{Handler, JobContext, JobError, Queue};
use crate::store::{Store, StoreError};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::broadcast;

/// The job kind of one delivery attempt.
pub const DELIVER: JobKind = JobKind::new("webhook.deliver");
/// The job kind that applies event and delivery-log retention.
pub const PRUNE_EVENTS: JobKind = JobKind::new("events.prune");
/// Events read per endpoint and statement.
const BATCH: u32 = 500;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delivery {
    endpoint_id: WebhookId,
    seq: i64,
}

/// Queues deliveries for new events.
pub struct Dispatcher {
    store: Store,
    queue: Queue,
    bus: Bus,
}

impl Dispatcher {
    pub fn new(store: Store, queue: Queue, bus: Bus) -> Self {
        Self { store, queue, bus }
    }

    /// Dispatches until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut live = self.bus.watch();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            // the newest number per workspace woken for; `None` looks at every endpoint
            let woken: Option<HashMap<WorkspaceId, i64>> = tokio::select! {
                _ = &mut shutdown => return,
                first = live.recv() => match first {
                    Ok(event) => {
                        // one pass covers everything committed so far
                        let mut woken = HashMap::from([(event.workspace_id, event.seq)]);
                        while let Ok(e) = live.try_recv() {
                            let top = woken.entry(e.workspace_id).or_insert(e.seq);
                            *top = (*top).max(e.seq);
                        }
                        Some(woken)
                    }
                    // fell behind the bus: look at every endpoint
                    Err(broadcast::error::RecvError::Lagged(_)) => None,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => None,
            };
            if let Err(e) = self.dispatch(woken.as_ref()).await {
                tracing::warn!(error = %e, "webhook dispatch failed; retrying");
            }
        }
    }

    /// One pass over the enabled endpoints — with `woken`, only those of its workspaces that
    /// are behind the number given — returning how many deliveries it queued.
    pub async fn dispatch(&self, woken: Option<&HashMap<WorkspaceId, i64>>) -> Result<usize, StoreError> {
        let mut queued = 0;
        for endpoint in self.store.enabled_webhooks().await? {
            let ws = endpoint.workspace_id;
            if woken.is_some_and(|w| w.get(&ws).is_none_or(|top| endpoint.cursor >= *top)) {
                continue;
            }
            let mut cursor = endpoint.cursor;
            loop {
                let events = self.store.events_after(ws, cursor, BATCH).await?;
                let Some(last) = events.last().map(|e| e.seq) else {
                    break;
                };
                for event in events.iter().filter(|e| endpoint.wants(&e.kind)) {
                    let job = NewJob::new(
                        DELIVER,
                        serde_json::json!({"endpointId": endpoint.id, "seq": event.seq}),
                    )
                    .in_workspace(ws)
                    .unique(format!("webhook:{}:{}", endpoint.id, event.seq), Duplicate::Keep);
                    if self.queue.enqueue(job).await?.created {
                        queued += 1;
                    }
                }
                if !self.store.advance_webhook(ws, endpoint.id, cursor, last).await? {
                    // another dispatcher (or an admin's change) moved it: next pass
                    break;
                }
                cursor = last;
                if events.len() < BATCH as usize {
                    break;
                }
            }
        }
        Ok(queued)
    }
}

/// Runs one delivery attempt per job.
pub struct DeliveryHandler {
    pub deliverer: Deliverer,
    pub bus: Bus,
    /// The first retry's delay, doubled per attempt up to an hour.
    pub retry_base: Duration,
}

impl DeliveryHandler {
    fn target(job: &Job) -> Result<(WorkspaceId, Delivery), JobError> {
        let ws = job
            .workspace_id
            .ok_or_else(|| JobError::Permanent("a delivery job needs a workspace".into()))?;
        let delivery: Delivery = serde_json::from_value(job.payload.clone())
            .map_err(|e| JobError::Permanent(format!("malformed delivery job: {e}")))?;
        Ok((ws, delivery))
    }
}

impl Handler for DeliveryHandler {
    fn kind(&self) -> JobKind {
        DELIVER
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.deliverer.options().max_attempts.max(1),
            base: self.retry_base,
            max: Duration::from_secs(3600),
            jitter: Jitter::Equal,
        }
    }

    fn run<'a>(&'a self, job: &'a Job, _ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let (ws, d) = Self::target(job)?;
            self.deliverer
                .deliver(ws, d.endpoint_id, d.seq, job.attempts.max(1))
                .await
                .map_err(|e| match e {
                    DeliveryError::Retry(message, Some(after)) => JobError::RetryAfter(after, message),
                    DeliveryError::Retry(message, None) => JobError::Transient(message),
                    DeliveryError::Permanent(message) => JobError::Permanent(message),
                    DeliveryError::Store(e) => JobError::Transient(e.to_string()),
                })
        })
    }

    fn on_dead<'a>(&'a self, job: &'a Job, _error: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Ok((ws, d)) = Self::target(job) else { return };
            match self.deliverer.dead(ws, d.endpoint_id, now()).await {
                Ok(events) => self.bus.publish(events),
                Err(e) => tracing::error!(error = %e, "cannot count a dead webhook delivery"),
            }
        })
    }
}

/// Deletes events and delivery attempts older than the retention.
pub struct PruneEvents {
    pub store: Store,
    pub retention: Duration,
}

impl Handler for PruneEvents {
    fn kind(&self) -> JobKind {
        PRUNE_EVENTS
    }

    fn run<'a>(&'a self, _job: &'a Job, _ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let Some(before) = retention_cutoff(self.retention) else {
                return Ok(());
            };
            let transient = |e: StoreError| JobError::Transient(e.to_string());
            let events = self.store.prune_events(before).await.map_err(transient)?;
            let deliveries = self.store.prune_deliveries(before).await.map_err(transient)?;
            tracing::info!(events, deliveries, "pruned the event log");
            Ok(())
        })
    }
}
