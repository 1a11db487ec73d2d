//! `leadgate serve` (the HTTP server, with job workers in-process unless `--no-workers`) and
//! `leadgate worker` (job workers only), with the setting flags each reads: the HTTP limits
//! and WebSocket settings (serve), provider endpoints and enrichment tunables, events and
//! webhooks, the job workers and error reporting (both). Both say at start where errors go.

use super::flags::{
    CommonFlags, DatabaseFlags, EnrichmentFlags, EventFlags, ExportFlags, HttpFlags, JobFlags, LimitFlags,
    MailFlags, MetricsFlags, OutboundFlags, QueueFlags, RedisFlags, SealingFlags, SentryFlags, SettingFlags,
    TokenFlags, WsFlags,
};
use crate::app::{self, App};
use crate::config::Settings;
use crate::domain::Role;
use crate::telemetry::sentry::ErrorReporting;
use anyhow::Context;
use clap::Args;
use serde::{Serialize, Serializer};
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Create the `demo` workspace with 10,000 leads on first start and print an admin token.
    #[arg(long, env = "LEADGATE_DEMO")]
    pub demo: bool,
    #[command(flatten)]
    pub settings: ServeSettings,
}

/// The settings `serve` reads from its flags.
#[derive(Args, Debug, Default, Serialize)]
pub struct ServeSettings {
    /// Whether to run job workers in this process.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub workers: Option<bool>,
    /// Run no job workers in this process (the same as `--workers false`, and it wins; run
    /// `leadgate worker` elsewhere).
    #[arg(long, env = "LEADGATE_NO_WORKERS")]
    // given, it is `workers = false`; serialised after `workers`, so it overrides it
    #[serde(
        rename = "workers",
        skip_serializing_if = "std::ops::Not::not",
        serialize_with = "off"
    )]
    pub no_workers: bool,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub database: DatabaseFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub tokens: TokenFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub sealing: SealingFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub http: HttpFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub limits: LimitFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub redis: RedisFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub exports: ExportFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub ws: WsFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub enrichment: EnrichmentFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub events: EventFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub outbound: OutboundFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub mail: MailFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub jobs: JobFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub sentry: SentryFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub queue: QueueFlags,
}

impl SettingFlags for ServeSettings {
    fn common(&self) -> &CommonFlags {
        &self.common
    }
}

fn off<S: Serializer>(_: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(false)
}

/// `leadgate worker`: the workers' settings and those of the jobs they run.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub settings: WorkerSettings,
}

/// The settings `worker` reads from its flags.
#[derive(Args, Debug, Default, Serialize)]
pub struct WorkerSettings {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub database: DatabaseFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub sealing: SealingFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub redis: RedisFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub enrichment: EnrichmentFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub events: EventFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub outbound: OutboundFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub mail: MailFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub jobs: JobFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub metrics: MetricsFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub sentry: SentryFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub queue: QueueFlags,
}

impl SettingFlags for WorkerSettings {
    fn common(&self) -> &CommonFlags {
        &self.common
    }
}

pub(super) async fn serve(
    settings: &Settings,
    args: ServeArgs,
    errors: Option<&ErrorReporting>,
) -> anyhow::Result<()> {
    let demo = args.demo;
    // demo mode's own defaults (introspection, suggestions, loopback receivers) follow from this
    let settings = &Settings {
        demo,
        ..settings.clone()
    };
    let store = app::open_store(settings).await?;
    app::check_master_key(settings, &store).await?;
    let auth = app::authenticator(settings, &store, demo).await?;
    let services = app::services(settings, store.clone())?;
    let mut banner = Vec::new();
    let demo_token = if demo {
        let (ws, added) = app::ensure_demo(&services).await?;
        let token = app::mint(
            &auth,
            "demo-admin",
            &ws,
            Role::Admin,
            Duration::from_secs(7 * 86_400),
        )?;
        let counts = services.workspaces.lead_counts(ws.id).await?;
        banner.push(format!(
            "Demo workspace `{}`: {} leads{}",
            ws.slug,
            counts.active,
            if added > 0 { " (created now)" } else { "" }
        ));
        Some(token)
    } else {
        None
    };
    let services_mail = services.campaigns.describe_mail();
    let redis = services.redis.clone();
    let queue = services.jobs.queue().clone();
    let App {
        router,
        workers,
        drain,
        key_ring,
        ..
    } = app::assemble(settings, services, auth, demo_token.clone()).await?;
    let router = match errors {
        Some(errors) => errors.around(router),
        None => router,
    };
    let signal = crate::http::shutdown_signal();
    let delay = Duration::from_millis(settings.shutdown_delay_ms);
    // unready first, so a load balancer stops sending, then close the listener and let
    // in-flight requests finish
    let shutdown = async move {
        signal.await;
        drain.start();
        tokio::time::sleep(delay).await;
    };
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let shown = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    // Best effort: a closed stdout (e.g. piped into `head`) must not stop the server.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "leadgate is serving on http://{shown} ({} database)",
        store.backend()
    );
    let _ = writeln!(out, "GraphiQL: http://{shown}/graphiql");
    let _ = writeln!(out, "Console: http://{shown}/console");
    banner.push(format!("Mail: {}", services_mail));
    banner.push(redis_line(redis.as_ref()).await);
    banner.push(queue_line(&queue, settings.queue_events).await);
    // the last line before the demo token: tests read the banner up to it
    banner.push(errors_line(errors));
    for line in banner {
        let _ = writeln!(out, "{line}");
    }
    if let Some(token) = &demo_token {
        let _ = writeln!(
            out,
            "Admin token for the demo workspace (valid 7 days; preset in GraphiQL):"
        );
        let _ = writeln!(out, "{token}");
    }
    drop(out);
    tracing::info!(%addr, backend = store.backend(), "listening");
    crate::http::serve(listener, router, shutdown).await?;
    if let Some(workers) = workers {
        workers.shutdown().await;
    }
    if let Some(broker) = queue.broker() {
        broker.close().await;
    }
    key_ring.stop().await;
    store.close().await;
    Ok(())
}

