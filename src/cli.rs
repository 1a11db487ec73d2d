//! The command line: `serve`, `worker`, `migrate`, `schema`, `workspace`, `token`, `seed`,
//! `import`, `export`, `erase`, `backup` and `restore`.
//!
//! Every flag can also come from a `LEADGATE_*` environment variable (flags win) and from
//! `leadgate.toml` (the environment wins). Output meant for scripts (a token, the schema) goes
//! to stdout alone; progress and messages go to stderr.

use crate::app::{self, App};
use crate::bulk::import::{Format, OnDuplicate, pipeline};
use crate::config::{LogFormat, Settings};
use crate::domain::{CountryCode, Role};
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(name = "leadgate", version, about = "A GraphQL gateway for sales leads")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct GlobalArgs {
    /// Config file (TOML); `leadgate.toml` is read when present and this is not given.
    #[arg(long, env = "LEADGATE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Database URL: `sqlite://FILE` or `postgres://USER@HOST/DB`.
    #[arg(long, env = "LEADGATE_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Maximum database connections per process.
    #[arg(long, env = "LEADGATE_DATABASE_MAX_CONNECTIONS", global = true)]
    pub database_max_connections: Option<u32>,
    /// HS256 token secret, at least 32 bytes.
    #[arg(long, env = "LEADGATE_JWT_SECRET", global = true, hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Required token issuer (`iss`).
    #[arg(long, env = "LEADGATE_JWT_ISSUER", global = true)]
    pub jwt_issuer: Option<String>,
    /// Required token audience (`aud`).
    #[arg(long, env = "LEADGATE_JWT_AUDIENCE", global = true)]
    pub jwt_audience: Option<String>,
    /// Master key sealing provider API keys: 32 bytes, base64.
    #[arg(long, env = "LEADGATE_MASTER_KEY", global = true, hide_env_values = true)]
    pub master_key: Option<String>,
    /// Log filter, e.g. `info` or `leadgate=debug`.
    #[arg(long, env = "LEADGATE_LOG", global = true)]
    pub log: Option<String>,
    /// Log format.
    #[arg(long, env = "LEADGATE_LOG_FORMAT", global = true, value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP server (GraphQL at /graphql, GraphiQL at /graphiql) and job workers.
    Serve(Box<ServeArgs>),
    /// Run only job workers, no HTTP, until SIGTERM; several may run at once.
    Worker(Box<WorkerCommandArgs>),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Manage workspaces.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Mint a bearer token (printed alone on stdout).
    Token(TokenArgs),
    /// Insert synthetic leads into a workspace.
    Seed(SeedArgs),
    /// Export a workspace's leads (all, or those a filter selects) as CSV or NDJSON.
    Export(ExportArgs),
    /// Import leads from a CSV or NDJSON file (or stdin), resuming an interrupted import of
    /// the same file.
    Import(Box<ImportArgs>),
    /// Erase a lead on request (right to be forgotten): deletes it with everything that holds
    /// the person's data, keeps a tombstone of the email's hash, and prints the audit record.
    Erase(EraseArgs),
    /// Write a consistent, compressed copy of the whole database to a file, while it serves.
    Backup(BackupArgs),
    /// Rebuild a backup into the empty database given by `--database-url`, verifying it.
    Restore(RestoreArgs),
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// The file to write; it appears only once complete.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// A file written by `leadgate backup`.
    pub file: PathBuf,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["lead", "email"])))]
pub struct EraseArgs {
    /// Workspace slug of the lead.
    #[arg(long)]
    pub workspace: String,
    /// The lead's id (its UUID or its GraphQL global id).
    #[arg(long)]
    pub lead: Option<String>,
    /// The lead's email address.
    #[arg(long)]
    pub email: Option<String>,
    /// Why (kept in the audit record; no personal data, please).
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LEADGATE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Create the `demo` workspace with 10,000 leads on first start and print an admin token.
    #[arg(long, env = "LEADGATE_DEMO")]
    pub demo: bool,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "LEADGATE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest accepted multipart GraphQL request (file upload), in MiB.
    #[arg(long, env = "LEADGATE_IMPORT_MAX_UPLOAD_MB")]
    pub import_max_upload_mb: Option<u64>,
    /// Seconds before a request is answered with 408.
    #[arg(long, env = "LEADGATE_REQUEST_TIMEOUT_SECS")]
    pub request_timeout_secs: Option<u64>,
    /// Largest GraphQL batch (JSON array of requests).
    #[arg(long, env = "LEADGATE_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Maximum query depth (the introspection query needs 13).
    #[arg(long, env = "LEADGATE_MAX_DEPTH")]
    pub max_depth: Option<usize>,
    /// Maximum query complexity (page size × selected fields under connections).
    #[arg(long, env = "LEADGATE_MAX_COMPLEXITY")]
    pub max_complexity: Option<usize>,
    /// Maximum aliased fields per document.
    #[arg(long, env = "LEADGATE_MAX_ALIASES")]
    pub max_aliases: Option<usize>,
    /// Leads an export reads per statement.
    #[arg(long, env = "LEADGATE_EXPORT_BATCH_SIZE")]
    pub export_batch_size: Option<usize>,
    /// Run no job workers in this process (run `leadgate worker` elsewhere).
    #[arg(long, env = "LEADGATE_NO_WORKERS")]
    pub no_workers: bool,
    /// Whether to run job workers in this process (`--no-workers` wins).
    #[arg(long, env = "LEADGATE_WORKERS", value_name = "BOOL")]
    pub workers: Option<bool>,
    #[command(flatten)]
    pub ws: WsArgs,
    #[command(flatten)]
    pub enrichment: EnrichmentArgs,
    #[command(flatten)]
    pub events: EventArgs,
    #[command(flatten)]
    pub jobs: WorkerArgs,
}

