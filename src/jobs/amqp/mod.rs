//! Job delivery through RabbitMQ (AMQP 0-9-1, the `lapin` client): the only code that speaks
//! AMQP (`contracts::only_jobs_amqp_speaks_amqp`). The database stays the source of truth for
//! a job's state, history and replay; a message only says "job N of kind K is due at T".
//!
//! - **Enqueue** writes the row as without a broker, then hands `JobMessage { id, kind, due }`
//!   to this process's publisher, which publishes persistent messages on a confirm channel in
//!   batches and records `published_at` for those the broker confirmed. Rows without a
//!   confirmed message (broker down, connection cut, process killed, a retry, a reclaimed
//!   lease, a replay by another process) are found by the **relay** beside the workers
//!   (`take_unpublished_jobs`) and published once the broker answers. A message that went
//!   missing after its confirm is published again when the work queue has drained and its row
//!   has still not been claimed a lease later (`take_stale_jobs`).
//! - **Workers** consume `<prefix>.jobs` with manual acks and a prefetch (`queue_prefetch`),
//!   claim the rows their messages name in one statement (`claim_jobs_by_id`: only rows still
//!   queued and due), run them with heartbeats as without a broker, record the outcome, then
//!   ack. A message for a row that cannot be claimed is a duplicate (acked), early (sent on
//!   through a delay queue), for a running job (sent on until its lease ends, then the lease is
//!   reclaimed: this is how a worker killed mid-job has its job redelivered and done once), or
//!   names no row or is no job message at all (poison: rejected without requeue, so the
//!   dead-letter exchange takes it to `<prefix>.jobs.dead`; it never loops).
//! - **Retries** are written to the row (queued, `run_at` after the backoff) and published to
//!   the delay queue that fits (`message::Route`), which dead-letters them back to the work
//!   exchange when its TTL ends. A job out of attempts is dead in the database and its message
//!   is rejected into `<prefix>.jobs.dead`.
//! - **Broker down**: enqueueing goes on (rows wait, unpublished), workers claim from the
//!   database queue until the connection is back (`Broker::is_down`), the supervisor reconnects
//!   with backoff, and the relay publishes what waited. Messages a worker held unacked when its
//!   connection went are redelivered by the broker and acked as duplicates. Nothing is lost and
//!   a completion is recorded once (only the lease holder can record it).
//!
//! Names: `<prefix>.jobs` (direct exchange and queue, key `work`), `<prefix>.jobs.delay.<ms>`
//! (queues with a TTL, dead-lettering to `<prefix>.jobs`), `<prefix>.jobs.dlx` (fanout) and
//! `<prefix>.jobs.dead` (at most `DEAD_MAX` messages, the oldest dropped first).

pub mod consumer;
pub mod events;
pub mod message;
mod publisher;
pub mod relay;

use super::metrics::JobMetrics;
use crate::domain::{JobId, Timestamp, now};
use crate::store::Store;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
pub use message::{HORIZON, JobMessage, Route};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The routing key of the work queue's binding.
const WORK_KEY: &str = "work";
/// Most messages `<prefix>.jobs.dead` keeps (for inspection: the dead rows are the record).
pub const DEAD_MAX: i64 = 100_000;
/// The longest wait for the broker's answer to one call (a confirm, an ack, opening or closing
/// a channel): a connection that dies under a call may leave it unanswered.
pub(crate) const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest pause between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How to reach the broker and what to call things there.
#[derive(Clone)]
pub struct BrokerOptions {
    /// `amqp://…` or `amqps://…`, credentials included (never printed).
    pub url: String,
    /// Prefix of every exchange and queue name.
    pub prefix: String,
    /// Messages one consumer holds unacknowledged.
    pub prefetch: u16,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// Shown in the broker's connection list, e.g. `leadgate worker`.
    pub connection_name: String,
}

impl std::fmt::Debug for BrokerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerOptions")
            .field("url", &describe(&self.url))
            .field("prefix", &self.prefix)
            .field("prefetch", &self.prefetch)
            .finish_non_exhaustive()
    }
}

