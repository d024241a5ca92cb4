//! The jwt issuer: baton signs a JWT with a key it holds.
//!
//! Minting is a pure function of the spec, the credential and the rotation intent. Every time in
//! the token comes from the intent (stamped by the leader when the rotation began), the `jti`
//! from the credential and rotation number, and both algorithms sign deterministically
//! (Ed25519, RSASSA-PKCS1-v1_5), so minting an intent twice yields the same bytes.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use baton_core::{Algorithm, Claims, JwtSpec, Overlap, Secret, Secs};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::Header;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::request::{ClaimsRequest, JwtRequest};
use crate::{keys, IssueError, MintRequest, Minted, PrepareError};

/// The clock allowance when a request names none.
pub(crate) const DEFAULT_CLOCK_ALLOWANCE: Secs = Secs(30);

/// Claims baton computes for every token; a template may not set them.
const RESERVED_CLAIMS: [&str; 4] = ["iat", "nbf", "exp", "jti"];

pub(crate) fn prepare(
    req: JwtRequest,
    existing: Option<&JwtSpec>,
) -> Result<JwtSpec, PrepareError> {
    let algorithm = req.algorithm.unwrap_or(Algorithm::EdDSA);
    let claims = claims(req.claims)?;

    // "generate" keeps the key already stored for this algorithm: applying the same
    // configuration twice must not rotate the key under the verifiers.
    let (private_key, kept_key_id) = match req.key.source() {
        None => match existing.filter(|spec| spec.algorithm == algorithm) {
            Some(spec) => (spec.private_key.clone(), Some(spec.key_id.clone())),
            None => (keys::generate(algorithm)?, None),
        },
        Some(source) => (keys::import(algorithm, &source.resolve()?)?, None),
    };

    let key_id = match (req.key_id, kept_key_id) {
        (Some(id), _) if id.trim().is_empty() => return Err(PrepareError::EmptyKeyId),
        (Some(id), _) | (None, Some(id)) => id,
        (None, None) => keys::derive_key_id(algorithm, &private_key)?,
    };

    Ok(JwtSpec {
        algorithm,
        key_id,
        private_key,
        claims,
        clock_allowance: req.clock_allowance.unwrap_or(DEFAULT_CLOCK_ALLOWANCE),
    })
}

fn claims(req: ClaimsRequest) -> Result<Claims, PrepareError> {
    if let Some(claim) = RESERVED_CLAIMS
        .iter()
        .find(|c| req.custom.contains_key(**c))
    {
        return Err(PrepareError::ReservedClaim {
            claim: (*claim).to_owned(),
        });
    }
    let aud_ok = match &req.aud {
        None | Some(Value::String(_)) => true,
        Some(Value::Array(items)) => items.iter().all(Value::is_string),
        Some(_) => false,
    };
    if !aud_ok {
        return Err(PrepareError::InvalidAudience);
    }
    Ok(Claims {
        iss: req.iss,
        sub: req.sub,
        aud: req.aud,
        custom: req.custom,
    })
}

pub(crate) fn mint(spec: &JwtSpec, req: &MintRequest<'_>) -> Result<Minted, IssueError> {
    let key = keys::encoding_key(spec.algorithm, &spec.private_key).map_err(|_| {
        IssueError::InvalidStoredKey {
            algorithm: spec.algorithm,
        }
    })?;
    let mut header = Header::new(keys::jwt_algorithm(spec.algorithm));
    header.kid = Some(spec.key_id.clone());

    let token = jsonwebtoken::encode(&header, &payload(spec, req), &key).map_err(|e| {
        IssueError::Signing {
            reason: e.to_string(),
        }
    })?;
    Ok(Minted {
        token: Secret::new(token),
        issued_at: req.intent.started_at,
        not_before: req.intent.not_before,
        expires_at: req.intent.expires_at,
        note: None,
    })
}

/// The token's claims: the template's custom claims, then `iss`/`sub`/`aud`, then the four
/// baton sets. A sorted map, so the serialized payload does not depend on serde_json features.
fn payload(spec: &JwtSpec, req: &MintRequest<'_>) -> BTreeMap<String, Value> {
    let intent = req.intent;
    let allowance = spec.clock_allowance;
    let mut claims = spec.claims.custom.clone();

    let template = [("iss", &spec.claims.iss), ("sub", &spec.claims.sub)];
    for (name, value) in template {
        if let Some(value) = value {
            claims.insert(name.to_owned(), Value::from(value.as_str()));
        }
    }
    if let Some(aud) = &spec.claims.aud {
        claims.insert("aud".to_owned(), aud.clone());
    }

    // Under overlap = none the window must be exact: version k+1 may not be accepted while
    // version k still is.
    let nbf = match req.policy.overlap {
        Overlap::None => intent.not_before,
        Overlap::Allowed => intent.not_before.sub(allowance),
    };
    let iat = intent.started_at.sub(allowance);
    claims.insert("iat".to_owned(), iat.as_secs().into());
    claims.insert("nbf".to_owned(), nbf.as_secs().into());
    claims.insert("exp".to_owned(), intent.expires_at.as_secs().into());
    claims.insert(
        "jti".to_owned(),
        jti(req.credential, req.uid, intent.rotation).into(),
    );
    claims
}

/// Unique per (credential, rotation) and the same every time that rotation is minted: the
/// first 16 bytes of SHA-256 over `name \0 uid \0 rotation`, base64url.
fn jti(credential: &str, uid: u64, rotation: u64) -> String {
    let digest = Sha256::digest(format!("{credential}\0{uid}\0{rotation}"));
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

pub(crate) fn jwks(spec: &JwtSpec) -> Result<Value, IssueError> {
    let invalid = |_| IssueError::InvalidStoredKey {
        algorithm: spec.algorithm,
    };
    let key = keys::encoding_key(spec.algorithm, &spec.private_key).map_err(invalid)?;
    let mut jwk =
        Jwk::from_encoding_key(&key, keys::jwt_algorithm(spec.algorithm)).map_err(invalid)?;
    jwk.common.key_id = Some(spec.key_id.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok(json!({ "keys": [jwk] }))
}

pub(crate) fn describe(spec: &JwtSpec) -> Value {
    json!({
        "kind": "jwt",
        "algorithm": spec.algorithm,
        "key_id": spec.key_id,
        "claims": spec.claims,
        "clock_allowance": spec.clock_allowance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jti_differs_by_name_uid_and_rotation() {
        let base = jti("api", 1, 1);
        assert_eq!(base, jti("api", 1, 1));
        assert_eq!(base.len(), 22);
        assert_ne!(base, jti("api", 1, 2));
        assert_ne!(base, jti("api", 2, 1));
        assert_ne!(base, jti("apj", 1, 1));
        // The separator keeps "a1" + uid 1 apart from "a" + uid 11.
        assert_ne!(jti("a1", 1, 1), jti("a", 11, 1));
    }
}
