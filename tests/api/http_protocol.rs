//! GraphQL over HTTP (<https://graphql.github.io/graphql-over-http/draft/>): media-type
//! negotiation, request validation and its status codes, GET, batching, the body limit, the
//! operational endpoints and request ids. Every case checks status, `Content-Type` and the shape
//! of the body, and requests that must be refused are shown to have executed nothing.

use crate::helpers::{TestApp, backends, first_code, spawn_app, spawn_app_with};
use leadgate::domain::Role;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const JSON: &str = "application/json";
const BOTH_MEDIA: [&str; 2] = [GRAPHQL_RESPONSE_JSON, JSON];

/// A mutation that leaves a trace when it runs.
const CREATE: &str = r#"mutation { createLead(input: {email: "probe@example.com", lastName: "Probe"}) { lead { id } userErrors { code } } }"#;
const VIEWER: &str = "{ viewer { role } }";

/// A response with its body as text.
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The media type of the body without parameters, lower-cased.
    fn media_type(&self) -> String {
        essence(self.header("content-type").unwrap_or_default())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.text))
    }
}

fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

async fn send(request: reqwest::RequestBuilder) -> Reply {
    let res = request.send().await.expect("request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.expect("body");
    Reply {
        status,
        headers,
        text,
    }
}

/// A POST to /graphql with exactly these headers (reqwest adds `Accept: */*` when `accept` is
/// `None`).
fn post(
    app: &TestApp,
    token: Option<&str>,
    accept: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<String>,
) -> reqwest::RequestBuilder {
    let mut req = app.client.post(app.url("/graphql")).body(body.into());
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req
}

/// A GET of /graphql with these query parameters (and the CSRF header GETs need).
fn get(app: &TestApp, token: &str, accept: &str, params: &[(&str, &str)]) -> reqwest::RequestBuilder {
    let url = url::Url::parse_with_params(&app.url("/graphql"), params).unwrap();
    app.client
        .get(url)
        .header("accept", accept)
        .header("x-leadgate-csrf", "1")
        .bearer_auth(token)
}

async fn active_leads(app: &TestApp) -> u64 {
    app.services
        .store
        .lead_counts(app.workspace.id)
        .await
        .unwrap()
        .active
}

/// A refusal before execution: `status`, the negotiated media type, an `errors` list with
/// messages and no `data` key at all.
fn assert_request_error(reply: &Reply, status: u16, media: &str, case: &str) -> Value {
    assert_eq!(reply.status, status, "{case}: {}", reply.text);
    assert_eq!(reply.media_type(), media, "{case}");
    let body = reply.json();
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{case}: {body}"));
    assert!(!errors.is_empty(), "{case}: {body}");
    assert!(errors.iter().all(|e| e["message"].is_string()), "{case}: {body}");
    assert!(
        body.get("data").is_none(),
        "{case}: `data` must be absent: {body}"
    );
    body
}

/// An HTTP/1.1 exchange written by hand, for headers reqwest always adds.
struct RawReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn raw_exchange(app: &TestApp, head: &str, body: &str) -> RawReply {
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    RawReply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&data[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[tokio::test]
async fn post_negotiates_the_response_media_type_from_accept() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let token = app.token(Role::Viewer);
        let expected = json!({"data": {"viewer": {"role": "VIEWER"}}});
        let body = json!({ "query": VIEWER }).to_string();
        let cases = [
            (Some(GRAPHQL_RESPONSE_JSON), GRAPHQL_RESPONSE_JSON),
            (Some(JSON), JSON),
            (
                Some("application/json, application/graphql-response+json;q=0.9"),
                GRAPHQL_RESPONSE_JSON,
            ),
            (Some("*/*"), JSON),
            // reqwest's own default is `*/*`
            (None, JSON),
        ];
        for (accept, media) in cases {
            let reply = send(post(&app, Some(&token), accept, Some(JSON), body.clone())).await;
            assert_eq!(reply.status, 200, "{backend:?} {accept:?}: {}", reply.text);
            assert_eq!(reply.media_type(), media, "{backend:?} {accept:?}");
            assert_eq!(reply.json(), expected, "{backend:?} {accept:?}");
        }
        // no Accept header at all
        let raw = raw_exchange(
            &app,
            &format!(
                "POST /graphql HTTP/1.1\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}"
            ),
            &body,
        )
        .await;
        assert_eq!(raw.status, 200, "{backend:?}");
        assert!(raw.headers.iter().all(|(k, _)| k != "accept"));
        let content_type = raw
            .headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.as_str())
            .unwrap();
        assert_eq!(essence(content_type), JSON, "{backend:?}");
        let parsed: Value = serde_json::from_slice(&raw.body).unwrap();
        assert_eq!(parsed, expected, "{backend:?}");
    }
}

