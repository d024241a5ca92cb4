//! Leases: named, exclusive holds with a TTL and a fence, and the key-value entries bound to
//! them.
//!
//! The rules of "one holder at a time" live in [`Exclusive`] and its two functions,
//! [`claim`] and [`owned`]. Leases use them, and so does a credential's rotation intent: an
//! intent is a hold on the credential's rotation, with the intent deadline as its expiry.
//!
//! - A slot can be claimed when it is empty or its hold has expired (judged with the time
//!   stamped on the command, never a client's clock). Each claim gets a fresh fence from the
//!   state's counter, so fences are unique and increase for every name, forever.
//! - An operation that carries a fence is accepted only if the slot's live hold has that
//!   fence; anything else is refused and changes nothing.

use serde::{Deserialize, Serialize};

use crate::{validate_name, Changed, CommandError, Output, Response, State, Timestamp};

/// A hold on an exclusive slot.
pub(crate) trait Exclusive {
    fn fence(&self) -> u64;
    /// The first instant at which the hold no longer counts.
    fn ends_at(&self) -> Timestamp;
}

/// Whether the slot can be claimed at `now`; otherwise the live hold that prevents it.
pub(crate) fn claim<T: Exclusive>(slot: &Option<T>, now: Timestamp) -> Result<(), &T> {
    match slot {
        Some(hold) if now < hold.ends_at() => Err(hold),
        _ => Ok(()),
    }
}

/// The slot's hold if it carries `fence`, whether or not it has expired; otherwise the fence
/// of whatever holds the slot.
pub(crate) fn owned<T: Exclusive>(slot: &Option<T>, fence: u64) -> Result<&T, Option<u64>> {
    match slot {
        Some(hold) if hold.fence() == fence => Ok(hold),
        other => Err(other.as_ref().map(Exclusive::fence)),
    }
}

/// A lease's current grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub holder: String,
    pub fence: u64,
    /// Milliseconds after the last renewal at which the hold ends.
    pub ttl_ms: u64,
    pub acquired_at: Timestamp,
    pub renewed_at: Timestamp,
}

impl Exclusive for Hold {
    fn fence(&self) -> u64 {
        self.fence
    }

    fn ends_at(&self) -> Timestamp {
        self.renewed_at.add_millis(self.ttl_ms)
    }
}

impl Hold {
    /// When the hold ends unless renewed, by the clock of the leader that stamped the renewal.
    pub fn expires_at(&self) -> Timestamp {
        self.ends_at()
    }

    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at()
    }
}

/// A named lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub name: String,
    /// The latest grant; it may have expired.
    pub hold: Option<Hold>,
    /// The fence and holder of the latest grant, kept after release so that a retried release
    /// by the same holder is recognised, and one by anybody else is not.
    pub last_fence: u64,
    #[serde(default)]
    pub last_holder: String,
    /// The revision of the last change.
    pub revision: u64,
}

impl Lease {
    /// The grant as it stands at `now`: `None` once released or expired.
    pub fn live_hold(&self, now: Timestamp) -> Option<&Hold> {
        self.hold.as_ref().filter(|h| h.is_live(now))
    }
}

/// A lease and fence that a key-value entry is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseRef {
    pub name: String,
    pub fence: u64,
}

/// A key-value entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    pub key: String,
    pub value: serde_json::Value,
    /// The revision that last wrote the entry: the value `if_revision` compares with.
    pub revision: u64,
    pub created_revision: u64,
    /// The entry disappears when this lease grant ends.
    pub lease: Option<LeaseRef>,
}

/// The shortest and longest lease TTL accepted.
pub const MIN_TTL_MS: u64 = 100;
pub const MAX_TTL_MS: u64 = 24 * 60 * 60 * 1000;

impl State {
    /// The entry at `key` as a read at `now` sees it: entries bound to a grant that has ended
    /// are gone, even before a command removes them.
    pub fn kv_get(&self, key: &str, now: Timestamp) -> Option<&KvEntry> {
        self.kv
            .get(key)
            .filter(|e| self.binding_is_live(e.lease.as_ref(), now))
    }

