//! Campaign scheduling arithmetic: waits (ISO 8601 durations), send windows, "wait until
//! Monday 09:00", the zone a lead is read in, and A/B variant assignment. Pure functions of
//! their inputs: "now" is always passed in, and nothing here reads a clock or does I/O.
//!
//! Decisions:
//! - **Waits are days, weeks, hours, minutes and seconds only.** Months and years have no
//!   fixed length (is `P1M` from 31 January 28 days or 31?), so `P1M`/`P1Y` are refused with a
//!   message saying so. A wait is at most 366 days, never negative, and written in upper case
//!   (`P2D`, `PT36H`, `P1W`, `P1DT2H30M`, `PT0.5S`); only seconds may carry a fraction. A week
//!   is exactly 7 days and a day exactly 24 hours: a wait is elapsed time, not wall-clock time
//!   (`P1D` across a DST change lands at another local hour; use `next_at` for "at 09:00").
//! - **Local times resolve to the first instant the local clock reaches them.** A time inside
//!   a spring-forward gap (02:30 in Berlin on 2026-03-29) is the first instant after the gap
//!   (03:00 local); a time the fall-back repeats (01:30 in New York on 2026-11-01) is the first
//!   of its two instants. So every local date has exactly one instant for a given time, and a
//!   wait or a window never fires twice on a day whose clock repeats an hour.
//! - **A send window is one interval per eligible day**, from the instant its start resolves to
//!   until the instant its end resolves to (the end is exclusive). On a fall-back day the
//!   repeated hour is inside the window if it lies between the two; a window that lies wholly
//!   inside a spring-forward gap is shut that day. Windows cannot cross midnight.
//! - **A country names a zone only when it has one.** `zone_for_country` answers from a table
//!   generated from tzdata's `zone.tab` (see `country_zones`): a country with exactly one row,
//!   plus a short list of countries whose extra rows keep the main zone's clock (DE for the
//!   Busingen exclave, AR, CY, KZ, MY, UZ). Countries with several clocks (US, ES with the
//!   Canaries, PT with the Azores, …) have no zone; the campaign's zone applies.
//! - **Variant assignment is a stable hash**, so a lead keeps its variant across restarts,
//!   instances, platforms and releases (see `variant_for`).

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone,
    Timelike, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The longest wait accepted, in days.
pub const MAX_WAIT_DAYS: u32 = 366;

const SECONDS_PER_DAY: u64 = 86_400;

/// How many local days ahead `SendWindow::next_open` and `next_at` look. A window is shut on
/// a day only when it lies wholly inside a DST gap, which never happens two weeks running, so
/// two weeks and a day always find the next opening.
const DAYS_AHEAD: u64 = 15;

/// Why a wait, a clock time or a send window was refused; each message says what to write.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum TimeError {
    /// A wait that is not a usable ISO 8601 duration.
    #[error("'{input}' is not a valid wait such as P2D, PT36H, P1W or P1DT2H30M: {reason}")]
    Duration { input: String, reason: String },
    /// A time of day that is not `HH:MM`.
    #[error("'{input}' is not a time of day; write 24-hour HH:MM, e.g. 09:00 or 17:30")]
    Clock { input: String },
    /// A send window time with seconds.
    #[error("send window times are whole minutes, got {}", .time.format("%H:%M:%S%.f"))]
    ClockPrecision { time: NaiveTime },
    /// A day that is not one of the seven codes.
    #[error("'{input}' is not a day; write MON, TUE, WED, THU, FRI, SAT or SUN")]
    Weekday { input: String },
    /// A send window without days.
    #[error("a send window needs at least one day")]
    NoDays,
    /// A send window that opens and closes at the same time.
    #[error("a send window that opens and closes at {} is never open", .at.format("%H:%M"))]
    EmptyWindow { at: NaiveTime },
    /// A send window whose end is before its start.
    #[error(
        "the send window {}-{} crosses midnight; a window must close later on the day it opens \
         (e.g. 09:00-17:00), so split it at midnight",
        .start.format("%H:%M"), .end.format("%H:%M")
    )]
    Overnight { start: NaiveTime, end: NaiveTime },
}

// ---------------------------------------------------------------------------------------------
// Durations

/// Parses a wait written as an ISO 8601 duration: `P2D`, `PT36H`, `P1W`, `P1DT2H30M`, `PT90S`,
/// `PT0.5S`.
///
/// Accepted: weeks (`W`) and days (`D`) before the `T`, hours (`H`), minutes (`M`) and seconds
/// (`S`) after it, each at most once and in that order, with a whole number (leading zeros are
/// fine); seconds may have a fraction (`.` or `,`, up to 9 digits). Refused, each with a
/// message naming the problem: lower case, signs, months and years, an empty `P` or `PT`, a
/// number without a designator or a designator without a number, repeated or out-of-order
/// components, fractions on anything but seconds, and anything longer than `MAX_WAIT_DAYS`.
pub fn parse_duration(input: &str) -> Result<TimeDelta, TimeError> {
    let bad = |reason: String| TimeError::Duration {
        input: shown(input),
        reason,
    };
    if input.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if input.trim() != input {
        return Err(bad("it has leading or trailing spaces".into()));
    }
    if input.starts_with('-') {
        return Err(bad("a wait cannot be negative".into()));
    }
    if input.starts_with('+') {
        return Err(bad("a wait has no sign; drop the '+'".into()));
    }
    if !input.starts_with(['P', 'p']) {
        return Err(bad(
            "it must start with 'P' (P2D is two days, PT2H two hours)".into()
        ));
    }
    if input.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(bad(format!(
            "letters must be upper case: write '{}'",
            shown(&input.to_ascii_uppercase())
        )));
    }
    let Some(rest) = input.strip_prefix('P') else {
        return Err(bad(
            "it must start with 'P' (P2D is two days, PT2H two hours)".into()
        ));
    };
    if rest.is_empty() {
        return Err(bad(
            "'P' alone has no length; add a component such as P2D or PT1H".into(),
        ));
    }
    let (date, time) = match rest.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (rest, None),
    };
    let mut components = parse_components(date, Part::Date).map_err(bad)?;
    if let Some(time) = time {
        if time.is_empty() {
            return Err(bad(
                "'T' must be followed by hours, minutes or seconds, e.g. PT36H".into(),
            ));
        }
        if time.contains('T') {
            return Err(bad("'T' appears twice".into()));
        }
        components.extend(parse_components(time, Part::Time).map_err(bad)?);
    }

    let too_long = || {
        bad(format!(
            "it is longer than {MAX_WAIT_DAYS} days, the longest wait allowed"
        ))
    };
    let mut seconds: u128 = 0;
    let mut nanos: u32 = 0;
    for c in &components {
        seconds += u128::from(c.value) * u128::from(c.unit.seconds());
        nanos = c.nanos;
    }
    let max = u128::from(MAX_WAIT_DAYS) * u128::from(SECONDS_PER_DAY);
    if seconds > max || (seconds == max && nanos > 0) {
        return Err(too_long());
    }
    i64::try_from(seconds)
        .ok()
        .and_then(|s| TimeDelta::new(s, nanos))
        .ok_or_else(too_long)
}