/// Checks a `queue_url` value: an `amqp://` or `amqps://` URL the client can use.
pub fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
        return Err("must start with amqp:// or amqps:// (TLS)".into());
    }
    parse_url(url).map(drop)
}

/// Whether `prefix` can start every exchange and queue name.
pub fn valid_prefix(prefix: &str) -> bool {
    (1..=100).contains(&prefix.len())
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// The URL as the client takes it. The client's parser reads only a domain name as the host
/// and falls back to `localhost` for an IP address, so an address is put back here.
fn parse_url(url: &str) -> Result<AMQPUri, String> {
    let mut uri: AMQPUri = url.parse().map_err(|e: String| format!("not an AMQP URL: {e}"))?;
    let parsed = url::Url::parse(url).map_err(|e| format!("not an AMQP URL: {e}"))?;
    match parsed.host() {
        Some(url::Host::Ipv4(ip)) => uri.authority.host = ip.to_string(),
        Some(url::Host::Ipv6(ip)) => uri.authority.host = ip.to_string(),
        _ => {}
    }
    Ok(uri)
}

/// The URL without credentials or query: `amqp://host:5672/vhost`.
pub fn describe(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}:{}{}",
            u.scheme(),
            u.host_str().unwrap_or("localhost"),
            u.port()
                .unwrap_or(if u.scheme() == "amqps" { 5671 } else { 5672 }),
            if u.path().is_empty() { "/" } else { u.path() }
        ),
        Err(_) => "(unparsable URL)".into(),
    }
}

/// The exchanges and queues of one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// The direct exchange and the queue workers consume.
    pub work: String,
    /// The fanout exchange rejected messages are dead-lettered to.
    pub dead_exchange: String,
    /// The queue that keeps them.
    pub dead: String,
    /// The topic exchange domain events are published to (`queue_events`).
    pub events: String,
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Self {
            work: format!("{prefix}.jobs"),
            dead_exchange: format!("{prefix}.jobs.dlx"),
            dead: format!("{prefix}.jobs.dead"),
            events: format!("{prefix}.events"),
            prefix: prefix.to_owned(),
        }
    }

    /// The delay queue with a TTL of `ms` milliseconds.
    pub fn delay(&self, ms: u64) -> String {
        format!("{}.jobs.delay.{ms}", self.prefix)
    }

    /// Every queue, delay queues included (what a test deletes afterwards).
    pub fn queues(&self) -> Vec<String> {
        let mut all = vec![self.work.clone(), self.dead.clone()];
        all.extend(message::DELAY_TIERS_MS.iter().map(|ms| self.delay(*ms)));
        all
    }

    /// Every exchange.
    pub fn exchanges(&self) -> Vec<String> {
        vec![self.work.clone(), self.dead_exchange.clone(), self.events.clone()]
    }
}

/// Where the connection stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The first attempt is under way.
    Connecting,
    Up,
    /// No connection; the last attempt's or the lost connection's error.
    Down(String),
}

/// The connection as the supervisor last saw it.
#[derive(Clone)]
pub(crate) enum Link {
    Connecting,
    Up(Arc<Connection>),
    Down(String),
}

/// What the publisher does about a row once the broker answered for its message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Bookkeeping {
    /// The row waits without a message: record `published_at` when confirmed.
    MarkOnConfirm,
    /// The row was marked before publishing: clear the mark when not confirmed.
    UnmarkOnFailure,
    /// Nothing (a message sent on for a running job).
    Nothing,
}

/// A message for the publisher.
pub(crate) struct Announcement {
    pub message: JobMessage,
    /// When the row was last written (a row written later needs a message of its own).
    pub sent: Timestamp,
    pub bookkeeping: Bookkeeping,
}

/// This process's link to RabbitMQ: a supervisor that keeps one connection up (reconnecting
/// with backoff), the publisher of job messages, and what consumers and the relay open their
/// channels on. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("at", &self.inner.described)
            .finish_non_exhaustive()
    }
}

