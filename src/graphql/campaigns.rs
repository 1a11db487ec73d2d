//! Campaigns: `campaigns` (a Relay connection; `Campaign` is a `Node`), `createCampaign`,
//! `updateCampaign`, `activateCampaign`, `pauseCampaign`, `archiveCampaign`,
//! `enrollLeads`/`unenrollLeads`, `previewCampaignEmail`, `Campaign.stats`, the suppression
//! list, and each lead's `campaignTimeline`. Inputs become the domain's definition here;
//! everything is validated there and in the service, and comes back as `userErrors`.

use super::connection::{PageInfo, PageSize, keyset_connection, keyset_page};
use super::enrichment::EnrichmentGroup;
use super::errors::{UserError, split, to_gql};
use super::ids::{NodeType, decode_lead_id, decode_typed_id, global_id};
use super::inputs::LeadFilter;
use super::query::actor;
use super::types::LeadStatus;
use crate::domain::campaign::{self as model, time};
use crate::domain::{self, CampaignId, filter_to_json};
use crate::service::{CampaignDraft, Services};
use async_graphql::{ComplexObject, Context, Enum, ID, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};

const CAMPAIGN_PAGE: PageSize = PageSize {
    default: 20,
    max: 100,
};

/// Where a campaign is in its life.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CampaignState {
    Draft,
    Active,
    Paused,
    Completed,
    Archived,
}

impl From<model::CampaignState> for CampaignState {
    fn from(s: model::CampaignState) -> Self {
        match s {
            model::CampaignState::Draft => CampaignState::Draft,
            model::CampaignState::Active => CampaignState::Active,
            model::CampaignState::Paused => CampaignState::Paused,
            model::CampaignState::Completed => CampaignState::Completed,
            model::CampaignState::Archived => CampaignState::Archived,
        }
    }
}

impl From<CampaignState> for model::CampaignState {
    fn from(s: CampaignState) -> Self {
        match s {
            CampaignState::Draft => model::CampaignState::Draft,
            CampaignState::Active => model::CampaignState::Active,
            CampaignState::Paused => model::CampaignState::Paused,
            CampaignState::Completed => model::CampaignState::Completed,
            CampaignState::Archived => model::CampaignState::Archived,
        }
    }
}

/// Days of the week.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    fn chrono(self) -> chrono::Weekday {
        match self {
            Weekday::Mon => chrono::Weekday::Mon,
            Weekday::Tue => chrono::Weekday::Tue,
            Weekday::Wed => chrono::Weekday::Wed,
            Weekday::Thu => chrono::Weekday::Thu,
            Weekday::Fri => chrono::Weekday::Fri,
            Weekday::Sat => chrono::Weekday::Sat,
            Weekday::Sun => chrono::Weekday::Sun,
        }
    }

    fn of(day: chrono::Weekday) -> Self {
        match day {
            chrono::Weekday::Mon => Weekday::Mon,
            chrono::Weekday::Tue => Weekday::Tue,
            chrono::Weekday::Wed => Weekday::Wed,
            chrono::Weekday::Thu => Weekday::Thu,
            chrono::Weekday::Fri => Weekday::Fri,
            chrono::Weekday::Sat => Weekday::Sat,
            chrono::Weekday::Sun => Weekday::Sun,
        }
    }
}

/// What a `waitFor` step waits for.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CampaignWaitEvent {
    Reply,
    Click,
    FieldChange,
}

/// What a branch can ask of the lead's mail in this campaign.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CampaignSignal {
    Delivered,
    Replied,
    Clicked,
    /// The last `waitFor` step saw its event before its timeout.
    WaitMatched,
}

#[derive(InputObject)]
pub struct CampaignSegmentInput {
    /// Which leads enter: re-evaluated every few minutes and when a lead changes.
    pub filter: LeadFilter,
    /// Null: a lead enters once. An ISO 8601 duration in days or weeks (`P30D`): a lead that
    /// left may enter again that long after.
    pub reentry_after: Option<String>,
}

#[derive(InputObject)]
pub struct SendWindowInput {
    pub days: Vec<Weekday>,
    /// `HH:MM`, in the lead's time zone.
    pub start: String,
    /// `HH:MM`, after `start`.
    pub end: String,
}

#[derive(InputObject, Default)]
pub struct CampaignScheduleInput {
    /// No step runs before this.
    pub start: Option<DateTime<Utc>>,
    /// Leads still in the campaign leave at this time.
    pub end: Option<DateTime<Utc>>,
}

