//! baton's issuers: how a credential's versions are made.
//!
//! Two steps, at two different moments:
//!
//! ```text
//!   what a user wrote          stored in the log            one version
//!   ─────────────────          ─────────────────            ───────────
//!   IssuerRequest ──prepare──▶ IssuerSpec (baton-core) ──mint(intent)──▶ Minted
//!    {env = …}, "generate"      secrets resolved,              token + window
//!                               keys generated
//! ```
//!
//! [`prepare`] runs once, on the node that receives the write: it reads environment variables
//! and files, and generates keys, so that every replica stores the same bytes. [`mint`] runs on
//! the leader for each rotation; for a `jwt` issuer it is a pure function of the spec, the
//! credential and the rotation intent, so minting an intent again (after a crash, or on a new
//! leader) yields the same token, byte for byte.
//!
//! Nothing in this crate prints a secret: tokens and keys are [`Secret`]s, and errors name the
//! variable, file or field at fault, never its content.

mod error;
mod exec;
mod expiry;
mod jwt;
mod keys;
mod oauth2;
mod request;
mod source;
mod static_issuer;

use baton_core::{Intent, IssuerSpec, Policy, Secret, Timestamp};

pub use error::{IssueError, PrepareError};
pub use request::{
    ClaimsRequest, ExecRequest, IssuerRequest, JwtRequest, KeyRequest, OAuth2Request, StaticRequest,
};
pub use source::SecretSource;

/// What [`mint`] needs to know besides the spec: which credential, and which rotation.
#[derive(Clone, Copy, Debug)]
pub struct MintRequest<'a> {
    /// The credential's name.
    pub credential: &'a str,
    /// The credential's uid: tells it apart from an earlier credential of the same name.
    pub uid: u64,
    /// The open rotation intent: its number and the window planned for the new version.
    pub intent: &'a Intent,
    /// The credential's policy. Under `overlap = none`, a jwt's `nbf` is not back-dated; the
    /// lifetimes bound what an outside issuer's answer is trusted for.
    pub policy: &'a Policy,
}

/// A freshly minted version, ready to be committed.
#[derive(Clone, Debug)]
pub struct Minted {
    pub token: Secret,
    /// The intent's `started_at`: mint time is the time stamped on the intent, never the clock
    /// read when the token was made.
    pub issued_at: Timestamp,
    /// Start of the window: the intent's for jwt and static, the time of the answer for
    /// oauth2 and exec.
    pub not_before: Timestamp,
    /// End of the window: the intent's, or earlier when the value itself expires sooner; for
    /// oauth2 and exec, from the issuer's answer (see the `expiry` module).
    pub expires_at: Timestamp,
    /// Something in the issuer's answer was ignored or read another way; for the log.
    pub note: Option<String>,
}

/// Turns a request into the spec the state machine stores: resolves secrets, and generates a
/// key when asked.
///
/// When `existing` is a jwt spec with the same algorithm and the request says `"generate"`, the
/// existing key (and its key id, unless the request names one) is kept, so that re-applying the
/// same configuration never changes the key.
pub fn prepare(
    req: IssuerRequest,
    existing: Option<&IssuerSpec>,
) -> Result<IssuerSpec, PrepareError> {
    match req {
        IssuerRequest::Jwt(req) => {
            let existing = match existing {
                Some(IssuerSpec::Jwt(spec)) => Some(spec),
                _ => None,
            };
            jwt::prepare(req, existing).map(IssuerSpec::Jwt)
        }
        IssuerRequest::Static(req) => static_issuer::prepare(req).map(IssuerSpec::Static),
        IssuerRequest::OAuth2(req) => oauth2::prepare(req).map(IssuerSpec::OAuth2),
        IssuerRequest::Exec(req) => exec::prepare(req).map(IssuerSpec::Exec),
    }
}

/// Mints the version `req.intent` describes.
///
/// For jwt this is a pure function of (spec, credential name, uid, intent): the same inputs give
/// identical bytes. The jwt and static issuers finish without waiting; oauth2 and exec call out
/// once, and their version is valid from the moment the answer arrives.
pub async fn mint(spec: &IssuerSpec, req: MintRequest<'_>) -> Result<Minted, IssueError> {
    if req.intent.expires_at <= req.intent.not_before {
        return Err(IssueError::EmptyWindow {
            not_before: req.intent.not_before,
            expires_at: req.intent.expires_at,
        });
    }
    let (token, said) = match spec {
        IssuerSpec::Jwt(spec) => return jwt::mint(spec, &req),
        IssuerSpec::Static(spec) => return static_issuer::mint(spec, req.intent),
        IssuerSpec::OAuth2(spec) => oauth2::issue(spec).await?,
        IssuerSpec::Exec(spec) => exec::issue(spec, &req).await?,
        other => return Err(IssueError::Unsupported { kind: other.kind() }),
    };
    let now = Timestamp::from_system_time(std::time::SystemTime::now()).max(req.intent.started_at);
    let window = expiry::window(now, token.expose(), &said, req.policy)?;
    Ok(Minted {
        token,
        issued_at: now,
        not_before: window.not_before,
        expires_at: window.expires_at,
        note: window.note,
    })
}

/// The JWKS document `{"keys": [...]}` with the public key of a jwt credential (with `kid`,
/// `alg` and `use = "sig"`); an error for other issuers.
pub fn jwks(spec: &IssuerSpec) -> Result<serde_json::Value, IssueError> {
    match spec {
        IssuerSpec::Jwt(spec) => jwt::jwks(spec),
        other => Err(IssueError::NoPublicKey { kind: other.kind() }),
    }
}

/// A description of a spec for people, safe to show anywhere: kind, algorithm, key id, claims
/// and clock allowance of a jwt issuer; expiry of a static one. Never the token or the key.
pub fn describe(spec: &IssuerSpec) -> serde_json::Value {
    match spec {
        IssuerSpec::Jwt(spec) => jwt::describe(spec),
        IssuerSpec::Static(spec) => static_issuer::describe(spec),
        IssuerSpec::OAuth2(spec) => oauth2::describe(spec),
        IssuerSpec::Exec(spec) => exec::describe(spec),
        other => serde_json::json!({ "kind": other.kind() }),
    }
}
