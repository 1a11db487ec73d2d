use super::sink::{Mode, Sink};
use super::*;

/// Generous: only reached when something is broken.
const WAIT: Duration = Duration::from_secs(10);

fn message(to: &str) -> Outgoing {
    Outgoing {
        from: "sales@leadgate.test".to_owned(),
        from_name: Some("Ada from Leadgate".to_owned()),
        to: to.to_owned(),
        subject: "Your trial".to_owned(),
        text: "Hello Grace,\nyour trial starts today.\n".to_owned(),
        html: None,
        message_id: format!("{}@leadgate.test", uuid::Uuid::now_v7()),
        unsubscribe_url: None,
        headers: Vec::new(),
    }
}

fn relay_with(url: &str, settings: SmtpSettings) -> Mailer {
    Mailer::new(Some(url), Path::new("unused-outbox"), settings).unwrap()
}

fn relay(url: &str) -> Mailer {
    relay_with(url, SmtpSettings::default())
}

/// A loopback port with nothing listening: bound by us, then released.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

fn config_error(url: &str) -> String {
    match Mailer::new(Some(url), Path::new("x"), SmtpSettings::default()) {
        Err(e @ MailError::Config(_)) => e.to_string(),
        other => panic!("{url}: expected a configuration error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_message_arrives_with_its_headers_and_both_bodies() {
    let sink = Sink::start().await;
    let mailer = relay(&sink.url());
    let mut m = message("grace@example.test");
    m.subject = "Grüße zum Start".to_owned();
    m.html = Some("<p>Hello <b>Grace</b></p>".to_owned());
    m.unsubscribe_url = Some("https://leadgate.test/u/abc?t=1&x=y".to_owned());
    m.headers = vec![("X-Leadgate-Campaign".to_owned(), "spring".to_owned())];

    let outcome = mailer.send(&m).await;
    let SendOutcome::Accepted { response } = outcome else {
        panic!("expected Accepted, got {outcome:?}");
    };
    assert!(response.starts_with("250"), "{response}");

    let got = sink.wait_for(1, WAIT).await.unwrap();
    let r = &got[0];
    assert_eq!(r.from, "sales@leadgate.test");
    assert_eq!(r.recipients, ["grace@example.test"]);
    assert_eq!(r.message_id().as_deref(), Some(m.message_id.as_str()));
    assert_eq!(r.header("Message-ID"), Some(format!("<{}>", m.message_id)));
    assert_eq!(
        r.header("List-Unsubscribe").as_deref(),
        Some("<https://leadgate.test/u/abc?t=1&x=y>")
    );
    assert_eq!(
        r.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    assert_eq!(r.header("X-Leadgate-Campaign").as_deref(), Some("spring"));
    assert_eq!(r.header("MIME-Version").as_deref(), Some("1.0"));
    assert!(r.header("Date").is_some());
    let from = r.header("From").unwrap();
    assert!(
        from.contains("Ada from Leadgate") && from.contains("<sales@leadgate.test>"),
        "{from}"
    );
    assert_eq!(r.header("To").as_deref(), Some("grace@example.test"));
    // non-ASCII goes out as an RFC 2047 encoded word; the data itself is 7-bit
    let subject = r.header("Subject").unwrap();
    assert!(subject.starts_with("=?utf-8?"), "{subject}");
    assert!(r.data.is_ascii());
    let content_type = r.header("Content-Type").unwrap();
    assert!(
        content_type.starts_with("multipart/alternative"),
        "{content_type}"
    );
    assert_eq!(
        r.body_text().as_deref(),
        Some("Hello Grace,\r\nyour trial starts today.")
    );
    assert_eq!(r.body_html().as_deref(), Some("<p>Hello <b>Grace</b></p>"));
}

#[tokio::test]
async fn a_text_only_message_is_a_single_text_part() {
    let sink = Sink::start().await;
    let mut m = message("grace@example.test");
    m.text = "Grüße, Grace".to_owned();
    assert!(matches!(
        relay(&sink.url()).send(&m).await,
        SendOutcome::Accepted { .. }
    ));
    let r = &sink.wait_for(1, WAIT).await.unwrap()[0];
    assert!(r.header("Content-Type").unwrap().starts_with("text/plain"));
    assert!(r.header("List-Unsubscribe").is_none());
    assert_eq!(r.body_text().as_deref(), Some("Grüße, Grace"));
}

#[tokio::test]
async fn a_refused_recipient_is_rejected_and_the_others_still_arrive() {
    let sink = Sink::start().await;
    sink.on_recipient(
        "gone@example.test",
        Mode::RefuseRcpt(550, "5.1.1 no such user".to_owned()),
    );
    let mailer = relay(&sink.url());

    let refused = mailer.send(&message("gone@example.test")).await;
    assert_eq!(
        refused,
        SendOutcome::Rejected {
            code: 550,
            message: "5.1.1 no such user".to_owned(),
            at: SmtpStep::RcptTo
        }
    );
    assert!(!refused.may_retry());
    let accepted = mailer.send(&message("grace@example.test")).await;
    assert!(matches!(accepted, SendOutcome::Accepted { .. }), "{accepted:?}");

    let got = sink.wait_for(1, WAIT).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].recipients, ["grace@example.test"]);
    // the refusal was followed by RSET, and the connection carried the next message
    assert_eq!(sink.connections_opened(), 1);
}

#[tokio::test]
async fn a_4xx_at_rcpt_or_after_the_data_is_deferred() {
    let sink = Sink::start().await;
    let mailer = relay(&sink.url());

    sink.set_mode(Mode::DeferRcpt(451, "4.7.1 try again later".to_owned()));
    let outcome = mailer.send(&message("grace@example.test")).await;
    assert_eq!(
        outcome,
        SendOutcome::Deferred {
            code: 451,
            message: "4.7.1 try again later".to_owned(),
            at: SmtpStep::RcptTo
        }
    );
    assert!(outcome.may_retry());

    sink.set_mode(Mode::DeferAfterData(451, "4.3.0 queue full".to_owned()));
    let outcome = mailer.send(&message("grace@example.test")).await;
    assert!(
        matches!(
            outcome,
            SendOutcome::Deferred {
                code: 451,
                at: SmtpStep::EndOfData,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn a_connection_dropped_during_the_data_is_unknown() {
    let sink = Sink::start().await;
    let mailer = relay(&sink.url());
    sink.set_mode(Mode::DropMidData);
    let outcome = mailer.send(&message("grace@example.test")).await;
    assert!(matches!(outcome, SendOutcome::Unknown { .. }), "{outcome:?}");
    assert!(!outcome.may_retry());
}

#[tokio::test]
async fn a_message_received_but_unanswered_is_unknown() {
    let sink = Sink::start().await;
    let mailer = relay(&sink.url());
    sink.on_recipient("grace@example.test", Mode::DropAfterData);
    let m = message("grace@example.test");
    let outcome = mailer.send(&m).await;
    assert!(matches!(outcome, SendOutcome::Unknown { .. }), "{outcome:?}");
    let kept = sink.wait_for_unanswered(1, WAIT).await.unwrap();
    assert_eq!(kept[0].message_id().as_deref(), Some(m.message_id.as_str()));
}

#[tokio::test]
async fn a_relay_that_stalls_after_the_data_times_out_as_unknown() {
    let sink = Sink::start().await;
    sink.set_mode(Mode::StallAfterData);
    let settings = SmtpSettings {
        data_timeout: Duration::from_millis(200),
        ..SmtpSettings::default()
    };
    let outcome = relay_with(&sink.url(), settings)
        .send(&message("grace@example.test"))
        .await;
    let SendOutcome::Unknown { reason } = outcome else {
        panic!("expected Unknown, got {outcome:?}");
    };
    assert!(reason.contains("no answer within"), "{reason}");
}

#[tokio::test]
async fn a_relay_that_never_greets_times_out_as_not_sent() {
    // the kernel completes the handshake for the backlog; nobody ever writes the greeting
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("smtp://{}", silent.local_addr().unwrap());
    let settings = SmtpSettings {
        command_timeout: Duration::from_millis(200),
        ..SmtpSettings::default()
    };
    let outcome = relay_with(&url, settings)
        .send(&message("grace@example.test"))
        .await;
    assert!(matches!(outcome, SendOutcome::NotSent { .. }), "{outcome:?}");
}

#[tokio::test]
async fn a_refused_connection_is_not_sent() {
    let port = closed_port().await;
    let mailer = relay(&format!("smtp://127.0.0.1:{port}"));
    let outcome = mailer.send(&message("grace@example.test")).await;
    assert!(matches!(outcome, SendOutcome::NotSent { .. }), "{outcome:?}");
    assert!(outcome.may_retry());
    assert!(matches!(
        mailer.test_connection().await,
        Err(MailError::Relay { .. })
    ));
}

#[tokio::test]
async fn fifty_concurrent_sends_share_a_pool_of_four() {
    let sink = Sink::start().await;
    let settings = SmtpSettings {
        max_connections: 4,
        ..SmtpSettings::default()
    };
    let mailer = relay_with(&sink.url(), settings);
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..50 {
        let mailer = mailer.clone();
        sends.spawn(async move { mailer.send(&message(&format!("lead{i}@example.test"))).await });
    }
    while let Some(outcome) = sends.join_next().await {
        let outcome = outcome.unwrap();
        assert!(matches!(outcome, SendOutcome::Accepted { .. }), "{outcome:?}");
    }
    assert_eq!(sink.wait_for(50, WAIT).await.unwrap().len(), 50);
    let opened = sink.connections_opened();
    assert!((1..=4).contains(&opened), "{opened} connections opened");
}

#[tokio::test]
async fn a_pooled_connection_closed_by_the_relay_is_replaced_transparently() {
    let sink = Sink::start().await;
    let mailer = relay(&sink.url());
    assert!(matches!(
        mailer.send(&message("a@example.test")).await,
        SendOutcome::Accepted { .. }
    ));
    sink.close_connections(WAIT).await.unwrap();
    let outcome = mailer.send(&message("b@example.test")).await;
    assert!(matches!(outcome, SendOutcome::Accepted { .. }), "{outcome:?}");
    assert_eq!(sink.wait_for(2, WAIT).await.unwrap().len(), 2);
    assert_eq!(sink.connections_opened(), 2);
}

#[tokio::test]
async fn credentials_in_the_url_reach_auth_and_never_the_description() {
    let sink = Sink::start().await;
    sink.require_auth(Some(("mailer", "s3cr:t/pw")));
    let url = format!("smtp://mailer:s3cr%3At%2Fpw@{}", sink.addr());
    let mailer = relay(&url);

    let described = mailer.describe();
    assert_eq!(
        described,
        format!(
            "SMTP relay smtp://{} (no TLS), with authentication, pool of 8",
            sink.addr()
        )
    );
    assert!(!described.contains("s3cr") && !described.contains("mailer:"));
    assert!(!format!("{mailer:?}").contains("s3cr"));

    mailer.test_connection().await.unwrap();
    let outcome = mailer.send(&message("grace@example.test")).await;
    assert!(matches!(outcome, SendOutcome::Accepted { .. }), "{outcome:?}");
    let got = sink.wait_for(1, WAIT).await.unwrap();
    assert_eq!(got[0].auth_user.as_deref(), Some("mailer"));
    assert!(
        sink.auths()
            .iter()
            .all(|(u, p)| u == "mailer" && p == "s3cr:t/pw")
    );
}

#[tokio::test]
async fn refused_credentials_are_not_sent_and_say_so() {
    let sink = Sink::start().await;
    sink.require_auth(Some(("mailer", "right")));
    let mailer = relay(&format!("smtp://mailer:wrong@{}", sink.addr()));
    let SendOutcome::NotSent { reason } = mailer.send(&message("grace@example.test")).await else {
        panic!("expected NotSent");
    };
    assert!(
        reason.contains("authentication failed") && reason.contains("535"),
        "{reason}"
    );
    assert!(!reason.contains("wrong"), "{reason}");
    let err = mailer.test_connection().await.unwrap_err().to_string();
    assert!(err.contains("535") && !err.contains("wrong"), "{err}");
}

#[tokio::test]
async fn starttls_required_refuses_a_relay_without_it_and_opportunistic_goes_plain() {
    let sink = Sink::start().await;
    let required = relay(&format!("{}?tls=required", sink.url()));
    let outcome = required.send(&message("grace@example.test")).await;
    let SendOutcome::NotSent { reason } = outcome else {
        panic!("expected NotSent, got {outcome:?}");
    };
    assert!(reason.contains("STARTTLS"), "{reason}");
    assert!(required.test_connection().await.is_err());

    let opportunistic = relay(&format!("{}?tls=opportunistic", sink.url()));
    let outcome = opportunistic.send(&message("grace@example.test")).await;
    assert!(matches!(outcome, SendOutcome::Accepted { .. }), "{outcome:?}");
    assert_eq!(sink.wait_for(1, WAIT).await.unwrap().len(), 1);
}

#[tokio::test]
async fn after_shutdown_sends_are_not_sent_and_idle_connections_quit() {
    let sink = Sink::start().await;
    let mailer = relay(&sink.url());
    assert!(matches!(
        mailer.send(&message("a@example.test")).await,
        SendOutcome::Accepted { .. }
    ));
    mailer.shutdown().await;
    let outcome = mailer.send(&message("b@example.test")).await;
    assert!(matches!(outcome, SendOutcome::NotSent { .. }), "{outcome:?}");
    // the pooled connection was closed with QUIT, so nothing is left open at the sink
    sink.wait_until_closed(WAIT).await.unwrap();
    assert_eq!(sink.connections_opened(), 1);
}

#[test]
fn header_injection_is_impossible() {
    let injected = [
        ("X-Campaign", "spring\r\nBcc: everyone@example.test"),
        ("X-Campaign", "spring\nBcc: everyone@example.test"),
        ("X-Campaign", "spring\rBcc: everyone@example.test"),
    ];
    for (name, value) in injected {
        let mut m = message("grace@example.test");
        m.headers = vec![(name.to_owned(), value.to_owned())];
        assert!(matches!(m.render(), Err(MailError::Invalid(_))), "{value:?}");
    }
    for name in [
        "X Campaign",
        "X-Campaign:",
        "X-Campaign\r\nBcc",
        "",
        "X-Ümlaut",
        "Bcc",
        "content-type",
    ] {
        let mut m = message("grace@example.test");
        m.headers = vec![(name.to_owned(), "v".to_owned())];
        assert!(matches!(m.render(), Err(MailError::Invalid(_))), "{name:?}");
    }
    let mut m = message("grace@example.test");
    m.subject = "Hi\r\nBcc: everyone@example.test".to_owned();
    assert!(matches!(m.render(), Err(MailError::Invalid(_))));
    let mut m = message("grace@example.test");
    m.from_name = Some("Ada\r\nBcc: everyone@example.test".to_owned());
    assert!(matches!(m.render(), Err(MailError::Invalid(_))));
    let mut m = message("grace@example.test");
    m.unsubscribe_url = Some("https://leadgate.test/u\r\nBcc: everyone@example.test".to_owned());
    assert!(matches!(m.render(), Err(MailError::Invalid(_))));
    let mut m = message("grace@example.test");
    m.message_id = "abc>\r\nBcc: everyone@example.test".to_owned();
    assert!(matches!(m.render(), Err(MailError::Invalid(_))));
    let mut m = message("grace@example.test\r\nBcc: everyone@example.test");
    assert!(matches!(m.render(), Err(MailError::Invalid(_))));

    // a good extra header still goes out, on one line
    m = message("grace@example.test");
    m.headers = vec![("X-Campaign".to_owned(), "spring".to_owned())];
    let text = String::from_utf8(m.render().unwrap()).unwrap();
    assert!(text.contains("\r\nX-Campaign: spring\r\n"));
    assert!(!text.to_ascii_lowercase().contains("bcc"));
}

#[tokio::test]
async fn an_invalid_message_is_refused_before_any_connection() {
    let sink = Sink::start().await;
    let mailer = relay(&sink.url());
    for m in [
        message("not an address"),
        Outgoing {
            from: "nobody".to_owned(),
            ..message("grace@example.test")
        },
        Outgoing {
            message_id: "<abc@leadgate.test>".to_owned(),
            ..message("grace@example.test")
        },
        Outgoing {
            unsubscribe_url: Some("http://leadgate.test/u".to_owned()),
            ..message("grace@example.test")
        },
        Outgoing {
            headers: vec![
                ("X-A".to_owned(), "1".to_owned()),
                ("x-a".to_owned(), "2".to_owned()),
            ],
            ..message("grace@example.test")
        },
    ] {
        let outcome = mailer.send(&m).await;
        assert!(matches!(outcome, SendOutcome::Invalid { .. }), "{outcome:?}");
        assert!(!outcome.may_retry());
    }
    assert_eq!(sink.connections_opened(), 0);
}

#[test]
fn an_idn_domain_goes_out_in_ascii() {
    let mut m = message("grace@bücher.example");
    m.unsubscribe_url = Some("http://localhost:8080/u/1".to_owned());
    let text = String::from_utf8(m.render().unwrap()).unwrap();
    assert!(text.contains("To: grace@xn--bcher-kva.example\r\n"), "{text}");
    assert!(matches!(
        message("grüße@example.test").render(),
        Err(MailError::Invalid(_))
    ));
}

#[tokio::test]
async fn folder_mode_writes_one_file_per_message_id_and_rewrites_it() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let mailer = Mailer::new(None, &outbox, SmtpSettings::default()).unwrap();
    assert_eq!(
        mailer.describe(),
        format!(
            "no SMTP relay configured (LEADGATE_SMTP_URL): mail is written as .eml files to {}",
            outbox.display()
        )
    );
    mailer.test_connection().await.unwrap();

    let mut first = message("grace@example.test");
    first.message_id = "0193-a/b@leadgate".to_owned();
    let second = message("ada@example.test");
    let path = outbox.join("0193-a%2Fb@leadgate.eml");
    assert_eq!(
        mailer.send(&first).await,
        SendOutcome::Accepted {
            response: format!("written to {}", path.display())
        }
    );
    assert!(matches!(mailer.send(&second).await, SendOutcome::Accepted { .. }));
    first.subject = "Second try".to_owned();
    assert!(matches!(mailer.send(&first).await, SendOutcome::Accepted { .. }));

    let mut names: Vec<String> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut expected = vec![
        "0193-a%2Fb@leadgate.eml".to_owned(),
        format!("{}.eml", second.message_id),
    ];
    expected.sort();
    assert_eq!(
        names, expected,
        "one file per message id, no temporary files left"
    );
    let written = std::fs::read(&path).unwrap();
    let text = String::from_utf8(written).unwrap();
    assert!(text.contains("Subject: Second try\r\n"));
    assert!(text.contains("Message-ID: <0193-a/b@leadgate>\r\n"));
}

#[tokio::test]
async fn an_unwritable_folder_is_not_sent() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let mailer = Mailer::new(None, &file.join("outbox"), SmtpSettings::default()).unwrap();
    let outcome = mailer.send(&message("grace@example.test")).await;
    assert!(matches!(outcome, SendOutcome::NotSent { .. }), "{outcome:?}");
    assert!(matches!(
        mailer.test_connection().await,
        Err(MailError::Folder { .. })
    ));
}

#[test]
fn bad_urls_are_clear_errors_that_hide_the_password() {
    for url in [
        "ftp://x",
        "smtp://",
        "smtp:///helo",
        "smtp://host:99999",
        "smtp://host:0",
        "smtp://host:port",
        "smtp://host?tls=always",
        "smtp://host?tls=required&tls=required",
        "smtp://host?starttls=1",
        "smtps://host?tls=required",
        "smtp://user@host",
        "smtp://:hunter2@host",
        "smtp://ho%20st",
        "smtp://host/not a name",
        "not a url",
    ] {
        let err = config_error(url);
        assert!(err.starts_with("LEADGATE_SMTP_URL: "), "{url}: {err}");
    }
    let err = config_error("ftp://user:hunter2@x");
    assert!(err.contains("ftp") && !err.contains("hunter2"), "{err}");
    let err = config_error("smtp://user:hunter2@host:99999");
    assert!(!err.contains("hunter2"), "{err}");
    let err = config_error("smtp://user:hunter2@host?tls=yes");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn descriptions_name_the_relay_security_and_default_ports() {
    let folder = Path::new("x");
    let describe = |url: &str| {
        Mailer::new(Some(url), folder, SmtpSettings::default())
            .unwrap()
            .describe()
    };
    assert_eq!(
        describe("smtp://mail.example"),
        "SMTP relay smtp://mail.example:25 (no TLS), pool of 8"
    );
    assert_eq!(
        describe("smtp://mail.example?tls=required"),
        "SMTP relay smtp://mail.example:587 (STARTTLS required), pool of 8"
    );
    assert_eq!(
        describe("smtp://u:p@mail.example:2525?tls=opportunistic"),
        "SMTP relay smtp://mail.example:2525 (STARTTLS if offered), with authentication, pool of 8"
    );
    assert_eq!(
        describe("smtps://apikey:SG.secret@mail.example"),
        "SMTP relay smtps://mail.example:465 (implicit TLS), with authentication, pool of 8"
    );
    assert_eq!(
        describe("smtp://[::1]:2525/client.example"),
        "SMTP relay smtp://[::1]:2525 (no TLS), pool of 8"
    );
    // blank means unset
    assert!(matches!(
        Mailer::new(Some("  "), folder, SmtpSettings::default()).unwrap(),
        Mailer::Folder { .. }
    ));
}
