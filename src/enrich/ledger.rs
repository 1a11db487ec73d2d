//! What one request spends: its credit budget, the credits and provider calls it caused, the
//! cache hits it enjoyed, and (for a dry run) the calls it would have made. Shared by every
//! enrichment resolver of the request; reported in `extensions.enrichment`.

use crate::domain::{Group, ProviderKind};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A request's enrichment account.
#[derive(Debug, Default)]
pub struct Ledger {
    max_credits: Option<u64>,
    /// Credits spent plus credits reserved for calls in flight; never above `max_credits`.
    committed: AtomicU64,
    spent: AtomicU64,
    cache_hits: AtomicU64,
    provider_calls: AtomicU64,
    touched: AtomicBool,
    /// Set for dry runs: providers are not called; what would be called is written down.
    planning: bool,
    plan: Mutex<BTreeMap<Group, PlannedGroup>>,
}

/// A summary for `extensions.enrichment`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spend {
    pub credits_spent: u64,
    pub cache_hits: u64,
    pub provider_calls: u64,
    pub max_credits: Option<u64>,
}

/// What a dry run found for one group.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlannedGroup {
    /// Leads asked for.
    pub leads: u64,
    /// Leads answered from the cache or stored records.
    pub cached: u64,
    /// Leads that would go to the providers.
    pub to_fetch: u64,
    /// The waterfall, in order.
    pub steps: Vec<PlannedStep>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlannedStep {
    pub provider: ProviderKind,
    /// Whether the provider would be called now; when not, `reason` says why.
    pub available: bool,
    pub reason: Option<String>,
    /// Leads it would be asked about (at most; a provider earlier in the waterfall may answer).
    pub leads: u64,
    /// Calls that would take.
    pub calls: u64,
    /// Credits if every one of those leads were a hit.
    pub max_credits: u64,
}

impl Ledger {
    pub fn new(max_credits: Option<u64>) -> Self {
        Self {
            max_credits,
            ..Self::default()
        }
    }

    /// A ledger for a dry run: nothing is called, nothing spent.
    pub fn planning() -> Self {
        Self {
            planning: true,
            ..Self::default()
        }
    }

    pub fn is_planning(&self) -> bool {
        self.planning
    }

    pub fn touch(&self) {
        self.touched.store(true, Ordering::Relaxed);
    }

    pub fn touched(&self) -> bool {
        self.touched.load(Ordering::Relaxed)
    }

    /// Reserves `unit` credits for up to `wanted` items; returns how many were granted.
    pub fn reserve(&self, unit: u64, wanted: usize) -> usize {
        let Some(max) = self.max_credits else {
            self.committed.fetch_add(unit * wanted as u64, Ordering::Relaxed);
            return wanted;
        };
        if unit == 0 {
            return wanted;
        }
        let mut current = self.committed.load(Ordering::Relaxed);
        loop {
            let room = max.saturating_sub(current) / unit;
            let granted = (wanted as u64).min(room);
            if granted == 0 {
                return 0;
            }
            match self.committed.compare_exchange_weak(
                current,
                current + granted * unit,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return granted as usize,
                Err(seen) => current = seen,
            }
        }
    }

    /// Settles a reservation: `actual` credits were spent, the rest is freed.
    pub fn settle(&self, reserved: u64, actual: u64) {
        let actual = actual.min(reserved);
        self.committed.fetch_sub(reserved - actual, Ordering::AcqRel);
        self.spent.fetch_add(actual, Ordering::Relaxed);
    }

    pub fn note_cache_hits(&self, n: u64) {
        self.cache_hits.fetch_add(n, Ordering::Relaxed);
    }

    pub fn note_call(&self) {
        self.provider_calls.fetch_add(1, Ordering::Relaxed);
    }

    pub fn spend(&self) -> Spend {
        Spend {
            credits_spent: self.spent.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            provider_calls: self.provider_calls.load(Ordering::Relaxed),
            max_credits: self.max_credits,
        }
    }

    /// Adds a dry run's findings for `group`.
    pub fn plan(&self, group: Group, update: impl FnOnce(&mut PlannedGroup)) {
        let mut plan = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        update(plan.entry(group).or_default());
    }

    pub fn planned(&self) -> BTreeMap<Group, PlannedGroup> {
        self.plan.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_never_pass_the_budget() {
        let l = Ledger::new(Some(10));
        assert_eq!(l.reserve(3, 5), 3, "3 × 3 = 9 fits, a fourth does not");
        assert_eq!(l.reserve(1, 5), 1);
        assert_eq!(l.reserve(1, 1), 0);
        l.settle(9, 2);
        assert_eq!(l.reserve(1, 100), 7, "unused credits come back");
        assert_eq!(l.spend().credits_spent, 2);
    }

    #[test]
    fn without_a_budget_everything_is_granted() {
        let l = Ledger::new(None);
        assert_eq!(l.reserve(5, 1000), 1000);
        l.settle(5000, 12);
        assert_eq!(l.spend().credits_spent, 12);
    }
}
