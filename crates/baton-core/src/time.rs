//! Wall-clock instants as the state machine sees them: milliseconds since the Unix epoch.
//!
//! The leader stamps each command with its clock; the state machine only compares and adds.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::Secs;

/// An instant, in milliseconds since the Unix epoch (UTC).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// 9999-12-31T23:59:59.999Z, the last instant RFC 3339 can write.
    const LAST_RFC3339: Timestamp = Timestamp(253_402_300_799_999);

    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1000))
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch, rounded down.
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// This instant rounded down to a whole second: version windows are whole seconds, so that
    /// the `nbf` and `exp` of a JWT (seconds) describe them exactly.
    pub const fn floor_secs(self) -> Self {
        Timestamp(self.0 - self.0 % 1000)
    }

    /// This instant rounded up to a whole second.
    pub const fn ceil_secs(self) -> Self {
        match self.0 % 1000 {
            0 => self,
            r => Timestamp(self.0.saturating_add(1000 - r)),
        }
    }

    pub const fn add(self, d: Secs) -> Self {
        Timestamp(self.0.saturating_add(d.as_millis()))
    }

    pub const fn add_millis(self, ms: u64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }

    pub const fn sub(self, d: Secs) -> Self {
        Timestamp(self.0.saturating_sub(d.as_millis()))
    }

    pub const fn sub_millis(self, ms: u64) -> Self {
        Timestamp(self.0.saturating_sub(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub const fn millis_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// Reads `t` as a timestamp; instants before the epoch become the epoch.
    pub fn from_system_time(t: SystemTime) -> Self {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

/// RFC 3339 in UTC, with milliseconds when they are not zero.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // RFC 3339 ends with the year 9999; later instants show as milliseconds.
        if self.0 > Self::LAST_RFC3339.0 {
            return write!(f, "{}ms", self.0);
        }
        if self.0 % 1000 == 0 {
            write!(
                f,
                "{}",
                humantime::format_rfc3339_seconds(self.to_system_time())
            )
        } else {
            write!(
                f,
                "{}",
                humantime::format_rfc3339_millis(self.to_system_time())
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_rfc3339_utc() {
        assert_eq!(Timestamp::from_secs(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp(1_500).to_string(), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn instants_past_year_9999_still_display() {
        assert_eq!(Timestamp(u64::MAX).to_string(), format!("{}ms", u64::MAX));
        assert_eq!(
            Timestamp::LAST_RFC3339.to_string(),
            "9999-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn floor_drops_the_fraction_of_a_second() {
        assert_eq!(Timestamp(12_999).floor_secs(), Timestamp(12_000));
    }
}
