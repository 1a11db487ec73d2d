//! Erasure (right to be forgotten): after a lead was created, changed, enriched and delivered
//! to a webhook, `eraseLead` leaves none of the person's data in any table (every table of the
//! database catalog is scanned, so tables added later are covered), keeps a tombstone and an
//! audit record, refuses the address afterwards, and delivers `lead.erased` without personal
//! data. Malformed ids, wrong roles and long reasons are refused with nothing lost.
//!
//! `COLUMNS` classifies every column of the database (personal or not, and how erasure covers
//! each personal one); a column the live catalog of either backend has and the table lacks
//! fails the suite. A lead imported from an upload whose file and error rows quote the person
//! is erased and every column scanned, uploaded bytes included: only the columns classified
//! as gaps may still hold the person, and each of them is shown to.

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
pub fn mentions<'a>(rows: &'a [(String, String)], needles: &[&str]) -> Vec<&'a (String, String)> {
    rows.iter()
        .filter(|(_, text)| needles.iter().any(|n| text.contains(&n.to_lowercase())))
        .collect()
}

async fn use_sandbox(app: &TestApp) {
    app.use_sandbox(&["PERSON"], 1).await;
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
            (json!({"first": -1}), "first -1"),
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

// ---- every column that can hold personal data, classified, against the live catalog ----

/// What a column holds and how an erasure deals with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Identifiers, counters, states, times, configuration: nothing about a person.
    NotPersonal,
    /// Personal; the erasure deletes the row (the lead's own rows).
    DeletedWithTheLead,
    /// Personal; rows carrying the person's salted email hash are deleted
    /// (`TABLES_KEYED_BY_EMAIL_HASH`).
    DeletedByEmailHash,
    /// The lead's events keep their number and type; the payload becomes `erased_payload`, and
    /// subject-less payloads quoting the person are redacted.
    ReplacedOrRedacted,
    /// Free text redacted by value, or cleared (receivers' answers, job error history).
    Scrubbed,
    /// The salted hash of an erased address, kept on purpose so the address is refused.
    Tombstone,
    /// An unfinished upload's bytes: when they name the person, the file is deleted and its
    /// import cancelled (failed, with the reason in its error).
    CancelledUpload,
    /// Written by the operator who erases (the erasure's reason); not scrubbed.
    OperatorText,
}

use Class::*;

