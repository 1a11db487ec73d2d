//! The query root: `viewer`, `lead`, `leads`, `node` and `nodes`.

use super::connection::{LeadConnection, page_query};
use super::enrichment::prefetch;
use super::errors::{UNAUTHENTICATED, bad_input, coded, to_gql};
use super::ids::{NodeType, decode_global_id, decode_lead_id};
use super::inputs::{LeadFilter, LeadOrderInput};
use super::types::{Lead, Node, Viewer, Workspace};
use crate::domain::{LeadId, WorkspaceId};
use crate::service::{Actor, Services};
use async_graphql::{Context, ID, Object};
use std::collections::HashMap;

/// The verified caller of a request, or `None` when it sent no token.
#[derive(Clone, Debug)]
pub struct Caller(pub Option<Actor>);

/// The actor of the request, or `UNAUTHENTICATED`.
pub fn actor<'c>(ctx: &Context<'c>) -> async_graphql::Result<&'c Actor> {
    ctx.data::<Caller>()?.0.as_ref().ok_or_else(|| {
        coded(
            UNAUTHENTICATED,
            "authentication required: send `Authorization: Bearer <token>`",
        )
    })
}

pub const MAX_NODES: usize = 500;

#[derive(Default)]
pub struct Query;

#[Object(name = "LeadQueries")]
impl Query {
    /// The authenticated caller.
    async fn viewer(&self, ctx: &Context<'_>) -> async_graphql::Result<Viewer> {
        let actor = actor(ctx)?.clone();
        let services = ctx.data::<Services>()?;
        let workspace = services
            .workspaces
            .by_id(actor.workspace_id)
            .await
            .map_err(to_gql)?;
        Ok(Viewer { actor, workspace })
    }

    /// A lead by id; null when it does not exist in the caller's workspace.
    async fn lead(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Lead>> {
        let actor = actor(ctx)?;
        let id = decode_lead_id(&id)?;
        let services = ctx.data::<Services>()?;
        let lead = services.leads.get(actor, id).await.map_err(to_gql)?;
        Ok(lead.map(Lead::new))
    }

    /// Leads of the caller's workspace, a keyset-paged Relay connection. Pass `first` (with
    /// `after`) to page forward or `last` (with `before`) to page backward; 50 by default,
    /// at most 500. Archived leads are excluded unless `filter.archived` is true.
    #[graphql(complexity = "(first.or(last).unwrap_or(50).clamp(1, 500) as usize) * child_complexity")]
    #[allow(clippy::too_many_arguments)]
    async fn leads(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<LeadFilter>,
        #[graphql(desc = "Defaults to `{field: CREATED_AT, direction: ASC}`.")] order_by: Option<
            LeadOrderInput,
        >,
    ) -> async_graphql::Result<LeadConnection> {
        let actor = actor(ctx)?;
        let order = order_by.map(LeadOrderInput::into_domain).unwrap_or_default();
        let filter = filter.unwrap_or_default().into_domain()?;
        let query = page_query(first, after, last, before, filter, order)?;
        let services = ctx.data::<Services>()?;
        // Unfiltered counts come from a maintained counter: read it with the page.
        let look_ahead = ctx.look_ahead();
        let wants_count =
            look_ahead.field("totalCount").exists() || look_ahead.field("totalCountIsExact").exists();
        let with_counts = wants_count && query.filter.is_unrestricted();
        let page = services
            .leads
            .page(actor, &query, with_counts)
            .await
            .map_err(to_gql)?;
        let connection = LeadConnection::new(actor.clone(), query, page);
        let prefetched = prefetch(ctx, &look_ahead, connection.leads()).await?;
        Ok(connection.with_prefetched(prefetched))
    }

    /// Any object by global id; null when it does not exist or is not visible to the caller.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Node>> {
        let mut found = resolve_nodes(ctx, &[id]).await?;
        Ok(found.pop().flatten())
    }

