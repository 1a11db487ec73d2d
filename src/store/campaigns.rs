//! Campaigns, enrollments (each also the lead's scheduled step), the activity timeline,
//! messages, send counters, suppressions and inbound mail events.
//!
//! **Scheduled steps are rows.** An active enrollment's `due_at` is when its next step runs;
//! `claim_due_steps` takes the earliest due rows of active campaigns with a lease (token and
//! expiry) — `FOR UPDATE SKIP LOCKED` on PostgreSQL, the single writer on SQLite — so
//! nothing per lead is held in memory and any number of workers share the work. In the same
//! transaction it ends the enrollments a stop rule has caught (the lead's status is one of the
//! campaign's stop statuses, or the lead is archived or gone): a stop that happened before the
//! claim always wins. Replies, bounces and unsubscribes end enrollments when they arrive
//! (`stop_lead`), so the claim no longer sees them.
//!
//! **A step's outcome is written once, under its lease** (`finish_steps`): the enrollment
//! moves on, the timeline and the event log grow, and the message's state is kept, in one
//! transaction, only while the lease token still matches; a worker that lost its lease changes
//! nothing. **A send is announced before it happens** (`begin_sends`): its message row exists
//! as `sending` before the relay is contacted, so a crash between the two leaves a row that
//! the next claim turns into `unconfirmed` instead of sending again.

use super::dialect::{Dialect, Row};
use super::events::append_events;
use super::keyset::KeyOrder;
use super::sql::push_where;
use super::{Store, StoreError, StoreResult};
use crate::domain::campaign::{
    Activity, Campaign, CampaignDefinition, CampaignMessage, CampaignState, CampaignStats, Enrollment,
    EnrollmentState, MessageState, VariantStats,
};
use crate::domain::{
    CampaignId, Event, KeysetPage, LeadFilter, LeadId, NewEvent, Paged, Timestamp, WorkspaceId,
};
use std::collections::{BTreeMap, HashMap};

const CAMPAIGN_COLUMNS: &str = "SELECT id, workspace_id, name, state, definition, CAST(version AS BIGINT), \
     segment_at, CAST(event_cursor AS BIGINT), created_at, updated_at, activated_at, paused_at FROM campaigns WHERE ";

const ENROLLMENT_COLUMNS: &str = "id, workspace_id, campaign_id, lead_id, state, CAST(step AS BIGINT), \
     CAST(entry AS BIGINT), due_at, waiting_for, CAST(matched AS BIGINT), CAST(failures AS BIGINT), exit_reason, \
     entered_at, updated_at, finished_at";

const MESSAGE_COLUMNS: &str = "message_id, workspace_id, campaign_id, lead_id, CAST(entry AS BIGINT), \
     CAST(step AS BIGINT), CAST(variant AS BIGINT), mailbox, recipient, state, CAST(attempts AS BIGINT), detail, \
     created_at, sent_at, delivered_at, bounced_at, replied_at, clicked_at, unsubscribed_at";

/// Rows per multi-row statement, well under both backends' bind limits.
const CHUNK: usize = 400;

fn small(v: i64) -> u32 {
    v.clamp(0, i64::from(u32::MAX)) as u32
}

fn campaign_from_row(r: &Row) -> StoreResult<Campaign> {
    let state: String = r.get(3)?;
    let definition: String = r.get(4)?;
    Ok(Campaign {
        id: CampaignId::from_uuid(r.get(0)?),
        workspace_id: WorkspaceId::from_uuid(r.get(1)?),
        name: r.get(2)?,
        state: CampaignState::parse(&state)
            .ok_or_else(|| StoreError::corrupt(format!("campaign state {state}")))?,
        definition: serde_json::from_str::<CampaignDefinition>(&definition)
            .map_err(|e| StoreError::corrupt(format!("campaign definition: {e}")))?,
        version: r.get(5)?,
        segment_at: r.get(6)?,
        event_cursor: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
        activated_at: r.get(10)?,
        paused_at: r.get(11)?,
    })
}

fn enrollment_from_row(r: &Row) -> StoreResult<Enrollment> {
    let state: String = r.get(4)?;
    Ok(Enrollment {
        id: r.get(0)?,
        workspace_id: WorkspaceId::from_uuid(r.get(1)?),
        campaign_id: CampaignId::from_uuid(r.get(2)?),
        lead_id: LeadId::from_uuid(r.get(3)?),
        state: EnrollmentState::parse(&state)
            .ok_or_else(|| StoreError::corrupt(format!("enrollment state {state}")))?,
        step: small(r.get(5)?),
        entry: small(r.get(6)?),
        due_at: r.get(7)?,
        waiting_for: r.get(8)?,
        matched: r.get::<i64>(9)? != 0,
        failures: small(r.get(10)?),
        exit_reason: r.get(11)?,
        entered_at: r.get(12)?,
        updated_at: r.get(13)?,
        finished_at: r.get(14)?,
    })
}

fn message_from_row(r: &Row) -> StoreResult<CampaignMessage> {
    let state: String = r.get(9)?;
    Ok(CampaignMessage {
        message_id: r.get(0)?,
        workspace_id: WorkspaceId::from_uuid(r.get(1)?),
        campaign_id: CampaignId::from_uuid(r.get(2)?),
        lead_id: LeadId::from_uuid(r.get(3)?),
        entry: small(r.get(4)?),
        step: small(r.get(5)?),
        variant: small(r.get(6)?),
        mailbox: r.get(7)?,
        recipient: r.get(8)?,
        state: MessageState::parse(&state)
            .ok_or_else(|| StoreError::corrupt(format!("message state {state}")))?,
        attempts: small(r.get(10)?),
        detail: r.get(11)?,
        created_at: r.get(12)?,
        sent_at: r.get(13)?,
        delivered_at: r.get(14)?,
        bounced_at: r.get(15)?,
        replied_at: r.get(16)?,
        clicked_at: r.get(17)?,
        unsubscribed_at: r.get(18)?,
    })
}

