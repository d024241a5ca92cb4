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
    /// The issuer failed for the intent with this fence; try again no earlier than `retry_at`.
    FailRotation {
        name: String,
        fence: u64,
        error: String,
        retry_at: Timestamp,
    },
}

impl Op {
    /// The credential the operation is about.
    pub fn credential(&self) -> &str {
        match self {
            Op::PutCredential { name, .. }
            | Op::DeleteCredential { name }
            | Op::BeginRotation { name, .. }
            | Op::CommitRotation { name, .. }
            | Op::FailRotation { name, .. } => name,
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
