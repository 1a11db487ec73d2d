use super::*;
use crate::domain::LeadId;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "test-key-1234";
const FULL: &str = include_str!("testdata/combined_full.json");
const PERSON_NULL: &str = include_str!("testdata/combined_person_null.json");
const PERSON_PARTIAL: &str = include_str!("testdata/combined_person_partial.json");
const QUEUED: &str = include_str!("testdata/queued_202.json");
const NOT_FOUND: &str = include_str!("testdata/not_found_404.json");
const INVALID: &str = include_str!("testdata/invalid_422.json");

fn subject(email: Option<&str>) -> Subject {
    Subject {
        lead_id: LeadId::new(),
        email: email.map(Into::into),
        first_name: Some("Jane".into()),
        last_name: Some("Doe".into()),
        full_name: Some("Jane Doe".into()),
        company_name: Some("Acme".into()),
        domain: Some("acme.com".into()),
        linkedin_url: None,
        phone: None,
    }
}

fn clearbit_at(server: &MockServer) -> Clearbit {
    Clearbit::new(Config {
        base_url: Url::parse(&format!("{}/v2", server.uri())).unwrap(),
    })
}

fn json(status: u16, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

/// A fake Clearbit answering every Combined Find with `template`.
async fn clearbit_replying(template: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/combined/find"))
        .respond_with(template)
        .mount(&server)
        .await;
    server
}

async fn lookup_all(
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
    clearbit_at(server).lookup(&ctx, group, subjects).await
}

/// The single answer for `jane@acme.com`, or the call's error.
async fn lookup(server: &MockServer, group: Group) -> Result<Answer, ProviderError> {
    let answers = lookup_all(server, group, &[subject(Some("jane@acme.com"))]).await?;
    assert_eq!(answers.len(), 1, "one answer per subject");
    Ok(answers.into_iter().next().unwrap())
}

async fn error_for(template: ResponseTemplate) -> ProviderError {
    let server = clearbit_replying(template).await;
    lookup(&server, Group::Person)
        .await
        .expect_err("the call should fail")
}

fn person_of(answer: Answer) -> (PersonData, f64, u32) {
    match answer {
        Answer::Found {
            data: GroupData::Person(p),
            confidence,
            credits,
        } => (p, confidence, credits),
        other => panic!("expected a person hit, got {other:?}"),
    }
}

fn company_of(answer: Answer) -> (CompanyData, f64, u32) {
    match answer {
        Answer::Found {
            data: GroupData::Company(c),
            confidence,
            credits,
        } => (c, confidence, credits),
        other => panic!("expected a company hit, got {other:?}"),
    }
}

#[tokio::test]
async fn sends_the_email_to_combined_find_with_a_bearer_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/combined/find"))
        .and(query_param("email", "jane@acme.com"))
        .and(header("authorization", "Bearer test-key-1234"))
        .respond_with(json(200, FULL))
        .expect(1)
        .mount(&server)
        .await;
    let answer = lookup(&server, Group::Person).await.unwrap();
    assert!(matches!(answer, Answer::Found { .. }));
}

#[tokio::test]
async fn a_base_url_with_a_trailing_slash_keeps_its_path() {
    let server = MockServer::start().await;
    Mock::given(path("/v2/combined/find"))
        .respond_with(json(200, FULL))
        .expect(1)
        .mount(&server)
        .await;
    let clearbit = Clearbit::new(Config {
        base_url: Url::parse(&format!("{}/v2/", server.uri())).unwrap(),
    });
    let http = reqwest::Client::new();
    let options = serde_json::Value::Null;
    let ctx = CallContext {
        http: &http,
        api_key: KEY,
        options: &options,
    };
    let answers = clearbit
        .lookup(&ctx, Group::Company, &[subject(Some("jane@acme.com"))])
        .await
        .unwrap();
    assert!(matches!(answers[..], [Answer::Found { .. }]));
}

#[tokio::test]
async fn a_full_hit_maps_every_person_field() {
    let server = clearbit_replying(json(200, FULL)).await;
    let (person, confidence, credits) = person_of(lookup(&server, Group::Person).await.unwrap());
    assert_eq!(
        person,
        PersonData {
            full_name: Some("Jane Doe".into()),
            title: Some("VP of Engineering".into()),
            seniority: Some("executive".into()),
            department: Some("engineering".into()),
            linkedin_handle: Some("jane-doe".into()),
            twitter_handle: Some("janedoe".into()),
            location: Some("San Francisco, CA, US".into()),
        }
    );
    assert_eq!(confidence, 0.75);
    assert_eq!(credits, 1);
}

