//! `leadgate crm list|sync|replay`: the CRM connections of every workspace, a push of a
//! connection's leads (all, or those a filter selects) and a replay of its dead pushes. `sync`
//! and `replay` run job workers in this process (beside any server's, which share the queue: a
//! connection's push runs once whoever claims it) and draw the connection's pending links
//! going down until none is left or the push is dead.

use super::flags::{CommonFlags, DataSettings, DatabaseFlags, OutboundFlags, SealingFlags, SettingFlags};
use crate::app;
use crate::config::Settings;
use crate::domain::{CrmConnection, CrmConnectionId, JobSelection, KeysetPage, LeadFilter, Role};
use crate::service::{Actor, Services, SyncSelection};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum CrmCommand {
    /// List every workspace's CRM connections with their links by status.
    List {
        #[command(flatten)]
        settings: DataSettings,
    },
    /// Push a connection's leads now (every lead, or those `--filter` selects) and wait for it.
    Sync {
        /// The connection's id (as `crm list` prints it, or its GraphQL id).
        connection: String,
        /// A lead filter as JSON, in the GraphQL `LeadFilter` spelling for the supported keys:
        /// `{"status": ["QUALIFIED"], "country": ["DE"], "source": ["webinar"], "hasEmail": true}`.
        #[arg(long)]
        filter: Option<String>,
        #[command(flatten)]
        settings: CrmSettings,
    },
    /// Queue a connection's dead pushes again and wait for them.
    Replay {
        connection: String,
        #[command(flatten)]
        settings: CrmSettings,
    },
}

/// `sync` and `replay` open credentials and call the CRM: the database, the master key and
/// the outbound allow-list.
#[derive(Args, Debug, Default, Serialize)]
pub struct CrmSettings {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub database: DatabaseFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub sealing: SealingFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub outbound: OutboundFlags,
}

impl SettingFlags for CrmSettings {
    fn common(&self) -> &CommonFlags {
        &self.common
    }
}

fn operator(conn: &CrmConnection) -> Actor {
    Actor {
        subject: "cli".into(),
        workspace_id: conn.workspace_id,
        role: Role::Admin,
        key: None,
    }
}

/// A connection id as `crm list` prints it, or a GraphQL global id.
fn parse_id(raw: &str) -> anyhow::Result<CrmConnectionId> {
    use base64::Engine;
    if let Ok(uuid) = uuid::Uuid::parse_str(raw.trim()) {
        return Ok(CrmConnectionId::from_uuid(uuid));
    }
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw.trim().trim_end_matches('='))
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    match decoded.as_deref().and_then(|t| t.strip_prefix("CrmIntegration:")) {
        Some(uuid) => Ok(CrmConnectionId::from_uuid(uuid::Uuid::parse_str(uuid)?)),
        None => anyhow::bail!("`{raw}` is not a CRM connection id; see `leadgate crm list`"),
    }
}

async fn find(services: &Services, raw: &str) -> anyhow::Result<CrmConnection> {
    let id = parse_id(raw)?;
    services
        .crm
        .all_connections()
        .await?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| anyhow::anyhow!("no CRM connection {id}; see `leadgate crm list`"))
}

/// The supported keys of a filter given as JSON.
fn parse_filter(raw: &str) -> anyhow::Result<LeadFilter> {
    let value: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| anyhow::anyhow!("--filter is not JSON: {e}"))?;
    let object = value
        .as_object()
        .ok_or_else(|| anyhow::anyhow!("--filter must be a JSON object"))?;
    let mut filter = LeadFilter::default();
    let strings = |v: &serde_json::Value, key: &str| -> anyhow::Result<Vec<String>> {
        v.as_array()
            .ok_or_else(|| anyhow::anyhow!("--filter: `{key}` is a list of strings"))?
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow::anyhow!("--filter: `{key}` is a list of strings"))
            })
            .collect()
    };
    for (key, v) in object {
        match key.as_str() {
            "status" => {
                for s in strings(v, key)? {
                    filter.statuses.push(
                        crate::domain::LeadStatus::parse(&s)
                            .ok_or_else(|| anyhow::anyhow!("--filter: `{s}` is not a lead status"))?,
                    );
                }
            }
            "country" => {
                for c in strings(v, key)? {
                    filter.countries.push(
                        crate::domain::CountryCode::parse("country", &c)
                            .map_err(|e| anyhow::anyhow!("--filter: {}", e.message))?,
                    );
                }
            }
            "source" => filter.sources = strings(v, key)?,
            "owner" => filter.owners = strings(v, key)?,
            "hasEmail" => {
                filter.has_email = Some(
                    v.as_bool()
                        .ok_or_else(|| anyhow::anyhow!("--filter: `hasEmail` is true or false"))?,
                )
            }
            other => anyhow::bail!(
                "--filter: `{other}` is not supported here; use status, country, source, owner or hasEmail"
            ),
        }
    }
    Ok(filter)
}

pub(super) async fn crm(settings: &Settings, cmd: CrmCommand) -> anyhow::Result<()> {
    let store = app::open_store(settings).await?;
    let services = app::services(settings, store.clone())?;
    let result = run(settings, &services, cmd).await;
    store.close().await;
    result
}

