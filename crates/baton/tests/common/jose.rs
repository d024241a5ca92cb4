//! Verification of baton's JWTs by an independent JOSE implementation (npm `jose`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/jose")
}

/// Installs `jose` from the lock file if it is not there yet.
fn ensure_installed() {
    if dir().join("node_modules/jose/package.json").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--silent", "--no-audit", "--no-fund"])
        .current_dir(dir())
        .status()
        .expect("npm must be installed to verify tokens with the `jose` library");
    assert!(status.success(), "`npm ci` in {} failed", dir().display());
}

/// Verifies each `(token, at_ms)` against `jwks` as of `at_ms`; returns jose's results:
/// `{"ok": true, "header", "payload"}` or `{"ok": false, "error"}`.
pub fn verify(jwks: &Value, tokens: &[(String, u64)]) -> Vec<Value> {
    ensure_installed();
    let input = json!({
        "jwks": jwks,
        "tokens": tokens.iter().map(|(t, at)| json!({"token": t, "at_ms": at})).collect::<Vec<_>>(),
    });
    let mut child = Command::new("node")
        .arg("verify.mjs")
        .current_dir(dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node must be installed to verify tokens");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write to node");
    let out = child.wait_with_output().expect("node verify.mjs");
    assert!(out.status.success(), "verify.mjs failed");
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).expect("verify.mjs output");
    assert_eq!(results.len(), tokens.len());
    results
}
