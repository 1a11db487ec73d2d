//! What a job message says and where it is sent: the body (a job id, its kind and when it is
//! due — never the payload, which stays in the row), and the route for a due time (the work
//! exchange, or the delay queue whose fixed TTL fits the wait). Pure functions, no I/O.
//!
//! Delay queues have one TTL each (25 ms × 4ⁿ up to 27 min), so messages in one queue expire in
//! the order they entered it: a per-message TTL in one shared queue would hold a short wait
//! behind a long one at its head. A wait is sent to the longest tier not longer than it (the
//! shortest when it is shorter than every tier), so it never ends early; what is left when the
//! message comes back is sent on the same way, at most three hops per tier.

use crate::domain::{JobId, Timestamp};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The TTLs of the delay queues, in milliseconds, shortest first.
pub const DELAY_TIERS_MS: [u64; 9] = [25, 100, 400, 1_600, 6_400, 25_600, 102_400, 409_600, 1_638_400];

/// The longest wait a message is sent for: rows due later wait in the database, and the relay
/// publishes them once they are this close.
pub const HORIZON: Duration = Duration::from_millis(DELAY_TIERS_MS[DELAY_TIERS_MS.len() - 1]);

/// The body of a job message (JSON).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct JobMessage {
    /// The job's row id.
    pub id: i64,
    /// The job's kind, for routing and metrics; the row's kind decides the handler.
    pub kind: String,
    /// When the job is due, in milliseconds since the Unix epoch.
    pub due: i64,
}

impl JobMessage {
    pub fn new(id: JobId, kind: &str, due: Timestamp) -> Self {
        Self {
            id: id.as_i64(),
            kind: kind.to_owned(),
            due: due.timestamp_millis(),
        }
    }

    pub fn job_id(&self) -> JobId {
        JobId::from_i64(self.id)
    }

    pub fn encode(&self) -> Vec<u8> {
        // a struct of an integer, a string and an integer always serialises
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The message in a body, or why it is not one (a poison message).
    pub fn decode(body: &[u8]) -> Result<Self, String> {
        let message: Self = serde_json::from_slice(body).map_err(|e| format!("not a job message: {e}"))?;
        if message.id <= 0 || message.kind.is_empty() || message.kind.len() > 200 {
            return Err(format!(
                "not a job message: id {} kind {:?}",
                message.id, message.kind
            ));
        }
        Ok(message)
    }

    /// How long until the job is due at `now` (zero when it is).
    pub fn wait(&self, now: Timestamp) -> Duration {
        let ms = self.due.saturating_sub(now.timestamp_millis());
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }
}

/// Where a message goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Route {
    /// Straight to the work queue: the job is due.
    Work,
    /// To the delay queue with this TTL (milliseconds), which dead-letters it to the work
    /// exchange when it expires.
    Delay(u64),
}

impl Route {
    /// The route for a job due after `wait`.
    pub fn after(wait: Duration) -> Self {
        if wait.is_zero() {
            return Route::Work;
        }
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let tier = DELAY_TIERS_MS
            .iter()
            .copied()
            .rev()
            .find(|t| *t <= ms)
            .unwrap_or(DELAY_TIERS_MS[0]);
        Route::Delay(tier)
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Route::Work => "work",
            Route::Delay(_) => "delay",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_and_carries_no_payload() {
        let at = chrono::DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        let m = JobMessage::new(JobId::from_i64(42), "noop", at);
        let body = m.encode();
        assert_eq!(
            String::from_utf8(body.clone()).unwrap(),
            r#"{"id":42,"kind":"noop","due":1700000000123}"#
        );
        assert_eq!(JobMessage::decode(&body).unwrap(), m);
    }

    #[test]
    fn poison_bodies_are_refused_with_a_reason() {
        for body in [
            &b"garbage"[..],
            br#"{"id":"x","kind":"noop","due":0}"#,
            br#"{"id":0,"kind":"noop","due":0}"#,
            br#"{"id":5,"kind":"","due":0}"#,
            br#"{"kind":"noop","due":0}"#,
        ] {
            let err = JobMessage::decode(body).unwrap_err();
            assert!(err.starts_with("not a job message"), "{err}");
        }
    }

    #[test]
    fn due_jobs_go_to_work_and_waits_to_the_longest_tier_not_longer() {
        let ms = Duration::from_millis;
        assert_eq!(Route::after(Duration::ZERO), Route::Work);
        assert_eq!(Route::after(ms(1)), Route::Delay(25), "shorter than every tier");
        assert_eq!(Route::after(ms(99)), Route::Delay(25));
        assert_eq!(Route::after(ms(100)), Route::Delay(100));
        assert_eq!(Route::after(ms(2_000)), Route::Delay(1_600));
        assert_eq!(Route::after(Duration::from_secs(86_400)), Route::Delay(1_638_400));
    }

    #[test]
    fn the_wait_is_what_is_left_and_never_negative() {
        let now = chrono::DateTime::from_timestamp_millis(1_000_000).unwrap();
        let m = |due| JobMessage {
            id: 1,
            kind: "noop".into(),
            due,
        };
        assert_eq!(m(1_000_250).wait(now), Duration::from_millis(250));
        assert_eq!(m(999_000).wait(now), Duration::ZERO);
    }
}
