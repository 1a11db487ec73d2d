//! Enrichment in the schema: the group objects on `Lead`, their provenance, and how a field
//! gets its value.
//!
//! A page of leads resolves each selected group once for the whole page: the `leads` resolver
//! looks ahead at `edges.node.<group>` and `nodes.<group>` and prefetches with one pipeline call
//! per (group, policy). Any other `Lead` (from `lead`, `node`, a mutation payload) goes through
//! the request's DataLoader, which batches whatever the request asks within its window. Both
//! pass the selected sub-fields, so the waterfall can stop once those are filled. The same
//! prefetch loads the page's `crmLinks` (and their connections) in two queries when selected.
//!
//! **Why prefetch per page**: async-graphql's per-key DataLoader costs ~8–10 µs per key; a page of
//! 50 × 3 groups through `load_one` would add ~1.3 ms. The `leads` resolver looks ahead and makes
//! one pipeline call per selected (group, policy) instead; the DataLoader (2 ms window, never 0)
//! serves the other places a `Lead` appears.

use super::errors::{BUDGET_EXCEEDED, INTERNAL, PROVIDER_UNAVAILABLE, QUOTA_EXCEEDED, coded};
use super::query::actor;
use super::types::Lead;
use crate::domain::{self, EnrichmentRecord, Group, LeadId, Policy, ProviderKind};
use crate::service::{Actor, Services};
use crate::service::{EnrichError, Ledger, Resolution, Spend};
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, Enum, ErrorExtensions, Lookahead, Object, SelectionField, SimpleObject};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How long the request's DataLoader waits to collect keys into one batch. Never zero: with
/// no window, batches collapse to a key or two and provider quotas burn 20–70× faster.
const BATCH_WINDOW: Duration = Duration::from_millis(2);

/// How far a query may go to fill an enrichment group.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Hash, Debug)]
pub enum EnrichmentPolicy {
    /// Answer from cached and stored values only; never call a provider.
    CacheOnly,
    /// Use fresh cached values; call providers for what is missing or expired.
    FetchIfMissing,
    /// Ignore cached values and ask the providers again.
    Refresh,
}

impl From<EnrichmentPolicy> for Policy {
    fn from(p: EnrichmentPolicy) -> Self {
        match p {
            EnrichmentPolicy::CacheOnly => Policy::CacheOnly,
            EnrichmentPolicy::FetchIfMissing => Policy::FetchIfMissing,
            EnrichmentPolicy::Refresh => Policy::Refresh,
        }
    }
}

impl From<Policy> for EnrichmentPolicy {
    fn from(p: Policy) -> Self {
        match p {
            Policy::CacheOnly => EnrichmentPolicy::CacheOnly,
            Policy::FetchIfMissing => EnrichmentPolicy::FetchIfMissing,
            Policy::Refresh => EnrichmentPolicy::Refresh,
        }
    }
}

/// What a lead can be enriched with.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum EnrichmentGroup {
    Person,
    Company,
    EmailVerification,
    Phone,
}

impl From<EnrichmentGroup> for Group {
    fn from(g: EnrichmentGroup) -> Self {
        match g {
            EnrichmentGroup::Person => Group::Person,
            EnrichmentGroup::Company => Group::Company,
            EnrichmentGroup::EmailVerification => Group::EmailVerification,
            EnrichmentGroup::Phone => Group::Phone,
        }
    }
}

impl From<Group> for EnrichmentGroup {
    fn from(g: Group) -> Self {
        match g {
            Group::Person => EnrichmentGroup::Person,
            Group::Company => EnrichmentGroup::Company,
            Group::EmailVerification => EnrichmentGroup::EmailVerification,
            Group::Phone => EnrichmentGroup::Phone,
        }
    }
}

