//! Campaign automation: the use cases (create, edit, activate, pause, archive, enroll,
//! preview, stats, timelines), the scheduler and the step executor, inbound mail events, and
//! the signed unsubscribe and click links.
//!
//! **How a step runs.** An enrollment's `due_at` is its next step's time. `campaign.tick` (every
//! minute, and at once when something becomes due: an activation, a resume, a finished batch)
//! claims due steps in batches (`Store::claim_due_steps`: stop rules checked in the claiming
//! transaction) and queues one `campaign.steps` job per batch, so every step execution rides
//! the queue with its retries and dead-letter state. `run_steps` executes a batch under its
//! lease and writes every outcome in one transaction (`Store::finish_steps`). Nothing per lead
//! is held in memory between batches.
//!
//! **At most once in effect.** An email's `Message-ID` is derived from (campaign, lead, entry,
//! step). Its message row is written as `sending` before the relay is contacted
//! (`Store::begin_sends`); a row still `sending` when the step runs again means its worker died
//! mid-send, and it becomes `unconfirmed` — shown in stats and the timeline, never resent by
//! itself. A relay's 4xx is a deferral (retried later, same Message-ID), a 5xx a rejection; a
//! connection lost mid-send is `unconfirmed` too.
//!
//! **Windows and caps.** A send waits for the send window in the lead's zone (its `timeZone`,
//! else its country's single zone, else the campaign's). Caps are counters in the store taken
//! all-or-none per send (`Store::take_send_slots`): per campaign per hour and day (the campaign
//! zone's days), per mailbox per UTC day across every campaign of the workspace, per recipient
//! domain per hour. A send over a cap waits for the next window of that cap; counters of past
//! windows are dropped by `campaign.segments`.
//!
//! **Templates** are MiniJinja (sandboxed, bounded by fuel); variables are checked when a
//! campaign is saved, so a typo is a user error, not a blank in a sent mail.

use super::{Actor, CrmService, EnrichmentService, LeadService, ServiceError, SyncSelection};
use crate::domain::campaign::{
    Activity, BranchStep, CAMPAIGN_STATE, CAMPAIGN_STEP, Campaign, CampaignDefinition, CampaignState,
    CampaignStats, EmailStep, Enrollment, MailSignal, MessageState, Sender, StepAction, UpdateLeadStep,
    WaitEvent, message_id, time,
};
use crate::domain::{
    CampaignId, EmailAddress, EmailHash, FieldError, FieldErrorCode, Group, JobKind, KeysetPage, Lead,
    LeadDraft, LeadId, LeadStatus, NewEvent, NewJob, Paged, Patch, Policy, Role, Timestamp, ValidationErrors,
    WorkspaceId, filter_from_json, now,
};
use crate::events::Bus;
use crate::jobs::{Handler, JobContext, JobError, Queue};
use crate::mail::{Mailer, Outgoing, SendOutcome};
use crate::store::{Next, PlannedSend, SendGate, StepOutcome, StopKind, Store, StoreError, Suppression};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DurationRound, TimeDelta};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Claims due steps and queues them as `campaign.steps` jobs.
pub const CAMPAIGN_TICK: JobKind = JobKind::new("campaign.tick");
/// Runs one claimed batch of steps.
pub const CAMPAIGN_STEPS: JobKind = JobKind::new("campaign.steps");
/// Re-evaluates the segments of active campaigns.
pub const CAMPAIGN_SEGMENTS: JobKind = JobKind::new("campaign.segments");

/// Steps one job runs.
pub const STEP_BATCH: u32 = 100;
/// Batches one tick claims before it hands over to the next tick.
const TICK_BATCHES: u32 = 200;
/// How long a claimed step is held before another worker may take it.
const STEP_LEASE: TimeDelta = TimeDelta::minutes(10);
/// Sends in flight at once within one batch.
const SEND_CONCURRENCY: usize = 16;
/// Failed attempts of one step (deferrals, errors) before the lead leaves the campaign.
const MAX_STEP_FAILURES: u32 = 8;
/// Template fuel per render: bounds loops in a template.
const TEMPLATE_FUEL: u64 = 50_000;
/// Lines of a lead's timeline returned at most.
pub const MAX_TIMELINE: u32 = 500;
/// Leads one `enrollLeads` call names at most.
pub const MAX_ENROLL_IDS: usize = 1000;
/// Entries after which the planner's statistics are refreshed (a first activation over a large
/// segment would otherwise leave the claim planned for an empty table).
const ANALYZE_AFTER: u64 = 10_000;
/// Campaigns per workspace.
pub const MAX_CAMPAIGNS: usize = 1000;
/// Where the link signing secret is kept.
const LINK_SECRET_SETTING: &str = "mail.link_secret";

/// The variables a template may name.
pub const TEMPLATE_VARIABLES: [&str; 13] = [
    "firstName",
    "lastName",
    "email",
    "title",
    "companyName",
    "companyDomain",
    "country",
    "phone",
    "owner",
    "source",
    "customFields",
    "unsubscribeUrl",
    "campaignName",
];

/// What time it is for the campaign machinery (tests and benchmarks set it).
pub type WallClock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// A campaign as the API takes it in.
#[derive(Clone, Debug)]
pub struct CampaignDraft {
    pub name: String,
    pub definition: CampaignDefinition,
}

/// A rendered email, for previews.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedEmail {
    pub from: String,
    pub to: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub variant: u32,
    pub message_id: String,
    pub unsubscribe_url: String,
}

/// What one pass of `run_due` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    pub claimed: u64,
    pub stopped: u64,
    pub batches: u64,
}

/// How the service reaches the outside: the mailer, the links' base URL and host name.
#[derive(Clone)]
struct Outbound {
    mailer: Arc<Mailer>,
    public_url: String,
    message_host: String,
}

#[derive(Clone)]
pub struct CampaignService {
    store: Store,
    queue: Queue,
    bus: Bus,
    leads: LeadService,
    crm: CrmService,
    enrichment: EnrichmentService,
    outbound: Arc<RwLock<Outbound>>,
    verifier: Arc<RwLock<crate::mail::inbound::Verifier>>,
    clock: Arc<RwLock<WallClock>>,
    link_key: Arc<tokio::sync::OnceCell<Vec<u8>>>,
    metrics: super::campaign_metrics::CampaignMetrics,
}

impl std::fmt::Debug for CampaignService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CampaignService")
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(ValidationErrors(vec![FieldError::new(
        field,
        FieldErrorCode::Invalid,
        message,
    )]))
}

fn transient(e: impl std::fmt::Display) -> JobError {
    JobError::Transient(e.to_string())
}

/// The template environment: sandboxed, fuel-bounded, HTML escaped for `.html` names.
fn template_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
    env
}

/// Checks that `source` parses and names only known variables.
fn check_template(
    env: &minijinja::Environment<'_>,
    field: &str,
    source: &str,
    html: bool,
) -> Result<(), FieldError> {
    let name = if html { "body.html" } else { "body.txt" };
    let template = env
        .template_from_named_str(name, source)
        .map_err(|e| FieldError::invalid(field, format!("the template does not parse: {e}")))?;
    let mut unknown: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !TEMPLATE_VARIABLES.contains(&v.as_str()))
        .collect();
    unknown.sort();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(FieldError::invalid(
            field,
            format!(
                "unknown template variable(s) {}; known: {}",
                unknown.join(", "),
                TEMPLATE_VARIABLES.join(", ")
            ),
        ))
    }
}

fn render(
    env: &minijinja::Environment<'_>,
    source: &str,
    html: bool,
    ctx: &minijinja::Value,
) -> Result<String, String> {
    let name = if html { "body.html" } else { "body.txt" };
    env.template_from_named_str(name, source)
        .and_then(|t| t.render(ctx))
        .map_err(|e| format!("the template cannot be rendered: {e}"))
}

/// The variables of a lead: absent fields are left out, so `default(…)` fills them in.
fn lead_context(lead: &Lead, campaign: &Campaign, unsubscribe_url: &str) -> minijinja::Value {
    let mut vars = serde_json::Map::new();
    let mut put = |key: &str, v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            vars.insert(key.to_owned(), serde_json::Value::String(v.to_owned()));
        }
    };
    put("firstName", lead.first_name.as_deref());
    put("lastName", lead.last_name.as_deref());
    put("email", lead.email.as_ref().map(|e| e.as_str()));
    put("title", lead.title.as_deref());
    put("companyName", lead.company_name.as_deref());
    put("companyDomain", lead.company_domain.as_ref().map(|d| d.as_str()));
    put("country", lead.country.as_ref().map(|c| c.as_str()));
    put("phone", lead.phone.as_ref().map(|p| p.as_str()));
    put("owner", lead.owner.as_deref());
    put("source", lead.source.as_deref());
    put("unsubscribeUrl", Some(unsubscribe_url));
    put("campaignName", Some(&campaign.name));
    vars.insert(
        "customFields".into(),
        serde_json::Value::Object(lead.custom_fields.as_map().clone().into_iter().collect()),
    );
    minijinja::Value::from(minijinja::value::Serde(serde_json::Value::Object(vars)))
}

