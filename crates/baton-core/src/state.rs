//! The replicated state and the one function that changes it: [`State::apply`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::lease;
use crate::{
    Command, CommandError, Credential, Intent, IssuerSpec, KvEntry, Lease, Op, Output, Policy,
    Response, RotationReason, RotationStatus, Secret, Timestamp, Version,
};

/// Everything baton replicates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub credentials: BTreeMap<String, Credential>,
    /// The fence the next rotation intent gets. Fences never repeat, even across credentials
    /// and deletions, so a result for a deleted credential can never match a new one.
    pub next_fence: u64,
    /// The latest command time applied. Command times are clamped to it, so the state
    /// machine's time never goes backwards even if a leader's clock does.
    pub clock: Timestamp,
    /// Leases by name. A lease stays after its grant ends, to keep its last fence.
    #[serde(default)]
    pub leases: BTreeMap<String, Lease>,
    /// Key-value entries by key.
    #[serde(default)]
    pub kv: BTreeMap<String, KvEntry>,
    /// Access tokens and policies.
    #[serde(default)]
    pub auth: crate::AuthState,
}

/// Something a command changed, for storage to persist and watchers to hear of.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Changed {
    Credential(String),
    Lease(String),
    Kv(String),
    /// Access tokens or policies.
    Auth,
}

/// A credential name that does not match `[A-Za-z0-9._-]{1,128}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error(
    "invalid name `{shown}`: a name is 1 to 128 characters from A-Z a-z 0-9 . _ -, other than \
     `.` and `..`"
)]
pub struct NameError {
    /// The name as given, shortened for display.
    shown: String,
}

/// `.` and `..` match the pattern but are path segments to every URL parser on the way, so
/// they are refused too.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let ok = (1..=128).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        return Ok(());
    }
    let shown: String = name
        .chars()
        .take(64)
        .flat_map(char::escape_default)
        .collect();
    Err(NameError { shown })
}

impl State {
    /// Applies one command at log index `revision`. A refused command changes nothing, not
    /// even the clock.
    pub fn apply(&mut self, revision: u64, cmd: Command) -> Response {
        self.apply_tracked(revision, cmd, &mut Vec::new())
    }

    /// [`State::apply`], also pushing onto `changed` what the command changed.
    pub fn apply_tracked(
        &mut self,
        revision: u64,
        cmd: Command,
        changed: &mut Vec<Changed>,
    ) -> Response {
        let now = cmd.now.max(self.clock);
        let target = cmd.op.target().to_owned();
        let is_credential_op = matches!(
            cmd.op,
            Op::PutCredential { .. }
                | Op::DeleteCredential { .. }
                | Op::BeginRotation { .. }
                | Op::CommitRotation { .. }
                | Op::FailRotation { .. }
        );
        let is_auth_op = matches!(
            cmd.op,
            Op::CreateToken(_)
                | Op::RevokeToken { .. }
                | Op::PutAccessPolicy { .. }
                | Op::DeleteAccessPolicy { .. }
        );
        let response = match cmd.op {
            Op::CreateToken(new) => self.auth.create_token(now, new),
            Op::RevokeToken { accessor } => Ok(Output::Deleted {
                existed: self.auth.tokens.remove(&accessor).is_some(),
            }),
            Op::PutAccessPolicy { name, policy } => self.auth.put_policy(name, policy),
            Op::DeleteAccessPolicy { name } => Ok(Output::Deleted {
                existed: self.auth.policies.remove(&name).is_some(),
            }),
            Op::AcquireLease {
                name,
                holder,
                ttl_ms,
            } => self.acquire_lease(revision, now, name, holder, ttl_ms, changed),
            Op::RenewLease {
                name,
                holder,
                fence,
            } => self.renew_lease(revision, now, &name, &holder, fence, changed),
            Op::ReleaseLease {
                name,
                holder,
                fence,
            } => self.release_lease(revision, &name, &holder, fence, changed),
            Op::PutKv {
                key,
                value,
                if_revision,
                lease,
            } => self.put_kv(revision, now, key, value, if_revision, lease, changed),
            Op::DeleteKv { key, if_revision } => self.delete_kv(now, &key, if_revision, changed),
            Op::PutCredential {
                name,
                issuer,
                policy,
            } => self.put(revision, now, name, issuer, policy),
            Op::DeleteCredential { name } => Ok(Output::Deleted {
                existed: self.credentials.remove(&name).is_some(),
            }),
            Op::BeginRotation {
                name,
                deadline,
                reason,
            } => {
                let fence = self.next_fence + 1;
                let intent = self.update(&name, |c| c.begin(now, deadline, reason, fence))?;
                self.next_fence = fence;
                Ok(Output::RotationStarted(intent))
            }
            Op::CommitRotation {
                name,
                fence,
                token,
                issued_at,
                not_before,
                expires_at,
            } => {
                let minted = Minted {
                    token,
                    issued_at,
                    not_before,
                    expires_at,
                };
                self.update(&name, |c| c.commit(now, fence, minted))
            }
            Op::FailRotation {
                name,
                fence,
                error,
                retry_at,
                unknown,
            } => self.update(&name, |c| c.fail(now, fence, error, retry_at, unknown)),
        };
        if response.is_ok() {
            if is_credential_op {
                changed.push(Changed::Credential(target));
            }
            if is_auth_op {
                changed.push(Changed::Auth);
            }
            self.clock = now;
        }
        response
    }

