//! The one keyset page every secondary listing reads through (imports, import errors, dead
//! jobs, webhook deliveries, retention runs, erasures, API keys), written once on the dialect seam so it
//! runs alike on both backends. Leads have their own, index-tuned statements in `sql`.
//!
//! A listing supplies its `SELECT … FROM … WHERE <its conditions>` and its `KeyOrder` (the
//! unique key columns and the direction rows are listed in); `Store::keyset_page` adds the
//! bounds as one row-value comparison (`(a, b) > (?, ?)`, which both databases serve from the
//! key's index), orders by the key — reversed for a backward page, read from the window's end —
//! and fetches `limit + 1` rows, so whether more follow is known without another statement.
//! `domain::Paged::from_read` trims the extra row and turns a backward read round. No OFFSET.

use super::dialect::{Row, Sql};
use super::{Store, StoreResult};
use crate::domain::{
    ApiKeyId, CampaignId, CrmConnectionId, CrmRunId, DeliveryId, Direction, ErasureId, ImportId, JobId,
    KeysetPage, PageDirection, Paged, RetentionRunId, Value,
};

/// How a listing is ordered: its unique key, compared as a row value, and the direction its
/// rows are listed in (`Desc` for newest first).
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyOrder {
    pub columns: &'static [&'static str],
    pub direction: Direction,
}

impl KeyOrder {
    /// Newest first by a time-ordered or increasing `id`.
    pub const NEWEST_FIRST: KeyOrder = KeyOrder {
        columns: &["id"],
        direction: Direction::Desc,
    };
    /// Oldest first by a time-ordered `id`.
    pub const OLDEST_FIRST: KeyOrder = KeyOrder {
        columns: &["id"],
        direction: Direction::Asc,
    };
}

/// A key's values in `KeyOrder::columns` order.
pub(crate) trait KeyValues {
    fn key_values(&self) -> Vec<Value>;
}

macro_rules! single_key {
    ($($t:ty),*) => {$(
        impl KeyValues for $t {
            fn key_values(&self) -> Vec<Value> {
                vec![(*self).into()]
            }
        }
    )*};
}
single_key!(
    ApiKeyId,
    ImportId,
    RetentionRunId,
    ErasureId,
    DeliveryId,
    CrmConnectionId,
    CrmRunId,
    CampaignId
);

impl KeyValues for JobId {
    fn key_values(&self) -> Vec<Value> {
        vec![Value::Integer(self.as_i64())]
    }
}

/// An import error row's key: `(row_number, seq)`.
impl KeyValues for (u64, u32) {
    fn key_values(&self) -> Vec<Value> {
        vec![
            Value::Integer(i64::try_from(self.0).unwrap_or(i64::MAX)),
            Value::Integer(i64::from(self.1)),
        ]
    }
}

/// ` AND (a, b) <op> (?, ?)`, or ` AND a <op> ?` for a one-column key.
fn push_bound(qb: &mut Sql, columns: &[&str], op: &str, key: &impl KeyValues) {
    let values = key.key_values();
    qb.push(" AND (")
        .push(columns.join(", "))
        .push(") ")
        .push(op)
        .push(" (");
    qb.bind_list(values);
    qb.push(")");
}

/// Appends a page's bounds, its order and `LIMIT limit + 1` to a listing's `… WHERE …`.
pub(crate) fn push_page<K: KeyValues>(qb: &mut Sql, order: KeyOrder, page: &KeysetPage<K>) {
    let asc = order.direction == Direction::Asc;
    // "after" is later in listing order: greater when ascending, smaller when descending
    let (after_op, before_op) = match (asc, page.inclusive) {
        (true, false) => (">", "<"),
        (true, true) => (">=", "<="),
        (false, false) => ("<", ">"),
        (false, true) => ("<=", ">="),
    };
    if let Some(key) = &page.after {
        push_bound(qb, order.columns, after_op, key);
    }
    if let Some(key) = &page.before {
        push_bound(qb, order.columns, before_op, key);
    }
    let read_asc = asc == (page.direction == PageDirection::Forward);
    let dir = if read_asc { " ASC" } else { " DESC" };
    qb.push(" ORDER BY ");
    for (i, column) in order.columns.iter().enumerate() {
        if i > 0 {
            qb.push(", ");
        }
        qb.push(column).push(dir);
    }
    qb.push(" LIMIT ");
    qb.bind(i64::try_from(page.limit).unwrap_or(i64::MAX - 1) + 1);
}

impl Store {
    /// Reads one keyset page of a listing: `listing` is its `SELECT … FROM … WHERE …` (at least
    /// one condition), `decode` reads one of its rows.
    pub(crate) async fn keyset_page<K: KeyValues, T>(
        &self,
        mut listing: Sql,
        order: KeyOrder,
        page: &KeysetPage<K>,
        decode: impl Fn(&Row) -> StoreResult<T>,
    ) -> StoreResult<Paged<T>> {
        push_page(&mut listing, order, page);
        let rows = self.fetch_all(listing).await?;
        let read = rows.iter().map(decode).collect::<StoreResult<Vec<T>>>()?;
        Ok(Paged::from_read(read, page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CursorSide;
    use crate::store::Dialect;

    fn text(order: KeyOrder, page: &KeysetPage<(u64, u32)>) -> String {
        let mut qb = Sql::new(Dialect::Postgres, "SELECT x FROM t WHERE w = 1");
        push_page(&mut qb, order, page);
        qb.into_parts().0
    }

    const ROWS: KeyOrder = KeyOrder {
        columns: &["row_number", "seq"],
        direction: Direction::Asc,
    };

    #[test]
    fn a_forward_page_reads_in_listing_order() {
        assert_eq!(
            text(ROWS, &KeysetPage::after((3, 1), 10)),
            "SELECT x FROM t WHERE w = 1 AND (row_number, seq) > ($1, $2) \
             ORDER BY row_number ASC, seq ASC LIMIT $3"
        );
    }

    #[test]
    fn a_backward_page_reads_from_the_end_of_the_window() {
        let desc = KeyOrder {
            direction: Direction::Desc,
            ..ROWS
        };
        assert_eq!(
            text(desc, &KeysetPage::before((3, 1), 10)),
            "SELECT x FROM t WHERE w = 1 AND (row_number, seq) > ($1, $2) \
             ORDER BY row_number ASC, seq ASC LIMIT $3"
        );
        assert_eq!(
            text(desc, &KeysetPage::probe((3, 1), CursorSide::AtOrBefore)),
            "SELECT x FROM t WHERE w = 1 AND (row_number, seq) >= ($1, $2) \
             ORDER BY row_number ASC, seq ASC LIMIT $3"
        );
    }
}
