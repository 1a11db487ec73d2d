//! Rate limits over HTTP and WebSocket: per token, per workspace, per role, per client address
//! and by cost; 429 with `Retry-After` and the `RateLimit` headers; one limit shared by two
//! instances through Redis; and Redis down, slow, flushed and back.
//!
//! Rates are per hour so nothing is earned back while a test runs: every count is exact.

use crate::helpers::{
    Mode, Protocol, Proxy, TestApp, backends, first_code, metric, poll_until, service_url_or_skip,
    spawn_app_with, spawn_second_app,
};
use leadgate::config::Settings;
use leadgate::domain::Role;
use secrecy::SecretString;
use serde_json::{Value, json};
use std::time::Duration;

/// `LEADGATE_TEST_REDIS_URL`, per `service_url_or_skip`.
pub fn redis_url_or_skip() -> Option<String> {
    service_url_or_skip("LEADGATE_TEST_REDIS_URL", "Redis")
}

/// A key prefix no other test uses.
pub fn fresh_prefix() -> String {
    format!("lgt:{}:", uuid::Uuid::now_v7().simple())
}

/// Settings on Redis at `url` with a prefix of their own.
pub fn on_redis(s: &mut Settings, url: &str) {
    s.redis_url = Some(SecretString::from(url.to_owned()));
    s.redis_prefix = fresh_prefix();
}

struct Answer {
    status: u16,
    body: Value,
    headers: reqwest::header::HeaderMap,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn ask(app: &TestApp, token: Option<&str>, query: &str) -> Answer {
    let mut req = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .header("accept", "application/graphql-response+json")
        .body(json!({ "query": query }).to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.json().await.expect("JSON body");
    Answer {
        status,
        body,
        headers,
    }
}

const SMALL: &str = "{ __typename }";

/// How many of `n` requests were admitted; every refusal is a proper 429.
async fn admitted(app: &TestApp, token: Option<&str>, n: usize) -> usize {
    let mut admitted = 0;
    for _ in 0..n {
        let a = ask(app, token, SMALL).await;
        match a.status {
            200 => admitted += 1,
            429 => assert_eq!(first_code(&a.body), "RATE_LIMITED", "{}", a.body),
            other => panic!("unexpected {other}: {}", a.body),
        }
    }
    admitted
}

#[tokio::test]
async fn a_token_over_its_limit_gets_429_with_retry_after_and_the_ratelimit_headers() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| s.rate_limit = "3/hour".into()).await;
        let token = app.token(Role::Member);
        for remaining in [2, 1, 0] {
            let a = ask(&app, Some(&token), SMALL).await;
            assert_eq!(a.status, 200, "{}", a.body);
            assert_eq!(a.header("ratelimit-policy"), Some("\"token\";q=3;w=3600"));
            let current = a.header("ratelimit").expect("RateLimit header");
            assert!(
                current.starts_with(&format!("\"token\";r={remaining};t=")),
                "{current}"
            );
            assert!(a.header("retry-after").is_none());
        }
        let refused = ask(&app, Some(&token), SMALL).await;
        assert_eq!(refused.status, 429, "{}", refused.body);
        assert_eq!(first_code(&refused.body), "RATE_LIMITED");
        assert!(
            refused.body.get("data").is_none(),
            "nothing ran: {}",
            refused.body
        );
        let retry: u64 = refused
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!(
            (1..=1200).contains(&retry),
            "one of 3 per hour is back within 20 minutes: {retry}"
        );
        assert!(refused.header("ratelimit").expect("RateLimit").contains(";r=0;"));
        // another caller has a limit of its own
        let other = app
            .auth
            .mint(
                "someone-else",
                app.workspace.id,
                Role::Member,
                Duration::from_secs(600),
            )
            .expect("mint");
        assert_eq!(ask(&app, Some(&other), SMALL).await.status, 200);
        let metrics = app.metrics().await;
        assert_eq!(
            metric(
                &metrics,
                "leadgate_rate_limit_requests_total{outcome=\"refused\"}"
            ),
            1.0
        );
    }
}

