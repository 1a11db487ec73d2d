//! Erasure (right to be forgotten): after a lead was created, changed, enriched and delivered
//! to a webhook, `eraseLead` leaves none of the person's data in any table (every table of the
//! database catalog is scanned, so tables added later are covered), keeps a tombstone and an
//! audit record, refuses the address afterwards, and delivers `lead.erased` without personal
//! data. Malformed ids, wrong roles and long reasons are refused with nothing lost.

use crate::helpers::{Backend, TestApp, backends, first_code, poll_until, spawn_app, spawn_app_with};
use leadgate::domain::Role;
use serde_json::{Value, json};
use sqlx::Row as _;
use std::time::Duration;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const EMAIL: &str = "zelda.quasimodo@erasure-test.example";
const FIRST: &str = "Zelda";
const LAST: &str = "Quasimodo-Xylander";
const PHONE: &str = "+14155550187";
const LINKEDIN: &str = "https://www.linkedin.com/in/zelda-quasimodo-xylander";
const TITLE: &str = "Chief Oboe Strategist";
const NEW_TITLE: &str = "Principal Oboe Strategist";

const ERASE: &str = "mutation($id: ID!, $reason: String) { eraseLead(id: $id, reason: $reason) { \
     id leadId actorSubject reason erasedAt enrichmentRecords eventsScrubbed deliveriesScrubbed jobsScrubbed \
     rowsByEmailHash } }";
const ERASURES: &str = "query($first: Int, $after: String) { erasures(first: $first, after: $after) { \
     edges { cursor node { id leadId reason eventsScrubbed } } pageInfo { hasNextPage endCursor } } }";

/// Every row of every table of the app's database, one text per row, lower-cased. Tables come
/// from the catalog, so a table added by a later migration is scanned too.
pub async fn dump_all_tables(app: &TestApp) -> Vec<(String, String)> {
    let url = &app.settings.database_url;
    let mut out = Vec::new();
    match app.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(url).await.expect("sqlite");
            let tables: Vec<String> = sqlx::query(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
            for table in tables {
                let columns: Vec<String> =
                    sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA table_info(\"{table}\")")))
                        .fetch_all(&pool)
                        .await
                        .unwrap()
                        .iter()
                        .map(|r| r.get::<String, _>(1))
                        .collect();
                let row_text = columns
                    .iter()
                    .map(|c| format!("quote(\"{c}\")"))
                    .collect::<Vec<_>>()
                    .join(" || ' | ' || ");
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {row_text} FROM \"{table}\"")))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                for r in rows {
                    out.push((table.clone(), r.get::<String, _>(0).to_lowercase()));
                }
            }
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.expect("postgres");
            let tables: Vec<String> = sqlx::query(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
            )
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
            for table in tables {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT row_to_json(t)::text FROM \"{table}\" t"
                )))
                .fetch_all(&pool)
                .await
                .unwrap();
                for r in rows {
                    out.push((table.clone(), r.get::<String, _>(0).to_lowercase()));
                }
            }
            pool.close().await;
        }
    }
    assert!(
        out.iter().any(|(t, _)| t == "workspaces"),
        "the scan saw no workspaces"
    );
    out
}

/// The rows (table, text) that contain any of `needles`, case-insensitively.
fn mentions<'a>(rows: &'a [(String, String)], needles: &[&str]) -> Vec<&'a (String, String)> {
    rows.iter()
        .filter(|(_, text)| needles.iter().any(|n| text.contains(&n.to_lowercase())))
        .collect()
}

async fn use_sandbox(app: &TestApp) {
    app.configure_provider(json!({
        "provider": "SANDBOX",
        "options": {"latencyMs": 0, "missRate": 0.0, "creditsPerHit": 1},
    }))
    .await;
    app.set_waterfall("PERSON", &["SANDBOX"]).await;
}