    fn binding_is_live(&self, lease: Option<&LeaseRef>, now: Timestamp) -> bool {
        let Some(lease) = lease else { return true };
        let hold = self.leases.get(&lease.name).and_then(|l| l.live_hold(now));
        hold.is_some_and(|h| h.fence == lease.fence)
    }

    /// Removes the entries bound to `name` under `fence`.
    fn drop_bound_keys(&mut self, name: &str, fence: u64, changed: &mut Vec<Changed>) {
        let bound: Vec<String> = self
            .kv
            .values()
            .filter(|e| {
                e.lease
                    .as_ref()
                    .is_some_and(|l| l.name == name && l.fence == fence)
            })
            .map(|e| e.key.clone())
            .collect();
        for key in bound {
            self.kv.remove(&key);
            changed.push(Changed::Kv(key));
        }
    }

    pub(crate) fn acquire_lease(
        &mut self,
        revision: u64,
        now: Timestamp,
        name: String,
        holder: String,
        ttl_ms: u64,
        changed: &mut Vec<Changed>,
    ) -> Response {
        validate_name(&name)?;
        validate_holder(&holder)?;
        if !(MIN_TTL_MS..=MAX_TTL_MS).contains(&ttl_ms) {
            return Err(CommandError::InvalidTtl {
                ttl_ms,
                min_ms: MIN_TTL_MS,
                max_ms: MAX_TTL_MS,
            });
        }

        let lease = self.leases.entry(name.clone()).or_insert_with(|| Lease {
            name: name.clone(),
            hold: None,
            last_fence: 0,
            last_holder: String::new(),
            revision,
        });
        // The holder of a live grant asking again (a retry): extend it, same fence.
        if let Some(hold) = lease
            .hold
            .as_mut()
            .filter(|h| h.is_live(now) && h.holder == holder)
        {
            hold.renewed_at = now;
            hold.ttl_ms = ttl_ms;
            let (fence, expires_at) = (hold.fence, hold.expires_at());
            lease.revision = revision;
            changed.push(Changed::Lease(name));
            return Ok(Output::LeaseGranted {
                fence,
                expires_at,
                renewed: true,
            });
        }
        claim(&lease.hold, now).map_err(|h| CommandError::LeaseHeld {
            name: name.clone(),
            holder: h.holder.clone(),
            expires_at: h.expires_at(),
        })?;

        let ended = lease.hold.take().map(|h| h.fence);
        let fence = self.next_fence + 1;
        self.next_fence = fence;
        let hold = Hold {
            holder,
            fence,
            ttl_ms,
            acquired_at: now,
            renewed_at: now,
        };
        let expires_at = hold.expires_at();
        if let Some(lease) = self.leases.get_mut(&name) {
            lease.last_holder.clone_from(&hold.holder);
            lease.hold = Some(hold);
            lease.last_fence = fence;
            lease.revision = revision;
        }
        if let Some(old) = ended {
            self.drop_bound_keys(&name, old, changed);
        }
        changed.push(Changed::Lease(name));
        Ok(Output::LeaseGranted {
            fence,
            expires_at,
            renewed: false,
        })
    }

    pub(crate) fn renew_lease(
        &mut self,
        revision: u64,
        now: Timestamp,
        name: &str,
        holder: &str,
        fence: u64,
        changed: &mut Vec<Changed>,
    ) -> Response {
        let not_owner = |current| CommandError::NotOwner {
            name: name.to_owned(),
            fence,
            current,
        };
        let lease = self.leases.get_mut(name).ok_or_else(|| not_owner(None))?;
        let hold = owned(&lease.hold, fence).map_err(not_owner)?;
        if hold.holder != holder {
            return Err(not_owner(Some(hold.fence)));
        }
        if !hold.is_live(now) {
            return Err(CommandError::LeaseExpired {
                name: name.to_owned(),
                fence,
                expired_at: hold.expires_at(),
            });
        }
        let Some(hold) = lease.hold.as_mut() else {
            return Err(not_owner(None));
        };
        hold.renewed_at = now;
        let expires_at = hold.expires_at();
        lease.revision = revision;
        changed.push(Changed::Lease(name.to_owned()));
        Ok(Output::LeaseRenewed { fence, expires_at })
    }

