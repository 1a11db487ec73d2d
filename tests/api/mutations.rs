//! Lead mutations: createLead, updateLead, archiveLead, restoreLead and upsertLeads, with the
//! exact `userErrors` (code and field path) each kind of bad input produces.

use crate::helpers::{TestApp, backends, first_code, spawn_app};
use leadgate::domain::Role;
use serde_json::{Value, json};

const LEAD_FIELDS: &str = "id email firstName lastName fullName title companyName companyDomain phone
    linkedinUrl country source status owner score tags customFields createdAt updatedAt archivedAt version";

fn create_mutation() -> String {
    format!(
        "mutation($input: CreateLeadInput!) {{ createLead(input: $input) {{
            lead {{ {LEAD_FIELDS} }} userErrors {{ field message code }} }} }}"
    )
}

fn update_mutation() -> String {
    format!(
        "mutation($input: UpdateLeadInput!) {{ updateLead(input: $input) {{
            lead {{ {LEAD_FIELDS} }} userErrors {{ field message code }} }} }}"
    )
}

fn archive_mutation(name: &str) -> String {
    format!(
        "mutation($id: ID!) {{ {name}(input: {{id: $id}}) {{
            lead {{ {LEAD_FIELDS} }} userErrors {{ field message code }} }} }}"
    )
}

const UPSERT: &str = "mutation($leads: [CreateLeadInput!]!) { upsertLeads(input: {leads: $leads}) {
    results { index outcome lead { id email firstName title score status version companyDomain }
              userErrors { field message code } }
    createdCount updatedCount unchangedCount failedCount
    userErrors { field message code } } }";

/// Runs `createLead` as a member and returns its payload.
async fn create(app: &TestApp, input: Value) -> Value {
    let data = app
        .gql(Role::Member, &create_mutation(), json!({ "input": input }))
        .await;
    data["createLead"].clone()
}

/// Creates a lead that must be accepted and returns it with every field.
async fn create_ok(app: &TestApp, input: Value) -> Value {
    let payload = create(app, input).await;
    assert_eq!(payload["userErrors"], json!([]), "{payload}");
    payload["lead"].clone()
}

/// Runs `updateLead` as a member and returns its payload.
async fn update(app: &TestApp, input: Value) -> Value {
    let data = app
        .gql(Role::Member, &update_mutation(), json!({ "input": input }))
        .await;
    data["updateLead"].clone()
}

async fn update_ok(app: &TestApp, input: Value) -> Value {
    let payload = update(app, input).await;
    assert_eq!(payload["userErrors"], json!([]), "{payload}");
    payload["lead"].clone()
}

async fn fetch(app: &TestApp, id: &Value) -> Value {
    let q = format!("query($id: ID!) {{ lead(id: $id) {{ {LEAD_FIELDS} }} }}");
    app.gql(Role::Viewer, &q, json!({ "id": id })).await["lead"].clone()
}

async fn upsert(app: &TestApp, leads: Value) -> Value {
    let data = app.gql(Role::Member, UPSERT, json!({ "leads": leads })).await;
    data["upsertLeads"].clone()
}

/// Active and archived leads as `(totalCount, ids listed)`, counted both from the maintained
/// counters and by listing, so a write that slipped through shows up either way.
async fn stored(app: &TestApp) -> (i64, i64, Vec<String>) {
    let q = "query { active: leads(first: 500) { totalCount edges { node { id } } }
                     archived: leads(first: 500, filter: {archived: true}) { totalCount edges { node { id } } } }";
    let data = app.gql(Role::Viewer, q, json!({})).await;
    let mut ids = Vec::new();
    for key in ["active", "archived"] {
        for edge in data[key]["edges"].as_array().unwrap() {
            ids.push(edge["node"]["id"].as_str().unwrap().to_owned());
        }
    }
    (
        data["active"]["totalCount"].as_i64().unwrap(),
        data["archived"]["totalCount"].as_i64().unwrap(),
        ids,
    )
}

