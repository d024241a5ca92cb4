//! Token reads are rendered once per version and reused: these tests pin that a reused answer
//! is never stale. Each change that alters the answer shows on the very next read, and the
//! parts that depend on the time of the read (`max-age`) or on other writes (`revision`) keep
//! moving between reads of an unchanged version.

mod common;

use std::time::Duration;

use common::{put_credential, temp_dir, Server};
use serde_json::{json, Value};

/// One token read: status, `max-age`, `ETag` and the JSON body.
struct Read {
    status: u16,
    max_age: u64,
    etag: String,
    body: Value,
}

async fn read(http: &reqwest::Client, url: &str, name: &str) -> Read {
    let resp = http
        .get(format!("{url}/v1/credentials/{name}/token"))
        .send()
        .await
        .expect("GET token");
    let status = resp.status().as_u16();
    let header = |h: &str| {
        resp.headers()
            .get(h)
            .map(|v| v.to_str().expect("ascii header").to_owned())
            .unwrap_or_default()
    };
    let max_age = header("cache-control")
        .trim_start_matches("max-age=")
        .parse()
        .unwrap_or(u64::MAX);
    let etag = header("etag");
    let body = resp.json().await.unwrap_or(Value::Null);
    Read {
        status,
        max_age,
        etag,
        body,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_answer_changes_on_the_first_read_after_a_rotation_commits() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let http = server.http();
    let spec = json!({"issuer": {"kind": "jwt"}, "policy": {"lifetime": "1h"}});
    put_credential(&http, &server.url, "cached", spec).await;

    // Several reads, so that the answer is rendered once and then reused.
    let first = read(&http, &server.url, "cached").await;
    assert_eq!(first.status, 200);
    for _ in 0..5 {
        let again = read(&http, &server.url, "cached").await;
        assert_eq!(again.body, first.body);
        assert_eq!(again.etag, first.etag);
    }

    let rotated = http
        .post(format!("{}/v1/credentials/cached/rotate", server.url))
        .send()
        .await
        .expect("rotate");
    assert_eq!(rotated.status(), 200);
    let rotated: Value = rotated.json().await.expect("json");

    let second = read(&http, &server.url, "cached").await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body["version"], 2);
    assert_ne!(second.body["token"], first.body["token"]);
    assert_ne!(second.etag, first.etag);
    let revision = |v: &Value| v["revision"].as_u64().expect("a revision");
    assert!(
        revision(&second.body) >= revision(&rotated),
        "the read sees the rotation's revision: {rotated} then {}",
        second.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn max_age_counts_down_between_reads_of_the_same_version() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let http = server.http();
    let spec = json!({"issuer": {"kind": "static", "token": "s1"}, "policy": {"lifetime": "1h"}});
    put_credential(&http, &server.url, "ticking", spec).await;

    let first = read(&http, &server.url, "ticking").await;
    assert_eq!(first.status, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let later = read(&http, &server.url, "ticking").await;
    assert_eq!(later.body, first.body, "the same version, the same body");
    assert_eq!(later.etag, first.etag);
    assert!(
        later.max_age + 2 <= first.max_age && later.max_age + 3 >= first.max_age,
        "max-age is counted from the time of each read: {} then {}",
        first.max_age,
        later.max_age
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn other_writes_move_the_revision_of_an_unchanged_answer() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let http = server.http();
    let spec = json!({"issuer": {"kind": "static", "token": "a"}, "policy": {"lifetime": "1h"}});
    put_credential(&http, &server.url, "steady", spec).await;
    let first = read(&http, &server.url, "steady").await;

    let other = json!({"issuer": {"kind": "static", "token": "b"}, "policy": {"lifetime": "1h"}});
    put_credential(&http, &server.url, "other", other).await;
    let second = read(&http, &server.url, "steady").await;

    assert_eq!(second.body["token"], first.body["token"]);
    assert_eq!(second.etag, first.etag);
    let revision = |v: &Value| v["revision"].as_u64().expect("a revision");
    assert!(
        revision(&second.body) > revision(&first.body),
        "{} then {}",
        first.body,
        second.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_change_or_a_new_credential_of_the_same_name_is_rendered_afresh() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let http = server.http();
    let spec = |renew: &str| {
        json!({"issuer": {"kind": "static", "token": "same"},
               "policy": {"lifetime": "1h", "renew_before": renew}})
    };
    put_credential(&http, &server.url, "shifting", spec("15m")).await;
    let first = read(&http, &server.url, "shifting").await;
    assert_eq!(first.status, 200);

    // The same version, renewed earlier: refresh_at and max-age move at once.
    put_credential(&http, &server.url, "shifting", spec("30m")).await;
    let renewed = read(&http, &server.url, "shifting").await;
    assert_eq!(renewed.body["version"], first.body["version"]);
    assert_ne!(renewed.body["refresh_at"], first.body["refresh_at"]);
    assert!(
        renewed.max_age + 800 < first.max_age,
        "{} then {}",
        first.max_age,
        renewed.max_age
    );

    // Deleted and created again under the same name: a new credential, a new ETag.
    let deleted = http
        .delete(format!("{}/v1/credentials/shifting", server.url))
        .send()
        .await
        .expect("delete");
    assert!(deleted.status().is_success());
    assert_eq!(read(&http, &server.url, "shifting").await.status, 404);
    put_credential(&http, &server.url, "shifting", spec("15m")).await;
    let recreated = read(&http, &server.url, "shifting").await;
    assert_eq!(recreated.status, 200);
    assert_ne!(recreated.etag, renewed.etag);
}
