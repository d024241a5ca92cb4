//! Who may do what: access tokens (stored as hashes), access policies and their capabilities.
//!
//! A token is a random string that baton hands out once. The state keeps only its SHA-256
//! hash, keyed by its *accessor*: a short, non-secret id derived from the token by another
//! hash, which logs, the audit trail and `revoke` use. The API finds a presented token's record
//! by its accessor and then compares hashes in constant time. Expiry is judged by the caller
//! against the leader's clock; the state machine only records `expires_at`, computed from the
//! time stamped on the command.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{CommandError, Output, Response, Timestamp};

/// The name of the built-in policy that grants every capability on every name.
pub const ROOT_POLICY: &str = "root";

/// What a rule allows on the names its pattern matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// Read a credential's token (the secret).
    ReadToken,
    /// Show and list a credential's metadata, and read its JWKS.
    ReadMeta,
    /// Create, replace and delete credentials.
    Write,
    /// Rotate a credential now.
    Rotate,
    /// Acquire, renew, release and observe leases.
    Lease,
    /// Read, write and delete key-value entries.
    Kv,
    /// Manage tokens and policies, and read `/metrics` when it is not open.
    Admin,
}

impl Capability {
    pub const ALL: [Capability; 7] = [
        Capability::ReadToken,
        Capability::ReadMeta,
        Capability::Write,
        Capability::Rotate,
        Capability::Lease,
        Capability::Kv,
        Capability::Admin,
    ];
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Capability::ReadToken => "read-token",
            Capability::ReadMeta => "read-meta",
            Capability::Write => "write",
            Capability::Rotate => "rotate",
            Capability::Lease => "lease",
            Capability::Kv => "kv",
            Capability::Admin => "admin",
        })
    }
}

/// Capabilities on the names matching `pattern` (`*` matches any run of characters).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub pattern: String,
    pub capabilities: BTreeSet<Capability>,
}

/// A named set of rules. A request is allowed when any rule grants its capability on its
/// target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessPolicy {
    pub rules: Vec<Rule>,
}

impl AccessPolicy {
    /// Every capability on every name.
    pub fn root() -> Self {
        AccessPolicy {
            rules: vec![Rule {
                pattern: "*".to_owned(),
                capabilities: Capability::ALL.into_iter().collect(),
            }],
        }
    }

    /// Whether the policy grants `cap` on `target`. `admin` concerns baton itself rather than
    /// a name, so it is granted only by a rule whose pattern is `*`.
    pub fn allows(&self, cap: Capability, target: &str) -> bool {
        self.rules.iter().any(|r| {
            r.capabilities.contains(&cap)
                && if cap == Capability::Admin {
                    r.pattern == "*"
                } else {
                    glob_match(&r.pattern, target)
                }
        })
    }

    /// Checks that every pattern is a name with `*` wildcards and every rule grants something.
    pub fn validate(&self) -> Result<(), CommandError> {
        for rule in &self.rules {
            let ok = (1..=128).contains(&rule.pattern.len())
                && rule
                    .pattern
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'*'));
            if !ok {
                return Err(CommandError::InvalidAccessPolicy(format!(
                    "pattern `{}` must be 1 to 128 characters from A-Z a-z 0-9 . _ - *",
                    rule.pattern.escape_default()
                )));
            }
            if rule.capabilities.is_empty() {
                return Err(CommandError::InvalidAccessPolicy(format!(
                    "the rule for `{}` grants no capability",
                    rule.pattern
                )));
            }
            if rule.capabilities.contains(&Capability::Admin) && rule.pattern != "*" {
                return Err(CommandError::InvalidAccessPolicy(format!(
                    "the rule for `{}` grants admin, which only a rule for `*` can grant",
                    rule.pattern
                )));
            }
        }
        Ok(())
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters (also none).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // The position after the last `*` seen, and the name position it was tried against.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi + 1, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((after, tried)) = star {
            pi = after;
            ni = tried + 1;
            star = Some((after, tried + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|b| *b == b'*')
}

