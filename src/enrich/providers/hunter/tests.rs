use super::*;
use crate::domain::LeadId;
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "test-key-1234";
const FINDER_HIT: &str = include_str!("testdata/finder_hit.json");
const FINDER_NO_EMAIL: &str = include_str!("testdata/finder_no_email.json");
const VERIFIER_HIT: &str = include_str!("testdata/verifier_hit.json");
const VERIFIER_LEGACY_RISKY: &str = include_str!("testdata/verifier_legacy_risky.json");
const VERIFIER_PENDING: &str = include_str!("testdata/verifier_pending.json");
const ERROR_WRONG_PARAMS: &str = include_str!("testdata/error_wrong_params.json");

fn blank_subject() -> Subject {
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

fn with_email(email: &str) -> Subject {
    Subject {
        email: Some(email.into()),
        domain: email.split('@').nth(1).map(Into::into),
        ..blank_subject()
    }
}

fn with_name(first: &str, last: &str, domain: &str) -> Subject {
    Subject {
        first_name: Some(first.into()),
        last_name: Some(last.into()),
        full_name: Some(format!("{first} {last}")),
        domain: Some(domain.into()),
        ..blank_subject()
    }
}

fn hunter_at(server: &MockServer) -> Hunter {
    let base_url = Url::parse(&format!("{}/v2", server.uri())).expect("mock server URL");
    Hunter::new(Config { base_url })
}

fn json(status: u16, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

async fn call(hunter: &Hunter, group: Group, subjects: &[Subject]) -> Result<Vec<Answer>, ProviderError> {
    let http = reqwest::Client::new();
    let options = serde_json::Value::Null;
    let ctx = CallContext {
        http: &http,
        api_key: KEY,
        options: &options,
    };
    hunter.lookup(&ctx, group, subjects).await
}

/// Verifies `subject` against a server answering `reply` once, and returns the single answer.
async fn verify(reply: ResponseTemplate) -> Result<Answer, ProviderError> {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/email-verifier"))
        .and(query_param("api_key", KEY))
        .respond_with(reply)
        .expect(1)
        .mount(&server)
        .await;
    let answers = call(
        &hunter_at(&server),
        Group::EmailVerification,
        &[with_email("alexis@reddit.com")],
    )
    .await?;
    assert_eq!(answers.len(), 1);
    Ok(answers.into_iter().next().expect("one answer"))
}

/// Looks a person up against a server answering `reply` once, and returns the single answer.
async fn find(reply: ResponseTemplate) -> Result<Answer, ProviderError> {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/email-finder"))
        .and(query_param("api_key", KEY))
        .respond_with(reply)
        .expect(1)
        .mount(&server)
        .await;
    let answers = call(
        &hunter_at(&server),
        Group::Person,
        &[with_name("Alexis", "Ohanian", "reddit.com")],
    )
    .await?;
    assert_eq!(answers.len(), 1);
    Ok(answers.into_iter().next().expect("one answer"))
}

// --- request shape and full hits ---

#[tokio::test]
async fn finder_sends_bare_domain_names_and_key_and_maps_every_field() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/email-finder"))
        .and(query_param("domain", "reddit.com"))
        .and(query_param("first_name", "Alexis"))
        .and(query_param("last_name", "Ohanian"))
        .and(query_param("api_key", KEY))
        .and(query_param_is_missing("full_name"))
        .respond_with(json(200, FINDER_HIT))
        .expect(1)
        .mount(&server)
        .await;
    let subject = with_name("Alexis", "Ohanian", "https://www.Reddit.com/about");

    let answers = call(&hunter_at(&server), Group::Person, &[subject])
        .await
        .expect("a hit");

    let expected = PersonData {
        full_name: Some("Alexis Ohanian".into()),
        title: Some("Cofounder".into()),
        seniority: None,
        department: None,
        linkedin_handle: Some("alexisohanian".into()),
        twitter_handle: Some("alexisohanian".into()),
        location: None,
    };
    assert_eq!(
        answers,
        vec![Answer::Found {
            data: GroupData::Person(expected),
            confidence: 0.97,
            credits: 1,
        }]
    );
}

#[tokio::test]
async fn finder_sends_the_full_name_when_first_or_last_is_unknown() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/email-finder"))
        .and(query_param("domain", "reddit.com"))
        .and(query_param("full_name", "Alexis Ohanian"))
        .and(query_param_is_missing("first_name"))
        .and(query_param_is_missing("last_name"))
        .and(query_param("api_key", KEY))
        .respond_with(json(200, FINDER_HIT))
        .expect(1)
        .mount(&server)
        .await;
    let subject = Subject {
        full_name: Some("Alexis Ohanian".into()),
        first_name: Some("Alexis".into()),
        domain: Some("reddit.com".into()),
        ..blank_subject()
    };

    let answers = call(&hunter_at(&server), Group::Person, &[subject])
        .await
        .expect("a hit");

    assert!(matches!(answers.as_slice(), [Answer::Found { credits: 1, .. }]));
}

