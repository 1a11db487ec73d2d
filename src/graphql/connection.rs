//! The Relay connection over leads: arguments, keyset paging and lazily computed extras.
//!
//! Follows the Relay Cursor Connections specification: `first`/`after` page forward,
//! `last`/`before` backward. `hasPreviousPage` (forward) and `hasNextPage` (backward) are
//! answered with one indexed existence check, and only when selected; so is `totalCount`.

use super::enrichment::Prefetched;
use super::errors::{bad_input, to_gql};
use super::ids::{decode_cursor, encode_cursor};
use super::types::Lead;
use crate::domain::{Cursor, CursorSide as Side, LeadFilter, LeadOrder, LeadQuery, PageDirection};
use crate::service::{Actor, LeadCounts, LeadPage, Services, TotalCount};
use async_graphql::{Context, Object, SimpleObject};
use std::sync::Arc;
use tokio::sync::OnceCell;

pub const DEFAULT_PAGE: i32 = 50;
pub const MAX_PAGE: i32 = 500;

/// Turns Relay arguments into a validated keyset query.
pub fn page_query(
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
    filter: LeadFilter,
    order: LeadOrder,
) -> async_graphql::Result<LeadQuery> {
    let check = |name: &str, n: i32| -> async_graphql::Result<usize> {
        if n < 0 {
            return Err(bad_input(format!("`{name}` must not be negative")));
        }
        if n > MAX_PAGE {
            return Err(bad_input(format!("`{name}` must be at most {MAX_PAGE}, got {n}")));
        }
        Ok(n as usize)
    };
    let (limit, direction) = match (first, last) {
        (Some(_), Some(_)) => {
            return Err(bad_input("pass either `first` or `last`, not both"));
        }
        (Some(n), None) => (check("first", n)?, PageDirection::Forward),
        (None, Some(n)) => (check("last", n)?, PageDirection::Backward),
        // Only `before` given: the natural reading is "the page before this cursor".
        (None, None) if before.is_some() && after.is_none() => {
            (DEFAULT_PAGE as usize, PageDirection::Backward)
        }
        (None, None) => (DEFAULT_PAGE as usize, PageDirection::Forward),
    };
    let after = after.map(|c| decode_cursor(&c, order, "after")).transpose()?;
    let before = before.map(|c| decode_cursor(&c, order, "before")).transpose()?;
    Ok(LeadQuery {
        filter,
        order,
        after,
        before,
        limit,
        direction,
    })
}

/// A page of leads.
pub struct LeadConnection {
    actor: Actor,
    query: LeadQuery,
    leads: Vec<Arc<crate::domain::Lead>>,
    has_more: bool,
    /// Counts read with the page, when `totalCount` was selected.
    known_counts: Option<LeadCounts>,
    /// Computed on first use, shared by `totalCount` and `totalCountIsExact`.
    count: OnceCell<TotalCount>,
    /// Enrichment of the page's leads, resolved in one go for the groups selected.
    prefetched: Option<Arc<Prefetched>>,
}

impl LeadConnection {
    pub fn new(actor: Actor, query: LeadQuery, page: LeadPage) -> Self {
        Self {
            actor,
            query,
            leads: page.leads.into_iter().map(Arc::new).collect(),
            has_more: page.has_more,
            known_counts: page.counts,
            count: OnceCell::new(),
            prefetched: None,
        }
    }

    /// The page's leads, for prefetching.
    pub fn leads(&self) -> &[Arc<crate::domain::Lead>] {
        &self.leads
    }

    pub fn with_prefetched(self, prefetched: Option<Arc<Prefetched>>) -> Self {
        Self { prefetched, ..self }
    }

    fn cursor_at(&self, index: usize) -> Option<String> {
        self.leads
            .get(index)
            .map(|l| encode_cursor(&Cursor::for_lead(self.query.order, l)))
    }
}

