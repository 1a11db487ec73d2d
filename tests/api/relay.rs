//! The Relay connections: `leads` (keyset paging both ways under every order, filters, counts,
//! the errors for bad paging arguments), and every other connection field walked both ways
//! against a reference list the test builds from what it created.

use crate::helpers::{TestApp, backends, first_code, spawn_app};
use leadgate::domain::{Lead, LeadStatus, Role};
use serde_json::{Value, json};

const PAGE: &str = "query($first: Int, $after: String, $last: Int, $before: String, $filter: LeadFilter, $orderBy: LeadOrder) {
  leads(first: $first, after: $after, last: $last, before: $before, filter: $filter, orderBy: $orderBy) {
    edges { cursor node { id email lastName companyName score status } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}";

/// 137 leads with repeating sort keys, so ties must be broken by id.
async fn seed(app: &TestApp) -> Vec<Lead> {
    let mut generator = leadgate::bulk::synthetic::Generator::new(9);
    let now = leadgate::domain::now();
    let mut leads: Vec<Lead> = (0..137).map(|_| generator.lead(app.workspace.id, now)).collect();
    for (i, lead) in leads.iter_mut().enumerate() {
        lead.score = leadgate::domain::Score::from_trusted((i % 7) as i64 * 10);
        if i % 10 == 0 {
            lead.company_name = None;
        }
    }
    app.services
        .store
        .insert_leads_bulk(app.workspace.id, &leads)
        .await
        .unwrap();
    leads
}

fn ids(page: &Value) -> Vec<String> {
    page["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn walk_forward(app: &TestApp, order: Value, size: i64) -> Vec<String> {
    let mut after: Option<String> = None;
    let mut all = Vec::new();
    let mut first_page = true;
    loop {
        let data = app
            .gql(
                Role::Viewer,
                PAGE,
                json!({"first": size, "after": after, "orderBy": order}),
            )
            .await;
        let page = &data["leads"];
        all.extend(ids(page));
        assert_eq!(page["pageInfo"]["hasPreviousPage"], json!(!first_page));
        first_page = false;
        if page["pageInfo"]["hasNextPage"] == json!(false) {
            break;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    all
}

async fn walk_backward(app: &TestApp, order: Value, size: i64) -> Vec<String> {
    let mut before: Option<String> = None;
    let mut all = Vec::new();
    loop {
        let data = app
            .gql(
                Role::Viewer,
                PAGE,
                json!({"last": size, "before": before, "orderBy": order}),
            )
            .await;
        let page = &data["leads"];
        let mut chunk = ids(page);
        chunk.extend(all);
        all = chunk;
        assert_eq!(page["pageInfo"]["hasNextPage"], json!(before.is_some()));
        if page["pageInfo"]["hasPreviousPage"] == json!(false) {
            break;
        }
        before = page["pageInfo"]["startCursor"].as_str().map(str::to_owned);
    }
    all
}

fn expected_order(leads: &[Lead], field: &str, desc: bool) -> Vec<String> {
    let mut sorted: Vec<&Lead> = leads.iter().collect();
    let key = |l: &Lead| -> (String, i64, leadgate::domain::LeadId) {
        match field {
            "SCORE" => (String::new(), i64::from(l.score.value()), l.id),
            "COMPANY_NAME" => (l.company_name.clone().unwrap_or_default(), 0, l.id),
            "LAST_NAME" => (l.last_name.clone().unwrap_or_default(), 0, l.id),
            "CREATED_AT" => (String::new(), l.created_at.timestamp_micros(), l.id),
            _ => (String::new(), l.updated_at.timestamp_micros(), l.id),
        }
    };
    sorted.sort_by_key(|l| key(l));
    if desc {
        sorted.reverse();
    }
    sorted.into_iter().map(leadgate_global_id).collect()
}

fn leadgate_global_id(l: &Lead) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("Lead:{}", l.id))
}

#[tokio::test]
async fn paging_forward_and_backward_visits_every_lead_once_in_every_order() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let leads = seed(&app).await;
        for field in ["CREATED_AT", "UPDATED_AT", "LAST_NAME", "COMPANY_NAME", "SCORE"] {
            for direction in ["ASC", "DESC"] {
                let order = json!({"field": field, "direction": direction});
                let expected = expected_order(&leads, field, direction == "DESC");
                let forward = walk_forward(&app, order.clone(), 20).await;
                assert_eq!(forward, expected, "{backend:?} forward {field} {direction}");
                let backward = walk_backward(&app, order, 30).await;
                assert_eq!(backward, expected, "{backend:?} backward {field} {direction}");
            }
        }
    }
}

