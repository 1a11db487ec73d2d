//! Automatic persisted queries (the Apollo protocol) over HTTP POST and GET, shared between
//! instances through Redis, the allow-list mode, and malformed extensions.

use crate::helpers::{backends, first_code, metric, spawn_app_with, spawn_second_app};
use crate::rate_limits::{on_redis, redis_url_or_skip};
use leadgate::domain::Role;
use leadgate::graphql::persisted::sha256_hex;
use serde_json::{Value, json};

const DOC: &str = "query Count { leads(first: 1) { totalCount } }";

fn by_hash(doc: &str) -> Value {
    json!({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(doc)}}})
}

fn with_hash(doc: &str) -> Value {
    let mut body = by_hash(doc);
    body["query"] = json!(doc);
    body
}

#[tokio::test]
async fn the_apollo_round_trip_over_post_and_get() {
    for backend in backends() {
        let app = spawn_app_with(backend, |_| {}).await;
        let token = app.token(Role::Viewer);
        let (_, body) = app.post(Some(&token), by_hash(DOC)).await;
        assert_eq!(body["errors"][0]["message"], "PersistedQueryNotFound", "{body}");
        assert_eq!(first_code(&body), "PERSISTED_QUERY_NOT_FOUND");
        let (status, body) = app.post(Some(&token), with_hash(DOC)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["leads"]["totalCount"], 0);
        let (status, body) = app.post(Some(&token), by_hash(DOC)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["leads"]["totalCount"], 0, "{body}");
        // GET, as CDNs cache it: only the hash in the URL
        let extensions = json!({"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(DOC)}}).to_string();
        let res = app
            .client
            .get(app.url("/graphql"))
            .query(&[("extensions", extensions.as_str())])
            .header("x-leadgate-csrf", "1")
            .header("accept", "application/graphql-response+json")
            .bearer_auth(&token)
            .send()
            .await
            .expect("GET");
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.expect("JSON");
        assert_eq!(body["data"]["leads"]["totalCount"], 0, "{body}");
        let metrics = app.metrics().await;
        assert_eq!(
            metric(&metrics, "leadgate_persisted_queries_total{result=\"hit\"}"),
            2.0
        );
        assert_eq!(
            metric(&metrics, "leadgate_persisted_queries_total{result=\"miss\"}"),
            1.0
        );
    }
}

#[tokio::test]
async fn a_mutation_sent_by_hash_over_get_is_still_refused() {
    let app = spawn_app_with(backends()[0], |_| {}).await;
    let token = app.token(Role::Admin);
    let mutation = "mutation { archiveLead(id: \"TGVhZDow\") { lead { id } } }";
    let _ = app.post(Some(&token), with_hash(mutation)).await;
    let extensions =
        json!({"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(mutation)}}).to_string();
    let res = app
        .client
        .get(app.url("/graphql"))
        .query(&[("extensions", extensions.as_str())])
        .header("x-leadgate-csrf", "1")
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 405);
}

#[tokio::test]
async fn malformed_persisted_query_extensions_get_clear_errors_and_register_nothing() {
    for backend in backends() {
        let app = spawn_app_with(backend, |_| {}).await;
        let token = app.token(Role::Viewer);
        let cases = [
            (
                json!({"query": DOC, "extensions": {"persistedQuery": "abc"}}),
                "BAD_USER_INPUT",
            ),
            (
                json!({"query": DOC, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "xyz"}}}),
                "BAD_USER_INPUT",
            ),
            (
                json!({"query": DOC, "extensions": {"persistedQuery": {"version": 3, "sha256Hash": sha256_hex(DOC)}}}),
                "PERSISTED_QUERY_NOT_SUPPORTED",
            ),
            (
                json!({"query": "{ __typename }", "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(DOC)}}}),
                "BAD_USER_INPUT",
            ),
            (json!({"extensions": {"other": 1}}), "BAD_USER_INPUT"),
        ];
        for (body, code) in cases {
            let (status, answer) = app.post(Some(&token), body.clone()).await;
            assert_eq!(status, 400, "{body}: {answer}");
            assert_eq!(first_code(&answer), code, "{body}: {answer}");
        }
        let (_, body) = app.post(Some(&token), by_hash(DOC)).await;
        assert_eq!(
            first_code(&body),
            "PERSISTED_QUERY_NOT_FOUND",
            "the mismatch registered nothing"
        );
    }
}

#[tokio::test]
async fn a_query_registered_on_one_instance_is_known_on_another_through_redis() {
    let Some(redis) = redis_url_or_skip() else { return };
    for backend in backends() {
        let a = spawn_app_with(backend, |s| on_redis(s, &redis)).await;
        let b = spawn_second_app(&a).await;
        let token = a.token(Role::Viewer);
        let (status, _) = a.post(Some(&token), with_hash(DOC)).await;
        assert_eq!(status, 200);
        let (status, body) = b.post(Some(&token), by_hash(DOC)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["leads"]["totalCount"], 0, "{body}");
    }
}

#[tokio::test]
async fn the_allow_list_runs_only_the_manifests_operations() {
    let dir = tempfile::tempdir().expect("dir");
    let manifest = dir.path().join("operations.json");
    std::fs::write(
        &manifest,
        json!({"format": "apollo-persisted-query-manifest", "version": 1,
               "operations": [{"id": sha256_hex(DOC), "body": DOC, "name": "Count", "type": "query"}]})
        .to_string(),
    )
    .expect("write");
    for backend in backends() {
        let path = manifest.clone();
        let app = spawn_app_with(backend, move |s| {
            s.persisted_queries = "allowlist".into();
            s.persisted_queries_file = Some(path);
        })
        .await;
        let token = app.token(Role::Admin);
        let (status, body) = app.post(Some(&token), by_hash(DOC)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["leads"]["totalCount"], 0);
        let (status, _) = app.post(Some(&token), json!({"query": DOC})).await;
        assert_eq!(status, 200, "a listed document may also be sent in full");
        let other = "{ leads(first: 2) { totalCount } }";
        for body in [json!({"query": other}), with_hash(other)] {
            let (status, answer) = app.post(Some(&token), body).await;
            assert_eq!(status, 400, "{answer}");
            assert_eq!(first_code(&answer), "PERSISTED_QUERY_NOT_ALLOWED");
        }
        let (_, answer) = app.post(Some(&token), by_hash(other)).await;
        assert_eq!(
            first_code(&answer),
            "PERSISTED_QUERY_NOT_FOUND",
            "nothing was registered"
        );
    }
}

#[tokio::test]
async fn a_manifest_with_a_wrong_id_stops_the_server_from_starting() {
    let dir = tempfile::tempdir().expect("dir");
    let manifest = dir.path().join("operations.json");
    std::fs::write(&manifest, json!({ "0000": DOC }).to_string()).expect("write");
    let mut settings = leadgate::config::Settings {
        persisted_queries: "allowlist".into(),
        persisted_queries_file: Some(manifest),
        ..Default::default()
    };
    settings.validate().expect("the settings themselves are fine");
    let (store, _guard) = crate::helpers::fresh_store(backends()[0]).await;
    settings.database_url = "sqlite::memory:".into();
    let services = leadgate::app::services(&settings, store).expect("services");
    let err = leadgate::app::edge(&settings, &services)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("not the SHA-256"), "{err}");
}

#[tokio::test]
async fn after_redis_is_flushed_a_hash_is_not_found_until_the_client_sends_the_query_again() {
    let Some(redis) = redis_url_or_skip() else { return };
    // a database of its own, so flushing it touches no other test
    let mut url = url::Url::parse(&redis).expect("URL");
    url.set_path("/12");
    let url = url.to_string();
    let a = spawn_app_with(backends()[0], |s| on_redis(s, &url)).await;
    let b = spawn_second_app(&a).await;
    let token = a.token(Role::Viewer);
    assert_eq!(a.post(Some(&token), with_hash(DOC)).await.0, 200);
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
    let _: () = redis::cmd("FLUSHDB").query_async(&mut conn).await.expect("flush");
    // A still knows it in memory; B never saw it and Redis forgot it
    assert_eq!(a.post(Some(&token), by_hash(DOC)).await.0, 200);
    let (_, body) = b.post(Some(&token), by_hash(DOC)).await;
    assert_eq!(first_code(&body), "PERSISTED_QUERY_NOT_FOUND", "{body}");
    // the client's answer to NotFound: the query with its hash, then the hash works again
    assert_eq!(b.post(Some(&token), with_hash(DOC)).await.0, 200);
    assert_eq!(b.post(Some(&token), by_hash(DOC)).await.0, 200);
}
