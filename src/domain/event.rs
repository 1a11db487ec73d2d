//! Domain events as written to the event log (outbox), in the same transaction as the change
//! they describe. Payloads carry ids and names, never personal data.

use super::ids::WorkspaceId;
use super::lead::Timestamp;
use uuid::Uuid;

/// `lead.enriched`: a (lead, group) was resolved from providers.
pub const LEAD_ENRICHED: &str = "lead.enriched";
/// `job.dead`: a job of the workspace ran out of attempts or failed permanently.
pub const JOB_DEAD: &str = "job.dead";

/// An event about to be appended to the log.
#[derive(Clone, PartialEq, Debug)]
pub struct NewEvent {
    pub workspace_id: WorkspaceId,
    /// e.g. `lead.enriched`.
    pub kind: &'static str,
    /// The entity the event is about.
    pub subject_id: Option<Uuid>,
    pub payload: serde_json::Value,
    pub at: Timestamp,
}

/// An event read back from the log; `id` increases with every append.
#[derive(Clone, PartialEq, Debug)]
pub struct Event {
    pub id: i64,
    pub workspace_id: WorkspaceId,
    pub kind: String,
    pub subject_id: Option<Uuid>,
    pub payload: serde_json::Value,
    pub at: Timestamp,
}
