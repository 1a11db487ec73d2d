//! Lead use cases: read, page, count, create, update, archive, restore, upsert.

use super::{Actor, ServiceError};
use crate::domain::{
    ArchivedFilter, Cursor, CursorSide as Side, EmailAddress, FieldError, FieldErrorCode, Lead, LeadDraft,
    LeadFilter, LeadId, LeadPatch, LeadQuery, PageDirection, Patch, UpsertOutcome, ValidationErrors, now,
};
use crate::events::Bus;
use crate::ops::erasure;
use crate::store::{LeadCounts, Store, StoreError};
use tracing::instrument;

/// A filtered `totalCount` counts at most this many leads.
pub const FILTERED_COUNT_CAP: u64 = 10_000;
/// Rows per `upsertLeads` call.
pub const MAX_UPSERT: usize = 1_000;

/// One page of leads in sort order, with whether more lie beyond its far end.
#[derive(Clone, Debug)]
pub struct LeadPage {
    pub leads: Vec<Lead>,
    /// More leads exist past the end the page was read towards (`first`: after the last edge;
    /// `last`: before the first edge).
    pub has_more: bool,
    /// The workspace's maintained counts, when asked for with the page and it was not empty.
    pub counts: Option<LeadCounts>,
}

/// A `totalCount`: exact, or a lower bound when a filtered count hit the cap.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TotalCount {
    pub value: u64,
    pub exact: bool,
}

/// How often a change without an expected version is applied again after a concurrent one.
const CHANGE_ATTEMPTS: u32 = 32;

#[derive(Clone, Debug)]
pub struct LeadService {
    store: Store,
    /// Told of every committed lead event.
    bus: Bus,
}

impl LeadService {
    pub fn new(store: Store, bus: Bus) -> Self {
        Self { store, bus }
    }

    #[instrument(skip_all, fields(lead.id = %id))]
    pub async fn get(&self, actor: &Actor, id: LeadId) -> Result<Option<Lead>, ServiceError> {
        actor.require_lead_reader()?;
        Ok(self.store.lead(actor.workspace_id, id).await?)
    }

