//! Streamed exports: `GET /export/leads.csv` and `.ndjson`, and `leadgate export`. Bodies are
//! parsed back and compared field by field with what GraphQL returns for the same leads; the
//! batch size is 3 so every export spans several statements.

use crate::helpers::{TestApp, backends, metric, spawn_app_with};
use leadgate::domain::Role;
use serde_json::{Value, json};
use std::collections::HashMap;

const BATCH: usize = 3;

const LEAD_COLUMNS: [&str; 20] = [
    "id",
    "email",
    "first_name",
    "last_name",
    "title",
    "company_name",
    "company_domain",
    "phone",
    "linkedin_url",
    "country",
    "time_zone",
    "source",
    "status",
    "owner",
    "score",
    "tags",
    "custom_fields",
    "created_at",
    "updated_at",
    "archived_at",
];

const LEADS: &str = "query($filter: LeadFilter) { leads(first: 100, filter: $filter) { edges { node {
  id email firstName lastName title companyName companyDomain phone linkedinUrl country source
  status owner score tags customFields createdAt updatedAt archivedAt } } } }";

async fn spawn(backend: crate::helpers::Backend) -> TestApp {
    spawn_app_with(backend, |s| s.export_batch_size = BATCH).await
}

/// The UUID inside a Relay global id.
fn uuid_of(id: &str) -> String {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id)
        .expect("ids are base64");
    let text = String::from_utf8(raw).unwrap();
    text.strip_prefix("Lead:").expect("a Lead id").to_owned()
}

fn full_lead(i: usize, prefix: &str) -> Value {
    json!({
        "email": format!("{prefix}{i}@acme.example"),
        "firstName": format!("Ann, \"{i}\""),
        "lastName": format!("Lee; \"L\" {i}"),
        "title": "VP Sales",
        "companyName": "Acme, Inc.",
        "companyDomain": "acme.example",
        "phone": "+14155550100",
        "linkedinUrl": format!("https://www.linkedin.com/in/ann-lee-{i}"),
        "country": "DE",
        "source": "webinar",
        "status": if i.is_multiple_of(2) { "QUALIFIED" } else { "NEW" },
        "owner": "owner-1",
        "score": i as i32 * 10,
        "tags": ["vip", format!("t{i}")],
        "customFields": {"plan": "pro", "seats": i, "nested": {"a": [1, 2]}},
    })
}

