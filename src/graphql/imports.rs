//! Imports over GraphQL: `importLeads` (a file sent as a multipart upload, imported by a
//! `leads.import` job), `imports`, and the `Import` node with its counters and error report.
//!
//! **`importLeads`** validates the input (format from the file name, mapping targets, region)
//! before calling `ImportService::upload`, which checks the role first, stores the file in the
//! database in 1 MiB chunks and queues `leads.import`; the resolver never writes anything for a
//! refused request.
//!
//! **`Import` is a Relay node** (`NodeType::Import`, resolved in `node`/`nodes` through the
//! service, so another workspace's id resolves to null).
//!
//! **`importProgress`** reads the workspace's log head, then the import, then streams events after
//! that head, so no `import.progress`/`import.finished` event between the snapshot and the stream
//! is lost. Each matching event triggers a re-read of the import (the events carry only counters),
//! and the stream ends after a final status. Invariant: a refused upload request (malformed, too
//! large, wrong role, bad input) creates no import and queues no job.

use super::connection::{PageInfo, PageSize, keyset_connection, keyset_page};
use super::errors::{bad_input, to_gql};
use super::ids::{NodeType, decode_typed_id, global_id};
use super::query::actor;
use crate::domain::{self, CountryCode, ImportId};
use crate::service::ImportRequest;
use crate::service::{ImportField as Field, ImportFormat as Format, OnDuplicate};
use crate::service::{MAX_ERROR_PAGE, MAX_IMPORT_PAGE, Services};
use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject, Upload};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use std::path::Path;

const IMPORT_PAGE: PageSize = PageSize {
    default: 20,
    max: MAX_IMPORT_PAGE as usize,
};
const ERROR_PAGE: PageSize = PageSize {
    default: 100,
    max: MAX_ERROR_PAGE as usize,
};

pub fn import_global_id(id: ImportId) -> ID {
    global_id(NodeType::Import, id.as_uuid())
}

/// The file formats an import reads.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "ImportFormat")]
pub enum ImportFormat {
    Csv,
    /// One JSON object per line (`.ndjson`, `.jsonl`).
    Ndjson,
}

impl From<ImportFormat> for Format {
    fn from(f: ImportFormat) -> Self {
        match f {
            ImportFormat::Csv => Format::Csv,
            ImportFormat::Ndjson => Format::Ndjson,
        }
    }
}

/// What an import does with a row whose email already belongs to a lead.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, Default)]
pub enum ImportOnDuplicate {
    /// Leave the existing lead as it is.
    #[default]
    Skip,
    /// Fill only the fields the existing lead lacks.
    UpdateEmptyFields,
    /// The file's non-empty values replace the lead's; empty cells never clear a field.
    Overwrite,
}

impl From<ImportOnDuplicate> for OnDuplicate {
    fn from(d: ImportOnDuplicate) -> Self {
        match d {
            ImportOnDuplicate::Skip => OnDuplicate::Skip,
            ImportOnDuplicate::UpdateEmptyFields => OnDuplicate::UpdateEmptyFields,
            ImportOnDuplicate::Overwrite => OnDuplicate::Overwrite,
        }
    }
}

/// Where an import stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ImportStatus {
    /// Waiting for a worker.
    Queued,
    Running,
    Succeeded,
    /// Stopped by an error retrying cannot fix; see `error`.
    Failed,
    /// Stopped before the end; it resumes from its checkpoint.
    Interrupted,
}

impl From<domain::ImportStatus> for ImportStatus {
    fn from(s: domain::ImportStatus) -> Self {
        match s {
            domain::ImportStatus::Queued => ImportStatus::Queued,
            domain::ImportStatus::Running => ImportStatus::Running,
            domain::ImportStatus::Succeeded => ImportStatus::Succeeded,
            domain::ImportStatus::Failed => ImportStatus::Failed,
            domain::ImportStatus::Interrupted => ImportStatus::Interrupted,
        }
    }
}

