//! The import pipeline: parsed rows in, leads, error report and checkpoints out.
//!
//! Parsing is CPU work, so `Rows` runs on a blocking thread and hands chunks of rows to the
//! async store side through a bounded channel (the parser stays at most two chunks ahead, so
//! memory does not grow with the file). The parser side also dedupes emails within the file
//! (first occurrence wins) with a set of 128-bit hashes: ~32 bytes per distinct email. The
//! store side checks tombstones, looks up the chunk's emails in one statement, applies the
//! duplicate policy and commits the chunk, its error rows and the checkpoint in one
//! transaction (`Store::commit_import_chunk`), which is what lets a killed import resume
//! without duplicates. No per-lead events are written, only `import.progress` per chunk and
//! `import.finished`.
//!
//! **Resuming an import** re-reads the input from the start: the rows already committed are parsed
//! again only to rebuild the within-file dedupe set (nothing is written), and the bytes up to the
//! checkpoint must hash to the stored SHA-256 — so stdin works too, and a changed file is refused
//! rather than half-merged. The CLI resumes only imports it started (no job id), matched by
//! workspace, format and options (stored as JSON text and compared as text).
//!
//! **A chunk that loses a race** (a concurrent `createLead` took a new email → `Conflict`, or a
//! lead changed between look-up and commit → `VersionMismatch`) is rolled back whole and retried
//! with a fresh look-up, up to 5 times.
//!
//! **Bulk paths**: new leads go through the same `append_leads` as `seed` (COPY on PostgreSQL,
//! multi-row INSERTs on SQLite) inside the chunk's transaction; updates (only under
//! `UPDATE_EMPTY_FIELDS`/`OVERWRITE`) are compare-and-set updates staged in a temporary table
//! and applied by one `UPDATE … FROM` (`update_many`). On PostgreSQL the import refreshes the
//! planner statistics of `leads` as the table grows (`Statistics`).
//!
//! **Dry run** runs the same pipeline and commits the same import row, counters, error report and
//! progress events, with empty lead lists.

use super::{ColumnMapping, Format, ImportError, OnDuplicate, ParseOptions, ParsedRow, RowData, Rows};
use crate::domain::{
    CountryCode, EmailAddress, EmailHash, Event, Import, ImportCheckpoint, ImportErrorRow, ImportStatus,
    Lead, LeadPatch, Patch, WorkspaceId, now,
};
use crate::store::{ImportChunk, Store, StoreError};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read;
use std::sync::{Arc, Mutex};

/// Data rows per committed chunk: one look-up statement and one transaction each.
pub const CHUNK_ROWS: usize = 8_192;
/// Attempts at a chunk that lost a race (a concurrent `createLead` took an email, or a lead
/// changed between look-up and commit) before the import gives up.
const CHUNK_ATTEMPTS: usize = 5;
/// The reason of a row whose email was erased on request.
pub const ERASED_REASON: &str = "erased on request";
/// The reason of a row that has nothing to identify a lead by.
pub const NOTHING_TO_IDENTIFY: &str = "the row has no email, name or company";

/// What to import and how; the parts that must match for a later run to resume.
#[derive(Clone, Debug)]
pub struct ImportRequest {
    pub workspace: WorkspaceId,
    pub format: Format,
    pub on_duplicate: OnDuplicate,
    /// Run everything, write nothing but the import record and its error report.
    pub dry_run: bool,
    /// Explicit `(source column, target field)` pairs; recognised headers do the rest.
    pub mapping: Vec<(String, String)>,
    /// For phone numbers written without a country code.
    pub default_region: Option<CountryCode>,
    /// The file name (no directories), or `-` for stdin.
    pub source_name: String,
}

