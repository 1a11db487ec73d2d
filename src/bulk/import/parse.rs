//! Streaming row parser: reads CSV or NDJSON one record at a time, maps columns to fields,
//! normalises values and validates them through the lead API's own rules (`LeadPatch::parse`),
//! yielding for each row either the validated change or every problem found in it.

use super::columns::{ColumnMapping, Field};
use super::{Format, ImportError, normalize};
use crate::domain::{
    CountryCode, EmailAddress, LeadDraft, LeadPatch, LeadStatus, Patch, Timestamp, lead_column,
};
use chrono::DateTime;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};

/// How to read a file.
#[derive(Clone, Debug)]
pub struct ParseOptions {
    pub format: Format,
    /// Explicit `(source column, target field)` pairs; they win over recognised headers.
    pub mapping: Vec<(String, String)>,
    /// The region national phone numbers (without `+` or `00`) belong to.
    pub default_region: Option<CountryCode>,
}

/// One data row: its 1-based number (the CSV header is not counted; in NDJSON, blank lines
/// are not counted) and either the validated change or its problems.
#[derive(Debug)]
pub struct ParsedRow {
    pub row: u64,
    pub result: Result<RowData, Vec<RowError>>,
}

/// A valid row: the fields its non-empty cells set. Empty cells are `Keep`, never `Clear`, so
/// applying the patch to an existing lead never erases what the file leaves blank.
#[derive(Clone, Debug)]
pub struct RowData {
    pub email: Option<EmailAddress>,
    pub patch: LeadPatch,
    pub archived_at: Option<Timestamp>,
}

/// One problem in one row. `reason` never repeats an email address from the file.
#[derive(Clone, PartialEq, Debug)]
pub struct RowError {
    pub row: u64,
    /// The column's header as written in the file, when the problem belongs to one column.
    pub column: Option<String>,
    pub reason: String,
}

/// A cell's value: CSV cells are text; NDJSON values keep their JSON type.
enum Cell<'a> {
    Text(&'a str),
    Json(&'a serde_json::Value),
}

impl Cell<'_> {
    /// The value as text, `None` when empty.
    fn text(&self) -> Option<String> {
        let s = match self {
            Cell::Text(s) => (*s).to_owned(),
            Cell::Json(serde_json::Value::Null) => return None,
            Cell::Json(serde_json::Value::String(s)) => s.clone(),
            Cell::Json(other) => other.to_string(),
        };
        (!s.trim().is_empty()).then_some(s)
    }
}

enum Source<R: Read> {
    Csv {
        reader: csv::Reader<R>,
        record: csv::ByteRecord,
        mapping: ColumnMapping,
    },
    Ndjson {
        reader: BufReader<R>,
        line: String,
        /// Keys seen so far and the field each maps to.
        keys: HashMap<String, Option<Field>>,
        explicit: Vec<(String, String)>,
        mapping: ColumnMapping,
    },
}

/// An iterator over a file's rows. Memory does not grow with the file.
pub struct Rows<R: Read> {
    source: Source<R>,
    region: Option<CountryCode>,
    row: u64,
    offset: u64,
}

