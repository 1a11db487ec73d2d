//! Persistence: repository traits, the two backends (`SqliteStore`, `PgStore`) and migrations.
//!
//! This is the only module that speaks SQL or names sqlx. Every call that touches tenant data
//! takes a `WorkspaceId`, and every statement filters on it. `Store` picks a backend from the
//! database URL and dispatches to it without boxing.

pub mod admin;
pub mod backup;
mod enrichment;
mod erasure;
mod events;
mod imports;
mod jobs;
mod postgres;
mod repo;
mod retention;
mod sql;
mod sqlite;
mod sqlite_read;
mod webhooks;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::domain::{
    Cursor, CursorSide as Side, Cutoffs, EmailAddress, EmailHash, Enqueued, EnrichmentRecord,
    EnrichmentSettings, Erasure, ErasureId, Event, Group, Import, ImportErrorRow, ImportId, Job, JobFailure,
    JobId, JobScope, JobSelection, Lead, LeadFilter, LeadId, LeadPatch, LeadQuery, NewEvent, NewJob,
    ProviderConfig, ProviderKind, QueueStat, RetentionCounts, RetentionPolicy, RetentionRun, RetentionRunId,
    Schedule, Timestamp, UpsertOutcome, Usage, UsagePeriod, WebhookDelivery, WebhookEndpoint, Workspace,
    WorkspaceId,
};
use std::future::Future;
use uuid::Uuid;

/// What can go wrong in the store, with database specifics already interpreted.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint was violated; `field` names the API field (`email`, `slug`).
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

pub trait WorkspaceRepo: Send + Sync {
    /// Fails with `Conflict { field: "slug" }` when the slug is taken.
    fn create_workspace(&self, ws: &Workspace) -> impl Future<Output = StoreResult<()>> + Send;
    fn workspace(&self, id: WorkspaceId) -> impl Future<Output = StoreResult<Option<Workspace>>> + Send;
    fn workspace_by_slug(&self, slug: &str) -> impl Future<Output = StoreResult<Option<Workspace>>> + Send;
    fn list_workspaces(&self) -> impl Future<Output = StoreResult<Vec<Workspace>>> + Send;
    fn lead_counts(&self, ws: WorkspaceId) -> impl Future<Output = StoreResult<LeadCounts>> + Send;
}

pub trait SettingsRepo: Send + Sync {
    fn setting(&self, key: &str) -> impl Future<Output = StoreResult<Option<String>>> + Send;
    /// Stores `value` unless the key has one already; returns the value that is stored now,
    /// so two processes racing to create a setting agree on the winner.
    fn setting_or_insert(&self, key: &str, value: &str) -> impl Future<Output = StoreResult<String>> + Send;
}

