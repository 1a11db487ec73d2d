//! The enrichment cache instances share through Redis, and single flight across instances:
//! two app instances on one database and one Redis, a fake PDL counting its calls.

use crate::fakes;
use crate::helpers::{TestApp, backends, metric, spawn_app_with, spawn_second_app};
use crate::rate_limits::{on_redis, redis_url_or_skip};
use leadgate::domain::Role;
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::MockServer;

const PAGE: &str = "query($tag: String!) { leads(first: 10, filter: {tags: {anyOf: [$tag]}}) { edges { node { id email person { fullName } } } } }";

async fn setup(app: &TestApp) {
    app.configure_provider(json!({"provider": "PEOPLE_DATA_LABS", "apiKey": "pdl-key-123456"}))
        .await;
    app.set_waterfall("PERSON", &["PEOPLE_DATA_LABS"]).await;
}

/// Two instances on one database and one Redis (a fresh prefix), asking `pdl`.
async fn pair(backend: crate::helpers::Backend, redis: &str, pdl: &MockServer) -> (TestApp, TestApp) {
    let url = fakes::pdl_url(pdl);
    let redis = redis.to_owned();
    let a = spawn_app_with(backend, move |s| {
        on_redis(s, &redis);
        s.provider_urls.insert("pdl".into(), url);
    })
    .await;
    let b = spawn_second_app(&a).await;
    setup(&a).await;
    (a, b)
}

fn names(body: &Value) -> Vec<Value> {
    body["data"]["leads"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("no page in {body}"))
        .iter()
        .map(|e| e["node"]["person"]["fullName"].clone())
        .collect()
}

/// The lead uuid inside an opaque `Lead` id.
fn lead_uuid(id: &str) -> uuid::Uuid {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id)
        .expect("ids are base64");
    let text = String::from_utf8(raw).expect("text");
    uuid::Uuid::parse_str(text.strip_prefix("Lead:").expect("a Lead id")).expect("uuid")
}

fn redis_hits(metrics: &str) -> f64 {
    metric(
        metrics,
        "leadgate_enrichment_cache_lookups_total{tier=\"redis\",result=\"hit\"}",
    )
}

#[tokio::test]
async fn a_hundred_concurrent_cold_requests_on_two_instances_cost_one_provider_call() {
    let Some(redis) = redis_url_or_skip() else { return };
    for backend in backends() {
        let pdl = MockServer::start().await;
        // slow enough that every request arrives while the first flight is out
        fakes::mount_pdl(&pdl, fakes::everyone(), Duration::from_millis(300)).await;
        let (a, b) = pair(backend, &redis, &pdl).await;
        a.create_leads(vec![json!({"email": "cold@flight.example", "tags": ["cold"]})])
            .await;
        let bodies = futures_util::future::join_all((0..100).map(|i| {
            let app = if i % 2 == 0 { &a } else { &b };
            app.gql_body(Role::Viewer, PAGE, json!({"tag": "cold"}))
        }))
        .await;
        for body in &bodies {
            assert!(body.get("errors").is_none(), "{backend:?}: {body}");
            assert_eq!(names(body), [json!("Person cold")], "{body}");
        }
        assert_eq!(
            fakes::bulk_sizes(&pdl).await,
            vec![1],
            "{backend:?}: one provider call for both instances"
        );
    }
}

#[tokio::test]
async fn a_lead_enriched_on_one_instance_is_served_from_redis_on_the_other() {
    let Some(redis) = redis_url_or_skip() else { return };
    for backend in backends() {
        let pdl = fakes::pdl(fakes::directory(vec![(
            "known@l2.example",
            fakes::Known {
                full_name: Some("Known Person".into()),
                ..Default::default()
            },
        )]))
        .await;
        let (a, b) = pair(backend, &redis, &pdl).await;
        a.create_leads(vec![
            json!({"email": "known@l2.example", "tags": ["l2"]}),
            json!({"email": "nobody@l2.example", "tags": ["l2"]}),
        ])
        .await;
        let first = a.gql_body(Role::Viewer, PAGE, json!({"tag": "l2"})).await;
        assert!(first.get("errors").is_none(), "{first}");
        let calls = fakes::bulk_sizes(&pdl).await;
        assert_eq!(calls, vec![2]);
        // B has never seen either lead: the hit and the miss both come from Redis
        let second = b.gql_body(Role::Viewer, PAGE, json!({"tag": "l2"})).await;
        assert!(second.get("errors").is_none(), "{second}");
        let mut found = names(&second);
        found.sort_by_key(|v| v.to_string());
        assert_eq!(found, [json!("Known Person"), Value::Null]);
        assert_eq!(fakes::bulk_sizes(&pdl).await, calls, "{backend:?}: no new call");
        assert_eq!(
            redis_hits(&b.metrics().await),
            2.0,
            "{backend:?}: both from Redis"
        );
    }
}

