//! GraphQL over HTTP, without a web framework: request decoding, media-type negotiation and
//! status codes as the GraphQL-over-HTTP specification sets them
//! (<https://graphql.github.io/graphql-over-http/draft/>). `http` adapts this to its web framework.
//!
//! Under `application/graphql-response+json` a request that fails before execution (bad
//! document, failed validation) is a 400 and carries no `data`; under the legacy
//! `application/json` every well-formed request is a 200.
//!
//! **Uploads.** `http` routes a `multipart/form-data` POST on `/graphql` to
//! `graphql::transport::serve_multipart` as a stream (no buffering of the body); JSON POSTs still
//! go through the `Bytes` extractor and `DefaultBodyLimit`. The transport parses the multipart
//! request with async-graphql's `receive_batch_body` and `MultipartOptions` (the `tempfile`
//! feature is on: file parts are spooled to anonymous temporary files, never held in memory); the
//! whole stream is capped at `import_max_upload_mb` (413 past it). Parse errors are mapped to a
//! 400 `BAD_USER_INPUT` with a fixed message per cause (the parser's own messages are not sent).
//! After parsing, a multipart request runs exactly like a JSON one (`run_batch`: limits,
//! `@budget`, error labels).
//!
//! Cross-site request forgery: a page on another site can make a browser send a GET, or a POST
//! whose `Content-Type` is `multipart/form-data`, `application/x-www-form-urlencoded` or
//! `text/plain`, without asking this server first (no CORS preflight). POSTs of the last two
//! never run (415); GETs and multipart POSTs run only with a header such a page cannot add
//! without a preflight — `x-leadgate-csrf` or `apollo-require-preflight`, any non-empty value —
//! or a `Content-Type` a form cannot send. JSON POSTs are preflighted by the browser anyway.

use super::EnrichScope;
use super::enrichment_api::PlanRunner;
use super::errors::{BAD_USER_INPUT, CSRF_HEADER_REQUIRED, UNAUTHENTICATED, coded};
use super::query::Caller;
use super::{Gateway, guard, is_mutation, is_request_error};
use async_graphql::{BatchRequest, BatchResponse, Request, Response, ServerError, Variables};
use serde::Serialize;
use std::collections::BTreeMap;
use tracing::Instrument;

pub const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
pub const APPLICATION_JSON: &str = "application/json";

/// The response media type chosen from the `Accept` header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MediaType {
    GraphqlResponseJson,
    Json,
}

impl MediaType {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::GraphqlResponseJson => "application/graphql-response+json; charset=utf-8",
            MediaType::Json => "application/json; charset=utf-8",
        }
    }

    /// Picks the response type: `application/graphql-response+json` when accepted, else
    /// `application/json` (also for a missing header or wildcards); `None` when neither is
    /// acceptable (406).
    pub fn negotiate(accept: Option<&str>) -> Option<MediaType> {
        let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
            return Some(MediaType::Json);
        };
        let mut json = false;
        for range in accept.split(',') {
            let essence = range
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            let q_zero = range.split(';').skip(1).any(|p| {
                matches!(
                    p.trim().replace(' ', "").as_str(),
                    "q=0" | "q=0.0" | "q=0.00" | "q=0.000"
                )
            });
            if q_zero {
                continue;
            }
            match essence.as_str() {
                GRAPHQL_RESPONSE_JSON => return Some(MediaType::GraphqlResponseJson),
                APPLICATION_JSON | "*/*" | "application/*" => json = true,
                _ => {}
            }
        }
        json.then_some(MediaType::Json)
    }
}

/// The header that marks a request as sent by a client that may send custom headers (so a
/// browser would have asked first), any non-empty value.
pub const CSRF_HEADER: &str = "x-leadgate-csrf";
/// The same, as Apollo's clients send it.
pub const APOLLO_PREFLIGHT_HEADER: &str = "apollo-require-preflight";

