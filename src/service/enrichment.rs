//! Enrichment use cases: resolving groups for leads the caller may see, provider settings
//! (admins only), usage and circuit status, and bulk refreshes (`enrich.leads` jobs on the
//! queue, whose handler is `EnrichLeadsHandler`).
//!
//! Keys enter here in clear exactly once, are sealed at once, and leave only as their last
//! four characters.

use super::{Actor, ServiceError};
use crate::domain::{
    EnrichmentSettings, FieldErrorCode, Group, Job, JobId, JobKind, JobScope, JobState as StoredState, Lead,
    LeadId, NewJob, Policy, ProviderConfig, ProviderKind, RetryPolicy, Timestamp, UsagePeriod, now,
};
use crate::enrich::controls::CircuitState;
use crate::enrich::providers::sandbox::SandboxOptions;
use crate::enrich::{Enricher, Ledger, Resolution};
use crate::jobs::{Handler, JobContext, JobError, Queue};
use crate::store::{Store, StoreError};
use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use uuid::Uuid;

/// Most leads one `enrichLeads` job takes.
pub const MAX_ENRICH_JOB: usize = 10_000;
/// Most providers in one waterfall.
pub const MAX_WATERFALL: usize = 5;

/// A change to one provider's settings; `None` leaves a setting as it is.
#[derive(Debug, Default)]
pub struct ProviderUpdate {
    pub provider: Option<ProviderKind>,
    pub enabled: Option<bool>,
    /// `Some(None)` removes the key.
    pub api_key: Option<Option<SecretString>>,
    /// `Some(None)` removes the cap.
    pub daily_credit_cap: Option<Option<i64>>,
    pub monthly_credit_cap: Option<Option<i64>>,
    pub rate_per_second: Option<Option<i64>>,
    pub timeout_ms: Option<Option<i64>>,
    pub options: Option<serde_json::Value>,
}

/// A provider as admins see it.
#[derive(Clone, Debug)]
pub struct ProviderStatus {
    pub config: ProviderConfig,
    pub groups: Vec<Group>,
    /// Largest batch per group (1 = no bulk endpoint).
    pub batch_sizes: Vec<(Group, usize)>,
    pub circuit: CircuitState,
    pub usage: Vec<UsageStatus>,
}

/// Usage of one capped period.
#[derive(Clone, Debug)]
pub struct UsageStatus {
    pub period: UsagePeriod,
    pub used: u64,
    pub limit: u64,
    pub resets_at: Timestamp,
}

/// A bulk refresh: an `enrich.leads` job seen through its payload and progress.
#[derive(Clone, Debug)]
pub struct EnrichJob {
    pub id: JobId,
    pub workspace_id: crate::domain::WorkspaceId,
    pub groups: Vec<Group>,
    pub policy: Policy,
    pub state: JobState,
    /// Leads in the job.
    pub total: u64,
    pub progress: EnrichProgress,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

impl EnrichJob {
    fn from_job(job: &Job) -> Option<Self> {
        let payload: EnrichPayload = serde_json::from_value(job.payload.clone()).ok()?;
        let (ids, groups, policy) = payload.parse().ok()?;
        let progress = job
            .progress
            .clone()
            .and_then(|p| serde_json::from_value(p).ok())
            .unwrap_or_default();
        Some(Self {
            id: job.id,
            workspace_id: job.workspace_id?,
            groups,
            policy,
            state: match job.state {
                StoredState::Queued | StoredState::Running => JobState::Running,
                StoredState::Succeeded => JobState::Succeeded,
                StoredState::Dead => JobState::Failed,
            },
            total: ids.len() as u64,
            progress,
            created_at: job.created_at,
            finished_at: job.finished_at,
        })
    }
}

/// Counts an `enrich.leads` job reports as it goes.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct EnrichProgress {
    pub processed: u64,
    /// (lead, group) pairs that have values now.
    pub filled: u64,
    /// (lead, group) pairs that could not be filled.
    pub failed: u64,
    pub credits: u64,
}

/// A bulk refresh's state as clients see it: queued and running jobs are both `Running`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
}

#[derive(Clone, Debug)]
pub struct EnrichmentService {
    store: Store,
    enricher: Enricher,
    queue: Queue,
    history: super::History,
}

