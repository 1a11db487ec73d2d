//! Opaque identifiers: Relay global ids (`Lead:<uuid>`, base64url) and connection cursors.
//!
//! A lead cursor is base64url of `b"lc1"`, the sort field and direction, the lead id, and the
//! sort key. It is tied to the `orderBy` it was made for and rejected, with a clear message,
//! when malformed or replayed against another order.
//!
//! The other connections are ordered by one unique key; their cursors are base64url of
//! `<kind>:<key>` (`CursorKey`), the kind naming the connection, so a cursor of one connection
//! is refused by every other.

use super::errors::bad_input;
use crate::domain::{
    ApiKeyId, CampaignId, CrmConnectionId, CrmRunId, Cursor, DeliveryId, Direction, ErasureId, ImportId,
    JobId, LeadId, LeadOrder, RetentionRunId, SortField, SortValue, WorkspaceId,
};
use async_graphql::ID;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::DateTime;
use uuid::Uuid;

/// The object types that have global ids.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NodeType {
    Lead,
    Workspace,
    WebhookEndpoint,
    Import,
    CrmConnection,
    Campaign,
    ApiKey,
}

impl NodeType {
    fn name(self) -> &'static str {
        match self {
            NodeType::Lead => "Lead",
            NodeType::Workspace => "Workspace",
            NodeType::WebhookEndpoint => "WebhookEndpoint",
            NodeType::Import => "Import",
            NodeType::CrmConnection => "CrmIntegration",
            NodeType::Campaign => "Campaign",
            NodeType::ApiKey => "ApiKey",
        }
    }
}

pub fn global_id(kind: NodeType, uuid: Uuid) -> ID {
    ID(URL_SAFE_NO_PAD.encode(format!("{}:{}", kind.name(), uuid)))
}

/// Decodes any global id into its type and uuid.
pub fn decode_global_id(id: &str) -> async_graphql::Result<(NodeType, Uuid)> {
    let invalid = || bad_input(format!("'{}' is not a valid id", truncate(id, 64)));
    let bytes = URL_SAFE_NO_PAD
        .decode(id.trim_end_matches('='))
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (kind, raw) = text.split_once(':').ok_or_else(invalid)?;
    let kind = match kind {
        "Lead" => NodeType::Lead,
        "Workspace" => NodeType::Workspace,
        "WebhookEndpoint" => NodeType::WebhookEndpoint,
        "Import" => NodeType::Import,
        "CrmIntegration" => NodeType::CrmConnection,
        "Campaign" => NodeType::Campaign,
        "ApiKey" => NodeType::ApiKey,
        _ => return Err(invalid()),
    };
    let uuid = Uuid::parse_str(raw).map_err(|_| invalid())?;
    Ok((kind, uuid))
}

/// Decodes a global id that must name an object of type `kind`.
pub fn decode_typed_id(id: &str, kind: NodeType) -> async_graphql::Result<Uuid> {
    match decode_global_id(id)? {
        (found, uuid) if found == kind => Ok(uuid),
        (other, _) => Err(bad_input(format!(
            "expected a {} id, got a {} id",
            kind.name(),
            other.name()
        ))),
    }
}

/// Decodes a global id that must name a lead.
pub fn decode_lead_id(id: &str) -> async_graphql::Result<LeadId> {
    decode_typed_id(id, NodeType::Lead).map(LeadId::from_uuid)
}

pub fn lead_global_id(id: LeadId) -> ID {
    global_id(NodeType::Lead, id.as_uuid())
}

pub fn workspace_global_id(id: WorkspaceId) -> ID {
    global_id(NodeType::Workspace, id.as_uuid())
}

const CURSOR_MAGIC: &[u8; 3] = b"lc1";

pub fn encode_cursor(c: &Cursor) -> String {
    let mut buf = Vec::with_capacity(32);
    buf.extend_from_slice(CURSOR_MAGIC);
    buf.push(c.order.field.code());
    buf.push(match c.order.direction {
        Direction::Asc => 0,
        Direction::Desc => 1,
    });
    buf.extend_from_slice(c.id.as_uuid().as_bytes());
    match &c.key {
        SortValue::Time(t) => buf.extend_from_slice(&t.timestamp_micros().to_be_bytes()),
        SortValue::Int(i) => buf.extend_from_slice(&i.to_be_bytes()),
        SortValue::Text(s) => buf.extend_from_slice(s.as_bytes()),
    }
    URL_SAFE_NO_PAD.encode(buf)
}

