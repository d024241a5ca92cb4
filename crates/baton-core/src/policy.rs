//! A credential's policy: how long its versions live and when they are renewed.
//!
//! Users write a [`PolicyRequest`] where every field is optional; [`Policy::from_request`] fills
//! the gaps with defaults derived from `lifetime` and checks every rule, naming the rule that a
//! policy breaks.

use serde::{Deserialize, Serialize};

use crate::Secs;

/// Whether two versions of a credential may be valid at the same instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// A new version is valid as soon as it is minted; the previous one stays valid until it
    /// expires.
    #[default]
    Allowed,
    /// Version k+1 becomes valid exactly when version k expires, never earlier.
    None,
}

/// The policy as written by a user: any field may be left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<Secs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_use: Option<Secs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lifetime: Option<Secs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<Secs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_remaining: Option<Secs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<Overlap>,
}

/// A complete, validated policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// How long a version minted by baton is valid.
    pub lifetime: Secs,
    /// A version is in use at least this long before the next one replaces it.
    pub min_use: Secs,
    /// No version is trusted or served past this age.
    pub max_lifetime: Secs,
    /// The next rotation starts this long before the newest version expires.
    pub renew_before: Secs,
    /// A read never gets a token with less than this left.
    pub min_remaining: Secs,
    pub overlap: Overlap,
}

/// A broken policy rule, named so that the user can fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("{field} ({value}) must not exceed {max}")]
    TooLong {
        field: String,
        value: Secs,
        max: Secs,
    },
    #[error("lifetime must be longer than 0s")]
    ZeroLifetime,
    #[error("lifetime ({lifetime}) must lie within [min_use ({min_use}), max_lifetime ({max_lifetime})]")]
    LifetimeOutOfRange {
        lifetime: Secs,
        min_use: Secs,
        max_lifetime: Secs,
    },
    #[error("renew_before ({renew_before}) must exceed min_remaining ({min_remaining})")]
    RenewBeforeNotAboveMinRemaining {
        renew_before: Secs,
        min_remaining: Secs,
    },
    #[error("renew_before ({renew_before}) must be shorter than lifetime ({lifetime})")]
    RenewBeforeNotBelowLifetime { renew_before: Secs, lifetime: Secs },
    #[error(
        "lifetime - renew_before ({used}) is how long a version is used before it is replaced, \
         and must be at least min_use ({min_use})"
    )]
    RenewedBeforeMinUse { used: Secs, min_use: Secs },
}

impl Policy {
    pub const DEFAULT_LIFETIME: Secs = Secs::from_mins(60);

    /// Fills what the request leaves out, then validates.
    ///
    /// Defaults: `lifetime` 1h; `min_use` 0s; `max_lifetime` = `lifetime`; `renew_before` a
    /// quarter of `lifetime`; `min_remaining` half of `renew_before`.
    pub fn from_request(req: &PolicyRequest) -> Result<Policy, PolicyError> {
        let lifetime = req.lifetime.unwrap_or(Self::DEFAULT_LIFETIME);
        let renew_before = req.renew_before.unwrap_or(Secs(lifetime.0 / 4));
        let policy = Policy {
            lifetime,
            min_use: req.min_use.unwrap_or(Secs::ZERO),
            max_lifetime: req.max_lifetime.unwrap_or(lifetime).max(Secs::ZERO),
            renew_before,
            min_remaining: req.min_remaining.unwrap_or(Secs(renew_before.0 / 2)),
            overlap: req.overlap.unwrap_or_default(),
        };
        policy.validate()?;
        Ok(policy)
    }

    /// The longest duration a policy may name: ten years.
    pub const MAX_DURATION: Secs = Secs(10 * 365 * 24 * 60 * 60);

