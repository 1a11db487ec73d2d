//! CRM connections for admins: `crmConnections` (a Relay connection; `CrmConnection` is a
//! `Node`), create, update, delete and test a connection, `previewCrmPush`, `syncLeads`,
//! `crmSyncRuns`, and each lead's `crmLinks`. Credentials go in and never come out: a
//! connection shows which of them are set, not their values.

use super::connection::{PageInfo, PageSize, keyset_connection, keyset_page};
use super::errors::{UserError, bad_input, split, to_gql};
use super::ids::{NodeType, decode_lead_id, decode_typed_id, global_id};
use super::inputs::LeadFilter;
use super::query::actor;
use crate::domain::{self, CrmConnectionId};
use crate::service::{ConnectionDraft, Services, SyncSelection};
use async_graphql::{
    ComplexObject, Context, Enum, ID, InputObject, Json, MaybeUndefined, Object, SimpleObject,
};
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// The CRMs leadgate syncs with.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CrmKind {
    Hubspot,
    Salesforce,
    Pipedrive,
}

impl From<CrmKind> for domain::CrmKind {
    fn from(k: CrmKind) -> Self {
        match k {
            CrmKind::Hubspot => domain::CrmKind::HubSpot,
            CrmKind::Salesforce => domain::CrmKind::Salesforce,
            CrmKind::Pipedrive => domain::CrmKind::Pipedrive,
        }
    }
}

impl From<domain::CrmKind> for CrmKind {
    fn from(k: domain::CrmKind) -> Self {
        match k {
            domain::CrmKind::HubSpot => CrmKind::Hubspot,
            domain::CrmKind::Salesforce => CrmKind::Salesforce,
            domain::CrmKind::Pipedrive => CrmKind::Pipedrive,
        }
    }
}

/// Lead fields a mapping can name.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum MappedField {
    Email,
    FirstName,
    LastName,
    Title,
    CompanyName,
    CompanyDomain,
    Phone,
    LinkedinUrl,
    Country,
    Source,
    Status,
    Owner,
    Score,
}

macro_rules! mirror {
    ($ours:ident <=> $theirs:path { $($v:ident),* }) => {
        impl From<$ours> for $theirs {
            fn from(v: $ours) -> Self {
                match v { $($ours::$v => <$theirs>::$v),* }
            }
        }
        impl From<$theirs> for $ours {
            fn from(v: $theirs) -> Self {
                match v { $(<$theirs>::$v => $ours::$v),* }
            }
        }
    };
}

mirror!(MappedField <=> domain::MappedField {
    Email, FirstName, LastName, Title, CompanyName, CompanyDomain, Phone, LinkedinUrl, Country, Source, Status,
    Owner, Score
});

/// Which way a mapped field travels.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum SyncDirection {
    Push,
    Pull,
    Both,
}

mirror!(SyncDirection <=> domain::SyncDirection { Push, Pull, Both });

/// Who wins when both sides changed a field.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ConflictPolicy {
    /// The change with the newer timestamp.
    Newest,
    CrmWins,
    LeadgateWins,
}

mirror!(ConflictPolicy <=> domain::ConflictPolicy { Newest, CrmWins, LeadgateWins });

/// How a value changes on its way across.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum MappingTransform {
    None,
    Lowercase,
    Trim,
    /// Phone numbers in E.164.
    E164,
    /// ISO 3166-1 alpha-2 country codes.
    IsoCountry,
    /// `valueMap` pairs, ours → theirs; received values map back.
    ValueMap,
}

/// What happens to a lead whose CRM record is deleted.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CrmDeletion {
    /// Archive the lead.
    Archive,
    /// Remove the link; keep the lead as it is.
    Unlink,
}

mirror!(CrmDeletion <=> domain::OnDeletion { Archive, Unlink });

/// Where a lead stands with one connection.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CrmLinkStatus {
    Synced,
    Pending,
    Failed,
}

mirror!(CrmLinkStatus <=> domain::LinkStatus { Synced, Pending, Failed });

/// What started a sync run.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CrmSyncTrigger {
    Push,
    Poll,
    Webhook,
    Manual,
}

mirror!(CrmSyncTrigger <=> domain::SyncTrigger { Push, Poll, Webhook, Manual });

/// One value pair of a `VALUE_MAP` transform.
#[derive(InputObject, SimpleObject, Clone)]
#[graphql(input_name = "ValuePairInput")]
pub struct ValuePair {
    /// leadgate's value, e.g. `qualified`.
    pub ours: String,
    /// The CRM's value, e.g. `salesqualifiedlead`.
    pub theirs: String,
}

