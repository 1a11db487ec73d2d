//! Assembles the application from settings: store, services, authenticator, schema and
//! router, and the job registry and workers. `main` and the integration tests both start
//! leadgate through here. The job kinds are listed here, once (`JOB_KINDS`), because their
//! handlers come from every layer above `jobs`.

use crate::auth::Authenticator;
use crate::config::Settings;
use crate::crypto::KeySealer;
use crate::domain::{Group, JobKind, ProviderKind, Role, Workspace};
use crate::enrich::metrics::Metrics;
use crate::enrich::{EnrichOptions, Enricher};
use crate::events::Bus;
use crate::events::delivery::{self, DeliveryHandler, Dispatcher, PruneEvents};
use crate::events::webhooks::Deliverer;
use crate::graphql::persisted;
use crate::graphql::ws::Drain;
use crate::graphql::{Edge, Gateway};
use crate::http::{HttpConfig, router};
use crate::jobs::amqp::events::EventExportConfig;
use crate::jobs::schedule::ScheduleSpec;
#[cfg(feature = "test-kinds")]
use crate::jobs::test_kinds;
use crate::jobs::worker::Workers;
use crate::jobs::{Handler, Registry, builtin};
use crate::limits::Limiter;
use crate::ops::backup::scheduled::{self, ScheduledBackup};
use crate::service::{
    CAMPAIGN_SEGMENTS, CAMPAIGN_STEPS, CAMPAIGN_TICK, CRM_POLL, CRM_POLL_DUE, CRM_PUSH,
    CampaignSegmentsHandler, CampaignStepsHandler, CampaignTickHandler, CrmDispatcher, CrmPollDueHandler,
    CrmPollHandler, CrmPushHandler, ENRICH_LEADS, EnrichLeadsHandler, IMPORT_LEADS, ImportLeadsHandler,
    KeyRingTask, RETENTION_RUN, RETENTION_SCHEDULE, RetentionRunHandler, RetentionScheduleHandler, Services,
};
use crate::store::{PoolOptions, Store};
use anyhow::{Context, bail};
use base64::Engine;
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;

/// Where the HS256 secret generated for demos is kept.
pub const SECRET_SETTING: &str = "auth.hs256_secret";
pub const DEMO_WORKSPACE: &str = "demo";
pub const DEMO_LEADS: u64 = 10_000;

/// Opens the configured database and applies migrations.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let options = PoolOptions {
        max_connections: settings.database_max_connections,
    };
    Store::connect(&settings.database_url, &options)
        .await
        .with_context(|| {
            format!(
                "cannot open database {}",
                crate::store::redact_url(&settings.database_url)
            )
        })
}

/// The HS256 secret: configured, else stored in the database; with `generate`, one is made
/// and stored when neither exists (demo mode).
pub async fn resolve_secret(
    settings: &Settings,
    store: &Store,
    generate: bool,
) -> anyhow::Result<Option<SecretString>> {
    if let Some(secret) = &settings.jwt_secret {
        return Ok(Some(secret.clone()));
    }
    if let Some(stored) = store.setting(SECRET_SETTING).await? {
        return Ok(Some(SecretString::from(stored)));
    }
    if !generate {
        return Ok(None);
    }
    let bytes: [u8; 48] = rand::random();
    let fresh = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let kept = store.setting_or_insert(SECRET_SETTING, &fresh).await?;
    Ok(Some(SecretString::from(kept)))
}

/// The token verifier, or a message that says how to configure one.
pub async fn authenticator(settings: &Settings, store: &Store, demo: bool) -> anyhow::Result<Authenticator> {
    let secret = resolve_secret(settings, store, demo).await?;
    if secret.is_none() && settings.jwt_public_keys.is_empty() {
        bail!(
            "no token key configured: set LEADGATE_JWT_SECRET (at least 32 bytes), configure \
             jwt_public_keys in leadgate.toml, or start once with `leadgate serve --demo`"
        );
    }
    Authenticator::new(&settings.auth_config(secret)).context("invalid token key configuration")
}

