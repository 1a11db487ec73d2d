use super::*;
use crate::domain::LeadId;
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "test-key-1234";
const BULK: &str = include_str!("testdata/bulk_match.json");
const ORGANIZATION: &str = include_str!("testdata/organization.json");
const ORGANIZATION_EMPTY: &str = include_str!("testdata/organization_empty.json");
const INSUFFICIENT_CREDITS: &str = include_str!("testdata/insufficient_credits.json");
const ERROR: &str = include_str!("testdata/error.json");

fn blank() -> Subject {
    Subject {
        lead_id: LeadId::new(),
        email: None,
        first_name: None,
        last_name: None,
        full_name: None,
        company_name: None,
        domain: None,
        linkedin_url: None,
        phone: None,
    }
}

fn by_email(email: &str) -> Subject {
    Subject {
        email: Some(email.into()),
        ..blank()
    }
}

fn by_linkedin(url: &str) -> Subject {
    Subject {
        linkedin_url: Some(url.into()),
        ..blank()
    }
}

fn by_name(first: &str, last: &str, company: &str, domain: &str) -> Subject {
    Subject {
        first_name: Some(first.into()),
        last_name: Some(last.into()),
        full_name: Some(format!("{first} {last}")),
        company_name: Some(company.into()),
        domain: Some(domain.into()),
        ..blank()
    }
}

fn by_domain(domain: &str) -> Subject {
    Subject {
        domain: Some(domain.into()),
        ..blank()
    }
}

fn three_people() -> Vec<Subject> {
    vec![
        by_email("tim@apollo.io"),
        by_linkedin("https://www.linkedin.com/in/nobody-known"),
        by_name("Jane", "Doe", "Acme", "acme.com"),
    ]
}

fn json_body(raw: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(raw.as_bytes().to_vec(), "application/json")
}

async fn apollo(server: &MockServer) -> Apollo {
    let base_url = Url::parse(&format!("{}/api/v1", server.uri())).unwrap();
    Apollo::new(Config { base_url })
}

async fn look_up(
    server: &MockServer,
    group: Group,
    subjects: &[Subject],
) -> Result<Vec<Answer>, ProviderError> {
    let http = reqwest::Client::new();
    let options = serde_json::Value::Null;
    let ctx = CallContext {
        http: &http,
        api_key: KEY,
        options: &options,
    };
    apollo(server).await.lookup(&ctx, group, subjects).await
}

/// A server answering every request with `response`.
async fn answering(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

async fn person_error(response: ResponseTemplate) -> ProviderError {
    let server = answering(response).await;
    look_up(&server, Group::Person, &[by_email("tim@apollo.io")])
        .await
        .unwrap_err()
}

async fn company_error(response: ResponseTemplate) -> ProviderError {
    let server = answering(response).await;
    look_up(&server, Group::Company, &[by_domain("apollo.io")])
        .await
        .unwrap_err()
}

// ---- request shape ------------------------------------------------------------------------

#[tokio::test]
async fn bulk_match_posts_only_the_keys_each_subject_has() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/people/bulk_match"))
        .and(header("x-api-key", KEY))
        .and(body_json(json!({
            "details": [
                {"email": "tim@apollo.io"},
                {"linkedin_url": "https://www.linkedin.com/in/nobody-known"},
                {"first_name": "Jane", "last_name": "Doe", "organization_name": "Acme", "domain": "acme.com"}
            ],
            "reveal_personal_emails": false
        })))
        .respond_with(json_body(BULK))
        .expect(1)
        .mount(&server)
        .await;
    let answers = look_up(&server, Group::Person, &three_people()).await.unwrap();
    assert_eq!(answers.len(), 3);
}

#[tokio::test]
async fn bulk_match_sends_a_full_name_only_without_first_and_last() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/people/bulk_match"))
        .and(body_json(json!({
            "details": [{"name": "Jane Doe", "domain": "acme.com"}],
            "reveal_personal_emails": false
        })))
        .respond_with(json_body(
            r#"{"status":"success","matches":[null],"credits_consumed":0}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let subject = Subject {
        full_name: Some("Jane Doe".into()),
        domain: Some("https://www.Acme.com/".into()),
        ..blank()
    };
    let answers = look_up(&server, Group::Person, &[subject]).await.unwrap();
    assert_eq!(answers, vec![Answer::NotFound { credits: 0 }]);
}

