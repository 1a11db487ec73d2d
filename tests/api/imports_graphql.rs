//! `importLeads` over HTTP: real `multipart/form-data` requests (GraphQL multipart request
//! spec), the job that runs the import, the `Import` node and its error report, and every way
//! such a request can be malformed.

use crate::helpers::{TestApp, backends, first_code, poll_until, spawn_app, spawn_app_with};
use leadgate::domain::Role;
use serde_json::{Value, json};
use std::time::Duration;

const BOUNDARY: &str = "leadgate-test-7d1a9c";

const IMPORT: &str = "mutation($file: Upload!, $input: ImportLeadsInput) {
  importLeads(file: $file, input: $input) { import { id status sourceName format onDuplicate dryRun } }
}";

const IMPORT_FIELDS: &str = "id status format onDuplicate dryRun sourceName rowsDone error
  createdAt startedAt finishedAt
  counts { created updated unchanged skippedExisting duplicatesInFile invalid blocked }";

/// Two good rows, one bad email, one repeat of the first email.
const CSV: &str = "email,first_name,company_name\n\
ann@acme.io,Ann,Acme\n\
not-an-email,Bob,Acme\n\
cat@acme.io,Cat,Acme\n\
ann@acme.io,Annie,Acme\n";

/// One part of a multipart body: name, file name (for file parts) and bytes.
struct Part<'a>(&'a str, Option<&'a str>, &'a [u8]);