#[tokio::test]
async fn a_malformed_value_in_redis_is_ignored_and_never_served() {
    let Some(redis) = redis_url_or_skip() else { return };
    for backend in backends() {
        let pdl = fakes::pdl(fakes::everyone()).await;
        let (a, b) = pair(backend, &redis, &pdl).await;
        a.create_leads(vec![json!({"email": "garbled@l2.example", "tags": ["garbled"]})])
            .await;
        let first = a.gql_body(Role::Viewer, PAGE, json!({"tag": "garbled"})).await;
        assert_eq!(names(&first), [json!("Person garbled")]);
        // overwrite every entry of this instance pair with garbage
        let client = redis::Client::open(redis.as_str()).expect("client");
        let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
        let pattern = format!("{}enrich:*", a.settings.redis_prefix);
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut conn)
            .await
            .expect("keys");
        assert!(!keys.is_empty(), "the record was shared");
        for key in &keys {
            let _: () = redis::cmd("SET")
                .arg(key)
                .arg("lg-enrich/1\n{\"not\": \"a record\"}")
                .query_async(&mut conn)
                .await
                .expect("set");
        }
        let second = b.gql_body(Role::Viewer, PAGE, json!({"tag": "garbled"})).await;
        assert!(second.get("errors").is_none(), "{second}");
        assert_eq!(names(&second), [json!("Person garbled")]);
        assert_eq!(redis_hits(&b.metrics().await), 0.0, "garbage is never served");
        // the answer came from the stored record, the next level down
        assert_eq!(fakes::bulk_sizes(&pdl).await, vec![1], "{backend:?}");
    }
}

#[tokio::test]
async fn with_redis_down_enrichment_works_in_this_process() {
    for backend in backends() {
        let pdl = fakes::pdl(fakes::everyone()).await;
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let url = fakes::pdl_url(&pdl);
        let app = spawn_app_with(backend, move |s| {
            on_redis(s, &format!("redis://127.0.0.1:{port}"));
            s.provider_urls.insert("pdl".into(), url);
        })
        .await;
        setup(&app).await;
        app.create_leads(vec![json!({"email": "down@l2.example", "tags": ["down"]})])
            .await;
        for _ in 0..2 {
            let body = app.gql_body(Role::Viewer, PAGE, json!({"tag": "down"})).await;
            assert!(body.get("errors").is_none(), "{body}");
            assert_eq!(names(&body), [json!("Person down")]);
        }
        assert_eq!(
            fakes::bulk_sizes(&pdl).await,
            vec![1],
            "{backend:?}: cached in process"
        );
        assert_eq!(metric(&app.metrics().await, "leadgate_redis_up"), 0.0);
    }
}

#[tokio::test]
async fn a_claim_left_by_a_dead_instance_delays_the_flight_only_until_it_expires() {
    let Some(redis) = redis_url_or_skip() else { return };
    for backend in backends() {
        let pdl = fakes::pdl(fakes::everyone()).await;
        let url = fakes::pdl_url(&pdl);
        let redis_url = redis.clone();
        let app = spawn_app_with(backend, move |s| {
            on_redis(s, &redis_url);
            s.provider_urls.insert("pdl".into(), url);
            // a short claim: 200 ms × 1 try + the 2 s margin
            s.provider_timeout_ms = 200;
            s.provider_retries = 0;
        })
        .await;
        setup(&app).await;
        let lead = app
            .create_lead(json!({"email": "orphan@l2.example", "tags": ["orphan"]}))
            .await;
        let uuid = lead_uuid(lead["id"].as_str().expect("id"));
        // another instance claimed this lead's flight and died without releasing it
        let client = redis::Client::open(redis.as_str()).expect("client");
        let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
        let claim = format!(
            "{}enrich:flight:{}:{}:person",
            app.settings.redis_prefix, app.workspace.id, uuid
        );
        let _: () = redis::cmd("SET")
            .arg(&claim)
            .arg("dead-instance")
            .arg("PX")
            .arg(60_000)
            .query_async(&mut conn)
            .await
            .expect("claim");
        let body = tokio::time::timeout(
            Duration::from_secs(30),
            app.gql_body(Role::Viewer, PAGE, json!({"tag": "orphan"})),
        )
        .await
        .expect("the request is answered once the wait is over");
        assert!(body.get("errors").is_none(), "{body}");
        assert_eq!(names(&body), [json!("Person orphan")]);
        assert_eq!(fakes::bulk_sizes(&pdl).await, vec![1], "{backend:?}: flown here");
    }
}
