use super::*;
use crate::domain::LeadId;
use crate::net::{OutboundPolicy, Redirects};
use std::collections::BTreeMap;
use wiremock::matchers::{body_partial_json, body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const COLLECTIONS_UPSERT: &str = include_str!("testdata/collections_upsert.json");
const ERROR_MALFORMED: &str = include_str!("testdata/error_malformed.json");
const ERROR_SESSION: &str = include_str!("testdata/error_session.json");
const TOKEN: &str = include_str!("testdata/token.json");
const TOKEN_INVALID_GRANT: &str = include_str!("testdata/token_invalid_grant.json");
const QUERY_PAGE: &str = include_str!("testdata/query_page.json");
const DELETED: &str = include_str!("testdata/deleted.json");

fn client() -> OutboundClient {
    OutboundPolicy::new(["127.0.0.0/8".parse().unwrap()])
        .client(reqwest::Client::builder(), Redirects::None)
        .unwrap()
}

use crate::net::OutboundClient;

fn creds() -> CrmCredentials {
    CrmCredentials {
        client_id: Some("3MVG9-client".into()),
        client_secret: Some("client-secret".into()),
        refresh_token: Some("5Aep-refresh".into()),
        access_token: Some("00D!old".into()),
        ..Default::default()
    }
}

fn record(last: &str) -> OutgoingRecord {
    OutgoingRecord {
        lead_id: LeadId::new(),
        external_id: None,
        properties: BTreeMap::from([
            ("LastName".to_owned(), last.to_owned()),
            ("Company".to_owned(), "Acme".to_owned()),
        ]),
    }
}

fn json(status: u16, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

fn ctx<'a>(
    client: &'a OutboundClient,
    base: &'a str,
    token_url: Option<&'a str>,
    creds: &'a CrmCredentials,
) -> CallContext<'a> {
    CallContext {
        client,
        base_url: base,
        token_url,
        credentials: creds,
    }
}

#[tokio::test]
async fn collections_upsert_reads_results_in_request_order() {
    let server = MockServer::start().await;
    let records = [record("Lovelace"), record(""), record("Hopper")];
    Mock::given(method("PATCH"))
        .and(path("/services/data/v60.0/composite/sobjects/Lead/Leadgate_Id__c"))
        .and(header("authorization", "Bearer 00D!old"))
        .and(body_partial_json(serde_json::json!({
            "allOrNone": false,
            "records": [{"attributes": {"type": "Lead"}, "Leadgate_Id__c": records[0].lead_id.to_string(), "LastName": "Lovelace"}]
        })))
        .respond_with(json(200, COLLECTIONS_UPSERT).insert_header("Sforce-Limit-Info", "api-usage=18/5000"))
        .expect(1)
        .mount(&server)
        .await;
    let (client, creds, base) = (client(), creds(), server.uri());
    let outcomes = Salesforce
        .upsert(&ctx(&client, &base, None, &creds), &records)
        .await
        .unwrap();
    assert_eq!(outcomes[0].result, Written::Ok("00Q5e00000AbCdEAAZ".into()));
    assert!(matches!(&outcomes[1].result, Written::Refused(why) if why.contains("REQUIRED_FIELD_MISSING")));
    assert_eq!(outcomes[2].result, Written::Ok("00Q5e00000AbCdFAAZ".into()));
}

#[tokio::test]
async fn errors_come_back_as_arrays_and_are_classified() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .respond_with(json(400, ERROR_MALFORMED))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(json(401, ERROR_SESSION))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(json(
            403,
            r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(json(200, r#"[{"id":"00Q1","success":true,"errors":[]}]"#))
        .mount(&server)
        .await;
    let (client, creds, base) = (client(), creds(), server.uri());
    let c = ctx(&client, &base, None, &creds);
    let r = [record("A")];
    assert!(
        matches!(Salesforce.upsert(&c, &r).await.unwrap_err(), CrmError::Rejected(why) if why.contains("JSON_PARSER_ERROR"))
    );
    assert!(
        matches!(Salesforce.upsert(&c, &r).await.unwrap_err(), CrmError::Unauthorized(why) if why.contains("INVALID_SESSION_ID"))
    );
    assert!(matches!(
        Salesforce.upsert(&c, &r).await.unwrap_err(),
        CrmError::RateLimited { .. }
    ));
    // one result for two records is not an answer to trust
    assert!(matches!(
        Salesforce
            .upsert(&c, &[record("A"), record("B")])
            .await
            .unwrap_err(),
        CrmError::Rejected(_)
    ));
}

#[tokio::test]
async fn the_refresh_token_buys_a_new_access_token_at_the_token_url() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/oauth2/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("refresh_token=5Aep-refresh"))
        .and(body_string_contains("client_id=3MVG9-client"))
        .respond_with(json(200, TOKEN))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/services/oauth2/token"))
        .respond_with(json(400, TOKEN_INVALID_GRANT))
        .mount(&server)
        .await;
    let (client, creds, base) = (client(), creds(), server.uri());
    let token_url = format!("{base}/services/oauth2/token");
    let c = ctx(&client, &base, Some(&token_url), &creds);
    let fresh = Salesforce.refresh(&c).await.unwrap().unwrap();
    assert_eq!(fresh.access_token, "00D5e000000ABCD!AQ0AQFRESH");
    match Salesforce.refresh(&c).await.unwrap_err() {
        CrmError::Unauthorized(why) => assert!(why.contains("invalid_grant"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_poll_follows_next_records_then_lists_deletions() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/services/data/v60.0/query"))
        .and(query_param(
            "q",
            "SELECT Id, LastModifiedDate, Email, FirstName FROM Lead WHERE LastModifiedDate >= 1970-01-01T00:00:01.000Z ORDER BY LastModifiedDate ASC",
        ))
        .respond_with(json(200, QUERY_PAGE))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/services/data/v60.0/sobjects/Lead/deleted/"))
        .respond_with(json(200, DELETED))
        .mount(&server)
        .await;
    let (client, creds, base) = (client(), creds(), server.uri());
    let c = ctx(&client, &base, None, &creds);
    let props = ["Email".to_owned(), "FirstName".to_owned()];
    let page = Salesforce
        .changed_since(&c, Some("q:1000"), &props)
        .await
        .unwrap();
    assert_eq!(page.records.len(), 2);
    assert_eq!(
        page.records[0].properties["Status"].as_deref(),
        Some("Working - Contacted")
    );
    assert_eq!(page.records[1].properties["FirstName"], None);
    assert_eq!(
        page.next.as_deref(),
        Some("n:1000|/services/data/v60.0/query/01g5e00000ABCDE-2000")
    );
    let deleted = Salesforce
        .changed_since(&c, Some("d:1000"), &props)
        .await
        .unwrap();
    assert_eq!(
        deleted.deleted,
        vec![(
            "00Q5e00000AbCdFAAZ".to_owned(),
            epoch_ms("2026-12-04T11:00:00.000+0000").unwrap()
        )]
    );
    assert_eq!(deleted.next, None);
}

#[test]
fn the_limit_header_reads_used_and_allowed() {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("sforce-limit-info", "api-usage=18/5000".parse().unwrap());
    let reply = Reply {
        status: 200,
        headers,
        body: String::new(),
    };
    assert_eq!(api_usage(&reply), Some((18, 5000)));
}

#[test]
fn salesforce_takes_no_webhooks() {
    let headers = [];
    let request = InboundRequest {
        method: "POST",
        url: "http://x/",
        headers: &headers,
        body: b"[]",
    };
    assert!(Salesforce.verify(&creds(), &request, 0).is_err());
    assert!(Salesforce.parse_events(b"[]").is_err());
}
