//! Backup and restore of a whole store, either backend to either backend.
//!
//! `backup` reads every table in one snapshot (`Store::snapshot`) on one task and writes the
//! file (`format`) on a blocking thread, so reading and compressing share the cores; the file
//! appears under its name only when complete (temporary file, then rename). `restore` checks
//! the manifest against the target (schema version, tables, emptiness) before writing
//! anything, then streams the rows into `Store::restore`'s single transaction while verifying
//! every checksum; the transaction commits only after the trailer has been verified, so a
//! corrupt or truncated file leaves the target as it was. `scheduled` is the `ops.backup` job.
//!
//! **Backups are logical and portable.** Tables come from the catalog (the migrations table
//! excluded; its newest version is the file's schema version), in foreign-key order, rows in
//! primary-key order (text keys in byte order on PostgreSQL too), so the same data gives the same
//! bytes — and the same per-table SHA-256 — whichever backend it came from. Values are portable:
//! uuid as text, timestamp as integer microseconds UTC, blob as base64, integers (booleans are 0/1
//! on both backends), text. PostgreSQL names types in its catalog; SQLite cannot tell a uuid from
//! a blob or a timestamp from an integer, so there the column name decides (`id`/`*_id` BLOB →
//! uuid, `*_at`/`*_until`/`*_start` INTEGER → timestamp), and a contract test keeps that rule and
//! the PostgreSQL catalog in agreement.

pub mod format;
pub mod scheduled;

use crate::store::backup::{Catalog, ROWS_PER_BATCH, RestorePart, SnapshotPart, Table};
use crate::store::{Store, StoreError};
use format::{FormatError, Line, LineReader, LineWriter, Manifest, Marker, TableEntry, Trailer};
use serde::Serialize;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Batches in flight between the store and the file.
const CHANNEL_DEPTH: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(
        "the backup has schema version {backup} but the target database has {target}; restore with the leadgate version that made the backup, then upgrade"
    )]
    SchemaMismatch { backup: i64, target: i64 },
    #[error("the target database is not empty (rows in {}); restore needs an empty database", .0.join(", "))]
    NotEmpty(Vec<String>),
    #[error("the backup's tables do not match the target database's: {0}")]
    TablesDiffer(String),
    #[error("{path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

/// One table as written or restored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableSum {
    pub name: String,
    pub rows: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub schema_version: i64,
    /// Per table, in file order.
    pub tables: Vec<TableSum>,
    pub rows: u64,
    /// Size of the backup file.
    pub bytes: u64,
    #[serde(with = "duration_ms")]
    pub duration: Duration,
}

mod duration_ms {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u128(d.as_millis())
    }
}

/// Reports rows done out of the total.
pub trait Progress: Fn(u64, u64) + Send + 'static {}
impl<F: Fn(u64, u64) + Send + 'static> Progress for F {}

fn internal(e: impl std::fmt::Display) -> BackupError {
    BackupError::Internal(e.to_string())
}

/// Where a file is written before it is complete.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}

