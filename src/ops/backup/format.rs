//! The `.lgbackup` file format, version 1: what is written, how values are spelt, and how it
//! is checked on the way back in.
//!
//! ```text
//! LGBACKUP\n                                   9 bytes, uncompressed: the magic
//! zstd stream (with zstd's frame checksum) of JSON lines:
//!   {"format":"leadgate-backup","version":1,…}  the manifest
//!   {"table":"workspaces"}                      then per table, in foreign-key order:
//!   ["0192…","acme","Acme",1732838400000000,…]  one JSON array per row, in key order
//!   {"end":"workspaces","rows":2,"sha256":"…"}  count and SHA-256 of the table's row lines
//!   {"trailer":{"tables":14,"rows":…,"sha256":"…"}}
//! ```
//!
//! The trailer's checksum is a SHA-256 over every line before it except the row lines, whose
//! bytes each table's `end` line already covers: so it vouches for the whole file while the
//! rows are hashed once. Values: uuid as hyphenated text, timestamp as integer microseconds
//! UTC, blob as standard base64, integer (booleans are 0/1), real, text and null as JSON.
//!
//! **The whole-file checksum hashes each row once**: the trailer's SHA-256 covers every line but
//! the rows, and each table's `end` line carries the SHA-256 of its rows, so the trailer vouches
//! for every byte. zstd's own frame checksum is on as well.
//!
//! The file, line by line:
//!
//! ```text
//! LGBACKUP\n                                     9 bytes, uncompressed
//! zstd stream (level 1, frame checksum on) of newline-terminated JSON lines:
//!   {"format":"leadgate-backup","version":1,"created_at":"2026-11-29T00:00:00.000000Z",
//!    "backend":"sqlite","schema_version":6,
//!    "tables":[{"name":"workspaces","columns":[{"name":"id","type":"uuid"},…],
//!               "key":["id"],"rows":2},…]}                          manifest
//!   {"table":"workspaces"}                                          per table, FK order:
//!   ["0193…-…","acme","Acme",1732838400000000,0,0,5]                one JSON array per row
//!   …
//!   {"end":"workspaces","rows":2,"sha256":"<hex of the row lines' bytes>"}
//!   …
//!   {"trailer":{"tables":14,"rows":1004321,"sha256":"<hex>"}}
//! ```
//!
//! Types: `uuid` (hyphenated text), `timestamp` (integer µs since the epoch, UTC), `integer`,
//! `real`, `text`, `blob` (standard base64); `null` for SQL NULL. The trailer's `sha256` is over
//! the bytes of every line before it except row lines. A reader refuses: a missing magic; another
//! format or version; a row whose value does not fit its column's type; a table out of order; a
//! count or table checksum that differs; a missing or mismatching trailer; anything after it.

use crate::domain::{ColumnType, Value};
use crate::store::backup::Table;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{BufRead, Write};

pub const MAGIC: &[u8; 9] = b"LGBACKUP\n";
pub const FORMAT: &str = "leadgate-backup";
pub const VERSION: u32 = 1;
/// zstd's fast end: most of the gain, little of the time.
pub const ZSTD_LEVEL: i32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// `sqlite` or `postgres`: where the copy came from.
    pub backend: String,
    /// The newest migration applied to the source.
    pub schema_version: i64,
    pub tables: Vec<TableEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableEntry {
    #[serde(flatten)]
    pub table: Table,
    /// Rows the table held in the snapshot.
    pub rows: u64,
}

/// The lines that are not rows.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Marker {
    Begin { table: String },
    End { end: String, rows: u64, sha256: String },
    Trailer { trailer: Trailer },
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Trailer {
    pub tables: usize,
    pub rows: u64,
    pub sha256: String,
}

pub fn hex(digest: impl AsRef<[u8]>) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(64);
    for b in digest.as_ref() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Writes the lines of a backup, keeping the checksums.
pub struct LineWriter<W: Write> {
    out: W,
    /// Over every non-row line (see the module doc).
    file: Sha256,
    table: Sha256,
    line: Vec<u8>,
}

