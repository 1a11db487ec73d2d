//! Provider controls: what a hanging, failing, rate-limiting or key-rejecting provider does to
//! a page (answered within the timeout, visible in errors and metrics, nothing charged, the
//! next provider fills in), the circuit breaker, credit quotas and their UTC periods (also
//! across two instances on one PostgreSQL), the per-second rate, and API keys that never show
//! up in a response or a log line of the real binary.

use crate::fakes::{self, Known};
use crate::helpers::{
    MASTER_KEY, SECRET, TestApp, backends, fresh_database, metric, poll_until, spawn_app_with,
    spawn_second_app,
};
use chrono::{DateTime, Datelike, TimeZone, Utc};
use leadgate::config::Settings;
use leadgate::domain::{ProviderKind, Role, UsagePeriod};
use leadgate::store::{PoolOptions, Store};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wiremock::{MockServer, ResponseTemplate};

const PDL_KEY: &str = "pdl-key-123456";

/// A page of the leads tagged `$tag` with their person's name.
const PAGE: &str = "query($tag: String!, $policy: EnrichmentPolicy) {
  leads(first: 100, filter: {tags: {anyOf: [$tag]}}) { edges { node { id email person(policy: $policy) { fullName } } } }
}";

/// Provenance of the same page, read after it.
const PROVENANCE: &str = "query($tag: String!) {
  leads(first: 100, filter: {tags: {anyOf: [$tag]}}) { edges { node { enrichment { field provider } } } }
}";

/// PDL's circuit gauge: 0 closed, 1 half-open, 2 open.
const PDL_CIRCUIT: &str = r#"leadgate_provider_circuit_state{provider="pdl"}"#;

const PROVIDERS: &str = "{ providers { name enabled disabledReason hasApiKey apiKeyLast4 circuit usage { period used limit remaining resetsAt } } }";

/// An app on the fake PDL with short timeouts, one retry, and a breaker that stays closed
/// unless `adjust` says otherwise.
async fn app_on(
    backend: crate::helpers::Backend,
    pdl: &MockServer,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    app_with_clock(backend, pdl, leadgate::enrich::Clock::system(), adjust).await
}

/// `app_on`, with the rate gates reading `clock`.
async fn app_with_clock(
    backend: crate::helpers::Backend,
    pdl: &MockServer,
    clock: leadgate::enrich::Clock,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    crate::helpers::spawn_app_with_clock(backend, clock, |s| {
        s.provider_urls.insert("pdl".into(), fakes::pdl_url(pdl));
        s.provider_timeout_ms = 300;
        s.provider_retries = 1;
        s.circuit_failure_threshold = 100;
        adjust(s);
    })
    .await
}

/// PDL with a key, a per-call timeout of 300 ms and a daily cap of 100; the sandbox at 1 credit
/// per hit.
async fn configure(app: &TestApp) {
    app.configure_provider(json!({
        "provider": "PEOPLE_DATA_LABS", "apiKey": PDL_KEY, "timeoutMs": 300, "dailyCreditCap": 100,
    }))
    .await;
    app.configure_provider(json!({
        "provider": "SANDBOX", "options": {"latencyMs": 0, "missRate": 0.0, "creditsPerHit": 1},
    }))
    .await;
}

/// `count` leads tagged `tag`.
async fn leads(app: &TestApp, tag: &str, count: usize) -> Vec<String> {
    app.create_leads(
        (0..count)
            .map(|i| json!({"email": format!("{tag}-{i}@{tag}.example"), "tags": [tag]}))
            .collect(),
    )
    .await
}

