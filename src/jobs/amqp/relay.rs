//! The relay (transactional outbox) beside each process's workers: publishes queued rows that
//! have no confirmed message — enqueued while the broker was down, whose publish was cut off,
//! put back by a retry the worker could not announce, a reclaimed lease, a replay in a process
//! without a broker, a cron tick — once the broker answers, and now and then, when the work
//! queue is empty, rows whose message was confirmed long ago without leading to a claim.
//!
//! Relays of several processes share the work: taking rows marks them in the same statement
//! (`SKIP LOCKED` on PostgreSQL), and a row is left alone for `grace` after it was written so
//! the publisher of the process that wrote it publishes it first. A message published twice
//! is harmless: only one claim takes the row.

use super::publisher::{self, BATCH};
use super::{Broker, HORIZON, JobMessage, RPC_TIMEOUT};
use crate::domain::{JobId, now};
use crate::jobs::after;
use crate::store::{Store, Unpublished};
use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use std::time::{Duration, Instant};

/// How long the relay leaves a row to the process that wrote it.
pub const GRACE: Duration = Duration::from_secs(2);

/// When the relay looks.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Between looks for unpublished rows when nothing woke the relay.
    pub interval: Duration,
    /// How long a row is left to the process that wrote it.
    pub grace: Duration,
    /// How long a confirmed message may go without a claim before its row is published again
    /// (checked only while the work queue is empty); also how often that is checked.
    pub stale_after: Duration,
}

/// Runs until `stop` resolves.
pub async fn run(
    broker: Broker,
    store: Store,
    config: RelayConfig,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut channel: Option<Channel> = None;
    let mut stale_checked = Instant::now();
    loop {
        if !broker.is_down() {
            if channel.as_ref().is_none_or(|c| !c.status().connected()) {
                channel = publisher::open(&broker).await;
            }
            if let Some(ch) = &channel {
                let mut usable = relay_unpublished(&broker, &store, ch, &config).await;
                if usable && stale_checked.elapsed() >= config.stale_after {
                    stale_checked = Instant::now();
                    usable = relay_stale(&broker, &store, ch, &config).await;
                }
                if !usable {
                    channel = None;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(config.interval) => {}
            _ = &mut stop => return,
        }
    }
}

/// Publishes unpublished rows, batch after batch; false when the channel failed.
async fn relay_unpublished(broker: &Broker, store: &Store, channel: &Channel, config: &RelayConfig) -> bool {
    loop {
        let at = now();
        let written_before = at - chrono::TimeDelta::from_std(config.grace).unwrap_or_default();
        let rows = match store
            .take_unpublished_jobs(after(at, HORIZON), written_before, BATCH as u32, at)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "the relay cannot read unpublished jobs");
                return true;
            }
        };
        let full = rows.len() == BATCH;
        if rows.is_empty() {
            return true;
        }
        if !publish_rows(broker, store, channel, &rows).await {
            return false;
        }
        if !full {
            return true;
        }
    }
}

/// Publishes again rows whose message led to no claim, when the work queue holds nothing
/// else; false when the channel failed.
async fn relay_stale(broker: &Broker, store: &Store, channel: &Channel, config: &RelayConfig) -> bool {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let declare = channel.queue_declare(
        broker.names().work.as_str().into(),
        passive,
        FieldTable::default(),
    );
    let waiting = match tokio::time::timeout(RPC_TIMEOUT, declare).await {
        Ok(Ok(queue)) => queue.message_count(),
        _ => return false,
    };
    if waiting > 0 {
        return true;
    }
    let at = now();
    let before = at - chrono::TimeDelta::from_std(config.stale_after).unwrap_or_default();
    match store.take_stale_jobs(before, BATCH as u32, at).await {
        Ok(rows) if !rows.is_empty() => {
            tracing::info!(
                jobs = rows.len(),
                "publishing job messages again that led to no claim"
            );
            publish_rows(broker, store, channel, &rows).await
        }
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, "the relay cannot read stale jobs");
            true
        }
    }
}

/// Publishes rows the relay took (marked); hands back those not confirmed.
async fn publish_rows(broker: &Broker, store: &Store, channel: &Channel, rows: &[Unpublished]) -> bool {
    let messages: Vec<JobMessage> = rows
        .iter()
        .map(|r| JobMessage::new(r.id, &r.kind, r.run_at))
        .collect();
    let refs: Vec<&JobMessage> = messages.iter().collect();
    let (confirmed, usable) = publisher::publish(channel, broker.names(), broker.metrics(), &refs).await;
    let failed: Vec<JobId> = rows
        .iter()
        .zip(&confirmed)
        .filter(|(_, ok)| !**ok)
        .map(|(r, _)| r.id)
        .collect();
    broker.metrics().relayed((rows.len() - failed.len()) as u64);
    if !failed.is_empty()
        && let Err(e) = store.unpublish_jobs(&failed).await
    {
        tracing::warn!(error = %e, jobs = failed.len(), "handing unconfirmed job messages back failed");
    }
    usable
}
