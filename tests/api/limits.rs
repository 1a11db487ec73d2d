//! The protective limits on documents: depth, complexity and aliases, and that the standard
//! introspection query (what GraphiQL and code generators send) fits within the defaults.

use crate::helpers::{TestApp, backends, first_code, spawn_app, spawn_app_with};
use leadgate::domain::Role;
use serde_json::{Value, json};

/// `getIntrospectionQuery()` from graphql-js 16 with its default options.
pub const INTROSPECTION_QUERY: &str = r#"
    query IntrospectionQuery {
      __schema {
        queryType { name }
        mutationType { name }
        subscriptionType { name }
        types {
          ...FullType
        }
        directives {
          name
          description
          locations
          args {
            ...InputValue
          }
        }
      }
    }

    fragment FullType on __Type {
      kind
      name
      description
      fields(includeDeprecated: true) {
        name
        description
        args {
          ...InputValue
        }
        type {
          ...TypeRef
        }
        isDeprecated
        deprecationReason
      }
      inputFields {
        ...InputValue
      }
      interfaces {
        ...TypeRef
      }
      enumValues(includeDeprecated: true) {
        name
        description
        isDeprecated
        deprecationReason
      }
      possibleTypes {
        ...TypeRef
      }
    }

    fragment InputValue on __InputValue {
      name
      description
      type { ...TypeRef }
      defaultValue
    }

    fragment TypeRef on __Type {
      kind
      name
      ofType {
        kind
        name
        ofType {
          kind
          name
          ofType {
            kind
            name
            ofType {
              kind
              name
              ofType {
                kind
                name
                ofType {
                  kind
                  name
                  ofType {
                    kind
                    name
                  }
                }
              }
            }
          }
        }
      }
    }
"#;

/// The same query with every option GraphiQL turns on: schema description, `specifiedByURL`,
/// `isRepeatable`, deprecated input values and `isOneOf`.
pub const INTROSPECTION_QUERY_ALL_OPTIONS: &str = r#"
    query IntrospectionQuery {
      __schema {
        description
        queryType { name }
        mutationType { name }
        subscriptionType { name }
        types {
          ...FullType
        }
        directives {
          name
          description
          isRepeatable
          locations
          args(includeDeprecated: true) {
            ...InputValue
          }
        }
      }
    }

    fragment FullType on __Type {
      kind
      name
      description
      specifiedByURL
      isOneOf
      fields(includeDeprecated: true) {
        name
        description
        args(includeDeprecated: true) {
          ...InputValue
        }
        type {
          ...TypeRef
        }
        isDeprecated
        deprecationReason
      }
      inputFields(includeDeprecated: true) {
        ...InputValue
      }
      interfaces {
        ...TypeRef
      }
      enumValues(includeDeprecated: true) {
        name
        description
        isDeprecated
        deprecationReason
      }
      possibleTypes {
        ...TypeRef
      }
    }

    fragment InputValue on __InputValue {
      name
      description
      type { ...TypeRef }
      defaultValue
      isDeprecated
      deprecationReason
    }

    fragment TypeRef on __Type {
      kind
      name
      ofType {
        kind
        name
        ofType {
          kind
          name
          ofType {
            kind
            name
            ofType {
              kind
              name
              ofType {
                kind
                name
                ofType {
                  kind
                  name
                  ofType {
                    kind
                    name
                  }
                }
              }
            }
          }
        }
      }
    }
"#;

/// Every scalar and list field of a lead.
const ALL_LEAD_FIELDS: &str = "id email firstName lastName fullName title companyName companyDomain phone \
    linkedinUrl country source status owner score tags customFields createdAt updatedAt archivedAt version";

/// Posts a document as a viewer; returns (status, body).
async fn run(app: &TestApp, query: &str, variables: Value) -> (u16, Value) {
    let token = app.token(Role::Viewer);
    app.post(Some(&token), json!({"query": query, "variables": variables}))
        .await
}

