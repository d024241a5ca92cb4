//! Secrets never leave baton except through the token endpoint: not in the server's logs, even
//! at `RUST_LOG=trace`, not in any other answer, and not in what `baton credential show` and
//! `baton credential list` print.
//!
//! `Debug` redaction of tokens and keys is pinned by the unit tests of baton-core and
//! baton-issuers; this suite checks what a running server actually prints.
//!
//! Run with `cargo test -p baton --test secrets`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use common::{temp_dir, token, Server};

/// A 2048-bit RSA key made once for this test with
/// `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`; it protects nothing.
const RSA_PEM: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSlAgEAAoIBAQC4O3KM3y/dXMv1\n\
p/sCvFY8HhInaGaqgvqUsDoi8SeSf1B0JoKJxJFtH9NFyzAyTW0KBV2QWD+MROHm\n\
pOk3ybMzTk0S3mxPS2Sg4cLJdjoSAsGs16NXclhKW/YPADYhQd7U7xgtDScjxRx2\n\
bzC1ZiwTP2TG93T8QSM18kPEcKh4hcJs1zmnu6tRb8wWKgtB5XtlDNhZutxYmzwM\n\
KXv9gbh4krSVBa8HgS53v9dvHy7uV2GSY0Kx7XG/PYmDrPfcydsNcMEGMCc8rPgj\n\
V4RWkO9gU8agywGqgjAtZZ7rhZvAS82BfojHOLvGOICadkw+JLgooje4A1xquvPG\n\
skvdVzoFAgMBAAECggEAAh8K6kWlu423emL/7/iP2z2TAr5X0OzS3Q6syNHbeDkc\n\
P2CS+ZfK/0JKoZwtI52WD2MK6ZrnKhdQoI+A/WxfSze6WBIhIkIU/WwBt9lxLGfy\n\
uCF78ehyF3LFM3lvdJJp/m5FwPk8Mx5h8Xd7SFX/fhTKgarhInOlvnreCIglrFDK\n\
YGZUM2WPWfRV1zcVnX3k5ghVoiqnplvk/PtdZam8svVUYhfQDOp4MbdawxUeLku9\n\
2HY+p5ficIZg6RzcHygCqGXGA1rekC8luDPZrBpeZLJgqsTb9l4/Z1d0iAIbFpsL\n\
f8JZ0mRWtWaz9ZWtmFAIXpZQhz5jkYfN2xu12lY8ywKBgQDeQp0R6oe7Tt6IQK5K\n\
oo1K2V271jq2EqlFOXaPOuYfdmK3nqhyqprTLpRY3kMBn4+sFQWkhgdJM7TCW/+i\n\
cqOfskQCN7REE8soBDrDIItj9AFhX1UwR5Vlw3NDt3jElDrBAEsk86gT2pfhpte4\n\
H7ODQOxg19RvYt/xheUTza1pcwKBgQDUMwFjnKwBBy1TX4wBse9EGXksgeoXhDXq\n\
gnMVCM9LDPUOM/iJwXGOP2nadwIP7QTpqQtK9LrIbLO1wesmzM+gYCqhdLFPLtiZ\n\
JcwPafqx+M6U0mlJF+O2tPKlRu5E+ZT9FfnrSXePkOKU/mmcRQZNPzmDSNgJX/Iy\n\
3gjLC87QpwKBgQChLn/H6WQrgwPAnd+HwqBiooXmXXLQbXISAJ0pO9Z9BJaMgOO5\n\
3F1RPxtX4z+GotdHPSuNZ6FLBdNVi/A0N5zPiDDnxsvU/uG6kG6o6SYNA3woyED4\n\
NUFzvi0N87UCIlkFdBgKoSTH2SOCAkO4hEzjp6aEiKDHclXjSm2ZUfQrXwKBgQCv\n\
txDWaL0yGLxaxssL+EkWTjW+OlIbaRqwd5dOer4U+sTOHxEXGX2r+izwgA3QHEgu\n\
KRI13pPxNbpWrx7HQWBJAHksu5G77SHlJ5xjwzGaQFrod5hBs6uX9xza6fKSYU4T\n\
iSgrwuljk+lc0ZOomKvQOaOpaB+lG7NWlfAYG04GDwKBgQDYqBNyH0Q4ICD6r0DH\n\
V0UArjWLCxNX/DR/NuOgmVL3fPHxPwjbuHLhaffWY7B73q964bxPIMB/wnxNQRJJ\n\
7LJu8baP9zQU5bCGMLXcoFLym/D57axx/AfF475jzlQmBeSuyH5Z5UuQr5qxnA6u\n\
bknCybx+/RzJpdnQ7LQPBWkeIw==\n\
-----END PRIVATE KEY-----\n";
/// A static value given inline.
const STATIC_TOKEN: &str = "static-secret-5b2e9d41-never-logged";
/// A static value read from the server's environment.
const ENV_TOKEN: &str = "env-secret-8f03c6aa-never-logged";
const ENV_VAR: &str = "BATON_TEST_STATIC_SECRET";

