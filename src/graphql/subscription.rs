//! Subscriptions for partners: lead changes, enrichment results and the raw event log, each
//! resumable from an `EventCursor`.
//!
//! Every event carries its cursor. Subscribing with `after:` replays what the workspace's log
//! holds after it, in order, then continues live; without `after:` only what happens from now
//! on is delivered. Within one subscription an event arrives once.

use super::errors::{bad_input, to_gql};
use super::ids::{decode_lead_id, lead_global_id};
use super::inputs::LeadFilter;
use super::query::actor;
use super::types::Lead;
use crate::domain::{self, ArchivedFilter, Event, LeadId};
use crate::service::Services;
use async_graphql::{
    Context, Enum, ID, InputValueError, InputValueResult, Json, Object, Scalar, ScalarType, Subscription,
    Value,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use std::sync::Arc;

/// An opaque position in the workspace's event log. Pass the `cursor` of the last event you
/// processed as `after:` to resume without a gap or a duplicate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EventCursor(pub i64);

const CURSOR_PREFIX: &str = "event:";

#[Scalar]
impl ScalarType for EventCursor {
    fn parse(value: Value) -> InputValueResult<Self> {
        let Value::String(raw) = &value else {
            return Err(InputValueError::expected_type(value));
        };
        URL_SAFE_NO_PAD
            .decode(raw.trim_end_matches('='))
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.strip_prefix(CURSOR_PREFIX)?.parse::<i64>().ok())
            .filter(|seq| *seq >= 0)
            .map(EventCursor)
            .ok_or_else(|| {
                InputValueError::custom("malformed event cursor: pass an event's `cursor` unchanged")
            })
    }

    fn to_value(&self) -> Value {
        Value::String(URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{}", self.0)))
    }
}

/// What happened.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum EventType {
    LeadCreated,
    LeadUpdated,
    LeadArchived,
    LeadRestored,
    LeadEnriched,
    /// A lead was erased on request; the event carries its id only.
    LeadErased,
    /// A job of the workspace exhausted its attempts and waits in the dead-letter queue.
    JobDead,
    /// An outbound webhook endpoint kept failing and was switched off.
    WebhookDisabled,
    /// An import committed a chunk of rows (counters so far, no personal data).
    ImportProgress,
    /// An import ended (succeeded or failed), with its final counters.
    ImportFinished,
    /// A CRM sync run (push, poll or webhook batch) finished, with its counts.
    CrmSyncFinished,
    /// A campaign step ran for a lead (its type and outcome in the payload).
    CampaignStep,
    /// A lead left a campaign (completed, a stop rule, an exit step, manual).
    CampaignExited,
    /// A campaign was activated, paused, resumed or archived.
    CampaignState,
}

impl EventType {
    const ALL: [EventType; 14] = [
        EventType::LeadCreated,
        EventType::LeadUpdated,
        EventType::LeadArchived,
        EventType::LeadRestored,
        EventType::LeadEnriched,
        EventType::LeadErased,
        EventType::JobDead,
        EventType::WebhookDisabled,
        EventType::ImportProgress,
        EventType::ImportFinished,
        EventType::CrmSyncFinished,
        EventType::CampaignStep,
        EventType::CampaignExited,
        EventType::CampaignState,
    ];

    /// The log's spelling, e.g. `lead.created`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::LeadCreated => domain::LEAD_CREATED,
            EventType::LeadUpdated => domain::LEAD_UPDATED,
            EventType::LeadArchived => domain::LEAD_ARCHIVED,
            EventType::LeadRestored => domain::LEAD_RESTORED,
            EventType::LeadEnriched => domain::LEAD_ENRICHED,
            EventType::LeadErased => domain::LEAD_ERASED,
            EventType::JobDead => domain::JOB_DEAD,
            EventType::WebhookDisabled => domain::WEBHOOK_DISABLED,
            EventType::ImportProgress => domain::IMPORT_PROGRESS,
            EventType::ImportFinished => domain::IMPORT_FINISHED,
            EventType::CrmSyncFinished => domain::CRM_SYNC_FINISHED,
            EventType::CampaignStep => domain::campaign::CAMPAIGN_STEP,
            EventType::CampaignExited => domain::campaign::CAMPAIGN_EXITED,
            EventType::CampaignState => domain::campaign::CAMPAIGN_STATE,
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }
}

