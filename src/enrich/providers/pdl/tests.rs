use super::*;
use crate::domain::LeadId;
use std::time::Duration;
use wiremock::matchers::{body_partial_json, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "test-key-1234";
const PERSON_BULK: &str = include_str!("testdata/person_bulk.json");
const COMPANY: &str = include_str!("testdata/company.json");
const NOT_FOUND: &str = include_str!("testdata/not_found.json");
const PAYMENT_REQUIRED: &str = include_str!("testdata/payment_required.json");
const INVALID_REQUEST: &str = include_str!("testdata/invalid_request.json");
const UNAUTHORIZED: &str = include_str!("testdata/unauthorized.json");
const RATE_LIMITED: &str = include_str!("testdata/rate_limited.json");

/// The leads the bulk fixture's `metadata.lead` values name: a hit and a miss.
const LEAD_HIT: &str = "0190f3a2-0000-7000-8000-000000000001";
const LEAD_MISS: &str = "0190f3a2-0000-7000-8000-000000000002";
const LEAD_THIRD: &str = "0190f3a2-0000-7000-8000-000000000003";

const BULK_PATH: &str = "/v5/person/bulk";
const COMPANY_PATH: &str = "/v5/company/enrich";

fn subject(lead: &str) -> Subject {
    Subject {
        lead_id: LeadId::from_uuid(uuid::Uuid::parse_str(lead).unwrap()),
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

fn with_email(lead: &str, email: &str) -> Subject {
    Subject {
        email: Some(email.into()),
        domain: email.split('@').nth(1).map(Into::into),
        ..subject(lead)
    }
}

fn with_domain(domain: &str) -> Subject {
    Subject {
        domain: Some(domain.into()),
        ..subject(LEAD_HIT)
    }
}

fn json_of(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap()
}

fn reply(status: u16, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

fn reply_json(status: u16, body: &Value) -> ResponseTemplate {
    reply(status, &body.to_string())
}

fn adapter(server: &MockServer) -> PeopleDataLabs {
    PeopleDataLabs::new(Config {
        base_url: Url::parse(&format!("{}/v5", server.uri())).unwrap(),
    })
}

async fn run(server: &MockServer, group: Group, subjects: &[Subject]) -> Result<Vec<Answer>, ProviderError> {
    let http = reqwest::Client::new();
    let options = serde_json::Value::Null;
    let ctx = CallContext {
        http: &http,
        api_key: KEY,
        options: &options,
    };
    adapter(server).lookup(&ctx, group, subjects).await
}

/// A fake PDL that answers every bulk call with `template`.
async fn bulk_server(template: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(BULK_PATH))
        .respond_with(template)
        .mount(&server)
        .await;
    server
}

/// A fake PDL that answers every company call with `template`.
async fn company_server(template: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(COMPANY_PATH))
        .respond_with(template)
        .mount(&server)
        .await;
    server
}

fn two_people() -> Vec<Subject> {
    vec![
        with_email(LEAD_HIT, "sean@peopledatalabs.com"),
        with_email(LEAD_MISS, "nobody@example.com"),
    ]
}

/// The fixture's elements, edited by `edit`.
fn bulk_fixture(edit: impl FnOnce(&mut Vec<Value>)) -> Value {
    let Value::Array(mut elements) = json_of(PERSON_BULK) else {
        panic!("the bulk fixture is an array");
    };
    edit(&mut elements);
    Value::Array(elements)
}

/// An error body from the fixtures, tagged with a lead as a bulk element.
fn error_element(body: &str, lead: &str) -> Value {
    let mut element = json_of(body);
    element["metadata"] = json!({ "lead": lead });
    element
}

fn sean() -> PersonData {
    PersonData {
        full_name: Some("sean thorne".into()),
        title: Some("co-founder and chief executive officer".into()),
        seniority: Some("cxo".into()),
        department: Some("operations".into()),
        linkedin_handle: Some("seanthorne".into()),
        twitter_handle: Some("seanthorne5".into()),
        location: Some("san francisco, california, united states".into()),
    }
}

fn sean_found() -> Answer {
    Answer::Found {
        data: GroupData::Person(sean()),
        confidence: 0.8,
        credits: 1,
    }
}

fn pdl_company() -> CompanyData {
    CompanyData {
        name: Some("People Data Labs".into()),
        domain: Some("peopledatalabs.com".into()),
        industry: Some("computer software".into()),
        employee_count: Some(120),
        employee_range: Some("51-200".into()),
        annual_revenue: Some(10_000_000),
        founded_year: Some(2015),
        country: Some("US".into()),
        city: Some("san francisco".into()),
        linkedin_url: Some("https://linkedin.com/company/peopledatalabs".into()),
        technologies: vec![],
    }
}

async fn company_error(template: ResponseTemplate) -> ProviderError {
    let server = company_server(template).await;
    run(&server, Group::Company, &[with_domain("peopledatalabs.com")])
        .await
        .unwrap_err()
}

async fn bulk_error(template: ResponseTemplate) -> ProviderError {
    let server = bulk_server(template).await;
    run(&server, Group::Person, &two_people()).await.unwrap_err()
}

async fn sent_bulk_bodies(server: &MockServer) -> Vec<Value> {
    let requests = server.received_requests().await.unwrap();
    requests
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

// ---- what the adapter offers ----

#[tokio::test]
async fn offers_person_company_and_phone_with_bulk_for_people() {
    let pdl = PeopleDataLabs::new(Config::default());
    assert_eq!(pdl.kind(), ProviderKind::PeopleDataLabs);
    assert_eq!(pdl.groups(), &[Group::Person, Group::Company, Group::Phone]);
    assert_eq!(pdl.batch_size(Group::Person), 100);
    assert_eq!(pdl.batch_size(Group::Phone), 100);
    assert_eq!(pdl.batch_size(Group::Company), 1);
    for group in [Group::Person, Group::Company, Group::Phone] {
        assert_eq!(pdl.credits_per_hit(group), 1);
    }
    assert_eq!(
        Config::default().base_url.as_str(),
        "https://api.peopledatalabs.com/v5"
    );
}

#[tokio::test]
async fn person_lookups_need_an_email_a_profile_or_a_name_at_a_company() {
    let pdl = PeopleDataLabs::new(Config::default());
    let can = |s: &Subject| pdl.can_look_up(Group::Person, s) && pdl.can_look_up(Group::Phone, s);
    let cannot = |s: &Subject| !pdl.can_look_up(Group::Person, s) && !pdl.can_look_up(Group::Phone, s);

    assert!(can(&with_email(LEAD_HIT, "sean@peopledatalabs.com")));
    assert!(can(&Subject {
        linkedin_url: Some("https://www.linkedin.com/in/seanthorne".into()),
        ..subject(LEAD_HIT)
    }));
    assert!(can(&Subject {
        full_name: Some("Sean Thorne".into()),
        company_name: Some("People Data Labs".into()),
        ..subject(LEAD_HIT)
    }));
    assert!(can(&Subject {
        first_name: Some("Sean".into()),
        last_name: Some("Thorne".into()),
        domain: Some("peopledatalabs.com".into()),
        ..subject(LEAD_HIT)
    }));

    assert!(cannot(&subject(LEAD_HIT)));
    assert!(cannot(&Subject {
        full_name: Some("Sean Thorne".into()),
        ..subject(LEAD_HIT)
    }));
    assert!(cannot(&Subject {
        first_name: Some("Sean".into()),
        domain: Some("peopledatalabs.com".into()),
        ..subject(LEAD_HIT)
    }));
    assert!(cannot(&Subject {
        email: Some("  ".into()),
        ..subject(LEAD_HIT)
    }));
}

#[tokio::test]
async fn company_lookups_need_a_domain_or_a_company_name() {
    let pdl = PeopleDataLabs::new(Config::default());
    assert!(pdl.can_look_up(Group::Company, &with_domain("peopledatalabs.com")));
    assert!(pdl.can_look_up(
        Group::Company,
        &Subject {
            company_name: Some("People Data Labs".into()),
            ..subject(LEAD_HIT)
        }
    ));
    let email_only = Subject {
        domain: None,
        ..with_email(LEAD_HIT, "sean@peopledatalabs.com")
    };
    assert!(!pdl.can_look_up(Group::Company, &email_only));
    assert!(!pdl.can_look_up(
        Group::EmailVerification,
        &with_email(LEAD_HIT, "sean@peopledatalabs.com")
    ));
}

// ---- Person Bulk ----

#[tokio::test]
async fn person_bulk_posts_every_subject_with_its_lead_and_the_key_header() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(BULK_PATH))
        .and(header("X-Api-Key", KEY))
        .and(header("content-type", "application/json"))
        .and(body_partial_json(json!({"requests": [
            {"metadata": {"lead": LEAD_HIT}, "params": {"email": ["sean@peopledatalabs.com"]}},
            {"metadata": {"lead": LEAD_MISS}, "params": {"email": ["nobody@example.com"]}},
        ]})))
        .respond_with(reply(200, PERSON_BULK))
        .expect(1)
        .mount(&server)
        .await;

    let answers = run(&server, Group::Person, &two_people()).await.unwrap();
    assert_eq!(answers.len(), 2);
    let url = &server.received_requests().await.unwrap()[0].url;
    assert_eq!(url.query(), None, "the key goes in the header, never the URL");
}

#[tokio::test]
async fn a_bulk_hit_maps_every_person_field_and_a_404_element_is_a_free_miss() {
    let server = bulk_server(reply(200, PERSON_BULK)).await;
    let answers = run(&server, Group::Person, &two_people()).await.unwrap();
    assert_eq!(answers, vec![sean_found(), Answer::NotFound { credits: 0 }]);
}

#[tokio::test]
async fn names_companies_and_profiles_become_params() {
    let server = bulk_server(reply(200, "[]")).await;
    let by_parts = Subject {
        first_name: Some("Sean".into()),
        last_name: Some("Thorne".into()),
        full_name: Some("Sean Thorne".into()),
        domain: Some("peopledatalabs.com".into()),
        company_name: Some("People Data Labs".into()),
        linkedin_url: Some("https://www.linkedin.com/in/seanthorne".into()),
        ..subject(LEAD_HIT)
    };
    let by_full_name = Subject {
        full_name: Some("Sean Thorne".into()),
        company_name: Some("People Data Labs".into()),
        ..subject(LEAD_MISS)
    };
    run(&server, Group::Person, &[by_parts, by_full_name])
        .await
        .unwrap();

    let bodies = sent_bulk_bodies(&server).await;
    assert_eq!(
        bodies,
        vec![json!({"requests": [
            {"metadata": {"lead": LEAD_HIT}, "params": {
                "profile": ["https://www.linkedin.com/in/seanthorne"],
                "first_name": "Sean",
                "last_name": "Thorne",
                "company": "peopledatalabs.com",
            }},
            {"metadata": {"lead": LEAD_MISS}, "params": {
                "name": ["Sean Thorne"],
                "company": "People Data Labs",
            }},
        ]})]
    );
}

#[tokio::test]
async fn elements_are_matched_by_lead_even_out_of_order() {
    let server = bulk_server(reply_json(200, &bulk_fixture(|e| e.reverse()))).await;
    let answers = run(&server, Group::Person, &two_people()).await.unwrap();
    assert_eq!(answers, vec![sean_found(), Answer::NotFound { credits: 0 }]);
}

#[tokio::test]
async fn elements_without_metadata_are_matched_by_position() {
    let body = bulk_fixture(|elements| {
        for element in elements.iter_mut() {
            element.as_object_mut().unwrap().remove("metadata");
        }
    });
    let server = bulk_server(reply_json(200, &body)).await;
    let answers = run(&server, Group::Person, &two_people()).await.unwrap();
    assert_eq!(answers, vec![sean_found(), Answer::NotFound { credits: 0 }]);
}

#[tokio::test]
async fn a_missing_element_fails_only_its_subject() {
    let server = bulk_server(reply_json(200, &bulk_fixture(|e| e.truncate(1)))).await;
    let answers = run(&server, Group::Person, &two_people()).await.unwrap();
    assert_eq!(answers[0], sean_found());
    assert!(
        matches!(answers[1], Answer::Failed(ProviderError::Malformed(_))),
        "{:?}",
        answers[1]
    );
}

#[tokio::test]
async fn an_element_tagged_with_another_lead_is_not_taken_by_position() {
    let body = json!([error_element(NOT_FOUND, LEAD_THIRD)]);
    let server = bulk_server(reply_json(200, &body)).await;
    let answers = run(&server, Group::Person, &[with_email(LEAD_HIT, "a@b.com")])
        .await
        .unwrap();
    assert!(
        matches!(answers[0], Answer::Failed(ProviderError::Malformed(_))),
        "{:?}",
        answers[0]
    );
}

#[tokio::test]
async fn per_element_errors_fail_only_their_subject() {
    let leads = [LEAD_HIT, LEAD_MISS, LEAD_THIRD];
    let body = json!([
        error_element(PAYMENT_REQUIRED, leads[0]),
        error_element(UNAUTHORIZED, leads[1]),
        error_element(RATE_LIMITED, leads[2]),
    ]);
    let server = bulk_server(reply_json(200, &body).insert_header("Retry-After", "30")).await;
    let subjects: Vec<Subject> = leads.iter().map(|l| with_email(l, "x@example.com")).collect();
    let answers = run(&server, Group::Person, &subjects).await.unwrap();
    assert_eq!(
        answers,
        vec![
            Answer::Failed(ProviderError::QuotaExhausted),
            Answer::Failed(ProviderError::Unauthorized),
            Answer::Failed(ProviderError::RateLimited {
                retry_after: Some(Duration::from_secs(30))
            }),
        ]
    );
}

#[tokio::test]
async fn per_element_refusals_and_server_errors_fail_only_their_subject() {
    let body = json!([
        error_element(INVALID_REQUEST, LEAD_HIT),
        {"status": 500, "error": {"type": "error", "message": "internal"}, "metadata": {"lead": LEAD_MISS}},
        {"status": 429, "error": {"type": "rate_limit_error"}, "metadata": {"lead": LEAD_THIRD}},
    ]);
    let server = bulk_server(reply_json(200, &body)).await;
    let subjects: Vec<Subject> = [LEAD_HIT, LEAD_MISS, LEAD_THIRD]
        .iter()
        .map(|l| with_email(l, "x@example.com"))
        .collect();
    let answers = run(&server, Group::Person, &subjects).await.unwrap();

    let Answer::Failed(ProviderError::Rejected(message)) = &answers[0] else {
        panic!("expected a refusal, got {:?}", answers[0]);
    };
    assert!(message.contains("invalid_request_error"), "{message}");
    assert!(
        message.contains("Request object must contain at least one of"),
        "{message}"
    );
    assert!(
        matches!(
            &answers[1],
            Answer::Failed(ProviderError::Transient {
                retry_after: None,
                ..
            })
        ),
        "{:?}",
        answers[1]
    );
    assert_eq!(
        answers[2],
        Answer::Failed(ProviderError::RateLimited { retry_after: None })
    );
}

#[tokio::test]
async fn a_bulk_element_200_without_data_is_malformed_for_that_subject() {
    let body = bulk_fixture(|elements| {
        elements[0].as_object_mut().unwrap().remove("data");
    });
    let server = bulk_server(reply_json(200, &body)).await;
    let answers = run(&server, Group::Person, &two_people()).await.unwrap();
    assert!(
        matches!(answers[0], Answer::Failed(ProviderError::Malformed(_))),
        "{:?}",
        answers[0]
    );
    assert_eq!(answers[1], Answer::NotFound { credits: 0 });
}

#[tokio::test]
async fn a_bulk_element_whose_data_is_not_a_record_is_malformed_for_that_subject() {
    let body = bulk_fixture(|elements| elements[0]["data"] = json!("sean thorne"));
    let server = bulk_server(reply_json(200, &body)).await;
    let answers = run(&server, Group::Person, &two_people()).await.unwrap();
    assert!(
        matches!(answers[0], Answer::Failed(ProviderError::Malformed(_))),
        "{:?}",
        answers[0]
    );
}

#[tokio::test]
async fn null_fields_and_placeholders_leave_the_person_fields_empty() {
    let body = bulk_fixture(|elements| {
        let data = &mut elements[0]["data"];
        data["job_title"] = Value::Null;
        data["job_title_levels"] = json!([]);
        data["linkedin_username"] = Value::Null;
        data["twitter_username"] = Value::Null;
        data["location_name"] = json!(true);
        data["mobile_phone"] = json!(true);
        data["phone_numbers"] = json!(true);
        elements[0].as_object_mut().unwrap().remove("likelihood");
    });
    let server = bulk_server(reply_json(200, &body)).await;
    let answers = run(&server, Group::Person, &two_people()).await.unwrap();
    let expected = PersonData {
        full_name: Some("sean thorne".into()),
        department: Some("operations".into()),
        // Without a username the handle still comes from the profile URL.
        linkedin_handle: Some("seanthorne".into()),
        ..PersonData::default()
    };
    assert_eq!(
        answers[0],
        Answer::Found {
            data: GroupData::Person(expected),
            confidence: 0.5,
            credits: 1
        }
    );
}

#[tokio::test]
async fn phone_numbers_are_e164_mobile_first_and_deduplicated() {
    let server = bulk_server(reply(200, PERSON_BULK)).await;
    let answers = run(&server, Group::Phone, &two_people()).await.unwrap();
    let expected = PhoneData {
        numbers: vec![
            PhoneNumber {
                number: "+14155688415".into(),
                kind: PhoneKind::Mobile,
            },
            PhoneNumber {
                number: "+16505550199".into(),
                kind: PhoneKind::Other,
            },
        ],
    };
    assert_eq!(
        answers,
        vec![
            Answer::Found {
                data: GroupData::Phone(expected),
                confidence: 0.8,
                credits: 1
            },
            Answer::NotFound { credits: 0 },
        ]
    );
}

#[tokio::test]
async fn a_match_without_phone_numbers_is_a_free_miss_for_the_phone_group() {
    let body = bulk_fixture(|elements| {
        elements[0]["data"]["mobile_phone"] = Value::Null;
        elements[0]["data"]["phone_numbers"] = json!([]);
    });
    let server = bulk_server(reply_json(200, &body)).await;
    let answers = run(&server, Group::Phone, &two_people()).await.unwrap();
    assert_eq!(
        answers,
        vec![Answer::NotFound { credits: 0 }, Answer::NotFound { credits: 0 }]
    );
}

#[tokio::test]
async fn subjects_without_inputs_are_not_sent() {
    let server = bulk_server(reply(200, PERSON_BULK)).await;
    let name_only = Subject {
        full_name: Some("Sean Thorne".into()),
        ..subject(LEAD_MISS)
    };
    let answers = run(
        &server,
        Group::Person,
        &[with_email(LEAD_HIT, "sean@peopledatalabs.com"), name_only],
    )
    .await
    .unwrap();
    assert_eq!(answers[0], sean_found());
    assert!(
        matches!(answers[1], Answer::Failed(ProviderError::Rejected(_))),
        "{:?}",
        answers[1]
    );
    let bodies = sent_bulk_bodies(&server).await;
    assert_eq!(bodies[0]["requests"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn no_call_is_made_when_nobody_can_be_looked_up() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(reply(200, "[]"))
        .expect(0)
        .mount(&server)
        .await;
    let answers = run(&server, Group::Person, &[subject(LEAD_HIT)]).await.unwrap();
    assert!(matches!(answers[0], Answer::Failed(ProviderError::Rejected(_))));
    assert_eq!(run(&server, Group::Person, &[]).await.unwrap(), vec![]);
}

#[tokio::test]
async fn a_bulk_http_404_is_a_free_miss_for_everyone() {
    let server = bulk_server(reply(404, NOT_FOUND)).await;
    let answers = run(&server, Group::Person, &two_people()).await.unwrap();
    assert_eq!(
        answers,
        vec![Answer::NotFound { credits: 0 }, Answer::NotFound { credits: 0 }]
    );
}

#[tokio::test]
async fn bulk_http_errors_fail_the_whole_call() {
    assert_eq!(
        bulk_error(reply(401, UNAUTHORIZED)).await,
        ProviderError::Unauthorized
    );
    assert_eq!(
        bulk_error(reply(402, PAYMENT_REQUIRED)).await,
        ProviderError::QuotaExhausted
    );
    assert_eq!(
        bulk_error(reply(429, RATE_LIMITED).insert_header("Retry-After", "12")).await,
        ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(12))
        }
    );
    let refused = bulk_error(reply(400, INVALID_REQUEST)).await;
    assert!(
        matches!(&refused, ProviderError::Rejected(m) if m.contains("invalid_request_error")),
        "{refused:?}"
    );
    assert!(matches!(
        bulk_error(reply(502, "bad gateway")).await,
        ProviderError::Transient { .. }
    ));
}

#[tokio::test]
async fn a_bulk_body_that_is_not_an_array_is_malformed() {
    let single = json!({"status": 200, "likelihood": 8, "data": {"full_name": "sean thorne"}});
    assert!(matches!(
        bulk_error(reply_json(200, &single)).await,
        ProviderError::Malformed(_)
    ));
    assert!(matches!(
        bulk_error(reply(200, "[{\"status\": 200,")).await,
        ProviderError::Malformed(_)
    ));
    assert!(matches!(
        bulk_error(reply(200, "")).await,
        ProviderError::Malformed(_)
    ));
}

// ---- Company Enrich ----

#[tokio::test]
async fn company_enrich_gets_by_website_with_the_key_header() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(COMPANY_PATH))
        .and(query_param("website", "peopledatalabs.com"))
        .and(query_param_is_missing("name"))
        .and(query_param_is_missing("api_key"))
        .and(header("X-Api-Key", KEY))
        .respond_with(reply(200, COMPANY))
        .expect(1)
        .mount(&server)
        .await;
    let s = Subject {
        company_name: Some("People Data Labs".into()),
        ..with_domain("www.PeopleDataLabs.com")
    };
    let answers = run(&server, Group::Company, &[s]).await.unwrap();
    assert_eq!(answers.len(), 1);
}

