//! A network partition between real processes: three members, each in a network namespace of
//! its own, joined by veth pairs to a bridge; an nftables rule cuts the leader off from the
//! others. The cut-off minority must stop accepting writes and stop rotating, and after
//! healing every member must hold one history.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables); without them the test says why and skips.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, Placement};
use serde_json::{json, Value};

/// The namespaces and links of one test run, removed when dropped.
struct Net {
    prefix: String,
    /// The first three octets of the test's /24, e.g. `10.231.7`.
    subnet: String,
    hub: String,
    created: Vec<String>,
    root_link: Option<String>,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    fn node_ns(&self, id: u64) -> String {
        format!("{}n{id}", self.prefix)
    }

    fn ip(&self, id: u64) -> String {
        format!("{}.{id}", self.subnet)
    }

    /// A hub namespace holding a bridge, one namespace per member with a veth pair to the
    /// bridge, and a veth pair from this namespace so that the test reaches every member.
    fn create(members: u64) -> Result<Net, String> {
        let pid = std::process::id();
        let prefix = format!("bt{pid}");
        let mut net = Net {
            subnet: format!("10.231.{}", pid % 250 + 1),
            hub: format!("{prefix}h"),
            prefix,
            created: Vec::new(),
            root_link: None,
        };
        let hub = net.hub.clone();
        run(&["ip", "netns", "add", &hub])?;
        net.created.push(hub.clone());
        run(&["ip", "-n", &hub, "link", "set", "lo", "up"])?;
        run(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &hub, "link", "set", "br0", "up"])?;
        for id in 1..=members {
            let ns = net.node_ns(id);
            run(&["ip", "netns", "add", &ns])?;
            net.created.push(ns.clone());
            let port = format!("p{id}");
            run(&[
                "ip", "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port,
                "netns", &hub,
            ])?;
            let cidr = format!("{}/24", net.ip(id));
            run(&["ip", "-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            run(&[
                "ip", "-n", &hub, "link", "set", &port, "master", "br0", "up",
            ])?;
        }
        let root_link = format!("{}r", net.prefix);
        run(&[
            "ip", "link", "add", &root_link, "type", "veth", "peer", "name", "up0", "netns", &hub,
        ])?;
        net.root_link = Some(root_link.clone());
        let cidr = format!("{}.100/24", net.subnet);
        run(&["ip", "addr", "add", &cidr, "dev", &root_link])?;
        run(&["ip", "link", "set", &root_link, "up"])?;
        run(&[
            "ip", "-n", &hub, "link", "set", "up0", "master", "br0", "up",
        ])?;
        Ok(net)
    }

    /// Drops every packet between member `id` and the other members (not the test's own).
    fn isolate(&self, id: u64, others: &[u64]) {
        let set = others
            .iter()
            .map(|o| self.ip(*o))
            .collect::<Vec<_>>()
            .join(", ");
        let rules = format!(
            "table inet partition {{\n\
             chain input {{ type filter hook input priority 0; policy accept; ip saddr {{ {set} }} drop; }}\n\
             chain output {{ type filter hook output priority 0; policy accept; ip daddr {{ {set} }} drop; }}\n\
             }}\n"
        );
        let ns = self.node_ns(id);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("run nft");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft refused the rules");
    }

    fn heal(&self, id: u64) {
        let ns = self.node_ns(id);
        run(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "nft",
            "delete",
            "table",
            "inet",
            "partition",
        ])
        .unwrap();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(link) = &self.root_link {
            let _ = run(&["ip", "link", "del", link]);
        }
        for ns in self.created.iter().rev() {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}

/// Why this machine cannot run the test, if it cannot.
fn unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("it needs root to create network namespaces".into());
    }
    for tool in ["ip", "nft"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!(
                "`{tool}` is not installed (apt-get install iproute2 nftables)"
            ));
        }
    }
    None
}