#[tokio::test]
async fn paging_is_stable_while_leads_are_inserted() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let leads = seed(&app).await;
        let order = json!({"field": "CREATED_AT", "direction": "ASC"});
        let data = app
            .gql(Role::Viewer, PAGE, json!({"first": 50, "orderBy": order}))
            .await;
        let first = ids(&data["leads"]);
        let cursor = data["leads"]["pageInfo"]["endCursor"]
            .as_str()
            .unwrap()
            .to_owned();
        // a lead created "before" everything already seen must not shift the next page
        let mut early = leads[0].clone();
        early.id = leadgate::domain::LeadId::new();
        early.email = None;
        early.created_at = chrono::DateTime::from_timestamp(0, 0).unwrap();
        app.services.store.insert_lead(&early).await.unwrap();
        let data = app
            .gql(
                Role::Viewer,
                PAGE,
                json!({"first": 50, "after": cursor, "orderBy": order}),
            )
            .await;
        let second = ids(&data["leads"]);
        let expected = expected_order(&leads, "CREATED_AT", false);
        assert_eq!(first, expected[..50].to_vec());
        assert_eq!(second, expected[50..100].to_vec(), "{backend:?}");
    }
}

#[tokio::test]
async fn default_page_is_fifty_and_empty_workspace_has_empty_page() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let data = app.gql(Role::Viewer, PAGE, json!({})).await;
        assert_eq!(data["leads"]["edges"], json!([]));
        assert_eq!(data["leads"]["pageInfo"]["startCursor"], Value::Null);
        assert_eq!(data["leads"]["pageInfo"]["hasNextPage"], json!(false));
        seed(&app).await;
        let data = app.gql(Role::Viewer, PAGE, json!({})).await;
        assert_eq!(ids(&data["leads"]).len(), 50);
        let data = app.gql(Role::Viewer, PAGE, json!({"first": 0})).await;
        assert_eq!(ids(&data["leads"]).len(), 0);
        assert_eq!(data["leads"]["pageInfo"]["hasNextPage"], json!(true));
    }
}

#[tokio::test]
async fn bad_paging_arguments_are_bad_user_input() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        seed(&app).await;
        let data = app.gql(Role::Viewer, PAGE, json!({"first": 2})).await;
        let cursor = data["leads"]["pageInfo"]["endCursor"]
            .as_str()
            .unwrap()
            .to_owned();
        let cases = [
            (json!({"first": 1, "last": 1}), "not both"),
            (json!({"first": -1}), "negative"),
            (json!({"last": -5}), "negative"),
            (json!({"first": 501}), "at most 500"),
            (json!({"first": 5, "after": "garbage!"}), "not a valid cursor"),
            (json!({"first": 5, "after": "bGMx"}), "not a valid cursor"),
            (
                json!({"first": 5, "before": "TGVhZDowMWEy"}),
                "not a valid cursor",
            ),
            (
                json!({"first": 5, "after": cursor, "orderBy": {"field": "SCORE", "direction": "ASC"}}),
                "different orderBy",
            ),
            (
                json!({"first": 5, "after": cursor, "orderBy": {"field": "CREATED_AT", "direction": "DESC"}}),
                "different orderBy",
            ),
        ];
        for (vars, needle) in cases {
            let body = app.gql_err(Role::Viewer, PAGE, vars.clone()).await;
            assert_eq!(first_code(&body), "BAD_USER_INPUT", "{vars}: {body}");
            let message = body["errors"][0]["message"].as_str().unwrap();
            assert!(message.contains(needle), "{vars}: {message}");
        }
    }
}

