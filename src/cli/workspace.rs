//! `leadgate workspace create|list` (tenants) and `leadgate token` (a bearer token for one
//! workspace and role, printed alone on stdout).

use super::flags::{CommonFlags, DataSettings, DatabaseFlags, SettingFlags, TokenFlags};
use crate::app;
use crate::config::Settings;
use crate::domain::Role;
use clap::{Args, Subcommand};
use serde::Serialize;
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum WorkspaceCommand {
    /// Create a workspace.
    Create {
        /// URL-safe handle: lower-case letters, digits, hyphens.
        slug: String,
        /// Display name (defaults to the slug).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        settings: DataSettings,
    },
    /// List workspaces.
    List {
        #[command(flatten)]
        settings: DataSettings,
    },
}

impl WorkspaceCommand {
    /// The setting flags it was given.
    pub fn settings(&self) -> &DataSettings {
        match self {
            WorkspaceCommand::Create { settings, .. } | WorkspaceCommand::List { settings } => settings,
        }
    }
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
    #[command(flatten)]
    pub settings: TokenSettings,
}

/// The settings `token` reads from its flags: the database and the token keys.
#[derive(Args, Debug, Default, Serialize)]
pub struct TokenSettings {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub database: DatabaseFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub tokens: TokenFlags,
}

impl SettingFlags for TokenSettings {
    fn common(&self) -> &CommonFlags {
        &self.common
    }
}

pub(super) fn parse_role(raw: &str) -> Result<Role, String> {
    Role::parse(raw).ok_or_else(|| format!("'{raw}' is not a role; use admin, member, viewer or partner"))
}

pub(super) async fn workspace(settings: &Settings, cmd: WorkspaceCommand) -> anyhow::Result<()> {
    let store = app::open_store(settings).await?;
    let services = app::services(settings, store.clone())?;
    match cmd {
        WorkspaceCommand::Create { slug, name, .. } => {
            let ws = services
                .workspaces
                .create(&slug, name.as_deref())
                .await
                .map_err(|e| anyhow::anyhow!("cannot create workspace `{slug}`: {e}"))?;
            println!("{}\t{}", ws.slug, ws.name);
        }
        WorkspaceCommand::List { .. } => {
            for ws in services.workspaces.list().await? {
                let counts = services.workspaces.lead_counts(ws.id).await?;
                println!("{}\t{}\t{} leads", ws.slug, ws.name, counts.active);
            }
        }
    }
    store.close().await;
    Ok(())
}

pub(super) async fn token(settings: &Settings, args: TokenArgs) -> anyhow::Result<()> {
    let store = app::open_store(settings).await?;
    let auth = app::authenticator(settings, &store, false).await?;
    let services = app::services(settings, store.clone())?;
    let ws = super::workspace_by_slug(&services, &args.workspace).await?;
    let token = app::mint(&auth, &args.subject, &ws, args.role, args.ttl)?;
    println!("{token}");
    store.close().await;
    Ok(())
}
