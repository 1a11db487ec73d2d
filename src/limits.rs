//! Request rate limits: GCRA (the generic cell rate algorithm) over any number of rules at
//! once — per API key or token, per workspace, per client address — with a cost per request.
//!
//! GCRA keeps one number per key, the theoretical arrival time (TAT) of the next request: a
//! request of cost `c` under a rate of `n` per period `T` (emission interval `I = T/n`) is
//! admitted when `max(TAT, now) + c·I − now ≤ T`, and then moves the TAT there. That admits a
//! burst of the whole `n` from rest and `n` per period after, with no timers and no windows
//! whose edges let twice the rate through. A request is admitted only when every rule it falls
//! under admits it, and only then are the TATs moved: a refused request costs nothing.
//!
//! With Redis (`cluster::Redis`) the TATs live there and one Lua script checks and moves all of
//! a request's rules atomically in one round trip, reading Redis's own clock (`TIME`), so every
//! instance shares one limit and one clock. Without Redis, or while it is unreachable, the same
//! arithmetic runs on a map in this process: each instance then enforces the limit on its own
//! (so N instances admit up to N times the rate), which `leadgate_rate_limit_fallbacks_total`
//! and the log say. After a flush the shared limits start again from rest.
//!
//! Written here rather than taken from a crate because the in-process and Redis paths must be
//! one algorithm over several keys at once with a per-request cost and the numbers the
//! `RateLimit` headers need; `governor` is in-process only and one key at a time.

use crate::cluster::{Redis, Script};
use crate::domain::{RateLimit, Role};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Keys kept in process before those at rest are dropped.
const PRUNE_AT: usize = 100_000;

/// One rule a request falls under: the key it is counted against and its rate.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Which limit this is, for the `RateLimit` headers: `key`, `token`, `workspace`, `address`.
    pub name: &'static str,
    /// What is counted, such as `key:<id>` or `address:203.0.113.9`.
    pub key: String,
    pub rate: RateLimit,
}

/// What a check decided, with what the `RateLimit`/`Retry-After` headers say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The rule closest to its limit (refused: the one that refused).
    pub policy: &'static str,
    pub rate: RateLimit,
    /// Units still available under that rule.
    pub remaining: u64,
    /// Until that rule is back at rest.
    pub reset: Duration,
    /// Refused: until a request of this cost would be admitted.
    pub retry_after: Duration,
}

impl Decision {
    /// `Retry-After` in whole seconds (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        ceil_secs(self.retry_after).max(1)
    }

    /// `reset` in whole seconds.
    pub fn reset_secs(&self) -> u64 {
        ceil_secs(self.reset)
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Monotonic nanoseconds; tests hand in their own.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A clock that reads `Instant`.
pub fn system_clock() -> Clock {
    let start = Instant::now();
    Arc::new(move || start.elapsed().as_nanos() as u64)
}

/// Checks requests against their rules (see the module header); cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    local: Mutex<HashMap<String, u64>>,
    clock: Clock,
    redis: Option<Redis>,
    script: Script,
    admitted: AtomicU64,
    refused: AtomicU64,
    fallbacks: AtomicU64,
}

/// The Lua side of `Limiter::check`: KEYS are the rules' keys, ARGV the cost then each rule's
/// interval and tolerance in microseconds. Returns `{allowed, rule (1-based), remaining, reset
/// µs, retry µs}`.
const GCRA_LUA: &str = r"
local cost = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats, news = {}, {}
local refused, worst = 0, -1
for i = 1, #KEYS do
  local interval, tolerance = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  tats[i] = tat
  news[i] = tat + cost * interval
  local over = news[i] - now - tolerance
  if over > 0 and over > worst then worst = over; refused = i end
end
if refused > 0 then
  return {0, refused, 0, tats[refused] - now, worst}
