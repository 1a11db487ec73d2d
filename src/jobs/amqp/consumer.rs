//! Consuming job messages: a channel with the process's prefetch on `<prefix>.jobs`, manual
//! acknowledgements, each delivery decoded (or kept as poison) and handed to the worker with
//! the `Ack` that settles it. What a delivery means for its job is the worker's business
//! (`jobs::worker::broker`); this file only speaks AMQP.

use super::{Broker, JobMessage, RPC_TIMEOUT};
use crate::jobs::metrics::JobMetrics;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Consumer};
use tokio::time::timeout;

/// One delivered message.
pub struct Delivered {
    /// The message, or why its body is none (poison).
    pub message: Result<JobMessage, String>,
    /// Whether the broker delivered it before (to a consumer that did not ack it).
    pub redelivered: bool,
    pub ack: Ack,
}

/// Settles one delivery; each way counts in the metrics. Failures are ignored, and an answer
/// that does not come within `RPC_TIMEOUT` (a connection that died under it) is given up: on
/// a channel that is gone the broker redelivers, and a redelivery is harmless.
pub struct Ack {
    acker: Acker,
    metrics: JobMetrics,
}

impl Ack {
    /// Done with: the message leaves the queue.
    pub async fn ack(self) {
        if !self.acker.usable() {
            return;
        }
        if let Ok(Ok(true)) = timeout(RPC_TIMEOUT, self.acker.ack(BasicAckOptions::default())).await {
            self.metrics.acked();
        }
    }

    /// Rejected without requeue: the dead-letter exchange takes it to `<prefix>.jobs.dead`.
    /// `reason` is the metric label (`dead`, `poison`, `unknown`).
    pub async fn dead_letter(self, reason: &'static str) {
        if !self.acker.usable() {
            return;
        }
        let reject = self.acker.reject(BasicRejectOptions { requeue: false });
        if let Ok(Ok(true)) = timeout(RPC_TIMEOUT, reject).await {
            self.metrics.dead_lettered(reason);
        }
    }

    /// Back to the queue for another consumer (at shutdown).
    pub async fn requeue(self) {
        if !self.acker.usable() {
            return;
        }
        let nack = self.acker.nack(BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        });
        let _ = timeout(RPC_TIMEOUT, nack).await;
    }
}

/// A consumer of the work queue.
pub struct Deliveries {
    channel: Channel,
    consumer: Consumer,
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
        Ok(Self {
            channel,
            consumer,
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
                metrics: self.metrics.clone(),
            },
        }
    }

    /// Closes the channel: deliveries not acked go back to the queue.
    pub async fn close(self) {
        let _ = timeout(RPC_TIMEOUT, self.channel.close(200, "worker stopping".into())).await;
    }
}
