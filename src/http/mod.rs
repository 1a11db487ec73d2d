//! The HTTP edge (axum): `/graphql` (GET and POST), `/graphql/ws` (WebSocket), `/graphiql`,
//! `/console` (the operator console, `console`),
//! `/export/leads.csv` and `.ndjson` (streamed exports), `/webhooks/crm/{id}` (inbound CRM
//! webhooks), `/healthz`, `/readyz`, `/metrics`,
//! request ids, body and time limits, and graceful shutdown.
//!
//! GraphQL-over-HTTP semantics live in `graphql::transport`; this module only moves bytes and
//! headers, and turns the `Authorization` header into an `Actor`.

use crate::auth::Authenticator;
use crate::graphql::transport::{self, HttpReply, HttpRequest, MediaType};
use crate::graphql::ws::{ConnectionLimiter, Drain, Hub, TokenVerifier, WsConfig, WsContext};
use crate::graphql::{Caller, Gateway};
use crate::service::{Actor, KeyRing, Services};

/// How every API key starts; a JWT never does (its header is base64 of `{`).
const API_KEY_MARK: &str = "lg_";
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
mod console;
mod export;
mod graphiql;
pub mod metrics;
mod ws;

use std::sync::Arc;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Transport settings.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub max_body_bytes: usize,
    /// Largest `multipart/form-data` GraphQL request (file uploads); JSON bodies keep
    /// `max_body_bytes`.
    pub max_upload_bytes: usize,
    pub request_timeout: Duration,
    /// A token to preset in GraphiQL's headers editor (demo mode only).
    pub graphiql_token: Option<String>,
    /// GraphQL over WebSocket.
    pub ws: WsConfig,
    /// Set when shutdown begins: `/readyz` answers 503 and WebSockets close with 1012.
    pub drain: Drain,
    /// Proxies whose `X-Forwarded-For` names the client (`trusted_proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

struct AppState {
    gateway: Gateway,
    metrics: metrics::HttpMetrics,
    auth: Authenticator,
    services: Services,
    config: HttpConfig,
    ws: Arc<WsContext<Gateway>>,
}

/// Builds the router; `schema` must have been built around `services`.
pub fn router(gateway: Gateway, auth: Authenticator, services: Services, config: HttpConfig) -> Router {
    let timeout = config.request_timeout;
    let max_body = config.max_body_bytes;
    let verify_with = auth.clone();
    let keys = services.api_keys.ring().clone();
    let verify: TokenVerifier = Arc::new(move |token: &str| actor_for(&verify_with, &keys, token));
    let ws = Arc::new(WsContext {
        engine: gateway.clone(),
        verify,
        limiter: ConnectionLimiter::new(config.ws.max_connections_per_token),
        hub: Hub::new(),
        config: config.ws.clone(),
        drain: config.drain.clone(),
        metrics: gateway.metrics().clone(),
    });
    let http_metrics = metrics::HttpMetrics::new();
    let state = Arc::new(AppState {
        gateway,
        metrics: http_metrics.clone(),
        auth,
        services,
        config,
        ws,
    });
    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/graphql/ws", get(ws::graphql_ws))
        .route("/graphiql", get(graphiql))
        .route("/console", get(console_page))
        .route("/console/", get(console_page))
        .route("/console/app.js", get(console::script))
        .route("/console/app.css", get(console::style))
        .route("/export/leads.csv", get(export::leads_csv))
        .route("/export/leads.ndjson", get(export::leads_ndjson))
        .route("/imports/{id}/errors.csv", get(export::import_errors_csv))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/webhooks/crm/{id}", axum::routing::post(crm_webhook))
        .route("/webhooks/email/{provider}", axum::routing::post(mail_webhook))
        .route("/u/{token}", get(unsubscribe_page).post(unsubscribe))
        .route("/c/{token}", get(click))
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<Body>| {
                let request_id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id)
            }),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        // outermost, so timeouts and caught panics are counted with their status
        .layer(axum::middleware::from_fn_with_state(
            http_metrics,
            metrics::record,
        ))
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The caller from `Authorization: Bearer …`: `None` without the header, an error reply when
/// the header is present but not a valid token.
/// The `Err` is the reason for a 401.
fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, String> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Caller(None));
    };
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not text".to_owned())?;
    let token = strip_bearer(value)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "use `Authorization: Bearer <token>`".to_owned())?;
    actor_for(&state.auth, state.services.api_keys.ring(), token).map(|actor| Caller(Some(actor)))
}

