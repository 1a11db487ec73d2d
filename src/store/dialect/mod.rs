//! The dialect seam: the one place where SQLite and PostgreSQL differ. Every repository
//! method is written once (in the other `store` modules, as plain `impl Store` methods) against
//! what this module offers:
//! - `Sql`, a statement under construction: SQL text and bound `Value`s, with each backend's
//!   placeholders (`?` or `$n`); a null is written as the literal `NULL`;
//! - `Conn`, a transaction or a pooled connection that runs `Sql` and returns `Row`s, and
//!   appends rows in bulk (`COPY` on PostgreSQL, multi-row `INSERT` on SQLite);
//! - `Row::get`, which reads a column into a Rust type the way the backend stores it
//!   (timestamps: `timestamptz` or INTEGER microseconds; uuids: `uuid` or a 16-byte BLOB);
//! - `Dialect`'s few words that differ (`FOR UPDATE`, `SKIP LOCKED`) and `interpret`, which maps
//!   database errors to `StoreError` once, unique violations by constraint.
//!
//! Connection set-up, migrations and what only one backend has (the SQLite read path, the
//! PostgreSQL listener and COPY format) live in `sqlite.rs` and `postgres.rs` below.

pub(crate) mod postgres;
pub(crate) mod sqlite;

use super::{Db, Store, StoreError, StoreResult};
use crate::domain::{ColumnType, Lead, Timestamp, Value, lead_from_columns, read_columns};
use chrono::DateTime;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments as _, Column as _, Postgres, Row as _, Sqlite, TypeInfo as _};
use std::fmt::{Display, Write as _};
use uuid::Uuid;

/// Which backend a statement is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `sqlite` or `postgres`.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    /// Locks the rows a read-then-write transaction works on. SQLite needs nothing: its one
    /// writer connection serialises writers.
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// Lets concurrent claimers skip each other's rows (job claims).
    pub(crate) fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Most values one statement may bind (SQLite's limit is 32,766).
    pub(crate) fn max_binds(self) -> usize {
        32_000
    }
}

/// A statement under construction: SQL text and the values bound to its placeholders.
/// Values are always bound, never formatted into the text.
#[derive(Clone, Debug)]
pub(crate) struct Sql {
    dialect: Dialect,
    text: String,
    args: Vec<Value>,
}

impl Sql {
    pub(crate) fn new(dialect: Dialect, init: impl Into<String>) -> Self {
        Self {
            dialect,
            text: init.into(),
            args: Vec::new(),
        }
    }

    #[cfg(test)]
    fn text(&self) -> &str {
        &self.text
    }

    pub(crate) fn into_parts(self) -> (String, Vec<Value>) {
        (self.text, self.args)
    }

    /// Appends SQL text (never a value).
    pub(crate) fn push(&mut self, sql: impl Display) -> &mut Self {
        let _ = write!(self.text, "{sql}");
        self
    }

    /// Appends a placeholder bound to `v`; a null becomes the literal `NULL`, which needs no
    /// type on either backend.
    pub(crate) fn bind(&mut self, v: impl Into<Value>) -> &mut Self {
        match v.into() {
            Value::Null => self.text.push_str("NULL"),
            v => {
                self.args.push(v);
                match self.dialect {
                    Dialect::Sqlite => self.text.push('?'),
                    Dialect::Postgres => {
                        let _ = write!(self.text, "${}", self.args.len());
                    }
                }
            }
        }
        self
    }

    /// Appends `v1, v2, …`, each bound.
    pub(crate) fn bind_list<V: Into<Value>>(&mut self, values: impl IntoIterator<Item = V>) -> &mut Self {
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(v);
        }
        self
    }

    fn sqlite_args(args: Vec<Value>) -> Result<SqliteArguments, sqlx::error::BoxDynError> {
        let mut out = SqliteArguments::default();
        for v in args {
            match v {
                Value::Null => out.add(None::<i64>)?,
                Value::Integer(n) => out.add(n)?,
                Value::Real(x) => out.add(x)?,
                Value::Text(s) => out.add(s)?,
                Value::Uuid(u) => out.add(u)?,
                Value::Timestamp(t) => out.add(t.timestamp_micros())?,
                Value::Blob(b) => out.add(b)?,
            }
        }
        Ok(out)
    }

    fn pg_args(args: Vec<Value>) -> Result<PgArguments, sqlx::error::BoxDynError> {
        let mut out = PgArguments::default();
        for v in args {
            match v {
                Value::Null => out.add(None::<String>)?,
                Value::Integer(n) => out.add(n)?,
                Value::Real(x) => out.add(x)?,
                Value::Text(s) => out.add(s)?,
                Value::Uuid(u) => out.add(u)?,
                Value::Timestamp(t) => out.add(t)?,
                Value::Blob(b) => out.add(b)?,
            }
        }
        Ok(out)
    }
}