fn activity_from_row(r: &Row) -> StoreResult<Activity> {
    let step: i64 = r.get(3)?;
    Ok(Activity {
        campaign_id: CampaignId::from_uuid(r.get(0)?),
        lead_id: LeadId::from_uuid(r.get(1)?),
        entry: small(r.get(2)?),
        step: (step >= 0).then(|| small(step)),
        kind: r.get(4)?,
        outcome: r.get(5)?,
        variant: r.get::<Option<i64>>(6)?.map(small),
        detail: r.get(7)?,
        at: r.get(8)?,
    })
}

/// `,CUSTOMER,QUALIFIED,`: the stop statuses as the claim compares them.
fn stop_statuses(definition: &CampaignDefinition) -> String {
    let mut out = String::from(",");
    for s in &definition.stop_rules.statuses {
        out.push_str(s);
        out.push(',');
    }
    out
}

/// Where an enrollment goes after a step.
#[derive(Clone, PartialEq, Debug)]
pub enum Next {
    /// To step `step`, due at `due_at` (`None`: waits for an event with no timeout).
    Step {
        step: u32,
        due_at: Option<Timestamp>,
        waiting_for: Option<String>,
    },
    /// Stays at its step, due again at `due_at` (a closed window, a cap, a deferral).
    Later {
        due_at: Timestamp,
        failed: bool,
    },
    Completed,
    Exited {
        reason: String,
    },
}

/// What one step did for one enrollment, written by `finish_steps`.
#[derive(Clone, PartialEq, Debug)]
pub struct StepOutcome {
    pub enrollment_id: i64,
    pub next: Next,
    pub activity: Vec<Activity>,
    pub events: Vec<NewEvent>,
    /// The message's new state, detail and send time.
    pub message: Option<(String, MessageState, Option<String>, Option<Timestamp>)>,
}

/// A message about to be sent, as `begin_sends` announces it.
#[derive(Clone, PartialEq, Debug)]
pub struct PlannedSend {
    pub message_id: String,
    pub workspace_id: WorkspaceId,
    pub campaign_id: CampaignId,
    pub lead_id: LeadId,
    pub entry: u32,
    pub step: u32,
    pub variant: u32,
    pub mailbox: String,
    pub recipient: String,
}

/// What `begin_sends` found for a planned message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SendGate {
    /// Announced now (or again, after a deferral): send it.
    Go,
    /// It was being sent when its worker stopped: now `unconfirmed`, not to be sent again.
    WasInFlight,
    /// It already has an outcome (`sent`, `unconfirmed`, `rejected`, `suppressed`).
    Done(MessageState),
}

/// A stop rule an inbound event triggers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StopKind {
    Replied,
    Bounced,
    Unsubscribed,
}

impl StopKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StopKind::Replied => "replied",
            StopKind::Bounced => "bounced",
            StopKind::Unsubscribed => "unsubscribed",
        }
    }
}

/// A stored suppression.
#[derive(Clone, PartialEq, Debug)]
pub struct Suppression {
    pub email_hash: String,
    pub email: Option<String>,
    pub reason: String,
    pub created_at: Timestamp,
}

async fn insert_activity(
    conn: &mut super::dialect::Conn,
    ws: WorkspaceId,
    rows: &[Activity],
) -> StoreResult<()> {
    for chunk in rows.chunks(CHUNK) {
        let mut qb = conn.sql(
            "INSERT INTO campaign_activity (workspace_id, campaign_id, lead_id, entry, step, kind, outcome, variant, \
             detail, occurred_at) VALUES ",
        );
        for (i, a) in chunk.iter().enumerate() {
            if i > 0 {
                qb.push(", ");
            }
            qb.push("(");
            qb.bind(ws).push(", ");
            qb.bind(a.campaign_id).push(", ");
            qb.bind(a.lead_id).push(", ");
            qb.bind(i64::from(a.entry)).push(", ");
            qb.bind(a.step.map_or(-1, i64::from)).push(", ");
            qb.bind(a.kind.clone()).push(", ");
            qb.bind(a.outcome.clone()).push(", ");
            qb.bind(a.variant.map(i64::from)).push(", ");
            qb.bind(a.detail.clone()).push(", ");
            qb.bind(a.at).push(")");
        }
        conn.execute(qb).await?;
    }
    Ok(())
}

impl Store {
    /// Creates or replaces a campaign (its cursor and segment time are kept as stored).
    pub async fn save_campaign(&self, c: &Campaign) -> StoreResult<()> {
        let definition = serde_json::to_string(&c.definition)
            .map_err(|e| StoreError::corrupt(format!("campaign definition: {e}")))?;
        let mut qb = self.sql(
            "INSERT INTO campaigns (id, workspace_id, name, state, definition, stop_statuses, version, segment_at, \
             event_cursor, created_at, updated_at, activated_at, paused_at) VALUES (",
        );
        qb.bind(c.id).push(", ");
        qb.bind(c.workspace_id).push(", ");
        qb.bind(c.name.clone()).push(", ");
        qb.bind(c.state.as_str()).push(", ");
        qb.bind(definition).push(", ");
        qb.bind(stop_statuses(&c.definition)).push(", ");
        qb.bind(c.version).push(", ");
        qb.bind(c.segment_at).push(", ");
        qb.bind(c.event_cursor).push(", ");
        qb.bind(c.created_at).push(", ");
        qb.bind(c.updated_at).push(", ");
        qb.bind(c.activated_at).push(", ");
        qb.bind(c.paused_at).push(")");
        qb.push(
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name, state = excluded.state, \
             definition = excluded.definition, stop_statuses = excluded.stop_statuses, version = excluded.version, \
             updated_at = excluded.updated_at, activated_at = excluded.activated_at, paused_at = excluded.paused_at \
             WHERE campaigns.workspace_id = excluded.workspace_id AND campaigns.version = ",
        );
        qb.bind(c.version - 1);
        if self.execute(qb).await? == 0 {
            return Err(StoreError::VersionMismatch);
        }
        Ok(())
    }