/// The event log, its readers and outbound webhooks.
#[derive(Args, Debug)]
pub struct EventArgs {
    /// Milliseconds between checks for events written by other processes.
    #[arg(long, env = "LEADGATE_EVENT_POLL_MS")]
    pub event_poll_ms: Option<u64>,
    /// Days events are kept in the log.
    #[arg(long, env = "LEADGATE_EVENT_RETENTION_DAYS")]
    pub event_retention_days: Option<u64>,
    /// Milliseconds a webhook receiver may take to answer.
    #[arg(long, env = "LEADGATE_WEBHOOK_TIMEOUT_MS")]
    pub webhook_timeout_ms: Option<u64>,
    /// Attempts per webhook delivery before it is dead-lettered.
    #[arg(long, env = "LEADGATE_WEBHOOK_MAX_ATTEMPTS")]
    pub webhook_max_attempts: Option<u32>,
    /// Milliseconds before a failed delivery's first retry.
    #[arg(long, env = "LEADGATE_WEBHOOK_RETRY_BASE_MS")]
    pub webhook_retry_base_ms: Option<u64>,
    /// Dead-lettered deliveries in a row that switch an endpoint off.
    #[arg(long, env = "LEADGATE_WEBHOOK_DISABLE_AFTER")]
    pub webhook_disable_after: Option<u32>,
}

/// `leadgate worker`: the workers' settings and the providers their jobs call.
#[derive(Args, Debug)]
pub struct WorkerCommandArgs {
    #[command(flatten)]
    pub jobs: WorkerArgs,
    #[command(flatten)]
    pub enrichment: EnrichmentArgs,
    #[command(flatten)]
    pub events: EventArgs,
}

/// How job workers run.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Jobs one process runs at once.
    #[arg(long, env = "LEADGATE_WORKER_CONCURRENCY")]
    pub worker_concurrency: Option<usize>,
    /// Seconds a worker owns a job without a heartbeat before another may take it.
    #[arg(long, env = "LEADGATE_JOB_VISIBILITY_TIMEOUT_SECS")]
    pub job_visibility_timeout_secs: Option<u64>,
    /// Milliseconds between looks for due jobs.
    #[arg(long, env = "LEADGATE_JOB_POLL_INTERVAL_MS")]
    pub job_poll_interval_ms: Option<u64>,
    /// Milliseconds between reclaiming expired leases and checking schedules.
    #[arg(long, env = "LEADGATE_JOB_MAINTENANCE_INTERVAL_MS")]
    pub job_maintenance_interval_ms: Option<u64>,
    /// Hours succeeded jobs are kept.
    #[arg(long, env = "LEADGATE_JOB_RETENTION_HOURS")]
    pub job_retention_hours: Option<u64>,
    /// When retention runs: five cron fields in UTC (default "30 3 * * *").
    #[arg(long, env = "LEADGATE_RETENTION_SCHEDULE")]
    pub retention_schedule: Option<String>,
    /// Register the test job kinds `noop`, `sleep` (`{"ms": N}`) and `flaky`
    /// (`{"failures": N}` or `{"permanent": true}`), for benchmarks and tests.
    #[arg(long, env = "LEADGATE_JOB_TEST_KINDS")]
    pub job_test_kinds: bool,
    /// Five-field cron (UTC) for scheduled backups, e.g. "0 2 * * *"; unset: none.
    #[arg(long, env = "LEADGATE_BACKUP_SCHEDULE")]
    pub backup_schedule: Option<String>,
    /// Directory scheduled backups are written to.
    #[arg(long, env = "LEADGATE_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Scheduled backup files kept (the oldest beyond are deleted).
    #[arg(long, env = "LEADGATE_BACKUP_KEEP")]
    pub backup_keep: Option<usize>,
}

/// GraphQL over WebSocket (`/graphql/ws`).
#[derive(Args, Debug)]
pub struct WsArgs {
    /// Milliseconds a client may take to send `connection_init`.
    #[arg(long, env = "LEADGATE_WS_INIT_TIMEOUT_MS")]
    pub ws_init_timeout_ms: Option<u64>,
    /// Milliseconds between legacy `graphql-ws` keep-alives.
    #[arg(long, env = "LEADGATE_WS_KEEPALIVE_MS")]
    pub ws_keepalive_ms: Option<u64>,
    /// Active subscriptions allowed per connection.
    #[arg(long, env = "LEADGATE_WS_MAX_SUBSCRIPTIONS")]
    pub ws_max_subscriptions: Option<usize>,
    /// Connections allowed at once per token.
    #[arg(long, env = "LEADGATE_WS_MAX_CONNECTIONS_PER_TOKEN")]
    pub ws_max_connections_per_token: Option<usize>,
    /// Frames queued per connection before a shared subscription is ended as slow.
    #[arg(long, env = "LEADGATE_WS_SEND_QUEUE")]
    pub ws_send_queue: Option<usize>,
}

