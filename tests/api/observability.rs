//! `/metrics` against what operators look at: every metric the Grafana dashboards and the alert
//! rules name is exported by a real app that did a bit of everything (queries, mutations,
//! errors, enrichment through the sandbox, jobs that succeed and die, a subscription), on
//! every backend. And the families behind them: routes are templates, operation names are
//! capped, errors count by code, WebSocket gauges rise and fall, pools report their
//! connections, and `leadgate worker --metrics-listen` serves its own page.

use crate::fake_crm::FakeHubSpot;
use crate::helpers::{
    Backend, Protocol, TestApp, backends, fresh_database, metric, poll_until, spawn_app_with,
};
use crate::rate_limits::{on_redis, redis_url_or_skip};
use leadgate::domain::{NewJob, Role, now};
use leadgate::jobs::test_kinds::{FLAKY, NOOP};
use leadgate::mail::sink::Sink;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---- what the dashboards and alerts name ----

/// The metric names in a PromQL expression: identifiers that start with `leadgate_` or
/// `process_`, outside quoted label values. A name is an identifier as PromQL reads one
/// (`[A-Za-z_:][A-Za-z0-9_:]*`), so `leadgate_x_total` is one name and its suffix stays on it.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut chars = expr.char_indices().peekable();
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while let Some((i, c)) = chars.next() {
        if c == '"' || c == '\'' || c == '`' {
            // a string: skip to its closing quote, past escaped ones
            let mut escaped = false;
            for (_, d) in chars.by_ref() {
                match d {
                    '\\' if !escaped => escaped = true,
                    d if d == c && !escaped => break,
                    _ => escaped = false,
                }
            }
            continue;
        }
        if c.is_ascii_digit() {
            // a number or a duration (`5m`): not a name, letters and all
            while chars.peek().is_some_and(|(_, d)| is_part(*d)) {
                chars.next();
            }
            continue;
        }
        if !is_start(c) {
            continue;
        }
        let mut end = i + c.len_utf8();
        while let Some((j, d)) = chars.peek().copied() {
            if !is_part(d) {
                break;
            }
            end = j + d.len_utf8();
            chars.next();
        }
        let word = &expr[i..end];
        if word.starts_with("leadgate_") || word.starts_with("process_") {
            names.insert(word.to_owned());
        }
    }
    names
}

#[test]
fn the_tokenizer_keeps_whole_names_and_skips_strings_and_durations() {
    let expr = r#"sum by (route) (rate(leadgate_http_requests_total{route="/x", note="leadgate_not_a_metric"}[5m]))
        / on() group_left histogram_quantile(0.99, leadgate_a_bucket) + process_cpu_seconds_total
        + 5leadgate_nope + xleadgate_nope"#;
    assert_eq!(
        metric_names(expr).into_iter().collect::<Vec<_>>(),
        [
            "leadgate_a_bucket",
            "leadgate_http_requests_total",
            "process_cpu_seconds_total"
        ]
    );
}

/// Every string under an `expr`, `query` or `definition` key, at any depth (panel targets and
/// template variables).
fn json_expressions(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "query" | "definition", Value::String(s)) => out.push(s.clone()),
                    _ => json_expressions(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| json_expressions(v, out)),
        _ => {}
    }
}

/// The `expr:` values of a rules file: inline, quoted, or a block (`|`, `>`) of the lines
/// indented deeper than the key.
fn yaml_expressions(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            i += 1;
            continue;
        };
        let rest = rest.trim();
        if rest.starts_with('|') || rest.starts_with('>') {
            let mut block = Vec::new();
            i += 1;
            while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > indent(line)) {
                block.push(lines[i].trim());
                i += 1;
            }
            out.push(block.join(" "));
        } else {
            out.push(rest.trim_matches(|c| c == '"' || c == '\'').to_owned());
            i += 1;
        }
    }
    out
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

