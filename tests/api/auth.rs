//! Authentication and authorization at the HTTP edge: missing and bad tokens, roles, and
//! what `viewer` reports.

use crate::helpers::{SECRET, TestApp, backends, first_code, spawn_app};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use leadgate::domain::{Role, WorkspaceId};
use serde_json::{Value, json};
use std::time::Duration;

const LEADS: &str = "query { leads(first: 10) { totalCount edges { node { id email } } } }";

/// A POST to `/graphql` with a raw `Authorization` value: (status, WWW-Authenticate, text).
async fn post_raw(
    app: &TestApp,
    authorization: Option<&str>,
    accept: &str,
    body: Value,
) -> (u16, Option<String>, String) {
    let mut req = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .header("accept", accept)
        .body(body.to_string());
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, challenge, res.text().await.expect("body"))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims as `Authenticator::mint` writes them, valid for an hour.
fn claims(app: &TestApp) -> Value {
    json!({
        "sub": "tester",
        "ws": app.workspace.id.as_uuid().to_string(),
        "role": "member",
        "iat": now(),
        "exp": now() + 3600,
        "iss": "leadgate",
        "aud": "leadgate",
    })
}

fn sign(claims: &Value, alg: Algorithm, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()).expect("key"),
    )
    .expect("encode")
}

