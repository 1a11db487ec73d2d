//! The embedded default backend: one SQLite file in WAL mode.
//!
//! Reads go through a pool of connections; writes through a single-connection pool, so writers
//! queue in the application instead of failing with `SQLITE_BUSY`. Timestamps are stored as
//! INTEGER microseconds since the Unix epoch.

use super::PoolOptions;
use super::repo::impl_repos;
use super::sql::LeadRow;
use super::sqlite_read::{LiteQuery, Readers};
use crate::domain::WorkspaceSlug;
use chrono::DateTime;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Pool, Sqlite};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Leads and workspaces in a SQLite database file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pub(super) read: Pool<Sqlite>,
    pub(super) write: Pool<Sqlite>,
    /// The hot read path (pages, counts, lookups by id).
    pub(super) readers: Arc<Readers>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Readers")
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url`, e.g. `sqlite://leadgate.db`.
    pub async fn open(url: &str, options: &PoolOptions) -> Result<Self, StoreError> {
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
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect.clone())
            .await
            .map_err(super::repo::interpret)?;
        let path = connect.get_filename().to_path_buf();
        // sqlx readers serve the cold reads (workspaces, settings); the hot ones go to `readers`.
        let read = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect.read_only(true))
            .await
            .map_err(super::repo::interpret)?;
        if path.as_os_str().is_empty() || path.to_string_lossy().contains(":memory:") {
            return Err(StoreError::Config(
                "in-memory SQLite is not supported; use sqlite://FILE".into(),
            ));
        }
        let readers = Readers::new(&path, reader_count(options.max_connections) as usize);
        Ok(Self { read, write, readers })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/sqlite")
            .run(&self.write)
            .await
            .map_err(|e| StoreError::Database(Box::new(e)))
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map(drop)
            .map_err(super::repo::interpret)
    }

    pub async fn analyze(&self) -> Result<(), StoreError> {
        sqlx::query("PRAGMA analysis_limit = 1000; ANALYZE")
            .execute(&self.write)
            .await
            .map(drop)
            .map_err(super::repo::interpret)
    }

    pub async fn close(&self) {
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

impl super::AdminRepo for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        SqliteStore::ping(self).await
    }
    async fn analyze(&self) -> Result<(), StoreError> {
        SqliteStore::analyze(self).await
    }
}

// timestamps bind as INTEGER microseconds
sql::query_builder_impl!(Sqlite, |t| t.timestamp_micros());

/// The read path: rusqlite on blocking threads (see `sqlite_read`).
impl SqliteStore {
    async fn fetch_leads(&self, q: LiteQuery) -> StoreResult<Vec<Lead>> {
        self.readers.leads(q).await
    }

    async fn fetch_leads_counted(&self, q: LiteQuery) -> StoreResult<(Vec<Lead>, Option<(i64, i64)>)> {
        self.readers.leads_counted(q).await
    }

    async fn fetch_exists(&self, q: LiteQuery) -> StoreResult<bool> {
        self.readers.exists(q).await
    }

    async fn fetch_ints(&self, q: LiteQuery) -> StoreResult<Vec<i64>> {
        self.readers.ints(q).await
    }
}

fn time(micros: i64) -> Result<crate::domain::Timestamp, sqlx::Error> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| sqlx::Error::Decode("timestamp out of range".into()))
}

fn lead_from_row(r: &SqliteRow) -> Result<Lead, sqlx::Error> {
    LeadRow {
        id: r.try_get(0)?,
        workspace_id: r.try_get(1)?,
        email: r.try_get(2)?,
        first_name: r.try_get(3)?,
        last_name: r.try_get(4)?,
        title: r.try_get(5)?,
        company_name: r.try_get(6)?,
        company_domain: r.try_get(7)?,
        phone: r.try_get(8)?,
        linkedin_url: r.try_get(9)?,
        country: r.try_get(10)?,
        source: r.try_get(11)?,
        status: r.try_get(12)?,
        owner: r.try_get(13)?,
        score: r.try_get(14)?,
        tags: r.try_get(15)?,
        custom_fields: r.try_get(16)?,
        created_at: time(r.try_get(17)?)?,
        updated_at: time(r.try_get(18)?)?,
        archived_at: r.try_get::<Option<i64>, _>(19)?.map(time).transpose()?,
        version: r.try_get(20)?,
    }
    .into_lead()
}

fn workspace_from_row(r: &SqliteRow) -> Result<Workspace, sqlx::Error> {
    Ok(Workspace {
        id: WorkspaceId::from_uuid(r.try_get(0)?),
        slug: WorkspaceSlug::from_trusted(r.try_get(1)?),
        name: r.try_get(2)?,
        created_at: time(r.try_get(3)?)?,
    })
}

impl_repos!(SqliteStore, Sqlite, LiteQuery);
super::enrichment::impl_enrichment_repo!(super::SqliteStore);
super::events::impl_event_repo!(super::SqliteStore);
super::webhooks::impl_webhook_repo!(super::SqliteStore);
super::erasure::impl_erasure_repo!(super::SqliteStore, lock = "");
super::retention::impl_retention_repo!(super::SqliteStore, lock = "");
super::imports::impl_import_repo!(super::SqliteStore);

/// Other processes on one SQLite file learn of new events by polling (see `events::Bus`).
async fn notify_events(_: &mut sqlx::SqliteConnection, _: WorkspaceId, _: i64) -> StoreResult<()> {
    Ok(())
}
super::jobs::impl_job_repo!(super::SqliteStore, skip_locked = "");

/// A timestamp column (INTEGER microseconds).
fn read_time(r: &SqliteRow, i: usize) -> Result<crate::domain::Timestamp, sqlx::Error> {
    time(r.try_get(i)?)
}

/// A nullable timestamp column (INTEGER microseconds).
fn read_opt_time(r: &SqliteRow, i: usize) -> Result<Option<crate::domain::Timestamp>, sqlx::Error> {
    r.try_get::<Option<i64>, _>(i)?.map(time).transpose()
}

/// Multi-row inserts of leads and their tags, within the caller's transaction.
async fn append_leads(conn: &mut sqlx::SqliteConnection, leads: &[Lead]) -> StoreResult<()> {
    for chunk in leads.chunks(sql::BULK_CHUNK) {
        let mut qb = Qb::new(sql::INSERT_LEAD);
        qb.push("VALUES ");
        for (i, lead) in chunk.iter().enumerate() {
            if i > 0 {
                qb.push(", ");
            }
            sql::push_lead_values(&mut qb, lead);
        }
        qb.build().execute(&mut *conn).await.map_err(interpret)?;
    }
    insert_tags(conn, &leads.iter().collect::<Vec<_>>()).await
}

/// Names and definitions of the secondary indexes a large bulk load drops and rebuilds.
/// (A larger page cache for the rebuild was measured: no faster, three times the memory.)
const SECONDARY_INDEXES: &str = "SELECT name, sql FROM sqlite_master \
     WHERE type = 'index' AND tbl_name IN ('leads', 'lead_tags') AND sql IS NOT NULL";

/// Prepares the connection for an index rebuild.
async fn begin_rebuild(_: &mut sqlx::SqliteConnection) -> StoreResult<()> {
    Ok(())
}

/// Ends a bulk load's index rebuild: gives the memory the sorts used back.
async fn finish_rebuild(conn: &mut sqlx::SqliteConnection) -> StoreResult<()> {
    sqlx::query("PRAGMA shrink_memory")
        .execute(&mut *conn)
        .await
        .map_err(interpret)?;
    Ok(())
}
