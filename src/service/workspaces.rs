//! Workspace administration, for operators (CLI) rather than API callers.

use super::ServiceError;
use crate::domain::{FieldErrorCode, ValidationErrors, Workspace, WorkspaceId, WorkspaceSlug, now};
use crate::store::Store;

#[derive(Clone, Debug)]
pub struct WorkspaceService {
    store: Store,
}

impl WorkspaceService {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Creates a workspace; the name defaults to the slug.
    pub async fn create(&self, slug: &str, name: Option<&str>) -> Result<Workspace, ServiceError> {
        let slug =
            WorkspaceSlug::parse(slug).map_err(|e| ServiceError::Invalid(ValidationErrors(vec![e])))?;
        let name = name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(slug.as_str())
            .to_owned();
        if name.chars().count() > 200 {
            return Err(ServiceError::invalid(
                "name",
                FieldErrorCode::TooLong,
                "a name has at most 200 characters",
            ));
        }
        let ws = Workspace {
            id: WorkspaceId::new(),
            slug,
            name,
            created_at: now(),
        };
        self.store.create_workspace(&ws).await?;
        Ok(ws)
    }

    /// The workspace with this slug, creating it when missing (idempotent set-up).
    pub async fn ensure(&self, slug: &str, name: &str) -> Result<(Workspace, bool), ServiceError> {
        if let Some(ws) = self.store.workspace_by_slug(slug).await? {
            return Ok((ws, false));
        }
        match self.create(slug, Some(name)).await {
            Ok(ws) => Ok((ws, true)),
            Err(ServiceError::Invalid(_)) => match self.store.workspace_by_slug(slug).await? {
                Some(ws) => Ok((ws, false)),
                None => Err(ServiceError::NotFound("workspace")),
            },
            Err(e) => Err(e),
        }
    }

    pub async fn by_slug(&self, slug: &str) -> Result<Workspace, ServiceError> {
        self.store
            .workspace_by_slug(slug)
            .await?
            .ok_or(ServiceError::NotFound("workspace"))
    }

    pub async fn by_id(&self, id: WorkspaceId) -> Result<Option<Workspace>, ServiceError> {
        Ok(self.store.workspace(id).await?)
    }

    pub async fn list(&self) -> Result<Vec<Workspace>, ServiceError> {
        Ok(self.store.list_workspaces().await?)
    }
}

impl WorkspaceService {
    /// The maintained lead counts of a workspace.
    pub async fn lead_counts(&self, id: WorkspaceId) -> Result<crate::store::LeadCounts, ServiceError> {
        Ok(self.store.lead_counts(id).await?)
    }
}