#[derive(InputObject, Default)]
pub struct CampaignThrottlesInput {
    /// Sends of this campaign per hour.
    pub per_hour: Option<u32>,
    /// Sends of this campaign per day (in the campaign's time zone).
    pub per_day: Option<u32>,
    /// Sends per sender mailbox per day, across every campaign of the workspace (UTC days).
    pub per_mailbox_day: Option<u32>,
    /// Sends of this campaign per recipient domain per hour.
    pub per_domain_hour: Option<u32>,
}

#[derive(InputObject)]
pub struct CampaignStopRulesInput {
    #[graphql(default = true)]
    pub replied: bool,
    #[graphql(default = true)]
    pub bounced: bool,
    #[graphql(default = true)]
    pub unsubscribed: bool,
    /// The lead leaves when its status becomes one of these.
    #[graphql(default)]
    pub statuses: Vec<LeadStatus>,
}

#[derive(InputObject)]
pub struct EmailVariantInput {
    pub subject: String,
    pub body: String,
    pub html: Option<String>,
}

#[derive(InputObject)]
pub struct EmailStepInput {
    /// A template: `{{ firstName }}`, `{{ companyName | default("your team") }}`, …
    pub subject: String,
    /// The plain-text body, a template; `{{ unsubscribeUrl }}` is the lead's link.
    pub body: String,
    /// An HTML alternative, a template (values are HTML-escaped).
    pub html: Option<String>,
    /// A/B alternatives; each lead gets one, by its id.
    #[graphql(default)]
    pub variants: Vec<EmailVariantInput>,
    /// One of the campaign's senders; rotating through them by lead when left out.
    pub sender: Option<String>,
}

#[derive(InputObject)]
pub struct WaitStepInput {
    /// An ISO 8601 duration (`P2D`, `PT36H`, `PT90S`).
    pub duration: Option<String>,
    /// With `untilTime`: the next such day.
    pub until_day: Option<Weekday>,
    /// `HH:MM` in the lead's time zone.
    pub until_time: Option<String>,
}

#[derive(InputObject)]
pub struct WaitForStepInput {
    pub event: CampaignWaitEvent,
    /// For `FIELD_CHANGE`: the lead field, e.g. `status`.
    pub field: Option<String>,
    /// An ISO 8601 duration; the next step runs after it if the event did not come.
    pub timeout: String,
}

#[derive(InputObject)]
pub struct BranchStepInput {
    /// Holds when the lead matches it now.
    pub filter: Option<LeadFilter>,
    /// Holds when the lead's mail in this campaign saw it.
    pub event: Option<CampaignSignal>,
    /// The key of the step to go to when the condition holds (a later step).
    pub then_step: String,
    /// The key of the step to go to otherwise; the next step when left out.
    pub else_step: Option<String>,
}

#[derive(InputObject)]
pub struct EnrichStepInput {
    pub groups: Vec<EnrichmentGroup>,
}

#[derive(InputObject)]
pub struct CrmPushStepInput {
    pub connection_id: ID,
}

#[derive(InputObject, Default)]
pub struct WebhookStepInput {
    /// Carried in the `campaign.step` event the workspace's webhooks receive.
    pub label: Option<String>,
}

#[derive(InputObject, Default)]
pub struct UpdateLeadStepInput {
    pub status: Option<LeadStatus>,
    #[graphql(default)]
    pub add_tags: Vec<String>,
    #[graphql(default)]
    pub remove_tags: Vec<String>,
    /// An empty string clears the owner.
    pub owner: Option<String>,
}

/// One step: exactly one of its fields.
#[derive(InputObject)]
pub struct CampaignStepInput {
    /// How branches name the step; `step-<n>` (its position from 1) when left out. Keep keys
    /// when editing a running campaign.
    pub key: Option<String>,
    pub email: Option<EmailStepInput>,
    pub wait: Option<WaitStepInput>,
    pub wait_for: Option<WaitForStepInput>,
    pub branch: Option<BranchStepInput>,
    pub enrich: Option<EnrichStepInput>,
    pub crm_push: Option<CrmPushStepInput>,
    pub webhook: Option<WebhookStepInput>,
    pub update_lead: Option<UpdateLeadStepInput>,
    /// `true`: the lead leaves the campaign here.
    pub exit: Option<bool>,
}

#[derive(InputObject)]
pub struct CreateCampaignInput {
    pub name: String,
    pub segment: CampaignSegmentInput,
    /// Sender mailboxes, `sales@example.com` or `Sales <sales@example.com>`.
    pub senders: Vec<String>,
    pub send_window: Option<SendWindowInput>,
    /// The campaign's IANA time zone (leads without a known zone, daily caps); UTC by default.
    pub time_zone: Option<String>,
    pub schedule: Option<CampaignScheduleInput>,
    pub throttles: Option<CampaignThrottlesInput>,
    pub stop_rules: Option<CampaignStopRulesInput>,
    /// Links in emails go through signed redirects that record clicks.
    #[graphql(default)]
    pub track_clicks: bool,
    pub steps: Vec<CampaignStepInput>,
}

