//! How long a token from an outside issuer (oauth2, exec) is valid, from what the issuer said.
//!
//! Real issuers send odd values: `expires_in` missing, `0`, a string, negative, in
//! milliseconds by mistake, or near 2^63. The rules, in order:
//!
//! 1. A negative `expires_in`, or an expiry that is already past, is an issuer error.
//! 2. A positive `expires_in` (a number or a numeric string) counts in seconds. A value of a
//!    million or more (over eleven days) that is a whole number of thousands and longer than
//!    `max_lifetime` is read as milliseconds (`3600000`): the shorter, therefore safe, reading.
//! 3. Without a usable value (missing, `0`, not a number), the token's own `exp` is used if
//!    the token is a JWT, else the policy's `lifetime`.
//! 4. A JWT's `exp` always bounds the window: baton never serves a token past its own expiry.
//! 5. The window never exceeds `max_lifetime`.
//! 6. A window no longer than `min_remaining` is an issuer error: such a token could never be
//!    served, and renewing it would only call the issuer in a loop.
//!
//! All arithmetic is checked or saturating; nothing here can panic or overflow.

use base64::Engine as _;
use baton_core::{Policy, Timestamp};
use serde_json::Value;

use crate::IssueError;

/// The smallest `expires_in` that may be milliseconds by mistake.
const MILLIS_FROM: u64 = 1_000_000;

/// What an issuer said about the expiry of the token it issued.
#[derive(Clone, Debug, Default)]
pub(crate) struct Said {
    /// `expires_in`, as sent.
    pub expires_in: Option<Value>,
    /// An absolute expiry (`expires_at`, `status.expirationTimestamp`).
    pub expires_at: Option<Timestamp>,
}

/// The window of a token issued at `now`, and a note for the log when a value was ignored or
/// reinterpreted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub not_before: Timestamp,
    pub expires_at: Timestamp,
    pub note: Option<String>,
}

/// The window of `token`, issued at `now`, from what the issuer `said` and the policy.
pub(crate) fn window(
    now: Timestamp,
    token: &str,
    said: &Said,
    policy: &Policy,
) -> Result<Window, IssueError> {
    let max_ms = policy.max_lifetime.as_millis();
    let jwt_exp = jwt_exp(token);
    let mut note = None;

    if let Some(exp) = jwt_exp.filter(|exp| *exp <= now) {
        return Err(IssueError::AlreadyExpired { expired_at: exp });
    }
    let said_ms = match (&said.expires_at, &said.expires_in) {
        (Some(at), _) if *at <= now => return Err(IssueError::AlreadyExpired { expired_at: *at }),
        (Some(at), _) => Some(at.millis_since(now)),
        (None, Some(value)) => match expires_in_secs(value)? {
            Some(secs)
                if secs >= MILLIS_FROM
                    && secs.saturating_mul(1000) > max_ms
                    && secs % 1000 == 0 =>
            {
                note = Some(format!(
                    "expires_in {secs} exceeds max_lifetime; read as milliseconds"
                ));
                Some(secs)
            }
            Some(secs) => Some(secs.saturating_mul(1000)),
            None => {
                note = Some(format!(
                    "expires_in {} is not a positive number of seconds; ignored",
                    shown(value)
                ));
                None
            }
        },
        (None, None) => None,
    };

    let jwt_ms = jwt_exp.map(|exp| exp.millis_since(now));
    let lifetime_ms = match (said_ms, jwt_ms) {
        (Some(said), Some(jwt)) => said.min(jwt),
        (Some(said), None) => said,
        (None, Some(jwt)) => jwt,
        (None, None) => policy.lifetime.as_millis(),
    };
    let lifetime_ms = lifetime_ms.min(max_ms).max(1);
    let min_remaining = policy.min_remaining;
    if lifetime_ms <= min_remaining.as_millis() {
        return Err(IssueError::TooShortToServe {
            lifetime_ms,
            min_remaining,
        });
    }
    Ok(Window {
        not_before: now,
        expires_at: now.add_millis(lifetime_ms),
        note,
    })
}

/// `expires_in` in seconds: `Some` for a positive number, `None` for what cannot be used
/// (zero, a fraction below one, not a number), an error for a negative value.
fn expires_in_secs(value: &Value) -> Result<Option<u64>, IssueError> {
    let number = match value {
        Value::Number(n) => n.clone(),
        Value::String(s) => match serde_json::from_str::<serde_json::Number>(s.trim()) {
            Ok(n) => n,
            Err(_) => return Ok(None),
        },
        _ => return Ok(None),
    };
    if let Some(secs) = number.as_u64() {
        return Ok((secs > 0).then_some(secs));
    }
    let float = number.as_f64().unwrap_or(f64::NAN);
    if float < 0.0 || number.as_i64().is_some_and(|i| i < 0) {
        return Err(IssueError::NegativeExpiresIn {
            value: shown(value),
        });
    }
    // A fraction or a value beyond u64: `as` saturates, and NaN becomes 0.
    let secs = float as u64;
    Ok((secs > 0).then_some(secs))
}

/// A value from an issuer's answer, made safe to show: short, without control characters.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(32).collect();
    if text.chars().count() > 32 {
        out.push('…');
    }
    out
}