#[tokio::test]
async fn a_full_hit_maps_every_company_field() {
    let server = clearbit_replying(json(200, FULL)).await;
    let (company, confidence, credits) = company_of(lookup(&server, Group::Company).await.unwrap());
    assert_eq!(
        company,
        CompanyData {
            name: Some("Acme".into()),
            domain: Some("acme.com".into()),
            industry: Some("Internet Software & Services".into()),
            employee_count: Some(420),
            employee_range: Some("251-1K".into()),
            annual_revenue: Some(95_000_000),
            founded_year: Some(2008),
            country: Some("US".into()),
            city: Some("San Francisco".into()),
            linkedin_url: Some("https://www.linkedin.com/company/acme".into()),
            technologies: vec![
                "google_analytics".into(),
                "salesforce".into(),
                "hubspot".into(),
                "aws_route_53".into()
            ],
        }
    );
    assert_eq!(confidence, 0.75);
    assert_eq!(credits, 1);
}

#[tokio::test]
async fn a_null_person_is_a_free_miss_for_the_person_group() {
    let server = clearbit_replying(json(200, PERSON_NULL)).await;
    assert_eq!(
        lookup(&server, Group::Person).await.unwrap(),
        Answer::NotFound { credits: 0 }
    );
}

#[tokio::test]
async fn company_falls_back_to_sector_and_country_name() {
    let server = clearbit_replying(json(200, PERSON_NULL)).await;
    let (company, _, credits) = company_of(lookup(&server, Group::Company).await.unwrap());
    assert_eq!(
        company,
        CompanyData {
            name: Some("Globex".into()),
            domain: Some("globex.de".into()),
            industry: Some("Industrials".into()),
            employee_count: Some(35),
            employee_range: Some("11-50".into()),
            annual_revenue: None,
            founded_year: None,
            country: Some("DE".into()),
            city: Some("Berlin".into()),
            linkedin_url: Some("https://www.linkedin.com/company/globex-gmbh".into()),
            technologies: vec![],
        }
    );
    assert_eq!(credits, 1);
}

#[tokio::test]
async fn person_falls_back_to_given_and_family_name_and_geo() {
    let server = clearbit_replying(json(200, PERSON_PARTIAL)).await;
    let (person, _, _) = person_of(lookup(&server, Group::Person).await.unwrap());
    assert_eq!(
        person,
        PersonData {
            full_name: Some("Max Mustermann".into()),
            title: Some("Account Executive".into()),
            seniority: None,
            department: Some("sales".into()),
            linkedin_handle: None,
            twitter_handle: Some("maxm".into()),
            location: Some("Berlin, Germany".into()),
        }
    );
}

#[tokio::test]
async fn a_null_company_is_a_free_miss_for_the_company_group() {
    let server = clearbit_replying(json(200, PERSON_PARTIAL)).await;
    assert_eq!(
        lookup(&server, Group::Company).await.unwrap(),
        Answer::NotFound { credits: 0 }
    );
}

