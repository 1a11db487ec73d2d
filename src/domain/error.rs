//! Validation errors that name the offending input field, the shape GraphQL `userErrors` take.

use std::fmt;

/// Why a field was rejected; stable, machine-readable.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FieldErrorCode {
    /// The value is malformed or out of range.
    Invalid,
    /// A required value is missing or blank.
    Required,
    /// The value is longer, or has more items, than allowed.
    TooLong,
    /// Another lead in the workspace already has this value.
    Taken,
    /// The record changed since the version the client read.
    StaleVersion,
}

/// One rejected input field: a path (`["input", "email"]`), a human message and a code.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FieldError {
    pub field: Vec<String>,
    pub message: String,
    pub code: FieldErrorCode,
}

impl FieldError {
    pub fn new(field: &str, code: FieldErrorCode, message: impl Into<String>) -> Self {
        Self {
            field: vec![field.to_owned()],
            message: message.into(),
            code,
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(field, FieldErrorCode::Invalid, message)
    }

    /// Places the field under a parent path, e.g. `email` → `leads.3.email`.
    pub fn under(mut self, parent: &[String]) -> Self {
        let mut path = parent.to_vec();
        path.append(&mut self.field);
        self.field = path;
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field.join("."), self.message)
    }
}

/// Every problem found in one input, collected rather than stopping at the first.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// Records the error of a parse and returns its value, if it parsed.
    pub fn check<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    pub fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result<T>(self, value: impl FnOnce() -> T) -> Result<T, ValidationErrors> {
        if self.0.is_empty() { Ok(value()) } else { Err(self) }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for ValidationErrors {}