#[tokio::test]
async fn post_with_an_unacceptable_accept_is_406_and_runs_nothing() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let token = app.token(Role::Member);
        let body = json!({ "query": CREATE }).to_string();
        for accept in ["text/html", "application/xml, text/plain", "application/json;q=0"] {
            let reply = send(post(&app, Some(&token), Some(accept), Some(JSON), body.clone())).await;
            assert_request_error(&reply, 406, JSON, accept);
        }
        assert_eq!(active_leads(&app).await, 0, "{backend:?}");
    }
}

#[tokio::test]
async fn post_without_a_json_content_type_is_415_and_runs_nothing() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let token = app.token(Role::Member);
        let json_body = json!({ "query": CREATE }).to_string();
        let form_body = format!(
            "query={}",
            url::form_urlencoded::byte_serialize(CREATE.as_bytes()).collect::<String>()
        );
        let cases = [
            (None, json_body.clone()),
            (Some("text/plain"), json_body.clone()),
            (Some("text/plain;charset=UTF-8"), json_body.clone()),
            (Some("application/x-www-form-urlencoded"), form_body),
            (Some("application/jsonx"), json_body.clone()),
        ];
        for media in BOTH_MEDIA {
            for (content_type, body) in &cases {
                let reply = send(post(&app, Some(&token), Some(media), *content_type, body.clone())).await;
                assert_request_error(&reply, 415, media, &format!("{content_type:?}"));
            }
        }
        // what a cross-site form could send must not have created anything
        assert_eq!(active_leads(&app).await, 0, "{backend:?}");

        // the same request as JSON does run, so the refusals above were the content type's doing
        let reply = send(post(
            &app,
            Some(&token),
            Some(GRAPHQL_RESPONSE_JSON),
            Some("application/json; charset=utf-8"),
            json_body,
        ))
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json()["data"]["createLead"]["userErrors"], json!([]));
        assert_eq!(active_leads(&app).await, 1, "{backend:?}");
    }
}

#[tokio::test]
async fn malformed_request_bodies_are_400_without_data() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let token = app.token(Role::Member);
        let create = serde_json::to_string(CREATE).unwrap();
        let cases = [
            "this is not json".to_owned(),
            "{\"query\": ".to_owned(),
            "[1, 2]".to_owned(),
            "[\"{ viewer { role } }\"]".to_owned(),
            "\"{ viewer { role } }\"".to_owned(),
            "{}".to_owned(),
            "{\"query\": null}".to_owned(),
            "{\"query\": \"   \"}".to_owned(),
            "{\"query\": 42}".to_owned(),
            "{\"query\": {\"text\": \"{ viewer { role } }\"}}".to_owned(),
            format!("{{\"query\": {create}, \"variables\": \"{{}}\"}}"),
            format!("{{\"query\": {create}, \"variables\": [1, 2]}}"),
            format!("{{\"query\": {create}, \"variables\": 7}}"),
            format!("{{\"query\": {create}, \"operationName\": 3}}"),
            format!("{{\"query\": {create}, \"extensions\": \"x\"}}"),
        ];
        for media in BOTH_MEDIA {
            for body in &cases {
                let reply = send(post(&app, Some(&token), Some(media), Some(JSON), body.clone())).await;
                let parsed = assert_request_error(&reply, 400, media, body);
                assert_eq!(first_code(&parsed), "BAD_USER_INPUT", "{body}: {parsed}");
            }
        }
        assert_eq!(active_leads(&app).await, 0, "{backend:?}");
    }
}