#[tokio::test]
async fn organization_enrich_gets_the_bare_domain() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/organizations/enrich"))
        .and(query_param("domain", "apollo.io"))
        .and(header("x-api-key", KEY))
        .respond_with(json_body(ORGANIZATION))
        .expect(1)
        .mount(&server)
        .await;
    let answers = look_up(
        &server,
        Group::Company,
        &[by_domain("https://www.Apollo.io/about")],
    )
    .await
    .unwrap();
    assert!(matches!(answers[..], [Answer::Found { .. }]));
}

#[tokio::test]
async fn the_api_key_is_never_sent_in_the_url() {
    let server = answering(json_body(ORGANIZATION)).await;
    look_up(&server, Group::Company, &[by_domain("apollo.io")])
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert!(!requests[0].url.as_str().contains(KEY));
    assert_eq!(requests[0].url.query(), Some("domain=apollo.io"));
}

// ---- person mapping -----------------------------------------------------------------------

#[tokio::test]
async fn bulk_match_maps_hits_and_misses_in_order() {
    let server = answering(json_body(BULK)).await;
    let answers = look_up(&server, Group::Person, &three_people()).await.unwrap();
    assert_eq!(
        answers,
        vec![
            Answer::Found {
                data: GroupData::Person(PersonData {
                    full_name: Some("Tim Zheng".into()),
                    title: Some("Founder & CEO".into()),
                    seniority: Some("founder".into()),
                    department: Some("c_suite".into()),
                    linkedin_handle: Some("tim-zheng-677ba010".into()),
                    twitter_handle: Some("meetapollo".into()),
                    location: Some("San Francisco, United States".into()),
                }),
                confidence: 0.8,
                credits: 1,
            },
            Answer::NotFound { credits: 0 },
            Answer::Found {
                data: GroupData::Person(PersonData {
                    // `name` is null: built from first and last name.
                    full_name: Some("Jane Doe".into()),
                    title: Some("VP Engineering".into()),
                    seniority: Some("vp".into()),
                    department: None,
                    linkedin_handle: Some("jane-doe".into()),
                    twitter_handle: None,
                    // No city: the state stands in.
                    location: Some("Berlin, Germany".into()),
                }),
                // email_status "extrapolated" is not verified.
                confidence: 0.6,
                credits: 1,
            },
        ]
    );
}

#[tokio::test]
async fn a_match_without_an_id_is_a_free_miss() {
    let body =
        json!({"status": "success", "matches": [{"id": null, "name": "Ghost"}, {}], "credits_consumed": 0});
    let server = answering(json_body(&body.to_string())).await;
    let answers = look_up(
        &server,
        Group::Person,
        &[by_email("a@x.com"), by_email("b@x.com")],
    )
    .await
    .unwrap();
    assert_eq!(
        answers,
        vec![Answer::NotFound { credits: 0 }, Answer::NotFound { credits: 0 }]
    );
}

