//! The `leads` connection: keyset paging both ways under every order, filters, counts, and
//! the errors for bad paging arguments.

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
