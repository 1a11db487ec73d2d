//! Imports' persistence: their records and checkpoints, error reports and uploaded files. It
//! reuses the leads' bulk path (`append_leads`: COPY on PostgreSQL, multi-row INSERTs on
//! SQLite), `update_many` (staged compare-and-set updates) and the event log's `append_events`.
//!
//! `commit_import_chunk` is what makes an import resumable: a chunk's leads, its error rows,
//! the counters, the checkpoint and its `import.progress` event commit together, and only if
//! the stored checkpoint is still the one the chunk started from, so two runners of one
//! import (a job delivered twice) cannot both write a chunk.
//!
//! **Uploads and the CLI never share an import.** `imports.job_id` is written only by
//! `set_import_job` (right after the enqueue) and never cleared by a runner; the CLI resumes only
//! imports with no job, so it never picks up an upload's import.

use super::dialect::{Conn, Row};
use super::events::append_events;
use super::keyset::KeyOrder;
use super::leads::{append_leads, bump, counts_of, update_many};
use super::sql;
use super::{ImportChunk, Store, StoreError, StoreResult};
use crate::domain::Direction;
use crate::domain::{
    EmailAddress, EmailHash, Event, IMPORT_FINISHED, IMPORT_PROGRESS, Import, ImportCheckpoint, ImportCounts,
    ImportErrorRow, ImportId, ImportStatus, JobId, KeysetPage, Lead, Paged, WorkspaceId,
};

/// Columns of `imports` in the order `import_from_row` reads them.
const IMPORT_COLUMNS: &str = "id, workspace_id, status, format, options, source_name, rows_done, \
     byte_offset, prefix_sha256, created, updated, unchanged, skipped_existing, duplicates_in_file, \
     invalid, blocked, job_id, error, created_at, updated_at, started_at, finished_at";
/// Error rows per multi-row INSERT (7 columns each), under SQLite's bind limit.
const ERROR_CHUNK: usize = 4_000;

fn count(r: &Row, i: usize) -> StoreResult<u64> {
    Ok(r.get::<i64>(i)?.max(0) as u64)
}

fn import_from_row(r: &Row) -> StoreResult<Import> {
    let status: String = r.get(2)?;
    let options: String = r.get(4)?;
    Ok(Import {
        id: ImportId::from_uuid(r.get(0)?),
        workspace_id: WorkspaceId::from_uuid(r.get(1)?),
        status: ImportStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt(format!("unknown import status {status}")))?,
        format: r.get(3)?,
        options: serde_json::from_str(&options).map_err(|e| StoreError::corrupt(e.to_string()))?,
        source_name: r.get(5)?,
        checkpoint: ImportCheckpoint {
            rows_done: count(r, 6)?,
            byte_offset: count(r, 7)?,
            prefix_sha256: r.get(8)?,
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
        job_id: r.get::<Option<i64>>(16)?.map(JobId::from_i64),
        error: r.get(17)?,
        created_at: r.get(18)?,
        updated_at: r.get(19)?,
        started_at: r.get(20)?,
        finished_at: r.get(21)?,
    })
}

/// Writes every mutable column of `import`; with `expect_rows_done`, only if the
/// stored checkpoint is still that one (`VersionMismatch` otherwise).
async fn write_import(conn: &mut Conn, import: &Import, expect_rows_done: Option<u64>) -> StoreResult<()> {
    let mut qb = conn.sql("UPDATE imports SET status = ");
    qb.bind(import.status.as_str().to_owned());
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
        qb.bind(value as i64);
    }
    // set once by `set_import_job`; a runner that read the import before never clears it
    if let Some(job) = import.job_id {
        qb.push(", job_id = ");
        qb.bind(job.as_i64());
    }
    qb.push(", prefix_sha256 = ");
    qb.bind(import.checkpoint.prefix_sha256.clone());
    qb.push(", error = ");
    qb.bind(import.error.clone());
    qb.push(", updated_at = ");
    qb.bind(import.updated_at);
    qb.push(", started_at = ");
    qb.bind(import.started_at);
    qb.push(", finished_at = ");
    qb.bind(import.finished_at);
    qb.push(" WHERE workspace_id = ");
    qb.bind(import.workspace_id);
    qb.push(" AND id = ");
    qb.bind(import.id);
    if let Some(expected) = expect_rows_done {
        qb.push(" AND rows_done = ");
        qb.bind(expected as i64);
    }
    let done = conn.execute(qb).await?;
    if done == 0 {
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
        let mut qb = conn.sql(
            "INSERT INTO import_errors \
             (workspace_id, import_id, row_number, seq, column_name, reason, email_hash) VALUES ",
        );
        for (i, e) in chunk.iter().enumerate() {
            qb.push(if i == 0 { "(" } else { ", (" });
            qb.bind(import.workspace_id);
            qb.push(", ");
            qb.bind(import.id);
            qb.push(", ");
            qb.bind(e.row as i64);
            qb.push(", ");
            qb.bind(i64::from(e.seq));
            qb.push(", ");
            qb.bind(e.column.clone());
            qb.push(", ");
            qb.bind(e.reason.clone());
            qb.push(", ");
            qb.bind(e.email_hash.as_ref().map(|h| h.as_str().to_owned()));
            qb.push(")");
        }
        // a chunk retried after a lost race writes its errors again: keep the first
        qb.push(" ON CONFLICT DO NOTHING");
        conn.execute(qb).await?;
    }
    Ok(())
}

