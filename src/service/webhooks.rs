//! Outbound webhook endpoints, for admins: register (the signing secret is shown once),
//! change, switch on and off, rotate the secret, remove, and read the delivery log. A URL
//! whose host is, or resolves only to, an address the outbound guard refuses is refused at
//! registration with the reason; delivery checks again when it connects.

use super::{Actor, ServiceError};
use crate::crypto::KeySealer;
use crate::domain::{
    DeliveryId, FieldError, FieldErrorCode, KeysetPage, Paged, ValidationErrors, WebhookDelivery,
    WebhookEndpoint, WebhookId, now, parse_event_types, parse_webhook_url,
};
use crate::events::Bus;
use crate::events::webhooks::{new_secret, secret_purpose};
use crate::net::OutboundPolicy;
use crate::store::Store;
use secrecy::SecretString;

/// Endpoints per workspace.
pub const MAX_WEBHOOKS: usize = 20;
/// Most delivery attempts one page returns.
pub const MAX_DELIVERY_PAGE: u32 = 100;
/// Longest description.
const MAX_DESCRIPTION: usize = 500;

/// What an admin may change on an endpoint; `None` keeps the current value.
#[derive(Clone, Debug, Default)]
pub struct WebhookUpdate {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    /// Switching an endpoint back on resets its failures; it receives events from then on.
    pub enabled: Option<bool>,
}

#[derive(Clone, Debug)]
pub struct WebhookService {
    store: Store,
    sealer: Option<KeySealer>,
    bus: Bus,
    outbound: OutboundPolicy,
}

impl WebhookService {
    /// Refuses every internal receiver address until `set_outbound` says otherwise.
    pub fn new(store: Store, sealer: Option<KeySealer>, bus: Bus) -> Self {
        Self {
            store,
            sealer,
            bus,
            outbound: OutboundPolicy::default(),
        }
    }

    /// Which receiver addresses endpoints may point at.
    pub fn set_outbound(&mut self, policy: OutboundPolicy) {
        self.outbound = policy;
    }

    /// `parse_webhook_url`, then the outbound guard (resolving a name).
    async fn check_url(&self, raw: &str) -> Result<String, FieldError> {
        let url = parse_webhook_url("url", raw)?;
        let parsed =
            url::Url::parse(&url).map_err(|_| FieldError::invalid("url", "must be a valid http(s) URL"))?;
        self.outbound
            .check_url_resolving(&parsed)
            .await
            .map_err(|refused| FieldError::invalid("url", refused.to_string()))?;
        Ok(url)
    }

    pub async fn list(&self, actor: &Actor) -> Result<Vec<WebhookEndpoint>, ServiceError> {
        actor.require_admin()?;
        Ok(self.store.webhooks(actor.workspace_id).await?)
    }

    pub async fn get(&self, actor: &Actor, id: WebhookId) -> Result<WebhookEndpoint, ServiceError> {
        actor.require_admin()?;
        self.store
            .webhook(actor.workspace_id, id)
            .await?
            .ok_or(ServiceError::NotFound("webhook endpoint"))
    }

    /// Registers an endpoint for events from now on; returns it with its signing secret, which
    /// is not shown again.
    pub async fn create(
        &self,
        actor: &Actor,
        url: &str,
        event_types: &[String],
        description: Option<String>,
    ) -> Result<(WebhookEndpoint, SecretString), ServiceError> {
        actor.require_admin()?;
        let sealer = self.sealer()?;
        let mut errors = Vec::new();
        let url = self.check_url(url).await.map_err(|e| errors.push(e)).ok();
        let types = parse_event_types("eventTypes", event_types)
            .map_err(|e| errors.push(e))
            .ok();
        let description = check_description(description).map_err(|e| errors.push(e)).ok();
        let (Some(url), Some(event_types), Some(description)) = (url, types, description) else {
            return Err(ServiceError::Invalid(ValidationErrors(errors)));
        };
        if self.store.webhooks(actor.workspace_id).await?.len() >= MAX_WEBHOOKS {
            return Err(ServiceError::invalid(
                "url",
                FieldErrorCode::TooLong,
                format!("a workspace may register at most {MAX_WEBHOOKS} endpoints"),
            ));
        }
        let id = WebhookId::new();
        let secret = new_secret();
        let at = now();
        let endpoint = WebhookEndpoint {
            id,
            workspace_id: actor.workspace_id,
            url,
            description,
            event_types,
            secret: sealer.seal_for(actor.workspace_id, &secret_purpose(id), &secret),
            enabled: true,
            disabled_reason: None,
            disabled_at: None,
            consecutive_failures: 0,
            cursor: self.bus.head(actor.workspace_id).await?,
            created_at: at,
            updated_at: at,
        };
        self.store.save_webhook(&endpoint).await?;
        Ok((endpoint, secret))
    }