/// One lead field ↔ one CRM property.
#[derive(InputObject)]
pub struct MappingRuleInput {
    pub field: MappedField,
    /// The CRM property (HubSpot's internal name, a Salesforce field's API name, a Pipedrive key).
    pub property: String,
    pub direction: SyncDirection,
    #[graphql(default_with = "MappingTransform::None")]
    pub transform: MappingTransform,
    /// The pairs of a `VALUE_MAP` transform.
    pub value_map: Option<Vec<ValuePair>>,
    /// Sent when the lead has no value.
    pub default: Option<String>,
    #[graphql(default_with = "ConflictPolicy::Newest")]
    pub conflict: ConflictPolicy,
}

impl MappingRuleInput {
    fn into_domain(self, i: usize) -> async_graphql::Result<domain::MappingRule> {
        let transform = match (self.transform, self.value_map) {
            (MappingTransform::ValueMap, Some(pairs)) => {
                domain::Transform::ValueMap(pairs.into_iter().map(|p| (p.ours, p.theirs)).collect())
            }
            (MappingTransform::ValueMap, None) => {
                return Err(bad_input(format!(
                    "fieldMapping[{i}]: a VALUE_MAP transform needs valueMap"
                )));
            }
            (_, Some(_)) => {
                return Err(bad_input(format!(
                    "fieldMapping[{i}]: valueMap goes with the VALUE_MAP transform only"
                )));
            }
            (MappingTransform::None, None) => domain::Transform::None,
            (MappingTransform::Lowercase, None) => domain::Transform::Lowercase,
            (MappingTransform::Trim, None) => domain::Transform::Trim,
            (MappingTransform::E164, None) => domain::Transform::E164,
            (MappingTransform::IsoCountry, None) => domain::Transform::IsoCountry,
        };
        Ok(domain::MappingRule {
            field: self.field.into(),
            property: self.property.trim().to_owned(),
            direction: self.direction.into(),
            transform,
            default: self.default,
            conflict: self.conflict.into(),
        })
    }
}

fn mapping_of(rules: Vec<MappingRuleInput>) -> async_graphql::Result<domain::FieldMapping> {
    Ok(domain::FieldMapping {
        rules: rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.into_domain(i))
            .collect::<async_graphql::Result<_>>()?,
    })
}

/// A connection's mapping rule as stored.
pub struct MappingRule(domain::MappingRule);

#[Object]
impl MappingRule {
    async fn field(&self) -> MappedField {
        self.0.field.into()
    }
    async fn property(&self) -> &str {
        &self.0.property
    }
    async fn direction(&self) -> SyncDirection {
        self.0.direction.into()
    }
    async fn transform(&self) -> MappingTransform {
        match self.0.transform {
            domain::Transform::None => MappingTransform::None,
            domain::Transform::Lowercase => MappingTransform::Lowercase,
            domain::Transform::Trim => MappingTransform::Trim,
            domain::Transform::E164 => MappingTransform::E164,
            domain::Transform::IsoCountry => MappingTransform::IsoCountry,
            domain::Transform::ValueMap(_) => MappingTransform::ValueMap,
        }
    }
    async fn value_map(&self) -> Option<Vec<ValuePair>> {
        match &self.0.transform {
            domain::Transform::ValueMap(pairs) => Some(
                pairs
                    .iter()
                    .map(|(ours, theirs)| ValuePair {
                        ours: ours.clone(),
                        theirs: theirs.clone(),
                    })
                    .collect(),
            ),
            _ => None,
        }
    }
    async fn default(&self) -> Option<&str> {
        self.0.default.as_deref()
    }
    async fn conflict(&self) -> ConflictPolicy {
        self.0.conflict.into()
    }
}

/// Credentials, validated per CRM: HubSpot takes `accessToken` (a private-app token) and
/// `clientSecret` (the app secret that signs webhooks); Salesforce `clientId`,
/// `clientSecret`, `refreshToken` and optionally `accessToken`; Pipedrive `apiToken`, and
/// `webhookUser` with `webhookPassword` for inbound webhooks. Stored sealed, never returned.
#[derive(InputObject, Default)]
pub struct CrmCredentialsInput {
    pub access_token: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub refresh_token: Option<String>,
    pub api_token: Option<String>,
    pub webhook_user: Option<String>,
    pub webhook_password: Option<String>,
}

