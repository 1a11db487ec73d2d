//! Erasure tombstones: what is kept of a person after a right-to-be-forgotten request.
//!
//! A tombstone holds no personal data, only a hash of the normalised email, salted with the
//! workspace id so the same address hashes differently in two workspaces. Imports and lead
//! creation check new emails against it, so an erased person is not brought back.

use super::columns::personal_texts;
use super::ids::WorkspaceId;
use super::lead::Lead;
use super::values::EmailAddress;
use sha2::{Digest, Sha256};

/// The salted SHA-256 of a normalised email address, as 64 lower-case hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct EmailHash(String);

impl EmailHash {
    /// The hash of `email` within workspace `ws`.
    pub fn of(ws: WorkspaceId, email: &EmailAddress) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"leadgate-erasure:v1:");
        hasher.update(ws.as_uuid().as_bytes());
        hasher.update(b":");
        hasher.update(email.as_str().as_bytes());
        let digest = hasher.finalize();
        let mut hex = String::with_capacity(64);
        for byte in digest {
            hex.push_str(&format!("{byte:02x}"));
        }
        Self(hex)
    }

    /// A hash read back from the store.
    pub fn from_trusted(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Needles shorter than this are not looked for: they would match unrelated text.
pub const MIN_NEEDLE_CHARS: usize = 3;

/// The values of `lead` that identify the person, lower-cased, as looked for in free text
/// (job errors, receivers' answers, event payloads) when the lead is erased.
pub fn personal_values(lead: &Lead) -> Vec<String> {
    let mut out: Vec<String> = personal_texts(lead)
        .map(|v| v.trim().to_lowercase())
        .filter(|v| v.chars().count() >= MIN_NEEDLE_CHARS)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What replaces a personal value in free text.
pub const REDACTED: &str = "[erased]";

/// `text` with every case-insensitive occurrence of the (lower-case) `needles` replaced by
/// `REDACTED`; `None` when none occurs.
pub fn redact(text: &str, needles: &[String]) -> Option<String> {
    // the lower-cased text, and for each of its bytes the original char's byte range
    let mut lowered = String::with_capacity(text.len());
    let mut origin: Vec<(usize, usize)> = Vec::with_capacity(text.len());
    for (i, ch) in text.char_indices() {
        for l in ch.to_lowercase() {
            for _ in 0..l.len_utf8() {
                origin.push((i, i + ch.len_utf8()));
            }
            lowered.push(l);
        }
    }
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for needle in needles.iter().filter(|n| !n.is_empty()) {
        for (at, _) in lowered.match_indices(needle.as_str()) {
            spans.push((origin[at].0, origin[at + needle.len() - 1].1));
        }
    }
    if spans.is_empty() {
        return None;
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for (start, end) in spans {
        if start < pos {
            // overlaps the previous match: one marker covers both
            pos = pos.max(end);
            continue;
        }
        out.push_str(&text[pos..start]);
        out.push_str(REDACTED);
        pos = end;
    }
    out.push_str(&text[pos..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_replaces_every_case_insensitive_occurrence() {
        let needles = vec!["ann@acme.io".to_owned(), "ann".to_owned()];
        assert_eq!(
            redact("Hi ANN, mail Ann@Acme.io", &needles).as_deref(),
            Some("Hi [erased], mail [erased]")
        );
        assert_eq!(redact("nothing here", &needles), None);
    }

    #[test]
    fn redact_keeps_multibyte_text_intact() {
        let needles = vec!["jörg".to_owned()];
        assert_eq!(redact("«JÖRG» é", &needles).as_deref(), Some("«[erased]» é"));
    }

    fn email(raw: &str) -> EmailAddress {
        EmailAddress::parse("email", raw).unwrap()
    }

    #[test]
    fn same_address_same_workspace_same_hash() {
        let ws = WorkspaceId::new();
        assert_eq!(
            EmailHash::of(ws, &email("Ann@Acme.io")),
            EmailHash::of(ws, &email("ann@acme.io"))
        );
    }

    #[test]
    fn the_workspace_salts_the_hash() {
        let e = email("ann@acme.io");
        let (a, b) = (
            EmailHash::of(WorkspaceId::new(), &e),
            EmailHash::of(WorkspaceId::new(), &e),
        );
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 64);
        assert!(!a.as_str().contains("acme"));
    }
}