#[tokio::test]
async fn company_enrich_gets_by_name_without_a_domain() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(COMPANY_PATH))
        .and(query_param("name", "People Data Labs"))
        .and(query_param_is_missing("website"))
        .and(header("X-Api-Key", KEY))
        .respond_with(reply(200, COMPANY))
        .expect(1)
        .mount(&server)
        .await;
    let s = Subject {
        company_name: Some("People Data Labs".into()),
        ..subject(LEAD_HIT)
    };
    run(&server, Group::Company, &[s]).await.unwrap();
}

#[tokio::test]
async fn a_flat_company_record_maps_every_field() {
    let server = company_server(reply(200, COMPANY)).await;
    let answers = run(&server, Group::Company, &[with_domain("peopledatalabs.com")])
        .await
        .unwrap();
    assert_eq!(
        answers,
        vec![Answer::Found {
            data: GroupData::Company(pdl_company()),
            confidence: 0.6,
            credits: 1
        }]
    );
}

#[tokio::test]
async fn a_company_record_wrapped_in_data_maps_the_same() {
    let mut record = json_of(COMPANY);
    let record_map = record.as_object_mut().unwrap();
    record_map.remove("status");
    record_map.remove("likelihood");
    let body = json!({"status": 200, "likelihood": 6, "data": record});
    let server = company_server(reply_json(200, &body)).await;
    let answers = run(&server, Group::Company, &[with_domain("peopledatalabs.com")])
        .await
        .unwrap();
    assert_eq!(
        answers,
        vec![Answer::Found {
            data: GroupData::Company(pdl_company()),
            confidence: 0.6,
            credits: 1
        }]
    );
}