/// Whether a browser would have had to ask this server first (a CORS preflight) before sending
/// a request with these headers: a non-empty `x-leadgate-csrf` or `apollo-require-preflight`,
/// or a `Content-Type` other than the three a cross-site form may send.
pub fn preflighted<'a>(
    content_type: Option<&str>,
    csrf_headers: impl IntoIterator<Item = Option<&'a str>>,
) -> bool {
    let marked = csrf_headers
        .into_iter()
        .any(|value| value.is_some_and(|v| !v.trim().is_empty()));
    let unformlike = content_type.is_some_and(|ct| {
        let essence = ct
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        !matches!(
            essence.as_str(),
            "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
        )
    });
    marked || unformlike
}

/// The 400 for a request that could have been forged by another site.
fn csrf_refusal(media: MediaType) -> HttpReply {
    error_reply(
        400,
        media,
        CSRF_HEADER_REQUIRED,
        "this request could have been sent by another site: send it with the header \
         `x-leadgate-csrf: 1` (or `apollo-require-preflight: true`)",
    )
}

/// What the transport passes in.
pub struct HttpRequest<'a> {
    pub is_get: bool,
    /// `preflighted` of the request's headers (only GETs need it: a POST must be JSON).
    pub preflighted: bool,
    pub query_string: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub accept: Option<&'a str>,
    pub body: &'a [u8],
    /// The `X-Leadgate-Max-Credits` header: the request's enrichment credit budget.
    pub max_credits: Option<&'a str>,
    /// The client's address, for the anonymous rate limit.
    pub client: Option<std::net::IpAddr>,
}

/// The header that caps what a request may spend on enrichment.
pub const MAX_CREDITS_HEADER: &str = "x-leadgate-max-credits";

/// What the transport sends back.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Value for an `Allow` header (405).
    pub allow: Option<&'static str>,
    /// Value for a `WWW-Authenticate` header (401).
    pub www_authenticate: Option<&'static str>,
    /// The rate-limit decision, for the `RateLimit`, `RateLimit-Policy` and `Retry-After`
    /// headers.
    pub rate: Option<crate::limits::Decision>,
}

#[derive(Serialize)]
pub(super) struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a async_graphql::Value>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [ServerError],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extensions: &'a BTreeMap<String, async_graphql::Value>,
}

/// The JSON shape of an execution result: no `data` for a request that failed before execution.
pub(super) fn body_of(r: &Response) -> Body<'_> {
    Body {
        data: (!is_request_error(r)).then_some(&r.data),
        errors: &r.errors,
        extensions: &r.extensions,
    }
}

/// A reply that carries only errors: for requests refused before any GraphQL work.
pub fn error_reply(status: u16, media: MediaType, code: &'static str, message: &str) -> HttpReply {
    let error = coded(code, message).into_server_error(async_graphql::Pos::default());
    let error = ServerError {
        locations: Vec::new(),
        ..error
    };
    let body = serde_json::to_vec(&Body {
        data: None,
        errors: std::slice::from_ref(&error),
        extensions: &BTreeMap::new(),
    })
    .unwrap_or_default();
    HttpReply {
        status,
        content_type: media.as_str(),
        body,
        allow: None,
        www_authenticate: None,
        rate: None,
    }
}

/// The 401 for a missing-or-bad token, with the reason.
pub fn unauthenticated(media: MediaType, message: &str) -> HttpReply {
    HttpReply {
        www_authenticate: Some("Bearer"),
        ..error_reply(401, media, UNAUTHENTICATED, message)
    }
}

fn bad_request(media: MediaType, message: &str) -> HttpReply {
    error_reply(400, media, BAD_USER_INPUT, message)
}