/// An edge in a lead connection.
pub struct LeadEdge<'a> {
    lead: &'a Arc<crate::domain::Lead>,
    order: LeadOrder,
    prefetched: &'a Option<Arc<Prefetched>>,
}

#[Object]
impl LeadEdge<'_> {
    /// Opaque position of this edge, for `after`/`before`. Valid only with the same `orderBy`.
    async fn cursor(&self) -> String {
        encode_cursor(&Cursor::for_lead(self.order, self.lead))
    }
    async fn node(&self) -> Lead {
        Lead(Arc::clone(self.lead), self.prefetched.clone())
    }
}

/// Relay page information.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct PageInfo {
    /// Cursor of the first edge, if any.
    start_cursor: Option<String>,
    /// Cursor of the last edge, if any.
    end_cursor: Option<String>,
    #[graphql(skip)]
    has_more: bool,
    #[graphql(skip)]
    actor: Actor,
    #[graphql(skip)]
    query: LeadQuery,
}

#[async_graphql::ComplexObject]
impl PageInfo {
    /// Whether more edges follow. Paging backward, whether any lead lies at or after `before`.
    async fn has_next_page(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        match self.query.direction {
            PageDirection::Forward => Ok(self.has_more),
            PageDirection::Backward => {
                self.beside(ctx, self.query.before.as_ref(), Side::AtOrAfter)
                    .await
            }
        }
    }

    /// Whether edges precede this page. Paging forward, whether any lead lies at or before
    /// `after`.
    async fn has_previous_page(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        match self.query.direction {
            PageDirection::Backward => Ok(self.has_more),
            PageDirection::Forward => {
                self.beside(ctx, self.query.after.as_ref(), Side::AtOrBefore)
                    .await
            }
        }
    }
}

impl PageInfo {
    async fn beside(
        &self,
        ctx: &Context<'_>,
        cursor: Option<&Cursor>,
        side: Side,
    ) -> async_graphql::Result<bool> {
        let Some(cursor) = cursor else {
            return Ok(false);
        };
        let services = ctx.data::<Services>()?;
        services
            .leads
            .any_beside(&self.actor, &self.query.filter, cursor, side)
            .await
            .map_err(to_gql)
    }
}

#[Object]
impl LeadConnection {
    async fn edges(&self) -> Vec<LeadEdge<'_>> {
        self.leads
            .iter()
            .map(|lead| LeadEdge {
                lead,
                order: self.query.order,
                prefetched: &self.prefetched,
            })
            .collect()
    }

    /// The leads of `edges`, without cursors.
    async fn nodes(&self) -> Vec<Lead> {
        self.leads
            .iter()
            .map(|l| Lead(l.clone(), self.prefetched.clone()))
            .collect()
    }

    async fn page_info(&self) -> PageInfo {
        PageInfo {
            start_cursor: self.cursor_at(0),
            end_cursor: self.leads.len().checked_sub(1).and_then(|i| self.cursor_at(i)),
            has_more: self.has_more,
            actor: self.actor.clone(),
            query: self.query.clone(),
        }
    }

    /// Number of leads matching the filter, ignoring paging. Exact when the filter restricts
    /// only `archived`, from a maintained counter. With any other filter the count stops at
    /// 10,000: the value is then 10,000 and `totalCountIsExact` is false.
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        Ok(self.count(ctx).await?.value as i64)
    }

    /// False when `totalCount` hit the 10,000 cap for filtered counts and is a lower bound.
    async fn total_count_is_exact(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        Ok(self.count(ctx).await?.exact)
    }
}

impl LeadConnection {
    async fn count(&self, ctx: &Context<'_>) -> async_graphql::Result<TotalCount> {
        let services = ctx.data::<Services>()?;
        let count = self
            .count
            .get_or_try_init(|| {
                services
                    .leads
                    .count(&self.actor, &self.query.filter, self.known_counts)
            })
            .await
            .map_err(to_gql)?;
        Ok(*count)
    }
}
