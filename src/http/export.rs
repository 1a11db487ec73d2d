//! `GET /export/leads.csv` and `GET /export/leads.ndjson`: a lead filter streamed as a file.
//!
//! Query parameters: `filter` (JSON in the shape of the GraphQL `LeadFilter` input, checked
//! by `graphql`), `include` (comma-separated enrichment groups) and `provenance` (`true` adds
//! each enriched value's provider, fetch time and confidence). The header row leaves at once;
//! the rest follows batch by batch as the client reads it, so a slow client slows the reader
//! instead of filling memory. A failure after the status was sent aborts the body (the client
//! sees a truncated transfer, never a complete-looking file) and is logged by the service.
//!
//! **A failure after the status line** cannot become an error status: the body stream ends with an
//! error, hyper aborts the chunked transfer (no terminating chunk), the service logs it and counts
//! it in `leadgate_export_failures_total`.

use super::{AppState, caller, reply};
use crate::graphql::Caller;
use crate::graphql::export::{bad_request, refused};
use crate::graphql::transport::{self, MediaType};
use crate::service::{Extras, Format};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use futures_util::StreamExt;
use std::sync::Arc;

pub(super) async fn leads_csv(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    export(&state, &headers, query.as_deref(), Format::Csv).await
}

pub(super) async fn leads_ndjson(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    export(&state, &headers, query.as_deref(), Format::Ndjson).await
}

/// The query parameters, each given at most once.
#[derive(Default)]
struct Params {
    filter: Option<String>,
    include: Option<String>,
    provenance: Option<String>,
}

impl Params {
    fn parse(query: &str) -> Result<Self, String> {
        let mut params = Params::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match key.as_ref() {
                "filter" => &mut params.filter,
                "include" => &mut params.include,
                "provenance" => &mut params.provenance,
                other => {
                    return Err(format!(
                        "unknown query parameter `{other}`; use filter, include and provenance"
                    ));
                }
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(format!("query parameter `{key}` is given more than once"));
            }
        }
        Ok(params)
    }
}

fn parse_bool(name: &str, raw: Option<&str>) -> Result<bool, String> {
    match raw.map(str::trim) {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(_) => Err(format!("`{name}` must be true or false")),
    }
}

async fn export(state: &AppState, headers: &HeaderMap, query: Option<&str>, format: Format) -> Response {
    let actor = match caller(state, headers) {
        Ok(Caller(Some(actor))) => actor,
        Ok(Caller(None)) => {
            return reply(transport::unauthenticated(
                MediaType::Json,
                "an export needs `Authorization: Bearer <token>`",
            ));
        }
        Err(message) => return reply(transport::unauthenticated(MediaType::Json, &message)),
    };
    if let Err(e) = state.services.exports.authorize(&actor) {
        return reply(refused(e));
    }
    let params = match Params::parse(query.unwrap_or_default()) {
        Ok(p) => p,
        Err(message) => return reply(bad_request(&message)),
    };
    let filter = match params.filter.as_deref().map(str::trim) {
        None | Some("") => Default::default(),
        Some(raw) => match state.gateway.parse_lead_filter(raw).await {
            Ok(f) => f,
            Err(message) => return reply(bad_request(&message)),
        },
    };
    let extras = match (
        Extras::parse_include(params.include.as_deref().unwrap_or_default()),
        parse_bool("provenance", params.provenance.as_deref()),
    ) {
        (Ok(groups), Ok(provenance)) => Extras { groups, provenance },
        (Err(message), _) | (_, Err(message)) => return reply(bad_request(&message)),
    };
    let export = match state.services.exports.start(&actor, filter, format, extras).await {
        Ok(e) => e,
        Err(e) => return reply(refused(e)),
    };
    let body = export.body.map(|chunk| {
        chunk
            .map(|c| c.bytes)
            .map_err(|e| std::io::Error::other(e.to_string()))
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(export.format.content_type()),
    );
    // the slug is lower-case letters, digits and hyphens, so the name needs no escaping
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", export.filename)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET /imports/{id}/errors.csv`: an import's error report (`row,column,reason`), streamed.
/// The import must belong to the token's workspace (404 otherwise, as for an unknown id).
pub(super) async fn import_errors_csv(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let actor = match caller(&state, &headers) {
        Ok(Caller(Some(actor))) => actor,
        Ok(Caller(None)) => {
            return reply(transport::unauthenticated(
                MediaType::Json,
                "an error report needs `Authorization: Bearer <token>`",
            ));
        }
        Err(message) => return reply(transport::unauthenticated(MediaType::Json, &message)),
    };
    let not_found = || refused(crate::service::ServiceError::NotFound("import"));
    let Some(id) = crate::graphql::parse_import_id(&id) else {
        return reply(not_found());
    };
    let rows = match state.services.imports.error_report_csv(&actor, id).await {
        Ok(rows) => rows,
        Err(e) => return reply(refused(e)),
    };
    let body = rows.map(|chunk| chunk.map_err(|e| std::io::Error::other(e.to_string())));
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"import-errors.csv\""),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
