//! Campaign metrics in the Prometheus text format, one registry per application: steps by type
//! and outcome, sends by outcome with the relay's latency, and inbound mail events by provider
//! and kind. Labels are step types, outcomes and provider names, never lead data.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// The step type (`email`, `wait`, `waitFor`, …) or `exited`, `completed`, `error`.
    pub step: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `accepted`, `deferred`, `rejected`, `not_sent`, `unknown`, `invalid`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MailEventLabels {
    pub provider: String,
    pub kind: &'static str,
}

/// The campaign metric families.
#[derive(Clone)]
pub struct CampaignMetrics {
    registry: Arc<Registry>,
    steps: Family<StepLabels, Counter>,
    sends: Family<OutcomeLabels, Counter>,
    send_latency: Histogram,
    mail_events: Family<MailEventLabels, Counter>,
}

impl std::fmt::Debug for CampaignMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CampaignMetrics")
    }
}

impl Default for CampaignMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl CampaignMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("leadgate_campaign");
        let steps = Family::<StepLabels, Counter>::default();
        let sends = Family::<OutcomeLabels, Counter>::default();
        let send_latency = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0]);
        let mail_events = Family::<MailEventLabels, Counter>::default();
        registry.register("steps", "Campaign steps run, by type and outcome", steps.clone());
        registry.register("sends", "Emails handed to the relay, by outcome", sends.clone());
        registry.register(
            "send_duration_seconds",
            "How long one send to the relay took",
            send_latency.clone(),
        );
        registry.register(
            "mail_events",
            "Inbound mail events applied, by provider and kind",
            mail_events.clone(),
        );
        Self {
            registry: Arc::new(registry),
            steps,
            sends,
            send_latency,
            mail_events,
        }
    }

    pub fn step(&self, kind: &str, outcome: &str) {
        self.steps
            .get_or_create(&StepLabels {
                step: kind.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn send(&self, outcome: &'static str, took: Duration) {
        self.sends.get_or_create(&OutcomeLabels { outcome }).inc();
        self.send_latency.observe(took.as_secs_f64());
    }

    pub fn mail_event(&self, provider: &str, kind: &'static str) {
        self.mail_events
            .get_or_create(&MailEventLabels {
                provider: provider.to_owned(),
                kind,
            })
            .inc();
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