/// A secret to look for, and what to call it in a failure.
struct Needle {
    what: String,
    value: String,
}

fn needle(what: impl Into<String>, value: impl Into<String>) -> Needle {
    Needle {
        what: what.into(),
        value: value.into(),
    }
}

/// The key's body as a whole and line by line (the form a log or a JSON string would show it
/// in), without the BEGIN/END lines, which are not secret.
fn pem_needles() -> Vec<Needle> {
    let lines: Vec<&str> = RSA_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let mut needles = vec![needle("the RSA key's body", lines.concat())];
    for (i, line) in lines.iter().enumerate() {
        // The last line can be short; anything of 16 characters is still unique to this key.
        if line.len() >= 16 {
            needles.push(needle(format!("line {} of the RSA key", i + 2), *line));
        }
    }
    needles
}

/// A token served, and its signature alone when it is a JWT.
fn token_needles(name: &str, token: &str) -> Vec<Needle> {
    let mut needles = vec![needle(format!("a token of {name}"), token)];
    let parts: Vec<&str> = token.split('.').collect();
    if let [_, _, signature] = parts[..] {
        needles.push(needle(format!("a token signature of {name}"), signature));
    }
    needles
}

/// Sends `req` and returns the status and the body.
async fn call(req: reqwest::RequestBuilder) -> (reqwest::StatusCode, String) {
    let resp = req.send().await.expect("request");
    let status = resp.status();
    (status, resp.text().await.expect("body"))
}