#[tokio::test]
async fn an_absent_half_or_an_empty_record_is_a_free_miss() {
    let server = clearbit_replying(json(200, r#"{"person":{"id":"x","name":{},"geo":{}}}"#)).await;
    assert_eq!(
        lookup(&server, Group::Person).await.unwrap(),
        Answer::NotFound { credits: 0 }
    );
    assert_eq!(
        lookup(&server, Group::Company).await.unwrap(),
        Answer::NotFound { credits: 0 }
    );
}

#[tokio::test]
async fn queued_202_is_pending_for_ten_seconds_by_default() {
    let server = clearbit_replying(json(202, QUEUED)).await;
    assert_eq!(
        lookup(&server, Group::Person).await.unwrap(),
        Answer::Pending {
            retry_after: Some(Duration::from_secs(10))
        }
    );
}

#[tokio::test]
async fn queued_202_with_an_empty_body_honours_retry_after() {
    let server = clearbit_replying(ResponseTemplate::new(202).insert_header("Retry-After", "30")).await;
    assert_eq!(
        lookup(&server, Group::Company).await.unwrap(),
        Answer::Pending {
            retry_after: Some(Duration::from_secs(30))
        }
    );
}

#[tokio::test]
async fn not_found_404_is_a_free_miss_for_both_groups() {
    let server = clearbit_replying(json(404, NOT_FOUND)).await;
    assert_eq!(
        lookup(&server, Group::Person).await.unwrap(),
        Answer::NotFound { credits: 0 }
    );
    assert_eq!(
        lookup(&server, Group::Company).await.unwrap(),
        Answer::NotFound { credits: 0 }
    );
}

#[tokio::test]
async fn status_451_is_legally_suppressed() {
    let server = clearbit_replying(ResponseTemplate::new(451)).await;
    assert_eq!(
        lookup(&server, Group::Person).await.unwrap(),
        Answer::LegalSuppressed
    );
}

#[tokio::test]
async fn status_401_is_unauthorized() {
    let body = r#"{"error":{"type":"auth_required","message":"API key is invalid"}}"#;
    assert_eq!(error_for(json(401, body)).await, ProviderError::Unauthorized);
}

#[tokio::test]
async fn status_402_is_quota_exhausted() {
    assert_eq!(
        error_for(ResponseTemplate::new(402)).await,
        ProviderError::QuotaExhausted
    );
}

#[tokio::test]
async fn status_403_is_rejected() {
    let body = r#"{"error":{"type":"forbidden","message":"Your plan does not include this API"}}"#;
    assert_eq!(
        error_for(json(403, body)).await,
        ProviderError::Rejected("HTTP 403 forbidden: Your plan does not include this API".into())
    );
}

#[tokio::test]
async fn status_422_is_rejected_with_clearbits_message() {
    assert_eq!(
        error_for(json(422, INVALID)).await,
        ProviderError::Rejected("HTTP 422 email_invalid: Invalid email address: not-an-email".into())
    );
}

#[tokio::test]
async fn status_422_without_a_readable_body_still_says_the_status() {
    assert_eq!(
        error_for(ResponseTemplate::new(422)).await,
        ProviderError::Rejected("HTTP 422".into())
    );
}

#[tokio::test]
async fn status_429_honours_retry_after() {
    let template = ResponseTemplate::new(429)
        .insert_header("Retry-After", "12")
        .insert_header("X-RateLimit-Reset", "40");
    assert_eq!(
        error_for(template).await,
        ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(12))
        }
    );
}

#[tokio::test]
async fn status_429_without_retry_after_waits_for_the_rate_limit_reset() {
    let template = ResponseTemplate::new(429)
        .insert_header("X-RateLimit-Limit", "600")
        .insert_header("X-RateLimit-Remaining", "0")
        .insert_header("X-RateLimit-Reset", "40");
    assert_eq!(
        error_for(template).await,
        ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(40))
        }
    );
}

#[tokio::test]
async fn status_429_reads_a_unix_time_reset_as_a_moment() {
    let reset = chrono::Utc::now().timestamp() + 3;
    let template = ResponseTemplate::new(429).insert_header("X-RateLimit-Reset", reset.to_string().as_str());
    let ProviderError::RateLimited {
        retry_after: Some(wait),
    } = error_for(template).await
    else {
        panic!("expected a rate limit with a wait");
    };
    assert!(wait <= Duration::from_secs(3), "{wait:?}");
}

#[tokio::test]
async fn status_429_without_any_header_has_no_wait() {
    assert_eq!(
        error_for(ResponseTemplate::new(429)).await,
        ProviderError::RateLimited { retry_after: None }
    );
}

#[tokio::test]
async fn server_errors_are_transient() {
    for status in [500, 502, 503] {
        let error = error_for(ResponseTemplate::new(status)).await;
        assert_eq!(
            error,
            ProviderError::Transient {
                message: format!("HTTP {status}"),
                retry_after: None
            }
        );
        assert!(error.is_transient());
    }
}

