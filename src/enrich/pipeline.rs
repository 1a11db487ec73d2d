//! The resolution pipeline for one group of many leads: in-process cache (moka) → the cache
//! instances share in Redis (`shared`, one `MGET` for the page; with `redis_url` only) → stored
//! records that are still fresh → single-flight across concurrent requests (in process, then
//! across instances by a claim in Redis) → the workspace's waterfall, provider by provider,
//! with per-field merge and early stop.
//!
//! Why a second level and claims when records are stored in the database anyway: two
//! instances that miss the same lead at the same moment would both pay the provider. An
//! instance that finds the flight claimed by another polls Redis for the answer (every
//! `FOLLOW_POLL`) until it lands, the claim goes, or the claim's lifetime (the waterfall's
//! timeouts × tries, plus a margin) has passed — then it flies itself. Answers are written to
//! Redis before claims are released. Redis down or slow: the in-process path, as without it.
//!
//! Per provider the waterfall skips what cannot be called now (disabled, no key, circuit open,
//! no rate token, quota or budget spent) and moves on at once; otherwise it calls in batches of
//! the provider's bulk size with a timeout and bounded, jittered retries that honour
//! `Retry-After`. Credits are reserved before a call (request budget and store quotas) and the
//! unused part released after it, so nothing is paid for misses or failures. Results are
//! stored with their `lead.enriched` events in one transaction, then cached.

use super::controls::{Breaker, CircuitState, Clock, RateGate};
use super::ledger::{Ledger, PlannedStep};
use super::metrics::Metrics;
use super::provider::{Answer, CallContext, Provider, ProviderError};
use super::providers::sandbox::SandboxOptions;
use super::shared::Shared;
use crate::cluster::Redis;
use crate::crypto::KeySealer;
use crate::domain::{
    EnrichmentRecord, EnrichmentSettings, Event, Group, LEAD_ENRICHED, Lead, LeadId, NewEvent, Policy,
    ProviderConfig, ProviderKind, Source, Subject, UsagePeriod, WorkspaceId, now,
};
use crate::store::{Store, StoreError};
use futures_util::future::join_all;
use moka::sync::Cache;
use secrecy::{ExposeSecret, SecretString};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tracing::Instrument;

/// Tunables of the pipeline; `config::Settings` fills them.
#[derive(Clone, Debug)]
pub struct EnrichOptions {
    /// Per-call timeout unless a provider's config sets its own.
    pub call_timeout: Duration,
    /// Retries after a transient failure (so at most `1 + retries` calls).
    pub retries: u32,
    /// First backoff; doubled per retry, with jitter.
    pub retry_base: Duration,
    /// A `Retry-After` longer than this is not waited for: the waterfall moves on.
    pub max_retry_wait: Duration,
    /// How long found values stay fresh, per group.
    pub ttl: Duration,
    pub verification_ttl: Duration,
    /// How long "nobody knows" is remembered.
    pub miss_ttl: Duration,
    /// Consecutive failures that open a provider's circuit, and how long it stays open.
    pub breaker_threshold: u32,
    pub breaker_cool_down: Duration,
    /// Concurrent calls per provider when it has no bulk endpoint.
    pub concurrency: usize,
    /// Approximate bytes the in-process cache may hold (records are weighed by their size).
    pub cache_bytes: u64,
    /// How long a workspace's provider settings are reused before being read again (changes
    /// made through this instance apply at once).
    pub settings_ttl: Duration,
    /// What the rate gates read the time from.
    pub clock: Clock,
    /// The Redis instances share, for the second cache level and single flight across
    /// instances; `None` keeps both in this process.
    pub redis: Option<Redis>,
    /// Added to a flight's longest expected duration (each provider of the waterfall's
    /// timeout × (retries + 1)) to bound how long a claim holds and another instance waits.
    pub flight_margin: Duration,
}

impl Default for EnrichOptions {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(3),
            retries: 2,
            retry_base: Duration::from_millis(100),
            max_retry_wait: Duration::from_secs(2),
            ttl: Duration::from_secs(30 * 24 * 3600),
            verification_ttl: Duration::from_secs(7 * 24 * 3600),
            miss_ttl: Duration::from_secs(3 * 24 * 3600),
            breaker_threshold: 5,
            breaker_cool_down: Duration::from_secs(30),
            concurrency: 8,
            cache_bytes: 256 * 1024 * 1024,
            settings_ttl: Duration::from_secs(5),
            clock: Clock::system(),
            redis: None,
            flight_margin: Duration::from_secs(2),
        }
    }
}

/// Why a group could not be (fully) filled.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EnrichError {
    #[error("the request's credit budget is spent; raise maxCredits to fetch more")]
    BudgetExceeded,
    #[error("the credit quota of {} is exhausted", names(.0))]
    QuotaExceeded(Vec<ProviderKind>),
    #[error("no provider could answer: {}", reasons(.0))]
    ProviderUnavailable(Vec<(ProviderKind, String)>),
    #[error("internal error")]
    Internal,
}

fn names(ps: &[ProviderKind]) -> String {
    ps.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
}

fn reasons(rs: &[(ProviderKind, String)]) -> String {
    rs.iter()
        .map(|(p, r)| format!("{p}: {r}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The outcome for one (lead, group): what is known, and why it is incomplete if it is.
#[derive(Clone, Debug, Default)]
pub struct Resolution {
    pub record: Option<Arc<EnrichmentRecord>>,
    pub error: Option<EnrichError>,
}

type Key = (WorkspaceId, LeadId, Group);
type Waiter = watch::Receiver<Option<Resolution>>;
/// A key this request leads: its subject, what is known of it so far, and its followers.
type Leading = (
    Subject,
    Option<EnrichmentRecord>,
    watch::Sender<Option<Resolution>>,
);

/// How often an instance waiting for another's flight looks for its answer.
const FOLLOW_POLL: Duration = Duration::from_millis(20);

/// A workspace's enrichment settings and provider configs, as the pipeline uses them.
#[derive(Clone, Debug)]
pub struct WorkspaceSetup {
    pub settings: EnrichmentSettings,
    pub configs: HashMap<ProviderKind, ProviderConfig>,
}

impl WorkspaceSetup {
    /// The provider's config, or the defaults when the workspace never configured it.
    pub fn config(&self, kind: ProviderKind) -> ProviderConfig {
        self.configs
            .get(&kind)
            .cloned()
            .unwrap_or_else(|| ProviderConfig::new(kind, now()))
    }

    /// Providers of the group's waterfall that can be called at all (enabled, with a key when
    /// they need one).
    pub fn usable(&self, group: Group) -> Vec<ProviderKind> {
        self.settings
            .waterfall(group)
            .iter()
            .copied()
            .filter(|k| unusable_reason(&self.config(*k)).is_none())
            .collect()
    }
}

fn unusable_reason(c: &ProviderConfig) -> Option<&'static str> {
    if !c.enabled {
        Some("disabled")
    } else if c.provider.needs_key() && c.key.is_none() {
        Some("no_key")
    } else {
        None
    }
}

/// The pipeline. Cheap to clone; one per application.
#[derive(Clone)]
pub struct Enricher {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    providers: HashMap<ProviderKind, Arc<dyn Provider>>,
    http: reqwest::Client,
    sealer: Option<KeySealer>,
    options: EnrichOptions,
    metrics: Metrics,
    cache: Cache<Key, Arc<EnrichmentRecord>>,
    shared: Option<Shared>,
    setups: Cache<WorkspaceId, Arc<WorkspaceSetup>>,
    inflight: Mutex<HashMap<Key, Waiter>>,
    breakers: Mutex<HashMap<(WorkspaceId, ProviderKind), Arc<Breaker>>>,
    gates: Mutex<HashMap<(WorkspaceId, ProviderKind), Arc<RateGate>>>,
    permits: HashMap<ProviderKind, Arc<Semaphore>>,
    committed: EventSink,
}

/// Told of the `lead.enriched` events once they are committed, to pass them on to readers.
pub type EventSink = Arc<dyn Fn(Vec<Event>) + Send + Sync>;

/// Roughly how many bytes a cached record holds: its values, provenance and bookkeeping.
fn weight(record: &EnrichmentRecord) -> u32 {
    let values: usize = record
        .fields
        .0
        .iter()
        .map(|(k, v)| k.len() + 48 + v.as_str().map_or(16, str::len))
        .sum();
    let sources: usize = record
        .sources
        .iter()
        .map(|s| 96 + s.provider.len() + s.fields.iter().map(|f| f.len() + 24).sum::<usize>())
        .sum();
    let tried: usize = record.tried.iter().map(|t| t.len() + 24).sum();
    u32::try_from(256 + values + sources + tried).unwrap_or(u32::MAX)
}

/// Expires cached records when their own `expires_at` passes.
struct RecordExpiry;

impl moka::Expiry<Key, Arc<EnrichmentRecord>> for RecordExpiry {
    fn expire_after_create(&self, _: &Key, value: &Arc<EnrichmentRecord>, _: Instant) -> Option<Duration> {
        Some((value.expires_at - now()).to_std().unwrap_or_default())
    }
    fn expire_after_update(
        &self,
        _: &Key,
        value: &Arc<EnrichmentRecord>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some((value.expires_at - now()).to_std().unwrap_or_default())
    }
}

impl std::fmt::Debug for Enricher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enricher").finish_non_exhaustive()
    }
}

