//! An oauth2 credential against a real OAuth2 server: `oidc-provider` from the npm registry,
//! with the client-credentials grant and 8-second access tokens. 200 readers poll through at
//! least three rotations; the provider's own events count its token requests, and its
//! introspection endpoint checks that every token baton served is active.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{put_credential, temp_dir, Server};
use serde_json::{json, Value};

const READERS: usize = 200;
const CLIENT_SECRET: &str = "fleet-secret-for-tests";

/// The provider's process, killed when dropped, and the grants it logged.
struct Provider {
    child: Child,
    url: String,
    grants: Arc<AtomicUsize>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

fn start_provider(ttl_secs: u64) -> Provider {
    let dir = fixture_dir();
    if !dir.join("node_modules/oidc-provider/package.json").exists() {
        let status = Command::new("npm")
            .args(["ci", "--silent", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm must be installed to run the oidc-provider fixture");
        assert!(status.success(), "`npm ci` in {} failed", dir.display());
    }
    let mut child = Command::new("node")
        .arg("provider.mjs")
        .arg(ttl_secs.to_string())
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node must be installed to run the oidc-provider fixture");
    let grants = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    let counted = grants.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("listening ") {
                let _ = tx.send(url.to_owned());
            } else if line == "grant client_credentials" {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("oidc-provider did not start");
    Provider { child, url, grants }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn parse_ms(v: &Value) -> u64 {
    let t = humantime::parse_rfc3339(v.as_str().expect("a time")).expect("RFC 3339");
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Asks the provider whether `token` is active now.
async fn introspect(http: &reqwest::Client, provider: &str, token: &str) -> bool {
    let resp = http
        .post(format!("{provider}/token/introspection"))
        .basic_auth("fleet", Some(CLIENT_SECRET))
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspection request");
    let body: Value = resp.json().await.expect("introspection answer");
    body["active"] == json!(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_request_per_rotation_and_every_served_token_is_active() {
    let provider = start_provider(8);
    let dir = temp_dir();
    let secret_file = dir.path().join("client-secret");
    std::fs::write(&secret_file, format!("{CLIENT_SECRET}\n")).unwrap();
    let server = Server::start(&dir.path().join("data"));
    let http = server.http();
    let spec = json!({
        "issuer": {
            "kind": "oauth2",
            "token_url": format!("{}/token", provider.url),
            "client_id": "fleet",
            "client_secret": {"file": secret_file},
            "scope": "api:read",
        },
        "policy": {"lifetime": "8s", "renew_before": "3s", "min_remaining": "1s"},
    });
    put_credential(&http, &server.url, "partner", spec).await;

    // Readers poll until version 4 (three rotations after the first issue).
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<BTreeMap<u64, HashSet<String>>>> = Arc::default();
    let (fresh_tx, mut fresh_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut readers = Vec::new();
    for i in 0..READERS {
        let (http, url) = (http.clone(), server.url.clone());
        let (stop, seen, fresh_tx) = (stop.clone(), seen.clone(), fresh_tx.clone());
        readers.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i as u64 % 50)).await;
            let mut reads = 0;
            while !stop.load(Ordering::SeqCst) {
                let started = now_ms();
                let resp = http
                    .get(format!("{url}/v1/credentials/partner/token?wait=10s"))
                    .send()
                    .await
                    .expect("GET token");
                assert_eq!(resp.status(), 200, "reader {i}");
                let body: Value = resp.json().await.expect("JSON");
                let token = body["token"].as_str().unwrap().to_owned();
                let left = parse_ms(&body["expires_at"]).saturating_sub(started);
                assert!(
                    left >= 1000,
                    "reader {i} got a token with {left} ms left: {body}"
                );
                let version = body["version"].as_u64().unwrap();
                let new = seen
                    .lock()
                    .unwrap()
                    .entry(version)
                    .or_default()
                    .insert(token.clone());
                if new {
                    let _ = fresh_tx.send(token);
                }
                reads += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            reads
        }));
    }
    drop(fresh_tx);

    // Every token, as soon as it is first seen, must be active at the provider.
    let checker = {
        let (http, provider_url) = (http.clone(), provider.url.clone());
        tokio::spawn(async move {
            let mut checked = 0;
            while let Some(token) = fresh_rx.recv().await {
                assert!(
                    introspect(&http, &provider_url, &token).await,
                    "a served token is not active"
                );
                checked += 1;
            }
            checked
        })
    };

    let give_up = Instant::now() + Duration::from_secs(60);
    while seen
        .lock()
        .unwrap()
        .keys()
        .next_back()
        .copied()
        .unwrap_or(0)
        < 4
    {
        assert!(Instant::now() < give_up, "no fourth version within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut reads = 0;
    for r in readers {
        reads += r.await.expect("a reader failed");
    }
    let checked = checker.await.expect("introspection failed");

    let seen = seen.lock().unwrap().clone();
    for (version, tokens) in seen.iter() {
        assert_eq!(
            tokens.len(),
            1,
            "version {version} was served as {} tokens",
            tokens.len()
        );
    }
    assert_eq!(checked, seen.len());
    // Compare at a quiet moment: no rotation open, so no token request in flight.
    let show = || async {
        let url = format!("{}/v1/credentials/partner", server.url);
        let shown: Value = http.get(url).send().await.unwrap().json().await.unwrap();
        let newest = shown["versions"]["current"]["version"].as_u64().unwrap();
        (newest, shown["rotation"].is_null())
    };
    let (newest, grants) = loop {
        let (before, quiet) = show().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let grants = provider.grants.load(Ordering::SeqCst) as u64;
        let after = show().await;
        if quiet && after == (before, true) {
            break (before, grants);
        }
        assert!(Instant::now() < give_up, "never quiet");
    };
    assert_eq!(
        grants, newest,
        "the provider issued {grants} tokens for {newest} versions ({reads} reads)"
    );
    assert!(!server.logs().contains(CLIENT_SECRET));
}
