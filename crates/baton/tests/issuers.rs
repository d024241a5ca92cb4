//! oauth2 and exec credentials against issuers that misbehave the way real ones do, over real
//! TCP against the built binary: a token endpoint written here injects odd `expires_in`
//! values, 429s with `Retry-After`, 500s, hangs and garbage, and counts every call it gets.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::{put_credential, temp_dir, Server};
use serde_json::{json, Value};

const CLIENT_SECRET: &str = "s3cret-client-value";

/// Calls received, by case.
#[derive(Clone, Default)]
struct Endpoint {
    calls: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
    /// Cases that answer normally from now on.
    healed: Arc<Mutex<Vec<String>>>,
}

impl Endpoint {
    fn calls(&self, case: &str) -> Vec<Instant> {
        self.calls
            .lock()
            .unwrap()
            .get(case)
            .cloned()
            .unwrap_or_default()
    }

    fn heal(&self, case: &str) {
        self.healed.lock().unwrap().push(case.to_owned());
    }
}

fn ok(case: &str, n: usize, expires_in: Value) -> Response {
    let mut body = json!({"access_token": format!("tok-{case}-{n}"), "token_type": "Bearer"});
    if !expires_in.is_null() {
        body["expires_in"] = expires_in;
    }
    axum::Json(body).into_response()
}

async fn token(
    State(endpoint): State<Endpoint>,
    UrlPath(case): UrlPath<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let n = {
        let mut calls = endpoint.calls.lock().unwrap();
        let list = calls.entry(case.clone()).or_default();
        list.push(Instant::now());
        list.len()
    };
    let basic = format!(
        "Basic {}",
        base64_encode(format!("fleet:{CLIENT_SECRET}").as_bytes())
    );
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(basic.as_str())
        || body.contains(&format!("client_secret={CLIENT_SECRET}"));
    if !authorized || !body.contains("grant_type=client_credentials") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    if endpoint.healed.lock().unwrap().contains(&case) {
        return ok(&case, n, json!(3600));
    }
    match case.as_str() {
        "zero" => ok(&case, n, json!(0)),
        "missing" => ok(&case, n, Value::Null),
        "string" => ok(&case, n, json!("3600")),
        "negative" => ok(&case, n, json!(-5)),
        "millis" => ok(&case, n, json!(3_600_000)),
        "huge" => ok(&case, n, json!(9_223_372_036_854_775_807_u64)),
        "limited" if n == 1 => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "2")],
            axum::Json(json!({"error": "slow_down"})),
        )
            .into_response(),
        "error" => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
        "hang" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            ok(&case, n, json!(3600))
        }
        "garbage" => (StatusCode::OK, "<html>not a token answer</html>").into_response(),
        "cold" => cold(&endpoint, &case, n).await,
        _ => ok(&case, n, json!(3600)),
    }
}

