//! Outbound webhook endpoints and their delivery log.
//!
//! Switching an endpoint off after too many dead deliveries happens in one transaction with
//! the `webhook.disabled` event that reports it.

use super::dialect::{Row, Sql};
use super::events::append_events;
use super::keyset::KeyOrder;
use super::{Store, StoreError, StoreResult};
use crate::domain::{
    DeliveryId, Event, KeysetPage, NewEvent, Paged, SealedKey, Timestamp, WEBHOOK_DISABLED, WebhookDelivery,
    WebhookEndpoint, WebhookId, WorkspaceId,
};

const ENDPOINT_COLUMNS: &str = "SELECT id, workspace_id, url, description, event_types, secret_sealed, \
     secret_last4, enabled, disabled_reason, disabled_at, consecutive_failures, cursor, created_at, \
     updated_at FROM webhook_endpoints WHERE ";

fn endpoint_from_row(r: &Row) -> StoreResult<WebhookEndpoint> {
    let types: String = r.get(4)?;
    Ok(WebhookEndpoint {
        id: WebhookId::from_uuid(r.get(0)?),
        workspace_id: WorkspaceId::from_uuid(r.get(1)?),
        url: r.get(2)?,
        description: r.get(3)?,
        event_types: serde_json::from_str(&types).map_err(|e| StoreError::corrupt(e.to_string()))?,
        secret: SealedKey {
            sealed: r.get(5)?,
            last4: r.get(6)?,
        },
        enabled: r.get::<i64>(7)? != 0,
        disabled_reason: r.get(8)?,
        disabled_at: r.get(9)?,
        consecutive_failures: r.get::<i64>(10)?.clamp(0, i64::from(u32::MAX)) as u32,
        cursor: r.get(11)?,
        created_at: r.get(12)?,
        updated_at: r.get(13)?,
    })
}

fn delivery_from_row(r: &Row) -> StoreResult<WebhookDelivery> {
    Ok(WebhookDelivery {
        id: DeliveryId::from_i64(r.get(0)?),
        workspace_id: WorkspaceId::from_uuid(r.get(1)?),
        endpoint_id: WebhookId::from_uuid(r.get(2)?),
        event_seq: r.get(3)?,
        event_type: r.get(4)?,
        attempt: r.get::<i64>(5)?.max(0) as u32,
        status: r.get::<Option<i64>>(6)?.map(|s| s.clamp(0, 999) as u16),
        response_body: r.get(7)?,
        error: r.get(8)?,
        duration_ms: r.get::<i64>(9)?.max(0) as u32,
        succeeded: r.get::<i64>(10)? != 0,
        at: r.get(11)?,
    })
}

fn push_endpoint(qb: &mut Sql, ep: &WebhookEndpoint) {
    qb.push("(");
    qb.bind(ep.id);
    qb.push(", ");
    qb.bind(ep.workspace_id);
    qb.push(", ");
    qb.bind(ep.url.clone());
    qb.push(", ");
    qb.bind(ep.description.clone());
    qb.push(", ");
    qb.bind(serde_json::Value::from(ep.event_types.clone()).to_string());
    qb.push(", ");
    qb.bind(ep.secret.sealed.clone());
    qb.push(", ");
    qb.bind(ep.secret.last4.clone());
    qb.push(", ");
    qb.bind(i64::from(ep.enabled));
    qb.push(", ");
    qb.bind(ep.disabled_reason.clone());
    qb.push(", ");
    qb.bind(ep.disabled_at);
    qb.push(", ");
    qb.bind(i64::from(ep.consecutive_failures));
    qb.push(", ");
    qb.bind(ep.cursor);
    qb.push(", ");
    qb.bind(ep.created_at);
    qb.push(", ");
    qb.bind(ep.updated_at);
    qb.push(")");
}

impl Store {
    pub async fn save_webhook(&self, ep: &WebhookEndpoint) -> StoreResult<()> {
        let mut qb = self.sql(
            "INSERT INTO webhook_endpoints (id, workspace_id, url, description, event_types, \
             secret_sealed, secret_last4, enabled, disabled_reason, disabled_at, consecutive_failures, \
             cursor, created_at, updated_at) VALUES ",
        );
        push_endpoint(&mut qb, ep);
        // the workspace of an existing endpoint never changes
        qb.push(
            " ON CONFLICT (id) DO UPDATE SET url = excluded.url, description = excluded.description, \
             event_types = excluded.event_types, secret_sealed = excluded.secret_sealed, \
             secret_last4 = excluded.secret_last4, enabled = excluded.enabled, \
             disabled_reason = excluded.disabled_reason, disabled_at = excluded.disabled_at, \
             consecutive_failures = excluded.consecutive_failures, cursor = excluded.cursor, \
             updated_at = excluded.updated_at WHERE webhook_endpoints.workspace_id = excluded.workspace_id",
        );
        self.execute(qb).await?;
        Ok(())
    }

    pub async fn webhooks(&self, ws: WorkspaceId) -> StoreResult<Vec<WebhookEndpoint>> {
        let mut qb = self.sql(ENDPOINT_COLUMNS);
        qb.push("workspace_id = ");
        qb.bind(ws);
        qb.push(" ORDER BY created_at, id");
        let rows = self.fetch_all(qb).await?;
        rows.iter().map(endpoint_from_row).collect::<Result<_, _>>()
    }