fn nodes(body: &Value) -> Vec<Value> {
    body["data"]["leads"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("no page in {body}"))
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

fn errors(body: &Value) -> Vec<Value> {
    body["errors"].as_array().cloned().unwrap_or_default()
}

/// `extensions.enrichment` as (creditsSpent, providerCalls).
fn spend(body: &Value) -> (i64, i64) {
    let e = &body["extensions"]["enrichment"];
    assert!(e.is_object(), "no extensions.enrichment in {body}");
    (
        e["creditsSpent"].as_i64().unwrap(),
        e["providerCalls"].as_i64().unwrap(),
    )
}

/// Runs the page for `tag`. No assertion here or in the tests looks at how long a page took:
/// what a misbehaving provider does to a page shows in its errors, the fake's request log
/// and the metrics.
async fn page(app: &TestApp, tag: &str, policy: Option<&str>) -> Value {
    app.gql_body(Role::Viewer, PAGE, json!({"tag": tag, "policy": policy}))
        .await
}

/// Every lead on the page has a null person and a coded error naming `provider`; returns the
/// messages.
fn assert_unfilled(body: &Value, code: &str, provider: &str) -> Vec<String> {
    let page = nodes(body);
    assert!(!page.is_empty(), "{body}");
    assert!(page.iter().all(|n| n["person"].is_null()), "{body}");
    assert!(
        page.iter().all(|n| n["email"].is_string()),
        "the rest resolves: {body}"
    );
    let errors = errors(body);
    assert_eq!(errors.len(), page.len(), "one error per lead: {body}");
    errors
        .iter()
        .map(|e| {
            assert_eq!(e["extensions"]["code"], code, "{e}");
            assert_eq!(e["extensions"]["providers"], json!([provider]), "{e}");
            assert_eq!(e["path"][4], "person", "{e}");
            e["message"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Every lead on the page has a person and there are no errors.
fn assert_filled(body: &Value) {
    assert!(errors(body).is_empty(), "{body}");
    let page = nodes(body);
    assert!(!page.is_empty(), "{body}");
    assert!(page.iter().all(|n| n["person"]["fullName"].is_string()), "{body}");
}

/// The providers that supplied `person.fullName` on the page for `tag`.
async fn name_providers(app: &TestApp, tag: &str) -> Vec<String> {
    let body = app.gql_body(Role::Viewer, PROVENANCE, json!({"tag": tag})).await;
    nodes(&body)
        .iter()
        .map(|n| {
            n["enrichment"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["field"] == "person.fullName")
                .map_or_else(
                    || "none".to_owned(),
                    |p| p["provider"].as_str().unwrap().to_owned(),
                )
        })
        .collect()
}

/// One provider as `providers` shows it.
async fn provider(app: &TestApp, name: &str) -> Value {
    let data = app.gql(Role::Admin, PROVIDERS, json!({})).await;
    data["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {data}"))
}

/// `used` of one period in a provider's `usage`.
fn used(provider: &Value, period: &str) -> i64 {
    provider["usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["period"] == period)
        .and_then(|u| u["used"].as_i64())
        .unwrap_or_else(|| panic!("no {period} usage in {provider}"))
}

fn calls(metrics: &str, outcome: &str) -> f64 {
    metric(
        metrics,
        &format!(r#"leadgate_provider_calls_total{{provider="pdl",group="person",outcome="{outcome}"}}"#),
    )
}

fn credits(metrics: &str, provider: &str) -> f64 {
    metric(
        metrics,
        &format!(r#"leadgate_provider_credits_total{{provider="{provider}"}}"#),
    )
}

fn skips(metrics: &str, reason: &str) -> f64 {
    metric(
        metrics,
        &format!(r#"leadgate_provider_skips_total{{provider="pdl",reason="{reason}"}}"#),
    )
}

/// A PDL that fails in some way, alone in the waterfall and then before the sandbox: the page
/// answers in time, the failure is a `PROVIDER_UNAVAILABLE` error and an `outcome` in the
/// metrics, nothing is charged, and the sandbox fills the page. `attempts` is how many
/// requests one failing call makes; `attempts_later` how many the second page makes.
async fn failing_pdl_is_contained(
    backend: crate::helpers::Backend,
    reply: ResponseTemplate,
    outcome: &str,
    attempts: usize,
    attempts_later: usize,
) -> (TestApp, MockServer, Vec<String>) {
    let pdl = fakes::pdl_replying(reply).await;
    let app = app_on(backend, &pdl, |_| {}).await;
    configure(&app).await;
    app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS"]).await;
    leads(&app, "alone", 3).await;

    let body = page(&app, "alone", None).await;
    let messages = assert_unfilled(&body, "PROVIDER_UNAVAILABLE", "pdl");
    assert_eq!(spend(&body), (0, attempts as i64), "{backend:?} {outcome}");
    assert_eq!(
        fakes::requests_to(&pdl, fakes::PDL_BULK).await.len(),
        attempts,
        "{backend:?} {outcome}"
    );
    let metrics = app.metrics().await;
    assert_eq!(
        calls(&metrics, outcome),
        attempts as f64,
        "{backend:?}: {metrics}"
    );
    assert_eq!(credits(&metrics, "pdl"), 0.0, "{backend:?} {outcome}");
    assert_eq!(
        used(&provider(&app, "PEOPLE_DATA_LABS").await, "DAY"),
        0,
        "{backend:?} {outcome}: the reservation was given back"
    );

    app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS", "SANDBOX"])
        .await;
    leads(&app, "fallback", 3).await;
    let body = page(&app, "fallback", None).await;
    assert_filled(&body);
    assert_eq!(
        spend(&body).0,
        3,
        "{backend:?} {outcome}: only the sandbox's hits are paid"
    );
    assert_eq!(name_providers(&app, "fallback").await, vec!["SANDBOX"; 3]);
    assert_eq!(
        fakes::requests_to(&pdl, fakes::PDL_BULK).await.len(),
        attempts + attempts_later,
        "{backend:?} {outcome}"
    );
    let metrics = app.metrics().await;
    assert_eq!(credits(&metrics, "pdl"), 0.0, "{backend:?} {outcome}");
    assert_eq!(credits(&metrics, "sandbox"), 3.0, "{backend:?} {outcome}");
    assert_eq!(used(&provider(&app, "PEOPLE_DATA_LABS").await, "DAY"), 0);
    (app, pdl, messages)
}

#[tokio::test]
async fn a_hanging_provider_times_out_and_the_page_still_answers() {
    for backend in backends() {
        let hang = ResponseTemplate::new(200)
            .set_body_json(json!([]))
            .set_delay(Duration::from_secs(5));
        let (_app, _pdl, messages) = failing_pdl_is_contained(backend, hang, "timeout", 1, 1).await;
        assert!(messages[0].contains("no answer within 300 ms"), "{messages:?}");
    }
}

#[tokio::test]
async fn a_provider_answering_500s_is_retried_once_then_passed_over() {
    for backend in backends() {
        let reply = fakes::pdl_error(500, "server_error", "Internal server error");
        failing_pdl_is_contained(backend, reply, "transient", 2, 2).await;
    }
}

#[tokio::test]
async fn a_provider_answering_malformed_json_is_passed_over_without_retry() {
    for backend in backends() {
        let reply = ResponseTemplate::new(200).set_body_raw(
            r#"[{"status": 200, "likelihood": 8, "data": {"full_name": "#,
            "application/json",
        );
        let (_app, _pdl, messages) = failing_pdl_is_contained(backend, reply, "malformed", 1, 1).await;
        assert!(messages[0].contains("malformed"), "{messages:?}");
    }
}

#[tokio::test]
async fn a_rejected_key_disables_the_provider_until_a_new_key_is_set() {
    for backend in backends() {
        let reply = fakes::pdl_error(401, "authentication_error", "Invalid API key");
        // After the 401 the provider is off: the second page does not call it at all.
        let (app, pdl, messages) = failing_pdl_is_contained(backend, reply, "unauthorized", 1, 0).await;
        assert!(messages[0].contains("rejected the API key"), "{messages:?}");
        let p = provider(&app, "PEOPLE_DATA_LABS").await;
        assert_eq!(p["enabled"], false, "{backend:?}: {p}");
        assert!(
            p["disabledReason"]
                .as_str()
                .is_some_and(|r| r.contains("rejected")),
            "{backend:?}: {p}"
        );
        assert_eq!(p["hasApiKey"], true);

        let p = app
            .configure_provider(json!({"provider": "PEOPLE_DATA_LABS", "apiKey": "pdl-key-777777"}))
            .await;
        assert_eq!(p["enabled"], true, "{backend:?}: a new key re-enables it: {p}");
        assert_eq!(p["disabledReason"], Value::Null, "{p}");
        assert_eq!(p["apiKeyLast4"], "7777", "{p}");

        pdl.reset().await;
        fakes::mount_pdl(&pdl, fakes::everyone(), Duration::ZERO).await;
        let body = page(&app, "alone", Some("REFRESH")).await;
        assert_filled(&body);
        assert_eq!(name_providers(&app, "alone").await, vec!["PEOPLE_DATA_LABS"; 3]);
        let sent: Vec<String> = fakes::requests_to(&pdl, fakes::PDL_BULK)
            .await
            .iter()
            .filter_map(|r| r.headers.get("x-api-key")?.to_str().ok().map(str::to_owned))
            .collect();
        assert_eq!(sent, vec!["pdl-key-777777"], "{backend:?}: the new key is used");
    }
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_once_after_the_wait_and_charged_once() {
    for backend in backends() {
        let pdl = MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .and(wiremock::matchers::path(fakes::PDL_BULK))
            .respond_with(
                fakes::pdl_error(
                    429,
                    "rate_limit_error",
                    "An error occurred due to requests hitting the API too quick",
                )
                .insert_header("Retry-After", "1"),
            )
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&pdl)
            .await;
        fakes::mount_pdl(&pdl, fakes::everyone(), Duration::ZERO).await;
        let app = app_on(backend, &pdl, |_| {}).await;
        configure(&app).await;
        app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS", "SANDBOX"])
            .await;
        leads(&app, "slow", 3).await;

        let body = page(&app, "slow", None).await;
        assert_filled(&body);
        assert_eq!(name_providers(&app, "slow").await, vec!["PEOPLE_DATA_LABS"; 3]);
        assert_eq!(fakes::bulk_sizes(&pdl).await, vec![3, 3], "{backend:?}");
        assert_eq!(
            spend(&body),
            (3, 2),
            "{backend:?}: the refused attempt costs nothing"
        );
        let metrics = app.metrics().await;
        assert_eq!(calls(&metrics, "rate_limited"), 1.0, "{metrics}");
        assert_eq!(calls(&metrics, "ok"), 1.0, "{metrics}");
        assert_eq!(credits(&metrics, "pdl"), 3.0, "{metrics}");
        assert_eq!(used(&provider(&app, "PEOPLE_DATA_LABS").await, "DAY"), 3);
    }
}

#[tokio::test]
async fn a_retry_after_longer_than_the_longest_wait_is_not_waited_for() {
    for backend in backends() {
        // the same 429, asking for an hour: the waterfall moves on instead of retrying
        let pdl = MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .and(wiremock::matchers::path(fakes::PDL_BULK))
            .respond_with(
                fakes::pdl_error(429, "rate_limit_error", "Slow down").insert_header("Retry-After", "3600"),
            )
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&pdl)
            .await;
        fakes::mount_pdl(&pdl, fakes::everyone(), Duration::ZERO).await;
        let app = app_on(backend, &pdl, |_| {}).await;
        configure(&app).await;
        app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS", "SANDBOX"])
            .await;
        leads(&app, "later", 3).await;

        let body = page(&app, "later", None).await;
        assert_filled(&body);
        assert_eq!(
            name_providers(&app, "later").await,
            vec!["SANDBOX"; 3],
            "{backend:?}"
        );
        assert_eq!(
            fakes::bulk_sizes(&pdl).await,
            vec![3],
            "{backend:?}: no retry, where Retry-After: 1 gets one"
        );
        let metrics = app.metrics().await;
        assert_eq!(calls(&metrics, "rate_limited"), 1.0, "{metrics}");
        assert_eq!(calls(&metrics, "ok"), 0.0, "{metrics}");
        assert_eq!(credits(&metrics, "pdl"), 0.0, "{metrics}");
    }
}

#[tokio::test]
async fn the_circuit_opens_after_repeated_failures_and_an_open_circuit_sends_nothing() {
    for backend in backends() {
        let pdl = fakes::pdl_replying(fakes::pdl_error(503, "server_error", "Service unavailable")).await;
        // a cool-down no test outlives: the circuit stays open whatever the machine's pace
        let app = app_on(backend, &pdl, |s| {
            s.provider_retries = 0;
            s.circuit_failure_threshold = 2;
            s.circuit_cool_down_secs = 3600;
        })
        .await;
        configure(&app).await;
        app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS"]).await;
        leads(&app, "flaky", 2).await;
        assert!(
            app.metrics().await.contains(&format!("{PDL_CIRCUIT} 0\n")),
            "{backend:?}: closed before any call"
        );

        for n in 1..=2 {
            let body = page(&app, "flaky", None).await;
            assert_unfilled(&body, "PROVIDER_UNAVAILABLE", "pdl");
            assert_eq!(fakes::requests_to(&pdl, fakes::PDL_BULK).await.len(), n);
        }
        assert_eq!(
            provider(&app, "PEOPLE_DATA_LABS").await["circuit"],
            "OPEN",
            "{backend:?}"
        );
        assert_eq!(
            metric(&app.metrics().await, PDL_CIRCUIT),
            2.0,
            "{backend:?}: open"
        );

        // the provider recovers, but the open circuit does not call it
        pdl.reset().await;
        fakes::mount_pdl(&pdl, fakes::everyone(), Duration::ZERO).await;
        let body = page(&app, "flaky", None).await;
        let messages = assert_unfilled(&body, "PROVIDER_UNAVAILABLE", "pdl");
        assert!(messages[0].contains("circuit open"), "{messages:?}");
        assert_eq!(
            fakes::requests_to(&pdl, fakes::PDL_BULK).await.len(),
            0,
            "{backend:?}: an open circuit sends nothing"
        );
        assert_eq!(spend(&body), (0, 0));
        assert!(skips(&app.metrics().await, "circuit_open") >= 1.0);
        assert_eq!(provider(&app, "PEOPLE_DATA_LABS").await["circuit"], "OPEN");
    }
}

#[tokio::test]
async fn after_the_cool_down_one_probe_closes_the_circuit() {
    for backend in backends() {
        let pdl = fakes::pdl_replying(fakes::pdl_error(503, "server_error", "Service unavailable")).await;
        // no cool-down: the circuit is half-open as soon as it opens, whatever the clock says
        let app = app_on(backend, &pdl, |s| {
            s.provider_retries = 0;
            s.circuit_failure_threshold = 2;
            s.circuit_cool_down_secs = 0;
        })
        .await;
        configure(&app).await;
        app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS"]).await;
        leads(&app, "probe", 2).await;
        for n in 1..=2 {
            let body = page(&app, "probe", None).await;
            assert_unfilled(&body, "PROVIDER_UNAVAILABLE", "pdl");
            assert_eq!(fakes::requests_to(&pdl, fakes::PDL_BULK).await.len(), n);
        }
        assert_eq!(
            provider(&app, "PEOPLE_DATA_LABS").await["circuit"],
            "HALF_OPEN",
            "{backend:?}"
        );
        assert_eq!(
            metric(&app.metrics().await, PDL_CIRCUIT),
            1.0,
            "{backend:?}: half-open"
        );

        // the provider recovers; one probe goes out and closes the circuit
        pdl.reset().await;
        fakes::mount_pdl(&pdl, fakes::everyone(), Duration::ZERO).await;
        let body = page(&app, "probe", None).await;
        assert_filled(&body);
        assert_eq!(fakes::bulk_sizes(&pdl).await, vec![2], "{backend:?}: one probe");
        assert_eq!(provider(&app, "PEOPLE_DATA_LABS").await["circuit"], "CLOSED");
        assert!(
            app.metrics().await.contains(&format!("{PDL_CIRCUIT} 0\n")),
            "{backend:?}: closed again"
        );
    }
}

/// The next UTC midnight and first of the month after `at`.
fn next_boundaries(at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let midnight = Utc
        .with_ymd_and_hms(at.year(), at.month(), at.day(), 0, 0, 0)
        .unwrap()
        + chrono::Duration::days(1);
    let (y, m) = if at.month() == 12 {
        (at.year() + 1, 1)
    } else {
        (at.year(), at.month() + 1)
    };
    (midnight, Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).unwrap())
}

fn resets_at(provider: &Value, period: &str) -> DateTime<Utc> {
    let usage = provider["usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["period"] == period)
        .unwrap();
    usage["resetsAt"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn an_exhausted_quota_falls_through_to_the_next_provider() {
    for backend in backends() {
        let pdl = fakes::pdl(fakes::everyone()).await;
        let app = app_on(backend, &pdl, |_| {}).await;
        configure(&app).await;
        app.configure_provider(json!({
            "provider": "PEOPLE_DATA_LABS", "dailyCreditCap": 3, "monthlyCreditCap": 100,
        }))
        .await;
        app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS", "SANDBOX"])
            .await;

        leads(&app, "first", 3).await;
        let body = page(&app, "first", None).await;
        assert_filled(&body);
        assert_eq!(name_providers(&app, "first").await, vec!["PEOPLE_DATA_LABS"; 3]);
        let before = Utc::now();
        let p = provider(&app, "PEOPLE_DATA_LABS").await;
        let after = Utc::now();
        let usage: Vec<Value> = p["usage"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| json!([u["period"], u["used"], u["limit"], u["remaining"]]))
            .collect();
        assert_eq!(
            usage,
            vec![json!(["DAY", 3, 3, 0]), json!(["MONTH", 3, 100, 97])],
            "{backend:?}: {p}"
        );
        let (day, month) = next_boundaries(before);
        let (day_after, month_after) = next_boundaries(after);
        assert!([day, day_after].contains(&resets_at(&p, "DAY")), "{p}");
        assert!([month, month_after].contains(&resets_at(&p, "MONTH")), "{p}");

        // The day's credits are spent: the next page goes to the sandbox, without an error.
        leads(&app, "second", 2).await;
        let body = page(&app, "second", None).await;
        assert_filled(&body);
        assert_eq!(name_providers(&app, "second").await, vec!["SANDBOX"; 2]);
        assert_eq!(fakes::bulk_sizes(&pdl).await, vec![3], "{backend:?}");
        assert!(skips(&app.metrics().await, "quota") >= 1.0);

        // With nobody after it, the quota is the error.
        app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS"]).await;
        leads(&app, "third", 1).await;
        let body = page(&app, "third", None).await;
        let messages = assert_unfilled(&body, "QUOTA_EXCEEDED", "pdl");
        assert!(messages[0].contains("quota"), "{messages:?}");
        assert_eq!(fakes::bulk_sizes(&pdl).await, vec![3], "{backend:?}");
        assert_eq!(used(&provider(&app, "PEOPLE_DATA_LABS").await, "DAY"), 3);
    }
}

#[tokio::test]
async fn a_batch_larger_than_the_credits_left_uses_what_is_left() {
    for backend in backends() {
        let pdl = fakes::pdl(fakes::everyone()).await;
        let app = app_on(backend, &pdl, |_| {}).await;
        configure(&app).await;
        app.configure_provider(json!({"provider": "PEOPLE_DATA_LABS", "dailyCreditCap": 3}))
            .await;
        app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS", "SANDBOX"])
            .await;
        leads(&app, "five", 5).await;

        let body = page(&app, "five", None).await;
        assert_filled(&body);
        let mut providers = name_providers(&app, "five").await;
        providers.sort();
        assert_eq!(
            providers,
            vec![
                "PEOPLE_DATA_LABS",
                "PEOPLE_DATA_LABS",
                "PEOPLE_DATA_LABS",
                "SANDBOX",
                "SANDBOX"
            ],
            "{backend:?}: PDL answers as many as its 3 credits allow, the sandbox the rest"
        );
        assert_eq!(fakes::bulk_sizes(&pdl).await, vec![3], "{backend:?}");
        assert_eq!(used(&provider(&app, "PEOPLE_DATA_LABS").await, "DAY"), 3);
    }
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// The stored counter of one provider and period, as (period start, used).
async fn counter(
    store: &Store,
    app: &TestApp,
    kind: ProviderKind,
    period: UsagePeriod,
) -> (DateTime<Utc>, u64) {
    store
        .provider_usage(app.workspace.id)
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.provider == kind && u.period == period)
        .map(|u| (u.period_start, u.used))
        .expect("a usage row")
}

#[tokio::test]
async fn quotas_reset_at_utc_period_boundaries_and_releases_stay_in_their_period() {
    for backend in backends() {
        let app = spawn_app_with(backend, |_| {}).await;
        let store = &app.services.store;
        let ws = app.workspace.id;
        let pdl = ProviderKind::PeopleDataLabs;
        let day = UsagePeriod::Day;
        let month = UsagePeriod::Month;

        // Day: full one tenth of a second before midnight, empty again at midnight.
        let late = at("2026-03-31T23:59:59.900Z");
        let midnight = at("2026-04-01T00:00:00Z");
        assert_eq!(
            store.reserve_usage(ws, pdl, late, &[(day, 5, 5)]).await.unwrap(),
            None
        );
        assert_eq!(
            store.reserve_usage(ws, pdl, late, &[(day, 5, 1)]).await.unwrap(),
            Some(day),
            "{backend:?}"
        );
        assert_eq!(
            counter(store, &app, pdl, day).await,
            (at("2026-03-31T00:00:00Z"), 5)
        );
        assert_eq!(
            store
                .reserve_usage(ws, pdl, midnight, &[(day, 5, 5)])
                .await
                .unwrap(),
            None,
            "{backend:?}: a new UTC day starts from zero"
        );
        assert_eq!(counter(store, &app, pdl, day).await, (midnight, 5));

        // A reservation made yesterday gives nothing back to today; one made today does.
        store.release_usage(ws, pdl, late, &[(day, 2)]).await.unwrap();
        assert_eq!(counter(store, &app, pdl, day).await, (midnight, 5), "{backend:?}");
        store.release_usage(ws, pdl, midnight, &[(day, 2)]).await.unwrap();
        assert_eq!(counter(store, &app, pdl, day).await, (midnight, 3), "{backend:?}");
        let noon = at("2026-04-01T12:00:00Z");
        assert_eq!(
            store.reserve_usage(ws, pdl, noon, &[(day, 5, 2)]).await.unwrap(),
            None
        );
        assert_eq!(
            store.reserve_usage(ws, pdl, noon, &[(day, 5, 1)]).await.unwrap(),
            Some(day)
        );

        // Month, across a year end too.
        let apollo = ProviderKind::Apollo;
        for (last, first) in [
            ("2026-04-30T23:59:59.999999Z", "2026-05-01T00:00:00Z"),
            ("2026-12-31T23:59:59.500Z", "2027-01-01T00:00:00Z"),
        ] {
            assert_eq!(
                store
                    .reserve_usage(ws, apollo, at(last), &[(month, 10, 10)])
                    .await
                    .unwrap(),
                None
            );
            assert_eq!(
                store
                    .reserve_usage(ws, apollo, at(last), &[(month, 10, 1)])
                    .await
                    .unwrap(),
                Some(month),
                "{backend:?} {last}"
            );
            assert_eq!(
                store
                    .reserve_usage(ws, apollo, at(first), &[(month, 10, 10)])
                    .await
                    .unwrap(),
                None,
                "{backend:?}: {first} starts a new month"
            );
            store
                .release_usage(ws, apollo, at(last), &[(month, 4)])
                .await
                .unwrap();
            assert_eq!(counter(store, &app, apollo, month).await, (at(first), 10));
        }

        // Several periods in one reservation: all or nothing.
        let clearbit = ProviderKind::Clearbit;
        let t = at("2026-06-15T10:00:00Z");
        assert_eq!(
            store
                .reserve_usage(ws, clearbit, t, &[(day, 100, 4), (month, 5, 4)])
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .reserve_usage(ws, clearbit, t, &[(day, 100, 2), (month, 5, 2)])
                .await
                .unwrap(),
            Some(month)
        );
        assert_eq!(
            counter(store, &app, clearbit, day).await.1,
            4,
            "{backend:?}: the day was not charged for a refused reservation"
        );
        // A cap below the amount is refused without touching anything.
        assert_eq!(
            store
                .reserve_usage(ws, clearbit, t, &[(day, 1, 2)])
                .await
                .unwrap(),
            Some(day)
        );
        assert_eq!(counter(store, &app, clearbit, day).await.1, 4);
    }
}

#[tokio::test]
async fn two_instances_on_one_postgres_never_exceed_a_quota_together() {
    if crate::helpers::postgres_url_or_skip().is_none() {
        return;
    }
    let pdl = MockServer::start().await;
    fakes::mount_pdl(&pdl, fakes::everyone(), Duration::from_millis(30)).await;
    let one = app_on(crate::helpers::Backend::Postgres, &pdl, |s| {
        s.database_max_connections = 8;
    })
    .await;
    let two = spawn_second_app(&one).await;
    one.configure_provider(json!({"provider": "PEOPLE_DATA_LABS", "apiKey": PDL_KEY, "dailyCreditCap": 20}))
        .await;
    one.set_waterfall("PERSON", &["PEOPLE_DATA_LABS"]).await;
    let ids = leads(&one, "race", 40).await;

    let query = "query($id: ID!) { lead(id: $id) { person { fullName } } }";
    let runs = ids.iter().enumerate().map(|(i, id)| {
        let app = if i % 2 == 0 { &one } else { &two };
        async move { app.gql_body(Role::Viewer, query, json!({"id": id})).await }
    });
    let bodies = futures_util::future::join_all(runs).await;

    let filled = bodies
        .iter()
        .filter(|b| b["data"]["lead"]["person"]["fullName"].is_string())
        .count();
    let refused = bodies
        .iter()
        .filter(|b| crate::helpers::first_code(b) == "QUOTA_EXCEEDED")
        .count();
    let billed: usize = fakes::bulk_sizes(&pdl).await.iter().sum();
    let stored = used(&provider(&one, "PEOPLE_DATA_LABS").await, "DAY");
    assert!(billed <= 20, "the fake billed {billed} hits against a cap of 20");
    assert!(stored <= 20, "stored usage {stored} passed the cap of 20");
    assert_eq!(billed, 20, "every credit of the cap was used");
    assert_eq!(stored, 20);
    assert_eq!((filled, refused), (20, 20), "{bodies:?}");

    // The same race at the store: two pools, 50 reservations of 1 against a cap of 20.
    let other = Store::connect(&one.settings.database_url, &PoolOptions { max_connections: 8 })
        .await
        .unwrap();
    let stores = [one.services.store.clone(), other];
    let ws = one.workspace.id;
    let now = Utc::now();
    let tries = (0..50).map(|i| {
        let store = stores[i % 2].clone();
        async move {
            store
                .reserve_usage(ws, ProviderKind::Clearbit, now, &[(UsagePeriod::Day, 20, 1)])
                .await
        }
    });
    let results = futures_util::future::join_all(tries).await;
    let granted = results.iter().filter(|r| matches!(r, Ok(None))).count();
    let denied = results
        .iter()
        .filter(|r| matches!(r, Ok(Some(UsagePeriod::Day))))
        .count();
    assert_eq!((granted, denied), (20, 30), "{results:?}");
}

#[tokio::test]
async fn a_provider_over_its_rate_is_skipped_at_once() {
    for backend in backends() {
        let pdl = fakes::pdl(fakes::everyone()).await;
        // the rate gate's clock stands still: every page below falls in one second of it,
        // however slowly the machine runs them
        let clock = leadgate::enrich::Clock::fixed(std::time::Instant::now());
        let app = app_with_clock(backend, &pdl, clock, |_| {}).await;
        configure(&app).await;
        app.configure_provider(json!({"provider": "PEOPLE_DATA_LABS", "ratePerSecond": 1}))
            .await;
        app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS", "SANDBOX"])
            .await;
        leads(&app, "one", 2).await;
        leads(&app, "two", 2).await;
        leads(&app, "three", 1).await;

        let body = page(&app, "one", None).await;
        assert_filled(&body);
        let body = page(&app, "two", None).await;
        assert_filled(&body);
        assert_eq!(
            fakes::bulk_sizes(&pdl).await,
            vec![2],
            "{backend:?}: one call in the second"
        );
        assert_eq!(name_providers(&app, "one").await, vec!["PEOPLE_DATA_LABS"; 2]);
        assert_eq!(name_providers(&app, "two").await, vec!["SANDBOX"; 2]);
        assert_eq!(skips(&app.metrics().await, "rate_limited"), 1.0, "{backend:?}");

        // Alone in the waterfall, the rate is the page's error.
        app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS"]).await;
        let body = page(&app, "three", None).await;
        let messages = assert_unfilled(&body, "PROVIDER_UNAVAILABLE", "pdl");
        assert!(messages[0].contains("rate limit"), "{messages:?}");
        assert_eq!(fakes::bulk_sizes(&pdl).await, vec![2]);
    }
}

/// A `leadgate serve` process whose stdout and stderr are collected as they come.
pub(crate) struct Serve {
    child: tokio::process::Child,
    pub(crate) base: String,
    output: Arc<Mutex<String>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

const BIN: &str = env!("CARGO_BIN_EXE_leadgate");

fn command(env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("serve");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LEADGATE_")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

impl Serve {
    pub(crate) async fn start(env: &[(&str, &str)]) -> Self {
        let mut child = command(env).spawn().expect("spawn leadgate serve");
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for stream in [
            Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
            Box::new(stderr),
        ] {
            let output = output.clone();
            readers.push(tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let mut lines = tokio::io::BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            }));
        }
        let base = poll_until(Duration::from_secs(60), "the serving line", || {
            let output = output.clone();
            async move {
                let out = output.lock().unwrap();
                out.lines()
                    .find_map(|l| l.strip_prefix("leadgate is serving on "))
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(str::to_owned)
            }
        })
        .await;
        Self {
            child,
            base,
            output,
            readers,
        }
    }

    /// Stops the process (SIGTERM) and returns everything it printed.
    pub(crate) async fn stop(mut self) -> String {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap();
        for reader in self.readers {
            reader.await.unwrap();
        }
        self.output.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn api_keys_never_appear_in_a_response_or_a_log_line() {
    const PDL_SECRET: &str = "pdl-live-Zk29fQx71LmPw0aa";
    const HUNTER_SECRET: &str = "hunter-live-c0ffee5eed2024";
    for backend in backends() {
        let pdl = fakes::pdl(fakes::directory(vec![(
            "kim@keys.example",
            Known {
                full_name: Some("Kim Keys".into()),
                ..Known::default()
            },
        )]))
        .await;
        let hunter = fakes::hunter_verifier().await;
        let (url, _guard) = fresh_database(backend).await;

        // The workspace and an admin token, made on the same database beforehand.
        let settings = Settings {
            database_url: url.clone(),
            jwt_secret: Some(secrecy::SecretString::from(SECRET)),
            ..Settings::default()
        };
        let store = leadgate::app::open_store(&settings).await.unwrap();
        let auth = leadgate::app::authenticator(&settings, &store, false)
            .await
            .unwrap();
        let services = leadgate::app::services(&settings, store.clone()).unwrap();
        let ws = services.workspaces.create("keys", None).await.unwrap();
        let token = auth
            .mint("admin", ws.id, Role::Admin, Duration::from_secs(3600))
            .unwrap();
        store.close().await;

        let provider_urls = format!(
            "pdl={},hunter={}",
            fakes::pdl_url(&pdl),
            fakes::hunter_url(&hunter)
        );
        let mut env = vec![
            ("LEADGATE_DATABASE_URL", url.as_str()),
            ("LEADGATE_JWT_SECRET", SECRET),
            ("LEADGATE_LISTEN", "127.0.0.1:0"),
            ("LEADGATE_LOG", "debug"),
            ("LEADGATE_PROVIDER_URLS", provider_urls.as_str()),
            ("LEADGATE_PROVIDER_RETRIES", "0"),
        ];
        env.push(("LEADGATE_MASTER_KEY", MASTER_KEY));
        let server = Serve::start(&env).await;

        let client = reqwest::Client::new();
        let mut bodies: Vec<String> = Vec::new();
        let mut graphql = async |query: &str, variables: Value| -> Value {
            let text = client
                .post(format!("{}/graphql", server.base))
                .bearer_auth(&token)
                .json(&json!({"query": query, "variables": variables}))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            bodies.push(text.clone());
            serde_json::from_str(&text).unwrap()
        };
        let configure = "mutation($input: ConfigureProviderInput!) { configureProvider(input: $input) { provider { name hasApiKey apiKeyLast4 options } userErrors { message } } }";
        let r = graphql(
            configure,
            json!({"input": {"provider": "PEOPLE_DATA_LABS", "apiKey": PDL_SECRET}}),
        )
        .await;
        assert_eq!(r["data"]["configureProvider"]["provider"]["apiKeyLast4"], "w0aa");
        let r = graphql(
            configure,
            json!({"input": {"provider": "HUNTER", "apiKey": HUNTER_SECRET}}),
        )
        .await;
        assert_eq!(r["data"]["configureProvider"]["provider"]["apiKeyLast4"], "2024");
        for (group, provider) in [("PERSON", "PEOPLE_DATA_LABS"), ("EMAIL_VERIFICATION", "HUNTER")] {
            graphql(
                "mutation($g: EnrichmentGroup!, $p: [ProviderName!]!) { setWaterfall(group: $g, providers: $p) { userErrors { message } } }",
                json!({"g": group, "p": [provider]}),
            )
            .await;
        }
        graphql(
            "mutation { createLead(input: {email: \"kim@keys.example\", firstName: \"Kim\", lastName: \"Keys\"}) { lead { id } } }",
            json!({}),
        )
        .await;
        let lead_page = "query($policy: EnrichmentPolicy) { leads { edges { node { email person(policy: $policy) { fullName } emailVerification(policy: $policy) { status score } } } } }";
        let r = graphql(lead_page, Value::Null).await;
        let node = &r["data"]["leads"]["edges"][0]["node"];
        assert_eq!(node["person"]["fullName"], "Kim Keys", "{backend:?}: {r}");
        assert_eq!(
            node["emailVerification"],
            json!({"status": "VALID", "score": 91}),
            "{r}"
        );
        graphql(PROVIDERS, json!({})).await;

        // Both providers now reject their keys.
        pdl.reset().await;
        wiremock::Mock::given(wiremock::matchers::any())
            .respond_with(fakes::pdl_error(401, "authentication_error", "Invalid API key"))
            .mount(&pdl)
            .await;
        hunter.reset().await;
        wiremock::Mock::given(wiremock::matchers::any())
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({
                "errors": [{"id": "authentication_failed", "code": 401, "details": "No user found for the API key supplied"}]
            })))
            .mount(&hunter)
            .await;
        let r = graphql(lead_page, json!({"policy": "REFRESH"})).await;
        let codes: Vec<&str> = r["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{r}"))
            .iter()
            .map(|e| e["extensions"]["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, vec!["PROVIDER_UNAVAILABLE"; 2], "{backend:?}: {r}");
        let r = graphql(PROVIDERS, json!({})).await;
        let disabled: Vec<&Value> = r["data"]["providers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["enabled"] == false)
            .collect();
        assert_eq!(disabled.len(), 2, "{backend:?}: {r}");
        graphql(
            "query($q: String!) { enrichmentPlan(query: $q) { maxCredits groups { steps { provider reason } } } }",
            json!({"q": lead_page}),
        )
        .await;
        bodies.push(
            client
                .get(format!("{}/metrics", server.base))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
        // The keys did go out (so they could have leaked): in PDL's header, in Hunter's URL.
        let pdl_keys: Vec<String> = fakes::requests_to(&pdl, fakes::PDL_BULK)
            .await
            .iter()
            .filter_map(|r| r.headers.get("x-api-key")?.to_str().ok().map(str::to_owned))
            .collect();
        assert_eq!(pdl_keys, vec![PDL_SECRET], "{backend:?}");
        let hunter_keys: Vec<String> = fakes::requests_to(&hunter, fakes::HUNTER_VERIFIER)
            .await
            .iter()
            .filter_map(|r| r.url.query_pairs().find(|(k, _)| k == "api_key"))
            .map(|(_, v)| v.into_owned())
            .collect();
        assert_eq!(hunter_keys, vec![HUNTER_SECRET], "{backend:?}");

        let logs = server.stop().await;
        assert!(
            logs.contains("DEBUG") && logs.contains("provider_call"),
            "{backend:?}: debug logging was on and covered provider calls:\n{logs}"
        );
        for secret in [PDL_SECRET, HUNTER_SECRET] {
            let stem = &secret[..secret.len() - 4];
            for body in &bodies {
                assert!(
                    !body.contains(stem),
                    "{backend:?}: a response shows {secret}: {body}"
                );
            }
            assert!(
                !logs.contains(stem),
                "{backend:?}: the logs show {secret}:\n{}",
                logs.lines()
                    .filter(|l| l.contains(stem))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }

        // Keys are stored sealed: without the master key the server refuses to start.
        env.pop();
        let out = tokio::time::timeout(Duration::from_secs(60), command(&env).output())
            .await
            .expect("exits")
            .unwrap();
        assert!(!out.status.success(), "{backend:?}: served without a master key");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("2 provider API key(s) are stored sealed")
                && stderr.contains("LEADGATE_MASTER_KEY"),
            "{backend:?}: {stderr}"
        );
    }
}