/// Decodes a cursor and checks it was made for `order`.
pub fn decode_cursor(raw: &str, order: LeadOrder, arg: &str) -> async_graphql::Result<Cursor> {
    let malformed = || bad_input(format!("`{arg}` is not a valid cursor for this connection"));
    let buf = URL_SAFE_NO_PAD.decode(raw).map_err(|_| malformed())?;
    if buf.len() < 21 || &buf[..3] != CURSOR_MAGIC {
        return Err(malformed());
    }
    let field = SortField::from_code(buf[3]).ok_or_else(malformed)?;
    let direction = match buf[4] {
        0 => Direction::Asc,
        1 => Direction::Desc,
        _ => return Err(malformed()),
    };
    let cursor_order = LeadOrder { field, direction };
    if cursor_order != order {
        return Err(bad_input(format!(
            "`{arg}` was made for a different orderBy; restart paging without a cursor"
        )));
    }
    let id = Uuid::from_slice(&buf[5..21]).map_err(|_| malformed())?;
    let rest = &buf[21..];
    let eight = || -> async_graphql::Result<i64> {
        let arr: [u8; 8] = rest.try_into().map_err(|_| malformed())?;
        Ok(i64::from_be_bytes(arr))
    };
    let key = match field {
        SortField::CreatedAt | SortField::UpdatedAt => {
            SortValue::Time(DateTime::from_timestamp_micros(eight()?).ok_or_else(malformed)?)
        }
        SortField::Score => SortValue::Int(eight()?),
        SortField::LastName | SortField::CompanyName => {
            SortValue::Text(String::from_utf8(rest.to_vec()).map_err(|_| malformed())?)
        }
    };
    Ok(Cursor {
        order,
        key,
        id: LeadId::from_uuid(id),
    })
}

/// The key of a connection ordered by one unique key, as its cursors carry it.
pub trait CursorKey: Sized + Clone + Send + Sync + 'static {
    /// Names the connection; no two connections share one.
    const KIND: &'static str;
    fn to_text(&self) -> String;
    fn from_text(text: &str) -> Option<Self>;
}

macro_rules! uuid_cursor_key {
    ($($t:ty => $kind:literal),*) => {$(
        impl CursorKey for $t {
            const KIND: &'static str = $kind;
            fn to_text(&self) -> String {
                self.as_uuid().to_string()
            }
            fn from_text(text: &str) -> Option<Self> {
                Uuid::parse_str(text).ok().map(Self::from_uuid)
            }
        }
    )*};
}
// the kinds of the cursors handed out before every connection paged both ways, kept so those
// cursors stay valid
uuid_cursor_key!(ImportId => "im1", RetentionRunId => "rr1", ErasureId => "er1");
uuid_cursor_key!(CrmConnectionId => "cc1", CrmRunId => "cr1", CampaignId => "cp1");
uuid_cursor_key!(ApiKeyId => "ak1");

impl CursorKey for JobId {
    const KIND: &'static str = "dj1";
    fn to_text(&self) -> String {
        self.as_i64().to_string()
    }
    fn from_text(text: &str) -> Option<Self> {
        text.parse().ok().map(JobId::from_i64)
    }
}

impl CursorKey for DeliveryId {
    const KIND: &'static str = "wd1";
    fn to_text(&self) -> String {
        self.as_i64().to_string()
    }
    fn from_text(text: &str) -> Option<Self> {
        text.parse().ok().map(DeliveryId::from_i64)
    }
}

/// An import error's `(row, seq)`.
impl CursorKey for (u64, u32) {
    const KIND: &'static str = "ie1";
    fn to_text(&self) -> String {
        format!("{}:{}", self.0, self.1)
    }
    fn from_text(text: &str) -> Option<Self> {
        let (row, seq) = text.split_once(':')?;
        Some((row.parse().ok()?, seq.parse().ok()?))
    }
}

pub fn encode_key_cursor<K: CursorKey>(key: &K) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", K::KIND, key.to_text()))
}

