//! A credential and its versions: what is served now, what comes next, and when to rotate.
//!
//! Everything that depends on time takes `now` as an argument. The stored `current` and `next`
//! are brought up to date lazily, when a command touches the credential; reads look through
//! [`Credential::effective`], which gives the same answer without changing anything.

use serde::{Deserialize, Serialize};

use crate::{IssuerSpec, Overlap, Policy, RotationReason, Secret, Secs, Timestamp};

/// One token of a credential and its window of validity `[not_before, expires_at)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The rotation that produced it: 1 for the first version.
    pub number: u64,
    pub token: Secret,
    pub issued_at: Timestamp,
    pub not_before: Timestamp,
    pub expires_at: Timestamp,
    /// The fence of the rotation intent it was committed under.
    pub fence: u64,
}

impl Version {
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        self.not_before <= now && now < self.expires_at
    }
}

/// A rotation in progress, committed before the issuer is called.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The number the new version will have.
    pub rotation: u64,
    /// Unique across the whole state; a result must carry it to be accepted.
    pub fence: u64,
    /// The leader's time when the intent was committed: the mint time of the version.
    pub started_at: Timestamp,
    /// After this instant the intent may be superseded by a new one.
    pub deadline: Timestamp,
    /// The window planned for the new version. Issuers that control expiry (jwt) mint exactly
    /// this window, which makes minting a pure function of the intent.
    pub not_before: Timestamp,
    pub expires_at: Timestamp,
    pub reason: RotationReason,
}

/// How the last rotations went.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationStatus {
    /// Failed attempts since the last success.
    pub attempts: u32,
    /// The last failure, as the issuer reported it (never containing a token).
    pub last_error: Option<String>,
    /// No new attempt before this instant.
    pub retry_at: Option<Timestamp>,
    pub last_success_at: Option<Timestamp>,
    /// Issuer calls whose outcome was never known (a timeout after the request was sent),
    /// since the credential was created. Each was waited out, never repeated at once.
    #[serde(default)]
    pub unknown_outcomes: u64,
    /// Set when the newest version was issued for less than `min_use` or `renew_before`: its
    /// lifetime as issued. Such a version is renewed a third of its lifetime before it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_lifetime: Option<Secs>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub name: String,
    /// The revision that created the credential; distinguishes it from an earlier credential of
    /// the same name that was deleted.
    pub uid: u64,
    pub issuer: IssuerSpec,
    pub policy: Policy,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub previous: Option<Version>,
    pub current: Option<Version>,
    /// A version minted ahead whose window has not started (overlap = none).
    pub next: Option<Version>,
    /// The open rotation intent, if any.
    pub rotation: Option<Intent>,
    /// The number of the newest committed version; 0 before the first.
    pub last_rotation: u64,
    /// The issuer changed: rotate as soon as the policy allows.
    pub rotate_requested: bool,
    pub status: RotationStatus,
}

/// When the rotation engine should act on a credential next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// An intent is open and its issuer is idempotent: mint it again with the same fence.
    Resume { at: Timestamp },
    /// Begin a new rotation at this instant.
    Start { at: Timestamp },
}

impl Due {
    pub fn at(self) -> Timestamp {
        match self {
            Due::Resume { at } | Due::Start { at } => at,
        }
    }
}

/// What a token read returns: the version to use now, the one that follows it if already
/// minted, and when the reader should ask again.
#[derive(Clone, Copy, Debug)]
pub struct TokenView<'a> {
    pub current: &'a Version,
    pub next: Option<&'a Version>,
    pub refresh_at: Timestamp,
}

impl crate::lease::Exclusive for Intent {
    fn fence(&self) -> u64 {
        self.fence
    }

    fn ends_at(&self) -> Timestamp {
        self.deadline
    }
}

impl Credential {
    /// `(current, next)` as they are at `now`: a `next` whose window has started is current.
    pub fn effective(&self, now: Timestamp) -> (Option<&Version>, Option<&Version>) {
        match &self.next {
            Some(next) if next.not_before <= now => (Some(next), None),
            next => (self.current.as_ref(), next.as_ref()),
        }
    }

    /// Moves a `next` whose window has started into `current`.
    pub(crate) fn settle(&mut self, now: Timestamp) {
        if self.next.as_ref().is_some_and(|n| n.not_before <= now) {
            self.previous = self.current.take();
            self.current = self.next.take();
        }
    }

    /// The newest committed version, valid or not yet valid.
    pub fn newest(&self) -> Option<&Version> {
        self.next.as_ref().or(self.current.as_ref())
    }

