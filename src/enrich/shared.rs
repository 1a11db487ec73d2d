//! What the pipeline shares with other instances through Redis (`cluster::Redis`): the second
//! level of the enrichment cache and the claims of cross-instance single flight.
//!
//! Records are stored in the database already, so every instance can read what another
//! fetched; what the database cannot do cheaply is tell an instance that another one is
//! fetching the same lead right now. Two instances that miss at once would both pay the
//! provider. A claim (`SET NX PX` on `enrich:flight:<ws>:<lead>:<group>`) says "I am asking";
//! the others wait for the answer at `enrich:<ws>:<lead>:<group>` instead of asking too.
//!
//! A value is `lg-enrich/1` and a newline, then the record as JSON (fields, sources and tried
//! in the encoding the store uses). Anything else at a key — another version, another lead or
//! group, garbage — is ignored like a miss and overwritten by the next fetch, never served.
//! Each entry lives until the record's own `expires_at`, so misses go after their miss TTL as
//! they do in process. Redis is never load-bearing: every method answers `None` (or does
//! nothing) when it is unavailable, and the caller goes on as if there were no Redis.

use crate::cluster::{Redis, Script};
use crate::domain::{EnrichmentRecord, Fields, Group, LeadId, Source, Timestamp, WorkspaceId, now};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// The version tag every value starts with.
const TAG: &[u8] = b"lg-enrich/1\n";

/// Deletes each claim in `KEYS` that still holds this flight's token (`ARGV[1]`), so a claim
/// that expired and was taken by another instance is left to it.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "for _, k in ipairs(KEYS) do \
           if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end \
         end \
         return 0",
    )
});

/// The record as it travels; the domain type stays free of a wire format.
#[derive(serde::Serialize, serde::Deserialize)]
struct Wire {
    lead: LeadId,
    group: String,
    fields: Fields,
    sources: Vec<Source>,
    tried: Vec<String>,
    subject: String,
    fetched_at: Timestamp,
    expires_at: Timestamp,
}

/// The record as a tagged value.
pub(crate) fn encode(record: &EnrichmentRecord) -> Vec<u8> {
    let wire = Wire {
        lead: record.lead_id,
        group: record.group.as_str().to_owned(),
        fields: record.fields.clone(),
        sources: record.sources.clone(),
        tried: record.tried.clone(),
        subject: record.subject_hash.clone(),
        fetched_at: record.fetched_at,
        expires_at: record.expires_at,
    };
    let mut out = TAG.to_vec();
    // a map of strings and plain values: serialising cannot fail
    out.extend(serde_json::to_vec(&wire).unwrap_or_default());
    out
}

/// The record in `raw` if it is one of ours, for `lead` and `group`.
pub(crate) fn decode(raw: &[u8], lead: LeadId, group: Group) -> Option<EnrichmentRecord> {
    let body = raw.strip_prefix(TAG)?;
    let wire: Wire = serde_json::from_slice(body).ok()?;
    if wire.lead != lead || Group::parse(&wire.group) != Some(group) {
        return None;
    }
    Some(EnrichmentRecord {
        lead_id: wire.lead,
        group,
        fields: wire.fields,
        sources: wire.sources,
        tried: wire.tried,
        subject_hash: wire.subject,
        fetched_at: wire.fetched_at,
        expires_at: wire.expires_at,
    })
}

/// The L2 cache and flight claims on one Redis.
#[derive(Clone, Debug)]
pub(crate) struct Shared {
    redis: Redis,
}

/// What a poll found for one lead another instance is fetching.
pub(crate) struct Polled {
    pub record: Option<EnrichmentRecord>,
    /// Whether the other instance's claim is still there.
    pub claimed: bool,
}

