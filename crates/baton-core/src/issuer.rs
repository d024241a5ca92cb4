//! What the state machine stores about a credential's issuer.
//!
//! These are resolved specs: secrets are values (never `{ env = … }` references) and a
//! generated key is already generated, so every replica stores and mints from the same bytes.
//! Turning what a user wrote into a spec, and minting, live in the issuers crate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Secret, Secs, Timestamp};

/// How versions of a credential are made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[non_exhaustive]
pub enum IssuerSpec {
    /// baton signs a JWT itself.
    Jwt(JwtSpec),
    /// A value set by hand; baton stores and serves it.
    Static(StaticSpec),
}

impl IssuerSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            IssuerSpec::Jwt(_) => "jwt",
            IssuerSpec::Static(_) => "static",
        }
    }

    /// Whether minting the same intent twice yields the same token, so that an intent left
    /// open by a crash can be minted again at once instead of waiting out its deadline.
    pub fn is_idempotent(&self) -> bool {
        match self {
            IssuerSpec::Jwt(_) | IssuerSpec::Static(_) => true,
        }
    }
}

/// JWS algorithms baton signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// Ed25519.
    EdDSA,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtSpec {
    pub algorithm: Algorithm,
    /// The `kid` header, and the key's id in the JWKS document.
    pub key_id: String,
    /// The signing key as PKCS#8 PEM.
    pub private_key: Secret,
    #[serde(default)]
    pub claims: Claims,
    /// How far `iat` (and `nbf` when versions may overlap) is back-dated, for verifiers whose
    /// clocks run behind.
    pub clock_allowance: Secs,
}

/// The claims template of a JWT. `iat`, `nbf`, `exp` and `jti` are set by baton.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// A string or a list of strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
    /// Any other claims, copied as they are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticSpec {
    pub token: Secret,
    /// When the value stops being valid, if it ever does. Versions never outlive it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}
