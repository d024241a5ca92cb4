//! Bad input to the HTTP API, against a real `baton serve`: every mistake is answered with a 4xx
//! and `{"error": {"code", "message"}}` whose message says what is wrong, a refused write
//! changes nothing, and the server keeps serving without a panic.
//!
//! Run with `cargo test -p baton --test bad_input`.

mod common;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

use common::{put_credential, temp_dir, token, Server};

/// The credential every refused write aims at; it must come out of the test untouched.
const KEEP: &str = "keep";
const KEEP_TOKEN: &str = "keep-token-value-7c1f";
/// A name that is never written: every refused create must leave it absent.
const FRESH: &str = "fresh";

/// An expected refusal: its status and its code.
#[derive(Clone, Copy, Debug)]
struct Want(u16, &'static str);

const MALFORMED: Want = Want(400, "malformed_json");
const INVALID: Want = Want(400, "invalid_request");
const POLICY: Want = Want(400, "policy_invalid");
const ISSUER: Want = Want(400, "issuer_invalid");
const BAD_NAME: Want = Want(400, "invalid_name");
const BAD_WAIT: Want = Want(400, "invalid_wait");
const NOT_FOUND: Want = Want(404, "not_found");
const NO_JWKS: Want = Want(404, "no_jwks");
const NO_ROUTE: Want = Want(404, "no_route");
const BAD_METHOD: Want = Want(405, "method_not_allowed");
const TOO_LARGE: Want = Want(413, "payload_too_large");

/// What a refusal looked like, for checks beyond the common ones.
#[derive(Debug, Default)]
struct Refusal {
    /// The whole body, as sent.
    body: String,
    headers: reqwest::header::HeaderMap,
}

/// Collects every broken expectation, so that one run reports all of them at once.
struct Checks<'a> {
    http: reqwest::Client,
    server: &'a Server,
    failures: Vec<String>,
}

