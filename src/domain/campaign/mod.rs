//! Campaigns: a segment of leads walks through ordered steps (email, wait, wait for an event,
//! branch, enrich, CRM push, webhook, lead update, exit) within a send window, throttles and
//! stop rules. This module holds the definition as stored (JSON in `campaigns.definition`,
//! field names as the API spells them), its validation, the enrollment state machine and the
//! figures the API reports; `time` holds the calendar arithmetic (durations, send windows in
//! a lead's zone, DST) and `country_zones` the single-zone countries.
//!
//! Decisions:
//! - A step is addressed by its `key` (given, or `step-<n>` from its position), so branches
//!   name their targets and an active campaign's steps can be edited or appended but never
//!   reordered or removed (`check_steps_kept`): an enrollment holds the index of its next
//!   step, which must keep meaning the same step.
//! - A send's idempotency key is (campaign, lead, entry, step); the `Message-ID` is derived
//!   from it (`message_id`), so a retried step finds the message it already started.
//! - Variants are assigned by lead id (`time::variant_for`): the same lead sees the same
//!   variant on every retry and in every preview.

mod country_zones;
pub mod time;

use super::error::{FieldError, FieldErrorCode, ValidationErrors};
use super::filter::filter_from_json;
use super::ids::{CampaignId, LeadId, WorkspaceId};
use super::lead::{LeadStatus, Timestamp};
use super::values::{EmailAddress, Tags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use time::{SendWindow, TimeError};

/// `campaign.step`: a step ran for a lead (its outcome in the payload).
pub const CAMPAIGN_STEP: &str = "campaign.step";
/// `campaign.exited`: a lead left a campaign (completed, a stop rule, an exit step, manual).
pub const CAMPAIGN_EXITED: &str = "campaign.exited";
/// `campaign.state`: a campaign was activated, paused, resumed, completed or archived.
pub const CAMPAIGN_STATE: &str = "campaign.state";

/// Most steps one campaign holds.
pub const MAX_STEPS: usize = 100;
/// Most sender mailboxes one campaign rotates through.
pub const MAX_SENDERS: usize = 20;
/// Most A/B variants of one email step, the step's own text included.
pub const MAX_VARIANTS: usize = 5;
/// Longest subject and body a step may hold, in characters.
pub const MAX_SUBJECT: usize = 500;
pub const MAX_BODY: usize = 100_000;

/// Where a campaign is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum CampaignState {
    Draft,
    Active,
    Paused,
    Completed,
    Archived,
}

impl CampaignState {
    pub const ALL: [CampaignState; 5] = [
        CampaignState::Draft,
        CampaignState::Active,
        CampaignState::Paused,
        CampaignState::Completed,
        CampaignState::Archived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Draft => "draft",
            CampaignState::Active => "active",
            CampaignState::Paused => "paused",
            CampaignState::Completed => "completed",
            CampaignState::Archived => "archived",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// A stored campaign.
#[derive(Clone, PartialEq, Debug)]
pub struct Campaign {
    pub id: CampaignId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub state: CampaignState,
    pub definition: CampaignDefinition,
    pub version: i64,
    pub segment_at: Option<Timestamp>,
    pub event_cursor: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub activated_at: Option<Timestamp>,
    pub paused_at: Option<Timestamp>,
}

/// Everything a campaign does, as stored and as the API reads it back.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CampaignDefinition {
    pub segment: Segment,
    pub senders: Vec<Sender>,
    #[serde(default)]
    pub send_window: Option<SendWindow>,
    /// The campaign's IANA zone: windows of leads whose own zone is unknown, day boundaries of
    /// the daily caps, `wait until` of such leads.
    pub time_zone: String,
    #[serde(default)]
    pub starts_at: Option<Timestamp>,
    #[serde(default)]
    pub ends_at: Option<Timestamp>,
    #[serde(default)]
    pub throttles: Throttles,
    #[serde(default)]
    pub stop_rules: StopRules,
    #[serde(default)]
    pub track_clicks: bool,
    pub steps: Vec<Step>,
}

/// The leads a campaign takes in.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Segment {
    /// A lead filter in the API's field names (`domain::filter_to_json`).
    pub filter: serde_json::Value,
    /// `None`: a lead enters once. `Some(n)`: a lead that left may enter again `n` days after.
    #[serde(default)]
    pub reentry_after_days: Option<u32>,
}