/// `ProviderName` from the one list of providers (`domain::provider_list!`); `remote` derives
/// the conversions both ways as matches the compiler checks for every variant.
macro_rules! provider_name {
    ($($(#[$doc:meta])* $variant:ident => $id:ident,)*) => {
        /// An enrichment provider.
        #[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
        #[graphql(remote = "ProviderKind")]
        pub enum ProviderName {
            $($(#[$doc])* $variant,)*
        }
    };
}
crate::domain::provider_list!(provider_name);

/// Deliverability of an email address.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum EmailStatus {
    Valid,
    Invalid,
    AcceptAll,
    Disposable,
    Webmail,
    Unknown,
}

/// The kind of a phone line.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum PhoneType {
    Mobile,
    Work,
    Home,
    Other,
}

/// Values of one group, read straight from the resolved record.
struct Values(Arc<EnrichmentRecord>);

impl Values {
    fn text(&self, field: &str) -> Option<&str> {
        self.0.fields.0.get(field).and_then(|v| v.as_str())
    }
    fn int(&self, field: &str) -> Option<i64> {
        self.0.fields.0.get(field).and_then(|v| v.as_i64())
    }
}

/// Who the lead is at work. Each field comes from the first provider in the workspace's
/// waterfall that knew it; see `Lead.enrichment` for where each came from.
pub struct PersonEnrichment(Values);

#[Object]
impl PersonEnrichment {
    async fn full_name(&self) -> Option<&str> {
        self.0.text("fullName")
    }
    /// Job title.
    async fn title(&self) -> Option<&str> {
        self.0.text("title")
    }
    /// e.g. `senior`, `manager`, `director`, `vp`, `c_suite`.
    async fn seniority(&self) -> Option<&str> {
        self.0.text("seniority")
    }
    /// e.g. `engineering`, `sales`.
    async fn department(&self) -> Option<&str> {
        self.0.text("department")
    }
    /// LinkedIn profile handle (the part after `linkedin.com/in/`).
    async fn linkedin_handle(&self) -> Option<&str> {
        self.0.text("linkedinHandle")
    }
    /// Twitter/X handle without `@`.
    async fn twitter_handle(&self) -> Option<&str> {
        self.0.text("twitterHandle")
    }
    /// Free text, e.g. `Berlin, Germany`.
    async fn location(&self) -> Option<&str> {
        self.0.text("location")
    }
}

/// Firmographics and technographics of the lead's company.
pub struct CompanyEnrichment(Values);

#[Object]
impl CompanyEnrichment {
    async fn name(&self) -> Option<&str> {
        self.0.text("name")
    }
    async fn domain(&self) -> Option<&str> {
        self.0.text("domain")
    }
    async fn industry(&self) -> Option<&str> {
        self.0.text("industry")
    }
    async fn employee_count(&self) -> Option<i64> {
        self.0.int("employeeCount")
    }
    /// e.g. `51-200`.
    async fn employee_range(&self) -> Option<&str> {
        self.0.text("employeeRange")
    }
    /// Annual revenue in US dollars.
    async fn annual_revenue(&self) -> Option<i64> {
        self.0.int("annualRevenue")
    }
    async fn founded_year(&self) -> Option<i64> {
        self.0.int("foundedYear")
    }
    /// ISO 3166-1 alpha-2 when recognisable.
    async fn country(&self) -> Option<&str> {
        self.0.text("country")
    }
    async fn city(&self) -> Option<&str> {
        self.0.text("city")
    }
    async fn linkedin_url(&self) -> Option<&str> {
        self.0.text("linkedinUrl")
    }
    /// Technologies the company is known to use.
    async fn technologies(&self) -> Vec<&str> {
        self.0
            .0
            .fields
            .0
            .get("technologies")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|t| t.as_str()).collect())
            .unwrap_or_default()
    }
}

/// Whether mail to the lead's address is likely to arrive.
pub struct EmailVerification(Values);

#[Object]
impl EmailVerification {
    async fn status(&self) -> Option<EmailStatus> {
        let raw: domain::EmailStatus =
            serde_json::from_value(self.0.0.fields.0.get("status")?.clone()).ok()?;
        Some(match raw {
            domain::EmailStatus::Valid => EmailStatus::Valid,
            domain::EmailStatus::Invalid => EmailStatus::Invalid,
            domain::EmailStatus::AcceptAll => EmailStatus::AcceptAll,
            domain::EmailStatus::Disposable => EmailStatus::Disposable,
            domain::EmailStatus::Webmail => EmailStatus::Webmail,
            domain::EmailStatus::Unknown => EmailStatus::Unknown,
        })
    }
    /// 0–100, the provider's deliverability score.
    async fn score(&self) -> Option<i64> {
        self.0.int("score")
    }
}