pub(super) async fn worker(settings: &Settings, errors: Option<&ErrorReporting>) -> anyhow::Result<()> {
    let store = app::open_store(settings).await?;
    app::check_master_key(settings, &store).await?;
    let services = app::services(settings, store.clone())?;
    let registry = app::registry(settings, &services)?;
    let kinds = registry.kinds().join(", ");
    let shutdown = crate::http::shutdown_signal();
    let workers = app::start_workers(settings, &services, registry).await?;
    let metrics = match settings.metrics_listen {
        Some(addr) => Some(serve_worker_metrics(addr, &services).await?),
        None => None,
    };
    // Best effort, as for `serve`.
    let redis = redis_line(services.redis.as_ref()).await;
    let queue = services.jobs.queue();
    let jobs = queue_line(queue, settings.queue_events).await;
    let metrics_line = match &metrics {
        Some((addr, _, _)) => format!("Metrics: http://{addr}/metrics"),
        None => "Metrics: not served (set LEADGATE_METRICS_LISTEN to serve /metrics)".into(),
    };
    let _ = writeln!(
        std::io::stdout().lock(),
        "leadgate worker running ({} database; kinds: {kinds})\n{redis}\n{jobs}\n{metrics_line}\n{}",
        store.backend(),
        errors_line(errors)
    );
    tracing::info!(backend = store.backend(), "worker running");
    shutdown.await;
    workers.shutdown().await;
    if let Some((_, stop, server)) = metrics {
        let _ = stop.send(());
        let _ = server.await;
    }
    if let Some(broker) = queue.broker() {
        broker.close().await;
    }
    store.close().await;
    Ok(())
}

/// Serves the worker's `/metrics` on `addr` until told to stop; returns the address it bound
/// (shown as `127.0.0.1` when unspecified), the stop sender and the server task.
async fn serve_worker_metrics(
    addr: SocketAddr,
    services: &crate::service::Services,
) -> anyhow::Result<(
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for metrics"))?;
    let bound = listener.local_addr()?;
    let shown = if bound.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], bound.port()))
    } else {
        bound
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = crate::http::worker_router(services.clone());
    let server = tokio::spawn(crate::http::serve(listener, router, async move {
        let _ = stopped.await;
    }));
    tracing::info!(addr = %bound, "serving metrics");
    Ok((shown, stop, server))
}

/// The banner's line about job delivery: RabbitMQ (connected, or not reachable and what that
/// means), or the database queue; and where domain events go when `events` is on.
async fn queue_line(queue: &crate::jobs::Queue, events: bool) -> String {
    use crate::jobs::amqp::Status;
    let Some(broker) = queue.broker() else {
        return "Jobs: on the database queue (set LEADGATE_QUEUE_URL to deliver them through RabbitMQ)"
            .into();
    };
    let jobs = match broker.settled(Duration::from_secs(6)).await {
        Status::Up => format!(
            "Jobs: delivered by RabbitMQ at {} (queues `{}.*`); state, history and replay in the database",
            broker.describe(),
            broker.names().work
        ),
        Status::Down(error) => format!(
            "Jobs: RabbitMQ at {} is not reachable ({error}); workers claim from the database queue \
             and waiting jobs are published once it answers",
            broker.describe()
        ),
        Status::Connecting => format!(
            "Jobs: still connecting to RabbitMQ at {}; jobs wait in the database until it answers",
            broker.describe()
        ),
    };
    if events {
        format!(
            "{jobs}\nEvents: published to the topic exchange `{}` by the processes that run workers",
            broker.names().events
        )
    } else {
        jobs
    }
}

/// The banner's line about Redis: which one is shared, that it does not answer, or that there
/// is none and what that means.
async fn redis_line(redis: Option<&crate::cluster::Redis>) -> String {
    match redis {
        Some(redis) if redis.ping().await => format!(
            "Redis: {} (rate limits, enrichment cache and persisted queries shared)",
            redis.describe()
        ),
        Some(redis) => format!(
            "Redis: {} is not answering; limits and caches stay in this process until it does",
            redis.describe()
        ),
        None => "Redis: none (rate limits and caches are per process; set LEADGATE_REDIS_URL to share them)"
            .into(),
    }
}

/// The banner's line about errors: where they are reported, or that the logs are all there is.
/// Never the DSN, whose key is a secret.
fn errors_line(errors: Option<&ErrorReporting>) -> String {
    match errors {
        Some(errors) => format!("Errors: {}", errors.describe()),
        None => "Errors: logs only (set LEADGATE_SENTRY_DSN to report them to Sentry)".into(),
    }
}
