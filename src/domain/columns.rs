//! The lead's columns, defined once. The store builds its SELECT lists, INSERT and COPY rows,
//! compare-and-set updates and row decoding on both backends from `LEAD_COLUMNS`; exports take
//! their columns and cells from it, imports their canonical headers, events their lead
//! snapshot and changed fields, erasure the values that identify a person. Adding a lead field
//! means: the two migrations, the field on `Lead` (and `LeadDraft`/`LeadPatch`), one entry
//! here, and the GraphQL type.
//!
//! `Value` and `ColumnType` are the portable forms every table's values take between the store
//! and the rest (backups carry them too).

use super::ids::{LeadId, WorkspaceId};
use super::lead::{Lead, LeadDraft, LeadStatus, Patch, Timestamp};
use super::values::{
    CountryCode, CustomFields, Domain, EmailAddress, LinkedInUrl, Phone, Score, Tags, TimeZone,
};
use chrono::{DateTime, SecondsFormat};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A column's type as both backends can hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Uuid,
    /// An instant, microsecond precision, UTC.
    Timestamp,
    /// Integers and booleans (0/1 on both backends).
    Integer,
    Real,
    Text,
    Blob,
}

/// One value of a row in portable form.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Uuid(Uuid),
    Timestamp(Timestamp),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Integer(i64::from(v))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Integer(i64::from(v))
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<Uuid> for Value {
    fn from(v: Uuid) -> Self {
        Value::Uuid(v)
    }
}
impl From<Timestamp> for Value {
    fn from(v: Timestamp) -> Self {
        Value::Timestamp(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl Value {
    /// RFC 3339 in UTC with microseconds, as exports write instants.
    pub fn timestamp_text(t: Timestamp) -> String {
        t.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    /// The value in one CSV cell: empty for null, JSON columns as their JSON text.
    pub fn to_cell(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Integer(n) => n.to_string(),
            Value::Real(x) => x.to_string(),
            Value::Text(s) => s.clone(),
            Value::Uuid(u) => u.to_string(),
            Value::Timestamp(t) => Self::timestamp_text(*t),
            Value::Blob(b) => b.iter().map(|byte| format!("{byte:02x}")).collect(),
        }
    }

    /// The value as JSON: `json` text is parsed back into the document it holds; instants go
    /// through `time`.
    fn to_json(&self, json: bool, time: fn(Timestamp) -> serde_json::Value) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Integer(n) => (*n).into(),
            Value::Real(x) => (*x).into(),
            Value::Text(s) if json => serde_json::from_str(s).unwrap_or(serde_json::Value::Null),
            Value::Text(s) => s.clone().into(),
            Value::Uuid(u) => u.to_string().into(),
            Value::Timestamp(t) => time(*t),
            Value::Blob(_) => self.to_cell().into(),
        }
    }

    /// Reads a JSON value written by `to_json` back as a value of type `ty`.
    fn from_json(v: &serde_json::Value, ty: ColumnType, json: bool) -> Result<Self, String> {
        Ok(match (ty, v) {
            (_, serde_json::Value::Null) => Value::Null,
            (ColumnType::Text, other) if json => Value::Text(other.to_string()),
            (ColumnType::Text, serde_json::Value::String(s)) => Value::Text(s.clone()),
            (ColumnType::Integer, n) => Value::Integer(n.as_i64().ok_or("not an integer")?),
            (ColumnType::Real, n) => Value::Real(n.as_f64().ok_or("not a number")?),
            (ColumnType::Uuid, serde_json::Value::String(s)) => {
                Value::Uuid(s.parse().map_err(|_| "not a uuid")?)
            }
            (ColumnType::Timestamp, serde_json::Value::String(s)) => Value::Timestamp(
                DateTime::parse_from_rfc3339(s)
                    .map_err(|_| "not an RFC 3339 instant")?
                    .to_utc(),
            ),
            _ => return Err(format!("a {ty:?} value was expected")),
        })
    }
}

/// What a lead column is to the code around the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The lead's id.
    Key,
    /// The workspace it belongs to (never exported or put in events: the reader knows it).
    Tenant,
    /// A field clients set.
    Field,
    /// Computed from other fields when written, never read back (search text).
    Derived,
    Created,
    Updated,
    /// When it was archived: changed by archiving and restoring, and by imports.
    Archived,
    /// The optimistic-concurrency version.
    Version,
}

