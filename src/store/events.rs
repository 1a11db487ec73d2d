//! The event log (outbox) shared by both backends, stamped out per backend by
//! `impl_event_repo!` like `repo::impl_repos!`; a backend provides `read_time` and
//! `notify_events` (PostgreSQL wakes other instances with `NOTIFY`, SQLite does nothing).
//!
//! `append` is called inside the transaction of the change an event describes. It takes the
//! workspace's next numbers from `workspaces.event_seq` with one `UPDATE … RETURNING`: the row
//! lock that takes on PostgreSQL (and the single writer on SQLite) makes a workspace's events
//! commit in the order of their numbers, so a reader that sees `n` has seen `1..n`.

macro_rules! impl_event_repo {
    ($store:ty) => {
        pub(super) mod event_repo {
            use super::{notify_events, read_time};
            use sqlx::Row as _;
            use $crate::domain::{Event, NewEvent, Timestamp, WorkspaceId};
            use $crate::store::repo::interpret;
            use $crate::store::sql::SqlBuilder;
            use $crate::store::{EventRepo, StoreError, StoreResult};

            type Qb = sqlx::QueryBuilder<super::Db>;
            type Row = <super::Db as sqlx::Database>::Row;
            type Conn = <super::Db as sqlx::Database>::Connection;

            /// Appends `events` within the caller's transaction and returns them numbered.
            pub(in $crate::store) async fn append(
                conn: &mut Conn,
                events: &[NewEvent],
            ) -> StoreResult<Vec<Event>> {
                let mut out = Vec::with_capacity(events.len());
                let mut rest = events;
                while let Some(first) = rest.first() {
                    let ws = first.workspace_id;
                    let n = rest.iter().take_while(|e| e.workspace_id == ws).count();
                    let (batch, tail) = rest.split_at(n);
                    rest = tail;
                    let mut qb = Qb::new("UPDATE workspaces SET event_seq = event_seq + ");
                    qb.push_int(n as i64);
                    qb.push(" WHERE id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" RETURNING event_seq");
                    let top: i64 = qb
                        .build()
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(interpret)?
                        .ok_or(StoreError::NotFound)?
                        .try_get(0)
                        .map_err(interpret)?;
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
                    for chunk in numbered.chunks(500) {
                        insert(conn, chunk).await?;
                    }
                    notify_events(conn, ws, top).await?;
                    out.extend(numbered);
                }
                Ok(out)
            }

            async fn insert(conn: &mut Conn, events: &[Event]) -> StoreResult<()> {
                let mut qb = Qb::new(
                    "INSERT INTO events (workspace_id, seq, type, subject_id, payload, created_at) VALUES ",
                );
                for (i, e) in events.iter().enumerate() {
                    qb.push(if i == 0 { "(" } else { ", (" });
                    qb.push_uuid(e.workspace_id.as_uuid());
                    qb.push(", ");
                    qb.push_int(e.seq);
                    qb.push(", ");
                    qb.push_text(e.kind.clone());
                    qb.push(", ");
                    match e.subject_id {
                        Some(id) => qb.push_uuid(id),
                        None => qb.push_null(),
                    }
                    qb.push(", ");
                    qb.push_text(e.payload.to_string());
                    qb.push(", ");
                    qb.push_time(e.at);
                    qb.push(")");
                }
                qb.build().execute(&mut *conn).await.map_err(interpret)?;
                Ok(())
            }

            fn event_from_row(r: &Row) -> Result<Event, sqlx::Error> {
                let payload: String = r.try_get(4)?;
                Ok(Event {
                    seq: r.try_get(0)?,
                    workspace_id: WorkspaceId::from_uuid(r.try_get(1)?),
                    kind: r.try_get(2)?,
                    subject_id: r.try_get(3)?,
                    payload: serde_json::from_str(&payload).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                    at: read_time(r, 5)?,
                })
            }

            impl EventRepo for $store {
                async fn append_events(&self, events: &[NewEvent]) -> StoreResult<Vec<Event>> {
                    let mut tx = self.write.begin().await.map_err(interpret)?;
                    let out = append(&mut tx, events).await?;
                    tx.commit().await.map_err(interpret)?;
                    Ok(out)
                }

                async fn events_after(
                    &self,
                    ws: WorkspaceId,
                    after: i64,
                    limit: u32,
                ) -> StoreResult<Vec<Event>> {
                    let mut qb = Qb::new(
                        "SELECT seq, workspace_id, type, subject_id, payload, created_at FROM events \
                         WHERE workspace_id = ",
                    );
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND seq > ");
                    qb.push_int(after);
                    qb.push(" ORDER BY seq LIMIT ");
                    qb.push_int(i64::from(limit));
                    let rows = qb.build().fetch_all(&self.read).await.map_err(interpret)?;
                    rows.iter()
                        .map(event_from_row)
                        .collect::<Result<_, _>>()
                        .map_err(interpret)
                }

                async fn event_heads(&self) -> StoreResult<Vec<(WorkspaceId, i64)>> {
                    let rows = sqlx::query("SELECT id, event_seq FROM workspaces")
                        .fetch_all(&self.read)
                        .await
                        .map_err(interpret)?;
                    rows.iter()
                        .map(|r| Ok((WorkspaceId::from_uuid(r.try_get(0)?), r.try_get(1)?)))
                        .collect::<Result<_, sqlx::Error>>()
                        .map_err(interpret)
                }

                async fn event_head(&self, ws: WorkspaceId) -> StoreResult<i64> {
                    let mut qb = Qb::new("SELECT event_seq FROM workspaces WHERE id = ");
                    qb.push_uuid(ws.as_uuid());
                    let row = qb
                        .build()
                        .fetch_optional(&self.read)
                        .await
                        .map_err(interpret)?;
                    Ok(match row {
                        Some(r) => r.try_get(0).map_err(interpret)?,
                        None => 0,
                    })
                }

                async fn prune_events(&self, before: Timestamp) -> StoreResult<u64> {
                    let mut qb = Qb::new("DELETE FROM events WHERE created_at < ");
                    qb.push_time(before);
                    let done = qb.build().execute(&self.write).await.map_err(interpret)?;
                    Ok(done.rows_affected())
                }
            }
        }
    };
}
pub(crate) use impl_event_repo;