/// The canonical ISO 8601 form of `d`: days, then `T` and hours, minutes and seconds, leaving
/// out zero parts (`P1DT2H30M`, `PT90S` becomes `PT1M30S`, `P1W` becomes `P7D`); zero is `PT0S`;
/// a fraction of a second is written with the digits it needs (`PT0.5S`). `parse_duration`
/// reads the result back to the same value. A negative value gets a leading `-`, which
/// `parse_duration` refuses.
pub fn format_duration(d: TimeDelta) -> String {
    let magnitude = d.abs();
    let total = magnitude.num_seconds().unsigned_abs();
    let nanos = magnitude.subsec_nanos().unsigned_abs();
    let (days, hours, minutes, seconds) = (
        total / SECONDS_PER_DAY,
        total % SECONDS_PER_DAY / 3600,
        total % 3600 / 60,
        total % 60,
    );
    let mut out = String::new();
    if d < TimeDelta::zero() {
        out.push('-');
    }
    out.push('P');
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if hours > 0 || minutes > 0 || seconds > 0 || nanos > 0 || days == 0 {
        out.push('T');
        if hours > 0 {
            out.push_str(&format!("{hours}H"));
        }
        if minutes > 0 {
            out.push_str(&format!("{minutes}M"));
        }
        if seconds > 0 || nanos > 0 || (hours == 0 && minutes == 0) {
            out.push_str(&seconds.to_string());
            if nanos > 0 {
                let fraction = format!("{nanos:09}");
                out.push('.');
                out.push_str(fraction.trim_end_matches('0'));
            }
            out.push('S');
        }
    }
    out
}

/// Which side of the `T` a component is on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Date,
    Time,
}

/// A duration unit, in the order components must appear.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Unit {
    Weeks,
    Days,
    Hours,
    Minutes,
    Seconds,
}

impl Unit {
    fn seconds(self) -> u64 {
        match self {
            Unit::Weeks => 7 * SECONDS_PER_DAY,
            Unit::Days => SECONDS_PER_DAY,
            Unit::Hours => 3600,
            Unit::Minutes => 60,
            Unit::Seconds => 1,
        }
    }

    fn designator(self) -> char {
        match self {
            Unit::Weeks => 'W',
            Unit::Days => 'D',
            Unit::Hours => 'H',
            Unit::Minutes => 'M',
            Unit::Seconds => 'S',
        }
    }
}

/// One `<number><designator>` of a duration.
struct Component {
    unit: Unit,
    value: u64,
    /// The fraction of a second, in nanoseconds (seconds only).
    nanos: u32,
}

const CALENDAR_UNITS: &str = "months and years have no fixed length; use days or weeks";

/// The unit of designator `c` on side `part`, or why it is not allowed there.
fn unit_of(c: char, part: Part, number: &str) -> Result<Unit, String> {
    match (part, c) {
        (Part::Date, 'W') => Ok(Unit::Weeks),
        (Part::Date, 'D') => Ok(Unit::Days),
        (Part::Time, 'H') => Ok(Unit::Hours),
        (Part::Time, 'M') => Ok(Unit::Minutes),
        (Part::Time, 'S') => Ok(Unit::Seconds),
        (_, 'Y') => Err(CALENDAR_UNITS.into()),
        (Part::Date, 'M') => Err(format!(
            "{CALENDAR_UNITS} ('M' before the 'T' is months; minutes are PT{number}M)"
        )),
        (Part::Date, 'H' | 'S') => Err(format!("'{c}' belongs after a 'T': write PT{number}{c}")),
        (Part::Time, 'D' | 'W') => Err(format!("'{c}' belongs before the 'T', e.g. P1{c}T2H")),
        _ => Err(format!(
            "'{c}' is not a designator; use W (weeks) and D (days), then T and H, M, S"
        )),
    }
}

/// Parses the components on one side of the `T`, checking each designator's place and order.
fn parse_components(text: &str, part: Part) -> Result<Vec<Component>, String> {
    let mut out: Vec<Component> = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, first)) = chars.peek() {
        let mut int_end = start;
        while let Some(&(i, c)) = chars.peek() {
            if !c.is_ascii_digit() {
                break;
            }
            int_end = i + 1;
            chars.next();
        }
        let digits = &text[start..int_end];
        let mut fraction: Option<&str> = None;
        if let Some(&(sep, '.' | ',')) = chars.peek() {
            chars.next();
            let mut end = sep + 1;
            while let Some(&(i, c)) = chars.peek() {
                if !c.is_ascii_digit() {
                    break;
                }
                end = i + 1;
                chars.next();
            }
            fraction = Some(&text[sep + 1..end]);
        }
        let number = &text[start..chars.peek().map_or(text.len(), |&(i, _)| i)];
        let Some((_, designator)) = chars.next() else {
            let hint = match part {
                Part::Date => "D for days or W for weeks",
                Part::Time => "H, M or S",
            };
            return Err(format!("'{number}' has no designator; follow it with {hint}"));
        };
        if digits.is_empty() {
            return Err(if fraction.is_some() {
                format!("'{number}' needs a digit before the decimal point, e.g. 0{number}")
            } else if first.is_ascii_uppercase() {
                format!("'{designator}' has no number before it")
            } else {
                format!("unexpected character '{first}'")
            });
        }
        let unit = unit_of(designator, part, digits)?;
        if let Some(previous) = out.last().map(|c| c.unit) {
            if previous == unit {
                return Err(format!("'{}' appears twice", unit.designator()));
            }
            if previous > unit {
                return Err(format!(
                    "'{}' must come before '{}'",
                    unit.designator(),
                    previous.designator()
                ));
            }
        }
        let nanos = match fraction {
            None => 0,
            Some(_) if unit != Unit::Seconds => {
                return Err(format!(
                    "only seconds may have a fraction ('{number}{designator}'); use a smaller unit, \
                     e.g. PT1H30M instead of PT1.5H"
                ));
            }
            Some("") => return Err(format!("'{number}' needs digits after the decimal point")),
            Some(f) if f.len() > 9 => return Err("seconds have at most 9 decimal places".into()),
            Some(f) => {
                let padded = format!("{f:0<9}");
                padded
                    .parse::<u32>()
                    .map_err(|_| format!("'{number}' is not a number"))?
            }
        };
        let value = digits
            .parse::<u64>()
            .map_err(|_| format!("'{digits}{designator}' is too large"))?;
        out.push(Component { unit, value, nanos });
    }
    Ok(out)
}

/// `input` for an error message, cut to a readable length.
fn shown(input: &str) -> String {
    const MAX: usize = 40;
    match input.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &input[..cut]),
        None => input.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Clock times and days

/// Parses a 24-hour time of day written `HH:MM` (`09:00`, `17:30`, `00:00`, `23:59`), two
/// digits each.
pub fn parse_clock(input: &str) -> Result<NaiveTime, TimeError> {
    let bad = || TimeError::Clock { input: shown(input) };
    let &[h1, h2, b':', m1, m2] = input.as_bytes() else {
        return Err(bad());
    };
    if ![h1, h2, m1, m2].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let two = |tens: u8, ones: u8| u32::from(tens - b'0') * 10 + u32::from(ones - b'0');
    NaiveTime::from_hms_opt(two(h1, h2), two(m1, m2), 0).ok_or_else(bad)
}

/// `time` as `HH:MM`, the form `parse_clock` reads (seconds are dropped).
pub fn format_clock(time: NaiveTime) -> String {
    time.format("%H:%M").to_string()
}

const DAY_CODES: [(&str, Weekday); 7] = [
    ("MON", Weekday::Mon),
    ("TUE", Weekday::Tue),
    ("WED", Weekday::Wed),
    ("THU", Weekday::Thu),
    ("FRI", Weekday::Fri),
    ("SAT", Weekday::Sat),
    ("SUN", Weekday::Sun),
];