/// The `exp` claim of `token` when it is a JWT (read without checking the signature: it only
/// bounds how long baton serves the token).
pub(crate) fn jwt_exp(token: &str) -> Option<Timestamp> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let exp = &claims["exp"];
    let secs = exp
        .as_u64()
        .or_else(|| exp.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))?;
    Some(Timestamp::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use baton_core::{PolicyRequest, Secs};
    use serde_json::json;

    use super::*;

    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

    fn policy(lifetime: u64, max_lifetime: u64) -> Policy {
        Policy::from_request(&PolicyRequest {
            lifetime: Some(Secs(lifetime)),
            max_lifetime: Some(Secs(max_lifetime)),
            ..PolicyRequest::default()
        })
        .unwrap()
    }

    fn lifetime_of(expires_in: Value) -> Result<u64, IssueError> {
        let said = Said {
            expires_in: Some(expires_in),
            expires_at: None,
        };
        window(NOW, "opaque", &said, &policy(600, 7200))
            .map(|w| w.expires_at.millis_since(w.not_before) / 1000)
    }

    fn jwt_with_exp(exp: Value) -> String {
        let b64 = |v: Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        format!(
            "{}.{}.c2ln",
            b64(json!({"alg": "RS256"})),
            b64(json!({ "exp": exp }))
        )
    }

    #[test]
    fn expires_in_counts_in_seconds() {
        assert_eq!(lifetime_of(json!(3600)).unwrap(), 3600);
        assert_eq!(lifetime_of(json!(3600.9)).unwrap(), 3600);
    }

    #[test]
    fn a_numeric_string_is_read_as_a_number() {
        assert_eq!(lifetime_of(json!("3600")).unwrap(), 3600);
        assert_eq!(lifetime_of(json!(" 90 ")).unwrap(), 90);
    }

    #[test]
    fn zero_missing_or_garbage_fall_back_to_the_policy_lifetime() {
        for value in [
            json!(0),
            json!("soon"),
            json!(null),
            json!(true),
            json!(0.4),
        ] {
            assert_eq!(lifetime_of(value.clone()).unwrap(), 600, "{value}");
        }
        let w = window(NOW, "opaque", &Said::default(), &policy(600, 7200)).unwrap();
        assert_eq!(w.expires_at, NOW.add(Secs(600)));
    }

    #[test]
    fn a_negative_expires_in_is_an_issuer_error() {
        for value in [json!(-5), json!("-5"), json!(-0.5)] {
            let err = lifetime_of(value.clone()).unwrap_err();
            assert!(
                matches!(err, IssueError::NegativeExpiresIn { .. }),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn milliseconds_by_mistake_are_read_as_milliseconds() {
        assert_eq!(lifetime_of(json!(3_600_000)).unwrap(), 3600);
    }

    /// Regression: `expires_in: 3000` with a 20-minute policy was read as 3 seconds, and the
    /// issuer was called every two seconds.
    #[test]
    fn ordinary_values_above_max_lifetime_are_seconds_capped() {
        let said = Said {
            expires_in: Some(json!(3000)),
            expires_at: None,
        };
        let w = window(NOW, "opaque", &said, &policy(1200, 1200)).unwrap();
        assert_eq!(w.expires_at, NOW.add(Secs(1200)));
        assert_eq!(w.note, None);
    }

    #[test]
    fn a_token_too_short_to_serve_is_an_issuer_error() {
        // The test policy asks for 600 s / 4 / 2 = 75 s left at every read.
        let err = lifetime_of(json!(60)).unwrap_err();
        assert!(matches!(err, IssueError::TooShortToServe { .. }), "{err}");
    }

    #[test]
    fn huge_values_are_capped_at_max_lifetime_without_overflow() {
        for value in [
            json!(9_223_372_036_854_775_807_u64),
            json!(u64::MAX),
            json!(1e300),
            json!("99999999999999999999999999"),
        ] {
            assert_eq!(lifetime_of(value.clone()).unwrap(), 7200, "{value}");
        }
    }

    #[test]
    fn a_jwts_own_exp_is_used_and_bounds_the_window() {
        let token = jwt_with_exp(json!(NOW.as_secs() + 300));
        let p = policy(600, 7200);
        let w = window(NOW, &token, &Said::default(), &p).unwrap();
        assert_eq!(w.expires_at, NOW.add(Secs(300)));

        let said = Said {
            expires_in: Some(json!(3600)),
            expires_at: None,
        };
        let w = window(NOW, &token, &said, &p).unwrap();
        assert_eq!(w.expires_at, NOW.add(Secs(300)), "exp is earlier: it wins");
    }

    #[test]
    fn an_expiry_in_the_past_is_an_issuer_error() {
        let p = policy(600, 7200);
        let said = Said {
            expires_in: None,
            expires_at: Some(NOW.sub(Secs(1))),
        };
        let err = window(NOW, "opaque", &said, &p).unwrap_err();
        assert!(matches!(err, IssueError::AlreadyExpired { .. }), "{err}");

        let token = jwt_with_exp(json!(NOW.as_secs() - 10));
        let err = window(NOW, &token, &Said::default(), &p).unwrap_err();
        assert!(matches!(err, IssueError::AlreadyExpired { .. }), "{err}");
    }

    #[test]
    fn a_fresh_token_never_expires_in_the_past() {
        let p = policy(600, 7200);
        let said = |at| Said {
            expires_in: None,
            expires_at: Some(at),
        };
        let w = window(NOW, "opaque", &said(NOW.add(Secs(76))), &p).unwrap();
        assert!(w.expires_at > NOW);
        // One millisecond left is refused, never committed as already over.
        assert!(window(NOW, "opaque", &said(NOW.add_millis(1)), &p).is_err());
    }

    #[test]
    fn notes_never_echo_long_values() {
        let said = Said {
            expires_in: Some(json!("x".repeat(500))),
            expires_at: None,
        };
        let w = window(NOW, "opaque", &said, &policy(600, 7200)).unwrap();
        assert!(w.note.unwrap().len() < 120);
    }
}