/// Replaces a campaign's name and definition (every field as `createCampaign` takes them); a
/// running campaign's steps can be edited and appended to, not removed or reordered.
#[derive(InputObject)]
pub struct UpdateCampaignInput {
    pub id: ID,
    #[graphql(flatten)]
    pub campaign: CreateCampaignInput,
}

#[derive(InputObject)]
pub struct CampaignIdInput {
    pub id: ID,
}

#[derive(InputObject)]
pub struct EnrollLeadsInput {
    pub campaign_id: ID,
    /// At most 1000.
    pub lead_ids: Vec<ID>,
}

/// Collects input problems that GraphQL's types cannot express, as user errors.
#[derive(Default)]
struct Problems(Vec<domain::FieldError>);

impl Problems {
    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(domain::FieldError::invalid(field, message));
    }
}

fn duration_secs(p: &mut Problems, field: &str, raw: &str) -> Option<i64> {
    match time::parse_duration(raw) {
        Ok(d) => Some(d.num_seconds()),
        Err(e) => {
            p.add(field, e.to_string());
            None
        }
    }
}

fn sender_of(p: &mut Problems, i: usize, raw: &str, cap: Option<u32>) -> model::Sender {
    let raw = raw.trim();
    let (name, email) = match (raw.find('<'), raw.ends_with('>')) {
        (Some(open), true) => {
            let name = raw[..open].trim().trim_matches('"').trim();
            (
                (!name.is_empty()).then(|| name.to_owned()),
                raw[open + 1..raw.len() - 1].trim().to_owned(),
            )
        }
        _ => (None, raw.to_owned()),
    };
    if name.as_ref().is_some_and(|n| n.contains(['\r', '\n'])) {
        p.add(&format!("senders.{i}"), "a sender name is one line");
    }
    model::Sender {
        email,
        name,
        daily_cap: cap,
    }
}

