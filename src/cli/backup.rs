//! `leadgate backup` (a consistent, checksummed copy of the whole database) and
//! `leadgate restore` (its verified rebuild into an empty database), with progress and a
//! summary line.

use super::flags::DataSettings;
use crate::app;
use crate::config::Settings;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// The file to write; it appears only once complete.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub settings: DataSettings,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// A file written by `leadgate backup`.
    pub file: PathBuf,
    #[command(flatten)]
    pub settings: DataSettings,
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

pub(super) async fn backup(settings: &Settings, args: BackupArgs) -> anyhow::Result<()> {
    let store = app::open_store(settings).await?;
    let bar = super::progress::rows_bar();
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

pub(super) async fn restore(settings: &Settings, args: RestoreArgs) -> anyhow::Result<()> {
    // Refuse a file that is not a backup before touching the database.
    crate::ops::backup::manifest(&args.file)
        .with_context(|| format!("cannot restore {}", args.file.display()))?;
    let store = app::open_store(settings).await?;
    let bar = super::progress::rows_bar();
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