pub trait LeadRepo: Send + Sync {
    fn lead(&self, ws: WorkspaceId, id: LeadId) -> impl Future<Output = StoreResult<Option<Lead>>> + Send;
    /// The leads among `ids` that exist in `ws`, in no particular order.
    fn leads_by_ids(
        &self,
        ws: WorkspaceId,
        ids: &[LeadId],
    ) -> impl Future<Output = StoreResult<Vec<Lead>>> + Send;
    /// One keyset page: up to `limit + 1` rows in traversal order (reversed for `Backward`),
    /// the extra row telling the caller that more exist.
    fn list_leads(
        &self,
        ws: WorkspaceId,
        query: &LeadQuery,
    ) -> impl Future<Output = StoreResult<Vec<Lead>>> + Send;
    /// `list_leads`, plus the workspace's maintained counts read in the same statement (`None`
    /// when the page is empty).
    fn list_leads_counted(
        &self,
        ws: WorkspaceId,
        query: &LeadQuery,
    ) -> impl Future<Output = StoreResult<(Vec<Lead>, Option<LeadCounts>)>> + Send;
    /// Whether any lead matching `filter` lies on `side` of `cursor`, the cursor's row included.
    fn any_lead_beside(
        &self,
        ws: WorkspaceId,
        filter: &LeadFilter,
        cursor: &Cursor,
        side: Side,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Counts matching leads, stopping at `cap`.
    fn count_leads(
        &self,
        ws: WorkspaceId,
        filter: &LeadFilter,
        cap: u64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Fails with `Conflict { field: "email" }` when the email is taken in the workspace.
    /// Appends the `lead.created` event in the same transaction and returns it.
    fn insert_lead(&self, lead: &Lead) -> impl Future<Output = StoreResult<Vec<Event>>> + Send;
    /// Writes `lead` (whose `version` is already the new one) if the stored version is still
    /// `previous.version`; `VersionMismatch` otherwise, `NotFound` when the lead is gone.
    /// Appends the event of the change from `previous` (updated, archived or restored) in the
    /// same transaction and returns it.
    fn update_lead(
        &self,
        lead: &Lead,
        previous: &Lead,
    ) -> impl Future<Output = StoreResult<Vec<Event>>> + Send;
    /// Creates or patches leads by email in one transaction; one outcome per item, in order,
    /// and the events of the leads created or changed.
    fn upsert_leads(
        &self,
        ws: WorkspaceId,
        items: &[(EmailAddress, LeadPatch)],
        at: Timestamp,
    ) -> impl Future<Output = StoreResult<(Vec<UpsertOutcome>, Vec<Event>)>> + Send;
    /// Loads `total` new leads into `ws` in one transaction, asking `next_chunk(n)` for up to
    /// `n` leads at a time (an empty chunk ends the load early) and reporting the running
    /// total to `progress`. With `rebuild_indexes` the secondary indexes are dropped first and
    /// rebuilt at the end, several times faster than maintaining them row by row for large
    /// loads (see `REBUILD_INDEXES_FROM`); on PostgreSQL that locks the leads table until the
    /// load commits.
    fn load_leads<F, P>(
        &self,
        ws: WorkspaceId,
        total: u64,
        rebuild_indexes: bool,
        next_chunk: F,
        progress: P,
    ) -> impl Future<Output = StoreResult<u64>> + Send
    where
        F: FnMut(usize) -> Vec<Lead> + Send,
        P: FnMut(u64) + Send;
    /// Inserts many new leads with multi-row statements in one transaction (seed, import).
    /// Bulk paths write no per-lead events.
    fn insert_leads_bulk(
        &self,
        ws: WorkspaceId,
        leads: &[Lead],
    ) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// Resolved enrichment, provider settings and quota counters.
pub trait EnrichmentRepo: Send + Sync {
    /// Stored records of `leads` for `groups`, fresh or not, in no particular order.
    fn enrichment_records(
        &self,
        ws: WorkspaceId,
        leads: &[LeadId],
        groups: &[Group],
    ) -> impl Future<Output = StoreResult<Vec<EnrichmentRecord>>> + Send;
    /// Upserts records and appends their events in one transaction. Records of leads that no
    /// longer exist in `ws` are dropped silently.
    fn save_enrichment(
        &self,
        ws: WorkspaceId,
        records: &[EnrichmentRecord],
        events: &[NewEvent],
    ) -> impl Future<Output = StoreResult<Vec<Event>>> + Send;
    fn enrichment_settings(
        &self,
        ws: WorkspaceId,
    ) -> impl Future<Output = StoreResult<Option<EnrichmentSettings>>> + Send;
    fn save_enrichment_settings(
        &self,
        ws: WorkspaceId,
        settings: &EnrichmentSettings,
        at: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The providers the workspace has configured, by name.
    fn provider_configs(
        &self,
        ws: WorkspaceId,
    ) -> impl Future<Output = StoreResult<Vec<ProviderConfig>>> + Send;
    fn save_provider_config(
        &self,
        ws: WorkspaceId,
        config: &ProviderConfig,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Switches a provider off with a reason admins see (e.g. its key was rejected).
    fn disable_provider(
        &self,
        ws: WorkspaceId,
        provider: ProviderKind,
        reason: &str,
        at: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// How many secrets (provider API keys, webhook signing secrets) are stored sealed, across
    /// all workspaces.
    fn count_sealed_keys(&self) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Atomically adds `amount` to each `(period, cap, amount)` counter of the period `at`
    /// falls in, unless that would pass a cap; all or nothing. Returns the period whose cap
    /// refused, or `None` when everything was reserved.
    fn reserve_usage(
        &self,
        ws: WorkspaceId,
        provider: ProviderKind,
        at: Timestamp,
        charges: &[(UsagePeriod, u64, u64)],
    ) -> impl Future<Output = StoreResult<Option<UsagePeriod>>> + Send;
    /// Gives back part of a reservation made at `reserved_at` (credits a call did not use),
    /// unless its period has rolled over since.
    fn release_usage(
        &self,
        ws: WorkspaceId,
        provider: ProviderKind,
        reserved_at: Timestamp,
        releases: &[(UsagePeriod, u64)],
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The current counters of every provider of the workspace.
    fn provider_usage(&self, ws: WorkspaceId) -> impl Future<Output = StoreResult<Vec<Usage>>> + Send;
}

/// The event log (outbox). Events are numbered per workspace without gaps.
pub trait EventRepo: Send + Sync {
    /// Appends events in their own transaction and returns them numbered (writes of leads and
    /// enrichment append theirs in the transaction of the change instead).
    fn append_events(&self, events: &[NewEvent]) -> impl Future<Output = StoreResult<Vec<Event>>> + Send;
    /// Events of `ws` numbered above `after`, oldest first.
    fn events_after(
        &self,
        ws: WorkspaceId,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<Event>>> + Send;
    /// The number of the newest event of `ws` (0 when it has none).
    fn event_head(&self, ws: WorkspaceId) -> impl Future<Output = StoreResult<i64>> + Send;
    /// The newest event number of every workspace.
    fn event_heads(&self) -> impl Future<Output = StoreResult<Vec<(WorkspaceId, i64)>>> + Send;
    /// Deletes events older than `before` (retention); returns how many.
    fn prune_events(&self, before: Timestamp) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// Outbound webhook endpoints and their delivery log.
pub trait WebhookRepo: Send + Sync {
    /// Creates or replaces an endpoint (never moving it to another workspace).
    fn save_webhook(&self, endpoint: &WebhookEndpoint) -> impl Future<Output = StoreResult<()>> + Send;
    fn webhooks(&self, ws: WorkspaceId) -> impl Future<Output = StoreResult<Vec<WebhookEndpoint>>> + Send;
    fn webhook(
        &self,
        ws: WorkspaceId,
        id: Uuid,
    ) -> impl Future<Output = StoreResult<Option<WebhookEndpoint>>> + Send;
    /// Deletes an endpoint and its delivery log; false when there was none.
    fn delete_webhook(&self, ws: WorkspaceId, id: Uuid) -> impl Future<Output = StoreResult<bool>> + Send;
    /// The enabled endpoints of every workspace, for the dispatcher that queues deliveries.
    fn enabled_webhooks(&self) -> impl Future<Output = StoreResult<Vec<WebhookEndpoint>>> + Send;
    /// Moves an endpoint's cursor from `from` to `to`; false when another dispatcher moved it.
    fn advance_webhook(
        &self,
        ws: WorkspaceId,
        id: Uuid,
        from: i64,
        to: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Logs one attempt; a success also resets the endpoint's run of failures.
    fn record_delivery(&self, delivery: &WebhookDelivery) -> impl Future<Output = StoreResult<()>> + Send;
    /// Counts a dead-lettered delivery; at `threshold` in a row the endpoint is switched off and
    /// the returned `webhook.disabled` event is appended in the same transaction.
    fn webhook_dead(
        &self,
        ws: WorkspaceId,
        id: Uuid,
        threshold: u32,
        at: Timestamp,
    ) -> impl Future<Output = StoreResult<Vec<Event>>> + Send;
    /// Deletes delivery attempts older than `before` (retention); returns how many.
    fn prune_deliveries(&self, before: Timestamp) -> impl Future<Output = StoreResult<u64>> + Send;
    /// An endpoint's attempts, newest first, older than `before` (a delivery id).
    fn deliveries(
        &self,
        ws: WorkspaceId,
        endpoint: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<WebhookDelivery>>> + Send;
}

/// One chunk of an import, committed atomically by `ImportRepo::commit_import_chunk`.
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
pub trait ImportRepo: Send + Sync {
    fn create_import(&self, import: &Import) -> impl Future<Output = StoreResult<()>> + Send;
    fn import(
        &self,
        ws: WorkspaceId,
        id: ImportId,
    ) -> impl Future<Output = StoreResult<Option<Import>>> + Send;
    /// Newest first, older than `before`.
    fn imports(
        &self,
        ws: WorkspaceId,
        before: Option<ImportId>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<Import>>> + Send;
    /// The newest unfinished import of `ws` that ran outside the job queue (the CLI: running or
    /// interrupted, no job) with the same format and options, which a new run of the same file
    /// continues.
    fn resumable_import(
        &self,
        ws: WorkspaceId,
        format: &str,
        options: &serde_json::Value,
    ) -> impl Future<Output = StoreResult<Option<Import>>> + Send;
    /// Writes status, checkpoint, counters, error and timestamps as they are in `import` (and
    /// its job, when it names one).
    fn save_import(&self, import: &Import) -> impl Future<Output = StoreResult<()>> + Send;
    /// Records the job that runs an uploaded import.
    fn set_import_job(
        &self,
        ws: WorkspaceId,
        id: ImportId,
        job: JobId,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The leads of `ws` whose email is among `emails`, in no particular order.
    fn leads_by_emails(
        &self,
        ws: WorkspaceId,
        emails: &[EmailAddress],
    ) -> impl Future<Output = StoreResult<Vec<Lead>>> + Send;
    /// Commits a chunk (leads, maintained counts and tags, error rows, counters, checkpoint and
    /// an `import.progress` event) in one transaction. `Conflict { field: "email" }` when a
    /// concurrent write took one of the new emails, `VersionMismatch` when an updated lead or
    /// the checkpoint changed meanwhile: nothing is written then, and the caller retries.
    /// Writes no per-lead events.
    fn commit_import_chunk(
        &self,
        chunk: &ImportChunk<'_>,
    ) -> impl Future<Output = StoreResult<Vec<Event>>> + Send;
    /// Saves the final state, deletes the uploaded file and appends `import.finished`.
    fn finish_import(&self, import: &Import) -> impl Future<Output = StoreResult<Vec<Event>>> + Send;
    /// The error report in row order, after `(row, seq)`.
    fn import_errors(
        &self,
        ws: WorkspaceId,
        id: ImportId,
        after: Option<(u64, u32)>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<ImportErrorRow>>> + Send;
    /// Stores chunk `seq` of an uploaded file; `NotFound` when the import is not in `ws`.
    fn save_import_upload(
        &self,
        ws: WorkspaceId,
        id: ImportId,
        seq: u32,
        data: &[u8],
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Chunk `seq` of an uploaded file; `None` past the end.
    fn import_upload(
        &self,
        ws: WorkspaceId,
        id: ImportId,
        seq: u32,
    ) -> impl Future<Output = StoreResult<Option<Vec<u8>>>> + Send;
}

/// A claim's lease on the jobs it took: whoever holds `token` owns them until `until`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Lease {
    pub token: String,
    pub until: Timestamp,
}

/// What `reclaim_expired_jobs` did with jobs whose worker stopped heartbeating.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Reclaimed {
    /// Put back in the queue for another attempt.
    pub requeued: u64,
    /// Out of attempts: now dead (as stored, error history included).
    pub dead: Vec<Job>,
}

/// The durable job queue and its recurring schedules. Jobs a worker holds are changed only
/// with the lease token of its claim, so a worker whose lease expired cannot overwrite what
/// another worker did since. Admin operations take a `JobScope`; the GraphQL side always
/// passes the caller's workspace.
pub trait JobRepo: Send + Sync {
    /// Inserts a queued job with `max_attempts` (the kind's policy when the job names none).
    /// With a unique key already held by a queued or running job, nothing is inserted:
    /// `Duplicate::Keep` returns that job, `Duplicate::Replace` first gives a still-queued one
    /// the new payload, priority and `run_at`.
    fn enqueue_job(
        &self,
        job: &NewJob,
        max_attempts: u32,
        at: Timestamp,
    ) -> impl Future<Output = StoreResult<Enqueued>> + Send;
    /// Leases up to `limit` due queued jobs of `kinds` (highest priority, then earliest
    /// `run_at`, first), starting an attempt of each; returned in that order.
    fn claim_jobs(
        &self,
        kinds: &[&str],
        limit: u32,
        lease: &Lease,
        at: Timestamp,
    ) -> impl Future<Output = StoreResult<Vec<Job>>> + Send;
    /// Extends the lease of a running job; false when `token` no longer owns it.
    fn heartbeat_job(
        &self,
        id: JobId,
        token: &str,
        until: Timestamp,
        at: Timestamp,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Records what a running job reports about itself; false when `token` no longer owns it.
    fn save_job_progress(
        &self,
        id: JobId,
        token: &str,
        progress: &serde_json::Value,
        at: Timestamp,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Marks jobs succeeded, each only if its token still owns it; returns how many were.
    fn complete_jobs(
        &self,
        done: &[(JobId, String)],
        at: Timestamp,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Records a failed attempt of a claimed `job` (its history gains `failure`): queued again
    /// at `retry_at`, or dead when `None` (appending `job.dead` to the workspace's events in the
    /// same transaction). False when the job's token no longer owns it.
    fn fail_job(
        &self,
        job: &Job,
        failure: &JobFailure,
        retry_at: Option<Timestamp>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Running jobs whose lease ended before `at` go back to the queue, or die with the error
    /// "lease expired" when their attempts are used up.
    fn reclaim_expired_jobs(&self, at: Timestamp) -> impl Future<Output = StoreResult<Reclaimed>> + Send;
    /// A job by id within `scope`.
    fn job(&self, scope: JobScope, id: JobId) -> impl Future<Output = StoreResult<Option<Job>>> + Send;
    /// Counts by (kind, state) within `scope`, with the earliest `run_at` of queued jobs.
    fn job_stats(&self, scope: JobScope) -> impl Future<Output = StoreResult<Vec<QueueStat>>> + Send;
    /// Dead jobs, newest first, with an id below `before` (keyset), up to `limit`.
    fn dead_jobs(
        &self,
        scope: JobScope,
        kind: Option<&str>,
        before: Option<JobId>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<Job>>> + Send;
    /// Queues the selected dead jobs again with fresh attempts (their history is kept);
    /// returns how many. A job whose unique key a live job holds now stays dead.
    fn replay_jobs(
        &self,
        scope: JobScope,
        selection: &JobSelection,
        at: Timestamp,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Deletes the selected dead jobs; returns how many.
    fn discard_jobs(
        &self,
        scope: JobScope,
        selection: &JobSelection,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Deletes succeeded jobs that finished before `before`; returns how many.
    fn prune_jobs(&self, before: Timestamp) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Creates or updates a schedule by name. An existing schedule keeps its `next_run_at`
    /// unless its cron or time zone changed.
    fn upsert_schedule(&self, schedule: &Schedule) -> impl Future<Output = StoreResult<()>> + Send;
    /// Every schedule, by name.
    fn schedules(&self) -> impl Future<Output = StoreResult<Vec<Schedule>>> + Send;
    /// Moves a schedule from the tick `due` to `next` and enqueues `job` in one transaction,
    /// only if the schedule is still at `due` (so one instance fires each tick). `None` when
    /// another instance fired it first.
    fn fire_schedule(
        &self,
        name: &str,
        due: Timestamp,
        next: Timestamp,
        job: &NewJob,
        max_attempts: u32,
        at: Timestamp,
    ) -> impl Future<Output = StoreResult<Option<Enqueued>>> + Send;
}

/// Erasure tombstones (right to be forgotten).
pub trait ErasureRepo: Send + Sync {
    /// Which of `hashes` belong to people erased from workspace `ws`.
    fn tombstoned(
        &self,
        ws: WorkspaceId,
        hashes: &[EmailHash],
    ) -> impl Future<Output = StoreResult<Vec<EmailHash>>> + Send;
    /// The lead of `ws` with this email, if any.
    fn lead_id_by_email(
        &self,
        ws: WorkspaceId,
        email: &EmailAddress,
    ) -> impl Future<Output = StoreResult<Option<LeadId>>> + Send;
    /// Erases a lead in one transaction (see `store::erasure` for every table it touches):
    /// deletes it with its tags and enrichment records, scrubs the person from events, webhook
    /// deliveries and jobs, deletes rows keyed by its email hash, adds the tombstone, adjusts
    /// the counts, records the audit row and appends `lead.erased`. `None` when the lead does
    /// not exist in `ws`.
    fn erase_lead(
        &self,
        ws: WorkspaceId,
        id: LeadId,
        actor_subject: &str,
        reason: Option<&str>,
        at: Timestamp,
    ) -> impl Future<Output = StoreResult<Option<(Erasure, Vec<Event>)>>> + Send;
    /// Audit records, newest first, with an id below `before` (keyset), up to `limit`.
    fn erasures(
        &self,
        ws: WorkspaceId,
        before: Option<ErasureId>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<Erasure>>> + Send;
}

/// Retention policies, run records, and the bounded batches a run is made of. Each batch is
/// its own short transaction over at most `limit` rows.
pub trait RetentionRepo: Send + Sync {
    fn retention_policy(
        &self,
        ws: WorkspaceId,
    ) -> impl Future<Output = StoreResult<Option<RetentionPolicy>>> + Send;
    fn save_retention_policy(
        &self,
        ws: WorkspaceId,
        policy: &RetentionPolicy,
        at: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Every workspace's stored policy (for the daily schedule).
    fn retention_policies(
        &self,
    ) -> impl Future<Output = StoreResult<Vec<(WorkspaceId, RetentionPolicy)>>> + Send;
    /// Creates or updates a run record (never moving it to another workspace).
    fn save_retention_run(&self, run: &RetentionRun) -> impl Future<Output = StoreResult<()>> + Send;
    /// Removes a run record that never started (its job was a duplicate).
    fn delete_retention_run(
        &self,
        ws: WorkspaceId,
        id: RetentionRunId,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn retention_run(
        &self,
        ws: WorkspaceId,
        id: RetentionRunId,
    ) -> impl Future<Output = StoreResult<Option<RetentionRun>>> + Send;
    /// Runs, newest first, with an id below `before` (keyset), up to `limit`.
    fn retention_runs(
        &self,
        ws: WorkspaceId,
        before: Option<RetentionRunId>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<RetentionRun>>> + Send;
    /// What a run with `cutoffs` would change now (a dry run).
    fn count_retention(
        &self,
        ws: WorkspaceId,
        cutoffs: &Cutoffs,
    ) -> impl Future<Output = StoreResult<RetentionCounts>> + Send;
    /// Archives up to `limit` active leads with `updated_at < before` (oldest first), setting
    /// `archived_at` and `updated_at` to `at`, with their `lead.archived` events and the counts in
    /// the same transaction; returns the events (empty when none was left).
    fn archive_stale_leads(
        &self,
        ws: WorkspaceId,
        before: Timestamp,
        at: Timestamp,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<Event>>> + Send;
    /// Deletes up to `limit` archived leads with `archived_at < before`, with their tags and
    /// enrichment records; returns how many leads.
    fn delete_archived_leads(
        &self,
        ws: WorkspaceId,
        before: Timestamp,
        limit: u32,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Deletes the expired (`expires_at < before`) enrichment records of up to `limit` leads;
    /// returns how many records.
    fn compact_enrichment(
        &self,
        ws: WorkspaceId,
        before: Timestamp,
        limit: u32,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Deletes up to `limit` of the workspace's oldest events created before `before`.
    fn compact_events(
        &self,
        ws: WorkspaceId,
        before: Timestamp,
        limit: u32,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// Health and maintenance.
pub trait AdminRepo: Send + Sync {
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;
    /// Refreshes planner statistics after a bulk load.
    fn analyze(&self) -> impl Future<Output = StoreResult<()>> + Send;
}

/// The configured backend.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
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
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(SqliteStore::open(url, options).await?))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Store::Postgres(PgStore::open(url, options).await?))
        } else {
            Err(StoreError::Config(format!(
                "unsupported database URL scheme in '{}': use sqlite:// or postgres://",
                redact_url(url)
            )))
        }
    }

    pub async fn migrate(&self) -> StoreResult<()> {
        match self {
            Store::Sqlite(s) => s.migrate().await,
            Store::Postgres(s) => s.migrate().await,
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
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

/// Wake-ups for events committed by any instance sharing a PostgreSQL database. A
/// notification only says "look": the log is the truth, and one lost while the connection was
/// re-established is found by the next poll.
pub struct EventListener(sqlx::postgres::PgListener);

impl EventListener {
    /// The next `(workspace, newest number)` announced; reconnects when the connection drops.
    pub async fn recv(&mut self) -> StoreResult<(WorkspaceId, i64)> {
        loop {
            let note = self.0.recv().await.map_err(repo::interpret)?;
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

impl Store {
    /// A listener for other instances' events: `Some` on PostgreSQL, `None` on SQLite, whose
    /// other processes are only seen by polling.
    pub async fn event_listener(&self) -> StoreResult<Option<EventListener>> {
        match self {
            Store::Sqlite(_) => Ok(None),
            Store::Postgres(pg) => pg.listen_events().await.map(Some),
        }
    }
}

/// Forwards each trait method to the backend in use.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Sqlite(s) => s.$method($($arg),*).await,
            Store::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl WorkspaceRepo for Store {
    async fn create_workspace(&self, ws: &Workspace) -> StoreResult<()> {
        dispatch!(self.create_workspace(ws))
    }
    async fn workspace(&self, id: WorkspaceId) -> StoreResult<Option<Workspace>> {
        dispatch!(self.workspace(id))
    }
    async fn workspace_by_slug(&self, slug: &str) -> StoreResult<Option<Workspace>> {
        dispatch!(self.workspace_by_slug(slug))
    }
    async fn list_workspaces(&self) -> StoreResult<Vec<Workspace>> {
        dispatch!(self.list_workspaces())
    }
    async fn lead_counts(&self, ws: WorkspaceId) -> StoreResult<LeadCounts> {
        dispatch!(self.lead_counts(ws))
    }
}

impl SettingsRepo for Store {
    async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        dispatch!(self.setting(key))
    }
    async fn setting_or_insert(&self, key: &str, value: &str) -> StoreResult<String> {
        dispatch!(self.setting_or_insert(key, value))
    }
}

impl LeadRepo for Store {
    async fn lead(&self, ws: WorkspaceId, id: LeadId) -> StoreResult<Option<Lead>> {
        dispatch!(self.lead(ws, id))
    }
    async fn leads_by_ids(&self, ws: WorkspaceId, ids: &[LeadId]) -> StoreResult<Vec<Lead>> {
        dispatch!(self.leads_by_ids(ws, ids))
    }
    async fn list_leads(&self, ws: WorkspaceId, query: &LeadQuery) -> StoreResult<Vec<Lead>> {
        dispatch!(self.list_leads(ws, query))
    }
    async fn list_leads_counted(
        &self,
        ws: WorkspaceId,
        query: &LeadQuery,
    ) -> StoreResult<(Vec<Lead>, Option<LeadCounts>)> {
        dispatch!(self.list_leads_counted(ws, query))
    }
    async fn any_lead_beside(
        &self,
        ws: WorkspaceId,
        filter: &LeadFilter,
        cursor: &Cursor,
        side: Side,
    ) -> StoreResult<bool> {
        dispatch!(self.any_lead_beside(ws, filter, cursor, side))
    }
    async fn count_leads(&self, ws: WorkspaceId, filter: &LeadFilter, cap: u64) -> StoreResult<u64> {
        dispatch!(self.count_leads(ws, filter, cap))
    }
    async fn insert_lead(&self, lead: &Lead) -> StoreResult<Vec<Event>> {
        dispatch!(self.insert_lead(lead))
    }
    async fn update_lead(&self, lead: &Lead, previous: &Lead) -> StoreResult<Vec<Event>> {
        dispatch!(self.update_lead(lead, previous))
    }
    async fn upsert_leads(
        &self,
        ws: WorkspaceId,
        items: &[(EmailAddress, LeadPatch)],
        at: Timestamp,
    ) -> StoreResult<(Vec<UpsertOutcome>, Vec<Event>)> {
        dispatch!(self.upsert_leads(ws, items, at))
    }
    async fn insert_leads_bulk(&self, ws: WorkspaceId, leads: &[Lead]) -> StoreResult<u64> {
        dispatch!(self.insert_leads_bulk(ws, leads))
    }
    async fn load_leads<F, P>(
        &self,
        ws: WorkspaceId,
        total: u64,
        rebuild_indexes: bool,
        next_chunk: F,
        progress: P,
    ) -> StoreResult<u64>
    where
        F: FnMut(usize) -> Vec<Lead> + Send,
        P: FnMut(u64) + Send,
    {
        dispatch!(self.load_leads(ws, total, rebuild_indexes, next_chunk, progress))
    }
}

impl EnrichmentRepo for Store {
    async fn enrichment_records(
        &self,
        ws: WorkspaceId,
        leads: &[LeadId],
        groups: &[Group],
    ) -> StoreResult<Vec<EnrichmentRecord>> {
        dispatch!(self.enrichment_records(ws, leads, groups))
    }
    async fn save_enrichment(
        &self,
        ws: WorkspaceId,
        records: &[EnrichmentRecord],
        events: &[NewEvent],
    ) -> StoreResult<Vec<Event>> {
        dispatch!(self.save_enrichment(ws, records, events))
    }
    async fn enrichment_settings(&self, ws: WorkspaceId) -> StoreResult<Option<EnrichmentSettings>> {
        dispatch!(self.enrichment_settings(ws))
    }
    async fn save_enrichment_settings(
        &self,
        ws: WorkspaceId,
        settings: &EnrichmentSettings,
        at: Timestamp,
    ) -> StoreResult<()> {
        dispatch!(self.save_enrichment_settings(ws, settings, at))
    }
    async fn provider_configs(&self, ws: WorkspaceId) -> StoreResult<Vec<ProviderConfig>> {
        dispatch!(self.provider_configs(ws))
    }
    async fn save_provider_config(&self, ws: WorkspaceId, config: &ProviderConfig) -> StoreResult<()> {
        dispatch!(self.save_provider_config(ws, config))
    }
    async fn disable_provider(
        &self,
        ws: WorkspaceId,
        provider: ProviderKind,
        reason: &str,
        at: Timestamp,
    ) -> StoreResult<()> {
        dispatch!(self.disable_provider(ws, provider, reason, at))
    }
    async fn count_sealed_keys(&self) -> StoreResult<u64> {
        dispatch!(self.count_sealed_keys())
    }
    async fn reserve_usage(
        &self,
        ws: WorkspaceId,
        provider: ProviderKind,
        at: Timestamp,
        charges: &[(UsagePeriod, u64, u64)],
    ) -> StoreResult<Option<UsagePeriod>> {
        dispatch!(self.reserve_usage(ws, provider, at, charges))
    }
    async fn release_usage(
        &self,
        ws: WorkspaceId,
        provider: ProviderKind,
        reserved_at: Timestamp,
        releases: &[(UsagePeriod, u64)],
    ) -> StoreResult<()> {
        dispatch!(self.release_usage(ws, provider, reserved_at, releases))
    }
    async fn provider_usage(&self, ws: WorkspaceId) -> StoreResult<Vec<Usage>> {
        dispatch!(self.provider_usage(ws))
    }
}

impl EventRepo for Store {
    async fn append_events(&self, events: &[NewEvent]) -> StoreResult<Vec<Event>> {
        dispatch!(self.append_events(events))
    }
    async fn events_after(&self, ws: WorkspaceId, after: i64, limit: u32) -> StoreResult<Vec<Event>> {
        dispatch!(self.events_after(ws, after, limit))
    }
    async fn event_head(&self, ws: WorkspaceId) -> StoreResult<i64> {
        dispatch!(self.event_head(ws))
    }
    async fn event_heads(&self) -> StoreResult<Vec<(WorkspaceId, i64)>> {
        dispatch!(self.event_heads())
    }
    async fn prune_events(&self, before: Timestamp) -> StoreResult<u64> {
        dispatch!(self.prune_events(before))
    }
}

impl WebhookRepo for Store {
    async fn save_webhook(&self, endpoint: &WebhookEndpoint) -> StoreResult<()> {
        dispatch!(self.save_webhook(endpoint))
    }
    async fn webhooks(&self, ws: WorkspaceId) -> StoreResult<Vec<WebhookEndpoint>> {
        dispatch!(self.webhooks(ws))
    }
    async fn webhook(&self, ws: WorkspaceId, id: Uuid) -> StoreResult<Option<WebhookEndpoint>> {
        dispatch!(self.webhook(ws, id))
    }
    async fn delete_webhook(&self, ws: WorkspaceId, id: Uuid) -> StoreResult<bool> {
        dispatch!(self.delete_webhook(ws, id))
    }
    async fn enabled_webhooks(&self) -> StoreResult<Vec<WebhookEndpoint>> {
        dispatch!(self.enabled_webhooks())
    }
    async fn advance_webhook(&self, ws: WorkspaceId, id: Uuid, from: i64, to: i64) -> StoreResult<bool> {
        dispatch!(self.advance_webhook(ws, id, from, to))
    }
    async fn record_delivery(&self, delivery: &WebhookDelivery) -> StoreResult<()> {
        dispatch!(self.record_delivery(delivery))
    }
    async fn webhook_dead(
        &self,
        ws: WorkspaceId,
        id: Uuid,
        threshold: u32,
        at: Timestamp,
    ) -> StoreResult<Vec<Event>> {
        dispatch!(self.webhook_dead(ws, id, threshold, at))
    }
    async fn prune_deliveries(&self, before: Timestamp) -> StoreResult<u64> {
        dispatch!(self.prune_deliveries(before))
    }
    async fn deliveries(
        &self,
        ws: WorkspaceId,
        endpoint: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        dispatch!(self.deliveries(ws, endpoint, before, limit))
    }
}

impl ErasureRepo for Store {
    async fn tombstoned(&self, ws: WorkspaceId, hashes: &[EmailHash]) -> StoreResult<Vec<EmailHash>> {
        dispatch!(self.tombstoned(ws, hashes))
    }
    async fn lead_id_by_email(&self, ws: WorkspaceId, email: &EmailAddress) -> StoreResult<Option<LeadId>> {
        dispatch!(self.lead_id_by_email(ws, email))
    }
    async fn erase_lead(
        &self,
        ws: WorkspaceId,
        id: LeadId,
        actor_subject: &str,
        reason: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<Option<(Erasure, Vec<Event>)>> {
        dispatch!(self.erase_lead(ws, id, actor_subject, reason, at))
    }
    async fn erasures(
        &self,
        ws: WorkspaceId,
        before: Option<ErasureId>,
        limit: u32,
    ) -> StoreResult<Vec<Erasure>> {
        dispatch!(self.erasures(ws, before, limit))
    }
}

impl RetentionRepo for Store {
    async fn retention_policy(&self, ws: WorkspaceId) -> StoreResult<Option<RetentionPolicy>> {
        dispatch!(self.retention_policy(ws))
    }
    async fn save_retention_policy(
        &self,
        ws: WorkspaceId,
        policy: &RetentionPolicy,
        at: Timestamp,
    ) -> StoreResult<()> {
        dispatch!(self.save_retention_policy(ws, policy, at))
    }
    async fn retention_policies(&self) -> StoreResult<Vec<(WorkspaceId, RetentionPolicy)>> {
        dispatch!(self.retention_policies())
    }
    async fn save_retention_run(&self, run: &RetentionRun) -> StoreResult<()> {
        dispatch!(self.save_retention_run(run))
    }
    async fn delete_retention_run(&self, ws: WorkspaceId, id: RetentionRunId) -> StoreResult<()> {
        dispatch!(self.delete_retention_run(ws, id))
    }
    async fn retention_run(&self, ws: WorkspaceId, id: RetentionRunId) -> StoreResult<Option<RetentionRun>> {
        dispatch!(self.retention_run(ws, id))
    }
    async fn retention_runs(
        &self,
        ws: WorkspaceId,
        before: Option<RetentionRunId>,
        limit: u32,
    ) -> StoreResult<Vec<RetentionRun>> {
        dispatch!(self.retention_runs(ws, before, limit))
    }
    async fn count_retention(&self, ws: WorkspaceId, cutoffs: &Cutoffs) -> StoreResult<RetentionCounts> {
        dispatch!(self.count_retention(ws, cutoffs))
    }
    async fn archive_stale_leads(
        &self,
        ws: WorkspaceId,
        before: Timestamp,
        at: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        dispatch!(self.archive_stale_leads(ws, before, at, limit))
    }
    async fn delete_archived_leads(
        &self,
        ws: WorkspaceId,
        before: Timestamp,
        limit: u32,
    ) -> StoreResult<u64> {
        dispatch!(self.delete_archived_leads(ws, before, limit))
    }
    async fn compact_enrichment(&self, ws: WorkspaceId, before: Timestamp, limit: u32) -> StoreResult<u64> {
        dispatch!(self.compact_enrichment(ws, before, limit))
    }
    async fn compact_events(&self, ws: WorkspaceId, before: Timestamp, limit: u32) -> StoreResult<u64> {
        dispatch!(self.compact_events(ws, before, limit))
    }
}

impl ImportRepo for Store {
    async fn create_import(&self, import: &Import) -> StoreResult<()> {
        dispatch!(self.create_import(import))
    }
    async fn import(&self, ws: WorkspaceId, id: ImportId) -> StoreResult<Option<Import>> {
        dispatch!(self.import(ws, id))
    }
    async fn imports(
        &self,
        ws: WorkspaceId,
        before: Option<ImportId>,
        limit: u32,
    ) -> StoreResult<Vec<Import>> {
        dispatch!(self.imports(ws, before, limit))
    }
    async fn resumable_import(
        &self,
        ws: WorkspaceId,
        format: &str,
        options: &serde_json::Value,
    ) -> StoreResult<Option<Import>> {
        dispatch!(self.resumable_import(ws, format, options))
    }
    async fn save_import(&self, import: &Import) -> StoreResult<()> {
        dispatch!(self.save_import(import))
    }
    async fn set_import_job(&self, ws: WorkspaceId, id: ImportId, job: JobId) -> StoreResult<()> {
        dispatch!(self.set_import_job(ws, id, job))
    }
    async fn leads_by_emails(&self, ws: WorkspaceId, emails: &[EmailAddress]) -> StoreResult<Vec<Lead>> {
        dispatch!(self.leads_by_emails(ws, emails))
    }
    async fn commit_import_chunk(&self, chunk: &ImportChunk<'_>) -> StoreResult<Vec<Event>> {
        dispatch!(self.commit_import_chunk(chunk))
    }
    async fn finish_import(&self, import: &Import) -> StoreResult<Vec<Event>> {
        dispatch!(self.finish_import(import))
    }
    async fn import_errors(
        &self,
        ws: WorkspaceId,
        id: ImportId,
        after: Option<(u64, u32)>,
        limit: u32,
    ) -> StoreResult<Vec<ImportErrorRow>> {
        dispatch!(self.import_errors(ws, id, after, limit))
    }
    async fn save_import_upload(
        &self,
        ws: WorkspaceId,
        id: ImportId,
        seq: u32,
        data: &[u8],
    ) -> StoreResult<()> {
        dispatch!(self.save_import_upload(ws, id, seq, data))
    }
    async fn import_upload(&self, ws: WorkspaceId, id: ImportId, seq: u32) -> StoreResult<Option<Vec<u8>>> {
        dispatch!(self.import_upload(ws, id, seq))
    }
}

impl AdminRepo for Store {
    async fn ping(&self) -> StoreResult<()> {
        dispatch!(self.ping())
    }
    async fn analyze(&self) -> StoreResult<()> {
        dispatch!(self.analyze())
    }
}

impl JobRepo for Store {
    async fn enqueue_job(&self, job: &NewJob, max_attempts: u32, at: Timestamp) -> StoreResult<Enqueued> {
        dispatch!(self.enqueue_job(job, max_attempts, at))
    }
    async fn claim_jobs(
        &self,
        kinds: &[&str],
        limit: u32,
        lease: &Lease,
        at: Timestamp,
    ) -> StoreResult<Vec<Job>> {
        dispatch!(self.claim_jobs(kinds, limit, lease, at))
    }
    async fn heartbeat_job(
        &self,
        id: JobId,
        token: &str,
        until: Timestamp,
        at: Timestamp,
    ) -> StoreResult<bool> {
        dispatch!(self.heartbeat_job(id, token, until, at))
    }
    async fn save_job_progress(
        &self,
        id: JobId,
        token: &str,
        progress: &serde_json::Value,
        at: Timestamp,
    ) -> StoreResult<bool> {
        dispatch!(self.save_job_progress(id, token, progress, at))
    }
    async fn complete_jobs(&self, done: &[(JobId, String)], at: Timestamp) -> StoreResult<u64> {
        dispatch!(self.complete_jobs(done, at))
    }
    async fn fail_job(
        &self,
        job: &Job,
        failure: &JobFailure,
        retry_at: Option<Timestamp>,
    ) -> StoreResult<bool> {
        dispatch!(self.fail_job(job, failure, retry_at))
    }
    async fn reclaim_expired_jobs(&self, at: Timestamp) -> StoreResult<Reclaimed> {
        dispatch!(self.reclaim_expired_jobs(at))
    }
    async fn job(&self, scope: JobScope, id: JobId) -> StoreResult<Option<Job>> {
        dispatch!(self.job(scope, id))
    }
    async fn job_stats(&self, scope: JobScope) -> StoreResult<Vec<QueueStat>> {
        dispatch!(self.job_stats(scope))
    }
    async fn dead_jobs(
        &self,
        scope: JobScope,
        kind: Option<&str>,
        before: Option<JobId>,
        limit: u32,
    ) -> StoreResult<Vec<Job>> {
        dispatch!(self.dead_jobs(scope, kind, before, limit))
    }
    async fn replay_jobs(
        &self,
        scope: JobScope,
        selection: &JobSelection,
        at: Timestamp,
    ) -> StoreResult<u64> {
        dispatch!(self.replay_jobs(scope, selection, at))
    }
    async fn discard_jobs(&self, scope: JobScope, selection: &JobSelection) -> StoreResult<u64> {
        dispatch!(self.discard_jobs(scope, selection))
    }
    async fn prune_jobs(&self, before: Timestamp) -> StoreResult<u64> {
        dispatch!(self.prune_jobs(before))
    }
    async fn upsert_schedule(&self, schedule: &Schedule) -> StoreResult<()> {
        dispatch!(self.upsert_schedule(schedule))
    }
    async fn schedules(&self) -> StoreResult<Vec<Schedule>> {
        dispatch!(self.schedules())
    }
    async fn fire_schedule(
        &self,
        name: &str,
        due: Timestamp,
        next: Timestamp,
        job: &NewJob,
        max_attempts: u32,
        at: Timestamp,
    ) -> StoreResult<Option<Enqueued>> {
        dispatch!(self.fire_schedule(name, due, next, job, max_attempts, at))
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