/// Every column of the database (both backends have the same), with its class. A column
/// the catalog has and this table lacks fails `every_column_is_classified_for_erasure`.
const COLUMNS: &[(&str, &[(&str, Class)])] = &[
    (
        "_sqlx_migrations",
        &[
            ("version", NotPersonal),
            ("description", NotPersonal),
            ("installed_on", NotPersonal),
            ("success", NotPersonal),
            ("checksum", NotPersonal),
            ("execution_time", NotPersonal),
        ],
    ),
    (
        "api_keys",
        &[
            ("id", NotPersonal),
            ("workspace_id", NotPersonal),
            ("name", NotPersonal),
            ("prefix", NotPersonal),
            ("secret_hash", NotPersonal),
            ("previous_hash", NotPersonal),
            ("previous_until", NotPersonal),
            ("role", NotPersonal),
            ("scopes", NotPersonal),
            ("rate_limit", NotPersonal),
            ("created_at", NotPersonal),
            ("created_by", NotPersonal),
            ("last_used_at", NotPersonal),
            ("expires_at", NotPersonal),
            ("revoked_at", NotPersonal),
            ("version", NotPersonal),
        ],
    ),
    (
        "enrichment_records",
        &[
            ("workspace_id", NotPersonal),
            ("lead_id", NotPersonal),
            ("grp", NotPersonal),
            ("fields", DeletedWithTheLead),
            ("sources", DeletedWithTheLead),
            ("tried", NotPersonal),
            ("subject_hash", DeletedWithTheLead),
            ("fetched_at", NotPersonal),
            ("expires_at", NotPersonal),
        ],
    ),
    (
        "enrichment_settings",
        &[
            ("workspace_id", NotPersonal),
            ("default_policy", NotPersonal),
            ("waterfalls", NotPersonal),
            ("updated_at", NotPersonal),
        ],
    ),
    (
        "erasure_tombstones",
        &[
            ("workspace_id", NotPersonal),
            ("email_hash", Tombstone),
            ("erased_at", NotPersonal),
        ],
    ),
    (
        "erasures",
        &[
            ("id", NotPersonal),
            ("workspace_id", NotPersonal),
            ("lead_id", NotPersonal),
            ("actor_subject", NotPersonal),
            ("reason", OperatorText),
            ("erased_at", NotPersonal),
            ("enrichment_records", NotPersonal),
            ("events_scrubbed", NotPersonal),
            ("deliveries_scrubbed", NotPersonal),
            ("jobs_scrubbed", NotPersonal),
            ("rows_by_email_hash", NotPersonal),
            ("imports_scrubbed", NotPersonal),
        ],
    ),
    (
        "event_exports",
        &[
            ("workspace_id", NotPersonal),
            ("cursor", NotPersonal),
            ("updated_at", NotPersonal),
        ],
    ),
    (
        "leases",
        &[
            ("name", NotPersonal),
            ("owner", NotPersonal),
            ("expires_at", NotPersonal),
        ],
    ),
    (
        "events",
        &[
            ("id", NotPersonal),
            ("workspace_id", NotPersonal),
            ("type", NotPersonal),
            ("subject_id", NotPersonal),
            ("payload", ReplacedOrRedacted),
            ("created_at", NotPersonal),
            ("seq", NotPersonal),
        ],
    ),
    (
        "import_errors",
        &[
            ("workspace_id", NotPersonal),
            ("import_id", NotPersonal),
            ("row_number", NotPersonal),
            ("seq", NotPersonal),
            ("column_name", NotPersonal),
            // rows of invalid data rows carry no email hash, and their reasons may quote the
            // row's values ("'…' is not an ISO 3166-1 alpha-2 country code"): redacted
            ("reason", Scrubbed),
            ("email_hash", DeletedByEmailHash),
        ],
    ),
    (
        "import_uploads",
        &[
            ("import_id", NotPersonal),
            ("seq", NotPersonal),
            // an unfinished upload naming the person is deleted and its import cancelled
            ("data", CancelledUpload),
        ],
    ),
    (
        "imports",
        &[
            ("id", NotPersonal),
            ("workspace_id", NotPersonal),
            ("status", NotPersonal),
            ("format", NotPersonal),
            ("options", NotPersonal),
            // the file name the uploader chose: redacted
            ("source_name", Scrubbed),
            ("rows_done", NotPersonal),
            ("byte_offset", NotPersonal),
            ("prefix_sha256", NotPersonal),
            ("created", NotPersonal),
            ("updated", NotPersonal),
            ("unchanged", NotPersonal),
            ("skipped_existing", NotPersonal),
            ("duplicates_in_file", NotPersonal),
            ("invalid", NotPersonal),
            ("blocked", NotPersonal),
            ("job_id", NotPersonal),
            ("error", NotPersonal),
            ("created_at", NotPersonal),
            ("updated_at", NotPersonal),
            ("started_at", NotPersonal),
            ("finished_at", NotPersonal),
        ],
    ),
    (
        "jobs",
        &[
            ("id", NotPersonal),
            ("kind", NotPersonal),
            ("workspace_id", NotPersonal),
            ("payload", Scrubbed),
            ("priority", NotPersonal),
            ("run_at", NotPersonal),
            ("state", NotPersonal),
            ("attempts", NotPersonal),
            ("max_attempts", NotPersonal),
            ("unique_key", NotPersonal),
            ("lease_token", NotPersonal),
            ("lease_until", NotPersonal),
            ("errors", Scrubbed),
            ("progress", Scrubbed),
            ("result", Scrubbed),
            ("created_at", NotPersonal),
            ("updated_at", NotPersonal),
            ("finished_at", NotPersonal),
            ("published_at", NotPersonal),
        ],
    ),
    (
        "lead_tags",
        &[
            ("workspace_id", NotPersonal),
            ("tag", DeletedWithTheLead),
            ("lead_id", NotPersonal),
        ],
    ),
    (
        "leads",
        &[
            ("id", NotPersonal),
            ("workspace_id", NotPersonal),
            ("email", DeletedWithTheLead),
            ("first_name", DeletedWithTheLead),
            ("last_name", DeletedWithTheLead),
            ("title", DeletedWithTheLead),
            ("company_name", DeletedWithTheLead),
            ("company_domain", DeletedWithTheLead),
            ("phone", DeletedWithTheLead),
            ("linkedin_url", DeletedWithTheLead),
            ("country", DeletedWithTheLead),
            ("time_zone", DeletedWithTheLead),
            ("source", DeletedWithTheLead),
            ("status", NotPersonal),
            ("owner", DeletedWithTheLead),
            ("score", NotPersonal),
            ("tags", DeletedWithTheLead),
            ("custom_fields", DeletedWithTheLead),
            ("search_text", DeletedWithTheLead),
            ("created_at", NotPersonal),
            ("updated_at", NotPersonal),
            ("archived_at", NotPersonal),
            ("version", NotPersonal),
        ],
    ),
    (
        "provider_configs",
        &[
            ("workspace_id", NotPersonal),
            ("provider", NotPersonal),
            ("enabled", NotPersonal),
            ("api_key_sealed", NotPersonal),
            ("api_key_last4", NotPersonal),
            ("daily_credit_cap", NotPersonal),
            ("monthly_credit_cap", NotPersonal),
            ("rate_per_second", NotPersonal),
            ("timeout_ms", NotPersonal),
            ("options", NotPersonal),
            ("disabled_reason", NotPersonal),
            ("updated_at", NotPersonal),
        ],
    ),
    (
        "provider_usage",
        &[
            ("workspace_id", NotPersonal),
            ("provider", NotPersonal),
            ("period", NotPersonal),
            ("period_start", NotPersonal),
            ("used", NotPersonal),
        ],
    ),
    (
        "retention_policies",
        &[
            ("workspace_id", NotPersonal),
            ("archive_after_days", NotPersonal),
            ("delete_archived_after_days", NotPersonal),
            ("compact_enrichment", NotPersonal),
            ("event_ttl_days", NotPersonal),
            ("updated_at", NotPersonal),
        ],
    ),
    (
        "retention_runs",
        &[
            ("id", NotPersonal),
            ("workspace_id", NotPersonal),
            ("trigger_kind", NotPersonal),
            ("dry_run", NotPersonal),
            ("started_at", NotPersonal),
            ("finished_at", NotPersonal),
            ("archived", NotPersonal),
            ("deleted", NotPersonal),
            ("enrichment_compacted", NotPersonal),
            ("events_compacted", NotPersonal),
            ("error", NotPersonal),
        ],
    ),
    (
        "schedules",
        &[
            ("name", NotPersonal),
            ("cron", NotPersonal),
            ("tz", NotPersonal),
            ("kind", NotPersonal),
            ("payload", NotPersonal),
            ("next_run_at", NotPersonal),
            ("last_run_at", NotPersonal),
            ("enabled", NotPersonal),
        ],
    ),
    ("settings", &[("key", NotPersonal), ("value", NotPersonal)]),
    (
        "crm_connections",
        &[
            ("id", NotPersonal),
            ("workspace_id", NotPersonal),
            ("kind", NotPersonal),
            ("name", NotPersonal),
            ("api_base_url", NotPersonal),
            ("token_url", NotPersonal),
            ("credentials_sealed", NotPersonal),
            ("credentials_hint", NotPersonal),
            ("field_mapping", NotPersonal),
            ("push_on_change", NotPersonal),
            ("poll_interval_secs", NotPersonal),
            ("on_deletion", NotPersonal),
            ("event_cursor", NotPersonal),
            ("poll_cursor", NotPersonal),
            ("polled_at", NotPersonal),
            ("blocked_until", NotPersonal),
            ("created_at", NotPersonal),
            ("updated_at", NotPersonal),
        ],
    ),
    (
        "crm_links",
        &[
            ("workspace_id", NotPersonal),
            ("connection_id", NotPersonal),
            ("lead_id", NotPersonal),
            // the lead's links go with the lead, their CRM record ids and errors with them
            ("external_id", DeletedWithTheLead),
            ("status", NotPersonal),
            ("generation", NotPersonal),
            ("synced_hash", DeletedWithTheLead),
            ("remote_clock", NotPersonal),
            ("last_synced_at", NotPersonal),
            ("last_error", DeletedWithTheLead),
            ("pending_since", NotPersonal),
        ],
    ),
    (
        "crm_sync_runs",
        &[
            ("id", NotPersonal),
            ("workspace_id", NotPersonal),
            ("connection_id", NotPersonal),
            ("trigger_kind", NotPersonal),
            ("started_at", NotPersonal),
            ("finished_at", NotPersonal),
            ("pushed", NotPersonal),
            ("pulled", NotPersonal),
            ("failed", NotPersonal),
            ("skipped", NotPersonal),
        ],
    ),
    (
        "crm_inbound_events",
        &[
            ("connection_id", NotPersonal),
            ("event_id", NotPersonal),
            ("received_at", NotPersonal),
        ],
    ),
    (
        "campaigns",
        &[
            ("id", NotPersonal),
            ("workspace_id", NotPersonal),
            // written by the workspace's admins: templates and filters, no lead's data
            ("name", OperatorText),
            ("state", NotPersonal),
            ("definition", OperatorText),
            ("stop_statuses", NotPersonal),
            ("version", NotPersonal),
            ("segment_at", NotPersonal),
            ("event_cursor", NotPersonal),
            ("created_at", NotPersonal),
            ("updated_at", NotPersonal),
            ("activated_at", NotPersonal),
            ("paused_at", NotPersonal),
        ],
    ),
    (
        "campaign_enrollments",
        &[
            ("id", NotPersonal),
            ("workspace_id", NotPersonal),
            ("campaign_id", NotPersonal),
            ("lead_id", DeletedWithTheLead),
            ("state", NotPersonal),
            ("step", NotPersonal),
            ("entry", NotPersonal),
            ("due_at", NotPersonal),
            ("lease_token", NotPersonal),
            ("lease_until", NotPersonal),
            ("waiting_for", NotPersonal),
            ("matched", NotPersonal),
            ("failures", NotPersonal),
            ("exit_reason", NotPersonal),
            ("entered_at", NotPersonal),
            ("updated_at", NotPersonal),
            ("finished_at", NotPersonal),
        ],
    ),
    (
        "campaign_activity",
        &[
            ("id", NotPersonal),
            ("workspace_id", NotPersonal),
            ("campaign_id", NotPersonal),
            ("lead_id", DeletedWithTheLead),
            ("entry", NotPersonal),
            ("step", NotPersonal),
            ("kind", NotPersonal),
            ("outcome", NotPersonal),
            ("variant", NotPersonal),
            // a relay's answer can quote the address: the rows go with the lead
            ("detail", DeletedWithTheLead),
            ("occurred_at", NotPersonal),
        ],
    ),
    (
        "campaign_messages",
        &[
            ("message_id", NotPersonal),
            ("workspace_id", NotPersonal),
            ("campaign_id", NotPersonal),
            ("lead_id", DeletedWithTheLead),
            ("entry", NotPersonal),
            ("step", NotPersonal),
            ("variant", NotPersonal),
            ("mailbox", NotPersonal),
            ("recipient", DeletedWithTheLead),
            ("state", NotPersonal),
            ("attempts", NotPersonal),
            ("detail", DeletedWithTheLead),
            ("created_at", NotPersonal),
            ("sent_at", NotPersonal),
            ("delivered_at", NotPersonal),
            ("bounced_at", NotPersonal),
            ("replied_at", NotPersonal),
            ("clicked_at", NotPersonal),
            ("unsubscribed_at", NotPersonal),
            ("updated_at", NotPersonal),
        ],
    ),
    (
        "send_counters",
        &[
            // campaign, mailbox or recipient *domain* with a window: no person
            ("scope", NotPersonal),
            ("window_start", NotPersonal),
            ("used", NotPersonal),
        ],
    ),
    (
        "mail_suppressions",
        &[
            ("workspace_id", NotPersonal),
            // kept on purpose: an erased person who unsubscribed is still never mailed
            ("email_hash", Tombstone),
            ("email", Scrubbed),
            ("reason", NotPersonal),
            ("created_at", NotPersonal),
        ],
    ),
    (
        "mail_events",
        &[
            ("provider", NotPersonal),
            ("event_id", NotPersonal),
            ("received_at", NotPersonal),
        ],
    ),
    (
        "crm_webhook_receipts",
        &[
            ("id", NotPersonal),
            ("workspace_id", NotPersonal),
            ("connection_id", NotPersonal),
            ("status", NotPersonal),
            ("outcome", NotPersonal),
            // our own words: field paths and codes, never a value from the body
            ("detail", NotPersonal),
            ("events", NotPersonal),
            ("received_at", NotPersonal),
        ],
    ),
    (
        "webhook_deliveries",
        &[
            ("id", NotPersonal),
            ("workspace_id", NotPersonal),
            ("endpoint_id", NotPersonal),
            ("event_seq", NotPersonal),
            ("event_type", NotPersonal),
            ("attempt", NotPersonal),
            ("status", NotPersonal),
            ("response_body", Scrubbed),
            ("error", Scrubbed),
            ("duration_ms", NotPersonal),
            ("succeeded", NotPersonal),
            ("created_at", NotPersonal),
        ],
    ),
    (
        "webhook_endpoints",
        &[
            ("id", NotPersonal),
            ("workspace_id", NotPersonal),
            ("url", NotPersonal),
            ("description", NotPersonal),
            ("event_types", NotPersonal),
            ("secret_sealed", NotPersonal),
            ("secret_last4", NotPersonal),
            ("enabled", NotPersonal),
            ("disabled_reason", NotPersonal),
            ("disabled_at", NotPersonal),
            ("consecutive_failures", NotPersonal),
            ("cursor", NotPersonal),
            ("created_at", NotPersonal),
            ("updated_at", NotPersonal),
        ],
    ),
    (
        "workspaces",
        &[
            ("id", NotPersonal),
            ("slug", NotPersonal),
            ("name", NotPersonal),
            ("created_at", NotPersonal),
            ("lead_count", NotPersonal),
            ("archived_lead_count", NotPersonal),
            ("event_seq", NotPersonal),
        ],
    ),
];