/// A `multipart/form-data` body made of `parts`, in order.
fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for Part(name, file_name, data) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match file_name {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                     Content-Type: text/csv\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// The operations of an `importLeads` call with `input`.
fn operations(input: Value) -> Vec<u8> {
    json!({"query": IMPORT, "variables": {"file": null, "input": input}})
        .to_string()
        .into_bytes()
}

const MAP: &[u8] = br#"{"0": ["variables.file"]}"#;

/// POSTs a multipart body to /graphql as `role`, with the CSRF header uploads need; returns
/// (status, JSON body).
async fn post_multipart(app: &TestApp, role: Role, body: Vec<u8>) -> (u16, Value) {
    let res = app
        .client
        .post(app.url("/graphql"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .header("accept", "application/graphql-response+json")
        .header("x-leadgate-csrf", "1")
        .bearer_auth(app.token(role))
        .body(body)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, json)
}

/// Uploads `data` as `file_name` with `input`; returns the queued import.
async fn upload(app: &TestApp, file_name: &str, data: &[u8], input: Value) -> Value {
    let ops = operations(input);
    let body = multipart(&[
        Part("operations", None, &ops),
        Part("map", None, MAP),
        Part("0", Some(file_name), data),
    ]);
    let (status, body) = post_multipart(app, Role::Member, body).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    body["data"]["importLeads"]["import"].clone()
}

/// The import behind a global id, through `node(id:)`.
async fn node(app: &TestApp, id: &str) -> Value {
    let query = format!("query($id: ID!) {{ node(id: $id) {{ ... on Import {{ {IMPORT_FIELDS} }} }} }}");
    app.gql(Role::Viewer, &query, json!({"id": id})).await["node"].clone()
}

async fn finished(app: &TestApp, id: &str) -> Value {
    poll_until(Duration::from_secs(20), "the import to finish", || async {
        let import = node(app, id).await;
        matches!(import["status"].as_str(), Some("SUCCEEDED" | "FAILED")).then_some(import)
    })
    .await
}

async fn import_count(app: &TestApp) -> usize {
    let data = app
        .gql(
            Role::Viewer,
            "{ imports(first: 100) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    data["imports"]["edges"].as_array().unwrap().len()
}

#[tokio::test]
async fn an_uploaded_csv_is_imported_by_a_job_with_counts_and_an_error_report() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let queued = upload(&app, "dir/leads.csv", CSV.as_bytes(), json!(null)).await;
        assert_eq!(queued["sourceName"], "leads.csv", "{queued}");
        assert_eq!(queued["format"], "CSV");
        assert_eq!(queued["onDuplicate"], "SKIP");
        assert_eq!(queued["dryRun"], false);
        let id = queued["id"].as_str().unwrap().to_owned();

        let done = finished(&app, &id).await;
        assert_eq!(done["status"], "SUCCEEDED", "{done}");
        assert_eq!(done["rowsDone"], 4);
        assert_eq!(
            done["counts"],
            json!({"created": 2, "updated": 0, "unchanged": 0, "skippedExisting": 0,
                   "duplicatesInFile": 1, "invalid": 1, "blocked": 0})
        );
        assert!(
            done["startedAt"].is_string() && done["finishedAt"].is_string(),
            "{done}"
        );
        assert_eq!(done["error"], Value::Null);

        // the error report, one page at a time
        let query = "query($id: ID!, $after: String) { node(id: $id) { ... on Import {
            errors(first: 1, after: $after) { edges { cursor node { row column reason } }
              pageInfo { hasNextPage endCursor } } } } }";
        let page = app.gql(Role::Viewer, query, json!({"id": id})).await;
        let errors = &page["node"]["errors"];
        assert_eq!(errors["edges"].as_array().unwrap().len(), 1, "{errors}");
        let row = &errors["edges"][0]["node"];
        assert_eq!(row["row"], 2, "{row}");
        assert_eq!(row["column"], "email", "{row}");
        assert!(!row["reason"].as_str().unwrap().contains("not-an-email"), "{row}");
        let after = errors["pageInfo"]["endCursor"].clone();
        let rest = app
            .gql(Role::Viewer, query, json!({"id": id, "after": after}))
            .await;
        assert_eq!(rest["node"]["errors"]["edges"], json!([]), "{rest}");
        assert_eq!(rest["node"]["errors"]["pageInfo"]["hasNextPage"], false);

        // the leads are there, the repeated email once
        let leads = app
            .gql(
                Role::Viewer,
                "{ leads(first: 10) { edges { node { email firstName } } } }",
                json!({}),
            )
            .await;
        let mut emails: Vec<&str> = leads["leads"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["email"].as_str().unwrap())
            .collect();
        emails.sort();
        assert_eq!(emails, ["ann@acme.io", "cat@acme.io"]);

        // `imports` lists it, newest first, and another workspace cannot see it
        let second = upload(&app, "more.csv", b"email\nzed@acme.io\n", json!({"dryRun": true})).await;
        assert_eq!(second["dryRun"], true);
        let list = app
            .gql(
                Role::Viewer,
                "{ imports(first: 1) { edges { node { id } } pageInfo { hasNextPage endCursor } } }",
                json!({}),
            )
            .await;
        assert_eq!(list["imports"]["edges"][0]["node"]["id"], second["id"], "{list}");
        assert_eq!(list["imports"]["pageInfo"]["hasNextPage"], true);
        let older = app
            .gql(
                Role::Viewer,
                "query($after: String) { imports(first: 5, after: $after) { edges { node { id } } } }",
                json!({"after": list["imports"]["pageInfo"]["endCursor"]}),
            )
            .await;
        assert_eq!(
            older["imports"]["edges"],
            json!([{"node": {"id": id}}]),
            "{older}"
        );
        let token = app.token_in(&app.other, Role::Admin);
        let (_, body) = app
            .post(
                Some(&token),
                json!({"query": "query($id: ID!) { node(id: $id) { id } }", "variables": {"id": id}}),
            )
            .await;
        assert_eq!(body["data"]["node"], Value::Null, "{body}");
    }
}

#[tokio::test]
async fn input_options_reach_the_import() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let data = b"{\"mail\": \"dan@acme.io\", \"phone\": \"030 1234567\"}\n";
        let queued = upload(
            &app,
            "upload.bin",
            data,
            json!({"format": "NDJSON", "onDuplicate": "OVERWRITE",
                   "mapping": [{"column": "mail", "field": "email"}], "defaultRegion": "DE"}),
        )
        .await;
        assert_eq!(queued["format"], "NDJSON");
        assert_eq!(queued["onDuplicate"], "OVERWRITE");
        let done = finished(&app, queued["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "SUCCEEDED", "{done}");
        assert_eq!(done["counts"]["created"], 1, "{done}");
        assert_eq!(done["counts"]["invalid"], 0, "{done}");
    }
}

/// Asserts a refused request: its status, its code, and that no import exists.
async fn refused(app: &TestApp, role: Role, body: Vec<u8>, status: u16, code: &str) {
    let (got, body) = post_multipart(app, role, body).await;
    assert_eq!(got, status, "{body}");
    assert_eq!(first_code(&body), code, "{body}");
    assert!(!body["errors"][0]["message"].as_str().unwrap().is_empty());
    assert_eq!(import_count(app).await, 0, "an import was created: {body}");
}

