//! In-process guards around each (workspace, provider): a circuit breaker and a rate gate.
//!
//! Both answer at once and never queue: a provider that cannot take a call now is skipped and
//! the waterfall moves on, so a slow or limited provider never holds a page up. The credit
//! quotas shared across instances live in the store (`Store::reserve_usage`).
//!
//! **Quota periods** are UTC seconds, days and calendar months, one rolling row per (workspace,
//! provider, period) in `provider_usage`. Rates are also gated in process by a sliding log of the
//! last calls (with a 25 ms margin), whose token is taken right before the request leaves and
//! again for every retry, so one instance never exceeds `ratePerSecond` in any second the provider
//! sees.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Opens after `threshold` consecutive failures; after `cool_down` lets one probe through
/// (half-open), which closes it on success and opens it again on failure.
pub struct Breaker {
    threshold: u32,
    cool_down: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "CLOSED",
            CircuitState::Open => "OPEN",
            CircuitState::HalfOpen => "HALF_OPEN",
        }
    }
}

struct BreakerState {
    failures: u32,
    opened_at: Option<Instant>,
    probing: bool,
}

impl Breaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cool_down,
            state: Mutex::new(BreakerState {
                failures: 0,
                opened_at: None,
                probing: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a call may go out now; in half-open state only one caller gets `true`.
    pub fn allow(&self) -> bool {
        let mut s = self.lock();
        match s.opened_at {
            None => true,
            Some(at) if at.elapsed() >= self.cool_down && !s.probing => {
                s.probing = true;
                true
            }
            Some(_) => false,
        }
    }

    pub fn state(&self) -> CircuitState {
        let s = self.lock();
        match s.opened_at {
            None => CircuitState::Closed,
            Some(at) if at.elapsed() >= self.cool_down => CircuitState::HalfOpen,
            Some(_) => CircuitState::Open,
        }
    }

    pub fn record_success(&self) {
        let mut s = self.lock();
        s.failures = 0;
        s.opened_at = None;
        s.probing = false;
    }

    pub fn record_failure(&self) {
        let mut s = self.lock();
        s.failures = s.failures.saturating_add(1);
        if s.probing || s.failures >= self.threshold {
            s.opened_at = Some(Instant::now());
            s.probing = false;
        }
    }

    /// A call that was allowed but did not happen (e.g. refused by a quota) must not leave a
    /// half-open breaker waiting for a probe result forever.
    pub fn release_probe(&self) {
        self.lock().probing = false;
    }
}

/// Where rate gates read the time: the monotonic clock, or, in tests, a clock held still so a
/// window's edge never depends on how fast the machine runs.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Instant + Send + Sync>);

impl Clock {
    /// The monotonic clock.
    pub fn system() -> Self {
        Self(Arc::new(Instant::now))
    }

    /// A clock that always reads `at`.
    pub fn fixed(at: Instant) -> Self {
        Self(Arc::new(move || at))
    }

    pub fn now(&self) -> Instant {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// At most `per_second` calls in any one-second window (a sliding log of the last calls,
/// with a small margin so that scheduling jitter between here and the provider cannot squeeze
/// more into one of its seconds). Answers at once; never queues.
pub struct RateGate {
    per_second: u32,
    calls: Mutex<VecDeque<Instant>>,
    clock: Clock,
}

/// Added to the window to absorb the time between taking a token and the request arriving.
const WINDOW_MARGIN: Duration = Duration::from_millis(25);

impl RateGate {
    pub fn new(per_second: u32, clock: Clock) -> Self {
        Self {
            per_second: per_second.max(1),
            calls: Mutex::new(VecDeque::new()),
            clock,
        }
    }

    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Instant>> {
        self.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn room_at(&self, calls: &mut VecDeque<Instant>, at: Instant) -> bool {
        let window = Duration::from_secs(1) + WINDOW_MARGIN;
        while calls
            .front()
            .is_some_and(|t| at.saturating_duration_since(*t) >= window)
        {
            calls.pop_front();
        }
        calls.len() < self.per_second as usize
    }

    /// Whether a call could go out now, without taking a token.
    pub fn has_room(&self) -> bool {
        self.room_at(&mut self.lock(), self.clock.now())
    }

    /// Takes a token if one is free now.
    pub fn try_acquire(&self) -> bool {
        self.try_acquire_after(Duration::ZERO)
    }

    /// Takes a token for a call that will go out after `delay`, if one is free then.
    pub fn try_acquire_after(&self, delay: Duration) -> bool {
        self.try_acquire_at(self.clock.now() + delay)
    }

    /// Takes a token for a call that goes out at `at`, if one is free then.
    fn try_acquire_at(&self, at: Instant) -> bool {
        let mut calls = self.lock();
        if self.room_at(&mut calls, at) {
            calls.push_back(at);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_the_threshold_and_probes_once() {
        let b = Breaker::new(3, Duration::ZERO);
        b.record_failure();
        b.record_failure();
        assert_eq!(b.state(), CircuitState::Closed);
        b.record_failure();
        // zero cool-down: immediately half-open, one probe allowed
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert!(b.allow());
        assert!(!b.allow(), "only one probe at a time");
        b.record_failure();
        assert!(
            b.allow(),
            "a failed probe re-opens, and after the cool-down probes again"
        );
        b.record_success();
        assert_eq!(b.state(), CircuitState::Closed);
        assert!(b.allow() && b.allow());
    }

    #[test]
    fn open_breaker_refuses_until_the_cool_down_passes() {
        let b = Breaker::new(1, Duration::from_secs(3600));
        b.record_failure();
        assert_eq!(b.state(), CircuitState::Open);
        assert!(!b.allow());
    }

    #[test]
    fn success_resets_the_failure_count() {
        let b = Breaker::new(2, Duration::from_secs(3600));
        b.record_failure();
        b.record_success();
        b.record_failure();
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[test]
    fn rate_gate_allows_at_most_the_rate_in_any_second() {
        // the calls' times are given, so the window is checked whatever the machine's pace
        let g = RateGate::new(3, Clock::system());
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(g.room_at(&mut g.lock(), at(0)));
        assert!(g.try_acquire_at(at(0)) && g.try_acquire_at(at(10)) && g.try_acquire_at(at(20)));
        assert!(!g.room_at(&mut g.lock(), at(20)));
        assert!(
            !g.try_acquire_at(at(30)),
            "a fourth call within the second is refused"
        );
        assert!(
            !g.try_acquire_at(at(1_024)),
            "the margin keeps the window a little over a second"
        );
        assert!(
            g.try_acquire_at(at(1_025)),
            "the window slides past the first call"
        );
        assert!(
            !g.try_acquire_at(at(1_030)),
            "the second and third are still in it"
        );
        assert!(g.try_acquire_at(at(1_045)));
    }
}
