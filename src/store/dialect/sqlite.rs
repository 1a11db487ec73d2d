//! What only SQLite has: the database file in WAL mode, one writer connection (writers queue
//! in the application instead of failing with `SQLITE_BUSY`), and the hot read path on
//! rusqlite. Timestamps are INTEGER microseconds since the Unix epoch, uuids 16-byte BLOBs.
//!
//! The read path: sqlx runs each SQLite connection on a thread of its own and moves every row
//! across a channel; for the small, frequent reads behind a page of leads that hand-off costs
//! more than the query. So pages, counts and lookups by id run on rusqlite connections on
//! blocking threads with cached prepared statements. Both link the same bundled SQLite.
//!
//! **The bundled SQLite** is built (`.cargo/config.toml`) without STAT4, which re-prepared
//! statements whenever a bound value might change the plan, and without the global memory-
//! statistics mutex that concurrent readers contended on. The binary uses mimalloc.

use super::{CACHED_BINDS_MAX, Dialect, Sql, ident};
use crate::domain::{ColumnType, Lead, Value, lead_from_columns, read_columns};
use crate::store::backup::{
    Catalog, Column, MIGRATIONS_TABLE, ROWS_PER_BATCH, SnapshotPart, Table, bad_value, closed,
    in_foreign_key_order, select_all, sqlite_column_type, unportable,
};
use crate::store::{PoolOptions, StoreError, StoreResult};
use chrono::DateTime;
use rusqlite::types::{Value as LiteValue, ValueRef};
use rusqlite::{Connection, OpenFlags};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Sqlite};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

/// A SQLite database file: sqlx pools for writes and cold reads, rusqlite for hot reads.
#[derive(Clone)]
pub(crate) struct SqliteDb {
    pub(crate) read: Pool<Sqlite>,
    pub(crate) write: Pool<Sqlite>,
    pub(crate) readers: Arc<Readers>,
}

impl SqliteDb {
    /// Opens (creating if missing) the database at `url`, e.g. `sqlite://leadgate.db`.
    pub(crate) async fn open(url: &str, options: &PoolOptions) -> StoreResult<Self> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // 16 MiB of page cache per connection; the OS page cache holds the rest, so the
            // process stays small however large the file grows.
            .pragma("cache_size", "-16384")
            .pragma("temp_store", "memory")
            .statement_cache_capacity(256);
        let path = connect.get_filename().to_path_buf();
        if path.as_os_str().is_empty() || path.to_string_lossy().contains(":memory:") {
            return Err(StoreError::Config(
                "in-memory SQLite is not supported; use sqlite://FILE".into(),
            ));
        }
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect.clone())
            .await
            .map_err(super::interpret)?;
        // sqlx readers serve the cold reads (workspaces, settings); the hot ones go to `readers`.
        let read = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect.read_only(true))
            .await
            .map_err(super::interpret)?;
        let readers = Readers::new(&path, reader_count(options.max_connections) as usize);
        Ok(Self { read, write, readers })
    }

    pub(crate) async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("migrations/sqlite")
            .run(&self.write)
            .await
            .map_err(|e| StoreError::Database(Box::new(e)))
    }

    pub(crate) async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// Idle read connections kept: two per core, capped by the configured maximum. Reads are
/// short and CPU-bound, so more connections than that only add switching (measured with sqlx:
/// 16 readers on 2 cores spent 50 % more CPU per page than 4).
fn reader_count(configured: u32) -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    (cores * 2).clamp(2, configured.max(2))
}

/// A small pool of read-only rusqlite connections to one database file.
pub(crate) struct Readers {
    path: PathBuf,
    /// Connections this pool may hold (and reads it may run) at once.
    capacity: usize,
    idle: Mutex<Vec<Connection>>,
    /// Bounds concurrent reads, and so the number of connections, to the idle capacity: every
    /// connection opened is kept and reused.
    permits: tokio::sync::Semaphore,
}

fn read_error(e: rusqlite::Error) -> StoreError {
    StoreError::Database(Box::new(e))
}

/// The rusqlite form of a bound value.
fn lite(v: Value) -> LiteValue {
    match v {
        Value::Null => LiteValue::Null,
        Value::Integer(n) => LiteValue::Integer(n),
        Value::Real(x) => LiteValue::Real(x),
        Value::Text(s) => LiteValue::Text(s),
        Value::Uuid(u) => LiteValue::Blob(u.as_bytes().to_vec()),
        Value::Timestamp(t) => LiteValue::Integer(t.timestamp_micros()),
        Value::Blob(b) => LiteValue::Blob(b),
    }
}

