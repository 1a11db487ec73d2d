//! Retention and erasure as plain values: a workspace's retention policy (validated days),
//! the cut-off instants a run derives from it, the record of a run, and the audit record of
//! an erasure (which holds no personal data). The work itself is in `ops`; the rows in `store`.

use super::error::FieldError;
use super::ids::{ErasureId, LeadId, RetentionRunId, WorkspaceId};
use super::lead::Timestamp;
use chrono::TimeDelta;

/// The longest retention period accepted, in days (about a hundred years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// A number of days in `1..=MAX_RETENTION_DAYS`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct RetentionDays(u32);

impl RetentionDays {
    /// Parses client input; `field` names the input field in the error.
    pub fn parse(field: &str, days: i64) -> Result<Self, FieldError> {
        match u32::try_from(days) {
            Ok(d) if (1..=MAX_RETENTION_DAYS).contains(&d) => Ok(Self(d)),
            _ => Err(FieldError::invalid(
                field,
                format!("must be a whole number of days from 1 to {MAX_RETENTION_DAYS}, got {days}"),
            )),
        }
    }

    /// A value read back from the store (clamped, never failing).
    pub fn from_trusted(days: i64) -> Self {
        Self(days.clamp(1, i64::from(MAX_RETENTION_DAYS)) as u32)
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// The instant `self` days before `at`.
    pub fn before(self, at: Timestamp) -> Timestamp {
        at - TimeDelta::days(i64::from(self.0))
    }
}

/// A workspace's retention policy. Every part is optional; a policy with none does nothing.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct RetentionPolicy {
    /// Archive active leads whose `updated_at` is more than this many days old.
    pub archive_after_days: Option<RetentionDays>,
    /// Delete archived leads whose `archived_at` is more than this many days old.
    pub delete_archived_after_days: Option<RetentionDays>,
    /// Delete enrichment records whose `expires_at` has passed.
    pub compact_enrichment: bool,
    /// Delete the workspace's events older than this many days (the global
    /// `event_retention_days` still applies on top).
    pub event_ttl_days: Option<RetentionDays>,
}

impl RetentionPolicy {
    /// True when a run under this policy would do nothing.
    pub fn is_empty(&self) -> bool {
        self.archive_after_days.is_none()
            && self.delete_archived_after_days.is_none()
            && !self.compact_enrichment
            && self.event_ttl_days.is_none()
    }

    /// The cut-offs of a run at `now`. Each boundary is strict: a row whose timestamp equals
    /// the cut-off is kept (`updated_at < now - N days` is archived, `= now - N days` is not).
    pub fn cutoffs(&self, now: Timestamp) -> Cutoffs {
        Cutoffs {
            archive_updated_before: self.archive_after_days.map(|d| d.before(now)),
            delete_archived_before: self.delete_archived_after_days.map(|d| d.before(now)),
            compact_expired_before: self.compact_enrichment.then_some(now),
            events_before: self.event_ttl_days.map(|d| d.before(now)),
        }
    }
}

/// What one retention run removes, as strict "older than" instants; `None` skips that part.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Cutoffs {
    /// Active leads with `updated_at` before this are archived.
    pub archive_updated_before: Option<Timestamp>,
    /// Archived leads with `archived_at` before this are deleted (with their tags and
    /// enrichment records).
    pub delete_archived_before: Option<Timestamp>,
    /// Enrichment records with `expires_at` before this are deleted.
    pub compact_expired_before: Option<Timestamp>,
    /// Events with `created_at` before this are deleted.
    pub events_before: Option<Timestamp>,
}

/// What started a retention run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RunTrigger {
    /// The daily `retention_schedule`.
    Schedule,
    /// An admin's `runRetention`.
    Manual,
}

impl RunTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            RunTrigger::Schedule => "schedule",
            RunTrigger::Manual => "manual",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "schedule" => Some(RunTrigger::Schedule),
            "manual" => Some(RunTrigger::Manual),
            _ => None,
        }
    }
}

/// How many rows a retention run changed (or, for a dry run, would change).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct RetentionCounts {
    pub archived: u64,
    pub deleted: u64,
    pub enrichment_compacted: u64,
    pub events_compacted: u64,
}

/// The record of one retention run.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RetentionRun {
    pub id: RetentionRunId,
    pub workspace_id: WorkspaceId,
    pub trigger: RunTrigger,
    /// Counted only; nothing was changed.
    pub dry_run: bool,
    pub started_at: Timestamp,
    /// `None` while the run is queued or running.
    pub finished_at: Option<Timestamp>,
    pub counts: RetentionCounts,
    /// Why the run failed, when it did (no personal data: store errors only).
    pub error: Option<String>,
}

/// What an erasure removed or scrubbed, for its audit record.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ErasureCounts {
    /// Enrichment records deleted with the lead.
    pub enrichment_records: u64,
    /// Events whose payload was replaced by a non-personal one.
    pub events_scrubbed: u64,
    /// Webhook delivery attempts whose response body and error were cleared.
    pub deliveries_scrubbed: u64,
    /// Jobs whose error history, progress, result or payload held the person's data.
    pub jobs_scrubbed: u64,
    /// Rows deleted from the tables keyed by email hash (e.g. import errors).
    pub rows_by_email_hash: u64,
    /// Imports whose error reasons or file name quoted the person, or whose unfinished upload
    /// named them (cancelled, the file deleted).
    pub imports_scrubbed: u64,
}

/// The audit record of one erasure: who, when, why and how much — no email, no name.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Erasure {
    pub id: ErasureId,
    pub workspace_id: WorkspaceId,
    pub lead_id: LeadId,
    /// The subject of the token (or the operator) that asked for it.
    pub actor_subject: String,
    pub reason: Option<String>,
    pub erased_at: Timestamp,
    pub counts: ErasureCounts,
}

/// The longest erasure reason kept, in characters.
pub const MAX_ERASURE_REASON: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_must_be_between_one_and_the_maximum() {
        assert!(RetentionDays::parse("d", 0).is_err());
        assert!(RetentionDays::parse("d", -3).is_err());
        assert!(RetentionDays::parse("d", i64::from(MAX_RETENTION_DAYS) + 1).is_err());
        assert_eq!(RetentionDays::parse("d", 1).unwrap().get(), 1);
        assert_eq!(RetentionDays::parse("d", 36_500).unwrap().get(), 36_500);
    }

    #[test]
    fn an_empty_policy_has_no_cutoffs() {
        let at = crate::domain::now();
        assert!(RetentionPolicy::default().is_empty());
        assert_eq!(RetentionPolicy::default().cutoffs(at), Cutoffs::default());
    }

    #[test]
    fn cutoffs_are_whole_days_before_now() {
        let at = crate::domain::now();
        let policy = RetentionPolicy {
            archive_after_days: Some(RetentionDays::parse("d", 30).unwrap()),
            compact_enrichment: true,
            ..Default::default()
        };
        let c = policy.cutoffs(at);
        assert_eq!(c.archive_updated_before, Some(at - TimeDelta::days(30)));
        assert_eq!(c.compact_expired_before, Some(at));
        assert_eq!(c.delete_archived_before, None);
    }
}