end
local bind, best = 1, -1
for i = 1, #KEYS do
  local interval, tolerance = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local ahead = news[i] - now
  redis.call('SET', KEYS[i], string.format('%d', news[i]), 'PX', math.floor(ahead / 1000) + 1)
  local remaining = math.floor((tolerance - ahead) / interval)
  if best < 0 or remaining < best then best = remaining; bind = i end
end
return {1, bind, best, news[bind] - now, 0}
";

impl Limiter {
    /// Limits kept in this process only.
    pub fn local(clock: Clock) -> Self {
        Self::build(clock, None)
    }

    /// Limits shared through `redis`, falling back to this process while it is unreachable.
    pub fn shared(redis: Redis, clock: Clock) -> Self {
        Self::build(clock, Some(redis))
    }

    fn build(clock: Clock, redis: Option<Redis>) -> Self {
        Self {
            inner: Arc::new(Inner {
                local: Mutex::new(HashMap::new()),
                clock,
                redis,
                script: Script::new(GCRA_LUA),
                admitted: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                fallbacks: AtomicU64::new(0),
            }),
        }
    }

    /// The Redis the limits are shared through, if any.
    pub fn redis(&self) -> Option<&Redis> {
        self.inner.redis.as_ref()
    }

    /// Whether limits are shared (Redis configured, reachable or not).
    pub fn is_shared(&self) -> bool {
        self.inner.redis.is_some()
    }

    /// Checks a request of `cost` units against every rule; with no rules, admits it.
    pub async fn check(&self, rules: &[Rule], cost: u32) -> Option<Decision> {
        if rules.is_empty() {
            return None;
        }
        let decision = match &self.inner.redis {
            Some(redis) => match self.check_shared(redis, rules, cost).await {
                Some(d) => d,
                None => {
                    self.inner.fallbacks.fetch_add(1, Ordering::Relaxed);
                    self.check_local(rules, cost)
                }
            },
            None => self.check_local(rules, cost),
        };
        let counter = if decision.allowed {
            &self.inner.admitted
        } else {
            &self.inner.refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Some(decision)
    }

    async fn check_shared(&self, redis: &Redis, rules: &[Rule], cost: u32) -> Option<Decision> {
        let keys: Vec<String> = rules
            .iter()
            .map(|r| redis.key(&format!("rl:{}", r.key)))
            .collect();
        let mut args: Vec<u64> = Vec::with_capacity(1 + 2 * rules.len());
        args.push(u64::from(effective_cost(rules, cost)));
        for rule in rules {
            args.push((rule.rate.interval_nanos() / 1000).max(1));
            args.push(rule.rate.period().as_micros() as u64);
        }
        let reply: Vec<i64> = redis.script(&self.inner.script, &keys, &args).await.ok()?;
        let [allowed, index, remaining, reset, retry] = reply[..] else {
            return None;
        };
        let rule = rules.get(usize::try_from(index - 1).ok()?)?;
        let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Some(Decision {
            allowed: allowed == 1,
            policy: rule.name,
            rate: rule.rate,
            remaining: u64::try_from(remaining).unwrap_or(0),
            reset: micros(reset),
            retry_after: micros(retry),
        })
    }

    fn check_local(&self, rules: &[Rule], cost: u32) -> Decision {
        let cost = u64::from(effective_cost(rules, cost));
        let now = (self.inner.clock)();
        let mut map = self.inner.local.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= PRUNE_AT {
            map.retain(|_, tat| *tat > now);
        }
        let tats: Vec<u64> = rules
            .iter()
            .map(|rule| map.get(&rule.key).copied().unwrap_or(0).max(now))
            .collect();
        let mut refused: Option<(usize, u64)> = None;
        for (i, rule) in rules.iter().enumerate() {
            let ahead = tats[i] + cost * rule.rate.interval_nanos() - now;
            let tolerance = rule.rate.period().as_nanos() as u64;
            if ahead > tolerance && refused.is_none_or(|(_, worst)| ahead - tolerance > worst) {
                refused = Some((i, ahead - tolerance));
            }
        }
        if let Some((i, over)) = refused {
            let rule = &rules[i];
            return Decision {
                allowed: false,
                policy: rule.name,
                rate: rule.rate,
                remaining: 0,
                reset: Duration::from_nanos(tats[i] - now),
                retry_after: Duration::from_nanos(over),
            };
        }
        let mut bind: Option<(usize, u64, u64)> = None;
        for (i, rule) in rules.iter().enumerate() {
            let interval = rule.rate.interval_nanos();
            let new = tats[i] + cost * interval;
            let ahead = new - now;
            let remaining = (rule.rate.period().as_nanos() as u64).saturating_sub(ahead) / interval;
            if bind.is_none_or(|(_, best, _)| remaining < best) {
                bind = Some((i, remaining, ahead));
            }
            map.insert(rule.key.clone(), new);
        }
        let (i, remaining, ahead) = bind.unwrap_or((0, 0, 0));
        Decision {
            allowed: true,
            policy: rules[i].name,
            rate: rules[i].rate,
            remaining,
            reset: Duration::from_nanos(ahead),
            retry_after: Duration::ZERO,
        }
    }

    /// The Prometheus text of the limiter's counters.
    pub fn render_metrics(&self) -> String {
        format!(
            "# HELP leadgate_rate_limit_requests_total Requests checked against rate limits, by outcome.\n\
             # TYPE leadgate_rate_limit_requests_total counter\n\
             leadgate_rate_limit_requests_total{{outcome=\"admitted\"}} {}\n\
             leadgate_rate_limit_requests_total{{outcome=\"refused\"}} {}\n\
             # HELP leadgate_rate_limit_fallbacks_total Checks made in process because Redis did not answer.\n\
             # TYPE leadgate_rate_limit_fallbacks_total counter\n\
             leadgate_rate_limit_fallbacks_total {}\n",
            self.inner.admitted.load(Ordering::Relaxed),
            self.inner.refused.load(Ordering::Relaxed),
            self.inner.fallbacks.load(Ordering::Relaxed),
        )
    }
}

/// Which rates apply to whom, from the settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RatePolicy {
    /// Per API key or token, unless its role or key says otherwise.
    pub default: Option<RateLimit>,
    /// Per client address, for requests without a token.
    pub anonymous: Option<RateLimit>,
    /// Per workspace, every caller of it together.
    pub workspace: Option<RateLimit>,
    /// Per role, replacing `default`.
    pub roles: HashMap<Role, RateLimit>,
}