fn version_of(body: &Option<Value>) -> Option<u64> {
    body.as_ref()?["versions"]["current"]["version"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_minority_stops_writing_and_rotating_and_rejoins_one_history() {
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED: the partition test cannot run here: {why}");
        return;
    }
    let net = match Net::create(3) {
        Ok(net) => net,
        Err(why) => {
            eprintln!("SKIPPED: the partition test cannot create network namespaces: {why}");
            return;
        }
    };
    let cluster = Cluster::start_placed(3, "", |id| Placement {
        listen: format!("{}:7171", net.ip(id)),
        peer: format!("{}:7172", net.ip(id)),
        wrapper: ["ip", "netns", "exec", &net.node_ns(id)]
            .map(String::from)
            .to_vec(),
    })
    .await;

    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    // A version lives 20 s and the next rotation starts 15 s before it ends: every 5 s.
    common::put_credential(
        &cluster.http(),
        &cluster.url(leader),
        "fleet",
        json!({
            "issuer": { "kind": "jwt", "claims": { "iss": "baton-test" } },
            "policy": { "lifetime": "20s", "renew_before": "15s", "min_remaining": "5s" },
        }),
    )
    .await;
    cluster.wait_caught_up(Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while version_of(&cluster.credential(leader, "fleet").await).is_none() {
        assert!(Instant::now() < deadline, "the credential got no version");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let cut_id = cluster.members[leader].id;
    let majority: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let other_ids: Vec<u64> = majority.iter().map(|i| cluster.members[*i].id).collect();
    net.isolate(cut_id, &other_ids);
    let cut_at = Instant::now();
    let minority_version = version_of(&cluster.credential(leader, "fleet").await);

    // The minority takes no write: it answers an error (or nothing) and acknowledges none.
    let refused = cluster
        .put_kv(leader, "minority-write", json!(1), Duration::from_secs(15))
        .await;
    eprintln!(
        "the cut-off member answered {refused:?} after {:?}",
        cut_at.elapsed()
    );
    assert!(refused.is_err(), "the cut-off leader acknowledged a write");

    // The majority elects a leader of its own and goes on writing and rotating.
    let mut acked = Vec::new();
    for n in 0..10 {
        let key = format!("majority-{n}");
        let through = majority[n % 2];
        let mut tries = 0;
        loop {
            match cluster
                .put_kv(through, &key, json!(n), Duration::from_secs(15))
                .await
            {
                Ok(()) => break,
                Err(e) => {
                    tries += 1;
                    assert!(tries < 10, "the majority takes no writes: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        acked.push(key);
    }
    // Once it has heard from no quorum for a few seconds, the cut-off leader says so at once.
    let health = cluster.healthz(leader).await;
    assert_eq!(health["quorum"], json!(false), "{health}");
    let asked = Instant::now();
    let refused = cluster
        .put_kv(
            leader,
            "minority-write-2",
            json!(2),
            Duration::from_secs(15),
        )
        .await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.starts_with("503") && e.contains("heard from no quorum")),
        "{refused:?}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );

    // Stay cut long enough for two rotations on the majority side.
    let stay = Duration::from_secs(16).saturating_sub(cut_at.elapsed());
    tokio::time::sleep(stay).await;
    let majority_version = version_of(&cluster.credential(majority[0], "fleet").await);
    let minority_after = version_of(&cluster.credential(leader, "fleet").await);
    assert_eq!(
        minority_after, minority_version,
        "the cut-off member committed a rotation on its own"
    );
    assert!(
        majority_version >= minority_version.map(|v| v + 2),
        "the majority did not rotate: {majority_version:?} after {minority_version:?}"
    );

    eprintln!("versions: minority {minority_after:?}, majority {majority_version:?}");
    net.heal(cut_id);
    cluster.wait_leader(Duration::from_secs(30)).await;
    cluster.wait_caught_up(Duration::from_secs(30)).await;

    // One history: every member holds the same versions (rotations go on, so the members
    // are compared until one read of all three agrees), the majority's writes, and not the
    // write the minority could not commit.
    let mut views = Vec::new();
    for _ in 0..20 {
        views.clear();
        for i in 0..3 {
            let body = cluster.credential(i, "fleet").await.expect("credential");
            let token = common::token(&cluster.http(), &cluster.url(i), "fleet").await;
            views.push((body["versions"].clone(), token["token"].clone()));
        }
        if views.iter().all(|v| *v == views[0]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        views.iter().all(|v| *v == views[0]),
        "members disagree on the versions: {views:#?}"
    );
    let current = views[0].0["current"]["version"].as_u64().unwrap();
    let previous = views[0].0["previous"]["version"].as_u64().unwrap();
    assert_eq!(previous + 1, current, "{views:#?}");
    for i in 0..3 {
        for key in &acked {
            assert_eq!(
                cluster.local_kv(i, key).await.0,
                200,
                "node {} lacks {key}",
                i + 1
            );
        }
        assert_eq!(
            cluster.local_kv(i, "minority-write").await.0,
            404,
            "node {} holds the write the minority never committed",
            i + 1
        );
    }
    drop(cluster);
    drop(net);
}
