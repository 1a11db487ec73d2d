use super::*;
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer;
use p256::pkcs8::EncodePublicKey;

const GENERIC_EVENTS: &str = include_str!("testdata/generic_events.json");
const GENERIC_BAD_EVENT: &str = include_str!("testdata/generic_bad_event.json");
const GENERIC_BAD_TIME: &str = include_str!("testdata/generic_bad_time.json");
const GENERIC_WRONG_SHAPE: &str = include_str!("testdata/generic_wrong_shape.json");
const MAILGUN_DELIVERED: &str = include_str!("testdata/mailgun_delivered.json");
const MAILGUN_FAILED_PERMANENT: &str = include_str!("testdata/mailgun_failed_permanent.json");
const MAILGUN_FAILED_TEMPORARY: &str = include_str!("testdata/mailgun_failed_temporary.json");
const MAILGUN_CLICKED: &str = include_str!("testdata/mailgun_clicked.json");
const MAILGUN_OPENED: &str = include_str!("testdata/mailgun_opened.json");
const MAILGUN_COMPLAINED: &str = include_str!("testdata/mailgun_complained.json");
const MAILGUN_UNSUBSCRIBED: &str = include_str!("testdata/mailgun_unsubscribed.json");
const MAILGUN_ACCEPTED: &str = include_str!("testdata/mailgun_accepted.json");
const MAILGUN_REJECTED: &str = include_str!("testdata/mailgun_rejected.json");
const MAILGUN_MISSING_EVENT: &str = include_str!("testdata/mailgun_missing_event.json");
const MAILGUN_REPLY_URLENCODED: &str = include_str!("testdata/mailgun_reply.urlencoded");
const MAILGUN_REPLY_MULTIPART: &str = include_str!("testdata/mailgun_reply.multipart");
const SENDGRID_EVENTS: &str = include_str!("testdata/sendgrid_events.json");
const SENDGRID_MISSING_TIMESTAMP: &str = include_str!("testdata/sendgrid_missing_timestamp.json");
const SENDGRID_NOT_ARRAY: &str = include_str!("testdata/sendgrid_not_array.json");
const SENDGRID_INBOUND: &str = include_str!("testdata/sendgrid_inbound.multipart");
const SENDGRID_INBOUND_RAW: &str = include_str!("testdata/sendgrid_inbound_raw.multipart");

/// Every testdata file, for the no-panic sweep.
const ALL_TESTDATA: [&str; 21] = [
    GENERIC_EVENTS,
    GENERIC_BAD_EVENT,
    GENERIC_BAD_TIME,
    GENERIC_WRONG_SHAPE,
    MAILGUN_DELIVERED,
    MAILGUN_FAILED_PERMANENT,
    MAILGUN_FAILED_TEMPORARY,
    MAILGUN_CLICKED,
    MAILGUN_OPENED,
    MAILGUN_COMPLAINED,
    MAILGUN_UNSUBSCRIBED,
    MAILGUN_ACCEPTED,
    MAILGUN_REJECTED,
    MAILGUN_MISSING_EVENT,
    MAILGUN_REPLY_URLENCODED,
    MAILGUN_REPLY_MULTIPART,
    SENDGRID_EVENTS,
    SENDGRID_MISSING_TIMESTAMP,
    SENDGRID_NOT_ARRAY,
    SENDGRID_INBOUND,
    SENDGRID_INBOUND_RAW,
];

const GENERIC_SECRET: &str = "whsec_inbound_test";
const MAILGUN_KEY: &str = "key-7f3b2c1d0e9a8b7c6d5e4f3a2b1c0d9e";
const MAILGUN_BOUNDARY: &str = "a4f7b3c9e1d2f0a8b6c5d4e3f2a1b0c9";
const SENDGRID_BOUNDARY: &str = "xYzZY";
const PARSE_USER: &str = "sendgrid-parse";
const PARSE_PASSWORD: &str = "s3cr3t:with:colons";
/// 2026-03-05T10:00:00Z, the "now" of most requests here.
const NOW: i64 = 1_772_704_800;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

fn utc(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
}

/// A request with owned parts.
struct Call {
    headers: Vec<(String, String)>,
    content_type: Option<String>,
    body: Vec<u8>,
    now: DateTime<Utc>,
}