impl<W: Write> LineWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            file: Sha256::new(),
            table: Sha256::new(),
            line: Vec::with_capacity(4096),
        }
    }

    /// A manifest, marker or trailer line.
    pub fn control(&mut self, value: &impl Serialize) -> std::io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, value)?;
        self.line.push(b'\n');
        self.file.update(&self.line);
        self.out.write_all(&self.line)
    }

    pub fn row(&mut self, row: &[Value]) -> std::io::Result<()> {
        self.line.clear();
        encode_row(&mut self.line, row);
        self.table.update(&self.line);
        self.out.write_all(&self.line)
    }

    /// The checksum of the rows since the last call.
    pub fn take_table_sum(&mut self) -> String {
        hex(std::mem::take(&mut self.table).finalize())
    }

    /// The whole-file checksum so far.
    pub fn file_sum(&self) -> String {
        hex(self.file.clone().finalize())
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

fn encode_row(out: &mut Vec<u8>, row: &[Value]) {
    use std::io::Write as _;
    out.push(b'[');
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing into a Vec cannot fail.
        let _ = match v {
            Value::Null => out.write_all(b"null"),
            Value::Integer(n) => write!(out, "{n}"),
            Value::Timestamp(t) => write!(out, "{}", t.timestamp_micros()),
            Value::Real(x) => serde_json::to_writer(&mut *out, x).map_err(std::io::Error::other),
            Value::Text(t) => serde_json::to_writer(&mut *out, t).map_err(std::io::Error::other),
            Value::Uuid(u) => write!(out, "\"{}\"", u.hyphenated()),
            Value::Blob(b) => write!(out, "\"{}\"", base64::engine::general_purpose::STANDARD.encode(b)),
        };
    }
    out.extend_from_slice(b"]\n");
}

/// Why a file cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a leadgate backup (the file does not start with the LGBACKUP magic)")]
    NotABackup,
    #[error("backup format version {0} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion(u32),
    #[error("the backup is truncated: {0}")]
    Truncated(String),
    #[error("the backup is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot read the backup: {0}")]
    Io(#[from] std::io::Error),
}

/// What a line of the body is.
pub enum Line {
    Row(Vec<Value>),
    Marker(Marker),
}

/// Reads a backup's lines back, checking them as it goes.
pub struct LineReader<R: BufRead> {
    input: R,
    file: Sha256,
    table: Sha256,
    line: Vec<u8>,
    /// 1-based, for messages.
    number: u64,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(input: R) -> Self {
        Self {
            input,
            file: Sha256::new(),
            table: Sha256::new(),
            line: Vec::with_capacity(4096),
            number: 0,
        }
    }

    /// The next line's bytes, without hashing them; `None` at the end of the stream.
    fn next_raw(&mut self) -> Result<Option<&[u8]>, FormatError> {
        self.line.clear();
        let n = self
            .input
            .read_until(b'\n', &mut self.line)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => FormatError::Truncated(e.to_string()),
                _ => FormatError::Corrupt(format!("cannot decompress: {e}")),
            })?;
        if n == 0 {
            return Ok(None);
        }
        self.number += 1;
        if self.line.last() != Some(&b'\n') {
            return Err(FormatError::Truncated(format!("line {} ends early", self.number)));
        }
        Ok(Some(&self.line))
    }

    pub fn manifest(&mut self) -> Result<Manifest, FormatError> {
        let Some(raw) = self.next_raw()? else {
            return Err(FormatError::Truncated("no manifest".into()));
        };
        let manifest: Manifest = serde_json::from_slice(raw)
            .map_err(|e| FormatError::Corrupt(format!("unreadable manifest: {e}")))?;
        self.file.update(&self.line);
        if manifest.format != FORMAT {
            return Err(FormatError::Corrupt(format!(
                "unknown format `{}`",
                manifest.format
            )));
        }
        if manifest.version != VERSION {
            return Err(FormatError::UnsupportedVersion(manifest.version));
        }
        Ok(manifest)
    }

    /// The next line, decoded against `table` when it is a row.
    pub fn next(&mut self, table: Option<&Table>) -> Result<Line, FormatError> {
        let number = self.number + 1;
        let Some(raw) = self.next_raw()? else {
            return Err(FormatError::Truncated(format!(
                "the stream ends at line {number} before the trailer"
            )));
        };
        if raw.first() == Some(&b'[') {
            let Some(table) = table else {
                return Err(FormatError::Corrupt(format!(
                    "line {number}: a row outside a table"
                )));
            };
            let row =
                decode_row(raw, table).map_err(|e| FormatError::Corrupt(format!("line {number}: {e}")))?;
            self.table.update(&self.line);
            return Ok(Line::Row(row));
        }
        let marker: Marker =
            serde_json::from_slice(raw).map_err(|e| FormatError::Corrupt(format!("line {number}: {e}")))?;
        self.file.update(&self.line);
        Ok(Line::Marker(marker))
    }

    pub fn take_table_sum(&mut self) -> String {
        hex(std::mem::take(&mut self.table).finalize())
    }

    /// Checks that nothing follows the trailer.
    pub fn expect_end(&mut self) -> Result<(), FormatError> {
        match self.next_raw()? {
            None => Ok(()),
            Some(_) => Err(FormatError::Corrupt("data after the trailer".into())),
        }
    }
}

