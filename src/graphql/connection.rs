//! Relay connections: the one `PageInfo` type, the checks of `first`/`after`/`last`/`before`
//! every connection shares, and the connection over leads.
//!
//! Follows the Relay Cursor Connections specification: `first`/`after` page forward,
//! `last`/`before` backward, and edges keep the connection's order either way. The flag on the
//! side a page was read towards comes with the read (one row more than asked for); the other —
//! `hasPreviousPage` paging forward, `hasNextPage` backward — is one indexed existence check at
//! or beyond the cursor the page started from, made only when selected (`PageInfo::beside`).
//! Leads ask `LeadService::any_beside`; the connections ordered by one unique key (imports,
//! import errors, dead jobs, webhook deliveries, retention runs, erasures) read their own
//! listing with `KeysetPage::probe`. `totalCount` on leads is likewise computed only when
//! selected.

use super::enrichment::Prefetched;
use super::errors::{bad_input, to_gql};
use super::ids::{CursorKey, decode_cursor, decode_key_cursor, encode_cursor, encode_key_cursor};
use super::types::Lead;
use crate::domain::{
    Cursor, CursorSide as Side, KeysetPage, LeadFilter, LeadOrder, LeadQuery, PageDirection, Paged,
};
use crate::service::{Actor, LeadCounts, LeadPage, ServiceError, Services, TotalCount};
use async_graphql::{Context, Object};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::OnceCell;

pub const DEFAULT_PAGE: i32 = 50;
pub const MAX_PAGE: i32 = 500;

/// The page sizes of one connection.
#[derive(Clone, Copy, Debug)]
pub struct PageSize {
    /// Used when neither `first` nor `last` is given.
    pub default: usize,
    pub max: usize,
}

/// Leads: 50 by default, at most 500.
pub const LEAD_PAGE: PageSize = PageSize {
    default: DEFAULT_PAGE as usize,
    max: MAX_PAGE as usize,
};

/// Checks `first`/`last` and tells how many edges to read from which end. `first` and `last`
/// together are refused; each must be 0 to `size.max`. With neither, `size.default` edges are
/// read forward, or backward when only `before` is given (the natural reading of "the page
/// before this cursor").
pub fn page_size(
    first: Option<i32>,
    last: Option<i32>,
    after: bool,
    before: bool,
    size: PageSize,
) -> async_graphql::Result<(usize, PageDirection)> {
    let check = |name: &str, n: i32| -> async_graphql::Result<usize> {
        let max = size.max;
        let n = usize::try_from(n).map_err(|_| bad_input(format!("`{name}` must not be negative")))?;
        if n > max {
            return Err(bad_input(format!("`{name}` must be at most {max}, got {n}")));
        }
        Ok(n)
    };
    match (first, last) {
        (Some(_), Some(_)) => Err(bad_input("pass either `first` or `last`, not both")),
        (Some(n), None) => Ok((check("first", n)?, PageDirection::Forward)),
        (None, Some(n)) => Ok((check("last", n)?, PageDirection::Backward)),
        (None, None) if before && !after => Ok((size.default, PageDirection::Backward)),
        (None, None) => Ok((size.default, PageDirection::Forward)),
    }
}

