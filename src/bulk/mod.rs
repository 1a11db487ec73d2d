//! Bulk work on leads: synthetic data for demos, benchmarks and `leadgate seed`.
//!
//! Leads are generated and written in chunks, so memory stays flat however many are asked
//! for; each chunk is one transaction of multi-row inserts.

pub mod synthetic;

use crate::domain::{Workspace, now};
use crate::store::{AdminRepo, LeadRepo, Store, StoreError};

/// Leads per transaction when seeding.
pub const SEED_CHUNK: usize = 20_000;

/// Inserts `count` synthetic leads into `workspace`, calling `progress` with the running total
/// after each chunk. Deterministic for a given `seed`.
pub async fn seed(
    store: &Store,
    workspace: &Workspace,
    count: u64,
    seed: u64,
    mut progress: impl FnMut(u64),
) -> Result<u64, StoreError> {
    let mut generator = synthetic::Generator::new(seed);
    let mut done = 0u64;
    let end = now();
    while done < count {
        let n = (count - done).min(SEED_CHUNK as u64) as usize;
        let chunk: Vec<_> = (0..n).map(|_| generator.lead(workspace.id, end)).collect();
        done += store.insert_leads_bulk(workspace.id, &chunk).await?;
        progress(done);
    }
    store.analyze().await?;
    Ok(done)
}