/// A mailbox the campaign sends from.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sender {
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    /// At most this many sends a day from this mailbox, across every campaign of the workspace.
    #[serde(default)]
    pub daily_cap: Option<u32>,
}

/// Send rates; `None` is unlimited.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Throttles {
    #[serde(default)]
    pub per_hour: Option<u32>,
    #[serde(default)]
    pub per_day: Option<u32>,
    /// Per recipient domain (`example.com`) per hour, for this campaign.
    #[serde(default)]
    pub per_domain_hour: Option<u32>,
}

/// What makes a lead leave early.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopRules {
    pub replied: bool,
    pub bounced: bool,
    pub unsubscribed: bool,
    /// The lead's status became one of these.
    #[serde(default)]
    pub statuses: Vec<String>,
}

impl Default for StopRules {
    fn default() -> Self {
        Self {
            replied: true,
            bounced: true,
            unsubscribed: true,
            statuses: Vec::new(),
        }
    }
}

impl StopRules {
    pub fn stops_on_status(&self, status: LeadStatus) -> bool {
        self.statuses.iter().any(|s| s == status.as_str())
    }
}

/// One step of a campaign.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub key: String,
    #[serde(flatten)]
    pub action: StepAction,
}

/// What a step does.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum StepAction {
    Email(EmailStep),
    Wait(WaitStep),
    WaitFor(WaitForStep),
    Branch(BranchStep),
    Enrich {
        groups: Vec<String>,
    },
    #[serde(rename_all = "camelCase")]
    CrmPush {
        connection_id: Uuid,
    },
    Webhook {
        #[serde(default)]
        label: Option<String>,
    },
    UpdateLead(UpdateLeadStep),
    Exit,
}

impl StepAction {
    /// The step type as the API and the timeline name it.
    pub fn kind(&self) -> &'static str {
        match self {
            StepAction::Email(_) => "email",
            StepAction::Wait(_) => "wait",
            StepAction::WaitFor(_) => "waitFor",
            StepAction::Branch(_) => "branch",
            StepAction::Enrich { .. } => "enrich",
            StepAction::CrmPush { .. } => "crmPush",
            StepAction::Webhook { .. } => "webhook",
            StepAction::UpdateLead(_) => "updateLead",
            StepAction::Exit => "exit",
        }
    }
}

/// An email; `variants` are A/B alternatives to the step's own subject and body.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailStep {
    pub subject: String,
    pub body: String,
    #[serde(default)]
    pub html: Option<String>,
    #[serde(default)]
    pub variants: Vec<EmailVariant>,
    /// One of the campaign's senders; absent: rotate through them by lead.
    #[serde(default)]
    pub sender: Option<String>,
}

impl EmailStep {
    /// The (subject, body, html) of variant `n` (0 is the step's own text).
    pub fn variant(&self, n: u32) -> (&str, &str, Option<&str>) {
        match n.checked_sub(1).and_then(|i| self.variants.get(i as usize)) {
            Some(v) => (&v.subject, &v.body, v.html.as_deref()),
            None => (&self.subject, &self.body, self.html.as_deref()),
        }
    }

    /// How many variants the step has, its own text included.
    pub fn variant_count(&self) -> u32 {
        1 + self.variants.len() as u32
    }
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailVariant {
    pub subject: String,
    pub body: String,
    #[serde(default)]
    pub html: Option<String>,
}

/// A wait: a duration, or until a (week)day and local time.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitStep {
    #[serde(default)]
    pub duration_secs: Option<i64>,
    /// `MON` … `SUN`; with `until_time`, the next such day.
    #[serde(default)]
    pub until_day: Option<String>,
    /// `HH:MM` in the lead's zone.
    #[serde(default)]
    pub until_time: Option<String>,
}

/// What a `waitFor` step waits for.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WaitEvent {
    Reply,
    Click,
    FieldChange,
}

impl WaitEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitEvent::Reply => "reply",
            WaitEvent::Click => "click",
            WaitEvent::FieldChange => "field",
        }
    }
}

