//! Domain events on the broker (`queue_events`): the event log — lead, enrichment, import, CRM,
//! campaign, job and webhook events — published to the topic exchange `<prefix>.events` for
//! consumers outside leadgate.
//!
//! - **One publisher at a time, in order.** Every process with workers runs an exporter; the
//!   one holding the `event-export` lease (renewed on every pass, taken over by another process
//!   once it lapses for `EventExportConfig::lease_ttl`) publishes, so each workspace's events
//!   reach the exchange in the order of their numbers.
//! - **At least once.** For each workspace behind, the holder reads the log after the
//!   workspace's position, publishes a batch (persistent messages on a confirm channel), and
//!   moves the position past what the broker confirmed. A crash or a cut connection between the
//!   two publishes those events again: consumers drop duplicates by `message_id`
//!   (`<workspace>:<number>`, the id webhooks carry too).
//! - **Routing key** `<type>.<workspace id>`, e.g. `lead.created.0190…`: bind `lead.#` for the
//!   lead events of every workspace, `#.<workspace id>` for one workspace, `#` for everything.
//!   The body is the webhook body (`Event::envelope`); properties: `message_id`, `type`,
//!   `timestamp`, `content_type`, `app_id`, and the headers `workspace` and `sequence`.
//! - **Where it starts.** The first time publishing is switched on, every workspace starts at
//!   its newest event (history stays out of the broker); a workspace created later starts at
//!   its first. Events pruned from the log (`event_retention_days`) before they were published
//!   are skipped.
//! - **Broker down**: nothing moves; the log is the outbox, and what waited is published once
//!   the connection is back. Messages no queue is bound for are dropped by the exchange, as
//!   topic exchanges do: bind a queue before the events it should keep are committed.
//! - Messages already published cannot be recalled by an erasure; events written after it
//!   carry the lead's id only.

use super::{Broker, RPC_TIMEOUT, declare_events, text};
use crate::domain::{Event, WorkspaceId, now};
use crate::store::{EVENT_EXPORT_LEASE, Store, StoreError};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Events read from the log and published per batch.
const BATCH: u32 = 500;

/// How the exporter paces itself.
#[derive(Clone, Debug)]
pub struct EventExportConfig {
    /// How long the lease holds without a renewal (another process takes over after it).
    pub lease_ttl: Duration,
    /// Between passes when nothing woke the exporter (also how often a waiting process asks
    /// for the lease).
    pub interval: Duration,
}

impl Default for EventExportConfig {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(15),
            interval: Duration::from_secs(1),
        }
    }
}

/// The routing key of `event`: `<type>.<workspace id>`.
pub fn routing_key(event: &Event) -> String {
    format!("{}.{}", event.kind, event.workspace_id)
}

/// Publishes the event log until `stop` resolves; `wake` tells it that events were committed.
pub async fn run(
    broker: Broker,
    store: Store,
    config: EventExportConfig,
    wake: broadcast::Receiver<Arc<Event>>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut wake = Some(wake);
    let mut exporter = Exporter {
        owner: format!("pid {} {}", std::process::id(), uuid::Uuid::now_v7().simple()),
        broker,
        store,
        config,
        channel: None,
        holding: false,
        last_error: String::new(),
    };
    let mut tick = tokio::time::interval(exporter.config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            woken = next_wake(&mut wake) => {
                if matches!(woken, Err(broadcast::error::RecvError::Closed)) {
                    // the bus is gone: only the tick wakes us from now on
                    wake = None;
                }
                // one pass covers everything committed so far
                while wake.as_mut().is_some_and(|rx| rx.try_recv().is_ok()) {}
            }
            _ = tick.tick() => {}
        }
        match exporter.pass().await {
            Ok(()) => exporter.last_error.clear(),
            Err(e) if e.is_closed() => break,
            Err(e) => {
                let e = e.to_string();
                if e != exporter.last_error {
                    tracing::warn!(error = %e, "publishing events to RabbitMQ failed; retrying");
                    exporter.last_error = e;
                }
            }
        }
    }
    exporter.release().await;
}