/// The metric names the dashboards (`docker/grafana/**/*.json`) and the alert rules
/// (`docker/prometheus/alerts.yml`) name, each with the file that names it.
fn named_in_dashboards_and_alerts() -> Vec<(String, String)> {
    let mut named = Vec::new();
    let mut dashboards = Vec::new();
    json_files(&root().join("docker/grafana"), &mut dashboards);
    assert!(!dashboards.is_empty(), "no dashboard under docker/grafana");
    for path in dashboards {
        let text = std::fs::read_to_string(&path).expect("dashboard");
        let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut exprs = Vec::new();
        json_expressions(&json, &mut exprs);
        assert!(
            exprs.len() >= 20,
            "{}: only {} expressions found",
            path.display(),
            exprs.len()
        );
        let file = path
            .strip_prefix(root())
            .expect("in the repository")
            .display()
            .to_string();
        for expr in exprs {
            named.extend(metric_names(&expr).into_iter().map(|n| (n, file.clone())));
        }
    }
    let alerts = std::fs::read_to_string(root().join("docker/prometheus/alerts.yml")).expect("alerts.yml");
    let exprs = yaml_expressions(&alerts);
    assert!(exprs.len() >= 8, "only {} alert expressions found", exprs.len());
    for expr in exprs {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "an alert names no leadgate metric: {expr}");
        named.extend(
            names
                .into_iter()
                .map(|n| (n, "docker/prometheus/alerts.yml".to_owned())),
        );
    }
    named
}

// ---- what /metrics exports ----

/// What a `/metrics` page exports: the names of its samples, and the names the families its
/// `# TYPE` lines declare would have (a counter `x` is `x_total`, a histogram `x_bucket`,
/// `x_sum` and `x_count`), so a family with no sample yet counts — under the names Prometheus
/// would store, never the bare family name of a counter or histogram.
struct Exported {
    sampled: BTreeSet<String>,
    declared: BTreeSet<String>,
}

fn exported(text: &str) -> Exported {
    let mut sampled = BTreeSet::new();
    let mut declared = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                panic!("a malformed TYPE line: {line}");
            };
            let names: Vec<String> = match kind {
                "counter" if name.ends_with("_total") => vec![name.into()],
                "counter" => vec![format!("{name}_total")],
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .map(|s| format!("{name}{s}"))
                    .collect(),
                "summary" => vec![name.into(), format!("{name}_sum"), format!("{name}_count")],
                "gauge" | "untyped" | "unknown" => vec![name.into()],
                other => panic!("an unknown metric type {other}: {line}"),
            };
            declared.extend(names);
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            sampled.insert(line[..end].to_owned());
        }
    }
    Exported { sampled, declared }
}

#[test]
fn a_family_counts_under_the_names_prometheus_stores() {
    let page = "# TYPE a counter\n# TYPE b_total counter\n# TYPE c histogram\n# TYPE d gauge\nd 1\ne_total{x=\"1\"} 2\n";
    let e = exported(page);
    let all: BTreeSet<&str> = e.declared.iter().chain(&e.sampled).map(String::as_str).collect();
    for name in [
        "a_total", "b_total", "c_bucket", "c_sum", "c_count", "d", "e_total",
    ] {
        assert!(all.contains(name), "{name} in {all:?}");
    }
    for name in ["a", "c", "b_total_total"] {
        assert!(!all.contains(name), "{name} in {all:?}");
    }
}

const PAGE: &str = "query LeadPage { leads(first: 10) { edges { node { id email person { fullName } } } } }";
const SUBSCRIPTION: &str = "subscription Changes { leadChanged { type lead { email } } }";
const MAIL_SECRET: &str = "observability-mail-webhook-secret";

/// What `busy_app` starts beside the app: a fake HubSpot and an SMTP server.
struct Outside {
    hubspot: FakeHubSpot,
    smtp: Sink,
}

