//! Recurring schedules: standard five-field cron expressions read in an IANA time zone.
//!
//! Every instance runs a `Scheduler`; each tick of a schedule is fired by exactly one of them,
//! because firing moves the stored `next_run_at` from the due tick to the next one with a
//! compare-and-set in the same transaction as the enqueue. After downtime only the latest
//! missed tick fires. "Now" is always passed in, so tests drive the clock. A stored schedule
//! of a kind this instance neither registered nor runs is left to the instances that do.

use super::Queue;
use crate::domain::{JobKind, NewJob, Schedule, Timestamp};
use crate::store::StoreError;
use chrono::Utc;
use chrono_tz::Tz;
use croner::Cron;
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "schedule `{name}`: '{cron}' is not a five-field cron expression (minute hour day-of-month month day-of-week): {reason}"
    )]
    BadCron {
        name: String,
        cron: String,
        reason: String,
    },
    #[error("schedule `{name}`: '{tz}' is not an IANA time zone (e.g. UTC, Europe/Berlin)")]
    BadTimeZone { name: String, tz: String },
    #[error("no handler is registered for job kind `{0}`")]
    UnknownKind(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A cron expression with the zone its fields are read in.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    cron: Cron,
    tz: Tz,
}

impl CronSchedule {
    /// Parses five fields and a zone; `name` only labels the errors.
    pub fn parse(name: &str, cron: &str, tz: &str) -> Result<Self, ScheduleError> {
        let bad = |reason: String| ScheduleError::BadCron {
            name: name.to_owned(),
            cron: cron.to_owned(),
            reason,
        };
        let fields = cron.split_whitespace().count();
        if fields != 5 {
            return Err(bad(format!("it has {fields} fields")));
        }
        let parsed = Cron::from_str(cron).map_err(|e| bad(e.to_string()))?;
        let tz = Tz::from_str(tz).map_err(|_| ScheduleError::BadTimeZone {
            name: name.to_owned(),
            tz: tz.to_owned(),
        })?;
        Ok(Self { cron: parsed, tz })
    }

    /// The first tick strictly after `t`; `None` if the expression never matches again.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }
}

/// A schedule as a module registers it.
#[derive(Clone, Debug)]
pub struct ScheduleSpec {
    /// Unique across the deployment.
    pub name: String,
    pub cron: String,
    pub tz: String,
    pub kind: JobKind,
    pub payload: serde_json::Value,
}

impl ScheduleSpec {
    /// Checks the cron expression and the time zone.
    pub fn validate(&self) -> Result<CronSchedule, ScheduleError> {
        CronSchedule::parse(&self.name, &self.cron, &self.tz)
    }
}

/// Fires due schedules through the queue.
#[derive(Clone)]
pub struct Scheduler {
    queue: Queue,
    specs: Vec<(ScheduleSpec, CronSchedule)>,
}

impl Scheduler {
    /// Validates every spec.
    pub fn new(queue: Queue, specs: &[ScheduleSpec]) -> Result<Self, ScheduleError> {
        let specs = specs
            .iter()
            .map(|s| Ok((s.clone(), s.validate()?)))
            .collect::<Result<_, ScheduleError>>()?;
        Ok(Self { queue, specs })
    }

    /// The kind named `name`: one this scheduler's schedules enqueue, or one the queue's
    /// registry runs.
    fn kind(&self, name: &str) -> Option<JobKind> {
        self.specs
            .iter()
            .map(|(spec, _)| spec.kind)
            .find(|k| k.as_str() == name)
            .or_else(|| self.queue.kind(name))
    }

    /// Stores the schedules (first tick after `now` for new or changed ones).
    pub async fn register(&self, now: Timestamp) -> Result<(), ScheduleError> {
        for (spec, cron) in &self.specs {
            let Some(next) = cron.next_after(now) else {
                continue;
            };
            self.queue
                .store()
                .upsert_schedule(&Schedule {
                    name: spec.name.clone(),
                    cron: spec.cron.clone(),
                    tz: spec.tz.clone(),
                    kind: spec.kind.to_string(),
                    payload: spec.payload.clone(),
                    next_run_at: next,
                    last_run_at: None,
                    enabled: true,
                })
                .await?;
        }
        Ok(())
    }