impl EnrichmentService {
    /// `history` counts the credits bulk refreshes spend.
    pub fn new(store: Store, enricher: Enricher, queue: Queue, history: super::History) -> Self {
        Self {
            store,
            enricher,
            queue,
            history,
        }
    }

    pub fn enricher(&self) -> &Enricher {
        &self.enricher
    }

    /// Resolves `group` for leads the caller has already loaded from its own workspace.
    pub async fn resolve(
        &self,
        actor: &Actor,
        leads: &[Arc<Lead>],
        group: Group,
        policy: Option<Policy>,
        wanted: &[&'static str],
        ledger: &Arc<Ledger>,
    ) -> HashMap<LeadId, Resolution> {
        let own: Vec<Arc<Lead>> = leads
            .iter()
            .filter(|l| l.workspace_id == actor.workspace_id)
            .cloned()
            .collect();
        self.enricher
            .resolve(actor.workspace_id, &own, group, policy, wanted, ledger)
            .await
    }

    /// Whatever is known about each lead's groups, without calling anyone (for provenance).
    /// Reading it is free and not part of any request's spend.
    pub async fn known(
        &self,
        actor: &Actor,
        leads: &[Arc<Lead>],
    ) -> HashMap<LeadId, Vec<Arc<crate::domain::EnrichmentRecord>>> {
        let silent = Arc::new(Ledger::new(Some(0)));
        let mut known: HashMap<LeadId, Vec<Arc<crate::domain::EnrichmentRecord>>> = HashMap::new();
        for group in Group::ALL {
            let results = self
                .resolve(actor, leads, group, Some(Policy::CacheOnly), &[], &silent)
                .await;
            for (lead, r) in results {
                if let Some(record) = r.record {
                    known.entry(lead).or_default().push(record);
                }
            }
        }
        known
    }

    pub async fn settings(&self, actor: &Actor) -> Result<EnrichmentSettings, ServiceError> {
        let setup = self.enricher.setup(actor.workspace_id).await?;
        Ok(setup.settings.clone())
    }

    pub async fn set_default_policy(
        &self,
        actor: &Actor,
        policy: Policy,
    ) -> Result<EnrichmentSettings, ServiceError> {
        actor.require_admin()?;
        let mut settings = self.fresh_settings(actor).await?;
        settings.default_policy = policy;
        self.save_settings(actor, &settings).await?;
        Ok(settings)
    }

    /// Replaces the waterfall of `group`.
    pub async fn set_waterfall(
        &self,
        actor: &Actor,
        group: Group,
        providers: Vec<ProviderKind>,
    ) -> Result<EnrichmentSettings, ServiceError> {
        actor.require_admin()?;
        if providers.len() > MAX_WATERFALL {
            return Err(ServiceError::invalid(
                "providers",
                FieldErrorCode::TooLong,
                format!("a waterfall has at most {MAX_WATERFALL} providers"),
            ));
        }
        for (i, p) in providers.iter().enumerate() {
            if providers[..i].contains(p) {
                return Err(ServiceError::invalid(
                    "providers",
                    FieldErrorCode::Invalid,
                    format!("{p} is listed twice"),
                ));
            }
            let offers = self
                .enricher
                .provider(*p)
                .is_some_and(|a| a.groups().contains(&group));
            if !offers {
                return Err(ServiceError::invalid(
                    "providers",
                    FieldErrorCode::Invalid,
                    format!("{p} does not offer {group}"),
                ));
            }
        }
        let mut settings = self.fresh_settings(actor).await?;
        settings.waterfalls.insert(group, providers);
        self.save_settings(actor, &settings).await?;
        Ok(settings)
    }

    async fn fresh_settings(&self, actor: &Actor) -> Result<EnrichmentSettings, ServiceError> {
        Ok(self
            .store
            .enrichment_settings(actor.workspace_id)
            .await?
            .unwrap_or_default())
    }

    async fn save_settings(&self, actor: &Actor, settings: &EnrichmentSettings) -> Result<(), ServiceError> {
        self.store
            .save_enrichment_settings(actor.workspace_id, settings, now())
            .await?;
        self.enricher.settings_changed(actor.workspace_id);
        Ok(())
    }

    /// Applies `update` to one provider's settings (admins only).
    pub async fn configure_provider(
        &self,
        actor: &Actor,
        update: ProviderUpdate,
    ) -> Result<ProviderStatus, ServiceError> {
        actor.require_admin()?;
        let Some(kind) = update.provider else {
            return Err(ServiceError::invalid(
                "provider",
                FieldErrorCode::Required,
                "name the provider",
            ));
        };
        let mut configs = self.store.provider_configs(actor.workspace_id).await?;
        let mut config = configs
            .iter()
            .position(|c| c.provider == kind)
            .map(|i| configs.swap_remove(i))
            .unwrap_or_else(|| ProviderConfig::new(kind, now()));
        if let Some(enabled) = update.enabled {
            config.enabled = enabled;
            if enabled {
                config.disabled_reason = None;
            }
        }
        if let Some(key) = update.api_key {
            config.key = match key {
                None => None,
                Some(key) => Some(self.seal(actor, kind, &key)?),
            };
            // a new key is the usual cure for a rejected one
            if config.key.is_some() && config.disabled_reason.is_some() && update.enabled.is_none() {
                config.enabled = true;
                config.disabled_reason = None;
            }
        }
        if let Some(cap) = update.daily_credit_cap {
            config.daily_credit_cap = check_limit("dailyCreditCap", cap, 0, i64::MAX)?.map(|v| v as u64);
        }
        if let Some(cap) = update.monthly_credit_cap {
            config.monthly_credit_cap = check_limit("monthlyCreditCap", cap, 0, i64::MAX)?.map(|v| v as u64);
        }
        if let Some(rate) = update.rate_per_second {
            config.rate_per_second = check_limit("ratePerSecond", rate, 1, 10_000)?.map(|v| v as u32);
        }
        if let Some(timeout) = update.timeout_ms {
            config.timeout_ms = check_limit("timeoutMs", timeout, 50, 60_000)?.map(|v| v as u32);
        }
        if let Some(options) = update.options {
            config.options = check_options(kind, options)?;
        }
        config.updated_at = now();
        self.store
            .save_provider_config(actor.workspace_id, &config)
            .await?;
        self.enricher.settings_changed(actor.workspace_id);
        let usage = self.store.provider_usage(actor.workspace_id).await?;
        Ok(self.status(actor, config, &usage))
    }

    fn seal(
        &self,
        actor: &Actor,
        kind: ProviderKind,
        key: &SecretString,
    ) -> Result<crate::domain::SealedKey, ServiceError> {
        let raw = key.expose_secret();
        if !kind.needs_key() {
            return Err(ServiceError::invalid(
                "apiKey",
                FieldErrorCode::Invalid,
                format!("{kind} takes no API key"),
            ));
        }
        if raw.trim().is_empty() {
            return Err(ServiceError::invalid(
                "apiKey",
                FieldErrorCode::Required,
                "the API key is blank",
            ));
        }
        if raw.len() > 512 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ServiceError::invalid(
                "apiKey",
                FieldErrorCode::Invalid,
                "an API key is at most 512 characters without spaces",
            ));
        }
        let Some(sealer) = self.enricher.sealer() else {
            return Err(ServiceError::invalid(
                "apiKey",
                FieldErrorCode::Invalid,
                "keys cannot be stored: the server has no master key (LEADGATE_MASTER_KEY)",
            ));
        };
        Ok(sealer.seal(actor.workspace_id, kind, key))
    }

    /// Every provider with its settings, usage and circuit state.
    pub async fn providers(&self, actor: &Actor) -> Result<Vec<ProviderStatus>, ServiceError> {
        let configs: HashMap<ProviderKind, ProviderConfig> = self
            .store
            .provider_configs(actor.workspace_id)
            .await?
            .into_iter()
            .map(|c| (c.provider, c))
            .collect();
        let usage = self.store.provider_usage(actor.workspace_id).await?;
        Ok(ProviderKind::ALL
            .iter()
            .copied()
            .filter(|k| self.enricher.provider(*k).is_some())
            .map(|k| {
                let config = configs
                    .get(&k)
                    .cloned()
                    .unwrap_or_else(|| ProviderConfig::new(k, now()));
                self.status(actor, config, &usage)
            })
            .collect())
    }

    fn status(
        &self,
        actor: &Actor,
        config: ProviderConfig,
        usage: &[crate::domain::Usage],
    ) -> ProviderStatus {
        let kind = config.provider;
        let adapter = self.enricher.provider(kind);
        let groups: Vec<Group> = adapter.map(|a| a.groups().to_vec()).unwrap_or_default();
        let at = now();
        let usage = config
            .limits()
            .into_iter()
            .map(|(period, limit)| {
                let used = usage
                    .iter()
                    .find(|u| u.provider == kind && u.period == period && u.period_start == period.start(at))
                    .map_or(0, |u| u.used);
                UsageStatus {
                    period,
                    used,
                    limit,
                    resets_at: period.end(at),
                }
            })
            .collect();
        ProviderStatus {
            batch_sizes: groups
                .iter()
                .map(|g| (*g, adapter.map_or(1, |a| a.batch_size(*g))))
                .collect(),
            groups,
            circuit: self.enricher.circuit(actor.workspace_id, kind),
            usage,
            config,
        }
    }

    /// Queues a refresh of `groups` of the given leads (job kind `enrich.leads`); returns the
    /// job as queued.
    pub async fn enrich_leads(
        &self,
        actor: &Actor,
        ids: Vec<LeadId>,
        groups: Vec<Group>,
        policy: Policy,
    ) -> Result<EnrichJob, ServiceError> {
        actor.require_lead_writer()?;
        if ids.is_empty() {
            return Err(ServiceError::invalid(
                "ids",
                FieldErrorCode::Required,
                "pass at least one lead id",
            ));
        }
        if ids.len() > MAX_ENRICH_JOB {
            return Err(ServiceError::invalid(
                "ids",
                FieldErrorCode::TooLong,
                format!("one job takes at most {MAX_ENRICH_JOB} leads"),
            ));
        }
        let groups: Vec<Group> = if groups.is_empty() {
            Group::ALL.to_vec()
        } else {
            groups
        };
        if policy == Policy::CacheOnly {
            return Err(ServiceError::invalid(
                "policy",
                FieldErrorCode::Invalid,
                "CACHE_ONLY would not fetch anything; use FETCH_IF_MISSING or REFRESH",
            ));
        }
        let mut unique = Vec::with_capacity(ids.len());
        for id in ids {
            if !unique.contains(&id) {
                unique.push(id);
            }
        }
        let payload = EnrichPayload {
            ids: unique.iter().map(LeadId::as_uuid).collect(),
            groups: groups.iter().map(|g| g.as_str().to_owned()).collect(),
            policy: policy.as_str().to_owned(),
        };
        let payload = serde_json::to_value(&payload)
            .map_err(|e| ServiceError::Internal(StoreError::Database(Box::new(e))))?;
        let enqueued = self
            .queue
            .enqueue(NewJob::new(ENRICH_LEADS, payload).in_workspace(actor.workspace_id))
            .await?;
        Ok(EnrichJob {
            id: enqueued.id,
            workspace_id: actor.workspace_id,
            groups,
            policy,
            state: JobState::Running,
            total: unique.len() as u64,
            progress: EnrichProgress::default(),
            created_at: now(),
            finished_at: None,
        })
    }

    /// Runs one attempt of an `enrich.leads` job, reporting progress after each chunk.
    async fn run_job(&self, job: &Job, ctx: &JobContext) -> Result<(), JobError> {
        let ws = job
            .workspace_id
            .ok_or_else(|| JobError::Permanent("an enrich.leads job needs a workspace".into()))?;
        let payload: EnrichPayload = serde_json::from_value(job.payload.clone())
            .map_err(|e| JobError::Permanent(format!("bad enrich.leads payload: {e}")))?;
        let (ids, groups, policy) = payload.parse().map_err(JobError::Permanent)?;
        let actor = Actor {
            subject: format!("job:{}", job.id),
            workspace_id: ws,
            role: crate::domain::Role::Member,
            key: None,
        };
        let mut progress = EnrichProgress::default();
        for chunk in ids.chunks(100) {
            if ctx.lease_lost() {
                return Err(JobError::Transient("lease lost".into()));
            }
            let leads: Vec<Arc<Lead>> = self
                .store
                .leads_by_ids(ws, chunk)
                .await
                .map_err(|e| JobError::Transient(e.to_string()))?
                .into_iter()
                .map(Arc::new)
                .collect();
            let ledger = Arc::new(Ledger::new(None));
            for &group in &groups {
                let results = self
                    .resolve(&actor, &leads, group, Some(policy), &[], &ledger)
                    .await;
                for r in results.values() {
                    if r.record.as_ref().is_some_and(|rec| !rec.is_miss()) {
                        progress.filled += 1;
                    }
                    if r.error.is_some() {
                        progress.failed += 1;
                    }
                }
            }
            let missing = (chunk.len() - leads.len()) as u64;
            progress.processed += chunk.len() as u64;
            progress.failed += missing * groups.len() as u64;
            let credits = ledger.spend().credits_spent;
            progress.credits += credits;
            self.history.credits(actor.workspace_id, credits);
            let report = serde_json::to_value(progress).map_err(|e| JobError::Permanent(e.to_string()))?;
            ctx.progress(report).await?;
        }
        Ok(())
    }

    /// An `enrich.leads` job of the caller's workspace, read from the queue.
    pub async fn job(&self, actor: &Actor, id: JobId) -> Result<Option<EnrichJob>, ServiceError> {
        let job = self
            .store
            .job(JobScope::Workspace(actor.workspace_id), id)
            .await?;
        Ok(job
            .filter(|j| j.kind == ENRICH_LEADS)
            .and_then(|j| EnrichJob::from_job(&j)))
    }
}

