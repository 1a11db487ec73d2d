//! Imports as use cases: reading imports and their error reports, importing an uploaded
//! file on the job queue (`leads.import`, run by `ImportLeadsHandler`), and importing a file
//! in this process for the command line (`run_local`). Both paths check the role, run the
//! same pipeline (tombstones, the `imports` record and its error report, checkpoints) and
//! publish its `import.progress`/`import.finished` events on the bus.
//!
//! An upload is stored in the database in 1 MiB chunks before the job is queued, so any worker
//! process can run it, and a job that is run again (at least once delivery) reads the same
//! bytes and continues from the import's checkpoint. The chunks are deleted when the import
//! finishes.

use super::{Actor, ServiceError};
use crate::bulk::import::pipeline::{self, ImportOutcome, ImportRequest, PipelineError};
use crate::domain::{
    Import, ImportErrorRow, ImportId, Job, JobKind, KeysetPage, NewJob, Paged, RetryPolicy, Scope, now,
};
use crate::events::Bus;
use crate::jobs::{Handler, JobContext, JobError, Queue};
use crate::store::{Store, StoreError};
use futures_util::Stream;
use futures_util::future::BoxFuture;
use std::io::Read;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The job kind that runs an uploaded import.
pub const IMPORT_LEADS: JobKind = JobKind::new("leads.import");
/// Size of the chunks an upload is stored in.
pub const UPLOAD_CHUNK: usize = 1 << 20;
/// Most error rows one page returns.
pub const MAX_ERROR_PAGE: u32 = 1_000;
/// Most imports one page returns.
pub const MAX_IMPORT_PAGE: u32 = 100;

#[derive(Clone)]
pub struct ImportService {
    store: Store,
    /// Told of the `import.progress` and `import.finished` events a job commits.
    bus: Bus,
    queue: Queue,
}

impl std::fmt::Debug for ImportService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportService").finish_non_exhaustive()
    }
}

impl ImportService {
    pub fn new(store: Store, bus: Bus, queue: Queue) -> Self {
        Self { store, bus, queue }
    }

    /// One import of the caller's workspace.
    pub async fn import(&self, actor: &Actor, id: ImportId) -> Result<Import, ServiceError> {
        actor.require_scope(Scope::ImportExport)?;
        self.store
            .import(actor.workspace_id, id)
            .await?
            .ok_or(ServiceError::NotFound("import"))
    }

    /// A page of the workspace's imports, newest first (at most `MAX_IMPORT_PAGE`).
    pub async fn imports(
        &self,
        actor: &Actor,
        page: KeysetPage<ImportId>,
    ) -> Result<Paged<Import>, ServiceError> {
        actor.require_scope(Scope::ImportExport)?;
        let page = page.capped(MAX_IMPORT_PAGE as usize);
        Ok(self.store.imports(actor.workspace_id, &page).await?)
    }

    /// A page of an import's error report in row order, keyed by `(row, seq)` (at most
    /// `MAX_ERROR_PAGE`).
    pub async fn errors(
        &self,
        actor: &Actor,
        id: ImportId,
        page: KeysetPage<(u64, u32)>,
    ) -> Result<Paged<ImportErrorRow>, ServiceError> {
        self.import(actor, id).await?;
        let page = page.capped(MAX_ERROR_PAGE as usize);
        Ok(self.store.import_errors(actor.workspace_id, id, &page).await?)
    }

    /// An import's error report as CSV (`row,column,reason`, in row order), read from the
    /// store a page at a time as the stream is consumed. `NOT_FOUND` for another workspace's.
    pub async fn error_report_csv(
        &self,
        actor: &Actor,
        id: ImportId,
    ) -> Result<impl Stream<Item = Result<Vec<u8>, ServiceError>> + Send + use<>, ServiceError> {
        self.import(actor, id).await?;
        let store = self.store.clone();
        let ws = actor.workspace_id;
        Ok(async_stream::try_stream! {
            yield csv_rows(std::iter::once(["row", "column", "reason"].map(str::to_owned)))?;
            let mut page = KeysetPage::first(MAX_ERROR_PAGE as usize);
            loop {
                let read = store.import_errors(ws, id, &page).await?;
                let Some(last) = read.items.last() else { break };
                page = KeysetPage::after((last.row, last.seq), MAX_ERROR_PAGE as usize);
                yield csv_rows(read.items.into_iter().map(|r| {
                    [r.row.to_string(), r.column.unwrap_or_default(), r.reason]
                }))?;
                if !read.has_more {
                    break;
                }
            }
        })
    }