/// A phone number found for the lead.
#[derive(SimpleObject)]
pub struct PhoneNumber {
    /// E.164, e.g. `+14155550100`.
    number: String,
    #[graphql(name = "type")]
    kind: PhoneType,
}

/// Phone numbers found for the lead.
pub struct PhoneEnrichment(Values);

#[Object]
impl PhoneEnrichment {
    async fn numbers(&self) -> Vec<PhoneNumber> {
        let data: domain::PhoneData = self.0.0.fields.to_data();
        data.numbers
            .into_iter()
            .map(|n| PhoneNumber {
                number: n.number,
                kind: match n.kind {
                    domain::PhoneKind::Mobile => PhoneType::Mobile,
                    domain::PhoneKind::Work => PhoneType::Work,
                    domain::PhoneKind::Home => PhoneType::Home,
                    domain::PhoneKind::Other => PhoneType::Other,
                },
            })
            .collect()
    }
}

/// Where one enriched value came from.
#[derive(SimpleObject)]
pub struct FieldProvenance {
    pub group: EnrichmentGroup,
    /// The field's path, e.g. `company.industry`.
    pub field: String,
    pub provider: ProviderName,
    pub fetched_at: DateTime<Utc>,
    /// When the value is considered stale and fetched again on demand.
    pub expires_at: DateTime<Utc>,
    /// 0–1, normalised from the provider's own scale.
    pub confidence: f64,
    /// Credits the provider's answer cost; shared by every field that answer supplied.
    pub credits: i32,
}

/// Provenance of every filled field of `records`.
pub fn provenance(records: &[Arc<EnrichmentRecord>]) -> Vec<FieldProvenance> {
    let mut out = Vec::new();
    for record in records {
        for source in &record.sources {
            let Some(provider) = ProviderKind::parse(&source.provider) else {
                continue;
            };
            for field in &source.fields {
                out.push(FieldProvenance {
                    group: record.group.into(),
                    field: format!("{}.{field}", record.group.as_str()),
                    provider: provider.into(),
                    fetched_at: source.fetched_at,
                    expires_at: source.expires_at,
                    confidence: source.confidence,
                    credits: i32::try_from(source.credits).unwrap_or(i32::MAX),
                });
            }
        }
    }
    out
}

/// The request's enrichment state: its ledger (budget and spend) and its DataLoader.
#[derive(Clone)]
pub struct EnrichScope {
    ledger: Arc<Ledger>,
    loader: Arc<OnceLock<DataLoader<GroupLoader>>>,
}

impl EnrichScope {
    pub fn new(max_credits: Option<u64>) -> Self {
        Self::with(Ledger::new(max_credits))
    }

    /// A scope that plans instead of spending (for `enrichmentPlan`).
    pub fn planning() -> Self {
        Self::with(Ledger::planning())
    }

    fn with(ledger: Ledger) -> Self {
        Self {
            ledger: Arc::new(ledger),
            loader: Arc::new(OnceLock::new()),
        }
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// What the request spent, when it touched enrichment at all.
    pub fn spend(&self) -> Option<Spend> {
        self.ledger.touched().then(|| self.ledger.spend())
    }

    fn loader(&self, services: &Services, actor: &Actor) -> &DataLoader<GroupLoader> {
        self.loader.get_or_init(|| {
            DataLoader::new(
                GroupLoader {
                    services: services.clone(),
                    actor: actor.clone(),
                    ledger: self.ledger.clone(),
                },
                tokio::spawn,
            )
            .delay(BATCH_WINDOW)
        })
    }
}

/// A lead, compared and hashed by id, as a DataLoader key part.
#[derive(Clone)]
struct LeadRef(Arc<domain::Lead>);

impl PartialEq for LeadRef {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}
impl Eq for LeadRef {}
impl Hash for LeadRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}