/// Turns Relay arguments into a validated keyset query.
pub fn page_query(
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
    filter: LeadFilter,
    order: LeadOrder,
) -> async_graphql::Result<LeadQuery> {
    let (limit, direction) = page_size(first, last, after.is_some(), before.is_some(), LEAD_PAGE)?;
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

/// Turns Relay arguments into a validated page of a connection ordered by one unique key.
pub fn keyset_page<K: CursorKey>(
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
    size: PageSize,
) -> async_graphql::Result<KeysetPage<K>> {
    let (limit, direction) = page_size(first, last, after.is_some(), before.is_some(), size)?;
    Ok(KeysetPage {
        after: after.map(|c| decode_key_cursor(&c, "after")).transpose()?,
        before: before.map(|c| decode_key_cursor(&c, "before")).transpose()?,
        inclusive: false,
        limit,
        direction,
    })
}

/// Reads `page` of a connection ordered by one unique key with `read` and builds its edges
/// (`edge` gets each item's cursor) and page info, whose other side is answered, when asked,
/// by `read` again with the `KeysetPage::probe` of the page's starting cursor.
pub async fn keyset_connection<K, T, E, F, Fut>(
    ctx: &Context<'_>,
    page: KeysetPage<K>,
    read: F,
    key: impl Fn(&T) -> K,
    edge: impl Fn(String, T) -> E,
) -> async_graphql::Result<(Vec<E>, PageInfo)>
where
    K: CursorKey,
    F: Fn(Services, KeysetPage<K>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Paged<T>, ServiceError>> + Send + 'static,
{
    let services = ctx.data::<Services>()?.clone();
    let read_page = read(services, page.clone()).await.map_err(to_gql)?;
    let start_cursor = read_page.items.first().map(|t| encode_key_cursor(&key(t)));
    let end_cursor = read_page.items.last().map(|t| encode_key_cursor(&key(t)));
    let edges = read_page
        .items
        .into_iter()
        .map(|t| {
            let cursor = encode_key_cursor(&key(&t));
            edge(cursor, t)
        })
        .collect();
    let (cursor, side) = beside_of(page.direction, &page.after, &page.before);
    let beside = cursor.cloned().map(|cursor| -> Beside {
        Box::new(move |services| {
            let probe = read(services, KeysetPage::probe(cursor.clone(), side));
            async move { Ok(probe.await?.has_more) }.boxed()
        })
    });
    let info = PageInfo {
        start_cursor,
        end_cursor,
        direction: page.direction,
        has_more: read_page.has_more,
        beside,
    };
    Ok((edges, info))
}

/// The cursor a page started from and the side of it the page does not cover: `after` and
/// what lies at or before it paging forward, `before` and what lies at or after it backward.
fn beside_of<'c, C>(
    direction: PageDirection,
    after: &'c Option<C>,
    before: &'c Option<C>,
) -> (Option<&'c C>, Side) {
    match direction {
        PageDirection::Forward => (after.as_ref(), Side::AtOrBefore),
        PageDirection::Backward => (before.as_ref(), Side::AtOrAfter),
    }
}

/// Whether anything lies at or beyond the cursor a page started from, asked of the services.
type Beside = Box<dyn Fn(Services) -> BoxFuture<'static, Result<bool, ServiceError>> + Send + Sync>;

/// Relay page information: the cursors of a page's ends and what lies beyond them.
pub struct PageInfo {
    start_cursor: Option<String>,
    end_cursor: Option<String>,
    direction: PageDirection,
    /// Whether more edges lie beyond the page in the direction it was read.
    has_more: bool,
    /// `None` when the page started from no cursor: then nothing lies on the other side.
    beside: Option<Beside>,
}

/// Relay page information, the same for every connection.
#[Object]
impl PageInfo {
    /// Whether more edges follow. Paging backward, whether any edge lies at or after `before`.
    async fn has_next_page(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        match self.direction {
            PageDirection::Forward => Ok(self.has_more),
            PageDirection::Backward => self.beside(ctx).await,
        }
    }

    /// Whether edges precede this page. Paging forward, whether any edge lies at or before
    /// `after`.
    async fn has_previous_page(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        match self.direction {
            PageDirection::Backward => Ok(self.has_more),
            PageDirection::Forward => self.beside(ctx).await,
        }
    }

    /// Cursor of the first edge, if any.
    async fn start_cursor(&self) -> Option<&str> {
        self.start_cursor.as_deref()
    }

    /// Cursor of the last edge, if any.
    async fn end_cursor(&self) -> Option<&str> {
        self.end_cursor.as_deref()
    }
}

impl PageInfo {
    async fn beside(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let Some(beside) = &self.beside else {
            return Ok(false);
        };
        let services = ctx.data::<Services>()?;
        beside(services.clone()).await.map_err(to_gql)
    }
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
        let (cursor, side) = beside_of(self.query.direction, &self.query.after, &self.query.before);
        let beside = cursor.cloned().map(|cursor| -> Beside {
            let (actor, filter) = (self.actor.clone(), self.query.filter.clone());
            Box::new(move |services| {
                let (actor, filter, cursor) = (actor.clone(), filter.clone(), cursor.clone());
                async move { services.leads.any_beside(&actor, &filter, &cursor, side).await }.boxed()
            })
        });
        PageInfo {
            start_cursor: self.cursor_at(0),
            end_cursor: self.leads.len().checked_sub(1).and_then(|i| self.cursor_at(i)),
            direction: self.query.direction,
            has_more: self.has_more,
            beside,
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
