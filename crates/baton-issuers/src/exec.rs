//! The `exec` issuer: a command that prints a token and its expiry as JSON.
//!
//! The command is an argv list run without a shell, with exactly the environment its spec
//! gives and an optional working directory, in a process group of its own. The group is
//! killed when the command exits or its timeout passes, so nothing it started in the
//! background outlives it. Its stdout is one of:
//!
//! - `{"token": "…", "expires_at": "RFC 3339" | UNIX_SECONDS}` or `{"token", "expires_in"}`;
//! - a Kubernetes `ExecCredential`: `{"status": {"token": "…", "expirationTimestamp": "…"}}`.
//!
//! A failure reports the exit status and the trimmed end of stderr (with any token the
//! command printed cut out); stdout, which may hold a token, is never shown.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use baton_core::{ExecSpec, Secret, SecretRef, Secs, Timestamp};
use rustix::process::{kill_process_group, Pid, Signal};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::expiry::Said;
use crate::request::ExecRequest;
use crate::source::{describe_ref, resolve_ref};
use crate::{IssueError, PrepareError};

/// stdout and stderr are read up to this many bytes each.
const MAX_OUTPUT: u64 = 1 << 20;
/// How much of stderr an error shows.
const STDERR_SHOWN: usize = 512;
const DEFAULT_TIMEOUT: Secs = Secs(30);
/// How long output is still read after the command exits.
const OUTPUT_GRACE: Duration = Duration::from_millis(500);

pub(crate) fn prepare(req: ExecRequest) -> Result<ExecSpec, PrepareError> {
    let invalid = |field, reason: &str| PrepareError::invalid("exec", field, reason);
    match req.command.first() {
        None => return Err(invalid("command", "must name a program")),
        Some(program) if program.is_empty() => {
            return Err(invalid("command", "the program must not be empty"))
        }
        Some(_) => {}
    }
    if req.command.iter().any(|arg| arg.contains('\0')) {
        return Err(invalid("command", "arguments must not contain NUL"));
    }
    if let Some(name) = req
        .env
        .keys()
        .find(|k| k.is_empty() || k.contains(['=', '\0']))
    {
        let name: String = name.chars().filter(|c| !c.is_control()).collect();
        return Err(invalid("env", &format!("`{name}` is not a variable name")));
    }
    let timeout = crate::error::call_timeout("exec", req.timeout, DEFAULT_TIMEOUT)?;
    let env: BTreeMap<String, SecretRef> =
        req.env.into_iter().map(|(k, v)| (k, v.into())).collect();
    // Check the references now, so that a missing variable is reported when written.
    for value in env.values() {
        resolve_ref(value)?;
    }
    Ok(ExecSpec {
        command: req.command,
        env,
        working_dir: req.working_dir,
        timeout,
    })
}

pub(crate) fn describe(spec: &ExecSpec) -> Value {
    let env: serde_json::Map<String, Value> = spec
        .env
        .iter()
        .map(|(k, v)| (k.clone(), describe_ref(v)))
        .collect();
    serde_json::json!({
        "kind": "exec",
        "command": spec.command,
        "env": env,
        "working_dir": spec.working_dir,
        "timeout": spec.timeout,
    })
}

/// Runs the command once. Besides the spec's variables, the command sees which rotation it
/// serves: `BATON_CREDENTIAL`, `BATON_ROTATION` (the rotation number) and `BATON_FENCE` (the
/// intent's fence), so that a script can refuse to issue twice for one rotation.
pub(crate) async fn issue(
    spec: &ExecSpec,
    req: &crate::MintRequest<'_>,
) -> Result<(Secret, Said), IssueError> {
    let program = &spec.command[0];
    let mut command = tokio::process::Command::new(program);
    command
        .args(&spec.command[1..])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .env("BATON_CREDENTIAL", req.credential)
        .env("BATON_ROTATION", req.intent.rotation.to_string())
        .env("BATON_FENCE", req.intent.fence.to_string());
    // Every value passed in, to be cut out of what stderr shows.
    let mut secrets = Vec::new();
    for (name, value) in &spec.env {
        let value = resolve_ref(value)?;
        command.env(name, value.expose());
        secrets.push(value);
    }
    if let Some(dir) = &spec.working_dir {
        command.current_dir(dir);
    }
    let spawn_error = |e: std::io::Error| IssueError::Spawn {
        program: program.clone(),
        reason: match &spec.working_dir {
            Some(dir) if !dir.is_dir() => {
                format!("working_dir {} is not a directory", dir.display())
            }
            _ => e.to_string(),
        },
    };
    let mut child = command.spawn().map_err(spawn_error)?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(spawn_error(std::io::Error::other("no pipes")));
    };

    let group = child.id().and_then(|id| Pid::from_raw(id as i32));
    let stdout = Output::collect(stdout);
    let stderr = Output::collect(stderr);

    let status = tokio::time::timeout(spec.timeout.as_std(), child.wait()).await;
    // Whatever happened, end the command's process group: what it left running in the
    // background goes with it, and the pipes it held close.
    if let Some(group) = group {
        let _ = kill_process_group(group, Signal::KILL);
    }
    let Ok(status) = status else {
        return Err(IssueError::OutcomeUnknown {
            kind: "exec",
            timeout: spec.timeout.as_std(),
        });
    };
    let stdout = zeroize::Zeroizing::new(stdout.finish().await);
    let stderr = stderr.finish().await;
    let status = status.map_err(spawn_error)?;
    let stdout = zeroize::Zeroizing::new(stdout);
    let parsed = parse_output(&stdout);

    if !status.success() {
        if let Ok((token, _)) = &parsed {
            secrets.push(token.clone());
        }
        return Err(IssueError::ExitStatus {
            status: status.to_string(),
            stderr: shown_stderr(&stderr, &secrets),
        });
    }
    parsed
}