fn class_of(table: &str, column: &str) -> Option<Class> {
    COLUMNS
        .iter()
        .find(|(t, _)| *t == table)
        .and_then(|(_, columns)| columns.iter().find(|(c, _)| *c == column))
        .map(|(_, class)| *class)
}

/// The live catalog: (table, column, whether it holds bytes), sorted.
async fn catalog(app: &TestApp) -> Vec<(String, String, bool)> {
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
                let columns = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA table_info(\"{table}\")")))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                for c in columns {
                    let name: String = c.get(1);
                    let kind: String = c.get(2);
                    out.push((table.clone(), name, kind.eq_ignore_ascii_case("BLOB")));
                }
            }
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.expect("postgres");
            let rows = sqlx::query(
                "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema()",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            for r in rows {
                let kind: String = r.get(2);
                out.push((r.get(0), r.get(1), kind == "bytea"));
            }
            pool.close().await;
        }
    }
    out.sort();
    out
}

/// Every non-null value of every column, lower-cased text (bytes decoded as UTF-8, lossily,
/// so a CSV upload stored as a blob is searched too): (table, column, value).
async fn scan_columns(app: &TestApp) -> Vec<(String, String, String)> {
    let columns = catalog(app).await;
    let url = &app.settings.database_url;
    let mut out = Vec::new();
    let sqlite = match app.backend {
        Backend::Sqlite => Some(sqlx::SqlitePool::connect(url).await.expect("sqlite")),
        Backend::Postgres => None,
    };
    let pg = match app.backend {
        Backend::Postgres => Some(sqlx::PgPool::connect(url).await.expect("postgres")),
        Backend::Sqlite => None,
    };
    for (table, column, bytes) in &columns {
        let values: Vec<Vec<u8>> = if let Some(pool) = &sqlite {
            let sql =
                format!("SELECT CAST(\"{column}\" AS BLOB) FROM \"{table}\" WHERE \"{column}\" IS NOT NULL");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<Vec<u8>, _>(0))
                .collect()
        } else {
            let pool = pg.as_ref().unwrap();
            let expr = if *bytes {
                format!("\"{column}\"")
            } else {
                format!("convert_to(\"{column}\"::text, 'UTF8')")
            };
            let sql = format!("SELECT {expr} FROM \"{table}\" WHERE \"{column}\" IS NOT NULL");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<Vec<u8>, _>(0))
                .collect()
        };
        for v in values {
            out.push((
                table.clone(),
                column.clone(),
                String::from_utf8_lossy(&v).to_lowercase(),
            ));
        }
    }
    if let Some(pool) = sqlite {
        pool.close().await;
    }
    if let Some(pool) = pg {
        pool.close().await;
    }
    out
}