/// Start of the hour of `at`.
fn hour_start(at: Timestamp) -> Timestamp {
    at.duration_trunc(TimeDelta::hours(1)).unwrap_or(at)
}

/// Start of `at`'s day in `tz`, in UTC (`at` itself if that midnight does not exist).
fn day_start(at: Timestamp, tz: chrono_tz::Tz) -> Timestamp {
    at.with_timezone(&tz)
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .and_then(|d| d.and_local_timezone(tz).earliest())
        .map_or(at, |d| d.with_timezone(&chrono::Utc))
        .min(at)
}

/// Appends the campaign's tracking to every `http(s)://` link of a text body.
fn track_links(body: &str, wrap: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(i) = rest.find("http") {
        let candidate = &rest[i..];
        if !(candidate.starts_with("http://") || candidate.starts_with("https://")) {
            out.push_str(&rest[..i + 4]);
            rest = &rest[i + 4..];
            continue;
        }
        out.push_str(&rest[..i]);
        let end = candidate
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\''))
            .unwrap_or(candidate.len());
        let url = candidate[..end].trim_end_matches(['.', ',', ')', ';']);
        out.push_str(&wrap(url));
        rest = &candidate[url.len()..];
    }
    out.push_str(rest);
    out
}

impl CampaignService {
    pub fn new(
        store: Store,
        queue: Queue,
        bus: Bus,
        leads: LeadService,
        crm: CrmService,
        enrichment: EnrichmentService,
    ) -> Self {
        let folder = std::path::PathBuf::from("mail-outbox");
        Self {
            store,
            queue,
            bus,
            leads,
            crm,
            enrichment,
            outbound: Arc::new(RwLock::new(Outbound {
                mailer: Arc::new(Mailer::Folder { dir: folder }),
                public_url: "http://127.0.0.1:8080".into(),
                message_host: "leadgate.local".into(),
            })),
            verifier: Arc::new(RwLock::new(crate::mail::inbound::Verifier::new())),
            clock: Arc::new(RwLock::new(Arc::new(now))),
            link_key: Arc::new(tokio::sync::OnceCell::new()),
            metrics: super::campaign_metrics::CampaignMetrics::new(),
        }
    }

