//! CRM sync per workspace: connections for admins (credentials sealed, never returned), field
//! mappings, pushes through the job queue, inbound webhooks, polling, and the record of each
//! run. The connectors (`crate::crm`) speak the CRMs' APIs; this module decides what to send
//! and what to apply.
//!
//! **Push.** `CrmDispatcher` follows the event log per connection with `pushOnChange` (a
//! stored cursor, like webhook endpoints): every lead change marks the lead's link `pending`
//! and enqueues one `crm.push` job per connection, due `COALESCE` later and kept unique, so ten
//! edits in a second are one send. `syncLeads` marks on demand. The job reads pending links in
//! lead-id order, skips a lead whose mapped values have the digest its link already holds
//! (nothing changed for the CRM, and how a pulled change is kept from coming back), sends the
//! rest in the CRM's batch sizes — paced under the CRM's published rate and `IN_FLIGHT`
//! batches at a time — and records each record's outcome for the generation it sent. A record
//! the CRM refused is `failed` with the reason and not retried until the lead changes; one not
//! written because of another record goes again in the same job. A 429 stores
//! `blocked_until` on the connection (every worker honours it) and retries the job after
//! `Retry-After`; 5xx and lost connections retry with the queue's backoff; the error history of
//! a job that ran out of attempts (in the dead-letter queue, replayable) holds the request and
//! the answer. A 401 renews an OAuth token once (Salesforce) and stores it sealed.
//!
//! **Pull.** `receive` verifies an inbound webhook (HubSpot v3, Pipedrive Basic; 401 and
//! recorded otherwise), parses it (400 and recorded when malformed; nothing applied from
//! either), drops events already received, and applies the rest in `occurredAt` order per
//! record: per property, a change older than the newest applied (`remote_clock`) is ignored,
//! and the mapping rule's conflict policy decides against the lead's own newer edits. A record
//! leadgate does not know is fetched and linked by email, or created; a deletion archives or
//! unlinks per connection. `crm.poll` reconciles from the CRM's change listing (its cursor
//! stored after every page, so a poll resumes after a crash) and detects deletions.

use super::leads::LeadService;
use super::{Actor, ServiceError};
use crate::crm::metrics::CrmMetrics;
use crate::crm::{
    CallContext, Change, CrmConnector, CrmError, InboundEvent, InboundRequest, OutgoingRecord, RemoteRecord,
    Written, connector, excerpt,
};
use crate::crypto::KeySealer;
use crate::domain::{
    CRM_SYNC_FINISHED, ConflictPolicy, CrmConnection, CrmConnectionId, CrmCredentials, CrmKind, CrmLink,
    CrmRunId, CrmSyncRun, Duplicate, EmailAddress, FieldError, FieldErrorCode, FieldMapping, Job, JobKind,
    KeysetPage, LEAD_CREATED, LEAD_ENRICHED, LEAD_RESTORED, LEAD_UPDATED, Lead, LeadFilter, LeadId,
    LeadPatch, LeadQuery, LinkStatus, MAX_CONNECTION_NAME, NewEvent, NewJob, OnDeletion, Paged, Role,
    SyncCounts, SyncTrigger, Timestamp, ValidationErrors, WorkspaceId, now, parse_webhook_url, values_digest,
};
use crate::events::Bus;
use crate::jobs::{Handler, JobContext, JobError, Queue};
use crate::net::{OutboundClient, OutboundPolicy};
use crate::store::{CrmOutcome, PendingLink, Store, StoreError, WebhookReceipt};
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

pub const CRM_PUSH: JobKind = JobKind::new("crm.push");
pub const CRM_POLL: JobKind = JobKind::new("crm.poll");
pub const CRM_POLL_DUE: JobKind = JobKind::new("crm.poll_due");

/// Connections per workspace.
pub const MAX_CONNECTIONS: u64 = 10;
/// Leads one `syncLeads` may name.
pub const MAX_SYNC_IDS: usize = 10_000;
/// Leads a filtered `syncLeads` marks at most.
pub const MAX_SYNC_FILTERED: usize = 1_000_000;
/// Runs per page.
pub const MAX_RUN_PAGE: u32 = 100;
/// How long a push waits for more edits before it sends.
pub const COALESCE: Duration = Duration::from_secs(1);
/// Batches of one connection in flight at once: with a CRM answering in 100 ms and a pace
/// of 10 requests a second, two keep the pace without waiting on answers.
pub const IN_FLIGHT: usize = 2;
/// The share of a CRM's published rate the client sends at, so that the CRM's own window
/// never sees one request too many.
pub const PACE_MARGIN: f64 = 0.97;
/// Polls allowed, in seconds between them.
const POLL_INTERVAL: std::ops::RangeInclusive<u32> = 60..=86_400;
/// Passes a push makes over records that were not written because of another record.
const PASSES: usize = 3;
/// Webhook body accepted (HubSpot sends at most 100 events per request).
pub const MAX_WEBHOOK_BODY: usize = 1 << 20;

/// What an admin gives when creating or changing a connection; `None` keeps the current value.
#[derive(Clone, Debug, Default)]
pub struct ConnectionDraft {
    pub kind: Option<CrmKind>,
    pub name: Option<String>,
    pub api_base_url: Option<String>,
    pub token_url: Option<String>,
    pub credentials: Option<CrmCredentials>,
    pub field_mapping: Option<FieldMapping>,
    pub push_on_change: Option<bool>,
    /// `Some(None)` switches polling off.
    pub poll_interval_secs: Option<Option<u32>>,
    pub on_deletion: Option<OnDeletion>,
}

/// What `syncLeads` covers: named leads, or every lead a filter matches.
#[derive(Clone, Debug)]
pub enum SyncSelection {
    Ids(Vec<LeadId>),
    Filter(LeadFilter),
}

/// The outgoing request a lead becomes.
#[derive(Clone, Debug, PartialEq)]
pub struct PushPreview {
    pub method: &'static str,
    pub url: String,
    pub body: serde_json::Value,
}

/// How the sync engine paces and batches (tests and benchmarks change them).
#[derive(Clone, Copy, Debug)]
pub struct CrmOptions {
    pub coalesce: Duration,
    pub in_flight: usize,
    pub pace_margin: f64,
}

impl Default for CrmOptions {
    fn default() -> Self {
        Self {
            coalesce: COALESCE,
            in_flight: IN_FLIGHT,
            pace_margin: PACE_MARGIN,
        }
    }
}

#[derive(Clone, Debug)]
pub struct CrmService {
    store: Store,
    sealer: Option<KeySealer>,
    outbound: OutboundPolicy,
    client: OutboundClient,
    queue: Queue,
    leads: LeadService,
    bus: Bus,
    metrics: CrmMetrics,
    options: CrmOptions,
    /// The minute of each connection's webhook run this process last announced.
    announced: Arc<std::sync::Mutex<HashMap<CrmConnectionId, i64>>>,
}

/// Spaces requests `interval` apart (Tokio's clock, so paused-clock tests see it).
struct Pacer {
    interval: Duration,
    next: Mutex<tokio::time::Instant>,
}

impl Pacer {
    fn new(per_second: f64) -> Self {
        Self {
            interval: Duration::from_secs_f64(1.0 / per_second.max(0.001)),
            next: Mutex::new(tokio::time::Instant::now()),
        }
    }

