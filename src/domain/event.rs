//! Domain events as written to the event log (outbox), in the same transaction as the change
//! they describe. Each workspace numbers its events 1, 2, 3, … (`seq`) with no gaps, so a
//! reader that has seen `n` knows exactly what it missed.
//!
//! Lead events carry a snapshot of the lead after the change (subscriptions and webhooks
//! deliver it without reading the store again); enrichment events carry ids and field names.

use super::columns::{changed_fields, lead_from_snapshot, lead_snapshot};
use super::ids::{LeadId, WorkspaceId};
use super::lead::{Lead, Timestamp};
use serde_json::Value;
use uuid::Uuid;

/// `lead.created`: a lead was created (by `createLead` or an upsert).
pub const LEAD_CREATED: &str = "lead.created";
/// `lead.updated`: fields of a lead changed.
pub const LEAD_UPDATED: &str = "lead.updated";
/// `lead.archived`: a lead was archived.
pub const LEAD_ARCHIVED: &str = "lead.archived";
/// `lead.restored`: an archived lead was restored.
pub const LEAD_RESTORED: &str = "lead.restored";
/// `lead.enriched`: a (lead, group) was resolved from providers.
pub const LEAD_ENRICHED: &str = "lead.enriched";
/// `lead.erased`: a lead was erased on request; the event holds its id only.
pub const LEAD_ERASED: &str = "lead.erased";
/// `job.dead`: a job of the workspace exhausted its attempts and was dead-lettered.
pub const JOB_DEAD: &str = "job.dead";
/// `webhook.disabled`: an outbound webhook endpoint kept failing and was switched off.
pub const WEBHOOK_DISABLED: &str = "webhook.disabled";

/// Every event type the log holds, in the order they are documented.
pub const EVENT_TYPES: [&str; 14] = [
    LEAD_CREATED,
    LEAD_UPDATED,
    LEAD_ARCHIVED,
    LEAD_RESTORED,
    LEAD_ENRICHED,
    LEAD_ERASED,
    JOB_DEAD,
    WEBHOOK_DISABLED,
    super::import::IMPORT_PROGRESS,
    super::import::IMPORT_FINISHED,
    super::crm::CRM_SYNC_FINISHED,
    super::campaign::CAMPAIGN_STEP,
    super::campaign::CAMPAIGN_EXITED,
    super::campaign::CAMPAIGN_STATE,
];

/// The lead change types, which carry a lead snapshot.
pub const LEAD_CHANGE_TYPES: [&str; 4] = [LEAD_CREATED, LEAD_UPDATED, LEAD_ARCHIVED, LEAD_RESTORED];

/// An event about to be appended to the log.
#[derive(Clone, PartialEq, Debug)]
pub struct NewEvent {
    pub workspace_id: WorkspaceId,
    /// One of `EVENT_TYPES`.
    pub kind: &'static str,
    /// The entity the event is about.
    pub subject_id: Option<Uuid>,
    pub payload: Value,
    pub at: Timestamp,
}

impl NewEvent {
    /// The event for a lead written by `kind` (one of `LEAD_CHANGE_TYPES`), with the lead as it
    /// is after the change and the names of the fields that changed.
    pub fn lead_change(kind: &'static str, lead: &Lead, changed: &[&'static str]) -> Self {
        Self {
            workspace_id: lead.workspace_id,
            kind,
            subject_id: Some(lead.id.as_uuid()),
            payload: serde_json::json!({
                "lead": lead_snapshot(lead),
                "changedFields": changed,
            }),
            at: lead.updated_at,
        }
    }

    /// The event for a lead that went from `before` to `after` in one write: archived,
    /// restored or updated, with the fields that changed.
    pub fn lead_transition(before: &Lead, after: &Lead) -> Self {
        let kind = match (before.archived_at.is_some(), after.archived_at.is_some()) {
            (false, true) => LEAD_ARCHIVED,
            (true, false) => LEAD_RESTORED,
            _ => LEAD_UPDATED,
        };
        Self::lead_change(kind, after, &changed_fields(before, after))
    }

    /// The `lead.erased` event: the lead's id and nothing about the person.
    pub fn lead_erased(ws: WorkspaceId, lead: LeadId, at: Timestamp) -> Self {
        Self {
            workspace_id: ws,
            kind: LEAD_ERASED,
            subject_id: Some(lead.as_uuid()),
            payload: erased_payload(lead),
            at,
        }
    }
}

