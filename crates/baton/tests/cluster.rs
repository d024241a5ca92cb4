//! Three `baton serve` processes on loopback forming one cluster: the leader killed in the
//! middle of a rotation, every node killed and restarted, a node catching up from a snapshot.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{http_with, Server};
use serde_json::{json, Value};

#[tokio::test]
async fn cluster_commands_make_a_three_node_cluster_any_node_serves() {
    let cluster = Cluster::start(3, "").await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    cluster.wait_caught_up(Duration::from_secs(20)).await;

    let (ok, stdout, stderr) = cluster.cli(2, &["cluster", "status", "--json"]);
    assert!(ok, "{stderr}");
    let status: Value = serde_json::from_str(&stdout).unwrap();
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{status}");
    assert!(
        members.iter().all(|m| m["voter"] == json!(true)),
        "{status}"
    );
    assert_eq!(
        status["leader"].as_u64(),
        Some(cluster.members[leader].id),
        "{status}"
    );
    let (ok, table, _) = cluster.cli(1, &["cluster", "status"]);
    assert!(ok);
    for m in &cluster.members {
        assert!(table.contains(&m.peer), "{table}");
    }

    // A write sent to a follower is forwarded to the leader and visible everywhere.
    let follower = (leader + 1) % 3;
    let resp = cluster
        .http()
        .put(format!("{}/v1/kv/greeting", cluster.url(follower)))
        .json(&json!({ "value": "hello" }))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    for i in 0..3 {
        let body: Value = cluster
            .http()
            .get(format!(
                "{}/v1/kv/greeting?consistency=linearizable",
                cluster.url(i)
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["value"], json!("hello"), "node {}: {body}", i + 1);
    }

    // A removed node is told so: it takes no writes and says so in /healthz.
    let gone = (leader + 2) % 3;
    let id = cluster.members[gone].id.to_string();
    let (ok, stdout, stderr) = cluster.cli(leader, &["cluster", "remove", &id]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("removed from the cluster"), "{stdout}");
    let health = cluster.healthz(gone).await;
    assert_eq!(health["status"], json!("removed"), "{health}");
    let refused = cluster
        .put_kv(gone, "greeting", json!("again"), Duration::from_secs(15))
        .await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("removed from the cluster")),
        "{refused:?}"
    );
    assert!(cluster
        .server(gone)
        .logs()
        .contains("this node was removed"));
    let status = cluster.status(leader).await.unwrap();
    assert_eq!(status["members"].as_array().unwrap().len(), 2, "{status}");
    // The other two still take writes.
    cluster
        .put_kv(follower, "greeting", json!("two"), Duration::from_secs(15))
        .await
        .unwrap();
}

/// The fake issuer: a non-idempotent command that counts what it issues. Each call appends
/// `start ROTATION FENCE MILLIS PARENT_PID` to the journal, works for a while, prints a
/// token naming the rotation and fence, and appends `delivered ROTATION FENCE` once the
/// token reached baton (its stdout), or `undelivered ROTATION FENCE` if baton was gone.
const ISSUER: &str = r#"
import os, sys, time
journal, work, lifetime = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
def note(line):
    with open(journal, "a") as f:
        f.write(line + "\n")
rotation, fence = os.environ["BATON_ROTATION"], os.environ["BATON_FENCE"]
note("start %s %s %d %d" % (rotation, fence, time.time() * 1000, os.getppid()))
time.sleep(work)
body = '{"token": "tok-%s-%s", "expires_in": %d}' % (rotation, fence, lifetime)
try:
    os.write(1, body.encode())
    os.close(1)
    note("delivered %s %s" % (rotation, fence))
except OSError:
    note("undelivered %s %s" % (rotation, fence))
"#;

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Start {
        rotation: u64,
        fence: u64,
        at_ms: u64,
        pid: u32,
    },
    Delivered {
        rotation: u64,
        fence: u64,
    },
    Undelivered {
        rotation: u64,
    },
}

fn journal(path: &Path) -> Vec<Event> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            match f[0] {
                "start" => Some(Event::Start {
                    rotation: n(1)?,
                    fence: n(2)?,
                    at_ms: n(3)?,
                    pid: n(4)? as u32,
                }),
                "delivered" => Some(Event::Delivered {
                    rotation: n(1)?,
                    fence: n(2)?,
                }),
                "undelivered" => Some(Event::Undelivered { rotation: n(1)? }),
                _ => None,
            }
        })
        .collect()
}

