//! Encryption at rest: every value baton writes to its database is sealed.
//!
//! ```text
//!   master key (a file or an environment variable, outside the database)
//!        │ wraps (XChaCha20-Poly1305)
//!   data key (random, stored wrapped in the `keyring` table)
//!        │ seals (XChaCha20-Poly1305, a random nonce per value)
//!   log entries, credentials, leases, key-value entries, snapshots
//! ```
//!
//! A sealed value is `MAGIC | nonce (24 bytes) | ciphertext`. The magic byte can never start
//! a JSON text, so values written before encryption existed are still read as they are, and
//! sealed when next written. Rotating the master key re-wraps the data key only: nothing else
//! is rewritten, and the node keeps serving while it happens.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use redb::{Database, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The data key, wrapped by the master key.
const KEYRING: TableDefinition<&str, &[u8]> = TableDefinition::new("keyring");
const MAGIC: u8 = 0xB7;
const NONCE_LEN: usize = 24;
/// Bound into the wrapping of the data key, so that a sealed value cannot pass for it.
const DATA_KEY_AD: &[u8] = b"baton data key v1";

/// Why the keys could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("a master key is 32 bytes, written as 64 hex digits or in base64")]
    BadMasterKey,
    #[error(
        "the master key (id {given}) does not open this data directory, whose data key is \
         wrapped by master key {expected}; give that key (or it as the previous key)"
    )]
    WrongMasterKey { given: String, expected: String },
    #[error("the system's random number generator failed")]
    Random,
    #[error("the keyring cannot be read or written: {0}")]
    Store(String),
}

/// A 256-bit master key. Its `Debug` shows only its id.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    pub fn generate() -> Result<MasterKey, KeyError> {
        random_key().map(MasterKey)
    }

    /// Reads 64 hex digits or base64 (surrounding whitespace ignored).
    pub fn from_text(text: &str) -> Result<MasterKey, KeyError> {
        let text = text.trim();
        let bytes = Zeroizing::new(if text.len() == 64 {
            hex_decode(text).ok_or(KeyError::BadMasterKey)?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| KeyError::BadMasterKey)?
        });
        let key: [u8; 32] = bytes[..].try_into().map_err(|_| KeyError::BadMasterKey)?;
        Ok(MasterKey(Zeroizing::new(key)))
    }

    /// The key in base64, for the file baton generates.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&self.0[..]))
    }

    /// A short public id: the first 8 bytes of the key's SHA-256, in hex.
    pub fn id(&self) -> String {
        let digest = Sha256::digest(&self.0[..]);
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(id {})", self.id())
    }
}

/// The master keys a store is opened with: the current one, and the one it replaces while a
/// rotation is under way.
#[derive(Clone, Debug)]
pub struct MasterKeys {
    pub current: MasterKey,
    pub previous: Option<MasterKey>,
}

/// The data key as stored: wrapped by the master key whose id it names.
#[derive(Serialize, Deserialize)]
struct WrappedKey {
    master_id: String,
    nonce: String,
    wrapped: String,
}

/// Seals and opens values with the data key.
pub(crate) struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    pub(crate) fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, String> {
        let nonce = random_nonce().map_err(|e| e.to_string())?;
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), plain)
            .map_err(|_| "sealing failed".to_owned())?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub(crate) fn open<'a>(&self, bytes: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, String> {
        match bytes.split_first() {
            Some((&MAGIC, rest)) if rest.len() >= NONCE_LEN => {
                let (nonce, sealed) = rest.split_at(NONCE_LEN);
                self.cipher
                    .decrypt(XNonce::from_slice(nonce), sealed)
                    .map(std::borrow::Cow::Owned)
                    .map_err(|_| "a sealed value does not open with the data key".to_owned())
            }
            Some((&MAGIC, _)) => Err("a sealed value is truncated".to_owned()),
            // Written before encryption existed: plain JSON.
            _ => Ok(std::borrow::Cow::Borrowed(bytes)),
        }
    }

    /// `value` as JSON, sealed.
    pub(crate) fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, String> {
        let plain = Zeroizing::new(serde_json::to_vec(value).map_err(|e| e.to_string())?);
        self.seal(&plain)
    }

    pub(crate) fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, String> {
        let plain = self.open(bytes)?;
        let value = serde_json::from_slice(&plain).map_err(|e| e.to_string());
        if let std::borrow::Cow::Owned(mut owned) = plain {
            zeroize::Zeroize::zeroize(&mut owned);
        }
        value
    }
}

/// The store's data key and the master key that wraps it; [`Keyring::rewrap`] rotates the
/// master key.
#[derive(Clone)]
pub struct Keyring {
    db: Arc<Database>,
    data_key: Arc<Zeroizing<[u8; 32]>>,
    master_id: Arc<RwLock<String>>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring(master id {})", self.master_id())
    }
}

