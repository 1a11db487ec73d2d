//! Enrichment use cases: resolving groups for leads the caller may see, provider settings
//! (admins only), usage and circuit status, and bulk refresh jobs.
//!
//! Keys enter here in clear exactly once, are sealed at once, and leave only as their last
//! four characters.

use super::{Actor, ServiceError};
use crate::domain::{
    EnrichmentSettings, FieldErrorCode, Group, Lead, LeadId, Policy, ProviderConfig, ProviderKind, Timestamp,
    UsagePeriod, now,
};
use crate::enrich::controls::CircuitState;
use crate::enrich::providers::sandbox::SandboxOptions;
use crate::enrich::{Enricher, Ledger, Resolution};
use crate::store::{EnrichmentRepo, LeadRepo, Store};
use secrecy::{ExposeSecret, SecretString};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Most leads one `enrichLeads` job takes.
pub const MAX_ENRICH_JOB: usize = 10_000;
/// Most providers in one waterfall.
pub const MAX_WATERFALL: usize = 5;
/// Finished jobs remembered for `enrichmentJob`.
const KEPT_JOBS: usize = 1_000;

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

/// Progress of a bulk refresh.
#[derive(Clone, Debug)]
pub struct EnrichJob {
    pub id: Uuid,
    pub workspace_id: crate::domain::WorkspaceId,
    pub groups: Vec<Group>,
    pub policy: Policy,
    pub state: JobState,
    pub total: u64,
    pub processed: u64,
    pub filled: u64,
    pub failed: u64,
    pub credits: u64,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

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
    jobs: Arc<Mutex<JobTable>>,
}

#[derive(Debug, Default)]
struct JobTable {
    jobs: HashMap<Uuid, EnrichJob>,
    order: VecDeque<Uuid>,
}

impl EnrichmentService {
    pub fn new(store: Store, enricher: Enricher) -> Self {
        Self {
            store,
            enricher,
            jobs: Arc::new(Mutex::new(JobTable::default())),
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
            .into_iter()
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

    /// Starts refreshing `groups` of the given leads in the background; returns the job.
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
        let job = EnrichJob {
            id: Uuid::now_v7(),
            workspace_id: actor.workspace_id,
            groups: groups.clone(),
            policy,
            state: JobState::Running,
            total: unique.len() as u64,
            processed: 0,
            filled: 0,
            failed: 0,
            credits: 0,
            created_at: now(),
            finished_at: None,
        };
        self.remember(job.clone());
        let this = self.clone();
        let actor = actor.clone();
        let id = job.id;
        tokio::spawn(async move {
            let state = match this.run_job(&actor, id, &unique, &groups, policy).await {
                Ok(()) => JobState::Succeeded,
                Err(e) => {
                    tracing::error!(error = %e, job = %id, "enrichment job failed");
                    JobState::Failed
                }
            };
            this.update(id, |j| {
                j.state = state;
                j.finished_at = Some(now());
            });
        });
        Ok(job)
    }

    async fn run_job(
        &self,
        actor: &Actor,
        id: Uuid,
        ids: &[LeadId],
        groups: &[Group],
        policy: Policy,
    ) -> Result<(), ServiceError> {
        for chunk in ids.chunks(100) {
            let leads: Vec<Arc<Lead>> = self
                .store
                .leads_by_ids(actor.workspace_id, chunk)
                .await?
                .into_iter()
                .map(Arc::new)
                .collect();
            let ledger = Arc::new(Ledger::new(None));
            let mut filled = 0;
            let mut failed = 0;
            for &group in groups {
                let results = self
                    .resolve(actor, &leads, group, Some(policy), &[], &ledger)
                    .await;
                for r in results.values() {
                    if r.record.as_ref().is_some_and(|rec| !rec.is_miss()) {
                        filled += 1;
                    }
                    if r.error.is_some() {
                        failed += 1;
                    }
                }
            }
            let missing = (chunk.len() - leads.len()) as u64;
            let credits = ledger.spend().credits_spent;
            self.update(id, |j| {
                j.processed += chunk.len() as u64;
                j.filled += filled;
                j.failed += failed + missing * groups.len() as u64;
                j.credits += credits;
            });
        }
        Ok(())
    }

    /// A job of the caller's workspace.
    pub fn job(&self, actor: &Actor, id: Uuid) -> Option<EnrichJob> {
        let table = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        table
            .jobs
            .get(&id)
            .filter(|j| j.workspace_id == actor.workspace_id)
            .cloned()
    }

    fn remember(&self, job: EnrichJob) {
        let mut table = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        while table.order.len() >= KEPT_JOBS {
            let Some(oldest) = table.order.pop_front() else {
                break;
            };
            table.jobs.remove(&oldest);
        }
        table.order.push_back(job.id);
        table.jobs.insert(job.id, job);
    }

    fn update(&self, id: Uuid, change: impl FnOnce(&mut EnrichJob)) {
        let mut table = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(job) = table.jobs.get_mut(&id) {
            change(job);
        }
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