/// Waits for an event, at most `timeout_secs`; the next step runs either way and a branch can
/// ask which happened (`BranchCondition::Event`).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitForStep {
    pub event: WaitEvent,
    /// For `fieldChange`: the lead field (API name) whose change ends the wait.
    #[serde(default)]
    pub field: Option<String>,
    pub timeout_secs: i64,
}

/// What a branch can ask of an enrollment's mail so far (this entry).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MailSignal {
    Delivered,
    Replied,
    Clicked,
    /// The last `waitFor` step saw its event before the timeout.
    WaitMatched,
}

/// Goes to `then_step` when the condition holds, else to `else_step` (absent: the next step).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BranchStep {
    #[serde(default)]
    pub filter: Option<serde_json::Value>,
    #[serde(default)]
    pub event: Option<MailSignal>,
    pub then_step: String,
    #[serde(default)]
    pub else_step: Option<String>,
}

/// Changes to the lead.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateLeadStep {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub add_tags: Vec<String>,
    #[serde(default)]
    pub remove_tags: Vec<String>,
    /// `Some("")` clears the owner.
    #[serde(default)]
    pub owner: Option<String>,
}

impl CampaignDefinition {
    /// The index of the step keyed `key`.
    pub fn step_index(&self, key: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.key == key)
    }

    /// The campaign's zone (validated on the way in; UTC if a stored one no longer parses).
    pub fn zone(&self) -> chrono_tz::Tz {
        self.time_zone.parse().unwrap_or(chrono_tz::UTC)
    }

    /// Checks everything that can be checked without the store or the template engine; field
    /// paths are the API's (`steps.2.wait.duration`).
    pub fn validate(&self, name: &str) -> Result<(), ValidationErrors> {
        let mut e = Vec::new();
        let invalid = |e: &mut Vec<FieldError>, path: &str, msg: String| {
            e.push(FieldError::new(path, FieldErrorCode::Invalid, msg));
        };
        if name.trim().is_empty() || name.chars().count() > 200 {
            invalid(&mut e, "name", "a campaign name has 1 to 200 characters".into());
        }
        if let Err(msg) = filter_from_json(&self.segment.filter) {
            invalid(&mut e, "segment.filter", msg);
        }
        if self.segment.reentry_after_days == Some(0) {
            invalid(
                &mut e,
                "segment.reentryAfter",
                "re-entry needs at least one day".into(),
            );
        }
        if self.time_zone.parse::<chrono_tz::Tz>().is_err() {
            invalid(
                &mut e,
                "timeZone",
                format!("'{}' is not an IANA time zone name", self.time_zone),
            );
        }
        if let (Some(start), Some(end)) = (self.starts_at, self.ends_at)
            && end <= start
        {
            invalid(&mut e, "schedule.end", "the end comes after the start".into());
        }
        if self.senders.len() > MAX_SENDERS {
            invalid(
                &mut e,
                "senders",
                format!("at most {MAX_SENDERS} sender mailboxes"),
            );
        }
        for (i, sender) in self.senders.iter().enumerate() {
            if EmailAddress::parse("senders", &sender.email).is_err() {
                invalid(
                    &mut e,
                    &format!("senders.{i}"),
                    format!("'{}' is not an email address", sender.email),
                );
            }
            if sender.daily_cap == Some(0) {
                invalid(
                    &mut e,
                    &format!("senders.{i}.dailyCap"),
                    "a cap is at least 1".into(),
                );
            }
        }
        for (path, v) in [
            ("throttles.perHour", self.throttles.per_hour),
            ("throttles.perDay", self.throttles.per_day),
            ("throttles.perDomainHour", self.throttles.per_domain_hour),
        ] {
            if v == Some(0) {
                invalid(&mut e, path, "a cap is at least 1".into());
            }
        }
        for status in &self.stop_rules.statuses {
            if LeadStatus::parse(status).is_none() {
                invalid(&mut e, "stopRules.statuses", format!("unknown status {status}"));
            }
        }
        if self.steps.is_empty() {
            invalid(&mut e, "steps", "a campaign has at least one step".into());
        }
        if self.steps.len() > MAX_STEPS {
            invalid(&mut e, "steps", format!("at most {MAX_STEPS} steps"));
        }
        for (i, step) in self.steps.iter().enumerate() {
            let at = |field: &str| format!("steps.{i}.{field}");
            if step.key.is_empty() || step.key.len() > 64 {
                invalid(&mut e, &at("key"), "a step key has 1 to 64 characters".into());
            }
            if self.steps[..i].iter().any(|s| s.key == step.key) {
                invalid(
                    &mut e,
                    &at("key"),
                    format!("another step is keyed '{}'", step.key),
                );
            }
            match &step.action {
                StepAction::Email(email) => {
                    if self.senders.is_empty() {
                        invalid(
                            &mut e,
                            "senders",
                            "an email step needs at least one sender".into(),
                        );
                    }
                    if email.variants.len() + 1 > MAX_VARIANTS {
                        invalid(
                            &mut e,
                            &at("email.variants"),
                            format!("at most {MAX_VARIANTS} variants"),
                        );
                    }
                    for n in 0..email.variant_count() {
                        let (subject, body, html) = email.variant(n);
                        let prefix = if n == 0 {
                            "email".to_owned()
                        } else {
                            format!("email.variants.{}", n - 1)
                        };
                        if subject.trim().is_empty() || subject.chars().count() > MAX_SUBJECT {
                            invalid(
                                &mut e,
                                &at(&format!("{prefix}.subject")),
                                format!("a subject has 1 to {MAX_SUBJECT} characters"),
                            );
                        }
                        if subject.contains(['\r', '\n']) {
                            invalid(
                                &mut e,
                                &at(&format!("{prefix}.subject")),
                                "a subject is one line".into(),
                            );
                        }
                        if body.trim().is_empty() || body.len() > MAX_BODY {
                            invalid(
                                &mut e,
                                &at(&format!("{prefix}.body")),
                                format!("a body has 1 to {MAX_BODY} bytes"),
                            );
                        }
                        if html.is_some_and(|h| h.len() > MAX_BODY) {
                            invalid(
                                &mut e,
                                &at(&format!("{prefix}.html")),
                                format!("at most {MAX_BODY} bytes"),
                            );
                        }
                    }
                    if let Some(sender) = &email.sender
                        && !self.senders.iter().any(|s| s.email.eq_ignore_ascii_case(sender))
                    {
                        invalid(
                            &mut e,
                            &at("email.sender"),
                            format!("{sender} is not one of the campaign's senders"),
                        );
                    }
                }
                StepAction::Wait(wait) => match (wait.duration_secs, &wait.until_time) {
                    (Some(d), None) if d > 0 && wait.until_day.is_none() => {}
                    (None, Some(t)) => {
                        if time::parse_clock(t).is_err() {
                            invalid(
                                &mut e,
                                &at("wait.untilTime"),
                                format!("'{t}' is not a time (HH:MM)"),
                            );
                        }
                        if let Some(day) = &wait.until_day
                            && parse_weekday(day).is_none()
                        {
                            invalid(
                                &mut e,
                                &at("wait.untilDay"),
                                format!("'{day}' is not a day (MON … SUN)"),
                            );
                        }
                    }
                    _ => invalid(
                        &mut e,
                        &at("wait"),
                        "a wait takes a positive `duration`, or `untilTime` (with an optional `untilDay`)"
                            .into(),
                    ),
                },
                StepAction::WaitFor(w) => {
                    if w.timeout_secs <= 0 {
                        invalid(&mut e, &at("waitFor.timeout"), "a timeout is positive".into());
                    }
                    match (w.event, &w.field) {
                        (WaitEvent::FieldChange, None) => invalid(
                            &mut e,
                            &at("waitFor.field"),
                            "a field change names the field".into(),
                        ),
                        (WaitEvent::FieldChange, Some(f))
                            if !super::columns::LEAD_COLUMNS.iter().any(|c| c.api == f) =>
                        {
                            invalid(&mut e, &at("waitFor.field"), format!("'{f}' is not a lead field"));
                        }
                        (WaitEvent::Reply | WaitEvent::Click, Some(_)) => invalid(
                            &mut e,
                            &at("waitFor.field"),
                            "only a field change names a field".into(),
                        ),
                        _ => {}
                    }
                }
                StepAction::Branch(b) => {
                    match (&b.filter, b.event) {
                        (Some(f), None) => {
                            if let Err(msg) = filter_from_json(f) {
                                invalid(&mut e, &at("branch.filter"), msg);
                            }
                        }
                        (None, Some(_)) => {}
                        _ => invalid(
                            &mut e,
                            &at("branch"),
                            "a branch takes exactly one of `filter` and `event`".into(),
                        ),
                    }
                    for (field, target) in [
                        ("thenStep", Some(&b.then_step)),
                        ("elseStep", b.else_step.as_ref()),
                    ] {
                        if let Some(target) = target {
                            match self.step_index(target) {
                                None => invalid(
                                    &mut e,
                                    &at(&format!("branch.{field}")),
                                    format!("no step is keyed '{target}'"),
                                ),
                                Some(j) if j <= i => invalid(
                                    &mut e,
                                    &at(&format!("branch.{field}")),
                                    "a branch goes forward, to a later step".into(),
                                ),
                                Some(_) => {}
                            }
                        }
                    }
                }
                StepAction::Enrich { groups } => {
                    if groups.is_empty() {
                        invalid(
                            &mut e,
                            &at("enrich.groups"),
                            "name at least one field group".into(),
                        );
                    }
                    for g in groups {
                        if super::enrichment::Group::parse(g).is_none() {
                            invalid(&mut e, &at("enrich.groups"), format!("unknown field group {g}"));
                        }
                    }
                }
                StepAction::CrmPush { .. } | StepAction::Webhook { .. } | StepAction::Exit => {}
                StepAction::UpdateLead(u) => {
                    if u.status.is_none()
                        && u.add_tags.is_empty()
                        && u.remove_tags.is_empty()
                        && u.owner.is_none()
                    {
                        invalid(
                            &mut e,
                            &at("updateLead"),
                            "an update changes at least one of status, tags, owner".into(),
                        );
                    }
                    if let Some(s) = &u.status
                        && LeadStatus::parse(s).is_none()
                    {
                        invalid(&mut e, &at("updateLead.status"), format!("unknown status {s}"));
                    }
                    for (field, tags) in [("addTags", &u.add_tags), ("removeTags", &u.remove_tags)] {
                        if !tags.is_empty()
                            && let Err(err) = Tags::parse(field, tags)
                        {
                            invalid(&mut e, &at(&format!("updateLead.{field}")), err.message);
                        }
                    }
                    if u.owner.as_ref().is_some_and(|o| o.chars().count() > 128) {
                        invalid(
                            &mut e,
                            &at("updateLead.owner"),
                            "an owner has at most 128 characters".into(),
                        );
                    }
                }
            }
        }
        if e.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(e))
        }
    }

    /// Refuses a change to an active or paused campaign that removes or reorders steps (every
    /// stored key must stay at its index; steps may be edited and appended).
    pub fn check_steps_kept(&self, before: &CampaignDefinition) -> Result<(), ValidationErrors> {
        let kept = before.steps.len() <= self.steps.len()
            && before
                .steps
                .iter()
                .zip(&self.steps)
                .all(|(old, new)| old.key == new.key);
        if kept {
            Ok(())
        } else {
            Err(ValidationErrors(vec![FieldError::new(
                "steps",
                FieldErrorCode::Invalid,
                "the steps of a running campaign can be edited and appended to, not removed or reordered",
            )]))
        }
    }
}

