//! The repository implementations shared by both backends, stamped out per backend by
//! `impl_repos!` so that each gets concrete sqlx types and no generic executor bounds.
//!
//! A backend module provides: a store struct with `read` and `write` pools, `lead_from_row`,
//! `workspace_from_row`, `SqlBuilder` for its `QueryBuilder`, and the hot read path:
//! `fetch_leads`, `fetch_exists` and `fetch_ints` over a statement type of its choice (the
//! third macro argument), and the bulk path: `append_leads`, `SECONDARY_INDEXES`,
//! `begin_rebuild` and `finish_rebuild`; everything else is here.

use super::StoreError;

/// Interprets a sqlx error once: unique violations become `Conflict` naming the API field.
pub(crate) fn interpret(e: sqlx::Error) -> StoreError {
    if let Some(db) = e.as_database_error()
        && db.is_unique_violation()
    {
        let said = format!("{} {}", db.message(), db.constraint().unwrap_or_default());
        let field = if said.contains("email") {
            "email"
        } else if said.contains("slug") {
            "slug"
        } else {
            "id"
        };
        return StoreError::Conflict { field };
    }
    // a lead written for a workspace that does not exist (a token naming an unknown `ws`)
    if e.as_database_error()
        .is_some_and(|db| db.is_foreign_key_violation())
    {
        return StoreError::NotFound;
    }
    match e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        other => StoreError::Database(Box::new(other)),
    }
}

