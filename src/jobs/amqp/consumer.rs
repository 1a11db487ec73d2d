//! Consuming job messages: a channel with the process's prefetch on `<prefix>.jobs`, manual
//! acknowledgements, each delivery decoded (or kept as poison) and handed to the worker with
//! the `Ack` that settles it. What a delivery means for its job is the worker's business
//! (`jobs::worker::broker`); this file only speaks AMQP.
//!
//! Acknowledgements are cumulative where they can be: each channel keeps a ledger of its
//! settlements (delivery tags are consecutive per channel), a done delivery is held there, and
//! every run of done deliveries at the front goes out as one `basic.ack` with `multiple` (one
//! frame and one hand-off to the client's I/O thread for a whole batch instead of one per
//! job). Held deliveries behind a long-running job are acked one by one once more than `HOLD`
//! (or a quarter of the prefetch) wait, so they never fill the prefetch window. Every
//! settlement of a channel happens under its ledger's lock, in order, so a cumulative ack never
//! covers a tag that another frame is about to settle.

use super::{Broker, JobMessage, RPC_TIMEOUT};
use crate::jobs::metrics::JobMetrics;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Consumer};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::time::timeout;

/// One delivered message.
pub struct Delivered {
    /// The message, or why its body is none (poison).
    pub message: Result<JobMessage, String>,
    /// Whether the broker delivered it before (to a consumer that did not ack it).
    pub redelivered: bool,
    pub ack: Ack,
}

/// At most this many done deliveries (or a quarter of the prefetch) wait in a ledger for the
/// ones before them.
const HOLD: usize = 64;

/// What a channel knows of its deliveries' settlement. Delivery tags on a channel are
/// consecutive from 1, so everything below `next` is settled with the broker; above it, `done`
/// holds deliveries waiting for a cumulative ack and `gone` the tags settled on their own
/// (rejected, requeued or acked alone).
struct Settling<A = Acker> {
    next: u64,
    done: BTreeMap<u64, A>,
    gone: BTreeSet<u64>,
    hold: usize,
}

type Ledger = Arc<tokio::sync::Mutex<Settling>>;

impl<A> Settling<A> {
    fn new(hold: usize) -> Self {
        Self {
            next: 1,
            done: BTreeMap::new(),
            gone: BTreeSet::new(),
            hold,
        }
    }

    /// Moves `next` past every settled tag at the front; the done delivery with the highest of
    /// them (its cumulative ack covers the rest) and how many done ones it covers.
    fn take_front(&mut self) -> Option<(A, u64)> {
        let mut front = None;
        let mut count = 0u64;
        loop {
            if let Some(acker) = self.done.remove(&self.next) {
                front = Some(acker);
                count += 1;
            } else if !self.gone.remove(&self.next) {
                break;
            }
            self.next += 1;
        }
        front.map(|a| (a, count))
    }

    /// The held deliveries, to be acked one by one, once more than `hold` wait.
    fn take_held(&mut self) -> Vec<A> {
        if self.done.len() <= self.hold {
            return Vec::new();
        }
        let held = std::mem::take(&mut self.done);
        self.gone.extend(held.keys().copied());
        held.into_values().collect()
    }
}

impl Settling {
    /// Acks the done deliveries at the front in one frame, and the held ones one by one when
    /// too many wait. Runs under the ledger's lock.
    async fn flush(&mut self, metrics: &JobMetrics) {
        if let Some((acker, count)) = self.take_front() {
            let ack = acker.ack(BasicAckOptions { multiple: true });
            if let Ok(Ok(true)) = timeout(RPC_TIMEOUT, ack).await {
                metrics.acked_many(count);
            }
        }
        let held = self.take_held();
        let acks = held
            .iter()
            .map(|a| timeout(RPC_TIMEOUT, a.ack(BasicAckOptions::default())));
        for acked in futures_util::future::join_all(acks).await {
            if let Ok(Ok(true)) = acked {
                metrics.acked();
            }
        }
    }
}