impl From<CrmCredentialsInput> for domain::CrmCredentials {
    fn from(c: CrmCredentialsInput) -> Self {
        Self {
            access_token: c.access_token,
            client_id: c.client_id,
            client_secret: c.client_secret,
            refresh_token: c.refresh_token,
            api_token: c.api_token,
            webhook_user: c.webhook_user,
            webhook_password: c.webhook_password,
        }
    }
}

/// A workspace's connection to one CRM account; in the schema `CrmIntegration`, as a type
/// whose name ends in `Connection` is a Relay connection.
pub struct CrmConnection(pub Box<domain::CrmConnection>);

impl From<domain::CrmConnection> for CrmConnection {
    fn from(c: domain::CrmConnection) -> Self {
        CrmConnection(Box::new(c))
    }
}

#[Object(name = "CrmIntegration")]
impl CrmConnection {
    pub async fn id(&self) -> ID {
        global_id(NodeType::CrmConnection, self.0.id.as_uuid())
    }
    async fn kind(&self) -> CrmKind {
        self.0.kind.into()
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The CRM's API root requests go to.
    async fn api_base_url(&self) -> &str {
        &self.0.api_base_url
    }
    /// Where OAuth tokens are refreshed (Salesforce).
    async fn token_url(&self) -> Option<&str> {
        self.0.token_url.as_deref()
    }
    /// Which credentials are set; their values are never shown.
    async fn credentials_set(&self) -> Vec<String> {
        self.0
            .credentials_hint
            .split(", ")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
    async fn field_mapping(&self) -> Vec<MappingRule> {
        self.0
            .field_mapping
            .rules
            .iter()
            .cloned()
            .map(MappingRule)
            .collect()
    }
    /// Whether lead changes are pushed as they happen.
    async fn push_on_change(&self) -> bool {
        self.0.push_on_change
    }
    /// Seconds between polls of the CRM for changes; null when it is not polled.
    async fn poll_interval(&self) -> Option<u32> {
        self.0.poll_interval_secs
    }
    async fn on_deletion(&self) -> CrmDeletion {
        self.0.on_deletion.into()
    }
    /// The path (under the server's public URL) the CRM's webhooks are sent to.
    async fn webhook_path(&self) -> String {
        format!("/webhooks/crm/{}", self.0.id)
    }
    async fn last_polled_at(&self) -> Option<DateTime<Utc>> {
        self.0.polled_at
    }
    /// No request goes to the CRM before this (it asked us to wait).
    async fn blocked_until(&self) -> Option<DateTime<Utc>> {
        self.0.blocked_until
    }
    /// Links of leads to CRM records, by status.
    async fn link_counts(&self, ctx: &Context<'_>) -> async_graphql::Result<CrmLinkCounts> {
        let services = ctx.data::<Services>()?;
        let (links, _) = services.crm.stats(actor(ctx)?, self.0.id).await.map_err(to_gql)?;
        let n = |k: &str| links.get(k).copied().unwrap_or(0);
        Ok(CrmLinkCounts {
            synced: n("synced"),
            pending: n("pending"),
            failed: n("failed"),
        })
    }
    /// Inbound webhook requests by outcome (`applied`, `duplicate`, `bad_signature`,
    /// `malformed`, `retry`).
    async fn webhook_receipts(&self, ctx: &Context<'_>) -> async_graphql::Result<Json<serde_json::Value>> {
        let services = ctx.data::<Services>()?;
        let (_, receipts) = services.crm.stats(actor(ctx)?, self.0.id).await.map_err(to_gql)?;
        Ok(Json(serde_json::to_value(receipts).unwrap_or_default()))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(SimpleObject)]
pub struct CrmLinkCounts {
    pub synced: u64,
    pub pending: u64,
    pub failed: u64,
}

/// A lead's link to its record in one CRM.
/// The link, and its connection when the page's prefetch loaded it.
pub struct CrmLink(pub domain::CrmLink, pub Option<Arc<domain::CrmConnection>>);

#[Object]
impl CrmLink {
    /// Null once the connection is gone.
    async fn connection(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<CrmConnection>> {
        if let Some(conn) = &self.1 {
            return Ok(Some(CrmConnection::from(conn.as_ref().clone())));
        }
        let services = ctx.data::<Services>()?;
        let found = services
            .crm
            .connection_of(actor(ctx)?, self.0.connection_id)
            .await
            .map_err(to_gql)?;
        Ok(found.map(CrmConnection::from))
    }
    /// The CRM's id of the record, once known.
    async fn external_id(&self) -> Option<&str> {
        self.0.external_id.as_deref()
    }
    async fn status(&self) -> CrmLinkStatus {
        self.0.status.into()
    }
    async fn last_synced_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_synced_at
    }
    /// Why the last push or pull of this lead failed.
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    /// Since when a change waits to be pushed.
    async fn pending_since(&self) -> Option<DateTime<Utc>> {
        self.0.pending_since
    }
}

/// One push, poll or webhook batch.
pub struct CrmSyncRun(domain::CrmSyncRun);

#[Object]
impl CrmSyncRun {
    async fn id(&self) -> ID {
        use base64::Engine;
        ID(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("CrmSyncRun:{}", self.0.id)))
    }
    async fn connection_id(&self) -> ID {
        global_id(NodeType::CrmConnection, self.0.connection_id.as_uuid())
    }
    async fn trigger(&self) -> CrmSyncTrigger {
        self.0.trigger.into()
    }
    async fn started_at(&self) -> DateTime<Utc> {
        self.0.started_at
    }
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
    async fn pushed(&self) -> u64 {
        self.0.counts.pushed
    }
    async fn pulled(&self) -> u64 {
        self.0.counts.pulled
    }
    async fn failed(&self) -> u64 {
        self.0.counts.failed
    }
    /// Records already in step on both sides, or changes older than what was applied.
    async fn skipped(&self) -> u64 {
        self.0.counts.skipped
    }
}

const CONNECTION_PAGE: PageSize = PageSize {
    default: 20,
    max: 100,
};
const RUN_PAGE: PageSize = PageSize {
    default: 20,
    max: crate::service::crm::MAX_RUN_PAGE as usize,
};

#[derive(SimpleObject)]
#[graphql(name = "CrmIntegrationEdge")]
pub struct CrmConnectionEdge {
    pub cursor: String,
    pub node: CrmConnection,
}

/// CRM connections, oldest first.
#[derive(SimpleObject)]
#[graphql(complex, name = "CrmIntegrationConnection")]
pub struct CrmConnectionConnection {
    pub edges: Vec<CrmConnectionEdge>,
    pub page_info: PageInfo,
}

#[ComplexObject]
impl CrmConnectionConnection {
    async fn nodes(&self) -> Vec<CrmConnection> {
        self.edges
            .iter()
            .map(|e| CrmConnection(e.node.0.clone()))
            .collect()
    }
}

#[derive(SimpleObject)]
pub struct CrmSyncRunEdge {
    pub cursor: String,
    pub node: CrmSyncRun,
}

/// Sync runs, newest first.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct CrmSyncRunConnection {
    pub edges: Vec<CrmSyncRunEdge>,
    pub page_info: PageInfo,
}

#[ComplexObject]
impl CrmSyncRunConnection {
    async fn nodes(&self) -> Vec<CrmSyncRun> {
        self.edges.iter().map(|e| CrmSyncRun(e.node.0.clone())).collect()
    }
}

/// The request a push of one lead would send, exactly.
#[derive(SimpleObject)]
pub struct CrmPushPreview {
    pub method: String,
    pub url: String,
    pub body: Json<serde_json::Value>,
}

pub fn connection_id(id: &ID) -> async_graphql::Result<CrmConnectionId> {
    decode_typed_id(id, NodeType::CrmConnection).map(CrmConnectionId::from_uuid)
}

/// A connection for `node(id:)`: admins only, like `crmConnections`.
pub async fn connection_node(
    ctx: &Context<'_>,
    id: CrmConnectionId,
) -> async_graphql::Result<Option<CrmConnection>> {
    let services = ctx.data::<Services>()?;
    let actor = actor(ctx)?;
    if actor.require_admin().is_err() {
        return Ok(None);
    }
    match services.crm.get(actor, id).await {
        Ok(c) => Ok(Some(CrmConnection(Box::new(c)))),
        Err(crate::service::ServiceError::NotFound(_)) => Ok(None),
        Err(e) => Err(to_gql(e)),
    }
}

#[derive(Default)]
pub struct CrmQuery;

#[Object]
impl CrmQuery {
    /// The workspace's CRM connections (admins only).
    async fn crm_connections(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "At most 100; 20 when neither `first` nor `last` is given.")] first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "At most 100.")] last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<CrmConnectionConnection> {
        let page = keyset_page(first, after, last, before, CONNECTION_PAGE)?;
        let actor = actor(ctx)?.clone();
        let (edges, page_info) = keyset_connection(
            ctx,
            page,
            move |services, page| {
                let actor = actor.clone();
                async move { services.crm.list(&actor, page).await }
            },
            |c| c.id,
            |cursor, c| CrmConnectionEdge {
                cursor,
                node: CrmConnection(Box::new(c)),
            },
        )
        .await?;
        Ok(CrmConnectionConnection { edges, page_info })
    }

    /// Sync runs, newest first; of one connection with `connectionId` (admins only).
    async fn crm_sync_runs(
        &self,
        ctx: &Context<'_>,
        connection_id: Option<ID>,
        #[graphql(desc = "At most 100; 20 when neither `first` nor `last` is given.")] first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "At most 100.")] last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<CrmSyncRunConnection> {
        let connection = connection_id.as_ref().map(self::connection_id).transpose()?;
        let page = keyset_page(first, after, last, before, RUN_PAGE)?;
        let actor = actor(ctx)?.clone();
        let (edges, page_info) = keyset_connection(
            ctx,
            page,
            move |services, page| {
                let actor = actor.clone();
                async move { services.crm.runs(&actor, connection, page).await }
            },
            |r| r.id,
            |cursor, r| CrmSyncRunEdge {
                cursor,
                node: CrmSyncRun(r),
            },
        )
        .await?;
        Ok(CrmSyncRunConnection { edges, page_info })
    }

    /// The exact request a push of the lead to the connection would send (admins only).
    async fn preview_crm_push(
        &self,
        ctx: &Context<'_>,
        connection_id: ID,
        lead_id: ID,
    ) -> async_graphql::Result<CrmPushPreview> {
        let services = ctx.data::<Services>()?;
        let preview = services
            .crm
            .preview(
                actor(ctx)?,
                self::connection_id(&connection_id)?,
                decode_lead_id(&lead_id)?,
            )
            .await
            .map_err(to_gql)?;
        Ok(CrmPushPreview {
            method: preview.method.into(),
            url: preview.url,
            body: Json(preview.body),
        })
    }
}

