//! Publishing job messages: persistent and mandatory, on a channel in confirm mode, a batch at
//! a time (every message of the batch is sent, then their confirms are read, so one round trip
//! serves the batch), and the announce loop that publishes what enqueues, retries and replays
//! hand over and records in the rows which messages the broker confirmed.
//!
//! A message counts as published only when the broker acked it and did not return it as
//! unroutable; anything else leaves its row to the relay.

use super::{Announcement, Bookkeeping, Broker, JobMessage, Names, RPC_TIMEOUT, Route, WORK_KEY};
use crate::domain::{JobId, now};
use crate::jobs::metrics::JobMetrics;
use crate::store::Store;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Most messages one batch publishes before reading confirms.
pub(super) const BATCH: usize = 1_000;

/// A new channel in confirm mode on the connection, if it is up.
pub(super) async fn open(broker: &Broker) -> Option<Channel> {
    let conn = broker.connection_now()?;
    let setup = async {
        let channel = conn.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok::<_, lapin::Error>(channel)
    };
    timeout(RPC_TIMEOUT, setup).await.ok()?.ok()
}

/// Publishes `messages` on `channel`; for each, whether the broker confirmed it. The second
/// value is false when the channel failed (the caller opens another).
pub(super) async fn publish(
    channel: &Channel,
    names: &Names,
    metrics: &JobMetrics,
    messages: &[&JobMessage],
) -> (Vec<bool>, bool) {
    let at = now();
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into());
    let options = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    let mut pending = Vec::with_capacity(messages.len());
    let mut usable = true;
    // a connection that died under the batch may leave calls unanswered: the batch (sending
    // and confirms) waits at most this long
    let deadline = tokio::time::Instant::now() + RPC_TIMEOUT;
    for message in messages {
        let route = Route::after(message.wait(at));
        let (exchange, key) = match route {
            Route::Work => (names.work.clone(), WORK_KEY.to_owned()),
            Route::Delay(ms) => (String::new(), names.delay(ms)),
        };
        let body = message.encode();
        let sent = channel.basic_publish(exchange.into(), key.into(), options, &body, properties.clone());
        let Ok(sent) = tokio::time::timeout_at(deadline, sent).await else {
            usable = false;
            break;
        };
        match sent {
            Ok(confirm) => {
                metrics.published(route.label());
                pending.push(confirm);
            }
            Err(e) => {
                tracing::debug!(error = %e, "publishing a job message failed");
                usable = false;
                break;
            }
        }
    }
    let mut confirmed = Vec::with_capacity(messages.len());
    for confirm in pending {
        let Ok(answer) = tokio::time::timeout_at(deadline, confirm).await else {
            usable = false;
            break;
        };
        let ok = match answer {
            Ok(Confirmation::Ack(None)) => true,
            Ok(Confirmation::Ack(Some(_)) | Confirmation::Nack(_) | Confirmation::NotRequested) => {
                metrics.nacked();
                false
            }
            Err(e) => {
                tracing::debug!(error = %e, "a job message was not confirmed");
                usable = false;
                false
            }
        };
        if ok {
            metrics.confirmed();
        }
        confirmed.push(ok);
    }
    confirmed.resize(messages.len(), false);
    (confirmed, usable)
}

/// Publishes announcements as they come, in batches, for as long as the broker handle lives.
pub(super) async fn announce_loop(
    broker: Broker,
    store: Store,
    mut rx: mpsc::UnboundedReceiver<Announcement>,
) {
    let mut channel: Option<Channel> = None;
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if channel.as_ref().is_none_or(|c| !c.status().connected()) {
            channel = open(&broker).await;
        }
        let messages: Vec<&JobMessage> = batch.iter().map(|a| &a.message).collect();
        let confirmed = match &channel {
            Some(ch) => {
                let (confirmed, usable) = publish(ch, broker.names(), broker.metrics(), &messages).await;
                if !usable {
                    channel = None;
                }
                confirmed
            }
            None => vec![false; batch.len()],
        };
        record(&store, &batch, &confirmed).await;
        batch.clear();
    }
}

/// Writes what the broker's answers mean for the rows.
async fn record(store: &Store, batch: &[Announcement], confirmed: &[bool]) {
    let mut marked: Vec<JobId> = Vec::new();
    let mut sent = None;
    let mut unmarked: Vec<JobId> = Vec::new();
    for (a, ok) in batch.iter().zip(confirmed) {
        match (a.bookkeeping, *ok) {
            (Bookkeeping::MarkOnConfirm, true) => {
                marked.push(a.message.job_id());
                sent = sent.max(Some(a.sent));
            }
            (Bookkeeping::UnmarkOnFailure, false) => unmarked.push(a.message.job_id()),
            _ => {}
        }
    }
    if let Some(sent) = sent
        && let Err(e) = store.mark_jobs_published(&marked, sent, now()).await
    {
        // the rows stay unmarked: the relay publishes them again, which is harmless
        tracing::warn!(error = %e, jobs = marked.len(), "recording published job messages failed");
    }
    if !unmarked.is_empty()
        && let Err(e) = store.unpublish_jobs(&unmarked).await
    {
        tracing::warn!(error = %e, jobs = unmarked.len(), "handing unconfirmed job messages to the relay failed");
    }
}
