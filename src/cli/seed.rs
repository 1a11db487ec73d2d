//! `leadgate seed`: synthetic leads into a workspace, with a progress bar and a summary line.

use super::flags::DataSettings;
use crate::app;
use crate::config::Settings;
use clap::Args;
use std::time::Instant;

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
    #[command(flatten)]
    pub settings: DataSettings,
}

pub(super) async fn seed(settings: &Settings, args: SeedArgs) -> anyhow::Result<()> {
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
