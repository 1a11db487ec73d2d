use super::*;
use crate::domain::LeadId;

fn subject(email: &str) -> Subject {
    Subject {
        lead_id: LeadId::new(),
        email: Some(email.into()),
        first_name: None,
        last_name: None,
        full_name: None,
        company_name: None,
        domain: email.split('@').nth(1).map(Into::into),
        linkedin_url: None,
        phone: None,
    }
}

#[test]
fn answers_are_deterministic() {
    let options = SandboxOptions::default();
    let s = subject("jane.doe@acme.com");
    assert_eq!(
        answer(&options, Group::Company, &s),
        answer(&options, Group::Company, &s)
    );
}

#[test]
fn person_name_is_derived_from_the_email() {
    let Answer::Found {
        data: GroupData::Person(p),
        credits,
        ..
    } = answer(
        &SandboxOptions::default(),
        Group::Person,
        &subject("jane.doe@acme.com"),
    )
    else {
        panic!("expected a hit");
    };
    assert_eq!(p.full_name.as_deref(), Some("Jane Doe"));
    assert_eq!(p.linkedin_handle.as_deref(), Some("jane-doe"));
    assert_eq!(credits, 1);
}

#[test]
fn company_uses_the_domain() {
    let Answer::Found {
        data: GroupData::Company(c),
        ..
    } = answer(&SandboxOptions::default(), Group::Company, &subject("x@acme.com"))
    else {
        panic!("expected a hit");
    };
    assert_eq!(c.domain.as_deref(), Some("acme.com"));
    assert_eq!(c.name.as_deref(), Some("Acme"));
    assert!(!c.technologies.is_empty());
}

#[test]
fn webmail_addresses_verify_as_webmail() {
    let Answer::Found {
        data: GroupData::EmailVerification(v),
        ..
    } = answer(
        &SandboxOptions::default(),
        Group::EmailVerification,
        &subject("someone@gmail.com"),
    )
    else {
        panic!("expected a hit");
    };
    assert_eq!(v.status, Some(EmailStatus::Webmail));
}

#[test]
fn miss_rate_one_misses_everything_and_zero_nothing() {
    let all = SandboxOptions {
        miss_rate: 1.0,
        ..Default::default()
    };
    let none = SandboxOptions::default();
    for i in 0..50 {
        let s = subject(&format!("p{i}@acme.com"));
        assert_eq!(answer(&all, Group::Person, &s), Answer::NotFound { credits: 0 });
        assert!(matches!(answer(&none, Group::Person, &s), Answer::Found { .. }));
    }
}

#[test]
fn miss_rate_half_misses_about_half() {
    let half = SandboxOptions {
        miss_rate: 0.5,
        ..Default::default()
    };
    let misses = (0..1000)
        .filter(|i| {
            let s = subject(&format!("p{i}@acme{i}.com"));
            matches!(answer(&half, Group::Company, &s), Answer::NotFound { .. })
        })
        .count();
    assert!((400..600).contains(&misses), "{misses} misses of 1000");
}

#[test]
fn options_are_validated() {
    assert!(SandboxOptions::from_json(&serde_json::json!({"missRate": 2.0})).is_err());
    assert!(SandboxOptions::from_json(&serde_json::json!({"latency": 5})).is_err());
    assert_eq!(
        SandboxOptions::from_json(&serde_json::json!({"latencyMs": 50}))
            .unwrap()
            .latency_ms,
        50
    );
    assert_eq!(
        SandboxOptions::from_json(&serde_json::Value::Null).unwrap(),
        SandboxOptions::default()
    );
}
