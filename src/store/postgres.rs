//! The production backend: PostgreSQL through one connection pool.
//!
//! Text columns that sort use the "C" collation (see the migration) so ordering and cursors
//! match the SQLite backend byte for byte.

use super::PoolOptions;
use super::repo::impl_repos;
use super::sql::LeadRow;
use crate::domain::WorkspaceSlug;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Pool, Postgres, QueryBuilder};
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

/// Leads and workspaces in a PostgreSQL database.
#[derive(Clone)]
pub struct PgStore {
    pub(super) read: Pool<Postgres>,
    pub(super) write: Pool<Postgres>,
    /// For connections of their own (the event listener), outside the pool.
    connect: std::sync::Arc<PgConnectOptions>,
}

impl std::fmt::Debug for PgStore {
    // the connect options hold the password
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pool", &self.read)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url`, e.g. `postgres://user@127.0.0.1:5432/leadgate`.
    pub async fn open(url: &str, options: &PoolOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(format!("invalid PostgreSQL URL: {e}")))?
            .application_name("leadgate")
            .statement_cache_capacity(256);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect.clone())
            .await
            .map_err(super::repo::interpret)?;
        Ok(Self {
            read: pool.clone(),
            write: pool,
            connect: std::sync::Arc::new(connect),
        })
    }

    /// A connection listening for new events committed by any instance.
    /// It holds a connection of its own, so it never takes one from the pool.
    pub async fn listen_events(&self) -> Result<super::EventListener, StoreError> {
        let own = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with((*self.connect).clone())
            .await
            .map_err(super::repo::interpret)?;
        let mut listener = sqlx::postgres::PgListener::connect_with(&own)
            .await
            .map_err(super::repo::interpret)?;
        listener
            .listen(EVENTS_CHANNEL)
            .await
            .map_err(super::repo::interpret)?;
        Ok(super::EventListener(listener))
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/postgres")
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
        sqlx::query("ANALYZE leads, lead_tags, workspaces")
            .execute(&self.write)
            .await
            .map(drop)
            .map_err(super::repo::interpret)
    }

    pub async fn close(&self) {
        self.write.close().await;
    }
}

impl super::AdminRepo for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        PgStore::ping(self).await
    }
    async fn analyze(&self) -> Result<(), StoreError> {
        PgStore::analyze(self).await
    }
}

// timestamps bind as `timestamptz`
sql::query_builder_impl!(Postgres, |t| t);

/// The read path: the same pool as everything else.
impl PgStore {
    async fn fetch_leads(&self, mut qb: QueryBuilder<Postgres>) -> StoreResult<Vec<Lead>> {
        let rows = qb.build().fetch_all(&self.read).await.map_err(interpret)?;
        leads_from_rows(&rows)
    }

    /// Leads with the two count columns that follow them; counts from the first row.
    async fn fetch_leads_counted(
        &self,
        mut qb: QueryBuilder<Postgres>,
    ) -> StoreResult<(Vec<Lead>, Option<(i64, i64)>)> {
        let rows = qb.build().fetch_all(&self.read).await.map_err(interpret)?;
        let counts = match rows.first() {
            Some(r) => Some((
                r.try_get(21).map_err(interpret)?,
                r.try_get(22).map_err(interpret)?,
            )),
            None => None,
        };
        Ok((leads_from_rows(&rows)?, counts))
    }

    async fn fetch_exists(&self, mut qb: QueryBuilder<Postgres>) -> StoreResult<bool> {
        let row = qb.build().fetch_optional(&self.read).await.map_err(interpret)?;
        Ok(row.is_some())
    }

    /// The integer columns of the first row; empty when there is none.
    async fn fetch_ints(&self, mut qb: QueryBuilder<Postgres>) -> StoreResult<Vec<i64>> {
        let row = qb.build().fetch_optional(&self.read).await.map_err(interpret)?;
        let Some(row) = row else { return Ok(Vec::new()) };
        (0..row.len())
            .map(|i| row.try_get::<i64, _>(i).map_err(interpret))
            .collect()
    }
}

fn lead_from_row(r: &PgRow) -> Result<Lead, sqlx::Error> {
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
        score: i64::from(r.try_get::<i32, _>(14)?),
        tags: r.try_get(15)?,
        custom_fields: r.try_get(16)?,
        created_at: r.try_get(17)?,
        updated_at: r.try_get(18)?,
        archived_at: r.try_get(19)?,
        version: r.try_get(20)?,
    }
    .into_lead()
}

fn workspace_from_row(r: &PgRow) -> Result<Workspace, sqlx::Error> {
    Ok(Workspace {
        id: WorkspaceId::from_uuid(r.try_get(0)?),
        slug: WorkspaceSlug::from_trusted(r.try_get(1)?),
        name: r.try_get(2)?,
        created_at: r.try_get(3)?,
    })
}