/// Writes a consistent copy of `store` to `out` while the store keeps serving.
pub async fn backup(store: &Store, out: &Path, progress: impl Progress) -> Result<Summary, BackupError> {
    let started = Instant::now();
    let temp = partial_path(out);
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let reader = {
        let store = store.clone();
        tokio::spawn(async move { store.snapshot(tx).await })
    };
    let backend = store.backend();
    let writer = {
        let temp = temp.clone();
        tokio::task::spawn_blocking(move || write_file(&temp, backend, rx, progress))
    };
    let written = writer.await.map_err(internal)?;
    let read = reader.await.map_err(internal)?;
    let (mut summary, file) = match (read, written) {
        (Ok(()), Ok(done)) => done,
        (Err(e), _) => {
            let _ = std::fs::remove_file(&temp);
            return Err(e.into());
        }
        (_, Err(e)) => {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
    };
    drop(file);
    std::fs::rename(&temp, out).map_err(|source| BackupError::File {
        path: out.to_path_buf(),
        source,
    })?;
    summary.duration = started.elapsed();
    Ok(summary)
}

fn write_file(
    path: &Path,
    backend: &str,
    mut rx: mpsc::Receiver<SnapshotPart>,
    progress: impl Progress,
) -> Result<(Summary, File), BackupError> {
    let io = |source| BackupError::File {
        path: path.to_path_buf(),
        source,
    };
    let ended = || BackupError::Internal("the snapshot ended early".into());
    let Some(SnapshotPart::Begin { catalog, rows }) = rx.blocking_recv() else {
        return Err(ended());
    };
    let mut file = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io)?);
    file.write_all(format::MAGIC).map_err(io)?;
    let mut zstd = zstd::Encoder::new(file, format::ZSTD_LEVEL).map_err(io)?;
    zstd.include_checksum(true).map_err(io)?;
    let mut w = LineWriter::new(BufWriter::with_capacity(1 << 20, zstd));
    let total: u64 = rows.iter().sum();
    let Catalog {
        schema_version,
        tables,
    } = catalog;
    let manifest = Manifest {
        format: format::FORMAT.into(),
        version: format::VERSION,
        created_at: crate::domain::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        backend: backend.into(),
        schema_version,
        tables: tables
            .iter()
            .zip(&rows)
            .map(|(t, &rows)| TableEntry {
                table: t.clone(),
                rows,
            })
            .collect(),
    };
    w.control(&manifest).map_err(io)?;
    let mut done = 0u64;
    let mut sums = Vec::with_capacity(tables.len());
    progress(0, total);
    for table in &tables {
        w.control(&Marker::Begin {
            table: table.name.clone(),
        })
        .map_err(io)?;
        let mut n = 0u64;
        loop {
            match rx.blocking_recv() {
                Some(SnapshotPart::Rows(batch)) => {
                    for row in &batch {
                        w.row(row).map_err(io)?;
                    }
                    n += batch.len() as u64;
                    done += batch.len() as u64;
                    progress(done, total);
                }
                Some(SnapshotPart::EndTable) => break,
                _ => return Err(ended()),
            }
        }
        let sum = TableSum {
            name: table.name.clone(),
            rows: n,
            sha256: w.take_table_sum(),
        };
        w.control(&Marker::End {
            end: sum.name.clone(),
            rows: sum.rows,
            sha256: sum.sha256.clone(),
        })
        .map_err(io)?;
        sums.push(sum);
    }
    let trailer = Trailer {
        tables: sums.len(),
        rows: done,
        sha256: w.file_sum(),
    };
    w.control(&Marker::Trailer { trailer }).map_err(io)?;
    let zstd = w.into_inner().into_inner().map_err(|e| io(e.into_error()))?;
    let file = zstd
        .finish()
        .map_err(io)?
        .into_inner()
        .map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    let bytes = file.metadata().map_err(io)?.len();
    Ok((
        Summary {
            schema_version,
            tables: sums,
            rows: done,
            bytes,
            duration: Duration::ZERO,
        },
        file,
    ))
}

type Body = LineReader<BufReader<zstd::Decoder<'static, BufReader<File>>>>;

/// Opens a backup and reads its manifest; a file that is not one fails here.
fn open(path: &Path) -> Result<(Body, Manifest, u64), BackupError> {
    let io = |source| BackupError::File {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let bytes = file.metadata().map_err(io)?.len();
    let mut magic = [0u8; 9];
    if file.read_exact(&mut magic).is_err() || &magic != format::MAGIC {
        return Err(FormatError::NotABackup.into());
    }
    let zstd = zstd::Decoder::new(file).map_err(io)?;
    let mut body = LineReader::new(BufReader::with_capacity(1 << 20, zstd));
    let manifest = body.manifest()?;
    Ok((body, manifest, bytes))
}

/// Reads only a backup's manifest.
pub fn manifest(path: &Path) -> Result<Manifest, BackupError> {
    open(path).map(|(_, m, _)| m)
}

fn sorted_names<'a>(tables: impl Iterator<Item = &'a Table>) -> Vec<String> {
    let mut names: Vec<String> = tables.map(|t| t.name.clone()).collect();
    names.sort();
    names
}

/// Refuses a target whose schema or tables differ from the backup's.
fn check_target(manifest: &Manifest, target: &Catalog) -> Result<(), BackupError> {
    if manifest.schema_version != target.schema_version {
        return Err(BackupError::SchemaMismatch {
            backup: manifest.schema_version,
            target: target.schema_version,
        });
    }
    let ours = sorted_names(manifest.tables.iter().map(|e| &e.table));
    let theirs = sorted_names(target.tables.iter());
    if ours != theirs {
        return Err(BackupError::TablesDiffer(format!(
            "the backup has [{}], the target [{}]",
            ours.join(", "),
            theirs.join(", ")
        )));
    }
    for entry in &manifest.tables {
        let t = &entry.table;
        let Some(other) = target.tables.iter().find(|o| o.name == t.name) else {
            continue;
        };
        let mut a = t.columns.clone();
        let mut b = other.columns.clone();
        a.sort_by(|x, y| x.name.cmp(&y.name));
        b.sort_by(|x, y| x.name.cmp(&y.name));
        if a != b {
            return Err(BackupError::TablesDiffer(format!(
                "table {} has other columns or column types",
                t.name
            )));
        }
    }
    Ok(())
}