/// The `(field, code)` pairs of a `userErrors` list, each message checked to be non-empty.
fn codes(user_errors: &Value) -> Vec<(Vec<String>, String)> {
    user_errors
        .as_array()
        .unwrap_or_else(|| panic!("userErrors is not a list: {user_errors}"))
        .iter()
        .map(|e| {
            assert!(
                !e["message"].as_str().unwrap_or_default().is_empty(),
                "user error without a message: {e}"
            );
            let field = e["field"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect();
            (field, e["code"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn instant(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap()
}

fn path(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}

/// Asserts `createLead(input)` is rejected with exactly one user error and writes nothing.
async fn assert_create_rejected(app: &TestApp, input: Value, field: &str, code: &str) {
    let before = stored(app).await;
    let payload = create(app, input.clone()).await;
    assert_eq!(
        payload["lead"],
        Value::Null,
        "{:?} {input}: {payload}",
        app.backend
    );
    assert_eq!(
        codes(&payload["userErrors"]),
        vec![(path(&["input", field]), code.to_owned())],
        "{:?} {input}",
        app.backend
    );
    assert_eq!(
        stored(app).await,
        before,
        "{:?} {input} wrote something",
        app.backend
    );
}

#[tokio::test]
async fn create_lead_round_trips_every_field_normalised() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let input = json!({
            "email": "  Ann.Lee@Acme-Corp.COM ",
            "firstName": " Ann ",
            "lastName": "Lee",
            "title": "CTO",
            "companyName": "Acme Corp",
            "phone": "+1 (415) 555-0100",
            "linkedinUrl": "http://www.linkedin.com/in/annlee#about",
            "country": " de ",
            "source": "webinar",
            "owner": "sam@acme.io",
            "score": 42,
            "tags": ["hot", " b2b ", "hot"],
            "customFields": {"plan": "pro", "seats": 12, "nested": {"ok": true}}
        });
        let created = create_ok(&app, input).await;
        let expected = json!({
            "email": "ann.lee@acme-corp.com",
            "firstName": "Ann",
            "lastName": "Lee",
            "fullName": "Ann Lee",
            "title": "CTO",
            "companyName": "Acme Corp",
            "companyDomain": "acme-corp.com",
            "phone": "+14155550100",
            "linkedinUrl": "https://www.linkedin.com/in/annlee",
            "country": "DE",
            "source": "webinar",
            "status": "NEW",
            "owner": "sam@acme.io",
            "score": 42,
            "tags": ["hot", "b2b"],
            "customFields": {"plan": "pro", "seats": 12, "nested": {"ok": true}},
            "archivedAt": null,
            "version": 1
        });
        for (key, want) in expected.as_object().unwrap() {
            assert_eq!(&created[key], want, "{backend:?} createLead returned {key}");
        }
        assert_eq!(created["createdAt"], created["updatedAt"], "{backend:?}");
        let read = fetch(&app, &created["id"]).await;
        assert_eq!(
            read, created,
            "{backend:?} lead(id:) differs from the createLead payload"
        );

        // webmail reveals no company; defaults apply when nothing is given
        let webmail = create_ok(&app, json!({"email": "ann.lee@GMAIL.com"})).await;
        let read = fetch(&app, &webmail["id"]).await;
        assert_eq!(read["email"], json!("ann.lee@gmail.com"));
        assert_eq!(read["companyDomain"], Value::Null, "{backend:?}");
        assert_eq!(read["status"], json!("NEW"));
        assert_eq!(read["score"], json!(0));
        assert_eq!(read["version"], json!(1));
        assert_eq!(read["tags"], json!([]));
        assert_eq!(read["customFields"], json!({}));
        assert_eq!(read["title"], Value::Null);

        // a given company domain wins over the email's and is normalised from a URL
        let given = create_ok(
            &app,
            json!({"email": "bo@acme.io", "companyDomain": "https://www.Initech.com/about", "status": "QUALIFIED"}),
        )
        .await;
        let read = fetch(&app, &given["id"]).await;
        assert_eq!(read["companyDomain"], json!("initech.com"), "{backend:?}");
        assert_eq!(read["status"], json!("QUALIFIED"));
    }
}

#[tokio::test]
async fn create_lead_accepts_values_at_the_limits() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let tags: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
        let custom = json!({"blob": "x".repeat(16 * 1024 - 20)});
        let lead = create_ok(
            &app,
            json!({
                "title": "t".repeat(200),
                "score": 100,
                "tags": tags,
                "customFields": custom,
                "phone": "0049 30 1234567"
            }),
        )
        .await;
        let read = fetch(&app, &lead["id"]).await;
        assert_eq!(read["title"].as_str().unwrap().chars().count(), 200);
        assert_eq!(read["score"], json!(100));
        assert_eq!(read["tags"], json!(tags));
        assert_eq!(read["customFields"], custom);
        assert_eq!(read["phone"], json!("+49301234567"));
        assert_eq!(read["email"], Value::Null, "{backend:?}");
        let zero = create_ok(&app, json!({"score": 0})).await;
        assert_eq!(zero["score"], json!(0));
    }
}

#[tokio::test]
async fn create_lead_rejects_malformed_email() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        create_ok(&app, json!({"email": "kept@acme.io"})).await;
        for (email, code) in [
            ("ann.acme.com", "INVALID"),
            ("ann..lee@acme.com", "INVALID"),
            ("ann lee@acme.com", "INVALID"),
            ("ann@acme..com", "INVALID"),
            ("ann@localhost", "INVALID"),
            (".ann@acme.com", "INVALID"),
            ("   ", "REQUIRED"),
        ] {
            assert_create_rejected(&app, json!({"email": email, "lastName": "Lee"}), "email", code).await;
        }
        let long = format!("{}@acme.io", "a".repeat(250));
        assert_create_rejected(&app, json!({ "email": long }), "email", "TOO_LONG").await;
    }
}

