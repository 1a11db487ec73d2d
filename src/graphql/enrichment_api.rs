//! Enrichment's root fields: `providers`, `enrichmentSettings`, `enrichmentPlan` and
//! `enrichmentJob` on the query root; provider configuration, waterfalls, the default policy and
//! `enrichLeads` on the mutation root; and the `@budget` directive.

use super::enrichment::{EnrichScope, EnrichmentGroup, EnrichmentPolicy, ProviderName};
use super::errors::{UserError, bad_input, split, to_gql};
use super::ids::decode_lead_id;
use super::query::{Caller, actor};
use crate::domain::{Group, ProviderKind};
use crate::service::CircuitState;
use crate::service::PlannedGroup;
use crate::service::{self, JobState, ProviderUpdate, Services};
use async_graphql::registry::{__DirectiveLocation, MetaDirective, MetaInputValue, Registry};
use async_graphql::{
    Context, CustomDirective, CustomDirectiveFactory, Enum, ID, InputObject, Json, MaybeUndefined, Object,
    SimpleObject,
};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use std::borrow::Cow;

/// The request's executable schema, for running a document as a dry run, and the limits the
/// document must pass first (the same as a request's own).
#[derive(Clone)]
pub struct PlanRunner {
    pub schema: super::LeadgateSchema,
    pub limits: super::Limits,
}

/// A provider's circuit breaker state.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Circuit {
    /// Calls go out.
    Closed,
    /// Too many failures in a row; calls are skipped until the cool-down passes.
    Open,
    /// The cool-down passed; the next call is a probe.
    HalfOpen,
}

/// A period a quota counts in.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum UsagePeriod {
    Second,
    Day,
    Month,
}

/// Use of one capped period.
#[derive(SimpleObject)]
pub struct ProviderUsage {
    pub period: UsagePeriod,
    /// Credits (calls, for `SECOND`) used in the current period.
    pub used: i64,
    pub limit: i64,
    pub remaining: i64,
    /// When the counter starts again from zero (UTC period boundary).
    pub resets_at: DateTime<Utc>,
}

/// An enrichment provider as configured for the workspace.
#[derive(SimpleObject)]
pub struct Provider {
    pub name: ProviderName,
    pub enabled: bool,
    /// Why the provider was switched off automatically (e.g. its key was rejected).
    pub disabled_reason: Option<String>,
    /// Whether an API key is stored.
    pub has_api_key: bool,
    /// The stored key's last four characters; the key itself is never returned.
    pub api_key_last4: Option<String>,
    /// The groups the provider can fill.
    pub groups: Vec<EnrichmentGroup>,
    /// Groups the provider answers in bulk (more than one lead per call).
    pub bulk_groups: Vec<EnrichmentGroup>,
    pub daily_credit_cap: Option<i64>,
    pub monthly_credit_cap: Option<i64>,
    pub rate_per_second: Option<i32>,
    pub timeout_ms: Option<i32>,
    /// Provider-specific options (the sandbox's `latencyMs`, `missRate`, `creditsPerHit`).
    pub options: Json<serde_json::Value>,
    pub circuit: Circuit,
    /// Usage of each capped period.
    pub usage: Vec<ProviderUsage>,
    pub updated_at: DateTime<Utc>,
}