#[tokio::test]
async fn a_costly_query_spends_more_of_the_limit() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| s.rate_limit = "10/hour".into()).await;
        let token = app.token(Role::Member);
        // 1 + (1 + 4 × 400) / 100 = 17 units, more than the burst: it costs all 10
        let page = "{ leads(first: 400) { edges { node { id email } } } }";
        let a = ask(&app, Some(&token), page).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(
            a.header("ratelimit").expect("RateLimit").contains(";r=0;"),
            "{:?}",
            a.headers
        );
        assert_eq!(ask(&app, Some(&token), SMALL).await.status, 429);
    }
}

#[tokio::test]
async fn anonymous_requests_are_limited_per_client_address() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| s.rate_limit_anonymous = "2/hour".into()).await;
        assert_eq!(admitted(&app, None, 3).await, 2);
        let refused = ask(&app, None, SMALL).await;
        assert_eq!(refused.status, 429);
        assert_eq!(refused.header("ratelimit-policy"), Some("\"address\";q=2;w=3600"));
        // a token is counted on its own, not against the address
        let token = app.token(Role::Viewer);
        assert_eq!(ask(&app, Some(&token), SMALL).await.status, 200);
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_anonymous_limit() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| {
            s.rate_limit_anonymous = "2/hour".into();
            s.trusted_proxies = vec!["127.0.0.1/32".into()];
        })
        .await;
        let from = |client: &'static str| {
            let app = &app;
            async move {
                app.client
                    .post(app.url("/graphql"))
                    .header("content-type", "application/json")
                    .header("x-forwarded-for", client)
                    .body(json!({ "query": SMALL }).to_string())
                    .send()
                    .await
                    .expect("request")
                    .status()
                    .as_u16()
            }
        };
        let mut statuses = Vec::new();
        for client in ["203.0.113.1", "203.0.113.1", "203.0.113.1", "203.0.113.2"] {
            statuses.push(from(client).await);
        }
        assert_eq!(statuses, [200, 200, 429, 200], "{backend:?}");
        // a spoofed address before the one the proxy appended does not buy a new limit
        assert_eq!(from("198.51.100.9, 203.0.113.1").await, 429);
    }
}

#[tokio::test]
async fn a_workspace_limit_covers_all_its_callers_and_no_other_workspace() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| {
            s.rate_limit = "100/hour".into();
            s.rate_limit_workspace = "3/hour".into();
        })
        .await;
        let mut tokens = Vec::new();
        for who in ["a", "b", "c", "d"] {
            tokens.push(
                app.auth
                    .mint(who, app.workspace.id, Role::Member, Duration::from_secs(600))
                    .expect("mint"),
            );
        }
        let statuses: Vec<u16> = {
            let mut out = Vec::new();
            for t in &tokens {
                out.push(ask(&app, Some(t), SMALL).await.status);
            }
            out
        };
        assert_eq!(statuses, [200, 200, 200, 429]);
        let refused = ask(&app, Some(&tokens[0]), SMALL).await;
        assert_eq!(
            refused.header("ratelimit-policy"),
            Some("\"workspace\";q=3;w=3600")
        );
        let elsewhere = app.token_in(&app.other, Role::Member);
        assert_eq!(ask(&app, Some(&elsewhere), SMALL).await.status, 200);
    }
}

#[tokio::test]
async fn a_roles_rate_replaces_the_default() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| {
            s.rate_limit = "100/hour".into();
            s.rate_limit_roles.insert("partner".into(), "1/hour".into());
        })
        .await;
        let partner = app.token(Role::Partner);
        assert_eq!(admitted(&app, Some(&partner), 3).await, 1);
        let admin = app
            .auth
            .mint(
                "an-admin",
                app.workspace.id,
                Role::Admin,
                Duration::from_secs(600),
            )
            .expect("mint");
        assert_eq!(admitted(&app, Some(&admin), 3).await, 3);
    }
}

