//! A fake HubSpot on 127.0.0.1 that keeps contacts like the real one: batch upsert by email
//! (`inputs`, per-input `objectWriteTraceId`, `new`, `errors[]` naming refused inputs by
//! `context.ids`, 207 when some failed), the search endpoint on `lastmodifieddate`, reads by
//! id, and the archived listing. A test scripts failures (answers served before the normal
//! ones), refuses emails, edits and deletes contacts "in the CRM", and signs the webhook a
//! HubSpot app would send (signature v3, computed here from the documented recipe). With
//! `limit`, it answers 429 to requests beyond its per-second allowance, as HubSpot does;
//! with `latency`, every write answers that much later. Nothing here depends on leadgate's
//! code. Also used by `examples/crm_push.rs`.

#![allow(dead_code)]

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wiremock::matchers::path_regex;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const UPSERT: &str = "/crm/v3/objects/contacts/batch/upsert";
pub const SEARCH: &str = "/crm/v3/objects/contacts/search";

#[derive(Clone, Debug)]
pub struct Contact {
    pub id: String,
    pub properties: BTreeMap<String, Value>,
    pub updated_ms: i64,
    pub archived_ms: Option<i64>,
}

#[derive(Default)]
pub struct State {
    pub contacts: BTreeMap<u64, Contact>,
    next_id: u64,
    /// Answers served to upserts before any normal one.
    pub script: VecDeque<ResponseTemplate>,
    /// Emails (lower case) the fake refuses as invalid.
    pub refused: HashSet<String>,
    /// Every upsert body received.
    pub upserts: Vec<Value>,
    /// Requests answered 429 by the limit.
    pub throttled: u64,
    /// Start times of the requests in the current window, for the limit.
    window: VecDeque<Instant>,
    /// The fake's clock for `lastmodifieddate`, in ms; moves forward on every write.
    pub clock_ms: i64,
}

pub struct FakeHubSpot {
    pub server: MockServer,
    pub state: Arc<Mutex<State>>,
    pub token: String,
    pub secret: String,
}

fn now_ms(state: &mut State) -> i64 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    state.clock_ms = state.clock_ms.max(wall).max(state.clock_ms + 1);
    state.clock_ms
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn contact_json(c: &Contact) -> Value {
    let mut props = c.properties.clone();
    props.insert("hs_object_id".into(), json!(c.id));
    props.insert("lastmodifieddate".into(), json!(iso(c.updated_ms)));
    let mut out = json!({
        "id": c.id,
        "properties": props,
        "createdAt": iso(c.updated_ms),
        "updatedAt": iso(c.updated_ms),
        "archived": c.archived_ms.is_some(),
    });
    if let Some(a) = c.archived_ms {
        out["archivedAt"] = json!(iso(a));
    }
    out
}

struct Handler {
    state: Arc<Mutex<State>>,
    token: String,
    limit: Option<u32>,
    latency: Duration,
}

impl Handler {
    fn authorized(&self, req: &Request) -> bool {
        req.headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {}", self.token))
    }