impl_repos!(PgStore, Postgres, QueryBuilder<Postgres>);
super::enrichment::impl_enrichment_repo!(super::PgStore);
super::events::impl_event_repo!(super::PgStore);
super::webhooks::impl_webhook_repo!(super::PgStore);
super::erasure::impl_erasure_repo!(super::PgStore, lock = " FOR UPDATE");
super::retention::impl_retention_repo!(super::PgStore, lock = " FOR UPDATE");
super::imports::impl_import_repo!(super::PgStore);

/// The channel other instances `LISTEN` on for new events.
pub(super) const EVENTS_CHANNEL: &str = "leadgate_events";

/// Wakes listening instances when the transaction commits: `<workspace>:<newest number>`.
async fn notify_events(conn: &mut sqlx::PgConnection, ws: WorkspaceId, top: i64) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(EVENTS_CHANNEL)
        .bind(format!("{ws}:{top}"))
        .execute(conn)
        .await
        .map_err(interpret)?;
    Ok(())
}
super::jobs::impl_job_repo!(super::PgStore, skip_locked = " FOR UPDATE SKIP LOCKED");

/// A `timestamptz` column.
fn read_time(r: &PgRow, i: usize) -> Result<crate::domain::Timestamp, sqlx::Error> {
    r.try_get(i)
}

/// A nullable `timestamptz` column.
fn read_opt_time(r: &PgRow, i: usize) -> Result<Option<crate::domain::Timestamp>, sqlx::Error> {
    r.try_get(i)
}

/// Rows in PostgreSQL's COPY text format, written through the same `push_lead_values` as the
/// INSERT path so that column order has one definition.
struct CopyRows {
    out: String,
    fields: usize,
}

impl CopyRows {
    fn field(&mut self) {
        if self.fields > 0 {
            self.out.push('\t');
        }
        self.fields += 1;
    }

    fn end_row(&mut self) {
        self.out.push('\n');
        self.fields = 0;
    }

    fn escaped(&mut self, v: &str) {
        for c in v.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                c => self.out.push(c),
            }
        }
    }
}

impl SqlBuilder for CopyRows {
    fn new(_: impl Into<String>) -> Self {
        Self {
            out: String::new(),
            fields: 0,
        }
    }
    /// SQL punctuation has no place in COPY data.
    fn push(&mut self, _: impl std::fmt::Display) -> &mut Self {
        self
    }
    fn push_opt_text(&mut self, v: Option<String>) {
        match v {
            Some(v) => self.push_text(v),
            None => self.push_null(),
        }
    }
    fn push_uuid(&mut self, v: Uuid) {
        self.field();
        self.out.push_str(&v.hyphenated().to_string());
    }
    fn push_text(&mut self, v: String) {
        self.field();
        self.escaped(&v);
    }
    fn push_int(&mut self, v: i64) {
        self.field();
        self.out.push_str(&v.to_string());
    }
    fn push_time(&mut self, v: crate::domain::Timestamp) {
        self.field();
        self.out
            .push_str(&v.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    }
    fn push_null(&mut self) {
        self.field();
        self.out.push_str("\\N");
    }
}

/// Streams data into a `COPY … FROM STDIN` statement.
async fn copy_in(conn: &mut sqlx::PgConnection, statement: &str, data: String) -> StoreResult<()> {
    let mut copy = conn.copy_in_raw(statement).await.map_err(interpret)?;
    copy.send(data.into_bytes()).await.map_err(interpret)?;
    copy.finish().await.map_err(interpret)?;
    Ok(())
}

/// COPY of leads and their tags, within the caller's transaction.
async fn append_leads(conn: &mut sqlx::PgConnection, leads: &[Lead]) -> StoreResult<()> {
    let mut rows = CopyRows::new("");
    rows.out.reserve(leads.len() * 480);
    for lead in leads {
        sql::push_lead_values(&mut rows, lead);
        rows.end_row();
    }
    copy_in(conn, sql::COPY_LEADS, rows.out).await?;
    let mut tags = CopyRows::new("");
    for row in sql::tag_rows(leads) {
        tags.push_uuid(row.workspace_id);
        tags.push_text(row.tag);
        tags.push_uuid(row.lead_id);
        tags.end_row();
    }
    if !tags.out.is_empty() {
        copy_in(
            conn,
            "COPY lead_tags (workspace_id, tag, lead_id) FROM STDIN",
            tags.out,
        )
        .await?;
    }
    Ok(())
}

/// Names and definitions of the secondary indexes (not the primary keys) a large bulk load
/// drops and rebuilds.
const SECONDARY_INDEXES: &str = "SELECT i.indexname, i.indexdef FROM pg_indexes i \
     WHERE i.schemaname = current_schema() AND i.tablename IN ('leads', 'lead_tags') \
       AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)";

/// Gives the index rebuild more sort memory, for this transaction only.
async fn begin_rebuild(conn: &mut sqlx::PgConnection) -> StoreResult<()> {
    sqlx::query("SET LOCAL maintenance_work_mem = '256MB'")
        .execute(&mut *conn)
        .await
        .map_err(interpret)?;
    Ok(())
}

/// Ends a bulk load's index rebuild; `SET LOCAL` settings end with the transaction.
async fn finish_rebuild(_: &mut sqlx::PgConnection) -> StoreResult<()> {
    Ok(())
}
