//! Erasure (right to be forgotten): tombstones, the erasure itself in one transaction, and its
//! audit log, shared by both backends and stamped out per backend by `impl_erasure_repo!` like
//! `repo::impl_repos!`; a backend provides `read_time`.
//!
//! What an erasure touches, table by table (every table in `migrations/` was checked):
//! `leads`, `lead_tags`, `enrichment_records` (deleted); `events` (the lead's events keep their
//! number and type, their payload becomes `erased_payload`; other events without a subject,
//! e.g. `job.dead`, have the person's values redacted); `webhook_deliveries` (response body and
//! error cleared for the lead's events, and wherever they quote the person); `jobs` (error
//! history, progress and result of jobs that name the lead or quote the person; payload values
//! redacted); the tables in `TABLES_KEYED_BY_EMAIL_HASH`; `workspaces` (counts);
//! `erasure_tombstones` and `erasures` (added). `provider_usage`, `provider_configs`,
//! `enrichment_settings`, `webhook_endpoints`, `schedules`, `settings` and the retention tables
//! hold no lead data.

/// Tables whose rows are keyed by `(workspace_id, email_hash)` and are deleted with the person:
/// the error reports of imports.
pub(crate) const TABLES_KEYED_BY_EMAIL_HASH: &[&str] = &["import_errors"];

