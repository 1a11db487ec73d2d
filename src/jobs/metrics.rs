//! Job queue metrics, one registry per application, rendered on `/metrics` before the
//! enrichment families: depth by kind and state and the age of the oldest queued job (sampled
//! periodically by the workers), outcomes by kind, and run durations. With RabbitMQ
//! (`jobs::amqp`): messages published (by route), confirmed, nacked, relayed, consumed, acked,
//! redelivered, dead-lettered (by reason) and dropped as duplicates, whether the broker is
//! connected, and domain events published to the events exchange and still waiting. Labels are kinds, states, routes and reasons, never payloads.

use crate::domain::{QueueStat, Timestamp};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DepthLabels {
    pub kind: String,
    /// `queued`, `running`, `succeeded` or `dead`.
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// `work` (due now) or `delay` (through a delay queue).
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `dead` (out of attempts or failed for good), `poison` (no job message) or `unknown`
    /// (names no job).
    pub reason: &'static str,
}

/// The broker's message counters.
#[derive(Clone, Default)]
struct BrokerFamilies {
    published: Family<RouteLabels, Counter>,
    confirmed: Counter,
    nacked: Counter,
    relayed: Counter,
    consumed: Counter,
    acked: Counter,
    redelivered: Counter,
    dead_lettered: Family<ReasonLabels, Counter>,
    duplicates: Counter,
    connected: Gauge,
    events_published: Counter,
    events_pending: Gauge,
}

/// The job metric families.
#[derive(Clone)]
pub struct JobMetrics {
    registry: Arc<Registry>,
    depth: Family<DepthLabels, Gauge>,
    oldest_age: Family<KindLabels, Gauge<f64, AtomicU64>>,
    completed: Family<KindLabels, Counter>,
    failed: Family<KindLabels, Counter>,
    dead: Family<KindLabels, Counter>,
    duration: Family<KindLabels, Histogram>,
    broker: BrokerFamilies,
}

