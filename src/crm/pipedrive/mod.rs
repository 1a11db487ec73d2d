//! Pipedrive: persons, and a lead for each person leadgate creates (a Pipedrive lead needs a
//! person or an organization first); changes polled from `GET /api/v2/persons` with
//! `updated_since` and its cursor; inbound webhooks v2 checked with HTTP Basic auth (Pipedrive
//! signs nothing). Sources: developers.pipedrive.com and pipedrive.readme.io (leads, persons,
//! webhooks v2), as transcribed in the reference of external APIs.
//!
//! Pipedrive has no batch write and no upsert: a record is one request. A person already
//! linked is updated by id (`PUT /v1/persons/{id}`); otherwise it is looked up by email
//! (`GET /api/v2/persons/search`, exact match) before one is created, so a resend after a
//! crash finds the person it made. The token goes in the `api_token` query parameter; error
//! texts never carry the URL.
//!
//! Mapped properties: `email` and `phone` become Pipedrive's value lists, `first_name` and
//! `last_name` also make `name`; any other property is sent as it is named. Deletions reach
//! leadgate through webhooks only (the persons listing does not show deleted persons).

#[cfg(test)]
mod tests;

use super::{
    CallContext, Change, ChangePage, CrmConnector, CrmError, InboundEvent, InboundRequest, OutgoingRecord,
    RecordOutcome, RemoteRecord, Reply, Written, classify, epoch_ms, excerpt, get, post, property_text,
    request, send,
};
use crate::domain::{CrmCredentials, CrmKind};
use async_trait::async_trait;
use base64::Engine;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Persons per page of a poll (Pipedrive's maximum is 500).
const PAGE: usize = 100;

pub struct Pipedrive;

fn token<'a>(ctx: &CallContext<'a>) -> Result<&'a str, CrmError> {
    ctx.credentials
        .api_token
        .as_deref()
        .ok_or_else(|| CrmError::Unauthorized("no API token is configured".into()))
}

/// `base + path` with the token (and `query`) in the query string.
fn url(ctx: &CallContext<'_>, path: &str, query: &[(&str, &str)]) -> Result<String, CrmError> {
    let mut url = url::Url::parse(&format!("{}{path}", ctx.base_url))
        .map_err(|e| CrmError::Rejected(format!("apiBaseUrl: {e}")))?;
    {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in query {
            pairs.append_pair(k, v);
        }
        pairs.append_pair("api_token", token(ctx)?);
    }
    Ok(url.into())
}

/// Pipedrive's `{"success":false,"error":"…"}` in words, else the status.
fn pd_error(reply: &Reply, what: &str) -> CrmError {
    let detail: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    match (reply.status, detail.get("error").and_then(Value::as_str)) {
        (400 | 404 | 409 | 410 | 422, Some(text)) => {
            CrmError::Rejected(format!("{what}: Pipedrive answered {}: {text}", reply.status))
        }
        _ => classify(reply, what),
    }
}

fn data_id(reply: &Reply, what: &str) -> Result<String, CrmError> {
    let answer: Value = reply.json(what)?;
    answer
        .pointer("/data/id")
        .and_then(property_text)
        .ok_or_else(|| CrmError::Rejected(format!("{what}: the answer has no data.id: {}", reply.excerpt())))
}

/// The person body for `properties`.
fn person_body(properties: &BTreeMap<String, String>) -> Value {
    let mut body = Map::new();
    for (k, v) in properties {
        match k.as_str() {
            "email" | "phone" => {
                body.insert(k.clone(), json!([{"value": v, "primary": true, "label": "work"}]));
            }
            _ => {
                body.insert(k.clone(), json!(v));
            }
        }
    }
    let name = [properties.get("first_name"), properties.get("last_name")]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    let name = if name.is_empty() {
        properties
            .get("email")
            .cloned()
            .unwrap_or_else(|| "Unnamed".into())
    } else {
        name
    };
    body.insert("name".into(), json!(name));
    Value::Object(body)
}

/// A person as Pipedrive sends it (v1, v2 and webhook `data`) as flat properties.
fn person_properties(person: &Map<String, Value>) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for (k, v) in person {
        match k.as_str() {
            "emails" | "email" => {
                out.insert("email".into(), primary(v));
            }
            "phones" | "phone" => {
                out.insert("phone".into(), primary(v));
            }
            "id" | "update_time" | "add_time" | "custom_fields" => {}
            _ if v.is_object() => {}
            _ => {
                out.insert(k.clone(), property_text(v));
            }
        }
    }
    out
}

/// The primary value of a Pipedrive value list (or the first one).
fn primary(v: &Value) -> Option<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .find(|i| i.get("primary").and_then(Value::as_bool) == Some(true))
            .or_else(|| items.first())
            .and_then(property_text),
        other => property_text(other),
    }
}