#[tokio::test]
async fn create_lead_rejects_malformed_phone() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        for phone in [
            "415 555 0100",
            "(415) 555-0100",
            "+1 415 CALL NOW",
            "+1 415 555 01OO",
            "+0 415 555 0100",
            "+1234",
        ] {
            assert_create_rejected(&app, json!({ "phone": phone }), "phone", "INVALID").await;
        }
    }
}

#[tokio::test]
async fn create_lead_rejects_urls_that_are_not_linkedin() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        for url in [
            "https://twitter.com/annlee",
            "https://linkedin.com.evil.io/in/annlee",
            "ftp://www.linkedin.com/in/annlee",
            "https://www.linkedin.com/",
            "not a url at all",
        ] {
            assert_create_rejected(&app, json!({ "linkedinUrl": url }), "linkedinUrl", "INVALID").await;
        }
    }
}

#[tokio::test]
async fn create_lead_rejects_unknown_country() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        for country in ["XX", "Germany", "DEU", "D"] {
            assert_create_rejected(&app, json!({ "country": country }), "country", "INVALID").await;
        }
    }
}

#[tokio::test]
async fn create_lead_rejects_score_out_of_range() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        for score in [101, -1, 2_147_483_647] {
            assert_create_rejected(&app, json!({ "score": score }), "score", "INVALID").await;
        }
    }
}

#[tokio::test]
async fn create_lead_rejects_bad_tags() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let many: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
        assert_create_rejected(&app, json!({ "tags": many }), "tags", "TOO_LONG").await;
        assert_create_rejected(&app, json!({"tags": ["ok", "  "]}), "tags", "REQUIRED").await;
        assert_create_rejected(&app, json!({"tags": ["ok", ""]}), "tags", "REQUIRED").await;
        assert_create_rejected(&app, json!({"tags": ["x".repeat(65)]}), "tags", "TOO_LONG").await;
        assert_create_rejected(&app, json!({"tags": ["bad\u{7}bell"]}), "tags", "INVALID").await;
    }
}

#[tokio::test]
async fn create_lead_rejects_bad_custom_fields() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let field = "customFields";
        assert_create_rejected(&app, json!({"customFields": [1, 2]}), field, "INVALID").await;
        assert_create_rejected(&app, json!({"customFields": "text"}), field, "INVALID").await;
        assert_create_rejected(&app, json!({"customFields": 7}), field, "INVALID").await;
        let big = json!({"blob": "x".repeat(17 * 1024)});
        assert_create_rejected(&app, json!({ "customFields": big }), field, "TOO_LONG").await;
        let keys: serde_json::Map<String, Value> = (0..101).map(|i| (format!("k{i}"), json!(i))).collect();
        assert_create_rejected(&app, json!({ "customFields": keys }), field, "TOO_LONG").await;
        assert_create_rejected(&app, json!({"customFields": {" ": 1}}), field, "INVALID").await;
    }
}

#[tokio::test]
async fn create_lead_rejects_text_that_is_too_long() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        for (field, max) in [
            ("title", 200),
            ("firstName", 100),
            ("lastName", 100),
            ("companyName", 200),
            ("source", 64),
            ("owner", 128),
        ] {
            let input = json!({ field: "é".repeat(max + 1) });
            assert_create_rejected(&app, input, field, "TOO_LONG").await;
        }
        assert_create_rejected(&app, json!({"title": "C\u{0}TO"}), "title", "INVALID").await;
    }
}

#[tokio::test]
async fn create_lead_reports_every_bad_field_at_once() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let payload = create(
            &app,
            json!({"email": "nope", "phone": "12", "country": "XX", "score": 300, "firstName": "Fine"}),
        )
        .await;
        assert_eq!(payload["lead"], Value::Null);
        assert_eq!(
            codes(&payload["userErrors"]),
            vec![
                (path(&["input", "email"]), "INVALID".to_owned()),
                (path(&["input", "phone"]), "INVALID".to_owned()),
                (path(&["input", "country"]), "INVALID".to_owned()),
                (path(&["input", "score"]), "INVALID".to_owned()),
            ],
            "{backend:?}"
        );
        assert_eq!(stored(&app).await.0, 0);
    }
}

/// Posts a document as a member and returns (status, body).
async fn post_as_member(app: &TestApp, body: Value) -> (u16, Value) {
    let token = app.token(Role::Member);
    app.post(Some(&token), body).await
}