/// The enrichment pipeline as configured: every adapter, the key sealer when a master key is
/// set, and the tunables.
pub fn enricher(
    settings: &Settings,
    options: EnrichOptions,
    store: Store,
    bus: Bus,
) -> anyhow::Result<Enricher> {
    Ok(Enricher::new(
        store,
        crate::enrich::providers::all(&settings.base_urls()),
        sealer(settings)?,
        options,
        Metrics::new(),
        Arc::new(move |events| bus.publish(events)),
    ))
}

/// What seals provider keys and webhook secrets, when a master key is configured.
pub fn sealer(settings: &Settings) -> anyhow::Result<Option<KeySealer>> {
    settings
        .master_key
        .as_ref()
        .map(KeySealer::new)
        .transpose()
        .context("setting `master_key`")
}

/// The services on an opened store, with the event bus they publish to. Needs a Tokio runtime.
pub fn services(settings: &Settings, store: Store) -> anyhow::Result<Services> {
    services_with(settings, settings.enrich_options(), store)
}

/// `services` with the enrichment pipeline's options given (tests hold its clock still).
pub fn services_with(
    settings: &Settings,
    mut enrich: EnrichOptions,
    store: Store,
) -> anyhow::Result<Services> {
    let redis = settings.redis()?;
    if enrich.redis.is_none() {
        enrich.redis = redis.clone();
    }
    let bus = Bus::start(store.clone(), settings.bus_options());
    let enricher = enricher(settings, enrich, store.clone(), bus.clone())?;
    let mut services = Services::new(store.clone(), enricher, bus, sealer(settings)?);
    services.redis = redis;
    if let Some(options) = settings.broker_options(&format!("leadgate (pid {})", std::process::id())) {
        let queue = services.jobs.queue();
        let broker = crate::jobs::amqp::Broker::start(options, store, queue.metrics().clone())
            .map_err(|message| anyhow::anyhow!("setting `queue_url`: {message}"))?;
        queue.attach(broker);
    }
    services.exports.set_batch_size(settings.export_batch_size);
    services.webhooks.set_outbound(settings.outbound_policy());
    services.crm.set_outbound(settings.outbound_policy());
    services.campaigns.set_outbound(
        settings.mailer().context("setting `smtp_url`")?,
        &settings.public_base(),
    );
    services.campaigns.set_mail_verifier(settings.mail_verifier());
    services.crm.set_options(crate::service::CrmOptions {
        coalesce: Duration::from_millis(settings.crm_push_delay_ms),
        ..crate::service::CrmOptions::default()
    });
    Ok(services)
}

/// One job kind as `JOB_KINDS` lists it.
pub struct JobKindLine {
    pub kind: JobKind,
    /// Builds the kind's handler from the settings and the services.
    pub handler: fn(&Settings, &Services) -> anyhow::Result<Arc<dyn Handler>>,
    /// When a job of the kind is enqueued by the clock.
    pub every: Every,
    /// Whether the settings turn the kind on (most kinds are always on).
    pub on: fn(&Settings) -> bool,
}

/// When a listed kind recurs: a five-field cron read in UTC, fixed or from a setting, or never.
pub enum Every {
    Never,
    Cron(&'static str),
    Setting(fn(&Settings) -> Option<&str>),
}

impl JobKindLine {
    const fn new(
        kind: JobKind,
        handler: fn(&Settings, &Services) -> anyhow::Result<Arc<dyn Handler>>,
    ) -> Self {
        Self {
            kind,
            handler,
            every: Every::Never,
            on: always,
        }
    }

    /// Recurs on a fixed cron (UTC).
    const fn every(self, cron: &'static str) -> Self {
        Self {
            every: Every::Cron(cron),
            ..self
        }
    }

