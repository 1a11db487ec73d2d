//! Use cases with authorization: what GraphQL, HTTP and the CLI all call.
//!
//! Every method on tenant data takes an `Actor`, and the workspace comes from the actor, never
//! from the request, so a caller cannot name another tenant. Errors are `ServiceError`, which
//! the GraphQL layer turns into stable codes; validation and conflicts are `Invalid`, which it
//! turns into `userErrors`.

pub mod api_keys;
pub mod campaign_metrics;
pub mod campaigns;
pub mod crm;
mod enrichment;
mod erasure;
mod events;
mod exports;
pub mod history;
mod imports;
mod jobs;
mod leads;
pub mod retention;
mod webhooks;
mod workspaces;

/// The CRM vocabulary the API speaks.
pub use crate::crm::InboundRequest;
/// Maintained lead counts of a workspace, as services report them.
pub use crate::store::LeadCounts;
pub use api_keys::{ApiKeyDraft, ApiKeyService, KeyRing, KeyRingTask};
pub use campaigns::{
    CAMPAIGN_SEGMENTS, CAMPAIGN_STEPS, CAMPAIGN_TICK, CampaignDraft, CampaignSegmentsHandler,
    CampaignService, CampaignStepsHandler, CampaignTickHandler, RenderedEmail, RunReport, WallClock,
};
pub use crm::{
    CRM_POLL, CRM_POLL_DUE, CRM_PUSH, ConnectionDraft, CrmDispatcher, CrmOptions, CrmPollDueHandler,
    CrmPollHandler, CrmPushHandler, CrmService, MAX_WEBHOOK_BODY, PushPreview, SyncSelection,
};
pub use enrichment::{
    ENRICH_LEADS, EnrichJob, EnrichLeadsHandler, EnrichProgress, EnrichmentService, JobState, MAX_ENRICH_JOB,
    MAX_WATERFALL, ProviderStatus, ProviderUpdate, UsageStatus, waterfalls,
};
pub use erasure::{ErasureService, MAX_ERASURE_PAGE};
pub use events::EventService;
pub use exports::{Chunk, Export, ExportMetrics, ExportService, Extras, Format};
pub use history::History;
pub use imports::{
    IMPORT_LEADS, ImportLeadsHandler, ImportService, LocalImportError, MAX_ERROR_PAGE, MAX_IMPORT_PAGE,
    UPLOAD_CHUNK,
};
pub use jobs::{JobService, MAX_DEAD_PAGE, MAX_JOB_IDS};
pub use leads::{FILTERED_COUNT_CAP, LeadPage, LeadService, MAX_UPSERT, TotalCount};
pub use retention::{
    MAX_RUN_PAGE, PolicyDraft, RETENTION_RUN, RETENTION_SCHEDULE, RetentionRunHandler,
    RetentionScheduleHandler, RetentionService,
};
pub use webhooks::{MAX_DELIVERY_PAGE, MAX_WEBHOOKS, WebhookService, WebhookUpdate};
pub use workspaces::WorkspaceService;

/// The enrichment and import vocabulary the API speaks, named here so that callers above the
/// services depend on them only.
pub use crate::bulk::import::pipeline::ImportRequest;
pub use crate::bulk::import::{Field as ImportField, Format as ImportFormat, OnDuplicate};
pub use crate::enrich::controls::CircuitState;
pub use crate::enrich::{EnrichError, Ledger, PlannedGroup, Resolution, Spend};

use crate::domain::{
    ApiKeyId, FieldError, FieldErrorCode, RateLimit, Role, Scope, Scopes, ValidationErrors, WorkspaceId,
};
use crate::store::{Store, StoreError};

/// Who is calling: the verified subject, its workspace and role, and for an API key what the
/// key grants.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Actor {
    pub subject: String,
    pub workspace_id: WorkspaceId,
    pub role: Role,
    /// `Some` for an API key, whose scopes narrow what its role allows; `None` for a token,
    /// which may do all its role allows.
    pub key: Option<KeyGrant>,
}

/// What an API key adds to its role.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeyGrant {
    pub id: ApiKeyId,
    pub scopes: Scopes,
    /// The key's own request rate, when it has one.
    pub rate_limit: Option<RateLimit>,
}