async fn delete_uploads(conn: &mut Conn, import: &Import) -> StoreResult<()> {
    let mut qb = conn.sql("DELETE FROM import_uploads WHERE import_id = ");
    qb.bind(import.id);
    qb.push(" AND import_id IN (SELECT id FROM imports WHERE workspace_id = ");
    qb.bind(import.workspace_id);
    qb.push(")");
    conn.execute(qb).await?;
    Ok(())
}

impl Store {
    pub async fn create_import(&self, import: &Import) -> StoreResult<()> {
        let mut qb = self.sql(
            "INSERT INTO imports (id, workspace_id, status, format, options, source_name, \
             created_at, updated_at) VALUES (",
        );
        qb.bind(import.id);
        qb.push(", ");
        qb.bind(import.workspace_id);
        qb.push(", ");
        qb.bind(import.status.as_str().to_owned());
        qb.push(", ");
        qb.bind(import.format.clone());
        qb.push(", ");
        qb.bind(import.options.to_string());
        qb.push(", ");
        qb.bind(import.source_name.clone());
        qb.push(", ");
        qb.bind(import.created_at);
        qb.push(", ");
        qb.bind(import.updated_at);
        qb.push(")");
        let mut tx = self.begin().await?;
        tx.execute(qb).await?;
        write_import(&mut tx, import, None).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn import(&self, ws: WorkspaceId, id: ImportId) -> StoreResult<Option<Import>> {
        let mut qb = self.sql(format!(
            "SELECT {IMPORT_COLUMNS} FROM imports WHERE workspace_id = "
        ));
        qb.bind(ws);
        qb.push(" AND id = ");
        qb.bind(id);
        let row = self.write_optional(qb).await?;
        row.as_ref().map(import_from_row).transpose()
    }

    /// A page of the workspace's imports, newest first.
    pub async fn imports(&self, ws: WorkspaceId, page: &KeysetPage<ImportId>) -> StoreResult<Paged<Import>> {
        let mut qb = self.sql(format!(
            "SELECT {IMPORT_COLUMNS} FROM imports WHERE workspace_id = "
        ));
        qb.bind(ws);
        self.keyset_page(qb, KeyOrder::NEWEST_FIRST, page, import_from_row)
            .await
    }

    pub async fn resumable_import(
        &self,
        ws: WorkspaceId,
        format: &str,
        options: &serde_json::Value,
    ) -> StoreResult<Option<Import>> {
        let mut qb = self.sql(format!(
            "SELECT {IMPORT_COLUMNS} FROM imports WHERE workspace_id = "
        ));
        qb.bind(ws);
        qb.push(" AND status IN ('running', 'interrupted') AND job_id IS NULL AND format = ");
        qb.bind(format.to_owned());
        qb.push(" AND options = ");
        qb.bind(options.to_string());
        qb.push(" ORDER BY id DESC LIMIT 1");
        let row = self.write_optional(qb).await?;
        row.as_ref().map(import_from_row).transpose()
    }

    pub async fn save_import(&self, import: &Import) -> StoreResult<()> {
        let mut conn = self.writer().await?;
        write_import(&mut conn, import, None).await
    }

    pub async fn set_import_job(&self, ws: WorkspaceId, id: ImportId, job: JobId) -> StoreResult<()> {
        let mut qb = self.sql("UPDATE imports SET job_id = ");
        qb.bind(job.as_i64());
        qb.push(" WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND id = ");
        qb.bind(id);
        self.execute(qb).await?;
        Ok(())
    }

    pub async fn leads_by_emails(&self, ws: WorkspaceId, emails: &[EmailAddress]) -> StoreResult<Vec<Lead>> {
        let mut found = Vec::with_capacity(emails.len());
        // one statement per 10,000 emails: under both backends' bind limits
        for chunk in emails.chunks(10_000) {
            let emails = chunk.iter().map(EmailAddress::as_str);
            found.extend(
                self.read_leads(sql::select_in_query(self.dialect(), ws, "l.email", emails))
                    .await?,
            );
        }
        Ok(found)
    }

    pub async fn commit_import_chunk(&self, chunk: &ImportChunk<'_>) -> StoreResult<Vec<Event>> {
        let import = chunk.import;
        let ws = import.workspace_id;
        if chunk
            .created
            .iter()
            .chain(chunk.updated.iter().map(|(l, _)| l))
            .any(|l| l.workspace_id != ws)
        {
            return Err(StoreError::Config("import chunk mixes workspaces".into()));
        }
        let mut tx = self.begin().await?;
        write_import(&mut tx, import, Some(chunk.previous_rows_done)).await?;
        if !chunk.created.is_empty() {
            append_leads(&mut tx, chunk.created).await?;
            bump(&mut tx, ws, counts_of(chunk.created)).await?;
        }
        update_many(&mut tx, ws, chunk.updated).await?;
        insert_errors(&mut tx, import, chunk.errors).await?;
        let events = append_events(&mut tx, &[import.event(IMPORT_PROGRESS, import.updated_at)]).await?;
        tx.commit().await?;
        Ok(events)
    }

    pub async fn finish_import(&self, import: &Import) -> StoreResult<Vec<Event>> {
        let mut tx = self.begin().await?;
        write_import(&mut tx, import, None).await?;
        delete_uploads(&mut tx, import).await?;
        let at = import.finished_at.unwrap_or(import.updated_at);
        let events = append_events(&mut tx, &[import.event(IMPORT_FINISHED, at)]).await?;
        tx.commit().await?;
        Ok(events)
    }

    /// A page of an import's error report in row order, keyed by `(row, seq)`.
    pub async fn import_errors(
        &self,
        ws: WorkspaceId,
        id: ImportId,
        page: &KeysetPage<(u64, u32)>,
    ) -> StoreResult<Paged<ImportErrorRow>> {
        const ROW_ORDER: KeyOrder = KeyOrder {
            columns: &["row_number", "seq"],
            direction: Direction::Asc,
        };
        let mut qb = self.sql(
            "SELECT row_number, CAST(seq AS BIGINT), column_name, reason, email_hash FROM import_errors \
             WHERE workspace_id = ",
        );
        qb.bind(ws);
        qb.push(" AND import_id = ");
        qb.bind(id);
        self.keyset_page(qb, ROW_ORDER, page, |r| {
            Ok(ImportErrorRow {
                row: r.get::<i64>(0)?.max(0) as u64,
                seq: r.get::<i64>(1)?.clamp(0, i64::from(u32::MAX)) as u32,
                column: r.get(2)?,
                reason: r.get(3)?,
                email_hash: r.get::<Option<String>>(4)?.map(EmailHash::from_trusted),
            })
        })
        .await
    }

    pub async fn save_import_upload(
        &self,
        ws: WorkspaceId,
        id: ImportId,
        seq: u32,
        data: &[u8],
    ) -> StoreResult<()> {
        let mut qb = self.sql("INSERT INTO import_uploads (import_id, seq, data) SELECT id, ");
        qb.bind(i64::from(seq));
        qb.push(", ");
        qb.bind(data.to_vec());
        qb.push(" FROM imports WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND id = ");
        qb.bind(id);
        let done = self.execute(qb).await?;
        if done == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn import_upload(
        &self,
        ws: WorkspaceId,
        id: ImportId,
        seq: u32,
    ) -> StoreResult<Option<Vec<u8>>> {
        let mut qb = self.sql(
            "SELECT u.data FROM import_uploads u JOIN imports i ON i.id = u.import_id \
             WHERE i.workspace_id = ",
        );
        qb.bind(ws);
        qb.push(" AND u.import_id = ");
        qb.bind(id);
        qb.push(" AND u.seq = ");
        qb.bind(i64::from(seq));
        let row = self.fetch_optional(qb).await?;
        row.map(|r| r.get::<Vec<u8>>(0)).transpose()
    }
}
