//! Authentication and authorization over real TCP: every endpoint against every kind of
//! caller, the audit trail, the root token file and the write rate limit.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{http, http_with, temp_dir, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Policies for `cred-a*`, `lease-a`, `kv-a` (worker-a) and the same for `b` (worker-b).
const CONFIG: &str = r#"
[auth.policies.worker-a]
rules = [
  { pattern = "cred-a*", capabilities = ["read-token", "read-meta", "write", "rotate"] },
  { pattern = "lease-a", capabilities = ["lease"] },
  { pattern = "kv-a", capabilities = ["kv"] },
]
[auth.policies.worker-b]
rules = [
  { pattern = "cred-b*", capabilities = ["read-token", "read-meta", "write", "rotate"] },
  { pattern = "lease-b", capabilities = ["lease"] },
  { pattern = "kv-b", capabilities = ["kv"] },
]
"#;

fn start(dir: &Path, extra: &str) -> Server {
    let config = dir.join("baton.toml");
    std::fs::write(&config, format!("{extra}\n{CONFIG}")).unwrap();
    Server::start_with(
        &dir.join("data"),
        &["--config", config.to_str().unwrap()],
        &[],
    )
}

fn jwt_spec() -> Value {
    json!({"issuer": {"kind": "jwt", "key_id": "a1"}, "policy": {"lifetime": "1h"}})
}