/// Provider endpoints and the enrichment pipeline's tunables.
#[derive(Args, Debug)]
pub struct EnrichmentArgs {
    /// Base URL of Hunter's API.
    #[arg(long, env = "LEADGATE_HUNTER_URL")]
    pub hunter_url: Option<String>,
    /// Base URL of People Data Labs' API.
    #[arg(long, env = "LEADGATE_PDL_URL")]
    pub pdl_url: Option<String>,
    /// Base URL of Apollo's API.
    #[arg(long, env = "LEADGATE_APOLLO_URL")]
    pub apollo_url: Option<String>,
    /// Base URL of Clearbit's API.
    #[arg(long, env = "LEADGATE_CLEARBIT_URL")]
    pub clearbit_url: Option<String>,
    /// Milliseconds a provider call may take.
    #[arg(long, env = "LEADGATE_PROVIDER_TIMEOUT_MS")]
    pub provider_timeout_ms: Option<u64>,
    /// Retries after a transient provider failure.
    #[arg(long, env = "LEADGATE_PROVIDER_RETRIES")]
    pub provider_retries: Option<u32>,
    /// Consecutive failures that open a provider's circuit.
    #[arg(long, env = "LEADGATE_CIRCUIT_FAILURE_THRESHOLD")]
    pub circuit_failure_threshold: Option<u32>,
    /// Seconds an open circuit waits before a probe.
    #[arg(long, env = "LEADGATE_CIRCUIT_COOL_DOWN_SECS")]
    pub circuit_cool_down_secs: Option<u64>,
    /// Hours found values stay fresh.
    #[arg(long, env = "LEADGATE_ENRICHMENT_TTL_HOURS")]
    pub enrichment_ttl_hours: Option<u64>,
    /// Hours an email verification stays fresh.
    #[arg(long, env = "LEADGATE_VERIFICATION_TTL_HOURS")]
    pub verification_ttl_hours: Option<u64>,
    /// Hours a miss is remembered.
    #[arg(long, env = "LEADGATE_MISS_TTL_HOURS")]
    pub miss_ttl_hours: Option<u64>,
    /// Megabytes of enriched records kept in memory.
    #[arg(long, env = "LEADGATE_ENRICHMENT_CACHE_MB")]
    pub enrichment_cache_mb: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum WorkspaceCommand {
    /// Create a workspace.
    Create {
        /// URL-safe handle: lower-case letters, digits, hyphens.
        slug: String,
        /// Display name (defaults to the slug).
        #[arg(long)]
        name: Option<String>,
    },
    /// List workspaces.
    List,
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// Workspace slug the token is for.
    #[arg(long, env = "LEADGATE_TOKEN_WORKSPACE")]
    pub workspace: String,
    /// Role: admin, member, viewer or partner.
    #[arg(long, env = "LEADGATE_TOKEN_ROLE", value_parser = parse_role)]
    pub role: Role,
    /// Lifetime, e.g. `24h`, `30m`, `7d`.
    #[arg(long, env = "LEADGATE_TOKEN_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Subject (`sub` claim).
    #[arg(long, env = "LEADGATE_TOKEN_SUBJECT", default_value = "cli")]
    pub subject: String,
}

#[derive(Args, Debug)]
pub struct SeedArgs {
    /// Workspace slug to fill.
    #[arg(long, env = "LEADGATE_SEED_WORKSPACE")]
    pub workspace: String,
    /// How many leads.
    #[arg(long, env = "LEADGATE_SEED_LEADS")]
    pub leads: u64,
    /// Random seed (a fresh one by default).
    #[arg(long, env = "LEADGATE_SEED")]
    pub seed: Option<u64>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Workspace slug to export from.
    #[arg(long, env = "LEADGATE_EXPORT_WORKSPACE")]
    pub workspace: String,
    /// A lead filter as JSON, in the shape of the GraphQL `LeadFilter` input, e.g.
    /// `{"status":["QUALIFIED"],"archived":false}`. All non-archived leads when absent.
    #[arg(long, env = "LEADGATE_EXPORT_FILTER")]
    pub filter: Option<String>,
    /// File format.
    #[arg(long, env = "LEADGATE_EXPORT_FORMAT", default_value = "csv", value_parser = parse_export_format)]
    pub format: crate::service::Format,
    /// File to write (replaced only once the export is complete); stdout when absent.
    #[arg(long, env = "LEADGATE_EXPORT_OUT")]
    pub out: Option<PathBuf>,
    /// Enrichment groups to add as columns from stored records (never calling a provider):
    /// comma-separated `person`, `company`, `emailVerification`, `phone`.
    #[arg(long, env = "LEADGATE_EXPORT_INCLUDE")]
    pub include: Option<String>,
    /// Add each enriched value's provider, fetch time and confidence.
    #[arg(long, env = "LEADGATE_EXPORT_PROVENANCE")]
    pub provenance: bool,
    /// Leads read per statement.
    #[arg(long, env = "LEADGATE_EXPORT_BATCH_SIZE")]
    pub export_batch_size: Option<usize>,
}

fn parse_export_format(raw: &str) -> Result<crate::service::Format, String> {
    crate::service::Format::parse(raw).ok_or_else(|| format!("'{raw}' is not a format; use csv or ndjson"))
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file to import; `-` reads standard input.
    pub file: PathBuf,
    /// Workspace slug; may be left out when there is exactly one workspace.
    #[arg(long, env = "LEADGATE_IMPORT_WORKSPACE")]
    pub workspace: Option<String>,
    /// File format; by default from the file name's extension (stdin: csv).
    #[arg(long, value_parser = parse_format)]
    pub format: Option<Format>,
    /// Report what would happen (counts and error report) without writing any lead.
    #[arg(long)]
    pub dry_run: bool,
    /// What to do with a row whose email already belongs to a lead.
    #[arg(long, default_value = "skip", value_parser = parse_on_duplicate)]
    pub on_duplicate: OnDuplicate,
    /// Map a column to a lead field (`email`, `first_name`, `company_name`, …); repeatable.
    #[arg(long = "map", value_name = "COLUMN=FIELD", value_parser = parse_mapping)]
    pub map: Vec<(String, String)>,
    /// Country for phone numbers written without a country code (ISO 3166 alpha-2).
    #[arg(long, value_name = "CC", value_parser = parse_region)]
    pub default_region: Option<CountryCode>,
    /// Where to write the error report (CSV: row,column,reason); by default next to FILE as
    /// `FILE.errors.csv` (for stdin: `import-<id>.errors.csv`), only when there are errors.
    #[arg(long, value_name = "OUT.csv")]
    pub errors: Option<PathBuf>,
    /// Start over instead of resuming an interrupted import of the same file.
    #[arg(long)]
    pub restart: bool,
}

fn parse_format(raw: &str) -> Result<Format, String> {
    Format::parse(raw).ok_or_else(|| format!("'{raw}' is not a format; use csv or ndjson"))
}

fn parse_on_duplicate(raw: &str) -> Result<OnDuplicate, String> {
    OnDuplicate::parse(&raw.replace('-', "_"))
        .ok_or_else(|| format!("'{raw}' is not a policy; use skip, update-empty-fields or overwrite"))
}

fn parse_mapping(raw: &str) -> Result<(String, String), String> {
    match raw.rsplit_once('=') {
        Some((column, field)) if !column.is_empty() && !field.trim().is_empty() => {
            Ok((column.to_owned(), field.trim().to_owned()))
        }
        _ => Err(format!("'{raw}' is not COLUMN=FIELD")),
    }
}

fn parse_region(raw: &str) -> Result<CountryCode, String> {
    CountryCode::parse("defaultRegion", raw).map_err(|e| e.message)
}

fn parse_role(raw: &str) -> Result<Role, String> {
    Role::parse(raw).ok_or_else(|| format!("'{raw}' is not a role; use admin, member, viewer or partner"))
}

/// Applies the layers: file (read by `Settings::load`), then environment and flags (clap).
pub fn settings(global: &GlobalArgs, command: &Command) -> anyhow::Result<Settings> {
    let mut s = Settings::load(global.config.as_deref())?;
    if let Some(v) = &global.database_url {
        s.database_url = v.clone();
    }
    if let Some(v) = global.database_max_connections {
        s.database_max_connections = v;
    }
    if let Some(v) = &global.jwt_secret {
        s.jwt_secret = Some(SecretString::from(v.clone()));
    }
    if let Some(v) = &global.jwt_issuer {
        s.jwt_issuer = v.clone();
    }
    if let Some(v) = &global.jwt_audience {
        s.jwt_audience = v.clone();
    }
    if let Some(v) = &global.master_key {
        s.master_key = Some(SecretString::from(v.clone()));
    }
    if let Some(v) = &global.log {
        s.log = v.clone();
    }
    if let Some(v) = global.log_format {
        s.log_format = v;
    }
    if let Command::Serve(a) = command {
        if let Some(v) = a.listen {
            s.listen = v;
        }
        if let Some(v) = a.max_body_bytes {
            s.max_body_bytes = v;
        }
        if let Some(v) = a.import_max_upload_mb {
            s.import_max_upload_mb = v;
        }
        if let Some(v) = a.request_timeout_secs {
            s.request_timeout_secs = v;
        }
        if let Some(v) = a.max_batch {
            s.max_batch = v;
        }
        if let Some(v) = a.max_depth {
            s.max_depth = v;
        }
        if let Some(v) = a.max_complexity {
            s.max_complexity = v;
        }
        if let Some(v) = a.max_aliases {
            s.max_aliases = v;
        }
        if let Some(v) = a.export_batch_size {
            s.export_batch_size = v;
        }
        apply_ws(&mut s, &a.ws);
        apply_enrichment(&mut s, &a.enrichment);
        apply_workers(&mut s, &a.jobs);
        apply_events(&mut s, &a.events);
        if let Some(v) = a.workers {
            s.workers = v;
        }
        if a.no_workers {
            s.workers = false;
        }
    }
    if let Command::Export(a) = command
        && let Some(v) = a.export_batch_size
    {
        s.export_batch_size = v;
    }
    if let Command::Worker(a) = command {
        apply_enrichment(&mut s, &a.enrichment);
        apply_workers(&mut s, &a.jobs);
        apply_events(&mut s, &a.events);
    }
    s.validate()?;
    Ok(s)
}

fn apply_ws(s: &mut Settings, a: &WsArgs) {
    if let Some(v) = a.ws_init_timeout_ms {
        s.ws_init_timeout_ms = v;
    }
    if let Some(v) = a.ws_keepalive_ms {
        s.ws_keepalive_ms = v;
    }
    if let Some(v) = a.ws_max_subscriptions {
        s.ws_max_subscriptions = v;
    }
    if let Some(v) = a.ws_max_connections_per_token {
        s.ws_max_connections_per_token = v;
    }
    if let Some(v) = a.ws_send_queue {
        s.ws_send_queue = v;
    }
}

fn apply_events(s: &mut Settings, e: &EventArgs) {
    if let Some(v) = e.event_poll_ms {
        s.event_poll_ms = v;
    }
    if let Some(v) = e.event_retention_days {
        s.event_retention_days = v;
    }
    if let Some(v) = e.webhook_timeout_ms {
        s.webhook_timeout_ms = v;
    }
    if let Some(v) = e.webhook_max_attempts {
        s.webhook_max_attempts = v;
    }
    if let Some(v) = e.webhook_retry_base_ms {
        s.webhook_retry_base_ms = v;
    }
    if let Some(v) = e.webhook_disable_after {
        s.webhook_disable_after = v;
    }
}

fn apply_enrichment(s: &mut Settings, e: &EnrichmentArgs) {
    for (target, value) in [
        (&mut s.hunter_url, &e.hunter_url),
        (&mut s.pdl_url, &e.pdl_url),
        (&mut s.apollo_url, &e.apollo_url),
        (&mut s.clearbit_url, &e.clearbit_url),
    ] {
        if let Some(v) = value {
            *target = v.clone();
        }
    }
    if let Some(v) = e.provider_timeout_ms {
        s.provider_timeout_ms = v;
    }
    if let Some(v) = e.provider_retries {
        s.provider_retries = v;
    }
    if let Some(v) = e.circuit_failure_threshold {
        s.circuit_failure_threshold = v;
    }
    if let Some(v) = e.circuit_cool_down_secs {
        s.circuit_cool_down_secs = v;
    }
    if let Some(v) = e.enrichment_ttl_hours {
        s.enrichment_ttl_hours = v;
    }
    if let Some(v) = e.verification_ttl_hours {
        s.verification_ttl_hours = v;
    }
    if let Some(v) = e.miss_ttl_hours {
        s.miss_ttl_hours = v;
    }
    if let Some(v) = e.enrichment_cache_mb {
        s.enrichment_cache_mb = v;
    }
}

fn apply_workers(s: &mut Settings, w: &WorkerArgs) {
    if let Some(v) = w.worker_concurrency {
        s.worker_concurrency = v;
    }
    if let Some(v) = w.job_visibility_timeout_secs {
        s.job_visibility_timeout_secs = v;
    }
    if let Some(v) = w.job_poll_interval_ms {
        s.job_poll_interval_ms = v;
    }
    if let Some(v) = w.job_maintenance_interval_ms {
        s.job_maintenance_interval_ms = v;
    }
    if let Some(v) = w.job_retention_hours {
        s.job_retention_hours = v;
    }
    if let Some(v) = &w.retention_schedule {
        s.retention_schedule = v.clone();
    }
    if w.job_test_kinds {
        s.job_test_kinds = true;
    }
    if let Some(v) = &w.backup_schedule {
        s.backup_schedule = Some(v.clone());
    }
    if let Some(v) = &w.backup_dir {
        s.backup_dir = v.clone();
    }
    if let Some(v) = w.backup_keep {
        s.backup_keep = v;
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Schema = cli.command {
        print!("{}", crate::graphql::sdl());
        return Ok(());
    }
    let settings = settings(&cli.global, &cli.command)?;
    crate::telemetry::init(&settings.log, settings.log_format);
    match cli.command {
        Command::Serve(args) => serve(&settings, args.demo).await,
        Command::Worker(_) => worker(&settings).await,
        Command::Migrate => {
            let store = app::open_store(&settings).await?;
            eprintln!("migrations applied ({})", store.backend());
            store.close().await;
            Ok(())
        }
        Command::Schema => Ok(()),
        Command::Workspace(cmd) => workspace(&settings, cmd).await,
        Command::Token(args) => token(&settings, args).await,
        Command::Seed(args) => seed(&settings, args).await,
        Command::Erase(args) => erase(&settings, args).await,
        Command::Export(args) => export(&settings, args).await,
        Command::Import(args) => import(&settings, *args).await,
        Command::Backup(args) => backup(&settings, args).await,
        Command::Restore(args) => restore(&settings, args).await,
    }
}

async fn serve(settings: &Settings, demo: bool) -> anyhow::Result<()> {
    let store = app::open_store(settings).await?;
    app::check_master_key(settings, &store).await?;
    let auth = app::authenticator(settings, &store, demo).await?;
    let services = app::services(settings, store.clone())?;
    let mut banner = Vec::new();
    let demo_token = if demo {
        let (ws, added) = app::ensure_demo(&services).await?;
        let token = app::mint(
            &auth,
            "demo-admin",
            &ws,
            Role::Admin,
            Duration::from_secs(7 * 86_400),
        )?;
        let counts = services.workspaces.lead_counts(ws.id).await?;
        banner.push(format!(
            "Demo workspace `{}`: {} leads{}",
            ws.slug,
            counts.active,
            if added > 0 { " (created now)" } else { "" }
        ));
        Some(token)
    } else {
        None
    };
    let App { router, workers, .. } = app::assemble(settings, services, auth, demo_token.clone()).await?;
    let shutdown = crate::http::shutdown_signal();
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let shown = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    // Best effort: a closed stdout (e.g. piped into `head`) must not stop the server.
    // Best effort: a closed stdout (e.g. piped into `head`) must not stop the server.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "leadgate is serving on http://{shown} ({} database)",
        store.backend()
    );
    let _ = writeln!(out, "GraphiQL: http://{shown}/graphiql");
    for line in banner {
        let _ = writeln!(out, "{line}");
    }
    if let Some(token) = &demo_token {
        let _ = writeln!(
            out,
            "Admin token for the demo workspace (valid 7 days; preset in GraphiQL):"
        );
        let _ = writeln!(out, "{token}");
    }
    drop(out);
    tracing::info!(%addr, backend = store.backend(), "listening");
    crate::http::serve(listener, router, shutdown).await?;
    if let Some(workers) = workers {
        workers.shutdown().await;
    }
    store.close().await;
    Ok(())
}

async fn worker(settings: &Settings) -> anyhow::Result<()> {
    let store = app::open_store(settings).await?;
    app::check_master_key(settings, &store).await?;
    let services = app::services(settings, store.clone())?;
    let registry = app::registry(settings, &services)?;
    let kinds = registry.kinds().join(", ");
    let shutdown = crate::http::shutdown_signal();
    let workers = app::start_workers(settings, &services, registry).await?;
    // Best effort, as for `serve`.
    let _ = writeln!(
        std::io::stdout().lock(),
        "leadgate worker running ({} database; kinds: {kinds})",
        store.backend()
    );
    tracing::info!(backend = store.backend(), "worker running");
    shutdown.await;
    workers.shutdown().await;
    store.close().await;
    Ok(())
}

async fn workspace(settings: &Settings, cmd: WorkspaceCommand) -> anyhow::Result<()> {
    let store = app::open_store(settings).await?;
    let services = app::services(settings, store.clone())?;
    match cmd {
        WorkspaceCommand::Create { slug, name } => {
            let ws = services
                .workspaces
                .create(&slug, name.as_deref())
                .await
                .map_err(|e| anyhow::anyhow!("cannot create workspace `{slug}`: {e}"))?;
            println!("{}\t{}", ws.slug, ws.name);
        }
        WorkspaceCommand::List => {
            for ws in services.workspaces.list().await? {
                let counts = services.workspaces.lead_counts(ws.id).await?;
                println!("{}\t{}\t{} leads", ws.slug, ws.name, counts.active);
            }
        }
    }
    store.close().await;
    Ok(())
}

async fn token(settings: &Settings, args: TokenArgs) -> anyhow::Result<()> {
    let store = app::open_store(settings).await?;
    let auth = app::authenticator(settings, &store, false).await?;
    let services = app::services(settings, store.clone())?;
    let ws = match services.workspaces.by_slug(&args.workspace).await {
        Ok(ws) => ws,
        Err(crate::service::ServiceError::NotFound(_)) => {
            bail!(
                "unknown workspace `{}`; see `leadgate workspace list`",
                args.workspace
            )
        }
        Err(e) => return Err(e.into()),
    };
    let token = app::mint(&auth, &args.subject, &ws, args.role, args.ttl)?;
    println!("{token}");
    store.close().await;
    Ok(())
}

async fn seed(settings: &Settings, args: SeedArgs) -> anyhow::Result<()> {
    let store = app::open_store(settings).await?;
    let services = app::services(settings, store.clone())?;
    let ws = services.workspaces.by_slug(&args.workspace).await.map_err(|_| {
        anyhow::anyhow!(
            "unknown workspace `{}`; create it with `leadgate workspace create`",
            args.workspace
        )
    })?;
    let bar = indicatif::ProgressBar::new(args.leads);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} leads ({per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let seed = args.seed.unwrap_or_else(rand::random);
    let n = crate::bulk::seed(&store, &ws, args.leads, seed, |done| bar.set_position(done)).await?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "seeded {n} leads into `{}` in {secs:.2} s ({:.0} leads/s)",
        ws.slug,
        n as f64 / secs.max(1e-9)
    );
    store.close().await;
    Ok(())
}

async fn export(settings: &Settings, args: ExportArgs) -> anyhow::Result<()> {
    use crate::service::{Actor, Extras};
    use futures_util::StreamExt;
    let filter = match args.filter.as_deref().map(str::trim) {
        None | Some("") => Default::default(),
        Some(raw) => crate::graphql::export::FilterParser::new()
            .parse(raw)
            .await
            .map_err(|m| anyhow::anyhow!("{m}"))?,
    };
    let extras = Extras {
        groups: Extras::parse_include(args.include.as_deref().unwrap_or_default())
            .map_err(|m| anyhow::anyhow!("{m}"))?,
        provenance: args.provenance,
    };
    let store = app::open_store(settings).await?;
    let services = app::services(settings, store.clone())?;
    let ws = services.workspaces.by_slug(&args.workspace).await.map_err(|_| {
        anyhow::anyhow!(
            "unknown workspace `{}`; see `leadgate workspace list`",
            args.workspace
        )
    })?;
    // the operator has the database itself; the export runs with an admin's rights
    let actor = Actor {
        subject: "cli".into(),
        workspace_id: ws.id,
        role: Role::Admin,
    };
    let total = services.leads.count(&actor, &filter, None).await?;
    let bar = if total.exact {
        indicatif::ProgressBar::new(total.value)
    } else {
        indicatif::ProgressBar::no_length()
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} leads ({per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut export = services
        .exports
        .start(&actor, filter, args.format, extras)
        .await?;
    // a file is written beside its final name and moved there once complete
    let partial = args.out.as_ref().map(|out| {
        let mut name = out.clone().into_os_string();
        name.push(".partial");
        PathBuf::from(name)
    });
    let sink: Box<dyn Write> = match &partial {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut sink = std::io::BufWriter::with_capacity(1 << 18, sink);
    let mut rows = 0u64;
    let result: anyhow::Result<()> = async {
        while let Some(chunk) = export.body.next().await {
            let chunk = chunk.context("the export failed")?;
            sink.write_all(&chunk.bytes).context("cannot write the export")?;
            rows += chunk.rows;
            bar.set_position(rows);
        }
        sink.flush().context("cannot write the export")?;
        Ok(())
    }
    .await;
    drop(sink);
    bar.finish_and_clear();
    if let Err(e) = result {
        if let Some(path) = &partial {
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }
    if let (Some(partial), Some(out)) = (&partial, &args.out) {
        std::fs::rename(partial, out).with_context(|| format!("cannot write {}", out.display()))?;
    }
    let secs = started.elapsed().as_secs_f64();
    let target = args
        .out
        .as_ref()
        .map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
    eprintln!(
        "exported {rows} leads from `{}` as {} to {target} in {secs:.2} s ({:.0} leads/s)",
        ws.slug,
        args.format.as_str(),
        rows as f64 / secs.max(1e-9)
    );
    store.close().await;
    Ok(())
}
async fn import(settings: &Settings, args: ImportArgs) -> anyhow::Result<()> {
    let store = app::open_store(settings).await?;
    let ws = match &args.workspace {
        Some(slug) => store
            .workspace_by_slug(slug)
            .await?
            .ok_or_else(|| anyhow::anyhow!("unknown workspace `{slug}`; see `leadgate workspace list`"))?,
        None => {
            let mut all = store.list_workspaces().await?;
            if all.len() != 1 {
                bail!("there are {} workspaces; name one with --workspace", all.len());
            }
            all.remove(0)
        }
    };
    let stdin = args.file.as_os_str() == "-";
    let format = match args.format {
        Some(f) => f,
        None if stdin => Format::Csv,
        None => Format::from_path(&args.file).ok_or_else(|| {
            anyhow::anyhow!(
                "cannot tell the format of {} from its name; pass --format csv|ndjson",
                args.file.display()
            )
        })?,
    };
    let (input, size): (Box<dyn std::io::Read + Send>, Option<u64>) = if stdin {
        (Box::new(std::io::stdin()), None)
    } else {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(std::io::BufReader::with_capacity(1 << 20, file)), size)
    };
    let source_name = if stdin {
        "-".to_owned()
    } else {
        args.file
            .file_name()
            .map_or_else(|| "-".to_owned(), |n| n.to_string_lossy().into_owned())
    };
    let request = pipeline::ImportRequest {
        workspace: ws.id,
        format,
        on_duplicate: args.on_duplicate,
        dry_run: args.dry_run,
        mapping: args.map.clone(),
        default_region: args.default_region.clone(),
        source_name,
    };
    let record = pipeline::begin(&store, &request, args.restart).await?;
    let bar = match size {
        Some(len) => indicatif::ProgressBar::new(len).with_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        ),
        None => indicatif::ProgressBar::new_spinner().with_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bytes} ({bytes_per_sec})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        ),
    };
    let started = Instant::now();
    let outcome = pipeline::run(&store, record.clone(), input, |import, _events| {
        bar.set_position(import.checkpoint.byte_offset);
    })
    .await;
    bar.finish_and_clear();
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            store.close().await;
            bail!("import {} stopped: {e}", record.id);
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let import = &outcome.import;
    let c = import.counts;
    let rows = c.total();
    let mut out = std::io::stderr().lock();
    writeln!(
        out,
        "import {} {}: {rows} rows in {secs:.2} s ({:.0} rows/s){}",
        import.id,
        import.status.as_str(),
        rows as f64 / secs.max(1e-9),
        if args.dry_run {
            " (dry run: no lead was written)"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "  created {}, updated {}, unchanged {}, skipped (existing) {}, duplicates in file {}, invalid {}, blocked {}",
        c.created, c.updated, c.unchanged, c.skipped_existing, c.duplicates_in_file, c.invalid, c.blocked
    )?;
    if let Some(row) = outcome.resumed_from {
        writeln!(out, "  resumed after row {row}")?;
    }
    if !outcome.columns.ignored.is_empty() {
        writeln!(out, "  ignored columns: {}", outcome.columns.ignored.join(", "))?;
    }
    let report = args.errors.clone().unwrap_or_else(|| {
        if stdin {
            PathBuf::from(format!("import-{}.errors.csv", import.id))
        } else {
            let mut name = args.file.clone().into_os_string();
            name.push(".errors.csv");
            PathBuf::from(name)
        }
    });
    let written = write_error_report(&store, import, &report, args.errors.is_some()).await?;
    if written > 0 || args.errors.is_some() {
        writeln!(out, "  error report: {} ({written} rows)", report.display())?;
    }
    drop(out);
    store.close().await;
    Ok(())
}

/// Writes an import's error report as CSV (`row,column,reason`); with `always` false, only
/// when there is something in it. Returns the rows written.
async fn write_error_report(
    store: &crate::store::Store,
    import: &crate::domain::Import,
    path: &std::path::Path,
    always: bool,
) -> anyhow::Result<u64> {
    use crate::domain::KeysetPage;
    const BATCH: usize = 10_000;
    let mut page = store
        .import_errors(import.workspace_id, import.id, &KeysetPage::first(BATCH))
        .await?
        .items;
    if page.is_empty() && !always {
        return Ok(0);
    }
    let file = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut csv = csv::Writer::from_writer(std::io::BufWriter::new(file));
    csv.write_record(["row", "column", "reason"])?;
    let mut written = 0;
    while let Some(last) = page.last().map(|e| (e.row, e.seq)) {
        for e in &page {
            csv.write_record([
                e.row.to_string().as_str(),
                e.column.as_deref().unwrap_or(""),
                e.reason.as_str(),
            ])?;
            written += 1;
        }
        page = store
            .import_errors(import.workspace_id, import.id, &KeysetPage::after(last, BATCH))
            .await?
            .items;
    }
    csv.flush()?;
    Ok(written)
}

async fn erase(settings: &Settings, args: EraseArgs) -> anyhow::Result<()> {
    use crate::domain::{EmailAddress, LeadId};
    use crate::service::{Actor, ServiceError};
    let store = app::open_store(settings).await?;
    let services = app::services(settings, store.clone())?;
    let ws = services.workspaces.by_slug(&args.workspace).await.map_err(|_| {
        anyhow::anyhow!(
            "unknown workspace `{}`; see `leadgate workspace list`",
            args.workspace
        )
    })?;
    let actor = Actor {
        subject: "operator:cli".into(),
        workspace_id: ws.id,
        role: Role::Admin,
    };
    let result = match (&args.lead, &args.email) {
        (Some(raw), _) => {
            let id = parse_lead_id(raw).ok_or_else(|| anyhow::anyhow!("--lead: '{raw}' is not a lead id"))?;
            services
                .erasure
                .erase(&actor, LeadId::from_uuid(id), args.reason.clone())
                .await
        }
        (None, Some(raw)) => {
            let email =
                EmailAddress::parse("email", raw).map_err(|e| anyhow::anyhow!("--email: {}", e.message))?;
            services
                .erasure
                .erase_by_email(&actor, &email, args.reason.clone())
                .await
        }
        (None, None) => bail!("give --lead ID or --email EMAIL"),
    };
    let erasure = match result {
        Ok(e) => e,
        Err(ServiceError::NotFound(_)) => bail!("no such lead in workspace `{}`", ws.slug),
        Err(e) => return Err(e.into()),
    };
    let c = erasure.counts;
    println!(
        "erased lead {} as {} at {}: {} enrichment records, {} events scrubbed, {} webhook deliveries \
         scrubbed, {} jobs scrubbed",
        erasure.lead_id,
        erasure.id,
        erasure.erased_at.to_rfc3339(),
        c.enrichment_records,
        c.events_scrubbed,
        c.deliveries_scrubbed,
        c.jobs_scrubbed
    );
    store.close().await;
    Ok(())
}

/// A lead id as a UUID or as the GraphQL global id (`base64("Lead:<uuid>")`).
fn parse_lead_id(raw: &str) -> Option<uuid::Uuid> {
    use base64::Engine;
    if let Ok(id) = uuid::Uuid::parse_str(raw.trim()) {
        return Some(id);
    }
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw.trim().trim_end_matches('='))
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    uuid::Uuid::parse_str(text.strip_prefix("Lead:")?).ok()
}

/// A progress bar over rows, on stderr.
fn rows_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} rows ({per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn report(verb: &str, summary: &crate::ops::backup::Summary, file: &std::path::Path) {
    eprintln!(
        "{verb} {} tables, {} rows, {:.1} MB (schema version {}) in {:.2} s: {}",
        summary.tables.len(),
        summary.rows,
        summary.bytes as f64 / 1e6,
        summary.schema_version,
        summary.duration.as_secs_f64(),
        file.display()
    );
}

async fn backup(settings: &Settings, args: BackupArgs) -> anyhow::Result<()> {
    let store = app::open_store(settings).await?;
    let bar = rows_bar();
    let shown = bar.clone();
    let summary = crate::ops::backup::backup(&store, &args.out, move |done, total| {
        shown.set_length(total);
        shown.set_position(done);
    })
    .await;
    bar.finish_and_clear();
    store.close().await;
    let summary = summary.with_context(|| format!("backup to {} failed", args.out.display()))?;
    report("backed up", &summary, &args.out);
    Ok(())
}

async fn restore(settings: &Settings, args: RestoreArgs) -> anyhow::Result<()> {
    // Refuse a file that is not a backup before touching the database.
    crate::ops::backup::manifest(&args.file)
        .with_context(|| format!("cannot restore {}", args.file.display()))?;
    let store = app::open_store(settings).await?;
    let bar = rows_bar();
    let shown = bar.clone();
    let summary = crate::ops::backup::restore(&args.file, &store, move |done, total| {
        shown.set_length(total);
        shown.set_position(done);
    })
    .await;
    bar.finish_and_clear();
    store.close().await;
    let summary = summary.with_context(|| {
        format!(
            "cannot restore {} into {}; nothing was written",
            args.file.display(),
            crate::store::redact_url(&settings.database_url)
        )
    })?;
    report("restored", &summary, &args.file);
    Ok(())
}