impl<R: Read> Rows<R> {
    /// Reads the header (CSV) and resolves the column mapping. A CSV file without a usable
    /// header, or an explicit mapping that names an unknown column or field, is refused here.
    pub fn new(input: R, options: &ParseOptions) -> Result<Self, ImportError> {
        let source = match options.format {
            Format::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(input);
                let mut header = csv::ByteRecord::new();
                let found = reader.read_byte_record(&mut header).map_err(csv_error)?;
                if !found {
                    return Err(ImportError::Header("the file is empty".into()));
                }
                let headers = header
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        let h = std::str::from_utf8(h)
                            .map_err(|_| ImportError::Header("the header row is not valid UTF-8".into()))?;
                        let h = if i == 0 {
                            h.trim_start_matches('\u{feff}')
                        } else {
                            h
                        };
                        Ok(h.trim().to_owned())
                    })
                    .collect::<Result<Vec<_>, ImportError>>()?;
                let mapping = ColumnMapping::resolve(&headers, &options.mapping)?;
                Source::Csv {
                    reader,
                    record: csv::ByteRecord::new(),
                    mapping,
                }
            }
            Format::Ndjson => {
                for (_, target) in &options.mapping {
                    if Field::from_target(target).is_none() {
                        return Err(ImportError::Mapping(format!("'{target}' is not a lead field")));
                    }
                }
                Source::Ndjson {
                    reader: BufReader::with_capacity(256 * 1024, input),
                    line: String::new(),
                    keys: HashMap::new(),
                    explicit: options.mapping.clone(),
                    mapping: ColumnMapping::default(),
                }
            }
        };
        let offset = match &source {
            Source::Csv { reader, .. } => reader.position().byte(),
            Source::Ndjson { .. } => 0,
        };
        Ok(Self {
            source,
            region: options.default_region.clone(),
            row: 0,
            offset,
        })
    }

    /// How the file's columns (or, in NDJSON, the keys seen so far) map to fields.
    pub fn columns(&self) -> &ColumnMapping {
        match &self.source {
            Source::Csv { mapping, .. } | Source::Ndjson { mapping, .. } => mapping,
        }
    }

    /// Input bytes consumed by the header and the rows yielded so far: where a resumed import
    /// picks up. (After a row ending in CRLF it may stop between the `\r` and the `\n`;
    /// reading on from there yields the same next row.)
    pub fn byte_offset(&self) -> u64 {
        self.offset
    }

    /// The number of the last row yielded.
    pub fn rows_read(&self) -> u64 {
        self.row
    }
}

impl<R: Read> Iterator for Rows<R> {
    type Item = Result<ParsedRow, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        let region = self.region.as_ref();
        match &mut self.source {
            Source::Csv {
                reader,
                record,
                mapping,
            } => {
                match reader.read_byte_record(record) {
                    Ok(false) => return None,
                    Ok(true) => {}
                    Err(e) => return Some(Err(csv_error(e))),
                }
                self.offset = reader.position().byte();
                self.row += 1;
                let row = self.row;
                let mut cells = Vec::with_capacity(mapping.mapped.len());
                for (index, header, field) in &mapping.mapped {
                    let raw = record.get(*index).unwrap_or_default();
                    match std::str::from_utf8(raw) {
                        Ok(text) => cells.push((field, header.as_str(), Cell::Text(text))),
                        Err(_) => {
                            let error = RowError {
                                row,
                                column: Some(header.clone()),
                                reason: "the cell is not valid UTF-8".into(),
                            };
                            return Some(Ok(ParsedRow {
                                row,
                                result: Err(vec![error]),
                            }));
                        }
                    }
                }
                Some(Ok(ParsedRow {
                    row,
                    result: build(row, &cells, region),
                }))
            }
            Source::Ndjson {
                reader,
                line,
                keys,
                explicit,
                mapping,
            } => loop {
                line.clear();
                let read = match reader.read_line(line) {
                    Ok(0) => return None,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        // Not UTF-8: skip to the end of the line and report the row.
                        let mut rest = Vec::new();
                        let n = match reader.read_until(b'\n', &mut rest) {
                            Ok(n) => n,
                            Err(e) => return Some(Err(ImportError::Io(e))),
                        };
                        self.offset += n as u64;
                        self.row += 1;
                        return Some(Ok(invalid(self.row, None, "the line is not valid UTF-8")));
                    }
                    Err(e) => return Some(Err(ImportError::Io(e))),
                };
                self.offset += read as u64;
                let text = line.trim();
                if text.is_empty() {
                    continue;
                }
                self.row += 1;
                let row = self.row;
                let text = if row == 1 {
                    text.trim_start_matches('\u{feff}')
                } else {
                    text
                };
                let object = match serde_json::from_str::<serde_json::Value>(text) {
                    Ok(serde_json::Value::Object(map)) => map,
                    Ok(_) => return Some(Ok(invalid(row, None, "the line is not a JSON object"))),
                    Err(e) => {
                        return Some(Ok(invalid(
                            row,
                            None,
                            &format!("the line is not valid JSON (column {})", e.column()),
                        )));
                    }
                };
                let mut cells: Vec<(&Field, &str, Cell)> = Vec::with_capacity(object.len());
                for key in object.keys() {
                    if !keys.contains_key(key) {
                        let field = ndjson_field(key, explicit);
                        match &field {
                            Some(f) => mapping
                                .mapped
                                .push((mapping.mapped.len(), key.clone(), f.clone())),
                            None => mapping.ignored.push(key.clone()),
                        }
                        keys.insert(key.clone(), field);
                    }
                }
                for (key, value) in &object {
                    if let Some(Some(field)) = keys.get(key)
                        && !cells.iter().any(|(f, _, _)| *f == field)
                    {
                        cells.push((field, key.as_str(), Cell::Json(value)));
                    }
                }
                return Some(Ok(ParsedRow {
                    row,
                    result: build(row, &cells, region),
                }));
            },
        }
    }
}

