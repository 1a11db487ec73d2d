//! Import of leads from CSV and NDJSON files.
//!
//! `Rows` streams a file row by row: columns are mapped to fields (`columns`), values are
//! normalised (`normalize`) and validated by the lead API's own rules, and each row comes out
//! as a validated change or as its problems, so the good rows can go in while the bad ones
//! make up the error report.

mod columns;
pub mod normalize;
mod parse;
pub mod pipeline;

pub use columns::{ColumnMapping, Field};
pub use parse::{ParseOptions, ParsedRow, RowData, RowError, Rows};

use std::path::Path;

/// The file formats an import reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    /// The format a file name implies: `.csv`, or `.ndjson`/`.jsonl`.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "ndjson" | "jsonl" => Some(Format::Ndjson),
            _ => None,
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "ndjson" | "jsonl" => Some(Format::Ndjson),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        }
    }
}

/// What an import does with a row whose email already belongs to a lead.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum OnDuplicate {
    /// Leave the existing lead as it is.
    #[default]
    Skip,
    /// Fill only the fields the existing lead lacks.
    UpdateEmptyFields,
    /// The file's non-empty values replace the lead's; empty cells never clear a field.
    Overwrite,
}

impl OnDuplicate {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "SKIP" => Some(OnDuplicate::Skip),
            "UPDATE_EMPTY_FIELDS" => Some(OnDuplicate::UpdateEmptyFields),
            "OVERWRITE" => Some(OnDuplicate::Overwrite),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OnDuplicate::Skip => "SKIP",
            OnDuplicate::UpdateEmptyFields => "UPDATE_EMPTY_FIELDS",
            OnDuplicate::Overwrite => "OVERWRITE",
        }
    }
}

/// Why a whole file cannot be imported (a single row's problems are `RowError`s instead).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Header(String),
    #[error("column mapping: {0}")]
    Mapping(String),
}

#[cfg(test)]
mod tests;