impl Default for JobMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl JobMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("leadgate");
        let depth = Family::<DepthLabels, Gauge>::default();
        let oldest_age = Family::<KindLabels, Gauge<f64, AtomicU64>>::default();
        let completed = Family::<KindLabels, Counter>::default();
        let failed = Family::<KindLabels, Counter>::default();
        let dead = Family::<KindLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0])
        });
        registry.register("jobs_depth", "Jobs by kind and state (sampled)", depth.clone());
        registry.register(
            "jobs_oldest_queued_age_seconds",
            "How long the oldest due queued job of each kind has waited (sampled)",
            oldest_age.clone(),
        );
        registry.register(
            "jobs_completed",
            "Jobs that succeeded, by kind",
            completed.clone(),
        );
        registry.register(
            "jobs_failed",
            "Failed job attempts (retried or not), by kind",
            failed.clone(),
        );
        registry.register("jobs_dead", "Jobs moved to the dead state, by kind", dead.clone());
        registry.register(
            "job_run_duration_seconds",
            "Time one job attempt ran",
            duration.clone(),
        );
        let broker = BrokerFamilies::default();
        let b = &broker;
        registry.register(
            "queue_messages_published",
            "Job messages handed to RabbitMQ, by route",
            b.published.clone(),
        );
        registry.register(
            "queue_messages_confirmed",
            "Job messages RabbitMQ confirmed",
            b.confirmed.clone(),
        );
        registry.register(
            "queue_messages_nacked",
            "Job messages RabbitMQ refused or returned as unroutable",
            b.nacked.clone(),
        );
        registry.register(
            "queue_messages_relayed",
            "Job messages the relay published for rows that had none",
            b.relayed.clone(),
        );
        registry.register(
            "queue_messages_consumed",
            "Job messages delivered to this process's workers",
            b.consumed.clone(),
        );
        registry.register(
            "queue_messages_acked",
            "Job messages acknowledged",
            b.acked.clone(),
        );
        registry.register(
            "queue_messages_redelivered",
            "Job messages delivered again after a consumer did not acknowledge them",
            b.redelivered.clone(),
        );
        registry.register(
            "queue_messages_dead_lettered",
            "Job messages rejected into the dead-letter queue, by reason",
            b.dead_lettered.clone(),
        );
        registry.register(
            "queue_messages_duplicate",
            "Job messages for jobs already done or taken, acknowledged and dropped",
            b.duplicates.clone(),
        );
        registry.register(
            "queue_broker_connected",
            "1 while this process is connected to RabbitMQ",
            b.connected.clone(),
        );
        registry.register(
            "queue_events_published",
            "Domain events RabbitMQ confirmed on the events exchange",
            b.events_published.clone(),
        );
        registry.register(
            "queue_events_pending",
            "Events in the log not yet published to the events exchange (as the publishing process last saw)",
            b.events_pending.clone(),
        );
        Self {
            broker,
            registry: Arc::new(registry),
            depth,
            oldest_age,
            completed,
            failed,
            dead,
            duration,
        }
    }

    fn kind(kind: &str) -> KindLabels {
        KindLabels {
            kind: kind.to_owned(),
        }
    }

    pub fn ran(&self, kind: &str, took: Duration) {
        self.duration
            .get_or_create(&Self::kind(kind))
            .observe(took.as_secs_f64());
    }

    pub fn completed(&self, kind: &str, n: u64) {
        self.completed.get_or_create(&Self::kind(kind)).inc_by(n);
    }

    pub fn failed(&self, kind: &str) {
        self.failed.get_or_create(&Self::kind(kind)).inc();
    }

    pub fn dead(&self, kind: &str) {
        self.dead.get_or_create(&Self::kind(kind)).inc();
    }

    pub fn published(&self, route: &'static str) {
        self.broker.published.get_or_create(&RouteLabels { route }).inc();
    }

    pub fn confirmed(&self) {
        self.broker.confirmed.inc();
    }

    pub fn nacked(&self) {
        self.broker.nacked.inc();
    }

    pub fn relayed(&self, n: u64) {
        self.broker.relayed.inc_by(n);
    }

    pub fn consumed(&self) {
        self.broker.consumed.inc();
    }

    pub fn acked(&self) {
        self.broker.acked.inc();
    }

    pub fn acked_many(&self, count: u64) {
        self.broker.acked.inc_by(count);
    }

    pub fn redelivered(&self) {
        self.broker.redelivered.inc();
    }

    pub fn dead_lettered(&self, reason: &'static str) {
        self.broker
            .dead_lettered
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn duplicate(&self) {
        self.broker.duplicates.inc();
    }

    pub fn events_published(&self, n: u64) {
        self.broker.events_published.inc_by(n);
    }

    pub fn events_pending(&self, n: i64) {
        self.broker.events_pending.set(n);
    }

    pub fn broker_connected(&self, up: bool) {
        self.broker.connected.set(i64::from(up));
    }

    /// Replaces the sampled depth and age gauges with a fresh sample taken at `now`.
    pub fn sample(&self, stats: &[QueueStat], now: Timestamp) {
        self.depth.clear();
        self.oldest_age.clear();
        for s in stats {
            self.depth
                .get_or_create(&DepthLabels {
                    kind: s.kind.clone(),
                    state: s.state.as_str(),
                })
                .set(s.count.min(i64::MAX as u64) as i64);
            if s.oldest_run_at.is_some() {
                self.oldest_age
                    .get_or_create(&Self::kind(&s.kind))
                    .set(s.oldest_age(now).as_secs_f64());
            }
        }
    }

    /// The families in the Prometheus text format, without a closing `# EOF` (the page
    /// embeds them among other families).
    pub fn render_families(&self) -> String {
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
    use crate::domain::JobState;

    #[test]
    fn renders_samples_and_outcomes_by_kind() {
        let m = JobMetrics::new();
        let now = crate::domain::now();
        m.sample(
            &[QueueStat {
                kind: "noop".into(),
                state: JobState::Queued,
                count: 3,
                oldest_run_at: Some(now - chrono::Duration::seconds(5)),
            }],
            now,
        );
        m.completed("noop", 2);
        m.dead("noop");
        let text = m.render_families();
        assert!(
            text.contains(r#"leadgate_jobs_depth{kind="noop",state="queued"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"leadgate_jobs_oldest_queued_age_seconds{kind="noop"} 5"#),
            "{text}"
        );
        assert!(
            text.contains(r#"leadgate_jobs_completed_total{kind="noop"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"leadgate_jobs_dead_total{kind="noop"} 1"#),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
    }
}