/// Settles one delivery; each way counts in the metrics. Failures are ignored, and an answer
/// that does not come within `RPC_TIMEOUT` (a connection that died under it) is given up: on
/// a channel that is gone the broker redelivers, and a redelivery is harmless.
pub struct Ack {
    acker: Acker,
    tag: u64,
    ledger: Ledger,
    metrics: JobMetrics,
}

impl Ack {
    /// Done with: the message leaves the queue (with the next cumulative ack of its channel).
    pub async fn ack(self) {
        Self::ack_all(vec![self]).await;
    }

    /// Done with, many at once: one cumulative ack per channel where the tags allow it.
    pub async fn ack_all(acks: Vec<Ack>) {
        /// The acks of one channel.
        struct Channel {
            ledger: Ledger,
            metrics: JobMetrics,
            done: Vec<(u64, Acker)>,
        }
        let mut channels: Vec<Channel> = Vec::new();
        for a in acks {
            match channels.iter_mut().find(|c| Arc::ptr_eq(&c.ledger, &a.ledger)) {
                Some(c) => c.done.push((a.tag, a.acker)),
                None => channels.push(Channel {
                    ledger: a.ledger,
                    metrics: a.metrics,
                    done: vec![(a.tag, a.acker)],
                }),
            }
        }
        for Channel {
            ledger,
            metrics,
            done,
        } in channels
        {
            let mut settling = ledger.lock().await;
            for (tag, acker) in done {
                if acker.usable() {
                    settling.done.insert(tag, acker);
                } else {
                    settling.gone.insert(tag);
                }
            }
            settling.flush(&metrics).await;
        }
    }

    /// Rejected without requeue: the dead-letter exchange takes it to `<prefix>.jobs.dead`.
    /// `reason` is the metric label (`dead`, `poison`, `unknown`).
    pub async fn dead_letter(self, reason: &'static str) {
        if self
            .alone(|a| a.reject(BasicRejectOptions { requeue: false }))
            .await
        {
            self.metrics.dead_lettered(reason);
        }
    }

    /// Back to the queue for another consumer (at shutdown).
    pub async fn requeue(self) {
        self.alone(|a| {
            a.nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
        })
        .await;
    }

    /// Settles this delivery on its own frame (`send`) under the ledger's lock, then lets the
    /// ledger move past it; true when the broker took the frame.
    async fn alone<'a, F, Fut>(&'a self, send: F) -> bool
    where
        F: FnOnce(&'a Acker) -> Fut,
        Fut: std::future::Future<Output = lapin::Result<bool>>,
    {
        let mut settling = self.ledger.lock().await;
        let sent =
            self.acker.usable() && matches!(timeout(RPC_TIMEOUT, send(&self.acker)).await, Ok(Ok(true)));
        settling.gone.insert(self.tag);
        settling.flush(&self.metrics).await;
        sent
    }
}

/// A consumer of the work queue.
pub struct Deliveries {
    channel: Channel,
    consumer: Consumer,
    ledger: Ledger,
    metrics: JobMetrics,
}

