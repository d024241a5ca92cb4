//! A new leader resumes a rotation its predecessor began: nodes in this process over the real
//! HTTP peer transport on loopback. Node 1 leads without a rotation engine, begins a rotation
//! of a jwt credential as an engine would and stops before minting (as if it crashed); the
//! engine of the next leader mints that very intent at once, to the same bytes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_core::{Op, Output, PolicyRequest, RotationReason, Secret};
use baton_engine::{Engine, EngineConfig};
use baton_issuers::{IssuerRequest, MintRequest};
use baton_raft::http::{router, HttpNetwork};
use baton_raft::{MasterKey, MasterKeys, Node, NodeConfig};

struct Member {
    node: Arc<Node>,
    peer_addr: String,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn member(id: u64) -> Member {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = listener.local_addr().unwrap().to_string();
    let keys = MasterKeys {
        current: MasterKey::generate().unwrap(),
        previous: None,
    };
    let mut config = NodeConfig::new(id, dir.path().to_owned(), keys);
    config.advertise = peer_addr.clone();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_mints_the_open_jwt_intent_at_once_to_the_same_bytes() {
    let members = [member(1).await, member(2).await, member(3).await];
    let first = &members[0].node;
    first.initialize().await.unwrap();
    for m in &members[1..] {
        first.join(&m.peer_addr).await.unwrap();
    }
    // Engines on the followers only: node 1 plays a leader whose engine died mid-rotation.
    let _engines: Vec<Engine> = members[1..]
        .iter()
        .map(|m| Engine::start(m.node.clone(), EngineConfig::default()))
        .collect();

    let issuer: IssuerRequest =
        serde_json::from_value(serde_json::json!({ "kind": "jwt", "claims": { "iss": "t" } }))
            .unwrap();
    let policy: PolicyRequest =
        serde_json::from_value(serde_json::json!({ "lifetime": "1h" })).unwrap();
    first
        .propose(Op::PutCredential {
            name: "partner".into(),
            issuer: baton_issuers::prepare(issuer, None).unwrap(),
            policy: baton_core::Policy::from_request(&policy).unwrap(),
        })
        .await
        .unwrap();
    let deadline = first.now().add_millis(30_000);
    let begun = first
        .propose_local(Op::BeginRotation {
            name: "partner".into(),
            deadline,
            reason: RotationReason::Scheduled,
        })
        .await
        .unwrap();
    let Output::RotationStarted(intent) = begun.output else {
        panic!("no intent: {:?}", begun.output);
    };
    // What minting that intent yields, computed here from the stored spec.
    let (spec, uid, policy) = first.state().read(|s| {
        let c = &s.credentials["partner"];
        (c.issuer.clone(), c.uid, c.policy)
    });
    let expected = baton_issuers::mint(
        &spec,
        MintRequest {
            credential: "partner",
            uid,
            intent: &intent,
            policy: &policy,
        },
    )
    .await
    .unwrap();

    members[0].server.abort();
    members[0].node.shutdown().await;
    let stopped = Instant::now();

    let survivor = &members[1].node;
    let version = loop {
        let current = survivor
            .state()
            .read(|s| s.credentials["partner"].current.clone());
        if let Some(v) = current {
            break v;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "the new leader did not finish the rotation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // At once, not after the intent's 30 s deadline, under the same fence, to the same bytes.
    assert!(
        stopped.elapsed() < Duration::from_secs(15),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(version.number, 1);
    assert_eq!(version.fence, intent.fence);
    assert_eq!(version.token.expose(), expected.token.expose());
    for m in &members[1..] {
        m.node.shutdown().await;
    }
}
