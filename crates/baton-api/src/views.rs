//! What the API shows of a credential: everything but its secrets.

use baton_core::{Credential, Intent, Policy, Timestamp, Version};
use serde::Serialize;
use serde_json::Value;

/// A version without its token.
#[derive(Serialize)]
pub(crate) struct VersionView {
    version: u64,
    issued_at: String,
    not_before: String,
    expires_at: String,
    fence: u64,
}

impl From<&Version> for VersionView {
    fn from(v: &Version) -> Self {
        VersionView {
            version: v.number,
            issued_at: v.issued_at.to_string(),
            not_before: v.not_before.to_string(),
            expires_at: v.expires_at.to_string(),
            fence: v.fence,
        }
    }
}

#[derive(Serialize)]
struct IntentView {
    rotation: u64,
    fence: u64,
    started_at: String,
    deadline: String,
    reason: baton_core::RotationReason,
}

impl From<&Intent> for IntentView {
    fn from(i: &Intent) -> Self {
        IntentView {
            rotation: i.rotation,
            fence: i.fence,
            started_at: i.started_at.to_string(),
            deadline: i.deadline.to_string(),
            reason: i.reason,
        }
    }
}

#[derive(Serialize)]
struct StatusView {
    attempts: u32,
    last_error: Option<String>,
    retry_at: Option<String>,
    last_success_at: Option<String>,
    next_rotation_at: String,
    /// Issuer calls whose outcome was never known, each waited out.
    unknown_outcomes: u64,
    /// The newest version's lifetime as issued, when shorter than `min_use` or `renew_before`.
    short_lifetime: Option<baton_core::Secs>,
}

#[derive(Serialize)]
struct Versions {
    previous: Option<VersionView>,
    current: Option<VersionView>,
    next: Option<VersionView>,
}

/// `GET /v1/credentials/{name}`.
#[derive(Serialize)]
pub(crate) struct CredentialView {
    name: String,
    issuer: Value,
    policy: Policy,
    created_at: String,
    updated_at: String,
    versions: Versions,
    rotation: Option<IntentView>,
    status: StatusView,
    revision: u64,
}

/// `(previous, current, next)` as they are at `now`.
fn versions_at(
    c: &Credential,
    now: Timestamp,
) -> (Option<&Version>, Option<&Version>, Option<&Version>) {
    let (current, next) = c.effective(now);
    let promoted = c.next.is_some() && next.is_none();
    let previous = if promoted {
        c.current.as_ref()
    } else {
        c.previous.as_ref()
    };
    (previous, current, next)
}

impl CredentialView {
    pub(crate) fn new(c: &Credential, now: Timestamp, revision: u64) -> Self {
        let (previous, current, next) = versions_at(c, now);
        let opt = |t: Option<Timestamp>| t.map(|t| t.to_string());
        CredentialView {
            name: c.name.clone(),
            issuer: baton_issuers::describe(&c.issuer),
            policy: c.policy,
            created_at: c.created_at.to_string(),
            updated_at: c.updated_at.to_string(),
            versions: Versions {
                previous: previous.map(Into::into),
                current: current.map(Into::into),
                next: next.map(Into::into),
            },
            rotation: c.rotation.as_ref().map(Into::into),
            status: StatusView {
                attempts: c.status.attempts,
                last_error: c.status.last_error.clone(),
                retry_at: opt(c.status.retry_at),
                last_success_at: opt(c.status.last_success_at),
                next_rotation_at: c.due().at().max(now).to_string(),
                unknown_outcomes: c.status.unknown_outcomes,
                short_lifetime: c.status.short_lifetime,
            },
            revision,
        }
    }
}

/// One line of `GET /v1/credentials`.
#[derive(Serialize)]
pub(crate) struct Summary {
    name: String,
    kind: &'static str,
    version: Option<u64>,
    expires_at: Option<String>,
    next_rotation_at: String,
    last_error: Option<String>,
}

impl Summary {
    pub(crate) fn new(c: &Credential, now: Timestamp) -> Self {
        let (current, _) = c.effective(now);
        Summary {
            name: c.name.clone(),
            kind: c.issuer.kind(),
            version: current.map(|v| v.number),
            expires_at: current.map(|v| v.expires_at.to_string()),
            next_rotation_at: c.due().at().max(now).to_string(),
            last_error: c.status.last_error.clone(),
        }
    }
}
