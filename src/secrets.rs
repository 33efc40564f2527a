//! The hub's seal key: secrets the hub itself must read back (TOTP secrets, the cloud
//! store's secret access key) are kept in the database only sealed with it.
//!
//! ChaCha20-Poly1305 with a random 32-byte key in its own file beside the database
//! (`totp.key`, 0600; the name is from when it sealed TOTP secrets only), so a copy of
//! `homehub.db` alone gives none of them away. Each sealed value is bound to a context
//! string (whose secret it is): moved to another row or purpose, it does not open.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::error::{Error, Result};

/// The key's file in the data dir.
pub const KEY_FILE: &str = "totp.key";

/// The key secrets are sealed with.
pub struct SealKey {
    cipher: ChaCha20Poly1305,
}

impl SealKey {
    /// Reads `dir/totp.key`, or makes it (32 random bytes, 0600) when there is none.
    pub fn load_or_create(dir: &Path) -> Result<SealKey> {
        let path: PathBuf = dir.join(KEY_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| Error::internal(format!("{}: cannot create: {e}", path.display())))?;
                f.write_all(&key)
                    .and_then(|_| f.sync_all())
                    .map_err(|e| Error::internal(format!("{}: cannot write: {e}", path.display())))?;
                key.to_vec()
            }
            Err(e) => return Err(Error::internal(format!("{}: cannot read: {e}", path.display()))),
        };
        if bytes.len() != 32 {
            return Err(Error::invalid(format!("{}: not a key (expected 32 bytes, found {})", path.display(), bytes.len())));
        }
        Ok(SealKey { cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)) })
    }

    #[cfg(test)]
    pub fn for_tests() -> SealKey {
        SealKey { cipher: ChaCha20Poly1305::new(Key::from_slice(&[7u8; 32])) }
    }

    /// `secret` sealed under `context` (a random nonce, then the ciphertext).
    pub fn seal(&self, context: &str, secret: &[u8]) -> Result<Vec<u8>> {
        let nonce: [u8; 12] = rand::random();
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret, aad: context.as_bytes() })
            .map_err(|_| Error::internal("sealing a secret failed"))?;
        Ok([nonce.as_slice(), &ct].concat())
    }

    /// Opens what [`SealKey::seal`] sealed under the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < 12 + 16 {
            return Err(Error::internal(format!("a sealed secret ({context}) is too short")));
        }
        let (nonce, ct) = sealed.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: context.as_bytes() })
            .map_err(|_| Error::internal(format!("a sealed secret ({context}) does not open with {KEY_FILE}")))
    }
}