#[allow(clippy::too_many_arguments)]
fn definition_of(
    segment: CampaignSegmentInput,
    senders: Vec<String>,
    send_window: Option<SendWindowInput>,
    time_zone: Option<String>,
    schedule: Option<CampaignScheduleInput>,
    throttles: Option<CampaignThrottlesInput>,
    stop_rules: Option<CampaignStopRulesInput>,
    track_clicks: bool,
    steps: Vec<CampaignStepInput>,
) -> async_graphql::Result<(model::CampaignDefinition, Problems)> {
    let mut p = Problems::default();
    let filter = segment.filter.into_domain()?;
    let reentry_after_days = match segment.reentry_after.as_deref() {
        None => None,
        Some(raw) => duration_secs(&mut p, "segment.reentryAfter", raw).map(|s| {
            if s % 86_400 != 0 {
                p.add("segment.reentryAfter", "re-entry is in whole days (P30D, P2W)");
            }
            u32::try_from(s / 86_400).unwrap_or(u32::MAX)
        }),
    };
    let throttles = throttles.unwrap_or_default();
    let senders: Vec<model::Sender> = senders
        .iter()
        .enumerate()
        .map(|(i, s)| sender_of(&mut p, i, s, throttles.per_mailbox_day))
        .collect();
    let send_window = send_window.and_then(|w| {
        let start = time::parse_clock(&w.start)
            .map_err(|e| p.add("sendWindow.start", e.to_string()))
            .ok()?;
        let end = time::parse_clock(&w.end)
            .map_err(|e| p.add("sendWindow.end", e.to_string()))
            .ok()?;
        time::SendWindow::new(w.days.iter().map(|d| d.chrono()), start, end)
            .map_err(|e| p.add("sendWindow", e.to_string()))
            .ok()
    });
    let schedule = schedule.unwrap_or_default();
    let stop = stop_rules.map_or_else(model::StopRules::default, |s| model::StopRules {
        replied: s.replied,
        bounced: s.bounced,
        unsubscribed: s.unsubscribed,
        statuses: s
            .statuses
            .into_iter()
            .map(|st| domain::LeadStatus::from(st).as_str().to_owned())
            .collect(),
    });
    let mut out_steps = Vec::with_capacity(steps.len());
    for (i, s) in steps.into_iter().enumerate() {
        let at = |f: &str| format!("steps.{i}.{f}");
        let given = [
            s.email.is_some(),
            s.wait.is_some(),
            s.wait_for.is_some(),
            s.branch.is_some(),
            s.enrich.is_some(),
            s.crm_push.is_some(),
            s.webhook.is_some(),
            s.update_lead.is_some(),
            s.exit.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            p.add(
                &format!("steps.{i}"),
                "a step takes exactly one of email, wait, waitFor, branch, enrich, crmPush, webhook, updateLead, exit",
            );
            continue;
        }
        let action = if let Some(e) = s.email {
            model::StepAction::Email(model::EmailStep {
                subject: e.subject,
                body: e.body,
                html: e.html,
                variants: e
                    .variants
                    .into_iter()
                    .map(|v| model::EmailVariant {
                        subject: v.subject,
                        body: v.body,
                        html: v.html,
                    })
                    .collect(),
                sender: e.sender,
            })
        } else if let Some(w) = s.wait {
            model::StepAction::Wait(model::WaitStep {
                duration_secs: w
                    .duration
                    .as_deref()
                    .and_then(|d| duration_secs(&mut p, &at("wait.duration"), d)),
                until_day: w.until_day.map(|d| time::weekday_code(d.chrono()).to_owned()),
                until_time: w.until_time,
            })
        } else if let Some(w) = s.wait_for {
            model::StepAction::WaitFor(model::WaitForStep {
                event: match w.event {
                    CampaignWaitEvent::Reply => model::WaitEvent::Reply,
                    CampaignWaitEvent::Click => model::WaitEvent::Click,
                    CampaignWaitEvent::FieldChange => model::WaitEvent::FieldChange,
                },
                field: w.field,
                timeout_secs: duration_secs(&mut p, &at("waitFor.timeout"), &w.timeout).unwrap_or(1),
            })
        } else if let Some(b) = s.branch {
            model::StepAction::Branch(model::BranchStep {
                filter: b
                    .filter
                    .map(|f| f.into_domain().map(|f| filter_to_json(&f)))
                    .transpose()?,
                event: b.event.map(|e| match e {
                    CampaignSignal::Delivered => model::MailSignal::Delivered,
                    CampaignSignal::Replied => model::MailSignal::Replied,
                    CampaignSignal::Clicked => model::MailSignal::Clicked,
                    CampaignSignal::WaitMatched => model::MailSignal::WaitMatched,
                }),
                then_step: b.then_step,
                else_step: b.else_step,
            })
        } else if let Some(e) = s.enrich {
            model::StepAction::Enrich {
                groups: e
                    .groups
                    .into_iter()
                    .map(|g| domain::Group::from(g).as_str().to_owned())
                    .collect(),
            }
        } else if let Some(c) = s.crm_push {
            model::StepAction::CrmPush {
                connection_id: decode_typed_id(&c.connection_id, NodeType::CrmConnection)?,
            }
        } else if let Some(w) = s.webhook {
            model::StepAction::Webhook { label: w.label }
        } else if let Some(u) = s.update_lead {
            model::StepAction::UpdateLead(model::UpdateLeadStep {
                status: u
                    .status
                    .map(|st| domain::LeadStatus::from(st).as_str().to_owned()),
                add_tags: u.add_tags,
                remove_tags: u.remove_tags,
                owner: u.owner,
            })
        } else {
            if s.exit == Some(false) {
                p.add(&at("exit"), "an exit step is `exit: true`");
            }
            model::StepAction::Exit
        };
        out_steps.push(model::Step {
            key: s
                .key
                .map(|k| k.trim().to_owned())
                .unwrap_or_else(|| format!("step-{}", i + 1)),
            action,
        });
    }
    Ok((
        model::CampaignDefinition {
            segment: model::Segment {
                filter: filter_to_json(&filter),
                reentry_after_days,
            },
            senders,
            send_window,
            time_zone: time_zone.map_or_else(|| "UTC".to_owned(), |z| z.trim().to_owned()),
            starts_at: schedule.start,
            ends_at: schedule.end,
            throttles: model::Throttles {
                per_hour: throttles.per_hour,
                per_day: throttles.per_day,
                per_domain_hour: throttles.per_domain_hour,
            },
            stop_rules: stop,
            track_clicks,
            steps: out_steps,
        },
        p,
    ))
}

fn campaign_id(id: &ID) -> async_graphql::Result<CampaignId> {
    decode_typed_id(id, NodeType::Campaign).map(CampaignId::from_uuid)
}

/// A sender mailbox.
#[derive(SimpleObject)]
pub struct CampaignSender {
    pub email: String,
    pub name: Option<String>,
    pub daily_cap: Option<u32>,
}

#[derive(SimpleObject)]
pub struct SendWindow {
    pub days: Vec<Weekday>,
    pub start: String,
    pub end: String,
}

/// A step as stored: its key, its type and its settings in the stored JSON form.
#[derive(SimpleObject)]
pub struct CampaignStep {
    pub key: String,
    /// `email`, `wait`, `waitFor`, `branch`, `enrich`, `crmPush`, `webhook`, `updateLead`,
    /// `exit`.
    #[graphql(name = "type")]
    pub kind: String,
    pub settings: Json<serde_json::Value>,
}