    /// Recurs on the cron (UTC) a setting holds, if it holds one.
    const fn every_setting(self, cron: fn(&Settings) -> Option<&str>) -> Self {
        Self {
            every: Every::Setting(cron),
            ..self
        }
    }

    /// Runs only when the settings say so.
    #[cfg_attr(not(feature = "test-kinds"), allow(dead_code))]
    const fn when(self, on: fn(&Settings) -> bool) -> Self {
        Self { on, ..self }
    }

    /// The cron this kind recurs on under `settings`, if any.
    pub fn cron<'a>(&self, settings: &'a Settings) -> Option<&'a str> {
        match self.every {
            Every::Never => None,
            Every::Cron(cron) => Some(cron),
            Every::Setting(cron) => cron(settings),
        }
    }
}

fn always(_: &Settings) -> bool {
    true
}

/// A handler as `JobKindLine::handler` returns it.
fn shared(handler: impl Handler) -> anyhow::Result<Arc<dyn Handler>> {
    Ok(Arc::new(handler))
}

fn hours(h: u64) -> Duration {
    Duration::from_secs(h.saturating_mul(3600))
}

/// Every job kind this build runs, one line each: its name (the constant beside its handler),
/// how its handler is built, and when it recurs. A new kind is its handler and one line here;
/// `registry` registers and schedules what this list says, and
/// `tests/api/contracts.rs::every_job_kind_the_code_names_is_registered` fails for a kind the
/// code names that is not listed. The test kinds exist only with the `test-kinds` feature.
pub const JOB_KINDS: &[JobKindLine] = &[
    JobKindLine::new(ENRICH_LEADS, |_, s| {
        shared(EnrichLeadsHandler(s.enrichment.clone()))
    }),
    JobKindLine::new(IMPORT_LEADS, |_, s| shared(ImportLeadsHandler(s.imports.clone()))),
    JobKindLine::new(CRM_PUSH, |_, s| shared(CrmPushHandler(s.crm.clone()))),
    JobKindLine::new(CRM_POLL, |_, s| shared(CrmPollHandler(s.crm.clone()))),
    JobKindLine::new(CRM_POLL_DUE, |_, s| shared(CrmPollDueHandler(s.crm.clone()))).every("* * * * *"),
    JobKindLine::new(CAMPAIGN_TICK, |_, s| {
        shared(CampaignTickHandler(s.campaigns.clone()))
    })
    .every("* * * * *"),
    JobKindLine::new(CAMPAIGN_STEPS, |_, s| {
        shared(CampaignStepsHandler(s.campaigns.clone()))
    }),
    JobKindLine::new(CAMPAIGN_SEGMENTS, |_, s| {
        shared(CampaignSegmentsHandler(s.campaigns.clone()))
    })
    .every("*/15 * * * *"),
    JobKindLine::new(builtin::PRUNE, |c, s| {
        shared(builtin::Prune {
            store: s.store.clone(),
            retention: hours(c.job_retention_hours),
        })
    })
    .every("17 * * * *"),
    JobKindLine::new(delivery::DELIVER, |c, s| {
        shared(DeliveryHandler {
            deliverer: Deliverer::new(s.store.clone(), sealer(c)?, c.webhook_options())
                .context("cannot build the webhook HTTP client")?,
            bus: s.events.bus().clone(),
            retry_base: Duration::from_millis(c.webhook_retry_base_ms),
        })
    }),
    JobKindLine::new(delivery::PRUNE_EVENTS, |c, s| {
        shared(PruneEvents {
            store: s.store.clone(),
            retention: hours(c.event_retention_days.saturating_mul(24)),
        })
    })
    .every("23 3 * * *"),
    JobKindLine::new(RETENTION_RUN, |_, s| {
        shared(RetentionRunHandler {
            store: s.store.clone(),
            bus: s.events.bus().clone(),
            batch: crate::ops::retention::BATCH,
        })
    }),
    JobKindLine::new(RETENTION_SCHEDULE, |_, s| {
        shared(RetentionScheduleHandler {
            store: s.store.clone(),
            queue: s.jobs.queue().clone(),
        })
    })
    .every_setting(|c| Some(c.retention_schedule.as_str())),
    JobKindLine::new(scheduled::KIND, |c, s| {
        shared(ScheduledBackup {
            store: s.store.clone(),
            options: c.backup_options(),
        })
    })
    .every_setting(|c| c.backup_schedule.as_deref()),
    #[cfg(feature = "test-kinds")]
    JobKindLine::new(test_kinds::NOOP, |_, _| shared(test_kinds::Noop)).when(|c| c.job_test_kinds),
    #[cfg(feature = "test-kinds")]
    JobKindLine::new(test_kinds::SLEEP, |_, _| shared(test_kinds::Sleep)).when(|c| c.job_test_kinds),
    #[cfg(feature = "test-kinds")]
    JobKindLine::new(test_kinds::FLAKY, |_, _| shared(test_kinds::Flaky)).when(|c| c.job_test_kinds),
    #[cfg(feature = "test-kinds")]
    JobKindLine::new(test_kinds::PANIC, |_, _| shared(test_kinds::Panic)).when(|c| c.job_test_kinds),
];