/// One (lead, group) with the policy and the selected fields (a bit per `Group::fields()`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EnrichKey {
    lead: LeadRef,
    group: Group,
    policy: Option<Policy>,
    wanted: u32,
}

pub struct GroupLoader {
    services: Services,
    actor: Actor,
    ledger: Arc<Ledger>,
}

impl Loader<EnrichKey> for GroupLoader {
    type Value = Resolution;
    type Error = std::convert::Infallible;

    async fn load(&self, keys: &[EnrichKey]) -> Result<HashMap<EnrichKey, Resolution>, Self::Error> {
        let mut batches: HashMap<(Group, Option<Policy>, u32), Vec<Arc<domain::Lead>>> = HashMap::new();
        for key in keys {
            batches
                .entry((key.group, key.policy, key.wanted))
                .or_default()
                .push(key.lead.0.clone());
        }
        let runs = batches
            .into_iter()
            .map(|((group, policy, wanted), leads)| async move {
                let fields = unmask(group, wanted);
                let results = self
                    .services
                    .enrichment
                    .resolve(&self.actor, &leads, group, policy, &fields, &self.ledger)
                    .await;
                (group, policy, wanted, leads, results)
            });
        let mut out = HashMap::with_capacity(keys.len());
        for (group, policy, wanted, leads, mut results) in futures_util::future::join_all(runs).await {
            for lead in leads {
                let resolution = results.remove(&lead.id).unwrap_or_default();
                out.insert(
                    EnrichKey {
                        lead: LeadRef(lead),
                        group,
                        policy,
                        wanted,
                    },
                    resolution,
                );
            }
        }
        Ok(out)
    }
}

fn mask(group: Group, names: impl IntoIterator<Item = impl AsRef<str>>) -> u32 {
    let fields = group.fields();
    names
        .into_iter()
        .fold(0, |m, n| match fields.iter().position(|f| *f == n.as_ref()) {
            Some(i) => m | (1 << i),
            None => m,
        })
}

fn unmask(group: Group, wanted: u32) -> Vec<&'static str> {
    group
        .fields()
        .iter()
        .enumerate()
        .filter(|(i, _)| wanted & (1 << i) != 0)
        .map(|(_, f)| *f)
        .collect()
}

/// The `policy` argument of a group field, if given.
fn policy_arg(field: &SelectionField<'_>) -> async_graphql::Result<Option<Policy>> {
    let args = field.arguments()?;
    let Some((_, value)) = args.iter().find(|(name, _)| name.as_str() == "policy") else {
        return Ok(None);
    };
    // A literal arrives as an enum value, a variable as a string.
    let name = match value {
        async_graphql::Value::Enum(name) => name.as_str(),
        async_graphql::Value::String(name) => name.as_str(),
        _ => return Ok(None),
    };
    Ok(Policy::parse(name))
}

/// Resolutions prefetched for a page, by (group, policy argument).
#[derive(Default)]
pub struct Prefetched {
    by_group: HashMap<(Group, Option<Policy>), HashMap<LeadId, Resolution>>,
    /// Everything already known per lead, when `enrichment` (provenance) was selected.
    known: Option<HashMap<LeadId, Vec<Arc<EnrichmentRecord>>>>,
    /// The page's CRM links with their connections, when `crmLinks` was selected.
    crm: Option<CrmPrefetch>,
}

struct CrmPrefetch {
    links: HashMap<LeadId, Vec<domain::CrmLink>>,
    connections: HashMap<domain::CrmConnectionId, Arc<domain::CrmConnection>>,
}

impl Prefetched {
    /// The records known for a lead, if provenance was prefetched.
    pub fn known(&self, lead: LeadId) -> Option<Vec<Arc<EnrichmentRecord>>> {
        self.known
            .as_ref()
            .map(|k| k.get(&lead).cloned().unwrap_or_default())
    }

    /// The lead's CRM links, if they were prefetched.
    pub fn crm_links(&self, lead: LeadId) -> Option<Vec<super::crm::CrmLink>> {
        let crm = self.crm.as_ref()?;
        let links = crm.links.get(&lead).map(Vec::as_slice).unwrap_or_default();
        Some(
            links
                .iter()
                .map(|l| super::crm::CrmLink(l.clone(), crm.connections.get(&l.connection_id).cloned()))
                .collect(),
        )
    }
}