/// Decodes, executes and encodes one GraphQL-over-HTTP exchange.
pub async fn serve(gateway: &Gateway, req: HttpRequest<'_>, caller: Caller) -> HttpReply {
    let Some(media) = MediaType::negotiate(req.accept) else {
        return error_reply(
            406,
            MediaType::Json,
            BAD_USER_INPUT,
            "the Accept header must allow application/graphql-response+json or application/json",
        );
    };
    let header_budget = match parse_budget(req.max_credits) {
        Ok(b) => b,
        Err(message) => return bad_request(media, message),
    };
    let limits = gateway.limits();
    let batch = if req.is_get {
        if !req.preflighted {
            return csrf_refusal(media);
        }
        match decode_get(req.query_string.unwrap_or_default()) {
            Ok(mut r) => {
                if let Err(e) = gateway.edge().persisted.resolve(&mut r).await {
                    let response = Response::from_errors(vec![e]);
                    let metrics = gateway.metrics();
                    metrics.answered(&metrics.unread(r.operation_name.as_deref()), &response, None);
                    return encode(media, &BatchResponse::Single(response), None);
                }
                let operation = r.operation_name.clone();
                if let Ok(doc) = r.parsed_query()
                    && is_mutation(doc, operation.as_deref())
                {
                    return HttpReply {
                        allow: Some("POST"),
                        ..error_reply(
                            405,
                            media,
                            BAD_USER_INPUT,
                            "mutations are not allowed over GET; use POST",
                        )
                    };
                }
                BatchRequest::Single(r)
            }
            Err(message) => return bad_request(media, &message),
        }
    } else {
        if !is_json_content_type(req.content_type) {
            return error_reply(
                415,
                media,
                BAD_USER_INPUT,
                "POST bodies must be `Content-Type: application/json`",
            );
        }
        match decode_post(req.body, limits.batch) {
            Ok(b) => b,
            Err(message) => return bad_request(media, &message),
        }
    };
    run_batch(gateway, media, batch, caller, header_budget, req.client).await
}

/// Runs a decoded request or batch and encodes the answer.
async fn run_batch(
    gateway: &Gateway,
    media: MediaType,
    batch: BatchRequest,
    caller: Caller,
    header_budget: Option<u64>,
    client: Option<std::net::IpAddr>,
) -> HttpReply {
    let (response, rate) = match batch {
        BatchRequest::Single(r) => {
            let (response, rate) = execute(gateway, r, caller, header_budget, client).await;
            (BatchResponse::Single(response), rate)
        }
        BatchRequest::Batch(rs) => {
            let runs = rs
                .into_iter()
                .map(|r| execute(gateway, r, caller.clone(), header_budget, client));
            let (responses, rates): (Vec<_>, Vec<_>) =
                futures_util::future::join_all(runs).await.into_iter().unzip();
            // the headers tell of the tightest decision: a refusal, else the fewest remaining
            let rate = rates
                .into_iter()
                .flatten()
                .min_by_key(|d| (d.allowed, d.remaining));
            (BatchResponse::Batch(responses), rate)
        }
    };
    encode(media, &response, rate)
}

/// A `multipart/form-data` POST (the GraphQL multipart request spec,
/// <https://github.com/jaydenseric/graphql-multipart-request-spec>): an `operations` part
/// (the JSON request), a `map` part (file part name to variable paths) and the file parts.
pub struct MultipartRequest<'a> {
    /// The full `Content-Type`, with its `boundary`.
    pub content_type: &'a str,
    pub accept: Option<&'a str>,
    /// `preflighted` of the request's headers: a multipart POST runs only when it is.
    pub preflighted: bool,
    /// Largest accepted request; a larger one is a 413.
    pub max_bytes: usize,
    pub max_credits: Option<&'a str>,
}

/// Whether a `Content-Type` is `multipart/form-data`.
pub fn is_multipart(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("multipart/form-data"))
}