/// The (table, column) pairs where any of `needles` occurs.
fn columns_mentioning(
    values: &[(String, String, String)],
    needles: &[&str],
) -> std::collections::BTreeSet<(String, String)> {
    values
        .iter()
        .filter(|(_, _, v)| needles.iter().any(|n| v.contains(&n.to_lowercase())))
        .map(|(t, c, _)| (t.clone(), c.clone()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> std::collections::BTreeSet<(String, String)> {
    list.iter()
        .map(|(t, c)| ((*t).to_owned(), (*c).to_owned()))
        .collect()
}

#[tokio::test]
async fn every_column_is_classified_for_erasure() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let live = catalog(&app).await;
        let unclassified: Vec<String> = live
            .iter()
            .filter(|(t, c, _)| class_of(t, c).is_none())
            .map(|(t, c, _)| format!("{t}.{c}"))
            .collect();
        assert!(
            unclassified.is_empty(),
            "{backend:?}: columns without an erasure classification (add each to COLUMNS in \
             tests/api/erasure.rs, saying how erasure covers it): {unclassified:?}"
        );
        let stale: Vec<String> = COLUMNS
            .iter()
            .flat_map(|(t, columns)| columns.iter().map(move |(c, _)| format!("{t}.{c}")))
            .filter(|name| !live.iter().any(|(t, c, _)| format!("{t}.{c}") == *name))
            .collect();
        assert!(
            stale.is_empty(),
            "{backend:?}: classified columns the catalog lacks: {stale:?}"
        );
    }
}

/// The person's row misaligned (the last name in the country column, so its error quotes
/// it), then the person's row, then someone else.
fn upload_csv() -> String {
    format!(
        "email,first_name,last_name,phone,linkedin_url,title,country\n\
         {EMAIL},{FIRST},,{PHONE},{LINKEDIN},{TITLE},{LAST}\n\
         {EMAIL},{FIRST},{LAST},{PHONE},{LINKEDIN},{TITLE},US\n\
         someone.else@erasure-test.example,Other,Person,,,,DE\n"
    )
}

#[tokio::test]
async fn an_imported_lead_is_erased_from_every_personal_column_imports_included() {
    use leadgate::bulk::import::pipeline::ImportRequest;
    use leadgate::bulk::import::{Format, OnDuplicate};
    use leadgate::domain::{Import, ImportStatus, NewJob, now};
    use leadgate::service::{Actor, IMPORT_LEADS};

    for backend in backends() {
        let app = spawn_app(backend).await;
        use_sandbox(&app).await;
        let store = &app.services.store;
        let ws = app.workspace.id;
        let member = Actor {
            subject: "importer".into(),
            workspace_id: ws,
            role: Role::Member,
            key: None,
        };
        let request = |name: &str| ImportRequest {
            workspace: ws,
            format: Format::Csv,
            on_duplicate: OnDuplicate::Skip,
            dry_run: false,
            mapping: Vec::new(),
            default_region: None,
            source_name: name.into(),
        };

        // an upload imported by its job: the lead, and an error row quoting the person
        let first = app
            .services
            .imports
            .upload(&member, request("crm-export.csv"), upload_csv().as_bytes())
            .await
            .unwrap();
        let done = poll_until(Duration::from_secs(60), "the upload's import", || async {
            let import = store.import(ws, first.id).await.unwrap()?;
            (import.status == ImportStatus::Succeeded).then_some(import)
        })
        .await;
        assert_eq!(
            (done.counts.created, done.counts.invalid),
            (2, 1),
            "{backend:?}: {done:?}"
        );
        let id = store
            .lead_id_by_email(
                ws,
                &leadgate::domain::EmailAddress::parse("email", EMAIL).unwrap(),
            )
            .await
            .unwrap()
            .expect("the imported lead");
        let global = base64_lead_id(&id.as_uuid().to_string());

        // the lead changes and is enriched, so events and enrichment records hold the person
        app.gql(
            Role::Member,
            "mutation($input: UpdateLeadInput!) { updateLead(input: $input) { userErrors { message } } }",
            json!({"input": {"id": global, "title": NEW_TITLE}}),
        )
        .await;
        let enriched = app
            .gql(
                Role::Member,
                "query($id: ID!) { lead(id: $id) { person { fullName } } }",
                json!({"id": global}),
            )
            .await;
        assert!(enriched["lead"]["person"]["fullName"].is_string(), "{enriched}");

        // a second upload, stored but not yet run: its file (named after the person) waits in
        // import_uploads, as any upload does until its job has finished
        let second = Import::new(
            ws,
            Format::Csv.as_str(),
            request("x").options_json(),
            "zelda-quasimodo-xylander.csv",
            now(),
        );
        store.create_import(&second).await.unwrap();
        store
            .save_import_upload(ws, second.id, 0, upload_csv().as_bytes())
            .await
            .unwrap();

        let needles = [EMAIL, FIRST, LAST, PHONE, LINKEDIN, TITLE, NEW_TITLE];
        let before = columns_mentioning(&scan_columns(&app).await, &needles);
        for expected in [
            ("leads", "email"),
            ("leads", "search_text"),
            ("events", "payload"),
            ("enrichment_records", "fields"),
            ("import_uploads", "data"),
            ("import_errors", "reason"),
            ("imports", "source_name"),
        ] {
            assert!(
                before.contains(&(expected.0.to_owned(), expected.1.to_owned())),
                "{backend:?}: the scan should see the person in {expected:?} before the erasure: {before:?}"
            );
        }
        for (table, column) in &before {
            assert_ne!(
                class_of(table, column),
                Some(NotPersonal),
                "{backend:?}: {table}.{column} is classified as not personal but holds the person"
            );
        }

        app.gql(Role::Admin, ERASE, json!({"id": global, "reason": "request #7"}))
            .await;

        // nothing personal is left anywhere
        let after = columns_mentioning(&scan_columns(&app).await, &needles);
        assert_eq!(
            after,
            pairs(&[]),
            "{backend:?}: columns still holding the person after the erasure"
        );

        // the waiting upload naming the person was cancelled, its file deleted
        let cancelled = store
            .import(ws, second.id)
            .await
            .unwrap()
            .expect("the import record");
        assert_eq!(
            cancelled.status,
            ImportStatus::Failed,
            "{backend:?}: {cancelled:?}"
        );
        assert!(
            cancelled
                .error
                .as_deref()
                .is_some_and(|e| e.contains("erased on request")),
            "{backend:?}: {cancelled:?}"
        );
        assert!(store.import_upload(ws, second.id, 0).await.unwrap().is_none());
        let erasures = app
            .gql(
                Role::Admin,
                "{ erasures(first: 5) { edges { node { importsScrubbed } } } }",
                json!({}),
            )
            .await;
        assert_eq!(
            erasures["erasures"]["edges"][0]["node"]["importsScrubbed"], 2,
            "{backend:?}: {erasures}"
        );

        // the waiting upload's job, had it been queued, finds the import final and writes nothing
        let job = NewJob {
            workspace_id: Some(ws),
            unique_key: Some(format!("{IMPORT_LEADS}:{}", second.id)),
            ..NewJob::new(IMPORT_LEADS, json!({"importId": second.id.as_uuid()}))
        };
        let enqueued = app.services.jobs.queue().enqueue(job).await.unwrap();
        poll_until(Duration::from_secs(60), "the cancelled import's job", || async {
            let job = store
                .job(leadgate::domain::JobScope::AllWorkspaces, enqueued.id)
                .await
                .unwrap()?;
            (job.state == leadgate::domain::JobState::Succeeded).then_some(())
        })
        .await;
        assert!(store.lead(ws, id).await.unwrap().is_none());
        assert_eq!(
            columns_mentioning(&scan_columns(&app).await, &needles),
            pairs(&[]),
            "{backend:?}: after the cancelled import's job ran"
        );
    }
}
