//! The event log (outbox).
//!
//! `append_events` is called inside the transaction of the change an event describes. It takes
//! the workspace's next numbers from `workspaces.event_seq` with one `UPDATE … RETURNING`: the
//! row lock that takes on PostgreSQL (and the single writer on SQLite) makes a workspace's
//! events commit in the order of their numbers, so a reader that sees `n` has seen `1..n`. On
//! PostgreSQL the same transaction sends a `NOTIFY` that wakes other instances; processes on
//! one SQLite file find new events by polling (see `events::Bus`).
//!
//! **Events carry a snapshot.** A lead event holds the lead as it was after the change and the
//! names of the fields that changed, so subscriptions and webhooks deliver it without reading the
//! store and filters match the state the event describes. Bulk loads (seed, import) write no per-
//! lead events. The log is pruned after `event_retention_days` (default 7); a cursor older than
//! that is refused rather than silently skipping ahead.

use super::dialect::{Conn, Row, postgres};
use super::{Store, StoreError, StoreResult};
use crate::domain::{Event, NewEvent, Timestamp, WorkspaceId};

/// Events per INSERT statement.
const EVENTS_PER_STATEMENT: usize = 500;

/// Appends `events` within the caller's transaction and returns them numbered.
pub(super) async fn append_events(conn: &mut Conn, events: &[NewEvent]) -> StoreResult<Vec<Event>> {
    let mut out = Vec::with_capacity(events.len());
    let mut rest = events;
    while let Some(first) = rest.first() {
        let ws = first.workspace_id;
        let n = rest.iter().take_while(|e| e.workspace_id == ws).count();
        let (batch, tail) = rest.split_at(n);
        rest = tail;
        let mut qb = conn.sql("UPDATE workspaces SET event_seq = event_seq + ");
        qb.bind(n as i64);
        qb.push(" WHERE id = ");
        qb.bind(ws);
        qb.push(" RETURNING event_seq");
        let top: i64 = conn
            .fetch_optional(qb)
            .await?
            .ok_or(StoreError::NotFound)?
            .get(0)?;
        let numbered: Vec<Event> = batch
            .iter()
            .zip(top - n as i64 + 1..)
            .map(|(e, seq)| Event {
                seq,
                workspace_id: ws,
                kind: e.kind.to_owned(),
                subject_id: e.subject_id,
                payload: e.payload.clone(),
                at: e.at,
            })
            .collect();
        for chunk in numbered.chunks(EVENTS_PER_STATEMENT) {
            insert(conn, chunk).await?;
        }
        if let Some(pg) = conn.as_postgres() {
            postgres::notify_events(pg, ws, top).await?;
        }
        out.extend(numbered);
    }
    Ok(out)
}

async fn insert(conn: &mut Conn, events: &[Event]) -> StoreResult<()> {
    let mut qb =
        conn.sql("INSERT INTO events (workspace_id, seq, type, subject_id, payload, created_at) VALUES ");
    for (i, e) in events.iter().enumerate() {
        qb.push(if i == 0 { "(" } else { ", (" });
        qb.bind(e.workspace_id);
        qb.push(", ");
        qb.bind(e.seq);
        qb.push(", ");
        qb.bind(e.kind.clone());
        qb.push(", ");
        qb.bind(e.subject_id);
        qb.push(", ");
        qb.bind(e.payload.to_string());
        qb.push(", ");
        qb.bind(e.at);
        qb.push(")");
    }
    conn.execute(qb).await.map(drop)
}

fn event_from_row(r: &Row) -> StoreResult<Event> {
    Ok(Event {
        seq: r.get(0)?,
        workspace_id: WorkspaceId::from_uuid(r.get(1)?),
        kind: r.get(2)?,
        subject_id: r.get(3)?,
        payload: r.json(4)?,
        at: r.get(5)?,
    })
}

impl Store {
    /// Appends events in their own transaction and returns them numbered (writes of leads and
    /// enrichment append theirs in the transaction of the change instead).
    pub async fn append_events(&self, events: &[NewEvent]) -> StoreResult<Vec<Event>> {
        let mut tx = self.begin().await?;
        let out = append_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Events of `ws` numbered above `after`, oldest first.
    pub async fn events_after(&self, ws: WorkspaceId, after: i64, limit: u32) -> StoreResult<Vec<Event>> {
        let mut qb = self.sql(
            "SELECT seq, workspace_id, type, subject_id, payload, created_at FROM events WHERE workspace_id = ",
        );
        qb.bind(ws);
        qb.push(" AND seq > ");
        qb.bind(after);
        qb.push(" ORDER BY seq LIMIT ");
        qb.bind(i64::from(limit));
        self.fetch_all(qb).await?.iter().map(event_from_row).collect()
    }

    /// Events of `ws` of the given types numbered above `after` and at most `upto`, oldest
    /// first (a reader that only wants some types skips the rest in the database).
    pub async fn events_of_types(
        &self,
        ws: WorkspaceId,
        types: &[&str],
        after: i64,
        upto: i64,
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        let mut qb = self.sql(
            "SELECT seq, workspace_id, type, subject_id, payload, created_at FROM events WHERE workspace_id = ",
        );
        qb.bind(ws);
        qb.push(" AND seq > ");
        qb.bind(after);
        qb.push(" AND seq <= ");
        qb.bind(upto);
        qb.push(" AND type IN (");
        qb.bind_list(types.iter().copied());
        qb.push(") ORDER BY seq LIMIT ");
        qb.bind(i64::from(limit));
        self.fetch_all(qb).await?.iter().map(event_from_row).collect()
    }

    /// The newest event number of every workspace.
    pub async fn event_heads(&self) -> StoreResult<Vec<(WorkspaceId, i64)>> {
        let rows = self
            .fetch_all(self.sql("SELECT id, event_seq FROM workspaces"))
            .await?;
        rows.iter()
            .map(|r| Ok((WorkspaceId::from_uuid(r.get(0)?), r.get(1)?)))
            .collect()
    }

    /// The number of the newest event of `ws` (0 when it has none).
    pub async fn event_head(&self, ws: WorkspaceId) -> StoreResult<i64> {
        let mut qb = self.sql("SELECT event_seq FROM workspaces WHERE id = ");
        qb.bind(ws);
        match self.fetch_optional(qb).await? {
            Some(r) => r.get(0),
            None => Ok(0),
        }
    }

    /// Deletes events older than `before` (retention); returns how many.
    pub async fn prune_events(&self, before: Timestamp) -> StoreResult<u64> {
        let mut qb = self.sql("DELETE FROM events WHERE created_at < ");
        qb.bind(before);
        self.execute(qb).await
    }
}