    pub(crate) fn release_lease(
        &mut self,
        revision: u64,
        name: &str,
        holder: &str,
        fence: u64,
        changed: &mut Vec<Changed>,
    ) -> Response {
        let not_owner = |current| CommandError::NotOwner {
            name: name.to_owned(),
            fence,
            current,
        };
        let lease = self.leases.get_mut(name).ok_or_else(|| not_owner(None))?;
        match owned(&lease.hold, fence) {
            Ok(hold) if hold.holder == holder => {}
            Ok(hold) => return Err(not_owner(Some(hold.fence))),
            // Released already, and nobody was granted the lease since: a retried release.
            Err(None) if lease.last_fence == fence && lease.last_holder == holder => {
                return Ok(Output::LeaseReleased {
                    fence,
                    released: false,
                })
            }
            Err(current) => return Err(not_owner(current)),
        }
        lease.hold = None;
        lease.revision = revision;
        self.drop_bound_keys(name, fence, changed);
        changed.push(Changed::Lease(name.to_owned()));
        Ok(Output::LeaseReleased {
            fence,
            released: true,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn put_kv(
        &mut self,
        revision: u64,
        now: Timestamp,
        key: String,
        value: serde_json::Value,
        if_revision: Option<u64>,
        lease: Option<LeaseRef>,
        changed: &mut Vec<Changed>,
    ) -> Response {
        validate_name(&key)?;
        let existing = self
            .kv_get(&key, now)
            .map(|e| (e.revision, e.created_revision));
        check_revision(&key, if_revision, existing.map(|e| e.0))?;
        if let Some(l) = &lease {
            if !self.binding_is_live(Some(l), now) {
                let current = self
                    .leases
                    .get(&l.name)
                    .and_then(|x| x.live_hold(now))
                    .map(|h| h.fence);
                return Err(CommandError::NotOwner {
                    name: l.name.clone(),
                    fence: l.fence,
                    current,
                });
            }
        }
        let entry = KvEntry {
            key: key.clone(),
            value,
            revision,
            created_revision: existing.map_or(revision, |e| e.1),
            lease,
        };
        self.kv.insert(key.clone(), entry);
        changed.push(Changed::Kv(key));
        Ok(Output::KvPut {
            revision,
            created: existing.is_none(),
        })
    }

    pub(crate) fn delete_kv(
        &mut self,
        now: Timestamp,
        key: &str,
        if_revision: Option<u64>,
        changed: &mut Vec<Changed>,
    ) -> Response {
        let existing = self.kv_get(key, now).map(|e| e.revision);
        check_revision(key, if_revision, existing)?;
        if self.kv.remove(key).is_some() {
            changed.push(Changed::Kv(key.to_owned()));
        }
        Ok(Output::KvDeleted {
            existed: existing.is_some(),
        })
    }
}

fn validate_holder(holder: &str) -> Result<(), CommandError> {
    let ok = (1..=256).contains(&holder.len()) && !holder.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(CommandError::InvalidHolder)
    }
}

/// `if_revision`: `None` writes unconditionally, `Some(0)` only if absent, `Some(r)` only if
/// the entry is at revision `r`.
fn check_revision(
    key: &str,
    expected: Option<u64>,
    actual: Option<u64>,
) -> Result<(), CommandError> {
    match expected {
        None => Ok(()),
        Some(0) if actual.is_none() => Ok(()),
        Some(r) if actual == Some(r) => Ok(()),
        Some(expected) => Err(CommandError::RevisionMismatch {
            key: key.to_owned(),
            expected,
            actual,
        }),
    }
}
