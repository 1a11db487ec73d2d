//! Persistence: the store of every workspace's data on SQLite (the embedded default) or
//! PostgreSQL, and migrations.
//!
//! This is the only module that speaks SQL or names sqlx. Every repository method is written
//! once, as a method of `Store`, in the module of its concern (`leads`, `enrichment`, `events`,
//! `webhooks`, `crm`, `api_keys`, `jobs`, `imports`, `retention`, `erasure`, `backup`); the few places where the
//! backends differ sit behind `dialect`. Every call that touches tenant data takes a
//! `WorkspaceId`, and every statement filters on it. Lead columns come from
//! `domain::LEAD_COLUMNS`; filters and keyset conditions are written once in `sql`, and every
//! other listing pages through `keyset`.

pub mod admin;
mod api_keys;
pub mod backup;
mod campaigns;
mod crm;
pub mod dialect;
mod enrichment;
mod erasure;
mod event_export;
mod events;
mod imports;
mod jobs;
mod keyset;
mod leads;
pub mod metrics;
mod retention;
mod sql;
mod webhooks;

pub use campaigns::{Next, PlannedSend, SendGate, StepOutcome, StopKind, Suppression};
pub use crm::{CrmOutcome, PendingLink, WebhookReceipt};
pub use dialect::Dialect;
pub use dialect::postgres::EventListener;
pub use event_export::EVENT_EXPORT_LEASE;

use crate::domain::{Import, ImportErrorRow, Job, JobId, Lead, Timestamp};
use dialect::postgres::PgDb;
use dialect::sqlite::SqliteDb;

/// What can go wrong in the store, with database specifics already interpreted.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint was violated; `field` names the API field it is about (`email`,
    /// `slug`), taken from the constraint.
    #[error("{field} is already taken")]
    Conflict { field: &'static str },
    /// A compare-and-set write found another version than it expected.
    #[error("the record was changed by someone else")]
    VersionMismatch,
    #[error("not found")]
    NotFound,
    /// The database URL or a setting is unusable.
    #[error("{0}")]
    Config(String),
    /// Anything else: connection loss, a bug in SQL, a corrupt row.
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Whether the store was closed (`Store::close`): background tasks stop on it quietly.
    pub fn is_closed(&self) -> bool {
        match self {
            StoreError::Database(e) => {
                matches!(e.downcast_ref::<sqlx::Error>(), Some(sqlx::Error::PoolClosed))
            }
            _ => false,
        }
    }

    /// A stored value that cannot be what its column says.
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        StoreError::Database(format!("corrupt data: {}", what.into()).into())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// From this many leads on, a bulk load is faster rebuilding the secondary indexes than
/// maintaining them.
pub const REBUILD_INDEXES_FROM: u64 = 100_000;

/// Maintained lead counts of a workspace, kept in step with every write.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct LeadCounts {
    pub active: u64,
    pub archived: u64,
}

/// One chunk of an import, committed atomically by `Store::commit_import_chunk`.
#[derive(Debug)]
pub struct ImportChunk<'a> {
    /// The import as it is after this chunk: counters and checkpoint already advanced.
    pub import: &'a Import,
    /// The checkpoint (`rows_done`) the chunk started from; the commit fails with
    /// `VersionMismatch` when the stored one differs (another runner got there first).
    pub previous_rows_done: u64,
    /// New leads (none in a dry run).
    pub created: &'a [Lead],
    /// Changed leads, each with the version it was read at (compare-and-set).
    pub updated: &'a [(Lead, i64)],
    pub errors: &'a [ImportErrorRow],
}

/// Imports: their records and checkpoints, error reports and uploaded files.
/// A claim's lease on the jobs it took: whoever holds `token` owns them until `until`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Lease {
    pub token: String,
    pub until: Timestamp,
}

/// A queued job that needs a message at the broker (`take_unpublished_jobs`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Unpublished {
    pub id: JobId,
    pub kind: String,
    /// When the job is due: the message waits in a delay queue until then.
    pub run_at: Timestamp,
}

/// What `reclaim_expired_jobs` did with jobs whose worker stopped heartbeating.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Reclaimed {
    /// Put back in the queue for another attempt.
    pub requeued: u64,
    /// Out of attempts: now dead (as stored, error history included).
    pub dead: Vec<Job>,
}

/// The configured store: a SQLite file or a PostgreSQL database. Cheap to clone (pools are
/// shared).
#[derive(Clone)]
pub struct Store {
    db: Db,
}

#[derive(Clone)]
enum Db {
    Sqlite(SqliteDb),
    Postgres(PgDb),
}

impl std::fmt::Debug for Store {
    // the PostgreSQL connect options hold the password
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.dialect().name())
            .finish_non_exhaustive()
    }
}

/// Pool settings shared by both backends.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    pub max_connections: u32,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self { max_connections: 16 }
    }
}

impl Store {
    /// Connects by URL scheme (`sqlite:` or `postgres:`/`postgresql:`), creating a missing
    /// SQLite file, and applies pending migrations.
    pub async fn connect(url: &str, options: &PoolOptions) -> StoreResult<Self> {
        let store = Self::open(url, options).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating.
    pub async fn open(url: &str, options: &PoolOptions) -> StoreResult<Self> {
        let db = if url.starts_with("sqlite:") {
            Db::Sqlite(SqliteDb::open(url, options).await?)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Db::Postgres(PgDb::open(url, options).await?)
        } else {
            return Err(StoreError::Config(format!(
                "unsupported database URL scheme in '{}': use sqlite:// or postgres://",
                redact_url(url)
            )));
        };
        Ok(Self { db })
    }

    pub async fn migrate(&self) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite(db) => db.migrate().await,
            Db::Postgres(db) => db.migrate().await,
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.dialect().name()
    }

    pub async fn close(&self) {
        match &self.db {
            Db::Sqlite(db) => db.close().await,
            Db::Postgres(db) => db.close().await,
        }
    }

    /// A listener for other instances' events: `Some` on PostgreSQL, `None` on SQLite, whose
    /// other processes are only seen by polling.
    pub async fn event_listener(&self) -> StoreResult<Option<EventListener>> {
        match &self.db {
            Db::Sqlite(_) => Ok(None),
            Db::Postgres(db) => db.listen_events().await.map(Some),
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> StoreResult<()> {
        self.fetch_one(self.sql("SELECT 1")).await.map(drop)
    }

    /// PostgreSQL's planner estimate of the rows in `leads` (0 before the first `ANALYZE`);
    /// `None` on SQLite, whose planner goes by the indexes alone.
    pub async fn planned_lead_rows(&self) -> StoreResult<Option<u64>> {
        if self.dialect() == Dialect::Sqlite {
            return Ok(None);
        }
        let row = self
            .fetch_one(self.sql("SELECT reltuples::bigint FROM pg_class WHERE oid = 'leads'::regclass"))
            .await?;
        let rows: i64 = row.get(0)?;
        Ok(Some(rows.max(0) as u64))
    }

    /// Refreshes planner statistics after a bulk load.
    pub async fn analyze(&self) -> StoreResult<()> {
        let mut conn = self.writer().await?;
        conn.execute_text(match self.dialect() {
            Dialect::Sqlite => "PRAGMA analysis_limit = 1000; ANALYZE",
            Dialect::Postgres => "ANALYZE leads, lead_tags, workspaces",
        })
        .await
    }
}

/// Hides a password in a database URL before it is shown or logged.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_password_in_url() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/leads"),
            "postgres://app:***@db:5432/leads"
        );
        assert_eq!(redact_url("sqlite://leadgate.db"), "sqlite://leadgate.db");
    }
}