macro_rules! impl_erasure_repo {
    ($store:ty, lock = $lock:literal) => {
        pub(super) mod erasure_repo {
            use super::read_time;
            use sqlx::Row as _;
            use $crate::domain::{
                EmailAddress, EmailHash, Erasure, ErasureCounts, ErasureId, Event, JobFailure, Lead, LeadId,
                NewEvent, Timestamp, WorkspaceId, erased_payload, personal_values, redact,
            };
            use $crate::store::erasure::TABLES_KEYED_BY_EMAIL_HASH;
            use $crate::store::repo::interpret;
            use $crate::store::sql::{LEAD_COLUMNS, SqlBuilder, push_newest_first};
            use $crate::store::{ErasureRepo, StoreError, StoreResult};

            type Qb = sqlx::QueryBuilder<super::Db>;
            type Row = <super::Db as sqlx::Database>::Row;
            type Conn = <super::Db as sqlx::Database>::Connection;

            /// Hashes per lookup statement, well under either backend's parameter limit.
            const LOOKUP_CHUNK: usize = 5_000;
            /// What a scrubbed job's error entries say instead.
            const ERASED_ERROR: &str = "erased on request";
            /// The job kind whose error history quotes webhook receivers.
            const WEBHOOK_DELIVER: &str = "webhook.deliver";

            const ERASURE_COLUMNS: &str = "SELECT id, workspace_id, lead_id, actor_subject, reason, erased_at, \
                 enrichment_records, events_scrubbed, deliveries_scrubbed, jobs_scrubbed, rows_by_email_hash \
                 FROM erasures WHERE ";

            fn count(v: i64) -> u64 {
                v.max(0) as u64
            }

            fn erasure_from_row(r: &Row) -> Result<Erasure, sqlx::Error> {
                Ok(Erasure {
                    id: ErasureId::from_uuid(r.try_get(0)?),
                    workspace_id: WorkspaceId::from_uuid(r.try_get(1)?),
                    lead_id: LeadId::from_uuid(r.try_get(2)?),
                    actor_subject: r.try_get(3)?,
                    reason: r.try_get(4)?,
                    erased_at: read_time(r, 5)?,
                    counts: ErasureCounts {
                        enrichment_records: count(r.try_get(6)?),
                        events_scrubbed: count(r.try_get(7)?),
                        deliveries_scrubbed: count(r.try_get(8)?),
                        jobs_scrubbed: count(r.try_get(9)?),
                        rows_by_email_hash: count(r.try_get(10)?),
                    },
                })
            }

            /// `(lower(col1) LIKE n1 ESCAPE '\' OR lower(col1) LIKE n2 … OR lower(col2) …)`.
            fn push_mentions(qb: &mut Qb, columns: &[&str], needles: &[String]) {
                qb.push("(");
                let mut first = true;
                for column in columns {
                    for needle in needles {
                        if !first {
                            qb.push(" OR ");
                        }
                        first = false;
                        qb.push(format!("lower(coalesce({column}, '')) LIKE "));
                        let escaped = needle.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
                        qb.push_text(format!("%{escaped}%"));
                        qb.push(" ESCAPE '\\'");
                    }
                }
                if first {
                    qb.push("1 = 0");
                }
                qb.push(")");
            }

            /// Deletes the person's rows from every table keyed by email hash.
            async fn delete_by_email_hash(conn: &mut Conn, ws: WorkspaceId, hash: &EmailHash) -> StoreResult<u64> {
                let mut deleted = 0;
                for table in TABLES_KEYED_BY_EMAIL_HASH {
                    let mut qb = Qb::new(format!("DELETE FROM {table} WHERE workspace_id = "));
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND email_hash = ");
                    qb.push_text(hash.as_str().to_owned());
                    deleted += qb.build().execute(&mut *conn).await.map_err(interpret)?.rows_affected();
                }
                Ok(deleted)
            }

            /// Replaces the payload of the lead's events and redacts the person from events
            /// without a subject; returns the numbers of the events changed.
            async fn scrub_events(
                conn: &mut Conn,
                ws: WorkspaceId,
                lead: LeadId,
                needles: &[String],
            ) -> StoreResult<Vec<i64>> {
                let mut qb = Qb::new("SELECT seq FROM events WHERE workspace_id = ");
                qb.push_uuid(ws.as_uuid());
                qb.push(" AND subject_id = ");
                qb.push_uuid(lead.as_uuid());
                let rows = qb.build().fetch_all(&mut *conn).await.map_err(interpret)?;
                let mut seqs = rows
                    .iter()
                    .map(|r| r.try_get::<i64, _>(0))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(interpret)?;
                let mut qb = Qb::new("UPDATE events SET payload = ");
                qb.push_text(erased_payload(lead).to_string());
                qb.push(" WHERE workspace_id = ");
                qb.push_uuid(ws.as_uuid());
                qb.push(" AND subject_id = ");
                qb.push_uuid(lead.as_uuid());
                qb.build().execute(&mut *conn).await.map_err(interpret)?;

                let mut qb = Qb::new("SELECT seq, payload FROM events WHERE workspace_id = ");
                qb.push_uuid(ws.as_uuid());
                qb.push(" AND subject_id IS NULL AND ");
                push_mentions(&mut qb, &["payload"], needles);
                let rows = qb.build().fetch_all(&mut *conn).await.map_err(interpret)?;
                for r in rows {
                    let seq: i64 = r.try_get(0).map_err(interpret)?;
                    let payload: String = r.try_get(1).map_err(interpret)?;
                    let Some(redacted) = redact(&payload, needles) else { continue };
                    let mut qb = Qb::new("UPDATE events SET payload = ");
                    qb.push_text(redacted);
                    qb.push(" WHERE workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND seq = ");
                    qb.push_int(seq);
                    qb.build().execute(&mut *conn).await.map_err(interpret)?;
                    seqs.push(seq);
                }
                Ok(seqs)
            }

            /// Clears receivers' answers to the scrubbed events, and any that quote the person.
            async fn scrub_deliveries(
                conn: &mut Conn,
                ws: WorkspaceId,
                seqs: &[i64],
                needles: &[String],
            ) -> StoreResult<u64> {
                let mut scrubbed = 0;
                let clear = |qb: &mut Qb| {
                    qb.push("UPDATE webhook_deliveries SET response_body = NULL, error = NULL WHERE workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND (response_body IS NOT NULL OR error IS NOT NULL) AND ");
                };
                for chunk in seqs.chunks(500) {
                    let mut qb = Qb::new("");
                    clear(&mut qb);
                    qb.push("event_seq IN (");
                    for (i, seq) in chunk.iter().enumerate() {
                        if i > 0 {
                            qb.push(", ");
                        }
                        qb.push_int(*seq);
                    }
                    qb.push(")");
                    scrubbed += qb.build().execute(&mut *conn).await.map_err(interpret)?.rows_affected();
                }
                let mut qb = Qb::new("");
                clear(&mut qb);
                push_mentions(&mut qb, &["response_body", "error"], needles);
                scrubbed += qb.build().execute(&mut *conn).await.map_err(interpret)?.rows_affected();
                Ok(scrubbed)
            }

            /// Scrubs jobs that name the lead or quote the person, and webhook deliveries of the
            /// scrubbed events: error texts are replaced, progress and result redacted, and the
            /// person's values redacted from the payload (ids stay, so a queued job still runs).
            async fn scrub_jobs(
                conn: &mut Conn,
                ws: WorkspaceId,
                lead: LeadId,
                seqs: &[i64],
                needles: &[String],
            ) -> StoreResult<u64> {
                let mut with_id = needles.to_vec();
                with_id.push(lead.as_uuid().hyphenated().to_string());
                let mut qb = Qb::new("SELECT id, kind, payload, errors, progress, result FROM jobs WHERE workspace_id = ");
                qb.push_uuid(ws.as_uuid());
                qb.push(" AND (");
                push_mentions(&mut qb, &["payload", "errors", "progress", "result"], &with_id);
                qb.push(" OR (kind = ");
                qb.push_text(WEBHOOK_DELIVER.to_owned());
                qb.push(" AND errors <> '[]'))");
                let rows = qb.build().fetch_all(&mut *conn).await.map_err(interpret)?;
                let mut scrubbed = 0;
                for r in rows {
                    let id: i64 = r.try_get(0).map_err(interpret)?;
                    let kind: String = r.try_get(1).map_err(interpret)?;
                    let payload: String = r.try_get(2).map_err(interpret)?;
                    let errors: String = r.try_get(3).map_err(interpret)?;
                    let progress: Option<String> = r.try_get(4).map_err(interpret)?;
                    let result: Option<String> = r.try_get(5).map_err(interpret)?;
                    let lower = |s: &str| s.to_lowercase();
                    let mentions = [Some(&payload), Some(&errors), progress.as_ref(), result.as_ref()]
                        .into_iter()
                        .flatten()
                        .any(|text| with_id.iter().any(|n| lower(text).contains(n.as_str())));
                    let delivers_scrubbed = kind == WEBHOOK_DELIVER
                        && serde_json::from_str::<serde_json::Value>(&payload)
                            .ok()
                            .and_then(|p| p.get("seq").and_then(serde_json::Value::as_i64))
                            .is_some_and(|seq| seqs.contains(&seq));
                    if !mentions && !delivers_scrubbed {
                        continue;
                    }
                    let mut history: Vec<JobFailure> = serde_json::from_str(&errors).unwrap_or_default();
                    for entry in &mut history {
                        entry.error = ERASED_ERROR.to_owned();
                    }
                    let errors = serde_json::to_string(&history).map_err(|e| StoreError::Database(Box::new(e)))?;
                    let payload = redact(&payload, needles).unwrap_or(payload);
                    let progress = progress.map(|p| redact(&p, needles).unwrap_or(p));
                    let result = result.map(|p| redact(&p, needles).unwrap_or(p));
                    let mut qb = Qb::new("UPDATE jobs SET payload = ");
                    qb.push_text(payload);
                    qb.push(", errors = ");
                    qb.push_text(errors);
                    qb.push(", progress = ");
                    qb.push_opt_text(progress);
                    qb.push(", result = ");
                    qb.push_opt_text(result);
                    qb.push(" WHERE workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND id = ");
                    qb.push_int(id);
                    qb.build().execute(&mut *conn).await.map_err(interpret)?;
                    scrubbed += 1;
                }
                Ok(scrubbed)
            }

            impl ErasureRepo for $store {
                async fn tombstoned(
                    &self,
                    ws: WorkspaceId,
                    hashes: &[EmailHash],
                ) -> StoreResult<Vec<EmailHash>> {
                    let mut found = Vec::new();
                    for chunk in hashes.chunks(LOOKUP_CHUNK) {
                        let mut qb =
                            Qb::new("SELECT email_hash FROM erasure_tombstones WHERE workspace_id = ");
                        qb.push_uuid(ws.as_uuid());
                        qb.push(" AND email_hash IN (");
                        for (i, h) in chunk.iter().enumerate() {
                            if i > 0 {
                                qb.push(", ");
                            }
                            qb.push_text(h.as_str().to_owned());
                        }
                        qb.push(")");
                        let rows = qb.build().fetch_all(&self.read).await.map_err(interpret)?;
                        for r in rows {
                            found.push(EmailHash::from_trusted(r.try_get(0).map_err(interpret)?));
                        }
                    }
                    Ok(found)
                }

                async fn lead_id_by_email(&self, ws: WorkspaceId, email: &EmailAddress) -> StoreResult<Option<LeadId>> {
                    let mut qb = Qb::new("SELECT id FROM leads WHERE workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND email = ");
                    qb.push_text(email.as_str().to_owned());
                    let row = qb.build().fetch_optional(&self.read).await.map_err(interpret)?;
                    row.map(|r| r.try_get(0).map(LeadId::from_uuid))
                        .transpose()
                        .map_err(interpret)
                }

                async fn erase_lead(
                    &self,
                    ws: WorkspaceId,
                    id: LeadId,
                    actor_subject: &str,
                    reason: Option<&str>,
                    at: Timestamp,
                ) -> StoreResult<Option<(Erasure, Vec<Event>)>> {
                    let mut tx = self.write.begin().await.map_err(interpret)?;
                    let mut qb = Qb::new(format!("SELECT {LEAD_COLUMNS} FROM leads l WHERE l.workspace_id = "));
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND l.id = ");
                    qb.push_uuid(id.as_uuid());
                    qb.push($lock);
                    let rows = qb.build().fetch_all(&mut *tx).await.map_err(interpret)?;
                    let Some(lead): Option<Lead> = super::leads_from_rows(&rows)?.pop() else {
                        return Ok(None);
                    };
                    let needles = personal_values(&lead);
                    let mut counts = ErasureCounts::default();

                    let mut qb = Qb::new("DELETE FROM enrichment_records WHERE workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND lead_id = ");
                    qb.push_uuid(id.as_uuid());
                    counts.enrichment_records = qb.build().execute(&mut *tx).await.map_err(interpret)?.rows_affected();
                    let mut qb = Qb::new("DELETE FROM lead_tags WHERE lead_id = ");
                    qb.push_uuid(id.as_uuid());
                    qb.build().execute(&mut *tx).await.map_err(interpret)?;
                    let mut qb = Qb::new("DELETE FROM leads WHERE workspace_id = ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(" AND id = ");
                    qb.push_uuid(id.as_uuid());
                    qb.build().execute(&mut *tx).await.map_err(interpret)?;
                    let (active, archived) = if lead.archived_at.is_some() { (0, -1) } else { (-1, 0) };
                    super::bump_counts(&mut tx, ws, active, archived).await?;

                    let seqs = scrub_events(&mut tx, ws, id, &needles).await?;
                    counts.events_scrubbed = seqs.len() as u64;
                    counts.deliveries_scrubbed = scrub_deliveries(&mut tx, ws, &seqs, &needles).await?;
                    counts.jobs_scrubbed = scrub_jobs(&mut tx, ws, id, &seqs, &needles).await?;
                    if let Some(email) = &lead.email {
                        let hash = EmailHash::of(ws, email);
                        counts.rows_by_email_hash = delete_by_email_hash(&mut tx, ws, &hash).await?;
                        let mut qb = Qb::new(
                            "INSERT INTO erasure_tombstones (workspace_id, email_hash, erased_at) VALUES (",
                        );
                        qb.push_uuid(ws.as_uuid());
                        qb.push(", ");
                        qb.push_text(hash.as_str().to_owned());
                        qb.push(", ");
                        qb.push_time(at);
                        qb.push(") ON CONFLICT (workspace_id, email_hash) DO NOTHING");
                        qb.build().execute(&mut *tx).await.map_err(interpret)?;
                    }

                    let erasure = Erasure {
                        id: ErasureId::new(),
                        workspace_id: ws,
                        lead_id: id,
                        actor_subject: actor_subject.to_owned(),
                        reason: reason.map(str::to_owned),
                        erased_at: at,
                        counts,
                    };
                    let mut qb = Qb::new(
                        "INSERT INTO erasures (id, workspace_id, lead_id, actor_subject, reason, erased_at, \
                         enrichment_records, events_scrubbed, deliveries_scrubbed, jobs_scrubbed, \
                         rows_by_email_hash) VALUES (",
                    );
                    qb.push_uuid(erasure.id.as_uuid());
                    qb.push(", ");
                    qb.push_uuid(ws.as_uuid());
                    qb.push(", ");
                    qb.push_uuid(id.as_uuid());
                    qb.push(", ");
                    qb.push_text(erasure.actor_subject.clone());
                    qb.push(", ");
                    qb.push_opt_text(erasure.reason.clone());
                    qb.push(", ");
                    qb.push_time(at);
                    for v in [
                        counts.enrichment_records,
                        counts.events_scrubbed,
                        counts.deliveries_scrubbed,
                        counts.jobs_scrubbed,
                        counts.rows_by_email_hash,
                    ] {
                        qb.push(", ");
                        qb.push_int(i64::try_from(v).unwrap_or(i64::MAX));
                    }
                    qb.push(")");
                    qb.build().execute(&mut *tx).await.map_err(interpret)?;
                    let events =
                        super::event_repo::append(&mut tx, &[NewEvent::lead_erased(ws, id, at)]).await?;
                    tx.commit().await.map_err(interpret)?;
                    Ok(Some((erasure, events)))
                }

                async fn erasures(
                    &self,
                    ws: WorkspaceId,
                    before: Option<ErasureId>,
                    limit: u32,
                ) -> StoreResult<Vec<Erasure>> {
                    let mut qb = Qb::new(ERASURE_COLUMNS);
                    qb.push("workspace_id = ");
                    push_newest_first(&mut qb, ws, before.map(|b| b.as_uuid()), limit);
                    let rows = qb.build().fetch_all(&self.read).await.map_err(interpret)?;
                    rows.iter().map(erasure_from_row).collect::<Result<_, _>>().map_err(interpret)
                }
            }
        }
    };
}

pub(crate) use impl_erasure_repo;
