//! API keys: long-lived secrets that partners and services send instead of a JWT.
//!
//! A key's secret is `lg_live_` and 43 base64url characters (32 random bytes, no padding). Only
//! its SHA-256 digest is stored: the secret has 256 bits of entropy, so a plain digest cannot
//! be reversed or guessed, and no salt or slow hash is needed. `parse_secret` checks the form
//! (and nothing about the content beyond it) before anything is looked up. A key acts with its
//! role *and* its scopes: each scope opens one area, and the role still decides what may be
//! done there.

use super::error::{FieldError, FieldErrorCode};
use super::ids::{ApiKeyId, WorkspaceId};
use super::lead::Timestamp;
use super::rate::RateLimit;
use super::workspace::Role;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::fmt;

/// Every API key's secret starts with this.
pub const KEY_PREFIX: &str = "lg_live_";
/// Characters of base64url after the prefix: 32 bytes without padding.
pub const KEY_BODY_LEN: usize = 43;
/// How many leading characters of a secret are kept to tell keys apart (`lg_live_AbCd`).
pub const DISPLAY_PREFIX_LEN: usize = 12;
/// Longest key name.
pub const MAX_KEY_NAME: usize = 100;

/// The SHA-256 digest of a key's secret, the only form in which a secret is stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct KeyDigest(pub [u8; 32]);

impl KeyDigest {
    /// The digest of a secret's full text (prefix included).
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Lower-case hex, as stored.
    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads the stored hex form.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(out))
    }
}

/// Why a presented key is refused. The messages are shown to callers and never quote the key.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum KeyRefusal {
    /// Not of the form `lg_live_` + 43 base64url characters, or not a key we issued.
    #[error("API key is not valid")]
    NotValid,
    #[error("API key is revoked")]
    Revoked,
    #[error("API key has expired")]
    Expired,
}

/// The text of a fresh secret made from 32 random bytes.
pub fn secret_from_bytes(bytes: &[u8; 32]) -> String {
    format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Checks a presented secret's form and returns its digest: the prefix, the length, and that
/// the body is base64url of exactly 32 bytes.
pub fn parse_secret(raw: &str) -> Result<KeyDigest, KeyRefusal> {
    let body = raw.strip_prefix(KEY_PREFIX).ok_or(KeyRefusal::NotValid)?;
    if body.len() != KEY_BODY_LEN {
        return Err(KeyRefusal::NotValid);
    }
    let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| KeyRefusal::NotValid)?;
    if bytes.len() != 32 {
        return Err(KeyRefusal::NotValid);
    }
    Ok(KeyDigest::of(raw))
}

/// The leading characters of a secret shown in listings.
pub fn display_prefix(secret: &str) -> String {
    secret.chars().take(DISPLAY_PREFIX_LEN).collect()
}

/// One area a key may act in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Scope {
    /// Read leads (queries, the lead fields of events).
    ReadLeads,
    /// Create, change, archive and enrich leads.
    WriteLeads,
    /// Subscriptions over WebSocket.
    Subscribe,
    /// Imports and exports.
    ImportExport,
    /// Workspace settings: providers, webhooks, CRM, campaigns, jobs, keys.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::ReadLeads,
        Scope::WriteLeads,
        Scope::Subscribe,
        Scope::ImportExport,
        Scope::Admin,
    ];

    /// The stored (and CLI) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ReadLeads => "leads:read",
            Scope::WriteLeads => "leads:write",
            Scope::Subscribe => "subscribe",
            Scope::ImportExport => "bulk",
            Scope::Admin => "admin",
        }
    }

    /// The GraphQL spelling (`ApiKeyScope`), used in messages.
    pub fn api_name(self) -> &'static str {
        match self {
            Scope::ReadLeads => "READ_LEADS",
            Scope::WriteLeads => "WRITE_LEADS",
            Scope::Subscribe => "SUBSCRIBE",
            Scope::ImportExport => "IMPORT_EXPORT",
            Scope::Admin => "ADMIN",
        }
    }

    /// Reads either spelling, case-insensitively.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(raw) || s.api_name().eq_ignore_ascii_case(raw))
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of scopes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Scopes(u8);