#[tokio::test]
async fn each_match_costs_one_credit_even_when_apollo_reports_fewer() {
    let mut body: Value = serde_json::from_str(BULK).unwrap();
    body["credits_consumed"] = json!(1);
    let server = answering(json_body(&body.to_string())).await;
    let answers = look_up(&server, Group::Person, &three_people()).await.unwrap();
    let credits: Vec<u32> = answers
        .iter()
        .map(|a| match a {
            Answer::Found { credits, .. } | Answer::NotFound { credits } => *credits,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(credits, vec![1, 0, 1]);
}

#[tokio::test]
async fn a_match_that_is_not_a_person_fails_only_its_subject() {
    let body = json!({"status": "success", "matches": ["garbage", null], "credits_consumed": 0});
    let server = answering(json_body(&body.to_string())).await;
    let answers = look_up(
        &server,
        Group::Person,
        &[by_email("a@x.com"), by_email("b@x.com")],
    )
    .await
    .unwrap();
    assert!(
        matches!(answers[0], Answer::Failed(ProviderError::Malformed(_))),
        "{answers:?}"
    );
    assert_eq!(answers[1], Answer::NotFound { credits: 0 });
}

// ---- phone mapping ------------------------------------------------------------------------

#[tokio::test]
async fn phone_maps_sanitized_numbers_and_kinds_and_misses_without_numbers() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/people/bulk_match"))
        .respond_with(json_body(BULK))
        .expect(1)
        .mount(&server)
        .await;
    let answers = look_up(&server, Group::Phone, &three_people()).await.unwrap();
    assert_eq!(
        answers,
        vec![
            Answer::Found {
                data: GroupData::Phone(PhoneData {
                    numbers: vec![
                        PhoneNumber {
                            number: "+14155550100".into(),
                            kind: PhoneKind::Work,
                        },
                        PhoneNumber {
                            number: "+14155550199".into(),
                            kind: PhoneKind::Mobile,
                        },
                    ],
                }),
                confidence: 0.8,
                credits: 1,
            },
            Answer::NotFound { credits: 0 },
            // Jane matched, but Apollo revealed no phone: a free miss for this group.
            Answer::NotFound { credits: 0 },
        ]
    );
}

#[test]
fn phone_falls_back_to_the_raw_number_and_drops_unusable_ones() {
    let person: ApolloPerson = serde_json::from_value(json!({
        "id": "x",
        "phone_numbers": [
            {"raw_number": "+44 20 7946 0958", "sanitized_number": null, "type": null},
            {"raw_number": "555-0100", "sanitized_number": null, "type": "mobile"},
            {"raw_number": "+44 (0)20 7946 0958 ", "sanitized_number": "+442079460958", "type": "home"}
        ]
    }))
    .unwrap();
    assert_eq!(
        phone_data(&person).numbers,
        vec![PhoneNumber {
            number: "+442079460958".into(),
            kind: PhoneKind::Other,
        }]
    );
}

// ---- company mapping ----------------------------------------------------------------------

#[tokio::test]
async fn organization_maps_every_field() {
    let server = answering(json_body(ORGANIZATION)).await;
    let answers = look_up(&server, Group::Company, &[by_domain("apollo.io")])
        .await
        .unwrap();
    assert_eq!(
        answers,
        vec![Answer::Found {
            data: GroupData::Company(CompanyData {
                name: Some("Apollo.io".into()),
                domain: Some("apollo.io".into()),
                industry: Some("information technology & services".into()),
                employee_count: Some(1600),
                employee_range: Some("1001-5000".into()),
                annual_revenue: Some(100_000_000),
                founded_year: Some(2015),
                country: Some("US".into()),
                city: Some("San Francisco".into()),
                linkedin_url: Some("http://www.linkedin.com/company/apolloio".into()),
                technologies: vec![
                    "Cloudflare DNS".into(),
                    "Gmail".into(),
                    "Google Apps".into(),
                    "Salesforce".into()
                ],
            }),
            confidence: 0.7,
            credits: 1,
        }]
    );
}

#[tokio::test]
async fn organization_falls_back_to_website_and_current_technologies() {
    let mut body: Value = serde_json::from_str(ORGANIZATION).unwrap();
    let organization = body["organization"].as_object_mut().unwrap();
    organization.remove("primary_domain");
    organization.remove("technology_names");
    organization.insert("country".into(), json!("Atlantis"));
    organization.insert("estimated_num_employees".into(), json!(null));
    let server = answering(json_body(&body.to_string())).await;
    let answers = look_up(&server, Group::Company, &[by_domain("apollo.io")])
        .await
        .unwrap();
    let [
        Answer::Found {
            data: GroupData::Company(company),
            ..
        },
    ] = &answers[..]
    else {
        panic!("expected a hit: {answers:?}");
    };
    assert_eq!(company.domain.as_deref(), Some("apollo.io"));
    assert_eq!(
        company.technologies,
        vec!["Cloudflare DNS".to_owned(), "Gmail".to_owned()]
    );
    assert_eq!(company.country, None, "an unrecognised country is not a code");
    assert_eq!(
        (company.employee_count, company.employee_range.as_deref()),
        (None, None)
    );
}

#[tokio::test]
async fn organization_200_without_organization_is_a_free_miss() {
    for body in [
        ORGANIZATION_EMPTY,
        r#"{"organization":null}"#,
        r#"{"organization":{}}"#,
    ] {
        let server = answering(json_body(body)).await;
        let answers = look_up(&server, Group::Company, &[by_domain("apollo.io")])
            .await
            .unwrap();
        assert_eq!(answers, vec![Answer::NotFound { credits: 0 }], "{body}");
    }
}

#[tokio::test]
async fn organization_404_is_a_free_miss() {
    let server = answering(ResponseTemplate::new(404)).await;
    let answers = look_up(&server, Group::Company, &[by_domain("apollo.io")])
        .await
        .unwrap();
    assert_eq!(answers, vec![Answer::NotFound { credits: 0 }]);
}

#[test]
fn employee_ranges_follow_the_buckets() {
    let cases = [
        (1, "1-10"),
        (10, "1-10"),
        (11, "11-50"),
        (50, "11-50"),
        (51, "51-200"),
        (200, "51-200"),
        (201, "201-1000"),
        (1000, "201-1000"),
        (1001, "1001-5000"),
        (5000, "1001-5000"),
        (5001, "5001+"),
    ];
    for (count, range) in cases {
        assert_eq!(employee_range(count), range, "{count}");
    }
}

#[test]
fn numbers_are_read_from_integers_floats_and_strings() {
    assert_eq!(whole_number(&json!(42)), Some(42));
    assert_eq!(whole_number(&json!(1.0e8)), Some(100_000_000));
    assert_eq!(whole_number(&json!("2015")), Some(2015));
    assert_eq!(whole_number(&json!("n/a")), None);
    assert_eq!(whole_number(&json!(null)), None);
}

// ---- malformed replies --------------------------------------------------------------------

#[tokio::test]
async fn bulk_200_without_matches_is_malformed() {
    for body in [
        r#"{"status":"success","credits_consumed":0}"#,
        r#"{"matches":null}"#,
        r#"{"person":{"id":"x"}}"#,
    ] {
        let error = person_error(json_body(body)).await;
        assert!(matches!(error, ProviderError::Malformed(_)), "{body}: {error:?}");
    }
}

#[tokio::test]
async fn bulk_with_a_different_number_of_matches_is_malformed() {
    let body = json!({"status": "success", "matches": [null]});
    let server = answering(json_body(&body.to_string())).await;
    let error = look_up(&server, Group::Person, &three_people())
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Malformed(_)), "{error:?}");
}