    async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let at = (*next).max(tokio::time::Instant::now());
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

fn system_actor(conn: &CrmConnection) -> Actor {
    Actor {
        subject: format!("crm:{}", conn.id),
        workspace_id: conn.workspace_id,
        role: Role::Admin,
        key: None,
    }
}

fn invalid(errors: Vec<FieldError>) -> ServiceError {
    ServiceError::Invalid(ValidationErrors(errors))
}

fn ms(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

impl CrmService {
    pub fn new(store: Store, sealer: Option<KeySealer>, queue: Queue, leads: LeadService, bus: Bus) -> Self {
        let outbound = OutboundPolicy::default();
        Self {
            client: crate::crm::client(&outbound),
            outbound,
            store,
            sealer,
            queue,
            leads,
            bus,
            metrics: CrmMetrics::new(),
            options: CrmOptions::default(),
            announced: Arc::default(),
        }
    }

    /// Which addresses `apiBaseUrl` and token URLs may point at.
    pub fn set_outbound(&mut self, policy: OutboundPolicy) {
        self.client = crate::crm::client(&policy);
        self.outbound = policy;
    }

    pub fn set_options(&mut self, options: CrmOptions) {
        self.options = options;
    }

    pub fn metrics(&self) -> &CrmMetrics {
        &self.metrics
    }

    fn sealer(&self) -> Result<&KeySealer, ServiceError> {
        self.sealer.as_ref().ok_or_else(|| {
            ServiceError::invalid(
                "credentials",
                FieldErrorCode::Invalid,
                "CRM credentials are sealed under the master key: the server needs LEADGATE_MASTER_KEY",
            )
        })
    }

    // ---- connections, for admins ----

    pub async fn list(
        &self,
        actor: &Actor,
        page: KeysetPage<CrmConnectionId>,
    ) -> Result<Paged<CrmConnection>, ServiceError> {
        actor.require_admin()?;
        Ok(self
            .store
            .crm_connections(actor.workspace_id, &page.capped(100))
            .await?)
    }

    pub async fn get(&self, actor: &Actor, id: CrmConnectionId) -> Result<CrmConnection, ServiceError> {
        actor.require_admin()?;
        self.store
            .crm_connection(actor.workspace_id, id)
            .await?
            .ok_or(ServiceError::NotFound("CRM connection"))
    }

    /// `parse_webhook_url`, then the outbound guard (resolving a name).
    async fn check_url(&self, field: &str, raw: &str) -> Result<String, FieldError> {
        let url = parse_webhook_url(field, raw)?;
        let parsed =
            url::Url::parse(&url).map_err(|_| FieldError::invalid(field, "must be a valid http(s) URL"))?;
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(FieldError::invalid(field, "must not carry a query or a fragment"));
        }
        self.outbound
            .check_url_resolving(&parsed)
            .await
            .map_err(|refused| FieldError::invalid(field, refused.to_string()))?;
        Ok(url.trim_end_matches('/').to_owned())
    }

    pub async fn create(&self, actor: &Actor, draft: ConnectionDraft) -> Result<CrmConnection, ServiceError> {
        actor.require_admin()?;
        let sealer = self.sealer()?.clone();
        let kind = draft.kind.ok_or_else(|| {
            ServiceError::invalid(
                "kind",
                FieldErrorCode::Required,
                "name the CRM: HUBSPOT, SALESFORCE or PIPEDRIVE",
            )
        })?;
        if self.store.count_crm_connections(actor.workspace_id).await? >= MAX_CONNECTIONS {
            return Err(ServiceError::invalid(
                "kind",
                FieldErrorCode::TooLong,
                format!("a workspace may have at most {MAX_CONNECTIONS} CRM connections"),
            ));
        }
        let at = now();
        let id = CrmConnectionId::new();
        let mut conn = CrmConnection {
            id,
            workspace_id: actor.workspace_id,
            kind,
            name: String::new(),
            api_base_url: kind.default_api_base_url().to_owned(),
            token_url: kind.default_token_url().map(str::to_owned),
            credentials: crate::domain::SealedKey {
                sealed: String::new(),
                last4: String::new(),
            },
            credentials_hint: String::new(),
            field_mapping: FieldMapping::default_for(kind),
            push_on_change: true,
            poll_interval_secs: None,
            on_deletion: OnDeletion::Archive,
            event_cursor: self.bus.head(actor.workspace_id).await?,
            poll_cursor: None,
            polled_at: None,
            blocked_until: None,
            created_at: at,
            updated_at: at,
        };
        if draft.name.is_none() {
            return Err(ServiceError::invalid(
                "name",
                FieldErrorCode::Required,
                "give the connection a name",
            ));
        }
        if draft.credentials.is_none() {
            return Err(ServiceError::invalid(
                "credentials",
                FieldErrorCode::Required,
                format!("{} connections need credentials", kind.label()),
            ));
        }
        self.apply_draft(&mut conn, draft, CrmCredentials::default(), &sealer)
            .await?;
        self.store.save_crm_connection(&conn).await?;
        Ok(conn)
    }

    pub async fn update(
        &self,
        actor: &Actor,
        id: CrmConnectionId,
        draft: ConnectionDraft,
    ) -> Result<CrmConnection, ServiceError> {
        let mut conn = self.get(actor, id).await?;
        let sealer = self.sealer()?.clone();
        if draft.kind.is_some_and(|k| k != conn.kind) {
            return Err(ServiceError::invalid(
                "kind",
                FieldErrorCode::Invalid,
                "a connection's CRM cannot change; create another connection",
            ));
        }
        let current = self
            .credentials(&conn)
            .map_err(|e| ServiceError::invalid("credentials", FieldErrorCode::Invalid, e))?;
        self.apply_draft(&mut conn, draft, current, &sealer).await?;
        conn.updated_at = now();
        self.store.save_crm_connection(&conn).await?;
        Ok(conn)
    }

    async fn apply_draft(
        &self,
        conn: &mut CrmConnection,
        draft: ConnectionDraft,
        current: CrmCredentials,
        sealer: &KeySealer,
    ) -> Result<(), ServiceError> {
        let mut errors = Vec::new();
        if let Some(name) = draft.name {
            let name = name.trim().to_owned();
            if name.is_empty() || name.chars().count() > MAX_CONNECTION_NAME {
                errors.push(FieldError::invalid(
                    "name",
                    format!("1 to {MAX_CONNECTION_NAME} characters"),
                ));
            }
            conn.name = name;
        }
        if let Some(url) = draft.api_base_url {
            match self.check_url("apiBaseUrl", &url).await {
                Ok(url) => conn.api_base_url = url,
                Err(e) => errors.push(e),
            }
        }
        if let Some(url) = draft.token_url {
            if conn.kind.default_token_url().is_none() {
                errors.push(FieldError::invalid(
                    "tokenUrl",
                    format!("{} connections refresh no tokens", conn.kind.label()),
                ));
            } else {
                match self.check_url("tokenUrl", &url).await {
                    Ok(url) => conn.token_url = Some(url),
                    Err(e) => errors.push(e),
                }
            }
        }
        if let Some(mapping) = draft.field_mapping {
            match mapping.check() {
                Ok(m) => conn.field_mapping = m,
                Err(e) => errors.extend(e),
            }
        }
        if let Some(push) = draft.push_on_change {
            conn.push_on_change = push;
        }
        if let Some(interval) = draft.poll_interval_secs {
            match interval {
                Some(s) if !POLL_INTERVAL.contains(&s) => errors.push(FieldError::invalid(
                    "pollInterval",
                    format!(
                        "between {} and {} seconds, or null for no polling",
                        POLL_INTERVAL.start(),
                        POLL_INTERVAL.end()
                    ),
                )),
                other => conn.poll_interval_secs = other,
            }
        }
        if let Some(d) = draft.on_deletion {
            conn.on_deletion = d;
        }
        let credentials = match draft.credentials {
            Some(update) => match current.merged(update).check(conn.kind) {
                Ok(c) => Some(c),
                Err(e) => {
                    errors.extend(e);
                    None
                }
            },
            None => None,
        };
        if !errors.is_empty() {
            return Err(invalid(errors));
        }
        if let Some(credentials) = credentials {
            self.seal(conn, &credentials, sealer);
        }
        Ok(())
    }

    fn seal(&self, conn: &mut CrmConnection, credentials: &CrmCredentials, sealer: &KeySealer) {
        let json = SecretString::from(serde_json::to_string(credentials).unwrap_or_default());
        conn.credentials = sealer.seal_for(
            conn.workspace_id,
            &CrmConnection::credentials_purpose(conn.id),
            &json,
        );
        conn.credentials_hint = credentials.hint();
    }

    /// The connection's credentials, opened; the reason in words when they cannot be.
    fn credentials(&self, conn: &CrmConnection) -> Result<CrmCredentials, String> {
        let sealer = self
            .sealer
            .as_ref()
            .ok_or("the server has no master key to open the credentials with")?;
        let json = sealer
            .open_for(
                conn.workspace_id,
                &CrmConnection::credentials_purpose(conn.id),
                &conn.credentials,
            )
            .map_err(|_| "the stored credentials cannot be opened with this master key".to_owned())?;
        serde_json::from_str(json.expose_secret())
            .map_err(|_| "the stored credentials are damaged".to_owned())
    }

    pub async fn delete(&self, actor: &Actor, id: CrmConnectionId) -> Result<(), ServiceError> {
        actor.require_admin()?;
        if self.store.delete_crm_connection(actor.workspace_id, id).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound("CRM connection"))
        }
    }

    /// Checks the credentials against the CRM; `Err` says what is wrong in words.
    pub async fn test(
        &self,
        actor: &Actor,
        id: CrmConnectionId,
    ) -> Result<Result<String, String>, ServiceError> {
        let conn = self.get(actor, id).await?;
        let mut creds = match self.credentials(&conn) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let connector = connector(conn.kind);
        let first = connector.check(&self.ctx(&conn, &creds)).await;
        let answer = match first {
            Err(CrmError::Unauthorized(why)) => {
                match self.refresh(&conn, &mut creds, connector.as_ref()).await {
                    Ok(true) => connector.check(&self.ctx(&conn, &creds)).await,
                    Ok(false) => Err(CrmError::Unauthorized(why)),
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        Ok(answer.map_err(|e| match e {
            CrmError::Unauthorized(why) => format!("{} refused the credentials: {why}", conn.kind.label()),
            other => other.to_string(),
        }))
    }

    fn ctx<'a>(&'a self, conn: &'a CrmConnection, creds: &'a CrmCredentials) -> CallContext<'a> {
        CallContext {
            client: &self.client,
            base_url: &conn.api_base_url,
            token_url: conn.token_url.as_deref(),
            credentials: creds,
        }
    }

    /// Renews the access token when the CRM can; stores it sealed. `Ok(false)`: nothing to
    /// renew with.
    async fn refresh(
        &self,
        conn: &CrmConnection,
        creds: &mut CrmCredentials,
        connector: &dyn CrmConnector,
    ) -> Result<bool, CrmError> {
        let Some(fresh) = connector.refresh(&self.ctx(conn, creds)).await? else {
            return Ok(false);
        };
        creds.access_token = Some(fresh.access_token);
        if let Some(sealer) = &self.sealer {
            let mut sealed = conn.clone();
            self.seal(&mut sealed, creds, sealer);
            self.store
                .save_crm_credentials(conn.id, &sealed.credentials)
                .await
                .map_err(|e| CrmError::Transient {
                    message: format!("cannot store the renewed token: {e}"),
                    retry_after: None,
                })?;
        }
        Ok(true)
    }

    /// The exact request a push of `lead` would send.
    pub async fn preview(
        &self,
        actor: &Actor,
        id: CrmConnectionId,
        lead: LeadId,
    ) -> Result<PushPreview, ServiceError> {
        let conn = self.get(actor, id).await?;
        let lead = self
            .store
            .lead(actor.workspace_id, lead)
            .await?
            .ok_or(ServiceError::NotFound("lead"))?;
        let link = self.store.crm_link(conn.id, lead.id).await?;
        let record = OutgoingRecord {
            lead_id: lead.id,
            external_id: link.and_then(|l| l.external_id),
            properties: conn.field_mapping.outgoing(&lead),
        };
        let body = connector(conn.kind).render(std::slice::from_ref(&record));
        let (method, path) = match conn.kind {
            CrmKind::HubSpot => ("POST", "/crm/v3/objects/contacts/batch/upsert".to_owned()),
            CrmKind::Salesforce => (
                "PATCH",
                format!(
                    "{}/composite/sobjects/Lead/{}",
                    crate::crm::salesforce::API,
                    crate::crm::salesforce::EXTERNAL_ID_FIELD
                ),
            ),
            CrmKind::Pipedrive => match &record.external_id {
                Some(id) => ("PUT", format!("/v1/persons/{id}")),
                None => ("POST", "/v1/persons".to_owned()),
            },
        };
        let body = match (conn.kind, body) {
            (CrmKind::Pipedrive, serde_json::Value::Array(mut one)) => one.pop().unwrap_or_default(),
            (_, body) => body,
        };
        Ok(PushPreview {
            method,
            url: format!("{}{path}", conn.api_base_url),
            body,
        })
    }

    /// Marks leads for a push to `id` and queues it now; returns how many were marked.
    pub async fn sync_leads(
        &self,
        actor: &Actor,
        id: CrmConnectionId,
        selection: SyncSelection,
    ) -> Result<u64, ServiceError> {
        actor.require_lead_writer()?;
        let conn = self
            .store
            .crm_connection(actor.workspace_id, id)
            .await?
            .ok_or(ServiceError::NotFound("CRM connection"))?;
        let ids = match selection {
            SyncSelection::Ids(ids) => {
                if ids.len() > MAX_SYNC_IDS {
                    return Err(ServiceError::invalid(
                        "leadIds",
                        FieldErrorCode::TooLong,
                        format!("at most {MAX_SYNC_IDS} leads; use a filter for more"),
                    ));
                }
                // only leads of this workspace
                let found = self.store.leads_by_ids(actor.workspace_id, &ids).await?;
                found.into_iter().map(|l| l.id).collect::<Vec<_>>()
            }
            SyncSelection::Filter(filter) => self.matching(actor.workspace_id, filter).await?,
        };
        self.store
            .mark_crm_pending(actor.workspace_id, conn.id, &ids, now())
            .await?;
        self.enqueue_push(&conn, Duration::ZERO).await?;
        Ok(ids.len() as u64)
    }

    /// The ids of every lead `filter` matches, page by page.
    async fn matching(&self, ws: WorkspaceId, filter: LeadFilter) -> Result<Vec<LeadId>, ServiceError> {
        let mut ids = Vec::new();
        let mut query = LeadQuery {
            filter,
            order: crate::domain::LeadOrder::default(),
            after: None,
            before: None,
            limit: 1000,
            direction: crate::domain::PageDirection::Forward,
        };
        loop {
            let page = self.store.list_leads(ws, &query).await?;
            let Some(last) = page.last() else { break };
            query.after = Some(crate::domain::Cursor::for_lead(query.order, last));
            ids.extend(page.iter().map(|l| l.id));
            if page.len() < query.limit || ids.len() >= MAX_SYNC_FILTERED {
                break;
            }
        }
        Ok(ids)
    }

    pub async fn enqueue_push(&self, conn: &CrmConnection, delay: Duration) -> Result<(), StoreError> {
        let mut job = NewJob::new(CRM_PUSH, serde_json::json!({"connectionId": conn.id}))
            .in_workspace(conn.workspace_id)
            .unique(format!("crm.push:{}", conn.id), Duplicate::Keep);
        if !delay.is_zero() {
            job.run_at = Some(crate::jobs::after(now(), delay));
        }
        self.queue.enqueue(job).await.map(drop)
    }

    /// A lead's links, one per connection that knows it.
    pub async fn links(&self, actor: &Actor, lead: LeadId) -> Result<Vec<CrmLink>, ServiceError> {
        Ok(self.store.crm_links_of(actor.workspace_id, lead).await?)
    }

    /// The links of a page of leads with the workspace's connections they point at, in two
    /// queries (the page's `crmLinks { connection { … } }`).
    pub async fn links_of_leads(
        &self,
        actor: &Actor,
        leads: &[LeadId],
    ) -> Result<(Vec<CrmLink>, Vec<CrmConnection>), ServiceError> {
        let links = self.store.crm_links_of_leads(actor.workspace_id, leads).await?;
        let connections = if links.is_empty() {
            Vec::new()
        } else {
            self.store.crm_connections_of(actor.workspace_id).await?
        };
        Ok((links, connections))
    }

    /// The connection of a link, for resolvers (any role that sees the lead sees its links).
    pub async fn connection_of(
        &self,
        actor: &Actor,
        id: CrmConnectionId,
    ) -> Result<Option<CrmConnection>, ServiceError> {
        Ok(self.store.crm_connection(actor.workspace_id, id).await?)
    }

    pub async fn runs(
        &self,
        actor: &Actor,
        connection: Option<CrmConnectionId>,
        page: KeysetPage<CrmRunId>,
    ) -> Result<Paged<CrmSyncRun>, ServiceError> {
        actor.require_admin()?;
        Ok(self
            .store
            .crm_runs(
                actor.workspace_id,
                connection,
                &page.capped(MAX_RUN_PAGE as usize),
            )
            .await?)
    }

    /// Counts of a connection's links by status and of its webhook receipts by outcome.
    pub async fn stats(
        &self,
        actor: &Actor,
        id: CrmConnectionId,
    ) -> Result<(BTreeMap<String, u64>, BTreeMap<String, u64>), ServiceError> {
        let conn = self.get(actor, id).await?;
        Ok((
            self.store.crm_link_counts(conn.id).await?,
            self.store.crm_receipt_counts(conn.id).await?,
        ))
    }

    /// Every connection of every workspace (the command line).
    pub async fn all_connections(&self) -> Result<Vec<CrmConnection>, ServiceError> {
        Ok(self.store.all_crm_connections().await?)
    }

    // ---- push ----

    /// Counts one request to the CRM in the metrics, by outcome.
    fn observe<T>(&self, conn: &CrmConnection, answer: &Result<T, CrmError>, took: Duration) {
        let label = match answer {
            Ok(_) => "ok",
            Err(CrmError::RateLimited { .. }) => "rate_limited",
            Err(CrmError::Transient { .. }) => "transient",
            Err(CrmError::Unauthorized(_)) => "unauthorized",
            Err(CrmError::Rejected(_)) => "rejected",
        };
        self.metrics
            .request(&conn.id.to_string(), conn.kind.as_str(), label, took);
    }

    /// Counts a run's records and lists the run (`crmSyncRuns`, a `crm.sync` event) unless it
    /// did nothing and `keep_empty` is off.
    async fn finish_run(
        &self,
        conn: &CrmConnection,
        trigger: SyncTrigger,
        started: Timestamp,
        counts: SyncCounts,
        keep_empty: bool,
    ) {
        let crm = conn.kind.as_str();
        let id = conn.id.to_string();
        self.metrics.records(&id, crm, "pushed", counts.pushed);
        self.metrics.records(&id, crm, "pulled", counts.pulled);
        self.metrics.records(&id, crm, "failed", counts.failed);
        self.metrics.records(&id, crm, "skipped", counts.skipped);
        if counts == SyncCounts::default() && !keep_empty {
            return;
        }
        let at = now();
        let mut run = CrmSyncRun {
            id: CrmRunId::new(),
            workspace_id: conn.workspace_id,
            connection_id: conn.id,
            trigger,
            started_at: started,
            finished_at: Some(at),
            counts,
        };
        let saved = if trigger == SyncTrigger::Webhook {
            // deliveries come many a second: one run per connection and minute sums them, and
            // its event goes out once a minute (per process), not once a delivery
            let minute = started.timestamp().div_euclid(60);
            run.id = webhook_run_id(conn.id, minute);
            run.started_at = chrono::DateTime::from_timestamp(minute * 60, 0).unwrap_or(started);
            let fresh = {
                let mut announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
                announced.insert(conn.id, minute) != Some(minute)
            };
            match self.store.add_to_crm_run(&run).await {
                Ok(()) if !fresh => return,
                other => other,
            }
        } else {
            self.store.save_crm_run(&run).await
        };
        if let Err(e) = saved {
            tracing::warn!(error = %e, "cannot record a CRM sync run");
            return;
        }
        let event = NewEvent {
            workspace_id: conn.workspace_id,
            kind: CRM_SYNC_FINISHED,
            subject_id: Some(conn.id.as_uuid()),
            payload: serde_json::json!({
                "connectionId": conn.id.to_string(),
                "runId": run.id.to_string(),
                "trigger": trigger.as_str(),
                "pushed": counts.pushed,
                "pulled": counts.pulled,
                "failed": counts.failed,
                "skipped": counts.skipped,
            }),
            at,
        };
        match self.store.append_events(&[event]).await {
            Ok(events) => self.bus.publish(events),
            Err(e) => tracing::warn!(error = %e, "cannot record a CRM sync event"),
        }
    }

    /// One push job: every pending link of the connection, in batches.
    pub async fn run_push(&self, job: &Job, ctx: &JobContext) -> Result<(), JobError> {
        let (ws, id) = job_target(job)?;
        let Some(conn) = self.store.crm_connection(ws, id).await.map_err(transient)? else {
            return Ok(()); // deleted since: nothing to push
        };
        if let Some(until) = conn.blocked_until {
            let wait = (until - now()).to_std().unwrap_or(Duration::ZERO);
            if !wait.is_zero() {
                return Err(JobError::RetryAfter(
                    wait,
                    format!("{} asked us to wait", conn.kind.label()),
                ));
            }
        }
        let mut creds = self.credentials(&conn).map_err(JobError::Permanent)?;
        let started = now();
        let mut counts = SyncCounts::default();
        let result = self.push_all(&conn, &mut creds, &mut counts, ctx).await;
        self.finish_run(&conn, SyncTrigger::Push, started, counts, false)
            .await;
        result
    }

    async fn push_all(
        &self,
        conn: &CrmConnection,
        creds: &mut CrmCredentials,
        counts: &mut SyncCounts,
        ctx: &JobContext,
    ) -> Result<(), JobError> {
        let connector = connector(conn.kind);
        let pacer = Pacer::new(conn.kind.requests_per_second() * self.options.pace_margin);
        let batch = conn.kind.batch_size();
        let page = batch * self.options.in_flight.max(1) * 4;
        let mut refreshed = false;
        let in_flight = self.options.in_flight.max(1);
        for _pass in 0..PASSES {
            let mut after = None;
            let mut exhausted = false;
            let mut retry = false;
            // records read ahead, so a free slot never waits for the next page: the batches
            // keep the pace across page boundaries
            let mut ready: VecDeque<(OutgoingRecord, (i64, String))> = VecDeque::new();
            let mut flying = FuturesUnordered::new();
            loop {
                while !exhausted && ready.len() < batch * in_flight {
                    let pending = self
                        .store
                        .pending_crm_links(conn.id, after, page)
                        .await
                        .map_err(transient)?;
                    exhausted = pending.len() < page;
                    let Some(last) = pending.last() else { break };
                    after = Some(last.lead_id);
                    let (records, settled) = self.records(conn, &pending).await.map_err(transient)?;
                    let gone = settled.iter().filter(|o| o.status == LinkStatus::Failed).count() as u64;
                    counts.failed += gone;
                    counts.skipped += settled.len() as u64 - gone;
                    self.store
                        .record_crm_outcomes(conn.id, &settled, now())
                        .await
                        .map_err(transient)?;
                    ready.extend(records);
                }
                while flying.len() < in_flight && !ready.is_empty() {
                    let chunk: Vec<_> = ready.drain(..batch.min(ready.len())).collect();
                    let creds_now = creds.clone();
                    let connector = connector.as_ref();
                    let pacer = &pacer;
                    flying.push(async move {
                        pacer.wait().await;
                        let took = tokio::time::Instant::now();
                        let answer = connector
                            .upsert(
                                &self.ctx(conn, &creds_now),
                                &chunk.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(),
                            )
                            .await;
                        (chunk, answer, took.elapsed())
                    });
                }
                let Some((chunk, answer, took)) = flying.next().await else {
                    break;
                };
                self.observe(conn, &answer, took);
                let generations: HashMap<LeadId, (i64, String)> = chunk
                    .iter()
                    .map(|(r, (g, d))| (r.lead_id, (*g, d.clone())))
                    .collect();
                match answer {
                    Ok(outcomes) => {
                        let mut recorded = Vec::with_capacity(outcomes.len());
                        for o in outcomes {
                            let Some((generation, digest)) = generations.get(&o.lead_id).cloned() else {
                                continue;
                            };
                            match o.result {
                                Written::Ok(external) => {
                                    counts.pushed += 1;
                                    recorded.push(CrmOutcome {
                                        lead_id: o.lead_id,
                                        generation,
                                        external_id: Some(external),
                                        status: LinkStatus::Synced,
                                        digest: Some(digest),
                                        error: None,
                                    });
                                }
                                Written::Refused(why) => {
                                    counts.failed += 1;
                                    recorded.push(CrmOutcome {
                                        lead_id: o.lead_id,
                                        generation,
                                        external_id: None,
                                        status: LinkStatus::Failed,
                                        digest: None,
                                        error: Some(why),
                                    });
                                }
                                Written::NotWritten(_) => retry = true,
                            }
                        }
                        self.store
                            .record_crm_outcomes(conn.id, &recorded, now())
                            .await
                            .map_err(transient)?;
                    }
                    Err(CrmError::Rejected(why)) => {
                        // the request as a whole was refused: say why on every record
                        counts.failed += chunk.len() as u64;
                        let recorded: Vec<CrmOutcome> = chunk
                            .iter()
                            .map(|(r, (generation, _))| CrmOutcome {
                                lead_id: r.lead_id,
                                generation: *generation,
                                external_id: None,
                                status: LinkStatus::Failed,
                                digest: None,
                                error: Some(why.clone()),
                            })
                            .collect();
                        self.store
                            .record_crm_outcomes(conn.id, &recorded, now())
                            .await
                            .map_err(transient)?;
                    }
                    Err(CrmError::Unauthorized(why)) if !refreshed => {
                        refreshed = true;
                        drop(flying);
                        match self.refresh(conn, creds, connector.as_ref()).await {
                            Ok(true) => {
                                retry = true;
                                break;
                            }
                            Ok(false) => {
                                return Err(JobError::Permanent(format!(
                                    "{} refused the credentials: {why}",
                                    conn.kind.label()
                                )));
                            }
                            Err(e) => return Err(job_error(conn, e, "renewing the token", "")),
                        }
                    }
                    Err(e) => {
                        if let CrmError::RateLimited { retry_after } = &e {
                            let wait = retry_after.unwrap_or(Duration::from_secs(10));
                            let until = crate::jobs::after(now(), wait);
                            self.store
                                .block_crm_until(conn.id, until)
                                .await
                                .map_err(transient)?;
                        }
                        let request = excerpt(
                            &connector
                                .render(&chunk.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>())
                                .to_string(),
                        );
                        return Err(job_error(conn, e, "a batch", &request));
                    }
                }
                if ctx.lease_lost() {
                    return Err(JobError::Transient("the job's lease was lost".into()));
                }
            }
            if !retry {
                break;
            }
        }
        Ok(())
    }

    /// The records to send among `pending`, with their generation and digest, and the links
    /// that need no send (already in step, or gone).
    async fn records(
        &self,
        conn: &CrmConnection,
        pending: &[PendingLink],
    ) -> Result<(Vec<(OutgoingRecord, (i64, String))>, Vec<CrmOutcome>), StoreError> {
        let ids: Vec<LeadId> = pending.iter().map(|p| p.lead_id).collect();
        let leads: HashMap<LeadId, Lead> = self
            .store
            .leads_by_ids(conn.workspace_id, &ids)
            .await?
            .into_iter()
            .map(|l| (l.id, l))
            .collect();
        let connector = connector(conn.kind);
        let mut send = Vec::new();
        let mut settled = Vec::new();
        for p in pending {
            let Some(lead) = leads.get(&p.lead_id) else {
                settled.push(CrmOutcome {
                    lead_id: p.lead_id,
                    generation: p.generation,
                    external_id: None,
                    status: LinkStatus::Failed,
                    digest: None,
                    error: Some("the lead no longer exists".into()),
                });
                continue;
            };
            let properties = conn.field_mapping.outgoing(lead);
            let digest = values_digest(&properties);
            if p.synced_digest.as_deref() == Some(digest.as_str()) && p.external_id.is_some() {
                settled.push(CrmOutcome {
                    lead_id: p.lead_id,
                    generation: p.generation,
                    external_id: None,
                    status: LinkStatus::Synced,
                    digest: None,
                    error: None,
                });
                continue;
            }
            let record = OutgoingRecord {
                lead_id: p.lead_id,
                external_id: p.external_id.clone(),
                properties,
            };
            if let Some(why) = connector.unsendable(&record) {
                settled.push(CrmOutcome {
                    lead_id: p.lead_id,
                    generation: p.generation,
                    external_id: None,
                    status: LinkStatus::Failed,
                    digest: None,
                    error: Some(why),
                });
                continue;
            }
            send.push((record, (p.generation, digest)));
        }
        Ok((send, settled))
    }

    // ---- pull ----

    /// Handles one inbound webhook request for `connection`: the HTTP status and body to
    /// answer with.
    pub async fn receive(
        &self,
        connection: CrmConnectionId,
        request: InboundRequest<'_>,
    ) -> (u16, serde_json::Value) {
        let at = now();
        let conn = match self.store.crm_connection_by_id(connection).await {
            Ok(Some(c)) => c,
            Ok(None) => return (404, serde_json::json!({"error": "no such CRM connection"})),
            Err(e) => {
                tracing::error!(error = %e, "cannot read a CRM connection");
                return (503, serde_json::json!({"error": "try again later"}));
            }
        };
        let receipt =
            |status: u16, outcome: &'static str, detail: Option<String>, events: u32| WebhookReceipt {
                workspace_id: conn.workspace_id,
                connection_id: conn.id,
                status,
                outcome,
                detail,
                events,
                at,
            };
        if !conn.kind.has_webhooks() {
            let why = format!(
                "{} connections are polled; they take no webhooks",
                conn.kind.label()
            );
            return (404, serde_json::json!({"error": why}));
        }
        let connector = connector(conn.kind);
        let creds = match self.credentials(&conn) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(connection = %conn.id, "cannot open CRM credentials: {e}");
                return (503, serde_json::json!({"error": "try again later"}));
            }
        };
        if let Err(why) = connector.verify(&creds, &request, ms(at)) {
            self.keep_receipt(receipt(401, "bad_signature", Some(why.clone()), 0))
                .await;
            return (401, serde_json::json!({"error": why}));
        }
        let events = match connector.parse_events(request.body) {
            Ok(events) => events,
            Err(why) => {
                self.keep_receipt(receipt(400, "malformed", Some(why.clone()), 0))
                    .await;
                return (400, serde_json::json!({"error": why}));
            }
        };
        let total = events.len() as u32;
        match self
            .apply_events(&conn, &creds, events, SyncTrigger::Webhook)
            .await
        {
            Ok((counts, failures, duplicates)) => {
                let outcome = if total > 0 && duplicates == total as usize {
                    "duplicate"
                } else {
                    "applied"
                };
                let detail = (!failures.is_empty()).then(|| failures.join("; "));
                self.keep_receipt(receipt(200, outcome, detail, total)).await;
                (
                    200,
                    serde_json::json!({
                        "received": total,
                        "applied": counts.pulled,
                        "skipped": counts.skipped,
                        "failed": failures,
                    }),
                )
            }
            Err(e) => {
                tracing::warn!(connection = %conn.id, error = %e, "CRM webhook not applied");
                // the error's text can quote the CRM's answer: the receipt keeps its kind only
                let kind = match e {
                    ApplyError::Store(_) => "the database failed",
                    ApplyError::Service(_) => "applying a change failed",
                    ApplyError::Crm(_) => "reading the record from the CRM failed",
                };
                self.keep_receipt(receipt(503, "retry", Some(kind.into()), total))
                    .await;
                (503, serde_json::json!({"error": "not applied; send it again"}))
            }
        }
    }

    async fn keep_receipt(&self, r: WebhookReceipt) {
        if let Err(e) = self.store.record_crm_receipt(&r).await {
            tracing::warn!(error = %e, "cannot record a CRM webhook receipt");
        }
    }

    /// Applies events: duplicates dropped, in `occurredAt` order per record. Returns the
    /// counts and, per failed event, why (field names, never values).
    async fn apply_events(
        &self,
        conn: &CrmConnection,
        creds: &CrmCredentials,
        mut events: Vec<InboundEvent>,
        trigger: SyncTrigger,
    ) -> Result<(SyncCounts, Vec<String>, usize), ApplyError> {
        let started = now();
        let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
        let seen = self.store.seen_crm_events(conn.id, &ids).await?;
        let mut counts = SyncCounts::default();
        let before = events.len();
        events.retain(|e| !seen.contains(&e.event_id));
        // a request can repeat an event too
        let mut unique = std::collections::HashSet::new();
        events.retain(|e| unique.insert(e.event_id.clone()));
        let duplicates = before - events.len();
        counts.skipped += duplicates as u64;
        events.sort_by(|a, b| (&a.external_id, a.occurred_at_ms).cmp(&(&b.external_id, b.occurred_at_ms)));
        let mut failures = Vec::new();
        for event in &events {
            match self.apply_one(conn, creds, event).await? {
                Applied::Changed => counts.pulled += 1,
                Applied::Same => counts.skipped += 1,
                Applied::Failed(why) => {
                    counts.failed += 1;
                    failures.push(format!("event {}: {why}", excerpt(&event.event_id)));
                }
            }
        }
        let applied: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
        self.store.remember_crm_events(conn.id, &applied, now()).await?;
        self.finish_run(conn, trigger, started, counts, false).await;
        Ok((counts, failures, duplicates))
    }

    /// Applies one change of one record.
    async fn apply_one(
        &self,
        conn: &CrmConnection,
        creds: &CrmCredentials,
        event: &InboundEvent,
    ) -> Result<Applied, ApplyError> {
        let link = self
            .store
            .crm_link_by_external(conn.id, &event.external_id)
            .await?;
        match (&event.change, link) {
            (Change::Deleted, None) => Ok(Applied::Same),
            (Change::Deleted, Some(link)) => {
                if link
                    .remote_clock
                    .get("*")
                    .is_some_and(|t| *t > event.occurred_at_ms)
                {
                    return Ok(Applied::Same);
                }
                match conn.on_deletion {
                    OnDeletion::Unlink => {
                        self.store.delete_crm_link(conn.id, link.lead_id).await?;
                    }
                    OnDeletion::Archive => {
                        let mut link = link;
                        link.remote_clock.insert("*".into(), event.occurred_at_ms);
                        link.status = LinkStatus::Failed;
                        link.last_error = Some(format!("deleted in {}", conn.kind.label()));
                        link.external_id = None;
                        self.store.save_crm_link(&link).await?;
                        match self.leads.archive(&system_actor(conn), link.lead_id).await {
                            Ok(_) | Err(ServiceError::NotFound(_)) => {}
                            Err(e) => return Err(ApplyError::Service(e)),
                        }
                    }
                }
                Ok(Applied::Changed)
            }
            (change, Some(link)) => {
                let properties = match change {
                    Change::Changed(p) | Change::Created(Some(p)) => p.clone(),
                    _ => match self.fetch(conn, creds, &event.external_id).await? {
                        Some(record) => record.properties,
                        None => return Ok(Applied::Same),
                    },
                };
                self.apply_to_lead(conn, link, &properties, event.occurred_at_ms)
                    .await
            }
            (change, None) => {
                let record = match change {
                    Change::Created(Some(p)) => RemoteRecord {
                        external_id: event.external_id.clone(),
                        properties: p.clone(),
                        updated_at_ms: event.occurred_at_ms,
                    },
                    // a change of a record we do not know yet: read it whole
                    _ => match self.fetch(conn, creds, &event.external_id).await? {
                        Some(r) => r,
                        None => return Ok(Applied::Same),
                    },
                };
                self.adopt(conn, &record, event.occurred_at_ms).await
            }
        }
    }

    async fn fetch(
        &self,
        conn: &CrmConnection,
        creds: &CrmCredentials,
        external_id: &str,
    ) -> Result<Option<RemoteRecord>, ApplyError> {
        let properties = pulled_properties(&conn.field_mapping);
        let took = tokio::time::Instant::now();
        let found = connector(conn.kind)
            .fetch(&self.ctx(conn, creds), external_id, &properties)
            .await;
        self.observe(conn, &found, took.elapsed());
        found.map_err(ApplyError::Crm)
    }

    /// Links a record leadgate does not know to the lead with its email, or creates a lead.
    async fn adopt(
        &self,
        conn: &CrmConnection,
        record: &RemoteRecord,
        occurred_at_ms: i64,
    ) -> Result<Applied, ApplyError> {
        let email_rule = conn
            .field_mapping
            .rules
            .iter()
            .find(|r| r.field == crate::domain::MappedField::Email && r.direction.pulls());
        let email = email_rule
            .and_then(|r| record.properties.get(&r.property).cloned().flatten())
            .and_then(|e| EmailAddress::parse("email", &e).ok());
        let existing = match &email {
            Some(e) => self
                .store
                .leads_by_emails(conn.workspace_id, std::slice::from_ref(e))
                .await?
                .pop(),
            None => None,
        };
        let lead_id = match existing {
            Some(lead) => lead.id,
            None => {
                let (draft, _) = match conn.field_mapping.incoming(&record.properties, |_| true) {
                    Ok(d) => d,
                    Err(errors) => return Ok(Applied::Failed(field_names(&errors))),
                };
                match self.leads.create(&system_actor(conn), draft).await {
                    Ok(lead) => {
                        let digest = values_digest(&conn.field_mapping.outgoing(&lead));
                        self.store
                            .save_crm_link(&CrmLink {
                                workspace_id: conn.workspace_id,
                                connection_id: conn.id,
                                lead_id: lead.id,
                                external_id: Some(record.external_id.clone()),
                                status: LinkStatus::Synced,
                                generation: 0,
                                synced_digest: Some(digest),
                                remote_clock: BTreeMap::from([("*".to_owned(), occurred_at_ms)]),
                                last_synced_at: Some(now()),
                                last_error: None,
                                pending_since: None,
                            })
                            .await?;
                        return Ok(Applied::Changed);
                    }
                    Err(ServiceError::Invalid(errors)) => return Ok(Applied::Failed(field_names(&errors.0))),
                    Err(ServiceError::Refused(why)) => return Ok(Applied::Failed(why.to_owned())),
                    Err(e) => return Err(ApplyError::Service(e)),
                }
            }
        };
        let link = match self.store.crm_link(conn.id, lead_id).await? {
            Some(mut l) => {
                l.external_id = Some(record.external_id.clone());
                l
            }
            None => CrmLink {
                workspace_id: conn.workspace_id,
                connection_id: conn.id,
                lead_id,
                external_id: Some(record.external_id.clone()),
                status: LinkStatus::Synced,
                generation: 0,
                synced_digest: None,
                remote_clock: BTreeMap::new(),
                last_synced_at: None,
                last_error: None,
                pending_since: None,
            },
        };
        self.apply_to_lead(conn, link, &record.properties, occurred_at_ms)
            .await
    }

    /// Applies the pulled properties that are newer than what was applied before and win
    /// their rule's conflict policy; keeps the link's digest in step so the change does not
    /// come back as a push.
    async fn apply_to_lead(
        &self,
        conn: &CrmConnection,
        mut link: CrmLink,
        properties: &BTreeMap<String, Option<String>>,
        occurred_at_ms: i64,
    ) -> Result<Applied, ApplyError> {
        let actor = system_actor(conn);
        let Some(lead) = self.store.lead(conn.workspace_id, link.lead_id).await? else {
            self.store.delete_crm_link(conn.id, link.lead_id).await?;
            return Ok(Applied::Same);
        };
        let fresh: BTreeMap<String, Option<String>> = properties
            .iter()
            .filter(|(p, _)| {
                link.remote_clock
                    .get(p.as_str())
                    .is_none_or(|t| *t <= occurred_at_ms)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let lead_ms = ms(lead.updated_at);
        let wins = |rule: &crate::domain::MappingRule| match rule.conflict {
            ConflictPolicy::CrmWins => true,
            ConflictPolicy::LeadgateWins => rule.field.read(&lead).is_none(),
            ConflictPolicy::Newest => occurred_at_ms >= lead_ms || link.status != LinkStatus::Pending,
        };
        let (draft, fields) = match conn.field_mapping.incoming(&fresh, wins) {
            Ok(d) => d,
            Err(errors) => {
                link.last_error = Some(format!("not applied: {}", field_names(&errors)));
                self.store.save_crm_link(&link).await?;
                return Ok(Applied::Failed(field_names(&errors)));
            }
        };
        for p in fresh.keys() {
            link.remote_clock.insert(p.clone(), occurred_at_ms);
        }
        if fields == 0 {
            self.store.save_crm_link(&link).await?;
            return Ok(Applied::Same);
        }
        let patch = match LeadPatch::parse(draft.clone()) {
            Ok(p) => p,
            Err(errors) => {
                link.last_error = Some(format!("not applied: {}", field_names(&errors.0)));
                self.store.save_crm_link(&link).await?;
                return Ok(Applied::Failed(field_names(&errors.0)));
            }
        };
        let mut expected = lead.clone();
        if !expected.apply(&patch) {
            self.store.save_crm_link(&link).await?;
            return Ok(Applied::Same);
        }
        // the digest first: the update's event must find the link already in step
        link.synced_digest = Some(values_digest(&conn.field_mapping.outgoing(&expected)));
        link.last_synced_at = Some(now());
        link.last_error = None;
        if link.status == LinkStatus::Failed {
            link.status = LinkStatus::Synced;
        }
        self.store.save_crm_link(&link).await?;
        match self
            .leads
            .update(&actor, lead.id, draft, Some(lead.version))
            .await
        {
            Ok(_) => Ok(Applied::Changed),
            Err(ServiceError::Invalid(errors)) => Ok(Applied::Failed(field_names(&errors.0))),
            Err(ServiceError::Refused(why)) => Ok(Applied::Failed(why.to_owned())),
            Err(ServiceError::NotFound(_)) => Ok(Applied::Same),
            Err(e) => Err(ApplyError::Service(e)),
        }
    }

    // ---- poll ----

    /// One poll job: pages of changes since the stored cursor, applied, the cursor kept after
    /// each page.
    pub async fn run_poll(&self, job: &Job, ctx: &JobContext) -> Result<(), JobError> {
        let (ws, id) = job_target(job)?;
        let Some(conn) = self.store.crm_connection(ws, id).await.map_err(transient)? else {
            return Ok(());
        };
        let creds = self.credentials(&conn).map_err(JobError::Permanent)?;
        let connector = connector(conn.kind);
        let properties = pulled_properties(&conn.field_mapping);
        let started = now();
        let mut counts = SyncCounts::default();
        let mut cursor = conn.poll_cursor.clone();
        let mut newest = cursor_floor(&conn);
        let result: Result<(), JobError> = async {
            loop {
                let took = tokio::time::Instant::now();
                let page = connector
                    .changed_since(&self.ctx(&conn, &creds), cursor.as_deref(), &properties)
                    .await;
                self.observe(&conn, &page, took.elapsed());
                let page =
                    page.map_err(|e| job_error(&conn, e, "a poll", cursor.as_deref().unwrap_or("")))?;
                let mut events = Vec::with_capacity(page.records.len() + page.deleted.len());
                for r in page.records {
                    newest = newest.max(r.updated_at_ms);
                    events.push(InboundEvent {
                        event_id: String::new(),
                        external_id: r.external_id,
                        occurred_at_ms: r.updated_at_ms,
                        change: Change::Changed(r.properties),
                    });
                }
                for (id, at) in page.deleted {
                    events.push(InboundEvent {
                        event_id: String::new(),
                        external_id: id,
                        occurred_at_ms: at,
                        change: Change::Deleted,
                    });
                }
                for event in &events {
                    match self.apply_one(&conn, &creds, event).await {
                        Ok(Applied::Changed) => counts.pulled += 1,
                        Ok(Applied::Same) => counts.skipped += 1,
                        Ok(Applied::Failed(_)) => counts.failed += 1,
                        Err(e) => return Err(JobError::Transient(e.to_string())),
                    }
                }
                cursor = page.next;
                let kept = cursor.clone().unwrap_or_else(|| connector.resume_cursor(newest));
                self.store
                    .save_crm_poll_cursor(conn.id, Some(&kept), now())
                    .await
                    .map_err(transient)?;
                if cursor.is_none() || ctx.lease_lost() {
                    return Ok(());
                }
            }
        }
        .await;
        // a poll an admin asked for is listed even when nothing changed: it is their answer
        let requested = job.payload.get("requested").and_then(|v| v.as_bool()) == Some(true);
        self.finish_run(&conn, SyncTrigger::Poll, started, counts, requested)
            .await;
        result
    }

    /// Queues a poll of every connection whose interval has passed.
    pub async fn queue_due_polls(&self) -> Result<u64, StoreError> {
        let at = now();
        let mut queued = 0;
        for conn in self.store.all_crm_connections().await? {
            let Some(interval) = conn.poll_interval_secs else {
                continue;
            };
            let due = conn
                .polled_at
                .is_none_or(|p| (at - p).num_seconds() >= i64::from(interval) - 5);
            if due {
                let job = NewJob::new(CRM_POLL, serde_json::json!({"connectionId": conn.id}))
                    .in_workspace(conn.workspace_id)
                    .unique(format!("crm.poll:{}", conn.id), Duplicate::Keep);
                if self.queue.enqueue(job).await?.created {
                    queued += 1;
                }
            }
        }
        Ok(queued)
    }

    /// Polls one connection now (`pollCrmConnection`, the command line): a poll already queued
    /// is brought forward and becomes this one. Its run is listed even when nothing changed.
    /// Returns false when a poll of it was already queued or running.
    pub async fn poll_now(&self, actor: &Actor, id: CrmConnectionId) -> Result<bool, ServiceError> {
        actor.require_admin()?;
        let conn = self.get(actor, id).await?;
        let mut job = NewJob::new(
            CRM_POLL,
            serde_json::json!({"connectionId": conn.id, "requested": true}),
        )
        .in_workspace(conn.workspace_id)
        .unique(format!("crm.poll:{}", conn.id), Duplicate::Replace);
        job.run_at = Some(now());
        Ok(self.queue.enqueue(job).await?.created)
    }
}

/// The id of a connection's webhook run of one minute: the same in every process, so their
/// deliveries add up in one row.
fn webhook_run_id(connection: CrmConnectionId, minute: i64) -> CrmRunId {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(connection.as_uuid().as_bytes())
        .chain_update(minute.to_be_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    CrmRunId::from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

/// The start time a fresh poll's cursor stands for (0: everything).
fn cursor_floor(_conn: &CrmConnection) -> i64 {
    0
}

/// The CRM properties the mapping pulls.
fn pulled_properties(mapping: &FieldMapping) -> Vec<String> {
    mapping
        .rules
        .iter()
        .filter(|r| r.direction.pulls())
        .map(|r| r.property.clone())
        .collect()
}

/// Field paths and codes, never values (they end up in receipts and links).
fn field_names(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{} ({:?})", e.field.join("."), e.code))
        .collect::<Vec<_>>()
        .join(", ")
}

enum Applied {
    Changed,
    Same,
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Service(ServiceError),
    #[error("{0}")]
    Crm(CrmError),
}

fn transient(e: StoreError) -> JobError {
    JobError::Transient(e.to_string())
}

fn job_target(job: &Job) -> Result<(WorkspaceId, CrmConnectionId), JobError> {
    let ws = job
        .workspace_id
        .ok_or_else(|| JobError::Permanent("a CRM job needs a workspace".into()))?;
    let id = job
        .payload
        .get("connectionId")
        .and_then(|v| v.as_str())
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
        .map(CrmConnectionId::from_uuid)
        .ok_or_else(|| JobError::Permanent("the payload names no connectionId".into()))?;
    Ok((ws, id))
}

/// A CRM failure as the job's error: what was sent (an excerpt) and what came back.
fn job_error(conn: &CrmConnection, e: CrmError, what: &str, request: &str) -> JobError {
    let sent = if request.is_empty() {
        String::new()
    } else {
        format!(" (sent: {request})")
    };
    let message = format!("{} {what}: {e}{sent}", conn.kind.label());
    match e {
        CrmError::RateLimited { retry_after } => {
            JobError::RetryAfter(retry_after.unwrap_or(Duration::from_secs(10)), message)
        }
        CrmError::Transient {
            retry_after: Some(d), ..
        } => JobError::RetryAfter(d, message),
        CrmError::Transient { .. } => JobError::Transient(message),
        CrmError::Unauthorized(_) | CrmError::Rejected(_) => JobError::Permanent(message),
    }
}

/// Runs `crm.push`.
pub struct CrmPushHandler(pub CrmService);

impl Handler for CrmPushHandler {
    fn kind(&self) -> JobKind {
        CRM_PUSH
    }
    fn policy(&self) -> crate::domain::RetryPolicy {
        crate::domain::RetryPolicy {
            max_attempts: 8,
            ..crate::domain::RetryPolicy::default()
        }
    }
    fn run<'a>(&'a self, job: &'a Job, ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(self.0.run_push(job, ctx))
    }
}

/// Runs `crm.poll`.
pub struct CrmPollHandler(pub CrmService);

impl Handler for CrmPollHandler {
    fn kind(&self) -> JobKind {
        CRM_POLL
    }
    fn run<'a>(&'a self, job: &'a Job, ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(self.0.run_poll(job, ctx))
    }
}

/// Runs `crm.poll_due` (every minute): queues the polls that are due.
pub struct CrmPollDueHandler(pub CrmService);

impl Handler for CrmPollDueHandler {
    fn kind(&self) -> JobKind {
        CRM_POLL_DUE
    }
    fn run<'a>(&'a self, _job: &'a Job, _ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move { self.0.queue_due_polls().await.map(drop).map_err(transient) })
    }
}

