//! API keys, for admins: create (the secret is shown once), list, revoke and rotate; and the
//! `KeyRing` every request's key is verified against.
//!
//! Verification runs on every request, so it is synchronous and touches no database: the ring
//! maps the SHA-256 digest of each secret (current, and the one a rotation replaced while its
//! grace lasts) to the key's grant. It is loaded at start and reloaded whole when the table's
//! change marker moves (`Store::api_keys_marker`, polled every `POLL` by the task `KeyRing::start`
//! spawns), so a revocation on another instance applies here within a second; the instance
//! that makes a change reloads at once. Revoked and expired keys stay in the ring so that they
//! are refused with their reason. Uses are counted in memory and written as `last_used_at` in
//! one statement every `FLUSH_USES`, never per request.

use super::campaigns::WallClock;
use super::{Actor, KeyGrant, ServiceError};
use crate::domain::{
    ApiKey, ApiKeyId, FieldError, FieldErrorCode, KeyDigest, KeyRefusal, KeysetPage, Paged, RateLimit, Role,
    Scopes, Timestamp, ValidationErrors, WorkspaceId, display_prefix, now, parse_key_name, parse_secret,
    secret_from_bytes,
};
use crate::store::Store;
use secrecy::SecretString;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;
use tokio::sync::watch;

/// How often the ring asks the database whether keys changed.
pub const POLL: Duration = Duration::from_millis(250);
/// How often last-use times are written.
pub const FLUSH_USES: Duration = Duration::from_secs(5);
/// Most keys one page lists.
pub const MAX_KEY_PAGE: u32 = 100;
/// The longest grace a rotation may give the old secret: 30 days.
pub const MAX_GRACE_SECS: i64 = 30 * 86_400;

/// A key as an admin asks for it.
#[derive(Clone, Debug)]
pub struct ApiKeyDraft {
    pub name: String,
    pub role: Role,
    /// Scope names, either spelling (`READ_LEADS` or `leads:read`).
    pub scopes: Vec<String>,
    pub expires_at: Option<Timestamp>,
    /// A rate such as `600/min`.
    pub rate_limit: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ApiKeyService {
    store: Store,
    ring: KeyRing,
}

impl ApiKeyService {
    pub fn new(store: Store) -> Self {
        Self {
            ring: KeyRing::new(store.clone()),
            store,
        }
    }

    /// The ring requests are verified against.
    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    /// Creates a key; returns it with its secret, which is not shown again.
    pub async fn create(
        &self,
        actor: &Actor,
        draft: ApiKeyDraft,
    ) -> Result<(ApiKey, SecretString), ServiceError> {
        actor.require_admin()?;
        let at = self.ring.now();
        let mut errors = Vec::new();
        let name = parse_key_name("name", &draft.name)
            .map_err(|e| errors.push(e))
            .ok();
        let scopes = Scopes::parse_list("scopes", &draft.scopes)
            .map_err(|e| errors.push(e))
            .ok();
        if draft.expires_at.is_some_and(|t| t <= at) {
            errors.push(FieldError::invalid("expiresAt", "must lie in the future"));
        }
        let rate_limit = draft
            .rate_limit
            .as_deref()
            .map(|raw| RateLimit::parse(raw).map_err(|e| FieldError::invalid("rateLimit", e)))
            .transpose()
            .map_err(|e| errors.push(e))
            .ok()
            .flatten();
        let (Some(name), Some(scopes), true) = (name, scopes, errors.is_empty()) else {
            return Err(ServiceError::Invalid(ValidationErrors(errors)));
        };
        let secret = new_secret();
        let key = ApiKey {
            id: ApiKeyId::new(),
            workspace_id: actor.workspace_id,
            name,
            prefix: display_prefix(&secret),
            digest: KeyDigest::of(&secret),
            previous: None,
            role: draft.role,
            scopes,
            rate_limit,
            created_at: at,
            created_by: actor.subject.clone(),
            last_used_at: None,
            expires_at: draft.expires_at,
            revoked_at: None,
        };
        self.store.insert_api_key(&key).await?;
        self.ring.reload().await?;
        Ok((key, SecretString::from(secret)))
    }

    /// The workspace's keys, newest first.
    pub async fn list(
        &self,
        actor: &Actor,
        page: KeysetPage<ApiKeyId>,
    ) -> Result<Paged<ApiKey>, ServiceError> {
        actor.require_admin()?;
        Ok(self
            .store
            .api_keys(actor.workspace_id, &page.capped(MAX_KEY_PAGE as usize))
            .await?)
    }