    /// Stores an uploaded file and queues its import; returns the import (queued). Admins and
    /// members only. `request.workspace` is replaced by the caller's.
    pub async fn upload(
        &self,
        actor: &Actor,
        mut request: ImportRequest,
        mut file: impl AsyncRead + Unpin + Send,
    ) -> Result<Import, ServiceError> {
        actor.require_importer()?;
        request.workspace = actor.workspace_id;
        let mut import = Import::new(
            actor.workspace_id,
            request.format.as_str(),
            request.options_json(),
            &request.source_name,
            now(),
        );
        self.store.create_import(&import).await?;
        let mut seq = 0u32;
        let mut chunk = Vec::with_capacity(UPLOAD_CHUNK);
        loop {
            chunk.clear();
            let n = (&mut file)
                .take(UPLOAD_CHUNK as u64)
                .read_to_end(&mut chunk)
                .await
                .map_err(|e| ServiceError::Internal(StoreError::Database(Box::new(e))))?;
            if n == 0 {
                break;
            }
            self.store
                .save_import_upload(actor.workspace_id, import.id, seq, &chunk)
                .await?;
            seq += 1;
        }
        let job = NewJob {
            workspace_id: Some(actor.workspace_id),
            unique_key: Some(format!("{IMPORT_LEADS}:{}", import.id)),
            ..NewJob::new(
                IMPORT_LEADS,
                serde_json::json!({ "importId": import.id.as_uuid() }),
            )
        };
        let enqueued = self.queue.enqueue(job).await?;
        self.store
            .set_import_job(actor.workspace_id, import.id, enqueued.id)
            .await?;
        import.job_id = Some(enqueued.id);
        Ok(import)
    }

    /// Imports `input` in this process (the command line): continues the unfinished import
    /// this path started with the same workspace, format and options (unless `restart`, which
    /// abandons it), or starts one, and runs it to the end. `progress` is told of the import
    /// after every committed chunk. Admins and members only; `request.workspace` is replaced
    /// by the caller's.
    pub async fn run_local(
        &self,
        actor: &Actor,
        mut request: ImportRequest,
        input: Box<dyn Read + Send>,
        restart: bool,
        mut progress: impl FnMut(&Import) + Send,
    ) -> Result<ImportOutcome, LocalImportError> {
        actor.require_importer()?;
        request.workspace = actor.workspace_id;
        let import = pipeline::begin(&self.store, &request, restart)
            .await
            .map_err(ServiceError::from)?;
        let id = import.id;
        let bus = self.bus.clone();
        pipeline::run(&self.store, import, input, move |import, events| {
            bus.publish(events);
            progress(import);
        })
        .await
        .map_err(|error| LocalImportError::Stopped { id, error })
    }

    /// Runs (or continues) the import a `leads.import` job names.
    async fn run_job(&self, job: &Job, _ctx: &JobContext) -> Result<(), JobError> {
        let ws = job
            .workspace_id
            .ok_or_else(|| JobError::Permanent("the job names no workspace".into()))?;
        let id = job.payload["importId"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .map(ImportId::from_uuid)
            .ok_or_else(|| JobError::Permanent("the job names no import".into()))?;
        let transient = |e: StoreError| JobError::Transient(format!("store: {e}"));
        let Some(import) = self.store.import(ws, id).await.map_err(transient)? else {
            return Err(JobError::Permanent(format!("import {id} does not exist")));
        };
        if import.status.is_final() {
            return Ok(());
        }
        let input = UploadReader {
            store: self.store.clone(),
            import: import.clone(),
            next: 0,
            buffer: Vec::new(),
            at: 0,
            runtime: tokio::runtime::Handle::current(),
        };
        let bus = self.bus.clone();
        match pipeline::run(&self.store, import, Box::new(input), move |_, events| {
            bus.publish(events)
        })
        .await
        {
            Ok(_) => Ok(()),
            // the import is marked failed with its reason; running it again cannot help
            Err(e) if e.is_permanent() => Ok(()),
            Err(e) => Err(JobError::Transient(e.to_string())),
        }
    }
}

/// Why `ImportService::run_local` did not finish.
#[derive(Debug, thiserror::Error)]
pub enum LocalImportError {
    /// Refused or failed before the import started.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The import started and stopped: an input error or a changed input failed it for good;
    /// a store failure leaves it resumable from its last checkpoint.
    #[error("import {id} stopped: {error}")]
    Stopped { id: ImportId, error: PipelineError },
}

/// CSV lines of `records`.
fn csv_rows(records: impl Iterator<Item = [String; 3]>) -> Result<Vec<u8>, ServiceError> {
    let internal = |e: csv::Error| ServiceError::Internal(StoreError::Database(Box::new(e)));
    let mut w = csv::Writer::from_writer(Vec::new());
    for record in records {
        w.write_record(&record).map_err(internal)?;
    }
    w.into_inner().map_err(|e| internal(e.into_error().into()))
}

/// An uploaded file read back from the store chunk by chunk, on the parser's blocking thread.
struct UploadReader {
    store: Store,
    import: Import,
    next: u32,
    buffer: Vec<u8>,
    at: usize,
    runtime: tokio::runtime::Handle,
}

impl Read for UploadReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buffer.len() {
            let chunk = self
                .runtime
                .block_on(
                    self.store
                        .import_upload(self.import.workspace_id, self.import.id, self.next),
                )
                .map_err(std::io::Error::other)?;
            match chunk {
                Some(data) => {
                    self.buffer = data;
                    self.at = 0;
                    self.next += 1;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.buffer.len() - self.at);
        buf[..n].copy_from_slice(&self.buffer[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Runs `leads.import` jobs.
pub struct ImportLeadsHandler(pub ImportService);

impl Handler for ImportLeadsHandler {
    fn kind(&self) -> JobKind {
        IMPORT_LEADS
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            ..RetryPolicy::default()
        }
    }

    fn run<'a>(&'a self, job: &'a Job, ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(self.0.run_job(job, ctx))
    }
}