#[tokio::test]
async fn create_lead_with_a_value_of_the_wrong_type_fails_validation() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        // in the document
        let (status, body) = post_as_member(
            &app,
            json!({"query": r#"mutation { createLead(input: {email: "a@acme.io", score: "high"}) { lead { id } } }"#}),
        )
        .await;
        assert_eq!(status, 400, "{backend:?}: {body}");
        assert_eq!(first_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
        assert!(body.get("data").is_none(), "{body}");
        // in variables
        let (status, body) = post_as_member(
            &app,
            json!({"query": create_mutation(), "variables": {"input": {"email": "a@acme.io", "score": "high"}}}),
        )
        .await;
        assert_eq!(status, 400, "{backend:?}: {body}");
        assert_eq!(first_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
        assert!(body.get("data").is_none(), "{body}");
        // an enum value that does not exist
        let (status, body) = post_as_member(
            &app,
            json!({"query": create_mutation(), "variables": {"input": {"status": "WON"}}}),
        )
        .await;
        assert_eq!(status, 400, "{backend:?}: {body}");
        assert_eq!(first_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
        assert_eq!(stored(&app).await.0, 0, "{backend:?}");
    }
}

#[tokio::test]
async fn create_lead_with_an_unknown_input_field_fails_validation() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (status, body) = post_as_member(
            &app,
            json!({"query": r#"mutation { createLead(input: {email: "a@acme.io", nickname: "Al"}) { lead { id } } }"#}),
        )
        .await;
        assert_eq!(status, 400, "{backend:?}: {body}");
        assert_eq!(first_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
        assert!(body.get("data").is_none(), "{body}");
        let (status, body) = post_as_member(
            &app,
            json!({"query": create_mutation(), "variables": {"input": {"email": "a@acme.io", "nickname": "Al"}}}),
        )
        .await;
        assert_eq!(status, 400, "{backend:?}: {body}");
        assert_eq!(first_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
        assert!(body.get("data").is_none(), "{body}");
        assert_eq!(stored(&app).await.0, 0, "{backend:?}");
    }
}

#[tokio::test]
async fn duplicate_email_is_taken_even_when_case_or_whitespace_differs() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let first = create_ok(&app, json!({"email": "ann@acme.io", "firstName": "Ann"})).await;
        for email in ["ann@acme.io", "ANN@Acme.IO", "  ann@acme.io\t"] {
            assert_create_rejected(
                &app,
                json!({"email": email, "firstName": "Other"}),
                "email",
                "TAKEN",
            )
            .await;
        }
        // the original is untouched, and leads without email never clash
        assert_eq!(fetch(&app, &first["id"]).await, first, "{backend:?}");
        create_ok(&app, json!({"firstName": "No email"})).await;
        create_ok(&app, json!({"firstName": "No email either"})).await;
        // the same email is free in another workspace
        let token = app.token_in(&app.other, Role::Member);
        let (_, body) = app
            .post(
                Some(&token),
                json!({"query": create_mutation(), "variables": {"input": {"email": "ann@acme.io"}}}),
            )
            .await;
        assert_eq!(
            body["data"]["createLead"]["userErrors"],
            json!([]),
            "{backend:?}: {body}"
        );
        assert_eq!(stored(&app).await.0, 3, "{backend:?}");
    }
}

#[tokio::test]
async fn update_lead_changes_only_the_given_fields() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let lead = create_ok(
            &app,
            json!({"email": "ann@acme.io", "firstName": "Ann", "title": "CTO", "score": 10,
                   "tags": ["a"], "customFields": {"k": 1}, "country": "DE"}),
        )
        .await;
        let updated = update_ok(
            &app,
            json!({"id": lead["id"], "score": 55, "status": "CONTACTED", "phone": "+44 20 7946 0958"}),
        )
        .await;
        let mut want = lead.clone();
        want["score"] = json!(55);
        want["status"] = json!("CONTACTED");
        want["phone"] = json!("+442079460958");
        want["version"] = json!(2);
        want["updatedAt"] = updated["updatedAt"].clone();
        assert_eq!(updated, want, "{backend:?}");
        assert!(
            instant(&updated["updatedAt"]) >= instant(&lead["updatedAt"]),
            "{updated}"
        );
        assert_eq!(updated["createdAt"], lead["createdAt"]);
        assert_eq!(fetch(&app, &lead["id"]).await, updated, "{backend:?}");

        // the same with the input written into the document rather than passed as a variable
        let q = format!(
            "mutation {{ updateLead(input: {{id: {}, title: \"CEO\"}}) {{ lead {{ {LEAD_FIELDS} }} userErrors {{ code }} }} }}",
            lead["id"]
        );
        let data = app.gql(Role::Member, &q, json!({})).await;
        let inline = &data["updateLead"]["lead"];
        let mut want = updated.clone();
        want["title"] = json!("CEO");
        want["version"] = json!(3);
        want["updatedAt"] = inline["updatedAt"].clone();
        assert_eq!(inline, &want, "{backend:?}");
    }
}

#[tokio::test]
async fn update_lead_with_null_clears_a_field() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let lead = create_ok(
            &app,
            json!({"email": "ann@acme.io", "firstName": "Ann", "title": "CTO", "phone": "+14155550100",
                   "score": 10, "tags": ["a"], "customFields": {"k": 1}}),
        )
        .await;
        let cleared = update_ok(&app, json!({"id": lead["id"], "title": null})).await;
        assert_eq!(cleared["title"], Value::Null, "{backend:?}");
        assert_eq!(cleared["firstName"], json!("Ann"));
        assert_eq!(cleared["phone"], json!("+14155550100"));
        assert_eq!(cleared["version"], json!(2));
        let cleared = update_ok(
            &app,
            json!({"id": lead["id"], "phone": null, "tags": null, "customFields": null, "score": null}),
        )
        .await;
        assert_eq!(cleared["phone"], Value::Null, "{backend:?}");
        assert_eq!(cleared["tags"], json!([]));
        assert_eq!(cleared["customFields"], json!({}));
        assert_eq!(cleared["score"], json!(0));
        assert_eq!(cleared["version"], json!(3));
        // blank text counts as absent, so it clears too
        let cleared = update_ok(&app, json!({"id": lead["id"], "firstName": "   "})).await;
        assert_eq!(cleared["firstName"], Value::Null);
        assert_eq!(cleared["version"], json!(4));
        assert_eq!(fetch(&app, &lead["id"]).await, cleared, "{backend:?}");
        // the email can be cleared and its lead keeps its company domain
        let cleared = update_ok(&app, json!({"id": lead["id"], "email": null})).await;
        assert_eq!(cleared["email"], Value::Null);
        assert_eq!(cleared["companyDomain"], json!("acme.io"));
        // and, once cleared, the email is free for another lead
        create_ok(&app, json!({"email": "ann@acme.io"})).await;
    }
}