/// One column of the `leads` table.
pub struct LeadColumn {
    /// The database column; also the export header and the importer's canonical name.
    pub name: &'static str,
    /// The API's name: GraphQL field, event payload key, validation error field.
    pub api: &'static str,
    pub ty: ColumnType,
    pub nullable: bool,
    /// Text holding a JSON document (tags, custom fields): exports and events carry the
    /// document itself.
    pub json: bool,
    /// Stored `NOT NULL DEFAULT ''` so that it can be an ordinary keyset sort key; `''` is
    /// read back as absent.
    pub empty_is_null: bool,
    pub role: Role,
    /// Identifies the person: looked for (and erased) in free text when the lead is erased.
    pub personal: bool,
    /// The column's value of a lead (absent values as `Null`).
    pub get: fn(&Lead) -> Value,
    /// Sets the column's value on a lead being read back; values were valid when written, so
    /// they are trusted (only their type is checked).
    pub set: fn(&mut Lead, Value) -> Result<(), String>,
    /// For plain text fields: the import fills the draft with the cell's text as is (fields
    /// with their own normalisation, such as phone or country, have `None` and are handled
    /// by the importer).
    pub import: Option<fn(&mut LeadDraft, String)>,
}

impl LeadColumn {
    /// Read back from the store (all but derived columns).
    pub fn is_read(&self) -> bool {
        self.role != Role::Derived
    }

    /// Rewritten by a compare-and-set update (all but the id, the tenant and the creation
    /// time).
    pub fn is_updated(&self) -> bool {
        !matches!(self.role, Role::Key | Role::Tenant | Role::Created)
    }

    /// Written to exports.
    pub fn is_exported(&self) -> bool {
        !matches!(self.role, Role::Tenant | Role::Derived | Role::Version)
    }

    /// Carried in event snapshots.
    fn in_snapshot(&self) -> bool {
        !matches!(self.role, Role::Tenant | Role::Derived)
    }

    /// Reported in an event's `changedFields`.
    fn is_compared(&self) -> bool {
        matches!(self.role, Role::Field | Role::Archived)
    }

    /// The value as the store holds it (`''` for an absent sort key).
    pub fn stored(&self, lead: &Lead) -> Value {
        match (self.get)(lead) {
            Value::Null if self.empty_is_null => Value::Text(String::new()),
            v => v,
        }
    }

    /// Sets a value read from the store (`''` of a sort key as absent).
    pub fn load(&self, lead: &mut Lead, value: Value) -> Result<(), String> {
        let value = match value {
            Value::Text(s) if self.empty_is_null && s.is_empty() => Value::Null,
            v => v,
        };
        if value == Value::Null && !self.nullable {
            return Err(format!("{} is null", self.name));
        }
        (self.set)(lead, value).map_err(|e| format!("{}: {e}", self.name))
    }
}

fn text(v: Value) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Text(s) => Ok(Some(s)),
        other => Err(format!("{other:?} is not text")),
    }
}

fn int(v: Value) -> Result<i64, String> {
    match v {
        Value::Integer(n) => Ok(n),
        other => Err(format!("{other:?} is not an integer")),
    }
}

fn instant(v: Value) -> Result<Option<Timestamp>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Timestamp(t) => Ok(Some(t)),
        other => Err(format!("{other:?} is not an instant")),
    }
}

fn uuid(v: Value) -> Result<Uuid, String> {
    match v {
        Value::Uuid(u) => Ok(u),
        other => Err(format!("{other:?} is not a uuid")),
    }
}

fn opt_str<T: AsRef<str>>(v: &Option<T>) -> Value {
    v.as_ref()
        .map_or(Value::Null, |s| Value::Text(s.as_ref().to_owned()))
}

/// A column with the defaults of a nullable, client-set text field.
const TEXT: LeadColumn = LeadColumn {
    name: "",
    api: "",
    ty: ColumnType::Text,
    nullable: true,
    json: false,
    empty_is_null: false,
    role: Role::Field,
    personal: false,
    get: |_| Value::Null,
    set: |_, _| Ok(()),
    import: None,
};

