//! The two ways an issuer fails: a request that cannot become a spec ([`PrepareError`], the
//! user's to fix), and a spec that cannot mint ([`IssueError`], reported on the rotation).
//!
//! Messages are written for the person who wrote the configuration. They name the environment
//! variable, file or field at fault and never include a token, a key or a file's content.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use baton_core::{Algorithm, Timestamp};

/// Why a request could not be turned into a spec.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrepareError {
    #[error(
        "environment variable {name} is not set (references are read where the baton server runs)"
    )]
    EnvNotSet { name: String },

    #[error("environment variable {name} is not valid UTF-8")]
    EnvNotUnicode { name: String },

    #[error("cannot read {}: {source}", path.display())]
    ReadFile { path: PathBuf, source: io::Error },

    #[error("{} is not valid UTF-8", path.display())]
    FileNotUnicode { path: PathBuf },

    /// The key is not a PEM private key this crate can read for the chosen algorithm.
    #[error(
        "key: not a {formats} PEM private key for {algorithm:?}",
        formats = pem_formats(*.algorithm)
    )]
    InvalidKey { algorithm: Algorithm },

    /// The key parses, but for the other algorithm.
    #[error("key: this is {found}, but algorithm is {algorithm:?}")]
    KeyAlgorithmMismatch {
        algorithm: Algorithm,
        found: &'static str,
    },

    #[error("key: encrypted PEM keys are not supported; decrypt it first")]
    EncryptedKey,

    #[error("key: RSA keys must have at least {min} bits, this one has {bits}")]
    RsaKeyTooSmall { bits: usize, min: usize },

    /// The system's random number generator failed.
    #[error("key: cannot generate a {algorithm:?} key: {reason}")]
    KeyGeneration {
        algorithm: Algorithm,
        reason: String,
    },

    #[error("key_id: must not be empty")]
    EmptyKeyId,

    #[error("claims: claim `{claim}` is set by baton")]
    ReservedClaim { claim: String },

    #[error("claims: `aud` must be a string or a list of strings")]
    InvalidAudience,

    #[error("static: token is empty")]
    EmptyToken,

    #[error("static: expires_at `{value}` is not an RFC 3339 time (e.g. 2030-01-31T12:00:00Z)")]
    InvalidExpiresAt { value: String },

    /// A field of an oauth2 or exec issuer is unusable.
    #[error("{kind}: {field}: {reason}")]
    InvalidField {
        kind: &'static str,
        field: &'static str,
        reason: String,
    },
}

impl PrepareError {
    pub(crate) fn invalid(kind: &'static str, field: &'static str, reason: &str) -> Self {
        PrepareError::InvalidField {
            kind,
            field,
            reason: reason.to_owned(),
        }
    }
}

/// The timeout of one call to an outside issuer: `given`, or `default`, within [1s, 10m].
pub(crate) fn call_timeout(
    kind: &'static str,
    given: Option<baton_core::Secs>,
    default: baton_core::Secs,
) -> Result<baton_core::Secs, PrepareError> {
    let timeout = given.unwrap_or(default);
    if timeout == baton_core::Secs::ZERO || timeout > baton_core::Secs::from_mins(10) {
        return Err(PrepareError::invalid(
            kind,
            "timeout",
            "must lie within [1s, 10m]",
        ));
    }
    Ok(timeout)
}

fn pem_formats(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::EdDSA => "PKCS#8",
        Algorithm::RS256 => "PKCS#8 or PKCS#1",
    }
}

/// Why a version could not be minted, or a public key not shown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The rotation intent plans a window that ends before it starts.
    #[error("the planned window [{not_before}, {expires_at}) is empty")]
    EmptyWindow {
        not_before: Timestamp,
        expires_at: Timestamp,
    },

    /// The static value's own expiry leaves nothing of the planned window.
    #[error("static: the value expired at {expired_at}, set a new one")]
    StaticExpired { expired_at: Timestamp },

    /// The stored key does not parse for its algorithm (the spec was not made by `prepare`).
    #[error("jwt: the stored key is not a valid {algorithm:?} private key")]
    InvalidStoredKey { algorithm: Algorithm },

    #[error("jwt: signing failed: {reason}")]
    Signing { reason: String },

    #[error("{kind} credentials have no public key")]
    NoPublicKey { kind: &'static str },

    #[error("{kind} issuers are not supported by this version of baton")]
    Unsupported { kind: &'static str },

    /// A secret reference (`{env}` or `{file}`) could not be resolved when it was needed.
    #[error("{0}")]
    Secret(#[from] PrepareError),

    #[error("the issued token expired at {expired_at}, before baton could serve it")]
    AlreadyExpired { expired_at: Timestamp },

    #[error("expires_in {value} is negative")]
    NegativeExpiresIn { value: String },

    /// The token would never have `min_remaining` left: no read could be given it.
    #[error(
        "the issued token is valid for {lifetime_ms} ms, not more than min_remaining \
         ({min_remaining}): it could never be served"
    )]
    TooShortToServe {
        lifetime_ms: u64,
        min_remaining: baton_core::Secs,
    },

    /// The token endpoint could not be reached; nothing was sent.
    #[error("oauth2: cannot reach the token endpoint: {reason}")]
    Unreachable { reason: String },

    /// The issuer answered with an error status. `detail` holds the OAuth2 `error` and
    /// `error_description` when the answer has them, never the raw body.
    #[error("oauth2: the token endpoint answered HTTP {status}{detail}")]
    Status {
        status: u16,
        detail: String,
        /// From `Retry-After` on a 429 or 503.
        retry_after: Option<Duration>,
    },

    /// The answer (an HTTP body, a command's stdout) is not what the issuer kind expects.
    #[error("{kind}: {reason}")]
    BadAnswer { kind: &'static str, reason: String },

    /// The call may or may not have produced a token: it timed out after the request was sent
    /// (or the command started). Not repeated before the rotation's intent deadline.
    #[error("{kind}: no answer within {timeout:?}; the outcome is unknown")]
    OutcomeUnknown {
        kind: &'static str,
        timeout: Duration,
    },

    #[error("exec: cannot run `{program}`: {reason}")]
    Spawn { program: String, reason: String },

    /// The command exited unsuccessfully; `stderr` is its trimmed standard error.
    #[error("exec: the command exited with {status}{stderr}")]
    ExitStatus { status: String, stderr: String },
}

impl IssueError {
    /// How long the issuer asked baton to wait before calling again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            IssueError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the call may have produced a token that baton never saw.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, IssueError::OutcomeUnknown { .. })
    }
}
