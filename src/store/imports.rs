//! Imports' persistence shared by both backends, stamped out per backend by
//! `impl_import_repo!` like `repo::impl_repos!`. It reuses the backend's bulk path
//! (`append_leads`: COPY on PostgreSQL, multi-row INSERTs on SQLite) and the shared
//! `update_one`, `bump_counts` and event `append`.
//!
//! `commit_import_chunk` is what makes an import resumable: a chunk's leads, its error rows,
//! the counters, the checkpoint and its `import.progress` event commit together, and only if
//! the stored checkpoint is still the one the chunk started from, so two runners of one
//! import (a job delivered twice) cannot both write a chunk.

macro_rules! impl_import_repo {
    ($store:ty) => {
        pub(super) mod import_repo {
            use super::event_repo::append as append_events;
            use super::{append_leads, bump_counts, leads_from_rows, read_opt_time, read_time, update_one};
            use sqlx::Row as _;
            use $crate::domain::{
                EmailAddress, EmailHash, Event, IMPORT_FINISHED, IMPORT_PROGRESS, Import, ImportCheckpoint,
                ImportCounts, ImportErrorRow, ImportId, ImportStatus, JobId, Lead, Timestamp, WorkspaceId,
            };
            use $crate::store::repo::interpret;
            use $crate::store::sql::{self, KeyValue, SqlBuilder, push_newest_first};
            use $crate::store::{ImportChunk, ImportRepo, StoreError, StoreResult};

            type Qb = sqlx::QueryBuilder<super::Db>;
            type Row = <super::Db as sqlx::Database>::Row;
            type Conn = <super::Db as sqlx::Database>::Connection;

            /// Columns of `imports` in the order `import_from_row` reads them.
            const IMPORT_COLUMNS: &str = "id, workspace_id, status, format, options, source_name, rows_done, \
                 byte_offset, prefix_sha256, created, updated, unchanged, skipped_existing, duplicates_in_file, \
                 invalid, blocked, job_id, error, created_at, updated_at, started_at, finished_at";
            /// Error rows per multi-row INSERT (7 columns each), under SQLite's bind limit.
            const ERROR_CHUNK: usize = 4_000;

            fn count(r: &Row, i: usize) -> Result<u64, sqlx::Error> {
                Ok(r.try_get::<i64, _>(i)?.max(0) as u64)
            }

            fn import_from_row(r: &Row) -> Result<Import, sqlx::Error> {
                let status: String = r.try_get(2)?;
                let options: String = r.try_get(4)?;
                Ok(Import {
                    id: ImportId::from_uuid(r.try_get(0)?),
                    workspace_id: WorkspaceId::from_uuid(r.try_get(1)?),
                    status: ImportStatus::parse(&status)
                        .ok_or_else(|| sqlx::Error::Decode(format!("unknown import status {status}").into()))?,
                    format: r.try_get(3)?,
                    options: serde_json::from_str(&options).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                    source_name: r.try_get(5)?,
                    checkpoint: ImportCheckpoint {
                        rows_done: count(r, 6)?,
                        byte_offset: count(r, 7)?,
                        prefix_sha256: r.try_get(8)?,
                    },
                    counts: ImportCounts {
                        created: count(r, 9)?,
                        updated: count(r, 10)?,
                        unchanged: count(r, 11)?,
                        skipped_existing: count(r, 12)?,
                        duplicates_in_file: count(r, 13)?,
                        invalid: count(r, 14)?,
                        blocked: count(r, 15)?,
                    },
                    job_id: r.try_get::<Option<i64>, _>(16)?.map(JobId),
                    error: r.try_get(17)?,
                    created_at: read_time(r, 18)?,
                    updated_at: read_time(r, 19)?,
                    started_at: read_opt_time(r, 20)?,
                    finished_at: read_opt_time(r, 21)?,
                })
            }

            fn push_opt_time(qb: &mut Qb, t: Option<Timestamp>) {
                match t {
                    Some(t) => qb.push_time(t),
                    None => qb.push_null(),
                }
            }

            /// Writes every mutable column of `import`; with `expect_rows_done`, only if the
            /// stored checkpoint is still that one (`VersionMismatch` otherwise).
            async fn write_import(conn: &mut Conn, import: &Import, expect_rows_done: Option<u64>) -> StoreResult<()> {
                let mut qb = Qb::new("UPDATE imports SET status = ");
                qb.push_text(import.status.as_str().to_owned());
                let ints: [(&str, u64); 9] = [
                    ("rows_done", import.checkpoint.rows_done),
                    ("byte_offset", import.checkpoint.byte_offset),
                    ("created", import.counts.created),
                    ("updated", import.counts.updated),
                    ("unchanged", import.counts.unchanged),
                    ("skipped_existing", import.counts.skipped_existing),
                    ("duplicates_in_file", import.counts.duplicates_in_file),
                    ("invalid", import.counts.invalid),
                    ("blocked", import.counts.blocked),
                ];
                for (column, value) in ints {
                    qb.push(", ").push(column).push(" = ");
                    qb.push_int(value as i64);
                }
                // set once by `set_import_job`; a runner that read the import before never clears it
                if let Some(job) = import.job_id {
                    qb.push(", job_id = ");
                    qb.push_int(job.0);
                }
                qb.push(", prefix_sha256 = ");
                qb.push_text(import.checkpoint.prefix_sha256.clone());
                qb.push(", error = ");
                qb.push_opt_text(import.error.clone());
                qb.push(", updated_at = ");
                qb.push_time(import.updated_at);
                qb.push(", started_at = ");
                push_opt_time(&mut qb, import.started_at);
                qb.push(", finished_at = ");
                push_opt_time(&mut qb, import.finished_at);
                qb.push(" WHERE workspace_id = ");
                qb.push_uuid(import.workspace_id.as_uuid());
                qb.push(" AND id = ");
                qb.push_uuid(import.id.as_uuid());
                if let Some(expected) = expect_rows_done {
                    qb.push(" AND rows_done = ");
                    qb.push_int(expected as i64);
                }
                let done = qb.build().execute(&mut *conn).await.map_err(interpret)?;
                if done.rows_affected() == 0 {
                    return Err(if expect_rows_done.is_some() {
                        StoreError::VersionMismatch
                    } else {
                        StoreError::NotFound
                    });
                }
                Ok(())
            }

            async fn insert_errors(conn: &mut Conn, import: &Import, errors: &[ImportErrorRow]) -> StoreResult<()> {
                for chunk in errors.chunks(ERROR_CHUNK) {
                    let mut qb = Qb::new(
                        "INSERT INTO import_errors \
                         (workspace_id, import_id, row_number, seq, column_name, reason, email_hash) VALUES ",
                    );
                    for (i, e) in chunk.iter().enumerate() {
                        qb.push(if i == 0 { "(" } else { ", (" });
                        qb.push_uuid(import.workspace_id.as_uuid());
                        qb.push(", ");
                        qb.push_uuid(import.id.as_uuid());
                        qb.push(", ");
                        qb.push_int(e.row as i64);
                        qb.push(", ");
                        qb.push_int(i64::from(e.seq));
                        qb.push(", ");
                        qb.push_opt_text(e.column.clone());
                        qb.push(", ");
                        qb.push_text(e.reason.clone());
                        qb.push(", ");
                        qb.push_opt_text(e.email_hash.as_ref().map(|h| h.as_str().to_owned()));
                        qb.push(")");
                    }
                    // a chunk retried after a lost race writes its errors again: keep the first
                    qb.push(" ON CONFLICT DO NOTHING");
                    qb.build().execute(&mut *conn).await.map_err(interpret)?;
                }
                Ok(())
            }

            async fn delete_uploads(conn: &mut Conn, import: &Import) -> StoreResult<()> {
                let mut qb = Qb::new("DELETE FROM import_uploads WHERE import_id = ");
                qb.push_uuid(import.id.as_uuid());
                qb.push(" AND import_id IN (SELECT id FROM imports WHERE workspace_id = ");
                qb.push_uuid(import.workspace_id.as_uuid());
                qb.push(")");
                qb.build().execute(&mut *conn).await.map_err(interpret)?;
                Ok(())
            }

            impl ImportRepo for $store {
                async fn create_import(&self, import: &Import) -> StoreResult<()> {
                    let mut qb = Qb::new(
                        "INSERT INTO imports (id, workspace_id, status, format, options, source_name, \
                         created_at, updated_at) VALUES (",
                    );
                    qb.push_uuid(import.id.as_uuid());
                    qb.push(", ");
                    qb.push_uuid(import.workspace_id.as_uuid());
                    qb.push(", ");
                    qb.push_text(import.status.as_str().to_owned());
                    qb.push(", ");
                    qb.push_text(import.format.clone());
                    qb.push(", ");
                    qb.push_text(import.options.to_string());
                    qb.push(", ");
                    qb.push_text(import.source_name.clone());
                    qb.push(", ");
                    qb.push_time(import.created_at);
                    qb.push(", ");
                    qb.push_time(import.updated_at);
                    qb.push(")");
                    let mut tx = self.write.begin().await.map_err(interpret)?;
                    qb.build().execute(&mut *tx).await.map_err(interpret)?;
                    write_import(&mut tx, import, None).await?;
                    tx.commit().await.map_err(interpret)?;
                    Ok(())
                }

                async fn import(&self, ws: WorkspaceId, id: ImportId) -> StoreResult<Option<Import>> {
                    let mut qb = Qb::new(format!("SELECT {IMPORT_COLUMNS} FROM imports WHERE workspace_id = "));
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND id = ");
                    qb.push_uuid(id.as_uuid());
                    let row = qb.build().fetch_optional(&self.write).await.map_err(interpret)?;
                    row.as_ref().map(import_from_row).transpose().map_err(interpret)
                }

                async fn imports(
                    &self,
                    ws: WorkspaceId,
                    before: Option<ImportId>,
                    limit: u32,
                ) -> StoreResult<Vec<Import>> {
                    let mut qb = Qb::new(format!("SELECT {IMPORT_COLUMNS} FROM imports WHERE workspace_id = "));
                    push_newest_first(&mut qb, ws, before.map(|b| b.as_uuid()), limit);
                    let rows = qb.build().fetch_all(&self.read).await.map_err(interpret)?;
                    rows.iter().map(|r| import_from_row(r).map_err(interpret)).collect()
                }

                async fn resumable_import(
                    &self,
                    ws: WorkspaceId,
                    format: &str,
                    options: &serde_json::Value,
                ) -> StoreResult<Option<Import>> {
                    let mut qb = Qb::new(format!("SELECT {IMPORT_COLUMNS} FROM imports WHERE workspace_id = "));
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND status IN ('running', 'interrupted') AND job_id IS NULL AND format = ");
                    qb.push_text(format.to_owned());
                    qb.push(" AND options = ");
                    qb.push_text(options.to_string());
                    qb.push(" ORDER BY id DESC LIMIT 1");
                    let row = qb.build().fetch_optional(&self.write).await.map_err(interpret)?;
                    row.as_ref().map(import_from_row).transpose().map_err(interpret)
                }

                async fn save_import(&self, import: &Import) -> StoreResult<()> {
                    let mut conn = self.write.acquire().await.map_err(interpret)?;
                    write_import(&mut conn, import, None).await
                }

                async fn set_import_job(&self, ws: WorkspaceId, id: ImportId, job: JobId) -> StoreResult<()> {
                    let mut qb = Qb::new("UPDATE imports SET job_id = ");
                    qb.push_int(job.0);
                    qb.push(" WHERE workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND id = ");
                    qb.push_uuid(id.as_uuid());
                    qb.build().execute(&self.write).await.map_err(interpret)?;
                    Ok(())
                }

                async fn leads_by_emails(&self, ws: WorkspaceId, emails: &[EmailAddress]) -> StoreResult<Vec<Lead>> {
                    let mut found = Vec::with_capacity(emails.len());
                    // one statement per 10,000 emails: under both backends' bind limits
                    for chunk in emails.chunks(10_000) {
                        let keys = chunk.iter().map(|e| KeyValue::Text(e.as_str().to_owned()));
                        let rows = sql::select_in_query::<Qb>(ws, "l.email", keys)
                            .build()
                            .fetch_all(&self.read)
                            .await
                            .map_err(interpret)?;
                        found.extend(leads_from_rows(&rows)?);
                    }
                    Ok(found)
                }

                async fn commit_import_chunk(&self, chunk: &ImportChunk<'_>) -> StoreResult<Vec<Event>> {
                    let import = chunk.import;
                    let ws = import.workspace_id;
                    if chunk.created.iter().chain(chunk.updated.iter().map(|(l, _)| l)).any(|l| l.workspace_id != ws) {
                        return Err(StoreError::Config("import chunk mixes workspaces".into()));
                    }
                    let mut tx = self.write.begin().await.map_err(interpret)?;
                    write_import(&mut tx, import, Some(chunk.previous_rows_done)).await?;
                    if !chunk.created.is_empty() {
                        append_leads(&mut tx, chunk.created).await?;
                        let archived = chunk.created.iter().filter(|l| l.archived_at.is_some()).count() as i64;
                        bump_counts(&mut tx, ws, chunk.created.len() as i64 - archived, archived).await?;
                    }
                    for (lead, expected_version) in chunk.updated {
                        update_one(&mut tx, lead, *expected_version).await?;
                    }
                    insert_errors(&mut tx, import, chunk.errors).await?;
                    let events = append_events(&mut tx, &[import.event(IMPORT_PROGRESS, import.updated_at)]).await?;
                    tx.commit().await.map_err(interpret)?;
                    Ok(events)
                }

                async fn finish_import(&self, import: &Import) -> StoreResult<Vec<Event>> {
                    let mut tx = self.write.begin().await.map_err(interpret)?;
                    write_import(&mut tx, import, None).await?;
                    delete_uploads(&mut tx, import).await?;
                    let at = import.finished_at.unwrap_or(import.updated_at);
                    let events = append_events(&mut tx, &[import.event(IMPORT_FINISHED, at)]).await?;
                    tx.commit().await.map_err(interpret)?;
                    Ok(events)
                }

                async fn import_errors(
                    &self,
                    ws: WorkspaceId,
                    id: ImportId,
                    after: Option<(u64, u32)>,
                    limit: u32,
                ) -> StoreResult<Vec<ImportErrorRow>> {
                    let mut qb = Qb::new(
                        "SELECT row_number, CAST(seq AS BIGINT), column_name, reason, email_hash FROM import_errors \
                         WHERE workspace_id = ",
                    );
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND import_id = ");
                    qb.push_uuid(id.as_uuid());
                    if let Some((row, seq)) = after {
                        qb.push(" AND (row_number > ");
                        qb.push_int(row as i64);
                        qb.push(" OR (row_number = ");
                        qb.push_int(row as i64);
                        qb.push(" AND seq > ");
                        qb.push_int(i64::from(seq));
                        qb.push("))");
                    }
                    qb.push(" ORDER BY row_number, seq LIMIT ");
                    qb.push_int(i64::from(limit));
                    let rows = qb.build().fetch_all(&self.read).await.map_err(interpret)?;
                    rows.iter()
                        .map(|r| {
                            Ok(ImportErrorRow {
                                row: r.try_get::<i64, _>(0)?.max(0) as u64,
                                seq: r.try_get::<i64, _>(1)?.clamp(0, i64::from(u32::MAX)) as u32,
                                column: r.try_get(2)?,
                                reason: r.try_get(3)?,
                                email_hash: r.try_get::<Option<String>, _>(4)?.map(EmailHash::from_trusted),
                            })
                        })
                        .collect::<Result<_, sqlx::Error>>()
                        .map_err(interpret)
                }

                async fn save_import_upload(
                    &self,
                    ws: WorkspaceId,
                    id: ImportId,
                    seq: u32,
                    data: &[u8],
                ) -> StoreResult<()> {
                    let mut qb = Qb::new("INSERT INTO import_uploads (import_id, seq, data) SELECT id, ");
                    qb.push_int(i64::from(seq));
                    qb.push(", ");
                    qb.push_bind(data.to_vec());
                    qb.push(" FROM imports WHERE workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND id = ");
                    qb.push_uuid(id.as_uuid());
                    let done = qb.build().execute(&self.write).await.map_err(interpret)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    Ok(())
                }

                async fn import_upload(&self, ws: WorkspaceId, id: ImportId, seq: u32) -> StoreResult<Option<Vec<u8>>> {
                    let mut qb = Qb::new(
                        "SELECT u.data FROM import_uploads u JOIN imports i ON i.id = u.import_id \
                         WHERE i.workspace_id = ",
                    );
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND u.import_id = ");
                    qb.push_uuid(id.as_uuid());
                    qb.push(" AND u.seq = ");
                    qb.push_int(i64::from(seq));
                    let row = qb.build().fetch_optional(&self.read).await.map_err(interpret)?;
                    row.map(|r| r.try_get::<Vec<u8>, _>(0)).transpose().map_err(interpret)
                }
            }
        }
    };
}

pub(crate) use impl_import_repo;