impl ImportRequest {
    /// The options as stored on the import (and compared when looking for one to resume).
    pub fn options_json(&self) -> Value {
        json!({
            "onDuplicate": self.on_duplicate.as_str(),
            "dryRun": self.dry_run,
            "mapping": self.mapping.iter().map(|(c, f)| json!({"column": c, "field": f})).collect::<Vec<_>>(),
            "defaultRegion": self.default_region.as_ref().map(|c| c.as_str()),
        })
    }

    /// The request an import was created from, for a worker that runs it.
    pub fn of_import(import: &Import) -> Result<Self, PipelineError> {
        let bad = || PipelineError::Internal(format!("import {} has unreadable options", import.id));
        let o = &import.options;
        let format = Format::parse(&import.format).ok_or_else(bad)?;
        let on_duplicate = OnDuplicate::parse(o["onDuplicate"].as_str().ok_or_else(bad)?).ok_or_else(bad)?;
        let mapping = o["mapping"]
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|m| Some((m["column"].as_str()?.to_owned(), m["field"].as_str()?.to_owned())))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        let default_region = match o["defaultRegion"].as_str() {
            Some(cc) => Some(CountryCode::parse("defaultRegion", cc).map_err(|_| bad())?),
            None => None,
        };
        Ok(Self {
            workspace: import.workspace_id,
            format,
            on_duplicate,
            dry_run: import.dry_run(),
            mapping,
            default_region,
            source_name: import.source_name.clone(),
        })
    }

    fn parse_options(&self) -> ParseOptions {
        ParseOptions {
            format: self.format,
            mapping: self.mapping.clone(),
            default_region: self.default_region.clone(),
        }
    }
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The input cannot be imported (unusable header, bad mapping, unreadable bytes); the
    /// message is for the user.
    #[error("{0}")]
    Input(#[from] ImportError),
    /// A resumed run read a file that differs from the one the import started with.
    #[error(
        "the input differs from the one this import started with (its first {0} bytes changed); \
         start a new import"
    )]
    InputChanged(u64),
    /// The store failed; the import stays resumable from its last checkpoint.
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl PipelineError {
    /// Whether running the import again cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, PipelineError::Input(_) | PipelineError::InputChanged(_))
    }
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct ImportOutcome {
    /// The import as stored at the end (status, counters, checkpoint).
    pub import: Import,
    /// Which columns filled which field, and which were ignored.
    pub columns: ColumnMapping,
    /// The data row a resumed run continued after (`None` for a fresh start).
    pub resumed_from: Option<u64>,
}

/// The unfinished CLI import of the same workspace, format and options that a new run of the
/// same file continues, or a new one. With `restart`, an unfinished one is marked failed and a
/// new one starts.
pub async fn begin(store: &Store, request: &ImportRequest, restart: bool) -> Result<Import, StoreError> {
    let options = request.options_json();
    let format = request.format.as_str();
    if let Some(mut previous) = store
        .resumable_import(request.workspace, format, &options)
        .await?
    {
        if !restart {
            return Ok(previous);
        }
        let at = now();
        previous.status = ImportStatus::Failed;
        previous.error = Some("abandoned by a restart".into());
        previous.updated_at = at;
        previous.finished_at = Some(at);
        store.finish_import(&previous).await?;
    }
    let import = Import::new(request.workspace, format, options, &request.source_name, now());
    store.create_import(&import).await?;
    Ok(import)
}