#[derive(InputObject)]
pub struct CreateCrmConnectionInput {
    pub kind: CrmKind,
    pub name: String,
    /// The CRM's API root; its public one when left out. Requests pass the outbound guard.
    pub api_base_url: Option<String>,
    /// Where OAuth tokens are refreshed (Salesforce); its public one when left out.
    pub token_url: Option<String>,
    pub credentials: CrmCredentialsInput,
    /// The CRM's standard mapping when left out.
    pub field_mapping: Option<Vec<MappingRuleInput>>,
    #[graphql(default = true)]
    pub push_on_change: bool,
    /// Seconds between polls (60 to 86400); no polling when left out.
    pub poll_interval: Option<u32>,
    #[graphql(default_with = "CrmDeletion::Archive")]
    pub on_deletion: CrmDeletion,
}

#[derive(InputObject)]
pub struct UpdateCrmConnectionInput {
    pub id: ID,
    pub name: Option<String>,
    pub api_base_url: Option<String>,
    pub token_url: Option<String>,
    /// Only the fields given change; the others are kept.
    pub credentials: Option<CrmCredentialsInput>,
    /// Replaces the whole mapping.
    pub field_mapping: Option<Vec<MappingRuleInput>>,
    pub push_on_change: Option<bool>,
    /// Null switches polling off.
    pub poll_interval: MaybeUndefined<u32>,
    pub on_deletion: Option<CrmDeletion>,
}

