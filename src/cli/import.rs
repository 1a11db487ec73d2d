//! `leadgate import`: a CSV or NDJSON file (or stdin) into a workspace through
//! `ImportService::run_local` (the checks, records and events of `importLeads`), resuming an
//! interrupted import of the same input, with a progress bar, a summary and an error report.

use super::flags::DataSettings;
use crate::app;
use crate::bulk::import::{Format, OnDuplicate, pipeline};
use crate::config::Settings;
use crate::domain::{CountryCode, ImportId, KeysetPage};
use crate::service::{Actor, MAX_ERROR_PAGE, Services};
use anyhow::{Context, bail};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file to import; `-` reads standard input.
    pub file: PathBuf,
    /// Workspace slug; may be left out when there is exactly one workspace.
    #[arg(long, env = "LEADGATE_IMPORT_WORKSPACE")]
    pub workspace: Option<String>,
    /// File format; by default from the file name's extension (stdin: csv).
    #[arg(long, value_parser = parse_format)]
    pub format: Option<Format>,
    /// Report what would happen (counts and error report) without writing any lead.
    #[arg(long)]
    pub dry_run: bool,
    /// What to do with a row whose email already belongs to a lead.
    #[arg(long, default_value = "skip", value_parser = parse_on_duplicate)]
    pub on_duplicate: OnDuplicate,
    /// Map a column to a lead field (`email`, `first_name`, `company_name`, …); repeatable.
    #[arg(long = "map", value_name = "COLUMN=FIELD", value_parser = parse_mapping)]
    pub map: Vec<(String, String)>,
    /// Country for phone numbers written without a country code, in rows without a country of
    /// their own (ISO 3166 alpha-2).
    #[arg(long, value_name = "CC", value_parser = parse_region)]
    pub default_region: Option<CountryCode>,
    /// Where to write the error report (CSV: row,column,reason); by default next to FILE as
    /// `FILE.errors.csv` (for stdin: `import-<id>.errors.csv`), only when there are errors.
    #[arg(long, value_name = "OUT.csv")]
    pub errors: Option<PathBuf>,
    /// Start over instead of resuming an interrupted import of the same file.
    #[arg(long)]
    pub restart: bool,
    #[command(flatten)]
    pub settings: DataSettings,
}

fn parse_format(raw: &str) -> Result<Format, String> {
    Format::parse(raw).ok_or_else(|| format!("'{raw}' is not a format; use csv or ndjson"))
}

fn parse_on_duplicate(raw: &str) -> Result<OnDuplicate, String> {
    OnDuplicate::parse(&raw.replace('-', "_"))
        .ok_or_else(|| format!("'{raw}' is not a policy; use skip, update-empty-fields or overwrite"))
}

fn parse_mapping(raw: &str) -> Result<(String, String), String> {
    match raw.rsplit_once('=') {
        Some((column, field)) if !column.is_empty() && !field.trim().is_empty() => {
            Ok((column.to_owned(), field.trim().to_owned()))
        }
        _ => Err(format!("'{raw}' is not COLUMN=FIELD")),
    }
}

fn parse_region(raw: &str) -> Result<CountryCode, String> {
    CountryCode::parse("defaultRegion", raw).map_err(|e| e.message)
}

pub(super) async fn import(settings: &Settings, args: ImportArgs) -> anyhow::Result<()> {
    let store = app::open_store(settings).await?;
    let services = app::services(settings, store.clone())?;
    let result = run(&services, &args).await;
    store.close().await;
    result
}