/// The token of an `Authorization: Bearer …` value.
fn strip_bearer(value: &str) -> Option<&str> {
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
}

/// The actor a token speaks for: an API key (`lg_…`) from the key ring, anything else as a
/// JWT. The error is the reason, written to be shown (neither ever echoes the token).
fn actor_for(auth: &Authenticator, keys: &KeyRing, token: &str) -> Result<Actor, String> {
    if token.starts_with(API_KEY_MARK) {
        return keys.verify(token).map_err(|e| e.to_string());
    }
    let principal = auth.verify(token).map_err(|e| e.to_string())?;
    Ok(Actor {
        subject: principal.subject,
        workspace_id: principal.workspace_id,
        role: principal.role,
        key: None,
    })
}

async fn graphql_get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    request: axum::extract::Request,
) -> Response {
    let client = client_address(&request, &state.config.trusted_proxies);
    graphql(&state, &headers, true, query.as_deref(), &Bytes::new(), client).await
}

/// The client's address (the anonymous rate limit counts per address): the peer, or, when the
/// peer is a trusted proxy, the nearest address in `X-Forwarded-For` that is not one.
fn client_address(request: &axum::extract::Request, trusted: &[ipnet::IpNet]) -> Option<std::net::IpAddr> {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())?;
    Some(forwarded_client(peer, request.headers(), trusted))
}

