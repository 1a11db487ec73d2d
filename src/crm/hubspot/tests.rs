use super::*;
use crate::domain::LeadId;
use crate::net::{OutboundClient, OutboundPolicy, Redirects};
use std::collections::BTreeMap;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const UPSERT_COMPLETE: &str = include_str!("testdata/upsert_complete.json");
const UPSERT_MULTI_STATUS: &str = include_str!("testdata/upsert_multi_status.json");
const UPSERT_EMPTY_COMPLETE: &str = include_str!("testdata/upsert_empty_complete.json");
const ERROR_RATE_LIMIT: &str = include_str!("testdata/error_rate_limit.json");
const ERROR_UNAUTHORIZED: &str = include_str!("testdata/error_unauthorized.json");
const WEBHOOK_EVENTS: &str = include_str!("testdata/webhook_events.json");
const SEARCH_PAGE: &str = include_str!("testdata/search_page.json");

const SECRET: &str = "app-client-secret";

fn client() -> OutboundClient {
    OutboundPolicy::new(["127.0.0.0/8".parse().unwrap()])
        .client(reqwest::Client::builder(), Redirects::None)
        .unwrap()
}

fn creds() -> CrmCredentials {
    CrmCredentials {
        access_token: Some("pat-na1-token".into()),
        client_secret: Some(SECRET.into()),
        ..Default::default()
    }
}

fn record(email: Option<&str>) -> OutgoingRecord {
    let mut properties = BTreeMap::new();
    if let Some(e) = email {
        properties.insert("email".to_owned(), e.to_owned());
    }
    properties.insert("firstname".to_owned(), "Ada".to_owned());
    OutgoingRecord {
        lead_id: LeadId::new(),
        external_id: None,
        properties,
    }
}

