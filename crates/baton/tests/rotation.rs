//! End to end over real TCP against the built binary: many readers through several rotations,
//! a `kill -9` in the middle, and every token checked by an independent JOSE library.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{jose, put_credential, temp_dir, Server};
use serde_json::{json, Value};

const READERS: usize = 200;
const MIN_REMAINING_MS: u64 = 1000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

fn parse_time(v: &Value) -> u64 {
    let text = v.as_str().expect("a time string");
    let t = humantime::parse_rfc3339(text).expect("RFC 3339");
    t.duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis() as u64
}

/// One successful token read, as a reader saw it.
#[derive(Clone, Debug)]
struct Read {
    started_ms: u64,
    finished_ms: u64,
    version: u64,
    token: String,
    not_before: u64,
    expires_at: u64,
    next: Option<(u64, String, u64, u64)>,
}

#[derive(Default)]
struct Log {
    reads: Vec<Read>,
    /// Answers other than 200, by status.
    statuses: BTreeMap<u16, usize>,
    /// Requests that found no server (only expected while it is down).
    unreachable: usize,
}

/// Runs `READERS` tasks reading `name` from whatever `url` holds until `stop` is set.
fn spawn_readers(
    url: Arc<RwLock<String>>,
    name: &'static str,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Log>> {
    let client = common::http_for(&url.read().expect("url"));
    (0..READERS)
        .map(|_| {
            let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
            tokio::spawn(async move {
                let mut log = Log::default();
                while !stop.load(Ordering::Relaxed) {
                    let base = url.read().expect("url").clone();
                    let started_ms = now_ms();
                    let resp = client
                        .get(format!("{base}/v1/credentials/{name}/token"))
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    let resp = match resp {
                        Ok(r) => r,
                        Err(_) => {
                            log.unreachable += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let status = resp.status().as_u16();
                    if status != 200 {
                        *log.statuses.entry(status).or_default() += 1;
                        continue;
                    }
                    let Ok(body) = resp.json::<Value>().await else {
                        log.unreachable += 1;
                        continue;
                    };
                    let next = body["next"].as_object().map(|n| {
                        (
                            n["version"].as_u64().expect("next.version"),
                            n["token"].as_str().expect("next.token").to_owned(),
                            parse_time(&n["not_before"]),
                            parse_time(&n["expires_at"]),
                        )
                    });
                    log.reads.push(Read {
                        started_ms,
                        finished_ms: now_ms(),
                        version: body["version"].as_u64().expect("version"),
                        token: body["token"].as_str().expect("token").to_owned(),
                        not_before: parse_time(&body["not_before"]),
                        expires_at: parse_time(&body["expires_at"]),
                        next,
                    });
                    // Poll hard, but leave the machine some air.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                log
            })
        })
        .collect()
}

async fn collect(handles: Vec<tokio::task::JoinHandle<Log>>) -> Log {
    let mut all = Log::default();
    for h in handles {
        let log = h.await.expect("reader");
        all.reads.extend(log.reads);
        all.unreachable += log.unreachable;
        for (s, n) in log.statuses {
            *all.statuses.entry(s).or_default() += n;
        }
    }
    all
}

/// Every version has one token and one window, whoever read it and whenever.
fn versions_of(reads: &[Read]) -> BTreeMap<u64, (String, u64, u64)> {
    let mut versions: BTreeMap<u64, (String, u64, u64)> = BTreeMap::new();
    let seen = reads.iter().flat_map(|r| {
        let current = (r.version, r.token.clone(), r.not_before, r.expires_at);
        std::iter::once(current).chain(r.next.clone())
    });
    for (version, token, nb, exp) in seen {
        let entry = versions
            .entry(version)
            .or_insert_with(|| (token.clone(), nb, exp));
        assert_eq!(
            entry.0, token,
            "version {version} was served with two different tokens"
        );
        assert_eq!(
            (entry.1, entry.2),
            (nb, exp),
            "version {version} changed its window"
        );
    }
    versions
}

/// Checks every distinct token with `jose` against the JWKS, as of the middle of its window,
/// and that its claims carry the window baton reported.
fn verify_with_jose(jwks: &Value, versions: &BTreeMap<u64, (String, u64, u64)>, exact_nbf: bool) {
    let tokens: Vec<(String, u64)> = versions
        .values()
        .map(|(t, nb, exp)| (t.clone(), (nb + exp) / 2))
        .collect();
    let results = jose::verify(jwks, &tokens);
    for ((version, (_, nb, exp)), result) in versions.iter().zip(results) {
        assert_eq!(
            result["ok"], true,
            "jose refused version {version}: {result}"
        );
        let payload = &result["payload"];
        assert_eq!(
            payload["exp"].as_u64(),
            Some(exp / 1000),
            "exp of version {version}"
        );
        let nbf = payload["nbf"].as_u64().expect("nbf");
        if exact_nbf {
            assert_eq!(
                nbf,
                nb / 1000,
                "overlap = none: nbf is the version's not_before"
            );
        } else {
            assert!(nbf <= nb / 1000, "nbf is never later than not_before");
        }
        assert!(payload["jti"].is_string(), "jti is set");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_get_one_fresh_token_per_version_through_rotations_and_a_kill_9() {
    let dir = temp_dir();
    let mut server = Server::start(dir.path());
    let http = server.http();
    put_credential(
        &http,
        &server.url,
        "e2e",
        json!({
            "issuer": {"kind": "jwt", "algorithm": "EdDSA", "key": "generate",
                       "claims": {"iss": "baton-test", "aud": "partner"}},
            "policy": {"lifetime": "6s", "renew_before": "2s", "min_remaining": "1s"}
        }),
    )
    .await;

    let url = Arc::new(RwLock::new(server.url.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let readers = spawn_readers(url.clone(), "e2e", stop.clone());

    // Run through about two rotations, then kill -9 and restart on the same data.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let before_kill = now_ms();
    server.kill9();
    let killed_at = now_ms();
    let server = Server::start(dir.path());
    let restarted_at = now_ms();
    *url.write().expect("url") = server.url.clone();

    tokio::time::sleep(Duration::from_secs(11)).await;
    stop.store(true, Ordering::Relaxed);
    let log = collect(readers).await;

    assert!(
        log.statuses.is_empty(),
        "readers got errors: {:?}",
        log.statuses
    );
    assert!(log.reads.len() > 1000, "too few reads: {}", log.reads.len());

    // One token per version, no version lost across the kill.
    let versions = versions_of(&log.reads);
    let numbers: Vec<u64> = versions.keys().copied().collect();
    let expected: Vec<u64> = (1..=*numbers.last().expect("some version")).collect();
    assert_eq!(numbers, expected, "versions must be contiguous from 1");
    assert!(
        numbers.len() >= 4,
        "at least three rotations expected, saw {numbers:?}"
    );

    // Rotation resumed on schedule after the restart: versions newer than the last one read
    // before the kill were read after it.
    let last_before = log
        .reads
        .iter()
        .filter(|r| r.finished_ms < before_kill)
        .map(|r| r.version)
        .max();
    let last_after = log
        .reads
        .iter()
        .filter(|r| r.started_ms > restarted_at)
        .map(|r| r.version)
        .max();
    let (last_before, last_after) = (
        last_before.expect("reads before"),
        last_after.expect("reads after"),
    );
    assert!(
        last_after >= last_before + 2,
        "rotation did not resume: {last_before} then {last_after}"
    );

    // Nobody got a token that was expired, or within min_remaining of its expiry.
    for r in &log.reads {
        assert!(
            r.not_before <= r.finished_ms,
            "version {} read before its window",
            r.version
        );
        assert!(
            r.expires_at >= r.started_ms + MIN_REMAINING_MS,
            "version {} read at {} with less than min_remaining left (expires {})",
            r.version,
            r.started_ms,
            r.expires_at
        );
    }
    eprintln!(
        "reads: {}, versions: {numbers:?}, unreachable while down ({} ms): {}",
        log.reads.len(),
        restarted_at - killed_at,
        log.unreachable
    );

    let jwks: Value = http
        .get(format!("{}/v1/credentials/e2e/jwks.json", server.url))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    verify_with_jose(&jwks, &versions, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlap_none_versions_never_overlap_and_next_is_published_ahead() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let http = server.http();
    put_credential(
        &http,
        &server.url,
        "strict",
        json!({
            "issuer": {"kind": "jwt", "algorithm": "RS256", "key": "generate", "key_id": "strict-1"},
            "policy": {"lifetime": "6s", "renew_before": "2s", "min_remaining": "1s",
                       "overlap": "none"}
        }),
    )
    .await;

    let url = Arc::new(RwLock::new(server.url.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let readers = spawn_readers(url, "strict", stop.clone());
    tokio::time::sleep(Duration::from_secs(15)).await;
    stop.store(true, Ordering::Relaxed);
    let log = collect(readers).await;
    assert!(
        log.statuses.is_empty(),
        "readers got errors: {:?}",
        log.statuses
    );

    let versions = versions_of(&log.reads);
    assert!(
        versions.len() >= 3,
        "at least two rotations expected, saw {:?}",
        versions.keys()
    );
    for ((a, (_, _, a_exp)), (b, (_, b_nb, _))) in versions.iter().zip(versions.iter().skip(1)) {
        assert_eq!(b, &(a + 1));
        assert_eq!(
            b_nb, a_exp,
            "version {b} must start exactly when version {a} expires"
        );
    }

    // Near the end of a version, readers get the next one with it, to switch on their own.
    let mut saw_next = false;
    for r in &log.reads {
        assert!(
            r.not_before <= r.finished_ms && r.started_ms < r.expires_at,
            "{r:?}"
        );
        if let Some((version, _, nb, _)) = &r.next {
            saw_next = true;
            assert_eq!(*version, r.version + 1);
            assert_eq!(*nb, r.expires_at);
        } else {
            assert!(
                r.expires_at >= r.started_ms + MIN_REMAINING_MS,
                "without `next`, a read must leave min_remaining: {r:?}"
            );
        }
    }
    assert!(saw_next, "no reader ever saw a pre-minted next version");

    let jwks: Value = http
        .get(format!("{}/v1/credentials/strict/jwks.json", server.url))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    assert_eq!(jwks["keys"][0]["kid"], "strict-1");
    verify_with_jose(&jwks, &versions, true);
}