/// What one reader saw: the longest time between two successful answers, and the errors.
#[derive(Debug, Default)]
struct Reads {
    ok: u64,
    errors: Vec<String>,
    longest_gap: Duration,
    tokens: Vec<String>,
}

fn spawn_reader(
    url: String,
    token: String,
    linearizable: bool,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Reads> {
    tokio::spawn(async move {
        let http = http_with(&token);
        let query = if linearizable {
            "?consistency=linearizable"
        } else {
            ""
        };
        let mut reads = Reads::default();
        let mut last_ok = Instant::now();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let answer = http
                .get(format!("{url}/v1/credentials/fleet/token{query}"))
                .timeout(Duration::from_secs(20))
                .send()
                .await;
            match answer {
                Ok(resp) if resp.status().is_success() => {
                    let body: Value = resp.json().await.unwrap_or_default();
                    let now = Instant::now();
                    reads.longest_gap = reads.longest_gap.max(now - last_ok);
                    last_ok = now;
                    reads.ok += 1;
                    if let Some(t) = body["token"].as_str() {
                        if reads.tokens.last().map(String::as_str) != Some(t) {
                            reads.tokens.push(t.to_owned());
                        }
                    }
                }
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    reads.errors.push(format!("{status}: {text}"));
                }
                Err(e) => reads.errors.push(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let now = Instant::now();
        reads.longest_gap = reads.longest_gap.max(now - last_ok);
        reads
    })
}

/// The version of `fleet` a member serves, from its local state.
async fn served_version(cluster: &Cluster, i: usize) -> Option<u64> {
    let body = cluster.credential(i, "fleet").await?;
    body["versions"]["current"]["version"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_mid_rotation_calls_the_issuer_once_per_rotation() {
    // Calls take 2 s under a 3 s timeout, so an intent holds its credential 2 × 3 + 5 = 11 s.
    let mut cluster = Cluster::start(3, "[rotation]\nintent_timeout = \"1s\"\n").await;
    let scripts = cluster.root.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    let script = scripts.join("issuer.py");
    std::fs::write(&script, ISSUER).unwrap();
    let journal_path = scripts.join("journal");
    let python = which_python();

    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    // A version lives 40 s and the next rotation starts 30 s before it ends: every 10 s.
    let spec = json!({
        "issuer": {
            "kind": "exec",
            "command": [python, script, journal_path, "2", "40"],
            "timeout": "3s",
        },
        "policy": { "lifetime": "40s", "renew_before": "30s", "min_remaining": "5s" },
    });
    common::put_credential(&cluster.http(), &cluster.url(leader), "fleet", spec).await;

    // Readers on the two members that survive, reading locally and through the leader.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while served_version(&cluster, survivors[0]).await.is_none()
        || served_version(&cluster, survivors[1]).await.is_none()
    {
        if Instant::now() > deadline {
            let body = cluster
                .http()
                .get(format!("{}/v1/credentials/fleet", cluster.url(leader)))
                .send()
                .await
                .unwrap()
                .text()
                .await;
            panic!(
                "version 1 never reached the followers: {body:?}\njournal: {:?}\n{}",
                journal(&journal_path),
                cluster.server(leader).logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut readers = Vec::new();
    for &i in &survivors {
        for linearizable in [false, true] {
            readers.push((
                i,
                linearizable,
                spawn_reader(
                    cluster.url(i),
                    cluster.token.clone(),
                    linearizable,
                    stop.clone(),
                ),
            ));
        }
    }

    // Kill the leader while its issuer call for rotation 2 is running.
    let leader_pid = cluster.server(leader).pid();
    let deadline = Instant::now() + Duration::from_secs(40);
    let first_call = loop {
        let started = journal(&journal_path).into_iter().find_map(|e| match e {
            Event::Start {
                rotation: 2,
                fence,
                at_ms,
                pid,
            } => Some((fence, at_ms, pid)),
            _ => None,
        });
        if let Some(call) = started {
            break call;
        }
        assert!(Instant::now() < deadline, "rotation 2 never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(first_call.2, leader_pid, "the leader runs the engine");
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.kill9(leader);
    let killed_at = Instant::now();

    // The new leader completes rotation 2, then rotates again on schedule.
    let deadline = Instant::now() + Duration::from_secs(60);
    while served_version(&cluster, survivors[0]).await < Some(3) {
        assert!(
            Instant::now() < deadline,
            "rotation 3 never happened; journal: {:?}\nlogs:\n{}",
            journal(&journal_path),
            cluster.server(survivors[0]).logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let took = killed_at.elapsed();

    let events = journal(&journal_path);
    // One delivered call per rotation number, and never two for one.
    for rotation in 1..=3 {
        let delivered = events
            .iter()
            .filter(|e| matches!(e, Event::Delivered { rotation: r, .. } if *r == rotation))
            .count();
        assert_eq!(
            delivered, 1,
            "rotation {rotation}: {delivered} delivered calls in {events:?}"
        );
    }
    // The interrupted call was not retried before its intent could have ended.
    let (old_fence, old_start, _) = first_call;
    let retry = events
        .iter()
        .find_map(|e| match e {
            Event::Start {
                rotation: 2,
                fence,
                at_ms,
                pid,
            } if *fence != old_fence => Some((*fence, *at_ms, *pid)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("rotation 2 was never retried: {events:?}"));
    assert!(retry.0 > old_fence, "fences increase: {events:?}");
    assert_ne!(retry.2, leader_pid);
    assert!(
        retry.1 >= old_start + 10_000,
        "the retry began {} ms after the interrupted call, inside its intent's hold",
        retry.1 - old_start
    );
    // The interrupted call finished after its server was gone: its token reached no one.
    assert!(
        events.contains(&Event::Undelivered { rotation: 2 }),
        "{events:?}"
    );

    let mut seen_tokens = Vec::new();
    for (i, linearizable, reader) in readers {
        let reads = reader.await.unwrap();
        let what = format!(
            "node {} ({}): {} reads, longest gap {:?}, errors {:?} ({took:?} after the kill)",
            i + 1,
            if linearizable {
                "linearizable"
            } else {
                "local"
            },
            reads.ok,
            reads.longest_gap,
            reads.errors
        );
        eprintln!("{what}");
        assert!(reads.ok > 10, "{what}");
        if linearizable {
            // An election takes 1–2 s; a read waits for it rather than failing.
            assert!(reads.errors.is_empty(), "{what}");
            assert!(reads.longest_gap < Duration::from_secs(8), "{what}");
        } else {
            assert!(reads.errors.is_empty(), "{what}");
            assert!(reads.longest_gap < Duration::from_secs(3), "{what}");
        }
        seen_tokens.extend(reads.tokens);
    }
    let expected = format!("tok-2-{}", retry.0);
    assert!(
        seen_tokens.contains(&expected),
        "readers saw {seen_tokens:?}, not {expected}"
    );
    assert!(
        !seen_tokens.contains(&format!("tok-2-{old_fence}")),
        "the interrupted call's token was served: {seen_tokens:?}"
    );
}

fn which_python() -> String {
    for candidate in ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"] {
        if Path::new(candidate).exists() {
            return candidate.to_owned();
        }
    }
    let out = Command::new("sh")
        .args(["-c", "command -v python3"])
        .output()
        .expect("find python3");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(!path.is_empty(), "these tests need python3");
    path
}

/// POSTs `body` to lease `name`'s acquire endpoint on member `i`.
async fn acquire_raw(cluster: &Cluster, i: usize, name: &str, body: Value) -> reqwest::Response {
    cluster
        .http()
        .post(format!("{}/v1/leases/{name}/acquire", cluster.url(i)))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn acquire(cluster: &Cluster, i: usize, name: &str, holder: &str) -> Value {
    let resp = acquire_raw(cluster, i, name, json!({ "holder": holder, "ttl": "30s" })).await;
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_killing_and_restarting_every_node() {
    let mut cluster = Cluster::start(3, "[cluster]\nsnapshot_logs = 20\n").await;
    cluster.wait_leader(Duration::from_secs(20)).await;

    // Writes through every member, so that most are forwarded to the leader.
    let mut acked = Vec::new();
    for n in 0..60u64 {
        let key = format!("k{n}");
        if cluster
            .put_kv((n % 3) as usize, &key, json!(n), Duration::from_secs(15))
            .await
            .is_ok()
        {
            acked.push((key, n));
        }
    }
    assert_eq!(
        acked.len(),
        60,
        "a healthy cluster acknowledges every write"
    );
    common::put_credential(
        &cluster.http(),
        &cluster.url(1),
        "manual",
        json!({ "issuer": { "kind": "static", "token": "a-static-token" } }),
    )
    .await;
    let lease = acquire(&cluster, 2, "nightly", "web-1").await;
    let fence = lease["fence"].as_u64().unwrap();
    let release = cluster
        .http()
        .post(format!("{}/v1/leases/nightly/release", cluster.url(0)))
        .json(&json!({ "holder": "web-1", "fence": fence }))
        .send()
        .await
        .unwrap();
    assert!(release.status().is_success());

    for i in 0..3 {
        cluster.kill9(i);
    }
    for i in 0..3 {
        cluster.start_member(i);
    }
    cluster.wait_leader(Duration::from_secs(30)).await;
    cluster.wait_caught_up(Duration::from_secs(30)).await;

    for i in 0..3 {
        for (key, value) in &acked {
            assert_eq!(
                cluster.local_kv(i, key).await.1,
                json!(value),
                "node {} lost {key}",
                i + 1
            );
        }
        let token = common::token(&cluster.http(), &cluster.url(i), "manual").await;
        assert_eq!(token["token"], json!("a-static-token"));
    }
    // Fences keep increasing across the restart.
    let again = acquire(&cluster, 0, "nightly", "web-2").await;
    assert!(again["fence"].as_u64().unwrap() > fence, "{again}");
    // The cluster still takes writes.
    assert!(cluster
        .put_kv(1, "after", json!(1), Duration::from_secs(15))
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_was_down_catches_up_from_a_snapshot() {
    let mut cluster = Cluster::start(3, "[cluster]\nsnapshot_logs = 10\n").await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let down = (leader + 1) % 3;
    let up = 3 - leader - down;
    cluster.kill9(down);

    // Enough writes that the log the down node misses is compacted into a snapshot.
    for n in 0..80u64 {
        let through = if n % 2 == 0 { leader } else { up };
        assert!(
            cluster
                .put_kv(through, &format!("k{n}"), json!(n), Duration::from_secs(15))
                .await
                .is_ok(),
            "two of three members take writes"
        );
    }
    cluster.start_member(down);
    cluster.wait_caught_up(Duration::from_secs(30)).await;
    for n in 0..80u64 {
        assert_eq!(
            cluster.local_kv(down, &format!("k{n}")).await.1,
            json!(n),
            "k{n} on the member that was down"
        );
    }
    let logs = cluster.server(down).logs();
    assert!(
        logs.contains("installing a snapshot"),
        "the member caught up without a snapshot:\n{logs}"
    );
}

fn parse_time(text: &str) -> std::time::SystemTime {
    let out = Command::new("date")
        .args(["-u", "-d", text, "+%s%3N"])
        .output()
        .unwrap();
    let ms: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    std::time::UNIX_EPOCH + Duration::from_millis(ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_neither_extended_nor_lost_by_a_leader_change() {
    let mut cluster = Cluster::start(3, "").await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let survivor = (leader + 1) % 3;
    let grant = acquire_raw(
        &cluster,
        survivor,
        "duty",
        json!({ "holder": "web-1", "ttl": "4s" }),
    )
    .await;
    assert!(grant.status().is_success());
    let grant: Value = grant.json().await.unwrap();
    let fence = grant["fence"].as_u64().unwrap();
    let expires_at = grant["expires_at"].as_str().unwrap().to_owned();
    let skew = Duration::from_millis(grant["max_clock_skew_ms"].as_u64().unwrap());

    cluster.kill9(leader);
    cluster.wait_leader(Duration::from_secs(20)).await;

    // The new leader knows the grant, with the expiry it had: another holder is refused.
    let early = acquire_raw(
        &cluster,
        survivor,
        "duty",
        json!({ "holder": "web-2", "ttl": "4s" }),
    )
    .await;
    let early_at = std::time::SystemTime::now();
    if early_at < parse_time(&expires_at) {
        assert_eq!(early.status(), 409);
        let body: Value = early.json().await.unwrap();
        assert_eq!(body["error"]["holder"], json!("web-1"), "{body}");
        assert_eq!(
            body["error"]["expires_at"],
            json!(expires_at),
            "the failover changed the grant's expiry: {body}"
        );
    }

    // Waiting, the other holder gets it once the grant has run out, and not much later.
    let taken = acquire_raw(
        &cluster,
        survivor,
        "duty",
        json!({ "holder": "web-2", "ttl": "4s", "wait": "20s" }),
    )
    .await;
    assert!(taken.status().is_success(), "{:?}", taken.text().await);
    let taken: Value = taken.json().await.unwrap();
    assert!(taken["fence"].as_u64().unwrap() > fence, "{taken}");
    // When the leader granted it, by its own stamp.
    let taken_at = parse_time(taken["expires_at"].as_str().unwrap()) - Duration::from_secs(4);
    let end = parse_time(&expires_at);
    assert!(
        taken_at >= end,
        "granted to another before the first grant ended"
    );
    assert!(
        taken_at <= end + skew + Duration::from_secs(3),
        "the grant outlived ttl + max_clock_skew by {:?}",
        taken_at.duration_since(end + skew).unwrap_or_default()
    );
}

/// Runs `baton serve` expecting it to refuse to start; returns what it printed.
fn serve_refused(dir: &Path, listen: &str, args: &[&str]) -> String {
    let mut child = Command::new(common::BIN)
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(dir)
        .args(args)
        .env("BATON_CLUSTER_SECRET", common::cluster::SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            assert!(!status.success(), "it started: {stderr}");
            return stderr;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("baton serve {args:?} did not refuse to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_restarted_with_another_address_or_id_is_refused() {
    let mut cluster = Cluster::start(3, "").await;
    cluster.wait_caught_up(Duration::from_secs(20)).await;
    cluster.kill9(2);
    let (dir, listen, peer) = {
        let m = &cluster.members[2];
        (m.dir.clone(), m.listen.clone(), m.peer.clone())
    };

    let moved = common::cluster::free_addr();
    let stderr = serve_refused(&dir, &listen, &["--node-id", "3", "--peer-listen", &moved]);
    assert!(
        stderr.contains(&format!(
            "the cluster knows node 3 at the peer address {peer}"
        )),
        "{stderr}"
    );
    let stderr = serve_refused(&dir, &listen, &["--node-id", "7", "--peer-listen", &peer]);
    assert!(
        stderr.contains("this data directory belongs to node 3"),
        "{stderr}"
    );
    let stderr = serve_refused(&dir, &listen, &["--peer-listen", &peer]);
    assert!(stderr.contains("needs its own id"), "{stderr}");

    // With its own id and address it comes back and catches up.
    cluster.start_member(2);
    cluster.wait_caught_up(Duration::from_secs(30)).await;
    assert!(!cluster
        .server(2)
        .logs()
        .contains("belongs to no cluster yet"));

    // Joining a member again says so.
    let (ok, _, stderr) = cluster.cli(0, &["cluster", "join", &peer]);
    assert!(!ok);
    assert!(stderr.contains("already a voter"), "{stderr}");
    let (ok, _, stderr) = cluster.cli(0, &["cluster", "join", &format!("http://{peer}")]);
    assert!(!ok);
    assert!(stderr.contains("without a scheme"), "{stderr}");
}

#[tokio::test]
async fn a_node_in_no_cluster_yet_says_so() {
    let dir = common::temp_dir();
    let listen = common::cluster::free_addr();
    let peer = common::cluster::free_addr();
    let server = Server::start_member(
        &[],
        dir.path(),
        &listen,
        &["--node-id", "1", "--peer-listen", &peer],
        &[("BATON_CLUSTER_SECRET", common::cluster::SECRET)],
    );
    assert!(
        server
            .logs()
            .contains(&format!("run `baton cluster init {peer}`")),
        "{}",
        server.logs()
    );
    let token = format!("btn_{}", "0".repeat(64));
    let resp = http_with(&token)
        .get(format!("http://{listen}/v1/credentials"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("not_in_cluster"), "{body}");

    // A wrong secret is named as such.
    let out = Command::new(common::BIN)
        .args(["cluster", "init", &peer])
        .env("BATON_CLUSTER_SECRET", "not-the-secret-of-this-node")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("is not this node's"), "{stderr}");
    assert!(!stderr.contains("not-the-secret"), "{stderr}");
}
