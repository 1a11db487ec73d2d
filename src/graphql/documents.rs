//! Parsed and checked documents, kept by their text: clients send the same few documents over
//! and over (a page query with new variables), and parsing one is a good share of a small
//! request's CPU. A hit hands execution a copy of the parsed document and skips the parse and
//! the `guard` checks; async-graphql's own validation still runs on every request (it has no
//! way to skip it).
//!
//! Only documents that parsed and passed `guard::check_document` are kept, under the text and
//! whether the caller was authenticated (introspection is allowed by that), so a refusal is
//! decided afresh every time. The cache belongs to one `Gateway`, so a new schema starts with
//! an empty one. It is bounded by the estimated size of what it holds (`CAPACITY_BYTES`,
//! least recently used out first); documents longer than `MAX_DOCUMENT_BYTES` are not kept.

use super::Limits;
use super::guard;
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, ServerError};
use moka::sync::Cache;
use std::hash::BuildHasher as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the cache may hold, estimated (`weight`).
pub const CAPACITY_BYTES: u64 = 16 << 20;

/// Longer documents are parsed every time.
pub const MAX_DOCUMENT_BYTES: usize = 64 << 10;

/// A parsed document is a tree of small allocations; this many bytes per byte of text is a
/// generous estimate of its size.
const BYTES_PER_TEXT_BYTE: usize = 8;

struct Entry {
    text: String,
    authenticated: bool,
    doc: ExecutableDocument,
}

/// Parsed, checked documents by text (see the module header).
#[derive(Clone)]
pub struct DocumentCache {
    entries: Cache<u64, Arc<Entry>>,
    hasher: std::collections::hash_map::RandomState,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Hits and misses since the cache was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
}

impl Default for DocumentCache {
    fn default() -> Self {
        Self::with_capacity(CAPACITY_BYTES)
    }
}

impl DocumentCache {
    /// A cache holding about `bytes` of parsed documents.
    pub fn with_capacity(bytes: u64) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(bytes)
                .weigher(|_, e: &Arc<Entry>| weight(&e.text))
                .build(),
            hasher: Default::default(),
            counts: Arc::default(),
        }
    }

    /// Gives `request` its parsed document and checks it (`guard::prepare`), from the cache
    /// when this text passed before for a caller as authenticated as this one.
    pub fn prepare(
        &self,
        request: &mut Request,
        limits: &Limits,
        authenticated: bool,
    ) -> Result<(), ServerError> {
        if request.query.len() > MAX_DOCUMENT_BYTES {
            return guard::prepare(request, limits, authenticated);
        }
        let key = self.hasher.hash_one((authenticated, request.query.as_str()));
        if let Some(entry) = self.entries.get(&key)
            && entry.authenticated == authenticated
            && entry.text == request.query
        {
            self.counts.hits.fetch_add(1, Ordering::Relaxed);
            request.set_parsed_query(entry.doc.clone());
            return Ok(());
        }
        self.counts.misses.fetch_add(1, Ordering::Relaxed);
        guard::prepare(request, limits, authenticated)?;
        let text = request.query.clone();
        if let Ok(doc) = request.parsed_query() {
            let entry = Entry {
                text,
                authenticated,
                doc: doc.clone(),
            };
            self.entries.insert(key, Arc::new(entry));
        }
        Ok(())
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.counts.hits.load(Ordering::Relaxed),
            misses: self.counts.misses.load(Ordering::Relaxed),
        }
    }

    /// Documents held and their estimated size in bytes (after pending evictions).
    pub fn size(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.entry_count(), self.entries.weighted_size())
    }
}

