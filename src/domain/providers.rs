//! Provider settings as a workspace configures them: which providers, in what order per group,
//! their quotas and rate, and the sealed API key. Plus the usage periods quotas count in.

use super::enrichment::{Group, Policy};
use super::lead::Timestamp;
use chrono::{Datelike, TimeZone, Timelike, Utc};
use std::collections::BTreeMap;
use std::fmt;

/// The one list of providers: each line is a `ProviderKind` variant and its id. The id is
/// stored, shown in provenance, metrics and logs, is the provider's key in the `provider_urls`
/// setting, and names the adapter's folder under `src/enrich/providers/`.
///
/// A new provider is its folder and one line here. Everything else is expanded from this list
/// by the layer that owns it, each passing a macro of its own that receives the lines
/// (`provider_list!(then)` calls `then! { Variant => id, … }`): `ProviderKind` below, the
/// adapters' modules and `enrich::providers::all`, and the GraphQL `ProviderName`. A doc
/// comment on a line documents the variant in Rust and in the GraphQL schema.
macro_rules! provider_list {
    ($then:ident) => {
        $then! {
            /// Built in: plausible values derived from the lead itself; no key, no network.
            Sandbox => sandbox,
            Hunter => hunter,
            PeopleDataLabs => pdl,
            Apollo => apollo,
            Clearbit => clearbit,
        }
    };
}
pub(crate) use provider_list;

/// `ProviderKind`, its `ALL` and its ids, from the list.
macro_rules! provider_kind {
    ($($(#[$doc:meta])* $variant:ident => $id:ident,)*) => {
        /// The providers leadgate has adapters for.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
        pub enum ProviderKind {
            $($(#[$doc])* $variant,)*
        }

        impl ProviderKind {
            /// Every provider, in the list's order.
            pub const ALL: &[ProviderKind] = &[$(ProviderKind::$variant),*];

            /// The stored id, also used in provenance, metrics, logs and settings.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ProviderKind::$variant => stringify!($id),)*
                }
            }
        }
    };
}
provider_list!(provider_kind);

impl ProviderKind {
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.as_str() == raw)
    }

    /// Whether calls need an API key.
    pub fn needs_key(self) -> bool {
        self != ProviderKind::Sandbox
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API key sealed with the master key: what the store keeps.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedKey {
    /// base64 of nonce || ciphertext.
    pub sealed: String,
    /// The key's last four characters, shown to admins.
    pub last4: String,
}

impl fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedKey(…{})", self.last4)
    }
}

/// One provider's settings in one workspace.
#[derive(Clone, PartialEq, Debug)]
pub struct ProviderConfig {
    pub provider: ProviderKind,
    /// Disabled providers are skipped in every waterfall.
    pub enabled: bool,
    pub key: Option<SealedKey>,
    /// Credits per UTC day; `None` is unlimited.
    pub daily_credit_cap: Option<u64>,
    /// Credits per UTC calendar month; `None` is unlimited.
    pub monthly_credit_cap: Option<u64>,
    /// Calls per second; `None` is unlimited.
    pub rate_per_second: Option<u32>,
    /// Per-call timeout; `None` uses the server default.
    pub timeout_ms: Option<u32>,
    /// Provider-specific options (the sandbox's latency, miss rate and price).
    pub options: serde_json::Value,
    /// Why the provider was switched off automatically (e.g. a rejected key), if it was.
    pub disabled_reason: Option<String>,
    pub updated_at: Timestamp,
}

impl ProviderConfig {
    /// A provider's settings before an admin changed anything: enabled, no key, no caps.
    pub fn new(provider: ProviderKind, at: Timestamp) -> Self {
        Self {
            provider,
            enabled: true,
            key: None,
            daily_credit_cap: None,
            monthly_credit_cap: None,
            rate_per_second: None,
            timeout_ms: None,
            options: serde_json::Value::Null,
            disabled_reason: None,
            updated_at: at,
        }
    }

    /// The caps that apply, with the amount each period counts per call.
    pub fn limits(&self) -> Vec<(UsagePeriod, u64)> {
        let mut limits = Vec::new();
        if let Some(rate) = self.rate_per_second {
            limits.push((UsagePeriod::Second, u64::from(rate)));
        }
        if let Some(cap) = self.daily_credit_cap {
            limits.push((UsagePeriod::Day, cap));
        }
        if let Some(cap) = self.monthly_credit_cap {
            limits.push((UsagePeriod::Month, cap));
        }
        limits
    }
}

/// A workspace's enrichment settings.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct EnrichmentSettings {
    /// Used when a query does not pass `policy`.
    pub default_policy: Policy,
    /// The providers asked for each group, in order.
    pub waterfalls: BTreeMap<Group, Vec<ProviderKind>>,
}