    /// Objects by global ids, in the order asked; null for each one not found. At most 500.
    async fn nodes(&self, ctx: &Context<'_>, ids: Vec<ID>) -> async_graphql::Result<Vec<Option<Node>>> {
        if ids.len() > MAX_NODES {
            return Err(bad_input(format!("`ids` takes at most {MAX_NODES} ids")));
        }
        resolve_nodes(ctx, &ids).await
    }
}

/// Loads nodes with one query per type, keeping the requested order.
async fn resolve_nodes(ctx: &Context<'_>, ids: &[ID]) -> async_graphql::Result<Vec<Option<Node>>> {
    let actor = actor(ctx)?;
    let services = ctx.data::<Services>()?;
    let decoded = ids
        .iter()
        .map(|id| decode_global_id(id))
        .collect::<async_graphql::Result<Vec<_>>>()?;
    let lead_ids: Vec<LeadId> = decoded
        .iter()
        .filter(|(kind, _)| *kind == NodeType::Lead)
        .map(|(_, uuid)| LeadId::from_uuid(*uuid))
        .collect();
    let leads: HashMap<LeadId, crate::domain::Lead> = services
        .leads
        .get_many(actor, &lead_ids)
        .await
        .map_err(to_gql)?
        .into_iter()
        .map(|l| (l.id, l))
        .collect();
    let wants_workspace = decoded.iter().any(|(kind, uuid)| {
        *kind == NodeType::Workspace && WorkspaceId::from_uuid(*uuid) == actor.workspace_id
    });
    let workspace = if wants_workspace {
        services
            .workspaces
            .by_id(actor.workspace_id)
            .await
            .map_err(to_gql)?
    } else {
        None
    };
    // imports are looked up one by one: a `nodes` call rarely names more than a few
    let mut imports = HashMap::new();
    for (kind, uuid) in &decoded {
        if *kind == NodeType::Import && !imports.contains_key(uuid) {
            let found = super::imports::import_node(ctx, crate::domain::ImportId::from_uuid(*uuid)).await?;
            imports.insert(*uuid, found);
        }
    }
    let mut crm = HashMap::new();
    for (kind, uuid) in &decoded {
        if *kind == NodeType::CrmConnection && !crm.contains_key(uuid) {
            let found =
                super::crm::connection_node(ctx, crate::domain::CrmConnectionId::from_uuid(*uuid)).await?;
            crm.insert(*uuid, found.map(|c| c.0));
        }
    }
    let mut campaigns = HashMap::new();
    for (kind, uuid) in &decoded {
        if *kind == NodeType::Campaign && !campaigns.contains_key(uuid) {
            let found =
                super::campaigns::campaign_node(ctx, crate::domain::CampaignId::from_uuid(*uuid)).await?;
            campaigns.insert(*uuid, found.map(|c| c.0));
        }
    }
    Ok(decoded
        .into_iter()
        .map(|(kind, uuid)| match kind {
            NodeType::Campaign => campaigns
                .get(&uuid)
                .cloned()
                .flatten()
                .map(|c| Node::Campaign(super::campaigns::Campaign(c))),
            NodeType::CrmConnection => crm
                .get(&uuid)
                .cloned()
                .flatten()
                .map(|c| Node::CrmConnection(super::crm::CrmConnection(c))),
            NodeType::Import => imports.get(&uuid).cloned().flatten().map(Node::Import),
            NodeType::Lead => leads
                .get(&LeadId::from_uuid(uuid))
                .cloned()
                .map(|l| Node::Lead(Lead::new(l))),
            NodeType::Workspace => workspace
                .as_ref()
                .filter(|w| w.id.as_uuid() == uuid)
                .cloned()
                .map(|w| Node::Workspace(Workspace(w))),
            // admin settings, not nodes: fetched through `webhookEndpoints` and `apiKeys`
            NodeType::WebhookEndpoint | NodeType::ApiKey => None,
        })
        .collect())
}
