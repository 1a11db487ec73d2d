//! The mutation root. Each mutation takes one `input` and returns a payload with
//! `userErrors`; authorization, not-found and internal failures are GraphQL errors.

use super::errors::{UserError, split};
use super::ids::decode_lead_id;
use super::query::actor;
use super::types::Lead;
use super::types::{CreateLeadInput, LeadIdInput, UpdateLeadInput, UpsertLeadsInput};
use crate::domain::UpsertOutcome as StoreOutcome;
use crate::service::Services;
use async_graphql::{Context, Enum, Object, SimpleObject};

/// The result of a mutation on one lead.
#[derive(SimpleObject)]
pub struct LeadPayload {
    /// The lead after the change; null when the input was rejected.
    pub lead: Option<Lead>,
    /// Why the input was rejected; empty on success.
    pub user_errors: Vec<UserError>,
}

impl LeadPayload {
    fn from(result: (Option<crate::domain::Lead>, Vec<UserError>)) -> Self {
        Self {
            lead: result.0.map(Lead::new),
            user_errors: result.1,
        }
    }
}

/// What happened to one upserted lead.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum UpsertOutcome {
    Created,
    Updated,
    /// The lead exists and already had these values.
    Unchanged,
    /// The row was rejected; see its `userErrors`.
    Failed,
}

/// One row of `upsertLeads`.
#[derive(SimpleObject)]
pub struct UpsertLeadResult {
    /// Position of the row in `input.leads`.
    pub index: i32,
    pub outcome: UpsertOutcome,
    pub lead: Option<Lead>,
    pub user_errors: Vec<UserError>,
}

#[derive(SimpleObject, Default)]
pub struct UpsertLeadsPayload {
    /// One result per input row, in input order.
    pub results: Vec<UpsertLeadResult>,
    pub created_count: i32,
    pub updated_count: i32,
    pub unchanged_count: i32,
    pub failed_count: i32,
    /// Problems with the input as a whole, e.g. too many rows.
    pub user_errors: Vec<UserError>,
}

#[derive(Default)]
pub struct Mutation;

#[Object(name = "LeadMutations")]
impl Mutation {
    /// Creates a lead. A duplicate email is a `TAKEN` user error.
    async fn create_lead(
        &self,
        ctx: &Context<'_>,
        input: CreateLeadInput,
    ) -> async_graphql::Result<LeadPayload> {
        let actor = actor(ctx)?;
        let services = ctx.data::<Services>()?;
        let result = services.leads.create(actor, input.into_draft()).await;
        Ok(LeadPayload::from(split(result, &["input"])?))
    }

    /// Changes some fields of a lead.
    async fn update_lead(
        &self,
        ctx: &Context<'_>,
        input: UpdateLeadInput,
    ) -> async_graphql::Result<LeadPayload> {
        let actor = actor(ctx)?;
        let id = decode_lead_id(&input.id)?;
        let expected = input.expected_version;
        let services = ctx.data::<Services>()?;
        let result = services
            .leads
            .update(actor, id, input.into_draft(), expected)
            .await;
        Ok(LeadPayload::from(split(result, &["input"])?))
    }

    /// Archives a lead: it leaves default listings but stays readable. Idempotent.
    async fn archive_lead(
        &self,
        ctx: &Context<'_>,
        input: LeadIdInput,
    ) -> async_graphql::Result<LeadPayload> {
        let actor = actor(ctx)?;
        let id = decode_lead_id(&input.id)?;
        let services = ctx.data::<Services>()?;
        let result = services.leads.archive(actor, id).await;
        Ok(LeadPayload::from(split(result, &["input"])?))
    }

    /// Brings an archived lead back. Idempotent.
    async fn restore_lead(
        &self,
        ctx: &Context<'_>,
        input: LeadIdInput,
    ) -> async_graphql::Result<LeadPayload> {
        let actor = actor(ctx)?;
        let id = decode_lead_id(&input.id)?;
        let services = ctx.data::<Services>()?;
        let result = services.leads.restore(actor, id).await;
        Ok(LeadPayload::from(split(result, &["input"])?))
    }

    /// Creates or updates up to 1,000 leads by email in one transaction. Rows that fail
    /// validation are reported and skipped; given fields overwrite, absent ones are kept.
    async fn upsert_leads(
        &self,
        ctx: &Context<'_>,
        input: UpsertLeadsInput,
    ) -> async_graphql::Result<UpsertLeadsPayload> {
        let actor = actor(ctx)?;
        let services = ctx.data::<Services>()?;
        let drafts = input.leads.into_iter().map(CreateLeadInput::into_draft).collect();
        let rows = match split(services.leads.upsert(actor, drafts).await, &["input"])? {
            (Some(rows), _) => rows,
            (None, user_errors) => {
                return Ok(UpsertLeadsPayload {
                    user_errors,
                    ..Default::default()
                });
            }
        };
        let mut payload = UpsertLeadsPayload {
            results: Vec::with_capacity(rows.len()),
            ..Default::default()
        };
        for (i, row) in rows.into_iter().enumerate() {
            let index = i as i32;
            let (outcome, lead, user_errors) = match row {
                Ok(StoreOutcome::Created(l)) => (UpsertOutcome::Created, Some(l), Vec::new()),
                Ok(StoreOutcome::Updated(l)) => (UpsertOutcome::Updated, Some(l), Vec::new()),
                Ok(StoreOutcome::Unchanged(l)) => (UpsertOutcome::Unchanged, Some(l), Vec::new()),
                Err(errors) => {
                    let path = ["input".to_owned(), "leads".to_owned(), i.to_string()];
                    let refs: Vec<&str> = path.iter().map(String::as_str).collect();
                    (UpsertOutcome::Failed, None, UserError::list(errors, &refs))
                }
            };
            match outcome {
                UpsertOutcome::Created => payload.created_count += 1,
                UpsertOutcome::Updated => payload.updated_count += 1,
                UpsertOutcome::Unchanged => payload.unchanged_count += 1,
                UpsertOutcome::Failed => payload.failed_count += 1,
            }
            payload.results.push(UpsertLeadResult {
                index,
                outcome,
                lead: lead.map(Lead::new),
                user_errors,
            });
        }
        Ok(payload)
    }
}
