//! Whole-database copies for `ops::backup`: the catalog (every table the migrations made, its
//! columns with their portable types, in foreign-key order), one consistent read of all of it,
//! and a bulk write into an empty store. The file format is `ops`' business; this module only
//! moves portable `Value`s in and out. How each backend reads its catalog and takes a snapshot
//! is in `dialect`; the restore is written once, on the same bulk append (`COPY` or multi-row
//! `INSERT`) and index rebuild as every other bulk write.
//!
//! Portable types: PostgreSQL names them in its catalog. SQLite stores a uuid and a blob alike
//! as BLOB and a timestamp and an integer alike as INTEGER, so there the column name decides
//! (`sqlite_column_type`); a contract test migrates both backends and checks that every column
//! gets the same type on both, so a new column cannot break portability silently.
//!
//! **Restore speed**: PostgreSQL through `COPY` (identity columns take the given ids, then every
//! identity/serial sequence is `setval`ed past the largest id); SQLite through multi-row INSERTs
//! of up to 32,000 parameters in one transaction (AUTOINCREMENT follows explicit ids). Tables of
//! `REBUILD_INDEXES_FROM` rows or more have their secondary indexes dropped and rebuilt, as in
//! `load_leads`. Restored SQLite `sqlite_sequence` values are the largest restored ids, so an id
//! once used by a since-deleted row may be used again; nothing refers to such ids.

use super::dialect::{self, Dialect, ident};
use super::{Db, Store, StoreError, StoreResult};
use crate::domain::{ColumnType, Value};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::mpsc;

/// Rows per message between the store and its caller: large enough to amortise the hand-off,
/// small enough to keep memory flat.
pub const ROWS_PER_BATCH: usize = 2_000;

/// The migrations' own bookkeeping; its newest version is carried as the schema version.
pub(crate) const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub logical: ColumnType,
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
        match &self.db {
            Db::Sqlite(db) => db.readers.run(dialect::sqlite::catalog).await?,
            Db::Postgres(db) => {
                let mut conn = db.pool.acquire().await.map_err(dialect::interpret)?;
                dialect::postgres::catalog(&mut conn).await
            }
        }
    }

    /// The tables that hold at least one row.
    pub async fn tables_with_rows(&self) -> StoreResult<Vec<String>> {
        let catalog = self.catalog().await?;
        let mut found = Vec::new();
        for t in &catalog.tables {
            let sql = self.sql(format!("SELECT 1 FROM {} LIMIT 1", ident(&t.name)));
            if self.fetch_optional(sql).await?.is_some() {
                found.push(t.name.clone());
            }
        }
        Ok(found)
    }

    /// Reads every table in one snapshot (PostgreSQL: a repeatable-read, read-only
    /// transaction; SQLite: one read transaction on one connection, which WAL keeps stable
    /// while writers go on) and sends it to `out`. Stops with an error when `out` closes.
    pub async fn snapshot(&self, out: mpsc::Sender<SnapshotPart>) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite(db) => {
                let readers = std::sync::Arc::clone(&db.readers);
                tokio::task::spawn_blocking(move || dialect::sqlite::snapshot(&readers, &out))
                    .await
                    .map_err(|e| StoreError::Database(Box::new(e)))?
            }
            Db::Postgres(db) => dialect::postgres::snapshot(&db.pool, out).await,
        }
    }

    /// Writes what `input` sends into this (empty) store in one transaction, committed only
    /// when `Commit` arrives. Tables of `REBUILD_INDEXES_FROM` rows or more have their
    /// secondary indexes dropped and rebuilt; PostgreSQL identity sequences are moved past the
    /// restored ids (SQLite's AUTOINCREMENT follows explicit ids by itself).
    pub async fn restore(&self, mut input: mpsc::Receiver<RestorePart>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        loop {
            let (table, rows) = match input.recv().await {
                Some(RestorePart::Table { table, rows }) => (table, rows),
                Some(RestorePart::Commit) => break,
                Some(_) => return Err(out_of_order()),
                None => return Err(aborted()),
            };
            let rebuild = if rows >= super::REBUILD_INDEXES_FROM {
                tx.drop_secondary_indexes(&[table.name.as_str()]).await?
            } else {
                Vec::new()
            };
            let columns: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
            loop {
                match input.recv().await {
                    Some(RestorePart::Rows(batch)) => {
                        tx.append_rows(&table.name, &columns, batch).await?;
                    }
                    Some(RestorePart::EndTable) => break,
                    Some(_) => return Err(out_of_order()),
                    None => return Err(aborted()),
                }
            }
            tx.rebuild_indexes(rebuild).await?;
        }
        if let Some(pg) = tx.as_postgres() {
            dialect::postgres::set_sequences_past_ids(pg).await?;
        }
        tx.commit().await
    }
}

