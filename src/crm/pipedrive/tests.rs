use super::*;
use crate::domain::LeadId;
use crate::net::{OutboundClient, OutboundPolicy, Redirects};
use wiremock::matchers::{body_partial_json, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SEARCH_EMPTY: &str = include_str!("testdata/search_empty.json");
const SEARCH_HIT: &str = include_str!("testdata/search_hit.json");
const PERSON_CREATED: &str = include_str!("testdata/person_created.json");
const LEAD_CREATED: &str = include_str!("testdata/lead_created.json");
const ERROR_BAD_REQUEST: &str = include_str!("testdata/error_bad_request.json");
const PERSONS_PAGE: &str = include_str!("testdata/persons_page.json");
const WEBHOOK_CHANGE: &str = include_str!("testdata/webhook_change.json");
const WEBHOOK_DELETE: &str = include_str!("testdata/webhook_delete.json");

fn client() -> OutboundClient {
    OutboundPolicy::new(["127.0.0.0/8".parse().unwrap()])
        .client(reqwest::Client::builder(), Redirects::None)
        .unwrap()
}

fn creds() -> CrmCredentials {
    CrmCredentials {
        api_token: Some("pd-token".into()),
        webhook_user: Some("leadgate".into()),
        webhook_password: Some("s3cret:with:colons".into()),
        ..Default::default()
    }
}

fn json(status: u16, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

fn record(email: &str) -> OutgoingRecord {
    OutgoingRecord {
        lead_id: LeadId::new(),
        external_id: None,
        properties: BTreeMap::from([
            ("email".to_owned(), email.to_owned()),
            ("first_name".to_owned(), "Grace".to_owned()),
            ("last_name".to_owned(), "Hopper".to_owned()),
        ]),
    }
}

#[tokio::test]
async fn a_new_person_is_looked_up_created_and_given_a_lead() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/persons/search"))
        .and(query_param("term", "grace@example.com"))
        .and(query_param("exact_match", "true"))
        .and(query_param("api_token", "pd-token"))
        .respond_with(json(200, SEARCH_EMPTY))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/persons"))
        .and(body_partial_json(serde_json::json!({
            "name": "Grace Hopper",
            "email": [{"value": "grace@example.com", "primary": true}],
        })))
        .respond_with(json(201, PERSON_CREATED))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/leads"))
        .and(body_partial_json(serde_json::json!({"person_id": 78})))
        .respond_with(json(201, LEAD_CREATED))
        .expect(1)
        .mount(&server)
        .await;
    let (client, creds, base) = (client(), creds(), server.uri());
    let ctx = CallContext {
        client: &client,
        base_url: &base,
        token_url: None,
        credentials: &creds,
    };
    let outcomes = Pipedrive
        .upsert(&ctx, &[record("grace@example.com")])
        .await
        .unwrap();
    assert_eq!(outcomes[0].result, Written::Ok("78".into()));
}

#[tokio::test]
async fn a_person_found_by_email_is_updated_not_created_again() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/persons/search"))
        .respond_with(json(200, SEARCH_HIT))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v1/persons/77"))
        .respond_with(json(200, &PERSON_CREATED.replace("78", "77")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(json(500, "{}"))
        .expect(0)
        .mount(&server)
        .await;
    let (client, creds, base) = (client(), creds(), server.uri());
    let ctx = CallContext {
        client: &client,
        base_url: &base,
        token_url: None,
        credentials: &creds,
    };
    let outcomes = Pipedrive
        .upsert(&ctx, &[record("ada@example.com")])
        .await
        .unwrap();
    assert_eq!(outcomes[0].result, Written::Ok("77".into()));
}

#[tokio::test]
async fn a_refused_person_says_why_and_a_burst_limit_is_a_rate_limit() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(json(200, SEARCH_EMPTY))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(json(400, ERROR_BAD_REQUEST))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            json(429, r#"{"success":false,"error":"Too many requests"}"#).insert_header("Retry-After", "2"),
        )
        .mount(&server)
        .await;
    let (client, creds, base) = (client(), creds(), server.uri());
    let ctx = CallContext {
        client: &client,
        base_url: &base,
        token_url: None,
        credentials: &creds,
    };
    let outcomes = Pipedrive.upsert(&ctx, &[record("x@example.com")]).await.unwrap();
    assert!(matches!(&outcomes[0].result, Written::Refused(why) if why.contains("Name must be given")));
    assert_eq!(
        Pipedrive
            .upsert(&ctx, &[record("x@example.com")])
            .await
            .unwrap_err(),
        CrmError::RateLimited {
            retry_after: Some(std::time::Duration::from_secs(2))
        }
    );
}

#[tokio::test]
async fn a_poll_pages_persons_updated_since_its_cursor() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/persons"))
        .and(query_param("updated_since", "1970-01-01T00:00:01Z"))
        .and(query_param("cursor", "abc"))
        .respond_with(json(200, PERSONS_PAGE))
        .mount(&server)
        .await;
    let (client, creds, base) = (client(), creds(), server.uri());
    let ctx = CallContext {
        client: &client,
        base_url: &base,
        token_url: None,
        credentials: &creds,
    };
    let page = Pipedrive
        .changed_since(&ctx, Some("1000|abc"), &[])
        .await
        .unwrap();
    assert_eq!(page.records.len(), 2);
    assert_eq!(
        page.records[0].properties["email"].as_deref(),
        Some("ada@example.com")
    );
    assert_eq!(
        page.records[0].properties["phone"].as_deref(),
        Some("+14155550100")
    );
    assert_eq!(page.records[1].properties["email"], None);
    assert_eq!(page.next.as_deref(), Some("1000|eyJmaWVsZCI6ImlkIiwiaWQiOjc4fQ"));
}

