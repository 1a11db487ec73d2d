//! Erasure (right to be forgotten) and the tombstones that keep an erased person out.
//!
//! The erasure itself is one store transaction (`Store::erase_lead`, which lists every
//! table it touches); what lives here is finding the lead by email for operators and checking
//! new emails against the tombstones, shared by lead creation, upserts and imports.
//!
//! **Tombstone check happens before the write**, in the service; a lead created with the address
//! in the instant between the check and a concurrent erasure's commit is not caught (the erasure
//! removes whatever lead has the id it was given).

use crate::domain::{EmailAddress, EmailHash, Erasure, Event, LeadId, WorkspaceId, now};
use crate::store::{Store, StoreResult};
use std::collections::HashSet;

/// What a refused email is told.
pub const ERASED_MESSAGE: &str = "this address was erased on request";

/// Erases a lead of `ws` now; `None` when it does not exist there.
pub async fn erase_lead(
    store: &Store,
    ws: WorkspaceId,
    lead: LeadId,
    actor_subject: &str,
    reason: Option<&str>,
) -> StoreResult<Option<(Erasure, Vec<Event>)>> {
    store.erase_lead(ws, lead, actor_subject, reason, now()).await
}

/// The lead of `ws` whose email is `email`, if any.
pub async fn find_by_email(
    store: &Store,
    ws: WorkspaceId,
    email: &EmailAddress,
) -> StoreResult<Option<LeadId>> {
    store.lead_id_by_email(ws, email).await
}

/// Which of `emails` belong to people erased from `ws`, as a set of their addresses.
pub async fn erased_among<'a>(
    store: &Store,
    ws: WorkspaceId,
    emails: impl IntoIterator<Item = &'a EmailAddress>,
) -> StoreResult<HashSet<String>> {
    let by_hash: Vec<(EmailHash, &EmailAddress)> =
        emails.into_iter().map(|e| (EmailHash::of(ws, e), e)).collect();
    if by_hash.is_empty() {
        return Ok(HashSet::new());
    }
    let hashes: Vec<EmailHash> = by_hash.iter().map(|(h, _)| h.clone()).collect();
    let found: HashSet<EmailHash> = store.tombstoned(ws, &hashes).await?.into_iter().collect();
    Ok(by_hash
        .into_iter()
        .filter(|(h, _)| found.contains(h))
        .map(|(_, e)| e.as_str().to_owned())
        .collect())
}
