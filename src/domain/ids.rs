//! Distinct identifier newtypes over UUIDv7, so one kind of id cannot stand in for another.

use std::fmt;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
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
