//! Retention and erasure: `retentionPolicy`, `setRetentionPolicy`, `runRetention`,
//! `retentionRuns`, `eraseLead` and `erasures`, through `service::RetentionService` and
//! `service::ErasureService`. Malformed input (days out of range, bad ids or cursors) is a
//! `BAD_USER_INPUT` error; run and erasure ids are opaque global ids.

use super::connection::{PageInfo, PageSize, keyset_connection, keyset_page};
use super::errors::to_gql;
use super::ids::{decode_lead_id, lead_global_id};
use super::query::actor;
use crate::domain::{self, RunTrigger};
use crate::service::{self, PolicyDraft, Services};
use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

fn encode(prefix: &str, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{prefix}:{id}"))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A workspace's retention policy. Every part is optional; an empty policy does nothing.
pub struct RetentionPolicy(domain::RetentionPolicy);

#[Object]
impl RetentionPolicy {
    /// Active leads whose `updatedAt` is more than this many days before a run are archived.
    async fn archive_after_days(&self) -> Option<i64> {
        self.0.archive_after_days.map(|d| i64::from(d.get()))
    }
    /// Archived leads whose `archivedAt` is more than this many days before a run are deleted,
    /// with their tags and enrichment records.
    async fn delete_archived_after_days(&self) -> Option<i64> {
        self.0.delete_archived_after_days.map(|d| i64::from(d.get()))
    }
    /// Enrichment records past their expiry are deleted.
    async fn compact_enrichment(&self) -> bool {
        self.0.compact_enrichment
    }
    /// The workspace's events older than this many days are deleted (the deployment's
    /// `event_retention_days` applies as well).
    async fn event_ttl_days(&self) -> Option<i64> {
        self.0.event_ttl_days.map(|d| i64::from(d.get()))
    }
}

/// A new retention policy; it replaces the current one. Days are 1 to 36500.
#[derive(InputObject)]
pub struct RetentionPolicyInput {
    pub archive_after_days: Option<i64>,
    pub delete_archived_after_days: Option<i64>,
    #[graphql(default)]
    pub compact_enrichment: bool,
    pub event_ttl_days: Option<i64>,
}

/// What started a retention run.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum RetentionTrigger {
    /// The daily schedule (`retention_schedule`).
    Schedule,
    /// `runRetention`.
    Manual,
}

/// One retention run and what it changed (or, for a dry run, would change).
pub struct RetentionRun(domain::RetentionRun);

#[Object]
impl RetentionRun {
    async fn id(&self) -> ID {
        ID(encode("RetentionRun", self.0.id.as_uuid()))
    }
    async fn trigger(&self) -> RetentionTrigger {
        match self.0.trigger {
            RunTrigger::Schedule => RetentionTrigger::Schedule,
            RunTrigger::Manual => RetentionTrigger::Manual,
        }
    }
    /// Counted only; nothing was changed.
    async fn dry_run(&self) -> bool {
        self.0.dry_run
    }
    /// When the run was queued; its cut-offs are computed from this instant.
    async fn started_at(&self) -> DateTime<Utc> {
        self.0.started_at
    }
    /// Null while the run is queued or running.
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
    async fn archived(&self) -> i64 {
        to_i64(self.0.counts.archived)
    }
    async fn deleted(&self) -> i64 {
        to_i64(self.0.counts.deleted)
    }
    async fn enrichment_compacted(&self) -> i64 {
        to_i64(self.0.counts.enrichment_compacted)
    }
    async fn events_compacted(&self) -> i64 {
        to_i64(self.0.counts.events_compacted)
    }
    /// Why the last attempt failed, if it did.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
}

/// The audit record of an erasure: who, when, why and how much — no personal data.
pub struct Erasure(domain::Erasure);

#[Object]
impl Erasure {
    async fn id(&self) -> ID {
        ID(encode("Erasure", self.0.id.as_uuid()))
    }
    /// The erased lead's id (the lead itself no longer exists).
    async fn lead_id(&self) -> ID {
        lead_global_id(self.0.lead_id)
    }
    /// The subject of the token that asked for it (`operator:cli` from the command line).
    async fn actor_subject(&self) -> &str {
        &self.0.actor_subject
    }
    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }
    async fn erased_at(&self) -> DateTime<Utc> {
        self.0.erased_at
    }
    /// Enrichment records deleted with the lead.
    async fn enrichment_records(&self) -> i64 {
        to_i64(self.0.counts.enrichment_records)
    }
    /// Events whose payload was replaced (they keep their number and type).
    async fn events_scrubbed(&self) -> i64 {
        to_i64(self.0.counts.events_scrubbed)
    }
    /// Webhook delivery attempts whose receiver answer was cleared.
    async fn deliveries_scrubbed(&self) -> i64 {
        to_i64(self.0.counts.deliveries_scrubbed)
    }
    /// Jobs whose error history, progress, result or payload was scrubbed.
    async fn jobs_scrubbed(&self) -> i64 {
        to_i64(self.0.counts.jobs_scrubbed)
    }
    /// Rows deleted from tables keyed by the email's hash (e.g. import errors).
    async fn rows_by_email_hash(&self) -> i64 {
        to_i64(self.0.counts.rows_by_email_hash)
    }
    /// Imports whose error reasons or file name quoted the person, or whose unfinished upload
    /// named them (cancelled, its file deleted).
    async fn imports_scrubbed(&self) -> i64 {
        to_i64(self.0.counts.imports_scrubbed)
    }
}

