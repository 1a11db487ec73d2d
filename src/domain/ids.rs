//! Distinct identifier newtypes over UUIDv7, so one kind of id cannot stand in for another.

use super::columns::Value;
use std::fmt;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new time-ordered id (UUIDv7), so inserts append to the primary-key index.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            /// Wraps an id read back from storage or decoded from a global id.
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<$name> for Value {
            fn from(id: $name) -> Self {
                Value::Uuid(id.0)
            }
        }
    };
}

uuid_id!(
    /// Identifies a lead across all workspaces.
    LeadId
);
uuid_id!(
    /// Identifies a workspace (tenant).
    WorkspaceId
);
uuid_id!(
    /// Identifies one import of a file into a workspace.
    ImportId
);
uuid_id!(
    /// Identifies one retention run.
    RetentionRunId
);
uuid_id!(
    /// Identifies one erasure (its audit record).
    ErasureId
);
uuid_id!(
    /// Identifies an outbound webhook endpoint.
    WebhookId
);
uuid_id!(
    /// Identifies a workspace's connection to a CRM.
    CrmConnectionId
);
uuid_id!(
    /// Identifies an API key.
    ApiKeyId
);
uuid_id!(
    /// Identifies one CRM sync run.
    CrmRunId
);
uuid_id!(
    /// Identifies a campaign.
    CampaignId
);

/// Identifies one webhook delivery attempt (numbered by the store).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct DeliveryId(i64);

impl DeliveryId {
    /// Wraps a number the store assigned or a client sent back.
    pub fn from_i64(n: i64) -> Self {
        Self(n)
    }
    pub fn as_i64(self) -> i64 {
        self.0
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<DeliveryId> for Value {
    fn from(id: DeliveryId) -> Self {
        Value::Integer(id.0)
    }
}
