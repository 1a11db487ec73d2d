//! Bulk work on leads: synthetic data for demos, benchmarks and `leadgate seed`, imports of
//! CSV and NDJSON files (`import`), and streamed exports (`export`).
//!
//! Leads are generated chunk by chunk while the store loads them, and exported batch by batch
//! while the reader streams them, so memory stays flat however many there are.

pub mod export;
pub mod import;
pub mod synthetic;

use crate::domain::{Workspace, now};
use crate::store::{Store, StoreError};

/// Inserts `count` synthetic leads into `workspace` in one bulk load, calling `progress` with
/// the running total as chunks land. Deterministic for a given `seed`.
pub async fn seed(
    store: &Store,
    workspace: &Workspace,
    count: u64,
    seed: u64,
    progress: impl FnMut(u64) + Send,
) -> Result<u64, StoreError> {
    let mut generator = synthetic::Generator::new(seed);
    let end = now();
    let ws = workspace.id;
    let next_chunk = move |n: usize| (0..n).map(|_| generator.lead(ws, end)).collect();
    let rebuild = count >= crate::store::REBUILD_INDEXES_FROM;
    let done = store.load_leads(ws, count, rebuild, next_chunk, progress).await?;
    store.analyze().await?;
    Ok(done)
}