#[tokio::test]
async fn malformed_json_is_malformed() {
    let error = error_for(json(200, r#"{"person": {"name": "#)).await;
    assert!(matches!(error, ProviderError::Malformed(_)), "{error:?}");
}

#[tokio::test]
async fn a_200_without_the_wrapper_is_malformed_not_a_miss() {
    for body in [r#"{"data":{"fullName":"Jane Doe"}}"#, "[]", "null", ""] {
        let error = error_for(json(200, body)).await;
        assert!(matches!(error, ProviderError::Malformed(_)), "{body}: {error:?}");
    }
}

#[tokio::test]
async fn a_wrongly_typed_record_is_malformed() {
    let error = error_for(json(200, r#"{"person":"Jane Doe","company":null}"#)).await;
    assert!(matches!(error, ProviderError::Malformed(_)), "{error:?}");
}

#[tokio::test]
async fn an_undocumented_2xx_is_malformed() {
    let error = error_for(ResponseTemplate::new(204)).await;
    assert!(matches!(error, ProviderError::Malformed(_)), "{error:?}");
}

#[tokio::test]
async fn the_key_never_appears_in_errors() {
    let echoing = format!(r#"{{"error":{{"type":"email_invalid","message":"bad request for key {KEY}"}}}}"#);
    let templates = [
        json(401, NOT_FOUND),
        ResponseTemplate::new(402),
        json(403, NOT_FOUND),
        json(422, &echoing),
        ResponseTemplate::new(429),
        ResponseTemplate::new(500),
        json(200, &format!("{{\"oops\":\"{KEY}\"}}")),
        json(200, "not json"),
    ];
    for template in templates {
        let error = error_for(template).await;
        for shown in [format!("{error:?}"), error.to_string()] {
            assert!(!shown.contains(KEY), "{shown}");
        }
    }
}

#[tokio::test]
async fn an_unreachable_clearbit_is_transient_and_keyless() {
    // A port that was free a moment ago: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let clearbit = Clearbit::new(Config {
        base_url: Url::parse(&format!("http://127.0.0.1:{port}/v2")).unwrap(),
    });
    let http = reqwest::Client::new();
    let options = serde_json::Value::Null;
    let ctx = CallContext {
        http: &http,
        api_key: KEY,
        options: &options,
    };
    let error = clearbit
        .lookup(&ctx, Group::Person, &[subject(Some("jane@acme.com"))])
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert!(!format!("{error:?} {error}").contains(KEY));
}

#[tokio::test]
async fn a_subject_without_an_email_is_not_sent() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(json(200, FULL))
        .expect(0)
        .mount(&server)
        .await;
    let answers = lookup_all(&server, Group::Person, &[subject(None)])
        .await
        .unwrap();
    assert!(
        matches!(answers[..], [Answer::Failed(ProviderError::Rejected(_))]),
        "{answers:?}"
    );
}

#[tokio::test]
async fn several_subjects_get_one_answer_each_in_order() {
    let server = MockServer::start().await;
    Mock::given(query_param("email", "jane@acme.com"))
        .respond_with(json(200, FULL))
        .mount(&server)
        .await;
    Mock::given(query_param("email", "nobody@acme.com"))
        .respond_with(json(404, NOT_FOUND))
        .mount(&server)
        .await;
    let subjects = [subject(Some("nobody@acme.com")), subject(Some("jane@acme.com"))];
    let answers = lookup_all(&server, Group::Company, &subjects).await.unwrap();
    assert!(
        matches!(
            answers[..],
            [Answer::NotFound { credits: 0 }, Answer::Found { credits: 1, .. }]
        ),
        "{answers:?}"
    );
}

#[tokio::test]
async fn other_groups_are_refused_without_a_call() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(json(200, FULL))
        .expect(0)
        .mount(&server)
        .await;
    let result = lookup_all(&server, Group::Phone, &[subject(Some("jane@acme.com"))]).await;
    assert!(matches!(result, Err(ProviderError::Rejected(_))), "{result:?}");
}

#[test]
fn looks_up_person_and_company_by_email_only() {
    let clearbit = Clearbit::new(Config::default());
    assert_eq!(clearbit.kind(), ProviderKind::Clearbit);
    assert_eq!(clearbit.groups(), &[Group::Person, Group::Company]);
    for group in [Group::Person, Group::Company] {
        assert_eq!(clearbit.batch_size(group), 1);
        assert_eq!(clearbit.credits_per_hit(group), 1);
        assert!(clearbit.can_look_up(group, &subject(Some("jane@acme.com"))));
        assert!(!clearbit.can_look_up(group, &subject(None)));
        assert!(!clearbit.can_look_up(group, &subject(Some("  "))));
    }
    assert!(!clearbit.can_look_up(Group::EmailVerification, &subject(Some("jane@acme.com"))));
    assert!(!clearbit.can_look_up(Group::Phone, &subject(Some("jane@acme.com"))));
}

#[test]
fn the_default_base_url_is_clearbits() {
    assert_eq!(
        Config::default().base_url.as_str(),
        "https://person.clearbit.com/v2"
    );
}

#[test]
fn company_linkedin_handles_become_urls() {
    assert_eq!(
        company_linkedin_url("company/acme"),
        "https://www.linkedin.com/company/acme"
    );
    assert_eq!(
        company_linkedin_url("acme"),
        "https://www.linkedin.com/company/acme"
    );
    assert_eq!(
        company_linkedin_url("/company/acme/"),
        "https://www.linkedin.com/company/acme"
    );
    assert_eq!(
        company_linkedin_url("https://www.linkedin.com/company/acme"),
        "https://www.linkedin.com/company/acme"
    );
}
