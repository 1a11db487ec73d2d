//! Output types: `Lead`, `Workspace`, `Viewer` and the `Node` interface.

use super::enrichment::{
    self, CompanyEnrichment, EmailVerification, EnrichmentPolicy, FieldProvenance, PersonEnrichment,
    PhoneEnrichment, Prefetched, group_record,
};
use super::ids::{lead_global_id, workspace_global_id};
use crate::domain::{self, Group, LeadDraft, Patch};
use crate::service::Actor;
use async_graphql::{Context, Enum, ID, InputObject, Interface, Json, MaybeUndefined, Object};
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
    /// The lead's IANA time zone, e.g. `Europe/Berlin`; campaign send windows use it (else
    /// the country's zone where the country has one, else the campaign's).
    async fn time_zone(&self) -> Option<&str> {
        self.0.time_zone.as_ref().map(|z| z.as_str())
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
        Ok(Box::pin(group_record(ctx, self, Group::Person, policy))
            .await?
            .map(enrichment::person))
    }
    /// The lead's company: firmographics and technographics, enriched lazily like `person`.
    async fn company(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Defaults to the workspace's default policy.")] policy: Option<EnrichmentPolicy>,
    ) -> async_graphql::Result<Option<CompanyEnrichment>> {
        Ok(Box::pin(group_record(ctx, self, Group::Company, policy))
            .await?
            .map(enrichment::company))
    }
    /// Whether the lead's email is deliverable, verified lazily like `person`.
    async fn email_verification(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Defaults to the workspace's default policy.")] policy: Option<EnrichmentPolicy>,
    ) -> async_graphql::Result<Option<EmailVerification>> {
        Ok(
            Box::pin(group_record(ctx, self, Group::EmailVerification, policy))
                .await?
                .map(enrichment::verification),
        )
    }
    /// Phone numbers found for the lead, enriched lazily like `person`. (`phone` holds the
    /// number the lead was created with.)
    async fn phone_enrichment(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Defaults to the workspace's default policy.")] policy: Option<EnrichmentPolicy>,
    ) -> async_graphql::Result<Option<PhoneEnrichment>> {
        Ok(Box::pin(group_record(ctx, self, Group::Phone, policy))
            .await?
            .map(enrichment::phone))
    }
    /// Every campaign step the lead went through, with its time and outcome, oldest first (at
    /// most 500 lines).
    async fn campaign_timeline(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<super::campaigns::CampaignActivity>> {
        super::campaigns::timeline(ctx, self.0.id).await
    }
    /// The lead's link to its record in each CRM that knows it.
    async fn crm_links(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<super::crm::CrmLink>> {
        if let Some(links) = self.1.as_ref().and_then(|p| p.crm_links(self.0.id)) {
            return Ok(links);
        }
        let services = ctx.data::<crate::service::Services>()?;
        let links = services
            .crm
            .links(super::query::actor(ctx)?, self.0.id)
            .await
            .map_err(super::errors::to_gql)?;
        Ok(links.into_iter().map(|l| super::crm::CrmLink(l, None)).collect())
    }
    /// Where every enriched value known for the lead came from. Reads cached and stored values
    /// only; never calls a provider.
    async fn enrichment(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<FieldProvenance>> {
        if let Some(records) = self.1.as_ref().and_then(|p| p.known(self.0.id)) {
            return Ok(enrichment::provenance(&records));
        }
        let actor = super::query::actor(ctx)?;
        let services = ctx.data::<crate::service::Services>()?;
        // boxed, as are the groups above: async-graphql boxes one future per field of a
        // `Lead`, sized for the largest resolver, so a store call inline here would make every
        // scalar field of every lead copy its state
        let records = Box::pin(services.enrichment.known(actor, std::slice::from_ref(&self.0)))
            .await
            .remove(&self.0.id)
            .unwrap_or_default();
        Ok(enrichment::provenance(&records))
    }
}

/// Fields of a new lead. Every field is optional; blank text counts as absent.
#[derive(InputObject, Default)]
pub struct CreateLeadInput {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub title: Option<String>,
    pub company_name: Option<String>,
    /// A domain or website URL; derived from a business email when absent.
    pub company_domain: Option<String>,
    /// International form, e.g. `+1 415 555 0100`; stored as E.164.
    pub phone: Option<String>,
    pub linkedin_url: Option<String>,
    /// ISO 3166-1 alpha-2 code.
    pub country: Option<String>,
    /// An IANA time zone name, e.g. `Europe/Berlin`.
    pub time_zone: Option<String>,
    pub source: Option<String>,
    /// Defaults to `NEW`.
    pub status: Option<LeadStatus>,
    pub owner: Option<String>,
    /// 0 to 100; defaults to 0.
    pub score: Option<i32>,
    pub tags: Option<Vec<String>>,
    /// A JSON object of at most 100 keys and 16 KiB.
    pub custom_fields: Option<Json<serde_json::Value>>,
}

fn set<T>(v: Option<T>) -> Patch<T> {
    v.map_or(Patch::Keep, Patch::Set)
}

impl CreateLeadInput {
    pub fn into_draft(self) -> LeadDraft {
        LeadDraft {
            email: set(self.email),
            first_name: set(self.first_name),
            last_name: set(self.last_name),
            title: set(self.title),
            company_name: set(self.company_name),
            company_domain: set(self.company_domain),
            phone: set(self.phone),
            linkedin_url: set(self.linkedin_url),
            country: set(self.country),
            time_zone: set(self.time_zone),
            source: set(self.source),
            status: set(self.status.map(Into::into)),
            owner: set(self.owner),
            score: set(self.score.map(i64::from)),
            tags: set(self.tags),
            custom_fields: set(self.custom_fields.map(|j| j.0)),
        }
    }
}

/// A partial update: absent fields stay as they are, `null` clears a field.
#[derive(InputObject)]
pub struct UpdateLeadInput {
    pub id: ID,
    /// When given, the update is refused with a `STALE_VERSION` user error unless the lead is
    /// still at this version.
    pub expected_version: Option<i64>,
    pub email: MaybeUndefined<String>,
    pub first_name: MaybeUndefined<String>,
    pub last_name: MaybeUndefined<String>,
    pub title: MaybeUndefined<String>,
    pub company_name: MaybeUndefined<String>,
    pub company_domain: MaybeUndefined<String>,
    pub phone: MaybeUndefined<String>,
    pub linkedin_url: MaybeUndefined<String>,
    pub country: MaybeUndefined<String>,
    /// An IANA time zone name, e.g. `Europe/Berlin`.
    pub time_zone: MaybeUndefined<String>,
    pub source: MaybeUndefined<String>,
    pub status: MaybeUndefined<LeadStatus>,
    pub owner: MaybeUndefined<String>,
    pub score: MaybeUndefined<i32>,
    pub tags: MaybeUndefined<Vec<String>>,
    pub custom_fields: MaybeUndefined<Json<serde_json::Value>>,
}

fn patch<T>(v: MaybeUndefined<T>) -> Patch<T> {
    match v {
        MaybeUndefined::Undefined => Patch::Keep,
        MaybeUndefined::Null => Patch::Clear,
        MaybeUndefined::Value(v) => Patch::Set(v),
    }
}

impl UpdateLeadInput {
    pub fn into_draft(self) -> LeadDraft {
        LeadDraft {
            email: patch(self.email),
            first_name: patch(self.first_name),
            last_name: patch(self.last_name),
            title: patch(self.title),
            company_name: patch(self.company_name),
            company_domain: patch(self.company_domain),
            phone: patch(self.phone),
            linkedin_url: patch(self.linkedin_url),
            country: patch(self.country),
            time_zone: patch(self.time_zone),
            source: patch(self.source),
            status: patch(self.status.map_value(Into::into)),
            owner: patch(self.owner),
            score: patch(self.score.map_value(i64::from)),
            tags: patch(self.tags),
            custom_fields: patch(self.custom_fields.map_value(|j| j.0)),
        }
    }
}

/// Identifies one lead.
#[derive(InputObject)]
pub struct LeadIdInput {
    pub id: ID,
}

/// Leads to create or update, matched by email.
#[derive(InputObject)]
pub struct UpsertLeadsInput {
    /// At most 1,000 leads; each needs an `email`.
    pub leads: Vec<CreateLeadInput>,
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
        self.actor.can_write_leads()
    }
    /// What the caller may do: the scopes of an API key that its role allows, or for a JWT
    /// every scope its role allows. Workspace settings need `ADMIN`.
    async fn scopes(&self) -> Vec<super::api_keys::ApiKeyScope> {
        self.actor
            .scopes()
            .into_iter()
            .map(super::api_keys::ApiKeyScope::from_domain)
            .collect()
    }
}

/// An object with a globally unique id (Relay Global Object Identification).
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID", desc = "Globally unique, opaque id."))]
pub enum Node {
    Lead(Lead),
    Workspace(Workspace),
    Import(super::imports::Import),
    CrmConnection(super::crm::CrmConnection),
    Campaign(super::campaigns::Campaign),
}
