//! What the export endpoint borrows from GraphQL: the `LeadFilter` input read from JSON with
//! GraphQL's own validation and messages, and error bodies shaped like every other HTTP error
//! (`{"errors":[{"message":…,"extensions":{"code":…}}]}`).
//!
//! The filter is checked by running it as a variable through a one-field schema, so an unknown
//! field, a wrong type or a bad enum value is refused exactly as `leads(filter:)` refuses it.

use super::errors::{BAD_USER_INPUT, FORBIDDEN, INTERNAL, NOT_FOUND};
use super::inputs::LeadFilter;
use super::transport::{HttpReply, MediaType, error_reply};
use crate::domain;
use crate::service::ServiceError;
use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Request, Schema, Variables};
use std::sync::{Arc, Mutex};

/// Where the checking resolver leaves the converted filter.
type Slot = Arc<Mutex<Option<domain::LeadFilter>>>;

#[derive(Default)]
struct FilterCheck;

#[Object]
impl FilterCheck {
    async fn check(&self, ctx: &Context<'_>, filter: Option<LeadFilter>) -> async_graphql::Result<bool> {
        let parsed = filter.unwrap_or_default().into_domain()?;
        if let Ok(mut slot) = ctx.data::<Slot>()?.lock() {
            *slot = Some(parsed);
        }
        Ok(true)
    }
}

/// Reads a `LeadFilter` given as JSON (the GraphQL input's shape).
#[derive(Clone)]
pub struct FilterParser {
    schema: Schema<FilterCheck, EmptyMutation, EmptySubscription>,
}

impl Default for FilterParser {
    fn default() -> Self {
        Self::new()
    }
}

impl FilterParser {
    pub fn new() -> Self {
        Self {
            schema: Schema::build(FilterCheck, EmptyMutation, EmptySubscription).finish(),
        }
    }

    /// The domain filter of `raw`, or a message for the caller.
    pub async fn parse(&self, raw: &str) -> Result<domain::LeadFilter, String> {
        let value: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| format!("`filter` is not valid JSON: {e}"))?;
        let slot = Slot::default();
        let request = Request::new("query($filter: LeadFilter) { check(filter: $filter) }")
            .variables(Variables::from_json(serde_json::json!({ "filter": value })))
            .data(slot.clone());
        let response = self.schema.execute(request).await;
        if let Some(error) = response.errors.first() {
            return Err(format!("`filter`: {}", error.message));
        }
        let parsed = slot.lock().ok().and_then(|mut s| s.take());
        parsed.ok_or_else(|| "`filter` could not be read".to_owned())
    }
}

/// A 400 with `BAD_USER_INPUT`.
pub fn bad_request(message: &str) -> HttpReply {
    error_reply(400, MediaType::Json, BAD_USER_INPUT, message)
}

/// The reply for an export refused before its body began.
pub fn refused(e: ServiceError) -> HttpReply {
    match e {
        ServiceError::Forbidden(m) => error_reply(403, MediaType::Json, FORBIDDEN, &m),
        ServiceError::NotFound(what) => {
            error_reply(404, MediaType::Json, NOT_FOUND, &format!("{what} not found"))
        }
        ServiceError::Invalid(errors) => bad_request(&errors.to_string()),
        ServiceError::Refused(why) => bad_request(why),
        ServiceError::Internal(cause) => {
            tracing::error!(error = %cause, "export could not start");
            error_reply(500, MediaType::Json, INTERNAL, "internal error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ArchivedFilter, LeadStatus};

    async fn parse(raw: &str) -> Result<domain::LeadFilter, String> {
        FilterParser::new().parse(raw).await
    }

    #[tokio::test]
    async fn reads_the_graphql_shape() {
        let f = parse(r#"{"status":["QUALIFIED"],"archived":true,"search":" Ann "}"#)
            .await
            .unwrap();
        assert_eq!(f.statuses, vec![LeadStatus::Qualified]);
        assert_eq!(f.archived, ArchivedFilter::Only);
        assert_eq!(f.search.as_deref(), Some("ann"));
        assert_eq!(parse("null").await.unwrap(), domain::LeadFilter::default());
        assert_eq!(parse("{}").await.unwrap(), domain::LeadFilter::default());
    }

    #[tokio::test]
    async fn refuses_what_graphql_refuses() {
        let unknown = parse(r#"{"colour":"red"}"#).await.unwrap_err();
        assert!(unknown.contains("colour"), "{unknown}");
        let enum_value = parse(r#"{"status":["HOT"]}"#).await.unwrap_err();
        assert!(enum_value.contains("HOT"), "{enum_value}");
        let converted = parse(r#"{"tags":{"anyOf":["a"],"allOf":["b"]}}"#)
            .await
            .unwrap_err();
        assert!(converted.contains("not both"), "{converted}");
        let not_json = parse("{status:").await.unwrap_err();
        assert!(not_json.contains("not valid JSON"), "{not_json}");
        let not_object = parse("[1]").await.unwrap_err();
        assert!(not_object.contains("LeadFilter"), "{not_object}");
    }
}
