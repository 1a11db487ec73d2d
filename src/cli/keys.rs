//! `leadgate keys create|list|revoke`: API keys of a workspace, as an operator (an admin). A
//! new key's secret goes to stdout alone, once; the rest to stderr. Revoking here applies to a
//! running server within a second (its key ring polls the database).

use super::flags::DataSettings;
use crate::app;
use crate::config::Settings;
use crate::domain::{ApiKey, ApiKeyId, KeysetPage, Role, Timestamp, Workspace, WorkspaceId};
use crate::service::{ApiKeyDraft, ServiceError, Services};
use clap::Subcommand;
use secrecy::ExposeSecret;
use std::io::Write;

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create an API key; prints its secret alone on stdout, shown only now.
    Create {
        /// The workspace's slug or id.
        #[arg(long)]
        workspace: String,
        /// What the key is for (1 to 100 characters).
        #[arg(long)]
        name: String,
        /// Role the key acts with: admin, member, viewer or partner.
        #[arg(long, value_parser = super::workspace::parse_role)]
        role: Role,
        /// A scope: leads:read, leads:write, subscribe, bulk or admin (or READ_LEADS,
        /// WRITE_LEADS, SUBSCRIBE, IMPORT_EXPORT, ADMIN); repeat it or separate with commas.
        #[arg(long = "scope", value_delimiter = ',')]
        scopes: Vec<String>,
        /// When the key stops working (RFC 3339, e.g. 2030-01-31T00:00:00Z).
        #[arg(long, value_parser = parse_time)]
        expires_at: Option<Timestamp>,
        /// The key's own request rate, e.g. 600/min.
        #[arg(long)]
        rate_limit: Option<String>,
        #[command(flatten)]
        settings: DataSettings,
    },
    /// List a workspace's API keys, newest first.
    List {
        /// The workspace's slug or id.
        #[arg(long)]
        workspace: String,
        #[command(flatten)]
        settings: DataSettings,
    },
    /// Revoke an API key (its id as `keys list` prints it).
    Revoke {
        id: String,
        #[command(flatten)]
        settings: DataSettings,
    },
}

impl KeysCommand {
    /// The setting flags it was given.
    pub fn settings(&self) -> &DataSettings {
        match self {
            KeysCommand::Create { settings, .. }
            | KeysCommand::List { settings, .. }
            | KeysCommand::Revoke { settings, .. } => settings,
        }
    }
}

fn parse_time(raw: &str) -> Result<Timestamp, String> {
    chrono::DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| format!("'{raw}' is not an RFC 3339 time such as 2030-01-31T00:00:00Z"))
}

/// The workspace a `--workspace` names, by slug or id.
async fn workspace(services: &Services, raw: &str) -> anyhow::Result<Workspace> {
    if let Ok(id) = uuid::Uuid::parse_str(raw.trim()) {
        return services
            .workspaces
            .by_id(WorkspaceId::from_uuid(id))
            .await?
            .ok_or_else(|| anyhow::anyhow!("unknown workspace `{raw}`; see `leadgate workspace list`"));
    }
    super::workspace_by_slug(services, raw).await
}

/// A service error as the operator reads it: field errors one per line.
fn refused(what: &str, e: ServiceError) -> anyhow::Error {
    match e {
        ServiceError::Invalid(errors) => {
            let lines: Vec<String> = errors.0.iter().map(|e| format!("  {e}")).collect();
            anyhow::anyhow!("cannot {what}:\n{}", lines.join("\n"))
        }
        other => anyhow::anyhow!("cannot {what}: {other}"),
    }
}

pub(super) async fn keys(settings: &Settings, cmd: KeysCommand) -> anyhow::Result<()> {
    let store = app::open_store(settings).await?;
    let services = app::services(settings, store.clone())?;
    let done = run(&services, cmd).await;
    store.close().await;
    done
}

async fn run(services: &Services, cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create {
            workspace: ws,
            name,
            role,
            scopes,
            expires_at,
            rate_limit,
            ..
        } => {
            let ws = workspace(services, &ws).await?;
            let draft = ApiKeyDraft {
                name,
                role,
                scopes,
                expires_at,
                rate_limit,
            };
            let (key, secret) = services
                .api_keys
                .create(&super::operator(&ws), draft)
                .await
                .map_err(|e| refused("create the key", e))?;
            eprintln!(
                "API key {} ({}) created in `{}`; its secret follows and is not shown again",
                key.id, key.prefix, ws.slug
            );
            println!("{}", secret.expose_secret());
        }
        KeysCommand::List { workspace: ws, .. } => {
            let ws = workspace(services, &ws).await?;
            let actor = super::operator(&ws);
            let mut out = std::io::stdout().lock();
            writeln!(out, "id\tname\tprefix\trole\tscopes\tlast used\texpires\trevoked")?;
            let mut page = KeysetPage::first(100);
            loop {
                let read = services.api_keys.list(&actor, page).await?;
                for key in &read.items {
                    writeln!(out, "{}", row(key))?;
                }
                match read.items.last() {
                    Some(last) if read.has_more => page = KeysetPage::after(last.id, 100),
                    _ => break,
                }
            }
        }
        KeysCommand::Revoke { id, .. } => {
            let id = uuid::Uuid::parse_str(id.trim())
                .map(ApiKeyId::from_uuid)
                .map_err(|_| anyhow::anyhow!("`{id}` is not a key id; see `leadgate keys list`"))?;
            let ws = services
                .api_keys
                .workspace_of(id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no API key {id}; see `leadgate keys list`"))?;
            let ws = services
                .workspaces
                .by_id(ws)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no API key {id}"))?;
            let key = services
                .api_keys
                .revoke(&super::operator(&ws), id)
                .await
                .map_err(|e| refused("revoke the key", e))?;
            eprintln!("API key {} ({}) is revoked", key.id, key.name);
        }
    }
    Ok(())
}

/// One line of `keys list`.
fn row(key: &ApiKey) -> String {
    let time = |t: Option<Timestamp>| t.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339());
    let scopes = key.scopes.to_string();
    [
        key.id.to_string(),
        key.name.clone(),
        key.prefix.clone(),
        key.role.as_str().to_owned(),
        scopes,
        time(key.last_used_at),
        time(key.expires_at),
        time(key.revoked_at),
    ]
    .join("\t")
}
