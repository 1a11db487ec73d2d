//! Erasure use cases (admins only): erase a lead on request, list the audit records. The
//! erasure is one store transaction (`ops::erasure`); afterwards the lead is evicted from the
//! in-process enrichment cache and `lead.erased` is published.

use super::{Actor, ServiceError};
use crate::domain::{
    EmailAddress, Erasure, ErasureId, FieldErrorCode, KeysetPage, LeadId, MAX_ERASURE_REASON, Paged,
};
use crate::enrich::Enricher;
use crate::events::Bus;
use crate::store::Store;
use tracing::instrument;

/// Most audit records one page holds.
pub const MAX_ERASURE_PAGE: u32 = 100;

#[derive(Clone, Debug)]
pub struct ErasureService {
    store: Store,
    enricher: Enricher,
    bus: Bus,
}

impl ErasureService {
    pub fn new(store: Store, enricher: Enricher, bus: Bus) -> Self {
        Self { store, enricher, bus }
    }

    /// Erases a lead of the caller's workspace and returns the audit record.
    #[instrument(skip_all, fields(lead.id = %id))]
    pub async fn erase(
        &self,
        actor: &Actor,
        id: LeadId,
        reason: Option<String>,
    ) -> Result<Erasure, ServiceError> {
        actor.require_admin()?;
        let reason = reason.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
        if reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_ERASURE_REASON)
        {
            return Err(ServiceError::invalid(
                "reason",
                FieldErrorCode::TooLong,
                format!("at most {MAX_ERASURE_REASON} characters"),
            ));
        }
        let ws = actor.workspace_id;
        let (erasure, events) =
            crate::ops::erasure::erase_lead(&self.store, ws, id, &actor.subject, reason.as_deref())
                .await?
                .ok_or(ServiceError::NotFound("lead"))?;
        self.enricher.forget_lead(ws, id).await;
        self.bus.publish(events);
        tracing::info!(erasure = %erasure.id, "lead erased on request");
        Ok(erasure)
    }

    /// Erases the lead with this email (for operators handling requests by email).
    pub async fn erase_by_email(
        &self,
        actor: &Actor,
        email: &EmailAddress,
        reason: Option<String>,
    ) -> Result<Erasure, ServiceError> {
        actor.require_admin()?;
        let id = crate::ops::erasure::find_by_email(&self.store, actor.workspace_id, email)
            .await?
            .ok_or(ServiceError::NotFound("lead"))?;
        self.erase(actor, id, reason).await
    }

    /// A page of the workspace's erasure records, newest first (at most `MAX_ERASURE_PAGE`).
    pub async fn list(
        &self,
        actor: &Actor,
        page: KeysetPage<ErasureId>,
    ) -> Result<Paged<Erasure>, ServiceError> {
        actor.require_admin()?;
        let page = page.capped(MAX_ERASURE_PAGE as usize);
        Ok(self.store.erasures(actor.workspace_id, &page).await?)
    }
}