    pub async fn campaign(&self, ws: WorkspaceId, id: CampaignId) -> StoreResult<Option<Campaign>> {
        let mut qb = self.sql(CAMPAIGN_COLUMNS);
        qb.push("workspace_id = ");
        qb.bind(ws);
        qb.push(" AND id = ");
        qb.bind(id);
        let row = self.fetch_optional(qb).await?;
        row.as_ref().map(campaign_from_row).transpose()
    }

    /// Campaigns by id, of any workspace (a step job names its campaigns).
    pub async fn campaigns_by_ids(&self, ids: &[CampaignId]) -> StoreResult<Vec<Campaign>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = self.sql(CAMPAIGN_COLUMNS);
        qb.push("id IN (");
        qb.bind_list(ids.iter().copied());
        qb.push(")");
        let rows = self.fetch_all(qb).await?;
        rows.iter().map(campaign_from_row).collect()
    }

    /// A page of a workspace's campaigns, oldest first; `states` narrows it when not empty.
    pub async fn campaigns(
        &self,
        ws: WorkspaceId,
        states: &[CampaignState],
        page: &KeysetPage<CampaignId>,
    ) -> StoreResult<Paged<Campaign>> {
        let mut qb = self.sql(CAMPAIGN_COLUMNS);
        qb.push("workspace_id = ");
        qb.bind(ws);
        if !states.is_empty() {
            qb.push(" AND state IN (");
            qb.bind_list(states.iter().map(|s| s.as_str()));
            qb.push(")");
        }
        self.keyset_page(qb, KeyOrder::OLDEST_FIRST, page, campaign_from_row)
            .await
    }

    /// Every active campaign of every workspace (segment refresh, entries on lead changes).
    pub async fn active_campaigns(&self) -> StoreResult<Vec<Campaign>> {
        let mut qb = self.sql(CAMPAIGN_COLUMNS);
        qb.push("state = 'active' ORDER BY workspace_id, id");
        let rows = self.fetch_all(qb).await?;
        rows.iter().map(campaign_from_row).collect()
    }

    /// Moves the lead-event cursor of a campaign from `from` to `to`; false when another
    /// process moved it first.
    pub async fn advance_campaign_cursor(&self, id: CampaignId, from: i64, to: i64) -> StoreResult<bool> {
        let mut qb = self.sql("UPDATE campaigns SET event_cursor = ");
        qb.bind(to);
        qb.push(" WHERE id = ");
        qb.bind(id);
        qb.push(" AND event_cursor = ");
        qb.bind(from);
        Ok(self.execute(qb).await? == 1)
    }

    /// Refreshes the planner's statistics of the enrollments after a large entry (PostgreSQL;
    /// SQLite's planner goes by the indexes).
    pub async fn analyze_enrollments(&self) -> StoreResult<()> {
        if self.dialect() == Dialect::Postgres {
            self.execute(self.sql("ANALYZE campaign_enrollments")).await?;
        }
        Ok(())
    }

    /// Enrolls the leads of `ws` that match `filter` (and, with `only`, are among those ids),
    /// first step due at `due`, in one statement. A lead already enrolled stays as it is,
    /// unless `reentry_before` is given and its enrollment ended before that time: then it
    /// enters again (its entry number goes up). Returns how many entered.
    pub async fn enroll_matching(
        &self,
        campaign: &Campaign,
        filter: &LeadFilter,
        only: Option<&[LeadId]>,
        due: Timestamp,
        reentry_before: Option<Timestamp>,
        at: Timestamp,
    ) -> StoreResult<u64> {
        let ws = campaign.workspace_id;
        let mut entered = 0;
        let chunks: Vec<Option<&[LeadId]>> = match only {
            None => vec![None],
            Some(ids) => ids.chunks(CHUNK).map(Some).collect(),
        };
        for chunk in chunks {
            let mut qb = self.sql(
                "INSERT INTO campaign_enrollments (workspace_id, campaign_id, lead_id, state, step, entry, due_at, \
                 entered_at, updated_at) SELECT l.workspace_id, ",
            );
            qb.bind(campaign.id).push(", l.id, 'active', 0, 1, ");
            qb.bind(due).push(", ");
            qb.bind(at).push(", ");
            qb.bind(at);
            qb.push(" FROM leads l");
            push_where(&mut qb, ws, filter);
            if let Some(ids) = chunk {
                qb.push(" AND l.id IN (");
                qb.bind_list(ids.iter().copied());
                qb.push(")");
            }
            match reentry_before {
                None => {
                    qb.push(" ON CONFLICT (campaign_id, lead_id) DO NOTHING");
                }
                Some(before) => {
                    qb.push(
                        " ON CONFLICT (campaign_id, lead_id) DO UPDATE SET state = 'active', step = 0, \
                         entry = campaign_enrollments.entry + 1, due_at = excluded.due_at, lease_token = NULL, \
                         lease_until = NULL, waiting_for = NULL, matched = 0, failures = 0, exit_reason = NULL, \
                         entered_at = excluded.entered_at, updated_at = excluded.updated_at, finished_at = NULL \
                         WHERE campaign_enrollments.state <> 'active' AND campaign_enrollments.finished_at < ",
                    );
                    qb.bind(before);
                }
            }
            entered += self.execute(qb).await?;
        }
        Ok(entered)
    }

    /// Ends the active enrollments of `leads` in a campaign (`reason` as given); returns the
    /// leads that left.
    pub async fn exit_enrollments(
        &self,
        ws: WorkspaceId,
        campaign: CampaignId,
        leads: &[LeadId],
        reason: &str,
        at: Timestamp,
    ) -> StoreResult<Vec<(LeadId, u32)>> {
        let mut tx = self.begin().await?;
        let mut out = Vec::new();
        for chunk in leads.chunks(CHUNK) {
            let mut qb = self.sql("UPDATE campaign_enrollments SET state = 'exited', exit_reason = ");
            qb.bind(reason);
            qb.push(
                ", due_at = NULL, lease_token = NULL, lease_until = NULL, waiting_for = NULL, finished_at = ",
            );
            qb.bind(at);
            qb.push(", updated_at = ");
            qb.bind(at);
            qb.push(" WHERE workspace_id = ");
            qb.bind(ws);
            qb.push(" AND campaign_id = ");
            qb.bind(campaign);
            qb.push(" AND state = 'active' AND lead_id IN (");
            qb.bind_list(chunk.iter().copied());
            qb.push(") RETURNING lead_id, CAST(entry AS BIGINT)");
            for r in tx.fetch_all(qb).await? {
                out.push((LeadId::from_uuid(r.get(0)?), small(r.get(1)?)));
            }
        }
        let activity: Vec<Activity> = out
            .iter()
            .map(|(lead, entry)| Activity {
                campaign_id: campaign,
                lead_id: *lead,
                entry: *entry,
                step: None,
                kind: "exited".into(),
                outcome: reason.to_owned(),
                variant: None,
                detail: None,
                at,
            })
            .collect();
        insert_activity(&mut tx, ws, &activity).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Ends every active enrollment of a campaign (its end passed), each with a timeline line;
    /// returns how many ended.
    pub async fn end_enrollments(
        &self,
        campaign: CampaignId,
        reason: &str,
        at: Timestamp,
    ) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let mut qb = self.sql(
            "INSERT INTO campaign_activity (workspace_id, campaign_id, lead_id, entry, step, kind, outcome, \
             variant, detail, occurred_at) SELECT workspace_id, campaign_id, lead_id, entry, -1, 'exited', ",
        );
        qb.bind(reason);
        qb.push(", NULL, NULL, ");
        qb.bind(at);
        qb.push(" FROM campaign_enrollments WHERE campaign_id = ");
        qb.bind(campaign);
        qb.push(" AND state = 'active'");
        tx.execute(qb).await?;
        let mut qb = self.sql("UPDATE campaign_enrollments SET state = 'exited', exit_reason = ");
        qb.bind(reason);
        qb.push(
            ", due_at = NULL, waiting_for = NULL, lease_token = NULL, lease_until = NULL, finished_at = ",
        );
        qb.bind(at);
        qb.push(", updated_at = ");
        qb.bind(at);
        qb.push(" WHERE campaign_id = ");
        qb.bind(campaign);
        qb.push(" AND state = 'active'");
        let ended = tx.execute(qb).await?;
        tx.commit().await?;
        Ok(ended)
    }

    /// Claims up to `limit` due steps of active campaigns for `token` until `lease_until`, and
    /// in the same transaction ends the enrollments a stop rule caught (status, archived or
    /// erased lead). Returns the claimed enrollments and the events of those that ended.
    pub async fn claim_due_steps(
        &self,
        limit: u32,
        token: &str,
        lease_until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<(Vec<Enrollment>, Vec<Event>)> {
        let mut tx = self.begin().await?;
        // the due rows come from the partial index in due order, locked (PostgreSQL) and
        // limited on their own; only those are joined with their campaign and lead
        let mut qb = self.sql(
            "SELECT e.id, c.stop_statuses, l.status, l.archived_at, l.id FROM campaign_enrollments e \
             JOIN campaigns c ON c.id = e.campaign_id LEFT JOIN leads l ON l.id = e.lead_id \
             WHERE e.id IN (SELECT d.id FROM campaign_enrollments d WHERE d.state = 'active' AND d.due_at <= ",
        );
        qb.bind(now);
        qb.push(" AND (d.lease_until IS NULL OR d.lease_until < ");
        qb.bind(now);
        qb.push(
            ") AND d.campaign_id IN (SELECT id FROM campaigns WHERE state = 'active') \
             ORDER BY d.due_at LIMIT ",
        );
        qb.bind(i64::from(limit));
        qb.push(self.dialect().skip_locked());
        qb.push(") ORDER BY e.due_at");
        let rows = tx.fetch_all(qb).await?;
        let mut claim = Vec::new();
        let mut stop: Vec<(i64, &'static str)> = Vec::new();
        for r in &rows {
            let id: i64 = r.get(0)?;
            let statuses: String = r.get(1)?;
            let status: Option<String> = r.get(2)?;
            let archived: Option<Timestamp> = r.get(3)?;
            match status {
                None => stop.push((id, "leadGone")),
                Some(_) if archived.is_some() => stop.push((id, "archived")),
                Some(s) if statuses.contains(&format!(",{s},")) => stop.push((id, "status")),
                Some(_) => claim.push(id),
            }
        }
        let mut claimed = Vec::new();
        for chunk in claim.chunks(CHUNK) {
            let mut qb = self.sql("UPDATE campaign_enrollments SET lease_token = ");
            qb.bind(token);
            qb.push(", lease_until = ");
            qb.bind(lease_until);
            qb.push(" WHERE id IN (");
            qb.bind_list(chunk.iter().copied());
            qb.push(format!(") RETURNING {ENROLLMENT_COLUMNS}"));
            for r in tx.fetch_all(qb).await? {
                claimed.push(enrollment_from_row(&r)?);
            }
        }
        let mut events = Vec::new();
        for (id, reason) in stop {
            let mut qb = self.sql("UPDATE campaign_enrollments SET state = 'exited', exit_reason = ");
            qb.bind(reason);
            qb.push(", due_at = NULL, finished_at = ");
            qb.bind(now);
            qb.push(", updated_at = ");
            qb.bind(now);
            qb.push(" WHERE id = ");
            qb.bind(id);
            qb.push(format!(" RETURNING {ENROLLMENT_COLUMNS}"));
            if let Some(r) = tx.fetch_optional(qb).await? {
                let e = enrollment_from_row(&r)?;
                let activity = Activity {
                    campaign_id: e.campaign_id,
                    lead_id: e.lead_id,
                    entry: e.entry,
                    step: None,
                    kind: "exited".into(),
                    outcome: reason.into(),
                    variant: None,
                    detail: None,
                    at: now,
                };
                insert_activity(&mut tx, e.workspace_id, std::slice::from_ref(&activity)).await?;
                let event = NewEvent {
                    workspace_id: e.workspace_id,
                    kind: crate::domain::campaign::CAMPAIGN_EXITED,
                    subject_id: Some(e.lead_id.as_uuid()),
                    payload: serde_json::json!({
                        "campaignId": e.campaign_id.to_string(),
                        "leadId": e.lead_id.to_string(),
                        "reason": reason,
                    }),
                    at: now,
                };
                events.extend(append_events(&mut tx, std::slice::from_ref(&event)).await?);
            }
        }
        tx.commit().await?;
        Ok((claimed, events))
    }

    /// The earliest due time of an unleased step of an active campaign, if any.
    pub async fn next_due_step(&self) -> StoreResult<Option<Timestamp>> {
        let qb = self.sql(
            "SELECT MIN(e.due_at) FROM campaign_enrollments e JOIN campaigns c ON c.id = e.campaign_id \
             WHERE e.state = 'active' AND e.due_at IS NOT NULL AND c.state = 'active'",
        );
        self.fetch_one(qb).await?.get(0)
    }

    /// Announces the sends of a batch: a message not seen before is written as `sending`; one
    /// left `deferred` becomes `sending` again; one found `sending` (its worker stopped) becomes
    /// `unconfirmed`. One transaction; returns each message's gate.
    pub async fn begin_sends(&self, sends: &[PlannedSend], at: Timestamp) -> StoreResult<Vec<SendGate>> {
        let mut tx = self.begin().await?;
        let mut known: HashMap<String, MessageState> = HashMap::new();
        for chunk in sends.chunks(CHUNK) {
            let mut qb = self.sql("SELECT message_id, state FROM campaign_messages WHERE message_id IN (");
            qb.bind_list(chunk.iter().map(|s| s.message_id.as_str()));
            qb.push(")");
            for r in tx.fetch_all(qb).await? {
                let state: String = r.get(1)?;
                let state = MessageState::parse(&state)
                    .ok_or_else(|| StoreError::corrupt(format!("message state {state}")))?;
                known.insert(r.get(0)?, state);
            }
        }
        let mut gates = Vec::with_capacity(sends.len());
        let mut fresh = Vec::new();
        for s in sends {
            let gate = match known.get(&s.message_id) {
                None => {
                    fresh.push(s);
                    SendGate::Go
                }
                Some(MessageState::Deferred) => {
                    let mut qb =
                        self.sql("UPDATE campaign_messages SET state = 'sending', attempts = attempts + 1, updated_at = ");
                    qb.bind(at);
                    qb.push(" WHERE message_id = ");
                    qb.bind(s.message_id.as_str());
                    tx.execute(qb).await?;
                    SendGate::Go
                }
                Some(MessageState::Sending) => {
                    let mut qb = self.sql(
                        "UPDATE campaign_messages SET state = 'unconfirmed', detail = 'the send was interrupted; \
                         whether the relay took it is unknown', updated_at = ",
                    );
                    qb.bind(at);
                    qb.push(" WHERE message_id = ");
                    qb.bind(s.message_id.as_str());
                    tx.execute(qb).await?;
                    SendGate::WasInFlight
                }
                Some(other) => SendGate::Done(*other),
            };
            gates.push(gate);
        }
        for chunk in fresh.chunks(CHUNK / 2) {
            let mut qb = self.sql(
                "INSERT INTO campaign_messages (message_id, workspace_id, campaign_id, lead_id, entry, step, variant, \
                 mailbox, recipient, state, attempts, created_at, updated_at) VALUES ",
            );
            for (i, s) in chunk.iter().enumerate() {
                if i > 0 {
                    qb.push(", ");
                }
                qb.push("(");
                qb.bind(s.message_id.as_str()).push(", ");
                qb.bind(s.workspace_id).push(", ");
                qb.bind(s.campaign_id).push(", ");
                qb.bind(s.lead_id).push(", ");
                qb.bind(i64::from(s.entry)).push(", ");
                qb.bind(i64::from(s.step)).push(", ");
                qb.bind(i64::from(s.variant)).push(", ");
                qb.bind(s.mailbox.as_str()).push(", ");
                qb.bind(s.recipient.as_str()).push(", 'sending', 1, ");
                qb.bind(at).push(", ");
                qb.bind(at).push(")");
            }
            tx.execute(qb).await?;
        }
        tx.commit().await?;
        Ok(gates)
    }

    /// Writes the outcomes of a batch of steps held under `token`, in one transaction. An
    /// enrollment whose lease moved on (or that a stop rule ended meanwhile) is left alone, and
    /// so are its timeline, events and message. Returns the events appended.
    pub async fn finish_steps(
        &self,
        token: &str,
        outcomes: &[StepOutcome],
        at: Timestamp,
    ) -> StoreResult<Vec<Event>> {
        let mut tx = self.begin().await?;
        let mut activity: BTreeMap<WorkspaceId, Vec<Activity>> = BTreeMap::new();
        let mut events = Vec::new();
        for o in outcomes {
            let mut qb = self
                .sql("UPDATE campaign_enrollments SET lease_token = NULL, lease_until = NULL, updated_at = ");
            qb.bind(at);
            match &o.next {
                Next::Step {
                    step,
                    due_at,
                    waiting_for,
                } => {
                    qb.push(", step = ");
                    qb.bind(i64::from(*step));
                    qb.push(", due_at = ");
                    qb.bind(*due_at);
                    qb.push(", waiting_for = ");
                    qb.bind(waiting_for.clone());
                    qb.push(", failures = 0");
                    if waiting_for.is_some() {
                        qb.push(", matched = 0");
                    }
                }
                Next::Later { due_at, failed } => {
                    qb.push(", due_at = ");
                    qb.bind(*due_at);
                    if *failed {
                        qb.push(", failures = failures + 1");
                    }
                }
                Next::Completed => {
                    qb.push(", state = 'completed', due_at = NULL, waiting_for = NULL, finished_at = ");
                    qb.bind(at);
                }
                Next::Exited { reason } => {
                    qb.push(", state = 'exited', due_at = NULL, waiting_for = NULL, exit_reason = ");
                    qb.bind(reason.as_str());
                    qb.push(", finished_at = ");
                    qb.bind(at);
                }
            }
            qb.push(" WHERE id = ");
            qb.bind(o.enrollment_id);
            qb.push(" AND state = 'active' AND lease_token = ");
            qb.bind(token);
            qb.push(" RETURNING workspace_id");
            let Some(row) = tx.fetch_optional(qb).await? else {
                continue;
            };
            let ws = WorkspaceId::from_uuid(row.get(0)?);
            activity.entry(ws).or_default().extend(o.activity.iter().cloned());
            events.extend(o.events.iter().cloned());
            if let Some((id, state, detail, sent_at)) = &o.message {
                let mut qb = self.sql("UPDATE campaign_messages SET state = ");
                qb.bind(state.as_str());
                qb.push(", detail = ");
                qb.bind(detail.clone());
                qb.push(", sent_at = COALESCE(sent_at, ");
                qb.bind(*sent_at);
                qb.push("), updated_at = ");
                qb.bind(at);
                qb.push(" WHERE message_id = ");
                qb.bind(id.as_str());
                tx.execute(qb).await?;
            }
        }
        for (ws, rows) in &activity {
            insert_activity(&mut tx, *ws, rows).await?;
        }
        let appended = append_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(appended)
    }

    /// Ends the active enrollments of `lead` in every campaign of `ws` whose stop rules
    /// include `kind` (and, for a reply, wakes those waiting for a reply in campaigns that do
    /// not stop on one). Returns the events appended.
    pub async fn stop_lead(
        &self,
        ws: WorkspaceId,
        lead: LeadId,
        kind: StopKind,
        at: Timestamp,
    ) -> StoreResult<Vec<Event>> {
        let mut qb = self.sql(format!(
            "SELECT {ENROLLMENT_COLUMNS} FROM campaign_enrollments WHERE workspace_id = "
        ));
        qb.bind(ws);
        qb.push(" AND lead_id = ");
        qb.bind(lead);
        qb.push(" AND state = 'active'");
        let enrollments: Vec<Enrollment> = self
            .fetch_all(qb)
            .await?
            .iter()
            .map(enrollment_from_row)
            .collect::<StoreResult<_>>()?;
        if enrollments.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<CampaignId> = enrollments.iter().map(|e| e.campaign_id).collect();
        let campaigns: HashMap<CampaignId, Campaign> = self
            .campaigns_by_ids(&ids)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
        let mut tx = self.begin().await?;
        let mut events = Vec::new();
        for e in enrollments {
            let Some(c) = campaigns.get(&e.campaign_id) else {
                continue;
            };
            let rules = &c.definition.stop_rules;
            let stops = match kind {
                StopKind::Replied => rules.replied,
                StopKind::Bounced => rules.bounced,
                StopKind::Unsubscribed => rules.unsubscribed,
            };
            if stops {
                let mut qb = self.sql("UPDATE campaign_enrollments SET state = 'exited', exit_reason = ");
                qb.bind(kind.as_str());
                qb.push(", due_at = NULL, waiting_for = NULL, finished_at = ");
                qb.bind(at);
                qb.push(", updated_at = ");
                qb.bind(at);
                qb.push(" WHERE id = ");
                qb.bind(e.id);
                qb.push(" AND state = 'active'");
                if tx.execute(qb).await? == 1 {
                    insert_activity(
                        &mut tx,
                        ws,
                        &[Activity {
                            campaign_id: e.campaign_id,
                            lead_id: lead,
                            entry: e.entry,
                            step: None,
                            kind: "exited".into(),
                            outcome: kind.as_str().into(),
                            variant: None,
                            detail: None,
                            at,
                        }],
                    )
                    .await?;
                    events.push(NewEvent {
                        workspace_id: ws,
                        kind: crate::domain::campaign::CAMPAIGN_EXITED,
                        subject_id: Some(lead.as_uuid()),
                        payload: serde_json::json!({
                            "campaignId": e.campaign_id.to_string(),
                            "leadId": lead.to_string(),
                            "reason": kind.as_str(),
                        }),
                        at,
                    });
                }
            }
        }
        let appended = append_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(appended)
    }

    /// Wakes `lead`'s enrollments waiting for `what` (`reply`, `click`, `field:<name>`): their
    /// step is due now and remembers that the event came.
    pub async fn wake_waiting(
        &self,
        ws: WorkspaceId,
        lead: LeadId,
        what: &str,
        at: Timestamp,
    ) -> StoreResult<u64> {
        let mut qb = self.sql("UPDATE campaign_enrollments SET matched = 1, due_at = ");
        qb.bind(at);
        qb.push(", updated_at = ");
        qb.bind(at);
        qb.push(" WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND lead_id = ");
        qb.bind(lead);
        qb.push(" AND state = 'active' AND waiting_for = ");
        qb.bind(what);
        self.execute(qb).await
    }

    /// A message by its `Message-ID` (without angle brackets).
    pub async fn campaign_message(&self, message_id: &str) -> StoreResult<Option<CampaignMessage>> {
        let mut qb = self.sql(format!(
            "SELECT {MESSAGE_COLUMNS} FROM campaign_messages WHERE message_id = "
        ));
        qb.bind(message_id);
        let row = self.fetch_optional(qb).await?;
        row.as_ref().map(message_from_row).transpose()
    }

    /// The messages of one enrollment entry (a branch asks what happened to them).
    pub async fn entry_messages(
        &self,
        campaign: CampaignId,
        lead: LeadId,
        entry: u32,
    ) -> StoreResult<Vec<CampaignMessage>> {
        let mut qb = self.sql(format!(
            "SELECT {MESSAGE_COLUMNS} FROM campaign_messages WHERE campaign_id = "
        ));
        qb.bind(campaign);
        qb.push(" AND lead_id = ");
        qb.bind(lead);
        qb.push(" AND entry = ");
        qb.bind(i64::from(entry));
        let rows = self.fetch_all(qb).await?;
        rows.iter().map(message_from_row).collect()
    }

    /// Sets one of a message's event times (`delivered_at`, `bounced_at`, `replied_at`,
    /// `clicked_at`, `unsubscribed_at`) if not yet set; true when it was set now.
    pub async fn mark_message(
        &self,
        message_id: &str,
        column: &'static str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        debug_assert!(matches!(
            column,
            "delivered_at" | "bounced_at" | "replied_at" | "clicked_at" | "unsubscribed_at"
        ));
        let mut qb = self.sql(format!("UPDATE campaign_messages SET {column} = "));
        qb.bind(at);
        qb.push(", updated_at = ");
        qb.bind(at);
        qb.push(" WHERE message_id = ");
        qb.bind(message_id);
        qb.push(format!(" AND {column} IS NULL"));
        Ok(self.execute(qb).await? == 1)
    }

    /// Records an inbound mail event id; false when it was seen before.
    pub async fn record_mail_event(
        &self,
        provider: &str,
        event_id: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let mut qb = self.sql("INSERT INTO mail_events (provider, event_id, received_at) VALUES (");
        qb.bind(provider).push(", ");
        qb.bind(event_id).push(", ");
        qb.bind(at).push(") ON CONFLICT (provider, event_id) DO NOTHING");
        Ok(self.execute(qb).await? == 1)
    }

    /// Takes one send slot in each of `scopes` (`(scope, window start, cap)`), all or none.
    pub async fn take_send_slots(&self, scopes: &[(String, Timestamp, u32)]) -> StoreResult<bool> {
        if scopes.is_empty() {
            return Ok(true);
        }
        let mut tx = self.begin().await?;
        for (scope, window, cap) in scopes {
            let mut qb = self.sql("INSERT INTO send_counters (scope, window_start, used) VALUES (");
            qb.bind(scope.as_str()).push(", ");
            qb.bind(*window)
                .push(", 0) ON CONFLICT (scope, window_start) DO NOTHING");
            tx.execute(qb).await?;
            let mut qb = self.sql("UPDATE send_counters SET used = used + 1 WHERE scope = ");
            qb.bind(scope.as_str());
            qb.push(" AND window_start = ");
            qb.bind(*window);
            qb.push(" AND used < ");
            qb.bind(i64::from(*cap));
            if tx.execute(qb).await? == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Drops counters of windows that started before `before`.
    pub async fn prune_send_counters(&self, before: Timestamp) -> StoreResult<u64> {
        let mut qb = self.sql("DELETE FROM send_counters WHERE window_start < ");
        qb.bind(before);
        self.execute(qb).await
    }

    /// Adds (or keeps) a suppression; true when it is new.
    pub async fn suppress(
        &self,
        ws: WorkspaceId,
        email_hash: &str,
        email: Option<&str>,
        reason: &str,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let mut qb = self.sql(
            "INSERT INTO mail_suppressions (workspace_id, email_hash, email, reason, created_at) VALUES (",
        );
        qb.bind(ws).push(", ");
        qb.bind(email_hash).push(", ");
        qb.bind(email).push(", ");
        qb.bind(reason).push(", ");
        qb.bind(at)
            .push(") ON CONFLICT (workspace_id, email_hash) DO NOTHING");
        Ok(self.execute(qb).await? == 1)
    }

    pub async fn unsuppress(&self, ws: WorkspaceId, email_hash: &str) -> StoreResult<bool> {
        let mut qb = self.sql("DELETE FROM mail_suppressions WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND email_hash = ");
        qb.bind(email_hash);
        Ok(self.execute(qb).await? == 1)
    }

    /// Which of `hashes` are suppressed in `ws`.
    pub async fn suppressed(&self, ws: WorkspaceId, hashes: &[String]) -> StoreResult<Vec<String>> {
        let mut out = Vec::new();
        for chunk in hashes.chunks(CHUNK) {
            let mut qb = self.sql("SELECT email_hash FROM mail_suppressions WHERE workspace_id = ");
            qb.bind(ws);
            qb.push(" AND email_hash IN (");
            qb.bind_list(chunk.iter().map(String::as_str));
            qb.push(")");
            for r in self.fetch_all(qb).await? {
                out.push(r.get(0)?);
            }
        }
        Ok(out)
    }

    /// A workspace's suppressions, newest first, at most `limit`.
    pub async fn suppressions(&self, ws: WorkspaceId, limit: u32) -> StoreResult<Vec<Suppression>> {
        let mut qb = self
            .sql("SELECT email_hash, email, reason, created_at FROM mail_suppressions WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" ORDER BY created_at DESC, email_hash LIMIT ");
        qb.bind(i64::from(limit));
        let rows = self.fetch_all(qb).await?;
        rows.iter()
            .map(|r| {
                Ok(Suppression {
                    email_hash: r.get(0)?,
                    email: r.get(1)?,
                    reason: r.get(2)?,
                    created_at: r.get(3)?,
                })
            })
            .collect()
    }

    /// A lead's campaign timeline, oldest first, at most `limit` lines.
    pub async fn lead_timeline(
        &self,
        ws: WorkspaceId,
        lead: LeadId,
        limit: u32,
    ) -> StoreResult<Vec<Activity>> {
        let mut qb = self.sql(
            "SELECT campaign_id, lead_id, CAST(entry AS BIGINT), CAST(step AS BIGINT), kind, outcome, \
             CAST(variant AS BIGINT), detail, occurred_at FROM campaign_activity WHERE workspace_id = ",
        );
        qb.bind(ws);
        qb.push(" AND lead_id = ");
        qb.bind(lead);
        qb.push(" ORDER BY id LIMIT ");
        qb.bind(i64::from(limit));
        let rows = self.fetch_all(qb).await?;
        rows.iter().map(activity_from_row).collect()
    }

    /// A lead's enrollment in a campaign.
    pub async fn enrollment(&self, campaign: CampaignId, lead: LeadId) -> StoreResult<Option<Enrollment>> {
        let mut qb = self.sql(format!(
            "SELECT {ENROLLMENT_COLUMNS} FROM campaign_enrollments WHERE campaign_id = "
        ));
        qb.bind(campaign);
        qb.push(" AND lead_id = ");
        qb.bind(lead);
        let row = self.fetch_optional(qb).await?;
        row.as_ref().map(enrollment_from_row).transpose()
    }

    /// The enrollments among `ids` still held under `token` (a step job's batch).
    pub async fn held_enrollments(&self, ids: &[i64], token: &str) -> StoreResult<Vec<Enrollment>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let mut qb = self.sql(format!(
                "SELECT {ENROLLMENT_COLUMNS} FROM campaign_enrollments WHERE id IN ("
            ));
            qb.bind_list(chunk.iter().copied());
            qb.push(") AND state = 'active' AND lease_token = ");
            qb.bind(token);
            for r in self.fetch_all(qb).await? {
                out.push(enrollment_from_row(&r)?);
            }
        }
        Ok(out)
    }

    /// The campaign's funnel.
    pub async fn campaign_stats(&self, campaign: CampaignId) -> StoreResult<CampaignStats> {
        let mut stats = CampaignStats::default();
        let mut qb = self.sql(
            "SELECT state, COALESCE(exit_reason, ''), CAST(step AS BIGINT), COUNT(*) FROM campaign_enrollments \
             WHERE campaign_id = ",
        );
        qb.bind(campaign);
        qb.push(" GROUP BY state, COALESCE(exit_reason, ''), step");
        let mut exited_by: BTreeMap<String, u64> = BTreeMap::new();
        let mut at_step: BTreeMap<u32, u64> = BTreeMap::new();
        for r in self.fetch_all(qb).await? {
            let state: String = r.get(0)?;
            let reason: String = r.get(1)?;
            let step = small(r.get(2)?);
            let n = r.count(3)?;
            stats.enrolled += n;
            match EnrollmentState::parse(&state) {
                Some(EnrollmentState::Active) => {
                    stats.active += n;
                    *at_step.entry(step).or_default() += n;
                }
                Some(EnrollmentState::Completed) => stats.completed += n,
                Some(EnrollmentState::Exited) => {
                    stats.exited += n;
                    *exited_by.entry(reason).or_default() += n;
                }
                None => return Err(StoreError::corrupt(format!("enrollment state {state}"))),
            }
        }
        stats.exited_by = exited_by.into_iter().collect();
        stats.at_step = at_step.into_iter().collect();
        let mut qb = self.sql(
            "SELECT CAST(step AS BIGINT), CAST(variant AS BIGINT), \
             SUM(CASE WHEN state IN ('sent', 'unconfirmed') THEN 1 ELSE 0 END), COUNT(delivered_at), \
             COUNT(bounced_at), COUNT(replied_at), COUNT(clicked_at), COUNT(unsubscribed_at), \
             SUM(CASE WHEN state = 'unconfirmed' THEN 1 ELSE 0 END), \
             SUM(CASE WHEN state = 'rejected' THEN 1 ELSE 0 END) FROM campaign_messages WHERE campaign_id = ",
        );
        qb.bind(campaign);
        qb.push(" GROUP BY step, variant ORDER BY step, variant");
        for r in self.fetch_all(qb).await? {
            let v = VariantStats {
                step: small(r.get(0)?),
                variant: small(r.get(1)?),
                sent: r.count(2)?,
                delivered: r.count(3)?,
                bounced: r.count(4)?,
                replied: r.count(5)?,
                clicked: r.count(6)?,
                unsubscribed: r.count(7)?,
            };
            stats.sent += v.sent;
            stats.delivered += v.delivered;
            stats.bounced += v.bounced;
            stats.replied += v.replied;
            stats.clicked += v.clicked;
            stats.unsubscribed += v.unsubscribed;
            stats.unconfirmed += r.count(8)?;
            stats.rejected += r.count(9)?;
            stats.variants.push(v);
        }
        Ok(stats)
    }
}