/// A source column read into a lead field.
#[derive(InputObject)]
pub struct ColumnMappingInput {
    /// The header (CSV) or key (NDJSON) as written in the file.
    pub column: String,
    /// A field name (`email`, `firstName`, `first_name`, …) or `custom.<key>`.
    pub field: String,
}

#[derive(InputObject, Default)]
pub struct ImportLeadsInput {
    /// Defaults to the one the file name implies (`.csv`, `.ndjson`, `.jsonl`).
    pub format: Option<ImportFormat>,
    #[graphql(default_with = "ImportOnDuplicate::Skip")]
    pub on_duplicate: ImportOnDuplicate,
    /// Run everything but write only the import and its error report.
    #[graphql(default)]
    pub dry_run: bool,
    /// Explicit column mappings; recognised headers map themselves.
    #[graphql(default)]
    pub mapping: Vec<ColumnMappingInput>,
    /// ISO 3166-1 alpha-2 region for phone numbers written without a country code, in rows
    /// whose own country cell is empty or unrecognised.
    pub default_region: Option<String>,
}

impl ImportLeadsInput {
    /// The pipeline request for a file named `file_name`.
    fn into_request(self, ctx: &Context<'_>, file_name: &str) -> async_graphql::Result<ImportRequest> {
        let format = match self.format {
            Some(f) => f.into(),
            None => Format::from_path(Path::new(file_name))
                .ok_or_else(|| bad_input("cannot tell the format from the file name; set `input.format`"))?,
        };
        for m in &self.mapping {
            if Field::from_target(&m.field).is_none() {
                return Err(bad_input(format!(
                    "`mapping`: '{}' is not a lead field",
                    m.field.chars().take(64).collect::<String>()
                )));
            }
        }
        let default_region = self
            .default_region
            .map(|r| CountryCode::parse("defaultRegion", &r))
            .transpose()
            .map_err(|e| bad_input(e.to_string()))?;
        Ok(ImportRequest {
            workspace: actor(ctx)?.workspace_id,
            format,
            on_duplicate: self.on_duplicate.into(),
            dry_run: self.dry_run,
            mapping: self.mapping.into_iter().map(|m| (m.column, m.field)).collect(),
            default_region,
            source_name: source_name(file_name),
        })
    }
}

/// The last path segment of a client's file name, for display.
fn source_name(file_name: &str) -> String {
    let name = file_name.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    if name.is_empty() {
        "upload".to_owned()
    } else {
        name.chars().take(255).collect()
    }
}

/// What happened to the data rows so far; every row counts exactly once.
#[derive(SimpleObject)]
pub struct ImportCounts {
    /// New leads (in a dry run: leads that would be created).
    pub created: u64,
    /// Existing leads the file changed.
    pub updated: u64,
    /// Existing leads the file's values left as they were.
    pub unchanged: u64,
    /// Rows whose email already belonged to a lead, left alone under `SKIP`.
    pub skipped_existing: u64,
    /// Rows whose email an earlier row of the file already had.
    pub duplicates_in_file: u64,
    /// Rows refused by validation; they are in the error report.
    pub invalid: u64,
    /// Rows whose email was erased on request.
    pub blocked: u64,
}

/// One line of an import's error report.
#[derive(SimpleObject)]
pub struct ImportError {
    /// 1-based data row (the CSV header is not counted).
    pub row: u64,
    /// The column to blame, when one is.
    pub column: Option<String>,
    pub reason: String,
}

#[derive(SimpleObject)]
pub struct ImportErrorEdge {
    pub cursor: String,
    pub node: ImportError,
}

/// An import's error report in row order.
#[derive(SimpleObject)]
pub struct ImportErrorConnection {
    pub edges: Vec<ImportErrorEdge>,
    pub page_info: PageInfo,
}

/// One import of a file into the workspace.
#[derive(Clone)]
pub struct Import(Box<domain::Import>);