/// The next wake-up from the bus; never once the bus is gone.
async fn next_wake(
    wake: &mut Option<broadcast::Receiver<Arc<Event>>>,
) -> Result<Arc<Event>, broadcast::error::RecvError> {
    match wake {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

struct Exporter {
    owner: String,
    broker: Broker,
    store: Store,
    config: EventExportConfig,
    channel: Option<Channel>,
    holding: bool,
    last_error: String,
}

impl Exporter {
    /// Takes or renews the lease; true while this process holds it.
    async fn lease(&mut self) -> Result<bool, StoreError> {
        // the first holder ever starts every workspace at its newest event
        let known = self.holding || self.store.lease_exists(EVENT_EXPORT_LEASE).await?;
        let held = self
            .store
            .take_lease(EVENT_EXPORT_LEASE, &self.owner, self.config.lease_ttl)
            .await?;
        if held && !known {
            let started = self.store.start_event_exports_at_heads(now()).await?;
            tracing::info!(
                workspaces = started,
                "publishing events to RabbitMQ from here on (earlier events stay in the log only)"
            );
        }
        if held != self.holding {
            if held {
                tracing::info!(exchange = %self.broker.names().events, "this process publishes the event log to RabbitMQ");
            }
            self.holding = held;
        }
        Ok(held)
    }

    async fn release(&mut self) {
        if self.holding
            && let Err(e) = self.store.release_lease(EVENT_EXPORT_LEASE, &self.owner).await
        {
            tracing::debug!(error = %e, "giving up the event export lease failed; it lapses");
        }
        if let Some(ch) = self.channel.take() {
            let _ = tokio::time::timeout(RPC_TIMEOUT, ch.close(200, "done".into())).await;
        }
    }

    /// One pass: every workspace whose log is ahead of its position, batch by batch.
    async fn pass(&mut self) -> Result<(), StoreError> {
        if self.broker.is_down() || !self.lease().await? {
            self.channel = None;
            return Ok(());
        }
        let positions: HashMap<WorkspaceId, i64> =
            self.store.event_export_positions().await?.into_iter().collect();
        let behind: Vec<(WorkspaceId, i64, i64)> = self
            .store
            .event_heads()
            .await?
            .into_iter()
            .map(|(ws, head)| (ws, positions.get(&ws).copied().unwrap_or(0), head))
            .filter(|(_, at, head)| at < head)
            .collect();
        let metrics = self.broker.metrics().clone();
        let mut pending: i64 = behind.iter().map(|(_, at, head)| head - at).sum();
        metrics.events_pending(pending);
        for (ws, mut at, head) in behind {
            while at < head {
                let events = self.store.events_after(ws, at, BATCH).await?;
                if events.is_empty() {
                    // pruned before they were published
                    self.store.advance_event_export(ws, head, now()).await?;
                    pending -= head - at;
                    break;
                }
                let confirmed = self.publish(&events).await;
                if confirmed > 0 {
                    let to = events[confirmed - 1].seq;
                    self.store.advance_event_export(ws, to, now()).await?;
                    metrics.events_published(confirmed as u64);
                    pending -= (to - at).min(pending);
                    at = to;
                }
                metrics.events_pending(pending.max(0));
                if confirmed < events.len() {
                    // the channel failed or the broker refused: the next pass tries again
                    self.channel = None;
                    return Ok(());
                }
                // a long catch-up keeps the lease
                if !self.lease().await? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// A confirm channel with the exchange declared, opened if needed.
    async fn channel(&mut self) -> Option<Channel> {
        if let Some(ch) = &self.channel
            && ch.status().connected()
        {
            return Some(ch.clone());
        }
        let conn = self.broker.connection_now()?;
        let names = self.broker.names();
        let setup = async {
            let ch = conn.create_channel().await?;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            declare_events(&ch, names).await?;
            Ok::<_, lapin::Error>(ch)
        };
        match tokio::time::timeout(RPC_TIMEOUT, setup).await {
            Ok(Ok(ch)) => {
                self.channel = Some(ch.clone());
                Some(ch)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot open the event channel");
                None
            }
            Err(_) => None,
        }
    }

    /// Publishes `events` in order; how many from the first the broker confirmed.
    async fn publish(&mut self, events: &[Event]) -> usize {
        let Some(channel) = self.channel().await else {
            return 0;
        };
        let exchange = self.broker.names().events.clone();
        let deadline = tokio::time::Instant::now() + RPC_TIMEOUT;
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            let body = event.envelope().to_string();
            let sent = channel.basic_publish(
                exchange.as_str().into(),
                routing_key(event).into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                properties(event),
            );
            match tokio::time::timeout_at(deadline, sent).await {
                Ok(Ok(confirm)) => pending.push(confirm),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "publishing an event failed");
                    break;
                }
                Err(_) => break,
            }
        }
        let mut confirmed = 0;
        for confirm in pending {
            match tokio::time::timeout_at(deadline, confirm).await {
                Ok(Ok(Confirmation::Ack(_))) => confirmed += 1,
                _ => break,
            }
        }
        confirmed
    }
}

/// The message properties of `event`.
fn properties(event: &Event) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert("workspace".into(), text(&event.workspace_id.to_string()));
    headers.insert("sequence".into(), AMQPValue::LongLongInt(event.seq));
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(ShortString::from(event.public_id()))
        .with_type(ShortString::from(event.kind.clone()))
        .with_timestamp(u64::try_from(event.at.timestamp()).unwrap_or(0))
        .with_app_id("leadgate".into())
        .with_headers(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::WorkspaceId;

    fn event(kind: &str) -> Event {
        Event {
            seq: 7,
            workspace_id: WorkspaceId::from_uuid(uuid::Uuid::nil()),
            kind: kind.into(),
            subject_id: None,
            payload: serde_json::json!({"x": 1}),
            at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn routing_keys_lead_with_the_type_and_end_with_the_workspace() {
        assert_eq!(
            routing_key(&event("lead.created")),
            "lead.created.00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(
            routing_key(&event("crm.sync.finished")),
            "crm.sync.finished.00000000-0000-0000-0000-000000000000"
        );
    }

    #[test]
    fn messages_carry_the_event_id_type_and_time() {
        let e = event("lead.updated");
        let p = properties(&e);
        assert_eq!(
            p.message_id().as_ref().map(|s| s.as_str()),
            Some(e.public_id().as_str())
        );
        assert_eq!(p.kind().as_ref().map(|s| s.as_str()), Some("lead.updated"));
        assert_eq!(*p.timestamp(), Some(1_700_000_000));
        assert_eq!(*p.delivery_mode(), Some(2));
        let headers = p.headers().as_ref().unwrap();
        assert_eq!(headers.inner().get("sequence"), Some(&AMQPValue::LongLongInt(7)));
    }
}
