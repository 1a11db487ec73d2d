//! Enrichment metrics in the Prometheus text format, one registry per application (so tests
//! that run several apps in one process do not share counters): provider calls, latency,
//! credits and skips, cache lookups by tier, and each provider's circuit state (sampled by
//! `Enricher::render_metrics`). Labels are provider names and outcomes, never lead data, keys
//! or workspaces.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub provider: &'static str,
    pub group: &'static str,
    /// `ok`, or the error's label (`transient`, `timeout`, `unauthorized`, …).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SkipLabels {
    pub provider: &'static str,
    /// Why the provider was passed over: `circuit_open`, `rate_limited`, `quota`, `budget`,
    /// `disabled`, `no_key`.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `memory`, `redis` (the cache instances share) or `store`.
    pub tier: &'static str,
    /// `hit` or `miss`.
    pub result: &'static str,
}

/// The enrichment metric families.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub calls: Family<CallLabels, Counter>,
    pub call_seconds: Family<ProviderLabels, Histogram>,
    pub credits: Family<ProviderLabels, Counter>,
    pub skips: Family<SkipLabels, Counter>,
    pub cache: Family<CacheLabels, Counter>,
    /// 0 closed, 1 half-open, 2 open: the worst of the provider's breakers (one per workspace).
    pub circuit: Family<ProviderLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("leadgate");
        let calls = Family::<CallLabels, Counter>::default();
        let call_seconds = Family::<ProviderLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        let credits = Family::<ProviderLabels, Counter>::default();
        let skips = Family::<SkipLabels, Counter>::default();
        let cache = Family::<CacheLabels, Counter>::default();
        let circuit = Family::<ProviderLabels, Gauge>::default();
        registry.register("provider_calls", "Provider calls by outcome", calls.clone());
        registry.register(
            "provider_call_duration_seconds",
            "Provider call latency",
            call_seconds.clone(),
        );
        registry.register("provider_credits", "Credits spent per provider", credits.clone());
        registry.register(
            "provider_skips",
            "Times a provider was passed over in a waterfall, by reason",
            skips.clone(),
        );
        registry.register(
            "enrichment_cache_lookups",
            "Enrichment cache lookups by tier and result",
            cache.clone(),
        );
        registry.register(
            "provider_circuit_state",
            "Circuit state per provider, the worst over its workspaces: 0 closed, 1 half-open, 2 open",
            circuit.clone(),
        );
        Self {
            registry: Arc::new(registry),
            calls,
            call_seconds,
            credits,
            skips,
            cache,
            circuit,
        }
    }

    pub fn call(&self, provider: &'static str, group: &'static str, outcome: &'static str, took: Duration) {
        self.calls
            .get_or_create(&CallLabels {
                provider,
                group,
                outcome,
            })
            .inc();
        self.call_seconds
            .get_or_create(&ProviderLabels { provider })
            .observe(took.as_secs_f64());
    }

    pub fn spent(&self, provider: &'static str, credits: u64) {
        if credits > 0 {
            self.credits
                .get_or_create(&ProviderLabels { provider })
                .inc_by(credits);
        }
    }

    pub fn skip(&self, provider: &'static str, reason: &'static str) {
        self.skips.get_or_create(&SkipLabels { provider, reason }).inc();
    }

    pub fn cache(&self, tier: &'static str, hit: bool, n: u64) {
        if n > 0 {
            let result = if hit { "hit" } else { "miss" };
            self.cache.get_or_create(&CacheLabels { tier, result }).inc_by(n);
        }
    }

    /// Sets a provider's circuit gauge: 0 closed, 1 half-open, 2 open.
    pub fn set_circuit(&self, provider: &'static str, state: i64) {
        self.circuit
            .get_or_create(&ProviderLabels { provider })
            .set(state);
    }

    /// The registry in the Prometheus text exposition format, without a closing `# EOF` (the
    /// page embeds it among other families).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let m = Metrics::new();
        m.call("pdl", "person", "ok", Duration::from_millis(40));
        m.spent("pdl", 3);
        m.cache("memory", true, 5);
        let text = m.render();
        assert!(
            text.contains(r#"leadgate_provider_calls_total{provider="pdl",group="person",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"leadgate_provider_credits_total{provider="pdl"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"leadgate_enrichment_cache_lookups_total{tier="memory",result="hit"} 5"#),
            "{text}"
        );
    }
}