/// A row read through sqlx from either backend.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

/// A Rust type a column can be read into, as each backend stores it.
pub(crate) trait FromColumn: Sized {
    fn sqlite(row: &SqliteRow, i: usize) -> Result<Self, sqlx::Error>;
    fn postgres(row: &PgRow, i: usize) -> Result<Self, sqlx::Error>;
}

/// Types both backends store and sqlx decodes alike.
macro_rules! same_on_both {
    ($($t:ty),*) => {$(
        impl FromColumn for $t {
            fn sqlite(row: &SqliteRow, i: usize) -> Result<Self, sqlx::Error> {
                row.try_get(i)
            }
            fn postgres(row: &PgRow, i: usize) -> Result<Self, sqlx::Error> {
                row.try_get(i)
            }
        }
    )*};
}
same_on_both!(
    String,
    Option<String>,
    Uuid,
    Option<Uuid>,
    Vec<u8>,
    Option<Vec<u8>>,
    f64,
    Option<f64>
);

/// A PostgreSQL integer column of any width (and booleans as 0/1).
fn pg_int(row: &PgRow, i: usize) -> Result<Option<i64>, sqlx::Error> {
    match row.column(i).type_info().name() {
        "INT2" => Ok(row.try_get::<Option<i16>, _>(i)?.map(i64::from)),
        "INT4" => Ok(row.try_get::<Option<i32>, _>(i)?.map(i64::from)),
        "BOOL" => Ok(row.try_get::<Option<bool>, _>(i)?.map(i64::from)),
        _ => row.try_get(i),
    }
}

fn null_at(i: usize) -> sqlx::Error {
    sqlx::Error::Decode(format!("column {i} is null").into())
}

fn micros(v: i64) -> Result<Timestamp, sqlx::Error> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| sqlx::Error::Decode("timestamp out of range".into()))
}

impl FromColumn for Option<i64> {
    fn sqlite(row: &SqliteRow, i: usize) -> Result<Self, sqlx::Error> {
        row.try_get(i)
    }
    fn postgres(row: &PgRow, i: usize) -> Result<Self, sqlx::Error> {
        pg_int(row, i)
    }
}

impl FromColumn for i64 {
    fn sqlite(row: &SqliteRow, i: usize) -> Result<Self, sqlx::Error> {
        row.try_get(i)
    }
    fn postgres(row: &PgRow, i: usize) -> Result<Self, sqlx::Error> {
        pg_int(row, i)?.ok_or_else(|| null_at(i))
    }
}

impl FromColumn for bool {
    fn sqlite(row: &SqliteRow, i: usize) -> Result<Self, sqlx::Error> {
        Ok(i64::sqlite(row, i)? != 0)
    }
    fn postgres(row: &PgRow, i: usize) -> Result<Self, sqlx::Error> {
        Ok(i64::postgres(row, i)? != 0)
    }
}

impl FromColumn for Option<Timestamp> {
    fn sqlite(row: &SqliteRow, i: usize) -> Result<Self, sqlx::Error> {
        row.try_get::<Option<i64>, _>(i)?.map(micros).transpose()
    }
    fn postgres(row: &PgRow, i: usize) -> Result<Self, sqlx::Error> {
        row.try_get(i)
    }
}

impl FromColumn for Timestamp {
    fn sqlite(row: &SqliteRow, i: usize) -> Result<Self, sqlx::Error> {
        micros(row.try_get(i)?)
    }
    fn postgres(row: &PgRow, i: usize) -> Result<Self, sqlx::Error> {
        row.try_get(i)
    }
}

impl Row {
    /// Column `i` as a `T`.
    pub(crate) fn get<T: FromColumn>(&self, i: usize) -> StoreResult<T> {
        match self {
            Row::Sqlite(r) => T::sqlite(r, i),
            Row::Postgres(r) => T::postgres(r, i),
        }
        .map_err(interpret)
    }

