//! Outbound webhooks for admins: `webhookEndpoints`, and mutations to register, change,
//! rotate the secret of and delete an endpoint. The signing secret appears only in the
//! payload of `createWebhookEndpoint` and `rotateWebhookSecret`.

use super::connection::{PageInfo, PageSize, keyset_connection, keyset_page};
use super::errors::{UserError, split, to_gql};
use super::ids::{NodeType, decode_typed_id, global_id};
use super::query::actor;
use super::subscription::{EventCursor, EventType};
use crate::domain;
use crate::service::{MAX_DELIVERY_PAGE, Services, WebhookUpdate};
use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

/// A receiver of events, registered by an admin.
pub struct WebhookEndpoint(domain::WebhookEndpoint);

#[Object]
impl WebhookEndpoint {
    async fn id(&self) -> ID {
        global_id(NodeType::WebhookEndpoint, self.0.id.as_uuid())
    }
    async fn url(&self) -> &str {
        &self.0.url
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// The event types delivered.
    async fn event_types(&self) -> Vec<EventType> {
        self.0
            .event_types
            .iter()
            .filter_map(|t| EventType::parse(t))
            .collect()
    }
    /// The last four characters of the signing secret, to tell secrets apart.
    async fn secret_last4(&self) -> &str {
        &self.0.secret.last4
    }
    async fn enabled(&self) -> bool {
        self.0.enabled
    }
    /// Why the endpoint was switched off (by an admin, or after repeated failures).
    async fn disabled_reason(&self) -> Option<&str> {
        self.0.disabled_reason.as_deref()
    }
    async fn disabled_at(&self) -> Option<DateTime<Utc>> {
        self.0.disabled_at
    }
    /// Deliveries in a row that failed every attempt; reset by a success.
    async fn consecutive_failures(&self) -> u32 {
        self.0.consecutive_failures
    }
    /// The newest event already queued for this endpoint.
    async fn cursor(&self) -> EventCursor {
        EventCursor(self.0.cursor)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// Every delivery attempt, newest first.
    async fn deliveries(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "At most 100; 20 when neither `first` nor `last` is given.")] first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "At most 100.")] last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<WebhookDeliveryConnection> {
        let page = keyset_page(first, after, last, before, DELIVERY_PAGE)?;
        let actor = actor(ctx)?.clone();
        let endpoint = self.0.id;
        let (edges, page_info) = keyset_connection(
            ctx,
            page,
            move |services, page| {
                let actor = actor.clone();
                async move { services.webhooks.deliveries(&actor, endpoint, page).await }
            },
            |d| d.id,
            |cursor, d| WebhookDeliveryEdge {
                cursor,
                node: WebhookDelivery(d),
            },
        )
        .await?;
        Ok(WebhookDeliveryConnection { edges, page_info })
    }
}

const DELIVERY_PAGE: PageSize = PageSize {
    default: 20,
    max: MAX_DELIVERY_PAGE as usize,
};

#[derive(SimpleObject)]
pub struct WebhookDeliveryEdge {
    pub cursor: String,
    pub node: WebhookDelivery,
}

/// Delivery attempts, newest first.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct WebhookDeliveryConnection {
    pub edges: Vec<WebhookDeliveryEdge>,
    pub page_info: PageInfo,
}

#[async_graphql::ComplexObject]
impl WebhookDeliveryConnection {
    /// The attempts of `edges`, without cursors.
    async fn nodes(&self) -> Vec<WebhookDelivery> {
        self.edges.iter().map(|e| e.node.clone()).collect()
    }
}

/// One attempt to deliver one event.
#[derive(Clone)]
pub struct WebhookDelivery(domain::WebhookDelivery);

#[Object]
impl WebhookDelivery {
    /// The event delivered.
    async fn event_cursor(&self) -> EventCursor {
        EventCursor(self.0.event_seq)
    }
    /// `None` only for a type this version does not know.
    async fn event_type(&self) -> Option<EventType> {
        EventType::parse(&self.0.event_type)
    }
    /// 1 for the first attempt.
    async fn attempt(&self) -> u32 {
        self.0.attempt
    }
    async fn succeeded(&self) -> bool {
        self.0.succeeded
    }
    /// The receiver's HTTP status, when it answered.
    async fn status_code(&self) -> Option<u16> {
        self.0.status
    }
    /// The first kilobyte of the receiver's answer.
    async fn response_body(&self) -> Option<&str> {
        self.0.response_body.as_deref()
    }
    /// Why the attempt failed.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    async fn duration_ms(&self) -> u32 {
        self.0.duration_ms
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
}