#[tokio::test]
async fn filters_match_the_reference_model() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let leads = seed(&app).await;
        let sample = &leads[3];
        let country = sample.country.as_ref().unwrap().as_str().to_owned();
        let owner = leads.iter().find_map(|l| l.owner.clone()).unwrap();
        let search = sample.last_name.as_ref().unwrap().to_lowercase()[..3].to_owned();
        let tag = leads.iter().find_map(|l| l.tags.iter().next().cloned()).unwrap();
        let filters = [
            json!({"status": ["QUALIFIED", "CUSTOMER"]}),
            json!({"country": [country.to_lowercase()]}),
            json!({"owner": [owner]}),
            json!({"source": ["webinar"]}),
            json!({"score": {"min": 20, "max": 40}}),
            json!({"hasEmail": false}),
            json!({"search": search.to_uppercase()}),
            json!({"tags": {"anyOf": [tag.as_str(), "nope"]}}),
            json!({"tags": {"allOf": [tag.as_str(), "hot"]}}),
            json!({"status": ["NEW"], "country": [country.clone()]}),
            json!({"createdAt": {"from": sample.created_at.to_rfc3339()}}),
            json!({"updatedAt": {"to": sample.updated_at.to_rfc3339()}}),
        ];
        for filter in filters {
            let data = app
                .gql(Role::Viewer, PAGE, json!({"first": 500, "filter": filter, "orderBy": {"field": "SCORE", "direction": "DESC"}}))
                .await;
            let got: std::collections::BTreeSet<String> = ids(&data["leads"]).into_iter().collect();
            let domain_filter = to_domain(&filter);
            let want: std::collections::BTreeSet<String> = leads
                .iter()
                .filter(|l| crate::reference::matches(&domain_filter, l))
                .map(leadgate_global_id)
                .collect();
            assert!(
                !want.is_empty() || filter.get("hasEmail").is_some(),
                "filter {filter} selects nothing"
            );
            assert_eq!(got, want, "{backend:?} filter {filter}");
        }
    }
}

/// The same filter as the domain type, for the reference model.
fn to_domain(filter: &Value) -> leadgate::domain::LeadFilter {
    use leadgate::domain::{CountryCode, LeadFilter, Score, Tag, TagMatch};
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    let time = |v: &Value| {
        v.as_str()
            .map(|s| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc())
    };
    let mut f = LeadFilter {
        statuses: strings(&filter["status"])
            .iter()
            .map(|s| LeadStatus::parse(s).unwrap())
            .collect(),
        owners: strings(&filter["owner"]),
        countries: strings(&filter["country"])
            .iter()
            .map(|c| CountryCode::parse("country", c).unwrap())
            .collect(),
        sources: strings(&filter["source"]),
        score_min: filter["score"]["min"].as_i64().map(Score::from_trusted),
        score_max: filter["score"]["max"].as_i64().map(Score::from_trusted),
        has_email: filter["hasEmail"].as_bool(),
        search: filter["search"].as_str().map(str::to_lowercase),
        created_from: time(&filter["createdAt"]["from"]),
        updated_to: time(&filter["updatedAt"]["to"]),
        ..Default::default()
    };
    for (key, mode) in [("anyOf", TagMatch::Any), ("allOf", TagMatch::All)] {
        let tags = strings(&filter["tags"][key]);
        if !tags.is_empty() {
            f.tags = Some((
                mode,
                tags.iter().map(|t| Tag::parse("tags", t).unwrap()).collect(),
            ));
        }
    }
    f
}

#[tokio::test]
async fn total_count_is_exact_unfiltered_and_follows_archiving() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let leads = seed(&app).await;
        let q = "query($filter: LeadFilter) { leads(first: 1, filter: $filter) { totalCount totalCountIsExact } }";
        let data = app.gql(Role::Viewer, q, json!({})).await;
        assert_eq!(
            data["leads"],
            json!({"totalCount": 137, "totalCountIsExact": true})
        );
        let id = leadgate_global_id(&leads[5]);
        app.gql(
            Role::Member,
            "mutation($id: ID!) { archiveLead(input: {id: $id}) { userErrors { code } } }",
            json!({"id": id}),
        )
        .await;
        let data = app.gql(Role::Viewer, q, json!({})).await;
        assert_eq!(data["leads"]["totalCount"], json!(136));
        let data = app
            .gql(Role::Viewer, q, json!({"filter": {"archived": true}}))
            .await;
        assert_eq!(data["leads"]["totalCount"], json!(1));
        let want = leads
            .iter()
            .filter(|l| l.status == LeadStatus::New && l.id != leads[5].id)
            .count();
        let data = app
            .gql(Role::Viewer, q, json!({"filter": {"status": ["NEW"]}}))
            .await;
        assert_eq!(
            data["leads"],
            json!({"totalCount": want, "totalCountIsExact": true})
        );
        // the other workspace's count is its own
        let token = app.token_in(&app.other, Role::Viewer);
        let (_, body) = app.post(Some(&token), json!({"query": q})).await;
        assert_eq!(body["data"]["leads"]["totalCount"], json!(0), "{backend:?}");
    }
}