/// Expects the document to be refused before execution by a limit.
async fn assert_refused(app: &TestApp, query: &str, variables: Value, needle: &str) {
    let (status, body) = run(app, query, variables).await;
    assert_eq!(status, 400, "{:?}: {body}", app.backend);
    assert!(body.get("data").is_none(), "{body}");
    assert_eq!(first_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "expected `{needle}` in: {body}");
}

/// Expects the document to run without errors; returns `data`.
async fn assert_runs(app: &TestApp, query: &str, variables: Value) -> Value {
    let (status, body) = run(app, query, variables).await;
    assert_eq!(status, 200, "{:?}: {body}", app.backend);
    assert!(body.get("errors").is_none(), "{body}");
    body["data"].clone()
}

/// `{ __schema { types { fields { type { ofType … { name } } } } } }`: `depth` fields deep.
fn nested_type_query(depth: usize) -> String {
    assert!(depth >= 5);
    let of_types = depth - 5;
    format!(
        "{{ __schema {{ types {{ fields {{ type {{ {}name{} }} }} }} }} }}",
        "ofType { ".repeat(of_types),
        " }".repeat(of_types)
    )
}

/// `n` aliased `__typename` fields named `{prefix}0`, `{prefix}1`, …
fn aliases(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("{prefix}{i}: __typename"))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn seed(app: &TestApp, n: usize) {
    let mut generator = leadgate::bulk::synthetic::Generator::new(5);
    let now = leadgate::domain::now();
    let leads: Vec<_> = (0..n).map(|_| generator.lead(app.workspace.id, now)).collect();
    app.services
        .store
        .insert_leads_bulk(app.workspace.id, &leads)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_standard_introspection_query_fits_the_default_limits() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let token = app.token(Role::Viewer);
        for query in [INTROSPECTION_QUERY, INTROSPECTION_QUERY_ALL_OPTIONS] {
            let (status, body) = app
                .post(
                    Some(&token),
                    json!({"query": query, "operationName": "IntrospectionQuery"}),
                )
                .await;
            assert_eq!(status, 200, "{backend:?}: {body}");
            assert!(body.get("errors").is_none(), "{body}");
            let schema = &body["data"]["__schema"];
            assert_eq!(schema["queryType"]["name"], "Query");
            assert_eq!(schema["mutationType"]["name"], "Mutation");
            assert_eq!(schema["subscriptionType"]["name"], "Subscription");
            let types = schema["types"].as_array().unwrap();
            let lead = types.iter().find(|t| t["name"] == "Lead").expect("type Lead");
            let id = lead["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == "id")
                .unwrap();
            assert_eq!(
                id["type"],
                json!({"kind": "NON_NULL", "name": null, "ofType": {"kind": "SCALAR", "name": "ID", "ofType": null}})
            );
            assert!(
                schema["directives"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|d| d["name"] == "skip")
            );
        }
    }
}

#[tokio::test]
async fn the_introspection_query_needs_depth_13() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| s.max_depth = 13).await;
        let data = assert_runs(&app, INTROSPECTION_QUERY, json!({})).await;
        assert_eq!(data["__schema"]["queryType"]["name"], "Query");
        let app = spawn_app_with(backend, |s| s.max_depth = 12).await;
        assert_refused(&app, INTROSPECTION_QUERY, json!({}), "nested too deep").await;
    }
}

#[tokio::test]
async fn documents_deeper_than_max_depth_are_refused() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        assert_eq!(app.settings.max_depth, 15);
        assert_runs(&app, &nested_type_query(15), json!({})).await;
        assert_refused(&app, &nested_type_query(16), json!({}), "nested too deep").await;
        // depth counts through fragments
        let via_fragment = format!(
            "{{ __schema {{ types {{ ...Deep }} }} }} fragment Deep on __Type {{ fields {{ type {{ {}name{} }} }} }}",
            "ofType { ".repeat(11),
            " }".repeat(11)
        );
        assert_refused(&app, &via_fragment, json!({}), "nested too deep").await;

        let app = spawn_app_with(backend, |s| s.max_depth = 3).await;
        assert_runs(&app, "{ leads { edges { cursor } } }", json!({})).await;
        assert_refused(
            &app,
            "{ leads { edges { node { id } } } }",
            json!({}),
            "nested too deep",
        )
        .await;
    }
}