/// Parses a day code: `MON`, `TUE`, `WED`, `THU`, `FRI`, `SAT` or `SUN` (upper case).
pub fn parse_weekday(input: &str) -> Result<Weekday, TimeError> {
    DAY_CODES
        .iter()
        .find(|(code, _)| *code == input)
        .map(|&(_, day)| day)
        .ok_or_else(|| TimeError::Weekday { input: shown(input) })
}

/// The code of `day` (`MON` … `SUN`), the form `parse_weekday` reads.
pub fn weekday_code(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "MON",
        Weekday::Tue => "TUE",
        Weekday::Wed => "WED",
        Weekday::Thu => "THU",
        Weekday::Fri => "FRI",
        Weekday::Sat => "SAT",
        Weekday::Sun => "SUN",
    }
}

/// A set of weekdays; serialised as a list of codes in week order (`["MON", "TUE"]`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Weekdays(u8);

impl Weekdays {
    /// Monday to Friday.
    pub const WORKDAYS: Weekdays = Weekdays(0b0001_1111);
    /// Every day.
    pub const ALL: Weekdays = Weekdays(0b0111_1111);

    /// No days.
    pub const fn empty() -> Self {
        Self(0)
    }

    fn bit(day: Weekday) -> u8 {
        1 << day.num_days_from_monday()
    }

    /// `self` with `day` added.
    pub fn with(self, day: Weekday) -> Self {
        Self(self.0 | Self::bit(day))
    }

    /// Whether `day` is in the set.
    pub fn contains(self, day: Weekday) -> bool {
        self.0 & Self::bit(day) != 0
    }

    /// Whether the set has no days.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The days in week order, Monday first.
    pub fn iter(self) -> impl Iterator<Item = Weekday> {
        DAY_CODES
            .into_iter()
            .map(|(_, day)| day)
            .filter(move |&day| self.contains(day))
    }
}

impl FromIterator<Weekday> for Weekdays {
    fn from_iter<I: IntoIterator<Item = Weekday>>(days: I) -> Self {
        days.into_iter().fold(Self::empty(), Self::with)
    }
}

impl std::fmt::Debug for Weekdays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter().map(weekday_code)).finish()
    }
}

impl TryFrom<Vec<String>> for Weekdays {
    type Error = TimeError;

    /// Reads day codes; a day listed twice counts once.
    fn try_from(codes: Vec<String>) -> Result<Self, TimeError> {
        codes.iter().map(|c| parse_weekday(c)).collect()
    }
}

impl From<Weekdays> for Vec<String> {
    fn from(days: Weekdays) -> Self {
        days.iter().map(|d| weekday_code(d).to_owned()).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Local time resolution

/// The first instant at which the clock in `tz` reaches `local`: the instant itself when it
/// exists once, the earlier one when a fall-back repeats it, and the first instant after the
/// gap when a spring-forward skips it.
fn resolve(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => gap_end(local, tz),
    }
}

/// The instant a gap containing `local` ends: the first whole second at which the local clock
/// reads `local` or later. Offsets lie within ±16 hours, so that instant is within 16 hours of
/// `local` read as UTC; the clock only moves forward across a gap, so bisection finds it.
fn gap_end(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    const SPAN: i64 = 16 * 3600;
    let guess = local.and_utc();
    let reached = |secs: i64| {
        DateTime::from_timestamp(secs, 0)
            .and_then(|t| local_time(t, tz))
            .is_none_or(|t| t >= local)
    };
    let (mut before, mut after) = (guess.timestamp() - SPAN, guess.timestamp() + SPAN);
    while after - before > 1 {
        let mid = before + (after - before) / 2;
        if reached(mid) {
            after = mid;
        } else {
            before = mid;
        }
    }
    DateTime::from_timestamp(after, 0).unwrap_or(guess)
}

/// The local time in `tz` at `t`; `None` only at the ends of the representable range.
fn local_time(t: DateTime<Utc>, tz: Tz) -> Option<NaiveDateTime> {
    let utc = t.naive_utc();
    utc.checked_add_offset(tz.offset_from_utc_datetime(&utc).fix())
}

/// The fallback of the searches that cannot run out: a week after `t` (or `t` at the end of
/// time).
fn a_week_after(t: DateTime<Utc>) -> DateTime<Utc> {
    t.checked_add_signed(TimeDelta::days(7)).unwrap_or(t)
}

/// The local dates from the day before `at`'s local date to `DAYS_AHEAD` days after it.
fn local_dates(at: DateTime<Utc>, tz: Tz) -> impl Iterator<Item = NaiveDate> {
    let today = local_time(at, tz).unwrap_or(at.naive_utc()).date();
    let first = today.pred_opt().unwrap_or(today);
    first.iter_days().take(DAYS_AHEAD as usize + 2)
}

/// The first instant strictly after `after` at which the clock in `tz` shows `time`, on a
/// `day` if one is given: "wait until Monday 09:00" is `next_at(now, Some(Weekday::Mon),
/// 09:00, tz)`.
///
/// DST follows the module's rule: a `time` a spring-forward skips is the first instant after
/// the gap; one a fall-back repeats is its first occurrence only, so this never answers the
/// second 01:30 of a day whose first 01:30 has passed.
pub fn next_at(after: DateTime<Utc>, day: Option<Weekday>, time: NaiveTime, tz: Tz) -> DateTime<Utc> {
    local_dates(after, tz)
        .filter(|date| day.is_none_or(|d| date.weekday() == d))
        .map(|date| resolve(date.and_time(time), tz))
        .find(|&t| t > after)
        // not reached: every day has an instant for every time, and the dates cover two weeks
        .unwrap_or_else(|| a_week_after(after))
}

// ---------------------------------------------------------------------------------------------
// Send windows

/// When a campaign may send: on some weekdays, between two local times (`start` inclusive,
/// `end` exclusive), read in the recipient's zone. Both times are whole minutes on the same
/// day (`start < end`); an overnight window is two windows.
///
/// Serialised as `{"days": ["MON", "TUE"], "start": "09:00", "end": "17:00"}`; reading checks
/// the same rules as `new`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(try_from = "SendWindowData", into = "SendWindowData")]
pub struct SendWindow {
    days: Weekdays,
    start: NaiveTime,
    end: NaiveTime,
}

/// The serialised form of a `SendWindow`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendWindowData {
    days: Weekdays,
    start: String,
    end: String,
}

impl SendWindow {
    /// A window on `days` from `start` to `end` (use `parse_clock` for `"09:00"`). Refuses no
    /// days, times with seconds, `start == end` and `start > end` (overnight).
    pub fn new(
        days: impl IntoIterator<Item = Weekday>,
        start: NaiveTime,
        end: NaiveTime,
    ) -> Result<Self, TimeError> {
        let days: Weekdays = days.into_iter().collect();
        if days.is_empty() {
            return Err(TimeError::NoDays);
        }
        for time in [start, end] {
            if time.second() != 0 || time.nanosecond() != 0 {
                return Err(TimeError::ClockPrecision { time });
            }
        }
        if start == end {
            return Err(TimeError::EmptyWindow { at: start });
        }
        if start > end {
            return Err(TimeError::Overnight { start, end });
        }
        Ok(Self { days, start, end })
    }

    /// The days the window opens on.
    pub fn days(&self) -> Weekdays {
        self.days
    }

    /// The local time it opens at.
    pub fn start(&self) -> NaiveTime {
        self.start
    }

    /// The local time it closes at (exclusive).
    pub fn end(&self) -> NaiveTime {
        self.end
    }

