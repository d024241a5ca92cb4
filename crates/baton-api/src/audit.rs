//! The audit trail: one JSON line per request that reads a secret or may change state.
//!
//! A line holds the time, the principal (a token's accessor or a certificate's subject), the
//! action (method and route), the target name, the outcome (the HTTP status) and the revision
//! after the request. It never holds a token, a body or a header. The file is opened for
//! appending at every line, so that it can be rotated by moving it away.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use baton_core::Timestamp;
use serde_json::json;

use crate::auth::PrincipalKind;

/// What the middleware knows of a request before its outcome.
#[derive(Debug)]
pub(crate) struct AuditLine {
    pub principal: Option<(PrincipalKind, String)>,
    pub action: String,
    pub target: String,
}

/// Where lines go.
#[derive(Debug)]
pub(crate) struct Audit {
    path: Option<PathBuf>,
    /// Lines are written whole, one at a time.
    lock: Mutex<()>,
}

/// An audit file opened for one line.
#[derive(Debug)]
pub(crate) struct Sink<'a> {
    file: File,
    audit: &'a Audit,
}

impl Audit {
    pub(crate) fn new(path: Option<PathBuf>) -> Self {
        Audit {
            path,
            lock: Mutex::new(()),
        }
    }

    pub(crate) fn is_off(&self) -> bool {
        self.path.is_none()
    }

    /// Opens the file for appending (created with mode 0600); None when auditing is off.
    pub(crate) fn open(&self) -> std::io::Result<Option<Sink<'_>>> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path)?;
        Ok(Some(Sink { file, audit: self }))
    }
}

impl Sink<'_> {
    pub(crate) fn write(
        mut self,
        line: &AuditLine,
        time: Timestamp,
        status: u16,
        revision: u64,
    ) -> std::io::Result<()> {
        let (kind, principal) = match &line.principal {
            Some((kind, id)) => (kind.as_str(), Some(id.as_str())),
            None => ("anonymous", None),
        };
        let value = json!({
            "time": time.to_string(),
            "principal": principal,
            "principal_kind": kind,
            "action": line.action,
            "target": line.target,
            "outcome": status,
            "revision": revision,
        });
        let mut text = value.to_string();
        text.push('\n');
        let _one_at_a_time = self
            .audit
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.file.write_all(text.as_bytes())?;
        self.file.flush()
    }
}
