//! The CLI, as people use it: help, credentials from JSON and TOML spec files, list, show,
//! token (plain and `--json`), rotate, delete, the messages of failures, and `baton serve
//! --config` applying the credentials of a config file.
//!
//! Run with `cargo test -p baton --test cli`.

mod common;

use std::path::Path;

use serde_json::Value;

use common::{cli_at, closed_url, temp_dir, token, Server};

/// Writes `text` to `dir/file` and returns the path as a string for the command line.
fn write(dir: &Path, file: &str, text: &str) -> String {
    let path = dir.join(file);
    std::fs::write(&path, text).expect("write a file");
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// Runs the CLI against `server` and expects success; returns stdout.
fn succeed(server: &Server, args: &[&str]) -> String {
    let (ok, out, err) = server.cli(args);
    assert!(ok, "baton {} failed:\n{err}", args.join(" "));
    out
}

const JWT_SPEC: &str = r#"{
  "issuer": {"kind": "jwt", "claims": {"iss": "baton-cli-test"}},
  "policy": {"lifetime": "20m"}
}"#;

const STATIC_TOKEN: &str = "toml-static-token-31d4";

const STATIC_TOML: &str = r#"
[issuer]
kind = "static"
token = "toml-static-token-31d4"

[policy]
lifetime = "30m"
renew_before = 300
"#;

#[test]
fn help_lists_the_commands() {
    let (ok, out, err) = cli_at(&closed_url(), &["--help"]);
    assert!(ok, "{err}");
    for command in ["serve", "credential", "token"] {
        assert!(
            out.contains(command),
            "--help does not mention {command}:\n{out}"
        );
    }

    let (ok, out, err) = cli_at(&closed_url(), &["credential", "--help"]);
    assert!(ok, "{err}");
    for command in ["put", "list", "show", "delete", "rotate"] {
        assert!(
            out.contains(command),
            "credential --help does not mention {command}:\n{out}"
        );
    }
}

/// `put` reads JSON and TOML specs; `list` names both; `show` prints JSON without the secret.
#[tokio::test(flavor = "multi_thread")]
async fn put_from_json_and_toml_then_list_and_show() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("data"));
    let json_spec = write(dir.path(), "spec.json", JWT_SPEC);
    let toml_spec = write(dir.path(), "spec.toml", STATIC_TOML);

    let out = succeed(
        &server,
        &["credential", "put", "from-json", "--file", &json_spec],
    );
    assert!(out.contains("from-json"), "{out}");
    let out = succeed(
        &server,
        &["credential", "put", "from-toml", "-f", &toml_spec],
    );
    assert!(out.contains("from-toml"), "{out}");

    // `--file -` reads the spec from stdin, JSON or TOML.
    for (name, text) in [("stdin-json", JWT_SPEC), ("stdin-toml", STATIC_TOML)] {
        let mut child = std::process::Command::new(common::BIN)
            .args(["credential", "put", name, "--file", "-"])
            .env("BATON_ADDR", &server.url)
            .env("BATON_TOKEN", &server.root_token)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{name}");
    }

    let out = succeed(&server, &["credential", "list"]);
    let listed: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for name in ["from-json", "from-toml", "stdin-json", "stdin-toml"] {
        assert!(listed.contains(&name), "{name}: {out}");
    }

    // The TOML spec was read as written, durations in both forms.
    let out = succeed(&server, &["credential", "show", "from-toml"]);
    let shown: Value = serde_json::from_str(&out).expect("show prints JSON");
    assert_eq!(shown["name"], "from-toml");
    assert_eq!(shown["issuer"]["kind"], "static");
    assert_eq!(shown["policy"]["lifetime"], "30m");
    assert_eq!(shown["policy"]["renew_before"], "5m");
    assert!(!out.contains(STATIC_TOKEN), "show prints the token:\n{out}");

    let served = token(&server.http(), &server.url, "from-toml").await;
    assert_eq!(served["token"], STATIC_TOKEN);

    let served = token(&server.http(), &server.url, "from-json").await;
    let jwt = served["token"].as_str().expect("a token");
    let out = succeed(&server, &["credential", "show", "from-json"]);
    let shown: Value = serde_json::from_str(&out).expect("show prints JSON");
    assert_eq!(shown["issuer"]["kind"], "jwt");
    assert_eq!(shown["issuer"]["claims"]["iss"], "baton-cli-test");
    assert_eq!(shown["versions"]["current"]["version"], served["version"]);
    assert!(!out.contains(jwt), "show prints the token:\n{out}");
}