    /// The window on local `date`, as instants `[open, close)`; `None` if `date` is not one of
    /// its days. `open == close` when the window lies wholly inside a DST gap that day.
    fn on(&self, date: NaiveDate, tz: Tz) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        self.days.contains(date.weekday()).then(|| {
            (
                resolve(date.and_time(self.start), tz),
                resolve(date.and_time(self.end), tz),
            )
        })
    }

    /// Whether the window is open at `at` for a recipient in `tz`.
    pub fn is_open(&self, at: DateTime<Utc>, tz: Tz) -> bool {
        local_dates(at, tz)
            .take(3)
            .filter_map(|date| self.on(date, tz))
            .any(|(open, close)| open <= at && at < close)
    }

    /// `at` when the window is open then, else the earliest instant after `at` at which it
    /// opens for a recipient in `tz`.
    pub fn next_open(&self, at: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        if self.is_open(at, tz) {
            return at;
        }
        local_dates(at, tz)
            .filter_map(|date| self.on(date, tz))
            .find(|&(open, close)| open > at && open < close)
            .map(|(open, _)| open)
            // not reached: a window is shut only on a day a DST gap swallows it, and the dates
            // cover two weeks
            .unwrap_or_else(|| a_week_after(at))
    }
}

impl TryFrom<SendWindowData> for SendWindow {
    type Error = TimeError;

    fn try_from(data: SendWindowData) -> Result<Self, TimeError> {
        Self::new(
            data.days.iter(),
            parse_clock(&data.start)?,
            parse_clock(&data.end)?,
        )
    }
}

impl From<SendWindow> for SendWindowData {
    fn from(w: SendWindow) -> Self {
        Self {
            days: w.days,
            start: format_clock(w.start),
            end: format_clock(w.end),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Zones

/// The IANA zone of the country with ISO 3166-1 alpha-2 code `iso2` (any case, surrounding
/// spaces ignored), when the country has a single one; `None` for countries with several
/// clocks (US, ES, PT, …) and for unknown codes. See the module header for the rule.
pub fn zone_for_country(iso2: &str) -> Option<Tz> {
    let code = iso2.trim().to_ascii_uppercase();
    if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let table = super::country_zones::COUNTRY_ZONES;
    table
        .binary_search_by(|&(c, _)| c.cmp(code.as_str()))
        .ok()
        .and_then(|i| table.get(i))
        .map(|&(_, tz)| tz)
}

/// The zone a lead's times are read in: the lead's own IANA zone when it names one (e.g.
/// `Europe/Berlin`, surrounding spaces ignored), else its country's single zone, else the
/// campaign's zone.
pub fn lead_zone(lead_tz: Option<&str>, country: Option<&str>, campaign_tz: Tz) -> Tz {
    lead_tz
        .and_then(|name| name.trim().parse::<Tz>().ok())
        .or_else(|| country.and_then(zone_for_country))
        .unwrap_or(campaign_tz)
}

// ---------------------------------------------------------------------------------------------
// A/B variants

/// The variant (`0..variants`) a lead gets at a campaign step; 0 when `variants` is 0 or 1.
///
/// Stable: the value depends on nothing but the arguments, and this definition is fixed, so
/// it stays the same across restarts, instances, platforms and releases. It is the SHA-256 of
/// the lead's 16 UUID bytes, the campaign's 16 UUID bytes and `step` as 4 big-endian bytes;
/// the first 8 bytes of the digest, read as a big-endian `u64`, modulo `variants`. Changing
/// any of this would move leads between variants mid-campaign.
pub fn variant_for(lead: Uuid, campaign: Uuid, step: u32, variants: u32) -> u32 {
    if variants <= 1 {
        return 0;
    }
    let digest = Sha256::new()
        .chain_update(lead.as_bytes())
        .chain_update(campaign.as_bytes())
        .chain_update(step.to_be_bytes())
        .finalize();
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    // the remainder is below `variants`, a u32
    (u64::from_be_bytes(head) % u64::from(variants)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn clock(s: &str) -> NaiveTime {
        parse_clock(s).unwrap()
    }

    fn window(days: &[Weekday], start: &str, end: &str) -> SendWindow {
        SendWindow::new(days.iter().copied(), clock(start), clock(end)).unwrap()
    }

    fn every_day(start: &str, end: &str) -> SendWindow {
        SendWindow::new(Weekdays::ALL.iter(), clock(start), clock(end)).unwrap()
    }

    fn workdays(start: &str, end: &str) -> SendWindow {
        SendWindow::new(Weekdays::WORKDAYS.iter(), clock(start), clock(end)).unwrap()
    }

    const BERLIN: Tz = Tz::Europe__Berlin;
    const NEW_YORK: Tz = Tz::America__New_York;

    // --- durations -----------------------------------------------------------------------

    #[test]
    fn durations_parse() {
        let cases: &[(&str, TimeDelta)] = &[
            ("P2D", TimeDelta::days(2)),
            ("PT36H", TimeDelta::hours(36)),
            ("P1W", TimeDelta::days(7)),
            (
                "P1DT2H30M",
                TimeDelta::days(1) + TimeDelta::hours(2) + TimeDelta::minutes(30),
            ),
            ("PT90S", TimeDelta::seconds(90)),
            ("PT0.5S", TimeDelta::milliseconds(500)),
            ("PT1,25S", TimeDelta::milliseconds(1250)),
            ("PT0.000000001S", TimeDelta::nanoseconds(1)),
            ("PT1M0.5S", TimeDelta::milliseconds(60_500)),
            (
                "P1W2DT3H4M5S",
                TimeDelta::seconds(9 * 86_400 + 3 * 3600 + 4 * 60 + 5),
            ),
            ("P02D", TimeDelta::days(2)),
            ("P0D", TimeDelta::zero()),
            ("PT0S", TimeDelta::zero()),
            ("P366D", TimeDelta::days(366)),
            ("P52W2D", TimeDelta::days(366)),
            ("PT8784H", TimeDelta::days(366)),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_duration(input), Ok(*expected), "{input}");
        }
    }

    #[test]
    fn durations_are_refused_with_a_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "it is empty"),
            ("P", "'P' alone has no length"),
            ("PT", "'T' must be followed by hours, minutes or seconds"),
            ("P1DT", "'T' must be followed by hours, minutes or seconds"),
            ("P1Y", "months and years have no fixed length; use days or weeks"),
            ("P2M", "months and years have no fixed length; use days or weeks"),
            ("P30M", "minutes are PT30M"),
            ("PT1Y", "months and years have no fixed length"),
            ("p2d", "upper case: write 'P2D'"),
            ("P2d", "upper case: write 'P2D'"),
            ("pt1h", "upper case: write 'PT1H'"),
            ("-P2D", "cannot be negative"),
            ("P-2D", "unexpected character '-'"),
            ("+P2D", "no sign"),
            ("2D", "must start with 'P'"),
            (" P2D", "leading or trailing spaces"),
            ("P2D ", "leading or trailing spaces"),
            (
                "P2",
                "'2' has no designator; follow it with D for days or W for weeks",
            ),
            ("PT5", "'5' has no designator; follow it with H, M or S"),
            ("PD", "'D' has no number before it"),
            ("PTH", "'H' has no number before it"),
            ("P2X", "'X' is not a designator"),
            ("P2H", "'H' belongs after a 'T': write PT2H"),
            ("PT2D", "'D' belongs before the 'T'"),
            ("PT1W", "'W' belongs before the 'T'"),
            ("P1D2D", "'D' appears twice"),
            ("PT1H2H", "'H' appears twice"),
            ("P1D1W", "'W' must come before 'D'"),
            ("PT1M2H", "'H' must come before 'M'"),
            ("PT1S2M", "'M' must come before 'S'"),
            ("PT1HT2M", "'T' appears twice"),
            ("PT1.5H", "only seconds may have a fraction"),
            ("P1.5D", "only seconds may have a fraction"),
            ("PT.5S", "needs a digit before the decimal point"),
            ("PT5.S", "needs digits after the decimal point"),
            ("PT0.0000000001S", "at most 9 decimal places"),
            ("PT0.5S1M", "'M' must come before 'S'"),
            ("P367D", "longer than 366 days"),
            ("P366DT0.1S", "longer than 366 days"),
            ("P53W", "longer than 366 days"),
            ("PT8785H", "longer than 366 days"),
            ("P99999999999999999999D", "'99999999999999999999D' is too large"),
            ("P18446744073709551615W", "longer than 366 days"),
            ("P1D\u{e9}", "unexpected character"),
        ];
        for (input, reason) in cases {
            let err = parse_duration(input).unwrap_err().to_string();
            assert!(err.contains(reason), "{input}: {err}");
        }
    }