#[tokio::test]
async fn malformed_upload_requests_are_refused_and_import_nothing() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let ops = operations(json!(null));
        let csv = CSV.as_bytes();
        // no `map`
        let body = multipart(&[Part("operations", None, &ops), Part("0", Some("a.csv"), csv)]);
        refused(&app, Role::Member, body, 400, "BAD_USER_INPUT").await;
        // `map` not JSON
        let body = multipart(&[
            Part("operations", None, &ops),
            Part("map", None, b"variables.file"),
            Part("0", Some("a.csv"), csv),
        ]);
        refused(&app, Role::Member, body, 400, "BAD_USER_INPUT").await;
        // `map` names a part that is not there
        let body = multipart(&[
            Part("operations", None, &ops),
            Part("map", None, br#"{"1": ["variables.file"]}"#),
            Part("0", Some("a.csv"), csv),
        ]);
        refused(&app, Role::Member, body, 400, "BAD_USER_INPUT").await;
        // `operations` not JSON
        let body = multipart(&[
            Part("operations", None, b"mutation { importLeads }"),
            Part("map", None, MAP),
            Part("0", Some("a.csv"), csv),
        ]);
        refused(&app, Role::Member, body, 400, "BAD_USER_INPUT").await;
        // no `operations` at all
        let body = multipart(&[Part("map", None, MAP), Part("0", Some("a.csv"), csv)]);
        refused(&app, Role::Member, body, 400, "BAD_USER_INPUT").await;
        // not multipart at all, though it says so
        refused(&app, Role::Member, b"garbage".to_vec(), 400, "BAD_USER_INPUT").await;
        // an enum value that does not exist
        let bad_enum = operations(json!({"onDuplicate": "SOMETIMES"}));
        let body = multipart(&[
            Part("operations", None, &bad_enum),
            Part("map", None, MAP),
            Part("0", Some("a.csv"), csv),
        ]);
        refused(&app, Role::Member, body, 400, "GRAPHQL_VALIDATION_FAILED").await;
        // a format the file name does not tell
        let body = multipart(&[
            Part("operations", None, &ops),
            Part("map", None, MAP),
            Part("0", Some("leads.txt"), csv),
        ]);
        refused(&app, Role::Member, body, 200, "BAD_USER_INPUT").await;
        // a mapping to a field that does not exist, a region that does not exist
        for input in [
            json!({"mapping": [{"column": "email", "field": "shoeSize"}]}),
            json!({"defaultRegion": "XX"}),
        ] {
            let ops = operations(input);
            let body = multipart(&[
                Part("operations", None, &ops),
                Part("map", None, MAP),
                Part("0", Some("a.csv"), csv),
            ]);
            refused(&app, Role::Member, body, 200, "BAD_USER_INPUT").await;
        }
        // viewers cannot import
        let body = multipart(&[
            Part("operations", None, &ops),
            Part("map", None, MAP),
            Part("0", Some("a.csv"), csv),
        ]);
        refused(&app, Role::Viewer, body, 200, "FORBIDDEN").await;
    }
}

#[tokio::test]
async fn uploads_over_the_limit_are_413_while_json_keeps_its_own_limit() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| {
            s.import_max_upload_mb = 1;
            s.max_body_bytes = 4096;
        })
        .await;
        let ops = operations(json!(null));
        let big = format!("email\n{}", "x@acme.io\n".repeat(110_000));
        assert!(big.len() > 1 << 20);
        let body = multipart(&[
            Part("operations", None, &ops),
            Part("map", None, MAP),
            Part("0", Some("big.csv"), big.as_bytes()),
        ]);
        refused(&app, Role::Member, body, 413, "BAD_USER_INPUT").await;
        // a multipart upload larger than the JSON limit is fine
        let mid = format!("email\n{}", "y@acme.io\n".repeat(1_000));
        assert!(mid.len() > 4096);
        let queued = upload(&app, "mid.csv", mid.as_bytes(), json!(null)).await;
        let done = finished(&app, queued["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "SUCCEEDED", "{done}");
        assert_eq!(done["rowsDone"], 1_000);
    }
}