impl Actor {
    /// Whether the caller's scopes include `scope` (a token's always do).
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.key.as_ref().is_none_or(|k| k.scopes.contains(scope))
    }

    /// Fails with `Forbidden`, naming the scope, unless the caller holds `scope`.
    pub fn require_scope(&self, scope: Scope) -> Result<(), ServiceError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(format!(
                "this API key lacks the {} scope",
                scope.api_name()
            )))
        }
    }

    /// Fails with `Forbidden` unless the caller is an admin of its workspace (a key also needs
    /// the ADMIN scope).
    pub fn require_admin(&self) -> Result<(), ServiceError> {
        if self.role != Role::Admin {
            return Err(ServiceError::Forbidden(format!(
                "only admins may change workspace settings; the {} role cannot",
                self.role.as_str()
            )));
        }
        self.require_scope(Scope::Admin)
    }

    /// Fails with `Forbidden` unless the caller may read leads (every role may; a key needs
    /// READ_LEADS).
    pub fn require_lead_reader(&self) -> Result<(), ServiceError> {
        self.require_scope(Scope::ReadLeads)
    }

    /// Fails with `Forbidden` unless the role may change leads (and a key holds WRITE_LEADS).
    pub fn require_lead_writer(&self) -> Result<(), ServiceError> {
        if !self.role.can_write_leads() {
            return Err(ServiceError::Forbidden(format!(
                "the {} role cannot change leads",
                self.role.as_str()
            )));
        }
        self.require_scope(Scope::WriteLeads)
    }

    /// Fails with `Forbidden` unless the caller may import leads: a lead writer (a key also
    /// needs IMPORT_EXPORT).
    pub fn require_importer(&self) -> Result<(), ServiceError> {
        self.require_lead_writer()?;
        self.require_scope(Scope::ImportExport)
    }

    /// The scopes this caller may act in: those it holds (a token holds all) that its role
    /// allows — `ADMIN` for admins only, `WRITE_LEADS` for roles that write leads,
    /// `IMPORT_EXPORT` for roles that import or export.
    pub fn scopes(&self) -> Vec<Scope> {
        Scope::ALL
            .into_iter()
            .filter(|scope| self.has_scope(*scope))
            .filter(|scope| match scope {
                Scope::Admin => self.role == Role::Admin,
                Scope::WriteLeads => self.role.can_write_leads(),
                Scope::ImportExport => self.role.can_write_leads() || self.role.can_export(),
                Scope::ReadLeads | Scope::Subscribe => true,
            })
            .collect()
    }

    /// Whether `require_lead_writer` passes.
    pub fn can_write_leads(&self) -> bool {
        self.require_lead_writer().is_ok()
    }

    /// The name of the caller's own rate limit: `key` for an API key, `token` for a JWT.
    pub fn limit_kind(&self) -> &'static str {
        if self.key.is_some() { "key" } else { "token" }
    }

    /// What rate limits count this caller's requests under: `key:<id>` for an API key,
    /// `token:<workspace>:<subject>` for a token.
    pub fn limit_key(&self) -> String {
        match &self.key {
            Some(key) => format!("key:{}", key.id),
            None => format!("token:{}:{}", self.workspace_id, self.subject),
        }
    }

    /// The caller's own request rate (an API key's `rateLimit`), instead of the workspace's.
    pub fn own_rate_limit(&self) -> Option<RateLimit> {
        self.key.as_ref().and_then(|k| k.rate_limit)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Input the caller can fix: validation failures and conflicts, per field.
    #[error("invalid input: {0}")]
    Invalid(ValidationErrors),
    /// The input is refused as a whole for a reason no field edit fixes (e.g. an email that
    /// was erased on request); the message says why.
    #[error("{0}")]
    Refused(&'static str),
    /// A failure the caller cannot fix; the cause is logged, not shown.
    #[error("internal error")]
    Internal(#[source] StoreError),
}

impl ServiceError {
    fn invalid(field: &str, code: FieldErrorCode, message: impl Into<String>) -> Self {
        ServiceError::Invalid(ValidationErrors(vec![FieldError::new(field, code, message)]))
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { field } => ServiceError::invalid(
                field,
                FieldErrorCode::Taken,
                format!("another record already has this {field}"),
            ),
            StoreError::VersionMismatch => ServiceError::invalid(
                "expectedVersion",
                FieldErrorCode::StaleVersion,
                "the lead was changed since you read it; reload and retry",
            ),
            StoreError::NotFound => ServiceError::NotFound("record"),
            other => ServiceError::Internal(other),
        }
    }
}

/// Everything the transports need, cheap to clone.
#[derive(Clone, Debug)]
pub struct Services {
    pub store: Store,
    pub leads: LeadService,
    pub workspaces: WorkspaceService,
    pub enrichment: EnrichmentService,
    pub events: EventService,
    pub webhooks: WebhookService,
    pub api_keys: ApiKeyService,
    pub crm: CrmService,
    pub campaigns: CampaignService,
    pub jobs: JobService,
    pub exports: ExportService,
    pub imports: ImportService,
    pub retention: RetentionService,
    pub erasure: ErasureService,
    /// The Redis instances share, when one is configured (`cluster`).
    pub redis: Option<crate::cluster::Redis>,
    /// The last hour of each workspace's traffic on this server (`metricsHistory`).
    pub history: History,
}

impl Services {
    /// `bus` must run on `store`; `enricher` should publish its events to it; `sealer` seals
    /// webhook secrets (none without a master key).
    pub fn new(
        store: Store,
        enricher: crate::enrich::Enricher,
        bus: crate::events::Bus,
        sealer: Option<crate::crypto::KeySealer>,
    ) -> Self {
        let queue = crate::jobs::Queue::new(store.clone());
        let leads = LeadService::new(store.clone(), bus.clone());
        let crm = CrmService::new(
            store.clone(),
            sealer.clone(),
            queue.clone(),
            leads.clone(),
            bus.clone(),
        );
        let history = History::default();
        let enrichment =
            EnrichmentService::new(store.clone(), enricher.clone(), queue.clone(), history.clone());
        Self {
            campaigns: CampaignService::new(
                store.clone(),
                queue.clone(),
                bus.clone(),
                leads.clone(),
                crm.clone(),
                enrichment.clone(),
            ),
            crm,
            webhooks: WebhookService::new(store.clone(), sealer, bus.clone()),
            api_keys: ApiKeyService::new(store.clone()),
            leads,
            retention: RetentionService::new(store.clone(), queue.clone()),
            erasure: ErasureService::new(store.clone(), enricher, bus.clone()),
            redis: None,
            history,
            workspaces: WorkspaceService::new(store.clone()),
            enrichment,
            imports: ImportService::new(store.clone(), bus.clone(), queue.clone()),
            events: EventService::new(bus),
            jobs: JobService::new(queue),
            exports: ExportService::new(store.clone()),
            store,
        }
    }
}

impl Services {
    /// The last `minutes` minutes (1 to 60) of the caller's workspace on this server, oldest
    /// first, the job queue sampled now (admins only).
    pub async fn metrics_history(
        &self,
        actor: &Actor,
        minutes: usize,
    ) -> Result<Vec<history::MinuteStats>, ServiceError> {
        actor.require_admin()?;
        if !(1..=history::MINUTES).contains(&minutes) {
            return Err(ServiceError::invalid(
                "minutes",
                FieldErrorCode::Invalid,
                format!("minutes must be 1 to {}", history::MINUTES),
            ));
        }
        self.history
            .watch(&self.store, actor.workspace_id)
            .await
            .map_err(ServiceError::Internal)?;
        Ok(self.history.read(actor.workspace_id, minutes))
    }

    /// Checks that the database answers, for readiness probes.
    pub async fn ping(&self) -> Result<(), ServiceError> {
        self.store.ping().await.map_err(ServiceError::Internal)
    }

    /// The families of everything below the edge, in the Prometheus text format: the job queue,
    /// exports, enrichment (circuit states sampled now), CRM syncs, campaigns, the database
    /// pools (sampled now) and Redis. `serve` adds its HTTP and GraphQL families; `worker`
    /// serves these alone (`metrics_listen`).
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        out.push_str(&self.jobs.queue().metrics().render_families());
        out.push_str(&self.exports.metrics().render_families());
        out.push_str(&self.enrichment.enricher().render_metrics());
        out.push_str(&self.crm.metrics().render());
        out.push_str(&self.campaigns.metrics().render());
        out.push_str(&self.store.render_pool_metrics());
        if let Some(redis) = &self.redis {
            out.push_str(&redis.render_metrics());
        }
        out
    }
}