impl Call {
    fn new(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Call {
            headers: Vec::new(),
            content_type: Some(content_type.to_owned()),
            body: body.into(),
            now: at(NOW),
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    fn now(mut self, seconds: i64) -> Self {
        self.now = at(seconds);
        self
    }

    fn run(&self, provider: Provider, verifier: &Verifier) -> Result<Vec<MailEvent>, InboundError> {
        let req = Request::new(&self.headers, self.content_type.as_deref(), &self.body, self.now);
        receive(provider, verifier, &req)
    }
}

fn unauthorized(reason: &'static str) -> Result<Vec<MailEvent>, InboundError> {
    Err(InboundError::Unauthorized(reason))
}

/// The `Malformed` message, failing the test on anything else.
fn malformed_message(result: Result<Vec<MailEvent>, InboundError>) -> String {
    match result {
        Err(InboundError::Malformed(message)) => message,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

fn hmac_hex(key: &str, message: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(message);
    hex(&mac.finalize().into_bytes())
}

/// Multipart testdata is kept with LF line ends; on the wire every line ends in CRLF.
fn crlf(text: &str) -> Vec<u8> {
    text.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

// --- generic --------------------------------------------------------------------------------

fn generic_verifier() -> Verifier {
    Verifier::new().with_generic_secret(GENERIC_SECRET)
}

/// The project's `Leadgate-Signature` value for `body` at `t`.
fn leadgate_signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(body);
    format!("t={t},v1={}", hmac_hex(secret, &message))
}

fn generic_call(body: &str) -> Call {
    Call::new("application/json; charset=utf-8", body).header(
        "Leadgate-Signature",
        leadgate_signature(GENERIC_SECRET, NOW, body.as_bytes()),
    )
}

#[test]
fn generic_events_are_normalized() {
    let events = generic_call(GENERIC_EVENTS)
        .run(Provider::Generic, &generic_verifier())
        .unwrap();
    assert_eq!(events.len(), 9);

    let delivered = &events[0];
    assert_eq!(delivered.id, "evt_01JNQ8Z0A1");
    assert_eq!(delivered.kind, MailEventKind::Delivered);
    assert_eq!(
        delivered.message_id.as_deref(),
        Some("20260301120000.1.A1B2C3@mail.leadgate.example")
    );
    assert_eq!(delivered.recipient.as_deref(), Some("ada@example.com"));
    assert_eq!(delivered.occurred_at, utc("2026-03-01T12:00:05Z"));
    assert!(delivered.in_reply_to.is_empty());

    let hard = &events[1];
    assert_eq!(hard.kind, MailEventKind::Bounced { permanent: true });
    // padded and bracketed on the wire
    assert_eq!(
        hard.message_id.as_deref(),
        Some("20260301120000.2.D4E5F6@mail.leadgate.example")
    );
    assert_eq!(hard.occurred_at, utc("2026-03-01T12:00:07Z"));
    assert!(hard.detail.as_deref().unwrap().starts_with("550 5.1.1"));

    let soft = &events[2];
    assert_eq!(soft.kind, MailEventKind::Bounced { permanent: false });
    assert_eq!(
        soft.message_id.as_deref(),
        Some("20260301120000.3.0A0B0C@mail.leadgate.example")
    );
    assert_eq!(soft.occurred_at, utc("2026-03-01T12:00:09.250Z"));

    assert_eq!(events[3].kind, MailEventKind::Deferred);

    let reply = &events[4];
    assert_eq!(reply.kind, MailEventKind::Replied);
    assert_eq!(
        reply.message_id.as_deref(),
        Some("CAF=reply.123@mail.example.com")
    );
    assert_eq!(
        reply.in_reply_to,
        [
            "20260301120000.1.A1B2C3@mail.leadgate.example",
            "thread-root.77@mail.leadgate.example"
        ]
    );
    assert_eq!(reply.detail.as_deref(), Some("Sounds good, let's talk Tuesday."));

    let unsubscribed = &events[5];
    assert_eq!(unsubscribed.kind, MailEventKind::Unsubscribed);
    assert!(unsubscribed.id.starts_with("sha256:"), "{}", unsubscribed.id);
    assert_eq!(unsubscribed.id.len(), "sha256:".len() + 32);

    assert_eq!(events[6].kind, MailEventKind::Complained);
    assert_eq!(events[7].kind, MailEventKind::Clicked);
    assert_eq!(
        events[7].url.as_deref(),
        Some("https://leadgate.example/pricing?utm_source=campaign&utm_medium=email")
    );
    assert_eq!(events[8].kind, MailEventKind::Opened);
    assert_eq!(events[8].url, None);
}

#[test]
fn an_event_without_an_id_gets_the_same_hash_on_redelivery_only() {
    let again = generic_call(GENERIC_EVENTS)
        .run(Provider::Generic, &generic_verifier())
        .unwrap();
    let first = generic_call(GENERIC_EVENTS)
        .run(Provider::Generic, &generic_verifier())
        .unwrap();
    assert_eq!(first[5].id, again[5].id);

    let later = GENERIC_EVENTS.replace("2026-03-03T10:00:00Z", "2026-03-03T10:00:01Z");
    let moved = generic_call(&later)
        .run(Provider::Generic, &generic_verifier())
        .unwrap();
    assert_ne!(first[5].id, moved[5].id);
}

#[test]
fn the_generic_signature_is_the_projects_outbound_scheme() {
    // the known answer of `events::webhooks::sign("whsec_test", 1700000000, …)`
    let body = r#"{"type":"lead.created"}"#;
    let header = "t=1700000000,v1=f4ab7ff07e975aca79e20f4f3519fd5b0da6471071d75d1bd6ba666cc98d2ebe";
    let verifier = Verifier::new().with_generic_secret("whsec_test");
    let call = Call::new("application/json", body)
        .header("leadgate-signature", header)
        .now(1_700_000_000);
    // authentic, so what is left to say is that the body is not an events object
    let message = malformed_message(call.run(Provider::Generic, &verifier));
    assert!(message.contains("\"events\" array"), "{message}");
}

#[test]
fn generic_requests_without_a_valid_fresh_signature_are_unauthorized() {
    let verifier = generic_verifier();
    let body = GENERIC_EVENTS.as_bytes();
    let with = |header: String| Call::new("application/json", body).header("leadgate-signature", header);

    let wrong_secret = with(leadgate_signature("whsec_other", NOW, body));
    assert_eq!(
        wrong_secret.run(Provider::Generic, &verifier),
        unauthorized("bad signature")
    );

    let missing = Call::new("application/json", body);
    assert_eq!(
        missing.run(Provider::Generic, &verifier),
        unauthorized("missing signature")
    );

    let stale = with(leadgate_signature(GENERIC_SECRET, NOW - 301, body));
    assert_eq!(
        stale.run(Provider::Generic, &verifier),
        unauthorized("stale timestamp")
    );
    let future = with(leadgate_signature(GENERIC_SECRET, NOW + 301, body));
    assert_eq!(
        future.run(Provider::Generic, &verifier),
        unauthorized("stale timestamp")
    );
    let edge = with(leadgate_signature(GENERIC_SECRET, NOW - 300, body));
    assert!(edge.run(Provider::Generic, &verifier).is_ok());

    let other_body = Call::new("application/json", GENERIC_BAD_TIME).header(
        "leadgate-signature",
        leadgate_signature(GENERIC_SECRET, NOW, body),
    );
    assert_eq!(
        other_body.run(Provider::Generic, &verifier),
        unauthorized("bad signature")
    );

    for garbage in ["", "t=1", "v1=00", "t=x,v1=zz", "sha256=abc"] {
        assert_eq!(
            with(garbage.to_owned()).run(Provider::Generic, &verifier),
            unauthorized("malformed signature header"),
            "{garbage}"
        );
    }
    let bad_hex = with(format!("t={NOW},v1=not-hex"));
    assert_eq!(
        bad_hex.run(Provider::Generic, &verifier),
        unauthorized("bad signature")
    );
}

#[test]
fn any_of_several_generic_signatures_may_match() {
    let good = leadgate_signature(GENERIC_SECRET, NOW, GENERIC_EVENTS.as_bytes());
    let old = leadgate_signature("whsec_retired", NOW, GENERIC_EVENTS.as_bytes());
    let v1 = good.split_once(",v1=").unwrap().1;
    let rotated = format!("{old},v1={v1}");
    let call = Call::new("application/json", GENERIC_EVENTS).header("leadgate-signature", rotated);
    assert_eq!(call.run(Provider::Generic, &generic_verifier()).unwrap().len(), 9);
}

#[test]
fn the_tolerance_is_configurable() {
    let verifier = generic_verifier().with_tolerance(Duration::from_secs(10));
    assert_eq!(verifier.tolerance(), Duration::from_secs(10));
    let call = Call::new("application/json", GENERIC_EVENTS).header(
        "leadgate-signature",
        leadgate_signature(GENERIC_SECRET, NOW - 11, GENERIC_EVENTS.as_bytes()),
    );
    assert_eq!(
        call.run(Provider::Generic, &verifier),
        unauthorized("stale timestamp")
    );
}

#[test]
fn generic_without_a_secret_is_not_configured() {
    let call = generic_call(GENERIC_EVENTS);
    let none = Verifier::new().with_mailgun_signing_key(MAILGUN_KEY);
    assert_eq!(
        call.run(Provider::Generic, &none),
        Err(InboundError::NotConfigured(Provider::Generic))
    );
    let blank = Verifier::new().with_generic_secret("  ");
    assert_eq!(
        call.run(Provider::Generic, &blank),
        Err(InboundError::NotConfigured(Provider::Generic))
    );
}

#[test]
fn malformed_generic_bodies_say_what_is_wrong() {
    let verifier = generic_verifier();

    let message = malformed_message(generic_call(GENERIC_BAD_EVENT).run(Provider::Generic, &verifier));
    assert!(
        message.contains("event 2") && message.contains("has no type"),
        "{message}"
    );

    let message = malformed_message(generic_call(GENERIC_BAD_TIME).run(Provider::Generic, &verifier));
    assert!(
        message.contains("event 0") && message.contains("RFC 3339"),
        "{message}"
    );

    let message = malformed_message(generic_call(GENERIC_WRONG_SHAPE).run(Provider::Generic, &verifier));
    assert!(
        message.contains("JSON object with an \"events\" array"),
        "{message}"
    );

    let message = malformed_message(generic_call("{\"events\": [").run(Provider::Generic, &verifier));
    assert!(message.contains("not valid JSON"), "{message}");

    let unknown = GENERIC_EVENTS.replace("\"type\": \"opened\"", "\"type\": \"forwarded\"");
    let message = malformed_message(generic_call(&unknown).run(Provider::Generic, &verifier));
    assert!(
        message.contains("event 8") && message.contains("\"forwarded\""),
        "{message}"
    );

    let typed = GENERIC_EVENTS.replace("\"id\": \"evt_01JNQ8Z0A4\"", "\"id\": 4");
    let message = malformed_message(generic_call(&typed).run(Provider::Generic, &verifier));
    assert!(
        message.contains("event 3") && message.contains("id must be a string"),
        "{message}"
    );

    let refs = GENERIC_EVENTS.replace("\"references\": [", "\"references\": [7, ");
    let message = malformed_message(generic_call(&refs).run(Provider::Generic, &verifier));
    assert!(
        message.contains("event 4") && message.contains("references"),
        "{message}"
    );

    let form = Call::new("application/x-www-form-urlencoded", "events=1");
    let message = malformed_message(form.run(Provider::Generic, &verifier));
    assert!(message.contains("expected application/json"), "{message}");
}

#[test]
fn more_than_a_thousand_generic_events_are_refused() {
    let one = r#"{"type": "opened", "recipient": "ada@example.com", "occurredAt": "2026-03-01T12:00:00Z"}"#;
    let body = |n: usize| format!("{{\"events\": [{}]}}", vec![one; n].join(","));
    let verifier = generic_verifier();
    assert_eq!(
        generic_call(&body(1000))
            .run(Provider::Generic, &verifier)
            .unwrap()
            .len(),
        1000
    );
    let message = malformed_message(generic_call(&body(1001)).run(Provider::Generic, &verifier));
    assert!(message.contains("at most 1000"), "{message}");
}

// --- Mailgun --------------------------------------------------------------------------------

fn mailgun_verifier() -> Verifier {
    Verifier::new().with_mailgun_signing_key(MAILGUN_KEY)
}

/// A webhook body with its signature block re-made under `key` at `t`.
fn mailgun_signed(sample: &str, key: &str, t: i64) -> String {
    let mut body: Value = serde_json::from_str(sample).unwrap();
    let signature = body["signature"].as_object_mut().unwrap();
    let token = signature["token"].as_str().unwrap().to_owned();
    signature.insert("timestamp".into(), Value::String(t.to_string()));
    signature.insert(
        "signature".into(),
        Value::String(hmac_hex(key, format!("{t}{token}").as_bytes())),
    );
    body.to_string()
}

fn mailgun_one(sample: &str) -> MailEvent {
    let call = Call::new("application/json", mailgun_signed(sample, MAILGUN_KEY, NOW));
    let mut events = call.run(Provider::Mailgun, &mailgun_verifier()).unwrap();
    assert_eq!(events.len(), 1);
    events.remove(0)
}

#[test]
fn mailgun_webhooks_are_normalized() {
    let delivered = mailgun_one(MAILGUN_DELIVERED);
    assert_eq!(delivered.id, "CPgfbmQMTCKtHW6uIWtuVe");
    assert_eq!(delivered.kind, MailEventKind::Delivered);
    assert_eq!(
        delivered.message_id.as_deref(),
        Some("20260301120000.1.A1B2C3@mail.leadgate.example")
    );
    assert_eq!(delivered.recipient.as_deref(), Some("ada@example.com"));
    assert_eq!(delivered.occurred_at, utc("2026-03-01T12:00:05.153125Z"));
    assert_eq!(delivered.detail, None);

    let bounced = mailgun_one(MAILGUN_FAILED_PERMANENT);
    assert_eq!(bounced.id, "G9Bn5sl1TC6nu79C8C0bwg");
    assert_eq!(bounced.kind, MailEventKind::Bounced { permanent: true });
    assert_eq!(bounced.recipient.as_deref(), Some("nobody@example.net"));
    let detail = bounced.detail.unwrap();
    assert!(
        detail.starts_with("bounce: 550 5.1.1 The email account that you tried to reach does not exist."),
        "{detail}"
    );

    let deferred = mailgun_one(MAILGUN_FAILED_TEMPORARY);
    assert_eq!(deferred.kind, MailEventKind::Deferred);
    assert_eq!(
        deferred.detail.as_deref(),
        Some(
            "greylisted: 450 4.2.0 Recipient address rejected: Greylisted (Recipient address rejected: \
             Greylisted, see https://postgrey.example.org/)"
        )
    );

    let clicked = mailgun_one(MAILGUN_CLICKED);
    assert_eq!(clicked.kind, MailEventKind::Clicked);
    assert_eq!(
        clicked.url.as_deref(),
        Some("https://leadgate.example/pricing?utm_source=campaign&utm_medium=email")
    );
    assert_eq!(
        clicked.message_id.as_deref(),
        Some("20260301120000.1.A1B2C3@mail.leadgate.example")
    );

    assert_eq!(mailgun_one(MAILGUN_OPENED).kind, MailEventKind::Opened);
    assert_eq!(mailgun_one(MAILGUN_COMPLAINED).kind, MailEventKind::Complained);
    assert_eq!(
        mailgun_one(MAILGUN_UNSUBSCRIBED).kind,
        MailEventKind::Unsubscribed
    );

    let rejected = mailgun_one(MAILGUN_REJECTED);
    assert_eq!(rejected.kind, MailEventKind::Bounced { permanent: true });
    assert_eq!(
        rejected.detail.as_deref(),
        Some("Sandbox subdomains are for test purposes only.")
    );
}

#[test]
fn the_content_type_may_come_from_the_headers_and_in_any_case() {
    let body = mailgun_signed(MAILGUN_DELIVERED, MAILGUN_KEY, NOW);
    let headers = [(
        "content-type".to_owned(),
        "Application/JSON; charset=UTF-8".to_owned(),
    )];
    let req = Request::new(&headers, None, body.as_bytes(), at(NOW));
    assert_eq!(
        receive(Provider::Mailgun, &mailgun_verifier(), &req)
            .unwrap()
            .len(),
        1
    );
    let req = Request::new(&[], None, body.as_bytes(), at(NOW));
    let message = malformed_message(receive(Provider::Mailgun, &mailgun_verifier(), &req));
    assert!(message.contains("no content type"), "{message}");
}

#[test]
fn a_numeric_mailgun_signature_timestamp_is_signed_as_its_digits() {
    let mut body: Value = serde_json::from_str(&mailgun_signed(MAILGUN_OPENED, MAILGUN_KEY, NOW)).unwrap();
    body["signature"]["timestamp"] = Value::from(NOW);
    let call = Call::new("application/json", body.to_string());
    assert_eq!(
        call.run(Provider::Mailgun, &mailgun_verifier()).unwrap()[0].kind,
        MailEventKind::Opened
    );
}

#[test]
fn mailgun_accepted_and_unknown_events_produce_nothing() {
    let verifier = mailgun_verifier();
    let accepted = Call::new(
        "application/json",
        mailgun_signed(MAILGUN_ACCEPTED, MAILGUN_KEY, NOW),
    );
    assert_eq!(accepted.run(Provider::Mailgun, &verifier), Ok(vec![]));
    let future = MAILGUN_ACCEPTED.replace("\"event\": \"accepted\"", "\"event\": \"list_member_uploaded\"");
    let future = Call::new("application/json", mailgun_signed(&future, MAILGUN_KEY, NOW));
    assert_eq!(future.run(Provider::Mailgun, &verifier), Ok(vec![]));
}

#[test]
fn a_subaccount_event_verifies_by_its_parent_signature() {
    let mut body: Value = serde_json::from_str(&mailgun_signed(MAILGUN_DELIVERED, MAILGUN_KEY, NOW)).unwrap();
    let signature = body["signature"].as_object_mut().unwrap();
    let parent = signature["signature"].clone();
    signature.insert("parent-signature".into(), parent);
    signature.insert(
        "signature".into(),
        Value::String(hmac_hex("key-subaccount", b"x")),
    );
    let call = Call::new("application/json", body.to_string());
    assert_eq!(call.run(Provider::Mailgun, &mailgun_verifier()).unwrap().len(), 1);
}

#[test]
fn mailgun_webhooks_without_a_valid_fresh_signature_are_unauthorized() {
    let verifier = mailgun_verifier();
    let run = |body: String| Call::new("application/json", body).run(Provider::Mailgun, &verifier);

    assert_eq!(
        run(mailgun_signed(MAILGUN_DELIVERED, "key-wrong", NOW)),
        unauthorized("bad signature")
    );
    assert_eq!(
        run(mailgun_signed(MAILGUN_DELIVERED, MAILGUN_KEY, NOW - 301)),
        unauthorized("stale timestamp")
    );

    let mut unsigned: Value = serde_json::from_str(MAILGUN_DELIVERED).unwrap();
    unsigned.as_object_mut().unwrap().remove("signature");
    assert_eq!(run(unsigned.to_string()), unauthorized("missing signature"));

    let mut tokenless: Value =
        serde_json::from_str(&mailgun_signed(MAILGUN_DELIVERED, MAILGUN_KEY, NOW)).unwrap();
    tokenless["signature"].as_object_mut().unwrap().remove("token");
    assert_eq!(run(tokenless.to_string()), unauthorized("missing signature"));

    // the signature as it came with the sample: another key, years ago
    assert_eq!(run(MAILGUN_DELIVERED.to_owned()), unauthorized("stale timestamp"));
    let old = Call::new("application/json", MAILGUN_DELIVERED).now(1_529_006_854);
    assert_eq!(
        old.run(Provider::Mailgun, &verifier),
        unauthorized("bad signature")
    );
}

#[test]
fn mailgun_without_a_key_is_not_configured() {
    let call = Call::new(
        "application/json",
        mailgun_signed(MAILGUN_DELIVERED, MAILGUN_KEY, NOW),
    );
    assert_eq!(
        call.run(Provider::Mailgun, &generic_verifier()),
        Err(InboundError::NotConfigured(Provider::Mailgun))
    );
}

#[test]
fn malformed_mailgun_bodies_say_what_is_wrong() {
    let verifier = mailgun_verifier();
    let run = |body: String| Call::new("application/json", body).run(Provider::Mailgun, &verifier);

    let message = malformed_message(run(mailgun_signed(MAILGUN_MISSING_EVENT, MAILGUN_KEY, NOW)));
    assert!(message.contains("event-data: has no event"), "{message}");

    let severless = MAILGUN_FAILED_PERMANENT.replace("\"severity\": \"permanent\",", "");
    let message = malformed_message(run(mailgun_signed(&severless, MAILGUN_KEY, NOW)));
    assert!(message.contains("no severity"), "{message}");

    let timeless = MAILGUN_OPENED.replace("\"timestamp\": 1772366940.332874,", "");
    let message = malformed_message(run(mailgun_signed(&timeless, MAILGUN_KEY, NOW)));
    assert!(message.contains("has no timestamp"), "{message}");

    let mut dataless: Value =
        serde_json::from_str(&mailgun_signed(MAILGUN_OPENED, MAILGUN_KEY, NOW)).unwrap();
    dataless.as_object_mut().unwrap().remove("event-data");
    let message = malformed_message(run(dataless.to_string()));
    assert!(message.contains("event-data"), "{message}");

    let message = malformed_message(run("[]".to_owned()));
    assert!(message.contains("JSON object"), "{message}");
    let message = malformed_message(run("{\"signature\": ".to_owned()));
    assert!(message.contains("not valid JSON"), "{message}");

    let text = Call::new("text/plain", "hello");
    let message = malformed_message(text.run(Provider::Mailgun, &verifier));
    assert!(
        message.contains("application/json") && message.contains("multipart/form-data"),
        "{message}"
    );
}

/// The reply fixture with its placeholders filled in: signed under `key` at `t`.
fn mailgun_reply(template: &str, key: &str, t: i64) -> String {
    let token = "c1d9a4e07b5f23a86d0e4c9b17f2a35e8d6b0c4f1a9e7d3b25";
    template
        .replace("TIMESTAMP", &t.to_string())
        .replace("SIGNATURE", &hmac_hex(key, format!("{t}{token}").as_bytes()))
}

fn assert_mailgun_reply(events: &[MailEvent]) {
    assert_eq!(events.len(), 1);
    let reply = &events[0];
    assert_eq!(reply.kind, MailEventKind::Replied);
    assert_eq!(reply.id, "CAJ8x+Fm2vQ3kWj5=reply.9921@mail.example.com");
    assert_eq!(reply.message_id.as_deref(), Some(reply.id.as_str()));
    assert_eq!(
        reply.in_reply_to,
        [
            "20260302080000.7.F00BA4@mail.leadgate.example",
            "20260301120000.1.A1B2C3@mail.leadgate.example"
        ]
    );
    assert_eq!(reply.recipient.as_deref(), Some("ada@example.com"));
    assert_eq!(reply.occurred_at, at(NOW));
    assert_eq!(
        reply.detail.as_deref(),
        Some("Sounds good, Tuesday at 3pm works for me.")
    );
}

#[test]
fn a_mailgun_route_reply_becomes_one_replied_event() {
    let verifier = mailgun_verifier();
    let form = Call::new(
        "application/x-www-form-urlencoded",
        mailgun_reply(MAILGUN_REPLY_URLENCODED, MAILGUN_KEY, NOW),
    );
    assert_mailgun_reply(&form.run(Provider::Mailgun, &verifier).unwrap());

    let multipart = Call::new(
        &format!("multipart/form-data; boundary={MAILGUN_BOUNDARY}"),
        crlf(&mailgun_reply(MAILGUN_REPLY_MULTIPART, MAILGUN_KEY, NOW)),
    );
    assert_mailgun_reply(&multipart.run(Provider::Mailgun, &verifier).unwrap());
}

#[test]
fn mailgun_reply_headers_fall_back_to_message_headers() {
    let signed = mailgun_reply(MAILGUN_REPLY_URLENCODED, MAILGUN_KEY, NOW);
    let mut rebuilt = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in url::form_urlencoded::parse(signed.as_bytes()) {
        if !["Message-Id", "In-Reply-To", "References", "From"].contains(&name.as_ref()) {
            rebuilt.append_pair(&name, &value);
        }
    }
    let call = Call::new("application/x-www-form-urlencoded", rebuilt.finish());
    assert_mailgun_reply(&call.run(Provider::Mailgun, &mailgun_verifier()).unwrap());
}

#[test]
fn mailgun_route_posts_are_verified_like_webhooks() {
    let verifier = mailgun_verifier();
    let run =
        |body: String| Call::new("application/x-www-form-urlencoded", body).run(Provider::Mailgun, &verifier);
    assert_eq!(
        run(mailgun_reply(MAILGUN_REPLY_URLENCODED, "key-wrong", NOW)),
        unauthorized("bad signature")
    );
    assert_eq!(
        run(mailgun_reply(MAILGUN_REPLY_URLENCODED, MAILGUN_KEY, NOW - 3600)),
        unauthorized("stale timestamp")
    );
    let unsigned = MAILGUN_REPLY_URLENCODED.replace("&signature=SIGNATURE", "");
    assert_eq!(run(unsigned), unauthorized("missing signature"));
    let bad_time = MAILGUN_REPLY_URLENCODED.replace("timestamp=TIMESTAMP", "timestamp=soon");
    assert_eq!(run(bad_time), unauthorized("malformed signature timestamp"));
}

#[test]
fn a_legacy_mailgun_tracking_form_is_refused_with_a_hint() {
    let t = NOW.to_string();
    let token = "0123456789abcdef0123456789abcdef0123456789abcdef01";
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("event", "delivered")
        .append_pair("recipient", "ada@example.com")
        .append_pair("domain", "mail.leadgate.example")
        .append_pair("Message-Id", "<20260301120000.1.A1B2C3@mail.leadgate.example>")
        .append_pair("timestamp", &t)
        .append_pair("token", token)
        .append_pair(
            "signature",
            &hmac_hex(MAILGUN_KEY, format!("{t}{token}").as_bytes()),
        )
        .finish();
    let call = Call::new("application/x-www-form-urlencoded", body);
    let message = malformed_message(call.run(Provider::Mailgun, &mailgun_verifier()));
    assert!(message.contains("legacy"), "{message}");
}

// --- SendGrid Event Webhook -----------------------------------------------------------------

fn sendgrid_signing_key() -> SigningKey {
    let seed: [u8; 32] = Sha256::digest(b"leadgate inbound sendgrid test key").into();
    SigningKey::from_slice(&seed).unwrap()
}

fn sendgrid_public_key() -> String {
    let der = sendgrid_signing_key()
        .verifying_key()
        .to_public_key_der()
        .unwrap();
    STANDARD.encode(der.as_bytes())
}

fn sendgrid_verifier() -> Verifier {
    Verifier::new().with_sendgrid_public_key(sendgrid_public_key())
}

fn sendgrid_signature(key: &SigningKey, timestamp: &str, body: &[u8]) -> Signature {
    let mut message = timestamp.as_bytes().to_vec();
    message.extend_from_slice(body);
    key.sign(&message)
}

fn sendgrid_call_with(key: &SigningKey, t: i64, body: &str) -> Call {
    let signature = sendgrid_signature(key, &t.to_string(), body.as_bytes());
    Call::new("application/json", body)
        .header(
            "X-Twilio-Email-Event-Webhook-Signature",
            STANDARD.encode(signature.to_der().as_bytes()),
        )
        .header("X-Twilio-Email-Event-Webhook-Timestamp", t.to_string())
}

fn sendgrid_call(body: &str) -> Call {
    sendgrid_call_with(&sendgrid_signing_key(), NOW, body)
}

#[test]
fn sendgrid_events_are_normalized() {
    let events = sendgrid_call(SENDGRID_EVENTS)
        .run(Provider::Sendgrid, &sendgrid_verifier())
        .unwrap();
    let kinds: Vec<MailEventKind> = events.iter().map(|e| e.kind).collect();
    // processed, group_resubscribe and the account event are skipped
    assert_eq!(
        kinds,
        [
            MailEventKind::Deferred,
            MailEventKind::Delivered,
            MailEventKind::Opened,
            MailEventKind::Clicked,
            MailEventKind::Bounced { permanent: true },
            MailEventKind::Bounced { permanent: false },
            MailEventKind::Bounced { permanent: true },
            MailEventKind::Complained,
            MailEventKind::Unsubscribed,
            MailEventKind::Unsubscribed,
        ]
    );

    let deferred = &events[0];
    assert_eq!(deferred.id, "jWmZXTZbtHTV2-S47asrww");
    assert_eq!(deferred.detail.as_deref(), Some("400 try again later"));
    assert_eq!(deferred.recipient.as_deref(), Some("slow@example.org"));

    let delivered = &events[1];
    assert_eq!(delivered.id, "zmzJhfJgAfUSOW80yEbPyw");
    assert_eq!(
        delivered.message_id.as_deref(),
        Some("20260301120000.1.A1B2C3@mail.leadgate.example")
    );
    assert_eq!(delivered.occurred_at, at(1_772_366_405));
    assert_eq!(delivered.detail, None);

    // opens carry no smtp-id
    assert_eq!(events[2].message_id, None);
    assert_eq!(
        events[3].url.as_deref(),
        Some("https://leadgate.example/pricing?utm_source=campaign&utm_medium=email")
    );
    assert_eq!(
        events[4].detail.as_deref(),
        Some(
            "550 5.1.1 The email account that you tried to reach does not exist. \
             (status 5.1.1, Invalid Address)"
        )
    );
    assert_eq!(events[5].recipient.as_deref(), Some("blocked@example.com"));
    assert_eq!(
        events[6].detail.as_deref(),
        Some("Bounced Address (status 5.0.0)")
    );
    assert_eq!(events[6].recipient.as_deref(), Some("invalid@invalid"));
}

#[test]
fn sendgrid_signatures_with_high_s_verify_too() {
    let key = sendgrid_signing_key();
    let t = NOW.to_string();
    let signature = sendgrid_signature(&key, &t, SENDGRID_EVENTS.as_bytes());
    let (r, s) = signature.split_scalars();
    let flipped = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
    for signature in [signature, flipped] {
        let call = Call::new("application/json", SENDGRID_EVENTS)
            .header(
                SENDGRID_SIGNATURE_HEADER,
                STANDARD.encode(signature.to_der().as_bytes()),
            )
            .header(SENDGRID_TIMESTAMP_HEADER, t.clone());
        assert_eq!(
            call.run(Provider::Sendgrid, &sendgrid_verifier()).unwrap().len(),
            10
        );
    }
}

#[test]
fn sendgrid_events_without_a_valid_fresh_signature_are_unauthorized() {
    let verifier = sendgrid_verifier();
    let other_key = SigningKey::from_slice(&[0x42; 32]).unwrap();
    assert_eq!(
        sendgrid_call_with(&other_key, NOW, SENDGRID_EVENTS).run(Provider::Sendgrid, &verifier),
        unauthorized("bad signature")
    );
    assert_eq!(
        sendgrid_call_with(&sendgrid_signing_key(), NOW - 301, SENDGRID_EVENTS)
            .run(Provider::Sendgrid, &verifier),
        unauthorized("stale timestamp")
    );

    let unsigned = Call::new("application/json", SENDGRID_EVENTS);
    assert_eq!(
        unsigned.run(Provider::Sendgrid, &verifier),
        unauthorized("missing signature")
    );
    let timeless =
        Call::new("application/json", SENDGRID_EVENTS).header(SENDGRID_SIGNATURE_HEADER, "MEUCIQ==");
    assert_eq!(
        timeless.run(Provider::Sendgrid, &verifier),
        unauthorized("missing signature")
    );

    // signed at one time, presented as another
    let mut shifted = sendgrid_call(SENDGRID_EVENTS);
    shifted.headers[1].1 = (NOW - 1).to_string();
    assert_eq!(
        shifted.run(Provider::Sendgrid, &verifier),
        unauthorized("bad signature")
    );

    let mut garbled = sendgrid_call(SENDGRID_EVENTS);
    garbled.headers[0].1 = "not base64!".into();
    assert_eq!(
        garbled.run(Provider::Sendgrid, &verifier),
        unauthorized("bad signature")
    );
    garbled.headers[0].1 = STANDARD.encode(b"not DER");
    assert_eq!(
        garbled.run(Provider::Sendgrid, &verifier),
        unauthorized("bad signature")
    );

    let mut tampered = sendgrid_call(SENDGRID_EVENTS);
    tampered.body = SENDGRID_EVENTS
        .replace("\"bounce\"", "\"delivered\"")
        .into_bytes();
    assert_eq!(
        tampered.run(Provider::Sendgrid, &verifier),
        unauthorized("bad signature")
    );
}

#[test]
fn a_pem_wrapped_sendgrid_key_is_accepted() {
    let key = sendgrid_public_key();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
        &key[..64],
        &key[64..]
    );
    let verifier = Verifier::new().with_sendgrid_public_key(pem);
    assert_eq!(
        sendgrid_call(SENDGRID_EVENTS)
            .run(Provider::Sendgrid, &verifier)
            .unwrap()
            .len(),
        10
    );
}

#[test]
fn sendgrid_halves_are_configured_separately() {
    let events = sendgrid_call(SENDGRID_EVENTS);
    let parse = sendgrid_parse_call(SENDGRID_INBOUND, PARSE_USER, PARSE_PASSWORD);
    let not_configured = Err(InboundError::NotConfigured(Provider::Sendgrid));

    let nothing = generic_verifier();
    assert_eq!(events.run(Provider::Sendgrid, &nothing), not_configured);
    assert_eq!(parse.run(Provider::Sendgrid, &nothing), not_configured);

    let only_key = sendgrid_verifier();
    assert!(events.run(Provider::Sendgrid, &only_key).is_ok());
    assert_eq!(parse.run(Provider::Sendgrid, &only_key), not_configured);

    let only_parse = Verifier::new().with_sendgrid_inbound_basic(PARSE_USER, PARSE_PASSWORD);
    assert_eq!(events.run(Provider::Sendgrid, &only_parse), not_configured);
    assert!(parse.run(Provider::Sendgrid, &only_parse).is_ok());

    let broken = Verifier::new().with_sendgrid_public_key("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE");
    assert!(broken.check().is_err());
    assert_eq!(events.run(Provider::Sendgrid, &broken), not_configured);
}

#[test]
fn malformed_sendgrid_bodies_say_what_is_wrong() {
    let verifier = sendgrid_verifier();

    let message =
        malformed_message(sendgrid_call(SENDGRID_MISSING_TIMESTAMP).run(Provider::Sendgrid, &verifier));
    assert!(
        message.contains("event 1") && message.contains("timestamp"),
        "{message}"
    );

    let message = malformed_message(sendgrid_call(SENDGRID_NOT_ARRAY).run(Provider::Sendgrid, &verifier));
    assert!(message.contains("expected a JSON array of events"), "{message}");

    let nameless = SENDGRID_EVENTS.replace("\"event\": \"spamreport\", ", "");
    let message = malformed_message(sendgrid_call(&nameless).run(Provider::Sendgrid, &verifier));
    assert!(
        message.contains("event 8") && message.contains("no event field"),
        "{message}"
    );

    let message = malformed_message(sendgrid_call("[{\"event\": ").run(Provider::Sendgrid, &verifier));
    assert!(message.contains("not valid JSON"), "{message}");

    let message = malformed_message(sendgrid_call("[1, 2]").run(Provider::Sendgrid, &verifier));
    assert!(message.contains("event 0: not a JSON object"), "{message}");

    let text = Call::new("text/plain", "hello");
    let message = malformed_message(text.run(Provider::Sendgrid, &verifier));
    assert!(
        message.contains("Event Webhook") && message.contains("Inbound Parse"),
        "{message}"
    );

    assert_eq!(sendgrid_call("[]").run(Provider::Sendgrid, &verifier), Ok(vec![]));
}

// --- SendGrid Inbound Parse -----------------------------------------------------------------

fn parse_verifier() -> Verifier {
    Verifier::new().with_sendgrid_inbound_basic(PARSE_USER, PARSE_PASSWORD)
}

fn sendgrid_parse_call(fixture: &str, user: &str, password: &str) -> Call {
    Call::new(
        &format!("multipart/form-data; boundary={SENDGRID_BOUNDARY}"),
        crlf(fixture),
    )
    .header(
        "Authorization",
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))),
    )
}