    pub async fn get(&self, actor: &Actor, id: ApiKeyId) -> Result<ApiKey, ServiceError> {
        actor.require_admin()?;
        self.store
            .api_key(actor.workspace_id, id)
            .await?
            .ok_or(ServiceError::NotFound("API key"))
    }

    /// The workspace a key belongs to, for the command line, which names a key by id alone.
    pub async fn workspace_of(&self, id: ApiKeyId) -> Result<Option<WorkspaceId>, ServiceError> {
        Ok(self.store.api_key_workspace(id).await?)
    }

    /// Revokes a key; this instance refuses it from now on, the others within a second.
    /// Revoking a revoked key changes nothing.
    pub async fn revoke(&self, actor: &Actor, id: ApiKeyId) -> Result<ApiKey, ServiceError> {
        self.get(actor, id).await?;
        self.store
            .revoke_api_key(actor.workspace_id, id, self.ring.now())
            .await?;
        self.ring.reload().await?;
        self.get(actor, id).await
    }

    /// Gives a key a new secret; the old one keeps working for `grace_secs` (0: not at all).
    pub async fn rotate(
        &self,
        actor: &Actor,
        id: ApiKeyId,
        grace_secs: i64,
    ) -> Result<(ApiKey, SecretString), ServiceError> {
        if !(0..=MAX_GRACE_SECS).contains(&grace_secs) {
            return Err(ServiceError::invalid(
                "gracePeriod",
                FieldErrorCode::Invalid,
                format!("must be 0 to {MAX_GRACE_SECS} seconds"),
            ));
        }
        let key = self.get(actor, id).await?;
        if key.revoked_at.is_some() {
            return Err(ServiceError::invalid(
                "id",
                FieldErrorCode::Invalid,
                "a revoked key cannot be rotated",
            ));
        }
        let secret = new_secret();
        let until = self.ring.now() + chrono::Duration::seconds(grace_secs);
        self.store
            .rotate_api_key(
                actor.workspace_id,
                id,
                KeyDigest::of(&secret),
                &display_prefix(&secret),
                until,
            )
            .await?;
        self.ring.reload().await?;
        Ok((self.get(actor, id).await?, SecretString::from(secret)))
    }
}

fn new_secret() -> String {
    secret_from_bytes(&rand::random::<[u8; 32]>())
}

/// Where a digest leads: the key, and for a replaced secret until when it is accepted.
struct Entry {
    key: Arc<ApiKey>,
    until: Option<Timestamp>,
}

struct RingInner {
    store: Store,
    /// Swapped whole on every reload.
    entries: RwLock<Arc<HashMap<KeyDigest, Entry>>>,
    /// The change marker the entries were loaded at.
    marker: Mutex<Option<i64>>,
    /// One reload at a time, so an older read never replaces a newer one.
    reloading: tokio::sync::Mutex<()>,
    /// Keys used since the last flush, with their latest use.
    uses: Mutex<HashMap<ApiKeyId, Timestamp>>,
    clock: RwLock<WallClock>,
}

/// Every key of every workspace by the digest of its secret, for synchronous verification.
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<RingInner>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").finish_non_exhaustive()
    }
}

impl KeyRing {
    /// An empty ring; `reload` fills it.
    pub fn new(store: Store) -> Self {
        Self {
            inner: Arc::new(RingInner {
                store,
                entries: RwLock::new(Arc::new(HashMap::new())),
                marker: Mutex::new(None),
                reloading: tokio::sync::Mutex::new(()),
                uses: Mutex::new(HashMap::new()),
                clock: RwLock::new(Arc::new(now)),
            }),
        }
    }

    /// Replaces the clock expiry is judged by (tests).
    pub fn set_clock(&self, clock: WallClock) {
        if let Ok(mut c) = self.inner.clock.write() {
            *c = clock;
        }
    }

    fn now(&self) -> Timestamp {
        self.inner.clock.read().map_or_else(|_| now(), |c| c())
    }

    /// The actor a presented secret speaks for, or why it is refused. Reads memory only.
    pub fn verify(&self, secret: &str) -> Result<Actor, KeyRefusal> {
        let digest = parse_secret(secret)?;
        let entries = self
            .inner
            .entries
            .read()
            .map(|e| Arc::clone(&e))
            .map_err(|_| KeyRefusal::NotValid)?;
        let entry = entries.get(&digest).ok_or(KeyRefusal::NotValid)?;
        let at = self.now();
        if let Some(refusal) = entry.key.refusal(at) {
            return Err(refusal);
        }
        if entry.until.is_some_and(|until| until <= at) {
            return Err(KeyRefusal::NotValid);
        }
        if let Ok(mut uses) = self.inner.uses.lock() {
            uses.insert(entry.key.id, at);
        }
        Ok(actor_of(&entry.key))
    }