/// The job kind of `enrichLeads`.
pub const ENRICH_LEADS: JobKind = JobKind::new("enrich.leads");

/// What an `enrich.leads` job stores as its payload.
#[derive(Serialize, Deserialize)]
struct EnrichPayload {
    ids: Vec<Uuid>,
    groups: Vec<String>,
    policy: String,
}

impl EnrichPayload {
    fn parse(&self) -> Result<(Vec<LeadId>, Vec<Group>, Policy), String> {
        let groups = self
            .groups
            .iter()
            .map(|g| Group::parse(g).ok_or_else(|| format!("unknown group {g}")))
            .collect::<Result<_, _>>()?;
        let policy = Policy::parse(&self.policy).ok_or_else(|| format!("unknown policy {}", self.policy))?;
        Ok((
            self.ids.iter().copied().map(LeadId::from_uuid).collect(),
            groups,
            policy,
        ))
    }
}

/// Runs `enrich.leads` jobs.
pub struct EnrichLeadsHandler(pub EnrichmentService);

impl Handler for EnrichLeadsHandler {
    fn kind(&self) -> JobKind {
        ENRICH_LEADS
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        }
    }

    fn run<'a>(&'a self, job: &'a Job, ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(self.0.run_job(job, ctx))
    }
}

fn check_limit(field: &str, value: Option<i64>, min: i64, max: i64) -> Result<Option<i64>, ServiceError> {
    match value {
        Some(v) if v < min || v > max => Err(ServiceError::invalid(
            field,
            FieldErrorCode::Invalid,
            format!("must be between {min} and {max}, got {v}"),
        )),
        other => Ok(other),
    }
}

fn check_options(kind: ProviderKind, options: serde_json::Value) -> Result<serde_json::Value, ServiceError> {
    let empty = options.is_null() || options.as_object().is_some_and(|o| o.is_empty());
    match kind {
        ProviderKind::Sandbox => SandboxOptions::from_json(&options)
            .map(|_| options)
            .map_err(|e| ServiceError::invalid("options", FieldErrorCode::Invalid, e)),
        _ if empty => Ok(serde_json::Value::Null),
        _ => Err(ServiceError::invalid(
            "options",
            FieldErrorCode::Invalid,
            format!("{kind} takes no options"),
        )),
    }
}

/// Groups by name for display, in canonical order.
pub fn waterfalls(settings: &EnrichmentSettings) -> BTreeMap<Group, Vec<ProviderKind>> {
    Group::ALL
        .into_iter()
        .map(|g| (g, settings.waterfall(g).to_vec()))
        .collect()
}