#[test]
fn an_inbound_parse_reply_becomes_one_replied_event() {
    let events = sendgrid_parse_call(SENDGRID_INBOUND, PARSE_USER, PARSE_PASSWORD)
        .run(Provider::Sendgrid, &parse_verifier())
        .unwrap();
    assert_eq!(events.len(), 1);
    let reply = &events[0];
    assert_eq!(reply.kind, MailEventKind::Replied);
    assert_eq!(reply.id, "CAK4p+Qx9Lr=sg.reply.5512@mail.example.org");
    assert_eq!(reply.message_id.as_deref(), Some(reply.id.as_str()));
    // In-Reply-To first, then the folded References
    assert_eq!(
        reply.in_reply_to,
        [
            "20260303090000.4.77AA02@mail.leadgate.example",
            "20260301120000.3.77AA01@mail.leadgate.example"
        ]
    );
    assert_eq!(reply.recipient.as_deref(), Some("charles@example.org"));
    assert_eq!(reply.occurred_at, utc("2026-03-04T16:20:03Z"));
    let detail = reply.detail.as_deref().unwrap();
    assert!(
        detail.starts_with("Not this quarter, please check back in June."),
        "{detail}"
    );
}

#[test]
fn a_raw_inbound_parse_post_reads_the_messages_header_block() {
    let events = sendgrid_parse_call(SENDGRID_INBOUND_RAW, PARSE_USER, PARSE_PASSWORD)
        .run(Provider::Sendgrid, &parse_verifier())
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, "CAK4p+Qx9Lr=sg.reply.5512@mail.example.org");
    assert_eq!(events[0].in_reply_to.len(), 2);
    assert_eq!(
        events[0].detail.as_deref(),
        Some("Re: Following up on the difference engine demo")
    );
}