fn forwarded_client(
    peer: std::net::IpAddr,
    headers: &HeaderMap,
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // each proxy appends the address it received from: read from the nearest hop outwards
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.rsplit(','));
    for hop in hops {
        let Ok(ip) = hop.trim().parse::<std::net::IpAddr>() else {
            // garbage from beyond the last trusted hop: the last good address stands
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

/// A POST: JSON bodies are read whole (within `max_body_bytes`); `multipart/form-data` (the
/// GraphQL multipart request spec, for uploads) is streamed to the parser, which spools files
/// to temporary files and stops at `max_upload_bytes`.
async fn graphql_post(State(state): State<Arc<AppState>>, request: axum::extract::Request) -> Response {
    let headers = request.headers().clone();
    let client = client_address(&request, &state.config.trusted_proxies);
    if transport::is_multipart(header_str(&headers, header::CONTENT_TYPE)) {
        return graphql_multipart(&state, &headers, request.into_body()).await;
    }
    // `Bytes` applies the `DefaultBodyLimit` (413 past `max_body_bytes`)
    match Bytes::from_request(request, &()).await {
        Ok(body) => graphql(&state, &headers, false, None, &body, client).await,
        Err(rejection) => rejection.into_response(),
    }
}

async fn graphql_multipart(state: &AppState, headers: &HeaderMap, body: Body) -> Response {
    use futures_util::TryStreamExt;
    let accept = header_str(headers, header::ACCEPT);
    let caller = match caller(state, headers) {
        Ok(c) => c,
        Err(message) => {
            let media = MediaType::negotiate(accept).unwrap_or(MediaType::Json);
            return reply(transport::unauthenticated(media, &message));
        }
    };
    let reader = body
        .into_data_stream()
        .map_err(std::io::Error::other)
        .into_async_read();
    let upload = transport::MultipartRequest {
        content_type: header_str(headers, header::CONTENT_TYPE).unwrap_or_default(),
        accept,
        preflighted: preflighted(headers),
        max_bytes: state.config.max_upload_bytes,
        max_credits: headers
            .get(transport::MAX_CREDITS_HEADER)
            .and_then(|v| v.to_str().ok()),
    };
    reply(transport::serve_multipart(&state.gateway, upload, reader, caller).await)
}

async fn graphql(
    state: &AppState,
    headers: &HeaderMap,
    is_get: bool,
    query: Option<&str>,
    body: &Bytes,
    client: Option<std::net::IpAddr>,
) -> Response {
    let accept = header_str(headers, header::ACCEPT);
    let caller = match caller(state, headers) {
        Ok(c) => c,
        Err(message) => {
            let media = MediaType::negotiate(accept).unwrap_or(MediaType::Json);
            return reply(transport::unauthenticated(media, &message));
        }
    };
    let request = HttpRequest {
        is_get,
        preflighted: preflighted(headers),
        query_string: query,
        content_type: header_str(headers, header::CONTENT_TYPE),
        accept,
        body,
        max_credits: headers
            .get(transport::MAX_CREDITS_HEADER)
            .and_then(|v| v.to_str().ok()),
        client,
    };
    reply(transport::serve(&state.gateway, request, caller).await)
}

/// Whether a browser would have sent a CORS preflight for a request with these headers.
fn preflighted(headers: &HeaderMap) -> bool {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    transport::preflighted(
        header_str(headers, header::CONTENT_TYPE),
        [
            value(transport::CSRF_HEADER),
            value(transport::APOLLO_PREFLIGHT_HEADER),
        ],
    )
}

fn reply(r: HttpReply) -> Response {
    let mut response = Response::new(Body::from(r.body));
    *response.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(r.content_type));
    if let Some(allow) = r.allow {
        headers.insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    if let Some(challenge) = r.www_authenticate {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    if let Some(rate) = &r.rate {
        rate_headers(headers, rate);
    }
    response
}

/// The rate-limit fields of draft-ietf-httpapi-ratelimit-headers (`RateLimit-Policy`: the
/// quota and its window; `RateLimit`: what remains and seconds until it is whole again), and
/// `Retry-After` on a refusal.
fn rate_headers(headers: &mut HeaderMap, rate: &crate::limits::Decision) {
    let policy = format!(
        "\"{}\";q={};w={}",
        rate.policy,
        rate.rate.count(),
        rate.rate.period().as_secs()
    );
    let current = format!("\"{}\";r={};t={}", rate.policy, rate.remaining, rate.reset_secs());
    for (name, value) in [("ratelimit-policy", policy), ("ratelimit", current)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    if !rate.allowed {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(rate.retry_after_secs()));
    }
}

async fn graphiql(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    Html(graphiql::page("/graphql", state.config.graphiql_token.as_deref()))
}

/// The operator console; in demo mode its sign-in page offers the demo token.
async fn console_page(State(state): State<Arc<AppState>>) -> Response {
    console::page(state.config.graphiql_token.as_deref())
}

/// Prometheus metrics (text exposition format): HTTP requests and latency by route, GraphQL
/// operations, errors, latency, slow root fields and WebSockets, the parsed document cache,
/// persisted queries and rate limits, then everything the services count
/// (`Services::render_metrics`), build info and the process. Labels never carry lead data, keys
/// or workspace ids.
async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let edge = state.gateway.edge();
    let body = [
        state.metrics.render(),
        state.gateway.metrics().render(),
        document_cache_metrics(state.gateway.document_cache().stats()),
        edge.persisted.render_metrics(),
        edge.limiter.render_metrics(),
        state.services.render_metrics(),
        metrics::process_families(),
    ]
    .concat();
    exposition(body)
}

fn exposition(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// The router of `leadgate worker --metrics-listen`: `/metrics` (what the services count, build
/// info and the process) and `/healthz`.
pub fn worker_router(services: Services) -> Router {
    let services = Arc::new(services);
    Router::new()
        .route(
            "/metrics",
            get(|State(services): State<Arc<Services>>| async move {
                exposition([services.render_metrics(), metrics::process_families()].concat())
            }),
        )
        .route("/healthz", get(healthz))
        .with_state(services)
}

/// An inbound CRM webhook: the signature is its authentication (no token, no CSRF header);
/// the URL it was signed for is rebuilt from `X-Forwarded-Proto`/`X-Forwarded-Host` when a
/// proxy sets them, else from `Host`.
/// `POST /webhooks/email/{provider}`: bounces, replies, unsubscribes and clicks from a mail
/// provider, verified by its signature scheme (`service::campaigns`).
async fn mail_webhook(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(provider): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if body.len() > crate::service::MAX_WEBHOOK_BODY {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(serde_json::json!({"error": "the body is too large"})),
        )
            .into_response();
    }
    let pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let (status, message) = state
        .services
        .campaigns
        .receive_mail_webhook(&provider, &pairs, &body)
        .await;
    let key = if status == 200 { "ok" } else { "error" };
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(serde_json::json!({ key: message })),
    )
        .into_response()
}

/// A small page, its one button the one-click unsubscribe (a GET changes nothing, so link
/// scanners that open every URL unsubscribe no one).
const UNSUBSCRIBE_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
     content=\"width=device-width\"><title>Unsubscribe</title></head><body style=\"font-family:sans-serif;\
     max-width:32em;margin:4em auto\"><h1>Unsubscribe</h1><p>Stop receiving these emails?</p><form method=\"post\">\
     <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\"><button type=\"submit\">\
     Unsubscribe</button></form></body></html>";

async fn unsubscribe_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        UNSUBSCRIBE_PAGE,
    )
        .into_response()
}