    #[test]
    fn duration_errors_quote_the_input() {
        let err = parse_duration("P1M").unwrap_err().to_string();
        assert_eq!(
            err,
            "'P1M' is not a valid wait such as P2D, PT36H, P1W or P1DT2H30M: months and years have no \
             fixed length; use days or weeks ('M' before the 'T' is months; minutes are PT1M)"
        );
        let long = format!("P{}", "9".repeat(100));
        let err = parse_duration(&long).unwrap_err().to_string();
        assert!(err.starts_with(&format!("'P{}...'", "9".repeat(39))), "{err}");
    }

    #[test]
    fn durations_format_canonically_and_round_trip() {
        let cases: &[(TimeDelta, &str)] = &[
            (TimeDelta::zero(), "PT0S"),
            (TimeDelta::days(2), "P2D"),
            (TimeDelta::days(7), "P7D"),
            (TimeDelta::hours(36), "P1DT12H"),
            (TimeDelta::seconds(90), "PT1M30S"),
            (TimeDelta::hours(2), "PT2H"),
            (TimeDelta::days(1) + TimeDelta::minutes(30), "P1DT30M"),
            (TimeDelta::days(1) + TimeDelta::seconds(5), "P1DT5S"),
            (TimeDelta::milliseconds(500), "PT0.5S"),
            (TimeDelta::nanoseconds(1_000_000_001), "PT1.000000001S"),
            (TimeDelta::days(366), "P366D"),
            (-TimeDelta::hours(1), "-PT1H"),
        ];
        for (d, expected) in cases {
            assert_eq!(format_duration(*d), *expected);
            if *d >= TimeDelta::zero() {
                assert_eq!(parse_duration(expected), Ok(*d), "{expected}");
            }
        }
        for input in ["P1DT2H30M", "PT1H1S", "P3D", "PT59M59S"] {
            assert_eq!(format_duration(parse_duration(input).unwrap()), input);
        }
        for secs in (0..=366 * 86_400).step_by(7919) {
            let d = TimeDelta::seconds(secs);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{secs}");
        }
    }

    // --- clock times and days ------------------------------------------------------------

    #[test]
    fn clock_times_are_hh_mm() {
        assert_eq!(
            parse_clock("09:00"),
            Ok(NaiveTime::from_hms_opt(9, 0, 0).unwrap())
        );
        assert_eq!(
            parse_clock("23:59"),
            Ok(NaiveTime::from_hms_opt(23, 59, 0).unwrap())
        );
        assert_eq!(parse_clock("00:00"), Ok(NaiveTime::MIN));
        for bad in [
            "9:00", "24:00", "12:60", "12:5", "12-00", "1200", "12:00:00", "", "ab:cd", "０9:00",
        ] {
            let err = parse_clock(bad).unwrap_err();
            assert_eq!(err, TimeError::Clock { input: bad.into() });
            assert!(err.to_string().contains("write 24-hour HH:MM"), "{err}");
        }
        assert_eq!(format_clock(clock("07:05")), "07:05");
    }

