//! Enrichment persistence shared by both backends: resolved records, provider settings, usage
//! counters for quotas, and the event log they append to. Stamped out per backend by
//! `impl_enrichment_repo!`, like `repo::impl_repos!`; a backend provides `read_time`.
//!
//! Quotas are enforced here, not in memory: `reserve_usage` is one conditional upsert per
//! period in one transaction, so several instances sharing a database cannot overspend.

macro_rules! impl_enrichment_repo {
    ($store:ty) => {
        mod enrichment_repo {
            use super::read_time;
            use sqlx::Row as _;
            use $crate::domain::{
                EnrichmentRecord, EnrichmentSettings, Event, Fields, Group, LeadId, NewEvent, Policy,
                ProviderConfig, ProviderKind, SealedKey, Source, Timestamp, Usage, UsagePeriod, WorkspaceId,
            };
            use $crate::store::repo::interpret;
            use $crate::store::sql::SqlBuilder;
            use $crate::store::{EnrichmentRepo, EventRepo, StoreResult};

            type Qb = sqlx::QueryBuilder<super::Db>;
            type Row = <super::Db as sqlx::Database>::Row;
            type Conn = <super::Db as sqlx::Database>::Connection;

            fn decode_json<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, sqlx::Error> {
                serde_json::from_str(raw).map_err(|e| sqlx::Error::Decode(Box::new(e)))
            }

            fn record_from_row(r: &Row) -> Result<EnrichmentRecord, sqlx::Error> {
                let group: String = r.try_get(1)?;
                Ok(EnrichmentRecord {
                    lead_id: LeadId::from_uuid(r.try_get(0)?),
                    group: Group::parse(&group)
                        .ok_or_else(|| sqlx::Error::Decode(format!("unknown group {group}").into()))?,
                    fields: decode_json::<Fields>(&r.try_get::<String, _>(2)?)?,
                    sources: decode_json::<Vec<Source>>(&r.try_get::<String, _>(3)?)?,
                    tried: decode_json::<Vec<String>>(&r.try_get::<String, _>(4)?)?,
                    subject_hash: r.try_get(5)?,
                    fetched_at: read_time(r, 6)?,
                    expires_at: read_time(r, 7)?,
                })
            }

            fn config_from_row(r: &Row) -> Result<Option<ProviderConfig>, sqlx::Error> {
                let name: String = r.try_get(0)?;
                let Some(provider) = ProviderKind::parse(&name) else {
                    // a provider a newer version added: not ours to show
                    return Ok(None);
                };
                let sealed: Option<String> = r.try_get(2)?;
                let last4: Option<String> = r.try_get(3)?;
                let options: String = r.try_get(8)?;
                let cap = |i: usize| -> Result<Option<u64>, sqlx::Error> {
                    Ok(r.try_get::<Option<i64>, _>(i)?.map(|v| v.max(0) as u64))
                };
                Ok(Some(ProviderConfig {
                    provider,
                    enabled: r.try_get::<i64, _>(1)? != 0,
                    key: sealed.map(|sealed| SealedKey {
                        sealed,
                        last4: last4.unwrap_or_default(),
                    }),
                    daily_credit_cap: cap(4)?,
                    monthly_credit_cap: cap(5)?,
                    rate_per_second: cap(6)?.map(|v| v.min(u64::from(u32::MAX)) as u32),
                    timeout_ms: cap(7)?.map(|v| v.min(u64::from(u32::MAX)) as u32),
                    options: decode_json(&options)?,
                    disabled_reason: r.try_get(9)?,
                    updated_at: read_time(r, 10)?,
                }))
            }

            pub(super) async fn append_events(conn: &mut Conn, events: &[NewEvent]) -> StoreResult<()> {
                for chunk in events.chunks(500) {
                    let mut qb = Qb::new(
                        "INSERT INTO events (workspace_id, type, subject_id, payload, created_at) VALUES ",
                    );
                    for (i, e) in chunk.iter().enumerate() {
                        qb.push(if i == 0 { "(" } else { ", (" });
                        qb.push_uuid(e.workspace_id.as_uuid());
                        qb.push(", ");
                        qb.push_text(e.kind.to_owned());
                        qb.push(", ");
                        match e.subject_id {
                            Some(id) => qb.push_uuid(id),
                            None => qb.push_null(),
                        }
                        qb.push(", ");
                        qb.push_text(e.payload.to_string());
                        qb.push(", ");
                        qb.push_time(e.at);
                        qb.push(")");
                    }
                    qb.build().execute(&mut *conn).await.map_err(interpret)?;
                }
                Ok(())
            }

            impl EnrichmentRepo for $store {
                async fn enrichment_records(
                    &self,
                    ws: WorkspaceId,
                    leads: &[LeadId],
                    groups: &[Group],
                ) -> StoreResult<Vec<EnrichmentRecord>> {
                    if leads.is_empty() || groups.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut qb = Qb::new(
                        "SELECT lead_id, grp, fields, sources, tried, subject_hash, fetched_at, expires_at \
                         FROM enrichment_records WHERE workspace_id = ",
                    );
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND lead_id IN (");
                    for (i, id) in leads.iter().enumerate() {
                        if i > 0 {
                            qb.push(", ");
                        }
                        qb.push_uuid(id.as_uuid());
                    }
                    qb.push(") AND grp IN (");
                    for (i, g) in groups.iter().enumerate() {
                        if i > 0 {
                            qb.push(", ");
                        }
                        qb.push_text(g.as_str().to_owned());
                    }
                    qb.push(")");
                    let rows = qb.build().fetch_all(&self.read).await.map_err(interpret)?;
                    rows.iter().map(|r| record_from_row(r).map_err(interpret)).collect()
                }

                async fn save_enrichment(
                    &self,
                    ws: WorkspaceId,
                    records: &[EnrichmentRecord],
                    events: &[NewEvent],
                ) -> StoreResult<()> {
                    if records.is_empty() && events.is_empty() {
                        return Ok(());
                    }
                    let mut tx = self.write.begin().await.map_err(interpret)?;
                    for chunk in records.chunks(200) {
                        let mut qb = Qb::new(
                            "INSERT INTO enrichment_records (workspace_id, lead_id, grp, fields, sources, \
                             tried, subject_hash, fetched_at, expires_at) ",
                        );
                        // Only leads that still exist: a lead deleted mid-flight takes its answers
                        // with it instead of failing the whole batch on the foreign key.
                        for (i, r) in chunk.iter().enumerate() {
                            qb.push(if i == 0 { "SELECT " } else { " UNION ALL SELECT " });
                            qb.push_uuid(ws.as_uuid());
                            qb.push(", l.id, ");
                            qb.push_text(r.group.as_str().to_owned());
                            qb.push(", ");
                            qb.push_text(serde_json::to_string(&r.fields).unwrap_or_else(|_| "{}".into()));
                            qb.push(", ");
                            qb.push_text(serde_json::to_string(&r.sources).unwrap_or_else(|_| "[]".into()));
                            qb.push(", ");
                            qb.push_text(serde_json::to_string(&r.tried).unwrap_or_else(|_| "[]".into()));
                            qb.push(", ");
                            qb.push_text(r.subject_hash.clone());
                            qb.push(", ");
                            qb.push_time(r.fetched_at);
                            qb.push(", ");
                            qb.push_time(r.expires_at);
                            qb.push(" FROM leads l WHERE l.id = ");
                            qb.push_uuid(r.lead_id.as_uuid());
                            qb.push(" AND l.workspace_id = ");
                            qb.push_uuid(ws.as_uuid());
                        }
                        qb.push(
                            " ON CONFLICT (workspace_id, lead_id, grp) DO UPDATE SET fields = excluded.fields, \
                             sources = excluded.sources, tried = excluded.tried, \
                             subject_hash = excluded.subject_hash, fetched_at = excluded.fetched_at, \
                             expires_at = excluded.expires_at",
                        );
                        qb.build().execute(&mut *tx).await.map_err(interpret)?;
                    }
                    append_events(&mut tx, events).await?;
                    tx.commit().await.map_err(interpret)
                }

                async fn enrichment_settings(&self, ws: WorkspaceId) -> StoreResult<Option<EnrichmentSettings>> {
                    let mut qb =
                        Qb::new("SELECT default_policy, waterfalls FROM enrichment_settings WHERE workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    let row = qb.build().fetch_optional(&self.read).await.map_err(interpret)?;
                    row.map(|r| -> StoreResult<EnrichmentSettings> {
                        let policy: String = r.try_get(0).map_err(interpret)?;
                        let waterfalls: String = r.try_get(1).map_err(interpret)?;
                        Ok(EnrichmentSettings {
                            default_policy: Policy::parse(&policy).unwrap_or_default(),
                            waterfalls: EnrichmentSettings::parse_waterfalls(&waterfalls),
                        })
                    })
                    .transpose()
                }

                async fn save_enrichment_settings(
                    &self,
                    ws: WorkspaceId,
                    settings: &EnrichmentSettings,
                    at: Timestamp,
                ) -> StoreResult<()> {
                    let mut qb = Qb::new(
                        "INSERT INTO enrichment_settings (workspace_id, default_policy, waterfalls, updated_at) VALUES (",
                    );
                    qb.push_uuid(ws.as_uuid());
                    qb.push(", ");
                    qb.push_text(settings.default_policy.as_str().to_owned());
                    qb.push(", ");
                    qb.push_text(settings.waterfalls_json());
                    qb.push(", ");
                    qb.push_time(at);
                    qb.push(
                        ") ON CONFLICT (workspace_id) DO UPDATE SET default_policy = excluded.default_policy, \
                         waterfalls = excluded.waterfalls, updated_at = excluded.updated_at",
                    );
                    qb.build().execute(&self.write).await.map(drop).map_err(interpret)
                }

                async fn provider_configs(&self, ws: WorkspaceId) -> StoreResult<Vec<ProviderConfig>> {
                    let mut qb = Qb::new(
                        "SELECT provider, enabled, api_key_sealed, api_key_last4, daily_credit_cap, \
                         monthly_credit_cap, rate_per_second, timeout_ms, options, disabled_reason, updated_at \
                         FROM provider_configs WHERE workspace_id = ",
                    );
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" ORDER BY provider");
                    let rows = qb.build().fetch_all(&self.read).await.map_err(interpret)?;
                    let mut configs = Vec::new();
                    for r in &rows {
                        if let Some(c) = config_from_row(r).map_err(interpret)? {
                            configs.push(c);
                        }
                    }
                    Ok(configs)
                }

                async fn save_provider_config(&self, ws: WorkspaceId, c: &ProviderConfig) -> StoreResult<()> {
                    let mut qb = Qb::new(
                        "INSERT INTO provider_configs (workspace_id, provider, enabled, api_key_sealed, \
                         api_key_last4, daily_credit_cap, monthly_credit_cap, rate_per_second, timeout_ms, \
                         options, disabled_reason, updated_at) VALUES (",
                    );
                    qb.push_uuid(ws.as_uuid());
                    qb.push(", ");
                    qb.push_text(c.provider.as_str().to_owned());
                    qb.push(", ");
                    qb.push_int(i64::from(c.enabled));
                    qb.push(", ");
                    qb.push_opt_text(c.key.as_ref().map(|k| k.sealed.clone()));
                    qb.push(", ");
                    qb.push_opt_text(c.key.as_ref().map(|k| k.last4.clone()));
                    for cap in [
                        c.daily_credit_cap,
                        c.monthly_credit_cap,
                        c.rate_per_second.map(u64::from),
                        c.timeout_ms.map(u64::from),
                    ] {
                        qb.push(", ");
                        match cap {
                            Some(v) => qb.push_int(v.min(i64::MAX as u64) as i64),
                            None => qb.push_null(),
                        }
                    }
                    qb.push(", ");
                    qb.push_text(c.options.to_string());
                    qb.push(", ");
                    qb.push_opt_text(c.disabled_reason.clone());
                    qb.push(", ");
                    qb.push_time(c.updated_at);
                    qb.push(
                        ") ON CONFLICT (workspace_id, provider) DO UPDATE SET enabled = excluded.enabled, \
                         api_key_sealed = excluded.api_key_sealed, api_key_last4 = excluded.api_key_last4, \
                         daily_credit_cap = excluded.daily_credit_cap, \
                         monthly_credit_cap = excluded.monthly_credit_cap, \
                         rate_per_second = excluded.rate_per_second, timeout_ms = excluded.timeout_ms, \
                         options = excluded.options, disabled_reason = excluded.disabled_reason, \
                         updated_at = excluded.updated_at",
                    );
                    qb.build().execute(&self.write).await.map(drop).map_err(interpret)
                }

                async fn disable_provider(
                    &self,
                    ws: WorkspaceId,
                    provider: ProviderKind,
                    reason: &str,
                    at: Timestamp,
                ) -> StoreResult<()> {
                    let mut qb = Qb::new("UPDATE provider_configs SET enabled = 0, disabled_reason = ");
                    qb.push_text(reason.to_owned());
                    qb.push(", updated_at = ");
                    qb.push_time(at);
                    qb.push(" WHERE workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND provider = ");
                    qb.push_text(provider.as_str().to_owned());
                    qb.build().execute(&self.write).await.map(drop).map_err(interpret)
                }

                async fn count_sealed_keys(&self) -> StoreResult<u64> {
                    let row = Qb::new("SELECT COUNT(*) FROM provider_configs WHERE api_key_sealed IS NOT NULL")
                        .build()
                        .fetch_one(&self.read)
                        .await
                        .map_err(interpret)?;
                    Ok(row.try_get::<i64, _>(0).map_err(interpret)?.max(0) as u64)
                }

                async fn reserve_usage(
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
                    let mut tx = self.write.begin().await.map_err(interpret)?;
                    for (period, cap, amount) in charges {
                        let mut qb = Qb::new(
                            "INSERT INTO provider_usage (workspace_id, provider, period, period_start, used) VALUES (",
                        );
                        qb.push_uuid(ws.as_uuid());
                        qb.push(", ");
                        qb.push_text(provider.as_str().to_owned());
                        qb.push(", ");
                        qb.push_text(period.as_str().to_owned());
                        qb.push(", ");
                        qb.push_time(period.start(at));
                        qb.push(", ");
                        qb.push_int(*amount as i64);
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
                        qb.push_int((*cap).min(i64::MAX as u64) as i64);
                        qb.push(" RETURNING used");
                        let row = qb.build().fetch_optional(&mut *tx).await.map_err(interpret)?;
                        if row.is_none() {
                            tx.rollback().await.map_err(interpret)?;
                            return Ok(Some(*period));
                        }
                    }
                    tx.commit().await.map_err(interpret)?;
                    Ok(None)
                }

                async fn release_usage(
                    &self,
                    ws: WorkspaceId,
                    provider: ProviderKind,
                    reserved_at: Timestamp,
                    releases: &[(UsagePeriod, u64)],
                ) -> StoreResult<()> {
                    for (period, amount) in releases.iter().filter(|(_, a)| *a > 0) {
                        let mut qb = Qb::new("UPDATE provider_usage SET used = CASE WHEN used > ");
                        qb.push_int(*amount as i64);
                        qb.push(" THEN used - ");
                        qb.push_int(*amount as i64);
                        qb.push(" ELSE 0 END WHERE workspace_id = ");
                        qb.push_uuid(ws.as_uuid());
                        qb.push(" AND provider = ");
                        qb.push_text(provider.as_str().to_owned());
                        qb.push(" AND period = ");
                        qb.push_text(period.as_str().to_owned());
                        // a period that rolled over meanwhile owes nothing back
                        qb.push(" AND period_start = ");
                        qb.push_time(period.start(reserved_at));
                        qb.build().execute(&self.write).await.map_err(interpret)?;
                    }
                    Ok(())
                }

                async fn provider_usage(&self, ws: WorkspaceId) -> StoreResult<Vec<Usage>> {
                    let mut qb = Qb::new(
                        "SELECT provider, period, period_start, used FROM provider_usage WHERE workspace_id = ",
                    );
                    qb.push_uuid(ws.as_uuid());
                    let rows = qb.build().fetch_all(&self.read).await.map_err(interpret)?;
                    let mut out = Vec::new();
                    for r in &rows {
                        let provider: String = r.try_get(0).map_err(interpret)?;
                        let period: String = r.try_get(1).map_err(interpret)?;
                        if let (Some(provider), Some(period)) =
                            (ProviderKind::parse(&provider), UsagePeriod::parse(&period))
                        {
                            out.push(Usage {
                                provider,
                                period,
                                period_start: read_time(r, 2).map_err(interpret)?,
                                used: r.try_get::<i64, _>(3).map_err(interpret)?.max(0) as u64,
                            });
                        }
                    }
                    Ok(out)
                }
            }

            impl EventRepo for $store {
                async fn append_events(&self, events: &[NewEvent]) -> StoreResult<()> {
                    let mut conn = self.write.acquire().await.map_err(interpret)?;
                    append_events(&mut conn, events).await
                }

                async fn events_after(&self, ws: WorkspaceId, after: i64, limit: u32) -> StoreResult<Vec<Event>> {
                    let mut qb = Qb::new(
                        "SELECT id, workspace_id, type, subject_id, payload, created_at FROM events WHERE workspace_id = ",
                    );
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND id > ");
                    qb.push_int(after);
                    qb.push(" ORDER BY id LIMIT ");
                    qb.push_int(i64::from(limit));
                    let rows = qb.build().fetch_all(&self.read).await.map_err(interpret)?;
                    rows.iter()
                        .map(|r| -> Result<Event, sqlx::Error> {
                            let payload: String = r.try_get(4)?;
                            Ok(Event {
                                id: r.try_get(0)?,
                                workspace_id: WorkspaceId::from_uuid(r.try_get(1)?),
                                kind: r.try_get(2)?,
                                subject_id: r.try_get(3)?,
                                payload: decode_json(&payload)?,
                                at: read_time(r, 5)?,
                            })
                        })
                        .collect::<Result<_, _>>()
                        .map_err(interpret)
                }
            }
        }
    };
}
pub(crate) use impl_enrichment_repo;
