//! Typed settings. Every setting is a documented field of `Settings` with its default, and
//! nothing else declares it: its environment variable (`LEADGATE_` + the name in upper case)
//! and its flag (`--` + the name with hyphens, on the commands that use it) follow from the
//! name. `Settings::load` is the one place the layers are merged — defaults < `leadgate.toml`
//! (or `--config FILE`) < `LEADGATE_*` environment variables < flags (`layers`) — and checked,
//! with messages that name the variable, flag or file key at fault. Secrets are `SecretString`
//! and never printed, neither by `Debug` nor in an error.

mod layers;

pub use layers::{ENV_PREFIX, Flags, env_var, fields, flag};

use crate::auth::{AuthConfig, PublicKeyConfig};
use crate::domain::ProviderKind;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Every setting, with its default. The TOML file uses these names.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// `sqlite://FILE` (created when missing) or `postgres://…`.
    pub database_url: String,
    /// Maximum database connections per process.
    pub database_max_connections: u32,
    /// HS256 signing secret for bearer tokens, at least 32 bytes. When unset, a secret that
    /// `serve --demo` generated and stored in the database is used.
    #[serde(skip_serializing)]
    pub jwt_secret: Option<SecretString>,
    /// RS256/ES256 public keys, selected by the token's `kid`.
    pub jwt_public_keys: Vec<PublicKeyConfig>,
    /// The `iss` tokens must carry.
    pub jwt_issuer: String,
    /// The `aud` tokens must carry.
    pub jwt_audience: String,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest accepted `multipart/form-data` GraphQL request (a file upload, as for
    /// `importLeads`), in MiB; JSON bodies keep `max_body_bytes`.
    pub import_max_upload_mb: u64,
    /// Largest GraphQL batch (JSON array of requests).
    pub max_batch: usize,
    /// Maximum query depth.
    pub max_depth: usize,
    /// Maximum query complexity.
    pub max_complexity: usize,
    /// Maximum aliased fields per document.
    pub max_aliases: usize,
    /// Most times one field (one response key) may be selected in one selection set, fields of
    /// fragments spread into it included. Fragment-heavy clients select `id` once per fragment.
    pub max_field_repeats: usize,
    /// Most directives on one field (or fragment spread, inline fragment, operation).
    pub max_directives: usize,
    /// Who may introspect the schema (`__schema`, `__type`): `authenticated` (callers with a
    /// valid token), `always` or `never`. Unset: `always` under `serve --demo`, else
    /// `authenticated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introspection: Option<Introspection>,
    /// Seconds a request may take before it is answered with 408.
    pub request_timeout_secs: u64,
    /// Milliseconds after which a root field of a query or mutation (its resolver and everything
    /// selected under it) counts in `leadgate_graphql_slow_resolvers_total`; 0 stops timing them.
    pub slow_resolver_ms: u64,
    /// Milliseconds a WebSocket client may take to send `connection_init` (then 4408).
    pub ws_init_timeout_ms: u64,
    /// Milliseconds between `ka` keep-alive messages on legacy `graphql-ws` connections.
    pub ws_keepalive_ms: u64,
    /// Active subscriptions allowed on one WebSocket connection.
    pub ws_max_subscriptions: usize,
    /// WebSocket connections allowed at once for one token (more close with 1008).
    pub ws_max_connections_per_token: usize,
    /// Frames queued for one WebSocket connection; a shared subscription that finds the
    /// queue full is ended with `SLOW_CONSUMER`. The default holds two of the event bus's
    /// catch-up reads (500 events each), so a burst read from the log after a busy moment
    /// never ends a client that keeps up.
    pub ws_send_queue: usize,
    /// Load balancers and proxies in front of the servers, as CIDRs: for a request from one of
    /// them the client is the nearest address in `X-Forwarded-For` that is not also one (the
    /// anonymous rate limit counts per client). Empty: the peer is the client and
    /// `X-Forwarded-For` is ignored, as anyone can send it.
    pub trusted_proxies: Vec<String>,
    /// Redis shared by every instance: `redis://host:6379` or `rediss://…` (TLS, as hosted
    /// Redis services need), with `user:password@` and `/db` if needed. With one, rate limits,
    /// the enrichment cache's second level and single-flight, and persisted queries are shared
    /// by all instances; without one (or while it is unreachable) each process keeps its own.
    #[serde(skip_serializing)]
    pub redis_url: Option<SecretString>,
    /// Milliseconds one Redis command may take before the in-process fallback answers.
    pub redis_timeout_ms: u64,
    /// Prefix of every Redis key, so deployments can share a Redis.
    pub redis_prefix: String,
    /// RabbitMQ that delivers jobs: `amqp://user:password@host:5672/vhost` or `amqps://…`
    /// (TLS). Unset: workers claim jobs from the database queue. Either way job state, history
    /// and replay stay in the database; while the broker is unreachable, enqueueing goes on,
    /// workers claim from the database queue, and what waited is published once it is back.
    #[serde(skip_serializing)]
    pub queue_url: Option<SecretString>,
    /// Prefix of the exchanges and queues leadgate declares on the broker (`<prefix>.jobs`,
    /// `<prefix>.jobs.dead`, …), so deployments can share a virtual host.
    pub queue_prefix: String,
    /// Job messages one worker process holds unacknowledged (its consumer's prefetch): at
    /// least `worker_concurrency`, so that finished jobs' acknowledgements overlap new work.
    pub queue_prefetch: u16,
    /// Publish the event log (lead, enrichment, import, CRM, campaign, job and webhook events)
    /// to the topic exchange `<prefix>.events` on the broker at `queue_url`, routed by
    /// `<type>.<workspace id>`, at least once and in order per workspace. Needs `queue_url`.
    pub queue_events: bool,
    /// The rate each API key or token gets unless its key or role says otherwise, in cost
    /// units per period (`600/min`, `20/s`; a request costs 1, plus 1 per 100 fields it may
    /// return); `off` for none.
    pub rate_limit: String,
    /// The rate of requests without a token, per client address; `off` for none.
    pub rate_limit_anonymous: String,
    /// The rate of a whole workspace, all its keys and tokens together; `off` for none.
    pub rate_limit_workspace: String,
    /// Rates by role that replace `rate_limit` for callers of that role (`partner =
    /// "300/min"`); a key's own `rateLimit` replaces both. In the environment `role=rate`
    /// pairs separated by commas; on the command line `--rate-limit-role role=rate`, repeated.
    pub rate_limit_roles: BTreeMap<String, String>,
    /// Automatic persisted queries (the Apollo protocol): `auto` (any client may register a
    /// document by its SHA-256), `allowlist` (only the documents of `persisted_queries_file`
    /// run; other documents are refused) or `off`.
    pub persisted_queries: String,
    /// A persisted-query manifest (Apollo's `{"format":"apollo-persisted-query-manifest",
    /// "operations":[{"id","body",…}]}`, or a JSON object of hash → document) whose documents
    /// are registered at start; with `persisted_queries = "allowlist"`, the only ones that run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persisted_queries_file: Option<PathBuf>,
    /// Milliseconds between SIGTERM and closing the listener, while `/readyz` answers 503 so
    /// a load balancer stops sending new requests; in-flight requests then finish.
    pub shutdown_delay_ms: u64,
    /// Base64 of 32 random bytes; seals provider API keys at rest. Required once any key is
    /// stored (`openssl rand -base64 32`).
    #[serde(skip_serializing)]
    pub master_key: Option<SecretString>,
    /// Base URL of each provider's API, by provider id (`hunter`, `pdl`, `apollo`,
    /// `clearbit`); the defaults are the providers' own, and a provider left out keeps its
    /// default. Pointed at fakes in tests and benchmarks. In the file a table
    /// (`[provider_urls]`, `hunter = "http://…"`), in the environment `name=URL` pairs
    /// separated by commas, on the command line `--provider-url name=URL`, repeated.
    pub provider_urls: BTreeMap<String, String>,
    /// Milliseconds a provider call may take unless the provider's settings say otherwise.
    pub provider_timeout_ms: u64,
    /// Retries after a transient provider failure.
    pub provider_retries: u32,
    /// Consecutive failures that open a provider's circuit.
    pub circuit_failure_threshold: u32,
    /// Seconds an open circuit waits before letting a probe through.
    pub circuit_cool_down_secs: u64,
    /// Hours found person, company and phone values stay fresh.
    pub enrichment_ttl_hours: u64,
    /// Hours an email verification stays fresh.
    pub verification_ttl_hours: u64,
    /// Hours a miss (no provider knew anything) is remembered.
    pub miss_ttl_hours: u64,
    /// Megabytes of enriched records kept in memory (approximate; least valuable evicted first).
    pub enrichment_cache_mb: u64,
    /// Milliseconds between checks for events written by other processes (PostgreSQL
    /// instances are also woken at once by `NOTIFY`).
    pub event_poll_ms: u64,
    /// Days events (and webhook delivery attempts) are kept; a cursor older than that cannot
    /// be resumed.
    pub event_retention_days: u64,
    /// Milliseconds a webhook receiver may take to answer.
    pub webhook_timeout_ms: u64,
    /// Attempts per webhook delivery before it is dead-lettered.
    pub webhook_max_attempts: u32,
    /// Milliseconds before a failed delivery's first retry, doubled per attempt up to an hour.
    pub webhook_retry_base_ms: u64,
    /// Dead-lettered deliveries in a row after which an endpoint is switched off.
    pub webhook_disable_after: u32,
    /// Milliseconds a CRM push waits after a lead change for more changes, so a burst of
    /// edits is sent once.
    pub crm_push_delay_ms: u64,
    /// The SMTP relay campaigns send through: `smtp://host:port` (plain), `smtp://…?tls=required`
    /// (STARTTLS), `smtps://host:465` (TLS), with `user:password@` for authentication. Without
    /// one, mail is written as `.eml` files to `mail_folder`.
    #[serde(skip_serializing)]
    pub smtp_url: Option<SecretString>,
    /// Where mail goes as `.eml` files when no SMTP relay is configured.
    pub mail_folder: PathBuf,
    /// SMTP connections kept open to the relay at most.
    pub smtp_pool: u32,
    /// The base URL of unsubscribe and click links in emails (`https://leads.example.com`);
    /// `http://` and the listen address when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Secret of the generic `POST /webhooks/email/generic` (HMAC-SHA256 in
    /// `Leadgate-Signature: t=…,v1=…`); the endpoint answers 404 without one.
    #[serde(skip_serializing)]
    pub mail_webhook_secret: Option<SecretString>,
    /// Mailgun's webhook signing key, for `POST /webhooks/email/mailgun`.
    #[serde(skip_serializing)]
    pub mailgun_signing_key: Option<SecretString>,
    /// SendGrid's Event Webhook verification key (base64 DER, as SendGrid shows it), for
    /// `POST /webhooks/email/sendgrid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sendgrid_public_key: Option<String>,
    /// `user:password` that SendGrid's Inbound Parse (replies) sends as HTTP Basic credentials.
    #[serde(skip_serializing)]
    pub sendgrid_inbound_basic: Option<SecretString>,
    /// Internal addresses that requests to user-given URLs (webhook receivers) may reach, as
    /// CIDRs (`10.0.0.0/8`, `127.0.0.1/32`). Without an entry, loopback, private, link-local,
    /// carrier-grade NAT, multicast, reserved and cloud metadata addresses are refused, also
    /// when a name resolves to them; `serve --demo` adds loopback (127.0.0.0/8, ::1).
    pub outbound_allow: Vec<String>,
    /// Whether `serve` runs job workers in-process (`--no-workers` turns them off).
    pub workers: bool,
    /// Address `leadgate worker` serves `/metrics` and `/healthz` on (`0.0.0.0:9090`); unset:
    /// none. `serve` has them on `listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// Jobs one process runs at once.
    pub worker_concurrency: usize,
    /// Seconds a worker owns a job without a heartbeat; after that another worker may run it.
    pub job_visibility_timeout_secs: u64,
    /// Milliseconds between looks for due jobs when nothing woke the workers.
    pub job_poll_interval_ms: u64,
    /// Milliseconds between reclaiming expired leases and checking schedules.
    pub job_maintenance_interval_ms: u64,
    /// Milliseconds between samples of queue depth and the oldest queued job's age for
    /// `/metrics` (one grouped count over the jobs table each time).
    pub job_stats_interval_ms: u64,
    /// Hours succeeded jobs are kept before the hourly prune deletes them (dead jobs stay
    /// until an admin replays or discards them).
    pub job_retention_hours: u64,
    /// When retention runs: a five-field cron expression read in UTC. Each tick queues one
    /// run per workspace that has a retention policy.
    pub retention_schedule: String,
    /// Registers the test job kinds `noop`, `sleep`, `flaky` and `panic` (benchmarks, tests);
    /// only in a build with the `test-kinds` feature.
    pub job_test_kinds: bool,
    /// Leads an export reads per statement (1 to 10,000).
    pub export_batch_size: usize,
    /// Five-field cron (UTC) for scheduled backups, e.g. `"0 2 * * *"`; unset: no scheduled
    /// backups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_schedule: Option<String>,
    /// Directory scheduled backups are written to (created when missing).
    pub backup_dir: PathBuf,
    /// Scheduled backup files kept; older ones are deleted.
    pub backup_keep: usize,
    /// Where `serve` and `worker` report server errors and panics: a Sentry DSN
    /// (`https://PUBLIC_KEY@o0.ingest.sentry.io/PROJECT_ID`). Events carry the release, the
    /// environment and ids (request, GraphQL operation, workspace, job), never lead data,
    /// tokens or keys. Without one, errors go to the logs only.
    #[serde(skip_serializing)]
    pub sentry_dsn: Option<SecretString>,
    /// The environment Sentry files this deployment's events under (`production`, `staging`).
    pub sentry_environment: String,
    /// Log filter, e.g. `info` or `leadgate=debug,info`.
    pub log: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Not a setting: set by `serve --demo`, whose defaults differ (introspection for everyone,
    /// "Did you mean" suggestions, loopback receivers allowed).
    #[serde(skip)]
    pub demo: bool,
}

/// Who may introspect the schema.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Introspection {
    /// Callers with a valid token.
    Authenticated,
    /// Everyone.
    Always,
    /// No one.
    Never,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://leadgate.db".into(),
            database_max_connections: 16,
            jwt_secret: None,
            jwt_public_keys: Vec::new(),
            jwt_issuer: "leadgate".into(),
            jwt_audience: "leadgate".into(),
            max_body_bytes: 2 * 1024 * 1024,
            import_max_upload_mb: 2048,
            max_batch: 10,
            max_depth: 15,
            max_complexity: 20_000,
            max_aliases: 30,
            max_field_repeats: 20,
            max_directives: 5,
            introspection: None,
            request_timeout_secs: 30,
            slow_resolver_ms: 100,
            ws_init_timeout_ms: 10_000,
            ws_keepalive_ms: 12_000,
            ws_max_subscriptions: 50,
            ws_max_connections_per_token: 20,
            ws_send_queue: 1024,
            trusted_proxies: Vec::new(),
            redis_url: None,
            redis_timeout_ms: 250,
            redis_prefix: "leadgate:".into(),
            queue_url: None,
            queue_prefix: "leadgate".into(),
            queue_prefetch: 64,
            queue_events: false,
            rate_limit: "600/min".into(),
            rate_limit_anonymous: "60/min".into(),
            rate_limit_workspace: "off".into(),
            rate_limit_roles: BTreeMap::new(),
            persisted_queries: "auto".into(),
            persisted_queries_file: None,
            shutdown_delay_ms: 0,
            master_key: None,
            provider_urls: crate::enrich::providers::default_urls(),
            provider_timeout_ms: 3_000,
            provider_retries: 2,
            circuit_failure_threshold: 5,
            circuit_cool_down_secs: 30,
            enrichment_ttl_hours: 30 * 24,
            verification_ttl_hours: 7 * 24,
            miss_ttl_hours: 3 * 24,
            enrichment_cache_mb: 256,
            event_poll_ms: 500,
            event_retention_days: 7,
            webhook_timeout_ms: 10_000,
            webhook_max_attempts: 8,
            webhook_retry_base_ms: 30_000,
            crm_push_delay_ms: 1_000,
            smtp_url: None,
            mail_folder: PathBuf::from("mail-outbox"),
            smtp_pool: 8,
            public_url: None,
            mail_webhook_secret: None,
            mailgun_signing_key: None,
            sendgrid_public_key: None,
            sendgrid_inbound_basic: None,
            webhook_disable_after: 5,
            outbound_allow: Vec::new(),
            workers: true,
            metrics_listen: None,
            worker_concurrency: 8,
            job_visibility_timeout_secs: 60,
            job_poll_interval_ms: 1_000,
            job_maintenance_interval_ms: 5_000,
            job_stats_interval_ms: 15_000,
            job_retention_hours: 7 * 24,
            retention_schedule: "30 3 * * *".into(),
            job_test_kinds: false,
            export_batch_size: crate::bulk::export::DEFAULT_BATCH,
            backup_schedule: None,
            backup_dir: PathBuf::from("backups"),
            backup_keep: 7,
            sentry_dsn: None,
            sentry_environment: "production".into(),
            log: "info".into(),
            log_format: LogFormat::Text,
            demo: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value that does not fit its setting; `whence` names it as it was given (the
    /// variable, the flag, or the file and key).
    #[error("{whence}: {message}")]
    Value { whence: String, message: String },
    /// A value that fits its type but not the setting's rules; `from` says where it was given.
    #[error("setting `{setting}`{}: {message}", from_text(.from))]
    Invalid {
        setting: &'static str,
        message: String,
        from: Option<String>,
    },
}

fn from_text(from: &Option<String>) -> String {
    from.as_ref().map(|f| format!(" (from {f})")).unwrap_or_default()
}

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_FILE: &str = "leadgate.toml";

impl Settings {
    /// The settings of this process: the defaults, overlaid with the config file (the explicit
    /// one, which must exist, or `leadgate.toml` in the working directory when present), the
    /// `LEADGATE_*` environment variables and the command line's `flags`, then checked.
    pub fn load(config_file: Option<&Path>, flags: &Flags) -> Result<Self, ConfigError> {
        layers::load(config_file, flags, &|var| std::env::var_os(var))
    }

    /// `load` with the environment given as a function of the variable's name.
    pub fn load_with_env(
        config_file: Option<&Path>,
        flags: &Flags,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<Self, ConfigError> {
        layers::load(config_file, flags, env)
    }

    /// Checks values that types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, message: &str| {
            Err(ConfigError::Invalid {
                setting,
                message: message.to_owned(),
                from: None,
            })
        };
        let url = &self.database_url;
        if !(url.starts_with("sqlite:") || url.starts_with("postgres:") || url.starts_with("postgresql:")) {
            return invalid("database_url", "must start with sqlite:// or postgres://");
        }
        if self.database_max_connections == 0 {
            return invalid("database_max_connections", "must be at least 1");
        }
        self.rate_policy()?;
        if !["auto", "allowlist", "off"].contains(&self.persisted_queries.as_str()) {
            return invalid("persisted_queries", "must be `auto`, `allowlist` or `off`");
        }
        if self.persisted_queries == "allowlist" && self.persisted_queries_file.is_none() {
            return invalid(
                "persisted_queries_file",
                "must name the manifest of allowed operations when persisted_queries is `allowlist`",
            );
        }
        if let Some(url) = &self.redis_url {
            let url = url.expose_secret();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return invalid("redis_url", "must start with redis:// or rediss:// (TLS)");
            }
        }
        if let Some(dsn) = &self.sentry_dsn
            && let Err(e) = crate::telemetry::sentry::check_dsn(dsn.expose_secret())
        {
            return invalid("sentry_dsn", &e);
        }
        if let Err(e) = crate::telemetry::sentry::check_environment(&self.sentry_environment) {
            return invalid("sentry_environment", &e);
        }
        if let Some(url) = &self.queue_url {
            crate::jobs::amqp::check_url(url.expose_secret()).or_else(|m| invalid("queue_url", &m))?;
        }
        if !crate::jobs::amqp::valid_prefix(&self.queue_prefix) {
            return invalid(
                "queue_prefix",
                "must be 1 to 100 letters, digits, `.`, `-` or `_`",
            );
        }
        if self.queue_prefetch == 0 {
            return invalid("queue_prefetch", "must be at least 1");
        }
        if self.queue_events && self.queue_url.is_none() {
            return invalid(
                "queue_events",
                "publishes to the broker at `queue_url`, which is not set",
            );
        }
        if self.smtp_pool == 0 {
            return invalid("smtp_pool", "must be at least 1");
        }
        if let Some(public) = &self.public_url {
            let Ok(url) = url::Url::parse(public) else {
                return invalid("public_url", "must be an absolute http:// or https:// URL");
            };
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            match url.scheme() {
                "https" => {}
                "http" if loopback => {}
                _ => {
                    return invalid(
                        "public_url",
                        "must be an https:// URL (one-click unsubscribe links need https, RFC 8058), \
                         or http:// on a loopback address for development",
                    );
                }
            }
        }
        if self.max_body_bytes < 1024 {
            return invalid("max_body_bytes", "must be at least 1024");
        }
        if self.import_max_upload_mb == 0 {
            return invalid("import_max_upload_mb", "must be at least 1");
        }
        if self.max_batch == 0 {
            return invalid("max_batch", "must be at least 1");
        }
        if self.max_depth < 13 {
            return invalid(
                "max_depth",
                "must be at least 13, or the introspection query fails",
            );
        }
        if self.max_field_repeats == 0 {
            return invalid("max_field_repeats", "must be at least 1");
        }
        if let Some(e) = self
            .outbound_allow
            .iter()
            .find_map(|raw| crate::net::parse_net(raw).err())
        {
            return invalid("outbound_allow", &e);
        }
        if let Some(e) = self
            .trusted_proxies
            .iter()
            .find_map(|raw| crate::net::parse_net(raw).err())
        {
            return invalid("trusted_proxies", &e);
        }
        if let Err(e) =
            crate::jobs::schedule::CronSchedule::parse("retention_schedule", &self.retention_schedule, "UTC")
        {
            return invalid("retention_schedule", &e.to_string());
        }
        if self.job_test_kinds && !cfg!(feature = "test-kinds") {
            return invalid(
                "job_test_kinds",
                "this build has no test job kinds; build with --features test-kinds",
            );
        }
        if self.backup_keep == 0 {
            return invalid("backup_keep", "must be at least 1");
        }
        if let Some(cron) = &self.backup_schedule
            && let Err(e) = crate::jobs::schedule::CronSchedule::parse("backup", cron, "UTC")
        {
            return invalid("backup_schedule", &e.to_string());
        }
        if self.request_timeout_secs == 0 {
            return invalid("request_timeout_secs", "must be at least 1");
        }
        if !(1..=crate::bulk::export::MAX_BATCH).contains(&self.export_batch_size) {
            return invalid("export_batch_size", "must be between 1 and 10000");
        }
        for (setting, value) in [
            ("ws_init_timeout_ms", self.ws_init_timeout_ms),
            ("ws_keepalive_ms", self.ws_keepalive_ms),
        ] {
            if value < 10 {
                return invalid(setting, "must be at least 10");
            }
        }
        for (setting, value) in [
            ("ws_max_subscriptions", self.ws_max_subscriptions),
            ("ws_max_connections_per_token", self.ws_max_connections_per_token),
            ("ws_send_queue", self.ws_send_queue),
        ] {
            if value == 0 {
                return invalid(setting, "must be at least 1");
            }
        }
        let defaults = crate::enrich::providers::default_urls();
        for (name, url) in &self.provider_urls {
            if !defaults.contains_key(name) {
                let known: Vec<&str> = defaults.keys().map(String::as_str).collect();
                return invalid(
                    "provider_urls",
                    &format!(
                        "no provider `{name}` takes a base URL; these do: {}",
                        known.join(", ")
                    ),
                );
            }
            match url::Url::parse(url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => return invalid("provider_urls", &format!("`{name}` must be an http(s) URL")),
            }
        }
        if self.provider_timeout_ms < 50 {
            return invalid("provider_timeout_ms", "must be at least 50");
        }
        if self.circuit_failure_threshold == 0 {
            return invalid("circuit_failure_threshold", "must be at least 1");
        }
        if self.worker_concurrency == 0 {
            return invalid("worker_concurrency", "must be at least 1");
        }
        if self.job_visibility_timeout_secs == 0 {
            return invalid("job_visibility_timeout_secs", "must be at least 1");
        }
        if self.job_poll_interval_ms < 10 {
            return invalid("job_poll_interval_ms", "must be at least 10");
        }
        if self.job_maintenance_interval_ms < 10 {
            return invalid("job_maintenance_interval_ms", "must be at least 10");
        }
        if self.job_stats_interval_ms < 10 {
            return invalid("job_stats_interval_ms", "must be at least 10");
        }
        if let Some(key) = &self.master_key
            && crate::crypto::KeySealer::new(key).is_err()
        {
            return invalid(
                "master_key",
                "must be 32 bytes, base64-encoded (openssl rand -base64 32)",
            );
        }
        if self.jwt_issuer.trim().is_empty() || self.jwt_audience.trim().is_empty() {
            return invalid("jwt_issuer", "issuer and audience must not be blank");
        }
        Ok(())
    }

    /// The authentication settings, with the HS256 secret resolved by the caller.
    pub fn auth_config(&self, hs256_secret: Option<SecretString>) -> AuthConfig {
        AuthConfig {
            hs256_secret,
            public_keys: self.jwt_public_keys.clone(),
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            leeway_secs: 30,
        }
    }

    /// Where each provider's API lives, for the providers `provider_urls` names (the others
    /// keep their adapter's default).
    pub fn base_urls(&self) -> BTreeMap<ProviderKind, url::Url> {
        self.provider_urls
            .iter()
            .filter_map(|(name, url)| Some((ProviderKind::parse(name)?, url::Url::parse(url).ok()?)))
            .collect()
    }

    /// The WebSocket transport's settings.
    pub fn ws_config(&self) -> crate::graphql::ws::WsConfig {
        use std::time::Duration;
        crate::graphql::ws::WsConfig {
            init_timeout: Duration::from_millis(self.ws_init_timeout_ms),
            keepalive: Duration::from_millis(self.ws_keepalive_ms),
            max_subscriptions: self.ws_max_subscriptions,
            max_connections_per_token: self.ws_max_connections_per_token,
            send_queue: self.ws_send_queue,
        }
    }

    /// The enrichment pipeline's tunables.
    pub fn enrich_options(&self) -> crate::enrich::EnrichOptions {
        use std::time::Duration;
        let hours = |h: u64| Duration::from_secs(h.saturating_mul(3600));
        crate::enrich::EnrichOptions {
            call_timeout: Duration::from_millis(self.provider_timeout_ms),
            retries: self.provider_retries,
            breaker_threshold: self.circuit_failure_threshold,
            breaker_cool_down: Duration::from_secs(self.circuit_cool_down_secs),
            ttl: hours(self.enrichment_ttl_hours),
            verification_ttl: hours(self.verification_ttl_hours),
            miss_ttl: hours(self.miss_ttl_hours),
            cache_bytes: self.enrichment_cache_mb.saturating_mul(1024 * 1024),
            ..crate::enrich::EnrichOptions::default()
        }
    }

    /// How the event bus learns of events written elsewhere.
    pub fn bus_options(&self) -> crate::events::BusOptions {
        crate::events::BusOptions {
            poll_interval: std::time::Duration::from_millis(self.event_poll_ms.max(10)),
            ..crate::events::BusOptions::default()
        }
    }

    /// The rate limits, checked (each names the setting that is wrong).
    pub fn rate_policy(&self) -> Result<crate::limits::RatePolicy, ConfigError> {
        let parse = |setting: &'static str, raw: &str| {
            crate::limits::parse_setting(raw).map_err(|message| ConfigError::Invalid {
                setting,
                message,
                from: None,
            })
        };
        let mut roles = std::collections::HashMap::new();
        for (role, raw) in &self.rate_limit_roles {
            let Some(role) = crate::domain::Role::parse(role) else {
                return Err(ConfigError::Invalid {
                    setting: "rate_limit_roles",
                    message: format!("`{role}` is not a role (admin, member, viewer, partner)"),
                    from: None,
                });
            };
            if let Some(rate) = parse("rate_limit_roles", raw)? {
                roles.insert(role, rate);
            }
        }
        Ok(crate::limits::RatePolicy {
            default: parse("rate_limit", &self.rate_limit)?,
            anonymous: parse("rate_limit_anonymous", &self.rate_limit_anonymous)?,
            workspace: parse("rate_limit_workspace", &self.rate_limit_workspace)?,
            roles,
        })
    }

    /// The configured Redis, if any (connected lazily; see `cluster`).
    pub fn redis(&self) -> Result<Option<crate::cluster::Redis>, ConfigError> {
        let Some(url) = &self.redis_url else {
            return Ok(None);
        };
        let options = crate::cluster::RedisOptions {
            timeout: std::time::Duration::from_millis(self.redis_timeout_ms.max(1)),
            prefix: self.redis_prefix.clone(),
            ..crate::cluster::RedisOptions::default()
        };
        crate::cluster::Redis::open(url.expose_secret(), options)
            .map(Some)
            .map_err(|message| ConfigError::Invalid {
                setting: "redis_url",
                message,
                from: None,
            })
    }

    /// The broker that delivers jobs, if `queue_url` names one; `connection_name` is what the
    /// broker lists the connection as (e.g. `leadgate worker`).
    pub fn broker_options(&self, connection_name: &str) -> Option<crate::jobs::amqp::BrokerOptions> {
        self.queue_url
            .as_ref()
            .map(|url| crate::jobs::amqp::BrokerOptions {
                url: url.expose_secret().to_owned(),
                prefix: self.queue_prefix.clone(),
                prefetch: self.queue_prefetch,
                connect_timeout: std::time::Duration::from_secs(5),
                connection_name: connection_name.to_owned(),
            })
    }

    /// How webhooks are delivered.
    pub fn webhook_options(&self) -> crate::events::webhooks::WebhookOptions {
        crate::events::webhooks::WebhookOptions {
            timeout: std::time::Duration::from_millis(self.webhook_timeout_ms.max(1)),
            disable_after: self.webhook_disable_after.max(1),
            max_attempts: self.webhook_max_attempts.max(1),
            outbound: self.outbound_policy(),
        }
    }

    /// Where requests to user-given URLs may go: public addresses, and the internal ones
    /// `outbound_allow` names (plus loopback in demo mode).
    /// How campaign mail leaves: the SMTP relay, or the `.eml` folder.
    pub fn mailer(&self) -> Result<crate::mail::Mailer, crate::mail::MailError> {
        crate::mail::Mailer::new(
            self.smtp_url.as_ref().map(|u| u.expose_secret()),
            &self.mail_folder,
            crate::mail::SmtpSettings {
                max_connections: self.smtp_pool as usize,
                ..crate::mail::SmtpSettings::default()
            },
        )
    }

    /// The base URL of links in emails.
    /// Without `public_url`, the listen port on loopback (links for development: one-click
    /// unsubscribe needs https elsewhere).
    pub fn public_base(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| {
            let mut at = self.listen;
            if !at.ip().is_loopback() {
                at.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{at}")
        })
    }

    /// What verifies inbound mail events, from the keys configured.
    pub fn mail_verifier(&self) -> crate::mail::inbound::Verifier {
        let mut v = crate::mail::inbound::Verifier::new();
        if let Some(s) = &self.mail_webhook_secret {
            v = v.with_generic_secret(s.expose_secret());
        }
        if let Some(s) = &self.mailgun_signing_key {
            v = v.with_mailgun_signing_key(s.expose_secret());
        }
        if let Some(k) = &self.sendgrid_public_key {
            v = v.with_sendgrid_public_key(k);
        }
        if let Some((user, password)) = self.sendgrid_inbound_basic.as_ref().and_then(|b| {
            b.expose_secret()
                .split_once(':')
                .map(|(u, p)| (u.to_owned(), p.to_owned()))
        }) {
            v = v.with_sendgrid_inbound_basic(&user, &password);
        }
        v
    }

    pub fn outbound_policy(&self) -> crate::net::OutboundPolicy {
        let demo: &[&str] = if self.demo {
            &["127.0.0.0/8", "::1/128"]
        } else {
            &[]
        };
        crate::net::OutboundPolicy::new(
            self.outbound_allow
                .iter()
                .map(String::as_str)
                .chain(demo.iter().copied())
                .filter_map(|raw| crate::net::parse_net(raw).ok()),
        )
    }

    /// `trusted_proxies` as networks (checked by `validate`).
    pub fn trusted_proxies(&self) -> Vec<crate::net::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|raw| crate::net::parse_net(raw).ok())
            .collect()
    }

    /// The GraphQL document limits and policies.
    /// The GraphQL metrics, root fields slower than `slow_resolver_ms` counted.
    pub fn graphql_metrics(&self) -> crate::graphql::GraphqlMetrics {
        let threshold =
            (self.slow_resolver_ms > 0).then(|| std::time::Duration::from_millis(self.slow_resolver_ms));
        crate::graphql::GraphqlMetrics::new(threshold)
    }

    pub fn graphql_limits(&self) -> crate::graphql::Limits {
        use crate::graphql::IntrospectionPolicy as Policy;
        let introspection = match self.introspection {
            Some(Introspection::Always) => Policy::Always,
            Some(Introspection::Authenticated) => Policy::Authenticated,
            Some(Introspection::Never) => Policy::Never,
            None if self.demo => Policy::Always,
            None => Policy::Authenticated,
        };
        crate::graphql::Limits {
            depth: self.max_depth,
            complexity: self.max_complexity,
            aliases: self.max_aliases,
            batch: self.max_batch,
            field_repeats: self.max_field_repeats,
            directives: self.max_directives,
            introspection,
            suggestions: self.demo,
        }
    }

    /// How this process runs its job workers.
    pub fn worker_config(&self) -> crate::jobs::worker::WorkerConfig {
        use std::time::Duration;
        crate::jobs::worker::WorkerConfig {
            concurrency: self.worker_concurrency,
            batch_size: (self.worker_concurrency.min(256) as u32).max(1),
            visibility_timeout: Duration::from_secs(self.job_visibility_timeout_secs),
            poll_interval: Duration::from_millis(self.job_poll_interval_ms),
            maintenance_interval: Duration::from_millis(self.job_maintenance_interval_ms),
            stats_interval: Duration::from_millis(self.job_stats_interval_ms),
            ..crate::jobs::worker::WorkerConfig::default()
        }
    }

    /// How scheduled backups run.
    pub fn backup_options(&self) -> crate::ops::backup::scheduled::BackupOptions {
        crate::ops::backup::scheduled::BackupOptions {
            schedule: self.backup_schedule.clone(),
            dir: self.backup_dir.clone(),
            keep: self.backup_keep,
        }
    }

    /// The default settings as TOML.
    pub fn default_toml() -> String {
        toml::to_string(&Self::default()).unwrap_or_default()
    }

    /// `leadgate.example.toml`: every setting with its default, under a header that says how
    /// settings are named elsewhere and which have no default.
    pub fn example_toml() -> String {
        let defaults = Self::default_toml();
        let listed: toml::Table = toml::from_str(&defaults).unwrap_or_default();
        let unset: Vec<&str> = fields()
            .iter()
            .copied()
            .filter(|f| !listed.contains_key(*f))
            .collect();
        format!(
            "# leadgate.toml: every setting with its default. Copy to leadgate.toml and edit.\n\
             # Each setting is also read from the environment variable LEADGATE_<NAME> (the name in\n\
             # upper case, e.g. LEADGATE_MAX_DEPTH) and, on the commands that use it, from the flag\n\
             # --<name> with hyphens (e.g. --max-depth). Flags win over the environment, which wins\n\
             # over this file. Lists in the environment are JSON, TOML or comma-separated; tables\n\
             # (provider_urls) JSON, TOML or name=value pairs separated by commas, and on the\n\
             # command line --provider-url name=URL, once per entry.\n\
             # Without a default (unset unless given): {}.\n\
             # Secrets (jwt_secret, master_key) are best given as LEADGATE_JWT_SECRET and\n\
             # LEADGATE_MASTER_KEY instead.\n\n{defaults}",
            unset.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().unwrap();
    }

    #[test]
    fn events_on_the_broker_need_a_broker() {
        let alone = Settings {
            queue_events: true,
            ..Settings::default()
        };
        let err = alone.validate().unwrap_err().to_string();
        assert!(
            err.contains("`queue_events`") && err.contains("`queue_url`"),
            "{err}"
        );
        let with_broker = Settings {
            queue_events: true,
            queue_url: Some(SecretString::from("amqp://guest:guest@127.0.0.1:5672/%2f")),
            ..Settings::default()
        };
        with_broker.validate().unwrap();
    }

    #[test]
    fn backup_settings_are_checked() {
        let bad_cron = Settings {
            backup_schedule: Some("every night".into()),
            ..Settings::default()
        };
        let err = bad_cron.validate().unwrap_err().to_string();
        assert!(err.contains("`backup_schedule`"), "{err}");
        let keep_none = Settings {
            backup_keep: 0,
            ..Settings::default()
        };
        let err = keep_none.validate().unwrap_err().to_string();
        assert!(err.contains("`backup_keep`"), "{err}");
        let nightly = Settings {
            backup_schedule: Some("0 2 * * *".into()),
            ..Settings::default()
        };
        nightly.validate().unwrap();
    }

    #[test]
    fn demo_mode_changes_only_the_defaults_it_names() {
        use crate::graphql::IntrospectionPolicy;
        let plain = Settings::default();
        let limits = plain.graphql_limits();
        assert_eq!(limits.introspection, IntrospectionPolicy::Authenticated);
        assert!(!limits.suggestions);
        let loopback = "127.0.0.1".parse().unwrap();
        assert!(plain.outbound_policy().check_ip(loopback).is_err());
        let demo = Settings {
            demo: true,
            ..Settings::default()
        };
        assert_eq!(demo.graphql_limits().introspection, IntrospectionPolicy::Always);
        assert!(demo.graphql_limits().suggestions);
        demo.outbound_policy().check_ip(loopback).unwrap();
        demo.outbound_policy().check_ip("::1".parse().unwrap()).unwrap();
        assert!(
            demo.outbound_policy()
                .check_ip("10.0.0.1".parse().unwrap())
                .is_err()
        );
        // an explicit policy wins over the demo default
        let never = Settings {
            demo: true,
            introspection: Some(Introspection::Never),
            ..Settings::default()
        };
        assert_eq!(never.graphql_limits().introspection, IntrospectionPolicy::Never);
    }

    #[test]
    fn the_outbound_allow_list_is_comma_separated_cidrs() {
        let none = Flags::default();
        let s = load(
            "",
            &[("LEADGATE_OUTBOUND_ALLOW", "127.0.0.1/32, 10.0.0.0/8,::1")],
            &none,
        )
        .unwrap();
        assert_eq!(s.outbound_allow, ["127.0.0.1/32", "10.0.0.0/8", "::1"]);
        let policy = s.outbound_policy();
        policy.check_ip("10.9.9.9".parse().unwrap()).unwrap();
        policy.check_ip("::1".parse().unwrap()).unwrap();
        assert!(policy.check_ip("127.0.0.2".parse().unwrap()).is_err());
        let s = load("outbound_allow = [\"192.168.0.0/16\"]", &[], &none).unwrap();
        assert_eq!(s.outbound_allow, ["192.168.0.0/16"]);
        let err = load("", &[("LEADGATE_OUTBOUND_ALLOW", "10.0.0.0/8,intranet")], &none)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`outbound_allow` (from LEADGATE_OUTBOUND_ALLOW)") && err.contains("`intranet`"),
            "{err}"
        );
        let s = load("", &[("LEADGATE_INTROSPECTION", "never")], &none).unwrap();
        assert_eq!(s.introspection, Some(Introspection::Never));
    }

    #[test]
    fn unknown_keys_in_the_file_are_rejected() {
        let err = toml::from_str::<Settings>("lisen = \"0.0.0.0:1\"").unwrap_err();
        assert!(err.message().contains("lisen"));
    }

    #[test]
    fn bad_database_url_names_the_setting() {
        let s = Settings {
            database_url: "mysql://x".into(),
            ..Settings::default()
        };
        assert!(s.validate().unwrap_err().to_string().contains("database_url"));
    }

    /// Loads with `file` as the config file, `env` as the whole environment and `flags`.
    fn load(file: &str, env: &[(&str, &str)], flags: &Flags) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leadgate.toml");
        std::fs::write(&path, file).unwrap();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        Settings::load_with_env(Some(&path), flags, &|name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.into())
        })
    }

    #[derive(Serialize, Default)]
    struct DepthFlag {
        max_depth: Option<usize>,
        listen: Option<SocketAddr>,
    }

    fn depth_flag(depth: usize) -> Flags {
        let mut flags = Flags::default();
        flags
            .add(&DepthFlag {
                max_depth: Some(depth),
                listen: None,
            })
            .unwrap();
        flags
    }

    #[test]
    fn layers_apply_in_order_defaults_file_environment_flags() {
        let none = Flags::default();
        assert_eq!(load("", &[], &none).unwrap().max_depth, 15);
        assert_eq!(load("max_depth = 20", &[], &none).unwrap().max_depth, 20);
        let env = [("LEADGATE_MAX_DEPTH", "30")];
        assert_eq!(load("max_depth = 20", &env, &none).unwrap().max_depth, 30);
        let s = load("max_depth = 20\nmax_batch = 3", &env, &depth_flag(40)).unwrap();
        assert_eq!((s.max_depth, s.max_batch), (40, 3));
        // a flag that was not given (`listen: None`) leaves the lower layers alone
        let s = load("listen = \"127.0.0.1:9\"", &[], &depth_flag(40)).unwrap();
        assert_eq!(s.listen.port(), 9);
    }

    #[test]
    fn a_bad_value_names_the_variable_flag_or_file_key() {
        let none = Flags::default();
        let err = load("", &[("LEADGATE_MAX_DEPTH", "abc")], &none).unwrap_err();
        assert_eq!(
            err.to_string(),
            "LEADGATE_MAX_DEPTH: invalid digit found in string"
        );
        let err = load("", &[("LEADGATE_WORKERS", "maybe")], &none).unwrap_err();
        assert!(err.to_string().starts_with("LEADGATE_WORKERS: "), "{err}");
        let err = load("max_depth = \"deep\"", &[], &none).unwrap_err().to_string();
        assert!(
            err.contains("leadgate.toml: setting `max_depth`: expected"),
            "{err}"
        );
        let err = load("", &[("LEADGATE_MAX_DEPTH", "5")], &none)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`max_depth` (from LEADGATE_MAX_DEPTH)"), "{err}");
        let err = load("", &[], &depth_flag(5)).unwrap_err().to_string();
        assert!(err.contains("`max_depth` (from --max-depth)"), "{err}");
        let err = load("lisen = \"0.0.0.0:1\"", &[], &none).unwrap_err().to_string();
        assert!(err.contains("setting `lisen`: no such setting"), "{err}");
        let err = load("log_format = \"xml\"", &[], &none).unwrap_err().to_string();
        assert!(err.contains("`log_format`: unknown value `xml`"), "{err}");
    }

    #[test]
    fn environment_values_take_the_settings_type() {
        let none = Flags::default();
        // digits stay text for a text setting
        let s = load("", &[("LEADGATE_JWT_ISSUER", "2024")], &none).unwrap();
        assert_eq!(s.jwt_issuer, "2024");
        let s = load(
            "",
            &[
                ("LEADGATE_JOB_TEST_KINDS", "true"),
                ("LEADGATE_LISTEN", "0.0.0.0:1"),
            ],
            &none,
        )
        .unwrap();
        assert!(s.job_test_kinds);
        assert_eq!(s.listen, SocketAddr::from(([0, 0, 0, 0], 1)));
        for keys in [
            r#"[{"kid":"a","algorithm":"RS256","path":"a.pem"},{"kid":"b","algorithm":"ES256","path":"b.pem"}]"#,
            r#"[{kid = "a", algorithm = "RS256", path = "a.pem"}, {kid = "b", algorithm = "ES256", path = "b.pem"}]"#,
        ] {
            let s = load("", &[("LEADGATE_JWT_PUBLIC_KEYS", keys)], &none).unwrap();
            let kids: Vec<&str> = s.jwt_public_keys.iter().map(|k| k.kid.as_str()).collect();
            assert_eq!(kids, ["a", "b"], "{keys}");
        }
        // empty means unset; variables that name no setting are ignored
        let s = load(
            "",
            &[
                ("LEADGATE_MAX_DEPTH", ""),
                ("LEADGATE_TEST_POSTGRES_URL", "postgres://x"),
            ],
            &none,
        )
        .unwrap();
        assert_eq!(s.max_depth, 15);
    }

    #[derive(Serialize)]
    struct UrlFlags {
        provider_urls: BTreeMap<&'static str, &'static str>,
    }

    #[test]
    fn provider_urls_merge_over_the_defaults_from_every_layer() {
        let none = Flags::default();
        let file = "[provider_urls]\nhunter = \"http://127.0.0.1:1/v2\"\napollo = \"http://127.0.0.1:4\"";
        let s = load(file, &[], &none).unwrap();
        assert_eq!(s.provider_urls["hunter"], "http://127.0.0.1:1/v2");
        assert_eq!(
            s.provider_urls["pdl"], "https://api.peopledatalabs.com/v5",
            "a provider left out keeps its default"
        );
        let env = [(
            "LEADGATE_PROVIDER_URLS",
            "hunter=http://127.0.0.1:2/v2?a=b, pdl=http://127.0.0.1:3/v5",
        )];
        let s = load(file, &env, &none).unwrap();
        assert_eq!(s.provider_urls["hunter"], "http://127.0.0.1:2/v2?a=b");
        assert_eq!(s.provider_urls["pdl"], "http://127.0.0.1:3/v5");
        assert_eq!(
            s.provider_urls["apollo"], "http://127.0.0.1:4",
            "the file's entry stays"
        );
        assert_eq!(s.provider_urls["clearbit"], "https://person.clearbit.com/v2");
        let json = [("LEADGATE_PROVIDER_URLS", r#"{"clearbit": "http://127.0.0.1:5"}"#)];
        assert_eq!(
            load("", &json, &none).unwrap().provider_urls["clearbit"],
            "http://127.0.0.1:5"
        );
        let mut flags = Flags::default();
        flags
            .add(&UrlFlags {
                provider_urls: BTreeMap::from([("pdl", "http://127.0.0.1:6/v5")]),
            })
            .unwrap();
        let s = load(file, &env, &flags).unwrap();
        assert_eq!(s.provider_urls["pdl"], "http://127.0.0.1:6/v5");
        assert_eq!(s.provider_urls["hunter"], "http://127.0.0.1:2/v2?a=b");
        let urls = s.base_urls();
        assert_eq!(
            urls.len(),
            crate::enrich::providers::default_urls().len(),
            "every provider that calls out: {urls:?}"
        );
        assert_eq!(
            urls[&ProviderKind::PeopleDataLabs].as_str(),
            "http://127.0.0.1:6/v5"
        );
    }

    #[test]
    fn a_provider_url_for_no_such_provider_names_the_setting_and_where_it_came_from() {
        let none = Flags::default();
        let env = [("LEADGATE_PROVIDER_URLS", "huntr=http://127.0.0.1:1")];
        let err = load("", &env, &none).unwrap_err().to_string();
        let (head, known) = err.split_once("; these do: ").unwrap();
        assert_eq!(
            head,
            "setting `provider_urls` (from LEADGATE_PROVIDER_URLS): no provider `huntr` takes a base URL"
        );
        assert!(known.split(", ").any(|k| k == "hunter"), "{err}");
        let err = load("[provider_urls]\nsandbox = \"http://127.0.0.1:1\"", &[], &none)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`provider_urls` (from config file"), "{err}");
        assert!(err.contains("no provider `sandbox` takes a base URL"), "{err}");
        let mut flags = Flags::default();
        flags
            .add(&UrlFlags {
                provider_urls: BTreeMap::from([("hunter", "ftp://127.0.0.1/v2")]),
            })
            .unwrap();
        let err = load("", &[], &flags).unwrap_err().to_string();
        assert_eq!(
            err,
            "setting `provider_urls` (from --provider-url): `hunter` must be an http(s) URL"
        );
        let env = [("LEADGATE_PROVIDER_URLS", "hunter")];
        let err = load("", &env, &none).unwrap_err().to_string();
        assert!(
            err.starts_with("LEADGATE_PROVIDER_URLS: expected name=value pairs"),
            "{err}"
        );
    }

    #[test]
    fn rust_log_is_read_below_leadgate_log() {
        let none = Flags::default();
        assert_eq!(load("", &[("RUST_LOG", "debug")], &none).unwrap().log, "debug");
        let both = [("RUST_LOG", "debug"), ("LEADGATE_LOG", "warn")];
        assert_eq!(load("", &both, &none).unwrap().log, "warn");
    }

    #[test]
    fn secrets_are_never_printed() {
        let none = Flags::default();
        let err = load("jwt_secret = 8675309", &[], &none).unwrap_err().to_string();
        assert!(err.contains("`jwt_secret`") && !err.contains("8675309"), "{err}");
        let err = load("", &[("LEADGATE_MASTER_KEY", "hunter2-not-a-key")], &none)
            .unwrap_err()
            .to_string();
        assert!(err.contains("master_key") && !err.contains("hunter2"), "{err}");
        let err = load("jwt_secret = \"hunter2", &[], &none)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");

        #[derive(Serialize)]
        struct SecretFlag {
            jwt_secret: Option<&'static str>,
        }
        let mut flags = Flags::default();
        flags
            .add(&SecretFlag {
                jwt_secret: Some("hunter2-hunter2-hunter2-hunter2-hunter2"),
            })
            .unwrap();
        assert!(!format!("{flags:?}").contains("hunter2"));
        let s = load("", &[], &flags).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(s.jwt_secret.is_some());
    }

    #[test]
    fn a_bad_sentry_dsn_names_the_setting_and_is_not_printed() {
        let none = Flags::default();
        let env = [("LEADGATE_SENTRY_DSN", "https://sekrit-key@sentry.example")];
        let err = load("", &env, &none).unwrap_err().to_string();
        assert!(
            err.starts_with("setting `sentry_dsn` (from LEADGATE_SENTRY_DSN): is not a Sentry DSN"),
            "{err}"
        );
        assert!(!err.contains("sekrit"), "{err}");
        let env = [("LEADGATE_SENTRY_DSN", "https://sekrit-key@o1.ingest.sentry.io/42")];
        let s = load("", &env, &none).unwrap();
        assert!(!format!("{s:?}").contains("sekrit"));
        assert_eq!(s.sentry_environment, "production");
        let err = load("sentry_environment = \"pre prod\"", &[], &none)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`sentry_environment`"), "{err}");
    }

    #[test]
    fn every_setting_is_named_by_serde() {
        assert_eq!(fields().first(), Some(&"listen"));
        assert_eq!(fields().last(), Some(&"log_format"));
        assert!(fields().contains(&"jwt_secret") && fields().contains(&"backup_schedule"));
        assert_eq!(env_var("max_depth"), "LEADGATE_MAX_DEPTH");
        assert_eq!(flag("max_depth"), "--max-depth");
    }
}