#[test]
fn inbound_parse_needs_the_configured_basic_credentials() {
    let verifier = parse_verifier();
    let run = |user: &str, password: &str| {
        sendgrid_parse_call(SENDGRID_INBOUND, user, password).run(Provider::Sendgrid, &verifier)
    };
    assert_eq!(
        run(PARSE_USER, "s3cr3t:with:colon"),
        unauthorized("bad credentials")
    );
    assert_eq!(
        run(PARSE_USER, "s3cr3t:with:colonss"),
        unauthorized("bad credentials")
    );
    assert_eq!(run("sendgrid", PARSE_PASSWORD), unauthorized("bad credentials"));
    assert_eq!(run("", ""), unauthorized("bad credentials"));
    // the same bytes split elsewhere between user and password
    assert_eq!(
        run("sendgrid-pars", "es3cr3t:with:colons"),
        unauthorized("bad credentials")
    );

    let mut anonymous = sendgrid_parse_call(SENDGRID_INBOUND, PARSE_USER, PARSE_PASSWORD);
    anonymous.headers.clear();
    assert_eq!(
        anonymous.run(Provider::Sendgrid, &verifier),
        unauthorized("missing credentials")
    );
    for value in [
        "Bearer abc",
        "Basic",
        "Basic !!!",
        &format!("Basic {}", STANDARD.encode("nocolon")),
    ] {
        let mut call = sendgrid_parse_call(SENDGRID_INBOUND, PARSE_USER, PARSE_PASSWORD);
        call.headers[0].1 = value.to_owned();
        assert_eq!(
            call.run(Provider::Sendgrid, &verifier),
            unauthorized("malformed credentials"),
            "{value}"
        );
    }
}