/// `POST /u/{token}`: RFC 8058 one-click unsubscribe (also the page's button). Needs no CSRF
/// header: mail clients post it as a plain form, and it only ever removes mail.
async fn unsubscribe(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    match state.services.campaigns.unsubscribe(&token).await {
        Ok(masked) => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>Unsubscribed</title></head>\
                 <body style=\"font-family:sans-serif;max-width:32em;margin:4em auto\"><h1>Unsubscribed</h1>\
                 <p>{} will receive no more of these emails.</p></body></html>",
                html_escape(&masked)
            ),
        )
            .into_response(),
        Err(crate::service::ServiceError::NotFound(_)) => {
            (StatusCode::NOT_FOUND, "this unsubscribe link is not valid").into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot unsubscribe");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// `GET /c/{token}`: a tracked link; records the click and redirects.
async fn click(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    match state.services.campaigns.click(&token).await {
        Ok(url) => (StatusCode::FOUND, [(header::LOCATION, url)]).into_response(),
        Err(crate::service::ServiceError::NotFound(_)) => {
            (StatusCode::NOT_FOUND, "this link is not valid").into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record a click");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn crm_webhook(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(uuid) = uuid::Uuid::parse_str(&id) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": "no such CRM connection"})),
        )
            .into_response();
    };
    if body.len() > crate::service::MAX_WEBHOOK_BODY {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(serde_json::json!({"error": "the body is too large"})),
        )
            .into_response();
    }
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
    };
    let scheme = first("x-forwarded-proto").unwrap_or("http");
    let host = first("x-forwarded-host")
        .or_else(|| first("host"))
        .unwrap_or("localhost");
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{scheme}://{host}{path}");
    let pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let request = crate::service::InboundRequest {
        method: "POST",
        url: &url,
        headers: &pairs,
        body: &body,
    };
    let (status, answer) = state
        .services
        .crm
        .receive(crate::domain::CrmConnectionId::from_uuid(uuid), request)
        .await;
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(answer),
    )
        .into_response()
}

fn document_cache_metrics(stats: crate::graphql::CacheStats) -> String {
    format!(
        "# HELP leadgate_graphql_document_cache_total Parsed GraphQL documents looked up by text.\n\
         # TYPE leadgate_graphql_document_cache_total counter\n\
         leadgate_graphql_document_cache_total{{result=\"hit\"}} {}\n\
         leadgate_graphql_document_cache_total{{result=\"miss\"}} {}\n",
        stats.hits, stats.misses
    )
}

async fn healthz() -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if state.config.drain.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"unavailable","reason":"shutting down"}"#,
        );
    }
    match state.services.ping().await {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"ready"}"#,
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"status":"unavailable","reason":"database unreachable"}"#,
            )
        }
    }
}

/// A future that resolves when the process receives SIGTERM or Ctrl-C. The handlers are
/// installed when this is called, so a signal that arrives before the server polls the future
/// is not lost.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let ctrl_c = tokio::spawn(tokio::signal::ctrl_c());
    async move {
        #[cfg(unix)]
        let term = async {
            match term {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            () = term => {},
        }
        tracing::info!("shutdown signal received; finishing in-flight requests");
    }
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(v).expect("value"));
        }
        headers
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_forwarded_address_and_only_behind_a_trusted_proxy() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let lb: std::net::IpAddr = "10.1.2.3".parse().expect("ip");
        let outsider: std::net::IpAddr = "198.51.100.7".parse().expect("ip");
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
        // a client's own X-Forwarded-For is ignored: anyone can send it
        assert_eq!(
            forwarded_client(outsider, &xff(&["203.0.113.1"]), &trusted),
            outsider
        );
        // behind the load balancer: the address it saw
        assert_eq!(
            forwarded_client(lb, &xff(&["203.0.113.9"]), &trusted),
            ip("203.0.113.9")
        );
        // a spoofed entry before the real one does not count; internal hops are skipped
        assert_eq!(
            forwarded_client(lb, &xff(&["1.1.1.1, 203.0.113.9, 10.9.9.9"]), &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            forwarded_client(lb, &xff(&["1.1.1.1", "203.0.113.9"]), &trusted),
            ip("203.0.113.9"),
            "several header lines: the last is the nearest"
        );
        // garbage: the last good address stands; none at all: the proxy itself
        assert_eq!(
            forwarded_client(lb, &xff(&["not-an-ip, 10.2.2.2"]), &trusted),
            ip("10.2.2.2")
        );
        assert_eq!(forwarded_client(lb, &HeaderMap::new(), &trusted), lb);
        assert_eq!(
            forwarded_client(lb, &xff(&["203.0.113.9"]), &[]),
            lb,
            "no proxy trusted"
        );
    }
}