#[derive(SimpleObject)]
pub struct CampaignCount {
    pub key: String,
    pub count: u64,
}

/// The figures of one A/B variant of one email step.
#[derive(SimpleObject)]
pub struct CampaignVariantStats {
    pub step: u32,
    pub variant: u32,
    pub sent: u64,
    pub delivered: u64,
    pub bounced: u64,
    pub replied: u64,
    pub clicked: u64,
    pub unsubscribed: u64,
}

/// A campaign's funnel, counted from its enrollments and messages.
#[derive(SimpleObject)]
pub struct CampaignStats {
    pub enrolled: u64,
    pub active: u64,
    pub completed: u64,
    pub exited: u64,
    /// Leads that left early by reason (`replied`, `bounced`, `unsubscribed`, `status`,
    /// `exitStep`, `manual`, `suppressed`, `rejected`, `failed`, …).
    pub exited_by: Vec<CampaignCount>,
    /// Active leads by the key of their next step.
    pub at_step: Vec<CampaignCount>,
    pub sent: u64,
    pub delivered: u64,
    pub bounced: u64,
    pub replied: u64,
    pub unsubscribed: u64,
    pub clicked: u64,
    /// Sends whose outcome is unknown (a crash or a connection lost mid-send); never resent.
    pub unconfirmed: u64,
    pub rejected: u64,
    pub variants: Vec<CampaignVariantStats>,
}

/// A campaign.
pub struct Campaign(pub Box<model::Campaign>);