/// One entry of the event log.
pub struct EventEntry(pub Arc<Event>);

#[Object(name = "Event")]
impl EventEntry {
    /// Where this event stands in the log; resume after it with `after:`.
    async fn cursor(&self) -> EventCursor {
        EventCursor(self.0.seq)
    }
    /// `None` only for a type this version does not know.
    #[graphql(name = "type")]
    async fn kind(&self) -> Option<EventType> {
        EventType::parse(&self.0.kind)
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    /// The lead the event is about, for lead events.
    async fn lead_id(&self) -> Option<ID> {
        self.0.lead_id().map(lead_global_id)
    }
    /// The event's data as the log holds it.
    async fn payload(&self) -> Json<serde_json::Value> {
        Json(self.0.payload.clone())
    }
}

/// A lead was created, changed, archived or restored.
pub struct LeadChangedEvent {
    event: Arc<Event>,
    change: domain::LeadChange,
}

#[Object]
impl LeadChangedEvent {
    async fn cursor(&self) -> EventCursor {
        EventCursor(self.event.seq)
    }
    #[graphql(name = "type")]
    async fn kind(&self) -> Option<EventType> {
        EventType::parse(&self.event.kind)
    }
    async fn at(&self) -> DateTime<Utc> {
        self.event.at
    }
    /// The lead as it was right after the change.
    async fn lead(&self) -> Lead {
        Lead::new(self.change.lead.clone())
    }
    /// The fields the change touched (API names, e.g. `status`); empty for a creation.
    async fn changed_fields(&self) -> &[String] {
        &self.change.changed_fields
    }
}

/// Providers filled in (part of) a group of a lead.
pub struct LeadEnrichedEvent(Arc<Event>);

impl LeadEnrichedEvent {
    fn strings(&self, key: &str) -> Vec<String> {
        self.0.payload[key]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

#[Object]
impl LeadEnrichedEvent {
    async fn cursor(&self) -> EventCursor {
        EventCursor(self.0.seq)
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    async fn lead_id(&self) -> Option<ID> {
        self.0.lead_id().map(lead_global_id)
    }
    /// The lead as it is now (null when it was deleted since).
    async fn lead(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Lead>> {
        let Some(id) = self.0.lead_id() else {
            return Ok(None);
        };
        let services = ctx.data::<Services>()?;
        let lead = services.leads.get(actor(ctx)?, id).await.map_err(to_gql)?;
        Ok(lead.map(Lead::new))
    }
    /// `person`, `company`, `emailVerification` or `phone`.
    async fn group(&self) -> Option<&str> {
        self.0.payload["group"].as_str()
    }
    /// The fields that were filled in.
    async fn fields(&self) -> Vec<String> {
        self.strings("fields")
    }
    /// The providers that answered.
    async fn providers(&self) -> Vec<String> {
        self.strings("providers")
    }
    /// Credits the answers cost.
    async fn credits(&self) -> i64 {
        self.0.payload["credits"].as_i64().unwrap_or_default()
    }
}

#[derive(Default)]
pub struct EventQuery;

#[Object]
impl EventQuery {
    /// The cursor of the newest event in your workspace's log. Subscribe with `after:` it to
    /// receive everything from this point on, including what happens while the subscription
    /// is being set up.
    async fn latest_event_cursor(&self, ctx: &Context<'_>) -> async_graphql::Result<EventCursor> {
        let services = ctx.data::<Services>()?;
        let head = services.events.head(actor(ctx)?).await.map_err(to_gql)?;
        Ok(EventCursor(head))
    }
}

/// A CRM sync run finished.
pub struct CrmSyncEvent(Arc<Event>);

#[Object]
impl CrmSyncEvent {
    async fn cursor(&self) -> EventCursor {
        EventCursor(self.0.seq)
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    async fn connection_id(&self) -> Option<ID> {
        self.0
            .subject_id
            .map(|u| super::ids::global_id(super::ids::NodeType::CrmConnection, u))
    }
    /// `PUSH`, `POLL`, `WEBHOOK` or `MANUAL`.
    async fn trigger(&self) -> Option<super::crm::CrmSyncTrigger> {
        self.0
            .payload
            .get("trigger")
            .and_then(|t| t.as_str())
            .and_then(domain::SyncTrigger::parse)
            .map(Into::into)
    }
    async fn pushed(&self) -> u64 {
        self.count("pushed")
    }
    async fn pulled(&self) -> u64 {
        self.count("pulled")
    }
    async fn failed(&self) -> u64 {
        self.count("failed")
    }
    async fn skipped(&self) -> u64 {
        self.count("skipped")
    }
}

impl CrmSyncEvent {
    fn count(&self, key: &str) -> u64 {
        self.0.payload.get(key).and_then(|v| v.as_u64()).unwrap_or(0)
    }
}

/// The subscription root.
#[derive(Default)]
pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Leads of your workspace as they are created, changed, archived and restored. With
    /// `filter`, only changes after which the lead matches it; the archive state is matched
    /// only with `archived: ONLY`, so archive and restore events of matching leads arrive.
    async fn lead_changed(
        &self,
        ctx: &Context<'_>,
        filter: Option<LeadFilter>,
        after: Option<EventCursor>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<LeadChangedEvent>> + use<>> {
        let matcher = ChangeMatcher::new(filter.map(LeadFilter::into_domain).transpose()?);
        let events = events(ctx, after).await?;
        Ok(events.filter_map(move |item| {
            let out = match item {
                Ok(event) => event
                    .lead_change()
                    .filter(|change| matcher.matches(&change.lead))
                    .map(|change| Ok(LeadChangedEvent { event, change })),
                Err(e) => Some(Err(e)),
            };
            std::future::ready(out)
        }))
    }

    /// Enrichment results as providers answer, for one lead or (without `leadId`) all leads of
    /// your workspace.
    async fn lead_enriched(
        &self,
        ctx: &Context<'_>,
        lead_id: Option<ID>,
        after: Option<EventCursor>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<LeadEnrichedEvent>> + use<>> {
        let lead: Option<LeadId> = lead_id.map(|id| decode_lead_id(&id)).transpose()?;
        let events = events(ctx, after).await?;
        Ok(events.filter_map(move |item| {
            let out = match item {
                Ok(event)
                    if event.kind == domain::LEAD_ENRICHED
                        && lead.is_none_or(|l| event.lead_id() == Some(l)) =>
                {
                    Some(Ok(LeadEnrichedEvent(event)))
                }
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            };
            std::future::ready(out)
        }))
    }

    /// An import as it progresses: its state now, then after every committed chunk, ending
    /// once it finished.
    async fn import_progress(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<super::imports::Import>> + use<>>
    {
        super::imports::import_progress(ctx, &id).await
    }

    /// CRM sync runs as they finish (admins only), of one connection with `connectionId`.
    async fn crm_sync_changed(
        &self,
        ctx: &Context<'_>,
        connection_id: Option<ID>,
        after: Option<EventCursor>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<CrmSyncEvent>> + use<>> {
        actor(ctx)?.require_admin().map_err(to_gql)?;
        let connection = connection_id
            .as_ref()
            .map(super::crm::connection_id)
            .transpose()?
            .map(|c| c.as_uuid());
        let events = events(ctx, after).await?;
        Ok(events.filter_map(move |item| {
            let out = match item {
                Ok(event)
                    if event.kind == domain::CRM_SYNC_FINISHED
                        && connection.is_none_or(|c| event.subject_id == Some(c)) =>
                {
                    Some(Ok(CrmSyncEvent(event)))
                }
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            };
            std::future::ready(out)
        }))
    }

    /// Campaign steps, exits and state changes as they happen; of one campaign with
    /// `campaignId`. Resume after an event's cursor with `after`.
    async fn campaign_events(
        &self,
        ctx: &Context<'_>,
        campaign_id: Option<ID>,
        after: Option<EventCursor>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<EventEntry>> + use<>> {
        let campaign = campaign_id
            .map(|id| super::ids::decode_typed_id(&id, super::ids::NodeType::Campaign))
            .transpose()?;
        campaign_events(ctx, campaign, after).await
    }

    /// Every event of your workspace's log, or only those of `types`.
    async fn events(
        &self,
        ctx: &Context<'_>,
        types: Option<Vec<EventType>>,
        after: Option<EventCursor>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<EventEntry>> + use<>> {
        if types.as_ref().is_some_and(Vec::is_empty) {
            return Err(bad_input(
                "`types` must name at least one type; leave it out for all",
            ));
        }
        let wanted: Option<Vec<&'static str>> = types.map(|t| t.into_iter().map(EventType::as_str).collect());
        let events = events(ctx, after).await?;
        Ok(events.filter_map(move |item| {
            let out = match item {
                Ok(event) if wanted.as_ref().is_none_or(|w| w.contains(&event.kind.as_str())) => {
                    Some(Ok(EventEntry(event)))
                }
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            };
            std::future::ready(out)
        }))
    }
}

/// The campaign events of the caller's workspace (of one campaign with `campaignId`).
pub async fn campaign_events(
    ctx: &Context<'_>,
    campaign: Option<uuid::Uuid>,
    after: Option<EventCursor>,
) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<EventEntry>> + use<>> {
    let wanted = campaign.map(|c| c.to_string());
    let events = events(ctx, after).await?;
    Ok(events.filter_map(move |item| {
        let out = match item {
            Ok(event)
                if event.kind.starts_with("campaign.")
                    && wanted.as_ref().is_none_or(|w| {
                        event.payload.get("campaignId").and_then(|c| c.as_str()) == Some(w.as_str())
                    }) =>
            {
                Some(Ok(EventEntry(event)))
            }
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        };
        std::future::ready(out)
    }))
}

/// The caller's workspace's events after `after`, or from now on.
async fn events(
    ctx: &Context<'_>,
    after: Option<EventCursor>,
) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Arc<Event>>> + use<>> {
    let services = ctx.data::<Services>()?;
    let stream = services
        .events
        .stream(actor(ctx)?, after.map(|c| c.0))
        .await
        .map_err(to_gql)?;
    Ok(stream.map(|item| item.map_err(to_gql)))
}

/// A lead filter as subscriptions apply it: archive state only with `archived: ONLY`.
struct ChangeMatcher {
    filter: Option<domain::LeadFilter>,
    archived_only: bool,
}

impl ChangeMatcher {
    fn new(filter: Option<domain::LeadFilter>) -> Self {
        let archived_only = filter
            .as_ref()
            .is_some_and(|f| f.archived == ArchivedFilter::Only);
        Self {
            filter,
            archived_only,
        }
    }

    fn matches(&self, lead: &domain::Lead) -> bool {
        let Some(filter) = &self.filter else { return true };
        if self.archived_only {
            return filter.matches(lead);
        }
        if lead.archived_at.is_none() {
            filter.matches(lead)
        } else {
            let mut unarchived = lead.clone();
            unarchived.archived_at = None;
            filter.matches(&unarchived)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let value = EventCursor(42).to_value();
        assert_eq!(EventCursor::parse(value).ok(), Some(EventCursor(42)));
        for bad in [
            "",
            "42",
            "not base64!",
            &URL_SAFE_NO_PAD.encode("event:-1"),
            &URL_SAFE_NO_PAD.encode("lead:1"),
        ] {
            assert!(EventCursor::parse(Value::String(bad.into())).is_err(), "{bad}");
        }
        assert!(EventCursor::parse(Value::Number(1.into())).is_err());
    }

    #[test]
    fn every_event_type_has_its_log_spelling() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::ALL.len(), domain::EVENT_TYPES.len());
    }
}