#[tokio::test]
async fn parse_errors_are_400_under_graphql_response_json_and_200_under_json() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let token = app.token(Role::Viewer);
        let body = json!({"query": "{ leads {"}).to_string();

        let reply = send(post(
            &app,
            Some(&token),
            Some(GRAPHQL_RESPONSE_JSON),
            Some(JSON),
            body.clone(),
        ))
        .await;
        let parsed = assert_request_error(&reply, 400, GRAPHQL_RESPONSE_JSON, "parse");
        assert_eq!(
            first_code(&parsed),
            "GRAPHQL_PARSE_FAILED",
            "{backend:?}: {parsed}"
        );

        let reply = send(post(&app, Some(&token), Some(JSON), Some(JSON), body)).await;
        let parsed = assert_request_error(&reply, 200, JSON, "parse");
        assert_eq!(
            first_code(&parsed),
            "GRAPHQL_PARSE_FAILED",
            "{backend:?}: {parsed}"
        );
    }
}

#[tokio::test]
async fn validation_errors_are_400_under_graphql_response_json_and_200_under_json() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let token = app.token(Role::Viewer);
        let documents = [
            json!({"query": "{ viewer { role nope } }"}),
            json!({"query": "{ leads(first: \"ten\") { totalCount } }"}),
            json!({"query": "query($n: Int!) { leads(first: $n) { totalCount } }"}),
            json!({"query": "query($n: Int!) { leads(first: $n) { totalCount } }", "variables": {"n": "x"}}),
        ];
        for document in documents {
            let body = document.to_string();
            let reply = send(post(
                &app,
                Some(&token),
                Some(GRAPHQL_RESPONSE_JSON),
                Some(JSON),
                body.clone(),
            ))
            .await;
            let parsed = assert_request_error(&reply, 400, GRAPHQL_RESPONSE_JSON, &body);
            assert_eq!(
                first_code(&parsed),
                "GRAPHQL_VALIDATION_FAILED",
                "{backend:?} {body}: {parsed}"
            );

            let reply = send(post(&app, Some(&token), Some(JSON), Some(JSON), body.clone())).await;
            let parsed = assert_request_error(&reply, 200, JSON, &body);
            assert_eq!(
                first_code(&parsed),
                "GRAPHQL_VALIDATION_FAILED",
                "{body}: {parsed}"
            );
        }
        // an operationName that names no operation in the document is a request error too
        let body = json!({"query": "query A { viewer { role } }", "operationName": "B"}).to_string();
        let reply = send(post(
            &app,
            Some(&token),
            Some(GRAPHQL_RESPONSE_JSON),
            Some(JSON),
            body,
        ))
        .await;
        assert_request_error(&reply, 400, GRAPHQL_RESPONSE_JSON, "unknown operation");
    }
}

#[tokio::test]
async fn execution_errors_are_200_with_data_present() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let token = app.token(Role::Viewer);
        for media in BOTH_MEDIA {
            // a non-null root field failing nulls the whole `data`
            let body = json!({"query": "{ leads(first: -1) { totalCount } }"}).to_string();
            let reply = send(post(&app, Some(&token), Some(media), Some(JSON), body)).await;
            assert_eq!(reply.status, 200, "{backend:?} {media}: {}", reply.text);
            assert_eq!(reply.media_type(), media);
            let parsed = reply.json();
            assert_eq!(parsed.get("data"), Some(&Value::Null), "{parsed}");
            assert_eq!(first_code(&parsed), "BAD_USER_INPUT", "{parsed}");
            assert_eq!(parsed["errors"][0]["path"], json!(["leads"]), "{parsed}");

            // a nullable field failing leaves the rest of the data in place (async-graphql
            // leaves the failed field's key out rather than setting it to null)
            let body = json!({"query": "{ viewer { role } lead(id: \"not-an-id\") { id } }"}).to_string();
            let reply = send(post(&app, Some(&token), Some(media), Some(JSON), body)).await;
            assert_eq!(reply.status, 200, "{media}: {}", reply.text);
            let parsed = reply.json();
            assert_eq!(parsed["data"]["viewer"], json!({"role": "VIEWER"}), "{parsed}");
            assert!(parsed["data"].get("lead").is_none_or(Value::is_null), "{parsed}");
            assert_eq!(first_code(&parsed), "BAD_USER_INPUT", "{parsed}");
            assert_eq!(parsed["errors"][0]["path"], json!(["lead"]), "{parsed}");

            // no token: a field error, not a transport refusal
            let body = json!({"query": "{ leads { totalCount } }"}).to_string();
            let reply = send(post(&app, None, Some(media), Some(JSON), body)).await;
            assert_eq!(reply.status, 200, "{media}: {}", reply.text);
            let parsed = reply.json();
            assert_eq!(parsed.get("data"), Some(&Value::Null), "{parsed}");
            assert_eq!(first_code(&parsed), "UNAUTHENTICATED", "{parsed}");
        }
    }
}