/// Resolves the workspace and the input, runs the import through `ImportService` (as an
/// operator of the workspace) and reports it.
async fn run(services: &Services, args: &ImportArgs) -> anyhow::Result<()> {
    let ws = match &args.workspace {
        Some(slug) => super::workspace_by_slug(services, slug).await?,
        None => {
            let mut all = services.workspaces.list().await?;
            if all.len() != 1 {
                bail!("there are {} workspaces; name one with --workspace", all.len());
            }
            all.remove(0)
        }
    };
    let actor = super::operator(&ws);
    let stdin = args.file.as_os_str() == "-";
    let format = match args.format {
        Some(f) => f,
        None if stdin => Format::Csv,
        None => Format::from_path(&args.file).ok_or_else(|| {
            anyhow::anyhow!(
                "cannot tell the format of {} from its name; pass --format csv|ndjson",
                args.file.display()
            )
        })?,
    };
    let (input, size): (Box<dyn std::io::Read + Send>, Option<u64>) = if stdin {
        (Box::new(std::io::stdin()), None)
    } else {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(std::io::BufReader::with_capacity(1 << 20, file)), size)
    };
    let source_name = if stdin {
        "-".to_owned()
    } else {
        args.file
            .file_name()
            .map_or_else(|| "-".to_owned(), |n| n.to_string_lossy().into_owned())
    };
    let request = pipeline::ImportRequest {
        workspace: ws.id,
        format,
        on_duplicate: args.on_duplicate,
        dry_run: args.dry_run,
        mapping: args.map.clone(),
        default_region: args.default_region.clone(),
        source_name,
    };
    let bar = super::progress::bytes_bar(size);
    let started = Instant::now();
    let outcome = services
        .imports
        .run_local(&actor, request, input, args.restart, |import| {
            bar.set_position(import.checkpoint.byte_offset);
        })
        .await;
    bar.finish_and_clear();
    let outcome = outcome?;
    let secs = started.elapsed().as_secs_f64();
    let import = &outcome.import;
    let c = import.counts;
    let rows = c.total();
    let mut out = std::io::stderr().lock();
    writeln!(
        out,
        "import {} {}: {rows} rows in {secs:.2} s ({:.0} rows/s){}",
        import.id,
        import.status.as_str(),
        rows as f64 / secs.max(1e-9),
        if args.dry_run {
            " (dry run: no lead was written)"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "  created {}, updated {}, unchanged {}, skipped (existing) {}, duplicates in file {}, invalid {}, blocked {}",
        c.created, c.updated, c.unchanged, c.skipped_existing, c.duplicates_in_file, c.invalid, c.blocked
    )?;
    if let Some(row) = outcome.resumed_from {
        writeln!(out, "  resumed after row {row}")?;
    }
    if !outcome.columns.ignored.is_empty() {
        writeln!(out, "  ignored columns: {}", outcome.columns.ignored.join(", "))?;
    }
    let report = args.errors.clone().unwrap_or_else(|| {
        if stdin {
            PathBuf::from(format!("import-{}.errors.csv", import.id))
        } else {
            let mut name = args.file.clone().into_os_string();
            name.push(".errors.csv");
            PathBuf::from(name)
        }
    });
    let written = write_error_report(services, &actor, import.id, &report, args.errors.is_some()).await?;
    if written > 0 || args.errors.is_some() {
        writeln!(out, "  error report: {} ({written} rows)", report.display())?;
    }
    Ok(())
}

/// Writes an import's error report as CSV (`row,column,reason`, the columns of the GraphQL
/// download), read through `ImportService`; with `always` false, only when there is something
/// in it. Returns the rows written.
async fn write_error_report(
    services: &Services,
    actor: &Actor,
    id: ImportId,
    path: &Path,
    always: bool,
) -> anyhow::Result<u64> {
    let imports = &services.imports;
    let size = MAX_ERROR_PAGE as usize;
    let mut read = imports.errors(actor, id, KeysetPage::first(size)).await?;
    if read.items.is_empty() && !always {
        return Ok(0);
    }
    let file = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut csv = csv::Writer::from_writer(std::io::BufWriter::new(file));
    csv.write_record(["row", "column", "reason"])?;
    let mut written = 0;
    loop {
        for e in &read.items {
            csv.write_record([
                e.row.to_string().as_str(),
                e.column.as_deref().unwrap_or(""),
                e.reason.as_str(),
            ])?;
            written += 1;
        }
        match read.items.last() {
            Some(last) if read.has_more => {
                let after = KeysetPage::after((last.row, last.seq), size);
                read = imports.errors(actor, id, after).await?;
            }
            _ => break,
        }
    }
    csv.flush()?;
    Ok(written)
}
