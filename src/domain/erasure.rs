//! Erasure tombstones: what is kept of a person after a right-to-be-forgotten request.
//!
//! A tombstone holds no personal data, only a hash of the normalised email, salted with the
//! workspace id so the same address hashes differently in two workspaces. Imports and lead
//! creation check new emails against it, so an erased person is not brought back.

use super::ids::WorkspaceId;
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

#[cfg(test)]
mod tests {
    use super::*;

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