/// 429 above 5 calls in the last second; a slow answer otherwise.
async fn cold(endpoint: &Endpoint, case: &str, n: usize) -> Response {
    let recent = endpoint
        .calls(case)
        .iter()
        .filter(|t| t.elapsed() < Duration::from_secs(1))
        .count();
    if recent > 5 {
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response();
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    ok(case, n, json!(3600))
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Starts the fault-injecting endpoint on a free loopback port.
async fn start_endpoint() -> (Endpoint, String) {
    let endpoint = Endpoint::default();
    let app = axum::Router::new()
        .route("/{case}", axum::routing::post(token))
        .with_state(endpoint.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (endpoint, url)
}

/// A server whose engine waits out unknown outcomes for 3 s and starts backoff at 1 s.
fn start_baton(dir: &Path) -> Server {
    let config = dir.join("baton.toml");
    std::fs::write(
        &config,
        "[rotation]\nintent_timeout = \"3s\"\nbackoff_base = \"1s\"\nmin_interval = \"1s\"\n",
    )
    .unwrap();
    let data = dir.join("data");
    Server::start_with(&data, &["--config", config.to_str().unwrap()], &[])
}

fn oauth2_spec(endpoint: &str, case: &str) -> Value {
    json!({
        "issuer": {
            "kind": "oauth2",
            "token_url": format!("{endpoint}/{case}"),
            "client_id": "fleet",
            "client_secret": CLIENT_SECRET,
            "timeout": "1s",
        },
        "policy": {"lifetime": "1h", "max_lifetime": "2h", "renew_before": "10m",
                   "min_remaining": "1m"},
    })
}

fn parse_ms(v: &Value) -> u64 {
    let t = humantime::parse_rfc3339(v.as_str().expect("a time")).expect("RFC 3339");
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn show(http: &reqwest::Client, url: &str, name: &str) -> Value {
    let resp = http
        .get(format!("{url}/v1/credentials/{name}"))
        .send()
        .await
        .unwrap();
    resp.json().await.unwrap()
}

/// GET token with `?wait=`; returns (status, body, Retry-After).
async fn read(
    http: &reqwest::Client,
    url: &str,
    name: &str,
    wait: &str,
) -> (u16, Value, Option<String>) {
    let resp = http
        .get(format!("{url}/v1/credentials/{name}/token?wait={wait}"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, resp.json().await.unwrap_or(Value::Null), retry)
}

/// The served lifetime of `name`'s token, in seconds, rounded to the nearest.
async fn served_lifetime(http: &reqwest::Client, url: &str, name: &str) -> u64 {
    let (status, body, _) = read(http, url, name, "10s").await;
    assert_eq!(status, 200, "{name}: {body}");
    let ms = parse_ms(&body["expires_at"]) - parse_ms(&body["not_before"]);
    (ms + 500) / 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_expires_in_values_give_safe_lifetimes_and_one_call_each() {
    let (endpoint, endpoint_url) = start_endpoint().await;
    let dir = temp_dir();
    let server = start_baton(dir.path());
    let http = server.http();
    let cases = [
        ("zero", 3600),    // 0 is not "expired now": the policy's lifetime
        ("missing", 3600), // no expires_in: the policy's lifetime
        ("string", 3600),  // "3600" is a number
        ("millis", 3600),  // 3600000 is milliseconds by mistake
        ("huge", 7200),    // near 2^63: capped at max_lifetime, no overflow
    ];
    for (case, _) in cases {
        put_credential(&http, &server.url, case, oauth2_spec(&endpoint_url, case)).await;
    }
    for (case, lifetime) in cases {
        assert_eq!(
            served_lifetime(&http, &server.url, case).await,
            lifetime,
            "{case}"
        );
    }
    // No renewal loop: nothing more is asked of the issuer.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (case, _) in cases {
        assert_eq!(endpoint.calls(case).len(), 1, "{case}");
    }
    let (_, body, _) = read(&http, &server.url, "zero", "1s").await;
    assert_eq!(body["token"], "tok-zero-1");
    assert!(
        server.logs().contains("read as milliseconds"),
        "{}",
        server.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negative_expires_in_is_an_issuer_error_retried_with_backoff() {
    let (endpoint, endpoint_url) = start_endpoint().await;
    let dir = temp_dir();
    let server = start_baton(dir.path());
    let http = server.http();
    put_credential(
        &http,
        &server.url,
        "negative",
        oauth2_spec(&endpoint_url, "negative"),
    )
    .await;

    tokio::time::sleep(Duration::from_millis(4500)).await;
    let (status, body, retry) = read(&http, &server.url, "negative", "0s").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "token_unavailable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("the last rotation failed") && message.contains("negative"),
        "{message}"
    );
    assert!(retry.is_some());
    let shown = show(&http, &server.url, "negative").await;
    let error = shown["status"]["last_error"].as_str().unwrap();
    assert!(error.contains("negative"), "{error}");
    assert!(!error.contains("tok-negative"), "{error}");
    // Backoff 1 s, 2 s (±20 %): 3 calls in 4.5 s, never a loop.
    let calls = endpoint.calls("negative");
    assert!((2..=3).contains(&calls.len()), "{} calls", calls.len());
    assert_eq!(
        shown["status"]["attempts"].as_u64(),
        Some(calls.len() as u64)
    );
    assert!(shown["status"]["retry_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_429_is_honoured() {
    let (endpoint, endpoint_url) = start_endpoint().await;
    let dir = temp_dir();
    let server = start_baton(dir.path());
    let http = server.http();
    put_credential(
        &http,
        &server.url,
        "limited",
        oauth2_spec(&endpoint_url, "limited"),
    )
    .await;

    let (status, body, _) = read(&http, &server.url, "limited", "10s").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token"], "tok-limited-2");
    let calls = endpoint.calls("limited");
    assert_eq!(calls.len(), 2);
    let gap = calls[1] - calls[0];
    assert!(
        gap >= Duration::from_millis(1950),
        "retried after {gap:?}, not Retry-After: 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_back_off_exponentially_and_show_in_the_state() {
    let (endpoint, endpoint_url) = start_endpoint().await;
    let dir = temp_dir();
    let server = start_baton(dir.path());
    let http = server.http();
    put_credential(
        &http,
        &server.url,
        "error",
        oauth2_spec(&endpoint_url, "error"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(6500)).await;

    let calls = endpoint.calls("error");
    // Delays 1 s, 2 s, 4 s, each ±20 %: calls at about 0, 1, 3 (and 7) seconds.
    assert!(
        (3..=4).contains(&calls.len()),
        "{} calls in 6.5 s",
        calls.len()
    );
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.windows(2).all(|g| g[1] > g[0]), "gaps grow: {gaps:?}");
    let shown = show(&http, &server.url, "error").await;
    let error = shown["status"]["last_error"].as_str().unwrap();
    assert!(error.contains("HTTP 500"), "{error}");
    assert_eq!(
        shown["status"]["attempts"].as_u64(),
        Some(calls.len() as u64)
    );

    // Once the endpoint recovers, the credential is issued.
    endpoint.heal("error");
    let (status, body, _) = read(&http, &server.url, "error", "10s").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_past_the_timeout_is_waited_out_not_sent_again() {
    let (endpoint, endpoint_url) = start_endpoint().await;
    let dir = temp_dir();
    let server = start_baton(dir.path());
    let http = server.http();
    put_credential(
        &http,
        &server.url,
        "hang",
        oauth2_spec(&endpoint_url, "hang"),
    )
    .await;

    // The call times out after 1 s; the intent (at least 2 × timeout + 5 s = 7 s) is waited
    // out before a second call.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        endpoint.calls("hang").len(),
        1,
        "not sent again within the intent"
    );
    let shown = show(&http, &server.url, "hang").await;
    assert_eq!(shown["status"]["unknown_outcomes"], 1, "{shown}");
    assert!(shown["status"]["last_error"]
        .as_str()
        .unwrap()
        .contains("outcome is unknown"));
    let metrics = http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("baton_issuer_unknown_outcomes_total{credential=\"hang\"} 1"),
        "{metrics}"
    );

    endpoint.heal("hang");
    let (status, body, _) = read(&http, &server.url, "hang", "10s").await;
    assert_eq!(status, 200, "{body}");
    let calls = endpoint.calls("hang");
    assert_eq!(calls.len(), 2);
    assert!(
        calls[1] - calls[0] >= Duration::from_secs(6),
        "{:?}",
        calls[1] - calls[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_answer_is_an_issuer_error_that_shows_nothing_of_the_body() {
    let (endpoint, endpoint_url) = start_endpoint().await;
    let dir = temp_dir();
    let server = start_baton(dir.path());
    let http = server.http();
    put_credential(
        &http,
        &server.url,
        "garbage",
        oauth2_spec(&endpoint_url, "garbage"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let shown = show(&http, &server.url, "garbage").await;
    let error = shown["status"]["last_error"].as_str().unwrap();
    assert!(error.contains("not JSON"), "{error}");
    assert!(!error.contains("html"), "{error}");
    assert!((1..=2).contains(&endpoint.calls("garbage").len()));
    assert!(!server.logs().contains(CLIENT_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_of_200_readers_makes_one_issuer_call() {
    let (endpoint, endpoint_url) = start_endpoint().await;
    let dir = temp_dir();
    let server = start_baton(dir.path());
    let http = server.http();
    let mut spec = oauth2_spec(&endpoint_url, "cold");
    spec["issuer"]["auth_method"] = json!("post");
    put_credential(&http, &server.url, "cold", spec).await;

    // 200 readers within 100 ms, while the issuer takes 400 ms to answer.
    let mut readers = Vec::new();
    for i in 0..200 {
        let (http, url) = (http.clone(), server.url.clone());
        readers.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_micros(500 * i)).await;
            // One in ten will not wait: it gets a clear 503 with Retry-After at once.
            let wait = if i % 10 == 0 { "0s" } else { "10s" };
            (wait, read(&http, &url, "cold", wait).await)
        }));
    }
    let mut served = std::collections::BTreeSet::new();
    for r in readers {
        let (wait, (status, body, retry)) = r.await.unwrap();
        match status {
            200 => {
                served.insert(body["token"].as_str().unwrap().to_owned());
            }
            503 if wait == "0s" => {
                assert_eq!(body["error"]["code"], "token_unavailable", "{body}");
                assert!(retry.is_some());
            }
            other => panic!("reader (wait {wait}) got {other}: {body}"),
        }
    }
    assert_eq!(served.into_iter().collect::<Vec<_>>(), ["tok-cold-1"]);
    assert_eq!(endpoint.calls("cold").len(), 1, "one call, no storm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_none_withdraws_the_old_token_at_the_rotation_point() {
    let (_endpoint, endpoint_url) = start_endpoint().await;
    let dir = temp_dir();
    let server = start_baton(dir.path());
    let http = server.http();
    // The endpoint's default answer is valid 1 h; renewing 59m58s ahead rotates 2 s after
    // each issue, so a few rotations happen within seconds.
    let mut spec = oauth2_spec(&endpoint_url, "revoking");
    spec["policy"] = json!({"lifetime": "1h", "renew_before": "3598s", "min_remaining": "1s",
                            "overlap": "none"});
    put_credential(&http, &server.url, "revoking", spec).await;

    let (status, first, _) = read(&http, &server.url, "revoking", "10s").await;
    assert_eq!(status, 200, "{first}");
    // Cache-Control of an answer ends at the rotation point (refresh_at).
    let refresh = parse_ms(&first["refresh_at"]);
    assert!(refresh <= parse_ms(&first["not_before"]) + 2_000 + 1_000);

    // Read until version 3: no read ever gets a version after a newer one was issued.
    let mut seen: Vec<u64> = Vec::new();
    let give_up = Instant::now() + Duration::from_secs(20);
    while seen.last().is_none_or(|v| *v < 3) && Instant::now() < give_up {
        let (status, body, _) = read(&http, &server.url, "revoking", "10s").await;
        assert_eq!(status, 200, "{body}");
        let version = body["version"].as_u64().unwrap();
        let served_until = parse_ms(&body["expires_at"]);
        assert!(
            served_until > now_ms(),
            "an expired version was served: {body}"
        );
        if let Some(last) = seen.last() {
            assert!(version >= *last, "went back from {last} to {version}");
        }
        seen.push(version);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen.last().is_some_and(|v| *v >= 3),
        "three versions: {seen:?}"
    );
    let shown = show(&http, &server.url, "revoking").await;
    let previous = &shown["versions"]["previous"];
    let current = &shown["versions"]["current"];
    assert!(
        parse_ms(&previous["expires_at"]) <= parse_ms(&current["not_before"]),
        "windows do not overlap: {shown}"
    );
}

/// Writes `script` as a shell script in `dir` and returns an exec credential spec running it.
fn exec_spec(dir: &Path, name: &str, script: &str) -> Value {
    let path = dir.join(format!("{name}.sh"));
    std::fs::write(&path, script).unwrap();
    json!({
        "issuer": {
            "kind": "exec",
            "command": ["/bin/sh", path.to_str().unwrap()],
            "env": {"GREETING": "hello", "TOKEN_SUFFIX": {"env": "BATON_TEST_SUFFIX"}},
            "working_dir": dir.to_str().unwrap(),
            "timeout": "1s",
        },
        "policy": {"lifetime": "1h", "max_lifetime": "2h", "renew_before": "10m",
                   "min_remaining": "1m"},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_reads_every_accepted_shape_with_only_the_given_environment() {
    let dir = temp_dir();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    let config = dir.path().join("baton.toml");
    std::fs::write(&config, "[rotation]\nintent_timeout = \"3s\"\n").unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
        &[("BATON_TEST_SUFFIX", "from-env")],
    );
    let http = server.http();
    let in_an_hour =
        humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(3000));
    let cases = [
        // The whole environment is what the spec gives: HOME and PATH are not inherited.
        (
            "plain-in",
            r#"printf '{"token": "%s-%s-%s", "expires_in": 1800}' "$GREETING" "${HOME:-nohome}" "$TOKEN_SUFFIX""#
                .to_owned(),
            "hello-nohome-from-env",
            1800,
        ),
        (
            "plain-at",
            format!(
                r#"echo '{{"token": "at-'"$(basename "$PWD")"'", "expires_at": "{in_an_hour}"}}'"#
            ),
            "at-scripts",
            3000,
        ),
        (
            "plain-epoch",
            format!(
                r#"echo '{{"token": "epoch", "expires_at": {}}}'"#,
                now_ms() / 1000 + 900
            ),
            "epoch",
            900,
        ),
        (
            "k8s",
            format!(
                r#"cat <<JSON
{{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
  "status": {{"token": "k8s-token", "expirationTimestamp": "{in_an_hour}"}}}}
JSON"#
            ),
            "k8s-token",
            3000,
        ),
    ];
    for (name, script, _, _) in &cases {
        put_credential(&http, &server.url, name, exec_spec(&scripts, name, script)).await;
    }
    // A command that leaves a child running in the background, holding stdout: its answer
    // counts as soon as it exits, and the child is ended with it.
    let background = r#"/bin/sleep 301.25 & echo '{"token": "bg-token", "expires_in": 1800}'"#;
    put_credential(
        &http,
        &server.url,
        "background",
        exec_spec(&scripts, "background", background),
    )
    .await;
    let (status, body, _) = read(&http, &server.url, "background", "10s").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token"], "bg-token");
    let left = Command::new("pgrep")
        .args(["-f", "sleep 301.25"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "the background child was left running"
    );
    for (name, _, token, lifetime) in &cases {
        let (status, body, _) = read(&http, &server.url, name, "10s").await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["token"], *token, "{name}");
        let ms = parse_ms(&body["expires_at"]) - parse_ms(&body["not_before"]);
        let secs = (ms + 500) / 1000;
        assert!(
            secs.abs_diff(*lifetime) <= 2,
            "{name}: {secs} s, not {lifetime}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_failures_are_reported_without_the_token() {
    let dir = temp_dir();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    let server = start_baton(dir.path());
    let http = server.http();
    let past = humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(60));
    let cases = [
        ("fails", r#"echo '{"token": "leaked-token-1"}'; echo "login failed for leaked-token-1 with $API_KEY" >&2; exit 3"#.to_owned(),
            vec!["exit status: 3", "login failed for [redacted] with [redacted]"]),
        ("hangs", "sleep 30".to_owned(), vec!["outcome is unknown"]),
        ("garbage", "echo 'this is leaked-token-2, not JSON'".to_owned(), vec!["stdout is not a JSON object"]),
        ("past", format!(r#"echo '{{"token": "leaked-token-3", "expires_at": "{past}"}}'"#), vec!["expired at"]),
        ("missing", r#"echo '{"token": "x"}'"#.to_owned(), vec![]),
    ];
    for (name, script, _) in &cases {
        let mut spec = exec_spec(&scripts, name, script);
        spec["issuer"]["env"] = json!({"API_KEY": "leaked-token-api-key"});
        if *name == "missing" {
            spec["issuer"]["command"] = json!(["/nonexistent/program"]);
        }
        put_credential(&http, &server.url, name, spec).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (name, _, expected) in &cases {
        let shown = show(&http, &server.url, name).await;
        let error = shown["status"]["last_error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {shown}"));
        for part in expected {
            assert!(error.contains(part), "{name}: {error}");
        }
        assert!(!error.contains("leaked-token"), "{name}: {error}");
        let (status, body, _) = read(&http, &server.url, name, "0s").await;
        assert_eq!(status, 503, "{name}: {body}");
    }
    let missing = show(&http, &server.url, "missing").await;
    assert!(missing["status"]["last_error"]
        .as_str()
        .unwrap()
        .contains("cannot run"));
    let hangs = show(&http, &server.url, "hangs").await;
    assert_eq!(hangs["status"]["unknown_outcomes"], 1, "{hangs}");
    assert!(!server.logs().contains("leaked-token"), "{}", server.logs());
}
