//! Output types: `Lead`, `Workspace`, `Viewer` and the `Node` interface.

use super::enrichment::{
    self, CompanyEnrichment, EmailVerification, EnrichmentPolicy, FieldProvenance, PersonEnrichment,
    PhoneEnrichment, Prefetched, group_record,
};
use super::ids::{lead_global_id, workspace_global_id};
use crate::domain::{self, Group};
use crate::service::Actor;
use async_graphql::{Context, Enum, ID, Interface, Json, Object};
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// Where a lead stands in the sales funnel.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum LeadStatus {
    New,
    Contacted,
    Qualified,
    Unqualified,
    Customer,
}

impl From<domain::LeadStatus> for LeadStatus {
    fn from(s: domain::LeadStatus) -> Self {
        match s {
            domain::LeadStatus::New => LeadStatus::New,
            domain::LeadStatus::Contacted => LeadStatus::Contacted,
            domain::LeadStatus::Qualified => LeadStatus::Qualified,
            domain::LeadStatus::Unqualified => LeadStatus::Unqualified,
            domain::LeadStatus::Customer => LeadStatus::Customer,
        }
    }
}

impl From<LeadStatus> for domain::LeadStatus {
    fn from(s: LeadStatus) -> Self {
        match s {
            LeadStatus::New => domain::LeadStatus::New,
            LeadStatus::Contacted => domain::LeadStatus::Contacted,
            LeadStatus::Qualified => domain::LeadStatus::Qualified,
            LeadStatus::Unqualified => domain::LeadStatus::Unqualified,
            LeadStatus::Customer => domain::LeadStatus::Customer,
        }
    }
}

/// What a caller may do in its workspace.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Role {
    /// Everything, including workspace settings.
    Admin,
    /// Reads and writes leads.
    Member,
    /// Reads leads.
    Viewer,
    /// An external integration; reads leads.
    Partner,
}

impl From<domain::Role> for Role {
    fn from(r: domain::Role) -> Self {
        match r {
            domain::Role::Admin => Role::Admin,
            domain::Role::Member => Role::Member,
            domain::Role::Viewer => Role::Viewer,
            domain::Role::Partner => Role::Partner,
        }
    }
}

/// A sales lead, with the enrichment its page prefetched, if any.
pub struct Lead(pub Arc<domain::Lead>, pub Option<Arc<Prefetched>>);

impl Lead {
    pub fn new(lead: domain::Lead) -> Self {
        Self(Arc::new(lead), None)
    }
}

