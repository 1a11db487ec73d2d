//! CRM connections, the links of leads to CRM records, sync runs and inbound webhook
//! bookkeeping.
//!
//! A push marks links `pending` (`mark_crm_pending`, one statement per batch of leads, which is
//! what coalesces many edits of one lead into one send) and bumps their `generation`; the
//! outcome of a send is written only for the generation that was sent
//! (`record_crm_outcomes`), so an edit made while a batch was in flight stays pending for the
//! next one. The CRM's request pacing is shared by every worker through
//! `crm_connections.blocked_until`.

use super::dialect::{Row, Sql};
use super::keyset::KeyOrder;
use super::{Store, StoreError, StoreResult};
use crate::domain::{
    CrmConnection, CrmConnectionId, CrmKind, CrmLink, CrmRunId, CrmSyncRun, FieldMapping, KeysetPage, LeadId,
    LinkStatus, OnDeletion, Paged, SealedKey, SyncCounts, SyncTrigger, Timestamp, WorkspaceId,
};
use std::collections::BTreeMap;

const CONNECTION_COLUMNS: &str = "SELECT id, workspace_id, kind, name, api_base_url, token_url, \
     credentials_sealed, credentials_hint, field_mapping, push_on_change, poll_interval_secs, on_deletion, \
     event_cursor, poll_cursor, polled_at, blocked_until, created_at, updated_at FROM crm_connections WHERE ";

const LINK_COLUMNS: &str = "SELECT workspace_id, connection_id, lead_id, external_id, status, generation, \
     synced_hash, remote_clock, last_synced_at, last_error, pending_since FROM crm_links WHERE ";

const RUN_COLUMNS: &str = "SELECT id, workspace_id, connection_id, trigger_kind, started_at, finished_at, \
     pushed, pulled, failed, skipped FROM crm_sync_runs WHERE ";

fn connection_from_row(r: &Row) -> StoreResult<CrmConnection> {
    let kind: String = r.get(2)?;
    let mapping: String = r.get(8)?;
    let deletion: String = r.get(11)?;
    Ok(CrmConnection {
        id: CrmConnectionId::from_uuid(r.get(0)?),
        workspace_id: WorkspaceId::from_uuid(r.get(1)?),
        kind: CrmKind::parse(&kind).ok_or_else(|| StoreError::corrupt(format!("CRM kind {kind}")))?,
        name: r.get(3)?,
        api_base_url: r.get(4)?,
        token_url: r.get(5)?,
        credentials: SealedKey {
            sealed: r.get(6)?,
            last4: String::new(),
        },
        credentials_hint: r.get(7)?,
        field_mapping: serde_json::from_str::<FieldMapping>(&mapping)
            .map_err(|e| StoreError::corrupt(format!("field mapping: {e}")))?,
        push_on_change: r.get::<i64>(9)? != 0,
        poll_interval_secs: r
            .get::<Option<i64>>(10)?
            .map(|s| s.clamp(0, i64::from(u32::MAX)) as u32),
        on_deletion: OnDeletion::parse(&deletion)
            .ok_or_else(|| StoreError::corrupt(format!("on_deletion {deletion}")))?,
        event_cursor: r.get(12)?,
        poll_cursor: r.get(13)?,
        polled_at: r.get(14)?,
        blocked_until: r.get(15)?,
        created_at: r.get(16)?,
        updated_at: r.get(17)?,
    })
}

fn link_from_row(r: &Row) -> StoreResult<CrmLink> {
    let status: String = r.get(4)?;
    let clock: String = r.get(7)?;
    Ok(CrmLink {
        workspace_id: WorkspaceId::from_uuid(r.get(0)?),
        connection_id: CrmConnectionId::from_uuid(r.get(1)?),
        lead_id: LeadId::from_uuid(r.get(2)?),
        external_id: r.get(3)?,
        status: LinkStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt(format!("link status {status}")))?,
        generation: r.get(5)?,
        synced_digest: r.get(6)?,
        remote_clock: serde_json::from_str(&clock)
            .map_err(|e| StoreError::corrupt(format!("remote clock: {e}")))?,
        last_synced_at: r.get(8)?,
        last_error: r.get(9)?,
        pending_since: r.get(10)?,
    })
}

