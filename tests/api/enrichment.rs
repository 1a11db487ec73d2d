//! Lazy enrichment through the API: waterfall order and per-field merge, early stop, cached
//! misses, policies, request budgets, batching, dry runs, bulk jobs, `lead.enriched` events,
//! admin input and tenancy. Providers are the fakes in `fakes` or the built-in sandbox;
//! timeouts, failures, quotas, rates and keys are in `provider_controls`.

use crate::fakes::{self, Known};
use crate::helpers::{TestApp, backends, first_code, poll_until, spawn_app_with};
use leadgate::domain::{LEAD_ENRICHED, Role};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use wiremock::MockServer;

const PDL_KEY: &str = "pdl-key-123456";
const APOLLO_KEY: &str = "apollo-key-654321";

/// A page of the leads tagged `$tag`, each with `fields` selected besides `id` and `email`;
/// `$policy` is declared when `fields` uses it.
fn page(fields: &str) -> String {
    budgeted_page(None, fields)
}

/// The same page, with an operation-level `@budget` when `max_credits` is given.
fn budgeted_page(max_credits: Option<i64>, fields: &str) -> String {
    let policy = if fields.contains("$policy") {
        ", $policy: EnrichmentPolicy"
    } else {
        ""
    };
    let budget = max_credits.map_or(String::new(), |m| format!(" @budget(maxCredits: {m})"));
    format!(
        "query($tag: String!{policy}){budget} {{
  leads(first: 100, filter: {{tags: {{anyOf: [$tag]}}}}) {{ edges {{ node {{ id email {fields} }} }} }}
}}"
    )
}

fn lead(email: &str, tag: &str) -> Value {
    json!({ "email": email, "tags": [tag] })
}

/// `count` leads tagged `tag`, emails `{tag}-{i}@{tag}.example`.
fn leads(tag: &str, count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| lead(&format!("{tag}-{i:02}@{tag}.example"), tag))
        .collect()
}

