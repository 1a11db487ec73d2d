//! Server errors to Sentry, when `sentry_dsn` is set (`serve` and `worker`). Reported: panics
//! (in a request — `CatchPanicLayer` still answers 500 —, in a job handler, anywhere), `error!`
//! events (GraphQL `INTERNAL` errors, dead jobs, failed background work) with the `warn!` and
//! `info!` events before them as breadcrumbs. Every event carries the release
//! (`leadgate@<version>`), the environment (`sentry_environment`) and, as tags, the ids of the
//! spans it happened in (`scrub::TAGS`): `request_id` (the `x-request-id` the router sets),
//! `operation` (the GraphQL operation name), `workspace_id`, `job_kind`, `job_id`.
//!
//! Scrubbed (`scrub`, in `before_send` and `before_breadcrumb`; `send_default_pii` is off): no
//! user, body, cookie, `Authorization` or other header but a few harmless ones, no query string
//! values; free text loses emails, phone numbers, names, tokens, `lg_` keys and provider keys.
//!
//! Sending never holds a request up: events go to a bounded queue (`QUEUE`) that the transport's
//! own thread empties, each send bounded (`SEND_TIMEOUT`); while Sentry is slow or down the
//! queue fills and later events are dropped. The panic hook here does not wait for the send
//! (the `sentry-panic` integration would, on the request's worker thread).
//! `ErrorReporting::shutdown` flushes for at most `FLUSH`.

mod scrub;

use crate::config::Settings;
use anyhow::Context as _;
use secrecy::ExposeSecret;
use sentry::integrations::tower::{SentryHttpLayer, SentryLayer};
use sentry::integrations::tracing::{BreadcrumbLayer, ErrorLayer};
use sentry::protocol::{Event, Exception, Level, Mechanism};
use sentry::types::Dsn;
use sentry::{Client, ClientOptions, Hub, TransportFactory, TransportOptions};
use std::collections::BTreeMap;
use std::sync::{Arc, Once};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::{Subscriber, span};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, Scope};

/// The release every event carries.
pub const RELEASE: &str = concat!("leadgate@", env!("CARGO_PKG_VERSION"));
/// Events waiting for the transport; while it is full, new ones are dropped.
const QUEUE: usize = 30;
/// How long shutdown waits for queued events.
const FLUSH: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One envelope's whole exchange with Sentry.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Why `raw` is not a DSN, without repeating it (it holds the project's key).
pub fn check_dsn(raw: &str) -> Result<Dsn, String> {
    raw.trim()
        .parse::<Dsn>()
        .map_err(|e| format!("is not a Sentry DSN ({e}); expected https://PUBLIC_KEY@HOST/PROJECT_ID"))
}

/// Why `name` cannot be a Sentry environment (Sentry refuses these).
pub fn check_environment(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 || name == "None" {
        return Err("must be 1 to 64 characters and not `None`".into());
    }
    if name.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err("must not contain spaces or slashes".into());
    }
    Ok(())
}

/// Errors to Sentry: the client and the hub that requests start from.
pub struct ErrorReporting {
    client: Arc<Client>,
    hub: Arc<Hub>,
    /// Where events go, for the banner: scheme, host and project, never the key.
    target: String,
    environment: String,
}

