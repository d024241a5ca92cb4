//! A cluster of `baton serve` processes for black-box tests: members with fixed addresses and
//! data directories, made into one cluster with the `baton cluster` commands.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{http_with, temp_dir, Server, BIN};

pub const SECRET: &str = "a-cluster-secret-for-tests-only";

/// A loopback address nothing listens on yet.
pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let addr = listener.local_addr().expect("local address");
    format!("127.0.0.1:{}", addr.port())
}

/// Where a member runs: its API and peer addresses, and the command that starts it (none:
/// `baton serve` itself).
pub struct Placement {
    pub listen: String,
    pub peer: String,
    pub wrapper: Vec<String>,
}

pub struct Member {
    pub id: u64,
    pub dir: PathBuf,
    pub listen: String,
    pub peer: String,
    pub wrapper: Vec<String>,
    pub server: Option<Server>,
}

/// Members with fixed ports and data directories, so that each can be killed and started
/// again where the others expect it.
pub struct Cluster {
    pub root: tempfile::TempDir,
    pub config: PathBuf,
    pub members: Vec<Member>,
    pub token: String,
}

impl Cluster {
    /// Starts `n` members sharing the config file `config`, initializes the cluster on the
    /// first with `baton cluster init` and adds the others with `baton cluster join`.
    pub async fn start(n: u64, config: &str) -> Cluster {
        Cluster::start_placed(n, config, |_| Placement {
            listen: free_addr(),
            peer: free_addr(),
            wrapper: Vec::new(),
        })
        .await
    }

    /// Like [`Cluster::start`], with member `id` placed by `place(id)`.
    pub async fn start_placed(n: u64, config: &str, place: impl Fn(u64) -> Placement) -> Cluster {
        let root = temp_dir();
        let config_path = root.path().join("baton.toml");
        std::fs::write(&config_path, config).unwrap();
        let members = (1..=n)
            .map(|id| {
                let placement = place(id);
                Member {
                    id,
                    dir: root.path().join(format!("node-{id}")),
                    listen: placement.listen,
                    peer: placement.peer,
                    wrapper: placement.wrapper,
                    server: None,
                }
            })
            .collect();
        let mut cluster = Cluster {
            root,
            config: config_path,
            members,
            token: String::new(),
        };
        for i in 0..cluster.members.len() {
            cluster.start_member(i);
        }

        let first = &cluster.members[0];
        let out = Command::new(BIN)
            .args(["cluster", "init", &first.peer])
            .env("BATON_CLUSTER_SECRET", SECRET)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token_file = first.dir.join("root-token");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !token_file.exists() {
            assert!(
                Instant::now() < deadline,
                "node 1 wrote no root token after init"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        cluster.token = std::fs::read_to_string(&token_file)
            .unwrap()
            .trim()
            .to_owned();

        for i in 1..cluster.members.len() {
            let (ok, stdout, stderr) =
                cluster.cli(0, &["cluster", "join", &cluster.members[i].peer]);
            assert!(ok, "join of node {} failed: {stderr}", i + 1);
            assert!(stdout.contains("joined the cluster as a voter"), "{stdout}");
        }
        cluster
    }

    pub fn start_member(&mut self, i: usize) {
        let member = &self.members[i];
        let id = member.id.to_string();
        let server = Server::start_member(
            &member.wrapper,
            &member.dir,
            &member.listen,
            &[
                "--node-id",
                &id,
                "--peer-listen",
                &member.peer,
                "--config",
                self.config.to_str().unwrap(),
            ],
            &[("BATON_CLUSTER_SECRET", SECRET)],
        );
        self.members[i].server = Some(server);
    }

    pub fn url(&self, i: usize) -> String {
        format!("http://{}", self.members[i].listen)
    }

    pub fn server(&self, i: usize) -> &Server {
        self.members[i].server.as_ref().expect("the member runs")
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut server) = self.members[i].server.take() {
            server.kill9();
        }
    }

    pub fn http(&self) -> reqwest::Client {
        http_with(&self.token)
    }

    /// Runs the CLI against member `i` with the root token.
    pub fn cli(&self, i: usize, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(BIN)
            .args(args)
            .env("BATON_ADDR", self.url(i))
            .env("BATON_TOKEN", &self.token)
            .output()
            .expect("run the baton CLI");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// PUTs `value` at key-value `key` through member `i`; the error says what it answered.
    pub async fn put_kv(
        &self,
        i: usize,
        key: &str,
        value: Value,
        timeout: Duration,
    ) -> Result<(), String> {
        let resp = self
            .http()
            .put(format!("{}/v1/kv/{key}", self.url(i)))
            .json(&serde_json::json!({ "value": value }))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status();
        Err(format!(
            "{status}: {}",
            resp.text().await.unwrap_or_default()
        ))
    }

    /// Member `i`'s answer for key `key` from its own state: the status (0 when it did not
    /// answer) and the value.
    pub async fn local_kv(&self, i: usize, key: &str) -> (u16, Value) {
        let resp = self
            .http()
            .get(format!("{}/v1/kv/{key}", self.url(i)))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        let Ok(resp) = resp else {
            return (0, Value::Null);
        };
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or_default();
        (status, body["value"].clone())
    }

    /// Credential `name` as member `i` holds it (`GET /v1/credentials/NAME`), if it answers.
    pub async fn credential(&self, i: usize, name: &str) -> Option<Value> {
        self.http()
            .get(format!("{}/v1/credentials/{name}", self.url(i)))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }

    /// Member `i`'s `GET /healthz`.
    pub async fn healthz(&self, i: usize) -> Value {
        self.http()
            .get(format!("{}/healthz", self.url(i)))
            .send()
            .await
            .expect("GET /healthz")
            .json()
            .await
            .expect("a JSON health answer")
    }

    /// Member `i`'s view of the cluster, from `GET /v1/cluster/status`.
    pub async fn status(&self, i: usize) -> Option<Value> {
        let resp = self
            .http()
            .get(format!("{}/v1/cluster/status", self.url(i)))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    /// The index of the member that leads, once every running member agrees on one.
    pub async fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let mut seen = Vec::new();
            for (i, m) in self.members.iter().enumerate() {
                if m.server.is_some() {
                    seen.push(self.status(i).await.and_then(|s| s["leader"].as_u64()));
                }
            }
            if let Some(Some(leader)) = seen.first().copied() {
                let running = self
                    .members
                    .iter()
                    .any(|m| m.id == leader && m.server.is_some());
                if running && seen.iter().all(|s| *s == Some(leader)) {
                    return self.members.iter().position(|m| m.id == leader).unwrap();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader after {timeout:?}: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every running member has applied the leader's whole log.
    pub async fn wait_caught_up(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let leader = self.wait_leader(timeout).await;
            if let Some(status) = self.status(leader).await {
                let members = status["members"].as_array().cloned().unwrap_or_default();
                let running: Vec<u64> = self
                    .members
                    .iter()
                    .filter(|m| m.server.is_some())
                    .map(|m| m.id)
                    .collect();
                let done = running.iter().all(|id| {
                    members
                        .iter()
                        .any(|m| m["id"].as_u64() == Some(*id) && m["lag"].as_u64() == Some(0))
                });
                if done {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the members did not catch up within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut server) = m.server.take() {
                server.kill9();
            }
        }
    }
}