struct Inner {
    options: BrokerOptions,
    uri: AMQPUri,
    names: Names,
    described: String,
    link: watch::Sender<Link>,
    announce: mpsc::UnboundedSender<Announcement>,
    metrics: JobMetrics,
    stop: watch::Sender<bool>,
}

impl Broker {
    /// Starts connecting (in the background: a broker that is down delays nothing) and the
    /// publisher. Needs a Tokio runtime.
    pub fn start(options: BrokerOptions, store: Store, metrics: JobMetrics) -> Result<Self, String> {
        let uri = parse_url(&options.url)?;
        let (link, _) = watch::channel(Link::Connecting);
        let (announce, announcements) = mpsc::unbounded_channel();
        let (stop, _) = watch::channel(false);
        let broker = Broker {
            inner: Arc::new(Inner {
                names: Names::new(&options.prefix),
                described: describe(&options.url),
                uri,
                options,
                link,
                announce,
                metrics,
                stop,
            }),
        };
        tokio::spawn(broker.clone().supervise());
        tokio::spawn(publisher::announce_loop(broker.clone(), store, announcements));
        Ok(broker)
    }

    /// Where the broker is, without credentials.
    pub fn describe(&self) -> &str {
        &self.inner.described
    }

    pub fn names(&self) -> &Names {
        &self.inner.names
    }

    pub fn prefetch(&self) -> u16 {
        self.inner.options.prefetch
    }

    pub(crate) fn metrics(&self) -> &JobMetrics {
        &self.inner.metrics
    }

    pub fn status(&self) -> Status {
        match &*self.inner.link.borrow() {
            Link::Connecting => Status::Connecting,
            Link::Up(_) => Status::Up,
            Link::Down(e) => Status::Down(e.clone()),
        }
    }

    /// Whether an attempt failed and no connection is up: workers then claim from the
    /// database queue.
    pub fn is_down(&self) -> bool {
        matches!(*self.inner.link.borrow(), Link::Down(_))
    }

    /// The status once the first attempt has ended, waiting at most `within`.
    pub async fn settled(&self, within: Duration) -> Status {
        let mut rx = self.inner.link.subscribe();
        let _ = tokio::time::timeout(within, rx.wait_for(|l| !matches!(l, Link::Connecting))).await;
        self.status()
    }

    /// Sees every change of the connection (then ask `is_down`).
    pub(crate) fn watch(&self) -> watch::Receiver<Link> {
        self.inner.link.subscribe()
    }