// ---- every connection field, walked both ways against a reference list ----

const PAGE_ARGS: &str = "first: $first, after: $after, last: $last, before: $before";
const PAGE_INFO: &str = "pageInfo { hasNextPage hasPreviousPage startCursor endCursor }";

/// One connection field under test.
struct Listing {
    name: &'static str,
    query: String,
    /// Variables besides the paging ones.
    vars: Value,
    /// JSON pointer to the connection in `data`.
    at: &'static str,
    /// What identifies a node (a field of the node selection).
    key: &'static str,
    max: i64,
    /// The node keys in the order the connection lists them.
    expected: Vec<String>,
}

/// A query over one connection field: `open` is everything up to the field's selection set,
/// `close` what closes the fields around it.
fn listing_query(extra_vars: &str, open: &str, close: &str, key: &str) -> String {
    format!(
        "query($first: Int, $after: String, $last: Int, $before: String{extra_vars}) {{ {open} {{ \
         edges {{ cursor node {{ {key} }} }} {PAGE_INFO} }} {close} }}"
    )
}

impl Listing {
    fn variables(&self, paging: Value) -> Value {
        let mut vars = self.vars.clone();
        for (k, v) in paging.as_object().unwrap() {
            vars[k] = v.clone();
        }
        vars
    }

    async fn page(&self, app: &TestApp, paging: Value) -> Value {
        let data = app.gql(Role::Admin, &self.query, self.variables(paging)).await;
        data.pointer(self.at)
            .unwrap_or_else(|| panic!("{}: no connection in {data}", self.name))
            .clone()
    }

    async fn refused(&self, app: &TestApp, paging: Value, what: &str) {
        let body = app
            .gql_err(Role::Admin, &self.query, self.variables(paging))
            .await;
        assert_eq!(
            first_code(&body),
            "BAD_USER_INPUT",
            "{} {what}: {body}",
            self.name
        );
    }

    /// The page's node keys and cursors; checks `startCursor` and `endCursor` against them.
    fn read(&self, page: &Value) -> (Vec<String>, Vec<String>) {
        let edges = page["edges"].as_array().unwrap();
        let keys: Vec<String> = edges
            .iter()
            .map(|e| e["node"][self.key].as_str().unwrap().to_owned())
            .collect();
        let cursors: Vec<String> = edges
            .iter()
            .map(|e| e["cursor"].as_str().unwrap().to_owned())
            .collect();
        let info = &page["pageInfo"];
        assert_eq!(
            info["startCursor"].as_str(),
            cursors.first().map(String::as_str),
            "{}",
            self.name
        );
        assert_eq!(
            info["endCursor"].as_str(),
            cursors.last().map(String::as_str),
            "{}",
            self.name
        );
        (keys, cursors)
    }

    /// Pages forward with `first`/`after` to the end; returns every key and cursor met.
    async fn walk_forward(&self, app: &TestApp, size: i64) -> (Vec<String>, Vec<String>) {
        let total = self.expected.len();
        let (mut keys, mut cursors) = (Vec::new(), Vec::new());
        let mut after: Option<String> = None;
        loop {
            let page = self.page(app, json!({"first": size, "after": after})).await;
            let (k, c) = self.read(&page);
            let at = format!("{} forward after {} edges", self.name, keys.len());
            assert_eq!(k.len(), (total - keys.len()).min(size as usize), "{at}");
            keys.extend(k);
            cursors.extend(c);
            let info = &page["pageInfo"];
            assert_eq!(info["hasPreviousPage"], json!(after.is_some()), "{at}");
            assert_eq!(info["hasNextPage"], json!(keys.len() < total), "{at}");
            if keys.len() == total {
                return (keys, cursors);
            }
            after = Some(cursors.last().unwrap().clone());
        }
    }

