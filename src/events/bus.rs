//! The event bus: one background task per app that broadcasts committed events, in order, to
//! every reader in the process.
//!
//! Events reach the task three ways: writers in this process hand over what they just
//! committed (`publish`, no read needed); on PostgreSQL a `NOTIFY` from any instance names the
//! workspace and its newest number; and a poll of every workspace's newest number finds what
//! other processes on one SQLite file wrote, or a notification lost while a listener
//! reconnected. Whatever the task has not seen yet it reads from the log.

use crate::domain::{Event, WorkspaceId};
use crate::store::{Store, StoreError};
use futures_util::Stream;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Events read from the log per statement when catching up.
const READ_BATCH: u32 = 500;

/// How the bus learns of events it was not handed.
#[derive(Clone, Debug)]
pub struct BusOptions {
    /// How often every workspace's newest event number is checked.
    pub poll_interval: Duration,
    /// Events kept for readers that are momentarily behind; a reader further behind reads the
    /// log instead.
    pub capacity: usize,
}

impl Default for BusOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            capacity: 4096,
        }
    }
}

/// Why a reader stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Events after the reader's cursor were removed by retention before it read them.
    #[error("events after {after} are no longer kept; resume from a newer cursor or without one")]
    Expired { after: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

enum Signal {
    /// Events this process just committed, numbered, in order.
    Committed(Vec<Event>),
    /// `(workspace, newest number)` announced by some instance.
    Newest(WorkspaceId, i64),
}

/// A handle on the bus; cheap to clone. The task ends when the last handle is dropped.
#[derive(Clone, Debug)]
pub struct Bus {
    tx: broadcast::Sender<Arc<Event>>,
    signals: mpsc::UnboundedSender<Signal>,
    store: Store,
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signal::Committed(events) => write!(f, "Committed({})", events.len()),
            Signal::Newest(ws, top) => write!(f, "Newest({ws}, {top})"),
        }
    }
}

impl Bus {
    /// Starts the bus task (and, on PostgreSQL, its listener). Needs a Tokio runtime.
    pub fn start(store: Store, options: BusOptions) -> Self {
        let (tx, _) = broadcast::channel(options.capacity.max(16));
        let (signals, rx) = mpsc::unbounded_channel();
        let bus = Self {
            tx: tx.clone(),
            signals: signals.clone(),
            store: store.clone(),
        };
        tokio::spawn(listen(store.clone(), signals.downgrade()));
        tokio::spawn(Relay::new(store, tx).run(rx, options.poll_interval));
        bus
    }

    /// Hands over events this process just committed.
    pub fn publish(&self, events: Vec<Event>) {
        if !events.is_empty() {
            // the task is gone only while the app shuts down
            let _ = self.signals.send(Signal::Committed(events));
        }
    }

