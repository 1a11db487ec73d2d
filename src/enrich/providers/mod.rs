//! The adapters, one folder each (`mod.rs` with the adapter, its `Config` and its `ADAPTER`,
//! `tests.rs`, `testdata/` with bodies in the provider's real shapes).
//!
//! The folders are the modules `domain::provider_list!` names: each line there compiles the
//! folder of its id here, and `ADAPTERS` pairs each `ProviderKind` with the folder's `ADAPTER`
//! (how to build it and, for one that calls an HTTP API, its default base URL). So a new
//! provider is its folder and its line in the list: a line without a folder does not compile,
//! and a folder without a line fails `tests::every_folder_is_in_the_list`.

use super::provider::{Provider, ProviderKind};
use std::collections::BTreeMap;
use std::sync::Arc;
use url::Url;

/// The folders' modules and `ADAPTERS`, from the list.
macro_rules! adapters {
    ($($(#[$doc:meta])* $variant:ident => $id:ident,)*) => {
        $(pub mod $id;)*

        /// Every provider with its folder's adapter, in the list's order.
        pub const ADAPTERS: &[(ProviderKind, Adapter)] = &[$((ProviderKind::$variant, $id::ADAPTER)),*];
    };
}
crate::domain::provider_list!(adapters);

/// What a folder declares about its adapter.
pub enum Adapter {
    /// Calls nothing outside the process (the sandbox).
    Local(fn() -> Arc<dyn Provider>),
    /// Calls the provider's HTTP API at `base_url`, unless the `provider_urls` setting names
    /// another (fakes in tests and benchmarks, a proxy).
    Remote {
        base_url: &'static str,
        build: fn(Url) -> Arc<dyn Provider>,
    },
}

/// The default base URL of each provider that has one, by id: the `provider_urls` setting's
/// default.
pub fn default_urls() -> BTreeMap<String, String> {
    ADAPTERS
        .iter()
        .filter_map(|(kind, adapter)| match adapter {
            Adapter::Remote { base_url, .. } => Some((kind.as_str().to_owned(), (*base_url).to_owned())),
            Adapter::Local(_) => None,
        })
        .collect()
}

/// Every adapter; a remote one at its URL in `urls`, or else at its default.
pub fn all(urls: &BTreeMap<ProviderKind, Url>) -> Vec<Arc<dyn Provider>> {
    ADAPTERS
        .iter()
        .filter_map(|(kind, adapter)| match adapter {
            Adapter::Local(build) => Some(build()),
            Adapter::Remote { base_url, build } => {
                let url = urls.get(kind).cloned().or_else(|| Url::parse(base_url).ok());
                if url.is_none() {
                    tracing::error!(provider = %kind, "the adapter's default base URL does not parse");
                }
                url.map(build)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_folder_is_in_the_list() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/enrich/providers");
        let folders: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_dir())
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        let listed: BTreeSet<String> = ProviderKind::ALL.iter().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(
            folders, listed,
            "every folder under src/enrich/providers/ needs its line in domain::provider_list!"
        );
    }

    #[test]
    fn every_provider_has_one_adapter_of_its_kind() {
        let kinds: Vec<ProviderKind> = ADAPTERS.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, ProviderKind::ALL);
        let built: Vec<ProviderKind> = all(&BTreeMap::new()).iter().map(|p| p.kind()).collect();
        assert_eq!(
            built,
            ProviderKind::ALL,
            "each adapter reports the kind it is listed as"
        );
        for &kind in ProviderKind::ALL {
            assert_eq!(ProviderKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn default_urls_are_https_and_only_for_adapters_that_call_out() {
        for (id, url) in default_urls() {
            let parsed = Url::parse(&url).unwrap_or_else(|e| panic!("{id}: {url}: {e}"));
            assert_eq!(parsed.scheme(), "https", "{id}");
        }
        assert!(
            !default_urls().contains_key("sandbox"),
            "the sandbox calls nothing"
        );
        assert_eq!(default_urls()["hunter"], hunter::BASE_URL);
    }
}