    /// Pages backward with `last`/`before` to the start; returns the keys in connection order.
    async fn walk_backward(&self, app: &TestApp, size: i64) -> Vec<String> {
        let total = self.expected.len();
        let mut keys: Vec<String> = Vec::new();
        let mut before: Option<String> = None;
        loop {
            let page = self.page(app, json!({"last": size, "before": before})).await;
            let (mut k, c) = self.read(&page);
            let at = format!("{} backward before {} edges", self.name, keys.len());
            assert_eq!(k.len(), (total - keys.len()).min(size as usize), "{at}");
            k.extend(keys);
            keys = k;
            let info = &page["pageInfo"];
            assert_eq!(info["hasNextPage"], json!(before.is_some()), "{at}");
            assert_eq!(info["hasPreviousPage"], json!(keys.len() < total), "{at}");
            if keys.len() == total {
                return keys;
            }
            before = Some(c.first().unwrap().clone());
        }
    }

    /// Walks both ways, pages a window between two cursors, and checks the refusals; returns
    /// the first cursor, for the other connections to refuse.
    async fn check(&self, app: &TestApp) -> String {
        let size = 3;
        assert!(
            self.expected.len() > 2 * size as usize,
            "{}: too few items",
            self.name
        );
        let (forward, cursors) = self.walk_forward(app, size).await;
        assert_eq!(forward, self.expected, "{} forward", self.name);
        let backward = self.walk_backward(app, size).await;
        assert_eq!(backward, self.expected, "{} backward", self.name);

        // a window between two cursors, from either end
        let n = self.expected.len();
        let (from, to) = (&cursors[0], &cursors[n - 1]);
        for paging in [
            json!({"first": self.max, "after": from, "before": to}),
            json!({"last": self.max, "after": from, "before": to}),
        ] {
            let page = self.page(app, paging.clone()).await;
            let (keys, _) = self.read(&page);
            assert_eq!(keys, self.expected[1..n - 1].to_vec(), "{} {paging}", self.name);
        }
        // no edges: the flags still tell what lies around
        let page = self.page(app, json!({"first": 0, "after": from})).await;
        assert_eq!(self.read(&page).0, Vec::<String>::new());
        assert_eq!(
            page["pageInfo"],
            json!({"hasNextPage": true, "hasPreviousPage": true, "startCursor": null, "endCursor": null}),
            "{}",
            self.name
        );

        let garbage = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("xx1:1")
        };
        for (paging, what) in [
            (json!({"first": 1, "last": 1}), "first and last"),
            (json!({"first": -1}), "negative first"),
            (json!({"last": -1}), "negative last"),
            (json!({"first": self.max + 1}), "first over the maximum"),
            (json!({"last": self.max + 1}), "last over the maximum"),
            (json!({"first": 1, "after": "not a cursor!"}), "malformed after"),
            (json!({"last": 1, "before": garbage}), "unknown before"),
        ] {
            self.refused(app, paging, what).await;
        }
        cursors[0].clone()
    }
}

/// The global id a `kind` node of `id` has.
fn global_id(kind: &str, id: impl std::fmt::Display) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{kind}:{id}"))
}

/// The uuid of an object's global id.
fn uuid_of(global: &str) -> uuid::Uuid {
    use base64::Engine;
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(global)
        .unwrap();
    let text = String::from_utf8(text).unwrap();
    text.split_once(':').unwrap().1.parse().unwrap()
}

/// Newest first: the ids sorted from the largest down.
fn newest_first<T: Ord + Clone>(ids: &[T]) -> Vec<T> {
    let mut sorted = ids.to_vec();
    sorted.sort();
    sorted.reverse();
    sorted
}

const ITEMS: usize = 8;

