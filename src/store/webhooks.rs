//! Outbound webhook endpoints and their delivery log, shared by both backends and stamped out
//! per backend by `impl_webhook_repo!`; a backend provides `read_time` and `read_opt_time`.
//!
//! Switching an endpoint off after too many dead deliveries happens in one transaction with
//! the `webhook.disabled` event that reports it.

macro_rules! impl_webhook_repo {
    ($store:ty) => {
        mod webhook_repo {
            use super::{read_opt_time, read_time};
            use sqlx::Row as _;
            use uuid::Uuid;
            use $crate::domain::{
                Event, NewEvent, SealedKey, Timestamp, WEBHOOK_DISABLED, WebhookDelivery, WebhookEndpoint, WorkspaceId,
            };
            use $crate::store::repo::interpret;
            use $crate::store::sql::SqlBuilder;
            use $crate::store::{StoreResult, WebhookRepo};

            type Qb = sqlx::QueryBuilder<super::Db>;
            type Row = <super::Db as sqlx::Database>::Row;

            const ENDPOINT_COLUMNS: &str = "SELECT id, workspace_id, url, description, event_types, secret_sealed, \
                 secret_last4, enabled, disabled_reason, disabled_at, consecutive_failures, cursor, created_at, \
                 updated_at FROM webhook_endpoints WHERE ";

            fn endpoint_from_row(r: &Row) -> Result<WebhookEndpoint, sqlx::Error> {
                let types: String = r.try_get(4)?;
                Ok(WebhookEndpoint {
                    id: r.try_get(0)?,
                    workspace_id: WorkspaceId::from_uuid(r.try_get(1)?),
                    url: r.try_get(2)?,
                    description: r.try_get(3)?,
                    event_types: serde_json::from_str(&types).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                    secret: SealedKey {
                        sealed: r.try_get(5)?,
                        last4: r.try_get(6)?,
                    },
                    enabled: r.try_get::<i64, _>(7)? != 0,
                    disabled_reason: r.try_get(8)?,
                    disabled_at: read_opt_time(r, 9)?,
                    consecutive_failures: r.try_get::<i64, _>(10)?.clamp(0, i64::from(u32::MAX)) as u32,
                    cursor: r.try_get(11)?,
                    created_at: read_time(r, 12)?,
                    updated_at: read_time(r, 13)?,
                })
            }

            fn delivery_from_row(r: &Row) -> Result<WebhookDelivery, sqlx::Error> {
                Ok(WebhookDelivery {
                    id: r.try_get(0)?,
                    workspace_id: WorkspaceId::from_uuid(r.try_get(1)?),
                    endpoint_id: r.try_get(2)?,
                    event_seq: r.try_get(3)?,
                    event_type: r.try_get(4)?,
                    attempt: r.try_get::<i64, _>(5)?.max(0) as u32,
                    status: r.try_get::<Option<i64>, _>(6)?.map(|s| s.clamp(0, 999) as u16),
                    response_body: r.try_get(7)?,
                    error: r.try_get(8)?,
                    duration_ms: r.try_get::<i64, _>(9)?.max(0) as u32,
                    succeeded: r.try_get::<i64, _>(10)? != 0,
                    at: read_time(r, 11)?,
                })
            }

            fn push_opt_time(qb: &mut Qb, at: Option<Timestamp>) {
                match at {
                    Some(at) => qb.push_time(at),
                    None => qb.push_null(),
                }
            }

            fn push_endpoint(qb: &mut Qb, ep: &WebhookEndpoint) {
                qb.push("(");
                qb.push_uuid(ep.id);
                qb.push(", ");
                qb.push_uuid(ep.workspace_id.as_uuid());
                qb.push(", ");
                qb.push_text(ep.url.clone());
                qb.push(", ");
                qb.push_opt_text(ep.description.clone());
                qb.push(", ");
                qb.push_text(serde_json::Value::from(ep.event_types.clone()).to_string());
                qb.push(", ");
                qb.push_text(ep.secret.sealed.clone());
                qb.push(", ");
                qb.push_text(ep.secret.last4.clone());
                qb.push(", ");
                qb.push_int(i64::from(ep.enabled));
                qb.push(", ");
                qb.push_opt_text(ep.disabled_reason.clone());
                qb.push(", ");
                push_opt_time(qb, ep.disabled_at);
                qb.push(", ");
                qb.push_int(i64::from(ep.consecutive_failures));
                qb.push(", ");
                qb.push_int(ep.cursor);
                qb.push(", ");
                qb.push_time(ep.created_at);
                qb.push(", ");
                qb.push_time(ep.updated_at);
                qb.push(")");
            }

            impl WebhookRepo for $store {
                async fn save_webhook(&self, ep: &WebhookEndpoint) -> StoreResult<()> {
                    let mut qb = Qb::new(
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
                    qb.build().execute(&self.write).await.map_err(interpret)?;
                    Ok(())
                }

                async fn webhooks(&self, ws: WorkspaceId) -> StoreResult<Vec<WebhookEndpoint>> {
                    let mut qb = Qb::new(ENDPOINT_COLUMNS);
                    qb.push("workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" ORDER BY created_at, id");
                    let rows = qb.build().fetch_all(&self.read).await.map_err(interpret)?;
                    rows.iter().map(endpoint_from_row).collect::<Result<_, _>>().map_err(interpret)
                }

                async fn webhook(&self, ws: WorkspaceId, id: Uuid) -> StoreResult<Option<WebhookEndpoint>> {
                    let mut qb = Qb::new(ENDPOINT_COLUMNS);
                    qb.push("workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND id = ");
                    qb.push_uuid(id);
                    let row = qb.build().fetch_optional(&self.read).await.map_err(interpret)?;
                    row.as_ref().map(endpoint_from_row).transpose().map_err(interpret)
                }

                async fn delete_webhook(&self, ws: WorkspaceId, id: Uuid) -> StoreResult<bool> {
                    let mut qb = Qb::new("DELETE FROM webhook_endpoints WHERE workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND id = ");
                    qb.push_uuid(id);
                    let done = qb.build().execute(&self.write).await.map_err(interpret)?;
                    Ok(done.rows_affected() > 0)
                }

                async fn enabled_webhooks(&self) -> StoreResult<Vec<WebhookEndpoint>> {
                    let mut qb = Qb::new(ENDPOINT_COLUMNS);
                    qb.push("enabled = 1 ORDER BY workspace_id, id");
                    let rows = qb.build().fetch_all(&self.read).await.map_err(interpret)?;
                    rows.iter().map(endpoint_from_row).collect::<Result<_, _>>().map_err(interpret)
                }

                async fn advance_webhook(&self, ws: WorkspaceId, id: Uuid, from: i64, to: i64) -> StoreResult<bool> {
                    let mut qb = Qb::new("UPDATE webhook_endpoints SET cursor = ");
                    qb.push_int(to);
                    qb.push(" WHERE workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND id = ");
                    qb.push_uuid(id);
                    qb.push(" AND cursor = ");
                    qb.push_int(from);
                    let done = qb.build().execute(&self.write).await.map_err(interpret)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn record_delivery(&self, d: &WebhookDelivery) -> StoreResult<()> {
                    let mut tx = self.write.begin().await.map_err(interpret)?;
                    let mut qb = Qb::new(
                        "INSERT INTO webhook_deliveries (workspace_id, endpoint_id, event_seq, event_type, attempt, \
                         status, response_body, error, duration_ms, succeeded, created_at) VALUES (",
                    );
                    qb.push_uuid(d.workspace_id.as_uuid());
                    qb.push(", ");
                    qb.push_uuid(d.endpoint_id);
                    qb.push(", ");
                    qb.push_int(d.event_seq);
                    qb.push(", ");
                    qb.push_text(d.event_type.clone());
                    qb.push(", ");
                    qb.push_int(i64::from(d.attempt));
                    qb.push(", ");
                    match d.status {
                        Some(s) => qb.push_int(i64::from(s)),
                        None => qb.push_null(),
                    }
                    qb.push(", ");
                    qb.push_opt_text(d.response_body.clone());
                    qb.push(", ");
                    qb.push_opt_text(d.error.clone());
                    qb.push(", ");
                    qb.push_int(i64::from(d.duration_ms));
                    qb.push(", ");
                    qb.push_int(i64::from(d.succeeded));
                    qb.push(", ");
                    qb.push_time(d.at);
                    qb.push(")");
                    qb.build().execute(&mut *tx).await.map_err(interpret)?;
                    if d.succeeded {
                        let mut qb = Qb::new("UPDATE webhook_endpoints SET consecutive_failures = 0 WHERE workspace_id = ");
                        qb.push_uuid(d.workspace_id.as_uuid());
                        qb.push(" AND id = ");
                        qb.push_uuid(d.endpoint_id);
                        qb.build().execute(&mut *tx).await.map_err(interpret)?;
                    }
                    tx.commit().await.map_err(interpret)
                }

                async fn webhook_dead(
                    &self,
                    ws: WorkspaceId,
                    id: Uuid,
                    threshold: u32,
                    at: Timestamp,
                ) -> StoreResult<Vec<Event>> {
                    let mut tx = self.write.begin().await.map_err(interpret)?;
                    let mut qb = Qb::new(
                        "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1 WHERE workspace_id = ",
                    );
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND id = ");
                    qb.push_uuid(id);
                    qb.push(" RETURNING consecutive_failures, enabled");
                    let Some(row) = qb.build().fetch_optional(&mut *tx).await.map_err(interpret)? else {
                        return Ok(Vec::new());
                    };
                    let failures: i64 = row.try_get(0).map_err(interpret)?;
                    let enabled: i64 = row.try_get(1).map_err(interpret)?;
                    if enabled == 0 || failures < i64::from(threshold) {
                        tx.commit().await.map_err(interpret)?;
                        return Ok(Vec::new());
                    }
                    let reason = format!("{failures} deliveries in a row failed every attempt");
                    let mut qb = Qb::new("UPDATE webhook_endpoints SET enabled = 0, disabled_reason = ");
                    qb.push_text(reason.clone());
                    qb.push(", disabled_at = ");
                    qb.push_time(at);
                    qb.push(", updated_at = ");
                    qb.push_time(at);
                    qb.push(" WHERE workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND id = ");
                    qb.push_uuid(id);
                    qb.build().execute(&mut *tx).await.map_err(interpret)?;
                    let event = NewEvent {
                        workspace_id: ws,
                        kind: WEBHOOK_DISABLED,
                        subject_id: Some(id),
                        payload: serde_json::json!({
                            "endpointId": id.to_string(),
                            "reason": reason,
                            "consecutiveFailures": failures,
                        }),
                        at,
                    };
                    let events = super::event_repo::append(&mut tx, &[event]).await?;
                    tx.commit().await.map_err(interpret)?;
                    Ok(events)
                }

                async fn prune_deliveries(&self, before: Timestamp) -> StoreResult<u64> {
                    let mut qb = Qb::new("DELETE FROM webhook_deliveries WHERE created_at < ");
                    qb.push_time(before);
                    let done = qb.build().execute(&self.write).await.map_err(interpret)?;
                    Ok(done.rows_affected())
                }

                async fn deliveries(
                    &self,
                    ws: WorkspaceId,
                    endpoint: Uuid,
                    before: Option<i64>,
                    limit: u32,
                ) -> StoreResult<Vec<WebhookDelivery>> {
                    let mut qb = Qb::new(
                        "SELECT id, workspace_id, endpoint_id, event_seq, event_type, attempt, status, response_body, \
                         error, duration_ms, succeeded, created_at FROM webhook_deliveries WHERE workspace_id = ",
                    );
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND endpoint_id = ");
                    qb.push_uuid(endpoint);
                    if let Some(before) = before {
                        qb.push(" AND id < ");
                        qb.push_int(before);
                    }
                    qb.push(" ORDER BY id DESC LIMIT ");
                    qb.push_int(i64::from(limit));
                    let rows = qb.build().fetch_all(&self.read).await.map_err(interpret)?;
                    rows.iter().map(delivery_from_row).collect::<Result<_, _>>().map_err(interpret)
                }
            }
        }
    };
}
pub(crate) use impl_webhook_repo;
