//! What the state machine stores about a credential's issuer.
//!
//! For the issuers baton controls (`jwt`, `static`) these are resolved specs: secrets are
//! values and a generated key is already generated, so every replica stores and mints from the
//! same bytes. The issuers that call out (`oauth2`, `exec`) may keep a secret as a reference
//! ([`SecretRef`]) that the issuer resolves each time it is used. Turning what a user wrote
//! into a spec, and minting, live in the issuers crate.

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
    /// The OAuth2 client-credentials grant (RFC 6749 §4.4) against a token endpoint.
    #[serde(rename = "oauth2")]
    OAuth2(OAuth2Spec),
    /// A command that prints a token and its expiry as JSON.
    Exec(ExecSpec),
}

impl IssuerSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            IssuerSpec::Jwt(_) => "jwt",
            IssuerSpec::Static(_) => "static",
            IssuerSpec::OAuth2(_) => "oauth2",
            IssuerSpec::Exec(_) => "exec",
        }
    }

    /// Whether minting the same intent twice yields the same token, so that an intent left
    /// open by a crash can be minted again at once instead of waiting out its deadline.
    pub fn is_idempotent(&self) -> bool {
        match self {
            IssuerSpec::Jwt(_) | IssuerSpec::Static(_) => true,
            IssuerSpec::OAuth2(_) | IssuerSpec::Exec(_) => false,
        }
    }

    /// Whether baton chooses the window of the versions it mints. Such issuers can mint a
    /// version ahead, valid from the current version's expiry; the others issue tokens valid
    /// at once (and may revoke the previous one when they do).
    pub fn sets_window(&self) -> bool {
        self.is_idempotent()
    }

    /// For issuers that call out, how long one call may take.
    pub fn call_timeout(&self) -> Option<Secs> {
        match self {
            IssuerSpec::Jwt(_) | IssuerSpec::Static(_) => None,
            IssuerSpec::OAuth2(spec) => Some(spec.timeout),
            IssuerSpec::Exec(spec) => Some(spec.timeout),
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

/// A secret given inline, or a reference resolved each time the secret is used. Its `Debug`
/// names the variable or file, and shows only the length and fingerprint of a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SecretRef {
    Env { env: String },
    File { file: std::path::PathBuf },
    Inline(Secret),
}

/// How the client authenticates at the token endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// HTTP Basic (`client_secret_basic`).
    #[default]
    Basic,
    /// In the form body (`client_secret_post`).
    Post,
}

/// An OAuth2 client of a token endpoint, with the client-credentials grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuth2Spec {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: SecretRef,
    #[serde(default)]
    pub auth_method: AuthMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Extra form parameters (`audience`, `resource`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// How long one call to the token endpoint may take.
    pub timeout: Secs,
}

/// A command run for each rotation; it prints the token and its expiry on stdout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// The program and its arguments; no shell is involved.
    pub command: Vec<String>,
    /// The whole environment of the command (nothing is inherited); values may be references.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<std::path::PathBuf>,
    /// The command is killed after this long.
    pub timeout: Secs,
}