/// One lead's progress through the waterfall.
struct Work {
    subject: Subject,
    record: EnrichmentRecord,
    /// Whether a provider answered (hit or miss) in this run, so the record must be saved.
    changed: bool,
    /// Providers passed over or failed, and why.
    problems: Vec<Problem>,
    /// Cut off by the request budget: no further provider is asked.
    out_of_budget: bool,
}

#[derive(Clone, Debug)]
enum Problem {
    Quota(ProviderKind),
    Unavailable(ProviderKind, String),
}

impl Enricher {
    pub fn new(
        store: Store,
        providers: Vec<Arc<dyn Provider>>,
        sealer: Option<KeySealer>,
        options: EnrichOptions,
        metrics: Metrics,
        committed: EventSink,
    ) -> Self {
        let permits = providers
            .iter()
            .map(|p| (p.kind(), Arc::new(Semaphore::new(options.concurrency.max(1)))))
            .collect();
        let cache = Cache::builder()
            .max_capacity(options.cache_bytes)
            .weigher(|_key, record: &Arc<EnrichmentRecord>| weight(record))
            .expire_after(RecordExpiry)
            .build();
        let setups = Cache::builder()
            .max_capacity(10_000)
            .time_to_live(options.settings_ttl)
            .build();
        let http = reqwest::Client::builder()
            .user_agent(concat!("leadgate/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        let shared = options.redis.clone().map(Shared::new);
        Self {
            inner: Arc::new(Inner {
                store,
                providers: providers.into_iter().map(|p| (p.kind(), p)).collect(),
                http,
                sealer,
                options,
                metrics,
                cache,
                shared,
                setups,
                inflight: Mutex::new(HashMap::new()),
                breakers: Mutex::new(HashMap::new()),
                gates: Mutex::new(HashMap::new()),
                permits,
                committed,
            }),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The enrichment families, each provider's circuit gauge sampled now (a breaker turns
    /// half-open by the clock, not by an event).
    pub fn render_metrics(&self) -> String {
        let breakers: Vec<(ProviderKind, Arc<Breaker>)> = self
            .inner
            .breakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((_, kind), breaker)| (*kind, breaker.clone()))
            .collect();
        let mut worst: HashMap<ProviderKind, i64> = self.inner.providers.keys().map(|k| (*k, 0)).collect();
        for (kind, breaker) in breakers {
            let state = match breaker.state() {
                CircuitState::Closed => 0,
                CircuitState::HalfOpen => 1,
                CircuitState::Open => 2,
            };
            let entry = worst.entry(kind).or_default();
            *entry = (*entry).max(state);
        }
        for (kind, state) in worst {
            self.inner.metrics.set_circuit(kind.as_str(), state);
        }
        self.inner.metrics.render()
    }

    pub fn sealer(&self) -> Option<&KeySealer> {
        self.inner.sealer.as_ref()
    }

    pub fn provider(&self, kind: ProviderKind) -> Option<&Arc<dyn Provider>> {
        self.inner.providers.get(&kind)
    }

    /// The workspace's settings and provider configs (briefly cached).
    pub async fn setup(&self, ws: WorkspaceId) -> Result<Arc<WorkspaceSetup>, StoreError> {
        if let Some(setup) = self.inner.setups.get(&ws) {
            return Ok(setup);
        }
        let store = &self.inner.store;
        let settings = store.enrichment_settings(ws).await?.unwrap_or_default();
        let configs = store
            .provider_configs(ws)
            .await?
            .into_iter()
            .map(|c| (c.provider, c))
            .collect();
        let setup = Arc::new(WorkspaceSetup { settings, configs });
        self.inner.setups.insert(ws, setup.clone());
        Ok(setup)
    }

    /// Evicts every cached group of a lead, here and in Redis (after it was erased).
    pub async fn forget_lead(&self, ws: WorkspaceId, lead: LeadId) {
        for group in Group::ALL {
            self.inner.cache.invalidate(&(ws, lead, group));
        }
        if let Some(shared) = &self.inner.shared {
            shared.forget(ws, lead).await;
        }
    }

    /// Forgets the cached settings of `ws` after they changed.
    pub fn settings_changed(&self, ws: WorkspaceId) {
        self.inner.setups.invalidate(&ws);
    }

    /// The circuit state of a provider in a workspace.
    pub fn circuit(&self, ws: WorkspaceId, kind: ProviderKind) -> CircuitState {
        self.breaker(ws, kind).state()
    }

    /// Resolves `group` for `leads`: one entry per lead. `wanted` names the fields the caller
    /// needs (empty for all); the waterfall stops early for a lead once they are filled.
    pub async fn resolve(
        &self,
        ws: WorkspaceId,
        leads: &[Arc<Lead>],
        group: Group,
        policy: Option<Policy>,
        wanted: &[&'static str],
        ledger: &Arc<Ledger>,
    ) -> HashMap<LeadId, Resolution> {
        ledger.touch();
        let mut out = HashMap::with_capacity(leads.len());
        let setup = match self.setup(ws).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot read enrichment settings");
                return internal_for(leads);
            }
        };
        let policy = policy.unwrap_or(setup.settings.default_policy);
        let usable = setup.usable(group);
        let wanted: Vec<&'static str> = if wanted.is_empty() {
            group.fields().to_vec()
        } else {
            wanted.to_vec()
        };
        let at = now();
        let complete = |r: &EnrichmentRecord| is_complete(r, policy, &wanted, &usable);

        // 1. in-process cache
        let mut pending: Vec<(Arc<Lead>, Subject, Option<EnrichmentRecord>)> = Vec::new();
        let mut memory_hits = 0;
        for lead in leads {
            if policy != Policy::Refresh
                && let Some(rec) = self.inner.cache.get(&(ws, lead.id, group))
                && rec.is_fresh(at)
                && complete(&rec)
                && Subject::matches(lead, &rec.subject_hash)
            {
                memory_hits += 1;
                out.insert(
                    lead.id,
                    Resolution {
                        record: Some(rec),
                        error: None,
                    },
                );
                continue;
            }
            pending.push((lead.clone(), Subject::of(lead), None));
        }
        self.inner.metrics.cache("memory", true, memory_hits);
        self.inner.metrics.cache("memory", false, pending.len() as u64);
        ledger.note_cache_hits(memory_hits);
        if pending.is_empty() {
            if ledger.is_planning() {
                self.plan(ws, &setup, group, leads.len(), &pending, ledger);
            }
            return out;
        }
        // Keys already in flight are followed at once: reading their stored records too would
        // only repeat, once per waiting request, the read their leader has done.
        let mut followers: Vec<(LeadId, Waiter)> = Vec::new();
        let may_fetch = policy != Policy::CacheOnly && !setup.settings.waterfall(group).is_empty();
        if may_fetch && !ledger.is_planning() {
            let inflight = self.inner.inflight.lock().unwrap_or_else(|p| p.into_inner());
            pending.retain(|(lead, _, _)| match inflight.get(&(ws, lead.id, group)) {
                Some(waiter) => {
                    followers.push((lead.id, waiter.clone()));
                    false
                }
                None => true,
            });
        }
        // 2. the cache instances share, one round trip for the page
        if policy != Policy::Refresh
            && !pending.is_empty()
            && let Some(shared) = &self.inner.shared
        {
            let ids: Vec<LeadId> = pending.iter().map(|(l, _, _)| l.id).collect();
            if let Some(found) = shared.read(ws, &ids, group).await {
                let mut found = found.into_iter();
                let mut redis_hits = 0;
                pending.retain(|(lead, subject, _)| match found.next().flatten() {
                    Some(rec)
                        if rec.is_fresh(at)
                            && rec.subject_hash == subject.fingerprint()
                            && complete(&rec) =>
                    {
                        let rec = Arc::new(rec);
                        self.inner.cache.insert((ws, lead.id, group), rec.clone());
                        out.insert(
                            lead.id,
                            Resolution {
                                record: Some(rec),
                                error: None,
                            },
                        );
                        redis_hits += 1;
                        false
                    }
                    _ => true,
                });
                self.inner.metrics.cache("redis", true, redis_hits);
                self.inner.metrics.cache("redis", false, pending.len() as u64);
                ledger.note_cache_hits(redis_hits);
            }
        }
        // 3. stored records
        if policy != Policy::Refresh && !pending.is_empty() {
            let ids: Vec<LeadId> = pending.iter().map(|(l, _, _)| l.id).collect();
            let stored = match self.inner.store.enrichment_records(ws, &ids, &[group]).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read enrichment records");
                    out.extend(internal_for(
                        &pending.iter().map(|(l, _, _)| l.clone()).collect::<Vec<_>>(),
                    ));
                    return out;
                }
            };
            let mut by_lead: HashMap<LeadId, EnrichmentRecord> =
                stored.into_iter().map(|r| (r.lead_id, r)).collect();
            let mut store_hits = 0;
            pending.retain_mut(|(lead, subject, partial)| {
                let Some(rec) = by_lead.remove(&lead.id) else {
                    return true;
                };
                if rec.subject_hash != subject.fingerprint() || !rec.is_fresh(at) {
                    return true;
                }
                if complete(&rec) {
                    let rec = Arc::new(rec);
                    self.inner.cache.insert((ws, lead.id, group), rec.clone());
                    out.insert(
                        lead.id,
                        Resolution {
                            record: Some(rec),
                            error: None,
                        },
                    );
                    store_hits += 1;
                    false
                } else {
                    *partial = Some(rec);
                    true
                }
            });
            self.inner.metrics.cache("store", true, store_hits);
            self.inner.metrics.cache("store", false, pending.len() as u64);
            ledger.note_cache_hits(store_hits);
        }
        if policy == Policy::CacheOnly || setup.settings.waterfall(group).is_empty() {
            // nothing may be fetched, or nobody is configured to fetch it
            for (lead, _, partial) in pending {
                out.insert(
                    lead.id,
                    Resolution {
                        record: partial.map(Arc::new),
                        error: None,
                    },
                );
            }
            return out;
        }
        if ledger.is_planning() {
            self.plan(ws, &setup, group, leads.len(), &pending, ledger);
            for (lead, _, partial) in pending {
                out.insert(
                    lead.id,
                    Resolution {
                        record: partial.map(Arc::new),
                        error: None,
                    },
                );
            }
            return out;
        }