    /// Checks every rule; the first broken one is reported.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let fields = [
            ("lifetime", self.lifetime),
            ("min_use", self.min_use),
            ("max_lifetime", self.max_lifetime),
            ("renew_before", self.renew_before),
            ("min_remaining", self.min_remaining),
        ];
        for (field, value) in fields {
            if value > Self::MAX_DURATION {
                let (field, max) = (field.to_owned(), Self::MAX_DURATION);
                return Err(PolicyError::TooLong { field, value, max });
            }
        }
        let Policy {
            lifetime,
            min_use,
            max_lifetime,
            renew_before,
            min_remaining,
            ..
        } = *self;
        if lifetime == Secs::ZERO {
            return Err(PolicyError::ZeroLifetime);
        }
        if lifetime < min_use || lifetime > max_lifetime {
            return Err(PolicyError::LifetimeOutOfRange {
                lifetime,
                min_use,
                max_lifetime,
            });
        }
        if renew_before <= min_remaining {
            return Err(PolicyError::RenewBeforeNotAboveMinRemaining {
                renew_before,
                min_remaining,
            });
        }
        if renew_before >= lifetime {
            return Err(PolicyError::RenewBeforeNotBelowLifetime {
                renew_before,
                lifetime,
            });
        }
        let used = Secs(lifetime.0 - renew_before.0);
        if used < min_use {
            return Err(PolicyError::RenewedBeforeMinUse { used, min_use });
        }
        Ok(())
    }

    /// The request that reproduces this policy exactly.
    pub fn to_request(&self) -> PolicyRequest {
        PolicyRequest {
            lifetime: Some(self.lifetime),
            min_use: Some(self.min_use),
            max_lifetime: Some(self.max_lifetime),
            renew_before: Some(self.renew_before),
            min_remaining: Some(self.min_remaining),
            overlap: Some(self.overlap),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> PolicyRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_follow_lifetime() {
        let p = Policy::from_request(&req(r#"{"lifetime": "20m"}"#)).unwrap();
        assert_eq!(p.max_lifetime, Secs(1200));
        assert_eq!(p.renew_before, Secs(300));
        assert_eq!(p.min_remaining, Secs(150));
        assert_eq!(p.overlap, Overlap::Allowed);
    }

    #[test]
    fn renew_before_must_exceed_min_remaining() {
        let err = Policy::from_request(&req(r#"{"renew_before": "10s", "min_remaining": "30s"}"#))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "renew_before (10s) must exceed min_remaining (30s)"
        );
    }

    #[test]
    fn lifetime_must_lie_within_min_use_and_max_lifetime() {
        let err =
            Policy::from_request(&req(r#"{"lifetime": "2h", "max_lifetime": "1h"}"#)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "lifetime (2h) must lie within [min_use (0s), max_lifetime (1h)]"
        );
        let err =
            Policy::from_request(&req(r#"{"lifetime": "10m", "min_use": "20m"}"#)).unwrap_err();
        assert!(matches!(err, PolicyError::LifetimeOutOfRange { .. }));
    }

    #[test]
    fn a_version_is_used_at_least_min_use() {
        let err = Policy::from_request(&req(
            r#"{"lifetime": "60m", "min_use": "50m", "renew_before": "20m"}"#,
        ))
        .unwrap_err();
        assert!(err.to_string().contains("min_use (50m)"), "{err}");
    }

    /// Regression: a lifetime of `10000y` or `u64::MAX` seconds was accepted, then broke every
    /// read of the credential (times past year 9999) or rotated without pause (saturation).
    #[test]
    fn durations_longer_than_ten_years_are_refused() {
        let err = Policy::from_request(&req(r#"{"lifetime": "10000y"}"#)).unwrap_err();
        assert!(err.to_string().starts_with("lifetime ("), "{err}");
        let err = Policy::from_request(&req(r#"{"lifetime": 18446744073709551615}"#)).unwrap_err();
        assert!(matches!(err, PolicyError::TooLong { .. }), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<PolicyRequest>(r#"{"lifetme": "1h"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `lifetme`"), "{err}");
    }
}
