//! Policy durations: `"90s"`, `"20m"`, `"1h 30m"` or a plain number of seconds.
//!
//! A version's window is measured in whole seconds (a JWT's `nbf` and `exp` are seconds), so a
//! duration with a fraction of a second is refused instead of silently rounded.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration of whole seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Secs(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    #[error("`{0}` is not a duration: write for example \"90s\", \"20m\", \"1h\" or a number of seconds")]
    Unparsable(String),
    #[error("`{0}` is not a whole number of seconds")]
    Fractional(String),
    #[error("a duration cannot be negative")]
    Negative,
    #[error("`{0}`: `M` means months; write \"m\" for minutes or \"months\" for months")]
    BareMonth(String),
}

impl Secs {
    pub const ZERO: Secs = Secs(0);

    pub const fn from_mins(m: u64) -> Self {
        Secs(m.saturating_mul(60))
    }

    pub const fn as_secs(self) -> u64 {
        self.0
    }

    pub const fn as_millis(self) -> u64 {
        self.0.saturating_mul(1000)
    }

    pub fn as_std(self) -> Duration {
        Duration::from_secs(self.0)
    }

    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let text = text.trim();
        if let Ok(n) = text.parse::<u64>() {
            return Ok(Secs(n));
        }
        if text.starts_with('-') {
            return Err(DurationError::Negative);
        }
        if has_bare_month(text) {
            return Err(DurationError::BareMonth(text.to_owned()));
        }
        let d = humantime::parse_duration(text)
            .map_err(|_| DurationError::Unparsable(text.to_owned()))?;
        if d.subsec_nanos() != 0 {
            return Err(DurationError::Fractional(text.to_owned()));
        }
        Ok(Secs(d.as_secs()))
    }
}

/// Whether `text` uses the unit `M` (months to humantime, minutes to many readers).
fn has_bare_month(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(i, b)| {
        *b == b'M'
            && i > 0
            && bytes[i - 1].is_ascii_digit()
            && !bytes.get(i + 1).is_some_and(u8::is_ascii_alphabetic)
    })
}

/// The shortest readable form: `20m`, `1h 30m`, `0s`.
impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0s");
        }
        write!(f, "{}", humantime::format_duration(self.as_std()))
    }
}

impl Serialize for Secs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SecsVisitor;

        impl Visitor<'_> for SecsVisitor {
            type Value = Secs;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"90s\" or \"20m\", or a number of seconds")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secs, E> {
                Ok(Secs(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secs, E> {
                u64::try_from(v)
                    .map(Secs)
                    .map_err(|_| E::custom(DurationError::Negative))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Secs, E> {
                if v < 0.0 {
                    Err(E::custom(DurationError::Negative))
                } else if v.fract() != 0.0 || v > u64::MAX as f64 {
                    Err(E::custom(DurationError::Fractional(v.to_string())))
                } else {
                    Ok(Secs(v as u64))
                }
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secs, E> {
                Secs::parse(v).map_err(E::custom)
            }
        }

        d.deserialize_any(SecsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_units_and_plain_seconds() {
        assert_eq!(Secs::parse("90s"), Ok(Secs(90)));
        assert_eq!(Secs::parse("20m"), Ok(Secs(1200)));
        assert_eq!(Secs::parse("1h 30m"), Ok(Secs(5400)));
        assert_eq!(Secs::parse("45"), Ok(Secs(45)));
        let from_json: Secs = serde_json::from_str("120").unwrap();
        assert_eq!(from_json, Secs(120));
        let from_str: Secs = serde_json::from_str("\"2m\"").unwrap();
        assert_eq!(from_str, Secs(120));
    }

    #[test]
    fn refuses_fractions_negatives_and_words() {
        assert_eq!(
            Secs::parse("1500ms"),
            Err(DurationError::Fractional("1500ms".into()))
        );
        assert_eq!(Secs::parse("-5s"), Err(DurationError::Negative));
        assert!(matches!(
            Secs::parse("soon"),
            Err(DurationError::Unparsable(_))
        ));
        assert!(serde_json::from_str::<Secs>("-3").is_err());
        assert!(serde_json::from_str::<Secs>("1.5").is_err());
    }

    /// Regression: "60M" was read as sixty months where "60 minutes" was meant.
    #[test]
    fn a_bare_m_is_refused_as_ambiguous() {
        assert!(matches!(
            Secs::parse("60M"),
            Err(DurationError::BareMonth(_))
        ));
        assert!(matches!(
            Secs::parse("1h 5M"),
            Err(DurationError::BareMonth(_))
        ));
        assert_eq!(Secs::parse("1months"), Ok(Secs(2_630_016)));
        assert_eq!(Secs::parse("60m"), Ok(Secs(3600)));
    }

    #[test]
    fn displays_compactly() {
        assert_eq!(Secs(1200).to_string(), "20m");
        assert_eq!(Secs(0).to_string(), "0s");
        assert_eq!(Secs(5400).to_string(), "1h 30m");
    }
}
