//! Campaigns end to end on both backends: definitions and their errors, sends through a real
//! SMTP server on 127.0.0.1 (`leadgate::mail::sink`), send windows across DST in two zones on
//! an injected clock, caps across campaigns, stop rules racing due steps, bounces, replies and
//! unsubscribes, a send whose outcome is lost, and a worker killed mid-send.
//!
//! Most tests run without in-process workers and drive the scheduler with
//! `CampaignService::run_due` at instants the test sets; `the_queue_runs_a_campaign_by_itself`
//! runs the workers and waits for the mail.

use crate::helpers::{Backend, TestApp, backends, spawn_app_with};
use chrono::{DateTime, TimeZone, Utc};
use leadgate::domain::Role;
use leadgate::mail::sink::{Mode, Sink};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const MAIL_SECRET: &str = "generic-mail-webhook-secret";

const CREATE: &str = "mutation($input: CreateCampaignInput!) { createCampaign(input: $input) { \
     campaign { id state steps { key type } } userErrors { field message code } } }";
const ACTIVATE: &str = "mutation($id: ID!) { activateCampaign(input: {id: $id}) { enrolled \
     campaign { id state } userErrors { field message } } }";
const STATS: &str = "query($id: ID!) { node(id: $id) { ... on Campaign { state stats { enrolled active \
     completed exited sent delivered bounced replied unsubscribed clicked unconfirmed rejected \
     exitedBy { key count } atStep { key count } variants { step variant sent } } } } }";
const TIMELINE: &str = "query($id: ID!) { node(id: $id) { ... on Lead { campaignTimeline { type outcome step \
     variant detail at } } } }";

/// The time the scheduler reads, moved by the test.
#[derive(Clone)]
struct Clock(Arc<Mutex<DateTime<Utc>>>);

impl Clock {
    fn install(app: &TestApp, at: DateTime<Utc>) -> Self {
        let clock = Clock(Arc::new(Mutex::new(at)));
        let read = clock.clone();
        app.services
            .campaigns
            .set_clock(Arc::new(move || *read.0.lock().unwrap()));
        clock
    }

    fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap() = at;
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

/// An app sending to `sink`, without workers (the test runs the scheduler).
async fn app_for(backend: Backend, sink: &Sink, workers: bool) -> TestApp {
    let url = sink.url();
    spawn_app_with(backend, move |s| {
        s.smtp_url = Some(url.into());
        s.workers = workers;
        s.public_url = Some("http://127.0.0.1:9".into());
        s.mail_webhook_secret = Some(MAIL_SECRET.into());
        s.mailgun_signing_key = Some("mailgun-signing-key".into());
    })
    .await
}

async fn create(app: &TestApp, input: Value) -> Value {
    let data = app.gql(Role::Admin, CREATE, json!({ "input": input })).await;
    let payload = &data["createCampaign"];
    assert_eq!(payload["userErrors"], json!([]), "{payload}");
    payload["campaign"].clone()
}

async fn activate(app: &TestApp, id: &Value) -> u64 {
    let data = app.gql(Role::Admin, ACTIVATE, json!({ "id": id })).await;
    assert_eq!(data["activateCampaign"]["userErrors"], json!([]), "{data}");
    data["activateCampaign"]["enrolled"].as_u64().unwrap()
}

async fn stats(app: &TestApp, id: &Value) -> Value {
    app.gql(Role::Admin, STATS, json!({ "id": id })).await["node"]["stats"].clone()
}

async fn timeline(app: &TestApp, lead: &str) -> Vec<Value> {
    app.gql(Role::Admin, TIMELINE, json!({ "id": lead })).await["node"]["campaignTimeline"]
        .as_array()
        .unwrap()
        .clone()
}

async fn run_due(app: &TestApp) -> u64 {
    app.services.campaigns.run_due(1000).await.unwrap().claimed
}

fn two_emails(tag: &str) -> Value {
    json!({
        "name": format!("Welcome {tag}"),
        "segment": { "filter": { "tags": { "anyOf": [tag] } } },
        "senders": ["Sales <sales@example.com>"],
        "steps": [
            { "key": "hello", "email": { "subject": "Hi {{ firstName | default('there') }}", "body": "Hello {{ firstName }}, see {{ unsubscribeUrl }}" } },
            { "key": "pause", "wait": { "duration": "PT1H" } },
            { "key": "again", "email": { "subject": "Following up", "body": "Still there?" } }
        ]
    })
}

/// POSTs a generic mail event batch, signed.
pub(crate) async fn post_generic(app: &TestApp, events: Value, secret: &str) -> (u16, Value) {
    let body = json!({ "events": events }).to_string();
    let signature = leadgate::events::webhooks::sign(secret, Utc::now().timestamp(), body.as_bytes());
    let res = app
        .client
        .post(app.url("/webhooks/email/generic"))
        .header("content-type", "application/json")
        .header("leadgate-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_queue_runs_a_campaign_by_itself_with_one_click_unsubscribe_headers() {
    for backend in backends() {
        let sink = Sink::start().await;
        let app = app_for(backend, &sink, true).await;
        let leads = app
            .create_leads(vec![
                json!({"email": "ann@q.example", "firstName": "Ann", "tags": ["q"]}),
                json!({"email": "bob@q.example", "tags": ["q"]}),
                json!({"email": "cy@other.example", "tags": ["other"]}),
            ])
            .await;
        let campaign = create(&app, two_emails("q")).await;
        assert_eq!(campaign["state"], "DRAFT");
        assert_eq!(activate(&app, &campaign["id"]).await, 2);
        let mail = sink.wait_for(2, WAIT).await.expect("both first emails");
        let ann = mail
            .iter()
            .find(|m| m.recipients == ["ann@q.example"])
            .expect("ann's mail");
        assert_eq!(ann.header("Subject").as_deref(), Some("Hi Ann"));
        let bob = mail
            .iter()
            .find(|m| m.recipients == ["bob@q.example"])
            .expect("bob's mail");
        assert_eq!(
            bob.header("Subject").as_deref(),
            Some("Hi there"),
            "default() fills a missing name"
        );
        let unsubscribe = ann.header("List-Unsubscribe").expect("List-Unsubscribe");
        assert!(unsubscribe.starts_with("<http://127.0.0.1:9/u/"), "{unsubscribe}");
        assert_eq!(
            ann.header("List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        assert!(ann.message_id().unwrap().ends_with("@leadgate.local"));
        assert_eq!(ann.from, "sales@example.com");
        crate::helpers::poll_until(WAIT, "stats count both sends", || async {
            let s = stats(&app, &campaign["id"]).await;
            (s["sent"] == 2).then_some(s)
        })
        .await;
        let lines = timeline(&app, &leads[0]).await;
        assert!(
            lines
                .iter()
                .any(|l| l["type"] == "email" && l["outcome"] == "sent"),
            "{lines:?}"
        );
        // the second email waits an hour: nothing more arrives now
        assert_eq!(sink.messages().len(), 2);
        let metrics = app.metrics().await;
        assert_eq!(
            crate::helpers::metric(&metrics, r#"leadgate_campaign_sends_total{outcome="accepted"}"#),
            2.0,
            "{metrics}"
        );
        assert_eq!(
            crate::helpers::metric(
                &metrics,
                r#"leadgate_campaign_steps_total{step="email",outcome="sent"}"#
            ),
            2.0
        );
    }
}

#[tokio::test]
async fn steps_run_once_in_order_and_a_wait_holds_until_its_time() {
    for backend in backends() {
        let sink = Sink::start().await;
        let app = app_for(backend, &sink, false).await;
        let clock = Clock::install(&app, utc(2026, 5, 4, 10, 0));
        app.create_leads(vec![json!({"email": "w@wait.example", "tags": ["w"]})])
            .await;
        let campaign = create(&app, two_emails("w")).await;
        assert_eq!(activate(&app, &campaign["id"]).await, 1);
        run_due(&app).await;
        assert_eq!(sink.messages().len(), 1);
        // running again at the same instant sends nothing: the wait holds
        run_due(&app).await;
        clock.set(utc(2026, 5, 4, 10, 59));
        run_due(&app).await;
        assert_eq!(sink.messages().len(), 1);
        clock.set(utc(2026, 5, 4, 11, 0));
        run_due(&app).await;
        let mail = sink.wait_for(2, WAIT).await.unwrap();
        assert_eq!(mail[1].header("Subject").as_deref(), Some("Following up"));
        assert_ne!(mail[0].message_id(), mail[1].message_id());
        run_due(&app).await;
        let s = stats(&app, &campaign["id"]).await;
        assert_eq!(
            (s["sent"].as_u64(), s["completed"].as_u64()),
            (Some(2), Some(1)),
            "{s}"
        );
        assert_eq!(sink.messages().len(), 2);
    }
}

#[tokio::test]
async fn send_windows_follow_each_leads_zone_across_dst_changes() {
    for backend in backends() {
        let sink = Sink::start().await;
        let app = app_for(backend, &sink, false).await;
        // Friday 2026-03-27 17:30 UTC: 18:30 in Berlin (closed), 13:30 in New York (open: the
        // US moved to daylight time on 03-08, Europe only on 03-29)
        let clock = Clock::install(&app, utc(2026, 3, 27, 17, 30));
        app.create_leads(vec![
            json!({"email": "berlin@tz.example", "timeZone": "Europe/Berlin", "tags": ["tz"]}),
            json!({"email": "ny@tz.example", "timeZone": "America/New_York", "tags": ["tz"]}),
            // no zone of its own, country with one zone: Paris, closed like Berlin
            json!({"email": "paris@tz.example", "country": "FR", "tags": ["tz"]}),
        ])
        .await;
        let mut input = two_emails("tz");
        input["sendWindow"] =
            json!({"days": ["MON", "TUE", "WED", "THU", "FRI"], "start": "09:00", "end": "17:00"});
        input["timeZone"] = json!("Asia/Tokyo");
        let campaign = create(&app, input).await;
        activate(&app, &campaign["id"]).await;
        run_due(&app).await;
        let sent: Vec<Vec<String>> = sink.messages().into_iter().map(|m| m.recipients).collect();
        assert_eq!(sent, vec![vec!["ny@tz.example".to_owned()]]);
        // Monday 2026-03-30 09:00 in Berlin and Paris is 07:00 UTC (summer time since Sunday)
        clock.set(utc(2026, 3, 30, 6, 59));
        run_due(&app).await;
        assert_eq!(sink.messages().len(), 1, "still closed at 08:59 local");
        clock.set(utc(2026, 3, 30, 7, 0));
        run_due(&app).await;
        let mail = sink.wait_for(3, WAIT).await.unwrap();
        let mut late: Vec<String> = mail[1..].iter().map(|m| m.recipients[0].clone()).collect();
        late.sort();
        assert_eq!(late, ["berlin@tz.example", "paris@tz.example"]);
    }
}

#[tokio::test]
async fn a_mailbox_cap_holds_across_two_campaigns() {
    for backend in backends() {
        let sink = Sink::start().await;
        let app = app_for(backend, &sink, false).await;
        let clock = Clock::install(&app, utc(2026, 6, 1, 8, 0));
        let mut leads = Vec::new();
        for n in 0..5 {
            leads.push(json!({"email": format!("a{n}@cap-a.example"), "tags": ["cap-a"]}));
            leads.push(json!({"email": format!("b{n}@cap-b.example"), "tags": ["cap-b"]}));
        }
        app.create_leads(leads).await;
        for tag in ["cap-a", "cap-b"] {
            let mut input = two_emails(tag);
            input["throttles"] = json!({"perMailboxDay": 3});
            let campaign = create(&app, input).await;
            activate(&app, &campaign["id"]).await;
        }
        run_due(&app).await;
        run_due(&app).await;
        assert_eq!(
            sink.messages().len(),
            3,
            "one mailbox, three a day, whichever campaign"
        );
        // the next (UTC) day brings three more
        clock.set(utc(2026, 6, 2, 0, 0));
        run_due(&app).await;
        assert_eq!(sink.wait_for(6, WAIT).await.unwrap().len(), 6);
        run_due(&app).await;
        assert_eq!(sink.messages().len(), 6);
    }
}

#[tokio::test]
async fn a_reply_that_arrives_first_stops_the_due_step() {
    for backend in backends() {
        let sink = Sink::start().await;
        let app = app_for(backend, &sink, false).await;
        let clock = Clock::install(&app, utc(2026, 6, 1, 8, 0));
        let lead = app
            .create_leads(vec![json!({"email": "r@reply.example", "tags": ["reply"]})])
            .await
            .remove(0);
        let campaign = create(&app, two_emails("reply")).await;
        activate(&app, &campaign["id"]).await;
        run_due(&app).await;
        let first = sink.wait_for(1, WAIT).await.unwrap().remove(0);
        let message_id = first.message_id().unwrap();
        // the follow-up is due; the reply lands before any worker claims it
        clock.set(utc(2026, 6, 1, 9, 30));
        let (status, body) = post_generic(
            &app,
            json!([{ "id": "reply-1", "type": "replied", "messageId": "<reply@lead.example>",
                     "inReplyTo": format!("<{message_id}>"), "recipient": "r@reply.example",
                     "occurredAt": "2026-06-01T09:00:00Z" }]),
            MAIL_SECRET,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        run_due(&app).await;
        assert_eq!(sink.messages().len(), 1, "no follow-up after a reply");
        let s = stats(&app, &campaign["id"]).await;
        assert_eq!(s["replied"], 1, "{s}");
        assert_eq!(s["exitedBy"], json!([{"key": "replied", "count": 1}]));
        let lines = timeline(&app, &lead).await;
        assert!(
            lines
                .iter()
                .any(|l| l["type"] == "exited" && l["outcome"] == "replied"),
            "{lines:?}"
        );
        // the provider retries the same event: applied once
        let (status, body) = post_generic(
            &app,
            json!([{ "id": "reply-1", "type": "replied", "inReplyTo": format!("<{message_id}>"),
                     "occurredAt": "2026-06-01T09:00:00Z" }]),
            MAIL_SECRET,
        )
        .await;
        assert_eq!(status, 200);
        assert!(body["ok"].as_str().unwrap().contains("0 new"), "{body}");
    }
}

#[tokio::test]
async fn bounces_and_unsubscribes_stop_later_steps_and_suppress_the_address() {
    for backend in backends() {
        let sink = Sink::start().await;
        let app = app_for(backend, &sink, false).await;
        let clock = Clock::install(&app, utc(2026, 6, 1, 8, 0));
        app.create_leads(vec![
            json!({"email": "bounce@stop.example", "tags": ["stop"]}),
            json!({"email": "unsub@stop.example", "tags": ["stop"]}),
            json!({"email": "stays@stop.example", "tags": ["stop"]}),
        ])
        .await;
        let campaign = create(&app, two_emails("stop")).await;
        activate(&app, &campaign["id"]).await;
        run_due(&app).await;
        let mail = sink.wait_for(3, WAIT).await.unwrap();
        let of = |to: &str| mail.iter().find(|m| m.recipients[0] == to).unwrap().clone();
        // a permanent bounce, as Mailgun signs it
        let bounced_id = of("bounce@stop.example").message_id().unwrap();
        let timestamp = Utc::now().timestamp().to_string();
        let token = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0";
        let signature = hmac_hex("mailgun-signing-key", &format!("{timestamp}{token}"));
        let body = json!({
            "signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": {"event": "failed", "id": "mg-1", "severity": "permanent", "timestamp": 1780300000.0,
                           "recipient": "bounce@stop.example", "reason": "bounce",
                           "message": {"headers": {"message-id": bounced_id}},
                           "delivery-status": {"code": 550, "message": "mailbox unavailable"}}
        });
        let res = app
            .client
            .post(app.url("/webhooks/email/mailgun"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "{}", res.text().await.unwrap());
        // a one-click unsubscribe, as a mail client posts it (no CSRF header, form body)
        let link = of("unsub@stop.example").header("List-Unsubscribe").unwrap();
        let path = link
            .trim_matches(['<', '>'])
            .trim_start_matches("http://127.0.0.1:9")
            .to_owned();
        let page = app.client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(page.status().as_u16(), 200);
        assert!(page.text().await.unwrap().contains("<form method=\"post\""));
        let res = app
            .client
            .post(app.url(&path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        assert!(res.text().await.unwrap().contains("u***@stop.example"));
        let forged = app
            .client
            .post(app.url("/u/bm90LWEtdG9rZW4.AAAA"))
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status().as_u16(), 404);

        clock.set(utc(2026, 6, 1, 9, 0));
        run_due(&app).await;
        let later: Vec<String> = sink.messages()[3..]
            .iter()
            .map(|m| m.recipients[0].clone())
            .collect();
        assert_eq!(later, ["stays@stop.example"]);
        let s = stats(&app, &campaign["id"]).await;
        assert_eq!(
            (s["bounced"].as_u64(), s["unsubscribed"].as_u64()),
            (Some(1), Some(1)),
            "{s}"
        );

        // both addresses are suppressed: a new campaign does not mail them
        let list = app
            .gql(Role::Admin, "{ mailSuppressions { email reason } }", json!({}))
            .await;
        let mut listed: Vec<(String, String)> = list["mailSuppressions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["email"].as_str().unwrap().to_owned(),
                    s["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        listed.sort();
        assert_eq!(
            listed,
            [
                ("bounce@stop.example".to_owned(), "bounced".to_owned()),
                ("unsub@stop.example".to_owned(), "unsubscribed".to_owned())
            ]
        );
        let again = create(&app, two_emails("stop")).await;
        activate(&app, &again["id"]).await;
        run_due(&app).await;
        let fresh: Vec<String> = sink.messages()[4..]
            .iter()
            .map(|m| m.recipients[0].clone())
            .collect();
        assert_eq!(fresh, ["stays@stop.example"], "suppressed at send time");
        let s = stats(&app, &again["id"]).await;
        assert_eq!(s["exitedBy"], json!([{"key": "suppressed", "count": 2}]), "{s}");
    }
}

fn hmac_hex(key: &str, data: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_send_lost_mid_data_is_unconfirmed_shown_and_never_resent() {
    for backend in backends() {
        let sink = Sink::start().await;
        sink.on_recipient("lost@lost.example", Mode::DropMidData);
        sink.on_recipient(
            "later@lost.example",
            Mode::DeferRcpt(451, "try again later".into()),
        );
        sink.on_recipient("never@lost.example", Mode::RefuseRcpt(550, "no such user".into()));
        let app = app_for(backend, &sink, false).await;
        let clock = Clock::install(&app, utc(2026, 6, 1, 8, 0));
        let leads = app
            .create_leads(vec![
                json!({"email": "lost@lost.example", "tags": ["lost"]}),
                json!({"email": "later@lost.example", "tags": ["lost"]}),
                json!({"email": "never@lost.example", "tags": ["lost"]}),
            ])
            .await;
        let campaign = create(&app, two_emails("lost")).await;
        activate(&app, &campaign["id"]).await;
        run_due(&app).await;
        let s = stats(&app, &campaign["id"]).await;
        assert_eq!(
            (s["unconfirmed"].as_u64(), s["rejected"].as_u64()),
            (Some(1), Some(1)),
            "{s}"
        );
        let lost = timeline(&app, &leads[0]).await;
        assert!(lost.iter().any(|l| l["outcome"] == "unconfirmed"), "{lost:?}");
        let deferred = timeline(&app, &leads[1]).await;
        assert!(
            deferred.iter().any(|l| l["outcome"] == "deferred"),
            "{deferred:?}"
        );
        // the relay takes mail again; after the deferral's backoff, only the deferred one is
        // sent (same Message-ID), the lost one is never sent again
        sink.on_recipient("lost@lost.example", Mode::Accept);
        sink.on_recipient("later@lost.example", Mode::Accept);
        clock.set(utc(2026, 6, 1, 8, 10));
        run_due(&app).await;
        let mail = sink.wait_for(1, WAIT).await.unwrap();
        assert_eq!(mail[0].recipients, ["later@lost.example"]);
        // the lost one moved on to its wait: its follow-up comes an hour later, once
        clock.set(utc(2026, 6, 1, 9, 0));
        run_due(&app).await;
        let to_lost = sink
            .messages()
            .iter()
            .filter(|m| m.recipients[0] == "lost@lost.example")
            .count();
        assert_eq!(to_lost, 1, "the follow-up only, never the lost first email again");
        let s = stats(&app, &campaign["id"]).await;
        assert_eq!(s["exitedBy"], json!([{"key": "rejected", "count": 1}]), "{s}");
        // refused at RCPT is a bounce: the address is suppressed
        assert_eq!(s["bounced"], 1, "{s}");
        let list = app
            .gql(Role::Admin, "{ mailSuppressions { email reason } }", json!({}))
            .await;
        assert_eq!(
            list["mailSuppressions"],
            json!([{"email": "never@lost.example", "reason": "bounced"}])
        );
    }
}

#[tokio::test]
async fn pausing_stops_new_steps_and_resuming_continues_where_each_lead_was() {
    for backend in backends() {
        let sink = Sink::start().await;
        let app = app_for(backend, &sink, false).await;
        let clock = Clock::install(&app, utc(2026, 6, 1, 8, 0));
        app.create_leads(vec![json!({"email": "p@pause.example", "tags": ["pause"]})])
            .await;
        let campaign = create(&app, two_emails("pause")).await;
        activate(&app, &campaign["id"]).await;
        run_due(&app).await;
        let data = app
            .gql(
                Role::Admin,
                "mutation($id: ID!) { pauseCampaign(input: {id: $id}) { campaign { state } userErrors { message } } }",
                json!({"id": campaign["id"]}),
            )
            .await;
        assert_eq!(data["pauseCampaign"]["campaign"]["state"], "PAUSED");
        clock.set(utc(2026, 6, 1, 12, 0));
        assert_eq!(run_due(&app).await, 0, "nothing of a paused campaign is claimed");
        assert_eq!(sink.messages().len(), 1);
        assert_eq!(
            activate(&app, &campaign["id"]).await,
            0,
            "a resume enrolls no one anew"
        );
        run_due(&app).await;
        assert_eq!(sink.wait_for(2, WAIT).await.unwrap().len(), 2);
    }
}

#[tokio::test]
async fn malformed_campaign_definitions_are_user_errors_and_change_nothing() {
    for backend in backends() {
        let sink = Sink::start().await;
        let app = app_for(backend, &sink, false).await;
        let base = two_emails("bad");
        let with = |path: &str, value: Value| {
            let mut input = base.clone();
            let mut at = &mut input;
            let parts: Vec<&str> = path.split('/').collect();
            for p in &parts[..parts.len() - 1] {
                at = match p.parse::<usize>() {
                    Ok(i) => &mut at[i],
                    Err(_) => &mut at[*p],
                };
            }
            let last = parts[parts.len() - 1];
            match last.parse::<usize>() {
                Ok(i) => at[i] = value,
                Err(_) => at[last] = value,
            }
            input
        };
        let cases: Vec<(Value, &str)> = vec![
            (with("steps/0/wait", json!({"duration": "P1D"})), "exactly one of"),
            (
                with("steps/0/email/subject", json!("Hi {{ firstName ")),
                "does not parse",
            ),
            (with("steps/0/email/body", json!("Hi {{ frstName }}")), "frstName"),
            (with("steps/1/wait/duration", json!("P1M")), "months"),
            (
                with("steps/1/wait/duration", json!("2 days")),
                "must start with 'P'",
            ),
            (with("timeZone", json!("Mars/Olympus")), "IANA"),
            (with("senders", json!(["not-an-address"])), "not an email address"),
            (with("steps", json!([])), "at least one step"),
            (
                with(
                    "steps/1",
                    json!({"branch": {"event": "REPLIED", "thenStep": "nowhere"}}),
                ),
                "no step is keyed",
            ),
            (
                with(
                    "sendWindow",
                    json!({"days": ["MON"], "start": "18:00", "end": "09:00"}),
                ),
                "",
            ),
            (with("steps/2/exit", json!(false)), "exactly one of"),
        ];
        for (input, expected) in cases {
            let data = app.gql(Role::Admin, CREATE, json!({ "input": input })).await;
            let errors = data["createCampaign"]["userErrors"].as_array().unwrap().clone();
            assert!(!errors.is_empty(), "{input}: expected user errors, got {data}");
            let text = errors
                .iter()
                .map(|e| e["message"].as_str().unwrap())
                .collect::<Vec<_>>()
                .join("; ");
            assert!(text.contains(expected), "{input}: `{expected}` not in {text}");
            assert!(data["createCampaign"]["campaign"].is_null());
        }
        let listed = app
            .gql(Role::Admin, "{ campaigns { edges { node { id } } } }", json!({}))
            .await;
        assert_eq!(listed["campaigns"]["edges"], json!([]));
        // members cannot create campaigns; partners cannot even read them
        let refused = app.gql_err(Role::Member, CREATE, json!({"input": base})).await;
        assert_eq!(crate::helpers::first_code(&refused), "FORBIDDEN");
        let refused = app
            .gql_err(
                Role::Partner,
                "{ campaigns { edges { node { id } } } }",
                json!({}),
            )
            .await;
        assert_eq!(crate::helpers::first_code(&refused), "FORBIDDEN");

        // a running campaign's steps can be edited and appended to, not removed or reordered
        let campaign = create(&app, base.clone()).await;
        activate(&app, &campaign["id"]).await;
        let update = "mutation($input: UpdateCampaignInput!) { updateCampaign(input: $input) { \
             campaign { steps { key } } userErrors { field message } } }";
        let mut removed = base.clone();
        removed["id"] = campaign["id"].clone();
        removed["steps"].as_array_mut().unwrap().remove(1);
        let data = app.gql(Role::Admin, update, json!({"input": removed})).await;
        assert!(
            data["updateCampaign"]["userErrors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("not removed or reordered"),
            "{data}"
        );
        let mut appended = base.clone();
        appended["id"] = campaign["id"].clone();
        appended["steps"]
            .as_array_mut()
            .unwrap()
            .push(json!({"key": "bye", "exit": true}));
        let data = app.gql(Role::Admin, update, json!({"input": appended})).await;
        assert_eq!(data["updateCampaign"]["userErrors"], json!([]), "{data}");
        assert_eq!(
            data["updateCampaign"]["campaign"]["steps"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
    }
}

#[tokio::test]
async fn malformed_or_unsigned_mail_events_are_refused_and_change_nothing() {
    for backend in backends() {
        let sink = Sink::start().await;
        let app = app_for(backend, &sink, false).await;
        Clock::install(&app, utc(2026, 6, 1, 8, 0));
        app.create_leads(vec![json!({"email": "m@mal.example", "tags": ["mal"]})])
            .await;
        let campaign = create(&app, two_emails("mal")).await;
        activate(&app, &campaign["id"]).await;
        run_due(&app).await;
        let id = sink.wait_for(1, WAIT).await.unwrap()[0].message_id().unwrap();
        let bounce = json!([{ "id": "b-1", "type": "bounced", "permanent": true, "messageId": format!("<{id}>"),
                              "occurredAt": "2026-06-01T08:00:00Z" }]);
        let (status, _) = post_generic(&app, bounce.clone(), "the-wrong-secret").await;
        assert_eq!(status, 401);
        let (status, body) =
            post_generic(&app, json!([{ "id": "x", "type": "exploded" }]), MAIL_SECRET).await;
        assert_eq!(status, 400, "{body}");
        let res = app
            .client
            .post(app.url("/webhooks/email/generic"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 401, "unsigned comes first");
        let res = app
            .client
            .post(app.url("/webhooks/email/postmark"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 404);
        let res = app
            .client
            .post(app.url("/webhooks/email/sendgrid"))
            .body("[]")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 404, "not configured");
        let s = stats(&app, &campaign["id"]).await;
        assert_eq!(
            (s["bounced"].as_u64(), s["exited"].as_u64()),
            (Some(0), Some(0)),
            "{s}"
        );
        // the same bounce, signed: applied
        let (status, body) = post_generic(&app, bounce, MAIL_SECRET).await;
        assert_eq!(status, 200, "{body}");
        let s = stats(&app, &campaign["id"]).await;
        assert_eq!(
            (s["bounced"].as_u64(), s["exited"].as_u64()),
            (Some(1), Some(1)),
            "{s}"
        );
    }
}

#[tokio::test]
async fn a_preview_renders_the_leads_variant_and_links() {
    for backend in backends() {
        let sink = Sink::start().await;
        let app = app_for(backend, &sink, false).await;
        let lead = app
            .create_leads(vec![json!({"email": "v@preview.example", "firstName": "Vi", "companyName": "Acme", "tags": ["pv"]})])
            .await
            .remove(0);
        let mut input = two_emails("pv");
        input["trackClicks"] = json!(true);
        input["steps"][0]["email"] = json!({
            "subject": "A for {{ firstName }}", "body": "Visit https://acme.example/x now, {{ companyName }}",
            "variants": [{ "subject": "B for {{ firstName }}", "body": "Visit https://acme.example/x now, {{ companyName }}" }]
        });
        let campaign = create(&app, input).await;
        let query = "query($c: ID!, $l: ID!) { previewCampaignEmail(campaignId: $c, stepId: \"hello\", leadId: $l) \
             { from to subject text variant messageId unsubscribeUrl } }";
        let data = app
            .gql(Role::Admin, query, json!({"c": campaign["id"], "l": lead}))
            .await;
        let p = &data["previewCampaignEmail"];
        let variant = p["variant"].as_u64().unwrap();
        let expected = if variant == 0 { "A for Vi" } else { "B for Vi" };
        assert_eq!(p["subject"], expected);
        assert_eq!(p["to"], "v@preview.example");
        let text = p["text"].as_str().unwrap();
        assert!(
            text.contains("http://127.0.0.1:9/c/") && text.ends_with("now, Acme"),
            "{text}"
        );
        // the same preview twice: the same variant and Message-ID
        let again = app
            .gql(Role::Admin, query, json!({"c": campaign["id"], "l": lead}))
            .await;
        assert_eq!(again["previewCampaignEmail"], *p);
        // the tracked link redirects and records the click
        let path = text
            .split("http://127.0.0.1:9")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        let no_redirects = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let res = no_redirects.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 302);
        assert_eq!(res.headers()["location"], "https://acme.example/x");
    }
}

#[tokio::test]
async fn campaign_events_reach_subscribers_on_both_protocols() {
    use crate::helpers::Protocol;
    for backend in backends() {
        let sink = Sink::start().await;
        let app = app_for(backend, &sink, false).await;
        Clock::install(&app, utc(2026, 6, 1, 8, 0));
        app.create_leads(vec![json!({"email": "s@sub.example", "tags": ["sub"]})])
            .await;
        let campaign = create(&app, two_emails("sub")).await;
        let mut clients = Vec::new();
        for protocol in Protocol::ALL {
            let mut client = app.ws_ready(protocol, Role::Member).await;
            client
                .start(
                    "c",
                    "subscription($id: ID) { campaignEvents(campaignId: $id) { type payload } }",
                    json!({"id": campaign["id"]}),
                )
                .await;
            client.sync("ready").await;
            clients.push(client);
        }
        activate(&app, &campaign["id"]).await;
        run_due(&app).await;
        for mut client in clients {
            let mut kinds = Vec::new();
            while kinds.len() < 2 {
                let message = client.recv().await;
                assert_eq!(message["id"], "c", "{message}");
                let event = &message["payload"]["data"]["campaignEvents"];
                kinds.push(format!(
                    "{}:{}",
                    event["type"].as_str().unwrap(),
                    event["payload"]["outcome"].as_str().unwrap_or("")
                ));
            }
            assert_eq!(kinds, ["CAMPAIGN_STATE:", "CAMPAIGN_STEP:sent"]);
            client.close().await;
        }
    }
}

/// A `leadgate campaigns run-due` process is killed (SIGKILL) while its relay holds the
/// message unanswered: the next run finds the send in flight, records it as unconfirmed and
/// does not send it again.
#[tokio::test]
async fn a_worker_killed_mid_send_leaves_an_unconfirmed_send_that_is_not_resent() {
    for backend in backends() {
        let sink = Sink::start().await;
        sink.set_mode(Mode::StallAfterData);
        let app = app_for(backend, &sink, false).await;
        let lead = app
            .create_leads(vec![json!({"email": "k@kill.example", "tags": ["kill"]})])
            .await
            .remove(0);
        let campaign = create(&app, two_emails("kill")).await;
        activate(&app, &campaign["id"]).await;

        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_leadgate"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LEADGATE_")) {
            cmd.env_remove(k);
        }
        let mut child = cmd
            .args(["campaigns", "run-due"])
            .env("LEADGATE_DATABASE_URL", &app.settings.database_url)
            .env("LEADGATE_SMTP_URL", sink.url())
            .env("LEADGATE_PUBLIC_URL", "http://127.0.0.1:9")
            .env("LEADGATE_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("run leadgate");
        let held = sink
            .wait_for_unanswered(1, WAIT)
            .await
            .expect("the child sent the data");
        child.kill().await.expect("SIGKILL");
        assert!(!child.wait().await.unwrap().success());
        assert_eq!(held[0].recipients, ["k@kill.example"]);

        // after the dead worker's lease, the step runs again here and finds the send in flight
        sink.set_mode(Mode::Accept);
        Clock::install(&app, Utc::now() + chrono::TimeDelta::minutes(11));
        run_due(&app).await;
        assert!(
            sink.messages().is_empty(),
            "the first email is not sent a second time"
        );
        assert_eq!(sink.unanswered().len(), 1);
        let s = stats(&app, &campaign["id"]).await;
        assert_eq!(s["unconfirmed"], 1, "{s}");
        let lines = timeline(&app, &lead).await;
        let email = lines
            .iter()
            .find(|l| l["type"] == "email")
            .expect("an email line");
        assert_eq!(email["outcome"], "unconfirmed", "{lines:?}");
        assert!(
            email["detail"].as_str().unwrap().contains("not resent"),
            "{email}"
        );
    }
}

/// An erased lead's enrollments, timeline and messages go; its suppression keeps only the
/// salted hash, so the address is still never mailed.
#[tokio::test]
async fn an_erased_lead_leaves_no_campaign_data_and_stays_suppressed() {
    for backend in backends() {
        let sink = Sink::start().await;
        let app = app_for(backend, &sink, false).await;
        Clock::install(&app, utc(2026, 6, 1, 8, 0));
        let email = "erase.me@erasure-campaign.example";
        let lead = app
            .create_leads(vec![
                json!({"email": email, "firstName": "Erasmus", "tags": ["er"]}),
            ])
            .await
            .remove(0);
        let campaign = create(&app, two_emails("er")).await;
        activate(&app, &campaign["id"]).await;
        run_due(&app).await;
        let link = sink.wait_for(1, WAIT).await.unwrap()[0]
            .header("List-Unsubscribe")
            .unwrap();
        let path = link
            .trim_matches(['<', '>'])
            .trim_start_matches("http://127.0.0.1:9")
            .to_owned();
        let res = app.client.post(app.url(&path)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200);
        let before = crate::erasure::dump_all_tables(&app).await;
        for table in ["campaign_messages", "mail_suppressions"] {
            assert!(
                crate::erasure::mentions(&before, &[email])
                    .iter()
                    .any(|(t, _)| t == table),
                "{backend:?}: the address is in {table} before the erasure"
            );
        }

        let erased = app
            .gql(
                Role::Admin,
                "mutation($id: ID!) { eraseLead(id: $id, reason: \"request\") { id } }",
                json!({"id": lead}),
            )
            .await;
        assert!(erased["eraseLead"]["id"].is_string(), "{erased}");
        let after = crate::erasure::dump_all_tables(&app).await;
        let left = crate::erasure::mentions(&after, &[email, "Erasmus"]);
        assert!(left.is_empty(), "{backend:?}: personal data left: {left:?}");
        let s = stats(&app, &campaign["id"]).await;
        assert_eq!(
            (s["enrolled"].as_u64(), s["sent"].as_u64()),
            (Some(0), Some(0)),
            "{s}"
        );
        let list = app
            .gql(Role::Admin, "{ mailSuppressions { email reason } }", json!({}))
            .await;
        assert_eq!(
            list["mailSuppressions"],
            json!([{"email": null, "reason": "unsubscribed"}])
        );
    }
}

/// A campaign whose end passes becomes COMPLETED, and the leads still in it leave.
#[tokio::test]
async fn a_campaign_completes_at_its_end() {
    for backend in backends() {
        let sink = Sink::start().await;
        let app = app_for(backend, &sink, false).await;
        let clock = Clock::install(&app, utc(2026, 6, 1, 8, 0));
        let lead = app
            .create_leads(vec![json!({"email": "e@end.example", "tags": ["end"]})])
            .await
            .remove(0);
        let mut input = two_emails("end");
        input["schedule"] = json!({"start": "2026-06-01T08:00:00Z", "end": "2026-06-01T08:30:00Z"});
        let campaign = create(&app, input).await;
        activate(&app, &campaign["id"]).await;
        run_due(&app).await;
        assert_eq!(sink.messages().len(), 1);
        clock.set(utc(2026, 6, 1, 8, 30));
        run_due(&app).await;
        let data = app.gql(Role::Admin, STATS, json!({"id": campaign["id"]})).await;
        assert_eq!(data["node"]["state"], "COMPLETED", "{data}");
        assert_eq!(
            data["node"]["stats"]["exitedBy"],
            json!([{"key": "campaignEnded", "count": 1}])
        );
        let lines = timeline(&app, &lead).await;
        assert_eq!(lines.last().unwrap()["outcome"], "campaignEnded", "{lines:?}");
        clock.set(utc(2026, 6, 1, 10, 0));
        run_due(&app).await;
        assert_eq!(sink.messages().len(), 1, "nothing after the end");
    }
}

/// A `waitFor` a field change ends early when the field changes and times out otherwise; a
/// branch on `WAIT_MATCHED` tells the two apart.
#[tokio::test]
async fn a_field_change_ends_a_wait_and_a_branch_knows_it() {
    for backend in backends() {
        let sink = Sink::start().await;
        let app = app_for(backend, &sink, false).await;
        let clock = Clock::install(&app, utc(2026, 6, 1, 8, 0));
        let leads = app
            .create_leads(vec![
                json!({"email": "moves@wait.example", "tags": ["wf"]}),
                json!({"email": "stays@wait.example", "tags": ["wf"]}),
            ])
            .await;
        let campaign = create(
            &app,
            json!({
                "name": "Wait for a status",
                "segment": {"filter": {"tags": {"anyOf": ["wf"]}}},
                "senders": ["sales@example.com"],
                "steps": [
                    {"waitFor": {"event": "FIELD_CHANGE", "field": "status", "timeout": "P1D"}},
                    {"branch": {"event": "WAIT_MATCHED", "thenStep": "yes"}},
                    {"email": {"subject": "timed out", "body": "…"}},
                    {"exit": true},
                    {"key": "yes", "email": {"subject": "matched", "body": "…"}}
                ]
            }),
        )
        .await;
        activate(&app, &campaign["id"]).await;
        run_due(&app).await;
        assert!(sink.messages().is_empty());
        let data = app
            .gql(
                Role::Member,
                "mutation($input: UpdateLeadInput!) { updateLead(input: $input) { userErrors { message } } }",
                json!({"input": {"id": leads[0], "status": "CONTACTED"}}),
            )
            .await;
        assert_eq!(data["updateLead"]["userErrors"], json!([]));
        run_due(&app).await;
        let mail = sink.wait_for(1, WAIT).await.unwrap();
        assert_eq!(
            (
                mail[0].recipients[0].as_str(),
                mail[0].header("Subject").as_deref()
            ),
            ("moves@wait.example", Some("matched"))
        );
        clock.set(utc(2026, 6, 2, 8, 0));
        run_due(&app).await;
        let mail = sink.wait_for(2, WAIT).await.unwrap();
        assert_eq!(
            (
                mail[1].recipients[0].as_str(),
                mail[1].header("Subject").as_deref()
            ),
            ("stays@wait.example", Some("timed out"))
        );
        let lines = timeline(&app, &leads[1]).await;
        assert!(
            lines
                .iter()
                .any(|l| l["type"] == "waitFor" && l["outcome"] == "timedOut"),
            "{lines:?}"
        );
        let s = stats(&app, &campaign["id"]).await;
        assert_eq!(
            (s["completed"].as_u64(), s["exited"].as_u64()),
            (Some(1), Some(1)),
            "{s}"
        );
    }
}

/// The non-mail steps do their work: a branch on a lead filter, an update of the lead, an
/// enrichment job, a CRM push, a webhook event; a lead that left enters again after the
/// re-entry delay.
#[tokio::test]
async fn every_kind_of_step_does_its_work_and_leads_enter_again_after_the_delay() {
    for backend in backends() {
        let sink = Sink::start().await;
        let app = app_for(backend, &sink, false).await;
        let clock = Clock::install(&app, utc(2026, 6, 1, 8, 0));
        let lead = app
            .create_leads(vec![
                json!({"email": "all@steps.example", "country": "DE", "tags": ["steps"]}),
            ])
            .await
            .remove(0);
        let crm = app
            .gql(
                Role::Admin,
                "mutation($input: CreateCrmConnectionInput!) { createCrmConnection(input: $input) { connection { id } userErrors { message } } }",
                json!({"input": {"kind": "HUBSPOT", "name": "crm", "apiBaseUrl": "http://127.0.0.1:9",
                                 "credentials": {"accessToken": "pat"}, "pushOnChange": false}}),
            )
            .await["createCrmConnection"]["connection"]["id"]
            .clone();
        let campaign = create(
            &app,
            json!({
                "name": "Every step",
                "segment": {"filter": {"tags": {"anyOf": ["steps"]}}, "reentryAfter": "P2D"},
                "senders": ["sales@example.com"],
                "steps": [
                    {"branch": {"filter": {"country": ["FR"]}, "thenStep": "french"}},
                    {"updateLead": {"status": "CONTACTED", "addTags": ["sequenced"], "owner": "ops"}},
                    {"enrich": {"groups": ["COMPANY"]}},
                    {"crmPush": {"connectionId": crm}},
                    {"webhook": {"label": "handoff"}},
                    {"exit": true},
                    {"key": "french", "email": {"subject": "Bonjour", "body": "…"}}
                ]
            }),
        )
        .await;
        activate(&app, &campaign["id"]).await;
        run_due(&app).await;
        assert!(sink.messages().is_empty(), "a German lead takes the else way");
        let lines: Vec<(String, String)> = timeline(&app, &lead)
            .await
            .iter()
            .map(|l| {
                (
                    l["type"].as_str().unwrap().to_owned(),
                    l["outcome"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expected = [
            ("branch", "else"),
            ("updateLead", "updated"),
            ("enrich", "queued"),
            ("crmPush", "queued"),
            ("webhook", "emitted"),
            ("exit", "exited"),
        ];
        assert_eq!(
            lines,
            expected.map(|(a, b)| (a.to_owned(), b.to_owned())),
            "{backend:?}"
        );
        let data = app
            .gql(
                Role::Admin,
                "query($id: ID!) { node(id: $id) { ... on Lead { status owner tags crmLinks { status } } } }",
                json!({"id": lead}),
            )
            .await;
        let node = &data["node"];
        assert_eq!(
            (node["status"].as_str(), node["owner"].as_str()),
            (Some("CONTACTED"), Some("ops")),
            "{data}"
        );
        assert!(
            node["tags"].as_array().unwrap().contains(&json!("sequenced")),
            "{data}"
        );
        assert_eq!(node["crmLinks"], json!([{"status": "PENDING"}]), "{data}");
        let queued = app
            .gql(
                Role::Admin,
                "{ jobQueue { stats { kind state count } } }",
                json!({}),
            )
            .await;
        assert!(
            queued["jobQueue"]["stats"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["kind"] == "enrich.leads"),
            "{queued}"
        );

        // two days after it left, the segment refresh lets it in again
        clock.set(utc(2026, 6, 2, 9, 0));
        assert_eq!(
            app.services.campaigns.refresh_segments().await.unwrap(),
            0,
            "not yet"
        );
        clock.set(utc(2026, 6, 3, 9, 0));
        assert_eq!(app.services.campaigns.refresh_segments().await.unwrap(), 1);
        run_due(&app).await;
        let s = stats(&app, &campaign["id"]).await;
        assert_eq!(
            (s["enrolled"].as_u64(), s["exited"].as_u64()),
            (Some(1), Some(1)),
            "{s}"
        );
    }
}