/// The `Lead` field that resolves `group`. Not `Group::as_str`: the phone group is
/// `phoneEnrichment`, as `phone` is the lead's own stored number.
pub fn lead_field(group: Group) -> &'static str {
    match group {
        Group::Person => "person",
        Group::Company => "company",
        Group::EmailVerification => "emailVerification",
        Group::Phone => "phoneEnrichment",
    }
}

/// Prefetches every group selected under `edges.node` or `nodes` of a connection, one pipeline
/// call per (group, policy) for the whole page. `None` when no group is selected.
pub async fn prefetch(
    ctx: &Context<'_>,
    look_ahead: &Lookahead<'_>,
    leads: &[Arc<domain::Lead>],
) -> async_graphql::Result<Option<Arc<Prefetched>>> {
    let mut wanted: HashMap<(Group, Option<Policy>), u32> = HashMap::new();
    let places = [look_ahead.field("edges").field("node"), look_ahead.field("nodes")];
    for place in &places {
        for group in Group::ALL {
            for field in place.field(lead_field(group)).selection_fields() {
                let policy = policy_arg(&field)?;
                let m = mask(group, field.selection_set().map(|f| f.name()));
                let entry = wanted.entry((group, policy)).or_insert(0);
                // no recognised sub-field (only `__typename`): every field
                *entry |= if m == 0 { u32::MAX } else { m };
            }
        }
    }
    let wants_provenance = places.iter().any(|p| p.field("enrichment").exists());
    let wants_crm = places.iter().any(|p| p.field("crmLinks").exists());
    if (wanted.is_empty() && !wants_provenance && !wants_crm) || leads.is_empty() {
        return Ok(None);
    }
    let actor = actor(ctx)?;
    let services = ctx.data::<Services>()?;
    let scope = ctx.data::<EnrichScope>()?;
    let runs = wanted.into_iter().map(|((group, policy), m)| async move {
        let fields = if m == u32::MAX {
            Vec::new()
        } else {
            unmask(group, m)
        };
        let results = services
            .enrichment
            .resolve(actor, leads, group, policy, &fields, scope.ledger())
            .await;
        ((group, policy), results)
    });
    let by_group = futures_util::future::join_all(runs).await.into_iter().collect();
    // After the groups above, so provenance includes what this very request fetched.
    let known = if wants_provenance {
        Some(services.enrichment.known(actor, leads).await)
    } else {
        None
    };
    let crm = if wants_crm {
        let ids: Vec<LeadId> = leads.iter().map(|l| l.id).collect();
        let (links, connections) = services
            .crm
            .links_of_leads(actor, &ids)
            .await
            .map_err(super::errors::to_gql)?;
        let mut by_lead: HashMap<LeadId, Vec<domain::CrmLink>> = HashMap::new();
        for link in links {
            by_lead.entry(link.lead_id).or_default().push(link);
        }
        Some(CrmPrefetch {
            links: by_lead,
            connections: connections.into_iter().map(|c| (c.id, Arc::new(c))).collect(),
        })
    } else {
        None
    };
    Ok(Some(Arc::new(Prefetched { by_group, known, crm })))
}

/// The resolution of `group` for a lead: prefetched with its page, else through the request's
/// DataLoader.
async fn resolution(
    ctx: &Context<'_>,
    lead: &Lead,
    group: Group,
    policy: Option<Policy>,
) -> async_graphql::Result<Resolution> {
    if let Some(found) = lead
        .1
        .as_ref()
        .and_then(|p| p.by_group.get(&(group, policy)))
        .and_then(|m| m.get(&lead.0.id))
    {
        return Ok(found.clone());
    }
    let actor = actor(ctx)?;
    let services = ctx.data::<Services>()?;
    let scope = ctx.data::<EnrichScope>()?;
    let wanted = mask(
        group,
        ctx.look_ahead()
            .selection_fields()
            .iter()
            .flat_map(|f| f.selection_set().map(|c| c.name())),
    );
    let key = EnrichKey {
        lead: LeadRef(lead.0.clone()),
        group,
        policy,
        wanted,
    };
    let found = scope.loader(services, actor).load_one(key).await;
    Ok(match found {
        Ok(r) => r.unwrap_or_default(),
        Err(never) => match never {},
    })
}