fn nodes(body: &Value) -> Vec<Value> {
    body["data"]["leads"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("no page in {body}"))
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

fn node_by_email(body: &Value, email: &str) -> Value {
    nodes(body)
        .into_iter()
        .find(|n| n["email"] == email)
        .unwrap_or_else(|| panic!("{email} is not on the page: {body}"))
}

fn errors(body: &Value) -> Vec<Value> {
    body["errors"].as_array().cloned().unwrap_or_default()
}

/// `extensions.enrichment` as (creditsSpent, providerCalls, cacheHits).
fn spend(body: &Value) -> (i64, i64, i64) {
    let e = &body["extensions"]["enrichment"];
    assert!(e.is_object(), "no extensions.enrichment in {body}");
    (
        e["creditsSpent"].as_i64().unwrap(),
        e["providerCalls"].as_i64().unwrap(),
        e["cacheHits"].as_i64().unwrap(),
    )
}

/// `Lead.enrichment` as field → provider.
fn provenance(node: &Value) -> BTreeMap<String, String> {
    node["enrichment"]
        .as_array()
        .unwrap_or_else(|| panic!("no provenance in {node}"))
        .iter()
        .map(|p| {
            (
                p["field"].as_str().unwrap().to_owned(),
                p["provider"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn expected(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(f, p)| ((*f).to_owned(), (*p).to_owned()))
        .collect()
}

/// The lead uuid inside an opaque `Lead` id.
fn lead_uuid(id: &str) -> uuid::Uuid {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id)
        .expect("ids are base64");
    let text = String::from_utf8(raw).unwrap();
    uuid::Uuid::parse_str(text.strip_prefix("Lead:").expect("a Lead id")).unwrap()
}

async fn give_keys(app: &TestApp) {
    app.configure_provider(json!({"provider": "PEOPLE_DATA_LABS", "apiKey": PDL_KEY}))
        .await;
    app.configure_provider(json!({"provider": "APOLLO", "apiKey": APOLLO_KEY}))
        .await;
}

fn known(full_name: &str, title: &str) -> Known {
    Known {
        full_name: Some(full_name.into()),
        title: Some(title.into()),
        ..Known::default()
    }
}

#[tokio::test]
async fn waterfall_merges_per_field_in_order_and_provenance_names_each_fields_provider() {
    for backend in backends() {
        let pdl = fakes::pdl(fakes::directory(vec![(
            "jane.doe@acme.io",
            Known {
                location: Some("Berlin, Germany".into()),
                ..known("Jane Doe", "VP Engineering")
            },
        )]))
        .await;
        let apollo = fakes::apollo(fakes::directory(vec![(
            "jane.doe@acme.io",
            Known {
                seniority: Some("vp".into()),
                department: Some("engineering".into()),
                twitter: Some("janedoe".into()),
                ..known("Jane A. Doe", "Head of Engineering")
            },
        )]))
        .await;
        let app = spawn_app_with(backend, |s| {
            s.provider_urls.insert("pdl".into(), fakes::pdl_url(&pdl));
            s.provider_urls
                .insert("apollo".into(), fakes::apollo_url(&apollo));
        })
        .await;
        give_keys(&app).await;
        app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS", "APOLLO"]).await;
        app.create_leads(vec![lead("jane.doe@acme.io", "merge")]).await;
        let q =
            page("person(policy: $policy) { fullName title seniority department twitterHandle location }");
        let provenance_page = page("enrichment { group field provider confidence credits }");

        let body = app.gql_body(Role::Viewer, &q, json!({"tag": "merge"})).await;
        assert!(errors(&body).is_empty(), "{backend:?}: {body}");
        assert_eq!(
            node_by_email(&body, "jane.doe@acme.io")["person"],
            json!({
                "fullName": "Jane Doe",
                "title": "VP Engineering",
                "seniority": "vp",
                "department": "engineering",
                "twitterHandle": "janedoe",
                "location": "Berlin, Germany",
            }),
            "{backend:?}: the first provider keeps the fields it knows; the second fills the rest"
        );
        assert_eq!(spend(&body).0, 2, "{backend:?}: one hit billed by each provider");
        assert_eq!(spend(&body).1, 2, "{backend:?}");
        let body = app
            .gql_body(Role::Viewer, &provenance_page, json!({"tag": "merge"}))
            .await;
        let node = node_by_email(&body, "jane.doe@acme.io");
        assert_eq!(
            provenance(&node),
            expected(&[
                ("person.fullName", "PEOPLE_DATA_LABS"),
                ("person.title", "PEOPLE_DATA_LABS"),
                ("person.location", "PEOPLE_DATA_LABS"),
                ("person.seniority", "APOLLO"),
                ("person.department", "APOLLO"),
                ("person.twitterHandle", "APOLLO"),
            ]),
            "{backend:?}"
        );
        for p in node["enrichment"].as_array().unwrap() {
            assert_eq!(p["group"], "PERSON");
            assert_eq!(p["credits"], 1, "one credit per answer: {p}");
            assert_eq!(p["confidence"], 0.8, "PDL likelihood 8/10, Apollo verified: {p}");
        }

        // Swapped order: the other provider wins the fields both know.
        app.set_waterfall("PERSON", &["APOLLO", "PEOPLE_DATA_LABS"]).await;
        let body = app
            .gql_body(Role::Viewer, &q, json!({"tag": "merge", "policy": "REFRESH"}))
            .await;
        assert!(errors(&body).is_empty(), "{backend:?}: {body}");
        assert_eq!(
            node_by_email(&body, "jane.doe@acme.io")["person"],
            json!({
                "fullName": "Jane A. Doe",
                "title": "Head of Engineering",
                "seniority": "vp",
                "department": "engineering",
                "twitterHandle": "janedoe",
                "location": "Berlin, Germany",
            }),
            "{backend:?}"
        );
        let body = app
            .gql_body(Role::Viewer, &provenance_page, json!({"tag": "merge"}))
            .await;
        assert_eq!(
            provenance(&node_by_email(&body, "jane.doe@acme.io")),
            expected(&[
                ("person.fullName", "APOLLO"),
                ("person.title", "APOLLO"),
                ("person.seniority", "APOLLO"),
                ("person.department", "APOLLO"),
                ("person.twitterHandle", "APOLLO"),
                ("person.location", "PEOPLE_DATA_LABS"),
            ]),
            "{backend:?}"
        );
        assert_eq!(fakes::bulk_sizes(&pdl).await, vec![1, 1], "{backend:?}");
        assert_eq!(fakes::bulk_sizes(&apollo).await, vec![1, 1], "{backend:?}");
    }
}

#[tokio::test]
async fn provenance_in_the_same_response_names_the_providers_just_asked() {
    for backend in backends() {
        let app = spawn_app_with(backend, |_| {}).await;
        app.use_sandbox(&["PERSON"], 1).await;
        app.create_leads(vec![lead("jane.doe@acme.io", "same")]).await;
        let body = app
            .gql_body(
                Role::Viewer,
                &page("person { fullName } enrichment { field provider }"),
                json!({"tag": "same"}),
            )
            .await;
        assert!(errors(&body).is_empty(), "{body}");
        let node = node_by_email(&body, "jane.doe@acme.io");
        assert_eq!(node["person"]["fullName"], "Jane Doe");
        assert_eq!(
            provenance(&node).get("person.fullName").map(String::as_str),
            Some("SANDBOX"),
            "{backend:?}: the value on this response has its provenance on this response: {node}"
        );
    }
}

#[tokio::test]
async fn waterfall_stops_early_once_the_selected_fields_are_filled() {
    for backend in backends() {
        let pdl = fakes::pdl(fakes::directory(vec![(
            "sam@early.example",
            known("Sam Early", "CTO"),
        )]))
        .await;
        let apollo = fakes::apollo(fakes::directory(vec![(
            "sam@early.example",
            Known {
                seniority: Some("c_suite".into()),
                ..known("Samuel Early", "Chief Technology Officer")
            },
        )]))
        .await;
        let app = spawn_app_with(backend, |s| {
            s.provider_urls.insert("pdl".into(), fakes::pdl_url(&pdl));
            s.provider_urls
                .insert("apollo".into(), fakes::apollo_url(&apollo));
        })
        .await;
        give_keys(&app).await;
        app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS", "APOLLO"]).await;
        app.create_leads(vec![lead("sam@early.example", "early")]).await;

        let body = app
            .gql_body(
                Role::Viewer,
                &page("person { fullName title }"),
                json!({"tag": "early"}),
            )
            .await;
        assert!(errors(&body).is_empty(), "{backend:?}: {body}");
        assert_eq!(
            node_by_email(&body, "sam@early.example")["person"],
            json!({"fullName": "Sam Early", "title": "CTO"})
        );
        assert_eq!(fakes::bulk_sizes(&pdl).await, vec![1], "{backend:?}");
        assert!(
            fakes::bulk_sizes(&apollo).await.is_empty(),
            "{backend:?}: the first provider filled every selected field, so the second is never called"
        );
        assert_eq!(spend(&body), (1, 1, 0), "{backend:?}");
    }
}

#[tokio::test]
async fn a_later_query_for_more_fields_continues_the_waterfall_after_the_providers_already_asked() {
    for backend in backends() {
        let pdl = fakes::pdl(fakes::directory(vec![(
            "sam@early.example",
            known("Sam Early", "CTO"),
        )]))
        .await;
        let apollo = fakes::apollo(fakes::directory(vec![(
            "sam@early.example",
            Known {
                seniority: Some("c_suite".into()),
                ..known("Samuel Early", "Chief Technology Officer")
            },
        )]))
        .await;
        let app = spawn_app_with(backend, |s| {
            s.provider_urls.insert("pdl".into(), fakes::pdl_url(&pdl));
            s.provider_urls
                .insert("apollo".into(), fakes::apollo_url(&apollo));
        })
        .await;
        give_keys(&app).await;
        app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS", "APOLLO"]).await;
        app.create_leads(vec![lead("sam@early.example", "later")]).await;
        let body = app
            .gql_body(
                Role::Viewer,
                &page("person { fullName title }"),
                json!({"tag": "later"}),
            )
            .await;
        assert!(errors(&body).is_empty(), "{body}");
        assert!(fakes::bulk_sizes(&apollo).await.is_empty());

        // PDL was asked and does not know the seniority: Apollo is next, PDL is not paid again.
        let body = app
            .gql_body(
                Role::Viewer,
                &page("person { fullName seniority }"),
                json!({"tag": "later"}),
            )
            .await;
        assert!(errors(&body).is_empty(), "{backend:?}: {body}");
        assert_eq!(
            node_by_email(&body, "sam@early.example")["person"],
            json!({"fullName": "Sam Early", "seniority": "c_suite"}),
            "{backend:?}"
        );
        assert_eq!(fakes::bulk_sizes(&pdl).await, vec![1], "{backend:?}");
        assert_eq!(fakes::bulk_sizes(&apollo).await, vec![1], "{backend:?}");
        assert_eq!(spend(&body), (1, 1, 0), "{backend:?}");
    }
}

#[tokio::test]
async fn a_miss_is_cached_and_not_asked_or_paid_again() {
    for backend in backends() {
        let pdl = fakes::pdl(fakes::directory(vec![])).await;
        let app = spawn_app_with(backend, |s| {
            s.provider_urls.insert("pdl".into(), fakes::pdl_url(&pdl));
        })
        .await;
        app.configure_provider(json!({
            "provider": "PEOPLE_DATA_LABS", "apiKey": PDL_KEY, "dailyCreditCap": 10,
        }))
        .await;
        app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS"]).await;
        app.create_leads(vec![lead("ghost@nowhere.example", "miss")])
            .await;
        let q = page("person { fullName title }");

        let body = app.gql_body(Role::Viewer, &q, json!({"tag": "miss"})).await;
        assert!(
            errors(&body).is_empty(),
            "{backend:?}: a miss is not an error: {body}"
        );
        assert_eq!(
            node_by_email(&body, "ghost@nowhere.example")["person"],
            Value::Null
        );
        assert_eq!(spend(&body), (0, 1, 0), "{backend:?}: PDL's 404 is free");

        let body = app.gql_body(Role::Viewer, &q, json!({"tag": "miss"})).await;
        assert!(errors(&body).is_empty(), "{backend:?}: {body}");
        assert_eq!(
            node_by_email(&body, "ghost@nowhere.example")["person"],
            Value::Null
        );
        assert_eq!(
            spend(&body),
            (0, 0, 1),
            "{backend:?}: the remembered miss answers without a call"
        );
        assert_eq!(fakes::bulk_sizes(&pdl).await, vec![1], "{backend:?}");
        let providers = app
            .gql(
                Role::Admin,
                "{ providers { name usage { period used } } }",
                json!({}),
            )
            .await;
        let pdl_usage = providers["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "PEOPLE_DATA_LABS")
            .unwrap()["usage"]
            .clone();
        assert_eq!(pdl_usage, json!([{"period": "DAY", "used": 0}]), "{backend:?}");
    }
}

#[tokio::test]
async fn refresh_bypasses_caches_and_cache_only_never_calls_out() {
    for backend in backends() {
        let pdl = fakes::pdl(fakes::everyone()).await;
        let app = spawn_app_with(backend, |s| {
            s.provider_urls.insert("pdl".into(), fakes::pdl_url(&pdl));
        })
        .await;
        give_keys(&app).await;
        app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS"]).await;
        app.create_leads(vec![
            lead("warm@policy.example", "warm"),
            lead("cold@policy.example", "cold"),
        ])
        .await;
        let q = page("person(policy: $policy) { fullName }");
        let run = |tag: &str, policy: Value| {
            let vars = json!({"tag": tag, "policy": policy});
            let q = q.clone();
            let app = &app;
            async move { app.gql_body(Role::Viewer, &q, vars).await }
        };

        let body = run("warm", Value::Null).await;
        assert_eq!(
            node_by_email(&body, "warm@policy.example")["person"]["fullName"],
            "Person warm"
        );
        assert_eq!(spend(&body), (1, 1, 0), "{backend:?}");

        let body = run("warm", json!("CACHE_ONLY")).await;
        assert_eq!(
            node_by_email(&body, "warm@policy.example")["person"]["fullName"],
            "Person warm"
        );
        assert_eq!(spend(&body), (0, 0, 1), "{backend:?}");
        assert_eq!(fakes::bulk_sizes(&pdl).await.len(), 1, "{backend:?}");

        let body = run("warm", json!("REFRESH")).await;
        assert!(errors(&body).is_empty(), "{body}");
        assert_eq!(
            spend(&body),
            (1, 1, 0),
            "{backend:?}: REFRESH asks again despite the fresh cache"
        );
        assert_eq!(fakes::bulk_sizes(&pdl).await.len(), 2, "{backend:?}");

        let body = run("cold", json!("CACHE_ONLY")).await;
        assert!(errors(&body).is_empty(), "{backend:?}: {body}");
        assert_eq!(node_by_email(&body, "cold@policy.example")["person"], Value::Null);
        assert_eq!(spend(&body), (0, 0, 0), "{backend:?}");

        // The workspace default applies when the field has no `policy` argument.
        let data = app
            .gql(
                Role::Admin,
                "mutation { setDefaultEnrichmentPolicy(policy: CACHE_ONLY) { settings { defaultPolicy } userErrors { code } } }",
                json!({}),
            )
            .await;
        assert_eq!(
            data["setDefaultEnrichmentPolicy"],
            json!({"settings": {"defaultPolicy": "CACHE_ONLY"}, "userErrors": []})
        );
        let body = run("cold", Value::Null).await;
        assert!(errors(&body).is_empty(), "{backend:?}: {body}");
        assert_eq!(node_by_email(&body, "cold@policy.example")["person"], Value::Null);
        assert_eq!(spend(&body), (0, 0, 0), "{backend:?}");
        assert_eq!(fakes::bulk_sizes(&pdl).await.len(), 2, "{backend:?}");

        // An explicit argument still wins over the default.
        let body = run("cold", json!("FETCH_IF_MISSING")).await;
        assert_eq!(
            node_by_email(&body, "cold@policy.example")["person"]["fullName"],
            "Person cold"
        );
        assert_eq!(fakes::bulk_sizes(&pdl).await.len(), 3, "{backend:?}");
    }
}

/// Every error of `body` is `BUDGET_EXCEEDED` on a `person` field; returns the indices of the
/// edges they are on.
fn budget_error_edges(body: &Value) -> Vec<usize> {
    let mut at: Vec<usize> = errors(body)
        .iter()
        .map(|e| {
            assert_eq!(e["extensions"]["code"], "BUDGET_EXCEEDED", "{e}");
            let path = e["path"].as_array().unwrap_or_else(|| panic!("no path: {e}"));
            assert_eq!(path.len(), 5, "{e}");
            assert_eq!(path[0], "leads");
            assert_eq!(path[1], "edges");
            assert_eq!(path[3], "node");
            assert_eq!(path[4], "person");
            path[2].as_u64().unwrap() as usize
        })
        .collect();
    at.sort_unstable();
    at
}

/// Indices of the nodes whose `person` is null.
fn null_person_edges(body: &Value) -> Vec<usize> {
    nodes(body)
        .iter()
        .enumerate()
        .filter(|(_, n)| n["person"].is_null())
        .map(|(i, _)| i)
        .collect()
}

#[tokio::test]
async fn a_request_budget_stops_provider_calls_mid_page_and_the_rest_still_resolves() {
    for backend in backends() {
        let app = spawn_app_with(backend, |_| {}).await;
        app.use_sandbox(&["PERSON"], 1).await;
        app.create_leads(leads("budget", 10)).await;
        let fields = "person(policy: $policy) { fullName }";
        let vars = json!({"tag": "budget"});

        let (status, body) = app
            .post_with_headers(
                Role::Viewer,
                &[("X-Leadgate-Max-Credits", "4")],
                json!({"query": page(fields), "variables": vars}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let page_nodes = nodes(&body);
        assert_eq!(page_nodes.len(), 10);
        assert!(
            page_nodes.iter().all(|n| n["email"].is_string()),
            "the rest of the response resolves"
        );
        assert_eq!(null_person_edges(&body).len(), 6, "{backend:?}: {body}");
        assert_eq!(
            budget_error_edges(&body),
            null_person_edges(&body),
            "{backend:?}: each unfilled lead has its own BUDGET_EXCEEDED error"
        );
        assert_eq!(spend(&body).0, 4, "{backend:?}");
        assert_eq!(body["extensions"]["enrichment"]["maxCredits"], 4);

        // The same through the directive (REFRESH so the 4 cached leads are paid again).
        let body = app
            .gql_body(
                Role::Viewer,
                &budgeted_page(Some(4), fields),
                json!({"tag": "budget", "policy": "REFRESH"}),
            )
            .await;
        assert_eq!(null_person_edges(&body).len(), 6, "{backend:?}: {body}");
        assert_eq!(budget_error_edges(&body), null_person_edges(&body));
        assert_eq!(spend(&body).0, 4, "{backend:?}");

        // Header and directive together: the smaller cap wins.
        let (_, body) = app
            .post_with_headers(
                Role::Viewer,
                &[("X-Leadgate-Max-Credits", "4")],
                json!({"query": budgeted_page(Some(2), fields), "variables": {"tag": "budget", "policy": "REFRESH"}}),
            )
            .await;
        assert_eq!(null_person_edges(&body).len(), 8, "{backend:?}: {body}");
        assert_eq!(spend(&body).0, 2, "{backend:?}");

        // A budget of 0 forbids every provider call.
        let body = app
            .gql_body(
                Role::Viewer,
                &budgeted_page(Some(0), fields),
                json!({"tag": "budget", "policy": "REFRESH"}),
            )
            .await;
        assert_eq!(budget_error_edges(&body).len(), 10, "{backend:?}: {body}");
        assert_eq!(spend(&body), (0, 0, 0), "{backend:?}");

        // Malformed budgets are the caller's mistake and spend nothing.
        for bad in ["abc", "-1", "1.5"] {
            let (status, body) = app
                .post_with_headers(
                    Role::Viewer,
                    &[("X-Leadgate-Max-Credits", bad)],
                    json!({"query": page(fields), "variables": vars}),
                )
                .await;
            assert_eq!(status, 400, "header {bad:?}: {body}");
            assert_eq!(first_code(&body), "BAD_USER_INPUT", "header {bad:?}: {body}");
        }
        let (_, body) = app
            .post_with_headers(
                Role::Viewer,
                &[],
                json!({"query": budgeted_page(Some(-1), fields), "variables": vars}),
            )
            .await;
        assert_eq!(first_code(&body), "BAD_USER_INPUT", "{body}");
        assert!(body["data"].is_null(), "{body}");
        let metrics = app.metrics().await;
        assert_eq!(
            crate::helpers::metric(&metrics, r#"leadgate_provider_credits_total{provider="sandbox"}"#),
            10.0,
            "{backend:?}: 4 + 4 + 2 credits and nothing for the refused requests"
        );
    }
}

#[tokio::test]
async fn a_page_of_fifty_leads_makes_one_bulk_call_per_provider() {
    for backend in backends() {
        let pdl = fakes::pdl(fakes::everyone()).await;
        let app = spawn_app_with(backend, |s| {
            s.provider_urls.insert("pdl".into(), fakes::pdl_url(&pdl));
        })
        .await;
        give_keys(&app).await;
        app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS"]).await;
        app.create_leads(leads("fifty", 50)).await;

        let body = app
            .gql_body(
                Role::Viewer,
                &page("person { fullName title }"),
                json!({"tag": "fifty"}),
            )
            .await;
        assert!(errors(&body).is_empty(), "{backend:?}: {body}");
        let page_nodes = nodes(&body);
        assert_eq!(page_nodes.len(), 50);
        for n in &page_nodes {
            let local = n["email"].as_str().unwrap().split('@').next().unwrap();
            assert_eq!(n["person"]["fullName"], format!("Person {local}"), "{n}");
        }
        assert_eq!(
            fakes::requests_to(&pdl, fakes::PDL_BULK).await.len(),
            1,
            "{backend:?}: exactly one bulk request"
        );
        assert_eq!(fakes::bulk_sizes(&pdl).await, vec![50], "{backend:?}");
        assert_eq!(spend(&body), (50, 1, 0), "{backend:?}");
        let keys: Vec<String> = fakes::requests_to(&pdl, fakes::PDL_BULK)
            .await
            .iter()
            .filter_map(|r| r.headers.get("x-api-key"))
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(keys, vec![PDL_KEY.to_owned()], "the stored key is sent");
    }
}

#[tokio::test]
async fn concurrent_identical_cold_requests_share_one_provider_call() {
    for backend in backends() {
        let pdl = MockServer::start().await;
        fakes::mount_pdl(&pdl, fakes::everyone(), Duration::from_millis(100)).await;
        let app = spawn_app_with(backend, |s| {
            s.provider_urls.insert("pdl".into(), fakes::pdl_url(&pdl));
        })
        .await;
        give_keys(&app).await;
        app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS"]).await;
        app.create_leads(leads("flight", 5)).await;
        let q = page("person { fullName }");

        let bodies = futures_util::future::join_all(
            (0..20).map(|_| app.gql_body(Role::Viewer, &q, json!({"tag": "flight"}))),
        )
        .await;
        for body in &bodies {
            assert!(errors(body).is_empty(), "{backend:?}: {body}");
            assert!(
                nodes(body).iter().all(|n| n["person"]["fullName"].is_string()),
                "{body}"
            );
        }
        assert_eq!(
            fakes::bulk_sizes(&pdl).await,
            vec![5],
            "{backend:?}: one call for every request asking at the same time"
        );
        let paid: i64 = bodies.iter().map(|b| spend(b).0).sum();
        assert_eq!(paid, 5, "{backend:?}: each answer is paid once");
    }
}

const PLAN: &str = "query($q: String!, $v: JSON) {
  enrichmentPlan(query: $q, variables: $v) {
    maxCredits expectedCalls errors
    groups { group leads cached toFetch steps { provider available reason leads calls maxCredits } }
  }
}";

#[tokio::test]
async fn enrichment_plan_reports_calls_and_credits_without_spending() {
    for backend in backends() {
        let pdl = fakes::pdl(fakes::everyone()).await;
        let app = spawn_app_with(backend, |s| {
            s.provider_urls.insert("pdl".into(), fakes::pdl_url(&pdl));
        })
        .await;
        app.configure_provider(json!({"provider": "PEOPLE_DATA_LABS", "apiKey": PDL_KEY}))
            .await;
        app.use_sandbox(&[], 2).await;
        // Apollo has no key: listed, but not available.
        app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS", "APOLLO", "SANDBOX"])
            .await;
        app.create_leads(leads("plan", 5)).await;
        let q = page("person { fullName }");

        let data = app
            .gql(Role::Viewer, PLAN, json!({"q": q, "v": {"tag": "plan"}}))
            .await;
        assert_eq!(
            data["enrichmentPlan"],
            json!({
                "maxCredits": 15,
                "expectedCalls": 1,
                "errors": [],
                "groups": [{
                    "group": "PERSON", "leads": 5, "cached": 0, "toFetch": 5,
                    "steps": [
                        {"provider": "PEOPLE_DATA_LABS", "available": true, "reason": null, "leads": 5, "calls": 1, "maxCredits": 5},
                        {"provider": "APOLLO", "available": false, "reason": "no key", "leads": 5, "calls": 1, "maxCredits": 5},
                        {"provider": "SANDBOX", "available": true, "reason": null, "leads": 5, "calls": 1, "maxCredits": 10},
                    ],
                }],
            }),
            "{backend:?}"
        );
        assert!(
            fakes::bulk_sizes(&pdl).await.is_empty(),
            "{backend:?}: planning calls nobody"
        );
        let metrics = app.metrics().await;
        assert!(
            !metrics.contains("leadgate_provider_credits_total{"),
            "{backend:?}: nothing spent: {metrics}"
        );

        // The real query then calls, and a second plan finds everything cached.
        let body = app.gql_body(Role::Viewer, &q, json!({"tag": "plan"})).await;
        assert!(errors(&body).is_empty(), "{body}");
        assert_eq!(fakes::bulk_sizes(&pdl).await, vec![5], "{backend:?}");
        let data = app
            .gql(Role::Viewer, PLAN, json!({"q": q, "v": {"tag": "plan"}}))
            .await;
        assert_eq!(data["enrichmentPlan"]["maxCredits"], 0, "{backend:?}: {data}");
        assert_eq!(data["enrichmentPlan"]["expectedCalls"], 0, "{backend:?}: {data}");
        assert_eq!(fakes::bulk_sizes(&pdl).await, vec![5], "{backend:?}");

        // Mutations are refused, and not run.
        let body = app
            .gql_err(
                Role::Admin,
                PLAN,
                json!({"q": "mutation { setDefaultEnrichmentPolicy(policy: REFRESH) { userErrors { code } } }"}),
            )
            .await;
        assert_eq!(first_code(&body), "BAD_USER_INPUT", "{body}");
        let data = app
            .gql(Role::Admin, "{ enrichmentSettings { defaultPolicy } }", json!({}))
            .await;
        assert_eq!(data["enrichmentSettings"]["defaultPolicy"], "FETCH_IF_MISSING");
    }
}

const ENRICH_LEADS: &str = "mutation($ids: [ID!]!, $groups: [EnrichmentGroup!], $policy: EnrichmentPolicy!) {
  enrichLeads(ids: $ids, groups: $groups, policy: $policy) {
    job { id state total processed filled failed creditsSpent }
    userErrors { field message code }
  }
}";

const JOB: &str = "query($id: ID!) { enrichmentJob(id: $id) { id state groups policy total processed filled failed creditsSpent finishedAt } }";

#[tokio::test]
async fn enrich_leads_runs_a_background_job_to_success() {
    for backend in backends() {
        let app = spawn_app_with(backend, |_| {}).await;
        app.use_sandbox(&["PERSON", "COMPANY"], 1).await;
        let mut ids = app.create_leads(leads("job", 3)).await;
        // A lead of another workspace counts as failed, and is not touched.
        let (_, other) = app
            .post(
                Some(&app.token_in(&app.other, Role::Member)),
                json!({"query": "mutation { createLead(input: {email: \"x@globex.example\"}) { lead { id } } }"}),
            )
            .await;
        ids.push(
            other["data"]["createLead"]["lead"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );

        let data = app
            .gql(
                Role::Member,
                ENRICH_LEADS,
                json!({"ids": ids, "groups": ["PERSON", "COMPANY"], "policy": "FETCH_IF_MISSING"}),
            )
            .await;
        let payload = &data["enrichLeads"];
        assert_eq!(payload["userErrors"], json!([]), "{payload}");
        assert_eq!(payload["job"]["total"], 4);
        let id = payload["job"]["id"].as_str().unwrap().to_owned();
        let job = poll_until(Duration::from_secs(10), "the job to finish", || {
            let app = &app;
            let id = id.clone();
            async move {
                let data = app.gql(Role::Viewer, JOB, json!({"id": id})).await;
                let job = data["enrichmentJob"].clone();
                (job["state"] != "RUNNING").then_some(job)
            }
        })
        .await;
        assert_eq!(job["state"], "SUCCEEDED", "{backend:?}: {job}");
        assert_eq!(job["groups"], json!(["PERSON", "COMPANY"]));
        assert_eq!(job["policy"], "FETCH_IF_MISSING");
        assert_eq!(job["total"], 4, "{job}");
        assert_eq!(job["processed"], 4, "{job}");
        assert_eq!(job["filled"], 6, "{backend:?}: 3 leads × 2 groups: {job}");
        assert_eq!(
            job["failed"], 2,
            "{backend:?}: the foreign lead's 2 groups: {job}"
        );
        assert_eq!(job["creditsSpent"], 6, "{job}");
        assert!(job["finishedAt"].is_string(), "{job}");

        // The values are there for a query that may not call anyone.
        let body = app
            .gql_body(
                Role::Viewer,
                &page("person(policy: CACHE_ONLY) { fullName } company(policy: CACHE_ONLY) { domain }"),
                json!({"tag": "job"}),
            )
            .await;
        assert!(errors(&body).is_empty(), "{body}");
        for n in nodes(&body) {
            assert!(n["person"]["fullName"].is_string(), "{n}");
            assert_eq!(n["company"]["domain"], "job.example", "{n}");
        }
        assert_eq!(spend(&body), (0, 0, 6), "{backend:?}");

        // Bad requests.
        let data = app
            .gql(
                Role::Member,
                ENRICH_LEADS,
                json!({"ids": [], "policy": "REFRESH"}),
            )
            .await;
        assert_eq!(data["enrichLeads"]["job"], Value::Null);
        assert_eq!(data["enrichLeads"]["userErrors"][0]["field"], json!(["ids"]));
        assert_eq!(data["enrichLeads"]["userErrors"][0]["code"], "REQUIRED");
        let data = app
            .gql(
                Role::Member,
                ENRICH_LEADS,
                json!({"ids": &ids[..1], "policy": "CACHE_ONLY"}),
            )
            .await;
        assert_eq!(data["enrichLeads"]["job"], Value::Null);
        assert_eq!(data["enrichLeads"]["userErrors"][0]["field"], json!(["policy"]));
        assert_eq!(data["enrichLeads"]["userErrors"][0]["code"], "INVALID");
        let body = app
            .gql_err(
                Role::Viewer,
                ENRICH_LEADS,
                json!({"ids": &ids[..1], "policy": "REFRESH"}),
            )
            .await;
        assert_eq!(first_code(&body), "FORBIDDEN", "{body}");
        let body = app.gql_err(Role::Viewer, JOB, json!({"id": "not-a-job"})).await;
        assert_eq!(first_code(&body), "BAD_USER_INPUT", "{body}");
        // Jobs are per workspace.
        let (_, body) = app
            .post(
                Some(&app.token_in(&app.other, Role::Admin)),
                json!({"query": JOB, "variables": {"id": id}}),
            )
            .await;
        assert_eq!(body["data"]["enrichmentJob"], Value::Null, "{body}");
    }
}

#[tokio::test]
async fn each_fetched_lead_and_group_appends_one_lead_enriched_event_without_personal_data() {
    for backend in backends() {
        let app = spawn_app_with(backend, |_| {}).await;
        app.use_sandbox(&["PERSON", "COMPANY"], 1).await;
        let people = [
            ("Ada", "Lovelace", "ada.lovelace@engines.example"),
            ("Grace", "Hopper", "grace.hopper@navy.example"),
        ];
        let ids = app
            .create_leads(
                people
                    .iter()
                    .map(|(first, last, email)| {
                        json!({"firstName": first, "lastName": last, "email": email, "tags": ["events"]})
                    })
                    .collect(),
            )
            .await;
        let q = page("person(policy: $policy) { fullName title } company { name industry }");
        let body = app.gql_body(Role::Viewer, &q, json!({"tag": "events"})).await;
        assert!(errors(&body).is_empty(), "{body}");
        assert_eq!(
            node_by_email(&body, "ada.lovelace@engines.example")["person"]["fullName"],
            "Ada Lovelace"
        );

        let events = app
            .services
            .store
            .events_after(app.workspace.id, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind != "lead.created")
            .collect::<Vec<_>>();
        assert_eq!(events.len(), 4, "{backend:?}: one per (lead, group): {events:?}");
        let mut seen = Vec::new();
        for e in &events {
            assert_eq!(e.kind, LEAD_ENRICHED);
            assert_eq!(e.workspace_id, app.workspace.id);
            let p = &e.payload;
            let lead = p["leadId"].as_str().unwrap();
            assert_eq!(e.subject_id.map(|u| u.to_string()).as_deref(), Some(lead));
            assert!(ids.iter().any(|id| lead_uuid(id).to_string() == lead), "{p}");
            assert_eq!(p["providers"], json!(["sandbox"]), "{p}");
            assert_eq!(p["credits"], 1, "{p}");
            let fields: Vec<&str> = p["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            match p["group"].as_str().unwrap() {
                "person" => assert!(fields.contains(&"fullName") && fields.contains(&"title"), "{p}"),
                "company" => assert!(fields.contains(&"name") && fields.contains(&"industry"), "{p}"),
                other => panic!("unexpected group {other}"),
            }
            let text = p.to_string();
            for (first, last, email) in people {
                for personal in [first, last, email, "engines", "navy"] {
                    assert!(!text.contains(personal), "{personal} leaked into {text}");
                }
            }
            seen.push((lead.to_owned(), p["group"].as_str().unwrap().to_owned()));
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 4, "no (lead, group) twice: {seen:?}");

        // Served from cache: no new events. Refreshed: one more per lead for the group.
        app.gql_body(Role::Viewer, &q, json!({"tag": "events"})).await;
        let after = events.last().unwrap().seq;
        let store = &app.services.store;
        assert!(
            store
                .events_after(app.workspace.id, after, 100)
                .await
                .unwrap()
                .is_empty()
        );
        app.gql_body(Role::Viewer, &q, json!({"tag": "events", "policy": "REFRESH"}))
            .await;
        let more = store.events_after(app.workspace.id, after, 100).await.unwrap();
        assert_eq!(more.len(), 2, "{backend:?}: {more:?}");
        assert!(more.iter().all(|e| e.payload["group"] == "person"));
        assert!(
            store.events_after(app.other.id, 0, 100).await.unwrap().is_empty(),
            "the other workspace's log is untouched"
        );
    }
}

const SNAPSHOT: &str = "{
  providers { name enabled disabledReason hasApiKey apiKeyLast4 dailyCreditCap monthlyCreditCap ratePerSecond timeoutMs options }
  enrichmentSettings { defaultPolicy waterfalls { group providers } }
}";

const SET_WATERFALL: &str = "mutation($g: EnrichmentGroup!, $p: [ProviderName!]!) {
  setWaterfall(group: $g, providers: $p) { settings { defaultPolicy } userErrors { field message code } }
}";

#[tokio::test]
async fn admin_mutations_reject_malformed_input_and_change_nothing() {
    for backend in backends() {
        let app = spawn_app_with(backend, |_| {}).await;
        app.configure_provider(json!({
            "provider": "PEOPLE_DATA_LABS", "apiKey": PDL_KEY, "dailyCreditCap": 10,
        }))
        .await;
        app.use_sandbox(&["PERSON"], 1).await;
        let before = app.gql(Role::Admin, SNAPSHOT, json!({})).await;
        assert_eq!(
            before["providers"][2]["apiKeyLast4"], "3456",
            "{backend:?}: {before}"
        );

        let cases = [
            (
                json!({"provider": "PEOPLE_DATA_LABS", "dailyCreditCap": -1}),
                "dailyCreditCap",
                "INVALID",
            ),
            (
                json!({"provider": "PEOPLE_DATA_LABS", "monthlyCreditCap": -5}),
                "monthlyCreditCap",
                "INVALID",
            ),
            (
                json!({"provider": "PEOPLE_DATA_LABS", "ratePerSecond": 0}),
                "ratePerSecond",
                "INVALID",
            ),
            (
                json!({"provider": "PEOPLE_DATA_LABS", "ratePerSecond": 10_001}),
                "ratePerSecond",
                "INVALID",
            ),
            (
                json!({"provider": "PEOPLE_DATA_LABS", "timeoutMs": 10}),
                "timeoutMs",
                "INVALID",
            ),
            (
                json!({"provider": "PEOPLE_DATA_LABS", "timeoutMs": 60_001}),
                "timeoutMs",
                "INVALID",
            ),
            (
                json!({"provider": "PEOPLE_DATA_LABS", "apiKey": "   "}),
                "apiKey",
                "REQUIRED",
            ),
            (
                json!({"provider": "PEOPLE_DATA_LABS", "apiKey": "two words"}),
                "apiKey",
                "INVALID",
            ),
            (
                json!({"provider": "PEOPLE_DATA_LABS", "options": {"latencyMs": 1}}),
                "options",
                "INVALID",
            ),
            (
                json!({"provider": "SANDBOX", "apiKey": "sandbox-key-1"}),
                "apiKey",
                "INVALID",
            ),
            (
                json!({"provider": "SANDBOX", "options": {"latency": 5}}),
                "options",
                "INVALID",
            ),
            (
                json!({"provider": "SANDBOX", "options": {"missRate": 2}}),
                "options",
                "INVALID",
            ),
            (
                json!({"provider": "SANDBOX", "options": {"creditsPerHit": -1}}),
                "options",
                "INVALID",
            ),
            (
                json!({"provider": "SANDBOX", "options": [1, 2]}),
                "options",
                "INVALID",
            ),
            // a valid change next to an invalid one is not applied either
            (
                json!({"provider": "PEOPLE_DATA_LABS", "dailyCreditCap": 5, "ratePerSecond": 0}),
                "ratePerSecond",
                "INVALID",
            ),
            (
                json!({"provider": "PEOPLE_DATA_LABS", "apiKey": "pdl-key-999999", "timeoutMs": 10}),
                "timeoutMs",
                "INVALID",
            ),
        ];
        for (input, field, code) in cases {
            let data = app
                .gql(
                    Role::Admin,
                    crate::helpers::CONFIGURE_PROVIDER,
                    json!({"input": input}),
                )
                .await;
            let payload = &data["configureProvider"];
            assert_eq!(payload["provider"], Value::Null, "{input}: {payload}");
            let errors = payload["userErrors"].as_array().unwrap();
            assert_eq!(errors.len(), 1, "{input}: {payload}");
            assert_eq!(errors[0]["field"], json!(["input", field]), "{input}: {payload}");
            assert_eq!(errors[0]["code"], code, "{input}: {payload}");
        }

        let body = app
            .gql_err(
                Role::Admin,
                "mutation { configureProvider(input: {provider: ZOOMINFO}) { userErrors { code } } }",
                json!({}),
            )
            .await;
        assert_eq!(first_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");

        let waterfalls = [
            (json!({"g": "PERSON", "p": ["SANDBOX", "SANDBOX"]}), "INVALID"),
            (json!({"g": "COMPANY", "p": ["HUNTER"]}), "INVALID"),
            (
                json!({"g": "EMAIL_VERIFICATION", "p": ["PEOPLE_DATA_LABS"]}),
                "INVALID",
            ),
            (
                json!({"g": "PERSON", "p": ["SANDBOX", "HUNTER", "PEOPLE_DATA_LABS", "APOLLO", "CLEARBIT", "SANDBOX"]}),
                "TOO_LONG",
            ),
        ];
        for (vars, code) in waterfalls {
            let data = app.gql(Role::Admin, SET_WATERFALL, vars.clone()).await;
            let payload = &data["setWaterfall"];
            assert_eq!(payload["settings"], Value::Null, "{vars}: {payload}");
            assert_eq!(payload["userErrors"][0]["field"], json!(["providers"]), "{vars}");
            assert_eq!(payload["userErrors"][0]["code"], code, "{vars}: {payload}");
        }

        for role in [Role::Member, Role::Viewer] {
            for (query, vars) in [
                (
                    crate::helpers::CONFIGURE_PROVIDER,
                    json!({"input": {"provider": "PEOPLE_DATA_LABS", "dailyCreditCap": 1}}),
                ),
                (SET_WATERFALL, json!({"g": "PERSON", "p": []})),
                (
                    "mutation { setDefaultEnrichmentPolicy(policy: REFRESH) { userErrors { code } } }",
                    json!({}),
                ),
            ] {
                let body = app.gql_err(role, query, vars).await;
                assert_eq!(first_code(&body), "FORBIDDEN", "{role:?}: {body}");
            }
        }

        let after = app.gql(Role::Admin, SNAPSHOT, json!({})).await;
        assert_eq!(
            after, before,
            "{backend:?}: rejected changes left everything as it was"
        );
    }
}

#[tokio::test]
async fn changing_a_leads_email_makes_its_cached_values_stale() {
    for backend in backends() {
        let pdl = fakes::pdl(fakes::everyone()).await;
        let app = spawn_app_with(backend, |s| {
            s.provider_urls.insert("pdl".into(), fakes::pdl_url(&pdl));
        })
        .await;
        give_keys(&app).await;
        app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS"]).await;
        let ids = app
            .create_leads(vec![lead("old.name@stale.example", "stale")])
            .await;
        let q = page("person { fullName }");

        let body = app.gql_body(Role::Viewer, &q, json!({"tag": "stale"})).await;
        assert_eq!(nodes(&body)[0]["person"]["fullName"], "Person old.name");
        let body = app.gql_body(Role::Viewer, &q, json!({"tag": "stale"})).await;
        assert_eq!(spend(&body).1, 0, "{backend:?}: cached");

        let data = app
            .gql(
                Role::Member,
                "mutation($input: UpdateLeadInput!) { updateLead(input: $input) { lead { email } userErrors { code } } }",
                json!({"input": {"id": ids[0], "email": "new.name@stale.example"}}),
            )
            .await;
        assert_eq!(data["updateLead"]["userErrors"], json!([]), "{data}");

        let body = app.gql_body(Role::Viewer, &q, json!({"tag": "stale"})).await;
        assert!(errors(&body).is_empty(), "{body}");
        assert_eq!(
            nodes(&body)[0]["person"]["fullName"],
            "Person new.name",
            "{backend:?}: fetched again for the new email"
        );
        assert_eq!(spend(&body).1, 1, "{backend:?}");
        assert_eq!(
            fakes::bulk_emails(&pdl).await,
            vec!["old.name@stale.example", "new.name@stale.example"],
            "{backend:?}"
        );
        // The stale values are not served even to a query that may not fetch.
        let body = app
            .gql_body(
                Role::Viewer,
                &page("person(policy: CACHE_ONLY) { fullName }"),
                json!({"tag": "stale"}),
            )
            .await;
        assert_eq!(nodes(&body)[0]["person"]["fullName"], "Person new.name");
    }
}

#[tokio::test]
async fn another_workspace_never_sees_cached_enrichment_or_settings() {
    for backend in backends() {
        let app = spawn_app_with(backend, |_| {}).await;
        app.configure_provider(json!({
            "provider": "PEOPLE_DATA_LABS", "apiKey": PDL_KEY, "dailyCreditCap": 10,
        }))
        .await;
        app.use_sandbox(&["PERSON"], 1).await;
        app.gql(
            Role::Admin,
            "mutation { setDefaultEnrichmentPolicy(policy: REFRESH) { userErrors { code } } }",
            json!({}),
        )
        .await;
        let ids = app
            .create_leads(vec![lead("shared@tenancy.example", "tenancy")])
            .await;
        let q = page("person(policy: $policy) { fullName } enrichment { field provider }");
        let body = app
            .gql_body(
                Role::Viewer,
                &q,
                json!({"tag": "tenancy", "policy": "FETCH_IF_MISSING"}),
            )
            .await;
        assert!(nodes(&body)[0]["person"]["fullName"].is_string(), "{body}");

        let b_admin = app.token_in(&app.other, Role::Admin);
        let as_b = |query: &'static str, variables: Value| {
            let token = b_admin.clone();
            let app = &app;
            async move {
                let (status, body) = app
                    .post(Some(&token), json!({"query": query, "variables": variables}))
                    .await;
                assert_eq!(status, 200, "{body}");
                body
            }
        };
        let settings = as_b(
            "{ enrichmentSettings { defaultPolicy waterfalls { group providers } } providers { name hasApiKey apiKeyLast4 dailyCreditCap options usage { used } } }",
            json!({}),
        )
        .await;
        assert_eq!(
            settings["data"]["enrichmentSettings"]["defaultPolicy"],
            "FETCH_IF_MISSING"
        );
        for w in settings["data"]["enrichmentSettings"]["waterfalls"]
            .as_array()
            .unwrap()
        {
            assert_eq!(w["providers"], json!([]), "{backend:?}: {w}");
        }
        for p in settings["data"]["providers"].as_array().unwrap() {
            assert_eq!(p["hasApiKey"], false, "{p}");
            assert_eq!(p["apiKeyLast4"], Value::Null, "{p}");
            assert_eq!(p["dailyCreditCap"], Value::Null, "{p}");
            assert_eq!(p["usage"], json!([]), "{p}");
            assert!(p["options"].is_null(), "{p}");
        }

        let node = as_b("query($id: ID!) { node(id: $id) { id } }", json!({"id": ids[0]})).await;
        assert_eq!(node["data"]["node"], Value::Null, "{node}");

        // B's own lead with the same email knows nothing, and B has no provider to ask.
        let created = as_b(
            "mutation { createLead(input: {email: \"shared@tenancy.example\", tags: [\"tenancy\"]}) { lead { id } } }",
            json!({}),
        )
        .await;
        assert!(
            created["data"]["createLead"]["lead"]["id"].is_string(),
            "{created}"
        );
        for policy in ["CACHE_ONLY", "FETCH_IF_MISSING"] {
            let (_, body) = app
                .post(
                    Some(&b_admin),
                    json!({"query": q, "variables": {"tag": "tenancy", "policy": policy}}),
                )
                .await;
            assert!(errors(&body).is_empty(), "{body}");
            let n = &nodes(&body)[0];
            assert_eq!(n["person"], Value::Null, "{backend:?} {policy}: {body}");
            assert_eq!(n["enrichment"], json!([]), "{backend:?} {policy}: {body}");
            assert_eq!(spend(&body), (0, 0, 0), "{backend:?} {policy}");
        }

        // B's settings are its own too.
        let (_, body) = app
            .post(
                Some(&b_admin),
                json!({"query": crate::helpers::CONFIGURE_PROVIDER, "variables": {"input": {"provider": "SANDBOX", "options": {"creditsPerHit": 7}}}}),
            )
            .await;
        assert_eq!(
            body["data"]["configureProvider"]["userErrors"],
            json!([]),
            "{body}"
        );
        let mine = app
            .gql(Role::Admin, "{ providers { name options } }", json!({}))
            .await;
        assert_eq!(
            mine["providers"][0],
            json!({"name": "SANDBOX", "options": {"latencyMs": 0, "missRate": 0.0, "creditsPerHit": 1}}),
            "{backend:?}"
        );
    }
}

/// `phone` is the lead's stored number and never enriches; `phoneEnrichment` on a page is
/// prefetched for the whole page in one provider call.
#[tokio::test]
async fn the_stored_phone_never_enriches_and_phone_enrichment_is_fetched_once_per_page() {
    for backend in backends() {
        let app = spawn_app_with(backend, |_| {}).await;
        app.use_sandbox(&["PHONE"], 1).await;
        app.create_leads(leads("phones", 20)).await;

        let stored = app
            .gql_body(Role::Viewer, &page("phone"), json!({"tag": "phones"}))
            .await;
        assert!(errors(&stored).is_empty(), "{backend:?}: {stored}");
        assert_eq!(nodes(&stored).len(), 20);
        assert!(
            stored["extensions"]["enrichment"].is_null(),
            "{backend:?}: selecting the stored phone touched enrichment: {stored}"
        );

        let enriched = app
            .gql_body(
                Role::Viewer,
                &page("phone phoneEnrichment { numbers { number type } }"),
                json!({"tag": "phones"}),
            )
            .await;
        assert!(errors(&enriched).is_empty(), "{backend:?}: {enriched}");
        for n in nodes(&enriched) {
            assert!(
                !n["phoneEnrichment"]["numbers"].as_array().unwrap().is_empty(),
                "{backend:?}: {n}"
            );
        }
        assert_eq!(spend(&enriched), (20, 1, 0), "{backend:?}: one call for the page");
    }
}
