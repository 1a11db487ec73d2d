//! Workspaces (tenants) and the roles a caller can hold in one.

use super::error::FieldError;
use super::ids::WorkspaceId;
use super::lead::Timestamp;
use std::fmt;

/// A workspace's URL-safe handle: 2 to 48 lower-case letters, digits and hyphens.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct WorkspaceSlug(String);

impl WorkspaceSlug {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let v = raw.trim();
        let ok = (2..=48).contains(&v.len())
            && v.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !v.starts_with('-')
            && !v.ends_with('-');
        if ok {
            Ok(Self(v.to_owned()))
        } else {
            Err(FieldError::invalid(
                "slug",
                "a workspace slug has 2 to 48 lower-case letters, digits or inner hyphens",
            ))
        }
    }

    pub fn from_trusted(v: String) -> Self {
        Self(v)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkspaceSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant: every lead belongs to exactly one.
#[derive(Clone, PartialEq, Debug)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub slug: WorkspaceSlug,
    pub name: String,
    pub created_at: Timestamp,
}

/// What a caller may do in its workspace.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Role {
    /// Everything, including workspace settings.
    Admin,
    /// Reads and writes leads.
    Member,
    /// Reads leads.
    Viewer,
    /// An external integration: reads leads.
    Partner,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Member, Role::Viewer, Role::Partner];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
            Role::Partner => "partner",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }

    pub fn can_write_leads(self) -> bool {
        matches!(self, Role::Admin | Role::Member)
    }

    /// Bulk exports are for people in the workspace; partners read leads through the API.
    pub fn can_export(self) -> bool {
        matches!(self, Role::Admin | Role::Member | Role::Viewer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_accepts_lowercase_and_hyphen() {
        assert!(WorkspaceSlug::parse("acme-eu-2").is_ok());
    }

    #[test]
    fn slug_rejects_uppercase_and_edges() {
        assert!(WorkspaceSlug::parse("Acme").is_err());
        assert!(WorkspaceSlug::parse("-acme").is_err());
        assert!(WorkspaceSlug::parse("a").is_err());
    }

    #[test]
    fn only_admin_and_member_write() {
        assert!(Role::Admin.can_write_leads());
        assert!(Role::Member.can_write_leads());
        assert!(!Role::Viewer.can_write_leads());
        assert!(!Role::Partner.can_write_leads());
    }
}
