//! Erasure (right to be forgotten): tombstones, the erasure itself in one transaction, and its
//! audit log.
//!
//! What an erasure touches, table by table (every table in `migrations/` was checked):
//! `leads`, `lead_tags`, `enrichment_records`, `crm_links`, the lead's campaign enrollments,
//! activity and messages (deleted); `mail_suppressions` (the address cleared, its hash kept); `events` (the lead's events keep their
//! number and type, their payload becomes `erased_payload`; other events without a subject,
//! e.g. `job.dead`, have the person's values redacted); `webhook_deliveries` (response body and
//! error cleared for the lead's events, and wherever they quote the person); `jobs` (error
//! history, progress and result of jobs that name the lead or quote the person; payload values
//! redacted); the tables in `TABLES_KEYED_BY_EMAIL_HASH`; `import_errors` reasons and
//! `imports` file names (redacted where they quote the person); `import_uploads` (the file of
//! an unfinished import that names the person is deleted and the import cancelled);
//! `workspaces` (counts); `erasure_tombstones` and `erasures` (added). The contract test
//! `every_column_is_classified_for_erasure` holds this list against both catalogs. `provider_usage`, `provider_configs`,
//! `enrichment_settings`, `webhook_endpoints`, `api_keys`, `schedules`, `settings`, `leases`, `event_exports`, the retention tables and the
//! other `crm_*` tables (ids, counts, our own words) hold no lead data.
//!
//! **Erasure redacts free text by value.** Texts that may quote a person (job error history,
//! receivers' answers, subject-less events such as `job.dead`) are searched case-insensitively for
//! the lead's email, names, phone and LinkedIn URL (values of three characters or more) and the
//! matches replaced by `[erased]`; a job's error entries are replaced wholesale. Lead ids are kept
//! (the audit record and the erased events need them; they identify nobody once the lead row is
//! gone).

/// Tables whose rows are keyed by `(workspace_id, email_hash)` and are deleted with the person:
/// the error reports of imports.
pub(crate) const TABLES_KEYED_BY_EMAIL_HASH: &[&str] = &["import_errors"];

use super::dialect::{Conn, Row, Sql};
use super::events::append_events;
use super::keyset::KeyOrder;
use super::leads::{bump, leads_in};
use super::sql::lead_select;
use super::{Store, StoreError, StoreResult};
use crate::domain::{
    EmailAddress, EmailHash, Erasure, ErasureCounts, ErasureId, Event, JobFailure, KeysetPage, LeadId,
    NewEvent, Paged, Timestamp, WorkspaceId, erased_payload, personal_values, redact,
};

/// Hashes per lookup statement, well under either backend's parameter limit.
const LOOKUP_CHUNK: usize = 5_000;
/// What a scrubbed job's error entries say instead.
const ERASED_ERROR: &str = "erased on request";
/// The job kind whose error history quotes webhook receivers.
const WEBHOOK_DELIVER: &str = "webhook.deliver";

const ERASURE_COLUMNS: &str = "SELECT id, workspace_id, lead_id, actor_subject, reason, erased_at, \
     enrichment_records, events_scrubbed, deliveries_scrubbed, jobs_scrubbed, rows_by_email_hash, \
     imports_scrubbed FROM erasures WHERE ";

fn count(v: i64) -> u64 {
    v.max(0) as u64
}

fn erasure_from_row(r: &Row) -> StoreResult<Erasure> {
    Ok(Erasure {
        id: ErasureId::from_uuid(r.get(0)?),
        workspace_id: WorkspaceId::from_uuid(r.get(1)?),
        lead_id: LeadId::from_uuid(r.get(2)?),
        actor_subject: r.get(3)?,
        reason: r.get(4)?,
        erased_at: r.get(5)?,
        counts: ErasureCounts {
            enrichment_records: count(r.get(6)?),
            events_scrubbed: count(r.get(7)?),
            deliveries_scrubbed: count(r.get(8)?),
            jobs_scrubbed: count(r.get(9)?),
            rows_by_email_hash: count(r.get(10)?),
            imports_scrubbed: count(r.get(11)?),
        },
    })
}

