//! Enrichment persistence: resolved records, provider settings, usage counters for quotas.
//! Enrichment events go to the log (`store::events`) in the same transaction as the records
//! they describe.
//!
//! Quotas are enforced here, not in memory: `reserve_usage` is one conditional upsert per
//! period in one transaction, so several instances sharing a database cannot overspend.
//!
//! **Enrichment records** are stored per (lead, group) with the merged values, each source's
//! provenance, and the providers already asked (`tried`), so a later query that selects more
//! fields continues the waterfall after them instead of paying twice; a record also carries a
//! fingerprint of the lead's identifying values, so changing an email makes it stale. Misses are
//! records too, with their own TTL. Each fetch writes `lead.enriched` events (ids and field names,
//! no personal values) to the `events` table in the same transaction.

use super::dialect::Row;
use super::events::append_events;
use super::{Store, StoreError, StoreResult};
use crate::domain::{
    EnrichmentRecord, EnrichmentSettings, Event, Fields, Group, LeadId, NewEvent, Policy, ProviderConfig,
    ProviderKind, SealedKey, Source, Timestamp, Usage, UsagePeriod, WorkspaceId,
};

fn decode_json<T: serde::de::DeserializeOwned>(raw: &str) -> StoreResult<T> {
    serde_json::from_str(raw).map_err(|e| StoreError::corrupt(e.to_string()))
}

fn record_from_row(r: &Row) -> StoreResult<EnrichmentRecord> {
    let group: String = r.get(1)?;
    Ok(EnrichmentRecord {
        lead_id: LeadId::from_uuid(r.get(0)?),
        group: Group::parse(&group).ok_or_else(|| StoreError::corrupt(format!("unknown group {group}")))?,
        fields: decode_json::<Fields>(&r.get::<String>(2)?)?,
        sources: decode_json::<Vec<Source>>(&r.get::<String>(3)?)?,
        tried: decode_json::<Vec<String>>(&r.get::<String>(4)?)?,
        subject_hash: r.get(5)?,
        fetched_at: r.get(6)?,
        expires_at: r.get(7)?,
    })
}

fn config_from_row(r: &Row) -> StoreResult<Option<ProviderConfig>> {
    let name: String = r.get(0)?;
    let Some(provider) = ProviderKind::parse(&name) else {
        // a provider a newer version added: not ours to show
        return Ok(None);
    };
    let sealed: Option<String> = r.get(2)?;
    let last4: Option<String> = r.get(3)?;
    let options: String = r.get(8)?;
    let cap =
        |i: usize| -> StoreResult<Option<u64>> { Ok(r.get::<Option<i64>>(i)?.map(|v| v.max(0) as u64)) };
    Ok(Some(ProviderConfig {
        provider,
        enabled: r.get::<i64>(1)? != 0,
        key: sealed.map(|sealed| SealedKey {
            sealed,
            last4: last4.unwrap_or_default(),
        }),
        daily_credit_cap: cap(4)?,
        monthly_credit_cap: cap(5)?,
        rate_per_second: cap(6)?.map(|v| v.min(u64::from(u32::MAX)) as u32),
        timeout_ms: cap(7)?.map(|v| v.min(u64::from(u32::MAX)) as u32),
        options: decode_json(&options)?,
        disabled_reason: r.get(9)?,
        updated_at: r.get(10)?,
    }))
}

impl Store {
    pub async fn enrichment_records(
        &self,
        ws: WorkspaceId,
        leads: &[LeadId],
        groups: &[Group],
    ) -> StoreResult<Vec<EnrichmentRecord>> {
        if leads.is_empty() || groups.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = self.sql(
            "SELECT lead_id, grp, fields, sources, tried, subject_hash, fetched_at, expires_at \
             FROM enrichment_records WHERE workspace_id = ",
        );
        qb.bind(ws);
        qb.push(" AND lead_id IN (");
        for (i, id) in leads.iter().enumerate() {
            if i > 0 {
                qb.push(", ");
            }
            qb.bind(*id);
        }
        qb.push(") AND grp IN (");
        for (i, g) in groups.iter().enumerate() {
            if i > 0 {
                qb.push(", ");
            }
            qb.bind(g.as_str().to_owned());
        }
        qb.push(")");
        let rows = self.fetch_all(qb).await?;
        rows.iter().map(record_from_row).collect()
    }