/// `GET path` with a bearer token when given.
async fn get(app: &TestApp, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = app.client.get(app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("request")
}

/// The body of a successful export, checking its headers.
async fn export_ok(app: &TestApp, role: Role, path: &str) -> String {
    let response = get(app, path, Some(&app.token(role))).await;
    assert_eq!(response.status(), 200, "{path}");
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    let (ext, ctype) = if path.contains(".csv") {
        ("csv", "text/csv; charset=utf-8")
    } else {
        ("ndjson", "application/x-ndjson")
    };
    assert_eq!(headers["content-type"], ctype);
    let disposition = headers["content-disposition"].to_str().unwrap();
    let date = chrono::Utc::now().format("%Y-%m-%d");
    assert_eq!(
        disposition,
        format!("attachment; filename=\"leads-acme-{date}.{ext}\"")
    );
    body
}

fn parse_csv(body: &str) -> (Vec<String>, Vec<HashMap<String, String>>) {
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = reader
        .records()
        .map(|r| {
            let r = r.expect("a well-formed CSV record");
            header.iter().cloned().zip(r.iter().map(str::to_owned)).collect()
        })
        .collect();
    (header, rows)
}

fn parse_ndjson(body: &str) -> Vec<Value> {
    assert!(body.is_empty() || body.ends_with('\n'), "lines end with \\n");
    body.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn same_instant(exported: &str, graphql: &Value) -> bool {
    let a = chrono::DateTime::parse_from_rfc3339(exported).unwrap();
    let b = chrono::DateTime::parse_from_rfc3339(graphql.as_str().unwrap()).unwrap();
    a == b && exported.ends_with('Z') && exported.len() == "2026-11-28T10:00:00.123456Z".len()
}

/// The GraphQL view of the leads `filter` selects, by UUID.
async fn graphql_leads(app: &TestApp, filter: Value) -> HashMap<String, Value> {
    let data = app.gql(Role::Viewer, LEADS, json!({ "filter": filter })).await;
    data["leads"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (uuid_of(e["node"]["id"].as_str().unwrap()), e["node"].clone()))
        .collect()
}

/// Every CSV row equals its lead as GraphQL returns it, and the rows are exactly `expected`.
fn check_csv(rows: &[HashMap<String, String>], expected: &HashMap<String, Value>) {
    assert_eq!(rows.len(), expected.len(), "row count");
    for row in rows {
        let lead = expected
            .get(&row["id"])
            .unwrap_or_else(|| panic!("{} is not among the filtered leads", row["id"]));
        for (column, field) in [
            ("email", "email"),
            ("first_name", "firstName"),
            ("last_name", "lastName"),
            ("title", "title"),
            ("company_name", "companyName"),
            ("company_domain", "companyDomain"),
            ("phone", "phone"),
            ("linkedin_url", "linkedinUrl"),
            ("country", "country"),
            ("source", "source"),
            ("status", "status"),
            ("owner", "owner"),
        ] {
            assert_eq!(
                row[column],
                lead[field].as_str().unwrap_or_default(),
                "{column} of {lead}"
            );
        }
        assert_eq!(row["score"], lead["score"].to_string());
        let tags: Value = serde_json::from_str(&row["tags"]).unwrap();
        assert_eq!(tags, lead["tags"]);
        let custom: Value = serde_json::from_str(&row["custom_fields"]).unwrap();
        assert_eq!(custom, lead["customFields"]);
        assert!(same_instant(&row["created_at"], &lead["createdAt"]), "{row:?}");
        assert!(same_instant(&row["updated_at"], &lead["updatedAt"]), "{row:?}");
        match &lead["archivedAt"] {
            Value::Null => assert_eq!(row["archived_at"], ""),
            at => assert!(same_instant(&row["archived_at"], at)),
        }
    }
}

fn check_ndjson(lines: &[Value], expected: &HashMap<String, Value>) {
    assert_eq!(lines.len(), expected.len(), "line count");
    for line in lines {
        let object = line.as_object().unwrap();
        assert_eq!(
            object.keys().collect::<Vec<_>>().len(),
            LEAD_COLUMNS.len(),
            "{line}"
        );
        let lead = &expected[line["id"].as_str().unwrap()];
        for (key, field) in [
            ("email", "email"),
            ("first_name", "firstName"),
            ("last_name", "lastName"),
            ("title", "title"),
            ("company_name", "companyName"),
            ("company_domain", "companyDomain"),
            ("phone", "phone"),
            ("linkedin_url", "linkedinUrl"),
            ("country", "country"),
            ("source", "source"),
            ("status", "status"),
            ("owner", "owner"),
            ("score", "score"),
            ("tags", "tags"),
            ("custom_fields", "customFields"),
        ] {
            assert_eq!(line[key], lead[field], "{key} of {lead}");
        }
        assert!(same_instant(
            line["created_at"].as_str().unwrap(),
            &lead["createdAt"]
        ));
        assert!(same_instant(
            line["updated_at"].as_str().unwrap(),
            &lead["updatedAt"]
        ));
        match &lead["archivedAt"] {
            Value::Null => assert_eq!(line["archived_at"], Value::Null),
            at => assert!(same_instant(line["archived_at"].as_str().unwrap(), at)),
        }
    }
}

/// Seven leads with every field, one sparse lead, one archived lead, and a lead in the other
/// workspace. Returns the id of the archived one.
async fn seed(app: &TestApp) -> String {
    let mut leads: Vec<Value> = (0..8).map(|i| full_lead(i, "lead")).collect();
    leads.push(json!({"email": "sparse@acme.example"}));
    let ids = app.create_leads(leads).await;
    let data = app
        .gql(
            Role::Member,
            "mutation($id: ID!) { archiveLead(input: {id: $id}) { lead { archivedAt } } }",
            json!({ "id": ids[7] }),
        )
        .await;
    assert!(data["archiveLead"]["lead"]["archivedAt"].is_string(), "{data}");
    let (status, _) = app
        .post(
            Some(&app.token_in(&app.other, Role::Member)),
            json!({"query": "mutation { createLead(input: {email: \"lead0@acme.example\", firstName: \"Other\"}) { lead { id } } }"}),
        )
        .await;
    assert_eq!(status, 200);
    uuid_of(&ids[7])
}

fn query(filter: &Value) -> String {
    format!(
        "filter={}",
        url::form_urlencoded::byte_serialize(filter.to_string().as_bytes()).collect::<String>()
    )
}

#[tokio::test]
async fn csv_and_ndjson_hold_exactly_the_filtered_leads_with_every_field() {
    for backend in backends() {
        let app = spawn(backend).await;
        let archived = seed(&app).await;
        for filter in [
            json!({}),
            json!({"status": ["QUALIFIED"]}),
            json!({"search": "ann, \"3"}),
            json!({"archived": true}),
            json!({"tags": {"allOf": ["vip"]}, "score": {"min": 20}}),
        ] {
            let expected = graphql_leads(&app, filter.clone()).await;
            assert!(!expected.is_empty(), "{filter} selects some leads");
            let csv = export_ok(
                &app,
                Role::Viewer,
                &format!("/export/leads.csv?{}", query(&filter)),
            )
            .await;
            let (header, rows) = parse_csv(&csv);
            assert_eq!(header, LEAD_COLUMNS, "{backend:?}");
            check_csv(&rows, &expected);
            // ordered by creation, then id: the same order in every export
            let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str()).collect();
            let mut sorted = rows.clone();
            sorted.sort_by(|a, b| (&a["created_at"], &a["id"]).cmp(&(&b["created_at"], &b["id"])));
            assert_eq!(ids, sorted.iter().map(|r| r["id"].as_str()).collect::<Vec<_>>());

            let ndjson = export_ok(
                &app,
                Role::Member,
                &format!("/export/leads.ndjson?{}", query(&filter)),
            )
            .await;
            check_ndjson(&parse_ndjson(&ndjson), &expected);
        }
        // the default excludes archived leads; `archived: true` is only them
        let all = export_ok(&app, Role::Admin, "/export/leads.csv").await;
        let (_, rows) = parse_csv(&all);
        assert_eq!(
            rows.len(),
            8,
            "{backend:?}: 8 active leads, in batches of {BATCH}"
        );
        assert!(rows.iter().all(|r| r["id"] != archived));
        let only = export_ok(
            &app,
            Role::Admin,
            &format!("/export/leads.csv?{}", query(&json!({"archived": true}))),
        )
        .await;
        let (_, rows) = parse_csv(&only);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["id"], archived);
        assert!(!rows[0]["archived_at"].is_empty());
        // the sparse lead: absent values are empty cells and nulls
        let sparse = json!({"search": "sparse@"});
        let (_, rows) = parse_csv(
            &export_ok(
                &app,
                Role::Viewer,
                &format!("/export/leads.csv?{}", query(&sparse)),
            )
            .await,
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["first_name"], "");
        assert_eq!(rows[0]["tags"], "[]");
        assert_eq!(rows[0]["custom_fields"], "{}");
        assert_eq!(rows[0]["score"], "0");
        let lines = parse_ndjson(
            &export_ok(
                &app,
                Role::Viewer,
                &format!("/export/leads.ndjson?{}", query(&sparse)),
            )
            .await,
        );
        assert_eq!(lines[0]["first_name"], Value::Null);
        assert_eq!(lines[0]["phone"], Value::Null);
        assert_eq!(lines[0]["tags"], json!([]));
        assert_eq!(lines[0]["custom_fields"], json!({}));
        assert_eq!(lines[0]["score"], json!(0));

        let metrics = app.metrics().await;
        assert!(
            metric(&metrics, r#"leadgate_export_rows_total{format="csv"}"#) >= 8.0,
            "{metrics}"
        );
    }
}

#[tokio::test]
async fn an_empty_result_still_has_the_header() {
    for backend in backends() {
        let app = spawn(backend).await;
        seed(&app).await;
        let nobody = json!({"search": "no such lead anywhere"});
        let csv = export_ok(
            &app,
            Role::Viewer,
            &format!("/export/leads.csv?{}", query(&nobody)),
        )
        .await;
        assert_eq!(csv, format!("{}\r\n", LEAD_COLUMNS.join(",")), "{backend:?}");
        let ndjson = export_ok(
            &app,
            Role::Viewer,
            &format!("/export/leads.ndjson?{}", query(&nobody)),
        )
        .await;
        assert_eq!(ndjson, "");
    }
}

#[tokio::test]
async fn enriched_columns_come_from_stored_records_with_provenance() {
    for backend in backends() {
        let app = spawn(backend).await;
        app.configure_provider(json!({
            "provider": "SANDBOX",
            "options": {"latencyMs": 0, "missRate": 0.0, "creditsPerHit": 1},
        }))
        .await;
        app.set_waterfall("COMPANY", &["SANDBOX"]).await;
        app.set_waterfall("PERSON", &["SANDBOX"]).await;
        let ids = app
            .create_leads(vec![
                json!({"email": "ann@initech.example"}),
                json!({"email": "bob@umbrella.example"}),
            ])
            .await;
        // enrich the first lead only, through GraphQL
        let data = app
            .gql(
                Role::Member,
                "query($id: ID!) { lead(id: $id) { company { industry name } person { title } } }",
                json!({ "id": ids[0] }),
            )
            .await;
        let industry = data["lead"]["company"]["industry"].as_str().unwrap().to_owned();
        let title = data["lead"]["person"]["title"].as_str().unwrap().to_owned();
        let credits = |m: &str| metric(m, r#"leadgate_provider_credits_total{provider="sandbox"}"#);
        let spent_before = credits(&app.metrics().await);

        let csv = export_ok(
            &app,
            Role::Viewer,
            "/export/leads.csv?include=company,person&provenance=true",
        )
        .await;
        let (header, rows) = parse_csv(&csv);
        assert_eq!(&header[..20], LEAD_COLUMNS);
        assert_eq!(
            header[20..24],
            [
                "company.name",
                "company.name.provider",
                "company.name.fetched_at",
                "company.name.confidence"
            ]
        );
        assert!(header.contains(&"person.title.confidence".to_owned()));
        let by_id: HashMap<&str, &HashMap<String, String>> =
            rows.iter().map(|r| (r["id"].as_str(), r)).collect();
        let enriched = by_id[uuid_of(&ids[0]).as_str()];
        assert_eq!(enriched["company.industry"], industry, "{backend:?}");
        assert_eq!(enriched["person.title"], title);
        assert_eq!(enriched["company.industry.provider"], "sandbox");
        chrono::DateTime::parse_from_rfc3339(&enriched["company.industry.fetched_at"]).unwrap();
        let confidence: f64 = enriched["person.title.confidence"].parse().unwrap();
        assert!((0.0..=1.0).contains(&confidence));
        let plain = by_id[uuid_of(&ids[1]).as_str()];
        assert_eq!(plain["company.industry"], "");
        assert_eq!(plain["company.industry.provider"], "");

        let ndjson = export_ok(
            &app,
            Role::Viewer,
            "/export/leads.ndjson?include=company&provenance=true",
        )
        .await;
        let lines = parse_ndjson(&ndjson);
        let line = lines.iter().find(|l| l["id"] == uuid_of(&ids[0])).unwrap();
        let cell = &line["enrichment"]["company"]["industry"];
        assert_eq!(cell["value"], industry.as_str());
        assert_eq!(cell["provider"], "sandbox");
        assert!(cell["confidence"].is_number());
        assert!(line["enrichment"].get("person").is_none());
        let other = lines.iter().find(|l| l["id"] == uuid_of(&ids[1])).unwrap();
        assert_eq!(other["enrichment"]["company"], json!({}));
        // without provenance, only values
        let ndjson = export_ok(&app, Role::Viewer, "/export/leads.ndjson?include=company").await;
        let line = parse_ndjson(&ndjson)
            .into_iter()
            .find(|l| l["id"] == uuid_of(&ids[0]))
            .unwrap();
        assert_eq!(
            line["enrichment"]["company"]["industry"],
            json!({ "value": industry })
        );
        // an export never calls a provider: the second lead stays unenriched and nothing is paid
        assert_eq!(credits(&app.metrics().await), spent_before, "{backend:?}");
    }
}

#[tokio::test]
async fn exports_need_a_token_a_role_that_may_export_and_stay_in_the_workspace() {
    for backend in backends() {
        let app = spawn(backend).await;
        seed(&app).await;
        for path in ["/export/leads.csv", "/export/leads.ndjson"] {
            let response = get(&app, path, None).await;
            assert_eq!(response.status(), 401, "{backend:?} {path}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");

            let response = get(&app, path, Some("not-a-token")).await;
            assert_eq!(response.status(), 401);

            let response = get(&app, path, Some(&app.token(Role::Partner))).await;
            assert_eq!(response.status(), 403);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN", "{body}");
        }
        for role in [Role::Admin, Role::Member, Role::Viewer] {
            let response = get(&app, "/export/leads.csv", Some(&app.token(role))).await;
            assert_eq!(response.status(), 200, "{role:?}");
        }
        // the other workspace sees its one lead, never acme's
        let response = get(
            &app,
            "/export/leads.ndjson",
            Some(&app.token_in(&app.other, Role::Viewer)),
        )
        .await;
        assert_eq!(response.status(), 200);
        let lines = parse_ndjson(&response.text().await.unwrap());
        assert_eq!(lines.len(), 1, "{backend:?}");
        assert_eq!(lines[0]["first_name"], "Other");
        let acme = graphql_leads(&app, json!({})).await;
        assert!(!acme.contains_key(lines[0]["id"].as_str().unwrap()));
    }
}

#[tokio::test]
async fn malformed_parameters_are_refused_with_bad_user_input() {
    for backend in backends() {
        let app = spawn(backend).await;
        let token = app.token(Role::Viewer);
        for (query, says) in [
            ("filter=%7Bstatus%3A", "not valid JSON"),
            ("filter=%7B%22colour%22%3A%22red%22%7D", "colour"),
            ("filter=%7B%22status%22%3A%5B%22HOT%22%5D%7D", "HOT"),
            ("filter=%5B1%5D", "LeadFilter"),
            ("filter=%7B%22score%22%3A%7B%22min%22%3A500%7D%7D", "score"),
            ("include=company,social", "social"),
            ("provenance=maybe", "provenance"),
            ("colour=red", "colour"),
            ("include=company&include=person", "more than once"),
        ] {
            for path in ["/export/leads.csv", "/export/leads.ndjson"] {
                let response = get(&app, &format!("{path}?{query}"), Some(&token)).await;
                assert_eq!(response.status(), 400, "{backend:?} {path}?{query}");
                assert!(
                    response.headers()["content-type"]
                        .to_str()
                        .unwrap()
                        .starts_with("application/json")
                );
                let body: Value = response.json().await.unwrap();
                let error = &body["errors"][0];
                assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{body}");
                assert!(
                    error["message"].as_str().unwrap().contains(says),
                    "{query}: {body}"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_cli_writes_the_same_bytes_as_the_endpoint() {
    const BIN: &str = env!("CARGO_BIN_EXE_leadgate");
    for backend in backends() {
        let app = spawn(backend).await;
        seed(&app).await;
        let dir = tempfile::tempdir().unwrap();
        let filter = json!({"status": ["QUALIFIED", "NEW"], "tags": {"anyOf": ["vip"]}});
        for format in ["csv", "ndjson"] {
            let http = export_ok(
                &app,
                Role::Admin,
                &format!("/export/leads.{format}?{}", query(&filter)),
            )
            .await;
            let out = dir.path().join(format!("out.{format}"));
            let mut cmd = tokio::process::Command::new(BIN);
            for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LEADGATE_")) {
                cmd.env_remove(k);
            }
            let output = cmd
                .current_dir(dir.path())
                .env("LEADGATE_LOG", "warn")
                .args([
                    "export",
                    "--database-url",
                    &app.settings.database_url,
                    "--workspace",
                    "acme",
                    "--format",
                    format,
                    "--filter",
                    &filter.to_string(),
                    "--export-batch-size",
                    "2",
                    "--out",
                    out.to_str().unwrap(),
                ])
                .output()
                .await
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "{backend:?}: {stderr}");
            assert!(stderr.contains("exported 7 leads"), "{stderr}");
            assert_eq!(
                std::fs::read_to_string(&out).unwrap(),
                http,
                "{backend:?} {format}"
            );
            assert!(!dir.path().join(format!("out.{format}.partial")).exists());
        }
        // stdout, and a malformed filter refused with the GraphQL message
        let output = tokio::process::Command::new(BIN)
            .env("LEADGATE_LOG", "warn")
            .args([
                "export",
                "--database-url",
                &app.settings.database_url,
                "--workspace",
                "acme",
                "--filter",
                r#"{"colour":"red"}"#,
            ])
            .output()
            .await
            .unwrap();
        assert!(!output.status.success());
        assert!(output.stdout.is_empty());
        assert!(String::from_utf8_lossy(&output.stderr).contains("colour"));
        let output = tokio::process::Command::new(BIN)
            .env("LEADGATE_LOG", "warn")
            .args([
                "export",
                "--database-url",
                &app.settings.database_url,
                "--workspace",
                "acme",
                "--format",
                "ndjson",
            ])
            .output()
            .await
            .unwrap();
        assert!(output.status.success());
        let http = export_ok(&app, Role::Admin, "/export/leads.ndjson").await;
        assert_eq!(String::from_utf8(output.stdout).unwrap(), http, "{backend:?}");
    }
}