    /// Reads every key again, with the marker it was read at.
    pub async fn reload(&self) -> Result<(), ServiceError> {
        let _one = self.inner.reloading.lock().await;
        self.load().await
    }

    /// `reload`, under the caller's hold of `reloading`.
    async fn load(&self) -> Result<(), ServiceError> {
        // the marker first: a change committed after it is read again at the next poll
        let marker = self.inner.store.api_keys_marker().await?;
        let keys = self.inner.store.all_api_keys().await?;
        let mut entries = HashMap::with_capacity(keys.len());
        for key in keys {
            let key = Arc::new(key);
            if let Some((digest, until)) = key.previous {
                entries.insert(
                    digest,
                    Entry {
                        key: Arc::clone(&key),
                        until: Some(until),
                    },
                );
            }
            entries.insert(key.digest, Entry { key, until: None });
        }
        if let Ok(mut current) = self.inner.entries.write() {
            *current = Arc::new(entries);
        }
        if let Ok(mut m) = self.inner.marker.lock() {
            *m = Some(marker);
        }
        Ok(())
    }

    /// Reloads when the marker moved since the last load.
    async fn refresh(&self) -> Result<(), ServiceError> {
        let _one = self.inner.reloading.lock().await;
        let marker = self.inner.store.api_keys_marker().await?;
        let known = self.inner.marker.lock().ok().and_then(|m| *m);
        if known != Some(marker) {
            self.load().await?;
        }
        Ok(())
    }

    /// Writes the last-use times gathered since the last flush.
    pub async fn flush_uses(&self) -> Result<(), ServiceError> {
        let uses: Vec<(ApiKeyId, Timestamp)> = match self.inner.uses.lock() {
            Ok(mut uses) => uses.drain().collect(),
            Err(_) => return Ok(()),
        };
        if !uses.is_empty() {
            self.inner.store.touch_api_keys(&uses).await?;
        }
        Ok(())
    }

    /// Loads the ring and starts the task that keeps it current and flushes uses. The task
    /// ends with `KeyRingTask::stop`, or once the ring itself is gone; dropping the handle
    /// leaves it running.
    pub async fn start(&self) -> Result<KeyRingTask, ServiceError> {
        self.reload().await?;
        let (stop, stopped) = watch::channel(false);
        let handle = tokio::spawn(keep_current(Arc::downgrade(&self.inner), stopped));
        Ok(KeyRingTask { stop, handle })
    }
}

/// The running refresh of a `KeyRing`.
pub struct KeyRingTask {
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl KeyRingTask {
    /// Stops polling, writes the uses not yet written and waits for the task.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}

async fn keep_current(ring: Weak<RingInner>, mut stopped: watch::Receiver<bool>) {
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flush = tokio::time::interval(FLUSH_USES);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // a dropped handle leaves the task running: stop watching for a signal that cannot come
    let mut watching = true;
    loop {
        let stopping = tokio::select! {
            _ = poll.tick() => false,
            _ = flush.tick() => {
                let Some(inner) = ring.upgrade() else { return };
                report(KeyRing { inner }.flush_uses().await, "write API key uses");
                continue;
            }
            changed = stopped.changed(), if watching => match changed {
                Ok(()) => *stopped.borrow(),
                Err(_) => {
                    watching = false;
                    false
                }
            },
        };
        let Some(inner) = ring.upgrade() else { return };
        let ring_now = KeyRing { inner };
        if stopping {
            report(ring_now.flush_uses().await, "write API key uses");
            return;
        }
        report(ring_now.refresh().await, "reload API keys");
    }
}

fn report(result: Result<(), ServiceError>, what: &str) {
    match result {
        Ok(()) => {}
        Err(ServiceError::Internal(e)) if e.is_closed() => {}
        Err(e) => tracing::warn!(error = %e, "cannot {what}"),
    }
}

/// The actor a usable key speaks for.
fn actor_of(key: &ApiKey) -> Actor {
    Actor {
        subject: format!("apikey:{}", key.id),
        workspace_id: key.workspace_id,
        role: key.role,
        key: Some(KeyGrant {
            id: key.id,
            scopes: key.scopes,
            rate_limit: key.rate_limit,
        }),
    }
}