#[tokio::test]
async fn verifier_sends_email_and_key_and_maps_status_and_score() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/email-verifier"))
        .and(query_param("email", "alexis@reddit.com"))
        .and(query_param("api_key", KEY))
        .respond_with(json(200, VERIFIER_HIT))
        .expect(1)
        .mount(&server)
        .await;

    let answers = call(
        &hunter_at(&server),
        Group::EmailVerification,
        &[with_email("alexis@reddit.com")],
    )
    .await
    .expect("a hit");

    assert_eq!(
        answers,
        vec![Answer::Found {
            data: GroupData::EmailVerification(EmailVerificationData {
                status: Some(EmailStatus::Valid),
                score: Some(91),
            }),
            confidence: 0.91,
            credits: 1,
        }]
    );
}

#[tokio::test]
async fn verifier_falls_back_to_the_deprecated_result() {
    let answer = verify(json(200, VERIFIER_LEGACY_RISKY)).await.expect("a hit");

    let Answer::Found {
        data: GroupData::EmailVerification(v),
        confidence,
        credits,
    } = answer
    else {
        panic!("expected a hit, got {answer:?}");
    };
    assert_eq!(v.status, Some(EmailStatus::AcceptAll));
    assert_eq!(v.score, Some(68));
    assert!((confidence - 0.68).abs() < 1e-9);
    assert_eq!(credits, 1);
}

#[test]
fn risky_is_accept_all_only_when_the_domain_accepts_all() {
    let legacy = |result: &str, accept_all: Option<bool>| Verification {
        result: Some(result.into()),
        accept_all,
        ..Verification::default()
    };
    assert_eq!(
        legacy("risky", Some(true)).email_status(),
        Some(EmailStatus::AcceptAll)
    );
    assert_eq!(
        legacy("risky", Some(false)).email_status(),
        Some(EmailStatus::Unknown)
    );
    assert_eq!(legacy("risky", None).email_status(), Some(EmailStatus::Unknown));
    assert_eq!(
        legacy("deliverable", None).email_status(),
        Some(EmailStatus::Valid)
    );
    assert_eq!(
        legacy("undeliverable", None).email_status(),
        Some(EmailStatus::Invalid)
    );
    assert_eq!(legacy("unknown", None).email_status(), Some(EmailStatus::Unknown));
    // `status` wins over `result` when both are sent.
    let both = Verification {
        status: Some("webmail".into()),
        ..legacy("deliverable", None)
    };
    assert_eq!(both.email_status(), Some(EmailStatus::Webmail));
}

#[tokio::test]
async fn verifier_without_a_score_has_middling_confidence() {
    let body = r#"{"data":{"status":"disposable","email":"x@mailinator.com"},"meta":{"params":{}}}"#;

    let answer = verify(json(200, body)).await.expect("a hit");

    assert_eq!(
        answer,
        Answer::Found {
            data: GroupData::EmailVerification(EmailVerificationData {
                status: Some(EmailStatus::Disposable),
                score: None,
            }),
            confidence: 0.5,
            credits: 1,
        }
    );
}

// --- misses and pending ---

#[tokio::test]
async fn finder_200_without_an_email_is_a_free_miss() {
    assert_eq!(
        find(json(200, FINDER_NO_EMAIL)).await,
        Ok(Answer::NotFound { credits: 0 })
    );
}

#[tokio::test]
async fn finder_200_with_the_email_absent_or_blank_or_null_data_is_a_free_miss() {
    for body in [
        r#"{"data":{"first_name":"Alexis","last_name":"Ohanian","score":0},"meta":{}}"#,
        r#"{"data":{"email":"  "},"meta":{}}"#,
        r#"{"data":null,"meta":{}}"#,
    ] {
        assert_eq!(
            find(json(200, body)).await,
            Ok(Answer::NotFound { credits: 0 }),
            "{body}"
        );
    }
}

#[tokio::test]
async fn finder_404_is_a_free_miss() {
    assert_eq!(
        find(ResponseTemplate::new(404)).await,
        Ok(Answer::NotFound { credits: 0 })
    );
}

#[tokio::test]
async fn verifier_202_is_pending_for_five_seconds_by_default() {
    let answer = verify(json(202, VERIFIER_PENDING)).await;

    assert_eq!(
        answer,
        Ok(Answer::Pending {
            retry_after: Some(Duration::from_secs(5)),
        })
    );
}

