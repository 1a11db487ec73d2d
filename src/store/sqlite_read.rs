//! The hot read path of the SQLite backend: rusqlite connections used from blocking threads,
//! with cached prepared statements.
//!
//! sqlx runs each SQLite connection on a thread of its own and moves every row across a
//! channel; for the small, frequent reads behind a page of leads that hand-off cost more than
//! the query. Writes stay on sqlx (one writer connection), so transactions and migrations have
//! one home. Both link the same bundled SQLite.

use super::StoreError;
use super::sql::{LeadRow, SqlBuilder};
use crate::domain::{Lead, Timestamp};
use chrono::DateTime;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// A statement for the read path: SQL with `?` placeholders and its values.
pub(crate) struct LiteQuery {
    sql: String,
    params: Vec<Value>,
}

impl SqlBuilder for LiteQuery {
    fn new(init: impl Into<String>) -> Self {
        Self {
            sql: init.into(),
            params: Vec::new(),
        }
    }
    fn push(&mut self, sql: impl std::fmt::Display) -> &mut Self {
        use std::fmt::Write;
        let _ = write!(self.sql, "{sql}");
        self
    }
    fn push_opt_text(&mut self, v: Option<String>) {
        self.bind(v.map_or(Value::Null, Value::Text));
    }
    fn push_uuid(&mut self, v: Uuid) {
        self.bind(Value::Blob(v.as_bytes().to_vec()));
    }
    fn push_text(&mut self, v: String) {
        self.bind(Value::Text(v));
    }
    fn push_int(&mut self, v: i64) {
        self.bind(Value::Integer(v));
    }
    fn push_time(&mut self, v: Timestamp) {
        self.bind(Value::Integer(v.timestamp_micros()));
    }
}

impl LiteQuery {
    fn bind(&mut self, v: Value) {
        self.params.push(v);
        self.sql.push('?');
    }
}

/// A small pool of read-only connections to one database file.
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Bounds concurrent reads, and so the number of connections, to the idle capacity: every
    /// connection opened is kept and reused.
    permits: tokio::sync::Semaphore,
}

fn read_error(e: rusqlite::Error) -> StoreError {
    StoreError::Database(Box::new(e))
}

impl Readers {
    pub(crate) fn new(path: &Path, connections: usize) -> Arc<Self> {
        Arc::new(Self {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::with_capacity(connections)),
            permits: tokio::sync::Semaphore::new(connections.max(1)),
        })
    }

    pub(crate) fn open(&self) -> rusqlite::Result<Connection> {
        let flags =
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // 8 MiB each: the OS page cache holds the file, this only the hot upper B-tree levels.
        conn.pragma_update(None, "cache_size", -8_192)?;
        conn.pragma_update(None, "temp_store", "memory")?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    /// Runs `f` on an idle connection (or a new one) on a blocking thread.
    pub(crate) async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| StoreError::Database(Box::new(e)))?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let pooled = this.idle.lock().map(|mut idle| idle.pop()).unwrap_or(None);
            let conn = match pooled {
                Some(c) => c,
                None => this.open().map_err(read_error)?,
            };
            let result = f(&conn).map_err(read_error);
            if let Ok(mut idle) = this.idle.lock() {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Database(Box::new(e)))?
    }

    pub(crate) async fn leads(self: &Arc<Self>, q: LiteQuery) -> Result<Vec<Lead>, StoreError> {
        let rows = self
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(&q.sql)?;
                let rows = stmt.query_map(rusqlite::params_from_iter(q.params.iter()), lead_row)?;
                rows.collect::<rusqlite::Result<Vec<LeadRow>>>()
            })
            .await?;
        rows.into_iter()
            .map(|r| r.into_lead().map_err(|e| StoreError::Database(Box::new(e))))
            .collect()
    }

    /// Leads with the two count columns that follow them; counts from the first row.
    pub(crate) async fn leads_counted(
        self: &Arc<Self>,
        q: LiteQuery,
    ) -> Result<(Vec<Lead>, Option<(i64, i64)>), StoreError> {
        let rows = self
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(&q.sql)?;
                let rows = stmt.query_map(rusqlite::params_from_iter(q.params.iter()), |r| {
                    Ok((lead_row(r)?, r.get::<_, i64>(21)?, r.get::<_, i64>(22)?))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        let counts = rows.first().map(|(_, active, archived)| (*active, *archived));
        let leads = rows
            .into_iter()
            .map(|(r, _, _)| r.into_lead().map_err(|e| StoreError::Database(Box::new(e))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((leads, counts))
    }

    pub(crate) async fn exists(self: &Arc<Self>, q: LiteQuery) -> Result<bool, StoreError> {
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&q.sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(q.params.iter()))?;
            Ok(rows.next()?.is_some())
        })
        .await
    }

    /// The integer columns of the first row; empty when there is none.
    pub(crate) async fn ints(self: &Arc<Self>, q: LiteQuery) -> Result<Vec<i64>, StoreError> {
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&q.sql)?;
            let columns = stmt.column_count();
            let mut rows = stmt.query(rusqlite::params_from_iter(q.params.iter()))?;
            match rows.next()? {
                Some(row) => (0..columns).map(|i| row.get::<_, i64>(i)).collect(),
                None => Ok(Vec::new()),
            }
        })
        .await
    }
}

fn uuid_at(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Uuid> {
    let bytes: Vec<u8> = row.get(i)?;
    Uuid::from_slice(&bytes)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, Box::new(e)))
}

fn time_at(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Timestamp> {
    let micros: i64 = row.get(i)?;
    DateTime::from_timestamp_micros(micros).ok_or(rusqlite::Error::IntegralValueOutOfRange(i, micros))
}

/// Reads `sql::LEAD_COLUMNS` in order.
fn lead_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LeadRow> {
    Ok(LeadRow {
        id: uuid_at(r, 0)?,
        workspace_id: uuid_at(r, 1)?,
        email: r.get(2)?,
        first_name: r.get(3)?,
        last_name: r.get(4)?,
        title: r.get(5)?,
        company_name: r.get(6)?,
        company_domain: r.get(7)?,
        phone: r.get(8)?,
        linkedin_url: r.get(9)?,
        country: r.get(10)?,
        source: r.get(11)?,
        status: r.get(12)?,
        owner: r.get(13)?,
        score: r.get(14)?,
        tags: r.get(15)?,
        custom_fields: r.get(16)?,
        created_at: time_at(r, 17)?,
        updated_at: time_at(r, 18)?,
        archived_at: match r.get::<_, Option<i64>>(19)? {
            Some(_) => Some(time_at(r, 19)?),
            None => None,
        },
        version: r.get(20)?,
    })
}