impl Keyring {
    /// Loads the data key with `keys`, or creates one in a new store. A data key wrapped by
    /// `keys.previous` is re-wrapped by `keys.current`.
    pub(crate) fn load(db: Arc<Database>, keys: &MasterKeys) -> Result<Keyring, KeyError> {
        let store = |e: &dyn fmt::Display| KeyError::Store(e.to_string());
        let stored: Option<WrappedKey> = {
            let tx = db.begin_read().map_err(|e| store(&e))?;
            match tx.open_table(KEYRING) {
                Ok(table) => match table.get("data_key").map_err(|e| store(&e))? {
                    Some(v) => Some(serde_json::from_slice(v.value()).map_err(|e| store(&e))?),
                    None => None,
                },
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(store(&e)),
            }
        };
        let Some(stored) = stored else {
            let data_key = random_key()?;
            let keyring = Keyring::new(db, data_key, &keys.current);
            keyring.store(&keys.current)?;
            return Ok(keyring);
        };
        let candidates = std::iter::once(&keys.current).chain(keys.previous.as_ref());
        for master in candidates {
            if master.id() != stored.master_id {
                continue;
            }
            let data_key = unwrap(master, &stored).ok_or_else(|| KeyError::WrongMasterKey {
                given: master.id(),
                expected: stored.master_id.clone(),
            })?;
            let keyring = Keyring::new(db, data_key, master);
            if master.id() != keys.current.id() {
                keyring.rewrap(&keys.current)?;
            }
            return Ok(keyring);
        }
        Err(KeyError::WrongMasterKey {
            given: keys.current.id(),
            expected: stored.master_id,
        })
    }

    fn new(db: Arc<Database>, data_key: Zeroizing<[u8; 32]>, master: &MasterKey) -> Keyring {
        Keyring {
            db,
            data_key: Arc::new(data_key),
            master_id: Arc::new(RwLock::new(master.id())),
        }
    }

    pub(crate) fn sealer(&self) -> Sealer {
        Sealer {
            cipher: XChaCha20Poly1305::new((&**self.data_key).into()),
        }
    }

    /// The id of the master key that wraps the data key now.
    pub fn master_id(&self) -> String {
        self.master_id
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Wraps the data key with `master` from now on. The data itself is not rewritten, so the
    /// store keeps serving while this runs; the previous master key is no longer needed once
    /// it returns.
    pub fn rewrap(&self, master: &MasterKey) -> Result<(), KeyError> {
        self.store(master)?;
        *self
            .master_id
            .write()
            .unwrap_or_else(PoisonError::into_inner) = master.id();
        Ok(())
    }

    fn store(&self, master: &MasterKey) -> Result<(), KeyError> {
        let store = |e: &dyn fmt::Display| KeyError::Store(e.to_string());
        let nonce = random_nonce()?;
        let cipher = XChaCha20Poly1305::new((&*master.0).into());
        let payload = Payload {
            msg: &self.data_key[..],
            aad: DATA_KEY_AD,
        };
        let wrapped = cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .map_err(|_| KeyError::Store("wrapping the data key failed".into()))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let record = WrappedKey {
            master_id: master.id(),
            nonce: b64.encode(nonce),
            wrapped: b64.encode(wrapped),
        };
        let bytes = serde_json::to_vec(&record).map_err(|e| store(&e))?;
        let tx = self.db.begin_write().map_err(|e| store(&e))?;
        tx.open_table(KEYRING)
            .map_err(|e| store(&e))?
            .insert("data_key", bytes.as_slice())
            .map_err(|e| store(&e))?;
        tx.commit().map_err(|e| store(&e))
    }
}

fn unwrap(master: &MasterKey, stored: &WrappedKey) -> Option<Zeroizing<[u8; 32]>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let nonce = b64.decode(&stored.nonce).ok()?;
    let wrapped = b64.decode(&stored.wrapped).ok()?;
    if nonce.len() != NONCE_LEN {
        return None;
    }
    let cipher = XChaCha20Poly1305::new((&*master.0).into());
    let payload = Payload {
        msg: &wrapped,
        aad: DATA_KEY_AD,
    };
    let plain = Zeroizing::new(cipher.decrypt(XNonce::from_slice(&nonce), payload).ok()?);
    let key: [u8; 32] = plain[..].try_into().ok()?;
    Some(Zeroizing::new(key))
}

fn random_key() -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut key[..]).map_err(|_| KeyError::Random)?;
    Ok(key)
}

fn random_nonce() -> Result<[u8; NONCE_LEN], KeyError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| KeyError::Random)?;
    Ok(nonce)
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer {
            cipher: XChaCha20Poly1305::new((&[7u8; 32]).into()),
        }
    }

    #[test]
    fn a_sealed_value_opens_and_shows_nothing_of_the_plain_text() {
        let s = sealer();
        let bytes = s.encode(&"token-abc-123").unwrap();
        assert_eq!(bytes[0], MAGIC);
        assert!(!bytes.windows(13).any(|w| w == b"token-abc-123"));
        assert_eq!(s.decode::<String>(&bytes).unwrap(), "token-abc-123");
    }

    #[test]
    fn plain_json_written_before_encryption_still_reads() {
        assert_eq!(sealer().decode::<u32>(b"42").unwrap(), 42);
    }

    #[test]
    fn a_tampered_value_is_refused() {
        let s = sealer();
        let mut bytes = s.encode(&"x").unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(s.decode::<String>(&bytes).is_err());
    }

    #[test]
    fn master_keys_read_hex_and_base64_and_debug_shows_only_the_id() {
        let hex = "00".repeat(31) + "01";
        let a = MasterKey::from_text(&hex).unwrap();
        let b = MasterKey::from_text(&a.to_text()).unwrap();
        assert_eq!(a.id(), b.id());
        assert_eq!(format!("{a:?}"), format!("MasterKey(id {})", a.id()));
        assert!(MasterKey::from_text("short").is_err());
    }
}
