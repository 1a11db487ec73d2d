//! What only PostgreSQL has: a write pool and read connections, `LISTEN`/`NOTIFY` between
//! instances, and `COPY` for bulk appends. Text columns that sort use the "C" collation (see the
//! migrations) so ordering and cursors match SQLite byte for byte.
//!
//! **Reads have connections of their own** (`PgReaders`), as SQLite's have: sqlx's pool sends a
//! `Sync` round trip when it lends a connection (`test_before_acquire`) and another when it takes
//! one back (always, and no option turns it off), so a page read through it costs three round
//! trips where one does, each waking a PostgreSQL backend, and a task spawned per return.
//! `PgReaders` lends a connection without a ping and takes it back only when its statement
//! finished; a connection dropped mid-statement (a cancelled request), or one whose session
//! ended (an I/O error, or a FATAL from the server), is closed instead. A read that fails
//! on a connection that sat idle (the server may have closed it) is retried once on a new
//! connection; connections idle for more than `IDLE_TIMEOUT` are not reused. Writes keep sqlx's
//! pool (transactions, COPY, the listener) and its pings: a write is not retried, so a dead
//! connection must be found before it is used.

use super::{CACHED_BINDS_MAX, Dialect, Sql, ident};
use crate::domain::{Value, WorkspaceId};
use crate::store::backup::{
    Catalog, Column, MIGRATIONS_TABLE, ROWS_PER_BATCH, SnapshotPart, Table, closed, in_foreign_key_order,
    pg_column_type, select_all, unportable,
};
use crate::store::{PoolOptions, StoreError, StoreResult};
use futures_util::TryStreamExt as _;
use sqlx::Row as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions as _, Connection as _, Pool, Postgres};
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A PostgreSQL database: the write pool, the read connections, and the options to open
/// connections of its own.
#[derive(Clone)]
pub(crate) struct PgDb {
    pub(crate) pool: Pool<Postgres>,
    /// Connections for reads (see the module header).
    pub(crate) readers: Arc<PgReaders>,
    /// For connections outside the pool (the event listener). Holds the password.
    connect: Arc<PgConnectOptions>,
}

/// How long a read connection may sit idle and still be lent; older ones are closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The channel other instances `LISTEN` on for new events.
const EVENTS_CHANNEL: &str = "leadgate_events";

impl PgDb {
    /// Connects to `url`, e.g. `postgres://user@127.0.0.1:5432/leadgate`.
    pub(crate) async fn open(url: &str, options: &PoolOptions) -> StoreResult<Self> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(format!("invalid PostgreSQL URL: {e}")))?
            .application_name("leadgate")
            .statement_cache_capacity(256);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect.clone())
            .await
            .map_err(super::interpret)?;
        let connect = Arc::new(connect);
        Ok(Self {
            pool,
            readers: Arc::new(PgReaders::new(
                connect.clone(),
                options.max_connections.max(1) as usize,
            )),
            connect,
        })
    }

    pub(crate) async fn close(&self) {
        self.readers.close().await;
        self.pool.close().await;
    }

    pub(crate) async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Database(Box::new(e)))
    }

    /// A listener for new events committed by any instance, on a connection of its own so it
    /// never holds one of the pool's.
    pub(crate) async fn listen_events(&self) -> StoreResult<EventListener> {
        let own = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with((*self.connect).clone())
            .await
            .map_err(super::interpret)?;
        let mut listener = sqlx::postgres::PgListener::connect_with(&own)
            .await
            .map_err(super::interpret)?;
        listener.listen(EVENTS_CHANNEL).await.map_err(super::interpret)?;
        Ok(EventListener(listener))
    }
}

/// Connections for reads, lent without a ping (see the module header).
pub(crate) struct PgReaders {
    connect: Arc<PgConnectOptions>,
    /// Connections this pool may hold (and reads it may run) at once.
    capacity: usize,
    idle: Mutex<Vec<(PgConnection, Instant)>>,
    permits: tokio::sync::Semaphore,
}

/// A lent connection; goes back to the idle list only through `give_back`, so one dropped
/// mid-statement is closed with the socket.
struct Lent<'r> {
    readers: &'r PgReaders,
    conn: Option<PgConnection>,
    reused: bool,
}

impl Lent<'_> {
    fn give_back(mut self) {
        if let Some(conn) = self.conn.take() {
            self.readers.lock().push((conn, Instant::now()));
        }
    }
}

