//! The adapters, one folder each (`mod.rs` with the adapter and its `Config`, `tests.rs`,
//! `testdata/` with bodies in the provider's real shapes). Adding a provider means adding a
//! folder, a `ProviderKind`, and a line in `all`.

pub mod apollo;
pub mod clearbit;
pub mod hunter;
pub mod pdl;
pub mod sandbox;

use super::provider::Provider;
use std::sync::Arc;

/// Where each provider's API lives; overridden to point at fakes in tests and benchmarks.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    pub hunter: hunter::Config,
    pub pdl: pdl::Config,
    pub apollo: apollo::Config,
    pub clearbit: clearbit::Config,
}

/// Every adapter, configured.
pub fn all(endpoints: &Endpoints) -> Vec<Arc<dyn Provider>> {
    vec![
        Arc::new(sandbox::Sandbox),
        Arc::new(hunter::Hunter::new(endpoints.hunter.clone())),
        Arc::new(pdl::PeopleDataLabs::new(endpoints.pdl.clone())),
        Arc::new(apollo::Apollo::new(endpoints.apollo.clone())),
        Arc::new(clearbit::Clearbit::new(endpoints.clearbit.clone())),
    ]
}