/// `baton token NAME` prints the token and a newline, nothing else: `$(baton token NAME)`
/// works. `--json` prints the whole answer of the token endpoint.
#[tokio::test(flavor = "multi_thread")]
async fn token_prints_exactly_the_token_or_all_of_it_as_json() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("data"));
    let spec = write(dir.path(), "spec.json", JWT_SPEC);
    succeed(&server, &["credential", "put", "api", "--file", &spec]);

    let served = token(&server.http(), &server.url, "api").await;
    let expected = served["token"].as_str().expect("a token");
    let out = succeed(&server, &["token", "api"]);
    assert_eq!(out, format!("{expected}\n"));

    let out = succeed(&server, &["token", "api", "--json"]);
    let body: Value = serde_json::from_str(&out).expect("--json prints JSON");
    let mut keys: Vec<&str> = body
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let expected_keys = [
        "expires_at",
        "next",
        "not_before",
        "refresh_at",
        "revision",
        "token",
        "version",
    ];
    assert_eq!(keys, expected_keys, "{out}");
    assert_eq!(body["token"], served["token"]);
    assert_eq!(body["version"], served["version"]);
    assert!(body["revision"].as_u64().is_some(), "{out}");

    let out = succeed(&server, &["token", "api", "--wait", "2s"]);
    assert_eq!(out, format!("{expected}\n"));
}

/// `rotate` makes a new version; `delete` removes the credential, and `token` then fails
/// with a message naming it.
#[tokio::test(flavor = "multi_thread")]
async fn rotate_bumps_the_version_and_delete_makes_token_fail() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("data"));
    let spec = write(dir.path(), "spec.json", JWT_SPEC);
    succeed(&server, &["credential", "put", "api", "--file", &spec]);

    let version = |out: &str| {
        let body: Value = serde_json::from_str(out).expect("--json prints JSON");
        body["version"].as_u64().expect("a version")
    };
    let before = version(&succeed(&server, &["token", "api", "--json"]));
    let out = succeed(&server, &["credential", "rotate", "api"]);
    assert!(out.contains(&format!("version {}", before + 1)), "{out}");
    let after = version(&succeed(&server, &["token", "api", "--json"]));
    assert_eq!(after, before + 1);

    let out = succeed(&server, &["credential", "delete", "api"]);
    assert!(out.contains("api"), "{out}");
    let (ok, out, err) = server.cli(&["token", "api"]);
    assert!(!ok, "token of a deleted credential succeeded: {out}");
    assert!(out.is_empty(), "stdout of a failure: {out}");
    assert!(
        err.contains("`api`"),
        "the message does not name the credential: {err}"
    );

    let (ok, _, err) = server.cli(&["credential", "show", "api"]);
    assert!(!ok && err.contains("`api`"), "{err}");
}

/// Failures are told on stderr with a non-zero exit: a server that cannot be reached, a spec
/// file that is missing or not valid, a spec the server refuses.
#[tokio::test(flavor = "multi_thread")]
async fn failures_exit_non_zero_with_a_message() {
    let closed = closed_url();
    for args in [
        &["token", "api"][..],
        &["credential", "list"],
        &["credential", "show", "api"],
    ] {
        let (ok, out, err) = cli_at(&closed, args);
        assert!(!ok, "baton {} succeeded: {out}", args.join(" "));
        assert!(err.contains("cannot reach baton"), "{err}");
        assert!(
            err.contains(&closed),
            "the message does not say where: {err}"
        );
    }

    let dir = temp_dir();
    let server = Server::start(&dir.path().join("data"));
    let missing = dir.path().join("missing.json");
    let missing = missing.to_str().expect("a UTF-8 path");
    let (ok, _, err) = server.cli(&["credential", "put", "x", "--file", missing]);
    assert!(
        !ok && err.contains("cannot read") && err.contains(missing),
        "{err}"
    );

    let broken = write(dir.path(), "broken.toml", "[issuer\nkind = ");
    let (ok, _, err) = server.cli(&["credential", "put", "x", "--file", &broken]);
    assert!(!ok && err.contains("not valid TOML"), "{err}");

    let refused = write(
        dir.path(),
        "refused.json",
        r#"{"issuer": {"kind": "static", "token": "x"},
            "policy": {"renew_before": "10s", "min_remaining": "30s"}}"#,
    );
    let (ok, _, err) = server.cli(&["credential", "put", "x", "--file", &refused]);
    assert!(!ok, "a refused spec succeeded");
    assert!(
        err.contains("renew_before (10s) must exceed min_remaining (30s)"),
        "{err}"
    );
    assert!(err.contains("policy_invalid"), "{err}");
}

