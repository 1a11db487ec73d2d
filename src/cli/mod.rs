//! The command line: the `Cli`, the `Command` enum and its dispatch, and the start of every
//! command (its settings loaded in one place, `Settings::load`, with its flags as the top
//! layer; logging; for `serve` and `worker`, error reporting to Sentry). Each command group
//! lives in a file of its own: `serve` (serve, worker),
//! `workspace` (workspace, token), `migrate` (migrate, schema, job-kinds), `seed`, `import`, `export`,
//! `erase`, `backup` (backup, restore), `crm` (list, sync, replay) and `keys` (API keys: create, list,
//! revoke); `flags` holds the setting flags, `progress` the bars.
//! Output meant for scripts (a token, the schema) goes to stdout alone; the rest to stderr.

mod backup;
mod campaigns;
mod crm;
mod erase;
mod export;
mod flags;
mod import;
mod keys;
mod migrate;
mod progress;
mod seed;
mod serve;
mod workspace;

pub use backup::{BackupArgs, RestoreArgs};
pub use erase::EraseArgs;
pub use export::{ExportArgs, ExportSettings};
pub use flags::{
    CommonFlags, DataSettings, DatabaseFlags, EnrichmentFlags, EventFlags, ExportFlags, HttpFlags, JobFlags,
    OutboundFlags, SealingFlags, SettingFlags, TokenFlags, WsFlags,
};
pub use import::ImportArgs;
pub use seed::SeedArgs;
pub use serve::{ServeArgs, ServeSettings, WorkerArgs, WorkerSettings};
pub use workspace::{TokenArgs, TokenSettings, WorkspaceCommand};

use crate::config::{Flags, Settings};
use crate::domain::{Role, Workspace};
use crate::service::{Actor, ServiceError, Services};
use crate::telemetry::sentry::ErrorReporting;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(name = "leadgate", version, about = "A GraphQL gateway for sales leads")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// Settings that may also come before the command (`leadgate --database-url URL backup …`);
/// a command's own flags win.
#[derive(Args, Debug, Default, Serialize)]
pub struct GlobalFlags {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub database: DatabaseFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub tokens: TokenFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub sealing: SealingFlags,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP server (GraphQL at /graphql, GraphiQL at /graphiql, the console at /console)
    /// and job workers.
    Serve(Box<ServeArgs>),
    /// Run only job workers, no HTTP, until SIGTERM; several may run at once.
    Worker(Box<WorkerArgs>),
    /// Apply pending database migrations and exit.
    Migrate(DataSettings),
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Print the job kinds this build can run, one per line.
    JobKinds,
    /// Manage workspaces.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// CRM connections: list them, push a connection's leads, replay its dead pushes.
    #[command(subcommand)]
    Crm(crm::CrmCommand),
    /// Campaigns: list them with their funnel, run the due steps now.
    #[command(subcommand)]
    Campaigns(campaigns::CampaignsCommand),
    /// API keys of a workspace: create one (its secret printed once), list them, revoke one.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
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

/// The command line's definition, with each setting flag's help naming its `LEADGATE_*`
/// variable.
pub fn command() -> clap::Command {
    with_env_names(Cli::command())
}

fn with_env_names(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| {
            let id = arg.get_id().as_str();
            if !crate::config::fields().contains(&id) {
                return arg;
            }
            let var = crate::config::env_var(id);
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            arg.help(format!("{help} [env: {var}]"))
        })
        .mut_subcommands(with_env_names)
}

/// The command line of this process; prints help or a usage error and exits when asked or
/// when it does not parse.
pub fn parse() -> Cli {
    let mut matches = command().get_matches();
    Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.format(&mut command()).exit())
}

/// A command's settings, its flags over the ones given before it, then logging started.
/// Bulk commands log `quietly`, so that library warnings do not break up their progress bar
/// (see `telemetry`).
fn start(global: &GlobalFlags, flags: &impl SettingFlags, quiet: bool) -> anyhow::Result<Settings> {
    let settings = load(global, flags)?;
    crate::telemetry::init(&settings.log, settings.log_format, quiet, None);
    Ok(settings)
}