/// An app with the sandbox answering every person after 50 ms (so `Query.leads` is a slow
/// root field over 20 ms), the test job kinds, queue samples every 100 ms, a fake HubSpot and
/// an SMTP server on 127.0.0.1, and Redis when there is one.
async fn busy_app(backend: Backend, redis: Option<&str>) -> (TestApp, Outside) {
    let outside = Outside {
        hubspot: FakeHubSpot::start().await,
        smtp: Sink::start().await,
    };
    let smtp = outside.smtp.url();
    let app = spawn_app_with(backend, |s| {
        s.slow_resolver_ms = 20;
        s.job_test_kinds = true;
        s.job_poll_interval_ms = 50;
        s.job_maintenance_interval_ms = 100;
        s.job_stats_interval_ms = 100;
        s.crm_push_delay_ms = 50;
        s.smtp_url = Some(smtp.into());
        s.public_url = Some("http://127.0.0.1:9".into());
        s.mail_webhook_secret = Some(MAIL_SECRET.into());
        if let Some(url) = redis {
            on_redis(s, url);
        }
    })
    .await;
    app.configure_provider(json!({
        "provider": "SANDBOX", "options": {"latencyMs": 50, "missRate": 0.0, "creditsPerHit": 1},
    }))
    .await;
    app.set_waterfall("PERSON", &["SANDBOX"]).await;
    (app, outside)
}

const CONNECT: &str = "mutation($input: CreateCrmConnectionInput!) { createCrmConnection(input: $input) { \
     connection { id } userErrors { field message code } } }";
const CAMPAIGN: &str = "mutation($input: CreateCampaignInput!) { createCampaign(input: $input) { \
     campaign { id } userErrors { field message code } } }";
const ACTIVATE: &str =
    "mutation($id: ID!) { activateCampaign(input: {id: $id}) { enrolled userErrors { message } } }";