#[tokio::test]
async fn an_api_keys_own_rate_replaces_the_default_and_is_counted_per_key() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| s.rate_limit = "100/hour".into()).await;
        let (_, slow) = crate::api_keys::create_key_with(
            &app,
            json!({"name": "nightly sync", "role": "PARTNER", "scopes": ["READ_LEADS"], "rateLimit": "2/hour"}),
        )
        .await;
        let (_, fast) = crate::api_keys::create_key_with(
            &app,
            json!({"name": "dashboard", "role": "VIEWER", "scopes": ["READ_LEADS"]}),
        )
        .await;
        assert_eq!(admitted(&app, Some(&slow), 4).await, 2);
        let refused = ask(&app, Some(&slow), SMALL).await;
        assert_eq!(refused.header("ratelimit-policy"), Some("\"key\";q=2;w=3600"));
        assert_eq!(admitted(&app, Some(&fast), 4).await, 4);
    }
}

#[tokio::test]
async fn malformed_rate_settings_are_refused_naming_the_setting() {
    for (field, value) in [
        ("rate_limit", "600"),
        ("rate_limit_anonymous", "10/fortnight"),
        ("rate_limit_workspace", "0/min"),
        ("trusted_proxies", "intranet"),
    ] {
        let mut s = Settings::default();
        match field {
            "rate_limit" => s.rate_limit = value.into(),
            "rate_limit_anonymous" => s.rate_limit_anonymous = value.into(),
            "trusted_proxies" => s.trusted_proxies = vec![value.into()],
            _ => s.rate_limit_workspace = value.into(),
        }
        let err = s.validate().expect_err(value).to_string();
        assert!(err.contains(field), "{err}");
    }
    let mut s = Settings::default();
    s.rate_limit_roles.insert("owner".into(), "1/min".into());
    assert!(s.validate().expect_err("role").to_string().contains("not a role"));
    let s = Settings {
        redis_url: Some(SecretString::from("http://127.0.0.1:6379".to_owned())),
        ..Settings::default()
    };
    assert!(s.validate().expect_err("scheme").to_string().contains("redis://"));
}

#[tokio::test]
async fn a_subscribe_over_the_limit_closes_the_socket_with_4429() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| s.rate_limit = "1/hour".into()).await;
        for protocol in Protocol::ALL {
            let token = app
                .auth
                .mint(
                    &format!("ws-{}", protocol.name()),
                    app.workspace.id,
                    Role::Member,
                    Duration::from_secs(600),
                )
                .expect("mint");
            let mut ws = app.ws(protocol).await;
            ws.init(&token).await;
            // messages are handled in order: the first start is admitted, the second is not
            ws.start("1", "subscription { leadChanged { lead { id } } }", json!({}))
                .await;
            ws.start("2", "subscription { leadChanged { lead { id } } }", json!({}))
                .await;
            let (code, reason) = ws.closed().await;
            assert_eq!(code, 4429, "{protocol:?}: {reason}");
            assert!(reason.contains("retry after"), "{reason}");
        }
    }
}

#[tokio::test]
async fn two_instances_on_one_redis_admit_one_limit_between_them() {
    let Some(redis) = redis_url_or_skip() else { return };
    for backend in backends() {
        let a = spawn_app_with(backend, |s| {
            on_redis(s, &redis);
            s.rate_limit = "5/hour".into();
        })
        .await;
        let b = spawn_second_app(&a).await;
        let token = a.token(Role::Member);
        let mut admitted_total = 0;
        for i in 0..12 {
            let app = if i % 2 == 0 { &a } else { &b };
            if ask(app, Some(&token), SMALL).await.status == 200 {
                admitted_total += 1;
            }
        }
        assert_eq!(admitted_total, 5, "{backend:?}");
        let metrics = a.metrics().await;
        assert_eq!(metric(&metrics, "leadgate_redis_up"), 1.0);
        assert_eq!(metric(&metrics, "leadgate_rate_limit_fallbacks_total"), 0.0);
    }
}

