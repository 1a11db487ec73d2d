//! Whole-database copies for `ops::backup`: the catalog (every table the migrations made, its
//! columns with their portable types, in foreign-key order), one consistent read of all of it,
//! and a bulk write into an empty store. The file format is `ops`' business; this module only
//! moves typed values in and out, so it is the one place that knows how each backend spells a
//! uuid, a timestamp or a blob.
//!
//! Portable types: PostgreSQL names them in its catalog. SQLite stores a uuid and a blob alike
//! as BLOB and a timestamp and an integer alike as INTEGER, so there the column name decides
//! (`sqlite_logical_type`); a contract test migrates both backends and checks that every column
//! gets the same type on both, so a new column cannot break portability silently.

use super::sqlite_read::Readers;
use super::{PgStore, SqliteStore, Store, StoreError, StoreResult};
use futures_util::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use sqlx::{QueryBuilder, Row as _, Sqlite};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Rows per message between the store and its caller: large enough to amortise the hand-off,
/// small enough to keep memory flat.
pub const ROWS_PER_BATCH: usize = 2_000;

/// The migrations' own bookkeeping; its newest version is carried as the schema version.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// A column's type as both backends can hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogicalType {
    Uuid,
    /// Microseconds since the Unix epoch, UTC.
    Timestamp,
    /// Integers and booleans (stored as 0/1 on both backends).
    Integer,
    Real,
    Text,
    Blob,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub logical: LogicalType,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    /// The primary key's columns; rows are read in this order, so that two copies of the same
    /// data are the same bytes whichever backend they came from.
    pub key: Vec<String>,
}

/// What a database holds, structurally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    /// The newest applied migration.
    pub schema_version: i64,
    /// Every table but the migrations' own, parents before the tables that reference them.
    pub tables: Vec<Table>,
}

/// One value of a row, in portable form.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Uuid(Uuid),
    Blob(Vec<u8>),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
}

/// What a snapshot yields, in order: `Begin`, then for each table of the catalog its `Rows`
/// (any number of batches) and `EndTable`.
#[derive(Debug)]
pub enum SnapshotPart {
    /// The catalog and each table's row count, read in the snapshot.
    Begin {
        catalog: Catalog,
        rows: Vec<u64>,
    },
    Rows(Vec<Vec<Value>>),
    EndTable,
}

/// What a restore is fed: for each table `Table`, `Rows`, `EndTable`; then `Commit`. A restore
/// whose input ends without `Commit` is rolled back.
#[derive(Debug)]
pub enum RestorePart {
    /// The next table (as named in the target's catalog) and how many rows are coming.
    Table {
        table: Table,
        rows: u64,
    },
    Rows(Vec<Vec<Value>>),
    EndTable,
    Commit,
}

impl Store {
    /// The tables, columns and schema version of this database.
    pub async fn catalog(&self) -> StoreResult<Catalog> {
        match self {
            Store::Sqlite(s) => s.readers.run(sqlite_catalog).await?,
            Store::Postgres(s) => {
                let mut conn = s.read.acquire().await.map_err(super::repo::interpret)?;
                pg_catalog(&mut conn).await
            }
        }
    }

    /// The tables that hold at least one row.
    pub async fn tables_with_rows(&self) -> StoreResult<Vec<String>> {
        let catalog = self.catalog().await?;
        let mut found = Vec::new();
        for t in &catalog.tables {
            let sql = format!("SELECT 1 FROM {} LIMIT 1", ident(&t.name));
            let row = match self {
                Store::Sqlite(s) => sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_optional(&s.read)
                    .await
                    .map(|r| r.is_some()),
                Store::Postgres(s) => sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_optional(&s.read)
                    .await
                    .map(|r| r.is_some()),
            };
            if row.map_err(super::repo::interpret)? {
                found.push(t.name.clone());
            }
        }
        Ok(found)
    }

    /// Reads every table in one snapshot (PostgreSQL: a repeatable-read, read-only
    /// transaction; SQLite: one read transaction on one connection, which WAL keeps stable
    /// while writers go on) and sends it to `out`. Stops with an error when `out` closes.
    pub async fn snapshot(&self, out: mpsc::Sender<SnapshotPart>) -> StoreResult<()> {
        match self {
            Store::Sqlite(s) => s.snapshot(out).await,
            Store::Postgres(s) => s.snapshot(out).await,
        }
    }

