//! Signing keys of the jwt issuer: generated, or imported from PEM, and stored as PKCS#8 PEM.
//!
//! Every key is normalised before it is stored: PKCS#1 RSA keys become PKCS#8, and Ed25519
//! keys are stored without the optional public key (the 48-byte form `openssl genpkey` writes),
//! so that every replica stores, and signs with, exactly the same bytes.

use baton_core::{Algorithm, Secret};
use ed25519_dalek::pkcs8::KeypairBytes;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::EncodingKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use zeroize::Zeroizing;

use crate::PrepareError;

/// The size of the RSA keys baton generates, and the smallest it imports.
const RSA_BITS: usize = 2048;

/// How many characters of the key's RFC 7638 thumbprint make its default key id.
const KEY_ID_LEN: usize = 16;

/// A new private key for `algorithm`, as PKCS#8 PEM.
pub(crate) fn generate(algorithm: Algorithm) -> Result<Secret, PrepareError> {
    let failed = |reason: String| PrepareError::KeyGeneration { algorithm, reason };
    match algorithm {
        Algorithm::EdDSA => {
            let mut seed = Zeroizing::new([0u8; 32]);
            getrandom::fill(seed.as_mut()).map_err(|e| failed(e.to_string()))?;
            ed25519_pem(&seed)
        }
        Algorithm::RS256 => {
            let key = rsa::PrivateKey::new(&mut getrandom::SysRng, RSA_BITS)
                .map_err(|e| failed(e.to_string()))?;
            rsa_pem(&key)
        }
    }
}

/// Reads a PEM private key for `algorithm` and returns it as PKCS#8 PEM. Accepts PKCS#8 for
/// both algorithms and PKCS#1 for RSA. Errors never include the input.
pub(crate) fn import(algorithm: Algorithm, pem: &Secret) -> Result<Secret, PrepareError> {
    let text = unescape_newlines(pem.expose().trim());
    if text.contains("ENCRYPTED") {
        // `BEGIN ENCRYPTED PRIVATE KEY` (PKCS#8) or `Proc-Type: 4,ENCRYPTED` (OpenSSL PKCS#1).
        return Err(PrepareError::EncryptedKey);
    }
    match algorithm {
        Algorithm::EdDSA => match ed25519_dalek::SigningKey::from_pkcs8_pem(&text) {
            Ok(key) => ed25519_pem(&key.to_bytes()),
            Err(_) if parse_rsa(&text).is_some() => Err(PrepareError::KeyAlgorithmMismatch {
                algorithm,
                found: "an RSA private key",
            }),
            Err(_) => Err(PrepareError::InvalidKey { algorithm }),
        },
        Algorithm::RS256 => match parse_rsa(&text) {
            Some(key) if key.size() * 8 < RSA_BITS => Err(PrepareError::RsaKeyTooSmall {
                bits: key.size() * 8,
                min: RSA_BITS,
            }),
            Some(key) => rsa_pem(&key),
            None if ed25519_dalek::SigningKey::from_pkcs8_pem(&text).is_ok() => {
                Err(PrepareError::KeyAlgorithmMismatch {
                    algorithm,
                    found: "an Ed25519 private key",
                })
            }
            None => Err(PrepareError::InvalidKey { algorithm }),
        },
    }
}

/// The default key id: the first characters of the key's RFC 7638 thumbprint (SHA-256,
/// base64url), so that the same key always gets the same id.
pub(crate) fn derive_key_id(algorithm: Algorithm, pem: &Secret) -> Result<String, PrepareError> {
    let invalid = |_| PrepareError::InvalidKey { algorithm };
    let key = encoding_key(algorithm, pem).map_err(invalid)?;
    let jwk = Jwk::from_encoding_key(&key, jwt_algorithm(algorithm)).map_err(invalid)?;
    let thumbprint = jwk.thumbprint(ThumbprintHash::SHA256).map_err(invalid)?;
    Ok(thumbprint.chars().take(KEY_ID_LEN).collect())
}

/// The key in the form jsonwebtoken signs with.
pub(crate) fn encoding_key(
    algorithm: Algorithm,
    pem: &Secret,
) -> Result<EncodingKey, jsonwebtoken::errors::Error> {
    match algorithm {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.expose().as_bytes()),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.expose().as_bytes()),
    }
}

pub(crate) fn jwt_algorithm(algorithm: Algorithm) -> jsonwebtoken::Algorithm {
    match algorithm {
        Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
    }
}

fn parse_rsa(text: &str) -> Option<rsa::PrivateKey> {
    rsa::PrivateKey::from_pkcs8_pem(text)
        .ok()
        .or_else(|| rsa::PrivateKey::from_pkcs1_pem(text).ok())
}

/// PKCS#8 v1 (no public key): the form jsonwebtoken derives the public JWK from.
fn ed25519_pem(seed: &[u8; 32]) -> Result<Secret, PrepareError> {
    let pair = KeypairBytes {
        secret_key: *seed,
        public_key: None,
    };
    let pem = pair
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| PrepareError::InvalidKey {
            algorithm: Algorithm::EdDSA,
        })?;
    Ok(Secret::new(pem.as_str()))
}

fn rsa_pem(key: &rsa::PrivateKey) -> Result<Secret, PrepareError> {
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| PrepareError::InvalidKey {
            algorithm: Algorithm::RS256,
        })?;
    Ok(Secret::new(pem.as_str()))
}

/// A PEM that went through a single-line environment variable often arrives with `\n` written
/// out as two characters; such a value has no real newline at all.
fn unescape_newlines(text: &str) -> Zeroizing<String> {
    if !text.contains('\n') && text.contains("\\n") {
        Zeroizing::new(text.replace("\\n", "\n"))
    } else {
        Zeroizing::new(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ed25519_key_is_stored_as_pkcs8_without_public_key() {
        let pem = generate(Algorithm::EdDSA).unwrap();
        assert!(pem.expose().starts_with("-----BEGIN PRIVATE KEY-----\n"));
        // Re-importing a stored key changes nothing.
        assert_eq!(import(Algorithm::EdDSA, &pem).unwrap(), pem);
        let key = encoding_key(Algorithm::EdDSA, &pem).unwrap();
        assert_eq!(key.as_bytes().len(), 48);
    }

    #[test]
    fn key_id_is_stable_and_short() {
        let pem = generate(Algorithm::EdDSA).unwrap();
        let id = derive_key_id(Algorithm::EdDSA, &pem).unwrap();
        assert_eq!(id.len(), KEY_ID_LEN);
        assert_eq!(derive_key_id(Algorithm::EdDSA, &pem).unwrap(), id);
        let other = generate(Algorithm::EdDSA).unwrap();
        assert_ne!(derive_key_id(Algorithm::EdDSA, &other).unwrap(), id);
    }

    #[test]
    fn escaped_newlines_are_restored() {
        let pem = generate(Algorithm::EdDSA).unwrap();
        let one_line = Secret::new(pem.expose().replace('\n', "\\n"));
        assert_eq!(import(Algorithm::EdDSA, &one_line).unwrap(), pem);
    }

    #[test]
    fn encrypted_keys_are_refused_by_name() {
        let pem = Secret::new(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        let err = import(Algorithm::RS256, &pem).unwrap_err();
        assert!(matches!(err, PrepareError::EncryptedKey), "{err:?}");
    }
}