fn json(status: u16, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

async fn upsert_against(
    server: &MockServer,
    records: &[OutgoingRecord],
) -> Result<Vec<RecordOutcome>, CrmError> {
    let client = client();
    let creds = creds();
    let base = server.uri();
    let ctx = CallContext {
        client: &client,
        base_url: &base,
        token_url: None,
        credentials: &creds,
    };
    HubSpot.upsert(&ctx, records).await
}

#[tokio::test]
async fn a_batch_is_wrapped_in_inputs_and_results_are_matched_by_trace_id() {
    let server = MockServer::start().await;
    let ada = record(Some("ada@example.com"));
    let grace = record(Some("grace@example.com"));
    let body = UPSERT_COMPLETE
        .replace("TRACE_ADA", &ada.lead_id.to_string())
        .replace("TRACE_GRACE", &grace.lead_id.to_string());
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/upsert"))
        .and(header("authorization", "Bearer pat-na1-token"))
        .and(body_partial_json(serde_json::json!({"inputs": [
            {"id": "grace@example.com", "idProperty": "email"},
            {"id": "ada@example.com", "idProperty": "email", "properties": {"email": "ada@example.com", "firstname": "Ada"}}
        ]})))
        .respond_with(json(200, &body))
        .expect(1)
        .mount(&server)
        .await;
    // the answer lists them in another order than the request
    let outcomes = upsert_against(&server, &[grace.clone(), ada.clone()])
        .await
        .unwrap();
    assert_eq!(outcomes[0].lead_id, grace.lead_id);
    assert_eq!(outcomes[0].result, Written::Ok("52".into()));
    assert_eq!(outcomes[1].result, Written::Ok("51".into()));
}

#[tokio::test]
async fn a_multi_status_answer_refuses_only_the_named_input() {
    let server = MockServer::start().await;
    let ada = record(Some("ada@example.com"));
    let bad = record(Some("Bad@Example.com"));
    let body = UPSERT_MULTI_STATUS.replace("TRACE_ADA", &ada.lead_id.to_string());
    Mock::given(method("POST"))
        .respond_with(json(207, &body))
        .mount(&server)
        .await;
    let outcomes = upsert_against(&server, &[ada, bad]).await.unwrap();
    assert_eq!(outcomes[0].result, Written::Ok("51".into()));
    match &outcomes[1].result {
        Written::Refused(why) => assert!(
            why.contains("VALIDATION_ERROR") && why.contains("lifecyclestage"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_complete_answer_without_results_writes_nothing() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(json(200, UPSERT_EMPTY_COMPLETE))
        .mount(&server)
        .await;
    let outcomes = upsert_against(&server, &[record(Some("ada@example.com"))])
        .await
        .unwrap();
    assert!(
        matches!(outcomes[0].result, Written::NotWritten(_)),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn a_lead_without_email_or_contact_is_refused_without_a_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(json(500, "{}"))
        .expect(0)
        .mount(&server)
        .await;
    let outcomes = upsert_against(&server, &[record(None)]).await.unwrap();
    assert!(matches!(&outcomes[0].result, Written::Refused(why) if why.contains("email")));
}

#[tokio::test]
async fn rate_limits_server_errors_and_bad_tokens_are_told_apart() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(json(429, ERROR_RATE_LIMIT).insert_header("Retry-After", "3"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            json(429, ERROR_RATE_LIMIT).insert_header("X-HubSpot-RateLimit-Interval-Milliseconds", "10000"),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(json(502, "<html>bad gateway</html>"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(json(401, ERROR_UNAUTHORIZED))
        .mount(&server)
        .await;
    let r = [record(Some("ada@example.com"))];
    assert_eq!(
        upsert_against(&server, &r).await.unwrap_err(),
        CrmError::RateLimited {
            retry_after: Some(Duration::from_secs(3))
        }
    );
    assert_eq!(
        upsert_against(&server, &r).await.unwrap_err(),
        CrmError::RateLimited {
            retry_after: Some(Duration::from_secs(10))
        }
    );
    assert!(matches!(
        upsert_against(&server, &r).await.unwrap_err(),
        CrmError::Transient { .. }
    ));
    assert!(matches!(
        upsert_against(&server, &r).await.unwrap_err(),
        CrmError::Unauthorized(_)
    ));
}

#[tokio::test]
async fn a_malformed_answer_is_refused_with_its_start() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(json(200, "{\"results\": \"not a list\"}"))
        .mount(&server)
        .await;
    match upsert_against(&server, &[record(Some("ada@example.com"))])
        .await
        .unwrap_err()
    {
        CrmError::Rejected(why) => assert!(why.contains("not a list"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_poll_pages_the_search_from_its_cursor_then_the_archive() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/search"))
        .and(body_partial_json(serde_json::json!({
            "filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": "1000"}]}],
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        })))
        .respond_with(json(200, SEARCH_PAGE))
        .mount(&server)
        .await;
    let client = client();
    let creds = creds();
    let base = server.uri();
    let ctx = CallContext {
        client: &client,
        base_url: &base,
        token_url: None,
        credentials: &creds,
    };
    let page = HubSpot
        .changed_since(&ctx, Some("c:1000:"), &["email".into(), "firstname".into()])
        .await
        .unwrap();
    assert_eq!(page.records.len(), 2);
    assert_eq!(page.records[0].external_id, "51");
    assert_eq!(page.records[1].properties["firstname"], None);
    assert_eq!(
        page.records[1].updated_at_ms,
        epoch_ms("2026-12-04T10:05:00.000Z").unwrap()
    );
    assert_eq!(page.next.as_deref(), Some("c:1000:2"));
    assert!(HubSpot.changed_since(&ctx, Some("x:1"), &[]).await.is_err());
}

#[test]
fn webhook_events_are_read_in_hubspots_shape() {
    let events = HubSpot.parse_events(WEBHOOK_EVENTS.as_bytes()).unwrap();
    assert_eq!(events.len(), 3, "the deal event is not a lead");
    assert_eq!(events[0].event_id, "1001");
    assert_eq!(events[0].external_id, "51");
    assert_eq!(events[0].occurred_at_ms, 1_764_842_400_000);
    assert_eq!(
        events[0].change,
        Change::Changed(BTreeMap::from([("firstname".to_owned(), Some("Ada".to_owned()))]))
    );
    assert_eq!(events[1].change, Change::Created(None));
    assert_eq!(events[2].change, Change::Deleted);
    for bad in [
        "",
        "{}",
        "[{\"eventId\": 1}]",
        "[{\"eventId\": 1, \"objectId\": 2, \"subscriptionType\": \"contact.creation\", \"occurredAt\": \"soon\"}]",
    ] {
        assert!(HubSpot.parse_events(bad.as_bytes()).is_err(), "{bad}");
    }
}

/// HMAC-SHA256 in base64 over a source spelled out by hand.
fn expected(source: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(source.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn request<'a>(url: &'a str, headers: &'a [(String, String)], body: &'a [u8]) -> InboundRequest<'a> {
    InboundRequest {
        method: "POST",
        url,
        headers,
        body,
    }
}

const NOW: i64 = 1_764_842_400_000;

#[test]
fn signature_v3_decodes_exactly_hubspots_list_and_keeps_the_query() {
    let url = "https://hooks.example/webhooks/crm/abc%3Fx%3Dy?email=a%40b.c&list=a%2Cb&pct=100%25&sp=a%20b";
    let body = br#"[{"eventId":1}]"#;
    let ts = NOW.to_string();
    // %3F %40 %2C are decoded; %3D %25 %20 are not on HubSpot's list and stay
    let source = format!(
        "POSThttps://hooks.example/webhooks/crm/abc?x%3Dy?email=a@b.c&list=a,b&pct=100%25&sp=a%20b{}{ts}",
        std::str::from_utf8(body).unwrap()
    );
    let headers = vec![
        (SIGNATURE_V3.to_owned(), expected(&source)),
        (TIMESTAMP.to_owned(), ts.clone()),
    ];
    HubSpot
        .verify(&creds(), &request(url, &headers, body), NOW)
        .unwrap();
    // lower-case hex digits are decoded too
    let lower = url.replace("%3F", "%3f");
    HubSpot
        .verify(&creds(), &request(&lower, &headers, body), NOW)
        .unwrap();
}

#[test]
fn signatures_that_do_not_hold_are_refused_with_the_reason() {
    let url = "https://hooks.example/in";
    let body = b"[]";
    let ts = NOW.to_string();
    let good = expected(&format!("POST{url}[]{ts}"));
    let headers = |sig: &str, ts: &str| {
        vec![
            (SIGNATURE_V3.to_owned(), sig.to_owned()),
            (TIMESTAMP.to_owned(), ts.to_owned()),
        ]
    };
    let ok = headers(&good, &ts);
    HubSpot.verify(&creds(), &request(url, &ok, body), NOW).unwrap();
    type Case<'a> = (Vec<(String, String)>, &'a [u8], i64, &'a str);
    let cases: Vec<Case> = vec![
        (ok.clone(), b"[ ]", NOW, "does not match"),    // tampered body
        (ok.clone(), body, NOW + 300_001, "5 minutes"), // stale
        (ok.clone(), body, NOW - 300_001, "5 minutes"), // from the future
        (headers("bm90IGl0", &ts), body, NOW, "does not match"), // wrong signature
        (headers("%%%", &ts), body, NOW, "base64"),
        (vec![(TIMESTAMP.to_owned(), ts.clone())], body, NOW, "missing"),
        (
            vec![(SIGNATURE_V3.to_owned(), good.clone())],
            body,
            NOW,
            "missing",
        ),
        (headers(&good, "yesterday"), body, NOW, "milliseconds"),
        (
            vec![
                ("X-HubSpot-Signature".to_owned(), "abc".to_owned()),
                ("X-HubSpot-Signature-Version".to_owned(), "v2".to_owned()),
            ],
            body,
            NOW,
            "not accepted",
        ),
    ];
    for (headers, body, now, why) in cases {
        let err = HubSpot
            .verify(&creds(), &request(url, &headers, body), now)
            .unwrap_err();
        assert!(err.contains(why), "{err} (expected: {why})");
    }
    let wrong_secret = CrmCredentials {
        client_secret: Some("another".into()),
        ..creds()
    };
    assert!(
        HubSpot
            .verify(&wrong_secret, &request(url, &ok, body), NOW)
            .is_err()
    );
    let no_secret = CrmCredentials {
        client_secret: None,
        ..creds()
    };
    assert!(
        HubSpot
            .verify(&no_secret, &request(url, &ok, body), NOW)
            .unwrap_err()
            .contains("clientSecret")
    );
}