/// Decodes a multipart request as it streams in (files are spooled to anonymous temporary
/// files, never held in memory), then executes it like a JSON POST. One without a CSRF header
/// is refused with a 400 (`CSRF_HEADER_REQUIRED`) before its body is read; malformed requests
/// with a 400 (`BAD_USER_INPUT`) before anything runs; one over `max_bytes` with a 413.
pub async fn serve_multipart(
    gateway: &Gateway,
    req: MultipartRequest<'_>,
    body: impl futures_util::io::AsyncRead + Send,
    caller: Caller,
) -> HttpReply {
    use async_graphql::ParseRequestError as E;
    let Some(media) = MediaType::negotiate(req.accept) else {
        return error_reply(
            406,
            MediaType::Json,
            BAD_USER_INPUT,
            "the Accept header must allow application/graphql-response+json or application/json",
        );
    };
    if !req.preflighted {
        return csrf_refusal(media);
    }
    let header_budget = match parse_budget(req.max_credits) {
        Ok(b) => b,
        Err(message) => return bad_request(media, message),
    };
    // one file's worth for the whole stream: `operations` and `map` are small
    let options = async_graphql::http::MultipartOptions::default()
        .max_file_size(req.max_bytes)
        .max_num_files(1);
    let batch = match async_graphql::http::receive_batch_body(Some(req.content_type), body, options).await {
        Ok(batch) => batch,
        Err(E::PayloadTooLarge) => {
            return error_reply(
                413,
                media,
                BAD_USER_INPUT,
                &format!(
                    "the upload is larger than the {} MiB this server accepts",
                    req.max_bytes >> 20
                ),
            );
        }
        Err(e) => {
            let message = match e {
                E::MissingOperatorsPart => "the multipart request has no `operations` part",
                E::MissingMapPart => "the multipart request has no `map` part",
                E::InvalidFilesMap(_) => {
                    "`map` must be a JSON object mapping file part names to arrays of variable paths"
                }
                E::MissingFiles => "`map` names a file part the request does not contain",
                E::InvalidRequest(_) => "`operations` must be a JSON GraphQL request (or a batch)",
                E::InvalidMultipart(_) => "the body is not valid multipart/form-data",
                E::Io(_) => "the request body could not be read",
                _ => "the multipart request is malformed",
            };
            return bad_request(media, message);
        }
    };
    if let BatchRequest::Batch(rs) = &batch
        && rs.len() > gateway.limits().batch
    {
        let max = gateway.limits().batch;
        return bad_request(media, &format!("a batch may contain at most {max} requests"));
    }
    run_batch(gateway, media, batch, caller, header_budget, None).await
}

/// The `X-Leadgate-Max-Credits` header as a budget.
fn parse_budget(raw: Option<&str>) -> Result<Option<u64>, &'static str> {
    match raw.map(|v| v.trim().parse::<u64>()) {
        None => Ok(None),
        Some(Ok(v)) => Ok(Some(v)),
        Some(Err(_)) => Err("the X-Leadgate-Max-Credits header must be a non-negative integer"),
    }
}

/// Parses and checks one request, then runs it; failures before execution carry a code.
/// Returns the rate-limit decision with the response (none when nothing was limited).
async fn execute(
    gateway: &Gateway,
    mut request: Request,
    caller: Caller,
    header_budget: Option<u64>,
    client: Option<std::net::IpAddr>,
) -> (Response, Option<crate::limits::Decision>) {
    let metrics = gateway.metrics();
    if let Err(e) = gateway.edge().persisted.resolve(&mut request).await {
        let response = Response::from_errors(vec![e]);
        metrics.answered(
            &metrics.unread(request.operation_name.as_deref()),
            &response,
            None,
        );
        return (response, None);
    }
    let subject = rate_subject(&caller, client);
    let requested = request.operation_name.clone();
    let workspace = caller.0.as_ref().map(|actor| actor.workspace_id);
    // a refused request counts in its workspace's history as an error
    let refused = || {
        if let Some(ws) = workspace {
            gateway.history().request(ws, std::time::Duration::ZERO, true);
        }
    };
    let (mut request, scope) = match prepare_execution(gateway, request, caller, header_budget) {
        Ok(prepared) => prepared,
        Err(response) => {
            metrics.answered(&metrics.unread(requested.as_deref()), &response, None);
            refused();
            return (*response, None);
        }
    };
    let operation = metrics.operation_of(&mut request);
    let span = super::operation_span(&mut request, workspace);
    async move {
        let decision = match admit(gateway, &mut request, &subject).await {
            Ok(decision) => decision,
            Err((response, decision)) => {
                metrics.answered(&operation, &response, None);
                refused();
                return (*response, Some(decision));
            }
        };
        let started = std::time::Instant::now();
        let mut response = gateway.schema().execute(request).await;
        label_request_errors(&mut response);
        let took = started.elapsed();
        metrics.answered(&operation, &response, Some(took));
        let spend = scope.spend();
        if let Some(ws) = workspace {
            let history = gateway.history();
            history.request(ws, took, !response.errors.is_empty());
            history.credits(ws, spend.map_or(0, |s| s.credits_spent));
        }
        if let Some(spend) = spend {
            response
                .extensions
                .insert("enrichment".to_owned(), super::enrichment::spend_extension(spend));
        }
        (response, decision)
    }
    .instrument(span)
    .await
}

