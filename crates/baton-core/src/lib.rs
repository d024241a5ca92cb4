//! baton's core: the replicated state machine and the types it is made of.
//!
//! Everything here is pure. No I/O happens and no clock is read: time enters as a field of each
//! [`Command`], stamped by the Raft leader, so every replica that applies the same log computes
//! the same [`State`]. Effects (calling an issuer, waking a reader) are decided elsewhere from
//! what this crate returns.
//!
//! How a rotation flows through the state machine:
//!
//! ```text
//!   rotation engine                      state machine (this crate)
//!   ───────────────                      ──────────────────────────
//!   due(credential) ≤ now ──BeginRotation──▶ intent {rotation k+1, fence f, window, deadline}
//!   issuer.mint(intent)                        (a second Begin is refused until the deadline)
//!        │ ok ─────────────CommitRotation(f)─▶ version k+1 becomes `current`, or `next`
//!        │                                     when its window starts later (overlap = none)
//!        └ error ──────────FailRotation(f)───▶ attempts += 1, retry_at
//!   a result whose fence f is no longer the open intent's is refused: StaleFence
//! ```

mod auth;
mod command;
mod credential;
mod duration;
mod issuer;
mod lease;
mod policy;
mod secret;
mod state;
mod time;

pub use auth::{
    glob_match, token_accessor, token_hash, AccessPolicy, AuthState, Capability, NewToken, Rule,
    TokenRecord, ROOT_POLICY,
};
pub use command::{Command, CommandError, Op, Output, Response, RotationReason};
pub use credential::{Credential, Due, Intent, RotationStatus, TokenView, Version};
pub use duration::{DurationError, Secs};
pub use issuer::{
    Algorithm, AuthMethod, Claims, ExecSpec, IssuerSpec, JwtSpec, OAuth2Spec, SecretRef, StaticSpec,
};
pub use lease::{Hold, KvEntry, Lease, LeaseRef};
pub use policy::{Overlap, Policy, PolicyError, PolicyRequest};
pub use secret::Secret;
pub use state::{validate_name, Changed, NameError, State};
pub use time::Timestamp;