impl Deliveries {
    /// Starts consuming once the broker is up (waits for it); an error when the channel could
    /// not be set up on the connection of the moment.
    pub async fn open(broker: &Broker, tag: &str) -> Result<Self, String> {
        let conn = broker.connection().await;
        let setup = async {
            let channel = conn.create_channel().await?;
            channel
                .basic_qos(broker.prefetch(), BasicQosOptions::default())
                .await?;
            let consumer = channel
                .basic_consume(
                    broker.names().work.as_str().into(),
                    tag.into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, lapin::Error>((channel, consumer))
        };
        let (channel, consumer) = match timeout(RPC_TIMEOUT, setup).await {
            Ok(Ok(set_up)) => set_up,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("the broker did not answer in time".into()),
        };
        let hold = HOLD.min(usize::from(broker.prefetch()) / 4);
        Ok(Self {
            channel,
            consumer,
            ledger: Arc::new(tokio::sync::Mutex::new(Settling::new(hold))),
            metrics: broker.metrics().clone(),
        })
    }

    /// The next delivery; `None` once the channel or connection is gone.
    pub async fn next(&mut self) -> Option<Delivered> {
        match self.consumer.next().await {
            Some(Ok(delivery)) => Some(self.delivered(delivery)),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "the job consumer ended");
                None
            }
            None => None,
        }
    }

    /// A delivery already received, without waiting: `None` when there is none now (or the
    /// channel is gone; `next` then says so).
    pub fn ready(&mut self) -> Option<Delivered> {
        match self.consumer.next().now_or_never() {
            Some(Some(Ok(delivery))) => Some(self.delivered(delivery)),
            _ => None,
        }
    }

    fn delivered(&self, delivery: lapin::message::Delivery) -> Delivered {
        self.metrics.consumed();
        if delivery.redelivered {
            self.metrics.redelivered();
        }
        Delivered {
            message: JobMessage::decode(&delivery.data),
            redelivered: delivery.redelivered,
            ack: Ack {
                acker: delivery.acker,
                tag: delivery.delivery_tag,
                ledger: self.ledger.clone(),
                metrics: self.metrics.clone(),
            },
        }
    }

    /// Closes the channel once the held acks are out: deliveries not acked go back to the
    /// queue.
    pub async fn close(self) {
        {
            let mut settling = self.ledger.lock().await;
            settling.hold = 0;
            settling.flush(&self.metrics).await;
        }
        let _ = timeout(RPC_TIMEOUT, self.channel.close(200, "worker stopping".into())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::Settling;

    #[test]
    fn a_run_of_done_deliveries_at_the_front_is_one_cumulative_ack() {
        let mut s = Settling::new(64);
        for tag in [2, 3, 1] {
            s.done.insert(tag, tag);
        }
        assert_eq!(s.take_front(), Some((3, 3)));
        assert_eq!(s.next, 4);
        assert_eq!(s.take_front(), None, "nothing left to ack");
    }

    #[test]
    fn a_delivery_still_running_holds_back_the_ones_after_it() {
        let mut s = Settling::new(64);
        s.done.insert(1, 1);
        s.done.insert(3, 3);
        s.done.insert(4, 4);
        assert_eq!(s.take_front(), Some((1, 1)), "2 still runs");
        assert!(s.take_held().is_empty(), "two held are under the limit");
        s.done.insert(2, 2);
        assert_eq!(s.take_front(), Some((4, 3)));
    }

    #[test]
    fn tags_settled_on_their_own_are_passed_over_but_never_counted() {
        let mut s = Settling::new(64);
        s.gone.insert(1);
        s.done.insert(2, 2);
        s.gone.insert(3);
        s.done.insert(4, 4);
        s.gone.insert(5);
        assert_eq!(s.take_front(), Some((4, 2)), "the ack at 4 covers 2 and 4");
        assert_eq!(s.next, 6, "5 was rejected alone; 6 is the first unsettled tag");
        assert!(s.gone.is_empty());
    }

    #[test]
    fn a_front_of_only_rejections_sends_no_ack() {
        let mut s: Settling<u64> = Settling::new(64);
        s.gone.extend([1, 2]);
        assert_eq!(s.take_front(), None);
        assert_eq!(s.next, 3);
    }

    #[test]
    fn held_deliveries_over_the_limit_are_acked_alone_and_then_passed_over() {
        let mut s = Settling::new(2);
        for tag in 2..=4 {
            s.done.insert(tag, tag);
        }
        assert_eq!(s.take_front(), None, "1 still runs");
        assert_eq!(s.take_held(), vec![2, 3, 4]);
        assert!(s.done.is_empty());
        s.done.insert(1, 1);
        assert_eq!(s.take_front(), Some((1, 1)), "the ack at 1 covers 1 alone");
        assert_eq!(s.next, 5, "2..4 were acked on their own");
    }
}