#[tokio::test]
async fn a_sparse_company_record_keeps_unknowns_empty_and_half_confidence() {
    let body = json!({
        "status": 200,
        "name": "acme",
        "display_name": null,
        "website": null,
        "inferred_revenue": "$0-$1M",
        "linkedin_url": "https://www.linkedin.com/company/acme",
        "location": null,
    });
    let server = company_server(reply_json(200, &body)).await;
    let answers = run(&server, Group::Company, &[with_domain("acme.com")])
        .await
        .unwrap();
    let expected = CompanyData {
        name: Some("acme".into()),
        linkedin_url: Some("https://www.linkedin.com/company/acme".into()),
        ..CompanyData::default()
    };
    assert_eq!(
        answers,
        vec![Answer::Found {
            data: GroupData::Company(expected),
            confidence: 0.5,
            credits: 1
        }]
    );
}

#[tokio::test]
async fn a_company_404_is_a_free_miss() {
    let server = company_server(reply(404, NOT_FOUND)).await;
    let answers = run(&server, Group::Company, &[with_domain("nowhere.example")])
        .await
        .unwrap();
    assert_eq!(answers, vec![Answer::NotFound { credits: 0 }]);
}

#[tokio::test]
async fn a_company_200_carrying_status_404_is_a_free_miss() {
    let server = company_server(reply(200, NOT_FOUND)).await;
    let answers = run(&server, Group::Company, &[with_domain("nowhere.example")])
        .await
        .unwrap();
    assert_eq!(answers, vec![Answer::NotFound { credits: 0 }]);
}