/// The rate-limit subject of a caller: its key or token, else its address.
pub(super) fn rate_subject(caller: &Caller, client: Option<std::net::IpAddr>) -> RateSubject {
    match &caller.0 {
        Some(actor) => RateSubject::Caller {
            kind: actor.limit_kind(),
            key: actor.limit_key(),
            role: actor.role,
            own: actor.own_rate_limit(),
            workspace: actor.workspace_id.to_string(),
        },
        None => RateSubject::Anonymous(client),
    }
}

/// `limits::Subject`, owned, so it can outlive the caller moved into the request.
pub(super) enum RateSubject {
    Caller {
        kind: &'static str,
        key: String,
        role: crate::domain::Role,
        own: Option<crate::domain::RateLimit>,
        workspace: String,
    },
    Anonymous(Option<std::net::IpAddr>),
}

/// Checks a prepared request against its rate limits: `Err` is the `RATE_LIMITED` response.
pub(super) async fn admit(
    gateway: &Gateway,
    request: &mut Request,
    subject: &RateSubject,
) -> Result<Option<crate::limits::Decision>, (Box<Response>, crate::limits::Decision)> {
    let subject = match subject {
        RateSubject::Caller {
            kind,
            key,
            role,
            own,
            workspace,
        } => crate::limits::Subject::Caller {
            kind,
            key,
            role: *role,
            own: *own,
            workspace: workspace.clone(),
        },
        RateSubject::Anonymous(address) => crate::limits::Subject::Anonymous(*address),
    };
    let edge = gateway.edge();
    let rules = edge.policy.rules(&subject);
    if rules.is_empty() {
        return Ok(None);
    }
    let operation = request.operation_name.clone();
    let variables = request.variables.clone();
    let cost = match request.parsed_query() {
        Ok(doc) => super::cost::estimate(doc, operation.as_deref(), &variables),
        Err(_) => 1,
    };
    match edge.limiter.check(&rules, cost).await {
        Some(decision) if !decision.allowed => {
            let message = format!(
                "rate limit exceeded ({} per {} s for this {}); retry after {} s",
                decision.rate.count(),
                decision.rate.period().as_secs(),
                decision.policy,
                decision.retry_after_secs()
            );
            let error = guard::with_code(ServerError::new(message, None), super::errors::RATE_LIMITED);
            Err((Box::new(Response::from_errors(vec![error])), decision))
        }
        decision => Ok(decision),
    }
}

/// Everything before execution, shared with the WebSocket transport: parse, the document
/// checks (`guard`: introspection policy, aliases, repeated fields, directives) — both skipped
/// for a text the `documents` cache holds — `@budget`, and the request data resolvers read
/// (caller, enrichment scope, plan runner).
/// The request's enrichment budget is the smaller of the header's and any `@budget`'s.
pub(super) fn prepare_execution(
    gateway: &Gateway,
    mut request: Request,
    caller: Caller,
    header_budget: Option<u64>,
) -> Result<(Request, EnrichScope), Box<Response>> {
    let authenticated = caller.0.is_some();
    if let Err(e) = gateway
        .document_cache()
        .prepare(&mut request, gateway.limits(), authenticated)
    {
        return Err(Box::new(Response::from_errors(vec![e])));
    }
    let variables = request.variables.clone();
    let directive_budget = match request
        .parsed_query()
        .map(|doc| guard::budget_in(doc, &variables))
    {
        Ok(Ok(b)) => b,
        Ok(Err(message)) => {
            return Err(Box::new(Response::from_errors(vec![guard::with_code(
                async_graphql::ServerError::new(message, None),
                BAD_USER_INPUT,
            )])));
        }
        Err(e) => return Err(Box::new(Response::from_errors(vec![e]))),
    };
    let budget = match (header_budget, directive_budget) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let scope = EnrichScope::new(budget);
    let request = request.data(caller).data(scope.clone()).data(PlanRunner {
        schema: gateway.schema().clone(),
        limits: gateway.limits().clone(),
    });
    Ok((request, scope))
}