/// Rebuilds the backup at `source` into `target`, which must be migrated to the backup's
/// schema version and empty. Nothing is committed unless every checksum matches.
pub async fn restore(source: &Path, target: &Store, progress: impl Progress) -> Result<Summary, BackupError> {
    let started = Instant::now();
    let (body, manifest, bytes) = open(source)?;
    check_target(&manifest, &target.catalog().await?)?;
    let filled = target.tables_with_rows().await?;
    if !filled.is_empty() {
        return Err(BackupError::NotEmpty(filled));
    }
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let writer = {
        let target = target.clone();
        tokio::spawn(async move { target.restore(rx).await })
    };
    let schema_version = manifest.schema_version;
    let read = tokio::task::spawn_blocking(move || read_body(body, &manifest, &tx, progress))
        .await
        .map_err(internal)?;
    let wrote = writer.await.map_err(internal)?;
    let (tables, rows) = match (read, wrote) {
        (Ok(done), Ok(())) => done,
        (Err(ReadError::Backup(e)), _) => return Err(e),
        // the store's own error explains why the reader could not hand rows over
        (Err(ReadError::StoreGone), Err(e)) | (Ok(_), Err(e)) => return Err(e.into()),
        (Err(ReadError::StoreGone), Ok(())) => return Err(internal("the restore stopped early")),
    };
    Ok(Summary {
        schema_version,
        tables,
        rows,
        bytes,
        duration: started.elapsed(),
    })
}

enum ReadError {
    Backup(BackupError),
    /// The store's side of the channel closed: its error says why.
    StoreGone,
}

impl From<FormatError> for ReadError {
    fn from(e: FormatError) -> Self {
        ReadError::Backup(e.into())
    }
}

/// Reads, checks and hands over every table; sends `Commit` only once the trailer verified.
fn read_body(
    mut body: Body,
    manifest: &Manifest,
    tx: &mpsc::Sender<RestorePart>,
    progress: impl Progress,
) -> Result<(Vec<TableSum>, u64), ReadError> {
    let send = |part| tx.blocking_send(part).map_err(|_| ReadError::StoreGone);
    let corrupt = |m: String| ReadError::Backup(FormatError::Corrupt(m).into());
    let total: u64 = manifest.tables.iter().map(|t| t.rows).sum();
    let mut done = 0u64;
    let mut sums = Vec::with_capacity(manifest.tables.len());
    progress(0, total);
    for entry in &manifest.tables {
        let table = &entry.table;
        match body.next(None)? {
            Line::Marker(Marker::Begin { table: name }) if name == table.name => {}
            _ => {
                return Err(corrupt(format!(
                    "table {} does not start where expected",
                    table.name
                )));
            }
        }
        send(RestorePart::Table {
            table: table.clone(),
            rows: entry.rows,
        })?;
        let mut batch = Vec::with_capacity(ROWS_PER_BATCH);
        let mut n = 0u64;
        loop {
            match body.next(Some(table))? {
                Line::Row(row) => {
                    batch.push(row);
                    n += 1;
                    if batch.len() == ROWS_PER_BATCH {
                        done += batch.len() as u64;
                        send(RestorePart::Rows(std::mem::replace(
                            &mut batch,
                            Vec::with_capacity(ROWS_PER_BATCH),
                        )))?;
                        progress(done, total);
                    }
                }
                Line::Marker(Marker::End { end, rows, sha256 }) if end == table.name => {
                    let computed = body.take_table_sum();
                    if rows != n {
                        return Err(corrupt(format!("table {end} should have {rows} rows, has {n}")));
                    }
                    if sha256 != computed {
                        return Err(corrupt(format!("table {end} fails its checksum")));
                    }
                    sums.push(TableSum {
                        name: end,
                        rows,
                        sha256,
                    });
                    break;
                }
                Line::Marker(_) => {
                    return Err(corrupt(format!(
                        "table {} does not end where expected",
                        table.name
                    )));
                }
            }
        }
        if !batch.is_empty() {
            done += batch.len() as u64;
            send(RestorePart::Rows(batch))?;
            progress(done, total);
        }
        send(RestorePart::EndTable)?;
    }
    let (line, expected) = body.next_with_sum(None)?;
    let Line::Marker(Marker::Trailer { trailer }) = line else {
        return Err(corrupt("the trailer is missing after the last table".into()));
    };
    let wanted = Trailer {
        tables: sums.len(),
        rows: done,
        sha256: expected,
    };
    if trailer != wanted {
        return Err(corrupt(
            "the whole-file checksum in the trailer does not match".into(),
        ));
    }
    body.expect_end()?;
    send(RestorePart::Commit)?;
    Ok((sums, done))
}