#[Object]
impl Campaign {
    pub async fn id(&self) -> ID {
        global_id(NodeType::Campaign, self.0.id.as_uuid())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn state(&self) -> CampaignState {
        self.0.state.into()
    }
    /// Bumped by every change.
    async fn version(&self) -> i64 {
        self.0.version
    }
    /// The segment's lead filter, in the `LeadFilter` input's field names.
    async fn segment_filter(&self) -> Json<serde_json::Value> {
        Json(self.0.definition.segment.filter.clone())
    }
    /// Days after which a lead that left may enter again; null: once only.
    async fn reentry_after_days(&self) -> Option<u32> {
        self.0.definition.segment.reentry_after_days
    }
    async fn senders(&self) -> Vec<CampaignSender> {
        self.0
            .definition
            .senders
            .iter()
            .map(|s| CampaignSender {
                email: s.email.clone(),
                name: s.name.clone(),
                daily_cap: s.daily_cap,
            })
            .collect()
    }
    async fn send_window(&self) -> Option<SendWindow> {
        self.0.definition.send_window.as_ref().map(|w| SendWindow {
            days: w.days().iter().map(Weekday::of).collect(),
            start: time::format_clock(w.start()),
            end: time::format_clock(w.end()),
        })
    }
    async fn time_zone(&self) -> &str {
        &self.0.definition.time_zone
    }
    async fn starts_at(&self) -> Option<DateTime<Utc>> {
        self.0.definition.starts_at
    }
    async fn ends_at(&self) -> Option<DateTime<Utc>> {
        self.0.definition.ends_at
    }
    /// Throttles and stop rules as stored.
    async fn rules(&self) -> Json<serde_json::Value> {
        Json(serde_json::json!({
            "throttles": self.0.definition.throttles,
            "stopRules": self.0.definition.stop_rules,
            "trackClicks": self.0.definition.track_clicks,
        }))
    }
    async fn steps(&self) -> Vec<CampaignStep> {
        self.0
            .definition
            .steps
            .iter()
            .map(|s| CampaignStep {
                key: s.key.clone(),
                kind: s.action.kind().to_owned(),
                settings: Json(serde_json::to_value(&s.action).unwrap_or_default()),
            })
            .collect()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    async fn activated_at(&self) -> Option<DateTime<Utc>> {
        self.0.activated_at
    }
    /// The funnel: enrolled, at each step, sent, delivered, bounced, replied, unsubscribed,
    /// clicked, completed, exited by rule; per A/B variant.
    async fn stats(&self, ctx: &Context<'_>) -> async_graphql::Result<CampaignStats> {
        let services = ctx.data::<Services>()?;
        let s = services
            .campaigns
            .stats(actor(ctx)?, self.0.id)
            .await
            .map_err(to_gql)?;
        let steps = &self.0.definition.steps;
        Ok(CampaignStats {
            enrolled: s.enrolled,
            active: s.active,
            completed: s.completed,
            exited: s.exited,
            exited_by: s
                .exited_by
                .into_iter()
                .map(|(key, count)| CampaignCount { key, count })
                .collect(),
            at_step: s
                .at_step
                .into_iter()
                .map(|(i, count)| CampaignCount {
                    key: steps
                        .get(i as usize)
                        .map_or_else(|| format!("#{i}"), |s| s.key.clone()),
                    count,
                })
                .collect(),
            sent: s.sent,
            delivered: s.delivered,
            bounced: s.bounced,
            replied: s.replied,
            unsubscribed: s.unsubscribed,
            clicked: s.clicked,
            unconfirmed: s.unconfirmed,
            rejected: s.rejected,
            variants: s
                .variants
                .into_iter()
                .map(|v| CampaignVariantStats {
                    step: v.step,
                    variant: v.variant,
                    sent: v.sent,
                    delivered: v.delivered,
                    bounced: v.bounced,
                    replied: v.replied,
                    clicked: v.clicked,
                    unsubscribed: v.unsubscribed,
                })
                .collect(),
        })
    }
}

#[derive(SimpleObject)]
pub struct CampaignEdge {
    pub cursor: String,
    pub node: Campaign,
}

/// Campaigns, oldest first.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct CampaignConnection {
    pub edges: Vec<CampaignEdge>,
    pub page_info: PageInfo,
}

#[ComplexObject]
impl CampaignConnection {
    async fn nodes(&self) -> Vec<Campaign> {
        self.edges.iter().map(|e| Campaign(e.node.0.clone())).collect()
    }
}

/// A line of a lead's campaign timeline.
#[derive(SimpleObject)]
pub struct CampaignActivity {
    pub campaign_id: ID,
    /// 1 for the first entry into the campaign, 2 after a re-entry, …
    pub entry: u32,
    /// The step's position from 0; null for entries and exits.
    pub step: Option<u32>,
    /// The step type, or `exited`, `completed`, `error`.
    #[graphql(name = "type")]
    pub kind: String,
    /// `sent`, `unconfirmed`, `deferred`, `rejected`, `suppressed`, `scheduled`, `waiting`,
    /// `matched`, `timedOut`, `then`, `else`, a stop rule, …
    pub outcome: String,
    pub variant: Option<u32>,
    pub detail: Option<String>,
    pub at: DateTime<Utc>,
}

impl From<model::Activity> for CampaignActivity {
    fn from(a: model::Activity) -> Self {
        Self {
            campaign_id: global_id(NodeType::Campaign, a.campaign_id.as_uuid()),
            entry: a.entry,
            step: a.step,
            kind: a.kind,
            outcome: a.outcome,
            variant: a.variant,
            detail: a.detail,
            at: a.at,
        }
    }
}

/// A lead's campaign timeline (for `Lead.campaignTimeline`).
pub async fn timeline(
    ctx: &Context<'_>,
    lead: domain::LeadId,
) -> async_graphql::Result<Vec<CampaignActivity>> {
    let services = ctx.data::<Services>()?;
    let lines = services
        .campaigns
        .timeline(actor(ctx)?, lead)
        .await
        .map_err(to_gql)?;
    Ok(lines.into_iter().map(Into::into).collect())
}

/// The message a step would send to a lead.
#[derive(SimpleObject)]
pub struct CampaignEmailPreview {
    pub from: String,
    pub to: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// The A/B variant the lead gets (0 is the step's own text).
    pub variant: u32,
    pub message_id: String,
    pub unsubscribe_url: String,
}

/// An address on the workspace's suppression list.
#[derive(SimpleObject)]
pub struct MailSuppression {
    /// Null once the lead was erased (the address's hash is kept).
    pub email: Option<String>,
    /// `unsubscribed`, `bounced`, `complained`, `manual`.
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

/// A campaign for `node(id:)`: every role but partners may read campaigns.
pub async fn campaign_node(ctx: &Context<'_>, id: CampaignId) -> async_graphql::Result<Option<Campaign>> {
    let services = ctx.data::<Services>()?;
    match services.campaigns.get(actor(ctx)?, id).await {
        Ok(found) => Ok(found.map(|c| Campaign(Box::new(c)))),
        Err(crate::service::ServiceError::Forbidden(_)) => Ok(None),
        Err(e) => Err(to_gql(e)),
    }
}

#[derive(Default)]
pub struct CampaignQuery;

#[Object]
impl CampaignQuery {
    /// The workspace's campaigns, oldest first; only those in `states` when given.
    async fn campaigns(
        &self,
        ctx: &Context<'_>,
        states: Option<Vec<CampaignState>>,
        #[graphql(desc = "At most 100; 20 when neither `first` nor `last` is given.")] first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "At most 100.")] last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<CampaignConnection> {
        let page = keyset_page(first, after, last, before, CAMPAIGN_PAGE)?;
        let actor = actor(ctx)?.clone();
        let states: Vec<model::CampaignState> =
            states.unwrap_or_default().into_iter().map(Into::into).collect();
        let (edges, page_info) = keyset_connection(
            ctx,
            page,
            move |services, page| {
                let actor = actor.clone();
                let states = states.clone();
                async move { services.campaigns.list(&actor, &states, &page).await }
            },
            |c| c.id,
            |cursor, c| CampaignEdge {
                cursor,
                node: Campaign(Box::new(c)),
            },
        )
        .await?;
        Ok(CampaignConnection { edges, page_info })
    }

