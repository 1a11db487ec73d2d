//! Fake enrichment providers: wiremock servers on 127.0.0.1 that answer in each provider's real
//! shapes (as in the adapters' `testdata/`), and readers for what they received. People Data
//! Labs answers `POST /v5/person/bulk` with one element per request, echoing its `metadata`;
//! Apollo answers `POST /api/v1/people/bulk_match` with `matches` in request order, `null` for
//! a miss; Hunter answers `GET /v2/email-verifier`. Nothing here depends on leadgate's code.

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

pub const PDL_BULK: &str = "/v5/person/bulk";
pub const APOLLO_BULK: &str = "/api/v1/people/bulk_match";
pub const HUNTER_VERIFIER: &str = "/v2/email-verifier";

/// What a fake provider knows about one person; `None` fields come back as `null`.
#[derive(Clone, Debug, Default)]
pub struct Known {
    pub full_name: Option<String>,
    pub title: Option<String>,
    pub seniority: Option<String>,
    pub department: Option<String>,
    pub twitter: Option<String>,
    /// `City, Country`.
    pub location: Option<String>,
}

/// Who a fake knows, by email; `None` is a miss.
pub type Directory = Arc<dyn Fn(&str) -> Option<Known> + Send + Sync>;

/// A directory that knows exactly `people` (email, what is known).
pub fn directory(people: Vec<(&str, Known)>) -> Directory {
    let people: Vec<(String, Known)> = people.into_iter().map(|(e, k)| (e.to_owned(), k)).collect();
    Arc::new(move |email| people.iter().find(|(e, _)| e == email).map(|(_, k)| k.clone()))
}

/// A directory that knows everyone: a full name and a title made from the email.
pub fn everyone() -> Directory {
    Arc::new(|email| {
        let local = email.split('@').next().unwrap_or_default();
        Some(Known {
            full_name: Some(format!("Person {local}")),
            title: Some("Buyer".into()),
            ..Known::default()
        })
    })
}

/// The base URL (`provider_urls.pdl`) of a fake PDL: the adapter's default keeps `/v5`.
pub fn pdl_url(server: &MockServer) -> String {
    format!("{}/v5", server.uri())
}

/// The base URL (`provider_urls.apollo`) of a fake Apollo.
pub fn apollo_url(server: &MockServer) -> String {
    format!("{}/api/v1", server.uri())
}

/// The base URL (`provider_urls.hunter`) of a fake Hunter.
pub fn hunter_url(server: &MockServer) -> String {
    format!("{}/v2", server.uri())
}

/// A fake PDL whose Person Bulk endpoint answers from `known`.
pub async fn pdl(known: Directory) -> MockServer {
    let server = MockServer::start().await;
    mount_pdl(&server, known, Duration::ZERO).await;
    server
}

/// Makes `server` answer Person Bulk calls from `known`, each after `delay`.
pub async fn mount_pdl(server: &MockServer, known: Directory, delay: Duration) {
    Mock::given(method("POST"))
        .and(path(PDL_BULK))
        .respond_with(move |req: &Request| pdl_bulk_reply(&known, req).set_delay(delay))
        .mount(server)
        .await;
}

/// A fake PDL whose Person Bulk endpoint answers every call with `template`.
pub async fn pdl_replying(template: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PDL_BULK))
        .respond_with(template)
        .mount(&server)
        .await;
    server
}

/// PDL's error body (`{"status":N,"error":{"type","message"}}`) with that status.
pub fn pdl_error(status: u16, kind: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"status": status, "error": {"type": kind, "message": message}}))
}

/// One Person Bulk reply: an element per request, in order, with its `metadata` echoed.
fn pdl_bulk_reply(known: &Directory, req: &Request) -> ResponseTemplate {
    let Ok(body) = req.body_json::<Value>() else {
        return pdl_error(400, "invalid_request_error", "the body is not JSON");
    };
    let elements: Vec<Value> = body["requests"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let email = r["params"]["email"][0].as_str().unwrap_or_default();
            match known(email) {
                Some(k) => json!({
                    "status": 200,
                    "likelihood": 8,
                    "data": pdl_record(email, &k),
                    "metadata": r["metadata"],
                }),
                None => json!({
                    "status": 404,
                    "error": {"type": "not_found", "message": "No records were found matching your request"},
                    "metadata": r["metadata"],
                }),
            }
        })
        .collect();
    ResponseTemplate::new(200).set_body_json(Value::Array(elements))
}

/// A PDL person record (the fields leadgate maps, and a few it does not).
fn pdl_record(email: &str, k: &Known) -> Value {
    let (locality, country) = split_location(k.location.as_deref());
    json!({
        "id": format!("pdl-{email}"),
        "full_name": k.full_name,
        "first_name": k.full_name.as_deref().and_then(|n| n.split(' ').next()),
        "last_name": k.full_name.as_deref().and_then(|n| n.split(' ').nth(1)),
        "sex": null,
        "linkedin_url": null,
        "linkedin_username": null,
        "twitter_url": k.twitter.as_ref().map(|t| format!("twitter.com/{t}")),
        "twitter_username": k.twitter,
        "work_email": email,
        "personal_emails": [],
        "mobile_phone": null,
        "job_title": k.title,
        "job_title_role": k.department,
        "job_title_sub_role": null,
        "job_title_levels": k.seniority.iter().collect::<Vec<_>>(),
        "location_name": k.location,
        "location_locality": locality,
        "location_country": country,
        "phone_numbers": [],
        "skills": [],
        "experience": [],
        "education": [],
    })
}