fn hs256(claims: &Value) -> String {
    sign(claims, Algorithm::HS256, SECRET)
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

/// An unsigned token: header `{"alg":"none"}` and an empty signature.
fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

#[tokio::test]
async fn a_valid_hand_made_token_is_accepted() {
    // guards the token builder used below: only the deliberate flaw makes a token fail
    for backend in backends() {
        let app = spawn_app(backend).await;
        let token = hs256(&claims(&app));
        let (status, _, text) = post_raw(
            &app,
            Some(&format!("Bearer {token}")),
            "application/graphql-response+json",
            json!({"query": "{ viewer { subject role } }"}),
        )
        .await;
        assert_eq!(status, 200, "{backend:?}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            body["data"]["viewer"],
            json!({"subject": "tester", "role": "MEMBER"})
        );
        // the scheme is case-insensitive
        let (status, _, text) = post_raw(
            &app,
            Some(&format!("bearer {token}")),
            "application/json",
            json!({ "query": LEADS }),
        )
        .await;
        assert_eq!(status, 200, "{backend:?}: {text}");
    }
}

#[tokio::test]
async fn without_a_token_data_and_introspection_are_refused() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        for media in ["application/graphql-response+json", "application/json"] {
            let (status, challenge, text) = post_raw(&app, None, media, json!({ "query": LEADS })).await;
            assert_eq!(status, 200, "{backend:?} {media}: {text}");
            assert_eq!(challenge, None);
            let body: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(body["data"], Value::Null, "{body}");
            assert_eq!(first_code(&body), "UNAUTHENTICATED", "{body}");
            assert_eq!(body["errors"][0]["path"], json!(["leads"]), "{body}");
            assert_eq!(body["errors"].as_array().unwrap().len(), 1, "{body}");
        }
        for query in [
            "{ viewer { subject } }",
            "query($id: ID!) { lead(id: $id) { id } }",
            "query($id: ID!) { node(id: $id) { id } }",
            "mutation { createLead(input: {email: \"a@acme.io\"}) { lead { id } } }",
            "mutation { upsertLeads(input: {leads: [{email: \"a@acme.io\"}]}) { createdCount } }",
        ] {
            let id = URL_SAFE_NO_PAD.encode(format!("Lead:{}", uuid::Uuid::now_v7()));
            let (status, body) = app
                .post(None, json!({"query": query, "variables": {"id": id}}))
                .await;
            assert_eq!(status, 200, "{query}: {body}");
            assert_eq!(
                first_code(&body),
                "UNAUTHENTICATED",
                "{backend:?} {query}: {body}"
            );
        }
        let counts = app
            .services
            .workspaces
            .lead_counts(app.workspace.id)
            .await
            .unwrap();
        assert_eq!(counts.active, 0, "{backend:?} an unauthenticated mutation wrote");

        // introspection needs a token too (see `security.rs` for the policy and demo mode)
        let (status, body) = app
            .post(
                None,
                json!({"query": "{ __schema { queryType { name } mutationType { name } } }"}),
            )
            .await;
        assert_eq!(status, 400, "{backend:?}: {body}");
        assert_eq!(first_code(&body), "INTROSPECTION_DISABLED", "{body}");
        let token = app.token(Role::Viewer);
        let (status, body) = app
            .post(
                Some(&token),
                json!({"query": "{ __schema { queryType { name } mutationType { name } } }"}),
            )
            .await;
        assert_eq!(status, 200, "{backend:?}: {body}");
        assert!(body.get("errors").is_none(), "{body}");
        assert_eq!(
            body["data"]["__schema"],
            json!({"queryType": {"name": "Query"}, "mutationType": {"name": "Mutation"}})
        );
        let (status, body) = app
            .post(
                Some(&token),
                json!({"query": "{ __type(name: \"Lead\") { name } }"}),
            )
            .await;
        assert_eq!(
            (status, &body["data"]["__type"]["name"]),
            (200, &json!("Lead")),
            "{body}"
        );
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401_and_a_bearer_challenge() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let base = claims(&app);
        let past = now() - 3600;
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "expired",
                format!(
                    "Bearer {}",
                    hs256(&with(
                        with(base.clone(), "exp", json!(past)),
                        "iat",
                        json!(past - 60)
                    ))
                ),
                "expired",
            ),
            (
                "forged with another secret",
                format!(
                    "Bearer {}",
                    sign(
                        &base,
                        Algorithm::HS256,
                        "another-secret-that-is-also-long-enough-0123"
                    )
                ),
                "signature",
            ),
            ("alg none", format!("Bearer {}", unsigned(&base)), "algorithm"),
            (
                "HS512 with the right secret",
                format!("Bearer {}", sign(&base, Algorithm::HS512, SECRET)),
                "algorithm",
            ),
            (
                "wrong issuer",
                format!(
                    "Bearer {}",
                    hs256(&with(base.clone(), "iss", json!("someone-else")))
                ),
                "issuer",
            ),
            (
                "wrong audience",
                format!(
                    "Bearer {}",
                    hs256(&with(base.clone(), "aud", json!("another-api")))
                ),
                "audience",
            ),
            (
                "no exp",
                format!("Bearer {}", hs256(&without(base.clone(), "exp"))),
                "claim",
            ),
            (
                "no ws",
                format!("Bearer {}", hs256(&without(base.clone(), "ws"))),
                "claim",
            ),
            (
                "unknown role",
                format!(
                    "Bearer {}",
                    hs256(&with(base.clone(), "role", json!("superuser")))
                ),
                "claim",
            ),
            (
                "ws not a uuid",
                format!("Bearer {}", hs256(&with(base.clone(), "ws", json!("acme")))),
                "claim",
            ),
            ("garbage", "Bearer not-a-jwt-at-all".to_owned(), "well-formed"),
            (
                "three garbage parts",
                "Bearer aaa.bbb.ccc".to_owned(),
                "header is not readable",
            ),
            ("basic scheme", "Basic dGVzdGVyOnNlY3JldA==".to_owned(), "Bearer"),
            ("token without scheme", hs256(&base), "Bearer"),
            ("empty bearer", "Bearer ".to_owned(), "Bearer"),
        ];
        for (label, header, needle) in &cases {
            for media in ["application/graphql-response+json", "application/json"] {
                let (status, challenge, text) =
                    post_raw(&app, Some(header), media, json!({ "query": LEADS })).await;
                assert_eq!(status, 401, "{backend:?} {label}: {text}");
                assert_eq!(challenge.as_deref(), Some("Bearer"), "{label}");
                let body: Value = serde_json::from_str(&text).unwrap();
                assert!(body.get("data").is_none(), "{label}: {body}");
                assert_eq!(first_code(&body), "UNAUTHENTICATED", "{label}: {body}");
                let message = body["errors"][0]["message"].as_str().unwrap();
                assert!(message.contains(needle), "{label}: {message}");
                let credential = header.split_once(' ').map_or(header.as_str(), |(_, t)| t);
                if credential.len() > 8 {
                    assert!(
                        !text.contains(credential),
                        "{label}: the reply repeats the token: {text}"
                    );
                }
                assert!(!text.contains(SECRET), "{label}");
            }
        }
        // refused tokens never reach a resolver, mutations included
        let forged = sign(
            &base,
            Algorithm::HS256,
            "another-secret-that-is-also-long-enough-0123",
        );
        let (status, _, _) = post_raw(
            &app,
            Some(&format!("Bearer {forged}")),
            "application/json",
            json!({"query": "mutation { createLead(input: {email: \"x@acme.io\"}) { lead { id } } }"}),
        )
        .await;
        assert_eq!(status, 401);
        let counts = app
            .services
            .workspaces
            .lead_counts(app.workspace.id)
            .await
            .unwrap();
        assert_eq!(counts.active, 0, "{backend:?}");
    }
}