/// `start` for the long-running commands (`serve`, `worker`), which also report errors to
/// Sentry when `sentry_dsn` is set: reporting starts before logging and before anything is
/// spawned, so that every thread reports.
fn start_reporting(
    global: &GlobalFlags,
    flags: &impl SettingFlags,
) -> anyhow::Result<(Settings, Option<ErrorReporting>)> {
    let settings = load(global, flags)?;
    let errors = ErrorReporting::start(&settings)?;
    crate::telemetry::init(&settings.log, settings.log_format, false, errors.as_ref());
    Ok((settings, errors))
}

/// A command's settings: the file, the environment and its flags over the ones given before it.
fn load(global: &GlobalFlags, flags: &impl SettingFlags) -> anyhow::Result<Settings> {
    let config = flags
        .common()
        .config
        .as_deref()
        .or(global.common.config.as_deref());
    Ok(Settings::load(config, &layer(global, flags)?)?)
}

/// Sends the errors still queued for Sentry (bounded) once a long-running command ended.
async fn finish(errors: Option<ErrorReporting>, result: anyhow::Result<()>) -> anyhow::Result<()> {
    if let Some(errors) = errors {
        errors.shutdown().await;
    }
    result
}

/// The flags layer of a command's settings: the flags given before the command, then its own.
fn layer(global: &GlobalFlags, flags: &impl SettingFlags) -> Result<Flags, crate::config::ConfigError> {
    let mut layer = Flags::default();
    layer.add(global)?.add(flags)?;
    Ok(layer)
}

/// The command line acts as an operator of the workspace it names: an admin.
fn operator(ws: &Workspace) -> Actor {
    Actor {
        subject: "operator:cli".into(),
        workspace_id: ws.id,
        role: Role::Admin,
        key: None,
    }
}