fn run_from_row(r: &Row) -> StoreResult<CrmSyncRun> {
    let trigger: String = r.get(3)?;
    let count = |i: usize| -> StoreResult<u64> { Ok(r.get::<i64>(i)?.max(0) as u64) };
    Ok(CrmSyncRun {
        id: CrmRunId::from_uuid(r.get(0)?),
        workspace_id: WorkspaceId::from_uuid(r.get(1)?),
        connection_id: CrmConnectionId::from_uuid(r.get(2)?),
        trigger: SyncTrigger::parse(&trigger)
            .ok_or_else(|| StoreError::corrupt(format!("trigger {trigger}")))?,
        started_at: r.get(4)?,
        finished_at: r.get(5)?,
        counts: SyncCounts {
            pushed: count(6)?,
            pulled: count(7)?,
            failed: count(8)?,
            skipped: count(9)?,
        },
    })
}

fn clock_text(clock: &BTreeMap<String, i64>) -> String {
    serde_json::to_string(clock).unwrap_or_else(|_| "{}".into())
}

/// What a send did for one record.
#[derive(Clone, Debug, PartialEq)]
pub struct CrmOutcome {
    pub lead_id: LeadId,
    /// The generation that was sent.
    pub generation: i64,
    pub external_id: Option<String>,
    /// `Synced` (with the digest of what was sent) or `Failed` (with the reason).
    pub status: LinkStatus,
    pub digest: Option<String>,
    pub error: Option<String>,
}

/// A link waiting to be pushed.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingLink {
    pub lead_id: LeadId,
    pub generation: i64,
    pub external_id: Option<String>,
    pub synced_digest: Option<String>,
}

/// One inbound webhook request as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookReceipt {
    pub workspace_id: WorkspaceId,
    pub connection_id: CrmConnectionId,
    pub status: u16,
    pub outcome: &'static str,
    pub detail: Option<String>,
    pub events: u32,
    pub at: Timestamp,
}

/// Links per statement when marking leads pending (7 binds each).
const MARK_CHUNK: usize = 500;

impl Store {
    pub async fn save_crm_connection(&self, c: &CrmConnection) -> StoreResult<()> {
        let mut qb = self.sql(
            "INSERT INTO crm_connections (id, workspace_id, kind, name, api_base_url, token_url, \
             credentials_sealed, credentials_hint, field_mapping, push_on_change, poll_interval_secs, \
             on_deletion, event_cursor, poll_cursor, polled_at, blocked_until, created_at, updated_at) VALUES (",
        );
        qb.bind(c.id).push(", ");
        qb.bind(c.workspace_id).push(", ");
        qb.bind(c.kind.as_str().to_owned()).push(", ");
        qb.bind(c.name.clone()).push(", ");
        qb.bind(c.api_base_url.clone()).push(", ");
        qb.bind(c.token_url.clone()).push(", ");
        qb.bind(c.credentials.sealed.clone()).push(", ");
        qb.bind(c.credentials_hint.clone()).push(", ");
        qb.bind(serde_json::to_string(&c.field_mapping).unwrap_or_default())
            .push(", ");
        qb.bind(i64::from(c.push_on_change)).push(", ");
        qb.bind(c.poll_interval_secs.map(i64::from)).push(", ");
        qb.bind(c.on_deletion.as_str().to_owned()).push(", ");
        qb.bind(c.event_cursor).push(", ");
        qb.bind(c.poll_cursor.clone()).push(", ");
        qb.bind(c.polled_at).push(", ");
        qb.bind(c.blocked_until).push(", ");
        qb.bind(c.created_at).push(", ");
        qb.bind(c.updated_at).push(")");
        // cursors and pacing belong to the sync, not to an admin's edit: kept as stored
        qb.push(
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name, api_base_url = excluded.api_base_url, \
             token_url = excluded.token_url, credentials_sealed = excluded.credentials_sealed, \
             credentials_hint = excluded.credentials_hint, field_mapping = excluded.field_mapping, \
             push_on_change = excluded.push_on_change, poll_interval_secs = excluded.poll_interval_secs, \
             on_deletion = excluded.on_deletion, updated_at = excluded.updated_at \
             WHERE crm_connections.workspace_id = excluded.workspace_id",
        );
        self.execute(qb).await.map(drop)
    }