const CREATE: &str = "mutation($input: CreateLeadInput!) {
    createLead(input: $input) { lead { id version } userErrors { code } } }";
const UPDATE: &str = "mutation($input: UpdateLeadInput!) {
    updateLead(input: $input) { lead { id version title } userErrors { code } } }";
const ARCHIVE: &str = "mutation($id: ID!) {
    archiveLead(input: {id: $id}) { lead { id archivedAt } userErrors { code } } }";
const RESTORE: &str = "mutation($id: ID!) {
    restoreLead(input: {id: $id}) { lead { id archivedAt } userErrors { code } } }";
const UPSERT: &str = "mutation($leads: [CreateLeadInput!]!) {
    upsertLeads(input: {leads: $leads}) { createdCount updatedCount userErrors { code } } }";

#[tokio::test]
async fn viewer_and_partner_read_but_cannot_write() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let lead = app
            .create_lead(json!({"email": "ann@acme.io", "lastName": "Lee"}))
            .await;
        let id = lead["id"].clone();
        for role in [Role::Viewer, Role::Partner] {
            let data = app.gql(role, LEADS, json!({})).await;
            assert_eq!(data["leads"]["totalCount"], json!(1), "{backend:?} {role:?}");
            assert_eq!(data["leads"]["edges"][0]["node"]["id"], id);
            let data = app
                .gql(
                    role,
                    "query($id: ID!) { lead(id: $id) { email } }",
                    json!({ "id": id }),
                )
                .await;
            assert_eq!(data["lead"]["email"], json!("ann@acme.io"));

            let writes = [
                (CREATE, json!({"input": {"email": "new@acme.io"}})),
                (UPDATE, json!({"input": {"id": id, "title": "CEO"}})),
                (ARCHIVE, json!({ "id": id })),
                (RESTORE, json!({ "id": id })),
                (
                    UPSERT,
                    json!({"leads": [{"email": "ann@acme.io", "title": "CEO"}, {"email": "new@acme.io"}]}),
                ),
            ];
            for (mutation, vars) in writes {
                let body = app.gql_err(role, mutation, vars).await;
                assert_eq!(
                    first_code(&body),
                    "FORBIDDEN",
                    "{backend:?} {role:?} {mutation}: {body}"
                );
                assert_eq!(body["data"], Value::Null, "{body}");
            }
        }
        // nothing changed
        let data = app
            .gql(
                Role::Viewer,
                "query($id: ID!) { lead(id: $id) { title version archivedAt } leads { totalCount } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(
            data,
            json!({"lead": {"title": null, "version": 1, "archivedAt": null}, "leads": {"totalCount": 1}}),
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn member_and_admin_can_write() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        for (n, role) in [Role::Member, Role::Admin].into_iter().enumerate() {
            let email = format!("writer{n}@acme.io");
            let data = app.gql(role, CREATE, json!({"input": {"email": email}})).await;
            let payload = &data["createLead"];
            assert_eq!(payload["userErrors"], json!([]), "{backend:?} {role:?}");
            let id = payload["lead"]["id"].clone();
            let data = app
                .gql(role, UPDATE, json!({"input": {"id": id, "title": "CEO"}}))
                .await;
            assert_eq!(data["updateLead"]["lead"]["title"], json!("CEO"), "{role:?}");
            let data = app.gql(role, ARCHIVE, json!({ "id": id })).await;
            assert!(data["archiveLead"]["lead"]["archivedAt"].is_string(), "{role:?}");
            let data = app.gql(role, RESTORE, json!({ "id": id })).await;
            assert_eq!(data["restoreLead"]["lead"]["archivedAt"], Value::Null, "{role:?}");
            let data = app
                .gql(
                    role,
                    UPSERT,
                    json!({"leads": [{"email": email, "title": "CTO"}, {"email": format!("more{n}@acme.io")}]}),
                )
                .await;
            assert_eq!(
                (
                    &data["upsertLeads"]["createdCount"],
                    &data["upsertLeads"]["updatedCount"]
                ),
                (&json!(1), &json!(1)),
                "{backend:?} {role:?}"
            );
        }
        let data = app.gql(Role::Viewer, LEADS, json!({})).await;
        assert_eq!(data["leads"]["totalCount"], json!(4), "{backend:?}");
    }
}

