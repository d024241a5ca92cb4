//! The static issuer: a value set by hand, which baton stores and serves.
//!
//! "Minting" hands back the stored value with the intent's window, cut short at the value's own
//! expiry when it has one. A value that has already expired cannot be served: the rotation
//! fails, and keeps failing until someone sets a new value.

use baton_core::{Intent, StaticSpec, Timestamp};
use serde_json::{json, Value};

use crate::request::StaticRequest;
use crate::{IssueError, Minted, PrepareError};

pub(crate) fn prepare(req: StaticRequest) -> Result<StaticSpec, PrepareError> {
    let token = req.token.resolve()?;
    if token.is_empty() {
        return Err(PrepareError::EmptyToken);
    }
    let expires_at = match req.expires_at {
        None => None,
        Some(text) => {
            Some(parse_rfc3339(&text).ok_or(PrepareError::InvalidExpiresAt { value: text })?)
        }
    };
    Ok(StaticSpec { token, expires_at })
}

pub(crate) fn mint(spec: &StaticSpec, intent: &Intent) -> Result<Minted, IssueError> {
    let expires_at = match spec.expires_at {
        Some(at) if at <= intent.not_before => {
            return Err(IssueError::StaticExpired { expired_at: at });
        }
        Some(at) => at.min(intent.expires_at),
        None => intent.expires_at,
    };
    Ok(Minted {
        token: spec.token.clone(),
        issued_at: intent.started_at,
        not_before: intent.not_before,
        expires_at,
        note: None,
    })
}

pub(crate) fn describe(spec: &StaticSpec) -> Value {
    json!({
        "kind": "static",
        "expires_at": spec.expires_at.map(|t| t.to_string()),
    })
}

/// An RFC 3339 time, `Z` or with a numeric offset (`+02:00`), with or without a fraction of a
/// second; milliseconds are kept. `None` when `text` is anything else.
pub(crate) fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    let text = text.trim().to_ascii_uppercase();
    let (base, offset_secs) = split_offset(&text)?;
    let utc = humantime::parse_rfc3339(&format!("{base}Z")).ok()?;
    let utc = Timestamp::from_system_time(utc).as_millis() as i128;
    let millis = utc - i128::from(offset_secs) * 1000;
    u64::try_from(millis).ok().map(Timestamp::from_millis)
}

/// Splits `…Z` or `…±HH:MM` into the local time and its offset from UTC in seconds.
fn split_offset(text: &str) -> Option<(&str, i64)> {
    if let Some(base) = text.strip_suffix('Z') {
        return Some((base, 0));
    }
    let split = text.len().checked_sub(6)?;
    let (base, offset) = (text.get(..split)?, text.get(split..)?);
    let sign = match offset.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = offset.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (hours, minutes) = (digits(1..3)?, digits(4..6)?);
    if offset.as_bytes()[3] != b':' || hours > 23 || minutes > 59 {
        return None;
    }
    Some((base, sign * (hours * 3600 + minutes * 60)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_and_offsets() {
        let noon = Timestamp::from_secs(1_893_499_200); // 2030-01-01T12:00:00Z
        assert_eq!(parse_rfc3339("2030-01-01T12:00:00Z"), Some(noon));
        assert_eq!(parse_rfc3339("2030-01-01t12:00:00z"), Some(noon));
        assert_eq!(parse_rfc3339("2030-01-01T14:00:00+02:00"), Some(noon));
        assert_eq!(parse_rfc3339("2030-01-01T07:30:00-04:30"), Some(noon));
        assert_eq!(
            parse_rfc3339("2030-01-01T12:00:00.250Z"),
            Some(noon.add_millis(250))
        );
    }

    #[test]
    fn refuses_what_is_not_rfc3339() {
        for bad in [
            "",
            "tomorrow",
            "2030-01-01",
            "2030-01-01T12:00:00",
            "2030-01-01T12:00:00+2:00",
            "2030-01-01T12:00:00+24:00",
            "1700000000",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
