//! Encryption at rest with the real binary: a master key generated with mode 0600, a data
//! directory that holds no token or key in plain text, and a master key rotated by SIGHUP
//! while the server keeps serving.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{http, put_credential, temp_dir, token, Server};
use serde_json::json;

const STATIC_TOKEN: &str = "static-token-that-must-stay-sealed-4242";

/// Every file under `dir` whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

fn wait_for_log(server: &Server, text: &str) {
    for _ in 0..100 {
        if server.logs().contains(text) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the server never logged `{text}`:\n{}", server.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_sealed_and_the_master_key_rotates_on_sighup() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    let http = http();

    // A generated key, readable by its owner only, and a warning that says where it is.
    let key_file = data.join("master-key");
    let mode = std::fs::metadata(&key_file)
        .expect("master-key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        server.logs().contains("generated a master key"),
        "{}",
        server.logs()
    );
    let first_key = std::fs::read_to_string(&key_file).unwrap();
    assert!(
        !server.logs().contains(first_key.trim()),
        "the key was logged"
    );

    put_credential(
        &http,
        &server.url,
        "legacy",
        json!({
            "issuer": {"kind": "static", "token": STATIC_TOKEN},
            "policy": {"lifetime": "1h"},
        }),
    )
    .await;
    put_credential(
        &http,
        &server.url,
        "signed",
        json!({
            "issuer": {"kind": "jwt", "key": "generate"}, "policy": {"lifetime": "1h"},
        }),
    )
    .await;
    let jwt = token(&http, &server.url, "signed").await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        token(&http, &server.url, "legacy").await["token"],
        STATIC_TOKEN
    );

    // Rotate: a new key in the file, SIGHUP, and the server keeps serving.
    let new_key = "cd".repeat(32);
    std::fs::write(&key_file, format!("{new_key}\n")).unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    wait_for_log(&server, "master key rotated");
    assert_eq!(
        token(&http, &server.url, "legacy").await["token"],
        STATIC_TOKEN
    );
    assert!(server.terminate(), "clean stop");

    // No token, and no part of the jwt, is in the data directory in plain text.
    for needle in [STATIC_TOKEN, jwt.as_str(), jwt.split('.').nth(2).unwrap()] {
        let found = files_holding(&data, needle);
        assert!(found.is_empty(), "found a secret in {found:?}");
    }

    // The old key no longer opens the data; the new one does.
    std::fs::write(&key_file, &first_key).unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not open this data directory"),
        "{stderr}"
    );
    std::fs::write(&key_file, format!("{new_key}\n")).unwrap();
    let server = Server::start(&data);
    assert_eq!(
        token(&http, &server.url, "legacy").await["token"],
        STATIC_TOKEN
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_master_key_from_the_environment_is_used_and_never_written() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let key = "ef".repeat(32);
    let server = Server::start_with(&data, &[], &[("BATON_MASTER_KEY", &key)]);
    assert!(!data.join("master-key").exists());
    assert!(!server.logs().contains(&key));
    drop(server);
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("BATON_MASTER_KEY", "01".repeat(32))
        .output()
        .unwrap();
    assert!(!out.status.success(), "another key must not open the data");
}
