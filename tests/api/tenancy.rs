//! Tenant isolation: a token for workspace B can neither see nor change workspace A's leads,
//! whichever way it names them.

use crate::helpers::{TestApp, backends, first_code, spawn_app};
use leadgate::domain::{Role, Workspace};
use serde_json::{Value, json};

const FIELDS: &str = "id email firstName title score status version archivedAt";

/// Runs a query in `ws` expecting no errors; returns `data`.
async fn gql_in(app: &TestApp, ws: &Workspace, role: Role, query: &str, variables: Value) -> Value {
    let token = app.token_in(ws, role);
    let (status, body) = app
        .post(Some(&token), json!({"query": query, "variables": variables}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
    body["data"].clone()
}

/// Runs a query in `ws` expecting errors; returns the whole body.
async fn gql_err_in(app: &TestApp, ws: &Workspace, role: Role, query: &str, variables: Value) -> Value {
    let token = app.token_in(ws, role);
    let (_, body) = app
        .post(Some(&token), json!({"query": query, "variables": variables}))
        .await;
    assert!(body.get("errors").is_some(), "expected errors: {body}");
    body
}

async fn create_in(app: &TestApp, ws: &Workspace, input: Value) -> Value {
    let q = format!(
        "mutation($input: CreateLeadInput!) {{ createLead(input: $input) {{ lead {{ {FIELDS} }} userErrors {{ code }} }} }}"
    );
    let data = gql_in(app, ws, Role::Member, &q, json!({ "input": input })).await;
    assert_eq!(data["createLead"]["userErrors"], json!([]), "{data}");
    data["createLead"]["lead"].clone()
}

async fn read_in(app: &TestApp, ws: &Workspace, id: &Value) -> Value {
    let q = format!("query($id: ID!) {{ lead(id: $id) {{ {FIELDS} }} }}");
    gql_in(app, ws, Role::Viewer, &q, json!({ "id": id })).await["lead"].clone()
}

/// Three leads in A (`acme`) and two in B (`globex`).
async fn seed(app: &TestApp) -> (Vec<Value>, Vec<Value>) {
    let mut a = Vec::new();
    for (i, email) in ["ann@acme.io", "bob@acme.io", "cy@acme.io"]
        .into_iter()
        .enumerate()
    {
        a.push(
            create_in(
                app,
                &app.workspace,
                json!({"email": email, "title": "A", "score": i * 10}),
            )
            .await,
        );
    }
    let mut b = Vec::new();
    for email in ["gus@globex.com", "hal@globex.com"] {
        b.push(create_in(app, &app.other, json!({"email": email, "title": "B"})).await);
    }
    (a, b)
}

fn ids(leads: &[Value]) -> Vec<Value> {
    leads.iter().map(|l| l["id"].clone()).collect()
}

#[tokio::test]
async fn another_workspaces_lead_is_null_by_id_node_and_nodes() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (a, b) = seed(&app).await;
        for role in [Role::Admin, Role::Viewer] {
            for lead in &a {
                let q = "query($id: ID!) { lead(id: $id) { id email } node(id: $id) { id } }";
                let data = gql_in(&app, &app.other, role, q, json!({"id": lead["id"]})).await;
                assert_eq!(data, json!({"lead": null, "node": null}), "{backend:?} {role:?}");
            }
            // nodes keeps order: B's own leads resolve, A's are null
            let asked = vec![
                a[0]["id"].clone(),
                b[0]["id"].clone(),
                a[1]["id"].clone(),
                b[1]["id"].clone(),
                a[2]["id"].clone(),
            ];
            let q = "query($ids: [ID!]!) { nodes(ids: $ids) { id ... on Lead { email } } }";
            let data = gql_in(&app, &app.other, role, q, json!({ "ids": asked })).await;
            assert_eq!(
                data["nodes"],
                json!([null, {"id": b[0]["id"], "email": "gus@globex.com"}, null,
                       {"id": b[1]["id"], "email": "hal@globex.com"}, null]),
                "{backend:?} {role:?}"
            );
        }
        // and the owner still sees them
        for lead in &a {
            assert_eq!(&read_in(&app, &app.workspace, &lead["id"]).await, lead);
        }
    }
}

#[tokio::test]
async fn another_workspaces_workspace_node_is_null() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let q = "{ viewer { workspace { id } } }";
        let a_ws = gql_in(&app, &app.workspace, Role::Admin, q, json!({})).await["viewer"]["workspace"]["id"]
            .clone();
        let b_ws =
            gql_in(&app, &app.other, Role::Admin, q, json!({})).await["viewer"]["workspace"]["id"].clone();
        assert_ne!(a_ws, b_ws);
        let q = "query($id: ID!) { node(id: $id) { id ... on Workspace { slug } } }";
        let data = gql_in(&app, &app.other, Role::Admin, q, json!({ "id": a_ws })).await;
        assert_eq!(data["node"], Value::Null, "{backend:?}");
        let data = gql_in(&app, &app.other, Role::Admin, q, json!({ "id": b_ws })).await;
        assert_eq!(data["node"], json!({"id": b_ws, "slug": "globex"}), "{backend:?}");
        let q = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }";
        let data = gql_in(&app, &app.other, Role::Viewer, q, json!({"ids": [a_ws, b_ws]})).await;
        assert_eq!(data["nodes"], json!([null, {"id": b_ws}]), "{backend:?}");
    }
}