#[tokio::test]
async fn viewer_reflects_the_token() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let q = "{ viewer { subject role canWriteLeads workspace { id slug name } } }";
        for (role, name, writes) in [
            (Role::Admin, "ADMIN", true),
            (Role::Member, "MEMBER", true),
            (Role::Viewer, "VIEWER", false),
            (Role::Partner, "PARTNER", false),
        ] {
            for (ws, slug, ws_name) in [(&app.workspace, "acme", "Acme"), (&app.other, "globex", "Globex")] {
                let subject = format!("user-{}-{slug}", role.as_str());
                let token = app
                    .auth
                    .mint(&subject, ws.id, role, Duration::from_secs(60))
                    .unwrap();
                let (status, body) = app.post(Some(&token), json!({ "query": q })).await;
                assert_eq!(status, 200, "{body}");
                let viewer = &body["data"]["viewer"];
                assert_eq!(viewer["subject"], json!(subject), "{backend:?}");
                assert_eq!(viewer["role"], json!(name));
                assert_eq!(viewer["canWriteLeads"], json!(writes), "{role:?}");
                assert_eq!(viewer["workspace"]["slug"], json!(slug));
                assert_eq!(viewer["workspace"]["name"], json!(ws_name));
                let raw = URL_SAFE_NO_PAD
                    .decode(viewer["workspace"]["id"].as_str().unwrap())
                    .unwrap();
                assert_eq!(String::from_utf8(raw).unwrap(), format!("Workspace:{}", ws.id));
            }
        }
    }
}