#[tokio::test]
async fn update_lead_versions_increase_by_one_and_stale_versions_are_refused() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let lead = create_ok(&app, json!({"email": "ann@acme.io", "title": "CTO"})).await;
        let id = lead["id"].clone();
        let v2 = update_ok(&app, json!({"id": id, "expectedVersion": 1, "title": "CEO"})).await;
        assert_eq!(v2["version"], json!(2), "{backend:?}");
        let v3 = update_ok(&app, json!({"id": id, "title": "COO"})).await;
        assert_eq!(v3["version"], json!(3), "{backend:?}");
        for stale in [1, 2, 4, 0] {
            let payload = update(
                &app,
                json!({"id": id, "expectedVersion": stale, "title": "Intern"}),
            )
            .await;
            assert_eq!(payload["lead"], Value::Null, "{payload}");
            assert_eq!(
                codes(&payload["userErrors"]),
                vec![(path(&["input", "expectedVersion"]), "STALE_VERSION".to_owned())],
                "{backend:?} expectedVersion {stale}"
            );
        }
        assert_eq!(
            fetch(&app, &id).await,
            v3,
            "{backend:?} a stale update changed the lead"
        );
        let v4 = update_ok(&app, json!({"id": id, "expectedVersion": 3, "title": "Intern"})).await;
        assert_eq!(v4["version"], json!(4));
        assert_eq!(v4["title"], json!("Intern"));
    }
}

/// Without `expectedVersion` nobody asked for a compare-and-set: updates racing on one lead
/// all land (each a version of its own), none gets `STALE_VERSION`.
#[tokio::test]
async fn concurrent_updates_without_an_expected_version_all_land() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let lead = create_ok(&app, json!({"email": "ann@acme.io", "title": "CTO"})).await;
        let id = lead["id"].clone();
        let n = 16;
        let payloads = futures_util::future::join_all(
            (0..n).map(|i| update(&app, json!({"id": id, "title": format!("Title {i}")}))),
        )
        .await;
        for payload in &payloads {
            assert_eq!(payload["userErrors"], json!([]), "{backend:?} {payload}");
        }
        let mut versions: Vec<i64> = payloads
            .iter()
            .map(|p| p["lead"]["version"].as_i64().expect("version"))
            .collect();
        versions.sort_unstable();
        assert_eq!(versions, (2..2 + n).collect::<Vec<i64>>(), "{backend:?}");
        let last = payloads
            .iter()
            .find(|p| p["lead"]["version"] == json!(1 + n))
            .expect("the last write");
        assert_eq!(
            fetch(&app, &id).await["title"],
            last["lead"]["title"],
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn update_lead_that_changes_nothing_keeps_the_version() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let lead = create_ok(
            &app,
            json!({"email": "ann@acme.io", "title": "CTO", "country": "DE", "tags": ["a", "b"], "score": 5}),
        )
        .await;
        let id = lead["id"].clone();
        for same in [
            json!({"id": id}),
            json!({"id": id, "title": " CTO "}),
            json!({"id": id, "email": "ANN@acme.io", "country": "de", "expectedVersion": 1}),
            json!({"id": id, "tags": ["a", "b", "a"], "score": 5, "status": "NEW"}),
            json!({"id": id, "phone": null}),
        ] {
            let unchanged = update_ok(&app, same.clone()).await;
            assert_eq!(unchanged, lead, "{backend:?} {same}");
        }
        assert_eq!(fetch(&app, &id).await, lead, "{backend:?}");
    }
}

