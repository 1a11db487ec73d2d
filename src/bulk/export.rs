//! Export of a lead filter to CSV or NDJSON, streamed in keyset batches.
//!
//! The column names are a contract shared with the importer, which maps them back, so an
//! export imports again field for field. Leads are read in `(created_at, id)` order, one
//! statement per batch and no `OFFSET`; a reader task stays one or two batches ahead of the
//! encoder through a bounded channel, so memory holds a few batches however many leads match.
//! Enriched columns come from stored enrichment records only: an export never calls a provider.
//! Batches are consistent on their own, not with each other: a lead changed during an export
//! appears as it was when its batch was read.
//!
//! **Exports stream in keyset batches.** One `list_leads` statement per batch (default 5,000
//! leads, `export_batch_size`), ordered by `(created_at, id)`, the next batch starting after the
//! last lead of the previous one: no `OFFSET`, no long-lived cursor or transaction holding a
//! connection for the whole download. A reader task stays at most two batches ahead of the encoder
//! (bounded channel) and the HTTP body is pulled by the client, so a slow client slows the reader
//! and memory holds a few batches whatever the size of the export. The header row is the stream's
//! first chunk, sent before any lead is read. Each batch is consistent; the export as a whole is
//! not a snapshot (a lead changed during a long export appears as its batch saw it; a lead created
//! meanwhile appears if it sorts after the current position).
//!
//! **Enriched export columns come from stored records** (one `enrichment_records` look-up per
//! batch); exports never call providers. A field's provenance is the source that supplied it.

use crate::domain::{
    EnrichmentRecord, Group, LEAD_COLUMNS, Lead, LeadColumn, LeadFilter, LeadId, LeadOrder, LeadQuery,
    PageDirection, Timestamp, Value as ColumnValue, WorkspaceId, lead_export_json,
};
use crate::store::{Store, StoreError};
use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The lead's own columns, in order (CSV header and NDJSON keys): those of
/// `domain::LEAD_COLUMNS` that exports carry.
pub fn lead_columns() -> impl Iterator<Item = &'static LeadColumn> {
    LEAD_COLUMNS.iter().filter(|c| c.is_exported())
}

/// Leads per statement unless configured otherwise.
pub const DEFAULT_BATCH: usize = 5_000;
/// The largest batch accepted: one batch's enrichment look-up binds one value per lead.
pub const MAX_BATCH: usize = 10_000;
/// Batches read ahead of the encoder.
const READ_AHEAD: usize = 2;

/// The file format of an export.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    /// RFC 4180, with a header row.
    Csv,
    /// One JSON object per line.
    Ndjson,
}

impl Format {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "csv" => Some(Format::Csv),
            "ndjson" => Some(Format::Ndjson),
            _ => None,
        }
    }

    /// The file extension, also the name used on the command line and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Ndjson => "application/x-ndjson",
        }
    }
}

/// What an export holds besides the lead's own columns.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Extras {
    /// Enrichment groups whose stored values become `<group>.<field>` columns.
    pub groups: Vec<Group>,
    /// Adds `.provider`, `.fetched_at` and `.confidence` after each enriched column.
    pub provenance: bool,
}