#[derive(InputObject)]
pub struct SyncLeadsInput {
    pub connection_id: ID,
    /// At most 10,000 leads; or give `filter`.
    pub lead_ids: Option<Vec<ID>>,
    pub filter: Option<LeadFilter>,
}

#[derive(SimpleObject)]
pub struct CrmConnectionPayload {
    pub connection: Option<CrmConnection>,
    pub user_errors: Vec<UserError>,
}

#[derive(SimpleObject)]
pub struct PollCrmConnectionPayload {
    /// False when a poll of this connection was already queued or running.
    pub queued: bool,
}

#[derive(SimpleObject)]
pub struct DeleteCrmConnectionPayload {
    pub deleted_id: ID,
}

/// What the CRM said to the connection's credentials.
#[derive(SimpleObject)]
pub struct TestCrmConnectionPayload {
    pub ok: bool,
    /// What was reached, or what is wrong, in words.
    pub message: String,
}

#[derive(SimpleObject)]
pub struct SyncLeadsPayload {
    /// Leads marked for the push, which is queued now.
    pub marked: u64,
}

#[derive(Default)]
pub struct CrmMutation;

#[Object]
impl CrmMutation {
    /// Connects the workspace to a CRM account (admins only).
    async fn create_crm_connection(
        &self,
        ctx: &Context<'_>,
        input: CreateCrmConnectionInput,
    ) -> async_graphql::Result<CrmConnectionPayload> {
        let services = ctx.data::<Services>()?;
        let draft = ConnectionDraft {
            kind: Some(input.kind.into()),
            name: Some(input.name),
            api_base_url: input.api_base_url,
            token_url: input.token_url,
            credentials: Some(input.credentials.into()),
            field_mapping: input.field_mapping.map(mapping_of).transpose()?,
            push_on_change: Some(input.push_on_change),
            poll_interval_secs: Some(input.poll_interval),
            on_deletion: Some(input.on_deletion.into()),
        };
        let (connection, user_errors) = split(services.crm.create(actor(ctx)?, draft).await, &["input"])?;
        Ok(CrmConnectionPayload {
            connection: connection.map(CrmConnection::from),
            user_errors,
        })
    }