impl PgReaders {
    fn new(connect: Arc<PgConnectOptions>, connections: usize) -> Self {
        Self {
            connect,
            capacity: connections,
            idle: Mutex::new(Vec::with_capacity(connections)),
            permits: tokio::sync::Semaphore::new(connections),
        }
    }

    /// Connections idle, reads running, and the most that may run at once.
    pub(crate) fn stats(&self) -> crate::store::metrics::PoolStats {
        crate::store::metrics::PoolStats {
            idle: self.lock().len() as u64,
            in_use: self.capacity.saturating_sub(self.permits.available_permits()) as u64,
            max: self.capacity as u64,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(PgConnection, Instant)>> {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle connection used within `IDLE_TIMEOUT`, else a new one.
    async fn lend(&self, fresh: bool) -> StoreResult<Lent<'_>> {
        let reusable = if fresh {
            None
        } else {
            let mut idle = self.lock();
            loop {
                match idle.pop() {
                    Some((conn, since)) if since.elapsed() < IDLE_TIMEOUT => break Some(conn),
                    Some(_stale) => continue,
                    None => break None,
                }
            }
        };
        let reused = reusable.is_some();
        let conn = match reusable {
            Some(conn) => conn,
            None => self.connect.connect().await.map_err(super::interpret)?,
        };
        Ok(Lent {
            readers: self,
            conn: Some(conn),
            reused,
        })
    }

    /// Runs one read and returns its rows.
    pub(crate) async fn fetch_all(&self, sql: Sql) -> StoreResult<Vec<PgRow>> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Database(Box::new(sqlx::Error::PoolClosed)))?;
        let (text, args) = sql.into_parts();
        let lent = self.lend(false).await?;
        // only a reused connection may have been closed under it: keep the values to retry
        let retry = lent.reused.then(|| args.clone());
        match (Self::run(lent, &text, args).await, retry) {
            (Ok(rows), _) => Ok(rows),
            (Err((e, true)), Some(args)) => {
                tracing::debug!(error = %e, "an idle read connection failed; retrying on a new one");
                let lent = self.lend(true).await?;
                Self::run(lent, &text, args)
                    .await
                    .map_err(|(e, _)| super::interpret(e))
            }
            (Err((e, _)), _) => Err(super::interpret(e)),
        }
    }

    /// One statement on a lent connection, given back unless the connection broke (the error's
    /// flag).
    async fn run(
        mut lent: Lent<'_>,
        text: &str,
        args: Vec<Value>,
    ) -> Result<Vec<PgRow>, (sqlx::Error, bool)> {
        let binds = args.len();
        let args = match Sql::pg_args(args) {
            Ok(args) => args,
            Err(e) => {
                lent.give_back();
                return Err((sqlx::Error::Encode(e), false));
            }
        };
        let conn = lent.conn.as_mut().expect("a lent connection");
        match sqlx::query_with(sqlx::AssertSqlSafe(text), args)
            .persistent(binds <= CACHED_BINDS_MAX)
            .fetch_all(conn)
            .await
        {
            Ok(rows) => {
                lent.give_back();
                Ok(rows)
            }
            // the statement failed and the session goes on
            Err(e) if !ends_session(&e) => {
                lent.give_back();
                Err((e, false))
            }
            Err(e) => Err((e, true)),
        }
    }

    /// Closes every idle connection and refuses further reads.
    async fn close(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut *self.lock());
        for (conn, _) in idle {
            let _ = conn.close().await;
        }
    }
}

/// Whether an error leaves the connection unusable: anything but a database error, or one the
/// server sent as it ended the session (FATAL or PANIC: a restart, `pg_terminate_backend`, an
/// idle-session timeout).
fn ends_session(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_none_or(|pg| {
                matches!(
                    pg.severity(),
                    sqlx::postgres::PgSeverity::Fatal | sqlx::postgres::PgSeverity::Panic
                )
            }),
        _ => true,
    }
}

/// Wake-ups for events committed by any instance sharing a PostgreSQL database. A
/// notification only says "look": the log is the truth, and one lost while the connection was
/// re-established is found by the next poll.
pub struct EventListener(sqlx::postgres::PgListener);