async fn send(
    http: &reqwest::Client,
    url: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = http.request(method, format!("{url}{path}"));
    if let Some(body) = body {
        req = req.json(body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// Creates a token with `policy` (and `ttl`) as root; returns (token, accessor).
async fn create_token(
    root: &reqwest::Client,
    url: &str,
    policy: &str,
    ttl: Option<&str>,
) -> (String, String) {
    let mut body = json!({ "policy": policy });
    if let Some(ttl) = ttl {
        body["ttl"] = json!(ttl);
    }
    let (status, _, answer) = send(root, url, Method::POST, "/v1/auth/tokens", Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    (
        answer["token"].as_str().unwrap().to_owned(),
        answer["accessor"].as_str().unwrap().to_owned(),
    )
}

/// What root sees: the revision and everything listable. A refused request changes none of it.
async fn snapshot(root: &reqwest::Client, url: &str) -> Value {
    let (_, _, health) = send(root, url, Method::GET, "/healthz", None).await;
    let (_, _, tokens) = send(root, url, Method::GET, "/v1/auth/tokens", None).await;
    let (_, _, policies) = send(root, url, Method::GET, "/v1/auth/policies", None).await;
    let (_, _, lease) = send(root, url, Method::GET, "/v1/leases/lease-a", None).await;
    let (_, _, kv) = send(root, url, Method::GET, "/v1/kv/kv-a", None).await;
    let (_, _, cred) = send(root, url, Method::GET, "/v1/credentials/cred-a", None).await;
    json!({
        "revision": health["revision"],
        "tokens": tokens,
        "policies": policies,
        "lease": lease["fence"],
        "kv": kv["value"],
        "versions": cred["versions"],
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    NoToken,
    Malformed,
    Revoked,
    Expired,
    OtherCredential,
    Right,
    Root,
}

/// One endpoint: how to call it, and what the right (worker-a) token gets.
struct Endpoint {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    open: bool,
    admin: bool,
    /// Other tokens still get 200 (the list, filtered).
    any_caller: bool,
    ok: StatusCode,
}

fn endpoints() -> Vec<Endpoint> {
    let e = |method: Method, path: &'static str, body: Option<Value>, ok: StatusCode| Endpoint {
        method,
        path,
        body,
        open: false,
        admin: false,
        any_caller: false,
        ok,
    };
    let lease = json!({"holder": "h", "ttl": "30s"});
    vec![
        Endpoint {
            open: true,
            ..e(Method::GET, "/healthz", None, StatusCode::OK)
        },
        Endpoint {
            admin: true,
            ..e(Method::GET, "/metrics", None, StatusCode::OK)
        },
        Endpoint {
            any_caller: true,
            ..e(Method::GET, "/v1/credentials", None, StatusCode::OK)
        },
        e(Method::GET, "/v1/credentials/cred-a", None, StatusCode::OK),
        e(
            Method::PUT,
            "/v1/credentials/cred-a",
            Some(jwt_spec()),
            StatusCode::OK,
        ),
        e(
            Method::POST,
            "/v1/credentials/cred-a/rotate",
            None,
            StatusCode::OK,
        ),
        e(
            Method::GET,
            "/v1/credentials/cred-a/token",
            None,
            StatusCode::OK,
        ),
        e(
            Method::GET,
            "/v1/credentials/cred-a/jwks.json",
            None,
            StatusCode::OK,
        ),
        e(
            Method::DELETE,
            "/v1/credentials/cred-a-del",
            None,
            StatusCode::OK,
        ),
        e(
            Method::POST,
            "/v1/leases/lease-a/acquire",
            Some(lease),
            StatusCode::OK,
        ),
        e(
            Method::POST,
            "/v1/leases/lease-a/renew",
            None,
            StatusCode::OK,
        ),
        e(
            Method::POST,
            "/v1/leases/lease-a/release",
            None,
            StatusCode::OK,
        ),
        e(Method::GET, "/v1/leases/lease-a", None, StatusCode::OK),
        e(
            Method::PUT,
            "/v1/kv/kv-a",
            Some(json!({"value": 1})),
            StatusCode::OK,
        ),
        e(Method::GET, "/v1/kv/kv-a", None, StatusCode::OK),
        e(Method::DELETE, "/v1/kv/kv-a", None, StatusCode::OK),
        Endpoint {
            admin: true,
            ..e(Method::GET, "/v1/auth/tokens", None, StatusCode::OK)
        },
        Endpoint {
            admin: true,
            ..e(
                Method::POST,
                "/v1/auth/tokens",
                Some(json!({"policy": "worker-a"})),
                StatusCode::CREATED,
            )
        },
        Endpoint {
            admin: true,
            ..e(
                Method::DELETE,
                "/v1/auth/tokens/ACCESSOR",
                None,
                StatusCode::OK,
            )
        },
        Endpoint {
            admin: true,
            ..e(Method::GET, "/v1/auth/policies", None, StatusCode::OK)
        },
        Endpoint {
            admin: true,
            ..e(
                Method::GET,
                "/v1/auth/policies/worker-a",
                None,
                StatusCode::OK,
            )
        },
        Endpoint {
            admin: true,
            ..e(
                Method::PUT,
                "/v1/auth/policies/scratch",
                Some(json!({"rules": [{"pattern": "x", "capabilities": ["kv"]}]})),
                StatusCode::CREATED,
            )
        },
        Endpoint {
            admin: true,
            ..e(
                Method::DELETE,
                "/v1/auth/policies/scratch",
                None,
                StatusCode::OK,
            )
        },
    ]
}

/// Makes the state in which the right caller's request to `ep` succeeds; returns the body
/// and path to send.
async fn prepare(root: &reqwest::Client, url: &str, ep: &Endpoint) -> (String, Option<Value>) {
    let mut path = ep.path.to_owned();
    let mut body = ep.body.clone();
    match ep.path {
        "/v1/credentials/cred-a-del" => {
            common::put_credential(root, url, "cred-a-del", jwt_spec()).await;
            // Its first version is committed by the engine: wait for it, so that nothing
            // changes while a refused request is checked.
            common::token(root, url, "cred-a-del").await;
        }
        "/v1/leases/lease-a/renew" | "/v1/leases/lease-a/release" => {
            let acquire = json!({"holder": "h", "ttl": "30s"});
            let (_, _, granted) = send(
                root,
                url,
                Method::POST,
                "/v1/leases/lease-a/acquire",
                Some(&acquire),
            )
            .await;
            body = Some(json!({"holder": "h", "fence": granted["fence"]}));
        }
        "/v1/kv/kv-a" if ep.method == Method::DELETE => {
            send(
                root,
                url,
                Method::PUT,
                "/v1/kv/kv-a",
                Some(&json!({"value": 1})),
            )
            .await;
        }
        "/v1/auth/tokens/ACCESSOR" => {
            let (_, accessor) = create_token(root, url, "worker-a", None).await;
            path = format!("/v1/auth/tokens/{accessor}");
        }
        "/v1/auth/policies/scratch" if ep.method == Method::DELETE => {
            let rules = json!({"rules": [{"pattern": "x", "capabilities": ["kv"]}]});
            send(
                root,
                url,
                Method::PUT,
                "/v1/auth/policies/scratch",
                Some(&rules),
            )
            .await;
        }
        _ => {}
    }
    if body.is_none() && ep.path.starts_with("/v1/leases/lease-a/r") {
        body = Some(json!({"holder": "h", "fence": 1}));
    }
    (path, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_gives_each_caller_the_right_status_and_refusals_change_nothing() {
    let dir = temp_dir();
    let server = start(dir.path(), "");
    let (url, root) = (server.url.as_str(), server.http());
    common::put_credential(&root, url, "cred-a", jwt_spec()).await;
    common::put_credential(&root, url, "cred-b", jwt_spec()).await;
    common::token(&root, url, "cred-a").await;

    let (right, _) = create_token(&root, url, "worker-a", None).await;
    let (other, _) = create_token(&root, url, "worker-b", None).await;
    let (revoked, revoked_accessor) = create_token(&root, url, "worker-a", None).await;
    let (expired, _) = create_token(&root, url, "worker-a", Some("1s")).await;
    let path = format!("/v1/auth/tokens/{revoked_accessor}");
    assert_eq!(
        send(&root, url, Method::DELETE, &path, None).await.0,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let malformed = "btn_not-a-token".to_owned();
    let client = |caller: Caller| match caller {
        Caller::NoToken => http(),
        Caller::Malformed => http_with(&malformed),
        Caller::Revoked => http_with(&revoked),
        Caller::Expired => http_with(&expired),
        Caller::OtherCredential => http_with(&other),
        Caller::Right => http_with(&right),
        Caller::Root => root.clone(),
    };

    for ep in endpoints() {
        for caller in [
            Caller::NoToken,
            Caller::Malformed,
            Caller::Revoked,
            Caller::Expired,
            Caller::OtherCredential,
            Caller::Right,
            Caller::Root,
        ] {
            let expected = match caller {
                _ if ep.open => ep.ok,
                Caller::NoToken | Caller::Malformed | Caller::Revoked | Caller::Expired => {
                    StatusCode::UNAUTHORIZED
                }
                Caller::OtherCredential if ep.any_caller => StatusCode::OK,
                Caller::OtherCredential => StatusCode::FORBIDDEN,
                Caller::Right if ep.admin => StatusCode::FORBIDDEN,
                Caller::Right | Caller::Root => ep.ok,
            };
            let (path, body) = prepare(&root, url, &ep).await;
            let before = snapshot(&root, url).await;
            let (status, headers, answer) = send(
                &client(caller),
                url,
                ep.method.clone(),
                &path,
                body.as_ref(),
            )
            .await;
            assert_eq!(
                status, expected,
                "{} {path} as {caller:?}: {answer}",
                ep.method
            );
            if status == StatusCode::UNAUTHORIZED {
                assert_eq!(headers["www-authenticate"], "Bearer");
                assert_eq!(answer["error"]["code"], "unauthorized");
            }
            if status == StatusCode::FORBIDDEN {
                assert_eq!(answer["error"]["code"], "forbidden");
            }
            if !status.is_success() {
                let after = snapshot(&root, url).await;
                assert_eq!(
                    before, after,
                    "{} {path} as {caller:?} changed state",
                    ep.method
                );
            }
        }
    }

    // The list shows another worker only its own credentials.
    let (_, _, listed) = send(
        &http_with(&other),
        url,
        Method::GET,
        "/v1/credentials",
        None,
    )
    .await;
    let names: Vec<&str> = listed["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cred-b"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_lines_name_the_accessor_and_never_a_token() {
    let dir = temp_dir();
    let server = start(dir.path(), "");
    let (url, root) = (server.url.as_str(), server.http());
    common::put_credential(&root, url, "cred-a", jwt_spec()).await;
    let (worker, accessor) = create_token(&root, url, "worker-a", None).await;
    let served = common::token(&http_with(&worker), url, "cred-a").await;
    let refused = http_with(&worker)
        .get(format!("{url}/v1/credentials/cred-b/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let text = std::fs::read_to_string(dir.path().join("data/audit.log")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let read = lines
        .iter()
        .find(|l| l["principal"] == accessor.as_str() && l["outcome"] == 200)
        .expect("a line for the token read");
    assert_eq!(read["action"], "GET /v1/credentials/{name}/token");
    assert_eq!(read["target"], "cred-a");
    assert!(read["revision"].as_u64().unwrap() > 0);
    assert!(read["time"].as_str().unwrap().ends_with('Z'));
    assert!(lines
        .iter()
        .any(|l| l["target"] == "cred-b" && l["outcome"] == 403));
    assert!(lines
        .iter()
        .any(|l| l["action"] == "PUT /v1/credentials/{name}" && l["outcome"] == 201));
    let created = format!("{accessor} (policy worker-a)");
    assert!(
        lines
            .iter()
            .any(|l| l["action"] == "POST /v1/auth/tokens" && l["target"] == created.as_str()),
        "the creation's line names the token's accessor and policy: {text}"
    );
    for secret in [
        worker.as_str(),
        server.root_token.as_str(),
        served["token"].as_str().unwrap(),
    ] {
        assert!(!text.contains(secret), "the audit log holds a secret");
        assert!(
            !server.logs().contains(secret),
            "the server log holds a secret"
        );
    }

    // Rotation by moving the file away: the next line starts a new file at the path.
    let log = dir.path().join("data/audit.log");
    std::fs::rename(&log, dir.path().join("data/audit.log.1")).unwrap();
    common::token(&http_with(&worker), url, "cred-a").await;
    let text = std::fs::read_to_string(&log).expect("a new audit file");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(accessor.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_required_with_an_unwritable_log_refuses_requests_and_changes_nothing() {
    let dir = temp_dir();
    let missing = dir.path().join("no-such-dir/audit.log");
    let extra = format!(
        "audit_required = true\naudit_log = {:?}\n",
        missing.to_str().unwrap()
    );
    let server = start(dir.path(), &extra);
    let (url, root) = (server.url.as_str(), server.http());

    let before = snapshot(&root, url).await;
    let (status, _, answer) = send(
        &root,
        url,
        Method::PUT,
        "/v1/credentials/cred-a",
        Some(&jwt_spec()),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"]["code"], "audit_unavailable");
    assert_eq!(snapshot(&root, url).await, before);
    // Reads that hold no secret are not audited, and still work.
    let (status, _, _) = send(&root, url, Method::GET, "/v1/credentials", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_root_token_file_is_private_and_never_logged() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    let mut server = Server::start(&dir.path().join("data"));
    let file = dir.path().join("data/root-token");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(server.root_token.starts_with("btn_") && server.root_token.len() == 68);
    let logs = server.logs();
    assert!(logs.contains("created a root token"), "{logs}");
    assert!(logs.contains("root-token"), "{logs}");
    assert!(!logs.contains(&server.root_token));

    // A restart keeps the token and does not make another.
    server.kill9();
    let again = Server::start(&dir.path().join("data"));
    assert_eq!(again.root_token, server.root_token);
    assert!(!again.logs().contains("created a root token"));
    let (status, _, _) = send(
        &again.http(),
        &again.url,
        Method::GET,
        "/v1/credentials",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_past_the_rate_limit_answer_429_with_retry_after() {
    let dir = temp_dir();
    let server = start(dir.path(), "[auth]\nwrite_rate = 1\nwrite_burst = 3\n");
    let (url, root) = (server.url.as_str(), server.http());
    let body = json!({"value": 1});
    for _ in 0..3 {
        let (status, _, answer) = send(&root, url, Method::PUT, "/v1/kv/kv-a", Some(&body)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let (status, headers, answer) = send(&root, url, Method::PUT, "/v1/kv/kv-a", Some(&body)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert_eq!(answer["error"]["code"], "rate_limited");
    let after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&after));
    // Reads are not limited, and another token has its own bucket.
    let (status, _, _) = send(&root, url, Method::GET, "/v1/kv/kv-a", None).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, _) = send(&root, url, Method::PUT, "/v1/kv/kv-a", Some(&body)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_open_only_when_configured() {
    let dir = temp_dir();
    let server = start(dir.path(), "metrics_open = true\n");
    let resp = http()
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = http()
        .get(format!("{}/v1/credentials", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

/// Regression: `write` on a name let its holder read any file or variable of the server
/// (`{"file"}` / `{"env"}` secrets, then its own token read) and run commands (`exec`), which
/// made `write` worth as much as root. Those need `admin` now.
#[tokio::test(flavor = "multi_thread")]
async fn writing_an_issuer_with_the_servers_authority_needs_admin() {
    let dir = temp_dir();
    let server = start(dir.path(), "");
    let (url, root) = (server.url.as_str(), server.http());
    let (worker, _) = create_token(&root, url, "worker-a", None).await;
    let worker = http_with(&worker);
    let root_token_file = dir.path().join("data/root-token");
    let marker = dir.path().join("ran");
    let specs = [
        json!({"issuer": {"kind": "static", "token": {"file": root_token_file}}}),
        json!({"issuer": {"kind": "static", "token": {"env": "PATH"}}}),
        json!({"issuer": {"kind": "jwt", "key": {"file": root_token_file}}}),
        json!({"issuer": {"kind": "oauth2", "token_url": "http://127.0.0.1:1/token",
                          "client_id": "x", "client_secret": {"file": root_token_file}}}),
        json!({"issuer": {"kind": "exec",
                          "command": ["/bin/sh", "-c", format!("touch {}", marker.display())]}}),
    ];
    for spec in &specs {
        let (status, _, body) = send(
            &worker,
            url,
            Method::PUT,
            "/v1/credentials/cred-a-x",
            Some(spec),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{spec}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("admin"),
            "{body}"
        );
    }
    let (status, _, _) = send(&root, url, Method::GET, "/v1/credentials/cred-a-x", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was written");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!marker.exists(), "the command ran");

    // Inline secrets stay a worker's to write; root may use references.
    let inline = json!({"issuer": {"kind": "static", "token": "inline-value"}});
    let (status, _, body) = send(
        &worker,
        url,
        Method::PUT,
        "/v1/credentials/cred-a-x",
        Some(&inline),
    )
    .await;
    assert!(status.is_success(), "{body}");
    let (status, _, body) = send(
        &root,
        url,
        Method::PUT,
        "/v1/credentials/cred-b-x",
        Some(&specs[1]),
    )
    .await;
    assert!(status.is_success(), "{body}");
}

/// Regression: with two Authorization headers the first one won, so a proxy that checks the
/// last one and baton could disagree about who is asking.
#[tokio::test(flavor = "multi_thread")]
async fn two_authorization_headers_are_refused() {
    let dir = temp_dir();
    let server = start(dir.path(), "");
    let (url, root) = (server.url.as_str(), server.http());
    common::put_credential(&root, url, "cred-b", jwt_spec()).await;
    let (worker, _) = create_token(&root, url, "worker-a", None).await;
    for (first, second) in [(&worker, &server.root_token), (&server.root_token, &worker)] {
        let resp = common::http()
            .get(format!("{url}/v1/credentials/cred-b/token"))
            .header("authorization", format!("Bearer {first}"))
            .header("authorization", format!("Bearer {second}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
}

/// Regression: with the root token revoked and only an expired admin token left, no start
/// made a new root token, and nobody could administer the data again.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_root_token_is_made_when_no_live_admin_token_is_left() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    let (url, root) = (server.url.clone(), server.http());
    create_token(&root, &url, "root", Some("1s")).await;
    let (_, _, tokens) = send(&root, &url, Method::GET, "/v1/auth/tokens", None).await;
    let root_accessor = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["display_name"] == "root")
        .and_then(|t| t["accessor"].as_str())
        .expect("the root token is listed")
        .to_owned();
    let path = format!("/v1/auth/tokens/{root_accessor}");
    let (status, _, body) = send(&root, &url, Method::DELETE, &path, None).await;
    assert!(status.is_success(), "{body}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    server.kill9();

    let again = Server::start(&data);
    assert!(
        again.logs().contains("created a root token"),
        "{}",
        again.logs()
    );
    assert_ne!(again.root_token, server.root_token);
    let (status, _, _) = send(
        &again.http(),
        &again.url,
        Method::GET,
        "/v1/auth/tokens",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let first = again.root_token.clone();
    drop(again);

    // `--new-root-token` makes one whatever tokens exist.
    let forced = Server::start_with(&data, &["--new-root-token"], &[]);
    assert_ne!(forced.root_token, first);
    let (status, _, _) = send(
        &forced.http(),
        &forced.url,
        Method::GET,
        "/v1/auth/tokens",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// Regression: a TTL of 999999999999d was accepted and expired "at" u64::MAX milliseconds; a
/// display name of 100 KB was stored.
#[tokio::test(flavor = "multi_thread")]
async fn token_creation_refuses_absurd_ttls_and_names() {
    let dir = temp_dir();
    let server = start(dir.path(), "");
    let (url, root) = (server.url.as_str(), server.http());
    for body in [
        json!({"policy": "worker-a", "ttl": "999999999999d"}),
        json!({"policy": "worker-a", "ttl": "0s"}),
        json!({"policy": "worker-a", "display_name": "x".repeat(100_000)}),
    ] {
        let (status, _, answer) =
            send(&root, url, Method::POST, "/v1/auth/tokens", Some(&body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    }
}