    /// Changes a connection (admins only).
    async fn update_crm_connection(
        &self,
        ctx: &Context<'_>,
        input: UpdateCrmConnectionInput,
    ) -> async_graphql::Result<CrmConnectionPayload> {
        let id = connection_id(&input.id)?;
        let services = ctx.data::<Services>()?;
        let draft = ConnectionDraft {
            kind: None,
            name: input.name,
            api_base_url: input.api_base_url,
            token_url: input.token_url,
            credentials: input.credentials.map(Into::into),
            field_mapping: input.field_mapping.map(mapping_of).transpose()?,
            push_on_change: input.push_on_change,
            poll_interval_secs: match input.poll_interval {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(v) => Some(Some(v)),
            },
            on_deletion: input.on_deletion.map(Into::into),
        };
        let (connection, user_errors) = split(services.crm.update(actor(ctx)?, id, draft).await, &["input"])?;
        Ok(CrmConnectionPayload {
            connection: connection.map(CrmConnection::from),
            user_errors,
        })
    }

    /// Removes a connection with its links, runs and receipts (admins only). Nothing is
    /// deleted in the CRM.
    async fn delete_crm_connection(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<DeleteCrmConnectionPayload> {
        let services = ctx.data::<Services>()?;
        services
            .crm
            .delete(actor(ctx)?, connection_id(&id)?)
            .await
            .map_err(to_gql)?;
        Ok(DeleteCrmConnectionPayload { deleted_id: id })
    }

    /// Queues a reconciliation poll of the connection now, whatever its `pollInterval` (admins
    /// only): every record changed since the stored cursor, and deletions. Its outcome is a
    /// `crmSyncRuns` entry with trigger `POLL`.
    async fn poll_crm_connection(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<PollCrmConnectionPayload> {
        let services = ctx.data::<Services>()?;
        let queued = services
            .crm
            .poll_now(actor(ctx)?, connection_id(&id)?)
            .await
            .map_err(to_gql)?;
        Ok(PollCrmConnectionPayload { queued })
    }

    /// Checks the connection's credentials against the CRM (admins only).
    async fn test_crm_connection(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<TestCrmConnectionPayload> {
        let services = ctx.data::<Services>()?;
        let answer = services
            .crm
            .test(actor(ctx)?, connection_id(&id)?)
            .await
            .map_err(to_gql)?;
        Ok(match answer {
            Ok(message) => TestCrmConnectionPayload { ok: true, message },
            Err(message) => TestCrmConnectionPayload { ok: false, message },
        })
    }

    /// Pushes leads to a CRM now, in the CRM's batch sizes (lead writers).
    async fn sync_leads(
        &self,
        ctx: &Context<'_>,
        input: SyncLeadsInput,
    ) -> async_graphql::Result<SyncLeadsPayload> {
        let services = ctx.data::<Services>()?;
        let id = connection_id(&input.connection_id)?;
        let selection = match (input.lead_ids, input.filter) {
            (Some(ids), None) => SyncSelection::Ids(
                ids.iter()
                    .map(|id| decode_lead_id(id))
                    .collect::<async_graphql::Result<_>>()?,
            ),
            (None, Some(filter)) => SyncSelection::Filter(filter.into_domain()?),
            _ => return Err(bad_input("give either `leadIds` or `filter`")),
        };
        let marked = services
            .crm
            .sync_leads(actor(ctx)?, id, selection)
            .await
            .map_err(to_gql)?;
        Ok(SyncLeadsPayload { marked })
    }
}