/// Every issuer, each with a secret of its own: tokens are served, shown, listed, rotated and
/// deleted, and no secret turns up in the logs (at trace level), in any answer but the token
/// endpoint's, or in the CLI's `show` and `list`.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_reach_logs_answers_or_cli_output() {
    let dir = temp_dir();
    let key_file = dir.path().join("rsa.pem");
    std::fs::write(&key_file, RSA_PEM).expect("write the key file");
    let server = Server::start_with(
        &dir.path().join("data"),
        &[],
        &[("RUST_LOG", "trace"), (ENV_VAR, ENV_TOKEN)],
    );
    let http = server.http();
    let url = |path: &str| format!("{}{path}", server.url);

    let credentials = [
        (
            "gen-eddsa",
            json!({"kind": "jwt", "key": "generate", "claims": {"iss": "baton-test"}}),
        ),
        (
            "pem-rs256",
            json!({"kind": "jwt", "algorithm": "RS256", "key": {"pem": RSA_PEM}}),
        ),
        (
            "file-rs256",
            json!({"kind": "jwt", "algorithm": "RS256", "key": {"file": key_file}}),
        ),
        (
            "static-inline",
            json!({"kind": "static", "token": STATIC_TOKEN}),
        ),
        (
            "static-env",
            json!({"kind": "static", "token": {"env": ENV_VAR}}),
        ),
    ];
    let names: Vec<&str> = credentials.iter().map(|(name, _)| *name).collect();

    // Every answer except the token endpoint's, to be scanned with the logs.
    let mut answers = String::new();
    for (name, issuer) in &credentials {
        let body = json!({"issuer": issuer, "policy": {"lifetime": "20m"}});
        let (status, text) = call(
            http.put(url(&format!("/v1/credentials/{name}")))
                .json(&body),
        )
        .await;
        assert!(status.is_success(), "PUT {name}: {status} {text}");
        answers.push_str(&text);
    }

    // A refused write of the key must not echo it either.
    let body = json!({"issuer": {"kind": "jwt", "algorithm": "EdDSA", "key": {"pem": RSA_PEM}}});
    let (status, text) = call(http.put(url("/v1/credentials/refused")).json(&body)).await;
    assert_eq!(status, 400, "an RSA key for EdDSA: {text}");
    answers.push_str(&text);

    // Read every token a few times, rotate, and read again.
    let mut served: BTreeSet<(String, String)> = BTreeSet::new();
    for round in 0..2 {
        for name in &names {
            for _ in 0..3 {
                let body = token(&http, &server.url, name).await;
                let value = body["token"].as_str().expect("a token").to_owned();
                served.insert((name.to_string(), value));
            }
            if round == 0 {
                let (status, text) =
                    call(http.post(url(&format!("/v1/credentials/{name}/rotate")))).await;
                assert!(status.is_success(), "rotate {name}: {status} {text}");
                answers.push_str(&text);
            }
        }
    }
    let served_for = |name: &str| -> Vec<&String> {
        served
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, t)| t)
            .collect()
    };
    assert_eq!(served_for("static-inline"), [STATIC_TOKEN]);
    assert_eq!(served_for("static-env"), [ENV_TOKEN]);
    for name in ["gen-eddsa", "pem-rs256", "file-rs256"] {
        let tokens = served_for(name);
        assert_eq!(
            tokens.len(),
            2,
            "{name}: one token before the rotation, one after"
        );
        assert!(
            tokens.iter().all(|t| t.split('.').count() == 3),
            "{name}: {tokens:?}"
        );
    }
    // The same key gives the same public key, however it was given.
    let mut jwks = Vec::new();
    for name in ["gen-eddsa", "pem-rs256", "file-rs256"] {
        let (status, text) =
            call(http.get(url(&format!("/v1/credentials/{name}/jwks.json")))).await;
        assert!(status.is_success(), "jwks of {name}: {status} {text}");
        answers.push_str(&text);
        jwks.push(serde_json::from_str::<Value>(&text).expect("JSON"));
    }
    assert_eq!(jwks[1]["keys"][0]["n"], jwks[2]["keys"][0]["n"]);

    // Show and list, over HTTP and with the CLI; then delete one and list again.
    let mut cli = String::new();
    for name in &names {
        let (_, shown) = call(http.get(url(&format!("/v1/credentials/{name}")))).await;
        answers.push_str(&shown);
        let (ok, out, err) = server.cli(&["credential", "show", name]);
        assert!(ok, "credential show {name}: {err}");
        cli.push_str(&out);
    }
    let (_, listed) = call(http.get(url("/v1/credentials"))).await;
    answers.push_str(&listed);
    let (ok, out, err) = server.cli(&["credential", "list"]);
    assert!(ok, "credential list: {err}");
    cli.push_str(&out);
    let (status, text) = call(http.delete(url("/v1/credentials/static-inline"))).await;
    assert!(status.is_success(), "DELETE static-inline: {status} {text}");
    answers.push_str(&text);
    let (ok, out, err) = server.cli(&["credential", "list"]);
    assert!(
        ok && !out.contains("static-inline"),
        "credential list: {out} {err}"
    );
    cli.push_str(&out);

    // The reader threads copy the server's output as it comes; give them a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs = server.logs();

    // The scan means something only if the logs are detailed and name what happened.
    assert!(
        logs.contains("TRACE"),
        "RUST_LOG=trace was not honoured:\n{logs}"
    );
    for name in &names {
        let written = format!("credential={name}");
        assert!(logs.contains(&written), "nothing is logged about {name}");
    }

    let mut needles = pem_needles();
    needles.push(needle("the inline static value", STATIC_TOKEN));
    needles.push(needle("the static value from the environment", ENV_TOKEN));
    for (name, token) in &served {
        needles.extend(token_needles(name, token));
    }
    let mut leaks = Vec::new();
    for (place, text) in [
        ("the server's logs", &logs),
        ("an answer", &answers),
        ("the CLI's output", &cli),
    ] {
        for Needle { what, value } in &needles {
            if let Some(line) = text.lines().find(|l| l.contains(value.as_str())) {
                let shown: String = line.chars().take(300).collect();
                leaks.push(format!("{what} is in {place}: {shown}"));
            }
        }
        if text.contains("PRIVATE KEY") {
            leaks.push(format!("a PEM private key is in {place}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "{} leak(s):\n  {}",
        leaks.len(),
        leaks.join("\n  ")
    );
}

/// Regression: a TOML syntax error on a line holding a secret printed the line, secret and all,
/// both for `baton serve --config` and for `baton credential put --file x.toml`.
#[test]
fn toml_errors_point_at_the_line_without_quoting_it() {
    let dir = temp_dir();
    let config = dir.path().join("baton.toml");
    std::fs::write(
        &config,
        "[credentials.x]\nissuer = { kind = \"static\", token = \"TOML-SEKRET-123\" } x\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("line 2, column"), "{stderr}");
    assert!(!stderr.contains("TOML-SEKRET-123"), "{stderr}");

    let spec = dir.path().join("spec.toml");
    std::fs::write(
        &spec,
        "[issuer]\nkind = \"static\"\ntoken = \"TOML-SEKRET-456\" x\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = common::cli_at(
        &common::closed_url(),
        &["credential", "put", "x", "--file", spec.to_str().unwrap()],
    );
    assert!(!ok);
    assert!(stderr.contains("line 3, column"), "{stderr}");
    assert!(
        !format!("{stdout}{stderr}").contains("TOML-SEKRET-456"),
        "{stderr}"
    );
}
