//! One retention run: archive stale leads, delete long-archived ones, compact expired
//! enrichment records and old events, each in bounded batches (one short transaction per
//! batch, so the writer is never held for long). The run's record is saved after every batch,
//! so a run that is repeated after a crash continues its counts instead of starting over.
//!
//! Boundaries are strict "older than" cut-offs computed once per run (`RetentionPolicy::cutoffs`):
//! a lead is archived iff `updated_at < started_at - archive_after_days`, deleted iff
//! `archived_at < started_at - delete_archived_after_days`; an enrichment record is compacted iff
//! `expires_at < started_at`; an event is deleted iff `created_at < started_at - event_ttl_days`.
//!
//! **Retention boundaries are strict** (`<`), computed once from the run's `startedAt`, so a lead
//! exactly N days old stays; archiving sets `archivedAt` and `updatedAt` to the time of the batch
//! (so the archive clock starts then).

use crate::domain::{Event, RetentionPolicy, RetentionRun, now};
use crate::store::{Store, StoreResult};

/// Leads (or records, or events) per transaction.
pub const BATCH: u32 = 1_000;

/// Runs `run` under `policy`, `batch` rows per transaction, handing committed `lead.archived`
/// events to `publish`. A dry run only counts. The counts accumulate in `run` (saved after
/// each batch); `finished_at` is set and saved at the end.
pub async fn run(
    store: &Store,
    run: &mut RetentionRun,
    policy: &RetentionPolicy,
    batch: u32,
    publish: impl Fn(Vec<Event>),
) -> StoreResult<()> {
    let ws = run.workspace_id;
    let cutoffs = policy.cutoffs(run.started_at);
    let batch = batch.max(1);
    if run.dry_run {
        run.counts = store.count_retention(ws, &cutoffs).await?;
    } else {
        if let Some(before) = cutoffs.archive_updated_before {
            loop {
                let events = store.archive_stale_leads(ws, before, now(), batch).await?;
                let n = events.len() as u64;
                publish(events);
                run.counts.archived += n;
                store.save_retention_run(run).await?;
                if n < u64::from(batch) {
                    break;
                }
            }
        }
        if let Some(before) = cutoffs.delete_archived_before {
            loop {
                let n = store.delete_archived_leads(ws, before, batch).await?;
                run.counts.deleted += n;
                store.save_retention_run(run).await?;
                if n < u64::from(batch) {
                    break;
                }
            }
        }
        if let Some(before) = cutoffs.compact_expired_before {
            loop {
                let n = store.compact_enrichment(ws, before, batch).await?;
                run.counts.enrichment_compacted += n;
                store.save_retention_run(run).await?;
                // a batch covers `batch` leads, which may hold several records each
                if n == 0 {
                    break;
                }
            }
        }
        if let Some(before) = cutoffs.events_before {
            loop {
                let n = store.compact_events(ws, before, batch).await?;
                run.counts.events_compacted += n;
                store.save_retention_run(run).await?;
                if n < u64::from(batch) {
                    break;
                }
            }
        }
    }
    run.finished_at = Some(now());
    run.error = None;
    store.save_retention_run(run).await
}