#[test]
fn malformed_inbound_parse_posts_say_what_is_wrong() {
    let verifier = parse_verifier();
    let mut boundless = sendgrid_parse_call(SENDGRID_INBOUND, PARSE_USER, PARSE_PASSWORD);
    boundless.content_type = Some("multipart/form-data".into());
    let message = malformed_message(boundless.run(Provider::Sendgrid, &verifier));
    assert!(message.contains("boundary"), "{message}");

    let headless = SENDGRID_INBOUND.replace("name=\"headers\"", "name=\"headerz\"");
    let message = malformed_message(
        sendgrid_parse_call(&headless, PARSE_USER, PARSE_PASSWORD).run(Provider::Sendgrid, &verifier),
    );
    assert!(
        message.contains("neither a headers nor an email field"),
        "{message}"
    );

    let envelope = SENDGRID_INBOUND.replace("{\"to\":[\"grace@parse", "{\"to\":[grace@parse");
    let message = malformed_message(
        sendgrid_parse_call(&envelope, PARSE_USER, PARSE_PASSWORD).run(Provider::Sendgrid, &verifier),
    );
    assert!(message.contains("envelope"), "{message}");

    let cut = &SENDGRID_INBOUND[..SENDGRID_INBOUND.len() / 2];
    let message = malformed_message(
        sendgrid_parse_call(cut, PARSE_USER, PARSE_PASSWORD).run(Provider::Sendgrid, &verifier),
    );
    assert!(message.contains("multipart"), "{message}");
}

