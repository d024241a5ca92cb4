//! Encryption at rest with the real binary: a master key generated with mode 0600, a data
//! directory that holds no token or key in plain text, and a master key rotated by SIGHUP
//! while the server keeps serving.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{put_credential, temp_dir, token, Server};
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
    let http = server.http();

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
    // The data directory and the database are the server user's alone.
    let mode_of = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode_of(&data), 0o700);
    assert_eq!(mode_of(&data.join("baton.redb")), 0o600);
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

    // Without the key at all, baton says so and leaves no key file of its own behind.
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("BATON_MASTER_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no master-key file"), "{stderr}");
    assert!(
        !data.join("master-key").exists(),
        "a stray key file was generated"
    );
}

/// A token endpoint that hands out one fixed access token, for the oauth2 credential below.
async fn start_token_endpoint() -> String {
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(|| async {
            axum::Json(json!({"access_token": OAUTH2_TOKEN, "expires_in": 3600}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

const OAUTH2_TOKEN: &str = "oauth2-access-token-sealed-7777";
const CLIENT_SECRET: &str = "client-secret-sealed-8888";
const KV_VALUE: &str = "kv-value-sealed-9999";

/// After jwt (an imported key), oauth2 and static credentials, a lease with a bound key, and a
/// restart, neither the data directory nor the server's output holds any of the secrets.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_run_leaves_no_secret_in_the_data_directory_or_the_logs() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let pem = include_str!("../../baton-issuers/tests/keys/ed25519-pkcs8.pem");
    let key_body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let token_url = start_token_endpoint().await;

    let mut server = Server::start(&data);
    let http = server.http();
    put_credential(
        &http,
        &server.url,
        "signed",
        json!({
            "issuer": {"kind": "jwt", "key": {"pem": pem}}, "policy": {"lifetime": "1h"},
        }),
    )
    .await;
    put_credential(
        &http,
        &server.url,
        "partner",
        json!({
            "issuer": {"kind": "oauth2", "token_url": token_url, "client_id": "fleet",
                       "client_secret": CLIENT_SECRET},
            "policy": {"lifetime": "1h"},
        }),
    )
    .await;
    put_credential(
        &http,
        &server.url,
        "legacy",
        json!({
            "issuer": {"kind": "static", "token": STATIC_TOKEN}, "policy": {"lifetime": "1h"},
        }),
    )
    .await;
    let jwt = token(&http, &server.url, "signed").await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        token(&http, &server.url, "partner").await["token"],
        OAUTH2_TOKEN
    );

    let lease: serde_json::Value = http
        .post(format!("{}/v1/leases/leader/acquire", server.url))
        .json(&json!({"holder": "a", "ttl": "30s"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let put = http
        .put(format!("{}/v1/kv/config", server.url))
        .json(&json!({"value": KV_VALUE, "lease": {"name": "leader", "fence": lease["fence"]}}))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.text().await.unwrap());

    // A restart on the same data: everything is still there.
    let mut logs = server.logs();
    assert!(server.terminate());
    let server = Server::start(&data);
    assert_eq!(
        token(&http, &server.url, "legacy").await["token"],
        STATIC_TOKEN
    );
    assert_eq!(token(&http, &server.url, "signed").await["token"], jwt);
    logs.push_str(&server.logs());
    drop(server);

    let signature = jwt.split('.').nth(2).unwrap();
    for needle in [
        STATIC_TOKEN,
        OAUTH2_TOKEN,
        CLIENT_SECRET,
        KV_VALUE,
        jwt.as_str(),
        signature,
        key_body.as_str(),
    ] {
        let found = files_holding(&data, needle);
        assert!(found.is_empty(), "`{needle}` found in {found:?}");
        assert!(!logs.contains(needle), "`{needle}` in the logs");
    }
}