fn record_of(person: &Map<String, Value>) -> Option<RemoteRecord> {
    let id = person.get("id").and_then(property_text)?;
    let updated = person
        .get("update_time")
        .and_then(Value::as_str)
        .and_then(epoch_ms)
        .unwrap_or(0);
    Some(RemoteRecord {
        external_id: id,
        properties: person_properties(person),
        updated_at_ms: updated,
    })
}

impl Pipedrive {
    /// The id of the person with exactly this email, if any.
    async fn find_by_email(&self, ctx: &CallContext<'_>, email: &str) -> Result<Option<String>, CrmError> {
        let url = url(
            ctx,
            "/api/v2/persons/search",
            &[
                ("term", email),
                ("fields", "email"),
                ("exact_match", "true"),
                ("limit", "1"),
            ],
        )?;
        let reply = send(get(ctx, &url)?).await?;
        if reply.status != 200 {
            return Err(pd_error(&reply, "searching persons"));
        }
        let answer: Value = reply.json("searching persons")?;
        Ok(answer.pointer("/data/items/0/item/id").and_then(property_text))
    }

    async fn write_one(&self, ctx: &CallContext<'_>, record: &OutgoingRecord) -> Result<Written, CrmError> {
        let body = person_body(&record.properties);
        let known = match &record.external_id {
            Some(id) => Some(id.clone()),
            None => match record.properties.get("email") {
                Some(email) => self.find_by_email(ctx, email).await?,
                None => None,
            },
        };
        let (reply, created) = match &known {
            Some(id) => {
                let path = format!(
                    "/v1/persons/{}",
                    url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
                );
                (
                    send(request(ctx, reqwest::Method::PUT, &url(ctx, &path, &[])?)?.json(&body)).await?,
                    false,
                )
            }
            None => (
                send(post(ctx, &url(ctx, "/v1/persons", &[])?)?.json(&body)).await?,
                true,
            ),
        };
        match reply.status {
            200 | 201 => {}
            400 | 422 => {
                return Ok(Written::Refused(match pd_error(&reply, "writing a person") {
                    CrmError::Rejected(text) => text,
                    other => other.to_string(),
                }));
            }
            // a person deleted in Pipedrive: the next push creates it again
            404 | 410 if known.is_some() => {
                return Ok(Written::NotWritten("the person was deleted in Pipedrive".into()));
            }
            _ => return Err(pd_error(&reply, "writing a person")),
        }
        let person = data_id(&reply, "writing a person")?;
        if created {
            let title = record
                .properties
                .get("org_name")
                .or_else(|| record.properties.get("email"))
                .cloned()
                .unwrap_or_else(|| "Lead".into());
            let lead = json!({"title": title, "person_id": person.parse::<i64>().ok().map_or(json!(person), |n| json!(n))});
            let reply = send(post(ctx, &url(ctx, "/v1/leads", &[])?)?.json(&lead)).await?;
            if !matches!(reply.status, 200 | 201) {
                return Err(pd_error(&reply, "creating the person's lead"));
            }
        }
        Ok(Written::Ok(person))
    }
}

#[async_trait]
impl CrmConnector for Pipedrive {
    fn kind(&self) -> CrmKind {
        CrmKind::Pipedrive
    }

