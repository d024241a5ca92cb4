//! The clock check between peers, on nodes in this process that talk over the real HTTP peer
//! transport on loopback: a node whose clock is off the cluster's is reported and does not
//! stand for election, and a cluster whose leader had the wrong clock still elects a new one.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use baton_core::Secret;
use baton_raft::http::{router, HttpNetwork};
use baton_raft::{Clock, MasterKey, MasterKeys, Node, NodeConfig};

struct Member {
    node: Arc<Node>,
    peer_addr: String,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Member {
    async fn stop(&self) {
        self.server.abort();
        self.node.shutdown().await;
    }
}

fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Starts node `id` with its clock `offset_ms` ahead of the system's.
async fn member(id: u64, offset_ms: u64) -> Member {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = listener.local_addr().unwrap().to_string();
    let keys = MasterKeys {
        current: MasterKey::generate().unwrap(),
        previous: None,
    };
    let mut config = NodeConfig::new(id, dir.path().to_owned(), keys);
    config.advertise = peer_addr.clone();
    config.clock = Clock::custom(move || system_ms() + offset_ms);
    let secret = Secret::new("a-cluster-secret-for-tests-only");
    let network = HttpNetwork::new(reqwest::Client::new(), false, secret.clone());
    let node = Node::start_cluster(config, network).await.unwrap();
    let app = router(node.clone(), secret);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Member {
        node,
        peer_addr,
        server,
        _dir: dir,
    }
}

/// Nodes 1..=n with the given clock offsets, made one cluster led by node 1.
async fn cluster(offsets_ms: &[u64]) -> Vec<Member> {
    let mut members = Vec::new();
    for (i, offset) in offsets_ms.iter().enumerate() {
        members.push(member(i as u64 + 1, *offset).await);
    }
    members[0].node.initialize().await.unwrap();
    for m in &members[1..] {
        members[0].node.join(&m.peer_addr).await.unwrap();
    }
    members
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn skewed(m: &Member) -> bool {
    m.node.clock_sample().is_some_and(|s| s.skewed)
}

/// The leader every member in `members` agrees on, once they do; panics if a node in `never`
/// is seen leading meanwhile.
async fn new_leader(members: &[&Member], never: &[u64]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for m in members {
            if m.node.is_leader() {
                assert!(
                    !never.contains(&m.node.id()),
                    "node {} leads with a skewed clock",
                    m.node.id()
                );
            }
        }
        let seen: Vec<Option<u64>> = members.iter().map(|m| m.node.leader()).collect();
        if let Some(Some(leader)) = seen.first() {
            let live = members.iter().any(|m| m.node.id() == *leader);
            if live && seen.iter().all(|s| s == &Some(*leader)) {
                return *leader;
            }
        }
        assert!(Instant::now() < deadline, "no new leader: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_a_skewed_clock_are_reported_and_never_lead() {
    // Nodes 4 and 5 run 3 s ahead; max_clock_skew is 500 ms.
    let members = cluster(&[0, 0, 0, 3000, 3000]).await;
    wait_until(
        "nodes 4 and 5 found skewed",
        Duration::from_secs(15),
        || members.iter().all(|m| skewed(m) == (m.node.id() >= 4)),
    )
    .await;
    let status = members[1].node.cluster_status().await;
    for m in &status.members {
        let reported = m.status.as_ref().expect("every member answers");
        assert_eq!(reported.clock_skewed, m.id >= 4, "{status:?}");
        if m.id >= 4 {
            let offset = reported.clock_offset_ms.expect("offset to the leader");
            assert!((2500..=3500).contains(&offset), "{status:?}");
        }
    }

    // The leader goes; of the four left, only nodes 2 and 3 may take over.
    members[0].stop().await;
    let live: Vec<&Member> = members[1..].iter().collect();
    let second = new_leader(&live, &[4, 5]).await;
    assert!(second == 2 || second == 3);

    // And again: three are left, one with a good clock, which must be the one to lead.
    members[second as usize - 1].stop().await;
    let live: Vec<&Member> = members[1..]
        .iter()
        .filter(|m| m.node.id() != second)
        .collect();
    let third = new_leader(&live, &[4, 5]).await;
    assert_eq!(third, 5 - second);
    for m in &members {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_with_a_wrong_clock_is_reported_and_the_others_still_elect() {
    // The leader, node 1, runs 3 s ahead of the other two.
    let members = cluster(&[3000, 0, 0]).await;
    wait_until("node 1 alone found skewed", Duration::from_secs(15), || {
        members.iter().all(|m| skewed(m) == (m.node.id() == 1))
    })
    .await;
    assert!(members[0].node.is_leader());
    members[0].stop().await;
    let live: Vec<&Member> = members[1..].iter().collect();
    let leader = new_leader(&live, &[1]).await;
    assert!(leader == 2 || leader == 3);
    for m in &members {
        m.stop().await;
    }
}
