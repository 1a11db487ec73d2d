//! Secrets at rest (provider API keys, webhook signing secrets): sealed with
//! XChaCha20-Poly1305 under the master key from config, with the workspace and what the secret
//! is for as associated data, so a sealed secret copied to another row does not open. Plain
//! secrets live only in `SecretString`s and only for as long as they are used.

use crate::domain::{ProviderKind, SealedKey, WorkspaceId};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};

const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the master key must be 32 bytes, base64-encoded")]
    BadMasterKey,
    #[error("a stored API key could not be opened with the configured master key")]
    CannotOpen,
}

/// Seals and opens provider keys.
#[derive(Clone)]
pub struct KeySealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for KeySealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeySealer")
    }
}

impl KeySealer {
    /// From the configured master key: 32 bytes in base64.
    pub fn new(master_key: &SecretString) -> Result<Self, KeyError> {
        let bytes = STANDARD
            .decode(master_key.expose_secret().trim())
            .map_err(|_| KeyError::BadMasterKey)?;
        if bytes.len() != 32 {
            return Err(KeyError::BadMasterKey);
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| KeyError::BadMasterKey)?;
        Ok(Self { cipher })
    }

    /// A fresh random master key, base64-encoded (for `leadgate` documentation and tests).
    pub fn generate_master_key() -> String {
        STANDARD.encode(rand::random::<[u8; 32]>())
    }

    pub fn seal(&self, ws: WorkspaceId, provider: ProviderKind, key: &SecretString) -> SealedKey {
        self.seal_for(ws, provider.as_str(), key)
    }

    pub fn open(
        &self,
        ws: WorkspaceId,
        provider: ProviderKind,
        key: &SealedKey,
    ) -> Result<SecretString, KeyError> {
        self.open_for(ws, provider.as_str(), key)
    }

    /// Seals a secret of `ws` used for `purpose` (a provider name, `webhook:<id>`, …).
    pub fn seal_for(&self, ws: WorkspaceId, purpose: &str, key: &SecretString) -> SealedKey {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let aad = associated_data(ws, purpose);
        let plain = key.expose_secret();
        // Encryption with a valid key and nonce length cannot fail.
        let ciphertext = self
            .cipher
            .encrypt(
                &XNonce::from(nonce_bytes),
                Payload {
                    msg: plain.as_bytes(),
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend_from_slice(&ciphertext);
        let chars: Vec<char> = plain.chars().collect();
        let last4: String = chars[chars.len().saturating_sub(4)..].iter().collect();
        SealedKey {
            sealed: STANDARD.encode(sealed),
            last4,
        }
    }

    /// Opens what `seal_for` sealed for the same workspace and purpose.
    pub fn open_for(
        &self,
        ws: WorkspaceId,
        purpose: &str,
        key: &SealedKey,
    ) -> Result<SecretString, KeyError> {
        let raw = STANDARD.decode(&key.sealed).map_err(|_| KeyError::CannotOpen)?;
        if raw.len() <= NONCE_LEN {
            return Err(KeyError::CannotOpen);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| KeyError::CannotOpen)?;
        let aad = associated_data(ws, purpose);
        let plain = self
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| KeyError::CannotOpen)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| KeyError::CannotOpen)
    }
}

fn associated_data(ws: WorkspaceId, purpose: &str) -> Vec<u8> {
    let mut aad = ws.as_uuid().as_bytes().to_vec();
    aad.extend_from_slice(purpose.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> KeySealer {
        KeySealer::new(&SecretString::from(KeySealer::generate_master_key())).unwrap()
    }

    #[test]
    fn sealed_keys_open_again() {
        let s = sealer();
        let ws = WorkspaceId::new();
        let sealed = s.seal(ws, ProviderKind::Hunter, &SecretString::from("hk_live_123456789"));
        assert_eq!(sealed.last4, "6789");
        assert!(!sealed.sealed.contains("123456789"));
        let opened = s.open(ws, ProviderKind::Hunter, &sealed).unwrap();
        assert_eq!(opened.expose_secret(), "hk_live_123456789");
    }

    #[test]
    fn a_key_moved_to_another_workspace_or_provider_does_not_open() {
        let s = sealer();
        let ws = WorkspaceId::new();
        let sealed = s.seal(ws, ProviderKind::Hunter, &SecretString::from("secret-key"));
        assert_eq!(
            s.open(WorkspaceId::new(), ProviderKind::Hunter, &sealed)
                .unwrap_err(),
            KeyError::CannotOpen
        );
        assert_eq!(
            s.open(ws, ProviderKind::Apollo, &sealed).unwrap_err(),
            KeyError::CannotOpen
        );
    }

    #[test]
    fn another_master_key_cannot_open() {
        let ws = WorkspaceId::new();
        let sealed = sealer().seal(ws, ProviderKind::Clearbit, &SecretString::from("secret-key"));
        assert_eq!(
            sealer().open(ws, ProviderKind::Clearbit, &sealed).unwrap_err(),
            KeyError::CannotOpen
        );
    }

    #[test]
    fn master_keys_must_be_32_bytes_of_base64() {
        assert_eq!(
            KeySealer::new(&SecretString::from("short")).unwrap_err(),
            KeyError::BadMasterKey
        );
        assert_eq!(
            KeySealer::new(&SecretString::from(STANDARD.encode([0u8; 16]))).unwrap_err(),
            KeyError::BadMasterKey
        );
    }

    #[test]
    fn the_same_key_seals_differently_each_time() {
        let s = sealer();
        let ws = WorkspaceId::new();
        let k = SecretString::from("same");
        assert_ne!(
            s.seal(ws, ProviderKind::Hunter, &k).sealed,
            s.seal(ws, ProviderKind::Hunter, &k).sealed
        );
    }
}