    async fn check(&self, ctx: &CallContext<'_>) -> Result<String, CrmError> {
        let reply = send(get(ctx, &url(ctx, "/v1/users/me", &[])?)?).await?;
        if reply.status != 200 {
            return Err(pd_error(&reply, "reading the token's user"));
        }
        let answer: Value = reply.json("reading the token's user")?;
        let company = answer
            .pointer("/data/company_name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        Ok(format!(
            "Pipedrive answered: the token belongs to a user of {company}"
        ))
    }

    fn render(&self, records: &[OutgoingRecord]) -> Value {
        Value::Array(records.iter().map(|r| person_body(&r.properties)).collect())
    }

    async fn upsert(
        &self,
        ctx: &CallContext<'_>,
        records: &[OutgoingRecord],
    ) -> Result<Vec<RecordOutcome>, CrmError> {
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            out.push(RecordOutcome {
                lead_id: record.lead_id,
                result: self.write_one(ctx, record).await?,
            });
        }
        Ok(out)
    }

    async fn changed_since(
        &self,
        ctx: &CallContext<'_>,
        cursor: Option<&str>,
        _properties: &[String],
    ) -> Result<ChangePage, CrmError> {
        let cursor = cursor.unwrap_or("0|");
        let (since, page) = cursor
            .split_once('|')
            .ok_or_else(|| CrmError::Rejected(format!("not a Pipedrive poll cursor: {}", excerpt(cursor))))?;
        let since_ms: i64 = since
            .parse()
            .map_err(|_| CrmError::Rejected(format!("not a Pipedrive poll cursor: {}", excerpt(cursor))))?;
        let since_text = chrono::DateTime::from_timestamp_millis(since_ms)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let limit = PAGE.to_string();
        let mut query = vec![
            ("updated_since", since_text.as_str()),
            ("limit", limit.as_str()),
            ("sort_by", "update_time"),
            ("sort_direction", "asc"),
        ];
        if !page.is_empty() {
            query.push(("cursor", page));
        }
        let reply = send(get(ctx, &url(ctx, "/api/v2/persons", &query)?)?).await?;
        if reply.status != 200 {
            return Err(pd_error(&reply, "listing changed persons"));
        }
        let answer: Value = reply.json("listing changed persons")?;
        let records = answer
            .get("data")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_object)
                    .filter_map(record_of)
                    .collect()
            })
            .unwrap_or_default();
        let next = answer
            .pointer("/additional_data/next_cursor")
            .and_then(Value::as_str)
            .map(|c| format!("{since_ms}|{c}"));
        Ok(ChangePage {
            records,
            deleted: Vec::new(),
            next,
        })
    }

    fn resume_cursor(&self, newest_ms: i64) -> String {
        format!("{newest_ms}|")
    }

    async fn fetch(
        &self,
        ctx: &CallContext<'_>,
        external_id: &str,
        _properties: &[String],
    ) -> Result<Option<RemoteRecord>, CrmError> {
        if !external_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(CrmError::Rejected("a Pipedrive person id is a number".into()));
        }
        let reply = send(get(
            ctx,
            &url(ctx, &format!("/api/v2/persons/{external_id}"), &[])?,
        )?)
        .await?;
        match reply.status {
            200 => {
                let answer: Value = reply.json("reading a person")?;
                Ok(answer.get("data").and_then(Value::as_object).and_then(record_of))
            }
            404 | 410 => Ok(None),
            _ => Err(pd_error(&reply, "reading a person")),
        }
    }

    fn verify(
        &self,
        credentials: &CrmCredentials,
        request: &InboundRequest<'_>,
        _now_ms: i64,
    ) -> Result<(), String> {
        let (Some(user), Some(password)) = (&credentials.webhook_user, &credentials.webhook_password) else {
            return Err(
                "the connection has no webhookUser and webhookPassword to check Pipedrive's calls with"
                    .into(),
            );
        };
        let given = request
            .header("authorization")
            .and_then(|h| h.strip_prefix("Basic ").or_else(|| h.strip_prefix("basic ")))
            .ok_or_else(|| "HTTP Basic credentials are missing".to_owned())?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(given.trim())
            .map_err(|_| "the Basic credentials are not base64".to_owned())?;
        let expected = format!("{user}:{password}");
        if constant_time_eq(&decoded, expected.as_bytes()) {
            Ok(())
        } else {
            Err("the Basic credentials do not match".into())
        }
    }

    fn parse_events(&self, body: &[u8]) -> Result<Vec<InboundEvent>, String> {
        let payload: Value = serde_json::from_slice(body)
            .map_err(|e| format!("the body is not a JSON webhook payload: {e}"))?;
        let meta = payload
            .get("meta")
            .and_then(Value::as_object)
            .ok_or("the payload has no meta object")?;
        let entity = meta
            .get("entity")
            .or_else(|| meta.get("object"))
            .and_then(Value::as_str)
            .ok_or("meta.entity is missing")?;
        if entity != "person" {
            // deals, organizations, …: not leads
            return Ok(Vec::new());
        }
        let action = meta
            .get("action")
            .and_then(Value::as_str)
            .ok_or("meta.action is missing")?;
        let external_id = meta
            .get("entity_id")
            .or_else(|| meta.get("id"))
            .and_then(property_text)
            .ok_or("meta.entity_id is missing")?;
        let occurred_at_ms = meta
            .get("timestamp")
            .and_then(|t| t.as_i64().or_else(|| t.as_str().and_then(epoch_ms)))
            .ok_or("meta.timestamp is missing or not a time")?;
        // v2 sends one webhook per edit and retries it unchanged: the record, the action and
        // the time identify it (with the correlation id when Pipedrive sends one)
        let event_id = match meta.get("correlation_id").and_then(property_text) {
            Some(c) => format!("{c}:{external_id}:{action}"),
            None => format!("{external_id}:{action}:{occurred_at_ms}"),
        };
        let data = payload.get("data").and_then(Value::as_object);
        let change = match action {
            "create" | "added" => Change::Created(data.map(person_properties)),
            "change" | "updated" => {
                Change::Changed(data.map(person_properties).ok_or("a change has no data")?)
            }
            "delete" | "deleted" => Change::Deleted,
            other => return Err(format!("meta.action {other} is not create, change or delete")),
        };
        Ok(vec![InboundEvent {
            event_id,
            external_id,
            occurred_at_ms,
            change,
        }])
    }
}

/// Compares two byte strings in time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
