//! Where a secret in a request comes from: written inline, or read from an environment variable
//! or a file when the request is prepared.
//!
//! A stored spec never holds a reference: [`SecretSource::resolve`] reads the value once, on the
//! node that receives the write, and the value is what replicates.

use std::fmt;
use std::path::{Path, PathBuf};

use baton_core::{Secret, SecretRef};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::PrepareError;

/// A secret given inline (a plain string), or as `{"env": "NAME"}` or `{"file": "PATH"}`.
///
/// Its `Debug` shows the variable or path, and only the length and fingerprint of an inline
/// value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum SecretSource {
    Inline(Secret),
    Env { env: String },
    File { file: PathBuf },
}

impl SecretSource {
    /// The secret's value. A file's content loses one trailing newline (`\n` or `\r\n`), the
    /// one editors add. Errors name the variable or file, never the content.
    pub fn resolve(&self) -> Result<Secret, PrepareError> {
        match self {
            SecretSource::Inline(secret) => Ok(secret.clone()),
            SecretSource::Env { env } => read_env(env),
            SecretSource::File { file } => read_file(file),
        }
    }
}

impl From<SecretSource> for SecretRef {
    fn from(source: SecretSource) -> SecretRef {
        match source {
            SecretSource::Inline(secret) => SecretRef::Inline(secret),
            SecretSource::Env { env } => SecretRef::Env { env },
            SecretSource::File { file } => SecretRef::File { file },
        }
    }
}

/// The value of a stored reference, read now.
pub(crate) fn resolve_ref(secret: &SecretRef) -> Result<Secret, PrepareError> {
    match secret {
        SecretRef::Inline(secret) => Ok(secret.clone()),
        SecretRef::Env { env } => read_env(env),
        SecretRef::File { file } => read_file(file),
    }
}

/// How a stored reference is shown: the variable or file, never a value.
pub(crate) fn describe_ref(secret: &SecretRef) -> serde_json::Value {
    match secret {
        SecretRef::Inline(_) => serde_json::json!("(inline)"),
        SecretRef::Env { env } => serde_json::json!({ "env": env }),
        SecretRef::File { file } => serde_json::json!({ "file": file }),
    }
}

/// `text` with every occurrence of a secret (of four characters or more) cut out.
pub(crate) fn redact(text: &str, secrets: &[Secret]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        text = text.replace(secret.expose(), "[redacted]");
    }
    text
}

fn read_env(name: &str) -> Result<Secret, PrepareError> {
    match std::env::var(name) {
        Ok(value) => Ok(Secret::new(value)),
        Err(std::env::VarError::NotPresent) => Err(PrepareError::EnvNotSet {
            name: name.to_owned(),
        }),
        Err(std::env::VarError::NotUnicode(_)) => Err(PrepareError::EnvNotUnicode {
            name: name.to_owned(),
        }),
    }
}

fn read_file(path: &Path) -> Result<Secret, PrepareError> {
    let bytes =
        zeroize::Zeroizing::new(
            std::fs::read(path).map_err(|source| PrepareError::ReadFile {
                path: path.to_owned(),
                source,
            })?,
        );
    let text = std::str::from_utf8(&bytes).map_err(|_| PrepareError::FileNotUnicode {
        path: path.to_owned(),
    })?;
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    Ok(Secret::new(text))
}

/// Hand-written so that a mistake gets a message saying what is accepted, and so that a map
/// with anything but exactly one `env` or `file` key is refused.
impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SourceVisitor)
    }
}

struct SourceVisitor;

const EXPECTED: &str = r#"a string, {"env": "NAME"} or {"file": "PATH"}"#;

impl<'de> Visitor<'de> for SourceVisitor {
    type Value = SecretSource;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretSource, E> {
        Ok(SecretSource::Inline(Secret::new(v)))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<SecretSource, E> {
        Ok(SecretSource::Inline(Secret::new(v)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretSource, A::Error> {
        let Some(key) = map.next_key::<String>()? else {
            return Err(de::Error::custom(format!(
                "expected {EXPECTED}, found an empty map"
            )));
        };
        let source = match key.as_str() {
            "env" => SecretSource::Env {
                env: map.next_value()?,
            },
            "file" => SecretSource::File {
                file: map.next_value()?,
            },
            other => return Err(de::Error::unknown_field(other, &["env", "file"])),
        };
        if let Some(extra) = map.next_key::<String>()? {
            return Err(de::Error::custom(format!(
                "unexpected `{extra}`: expected {EXPECTED}"
            )));
        }
        Ok(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<SecretSource, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            parse(r#""abc""#).unwrap(),
            SecretSource::Inline(Secret::new("abc"))
        );
        assert_eq!(
            parse(r#"{"env": "X"}"#).unwrap(),
            SecretSource::Env { env: "X".into() }
        );
        assert_eq!(
            parse(r#"{"file": "/run/x"}"#).unwrap(),
            SecretSource::File {
                file: "/run/x".into()
            }
        );
    }

    #[test]
    fn refuses_other_shapes_saying_what_is_accepted() {
        for bad in [
            r#"{}"#,
            r#"{"path": "x"}"#,
            r#"{"env": "X", "file": "y"}"#,
            "5",
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("env") && err.contains("file"), "{bad}: {err}");
        }
    }

    #[test]
    fn serializes_back_to_the_same_shapes() {
        for json in [r#""abc""#, r#"{"env":"X"}"#, r#"{"file":"/run/x"}"#] {
            assert_eq!(serde_json::to_string(&parse(json).unwrap()).unwrap(), json);
        }
    }

    #[test]
    fn debug_never_shows_an_inline_value() {
        let shown = format!("{:?}", parse(r#""hunter2-inline""#).unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn env_is_read_and_a_missing_variable_is_named() {
        // Cargo sets this for every test process; no test changes the environment.
        let got = SecretSource::Env {
            env: "CARGO_PKG_NAME".into(),
        };
        assert_eq!(got.resolve().unwrap().expose(), "baton-issuers");

        let missing = SecretSource::Env {
            env: "BATON_TEST_SURELY_UNSET_4711".into(),
        };
        let err = missing.resolve().unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable BATON_TEST_SURELY_UNSET_4711 is not set (references are read where the baton server runs)"
        );
    }

    #[test]
    fn file_is_read_without_one_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("baton-issuers-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, content, want) in [
            ("lf", "tok\n", "tok"),
            ("crlf", "tok\r\n", "tok"),
            ("two", "tok\n\n", "tok\n"),
            ("none", "tok", "tok"),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, content).unwrap();
            let got = SecretSource::File { file: path }.resolve().unwrap();
            assert_eq!(got.expose(), want, "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_or_binary_file_is_named_without_its_content() {
        let dir =
            std::env::temp_dir().join(format!("baton-issuers-badfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();

        let missing = dir.join("absent");
        let err = SecretSource::File {
            file: missing.clone(),
        }
        .resolve()
        .unwrap_err();
        assert!(matches!(err, PrepareError::ReadFile { .. }), "{err:?}");
        assert!(err
            .to_string()
            .starts_with(&format!("cannot read {}", missing.display())));

        let binary = dir.join("binary");
        std::fs::write(&binary, b"secret\xff\xfe").unwrap();
        let err = SecretSource::File { file: binary }.resolve().unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("is not valid UTF-8"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");

        std::fs::remove_dir_all(&dir).unwrap();
    }
}
