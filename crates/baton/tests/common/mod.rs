//! A `baton serve` process for black-box tests: real binary, real TCP, real signals.
//!
//! Every server writes a root token at first start; [`Server::http`] and [`Server::cli`] send
//! it, and [`http_for`] finds it by the server's URL for helpers that only know that.
#![allow(dead_code)]

pub mod cluster;
pub mod jose;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_baton");

/// A running server. Killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`, or `https://…` when started with TLS
    pub url: String,
    pub data_dir: PathBuf,
    /// The root token the server wrote to `DATA_DIR/root-token`.
    pub root_token: String,
    logs: Arc<Mutex<String>>,
}

/// Root tokens of the servers this test process started, by URL.
fn tokens() -> &'static Mutex<HashMap<String, String>> {
    static TOKENS: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    TOKENS.get_or_init(Default::default)
}

/// The root token of the server at `url`, started by this process.
pub fn root_token_for(url: &str) -> String {
    tokens()
        .lock()
        .unwrap()
        .get(url)
        .cloned()
        .unwrap_or_else(|| panic!("no server of this test listens at {url}"))
}

/// A client that authenticates with `token`.
pub fn http_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("a header value"),
    );
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .default_headers(headers)
        .build()
        .expect("client")
}

/// A client that authenticates as root on the server at `url`.
pub fn http_for(url: &str) -> reqwest::Client {
    http_with(&root_token_for(url))
}

impl Server {
    /// Starts `baton serve` on a free loopback port with `data_dir`, and waits until it listens.
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[], &[])
    }

    pub fn start_with(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let server = Server::launch(&[], data_dir, "127.0.0.1:0", args, env);
        assert!(
            !server.root_token.is_empty(),
            "the server wrote no DATA_DIR/root-token"
        );
        server
    }

    /// Starts a cluster member listening on `listen` (a fixed port, so that it can restart
    /// where its peers expect it), through `wrapper` when not empty (a command and its
    /// arguments, such as `ip netns exec NAME`, that runs the rest of its command line). A
    /// member that joined no cluster yet has no root token: `root_token` is then empty.
    pub fn start_member(
        wrapper: &[String],
        data_dir: &Path,
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        Server::launch(wrapper, data_dir, listen, args, env)
    }

    fn launch(
        wrapper: &[String],
        data_dir: &Path,
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let mut cmd = match wrapper.split_first() {
            None => Command::new(BIN),
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(BIN);
                cmd
            }
        };
        cmd.args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn baton serve");

        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stderr.take().expect("stderr")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().expect("stdout")),
        ] {
            let logs = logs.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(at) = line.find("listening on http") {
                        let addr = line[at + "listening on ".len()..].trim().to_owned();
                        let _ = tx.send(addr);
                    }
                    let mut logs = logs.lock().unwrap();
                    logs.push_str(&line);
                    logs.push('\n');
                }
            });
        }

        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "baton serve did not start; its output:\n{}",
                    logs.lock().unwrap()
                );
            }
        };
        // A single server writes its token file before it listens.
        let root_token = std::fs::read_to_string(data_dir.join("root-token"))
            .map(|t| t.trim().to_owned())
            .unwrap_or_default();
        if !root_token.is_empty() {
            tokens()
                .lock()
                .unwrap()
                .insert(url.clone(), root_token.clone());
        }
        Server {
            child,
            url,
            data_dir: data_dir.to_owned(),
            root_token,
            logs,
        }
    }

    /// An HTTP client that authenticates as root.
    pub fn http(&self) -> reqwest::Client {
        http_with(&self.root_token)
    }

    /// Everything the server printed so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs the CLI against this server, which finds the root token in the data directory
    /// (`BATON_DATA_DIR`); returns (exit success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(BIN)
            .args(args)
            .env("BATON_ADDR", &self.url)
            .env("BATON_DATA_DIR", &self.data_dir)
            .env_remove("BATON_TOKEN")
            .output()
            .expect("run the baton CLI");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh directory under the system temp dir, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("baton-test-")
        .tempdir()
        .expect("temp dir")
}

/// An HTTP client for tests that sends no token.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client")
}

/// PUTs a credential spec (JSON) and asserts it was accepted.
pub async fn put_credential(
    http: &reqwest::Client,
    url: &str,
    name: &str,
    spec: serde_json::Value,
) {
    let resp = http
        .put(format!("{url}/v1/credentials/{name}"))
        .json(&spec)
        .send()
        .await
        .expect("PUT credential");
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert!(status.is_success(), "PUT {name} answered {status}: {body}");
}

/// Runs the CLI against `addr`, reachable or not; returns (exit success, stdout, stderr).
pub fn cli_at(addr: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("BATON_ADDR", addr)
        .output()
        .expect("run the baton CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A loopback URL where nothing listens: a port the system just handed out, then released.
pub fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// GETs the token endpoint of `name` and returns its JSON body; panics unless it is a 200.
pub async fn token(http: &reqwest::Client, url: &str, name: &str) -> serde_json::Value {
    let resp = http
        .get(format!("{url}/v1/credentials/{name}/token"))
        .send()
        .await
        .expect("GET token");
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "GET {name}/token answered {status}: {body}"
    );
    serde_json::from_str(&body).expect("the token answer is JSON")
}
