//! Salesforce: Leads upserted by an external-id field through sObject Collections
//! (`PATCH /services/data/v60.0/composite/sobjects/Lead/Leadgate_Id__c`, at most 200 records,
//! `allOrNone: false`, results in request order), the OAuth access token renewed from the
//! refresh token at the connection's token URL, changes polled with SOQL on
//! `LastModifiedDate` and deletions from `sobjects/Lead/deleted`. Sources:
//! developer.salesforce.com (sObject Collections upsert, REST API headers), as transcribed in
//! the reference of external APIs.
//!
//! The external id is the lead's id in `Leadgate_Id__c`, a custom field the org creates
//! (External ID, unique): resending a batch after a crash updates the same records.
//! `Sforce-Limit-Info: api-usage=used/limit` is read from every answer and reported by
//! `check`. Errors come back as a JSON array; one with `ALL_OR_NONE_OPERATION_ROLLED_BACK`
//! is "not written", any other refuses its record. Salesforce sends no webhooks leadgate
//! verifies: its connections are polled.

#[cfg(test)]
mod tests;

use super::{
    CallContext, ChangePage, CrmConnector, CrmError, InboundEvent, InboundRequest, OutgoingRecord,
    RecordOutcome, Refreshed, RemoteRecord, Reply, Written, classify, epoch_ms, excerpt, get, post,
    property_text, request, send,
};
use crate::domain::{CrmCredentials, CrmKind};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

pub const API: &str = "/services/data/v60.0";
/// The custom External ID field that holds the lead's id.
pub const EXTERNAL_ID_FIELD: &str = "Leadgate_Id__c";

#[derive(Default)]
pub struct Salesforce;

fn bearer(ctx: &CallContext<'_>) -> Result<String, CrmError> {
    ctx.credentials
        .access_token
        .as_ref()
        .map(|t| format!("Bearer {t}"))
        .ok_or_else(|| CrmError::Unauthorized("no access token yet".into()))
}

/// `(used, limit)` from `Sforce-Limit-Info: api-usage=18/5000`.
pub fn api_usage(reply: &Reply) -> Option<(u64, u64)> {
    let header = reply.header("sforce-limit-info")?;
    let usage = header
        .split(',')
        .find_map(|part| part.trim().strip_prefix("api-usage="))?;
    let (used, limit) = usage.split_once('/')?;
    Some((used.trim().parse().ok()?, limit.trim().parse().ok()?))
}

