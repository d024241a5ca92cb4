//! Commands the state machine applies, and what it answers.

use serde::{Deserialize, Serialize};

use crate::{Intent, IssuerSpec, NameError, Policy, PolicyError, Secret, Timestamp};

/// A replicated command: an operation and the leader's time when it was proposed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub now: Timestamp,
    pub op: Op,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationReason {
    /// The policy says the newest version needs a successor.
    Scheduled,
    /// Someone asked (`POST /v1/credentials/{name}/rotate`).
    Manual,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Op {
    /// Creates a credential or replaces its issuer and policy. Versions already committed stay.
    PutCredential {
        name: String,
        issuer: IssuerSpec,
        policy: Policy,
    },
    DeleteCredential {
        name: String,
    },
    /// Opens a rotation intent. Refused while another intent is open and before its deadline.
    BeginRotation {
        name: String,
        deadline: Timestamp,
        reason: RotationReason,
    },
    /// The issuer's result for the intent with this fence.
    CommitRotation {
        name: String,
        fence: u64,
        token: Secret,
        issued_at: Timestamp,
        not_before: Timestamp,
        expires_at: Timestamp,
    },
    /// Grants the lease to `holder` if it is free or expired. Asked again by the holder of a
    /// live grant, it renews that grant and answers the same fence, so a retry is harmless.
    AcquireLease {
        name: String,
        holder: String,
        ttl_ms: u64,
    },
    /// Extends a live grant; refused unless `holder` holds it under `fence`.
    RenewLease {
        name: String,
        holder: String,
        fence: u64,
    },
    /// Ends a grant; refused unless `holder` holds (or was the last to hold) it under `fence`.
    ReleaseLease {
        name: String,
        holder: String,
        fence: u64,
    },
    /// Writes a key. With `if_revision`, only if the key's revision is that (0: absent). With
    /// `lease`, only while that grant is live; the key disappears when the grant ends.
    PutKv {
        key: String,
        value: serde_json::Value,
        if_revision: Option<u64>,
        lease: Option<crate::LeaseRef>,
    },
    /// Deletes a key, with the same `if_revision` condition as `PutKv`.
    DeleteKv {
        key: String,
        if_revision: Option<u64>,
    },
    /// The issuer failed for the intent with this fence; try again no earlier than `retry_at`.
    ///
    /// With `unknown`, the call's outcome is not known (it timed out after the request was
    /// sent): the issuer may have issued a token. The failure is recorded but the intent stays
    /// open until its deadline, so that no new call is made before then.
    FailRotation {
        name: String,
        fence: u64,
        error: String,
        retry_at: Timestamp,
        #[serde(default)]
        unknown: bool,
    },
    /// Records an access token (its hash, never the token) under its accessor.
    CreateToken(crate::NewToken),
    /// Removes the access token with this accessor.
    RevokeToken {
        accessor: String,
    },
    /// Creates or replaces an access policy (`root` is built in and refused).
    PutAccessPolicy {
        name: String,
        policy: crate::AccessPolicy,
    },
    DeleteAccessPolicy {
        name: String,
    },
}

impl Op {
    /// The name the operation is about: a credential, a lease or a key.
    pub fn target(&self) -> &str {
        match self {
            Op::PutCredential { name, .. }
            | Op::DeleteCredential { name }
            | Op::BeginRotation { name, .. }
            | Op::CommitRotation { name, .. }
            | Op::FailRotation { name, .. }
            | Op::AcquireLease { name, .. }
            | Op::RenewLease { name, .. }
            | Op::ReleaseLease { name, .. } => name,
            Op::PutKv { key, .. } | Op::DeleteKv { key, .. } => key,
            Op::CreateToken(new) => &new.accessor,
            Op::RevokeToken { accessor } => accessor,
            Op::PutAccessPolicy { name, .. } | Op::DeleteAccessPolicy { name } => name,
        }
    }
}

/// What a successful command produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Output {
    /// The log entry carried no command (a Raft blank or membership entry).
    None,
    Put {
        created: bool,
        changed: bool,
    },
    Deleted {
        existed: bool,
    },
    RotationStarted(Intent),
    RotationCommitted {
        version: u64,
        not_before: Timestamp,
        expires_at: Timestamp,
    },
    RotationFailed {
        attempts: u32,
    },
    /// `renewed`: the holder already held it, and the grant was extended.
    LeaseGranted {
        fence: u64,
        expires_at: Timestamp,
        renewed: bool,
    },
    LeaseRenewed {
        fence: u64,
        expires_at: Timestamp,
    },
    /// `released` is false when the grant had already ended (a retried release).
    LeaseReleased {
        fence: u64,
        released: bool,
    },
    KvPut {
        revision: u64,
        created: bool,
    },
    KvDeleted {
        existed: bool,
    },
    TokenCreated {
        expires_at: Option<Timestamp>,
    },
}

/// A command the state machine refused. Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    #[error(transparent)]
    InvalidName(#[from] NameError),
    #[error(transparent)]
    InvalidPolicy(#[from] PolicyError),
    #[error("the issuer is invalid: {0}")]
    InvalidIssuer(String),
    #[error("no credential is named `{0}`")]
    NotFound(String),
    #[error("rotation {rotation} is already in progress (its intent expires at {deadline})")]
    RotationInProgress { rotation: u64, deadline: Timestamp },
    #[error("version {version} is already minted and becomes valid at {not_before}")]
    NextAlreadyMinted { version: u64, not_before: Timestamp },
    #[error(
        "version {version} has been in use for less than min_use; it can be replaced from \
         {until}"
    )]
    MinUseNotReached { version: u64, until: Timestamp },
    #[error("lease `{name}` is held by `{holder}` until {expires_at}")]
    LeaseHeld {
        name: String,
        holder: String,
        expires_at: Timestamp,
    },
    #[error(
        "not owner: lease `{name}` is not held by this holder with fence {fence} ({})",
        match current {
            Some(f) => format!("it is held with fence {f}"),
            None => "nobody holds it".to_owned(),
        }
    )]
    NotOwner {
        name: String,
        fence: u64,
        current: Option<u64>,
    },
    #[error("lease `{name}` with fence {fence} expired at {expired_at}; acquire it again")]
    LeaseExpired {
        name: String,
        fence: u64,
        expired_at: Timestamp,
    },
    #[error("ttl must lie within [{min_ms} ms, {max_ms} ms], got {ttl_ms} ms")]
    InvalidTtl {
        ttl_ms: u64,
        min_ms: u64,
        max_ms: u64,
    },
    #[error("invalid holder: 1 to 256 characters expected")]
    InvalidHolder,
    #[error("key `{key}` is at revision {actual:?}, not {expected}")]
    RevisionMismatch {
        key: String,
        expected: u64,
        actual: Option<u64>,
    },
    #[error("the access policy is invalid: {0}")]
    InvalidAccessPolicy(String),
    #[error("no access policy is named `{0}`")]
    NoSuchAccessPolicy(String),
    #[error("fence {fence} is stale: the open rotation has fence {open:?}")]
    StaleFence { fence: u64, open: Option<u64> },
    #[error("the issued window [{not_before}, {expires_at}) is empty or already over")]
    InvalidWindow {
        not_before: Timestamp,
        expires_at: Timestamp,
    },
    #[error(
        "overlap = none: the new version starts at {not_before}, before version {version} \
         expires at {expires_at}"
    )]
    Overlap {
        version: u64,
        not_before: Timestamp,
        expires_at: Timestamp,
    },
}

/// The state machine's answer to one command.
pub type Response = Result<Output, CommandError>;