    /// The connection, once up.
    async fn connection(&self) -> Arc<Connection> {
        let mut rx = self.inner.link.subscribe();
        loop {
            if let Link::Up(conn) = &*rx.borrow_and_update()
                && conn.status().connected()
            {
                return conn.clone();
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The connection if it is up now.
    fn connection_now(&self) -> Option<Arc<Connection>> {
        match &*self.inner.link.borrow() {
            Link::Up(conn) if conn.status().connected() => Some(conn.clone()),
            _ => None,
        }
    }

    /// Hands a message to the publisher (it never waits: a message not confirmed leaves its
    /// row to the relay).
    pub(crate) fn announce(&self, announcement: Announcement) {
        let _ = self.inner.announce.send(announcement);
    }

    /// Announces a row just written (enqueued, replayed, retried) and due at `due`, unless it
    /// is due beyond the delay queues' horizon (the relay publishes it when it gets close).
    pub(crate) fn announce_row(&self, id: JobId, kind: &str, due: Timestamp, written: Timestamp) {
        if due > crate::jobs::after(now(), HORIZON) {
            return;
        }
        self.announce(Announcement {
            message: JobMessage::new(id, kind, due),
            sent: written,
            bookkeeping: Bookkeeping::MarkOnConfirm,
        });
    }

    /// Stops reconnecting and closes the connection (unacked messages go back to the queue).
    pub async fn close(&self) {
        let _ = self.inner.stop.send(true);
        if let Some(conn) = self.connection_now() {
            let _ = tokio::time::timeout(RPC_TIMEOUT, conn.close(200, "shutting down".into())).await;
        }
        self.inner.link.send_replace(Link::Down("closed".into()));
    }

    async fn supervise(self) {
        let mut stop = self.inner.stop.subscribe();
        let mut backoff = Duration::from_millis(100);
        let mut last_error = String::new();
        loop {
            match self.connect().await {
                Ok(conn) => {
                    backoff = Duration::from_millis(100);
                    last_error.clear();
                    tracing::info!(broker = %self.inner.described, "connected to RabbitMQ");
                    self.inner.metrics.broker_connected(true);
                    self.inner.link.send_replace(Link::Up(conn.clone()));
                    let lost = tokio::select! {
                        lost = lost(&conn) => lost,
                        _ = stop.wait_for(|s| *s) => return,
                    };
                    self.inner.metrics.broker_connected(false);
                    tracing::warn!(broker = %self.inner.described, error = %lost, "lost the RabbitMQ connection; reconnecting (workers claim from the database meanwhile)");
                    self.inner.link.send_replace(Link::Down(lost));
                }
                Err(e) => {
                    if e != last_error {
                        tracing::warn!(broker = %self.inner.described, error = %e, "cannot connect to RabbitMQ; retrying (workers claim from the database meanwhile)");
                        last_error = e.clone();
                    }
                    self.inner.link.send_replace(Link::Down(e));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection attempt, with the topology declared on it.
    async fn connect(&self) -> Result<Arc<Connection>, String> {
        let properties = ConnectionProperties::default()
            .with_connection_name(self.inner.options.connection_name.clone().into());
        let connect = Connection::connect_uri(self.inner.uri.clone(), properties);
        let conn = match tokio::time::timeout(self.inner.options.connect_timeout, connect).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => {
                return Err(format!(
                    "no answer within {} ms",
                    self.inner.options.connect_timeout.as_millis()
                ));
            }
        };
        match tokio::time::timeout(RPC_TIMEOUT, declare(&conn, &self.inner.names)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = tokio::time::timeout(RPC_TIMEOUT, conn.close(200, "topology failed".into())).await;
                return Err(format!("cannot declare the queues: {e}"));
            }
            Err(_) => return Err("declaring the queues took too long".into()),
        }
        Ok(Arc::new(conn))
    }
}

/// Resolves with a reason once the connection is no longer usable.
async fn lost(conn: &Connection) -> String {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = conn.status();
        if !status.connected() {
            let how = if status.errored() {
                "failed"
            } else if status.closing() || status.closed() {
                "closed"
            } else {
                "dropped"
            };
            return format!("the connection {how}");
        }
    }
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// Declares the topic exchange domain events are published to (`events`).
pub(crate) async fn declare_events(ch: &lapin::Channel, names: &Names) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    ch.exchange_declare(
        names.events.as_str().into(),
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await
}

/// Declares the exchanges and queues (idempotent: the same arguments every time).
async fn declare(conn: &Connection, names: &Names) -> lapin::Result<()> {
    let ch = conn.create_channel().await?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    ch.exchange_declare(
        names.work.as_str().into(),
        ExchangeKind::Direct,
        durable,
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        names.dead_exchange.as_str().into(),
        ExchangeKind::Fanout,
        durable,
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(
        names.dead.as_str().into(),
        QueueDeclareOptions::durable(),
        table(&[("x-max-length", AMQPValue::LongLongInt(DEAD_MAX))]),
    )
    .await?;
    ch.queue_bind(
        names.dead.as_str().into(),
        names.dead_exchange.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(
        names.work.as_str().into(),
        QueueDeclareOptions::durable(),
        table(&[("x-dead-letter-exchange", text(&names.dead_exchange))]),
    )
    .await?;
    ch.queue_bind(
        names.work.as_str().into(),
        names.work.as_str().into(),
        WORK_KEY.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    for ms in message::DELAY_TIERS_MS {
        ch.queue_declare(
            names.delay(ms).as_str().into(),
            QueueDeclareOptions::durable(),
            table(&[
                ("x-message-ttl", AMQPValue::LongLongInt(ms as i64)),
                ("x-dead-letter-exchange", text(&names.work)),
                ("x-dead-letter-routing-key", text(WORK_KEY)),
            ]),
        )
        .await?;
    }
    let _ = ch.close(200, "declared".into()).await;
    Ok(())
}

/// What tests and the benchmark do at the broker directly (feature `test-kinds`).
#[cfg(feature = "test-kinds")]
pub mod testing {
    use super::{Names, WORK_KEY, parse_url};
    use lapin::options::{
        BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    };
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

    async fn channel(url: &str) -> Result<(Connection, Channel), String> {
        let conn = Connection::connect_uri(parse_url(url)?, ConnectionProperties::default())
            .await
            .map_err(|e| e.to_string())?;
        let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
        Ok((conn, ch))
    }

    /// Publishes `body` to the work exchange of `prefix`, as anyone with access could.
    pub async fn publish_raw(url: &str, prefix: &str, body: &[u8]) -> Result<(), String> {
        let (conn, ch) = channel(url).await?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        let confirm = ch
            .basic_publish(
                Names::new(prefix).work.as_str().into(),
                WORK_KEY.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let _ = conn.close(200, "published".into()).await;
        if confirm.is_ack() {
            Ok(())
        } else {
            Err("not confirmed".into())
        }
    }

    /// How many messages wait in `queue` (ready, not delivered).
    pub async fn queue_depth(url: &str, queue: &str) -> Result<u32, String> {
        let (conn, ch) = channel(url).await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let q = ch
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
            .map_err(|e| e.to_string())?;
        let _ = conn.close(200, "counted".into()).await;
        Ok(q.message_count())
    }

    /// A message as a consumer of the events exchange sees it.
    #[derive(Clone, Debug)]
    pub struct Received {
        pub routing_key: String,
        pub message_id: Option<String>,
        pub kind: Option<String>,
        pub body: serde_json::Value,
    }

    /// Declares the events exchange of `prefix` as leadgate does and a queue of its own bound
    /// to it with `binding`, as a downstream consumer would; returns the queue's name.
    pub async fn bind_events(url: &str, prefix: &str, binding: &str) -> Result<String, String> {
        use lapin::options::QueueBindOptions;
        let (conn, ch) = channel(url).await?;
        let names = Names::new(prefix);
        super::declare_events(&ch, &names)
            .await
            .map_err(|e| e.to_string())?;
        let queue = format!("{}.consumer.{}", names.events, uuid::Uuid::now_v7().simple());
        ch.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
        ch.queue_bind(
            queue.as_str().into(),
            names.events.as_str().into(),
            binding.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let _ = conn.close(200, "bound".into()).await;
        Ok(queue)
    }

    /// The next `n` messages of `queue` (acknowledged), or an error naming how many arrived
    /// when `within` passes first.
    pub async fn take(
        url: &str,
        queue: &str,
        n: usize,
        within: std::time::Duration,
    ) -> Result<Vec<Received>, String> {
        use futures_util::StreamExt;
        use lapin::options::{BasicAckOptions, BasicConsumeOptions};
        let (conn, ch) = channel(url).await?;
        let mut consumer = ch
            .basic_consume(
                queue.into(),
                "test-consumer".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let next = match tokio::time::timeout_at(deadline, consumer.next()).await {
                Ok(Some(Ok(delivery))) => delivery,
                Ok(Some(Err(e))) => return Err(e.to_string()),
                Ok(None) => return Err("the consumer was cancelled".into()),
                Err(_) => {
                    let _ = conn.close(200, "gave up".into()).await;
                    return Err(format!(
                        "{} of {n} messages within {within:?}: {out:?}",
                        out.len()
                    ));
                }
            };
            let p = &next.properties;
            out.push(Received {
                routing_key: next.routing_key.to_string(),
                message_id: p.message_id().as_ref().map(|s| s.to_string()),
                kind: p.kind().as_ref().map(|s| s.to_string()),
                body: serde_json::from_slice(&next.data).map_err(|e| e.to_string())?,
            });
            next.ack(BasicAckOptions::default())
                .await
                .map_err(|e| e.to_string())?;
        }
        let _ = conn.close(200, "took".into()).await;
        Ok(out)
    }

    /// Deletes one queue (a consumer's, from `bind_events`).
    pub async fn delete_queue(url: &str, queue: &str) -> Result<(), String> {
        let (conn, ch) = channel(url).await?;
        let _ = ch.queue_delete(queue.into(), QueueDeleteOptions::default()).await;
        let _ = conn.close(200, "deleted".into()).await;
        Ok(())
    }

    /// Deletes every exchange and queue of `prefix`.
    pub async fn delete_topology(url: &str, prefix: &str) -> Result<(), String> {
        let (conn, ch) = channel(url).await?;
        let names = Names::new(prefix);
        for q in names.queues() {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        for x in names.exchanges() {
            let _ = ch
                .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
        let _ = conn.close(200, "cleaned up".into()).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_described_without_credentials() {
        assert!(check_url("amqp://guest:guest@127.0.0.1:5672/%2f").is_ok());
        assert!(check_url("amqps://u:p@rabbit.example.com/prod").is_ok());
        assert!(check_url("redis://127.0.0.1").unwrap_err().contains("amqp://"));
        assert!(check_url("amqp://[::1").is_err());
        assert_eq!(
            describe("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://127.0.0.1:5672/%2f"
        );
        assert_eq!(
            describe("amqps://u:p@mq.example.com/prod"),
            "amqps://mq.example.com:5671/prod"
        );
    }

    #[test]
    fn an_ip_address_stays_the_host() {
        let uri = parse_url("amqp://guest:guest@10.1.2.3:5673/vh").unwrap();
        assert_eq!(
            (uri.authority.host.as_str(), uri.authority.port),
            ("10.1.2.3", 5673)
        );
        assert_eq!(uri.vhost, "vh");
    }

    #[test]
    fn prefixes_are_plain_names() {
        assert!(valid_prefix("leadgate"));
        assert!(valid_prefix("lgt.0190_a-b"));
        assert!(!valid_prefix(""));
        assert!(!valid_prefix("has space"));
        assert!(!valid_prefix(&"x".repeat(101)));
    }

    /// `amqps://` speaks TLS: what reaches the server first is a TLS ClientHello (a handshake
    /// record, 0x16), not the AMQP protocol header.
    #[tokio::test]
    async fn amqps_urls_connect_with_tls() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let options = BrokerOptions {
            url: format!("amqps://guest:guest@localhost:{port}/%2f"),
            prefix: "lgt".into(),
            prefetch: 1,
            connect_timeout: Duration::from_secs(5),
            connection_name: "test".into(),
        };
        let broker = Broker {
            inner: Arc::new(Inner {
                uri: parse_url(&options.url).unwrap(),
                names: Names::new("lgt"),
                described: describe(&options.url),
                options,
                link: watch::channel(Link::Connecting).0,
                announce: mpsc::unbounded_channel().0,
                metrics: JobMetrics::new(),
                stop: watch::channel(false).0,
            }),
        };
        let attempt = tokio::spawn(async move { broker.connect().await });
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut first = [0u8; 3];
        socket.read_exact(&mut first).await.unwrap();
        assert_eq!(first[0], 0x16, "a TLS handshake record: {first:?}");
        assert_eq!(first[1], 0x03, "TLS major version 3: {first:?}");
        drop(socket);
        assert!(attempt.await.unwrap().is_err());
    }

    #[test]
    fn names_follow_the_prefix() {
        let n = Names::new("lg");
        assert_eq!(n.work, "lg.jobs");
        assert_eq!(n.dead, "lg.jobs.dead");
        assert_eq!(n.delay(400), "lg.jobs.delay.400");
        assert_eq!(n.events, "lg.events");
        assert_eq!(n.queues().len(), 2 + message::DELAY_TIERS_MS.len());
    }
}