    /// Runs `f` on a copy of the credential and keeps the copy only if `f` succeeds.
    fn update<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Credential) -> Result<T, CommandError>,
    ) -> Result<T, CommandError> {
        let current = self
            .credentials
            .get(name)
            .ok_or_else(|| CommandError::NotFound(name.to_owned()))?;
        let mut copy = current.clone();
        let out = f(&mut copy)?;
        self.credentials.insert(name.to_owned(), copy);
        Ok(out)
    }

    fn put(
        &mut self,
        revision: u64,
        now: Timestamp,
        name: String,
        issuer: IssuerSpec,
        policy: Policy,
    ) -> Response {
        validate_name(&name)?;
        policy.validate()?;

        if let Some(c) = self.credentials.get_mut(&name) {
            let changed = c.issuer != issuer || c.policy != policy;
            if c.issuer != issuer {
                // Versions minted by the old issuer stay until replaced; replace them now. An
                // open intent belonged to the old issuer: its result will be refused.
                c.issuer = issuer;
                c.rotation = None;
                c.rotate_requested = true;
                c.status.retry_at = None;
            }
            c.policy = policy;
            if changed {
                c.updated_at = now;
            }
            return Ok(Output::Put {
                created: false,
                changed,
            });
        }

        let credential = Credential {
            name: name.clone(),
            uid: revision,
            issuer,
            policy,
            created_at: now,
            updated_at: now,
            previous: None,
            current: None,
            next: None,
            rotation: None,
            last_rotation: 0,
            rotate_requested: false,
            status: RotationStatus::default(),
        };
        self.credentials.insert(name, credential);
        Ok(Output::Put {
            created: true,
            changed: true,
        })
    }
}

/// An issuer's result, as carried by `CommitRotation`.
struct Minted {
    token: Secret,
    issued_at: Timestamp,
    not_before: Timestamp,
    expires_at: Timestamp,
}

impl Credential {
    fn begin(
        &mut self,
        now: Timestamp,
        deadline: Timestamp,
        reason: RotationReason,
        fence: u64,
    ) -> Result<Intent, CommandError> {
        self.settle(now);
        // One rotation at a time: the intent is a hold on the credential's rotation slot.
        lease::claim(&self.rotation, now).map_err(|open| CommandError::RotationInProgress {
            rotation: open.rotation,
            deadline: open.deadline,
        })?;
        if let Some(next) = &self.next {
            return Err(CommandError::NextAlreadyMinted {
                version: next.number,
                not_before: next.not_before,
            });
        }
        if let Some(until) = self.min_use_until().filter(|until| now < *until) {
            let version = self.current.as_ref().map_or(0, |c| c.number);
            return Err(CommandError::MinUseNotReached { version, until });
        }

        let (not_before, expires_at) = self.plan_window(now);
        let intent = Intent {
            rotation: self.last_rotation + 1,
            fence,
            started_at: now,
            deadline: deadline.max(now),
            not_before,
            expires_at,
            reason,
        };
        self.rotation = Some(intent.clone());
        Ok(intent)
    }

    fn commit(&mut self, now: Timestamp, fence: u64, minted: Minted) -> Response {
        self.settle(now);
        let intent = lease::owned(&self.rotation, fence)
            .map_err(|open| CommandError::StaleFence { fence, open })?
            .clone();

        // Never trust a version past max_lifetime, whatever the issuer said.
        let withdraw = self.withdrawn_during_rotation();
        let not_before = if withdraw {
            // The previous version was withdrawn when the intent was committed.
            minted.not_before.max(intent.started_at)
        } else {
            minted.not_before
        };
        let cap = not_before.add(self.policy.max_lifetime);
        let expires_at = minted.expires_at.min(cap);
        if expires_at <= not_before || expires_at <= now {
            return Err(CommandError::InvalidWindow {
                not_before,
                expires_at,
            });
        }
        if withdraw {
            // Its validity, as far as baton serves it, ended at the rotation point.
            if let Some(c) = self.current.as_mut() {
                c.expires_at = c.expires_at.min(intent.started_at).max(c.not_before);
            }
        }
        if self.policy.overlap == crate::Overlap::None {
            if let Some(c) = self.current.as_ref().filter(|c| not_before < c.expires_at) {
                return Err(CommandError::Overlap {
                    version: c.number,
                    not_before,
                    expires_at: c.expires_at,
                });
            }
        }

        let version = Version {
            number: intent.rotation,
            token: minted.token,
            issued_at: minted.issued_at,
            not_before,
            expires_at,
            fence,
        };
        if not_before > now {
            self.next = Some(version);
        } else {
            self.previous = self.current.take();
            self.current = Some(version);
        }
        self.last_rotation = intent.rotation;
        self.rotation = None;
        self.rotate_requested = false;
        let issued_ms = expires_at.millis_since(not_before);
        self.status = RotationStatus {
            last_success_at: Some(now),
            unknown_outcomes: self.status.unknown_outcomes,
            short_lifetime: crate::credential::is_short(&self.policy, issued_ms)
                .then_some(crate::Secs(issued_ms / 1000)),
            ..RotationStatus::default()
        };
        Ok(Output::RotationCommitted {
            version: intent.rotation,
            not_before,
            expires_at,
        })
    }

    fn fail(
        &mut self,
        now: Timestamp,
        fence: u64,
        error: String,
        retry_at: Timestamp,
        unknown: bool,
    ) -> Response {
        self.settle(now);
        let intent = lease::owned(&self.rotation, fence)
            .map_err(|open| CommandError::StaleFence { fence, open })?;
        let retry_at = if unknown {
            // Waited out: the intent keeps the slot until its deadline.
            self.status.unknown_outcomes = self.status.unknown_outcomes.saturating_add(1);
            retry_at.max(intent.deadline)
        } else {
            self.rotation = None;
            retry_at
        };
        self.status.attempts = self.status.attempts.saturating_add(1);
        self.status.last_error = Some(error);
        self.status.retry_at = Some(retry_at);
        Ok(Output::RotationFailed {
            attempts: self.status.attempts,
        })
    }
}