impl Checks<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url)
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path))
    }

    /// `PUT /v1/credentials/{name}` with `body` sent as it is, as JSON.
    fn put_raw(&self, name: &str, body: impl Into<reqwest::Body>) -> RequestBuilder {
        self.request(Method::PUT, &format!("/v1/credentials/{name}"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
    }

    fn put(&self, name: &str, body: &Value) -> RequestBuilder {
        self.put_raw(name, body.to_string())
    }

    /// Sends `req` and expects the refusal `want` whose message contains every string of
    /// `says`.
    async fn expect(
        &mut self,
        what: &str,
        req: RequestBuilder,
        want: Want,
        says: &[&str],
    ) -> Refusal {
        let Want(status, code) = want;
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => {
                self.failures.push(format!("{what}: no answer: {e}"));
                return Refusal::default();
            }
        };
        let got = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let (got_code, message) = (
            parsed["error"]["code"].as_str().unwrap_or_default(),
            parsed["error"]["message"].as_str().unwrap_or_default(),
        );

        let mut wrong = Vec::new();
        if got != StatusCode::from_u16(status).unwrap() {
            wrong.push(format!("status {got}, expected {status}"));
        }
        if parsed["error"].as_object().map(|e| e.len()) != Some(2) || message.is_empty() {
            wrong.push("the body is not {\"error\": {\"code\", \"message\"}}".to_owned());
        }
        if got_code != code {
            wrong.push(format!("code `{got_code}`, expected `{code}`"));
        }
        for s in says {
            if !message.contains(s) {
                wrong.push(format!("the message does not mention `{s}`"));
            }
        }
        if !wrong.is_empty() {
            self.failures
                .push(format!("{what}: {}; body: {body}", wrong.join(", ")));
        }
        Refusal { body, headers }
    }

    fn check(&mut self, ok: bool, failure: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(failure());
        }
    }

    /// `GET /v1/credentials/{name}`: the status and the JSON body.
    async fn show(&self, name: &str) -> (StatusCode, Value) {
        let resp = self
            .request(Method::GET, &format!("/v1/credentials/{name}"))
            .send()
            .await
            .expect("GET credential");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// The parts of a credential's view that a write changes.
fn written_state(view: &Value) -> Value {
    json!({
        "issuer": view["issuer"],
        "policy": view["policy"],
        "updated_at": view["updated_at"],
        "current": view["versions"]["current"],
    })
}

fn static_spec(token: &str) -> Value {
    json!({"issuer": {"kind": "static", "token": token}})
}

fn with_policy(policy: Value) -> Value {
    json!({"issuer": {"kind": "static", "token": "x"}, "policy": policy})
}

async fn malformed_bodies(c: &mut Checks<'_>) {
    let req = c.put_raw(KEEP, r#"{"issuer": {"kind": "static", "#);
    c.expect("truncated JSON", req, MALFORMED, &["EOF", "column"])
        .await;

    let req = c.put_raw(KEEP, r#"{"issuer": {"kind": "static" "token": "x"}}"#);
    c.expect("JSON missing a comma", req, MALFORMED, &["column"])
        .await;

    let body = format!("{} garbage", static_spec("x"));
    let req = c.put_raw(KEEP, body);
    c.expect("JSON with trailing garbage", req, MALFORMED, &["trailing"])
        .await;

    let req = c.put_raw(KEEP, "");
    c.expect("an empty body", req, MALFORMED, &["EOF"]).await;

    let req = c.put_raw(KEEP, "[]");
    c.expect("a JSON array", req, INVALID, &["CredentialRequest"])
        .await;

    let req = c.put(KEEP, &json!({}));
    c.expect("no issuer", req, INVALID, &["missing field `issuer`"])
        .await;
}

async fn unknown_fields_and_kinds(c: &mut Checks<'_>) {
    let req = c.put(KEEP, &json!({"issuer": {"kind": "oauth9", "token": "x"}}));
    c.expect(
        "unknown issuer kind",
        req,
        INVALID,
        &["oauth9", "jwt", "static"],
    )
    .await;

    let req = c.put(KEEP, &json!({"issuer": {"token": "x"}}));
    c.expect("issuer without a kind", req, INVALID, &["kind"])
        .await;

    let req = c.put(KEEP, &with_policy(json!({"lifetme": "1h"})));
    c.expect(
        "unknown policy field",
        req,
        INVALID,
        &["policy", "lifetme", "lifetime"],
    )
    .await;

    let mut body = static_spec("x");
    body["extra"] = json!(1);
    let req = c.put(KEEP, &body);
    c.expect("unknown top-level field", req, INVALID, &["extra"])
        .await;

    let req = c.put(
        KEEP,
        &json!({"issuer": {"kind": "static", "token": "x", "tokn": "y"}}),
    );
    c.expect("unknown issuer field", req, INVALID, &["tokn"])
        .await;

    let req = c.put(KEEP, &with_policy(json!({"overlap": "sometimes"})));
    c.expect("unknown overlap", req, INVALID, &["sometimes"])
        .await;
}

async fn impossible_policies(c: &mut Checks<'_>) {
    let req = c.put(
        KEEP,
        &with_policy(json!({"renew_before": "10s", "min_remaining": "30s"})),
    );
    c.expect(
        "renew_before below min_remaining",
        req,
        POLICY,
        &["renew_before (10s)", "min_remaining (30s)"],
    )
    .await;

    let req = c.put(
        KEEP,
        &with_policy(json!({"renew_before": "30s", "min_remaining": "30s"})),
    );
    c.expect(
        "renew_before equal to min_remaining",
        req,
        POLICY,
        &["renew_before", "min_remaining"],
    )
    .await;

    let req = c.put(
        KEEP,
        &with_policy(json!({"lifetime": "2h", "max_lifetime": "1h"})),
    );
    c.expect(
        "lifetime above max_lifetime",
        req,
        POLICY,
        &["lifetime (2h)", "max_lifetime (1h)"],
    )
    .await;

    let req = c.put(
        KEEP,
        &with_policy(json!({"lifetime": "10m", "min_use": "20m"})),
    );
    c.expect(
        "lifetime below min_use",
        req,
        POLICY,
        &["lifetime (10m)", "min_use (20m)"],
    )
    .await;

    let req = c.put(KEEP, &with_policy(json!({"lifetime": 0})));
    c.expect("zero lifetime", req, POLICY, &["lifetime"]).await;

    let req = c.put(KEEP, &with_policy(json!({"lifetime": "1500ms"})));
    c.expect(
        "fractional duration",
        req,
        INVALID,
        &["policy.lifetime", "1500ms", "whole number of seconds"],
    )
    .await;

    let req = c.put(KEEP, &with_policy(json!({"min_use": 1.5})));
    c.expect("fractional number", req, INVALID, &["policy.min_use"])
        .await;

    let req = c.put(KEEP, &with_policy(json!({"lifetime": "-5s"})));
    c.expect(
        "negative duration",
        req,
        INVALID,
        &["policy.lifetime", "negative"],
    )
    .await;

    let req = c.put(KEEP, &with_policy(json!({"renew_before": -5})));
    c.expect(
        "negative number",
        req,
        INVALID,
        &["policy.renew_before", "negative"],
    )
    .await;

    let req = c.put(KEEP, &with_policy(json!({"lifetime": "soon"})));
    c.expect("a word for a duration", req, INVALID, &["soon", "90s"])
        .await;
}

async fn too_large(c: &mut Checks<'_>) {
    let body = static_spec(&"a".repeat(1024 * 1024 + 1)).to_string();
    let req = c.put_raw(KEEP, body);
    c.expect("a body over 1 MiB", req, TOO_LARGE, &["1048576"])
        .await;
}

async fn bad_names(c: &mut Checks<'_>) {
    let too_long = "a".repeat(129);
    let cases = [
        ("129 characters", too_long.as_str()),
        ("a space", "a%20b"),
        ("an encoded slash", "a%2Fb"),
        ("unicode", "café"),
        ("a colon", "a:b"),
    ];
    for (what, name) in cases {
        let req = c.put(name, &static_spec("x"));
        c.expect(&format!("PUT a name with {what}"), req, BAD_NAME, &["128"])
            .await;
        let req = c.request(Method::GET, &format!("/v1/credentials/{name}"));
        c.expect(&format!("GET a name with {what}"), req, BAD_NAME, &["128"])
            .await;
        let req = c.request(Method::GET, &format!("/v1/credentials/{name}/token"));
        c.expect(&format!("token of a name with {what}"), req, BAD_NAME, &[])
            .await;
    }

    // The longest valid name is accepted, so 129 is refused for its length alone.
    let longest = "b".repeat(128);
    let resp = c
        .put(&longest, &static_spec("x"))
        .send()
        .await
        .expect("PUT");
    let status = resp.status();
    c.check(status.is_success(), || {
        format!("PUT a 128-character name answered {status}")
    });
    let req = c.request(Method::DELETE, &format!("/v1/credentials/{longest}"));
    req.send().await.expect("DELETE");
}

async fn unknown_credential(c: &mut Checks<'_>) {
    let cases = [
        (Method::GET, "/v1/credentials/nope"),
        (Method::DELETE, "/v1/credentials/nope"),
        (Method::GET, "/v1/credentials/nope/token"),
        (Method::POST, "/v1/credentials/nope/rotate"),
        (Method::GET, "/v1/credentials/nope/jwks.json"),
    ];
    for (method, path) in cases {
        let what = format!("{method} {path}");
        let req = c.request(method, path);
        c.expect(&what, req, NOT_FOUND, &["nope"]).await;
    }

    let req = c.request(Method::GET, &format!("/v1/credentials/{KEEP}/jwks.json"));
    c.expect("jwks of a static credential", req, NO_JWKS, &["static"])
        .await;
}

async fn wrong_methods_and_routes(c: &mut Checks<'_>) {
    let cases = [
        (Method::POST, format!("/v1/credentials/{KEEP}")),
        (Method::PATCH, format!("/v1/credentials/{KEEP}")),
        (Method::DELETE, "/v1/credentials".to_owned()),
        (Method::PUT, format!("/v1/credentials/{KEEP}/token")),
        (Method::GET, format!("/v1/credentials/{KEEP}/rotate")),
        (Method::POST, "/healthz".to_owned()),
    ];
    for (method, path) in cases {
        let what = format!("{method} {path}");
        let req = c.request(method, &path);
        let refusal = c.expect(&what, req, BAD_METHOD, &[]).await;
        let allow = refusal.headers.get(reqwest::header::ALLOW);
        c.check(allow.is_some(), || {
            format!("{what}: a 405 without an Allow header")
        });
    }

    for path in [
        "/",
        "/v1",
        "/v1/nothing",
        "/v2/credentials",
        "/v1/credentials/keep/tokens",
    ] {
        let req = c.request(Method::GET, path);
        c.expect(&format!("GET {path}"), req, NO_ROUTE, &[]).await;
    }
}

async fn bad_wait(c: &mut Checks<'_>) {
    for wait in ["abc", "-1", "1.5", "5 parsecs"] {
        let path = format!("/v1/credentials/{KEEP}/token");
        let req = c.request(Method::GET, &path).query(&[("wait", wait)]);
        c.expect(&format!("?wait={wait}"), req, BAD_WAIT, &["wait"])
            .await;
    }
}

async fn bad_secrets(c: &mut Checks<'_>) {
    const GARBAGE: &str = "GARBAGEkeyMATERIALzz9QQ";
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{GARBAGE}\n-----END PRIVATE KEY-----\n");
    for algorithm in ["EdDSA", "RS256"] {
        for name in [KEEP, FRESH] {
            let body = json!({
                "issuer": {"kind": "jwt", "algorithm": algorithm, "key": {"pem": pem}}
            });
            let what = format!("garbage PEM for {algorithm} on {name}");
            let req = c.put(name, &body);
            let refusal = c.expect(&what, req, ISSUER, &["key", algorithm]).await;
            c.check(!refusal.body.contains(GARBAGE), || {
                format!("{what}: the answer echoes the key: {}", refusal.body)
            });
        }
    }

    let req = c.put(
        FRESH,
        &json!({"issuer": {"kind": "jwt", "key": {"pem": "not a pem"}}}),
    );
    let refusal = c
        .expect("a key that is not PEM", req, ISSUER, &["PEM"])
        .await;
    c.check(!refusal.body.contains("not a pem"), || {
        format!("the answer echoes the key: {}", refusal.body)
    });

    const UNSET: &str = "BATON_TEST_UNSET_VARIABLE_5309";
    let cases = [
        (
            "static token",
            json!({"issuer": {"kind": "static", "token": {"env": UNSET}}}),
        ),
        (
            "jwt key",
            json!({"issuer": {"kind": "jwt", "key": {"env": UNSET}}}),
        ),
    ];
    for (what, body) in cases {
        for name in [KEEP, FRESH] {
            let req = c.put(name, &body);
            let what = format!("{what} from an unset variable on {name}");
            c.expect(&what, req, ISSUER, &[UNSET, "not set"]).await;
        }
    }

    let missing = c.server.data_dir.join("no-such-key.pem");
    let missing = missing.to_str().expect("a UTF-8 path");
    let req = c.put(
        FRESH,
        &json!({"issuer": {"kind": "jwt", "key": {"file": missing}}}),
    );
    c.expect("a key file that does not exist", req, ISSUER, &[missing])
        .await;

    let req = c.put(FRESH, &json!({"issuer": {"kind": "static", "token": ""}}));
    c.expect("an empty static token", req, ISSUER, &["empty"])
        .await;

    let body = json!({"issuer": {"kind": "static", "token": "x", "expires_at": "tomorrow"}});
    let req = c.put(FRESH, &body);
    c.expect(
        "expires_at not RFC 3339",
        req,
        ISSUER,
        &["tomorrow", "RFC 3339"],
    )
    .await;

    let body = json!({"issuer": {"kind": "jwt", "claims": {"exp": 5}}});
    let req = c.put(FRESH, &body);
    c.expect("a reserved claim", req, ISSUER, &["exp"]).await;
}

/// Every kind of mistake, one server: refused with a 4xx that says what is wrong, nothing
/// changed, and the server still serves.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("data"));
    let http = server.http();

    let spec =
        json!({"issuer": {"kind": "static", "token": KEEP_TOKEN}, "policy": {"lifetime": "20m"}});
    put_credential(&http, &server.url, KEEP, spec).await;
    let before = token(&http, &server.url, KEEP).await;
    assert_eq!(before["token"], KEEP_TOKEN);

    let mut c = Checks {
        http: http.clone(),
        server: &server,
        failures: Vec::new(),
    };
    let (_, shown) = c.show(KEEP).await;
    let kept = written_state(&shown);

    malformed_bodies(&mut c).await;
    unknown_fields_and_kinds(&mut c).await;
    impossible_policies(&mut c).await;
    too_large(&mut c).await;
    bad_names(&mut c).await;
    unknown_credential(&mut c).await;
    wrong_methods_and_routes(&mut c).await;
    bad_wait(&mut c).await;
    bad_secrets(&mut c).await;

    // Nothing refused was written.
    let (status, shown) = c.show(KEEP).await;
    c.check(
        status == StatusCode::OK && written_state(&shown) == kept,
        || format!("refused writes changed `{KEEP}`: was {kept}, now {status} {shown}"),
    );
    let (status, shown) = c.show(FRESH).await;
    c.check(status == StatusCode::NOT_FOUND, || {
        format!("refused writes created `{FRESH}`: {status} {shown}")
    });

    // The server still serves.
    let health = http.get(format!("{}/healthz", server.url)).send().await;
    let healthy = health.is_ok_and(|r| r.status() == StatusCode::OK);
    c.check(healthy, || "GET /healthz does not answer 200".to_owned());
    let after = token(&http, &server.url, KEEP).await;
    c.check(
        after["token"] == KEEP_TOKEN && after["version"] == before["version"],
        || format!("the token of `{KEEP}` changed: {before} then {after}"),
    );
    let logs = server.logs();
    c.check(!logs.contains("panicked"), || {
        format!("the server panicked:\n{logs}")
    });

    assert!(
        c.failures.is_empty(),
        "{} expectation(s) failed:\n  {}",
        c.failures.len(),
        c.failures.join("\n  ")
    );
}

/// Checks that a credential with an extreme policy either was refused with a `policy_invalid`
/// naming `lifetime`, or is served: it does not rotate back to back, its token, its view and
/// the list answer 200, and nothing panics.
async fn extreme_lifetime_is_refused_or_served(lifetime: Value) {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("data"));
    let http = server.http();
    let url = |path: &str| format!("{}{path}", server.url);

    let resp = http
        .put(url("/v1/credentials/long"))
        .json(&with_policy(json!({ "lifetime": lifetime })))
        .send()
        .await
        .expect("PUT");
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status.is_client_error() {
        assert_eq!(body["error"]["code"], "policy_invalid", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("lifetime"), "{body}");
        return;
    }
    assert!(status.is_success(), "PUT answered {status}: {body}");

    // Accepted: rotations are then planned at the end of a version, not back to back (nothing
    // else writes to this server, so the revision only moves when `long` rotates).
    let revision = || async {
        let health: Value = http
            .get(url("/healthz"))
            .send()
            .await
            .expect("healthz")
            .json()
            .await
            .expect("JSON");
        health["revision"].as_u64().expect("a revision")
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let first = revision().await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let later = revision().await;
    assert!(
        later <= first + 1,
        "`long` keeps rotating: revision {first}, 2s later {later}"
    );

    // And it is served like any other credential.
    for path in [
        "/v1/credentials/long/token",
        "/v1/credentials/long",
        "/v1/credentials",
    ] {
        let resp = http.get(url(path)).send().await;
        let status = resp.as_ref().map(|r| r.status());
        assert!(
            matches!(status, Ok(StatusCode::OK)),
            "GET {path} after a lifetime of {lifetime}: {resp:?}"
        );
    }

    let logs = server.logs();
    assert!(!logs.contains("panicked"), "the server panicked:\n{logs}");
}

/// Found while writing this suite: `"lifetime": "10000y"` was accepted, then every answer that
/// renders the version's expiry (past 9999-12-31) panicked, `GET /v1/credentials` for all.
#[tokio::test(flavor = "multi_thread")]
async fn a_lifetime_past_year_9999_is_refused_or_served() {
    extreme_lifetime_is_refused_or_served(json!("10000y")).await;
}

/// Found while writing this suite: `"lifetime": 18446744073709551615` was accepted; expiry
/// saturates, so `expires_at - renew_before` is the epoch and the engine rotates without pause;
/// `min_remaining` saturates too, so no version is ever served.
#[tokio::test(flavor = "multi_thread")]
async fn a_lifetime_of_u64_max_seconds_is_refused_or_served() {
    extreme_lifetime_is_refused_or_served(json!(u64::MAX)).await;
}