impl Shared {
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }

    fn record_key(&self, ws: WorkspaceId, lead: LeadId, group: Group) -> String {
        self.redis.key(&format!("enrich:{ws}:{lead}:{}", group.as_str()))
    }

    fn flight_key(&self, ws: WorkspaceId, lead: LeadId, group: Group) -> String {
        self.redis
            .key(&format!("enrich:flight:{ws}:{lead}:{}", group.as_str()))
    }

    /// The entries for `leads`, in order, in one round trip; `None` when Redis is unavailable.
    /// An entry that is not a record of ours for that lead is `None` too.
    pub async fn read(
        &self,
        ws: WorkspaceId,
        leads: &[LeadId],
        group: Group,
    ) -> Option<Vec<Option<EnrichmentRecord>>> {
        let keys: Vec<String> = leads.iter().map(|&l| self.record_key(ws, l, group)).collect();
        let raw = self.redis.get_many(&keys).await.ok()?;
        Some(
            leads
                .iter()
                .zip(raw)
                .map(|(&lead, raw)| raw.and_then(|raw| self.decoded(&raw, lead, group)))
                .collect(),
        )
    }

    fn decoded(&self, raw: &[u8], lead: LeadId, group: Group) -> Option<EnrichmentRecord> {
        let record = decode(raw, lead, group);
        if record.is_none() {
            tracing::debug!(lead = %lead, group = group.as_str(), "ignoring a foreign value in the shared enrichment cache");
        }
        record
    }

    /// Writes `records` until each one's `expires_at`, in one round trip; best effort.
    pub async fn write(&self, ws: WorkspaceId, records: &[Arc<EnrichmentRecord>]) {
        let at = now();
        let entries: Vec<(String, Vec<u8>, Duration)> = records
            .iter()
            .filter_map(|r| {
                let ttl = (r.expires_at - at).to_std().ok().filter(|t| !t.is_zero())?;
                Some((self.record_key(ws, r.lead_id, r.group), encode(r), ttl))
            })
            .collect();
        if let Err(e) = self.redis.set_many(&entries).await {
            tracing::debug!(error = %e, "enrichment records not shared");
        }
    }

    /// Claims the flight of each of `leads` for `ttl` with `token`: whether each claim is
    /// ours, in order; `None` when Redis is unavailable.
    pub async fn claim(
        &self,
        ws: WorkspaceId,
        leads: &[LeadId],
        group: Group,
        token: &str,
        ttl: Duration,
    ) -> Option<Vec<bool>> {
        let keys: Vec<String> = leads.iter().map(|&l| self.flight_key(ws, l, group)).collect();
        self.redis.set_new_many(&keys, token.as_bytes(), ttl).await.ok()
    }

    /// Gives up the claims on `leads` that still hold `token`; best effort (they expire).
    pub async fn release(&self, ws: WorkspaceId, leads: &[LeadId], group: Group, token: &str) {
        if leads.is_empty() {
            return;
        }
        let keys: Vec<String> = leads.iter().map(|&l| self.flight_key(ws, l, group)).collect();
        if let Err(e) = self.redis.script::<i64>(&RELEASE, &keys, &[token]).await {
            tracing::debug!(error = %e, "flight claims left to expire");
        }
    }

    /// The entries and claims of `leads`, in order, in one round trip; `None` when Redis is
    /// unavailable.
    pub async fn poll(&self, ws: WorkspaceId, leads: &[LeadId], group: Group) -> Option<Vec<Polled>> {
        let mut keys: Vec<String> = leads.iter().map(|&l| self.record_key(ws, l, group)).collect();
        keys.extend(leads.iter().map(|&l| self.flight_key(ws, l, group)));
        let mut raw = self.redis.get_many(&keys).await.ok()?;
        let claims = raw.split_off(leads.len());
        Some(
            leads
                .iter()
                .zip(raw.into_iter().zip(claims))
                .map(|(&lead, (record, claim))| Polled {
                    record: record.and_then(|raw| self.decoded(&raw, lead, group)),
                    claimed: claim.is_some(),
                })
                .collect(),
        )
    }

    /// Deletes every group's entry of `lead` (after it was erased); best effort.
    pub async fn forget(&self, ws: WorkspaceId, lead: LeadId) {
        let keys: Vec<String> = Group::ALL.iter().map(|&g| self.record_key(ws, lead, g)).collect();
        if let Err(e) = self.redis.delete(&keys).await {
            tracing::warn!(error = %e, lead = %lead, "cannot delete shared enrichment entries; they expire with their records");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CompanyData, GroupData};

    fn record() -> EnrichmentRecord {
        let at = now();
        let mut r = EnrichmentRecord::empty(LeadId::new(), Group::Company, "fp".into(), at);
        let fields = GroupData::Company(CompanyData {
            name: Some("Acme".into()),
            ..Default::default()
        })
        .into_fields();
        let source = Source {
            provider: "pdl".into(),
            fetched_at: at,
            expires_at: at + chrono::Duration::hours(1),
            confidence: 0.75,
            credits: 1,
            fields: vec![],
        };
        r.merge("pdl", fields, source);
        r.note_miss("apollo");
        r
    }

    #[test]
    fn a_record_round_trips() {
        let r = record();
        assert_eq!(decode(&encode(&r), r.lead_id, r.group), Some(r));
    }

    #[test]
    fn foreign_values_are_not_records() {
        let r = record();
        let good = encode(&r);
        assert_eq!(decode(&good, LeadId::new(), r.group), None, "another lead");
        assert_eq!(decode(&good, r.lead_id, Group::Person), None, "another group");
        assert_eq!(decode(b"garbage", r.lead_id, r.group), None);
        assert_eq!(decode(&good[TAG.len()..], r.lead_id, r.group), None, "no tag");
        let mut other = b"lg-enrich/2\n".to_vec();
        other.extend_from_slice(&good[TAG.len()..]);
        assert_eq!(decode(&other, r.lead_id, r.group), None, "another version");
        assert_eq!(
            decode(&good[..good.len() - 3], r.lead_id, r.group),
            None,
            "cut short"
        );
    }
}