// --- robustness -----------------------------------------------------------------------------

/// Deterministic pseudo-random bytes (xorshift), for mutations.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Feeds `body` every way it can arrive, signed or credentialed wherever that lets the parsers
/// behind the check see it (ECDSA-signed for SendGrid only when `sendgrid_signed`, as signing
/// is the slow part). Only panics matter here.
fn feed(body: &[u8], verifiers: &(Verifier, SigningKey), sendgrid_signed: bool) {
    let (verifier, key) = verifiers;
    let json = |call: Call, provider: Provider| {
        let _ = call.run(provider, verifier);
    };
    json(
        Call::new("application/json", body).header(
            "leadgate-signature",
            leadgate_signature(GENERIC_SECRET, NOW, body),
        ),
        Provider::Generic,
    );
    json(Call::new("application/json", body), Provider::Mailgun);
    json(
        Call::new("application/x-www-form-urlencoded", body),
        Provider::Mailgun,
    );
    json(
        Call::new(&format!("multipart/form-data; boundary={MAILGUN_BOUNDARY}"), body),
        Provider::Mailgun,
    );
    if sendgrid_signed {
        let signature = sendgrid_signature(key, &NOW.to_string(), body);
        json(
            Call::new("application/json", body)
                .header(
                    SENDGRID_SIGNATURE_HEADER,
                    STANDARD.encode(signature.to_der().as_bytes()),
                )
                .header(SENDGRID_TIMESTAMP_HEADER, NOW.to_string()),
            Provider::Sendgrid,
        );
    } else {
        json(Call::new("application/json", body), Provider::Sendgrid);
    }
    json(
        Call::new(
            &format!("multipart/form-data; boundary={SENDGRID_BOUNDARY}"),
            body,
        )
        .header(
            "authorization",
            format!(
                "Basic {}",
                STANDARD.encode(format!("{PARSE_USER}:{PARSE_PASSWORD}"))
            ),
        ),
        Provider::Sendgrid,
    );
}