/// A bit of everything: a CRM connection that gets a push, a campaign that sends and hears of
/// a bounce, a mutation, a named page with enrichment, a provider passed over for the budget,
/// errors, jobs that finish, die and wait, a subscription open while the page is read.
/// Returns the page.
async fn drive(app: &TestApp, outside: &Outside) -> String {
    let data = app
        .gql(
            Role::Admin,
            CONNECT,
            json!({"input": {"kind": "HUBSPOT", "name": "Sales", "apiBaseUrl": outside.hubspot.url(),
                "credentials": {"accessToken": outside.hubspot.token, "clientSecret": outside.hubspot.secret}}}),
        )
        .await;
    assert_eq!(data["createCrmConnection"]["userErrors"], json!([]), "{data}");
    app.create_lead(json!({"email": "ada@metrics.example", "firstName": "Ada", "tags": ["metrics"]}))
        .await;
    let data = app
        .gql(
            Role::Admin,
            CAMPAIGN,
            json!({"input": {"name": "Metrics", "segment": {"filter": {"tags": {"anyOf": ["metrics"]}}},
                "senders": ["Sales <sales@example.com>"],
                "steps": [{"key": "hello", "email": {"subject": "Hi", "body": "Hello, see {{ unsubscribeUrl }}"}}]}}),
        )
        .await;
    let campaign = &data["createCampaign"];
    assert_eq!(campaign["userErrors"], json!([]), "{data}");
    let data = app
        .gql(Role::Admin, ACTIVATE, json!({"id": campaign["campaign"]["id"]}))
        .await;
    assert_eq!(data["activateCampaign"]["enrolled"], 1, "{data}");

    let page = app.gql_body(Role::Viewer, PAGE, json!({})).await;
    assert!(page.get("errors").is_none(), "{page}");
    assert!(
        page["data"]["leads"]["edges"][0]["node"]["person"].is_object(),
        "the sandbox filled the person: {page}"
    );
    // a second read comes from the cache
    app.gql_body(Role::Viewer, PAGE, json!({})).await;
    // no credits to spend: the sandbox is passed over
    app.create_lead(json!({"email": "bo@metrics.example"})).await;
    let (status, body) = app
        .post_with_headers(
            Role::Viewer,
            &[("x-leadgate-max-credits", "0")],
            json!({"query": PAGE}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    app.gql_err(Role::Viewer, "{ noSuchField }", json!({})).await;

    let queue = app.services.jobs.queue();
    let mut later = NewJob::new(NOOP, json!({}));
    later.run_at = Some(now() + chrono::Duration::hours(1));
    for job in [
        NewJob::new(NOOP, json!({})),
        NewJob::new(FLAKY, json!({"permanent": true})),
        later,
    ] {
        queue
            .enqueue(job.in_workspace(app.workspace.id))
            .await
            .expect("enqueue");
    }

    let mail = outside
        .smtp
        .wait_for(1, Duration::from_secs(20))
        .await
        .expect("the campaign's email");
    let message_id = mail[0].message_id().expect("a Message-ID");
    let bounce = json!([{"id": "b-1", "type": "bounced", "permanent": true,
        "messageId": format!("<{message_id}>"), "occurredAt": "2026-06-01T08:00:00Z"}]);
    let (status, body) = crate::campaigns::post_generic(app, bounce, MAIL_SECRET).await;
    assert_eq!(status, 200, "{body}");

    let mut socket = app.ws_ready(Protocol::TransportWs, Role::Partner).await;
    socket.start("s", SUBSCRIPTION, json!({})).await;
    let text = poll_until(
        Duration::from_secs(30),
        "jobs done, dead and waiting, a CRM push, a send and the subscription counted",
        || async {
            let text = app.metrics().await;
            let done = metric(&text, r#"leadgate_jobs_completed_total{kind="noop"}"#) >= 1.0
                && metric(&text, r#"leadgate_jobs_dead_total{kind="flaky"}"#) >= 1.0
                && metric(&text, r#"leadgate_jobs_depth{kind="noop",state="queued"}"#) >= 1.0
                && text.contains("leadgate_crm_records_total{")
                && text
                    .contains(r#"leadgate_campaign_mail_events_total{provider="generic",kind="bounced"} 1"#)
                && metric(
                    &text,
                    r#"leadgate_graphql_ws_subscriptions{subprotocol="graphql-transport-ws"}"#,
                ) == 1.0;
            done.then_some(text)
        },
    )
    .await;
    socket.close().await;
    text
}

#[tokio::test]
async fn every_metric_the_dashboards_and_alerts_name_is_exported() {
    let named = named_in_dashboards_and_alerts();
    let redis = redis_url_or_skip();
    for backend in backends() {
        let (app, outside) = busy_app(backend, redis.as_deref()).await;
        let page = drive(&app, &outside).await;
        let exported = exported(&page);
        let missing: Vec<String> = named
            .iter()
            .filter(|(name, _)| !exported.sampled.contains(name) && !exported.declared.contains(name))
            .filter(|(name, _)| redis.is_some() || !name.starts_with("leadgate_redis_"))
            .map(|(name, file)| format!("{name} (in {file})"))
            .collect();
        assert!(
            missing.is_empty(),
            "{backend:?}: named but not exported: {missing:#?}\n{page}"
        );
        // and has samples, not only a declaration: this test drove every family
        let unsampled: BTreeSet<&str> = named
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| redis.is_some() || !name.starts_with("leadgate_redis_"))
            .filter(|name| !exported.sampled.contains(*name))
            .collect();
        assert!(
            unsampled.is_empty(),
            "{backend:?}: driven but without samples: {unsampled:#?}\n{page}"
        );
    }
}

#[tokio::test]
async fn the_families_count_what_happened() {
    let redis = redis_url_or_skip();
    for backend in backends() {
        let (app, outside) = busy_app(backend, redis.as_deref()).await;
        let page = drive(&app, &outside).await;
        let at_least = |sample: &str, n: f64| {
            let v = metric(&page, sample);
            assert!(
                v >= n,
                "{backend:?}: {sample} is {v}, expected at least {n}\n{page}"
            );
        };
        at_least(
            r#"leadgate_graphql_operations_total{operation="LeadPage",type="query"}"#,
            2.0,
        );
        at_least(
            r#"leadgate_graphql_operations_total{operation="anonymous",type="mutation"}"#,
            1.0,
        );
        at_least(
            r#"leadgate_graphql_operations_total{operation="Changes",type="subscription"}"#,
            1.0,
        );
        at_least(
            r#"leadgate_graphql_slow_resolvers_total{field="Query.leads"}"#,
            1.0,
        );
        at_least(
            r#"leadgate_graphql_operation_duration_seconds_count{type="query"}"#,
            2.0,
        );
        at_least(
            r#"leadgate_http_requests_total{route="/graphql",method="POST",status="200"}"#,
            4.0,
        );
        at_least(
            r#"leadgate_provider_calls_total{provider="sandbox",group="person",outcome="ok"}"#,
            1.0,
        );
        at_least(r#"leadgate_provider_credits_total{provider="sandbox"}"#, 1.0);
        at_least(
            r#"leadgate_enrichment_cache_lookups_total{tier="memory",result="hit"}"#,
            1.0,
        );
        assert_eq!(
            metric(&page, r#"leadgate_provider_circuit_state{provider="sandbox"}"#),
            0.0
        );
        assert!(
            page.contains("leadgate_provider_circuit_state{provider=\"pdl\"} 0"),
            "{page}"
        );
        assert_eq!(
            metric(
                &page,
                r#"leadgate_graphql_errors_total{code="GRAPHQL_VALIDATION_FAILED"}"#
            ),
            1.0,
            "{backend:?}: exactly the one bad document"
        );
        assert!(
            page.contains(&format!(
                "leadgate_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{page}"
        );
        if cfg!(target_os = "linux") {
            at_least("process_resident_memory_bytes", 1_048_576.0);
        }
        // the pools: every connection idle or in use, never more than the pool holds
        let (backend_label, pools): (&str, &[&str]) = match backend {
            Backend::Sqlite => ("sqlite", &["writer", "reader", "hot_readers"]),
            Backend::Postgres => ("postgres", &["main", "hot_readers"]),
        };
        for pool in pools {
            let sample = |state: &str| {
                format!(
                    r#"leadgate_db_pool_connections{{backend="{backend_label}",pool="{pool}",state="{state}"}}"#
                )
            };
            let max_line =
                format!(r#"leadgate_db_pool_max_connections{{backend="{backend_label}",pool="{pool}"}} "#);
            assert!(
                page.contains(&sample("idle")) && page.contains(&max_line),
                "{pool}: {page}"
            );
            let max = metric(&page, max_line.trim_end());
            assert!(max >= 1.0, "{pool}: {page}");
            assert!(
                metric(&page, &sample("idle")) + metric(&page, &sample("in_use")) <= max,
                "{pool}: {page}"
            );
        }
        if backend == Backend::Sqlite {
            assert_eq!(
                metric(
                    &page,
                    r#"leadgate_db_pool_max_connections{backend="sqlite",pool="writer"}"#
                ),
                1.0,
                "SQLite has one writer"
            );
        }
        if redis.is_some() {
            assert_eq!(metric(&page, "leadgate_redis_up"), 1.0, "{page}");
        }
        // no lead data, workspace id or token in any label
        for secret in [
            "ada@metrics.example",
            "metrics.example",
            &app.workspace.id.to_string(),
        ] {
            assert!(!page.contains(secret), "{backend:?}: {secret} on /metrics");
        }
    }
}

#[tokio::test]
async fn http_requests_are_labelled_by_route_template_never_by_path() {
    for backend in backends() {
        let app = spawn_app_with(backend, |_| {}).await;
        let id = uuid::Uuid::now_v7().to_string();
        let crm_webhook = format!("/webhooks/crm/{id}");
        for (method, path, status) in [
            (Method::POST, crm_webhook.as_str(), 404),
            (Method::GET, "/c/a-secret-looking-token", 404),
            (Method::GET, "/no/such/page", 404),
            (Method::DELETE, "/graphql", 405),
        ] {
            let res = app
                .client
                .request(method, app.url(path))
                .body("{}")
                .send()
                .await
                .expect("request");
            assert_eq!(res.status().as_u16(), status, "{path}");
        }
        app.metrics().await;

        let page = app.metrics().await;
        for (sample, n) in [
            (
                r#"leadgate_http_requests_total{route="/webhooks/crm/{id}",method="POST",status="404"}"#,
                1.0,
            ),
            (
                r#"leadgate_http_requests_total{route="/c/{token}",method="GET",status="404"}"#,
                1.0,
            ),
            (
                r#"leadgate_http_requests_total{route="other",method="GET",status="404"}"#,
                1.0,
            ),
            (
                r#"leadgate_http_requests_total{route="/graphql",method="DELETE",status="405"}"#,
                1.0,
            ),
            (
                r#"leadgate_http_requests_total{route="/metrics",method="GET",status="200"}"#,
                1.0,
            ),
            (
                r#"leadgate_http_request_duration_seconds_count{route="/webhooks/crm/{id}"}"#,
                1.0,
            ),
        ] {
            assert_eq!(metric(&page, sample), n, "{backend:?}: {sample}\n{page}");
        }
        for raw in [id.as_str(), "a-secret-looking-token", "/no/such/page"] {
            assert!(
                !page.contains(raw),
                "{backend:?}: the raw path {raw} became a label"
            );
        }
    }
}

#[tokio::test]
async fn operation_names_are_capped_and_errors_count_by_code() {
    use leadgate::graphql::metrics::MAX_OPERATION_NAMES;
    for backend in backends() {
        let app = spawn_app_with(backend, |_| {}).await;
        let token = app.token(Role::Viewer);
        for i in 0..MAX_OPERATION_NAMES + 5 {
            let (status, _) = app
                .post(
                    Some(&token),
                    json!({"query": format!("query Op{i} {{ __typename }}")}),
                )
                .await;
            assert_eq!(status, 200);
        }
        // a document that does not parse: its name as asked, its type unknown
        let (status, body) = app
            .post(
                Some(&token),
                json!({"query": "query Broken {", "operationName": "Broken"}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        let (status, body) = app
            .post(None, json!({"query": "{ viewer { workspace { id } } }"}))
            .await;
        assert_eq!(status, 200, "{body}");

        let page = app.metrics().await;
        let ops = |label: &str| metric(&page, &format!("leadgate_graphql_operations_total{{{label}}}"));
        assert_eq!(ops(r#"operation="Op0",type="query""#), 1.0, "{backend:?}");
        let last_named = MAX_OPERATION_NAMES - 1;
        assert_eq!(ops(&format!(r#"operation="Op{last_named}",type="query""#)), 1.0);
        assert_eq!(
            ops(&format!(r#"operation="Op{}",type="query""#, MAX_OPERATION_NAMES)),
            0.0,
            "past the cap"
        );
        // the 5 past the cap, then `Broken` past it too
        assert_eq!(ops(r#"operation="other",type="query""#), 5.0, "{page}");
        assert_eq!(ops(r#"operation="other",type="unknown""#), 1.0, "{page}");
        assert_eq!(
            metric(
                &page,
                r#"leadgate_graphql_errors_total{code="GRAPHQL_PARSE_FAILED"}"#
            ),
            1.0
        );
        let distinct: BTreeSet<&str> = page
            .lines()
            .filter(|l| l.starts_with("leadgate_graphql_operations_total{"))
            .filter_map(|l| l.split("operation=\"").nth(1)?.split('"').next())
            .collect();
        assert!(
            distinct.len() <= MAX_OPERATION_NAMES + 2,
            "{} names: {distinct:?}",
            distinct.len()
        );
        let unauthenticated = metric(&page, r#"leadgate_graphql_errors_total{code="UNAUTHENTICATED"}"#)
            + metric(&page, r#"leadgate_graphql_errors_total{code="FORBIDDEN"}"#);
        assert!(unauthenticated >= 1.0, "{backend:?}: {page}");
    }
}

#[tokio::test]
async fn websocket_gauges_follow_connections_and_subscriptions_on_both_subprotocols() {
    for backend in backends() {
        let app = spawn_app_with(backend, |_| {}).await;
        for protocol in [Protocol::TransportWs, Protocol::LegacyWs] {
            let connections = format!(
                r#"leadgate_graphql_ws_connections{{subprotocol="{}"}}"#,
                protocol.name()
            );
            let subscriptions = format!(
                r#"leadgate_graphql_ws_subscriptions{{subprotocol="{}"}}"#,
                protocol.name()
            );
            let gauges = || async {
                let page = app.metrics().await;
                (metric(&page, &connections), metric(&page, &subscriptions))
            };
            let reaches = |want: (f64, f64), what: &'static str| {
                let gauges = &gauges;
                async move {
                    poll_until(Duration::from_secs(10), what, || async move {
                        (gauges().await == want).then_some(())
                    })
                    .await
                }
            };
            assert_eq!(gauges().await, (0.0, 0.0), "{backend:?} {protocol:?}");
            let mut a = app.ws_ready(protocol, Role::Partner).await;
            let mut b = app.ws_ready(protocol, Role::Partner).await;
            a.start("1", SUBSCRIPTION, json!({})).await;
            a.start("2", "subscription { events { cursor } }", json!({}))
                .await;
            b.start("1", SUBSCRIPTION, json!({})).await;
            reaches((2.0, 3.0), "two connections, three subscriptions").await;
            a.stop("2").await;
            reaches((2.0, 2.0), "a stopped subscription to leave the gauge").await;
            a.close().await;
            reaches((1.0, 1.0), "a closed connection to take its subscription along").await;
            b.close().await;
            reaches((0.0, 0.0), "both gone").await;
        }
    }
}

/// `leadgate worker --metrics-listen 127.0.0.1:0`: the banner says where, `/metrics` has what
/// the services count and the process, and SIGTERM stops both.
#[tokio::test]
async fn a_worker_serves_metrics_when_asked_to() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let (url, _guard) = fresh_database(Backend::Sqlite).await;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_leadgate"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LEADGATE_")) {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .args(["worker", "--metrics-listen", "127.0.0.1:0"])
        .env("LEADGATE_DATABASE_URL", &url)
        .env("LEADGATE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn leadgate worker");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let address = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("stdout") {
            if let Some(rest) = line.strip_prefix("Metrics: http://") {
                return rest.trim_end_matches("/metrics").to_owned();
            }
        }
        panic!("the worker ended before it said where its metrics are");
    })
    .await
    .expect("the worker started in time");
    let client = reqwest::Client::new();
    let res = client
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(res.status().as_u16(), 200);
    let page = res.text().await.expect("page");
    for family in [
        "leadgate_provider_circuit_state{provider=\"sandbox\"} 0",
        "leadgate_db_pool_connections{backend=\"sqlite\",pool=\"writer\"",
        "leadgate_build_info{",
    ] {
        assert!(page.contains(family), "{family} missing:\n{page}");
    }
    assert!(
        !page.contains("leadgate_http_requests_total"),
        "a worker serves no API"
    );
    let health = client
        .get(format!("http://{address}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);

    crate::scale_out::sigterm(&child);
    crate::scale_out::exited(child).await;
}
