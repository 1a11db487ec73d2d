//! API keys for admins: the `apiKeys` connection, and mutations to create, revoke and rotate a
//! key. The secret appears only in the payloads of `createApiKey` and `rotateApiKey`; no field
//! exposes it or its digest afterwards.

use super::connection::{PageInfo, PageSize, keyset_connection, keyset_page};
use super::errors::{UserError, split};
use super::ids::{NodeType, decode_typed_id, global_id};
use super::query::actor;
use super::types::Role;
use crate::domain;
use crate::service::api_keys::MAX_KEY_PAGE;
use crate::service::{ApiKeyDraft, ServiceError, Services};
use async_graphql::{ComplexObject, Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

/// One area an API key may act in; the key's role still decides what it may do there.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ApiKeyScope {
    /// Read leads.
    ReadLeads,
    /// Create, change, archive and enrich leads (roles that may write only).
    WriteLeads,
    /// Subscriptions and the event log's cursor.
    Subscribe,
    /// Imports and exports.
    ImportExport,
    /// Workspace settings (admin role only).
    Admin,
}

impl ApiKeyScope {
    pub(super) fn from_domain(s: domain::Scope) -> Self {
        match s {
            domain::Scope::ReadLeads => Self::ReadLeads,
            domain::Scope::WriteLeads => Self::WriteLeads,
            domain::Scope::Subscribe => Self::Subscribe,
            domain::Scope::ImportExport => Self::ImportExport,
            domain::Scope::Admin => Self::Admin,
        }
    }

    fn to_domain(self) -> domain::Scope {
        match self {
            Self::ReadLeads => domain::Scope::ReadLeads,
            Self::WriteLeads => domain::Scope::WriteLeads,
            Self::Subscribe => domain::Scope::Subscribe,
            Self::ImportExport => domain::Scope::ImportExport,
            Self::Admin => domain::Scope::Admin,
        }
    }
}

fn role_to_domain(r: Role) -> domain::Role {
    match r {
        Role::Admin => domain::Role::Admin,
        Role::Member => domain::Role::Member,
        Role::Viewer => domain::Role::Viewer,
        Role::Partner => domain::Role::Partner,
    }
}

/// A key partners and services send as `Authorization: Bearer lg_live_…`.
pub struct ApiKey(domain::ApiKey);

#[Object]
impl ApiKey {
    async fn id(&self) -> ID {
        global_id(NodeType::ApiKey, self.0.id.as_uuid())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The secret's first characters (`lg_live_AbCd`), to tell keys apart.
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }
    async fn role(&self) -> Role {
        self.0.role.into()
    }
    async fn scopes(&self) -> Vec<ApiKeyScope> {
        self.0.scopes.iter().map(ApiKeyScope::from_domain).collect()
    }
    /// The key's own request rate (e.g. `600/min`), instead of the workspace's.
    async fn rate_limit(&self) -> Option<String> {
        self.0.rate_limit.map(|r| r.to_string())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// The subject of whoever created the key.
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    /// When the key was last used, to within a few seconds.
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
}

const KEY_PAGE: PageSize = PageSize {
    default: 20,
    max: MAX_KEY_PAGE as usize,
};

#[derive(SimpleObject)]
pub struct ApiKeyEdge {
    pub cursor: String,
    pub node: ApiKey,
}

/// API keys, newest first.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ApiKeyConnection {
    pub edges: Vec<ApiKeyEdge>,
    pub page_info: PageInfo,
}

#[ComplexObject]
impl ApiKeyConnection {
    /// The keys of `edges`, without cursors.
    async fn nodes(&self) -> Vec<ApiKey> {
        self.edges.iter().map(|e| ApiKey(e.node.0.clone())).collect()
    }
}

#[derive(Default)]
pub struct ApiKeyQuery;