/// A group's record for a `Lead` field: the values when any are known, a coded error when
/// nothing is known because something failed, null for a plain miss.
pub async fn group_record(
    ctx: &Context<'_>,
    lead: &Lead,
    group: Group,
    policy: Option<EnrichmentPolicy>,
) -> async_graphql::Result<Option<Arc<EnrichmentRecord>>> {
    let r = resolution(ctx, lead, group, policy.map(Policy::from)).await?;
    match (r.record, r.error) {
        (Some(rec), _) if !rec.is_miss() => Ok(Some(rec)),
        (_, Some(e)) => Err(enrich_error(e)),
        _ => Ok(None),
    }
}

pub fn person(rec: Arc<EnrichmentRecord>) -> PersonEnrichment {
    PersonEnrichment(Values(rec))
}
pub fn company(rec: Arc<EnrichmentRecord>) -> CompanyEnrichment {
    CompanyEnrichment(Values(rec))
}
pub fn verification(rec: Arc<EnrichmentRecord>) -> EmailVerification {
    EmailVerification(Values(rec))
}
pub fn phone(rec: Arc<EnrichmentRecord>) -> PhoneEnrichment {
    PhoneEnrichment(Values(rec))
}

/// The coded GraphQL error for a pipeline error.
pub fn enrich_error(e: EnrichError) -> async_graphql::Error {
    let message = e.to_string();
    match e {
        EnrichError::BudgetExceeded => coded(BUDGET_EXCEEDED, message),
        EnrichError::QuotaExceeded(providers) => coded(QUOTA_EXCEEDED, message).extend_with(|_, x| {
            x.set(
                "providers",
                providers
                    .iter()
                    .map(|p| p.as_str().to_owned())
                    .collect::<Vec<_>>(),
            )
        }),
        EnrichError::ProviderUnavailable(reasons) => {
            coded(PROVIDER_UNAVAILABLE, message).extend_with(|_, x| {
                x.set(
                    "providers",
                    reasons
                        .iter()
                        .map(|(p, _)| p.as_str().to_owned())
                        .collect::<Vec<_>>(),
                )
            })
        }
        EnrichError::Internal => coded(INTERNAL, "internal error"),
    }
}

/// `extensions.enrichment` of a response.
pub fn spend_extension(spend: Spend) -> async_graphql::Value {
    let mut map = async_graphql::indexmap::IndexMap::new();
    map.insert(
        async_graphql::Name::new("creditsSpent"),
        async_graphql::Value::from(spend.credits_spent),
    );
    map.insert(
        async_graphql::Name::new("cacheHits"),
        async_graphql::Value::from(spend.cache_hits),
    );
    map.insert(
        async_graphql::Name::new("providerCalls"),
        async_graphql::Value::from(spend.provider_calls),
    );
    map.insert(
        async_graphql::Name::new("maxCredits"),
        spend
            .max_credits
            .map_or(async_graphql::Value::Null, async_graphql::Value::from),
    );
    async_graphql::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_is_prefetched_under_the_lead_field_that_resolves_it() {
        let sdl = crate::graphql::sdl();
        let lead = sdl
            .split("\ntype Lead implements Node {")
            .nth(1)
            .and_then(|rest| rest.split("\n}").next())
            .expect("type Lead in the schema");
        for group in Group::ALL {
            let field = lead_field(group);
            let needle = format!("\n\t{field}(");
            assert!(
                lead.contains(&needle),
                "no `{field}(policy …)` on Lead for {group:?}"
            );
        }
    }

    #[test]
    fn masks_round_trip_and_ignore_unknown_names() {
        let m = mask(Group::Company, ["industry", "__typename", "city"]);
        assert_eq!(unmask(Group::Company, m), vec!["industry", "city"]);
        assert_eq!(mask(Group::Person, ["nope"]), 0);
    }
}