impl EnrichmentSettings {
    pub fn waterfall(&self, group: Group) -> &[ProviderKind] {
        self.waterfalls.get(&group).map_or(&[], Vec::as_slice)
    }

    /// The waterfalls as stored: `{"person": ["sandbox"], …}`.
    pub fn waterfalls_json(&self) -> String {
        let map: BTreeMap<&str, Vec<&str>> = self
            .waterfalls
            .iter()
            .map(|(g, ps)| (g.as_str(), ps.iter().map(|p| p.as_str()).collect()))
            .collect();
        serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
    }

    /// Reads stored waterfalls, skipping names this version does not know.
    pub fn parse_waterfalls(raw: &str) -> BTreeMap<Group, Vec<ProviderKind>> {
        let map: BTreeMap<String, Vec<String>> = serde_json::from_str(raw).unwrap_or_default();
        map.into_iter()
            .filter_map(|(g, ps)| {
                let group = Group::parse(&g)?;
                Some((group, ps.iter().filter_map(|p| ProviderKind::parse(p)).collect()))
            })
            .collect()
    }
}

/// The periods quotas and rates are counted in (UTC).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum UsagePeriod {
    Second,
    Day,
    Month,
}

impl UsagePeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            UsagePeriod::Second => "second",
            UsagePeriod::Day => "day",
            UsagePeriod::Month => "month",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [UsagePeriod::Second, UsagePeriod::Day, UsagePeriod::Month]
            .into_iter()
            .find(|p| p.as_str() == raw)
    }

    /// The start of the period `at` falls in.
    pub fn start(self, at: Timestamp) -> Timestamp {
        match self {
            UsagePeriod::Second => at.with_nanosecond(0).unwrap_or(at),
            UsagePeriod::Day => Utc
                .with_ymd_and_hms(at.year(), at.month(), at.day(), 0, 0, 0)
                .single()
                .unwrap_or(at),
            UsagePeriod::Month => Utc
                .with_ymd_and_hms(at.year(), at.month(), 1, 0, 0, 0)
                .single()
                .unwrap_or(at),
        }
    }

    /// When the period `at` falls in ends (and its counter resets).
    pub fn end(self, at: Timestamp) -> Timestamp {
        let start = self.start(at);
        match self {
            UsagePeriod::Second => start + chrono::Duration::seconds(1),
            UsagePeriod::Day => start + chrono::Duration::days(1),
            UsagePeriod::Month => {
                let (y, m) = if start.month() == 12 {
                    (start.year() + 1, 1)
                } else {
                    (start.year(), start.month() + 1)
                };
                Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or(start)
            }
        }
    }
}

/// What a provider has used in a period.
#[derive(Clone, PartialEq, Debug)]
pub struct Usage {
    pub provider: ProviderKind,
    pub period: UsagePeriod,
    pub period_start: Timestamp,
    pub used: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn periods_start_and_end_on_utc_boundaries() {
        let t = at("2026-12-31T23:59:59.5Z");
        assert_eq!(UsagePeriod::Second.start(t), at("2026-12-31T23:59:59Z"));
        assert_eq!(UsagePeriod::Day.start(t), at("2026-12-31T00:00:00Z"));
        assert_eq!(UsagePeriod::Day.end(t), at("2027-01-01T00:00:00Z"));
        assert_eq!(UsagePeriod::Month.start(t), at("2026-12-01T00:00:00Z"));
        assert_eq!(UsagePeriod::Month.end(t), at("2027-01-01T00:00:00Z"));
        assert_eq!(
            UsagePeriod::Month.end(at("2026-02-10T00:00:00Z")),
            at("2026-03-01T00:00:00Z")
        );
    }

    #[test]
    fn waterfalls_round_trip_and_skip_unknown_names() {
        let mut s = EnrichmentSettings::default();
        s.waterfalls.insert(
            Group::Company,
            vec![ProviderKind::Sandbox, ProviderKind::PeopleDataLabs],
        );
        let json = s.waterfalls_json();
        assert_eq!(EnrichmentSettings::parse_waterfalls(&json), s.waterfalls);
        let parsed = EnrichmentSettings::parse_waterfalls(r#"{"company":["nope","hunter"],"bogus":["pdl"]}"#);
        assert_eq!(parsed.get(&Group::Company).unwrap(), &vec![ProviderKind::Hunter]);
        assert_eq!(parsed.len(), 1);
    }

    #[test]
    fn sealed_keys_do_not_debug_print_the_secret() {
        let k = SealedKey {
            sealed: "c2VjcmV0".into(),
            last4: "abcd".into(),
        };
        assert_eq!(format!("{k:?}"), "SealedKey(…abcd)");
    }

    #[test]
    fn kinds_round_trip() {
        for &k in ProviderKind::ALL {
            assert_eq!(ProviderKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ProviderKind::parse("PDL"), None);
    }
}
