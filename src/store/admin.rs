//! Operator helpers that work on a database server rather than a leadgate store.

use super::StoreError;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// Creates database `name` on the PostgreSQL server at `base_url` (used by test set-up and
/// benchmarks). `name` must be a plain identifier.
pub async fn create_postgres_database(base_url: &str, name: &str) -> Result<(), StoreError> {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Config(format!(
            "'{name}' is not a plain database name"
        )));
    }
    let mut conn = PgConnection::connect(base_url)
        .await
        .map_err(super::dialect::interpret)?;
    let statement = format!("CREATE DATABASE {name}");
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .execute(&mut conn)
        .await
        .map_err(super::dialect::interpret)?;
    conn.close().await.map_err(super::dialect::interpret)
}

/// Ends every other session on the database at `url`, as a server restart or an idle-connection
/// timeout in a proxy would; returns how many. For checking that clients reconnect.
pub async fn terminate_other_sessions(url: &str) -> Result<u64, StoreError> {
    let mut conn = PgConnection::connect(url)
        .await
        .map_err(super::dialect::interpret)?;
    let ended: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(super::dialect::interpret)?;
    conn.close().await.map_err(super::dialect::interpret)?;
    Ok(ended.max(0) as u64)
}