impl Import {
    fn new(import: domain::Import) -> Self {
        Self(Box::new(import))
    }
}

#[Object]
impl Import {
    pub async fn id(&self) -> ID {
        import_global_id(self.0.id)
    }
    async fn status(&self) -> ImportStatus {
        self.0.status.into()
    }
    async fn format(&self) -> Option<ImportFormat> {
        match Format::parse(&self.0.format)? {
            Format::Csv => Some(ImportFormat::Csv),
            Format::Ndjson => Some(ImportFormat::Ndjson),
        }
    }
    async fn on_duplicate(&self) -> Option<ImportOnDuplicate> {
        match OnDuplicate::parse(self.0.options["onDuplicate"].as_str()?)? {
            OnDuplicate::Skip => Some(ImportOnDuplicate::Skip),
            OnDuplicate::UpdateEmptyFields => Some(ImportOnDuplicate::UpdateEmptyFields),
            OnDuplicate::Overwrite => Some(ImportOnDuplicate::Overwrite),
        }
    }
    async fn dry_run(&self) -> bool {
        self.0.dry_run()
    }
    /// The file name the client sent.
    async fn source_name(&self) -> &str {
        &self.0.source_name
    }
    /// Data rows processed and committed.
    async fn rows_done(&self) -> u64 {
        self.0.checkpoint.rows_done
    }
    async fn counts(&self) -> ImportCounts {
        let c = self.0.counts;
        ImportCounts {
            created: c.created,
            updated: c.updated,
            unchanged: c.unchanged,
            skipped_existing: c.skipped_existing,
            duplicates_in_file: c.duplicates_in_file,
            invalid: c.invalid,
            blocked: c.blocked,
        }
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at
    }
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
    /// Where the error report can be downloaded as CSV (`row,column,reason`): a path on this
    /// server, fetched with the same bearer token.
    async fn error_report_url(&self) -> String {
        error_report_path(self.0.id)
    }
    /// Why the import failed.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    /// The error report, in row order.
    async fn errors(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "At most 1000; 100 when neither `first` nor `last` is given.")] first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "At most 1000.")] last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<ImportErrorConnection> {
        let page = keyset_page(first, after, last, before, ERROR_PAGE)?;
        let actor = actor(ctx)?.clone();
        let id = self.0.id;
        let (edges, page_info) = keyset_connection(
            ctx,
            page,
            move |services, page| {
                let actor = actor.clone();
                async move { services.imports.errors(&actor, id, page).await }
            },
            |r| (r.row, r.seq),
            |cursor, r| ImportErrorEdge {
                cursor,
                node: ImportError {
                    row: r.row,
                    column: r.column,
                    reason: r.reason,
                },
            },
        )
        .await?;
        Ok(ImportErrorConnection { edges, page_info })
    }
}

#[derive(SimpleObject)]
pub struct ImportEdge {
    pub cursor: String,
    pub node: Import,
}

/// Imports, newest first.
#[derive(SimpleObject)]
pub struct ImportConnection {
    pub edges: Vec<ImportEdge>,
    pub page_info: PageInfo,
}

#[derive(Default)]
pub struct ImportQuery;

#[Object]
impl ImportQuery {
    /// The workspace's imports, newest first.
    async fn imports(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "At most 100; 20 when neither `first` nor `last` is given.")] first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "At most 100.")] last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<ImportConnection> {
        let page = keyset_page(first, after, last, before, IMPORT_PAGE)?;
        let actor = actor(ctx)?.clone();
        let (edges, page_info) = keyset_connection(
            ctx,
            page,
            move |services, page| {
                let actor = actor.clone();
                async move { services.imports.imports(&actor, page).await }
            },
            |i| i.id,
            |cursor, i| ImportEdge {
                cursor,
                node: Import::new(i),
            },
        )
        .await?;
        Ok(ImportConnection { edges, page_info })
    }
}