const PAGE: &str = "query($first: Int, $after: String, $filter: LeadFilter) {
  leads(first: $first, after: $after, filter: $filter) {
    totalCount edges { cursor node { id email } } pageInfo { hasNextPage endCursor }
  }
}";

fn page_ids(page: &Value) -> Vec<Value> {
    page["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].clone())
        .collect()
}

#[tokio::test]
async fn the_leads_connection_lists_only_the_callers_workspace() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (a, b) = seed(&app).await;
        let data = gql_in(&app, &app.other, Role::Viewer, PAGE, json!({"first": 100})).await;
        assert_eq!(data["leads"]["totalCount"], json!(2), "{backend:?}");
        assert_eq!(page_ids(&data["leads"]), ids(&b), "{backend:?}");
        // filters that would match A's leads find nothing in B
        for filter in [
            json!({"search": "acme"}),
            json!({"score": {"min": 10}}),
            json!({"hasEmail": true, "search": "ann"}),
        ] {
            let data = gql_in(
                &app,
                &app.other,
                Role::Viewer,
                PAGE,
                json!({"first": 100, "filter": filter}),
            )
            .await;
            assert_eq!(data["leads"]["totalCount"], json!(0), "{backend:?} {filter}");
            assert_eq!(data["leads"]["edges"], json!([]), "{backend:?} {filter}");
        }
        // archived leads of A do not show under B's archived filter either
        let q = "mutation($id: ID!) { archiveLead(input: {id: $id}) { userErrors { code } } }";
        gql_in(&app, &app.workspace, Role::Member, q, json!({"id": a[0]["id"]})).await;
        let data = gql_in(
            &app,
            &app.other,
            Role::Viewer,
            PAGE,
            json!({"filter": {"archived": true}}),
        )
        .await;
        assert_eq!(data["leads"]["totalCount"], json!(0), "{backend:?}");
        assert_eq!(data["leads"]["edges"], json!([]));
        let data = gql_in(&app, &app.workspace, Role::Viewer, PAGE, json!({"first": 100})).await;
        assert_eq!(page_ids(&data["leads"]), ids(&a[1..]), "{backend:?}");
        assert_eq!(data["leads"]["totalCount"], json!(2));
    }
}

#[tokio::test]
async fn a_cursor_from_another_workspace_pages_only_the_callers_leads() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (a, _) = seed(&app).await;
        // B's leads, some created after all of A's and some before the last of A's
        let late1 = create_in(&app, &app.other, json!({"email": "b-late1@globex.com"})).await;
        create_in(&app, &app.workspace, json!({"email": "dee@acme.io"})).await;
        let late2 = create_in(&app, &app.other, json!({"email": "b-late2@globex.com"})).await;

        let data = gql_in(&app, &app.workspace, Role::Viewer, PAGE, json!({"first": 1})).await;
        let cursor = data["leads"]["edges"][0]["cursor"].clone();
        assert_eq!(page_ids(&data["leads"]), vec![a[0]["id"].clone()]);

        let data = gql_in(
            &app,
            &app.other,
            Role::Viewer,
            PAGE,
            json!({"first": 100, "after": cursor}),
        )
        .await;
        let seen = page_ids(&data["leads"]);
        let all_b = gql_in(&app, &app.other, Role::Viewer, PAGE, json!({"first": 100})).await;
        let b_ids = page_ids(&all_b["leads"]);
        assert_eq!(b_ids.len(), 4);
        assert!(
            !seen.is_empty(),
            "{backend:?}: B's leads after the cursor's instant are missing"
        );
        for id in &seen {
            assert!(b_ids.contains(id), "{backend:?}: {id} is not B's lead");
        }
        for lead in &a {
            assert!(
                !seen.contains(&lead["id"]),
                "{backend:?}: A's lead leaked through a cursor"
            );
        }
        // every B lead created after A's first lead is on the page
        assert_eq!(seen, b_ids, "{backend:?}");
        assert_eq!(data["leads"]["totalCount"], json!(4));
        assert!(seen.contains(&late1["id"]) && seen.contains(&late2["id"]));
    }
}