    pub async fn crm_connection(
        &self,
        ws: WorkspaceId,
        id: CrmConnectionId,
    ) -> StoreResult<Option<CrmConnection>> {
        let mut qb = self.sql(CONNECTION_COLUMNS);
        qb.push("workspace_id = ");
        qb.bind(ws);
        qb.push(" AND id = ");
        qb.bind(id);
        let row = self.fetch_optional(qb).await?;
        row.as_ref().map(connection_from_row).transpose()
    }

    /// A connection by id alone: inbound webhooks name only the connection.
    pub async fn crm_connection_by_id(&self, id: CrmConnectionId) -> StoreResult<Option<CrmConnection>> {
        let mut qb = self.sql(CONNECTION_COLUMNS);
        qb.push("id = ");
        qb.bind(id);
        let row = self.fetch_optional(qb).await?;
        row.as_ref().map(connection_from_row).transpose()
    }

    /// A page of a workspace's connections, oldest first.
    pub async fn crm_connections(
        &self,
        ws: WorkspaceId,
        page: &KeysetPage<CrmConnectionId>,
    ) -> StoreResult<Paged<CrmConnection>> {
        let mut qb = self.sql(CONNECTION_COLUMNS);
        qb.push("workspace_id = ");
        qb.bind(ws);
        self.keyset_page(qb, KeyOrder::OLDEST_FIRST, page, connection_from_row)
            .await
    }

    /// Every connection of every workspace (the dispatcher and the poll schedule).
    pub async fn all_crm_connections(&self) -> StoreResult<Vec<CrmConnection>> {
        let mut qb = self.sql(CONNECTION_COLUMNS);
        qb.push("1 = 1 ORDER BY workspace_id, id");
        let rows = self.fetch_all(qb).await?;
        rows.iter().map(connection_from_row).collect()
    }

    pub async fn count_crm_connections(&self, ws: WorkspaceId) -> StoreResult<u64> {
        let mut qb = self.sql("SELECT COUNT(*) FROM crm_connections WHERE workspace_id = ");
        qb.bind(ws);
        Ok(self.fetch_one(qb).await?.get::<i64>(0)?.max(0) as u64)
    }

