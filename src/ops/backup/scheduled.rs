//! The `ops.backup` job: on the `backup_schedule` cron it writes
//! `leadgate-<UTC timestamp>.lgbackup` into `backup_dir` (complete or not at all: a temporary
//! file renamed at the end) and deletes the oldest such files beyond `backup_keep`. Files that
//! do not match that pattern are never touched. The outcome is recorded in the job's row.

use super::{BackupError, backup};
use crate::domain::{Job, JobKind, Timestamp, now};
use crate::jobs::{Handler, JobContext, JobError};
use crate::store::Store;
use futures_util::future::BoxFuture;
use serde::Serialize;
use std::path::{Path, PathBuf};

pub const KIND: JobKind = JobKind::new("ops.backup");
const PREFIX: &str = "leadgate-";
const SUFFIX: &str = ".lgbackup";
/// Sorts as it reads: newest last.
const STAMP: &str = "%Y%m%dT%H%M%S%3fZ";

/// The scheduled backup's settings.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// Five-field cron (UTC); `None` leaves scheduled backups off.
    pub schedule: Option<String>,
    pub dir: PathBuf,
    /// Backup files kept; the oldest beyond this are deleted after each new one.
    pub keep: usize,
}

/// What one run did, as recorded in its job.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Outcome {
    pub file: String,
    pub tables: usize,
    pub rows: u64,
    pub bytes: u64,
    pub duration_ms: u128,
    /// Older backups removed to keep `backup_keep`.
    pub deleted: Vec<String>,
}

pub struct ScheduledBackup {
    pub store: Store,
    pub options: BackupOptions,
}

impl Handler for ScheduledBackup {
    fn kind(&self) -> JobKind {
        KIND
    }

    fn run<'a>(&'a self, _job: &'a Job, ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            // A schedule stored while backups were on outlives the setting; it then does nothing.
            if self.options.schedule.is_none() {
                return ctx
                    .progress(serde_json::json!({ "skipped": "backup_schedule is off" }))
                    .await;
            }
            let outcome = run_once(&self.store, &self.options.dir, self.options.keep, now())
                .await
                .map_err(|e| JobError::Transient(e.to_string()))?;
            tracing::info!(file = %outcome.file, rows = outcome.rows, bytes = outcome.bytes, deleted = outcome.deleted.len(), "backup written");
            let recorded = serde_json::to_value(&outcome).map_err(|e| JobError::Permanent(e.to_string()))?;
            ctx.progress(recorded).await
        })
    }
}

/// Writes one backup named for `at` into `dir`, then keeps the newest `keep`.
pub async fn run_once(store: &Store, dir: &Path, keep: usize, at: Timestamp) -> Result<Outcome, BackupError> {
    let io = |source| BackupError::File {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = file_name(at);
    let summary = backup(store, &dir.join(&file), |_, _| {}).await?;
    let deleted = rotate(dir, keep).map_err(io)?;
    Ok(Outcome {
        file,
        tables: summary.tables.len(),
        rows: summary.rows,
        bytes: summary.bytes,
        duration_ms: summary.duration.as_millis(),
        deleted,
    })
}

/// `leadgate-20261128T234900123Z.lgbackup` for that instant.
pub fn file_name(at: Timestamp) -> String {
    format!("{PREFIX}{}{SUFFIX}", at.format(STAMP))
}

fn is_backup_name(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(SUFFIX))
        .is_some_and(|stamp| chrono::NaiveDateTime::parse_from_str(stamp, STAMP).is_ok())
}

/// Deletes the oldest backup files in `dir` beyond the newest `keep`; returns their names.
pub fn rotate(dir: &Path, keep: usize) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_backup_name(n))
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep);
    let old: Vec<String> = names.drain(..excess).collect();
    for name in &old {
        std::fs::remove_file(dir.join(name))?;
    }
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_of_the_pattern_are_backups() {
        let at = chrono::DateTime::from_timestamp_micros(1_732_838_400_123_456).unwrap();
        assert_eq!(file_name(at), "leadgate-20241129T000000123Z.lgbackup");
        assert!(is_backup_name(&file_name(at)));
        for other in [
            "leadgate-latest.lgbackup",
            "leadgate-20241129T000000123Z.lgbackup.partial",
            "mine-20241129T000000123Z.lgbackup",
            "leadgate-20241129T000000123Z.tar",
        ] {
            assert!(!is_backup_name(other), "{other}");
        }
    }
}