#[test]
fn no_prefix_or_mutation_of_any_sample_panics() {
    let verifier = Verifier::new()
        .with_generic_secret(GENERIC_SECRET)
        .with_mailgun_signing_key(MAILGUN_KEY)
        .with_sendgrid_public_key(sendgrid_public_key())
        .with_sendgrid_inbound_basic(PARSE_USER, PARSE_PASSWORD);
    let setup = (verifier, sendgrid_signing_key());
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    for sample in ALL_TESTDATA {
        // SendGrid's event samples are the JSON arrays
        let sendgrid_signed = sample.trim_start().starts_with('[');
        let mut variants = vec![sample.as_bytes().to_vec()];
        if sample.starts_with("--") {
            variants.push(crlf(sample));
        }
        if sample.contains("SIGNATURE") {
            variants.push(crlf(&mailgun_reply(sample, MAILGUN_KEY, NOW)));
        } else if sample.contains("\"signature\": {") {
            variants.push(mailgun_signed(sample, MAILGUN_KEY, NOW).into_bytes());
        }
        for whole in variants {
            for end in 0..=whole.len() {
                feed(&whole[..end], &setup, sendgrid_signed);
            }
            for _ in 0..200 {
                let mut mutated = whole.clone();
                if mutated.is_empty() {
                    break;
                }
                for _ in 0..1 + noise.next() % 4 {
                    let at = (noise.next() % mutated.len() as u64) as usize;
                    mutated[at] = noise.next() as u8;
                }
                feed(&mutated, &setup, sendgrid_signed);
            }
        }
    }
}