/// Decodes the cursor given as `arg`, which must be one of `K`'s connection.
pub fn decode_key_cursor<K: CursorKey>(raw: &str, arg: &str) -> async_graphql::Result<K> {
    let malformed = || bad_input(format!("`{arg}` is not a valid cursor for this connection"));
    let bytes = URL_SAFE_NO_PAD
        .decode(raw.trim_end_matches('='))
        .map_err(|_| malformed())?;
    let text = String::from_utf8(bytes).map_err(|_| malformed())?;
    text.strip_prefix(K::KIND)
        .and_then(|rest| rest.strip_prefix(':'))
        .and_then(K::from_text)
        .ok_or_else(malformed)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::now;

    fn order(field: SortField, direction: Direction) -> LeadOrder {
        LeadOrder { field, direction }
    }

    #[test]
    fn cursor_round_trips_for_every_key_kind() {
        let id = LeadId::new();
        for (field, key) in [
            (SortField::CreatedAt, SortValue::Time(now())),
            (SortField::Score, SortValue::Int(42)),
            (SortField::CompanyName, SortValue::Text("Ünïcode GmbH".into())),
            (SortField::LastName, SortValue::Text(String::new())),
        ] {
            let c = Cursor {
                order: order(field, Direction::Desc),
                key,
                id,
            };
            let decoded = decode_cursor(&encode_cursor(&c), c.order, "after").unwrap();
            assert_eq!(decoded, c);
        }
    }

    #[test]
    fn cursor_for_another_order_is_rejected() {
        let c = Cursor {
            order: order(SortField::Score, Direction::Asc),
            key: SortValue::Int(1),
            id: LeadId::new(),
        };
        let err = decode_cursor(
            &encode_cursor(&c),
            order(SortField::Score, Direction::Desc),
            "after",
        )
        .unwrap_err();
        assert!(err.message.contains("different orderBy"));
    }

    #[test]
    fn garbage_cursor_is_rejected() {
        let o = LeadOrder::default();
        assert!(decode_cursor("not base64!", o, "after").is_err());
        assert!(
            decode_cursor(
                &URL_SAFE_NO_PAD.encode("hello world, this is long enough"),
                o,
                "after"
            )
            .is_err()
        );
    }

    #[test]
    fn key_cursors_round_trip_and_refuse_every_other_connection() {
        fn entry<K: CursorKey>(key: K) -> (&'static str, String) {
            (K::KIND, encode_key_cursor(&key))
        }
        fn other_kinds_refuse<K: CursorKey + PartialEq + std::fmt::Debug>(
            key: K,
            cursors: &[(&str, String)],
        ) {
            let cursor = encode_key_cursor(&key);
            assert_eq!(decode_key_cursor::<K>(&cursor, "after").unwrap(), key);
            for (_, other) in cursors.iter().filter(|(kind, _)| *kind != K::KIND) {
                assert!(
                    decode_key_cursor::<K>(other, "after").is_err(),
                    "{} took {other}",
                    K::KIND
                );
            }
            assert!(decode_key_cursor::<K>("garbage!", "after").is_err());
        }
        let lead = encode_cursor(&Cursor {
            order: LeadOrder::default(),
            key: SortValue::Time(crate::domain::now()),
            id: LeadId::new(),
        });
        let cursors = vec![
            ("lc1", lead),
            entry(ImportId::new()),
            entry(RetentionRunId::new()),
            entry(ErasureId::new()),
            entry(JobId::from_i64(7)),
            entry(DeliveryId::from_i64(7)),
            entry((7u64, 1u32)),
        ];
        let mut kinds: Vec<&str> = cursors.iter().map(|(kind, _)| *kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), cursors.len(), "two connections share a cursor kind");
        other_kinds_refuse(ImportId::new(), &cursors);
        other_kinds_refuse(RetentionRunId::new(), &cursors);
        other_kinds_refuse(ErasureId::new(), &cursors);
        other_kinds_refuse(JobId::from_i64(7), &cursors);
        other_kinds_refuse(DeliveryId::from_i64(7), &cursors);
        other_kinds_refuse((7u64, 1u32), &cursors);
        for (_, other) in &cursors[1..] {
            assert!(decode_cursor(other, LeadOrder::default(), "after").is_err());
        }
    }

    #[test]
    fn global_id_round_trips_and_checks_type() {
        let id = LeadId::new();
        let gid = lead_global_id(id);
        assert_eq!(decode_lead_id(&gid).unwrap(), id);
        let ws = workspace_global_id(WorkspaceId::new());
        assert!(decode_lead_id(&ws).is_err());
        assert!(decode_lead_id("garbage").is_err());
    }
}