    /// Sets how mail leaves and the base URL of unsubscribe and click links.
    pub fn set_outbound(&self, mailer: Mailer, public_url: &str) {
        let public_url = public_url.trim_end_matches('/').to_owned();
        let message_host = url::Url::parse(&public_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .filter(|h| h.contains('.') && h.parse::<std::net::IpAddr>().is_err())
            .unwrap_or_else(|| "leadgate.local".into());
        if let Ok(mut o) = self.outbound.write() {
            *o = Outbound {
                mailer: Arc::new(mailer),
                public_url,
                message_host,
            };
        }
    }

    /// Sets the keys inbound mail events are verified with.
    pub fn set_mail_verifier(&self, verifier: crate::mail::inbound::Verifier) {
        if let Ok(mut v) = self.verifier.write() {
            *v = verifier;
        }
    }

    /// Verifies, parses and applies a mail provider's POST to `/webhooks/email/{provider}`.
    /// Answers the HTTP status and a message: 200 with what was applied, 400 for a malformed
    /// body, 401 for a bad signature, 404 for an unknown or unconfigured provider. Nothing is
    /// applied unless the whole request verified and parsed.
    pub async fn receive_mail_webhook(
        &self,
        provider: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> (u16, String) {
        use crate::mail::inbound::{Provider, Request, receive};
        let Ok(kind) = provider.parse::<Provider>() else {
            return (
                404,
                format!("no mail provider '{provider}': use generic, mailgun or sendgrid"),
            );
        };
        let lowered: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        let verifier = self
            .verifier
            .read()
            .map(|v| v.clone())
            .unwrap_or_else(|e| e.into_inner().clone());
        let request = Request::new(&lowered, None, body, chrono::Utc::now());
        let events = match receive(kind, &verifier, &request) {
            Ok(events) => events,
            Err(e) => {
                tracing::info!(provider = kind.as_str(), error = %e, "refused a mail event request");
                return (e.http_status(), e.to_string());
            }
        };
        let received = events.len();
        match self.receive_mail_events(kind.as_str(), events).await {
            Ok(applied) => (200, format!("{received} event(s) received, {applied} new")),
            Err(e) => {
                tracing::error!(error = %e, "cannot apply mail events");
                (500, "internal error".into())
            }
        }
    }

    /// Replaces the clock the scheduler reads (tests, benchmarks).
    pub fn set_clock(&self, clock: WallClock) {
        if let Ok(mut c) = self.clock.write() {
            *c = clock;
        }
    }

    fn now(&self) -> Timestamp {
        self.clock.read().map_or_else(|_| now(), |c| c())
    }

    fn outbound(&self) -> Outbound {
        self.outbound
            .read()
            .map(|o| o.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// What the mailer is, for the start-up log.
    pub fn describe_mail(&self) -> String {
        self.outbound().mailer.describe()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Steps, sends and inbound mail events counted (`/metrics`).
    pub fn metrics(&self) -> &super::campaign_metrics::CampaignMetrics {
        &self.metrics
    }

    // ---------------------------------------------------------------- use cases

    fn validate(&self, draft: &CampaignDraft) -> Result<(), ServiceError> {
        draft
            .definition
            .validate(&draft.name)
            .map_err(ServiceError::Invalid)?;
        let env = template_env();
        let mut errors = Vec::new();
        for (i, step) in draft.definition.steps.iter().enumerate() {
            if let StepAction::Email(email) = &step.action {
                for n in 0..email.variant_count() {
                    let (subject, body, html) = email.variant(n);
                    let prefix = if n == 0 {
                        format!("steps.{i}.email")
                    } else {
                        format!("steps.{i}.email.variants.{}", n - 1)
                    };
                    for (field, source, is_html) in [
                        ("subject", Some(subject), false),
                        ("body", Some(body), false),
                        ("html", html, true),
                    ] {
                        if let Some(source) = source
                            && let Err(e) =
                                check_template(&env, &format!("{prefix}.{field}"), source, is_html)
                        {
                            errors.push(e);
                        }
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::Invalid(ValidationErrors(errors)))
        }
    }

    async fn check_connections(
        &self,
        actor: &Actor,
        definition: &CampaignDefinition,
    ) -> Result<(), ServiceError> {
        for (i, step) in definition.steps.iter().enumerate() {
            if let StepAction::CrmPush { connection_id } = &step.action {
                let id = crate::domain::CrmConnectionId::from_uuid(*connection_id);
                if self.store.crm_connection(actor.workspace_id, id).await?.is_none() {
                    return Err(invalid(
                        &format!("steps.{i}.crmPush.connectionId"),
                        "no CRM connection of this workspace has this id",
                    ));
                }
            }
        }
        Ok(())
    }

    pub async fn create(&self, actor: &Actor, draft: CampaignDraft) -> Result<Campaign, ServiceError> {
        actor.require_admin()?;
        self.validate(&draft)?;
        self.check_connections(actor, &draft.definition).await?;
        let existing = self
            .store
            .campaigns(actor.workspace_id, &[], &KeysetPage::first(MAX_CAMPAIGNS + 1))
            .await?;
        if existing.items.len() >= MAX_CAMPAIGNS {
            return Err(ServiceError::Refused("a workspace holds at most 1000 campaigns"));
        }
        let at = now();
        let campaign = Campaign {
            id: CampaignId::new(),
            workspace_id: actor.workspace_id,
            name: draft.name.trim().to_owned(),
            state: CampaignState::Draft,
            definition: draft.definition,
            version: 1,
            segment_at: None,
            event_cursor: 0,
            created_at: at,
            updated_at: at,
            activated_at: None,
            paused_at: None,
        };
        self.store.save_campaign(&campaign).await?;
        Ok(campaign)
    }

    pub async fn get(&self, actor: &Actor, id: CampaignId) -> Result<Option<Campaign>, ServiceError> {
        require_internal(actor)?;
        Ok(self.store.campaign(actor.workspace_id, id).await?)
    }

    async fn load(&self, actor: &Actor, id: CampaignId) -> Result<Campaign, ServiceError> {
        self.get(actor, id)
            .await?
            .ok_or(ServiceError::NotFound("campaign"))
    }

    pub async fn list(
        &self,
        actor: &Actor,
        states: &[CampaignState],
        page: &KeysetPage<CampaignId>,
    ) -> Result<Paged<Campaign>, ServiceError> {
        require_internal(actor)?;
        Ok(self.store.campaigns(actor.workspace_id, states, page).await?)
    }

    /// Replaces a campaign's name and definition. A running (active or paused) campaign keeps
    /// its steps in place: they can be edited and appended to, not removed or reordered.
    pub async fn update(
        &self,
        actor: &Actor,
        id: CampaignId,
        draft: CampaignDraft,
    ) -> Result<Campaign, ServiceError> {
        actor.require_admin()?;
        let mut campaign = self.load(actor, id).await?;
        if matches!(campaign.state, CampaignState::Completed | CampaignState::Archived) {
            return Err(invalid(
                "id",
                format!("a {} campaign cannot be changed", campaign.state.as_str()),
            ));
        }
        self.validate(&draft)?;
        self.check_connections(actor, &draft.definition).await?;
        if matches!(campaign.state, CampaignState::Active | CampaignState::Paused) {
            draft
                .definition
                .check_steps_kept(&campaign.definition)
                .map_err(ServiceError::Invalid)?;
        }
        campaign.name = draft.name.trim().to_owned();
        campaign.definition = draft.definition;
        campaign.version += 1;
        campaign.updated_at = now();
        self.store.save_campaign(&campaign).await?;
        Ok(campaign)
    }

    async fn set_state(
        &self,
        actor: &Actor,
        id: CampaignId,
        from: &[CampaignState],
        to: CampaignState,
    ) -> Result<Campaign, ServiceError> {
        actor.require_admin()?;
        let mut campaign = self.load(actor, id).await?;
        if campaign.state == to {
            return Ok(campaign);
        }
        if !from.contains(&campaign.state) {
            return Err(invalid(
                "id",
                format!(
                    "a {} campaign cannot become {}",
                    campaign.state.as_str(),
                    to.as_str()
                ),
            ));
        }
        let at = self.now();
        let was = campaign.state;
        campaign.state = to;
        campaign.version += 1;
        campaign.updated_at = at;
        match to {
            CampaignState::Active if campaign.activated_at.is_none() => campaign.activated_at = Some(at),
            CampaignState::Paused => campaign.paused_at = Some(at),
            _ => {}
        }
        self.store.save_campaign(&campaign).await?;
        let events = self
            .store
            .append_events(&[NewEvent {
                workspace_id: campaign.workspace_id,
                kind: CAMPAIGN_STATE,
                subject_id: Some(campaign.id.as_uuid()),
                payload: serde_json::json!({
                    "campaignId": campaign.id.to_string(),
                    "from": was.as_str(),
                    "to": to.as_str(),
                }),
                at,
            }])
            .await?;
        self.bus.publish(events);
        Ok(campaign)
    }

    /// Activates a draft (enrolling its segment at once) or resumes a paused campaign (each
    /// lead continues where it was; windows that passed meanwhile are not made up for).
    /// Returns the campaign and how many leads entered now.
    pub async fn activate(&self, actor: &Actor, id: CampaignId) -> Result<(Campaign, u64), ServiceError> {
        let before = self.load(actor, id).await?;
        let campaign = self
            .set_state(
                actor,
                id,
                &[CampaignState::Draft, CampaignState::Paused],
                CampaignState::Active,
            )
            .await?;
        let entered = if before.state == CampaignState::Draft {
            // lead changes from now on are looked at for entries; the segment as it is now
            // enters at once
            let head = self.bus.head(campaign.workspace_id).await?;
            self.store
                .advance_campaign_cursor(campaign.id, campaign.event_cursor, head)
                .await?;
            self.evaluate_segment(&campaign, None).await?
        } else {
            0
        };
        self.wake().await;
        Ok((campaign, entered))
    }

    pub async fn pause(&self, actor: &Actor, id: CampaignId) -> Result<Campaign, ServiceError> {
        self.set_state(actor, id, &[CampaignState::Active], CampaignState::Paused)
            .await
    }

    pub async fn archive(&self, actor: &Actor, id: CampaignId) -> Result<Campaign, ServiceError> {
        let campaign = self
            .set_state(
                actor,
                id,
                &[
                    CampaignState::Draft,
                    CampaignState::Active,
                    CampaignState::Paused,
                    CampaignState::Completed,
                ],
                CampaignState::Archived,
            )
            .await?;
        Ok(campaign)
    }

    /// Enrolls the segment's matching leads (all, or those among `only`), honouring the
    /// campaign's entry rule. Returns how many entered.
    async fn evaluate_segment(
        &self,
        campaign: &Campaign,
        only: Option<&[LeadId]>,
    ) -> Result<u64, ServiceError> {
        let filter = filter_from_json(&campaign.definition.segment.filter)
            .map_err(|e| invalid("segment.filter", e))?;
        let at = self.now();
        let due = campaign.definition.starts_at.map_or(at, |s| s.max(at));
        let reentry = campaign
            .definition
            .segment
            .reentry_after_days
            .map(|days| at - TimeDelta::days(i64::from(days)));
        let entered = self
            .store
            .enroll_matching(campaign, &filter, only, due, reentry, at)
            .await?;
        if entered >= ANALYZE_AFTER {
            self.store.analyze_enrollments().await?;
        }
        Ok(entered)
    }

    /// Enrolls the given leads of the workspace whether or not the segment matches them (not
    /// archived ones); returns how many entered.
    pub async fn enroll(&self, actor: &Actor, id: CampaignId, leads: &[LeadId]) -> Result<u64, ServiceError> {
        actor.require_admin()?;
        if leads.is_empty() || leads.len() > MAX_ENROLL_IDS {
            return Err(invalid("leadIds", format!("name 1 to {MAX_ENROLL_IDS} leads")));
        }
        let campaign = self.load(actor, id).await?;
        if !matches!(campaign.state, CampaignState::Active | CampaignState::Paused) {
            return Err(invalid("id", "leads enter an active or paused campaign only"));
        }
        let at = self.now();
        let due = campaign.definition.starts_at.map_or(at, |s| s.max(at));
        let entered = self
            .store
            .enroll_matching(
                &campaign,
                &crate::domain::LeadFilter::default(),
                Some(leads),
                due,
                None,
                at,
            )
            .await?;
        self.wake().await;
        Ok(entered)
    }

    /// Takes leads out of a campaign (stop rule `manual`); returns how many left.
    pub async fn unenroll(
        &self,
        actor: &Actor,
        id: CampaignId,
        leads: &[LeadId],
    ) -> Result<u64, ServiceError> {
        actor.require_admin()?;
        if leads.is_empty() || leads.len() > MAX_ENROLL_IDS {
            return Err(invalid("leadIds", format!("name 1 to {MAX_ENROLL_IDS} leads")));
        }
        let campaign = self.load(actor, id).await?;
        let left = self
            .store
            .exit_enrollments(actor.workspace_id, campaign.id, leads, "manual", self.now())
            .await?;
        Ok(left.len() as u64)
    }

    pub async fn stats(&self, actor: &Actor, id: CampaignId) -> Result<CampaignStats, ServiceError> {
        let campaign = self.load(actor, id).await?;
        Ok(self.store.campaign_stats(campaign.id).await?)
    }

    pub async fn timeline(&self, actor: &Actor, lead: LeadId) -> Result<Vec<Activity>, ServiceError> {
        require_internal(actor)?;
        Ok(self
            .store
            .lead_timeline(actor.workspace_id, lead, MAX_TIMELINE)
            .await?)
    }

    pub async fn suppressions(&self, actor: &Actor, limit: u32) -> Result<Vec<Suppression>, ServiceError> {
        actor.require_admin()?;
        Ok(self
            .store
            .suppressions(actor.workspace_id, limit.min(1000))
            .await?)
    }

    /// Adds an address to the workspace's suppression list (reason `manual`).
    pub async fn suppress(&self, actor: &Actor, email: &str) -> Result<bool, ServiceError> {
        actor.require_admin()?;
        let email = EmailAddress::parse("email", email)
            .map_err(|e| ServiceError::Invalid(ValidationErrors(vec![e])))?;
        let hash = EmailHash::of(actor.workspace_id, &email);
        Ok(self
            .store
            .suppress(
                actor.workspace_id,
                hash.as_str(),
                Some(email.as_str()),
                "manual",
                self.now(),
            )
            .await?)
    }

    pub async fn unsuppress(&self, actor: &Actor, email: &str) -> Result<bool, ServiceError> {
        actor.require_admin()?;
        let email = EmailAddress::parse("email", email)
            .map_err(|e| ServiceError::Invalid(ValidationErrors(vec![e])))?;
        let hash = EmailHash::of(actor.workspace_id, &email);
        Ok(self.store.unsuppress(actor.workspace_id, hash.as_str()).await?)
    }

    /// The message a step would send to a lead now (its variant, sender and links included).
    pub async fn preview(
        &self,
        actor: &Actor,
        id: CampaignId,
        step_key: &str,
        lead: LeadId,
    ) -> Result<RenderedEmail, ServiceError> {
        let campaign = self.load(actor, id).await?;
        let index = campaign
            .definition
            .step_index(step_key)
            .ok_or_else(|| invalid("stepId", format!("the campaign has no step keyed '{step_key}'")))?;
        let StepAction::Email(email) = &campaign.definition.steps[index].action else {
            return Err(invalid("stepId", "the step is not an email"));
        };
        let lead = self
            .store
            .lead(actor.workspace_id, lead)
            .await?
            .ok_or(ServiceError::NotFound("lead"))?;
        let entry = self
            .store
            .enrollment(campaign.id, lead.id)
            .await?
            .map_or(1, |e| e.entry);
        let sender = self.sender_for(&campaign, email, &lead, index as u32, 0);
        self.render_email(&campaign, email, &lead, index as u32, entry, sender)
            .await
            .map_err(|e| invalid("stepId", e))
    }

    fn sender_for<'c>(
        &self,
        campaign: &'c Campaign,
        email: &EmailStep,
        lead: &Lead,
        step: u32,
        offset: usize,
    ) -> &'c Sender {
        let senders = &campaign.definition.senders;
        if let Some(fixed) = &email.sender
            && let Some(s) = senders.iter().find(|s| s.email.eq_ignore_ascii_case(fixed))
        {
            return s;
        }
        let start = time::variant_for(
            lead.id.as_uuid(),
            campaign.id.as_uuid(),
            10_000 + step,
            senders.len() as u32,
        ) as usize;
        &senders[(start + offset) % senders.len()]
    }

    async fn render_email(
        &self,
        campaign: &Campaign,
        email: &EmailStep,
        lead: &Lead,
        step: u32,
        entry: u32,
        sender: &Sender,
    ) -> Result<RenderedEmail, String> {
        let outbound = self.outbound();
        let variant = time::variant_for(
            lead.id.as_uuid(),
            campaign.id.as_uuid(),
            step,
            email.variant_count(),
        );
        let (subject, body, html) = email.variant(variant);
        let message_id = message_id(campaign.id, lead.id, entry, step, &outbound.message_host);
        let key = self.link_key().await.map_err(|e| e.to_string())?;
        let unsubscribe_url = format!(
            "{}/u/{}",
            outbound.public_url,
            sign_token(
                &key,
                &format!("u\n{}\n{}\n{}", campaign.workspace_id, lead.id, campaign.id)
            )
        );
        let env = template_env();
        let ctx = lead_context(lead, campaign, &unsubscribe_url);
        let subject = render(&env, subject, false, &ctx)?;
        let mut text = render(&env, body, false, &ctx)?;
        let mut html = html.map(|h| render(&env, h, true, &ctx)).transpose()?;
        if campaign.definition.track_clicks {
            let wrap = |url: &str| {
                format!(
                    "{}/c/{}",
                    outbound.public_url,
                    sign_token(&key, &format!("c\n{message_id}\n{url}"))
                )
            };
            text = track_links(&text, wrap);
            html = html.map(|h| track_links(&h, wrap));
        }
        Ok(RenderedEmail {
            from: sender.email.clone(),
            to: lead.email.as_ref().map(|e| e.as_str().to_owned()),
            subject: subject.replace(['\r', '\n'], " "),
            text,
            html,
            variant,
            message_id,
            unsubscribe_url,
        })
    }

    async fn link_key(&self) -> Result<Vec<u8>, StoreError> {
        let store = self.store.clone();
        self.link_key
            .get_or_try_init(|| async move {
                let fresh: [u8; 32] = rand::random();
                let stored = store
                    .setting_or_insert(LINK_SECRET_SETTING, &URL_SAFE_NO_PAD.encode(fresh))
                    .await?;
                Ok(URL_SAFE_NO_PAD.decode(stored).unwrap_or_else(|_| fresh.to_vec()))
            })
            .await
            .cloned()
    }

    // ---------------------------------------------------------------- scheduler

    /// Queues an immediate tick (one at a time).
    pub async fn wake(&self) {
        let job = NewJob::new(CAMPAIGN_TICK, serde_json::json!({}))
            .unique("campaign.tick:now", crate::domain::Duplicate::Keep);
        if let Err(e) = self.queue.enqueue(job).await {
            tracing::warn!(error = %e, "cannot queue a campaign tick");
        }
    }

    /// One tick: enters leads changed since the last look, claims due steps and queues them as
    /// `campaign.steps` jobs. Returns what it claimed.
    pub async fn tick(&self) -> Result<RunReport, ServiceError> {
        let report = self.claim_batches(TICK_BATCHES, Handoff::Queue).await?;
        if report.batches >= u64::from(TICK_BATCHES) {
            self.wake().await;
        }
        Ok(report)
    }

    /// Claims and runs every due step here and now, batch by batch (`leadgate campaigns
    /// run-due`); stops after `max_batches`.
    pub async fn run_due(&self, max_batches: u32) -> Result<RunReport, ServiceError> {
        self.claim_batches(max_batches, Handoff::RunHere).await
    }

    /// Claims up to `max_batches` batches of due steps, each handed to the queue or run here.
    async fn claim_batches(&self, max_batches: u32, handoff: Handoff) -> Result<RunReport, ServiceError> {
        self.complete_ended().await?;
        self.enter_changed_leads().await?;
        let mut report = RunReport::default();
        for _ in 0..max_batches {
            let at = self.now();
            let token = uuid::Uuid::now_v7().to_string();
            let (claimed, stopped) = self
                .store
                .claim_due_steps(STEP_BATCH, &token, at + STEP_LEASE, at)
                .await?;
            report.stopped += stopped.len() as u64;
            self.bus.publish(stopped);
            let full = claimed.len() as u32 >= STEP_BATCH;
            if claimed.is_empty() {
                break;
            }
            report.claimed += claimed.len() as u64;
            report.batches += 1;
            match handoff {
                Handoff::Queue => {
                    let ids: Vec<i64> = claimed.iter().map(|e| e.id).collect();
                    let job = NewJob::new(
                        CAMPAIGN_STEPS,
                        serde_json::json!({"token": token, "enrollments": ids}),
                    );
                    self.queue.enqueue(job).await?;
                    if !full {
                        break;
                    }
                }
                Handoff::RunHere => self.execute(&token, claimed).await.map_err(|e| match e {
                    JobError::Transient(m) | JobError::Permanent(m) | JobError::RetryAfter(_, m) => {
                        ServiceError::Internal(StoreError::Database(m.into()))
                    }
                })?,
            }
        }
        Ok(report)
    }

    /// Active campaigns whose end has passed become `COMPLETED`; the leads still in them leave
    /// with `campaignEnded`.
    async fn complete_ended(&self) -> Result<(), ServiceError> {
        let at = self.now();
        for mut campaign in self.store.active_campaigns().await? {
            if campaign.definition.ends_at.is_none_or(|end| end > at) {
                continue;
            }
            self.store
                .end_enrollments(campaign.id, "campaignEnded", at)
                .await?;
            campaign.state = CampaignState::Completed;
            campaign.version += 1;
            campaign.updated_at = at;
            match self.store.save_campaign(&campaign).await {
                // another instance completed it first
                Err(StoreError::VersionMismatch) => continue,
                other => other?,
            }
            let events = self
                .store
                .append_events(&[NewEvent {
                    workspace_id: campaign.workspace_id,
                    kind: CAMPAIGN_STATE,
                    subject_id: Some(campaign.id.as_uuid()),
                    payload: serde_json::json!({
                        "campaignId": campaign.id.to_string(),
                        "from": "active",
                        "to": "completed",
                    }),
                    at,
                }])
                .await?;
            self.bus.publish(events);
        }
        Ok(())
    }

    /// Re-evaluates the segment of every active campaign (new matches enter; re-entry as the
    /// campaign allows); returns how many entered.
    pub async fn refresh_segments(&self) -> Result<u64, ServiceError> {
        // the longest cap window is a day: older counters count nothing any more
        self.store
            .prune_send_counters(self.now() - TimeDelta::days(2))
            .await?;
        let mut entered = 0;
        for campaign in self.store.active_campaigns().await? {
            entered += self.evaluate_segment(&campaign, None).await?;
        }
        if entered > 0 {
            self.wake().await;
        }
        Ok(entered)
    }

    /// Looks at the lead events each active campaign has not seen: changed leads that now
    /// match enter, and enrollments waiting for a field change wake up. Only lead change events
    /// are read (up to the workspace's newest number when the look starts); the cursor then
    /// moves past everything else too.
    async fn enter_changed_leads(&self) -> Result<(), ServiceError> {
        const PAGE: u32 = 1000;
        for campaign in self.store.active_campaigns().await? {
            let head = self.store.event_head(campaign.workspace_id).await?;
            let mut cursor = campaign.event_cursor;
            while cursor < head {
                let events = self
                    .store
                    .events_of_types(
                        campaign.workspace_id,
                        &crate::domain::LEAD_CHANGE_TYPES,
                        cursor,
                        head,
                        PAGE,
                    )
                    .await?;
                let next = match events.last() {
                    Some(last) if events.len() as u32 == PAGE => last.seq,
                    _ => head,
                };
                let mut changed = Vec::new();
                for e in &events {
                    let Some(id) = e.subject_id.map(LeadId::from_uuid) else {
                        continue;
                    };
                    changed.push(id);
                    if let Some(fields) = e.payload.get("changedFields").and_then(|c| c.as_array()) {
                        for f in fields.iter().filter_map(|f| f.as_str()) {
                            self.store
                                .wake_waiting(campaign.workspace_id, id, &format!("field:{f}"), self.now())
                                .await?;
                        }
                    }
                }
                changed.sort();
                changed.dedup();
                if !changed.is_empty() {
                    self.evaluate_segment(&campaign, Some(&changed)).await?;
                }
                if !self
                    .store
                    .advance_campaign_cursor(campaign.id, cursor, next)
                    .await?
                {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    /// Runs the steps a `campaign.steps` job holds.
    pub async fn run_steps(&self, job: &crate::domain::Job) -> Result<(), JobError> {
        let token = job
            .payload
            .get("token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| JobError::Permanent("the payload has no lease token".into()))?
            .to_owned();
        let ids: Vec<i64> = job
            .payload
            .get("enrollments")
            .and_then(|t| t.as_array())
            .map(|a| a.iter().filter_map(serde_json::Value::as_i64).collect())
            .unwrap_or_default();
        let held = self
            .store
            .held_enrollments(&ids, &token)
            .await
            .map_err(transient)?;
        self.execute(&token, held).await
    }

    /// Executes claimed enrollments and writes their outcomes.
    async fn execute(&self, token: &str, held: Vec<Enrollment>) -> Result<(), JobError> {
        if held.is_empty() {
            return Ok(());
        }
        let at = self.now();
        let mut campaign_ids: Vec<CampaignId> = held.iter().map(|e| e.campaign_id).collect();
        campaign_ids.sort();
        campaign_ids.dedup();
        let campaigns: HashMap<CampaignId, Campaign> = self
            .store
            .campaigns_by_ids(&campaign_ids)
            .await
            .map_err(transient)?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
        let mut by_ws: HashMap<WorkspaceId, Vec<LeadId>> = HashMap::new();
        for e in &held {
            by_ws.entry(e.workspace_id).or_default().push(e.lead_id);
        }
        let mut leads: HashMap<LeadId, Lead> = HashMap::new();
        for (ws, ids) in by_ws {
            for lead in self.store.leads_by_ids(ws, &ids).await.map_err(transient)? {
                leads.insert(lead.id, lead);
            }
        }
        let mut outcomes = Vec::with_capacity(held.len());
        let mut emails = Vec::new();
        for e in held {
            let Some(campaign) = campaigns.get(&e.campaign_id) else {
                continue;
            };
            let Some(lead) = leads.get(&e.lead_id) else {
                outcomes.push(exit(&e, "leadGone", at));
                continue;
            };
            if campaign.state != CampaignState::Active {
                // paused after the claim: the step waits, due as it was
                outcomes.push(StepOutcome {
                    enrollment_id: e.id,
                    next: Next::Later {
                        due_at: e.due_at.unwrap_or(at),
                        failed: false,
                    },
                    activity: Vec::new(),
                    events: Vec::new(),
                    message: None,
                });
                continue;
            }
            match self.plan(campaign, &e, lead, at).await {
                Ok(Planned::Done(o)) => outcomes.push(o),
                Ok(Planned::Email(p)) => emails.push(*p),
                Err(err) => outcomes.push(failed(&e, &err, at)),
            }
        }
        if !emails.is_empty() {
            outcomes.extend(self.send_all(emails, at).await.map_err(transient)?);
        }
        let events = self
            .store
            .finish_steps(token, &outcomes, at)
            .await
            .map_err(transient)?;
        for line in outcomes.iter().flat_map(|o| &o.activity) {
            self.metrics.step(&line.kind, &line.outcome);
        }
        let more = outcomes
            .iter()
            .any(|o| matches!(o.next, Next::Step { due_at: Some(d), .. } if d <= at));
        self.bus.publish(events);
        if more {
            self.wake().await;
        }
        Ok(())
    }

    /// Decides what one enrollment's step does; emails are returned to be sent together.
    async fn plan(
        &self,
        campaign: &Campaign,
        e: &Enrollment,
        lead: &Lead,
        at: Timestamp,
    ) -> Result<Planned, String> {
        let def = &campaign.definition;
        if def.ends_at.is_some_and(|end| at >= end) {
            return Ok(Planned::Done(exit(e, "campaignEnded", at)));
        }
        let index = e.step as usize;
        let Some(step) = def.steps.get(index) else {
            return Ok(Planned::Done(StepOutcome {
                enrollment_id: e.id,
                next: Next::Completed,
                activity: vec![activity(e, None, "completed", "completed", None, None, at)],
                events: vec![step_event(campaign, e, None, "completed", "completed", at)],
                message: None,
            }));
        };
        let zone = time::lead_zone(
            lead.time_zone.as_ref().map(|z| z.as_str()),
            lead.country.as_ref().map(|c| c.as_str()),
            def.zone(),
        );
        let step_no = e.step;
        let kind = step.action.kind();
        let next = |due: Option<Timestamp>| Next::Step {
            step: step_no + 1,
            due_at: due,
            waiting_for: None,
        };
        let done = |next: Next, outcome: &str, detail: Option<String>| {
            Planned::Done(StepOutcome {
                enrollment_id: e.id,
                next,
                activity: vec![activity(
                    e,
                    Some(step_no),
                    kind,
                    outcome,
                    None,
                    detail.clone(),
                    at,
                )],
                events: vec![step_event(campaign, e, Some(step_no), kind, outcome, at)],
                message: None,
            })
        };
        Ok(match &step.action {
            StepAction::Email(email) => {
                if let Some(window) = &def.send_window
                    && !window.is_open(at, zone)
                {
                    return Ok(Planned::Done(StepOutcome {
                        enrollment_id: e.id,
                        next: Next::Later {
                            due_at: window.next_open(at, zone),
                            failed: false,
                        },
                        activity: Vec::new(),
                        events: Vec::new(),
                        message: None,
                    }));
                }
                let Some(address) = &lead.email else {
                    return Ok(done(
                        next(Some(at)),
                        "skipped",
                        Some("the lead has no email address".into()),
                    ));
                };
                let hash = EmailHash::of(lead.workspace_id, address);
                if !self
                    .store
                    .suppressed(lead.workspace_id, &[hash.as_str().to_owned()])
                    .await
                    .map_err(|e| e.to_string())?
                    .is_empty()
                {
                    return Ok(Planned::Done(StepOutcome {
                        enrollment_id: e.id,
                        next: Next::Exited {
                            reason: "suppressed".into(),
                        },
                        activity: vec![activity(
                            e,
                            Some(step_no),
                            kind,
                            "suppressed",
                            None,
                            Some("the address is on the suppression list".into()),
                            at,
                        )],
                        events: vec![step_event(campaign, e, Some(step_no), kind, "suppressed", at)],
                        message: None,
                    }));
                }
                // a cap: try each mailbox once, starting from the lead's own
                let mut chosen = None;
                let mut wait_until = None;
                for offset in 0..def.senders.len() {
                    let sender = self.sender_for(campaign, email, lead, step_no, offset);
                    let scopes = self.scopes(campaign, sender, address, at);
                    if self
                        .store
                        .take_send_slots(&scopes)
                        .await
                        .map_err(|e| e.to_string())?
                    {
                        chosen = Some(sender);
                        break;
                    }
                    let hourly = scopes.iter().any(|(s, _, _)| s.ends_with(":h"));
                    let day = day_start(at, def.zone()) + TimeDelta::days(1);
                    let candidate = if hourly {
                        hour_start(at) + TimeDelta::hours(1)
                    } else {
                        day
                    };
                    wait_until = Some(wait_until.map_or(candidate, |w: Timestamp| w.min(candidate)));
                    if email.sender.is_some() {
                        break;
                    }
                }
                let Some(sender) = chosen else {
                    return Ok(Planned::Done(StepOutcome {
                        enrollment_id: e.id,
                        next: Next::Later {
                            due_at: wait_until.unwrap_or(at + TimeDelta::hours(1)),
                            failed: false,
                        },
                        activity: Vec::new(),
                        events: Vec::new(),
                        message: None,
                    }));
                };
                let rendered = self
                    .render_email(campaign, email, lead, step_no, e.entry, sender)
                    .await?;
                Planned::Email(Box::new(PlannedEmail {
                    enrollment: e.clone(),
                    campaign: campaign.clone(),
                    sender: sender.clone(),
                    rendered,
                    recipient: address.as_str().to_owned(),
                }))
            }
            StepAction::Wait(wait) => {
                let due = match (wait.duration_secs, &wait.until_time) {
                    (Some(secs), _) => at + TimeDelta::seconds(secs),
                    (None, Some(t)) => {
                        let time = time::parse_clock(t).map_err(|e| e.to_string())?;
                        let day = wait
                            .until_day
                            .as_deref()
                            .and_then(crate::domain::campaign::parse_weekday);
                        time::next_at(at, day, time, zone)
                    }
                    (None, None) => at,
                };
                done(
                    next(Some(due)),
                    "scheduled",
                    Some(format!("until {}", due.to_rfc3339())),
                )
            }
            StepAction::WaitFor(w) => {
                if e.waiting_for.is_none() {
                    let what = match w.event {
                        WaitEvent::FieldChange => format!("field:{}", w.field.clone().unwrap_or_default()),
                        other => other.as_str().to_owned(),
                    };
                    Planned::Done(StepOutcome {
                        enrollment_id: e.id,
                        next: Next::Step {
                            step: step_no,
                            due_at: Some(at + TimeDelta::seconds(w.timeout_secs)),
                            waiting_for: Some(what.clone()),
                        },
                        activity: vec![activity(e, Some(step_no), kind, "waiting", None, Some(what), at)],
                        events: Vec::new(),
                        message: None,
                    })
                } else {
                    let outcome = if e.matched { "matched" } else { "timedOut" };
                    done(next(Some(at)), outcome, None)
                }
            }
            StepAction::Branch(b) => {
                let holds = self.branch_holds(b, e, lead).await?;
                let target = if holds {
                    def.step_index(&b.then_step)
                } else {
                    b.else_step.as_deref().and_then(|k| def.step_index(k))
                }
                .map_or(step_no + 1, |i| i as u32);
                done(
                    Next::Step {
                        step: target,
                        due_at: Some(at),
                        waiting_for: None,
                    },
                    if holds { "then" } else { "else" },
                    Some(format!("to step {target}")),
                )
            }
            StepAction::Enrich { groups } => {
                let groups: Vec<Group> = groups.iter().filter_map(|g| Group::parse(g)).collect();
                match self
                    .enrichment
                    .enrich_leads(
                        &system_actor(campaign),
                        vec![lead.id],
                        groups,
                        Policy::FetchIfMissing,
                    )
                    .await
                {
                    Ok(job) => done(
                        next(Some(at)),
                        "queued",
                        Some(format!("enrichment job {}", job.id)),
                    ),
                    Err(ServiceError::Internal(err)) => return Err(err.to_string()),
                    Err(other) => done(next(Some(at)), "failed", Some(other.to_string())),
                }
            }
            StepAction::CrmPush { connection_id } => {
                let id = crate::domain::CrmConnectionId::from_uuid(*connection_id);
                match self
                    .crm
                    .sync_leads(&system_actor(campaign), id, SyncSelection::Ids(vec![lead.id]))
                    .await
                {
                    Ok(_) => done(next(Some(at)), "queued", None),
                    Err(ServiceError::Internal(err)) => return Err(err.to_string()),
                    Err(other) => done(next(Some(at)), "failed", Some(other.to_string())),
                }
            }
            StepAction::Webhook { label } => Planned::Done(StepOutcome {
                enrollment_id: e.id,
                next: next(Some(at)),
                activity: vec![activity(
                    e,
                    Some(step_no),
                    kind,
                    "emitted",
                    None,
                    label.clone(),
                    at,
                )],
                events: vec![NewEvent {
                    workspace_id: campaign.workspace_id,
                    kind: CAMPAIGN_STEP,
                    subject_id: Some(lead.id.as_uuid()),
                    payload: serde_json::json!({
                        "campaignId": campaign.id.to_string(),
                        "leadId": lead.id.to_string(),
                        "step": step_no,
                        "stepKey": step.key,
                        "type": "webhook",
                        "outcome": "emitted",
                        "label": label,
                        "lead": crate::domain::lead_snapshot(lead),
                    }),
                    at,
                }],
                message: None,
            }),
            StepAction::UpdateLead(u) => match self.update_lead(campaign, lead, u).await {
                Ok(()) => done(next(Some(at)), "updated", None),
                Err(ServiceError::Internal(err)) => return Err(err.to_string()),
                Err(other) => done(next(Some(at)), "failed", Some(other.to_string())),
            },
            StepAction::Exit => Planned::Done(StepOutcome {
                enrollment_id: e.id,
                next: Next::Exited {
                    reason: "exitStep".into(),
                },
                activity: vec![activity(e, Some(step_no), kind, "exited", None, None, at)],
                events: vec![step_event(campaign, e, Some(step_no), kind, "exited", at)],
                message: None,
            }),
        })
    }

    async fn branch_holds(&self, b: &BranchStep, e: &Enrollment, lead: &Lead) -> Result<bool, String> {
        if let Some(filter) = &b.filter {
            return Ok(filter_from_json(filter)?.matches(lead));
        }
        let Some(signal) = b.event else { return Ok(false) };
        if signal == MailSignal::WaitMatched {
            return Ok(e.matched);
        }
        let messages = self
            .store
            .entry_messages(e.campaign_id, e.lead_id, e.entry)
            .await
            .map_err(|e| e.to_string())?;
        Ok(messages.iter().any(|m| match signal {
            MailSignal::Delivered => m.delivered_at.is_some(),
            MailSignal::Replied => m.replied_at.is_some(),
            MailSignal::Clicked => m.clicked_at.is_some(),
            MailSignal::WaitMatched => false,
        }))
    }

    async fn update_lead(
        &self,
        campaign: &Campaign,
        lead: &Lead,
        u: &UpdateLeadStep,
    ) -> Result<(), ServiceError> {
        let mut draft = LeadDraft::default();
        if let Some(status) = u.status.as_deref().and_then(LeadStatus::parse) {
            draft.status = Patch::Set(status);
        }
        if !u.add_tags.is_empty() || !u.remove_tags.is_empty() {
            let mut tags: Vec<String> = lead.tags.iter().map(|t| t.as_str().to_owned()).collect();
            tags.retain(|t| !u.remove_tags.iter().any(|r| r.eq_ignore_ascii_case(t)));
            for t in &u.add_tags {
                if !tags.iter().any(|x| x.eq_ignore_ascii_case(t)) {
                    tags.push(t.clone());
                }
            }
            draft.tags = Patch::Set(tags);
        }
        match u.owner.as_deref() {
            Some("") => draft.owner = Patch::Clear,
            Some(owner) => draft.owner = Patch::Set(owner.to_owned()),
            None => {}
        }
        self.leads
            .update(&system_actor(campaign), lead.id, draft, None)
            .await
            .map(drop)
    }

    fn scopes(
        &self,
        campaign: &Campaign,
        sender: &Sender,
        to: &EmailAddress,
        at: Timestamp,
    ) -> Vec<(String, Timestamp, u32)> {
        let def = &campaign.definition;
        let hour = hour_start(at);
        let day = day_start(at, def.zone());
        let mut scopes = Vec::new();
        if let Some(cap) = def.throttles.per_hour {
            scopes.push((format!("c:{}:h", campaign.id), hour, cap));
        }
        if let Some(cap) = def.throttles.per_day {
            scopes.push((format!("c:{}:d", campaign.id), day, cap));
        }
        if let Some(cap) = def.throttles.per_domain_hour {
            let domain = to.as_str().rsplit('@').next().unwrap_or_default();
            scopes.push((format!("r:{}:{domain}:h", campaign.id), hour, cap));
        }
        if let Some(cap) = sender.daily_cap {
            let mailbox_day = at.duration_trunc(TimeDelta::days(1)).unwrap_or(day);
            scopes.push((
                format!(
                    "m:{}:{}:d",
                    campaign.workspace_id,
                    sender.email.to_ascii_lowercase()
                ),
                mailbox_day,
                cap,
            ));
        }
        scopes
    }

    /// Announces, sends and classifies a batch's emails.
    async fn send_all(
        &self,
        emails: Vec<PlannedEmail>,
        at: Timestamp,
    ) -> Result<Vec<StepOutcome>, StoreError> {
        let planned: Vec<PlannedSend> = emails
            .iter()
            .map(|p| PlannedSend {
                message_id: p.rendered.message_id.clone(),
                workspace_id: p.campaign.workspace_id,
                campaign_id: p.campaign.id,
                lead_id: p.enrollment.lead_id,
                entry: p.enrollment.entry,
                step: p.enrollment.step,
                variant: p.rendered.variant,
                mailbox: p.sender.email.clone(),
                recipient: p.recipient.clone(),
            })
            .collect();
        let gates = self.store.begin_sends(&planned, at).await?;
        let mailer = self.outbound().mailer;
        let jobs: Vec<(usize, Outgoing)> = emails
            .iter()
            .enumerate()
            .filter(|(i, _)| gates[*i] == SendGate::Go)
            .map(|(i, p)| {
                (
                    i,
                    Outgoing {
                        from: p.sender.email.clone(),
                        from_name: p.sender.name.clone(),
                        to: p.recipient.clone(),
                        subject: p.rendered.subject.clone(),
                        text: p.rendered.text.clone(),
                        html: p.rendered.html.clone(),
                        message_id: p.rendered.message_id.clone(),
                        unsubscribe_url: Some(p.rendered.unsubscribe_url.clone()),
                        headers: vec![("X-Leadgate-Campaign".into(), p.campaign.id.to_string())],
                    },
                )
            })
            .collect();
        let results: Vec<(usize, SendOutcome)> = futures_util::stream::iter(jobs)
            .map(|(i, message)| {
                let mailer = mailer.clone();
                let metrics = self.metrics.clone();
                async move {
                    let started = std::time::Instant::now();
                    let outcome = mailer.send(&message).await;
                    let label = match &outcome {
                        SendOutcome::Accepted { .. } => "accepted",
                        SendOutcome::Deferred { .. } => "deferred",
                        SendOutcome::Rejected { .. } => "rejected",
                        SendOutcome::NotSent { .. } => "not_sent",
                        SendOutcome::Unknown { .. } => "unknown",
                        SendOutcome::Invalid { .. } => "invalid",
                    };
                    metrics.send(label, started.elapsed());
                    (i, outcome)
                }
            })
            .buffer_unordered(SEND_CONCURRENCY)
            .collect()
            .await;
        let mut sent: HashMap<usize, SendOutcome> = results.into_iter().collect();
        let mut outcomes = Vec::with_capacity(emails.len());
        // refused at RCPT: the address does not exist, which is a bounce
        let mut bounced = Vec::new();
        for (i, p) in emails.iter().enumerate() {
            let e = &p.enrollment;
            let step = e.step;
            let variant = Some(p.rendered.variant);
            let (next, outcome, state, detail): (Next, &str, Option<MessageState>, Option<String>) = match gates[i] {
                SendGate::WasInFlight => (
                    Next::Step { step: step + 1, due_at: Some(at), waiting_for: None },
                    "unconfirmed",
                    None,
                    Some("the send was interrupted; whether the relay took it is unknown, so it is not resent".into()),
                ),
                SendGate::Done(s) => (
                    Next::Step { step: step + 1, due_at: Some(at), waiting_for: None },
                    s.as_str(),
                    None,
                    None,
                ),
                SendGate::Go => match sent.remove(&i) {
                    Some(SendOutcome::Accepted { .. }) => (
                        Next::Step { step: step + 1, due_at: Some(at), waiting_for: None },
                        "sent",
                        Some(MessageState::Sent),
                        None,
                    ),
                    Some(SendOutcome::Unknown { reason }) => (
                        Next::Step { step: step + 1, due_at: Some(at), waiting_for: None },
                        "unconfirmed",
                        Some(MessageState::Unconfirmed),
                        Some(reason),
                    ),
                    Some(SendOutcome::Rejected { code, message, at: step_at }) => {
                        if step_at == crate::mail::SmtpStep::RcptTo {
                            bounced.push(i);
                        }
                        (
                            Next::Exited { reason: "rejected".into() },
                            "rejected",
                            Some(MessageState::Rejected),
                            Some(format!("{code} {message}")),
                        )
                    }
                    Some(SendOutcome::Deferred { code, message, .. }) => {
                        let detail = format!("{code} {message}");
                        if e.failures + 1 >= MAX_STEP_FAILURES {
                            (Next::Exited { reason: "failed".into() }, "failed", Some(MessageState::Rejected), Some(detail))
                        } else {
                            (Next::Later { due_at: at + backoff(e.failures), failed: true }, "deferred", Some(MessageState::Deferred), Some(detail))
                        }
                    }
                    Some(SendOutcome::Invalid { reason }) => (
                        Next::Exited { reason: "failed".into() },
                        "rejected",
                        Some(MessageState::Rejected),
                        Some(reason),
                    ),
                    Some(SendOutcome::NotSent { reason }) => (
                        Next::Later { due_at: at + backoff(e.failures), failed: true },
                        "deferred",
                        Some(MessageState::Deferred),
                        Some(reason),
                    ),
                    None => (
                        Next::Later { due_at: at + backoff(e.failures), failed: true },
                        "deferred",
                        Some(MessageState::Deferred),
                        Some("the send did not finish".into()),
                    ),
                },
            };
            outcomes.push(StepOutcome {
                enrollment_id: e.id,
                next,
                activity: vec![activity(
                    e,
                    Some(step),
                    "email",
                    outcome,
                    variant,
                    detail.clone(),
                    at,
                )],
                events: vec![step_event(&p.campaign, e, Some(step), "email", outcome, at)],
                message: state.map(|s| {
                    (
                        p.rendered.message_id.clone(),
                        s,
                        detail,
                        (s == MessageState::Sent).then_some(at),
                    )
                }),
            });
        }
        for i in bounced {
            let p = &emails[i];
            if let Ok(address) = EmailAddress::parse("recipient", &p.recipient) {
                let hash = EmailHash::of(p.campaign.workspace_id, &address);
                self.store
                    .suppress(
                        p.campaign.workspace_id,
                        hash.as_str(),
                        Some(address.as_str()),
                        "bounced",
                        at,
                    )
                    .await?;
                self.store
                    .mark_message(&p.rendered.message_id, "bounced_at", at)
                    .await?;
            }
        }
        Ok(outcomes)
    }

    // ---------------------------------------------------------------- inbound

    /// Applies verified inbound mail events (bounces, replies, unsubscribes, clicks,
    /// deliveries): each once, whatever the provider retries. Returns how many were new.
    pub async fn receive_mail_events(
        &self,
        provider: &str,
        events: Vec<crate::mail::inbound::MailEvent>,
    ) -> Result<u64, ServiceError> {
        use crate::mail::inbound::MailEventKind as K;
        let at = self.now();
        let mut applied = 0;
        for ev in events {
            if !self.store.record_mail_event(provider, &ev.id, at).await? {
                continue;
            }
            applied += 1;
            self.metrics.mail_event(provider, ev.kind.as_str());
            let ids: Vec<String> = if matches!(ev.kind, K::Replied) {
                ev.in_reply_to
                    .iter()
                    .cloned()
                    .chain(ev.message_id.clone())
                    .collect()
            } else {
                ev.message_id.iter().cloned().collect()
            };
            let mut message = None;
            for id in &ids {
                if let Some(m) = self.store.campaign_message(id).await? {
                    message = Some(m);
                    break;
                }
            }
            let Some(m) = message else { continue };
            let column = match ev.kind {
                K::Delivered => "delivered_at",
                K::Bounced { .. } => "bounced_at",
                K::Replied => "replied_at",
                K::Unsubscribed | K::Complained => "unsubscribed_at",
                K::Clicked => "clicked_at",
                K::Deferred | K::Opened => continue,
            };
            self.store.mark_message(&m.message_id, column, at).await?;
            let stop = match ev.kind {
                K::Bounced { permanent: true } => Some(("bounced", StopKind::Bounced)),
                K::Unsubscribed => Some(("unsubscribed", StopKind::Unsubscribed)),
                K::Complained => Some(("complained", StopKind::Unsubscribed)),
                K::Replied => Some(("", StopKind::Replied)),
                _ => None,
            };
            if matches!(ev.kind, K::Clicked) {
                self.store
                    .wake_waiting(m.workspace_id, m.lead_id, "click", at)
                    .await?;
            }
            if let Some((reason, kind)) = stop {
                if !reason.is_empty()
                    && let Some(recipient) = &m.recipient
                    && let Ok(address) = EmailAddress::parse("recipient", recipient)
                {
                    let hash = EmailHash::of(m.workspace_id, &address);
                    self.store
                        .suppress(m.workspace_id, hash.as_str(), Some(address.as_str()), reason, at)
                        .await?;
                }
                if kind == StopKind::Replied {
                    self.store
                        .wake_waiting(m.workspace_id, m.lead_id, "reply", at)
                        .await?;
                }
                let events = self.store.stop_lead(m.workspace_id, m.lead_id, kind, at).await?;
                self.bus.publish(events);
            }
        }
        Ok(applied)
    }

    /// The one-click unsubscribe of a signed link: suppresses the address and stops the lead
    /// in every campaign that stops on unsubscribes. Returns the address's masked form.
    pub async fn unsubscribe(&self, token: &str) -> Result<String, ServiceError> {
        let key = self.link_key().await?;
        let payload = open_token(&key, token).ok_or(ServiceError::NotFound("unsubscribe link"))?;
        let mut parts = payload.split('\n');
        let (Some("u"), Some(ws), Some(lead), Some(campaign)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ServiceError::NotFound("unsubscribe link"));
        };
        let parse =
            |s: &str| uuid::Uuid::parse_str(s).map_err(|_| ServiceError::NotFound("unsubscribe link"));
        let ws = WorkspaceId::from_uuid(parse(ws)?);
        let lead_id = LeadId::from_uuid(parse(lead)?);
        let campaign = CampaignId::from_uuid(parse(campaign)?);
        let at = self.now();
        let lead = self.store.lead(ws, lead_id).await?;
        let masked = match lead.as_ref().and_then(|l| l.email.clone()) {
            Some(address) => {
                let hash = EmailHash::of(ws, &address);
                self.store
                    .suppress(ws, hash.as_str(), Some(address.as_str()), "unsubscribed", at)
                    .await?;
                mask(address.as_str())
            }
            None => "your address".to_owned(),
        };
        if let Some(e) = self.store.enrollment(campaign, lead_id).await? {
            let entry_messages = self.store.entry_messages(campaign, lead_id, e.entry).await?;
            if let Some(m) = entry_messages
                .iter()
                .filter(|m| m.sent_at.is_some())
                .max_by_key(|m| m.step)
            {
                self.store
                    .mark_message(&m.message_id, "unsubscribed_at", at)
                    .await?;
            }
        }
        let events = self
            .store
            .stop_lead(ws, lead_id, StopKind::Unsubscribed, at)
            .await?;
        self.bus.publish(events);
        Ok(masked)
    }

    /// A signed click link: records the click and returns where it goes.
    pub async fn click(&self, token: &str) -> Result<String, ServiceError> {
        let key = self.link_key().await?;
        let payload = open_token(&key, token).ok_or(ServiceError::NotFound("link"))?;
        let mut parts = payload.splitn(3, '\n');
        let (Some("c"), Some(message_id), Some(url)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ServiceError::NotFound("link"));
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ServiceError::NotFound("link"));
        }
        let at = self.now();
        if let Some(m) = self.store.campaign_message(message_id).await?
            && self.store.mark_message(message_id, "clicked_at", at).await?
        {
            self.store
                .wake_waiting(m.workspace_id, m.lead_id, "click", at)
                .await?;
        }
        Ok(url.to_owned())
    }
}

/// Retry delay of a step after `failures` failed attempts: 5 min doubling, at most 6 h.
fn backoff(failures: u32) -> TimeDelta {
    TimeDelta::minutes(5 * (1_i64 << failures.min(7))).min(TimeDelta::hours(6))
}

/// What happens to a claimed batch: a `campaign.steps` job, or run by the claimer (the steps
/// run here may make more steps due at once, which the next claim takes).
#[derive(Clone, Copy)]
enum Handoff {
    Queue,
    RunHere,
}

/// An email ready to be sent.
struct PlannedEmail {
    enrollment: Enrollment,
    campaign: Campaign,
    sender: Sender,
    rendered: RenderedEmail,
    recipient: String,
}

enum Planned {
    Done(StepOutcome),
    Email(Box<PlannedEmail>),
}

/// Campaigns are the workspace's own business: partners (external integrations) do not see them.
fn require_internal(actor: &Actor) -> Result<(), ServiceError> {
    if actor.role == Role::Partner {
        Err(ServiceError::Forbidden(
            "the partner role cannot read campaigns".into(),
        ))
    } else {
        Ok(())
    }
}

/// The actor a campaign acts as when it changes leads, enriches or pushes to a CRM.
fn system_actor(campaign: &Campaign) -> Actor {
    Actor {
        subject: format!("campaign:{}", campaign.id),
        workspace_id: campaign.workspace_id,
        role: Role::Admin,
        key: None,
    }
}

fn activity(
    e: &Enrollment,
    step: Option<u32>,
    kind: &str,
    outcome: &str,
    variant: Option<u32>,
    detail: Option<String>,
    at: Timestamp,
) -> Activity {
    Activity {
        campaign_id: e.campaign_id,
        lead_id: e.lead_id,
        entry: e.entry,
        step,
        kind: kind.to_owned(),
        outcome: outcome.to_owned(),
        variant,
        detail,
        at,
    }
}

fn step_event(
    campaign: &Campaign,
    e: &Enrollment,
    step: Option<u32>,
    kind: &str,
    outcome: &str,
    at: Timestamp,
) -> NewEvent {
    NewEvent {
        workspace_id: campaign.workspace_id,
        kind: CAMPAIGN_STEP,
        subject_id: Some(e.lead_id.as_uuid()),
        payload: serde_json::json!({
            "campaignId": campaign.id.to_string(),
            "leadId": e.lead_id.to_string(),
            "step": step,
            "stepKey": step.and_then(|s| campaign.definition.steps.get(s as usize)).map(|s| s.key.clone()),
            "type": kind,
            "outcome": outcome,
        }),
        at,
    }
}

fn exit(e: &Enrollment, reason: &str, at: Timestamp) -> StepOutcome {
    StepOutcome {
        enrollment_id: e.id,
        next: Next::Exited {
            reason: reason.into(),
        },
        activity: vec![activity(e, None, "exited", reason, None, None, at)],
        events: Vec::new(),
        message: None,
    }
}

/// A step that failed for a reason of its own (a template that no longer renders, a store
/// error): retried with backoff, then the lead leaves with `failed`.
fn failed(e: &Enrollment, err: &str, at: Timestamp) -> StepOutcome {
    let next = if e.failures + 1 >= MAX_STEP_FAILURES {
        Next::Exited {
            reason: "failed".into(),
        }
    } else {
        Next::Later {
            due_at: at + backoff(e.failures),
            failed: true,
        }
    };
    StepOutcome {
        enrollment_id: e.id,
        next,
        activity: vec![activity(
            e,
            Some(e.step),
            "error",
            "failed",
            None,
            Some(err.chars().take(500).collect()),
            at,
        )],
        events: Vec::new(),
        message: None,
    }
}

/// `a***@example.com`.
fn mask(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => format!("{}***@{domain}", local.chars().next().unwrap_or('*')),
        None => "***".into(),
    }
}

/// `base64url(payload).base64url(HMAC-SHA256(key, payload)[..16])`.
fn sign_token(key: &[u8], payload: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(payload.as_bytes());
    let tag = mac.finalize().into_bytes();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(&tag[..16])
    )
}

/// The payload of a token `sign_token` made with `key`, if the tag matches (constant time).
fn open_token(key: &[u8], token: &str) -> Option<String> {
    let (payload, tag) = token.split_once('.')?;
    let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(&payload);
    mac.verify_truncated_left(&tag).ok()?;
    if tag.len() != 16 {
        return None;
    }
    String::from_utf8(payload).ok()
}

/// `campaign.tick`.
pub struct CampaignTickHandler(pub CampaignService);

impl Handler for CampaignTickHandler {
    fn kind(&self) -> JobKind {
        CAMPAIGN_TICK
    }
    fn run<'a>(
        &'a self,
        _job: &'a crate::domain::Job,
        _ctx: &'a JobContext,
    ) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move { self.0.tick().await.map(drop).map_err(transient) })
    }
}

/// `campaign.steps`.
pub struct CampaignStepsHandler(pub CampaignService);

impl Handler for CampaignStepsHandler {
    fn kind(&self) -> JobKind {
        CAMPAIGN_STEPS
    }
    fn run<'a>(
        &'a self,
        job: &'a crate::domain::Job,
        _ctx: &'a JobContext,
    ) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(self.0.run_steps(job))
    }
}

