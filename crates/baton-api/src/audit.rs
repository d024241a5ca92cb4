//! The audit trail: one JSON line per request that reads a secret or may change state.
//!
//! A line holds the time, the principal (a token's accessor or a certificate's subject), the
//! action (method and route), the target name, the outcome (the HTTP status) and the revision
//! after the request. It never holds a token, a body or a header. The file stays open for
//! appending while it is the file at the configured path; once it has been moved away (a
//! rotation), the next line opens a new one there.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

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

/// A target a handler names for the audit line when the path has none (a token it created).
#[derive(Clone, Debug)]
pub(crate) struct AuditTarget(pub String);

/// Where lines go.
#[derive(Debug)]
pub(crate) struct Audit {
    path: Option<PathBuf>,
    /// The file open at `path`, and its device and inode, to notice when it was moved.
    open: Mutex<Option<(Arc<File>, u64, u64)>>,
    /// Lines are written whole, one at a time.
    lock: Mutex<()>,
}

/// The audit file, ready for one line.
#[derive(Debug)]
pub(crate) struct Sink<'a> {
    file: Arc<File>,
    audit: &'a Audit,
}

impl Audit {
    pub(crate) fn new(path: Option<PathBuf>) -> Self {
        Audit {
            path,
            open: Mutex::new(None),
            lock: Mutex::new(()),
        }
    }

    pub(crate) fn is_off(&self) -> bool {
        self.path.is_none()
    }

    /// The file for appending (created with mode 0600), opened again when the one open is no
    /// longer the file at the path; None when auditing is off.
    pub(crate) fn open(&self) -> std::io::Result<Option<Sink<'_>>> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let at_path = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((file, dev, ino)) = open.as_ref() {
            if at_path == Some((*dev, *ino)) {
                return Ok(Some(Sink {
                    file: file.clone(),
                    audit: self,
                }));
            }
        }
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path)?;
        let meta = file.metadata()?;
        let file = Arc::new(file);
        *open = Some((file.clone(), meta.dev(), meta.ino()));
        Ok(Some(Sink { file, audit: self }))
    }
}

impl Sink<'_> {
    pub(crate) fn write(
        self,
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
        let mut file: &File = &self.file;
        file.write_all(text.as_bytes())?;
        file.flush()
    }
}