#[tokio::test]
async fn a_bad_token_is_401_with_a_bearer_challenge() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let body = json!({"query": CREATE}).to_string();
        for media in BOTH_MEDIA {
            for token in ["not-a-jwt", "a.b.c"] {
                let reply = send(post(&app, Some(token), Some(media), Some(JSON), body.clone())).await;
                let parsed = assert_request_error(&reply, 401, media, token);
                assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
                assert_eq!(first_code(&parsed), "UNAUTHENTICATED");
            }
        }
        assert_eq!(active_leads(&app).await, 0, "{backend:?}");
    }
}

#[tokio::test]
async fn get_runs_queries_with_variables_and_operation_name() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.create_lead(json!({"email": "one@example.com"})).await;
        app.create_lead(json!({"email": "two@example.com"})).await;
        let token = app.token(Role::Viewer);

        let reply = send(get(&app, &token, GRAPHQL_RESPONSE_JSON, &[("query", VIEWER)])).await;
        assert_eq!(reply.status, 200, "{backend:?}: {}", reply.text);
        assert_eq!(reply.media_type(), GRAPHQL_RESPONSE_JSON);
        assert_eq!(reply.json(), json!({"data": {"viewer": {"role": "VIEWER"}}}));

        let document = "query Who { viewer { role } }
            query Page($first: Int) { leads(first: $first) { edges { node { email } } totalCount } }";
        let reply = send(get(
            &app,
            &token,
            JSON,
            &[
                ("query", document),
                ("operationName", "Page"),
                ("variables", r#"{"first": 1}"#),
            ],
        ))
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.media_type(), JSON);
        assert_eq!(
            reply.json(),
            json!({"data": {"leads": {"edges": [{"node": {"email": "one@example.com"}}], "totalCount": 2}}})
        );

        let reply = send(get(
            &app,
            &token,
            JSON,
            &[("query", document), ("operationName", "Who")],
        ))
        .await;
        assert_eq!(reply.json(), json!({"data": {"viewer": {"role": "VIEWER"}}}));
    }
}

#[tokio::test]
async fn get_refuses_mutations_with_405_and_runs_nothing() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let token = app.token(Role::Member);
        let named = format!(
            "query Q {{ viewer {{ role }} }} {}",
            CREATE.replacen("mutation", "mutation M", 1)
        );
        let cases: [&[(&str, &str)]; 3] = [
            &[("query", CREATE)],
            &[("query", &named), ("operationName", "M")],
            &[(
                "query",
                "mutation { createLead(input: {email: \"get@example.com\"}) { lead { id } } }",
            )],
        ];
        for media in BOTH_MEDIA {
            for params in cases {
                let reply = send(get(&app, &token, media, params)).await;
                assert_request_error(&reply, 405, media, &format!("{params:?}"));
                assert_eq!(reply.header("allow"), Some("POST"), "{params:?}");
            }
        }
        assert_eq!(active_leads(&app).await, 0, "{backend:?}");
        // the query of the same document is fine over GET
        let reply = send(get(
            &app,
            &token,
            JSON,
            &[("query", &named), ("operationName", "Q")],
        ))
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json()["data"]["viewer"]["role"], "MEMBER");
    }
}

#[tokio::test]
async fn get_without_a_usable_query_is_400() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let token = app.token(Role::Viewer);
        let cases: [&[(&str, &str)]; 5] = [
            &[],
            &[("query", "")],
            &[("operationName", "A")],
            &[("query", VIEWER), ("variables", "{not json")],
            &[("query", VIEWER), ("variables", "[1]")],
        ];
        for media in BOTH_MEDIA {
            for params in cases {
                let reply = send(get(&app, &token, media, params)).await;
                let parsed = assert_request_error(&reply, 400, media, &format!("{backend:?} {params:?}"));
                assert_eq!(first_code(&parsed), "BAD_USER_INPUT");
            }
        }
    }
}