/// Every column of `leads`, in the order the store selects them and exports write them.
pub const LEAD_COLUMNS: &[LeadColumn] = &[
    LeadColumn {
        name: "id",
        api: "id",
        ty: ColumnType::Uuid,
        nullable: false,
        role: Role::Key,
        get: |l| Value::Uuid(l.id.as_uuid()),
        set: |l, v| {
            l.id = LeadId::from_uuid(uuid(v)?);
            Ok(())
        },
        ..TEXT
    },
    LeadColumn {
        name: "workspace_id",
        api: "workspaceId",
        ty: ColumnType::Uuid,
        nullable: false,
        role: Role::Tenant,
        get: |l| Value::Uuid(l.workspace_id.as_uuid()),
        set: |l, v| {
            l.workspace_id = WorkspaceId::from_uuid(uuid(v)?);
            Ok(())
        },
        ..TEXT
    },
    LeadColumn {
        name: "email",
        api: "email",
        personal: true,
        get: |l| opt_str(&l.email),
        set: |l, v| {
            l.email = text(v)?.map(EmailAddress::from_trusted);
            Ok(())
        },
        import: Some(|d, s| d.email = Patch::Set(s)),
        ..TEXT
    },
    LeadColumn {
        name: "first_name",
        api: "firstName",
        personal: true,
        get: |l| opt_str(&l.first_name),
        set: |l, v| {
            l.first_name = text(v)?;
            Ok(())
        },
        import: Some(|d, s| d.first_name = Patch::Set(s)),
        ..TEXT
    },
    LeadColumn {
        name: "last_name",
        api: "lastName",
        empty_is_null: true,
        personal: true,
        get: |l| opt_str(&l.last_name),
        set: |l, v| {
            l.last_name = text(v)?;
            Ok(())
        },
        import: Some(|d, s| d.last_name = Patch::Set(s)),
        ..TEXT
    },
    LeadColumn {
        name: "title",
        api: "title",
        get: |l| opt_str(&l.title),
        set: |l, v| {
            l.title = text(v)?;
            Ok(())
        },
        import: Some(|d, s| d.title = Patch::Set(s)),
        ..TEXT
    },
    LeadColumn {
        name: "company_name",
        api: "companyName",
        empty_is_null: true,
        get: |l| opt_str(&l.company_name),
        set: |l, v| {
            l.company_name = text(v)?;
            Ok(())
        },
        import: Some(|d, s| d.company_name = Patch::Set(s)),
        ..TEXT
    },
    LeadColumn {
        name: "company_domain",
        api: "companyDomain",
        get: |l| opt_str(&l.company_domain),
        set: |l, v| {
            l.company_domain = text(v)?.map(Domain::from_trusted);
            Ok(())
        },
        import: Some(|d, s| d.company_domain = Patch::Set(s)),
        ..TEXT
    },
    LeadColumn {
        name: "phone",
        api: "phone",
        personal: true,
        get: |l| opt_str(&l.phone),
        set: |l, v| {
            l.phone = text(v)?.map(Phone::from_trusted);
            Ok(())
        },
        ..TEXT
    },
    LeadColumn {
        name: "linkedin_url",
        api: "linkedinUrl",
        personal: true,
        get: |l| opt_str(&l.linkedin_url),
        set: |l, v| {
            l.linkedin_url = text(v)?.map(LinkedInUrl::from_trusted);
            Ok(())
        },
        import: Some(|d, s| d.linkedin_url = Patch::Set(s)),
        ..TEXT
    },
    LeadColumn {
        name: "country",
        api: "country",
        get: |l| opt_str(&l.country),
        set: |l, v| {
            l.country = text(v)?.map(CountryCode::from_trusted);
            Ok(())
        },
        ..TEXT
    },
    LeadColumn {
        name: "time_zone",
        api: "timeZone",
        get: |l| opt_str(&l.time_zone),
        set: |l, v| {
            l.time_zone = text(v)?.map(TimeZone::from_trusted);
            Ok(())
        },
        import: Some(|d, s| d.time_zone = Patch::Set(s)),
        ..TEXT
    },
    LeadColumn {
        name: "source",
        api: "source",
        get: |l| opt_str(&l.source),
        set: |l, v| {
            l.source = text(v)?;
            Ok(())
        },
        import: Some(|d, s| d.source = Patch::Set(s)),
        ..TEXT
    },
    LeadColumn {
        name: "status",
        api: "status",
        nullable: false,
        get: |l| Value::Text(l.status.as_str().to_owned()),
        set: |l, v| {
            let raw = text(v)?.unwrap_or_default();
            l.status = LeadStatus::parse(&raw).ok_or_else(|| format!("unknown status {raw}"))?;
            Ok(())
        },
        ..TEXT
    },
    LeadColumn {
        name: "owner",
        api: "owner",
        get: |l| opt_str(&l.owner),
        set: |l, v| {
            l.owner = text(v)?;
            Ok(())
        },
        import: Some(|d, s| d.owner = Patch::Set(s)),
        ..TEXT
    },
    LeadColumn {
        name: "score",
        api: "score",
        ty: ColumnType::Integer,
        nullable: false,
        get: |l| Value::Integer(i64::from(l.score.value())),
        set: |l, v| {
            l.score = Score::from_trusted(int(v)?);
            Ok(())
        },
        ..TEXT
    },
    LeadColumn {
        name: "tags",
        api: "tags",
        nullable: false,
        json: true,
        get: |l| Value::Text(serde_json::to_string(&l.tags.as_strs()).unwrap_or_else(|_| "[]".into())),
        set: |l, v| {
            let tags: Vec<String> =
                serde_json::from_str(&text(v)?.unwrap_or_default()).map_err(|_| "not a JSON list")?;
            l.tags = Tags::from_trusted(tags);
            Ok(())
        },
        ..TEXT
    },
    LeadColumn {
        name: "custom_fields",
        api: "customFields",
        nullable: false,
        json: true,
        get: |l| Value::Text(l.custom_fields.to_json_string()),
        set: |l, v| {
            let map = serde_json::from_str(&text(v)?.unwrap_or_default()).map_err(|_| "not a JSON object")?;
            l.custom_fields = CustomFields::from_trusted(map);
            Ok(())
        },
        ..TEXT
    },
    LeadColumn {
        name: "search_text",
        api: "searchText",
        nullable: false,
        role: Role::Derived,
        get: |l| Value::Text(l.search_text()),
        ..TEXT
    },
    LeadColumn {
        name: "created_at",
        api: "createdAt",
        ty: ColumnType::Timestamp,
        nullable: false,
        role: Role::Created,
        get: |l| Value::Timestamp(l.created_at),
        set: |l, v| {
            l.created_at = instant(v)?.ok_or("null")?;
            Ok(())
        },
        ..TEXT
    },
    LeadColumn {
        name: "updated_at",
        api: "updatedAt",
        ty: ColumnType::Timestamp,
        nullable: false,
        role: Role::Updated,
        get: |l| Value::Timestamp(l.updated_at),
        set: |l, v| {
            l.updated_at = instant(v)?.ok_or("null")?;
            Ok(())
        },
        ..TEXT
    },
    LeadColumn {
        name: "archived_at",
        api: "archivedAt",
        ty: ColumnType::Timestamp,
        role: Role::Archived,
        get: |l| l.archived_at.into(),
        set: |l, v| {
            l.archived_at = instant(v)?;
            Ok(())
        },
        ..TEXT
    },
    LeadColumn {
        name: "version",
        api: "version",
        ty: ColumnType::Integer,
        nullable: false,
        role: Role::Version,
        get: |l| Value::Integer(l.version),
        set: |l, v| {
            l.version = int(v)?;
            Ok(())
        },
        ..TEXT
    },
];