impl<R: BufRead> LineReader<R> {
    /// Like `next`, but returns the whole-file checksum of everything before this line too,
    /// which a trailer must equal.
    pub fn next_with_sum(&mut self, table: Option<&Table>) -> Result<(Line, String), FormatError> {
        let before = hex(self.file.clone().finalize());
        let line = self.next(table)?;
        Ok((line, before))
    }
}

fn decode_row(raw: &[u8], table: &Table) -> Result<Vec<Value>, String> {
    let cells: Vec<serde_json::Value> = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
    if cells.len() != table.columns.len() {
        return Err(format!(
            "a row of {} has {} values, not {}",
            table.name,
            cells.len(),
            table.columns.len()
        ));
    }
    cells
        .into_iter()
        .zip(&table.columns)
        .map(|(cell, column)| {
            decode_value(cell, column.logical).ok_or_else(|| {
                format!(
                    "{}.{} holds a value that is not {:?}",
                    table.name, column.name, column.logical
                )
            })
        })
        .collect()
}

fn decode_value(cell: serde_json::Value, logical: ColumnType) -> Option<Value> {
    use serde_json::Value as J;
    Some(match (logical, cell) {
        (_, J::Null) => Value::Null,
        (ColumnType::Integer, J::Number(n)) => Value::Integer(n.as_i64()?),
        (ColumnType::Timestamp, J::Number(n)) => {
            Value::Timestamp(chrono::DateTime::from_timestamp_micros(n.as_i64()?)?)
        }
        (ColumnType::Real, J::Number(n)) => Value::Real(n.as_f64()?),
        (ColumnType::Text, J::String(s)) => Value::Text(s),
        (ColumnType::Uuid, J::String(s)) => Value::Uuid(uuid::Uuid::parse_str(&s).ok()?),
        (ColumnType::Blob, J::String(s)) => {
            Value::Blob(base64::engine::general_purpose::STANDARD.decode(s).ok()?)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backup::Column;

    fn table() -> Table {
        let column = |name: &str, logical| Column {
            name: name.into(),
            logical,
        };
        Table {
            name: "t".into(),
            columns: vec![
                column("id", ColumnType::Uuid),
                column("n", ColumnType::Integer),
                column("at", ColumnType::Timestamp),
                column("s", ColumnType::Text),
                column("b", ColumnType::Blob),
                column("x", ColumnType::Real),
            ],
            key: vec!["id".into()],
        }
    }

    #[test]
    fn rows_round_trip_in_portable_form() {
        let row = vec![
            Value::Uuid(uuid::Uuid::from_u128(7)),
            Value::Integer(-3),
            Value::Timestamp(chrono::DateTime::from_timestamp_micros(1_732_838_400_000_001).unwrap()),
            Value::Text("a \"quoted\"\nline".into()),
            Value::Blob(vec![0, 1, 255]),
            Value::Null,
        ];
        let mut out = Vec::new();
        encode_row(&mut out, &row);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "[\"00000000-0000-0000-0000-000000000007\",-3,1732838400000001,\"a \\\"quoted\\\"\\nline\",\"AAH/\",null]\n"
        );
        assert_eq!(decode_row(&out, &table()).unwrap(), row);
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused() {
        let err = decode_row(b"[\"not-a-uuid\",1,2,\"s\",null,null]\n", &table()).unwrap_err();
        assert!(err.contains("t.id"), "{err}");
        let err = decode_row(b"[null,1]\n", &table()).unwrap_err();
        assert!(err.contains("2 values"), "{err}");
    }
}