    pub async fn webhook(&self, ws: WorkspaceId, id: WebhookId) -> StoreResult<Option<WebhookEndpoint>> {
        let mut qb = self.sql(ENDPOINT_COLUMNS);
        qb.push("workspace_id = ");
        qb.bind(ws);
        qb.push(" AND id = ");
        qb.bind(id);
        let row = self.fetch_optional(qb).await?;
        row.as_ref().map(endpoint_from_row).transpose()
    }

    pub async fn delete_webhook(&self, ws: WorkspaceId, id: WebhookId) -> StoreResult<bool> {
        let mut qb = self.sql("DELETE FROM webhook_endpoints WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND id = ");
        qb.bind(id);
        let done = self.execute(qb).await?;
        Ok(done > 0)
    }

    pub async fn enabled_webhooks(&self) -> StoreResult<Vec<WebhookEndpoint>> {
        let mut qb = self.sql(ENDPOINT_COLUMNS);
        qb.push("enabled = 1 ORDER BY workspace_id, id");
        let rows = self.fetch_all(qb).await?;
        rows.iter().map(endpoint_from_row).collect::<Result<_, _>>()
    }

    pub async fn advance_webhook(
        &self,
        ws: WorkspaceId,
        id: WebhookId,
        from: i64,
        to: i64,
    ) -> StoreResult<bool> {
        let mut qb = self.sql("UPDATE webhook_endpoints SET cursor = ");
        qb.bind(to);
        qb.push(" WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND id = ");
        qb.bind(id);
        qb.push(" AND cursor = ");
        qb.bind(from);
        let done = self.execute(qb).await?;
        Ok(done == 1)
    }

    pub async fn record_delivery(&self, d: &WebhookDelivery) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let mut qb = self.sql(
            "INSERT INTO webhook_deliveries (workspace_id, endpoint_id, event_seq, event_type, attempt, \
             status, response_body, error, duration_ms, succeeded, created_at) VALUES (",
        );
        qb.bind(d.workspace_id);
        qb.push(", ");
        qb.bind(d.endpoint_id);
        qb.push(", ");
        qb.bind(d.event_seq);
        qb.push(", ");
        qb.bind(d.event_type.clone());
        qb.push(", ");
        qb.bind(i64::from(d.attempt));
        qb.push(", ");
        qb.bind(d.status.map(i64::from));
        qb.push(", ");
        qb.bind(d.response_body.clone());
        qb.push(", ");
        qb.bind(d.error.clone());
        qb.push(", ");
        qb.bind(i64::from(d.duration_ms));
        qb.push(", ");
        qb.bind(i64::from(d.succeeded));
        qb.push(", ");
        qb.bind(d.at);
        qb.push(")");
        tx.execute(qb).await?;
        if d.succeeded {
            let mut qb =
                self.sql("UPDATE webhook_endpoints SET consecutive_failures = 0 WHERE workspace_id = ");
            qb.bind(d.workspace_id);
            qb.push(" AND id = ");
            qb.bind(d.endpoint_id);
            tx.execute(qb).await?;
        }
        tx.commit().await
    }

    pub async fn webhook_dead(
        &self,
        ws: WorkspaceId,
        id: WebhookId,
        threshold: u32,
        at: Timestamp,
    ) -> StoreResult<Vec<Event>> {
        let mut tx = self.begin().await?;
        let mut qb = self.sql(
            "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1 WHERE workspace_id = ",
        );
        qb.bind(ws);
        qb.push(" AND id = ");
        qb.bind(id);
        qb.push(" RETURNING consecutive_failures, enabled");
        let Some(row) = tx.fetch_optional(qb).await? else {
            return Ok(Vec::new());
        };
        let failures: i64 = row.get(0)?;
        let enabled: i64 = row.get(1)?;
        if enabled == 0 || failures < i64::from(threshold) {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let reason = format!("{failures} deliveries in a row failed every attempt");
        let mut qb = self.sql("UPDATE webhook_endpoints SET enabled = 0, disabled_reason = ");
        qb.bind(reason.clone());
        qb.push(", disabled_at = ");
        qb.bind(at);
        qb.push(", updated_at = ");
        qb.bind(at);
        qb.push(" WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND id = ");
        qb.bind(id);
        tx.execute(qb).await?;
        let event = NewEvent {
            workspace_id: ws,
            kind: WEBHOOK_DISABLED,
            subject_id: Some(id.as_uuid()),
            payload: serde_json::json!({
                "endpointId": id.to_string(),
                "reason": reason,
                "consecutiveFailures": failures,
            }),
            at,
        };
        let events = append_events(&mut tx, &[event]).await?;
        tx.commit().await?;
        Ok(events)
    }

    pub async fn prune_deliveries(&self, before: Timestamp) -> StoreResult<u64> {
        let mut qb = self.sql("DELETE FROM webhook_deliveries WHERE created_at < ");
        qb.bind(before);
        let done = self.execute(qb).await?;
        Ok(done)
    }

    /// A page of an endpoint's delivery attempts, newest first.
    pub async fn deliveries(
        &self,
        ws: WorkspaceId,
        endpoint: WebhookId,
        page: &KeysetPage<DeliveryId>,
    ) -> StoreResult<Paged<WebhookDelivery>> {
        let mut qb = self.sql(
            "SELECT id, workspace_id, endpoint_id, event_seq, event_type, attempt, status, response_body, \
             error, duration_ms, succeeded, created_at FROM webhook_deliveries WHERE workspace_id = ",
        );
        qb.bind(ws);
        qb.push(" AND endpoint_id = ");
        qb.bind(endpoint);
        self.keyset_page(qb, KeyOrder::NEWEST_FIRST, page, delivery_from_row)
            .await
    }
}