impl From<service::ProviderStatus> for Provider {
    fn from(s: service::ProviderStatus) -> Self {
        let c = s.config;
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Self {
            name: c.provider.into(),
            enabled: c.enabled,
            disabled_reason: c.disabled_reason,
            has_api_key: c.key.is_some(),
            api_key_last4: c.key.map(|k| k.last4),
            groups: s.groups.iter().map(|g| (*g).into()).collect(),
            bulk_groups: s
                .batch_sizes
                .iter()
                .filter(|(_, n)| *n > 1)
                .map(|(g, _)| (*g).into())
                .collect(),
            daily_credit_cap: c.daily_credit_cap.map(clamp),
            monthly_credit_cap: c.monthly_credit_cap.map(clamp),
            rate_per_second: c.rate_per_second.map(|v| v as i32),
            timeout_ms: c.timeout_ms.map(|v| v as i32),
            options: Json(c.options),
            circuit: match s.circuit {
                CircuitState::Closed => Circuit::Closed,
                CircuitState::Open => Circuit::Open,
                CircuitState::HalfOpen => Circuit::HalfOpen,
            },
            usage: s
                .usage
                .into_iter()
                .map(|u| ProviderUsage {
                    period: match u.period {
                        crate::domain::UsagePeriod::Second => UsagePeriod::Second,
                        crate::domain::UsagePeriod::Day => UsagePeriod::Day,
                        crate::domain::UsagePeriod::Month => UsagePeriod::Month,
                    },
                    used: clamp(u.used),
                    limit: clamp(u.limit),
                    remaining: clamp(u.limit.saturating_sub(u.used)),
                    resets_at: u.resets_at,
                })
                .collect(),
            updated_at: c.updated_at,
        }
    }
}

/// The providers asked for one group, in order.
#[derive(SimpleObject)]
pub struct Waterfall {
    pub group: EnrichmentGroup,
    pub providers: Vec<ProviderName>,
}

/// How the workspace enriches leads.
#[derive(SimpleObject)]
pub struct EnrichmentSettings {
    /// Used when a group field is queried without `policy`.
    pub default_policy: EnrichmentPolicy,
    pub waterfalls: Vec<Waterfall>,
}

impl From<crate::domain::EnrichmentSettings> for EnrichmentSettings {
    fn from(s: crate::domain::EnrichmentSettings) -> Self {
        Self {
            default_policy: s.default_policy.into(),
            waterfalls: service::waterfalls(&s)
                .into_iter()
                .map(|(g, ps)| Waterfall {
                    group: g.into(),
                    providers: ps.into_iter().map(Into::into).collect(),
                })
                .collect(),
        }
    }
}

/// One provider step of a dry run.
#[derive(SimpleObject)]
pub struct PlanStep {
    pub provider: ProviderName,
    /// Whether it would be called now; `reason` says why not.
    pub available: bool,
    pub reason: Option<String>,
    /// Leads it would be asked about, at most (an earlier provider may answer first).
    pub leads: i64,
    pub calls: i64,
    /// Credits if every one of those leads were a hit.
    pub max_credits: i64,
}

/// What a dry run found for one group.
#[derive(SimpleObject)]
pub struct PlanGroup {
    pub group: EnrichmentGroup,
    pub leads: i64,
    /// Leads answered from cached or stored values, for free.
    pub cached: i64,
    /// Leads that would go to the providers.
    pub to_fetch: i64,
    pub steps: Vec<PlanStep>,
}

/// What a query would call and spend. Nothing was called and nothing spent to find out.
#[derive(SimpleObject)]
pub struct EnrichmentPlan {
    pub groups: Vec<PlanGroup>,
    /// Upper bound on the credits the query could spend.
    pub max_credits: i64,
    /// Provider calls if the first available provider of each group answered everything.
    pub expected_calls: i64,
    /// Errors the query itself produced in the dry run (e.g. a bad argument).
    pub errors: Vec<String>,
}

fn plan_from(
    planned: std::collections::BTreeMap<Group, PlannedGroup>,
    errors: Vec<String>,
) -> EnrichmentPlan {
    let mut max_credits = 0;
    let mut expected_calls = 0;
    let groups = planned
        .into_iter()
        .map(|(group, g)| {
            let available = g.steps.iter().filter(|s| s.available);
            max_credits += available.clone().map(|s| s.max_credits).sum::<u64>();
            expected_calls += g.steps.iter().find(|s| s.available).map_or(0, |s| s.calls);
            PlanGroup {
                group: group.into(),
                leads: g.leads as i64,
                cached: g.cached as i64,
                to_fetch: g.to_fetch as i64,
                steps: g
                    .steps
                    .into_iter()
                    .map(|s| PlanStep {
                        provider: s.provider.into(),
                        available: s.available,
                        reason: s.reason,
                        leads: s.leads as i64,
                        calls: s.calls as i64,
                        max_credits: s.max_credits as i64,
                    })
                    .collect(),
            }
        })
        .collect();
    EnrichmentPlan {
        groups,
        max_credits: max_credits as i64,
        expected_calls: expected_calls as i64,
        errors,
    }
}