impl ErrorReporting {
    /// Reporting for this process, from the settings; `None` without a DSN. The client is bound
    /// to the process's hub, which each thread's hub starts from, and panics are reported from
    /// here on: call it first, on the main thread, before anything is spawned.
    pub fn start(settings: &Settings) -> anyhow::Result<Option<Self>> {
        let Some(dsn) = &settings.sentry_dsn else {
            return Ok(None);
        };
        let dsn = check_dsn(dsn.expose_secret()).map_err(|e| anyhow::anyhow!("setting `sentry_dsn` {e}"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(SEND_TIMEOUT)
            .build()
            .context("cannot build the HTTP client for Sentry")?;
        let reporting = Self::new(
            dsn,
            &settings.sentry_environment,
            Arc::new(Http(http)),
            Hub::main(),
        );
        install_panic_hook();
        Ok(Some(reporting))
    }

    /// Reporting through `transport`, bound to `hub`.
    fn new(dsn: Dsn, environment: &str, transport: Arc<dyn TransportFactory>, hub: Arc<Hub>) -> Self {
        let target = format!(
            "{}://{}:{}, project {}",
            dsn.scheme(),
            dsn.host(),
            dsn.port(),
            dsn.project_id()
        );
        let client = Arc::new(Client::from(options(dsn, environment, transport)));
        hub.bind_client(Some(client.clone()));
        Self {
            client,
            hub,
            target,
            environment: environment.to_owned(),
        }
    }

    /// For the start-up banner: where events go, never the DSN's key.
    pub fn describe(&self) -> String {
        format!(
            "Sentry at {} (environment {}, release {RELEASE}); lead data, tokens and keys are scrubbed",
            self.target, self.environment
        )
    }

    /// `router` with each request on a hub of its own (its breadcrumbs and request data stay
    /// its own) and its method, URL and headers on its events, scrubbed like the rest.
    pub fn around(&self, router: axum::Router) -> axum::Router {
        let base = self.hub.clone();
        router.layer(SentryHttpLayer::default()).layer(SentryLayer::new(
            move |_: &axum::http::Request<axum::body::Body>| Arc::new(Hub::new_from_top(&base)),
        ))
    }

    /// Sends what is queued, for at most `FLUSH`. The client closes on a thread of its own,
    /// so a Sentry that never answers cannot hold up the process's exit.
    pub async fn shutdown(self) {
        let client = self.client;
        let (done, closed) = tokio::sync::oneshot::channel();
        let closing = std::thread::Builder::new()
            .name("sentry-flush".into())
            .spawn(move || {
                let _ = done.send(client.close(Some(FLUSH)));
            });
        if closing.is_ok() {
            let _ = tokio::time::timeout(FLUSH + Duration::from_millis(500), closed).await;
        }
    }
}

fn options(dsn: Dsn, environment: &str, transport: Arc<dyn TransportFactory>) -> ClientOptions {
    use sentry::integrations::backtrace::ProcessStacktraceIntegration;
    use sentry::integrations::contexts::ContextIntegration;
    let mut options = ClientOptions::default();
    options.dsn = Some(dsn);
    options.release = Some(RELEASE.into());
    options.environment = Some(environment.to_owned().into());
    options.send_default_pii = false;
    // no environment variables (`SENTRY_DSN`, `SSL_VERIFY`, proxies) and no panic integration:
    // the settings and `install_panic_hook` say what happens
    options.default_integrations = false;
    options.integrations = vec![
        Arc::new(ContextIntegration::default()),
        Arc::new(ProcessStacktraceIntegration),
    ];
    options.before_send = Some(Arc::new(|event| Some(scrub::event(event))));
    options.before_breadcrumb = Some(Arc::new(|crumb| Some(scrub::breadcrumb(crumb))));
    options.max_breadcrumbs = 50;
    options.max_request_body_size = sentry::MaxRequestBodySize::None;
    options.transport = Some(transport);
    options.transport_channel_capacity = std::num::NonZeroUsize::new(QUEUE);
    options.shutdown_timeout = FLUSH;
    options
}

/// The reqwest transport (its queue and thread) on a client of ours, whose timeouts bound
/// each send: the stock client has none, so one stalled send would stop the queue for good.
struct Http(reqwest::Client);

impl TransportFactory for Http {
    fn create_transport_with_options(&self, options: TransportOptions) -> Arc<dyn sentry::Transport> {
        Arc::new(
            sentry::transports::ReqwestHttpTransportOptions::from(options)
                .with_client(self.0.clone())
                .build(),
        )
    }
}

/// The tracing layer: `error!` events become Sentry events tagged with the ids of their spans,
/// `warn!` and `info!` events breadcrumbs. Debug and trace are left out.
pub(super) fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    Events {
        errors: ErrorLayer::new(),
        breadcrumbs: BreadcrumbLayer::new(),
    }
    // spans included: their fields are the tags
    .with_filter(LevelFilter::INFO)
}

struct Events {
    errors: ErrorLayer,
    breadcrumbs: BreadcrumbLayer,
}

impl<S> Layer<S> for Events
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut tags = SpanTags::default();
        attrs.record(&mut tags);
        if let Some(span) = ctx.span(id).filter(|_| !tags.0.is_empty()) {
            span.extensions_mut().insert(tags);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let mut recorded = SpanTags::default();
        values.record(&mut recorded);
        let Some(span) = ctx.span(id).filter(|_| !recorded.0.is_empty()) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<SpanTags>() {
            Some(tags) => tags.0.extend(recorded.0),
            None => extensions.insert(recorded),
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        // tower-http's "response failed" (any 5xx) repeats an error already reported, by the
        // handler that answered 5xx or by the panic hook: context, not an event of its own
        let repeated = event.metadata().target().starts_with("tower_http");
        if *event.metadata().level() != tracing::Level::ERROR || repeated {
            self.breadcrumbs.on_event(event, ctx);
            return;
        }
        let tags = ctx.event_scope(event).map(tags_in).unwrap_or_default();
        sentry::with_scope(
            |scope| {
                for (name, value) in &tags {
                    scope.set_tag(name, value);
                }
            },
            || self.errors.on_event(event, ctx.clone()),
        );
    }
}

/// The fields of a span that become tags (`scrub::TAGS`), by name.
#[derive(Default)]
struct SpanTags(BTreeMap<&'static str, String>);

impl SpanTags {
    fn keep(&mut self, field: &Field, value: String) {
        if let Some(name) = scrub::TAGS.iter().find(|t| **t == field.name())
            && !value.is_empty()
        {
            self.0.insert(name, value);
        }
    }
}

impl Visit for SpanTags {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.keep(field, value.to_owned());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.keep(field, value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.keep(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.keep(field, format!("{value:?}"));
    }
}

/// The tags of a span and its parents; the nearest span's value wins.
fn tags_in<S>(scope: Scope<'_, S>) -> BTreeMap<String, String>
where
    S: for<'a> LookupSpan<'a>,
{
    let mut tags = BTreeMap::new();
    for span in scope {
        if let Some(own) = span.extensions().get::<SpanTags>() {
            for (name, value) in &own.0 {
                tags.entry((*name).to_owned()).or_insert_with(|| value.clone());
            }
        }
    }
    tags
}

/// The tags of the span the current thread is in (for a panic, which no layer sees).
fn current_tags() -> BTreeMap<String, String> {
    tracing::dispatcher::get_default(|dispatch| {
        let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>() else {
            return BTreeMap::new();
        };
        dispatch
            .current_span()
            .id()
            .and_then(|id| registry.span(id))
            .map(|span| tags_in(span.scope()))
            .unwrap_or_default()
    })
}

/// Reports panics to the hub of the panicking thread (the request's, in a request), then runs
/// the hook that was there before (which prints the panic). Installed once per process.
fn install_panic_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report_panic(info);
            previous(info);
        }));
    });
}