#[Object]
impl Lead {
    /// Globally unique, opaque id.
    async fn id(&self) -> ID {
        lead_global_id(self.0.id)
    }
    /// Normalised (trimmed, lower-case) email; unique within the workspace.
    async fn email(&self) -> Option<&str> {
        self.0.email.as_ref().map(|e| e.as_str())
    }
    async fn first_name(&self) -> Option<&str> {
        self.0.first_name.as_deref()
    }
    async fn last_name(&self) -> Option<&str> {
        self.0.last_name.as_deref()
    }
    /// First and last name joined.
    async fn full_name(&self) -> Option<String> {
        self.0.full_name()
    }
    /// Job title.
    async fn title(&self) -> Option<&str> {
        self.0.title.as_deref()
    }
    async fn company_name(&self) -> Option<&str> {
        self.0.company_name.as_deref()
    }
    /// The company's domain, e.g. `acme.com`; derived from a business email when not given.
    async fn company_domain(&self) -> Option<&str> {
        self.0.company_domain.as_ref().map(|d| d.as_str())
    }
    /// Phone number in E.164 form, e.g. `+14155550100`.
    async fn phone(&self) -> Option<&str> {
        self.0.phone.as_ref().map(|p| p.as_str())
    }
    async fn linkedin_url(&self) -> Option<&str> {
        self.0.linkedin_url.as_ref().map(|u| u.as_str())
    }
    /// ISO 3166-1 alpha-2 country code, e.g. `DE`.
    async fn country(&self) -> Option<&str> {
        self.0.country.as_ref().map(|c| c.as_str())
    }
    /// Where the lead came from, e.g. `webinar`.
    async fn source(&self) -> Option<&str> {
        self.0.source.as_deref()
    }
    async fn status(&self) -> LeadStatus {
        self.0.status.into()
    }
    /// Who works the lead.
    async fn owner(&self) -> Option<&str> {
        self.0.owner.as_deref()
    }
    /// 0 to 100.
    async fn score(&self) -> i32 {
        i32::from(self.0.score.value())
    }
    async fn tags(&self) -> Vec<&str> {
        self.0.tags.as_strs()
    }
    /// Free-form custom fields (a JSON object).
    async fn custom_fields(&self) -> Json<&serde_json::Map<String, serde_json::Value>> {
        Json(self.0.custom_fields.as_map())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// Set while the lead is archived; archived leads are hidden from `leads` by default.
    async fn archived_at(&self) -> Option<DateTime<Utc>> {
        self.0.archived_at
    }
    /// Increases with every change; pass it as `expectedVersion` to update safely.
    async fn version(&self) -> i64 {
        self.0.version
    }
    /// Who the lead is at work, enriched lazily: from cache when fresh, else from the first
    /// provider in the workspace's waterfall that knows it. Null when no provider knows; an
    /// error (`BUDGET_EXCEEDED`, `QUOTA_EXCEEDED`, `PROVIDER_UNAVAILABLE`) when nothing is
    /// known because a provider could not be asked.
    async fn person(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Defaults to the workspace's default policy.")] policy: Option<EnrichmentPolicy>,
    ) -> async_graphql::Result<Option<PersonEnrichment>> {
        Ok(group_record(ctx, self, Group::Person, policy)
            .await?
            .map(enrichment::person))
    }
    /// The lead's company: firmographics and technographics, enriched lazily like `person`.
    async fn company(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Defaults to the workspace's default policy.")] policy: Option<EnrichmentPolicy>,
    ) -> async_graphql::Result<Option<CompanyEnrichment>> {
        Ok(group_record(ctx, self, Group::Company, policy)
            .await?
            .map(enrichment::company))
    }
    /// Whether the lead's email is deliverable, verified lazily like `person`.
    async fn email_verification(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Defaults to the workspace's default policy.")] policy: Option<EnrichmentPolicy>,
    ) -> async_graphql::Result<Option<EmailVerification>> {
        Ok(group_record(ctx, self, Group::EmailVerification, policy)
            .await?
            .map(enrichment::verification))
    }
    /// Phone numbers found for the lead, enriched lazily like `person`. (`phone` holds the
    /// number the lead was created with.)
    async fn phone_enrichment(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Defaults to the workspace's default policy.")] policy: Option<EnrichmentPolicy>,
    ) -> async_graphql::Result<Option<PhoneEnrichment>> {
        Ok(group_record(ctx, self, Group::Phone, policy)
            .await?
            .map(enrichment::phone))
    }
    /// Where every enriched value known for the lead came from. Reads cached and stored values
    /// only; never calls a provider.
    async fn enrichment(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<FieldProvenance>> {
        if let Some(records) = self.1.as_ref().and_then(|p| p.known(self.0.id)) {
            return Ok(enrichment::provenance(&records));
        }
        let actor = super::query::actor(ctx)?;
        let services = ctx.data::<crate::service::Services>()?;
        let records = services
            .enrichment
            .known(actor, std::slice::from_ref(&self.0))
            .await
            .remove(&self.0.id)
            .unwrap_or_default();
        Ok(enrichment::provenance(&records))
    }
}

/// A tenant. Every lead belongs to exactly one workspace.
pub struct Workspace(pub domain::Workspace);

#[Object]
impl Workspace {
    async fn id(&self) -> ID {
        workspace_global_id(self.0.id)
    }
    /// URL-safe handle, e.g. `acme`.
    async fn slug(&self) -> &str {
        self.0.slug.as_str()
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// The authenticated caller.
pub struct Viewer {
    pub actor: Actor,
    pub workspace: Option<domain::Workspace>,
}

#[Object]
impl Viewer {
    /// The token's subject (`sub` claim).
    async fn subject(&self) -> &str {
        &self.actor.subject
    }
    async fn role(&self) -> Role {
        self.actor.role.into()
    }
    /// The workspace the token is for.
    async fn workspace(&self) -> Option<Workspace> {
        self.workspace.clone().map(Workspace)
    }
    /// Whether this caller may create and change leads.
    async fn can_write_leads(&self) -> bool {
        self.actor.role.can_write_leads()
    }
}

/// An object with a globally unique id (Relay Global Object Identification).
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID", desc = "Globally unique, opaque id."))]
pub enum Node {
    Lead(Lead),
    Workspace(Workspace),
    Import(super::imports::Import),
}