#[tokio::test]
async fn mutations_on_another_workspaces_lead_are_not_found_and_change_nothing() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (a, _) = seed(&app).await;
        let target = &a[1];
        let id = &target["id"];
        let update = "mutation($input: UpdateLeadInput!) { updateLead(input: $input) { lead { id } userErrors { code } } }";
        let archive =
            "mutation($id: ID!) { archiveLead(input: {id: $id}) { lead { id } userErrors { code } } }";
        let restore =
            "mutation($id: ID!) { restoreLead(input: {id: $id}) { lead { id } userErrors { code } } }";
        let cases = [
            (
                update,
                json!({"input": {"id": id, "title": "hijacked", "email": "evil@globex.com"}}),
            ),
            (
                update,
                json!({"input": {"id": id, "expectedVersion": 1, "score": 99}}),
            ),
            (update, json!({"input": {"id": id}})),
            (archive, json!({ "id": id })),
            (restore, json!({ "id": id })),
        ];
        for role in [Role::Admin, Role::Member] {
            for (mutation, vars) in &cases {
                let body = gql_err_in(&app, &app.other, role, mutation, vars.clone()).await;
                assert_eq!(
                    first_code(&body),
                    "NOT_FOUND",
                    "{backend:?} {role:?} {mutation}: {body}"
                );
                assert_eq!(body["data"], Value::Null, "{body}");
            }
        }
        assert_eq!(
            &read_in(&app, &app.workspace, id).await,
            target,
            "{backend:?}: A's lead changed"
        );

        // an archived lead of A cannot be restored from B either
        gql_in(&app, &app.workspace, Role::Member, archive, json!({ "id": id })).await;
        let archived = read_in(&app, &app.workspace, id).await;
        let body = gql_err_in(&app, &app.other, Role::Admin, restore, json!({ "id": id })).await;
        assert_eq!(first_code(&body), "NOT_FOUND", "{backend:?}: {body}");
        assert_eq!(read_in(&app, &app.workspace, id).await, archived, "{backend:?}");
        assert!(archived["archivedAt"].is_string());

        // counts of both workspaces are as seeded
        let q =
            "query { active: leads { totalCount } archived: leads(filter: {archived: true}) { totalCount } }";
        let data = gql_in(&app, &app.workspace, Role::Viewer, q, json!({})).await;
        assert_eq!(
            data,
            json!({"active": {"totalCount": 2}, "archived": {"totalCount": 1}}),
            "{backend:?}"
        );
        let data = gql_in(&app, &app.other, Role::Viewer, q, json!({})).await;
        assert_eq!(
            data,
            json!({"active": {"totalCount": 2}, "archived": {"totalCount": 0}}),
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn upserting_another_workspaces_email_creates_a_separate_lead() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let (a, _) = seed(&app).await;
        let q = format!(
            "mutation($leads: [CreateLeadInput!]!) {{ upsertLeads(input: {{leads: $leads}}) {{
                results {{ outcome lead {{ {FIELDS} }} userErrors {{ code }} }}
                createdCount updatedCount unchangedCount failedCount }} }}"
        );
        let rows = json!([
            {"email": "ANN@acme.io", "title": "hijacked", "score": 99},
            {"email": "bob@acme.io"},
        ]);
        let data = gql_in(&app, &app.other, Role::Member, &q, json!({ "leads": rows })).await;
        let payload = &data["upsertLeads"];
        let outcomes: Vec<&str> = payload["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(outcomes, vec!["CREATED", "CREATED"], "{backend:?}: {payload}");
        assert_eq!(payload["createdCount"], json!(2));
        let new_ann = &payload["results"][0]["lead"];
        assert_ne!(new_ann["id"], a[0]["id"]);
        assert_eq!(new_ann["email"], json!("ann@acme.io"));
        assert_eq!(new_ann["title"], json!("hijacked"));
        assert_eq!(new_ann["version"], json!(1));
        assert_eq!(payload["results"][1]["lead"]["firstName"], Value::Null);

        // A's leads are untouched, and each workspace sees only its own copy
        for lead in &a {
            assert_eq!(
                &read_in(&app, &app.workspace, &lead["id"]).await,
                lead,
                "{backend:?}"
            );
        }
        assert_eq!(read_in(&app, &app.workspace, &new_ann["id"]).await, Value::Null);
        assert_eq!(&read_in(&app, &app.other, &new_ann["id"]).await, new_ann);
        let search = json!({"first": 100, "filter": {"search": "ann@acme.io"}});
        let data = gql_in(&app, &app.workspace, Role::Viewer, PAGE, search.clone()).await;
        assert_eq!(page_ids(&data["leads"]), vec![a[0]["id"].clone()], "{backend:?}");
        let data = gql_in(&app, &app.other, Role::Viewer, PAGE, search).await;
        assert_eq!(
            page_ids(&data["leads"]),
            vec![new_ann["id"].clone()],
            "{backend:?}"
        );

        // a second upsert from B updates B's copy, still not A's
        let rows = json!([{"email": "ann@acme.io", "title": "again"}]);
        let data = gql_in(&app, &app.other, Role::Member, &q, json!({ "leads": rows })).await;
        let result = &data["upsertLeads"]["results"][0];
        assert_eq!(result["outcome"], json!("UPDATED"), "{backend:?}");
        assert_eq!(result["lead"]["id"], new_ann["id"]);
        assert_eq!(
            &read_in(&app, &app.workspace, &a[0]["id"]).await,
            &a[0],
            "{backend:?}"
        );

        // creating A's email in B directly is not TAKEN either
        let c = create_in(&app, &app.other, json!({"email": "cy@acme.io"})).await;
        assert_ne!(c["id"], a[2]["id"]);
    }
}