impl EventListener {
    /// The next `(workspace, newest number)` announced; reconnects when the connection drops.
    pub async fn recv(&mut self) -> StoreResult<(WorkspaceId, i64)> {
        loop {
            let note = self.0.recv().await.map_err(super::interpret)?;
            let parsed = note
                .payload()
                .split_once(':')
                .and_then(|(ws, top)| Some((WorkspaceId::from_uuid(ws.parse().ok()?), top.parse().ok()?)));
            if let Some(wake) = parsed {
                return Ok(wake);
            }
        }
    }
}

/// Wakes listening instances when the transaction commits: `<workspace>:<newest number>`.
pub(crate) async fn notify_events(
    conn: &mut sqlx::PgConnection,
    ws: WorkspaceId,
    top: i64,
) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(EVENTS_CHANNEL)
        .bind(format!("{ws}:{top}"))
        .execute(conn)
        .await
        .map_err(super::interpret)?;
    Ok(())
}

/// Rows sent per COPY message: large enough to amortise the round trip, small enough to keep
/// memory flat.
const COPY_ROWS_PER_MESSAGE: usize = 2_000;

/// `COPY table (columns) FROM STDIN` of `rows`; returns how many.
pub(crate) async fn copy_rows(
    conn: &mut sqlx::PgConnection,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Value>>,
) -> StoreResult<u64> {
    let columns: Vec<String> = columns.iter().map(|c| super::ident(c)).collect();
    // COPY writes identity columns as given, like INSERT … OVERRIDING SYSTEM VALUE.
    let statement = format!("COPY {} ({}) FROM STDIN", super::ident(table), columns.join(", "));
    let mut copy = conn.copy_in_raw(&statement).await.map_err(super::interpret)?;
    let (mut data, mut in_data, mut written) = (String::new(), 0usize, 0u64);
    for row in &rows {
        copy_row(&mut data, row);
        in_data += 1;
        written += 1;
        if in_data == COPY_ROWS_PER_MESSAGE {
            copy.send(std::mem::take(&mut data).into_bytes())
                .await
                .map_err(super::interpret)?;
            in_data = 0;
        }
    }
    if !data.is_empty() {
        copy.send(data.into_bytes()).await.map_err(super::interpret)?;
    }
    copy.finish().await.map_err(super::interpret)?;
    Ok(written)
}

/// One row in COPY's text format.
pub(crate) fn copy_row(out: &mut String, row: &[Value]) {
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        match v {
            Value::Null => out.push_str("\\N"),
            Value::Integer(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Real(x) => {
                let _ = write!(out, "{x:?}");
            }
            Value::Text(t) => copy_escaped(out, t),
            Value::Uuid(u) => {
                let _ = write!(out, "{}", u.hyphenated());
            }
            Value::Blob(b) => {
                // bytea hex form; the backslash itself is escaped in COPY text
                out.push_str("\\\\x");
                for byte in b {
                    let _ = write!(out, "{byte:02x}");
                }
            }
            Value::Timestamp(t) => out.push_str(&Value::timestamp_text(*t)),
        }
    }
    out.push('\n');
}

fn copy_escaped(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
}

/// The catalog of a PostgreSQL database (see `store::backup`).
pub(crate) async fn catalog(conn: &mut sqlx::PgConnection) -> StoreResult<Catalog> {
    let interpret = super::interpret;
    let schema_version: i64 =
        sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut *conn)
            .await
            .map_err(interpret)?;
    // The last column is the position in the primary key, 1-based, 0 for other columns
    // (`indkey` is an int2vector, whose subscripts start at 0).
    let rows = sqlx::query(
        "SELECT c.relname::text, a.attname::text, t.typname::text, \
                coalesce(array_position(i.indkey::int2[], a.attnum) + 1, 0)::int8 \
         FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         JOIN pg_type t ON t.oid = a.atttypid \
         LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary \
         WHERE c.relkind = 'r' AND n.nspname = current_schema() AND c.relname <> $1 \
         ORDER BY c.relname, a.attnum",
    )
    .bind(MIGRATIONS_TABLE)
    .fetch_all(&mut *conn)
    .await
    .map_err(interpret)?;
    let mut tables: Vec<Table> = Vec::new();
    let mut keys: Vec<Vec<(i64, String)>> = Vec::new();
    for r in rows {
        let (table, column, udt, key): (String, String, String, i64) = (
            r.try_get(0).map_err(interpret)?,
            r.try_get(1).map_err(interpret)?,
            r.try_get(2).map_err(interpret)?,
            r.try_get(3).map_err(interpret)?,
        );
        let logical = pg_column_type(&udt).ok_or_else(|| unportable(&table, &column, &udt))?;
        if tables.last().is_none_or(|t| t.name != table) {
            tables.push(Table {
                name: table,
                columns: Vec::new(),
                key: Vec::new(),
            });
            keys.push(Vec::new());
        }
        if key > 0 {
            keys.last_mut().expect("pushed above").push((key, column.clone()));
        }
        tables.last_mut().expect("pushed above").columns.push(Column {
            name: column,
            logical,
        });
    }
    for (t, mut k) in tables.iter_mut().zip(keys) {
        k.sort();
        t.key = k.into_iter().map(|(_, c)| c).collect();
    }
    let references: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.relname::text, b.relname::text FROM pg_constraint c \
         JOIN pg_class a ON a.oid = c.conrelid JOIN pg_class b ON b.oid = c.confrelid \
         JOIN pg_namespace n ON n.oid = a.relnamespace \
         WHERE c.contype = 'f' AND n.nspname = current_schema()",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(interpret)?;
    Ok(Catalog {
        schema_version,
        tables: in_foreign_key_order(tables, &references),
    })
}