/// Column `i` of a rusqlite row as a portable value of type `ty`.
pub(crate) fn lite_value(row: &rusqlite::Row<'_>, i: usize, ty: ColumnType) -> rusqlite::Result<Value> {
    let bad = |what: &str| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Null, what.to_owned().into())
    };
    Ok(match (ty, row.get_ref(i)?) {
        (_, ValueRef::Null) => Value::Null,
        (ColumnType::Uuid, ValueRef::Blob(b)) => {
            Value::Uuid(Uuid::from_slice(b).map_err(|_| bad("not a uuid"))?)
        }
        (ColumnType::Timestamp, ValueRef::Integer(n)) => {
            Value::Timestamp(DateTime::from_timestamp_micros(n).ok_or_else(|| bad("timestamp out of range"))?)
        }
        (ColumnType::Integer, ValueRef::Integer(n)) => Value::Integer(n),
        (ColumnType::Real, ValueRef::Real(x)) => Value::Real(x),
        (ColumnType::Real, ValueRef::Integer(n)) => Value::Real(n as f64),
        (ColumnType::Text, ValueRef::Text(t)) => {
            Value::Text(String::from_utf8(t.to_vec()).map_err(|_| bad("text that is not UTF-8"))?)
        }
        (ColumnType::Blob, ValueRef::Blob(b)) => Value::Blob(b.to_vec()),
        (expected, other) => {
            return Err(bad(&format!(
                "{:?} where {expected:?} belongs",
                other.data_type()
            )));
        }
    })
}

/// Reads the lead columns (`read_columns()`) at the start of a row, each straight into the
/// lead; a read error stays a `rusqlite::Error`, a value the lead refuses is the inner error.
fn lead_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Lead, String>> {
    let mut failed = None;
    let lead = lead_from_columns(|i, c| {
        lite_value(row, i, c.ty).map_err(|e| {
            let message = e.to_string();
            failed = Some(e);
            message
        })
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(lead),
    }
}

fn corrupt(e: String) -> StoreError {
    StoreError::corrupt(format!("lead row: {e}"))
}

impl Readers {
    pub(crate) fn new(path: &Path, connections: usize) -> Arc<Self> {
        Arc::new(Self {
            path: path.to_path_buf(),
            capacity: connections.max(1),
            idle: Mutex::new(Vec::with_capacity(connections)),
            permits: tokio::sync::Semaphore::new(connections.max(1)),
        })
    }

    /// Connections idle, reads running, and the most that may run at once.
    pub(crate) fn stats(&self) -> crate::store::metrics::PoolStats {
        let idle = self.idle.lock().map_or(0, |idle| idle.len());
        crate::store::metrics::PoolStats {
            idle: idle as u64,
            in_use: self.capacity.saturating_sub(self.permits.available_permits()) as u64,
            max: self.capacity as u64,
        }
    }

    pub(crate) fn open(&self) -> rusqlite::Result<Connection> {
        let flags =
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.busy_timeout(Duration::from_secs(10))?;
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
    ) -> StoreResult<T> {
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

    /// Runs `sql` and maps each row with `f`.
    async fn query<T: Send + 'static>(
        self: &Arc<Self>,
        sql: Sql,
        f: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<Vec<T>> {
        let (text, args) = sql.into_parts();
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&text)?;
            let one_off = args.len() > CACHED_BINDS_MAX;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.into_iter().map(lite)), f)?
                .collect();
            if one_off {
                stmt.discard();
            }
            rows
        })
        .await
    }

    pub(crate) async fn leads(self: &Arc<Self>, sql: Sql) -> StoreResult<Vec<Lead>> {
        let rows = self.query(sql, lead_row).await?;
        rows.into_iter().map(|r| r.map_err(corrupt)).collect()
    }

    /// Leads with the two count columns that follow them; counts from the first row.
    pub(crate) async fn leads_counted(
        self: &Arc<Self>,
        sql: Sql,
    ) -> StoreResult<(Vec<Lead>, Option<(i64, i64)>)> {
        let rows = self
            .query(sql, |r| {
                let n = read_columns().count();
                Ok((lead_row(r)?, r.get::<_, i64>(n)?, r.get::<_, i64>(n + 1)?))
            })
            .await?;
        let counts = rows.first().map(|(_, active, archived)| (*active, *archived));
        let leads = rows
            .into_iter()
            .map(|(r, _, _)| r.map_err(corrupt))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((leads, counts))
    }

    /// The integer columns of the first row; empty when there is none.
    pub(crate) async fn ints(self: &Arc<Self>, sql: Sql) -> StoreResult<Vec<i64>> {
        let (text, args) = sql.into_parts();
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&text)?;
            let columns = stmt.column_count();
            let mut rows = stmt.query(rusqlite::params_from_iter(args.into_iter().map(lite)))?;
            match rows.next()? {
                Some(row) => (0..columns).map(|i| row.get::<_, i64>(i)).collect(),
                None => Ok(Vec::new()),
            }
        })
        .await
    }
}