#[tokio::test]
async fn a_token_for_a_workspace_that_does_not_exist_sees_nothing_and_cannot_write() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.create_lead(json!({"email": "ann@acme.io"})).await;
        let ghost = WorkspaceId::new();
        let token = app
            .auth
            .mint("ghost", ghost, Role::Admin, Duration::from_secs(60))
            .unwrap();
        let (status, body) = app
            .post(
                Some(&token),
                json!({"query": "{ viewer { subject workspace { slug } } leads { totalCount edges { node { id } } } }"}),
            )
            .await;
        assert_eq!(status, 200, "{backend:?}: {body}");
        assert!(body.get("errors").is_none(), "{body}");
        assert_eq!(
            body["data"],
            json!({"viewer": {"subject": "ghost", "workspace": null},
                   "leads": {"totalCount": 0, "edges": []}}),
            "{backend:?}"
        );

        for (mutation, vars, field) in [
            (CREATE, json!({"input": {"email": "ghost@acme.io"}}), "createLead"),
            (
                UPSERT,
                json!({"leads": [{"email": "ghost@acme.io"}]}),
                "upsertLeads",
            ),
        ] {
            let (status, body) = app
                .post(Some(&token), json!({"query": mutation, "variables": vars}))
                .await;
            assert_eq!(status, 200, "{backend:?} {field}: {body}");
            assert_eq!(body["data"], Value::Null, "{backend:?} {field} succeeded: {body}");
            assert_eq!(first_code(&body), "NOT_FOUND", "{backend:?} {field}: {body}");
            assert_eq!(body["errors"][0]["path"], json!([field]), "{body}");
        }
        // nothing was written anywhere
        let (_, body) = app.post(Some(&token), json!({ "query": LEADS })).await;
        assert_eq!(body["data"]["leads"]["totalCount"], json!(0), "{backend:?}");
        let counts = app
            .services
            .workspaces
            .lead_counts(app.workspace.id)
            .await
            .unwrap();
        assert_eq!(counts.active, 1);
    }
}

fn testdata(file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/auth/testdata")
        .join(file)
}

/// Signs with a private key from the auth test data, naming `kid`.
fn sign_with_key(claims: &Value, alg: Algorithm, kid: &str, private_pem: &str) -> String {
    let pem = std::fs::read(testdata(private_pem)).unwrap();
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        _ => EncodingKey::from_ec_pem(&pem).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

#[tokio::test]
async fn public_keys_verify_rs256_and_es256_tokens_by_kid_over_http() {
    use leadgate::auth::{KeyAlgorithm, PublicKeyConfig};
    for backend in backends() {
        let app = crate::helpers::spawn_app_with(backend, |s| {
            s.jwt_secret = None;
            s.jwt_public_keys = vec![
                PublicKeyConfig {
                    kid: "rsa-2026".into(),
                    algorithm: KeyAlgorithm::RS256,
                    path: testdata("rs256-a.public.pem"),
                },
                PublicKeyConfig {
                    kid: "rsa-2027".into(),
                    algorithm: KeyAlgorithm::RS256,
                    path: testdata("rs256-b.public.pem"),
                },
                PublicKeyConfig {
                    kid: "ec-2026".into(),
                    algorithm: KeyAlgorithm::ES256,
                    path: testdata("es256-a.public.pem"),
                },
            ];
        })
        .await;
        let c = claims(&app);
        let query = json!({"query": "{ viewer { role workspace { slug } } }"});
        for (alg, kid, pem) in [
            (Algorithm::RS256, "rsa-2026", "rs256-a.private.pem"),
            (Algorithm::RS256, "rsa-2027", "rs256-b.private.pem"),
            (Algorithm::ES256, "ec-2026", "es256-a.private.pem"),
        ] {
            let token = sign_with_key(&c, alg, kid, pem);
            let (status, body) = app.post(Some(&token), query.clone()).await;
            assert_eq!(status, 200, "{kid}: {body}");
            assert_eq!(
                body["data"]["viewer"]["workspace"]["slug"],
                json!("acme"),
                "{kid}"
            );
        }
        // the right key under the wrong kid, an unknown kid, and HS256 with no secret configured
        for token in [
            sign_with_key(&c, Algorithm::RS256, "rsa-2027", "rs256-a.private.pem"),
            sign_with_key(&c, Algorithm::RS256, "rsa-1999", "rs256-a.private.pem"),
            hs256(&c),
        ] {
            let (status, body) = app.post(Some(&token), query.clone()).await;
            assert_eq!(status, 401, "{body}");
            assert_eq!(first_code(&body), "UNAUTHENTICATED");
        }
    }
}