    /// When the engine must act next, from committed state only.
    pub fn due(&self) -> Due {
        if let Some(intent) = &self.rotation {
            return if self.issuer.is_idempotent() {
                Due::Resume {
                    at: intent.started_at,
                }
            } else {
                Due::Start {
                    at: intent.deadline,
                }
            };
        }
        let mut at = match self.newest() {
            Some(v) if !self.rotate_requested => v.expires_at.sub_millis(self.renew_lead_ms(v)),
            _ => Timestamp(0),
        };
        if let Some(retry_at) = self.status.retry_at {
            at = at.max(retry_at);
        }
        // A rotation cannot begin while a pending `next` exists, nor (when versions may
        // overlap) replace the current version before `min_use`.
        if let Some(next) = &self.next {
            at = at.max(next.not_before);
        }
        if let Some(earliest) = self.min_use_until() {
            at = at.max(earliest);
        }
        Due::Start { at }
    }

    /// How long before `v` expires its successor's rotation starts: `renew_before`, or, for a
    /// version issued for less than `min_use` or `renew_before`, the smaller of `renew_before`
    /// and a third of its lifetime, so that a short-lived token is used for two thirds of its
    /// life instead of being renewed in a loop.
    pub fn renew_lead_ms(&self, v: &Version) -> u64 {
        let renew_before = self.policy.renew_before.as_millis();
        let issued = v.expires_at.millis_since(v.not_before);
        if is_short(&self.policy, issued) {
            renew_before.min(issued / 3)
        } else {
            renew_before
        }
    }

    /// Whether the current version is withdrawn while a rotation runs: under `overlap = none`,
    /// an issuer that issues tokens valid at once may revoke the previous one when it does.
    pub(crate) fn withdrawn_during_rotation(&self) -> bool {
        self.policy.overlap == Overlap::None && !self.issuer.sets_window()
    }

    /// Under `overlap = allowed`, the instant before which a new version would replace the
    /// current one too early; `None` when nothing holds a rotation back.
    pub(crate) fn min_use_until(&self) -> Option<Timestamp> {
        if self.policy.overlap != Overlap::Allowed || self.rotate_requested {
            return None;
        }
        self.current
            .as_ref()
            .map(|c| c.not_before.add(self.policy.min_use))
    }

    /// The window a rotation started at `now` plans for the new version.
    ///
    /// Windows are whole seconds. Under `overlap = none` the new window starts no earlier than
    /// the current version's end, rounded up to a second when an issuer chose a finer one.
    pub(crate) fn plan_window(&self, now: Timestamp) -> (Timestamp, Timestamp) {
        let floor = now.floor_secs();
        let not_before = match (self.policy.overlap, &self.current) {
            (Overlap::None, Some(c)) if self.issuer.sets_window() => {
                floor.max(c.expires_at.ceil_secs())
            }
            _ => floor,
        };
        (not_before, not_before.add(self.policy.lifetime))
    }

    /// What a read at `now` gets, or `None` when no version may be handed out: none was ever
    /// issued, the current one expired, or it has less than `min_remaining` left and nothing
    /// follows it yet.
    ///
    /// Under `overlap = none` with an issuer whose tokens are valid at once (oauth2, exec), the
    /// current version is not served while a rotation is open: the issuer may revoke it the
    /// moment it issues the next one. Earlier answers told clients to come back at that point.
    pub fn token_view(&self, now: Timestamp) -> Option<TokenView<'_>> {
        if self.rotation.is_some() && self.withdrawn_during_rotation() {
            return None;
        }
        let (current, next) = self.effective(now);
        let current = current.filter(|c| c.is_valid_at(now))?;
        let remaining = current.expires_at.millis_since(now);
        let min_remaining = self.policy.min_remaining.as_millis();
        if remaining < min_remaining && next.is_none() {
            return None;
        }
        let refresh_at = match next {
            Some(next) => next.not_before,
            None => {
                let renew_at = current.expires_at.sub_millis(self.renew_lead_ms(current));
                if now < renew_at {
                    renew_at
                } else {
                    // The rotation is due or running: ask again soon, never past the cut-off.
                    let cutoff = current.expires_at.sub_millis(min_remaining);
                    now.add(Secs(1)).min(cutoff).max(now)
                }
            }
        };
        Some(TokenView {
            current,
            next,
            refresh_at,
        })
    }
}

/// Whether a version issued for `issued_ms` is shorter than the policy can work with.
pub(crate) fn is_short(policy: &Policy, issued_ms: u64) -> bool {
    issued_ms < policy.min_use.as_millis() || issued_ms < policy.renew_before.as_millis()
}