#[derive(SimpleObject)]
pub struct RetentionRunEdge {
    pub cursor: String,
    pub node: RetentionRun,
}

/// Retention runs, newest first.
#[derive(SimpleObject)]
pub struct RetentionRunConnection {
    pub edges: Vec<RetentionRunEdge>,
    pub page_info: PageInfo,
}

#[derive(SimpleObject)]
pub struct ErasureEdge {
    pub cursor: String,
    pub node: Erasure,
}

/// Erasure audit records, newest first.
#[derive(SimpleObject)]
pub struct ErasureConnection {
    pub edges: Vec<ErasureEdge>,
    pub page_info: PageInfo,
}

const RUN_PAGE: PageSize = PageSize {
    default: 20,
    max: service::MAX_RUN_PAGE as usize,
};
const ERASURE_PAGE: PageSize = PageSize {
    default: 20,
    max: service::MAX_ERASURE_PAGE as usize,
};

#[derive(Default)]
pub struct OpsQuery;

#[Object]
impl OpsQuery {
    /// The workspace's retention policy (admins and members).
    async fn retention_policy(&self, ctx: &Context<'_>) -> async_graphql::Result<RetentionPolicy> {
        let services = ctx.data::<Services>()?;
        let policy = services.retention.policy(actor(ctx)?).await.map_err(to_gql)?;
        Ok(RetentionPolicy(policy))
    }

    /// Retention runs of the workspace, newest first (admins and members).
    async fn retention_runs(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "At most 100; 20 when neither `first` nor `last` is given.")] first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "At most 100.")] last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<RetentionRunConnection> {
        let page = keyset_page(first, after, last, before, RUN_PAGE)?;
        let actor = actor(ctx)?.clone();
        let (edges, page_info) = keyset_connection(
            ctx,
            page,
            move |services, page| {
                let actor = actor.clone();
                async move { services.retention.runs(&actor, page).await }
            },
            |r| r.id,
            |cursor, r| RetentionRunEdge {
                cursor,
                node: RetentionRun(r),
            },
        )
        .await?;
        Ok(RetentionRunConnection { edges, page_info })
    }

    /// Erasure audit records of the workspace, newest first (admins only).
    async fn erasures(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "At most 100; 20 when neither `first` nor `last` is given.")] first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "At most 100.")] last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<ErasureConnection> {
        let page = keyset_page(first, after, last, before, ERASURE_PAGE)?;
        let actor = actor(ctx)?.clone();
        let (edges, page_info) = keyset_connection(
            ctx,
            page,
            move |services, page| {
                let actor = actor.clone();
                async move { services.erasure.list(&actor, page).await }
            },
            |e| e.id,
            |cursor, e| ErasureEdge {
                cursor,
                node: Erasure(e),
            },
        )
        .await?;
        Ok(ErasureConnection { edges, page_info })
    }
}

#[derive(Default)]
pub struct OpsMutation;

#[Object]
impl OpsMutation {
    /// Replaces the workspace's retention policy (admins only). Days are 1 to 36500.
    async fn set_retention_policy(
        &self,
        ctx: &Context<'_>,
        input: RetentionPolicyInput,
    ) -> async_graphql::Result<RetentionPolicy> {
        let services = ctx.data::<Services>()?;
        let draft = PolicyDraft {
            archive_after_days: input.archive_after_days,
            delete_archived_after_days: input.delete_archived_after_days,
            compact_enrichment: input.compact_enrichment,
            event_ttl_days: input.event_ttl_days,
        };
        let policy = services
            .retention
            .set_policy(actor(ctx)?, draft)
            .await
            .map_err(to_gql)?;
        Ok(RetentionPolicy(policy))
    }

    /// Queues a retention run under the current policy now (admins only) and returns it; a
    /// dry run only counts. While a run of the same kind is queued or running, that one is
    /// returned.
    async fn run_retention(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] dry_run: bool,
    ) -> async_graphql::Result<RetentionRun> {
        let services = ctx.data::<Services>()?;
        let run = services
            .retention
            .run_now(actor(ctx)?, dry_run)
            .await
            .map_err(to_gql)?;
        Ok(RetentionRun(run))
    }

    /// Erases a lead on request (admins only): deletes it with its enrichment, scrubs the
    /// person's data from events, webhook deliveries and jobs, and keeps only a hash of the
    /// email so the address cannot be brought back. Returns the audit record.
    async fn erase_lead(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(desc = "Why, for the audit record (at most 500 characters, no personal data).")]
        reason: Option<String>,
    ) -> async_graphql::Result<Erasure> {
        let services = ctx.data::<Services>()?;
        let actor = actor(ctx)?;
        let id = decode_lead_id(&id)?;
        let erasure = services.erasure.erase(actor, id, reason).await.map_err(to_gql)?;
        Ok(Erasure(erasure))
    }
}