    /// Writes what `input` sends into this (empty) store in one transaction, committed only
    /// when `Commit` arrives. Large tables have their secondary indexes dropped and rebuilt;
    /// PostgreSQL identity sequences are moved past the restored ids.
    pub async fn restore(&self, input: mpsc::Receiver<RestorePart>) -> StoreResult<()> {
        match self {
            Store::Sqlite(s) => s.restore(input).await,
            Store::Postgres(s) => s.restore(input).await,
        }
    }
}

/// A quoted identifier. Names come from the catalog, never from input.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn closed() -> StoreError {
    StoreError::Config("the snapshot's reader stopped".into())
}

fn aborted() -> StoreError {
    StoreError::Config("the restore was abandoned before its end; nothing was committed".into())
}

fn bad_value(table: &str, column: &str, what: &str) -> StoreError {
    StoreError::Database(format!("{table}.{column}: {what}").into())
}

/// Sorts tables so that every table comes after the tables it references; ties (and cycles,
/// which the schema has none of) by name.
fn in_foreign_key_order(mut tables: Vec<Table>, references: &[(String, String)]) -> Vec<Table> {
    let mut parents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (child, parent) in references {
        if child != parent {
            parents.entry(child.clone()).or_default().insert(parent.clone());
        }
    }
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    let mut placed: BTreeSet<String> = BTreeSet::new();
    let mut ordered = Vec::with_capacity(tables.len());
    while !tables.is_empty() {
        let ready = tables
            .iter()
            .position(|t| {
                parents.get(&t.name).is_none_or(|ps| {
                    ps.iter()
                        .all(|p| placed.contains(p) || !tables.iter().any(|t| &t.name == p))
                })
            })
            .unwrap_or(0);
        let t = tables.remove(ready);
        placed.insert(t.name.clone());
        ordered.push(t);
    }
    ordered
}

/// The SQLite rule: BLOB is a uuid when the column is `id` or ends in `_id`; INTEGER is a
/// timestamp when the name ends in `_at`, `_until` or `_start`.
pub fn sqlite_logical_type(declared: &str, column: &str) -> Option<LogicalType> {
    let is_id = column == "id" || column.ends_with("_id");
    let is_time = ["_at", "_until", "_start"].iter().any(|s| column.ends_with(s));
    match declared.to_ascii_uppercase().as_str() {
        "BLOB" if is_id => Some(LogicalType::Uuid),
        "BLOB" => Some(LogicalType::Blob),
        "INTEGER" if is_time => Some(LogicalType::Timestamp),
        "INTEGER" => Some(LogicalType::Integer),
        "REAL" => Some(LogicalType::Real),
        "TEXT" => Some(LogicalType::Text),
        _ => None,
    }
}

/// The PostgreSQL rule: the catalog's type name.
pub fn pg_logical_type(udt: &str) -> Option<LogicalType> {
    match udt {
        "uuid" => Some(LogicalType::Uuid),
        "timestamptz" => Some(LogicalType::Timestamp),
        "int2" | "int4" | "int8" => Some(LogicalType::Integer),
        "float4" | "float8" => Some(LogicalType::Real),
        "text" | "varchar" | "bpchar" => Some(LogicalType::Text),
        "bytea" => Some(LogicalType::Blob),
        _ => None,
    }
}

fn unportable(table: &str, column: &str, declared: &str) -> StoreError {
    StoreError::Config(format!(
        "column {table}.{column} has type {declared}, which a backup cannot carry portably"
    ))
}

// ---------------------------------------------------------------------------------------------
// SQLite