/// The record of one access token. The token itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub accessor: String,
    /// Hex SHA-256 of the token.
    pub hash: String,
    pub policy: String,
    pub created_at: Timestamp,
    /// None: the token does not expire.
    pub expires_at: Option<Timestamp>,
    /// A note for people (`root`, `worker-7`).
    #[serde(default)]
    pub display_name: String,
}

impl TokenRecord {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// Tokens by accessor and policies by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthState {
    pub tokens: BTreeMap<String, TokenRecord>,
    pub policies: BTreeMap<String, AccessPolicy>,
}

impl AuthState {
    /// The policy named `name`; `root` is built in.
    pub fn policy(&self, name: &str) -> Option<AccessPolicy> {
        if name == ROOT_POLICY {
            return Some(AccessPolicy::root());
        }
        self.policies.get(name).cloned()
    }

    pub(crate) fn create_token(&mut self, now: Timestamp, new: NewToken) -> Response {
        if new.policy != ROOT_POLICY && !self.policies.contains_key(&new.policy) {
            return Err(CommandError::NoSuchAccessPolicy(new.policy));
        }
        if self.tokens.contains_key(&new.accessor) {
            return Err(CommandError::InvalidAccessPolicy(
                "a token with this accessor exists already".to_owned(),
            ));
        }
        let expires_at = new.ttl_ms.map(|ms| now.add_millis(ms));
        let record = TokenRecord {
            accessor: new.accessor.clone(),
            hash: new.hash,
            policy: new.policy,
            created_at: now,
            expires_at,
            display_name: new.display_name,
        };
        self.tokens.insert(new.accessor, record);
        Ok(Output::TokenCreated { expires_at })
    }

    pub(crate) fn put_policy(&mut self, name: String, policy: AccessPolicy) -> Response {
        crate::validate_name(&name)?;
        if name == ROOT_POLICY {
            return Err(CommandError::InvalidAccessPolicy(
                "the policy `root` is built in and cannot be replaced".to_owned(),
            ));
        }
        policy.validate()?;
        let created = self.policies.insert(name, policy).is_none();
        Ok(Output::Put {
            created,
            changed: true,
        })
    }
}

/// What `Op::CreateToken` carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewToken {
    pub accessor: String,
    pub hash: String,
    pub policy: String,
    /// How long the token is valid from the command's time; None: forever.
    pub ttl_ms: Option<u64>,
    #[serde(default)]
    pub display_name: String,
}

/// Hex SHA-256 of a token: what the state stores.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// The accessor of a token: 16 hex digits of a hash with a different prefix, so that it tells
/// nothing of the stored hash and nothing of the token.
pub fn token_accessor(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"baton accessor\0");
    h.update(token.as_bytes());
    hex(&h.finalize()[..8])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_prefixes_suffixes_and_everything() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("partner-*", "partner-api"));
        assert!(glob_match("partner-*", "partner-"));
        assert!(!glob_match("partner-*", "partne"));
        assert!(glob_match("*-api", "partner-api"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exact2"));
    }

    #[test]
    fn admin_needs_a_star_rule() {
        let p = AccessPolicy {
            rules: vec![Rule {
                pattern: "a*".into(),
                capabilities: [Capability::Admin, Capability::ReadToken].into(),
            }],
        };
        assert!(!p.allows(Capability::Admin, "a"));
        assert!(p.allows(Capability::ReadToken, "abc"));
        assert!(!p.allows(Capability::ReadToken, "b"));
        assert!(AccessPolicy::root().allows(Capability::Admin, ""));
        // Such a rule is refused when written, so that nobody believes it grants admin.
        assert!(p.validate().is_err());
        assert!(AccessPolicy::root().validate().is_ok());
    }

    #[test]
    fn accessor_and_hash_differ_and_are_stable() {
        let t = "btn_0123";
        assert_eq!(token_accessor(t).len(), 16);
        assert_eq!(token_hash(t).len(), 64);
        assert!(!token_hash(t).starts_with(&token_accessor(t)));
        assert_eq!(token_accessor(t), token_accessor(t));
    }
}