#[tokio::test]
async fn verifier_202_honours_retry_after() {
    let answer = verify(json(202, VERIFIER_PENDING).insert_header("Retry-After", "12")).await;

    assert_eq!(
        answer,
        Ok(Answer::Pending {
            retry_after: Some(Duration::from_secs(12)),
        })
    );
}

#[tokio::test]
async fn status_451_is_legally_suppressed() {
    assert_eq!(
        find(ResponseTemplate::new(451)).await,
        Ok(Answer::LegalSuppressed)
    );
}

// --- Hunter's error statuses ---

#[tokio::test]
async fn status_403_means_slow_down_for_a_second_by_default() {
    assert_eq!(
        verify(ResponseTemplate::new(403)).await,
        Err(ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(1)),
        })
    );
}

#[tokio::test]
async fn status_403_honours_retry_after() {
    assert_eq!(
        find(ResponseTemplate::new(403).insert_header("Retry-After", "3")).await,
        Err(ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
        })
    );
}

#[tokio::test]
async fn status_429_means_credits_exhausted_with_or_without_retry_after() {
    assert_eq!(
        verify(ResponseTemplate::new(429)).await,
        Err(ProviderError::QuotaExhausted)
    );
    assert_eq!(
        find(ResponseTemplate::new(429).insert_header("Retry-After", "60")).await,
        Err(ProviderError::QuotaExhausted)
    );
}

#[tokio::test]
async fn status_401_is_unauthorized() {
    assert_eq!(
        find(ResponseTemplate::new(401)).await,
        Err(ProviderError::Unauthorized)
    );
}

#[tokio::test]
async fn status_402_is_quota_exhausted() {
    assert_eq!(
        verify(ResponseTemplate::new(402)).await,
        Err(ProviderError::QuotaExhausted)
    );
}

#[tokio::test]
async fn status_400_and_422_are_rejected_with_hunters_details() {
    for status in [400, 422] {
        let error = find(json(status, ERROR_WRONG_PARAMS))
            .await
            .expect_err("rejected");
        assert_eq!(
            error,
            ProviderError::Rejected(format!(
                "HTTP {status}: You are missing the domain or company parameter (wrong_params)"
            ))
        );
    }
}

#[tokio::test]
async fn rejection_without_a_readable_body_names_the_status() {
    assert_eq!(
        verify(ResponseTemplate::new(400).set_body_string("<html>Bad Request</html>")).await,
        Err(ProviderError::Rejected("HTTP 400".into()))
    );
}

#[tokio::test]
async fn server_errors_are_transient() {
    assert_eq!(
        verify(ResponseTemplate::new(500)).await,
        Err(ProviderError::Transient {
            message: "HTTP 500".into(),
            retry_after: None,
        })
    );
    assert_eq!(
        find(ResponseTemplate::new(503).insert_header("Retry-After", "30")).await,
        Err(ProviderError::Transient {
            message: "HTTP 503".into(),
            retry_after: Some(Duration::from_secs(30)),
        })
    );
}

#[tokio::test]
async fn an_unreachable_server_is_transient() {
    // A port that was free a moment ago and that nothing listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let base_url = Url::parse(&format!("http://127.0.0.1:{port}/v2")).expect("URL");
    let hunter = Hunter::new(Config { base_url });

    let error = call(&hunter, Group::EmailVerification, &[with_email("a@b.com")])
        .await
        .expect_err("no server");

    assert!(error.is_transient(), "{error:?}");
    assert!(!format!("{error:?} {error}").contains(KEY));
}

// --- malformed replies ---

#[tokio::test]
async fn malformed_json_is_malformed() {
    let broken = ResponseTemplate::new(200).set_body_string("{\"data\": {\"email\": ");
    assert!(matches!(
        find(broken.clone()).await,
        Err(ProviderError::Malformed(_))
    ));
    assert!(matches!(verify(broken).await, Err(ProviderError::Malformed(_))));
}

#[tokio::test]
async fn a_200_without_the_data_wrapper_is_malformed() {
    let unwrapped = json(
        200,
        r#"{"email":"alexis@reddit.com","status":"valid","score":91}"#,
    );
    assert!(matches!(
        find(unwrapped.clone()).await,
        Err(ProviderError::Malformed(_))
    ));
    assert!(matches!(
        verify(unwrapped).await,
        Err(ProviderError::Malformed(_))
    ));
    assert!(matches!(
        find(json(200, "[]")).await,
        Err(ProviderError::Malformed(_))
    ));
}