    /// The leads among `ids` in the caller's workspace, in no particular order.
    pub async fn get_many(&self, actor: &Actor, ids: &[LeadId]) -> Result<Vec<Lead>, ServiceError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        actor.require_lead_reader()?;
        Ok(self.store.leads_by_ids(actor.workspace_id, ids).await?)
    }

    /// One keyset page, returned in sort order whichever end it was read from.
    #[instrument(skip_all, fields(limit = query.limit))]
    /// With `with_counts`, the workspace's maintained counts are read in the same statement
    /// (for a `totalCount` on the same page).
    pub async fn page(
        &self,
        actor: &Actor,
        query: &LeadQuery,
        with_counts: bool,
    ) -> Result<LeadPage, ServiceError> {
        actor.require_lead_reader()?;
        let (mut leads, counts) = if with_counts {
            self.store.list_leads_counted(actor.workspace_id, query).await?
        } else {
            (self.store.list_leads(actor.workspace_id, query).await?, None)
        };
        let has_more = leads.len() > query.limit;
        leads.truncate(query.limit);
        if query.direction == PageDirection::Backward {
            leads.reverse();
        }
        Ok(LeadPage {
            leads,
            has_more,
            counts,
        })
    }

    /// Whether a lead matching `filter` lies at or beyond `cursor` on `side`.
    pub async fn any_beside(
        &self,
        actor: &Actor,
        filter: &LeadFilter,
        cursor: &Cursor,
        side: Side,
    ) -> Result<bool, ServiceError> {
        actor.require_lead_reader()?;
        Ok(self
            .store
            .any_lead_beside(actor.workspace_id, filter, cursor, side)
            .await?)
    }

    /// Exact from the maintained counters when only the archive state filters; otherwise
    /// counted up to `FILTERED_COUNT_CAP`.
    /// `known` are counts already read with the page, if any.
    pub async fn count(
        &self,
        actor: &Actor,
        filter: &LeadFilter,
        known: Option<LeadCounts>,
    ) -> Result<TotalCount, ServiceError> {
        actor.require_lead_reader()?;
        if filter.is_unrestricted() {
            let counts = match known {
                Some(c) => c,
                None => self.store.lead_counts(actor.workspace_id).await?,
            };
            let value = match filter.archived {
                ArchivedFilter::Exclude => counts.active,
                ArchivedFilter::Only => counts.archived,
            };
            return Ok(TotalCount { value, exact: true });
        }
        let n = self
            .store
            .count_leads(actor.workspace_id, filter, FILTERED_COUNT_CAP + 1)
            .await?;
        Ok(TotalCount {
            value: n.min(FILTERED_COUNT_CAP),
            exact: n <= FILTERED_COUNT_CAP,
        })
    }

    #[instrument(skip_all)]
    pub async fn create(&self, actor: &Actor, draft: LeadDraft) -> Result<Lead, ServiceError> {
        actor.require_lead_writer()?;
        let patch = LeadPatch::parse(draft).map_err(ServiceError::Invalid)?;
        self.refuse_erased(actor, &patch).await?;
        let mut lead = Lead::new(actor.workspace_id, now());
        lead.apply(&patch);
        let events = self.store.insert_lead(&lead).await?;
        self.bus.publish(events);
        Ok(lead)
    }

    /// Applies a partial update. With `expected_version`, fails as stale unless the lead is
    /// still at that version; without, still refuses to overwrite a concurrent change.
    #[instrument(skip_all, fields(lead.id = %id))]
    pub async fn update(
        &self,
        actor: &Actor,
        id: LeadId,
        draft: LeadDraft,
        expected_version: Option<i64>,
    ) -> Result<Lead, ServiceError> {
        actor.require_lead_writer()?;
        let patch = LeadPatch::parse(draft).map_err(ServiceError::Invalid)?;
        self.refuse_erased(actor, &patch).await?;
        self.change(actor, id, expected_version, |lead| lead.apply(&patch))
            .await
    }

    #[instrument(skip_all, fields(lead.id = %id))]
    pub async fn archive(&self, actor: &Actor, id: LeadId) -> Result<Lead, ServiceError> {
        actor.require_lead_writer()?;
        let at = now();
        self.change(actor, id, None, |lead| {
            let change = lead.archived_at.is_none();
            if change {
                lead.archived_at = Some(at);
            }
            change
        })
        .await
    }

    #[instrument(skip_all, fields(lead.id = %id))]
    pub async fn restore(&self, actor: &Actor, id: LeadId) -> Result<Lead, ServiceError> {
        actor.require_lead_writer()?;
        self.change(actor, id, None, |lead| lead.archived_at.take().is_some())
            .await
    }

    /// Refuses an email that belongs to a person erased from the workspace.
    async fn refuse_erased(&self, actor: &Actor, patch: &LeadPatch) -> Result<(), ServiceError> {
        if let Patch::Set(email) = &patch.email
            && !erasure::erased_among(&self.store, actor.workspace_id, [email])
                .await?
                .is_empty()
        {
            return Err(ServiceError::Refused(erasure::ERASED_MESSAGE));
        }
        Ok(())
    }

    /// Loads, changes and writes back one lead with a compare-and-set on its version. A
    /// change that alters nothing writes nothing and keeps the version. With an expected
    /// version a concurrent change is the caller's `STALE_VERSION`; without one the change is
    /// applied again to the lead as the other writer left it (up to `CHANGE_ATTEMPTS` times),
    /// so concurrent updates of different fields both land and the last of the same field wins.
    async fn change(
        &self,
        actor: &Actor,
        id: LeadId,
        expected_version: Option<i64>,
        edit: impl Fn(&mut Lead) -> bool,
    ) -> Result<Lead, ServiceError> {
        let mut attempt = 1;
        loop {
            let current = self
                .store
                .lead(actor.workspace_id, id)
                .await?
                .ok_or(ServiceError::NotFound("lead"))?;
            if expected_version.is_some_and(|expected| expected != current.version) {
                return Err(StoreError::VersionMismatch.into());
            }
            let mut lead = current.clone();
            if !edit(&mut lead) {
                return Ok(current);
            }
            lead.updated_at = now().max(current.updated_at);
            lead.version = current.version + 1;
            match self.store.update_lead(&lead, &current).await {
                Ok(events) => {
                    self.bus.publish(events);
                    return Ok(lead);
                }
                Err(StoreError::VersionMismatch)
                    if expected_version.is_none() && attempt < CHANGE_ATTEMPTS =>
                {
                    attempt += 1;
                }
                Err(StoreError::NotFound) => return Err(ServiceError::NotFound("lead")),
                Err(other) => return Err(other.into()),
            }
        }
    }

    /// Creates or updates up to `MAX_UPSERT` leads by email. Rows that fail validation are
    /// reported and skipped; the valid rows are written together in one transaction.
    #[instrument(skip_all, fields(rows = drafts.len()))]
    pub async fn upsert(
        &self,
        actor: &Actor,
        drafts: Vec<LeadDraft>,
    ) -> Result<Vec<Result<UpsertOutcome, ValidationErrors>>, ServiceError> {
        actor.require_lead_writer()?;
        if drafts.len() > MAX_UPSERT {
            return Err(ServiceError::invalid(
                "leads",
                FieldErrorCode::TooLong,
                format!("at most {MAX_UPSERT} leads per call, got {}", drafts.len()),
            ));
        }
        let mut results: Vec<Option<Result<UpsertOutcome, ValidationErrors>>> =
            Vec::with_capacity(drafts.len());
        let mut valid: Vec<(usize, EmailAddress, LeadPatch)> = Vec::new();
        for (i, draft) in drafts.into_iter().enumerate() {
            match parse_upsert_row(draft) {
                Ok((email, patch)) => {
                    valid.push((i, email, patch));
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        // rows whose email was erased on request fail like invalid rows; the rest go in
        let erased =
            erasure::erased_among(&self.store, actor.workspace_id, valid.iter().map(|(_, e, _)| e)).await?;
        valid.retain(|(i, email, _)| {
            let refused = erased.contains(email.as_str());
            if refused {
                results[*i] = Some(Err(ValidationErrors(vec![FieldError::new(
                    "email",
                    FieldErrorCode::Invalid,
                    erasure::ERASED_MESSAGE,
                )])));
            }
            !refused
        });
        let items: Vec<(EmailAddress, LeadPatch)> =
            valid.iter().map(|(_, e, p)| (e.clone(), p.clone())).collect();
        let (outcomes, events) = match self.store.upsert_leads(actor.workspace_id, &items, now()).await {
            // A concurrent writer created one of the emails between our read and write: the
            // second attempt sees it and updates instead.
            Err(StoreError::Conflict { .. }) => {
                self.store.upsert_leads(actor.workspace_id, &items, now()).await?
            }
            other => other?,
        };
        self.bus.publish(events);
        for ((i, _, _), outcome) in valid.iter().zip(outcomes) {
            results[*i] = Some(Ok(outcome));
        }
        Ok(results.into_iter().flatten().collect())
    }
}

/// An upsert row needs an email, which is its key.
fn parse_upsert_row(mut draft: LeadDraft) -> Result<(EmailAddress, LeadPatch), ValidationErrors> {
    let raw_email = match &draft.email {
        Patch::Set(e) => e.clone(),
        _ => {
            return Err(ValidationErrors(vec![FieldError::new(
                "email",
                FieldErrorCode::Required,
                "email is required: it identifies the lead to create or update",
            )]));
        }
    };
    let patch_result = LeadPatch::parse(std::mem::take(&mut draft));
    let email = EmailAddress::parse("email", &raw_email);
    match (email, patch_result) {
        (Ok(email), Ok(patch)) => Ok((email, patch)),
        (_, Err(errors)) => Err(errors),
        (Err(e), Ok(_)) => Err(ValidationErrors(vec![e])),
    }
}