impl Scopes {
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn with(self, scope: Scope) -> Self {
        Self(self.0 | scope.bit())
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes held, in `Scope::ALL` order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Parses a list of scope names (either spelling): at least one, all known.
    pub fn parse_list<S: AsRef<str>>(field: &str, raw: &[S]) -> Result<Self, FieldError> {
        if raw.is_empty() {
            return Err(FieldError::new(
                field,
                FieldErrorCode::Required,
                "name at least one scope",
            ));
        }
        raw.iter().try_fold(Scopes::default(), |set, name| {
            Scope::parse(name.as_ref())
                .map(|s| set.with(s))
                .ok_or_else(|| FieldError::invalid(field, format!("unknown scope `{}`", name.as_ref())))
        })
    }

    /// Reads the stored form (`leads:read,subscribe`).
    pub fn from_stored(raw: &str) -> Option<Self> {
        raw.split(',')
            .filter(|s| !s.is_empty())
            .try_fold(Scopes::default(), |set, s| Scope::parse(s).map(|s| set.with(s)))
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        iter.into_iter().fold(Scopes::default(), Scopes::with)
    }
}

/// The stored form: the scopes' names, comma-separated.
impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

/// An API key as stored: everything but the secret, which exists only as digests.
#[derive(Clone, PartialEq, Debug)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    /// The secret's first `DISPLAY_PREFIX_LEN` characters, to tell keys apart.
    pub prefix: String,
    pub digest: KeyDigest,
    /// The secret replaced by the last rotation, and until when it is still accepted.
    pub previous: Option<(KeyDigest, Timestamp)>,
    pub role: Role,
    pub scopes: Scopes,
    /// The key's own request rate, instead of the workspace's.
    pub rate_limit: Option<RateLimit>,
    pub created_at: Timestamp,
    /// The subject of whoever created it.
    pub created_by: String,
    /// When it was last used, to within a few seconds.
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl ApiKey {
    /// Why the key cannot be used at `now`, if it cannot.
    pub fn refusal(&self, now: Timestamp) -> Option<KeyRefusal> {
        if self.revoked_at.is_some_and(|t| t <= now) {
            Some(KeyRefusal::Revoked)
        } else if self.expires_at.is_some_and(|t| t <= now) {
            Some(KeyRefusal::Expired)
        } else {
            None
        }
    }
}

/// Checks a key name: not blank, at most `MAX_KEY_NAME` characters.
pub fn parse_key_name(field: &str, raw: &str) -> Result<String, FieldError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(FieldError::new(field, FieldErrorCode::Required, "name the key"));
    }
    if name.chars().count() > MAX_KEY_NAME {
        return Err(FieldError::new(
            field,
            FieldErrorCode::TooLong,
            format!("must be at most {MAX_KEY_NAME} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(FieldError::invalid(field, "must not contain control characters"));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> String {
        secret_from_bytes(&[7u8; 32])
    }

    #[test]
    fn a_fresh_secret_has_the_prefix_and_43_base64url_characters() {
        let s = secret();
        assert!(s.starts_with(KEY_PREFIX));
        assert_eq!(s.len(), KEY_PREFIX.len() + KEY_BODY_LEN);
        assert_eq!(parse_secret(&s), Ok(KeyDigest::of(&s)));
        assert_eq!(display_prefix(&s).len(), DISPLAY_PREFIX_LEN);
    }

    #[test]
    fn malformed_secrets_are_not_valid() {
        let s = secret();
        let body = &s[KEY_PREFIX.len()..];
        for bad in [
            String::new(),
            format!("lg_test_{body}"),
            format!("{KEY_PREFIX}{}", &body[1..]),
            format!("{s}A"),
            format!("{KEY_PREFIX}{}!", &body[1..]),
            format!("{KEY_PREFIX}{}=", &body[1..]),
            // the last character must leave no stray bits
            format!("{KEY_PREFIX}{}B", &body[..KEY_BODY_LEN - 1]),
        ] {
            assert_eq!(parse_secret(&bad), Err(KeyRefusal::NotValid), "{bad}");
        }
    }

    #[test]
    fn digests_round_trip_through_hex() {
        let d = KeyDigest::of("x");
        assert_eq!(KeyDigest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(KeyDigest::from_hex("zz"), None);
    }

    #[test]
    fn scopes_parse_in_either_spelling_and_store_one_way() {
        let set = Scopes::parse_list("scopes", &["READ_LEADS", "subscribe", "leads:read"]).unwrap();
        assert_eq!(set.to_string(), "leads:read,subscribe");
        assert_eq!(Scopes::from_stored(&set.to_string()), Some(set));
        assert!(Scopes::parse_list::<&str>("scopes", &[]).is_err());
        assert!(Scopes::parse_list("scopes", &["everything"]).is_err());
    }

    #[test]
    fn key_names_must_be_present_and_short() {
        assert_eq!(parse_key_name("name", " CRM sync ").unwrap(), "CRM sync");
        assert_eq!(
            parse_key_name("name", " ").unwrap_err().code,
            FieldErrorCode::Required
        );
        assert_eq!(
            parse_key_name("name", &"x".repeat(MAX_KEY_NAME + 1))
                .unwrap_err()
                .code,
            FieldErrorCode::TooLong
        );
    }
}