/// The job kinds `JOB_KINDS` turns on under `settings`, with their schedules, installed in the
/// services' queue (which then knows each kind's attempts).
pub fn registry(settings: &Settings, services: &Services) -> anyhow::Result<Registry> {
    let mut registry = Registry::new();
    for line in JOB_KINDS.iter().filter(|line| (line.on)(settings)) {
        let handler = (line.handler)(settings, services)?;
        anyhow::ensure!(
            handler.kind() == line.kind,
            "job kind `{}` is listed with the handler of `{}`",
            line.kind,
            handler.kind()
        );
        registry.insert(handler);
        if let Some(cron) = line.cron(settings) {
            registry.schedule(ScheduleSpec {
                name: line.kind.to_string(),
                cron: cron.to_owned(),
                tz: "UTC".into(),
                kind: line.kind,
                payload: serde_json::json!({}),
            })?;
        }
    }
    services.jobs.queue().install(&registry);
    Ok(registry)
}

/// Starts this process's job workers (claim loop, lease reclaim, schedules, metrics) and,
/// beside them, the dispatchers that queue webhook deliveries and CRM pushes and, with
/// `queue_events`, the exporter that publishes the event log to RabbitMQ.
pub async fn start_workers(
    settings: &Settings,
    services: &Services,
    registry: Registry,
) -> anyhow::Result<Workers> {
    let queue = services.jobs.queue().clone();
    let mut workers = Workers::start(queue.clone(), registry, settings.worker_config())
        .await
        .context("cannot start job workers")?;
    let dispatcher = Dispatcher::new(services.store.clone(), queue, services.events.bus().clone());
    workers.run_beside(|stop| dispatcher.run(stop));
    let crm = CrmDispatcher::new(services.crm.clone());
    workers.run_beside(|stop| crm.run(stop));
    if settings.queue_events
        && let Some(broker) = services.jobs.queue().broker()
    {
        let (broker, store) = (broker.clone(), services.store.clone());
        let wake = services.events.bus().watch();
        workers.run_beside(|stop| {
            crate::jobs::amqp::events::run(broker, store, EventExportConfig::default(), wake, stop)
        });
    }
    Ok(workers)
}

/// Refuses to serve when API keys are stored but no master key can open them.
pub async fn check_master_key(settings: &Settings, store: &Store) -> anyhow::Result<()> {
    let sealed = store.count_sealed_keys().await?;
    if sealed > 0 && settings.master_key.is_none() {
        bail!(
            "{sealed} provider API key(s) are stored sealed, but no master key is configured: \
             set LEADGATE_MASTER_KEY to the key they were sealed with"
        );
    }
    Ok(())
}

