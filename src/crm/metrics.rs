//! CRM metrics in the Prometheus text format, one registry per application: requests by
//! connection and outcome (429s among them), request latency, and records by outcome. Labels
//! are connection ids and kinds, never lead data or tokens.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub connection: String,
    pub crm: &'static str,
    /// `ok`, `rate_limited`, `transient`, `unauthorized`, `rejected`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    pub connection: String,
    pub crm: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordLabels {
    pub connection: String,
    pub crm: &'static str,
    /// `pushed`, `pulled`, `failed`, `skipped`.
    pub outcome: &'static str,
}

/// The CRM metric families.
#[derive(Clone)]
pub struct CrmMetrics {
    registry: Arc<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<ConnectionLabels, Histogram>,
    pub records: Family<RecordLabels, Counter>,
}

impl std::fmt::Debug for CrmMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CrmMetrics")
    }
}

impl Default for CrmMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl CrmMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("leadgate_crm");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<ConnectionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
        });
        let records = Family::<RecordLabels, Counter>::default();
        registry.register("requests", "CRM write requests by outcome", requests.clone());
        registry.register(
            "request_duration_seconds",
            "CRM write request latency",
            latency.clone(),
        );
        registry.register("records", "Records synced by outcome", records.clone());
        Self {
            registry: Arc::new(registry),
            requests,
            latency,
            records,
        }
    }

    pub fn request(&self, connection: &str, crm: &'static str, outcome: &'static str, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                connection: connection.to_owned(),
                crm,
                outcome,
            })
            .inc();
        self.latency
            .get_or_create(&ConnectionLabels {
                connection: connection.to_owned(),
                crm,
            })
            .observe(took.as_secs_f64());
    }

    pub fn records(&self, connection: &str, crm: &'static str, outcome: &'static str, n: u64) {
        if n > 0 {
            self.records
                .get_or_create(&RecordLabels {
                    connection: connection.to_owned(),
                    crm,
                    outcome,
                })
                .inc_by(n);
        }
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