    /// Column `i`, text holding JSON, decoded.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self, i: usize) -> StoreResult<T> {
        let raw: String = self.get(i)?;
        serde_json::from_str(&raw).map_err(|e| StoreError::corrupt(format!("column {i}: {e}")))
    }

    /// Column `i`, nullable text holding JSON, decoded.
    pub(crate) fn opt_json<T: serde::de::DeserializeOwned>(&self, i: usize) -> StoreResult<Option<T>> {
        let raw: Option<String> = self.get(i)?;
        raw.map(|raw| serde_json::from_str(&raw).map_err(|e| StoreError::corrupt(format!("column {i}: {e}"))))
            .transpose()
    }

    /// A non-negative count (clamped).
    pub(crate) fn count(&self, i: usize) -> StoreResult<u64> {
        Ok(self.get::<i64>(i)?.max(0) as u64)
    }

    /// Column `i` as a portable value of type `ty`.
    pub(crate) fn value(&self, i: usize, ty: ColumnType) -> StoreResult<Value> {
        match self {
            Row::Sqlite(r) => column_value(r, i, ty),
            Row::Postgres(r) => column_value(r, i, ty),
        }
    }
}

/// A row of one backend, read column by column through `FromColumn`.
pub(crate) trait BackendRow {
    fn read<T: FromColumn>(&self, i: usize) -> Result<T, sqlx::Error>;
}

impl BackendRow for SqliteRow {
    fn read<T: FromColumn>(&self, i: usize) -> Result<T, sqlx::Error> {
        T::sqlite(self, i)
    }
}

impl BackendRow for PgRow {
    fn read<T: FromColumn>(&self, i: usize) -> Result<T, sqlx::Error> {
        T::postgres(self, i)
    }
}

/// Column `i` of a backend's row as a portable value of type `ty`.
pub(crate) fn column_value<R: BackendRow>(row: &R, i: usize, ty: ColumnType) -> StoreResult<Value> {
    let value = match ty {
        ColumnType::Uuid => row.read::<Option<Uuid>>(i)?.map_or(Value::Null, Value::Uuid),
        ColumnType::Timestamp => row
            .read::<Option<Timestamp>>(i)?
            .map_or(Value::Null, Value::Timestamp),
        ColumnType::Integer => row.read::<Option<i64>>(i)?.map_or(Value::Null, Value::Integer),
        ColumnType::Real => row.read::<Option<f64>>(i)?.map_or(Value::Null, Value::Real),
        ColumnType::Text => row.read::<Option<String>>(i)?.map_or(Value::Null, Value::Text),
        ColumnType::Blob => row.read::<Option<Vec<u8>>>(i)?.map_or(Value::Null, Value::Blob),
    };
    Ok(value)
}

/// A transaction, or a pooled connection that commits every statement by itself.
pub(crate) struct Conn(ConnKind);