/// The columns the store reads back, in `LEAD_COLUMNS` order.
pub fn read_columns() -> impl Iterator<Item = &'static LeadColumn> {
    LEAD_COLUMNS.iter().filter(|c| c.is_read())
}

/// The column named `name` (database spelling).
pub fn lead_column(name: &str) -> Option<&'static LeadColumn> {
    LEAD_COLUMNS.iter().find(|c| c.name == name)
}

/// A lead rebuilt from the values of `read_columns()`, in order.
pub fn lead_from_values(values: impl IntoIterator<Item = Value>) -> Result<Lead, String> {
    let mut values = values.into_iter();
    lead_from_columns(|_, column| {
        values
            .next()
            .ok_or_else(|| format!("no value for {}", column.name))
    })
}

/// A lead rebuilt column by column: `value(i, column)` reads the `i`th of `read_columns()`.
/// Each value goes straight into the lead (the row readers' hot path: nothing is collected).
pub fn lead_from_columns(
    mut value: impl FnMut(usize, &'static LeadColumn) -> Result<Value, String>,
) -> Result<Lead, String> {
    let nil = Uuid::nil();
    let mut lead = Lead::with_id(
        LeadId::from_uuid(nil),
        WorkspaceId::from_uuid(nil),
        DateTime::UNIX_EPOCH,
    );
    for (i, column) in read_columns().enumerate() {
        column.load(&mut lead, value(i, column)?)?;
    }
    Ok(lead)
}

/// The lead as plain JSON keyed by API names, as lead events carry it.
pub fn lead_snapshot(lead: &Lead) -> serde_json::Value {
    let time = |t: Timestamp| serde_json::to_value(t).unwrap_or_default();
    let map = LEAD_COLUMNS
        .iter()
        .filter(|c| c.in_snapshot())
        .map(|c| (c.api.to_owned(), (c.get)(lead).to_json(c.json, time)))
        .collect();
    serde_json::Value::Object(map)
}

/// The lead of a snapshot written by `lead_snapshot`.
pub fn lead_from_snapshot(doc: &serde_json::Value, ws: WorkspaceId) -> Result<Lead, String> {
    let mut lead = Lead::with_id(LeadId::from_uuid(Uuid::nil()), ws, DateTime::UNIX_EPOCH);
    for c in LEAD_COLUMNS.iter().filter(|c| c.in_snapshot()) {
        let raw = doc.get(c.api).unwrap_or(&serde_json::Value::Null);
        let value = Value::from_json(raw, c.ty, c.json).map_err(|e| format!("{}: {e}", c.api))?;
        if value == Value::Null && !c.nullable {
            return Err(format!("{} is missing", c.api));
        }
        (c.set)(&mut lead, value)?;
    }
    Ok(lead)
}

/// The lead's exported columns as one JSON object (NDJSON exports).
pub fn lead_export_json(lead: &Lead) -> serde_json::Map<String, serde_json::Value> {
    let time = |t: Timestamp| serde_json::Value::String(Value::timestamp_text(t));
    LEAD_COLUMNS
        .iter()
        .filter(|c| c.is_exported())
        .map(|c| (c.name.to_owned(), (c.get)(lead).to_json(c.json, time)))
        .collect()
}

/// The API names of the fields that differ between two versions of a lead.
pub fn changed_fields(before: &Lead, after: &Lead) -> Vec<&'static str> {
    LEAD_COLUMNS
        .iter()
        .filter(|c| c.is_compared() && (c.get)(before) != (c.get)(after))
        .map(|c| c.api)
        .collect()
}