async fn run(settings: &Settings, services: &Services, cmd: CrmCommand) -> anyhow::Result<()> {
    match cmd {
        CrmCommand::List { .. } => {
            let workspaces = services.workspaces.list().await?;
            for conn in services.crm.all_connections().await? {
                let slug = workspaces
                    .iter()
                    .find(|w| w.id == conn.workspace_id)
                    .map_or("?", |w| w.slug.as_str());
                let (links, _) = services.crm.stats(&operator(&conn), conn.id).await?;
                let n = |k: &str| links.get(k).copied().unwrap_or(0);
                println!(
                    "{}\t{slug}\t{}\t{}\tpush on change: {}\tpoll: {}\tsynced {} pending {} failed {}",
                    conn.id,
                    conn.kind,
                    conn.name,
                    if conn.push_on_change { "yes" } else { "no" },
                    conn.poll_interval_secs
                        .map_or("never".into(), |s| format!("every {s} s")),
                    n("synced"),
                    n("pending"),
                    n("failed"),
                );
            }
            Ok(())
        }
        CrmCommand::Sync {
            connection, filter, ..
        } => {
            let conn = find(services, &connection).await?;
            let selection = SyncSelection::Filter(
                filter
                    .as_deref()
                    .map(parse_filter)
                    .transpose()?
                    .unwrap_or_default(),
            );
            let marked = services
                .crm
                .sync_leads(&operator(&conn), conn.id, selection)
                .await?;
            eprintln!("{marked} leads marked for {} ({})", conn.name, conn.kind);
            let workers = start(settings, services).await?;
            follow(services, &conn, workers).await
        }
        CrmCommand::Replay { connection, .. } => {
            let conn = find(services, &connection).await?;
            let actor = operator(&conn);
            // the workers install the job kinds the dead-letter listing checks names against
            let workers = start(settings, services).await?;
            let dead = services
                .jobs
                .dead(
                    &actor,
                    Some(crate::service::CRM_PUSH.as_str()),
                    KeysetPage::first(100),
                )
                .await?;
            let ids: Vec<_> = dead
                .items
                .iter()
                .filter(|j| {
                    j.payload.get("connectionId").and_then(|v| v.as_str())
                        == Some(conn.id.to_string().as_str())
                })
                .map(|j| j.id)
                .collect();
            if ids.is_empty() {
                workers.shutdown().await;
                eprintln!("no dead pushes for {}", conn.name);
                return Ok(());
            }
            let n = services
                .jobs
                .replay(&actor, JobSelection { ids, kind: None })
                .await?;
            eprintln!("{n} dead pushes queued again for {}", conn.name);
            follow(services, &conn, workers).await
        }
    }
}

async fn start(settings: &Settings, services: &Services) -> anyhow::Result<crate::jobs::worker::Workers> {
    let registry = app::registry(settings, services)?;
    app::start_workers(settings, services, registry).await
}

/// Draws the pending links going down, while `workers` run here, until none is left or the
/// push is dead.
async fn follow(
    services: &Services,
    conn: &CrmConnection,
    workers: crate::jobs::worker::Workers,
) -> anyhow::Result<()> {
    let actor = operator(conn);
    let pending = |services: &Services| {
        let services = services.clone();
        let actor = actor.clone();
        let id = conn.id;
        async move {
            let (links, _) = services.crm.stats(&actor, id).await?;
            anyhow::Ok((
                links.get("pending").copied().unwrap_or(0),
                links.get("synced").copied().unwrap_or(0),
                links.get("failed").copied().unwrap_or(0),
            ))
        }
    };
    let (start, _, _) = pending(services).await?;
    let bar = super::progress::rows_bar();
    bar.set_length(start);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let outcome = loop {
        tick.tick().await;
        let (left, synced, failed) = pending(services).await?;
        bar.set_position(start.saturating_sub(left));
        if left == 0 {
            break Ok((synced, failed));
        }
        let dead = services
            .jobs
            .dead(
                &actor,
                Some(crate::service::CRM_PUSH.as_str()),
                KeysetPage::first(100),
            )
            .await?;
        if let Some(job) = dead.items.iter().find(|j| {
            j.payload.get("connectionId").and_then(|v| v.as_str()) == Some(conn.id.to_string().as_str())
        }) {
            let why = job.errors.last().map_or("", |e| e.error.as_str()).to_owned();
            break Err(anyhow::anyhow!(
                "the push is dead after {} attempts, {left} leads still pending: {why}\n\
                 fix the cause, then run `leadgate crm replay {}`",
                job.attempts,
                conn.id
            ));
        }
    };
    bar.finish_and_clear();
    workers.shutdown().await;
    let (synced, failed) = outcome?;
    println!(
        "{}: {synced} synced, {failed} failed (see Lead.crmLinks for why)",
        conn.name
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_raw_or_global() {
        let id = CrmConnectionId::new();
        assert_eq!(parse_id(&id.to_string()).unwrap(), id);
        use base64::Engine;
        let global = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("CrmIntegration:{id}"));
        assert_eq!(parse_id(&global).unwrap(), id);
        let lead = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("Lead:{id}"));
        assert!(parse_id(&lead).is_err());
    }

    #[test]
    fn filters_read_the_supported_keys_and_refuse_the_rest() {
        let f = parse_filter(r#"{"status": ["qualified"], "country": ["de"], "hasEmail": true}"#).unwrap();
        assert_eq!(f.statuses, vec![crate::domain::LeadStatus::Qualified]);
        assert_eq!(f.countries[0].as_str(), "DE");
        assert_eq!(f.has_email, Some(true));
        for bad in [
            "[]",
            "{\"status\": \"x\"}",
            "{\"status\": [\"LOST\"]}",
            "{\"search\": \"a\"}",
            "nope",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }
}
