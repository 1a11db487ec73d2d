//! A request rate as people write it: `600/min`, `10/s`, `36000/hour`, `100000/day`.
//!
//! Used by the rate-limit settings and by an API key's own `rateLimit`. The count is how many
//! cost units the period admits; a burst of the whole count is allowed from rest (GCRA with a
//! tolerance of one period).

use std::fmt;
use std::time::Duration;

/// The most units one period may admit.
pub const MAX_RATE_COUNT: u32 = 10_000_000;

/// `count` units per `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLimit {
    count: u32,
    period: RatePeriod,
}

/// The periods a rate may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RatePeriod {
    Second,
    Minute,
    Hour,
    Day,
}

impl RatePeriod {
    fn as_str(self) -> &'static str {
        match self {
            RatePeriod::Second => "s",
            RatePeriod::Minute => "min",
            RatePeriod::Hour => "hour",
            RatePeriod::Day => "day",
        }
    }

    fn duration(self) -> Duration {
        Duration::from_secs(match self {
            RatePeriod::Second => 1,
            RatePeriod::Minute => 60,
            RatePeriod::Hour => 3600,
            RatePeriod::Day => 86_400,
        })
    }
}

impl RateLimit {
    /// `count` per `period`; `count` must be 1..=`MAX_RATE_COUNT`.
    pub fn new(count: u32, period: RatePeriod) -> Result<Self, String> {
        if count == 0 || count > MAX_RATE_COUNT {
            return Err(format!(
                "a rate admits 1 to {MAX_RATE_COUNT} requests per period, not {count}"
            ));
        }
        Ok(Self { count, period })
    }

    /// Parses `N/s`, `N/sec`, `N/second`, `N/min`, `N/minute`, `N/h`, `N/hour`, `N/d`, `N/day`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "`{raw}` is not a rate: write it as a count per period, such as `600/min`, `10/s` or `5000/hour`"
            )
        };
        let (count, period) = raw.trim().split_once('/').ok_or_else(usage)?;
        let count: u32 = count.trim().parse().map_err(|_| usage())?;
        let period = match period.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => RatePeriod::Second,
            "m" | "min" | "minute" => RatePeriod::Minute,
            "h" | "hour" => RatePeriod::Hour,
            "d" | "day" => RatePeriod::Day,
            _ => return Err(usage()),
        };
        Self::new(count, period)
    }

    /// Units admitted per period.
    pub fn count(self) -> u32 {
        self.count
    }

    /// The period, as a duration.
    pub fn period(self) -> Duration {
        self.period.duration()
    }

    /// The time one unit takes to be earned back (GCRA's emission interval), in nanoseconds.
    pub fn interval_nanos(self) -> u64 {
        (self.period.duration().as_nanos() / u128::from(self.count)).max(1) as u64
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.period.as_str())
    }
}

impl std::str::FromStr for RateLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_the_usual_spellings_and_print_one_way() {
        for (raw, shown, nanos) in [
            ("600/min", "600/min", 100_000_000),
            ("10/s", "10/s", 100_000_000),
            (" 5000 / Hour ", "5000/hour", 720_000_000),
            ("1/day", "1/day", 86_400_000_000_000),
            ("3/second", "3/s", 333_333_333),
        ] {
            let rate = RateLimit::parse(raw).expect(raw);
            assert_eq!(rate.to_string(), shown);
            assert_eq!(rate.interval_nanos(), nanos, "{raw}");
            assert_eq!(RateLimit::parse(&rate.to_string()), Ok(rate));
        }
    }

    #[test]
    fn malformed_rates_are_refused_with_the_form_to_use() {
        for raw in [
            "",
            "600",
            "0/min",
            "-1/min",
            "600/fortnight",
            "x/min",
            "99999999999/s",
            "/min",
        ] {
            let err = RateLimit::parse(raw).expect_err(raw);
            assert!(err.contains("600/min") || err.contains("1 to"), "{raw}: {err}");
        }
    }
}
