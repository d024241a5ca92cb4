//! `baton serve` as an operator meets it: zero configuration, signals, health and metrics.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{put_credential, temp_dir, Server, BIN};
use serde_json::json;

/// With no flags, baton listens on 127.0.0.1:7171 and keeps its data in ./baton-data; SIGTERM
/// stops it cleanly.
#[test]
fn zero_configuration_listens_on_7171_and_keeps_data_in_baton_data() {
    let dir = temp_dir();
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn baton serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    let mut logs = Vec::new();
    while !logs.iter().any(|l: &String| l.contains("listening on")) {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => logs.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no `listening on` line; logs: {logs:#?}");
            }
        }
    }
    let all = logs.join("\n");
    assert!(all.contains("listening on http://127.0.0.1:7171"), "{all}");
    assert!(
        all.contains("baton-data"),
        "the log must say where the data is: {all}"
    );
    assert!(dir.path().join("baton-data/baton.redb").exists());

    let health = reqwest::blocking_get("http://127.0.0.1:7171/healthz");
    assert!(health.contains("\"status\":\"ok\""), "{health}");

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    assert!(
        status.success(),
        "SIGTERM must stop baton cleanly, got {status}"
    );
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:#?}");
}

/// A tiny blocking GET for the test above, without pulling another HTTP client in.
mod reqwest {
    pub fn blocking_get(url: &str) -> String {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let resp = ::reqwest::get(url).await.expect("GET");
            resp.text().await.expect("body")
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_report_rotations_expiry_latency_and_requests() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let http = server.http();
    put_credential(
        &http,
        &server.url,
        "metered",
        json!({"issuer": {"kind": "static", "token": "v1"}, "policy": {"lifetime": "1h"}}),
    )
    .await;
    let resp = http
        .get(format!("{}/v1/credentials/metered/token", server.url))
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 200);
    let missing = http
        .get(format!("{}/v1/credentials/nope/token", server.url))
        .send()
        .await;
    assert_eq!(missing.expect("GET").status(), 404);

    let text = http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let has = |needle: &str| {
        assert!(
            text.contains(needle),
            "`{needle}` missing from /metrics:\n{text}"
        );
    };
    has(r#"baton_rotations_total{credential="metered",outcome="success"} 1"#);
    has(r#"baton_credential_expiry_seconds{credential="metered"} 35"#);
    has("baton_rotation_duration_seconds_count 1");
    has(
        r#"baton_http_requests_total{route="/v1/credentials/{name}/token",method="GET",status="200"} 1"#,
    );
    has(
        r#"baton_http_requests_total{route="/v1/credentials/{name}/token",method="GET",status="404"} 1"#,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manual_rotation_makes_a_new_version_and_etag_follows_it() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let http = server.http();
    put_credential(
        &http,
        &server.url,
        "manual",
        json!({"issuer": {"kind": "jwt"}, "policy": {"lifetime": "1h"}}),
    )
    .await;
    let url = format!("{}/v1/credentials/manual/token", server.url);
    let first = http.get(&url).send().await.expect("token");
    let etag = first.headers()["etag"].to_str().expect("etag").to_owned();
    let cache = first.headers()["cache-control"]
        .to_str()
        .expect("cache")
        .to_owned();
    let max_age: u64 = cache
        .trim_start_matches("max-age=")
        .parse()
        .expect("max-age");
    assert!(
        (2600..=2700).contains(&max_age),
        "refresh at the renewal point: {cache}"
    );
    let first: serde_json::Value = first.json().await.expect("json");

    let again = http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("token");
    assert_eq!(
        again.status(),
        304,
        "an unchanged token answers 304 to its ETag"
    );

    let rotated = http
        .post(format!("{}/v1/credentials/manual/rotate", server.url))
        .send()
        .await
        .expect("rotate");
    assert_eq!(rotated.status(), 200);
    let second = http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("token");
    assert_eq!(second.status(), 200, "a new version changes the ETag");
    let second: serde_json::Value = second.json().await.expect("json");
    assert_eq!(second["version"], 2);
    assert_ne!(second["token"], first["token"]);
}

/// Regression: SIGTERM sent as soon as the server logged "listening" could arrive before its
/// handler was installed, and killed it without a clean stop.
#[test]
fn sigterm_right_after_listening_stops_cleanly() {
    for _ in 0..5 {
        let dir = common::temp_dir();
        let mut server = common::Server::start(&dir.path().join("data"));
        assert!(server.terminate(), "not a clean stop:\n{}", server.logs());
    }
}