#[tokio::test]
async fn update_lead_to_an_email_another_lead_has_is_taken() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        create_ok(&app, json!({"email": "ann@acme.io"})).await;
        let bob = create_ok(&app, json!({"email": "bob@acme.io", "title": "CFO"})).await;
        let payload = update(
            &app,
            json!({"id": bob["id"], "email": " Ann@ACME.io", "title": "CEO"}),
        )
        .await;
        assert_eq!(payload["lead"], Value::Null, "{payload}");
        assert_eq!(
            codes(&payload["userErrors"]),
            vec![(path(&["input", "email"]), "TAKEN".to_owned())],
            "{backend:?}"
        );
        assert_eq!(
            fetch(&app, &bob["id"]).await,
            bob,
            "{backend:?} a refused update changed the lead"
        );
    }
}

#[tokio::test]
async fn update_lead_rejects_invalid_values_and_changes_nothing() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let lead = create_ok(&app, json!({"email": "ann@acme.io", "title": "CTO"})).await;
        let id = lead["id"].clone();
        let payload = update(&app, json!({"id": id, "status": null})).await;
        assert_eq!(payload["lead"], Value::Null, "{payload}");
        assert_eq!(
            codes(&payload["userErrors"]),
            vec![(path(&["input", "status"]), "REQUIRED".to_owned())],
            "{backend:?}"
        );
        for (input, field, code) in [
            (json!({"id": id, "score": 101}), "score", "INVALID"),
            (json!({"id": id, "email": "not-an-email"}), "email", "INVALID"),
            (json!({"id": id, "email": " "}), "email", "REQUIRED"),
            (
                json!({"id": id, "country": "Germany", "title": "CEO"}),
                "country",
                "INVALID",
            ),
            (json!({"id": id, "tags": [""]}), "tags", "REQUIRED"),
        ] {
            let payload = update(&app, input.clone()).await;
            assert_eq!(payload["lead"], Value::Null, "{payload}");
            assert_eq!(
                codes(&payload["userErrors"]),
                vec![(path(&["input", field]), code.to_owned())],
                "{backend:?} {input}"
            );
        }
        assert_eq!(fetch(&app, &id).await, lead, "{backend:?}");
    }
}

#[tokio::test]
async fn archive_hides_a_lead_and_restore_brings_it_back_idempotently() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let keep = create_ok(&app, json!({"email": "keep@acme.io"})).await;
        let lead = create_ok(&app, json!({"email": "ann@acme.io"})).await;
        let id = lead["id"].clone();
        let archive = archive_mutation("archiveLead");
        let restore = archive_mutation("restoreLead");

        let archived = app.gql(Role::Member, &archive, json!({ "id": id })).await["archiveLead"].clone();
        assert_eq!(archived["userErrors"], json!([]));
        let archived = archived["lead"].clone();
        assert!(archived["archivedAt"].is_string(), "{backend:?}: {archived}");
        assert_eq!(archived["version"], json!(2));
        assert_eq!(fetch(&app, &id).await, archived, "archived leads stay readable");
        let (active, archived_count, ids) = stored(&app).await;
        assert_eq!((active, archived_count), (1, 1), "{backend:?}");
        assert_eq!(ids, vec![keep["id"].as_str().unwrap(), id.as_str().unwrap()]);

        // archiving again changes nothing
        let again = app.gql(Role::Member, &archive, json!({ "id": id })).await["archiveLead"].clone();
        assert_eq!(again["userErrors"], json!([]));
        assert_eq!(again["lead"], archived, "{backend:?} archive is not idempotent");
        assert_eq!(stored(&app).await.0, 1);
        assert_eq!(stored(&app).await.1, 1, "{backend:?} counted twice");

        // an archived lead can still be updated and stays archived
        let edited = update_ok(&app, json!({"id": id, "title": "CTO"})).await;
        assert_eq!(edited["archivedAt"], archived["archivedAt"]);

        let restored = app.gql(Role::Member, &restore, json!({ "id": id })).await["restoreLead"].clone();
        assert_eq!(restored["userErrors"], json!([]));
        let restored = restored["lead"].clone();
        assert_eq!(restored["archivedAt"], Value::Null, "{backend:?}");
        assert_eq!(restored["version"], json!(4));
        assert_eq!(restored["title"], json!("CTO"));
        let again = app.gql(Role::Member, &restore, json!({ "id": id })).await["restoreLead"].clone();
        assert_eq!(again["lead"], restored, "{backend:?} restore is not idempotent");
        let (active, archived_count, _) = stored(&app).await;
        assert_eq!((active, archived_count), (2, 0), "{backend:?}");
        assert_eq!(fetch(&app, &id).await, restored);
    }
}