/// Who a request is counted against.
pub enum Subject<'a> {
    /// A caller with a token or API key.
    Caller {
        /// `key` or `token`: the name of its own limit.
        kind: &'static str,
        /// What identifies it (`key:<id>`, `token:<workspace>:<subject>`).
        key: &'a str,
        role: Role,
        /// A key's own rate, replacing the role's and the default.
        own: Option<RateLimit>,
        workspace: String,
    },
    /// No token: the client's address, when known.
    Anonymous(Option<std::net::IpAddr>),
}

impl RatePolicy {
    /// Nothing limited.
    pub fn off() -> Self {
        Self::default()
    }

    /// The rules a request of `subject` falls under.
    pub fn rules(&self, subject: &Subject<'_>) -> Vec<Rule> {
        match subject {
            Subject::Caller {
                kind,
                key,
                role,
                own,
                workspace,
            } => {
                let mut rules = Vec::with_capacity(2);
                if let Some(rate) = own.or_else(|| self.roles.get(role).copied()).or(self.default) {
                    rules.push(Rule {
                        name: kind,
                        key: (*key).to_owned(),
                        rate,
                    });
                }
                if let Some(rate) = self.workspace {
                    rules.push(Rule {
                        name: "workspace",
                        key: format!("workspace:{workspace}"),
                        rate,
                    });
                }
                rules
            }
            Subject::Anonymous(address) => match self.anonymous {
                Some(rate) => vec![Rule {
                    name: "address",
                    key: format!(
                        "address:{}",
                        address.map_or_else(|| "unknown".to_owned(), |a| a.to_string())
                    ),
                    rate,
                }],
                None => Vec::new(),
            },
        }
    }
}

