//! Connections per token: a count per token (kept as its SHA-256, not the token itself) that
//! a `ConnectionPermit` holds while its connection lives and gives back when dropped.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

type TokenHash = [u8; 32];

/// Counts open connections per token, shared by every session of one server.
#[derive(Clone)]
pub struct ConnectionLimiter {
    max: usize,
    open: Arc<Mutex<HashMap<TokenHash, usize>>>,
}

/// One counted connection; dropping it releases the slot.
pub struct ConnectionPermit {
    token: TokenHash,
    open: Arc<Mutex<HashMap<TokenHash, usize>>>,
}

impl ConnectionLimiter {
    /// Allows `max` connections at once per token.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    /// A permit for one more connection with `token`, unless it already has `max`.
    pub fn try_acquire(&self, token: &str) -> Option<ConnectionPermit> {
        let hash: TokenHash = Sha256::digest(token.as_bytes()).into();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(hash).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ConnectionPermit {
            token: hash,
            open: self.open.clone(),
        })
    }

    /// Connections currently open with `token`.
    pub fn open_for(&self, token: &str) -> usize {
        let hash: TokenHash = Sha256::digest(token.as_bytes()).into();
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&hash).copied().unwrap_or(0)
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.token) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_gets_at_most_max_permits() {
        let limiter = ConnectionLimiter::new(2);
        let a = limiter.try_acquire("t");
        let b = limiter.try_acquire("t");
        assert!(a.is_some() && b.is_some());
        assert!(limiter.try_acquire("t").is_none());
        assert!(limiter.try_acquire("other").is_some());
    }

    #[test]
    fn dropping_a_permit_releases_its_slot() {
        let limiter = ConnectionLimiter::new(1);
        let permit = limiter.try_acquire("t");
        assert_eq!(limiter.open_for("t"), 1);
        drop(permit);
        assert_eq!(limiter.open_for("t"), 0);
        assert!(limiter.try_acquire("t").is_some());
    }
}