#[tokio::test]
async fn invalid_json_is_malformed() {
    let error = person_error(json_body("{\"matches\": [")).await;
    assert!(matches!(error, ProviderError::Malformed(_)), "{error:?}");
    let error = company_error(json_body("<html>gateway</html>")).await;
    assert!(matches!(error, ProviderError::Malformed(_)), "{error:?}");
}

#[tokio::test]
async fn organization_body_that_is_not_an_object_is_malformed() {
    for body in ["[]", "\"ok\"", r#"{"organization":"apollo.io"}"#] {
        let error = company_error(json_body(body)).await;
        assert!(matches!(error, ProviderError::Malformed(_)), "{body}: {error:?}");
    }
}

// ---- error statuses -----------------------------------------------------------------------

#[tokio::test]
async fn unauthorized_on_401_and_on_403_for_both_endpoints() {
    for status in [401, 403] {
        let body = r#"{"error":"api/v1/people/bulk_match is not accessible with this api_key"}"#;
        let response = ResponseTemplate::new(status).set_body_raw(body, "application/json");
        assert_eq!(
            person_error(response.clone()).await,
            ProviderError::Unauthorized,
            "{status}"
        );
        assert_eq!(
            company_error(response).await,
            ProviderError::Unauthorized,
            "{status}"
        );
    }
}