enum ConnKind {
    SqliteTx(sqlx::Transaction<'static, Sqlite>),
    PostgresTx(sqlx::Transaction<'static, Postgres>),
    Sqlite(sqlx::pool::PoolConnection<Sqlite>),
    Postgres(sqlx::pool::PoolConnection<Postgres>),
}

/// Runs one statement on a connection of either backend: `$run!(conn, query)` is evaluated
/// with `conn` the backend's `&mut Connection` and `query` its sqlx query.
/// Statements binding more values than this are not kept prepared: they are the one-off shapes
/// of bulk work (a multi-row INSERT, the IN list of an import chunk), each with its own row
/// count, and a cached SQLite statement of 30,000 parameters holds megabytes: kept, a 1M-row
/// import grew the process by hundreds of MB.
pub(crate) const CACHED_BINDS_MAX: usize = 256;

macro_rules! on_conn {
    ($self:expr, $sql:expr, |$c:ident, $q:ident| $run:expr) => {{
        let (text, args) = $sql.into_parts();
        let persistent = args.len() <= CACHED_BINDS_MAX;
        match &mut $self.0 {
            ConnKind::SqliteTx(tx) => {
                let $c = &mut **tx;
                let $q = sqlx::query_with(
                    sqlx::AssertSqlSafe(text),
                    Sql::sqlite_args(args).map_err(StoreError::Database)?,
                )
                .persistent(persistent);
                $run.map(|v| v.into())
            }
            ConnKind::Sqlite(pooled) => {
                let $c = &mut **pooled;
                let $q = sqlx::query_with(
                    sqlx::AssertSqlSafe(text),
                    Sql::sqlite_args(args).map_err(StoreError::Database)?,
                )
                .persistent(persistent);
                $run.map(|v| v.into())
            }
            ConnKind::PostgresTx(tx) => {
                let $c = &mut **tx;
                let $q = sqlx::query_with(
                    sqlx::AssertSqlSafe(text),
                    Sql::pg_args(args).map_err(StoreError::Database)?,
                )
                .persistent(persistent);
                $run.map(|v| v.into())
            }
            ConnKind::Postgres(pooled) => {
                let $c = &mut **pooled;
                let $q = sqlx::query_with(
                    sqlx::AssertSqlSafe(text),
                    Sql::pg_args(args).map_err(StoreError::Database)?,
                )
                .persistent(persistent);
                $run.map(|v| v.into())
            }
        }
        .map_err(interpret)
    }};
}

/// What a statement returns, in the shape every backend's result converts into.
struct Done(u64);
impl From<sqlx::sqlite::SqliteQueryResult> for Done {
    fn from(r: sqlx::sqlite::SqliteQueryResult) -> Self {
        Done(r.rows_affected())
    }
}
impl From<sqlx::postgres::PgQueryResult> for Done {
    fn from(r: sqlx::postgres::PgQueryResult) -> Self {
        Done(r.rows_affected())
    }
}

struct Rows(Vec<Row>);
impl From<Vec<SqliteRow>> for Rows {
    fn from(r: Vec<SqliteRow>) -> Self {
        Rows(r.into_iter().map(Row::Sqlite).collect())
    }
}
impl From<Vec<PgRow>> for Rows {
    fn from(r: Vec<PgRow>) -> Self {
        Rows(r.into_iter().map(Row::Postgres).collect())
    }
}

struct MaybeRow(Option<Row>);
impl From<Option<SqliteRow>> for MaybeRow {
    fn from(r: Option<SqliteRow>) -> Self {
        MaybeRow(r.map(Row::Sqlite))
    }
}
impl From<Option<PgRow>> for MaybeRow {
    fn from(r: Option<PgRow>) -> Self {
        MaybeRow(r.map(Row::Postgres))
    }
}

impl Conn {
    pub(crate) fn dialect(&self) -> Dialect {
        match self.0 {
            ConnKind::SqliteTx(_) | ConnKind::Sqlite(_) => Dialect::Sqlite,
            ConnKind::PostgresTx(_) | ConnKind::Postgres(_) => Dialect::Postgres,
        }
    }

    /// A new statement for this connection's backend.
    pub(crate) fn sql(&self, init: impl Into<String>) -> Sql {
        Sql::new(self.dialect(), init)
    }

    /// Runs a statement; returns how many rows it changed.
    pub(crate) async fn execute(&mut self, sql: Sql) -> StoreResult<u64> {
        let done: Done = on_conn!(self, sql, |c, q| q.execute(c).await)?;
        Ok(done.0)
    }

    pub(crate) async fn fetch_all(&mut self, sql: Sql) -> StoreResult<Vec<Row>> {
        let rows: Rows = on_conn!(self, sql, |c, q| q.fetch_all(c).await)?;
        Ok(rows.0)
    }

    pub(crate) async fn fetch_optional(&mut self, sql: Sql) -> StoreResult<Option<Row>> {
        let row: MaybeRow = on_conn!(self, sql, |c, q| q.fetch_optional(c).await)?;
        Ok(row.0)
    }

    pub(crate) async fn fetch_one(&mut self, sql: Sql) -> StoreResult<Row> {
        self.fetch_optional(sql).await?.ok_or(StoreError::NotFound)
    }

    /// Runs SQL text that binds nothing (DDL, settings, statements read from the catalog).
    pub(crate) async fn execute_text(&mut self, text: impl Into<String>) -> StoreResult<()> {
        let sql = self.sql(text);
        self.execute(sql).await.map(drop)
    }

    /// Appends rows to `table` within this transaction, every row with a value per column:
    /// multi-row `INSERT`s, or on PostgreSQL `COPY … FROM STDIN` from `COPY_FROM` rows on.
    pub(crate) async fn append_rows(
        &mut self,
        table: &str,
        columns: &[&str],
        rows: impl IntoIterator<Item = Vec<Value>>,
    ) -> StoreResult<u64> {
        let rows: Vec<Vec<Value>> = rows.into_iter().collect();
        if rows.is_empty() {
            return Ok(0);
        }
        if rows.len() >= COPY_FROM
            && let Some(pg) = self.as_postgres()
        {
            return postgres::copy_rows(pg, table, columns, rows).await;
        }
        let per_statement = (self.dialect().max_binds() / columns.len().max(1)).max(1);
        let mut rows = rows.into_iter().peekable();
        let mut written = 0;
        while rows.peek().is_some() {
            let mut sql = self.sql(insert_into(table, columns));
            if self.dialect() == Dialect::Postgres {
                // explicit ids, as COPY writes them (restores carry identity columns)
                sql.push("OVERRIDING SYSTEM VALUE VALUES ");
            } else {
                sql.push("VALUES ");
            }
            for (i, row) in rows.by_ref().take(per_statement).enumerate() {
                sql.push(if i == 0 { "(" } else { ", (" });
                for (j, v) in row.into_iter().enumerate() {
                    if j > 0 {
                        sql.push(", ");
                    }
                    sql.bind_any(v);
                }
                sql.push(")");
                written += 1;
            }
            self.execute(sql).await?;
        }
        Ok(written)
    }

    /// Drops the secondary indexes of `tables` (those not behind a constraint), for a bulk
    /// load that rebuilds them faster than it would maintain them; returns the statements
    /// that recreate them (`rebuild_indexes`).
    pub(crate) async fn drop_secondary_indexes(&mut self, tables: &[&str]) -> StoreResult<Vec<String>> {
        let mut sql = self.sql(match self.dialect() {
            Dialect::Sqlite => {
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ("
            }
            Dialect::Postgres => {
                "SELECT i.indexname::text, i.indexdef FROM pg_indexes i \
                 WHERE i.schemaname = current_schema() \
                 AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname) \
                 AND i.tablename IN ("
            }
        });
        sql.bind_list(tables.iter().copied());
        sql.push(")");
        if self.dialect() == Dialect::Postgres {
            self.execute_text("SET LOCAL maintenance_work_mem = '256MB'")
                .await?;
        }
        let mut creates = Vec::new();
        for row in self.fetch_all(sql).await? {
            let name: String = row.get(0)?;
            creates.push(row.get::<String>(1)?);
            self.execute_text(format!("DROP INDEX {}", ident(&name))).await?;
        }
        Ok(creates)
    }

    /// Recreates what `drop_secondary_indexes` dropped.
    pub(crate) async fn rebuild_indexes(&mut self, creates: Vec<String>) -> StoreResult<()> {
        let rebuilt = !creates.is_empty();
        for create in creates {
            self.execute_text(create).await?;
        }
        if rebuilt && self.dialect() == Dialect::Sqlite {
            // give back the memory the sorts used
            self.execute_text("PRAGMA shrink_memory").await?;
        }
        Ok(())
    }

    pub(crate) async fn commit(self) -> StoreResult<()> {
        match self.0 {
            ConnKind::SqliteTx(tx) => tx.commit().await.map_err(interpret),
            ConnKind::PostgresTx(tx) => tx.commit().await.map_err(interpret),
            ConnKind::Sqlite(_) | ConnKind::Postgres(_) => Ok(()),
        }
    }

    pub(crate) async fn rollback(self) -> StoreResult<()> {
        match self.0 {
            ConnKind::SqliteTx(tx) => tx.rollback().await.map_err(interpret),
            ConnKind::PostgresTx(tx) => tx.rollback().await.map_err(interpret),
            ConnKind::Sqlite(_) | ConnKind::Postgres(_) => Ok(()),
        }
    }

    pub(crate) fn sqlite_tx(tx: sqlx::Transaction<'static, Sqlite>) -> Self {
        Conn(ConnKind::SqliteTx(tx))
    }
    pub(crate) fn postgres_tx(tx: sqlx::Transaction<'static, Postgres>) -> Self {
        Conn(ConnKind::PostgresTx(tx))
    }
    pub(crate) fn sqlite_pooled(c: sqlx::pool::PoolConnection<Sqlite>) -> Self {
        Conn(ConnKind::Sqlite(c))
    }
    pub(crate) fn postgres_pooled(c: sqlx::pool::PoolConnection<Postgres>) -> Self {
        Conn(ConnKind::Postgres(c))
    }

    /// The PostgreSQL connection, for what only PostgreSQL does (NOTIFY); `None` on SQLite.
    pub(crate) fn as_postgres(&mut self) -> Option<&mut sqlx::PgConnection> {
        match &mut self.0 {
            ConnKind::PostgresTx(tx) => Some(&mut **tx),
            ConnKind::Postgres(pooled) => Some(&mut **pooled),
            ConnKind::SqliteTx(_) | ConnKind::Sqlite(_) => None,
        }
    }
}

impl Sql {
    /// Binds `v`, on SQLite a null too (an untyped NULL placeholder, so that statements of
    /// many rows keep one shape and one cached plan); PostgreSQL needs a type for a bound
    /// null, so there it is the literal.
    fn bind_any(&mut self, v: Value) {
        if v == Value::Null && self.dialect == Dialect::Sqlite {
            self.args.push(Value::Null);
            self.text.push('?');
        } else {
            self.bind(v);
        }
    }
}

/// Rows from which a PostgreSQL append is a COPY rather than an INSERT: COPY costs an extra
/// round trip, so single writes stay INSERTs.
const COPY_FROM: usize = 64;

/// `INSERT INTO table (columns) `.
pub(crate) fn insert_into(table: &str, columns: &[&str]) -> String {
    let columns: Vec<String> = columns.iter().map(|c| ident(c)).collect();
    format!("INSERT INTO {} ({}) ", ident(table), columns.join(", "))
}

/// A quoted identifier. Names come from the code or the catalog, never from input.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A unique constraint a write can run into, and the API field a violation is about.
struct Unique {
    /// The constraint's (or unique index's) name on PostgreSQL.
    postgres: &'static str,
    /// SQLite's spelling: the columns it names in "UNIQUE constraint failed: …".
    sqlite: &'static str,
    field: &'static str,
}

/// Every unique constraint of the schema. A contract test checks the list against both
/// catalogs, so a new constraint cannot be missed.
const UNIQUE: &[Unique] = &[
    Unique {
        postgres: "workspaces_pkey",
        sqlite: "workspaces.id",
        field: "id",
    },
    Unique {
        postgres: "workspaces_slug_key",
        sqlite: "workspaces.slug",
        field: "slug",
    },
    Unique {
        postgres: "settings_pkey",
        sqlite: "settings.key",
        field: "key",
    },
    Unique {
        postgres: "leads_pkey",
        sqlite: "leads.id",
        field: "id",
    },
    Unique {
        postgres: "leads_email",
        sqlite: "leads.workspace_id, leads.email",
        field: "email",
    },
    Unique {
        postgres: "lead_tags_pkey",
        sqlite: "lead_tags.workspace_id, lead_tags.tag, lead_tags.lead_id",
        field: "tag",
    },
    Unique {
        postgres: "enrichment_records_pkey",
        sqlite: "enrichment_records.workspace_id, enrichment_records.lead_id, enrichment_records.grp",
        field: "group",
    },
    Unique {
        postgres: "enrichment_settings_pkey",
        sqlite: "enrichment_settings.workspace_id",
        field: "workspace",
    },
    Unique {
        postgres: "provider_configs_pkey",
        sqlite: "provider_configs.workspace_id, provider_configs.provider",
        field: "provider",
    },
    Unique {
        postgres: "provider_usage_pkey",
        sqlite: "provider_usage.workspace_id, provider_usage.provider, provider_usage.period",
        field: "period",
    },
    Unique {
        postgres: "events_pkey",
        sqlite: "events.id",
        field: "id",
    },
    Unique {
        postgres: "events_by_seq",
        sqlite: "events.workspace_id, events.seq",
        field: "seq",
    },
    Unique {
        postgres: "jobs_pkey",
        sqlite: "jobs.id",
        field: "id",
    },
    Unique {
        postgres: "jobs_unique_key",
        sqlite: "jobs.unique_key",
        field: "uniqueKey",
    },
    Unique {
        postgres: "schedules_pkey",
        sqlite: "schedules.name",
        field: "name",
    },
    Unique {
        postgres: "webhook_endpoints_pkey",
        sqlite: "webhook_endpoints.id",
        field: "id",
    },
    Unique {
        postgres: "crm_connections_pkey",
        sqlite: "crm_connections.id",
        field: "id",
    },
    Unique {
        postgres: "crm_links_pkey",
        sqlite: "crm_links.connection_id, crm_links.lead_id",
        field: "leadId",
    },
    Unique {
        postgres: "crm_links_by_external",
        sqlite: "crm_links.connection_id, crm_links.external_id",
        field: "externalId",
    },
    Unique {
        postgres: "crm_sync_runs_pkey",
        sqlite: "crm_sync_runs.id",
        field: "id",
    },
    Unique {
        postgres: "crm_inbound_events_pkey",
        sqlite: "crm_inbound_events.connection_id, crm_inbound_events.event_id",
        field: "eventId",
    },
    Unique {
        postgres: "crm_webhook_receipts_pkey",
        sqlite: "crm_webhook_receipts.id",
        field: "id",
    },
    Unique {
        postgres: "webhook_deliveries_pkey",
        sqlite: "webhook_deliveries.id",
        field: "id",
    },
    Unique {
        postgres: "erasure_tombstones_pkey",
        sqlite: "erasure_tombstones.workspace_id, erasure_tombstones.email_hash",
        field: "email",
    },
    Unique {
        postgres: "imports_pkey",
        sqlite: "imports.id",
        field: "id",
    },
    Unique {
        postgres: "api_keys_pkey",
        sqlite: "api_keys.id",
        field: "id",
    },
    Unique {
        postgres: "leases_pkey",
        sqlite: "leases.name",
        field: "name",
    },
    Unique {
        postgres: "event_exports_pkey",
        sqlite: "event_exports.workspace_id",
        field: "workspaceId",
    },
    Unique {
        postgres: "campaigns_pkey",
        sqlite: "campaigns.id",
        field: "id",
    },
    Unique {
        postgres: "campaign_enrollments_pkey",
        sqlite: "campaign_enrollments.id",
        field: "id",
    },
    Unique {
        postgres: "campaign_enrollments_by_lead",
        sqlite: "campaign_enrollments.campaign_id, campaign_enrollments.lead_id",
        field: "leadId",
    },
    Unique {
        postgres: "campaign_activity_pkey",
        sqlite: "campaign_activity.id",
        field: "id",
    },
    Unique {
        postgres: "campaign_messages_pkey",
        sqlite: "campaign_messages.message_id",
        field: "messageId",
    },
    Unique {
        postgres: "campaign_messages_by_step",
        sqlite: "campaign_messages.campaign_id, campaign_messages.lead_id, campaign_messages.entry, campaign_messages.step",
        field: "step",
    },
    Unique {
        postgres: "send_counters_pkey",
        sqlite: "send_counters.scope, send_counters.window_start",
        field: "scope",
    },
    Unique {
        postgres: "mail_suppressions_pkey",
        sqlite: "mail_suppressions.workspace_id, mail_suppressions.email_hash",
        field: "email",
    },
    Unique {
        postgres: "mail_events_pkey",
        sqlite: "mail_events.provider, mail_events.event_id",
        field: "eventId",
    },
    Unique {
        postgres: "import_errors_pkey",
        sqlite: "import_errors.import_id, import_errors.row_number, import_errors.seq",
        field: "row",
    },
    Unique {
        postgres: "import_uploads_pkey",
        sqlite: "import_uploads.import_id, import_uploads.seq",
        field: "seq",
    },
    Unique {
        postgres: "retention_policies_pkey",
        sqlite: "retention_policies.workspace_id",
        field: "workspace",
    },
    Unique {
        postgres: "retention_runs_pkey",
        sqlite: "retention_runs.id",
        field: "id",
    },
    Unique {
        postgres: "erasures_pkey",
        sqlite: "erasures.id",
        field: "id",
    },
];

/// The names of the unique constraints `interpret` knows, per backend (for the contract test
/// that holds them against the catalogs).
pub fn known_unique_constraints(dialect: Dialect) -> Vec<&'static str> {
    UNIQUE
        .iter()
        .map(|u| match dialect {
            Dialect::Sqlite => u.sqlite,
            Dialect::Postgres => u.postgres,
        })
        .collect()
}

/// The unique constraint a violation reports: its name on PostgreSQL, its column list on
/// SQLite.
fn violated(db: &dyn sqlx::error::DatabaseError) -> Option<&'static Unique> {
    if let Some(name) = db.constraint() {
        return UNIQUE.iter().find(|u| u.postgres == name);
    }
    let columns = db.message().strip_prefix("UNIQUE constraint failed: ")?;
    UNIQUE.iter().find(|u| u.sqlite == columns.trim())
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        interpret(e)
    }
}

