//! Where publishing the event log to the broker stands (`jobs::amqp::events`): named leases
//! (one holder at a time, taken over once the holder stops renewing) and, per workspace, the
//! newest event the broker confirmed.

use super::{Store, StoreResult};
use crate::domain::{Timestamp, WorkspaceId, now};
use std::time::Duration;

/// The lease of the process that publishes events.
pub const EVENT_EXPORT_LEASE: &str = "event-export";

impl Store {
    /// Takes or renews the lease `name` for `owner` until `ttl` from now; false while another
    /// owner holds it unexpired.
    pub async fn take_lease(&self, name: &str, owner: &str, ttl: Duration) -> StoreResult<bool> {
        let at = now();
        let until = chrono::TimeDelta::from_std(ttl)
            .ok()
            .and_then(|d| at.checked_add_signed(d))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        let mut qb = self.sql("INSERT INTO leases (name, owner, expires_at) VALUES (");
        qb.bind(name.to_owned());
        qb.push(", ");
        qb.bind(owner.to_owned());
        qb.push(", ");
        qb.bind(until);
        qb.push(
            ") ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
             WHERE leases.owner = excluded.owner OR leases.expires_at < ",
        );
        qb.bind(at);
        Ok(self.execute(qb).await? == 1)
    }

    /// Whether the lease `name` was ever taken.
    pub async fn lease_exists(&self, name: &str) -> StoreResult<bool> {
        let mut qb = self.sql("SELECT 1 FROM leases WHERE name = ");
        qb.bind(name.to_owned());
        Ok(self.fetch_optional(qb).await?.is_some())
    }

    /// Lets the lease lapse at once if `owner` holds it (a clean shutdown), so another process
    /// takes over without waiting. The row stays: it records that publishing was switched on.
    pub async fn release_lease(&self, name: &str, owner: &str) -> StoreResult<()> {
        let mut qb = self.sql("UPDATE leases SET expires_at = ");
        qb.bind(now() - chrono::TimeDelta::seconds(1));
        qb.push(" WHERE name = ");
        qb.bind(name.to_owned());
        qb.push(" AND owner = ");
        qb.bind(owner.to_owned());
        self.execute(qb).await.map(drop)
    }

    /// Every workspace's newest published event number.
    pub async fn event_export_positions(&self) -> StoreResult<Vec<(WorkspaceId, i64)>> {
        let rows = self
            .fetch_all(self.sql("SELECT workspace_id, cursor FROM event_exports"))
            .await?;
        rows.iter()
            .map(|r| Ok((WorkspaceId::from_uuid(r.get(0)?), r.get(1)?)))
            .collect()
    }

    /// Starts every workspace that has no position yet at its newest event (the first time
    /// publishing is switched on: history stays out of the broker).
    pub async fn start_event_exports_at_heads(&self, at: Timestamp) -> StoreResult<u64> {
        let mut qb =
            self.sql("INSERT INTO event_exports (workspace_id, cursor, updated_at) SELECT id, event_seq, ");
        qb.bind(at);
        qb.push(" FROM workspaces WHERE true ON CONFLICT (workspace_id) DO NOTHING");
        self.execute(qb).await
    }

    /// Moves `ws`'s position forward to `to` (never back).
    pub async fn advance_event_export(&self, ws: WorkspaceId, to: i64, at: Timestamp) -> StoreResult<()> {
        let mut qb = self.sql("INSERT INTO event_exports (workspace_id, cursor, updated_at) VALUES (");
        qb.bind(ws);
        qb.push(", ");
        qb.bind(to);
        qb.push(", ");
        qb.bind(at);
        qb.push(
            ") ON CONFLICT (workspace_id) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at \
             WHERE event_exports.cursor < excluded.cursor",
        );
        self.execute(qb).await.map(drop)
    }
}