    pub async fn update(
        &self,
        actor: &Actor,
        id: WebhookId,
        update: WebhookUpdate,
    ) -> Result<WebhookEndpoint, ServiceError> {
        let mut endpoint = self.get(actor, id).await?;
        let mut errors = Vec::new();
        if let Some(url) = &update.url {
            match self.check_url(url).await {
                Ok(url) => endpoint.url = url,
                Err(e) => errors.push(e),
            }
        }
        if let Some(types) = &update.event_types {
            match parse_event_types("eventTypes", types) {
                Ok(types) => endpoint.event_types = types,
                Err(e) => errors.push(e),
            }
        }
        if let Some(description) = update.description {
            match check_description(Some(description)) {
                Ok(d) => endpoint.description = d,
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(ServiceError::Invalid(ValidationErrors(errors)));
        }
        let at = now();
        match update.enabled {
            Some(true) if !endpoint.enabled => {
                endpoint.enabled = true;
                endpoint.disabled_reason = None;
                endpoint.disabled_at = None;
                endpoint.consecutive_failures = 0;
                endpoint.cursor = self.bus.head(actor.workspace_id).await?;
            }
            Some(false) if endpoint.enabled => {
                endpoint.enabled = false;
                endpoint.disabled_reason = Some("switched off by an admin".into());
                endpoint.disabled_at = Some(at);
            }
            _ => {}
        }
        endpoint.updated_at = at;
        self.store.save_webhook(&endpoint).await?;
        Ok(endpoint)
    }

    /// Replaces the signing secret; deliveries from now on are signed with the new one.
    pub async fn rotate_secret(
        &self,
        actor: &Actor,
        id: WebhookId,
    ) -> Result<(WebhookEndpoint, SecretString), ServiceError> {
        let sealer = self.sealer()?;
        let mut endpoint = self.get(actor, id).await?;
        let secret = new_secret();
        endpoint.secret = sealer.seal_for(actor.workspace_id, &secret_purpose(id), &secret);
        endpoint.updated_at = now();
        self.store.save_webhook(&endpoint).await?;
        Ok((endpoint, secret))
    }

    pub async fn delete(&self, actor: &Actor, id: WebhookId) -> Result<(), ServiceError> {
        actor.require_admin()?;
        if self.store.delete_webhook(actor.workspace_id, id).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound("webhook endpoint"))
        }
    }

    /// A page of an endpoint's delivery attempts, newest first (at most
    /// `MAX_DELIVERY_PAGE`).
    pub async fn deliveries(
        &self,
        actor: &Actor,
        id: WebhookId,
        page: KeysetPage<DeliveryId>,
    ) -> Result<Paged<WebhookDelivery>, ServiceError> {
        actor.require_admin()?;
        let page = page.capped(MAX_DELIVERY_PAGE as usize);
        Ok(self.store.deliveries(actor.workspace_id, id, &page).await?)
    }

    fn sealer(&self) -> Result<&KeySealer, ServiceError> {
        self.sealer.as_ref().ok_or_else(|| {
            ServiceError::invalid(
                "url",
                FieldErrorCode::Invalid,
                "webhook secrets are sealed under the master key: the server needs LEADGATE_MASTER_KEY",
            )
        })
    }
}

fn check_description(description: Option<String>) -> Result<Option<String>, FieldError> {
    let description = description.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty());
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
    {
        return Err(FieldError::new(
            "description",
            FieldErrorCode::TooLong,
            format!("at most {MAX_DESCRIPTION} characters"),
        ));
    }
    Ok(description)
}