/// `MON` … `SUN`.
pub fn parse_weekday(raw: &str) -> Option<chrono::Weekday> {
    time::parse_weekday(raw).ok()
}

/// Where a lead is in a campaign.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum EnrollmentState {
    /// Walking through the steps (its next step has a due time, or it waits for an event).
    Active,
    /// Went past the last step.
    Completed,
    /// Left early: a stop rule, an exit step, an unenrollment, a failure.
    Exited,
}

impl EnrollmentState {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollmentState::Active => "active",
            EnrollmentState::Completed => "completed",
            EnrollmentState::Exited => "exited",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            EnrollmentState::Active,
            EnrollmentState::Completed,
            EnrollmentState::Exited,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

/// One lead in one campaign: also the lead's scheduled step (`due_at`).
#[derive(Clone, PartialEq, Debug)]
pub struct Enrollment {
    pub id: i64,
    pub workspace_id: WorkspaceId,
    pub campaign_id: CampaignId,
    pub lead_id: LeadId,
    pub state: EnrollmentState,
    pub step: u32,
    pub entry: u32,
    pub due_at: Option<Timestamp>,
    pub waiting_for: Option<String>,
    pub matched: bool,
    pub failures: u32,
    pub exit_reason: Option<String>,
    pub entered_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// A line of a lead's campaign timeline.
#[derive(Clone, PartialEq, Debug)]
pub struct Activity {
    pub campaign_id: CampaignId,
    pub lead_id: LeadId,
    pub entry: u32,
    /// The step's index; `None` for what is not a step (entry, stop rules, unenrollment).
    pub step: Option<u32>,
    pub kind: String,
    pub outcome: String,
    pub variant: Option<u32>,
    pub detail: Option<String>,
    pub at: Timestamp,
}

/// What became of a message.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum MessageState {
    /// Handed to the relay; no answer recorded yet. Found so after a crash: `Unconfirmed`.
    Sending,
    Sent,
    /// The outcome is unknown (a crash or a connection lost mid-send): never resent by itself.
    Unconfirmed,
    /// The relay said "later" (4xx); the step is retried.
    Deferred,
    /// The relay refused it for good (5xx), or it could not be built.
    Rejected,
    /// Not sent: the address is on the suppression list.
    Suppressed,
}

impl MessageState {
    pub const ALL: [MessageState; 6] = [
        MessageState::Sending,
        MessageState::Sent,
        MessageState::Unconfirmed,
        MessageState::Deferred,
        MessageState::Rejected,
        MessageState::Suppressed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Sending => "sending",
            MessageState::Sent => "sent",
            MessageState::Unconfirmed => "unconfirmed",
            MessageState::Deferred => "deferred",
            MessageState::Rejected => "rejected",
            MessageState::Suppressed => "suppressed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// A message of a campaign.
#[derive(Clone, PartialEq, Debug)]
pub struct CampaignMessage {
    pub message_id: String,
    pub workspace_id: WorkspaceId,
    pub campaign_id: CampaignId,
    pub lead_id: LeadId,
    pub entry: u32,
    pub step: u32,
    pub variant: u32,
    pub mailbox: String,
    pub recipient: Option<String>,
    pub state: MessageState,
    pub attempts: u32,
    pub detail: Option<String>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    pub bounced_at: Option<Timestamp>,
    pub replied_at: Option<Timestamp>,
    pub clicked_at: Option<Timestamp>,
    pub unsubscribed_at: Option<Timestamp>,
}

/// The `Message-ID` (without angle brackets) of the message a step sends to a lead in an
/// entry: 32 hex digits of a SHA-256 over the idempotency key, `@` the sending host.
pub fn message_id(campaign: CampaignId, lead: LeadId, entry: u32, step: u32, host: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"leadgate-message:v1:");
    h.update(campaign.as_uuid().as_bytes());
    h.update(lead.as_uuid().as_bytes());
    h.update(entry.to_be_bytes());
    h.update(step.to_be_bytes());
    let digest = h.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}@{host}")
}

/// Figures of one A/B variant of a campaign's emails.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct VariantStats {
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
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct CampaignStats {
    pub enrolled: u64,
    pub active: u64,
    pub completed: u64,
    pub exited: u64,
    /// Leads that left early, by reason (`replied`, `bounced`, `unsubscribed`, `status`,
    /// `exitStep`, `manual`, `failed`, `suppressed`).
    pub exited_by: Vec<(String, u64)>,
    /// Active leads by the index of their next step.
    pub at_step: Vec<(u32, u64)>,
    pub sent: u64,
    pub delivered: u64,
    pub bounced: u64,
    pub replied: u64,
    pub unsubscribed: u64,
    pub clicked: u64,
    pub unconfirmed: u64,
    pub rejected: u64,
    pub variants: Vec<VariantStats>,
}