pub(crate) fn closed() -> StoreError {
    StoreError::Config("the snapshot's reader stopped".into())
}

fn aborted() -> StoreError {
    StoreError::Config("the restore was abandoned before its end; nothing was committed".into())
}

fn out_of_order() -> StoreError {
    StoreError::Config("restore input out of order".into())
}

pub(crate) fn bad_value(table: &str, column: &str, what: &str) -> StoreError {
    StoreError::Database(format!("{table}.{column}: {what}").into())
}

/// Sorts tables so that every table comes after the tables it references; ties (and cycles,
/// which the schema has none of) by name.
pub(crate) fn in_foreign_key_order(mut tables: Vec<Table>, references: &[(String, String)]) -> Vec<Table> {
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
/// timestamp when the name ends in `_at`, `_since`, `_until` or `_start`.
pub fn sqlite_column_type(declared: &str, column: &str) -> Option<ColumnType> {
    let is_id = column == "id" || column.ends_with("_id");
    let is_time = ["_at", "_since", "_until", "_start"]
        .iter()
        .any(|s| column.ends_with(s));
    match declared.to_ascii_uppercase().as_str() {
        "BLOB" if is_id => Some(ColumnType::Uuid),
        "BLOB" => Some(ColumnType::Blob),
        "INTEGER" if is_time => Some(ColumnType::Timestamp),
        "INTEGER" => Some(ColumnType::Integer),
        "REAL" => Some(ColumnType::Real),
        "TEXT" => Some(ColumnType::Text),
        _ => None,
    }
}

/// The PostgreSQL rule: the catalog's type name.
pub fn pg_column_type(udt: &str) -> Option<ColumnType> {
    match udt {
        "uuid" => Some(ColumnType::Uuid),
        "timestamptz" => Some(ColumnType::Timestamp),
        "int2" | "int4" | "int8" => Some(ColumnType::Integer),
        "float4" | "float8" => Some(ColumnType::Real),
        "text" | "varchar" | "bpchar" => Some(ColumnType::Text),
        "bytea" => Some(ColumnType::Blob),
        _ => None,
    }
}

pub(crate) fn unportable(table: &str, column: &str, declared: &str) -> StoreError {
    StoreError::Config(format!(
        "column {table}.{column} has type {declared}, which a backup cannot carry portably"
    ))
}

/// The SELECT that reads a whole table in key order.
pub(crate) fn select_all(table: &Table, dialect: Dialect) -> String {
    let pg = dialect == Dialect::Postgres;
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| match (pg, c.logical) {
            // one integer type on the wire, whatever the width in the table
            (true, ColumnType::Integer) => format!("{}::int8", ident(&c.name)),
            (true, ColumnType::Real) => format!("{}::float8", ident(&c.name)),
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
                .any(|c| &c.name == name && c.logical == ColumnType::Text);
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
        assert_eq!(sqlite_column_type("BLOB", "lead_id"), Some(ColumnType::Uuid));
        assert_eq!(sqlite_column_type("BLOB", "payload"), Some(ColumnType::Blob));
        assert_eq!(
            sqlite_column_type("INTEGER", "created_at"),
            Some(ColumnType::Timestamp)
        );
        assert_eq!(
            sqlite_column_type("INTEGER", "lease_until"),
            Some(ColumnType::Timestamp)
        );
        assert_eq!(sqlite_column_type("INTEGER", "score"), Some(ColumnType::Integer));
        assert_eq!(sqlite_column_type("NUMERIC", "score"), None);
    }
}