/// The texts of the lead's personal columns.
pub fn personal_texts(lead: &Lead) -> impl Iterator<Item = String> + '_ {
    LEAD_COLUMNS
        .iter()
        .filter(|c| c.personal)
        .filter_map(|c| match (c.get)(lead) {
            Value::Text(s) => Some(s),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::now;

    fn full_lead() -> Lead {
        let mut lead = Lead::new(WorkspaceId::new(), now());
        lead.email = Some(EmailAddress::from_trusted("ann@acme.io".into()));
        lead.first_name = Some("Ann".into());
        lead.last_name = Some("Lee".into());
        lead.title = Some("CTO".into());
        lead.company_name = Some("Acme".into());
        lead.company_domain = Some(Domain::from_trusted("acme.io".into()));
        lead.phone = Some(Phone::from_trusted("+14155550100".into()));
        lead.linkedin_url = Some(LinkedInUrl::from_trusted(
            "https://www.linkedin.com/in/ann".into(),
        ));
        lead.country = Some(CountryCode::from_trusted("US".into()));
        lead.source = Some("webinar".into());
        lead.status = LeadStatus::Qualified;
        lead.owner = Some("sam".into());
        lead.score = Score::from_trusted(42);
        lead.tags = Tags::from_trusted(vec!["a".into(), "b".into()]);
        lead.custom_fields = CustomFields::from_trusted(
            serde_json::json!({"plan": "pro", "seats": 3})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        lead.archived_at = Some(now());
        lead.version = 7;
        lead
    }

    #[test]
    fn column_names_are_unique() {
        let mut names: Vec<&str> = LEAD_COLUMNS.iter().map(|c| c.name).collect();
        let mut apis: Vec<&str> = LEAD_COLUMNS.iter().map(|c| c.api).collect();
        names.sort_unstable();
        apis.sort_unstable();
        let before = (names.len(), apis.len());
        names.dedup();
        apis.dedup();
        assert_eq!(before, (names.len(), apis.len()));
    }

    #[test]
    fn a_lead_survives_its_stored_values() {
        let lead = full_lead();
        let values: Vec<Value> = read_columns().map(|c| c.stored(&lead)).collect();
        assert_eq!(lead_from_values(values), Ok(lead));
    }

    #[test]
    fn absent_sort_keys_are_stored_as_empty_text_and_read_back_as_absent() {
        let lead = Lead::new(WorkspaceId::new(), now());
        let last_name = lead_column("last_name").map(|c| c.stored(&lead));
        assert_eq!(last_name, Some(Value::Text(String::new())));
        let values: Vec<Value> = read_columns().map(|c| c.stored(&lead)).collect();
        assert_eq!(lead_from_values(values).map(|l| l.last_name), Ok(None));
    }

    #[test]
    fn a_lead_survives_its_snapshot() {
        let lead = full_lead();
        let doc = lead_snapshot(&lead);
        assert_eq!(doc["tags"], serde_json::json!(["a", "b"]));
        assert_eq!(doc["customFields"]["seats"], 3);
        assert!(doc.get("workspaceId").is_none());
        assert_eq!(lead_from_snapshot(&doc, lead.workspace_id), Ok(lead));
    }

    #[test]
    fn a_snapshot_without_a_required_field_is_refused() {
        let mut doc = lead_snapshot(&full_lead());
        doc.as_object_mut().map(|m| m.remove("status"));
        assert!(lead_from_snapshot(&doc, WorkspaceId::new()).is_err());
    }

    #[test]
    fn a_corrupt_stored_value_is_an_error_not_a_panic() {
        let mut values: Vec<Value> = read_columns().map(|c| c.stored(&full_lead())).collect();
        let status = read_columns()
            .position(|c| c.name == "status")
            .unwrap_or_default();
        values[status] = Value::Text("WON".into());
        assert!(lead_from_values(values).is_err());
    }

    #[test]
    fn exports_leave_out_the_tenant_the_search_text_and_the_version() {
        let names: Vec<&str> = LEAD_COLUMNS
            .iter()
            .filter(|c| c.is_exported())
            .map(|c| c.name)
            .collect();
        assert!(!names.contains(&"workspace_id"));
        assert!(!names.contains(&"search_text"));
        assert!(!names.contains(&"version"));
        assert_eq!(names.first(), Some(&"id"));
    }

    #[test]
    fn changed_fields_name_client_fields_and_archiving_only() {
        let before = full_lead();
        let mut after = before.clone();
        after.title = Some("CEO".into());
        after.archived_at = None;
        after.version += 1;
        after.updated_at = now();
        assert_eq!(changed_fields(&before, &after), vec!["title", "archivedAt"]);
    }

    #[test]
    fn personal_texts_are_the_identifying_values() {
        let texts: Vec<String> = personal_texts(&full_lead()).collect();
        assert!(texts.contains(&"ann@acme.io".to_owned()));
        assert!(texts.contains(&"+14155550100".to_owned()));
        assert!(!texts.contains(&"CTO".to_owned()));
    }
}