#[tokio::test]
async fn other_methods_on_graphql_are_405() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let token = app.token(Role::Member);
        let body = json!({"query": CREATE}).to_string();
        for method in [
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
            reqwest::Method::PATCH,
        ] {
            let reply = send(
                app.client
                    .request(method.clone(), app.url("/graphql"))
                    .header("content-type", JSON)
                    .bearer_auth(&token)
                    .body(body.clone()),
            )
            .await;
            assert_eq!(reply.status, 405, "{backend:?} {method}");
            let allow = reply.header("allow").unwrap_or_default();
            assert!(
                allow.contains("POST") && allow.contains("GET"),
                "{method}: allow = {allow}"
            );
        }
        assert_eq!(active_leads(&app).await, 0, "{backend:?}");
    }
}

#[tokio::test]
async fn a_batch_returns_one_result_per_request_in_order() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.create_lead(json!({"email": "one@example.com"})).await;
        let token = app.token(Role::Viewer);
        let batch = json!([
            {"query": "query($first: Int) { leads(first: $first) { totalCount edges { node { email } } } }", "variables": {"first": 1}},
            {"query": VIEWER},
        ]);
        for media in BOTH_MEDIA {
            let reply = send(post(
                &app,
                Some(&token),
                Some(media),
                Some(JSON),
                batch.to_string(),
            ))
            .await;
            assert_eq!(reply.status, 200, "{backend:?}: {}", reply.text);
            assert_eq!(reply.media_type(), media);
            assert_eq!(
                reply.json(),
                json!([
                    {"data": {"leads": {"totalCount": 1, "edges": [{"node": {"email": "one@example.com"}}]}}},
                    {"data": {"viewer": {"role": "VIEWER"}}},
                ])
            );
        }
    }
}

#[tokio::test]
async fn batches_beyond_max_batch_or_empty_are_400_and_run_nothing() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| s.max_batch = 2).await;
        let token = app.token(Role::Member);
        let create = |n: u32| {
            json!({"query": format!(
                "mutation {{ createLead(input: {{email: \"b{n}@example.com\"}}) {{ lead {{ id }} }} }}"
            )})
        };
        for media in BOTH_MEDIA {
            let three = json!([create(1), create(2), create(3)]).to_string();
            let reply = send(post(&app, Some(&token), Some(media), Some(JSON), three)).await;
            let parsed = assert_request_error(&reply, 400, media, "three");
            assert!(
                parsed["errors"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("at most 2"),
                "{parsed}"
            );
            let reply = send(post(&app, Some(&token), Some(media), Some(JSON), "[]")).await;
            assert_request_error(&reply, 400, media, "empty");
            // one bad member refuses the whole batch
            let mixed = json!([create(4), {"query": 5}]).to_string();
            let reply = send(post(&app, Some(&token), Some(media), Some(JSON), mixed)).await;
            assert_request_error(&reply, 400, media, "mixed");
        }
        assert_eq!(active_leads(&app).await, 0, "{backend:?}");
        // exactly max_batch is accepted
        let two = json!([create(1), create(2)]).to_string();
        let reply = send(post(
            &app,
            Some(&token),
            Some(GRAPHQL_RESPONSE_JSON),
            Some(JSON),
            two,
        ))
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json().as_array().map(Vec::len), Some(2));
        assert_eq!(active_leads(&app).await, 2, "{backend:?}");
    }
}

#[tokio::test]
async fn bodies_over_max_body_bytes_are_413_and_run_nothing() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| s.max_body_bytes = 4096).await;
        let token = app.token(Role::Member);
        let padded = |total: usize| {
            let base = json!({"query": CREATE, "variables": {"pad": ""}}).to_string();
            let body =
                json!({"query": CREATE, "variables": {"pad": "x".repeat(total - base.len())}}).to_string();
            assert_eq!(body.len(), total);
            body
        };
        let reply = send(post(
            &app,
            Some(&token),
            Some(GRAPHQL_RESPONSE_JSON),
            Some(JSON),
            padded(4097),
        ))
        .await;
        assert_eq!(reply.status, 413, "{backend:?}: {}", reply.text);
        let reply = send(post(
            &app,
            Some(&token),
            Some(JSON),
            Some(JSON),
            padded(64 * 1024),
        ))
        .await;
        assert_eq!(reply.status, 413, "{backend:?}: {}", reply.text);
        assert_eq!(active_leads(&app).await, 0, "{backend:?}");
        // at the limit the request runs
        let reply = send(post(
            &app,
            Some(&token),
            Some(GRAPHQL_RESPONSE_JSON),
            Some(JSON),
            padded(4096),
        ))
        .await;
        assert_eq!(reply.status, 200, "{backend:?}: {}", reply.text);
        assert_eq!(active_leads(&app).await, 1, "{backend:?}");
    }
}