#[tokio::test]
async fn mutations_on_unknown_or_malformed_ids_are_errors() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let ws = app
            .gql(Role::Viewer, "{ viewer { workspace { id } } }", json!({}))
            .await["viewer"]["workspace"]["id"]
            .clone();
        assert!(ws.is_string());
        use base64::Engine;
        let unknown =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("Lead:{}", uuid::Uuid::now_v7()));
        let lead = create_ok(&app, json!({"email": "ann@acme.io"})).await;
        let cases = [
            (json!(unknown), "NOT_FOUND"),
            (json!("garbage!"), "BAD_USER_INPUT"),
            (json!(""), "BAD_USER_INPUT"),
            (ws.clone(), "BAD_USER_INPUT"),
        ];
        for name in ["archiveLead", "restoreLead"] {
            for (id, code) in &cases {
                let body = app
                    .gql_err(Role::Member, &archive_mutation(name), json!({ "id": id }))
                    .await;
                assert_eq!(first_code(&body), *code, "{backend:?} {name}({id}): {body}");
                assert_eq!(body["data"], Value::Null, "{body}");
            }
        }
        for (id, code) in &cases {
            let body = app
                .gql_err(
                    Role::Member,
                    &update_mutation(),
                    json!({"input": {"id": id, "title": "X"}}),
                )
                .await;
            assert_eq!(first_code(&body), *code, "{backend:?} updateLead({id}): {body}");
        }
        // reading an unknown lead is null, a malformed id an error
        assert_eq!(fetch(&app, &json!(unknown)).await, Value::Null);
        let q = "query($id: ID!) { lead(id: $id) { id } }";
        let body = app.gql_err(Role::Viewer, q, json!({ "id": ws })).await;
        assert_eq!(first_code(&body), "BAD_USER_INPUT", "{body}");
        assert_eq!(fetch(&app, &lead["id"]).await, lead, "{backend:?}");
    }
}

#[tokio::test]
async fn upsert_leads_creates_updates_and_reports_each_row_in_order() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let ann = create_ok(
            &app,
            json!({"email": "ann@acme.io", "firstName": "Ann", "title": "CTO", "score": 10}),
        )
        .await;
        let bob = create_ok(&app, json!({"email": "bob@acme.io", "firstName": "Bob"})).await;
        let payload = upsert(
            &app,
            json!([
                {"email": "new1@initech.com", "firstName": "New", "score": 30},
                {"email": " ANN@acme.io ", "title": "CEO", "score": 20},
                {"firstName": "No email"},
                {"email": "bob@acme.io", "firstName": "Bob"},
                {"email": "not-an-email", "firstName": "Bad"},
                {"email": "bad-score@acme.io", "score": 500},
                {"email": "new2@gmail.com", "status": "CONTACTED"},
                {"email": "", "firstName": "Blank"},
            ]),
        )
        .await;
        assert_eq!(payload["userErrors"], json!([]), "{payload}");
        let results = payload["results"].as_array().unwrap();
        let outcomes: Vec<(i64, &str)> = results
            .iter()
            .map(|r| (r["index"].as_i64().unwrap(), r["outcome"].as_str().unwrap()))
            .collect();
        assert_eq!(
            outcomes,
            vec![
                (0, "CREATED"),
                (1, "UPDATED"),
                (2, "FAILED"),
                (3, "UNCHANGED"),
                (4, "FAILED"),
                (5, "FAILED"),
                (6, "CREATED"),
                (7, "FAILED"),
            ],
            "{backend:?}: {payload}"
        );
        let counts = [
            &payload["createdCount"],
            &payload["updatedCount"],
            &payload["unchangedCount"],
            &payload["failedCount"],
        ];
        assert_eq!(counts, [&json!(2), &json!(1), &json!(1), &json!(4)], "{payload}");

        let errors = |i: usize| codes(&results[i]["userErrors"]);
        assert_eq!(
            errors(2),
            vec![(path(&["input", "leads", "2", "email"]), "REQUIRED".to_owned())]
        );
        assert_eq!(
            errors(4),
            vec![(path(&["input", "leads", "4", "email"]), "INVALID".to_owned())]
        );
        assert_eq!(
            errors(5),
            vec![(path(&["input", "leads", "5", "score"]), "INVALID".to_owned())]
        );
        assert_eq!(
            errors(7),
            vec![(path(&["input", "leads", "7", "email"]), "REQUIRED".to_owned())]
        );
        for i in [0, 1, 3, 6] {
            assert_eq!(results[i]["userErrors"], json!([]), "row {i}");
        }
        for i in [2, 4, 5, 7] {
            assert_eq!(results[i]["lead"], Value::Null, "row {i}");
        }

        // the updated row changed the given fields and kept the rest
        let updated = &results[1]["lead"];
        assert_eq!(updated["id"], ann["id"]);
        assert_eq!(updated["title"], json!("CEO"));
        assert_eq!(updated["score"], json!(20));
        assert_eq!(updated["firstName"], json!("Ann"));
        assert_eq!(updated["version"], json!(2));
        let read = fetch(&app, &ann["id"]).await;
        assert_eq!(
            (
                &read["title"],
                &read["score"],
                &read["firstName"],
                &read["version"]
            ),
            (&json!("CEO"), &json!(20), &json!("Ann"), &json!(2)),
            "{backend:?}"
        );
        // the unchanged row is the same lead at the same version
        assert_eq!(results[3]["lead"]["id"], bob["id"]);
        assert_eq!(results[3]["lead"]["version"], json!(1));
        assert_eq!(fetch(&app, &bob["id"]).await, bob, "{backend:?}");
        // created rows are real leads with derived fields
        let created = fetch(&app, &results[0]["lead"]["id"]).await;
        assert_eq!(created["email"], json!("new1@initech.com"));
        assert_eq!(created["companyDomain"], json!("initech.com"));
        assert_eq!(created["score"], json!(30));
        assert_eq!(created["version"], json!(1));
        let webmail = fetch(&app, &results[6]["lead"]["id"]).await;
        assert_eq!(webmail["companyDomain"], Value::Null);
        assert_eq!(webmail["status"], json!("CONTACTED"));

        // failed rows wrote nothing
        let (active, archived, listed) = stored(&app).await;
        assert_eq!((active, archived, listed.len()), (4, 0, 4), "{backend:?}");
        let q = "query { leads(first: 50, filter: {search: \"bad-score\"}) { totalCount } }";
        assert_eq!(
            app.gql(Role::Viewer, q, json!({})).await["leads"]["totalCount"],
            json!(0)
        );
    }
}

