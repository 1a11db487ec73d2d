//! Keyset pages over the listings ordered by one unique key: imports, import errors, dead
//! jobs, webhook deliveries, retention runs and erasures. (Leads page by their sort key with
//! `LeadQuery`.) The request names a window of keys and which end of it to read from; the
//! answer is the page in listing order and whether more rows lie beyond it.
//!
//! The same request with `limit` 0 and an inclusive bound is the one-row existence check that
//! tells a connection whether anything lies on the other side of its cursor (`probe`).

use super::filter::{CursorSide, PageDirection};

/// One page of a listing: the rows strictly between `after` and `before` in listing order (at
/// them too when `inclusive`), `limit` of them, taken from the end `direction` names.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeysetPage<K> {
    pub after: Option<K>,
    pub before: Option<K>,
    /// Whether the rows at `after` and `before` belong to the window (existence checks).
    pub inclusive: bool,
    pub limit: usize,
    pub direction: PageDirection,
}

impl<K> KeysetPage<K> {
    /// The first `limit` rows of the listing.
    pub fn first(limit: usize) -> Self {
        Self {
            after: None,
            before: None,
            inclusive: false,
            limit,
            direction: PageDirection::Forward,
        }
    }

    /// The `limit` rows that follow `key`.
    pub fn after(key: K, limit: usize) -> Self {
        Self {
            after: Some(key),
            ..Self::first(limit)
        }
    }

    /// The `limit` rows that precede `key`, in listing order.
    pub fn before(key: K, limit: usize) -> Self {
        Self {
            before: Some(key),
            direction: PageDirection::Backward,
            ..Self::first(limit)
        }
    }

    /// The read whose `has_more` tells whether any row lies at `key` or on `side` of it: no
    /// row is kept, one is fetched.
    pub fn probe(key: K, side: CursorSide) -> Self {
        let page = match side {
            CursorSide::AtOrBefore => Self::before(key, 0),
            CursorSide::AtOrAfter => Self::after(key, 0),
        };
        Self {
            inclusive: true,
            ..page
        }
    }

    /// The same window with at most `max` rows.
    pub fn capped(self, max: usize) -> Self {
        Self {
            limit: self.limit.min(max),
            ..self
        }
    }
}

/// A page read with `KeysetPage`: its rows in listing order, and whether more rows lie beyond
/// it in the direction it was read (after it forward, before it backward).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

impl<T> Paged<T> {
    /// Keeps the first `limit` of `read` rows (read `limit + 1` in reading order), in listing
    /// order: a backward page was read from its end, so it is turned round.
    pub fn from_read<K>(mut read: Vec<T>, page: &KeysetPage<K>) -> Self {
        let has_more = read.len() > page.limit;
        read.truncate(page.limit);
        if page.direction == PageDirection::Backward {
            read.reverse();
        }
        Self {
            items: read,
            has_more,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Paged<U> {
        Paged {
            items: self.items.into_iter().map(f).collect(),
            has_more: self.has_more,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backward_read_is_turned_round_and_trimmed_at_its_far_end() {
        // read from the end of the window: 9, 8, 7 for a page of two
        let page = KeysetPage::before(10, 2);
        let paged = Paged::from_read(vec![9, 8, 7], &page);
        assert_eq!(paged.items, vec![8, 9]);
        assert!(paged.has_more);
        let paged = Paged::from_read(vec![1], &page);
        assert_eq!(paged.items, vec![1]);
        assert!(!paged.has_more);
    }

    #[test]
    fn a_probe_keeps_nothing_and_sees_one_row() {
        let probe = KeysetPage::probe(5, CursorSide::AtOrBefore);
        assert_eq!(probe.before, Some(5));
        assert!(probe.inclusive);
        assert_eq!(probe.direction, PageDirection::Backward);
        let paged = Paged::from_read(vec![5], &probe);
        assert!(paged.items.is_empty());
        assert!(paged.has_more);
        let probe = KeysetPage::probe(5, CursorSide::AtOrAfter);
        assert_eq!((probe.after, probe.direction), (Some(5), PageDirection::Forward));
    }
}