/// The import `importLeads` queued.
#[derive(SimpleObject)]
pub struct ImportLeadsPayload {
    pub import: Import,
}

#[derive(Default)]
pub struct ImportMutation;

#[Object]
impl ImportMutation {
    /// Imports leads from an uploaded CSV or NDJSON file (a `multipart/form-data` request, see
    /// the GraphQL multipart request spec). The file is stored and imported by a background
    /// job: follow it with `importProgress`, or `node(id:)`. Admins and members only.
    async fn import_leads(
        &self,
        ctx: &Context<'_>,
        file: Upload,
        input: Option<ImportLeadsInput>,
    ) -> async_graphql::Result<ImportLeadsPayload> {
        let actor = actor(ctx)?;
        actor.require_importer().map_err(to_gql)?;
        let upload = file
            .value(ctx)
            .map_err(|_| bad_input("`file` is not a file part of this request"))?;
        let request = input.unwrap_or_default().into_request(ctx, &upload.filename)?;
        let content = tokio::fs::File::from_std(upload.content);
        let services = ctx.data::<Services>()?;
        let import = services
            .imports
            .upload(actor, request, content)
            .await
            .map_err(to_gql)?;
        Ok(ImportLeadsPayload {
            import: Import::new(import),
        })
    }
}

/// The path of an import's CSV error report.
pub fn error_report_path(id: ImportId) -> String {
    format!("/imports/{}/errors.csv", import_global_id(id).0)
}

/// The import a global id names, for the HTTP error report.
pub fn parse_import_id(id: &str) -> Option<ImportId> {
    decode_typed_id(id, NodeType::Import)
        .ok()
        .map(ImportId::from_uuid)
}

/// An import of the caller's workspace, for `node(id:)`.
pub async fn import_node(ctx: &Context<'_>, id: ImportId) -> async_graphql::Result<Option<Import>> {
    let services = ctx.data::<Services>()?;
    match services.imports.import(actor(ctx)?, id).await {
        Ok(i) => Ok(Some(Import::new(i))),
        Err(crate::service::ServiceError::NotFound(_)) => Ok(None),
        Err(e) => Err(to_gql(e)),
    }
}

/// `importProgress`: the import as it is now, then again after each `import.progress` and
/// `import.finished` event of it, ending after it finished. The event stream starts at the log's
/// head read before the first snapshot, so no event between the two is missed.
pub async fn import_progress(
    ctx: &Context<'_>,
    id: &ID,
) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Import>> + use<>> {
    let id = decode_typed_id(id, NodeType::Import).map(ImportId::from_uuid)?;
    let actor = actor(ctx)?.clone();
    let services = ctx.data::<Services>()?.clone();
    let head = services.events.head(&actor).await.map_err(to_gql)?;
    let first = services.imports.import(&actor, id).await.map_err(to_gql)?;
    let mut events = Box::pin(services.events.stream(&actor, Some(head)).await.map_err(to_gql)?);
    Ok(async_stream::stream! {
        let mut done = first.status.is_final();
        yield Ok(Import::new(first));
        while !done {
            let Some(item) = events.next().await else { break };
            match item {
                Ok(event)
                    if event.subject_id == Some(id.as_uuid())
                        && (event.kind == domain::IMPORT_PROGRESS
                            || event.kind == domain::IMPORT_FINISHED) =>
                {
                    match services.imports.import(&actor, id).await {
                        Ok(now) => {
                            done = now.status.is_final() || event.kind == domain::IMPORT_FINISHED;
                            yield Ok(Import::new(now));
                        }
                        Err(e) => {
                            yield Err(to_gql(e));
                            break;
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    yield Err(to_gql(e));
                    break;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_name_keeps_the_last_segment() {
        assert_eq!(source_name("C:\\data\\leads.csv"), "leads.csv");
        assert_eq!(source_name("a/b/leads.ndjson"), "leads.ndjson");
        assert_eq!(source_name(" "), "upload");
    }
}