    #[test]
    fn day_codes() {
        for (code, day) in DAY_CODES {
            assert_eq!(parse_weekday(code), Ok(day));
            assert_eq!(weekday_code(day), code);
        }
        let err = parse_weekday("Mon").unwrap_err().to_string();
        assert!(err.contains("write MON, TUE"), "{err}");
        let days: Weekdays = [Weekday::Fri, Weekday::Mon, Weekday::Fri].into_iter().collect();
        assert_eq!(days.iter().collect::<Vec<_>>(), [Weekday::Mon, Weekday::Fri]);
        assert_eq!(format!("{days:?}"), r#"["MON", "FRI"]"#);
        assert_eq!(Weekdays::WORKDAYS.iter().count(), 5);
        assert!(!Weekdays::WORKDAYS.contains(Weekday::Sat));
    }

    // --- send windows --------------------------------------------------------------------

    #[test]
    fn windows_are_validated() {
        let (nine, five) = (clock("09:00"), clock("17:00"));
        assert_eq!(SendWindow::new([], nine, five), Err(TimeError::NoDays));
        assert_eq!(
            SendWindow::new([Weekday::Mon], nine, nine),
            Err(TimeError::EmptyWindow { at: nine })
        );
        let err = SendWindow::new([Weekday::Mon], clock("22:00"), clock("06:00")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the send window 22:00-06:00 crosses midnight; a window must close later on the day it \
             opens (e.g. 09:00-17:00), so split it at midnight"
        );
        let odd = NaiveTime::from_hms_opt(9, 0, 30).unwrap();
        let err = SendWindow::new([Weekday::Mon], odd, five).unwrap_err();
        assert_eq!(
            err.to_string(),
            "send window times are whole minutes, got 09:00:30"
        );
        let w = SendWindow::new(vec![Weekday::Tue, Weekday::Mon], nine, five).unwrap();
        assert_eq!(w.days().iter().collect::<Vec<_>>(), [Weekday::Mon, Weekday::Tue]);
        assert_eq!((w.start(), w.end()), (nine, five));
    }

    #[test]
    fn windows_serialise_as_day_codes_and_clock_times() {
        let w = workdays("09:00", "17:30");
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(
            json,
            r#"{"days":["MON","TUE","WED","THU","FRI"],"start":"09:00","end":"17:30"}"#
        );
        assert_eq!(serde_json::from_str::<SendWindow>(&json).unwrap(), w);
        for (bad, reason) in [
            (r#"{"days":[],"start":"09:00","end":"17:00"}"#, "at least one day"),
            (
                r#"{"days":["Mon"],"start":"09:00","end":"17:00"}"#,
                "'Mon' is not a day",
            ),
            (
                r#"{"days":["MON"],"start":"9:00","end":"17:00"}"#,
                "'9:00' is not a time of day",
            ),
            (
                r#"{"days":["MON"],"start":"18:00","end":"17:00"}"#,
                "crosses midnight",
            ),
            (
                r#"{"days":["MON"],"start":"09:00","end":"17:00","tz":"UTC"}"#,
                "unknown field",
            ),
        ] {
            let err = serde_json::from_str::<SendWindow>(bad).unwrap_err().to_string();
            assert!(err.contains(reason), "{bad}: {err}");
        }
    }

    #[test]
    fn window_bounds_are_start_inclusive_end_exclusive() {
        let w = workdays("09:00", "17:00");
        // Wednesday 2026-01-14; Berlin is UTC+1 in winter
        assert!(!w.is_open(utc(2026, 1, 14, 7, 59), BERLIN));
        assert!(w.is_open(utc(2026, 1, 14, 8, 0), BERLIN));
        assert!(w.is_open(utc(2026, 1, 14, 15, 59), BERLIN));
        assert!(!w.is_open(utc(2026, 1, 14, 16, 0), BERLIN));
        // the same window in summer (UTC+2) and in New York (UTC-4)
        assert!(w.is_open(utc(2026, 7, 15, 7, 0), BERLIN));
        assert!(!w.is_open(utc(2026, 7, 15, 15, 0), BERLIN));
        assert!(!w.is_open(utc(2026, 7, 15, 12, 59), NEW_YORK));
        assert!(w.is_open(utc(2026, 7, 15, 13, 0), NEW_YORK));
    }

    #[test]
    fn next_open_is_now_when_open_else_the_next_start() {
        let w = workdays("09:00", "17:00");
        let open = utc(2026, 1, 14, 10, 17);
        assert_eq!(w.next_open(open, BERLIN), open);
        // before the start the same day
        assert_eq!(
            w.next_open(utc(2026, 1, 14, 6, 0), BERLIN),
            utc(2026, 1, 14, 8, 0)
        );
        // at the close: the next morning
        assert_eq!(
            w.next_open(utc(2026, 1, 14, 16, 0), BERLIN),
            utc(2026, 1, 15, 8, 0)
        );
        // late evening in Berlin is already the next local day in UTC terms only after 23:00
        assert_eq!(
            w.next_open(utc(2026, 1, 14, 23, 30), BERLIN),
            utc(2026, 1, 15, 8, 0)
        );
    }

    #[test]
    fn weekends_are_skipped() {
        let w = workdays("09:00", "17:00");
        // Friday 2026-01-16 17:00 Berlin: closed until Monday 2026-01-19 09:00
        let friday_close = utc(2026, 1, 16, 16, 0);
        assert!(!w.is_open(friday_close, BERLIN));
        assert_eq!(w.next_open(friday_close, BERLIN), utc(2026, 1, 19, 8, 0));
        assert!(!w.is_open(utc(2026, 1, 17, 10, 0), BERLIN));
        assert_eq!(
            w.next_open(utc(2026, 1, 18, 12, 0), BERLIN),
            utc(2026, 1, 19, 8, 0)
        );
        // a weekend spanning the EU spring change: Friday is UTC+1, Monday UTC+2
        assert_eq!(
            w.next_open(utc(2026, 3, 27, 16, 0), BERLIN),
            utc(2026, 3, 30, 7, 0)
        );
        // and the autumn one: Friday UTC+2, Monday UTC+1
        assert_eq!(
            w.next_open(utc(2026, 10, 23, 15, 0), BERLIN),
            utc(2026, 10, 26, 8, 0)
        );
        // weekend-only window from a Monday
        let weekend = window(&[Weekday::Sat, Weekday::Sun], "10:00", "12:00");
        assert_eq!(
            weekend.next_open(utc(2026, 1, 12, 9, 0), BERLIN),
            utc(2026, 1, 17, 9, 0)
        );
    }

    #[test]
    fn berlin_spring_forward_start_in_the_gap_opens_after_the_gap() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00 UTC; 02:30 does not exist
        let w = every_day("02:30", "04:00");
        assert_eq!(
            w.next_open(utc(2026, 3, 28, 22, 0), BERLIN),
            utc(2026, 3, 29, 1, 0)
        );
        assert!(!w.is_open(utc(2026, 3, 29, 0, 59), BERLIN));
        assert!(w.is_open(utc(2026, 3, 29, 1, 0), BERLIN));
        // closes at 04:00 CEST = 02:00 UTC
        assert!(w.is_open(utc(2026, 3, 29, 1, 59), BERLIN));
        assert!(!w.is_open(utc(2026, 3, 29, 2, 0), BERLIN));
        // the day before and after keep their own offsets
        assert_eq!(
            w.next_open(utc(2026, 3, 27, 22, 0), BERLIN),
            utc(2026, 3, 28, 1, 30)
        );
        assert_eq!(
            w.next_open(utc(2026, 3, 29, 2, 0), BERLIN),
            utc(2026, 3, 30, 0, 30)
        );
    }

    #[test]
    fn berlin_fall_back_window_is_one_interval() {
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET at 01:00 UTC; 02:00-02:59 repeats
        let w = every_day("02:30", "03:30");
        // opens at the first 02:30 (CEST, 00:30 UTC) and closes at 03:30 CET (02:30 UTC)
        assert_eq!(
            w.next_open(utc(2026, 10, 24, 22, 0), BERLIN),
            utc(2026, 10, 25, 0, 30)
        );
        assert!(!w.is_open(utc(2026, 10, 25, 0, 29), BERLIN));
        assert!(w.is_open(utc(2026, 10, 25, 0, 30), BERLIN));
        // 02:15 CET, the repeated hour before the local start, is inside the interval
        assert!(w.is_open(utc(2026, 10, 25, 1, 15), BERLIN));
        assert!(w.is_open(utc(2026, 10, 25, 2, 29), BERLIN));
        assert!(!w.is_open(utc(2026, 10, 25, 2, 30), BERLIN));
        // an end the clock repeats closes at its first occurrence
        let early = every_day("01:00", "02:30");
        assert!(early.is_open(utc(2026, 10, 24, 23, 0), BERLIN));
        assert!(!early.is_open(utc(2026, 10, 25, 0, 30), BERLIN));
        assert!(!early.is_open(utc(2026, 10, 25, 1, 15), BERLIN));
    }

    #[test]
    fn new_york_spring_forward_start_at_0230() {
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT at 07:00 UTC
        let w = every_day("02:30", "05:00");
        // the day before: 02:30 EST = 07:30 UTC
        assert_eq!(
            w.next_open(utc(2026, 3, 7, 0, 0), NEW_YORK),
            utc(2026, 3, 7, 7, 30)
        );
        // on the day: opens at 03:00 EDT = 07:00 UTC, closes at 05:00 EDT = 09:00 UTC
        assert_eq!(
            w.next_open(utc(2026, 3, 7, 12, 0), NEW_YORK),
            utc(2026, 3, 8, 7, 0)
        );
        assert!(!w.is_open(utc(2026, 3, 8, 6, 59), NEW_YORK));
        assert!(w.is_open(utc(2026, 3, 8, 7, 0), NEW_YORK));
        assert!(w.is_open(utc(2026, 3, 8, 8, 59), NEW_YORK));
        assert!(!w.is_open(utc(2026, 3, 8, 9, 0), NEW_YORK));
        // the day after: 02:30 EDT = 06:30 UTC
        assert_eq!(
            w.next_open(utc(2026, 3, 8, 9, 0), NEW_YORK),
            utc(2026, 3, 9, 6, 30)
        );
    }

    #[test]
    fn new_york_fall_back_start_at_0130() {
        // 2026-11-01: 02:00 EDT falls back to 01:00 EST at 06:00 UTC; 01:00-01:59 repeats
        let w = every_day("01:30", "03:00");
        // opens at the first 01:30 (EDT, 05:30 UTC), closes at 03:00 EST (08:00 UTC)
        assert_eq!(
            w.next_open(utc(2026, 11, 1, 0, 0), NEW_YORK),
            utc(2026, 11, 1, 5, 30)
        );
        assert!(!w.is_open(utc(2026, 11, 1, 5, 29), NEW_YORK));
        assert!(w.is_open(utc(2026, 11, 1, 5, 30), NEW_YORK));
        // 01:10 EST: before 01:30 on the clock, but the window has been open since the first 01:30
        assert!(w.is_open(utc(2026, 11, 1, 6, 10), NEW_YORK));
        assert_eq!(
            w.next_open(utc(2026, 11, 1, 6, 10), NEW_YORK),
            utc(2026, 11, 1, 6, 10)
        );
        assert!(w.is_open(utc(2026, 11, 1, 7, 59), NEW_YORK));
        assert!(!w.is_open(utc(2026, 11, 1, 8, 0), NEW_YORK));
        // next: 01:30 EST on 2026-11-02 = 06:30 UTC
        assert_eq!(
            w.next_open(utc(2026, 11, 1, 8, 0), NEW_YORK),
            utc(2026, 11, 2, 6, 30)
        );
        // a window wholly inside the repeated hour opens once, on the first pass
        let inside = every_day("01:10", "01:40");
        assert!(inside.is_open(utc(2026, 11, 1, 5, 20), NEW_YORK));
        assert!(!inside.is_open(utc(2026, 11, 1, 6, 20), NEW_YORK));
        assert_eq!(
            inside.next_open(utc(2026, 11, 1, 5, 40), NEW_YORK),
            utc(2026, 11, 2, 6, 10)
        );
    }

    #[test]
    fn a_window_inside_the_gap_is_shut_that_day() {
        // Sundays 02:00-02:45 New York: 2026-03-08 has no such local times at all
        let w = window(&[Weekday::Sun], "02:00", "02:45");
        assert!(!w.is_open(utc(2026, 3, 8, 7, 0), NEW_YORK));
        assert_eq!(
            w.next_open(utc(2026, 3, 7, 12, 0), NEW_YORK),
            utc(2026, 3, 15, 6, 0)
        );
        // and from the Sunday before, two weeks ahead
        assert_eq!(
            w.next_open(utc(2026, 3, 1, 12, 0), NEW_YORK),
            utc(2026, 3, 15, 6, 0)
        );
    }

    #[test]
    fn windows_in_a_zone_far_from_utc() {
        // 09:00-10:00 in Kiritimati (UTC+14) is 19:00-20:00 UTC the day before
        let w = window(&[Weekday::Mon], "09:00", "10:00");
        let kiritimati = Tz::Pacific__Kiritimati;
        assert_eq!(
            w.next_open(utc(2026, 1, 11, 0, 0), kiritimati),
            utc(2026, 1, 11, 19, 0)
        );
        assert!(w.is_open(utc(2026, 1, 11, 19, 30), kiritimati));
        let samoa_skip = Tz::Pacific__Apia;
        // Samoa skipped 2011-12-30 entirely (UTC-10 to UTC+14); a Friday window moves a week
        let friday = window(&[Weekday::Fri], "09:00", "10:00");
        assert_eq!(
            friday.next_open(utc(2011, 12, 29, 12, 0), samoa_skip),
            utc(2012, 1, 5, 19, 0)
        );
    }

    #[test]
    fn the_ends_of_time_do_not_panic() {
        let w = workdays("09:00", "17:00");
        for at in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            for tz in [Tz::Pacific__Kiritimati, Tz::Pacific__Niue, NEW_YORK, Tz::UTC] {
                let open = w.next_open(at, tz);
                assert!(open >= at);
                let _ = w.is_open(at, tz);
                assert!(next_at(at, Some(Weekday::Mon), clock("09:00"), tz) >= at);
            }
        }
    }