/// A pipe read in the background, up to [`MAX_OUTPUT`] bytes.
struct Output {
    buffer: Arc<Mutex<Vec<u8>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Output {
    fn collect(stream: impl AsyncRead + Unpin + Send + 'static) -> Output {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let reader = tokio::spawn(async move {
            let mut stream = stream.take(MAX_OUTPUT);
            let mut chunk = [0u8; 8192];
            // A read error ends the output: what was read is judged like any other output.
            while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(&chunk[..n]);
            }
        });
        Output { buffer, reader }
    }

    /// What was read once the pipe closed, or after [`OUTPUT_GRACE`] if a process that left
    /// the command's group still holds it open.
    async fn finish(self) -> Vec<u8> {
        let _ = tokio::time::timeout(OUTPUT_GRACE, &mut { self.reader }).await;
        std::mem::take(&mut *self.buffer.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// `: last lines of stderr` with the `secrets` (the token printed on stdout, the values of
/// the environment) cut out, or nothing when stderr is empty.
fn shown_stderr(stderr: &[u8], secrets: &[Secret]) -> String {
    let text = crate::source::redact(&String::from_utf8_lossy(stderr), secrets);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return String::new();
    }
    let start = trimmed
        .char_indices()
        .rev()
        .nth(STDERR_SHOWN - 1)
        .map_or(0, |(i, _)| i);
    let tail: String = trimmed[start..]
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let cut = if start > 0 { "…" } else { "" };
    format!(": {cut}{tail}")
}

fn bad(reason: &str) -> IssueError {
    IssueError::BadAnswer {
        kind: "exec",
        reason: reason.to_owned(),
    }
}

/// Reads the token and what the command said of its expiry.
fn parse_output(stdout: &[u8]) -> Result<(Secret, Said), IssueError> {
    if stdout.len() as u64 >= MAX_OUTPUT {
        return Err(bad("stdout exceeds 1 MiB"));
    }
    let json: Value =
        serde_json::from_slice(stdout).map_err(|_| bad("stdout is not a JSON object"))?;
    let (token, expires_at, expires_in) = match json.get("status") {
        Some(status) if json.get("token").is_none() => (
            &status["token"],
            &status["expirationTimestamp"],
            &Value::Null,
        ),
        _ => (&json["token"], &json["expires_at"], &json["expires_in"]),
    };
    let token = match token {
        Value::String(t) if !t.is_empty() => Secret::new(t.as_str()),
        _ => return Err(bad("stdout has no token (nor status.token)")),
    };
    let expires_at = match expires_at {
        Value::Null => None,
        Value::String(text) => Some(
            crate::static_issuer::parse_rfc3339(text)
                .ok_or_else(|| bad("expires_at is not an RFC 3339 time"))?,
        ),
        Value::Number(n) => {
            let secs = n
                .as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .ok_or_else(|| bad("expires_at is not a positive number of seconds"))?;
            Some(Timestamp::from_secs(secs))
        }
        _ => return Err(bad("expires_at is neither a time nor a number")),
    };
    let said = Said {
        expires_in: (!expires_in.is_null()).then(|| expires_in.clone()),
        expires_at,
    };
    Ok((token, said))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_plain_shape_and_the_exec_credential_shape() {
        let (token, said) =
            parse_output(br#"{"token":"t1","expires_at":"2030-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(token.expose(), "t1");
        assert_eq!(said.expires_at, Some(Timestamp::from_secs(1_893_456_000)));

        let (_, said) = parse_output(br#"{"token":"t2","expires_at":1900000000.5}"#).unwrap();
        assert_eq!(said.expires_at, Some(Timestamp::from_secs(1_900_000_000)));

        let (_, said) = parse_output(br#"{"token":"t2","expires_in":60}"#).unwrap();
        assert_eq!(said.expires_in, Some(serde_json::json!(60)));

        let k8s = br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",
            "status":{"token":"t3","expirationTimestamp":"2030-01-01T00:00:00Z"}}"#;
        let (token, said) = parse_output(k8s).unwrap();
        assert_eq!(token.expose(), "t3");
        assert!(said.expires_at.is_some());
    }

    #[test]
    fn garbage_is_refused_without_echoing_it() {
        for out in [
            &b"not json s3cr3t"[..],
            br#"{"tok":"s3cr3t"}"#,
            br#"{"token":""}"#,
        ] {
            let err = parse_output(out).unwrap_err().to_string();
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }

    #[test]
    fn stderr_is_trimmed_shortened_and_never_shows_the_token() {
        assert_eq!(shown_stderr(b"  login failed\n", &[]), ": login failed");
        assert_eq!(shown_stderr(b"\n", &[]), "");
        let secrets = [Secret::new("tok-123"), Secret::new("APIKEY-77")];
        let shown = shown_stderr(b"got tok-123 with key APIKEY-77, failed", &secrets);
        assert_eq!(shown, ": got [redacted] with key [redacted], failed");
        let long = "x".repeat(5000);
        assert!(shown_stderr(long.as_bytes(), &[]).chars().count() <= STDERR_SHOWN + 3);
    }
}