/// The catalog of a SQLite database (see `store::backup`).
pub(crate) fn catalog(conn: &rusqlite::Connection) -> rusqlite::Result<Result<Catalog, StoreError>> {
    let schema_version: i64 = conn.query_row(
        "SELECT coalesce(max(version), 0) FROM _sqlx_migrations WHERE success",
        [],
        |r| r.get(0),
    )?;
    let names: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             AND name <> ?1 ORDER BY name",
        )?
        .query_map([MIGRATIONS_TABLE], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut tables = Vec::with_capacity(names.len());
    let mut references = Vec::new();
    for name in names {
        let mut columns = Vec::new();
        let mut key = Vec::new();
        let mut info = conn.prepare("SELECT name, type, pk FROM pragma_table_info(?1) ORDER BY cid")?;
        let rows = info.query_map([&name], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (column, declared, pk) = row?;
            let Some(logical) = sqlite_column_type(&declared, &column) else {
                return Ok(Err(unportable(&name, &column, &declared)));
            };
            if pk > 0 {
                key.push((pk, column.clone()));
            }
            columns.push(Column {
                name: column,
                logical,
            });
        }
        key.sort();
        let parents = conn
            .prepare("SELECT \"table\" FROM pragma_foreign_key_list(?1)")?
            .query_map([&name], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        references.extend(parents.into_iter().map(|p| (name.clone(), p)));
        tables.push(Table {
            name,
            columns,
            key: key.into_iter().map(|(_, c)| c).collect(),
        });
    }
    Ok(Ok(Catalog {
        schema_version,
        tables: in_foreign_key_order(tables, &references),
    }))
}

/// Reads every table in one read transaction (WAL keeps it stable while writers go on) and
/// sends it to `out`; runs on a blocking thread.
pub(crate) fn snapshot(readers: &Readers, out: &mpsc::Sender<SnapshotPart>) -> StoreResult<()> {
    let db = |e: rusqlite::Error| StoreError::Database(Box::new(e));
    let conn = readers.open().map_err(db)?;
    // The snapshot starts with the first read after BEGIN and lasts until COMMIT.
    conn.execute_batch("BEGIN").map_err(db)?;
    let catalog = catalog(&conn).map_err(db)??;
    let mut counts = Vec::with_capacity(catalog.tables.len());
    for t in &catalog.tables {
        let n: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {}", ident(&t.name)), [], |r| {
                r.get(0)
            })
            .map_err(db)?;
        counts.push(n as u64);
    }
    let tables = catalog.tables.clone();
    out.blocking_send(SnapshotPart::Begin {
        catalog,
        rows: counts,
    })
    .map_err(|_| closed())?;
    for table in &tables {
        let mut stmt = conn.prepare(&select_all(table, Dialect::Sqlite)).map_err(db)?;
        let mut rows = stmt.query([]).map_err(db)?;
        let mut batch = Vec::with_capacity(ROWS_PER_BATCH);
        while let Some(row) = rows.next().map_err(db)? {
            let mut values = Vec::with_capacity(table.columns.len());
            for i in 0..table.columns.len() {
                let column = &table.columns[i];
                let value = lite_value(row, i, column.logical)
                    .map_err(|e| bad_value(&table.name, &column.name, &e.to_string()))?;
                values.push(value);
            }
            batch.push(values);
            if batch.len() == ROWS_PER_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(ROWS_PER_BATCH));
                out.blocking_send(SnapshotPart::Rows(full))
                    .map_err(|_| closed())?;
            }
        }
        if !batch.is_empty() {
            out.blocking_send(SnapshotPart::Rows(batch))
                .map_err(|_| closed())?;
        }
        out.blocking_send(SnapshotPart::EndTable).map_err(|_| closed())?;
    }
    conn.execute_batch("COMMIT").map_err(db)?;
    Ok(())
}