fn basic(user_pass: &str) -> Vec<(String, String)> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(user_pass);
    vec![("Authorization".to_owned(), format!("Basic {b64}"))]
}

fn req(h: &[(String, String)]) -> InboundRequest<'_> {
    InboundRequest {
        method: "POST",
        url: "http://x/",
        headers: h,
        body: b"{}",
    }
}

#[test]
fn webhooks_are_checked_with_basic_auth() {
    let ok = basic("leadgate:s3cret:with:colons");
    Pipedrive.verify(&creds(), &req(&ok), 0).unwrap();
    for (headers, why) in [
        (basic("leadgate:wrong"), "do not match"),
        (basic("other:s3cret:with:colons"), "do not match"),
        (
            vec![("Authorization".to_owned(), "Bearer x".to_owned())],
            "missing",
        ),
        (vec![], "missing"),
        (
            vec![("Authorization".to_owned(), "Basic %%%".to_owned())],
            "base64",
        ),
    ] {
        let err = Pipedrive.verify(&creds(), &req(&headers), 0).unwrap_err();
        assert!(err.contains(why), "{err}");
    }
    let no_user = CrmCredentials {
        webhook_user: None,
        webhook_password: None,
        ..creds()
    };
    assert!(Pipedrive.verify(&no_user, &req(&ok), 0).is_err());
}

#[test]
fn v2_payloads_become_events() {
    let change = Pipedrive.parse_events(WEBHOOK_CHANGE.as_bytes()).unwrap();
    assert_eq!(change.len(), 1);
    assert_eq!(change[0].external_id, "77");
    assert_eq!(change[0].event_id, "corr-1:77:change");
    match &change[0].change {
        Change::Changed(p) => {
            assert_eq!(p["last_name"].as_deref(), Some("King"));
            assert_eq!(p["email"].as_deref(), Some("ada@example.com"));
        }
        other => panic!("{other:?}"),
    }
    let delete = Pipedrive.parse_events(WEBHOOK_DELETE.as_bytes()).unwrap();
    assert_eq!(delete[0].change, Change::Deleted);
    assert_eq!(
        delete[0].occurred_at_ms,
        epoch_ms("2026-12-04T10:05:00.000Z").unwrap()
    );
    let deal = WEBHOOK_CHANGE.replace("\"entity\": \"person\"", "\"entity\": \"deal\"");
    assert!(Pipedrive.parse_events(deal.as_bytes()).unwrap().is_empty());
    for bad in [
        "",
        "[]",
        "{\"meta\": {}}",
        "{\"meta\": {\"entity\": \"person\", \"action\": \"merge\", \"entity_id\": 1, \"timestamp\": \"2026-12-04T10:00:00Z\"}}",
    ] {
        assert!(Pipedrive.parse_events(bad.as_bytes()).is_err(), "{bad}");
    }
}