/// Every connection field of the schema, with `ITEMS` items (or more) created in the test
/// workspace and the order each lists them in.
async fn listings(app: &TestApp) -> Vec<Listing> {
    use leadgate::domain::{
        Import, ImportErrorRow, JobFailure, NewJob, RetentionCounts, RetentionRun, RetentionRunId,
        RunTrigger, WebhookDelivery, WebhookId, now,
    };
    let store = &app.services.store;
    let ws = app.workspace.id;

    // imports, one of them with an error report of several errors per row
    let mut report = Import::new(ws, "csv", json!({}), "report.csv", now());
    store.create_import(&report).await.unwrap();
    let mut imports = vec![report.id];
    for i in 0..ITEMS {
        let import = Import::new(ws, "csv", json!({}), &format!("f{i}.csv"), now());
        store.create_import(&import).await.unwrap();
        imports.push(import.id);
    }
    let mut errors: Vec<ImportErrorRow> = (1..=4u64)
        .flat_map(|row| {
            (0..3u32).map(move |seq| ImportErrorRow {
                row,
                seq,
                column: None,
                reason: format!("row {row} error {seq}"),
                email_hash: None,
            })
        })
        .collect();
    // written out of order; the report lists them by (row, seq)
    errors.reverse();
    report.checkpoint.rows_done = 4;
    store
        .commit_import_chunk(&leadgate::store::ImportChunk {
            import: &report,
            previous_rows_done: 0,
            created: &[],
            updated: &[],
            errors: &errors,
        })
        .await
        .unwrap();
    let mut error_order: Vec<(u64, u32, String)> =
        errors.iter().map(|e| (e.row, e.seq, e.reason.clone())).collect();
    error_order.sort();

    // dead jobs, of a kind no worker runs
    let mut dead = Vec::new();
    for i in 0..ITEMS {
        let at = now();
        let job = NewJob::new(leadgate::domain::JobKind::new("relay.test"), json!({"i": i})).in_workspace(ws);
        let id = store.enqueue_job(&job, 1, at).await.unwrap().id;
        let lease = leadgate::store::Lease {
            token: format!("lease-{i}"),
            until: at + chrono::TimeDelta::seconds(60),
        };
        let claimed = store
            .claim_jobs(&["relay.test"], 1, &lease, at)
            .await
            .unwrap()
            .remove(0);
        let failure = JobFailure {
            attempt: claimed.attempts,
            at,
            error: "boom".into(),
        };
        assert!(store.fail_job(&claimed, &failure, None).await.unwrap());
        dead.push(id.as_i64());
    }

    // deliveries to an endpoint for an event nothing here causes
    let data = app
        .gql(
            Role::Admin,
            "mutation { createWebhookEndpoint(input: {url: \"https://hooks.example/relay\", eventTypes: [WEBHOOK_DISABLED]}) { endpoint { id } } }",
            json!({}),
        )
        .await;
    let endpoint = WebhookId::from_uuid(uuid_of(
        data["createWebhookEndpoint"]["endpoint"]["id"].as_str().unwrap(),
    ));
    let start = now();
    let mut deliveries = Vec::new();
    for i in 0..ITEMS {
        let at = start + chrono::TimeDelta::seconds(i as i64);
        let body = format!("delivery {i}");
        store
            .record_delivery(&WebhookDelivery {
                id: leadgate::domain::DeliveryId::from_i64(0),
                workspace_id: ws,
                endpoint_id: endpoint,
                event_seq: i as i64 + 1,
                event_type: "webhook.disabled".into(),
                attempt: 1,
                status: Some(500),
                response_body: Some(body.clone()),
                error: None,
                duration_ms: 1,
                succeeded: false,
                at,
            })
            .await
            .unwrap();
        deliveries.push((at, body));
    }
    deliveries.sort();
    deliveries.reverse();

    // retention runs
    let mut runs = Vec::new();
    for _ in 0..ITEMS {
        let run = RetentionRun {
            id: RetentionRunId::new(),
            workspace_id: ws,
            trigger: RunTrigger::Manual,
            dry_run: true,
            started_at: now(),
            finished_at: None,
            counts: RetentionCounts::default(),
            error: None,
        };
        store.save_retention_run(&run).await.unwrap();
        runs.push(run.id.as_uuid());
    }

    // erasures of leads made for the purpose
    let doomed = app
        .create_leads(
            (0..ITEMS)
                .map(|i| json!({"email": format!("gone{i}@relay.example")}))
                .collect(),
        )
        .await;
    let mut erasures = Vec::new();
    for id in doomed {
        let data = app
            .gql(
                Role::Admin,
                "mutation($id: ID!) { eraseLead(id: $id) { id } }",
                json!({"id": id}),
            )
            .await;
        erasures.push(uuid_of(data["eraseLead"]["id"].as_str().unwrap()));
    }

    // leads, one by one: the default order is the order they were created in
    let mut leads = Vec::new();
    for i in 0..ITEMS {
        let lead = app
            .create_lead(json!({"email": format!("kept{i}@relay.example")}))
            .await;
        leads.push(lead["id"].as_str().unwrap().to_owned());
    }

    // CRM connections (oldest first) and sync runs (newest first)
    let mut connections = Vec::new();
    for i in 0..ITEMS {
        let data = app
            .gql(
                Role::Admin,
                "mutation($input: CreateCrmConnectionInput!) { createCrmConnection(input: $input) { connection { id } userErrors { message } } }",
                json!({"input": {"kind": "HUBSPOT", "name": format!("crm {i}"), "apiBaseUrl": "http://127.0.0.1:9",
                                 "credentials": {"accessToken": "pat"}, "pushOnChange": false}}),
            )
            .await;
        connections.push(
            data["createCrmConnection"]["connection"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut crm_runs = Vec::new();
    for _ in 0..ITEMS {
        let run = leadgate::domain::CrmSyncRun {
            id: leadgate::domain::CrmRunId::new(),
            workspace_id: ws,
            connection_id: leadgate::domain::CrmConnectionId::from_uuid(uuid_of(&connections[0])),
            trigger: leadgate::domain::SyncTrigger::Poll,
            started_at: now(),
            finished_at: Some(now()),
            counts: leadgate::domain::SyncCounts::default(),
        };
        store.save_crm_run(&run).await.unwrap();
        crm_runs.push(run.id.as_uuid());
    }

    // API keys, newest first
    let mut api_keys = Vec::new();
    for i in 0..ITEMS {
        let data = app
            .gql(
                Role::Admin,
                "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { apiKey { id } userErrors { message } } }",
                json!({"input": {"name": format!("key {i}"), "role": "VIEWER", "scopes": ["READ_LEADS"]}}),
            )
            .await;
        api_keys.push(data["createApiKey"]["apiKey"]["id"].as_str().unwrap().to_owned());
    }
    api_keys.reverse();

    // campaigns, oldest first
    let mut campaigns = Vec::new();
    for i in 0..ITEMS {
        let data = app
            .gql(
                Role::Admin,
                "mutation($input: CreateCampaignInput!) { createCampaign(input: $input) { campaign { id } userErrors { message } } }",
                json!({"input": {"name": format!("campaign {i}"), "segment": {"filter": {}}, "senders": ["s@relay.example"],
                                 "steps": [{"email": {"subject": "Hi", "body": "Hello"}}]}}),
            )
            .await;
        campaigns.push(
            data["createCampaign"]["campaign"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }

    let report_id = global_id("Import", report.id);
    vec![
        Listing {
            name: "leads",
            query: listing_query("", &format!("leads({PAGE_ARGS})"), "", "id"),
            vars: json!({}),
            at: "/leads",
            key: "id",
            max: 500,
            expected: leads,
        },
        Listing {
            name: "imports",
            query: listing_query("", &format!("imports({PAGE_ARGS})"), "", "id"),
            vars: json!({}),
            at: "/imports",
            key: "id",
            max: 100,
            expected: newest_first(&imports)
                .into_iter()
                .map(|id| global_id("Import", id))
                .collect(),
        },
        Listing {
            name: "Import.errors",
            query: listing_query(
                ", $import: ID!",
                &format!("node(id: $import) {{ ... on Import {{ errors({PAGE_ARGS})"),
                "} }",
                "reason",
            ),
            vars: json!({"import": report_id}),
            at: "/node/errors",
            key: "reason",
            max: 1000,
            expected: error_order.into_iter().map(|(_, _, reason)| reason).collect(),
        },
        Listing {
            name: "JobQueue.dead",
            query: listing_query("", &format!("jobQueue {{ dead({PAGE_ARGS})"), "}", "id"),
            vars: json!({}),
            at: "/jobQueue/dead",
            key: "id",
            max: 100,
            expected: newest_first(&dead)
                .into_iter()
                .map(|id| global_id("Job", id))
                .collect(),
        },
        Listing {
            name: "WebhookEndpoint.deliveries",
            query: listing_query(
                "",
                &format!("webhookEndpoints {{ deliveries({PAGE_ARGS})"),
                "}",
                "responseBody",
            ),
            vars: json!({}),
            at: "/webhookEndpoints/0/deliveries",
            key: "responseBody",
            max: 100,
            expected: deliveries.into_iter().map(|(_, body)| body).collect(),
        },
        Listing {
            name: "retentionRuns",
            query: listing_query("", &format!("retentionRuns({PAGE_ARGS})"), "", "id"),
            vars: json!({}),
            at: "/retentionRuns",
            key: "id",
            max: 100,
            expected: newest_first(&runs)
                .into_iter()
                .map(|id| global_id("RetentionRun", id))
                .collect(),
        },
        Listing {
            name: "crmConnections",
            query: listing_query("", &format!("crmConnections({PAGE_ARGS})"), "", "id"),
            vars: json!({}),
            at: "/crmConnections",
            key: "id",
            max: 100,
            expected: connections,
        },
        Listing {
            name: "apiKeys",
            query: listing_query("", &format!("apiKeys({PAGE_ARGS})"), "", "id"),
            vars: json!({}),
            at: "/apiKeys",
            key: "id",
            max: 100,
            expected: api_keys,
        },
        Listing {
            name: "campaigns",
            query: listing_query("", &format!("campaigns({PAGE_ARGS})"), "", "id"),
            vars: json!({}),
            at: "/campaigns",
            key: "id",
            max: 100,
            expected: campaigns,
        },
        Listing {
            name: "crmSyncRuns",
            query: listing_query("", &format!("crmSyncRuns({PAGE_ARGS})"), "", "id"),
            vars: json!({}),
            at: "/crmSyncRuns",
            key: "id",
            max: 100,
            expected: newest_first(&crm_runs)
                .into_iter()
                .map(|id| global_id("CrmSyncRun", id))
                .collect(),
        },
        Listing {
            name: "erasures",
            query: listing_query("", &format!("erasures({PAGE_ARGS})"), "", "id"),
            vars: json!({}),
            at: "/erasures",
            key: "id",
            max: 100,
            expected: newest_first(&erasures)
                .into_iter()
                .map(|id| global_id("Erasure", id))
                .collect(),
        },
    ]
}

/// The connection fields of the committed schema: `Type.field` of every field whose type is
/// a `…Connection` (`field` alone on the query root).
fn schema_connection_fields() -> Vec<String> {
    use async_graphql::parser::types::{BaseType, TypeKind, TypeSystemDefinition};
    let sdl = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap();
    let document = async_graphql::parser::parse_schema(&sdl).unwrap();
    let mut fields = Vec::new();
    for definition in document.definitions {
        let TypeSystemDefinition::Type(ty) = definition else {
            continue;
        };
        let TypeKind::Object(object) = &ty.node.kind else {
            continue;
        };
        for field in &object.fields {
            let BaseType::Named(returns) = &field.node.ty.node.base else {
                continue;
            };
            if returns.ends_with("Connection") {
                fields.push(match ty.node.name.node.as_str() {
                    "Query" => field.node.name.node.to_string(),
                    owner => format!("{owner}.{}", field.node.name.node),
                });
            }
        }
    }
    fields.sort();
    fields
}

#[tokio::test]
async fn every_connection_pages_both_ways_like_its_reference_list() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let listings = listings(&app).await;
        let mut first_cursors = Vec::new();
        for listing in &listings {
            first_cursors.push((listing.name, listing.check(&app).await));
        }
        // a cursor of one connection is refused by every other
        for listing in &listings {
            for (name, cursor) in first_cursors.iter().filter(|(name, _)| *name != listing.name) {
                listing
                    .refused(
                        &app,
                        json!({"first": 1, "after": cursor}),
                        &format!("{name}'s cursor as after"),
                    )
                    .await;
                listing
                    .refused(
                        &app,
                        json!({"last": 1, "before": cursor}),
                        &format!("{name}'s cursor as before"),
                    )
                    .await;
            }
        }
        let mut covered: Vec<&str> = listings.iter().map(|l| l.name).collect();
        covered.sort_unstable();
        assert_eq!(
            covered,
            schema_connection_fields(),
            "every connection field of schema.graphql is walked here"
        );
    }
}