/// Reads every table in one repeatable-read, read-only transaction and sends it to `out`.
pub(crate) async fn snapshot(pool: &Pool<Postgres>, out: mpsc::Sender<SnapshotPart>) -> StoreResult<()> {
    let interpret = super::interpret;
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(interpret)?;
    let catalog = catalog(&mut tx).await?;
    let mut counts = Vec::with_capacity(catalog.tables.len());
    for t in &catalog.tables {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            ident(&t.name)
        )))
        .fetch_one(&mut *tx)
        .await
        .map_err(interpret)?;
        counts.push(n as u64);
    }
    let tables = catalog.tables.clone();
    out.send(SnapshotPart::Begin {
        catalog,
        rows: counts,
    })
    .await
    .map_err(|_| closed())?;
    for table in &tables {
        let sql = select_all(table, Dialect::Postgres);
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&mut *tx);
        let mut batch = Vec::with_capacity(ROWS_PER_BATCH);
        while let Some(row) = rows.try_next().await.map_err(interpret)? {
            let values = (0..table.columns.len())
                .map(|i| super::column_value(&row, i, table.columns[i].logical))
                .collect::<StoreResult<Vec<_>>>()?;
            batch.push(values);
            if batch.len() == ROWS_PER_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(ROWS_PER_BATCH));
                out.send(SnapshotPart::Rows(full)).await.map_err(|_| closed())?;
            }
        }
        drop(rows);
        if !batch.is_empty() {
            out.send(SnapshotPart::Rows(batch)).await.map_err(|_| closed())?;
        }
        out.send(SnapshotPart::EndTable).await.map_err(|_| closed())?;
    }
    tx.commit().await.map_err(interpret)?;
    Ok(())
}

/// Moves every identity or serial sequence past the largest id its column holds, so new rows
/// do not collide with restored ones.
pub(crate) async fn set_sequences_past_ids(conn: &mut sqlx::PgConnection) -> StoreResult<()> {
    let interpret = super::interpret;
    let owned: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name <> $1 \
           AND (is_identity = 'YES' OR column_default LIKE 'nextval(%')",
    )
    .bind(MIGRATIONS_TABLE)
    .fetch_all(&mut *conn)
    .await
    .map_err(interpret)?;
    for (table, column) in owned {
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence($1, $2), coalesce(max({c}), 0) + 1, false) FROM {t}",
            c = ident(&column),
            t = ident(&table),
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ident(&table))
            .bind(column.clone())
            .execute(&mut *conn)
            .await
            .map_err(interpret)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_rows_escape_text_and_encode_bytes() {
        let mut out = String::new();
        let at = chrono::DateTime::from_timestamp_micros(1_000_001).unwrap_or_default();
        copy_row(
            &mut out,
            &[
                Value::Text("a\tb\\c\nd".into()),
                Value::Null,
                Value::Blob(vec![0, 255]),
                Value::Timestamp(at),
            ],
        );
        assert_eq!(
            out,
            "a\\tb\\\\c\\nd\t\\N\t\\\\x00ff\t1970-01-01T00:00:01.000001Z\n"
        );
    }
}