fn sqlite_catalog(conn: &rusqlite::Connection) -> rusqlite::Result<Result<Catalog, StoreError>> {
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
            let Some(logical) = sqlite_logical_type(&declared, &column) else {
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

/// The SELECT that reads a whole table in key order.
fn select_all(table: &Table, pg: bool) -> String {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| match (pg, c.logical) {
            // one integer type on the wire, whatever the width in the table
            (true, LogicalType::Integer) => format!("{}::int8", ident(&c.name)),
            (true, LogicalType::Real) => format!("{}::float8", ident(&c.name)),
            _ => ident(&c.name),
        })
        .collect();
    let order: Vec<String> = if table.key.is_empty() {
        table.columns.iter().map(|c| c.name.clone()).collect()
    } else {
        table.key.clone()
    };
    let order: Vec<String> = order
        .iter()
        .map(|name| {
            let text = table
                .columns
                .iter()
                .any(|c| &c.name == name && c.logical == LogicalType::Text);
            // byte order on both backends
            if pg && text {
                format!("{} COLLATE \"C\"", ident(name))
            } else {
                ident(name)
            }
        })
        .collect();
    format!(
        "SELECT {} FROM {} ORDER BY {}",
        columns.join(", "),
        ident(&table.name),
        order.join(", ")
    )
}

fn sqlite_value(table: &Table, i: usize, v: rusqlite::types::ValueRef<'_>) -> Result<Value, StoreError> {
    use rusqlite::types::ValueRef as V;
    let column = &table.columns[i];
    let bad = |what: &str| bad_value(&table.name, &column.name, what);
    Ok(match (column.logical, v) {
        (_, V::Null) => Value::Null,
        (LogicalType::Uuid, V::Blob(b)) => {
            Value::Uuid(Uuid::from_slice(b).map_err(|_| bad("not a 16-byte uuid"))?)
        }
        (LogicalType::Timestamp, V::Integer(n)) => Value::Timestamp(n),
        (LogicalType::Integer, V::Integer(n)) => Value::Integer(n),
        (LogicalType::Real, V::Real(x)) => Value::Real(x),
        (LogicalType::Real, V::Integer(n)) => Value::Real(n as f64),
        (LogicalType::Text, V::Text(t)) => {
            Value::Text(String::from_utf8(t.to_vec()).map_err(|_| bad("text that is not UTF-8"))?)
        }
        (LogicalType::Blob, V::Blob(b)) => Value::Blob(b.to_vec()),
        (expected, other) => {
            return Err(bad(&format!(
                "holds {:?} where {expected:?} belongs",
                other.data_type()
            )));
        }
    })
}

fn sqlite_snapshot_blocking(readers: &Readers, out: &mpsc::Sender<SnapshotPart>) -> StoreResult<()> {
    let db = |e: rusqlite::Error| StoreError::Database(Box::new(e));
    let conn = readers.open().map_err(db)?;
    // The snapshot starts with the first read after BEGIN and lasts until COMMIT.
    conn.execute_batch("BEGIN").map_err(db)?;
    let catalog = sqlite_catalog(&conn).map_err(db)??;
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
        let mut stmt = conn.prepare(&select_all(table, false)).map_err(db)?;
        let mut rows = stmt.query([]).map_err(db)?;
        let mut batch = Vec::with_capacity(ROWS_PER_BATCH);
        while let Some(row) = rows.next().map_err(db)? {
            let mut values = Vec::with_capacity(table.columns.len());
            for i in 0..table.columns.len() {
                values.push(sqlite_value(table, i, row.get_ref(i).map_err(db)?)?);
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

impl SqliteStore {
    async fn snapshot(&self, out: mpsc::Sender<SnapshotPart>) -> StoreResult<()> {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || sqlite_snapshot_blocking(&readers, &out))
            .await
            .map_err(|e| StoreError::Database(Box::new(e)))?
    }

    async fn restore(&self, mut input: mpsc::Receiver<RestorePart>) -> StoreResult<()> {
        let interpret = super::repo::interpret;
        let mut tx = self.write.begin().await.map_err(interpret)?;
        loop {
            let Some(part) = input.recv().await else {
                return Err(aborted());
            };
            let (table, rows) = match part {
                RestorePart::Table { table, rows } => (table, rows),
                RestorePart::Commit => break,
                _ => return Err(StoreError::Config("restore input out of order".into())),
            };
            let rebuild = if rows >= super::REBUILD_INDEXES_FROM {
                drop_sqlite_indexes(&mut tx, &table.name).await?
            } else {
                Vec::new()
            };
            // SQLite allows 32,766 parameters per statement.
            let per_statement = (32_000 / table.columns.len().max(1)).max(1);
            loop {
                match input.recv().await {
                    Some(RestorePart::Rows(batch)) => {
                        let mut batch = batch.into_iter().peekable();
                        while batch.peek().is_some() {
                            let chunk: Vec<Vec<Value>> = batch.by_ref().take(per_statement).collect();
                            let mut qb = insert_into::<Sqlite>(&table);
                            qb.push_values(chunk, |mut b, row| {
                                for v in row {
                                    match v {
                                        Value::Null => b.push_bind(None::<i64>),
                                        Value::Integer(n) | Value::Timestamp(n) => b.push_bind(n),
                                        Value::Real(x) => b.push_bind(x),
                                        Value::Text(t) => b.push_bind(t),
                                        Value::Uuid(u) => b.push_bind(u),
                                        Value::Blob(bytes) => b.push_bind(bytes),
                                    };
                                }
                            });
                            qb.build().execute(&mut *tx).await.map_err(interpret)?;
                        }
                    }
                    Some(RestorePart::EndTable) => break,
                    Some(_) => return Err(StoreError::Config("restore input out of order".into())),
                    None => return Err(aborted()),
                }
            }
            for create in rebuild {
                sqlx::query(sqlx::AssertSqlSafe(create))
                    .execute(&mut *tx)
                    .await
                    .map_err(interpret)?;
            }
        }
        // AUTOINCREMENT follows explicit ids by itself (sqlite_sequence keeps the largest).
        tx.commit().await.map_err(interpret)?;
        sqlx::query("PRAGMA shrink_memory")
            .execute(&self.write)
            .await
            .map_err(interpret)?;
        Ok(())
    }
}

fn insert_into<DB: sqlx::Database>(table: &Table) -> QueryBuilder<DB>
where
    <DB as sqlx::Database>::Arguments: Default,
{
    let columns: Vec<String> = table.columns.iter().map(|c| ident(&c.name)).collect();
    let mut qb = QueryBuilder::new("INSERT INTO ");
    qb.push(ident(&table.name));
    qb.push(" (");
    qb.push(columns.join(", "));
    qb.push(") ");
    qb
}

/// Drops `table`'s secondary indexes (not those behind constraints); returns the statements
/// that recreate them.
async fn drop_sqlite_indexes(conn: &mut sqlx::SqliteConnection, table: &str) -> StoreResult<Vec<String>> {
    let interpret = super::repo::interpret;
    let found: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 AND sql IS NOT NULL",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(interpret)?;
    let mut creates = Vec::with_capacity(found.len());
    for (name, create) in found {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX {}", ident(&name))))
            .execute(&mut *conn)
            .await
            .map_err(interpret)?;
        creates.push(create);
    }
    Ok(creates)
}

/// The PostgreSQL twin of `drop_sqlite_indexes`, with more sort memory for the rebuild.
async fn drop_pg_indexes(conn: &mut sqlx::PgConnection, table: &str) -> StoreResult<Vec<String>> {
    let interpret = super::repo::interpret;
    sqlx::query("SET LOCAL maintenance_work_mem = '256MB'")
        .execute(&mut *conn)
        .await
        .map_err(interpret)?;
    let found: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.indexname::text, i.indexdef FROM pg_indexes i \
         WHERE i.schemaname = current_schema() AND i.tablename = $1 \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(interpret)?;
    let mut creates = Vec::with_capacity(found.len());
    for (name, create) in found {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX {}", ident(&name))))
            .execute(&mut *conn)
            .await
            .map_err(interpret)?;
        creates.push(create);
    }
    Ok(creates)
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

async fn pg_catalog(conn: &mut sqlx::PgConnection) -> StoreResult<Catalog> {
    let interpret = super::repo::interpret;
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
        let logical = pg_logical_type(&udt).ok_or_else(|| unportable(&table, &column, &udt))?;
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

fn pg_value(table: &Table, i: usize, row: &sqlx::postgres::PgRow) -> Result<Value, sqlx::Error> {
    Ok(match table.columns[i].logical {
        LogicalType::Uuid => row
            .try_get::<Option<Uuid>, _>(i)?
            .map_or(Value::Null, Value::Uuid),
        LogicalType::Timestamp => row
            .try_get::<Option<chrono::DateTime<chrono::Utc>>, _>(i)?
            .map_or(Value::Null, |t| Value::Timestamp(t.timestamp_micros())),
        LogicalType::Integer => row
            .try_get::<Option<i64>, _>(i)?
            .map_or(Value::Null, Value::Integer),
        LogicalType::Real => row.try_get::<Option<f64>, _>(i)?.map_or(Value::Null, Value::Real),
        LogicalType::Text => row
            .try_get::<Option<String>, _>(i)?
            .map_or(Value::Null, Value::Text),
        LogicalType::Blob => row
            .try_get::<Option<Vec<u8>>, _>(i)?
            .map_or(Value::Null, Value::Blob),
    })
}

impl PgStore {
    async fn snapshot(&self, out: mpsc::Sender<SnapshotPart>) -> StoreResult<()> {
        let interpret = super::repo::interpret;
        let mut tx = self
            .read
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(interpret)?;
        let catalog = pg_catalog(&mut tx).await?;
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
            let sql = select_all(table, true);
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&mut *tx);
            let mut batch = Vec::with_capacity(ROWS_PER_BATCH);
            while let Some(row) = rows.try_next().await.map_err(interpret)? {
                let values = (0..table.columns.len())
                    .map(|i| pg_value(table, i, &row))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(interpret)?;
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

    async fn restore(&self, mut input: mpsc::Receiver<RestorePart>) -> StoreResult<()> {
        let interpret = super::repo::interpret;
        let mut tx = self.write.begin().await.map_err(interpret)?;
        loop {
            let Some(part) = input.recv().await else {
                return Err(aborted());
            };
            let (table, rows) = match part {
                RestorePart::Table { table, rows } => (table, rows),
                RestorePart::Commit => break,
                _ => return Err(StoreError::Config("restore input out of order".into())),
            };
            let rebuild = if rows >= super::REBUILD_INDEXES_FROM {
                drop_pg_indexes(&mut tx, &table.name).await?
            } else {
                Vec::new()
            };
            let columns: Vec<String> = table.columns.iter().map(|c| ident(&c.name)).collect();
            // COPY writes identity columns as given, like INSERT … OVERRIDING SYSTEM VALUE.
            let statement = format!("COPY {} ({}) FROM STDIN", ident(&table.name), columns.join(", "));
            let mut copy = tx.copy_in_raw(&statement).await.map_err(interpret)?;
            let ended = loop {
                match input.recv().await {
                    Some(RestorePart::Rows(batch)) => {
                        let mut data = String::with_capacity(batch.len() * 256);
                        for row in &batch {
                            copy_row(&mut data, row);
                        }
                        copy.send(data.into_bytes()).await.map_err(interpret)?;
                    }
                    Some(RestorePart::EndTable) => break true,
                    _ => break false,
                }
            };
            if !ended {
                let _ = copy.abort("restore abandoned").await;
                return Err(aborted());
            }
            copy.finish().await.map_err(interpret)?;
            for create in rebuild {
                sqlx::query(sqlx::AssertSqlSafe(create))
                    .execute(&mut *tx)
                    .await
                    .map_err(interpret)?;
            }
        }
        set_sequences_past_ids(&mut tx).await?;
        tx.commit().await.map_err(interpret)?;
        Ok(())
    }
}

/// Moves every identity or serial sequence past the largest id its column holds, so new rows
/// do not collide with restored ones.
async fn set_sequences_past_ids(conn: &mut sqlx::PgConnection) -> StoreResult<()> {
    let interpret = super::repo::interpret;
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

/// One row in COPY's text format.
fn copy_row(out: &mut String, row: &[Value]) {
    use std::fmt::Write as _;
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
            Value::Timestamp(micros) => match chrono::DateTime::from_timestamp_micros(*micros) {
                Some(t) => out.push_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
                None => out.push_str("\\N"),
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str) -> Table {
        Table {
            name: name.into(),
            columns: Vec::new(),
            key: Vec::new(),
        }
    }

    #[test]
    fn parents_come_before_children() {
        let refs = vec![
            ("a_child".to_string(), "parent".to_string()),
            ("parent".to_string(), "root".to_string()),
        ];
        let order: Vec<String> = in_foreign_key_order(
            vec![table("a_child"), table("parent"), table("root"), table("zed")],
            &refs,
        )
        .into_iter()
        .map(|t| t.name)
        .collect();
        assert_eq!(order, ["root", "parent", "a_child", "zed"]);
    }

    #[test]
    fn sqlite_types_follow_column_names() {
        assert_eq!(sqlite_logical_type("BLOB", "lead_id"), Some(LogicalType::Uuid));
        assert_eq!(sqlite_logical_type("BLOB", "payload"), Some(LogicalType::Blob));
        assert_eq!(
            sqlite_logical_type("INTEGER", "created_at"),
            Some(LogicalType::Timestamp)
        );
        assert_eq!(
            sqlite_logical_type("INTEGER", "lease_until"),
            Some(LogicalType::Timestamp)
        );
        assert_eq!(
            sqlite_logical_type("INTEGER", "score"),
            Some(LogicalType::Integer)
        );
        assert_eq!(sqlite_logical_type("NUMERIC", "score"), None);
    }

    #[test]
    fn copy_rows_escape_text_and_encode_bytes() {
        let mut out = String::new();
        copy_row(
            &mut out,
            &[
                Value::Text("a\tb\\c\nd".into()),
                Value::Null,
                Value::Blob(vec![0, 255]),
                Value::Timestamp(1_000_001),
            ],
        );
        assert_eq!(
            out,
            "a\\tb\\\\c\\nd\t\\N\t\\\\x00ff\t1970-01-01T00:00:01.000001Z\n"
        );
    }
}