async fn create_person(app: &TestApp) -> String {
    let lead = app
        .create_lead(json!({
            "email": EMAIL, "firstName": FIRST, "lastName": LAST, "phone": PHONE,
            "linkedinUrl": LINKEDIN, "title": TITLE, "tags": ["vip-erasure"],
        }))
        .await;
    lead["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_erased_lead_leaves_no_personal_data_in_any_table() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| {
            s.webhook_max_attempts = 3;
            s.webhook_retry_base_ms = 20;
        })
        .await;
        // the receiver fails the first delivery quoting the person, then accepts
        let receiver = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(500).set_body_string(format!("cannot route {EMAIL} ({FIRST} {LAST})")),
            )
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&receiver)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(204))
            .with_priority(2)
            .mount(&receiver)
            .await;
        crate::webhooks::register(
            &app,
            &format!("{}/hooks", receiver.uri()),
            &["LEAD_CREATED", "LEAD_UPDATED", "LEAD_ENRICHED", "LEAD_ERASED"],
        )
        .await;
        use_sandbox(&app).await;

        let id = create_person(&app).await;
        let updated = app
            .gql(
                Role::Member,
                "mutation($input: UpdateLeadInput!) { updateLead(input: $input) { lead { title } userErrors { message } } }",
                json!({"input": {"id": id, "title": NEW_TITLE}}),
            )
            .await;
        assert_eq!(updated["updateLead"]["lead"]["title"], NEW_TITLE, "{backend:?}");
        let enriched = app
            .gql(
                Role::Member,
                "query($id: ID!) { lead(id: $id) { person { fullName title } } }",
                json!({"id": id}),
            )
            .await;
        let person = enriched["lead"]["person"].clone();
        assert!(person["fullName"].is_string(), "{backend:?}: {enriched}");

        // created (failed once, then delivered), updated and enriched all reached the receiver
        poll_until(Duration::from_secs(20), "four deliveries", || async {
            let got = receiver.received_requests().await.unwrap_or_default();
            (got.len() >= 4).then_some(())
        })
        .await;
        // the person really is in the store before the erasure (the scan can find them)
        let before = dump_all_tables(&app).await;
        let enriched_name = person["fullName"].as_str().unwrap().to_owned();
        let mut needles = vec![EMAIL, FIRST, LAST, PHONE, LINKEDIN, TITLE, NEW_TITLE];
        if enriched_name.len() >= 3 {
            needles.push(&enriched_name);
        }
        let found_before = mentions(&before, &needles);
        for table in [
            "leads",
            "events",
            "enrichment_records",
            "webhook_deliveries",
            "jobs",
        ] {
            assert!(
                found_before.iter().any(|(t, _)| t == table),
                "{backend:?}: expected the person in {table} before erasure"
            );
        }

        let erased = app
            .gql(
                Role::Admin,
                ERASE,
                json!({"id": id, "reason": "data subject request #42"}),
            )
            .await["eraseLead"]
            .clone();
        assert_eq!(erased["leadId"], id.as_str(), "{backend:?}");
        assert_eq!(erased["actorSubject"], "tester");
        assert_eq!(erased["reason"], "data subject request #42");
        assert_eq!(erased["enrichmentRecords"], 1, "{backend:?}: {erased}");
        assert!(
            erased["eventsScrubbed"].as_i64().unwrap() >= 3,
            "{backend:?}: {erased}"
        );
        assert!(
            erased["deliveriesScrubbed"].as_i64().unwrap() >= 1,
            "{backend:?}: {erased}"
        );
        assert!(
            erased["jobsScrubbed"].as_i64().unwrap() >= 1,
            "{backend:?}: {erased}"
        );

        // the erasure event reaches the receiver, with nothing about the person
        let erased_body = poll_until(Duration::from_secs(20), "lead.erased delivered", || async {
            let got = receiver.received_requests().await.unwrap_or_default();
            got.iter()
                .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
                .find(|b| b["type"] == "lead.erased")
        })
        .await;
        assert_eq!(
            erased_body["data"],
            json!({"id": id_uuid(&id), "erased": true}),
            "{backend:?}"
        );
        let text = erased_body.to_string().to_lowercase();
        assert!(
            needles.iter().all(|n| !text.contains(&n.to_lowercase())),
            "{backend:?}: {text}"
        );

        // no table holds the person any more
        let after = dump_all_tables(&app).await;
        let left = mentions(&after, &needles);
        assert!(
            left.is_empty(),
            "{backend:?}: personal data left behind: {left:?}"
        );
        assert_eq!(
            after.iter().filter(|(t, _)| t == "erasure_tombstones").count(),
            1,
            "{backend:?}"
        );
        assert!(
            after
                .iter()
                .any(|(t, text)| t == "erasures" && text.contains("data subject request #42"))
        );

        // the lead is gone, the counts follow, and the audit record is listed
        let gone = app
            .gql(
                Role::Admin,
                "query($id: ID!) { lead(id: $id) { id } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(gone["lead"], Value::Null);
        let counts = app
            .services
            .workspaces
            .lead_counts(app.workspace.id)
            .await
            .unwrap();
        assert_eq!((counts.active, counts.archived), (0, 0), "{backend:?}");
        let list = app.gql(Role::Admin, ERASURES, json!({"first": 10})).await;
        assert_eq!(list["erasures"]["edges"][0]["node"]["leadId"], id.as_str());
        assert_eq!(list["erasures"]["pageInfo"]["hasNextPage"], false);

        // the address cannot come back, in any spelling, through any entry point
        let refused = app
            .gql_err(
                Role::Member,
                "mutation($input: CreateLeadInput!) { createLead(input: $input) { lead { id } } }",
                json!({"input": {"email": EMAIL.to_uppercase()}}),
            )
            .await;
        assert_eq!(first_code(&refused), "BAD_USER_INPUT", "{backend:?}: {refused}");
        assert!(refused.to_string().contains("this address was erased on request"));
        let upsert = app
            .gql(
                Role::Member,
                "mutation($leads: [CreateLeadInput!]!) { upsertLeads(input: {leads: $leads}) { createdCount failedCount \
                 results { outcome userErrors { field message } } } }",
                json!({"leads": [{"email": EMAIL}, {"email": "someone.else@erasure-test.example"}]}),
            )
            .await;
        let payload = &upsert["upsertLeads"];
        assert_eq!(payload["createdCount"], 1, "{backend:?}: {payload}");
        assert_eq!(payload["failedCount"], 1);
        assert_eq!(payload["results"][0]["outcome"], "FAILED");
        assert_eq!(
            payload["results"][0]["userErrors"][0]["message"],
            "this address was erased on request"
        );
        let other = app
            .create_lead(json!({"email": "third.person@erasure-test.example"}))
            .await;
        let moved = app
            .gql_err(
                Role::Member,
                "mutation($input: UpdateLeadInput!) { updateLead(input: $input) { lead { id } } }",
                json!({"input": {"id": other["id"], "email": EMAIL}}),
            )
            .await;
        assert_eq!(first_code(&moved), "BAD_USER_INPUT", "{backend:?}: {moved}");
        let counts = app
            .services
            .workspaces
            .lead_counts(app.workspace.id)
            .await
            .unwrap();
        assert_eq!(counts.active, 2, "{backend:?}");
        // another workspace may still hold the same address: tombstones are per workspace
        let theirs = app
            .post(
                Some(&app.token_in(&app.other, Role::Member)),
                json!({"query": "mutation($input: CreateLeadInput!) { createLead(input: $input) { lead { id } userErrors { message } } }",
                       "variables": {"input": {"email": EMAIL}}}),
            )
            .await
            .1;
        assert!(
            theirs["data"]["createLead"]["lead"]["id"].is_string(),
            "{backend:?}: {theirs}"
        );
    }
}

