//! Stable error codes in `extensions.code`, and the one place service errors become GraphQL
//! errors. Internal causes are logged here and never sent.

use crate::domain::{FieldError, FieldErrorCode, ValidationErrors};
use crate::service::ServiceError;
use async_graphql::{Enum, ErrorExtensions, SimpleObject};

pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
pub const FORBIDDEN: &str = "FORBIDDEN";
pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
pub const NOT_FOUND: &str = "NOT_FOUND";
pub const INTERNAL: &str = "INTERNAL";
/// The request's `maxCredits` budget did not cover a provider call.
pub const BUDGET_EXCEEDED: &str = "BUDGET_EXCEEDED";
/// A provider's daily or monthly credit quota is spent and no other provider could answer.
pub const QUOTA_EXCEEDED: &str = "QUOTA_EXCEEDED";
/// Every provider that could answer failed, timed out, was rate limited or is switched off.
pub const PROVIDER_UNAVAILABLE: &str = "PROVIDER_UNAVAILABLE";
pub const GRAPHQL_PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
pub const GRAPHQL_VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
/// Introspection (`__schema`, `__type`) is not allowed for this caller (`introspection`).
pub const INTROSPECTION_DISABLED: &str = "INTROSPECTION_DISABLED";
/// A request a browser could send cross-site without a preflight (GET, or a multipart POST)
/// came without `x-leadgate-csrf` or `apollo-require-preflight`.
pub const CSRF_HEADER_REQUIRED: &str = "CSRF_HEADER_REQUIRED";
/// Over a rate limit; HTTP says when to retry (`Retry-After`).
pub const RATE_LIMITED: &str = "RATE_LIMITED";

/// A GraphQL error carrying `extensions.code`.
pub fn coded(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code))
}

pub fn bad_input(message: impl Into<String>) -> async_graphql::Error {
    coded(BAD_USER_INPUT, message)
}

/// Converts a service error that is not a user error into a GraphQL error.
pub fn to_gql(e: ServiceError) -> async_graphql::Error {
    match e {
        ServiceError::Forbidden(m) => coded(FORBIDDEN, m),
        ServiceError::NotFound(what) => coded(NOT_FOUND, format!("{what} not found")),
        ServiceError::Invalid(errors) => bad_input(errors.to_string()),
        ServiceError::Refused(why) => bad_input(why),
        ServiceError::Internal(cause) => {
            tracing::error!(error = %cause, "internal error");
            coded(INTERNAL, "internal error")
        }
    }
}

/// Why a mutation input was rejected.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum UserErrorCode {
    /// The value is malformed or out of range.
    Invalid,
    /// A required value is missing or blank.
    Required,
    /// The value is too long or has too many items.
    TooLong,
    /// Another lead in the workspace already has this value.
    Taken,
    /// The lead changed since the version given in `expectedVersion`.
    StaleVersion,
}

/// A problem with mutation input that the caller can fix.
#[derive(SimpleObject, Clone, Debug)]
pub struct UserError {
    /// Path to the input field, e.g. `["input", "email"]`.
    pub field: Vec<String>,
    /// A human-readable explanation.
    pub message: String,
    pub code: UserErrorCode,
}

impl UserError {
    pub fn from_field_error(e: FieldError, parent: &[&str]) -> Self {
        let mut field: Vec<String> = parent.iter().map(|s| (*s).to_owned()).collect();
        field.extend(e.field);
        Self {
            field,
            message: e.message,
            code: match e.code {
                FieldErrorCode::Invalid => UserErrorCode::Invalid,
                FieldErrorCode::Required => UserErrorCode::Required,
                FieldErrorCode::TooLong => UserErrorCode::TooLong,
                FieldErrorCode::Taken => UserErrorCode::Taken,
                FieldErrorCode::StaleVersion => UserErrorCode::StaleVersion,
            },
        }
    }

    pub fn list(errors: ValidationErrors, parent: &[&str]) -> Vec<Self> {
        errors
            .0
            .into_iter()
            .map(|e| Self::from_field_error(e, parent))
            .collect()
    }
}

/// Splits a service result into payload parts: user errors stay in the payload, everything
/// else becomes a GraphQL error.
pub fn split<T>(
    result: Result<T, ServiceError>,
    parent: &[&str],
) -> async_graphql::Result<(Option<T>, Vec<UserError>)> {
    match result {
        Ok(v) => Ok((Some(v), Vec::new())),
        Err(ServiceError::Invalid(errors)) => Ok((None, UserError::list(errors, parent))),
        Err(other) => Err(to_gql(other)),
    }
}