#[tokio::test]
async fn import_progress_streams_snapshots_until_the_import_finished() {
    use crate::helpers::Protocol;
    for backend in backends() {
        let app = spawn_app(backend).await;
        // three chunks of rows, so a subscriber that comes early sees progress
        let rows = 20_000;
        let mut csv = String::from("email\n");
        for i in 0..rows {
            csv.push_str(&format!("p{i}@acme.io\n"));
        }
        let queued = upload(&app, "many.csv", csv.as_bytes(), json!(null)).await;
        let id = queued["id"].as_str().unwrap().to_owned();
        let mut client = app.ws_ready(Protocol::TransportWs, Role::Viewer).await;
        client
            .start(
                "p",
                "subscription($id: ID!) { importProgress(id: $id) { id status rowsDone counts { created } } }",
                json!({"id": id}),
            )
            .await;
        let mut last_rows = 0;
        let last = loop {
            let message = client.recv().await;
            assert_eq!(message["id"], "p", "{message}");
            if message["type"] == "complete" {
                panic!("completed before a finished snapshot");
            }
            assert_eq!(message["type"], "next", "{message}");
            let import = message["payload"]["data"]["importProgress"].clone();
            assert_eq!(import["id"], id.as_str(), "{message}");
            let done = import["rowsDone"].as_u64().unwrap();
            assert!(done >= last_rows, "rowsDone went back: {message}");
            last_rows = done;
            if import["status"] == "SUCCEEDED" {
                break import;
            }
        };
        assert_eq!(last["rowsDone"], rows);
        assert_eq!(last["counts"]["created"], rows);
        let message = client.recv().await;
        assert_eq!(message["type"], "complete", "{message}");
        assert_eq!(message["id"], "p");

        // an id that is not an import's, or one of another workspace's, fails the operation
        let mut other = app.ws(Protocol::TransportWs).await;
        other.init(&app.token_in(&app.other, Role::Admin)).await;
        other
            .start(
                "x",
                "subscription($id: ID!) { importProgress(id: $id) { id } }",
                json!({"id": id}),
            )
            .await;
        let message = other.recv().await;
        assert_eq!(message["type"], "next", "{message}");
        assert_eq!(
            message["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{message}"
        );
    }
}

#[tokio::test]
async fn the_error_report_downloads_as_csv_for_the_workspace_only() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let csv = "email,first_name,score\nbad-one,A,1\nok@acme.io,B,2\nbad-two,\"C, jr\",x\n";
        let queued = upload(&app, "report.csv", csv.as_bytes(), json!(null)).await;
        let id = queued["id"].as_str().unwrap().to_owned();
        finished(&app, &id).await;
        let data = app
            .gql(
                Role::Viewer,
                "query($id: ID!) { node(id: $id) { ... on Import { errorReportUrl
                   errors(first: 1000) { edges { node { row column reason } } } } } }",
                json!({"id": id}),
            )
            .await;
        let url = data["node"]["errorReportUrl"].as_str().unwrap().to_owned();
        let edges = data["node"]["errors"]["edges"].as_array().unwrap().clone();
        assert!(edges.len() >= 2, "{data}");
        let mut expected = csv::Writer::from_writer(Vec::new());
        expected.write_record(["row", "column", "reason"]).unwrap();
        for e in &edges {
            let n = &e["node"];
            expected
                .write_record([
                    n["row"].to_string(),
                    n["column"].as_str().unwrap_or_default().to_owned(),
                    n["reason"].as_str().unwrap().to_owned(),
                ])
                .unwrap();
        }
        let expected = expected.into_inner().unwrap();

        let get = |token: Option<String>| {
            let mut req = app.client.get(app.url(&url));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send()
        };
        let res = get(Some(app.token(Role::Viewer))).await.unwrap();
        assert_eq!(res.status().as_u16(), 200);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        assert_eq!(res.bytes().await.unwrap().to_vec(), expected);

        let res = get(None).await.unwrap();
        assert_eq!(res.status().as_u16(), 401);
        let res = get(Some(app.token_in(&app.other, Role::Admin))).await.unwrap();
        assert_eq!(res.status().as_u16(), 404);
        let res = app
            .client
            .get(app.url("/imports/not-an-id/errors.csv"))
            .bearer_auth(app.token(Role::Admin))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 404);
    }
}