/// Salesforce's error list (`[{"message","errorCode","fields"}]`) in words.
fn errors_text(errors: &[Value]) -> String {
    errors
        .iter()
        .map(|e| {
            let code = e
                .get("statusCode")
                .or_else(|| e.get("errorCode"))
                .and_then(Value::as_str)
                .unwrap_or("ERROR");
            let message = e.get("message").and_then(Value::as_str).unwrap_or("");
            format!("{code}: {message}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn sf_error(reply: &Reply, what: &str) -> CrmError {
    // an exhausted daily allowance is a 403 REQUEST_LIMIT_EXCEEDED: wait, do not give up
    if reply.status == 403 && reply.body.contains("REQUEST_LIMIT_EXCEEDED") {
        return CrmError::RateLimited {
            retry_after: Some(std::time::Duration::from_secs(3600)),
        };
    }
    match serde_json::from_str::<Vec<Value>>(&reply.body) {
        Ok(errors) if reply.status == 401 => CrmError::Unauthorized(errors_text(&errors)),
        Ok(errors) if (400..500).contains(&reply.status) && reply.status != 429 => {
            CrmError::Rejected(format!(
                "{what}: Salesforce answered {}: {}",
                reply.status,
                errors_text(&errors)
            ))
        }
        _ => classify(reply, what),
    }
}

#[derive(Deserialize)]
struct SaveResult {
    id: Option<String>,
    success: bool,
    #[serde(default)]
    errors: Vec<Value>,
}

#[derive(Deserialize)]
struct QueryAnswer {
    #[serde(default)]
    records: Vec<Map<String, Value>>,
    #[serde(rename = "nextRecordsUrl")]
    next_records_url: Option<String>,
}

#[derive(Deserialize)]
struct DeletedAnswer {
    #[serde(rename = "deletedRecords", default)]
    deleted_records: Vec<HashMap<String, Value>>,
}

fn record_of(mut fields: Map<String, Value>) -> Option<RemoteRecord> {
    let id = fields.get("Id").and_then(Value::as_str)?.to_owned();
    let updated = fields
        .get("LastModifiedDate")
        .and_then(Value::as_str)
        .and_then(epoch_ms)
        .unwrap_or(0);
    fields.remove("attributes");
    let properties = fields
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "Id" | "LastModifiedDate"))
        .map(|(k, v)| (k.clone(), property_text(v)))
        .collect();
    Some(RemoteRecord {
        external_id: id,
        properties,
        updated_at_ms: updated,
    })
}

/// `2026-12-04T10:00:00.000Z` for SOQL and the deleted listing.
fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

#[async_trait]
impl CrmConnector for Salesforce {
    fn kind(&self) -> CrmKind {
        CrmKind::Salesforce
    }

    async fn check(&self, ctx: &CallContext<'_>) -> Result<String, CrmError> {
        let reply =
            send(get(ctx, &format!("{}{API}/limits", ctx.base_url))?.header("authorization", bearer(ctx)?))
                .await?;
        if reply.status != 200 {
            return Err(sf_error(&reply, "reading the org's limits"));
        }
        Ok(match api_usage(&reply) {
            Some((used, limit)) => {
                format!("Salesforce answered: {used} of {limit} API requests used in the last 24 hours")
            }
            None => "Salesforce answered".into(),
        })
    }

    fn render(&self, records: &[OutgoingRecord]) -> Value {
        let records: Vec<Value> = records
            .iter()
            .map(|r| {
                let mut fields = Map::new();
                fields.insert("attributes".into(), json!({"type": "Lead"}));
                fields.insert(EXTERNAL_ID_FIELD.into(), json!(r.lead_id.to_string()));
                for (k, v) in &r.properties {
                    fields.insert(k.clone(), json!(v));
                }
                Value::Object(fields)
            })
            .collect();
        json!({"allOrNone": false, "records": records})
    }

    async fn upsert(
        &self,
        ctx: &CallContext<'_>,
        records: &[OutgoingRecord],
    ) -> Result<Vec<RecordOutcome>, CrmError> {
        let url = format!(
            "{}{API}/composite/sobjects/Lead/{EXTERNAL_ID_FIELD}",
            ctx.base_url
        );
        let request = request(ctx, reqwest::Method::PATCH, &url)?
            .header("authorization", bearer(ctx)?)
            .json(&self.render(records));
        let reply = send(request).await?;
        if reply.status != 200 {
            return Err(sf_error(&reply, "an sObject Collections upsert"));
        }
        let results: Vec<SaveResult> = reply.json("an sObject Collections upsert")?;
        if results.len() != records.len() {
            return Err(CrmError::Rejected(format!(
                "Salesforce answered {} results for {} records: {}",
                results.len(),
                records.len(),
                reply.excerpt()
            )));
        }
        Ok(records
            .iter()
            .zip(results)
            .map(|(record, result)| {
                let written = match (result.success, result.id) {
                    (true, Some(id)) => Written::Ok(id),
                    (true, None) => Written::NotWritten("Salesforce reported success without an id".into()),
                    (false, _) => {
                        let text = errors_text(&result.errors);
                        if text.contains("ALL_OR_NONE_OPERATION_ROLLED_BACK") {
                            Written::NotWritten(format!("rolled back with the batch: {text}"))
                        } else {
                            Written::Refused(format!("Salesforce refused the lead: {text}"))
                        }
                    }
                };
                RecordOutcome {
                    lead_id: record.lead_id,
                    result: written,
                }
            })
            .collect())
    }

    async fn changed_since(
        &self,
        ctx: &CallContext<'_>,
        cursor: Option<&str>,
        properties: &[String],
    ) -> Result<ChangePage, CrmError> {
        let cursor = cursor.unwrap_or("q:0");
        let bad = || CrmError::Rejected(format!("not a Salesforce poll cursor: {}", excerpt(cursor)));
        let (phase, rest) = cursor.split_once(':').ok_or_else(bad)?;
        match phase {
            "q" | "n" => {
                let (since, url) = if phase == "q" {
                    let since: i64 = rest.parse().map_err(|_| bad())?;
                    let mut fields: Vec<&str> = vec!["Id", "LastModifiedDate"];
                    fields.extend(properties.iter().map(String::as_str));
                    let soql = format!(
                        "SELECT {} FROM Lead WHERE LastModifiedDate >= {} ORDER BY LastModifiedDate ASC",
                        fields.join(", "),
                        iso(since)
                    );
                    let q: String = url::form_urlencoded::byte_serialize(soql.as_bytes()).collect();
                    (since, format!("{}{API}/query?q={q}", ctx.base_url))
                } else {
                    let (since, next) = rest.split_once('|').ok_or_else(bad)?;
                    (
                        since.parse().map_err(|_| bad())?,
                        format!("{}{next}", ctx.base_url),
                    )
                };
                let reply = send(get(ctx, &url)?.header("authorization", bearer(ctx)?)).await?;
                if reply.status != 200 {
                    return Err(sf_error(&reply, "querying changed leads"));
                }
                let answer: QueryAnswer = reply.json("querying changed leads")?;
                let records: Vec<RemoteRecord> = answer.records.into_iter().filter_map(record_of).collect();
                let next = match answer.next_records_url {
                    Some(next) => format!("n:{since}|{next}"),
                    None => format!("d:{since}"),
                };
                Ok(ChangePage {
                    records,
                    deleted: Vec::new(),
                    next: Some(next),
                })
            }
            "d" => {
                let since: i64 = rest.parse().map_err(|_| bad())?;
                // the listing covers at most 30 days back, and needs a start before its end
                let now = chrono::Utc::now().timestamp_millis();
                let start = since.max(now - 29 * 86_400_000).min(now - 60_000);
                let url = format!(
                    "{}{API}/sobjects/Lead/deleted/?start={}&end={}",
                    ctx.base_url,
                    url::form_urlencoded::byte_serialize(iso(start).as_bytes()).collect::<String>(),
                    url::form_urlencoded::byte_serialize(iso(now).as_bytes()).collect::<String>()
                );
                let reply = send(get(ctx, &url)?.header("authorization", bearer(ctx)?)).await?;
                if reply.status != 200 {
                    return Err(sf_error(&reply, "listing deleted leads"));
                }
                let answer: DeletedAnswer = reply.json("listing deleted leads")?;
                let deleted = answer
                    .deleted_records
                    .iter()
                    .filter_map(|d| {
                        let id = d.get("id").and_then(Value::as_str)?.to_owned();
                        let at = d.get("deletedDate").and_then(Value::as_str).and_then(epoch_ms)?;
                        Some((id, at))
                    })
                    .collect();
                Ok(ChangePage {
                    records: Vec::new(),
                    deleted,
                    next: None,
                })
            }
            _ => Err(bad()),
        }
    }

    fn resume_cursor(&self, newest_ms: i64) -> String {
        format!("q:{newest_ms}")
    }

    async fn fetch(
        &self,
        ctx: &CallContext<'_>,
        external_id: &str,
        properties: &[String],
    ) -> Result<Option<RemoteRecord>, CrmError> {
        if !external_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(CrmError::Rejected("a Salesforce id is letters and digits".into()));
        }
        let mut fields = vec!["Id".to_owned(), "LastModifiedDate".to_owned()];
        fields.extend(properties.iter().cloned());
        let url = format!(
            "{}{API}/sobjects/Lead/{external_id}?fields={}",
            ctx.base_url,
            fields.join(",")
        );
        let reply = send(get(ctx, &url)?.header("authorization", bearer(ctx)?)).await?;
        match reply.status {
            200 => Ok(record_of(reply.json("reading a lead")?)),
            404 => Ok(None),
            _ => Err(sf_error(&reply, "reading a lead")),
        }
    }

    async fn refresh(&self, ctx: &CallContext<'_>) -> Result<Option<Refreshed>, CrmError> {
        let creds = ctx.credentials;
        let (Some(id), Some(secret), Some(refresh)) =
            (&creds.client_id, &creds.client_secret, &creds.refresh_token)
        else {
            return Err(CrmError::Unauthorized(
                "a token refresh needs clientId, clientSecret and refreshToken".into(),
            ));
        };
        let token_url = ctx
            .token_url
            .ok_or_else(|| CrmError::Rejected("the connection has no token URL".into()))?;
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
            ("refresh_token", refresh.as_str()),
        ];
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let reply = send(
            post(ctx, token_url)?
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await?;
        if reply.status != 200 {
            // an OAuth error is {"error":"invalid_grant","error_description":"…"}
            let detail: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
            let text = match (detail.get("error"), detail.get("error_description")) {
                (Some(e), Some(d)) => format!("{}: {}", e.as_str().unwrap_or(""), d.as_str().unwrap_or("")),
                _ => reply.excerpt(),
            };
            return Err(match reply.status {
                400 | 401 => CrmError::Unauthorized(format!("the refresh token was refused ({text})")),
                _ => sf_error(&reply, "refreshing the access token"),
            });
        }
        let answer: Value = reply.json("refreshing the access token")?;
        let access_token = answer
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| CrmError::Rejected("the token answer has no access_token".into()))?
            .to_owned();
        let instance_url = answer
            .get("instance_url")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Some(Refreshed {
            access_token,
            instance_url,
        }))
    }

    fn verify(&self, _: &CrmCredentials, _: &InboundRequest<'_>, _: i64) -> Result<(), String> {
        Err("Salesforce connections are polled; they take no webhooks".into())
    }

    fn parse_events(&self, _: &[u8]) -> Result<Vec<InboundEvent>, String> {
        Err("Salesforce connections are polled; they take no webhooks".into())
    }
}