#[Object]
impl ApiKeyQuery {
    /// The workspace's API keys, newest first (admins only).
    async fn api_keys(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "At most 100; 20 when neither `first` nor `last` is given.")] first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "At most 100.")] last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<ApiKeyConnection> {
        let page = keyset_page(first, after, last, before, KEY_PAGE)?;
        let actor = actor(ctx)?.clone();
        let (edges, page_info) = keyset_connection(
            ctx,
            page,
            move |services, page| {
                let actor = actor.clone();
                async move { services.api_keys.list(&actor, page).await }
            },
            |k| k.id,
            |cursor, k| ApiKeyEdge {
                cursor,
                node: ApiKey(k),
            },
        )
        .await?;
        Ok(ApiKeyConnection { edges, page_info })
    }
}

#[derive(InputObject)]
pub struct CreateApiKeyInput {
    /// 1 to 100 characters.
    pub name: String,
    /// The role the key acts with.
    pub role: Role,
    /// At least one.
    pub scopes: Vec<ApiKeyScope>,
    /// When the key stops working; in the future. None: it does not expire.
    pub expires_at: Option<DateTime<Utc>>,
    /// The key's own request rate, such as `600/min`, `10/s` or `5000/hour`.
    pub rate_limit: Option<String>,
}

/// A key with its secret, which is shown only here.
#[derive(SimpleObject)]
pub struct ApiKeySecretPayload {
    pub api_key: Option<ApiKey>,
    /// Keep it: it cannot be read again. Send it as `Authorization: Bearer <secret>`.
    pub secret: Option<String>,
    pub user_errors: Vec<UserError>,
}

#[derive(SimpleObject)]
pub struct RevokeApiKeyPayload {
    pub api_key: Option<ApiKey>,
    pub user_errors: Vec<UserError>,
}

fn with_secret(
    result: Result<(domain::ApiKey, SecretString), ServiceError>,
    parent: &[&str],
) -> async_graphql::Result<ApiKeySecretPayload> {
    let (done, user_errors) = split(result, parent)?;
    let (api_key, secret) = done
        .map(|(k, s)| (ApiKey(k), s.expose_secret().to_owned()))
        .unzip();
    Ok(ApiKeySecretPayload {
        api_key,
        secret,
        user_errors,
    })
}

fn key_id(id: &ID) -> async_graphql::Result<domain::ApiKeyId> {
    decode_typed_id(id, NodeType::ApiKey).map(domain::ApiKeyId::from_uuid)
}

#[derive(Default)]
pub struct ApiKeyMutation;

#[Object]
impl ApiKeyMutation {
    /// Creates an API key (admins only). The payload holds the secret, which is not shown
    /// again.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> async_graphql::Result<ApiKeySecretPayload> {
        let services = ctx.data::<Services>()?;
        let draft = ApiKeyDraft {
            name: input.name,
            role: role_to_domain(input.role),
            scopes: input
                .scopes
                .into_iter()
                .map(|s| s.to_domain().as_str().to_owned())
                .collect(),
            expires_at: input.expires_at,
            rate_limit: input.rate_limit,
        };
        with_secret(services.api_keys.create(actor(ctx)?, draft).await, &["input"])
    }

    /// Revokes an API key at once (admins only); every instance refuses it within a second.
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<RevokeApiKeyPayload> {
        let id = key_id(&id)?;
        let services = ctx.data::<Services>()?;
        let (api_key, user_errors) = split(services.api_keys.revoke(actor(ctx)?, id).await, &[])?;
        Ok(RevokeApiKeyPayload {
            api_key: api_key.map(ApiKey),
            user_errors,
        })
    }

    /// Gives an API key a new secret (admins only), returned in the payload. The old secret
    /// keeps working for `gracePeriod` seconds (0: it stops at once).
    async fn rotate_api_key(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default = 86400, desc = "Seconds the old secret stays valid, 0 to 2592000.")]
        grace_period: i64,
    ) -> async_graphql::Result<ApiKeySecretPayload> {
        let id = key_id(&id)?;
        let services = ctx.data::<Services>()?;
        with_secret(services.api_keys.rotate(actor(ctx)?, id, grace_period).await, &[])
    }
}