    pub async fn save_enrichment(
        &self,
        ws: WorkspaceId,
        records: &[EnrichmentRecord],
        events: &[NewEvent],
    ) -> StoreResult<Vec<Event>> {
        if records.is_empty() && events.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        for chunk in records.chunks(200) {
            let mut qb = self.sql(
                "INSERT INTO enrichment_records (workspace_id, lead_id, grp, fields, sources, \
                 tried, subject_hash, fetched_at, expires_at) ",
            );
            // Only leads that still exist: a lead deleted mid-flight takes its answers
            // with it instead of failing the whole batch on the foreign key.
            for (i, r) in chunk.iter().enumerate() {
                qb.push(if i == 0 { "SELECT " } else { " UNION ALL SELECT " });
                qb.bind(ws);
                qb.push(", l.id, ");
                qb.bind(r.group.as_str().to_owned());
                qb.push(", ");
                qb.bind(serde_json::to_string(&r.fields).unwrap_or_else(|_| "{}".into()));
                qb.push(", ");
                qb.bind(serde_json::to_string(&r.sources).unwrap_or_else(|_| "[]".into()));
                qb.push(", ");
                qb.bind(serde_json::to_string(&r.tried).unwrap_or_else(|_| "[]".into()));
                qb.push(", ");
                qb.bind(r.subject_hash.clone());
                qb.push(", ");
                qb.bind(r.fetched_at);
                qb.push(", ");
                qb.bind(r.expires_at);
                qb.push(" FROM leads l WHERE l.id = ");
                qb.bind(r.lead_id);
                qb.push(" AND l.workspace_id = ");
                qb.bind(ws);
            }
            qb.push(
                " ON CONFLICT (workspace_id, lead_id, grp) DO UPDATE SET fields = excluded.fields, \
                 sources = excluded.sources, tried = excluded.tried, \
                 subject_hash = excluded.subject_hash, fetched_at = excluded.fetched_at, \
                 expires_at = excluded.expires_at",
            );
            tx.execute(qb).await?;
        }
        let events = append_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(events)
    }

    pub async fn enrichment_settings(&self, ws: WorkspaceId) -> StoreResult<Option<EnrichmentSettings>> {
        let mut qb =
            self.sql("SELECT default_policy, waterfalls FROM enrichment_settings WHERE workspace_id = ");
        qb.bind(ws);
        let row = self.fetch_optional(qb).await?;
        row.map(|r| -> StoreResult<EnrichmentSettings> {
            let policy: String = r.get(0)?;
            let waterfalls: String = r.get(1)?;
            Ok(EnrichmentSettings {
                default_policy: Policy::parse(&policy).unwrap_or_default(),
                waterfalls: EnrichmentSettings::parse_waterfalls(&waterfalls),
            })
        })
        .transpose()
    }

    pub async fn save_enrichment_settings(
        &self,
        ws: WorkspaceId,
        settings: &EnrichmentSettings,
        at: Timestamp,
    ) -> StoreResult<()> {
        let mut qb = self.sql(
            "INSERT INTO enrichment_settings (workspace_id, default_policy, waterfalls, updated_at) VALUES (",
        );
        qb.bind(ws);
        qb.push(", ");
        qb.bind(settings.default_policy.as_str().to_owned());
        qb.push(", ");
        qb.bind(settings.waterfalls_json());
        qb.push(", ");
        qb.bind(at);
        qb.push(
            ") ON CONFLICT (workspace_id) DO UPDATE SET default_policy = excluded.default_policy, \
             waterfalls = excluded.waterfalls, updated_at = excluded.updated_at",
        );
        self.execute(qb).await.map(drop)
    }

    pub async fn provider_configs(&self, ws: WorkspaceId) -> StoreResult<Vec<ProviderConfig>> {
        let mut qb = self.sql(
            "SELECT provider, enabled, api_key_sealed, api_key_last4, daily_credit_cap, \
             monthly_credit_cap, rate_per_second, timeout_ms, options, disabled_reason, updated_at \
             FROM provider_configs WHERE workspace_id = ",
        );
        qb.bind(ws);
        qb.push(" ORDER BY provider");
        let rows = self.fetch_all(qb).await?;
        let mut configs = Vec::new();
        for r in &rows {
            if let Some(c) = config_from_row(r)? {
                configs.push(c);
            }
        }
        Ok(configs)
    }

    pub async fn save_provider_config(&self, ws: WorkspaceId, c: &ProviderConfig) -> StoreResult<()> {
        let mut qb = self.sql(
            "INSERT INTO provider_configs (workspace_id, provider, enabled, api_key_sealed, \
             api_key_last4, daily_credit_cap, monthly_credit_cap, rate_per_second, timeout_ms, \
             options, disabled_reason, updated_at) VALUES (",
        );
        qb.bind(ws);
        qb.push(", ");
        qb.bind(c.provider.as_str().to_owned());
        qb.push(", ");
        qb.bind(i64::from(c.enabled));
        qb.push(", ");
        qb.bind(c.key.as_ref().map(|k| k.sealed.clone()));
        qb.push(", ");
        qb.bind(c.key.as_ref().map(|k| k.last4.clone()));
        for cap in [
            c.daily_credit_cap,
            c.monthly_credit_cap,
            c.rate_per_second.map(u64::from),
            c.timeout_ms.map(u64::from),
        ] {
            qb.push(", ");
            qb.bind(cap.map(|v| v.min(i64::MAX as u64) as i64));
        }
        qb.push(", ");
        qb.bind(c.options.to_string());
        qb.push(", ");
        qb.bind(c.disabled_reason.clone());
        qb.push(", ");
        qb.bind(c.updated_at);
        qb.push(
            ") ON CONFLICT (workspace_id, provider) DO UPDATE SET enabled = excluded.enabled, \
             api_key_sealed = excluded.api_key_sealed, api_key_last4 = excluded.api_key_last4, \
             daily_credit_cap = excluded.daily_credit_cap, \
             monthly_credit_cap = excluded.monthly_credit_cap, \
             rate_per_second = excluded.rate_per_second, timeout_ms = excluded.timeout_ms, \
             options = excluded.options, disabled_reason = excluded.disabled_reason, \
             updated_at = excluded.updated_at",
        );
        self.execute(qb).await.map(drop)
    }