    /// The email an email step would send to a lead now: rendered, with its variant, sender,
    /// Message-ID and unsubscribe link.
    async fn preview_campaign_email(
        &self,
        ctx: &Context<'_>,
        campaign_id: ID,
        #[graphql(desc = "The step's key.")] step_id: String,
        lead_id: ID,
    ) -> async_graphql::Result<CampaignEmailPreview> {
        let id = campaign_id_of(&campaign_id)?;
        let lead = decode_lead_id(&lead_id)?;
        let services = ctx.data::<Services>()?;
        let r = services
            .campaigns
            .preview(actor(ctx)?, id, &step_id, lead)
            .await
            .map_err(to_gql)?;
        Ok(CampaignEmailPreview {
            from: r.from,
            to: r.to,
            subject: r.subject,
            text: r.text,
            html: r.html,
            variant: r.variant,
            message_id: r.message_id,
            unsubscribe_url: r.unsubscribe_url,
        })
    }

    /// The workspace's suppression list, newest first (admins only).
    async fn mail_suppressions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "At most 1000.", default = 100)] limit: u32,
    ) -> async_graphql::Result<Vec<MailSuppression>> {
        let services = ctx.data::<Services>()?;
        let list = services
            .campaigns
            .suppressions(actor(ctx)?, limit)
            .await
            .map_err(to_gql)?;
        Ok(list
            .into_iter()
            .map(|s| MailSuppression {
                email: s.email,
                reason: s.reason,
                created_at: s.created_at,
            })
            .collect())
    }
}

fn campaign_id_of(id: &ID) -> async_graphql::Result<CampaignId> {
    campaign_id(id)
}

#[derive(SimpleObject)]
pub struct CampaignPayload {
    pub campaign: Option<Campaign>,
    pub user_errors: Vec<UserError>,
}

#[derive(SimpleObject)]
pub struct ActivateCampaignPayload {
    pub campaign: Option<Campaign>,
    /// Leads that entered now (a first activation enrolls the segment).
    pub enrolled: u64,
    pub user_errors: Vec<UserError>,
}

#[derive(SimpleObject)]
pub struct EnrollLeadsPayload {
    /// Leads that entered (or left, for `unenrollLeads`) now.
    pub count: u64,
    pub user_errors: Vec<UserError>,
}

#[derive(SimpleObject)]
pub struct SuppressionPayload {
    /// False when nothing changed (already on, or not on, the list).
    pub changed: bool,
    pub user_errors: Vec<UserError>,
}

fn payload(
    result: Result<model::Campaign, crate::service::ServiceError>,
) -> async_graphql::Result<CampaignPayload> {
    let (campaign, user_errors) = split(result, &["input"])?;
    Ok(CampaignPayload {
        campaign: campaign.map(|c| Campaign(Box::new(c))),
        user_errors,
    })
}

/// The draft an input describes, or the problems GraphQL's types could not catch.
fn draft_of(input: CreateCampaignInput) -> async_graphql::Result<Result<CampaignDraft, Problems>> {
    let (definition, problems) = definition_of(
        input.segment,
        input.senders,
        input.send_window,
        input.time_zone,
        input.schedule,
        input.throttles,
        input.stop_rules,
        input.track_clicks,
        input.steps,
    )?;
    Ok(if problems.0.is_empty() {
        Ok(CampaignDraft {
            name: input.name,
            definition,
        })
    } else {
        Err(problems)
    })
}

/// `enrollLeads` (`enroll`) or `unenrollLeads`.
async fn change_enrollment(
    ctx: &Context<'_>,
    input: EnrollLeadsInput,
    enroll: bool,
) -> async_graphql::Result<EnrollLeadsPayload> {
    let id = campaign_id(&input.campaign_id)?;
    let leads = input
        .lead_ids
        .iter()
        .map(|l| decode_lead_id(l))
        .collect::<async_graphql::Result<Vec<_>>>()?;
    let services = ctx.data::<Services>()?;
    let actor = actor(ctx)?;
    let result = if enroll {
        services.campaigns.enroll(actor, id, &leads).await
    } else {
        services.campaigns.unenroll(actor, id, &leads).await
    };
    let (count, user_errors) = split(result, &["input"])?;
    Ok(EnrollLeadsPayload {
        count: count.unwrap_or(0),
        user_errors,
    })
}