macro_rules! impl_repos {
    ($store:ty, $db:ty, $reads:ty) => {
        use sqlx::Row as _;
        use $crate::domain::{
            Cursor, EmailAddress, Event, LEAD_CREATED, Lead, LeadFilter, LeadId, LeadPatch, LeadQuery,
            NewEvent, Timestamp, Workspace, WorkspaceId,
        };
        use $crate::store::repo::interpret;
        use $crate::store::sql::{self, KeyValue, SqlBuilder};
        use $crate::store::{
            LeadCounts, LeadRepo, SettingsRepo, Side, StoreError, StoreResult, UpsertOutcome, WorkspaceRepo,
        };

        type Db = $db;
        /// Statements written through sqlx.
        type Qb = sqlx::QueryBuilder<Db>;
        /// Statements for the hot read path (`fetch_leads`, `fetch_exists`, `fetch_ints`).
        type Rb = $reads;

        fn leads_from_rows(rows: &[<Db as sqlx::Database>::Row]) -> StoreResult<Vec<Lead>> {
            rows.iter()
                .map(|r| lead_from_row(r).map_err(interpret))
                .collect()
        }

        /// Adds to the maintained counts of a workspace.
        async fn bump_counts(
            conn: &mut <Db as sqlx::Database>::Connection,
            ws: WorkspaceId,
            active: i64,
            archived: i64,
        ) -> StoreResult<()> {
            if active == 0 && archived == 0 {
                return Ok(());
            }
            let mut qb = Qb::new("UPDATE workspaces SET lead_count = lead_count + ");
            qb.push_int(active);
            qb.push(", archived_lead_count = archived_lead_count + ");
            qb.push_int(archived);
            qb.push(" WHERE id = ");
            qb.push_uuid(ws.as_uuid());
            qb.build().execute(conn).await.map_err(interpret)?;
            Ok(())
        }

        async fn insert_tags(
            conn: &mut <Db as sqlx::Database>::Connection,
            leads: &[&Lead],
        ) -> StoreResult<()> {
            let rows = sql::tag_rows(leads.iter().copied());
            for chunk in rows.chunks(sql::TAG_CHUNK) {
                sql::insert_tags_query::<Qb>(chunk)
                    .build()
                    .execute(&mut *conn)
                    .await
                    .map_err(interpret)?;
            }
            Ok(())
        }

        async fn replace_tags(conn: &mut <Db as sqlx::Database>::Connection, lead: &Lead) -> StoreResult<()> {
            let mut qb = Qb::new("DELETE FROM lead_tags WHERE lead_id = ");
            qb.push_uuid(lead.id.as_uuid());
            qb.build().execute(&mut *conn).await.map_err(interpret)?;
            insert_tags(conn, &[lead]).await
        }

        async fn insert_one(conn: &mut <Db as sqlx::Database>::Connection, lead: &Lead) -> StoreResult<()> {
            let mut qb = Qb::new(sql::INSERT_LEAD);
            qb.push("VALUES ");
            sql::push_lead_values(&mut qb, lead);
            qb.build().execute(&mut *conn).await.map_err(interpret)?;
            insert_tags(conn, &[lead]).await
        }

        /// The compare-and-set update, telling a vanished lead from a stale version.
        async fn update_one(
            conn: &mut <Db as sqlx::Database>::Connection,
            lead: &Lead,
            expected_version: i64,
        ) -> StoreResult<()> {
            let done = sql::update_query::<Qb>(lead, expected_version)
                .build()
                .execute(&mut *conn)
                .await
                .map_err(interpret)?;
            if done.rows_affected() == 0 {
                let mut qb = Qb::new("SELECT 1 FROM leads WHERE workspace_id = ");
                qb.push_uuid(lead.workspace_id.as_uuid());
                qb.push(" AND id = ");
                qb.push_uuid(lead.id.as_uuid());
                let exists = qb
                    .build()
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(interpret)?;
                return Err(if exists.is_some() {
                    StoreError::VersionMismatch
                } else {
                    StoreError::NotFound
                });
            }
            replace_tags(conn, lead).await
        }

        /// Drops the secondary indexes that `SECONDARY_INDEXES` lists; returns the statements
        /// that recreate them.
        async fn drop_secondary_indexes(
            conn: &mut <Db as sqlx::Database>::Connection,
        ) -> StoreResult<Vec<String>> {
            begin_rebuild(conn).await?;
            let rows = sqlx::query(SECONDARY_INDEXES)
                .fetch_all(&mut *conn)
                .await
                .map_err(interpret)?;
            let mut creates = Vec::with_capacity(rows.len());
            for row in rows {
                let name: String = row.try_get(0).map_err(interpret)?;
                creates.push(row.try_get::<String, _>(1).map_err(interpret)?);
                let drop = format!("DROP INDEX \"{}\"", name.replace('"', "\"\""));
                sqlx::query(sqlx::AssertSqlSafe(drop))
                    .execute(&mut *conn)
                    .await
                    .map_err(interpret)?;
            }
            Ok(creates)
        }

        fn counts_of(leads: &[&Lead]) -> (i64, i64) {
            let archived = leads.iter().filter(|l| l.archived_at.is_some()).count() as i64;
            (leads.len() as i64 - archived, archived)
        }

        impl WorkspaceRepo for $store {
            async fn create_workspace(&self, ws: &Workspace) -> StoreResult<()> {
                let mut qb = Qb::new("INSERT INTO workspaces (id, slug, name, created_at) VALUES (");
                qb.push_uuid(ws.id.as_uuid());
                qb.push(", ");
                qb.push_text(ws.slug.as_str().to_owned());
                qb.push(", ");
                qb.push_text(ws.name.clone());
                qb.push(", ");
                qb.push_time(ws.created_at);
                qb.push(")");
                qb.build().execute(&self.write).await.map_err(interpret)?;
                Ok(())
            }

            async fn workspace(&self, id: WorkspaceId) -> StoreResult<Option<Workspace>> {
                let mut qb = Qb::new("SELECT id, slug, name, created_at FROM workspaces WHERE id = ");
                qb.push_uuid(id.as_uuid());
                let row = qb
                    .build()
                    .fetch_optional(&self.read)
                    .await
                    .map_err(interpret)?;
                row.as_ref()
                    .map(workspace_from_row)
                    .transpose()
                    .map_err(interpret)
            }

            async fn workspace_by_slug(&self, slug: &str) -> StoreResult<Option<Workspace>> {
                let mut qb = Qb::new("SELECT id, slug, name, created_at FROM workspaces WHERE slug = ");
                qb.push_text(slug.to_owned());
                let row = qb
                    .build()
                    .fetch_optional(&self.read)
                    .await
                    .map_err(interpret)?;
                row.as_ref()
                    .map(workspace_from_row)
                    .transpose()
                    .map_err(interpret)
            }

            async fn list_workspaces(&self) -> StoreResult<Vec<Workspace>> {
                let rows = sqlx::query("SELECT id, slug, name, created_at FROM workspaces ORDER BY slug")
                    .fetch_all(&self.read)
                    .await
                    .map_err(interpret)?;
                rows.iter()
                    .map(|r| workspace_from_row(r).map_err(interpret))
                    .collect()
            }

            async fn lead_counts(&self, ws: WorkspaceId) -> StoreResult<LeadCounts> {
                let mut qb = Qb::new("SELECT lead_count, archived_lead_count FROM workspaces WHERE id = ");
                qb.push_uuid(ws.as_uuid());
                let row = qb
                    .build()
                    .fetch_optional(&self.read)
                    .await
                    .map_err(interpret)?;
                let Some(row) = row else {
                    return Ok(LeadCounts::default());
                };
                let active: i64 = row.try_get(0).map_err(interpret)?;
                let archived: i64 = row.try_get(1).map_err(interpret)?;
                Ok(LeadCounts {
                    active: active.max(0) as u64,
                    archived: archived.max(0) as u64,
                })
            }
        }

        impl SettingsRepo for $store {
            async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
                let mut qb = Qb::new("SELECT value FROM settings WHERE key = ");
                qb.push_text(key.to_owned());
                let row = qb
                    .build()
                    .fetch_optional(&self.read)
                    .await
                    .map_err(interpret)?;
                row.map(|r| r.try_get::<String, _>(0))
                    .transpose()
                    .map_err(interpret)
            }

            async fn setting_or_insert(&self, key: &str, value: &str) -> StoreResult<String> {
                let mut qb = Qb::new("INSERT INTO settings (key, value) VALUES (");
                qb.push_text(key.to_owned());
                qb.push(", ");
                qb.push_text(value.to_owned());
                qb.push(") ON CONFLICT (key) DO NOTHING");
                qb.build().execute(&self.write).await.map_err(interpret)?;
                let mut qb = Qb::new("SELECT value FROM settings WHERE key = ");
                qb.push_text(key.to_owned());
                let row = qb.build().fetch_one(&self.write).await.map_err(interpret)?;
                row.try_get::<String, _>(0).map_err(interpret)
            }
        }

        impl LeadRepo for $store {
            async fn lead(&self, ws: WorkspaceId, id: LeadId) -> StoreResult<Option<Lead>> {
                let mut found = self.leads_by_ids(ws, &[id]).await?;
                Ok(found.pop())
            }

            async fn leads_by_ids(&self, ws: WorkspaceId, ids: &[LeadId]) -> StoreResult<Vec<Lead>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let keys = ids.iter().map(|id| KeyValue::Uuid(id.as_uuid()));
                self.fetch_leads(sql::select_in_query::<Rb>(ws, "l.id", keys))
                    .await
            }

            async fn list_leads(&self, ws: WorkspaceId, query: &LeadQuery) -> StoreResult<Vec<Lead>> {
                self.fetch_leads(sql::page_query::<Rb>(ws, query, false))
                    .await
            }

            async fn list_leads_counted(
                &self,
                ws: WorkspaceId,
                query: &LeadQuery,
            ) -> StoreResult<(Vec<Lead>, Option<LeadCounts>)> {
                let (leads, counts) = self
                    .fetch_leads_counted(sql::page_query::<Rb>(ws, query, true))
                    .await?;
                let counts = counts.map(|(active, archived)| LeadCounts {
                    active: active.max(0) as u64,
                    archived: archived.max(0) as u64,
                });
                Ok((leads, counts))
            }

            async fn any_lead_beside(
                &self,
                ws: WorkspaceId,
                filter: &LeadFilter,
                cursor: &Cursor,
                side: Side,
            ) -> StoreResult<bool> {
                self.fetch_exists(sql::beside_query::<Rb>(ws, filter, cursor, side))
                    .await
            }

            async fn count_leads(&self, ws: WorkspaceId, filter: &LeadFilter, cap: u64) -> StoreResult<u64> {
                let row = self
                    .fetch_ints(sql::count_query::<Rb>(ws, filter, cap))
                    .await?;
                Ok(row.first().copied().unwrap_or_default().max(0) as u64)
            }

            async fn insert_lead(&self, lead: &Lead) -> StoreResult<Vec<Event>> {
                let mut tx = self.write.begin().await.map_err(interpret)?;
                insert_one(&mut tx, lead).await?;
                let (active, archived) = counts_of(&[lead]);
                bump_counts(&mut tx, lead.workspace_id, active, archived).await?;
                let events =
                    event_repo::append(&mut tx, &[NewEvent::lead_change(LEAD_CREATED, lead, &[])]).await?;
                tx.commit().await.map_err(interpret)?;
                Ok(events)
            }

            async fn update_lead(&self, lead: &Lead, previous: &Lead) -> StoreResult<Vec<Event>> {
                let mut tx = self.write.begin().await.map_err(interpret)?;
                update_one(&mut tx, lead, previous.version).await?;
                let delta = match (previous.archived_at.is_some(), lead.archived_at.is_some()) {
                    (false, true) => (-1, 1),
                    (true, false) => (1, -1),
                    _ => (0, 0),
                };
                bump_counts(&mut tx, lead.workspace_id, delta.0, delta.1).await?;
                let events =
                    event_repo::append(&mut tx, &[NewEvent::lead_transition(previous, lead)]).await?;
                tx.commit().await.map_err(interpret)?;
                Ok(events)
            }

            async fn upsert_leads(
                &self,
                ws: WorkspaceId,
                items: &[(EmailAddress, LeadPatch)],
                at: Timestamp,
            ) -> StoreResult<(Vec<UpsertOutcome>, Vec<Event>)> {
                let mut tx = self.write.begin().await.map_err(interpret)?;
                let mut known: std::collections::HashMap<String, Lead> = std::collections::HashMap::new();
                if !items.is_empty() {
                    let keys = items
                        .iter()
                        .map(|(e, _)| KeyValue::Text(e.as_str().to_owned()));
                    let rows = sql::select_in_query::<Qb>(ws, "l.email", keys)
                        .build()
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(interpret)?;
                    for lead in leads_from_rows(&rows)? {
                        if let Some(email) = &lead.email {
                            known.insert(email.as_str().to_owned(), lead.clone());
                        }
                    }
                }
                let mut outcomes = Vec::with_capacity(items.len());
                let mut created = Vec::new();
                // each updated lead as it was before this upsert, for its event
                let mut previous: std::collections::HashMap<LeadId, Lead> = std::collections::HashMap::new();
                for (email, patch) in items {
                    match known.get(email.as_str()) {
                        Some(existing) => {
                            let mut lead = existing.clone();
                            if lead.apply(patch) {
                                lead.updated_at = at;
                                lead.version = existing.version + 1;
                                update_one(&mut tx, &lead, existing.version).await?;
                                previous.entry(lead.id).or_insert_with(|| existing.clone());
                                known.insert(email.as_str().to_owned(), lead.clone());
                                outcomes.push(UpsertOutcome::Updated(lead));
                            } else {
                                outcomes.push(UpsertOutcome::Unchanged(lead));
                            }
                        }
                        None => {
                            let mut lead = Lead::new(ws, at);
                            lead.apply(patch);
                            lead.email = Some(email.clone());
                            insert_one(&mut tx, &lead).await?;
                            known.insert(email.as_str().to_owned(), lead.clone());
                            created.push(lead.clone());
                            outcomes.push(UpsertOutcome::Created(lead));
                        }
                    }
                }
                bump_counts(&mut tx, ws, created.len() as i64, 0).await?;
                let events: Vec<NewEvent> = outcomes
                    .iter()
                    .filter_map(|o| match o {
                        UpsertOutcome::Created(lead) => Some(NewEvent::lead_change(LEAD_CREATED, lead, &[])),
                        UpsertOutcome::Updated(lead) => {
                            let before = &previous[&lead.id];
                            Some(NewEvent::lead_transition(before, lead))
                        }
                        UpsertOutcome::Unchanged(_) => None,
                    })
                    .collect();
                let events = event_repo::append(&mut tx, &events).await?;
                tx.commit().await.map_err(interpret)?;
                Ok((outcomes, events))
            }

            async fn insert_leads_bulk(&self, ws: WorkspaceId, leads: &[Lead]) -> StoreResult<u64> {
                if leads.iter().any(|l| l.workspace_id != ws) {
                    return Err(StoreError::Config("bulk insert mixes workspaces".into()));
                }
                let mut tx = self.write.begin().await.map_err(interpret)?;
                append_leads(&mut tx, leads).await?;
                let all: Vec<&Lead> = leads.iter().collect();
                let (active, archived) = counts_of(&all);
                bump_counts(&mut tx, ws, active, archived).await?;
                tx.commit().await.map_err(interpret)?;
                Ok(leads.len() as u64)
            }

            async fn load_leads<F, P>(
                &self,
                ws: WorkspaceId,
                total: u64,
                rebuild_indexes: bool,
                mut next_chunk: F,
                mut progress: P,
            ) -> StoreResult<u64>
            where
                F: FnMut(usize) -> Vec<Lead> + Send,
                P: FnMut(u64) + Send,
            {
                const CHUNK: u64 = 20_000;
                let mut tx = self.write.begin().await.map_err(interpret)?;
                let rebuild = if rebuild_indexes {
                    drop_secondary_indexes(&mut tx).await?
                } else {
                    Vec::new()
                };
                let (mut done, mut active, mut archived) = (0u64, 0i64, 0i64);
                while done < total {
                    let chunk = next_chunk((total - done).min(CHUNK) as usize);
                    if chunk.is_empty() {
                        break;
                    }
                    if chunk.iter().any(|l| l.workspace_id != ws) {
                        return Err(StoreError::Config("bulk load mixes workspaces".into()));
                    }
                    append_leads(&mut tx, &chunk).await?;
                    let (a, r) = counts_of(&chunk.iter().collect::<Vec<_>>());
                    active += a;
                    archived += r;
                    done += chunk.len() as u64;
                    progress(done);
                }
                if !rebuild.is_empty() {
                    for create in rebuild {
                        sqlx::query(sqlx::AssertSqlSafe(create))
                            .execute(&mut *tx)
                            .await
                            .map_err(interpret)?;
                    }
                    finish_rebuild(&mut tx).await?;
                }
                bump_counts(&mut tx, ws, active, archived).await?;
                tx.commit().await.map_err(interpret)?;
                Ok(done)
            }
        }
    };
}

pub(crate) use impl_repos;