    fn throttle(&self, state: &mut State) -> Option<ResponseTemplate> {
        let limit = self.limit?;
        let now = Instant::now();
        while state
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            state.window.pop_front();
        }
        if state.window.len() >= limit as usize {
            state.throttled += 1;
            return Some(
                ResponseTemplate::new(429)
                    .insert_header("Retry-After", "1")
                    .set_body_json(json!({"status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT", "policyName": "SECONDLY"})),
            );
        }
        state.window.push_back(now);
        None
    }

    fn upsert(&self, req: &Request, state: &mut State) -> ResponseTemplate {
        let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
            return ResponseTemplate::new(400).set_body_json(
                json!({"status": "error", "message": "Invalid input JSON", "category": "VALIDATION_ERROR"}),
            );
        };
        state.upserts.push(body.clone());
        // the real API answers a body without `inputs` with COMPLETE and no results
        let inputs = body
            .get("inputs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for input in inputs {
            let id = input["id"].as_str().unwrap_or_default().to_lowercase();
            let trace = input.get("objectWriteTraceId").cloned();
            if state.refused.contains(&id) {
                errors.push(json!({
                    "status": "error",
                    "category": "VALIDATION_ERROR",
                    "message": format!("Property values were not valid for {id}"),
                    "context": {"ids": [id]},
                    "errors": [{"message": "invalid", "code": "INVALID_OPTION", "in": "lifecyclestage"}],
                }));
                continue;
            }
            let by = input["idProperty"].as_str().unwrap_or("email");
            let found = state.contacts.iter().find_map(|(k, c)| {
                let hit = match by {
                    "hs_object_id" => c.id == id,
                    _ => {
                        c.properties
                            .get("email")
                            .and_then(Value::as_str)
                            .map(str::to_lowercase)
                            == Some(id.clone())
                    }
                };
                (hit && c.archived_ms.is_none()).then_some(*k)
            });
            let at = now_ms(state);
            let (key, new) = match found {
                Some(k) => (k, false),
                None => {
                    state.next_id += 1;
                    let k = state.next_id + 100;
                    state.contacts.insert(
                        k,
                        Contact {
                            id: k.to_string(),
                            properties: BTreeMap::new(),
                            updated_ms: at,
                            archived_ms: None,
                        },
                    );
                    (k, true)
                }
            };
            let contact = state.contacts.get_mut(&key).unwrap();
            if let Some(props) = input["properties"].as_object() {
                for (k, v) in props {
                    contact.properties.insert(k.clone(), v.clone());
                }
            }
            contact.updated_ms = at;
            let mut result = contact_json(contact);
            result["new"] = json!(new);
            if let Some(t) = trace {
                result["objectWriteTraceId"] = t;
            }
            results.push(result);
        }
        let status = if errors.is_empty() { 200 } else { 207 };
        let mut answer = json!({
            "status": "COMPLETE",
            "results": results,
            "requestedAt": iso(state.clock_ms),
            "startedAt": iso(state.clock_ms),
            "completedAt": iso(state.clock_ms),
        });
        if !errors.is_empty() {
            answer["numErrors"] = json!(errors.len());
            answer["errors"] = json!(errors);
        }
        ResponseTemplate::new(status).set_body_json(answer)
    }

    fn search(&self, req: &Request, state: &State) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let since: i64 = body
            .pointer("/filterGroups/0/filters/0/value")
            .and_then(Value::as_str)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let after: usize = body
            .get("after")
            .and_then(Value::as_str)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        let limit = body.get("limit").and_then(Value::as_u64).unwrap_or(10) as usize;
        let mut hits: Vec<&Contact> = state
            .contacts
            .values()
            .filter(|c| c.archived_ms.is_none() && c.updated_ms >= since)
            .collect();
        hits.sort_by_key(|c| (c.updated_ms, c.id.parse::<u64>().unwrap_or(0)));
        let page: Vec<Value> = hits
            .iter()
            .skip(after)
            .take(limit)
            .map(|c| contact_json(c))
            .collect();
        let mut answer = json!({"total": hits.len(), "results": page});
        if after + limit < hits.len() {
            let next = (after + limit).to_string();
            answer["paging"] = json!({"next": {"after": next, "link": format!("?after={next}")}});
        }
        ResponseTemplate::new(200).set_body_json(answer)
    }
}

impl Respond for Handler {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if !self.authorized(req) {
            return ResponseTemplate::new(401).set_body_json(json!({"status": "error", "message": "Authentication credentials not found.", "category": "INVALID_AUTHENTICATION"}));
        }
        let mut state = self.state.lock().unwrap();
        let p = req.url.path().to_owned();
        if req.method.as_str() == "POST" && p == UPSERT {
            if let Some(limited) = self.throttle(&mut state) {
                return limited;
            }
            if let Some(scripted) = state.script.pop_front() {
                return scripted;
            }
            return self.upsert(req, &mut state).set_delay(self.latency);
        }
        if req.method.as_str() == "POST" && p == SEARCH {
            return self.search(req, &state);
        }
        if req.method.as_str() == "GET" {
            let archived = req.url.query_pairs().any(|(k, v)| k == "archived" && v == "true");
            if let Some(id) = p.strip_prefix("/crm/v3/objects/contacts/") {
                return match state.contacts.values().find(|c| c.id == id && c.archived_ms.is_none()) {
                    Some(c) => ResponseTemplate::new(200).set_body_json(contact_json(c)),
                    None => ResponseTemplate::new(404).set_body_json(json!({"status": "error", "message": "resource not found", "category": "OBJECT_NOT_FOUND"})),
                };
            }
            let list: Vec<Value> = state
                .contacts
                .values()
                .filter(|c| c.archived_ms.is_some() == archived)
                .map(contact_json)
                .collect();
            return ResponseTemplate::new(200).set_body_json(json!({"results": list}));
        }
        ResponseTemplate::new(404)
    }
}

impl FakeHubSpot {
    pub async fn start() -> Self {
        Self::start_with(None, Duration::ZERO).await
    }

