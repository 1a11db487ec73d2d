//! `leadgate export`: a workspace's leads (all, or a filter's) as CSV or NDJSON to a file or
//! stdout, through `ExportService` as the HTTP endpoint, with a progress bar and a summary.

use super::flags::{CommonFlags, DatabaseFlags, ExportFlags, SettingFlags};
use crate::app;
use crate::config::Settings;
use anyhow::Context;
use clap::Args;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

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
    #[command(flatten)]
    pub settings: ExportSettings,
}

/// The settings `export` reads from its flags: the database and the batch size.
#[derive(Args, Debug, Default, Serialize)]
pub struct ExportSettings {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub database: DatabaseFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub exports: ExportFlags,
}

impl SettingFlags for ExportSettings {
    fn common(&self) -> &CommonFlags {
        &self.common
    }
}

fn parse_export_format(raw: &str) -> Result<crate::service::Format, String> {
    crate::service::Format::parse(raw).ok_or_else(|| format!("'{raw}' is not a format; use csv or ndjson"))
}

pub(super) async fn export(settings: &Settings, args: ExportArgs) -> anyhow::Result<()> {
    use crate::service::Extras;
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
    let ws = super::workspace_by_slug(&services, &args.workspace).await?;
    let actor = super::operator(&ws);
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