impl Extras {
    /// Reads `include=person,company,…` (comma-separated group names, as in GraphQL); an
    /// empty string includes nothing. Groups keep the order given; repeats are dropped.
    pub fn parse_include(raw: &str) -> Result<Vec<Group>, String> {
        let mut groups = Vec::new();
        for name in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let group = Group::parse(name).ok_or_else(|| {
                let known: Vec<&str> = Group::ALL.iter().map(|g| g.as_str()).collect();
                format!(
                    "`include` names an unknown group `{name}`; use {}",
                    known.join(", ")
                )
            })?;
            if !groups.contains(&group) {
                groups.push(group);
            }
        }
        Ok(groups)
    }

    /// Every column of a CSV export, in order.
    pub fn columns(&self) -> Vec<String> {
        let mut columns: Vec<String> = lead_columns().map(|c| c.name.to_owned()).collect();
        for group in &self.groups {
            for field in group.fields() {
                let name = format!("{}.{field}", group.as_str());
                columns.push(name.clone());
                if self.provenance {
                    columns.push(format!("{name}.provider"));
                    columns.push(format!("{name}.fetched_at"));
                    columns.push(format!("{name}.confidence"));
                }
            }
        }
        columns
    }
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-28T10:00:00.123456Z`.
pub fn timestamp(t: Timestamp) -> String {
    ColumnValue::timestamp_text(t)
}

/// An enriched value in one CSV cell: text as is, numbers and booleans printed, lists and
/// objects as JSON.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Where one enriched field came from: the source that supplied it.
fn provenance_of<'r>(record: &'r EnrichmentRecord, field: &str) -> Option<&'r crate::domain::Source> {
    record
        .sources
        .iter()
        .find(|s| s.fields.iter().any(|f| f == field))
}

/// Turns leads (and their enrichment records) into the bytes of one format.
pub struct Encoder {
    format: Format,
    extras: Extras,
    csv: csv::WriterBuilder,
}

type Records<'r> = HashMap<(LeadId, Group), &'r EnrichmentRecord>;

impl Encoder {
    pub fn new(format: Format, extras: Extras) -> Self {
        let mut csv = csv::WriterBuilder::new();
        csv.terminator(csv::Terminator::CRLF);
        Self { format, extras, csv }
    }

    /// What precedes the rows: the CSV header row (nothing for NDJSON).
    pub fn header(&mut self) -> Vec<u8> {
        match self.format {
            Format::Csv => {
                let mut w = self.csv.from_writer(Vec::new());
                // writing to a Vec cannot fail
                let _ = w.write_record(self.extras.columns());
                w.into_inner().unwrap_or_default()
            }
            Format::Ndjson => Vec::new(),
        }
    }

    /// The rows of `leads`, in order; `records` may hold records of other leads and groups.
    pub fn rows(&mut self, leads: &[Lead], records: &[EnrichmentRecord]) -> Vec<u8> {
        let by_key: Records = records.iter().map(|r| ((r.lead_id, r.group), r)).collect();
        let mut out = Vec::with_capacity(leads.len() * 384);
        match self.format {
            Format::Csv => {
                let mut w = self.csv.from_writer(out);
                for lead in leads {
                    // writing to a Vec cannot fail
                    let _ = self.csv_row(&mut w, lead, &by_key);
                }
                w.into_inner().unwrap_or_default()
            }
            Format::Ndjson => {
                for lead in leads {
                    let object = self.json_object(lead, &by_key);
                    // a map of JSON values always serialises
                    let _ = serde_json::to_writer(&mut out, &object);
                    out.push(b'\n');
                }
                out
            }
        }
    }

    /// Writes one record field by field, without collecting it first.
    fn csv_row(&self, w: &mut csv::Writer<Vec<u8>>, lead: &Lead, records: &Records) -> csv::Result<()> {
        let opt = |v: Option<&str>| v.unwrap_or_default().to_owned();
        for column in lead_columns() {
            w.write_field((column.get)(lead).to_cell())?;
        }
        for group in &self.extras.groups {
            let record = records.get(&(lead.id, *group));
            for field in group.fields() {
                let value = record.and_then(|r| r.fields.0.get(*field));
                w.write_field(value.map(cell).unwrap_or_default())?;
                if self.extras.provenance {
                    let source = value.and(record).and_then(|r| provenance_of(r, field));
                    w.write_field(opt(source.map(|s| s.provider.as_str())))?;
                    w.write_field(source.map(|s| timestamp(s.fetched_at)).unwrap_or_default())?;
                    w.write_field(source.map(|s| s.confidence.to_string()).unwrap_or_default())?;
                }
            }
        }
        // an empty record ends the current one
        w.write_record(None::<&[u8]>)
    }

    fn json_object(&self, lead: &Lead, records: &Records) -> Map<String, Value> {
        let text = |v: Option<&str>| v.map_or(Value::Null, |s| Value::String(s.to_owned()));
        let mut object = lead_export_json(lead);
        if !self.extras.groups.is_empty() {
            let mut enrichment = Map::new();
            for group in &self.extras.groups {
                let mut fields = Map::new();
                if let Some(record) = records.get(&(lead.id, *group)) {
                    for field in group.fields() {
                        let Some(value) = record.fields.0.get(*field) else {
                            continue;
                        };
                        let mut entry = Map::new();
                        entry.insert("value".into(), value.clone());
                        if self.extras.provenance {
                            let source = provenance_of(record, field);
                            entry.insert("provider".into(), text(source.map(|s| s.provider.as_str())));
                            entry.insert(
                                "fetched_at".into(),
                                source.map_or(Value::Null, |s| Value::String(timestamp(s.fetched_at))),
                            );
                            entry.insert(
                                "confidence".into(),
                                source.map_or(Value::Null, |s| Value::from(s.confidence)),
                            );
                        }
                        fields.insert((*field).to_owned(), Value::Object(entry));
                    }
                }
                enrichment.insert(group.as_str().to_owned(), Value::Object(fields));
            }
            object.insert("enrichment".into(), Value::Object(enrichment));
        }
        object
    }
}

/// One piece of an export's body: bytes and how many leads they hold.
#[derive(Clone, Debug)]
pub struct Chunk {
    pub bytes: Bytes,
    pub rows: u64,
}

/// What to export.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    pub filter: LeadFilter,
    pub format: Format,
    pub extras: Extras,
    /// Leads per statement (clamped to 1..=`MAX_BATCH`).
    pub batch_size: usize,
}

/// Streams the export of `ws`: first the header (at once, before any lead is read), then one
/// chunk per batch. A store failure ends the stream with that error after the chunks already
/// produced. Dropping the stream stops the reader at its next batch.
pub fn stream(
    store: Store,
    ws: WorkspaceId,
    request: ExportRequest,
) -> impl Stream<Item = Result<Chunk, StoreError>> + Send + 'static {
    let batch_size = request.batch_size.clamp(1, MAX_BATCH);
    let (tx, mut rx) = tokio::sync::mpsc::channel(READ_AHEAD);
    let groups = request.extras.groups.clone();
    let filter = request.filter;
    let mut encoder = Encoder::new(request.format, request.extras);
    async_stream::stream! {
        yield Ok(Chunk { bytes: Bytes::from(encoder.header()), rows: 0 });
        tokio::spawn(read_batches(store, ws, filter, groups, batch_size, tx));
        while let Some(batch) = rx.recv().await {
            match batch {
                Ok((leads, records)) => {
                    let bytes = encoder.rows(&leads, &records);
                    yield Ok(Chunk { bytes: Bytes::from(bytes), rows: leads.len() as u64 });
                }
                Err(e) => {
                    yield Err(e);
                    return;
                }
            }
        }
    }
}

type Batch = (Vec<Lead>, Vec<EnrichmentRecord>);

/// Reads matching leads in keyset batches ordered by `(created_at, id)` and sends each with
/// its enrichment records (one look-up per batch) until the leads run out, the store fails or
/// the receiver is gone.
async fn read_batches(
    store: Store,
    ws: WorkspaceId,
    filter: LeadFilter,
    groups: Vec<Group>,
    batch_size: usize,
    tx: tokio::sync::mpsc::Sender<Result<Batch, StoreError>>,
) {
    let order = LeadOrder::default();
    let mut query = LeadQuery {
        filter,
        order,
        after: None,
        before: None,
        limit: batch_size,
        direction: PageDirection::Forward,
    };
    loop {
        // `list_leads` returns up to `limit + 1` rows; all of them are exported, and fewer than
        // that means the last batch.
        let read = async {
            let leads = store.list_leads(ws, &query).await?;
            let records = if groups.is_empty() || leads.is_empty() {
                Vec::new()
            } else {
                let ids: Vec<_> = leads.iter().map(|l| l.id).collect();
                store.enrichment_records(ws, &ids, &groups).await?
            };
            Ok::<_, StoreError>((leads, records))
        };
        match read.await {
            Ok((leads, records)) => {
                let last = leads.last().map(|l| crate::domain::Cursor::for_lead(order, l));
                let done = leads.len() <= batch_size;
                if !leads.is_empty() && tx.send(Ok((leads, records))).await.is_err() {
                    return;
                }
                match last {
                    Some(cursor) if !done => query.after = Some(cursor),
                    _ => return,
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LeadStatus, Source, WorkspaceId, now};

    fn lead() -> Lead {
        let mut lead = Lead::new(WorkspaceId::new(), now());
        lead.first_name = Some("Ann, \"Annie\"".into());
        lead.status = LeadStatus::Qualified;
        lead.tags = crate::domain::Tags::parse("tags", &["a", "b"]).unwrap();
        lead
    }

    #[test]
    fn csv_header_lists_lead_columns_then_enriched_ones_with_provenance() {
        let extras = Extras {
            groups: vec![Group::EmailVerification],
            provenance: true,
        };
        let columns = extras.columns();
        let own = [
            "id",
            "email",
            "first_name",
            "last_name",
            "title",
            "company_name",
            "company_domain",
            "phone",
            "linkedin_url",
            "country",
            "time_zone",
            "source",
            "status",
            "owner",
            "score",
            "tags",
            "custom_fields",
            "created_at",
            "updated_at",
            "archived_at",
        ];
        assert_eq!(&columns[..20], own.map(String::from).as_slice());
        assert_eq!(
            &columns[20..],
            [
                "emailVerification.status",
                "emailVerification.status.provider",
                "emailVerification.status.fetched_at",
                "emailVerification.status.confidence",
                "emailVerification.score",
                "emailVerification.score.provider",
                "emailVerification.score.fetched_at",
                "emailVerification.score.confidence",
            ]
        );
    }

    #[test]
    fn csv_quotes_per_rfc_4180_and_leaves_absent_values_empty() {
        let mut encoder = Encoder::new(Format::Csv, Extras::default());
        let lead = lead();
        let text = String::from_utf8(encoder.rows(std::slice::from_ref(&lead), &[])).unwrap();
        assert!(text.contains(r#","Ann, ""Annie""",,"#), "{text}");
        assert!(text.contains(r#","[""a"",""b""]",{},"#), "{text}");
        assert!(text.ends_with(",\r\n"), "archived_at is empty: {text}");
    }

    #[test]
    fn ndjson_has_nulls_numbers_and_enrichment_with_provenance() {
        let lead = lead();
        let at = now();
        let mut record = EnrichmentRecord::empty(lead.id, Group::Company, String::new(), at);
        let mut answer = crate::domain::Fields::default();
        answer.0.insert("industry".into(), Value::from("Software"));
        record.merge(
            "sandbox",
            answer,
            Source {
                provider: "sandbox".into(),
                fetched_at: at,
                expires_at: at,
                confidence: 0.9,
                credits: 1,
                fields: Vec::new(),
            },
        );
        let mut encoder = Encoder::new(
            Format::Ndjson,
            Extras {
                groups: vec![Group::Company],
                provenance: true,
            },
        );
        assert!(encoder.header().is_empty());
        let out = encoder.rows(&[lead], &[record]);
        let line: Value = serde_json::from_slice(out.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(line["email"], Value::Null);
        assert_eq!(line["score"], Value::from(0));
        assert_eq!(line["tags"], serde_json::json!(["a", "b"]));
        assert_eq!(line["status"], "QUALIFIED");
        let industry = &line["enrichment"]["company"]["industry"];
        assert_eq!(industry["value"], "Software");
        assert_eq!(industry["provider"], "sandbox");
        assert_eq!(industry["confidence"], 0.9);
        assert_eq!(industry["fetched_at"], Value::from(timestamp(at)));
    }

    #[test]
    fn timestamps_have_microseconds_and_z() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-28T10:00:00.123456Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(timestamp(t), "2026-11-28T10:00:00.123456Z");
    }

    #[test]
    fn include_accepts_known_groups_and_names_an_unknown_one() {
        assert_eq!(
            Extras::parse_include("company, person,company").unwrap(),
            vec![Group::Company, Group::Person]
        );
        assert_eq!(Extras::parse_include("").unwrap(), Vec::<Group>::new());
        let err = Extras::parse_include("company,social").unwrap_err();
        assert!(err.contains("`social`"), "{err}");
    }
}