/// Gives the errors of a response that failed before execution their `extensions.code`.
pub(super) fn label_request_errors(response: &mut Response) {
    if is_request_error(response) {
        response.errors = guard::label_validation_errors(std::mem::take(&mut response.errors));
    }
}

fn encode(media: MediaType, response: &BatchResponse, rate: Option<crate::limits::Decision>) -> HttpReply {
    let refused = rate.as_ref().is_some_and(|d| !d.allowed);
    let (status, body) = match response {
        BatchResponse::Single(r) => {
            let status = if refused {
                429
            } else if media == MediaType::GraphqlResponseJson && is_request_error(r) {
                400
            } else {
                200
            };
            (status, serde_json::to_vec(&body_of(r)))
        }
        BatchResponse::Batch(rs) => (
            200,
            serde_json::to_vec(&rs.iter().map(body_of).collect::<Vec<_>>()),
        ),
    };
    match body {
        Ok(body) => HttpReply {
            status,
            content_type: media.as_str(),
            body,
            allow: None,
            www_authenticate: None,
            rate,
        },
        Err(_) => error_reply(500, media, super::errors::INTERNAL, "internal error"),
    }
}

fn is_json_content_type(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(APPLICATION_JSON))
}

/// Parses `query`, `operationName`, `variables` and `extensions` from a query string.
fn decode_get(query_string: &str) -> Result<Request, String> {
    let mut query = None;
    let mut operation_name = None;
    let mut variables = None;
    let mut extensions = None;
    for (key, value) in url::form_urlencoded::parse(query_string.as_bytes()) {
        match key.as_ref() {
            "query" => query = Some(value.into_owned()),
            "operationName" => operation_name = Some(value.into_owned()).filter(|v| !v.is_empty()),
            "variables" => variables = Some(value.into_owned()).filter(|v| !v.is_empty()),
            "extensions" => extensions = Some(value.into_owned()).filter(|v| !v.is_empty()),
            _ => {}
        }
    }
    let query = query.filter(|q| !q.trim().is_empty());
    let mut request = Request::new(query.clone().unwrap_or_default());
    request.operation_name = operation_name;
    if let Some(v) = variables {
        let json: serde_json::Value =
            serde_json::from_str(&v).map_err(|_| "`variables` must be a JSON object".to_owned())?;
        request.variables = variables_from(json)?;
    }
    if let Some(e) = extensions {
        let json: serde_json::Value =
            serde_json::from_str(&e).map_err(|_| "`extensions` must be a JSON object".to_owned())?;
        request.extensions = async_graphql::Extensions(extensions_from(json)?);
    }
    if query.is_none() && !super::persisted::names_persisted_query(&request.extensions) {
        return Err("the `query` parameter is required".into());
    }
    Ok(request)
}

fn variables_from(json: serde_json::Value) -> Result<Variables, String> {
    match json {
        serde_json::Value::Null => Ok(Variables::default()),
        v @ serde_json::Value::Object(_) => Ok(Variables::from_json(v)),
        _ => Err("`variables` must be a JSON object".into()),
    }
}

fn extensions_from(
    json: serde_json::Value,
) -> Result<std::collections::HashMap<String, async_graphql::Value>, String> {
    match json {
        serde_json::Value::Null => Ok(Default::default()),
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| {
                async_graphql::Value::from_json(v)
                    .map(|v| (k, v))
                    .map_err(|_| "`extensions` has a value that is not JSON".to_owned())
            })
            .collect(),
        _ => Err("`extensions` must be a JSON object".into()),
    }
}