/// The workspace with this slug, or a message that says how to find one.
async fn workspace_by_slug(services: &Services, slug: &str) -> anyhow::Result<Workspace> {
    match services.workspaces.by_slug(slug).await {
        Ok(ws) => Ok(ws),
        Err(ServiceError::NotFound(_)) => {
            anyhow::bail!("unknown workspace `{slug}`; see `leadgate workspace list`")
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli { global, command } = cli;
    match command {
        Command::Schema => {
            migrate::schema();
            Ok(())
        }
        Command::JobKinds => {
            migrate::job_kinds();
            Ok(())
        }
        Command::Serve(args) => {
            let (settings, errors) = start_reporting(&global, &args.settings)?;
            let result = serve::serve(&settings, *args, errors.as_ref()).await;
            finish(errors, result).await
        }
        Command::Worker(args) => {
            let (settings, errors) = start_reporting(&global, &args.settings)?;
            let result = serve::worker(&settings, errors.as_ref()).await;
            finish(errors, result).await
        }
        Command::Migrate(flags) => migrate::migrate(&start(&global, &flags, false)?).await,
        Command::Workspace(cmd) => {
            let settings = start(&global, cmd.settings(), false)?;
            workspace::workspace(&settings, cmd).await
        }
        Command::Crm(cmd) => {
            let settings = match &cmd {
                crm::CrmCommand::List { settings } => start(&global, settings, false)?,
                crm::CrmCommand::Sync { settings, .. } | crm::CrmCommand::Replay { settings, .. } => {
                    start(&global, settings, true)?
                }
            };
            crm::crm(&settings, cmd).await
        }
        Command::Campaigns(cmd) => {
            let settings = match &cmd {
                campaigns::CampaignsCommand::List { settings } => start(&global, settings, false)?,
                campaigns::CampaignsCommand::RunDue { settings, .. } => start(&global, settings, false)?,
            };
            campaigns::campaigns(&settings, cmd).await
        }
        Command::Keys(cmd) => keys::keys(&start(&global, cmd.settings(), false)?, cmd).await,
        Command::Token(args) => workspace::token(&start(&global, &args.settings, false)?, args).await,
        Command::Seed(args) => seed::seed(&start(&global, &args.settings, true)?, args).await,
        Command::Erase(args) => erase::erase(&start(&global, &args.settings, false)?, args).await,
        Command::Export(args) => export::export(&start(&global, &args.settings, true)?, args).await,
        Command::Import(args) => import::import(&start(&global, &args.settings, true)?, *args).await,
        Command::Backup(args) => backup::backup(&start(&global, &args.settings, true)?, args).await,
        Command::Restore(args) => backup::restore(&start(&global, &args.settings, true)?, args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const COMMON: &[&str] = &["config", "log", "log-format"];
    const DATABASE: &[&str] = &["database-url", "database-max-connections"];
    const TOKENS: &[&str] = &["jwt-secret", "jwt-issuer", "jwt-audience"];
    const SEALING: &[&str] = &["master-key"];
    const HTTP: &[&str] = &[
        "listen",
        "max-body-bytes",
        "import-max-upload-mb",
        "request-timeout-secs",
        "slow-resolver-ms",
        "max-batch",
        "max-depth",
        "max-complexity",
        "max-aliases",
        "max-field-repeats",
        "max-directives",
        "introspection",
    ];
    const EXPORTS: &[&str] = &["export-batch-size"];
    const WS: &[&str] = &[
        "ws-init-timeout-ms",
        "ws-keepalive-ms",
        "ws-max-subscriptions",
        "ws-max-connections-per-token",
        "ws-send-queue",
    ];
    const ENRICHMENT: &[&str] = &[
        "provider-url",
        "provider-timeout-ms",
        "provider-retries",
        "circuit-failure-threshold",
        "circuit-cool-down-secs",
        "enrichment-ttl-hours",
        "verification-ttl-hours",
        "miss-ttl-hours",
        "enrichment-cache-mb",
    ];
    const EVENTS: &[&str] = &[
        "event-poll-ms",
        "event-retention-days",
        "webhook-timeout-ms",
        "webhook-max-attempts",
        "webhook-retry-base-ms",
        "webhook-disable-after",
        "crm-push-delay-ms",
    ];
    const OUTBOUND: &[&str] = &["outbound-allow"];
    const METRICS: &[&str] = &["metrics-listen"];
    const REDIS: &[&str] = &["redis-url", "redis-timeout-ms", "redis-prefix"];
    const QUEUE: &[&str] = &["queue-url", "queue-prefix", "queue-prefetch", "queue-events"];
    const LIMITS: &[&str] = &[
        "trusted-proxies",
        "rate-limit",
        "rate-limit-anonymous",
        "rate-limit-workspace",
        "rate-limit-role",
        "persisted-queries",
        "persisted-queries-file",
        "shutdown-delay-ms",
    ];
    const MAIL: &[&str] = &[
        "smtp-url",
        "mail-folder",
        "smtp-pool",
        "public-url",
        "mail-webhook-secret",
        "mailgun-signing-key",
        "sendgrid-public-key",
        "sendgrid-inbound-basic",
    ];
    const SENTRY: &[&str] = &["sentry-dsn", "sentry-environment"];
    const JOBS: &[&str] = &[
        "worker-concurrency",
        "job-visibility-timeout-secs",
        "job-poll-interval-ms",
        "job-maintenance-interval-ms",
        "job-stats-interval-ms",
        "job-retention-hours",
        "retention-schedule",
        "job-test-kinds",
        "backup-schedule",
        "backup-dir",
        "backup-keep",
    ];

    /// The long flags of a (sub)command, `--help` and `--version` aside.
    fn longs(command: &clap::Command) -> BTreeSet<String> {
        command
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|l| !matches!(*l, "help" | "version"))
            .map(str::to_owned)
            .collect()
    }

    fn set(groups: &[&[&str]]) -> BTreeSet<String> {
        groups
            .iter()
            .flat_map(|g| g.iter())
            .map(|f| (*f).to_owned())
            .collect()
    }

    #[test]
    fn each_command_lists_only_the_flags_it_reads() {
        let data = [COMMON, DATABASE];
        let expected: Vec<(&str, BTreeSet<String>)> = vec![
            (
                "serve",
                set(&[
                    &["demo", "workers", "no-workers"],
                    COMMON,
                    DATABASE,
                    TOKENS,
                    SEALING,
                    HTTP,
                    LIMITS,
                    REDIS,
                    EXPORTS,
                    WS,
                    ENRICHMENT,
                    EVENTS,
                    OUTBOUND,
                    MAIL,
                    JOBS,
                    SENTRY,
                    QUEUE,
                ]),
            ),
            (
                "worker",
                set(&[
                    COMMON, DATABASE, SEALING, REDIS, ENRICHMENT, EVENTS, OUTBOUND, MAIL, JOBS, METRICS,
                    SENTRY, QUEUE,
                ]),
            ),
            ("campaigns list", set(&data)),
            (
                "campaigns run-due",
                set(&[&["max-batches"], COMMON, DATABASE, MAIL]),
            ),
            ("migrate", set(&data)),
            ("schema", set(&[])),
            ("job-kinds", set(&[])),
            ("workspace create", set(&[&["name"], COMMON, DATABASE])),
            ("workspace list", set(&data)),
            ("crm list", set(&data)),
            (
                "crm sync",
                set(&[&["filter"], COMMON, DATABASE, SEALING, OUTBOUND]),
            ),
            ("crm replay", set(&[COMMON, DATABASE, SEALING, OUTBOUND])),
            (
                "keys create",
                set(&[
                    &["workspace", "name", "role", "scope", "expires-at", "rate-limit"],
                    COMMON,
                    DATABASE,
                ]),
            ),
            ("keys list", set(&[&["workspace"], COMMON, DATABASE])),
            ("keys revoke", set(&data)),
            (
                "token",
                set(&[&["workspace", "role", "ttl", "subject"], COMMON, DATABASE, TOKENS]),
            ),
            ("seed", set(&[&["workspace", "leads", "seed"], COMMON, DATABASE])),
            (
                "import",
                set(&[
                    &[
                        "workspace",
                        "format",
                        "dry-run",
                        "on-duplicate",
                        "map",
                        "default-region",
                        "errors",
                        "restart",
                    ],
                    COMMON,
                    DATABASE,
                ]),
            ),
            (
                "export",
                set(&[
                    &["workspace", "filter", "format", "out", "include", "provenance"],
                    COMMON,
                    DATABASE,
                    EXPORTS,
                ]),
            ),
            (
                "erase",
                set(&[&["workspace", "lead", "email", "reason"], COMMON, DATABASE]),
            ),
            ("backup", set(&[&["out"], COMMON, DATABASE])),
            ("restore", set(&data)),
        ];
        let root = command();
        let mut seen = BTreeSet::new();
        for (path, want) in &expected {
            let mut command = &root;
            for name in path.split(' ') {
                command = command
                    .find_subcommand(name)
                    .unwrap_or_else(|| panic!("no `leadgate {path}`"));
            }
            assert_eq!(&longs(command), want, "leadgate {path} --help");
            seen.insert(path.split(' ').next().unwrap_or(path).to_owned());
        }
        let all: BTreeSet<String> = root.get_subcommands().map(|c| c.get_name().to_owned()).collect();
        assert_eq!(seen, all, "every command is listed here");
        // the settings every command reads may also come before the command
        assert_eq!(longs(&root), set(&[COMMON, DATABASE, TOKENS, SEALING]));
    }

    /// The setting flags of every command, as clap ids (the `Settings` field they set).
    fn setting_ids() -> BTreeSet<String> {
        let groups = [
            GlobalFlags::augment_args(clap::Command::new("global")),
            ServeSettings::augment_args(clap::Command::new("serve")),
            WorkerSettings::augment_args(clap::Command::new("worker")),
            TokenSettings::augment_args(clap::Command::new("token")),
            ExportSettings::augment_args(clap::Command::new("export")),
            DataSettings::augment_args(clap::Command::new("data")),
            campaigns::RunDueSettings::augment_args(clap::Command::new("run-due")),
        ];
        groups
            .iter()
            .flat_map(|g| g.get_arguments().map(|a| a.get_id().to_string()))
            .collect()
    }

    #[test]
    fn setting_flags_are_named_like_settings_and_cover_them() {
        let fields: BTreeSet<String> = crate::config::fields().iter().map(|f| (*f).to_owned()).collect();
        let ids = setting_ids();
        let not_settings: BTreeSet<String> = ids.difference(&fields).cloned().collect();
        // `--config` picks the file; `--no-workers` is `--workers false`
        assert_eq!(not_settings, set(&[&["config", "no_workers"]]));
        let without_flag: BTreeSet<String> = fields.difference(&ids).cloned().collect();
        // a list of tables: the file or the environment (JSON or TOML)
        assert_eq!(without_flag, set(&[&["jwt_public_keys"]]));
    }

    #[test]
    fn command_inputs_do_not_shadow_setting_variables() {
        fn check(command: &clap::Command) {
            for arg in command.get_arguments() {
                if let Some(env) = arg.get_env() {
                    let env = env.to_string_lossy();
                    assert!(
                        !crate::config::fields()
                            .iter()
                            .any(|f| crate::config::env_var(f) == env),
                        "{env} is a setting's variable; the setting reads it"
                    );
                }
            }
            command.get_subcommands().for_each(check);
        }
        check(&command());
    }

    /// The settings a command line gives, over an empty file and environment.
    fn settings_of(args: &[&str]) -> Settings {
        let cli = Cli::try_parse_from(args).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("empty.toml");
        std::fs::write(&file, "").unwrap();
        let flags = match &cli.command {
            Command::Serve(a) => layer(&cli.global, &a.settings),
            Command::Worker(a) => layer(&cli.global, &a.settings),
            Command::Export(a) => layer(&cli.global, &a.settings),
            Command::Backup(a) => layer(&cli.global, &a.settings),
            _ => unreachable!("not used here"),
        }
        .unwrap();
        Settings::load_with_env(Some(&file), &flags, &|_| None).unwrap()
    }

    #[test]
    fn flags_overlay_the_settings_they_name() {
        let s = settings_of(&[
            "leadgate",
            "--database-url",
            "sqlite://before.db",
            "serve",
            "--max-depth",
            "20",
            "--ws-send-queue",
            "7",
            "--job-test-kinds",
            "--listen",
            "127.0.0.1:1",
            "--provider-url",
            "hunter=http://127.0.0.1:2/v2",
            "--provider-url",
            "pdl=http://127.0.0.1:3/v5",
        ]);
        assert_eq!(s.provider_urls["hunter"], "http://127.0.0.1:2/v2");
        assert_eq!(s.provider_urls["pdl"], "http://127.0.0.1:3/v5");
        assert_eq!(s.provider_urls["apollo"], "https://api.apollo.io/api/v1");
        assert_eq!(s.database_url, "sqlite://before.db");
        assert_eq!((s.max_depth, s.ws_send_queue, s.listen.port()), (20, 7, 1));
        assert!(s.job_test_kinds && s.workers);
        let s = settings_of(&[
            "leadgate",
            "--database-url",
            "sqlite://before.db",
            "backup",
            "--out",
            "x",
            "--database-url",
            "sqlite://after.db",
        ]);
        assert_eq!(s.database_url, "sqlite://after.db", "the command's own flag wins");
        let s = settings_of(&[
            "leadgate",
            "export",
            "--workspace",
            "a",
            "--export-batch-size",
            "2",
        ]);
        assert_eq!(s.export_batch_size, 2);
        let s = settings_of(&[
            "leadgate",
            "worker",
            "--job-test-kinds=false",
            "--backup-keep",
            "3",
        ]);
        assert!(!s.job_test_kinds);
        assert_eq!(s.backup_keep, 3);
        let s = settings_of(&[
            "leadgate",
            "worker",
            "--outbound-allow",
            "127.0.0.1/32,10.0.0.0/8",
            "--outbound-allow",
            "::1",
        ]);
        assert_eq!(s.outbound_allow, ["127.0.0.1/32", "10.0.0.0/8", "::1"]);
        let s = settings_of(&[
            "leadgate",
            "serve",
            "--introspection",
            "never",
            "--max-directives",
            "2",
        ]);
        assert_eq!(s.introspection, Some(crate::config::Introspection::Never));
        assert_eq!(s.max_directives, 2);
    }

    #[test]
    fn no_workers_is_workers_false_and_wins() {
        assert!(!settings_of(&["leadgate", "serve", "--no-workers"]).workers);
        assert!(!settings_of(&["leadgate", "serve", "--workers", "false"]).workers);
        assert!(!settings_of(&["leadgate", "serve", "--workers", "true", "--no-workers"]).workers);
        assert!(settings_of(&["leadgate", "serve", "--workers"]).workers);
    }

    #[test]
    fn setting_flags_name_their_variable_in_help() {
        let mut root = command();
        let serve = root.find_subcommand_mut("serve").unwrap();
        let help = serve.render_help().to_string();
        assert!(help.contains("[env: LEADGATE_LISTEN]"), "{help}");
        assert!(help.contains("[env: LEADGATE_JOB_TEST_KINDS]"), "{help}");
    }
}