fn host_port(url: &str) -> String {
    let parsed = url::Url::parse(url).expect("Redis URL");
    format!(
        "{}:{}",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port().unwrap_or(6379)
    )
}

#[tokio::test]
async fn redis_down_slow_and_back_degrades_to_this_process_and_recovers() {
    let Some(redis) = redis_url_or_skip() else { return };
    for backend in backends() {
        let proxy = Proxy::start(host_port(&redis)).await;
        let app = spawn_app_with(backend, |s| {
            on_redis(s, &format!("redis://{}", proxy.addr()));
            s.redis_timeout_ms = 200;
            s.rate_limit = "4/hour".into();
        })
        .await;
        let token = app.token(Role::Member);
        assert_eq!(ask(&app, Some(&token), SMALL).await.status, 200);
        assert_eq!(
            metric(&app.metrics().await, "leadgate_rate_limit_fallbacks_total"),
            0.0
        );

        // down: requests are still served and limited, in this process
        proxy.set(Mode::Refuse);
        assert_eq!(
            admitted(&app, Some(&token), 6).await,
            4,
            "the local limit starts from rest"
        );
        let metrics = app.metrics().await;
        assert_eq!(metric(&metrics, "leadgate_redis_up"), 0.0);
        assert!(metric(&metrics, "leadgate_rate_limit_fallbacks_total") >= 1.0);

        // slow: a Redis that never answers costs a bounded wait, then the fallback
        proxy.set(Mode::Stall);
        let other = app
            .auth
            .mint("slow", app.workspace.id, Role::Member, Duration::from_secs(600))
            .expect("mint");
        let stalled = tokio::time::timeout(Duration::from_secs(10), ask(&app, Some(&other), SMALL))
            .await
            .expect("a stalled Redis does not hold the request");
        assert_eq!(stalled.status, 200);

        // back: the shared limit is used again (it still remembers the first request)
        proxy.set(Mode::Pass);
        let fresh = app
            .auth
            .mint("fresh", app.workspace.id, Role::Member, Duration::from_secs(600))
            .expect("mint");
        poll_until(Duration::from_secs(15), "Redis to be used again", || async {
            let _ = ask(&app, Some(&fresh), SMALL).await;
            (metric(&app.metrics().await, "leadgate_redis_up") == 1.0).then_some(())
        })
        .await;
        let before = metric(&app.metrics().await, "leadgate_rate_limit_fallbacks_total");
        assert_eq!(
            admitted(&app, Some(&token), 5).await,
            3,
            "Redis counted the first request"
        );
        assert_eq!(
            metric(&app.metrics().await, "leadgate_rate_limit_fallbacks_total"),
            before
        );
    }
}

#[tokio::test]
async fn a_flushed_redis_starts_the_limits_from_rest_and_reloads_its_script() {
    let Some(redis) = redis_url_or_skip() else { return };
    // a database of its own, so flushing it touches no other test
    let mut url = url::Url::parse(&redis).expect("URL");
    url.set_path("/11");
    let url = url.to_string();
    let app = spawn_app_with(backends()[0], |s| {
        on_redis(s, &url);
        s.rate_limit = "2/hour".into();
    })
    .await;
    let token = app.token(Role::Member);
    assert_eq!(admitted(&app, Some(&token), 3).await, 2);
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
    let _: () = redis::cmd("FLUSHDB").query_async(&mut conn).await.expect("flush");
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .expect("script flush");
    assert_eq!(
        admitted(&app, Some(&token), 3).await,
        2,
        "from rest after the flush"
    );
    assert_eq!(
        metric(&app.metrics().await, "leadgate_rate_limit_fallbacks_total"),
        0.0,
        "the script was loaded again, not skipped"
    );
}