fn problems_payload(p: Problems) -> CampaignPayload {
    CampaignPayload {
        campaign: None,
        user_errors: UserError::list(domain::ValidationErrors(p.0), &["input"]),
    }
}

#[derive(Default)]
pub struct CampaignMutation;

#[Object]
impl CampaignMutation {
    /// Creates a campaign in `DRAFT` (admins only).
    async fn create_campaign(
        &self,
        ctx: &Context<'_>,
        input: CreateCampaignInput,
    ) -> async_graphql::Result<CampaignPayload> {
        let draft = match draft_of(input)? {
            Ok(draft) => draft,
            Err(problems) => return Ok(problems_payload(problems)),
        };
        let services = ctx.data::<Services>()?;
        payload(services.campaigns.create(actor(ctx)?, draft).await)
    }

    /// Replaces a campaign's definition (admins only).
    async fn update_campaign(
        &self,
        ctx: &Context<'_>,
        input: UpdateCampaignInput,
    ) -> async_graphql::Result<CampaignPayload> {
        let id = campaign_id(&input.id)?;
        let draft = match draft_of(input.campaign)? {
            Ok(draft) => draft,
            Err(problems) => return Ok(problems_payload(problems)),
        };
        let services = ctx.data::<Services>()?;
        payload(services.campaigns.update(actor(ctx)?, id, draft).await)
    }

    /// Activates a draft (its segment enters at once) or resumes a paused campaign (each lead
    /// continues where it was; windows that passed meanwhile are skipped).
    async fn activate_campaign(
        &self,
        ctx: &Context<'_>,
        input: CampaignIdInput,
    ) -> async_graphql::Result<ActivateCampaignPayload> {
        let id = campaign_id(&input.id)?;
        let services = ctx.data::<Services>()?;
        let (done, user_errors) = split(services.campaigns.activate(actor(ctx)?, id).await, &["input"])?;
        let (campaign, enrolled) = done.map_or((None, 0), |(c, n)| (Some(Campaign(Box::new(c))), n));
        Ok(ActivateCampaignPayload {
            campaign,
            enrolled,
            user_errors,
        })
    }

    /// Pauses a campaign: no step starts until it is activated again.
    async fn pause_campaign(
        &self,
        ctx: &Context<'_>,
        input: CampaignIdInput,
    ) -> async_graphql::Result<CampaignPayload> {
        let id = campaign_id(&input.id)?;
        let services = ctx.data::<Services>()?;
        payload(services.campaigns.pause(actor(ctx)?, id).await)
    }

    /// Archives a campaign: it stops for good and stays readable.
    async fn archive_campaign(
        &self,
        ctx: &Context<'_>,
        input: CampaignIdInput,
    ) -> async_graphql::Result<CampaignPayload> {
        let id = campaign_id(&input.id)?;
        let services = ctx.data::<Services>()?;
        payload(services.campaigns.archive(actor(ctx)?, id).await)
    }

    /// Puts leads into an active or paused campaign whether or not its segment matches them.
    async fn enroll_leads(
        &self,
        ctx: &Context<'_>,
        input: EnrollLeadsInput,
    ) -> async_graphql::Result<EnrollLeadsPayload> {
        change_enrollment(ctx, input, true).await
    }

    /// Takes leads out of a campaign (exit reason `manual`).
    async fn unenroll_leads(
        &self,
        ctx: &Context<'_>,
        input: EnrollLeadsInput,
    ) -> async_graphql::Result<EnrollLeadsPayload> {
        change_enrollment(ctx, input, false).await
    }

    /// Adds an address to the suppression list: no campaign mails it (admins only).
    async fn suppress_email(
        &self,
        ctx: &Context<'_>,
        email: String,
    ) -> async_graphql::Result<SuppressionPayload> {
        let services = ctx.data::<Services>()?;
        let (changed, user_errors) =
            split(services.campaigns.suppress(actor(ctx)?, &email).await, &["email"])?;
        Ok(SuppressionPayload {
            changed: changed.unwrap_or(false),
            user_errors,
        })
    }

    /// Takes an address off the suppression list (admins only).
    async fn unsuppress_email(
        &self,
        ctx: &Context<'_>,
        email: String,
    ) -> async_graphql::Result<SuppressionPayload> {
        let services = ctx.data::<Services>()?;
        let (changed, user_errors) = split(
            services.campaigns.unsuppress(actor(ctx)?, &email).await,
            &["email"],
        )?;
        Ok(SuppressionPayload {
            changed: changed.unwrap_or(false),
            user_errors,
        })
    }
}