/// The state of a bulk refresh.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum EnrichmentJobState {
    Running,
    Succeeded,
    Failed,
}

/// A bulk refresh started by `enrichLeads`.
#[derive(SimpleObject)]
pub struct EnrichmentJob {
    pub id: ID,
    pub state: EnrichmentJobState,
    pub groups: Vec<EnrichmentGroup>,
    pub policy: EnrichmentPolicy,
    /// Leads in the job.
    pub total: i64,
    pub processed: i64,
    /// (lead, group) pairs that have values now.
    pub filled: i64,
    /// (lead, group) pairs that could not be filled because something failed.
    pub failed: i64,
    pub credits_spent: i64,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<service::EnrichJob> for EnrichmentJob {
    fn from(j: service::EnrichJob) -> Self {
        Self {
            id: super::jobs::job_global_id(j.id),
            state: match j.state {
                JobState::Running => EnrichmentJobState::Running,
                JobState::Succeeded => EnrichmentJobState::Succeeded,
                JobState::Failed => EnrichmentJobState::Failed,
            },
            groups: j.groups.iter().map(|g| (*g).into()).collect(),
            policy: j.policy.into(),
            total: j.total as i64,
            processed: j.progress.processed as i64,
            filled: j.progress.filled as i64,
            failed: j.progress.failed as i64,
            credits_spent: j.progress.credits as i64,
            created_at: j.created_at,
            finished_at: j.finished_at,
        }
    }
}

#[derive(Default)]
pub struct EnrichmentQuery;

#[Object]
impl EnrichmentQuery {
    /// Every enrichment provider with the workspace's settings, usage and circuit state. API
    /// keys are never shown, only their last four characters.
    async fn providers(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Provider>> {
        let actor = actor(ctx)?;
        let services = ctx.data::<Services>()?;
        let list = services
            .enrichment
            .providers(actor)
            .await
            .map_err(super::errors::to_gql)?;
        Ok(list.into_iter().map(Provider::from).collect())
    }

    /// The workspace's default policy and waterfalls.
    async fn enrichment_settings(&self, ctx: &Context<'_>) -> async_graphql::Result<EnrichmentSettings> {
        let actor = actor(ctx)?;
        let services = ctx.data::<Services>()?;
        let s = services
            .enrichment
            .settings(actor)
            .await
            .map_err(super::errors::to_gql)?;
        Ok(s.into())
    }

    /// Dry run: what `query` would call and spend on enrichment, without calling or spending.
    /// Cached values count as free; the query's leads are read as usual.
    async fn enrichment_plan(
        &self,
        ctx: &Context<'_>,
        query: String,
        variables: Option<Json<serde_json::Value>>,
        operation_name: Option<String>,
    ) -> async_graphql::Result<EnrichmentPlan> {
        actor(ctx)?;
        if ctx.data::<EnrichScope>()?.ledger().is_planning() {
            return Err(bad_input("enrichmentPlan cannot be planned"));
        }
        let caller = ctx.data::<Caller>()?.clone();
        let runner = ctx.data::<PlanRunner>()?;
        let mut request = async_graphql::Request::new(query);
        if let Some(name) = operation_name {
            request = request.operation_name(name);
        }
        if let Some(Json(vars)) = variables {
            if !vars.is_object() && !vars.is_null() {
                return Err(bad_input("`variables` must be a JSON object"));
            }
            request = request.variables(async_graphql::Variables::from_json(vars));
        }
        let operation = request.operation_name.clone();
        let doc = request
            .parsed_query()
            .map_err(|e| bad_input(format!("the query does not parse: {}", e.message)))?;
        if super::is_mutation(doc, operation.as_deref()) {
            return Err(bad_input("only queries can be planned"));
        }
        super::guard::check_document(doc, &runner.limits, caller.0.is_some())
            .map_err(|e| bad_input(format!("the query is refused: {}", e.message)))?;
        let scope = EnrichScope::planning();
        let response = runner
            .schema
            .execute(request.data(caller).data(scope.clone()).data(runner.clone()))
            .await;
        let errors = response.errors.into_iter().map(|e| e.message).collect();
        Ok(plan_from(scope.ledger().planned(), errors))
    }

    /// A bulk refresh of the caller's workspace; null when unknown (finished jobs are pruned
    /// after `job_retention_hours`).
    async fn enrichment_job(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<EnrichmentJob>> {
        let actor = actor(ctx)?;
        let id = super::jobs::decode_job_id(&id)?;
        let services = ctx.data::<Services>()?;
        let job = services.enrichment.job(actor, id).await.map_err(to_gql)?;
        Ok(job.map(Into::into))
    }
}

/// Changes to one provider's settings; omitted fields stay as they are, `null` clears.
#[derive(InputObject)]
pub struct ConfigureProviderInput {
    pub provider: ProviderName,
    pub enabled: Option<bool>,
    /// Write-only; stored sealed. `null` removes the key.
    pub api_key: MaybeUndefined<String>,
    /// Credits per UTC day; `null` removes the cap.
    pub daily_credit_cap: MaybeUndefined<i64>,
    /// Credits per UTC month; `null` removes the cap.
    pub monthly_credit_cap: MaybeUndefined<i64>,
    /// Calls per second (1–10,000); `null` removes the limit.
    pub rate_per_second: MaybeUndefined<i64>,
    /// Per-call timeout in milliseconds (50–60,000); `null` uses the server default.
    pub timeout_ms: MaybeUndefined<i64>,
    /// Provider-specific options; only the sandbox has any (`latencyMs`, `missRate`,
    /// `creditsPerHit`).
    pub options: Option<Json<serde_json::Value>>,
}

fn maybe<T>(m: MaybeUndefined<T>) -> Option<Option<T>> {
    match m {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

#[derive(SimpleObject)]
pub struct ConfigureProviderPayload {
    pub provider: Option<Provider>,
    pub user_errors: Vec<UserError>,
}

#[derive(SimpleObject)]
pub struct EnrichmentSettingsPayload {
    pub settings: Option<EnrichmentSettings>,
    pub user_errors: Vec<UserError>,
}

#[derive(SimpleObject)]
pub struct EnrichLeadsPayload {
    /// The started job; follow it with `enrichmentJob(id:)`.
    pub job: Option<EnrichmentJob>,
    pub user_errors: Vec<UserError>,
}

#[derive(Default)]
pub struct EnrichmentMutation;

#[Object]
impl EnrichmentMutation {
    /// Changes one provider's settings (admins only). Setting a new key re-enables a provider
    /// that was switched off for a rejected key.
    async fn configure_provider(
        &self,
        ctx: &Context<'_>,
        input: ConfigureProviderInput,
    ) -> async_graphql::Result<ConfigureProviderPayload> {
        let actor = actor(ctx)?;
        let services = ctx.data::<Services>()?;
        let update = ProviderUpdate {
            provider: Some(input.provider.into()),
            enabled: input.enabled,
            api_key: maybe(input.api_key).map(|k| k.map(SecretString::from)),
            daily_credit_cap: maybe(input.daily_credit_cap),
            monthly_credit_cap: maybe(input.monthly_credit_cap),
            rate_per_second: maybe(input.rate_per_second),
            timeout_ms: maybe(input.timeout_ms),
            options: input.options.map(|Json(v)| v),
        };
        let (provider, user_errors) = split(
            services.enrichment.configure_provider(actor, update).await,
            &["input"],
        )?;
        Ok(ConfigureProviderPayload {
            provider: provider.map(Into::into),
            user_errors,
        })
    }

    /// Sets the providers asked for `group`, in order (admins only). Providers must offer the
    /// group; an empty list switches the group's enrichment off.
    async fn set_waterfall(
        &self,
        ctx: &Context<'_>,
        group: EnrichmentGroup,
        providers: Vec<ProviderName>,
    ) -> async_graphql::Result<EnrichmentSettingsPayload> {
        let actor = actor(ctx)?;
        let services = ctx.data::<Services>()?;
        let kinds: Vec<ProviderKind> = providers.into_iter().map(Into::into).collect();
        let (settings, user_errors) = split(
            services
                .enrichment
                .set_waterfall(actor, group.into(), kinds)
                .await,
            &[],
        )?;
        Ok(EnrichmentSettingsPayload {
            settings: settings.map(Into::into),
            user_errors,
        })
    }

    /// Sets the policy used when a group field is queried without `policy` (admins only).
    async fn set_default_enrichment_policy(
        &self,
        ctx: &Context<'_>,
        policy: EnrichmentPolicy,
    ) -> async_graphql::Result<EnrichmentSettingsPayload> {
        let actor = actor(ctx)?;
        let services = ctx.data::<Services>()?;
        let (settings, user_errors) = split(
            services.enrichment.set_default_policy(actor, policy.into()).await,
            &[],
        )?;
        Ok(EnrichmentSettingsPayload {
            settings: settings.map(Into::into),
            user_errors,
        })
    }

    /// Refreshes groups of many leads in the background (up to 10,000 leads) as a job on the
    /// queue; returns at once with the job. Leads not in the caller's workspace are counted as failed.
    async fn enrich_leads(
        &self,
        ctx: &Context<'_>,
        ids: Vec<ID>,
        #[graphql(desc = "Defaults to every group.")] groups: Option<Vec<EnrichmentGroup>>,
        #[graphql(default_with = "EnrichmentPolicy::FetchIfMissing")] policy: EnrichmentPolicy,
    ) -> async_graphql::Result<EnrichLeadsPayload> {
        let actor = actor(ctx)?;
        let services = ctx.data::<Services>()?;
        let ids = ids
            .iter()
            .map(|id| decode_lead_id(id))
            .collect::<async_graphql::Result<Vec<_>>>()?;
        let groups = groups.unwrap_or_default().into_iter().map(Into::into).collect();
        let (job, user_errors) = split(
            services
                .enrichment
                .enrich_leads(actor, ids, groups, policy.into())
                .await,
            &[],
        )?;
        Ok(EnrichLeadsPayload {
            job: job.map(Into::into),
            user_errors,
        })
    }
}

/// `@budget(maxCredits: Int!)`: caps the credits the whole request may spend on enrichment.
/// Allowed on the operation or on any field; the smallest cap found (and the
/// `X-Leadgate-Max-Credits` header) wins. The transport reads it before execution.
pub struct BudgetDirective;

pub const BUDGET_DIRECTIVE: &str = "budget";

struct PassThrough;

#[async_trait::async_trait]
impl CustomDirective for PassThrough {}

impl CustomDirectiveFactory for BudgetDirective {
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(BUDGET_DIRECTIVE)
    }

    fn register(&self, registry: &mut Registry) {
        let mut args = async_graphql::indexmap::IndexMap::new();
        args.insert(
            "maxCredits".to_owned(),
            MetaInputValue {
                name: "maxCredits".to_owned(),
                description: Some("Most credits the request may spend; 0 forbids provider calls.".to_owned()),
                ty: "Int!".to_owned(),
                deprecation: Default::default(),
                default_value: None,
                visible: None,
                inaccessible: false,
                tags: Vec::new(),
                is_secret: false,
                directive_invocations: Vec::new(),
            },
        );
        registry.add_directive(MetaDirective {
            name: BUDGET_DIRECTIVE.to_owned(),
            description: Some(
                "Caps the credits this request may spend on enrichment provider calls.".to_owned(),
            ),
            locations: vec![__DirectiveLocation::QUERY, __DirectiveLocation::FIELD],
            args,
            is_repeatable: false,
            visible: None,
            composable: None,
        });
    }

    fn create(
        &self,
        _ctx: &async_graphql::ContextDirective<'_>,
        _directive: &async_graphql::parser::types::Directive,
    ) -> async_graphql::ServerResult<Box<dyn CustomDirective>> {
        Ok(Box::new(PassThrough))
    }
}