/// `(lower(col1) LIKE n1 ESCAPE '\' OR lower(col1) LIKE n2 … OR lower(col2) …)`.
fn push_mentions(qb: &mut Sql, columns: &[&str], needles: &[String]) {
    qb.push("(");
    let mut first = true;
    for column in columns {
        for needle in needles {
            if !first {
                qb.push(" OR ");
            }
            first = false;
            qb.push(format!("lower(coalesce({column}, '')) LIKE "));
            let escaped = needle
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            qb.bind(format!("%{escaped}%"));
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
        let mut qb = conn.sql(format!("DELETE FROM {table} WHERE workspace_id = "));
        qb.bind(ws);
        qb.push(" AND email_hash = ");
        qb.bind(hash.as_str().to_owned());
        deleted += conn.execute(qb).await?;
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
    let mut qb = conn.sql("SELECT seq FROM events WHERE workspace_id = ");
    qb.bind(ws);
    qb.push(" AND subject_id = ");
    qb.bind(lead);
    let rows = conn.fetch_all(qb).await?;
    let mut seqs = rows
        .iter()
        .map(|r| r.get::<i64>(0))
        .collect::<Result<Vec<_>, _>>()?;
    let mut qb = conn.sql("UPDATE events SET payload = ");
    qb.bind(erased_payload(lead).to_string());
    qb.push(" WHERE workspace_id = ");
    qb.bind(ws);
    qb.push(" AND subject_id = ");
    qb.bind(lead);
    conn.execute(qb).await?;

    let mut qb = conn.sql("SELECT seq, payload FROM events WHERE workspace_id = ");
    qb.bind(ws);
    qb.push(" AND subject_id IS NULL AND ");
    push_mentions(&mut qb, &["payload"], needles);
    let rows = conn.fetch_all(qb).await?;
    for r in rows {
        let seq: i64 = r.get(0)?;
        let payload: String = r.get(1)?;
        let Some(redacted) = redact(&payload, needles) else {
            continue;
        };
        let mut qb = conn.sql("UPDATE events SET payload = ");
        qb.bind(redacted);
        qb.push(" WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND seq = ");
        qb.bind(seq);
        conn.execute(qb).await?;
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
    let clear = |qb: &mut Sql| {
        qb.push("UPDATE webhook_deliveries SET response_body = NULL, error = NULL WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND (response_body IS NOT NULL OR error IS NOT NULL) AND ");
    };
    for chunk in seqs.chunks(500) {
        let mut qb = conn.sql("");
        clear(&mut qb);
        qb.push("event_seq IN (");
        for (i, seq) in chunk.iter().enumerate() {
            if i > 0 {
                qb.push(", ");
            }
            qb.bind(*seq);
        }
        qb.push(")");
        scrubbed += conn.execute(qb).await?;
    }
    let mut qb = conn.sql("");
    clear(&mut qb);
    push_mentions(&mut qb, &["response_body", "error"], needles);
    scrubbed += conn.execute(qb).await?;
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
    let mut qb =
        conn.sql("SELECT id, kind, payload, errors, progress, result FROM jobs WHERE workspace_id = ");
    qb.bind(ws);
    qb.push(" AND (");
    push_mentions(&mut qb, &["payload", "errors", "progress", "result"], &with_id);
    qb.push(" OR (kind = ");
    qb.bind(WEBHOOK_DELIVER.to_owned());
    qb.push(" AND errors <> '[]'))");
    let rows = conn.fetch_all(qb).await?;
    let mut scrubbed = 0;
    for r in rows {
        let id: i64 = r.get(0)?;
        let kind: String = r.get(1)?;
        let payload: String = r.get(2)?;
        let errors: String = r.get(3)?;
        let progress: Option<String> = r.get(4)?;
        let result: Option<String> = r.get(5)?;
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
        let mut qb = conn.sql("UPDATE jobs SET payload = ");
        qb.bind(payload);
        qb.push(", errors = ");
        qb.bind(errors);
        qb.push(", progress = ");
        qb.bind(progress);
        qb.push(", result = ");
        qb.bind(result);
        qb.push(" WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND id = ");
        qb.bind(id);
        conn.execute(qb).await?;
        scrubbed += 1;
    }
    Ok(scrubbed)
}

/// What an unfinished import whose uploaded file names an erased person says instead.
const CANCELLED_UPLOAD: &str =
    "cancelled: the uploaded file named a person erased on request; upload it again without them";

/// Redacts the person from import records: error reasons (rows of invalid data carry no email
/// hash, and a reason may quote a value) and file names. An unfinished upload whose bytes
/// name the person is cancelled: its chunks are deleted and the import marked failed, so no
/// copy of the file outlives the erasure. Returns how many imports were changed.
async fn scrub_imports(
    conn: &mut Conn,
    ws: WorkspaceId,
    needles: &[String],
    at: Timestamp,
) -> StoreResult<u64> {
    let mut changed = std::collections::BTreeSet::new();
    let mut qb =
        conn.sql("SELECT import_id, row_number, seq, reason FROM import_errors WHERE workspace_id = ");
    qb.bind(ws);
    qb.push(" AND ");
    push_mentions(&mut qb, &["reason"], needles);
    for r in conn.fetch_all(qb).await? {
        let reason: String = r.get(3)?;
        let Some(redacted) = redact(&reason, needles) else {
            continue;
        };
        let import: uuid::Uuid = r.get(0)?;
        let mut qb = conn.sql("UPDATE import_errors SET reason = ");
        qb.bind(redacted);
        qb.push(" WHERE import_id = ");
        qb.bind(import);
        qb.push(" AND row_number = ");
        qb.bind(r.get::<i64>(1)?);
        qb.push(" AND seq = ");
        qb.bind(r.get::<i64>(2)?);
        conn.execute(qb).await?;
        changed.insert(import);
    }
    let mut qb = conn.sql("SELECT id, source_name FROM imports WHERE workspace_id = ");
    qb.bind(ws);
    qb.push(" AND ");
    push_mentions(&mut qb, &["source_name"], needles);
    for r in conn.fetch_all(qb).await? {
        let name: String = r.get(1)?;
        let Some(redacted) = redact(&name, needles) else {
            continue;
        };
        let import: uuid::Uuid = r.get(0)?;
        let mut qb = conn.sql("UPDATE imports SET source_name = ");
        qb.bind(redacted);
        qb.push(" WHERE id = ");
        qb.bind(import);
        conn.execute(qb).await?;
        changed.insert(import);
    }
    let mut qb = conn.sql("SELECT id FROM imports WHERE workspace_id = ");
    qb.bind(ws);
    qb.push(" AND status NOT IN ('succeeded', 'failed') AND EXISTS (SELECT 1 FROM import_uploads u WHERE u.import_id = imports.id)");
    qb.push(conn.dialect().for_update());
    for r in conn.fetch_all(qb).await? {
        let import: uuid::Uuid = r.get(0)?;
        if !upload_mentions(conn, import, needles).await? {
            continue;
        }
        let mut qb = conn.sql("DELETE FROM import_uploads WHERE import_id = ");
        qb.bind(import);
        conn.execute(qb).await?;
        let mut qb = conn.sql("UPDATE imports SET status = 'failed', error = ");
        qb.bind(CANCELLED_UPLOAD);
        qb.push(", updated_at = ");
        qb.bind(at);
        qb.push(", finished_at = ");
        qb.bind(at);
        qb.push(" WHERE id = ");
        qb.bind(import);
        conn.execute(qb).await?;
        changed.insert(import);
    }
    Ok(changed.len() as u64)
}

/// Whether an uploaded file's bytes hold any of the (lower-case) needles, case-insensitively
/// for ASCII; read chunk by chunk, each searched together with the end of the one before so a
/// value split across two chunks is found too.
async fn upload_mentions(conn: &mut Conn, import: uuid::Uuid, needles: &[String]) -> StoreResult<bool> {
    let longest = needles.iter().map(String::len).max().unwrap_or(0);
    if longest == 0 {
        return Ok(false);
    }
    let mut carry: Vec<u8> = Vec::new();
    let mut seq = 0i64;
    loop {
        let mut qb = conn.sql("SELECT data FROM import_uploads WHERE import_id = ");
        qb.bind(import);
        qb.push(" AND seq = ");
        qb.bind(seq);
        let Some(row) = conn.fetch_optional(qb).await? else {
            return Ok(false);
        };
        let chunk: Vec<u8> = row.get(0)?;
        carry.extend(chunk.iter().map(u8::to_ascii_lowercase));
        if needles.iter().any(|n| contains(&carry, n.as_bytes())) {
            return Ok(true);
        }
        let keep = carry.len().min(longest - 1);
        carry.drain(..carry.len() - keep);
        seq += 1;
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

impl Store {
    pub async fn tombstoned(&self, ws: WorkspaceId, hashes: &[EmailHash]) -> StoreResult<Vec<EmailHash>> {
        let mut found = Vec::new();
        for chunk in hashes.chunks(LOOKUP_CHUNK) {
            let mut qb = self.sql("SELECT email_hash FROM erasure_tombstones WHERE workspace_id = ");
            qb.bind(ws);
            qb.push(" AND email_hash IN (");
            for (i, h) in chunk.iter().enumerate() {
                if i > 0 {
                    qb.push(", ");
                }
                qb.bind(h.as_str().to_owned());
            }
            qb.push(")");
            let rows = self.fetch_all(qb).await?;
            for r in rows {
                found.push(EmailHash::from_trusted(r.get(0)?));
            }
        }
        Ok(found)
    }

    pub async fn lead_id_by_email(
        &self,
        ws: WorkspaceId,
        email: &EmailAddress,
    ) -> StoreResult<Option<LeadId>> {
        let mut qb = self.sql("SELECT id FROM leads WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND email = ");
        qb.bind(email.as_str().to_owned());
        let row = self.fetch_optional(qb).await?;
        row.map(|r| r.get(0).map(LeadId::from_uuid)).transpose()
    }

    pub async fn erase_lead(
        &self,
        ws: WorkspaceId,
        id: LeadId,
        actor_subject: &str,
        reason: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<Option<(Erasure, Vec<Event>)>> {
        let mut tx = self.begin().await?;
        let mut qb = self.sql(format!(
            "SELECT {} FROM leads l WHERE l.workspace_id = ",
            lead_select()
        ));
        qb.bind(ws);
        qb.push(" AND l.id = ");
        qb.bind(id);
        qb.push(tx.dialect().for_update());
        let Some(lead) = leads_in(&mut tx, qb).await?.pop() else {
            return Ok(None);
        };
        let needles = personal_values(&lead);
        let mut counts = ErasureCounts::default();

        let mut qb = self.sql("DELETE FROM enrichment_records WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND lead_id = ");
        qb.bind(id);
        counts.enrichment_records = tx.execute(qb).await?;
        let mut qb = self.sql("DELETE FROM lead_tags WHERE lead_id = ");
        qb.bind(id);
        tx.execute(qb).await?;
        let mut qb = self.sql("DELETE FROM crm_links WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND lead_id = ");
        qb.bind(id);
        tx.execute(qb).await?;
        for table in ["campaign_enrollments", "campaign_activity", "campaign_messages"] {
            let mut qb = self.sql(format!("DELETE FROM {table} WHERE workspace_id = "));
            qb.bind(ws);
            qb.push(" AND lead_id = ");
            qb.bind(id);
            tx.execute(qb).await?;
        }
        if let Some(email) = &lead.email {
            // the suppression stays (keyed by the salted hash), its readable address goes
            let mut qb = self.sql("UPDATE mail_suppressions SET email = NULL WHERE workspace_id = ");
            qb.bind(ws);
            qb.push(" AND email_hash = ");
            qb.bind(crate::domain::EmailHash::of(ws, email).as_str());
            tx.execute(qb).await?;
        }
        let mut qb = self.sql("DELETE FROM leads WHERE workspace_id = ");
        qb.bind(ws);
        qb.push(" AND id = ");
        qb.bind(id);
        tx.execute(qb).await?;
        let (active, archived) = if lead.archived_at.is_some() {
            (0, -1)
        } else {
            (-1, 0)
        };
        bump(&mut tx, ws, (active, archived)).await?;

        let seqs = scrub_events(&mut tx, ws, id, &needles).await?;
        counts.events_scrubbed = seqs.len() as u64;
        counts.deliveries_scrubbed = scrub_deliveries(&mut tx, ws, &seqs, &needles).await?;
        counts.jobs_scrubbed = scrub_jobs(&mut tx, ws, id, &seqs, &needles).await?;
        counts.imports_scrubbed = scrub_imports(&mut tx, ws, &needles, at).await?;
        if let Some(email) = &lead.email {
            let hash = EmailHash::of(ws, email);
            counts.rows_by_email_hash = delete_by_email_hash(&mut tx, ws, &hash).await?;
            let mut qb =
                self.sql("INSERT INTO erasure_tombstones (workspace_id, email_hash, erased_at) VALUES (");
            qb.bind(ws);
            qb.push(", ");
            qb.bind(hash.as_str().to_owned());
            qb.push(", ");
            qb.bind(at);
            qb.push(") ON CONFLICT (workspace_id, email_hash) DO NOTHING");
            tx.execute(qb).await?;
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
        let mut qb = self.sql(
            "INSERT INTO erasures (id, workspace_id, lead_id, actor_subject, reason, erased_at, \
             enrichment_records, events_scrubbed, deliveries_scrubbed, jobs_scrubbed, \
             rows_by_email_hash, imports_scrubbed) VALUES (",
        );
        qb.bind(erasure.id);
        qb.push(", ");
        qb.bind(ws);
        qb.push(", ");
        qb.bind(id);
        qb.push(", ");
        qb.bind(erasure.actor_subject.clone());
        qb.push(", ");
        qb.bind(erasure.reason.clone());
        qb.push(", ");
        qb.bind(at);
        for v in [
            counts.enrichment_records,
            counts.events_scrubbed,
            counts.deliveries_scrubbed,
            counts.jobs_scrubbed,
            counts.rows_by_email_hash,
            counts.imports_scrubbed,
        ] {
            qb.push(", ");
            qb.bind(i64::try_from(v).unwrap_or(i64::MAX));
        }
        qb.push(")");
        tx.execute(qb).await?;
        let events = append_events(&mut tx, &[NewEvent::lead_erased(ws, id, at)]).await?;
        tx.commit().await?;
        Ok(Some((erasure, events)))
    }

    /// A page of the workspace's erasure records, newest first.
    pub async fn erasures(
        &self,
        ws: WorkspaceId,
        page: &KeysetPage<ErasureId>,
    ) -> StoreResult<Paged<Erasure>> {
        let mut qb = self.sql(ERASURE_COLUMNS);
        qb.push("workspace_id = ");
        qb.bind(ws);
        self.keyset_page(qb, KeyOrder::NEWEST_FIRST, page, erasure_from_row)
            .await
    }
}