/// What an erased lead's events hold instead of their payload: its id, and that it was
/// erased. Their number and type stay, so cursors and the log's order are unchanged.
pub fn erased_payload(lead: LeadId) -> Value {
    serde_json::json!({ "id": lead.as_uuid(), "erased": true })
}

/// An event read back from the log.
#[derive(Clone, PartialEq, Debug)]
pub struct Event {
    /// Position in the workspace's log: 1, 2, 3, … without gaps.
    pub seq: i64,
    pub workspace_id: WorkspaceId,
    pub kind: String,
    pub subject_id: Option<Uuid>,
    pub payload: Value,
    pub at: Timestamp,
}

impl Event {
    /// Stable wherever the event is delivered (webhooks, the broker), so receivers can drop
    /// duplicates: `<workspace>:<number>`.
    pub fn public_id(&self) -> String {
        format!("{}:{}", self.workspace_id, self.seq)
    }

    /// The event as delivered to receivers outside (webhook bodies, broker messages).
    pub fn envelope(&self) -> Value {
        serde_json::json!({
            "id": self.public_id(),
            "type": self.kind,
            "sequence": self.seq,
            "workspaceId": self.workspace_id.to_string(),
            "createdAt": self.at,
            "data": self.payload,
        })
    }
}

/// What a lead event says: the lead after the change and the fields that changed.
#[derive(Clone, PartialEq, Debug)]
pub struct LeadChange {
    pub lead: Lead,
    pub changed_fields: Vec<String>,
}

impl Event {
    /// The lead change this event describes; `None` for other types or a payload that was
    /// scrubbed.
    pub fn lead_change(&self) -> Option<LeadChange> {
        if !LEAD_CHANGE_TYPES.contains(&self.kind.as_str()) {
            return None;
        }
        let lead = lead_from_snapshot(self.payload.get("lead")?, self.workspace_id).ok()?;
        let changed_fields = self
            .payload
            .get("changedFields")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        Some(LeadChange { lead, changed_fields })
    }

    /// The lead this event is about, for lead and enrichment events.
    pub fn lead_id(&self) -> Option<LeadId> {
        self.kind
            .starts_with("lead.")
            .then_some(self.subject_id.map(LeadId::from_uuid))
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EmailAddress, LeadPatch, Patch, Tags, now};

    fn lead() -> Lead {
        let mut lead = Lead::new(WorkspaceId::new(), now());
        lead.email = Some(EmailAddress::from_trusted("ann@acme.com".into()));
        lead.first_name = Some("Ann".into());
        lead.tags = Tags::from_trusted(vec!["vip".into()]);
        lead
    }

    #[test]
    fn a_lead_survives_the_round_trip_through_an_event() {
        let lead = lead();
        let event = NewEvent::lead_change(LEAD_CREATED, &lead, &[]);
        let read = Event {
            seq: 1,
            workspace_id: event.workspace_id,
            kind: event.kind.to_owned(),
            subject_id: event.subject_id,
            payload: event.payload,
            at: event.at,
        };
        assert_eq!(read.lead_change().map(|c| c.lead), Some(lead.clone()));
        assert_eq!(read.lead_id(), Some(lead.id));
    }

    #[test]
    fn a_transition_names_its_type_and_changed_fields() {
        let before = lead();
        let mut after = before.clone();
        after.apply(&LeadPatch {
            title: Patch::Set("CTO".into()),
            ..LeadPatch::default()
        });
        let e = NewEvent::lead_transition(&before, &after);
        assert_eq!(
            (e.kind, e.payload["changedFields"].clone()),
            (LEAD_UPDATED, serde_json::json!(["title"]))
        );
        after.archived_at = Some(now());
        assert_eq!(NewEvent::lead_transition(&before, &after).kind, LEAD_ARCHIVED);
        assert_eq!(NewEvent::lead_transition(&after, &before).kind, LEAD_RESTORED);
    }

    #[test]
    fn other_events_and_scrubbed_payloads_carry_no_lead() {
        let event = Event {
            seq: 1,
            workspace_id: WorkspaceId::new(),
            kind: LEAD_UPDATED.into(),
            subject_id: None,
            payload: serde_json::json!({"lead": null}),
            at: now(),
        };
        assert!(event.lead_change().is_none());
        assert!(
            Event {
                kind: JOB_DEAD.into(),
                ..event
            }
            .lead_change()
            .is_none()
        );
    }
}