    /// Every event of `ws` numbered above `after`, in order and each once: first what the
    /// log holds, then live ones as they are committed. `known` is a number the reader knows
    /// was written (the head when it subscribed). Ends with `Expired` when retention already
    /// removed events the reader needs.
    pub fn read_from(
        &self,
        ws: WorkspaceId,
        after: i64,
        known: i64,
    ) -> impl Stream<Item = Result<Arc<Event>, ReadError>> + Send + use<> {
        // subscribe before reading the log, so nothing committed in between is missed
        let mut live = self.tx.subscribe();
        let store = self.store.clone();
        async_stream::try_stream! {
            let mut cursor = after;
            let mut known = known;
            loop {
                // catch up from the log; the next number must be there if it was ever written
                loop {
                    let batch = store.events_after(ws, cursor, READ_BATCH).await?;
                    if batch.first().map_or(cursor < known, |e| e.seq != cursor + 1) {
                        Err(ReadError::Expired { after: cursor })?;
                    }
                    let full = batch.len() == READ_BATCH as usize;
                    for event in batch {
                        cursor = event.seq;
                        yield Arc::new(event);
                    }
                    if !full {
                        break;
                    }
                }
                // then live, until a gap sends us back to the log
                loop {
                    match live.recv().await {
                        Ok(event) if event.workspace_id != ws || event.seq <= cursor => {}
                        Ok(event) if event.seq == cursor + 1 => {
                            cursor = event.seq;
                            yield event;
                        }
                        Ok(event) => {
                            known = known.max(event.seq);
                            break;
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        }
    }

    /// Every event as it is relayed, for readers that only need waking (they read the log
    /// themselves and do not mind lagging).
    pub fn watch(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// The number of the newest event of `ws`: where a reader that wants only new events starts.
    pub async fn head(&self, ws: WorkspaceId) -> Result<i64, StoreError> {
        self.store.event_head(ws).await
    }
}

/// The task's state: the newest event number it has broadcast per workspace.
struct Relay {
    store: Store,
    tx: broadcast::Sender<Arc<Event>>,
    seen: HashMap<WorkspaceId, i64>,
}

impl Relay {
    fn new(store: Store, tx: broadcast::Sender<Arc<Event>>) -> Self {
        Self {
            store,
            tx,
            seen: HashMap::new(),
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Signal>, poll_interval: Duration) {
        match self.store.event_heads().await {
            Ok(heads) => self.seen.extend(heads),
            Err(e) if e.is_closed() => return,
            Err(e) => tracing::warn!(error = %e, "event bus: cannot read where the log stands"),
        }
        let mut poll = tokio::time::interval(poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let result = tokio::select! {
                signal = rx.recv() => match signal {
                    Some(Signal::Committed(events)) => self.committed(events).await,
                    Some(Signal::Newest(ws, top)) => self.catch_up(ws, top).await,
                    None => return,
                },
                _ = poll.tick() => self.poll().await,
            };
            match result {
                // the process is shutting down (a CLI command finished, the server stopped)
                Err(e) if e.is_closed() => return,
                Err(e) => {
                    tracing::warn!(error = %e, "event bus: reading the log failed; retrying at the next poll")
                }
                Ok(()) => {}
            }
        }
    }

    async fn committed(&mut self, events: Vec<Event>) -> Result<(), StoreError> {
        for event in events {
            let seen = *self.seen.entry(event.workspace_id).or_insert(event.seq - 1);
            if event.seq > seen + 1 {
                self.catch_up(event.workspace_id, event.seq - 1).await?;
            }
            if event.seq == self.seen[&event.workspace_id] + 1 {
                self.seen.insert(event.workspace_id, event.seq);
                let _ = self.tx.send(Arc::new(event));
            }
        }
        Ok(())
    }

    /// Broadcasts what the log holds for `ws` up to `top` that was not broadcast yet.
    async fn catch_up(&mut self, ws: WorkspaceId, top: i64) -> Result<(), StoreError> {
        let seen = self.seen.get(&ws).copied();
        if self.tx.receiver_count() == 0 {
            // nobody listens: nothing to relay, start here
            self.seen.insert(ws, top.max(seen.unwrap_or(0)));
            return Ok(());
        }
        // A workspace new to us: relay just the newest; a reader further behind sees the gap
        // and reads the rest from the log itself.
        let mut cursor = seen.unwrap_or(top - 1);
        while cursor < top {
            let batch = self.store.events_after(ws, cursor, READ_BATCH).await?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                break;
            };
            for event in batch {
                let _ = self.tx.send(Arc::new(event));
            }
            cursor = last;
            self.seen.insert(ws, cursor);
        }
        Ok(())
    }

    async fn poll(&mut self) -> Result<(), StoreError> {
        for (ws, top) in self.store.event_heads().await? {
            if self.seen.get(&ws).is_none_or(|seen| *seen < top) {
                self.catch_up(ws, top).await?;
            }
        }
        Ok(())
    }
}

/// Forwards PostgreSQL notifications to the bus task; reconnects with a pause when the
/// connection fails (polling covers the gap). Does nothing on SQLite.
async fn listen(store: Store, signals: mpsc::WeakUnboundedSender<Signal>) {
    loop {
        let mut listener = match store.event_listener().await {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "event bus: cannot LISTEN; relying on polling for now");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        loop {
            match listener.recv().await {
                Ok((ws, top)) => {
                    // only a weak handle while waiting, so the bus can end
                    let Some(signals) = signals.upgrade() else { return };
                    if signals.send(Signal::Newest(ws, top)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event bus: LISTEN connection failed");
                    break;
                }
            }
        }
    }
}