fn id_uuid(global: &str) -> String {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(global)
        .unwrap();
    String::from_utf8(raw)
        .unwrap()
        .trim_start_matches("Lead:")
        .to_owned()
}

#[tokio::test]
async fn erasure_is_for_admins_and_refuses_malformed_input_losing_nothing() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let id = create_person(&app).await;
        let still_there = || async {
            let data = app
                .gql(
                    Role::Admin,
                    "query($id: ID!) { lead(id: $id) { email } }",
                    json!({"id": id}),
                )
                .await;
            assert_eq!(data["lead"]["email"], EMAIL, "{backend:?}");
        };

        for role in [Role::Member, Role::Viewer, Role::Partner] {
            let body = app.gql_err(role, ERASE, json!({"id": id})).await;
            assert_eq!(first_code(&body), "FORBIDDEN", "{backend:?} {role:?}: {body}");
            let body = app.gql_err(role, ERASURES, json!({})).await;
            assert_eq!(first_code(&body), "FORBIDDEN", "{backend:?} {role:?}: {body}");
        }
        still_there().await;

        let workspace_id = app
            .gql(Role::Admin, "{ viewer { workspace { id } } }", json!({}))
            .await["viewer"]["workspace"]["id"]
            .clone();
        for bad in [
            json!("not-an-id"),
            json!(""),
            workspace_id,
            json!("TGVhZDpub3QtYS11dWlk"),
        ] {
            let body = app.gql_err(Role::Admin, ERASE, json!({"id": bad})).await;
            assert_eq!(first_code(&body), "BAD_USER_INPUT", "{backend:?} {bad}: {body}");
        }
        let unknown = leadgate::domain::LeadId::new();
        let unknown_id = base64_lead_id(&unknown.to_string());
        let body = app.gql_err(Role::Admin, ERASE, json!({"id": unknown_id})).await;
        assert_eq!(first_code(&body), "NOT_FOUND", "{backend:?}: {body}");

        // another workspace's admin cannot reach the lead
        let theirs = app
            .post(
                Some(&app.token_in(&app.other, Role::Admin)),
                json!({"query": ERASE, "variables": {"id": id}}),
            )
            .await
            .1;
        assert_eq!(first_code(&theirs), "NOT_FOUND", "{backend:?}: {theirs}");

        let long = "x".repeat(501);
        let body = app
            .gql_err(Role::Admin, ERASE, json!({"id": id, "reason": long}))
            .await;
        assert_eq!(first_code(&body), "BAD_USER_INPUT", "{backend:?}: {body}");
        still_there().await;

        for (vars, what) in [
            (json!({"first": 0}), "first 0"),
            (json!({"first": 101}), "first 101"),
            (json!({"after": "garbage"}), "bad cursor"),
        ] {
            let body = app.gql_err(Role::Admin, ERASURES, vars).await;
            assert_eq!(first_code(&body), "BAD_USER_INPUT", "{backend:?} {what}: {body}");
        }

        // the real thing works once, then the lead is unknown
        app.gql(Role::Admin, ERASE, json!({"id": id})).await;
        let again = app.gql_err(Role::Admin, ERASE, json!({"id": id})).await;
        assert_eq!(first_code(&again), "NOT_FOUND", "{backend:?}: {again}");
    }
}

fn base64_lead_id(uuid: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("Lead:{uuid}"))
}
