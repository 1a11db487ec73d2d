//! Imports of lead files: the record of one import (status, options, counters and the
//! checkpoint that makes it resumable) and the rows of its error report.
//!
//! Parsing and the pipeline live in `bulk::import`; this is only what the store keeps.

use super::erasure::EmailHash;
use super::event::NewEvent;
use super::ids::{ImportId, WorkspaceId};
use super::job::JobId;
use super::lead::Timestamp;
use serde_json::{Value, json};

/// `import.progress`: an import committed a chunk of rows.
pub const IMPORT_PROGRESS: &str = "import.progress";
/// `import.finished`: an import ended, successfully or not.
pub const IMPORT_FINISHED: &str = "import.finished";

/// Where an import stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ImportStatus {
    /// Created, waiting for a worker (GraphQL uploads).
    Queued,
    Running,
    Succeeded,
    /// Stopped by an error that retrying will not fix (an unreadable header, a changed file).
    Failed,
    /// Stopped before the end (a cancelled job); resumable from its checkpoint.
    Interrupted,
}

impl ImportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportStatus::Queued => "queued",
            ImportStatus::Running => "running",
            ImportStatus::Succeeded => "succeeded",
            ImportStatus::Failed => "failed",
            ImportStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            ImportStatus::Queued,
            ImportStatus::Running,
            ImportStatus::Succeeded,
            ImportStatus::Failed,
            ImportStatus::Interrupted,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }

    /// Whether the import is over for good.
    pub fn is_final(self) -> bool {
        matches!(self, ImportStatus::Succeeded | ImportStatus::Failed)
    }
}

/// What happened to the data rows of a file; every row counts exactly once.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ImportCounts {
    /// New leads (or, in a dry run, leads that would be created).
    pub created: u64,
    /// Existing leads changed by the file (`UPDATE_EMPTY_FIELDS`, `OVERWRITE`).
    pub updated: u64,
    /// Existing leads the file's values left as they were.
    pub unchanged: u64,
    /// Rows whose email already belonged to a lead, left alone under `SKIP`.
    pub skipped_existing: u64,
    /// Rows whose email an earlier row of the same file already had (first one wins).
    pub duplicates_in_file: u64,
    /// Rows refused by validation; each has rows in the error report.
    pub invalid: u64,
    /// Rows whose email was erased on request (tombstoned).
    pub blocked: u64,
}

impl ImportCounts {
    /// All rows accounted for.
    pub fn total(&self) -> u64 {
        self.created
            + self.updated
            + self.unchanged
            + self.skipped_existing
            + self.duplicates_in_file
            + self.invalid
            + self.blocked
    }

    pub fn to_json(self) -> Value {
        json!({
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skippedExisting": self.skipped_existing,
            "duplicatesInFile": self.duplicates_in_file,
            "invalid": self.invalid,
            "blocked": self.blocked,
        })
    }
}

/// How far an import got: data rows fully processed and committed, the input bytes they
/// span, and the SHA-256 of those bytes (so a resumed run can prove it reads the same file).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ImportCheckpoint {
    pub rows_done: u64,
    pub byte_offset: u64,
    /// Lower-case hex; empty before the first checkpoint.
    pub prefix_sha256: String,
}

/// One import of a file into a workspace.
#[derive(Clone, PartialEq, Debug)]
pub struct Import {
    pub id: ImportId,
    pub workspace_id: WorkspaceId,
    pub status: ImportStatus,
    /// `csv` or `ndjson`.
    pub format: String,
    /// `{onDuplicate, dryRun, mapping: [{column, field}], defaultRegion}` as chosen at start;
    /// a resumed run must be given the same.
    pub options: Value,
    /// The file name as given (no path beyond what the client sent), or `-` for stdin.
    pub source_name: String,
    pub checkpoint: ImportCheckpoint,
    pub counts: ImportCounts,
    /// The `leads.import` job running it, for uploads.
    pub job_id: Option<JobId>,
    /// Why it failed, in words fit for the user.
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
}

impl Import {
    /// A queued import with nothing done yet.
    pub fn new(
        workspace_id: WorkspaceId,
        format: &str,
        options: Value,
        source_name: &str,
        at: Timestamp,
    ) -> Self {
        Self {
            id: ImportId::new(),
            workspace_id,
            status: ImportStatus::Queued,
            format: format.to_owned(),
            options,
            source_name: source_name.to_owned(),
            checkpoint: ImportCheckpoint::default(),
            counts: ImportCounts::default(),
            job_id: None,
            error: None,
            created_at: at,
            updated_at: at,
            started_at: None,
            finished_at: None,
        }
    }

    /// Whether the options ask for a dry run (nothing written but the report).
    pub fn dry_run(&self) -> bool {
        self.options
            .get("dryRun")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// The `import.progress` or `import.finished` event of the import as it is now: ids,
    /// status and counters, no personal data.
    pub fn event(&self, kind: &'static str, at: Timestamp) -> NewEvent {
        NewEvent {
            workspace_id: self.workspace_id,
            kind,
            subject_id: Some(self.id.as_uuid()),
            payload: json!({
                "importId": self.id.as_uuid(),
                "status": self.status.as_str(),
                "dryRun": self.dry_run(),
                "rowsDone": self.checkpoint.rows_done,
                "counts": self.counts.to_json(),
            }),
            at,
        }
    }
}

/// One line of an import's error report. A row may have several (one per bad column).
#[derive(Clone, PartialEq, Debug)]
pub struct ImportErrorRow {
    /// 1-based data row (CSV header excluded; NDJSON non-blank line number).
    pub row: u64,
    /// Position among the errors of that row, for a stable order.
    pub seq: u32,
    /// The source column, when one cell is to blame.
    pub column: Option<String>,
    /// Never contains an email value.
    pub reason: String,
    /// The salted hash of the row's email when one parsed, so erasure finds the row.
    pub email_hash: Option<EmailHash>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips() {
        for s in ["queued", "running", "succeeded", "failed", "interrupted"] {
            assert_eq!(ImportStatus::parse(s).map(ImportStatus::as_str), Some(s));
        }
        assert_eq!(ImportStatus::parse("done"), None);
    }

    #[test]
    fn progress_event_carries_counters_only() {
        let mut import = Import::new(
            WorkspaceId::new(),
            "csv",
            json!({"dryRun": true}),
            "a.csv",
            super::super::now(),
        );
        import.counts.created = 3;
        let e = import.event(IMPORT_PROGRESS, import.created_at);
        assert_eq!(e.payload["counts"]["created"], 3);
        assert_eq!(e.payload["dryRun"], true);
        assert_eq!(e.subject_id, Some(import.id.as_uuid()));
    }
}
