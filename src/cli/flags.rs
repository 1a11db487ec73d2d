//! The setting flags, in groups that commands flatten in. A field is named exactly like the
//! `Settings` field it sets and is `None` unless given; `Settings::load` merges a command's
//! groups through serde as the top layer (`config::Flags`), so no flag is copied by hand. Help
//! texts are short; `cli::command` appends each setting's `LEADGATE_*` variable.

use crate::config::{Introspection, LogFormat};
use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};
use std::net::SocketAddr;
use std::path::PathBuf;

/// `--config` and the log settings: every command that reads settings.
#[derive(Args, Clone, Debug, Default, Serialize)]
pub struct CommonFlags {
    /// Config file (TOML); `leadgate.toml` is read when present and this is not given.
    #[arg(long, env = "LEADGATE_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Log filter, e.g. `info` or `leadgate=debug`.
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
    /// Log format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

/// The database: every command that opens it.
#[derive(Args, Clone, Debug, Default, Serialize)]
#[command(next_help_heading = "Database")]
pub struct DatabaseFlags {
    /// Database URL: `sqlite://FILE` or `postgres://USER@HOST/DB`.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Maximum database connections per process.
    #[arg(long, value_name = "N")]
    pub database_max_connections: Option<u32>,
}

/// Token verification and minting: `serve` and `token`.
#[derive(Args, Clone, Debug, Default, Serialize)]
#[command(next_help_heading = "Keys")]
pub struct TokenFlags {
    /// HS256 token secret, at least 32 bytes.
    #[arg(long, value_name = "SECRET", value_parser = secret)]
    #[serde(serialize_with = "expose")]
    pub jwt_secret: Option<SecretString>,
    /// Required token issuer (`iss`).
    #[arg(long, value_name = "ISS")]
    pub jwt_issuer: Option<String>,
    /// Required token audience (`aud`).
    #[arg(long, value_name = "AUD")]
    pub jwt_audience: Option<String>,
}

/// The master key sealing provider API keys and webhook secrets: `serve` and `worker`.
#[derive(Args, Clone, Debug, Default, Serialize)]
#[command(next_help_heading = "Keys")]
pub struct SealingFlags {
    /// Master key sealing provider API keys: 32 bytes, base64.
    #[arg(long, value_name = "KEY", value_parser = secret)]
    #[serde(serialize_with = "expose")]
    pub master_key: Option<SecretString>,
}

/// The HTTP server and its GraphQL limits: `serve`.
#[derive(Args, Clone, Debug, Default, Serialize)]
#[command(next_help_heading = "HTTP")]
pub struct HttpFlags {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Largest accepted request body, in bytes.
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest accepted multipart GraphQL request (file upload), in MiB.
    #[arg(long, value_name = "MIB")]
    pub import_max_upload_mb: Option<u64>,
    /// Seconds before a request is answered with 408.
    #[arg(long, value_name = "SECS")]
    pub request_timeout_secs: Option<u64>,
    /// Milliseconds after which a root field counts as a slow resolver (0: not timed).
    #[arg(long, value_name = "MS")]
    pub slow_resolver_ms: Option<u64>,
    /// Largest GraphQL batch (JSON array of requests).
    #[arg(long, value_name = "N")]
    pub max_batch: Option<usize>,
    /// Maximum query depth (the introspection query needs 13).
    #[arg(long, value_name = "N")]
    pub max_depth: Option<usize>,
    /// Maximum query complexity (page size × selected fields under connections).
    #[arg(long, value_name = "N")]
    pub max_complexity: Option<usize>,
    /// Maximum aliased fields per document.
    #[arg(long, value_name = "N")]
    pub max_aliases: Option<usize>,
    /// Most selections of one field (response key) in one selection set.
    #[arg(long, value_name = "N")]
    pub max_field_repeats: Option<usize>,
    /// Most directives on one field.
    #[arg(long, value_name = "N")]
    pub max_directives: Option<usize>,
    /// Proxies in front of the server, as CIDRs (repeat or comma-separate): their
    /// X-Forwarded-For names the client.
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// Who may introspect the schema (default: authenticated; always with --demo).
    #[arg(long, value_enum)]
    pub introspection: Option<Introspection>,
}

/// Redis, shared by every instance: `serve` and `worker`.
#[derive(Args, Clone, Debug, Default, Serialize)]
#[command(next_help_heading = "Redis")]
pub struct RedisFlags {
    /// redis://host:6379 or rediss://… (TLS); shares limits and caches between instances.
    #[arg(long, value_name = "URL", value_parser = secret)]
    #[serde(serialize_with = "expose")]
    pub redis_url: Option<SecretString>,
    /// Milliseconds a Redis command may take before the in-process fallback answers.
    #[arg(long, value_name = "MS")]
    pub redis_timeout_ms: Option<u64>,
    /// Prefix of every Redis key.
    #[arg(long, value_name = "PREFIX")]
    pub redis_prefix: Option<String>,
}

/// Error reporting to Sentry: `serve` and `worker`.
#[derive(Args, Clone, Debug, Default, Serialize)]
#[command(next_help_heading = "Error reporting")]
pub struct SentryFlags {
    /// Sentry DSN (https://KEY@HOST/PROJECT): server errors and panics are reported there,
    /// without lead data, tokens or keys; logs only without one.
    #[arg(long, value_name = "DSN", value_parser = secret)]
    #[serde(serialize_with = "expose")]
    pub sentry_dsn: Option<SecretString>,
    /// The environment Sentry files events under (default production).
    #[arg(long, value_name = "NAME")]
    pub sentry_environment: Option<String>,
}

/// RabbitMQ, which delivers jobs when configured: `serve` and `worker`.
#[derive(Args, Clone, Debug, Default, Serialize)]
#[command(next_help_heading = "RabbitMQ")]
pub struct QueueFlags {
    /// amqp://user:pass@host:5672/vhost or amqps://… (TLS); delivers jobs through RabbitMQ.
    #[arg(long, value_name = "URL", value_parser = secret)]
    #[serde(serialize_with = "expose")]
    pub queue_url: Option<SecretString>,
    /// Prefix of the exchanges and queues on the broker.
    #[arg(long, value_name = "PREFIX")]
    pub queue_prefix: Option<String>,
    /// Job messages a worker process holds unacknowledged.
    #[arg(long, value_name = "N")]
    pub queue_prefetch: Option<u16>,
    /// Publish domain events to the topic exchange <prefix>.events.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub queue_events: Option<bool>,
}

/// Rate limits, persisted queries and shutdown: `serve`.
#[derive(Args, Clone, Debug, Default, Serialize)]
#[command(next_help_heading = "Limits")]
pub struct LimitFlags {
    /// Rate per API key or token (600/min, 20/s, off).
    #[arg(long, value_name = "RATE")]
    pub rate_limit: Option<String>,
    /// Rate per client address without a token (off for none).
    #[arg(long, value_name = "RATE")]
    pub rate_limit_anonymous: Option<String>,
    /// Rate per workspace, all callers together (off for none).
    #[arg(long, value_name = "RATE")]
    pub rate_limit_workspace: Option<String>,
    /// Rate of a role, as `role=rate` (partner=300/min); repeat for more roles.
    #[arg(long = "rate-limit-role", value_name = "ROLE=RATE", value_parser = name_and_value)]
    #[serde(serialize_with = "table", skip_serializing_if = "Vec::is_empty")]
    pub rate_limit_roles: Vec<(String, String)>,
    /// Automatic persisted queries: auto, allowlist or off.
    #[arg(long, value_name = "MODE")]
    pub persisted_queries: Option<String>,
    /// Manifest of persisted queries registered at start (the allow-list).
    #[arg(long, value_name = "FILE")]
    pub persisted_queries_file: Option<PathBuf>,
    /// Milliseconds /readyz answers 503 after SIGTERM before the listener closes.
    #[arg(long, value_name = "MS")]
    pub shutdown_delay_ms: Option<u64>,
}

/// Exports: `serve` (the HTTP endpoint) and `export`.
#[derive(Args, Clone, Debug, Default, Serialize)]
#[command(next_help_heading = "Exports")]
pub struct ExportFlags {
    /// Leads an export reads per statement (1 to 10,000).
    #[arg(long, value_name = "N")]
    pub export_batch_size: Option<usize>,
}

/// GraphQL over WebSocket (`/graphql/ws`): `serve`.
#[derive(Args, Clone, Debug, Default, Serialize)]
#[command(next_help_heading = "WebSocket")]
pub struct WsFlags {
    /// Milliseconds a client may take to send `connection_init`.
    #[arg(long, value_name = "MS")]
    pub ws_init_timeout_ms: Option<u64>,
    /// Milliseconds between legacy `graphql-ws` keep-alives.
    #[arg(long, value_name = "MS")]
    pub ws_keepalive_ms: Option<u64>,
    /// Active subscriptions allowed per connection.
    #[arg(long, value_name = "N")]
    pub ws_max_subscriptions: Option<usize>,
    /// Connections allowed at once per token.
    #[arg(long, value_name = "N")]
    pub ws_max_connections_per_token: Option<usize>,
    /// Frames queued per connection before a shared subscription is ended as slow.
    #[arg(long, value_name = "N")]
    pub ws_send_queue: Option<usize>,
}

/// Provider endpoints and the enrichment pipeline's tunables: `serve` and `worker`.
#[derive(Args, Clone, Debug, Default, Serialize)]
#[command(next_help_heading = "Enrichment")]
pub struct EnrichmentFlags {
    /// Base URL of a provider's API, as `name=URL` (`hunter`, `pdl`, `apollo`, `clearbit`);
    /// repeat for more providers.
    #[arg(long = "provider-url", value_name = "NAME=URL", value_parser = name_and_value)]
    #[serde(serialize_with = "table", skip_serializing_if = "Vec::is_empty")]
    pub provider_urls: Vec<(String, String)>,
    /// Milliseconds a provider call may take.
    #[arg(long, value_name = "MS")]
    pub provider_timeout_ms: Option<u64>,
    /// Retries after a transient provider failure.
    #[arg(long, value_name = "N")]
    pub provider_retries: Option<u32>,
    /// Consecutive failures that open a provider's circuit.
    #[arg(long, value_name = "N")]
    pub circuit_failure_threshold: Option<u32>,
    /// Seconds an open circuit waits before a probe.
    #[arg(long, value_name = "SECS")]
    pub circuit_cool_down_secs: Option<u64>,
    /// Hours found values stay fresh.
    #[arg(long, value_name = "HOURS")]
    pub enrichment_ttl_hours: Option<u64>,
    /// Hours an email verification stays fresh.
    #[arg(long, value_name = "HOURS")]
    pub verification_ttl_hours: Option<u64>,
    /// Hours a miss is remembered.
    #[arg(long, value_name = "HOURS")]
    pub miss_ttl_hours: Option<u64>,
    /// Megabytes of enriched records kept in memory.
    #[arg(long, value_name = "MB")]
    pub enrichment_cache_mb: Option<u64>,
}

/// The event log, its readers, outbound webhooks and CRM pushes: `serve` and `worker`.
#[derive(Args, Clone, Debug, Default, Serialize)]
#[command(next_help_heading = "Events and webhooks")]
pub struct EventFlags {
    /// Milliseconds between checks for events written by other processes.
    #[arg(long, value_name = "MS")]
    pub event_poll_ms: Option<u64>,
    /// Days events are kept in the log.
    #[arg(long, value_name = "DAYS")]
    pub event_retention_days: Option<u64>,
    /// Milliseconds a webhook receiver may take to answer.
    #[arg(long, value_name = "MS")]
    pub webhook_timeout_ms: Option<u64>,
    /// Attempts per webhook delivery before it is dead-lettered.
    #[arg(long, value_name = "N")]
    pub webhook_max_attempts: Option<u32>,
    /// Milliseconds before a failed delivery's first retry.
    #[arg(long, value_name = "MS")]
    pub webhook_retry_base_ms: Option<u64>,
    /// Dead-lettered deliveries in a row that switch an endpoint off.
    #[arg(long, value_name = "N")]
    pub webhook_disable_after: Option<u32>,
    /// Milliseconds a CRM push waits after a lead change for more changes.
    #[arg(long, value_name = "MS")]
    pub crm_push_delay_ms: Option<u64>,
}

/// Requests to user-given URLs (webhook receivers): `serve` and `worker`.
#[derive(Args, Clone, Debug, Default, Serialize)]
#[command(next_help_heading = "Outbound requests")]
pub struct OutboundFlags {
    /// Internal addresses receivers may have, as CIDRs (repeat or comma-separate).
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub outbound_allow: Option<Vec<String>>,
}

/// How campaign mail leaves and how mail providers' events are verified: `serve`, `worker`
/// and `campaigns run-due`.
#[derive(Args, Clone, Debug, Default, Serialize)]
#[command(next_help_heading = "Mail")]
pub struct MailFlags {
    /// SMTP relay: smtp://host:port, smtp://…?tls=required (STARTTLS), smtps://host:465, with
    /// user:password@ for authentication; .eml files in --mail-folder without one.
    #[arg(long, value_name = "URL", value_parser = secret)]
    #[serde(serialize_with = "expose")]
    pub smtp_url: Option<SecretString>,
    /// Folder for .eml files when no relay is configured.
    #[arg(long, value_name = "DIR")]
    pub mail_folder: Option<PathBuf>,
    /// SMTP connections kept open at most.
    #[arg(long, value_name = "N")]
    pub smtp_pool: Option<u32>,
    /// Base URL of unsubscribe and click links (https://leads.example.com).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Secret of POST /webhooks/email/generic.
    #[arg(long, value_name = "SECRET", value_parser = secret)]
    #[serde(serialize_with = "expose")]
    pub mail_webhook_secret: Option<SecretString>,
    /// Mailgun's webhook signing key.
    #[arg(long, value_name = "KEY", value_parser = secret)]
    #[serde(serialize_with = "expose")]
    pub mailgun_signing_key: Option<SecretString>,
    /// SendGrid's Event Webhook verification key (base64 DER).
    #[arg(long, value_name = "KEY")]
    pub sendgrid_public_key: Option<String>,
    /// user:password SendGrid's Inbound Parse sends as Basic credentials.
    #[arg(long, value_name = "USER:PASSWORD", value_parser = secret)]
    #[serde(serialize_with = "expose")]
    pub sendgrid_inbound_basic: Option<SecretString>,
}

/// Where a worker serves its metrics: `worker` (`serve` has them on `--listen`).
#[derive(Args, Clone, Debug, Default, Serialize)]
#[command(next_help_heading = "Metrics")]
pub struct MetricsFlags {
    /// Address to serve /metrics and /healthz on (unset: none).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

/// How job workers run, and the schedules they fire: `serve` and `worker`.
#[derive(Args, Clone, Debug, Default, Serialize)]
#[command(next_help_heading = "Jobs")]
pub struct JobFlags {
    /// Jobs one process runs at once.
    #[arg(long, value_name = "N")]
    pub worker_concurrency: Option<usize>,
    /// Seconds a worker owns a job without a heartbeat before another may take it.
    #[arg(long, value_name = "SECS")]
    pub job_visibility_timeout_secs: Option<u64>,
    /// Milliseconds between looks for due jobs.
    #[arg(long, value_name = "MS")]
    pub job_poll_interval_ms: Option<u64>,
    /// Milliseconds between reclaiming expired leases and checking schedules.
    #[arg(long, value_name = "MS")]
    pub job_maintenance_interval_ms: Option<u64>,
    /// Milliseconds between samples of queue depth and age for /metrics.
    #[arg(long, value_name = "MS")]
    pub job_stats_interval_ms: Option<u64>,
    /// Hours succeeded jobs are kept.
    #[arg(long, value_name = "HOURS")]
    pub job_retention_hours: Option<u64>,
    /// When retention runs: five cron fields in UTC (default "30 3 * * *").
    #[arg(long, value_name = "CRON")]
    pub retention_schedule: Option<String>,
    /// Register the test job kinds `noop`, `sleep` (`{"ms": N}`), `flaky`
    /// (`{"failures": N}` or `{"permanent": true}`) and `panic` (`{"message": "…"}`), for
    /// benchmarks and tests; only in a build with `--features test-kinds`.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub job_test_kinds: Option<bool>,
    /// Five-field cron (UTC) for scheduled backups, e.g. "0 2 * * *"; unset: none.
    #[arg(long, value_name = "CRON")]
    pub backup_schedule: Option<String>,
    /// Directory scheduled backups are written to.
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Scheduled backup files kept (the oldest beyond are deleted).
    #[arg(long, value_name = "N")]
    pub backup_keep: Option<usize>,
}

/// A command's setting flags: what `Settings::load` merges as the top layer.
pub trait SettingFlags: Serialize {
    /// `--config` and the log flags, which every such command has.
    fn common(&self) -> &CommonFlags;
}

/// The setting flags of the commands that only open the database: `migrate`, `workspace`,
/// `seed`, `import`, `erase`, `backup` and `restore`.
#[derive(Args, Clone, Debug, Default, Serialize)]
pub struct DataSettings {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub database: DatabaseFlags,
}

impl SettingFlags for DataSettings {
    fn common(&self) -> &CommonFlags {
        &self.common
    }
}

/// One entry of a table setting given as `name=value`.
fn name_and_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err("expected NAME=VALUE".into()),
    }
}

/// Hands repeated `name=value` flags to the settings as one table.
fn table<S: Serializer>(entries: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(entries.iter().map(|(k, v)| (k, v)))
}

/// A secret flag's value, kept out of `Debug`.
fn secret(raw: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(raw))
}

/// Hands a secret flag to the settings (the only place its value is read).
fn expose<S: Serializer>(value: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    value.as_ref().map(|v| v.expose_secret()).serialize(s)
}