#[tokio::test]
async fn quota_exhausted_on_402_and_on_an_insufficient_credits_body() {
    assert_eq!(
        person_error(ResponseTemplate::new(402)).await,
        ProviderError::QuotaExhausted
    );
    for status in [200, 403, 422] {
        let response = ResponseTemplate::new(status).set_body_raw(INSUFFICIENT_CREDITS, "application/json");
        assert_eq!(
            person_error(response.clone()).await,
            ProviderError::QuotaExhausted,
            "{status}"
        );
        assert_eq!(
            company_error(response).await,
            ProviderError::QuotaExhausted,
            "{status}"
        );
    }
}

#[tokio::test]
async fn rejected_on_422_with_apollo_message() {
    let response = ResponseTemplate::new(422).set_body_raw(ERROR, "application/json");
    assert_eq!(
        company_error(response).await,
        ProviderError::Rejected(
            "HTTP 422: Invalid domain: please provide a valid domain such as apollo.io".into()
        )
    );
    assert_eq!(
        person_error(ResponseTemplate::new(400)).await,
        ProviderError::Rejected("HTTP 400".into())
    );
}

#[tokio::test]
async fn a_200_carrying_an_error_is_rejected_not_a_miss() {
    let error = company_error(json_body(ERROR)).await;
    assert!(
        matches!(error, ProviderError::Rejected(ref m) if m.contains("Invalid domain")),
        "{error:?}"
    );
}

#[tokio::test]
async fn bulk_404_is_rejected_not_ten_misses() {
    assert_eq!(
        person_error(ResponseTemplate::new(404)).await,
        ProviderError::Rejected("HTTP 404".into())
    );
}

#[tokio::test]
async fn rate_limited_with_retry_after() {
    let response = ResponseTemplate::new(429).insert_header("Retry-After", "17");
    assert_eq!(
        person_error(response).await,
        ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(17))
        }
    );
}

#[tokio::test]
async fn rate_limited_without_retry_after_waits_for_the_spent_window() {
    let minute = ResponseTemplate::new(429)
        .insert_header("x-minute-requests-left", "0")
        .insert_header("x-hourly-requests-left", "120");
    assert_eq!(
        company_error(minute).await,
        ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(60))
        }
    );
    let hour = ResponseTemplate::new(429)
        .insert_header("x-minute-requests-left", "0")
        .insert_header("x-hourly-requests-left", "0");
    assert_eq!(
        company_error(hour).await,
        ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(3600))
        }
    );
    let unknown = ResponseTemplate::new(429).insert_header("x-minute-requests-left", "3");
    assert_eq!(
        company_error(unknown).await,
        ProviderError::RateLimited { retry_after: None }
    );
}

#[tokio::test]
async fn server_errors_are_transient() {
    for status in [500, 502, 503] {
        let error = person_error(ResponseTemplate::new(status)).await;
        assert!(
            matches!(error, ProviderError::Transient { .. }),
            "{status}: {error:?}"
        );
        assert!(error.is_transient());
    }
    let error = company_error(ResponseTemplate::new(503).insert_header("Retry-After", "5")).await;
    assert_eq!(error.retry_after(), Some(Duration::from_secs(5)));
}