/// The panic as an event, with the tags of the span it happened in. Nothing waits for the send,
/// but on the main thread, whose panic ends the process.
fn report_panic(info: &std::panic::PanicHookInfo<'_>) {
    let hub = Hub::current();
    let Some(client) = hub.client() else {
        return;
    };
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Box<dyn Any>".to_owned());
    let tags = current_tags();
    let event = Event {
        exception: vec![Exception {
            ty: "panic".into(),
            value: Some(message),
            stacktrace: sentry::integrations::backtrace::current_stacktrace(),
            mechanism: Some(Mechanism {
                ty: "panic".into(),
                handled: Some(false),
                ..Mechanism::default()
            }),
            ..Exception::default()
        }]
        .into(),
        level: Level::Fatal,
        tags: tags.into_iter().collect(),
        ..Event::default()
    };
    hub.capture_event(event);
    if std::thread::current().name() == Some("main") {
        client.flush(Some(FLUSH));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::sync::Mutex;
    use tower::ServiceExt;
    use tracing_subscriber::layer::SubscriberExt;

    /// Keeps the envelopes a client sends.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<sentry::Envelope>>>);

    impl sentry::Transport for Kept {
        fn send_envelope(&self, envelope: sentry::Envelope) {
            self.0.lock().unwrap().push(envelope);
        }
    }

    impl Kept {
        fn events(&self) -> Vec<Event<'static>> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .filter_map(|e| e.event().cloned())
                .collect()
        }
    }

    fn reporting(kept: &Kept) -> ErrorReporting {
        let dsn = check_dsn("http://public@127.0.0.1:9/1").unwrap();
        let hub = Arc::new(Hub::new(None, Arc::new(Default::default())));
        ErrorReporting::new(dsn, "test", Arc::new(Arc::new(kept.clone())), hub)
    }

    #[test]
    fn a_dsn_is_checked_without_being_repeated() {
        check_dsn("https://abc@o1.ingest.sentry.io/42").unwrap();
        for bad in [
            "",
            "not a dsn",
            "https://o1.ingest.sentry.io/42",
            "https://abc@o1.ingest.sentry.io/",
        ] {
            let err = check_dsn(bad).unwrap_err();
            assert!(err.starts_with("is not a Sentry DSN"), "{bad}: {err}");
        }
        let err = check_dsn("ftp://sekrit@example.com/1").unwrap_err();
        assert!(!err.contains("sekrit"), "{err}");
        check_environment("production").unwrap();
        for bad in ["", "pro duction", "a/b", "None"] {
            assert!(check_environment(bad).is_err(), "{bad}");
        }
    }

    /// A panic in a handler under `CatchPanicLayer` is still reported: the hook runs before the
    /// unwinding the layer stops, on the request's hub, inside the request's span.
    #[tokio::test]
    async fn a_handler_panic_under_catch_panic_is_reported_with_the_request_id() {
        let kept = Kept::default();
        let reporting = reporting(&kept);
        install_panic_hook();
        let subscriber = tracing_subscriber::registry().with(layer());
        let _guard = tracing::subscriber::set_default(subscriber);
        let router = axum::Router::new()
            .route(
                "/boom",
                get(|| async {
                    tracing::warn!("about to fail");
                    panic!("no lead for jane@example.com");
                    #[allow(unreachable_code)]
                    ""
                }),
            )
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
                axum::response::IntoResponse::into_response((
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error",
                ))
            }))
            .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |req: &axum::http::Request<axum::body::Body>| {
                    let request_id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!("request", request_id)
                },
            ));
        let router = reporting.around(router);
        let request = axum::http::Request::get("http://localhost/boom")
            .header("x-request-id", "0191f3a2-7c4e-7b10-9a8d-3e5f6a7b8c9d")
            .header("authorization", "Bearer lg_live_abcdefghijklmnop")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 500);
        let events = kept.events();
        let [event] = events.as_slice() else {
            panic!("one event: {events:?}");
        };
        assert_eq!(event.level, Level::Fatal);
        assert_eq!(event.release.as_deref(), Some(RELEASE));
        assert_eq!(event.environment.as_deref(), Some("test"));
        assert_eq!(
            event.tags.get("request_id").map(String::as_str),
            Some("0191f3a2-7c4e-7b10-9a8d-3e5f6a7b8c9d")
        );
        assert_eq!(
            event.exception.values[0].value.as_deref(),
            Some("no lead for [email]")
        );
        let request = event.request.as_ref().expect("request data");
        assert_eq!(request.method.as_deref(), Some("GET"));
        assert!(!request.headers.contains_key("authorization"), "{request:?}");
        let crumbs: Vec<_> = event
            .breadcrumbs
            .values
            .iter()
            .map(|c| c.message.as_deref())
            .collect();
        assert_eq!(crumbs, [Some("about to fail")], "the warning before the panic");
    }

    #[test]
    fn error_events_are_tagged_with_their_spans_ids_and_warnings_are_breadcrumbs() {
        let kept = Kept::default();
        let reporting = reporting(&kept);
        let subscriber = tracing_subscriber::registry().with(layer());
        Hub::run(reporting.hub.clone(), || {
            tracing::subscriber::with_default(subscriber, || {
                let outer = tracing::info_span!("request", request_id = "r-1");
                let _outer = outer.enter();
                let inner = tracing::info_span!(
                    "graphql",
                    operation = "ListLeads",
                    workspace_id = tracing::field::Empty
                );
                inner.record("workspace_id", "w-1");
                let _inner = inner.enter();
                tracing::info!(lead = "jane@example.com", "looking");
                tracing::debug!("left out");
                tracing::error!(error = "no row for Jane Doe", "internal error");
            });
        });
        let events = kept.events();
        let [event] = events.as_slice() else {
            panic!("one event: {events:?}");
        };
        assert_eq!(event.message.as_deref(), Some("internal error"));
        let tag = |name: &str| event.tags.get(name).map(String::as_str);
        assert_eq!(
            (tag("request_id"), tag("operation"), tag("workspace_id")),
            (Some("r-1"), Some("ListLeads"), Some("w-1"))
        );
        let text = serde_json::to_string(event).unwrap();
        assert!(!text.contains("jane@") && !text.contains("Jane"), "{text}");
        assert_eq!(event.breadcrumbs.values.len(), 1, "{:?}", event.breadcrumbs);
    }
}
