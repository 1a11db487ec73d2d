//! Lazy enrichment: provider adapters, the waterfall that calls them, and the cache in front.
//!
//! `pipeline::Enricher` resolves one group for many leads at a time (a page): memory cache →
//! stored records → single flight → waterfall. `ledger::Ledger` is one request's account:
//! budget, spend and dry-run plan. Adapters live in `providers/`, one folder each, behind
//! `provider::Provider`. Nothing here knows about GraphQL or HTTP servers.

pub mod controls;
pub mod ledger;
pub mod metrics;
pub mod pipeline;
pub mod provider;
pub mod providers;
mod shared;

pub use controls::Clock;
pub use ledger::{Ledger, PlannedGroup, PlannedStep, Spend};
pub use pipeline::{EnrichError, EnrichOptions, Enricher, EventSink, Resolution, WorkspaceSetup};