/// A running application's parts.
pub struct App {
    pub services: Services,
    pub auth: Authenticator,
    pub router: axum::Router,
    /// The in-process workers, unless `workers` is off.
    pub workers: Option<Workers>,
    /// Started when shutdown begins (`/readyz` unready, WebSockets closed with 1012).
    pub drain: Drain,
    /// Keeps the API key ring current; `KeyRingTask::stop` ends it.
    pub key_ring: KeyRingTask,
}

/// Builds the whole application on an opened store, with its job workers when `workers` is
/// on, and the API key ring loaded and kept current.
pub async fn assemble(
    settings: &Settings,
    services: Services,
    auth: Authenticator,
    graphiql_token: Option<String>,
) -> anyhow::Result<App> {
    let registry = registry(settings, &services)?;
    let key_ring = services
        .api_keys
        .ring()
        .start()
        .await
        .context("cannot load the API keys")?;
    let workers = if settings.workers {
        Some(start_workers(settings, &services, registry).await?)
    } else {
        None
    };
    // the console's charts: the job queue of each workspace whose history is read, each minute
    tokio::spawn(services.history.clone().run_sampler(services.store.clone()));
    let gateway = Gateway::new(
        services.clone(),
        settings.graphql_limits(),
        settings.graphql_metrics(),
    )
    .with_edge(edge(settings, &services)?);
    let drain = Drain::default();
    let http = HttpConfig {
        max_body_bytes: settings.max_body_bytes,
        max_upload_bytes: usize::try_from(settings.import_max_upload_mb.saturating_mul(1 << 20))
            .unwrap_or(usize::MAX),
        request_timeout: Duration::from_secs(settings.request_timeout_secs),
        graphiql_token,
        ws: settings.ws_config(),
        drain: drain.clone(),
        trusted_proxies: settings.trusted_proxies(),
    };
    let router = router(gateway, auth.clone(), services.clone(), http);
    Ok(App {
        services,
        auth,
        router,
        workers,
        drain,
        key_ring,
    })
}

/// Rate limits and persisted queries as configured, shared through the services' Redis when
/// there is one.
pub fn edge(settings: &Settings, services: &Services) -> anyhow::Result<Edge> {
    let clock = crate::limits::system_clock();
    let limiter = match &services.redis {
        Some(redis) => Limiter::shared(redis.clone(), clock),
        None => Limiter::local(clock),
    };
    let mode = persisted::Mode::parse(&settings.persisted_queries)
        .context("setting `persisted_queries` must be auto, allowlist or off")?;
    let manifest = match &settings.persisted_queries_file {
        Some(path) => persisted::read_manifest(path)
            .map_err(|e| anyhow::anyhow!("setting `persisted_queries_file`: {e}"))?,
        None => Default::default(),
    };
    Ok(Edge {
        limiter,
        policy: settings.rate_policy()?,
        persisted: persisted::PersistedQueries::new(mode, manifest, services.redis.clone()),
    })
}

/// Creates the demo workspace with synthetic leads on first start; later starts find it
/// and leave it alone. The sandbox provider is put first in every waterfall, so enrichment
/// works with no keys. Returns the workspace and how many leads were added now.
pub async fn ensure_demo(services: &Services) -> anyhow::Result<(Workspace, u64)> {
    let (ws, _) = services.workspaces.ensure(DEMO_WORKSPACE, "Demo").await?;
    let store = &services.store;
    let mut settings = store.enrichment_settings(ws.id).await?.unwrap_or_default();
    for group in Group::ALL {
        let waterfall = settings.waterfalls.entry(group).or_default();
        if waterfall.first() != Some(&ProviderKind::Sandbox) {
            waterfall.retain(|p| *p != ProviderKind::Sandbox);
            waterfall.insert(0, ProviderKind::Sandbox);
        }
    }
    store
        .save_enrichment_settings(ws.id, &settings, crate::domain::now())
        .await?;
    services.enrichment.enricher().settings_changed(ws.id);
    ensure_demo_campaign(services, &ws).await?;
    let counts = services.workspaces.lead_counts(ws.id).await?;
    if counts.active + counts.archived > 0 {
        return Ok((ws, 0));
    }
    let added = crate::bulk::seed(&services.store, &ws, DEMO_LEADS, 42, |_| {}).await?;
    Ok((ws, added))
}