/// Interprets a database error once: a unique violation becomes `Conflict` naming the field
/// its constraint is about (an unknown constraint stays a database error), a foreign-key
/// violation `NotFound` (a write for a workspace or lead that does not exist).
pub(crate) fn interpret(e: sqlx::Error) -> StoreError {
    if let Some(db) = e.as_database_error() {
        if db.is_unique_violation()
            && let Some(unique) = violated(db)
        {
            return StoreError::Conflict { field: unique.field };
        }
        if db.is_foreign_key_violation() {
            return StoreError::NotFound;
        }
    }
    match e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        other => StoreError::Database(Box::new(other)),
    }
}

/// Running statements on the store's own pools. Writes go to the writer (SQLite's single
/// connection); reads to the readers. The hot lead reads have a path of their own per backend.
impl Store {
    /// The backend in use.
    pub fn dialect(&self) -> Dialect {
        match self.db {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    /// A new statement for the backend in use.
    pub(crate) fn sql(&self, init: impl Into<String>) -> Sql {
        Sql::new(self.dialect(), init)
    }

    /// A write transaction.
    pub(crate) async fn begin(&self) -> StoreResult<Conn> {
        Ok(match &self.db {
            Db::Sqlite(db) => Conn::sqlite_tx(db.write.begin().await.map_err(interpret)?),
            Db::Postgres(db) => Conn::postgres_tx(db.pool.begin().await.map_err(interpret)?),
        })
    }

    /// A connection for writes that commit one statement at a time.
    pub(crate) async fn writer(&self) -> StoreResult<Conn> {
        Ok(match &self.db {
            Db::Sqlite(db) => Conn::sqlite_pooled(db.write.acquire().await.map_err(interpret)?),
            Db::Postgres(db) => Conn::postgres_pooled(db.pool.acquire().await.map_err(interpret)?),
        })
    }

    /// A connection for reads.
    pub(crate) async fn reader(&self) -> StoreResult<Conn> {
        Ok(match &self.db {
            Db::Sqlite(db) => Conn::sqlite_pooled(db.read.acquire().await.map_err(interpret)?),
            Db::Postgres(db) => Conn::postgres_pooled(db.pool.acquire().await.map_err(interpret)?),
        })
    }

    /// Runs one write; returns how many rows it changed.
    pub(crate) async fn execute(&self, sql: Sql) -> StoreResult<u64> {
        self.writer().await?.execute(sql).await
    }

    /// Runs one write that returns rows (`RETURNING`).
    pub(crate) async fn write_optional(&self, sql: Sql) -> StoreResult<Option<Row>> {
        self.writer().await?.fetch_optional(sql).await
    }

    /// Runs one write that returns rows (`RETURNING`).
    pub(crate) async fn write_all(&self, sql: Sql) -> StoreResult<Vec<Row>> {
        self.writer().await?.fetch_all(sql).await
    }

    pub(crate) async fn fetch_all(&self, sql: Sql) -> StoreResult<Vec<Row>> {
        self.reader().await?.fetch_all(sql).await
    }

    pub(crate) async fn fetch_optional(&self, sql: Sql) -> StoreResult<Option<Row>> {
        self.reader().await?.fetch_optional(sql).await
    }

    pub(crate) async fn fetch_one(&self, sql: Sql) -> StoreResult<Row> {
        self.reader().await?.fetch_one(sql).await
    }

    /// Leads selected with `lead_select()` (the hot read path).
    pub(crate) async fn read_leads(&self, sql: Sql) -> StoreResult<Vec<Lead>> {
        match &self.db {
            Db::Sqlite(db) => db.readers.leads(sql).await,
            Db::Postgres(db) => db
                .readers
                .fetch_all(sql)
                .await?
                .into_iter()
                .map(|r| lead_from_row(&Row::Postgres(r)))
                .collect(),
        }
    }

    /// Leads with the workspace's two counts after their columns; counts from the first row.
    pub(crate) async fn read_leads_counted(&self, sql: Sql) -> StoreResult<(Vec<Lead>, Option<(i64, i64)>)> {
        match &self.db {
            Db::Sqlite(db) => db.readers.leads_counted(sql).await,
            Db::Postgres(db) => {
                let rows: Vec<Row> = db
                    .readers
                    .fetch_all(sql)
                    .await?
                    .into_iter()
                    .map(Row::Postgres)
                    .collect();
                let n = read_columns().count();
                let counts = match rows.first() {
                    Some(r) => Some((r.get(n)?, r.get(n + 1)?)),
                    None => None,
                };
                Ok((
                    rows.iter().map(lead_from_row).collect::<StoreResult<_>>()?,
                    counts,
                ))
            }
        }
    }

    /// The integer columns of the first row a read returns; empty when there is none.
    pub(crate) async fn read_ints(&self, sql: Sql) -> StoreResult<Vec<i64>> {
        match &self.db {
            Db::Sqlite(db) => db.readers.ints(sql).await,
            Db::Postgres(db) => {
                let Some(pg) = db.readers.fetch_all(sql).await?.into_iter().next() else {
                    return Ok(Vec::new());
                };
                let n = pg.len();
                let row = Row::Postgres(pg);
                (0..n).map(|i| row.get::<i64>(i)).collect()
            }
        }
    }
}

/// A lead from the columns `lead_select()` lists, at the start of a row, each column read
/// straight into the lead.
pub(crate) fn lead_from_row(row: &Row) -> StoreResult<Lead> {
    lead_from_columns(|i, c| row.value(i, c.ty).map_err(|e| e.to_string()))
        .map_err(|e| StoreError::corrupt(format!("lead row: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_dialect() {
        let mut pg = Sql::new(Dialect::Postgres, "SELECT ");
        pg.bind(1i64).push(", ").bind("a").push(", ").bind(None::<i64>);
        assert_eq!(pg.text(), "SELECT $1, $2, NULL");
        let mut lite = Sql::new(Dialect::Sqlite, "SELECT ");
        lite.bind(1i64).push(", ").bind("a");
        assert_eq!(lite.text(), "SELECT ?, ?");
    }

    #[test]
    fn lists_are_bound_value_by_value() {
        let mut sql = Sql::new(Dialect::Postgres, "IN (");
        sql.bind_list(["a", "b", "c"]).push(")");
        assert_eq!(sql.text(), "IN ($1, $2, $3)");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn constraint_names_are_unique_per_backend() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let mut names = known_unique_constraints(dialect);
            let n = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), n, "{dialect:?}");
        }
    }
}