#[tokio::test]
async fn upsert_leads_with_one_email_twice_makes_one_lead() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let payload = upsert(
            &app,
            json!([
                {"email": "ann@acme.io", "firstName": "Ann"},
                {"email": "ANN@acme.io", "title": "CTO"},
                {"email": "ann@acme.io ", "firstName": "Ann"},
                {"email": "bob@acme.io"},
                {"email": "bob@acme.io"},
            ]),
        )
        .await;
        assert_eq!(payload["userErrors"], json!([]), "{payload}");
        let results = payload["results"].as_array().unwrap();
        let outcomes: Vec<&str> = results.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
        assert_eq!(
            outcomes,
            vec!["CREATED", "UPDATED", "UNCHANGED", "CREATED", "UNCHANGED"],
            "{backend:?}: {payload}"
        );
        assert_eq!(results[1]["lead"]["id"], results[0]["lead"]["id"]);
        assert_eq!(results[2]["lead"]["id"], results[0]["lead"]["id"]);
        assert_eq!(results[4]["lead"]["id"], results[3]["lead"]["id"]);
        assert_eq!(
            [
                &payload["createdCount"],
                &payload["updatedCount"],
                &payload["unchangedCount"],
                &payload["failedCount"]
            ],
            [&json!(2), &json!(1), &json!(2), &json!(0)]
        );
        let ann = fetch(&app, &results[0]["lead"]["id"]).await;
        assert_eq!(ann["firstName"], json!("Ann"));
        assert_eq!(ann["title"], json!("CTO"));
        assert_eq!(ann["version"], json!(2));
        let (active, _, ids) = stored(&app).await;
        assert_eq!(active, 2, "{backend:?}");
        assert_eq!(ids.len(), 2, "{backend:?}");
    }
}

#[tokio::test]
async fn upsert_leads_of_more_than_a_thousand_rows_is_too_long_and_writes_nothing() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let rows: Vec<Value> = (0..1001)
            .map(|i| json!({ "email": format!("lead{i}@acme.io") }))
            .collect();
        let payload = upsert(&app, json!(rows)).await;
        assert_eq!(
            codes(&payload["userErrors"]),
            vec![(path(&["input", "leads"]), "TOO_LONG".to_owned())],
            "{backend:?}"
        );
        assert_eq!(payload["results"], json!([]));
        for key in ["createdCount", "updatedCount", "unchangedCount", "failedCount"] {
            assert_eq!(payload[key], json!(0), "{key}");
        }
        assert_eq!(stored(&app).await.0, 0, "{backend:?}");

        // exactly a thousand is accepted
        let payload = upsert(&app, json!(rows[..1000])).await;
        assert_eq!(payload["userErrors"], json!([]), "{backend:?}");
        assert_eq!(payload["createdCount"], json!(1000));
        let q = "query { leads(first: 1) { totalCount } }";
        let data = app.gql(Role::Viewer, q, json!({})).await;
        assert_eq!(data["leads"]["totalCount"], json!(1000), "{backend:?}");
    }
}

#[tokio::test]
async fn upsert_leads_with_no_rows_does_nothing() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let payload = upsert(&app, json!([])).await;
        assert_eq!(payload["userErrors"], json!([]), "{backend:?}");
        assert_eq!(payload["results"], json!([]));
        assert_eq!(payload["createdCount"], json!(0));
        assert_eq!(stored(&app).await.0, 0);
    }
}