/// One example campaign in `DRAFT` over the demo's German leads, created once.
async fn ensure_demo_campaign(services: &Services, ws: &Workspace) -> anyhow::Result<()> {
    use crate::domain::campaign::{
        CampaignDefinition, EmailStep, Segment, SendWindow, Sender, Step, StepAction, StopRules, Throttles,
        WaitStep,
    };
    let actor = crate::service::Actor {
        subject: "demo".into(),
        workspace_id: ws.id,
        role: Role::Admin,
        key: None,
    };
    let existing = services
        .campaigns
        .list(&actor, &[], &crate::domain::KeysetPage::first(1))
        .await?;
    if !existing.items.is_empty() {
        return Ok(());
    }
    let filter = crate::domain::LeadFilter {
        countries: vec![
            crate::domain::CountryCode::parse("country", "DE").map_err(|e| anyhow::anyhow!(e.message))?,
        ],
        has_email: Some(true),
        ..Default::default()
    };
    let nine = chrono::NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default();
    let five = chrono::NaiveTime::from_hms_opt(17, 0, 0).unwrap_or_default();
    let email = |subject: &str, body: &str| {
        StepAction::Email(EmailStep {
            subject: subject.into(),
            body: body.into(),
            html: None,
            variants: Vec::new(),
            sender: None,
        })
    };
    let definition = CampaignDefinition {
        segment: Segment {
            filter: crate::domain::filter_to_json(&filter),
            reentry_after_days: None,
        },
        senders: vec![Sender {
            email: "sales@example.com".into(),
            name: Some("Demo Sales".into()),
            daily_cap: Some(200),
        }],
        send_window: SendWindow::new(
            [
                chrono::Weekday::Mon,
                chrono::Weekday::Tue,
                chrono::Weekday::Wed,
                chrono::Weekday::Thu,
                chrono::Weekday::Fri,
            ],
            nine,
            five,
        )
        .ok(),
        time_zone: "Europe/Berlin".into(),
        starts_at: None,
        ends_at: None,
        throttles: Throttles {
            per_hour: Some(100),
            per_day: None,
            per_domain_hour: Some(5),
        },
        stop_rules: StopRules::default(),
        track_clicks: false,
        steps: vec![
            Step {
                key: "welcome".into(),
                action: email(
                    "Hi {{ firstName | default('there') }}",
                    "Hello {{ firstName | default('there') }},\n\nthanks for your interest in {{ companyName | \
                     default('our product') }}.\n\nUnsubscribe: {{ unsubscribeUrl }}\n",
                ),
            },
            Step {
                key: "wait".into(),
                action: StepAction::Wait(WaitStep {
                    duration_secs: Some(2 * 86_400),
                    until_day: None,
                    until_time: None,
                }),
            },
            Step {
                key: "follow-up".into(),
                action: email(
                    "Following up",
                    "Hello {{ firstName | default('there') }},\n\ndid you have a chance to look?\n\nUnsubscribe: \
                     {{ unsubscribeUrl }}\n",
                ),
            },
        ],
    };
    services
        .campaigns
        .create(
            &actor,
            crate::service::CampaignDraft {
                name: "Welcome DE".into(),
                definition,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the demo campaign: {e}"))?;
    Ok(())
}

/// Mints an HS256 token, failing clearly when only public keys are configured.
pub fn mint(
    auth: &Authenticator,
    subject: &str,
    ws: &Workspace,
    role: Role,
    ttl: Duration,
) -> anyhow::Result<String> {
    auth.mint(subject, ws.id, role, ttl)
        .context("tokens can only be minted with an HS256 secret (LEADGATE_JWT_SECRET or a demo database)")
}