/// `baton serve --config FILE` applies the credentials the file declares before it serves;
/// a secret given as `{ env = "…" }` is read from the server's environment.
#[tokio::test(flavor = "multi_thread")]
async fn serve_applies_the_config_files_credentials() {
    let dir = temp_dir();
    let config = write(
        dir.path(),
        "baton.toml",
        r#"
[credentials.from-config]
issuer = { kind = "static", token = { env = "BATON_TEST_CONFIG_TOKEN" } }
policy = { lifetime = "20m" }

[credentials.jwt-from-config]
issuer = { kind = "jwt", claims = { iss = "from-config" } }
"#,
    );
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--config", &config],
        &[("BATON_TEST_CONFIG_TOKEN", "config-token-value-77ab")],
    );

    let served = token(&server.http(), &server.url, "from-config").await;
    assert_eq!(served["token"], "config-token-value-77ab");
    let out = succeed(&server, &["token", "from-config"]);
    assert_eq!(out, "config-token-value-77ab\n");

    let out = succeed(&server, &["credential", "show", "jwt-from-config"]);
    let shown: Value = serde_json::from_str(&out).expect("show prints JSON");
    assert_eq!(shown["issuer"]["claims"]["iss"], "from-config");
    token(&server.http(), &server.url, "jwt-from-config").await;
}

/// A config file whose credential cannot be applied stops the server before it listens, with
/// a message naming the credential and the cause.
#[test]
fn serve_refuses_a_config_whose_credential_is_invalid() {
    let dir = temp_dir();
    let config = write(
        dir.path(),
        "baton.toml",
        r#"
listen = "127.0.0.1:0"

[credentials.broken]
issuer = { kind = "static", token = { env = "BATON_TEST_SURELY_UNSET_9121" } }
"#,
    );
    let data = dir.path().join("data");
    let data = data.to_str().expect("a UTF-8 path");
    let mut child = std::process::Command::new(common::BIN)
        .args(["serve", "--config", &config, "--data-dir", data])
        .env_remove("BATON_TEST_SURELY_UNSET_9121")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run baton serve");

    // It should stop at once; a server that runs is stopped here rather than left behind.
    let mut status = None;
    for _ in 0..300 {
        status = child.try_wait().expect("wait for baton serve");
        if status.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut err = String::new();
    let mut stderr = child.stderr.take().expect("stderr");
    std::io::Read::read_to_string(&mut stderr, &mut err).expect("read stderr");
    let exited_badly = status.is_some_and(|s| !s.success());
    assert!(
        exited_badly,
        "baton serve did not fail ({status:?}):\n{err}"
    );
    assert!(
        err.contains("`broken`"),
        "the message does not name the credential: {err}"
    );
    assert!(err.contains("BATON_TEST_SURELY_UNSET_9121"), "{err}");
}

/// Found while writing this suite: `baton credential delete 'nothing/../keep'` deleted `keep`
/// (and printed "credential nothing/../keep deleted"); `baton token 'other/../keep'` printed
/// keep's token; `baton token 'keep#x'` asked `GET /v1/credentials/keep` and failed with "the
/// answer has no token". The CLI puts names into URLs unvalidated and unescaped.
#[tokio::test(flavor = "multi_thread")]
async fn a_name_with_url_syntax_reaches_no_other_credential() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("data"));
    let spec = write(dir.path(), "spec.toml", STATIC_TOML);
    succeed(&server, &["credential", "put", "keep", "--file", &spec]);

    for args in [
        &["token", "other/../keep"][..],
        &["token", "keep#x"],
        &["token", "keep?wait=1s"],
        &["credential", "show", "other/../keep"],
        &["credential", "rotate", "x/../keep"],
        &["credential", "put", "x/../keep", "--file", &spec],
        &["credential", "delete", "nothing/../keep"],
    ] {
        let (ok, out, err) = server.cli(args);
        assert!(!ok, "baton {} succeeded: {out}{err}", args.join(" "));
        assert!(
            !out.contains(STATIC_TOKEN),
            "baton {}: {out}",
            args.join(" ")
        );
    }

    // `keep` was not touched.
    let served = token(&server.http(), &server.url, "keep").await;
    assert_eq!(served["token"], STATIC_TOKEN);
    assert_eq!(served["version"], 1);
}