/// `campaign.segments`.
pub struct CampaignSegmentsHandler(pub CampaignService);

impl Handler for CampaignSegmentsHandler {
    fn kind(&self) -> JobKind {
        CAMPAIGN_SEGMENTS
    }
    fn run<'a>(
        &'a self,
        _job: &'a crate::domain::Job,
        _ctx: &'a JobContext,
    ) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move { self.0.refresh_segments().await.map(drop).map_err(transient) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_open_only_with_their_key_and_intact() {
        let token = sign_token(b"k1", "u\na\nb\nc");
        assert_eq!(open_token(b"k1", &token).as_deref(), Some("u\na\nb\nc"));
        assert_eq!(open_token(b"k2", &token), None);
        let mut tampered = token.clone();
        tampered.insert(0, 'x');
        assert_eq!(open_token(b"k1", &tampered), None);
        assert_eq!(open_token(b"k1", "no-dot"), None);
    }

    #[test]
    fn links_in_text_are_wrapped_and_the_rest_kept() {
        let out = track_links(
            "See https://example.com/a?b=1. Or http://x.io, then httpfoo",
            |u| format!("[{u}]"),
        );
        assert_eq!(
            out,
            "See [https://example.com/a?b=1]. Or [http://x.io], then httpfoo"
        );
    }

    #[test]
    fn templates_name_only_known_variables() {
        let env = template_env();
        assert!(
            check_template(
                &env,
                "f",
                "Hi {{ firstName }} at {{ companyName | default('your company') }}",
                false
            )
            .is_ok()
        );
        let err = check_template(&env, "f", "Hi {{ frstName }}", false).unwrap_err();
        assert!(err.message.contains("frstName"), "{}", err.message);
        assert!(check_template(&env, "f", "Hi {{ firstName ", false).is_err());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), TimeDelta::minutes(5));
        assert_eq!(backoff(1), TimeDelta::minutes(10));
        assert_eq!(backoff(20), TimeDelta::hours(6));
    }
}