    /// A fake that allows `limit` requests per second and answers writes after `latency`.
    pub async fn start_with(limit: Option<u32>, latency: Duration) -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        let token = "pat-na1-11111111-2222-3333-4444-555555555555".to_owned();
        Mock::given(path_regex("^/crm/v3/objects/contacts.*"))
            .respond_with(Handler {
                state: state.clone(),
                token: token.clone(),
                limit,
                latency,
            })
            .mount(&server)
            .await;
        Self {
            server,
            state,
            token,
            secret: "hubspot-app-secret-0123456789".to_owned(),
        }
    }

    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// Serves `answer` to the next upsert instead of the normal one.
    pub fn script(&self, answer: ResponseTemplate) {
        self.state.lock().unwrap().script.push_back(answer);
    }

    pub fn refuse(&self, email: &str) {
        self.state.lock().unwrap().refused.insert(email.to_lowercase());
    }

    pub fn upserts(&self) -> Vec<Value> {
        self.state.lock().unwrap().upserts.clone()
    }

    pub fn contacts(&self) -> Vec<Contact> {
        self.state.lock().unwrap().contacts.values().cloned().collect()
    }

    pub fn contact_by_email(&self, email: &str) -> Option<Contact> {
        self.contacts().into_iter().find(|c| {
            c.properties.get("email").and_then(Value::as_str) == Some(email) && c.archived_ms.is_none()
        })
    }

    /// A rep changes a property in HubSpot; returns the `contact.propertyChange` event.
    pub fn edit(&self, id: &str, property: &str, value: &str, event_id: u64) -> Value {
        let mut state = self.state.lock().unwrap();
        let at = now_ms(&mut state);
        let c = state
            .contacts
            .values_mut()
            .find(|c| c.id == id)
            .expect("known contact");
        c.properties.insert(property.into(), json!(value));
        c.updated_ms = at;
        json!({"eventId": event_id, "subscriptionId": 7, "portalId": 62515, "appId": 4242, "occurredAt": at,
               "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": id.parse::<u64>().unwrap(),
               "propertyName": property, "propertyValue": value, "changeSource": "CRM_UI", "sourceId": "userId:9"})
    }

    /// A rep creates a contact in HubSpot; returns its id and the `contact.creation` event.
    pub fn create(&self, properties: Value, event_id: u64) -> (String, Value) {
        let mut state = self.state.lock().unwrap();
        let at = now_ms(&mut state);
        state.next_id += 1;
        let k = state.next_id + 100;
        let props: BTreeMap<String, Value> = properties.as_object().unwrap().clone().into_iter().collect();
        state.contacts.insert(
            k,
            Contact {
                id: k.to_string(),
                properties: props,
                updated_ms: at,
                archived_ms: None,
            },
        );
        (
            k.to_string(),
            json!({"eventId": event_id, "subscriptionId": 8, "portalId": 62515, "appId": 4242, "occurredAt": at,
               "subscriptionType": "contact.creation", "attemptNumber": 0, "objectId": k, "changeFlag": "CREATED", "changeSource": "CRM_UI"}),
        )
    }

    /// A rep deletes a contact in HubSpot; returns the `contact.deletion` event.
    pub fn delete(&self, id: &str, event_id: u64) -> Value {
        let mut state = self.state.lock().unwrap();
        let at = now_ms(&mut state);
        let c = state
            .contacts
            .values_mut()
            .find(|c| c.id == id)
            .expect("known contact");
        c.archived_ms = Some(at);
        json!({"eventId": event_id, "subscriptionId": 9, "portalId": 62515, "appId": 4242, "occurredAt": at,
               "subscriptionType": "contact.deletion", "attemptNumber": 0, "objectId": id.parse::<u64>().unwrap(), "changeFlag": "DELETED"})
    }

    /// The v3 signature headers HubSpot sends for `body` POSTed to `url` at `ms`.
    pub fn sign(&self, url: &str, body: &str, ms: i64) -> Vec<(String, String)> {
        sign_v3(&self.secret, url, body, ms)
    }
}

/// HubSpot's v3 recipe: `POST` + URI (with its documented `%XX` list decoded) + body +
/// timestamp, HMAC-SHA256 under the app secret, base64.
pub fn sign_v3(secret: &str, url: &str, body: &str, ms: i64) -> Vec<(String, String)> {
    let mut uri = url.to_owned();
    for (enc, plain) in [
        ("%3A", ":"),
        ("%2F", "/"),
        ("%3F", "?"),
        ("%40", "@"),
        ("%21", "!"),
        ("%24", "$"),
        ("%27", "'"),
        ("%28", "("),
        ("%29", ")"),
        ("%2A", "*"),
        ("%2C", ","),
        ("%3B", ";"),
    ] {
        uri = uri.replace(enc, plain).replace(&enc.to_lowercase(), plain);
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("POST{uri}{body}{ms}").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    vec![
        ("X-HubSpot-Signature-v3".to_owned(), signature),
        ("X-HubSpot-Request-Timestamp".to_owned(), ms.to_string()),
        ("Content-Type".to_owned(), "application/json".to_owned()),
    ]
}

pub fn epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