/// The field an NDJSON key fills: an explicit mapping first, then well-known names.
fn ndjson_field(key: &str, explicit: &[(String, String)]) -> Option<Field> {
    match explicit.iter().find(|(column, _)| column == key) {
        Some((_, target)) => Field::from_target(target),
        None => Field::recognise(key),
    }
}

fn csv_error(e: csv::Error) -> ImportError {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => ImportError::Io(io),
        other => ImportError::Header(format!("the file is not readable CSV: {other:?}")),
    }
}

fn invalid(row: u64, column: Option<&str>, reason: &str) -> ParsedRow {
    ParsedRow {
        row,
        result: Err(vec![RowError {
            row,
            column: column.map(str::to_owned),
            reason: reason.to_owned(),
        }]),
    }
}

/// Builds and validates one row from its mapped cells.
fn build(
    row: u64,
    cells: &[(&Field, &str, Cell)],
    region: Option<&CountryCode>,
) -> Result<RowData, Vec<RowError>> {
    let mut draft = LeadDraft::default();
    let mut errors = Vec::new();
    let mut archived_at = None;
    let mut custom = serde_json::Map::new();
    let mut has_custom = false;
    let mut full_name = None;
    let mut phone: Option<(String, &str)> = None;
    // Which column set each API field, to name it in errors.
    let mut origin: Vec<(&'static str, &str)> = Vec::new();
    let mut fail = |column: &str, reason: String| {
        errors.push(RowError {
            row,
            column: Some(column.to_owned()),
            reason,
        })
    };
    for (field, column, cell) in cells {
        let field: &Field = field;
        if let (Field::CustomFields, Cell::Json(value)) = (field, cell) {
            match value {
                serde_json::Value::Object(map) => {
                    has_custom = true;
                    custom.extend(map.clone());
                }
                serde_json::Value::Null => {}
                _ => fail(column, "custom_fields must be a JSON object".into()),
            }
            origin.push((field.api_name(), column));
            continue;
        }
        if let (Field::Tags, Cell::Json(serde_json::Value::Array(items))) = (field, cell) {
            let tags: Vec<String> = items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect();
            draft.tags = Patch::Set(tags);
            origin.push((field.api_name(), column));
            continue;
        }
        if let (Field::Custom(key), Cell::Json(value)) = (field, cell) {
            if !value.is_null() {
                has_custom = true;
                custom.insert(key.clone(), (*value).clone());
            }
            continue;
        }
        let Some(text) = cell.text() else { continue };
        let text = one_line(text.trim());
        let text = text.as_ref();
        match field {
            Field::Text(name) => match lead_column(name).and_then(|c| c.import) {
                Some(set) => set(&mut draft, text.to_owned()),
                None => continue,
            },
            Field::FullName => full_name = Some(text.to_owned()),
            Field::Website => {
                if !draft.company_domain.is_set() {
                    draft.company_domain = Patch::Set(text.to_owned());
                } else {
                    continue;
                }
            }
            // normalised after the loop: a national number takes the row's own country
            Field::Phone => phone = Some((text.to_owned(), *column)),
            Field::Country => draft.country = Patch::Set(normalize::country(text)),
            Field::Status => match LeadStatus::parse(text) {
                Some(s) => draft.status = Patch::Set(s),
                None => {
                    fail(
                        column,
                        format!(
                            "'{text}' is not a lead status (NEW, CONTACTED, QUALIFIED, UNQUALIFIED, CUSTOMER)"
                        ),
                    );
                    continue;
                }
            },
            Field::Score => match parse_score(text) {
                Some(v) => draft.score = Patch::Set(v),
                None => {
                    fail(column, format!("'{text}' is not a whole number"));
                    continue;
                }
            },
            Field::Tags => match parse_tags(text) {
                Ok(tags) => draft.tags = Patch::Set(tags),
                Err(reason) => {
                    fail(column, reason);
                    continue;
                }
            },
            Field::CustomFields => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(map)) => {
                    has_custom = true;
                    custom.extend(map);
                }
                _ => {
                    fail(column, "custom_fields must be a JSON object".into());
                    continue;
                }
            },
            Field::Custom(key) => {
                has_custom = true;
                custom.insert(key.clone(), serde_json::Value::String(text.to_owned()));
                continue;
            }
            Field::ArchivedAt => match DateTime::parse_from_rfc3339(text) {
                Ok(at) => archived_at = Some(at.to_utc()),
                Err(_) => {
                    fail(column, "archived_at must be an RFC 3339 timestamp".into());
                    continue;
                }
            },
            Field::Informational => continue,
        }
        origin.push((field.api_name(), column));
    }
    if let Some((text, column)) = phone {
        let own_country = match &draft.country {
            Patch::Set(code) => CountryCode::parse("country", code).ok(),
            _ => None,
        };
        match normalize::phone(&text, own_country.as_ref().or(region)) {
            Some(p) => {
                draft.phone = Patch::Set(p);
                origin.push((Field::Phone.api_name(), column));
            }
            None => errors.push(RowError {
                row,
                column: Some(column.to_owned()),
                reason: "the phone number has no country code, and neither the row's country nor the \
                         import's default region says which"
                    .into(),
            }),
        }
    }
    if let Some(name) = full_name
        && !draft.first_name.is_set()
        && !draft.last_name.is_set()
    {
        let column = cells
            .iter()
            .find(|(f, _, _)| **f == Field::FullName)
            .map_or("", |(_, c, _)| *c);
        match name.rsplit_once(char::is_whitespace) {
            Some((first, last)) => {
                draft.first_name = Patch::Set(first.trim().to_owned());
                draft.last_name = Patch::Set(last.trim().to_owned());
                origin.push(("lastName", column));
            }
            None => draft.first_name = Patch::Set(name),
        }
        origin.push(("firstName", column));
    }
    if has_custom {
        draft.custom_fields = Patch::Set(serde_json::Value::Object(custom));
    }
    let identifies = draft.email.is_set()
        || draft.first_name.is_set()
        || draft.last_name.is_set()
        || draft.company_name.is_set();
    if !identifies && errors.is_empty() {
        errors.push(RowError {
            row,
            column: None,
            reason: "the row has no email, name or company".into(),
        });
    }
    match LeadPatch::parse(draft) {
        Ok(patch) if errors.is_empty() => {
            let email = match &patch.email {
                Patch::Set(e) => Some(e.clone()),
                _ => None,
            };
            Ok(RowData {
                email,
                patch,
                archived_at,
            })
        }
        Ok(_) => Err(errors),
        Err(invalid) => {
            for e in invalid.0 {
                let api = e.field.first().map(String::as_str).unwrap_or_default();
                let column = origin
                    .iter()
                    .find(|(a, _)| *a == api)
                    .map(|(_, c)| (*c).to_owned());
                errors.push(RowError {
                    row,
                    column,
                    reason: e.message,
                });
            }
            errors.sort_by(|a, b| a.column.cmp(&b.column));
            Err(errors)
        }
    }
}

/// Line breaks and tabs inside a cell (a spreadsheet's Alt+Enter) become single spaces.
fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['\n', '\r', '\t']) {
        return std::borrow::Cow::Borrowed(text);
    }
    let words: Vec<&str> = text
        .split(['\n', '\r', '\t', ' '])
        .filter(|w| !w.is_empty())
        .collect();
    std::borrow::Cow::Owned(words.join(" "))
}

/// A whole number, also written as `85.0`.
fn parse_score(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().or_else(|| {
        let f = text.parse::<f64>().ok()?;
        (f.fract() == 0.0 && f.abs() < 1e15).then_some(f as i64)
    })
}

/// Tags as a JSON array (`["a","b"]`, what an export writes) or a list separated by `;` (or
/// `,` when there is no `;`).
fn parse_tags(text: &str) -> Result<Vec<String>, String> {
    if text.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(text)
            .map_err(|_| "tags must be a JSON array of strings or a list separated by ';'".to_owned());
    }
    let separator = if text.contains(';') { ';' } else { ',' };
    Ok(text
        .split(separator)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect())
}