#[tokio::test]
async fn documents_over_max_complexity_are_refused() {
    for backend in backends() {
        let app = spawn_app_with(backend, |s| s.max_complexity = 1_000).await;
        // 500 × (edges + node + id + email) = 2,000
        let big = "{ leads(first: 500) { edges { node { id email } } } }";
        assert_refused(&app, big, json!({}), "too complex").await;
        // the page size is read from variables too
        let by_variable = "query($n: Int) { leads(first: $n) { edges { node { id email } } } }";
        assert_refused(&app, by_variable, json!({"n": 500}), "too complex").await;
        assert_refused(
            &app,
            "query($n: Int) { leads(last: $n) { edges { node { id email } } } }",
            json!({"n": 500}),
            "too complex",
        )
        .await;
        // 10 × 4 = 40
        assert_runs(&app, by_variable, json!({"n": 10})).await;
        assert_runs(
            &app,
            "{ leads(first: 10) { edges { node { id email } } } }",
            json!({}),
        )
        .await;

        // under the defaults one full page of every field fits, two do not
        let app = spawn_app(backend).await;
        let page = format!(
            "leads(first: 500) {{ totalCount edges {{ cursor node {{ {ALL_LEAD_FIELDS} }} }} pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }} }}"
        );
        assert_runs(&app, &format!("{{ {page} }}"), json!({})).await;
        assert_refused(
            &app,
            &format!("{{ a: {page} b: {page} }}"),
            json!({}),
            "too complex",
        )
        .await;
    }
}

#[tokio::test]
async fn a_full_page_of_500_with_a_normal_selection_runs_under_the_defaults() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        seed(&app, 501).await;
        let data = assert_runs(
            &app,
            "{ leads(first: 500) { totalCount edges { cursor node { id email firstName lastName companyName status score tags } } pageInfo { hasNextPage endCursor } } }",
            json!({}),
        )
        .await;
        assert_eq!(
            data["leads"]["edges"].as_array().unwrap().len(),
            500,
            "{backend:?}"
        );
        assert_eq!(data["leads"]["pageInfo"]["hasNextPage"], true);
        assert_eq!(data["leads"]["totalCount"], 501);
    }
}

#[tokio::test]
async fn documents_with_more_aliases_than_max_aliases_are_refused() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        assert_eq!(app.settings.max_aliases, 30);
        let aliased = |n: usize| -> String { aliases("a", n) };
        let data = assert_runs(&app, &format!("{{ {} }}", aliased(30)), json!({})).await;
        assert_eq!(data["a29"], "Query");
        assert_refused(&app, &format!("{{ {} }}", aliased(31)), json!({}), "aliases").await;
        // nested, in inline fragments and in named fragments all count
        let nested = format!("{{ viewer {{ {} }} }}", aliased(31));
        assert_refused(&app, &nested, json!({}), "aliases").await;
        let inline = format!("{{ ... on Query {{ {} }} }}", aliased(31));
        assert_refused(&app, &inline, json!({}), "aliases").await;
        let split = format!(
            "{{ {} ...More }} fragment More on Query {{ {} }}",
            aliases("x", 16),
            aliased(15)
        );
        assert_refused(&app, &split, json!({}), "aliases").await;

        let app = spawn_app_with(backend, |s| s.max_aliases = 2).await;
        let two = "{ a: leads(first: 1) { totalCount } b: leads(first: 2) { totalCount } }";
        let data = assert_runs(&app, two, json!({})).await;
        assert_eq!(data, json!({"a": {"totalCount": 0}, "b": {"totalCount": 0}}));
        let three =
            "{ a: leads(first: 1) { totalCount } b: leads(first: 2) { totalCount } c: viewer { role } }";
        assert_refused(&app, three, json!({}), "aliases").await;
    }
}