/// A rate setting: `off` (or `none`) for no limit, else a `RateLimit`.
pub fn parse_setting(raw: &str) -> Result<Option<RateLimit>, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "off" | "none" | "" => Ok(None),
        _ => RateLimit::parse(raw).map(Some),
    }
}

/// A request costlier than a rule's whole burst would never be admitted: it costs the burst.
fn effective_cost(rules: &[Rule], cost: u32) -> u32 {
    let burst = rules.iter().map(|r| r.rate.count()).min().unwrap_or(1);
    cost.clamp(1, burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manual() -> (Clock, Arc<AtomicU64>) {
        let now = Arc::new(AtomicU64::new(1_000_000_000));
        let read = now.clone();
        (Arc::new(move || read.load(Ordering::Relaxed)), now)
    }

    fn rule(name: &'static str, key: &str, rate: &str) -> Rule {
        Rule {
            name,
            key: key.into(),
            rate: RateLimit::parse(rate).expect("rate"),
        }
    }

    #[tokio::test]
    async fn a_burst_of_the_whole_rate_then_one_per_interval() {
        let (clock, now) = manual();
        let limiter = Limiter::local(clock);
        let rules = [rule("token", "t", "60/min")];
        for i in 0..60 {
            let d = limiter.check(&rules, 1).await.expect("checked");
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 59 - i);
        }
        let refused = limiter.check(&rules, 1).await.expect("checked");
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        assert_eq!(refused.retry_after_secs(), 1);
        now.fetch_add(999_999_999, Ordering::Relaxed);
        assert!(!limiter.check(&rules, 1).await.expect("checked").allowed);
        now.fetch_add(1, Ordering::Relaxed);
        assert!(limiter.check(&rules, 1).await.expect("checked").allowed);
        assert!(!limiter.check(&rules, 1).await.expect("checked").allowed);
    }

    #[tokio::test]
    async fn cost_counts_units_and_a_refusal_costs_nothing() {
        let (clock, now) = manual();
        let limiter = Limiter::local(clock);
        let rules = [rule("token", "t", "10/s")];
        assert_eq!(limiter.check(&rules, 7).await.expect("checked").remaining, 3);
        let refused = limiter.check(&rules, 5).await.expect("checked");
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_millis(200));
        assert!(limiter.check(&rules, 3).await.expect("checked").allowed);
        now.fetch_add(1_000_000_000, Ordering::Relaxed);
        assert!(
            limiter.check(&rules, 500).await.expect("checked").allowed,
            "a cost over the burst costs the burst"
        );
    }

    #[tokio::test]
    async fn every_rule_must_admit_and_the_tightest_one_is_reported() {
        let (clock, _) = manual();
        let limiter = Limiter::local(clock);
        let a = [rule("key", "k1", "100/min"), rule("workspace", "w", "3/min")];
        let b = [rule("key", "k2", "100/min"), rule("workspace", "w", "3/min")];
        let first = limiter.check(&a, 1).await.expect("checked");
        assert_eq!((first.policy, first.remaining), ("workspace", 2));
        assert!(limiter.check(&b, 1).await.expect("checked").allowed);
        assert!(limiter.check(&a, 1).await.expect("checked").allowed);
        let refused = limiter.check(&b, 1).await.expect("checked");
        assert_eq!((refused.allowed, refused.policy), (false, "workspace"));
        assert_eq!(
            limiter
                .check(&[rule("key", "k2", "100/min")], 1)
                .await
                .expect("checked")
                .remaining,
            98,
            "the refusal did not charge the key"
        );
        assert!(limiter.check(&[], 1).await.is_none());
    }
}