#[tokio::test]
async fn company_error_statuses_map_to_call_errors() {
    let refused = company_error(reply(400, INVALID_REQUEST)).await;
    let ProviderError::Rejected(message) = &refused else {
        panic!("expected a refusal, got {refused:?}");
    };
    assert!(message.contains("HTTP 400 invalid_request_error"), "{message}");
    assert!(
        message.contains("Request object must contain at least one of"),
        "{message}"
    );

    assert_eq!(
        company_error(reply(401, UNAUTHORIZED)).await,
        ProviderError::Unauthorized
    );
    assert_eq!(
        company_error(reply(402, PAYMENT_REQUIRED)).await,
        ProviderError::QuotaExhausted
    );
    assert!(matches!(
        company_error(reply(403, "{}")).await,
        ProviderError::Rejected(m) if m == "HTTP 403"
    ));
    assert!(matches!(
        company_error(reply(422, "not json")).await,
        ProviderError::Rejected(m) if m == "HTTP 422"
    ));
}

#[tokio::test]
async fn company_429_is_rate_limited_with_and_without_retry_after() {
    assert_eq!(
        company_error(reply(429, RATE_LIMITED).insert_header("Retry-After", "7")).await,
        ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert_eq!(
        company_error(reply(429, RATE_LIMITED)).await,
        ProviderError::RateLimited { retry_after: None }
    );
}

#[tokio::test]
async fn company_5xx_is_transient() {
    assert_eq!(
        company_error(reply(500, "{}")).await,
        ProviderError::Transient {
            message: "HTTP 500".into(),
            retry_after: None
        }
    );
    assert_eq!(
        company_error(reply(503, "").insert_header("Retry-After", "5")).await,
        ProviderError::Transient {
            message: "HTTP 503".into(),
            retry_after: Some(Duration::from_secs(5))
        }
    );
}

#[tokio::test]
async fn malformed_company_json_is_malformed() {
    assert!(matches!(
        company_error(reply(200, "{\"status\": 200, \"name\":")).await,
        ProviderError::Malformed(_)
    ));
    assert!(matches!(
        company_error(reply(200, "<html>ok</html>")).await,
        ProviderError::Malformed(_)
    ));
}

#[tokio::test]
async fn a_company_200_without_a_record_is_malformed() {
    for body in [
        json!({"status": 200, "likelihood": 6}),
        json!([]),
        json!({"data": null}),
        json!({"data": {}}),
    ] {
        let error = company_error(reply_json(200, &body)).await;
        assert!(matches!(error, ProviderError::Malformed(_)), "{body}: {error:?}");
    }
}

#[tokio::test]
async fn a_company_record_with_a_mistyped_number_is_malformed() {
    let mut body = json_of(COMPANY);
    body["employee_count"] = json!("a hundred");
    assert!(matches!(
        company_error(reply_json(200, &body)).await,
        ProviderError::Malformed(_)
    ));
}

#[tokio::test]
async fn email_verification_is_not_offered() {
    let server = MockServer::start().await;
    let error = run(
        &server,
        Group::EmailVerification,
        &[with_email(LEAD_HIT, "a@b.com")],
    )
    .await
    .unwrap_err();
    assert!(matches!(error, ProviderError::Rejected(_)));
    assert!(server.received_requests().await.unwrap().is_empty());
}

// ---- the key stays secret ----

#[tokio::test]
async fn the_api_key_never_appears_in_errors() {
    let echo = format!(
        "{{\"status\":400,\"error\":{{\"type\":\"invalid_request_error\",\"message\":\"bad key {KEY}\"}}}}"
    );
    let mut errors = vec![
        company_error(reply(400, &echo)).await,
        company_error(reply(
            200,
            &format!("{{\"employee_count\": \"{KEY}\", \"name\": \"acme\"}}"),
        ))
        .await,
        company_error(reply(200, &format!("\"{KEY}\""))).await,
        company_error(reply(401, UNAUTHORIZED)).await,
        company_error(reply(503, &echo)).await,
        bulk_error(reply(400, &echo)).await,
        bulk_error(reply(200, &format!("{{\"error\": \"{KEY}\"}}"))).await,
    ];

    // A bulk element echoing the key, and one of the wrong type quoting it back.
    let body = json!([
        {
            "status": 400,
            "error": {"type": "invalid_request_error", "message": format!("key {KEY}")},
            "metadata": {"lead": LEAD_HIT},
        },
        {"status": KEY, "metadata": {"lead": LEAD_MISS}},
    ]);
    let server = bulk_server(reply_json(200, &body)).await;
    for answer in run(&server, Group::Person, &two_people()).await.unwrap() {
        let Answer::Failed(error) = answer else {
            panic!("expected failures, got {answer:?}");
        };
        errors.push(error);
    }

    for error in &errors {
        assert!(!format!("{error:?}").contains(KEY), "{error:?}");
        assert!(!error.to_string().contains(KEY), "{error}");
    }
    // The redaction really ran: the echoing refusals still say what was wrong.
    assert!(errors[0].to_string().contains("[redacted]"), "{}", errors[0]);
    assert!(!format!("{:?}", Config::default()).contains(KEY));
}

// ---- pure helpers ----

#[tokio::test]
async fn revenue_bands_give_their_lower_bound() {
    assert_eq!(revenue_lower_bound("$10M-$25M"), Some(10_000_000));
    assert_eq!(revenue_lower_bound("$1M-$10M"), Some(1_000_000));
    assert_eq!(revenue_lower_bound("$500M-$1B"), Some(500_000_000));
    assert_eq!(revenue_lower_bound("$10B+"), Some(10_000_000_000));
    assert_eq!(revenue_lower_bound("$250K-$1M"), Some(250_000));
    assert_eq!(revenue_lower_bound("$2.5M"), Some(2_500_000));
    assert_eq!(revenue_lower_bound("$0-$1M"), None);
    assert_eq!(revenue_lower_bound("unknown"), None);
    assert_eq!(revenue_lower_bound(""), None);
    assert_eq!(revenue_lower_bound("$€"), None);
}

#[tokio::test]
async fn linkedin_urls_get_a_scheme() {
    assert_eq!(
        with_https("linkedin.com/company/acme"),
        "https://linkedin.com/company/acme"
    );
    assert_eq!(
        with_https("https://linkedin.com/company/acme"),
        "https://linkedin.com/company/acme"
    );
    assert_eq!(
        with_https("http://linkedin.com/company/acme"),
        "http://linkedin.com/company/acme"
    );
}

#[tokio::test]
async fn likelihood_becomes_a_zero_to_one_confidence() {
    assert_eq!(confidence(Some(10.0)), 1.0);
    assert_eq!(confidence(Some(1.0)), 0.1);
    assert_eq!(confidence(Some(42.0)), 1.0);
    assert_eq!(confidence(None), 0.5);
}