    /// Fires every stored schedule due at `now` that no other instance fired first; returns
    /// how many this call fired.
    pub async fn tick(&self, now: Timestamp) -> Result<u32, ScheduleError> {
        let store = self.queue.store();
        let mut fired = 0;
        let mut queued = Vec::new();
        for s in store.schedules().await? {
            if !s.enabled || s.next_run_at > now {
                continue;
            }
            let Ok(cron) = CronSchedule::parse(&s.name, &s.cron, &s.tz) else {
                tracing::warn!(schedule = %s.name, "stored schedule has an unusable cron or zone");
                continue;
            };
            let Some(next) = cron.next_after(now) else {
                continue;
            };
            let Some(kind) = self.kind(&s.kind) else {
                // not a kind of this instance: an instance that runs it fires it
                continue;
            };
            let mut job = NewJob::new(kind, s.payload.clone());
            job.run_at = Some(s.next_run_at.min(now));
            let attempts = self.queue.default_attempts(&s.kind);
            if let Some(enqueued) = store
                .fire_schedule(&s.name, s.next_run_at, next, &job, attempts, now)
                .await?
            {
                fired += 1;
                if enqueued.created {
                    queued.push(crate::store::Unpublished {
                        id: enqueued.id,
                        kind: kind.to_string(),
                        run_at: job.run_at.unwrap_or(now),
                    });
                }
            }
        }
        if fired > 0 {
            self.queue.requeued(&queued, now);
        }
        Ok(fired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Timestamp {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn next_tick_is_read_in_the_schedules_zone() {
        let s = CronSchedule::parse("t", "0 9 * * *", "Europe/Berlin").unwrap();
        // 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
        assert_eq!(
            s.next_after(utc(2025, 1, 10, 12, 0)),
            Some(utc(2025, 1, 11, 8, 0))
        );
        assert_eq!(
            s.next_after(utc(2025, 7, 10, 12, 0)),
            Some(utc(2025, 7, 11, 7, 0))
        );
        let tokyo = CronSchedule::parse("t", "0 9 * * *", "Asia/Tokyo").unwrap();
        assert_eq!(
            tokyo.next_after(utc(2025, 1, 10, 12, 0)),
            Some(utc(2025, 1, 11, 0, 0))
        );
    }

    #[test]
    fn next_tick_is_strictly_after() {
        let s = CronSchedule::parse("t", "*/15 * * * *", "UTC").unwrap();
        assert_eq!(
            s.next_after(utc(2025, 1, 1, 10, 15)),
            Some(utc(2025, 1, 1, 10, 30))
        );
        assert_eq!(
            s.next_after(utc(2025, 1, 1, 10, 16)),
            Some(utc(2025, 1, 1, 10, 30))
        );
    }

    #[test]
    fn a_tick_in_the_spring_forward_gap_runs_once_right_after_it() {
        // Berlin skips 02:00–03:00 on 2025-03-30; 02:30 does not exist that day.
        let s = CronSchedule::parse("t", "30 2 * * *", "Europe/Berlin").unwrap();
        let next = s.next_after(utc(2025, 3, 29, 23, 0)).unwrap();
        assert_eq!(next, utc(2025, 3, 30, 1, 0), "03:00 CEST");
        let after = s.next_after(next).unwrap();
        assert_eq!(after, utc(2025, 3, 31, 0, 30), "02:30 CEST the next day");
    }

    #[test]
    fn a_tick_in_the_repeated_autumn_hour_runs_once() {
        // Berlin repeats 02:00–03:00 on 2025-10-26.
        let s = CronSchedule::parse("t", "30 2 * * *", "Europe/Berlin").unwrap();
        let first = s.next_after(utc(2025, 10, 25, 23, 0)).unwrap();
        assert_eq!(first, utc(2025, 10, 26, 0, 30), "02:30 CEST");
        let second = s.next_after(first).unwrap();
        assert_eq!(
            second,
            utc(2025, 10, 27, 1, 30),
            "02:30 CET the next day, not again"
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_refused_with_the_reason() {
        for cron in [
            "* * * *",
            "0 0 * * * *",
            "61 * * * *",
            "0 25 * * *",
            "every minute",
        ] {
            let err = CronSchedule::parse("nightly", cron, "UTC")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("nightly") && err.contains("five-field"),
                "{cron}: {err}"
            );
        }
        let err = CronSchedule::parse("nightly", "0 0 * * *", "Mars/Olympus")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Mars/Olympus") && err.contains("time zone"), "{err}");
    }
}