    // --- next_at ---------------------------------------------------------------------------

    #[test]
    fn next_at_a_weekday() {
        let monday_nine = (Some(Weekday::Mon), clock("09:00"));
        // Friday 2026-03-27 noon Berlin -> Monday 2026-03-30 09:00 CEST (after the DST change)
        let (day, time) = monday_nine;
        assert_eq!(
            next_at(utc(2026, 3, 27, 11, 0), day, time, BERLIN),
            utc(2026, 3, 30, 7, 0)
        );
        // exactly at Monday 09:00 -> the next Monday (strictly after)
        assert_eq!(
            next_at(utc(2026, 3, 30, 7, 0), day, time, BERLIN),
            utc(2026, 4, 6, 7, 0)
        );
        // a minute before -> that Monday
        assert_eq!(
            next_at(utc(2026, 3, 30, 6, 59), day, time, BERLIN),
            utc(2026, 3, 30, 7, 0)
        );
        // New York, winter
        assert_eq!(
            next_at(utc(2026, 1, 14, 12, 0), day, time, NEW_YORK),
            utc(2026, 1, 19, 14, 0)
        );
    }

    #[test]
    fn next_at_any_day() {
        let nine = clock("09:00");
        assert_eq!(
            next_at(utc(2026, 1, 14, 7, 0), None, nine, BERLIN),
            utc(2026, 1, 14, 8, 0)
        );
        assert_eq!(
            next_at(utc(2026, 1, 14, 8, 0), None, nine, BERLIN),
            utc(2026, 1, 15, 8, 0)
        );
        assert_eq!(
            next_at(utc(2026, 1, 14, 23, 30), None, nine, BERLIN),
            utc(2026, 1, 15, 8, 0)
        );
    }

    #[test]
    fn next_at_across_dst() {
        // a time in the spring gap: the first instant after it
        let t = clock("02:30");
        assert_eq!(
            next_at(utc(2026, 3, 8, 0, 0), None, t, NEW_YORK),
            utc(2026, 3, 8, 7, 0)
        );
        assert_eq!(
            next_at(utc(2026, 3, 29, 0, 0), None, t, BERLIN),
            utc(2026, 3, 29, 1, 0)
        );
        // a repeated time: its first occurrence only
        let t = clock("01:30");
        assert_eq!(
            next_at(utc(2026, 11, 1, 0, 0), None, t, NEW_YORK),
            utc(2026, 11, 1, 5, 30)
        );
        assert_eq!(
            next_at(utc(2026, 11, 1, 5, 30), None, t, NEW_YORK),
            utc(2026, 11, 2, 6, 30)
        );
        let t = clock("02:30");
        assert_eq!(
            next_at(utc(2026, 10, 25, 0, 0), None, t, BERLIN),
            utc(2026, 10, 25, 0, 30)
        );
        assert_eq!(
            next_at(utc(2026, 10, 25, 0, 30), None, t, BERLIN),
            utc(2026, 10, 26, 1, 30)
        );
        // Sunday 09:00 on the change days keeps local 09:00
        let (sun, nine) = (Some(Weekday::Sun), clock("09:00"));
        assert_eq!(
            next_at(utc(2026, 3, 2, 12, 0), sun, nine, NEW_YORK),
            utc(2026, 3, 8, 13, 0)
        );
        assert_eq!(
            next_at(utc(2026, 10, 20, 12, 0), sun, nine, BERLIN),
            utc(2026, 10, 25, 8, 0)
        );
    }

    #[test]
    fn local_times_resolve_to_the_first_instant_the_clock_reaches() {
        let naive = |d: u32, h: u32, m: u32| {
            NaiveDate::from_ymd_opt(2026, 3, d)
                .unwrap()
                .and_hms_opt(h, m, 0)
                .unwrap()
        };
        assert_eq!(resolve(naive(8, 1, 59), NEW_YORK), utc(2026, 3, 8, 6, 59));
        assert_eq!(resolve(naive(8, 2, 0), NEW_YORK), utc(2026, 3, 8, 7, 0));
        assert_eq!(resolve(naive(8, 2, 59), NEW_YORK), utc(2026, 3, 8, 7, 0));
        assert_eq!(resolve(naive(8, 3, 0), NEW_YORK), utc(2026, 3, 8, 7, 0));
        assert_eq!(resolve(naive(8, 3, 1), NEW_YORK), utc(2026, 3, 8, 7, 1));
        // a zone whose gap is at midnight: Havana springs forward 00:00 -> 01:00 (2026-03-08)
        let havana = Tz::America__Havana;
        assert_eq!(resolve(naive(8, 0, 0), havana), utc(2026, 3, 8, 5, 0));
        assert_eq!(resolve(naive(8, 0, 30), havana), utc(2026, 3, 8, 5, 0));
        assert_eq!(resolve(naive(8, 1, 0), havana), utc(2026, 3, 8, 5, 0));
    }