#[tokio::test]
async fn a_verification_without_data_or_any_status_is_malformed() {
    for body in [
        r#"{"data":null,"meta":{}}"#,
        r#"{"data":{"email":"a@b.com","score":40},"meta":{}}"#,
    ] {
        assert!(
            matches!(verify(json(200, body)).await, Err(ProviderError::Malformed(_))),
            "{body}"
        );
    }
}

#[tokio::test]
async fn fields_of_the_wrong_type_are_malformed() {
    let body = r#"{"data":{"email":"alexis@reddit.com","score":"high"},"meta":{}}"#;
    assert!(matches!(
        find(json(200, body)).await,
        Err(ProviderError::Malformed(_))
    ));
}

// --- the key stays secret ---

#[tokio::test]
async fn the_api_key_never_appears_in_errors() {
    let echoing_details =
        format!(r#"{{"errors":[{{"id":"no_user","code":400,"details":"No user for {KEY}"}}]}}"#);
    let echoing_value = format!(r#"{{"data":{{"email":"a@b.com","score":"{KEY}"}},"meta":{{}}}}"#);
    let replies = [
        json(400, &echoing_details),
        json(422, &echoing_details),
        json(200, &echoing_value),
        ResponseTemplate::new(200).set_body_string(format!("not json {KEY}")),
        ResponseTemplate::new(401),
        ResponseTemplate::new(402),
        ResponseTemplate::new(403),
        ResponseTemplate::new(429),
        ResponseTemplate::new(500),
    ];
    for reply in replies {
        let error = find(reply).await.expect_err("an error");
        let shown = format!("{error:?} / {error}");
        assert!(!shown.contains(KEY), "key leaked: {shown}");
    }
    // The scrubbed text still says what went wrong.
    let error = find(json(400, &echoing_details)).await.expect_err("rejected");
    assert_eq!(
        error,
        ProviderError::Rejected("HTTP 400: No user for [redacted] (no_user)".into())
    );
}

// --- what the adapter offers and accepts ---

#[test]
fn offers_person_and_email_verification_one_at_a_time() {
    let hunter = Hunter::new(Config::default());
    assert_eq!(hunter.kind(), ProviderKind::Hunter);
    assert_eq!(hunter.groups(), &[Group::Person, Group::EmailVerification]);
    for group in [Group::Person, Group::EmailVerification] {
        assert_eq!(hunter.batch_size(group), 1);
        assert_eq!(hunter.credits_per_hit(group), 1);
    }
    assert_eq!(Config::default().base_url.as_str(), "https://api.hunter.io/v2");
}

#[test]
fn can_look_up_needs_the_endpoints_inputs() {
    let hunter = Hunter::new(Config::default());
    let named = with_name("Jane", "Doe", "acme.com");
    let full_name_only = Subject {
        full_name: Some("Jane Doe".into()),
        domain: Some("acme.com".into()),
        ..blank_subject()
    };
    let no_domain = Subject {
        domain: None,
        ..named.clone()
    };
    let blank_email = Subject {
        email: Some("  ".into()),
        ..blank_subject()
    };

    assert!(hunter.can_look_up(Group::Person, &named));
    assert!(hunter.can_look_up(Group::Person, &full_name_only));
    assert!(!hunter.can_look_up(Group::Person, &no_domain));
    assert!(!hunter.can_look_up(Group::Person, &with_email("jane@acme.com")));
    assert!(hunter.can_look_up(Group::EmailVerification, &with_email("jane@acme.com")));
    assert!(!hunter.can_look_up(Group::EmailVerification, &blank_email));
    assert!(!hunter.can_look_up(Group::Company, &named));
    assert!(!hunter.can_look_up(Group::Phone, &named));
}

#[tokio::test]
async fn groups_hunter_does_not_offer_are_rejected_without_a_request() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;

    let error = call(&hunter_at(&server), Group::Company, &[with_email("a@acme.com")]).await;

    assert!(matches!(error, Err(ProviderError::Rejected(_))));
}

#[tokio::test]
async fn several_subjects_get_one_answer_each_in_order() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/email-verifier"))
        .and(query_param("email", "alexis@reddit.com"))
        .respond_with(json(200, VERIFIER_HIT))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/email-verifier"))
        .and(query_param("email", "down@acme.com"))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&server)
        .await;
    let subjects = [with_email("alexis@reddit.com"), with_email("down@acme.com")];

    let answers = call(&hunter_at(&server), Group::EmailVerification, &subjects)
        .await
        .expect("answers");

    assert!(matches!(
        answers.as_slice(),
        [
            Answer::Found { credits: 1, .. },
            Answer::Failed(ProviderError::Transient { .. })
        ]
    ));
}

#[tokio::test]
async fn no_subjects_make_no_request() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;

    assert_eq!(call(&hunter_at(&server), Group::Person, &[]).await, Ok(vec![]));
}