#[derive(Default)]
pub struct WebhookQuery;

#[Object]
impl WebhookQuery {
    /// The workspace's webhook endpoints (admins only).
    async fn webhook_endpoints(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<WebhookEndpoint>> {
        let services = ctx.data::<Services>()?;
        let list = services.webhooks.list(actor(ctx)?).await.map_err(to_gql)?;
        Ok(list.into_iter().map(WebhookEndpoint).collect())
    }
}

#[derive(InputObject)]
pub struct CreateWebhookEndpointInput {
    /// Where events are POSTed: an absolute http(s) URL.
    pub url: String,
    pub event_types: Vec<EventType>,
    pub description: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateWebhookEndpointInput {
    pub id: ID,
    pub url: Option<String>,
    pub event_types: Option<Vec<EventType>>,
    pub description: Option<String>,
    /// Switching an endpoint back on clears its failures; it receives events from then on.
    pub enabled: Option<bool>,
}

/// An endpoint with its signing secret, which is shown only here.
#[derive(SimpleObject)]
pub struct WebhookSecretPayload {
    pub endpoint: Option<WebhookEndpoint>,
    /// Keep it: it signs every delivery (`Leadgate-Signature`) and cannot be read again.
    pub secret: Option<String>,
    pub user_errors: Vec<UserError>,
}

#[derive(SimpleObject)]
pub struct WebhookEndpointPayload {
    pub endpoint: Option<WebhookEndpoint>,
    pub user_errors: Vec<UserError>,
}

#[derive(SimpleObject)]
pub struct DeleteWebhookEndpointPayload {
    pub deleted_id: ID,
}

#[derive(Default)]
pub struct WebhookMutation;

fn types_of(types: Vec<EventType>) -> Vec<String> {
    types.into_iter().map(|t| t.as_str().to_owned()).collect()
}

fn with_secret(
    result: Result<(domain::WebhookEndpoint, SecretString), crate::service::ServiceError>,
) -> async_graphql::Result<WebhookSecretPayload> {
    let (done, user_errors) = split(result, &["input"])?;
    let (endpoint, secret) = done
        .map(|(e, s)| (WebhookEndpoint(e), s.expose_secret().to_owned()))
        .unzip();
    Ok(WebhookSecretPayload {
        endpoint,
        secret,
        user_errors,
    })
}

#[Object]
impl WebhookMutation {
    /// Registers an endpoint for events from now on (admins only). The payload holds the
    /// signing secret, which is not shown again.
    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: CreateWebhookEndpointInput,
    ) -> async_graphql::Result<WebhookSecretPayload> {
        let services = ctx.data::<Services>()?;
        with_secret(
            services
                .webhooks
                .create(
                    actor(ctx)?,
                    &input.url,
                    &types_of(input.event_types),
                    input.description,
                )
                .await,
        )
    }

    /// Changes an endpoint, or switches it off and on (admins only).
    async fn update_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: UpdateWebhookEndpointInput,
    ) -> async_graphql::Result<WebhookEndpointPayload> {
        let id = domain::WebhookId::from_uuid(decode_typed_id(&input.id, NodeType::WebhookEndpoint)?);
        let services = ctx.data::<Services>()?;
        let update = WebhookUpdate {
            url: input.url,
            event_types: input.event_types.map(types_of),
            description: input.description,
            enabled: input.enabled,
        };
        let (endpoint, user_errors) = split(
            services.webhooks.update(actor(ctx)?, id, update).await,
            &["input"],
        )?;
        Ok(WebhookEndpointPayload {
            endpoint: endpoint.map(WebhookEndpoint),
            user_errors,
        })
    }

    /// Replaces an endpoint's signing secret (admins only); the new one is in the payload.
    async fn rotate_webhook_secret(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<WebhookSecretPayload> {
        let uuid = domain::WebhookId::from_uuid(decode_typed_id(&id, NodeType::WebhookEndpoint)?);
        let services = ctx.data::<Services>()?;
        with_secret(services.webhooks.rotate_secret(actor(ctx)?, uuid).await)
    }

    /// Removes an endpoint and its delivery log (admins only).
    async fn delete_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<DeleteWebhookEndpointPayload> {
        let uuid = domain::WebhookId::from_uuid(decode_typed_id(&id, NodeType::WebhookEndpoint)?);
        let services = ctx.data::<Services>()?;
        services
            .webhooks
            .delete(actor(ctx)?, uuid)
            .await
            .map_err(to_gql)?;
        Ok(DeleteWebhookEndpointPayload { deleted_id: id })
    }
}
