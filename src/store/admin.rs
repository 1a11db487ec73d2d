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