#[tokio::test]
async fn the_api_key_never_appears_in_errors() {
    let echo = format!(r#"{{"error":"api key {KEY} is not allowed here"}}"#);
    let responses = vec![
        ResponseTemplate::new(401).set_body_raw(echo.clone(), "application/json"),
        ResponseTemplate::new(403).set_body_raw(echo.clone(), "application/json"),
        ResponseTemplate::new(422).set_body_raw(echo.clone(), "application/json"),
        ResponseTemplate::new(200).set_body_raw(echo.clone(), "application/json"),
        ResponseTemplate::new(429),
        ResponseTemplate::new(500).set_body_raw(echo.clone(), "application/json"),
        json_body(&format!(r#"{{"matches": "{KEY}"}}"#)),
        json_body(&format!(r#"{{"organization": "{KEY}"}}"#)),
        json_body(&format!("not json {KEY}")),
    ];
    for response in responses {
        // Every one of these fails a people call; the company call may read some as a miss.
        let error = person_error(response.clone()).await;
        assert!(!format!("{error:?}").contains(KEY), "{error:?}");
        assert!(!error.to_string().contains(KEY), "{error}");
        let server = answering(response).await;
        let result = look_up(&server, Group::Company, &[by_domain("apollo.io")]).await;
        assert!(!format!("{result:?}").contains(KEY), "{result:?}");
        if let Err(error) = result {
            assert!(!error.to_string().contains(KEY), "{error}");
        }
    }
    // A match echoing the key fails its subject with a message that does not carry it.
    let body = json!({"matches": [KEY]});
    let server = answering(json_body(&body.to_string())).await;
    let answers = look_up(&server, Group::Person, &[by_email("a@x.com")])
        .await
        .unwrap();
    assert!(matches!(answers[0], Answer::Failed(_)));
    assert!(!format!("{answers:?}").contains(KEY), "{answers:?}");
}

#[tokio::test]
async fn connection_failure_is_transient() {
    // A port the OS handed out and that nobody listens on any more (wiremock pools dropped
    // servers, so a dropped MockServer would still answer).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let base_url = Url::parse(&format!("http://127.0.0.1:{port}/api/v1")).unwrap();
    let apollo = Apollo::new(Config { base_url });
    let http = reqwest::Client::new();
    let options = serde_json::Value::Null;
    let ctx = CallContext {
        http: &http,
        api_key: KEY,
        options: &options,
    };
    let error = apollo
        .lookup(&ctx, Group::Company, &[by_domain("apollo.io")])
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Transient { .. }), "{error:?}");
    assert!(!format!("{error:?}").contains(KEY));
}

// ---- capabilities -------------------------------------------------------------------------

#[test]
fn groups_batches_and_prices() {
    let apollo = Apollo::new(Config::default());
    assert_eq!(apollo.kind(), ProviderKind::Apollo);
    assert_eq!(apollo.groups(), &[Group::Person, Group::Company, Group::Phone]);
    assert_eq!(apollo.batch_size(Group::Person), 10);
    assert_eq!(apollo.batch_size(Group::Phone), 10);
    assert_eq!(apollo.batch_size(Group::Company), 1);
    for group in apollo.groups() {
        assert_eq!(apollo.credits_per_hit(*group), 1);
    }
    assert_eq!(
        Config::default().base_url.as_str(),
        "https://api.apollo.io/api/v1"
    );
}

#[test]
fn people_need_an_email_a_linkedin_url_or_a_name_at_a_company() {
    let apollo = Apollo::new(Config::default());
    let named = |company: Option<&str>, domain: Option<&str>| Subject {
        first_name: Some("Jane".into()),
        last_name: Some("Doe".into()),
        company_name: company.map(Into::into),
        domain: domain.map(Into::into),
        ..blank()
    };
    for group in [Group::Person, Group::Phone] {
        assert!(apollo.can_look_up(group, &by_email("jane@acme.com")));
        assert!(apollo.can_look_up(group, &by_linkedin("https://www.linkedin.com/in/jane-doe")));
        assert!(apollo.can_look_up(group, &named(None, Some("acme.com"))));
        assert!(apollo.can_look_up(group, &named(Some("Acme"), None)));
        let full_name_only = Subject {
            full_name: Some("Jane Doe".into()),
            company_name: Some("Acme".into()),
            ..blank()
        };
        assert!(apollo.can_look_up(group, &full_name_only));
        assert!(!apollo.can_look_up(group, &named(None, None)));
        let first_name_only = Subject {
            first_name: Some("Jane".into()),
            domain: Some("acme.com".into()),
            ..blank()
        };
        assert!(!apollo.can_look_up(group, &first_name_only));
        assert!(!apollo.can_look_up(group, &by_domain("acme.com")));
        assert!(!apollo.can_look_up(group, &by_email("  ")));
    }
}

#[test]
fn companies_need_a_domain() {
    let apollo = Apollo::new(Config::default());
    assert!(apollo.can_look_up(Group::Company, &by_domain("https://www.acme.com")));
    assert!(!apollo.can_look_up(Group::Company, &by_email("jane@acme.com")));
    let by_company = Subject {
        company_name: Some("Acme".into()),
        ..blank()
    };
    assert!(!apollo.can_look_up(Group::Company, &by_company));
    assert!(!apollo.can_look_up(Group::EmailVerification, &by_email("jane@acme.com")));
}