/// Runs (or continues, from its checkpoint) `import` over `input`, which must be the same
/// bytes it started with. `committed` is called after every chunk and at the end with the
/// import as stored and the events that were appended (to publish them). An input error or a
/// changed input fails the import for good; a store error leaves it resumable.
pub async fn run(
    store: &Store,
    mut import: Import,
    input: Box<dyn Read + Send>,
    mut committed: impl FnMut(&Import, Vec<Event>) + Send,
) -> Result<ImportOutcome, PipelineError> {
    let request = ImportRequest::of_import(&import)?;
    let resume = import.checkpoint.clone();
    let resumed_from = (resume.rows_done > 0).then_some(resume.rows_done);
    import.status = ImportStatus::Running;
    import.started_at = import.started_at.or(Some(now()));
    import.updated_at = now();
    import.error = None;
    store.save_import(&import).await?;

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Parsed>(2);
    let options = request.parse_options();
    let parser = tokio::task::spawn_blocking(move || parse_side(input, &options, &resume, &tx));
    let mut columns = ColumnMapping::default();
    let mut failure = None;
    let mut statistics = store.planned_lead_rows().await?.map(Statistics::new);
    while let Some(message) = rx.recv().await {
        match message {
            Parsed::Columns(c) => columns = c,
            Parsed::Batch(batch) => {
                let applied = match apply_batch(store, &request, &mut import, batch, &mut committed).await {
                    Ok(created) if statistics.as_mut().is_some_and(|s| s.stale_after(created)) => {
                        store.analyze().await
                    }
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                };
                if let Err(e) = applied {
                    failure = Some(PipelineError::Store(e));
                    break;
                }
            }
        }
    }
    drop(rx);
    let parsed = parser
        .await
        .map_err(|e| PipelineError::Internal(format!("the parser thread failed: {e}")));
    let result = match (failure, parsed) {
        (Some(e), _) => Err(e),
        (None, Err(e)) | (None, Ok(Err(e))) => Err(e),
        (None, Ok(Ok(()))) => Ok(()),
    };
    match result {
        Ok(()) => {
            let at = now();
            import.status = ImportStatus::Succeeded;
            import.updated_at = at;
            import.finished_at = Some(at);
            let events = store.finish_import(&import).await?;
            committed(&import, events);
            Ok(ImportOutcome {
                import,
                columns,
                resumed_from,
            })
        }
        Err(e) if e.is_permanent() => {
            let at = now();
            import.status = ImportStatus::Failed;
            import.error = Some(e.to_string());
            import.updated_at = at;
            import.finished_at = Some(at);
            let events = store.finish_import(&import).await?;
            committed(&import, events);
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// What the parser thread sends.
enum Parsed {
    /// Once, after the header.
    Columns(ColumnMapping),
    Batch(Batch),
}

/// A chunk of classified rows and the checkpoint at its end.
#[derive(Default)]
struct Batch {
    rows: Vec<Row>,
    /// Rows dropped because an earlier row of the file had their email.
    duplicates: u64,
    checkpoint: ImportCheckpoint,
}

/// One data row, as the store side needs it. Nearly every row is a `Lead`, so boxing it to
/// shrink the rare `Invalid` would only add an allocation per row.
#[allow(clippy::large_enum_variant)]
enum Row {
    Lead { row: u64, data: RowData },
    Invalid(Vec<ImportErrorRow>),
}

/// The parser thread: reads the header, replays the rows a resumed import already committed
/// (only to rebuild the within-file dedupe set) and checks that they are the same bytes, then
/// sends the rest in chunks.
fn parse_side(
    input: Box<dyn Read + Send>,
    options: &ParseOptions,
    resume: &ImportCheckpoint,
    tx: &tokio::sync::mpsc::Sender<Parsed>,
) -> Result<(), PipelineError> {
    let prefix = Arc::new(Mutex::new(PrefixHash::default()));
    let tap = Tap {
        inner: input,
        prefix: Arc::clone(&prefix),
    };
    let mut rows = Rows::new(tap, options)?;
    if tx.blocking_send(Parsed::Columns(rows.columns().clone())).is_err() {
        return Ok(());
    }
    let mut seen = SeenEmails::default();
    let mut last_row = 0;
    while last_row < resume.rows_done {
        let Some(parsed) = rows.next() else {
            return Err(PipelineError::InputChanged(resume.byte_offset));
        };
        let parsed = parsed?;
        last_row = parsed.row;
        classify(parsed, &mut seen);
    }
    if resume.rows_done > 0 {
        let digest = prefix_digest(&prefix, rows.byte_offset());
        if rows.byte_offset() != resume.byte_offset || digest != resume.prefix_sha256 {
            return Err(PipelineError::InputChanged(resume.byte_offset));
        }
    }
    let mut batch = Batch::default();
    while let Some(parsed) = rows.next() {
        let parsed = parsed?;
        last_row = parsed.row;
        match classify(parsed, &mut seen) {
            Some(row) => batch.rows.push(row),
            None => batch.duplicates += 1,
        }
        if batch.rows.len() + batch.duplicates as usize >= CHUNK_ROWS {
            let offset = rows.byte_offset();
            batch.checkpoint = checkpoint(&prefix, last_row, offset);
            if tx
                .blocking_send(Parsed::Batch(std::mem::take(&mut batch)))
                .is_err()
            {
                return Ok(());
            }
        }
    }
    if !batch.rows.is_empty() || batch.duplicates > 0 {
        batch.checkpoint = checkpoint(&prefix, last_row, rows.byte_offset());
        let _ = tx.blocking_send(Parsed::Batch(batch));
    }
    Ok(())
}

fn checkpoint(prefix: &Mutex<PrefixHash>, rows_done: u64, byte_offset: u64) -> ImportCheckpoint {
    ImportCheckpoint {
        rows_done,
        byte_offset,
        prefix_sha256: prefix_digest(prefix, byte_offset),
    }
}

fn prefix_digest(prefix: &Mutex<PrefixHash>, offset: u64) -> String {
    prefix
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .digest_to(offset)
}

/// Turns a parsed row into what the store side does with it; `None` for a duplicate within
/// the file. The first valid row with an email claims it; invalid rows claim nothing.
fn classify(parsed: ParsedRow, seen: &mut SeenEmails) -> Option<Row> {
    let row = parsed.row;
    match parsed.result {
        Err(errors) => Some(Row::Invalid(
            errors
                .into_iter()
                .enumerate()
                .map(|(i, e)| ImportErrorRow {
                    row,
                    seq: i as u32,
                    column: e.column,
                    reason: e.reason,
                    email_hash: None,
                })
                .collect(),
        )),
        Ok(data) => match &data.email {
            Some(email) => seen.insert(email).then_some(Row::Lead { row, data }),
            None if identifies_someone(&data.patch) => Some(Row::Lead { row, data }),
            None => Some(Row::Invalid(vec![ImportErrorRow {
                row,
                seq: 0,
                column: None,
                reason: NOTHING_TO_IDENTIFY.into(),
                email_hash: None,
            }])),
        },
    }
}

/// When PostgreSQL's planner statistics of `leads` fall behind an import: nothing analyses a
/// table that grows from 0 to 1M rows while autovacuum is off or lagging, and a plan made for
/// an empty table (a sequential scan for the email look-up) gets slower with every chunk. The
/// import analyses whenever the leads it created since the last statistics reach the rows those
/// statistics counted (at least `FIRST_ANALYZE_AFTER`): about log₂ of the growth in `ANALYZE`s,
/// each a sample of 30,000 rows.
struct Statistics {
    /// The rows the last statistics counted.
    counted: u64,
    /// Leads created since.
    created: u64,
}

const FIRST_ANALYZE_AFTER: u64 = 10_000;

impl Statistics {
    fn new(counted: u64) -> Self {
        Self { counted, created: 0 }
    }

    /// Counts a chunk's new leads; true when the statistics should be refreshed now (and
    /// assumes they then are).
    fn stale_after(&mut self, created: u64) -> bool {
        self.created += created;
        if self.created < self.counted.max(FIRST_ANALYZE_AFTER) {
            return false;
        }
        self.counted += self.created;
        self.created = 0;
        true
    }
}

/// A row without an email is still a lead when it names a person or a company.
fn identifies_someone(patch: &LeadPatch) -> bool {
    patch.first_name.is_set() || patch.last_name.is_set() || patch.company_name.is_set()
}

/// Emails seen so far in the file, as 128-bit hashes (two independently keyed SipHashes):
/// a collision, which would drop a row as a duplicate, is a 1-in-10^20 event at 1M rows.
#[derive(Default)]
struct SeenEmails(HashSet<u128>);

impl SeenEmails {
    /// Whether `email` is new (and remembers it).
    fn insert(&mut self, email: &EmailAddress) -> bool {
        let half = |salt: u8| {
            let mut h = DefaultHasher::new();
            salt.hash(&mut h);
            email.as_str().hash(&mut h);
            h.finish()
        };
        self.0.insert((u128::from(half(1)) << 64) | u128::from(half(2)))
    }
}

/// SHA-256 over a prefix of the input: `Tap` records the bytes the parser reads (it reads
/// ahead of the rows it has yielded), `digest_to` hashes them up to a checkpoint's offset.
#[derive(Default)]
struct PrefixHash {
    pending: Vec<u8>,
    hashed: u64,
    hasher: Sha256,
}

impl PrefixHash {
    /// The hash of the first `offset` bytes (which must not be less than last time).
    fn digest_to(&mut self, offset: u64) -> String {
        let n = (offset.saturating_sub(self.hashed) as usize).min(self.pending.len());
        self.hasher.update(&self.pending[..n]);
        self.pending.drain(..n);
        self.hashed += n as u64;
        let digest = self.hasher.clone().finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The input as the parser reads it, with every byte also handed to a `PrefixHash`.
struct Tap {
    inner: Box<dyn Read + Send>,
    prefix: Arc<Mutex<PrefixHash>>,
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.prefix
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pending
            .extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// Checks tombstones, applies the duplicate policy against the store and commits one chunk;
/// retries with a fresh look-up when a concurrent write won a race. Returns how many leads the
/// chunk created.
async fn apply_batch(
    store: &Store,
    request: &ImportRequest,
    import: &mut Import,
    batch: Batch,
    committed: &mut (impl FnMut(&Import, Vec<Event>) + Send),
) -> Result<u64, StoreError> {
    let ws = import.workspace_id;
    let emails: Vec<EmailAddress> = batch
        .rows
        .iter()
        .filter_map(|r| match r {
            Row::Lead { data, .. } => data.email.clone(),
            Row::Invalid(_) => None,
        })
        .collect();
    let hashes: Vec<EmailHash> = emails.iter().map(|e| EmailHash::of(ws, e)).collect();
    let erased: HashSet<EmailHash> = store.tombstoned(ws, &hashes).await?.into_iter().collect();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let existing: HashMap<String, Lead> = store
            .leads_by_emails(ws, &emails)
            .await?
            .into_iter()
            .filter_map(|l| Some((l.email.as_ref()?.as_str().to_owned(), l)))
            .collect();
        let plan = plan_chunk(request, import, &batch, &erased, &existing);
        let chunk = ImportChunk {
            import: &plan.import,
            previous_rows_done: import.checkpoint.rows_done,
            created: if request.dry_run { &[] } else { &plan.created },
            updated: if request.dry_run { &[] } else { &plan.updated },
            errors: &plan.errors,
        };
        let created = chunk.created.len() as u64;
        match store.commit_import_chunk(&chunk).await {
            Ok(events) => {
                *import = plan.import;
                committed(import, events);
                return Ok(created);
            }
            Err(StoreError::Conflict { field: "email" } | StoreError::VersionMismatch)
                if attempt < CHUNK_ATTEMPTS =>
            {
                tracing::info!(import = %import.id, attempt, "import chunk lost a race; retrying");
            }
            Err(e) => return Err(e),
        }
    }
}

/// What one chunk writes, decided against the store as it was read.
struct ChunkPlan {
    /// The import after the chunk.
    import: Import,
    created: Vec<Lead>,
    updated: Vec<(Lead, i64)>,
    errors: Vec<ImportErrorRow>,
}

fn plan_chunk(
    request: &ImportRequest,
    before: &Import,
    batch: &Batch,
    erased: &HashSet<EmailHash>,
    existing: &HashMap<String, Lead>,
) -> ChunkPlan {
    let at = now();
    let ws = before.workspace_id;
    let mut import = before.clone();
    let counts = &mut import.counts;
    counts.duplicates_in_file += batch.duplicates;
    let (mut created, mut updated, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for row in &batch.rows {
        let (row, data) = match row {
            Row::Invalid(e) => {
                counts.invalid += 1;
                errors.extend(e.iter().cloned());
                continue;
            }
            Row::Lead { row, data } => (*row, data),
        };
        if let Some(email) = &data.email {
            let hash = EmailHash::of(ws, email);
            if erased.contains(&hash) {
                counts.blocked += 1;
                errors.push(ImportErrorRow {
                    row,
                    seq: 0,
                    column: None,
                    reason: ERASED_REASON.into(),
                    email_hash: Some(hash),
                });
                continue;
            }
            if let Some(lead) = existing.get(email.as_str()) {
                match merge(request.on_duplicate, lead, &data.patch, at) {
                    Merge::Skipped => counts.skipped_existing += 1,
                    Merge::Unchanged => counts.unchanged += 1,
                    Merge::Updated(new) => {
                        counts.updated += 1;
                        updated.push((new, lead.version));
                    }
                }
                continue;
            }
        }
        let mut lead = Lead::new(ws, at);
        lead.apply(&data.patch);
        lead.email = data.email.clone();
        lead.archived_at = data.archived_at;
        counts.created += 1;
        created.push(lead);
    }
    import.checkpoint = batch.checkpoint.clone();
    import.updated_at = at;
    ChunkPlan {
        import,
        created,
        updated,
        errors,
    }
}

/// What a row does to the lead that has its email (short-lived: not worth a box).
#[allow(clippy::large_enum_variant)]
enum Merge {
    Skipped,
    Unchanged,
    Updated(Lead),
}

/// Applies a row to the lead that already has its email, by policy. Empty cells never clear
/// anything (the parser leaves them `Keep`), and the email itself is not rewritten.
fn merge(policy: OnDuplicate, lead: &Lead, patch: &LeadPatch, at: crate::domain::Timestamp) -> Merge {
    let patch = match policy {
        OnDuplicate::Skip => return Merge::Skipped,
        OnDuplicate::Overwrite => LeadPatch {
            email: Patch::Keep,
            ..patch.clone()
        },
        OnDuplicate::UpdateEmptyFields => patch.filling(lead),
    };
    let mut next = lead.clone();
    if !next.apply(&patch) {
        return Merge::Unchanged;
    }
    next.updated_at = at;
    next.version = lead.version + 1;
    Merge::Updated(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(raw: &str) -> EmailAddress {
        EmailAddress::parse("email", raw).unwrap()
    }

    #[test]
    fn the_first_occurrence_of_an_email_wins() {
        let mut seen = SeenEmails::default();
        assert!(seen.insert(&email("ann@acme.io")));
        assert!(!seen.insert(&email("Ann@ACME.io")));
        assert!(seen.insert(&email("bob@acme.io")));
    }

    #[test]
    fn prefix_digest_hashes_exactly_the_prefix() {
        let mut p = PrefixHash::default();
        p.pending.extend_from_slice(b"hello world");
        let partial = p.digest_to(5);
        let expected: String = Sha256::digest(b"hello")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(partial, expected);
        let full = p.digest_to(11);
        let expected: String = Sha256::digest(b"hello world")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(full, expected);
    }

    fn lead_with(first: Option<&str>, title: Option<&str>) -> Lead {
        let mut lead = Lead::new(WorkspaceId::new(), now());
        lead.email = Some(email("ann@acme.io"));
        lead.first_name = first.map(str::to_owned);
        lead.title = title.map(str::to_owned);
        lead
    }

    fn patch(first: &str, title: &str) -> LeadPatch {
        LeadPatch {
            email: Patch::Set(email("ann@acme.io")),
            first_name: Patch::Set(first.into()),
            title: Patch::Set(title.into()),
            ..LeadPatch::default()
        }
    }

    #[test]
    fn skip_leaves_an_existing_lead_alone() {
        let lead = lead_with(Some("Ann"), None);
        assert!(matches!(
            merge(OnDuplicate::Skip, &lead, &patch("Anna", "CTO"), now()),
            Merge::Skipped
        ));
    }

    #[test]
    fn update_empty_fields_fills_only_what_is_missing() {
        let lead = lead_with(Some("Ann"), None);
        let Merge::Updated(next) = merge(
            OnDuplicate::UpdateEmptyFields,
            &lead,
            &patch("Anna", "CTO"),
            now(),
        ) else {
            panic!("expected an update");
        };
        assert_eq!(next.first_name.as_deref(), Some("Ann"));
        assert_eq!(next.title.as_deref(), Some("CTO"));
        assert_eq!(next.version, lead.version + 1);
        let full = lead_with(Some("Ann"), Some("CEO"));
        assert!(matches!(
            merge(
                OnDuplicate::UpdateEmptyFields,
                &full,
                &patch("Anna", "CTO"),
                now()
            ),
            Merge::Unchanged
        ));
    }

    #[test]
    fn overwrite_lets_file_values_win_but_never_clears() {
        let lead = lead_with(Some("Ann"), Some("CEO"));
        let only_first = LeadPatch {
            first_name: Patch::Set("Anna".into()),
            ..LeadPatch::default()
        };
        let Merge::Updated(next) = merge(OnDuplicate::Overwrite, &lead, &only_first, now()) else {
            panic!("expected an update");
        };
        assert_eq!(next.first_name.as_deref(), Some("Anna"));
        assert_eq!(next.title.as_deref(), Some("CEO"));
        assert!(matches!(
            merge(OnDuplicate::Overwrite, &next, &only_first, now()),
            Merge::Unchanged
        ));
    }

    #[test]
    fn a_row_without_email_needs_a_name_or_company() {
        let mut seen = SeenEmails::default();
        let nameless = ParsedRow {
            row: 3,
            result: Ok(RowData {
                email: None,
                patch: LeadPatch::default(),
                archived_at: None,
            }),
        };
        let Some(Row::Invalid(errors)) = classify(nameless, &mut seen) else {
            panic!("expected an invalid row");
        };
        assert_eq!(errors[0].row, 3);
        assert_eq!(errors[0].reason, NOTHING_TO_IDENTIFY);
        let named = ParsedRow {
            row: 4,
            result: Ok(RowData {
                email: None,
                patch: LeadPatch {
                    company_name: Patch::Set("Acme".into()),
                    ..LeadPatch::default()
                },
                archived_at: None,
            }),
        };
        assert!(matches!(
            classify(named, &mut seen),
            Some(Row::Lead { row: 4, .. })
        ));
    }

    #[test]
    fn statistics_are_refreshed_each_time_the_table_about_doubles() {
        let mut s = Statistics::new(0);
        let mut refreshed_at = Vec::new();
        let mut total = 0;
        for _ in 0..123 {
            total += 8_192;
            if s.stale_after(8_192) {
                refreshed_at.push(total);
            }
        }
        assert_eq!(refreshed_at, [16_384, 32_768, 65_536, 131_072, 262_144, 524_288]);
        // a large table with current statistics is not analysed for a small import
        let mut s = Statistics::new(5_000_000);
        assert!(!(0..100).any(|_| s.stale_after(8_192)));
        // dry runs and update-only chunks create nothing
        let mut s = Statistics::new(0);
        assert!(!(0..1_000).any(|_| s.stale_after(0)));
    }
}