#[tokio::test]
async fn health_and_readiness_answer_200() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let reply = send(app.client.get(app.url("/healthz"))).await;
        assert_eq!(reply.status, 200, "{backend:?}");
        assert_eq!(reply.media_type(), JSON);
        assert_eq!(reply.json(), json!({"status": "ok"}));
        let reply = send(app.client.get(app.url("/readyz"))).await;
        assert_eq!(reply.status, 200, "{backend:?}: {}", reply.text);
        assert_eq!(reply.media_type(), JSON);
        assert_eq!(reply.json()["status"], "ready");
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_echoes_the_callers() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| s.max_body_bytes = 4096).await;
        let token = app.token(Role::Viewer);
        let requests = |app: &TestApp| {
            vec![
                ("healthz", app.client.get(app.url("/healthz"))),
                ("readyz", app.client.get(app.url("/readyz"))),
                ("graphiql", app.client.get(app.url("/graphiql"))),
                (
                    "200",
                    post(
                        app,
                        Some(&token),
                        Some(JSON),
                        Some(JSON),
                        json!({"query": VIEWER}).to_string(),
                    ),
                ),
                ("400", post(app, Some(&token), Some(JSON), Some(JSON), "{")),
                ("401", post(app, Some("bad"), Some(JSON), Some(JSON), "{}")),
                ("404", app.client.get(app.url("/nowhere"))),
                ("405", app.client.delete(app.url("/graphql"))),
                (
                    "406",
                    post(app, Some(&token), Some("text/html"), Some(JSON), "{}"),
                ),
                (
                    "413",
                    post(app, Some(&token), Some(JSON), Some(JSON), "x".repeat(5000)),
                ),
                (
                    "415",
                    post(app, Some(&token), Some(JSON), Some("text/plain"), "{}"),
                ),
            ]
        };
        let mut seen = std::collections::HashSet::new();
        for (case, request) in requests(&app) {
            let reply = send(request).await;
            let id = reply
                .header("x-request-id")
                .unwrap_or_else(|| panic!("{backend:?} {case}: no x-request-id"));
            assert!(!id.is_empty(), "{case}");
            assert!(seen.insert(id.to_owned()), "{case}: request id {id} was reused");
        }
        for (case, request) in requests(&app) {
            let mine = format!("trace-{case}-7f3a");
            let reply = send(request.header("x-request-id", &mine)).await;
            assert_eq!(
                reply.header("x-request-id"),
                Some(mine.as_str()),
                "{backend:?} {case}"
            );
        }
    }
}

#[tokio::test]
async fn graphiql_serves_html_pointing_at_graphql_with_an_authorization_header() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let reply = send(app.client.get(app.url("/graphiql"))).await;
        assert_eq!(reply.status, 200, "{backend:?}");
        assert_eq!(reply.media_type(), "text/html");
        let html = &reply.text;
        assert!(html.to_ascii_lowercase().contains("<html"), "{html}");
        assert!(html.contains("Authorization"), "{html}");
        assert!(
            html.contains("'/graphql'") || html.contains("\"/graphql\""),
            "{html}"
        );
    }
}

#[tokio::test]
async fn unknown_paths_are_404() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        for path in ["/nowhere", "/graphql/extra", "/graphql2", "/"] {
            let reply = send(app.client.get(app.url(path))).await;
            assert_eq!(reply.status, 404, "{backend:?} {path}");
        }
        let reply = send(
            app.client
                .get(app.url("/graphql?query=%7B__typename%7D"))
                .header("x-leadgate-csrf", "1"),
        )
        .await;
        assert_eq!(reply.status, 200, "/graphql itself exists: {}", reply.text);
    }
}