    #[test]
    fn resolve_matches_a_minute_scan_on_transition_days() {
        let zones = [
            Tz::Europe__Berlin,
            Tz::America__New_York,
            Tz::America__Havana,
            Tz::America__Santiago,
            Tz::Australia__Lord_Howe,
            Tz::Pacific__Chatham,
            Tz::Pacific__Apia,
            Tz::Asia__Tehran,
            Tz::Africa__Casablanca,
        ];
        // every quarter hour of the days around each offset change, against the definition:
        // the first minute at which the local clock reads the time or later
        let mut checked = 0;
        for tz in zones {
            for year in [2011, 2026] {
                let mut date = NaiveDate::from_ymd_opt(year, 1, 1).unwrap();
                while date.year() == year {
                    let noon = |d: NaiveDate| resolve(d.and_hms_opt(12, 0, 0).unwrap(), tz);
                    let a = tz.offset_from_utc_datetime(&noon(date).naive_utc()).fix();
                    let next = date.succ_opt().unwrap();
                    let b = tz.offset_from_utc_datetime(&noon(next).naive_utc()).fix();
                    if a != b {
                        for d in [date, next] {
                            for q in 0..96 {
                                let x = d.and_hms_opt(q / 4, (q % 4) * 15, 0).unwrap();
                                let mut t = x.and_utc() - TimeDelta::hours(16);
                                while local_time(t, tz).unwrap() < x {
                                    t += TimeDelta::minutes(1);
                                }
                                assert_eq!(resolve(x, tz), t, "{tz} {x}");
                                checked += 1;
                            }
                        }
                    }
                    date = next;
                }
            }
        }
        assert!(checked > 1000, "{checked}");
    }

    // --- zones ---------------------------------------------------------------------------

    #[test]
    fn countries_with_one_zone() {
        assert_eq!(zone_for_country("FR"), Some(Tz::Europe__Paris));
        assert_eq!(zone_for_country("fr"), Some(Tz::Europe__Paris));
        assert_eq!(zone_for_country(" Fr "), Some(Tz::Europe__Paris));
        assert_eq!(zone_for_country("JP"), Some(Tz::Asia__Tokyo));
        assert_eq!(zone_for_country("GB"), Some(Tz::Europe__London));
        assert_eq!(zone_for_country("AD"), Some(Tz::Europe__Andorra));
        assert_eq!(zone_for_country("ZW"), Some(Tz::Africa__Harare));
        // overrides
        assert_eq!(zone_for_country("DE"), Some(Tz::Europe__Berlin));
        assert_eq!(zone_for_country("de"), Some(Tz::Europe__Berlin));
        assert_eq!(zone_for_country("AR"), Some(Tz::America__Argentina__Buenos_Aires));
    }

    #[test]
    fn countries_with_several_clocks_or_unknown_have_no_zone() {
        for code in [
            "US", "us", "ES", "PT", "RU", "BR", "AU", "CA", "MX", "UA", "CL", "NZ", "ID",
        ] {
            assert_eq!(zone_for_country(code), None, "{code}");
        }
        for code in ["", "F", "FRA", "XX", "ZZ", "1A", "É", "F\u{0}"] {
            assert_eq!(zone_for_country(code), None, "{code:?}");
        }
    }

    #[test]
    fn country_table_is_sorted_and_well_formed() {
        let table = super::super::country_zones::COUNTRY_ZONES;
        assert!(table.len() > 200);
        assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(
            table
                .iter()
                .all(|(c, _)| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
        );
        for &(code, tz) in table {
            assert_eq!(zone_for_country(code), Some(tz));
        }
    }

    #[test]
    fn lead_zone_precedence() {
        let campaign = Tz::UTC;
        // the lead's own zone wins
        assert_eq!(
            lead_zone(Some("Asia/Tokyo"), Some("FR"), campaign),
            Tz::Asia__Tokyo
        );
        assert_eq!(
            lead_zone(Some(" America/New_York "), Some("FR"), campaign),
            NEW_YORK
        );
        // an unusable zone falls through to the country
        assert_eq!(
            lead_zone(Some("Mars/Olympus"), Some("FR"), campaign),
            Tz::Europe__Paris
        );
        assert_eq!(lead_zone(Some(""), Some("fr"), campaign), Tz::Europe__Paris);
        assert_eq!(lead_zone(None, Some("DE"), campaign), BERLIN);
        // a country with several zones falls through to the campaign
        assert_eq!(lead_zone(None, Some("US"), BERLIN), BERLIN);
        assert_eq!(lead_zone(Some("nope"), Some("nope"), BERLIN), BERLIN);
        assert_eq!(lead_zone(None, None, NEW_YORK), NEW_YORK);
    }

    // --- variants ------------------------------------------------------------------------

    /// Deterministic stand-ins for random UUIDs (SplitMix64).
    fn uuids(n: usize) -> Vec<Uuid> {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        (0..n).map(|_| Uuid::from_u64_pair(next(), next())).collect()
    }

    #[test]
    fn variants_are_spread_evenly() {
        let campaign = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
        let leads = uuids(10_000);
        for variants in [2u32, 3] {
            let mut counts = vec![0u32; variants as usize];
            for &lead in &leads {
                let v = variant_for(lead, campaign, 1, variants);
                counts[v as usize] += 1;
            }
            let expected = 10_000.0 / f64::from(variants);
            for (i, &count) in counts.iter().enumerate() {
                let off = (f64::from(count) - expected).abs() / expected;
                assert!(off <= 0.05, "{variants} variants: bucket {i} has {count}");
            }
        }
    }

    #[test]
    fn variants_are_stable() {
        // computed once from the definition (SHA-256 of lead ‖ campaign ‖ step big-endian);
        // a change here moves leads between variants of running campaigns
        let nil = Uuid::nil();
        assert_eq!(variant_for(nil, nil, 0, 1000), 886);
        let lead = Uuid::from_u128(0x0192_5a5e_1c2b_7d3e_8f40_1234_5678_9abc);
        let campaign = Uuid::from_u128(0x0192_5a5e_0000_7000_8000_0000_0000_0001);
        assert_eq!(variant_for(lead, campaign, 0, 2), 0);
        assert_eq!(variant_for(lead, campaign, 1, 3), 1);
        assert_eq!(variant_for(lead, campaign, 2, 1000), 605);
        assert_eq!(variant_for(lead, campaign, 7, 1000), 851);
    }

    #[test]
    fn variants_depend_on_every_input_and_degenerate_counts_give_zero() {
        let lead = Uuid::from_u128(1);
        let campaign = Uuid::from_u128(2);
        assert_eq!(variant_for(lead, campaign, 3, 0), 0);
        assert_eq!(variant_for(lead, campaign, 3, 1), 0);
        let base = variant_for(lead, campaign, 3, u32::MAX);
        assert_ne!(variant_for(campaign, lead, 3, u32::MAX), base);
        assert_ne!(variant_for(lead, campaign, 4, u32::MAX), base);
        assert!(variant_for(lead, campaign, 3, 7) < 7);
    }
}