/// Parses a POST body: one request object, or a batch (array) of at most `max_batch`.
fn decode_post(body: &[u8], max_batch: usize) -> Result<BatchRequest, String> {
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    match json {
        serde_json::Value::Array(items) => {
            if items.is_empty() {
                return Err("a batch must contain at least one request".into());
            }
            if items.len() > max_batch {
                return Err(format!("a batch may contain at most {max_batch} requests"));
            }
            items
                .into_iter()
                .map(request_from)
                .collect::<Result<Vec<_>, _>>()
                .map(BatchRequest::Batch)
        }
        other => request_from(other).map(BatchRequest::Single),
    }
}

fn request_from(json: serde_json::Value) -> Result<Request, String> {
    let serde_json::Value::Object(mut map) = json else {
        return Err("the body must be a JSON object with a `query`".into());
    };
    let query = match map.remove("query") {
        Some(serde_json::Value::String(q)) if !q.trim().is_empty() => Some(q),
        Some(serde_json::Value::String(_)) | None | Some(serde_json::Value::Null) => None,
        Some(_) => return Err("`query` must be a string".into()),
    };
    let mut request = Request::new(query.clone().unwrap_or_default());
    request.operation_name = match map.remove("operationName") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(_) => return Err("`operationName` must be a string".into()),
    };
    if let Some(v) = map.remove("variables") {
        request.variables = variables_from(v)?;
    }
    if let Some(e) = map.remove("extensions") {
        request.extensions = async_graphql::Extensions(extensions_from(e)?);
    }
    if query.is_none() && !super::persisted::names_persisted_query(&request.extensions) {
        return Err("`query` is required".into());
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_prefers_graphql_response_json() {
        assert_eq!(
            MediaType::negotiate(Some("application/json, application/graphql-response+json")),
            Some(MediaType::GraphqlResponseJson)
        );
    }

    #[test]
    fn accept_defaults_to_json() {
        assert_eq!(MediaType::negotiate(None), Some(MediaType::Json));
        assert_eq!(MediaType::negotiate(Some("*/*")), Some(MediaType::Json));
    }

    #[test]
    fn accept_without_json_is_not_acceptable() {
        assert_eq!(MediaType::negotiate(Some("text/html")), None);
        assert_eq!(MediaType::negotiate(Some("application/json;q=0")), None);
    }

    #[test]
    fn post_body_must_be_an_object_with_a_string_query() {
        assert!(decode_post(b"[]", 10).is_err());
        assert!(decode_post(b"{\"query\": 1}", 10).is_err());
        assert!(decode_post(b"{\"query\": \"{a}\", \"variables\": [1]}", 10).is_err());
        assert!(decode_post(b"{\"query\": \"{a}\", \"operationName\": 3}", 10).is_err());
        assert!(decode_post(b"{\"query\": \"{a}\", \"variables\": null}", 10).is_ok());
    }

    #[test]
    fn only_a_csrf_header_or_an_unformlike_content_type_counts_as_preflighted() {
        assert!(!preflighted(None, [None, None]));
        assert!(!preflighted(
            Some("multipart/form-data; boundary=x"),
            [None, None]
        ));
        assert!(!preflighted(Some("Text/Plain;charset=UTF-8"), [None]));
        assert!(!preflighted(
            Some("application/x-www-form-urlencoded"),
            [Some(" ")]
        ));
        assert!(preflighted(Some("multipart/form-data; boundary=x"), [Some("1")]));
        assert!(preflighted(None, [None, Some("true")]));
        assert!(preflighted(Some("application/json"), [None]));
    }

    #[test]
    fn batch_size_is_limited() {
        let two = br#"[{"query":"{a}"},{"query":"{b}"}]"#;
        assert!(decode_post(two, 2).is_ok());
        assert!(decode_post(two, 1).is_err());
    }
}