/// A fake Apollo whose `people/bulk_match` answers from `known`.
pub async fn apollo(known: Directory) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(APOLLO_BULK))
        .respond_with(move |req: &Request| apollo_bulk_reply(&known, req))
        .mount(&server)
        .await;
    server
}

fn apollo_bulk_reply(known: &Directory, req: &Request) -> ResponseTemplate {
    let Ok(body) = req.body_json::<Value>() else {
        return ResponseTemplate::new(422).set_body_json(json!({"error": "invalid JSON"}));
    };
    let matches: Vec<Value> = body["details"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|d| {
            let email = d["email"].as_str().unwrap_or_default();
            known(email).map_or(Value::Null, |k| apollo_person(email, &k))
        })
        .collect();
    let hits = matches.iter().filter(|m| !m.is_null()).count();
    ResponseTemplate::new(200).set_body_json(json!({
        "status": "success",
        "error_code": null,
        "error_message": null,
        "total_requested_enrichments": matches.len(),
        "unique_enriched_records": hits,
        "missing_records": matches.len() - hits,
        "credits_consumed": hits,
        "matches": matches,
    }))
}

/// An Apollo person (the fields leadgate maps, and a few it does not).
fn apollo_person(email: &str, k: &Known) -> Value {
    let (city, country) = split_location(k.location.as_deref());
    json!({
        "id": format!("apollo-{}", email.replace(['@', '.'], "-")),
        "first_name": k.full_name.as_deref().and_then(|n| n.split(' ').next()),
        "last_name": k.full_name.as_deref().and_then(|n| n.split(' ').nth(1)),
        "name": k.full_name,
        "linkedin_url": null,
        "title": k.title,
        "email_status": "verified",
        "photo_url": null,
        "twitter_url": k.twitter.as_ref().map(|t| format!("https://twitter.com/{t}")),
        "github_url": null,
        "headline": null,
        "email": email,
        "employment_history": [],
        "state": null,
        "city": city,
        "country": country,
        "departments": k.department.iter().collect::<Vec<_>>(),
        "subdepartments": [],
        "seniority": k.seniority,
        "functions": [],
        "phone_numbers": [],
    })
}

/// A fake Hunter whose Email Verifier calls every address `valid` with score 91.
pub async fn hunter_verifier() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(HUNTER_VERIFIER))
        .respond_with(|req: &Request| {
            let email = req
                .url
                .query_pairs()
                .find(|(k, _)| k == "email")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            ResponseTemplate::new(200).set_body_json(json!({
                "data": {
                    "status": "valid",
                    "result": "deliverable",
                    "_deprecation_notice": "Using result is deprecated, use status instead",
                    "score": 91,
                    "email": email,
                    "regexp": true,
                    "gibberish": false,
                    "disposable": false,
                    "webmail": false,
                    "mx_records": true,
                    "smtp_server": true,
                    "smtp_check": true,
                    "accept_all": false,
                    "block": false,
                    "sources": []
                },
                "meta": {"params": {"email": email}}
            }))
        })
        .mount(&server)
        .await;
    server
}

fn split_location(location: Option<&str>) -> (Option<String>, Option<String>) {
    match location.map(|l| l.split_once(", ")) {
        Some(Some((city, country))) => (Some(city.to_owned()), Some(country.to_owned())),
        Some(None) => (location.map(str::to_owned), None),
        None => (None, None),
    }
}

/// Requests the server received on `path`.
pub async fn requests_to(server: &MockServer, on: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .expect("request recording is on")
        .into_iter()
        .filter(|r| r.url.path() == on)
        .collect()
}

/// How many people each bulk call the server received asked about (PDL `requests`, Apollo
/// `details`), in arrival order.
pub async fn bulk_sizes(server: &MockServer) -> Vec<usize> {
    server
        .received_requests()
        .await
        .expect("request recording is on")
        .iter()
        .filter_map(|r| r.body_json::<Value>().ok())
        .map(|b| {
            b.get("requests")
                .or_else(|| b.get("details"))
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        })
        .collect()
}

/// Every email the server was asked about in bulk calls, in arrival order.
pub async fn bulk_emails(server: &MockServer) -> Vec<String> {
    let mut emails = Vec::new();
    for body in server
        .received_requests()
        .await
        .expect("request recording is on")
        .iter()
        .filter_map(|r| r.body_json::<Value>().ok())
    {
        for r in body["requests"].as_array().into_iter().flatten() {
            emails.extend(r["params"]["email"][0].as_str().map(str::to_owned));
        }
        for d in body["details"].as_array().into_iter().flatten() {
            emails.extend(d["email"].as_str().map(str::to_owned));
        }
    }
    emails
}