    pub async fn disable_provider(
        &self,
        ws: WorkspaceId,
        provider: ProviderKind,
        reason: &str,
        at: Timestamp,
    ) -> StoreResult<()> {
        let mut qb = self.sql("UPDATE provider_configs SET enabled = 0, disabled_reason = ");
        qb.bind(reason.to_owned());
        qb.push(", updated_at = ");
        qb.bind(at);
        qb.push(" WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND provider = ");
        qb.bind(provider.as_str().to_owned());
        self.execute(qb).await.map(drop)
    }

    pub async fn count_sealed_keys(&self) -> StoreResult<u64> {
        let row = self
            .fetch_one(self.sql(
                "SELECT (SELECT COUNT(*) FROM provider_configs WHERE api_key_sealed IS NOT NULL) \
             + (SELECT COUNT(*) FROM webhook_endpoints) + (SELECT COUNT(*) FROM crm_connections)",
            ))
            .await?;
        Ok(row.get::<i64>(0)?.max(0) as u64)
    }

    pub async fn reserve_usage(
        &self,
        ws: WorkspaceId,
        provider: ProviderKind,
        at: Timestamp,
        charges: &[(UsagePeriod, u64, u64)],
    ) -> StoreResult<Option<UsagePeriod>> {
        if charges.is_empty() {
            return Ok(None);
        }
        if let Some((period, _, _)) = charges.iter().find(|(_, cap, amount)| amount > cap) {
            return Ok(Some(*period));
        }
        let mut tx = self.begin().await?;
        for (period, cap, amount) in charges {
            let mut qb = self.sql(
                "INSERT INTO provider_usage (workspace_id, provider, period, period_start, used) VALUES (",
            );
            qb.bind(ws);
            qb.push(", ");
            qb.bind(provider.as_str().to_owned());
            qb.push(", ");
            qb.bind(period.as_str().to_owned());
            qb.push(", ");
            qb.bind(period.start(at));
            qb.push(", ");
            qb.bind(*amount as i64);
            // A new period starts from zero; within one, the row only moves while
            // it stays under the cap. The row lock makes this atomic across
            // instances.
            qb.push(
                ") ON CONFLICT (workspace_id, provider, period) DO UPDATE SET \
                 used = CASE WHEN provider_usage.period_start = excluded.period_start \
                 THEN provider_usage.used + excluded.used ELSE excluded.used END, \
                 period_start = excluded.period_start \
                 WHERE provider_usage.period_start <> excluded.period_start \
                 OR provider_usage.used + excluded.used <= ",
            );
            qb.bind((*cap).min(i64::MAX as u64) as i64);
            qb.push(" RETURNING used");
            let row = tx.fetch_optional(qb).await?;
            if row.is_none() {
                tx.rollback().await?;
                return Ok(Some(*period));
            }
        }
        tx.commit().await?;
        Ok(None)
    }

    pub async fn release_usage(
        &self,
        ws: WorkspaceId,
        provider: ProviderKind,
        reserved_at: Timestamp,
        releases: &[(UsagePeriod, u64)],
    ) -> StoreResult<()> {
        for (period, amount) in releases.iter().filter(|(_, a)| *a > 0) {
            let mut qb = self.sql("UPDATE provider_usage SET used = CASE WHEN used > ");
            qb.bind(*amount as i64);
            qb.push(" THEN used - ");
            qb.bind(*amount as i64);
            qb.push(" ELSE 0 END WHERE workspace_id = ");
            qb.bind(ws);
            qb.push(" AND provider = ");
            qb.bind(provider.as_str().to_owned());
            qb.push(" AND period = ");
            qb.bind(period.as_str().to_owned());
            // a period that rolled over meanwhile owes nothing back
            qb.push(" AND period_start = ");
            qb.bind(period.start(reserved_at));
            self.execute(qb).await?;
        }
        Ok(())
    }

    pub async fn provider_usage(&self, ws: WorkspaceId) -> StoreResult<Vec<Usage>> {
        let mut qb =
            self.sql("SELECT provider, period, period_start, used FROM provider_usage WHERE workspace_id = ");
        qb.bind(ws);
        let rows = self.fetch_all(qb).await?;
        let mut out = Vec::new();
        for r in &rows {
            let provider: String = r.get(0)?;
            let period: String = r.get(1)?;
            if let (Some(provider), Some(period)) =
                (ProviderKind::parse(&provider), UsagePeriod::parse(&period))
            {
                out.push(Usage {
                    provider,
                    period,
                    period_start: r.get(2)?,
                    used: r.get::<i64>(3)?.max(0) as u64,
                });
            }
        }
        Ok(out)
    }
}