    pub async fn delete_crm_connection(&self, ws: WorkspaceId, id: CrmConnectionId) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        // SQLite enforces no foreign keys here: the dependants go explicitly, on both
        for table in [
            "crm_links",
            "crm_sync_runs",
            "crm_inbound_events",
            "crm_webhook_receipts",
        ] {
            let mut qb = self.sql(format!("DELETE FROM {table} WHERE connection_id = "));
            qb.bind(id);
            tx.execute(qb).await?;
        }
        let mut qb = self.sql("DELETE FROM crm_connections WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND id = ");
        qb.bind(id);
        let done = tx.execute(qb).await?;
        tx.commit().await?;
        Ok(done > 0)
    }

    /// Moves the push cursor from `from` to `to`; false when someone else moved it first.
    pub async fn advance_crm_cursor(&self, id: CrmConnectionId, from: i64, to: i64) -> StoreResult<bool> {
        let mut qb = self.sql("UPDATE crm_connections SET event_cursor = ");
        qb.bind(to);
        qb.push(" WHERE id = ");
        qb.bind(id);
        qb.push(" AND event_cursor = ");
        qb.bind(from);
        Ok(self.execute(qb).await? == 1)
    }

    /// Keeps the CRM's poll position (after each page, so a poll resumes where it stopped).
    pub async fn save_crm_poll_cursor(
        &self,
        id: CrmConnectionId,
        cursor: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<()> {
        let mut qb = self.sql("UPDATE crm_connections SET poll_cursor = ");
        qb.bind(cursor.map(str::to_owned));
        qb.push(", polled_at = ");
        qb.bind(at);
        qb.push(" WHERE id = ");
        qb.bind(id);
        self.execute(qb).await.map(drop)
    }

    /// No request to this connection's CRM before `until` (kept if a later one is stored).
    pub async fn block_crm_until(&self, id: CrmConnectionId, until: Timestamp) -> StoreResult<()> {
        let mut qb = self.sql("UPDATE crm_connections SET blocked_until = ");
        qb.bind(until);
        qb.push(" WHERE id = ");
        qb.bind(id);
        qb.push(" AND (blocked_until IS NULL OR blocked_until < ");
        qb.bind(until);
        qb.push(")");
        self.execute(qb).await.map(drop)
    }

    /// Replaces the sealed credentials (a refreshed access token).
    pub async fn save_crm_credentials(&self, id: CrmConnectionId, sealed: &SealedKey) -> StoreResult<()> {
        let mut qb = self.sql("UPDATE crm_connections SET credentials_sealed = ");
        qb.bind(sealed.sealed.clone());
        qb.push(" WHERE id = ");
        qb.bind(id);
        self.execute(qb).await.map(drop)
    }

    /// Marks `leads` as waiting for a push to `connection`: a missing link is created, an
    /// existing one becomes pending with its generation bumped (however often it is marked
    /// before the push, it is sent once).
    pub async fn mark_crm_pending(
        &self,
        ws: WorkspaceId,
        connection: CrmConnectionId,
        leads: &[LeadId],
        at: Timestamp,
    ) -> StoreResult<()> {
        for chunk in leads.chunks(MARK_CHUNK) {
            let mut qb = self.sql(
                "INSERT INTO crm_links (workspace_id, connection_id, lead_id, status, generation, remote_clock, \
                 pending_since) VALUES ",
            );
            for (i, lead) in chunk.iter().enumerate() {
                if i > 0 {
                    qb.push(", ");
                }
                qb.push("(");
                qb.bind(ws).push(", ");
                qb.bind(connection).push(", ");
                qb.bind(*lead).push(", 'pending', 1, '{}', ");
                qb.bind(at).push(")");
            }
            qb.push(
                " ON CONFLICT (connection_id, lead_id) DO UPDATE SET status = 'pending', \
                 generation = crm_links.generation + 1, \
                 pending_since = COALESCE(crm_links.pending_since, excluded.pending_since)",
            );
            self.execute(qb).await?;
        }
        Ok(())
    }

    /// Up to `limit` pending links of `connection` after `after` (by lead id).
    pub async fn pending_crm_links(
        &self,
        connection: CrmConnectionId,
        after: Option<LeadId>,
        limit: usize,
    ) -> StoreResult<Vec<PendingLink>> {
        let mut qb = self.sql(
            "SELECT lead_id, generation, external_id, synced_hash FROM crm_links WHERE connection_id = ",
        );
        qb.bind(connection);
        qb.push(" AND status = 'pending'");
        if let Some(after) = after {
            qb.push(" AND lead_id > ");
            qb.bind(after);
        }
        qb.push(" ORDER BY lead_id LIMIT ");
        qb.bind(i64::try_from(limit).unwrap_or(i64::MAX));
        let rows = self.fetch_all(qb).await?;
        rows.iter()
            .map(|r| {
                Ok(PendingLink {
                    lead_id: LeadId::from_uuid(r.get(0)?),
                    generation: r.get(1)?,
                    external_id: r.get(2)?,
                    synced_digest: r.get(3)?,
                })
            })
            .collect()
    }

    /// Writes what one send did, in one transaction. A link whose generation moved on (the
    /// lead changed while the batch was out) keeps `pending` and only learns its external id.
    pub async fn record_crm_outcomes(
        &self,
        connection: CrmConnectionId,
        outcomes: &[CrmOutcome],
        at: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for o in outcomes {
            let mut qb = self.sql("UPDATE crm_links SET status = ");
            qb.bind(o.status.as_str().to_owned());
            qb.push(", external_id = COALESCE(");
            qb.bind(o.external_id.clone());
            qb.push(", external_id), synced_hash = COALESCE(");
            qb.bind(o.digest.clone());
            qb.push(", synced_hash), last_error = ");
            qb.bind(o.error.clone());
            if o.status == LinkStatus::Synced {
                qb.push(", last_synced_at = ");
                qb.bind(at);
            }
            qb.push(", pending_since = NULL WHERE connection_id = ");
            qb.bind(connection);
            qb.push(" AND lead_id = ");
            qb.bind(o.lead_id);
            qb.push(" AND generation = ");
            qb.bind(o.generation);
            if tx.execute(qb).await? == 0 && o.external_id.is_some() {
                let mut qb = self.sql("UPDATE crm_links SET external_id = ");
                qb.bind(o.external_id.clone());
                qb.push(" WHERE connection_id = ");
                qb.bind(connection);
                qb.push(" AND lead_id = ");
                qb.bind(o.lead_id);
                tx.execute(qb).await?;
            }
        }
        tx.commit().await
    }

    /// Writes a whole link (what a pull learnt), creating it when missing.
    pub async fn save_crm_link(&self, link: &CrmLink) -> StoreResult<()> {
        let mut qb = self.sql(
            "INSERT INTO crm_links (workspace_id, connection_id, lead_id, external_id, status, generation, \
             synced_hash, remote_clock, last_synced_at, last_error, pending_since) VALUES (",
        );
        qb.bind(link.workspace_id).push(", ");
        qb.bind(link.connection_id).push(", ");
        qb.bind(link.lead_id).push(", ");
        qb.bind(link.external_id.clone()).push(", ");
        qb.bind(link.status.as_str().to_owned()).push(", ");
        qb.bind(link.generation).push(", ");
        qb.bind(link.synced_digest.clone()).push(", ");
        qb.bind(clock_text(&link.remote_clock)).push(", ");
        qb.bind(link.last_synced_at).push(", ");
        qb.bind(link.last_error.clone()).push(", ");
        qb.bind(link.pending_since).push(")");
        qb.push(
            " ON CONFLICT (connection_id, lead_id) DO UPDATE SET external_id = excluded.external_id, \
             status = excluded.status, synced_hash = excluded.synced_hash, \
             remote_clock = excluded.remote_clock, last_synced_at = excluded.last_synced_at, \
             last_error = excluded.last_error, pending_since = excluded.pending_since",
        );
        self.execute(qb).await.map(drop)
    }

    pub async fn delete_crm_link(&self, connection: CrmConnectionId, lead: LeadId) -> StoreResult<()> {
        let mut qb = self.sql("DELETE FROM crm_links WHERE connection_id = ");
        qb.bind(connection);
        qb.push(" AND lead_id = ");
        qb.bind(lead);
        self.execute(qb).await.map(drop)
    }

    pub async fn crm_link_by_external(
        &self,
        connection: CrmConnectionId,
        external_id: &str,
    ) -> StoreResult<Option<CrmLink>> {
        let mut qb = self.sql(LINK_COLUMNS);
        qb.push("connection_id = ");
        qb.bind(connection);
        qb.push(" AND external_id = ");
        qb.bind(external_id.to_owned());
        let row = self.fetch_optional(qb).await?;
        row.as_ref().map(link_from_row).transpose()
    }

    pub async fn crm_link(&self, connection: CrmConnectionId, lead: LeadId) -> StoreResult<Option<CrmLink>> {
        let mut qb = self.sql(LINK_COLUMNS);
        qb.push("connection_id = ");
        qb.bind(connection);
        qb.push(" AND lead_id = ");
        qb.bind(lead);
        let row = self.fetch_optional(qb).await?;
        row.as_ref().map(link_from_row).transpose()
    }

    /// A lead's links, one per connection that knows it.
    pub async fn crm_links_of(&self, ws: WorkspaceId, lead: LeadId) -> StoreResult<Vec<CrmLink>> {
        let mut qb = self.sql(LINK_COLUMNS);
        qb.push("workspace_id = ");
        qb.bind(ws);
        qb.push(" AND lead_id = ");
        qb.bind(lead);
        qb.push(" ORDER BY connection_id");
        let rows = self.fetch_all(qb).await?;
        rows.iter().map(link_from_row).collect()
    }

    /// The links of many leads (a page's `crmLinks`), in chunks of 500 ids.
    pub async fn crm_links_of_leads(&self, ws: WorkspaceId, leads: &[LeadId]) -> StoreResult<Vec<CrmLink>> {
        let mut links = Vec::new();
        for chunk in leads.chunks(500) {
            let mut qb = self.sql(LINK_COLUMNS);
            qb.push("workspace_id = ");
            qb.bind(ws);
            qb.push(" AND lead_id IN (");
            for (i, id) in chunk.iter().enumerate() {
                if i > 0 {
                    qb.push(", ");
                }
                qb.bind(*id);
            }
            qb.push(") ORDER BY lead_id, connection_id");
            for row in self.fetch_all(qb).await? {
                links.push(link_from_row(&row)?);
            }
        }
        Ok(links)
    }

    /// A workspace's connections, oldest first (at most `MAX_CONNECTIONS` of them).
    pub async fn crm_connections_of(&self, ws: WorkspaceId) -> StoreResult<Vec<CrmConnection>> {
        let mut qb = self.sql(CONNECTION_COLUMNS);
        qb.push("workspace_id = ");
        qb.bind(ws);
        qb.push(" ORDER BY created_at, id");
        let rows = self.fetch_all(qb).await?;
        rows.iter().map(connection_from_row).collect()
    }

    /// How many of a connection's links stand at each status.
    pub async fn crm_link_counts(&self, connection: CrmConnectionId) -> StoreResult<BTreeMap<String, u64>> {
        let mut qb = self.sql("SELECT status, COUNT(*) FROM crm_links WHERE connection_id = ");
        qb.bind(connection);
        qb.push(" GROUP BY status");
        let rows = self.fetch_all(qb).await?;
        rows.iter()
            .map(|r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?.max(0) as u64)))
            .collect()
    }

    /// Records a run once it finished.
    pub async fn save_crm_run(&self, run: &CrmSyncRun) -> StoreResult<()> {
        let mut qb = self.insert_crm_run(run);
        qb.push(
            " ON CONFLICT (id) DO UPDATE SET finished_at = excluded.finished_at, pushed = excluded.pushed, \
             pulled = excluded.pulled, failed = excluded.failed, skipped = excluded.skipped",
        );
        self.execute(qb).await.map(drop)
    }

    /// Adds a run's counts to the run with its id, or records it (the webhook runs of one
    /// minute); the later `finished_at` wins.
    pub async fn add_to_crm_run(&self, run: &CrmSyncRun) -> StoreResult<()> {
        let mut qb = self.insert_crm_run(run);
        qb.push(
            " ON CONFLICT (id) DO UPDATE SET \
             finished_at = CASE WHEN excluded.finished_at > crm_sync_runs.finished_at \
             THEN excluded.finished_at ELSE crm_sync_runs.finished_at END, \
             pushed = crm_sync_runs.pushed + excluded.pushed, pulled = crm_sync_runs.pulled + excluded.pulled, \
             failed = crm_sync_runs.failed + excluded.failed, skipped = crm_sync_runs.skipped + excluded.skipped",
        );
        self.execute(qb).await.map(drop)
    }

    fn insert_crm_run(&self, run: &CrmSyncRun) -> Sql {
        let mut qb = self.sql(
            "INSERT INTO crm_sync_runs (id, workspace_id, connection_id, trigger_kind, started_at, finished_at, \
             pushed, pulled, failed, skipped) VALUES (",
        );
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        qb.bind(run.id).push(", ");
        qb.bind(run.workspace_id).push(", ");
        qb.bind(run.connection_id).push(", ");
        qb.bind(run.trigger.as_str().to_owned()).push(", ");
        qb.bind(run.started_at).push(", ");
        qb.bind(run.finished_at).push(", ");
        qb.bind(n(run.counts.pushed)).push(", ");
        qb.bind(n(run.counts.pulled)).push(", ");
        qb.bind(n(run.counts.failed)).push(", ");
        qb.bind(n(run.counts.skipped)).push(")");
        qb
    }

    /// A page of runs, newest first; of one connection when `connection` is given.
    pub async fn crm_runs(
        &self,
        ws: WorkspaceId,
        connection: Option<CrmConnectionId>,
        page: &KeysetPage<CrmRunId>,
    ) -> StoreResult<Paged<CrmSyncRun>> {
        let mut qb = self.sql(RUN_COLUMNS);
        qb.push("workspace_id = ");
        qb.bind(ws);
        if let Some(c) = connection {
            qb.push(" AND connection_id = ");
            qb.bind(c);
        }
        self.keyset_page(qb, KeyOrder::NEWEST_FIRST, page, run_from_row)
            .await
    }

    /// Of `event_ids`, those already received on `connection`.
    pub async fn seen_crm_events(
        &self,
        connection: CrmConnectionId,
        event_ids: &[String],
    ) -> StoreResult<Vec<String>> {
        let mut seen = Vec::new();
        for chunk in event_ids.chunks(500) {
            let mut qb = self.sql("SELECT event_id FROM crm_inbound_events WHERE connection_id = ");
            qb.bind(connection);
            qb.push(" AND event_id IN (");
            qb.bind_list(chunk.iter().cloned());
            qb.push(")");
            for row in self.fetch_all(qb).await? {
                seen.push(row.get::<String>(0)?);
            }
        }
        Ok(seen)
    }

    /// Remembers `event_ids` as received (after they were applied).
    pub async fn remember_crm_events(
        &self,
        connection: CrmConnectionId,
        event_ids: &[String],
        at: Timestamp,
    ) -> StoreResult<()> {
        for chunk in event_ids.chunks(500) {
            let mut qb =
                self.sql("INSERT INTO crm_inbound_events (connection_id, event_id, received_at) VALUES ");
            for (i, id) in chunk.iter().enumerate() {
                if i > 0 {
                    qb.push(", ");
                }
                qb.push("(");
                qb.bind(connection).push(", ");
                qb.bind(id.clone()).push(", ");
                qb.bind(at).push(")");
            }
            qb.push(" ON CONFLICT (connection_id, event_id) DO NOTHING");
            self.execute(qb).await?;
        }
        Ok(())
    }

    pub async fn record_crm_receipt(&self, r: &WebhookReceipt) -> StoreResult<()> {
        let mut qb = self.sql(
            "INSERT INTO crm_webhook_receipts (workspace_id, connection_id, status, outcome, detail, events, \
             received_at) VALUES (",
        );
        qb.bind(r.workspace_id).push(", ");
        qb.bind(r.connection_id).push(", ");
        qb.bind(i64::from(r.status)).push(", ");
        qb.bind(r.outcome.to_owned()).push(", ");
        qb.bind(r.detail.clone()).push(", ");
        qb.bind(i64::from(r.events)).push(", ");
        qb.bind(r.at).push(")");
        self.execute(qb).await.map(drop)
    }

    /// Receipts of a connection by outcome (`applied`, `bad_signature`, …).
    pub async fn crm_receipt_counts(
        &self,
        connection: CrmConnectionId,
    ) -> StoreResult<BTreeMap<String, u64>> {
        let mut qb = self.sql("SELECT outcome, COUNT(*) FROM crm_webhook_receipts WHERE connection_id = ");
        qb.bind(connection);
        qb.push(" GROUP BY outcome");
        let rows = self.fetch_all(qb).await?;
        rows.iter()
            .map(|r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?.max(0) as u64)))
            .collect()
    }

    /// Forgets inbound event ids received before `before` (the CRMs stop retrying long before).
    pub async fn prune_crm_inbound(&self, before: Timestamp) -> StoreResult<u64> {
        let mut qb = self.sql("DELETE FROM crm_inbound_events WHERE received_at < ");
        qb.bind(before);
        let mut done = self.execute(qb).await?;
        let mut qb = self.sql("DELETE FROM crm_webhook_receipts WHERE received_at < ");
        qb.bind(before);
        done += self.execute(qb).await?;
        Ok(done)
    }
}