        // 4. single flight: lead what nobody in this process is resolving yet, follow the rest
        // (`fly_shared` then claims the keys across instances)
        let mut leading: Vec<Leading> = Vec::new();
        {
            let mut inflight = self.inner.inflight.lock().unwrap_or_else(|p| p.into_inner());
            for (lead, subject, partial) in pending {
                let key = (ws, lead.id, group);
                if let Some(waiter) = inflight.get(&key) {
                    followers.push((lead.id, waiter.clone()));
                } else {
                    let (tx, rx) = watch::channel(None);
                    inflight.insert(key, rx);
                    leading.push((subject, partial, tx));
                }
            }
        }
        // A flight that landed between our cache check and our claim left its result in the
        // cache: take it instead of flying again.
        if policy != Policy::Refresh {
            leading.retain(|(subject, _, tx)| {
                let key = (ws, subject.lead_id, group);
                match self.inner.cache.get(&key) {
                    Some(rec) if rec.subject_hash == subject.fingerprint() && complete(&rec) => {
                        let resolution = Resolution {
                            record: Some(rec),
                            error: None,
                        };
                        self.land(&key, tx, resolution.clone());
                        out.insert(subject.lead_id, resolution);
                        false
                    }
                    _ => true,
                }
            });
        }
        if !leading.is_empty() {
            let this = self.clone();
            let ledger = ledger.clone();
            let wanted = wanted.clone();
            // Detached, so a client that goes away does not waste credits already committed:
            // the answers are stored and cached for the next request.
            let flight = tokio::spawn(
                async move {
                    this.fly_shared(ws, &setup, group, policy, &wanted, &ledger, leading)
                        .await
                }
                .instrument(tracing::Span::current()),
            );
            match flight.await {
                Ok(results) => out.extend(results),
                Err(e) => tracing::error!(error = %e, "enrichment flight failed"),
            }
        }
        for (lead_id, mut waiter) in followers {
            let resolution = match waiter.wait_for(Option::is_some).await {
                Ok(r) => r.clone().unwrap_or_default(),
                Err(_) => Resolution {
                    record: None,
                    error: Some(EnrichError::Internal),
                },
            };
            out.insert(lead_id, resolution);
        }
        for lead in leads {
            out.entry(lead.id).or_insert_with(|| Resolution {
                record: None,
                error: Some(EnrichError::Internal),
            });
        }
        out
    }

    /// Publishes a flight's result to its followers and ends the flight.
    fn land(&self, key: &Key, tx: &watch::Sender<Option<Resolution>>, resolution: Resolution) {
        self.inner
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        tx.send_replace(Some(resolution));
    }

    /// `fly`, minding other instances: each key is claimed in Redis first; keys another
    /// instance has claimed are not flown here but waited for (its answer lands in Redis), and
    /// flown here only if that instance ends its flight without an answer we can use or stays
    /// away longer than a claim lasts. Without Redis, or while it is unavailable, plain `fly`.
    #[allow(clippy::too_many_arguments)]
    async fn fly_shared(
        &self,
        ws: WorkspaceId,
        setup: &WorkspaceSetup,
        group: Group,
        policy: Policy,
        wanted: &[&'static str],
        ledger: &Arc<Ledger>,
        leading: Vec<Leading>,
    ) -> HashMap<LeadId, Resolution> {
        let shared = match &self.inner.shared {
            // a refresh asks again whatever is known, so it has nobody to wait for
            Some(shared) if policy != Policy::Refresh => shared,
            _ => return self.fly(ws, setup, group, policy, wanted, ledger, leading).await,
        };
        let ttl = self.claim_ttl(setup, group);
        let token = format!("{:032x}", rand::random::<u128>());
        let ids: Vec<LeadId> = leading.iter().map(|(s, _, _)| s.lead_id).collect();
        let Some(claimed) = shared.claim(ws, &ids, group, &token, ttl).await else {
            return self.fly(ws, setup, group, policy, wanted, ledger, leading).await;
        };
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for (item, mine) in leading.into_iter().zip(claimed) {
            if mine {
                ours.push(item);
            } else {
                theirs.push(item);
            }
        }
        let usable = setup.usable(group);
        let own = async {
            if ours.is_empty() {
                return HashMap::new();
            }
            let ids: Vec<LeadId> = ours.iter().map(|(s, _, _)| s.lead_id).collect();
            let results = self.fly(ws, setup, group, policy, wanted, ledger, ours).await;
            shared.release(ws, &ids, group, &token).await;
            results
        };
        let followed = self.follow(shared, ws, group, policy, wanted, &usable, ledger, theirs, ttl);
        let (mut results, (answered, orphans)) = tokio::join!(own, followed);
        results.extend(answered);
        if !orphans.is_empty() {
            let ids: Vec<LeadId> = orphans.iter().map(|(s, _, _)| s.lead_id).collect();
            let claimed = shared.claim(ws, &ids, group, &token, ttl).await;
            results.extend(self.fly(ws, setup, group, policy, wanted, ledger, orphans).await);
            if claimed.is_some() {
                shared.release(ws, &ids, group, &token).await;
            }
        }
        results
    }

    /// Waits for flights another instance claimed: polls Redis every `FOLLOW_POLL` until each
    /// key's answer is there and complete (then lands it here), its claim is gone, or `ttl`
    /// has passed. The keys left are looked up in the store once (an answer that could not be
    /// shared is stored all the same); what is still missing is returned, with any partial
    /// record found, to be flown here.
    #[allow(clippy::too_many_arguments)]
    async fn follow(
        &self,
        shared: &Shared,
        ws: WorkspaceId,
        group: Group,
        policy: Policy,
        wanted: &[&'static str],
        usable: &[ProviderKind],
        ledger: &Arc<Ledger>,
        mut waiting: Vec<Leading>,
        ttl: Duration,
    ) -> (HashMap<LeadId, Resolution>, Vec<Leading>) {
        let mut answered = HashMap::new();
        let mut orphans = Vec::new();
        let started = Instant::now();
        while !waiting.is_empty() {
            tokio::time::sleep(FOLLOW_POLL).await;
            let ids: Vec<LeadId> = waiting.iter().map(|(s, _, _)| s.lead_id).collect();
            let Some(polled) = shared.poll(ws, &ids, group).await else {
                orphans.append(&mut waiting);
                break;
            };
            let gave_up = started.elapsed() >= ttl;
            let at = now();
            let mut still = Vec::new();
            for (mut item, p) in waiting.into_iter().zip(polled) {
                let found = p
                    .record
                    .filter(|r| r.is_fresh(at) && r.subject_hash == item.0.fingerprint());
                match found {
                    Some(rec) if is_complete(&rec, policy, wanted, usable) => {
                        answered.insert(rec.lead_id, self.land_answer(ws, group, &item.2, rec));
                    }
                    partial => {
                        if partial.is_some() {
                            item.1 = partial;
                        }
                        if p.claimed && !gave_up {
                            still.push(item);
                        } else {
                            orphans.push(item);
                        }
                    }
                }
            }
            waiting = still;
        }
        if !orphans.is_empty() {
            let ids: Vec<LeadId> = orphans.iter().map(|(s, _, _)| s.lead_id).collect();
            match self.inner.store.enrichment_records(ws, &ids, &[group]).await {
                Ok(stored) => {
                    let at = now();
                    let mut by_lead: HashMap<LeadId, EnrichmentRecord> =
                        stored.into_iter().map(|r| (r.lead_id, r)).collect();
                    orphans.retain_mut(|item| {
                        let Some(rec) = by_lead
                            .remove(&item.0.lead_id)
                            .filter(|r| r.is_fresh(at) && r.subject_hash == item.0.fingerprint())
                        else {
                            return true;
                        };
                        if is_complete(&rec, policy, wanted, usable) {
                            answered.insert(rec.lead_id, self.land_answer(ws, group, &item.2, rec));
                            false
                        } else {
                            item.1 = Some(rec);
                            true
                        }
                    });
                }
                Err(e) => tracing::error!(error = %e, "cannot read enrichment records"),
            }
        }
        ledger.note_cache_hits(answered.len() as u64);
        (answered, orphans)
    }

    /// Caches and lands an answer another instance fetched.
    fn land_answer(
        &self,
        ws: WorkspaceId,
        group: Group,
        tx: &watch::Sender<Option<Resolution>>,
        record: EnrichmentRecord,
    ) -> Resolution {
        let key = (ws, record.lead_id, group);
        let record = Arc::new(record);
        self.inner.cache.insert(key, record.clone());
        let resolution = Resolution {
            record: Some(record),
            error: None,
        };
        self.land(&key, tx, resolution.clone());
        resolution
    }

    /// How long a flight of the group's waterfall may take at most: each provider's timeout
    /// for every try, plus the margin.
    fn claim_ttl(&self, setup: &WorkspaceSetup, group: Group) -> Duration {
        let options = &self.inner.options;
        let per_try: Duration = setup
            .settings
            .waterfall(group)
            .iter()
            .map(|&kind| {
                setup
                    .config(kind)
                    .timeout_ms
                    .map_or(options.call_timeout, |ms| Duration::from_millis(u64::from(ms)))
            })
            .sum();
        per_try * (options.retries + 1) + options.flight_margin
    }

    /// Runs the waterfall for the leads this request leads, stores and caches the results,
    /// and lands every flight (also when something fails).
    #[allow(clippy::too_many_arguments)]
    async fn fly(
        &self,
        ws: WorkspaceId,
        setup: &WorkspaceSetup,
        group: Group,
        policy: Policy,
        wanted: &[&'static str],
        ledger: &Arc<Ledger>,
        leading: Vec<Leading>,
    ) -> HashMap<LeadId, Resolution> {
        let at = now();
        let mut senders = Vec::with_capacity(leading.len());
        let mut work = Vec::with_capacity(leading.len());
        for (subject, partial, tx) in leading {
            let hash = subject.fingerprint();
            let record = match (policy, partial) {
                (Policy::Refresh, _) | (_, None) => EnrichmentRecord::empty(subject.lead_id, group, hash, at),
                (_, Some(p)) => p,
            };
            senders.push((subject.lead_id, tx));
            work.push(Work {
                subject,
                record,
                changed: false,
                problems: Vec::new(),
                out_of_budget: false,
            });
        }
        // Whatever happens below, every follower is told something.
        let guard = LandGuard {
            enricher: self,
            ws,
            group,
            senders,
        };

        self.waterfall(ws, setup, group, wanted, ledger, &mut work).await;

        let done = now();
        let mut to_save = Vec::new();
        let mut events = Vec::new();
        for w in &mut work {
            if !w.changed {
                continue;
            }
            w.record.fetched_at = done;
            w.record.expires_at = if w.record.is_miss() {
                done + chrono::Duration::from_std(self.inner.options.miss_ttl).unwrap_or_default()
            } else {
                w.record
                    .sources
                    .iter()
                    .map(|s| s.expires_at)
                    .min()
                    .unwrap_or(done)
            };
            let fresh: Vec<&Source> = w.record.sources.iter().filter(|s| s.fetched_at >= at).collect();
            if !fresh.is_empty() {
                events.push(NewEvent {
                    workspace_id: ws,
                    kind: LEAD_ENRICHED,
                    subject_id: Some(w.subject.lead_id.as_uuid()),
                    payload: serde_json::json!({
                        "leadId": w.subject.lead_id.to_string(),
                        "group": group.as_str(),
                        "providers": fresh.iter().map(|s| s.provider.as_str()).collect::<Vec<_>>(),
                        "fields": fresh.iter().flat_map(|s| s.fields.iter().map(String::as_str)).collect::<Vec<_>>(),
                        "credits": fresh.iter().map(|s| s.credits).sum::<u32>(),
                    }),
                    at: done,
                });
            }
            to_save.push(w.record.clone());
        }
        match self.inner.store.save_enrichment(ws, &to_save, &events).await {
            Ok(events) => (self.inner.committed)(events),
            // The answers were paid for: still serve them from memory.
            Err(e) => tracing::error!(error = %e, "cannot store enrichment records"),
        }

        let mut results = HashMap::with_capacity(work.len());
        let mut to_share = Vec::new();
        for w in work {
            let covered = w.record.covers(wanted);
            let error = if covered { None } else { error_of(&w) };
            let record = Arc::new(w.record);
            if w.changed {
                self.inner
                    .cache
                    .insert((ws, record.lead_id, group), record.clone());
                to_share.push(record.clone());
            }
            let has_data = !record.is_miss();
            let resolution = Resolution {
                record: (has_data || w.changed || !record.tried.is_empty()).then_some(record),
                error,
            };
            results.insert(w.subject.lead_id, resolution);
        }
        // Before landing, so the claims released after this flight never leave another
        // instance without the answer.
        if let Some(shared) = &self.inner.shared {
            shared.write(ws, &to_share).await;
        }
        guard.land_all(&results);
        results
    }

    /// Walks the waterfall for `work`, mutating each lead's record.
    async fn waterfall(
        &self,
        ws: WorkspaceId,
        setup: &WorkspaceSetup,
        group: Group,
        wanted: &[&'static str],
        ledger: &Arc<Ledger>,
        work: &mut [Work],
    ) {
        for &kind in setup.settings.waterfall(group) {
            let open: Vec<usize> = (0..work.len())
                .filter(|&i| {
                    let w = &work[i];
                    !w.out_of_budget
                        && !w.record.covers(wanted)
                        && !w.record.tried.iter().any(|t| t == kind.as_str())
                })
                .collect();
            if work.iter().all(|w| w.out_of_budget || w.record.covers(wanted)) {
                break;
            }
            if open.is_empty() {
                // every open lead already asked this provider: go on to the next one
                continue;
            }
            let Some(provider) = self.inner.providers.get(&kind).cloned() else {
                continue;
            };
            if !provider.groups().contains(&group) {
                continue;
            }
            let config = setup.config(kind);
            if let Some(reason) = unusable_reason(&config) {
                self.inner.metrics.skip(kind.as_str(), reason);
                // Switched off by an admin: silent. Missing a key, or switched off because the
                // key was rejected: a problem the caller should see if nothing else answers.
                let visible = match (reason, &config.disabled_reason) {
                    ("no_key", _) => Some("no API key is configured".to_owned()),
                    (_, Some(why)) => Some(why.clone()),
                    _ => None,
                };
                if let Some(why) = visible {
                    for &i in &open {
                        work[i].problems.push(Problem::Unavailable(kind, why.clone()));
                    }
                }
                continue;
            }
            let key = match self.open_key(ws, &config) {
                Ok(k) => k,
                Err(reason) => {
                    for &i in &open {
                        work[i].problems.push(Problem::Unavailable(kind, reason.clone()));
                    }
                    continue;
                }
            };
            let (candidates, unaskable): (Vec<usize>, Vec<usize>) = open
                .into_iter()
                .partition(|&i| provider.can_look_up(group, &work[i].subject));
            // A lead this provider cannot look up (say, no email) is a free miss for it,
            // remembered like one, so later requests do not walk the waterfall again for it.
            for i in unaskable {
                work[i].record.note_miss(kind.as_str());
                work[i].changed = true;
            }
            if candidates.is_empty() {
                continue;
            }
            let batch = provider.batch_size(group).max(1);
            let batches: Vec<Vec<usize>> = candidates.chunks(batch).map(<[usize]>::to_vec).collect();
            let calls = batches.into_iter().map(|indices| {
                let subjects: Vec<Subject> = indices.iter().map(|&i| work[i].subject.clone()).collect();
                let provider = provider.clone();
                let config = &config;
                let key = &key;
                async move {
                    let outcome = self
                        .call(ws, &provider, config, key, group, subjects, ledger)
                        .await;
                    (indices, outcome)
                }
            });
            let outcomes = join_all(calls).await;
            for (indices, outcome) in outcomes {
                apply(kind, group, &self.inner.options, indices, outcome, work);
            }
        }
    }

    /// Opens the provider's key for one call.
    fn open_key(&self, ws: WorkspaceId, config: &ProviderConfig) -> Result<SecretString, String> {
        match (&config.key, &self.inner.sealer) {
            (None, _) => Ok(SecretString::from(String::new())),
            (Some(_), None) => Err("no master key is configured to open the stored API key".into()),
            (Some(sealed), Some(sealer)) => sealer
                .open(ws, config.provider, sealed)
                .map_err(|_| "the stored API key cannot be opened with the configured master key".into()),
        }
    }

    fn breaker(&self, ws: WorkspaceId, kind: ProviderKind) -> Arc<Breaker> {
        let mut breakers = self.inner.breakers.lock().unwrap_or_else(|p| p.into_inner());
        breakers
            .entry((ws, kind))
            .or_insert_with(|| {
                Arc::new(Breaker::new(
                    self.inner.options.breaker_threshold,
                    self.inner.options.breaker_cool_down,
                ))
            })
            .clone()
    }

    fn gate(&self, ws: WorkspaceId, kind: ProviderKind, per_second: u32) -> Arc<RateGate> {
        let mut gates = self.inner.gates.lock().unwrap_or_else(|p| p.into_inner());
        let gate = gates
            .entry((ws, kind))
            .or_insert_with(|| Arc::new(RateGate::new(per_second, self.inner.options.clock.clone())));
        if gate.per_second() != per_second {
            *gate = Arc::new(RateGate::new(per_second, self.inner.options.clock.clone()));
        }
        gate.clone()
    }

    /// Credits one hit costs with this provider in this workspace.
    fn unit_cost(provider: &Arc<dyn Provider>, config: &ProviderConfig, group: Group) -> u64 {
        if provider.kind() == ProviderKind::Sandbox {
            return SandboxOptions::from_json(&config.options).map_or(1, |o| u64::from(o.credits_per_hit));
        }
        u64::from(provider.credits_per_hit(group))
    }

    /// Reserves quota for up to `n` hits of `unit` credits (and one call against the rate):
    /// all of them, or as many as the credits left allow. `Err(Some(period))` names the
    /// period that refused outright, `Err(None)` a store failure (logged).
    async fn reserve_quota(
        &self,
        ws: WorkspaceId,
        kind: ProviderKind,
        at: crate::domain::Timestamp,
        limits: &[(UsagePeriod, u64)],
        unit: u64,
        n: usize,
    ) -> Result<usize, Option<UsagePeriod>> {
        let store = &self.inner.store;
        let charges = |count: usize| -> Vec<(UsagePeriod, u64, u64)> {
            limits
                .iter()
                .map(|&(period, cap)| {
                    let amount = if period == UsagePeriod::Second {
                        1
                    } else {
                        unit * count as u64
                    };
                    (period, cap, amount)
                })
                .collect()
        };
        let failed = |e: StoreError| {
            tracing::error!(error = %e, provider = kind.as_str(), "cannot reserve provider usage");
            None
        };
        let period = match store.reserve_usage(ws, kind, at, &charges(n)).await {
            Ok(None) => return Ok(n),
            Ok(Some(period)) => period,
            Err(e) => return Err(failed(e)),
        };
        if period == UsagePeriod::Second || n <= 1 || unit == 0 {
            return Err(Some(period));
        }
        let usage = store.provider_usage(ws).await.map_err(failed)?;
        let room = limits
            .iter()
            .filter(|(p, _)| *p != UsagePeriod::Second)
            .map(|&(p, cap)| {
                let used = usage
                    .iter()
                    .find(|u| u.provider == kind && u.period == p && u.period_start == p.start(at))
                    .map_or(0, |u| u.used);
                cap.saturating_sub(used)
            })
            .min()
            .unwrap_or(0);
        let fit = ((room / unit) as usize).min(n - 1);
        if fit == 0 {
            return Err(Some(period));
        }
        match store.reserve_usage(ws, kind, at, &charges(fit)).await {
            Ok(None) => Ok(fit),
            Ok(Some(period)) => Err(Some(period)),
            Err(e) => Err(failed(e)),
        }
    }

    /// Gives back `amount` credits of a reservation made at `reserved_at` (calls against the
    /// rate stay counted).
    async fn release_quota(
        &self,
        ws: WorkspaceId,
        kind: ProviderKind,
        reserved_at: crate::domain::Timestamp,
        limits: &[(UsagePeriod, u64)],
        amount: u64,
    ) {
        let releases: Vec<(UsagePeriod, u64)> = limits
            .iter()
            .filter(|(p, _)| *p != UsagePeriod::Second)
            .map(|&(p, _)| (p, amount))
            .collect();
        if releases.is_empty() || amount == 0 {
            return;
        }
        if let Err(e) = self
            .inner
            .store
            .release_usage(ws, kind, reserved_at, &releases)
            .await
        {
            tracing::error!(error = %e, provider = kind.as_str(), "cannot release provider usage");
        }
    }

    /// One provider call for a batch, guarded by breaker, rate gate, budget and quotas, with
    /// retries on transient failures.
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        ws: WorkspaceId,
        provider: &Arc<dyn Provider>,
        config: &ProviderConfig,
        key: &SecretString,
        group: Group,
        mut subjects: Vec<Subject>,
        ledger: &Arc<Ledger>,
    ) -> CallOutcome {
        let kind = provider.kind();
        let name = kind.as_str();
        let metrics = &self.inner.metrics;
        let breaker = self.breaker(ws, kind);
        if !breaker.allow() {
            metrics.skip(name, "circuit_open");
            return CallOutcome::Skipped(Problem::Unavailable(
                kind,
                "circuit open after repeated failures".into(),
            ));
        }
        // Budget first: it only shrinks the batch, and costs nothing to undo.
        let unit = Self::unit_cost(provider, config, group);
        let granted = ledger.reserve(unit, subjects.len());
        if granted == 0 {
            breaker.release_probe();
            metrics.skip(name, "budget");
            return CallOutcome::OverBudget { granted: 0 };
        }
        let mut cuts = Cuts {
            quota_at: granted,
            budget_at: granted,
        };
        subjects.truncate(granted);
        let mut reserved = unit * granted as u64;
        let limits = config.limits();
        let gate = config.rate_per_second.map(|rate| self.gate(ws, kind, rate));
        // A cheap look first; the token itself is taken right before the request leaves, so
        // time spent reserving quota cannot bunch calls up at the provider.
        if let Some(gate) = &gate
            && !gate.has_room()
        {
            let rate = gate.per_second();
            ledger.settle(reserved, 0);
            breaker.release_probe();
            metrics.skip(name, "rate_limited");
            return CallOutcome::Skipped(Problem::Unavailable(
                kind,
                format!("rate limit of {rate} calls/s reached"),
            ));
        }
        let reserved_at = now();
        match self
            .reserve_quota(ws, kind, reserved_at, &limits, unit, subjects.len())
            .await
        {
            Ok(fit) => {
                if fit < subjects.len() {
                    // the quota covers part of the batch: ask about that part, pass the rest on
                    metrics.skip(name, "quota");
                    ledger.settle(unit * (subjects.len() - fit) as u64, 0);
                    subjects.truncate(fit);
                    reserved = unit * fit as u64;
                    cuts.quota_at = fit;
                }
            }
            Err(refusal) => {
                ledger.settle(reserved, 0);
                breaker.release_probe();
                return match refusal {
                    Some(UsagePeriod::Second) => {
                        metrics.skip(name, "rate_limited");
                        CallOutcome::Skipped(Problem::Unavailable(
                            kind,
                            "rate limit reached across instances".into(),
                        ))
                    }
                    Some(_) => {
                        metrics.skip(name, "quota");
                        CallOutcome::Skipped(Problem::Quota(kind))
                    }
                    None => {
                        CallOutcome::Skipped(Problem::Unavailable(kind, "usage could not be recorded".into()))
                    }
                };
            }
        }

        if let Some(gate) = &gate
            && !gate.try_acquire()
        {
            ledger.settle(reserved, 0);
            breaker.release_probe();
            self.release_quota(ws, kind, reserved_at, &limits, reserved).await;
            metrics.skip(name, "rate_limited");
            return CallOutcome::Skipped(Problem::Unavailable(
                kind,
                format!("rate limit of {} calls/s reached", gate.per_second()),
            ));
        }

        let result = self
            .call_with_retries(provider, config, key, group, &subjects, ledger, gate.as_deref())
            .await;

        let spent: u64 = match &result {
            Ok(answers) => answers
                .iter()
                .map(|a| match a {
                    Answer::Found { credits, .. } | Answer::NotFound { credits } => u64::from(*credits),
                    _ => 0,
                })
                .sum(),
            Err(_) => 0,
        };
        // Never record more than was reserved: a provider that bills above its list price is
        // capped at what the quota allowed.
        let spent = spent.min(reserved);
        ledger.settle(reserved, spent);
        metrics.spent(name, spent);
        self.release_quota(ws, kind, reserved_at, &limits, reserved - spent)
            .await;
        match result {
            Ok(answers) => {
                breaker.record_success();
                CallOutcome::Answered { answers, cuts }
            }
            Err(e) => {
                match &e {
                    ProviderError::Unauthorized => {
                        breaker.release_probe();
                        self.disable(ws, kind).await;
                    }
                    ProviderError::Rejected(_) | ProviderError::QuotaExhausted => breaker.release_probe(),
                    _ => breaker.record_failure(),
                }
                CallOutcome::Failed(e, cuts)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn call_with_retries(
        &self,
        provider: &Arc<dyn Provider>,
        config: &ProviderConfig,
        key: &SecretString,
        group: Group,
        subjects: &[Subject],
        ledger: &Arc<Ledger>,
        gate: Option<&RateGate>,
    ) -> Result<Vec<Answer>, ProviderError> {
        let kind = provider.kind();
        let options = &self.inner.options;
        let timeout = config
            .timeout_ms
            .map_or(options.call_timeout, |ms| Duration::from_millis(u64::from(ms)));
        let single = provider.batch_size(group) <= 1;
        let mut attempt = 0;
        loop {
            let _permit = match (single, self.inner.permits.get(&kind)) {
                (true, Some(permits)) => permits.clone().acquire_owned().await.ok(),
                _ => None,
            };
            let span = tracing::info_span!(
                "provider_call",
                provider = kind.as_str(),
                group = group.as_str(),
                subjects = subjects.len(),
                attempt,
                outcome = tracing::field::Empty,
                credits = tracing::field::Empty,
            );
            let started = Instant::now();
            ledger.note_call();
            let ctx = CallContext {
                http: &self.inner.http,
                api_key: key.expose_secret(),
                options: &config.options,
            };
            let result = tokio::time::timeout(timeout, provider.lookup(&ctx, group, subjects))
                .instrument(span.clone())
                .await;
            let took = started.elapsed();
            let result =
                match result {
                    Err(_) => {
                        self.inner
                            .metrics
                            .call(kind.as_str(), group.as_str(), "timeout", took);
                        span.record("outcome", "timeout");
                        return Err(ProviderError::Transient {
                            message: format!("no answer within {} ms", timeout.as_millis()),
                            retry_after: None,
                        });
                    }
                    Ok(Ok(answers)) if answers.len() != subjects.len() => Err(ProviderError::Malformed(
                        format!("{} answers for {} subjects", answers.len(), subjects.len()),
                    )),
                    Ok(r) => r,
                };
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.label(),
            };
            self.inner
                .metrics
                .call(kind.as_str(), group.as_str(), outcome, took);
            span.record("outcome", outcome);
            match result {
                Err(e) if e.is_transient() && attempt < options.retries => {
                    let backoff = options.retry_base * 2u32.pow(attempt);
                    let jitter =
                        Duration::from_millis(rand::random::<u64>() % (backoff.as_millis() as u64 + 1));
                    let wait = e.retry_after().unwrap_or(backoff + jitter);
                    if wait > options.max_retry_wait {
                        return Err(e);
                    }
                    // a retry is a call like any other: it needs a token of the rate
                    if gate.is_some_and(|g| !g.try_acquire_after(wait)) {
                        return Err(e);
                    }
                    tracing::debug!(
                        provider = kind.as_str(),
                        wait_ms = wait.as_millis() as u64,
                        "retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => {
                    if let Ok(answers) = &other {
                        let credits: u32 = answers
                            .iter()
                            .map(|a| match a {
                                Answer::Found { credits, .. } => *credits,
                                _ => 0,
                            })
                            .sum();
                        span.record("credits", credits);
                    }
                    return other;
                }
            }
        }
    }

    /// Switches a provider off after it rejected the workspace's key.
    async fn disable(&self, ws: WorkspaceId, kind: ProviderKind) {
        let reason = format!("the API key was rejected by {kind} at {}", now().to_rfc3339());
        tracing::warn!(provider = kind.as_str(), "disabling provider: key rejected");
        if let Err(e) = self.inner.store.disable_provider(ws, kind, &reason, now()).await {
            tracing::error!(error = %e, "cannot disable provider");
        }
        self.settings_changed(ws);
    }

    /// Writes down what a dry run would call for `pending`.
    fn plan(
        &self,
        ws: WorkspaceId,
        setup: &WorkspaceSetup,
        group: Group,
        asked: usize,
        pending: &[(Arc<Lead>, Subject, Option<EnrichmentRecord>)],
        ledger: &Ledger,
    ) {
        let mut steps = Vec::new();
        for &kind in setup.settings.waterfall(group) {
            let Some(provider) = self.inner.providers.get(&kind) else {
                continue;
            };
            let config = setup.config(kind);
            let leads = pending
                .iter()
                .filter(|(_, s, partial)| {
                    provider.can_look_up(group, s)
                        && !partial
                            .as_ref()
                            .is_some_and(|p| p.tried.iter().any(|t| t == kind.as_str()))
                })
                .count() as u64;
            let reason = if !provider.groups().contains(&group) {
                Some(format!("{kind} does not offer {group}"))
            } else if let Some(r) = unusable_reason(&config) {
                Some(r.replace('_', " "))
            } else if self.breaker(ws, kind).state() == CircuitState::Open {
                Some("circuit open".into())
            } else {
                None
            };
            let batch = provider.batch_size(group).max(1) as u64;
            steps.push(PlannedStep {
                provider: kind,
                available: reason.is_none(),
                reason,
                leads,
                calls: leads.div_ceil(batch),
                max_credits: leads * Self::unit_cost(provider, &config, group),
            });
        }
        ledger.plan(group, |g| {
            g.leads += asked as u64;
            g.to_fetch += pending.len() as u64;
            g.cached += (asked - pending.len()) as u64;
            for step in steps {
                match g.steps.iter_mut().find(|s| s.provider == step.provider) {
                    Some(s) => {
                        s.leads += step.leads;
                        s.calls += step.calls;
                        s.max_credits += step.max_credits;
                    }
                    None => g.steps.push(step),
                }
            }
        });
    }
}

/// The result of one guarded call.
enum CallOutcome {
    Answered { answers: Vec<Answer>, cuts: Cuts },
    OverBudget { granted: usize },
    Skipped(Problem),
    Failed(ProviderError, Cuts),
}

/// Where a batch was cut before the call: subjects from `quota_at` on were left out for the
/// provider's quota, from `budget_at` on for the request's budget.
#[derive(Clone, Copy, Debug)]
struct Cuts {
    quota_at: usize,
    budget_at: usize,
}

impl Cuts {
    /// Marks the subjects that were cut off.
    fn apply(self, kind: ProviderKind, indices: &[usize], work: &mut [Work]) {
        let budget_at = self.budget_at.min(indices.len());
        let quota_at = self.quota_at.min(budget_at);
        for &i in &indices[quota_at..budget_at] {
            work[i].problems.push(Problem::Quota(kind));
        }
        for &i in &indices[budget_at..] {
            work[i].out_of_budget = true;
        }
    }
}

/// Applies a call's outcome to the leads it was for.
fn apply(
    kind: ProviderKind,
    group: Group,
    options: &EnrichOptions,
    indices: Vec<usize>,
    outcome: CallOutcome,
    work: &mut [Work],
) {
    let name = kind.as_str();
    match outcome {
        CallOutcome::Answered { answers, cuts } => {
            cuts.apply(kind, &indices, work);
            let at = now();
            let ttl = if group == Group::EmailVerification {
                options.verification_ttl
            } else {
                options.ttl
            };
            let expires = at + chrono::Duration::from_std(ttl).unwrap_or_default();
            for (&i, answer) in indices.iter().zip(answers) {
                let w = &mut work[i];
                match answer {
                    Answer::Found {
                        data,
                        confidence,
                        credits,
                    } => {
                        if data.group() != group {
                            w.problems
                                .push(Problem::Unavailable(kind, "answered for another group".into()));
                            continue;
                        }
                        let source = Source {
                            provider: name.to_owned(),
                            fetched_at: at,
                            expires_at: expires,
                            confidence: confidence.clamp(0.0, 1.0),
                            credits,
                            fields: Vec::new(),
                        };
                        w.record.merge(name, data.into_fields(), source);
                        w.changed = true;
                    }
                    Answer::NotFound { credits } => {
                        w.record.note_miss(name);
                        if credits > 0 {
                            w.record.sources.push(Source {
                                provider: name.to_owned(),
                                fetched_at: at,
                                expires_at: expires,
                                confidence: 0.0,
                                credits,
                                fields: Vec::new(),
                            });
                        }
                        w.changed = true;
                    }
                    Answer::LegalSuppressed => {
                        // the provider may never return this person: do not ask again
                        w.record.note_miss(name);
                        w.changed = true;
                    }
                    Answer::Pending { .. } => {
                        w.problems.push(Problem::Unavailable(
                            kind,
                            "the provider is still working on it".into(),
                        ));
                    }
                    Answer::Failed(e) => w.problems.push(problem_of(kind, &e)),
                }
            }
        }
        CallOutcome::OverBudget { granted } => {
            for &i in &indices[granted..] {
                work[i].out_of_budget = true;
            }
        }
        CallOutcome::Skipped(problem) => {
            for &i in &indices {
                work[i].problems.push(problem.clone());
            }
        }
        CallOutcome::Failed(e, cuts) => {
            cuts.apply(kind, &indices, work);
            let problem = problem_of(kind, &e);
            for &i in &indices[..cuts.quota_at.min(indices.len())] {
                work[i].problems.push(problem.clone());
            }
        }
    }
}

fn problem_of(kind: ProviderKind, e: &ProviderError) -> Problem {
    match e {
        ProviderError::QuotaExhausted => Problem::Quota(kind),
        other => Problem::Unavailable(kind, other.to_string()),
    }
}

/// The error to report for a lead whose wanted fields stayed empty, if anything went wrong.
fn error_of(w: &Work) -> Option<EnrichError> {
    if w.out_of_budget {
        return Some(EnrichError::BudgetExceeded);
    }
    if w.problems.is_empty() {
        return None;
    }
    if w.problems.iter().all(|p| matches!(p, Problem::Quota(_))) {
        let mut providers: Vec<ProviderKind> = w
            .problems
            .iter()
            .filter_map(|p| match p {
                Problem::Quota(k) => Some(*k),
                Problem::Unavailable(..) => None,
            })
            .collect();
        providers.dedup();
        return Some(EnrichError::QuotaExceeded(providers));
    }
    let mut seen = HashSet::new();
    let reasons = w
        .problems
        .iter()
        .map(|p| match p {
            Problem::Quota(k) => (*k, "credit quota exhausted".to_owned()),
            Problem::Unavailable(k, r) => (*k, r.clone()),
        })
        .filter(|(k, _)| seen.insert(*k))
        .collect();
    Some(EnrichError::ProviderUnavailable(reasons))
}

/// Whether `r` answers the request: everything wanted is filled, or every usable provider was
/// asked already, or nothing may be fetched anyway.
fn is_complete(
    r: &EnrichmentRecord,
    policy: Policy,
    wanted: &[&'static str],
    usable: &[ProviderKind],
) -> bool {
    policy == Policy::CacheOnly
        || r.covers(wanted)
        || usable.iter().all(|p| r.tried.iter().any(|t| t == p.as_str()))
}

fn internal_for(leads: &[Arc<Lead>]) -> HashMap<LeadId, Resolution> {
    leads
        .iter()
        .map(|l| {
            (
                l.id,
                Resolution {
                    record: None,
                    error: Some(EnrichError::Internal),
                },
            )
        })
        .collect()
}

/// Lands every flight of a leader exactly once: with its result, or with an internal error if
/// the leader never got that far.
struct LandGuard<'a> {
    enricher: &'a Enricher,
    ws: WorkspaceId,
    group: Group,
    senders: Vec<(LeadId, watch::Sender<Option<Resolution>>)>,
}

impl LandGuard<'_> {
    fn land_all(mut self, results: &HashMap<LeadId, Resolution>) {
        for (lead_id, tx) in std::mem::take(&mut self.senders) {
            let resolution = results.get(&lead_id).cloned().unwrap_or(Resolution {
                record: None,
                error: Some(EnrichError::Internal),
            });
            self.enricher
                .land(&(self.ws, lead_id, self.group), &tx, resolution);
        }
    }
}

impl Drop for LandGuard<'_> {
    fn drop(&mut self) {
        for (lead_id, tx) in std::mem::take(&mut self.senders) {
            self.enricher.land(
                &(self.ws, lead_id, self.group),
                &tx,
                Resolution {
                    record: None,
                    error: Some(EnrichError::Internal),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CompanyData, GroupData};

    #[test]
    fn records_weigh_more_with_more_values() {
        let at = now();
        let empty = EnrichmentRecord::empty(LeadId::new(), Group::Company, "fp".into(), at);
        let mut full = empty.clone();
        let fields = GroupData::Company(CompanyData {
            name: Some("A company with a long enough name".into()),
            industry: Some("Software".into()),
            ..Default::default()
        })
        .into_fields();
        let source = Source {
            provider: "pdl".into(),
            fetched_at: at,
            expires_at: at,
            confidence: 0.5,
            credits: 1,
            fields: vec![],
        };
        full.merge("pdl", fields, source);
        assert!(weight(&empty) >= 256);
        assert!(
            weight(&full) > weight(&empty) + 100,
            "{} vs {}",
            weight(&full),
            weight(&empty)
        );
    }
}