fn weight(text: &str) -> u32 {
    u32::try_from(text.len().saturating_mul(BYTES_PER_TEXT_BYTE).saturating_add(512)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphql::IntrospectionPolicy;

    fn limits() -> Limits {
        Limits {
            depth: 32,
            complexity: 10_000,
            aliases: 30,
            batch: 10,
            field_repeats: 5,
            directives: 5,
            introspection: IntrospectionPolicy::Authenticated,
            suggestions: false,
        }
    }

    fn prepared(cache: &DocumentCache, query: &str, authenticated: bool) -> Result<Request, ServerError> {
        let mut request = Request::new(query);
        cache.prepare(&mut request, &limits(), authenticated)?;
        Ok(request)
    }

    #[test]
    fn the_second_request_with_a_text_is_a_hit_with_the_same_document() {
        let cache = DocumentCache::default();
        let query = "query Page($after: String) { leads(first: 50, after: $after) { edges { cursor } } }";
        let mut first = prepared(&cache, query, true).expect("prepared");
        assert_eq!(cache.stats(), CacheStats { hits: 0, misses: 1 });
        let mut second = prepared(&cache, query, true).expect("prepared");
        assert_eq!(cache.stats(), CacheStats { hits: 1, misses: 1 });
        let (a, b) = (
            first.parsed_query().expect("parsed"),
            second.parsed_query().expect("parsed"),
        );
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        prepared(&cache, "{ __typename }", true).expect("prepared");
        assert_eq!(cache.stats(), CacheStats { hits: 1, misses: 2 });
    }

    #[test]
    fn a_refused_document_is_refused_every_time_and_never_kept() {
        let cache = DocumentCache::default();
        for _ in 0..2 {
            assert!(prepared(&cache, "{ leads(", true).is_err());
            assert!(
                prepared(
                    &cache,
                    "{ a: __typename b: __typename c: __typename d: __typename e: __typename f: __typename }",
                    true
                )
                .is_ok()
            );
        }
        let aliased = "{ a1: __typename a2: __typename a3: __typename a4: __typename a5: __typename a6: __typename a7: __typename a8: __typename a9: __typename a10: __typename a11: __typename a12: __typename a13: __typename a14: __typename a15: __typename a16: __typename a17: __typename a18: __typename a19: __typename a20: __typename a21: __typename a22: __typename a23: __typename a24: __typename a25: __typename a26: __typename a27: __typename a28: __typename a29: __typename a30: __typename a31: __typename }";
        for _ in 0..2 {
            assert!(prepared(&cache, aliased, true).is_err());
        }
        assert_eq!(cache.size().0, 1, "only the accepted document is kept");
    }

    #[test]
    fn introspection_cached_for_an_authenticated_caller_is_still_refused_to_an_anonymous_one() {
        let cache = DocumentCache::default();
        let query = "{ __schema { queryType { name } } }";
        prepared(&cache, query, true).expect("allowed when authenticated");
        prepared(&cache, query, true).expect("allowed again");
        assert_eq!(cache.stats().hits, 1);
        let refused = prepared(&cache, query, false).expect_err("anonymous callers may not introspect");
        assert!(refused.message.contains("introspection"), "{}", refused.message);
    }

    #[test]
    fn a_new_cache_for_a_new_schema_starts_empty() {
        let old = DocumentCache::default();
        prepared(&old, "{ __typename }", true).expect("prepared");
        let new = DocumentCache::default();
        prepared(&new, "{ __typename }", true).expect("prepared");
        assert_eq!(new.stats(), CacheStats { hits: 0, misses: 1 });
    }

    #[test]
    fn the_cache_stays_within_its_bound() {
        let bound = 64 << 10;
        let cache = DocumentCache::with_capacity(bound);
        for i in 0..200 {
            let query = format!("query Q{i} {{ __typename }}");
            prepared(&cache, &query, true).expect("prepared");
        }
        let (count, bytes) = cache.size();
        assert!(bytes <= bound, "{bytes} bytes held, bound {bound}");
        assert!(count < 200, "{count} documents held");
        let long = format!("{{ __typename }}{}", " ".repeat(MAX_DOCUMENT_BYTES));
        prepared(&cache, &long, true).expect("prepared");
        prepared(&cache, &long, true).expect("prepared");
        assert_eq!(
            cache.stats().hits,
            0,
            "a document over the size limit is parsed every time"
        );
    }
}
