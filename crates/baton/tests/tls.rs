//! The API over TLS, with certificates made in the test: HTTPS reads, the CLI with a private
//! CA, client certificates (mTLS), and a certificate swapped on disk and picked up on SIGHUP.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{put_credential, temp_dir, Server, BIN};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// A certificate authority made for one test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, name.to_owned());
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for 127.0.0.1 and localhost: (certificate PEM, key PEM, certificate DER).
    fn server_cert(&self) -> (String, String, Vec<u8>) {
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        self.sign(params)
    }

    /// A client certificate whose subject is `CN=<cn>,O=fleet`.
    fn client_cert(&self, cn: &str) -> (String, String, Vec<u8>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "fleet");
        params.distinguished_name.push(DnType::CommonName, cn);
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A reqwest client that trusts `ca_pem`, optionally presenting a client certificate, and
/// sending the root token of the server at `url`.
fn https_client(ca_pem: &str, identity: Option<(&str, &str)>, url: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {}", common::root_token_for(url));
    headers.insert(reqwest::header::AUTHORIZATION, bearer.parse().unwrap());
    let mut builder = reqwest::Client::builder()
        .default_headers(headers)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap());
    if let Some((cert, key)) = identity {
        let pem = format!("{cert}\n{key}");
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

fn static_spec(token: &str) -> serde_json::Value {
    json!({"issuer": {"kind": "static", "token": token}, "policy": {"lifetime": "1h"}})
}

/// `127.0.0.1:PORT` of a server started with TLS.
fn socket_addr(server: &Server) -> String {
    server
        .url
        .strip_prefix("https://")
        .expect("the server says it listens on https://")
        .to_owned()
}

/// A raw TLS connection that trusts each of `cas`, to see which certificate the server serves.
async fn connect(
    addr: &str,
    cas: &[&Ca],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(ca.issuer.der().clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

fn served_cert(stream: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Sends `GET /healthz` on an open connection and returns the status line.
async fn healthz_on(stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection closed before an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().unwrap_or_default().to_owned()
}

fn wait_for_log(server: &Server, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.logs().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no `{needle}` in the logs:\n{}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sighup(server: &Server) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// With a certificate and key, the API is HTTPS only: a client that trusts the CA reads a
/// token, plain HTTP and a client without the CA get nothing, and the CLI works with
/// `--ca-cert` and `BATON_ADDR=https://…`.
#[tokio::test]
async fn https_serves_tokens_and_the_cli_trusts_a_private_ca() {
    let dir = temp_dir();
    let ca = Ca::new("baton test CA");
    let (cert, key, _) = ca.server_cert();
    let ca_path = write(dir.path(), "ca.pem", &ca.pem());
    let cert_path = write(dir.path(), "server.pem", &cert);
    let key_path = write(dir.path(), "server-key.pem", &key);
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--tls-cert", arg(&cert_path), "--tls-key", arg(&key_path)],
        &[],
    );
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    assert!(server.logs().contains("TLS certificate loaded"));

    let https = https_client(&ca.pem(), None, &server.url);
    put_credential(&https, &server.url, "partner", static_spec("tls-secret-1")).await;
    let token = common::token(&https, &server.url, "partner").await;
    assert_eq!(token["token"], "tls-secret-1");

    // Plain HTTP on the TLS port is not served.
    let plain = format!("http://{}/healthz", socket_addr(&server));
    if let Ok(resp) = reqwest::get(&plain).await {
        assert!(!resp.status().is_success(), "plain HTTP answered {resp:?}");
    }
    // Nor is a client that does not trust the CA.
    assert!(reqwest::get(format!("{}/healthz", server.url))
        .await
        .is_err());

    let (ok, stdout, stderr) = server.cli(&["token", "partner", "--ca-cert", arg(&ca_path)]);
    assert!(ok, "baton token over HTTPS failed: {stderr}");
    assert_eq!(stdout.trim(), "tls-secret-1");
    let (ok, _, stderr) = server.cli(&["token", "partner"]);
    assert!(!ok, "the CLI trusted an unknown CA");
    assert!(stderr.contains("cannot reach baton"), "{stderr}");

    // The lease commands use the same client settings.
    let out = std::process::Command::new(BIN)
        .args(["lease", "show", "nightly"])
        .env("BATON_ADDR", &server.url)
        .env("BATON_TOKEN", common::root_token_for(&server.url))
        .env("BATON_CA_CERT", &ca_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// With `--tls-client-ca` (required by default), a client without a certificate, or with one
/// from another CA, is refused at the handshake; with its certificate it is served, and the
/// server sees the certificate's subject.
#[tokio::test]
async fn mtls_required_refuses_clients_without_a_certificate_from_the_ca() {
    let dir = temp_dir();
    let ca = Ca::new("baton test CA");
    let stranger = Ca::new("another CA");
    let (cert, key, _) = ca.server_cert();
    let (client_cert, client_key, _) = ca.client_cert("worker-1");
    let (other_cert, other_key, _) = stranger.client_cert("intruder");
    let ca_path = write(dir.path(), "ca.pem", &ca.pem());
    let cert_path = write(dir.path(), "server.pem", &cert);
    let key_path = write(dir.path(), "server-key.pem", &key);
    let client_cert_path = write(dir.path(), "client.pem", &client_cert);
    let client_key_path = write(dir.path(), "client-key.pem", &client_key);
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            arg(&cert_path),
            "--tls-key",
            arg(&key_path),
            "--tls-client-ca",
            arg(&ca_path),
        ],
        &[("RUST_LOG", "info,baton=debug")],
    );
    let healthz = format!("{}/healthz", server.url);

    let anonymous = https_client(&ca.pem(), None, &server.url);
    assert!(
        anonymous.get(&healthz).send().await.is_err(),
        "a client without a certificate was served"
    );
    let intruder = https_client(&ca.pem(), Some((&other_cert, &other_key)), &server.url);
    assert!(
        intruder.get(&healthz).send().await.is_err(),
        "a certificate from another CA was accepted"
    );
    assert!(!server.logs().contains("subject=CN=intruder"));

    let worker = https_client(&ca.pem(), Some((&client_cert, &client_key)), &server.url);
    let resp = worker.get(&healthz).send().await.unwrap();
    assert!(resp.status().is_success(), "{resp:?}");
    wait_for_log(&server, "subject=CN=worker-1,O=fleet");

    let (ok, _, stderr) = server.cli(&[
        "credential",
        "list",
        "--ca-cert",
        arg(&ca_path),
        "--client-cert",
        arg(&client_cert_path),
        "--client-key",
        arg(&client_key_path),
    ]);
    assert!(ok, "the CLI with a client certificate failed: {stderr}");
    let (ok, _, _) = server.cli(&["credential", "list", "--ca-cert", arg(&ca_path)]);
    assert!(!ok, "the CLI without a client certificate was served");
}

/// With `--tls-client-auth optional`, a client without a certificate is served too.
#[tokio::test]
async fn mtls_optional_serves_clients_with_and_without_a_certificate() {
    let dir = temp_dir();
    let ca = Ca::new("baton test CA");
    let (cert, key, _) = ca.server_cert();
    let (client_cert, client_key, _) = ca.client_cert("cron-7");
    let ca_path = write(dir.path(), "ca.pem", &ca.pem());
    let cert_path = write(dir.path(), "server.pem", &cert);
    let key_path = write(dir.path(), "server-key.pem", &key);
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--tls-cert",
            arg(&cert_path),
            "--tls-key",
            arg(&key_path),
            "--tls-client-ca",
            arg(&ca_path),
            "--tls-client-auth",
            "optional",
        ],
        &[("RUST_LOG", "info,baton=debug")],
    );
    let healthz = format!("{}/healthz", server.url);
    let anonymous = https_client(&ca.pem(), None, &server.url);
    assert!(anonymous
        .get(&healthz)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    assert!(!server.logs().contains("client certificate verified"));
    let worker = https_client(&ca.pem(), Some((&client_cert, &client_key)), &server.url);
    assert!(worker
        .get(&healthz)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    wait_for_log(&server, "subject=CN=cron-7,O=fleet");
}

/// A certificate replaced on disk is served to new connections after SIGHUP, while a
/// connection opened before keeps working and a long poll in flight completes; a broken file
/// is refused and the certificate in use is kept.
#[tokio::test]
async fn sighup_swaps_the_certificate_and_keeps_open_connections() {
    let dir = temp_dir();
    let ca_a = Ca::new("CA A");
    let ca_b = Ca::new("CA B");
    let (cert_a, key_a, der_a) = ca_a.server_cert();
    let (cert_b, key_b, der_b) = ca_b.server_cert();
    let cert_path = write(dir.path(), "server.pem", &cert_a);
    let key_path = write(dir.path(), "server-key.pem", &key_a);
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--tls-cert", arg(&cert_path), "--tls-key", arg(&key_path)],
        &[],
    );
    let addr = socket_addr(&server);

    let mut before = connect(&addr, &[&ca_a, &ca_b]).await;
    assert_eq!(served_cert(&before), der_a);
    assert!(healthz_on(&mut before).await.contains("200"));

    // A long poll that is still waiting when the certificate changes.
    let client_a = https_client(&ca_a.pem(), None, &server.url);
    let health: serde_json::Value = client_a
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let revision = health["revision"].as_u64().expect("healthz has a revision");
    let poll_url = format!("{}/v1/leases/x?wait=4s&after={revision}", server.url);
    let started = Instant::now();
    let poll = tokio::spawn(async move { client_a.get(poll_url).send().await });

    // Swap the files (key first, so that no reload sees a new key with an old certificate
    // for long), then SIGHUP.
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&key_path, &key_b).unwrap();
    std::fs::write(&cert_path, &cert_b).unwrap();
    sighup(&server);
    wait_for_log(&server, "TLS certificate reloaded");
    let after = connect(&addr, &[&ca_a, &ca_b]).await;
    assert_eq!(
        served_cert(&after),
        der_b,
        "a new connection got the old certificate"
    );

    // The connection from before goes on, with the certificate it negotiated.
    assert_eq!(served_cert(&before), der_a);
    assert!(healthz_on(&mut before).await.contains("200"));
    let answer = poll
        .await
        .unwrap()
        .expect("the long poll survived the reload");
    assert!(answer.status().is_success(), "{answer:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "the long poll ended early"
    );

    // A broken certificate file is refused; the certificate in use stays.
    std::fs::write(&cert_path, "not a certificate").unwrap();
    sighup(&server);
    wait_for_log(&server, "TLS certificate not reloaded");
    let still = connect(&addr, &[&ca_a, &ca_b]).await;
    assert_eq!(served_cert(&still), der_b);
    assert!(!server.logs().contains("PRIVATE KEY"));
}

/// A certificate without its key, or a key that does not belong to it, stops `baton serve`
/// at start with a message naming the files.
#[test]
fn mismatched_tls_files_are_refused_at_start() {
    let dir = temp_dir();
    let ca = Ca::new("baton test CA");
    let (cert, _, _) = ca.server_cert();
    let (_, other_key, _) = ca.server_cert();
    let cert_path = write(dir.path(), "server.pem", &cert);
    let key_path = write(dir.path(), "other-key.pem", &other_key);
    let data = dir.path().join("data");

    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .args(["--tls-cert", arg(&cert_path), "--tls-key", arg(&key_path)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("does not fit the certificate"), "{stderr}");
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");

    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .args(["--tls-cert", arg(&cert_path)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("tls_key is not"), "{stderr}");
}

/// A client certificate whose subject the config maps to a policy is authorized by it alone,
/// without a bearer token, and only for what the policy allows.
#[tokio::test]
async fn a_mapped_certificate_subject_reads_its_credential_without_a_token() {
    let dir = temp_dir();
    let ca = Ca::new("baton test CA");
    let (cert, key, _) = ca.server_cert();
    let (client_cert, client_key, _) = ca.client_cert("worker-1");
    let ca_path = write(dir.path(), "ca.pem", &ca.pem());
    let cert_path = write(dir.path(), "server.pem", &cert);
    let key_path = write(dir.path(), "server-key.pem", &key);
    let config = write(
        dir.path(),
        "baton.toml",
        r#"
[auth.policies.partner-reader]
rules = [{ pattern = "partner-*", capabilities = ["read-token"] }]

[auth.certificates]
"CN=worker-1,O=fleet" = "partner-reader"
"#,
    );
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--config",
            arg(&config),
            "--tls-cert",
            arg(&cert_path),
            "--tls-key",
            arg(&key_path),
            "--tls-client-ca",
            arg(&ca_path),
        ],
        &[],
    );
    let root = https_client(&ca.pem(), Some((&client_cert, &client_key)), &server.url);
    for name in ["partner-a", "billing"] {
        let resp = root
            .put(format!("{}/v1/credentials/{name}", server.url))
            .json(&static_spec(&format!("{name}-token")))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{resp:?}");
    }

    // The same certificate, no token.
    let pem = format!("{client_cert}\n{client_key}");
    let worker = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let mut read = None;
    for _ in 0..50 {
        let resp = worker
            .get(format!(
                "{}/v1/credentials/partner-a/token?wait=5s",
                server.url
            ))
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            read = Some(resp.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        read.expect("the worker reads its token")["token"],
        "partner-a-token"
    );
    let other = worker
        .get(format!("{}/v1/credentials/billing/token", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
    let write = worker
        .delete(format!("{}/v1/credentials/partner-a", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 403);
}
