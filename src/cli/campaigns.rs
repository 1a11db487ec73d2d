//! `leadgate campaigns list|run-due`: every workspace's campaigns with their funnel, and one
//! pass of the campaign scheduler in this process (claim every due step, run it, write its
//! outcome) for operators who run no workers or want the due steps out now. Steps are claimed
//! under a lease, so a server's workers running beside it never run one twice.

use super::flags::{CommonFlags, DataSettings, DatabaseFlags, MailFlags, SettingFlags};
use crate::app;
use crate::config::Settings;
use crate::domain::{KeysetPage, Role};
use crate::service::{Actor, Services};
use clap::Subcommand;
use serde::Serialize;

#[derive(Subcommand, Debug)]
pub enum CampaignsCommand {
    /// List every workspace's campaigns: id, workspace, state, name and funnel.
    List {
        #[command(flatten)]
        settings: DataSettings,
    },
    /// Run every due campaign step now, here, and print what was done.
    RunDue {
        /// Batches of 100 steps at most.
        #[arg(long, default_value_t = 10_000)]
        max_batches: u32,
        #[command(flatten)]
        settings: RunDueSettings,
    },
}

/// `run-due` sends mail: the database and the mail settings.
#[derive(clap::Args, Debug, Default, Serialize)]
pub struct RunDueSettings {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub database: DatabaseFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub mail: MailFlags,
}

impl SettingFlags for RunDueSettings {
    fn common(&self) -> &CommonFlags {
        &self.common
    }
}

pub(super) async fn campaigns(settings: &Settings, cmd: CampaignsCommand) -> anyhow::Result<()> {
    let store = app::open_store(settings).await?;
    let services = app::services(settings, store.clone())?;
    let result = run(&services, cmd).await;
    store.close().await;
    result
}

async fn run(services: &Services, cmd: CampaignsCommand) -> anyhow::Result<()> {
    match cmd {
        CampaignsCommand::List { .. } => {
            for ws in services.workspaces.list().await? {
                let actor = Actor {
                    subject: "cli".into(),
                    workspace_id: ws.id,
                    role: Role::Admin,
                    key: None,
                };
                let mut page = KeysetPage::first(100);
                loop {
                    let listed = services.campaigns.list(&actor, &[], &page).await?;
                    for c in &listed.items {
                        let s = services.campaigns.stats(&actor, c.id).await?;
                        println!(
                            "{}\t{}\t{}\t{}\tenrolled {} active {} sent {} delivered {} bounced {} replied {} \
                             unsubscribed {} unconfirmed {} completed {} exited {}",
                            c.id,
                            ws.slug,
                            c.state.as_str(),
                            c.name,
                            s.enrolled,
                            s.active,
                            s.sent,
                            s.delivered,
                            s.bounced,
                            s.replied,
                            s.unsubscribed,
                            s.unconfirmed,
                            s.completed,
                            s.exited
                        );
                    }
                    match (listed.has_more, listed.items.last()) {
                        (true, Some(last)) => page = KeysetPage::after(last.id, 100),
                        _ => break,
                    }
                }
            }
            Ok(())
        }
        CampaignsCommand::RunDue { max_batches, .. } => {
            println!("mail: {}", services.campaigns.describe_mail());
            let report = services.campaigns.run_due(max_batches).await?;
            println!(
                "ran {} due step(s) in {} batch(es); {} lead(s) stopped by a rule at the claim",
                report.claimed, report.batches, report.stopped
            );
            Ok(())
        }
    }
}