// --- helpers --------------------------------------------------------------------------------

#[test]
fn message_ids_are_normalized() {
    assert_eq!(message_ids(" <a@b> "), ["a@b"]);
    assert_eq!(message_ids("<a@b>\r\n <c@d>\t<a@b>"), ["a@b", "c@d"]);
    assert_eq!(message_ids("a@b c@d,e@f"), ["a@b", "c@d", "e@f"]);
    assert_eq!(message_ids("<a@b> (Ada's message of Monday)"), ["a@b"]);
    assert_eq!(message_ids("<broken@id"), ["broken@id"]);
    assert_eq!(message_ids("<>  < >"), Vec::<String>::new());
    assert_eq!(first_message_id("  "), None);
}

#[test]
fn detail_is_cut_at_500_characters_on_a_char_boundary() {
    let long = "é".repeat(600);
    let cut = detail(&long).unwrap();
    assert_eq!(cut.chars().count(), DETAIL_MAX_CHARS);
    assert_eq!(detail("  short  ").as_deref(), Some("short"));
    assert_eq!(detail(" \n "), None);
    let exact = "x".repeat(500);
    assert_eq!(detail(&exact).as_deref(), Some(exact.as_str()));
}

#[test]
fn folded_headers_are_unfolded() {
    let block = "Subject: one\r\n two\r\nReferences: <a@b>\r\n\t<c@d>\r\n\r\nBody: not a header\r\n";
    assert_eq!(
        header_block(block),
        [
            ("Subject".to_owned(), "one two".to_owned()),
            ("References".to_owned(), "<a@b> <c@d>".to_owned())
        ]
    );
}

#[test]
fn addresses_are_taken_from_display_forms() {
    assert_eq!(
        address("\"Ada L.\" <ada@example.com>").as_deref(),
        Some("ada@example.com")
    );
    assert_eq!(address(" ada@example.com ").as_deref(), Some("ada@example.com"));
    assert_eq!(
        address("a@x.example, b@y.example").as_deref(),
        Some("a@x.example")
    );
    assert_eq!(address("> <").as_deref(), Some("> <"));
    assert_eq!(address("").as_deref(), None);
}

#[test]
fn fractional_timestamps_keep_microseconds() {
    assert_eq!(
        from_unix(1_529_006_854.329_574),
        Some(utc("2018-06-14T20:07:34.329574Z"))
    );
    assert_eq!(from_unix(f64::NAN), None);
    assert_eq!(from_unix(1e300), None);
}

#[test]
fn providers_errors_and_verifiers_present_themselves() {
    for provider in [Provider::Generic, Provider::Mailgun, Provider::Sendgrid] {
        assert_eq!(provider.as_str().parse::<Provider>(), Ok(provider));
        assert_eq!(provider.to_string(), provider.as_str());
    }
    assert!("SendGrid".parse::<Provider>().is_err());
    assert_eq!(InboundError::NotConfigured(Provider::Mailgun).http_status(), 404);
    assert_eq!(InboundError::Unauthorized("bad signature").http_status(), 401);
    assert_eq!(InboundError::Malformed("x".into()).http_status(), 400);

    let verifier = Verifier::new()
        .with_generic_secret(GENERIC_SECRET)
        .with_sendgrid_inbound_basic(PARSE_USER, PARSE_PASSWORD);
    let shown = format!("{verifier:?}");
    assert!(
        !shown.contains(GENERIC_SECRET) && !shown.contains(PARSE_PASSWORD),
        "{shown}"
    );
    let headers = [("authorization".to_owned(), "Basic c2VjcmV0".to_owned())];
    let req = Request::new(&headers, None, b"{}", at(NOW));
    assert!(!format!("{req:?}").contains("c2VjcmV0"));
}

#[test]
fn events_serialize_in_camel_case() {
    let events = generic_call(GENERIC_EVENTS)
        .run(Provider::Generic, &generic_verifier())
        .unwrap();
    let json = serde_json::to_value(&events[1]).unwrap();
    assert_eq!(
        json["kind"],
        serde_json::json!({"type": "bounced", "permanent": true})
    );
    assert_eq!(json["messageId"], "20260301120000.2.D4E5F6@mail.leadgate.example");
    assert_eq!(json["occurredAt"], "2026-03-01T12:00:07Z");
}