/// Follows the event log for connections that push on change: marks the changed leads
/// pending and queues one coalesced push per connection.
pub struct CrmDispatcher {
    service: CrmService,
}

/// The events that can change what a lead looks like to a CRM. Archiving does not (and a lead
/// archived because its CRM record was deleted must not be sent back).
const PUSHED_EVENTS: [&str; 4] = [LEAD_CREATED, LEAD_UPDATED, LEAD_RESTORED, LEAD_ENRICHED];

/// Events read per step.
const DISPATCH_BATCH: u32 = 1000;

impl CrmDispatcher {
    pub fn new(service: CrmService) -> Self {
        Self { service }
    }

    /// Dispatches until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut live = self.service.bus.watch();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                first = live.recv() => {
                    if matches!(first, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        return;
                    }
                    while live.try_recv().is_ok() {}
                }
                _ = tick.tick() => {}
            }
            if let Err(e) = self.dispatch().await {
                if e.is_closed() {
                    return;
                }
                tracing::warn!(error = %e, "CRM dispatch failed; retrying");
            }
        }
    }

    /// One pass over the connections that push on change; returns how many leads it marked.
    pub async fn dispatch(&self) -> Result<usize, StoreError> {
        let store = &self.service.store;
        let mut marked = 0;
        for conn in store.all_crm_connections().await? {
            if !conn.push_on_change {
                continue;
            }
            let mut cursor = conn.event_cursor;
            loop {
                let events = store
                    .events_after(conn.workspace_id, cursor, DISPATCH_BATCH)
                    .await?;
                let Some(last) = events.last().map(|e| e.seq) else {
                    break;
                };
                let mut leads: Vec<LeadId> = events
                    .iter()
                    .filter(|e| PUSHED_EVENTS.contains(&e.kind.as_str()))
                    .filter_map(|e| e.subject_id.map(LeadId::from_uuid))
                    .collect();
                leads.sort_unstable();
                leads.dedup();
                if !leads.is_empty() {
                    store
                        .mark_crm_pending(conn.workspace_id, conn.id, &leads, now())
                        .await?;
                    marked += leads.len();
                }
                if !store.advance_crm_cursor(conn.id, cursor, last).await? {
                    break;
                }
                if !leads.is_empty() {
                    self.service
                        .enqueue_push(&conn, self.service.options.coalesce)
                        .await?;
                }
                cursor = last;
                if events.len() < DISPATCH_BATCH as usize {
                    break;
                }
            }
        }
        Ok(marked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_pacer_spaces_requests_at_its_rate() {
        let pacer = Pacer::new(10.0);
        let start = tokio::time::Instant::now();
        for _ in 0..21 {
            pacer.wait().await;
        }
        // 21 requests at 10 a second: the last one starts 2 s after the first
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
