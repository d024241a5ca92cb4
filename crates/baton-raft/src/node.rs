//! A baton node: the store, the openraft instance, the leader's clock, and the cluster
//! operations built on them (forwarded writes, linearizable reads, membership, clock checks).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use baton_core::{Command, CommandError, Op, Output, Timestamp};
use openraft::error::{ClientWriteError, RaftError};
use openraft::network::RaftNetworkFactory;
use openraft::{BasicNode, ChangeMembers, Config, Raft, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};

use crate::network::SingleNodeNetwork;
use crate::peer::{BoxFuture, CallError, NodeInfo, NodeStatus, PeerReply, PeerRequest, Peers};
use crate::{SharedState, TypeConfig};

/// How long a write or a linearizable read keeps looking for a leader before it gives up.
const LEADER_PATIENCE: Duration = Duration::from_secs(10);
/// How long a peer call of the cluster's own (status, clock, hello) may take.
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// A leader that has heard from no quorum for this long refuses writes at once.
const QUORUM_SILENCE: Duration = Duration::from_secs(3);
/// How often a node compares its clock with the other voters'.
const CLOCK_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A wall clock in milliseconds since the Unix epoch. The system clock unless a test gives its
/// own.
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<dyn Fn() -> u64 + Send + Sync>>);

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock that reads `f`.
    pub fn custom(f: impl Fn() -> u64 + Send + Sync + 'static) -> Clock {
        Clock(Some(Arc::new(f)))
    }

    pub fn now_ms(&self) -> u64 {
        match &self.0 {
            Some(f) => f(),
            None => Timestamp::from_system_time(SystemTime::now()).as_millis(),
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Clock(custom)"
        } else {
            "Clock(system)"
        })
    }
}

/// How to start a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: u64,
    /// Holds `baton.redb`. Created if missing.
    pub data_dir: PathBuf,
    /// Where peers reach this node (recorded in the membership).
    pub advertise: String,
    /// Where clients reach this node, as shown by `baton cluster status`.
    pub api_addr: String,
    /// The master keys that open the store's data key.
    pub master_keys: baton_storage::MasterKeys,
    /// How far this node's clock may be from the leader's before it stops standing for
    /// election.
    pub max_clock_skew: Duration,
    /// A snapshot is taken after this many log entries; older entries are then purged.
    pub snapshot_logs: u64,
    pub clock: Clock,
}

impl NodeConfig {
    /// A configuration with the defaults for everything but the identity and the store.
    pub fn new(node_id: u64, data_dir: PathBuf, master_keys: baton_storage::MasterKeys) -> Self {
        NodeConfig {
            node_id,
            data_dir,
            advertise: String::new(),
            api_addr: String::new(),
            master_keys,
            max_clock_skew: Duration::from_millis(500),
            snapshot_logs: 5000,
            clock: Clock::system(),
        }
    }
}

/// A write that was committed and applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub output: Output,
    /// The log index of the command: the revision at which its effect is visible.
    pub revision: u64,
}

/// Why a proposal (or another cluster operation) did not produce an output.
#[derive(Clone, Debug, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ProposeError {
    /// The state machine refused the command; nothing changed.
    #[error(transparent)]
    Refused(#[from] CommandError),
    /// This node does not lead the cluster.
    #[error(
        "this node is not the leader ({})",
        match leader {
            Some(id) => format!("node {id} leads"),
            None => "no leader is known yet".to_owned(),
        }
    )]
    NotLeader { leader: Option<u64> },
    /// The node cannot serve writes (stopping, no leader reachable, or its storage failed).
    #[error("the node cannot accept writes: {0}")]
    Unavailable(String),
    /// The request makes no sense in the cluster's current state.
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] baton_storage::OpenError),
    #[error("cannot start replication: {0}")]
    Raft(String),
}

/// This node's clock compared with the other voters'.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockSample {
    /// This node's clock minus the leader's, in milliseconds; none on the leader, or when the
    /// leader did not answer.
    pub offset_ms: Option<i64>,
    /// The round trip of the leader's sample, in milliseconds: the offset is known within half
    /// of it.
    pub rtt_ms: Option<u64>,
    /// Whether this node's clock surely differs by more than `max_clock_skew` from those of a
    /// quorum of the voters.
    pub skewed: bool,
}

/// One member of the cluster as `baton cluster status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberStatus {
    pub id: u64,
    pub peer_addr: String,
    pub voter: bool,
    /// The member's own report; none when it did not answer.
    pub status: Option<NodeStatus>,
    /// Why it did not answer.
    pub error: Option<String>,
    /// How many entries the member's applied revision is behind the leader's log.
    pub lag: Option<u64>,
}

/// The whole cluster, as seen from one node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub members: Vec<MemberStatus>,
}

/// Rotates a credential on this node's engine, returning the API's answer (status, body).
pub type RotateHandler = Arc<dyn Fn(String) -> BoxFuture<(u16, serde_json::Value)> + Send + Sync>;

/// A running node.
pub struct Node {
    id: u64,
    raft: Raft<TypeConfig>,
    shared: Arc<SharedState>,
    keyring: baton_storage::Keyring,
    clock: Clock,
    /// The latest time this node stamped (milliseconds), so that stamps never go backwards.
    last_stamp: AtomicU64,
    peers: Arc<dyn Peers>,
    peer_addr: String,
    api_addr: String,
    max_clock_skew: Duration,
    clock_sample: Mutex<Option<ClockSample>>,
    rotate: OnceLock<RotateHandler>,
    /// Set once this node learns it was taken out of the cluster.
    removed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("revision", &self.shared.revision())
            .finish()
    }
}

impl Node {
    /// Opens the store in `config.data_dir`, starts openraft, and on first start initializes a
    /// one-voter membership. Returns once this node leads.
    pub async fn start(config: NodeConfig) -> Result<Node, StartError> {
        let node = Node::open(config, SingleNodeNetwork, Arc::new(SingleNodeNetwork)).await?;
        let initialized = node
            .raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if !initialized {
            node.raft
                .initialize(node.self_membership())
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?;
            tracing::info!(node = node.id, "initialized a new single-node cluster");
        }
        node.raft
            .wait(Some(Duration::from_secs(30)))
            .state(ServerState::Leader, "single node becomes leader")
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        Ok(node)
    }

    /// Opens the store and starts openraft with `network` for a multi-node cluster. A node with
    /// an empty store waits until [`Node::initialize`] makes it the first member, or until a
    /// leader adds it. Also starts the clock check against the leader.
    pub async fn start_cluster<N>(config: NodeConfig, network: N) -> Result<Arc<Node>, StartError>
    where
        N: RaftNetworkFactory<TypeConfig> + Peers + Clone,
    {
        let peers: Arc<dyn Peers> = Arc::new(network.clone());
        let node = Arc::new(Node::open(config, network, peers).await?);
        tokio::spawn(check_clock(Arc::downgrade(&node)));
        Ok(node)
    }

    async fn open<N>(
        config: NodeConfig,
        network: N,
        peers: Arc<dyn Peers>,
    ) -> Result<Node, StartError>
    where
        N: RaftNetworkFactory<TypeConfig>,
    {
        // Readable by the server's user only, when baton creates it.
        let mut dir = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(dir.recursive(true), 0o700);
        dir.create(&config.data_dir)
            .map_err(|source| StartError::DataDir {
                path: config.data_dir.display().to_string(),
                source,
            })?;
        let store = baton_storage::open(&config.data_dir.join("baton.redb"), &config.master_keys)?;
        let (log_store, state_machine, shared) = (store.log, store.state_machine, store.shared);
        let keyring = store.keyring;

        let raft_config = Config {
            cluster_name: "baton".into(),
            heartbeat_interval: 250,
            election_timeout_min: 1000,
            election_timeout_max: 2000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_logs.max(1)),
            max_in_snapshot_log_to_keep: (config.snapshot_logs / 5).min(1000),
            ..Config::default()
        }
        .validate()
        .map_err(|e| StartError::Raft(e.to_string()))?;

        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;

        Ok(Node {
            id: config.node_id,
            raft,
            shared,
            keyring,
            clock: config.clock,
            last_stamp: AtomicU64::new(0),
            peers,
            peer_addr: config.advertise,
            api_addr: config.api_addr,
            max_clock_skew: config.max_clock_skew,
            clock_sample: Mutex::new(None),
            rotate: OnceLock::new(),
            removed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn self_membership(&self) -> BTreeMap<u64, BasicNode> {
        BTreeMap::from([(
            self.id,
            BasicNode {
                addr: self.peer_addr.clone(),
            },
        )])
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The openraft instance, for the peer transport to hand it RPCs.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// The applied state.
    pub fn state(&self) -> &SharedState {
        &self.shared
    }

    /// The store's keyring: which master key wraps the data key, and its rotation.
    pub fn keyring(&self) -> &baton_storage::Keyring {
        &self.keyring
    }

    /// This node's clock, never earlier than a stamp it gave before.
    pub fn now(&self) -> Timestamp {
        let now = self.clock.now_ms();
        // Written only when the clock moved past the last stamp: readers on other threads then
        // mostly share the value instead of taking turns owning it.
        let last = self.last_stamp.load(Ordering::Acquire);
        if now <= last {
            return Timestamp::from_millis(last);
        }
        let last = self.last_stamp.fetch_max(now, Ordering::AcqRel);
        Timestamp::from_millis(now.max(last))
    }

    /// Whether this node leads the cluster now.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// The leader this node knows of, if any.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// Whether this node belongs to a cluster (it was initialized, or a leader added it).
    pub fn is_initialized(&self) -> bool {
        let metrics = self.raft.metrics();
        let initialized = metrics.borrow().membership_config.nodes().next().is_some();
        initialized
    }

    /// Waits until this node belongs to a cluster.
    pub async fn wait_initialized(&self) {
        let mut metrics = self.raft.metrics();
        // An error means openraft stopped: the node will never be initialized then.
        let _ = metrics
            .wait_for(|m| m.membership_config.nodes().next().is_some())
            .await;
    }

    /// Waits at most `timeout` until some node is known to lead; returns it.
    pub async fn wait_leader(&self, timeout: Duration) -> Option<u64> {
        let mut metrics = self.raft.metrics();
        let found =
            tokio::time::timeout(timeout, metrics.wait_for(|m| m.current_leader.is_some())).await;
        match found {
            Ok(Ok(m)) => m.current_leader,
            _ => None,
        }
    }

    /// How long this node, leading a cluster of several voters, has gone without hearing
    /// from a quorum of them, once that is longer than an election takes; none otherwise.
    pub fn quorum_silent_for(&self) -> Option<Duration> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        if metrics.state != ServerState::Leader
            || metrics.membership_config.membership().voter_ids().count() < 2
        {
            return None;
        }
        let silent = Duration::from_millis(metrics.millis_since_quorum_ack?);
        (silent > QUORUM_SILENCE).then_some(silent)
    }

    /// How far this node's clock may be from the others' (`max_clock_skew`).
    pub fn max_clock_skew(&self) -> Duration {
        self.max_clock_skew
    }

    /// This node's clock compared with the other voters', once measured.
    pub fn clock_sample(&self) -> Option<ClockSample> {
        *self
            .clock_sample
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The peer address of the leader, when another node leads.
    fn remote_leader(&self) -> Option<(u64, String)> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let leader = metrics.current_leader.filter(|l| *l != self.id)?;
        let addr = metrics.membership_config.membership().get_node(&leader)?;
        Some((leader, addr.addr.clone()))
    }

    /// Stamps `op` with this node's clock, replicates it and returns its output once applied.
    /// Refuses with [`ProposeError::NotLeader`] when another node leads. A leader cut off from
    /// its quorum, or restarted as the leader of a term that has since ended (openraft answers
    /// a write only once it is applied or truncated), gives up after the leader patience: the
    /// entry may still be committed (if the cut heals before another leader is elected) or be
    /// discarded.
    pub async fn propose_local(&self, op: Op) -> Result<Committed, ProposeError> {
        if let Some(silent) = self.quorum_silent_for() {
            return Err(ProposeError::Unavailable(format!(
                "this node leads but has heard from no quorum for {} s; the write was not made",
                silent.as_secs()
            )));
        }
        let cmd = Command {
            now: self.now(),
            op,
        };
        let Ok(written) = tokio::time::timeout(LEADER_PATIENCE, self.raft.client_write(cmd)).await
        else {
            return Err(ProposeError::Unavailable(format!(
                "no quorum confirmed the write within {}s; it may or may not be applied later",
                LEADER_PATIENCE.as_secs()
            )));
        };
        match written {
            Ok(resp) => {
                let output = resp.data?;
                Ok(Committed {
                    output,
                    revision: resp.log_id.index,
                })
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(ProposeError::Unavailable(e.to_string())),
        }
    }

    /// Replicates `op` through the leader, wherever it is: here, or forwarded over the peer
    /// network. Returns once the command is applied on this node too, so that a read here
    /// that follows sees it. While no leader is known, waits for one (a few seconds at most).
    pub async fn propose(&self, op: Op) -> Result<Committed, ProposeError> {
        if self.is_removed() {
            return Err(ProposeError::Unavailable(
                "this node was removed from the cluster; send requests to a member".into(),
            ));
        }
        let give_up = tokio::time::Instant::now() + LEADER_PATIENCE;
        loop {
            let attempt = match self.remote_leader() {
                None if self.is_leader() => match self.propose_local(op.clone()).await {
                    Err(ProposeError::NotLeader { .. }) => None,
                    done => return done,
                },
                None => None,
                Some((leader, addr)) => {
                    let remaining = give_up.saturating_duration_since(tokio::time::Instant::now());
                    let call = self.peers.call(
                        &addr,
                        PeerRequest::Propose(Box::new(op.clone())),
                        remaining.max(Duration::from_millis(100)),
                    );
                    match call.await {
                        Ok(PeerReply::Proposed(committed)) => {
                            self.wait_applied(committed.revision, give_up).await;
                            return Ok(committed);
                        }
                        Ok(other) => {
                            return Err(ProposeError::Unavailable(format!(
                                "node {leader} answered a write with {other:?}"
                            )))
                        }
                        Err(CallError::Remote(ProposeError::NotLeader { .. })) => Some(leader),
                        Err(CallError::Unreachable { .. }) => Some(leader),
                        Err(CallError::Remote(e)) => return Err(e),
                        Err(e @ CallError::Failed { .. }) => {
                            return Err(ProposeError::Unavailable(format!(
                                "{e}; the write may or may not have been applied"
                            )))
                        }
                    }
                }
            };
            if tokio::time::Instant::now() >= give_up {
                return Err(match attempt {
                    Some(leader) => ProposeError::Unavailable(format!(
                        "the leader (node {leader}) cannot be reached"
                    )),
                    None => ProposeError::Unavailable("the cluster has no leader".into()),
                });
            }
            self.leader_changed_or(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the known leader changes, or for `at_most`.
    async fn leader_changed_or(&self, at_most: Duration) {
        let mut metrics = self.raft.metrics();
        let before = metrics.borrow_and_update().current_leader;
        let _ =
            tokio::time::timeout(at_most, metrics.wait_for(|m| m.current_leader != before)).await;
    }

    /// Waits until this node has applied `index`, or until `until`.
    async fn wait_applied(&self, index: u64, until: tokio::time::Instant) {
        let mut applied = self.shared.subscribe();
        let _ = tokio::time::timeout_at(until, applied.wait_for(|r| *r >= index)).await;
    }

    /// Confirms with a quorum who leads, then waits until this node has applied everything the
    /// leader had committed: a read of the local state afterwards is linearizable. Returns the
    /// index that was waited for.
    pub async fn read_index(&self) -> Result<u64, ProposeError> {
        if self.is_removed() {
            return Err(ProposeError::Unavailable(
                "this node was removed from the cluster; send requests to a member".into(),
            ));
        }
        let give_up = tokio::time::Instant::now() + LEADER_PATIENCE;
        loop {
            let index = match self.remote_leader() {
                None if self.is_leader() => match self.raft.get_read_log_id().await {
                    Ok((read, _)) => Some(read.map_or(0, |id| id.index)),
                    Err(_) => None,
                },
                None => None,
                Some((_, addr)) => {
                    match self
                        .peers
                        .call(&addr, PeerRequest::ReadIndex, PEER_CALL_TIMEOUT)
                        .await
                    {
                        Ok(PeerReply::ReadIndex(index)) => Some(index),
                        _ => None,
                    }
                }
            };
            if let Some(index) = index {
                let applied = self
                    .raft
                    .wait(Some(
                        give_up.saturating_duration_since(tokio::time::Instant::now()),
                    ))
                    .applied_index_at_least(Some(index), "linearizable read")
                    .await;
                return match applied {
                    Ok(_) => Ok(index),
                    Err(e) => Err(ProposeError::Unavailable(format!(
                        "this node did not catch up with the leader: {e}"
                    ))),
                };
            }
            if tokio::time::Instant::now() >= give_up {
                return Err(ProposeError::Unavailable(
                    "no leader confirmed its leadership".into(),
                ));
            }
            self.leader_changed_or(Duration::from_millis(100)).await;
        }
    }

    /// Makes this node the first member of a new cluster and waits until it leads.
    pub async fn initialize(&self) -> Result<NodeInfo, ProposeError> {
        if self.is_initialized() {
            return Err(ProposeError::Invalid(format!(
                "node {} already belongs to a cluster",
                self.id
            )));
        }
        self.raft
            .initialize(self.self_membership())
            .await
            .map_err(|e| ProposeError::Unavailable(e.to_string()))?;
        self.raft
            .wait(Some(Duration::from_secs(30)))
            .state(ServerState::Leader, "first member leads")
            .await
            .map_err(|e| ProposeError::Unavailable(e.to_string()))?;
        tracing::info!(node = self.id, "initialized a new cluster");
        Ok(self.info())
    }

    fn info(&self) -> NodeInfo {
        NodeInfo {
            id: self.id,
            peer_addr: self.peer_addr.clone(),
            api_addr: self.api_addr.clone(),
            initialized: self.is_initialized(),
        }
    }

    /// Asks the leader to run `request`, or runs it here when this node leads.
    async fn on_leader(
        &self,
        request: PeerRequest,
        timeout: Duration,
    ) -> Result<PeerReply, ProposeError> {
        if let Some((_, addr)) = self.remote_leader() {
            return self
                .peers
                .call(&addr, request, timeout)
                .await
                .map_err(|e| match e {
                    CallError::Remote(e) => e,
                    other => ProposeError::Unavailable(other.to_string()),
                });
        }
        if !self.is_leader() {
            return Err(ProposeError::Unavailable(
                "the cluster has no leader".into(),
            ));
        }
        self.handle_peer(request).await
    }

    /// Adds the node whose peer listener is at `addr`: as a learner until it has caught up,
    /// then as a voter. Runs on the leader, wherever it is asked.
    pub async fn join(&self, addr: &str) -> Result<NodeInfo, ProposeError> {
        let request = PeerRequest::Join {
            addr: addr.to_owned(),
        };
        match self.on_leader(request, Duration::from_secs(600)).await? {
            PeerReply::Joined(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    async fn join_here(&self, addr: String) -> Result<NodeInfo, ProposeError> {
        let hello = self
            .peers
            .call(&addr, PeerRequest::Hello, PEER_CALL_TIMEOUT)
            .await
            .map_err(|e| {
                ProposeError::Invalid(format!(
                    "cannot reach the node to add ({e}); check its peer address and that it runs \
                     with the same cluster secret"
                ))
            })?;
        let PeerReply::Hello(info) = hello else {
            return Err(unexpected(hello));
        };
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let membership = membership.membership();
        if let Some(known) = membership.get_node(&info.id) {
            if known.addr != addr {
                return Err(ProposeError::Invalid(format!(
                    "node {} is already a member, at {}; remove it first or give the new node \
                     another --node-id",
                    info.id, known.addr
                )));
            }
            if membership.voter_ids().any(|v| v == info.id) {
                return Err(ProposeError::Invalid(format!(
                    "node {} ({addr}) is already a voter of this cluster",
                    info.id
                )));
            }
        } else if info.initialized {
            return Err(ProposeError::Invalid(format!(
                "the node at {addr} (node {}) already belongs to another cluster; start it with an \
                 empty data directory",
                info.id
            )));
        }
        tracing::info!(node = info.id, %addr, "adding a node as a learner");
        self.raft
            .add_learner(info.id, BasicNode { addr: addr.clone() }, true)
            .await
            .map_err(|e| ProposeError::Unavailable(format!("cannot add node {}: {e}", info.id)))?;
        tracing::info!(node = info.id, "the new node caught up; making it a voter");
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([info.id])), false)
            .await
            .map_err(|e| {
                ProposeError::Unavailable(format!("cannot make node {} a voter: {e}", info.id))
            })?;
        // Answer once the new node has applied the state (tokens included), so that it
        // serves clients as soon as the join is reported.
        let target = self
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |id| id.index);
        let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let reply = self
                .peers
                .call(&addr, PeerRequest::Status, PEER_CALL_TIMEOUT)
                .await;
            if matches!(&reply, Ok(PeerReply::Status(status)) if status.applied >= target) {
                break;
            }
            if tokio::time::Instant::now() >= give_up {
                tracing::warn!(
                    node = info.id,
                    "the new node is a voter but still catching up"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(NodeInfo {
            initialized: true,
            ..info
        })
    }

    /// The members recorded in this node's store, by id with their peer addresses; empty for a
    /// node that belongs to no cluster.
    pub async fn recorded_members(&self) -> BTreeMap<u64, String> {
        if !self.raft.is_initialized().await.unwrap_or(false) {
            return BTreeMap::new();
        }
        let mut metrics = self.raft.metrics();
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            metrics.wait_for(|m| m.membership_config.membership().nodes().next().is_some()),
        )
        .await;
        let membership = metrics.borrow().membership_config.clone();
        membership
            .membership()
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect()
    }

    /// Takes node `id` out of the cluster. Runs on the leader, wherever it is asked.
    pub async fn remove(&self, id: u64) -> Result<(), ProposeError> {
        match self
            .on_leader(PeerRequest::Remove { id }, Duration::from_secs(60))
            .await?
        {
            PeerReply::Removed => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn remove_here(&self, id: u64) -> Result<(), ProposeError> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let membership = membership.membership();
        let Some(removed_addr) = membership.get_node(&id).map(|n| n.addr.clone()) else {
            return Err(ProposeError::Invalid(format!("node {id} is not a member")));
        };
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let change = if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(ProposeError::Invalid(format!(
                    "node {id} is the only voter; a cluster cannot remove its last voter"
                )));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| ProposeError::Unavailable(format!("cannot remove node {id}: {e}")))?;
        tracing::info!(node = id, "removed a node from the cluster");
        // Tell the node, which would otherwise never learn it (the cluster no longer
        // replicates to it); one that is down hears nothing and logs so when it restarts.
        if id == self.id {
            self.mark_removed(self.id);
        } else {
            let _ = self
                .peers
                .call(
                    &removed_addr,
                    PeerRequest::Removed { by: self.id },
                    PEER_CALL_TIMEOUT,
                )
                .await;
        }
        Ok(())
    }

    /// Stops this node from standing for election and from taking writes, for good: it was
    /// taken out of the cluster.
    fn mark_removed(&self, by: u64) {
        if !self.removed.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                by,
                "this node was removed from the cluster: it takes no writes and serves only \
                 what it had applied; stop it, and delete its data directory before it joins \
                 again"
            );
        }
        self.raft.runtime_config().elect(false);
    }

    /// Whether this node was told it is no longer a member.
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::SeqCst)
    }

    /// This node's view of itself.
    pub fn status(&self) -> NodeStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let sample = self.clock_sample();
        NodeStatus {
            id: self.id,
            api_addr: self.api_addr.clone(),
            peer_addr: self.peer_addr.clone(),
            state: match metrics.state {
                _ if self.is_removed() => "removed",
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            }
            .to_owned(),
            leader: metrics.current_leader,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            applied: metrics.last_applied.map_or(0, |id| id.index),
            clock_offset_ms: sample.and_then(|s| s.offset_ms),
            clock_skewed: sample.is_some_and(|s| s.skewed),
        }
    }

    /// Every member's report, asked of each over the peer network.
    pub async fn cluster_status(&self) -> ClusterStatus {
        let own = self.status();
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let membership = membership.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let nodes: Vec<(u64, String)> = membership
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        let mut members = Vec::with_capacity(nodes.len());
        for (id, addr) in nodes {
            let (status, error) = if id == self.id {
                (Some(own.clone()), None)
            } else {
                match self
                    .peers
                    .call(&addr, PeerRequest::Status, PEER_CALL_TIMEOUT)
                    .await
                {
                    Ok(PeerReply::Status(s)) => (Some(s), None),
                    Ok(other) => (None, Some(unexpected(other).to_string())),
                    Err(e) => (None, Some(e.to_string())),
                }
            };
            members.push(MemberStatus {
                id,
                peer_addr: addr,
                voter: voters.contains(&id),
                status,
                error,
                lag: None,
            });
        }
        let leader = own.leader;
        let head = members
            .iter()
            .find(|m| Some(m.id) == leader)
            .and_then(|m| m.status.as_ref())
            .map(|s| s.last_log_index);
        for m in &mut members {
            m.lag = head
                .zip(m.status.as_ref())
                .map(|(h, s)| h.saturating_sub(s.applied));
        }
        ClusterStatus {
            node: self.id,
            leader,
            term: own.term,
            members,
        }
    }

    /// Sets what a rotation forwarded from another node runs; the API sets it once.
    pub fn set_rotate_handler(&self, handler: RotateHandler) {
        let _ = self.rotate.set(handler);
    }

    /// Runs a manual rotation on the leader's engine and returns its API answer.
    pub async fn rotate_on_leader(
        &self,
        name: &str,
    ) -> Result<(u16, serde_json::Value), ProposeError> {
        let request = PeerRequest::Rotate {
            name: name.to_owned(),
        };
        match self.on_leader(request, Duration::from_secs(120)).await? {
            PeerReply::Api { status, body } => Ok((status, body)),
            other => Err(unexpected(other)),
        }
    }

    /// Answers a request from another node.
    pub async fn handle_peer(&self, request: PeerRequest) -> Result<PeerReply, ProposeError> {
        match request {
            PeerRequest::Hello => Ok(PeerReply::Hello(self.info())),
            PeerRequest::Init => self.initialize().await.map(PeerReply::Hello),
            PeerRequest::Propose(op) => self.propose_local(*op).await.map(PeerReply::Proposed),
            PeerRequest::ReadIndex => match self.raft.get_read_log_id().await {
                Ok((read, _)) => Ok(PeerReply::ReadIndex(read.map_or(0, |id| id.index))),
                Err(_) => Err(ProposeError::NotLeader {
                    leader: self.leader(),
                }),
            },
            PeerRequest::Clock => Ok(PeerReply::Clock {
                now_ms: self.clock.now_ms(),
            }),
            PeerRequest::Status => Ok(PeerReply::Status(self.status())),
            PeerRequest::Join { addr } => {
                self.require_leader()?;
                self.join_here(addr).await.map(PeerReply::Joined)
            }
            PeerRequest::Remove { id } => {
                self.require_leader()?;
                self.remove_here(id).await.map(|()| PeerReply::Removed)
            }
            PeerRequest::Removed { by } => {
                self.mark_removed(by);
                Ok(PeerReply::Removed)
            }
            PeerRequest::Rotate { name } => {
                self.require_leader()?;
                let handler = self.rotate.get().cloned().ok_or_else(|| {
                    ProposeError::Unavailable("this node's rotation engine is not running".into())
                })?;
                let (status, body) = handler(name).await;
                Ok(PeerReply::Api { status, body })
            }
        }
    }

    fn require_leader(&self) -> Result<(), ProposeError> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(ProposeError::NotLeader {
                leader: self.leader(),
            })
        }
    }

    /// Compares this node's clock with every other voter's once, and stops or resumes standing
    /// for election accordingly.
    ///
    /// The verdict is taken against a quorum of the voters rather than against the leader
    /// alone, since the leader's clock may be the wrong one: this node is skewed when its clock
    /// surely differs by more than `max_clock_skew` from a quorum's, and agrees when a quorum
    /// (counting itself) agrees with it. With too few answers to tell (peers down), the last
    /// verdict stands: a node found skewed before its leader failed does not stand after.
    async fn sample_clock(&self) {
        let (others, voters, leader) = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            let membership = metrics.membership_config.membership();
            let voters: Vec<u64> = membership.voter_ids().collect();
            let others: Vec<(u64, String)> = voters
                .iter()
                .filter(|id| **id != self.id)
                .filter_map(|id| Some((*id, membership.get_node(id)?.addr.clone())))
                .collect();
            (others, voters.len(), metrics.current_leader)
        };
        if others.is_empty() {
            self.record_clock(None);
            return;
        }
        let mut calls = tokio::task::JoinSet::new();
        for (id, addr) in others {
            let (peers, clock) = (self.peers.clone(), self.clock.clone());
            calls.spawn(async move {
                let sent = clock.now_ms();
                let reply = peers
                    .call(&addr, PeerRequest::Clock, PEER_CALL_TIMEOUT)
                    .await;
                let received = clock.now_ms();
                match reply {
                    Ok(PeerReply::Clock { now_ms }) => Some((id, sent, received, now_ms)),
                    _ => None,
                }
            });
        }
        let max_skew = self.max_clock_skew.as_millis() as u64;
        let (mut agree, mut disagree) = (1, 0);
        let mut to_leader = None;
        while let Some(answer) = calls.join_next().await {
            let Ok(Some((id, sent, received, peer_now))) = answer else {
                continue;
            };
            let rtt = received.saturating_sub(sent);
            let offset = (sent + rtt / 2) as i64 - peer_now as i64;
            if offset.unsigned_abs().saturating_sub(rtt / 2) > max_skew {
                disagree += 1;
            } else {
                agree += 1;
            }
            if Some(id) == leader {
                to_leader = Some((offset, rtt));
            }
        }
        let quorum = voters / 2 + 1;
        let before = self.clock_sample();
        let skewed = if disagree >= quorum {
            true
        } else if agree >= quorum {
            false
        } else {
            before.is_some_and(|s| s.skewed)
        };
        self.record_clock(Some(ClockSample {
            offset_ms: to_leader.map(|(offset, _)| offset),
            rtt_ms: to_leader.map(|(_, rtt)| rtt),
            skewed,
        }));
    }

    fn record_clock(&self, sample: Option<ClockSample>) {
        let skewed = sample.is_some_and(|s| s.skewed);
        let before = {
            let mut slot = self
                .clock_sample
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            std::mem::replace(&mut *slot, sample)
        };
        let was_skewed = before.is_some_and(|s| s.skewed);
        if skewed && !was_skewed {
            tracing::warn!(
                offset_ms = sample.and_then(|s| s.offset_ms),
                max_clock_skew_ms = self.max_clock_skew.as_millis() as u64,
                "this node's clock differs from most of the cluster's by more than \
                 max_clock_skew; it will not stand for election until the clocks agree"
            );
        } else if was_skewed && !skewed {
            tracing::info!(
                "this node's clock agrees with the cluster's again; it may stand for election"
            );
        }
        self.raft
            .runtime_config()
            .elect(!skewed && !self.is_removed());
    }

    /// Stops replication. Applied state stays readable.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "replication did not stop cleanly");
        }
    }
}

fn unexpected(reply: PeerReply) -> ProposeError {
    ProposeError::Unavailable(format!("unexpected answer from a peer: {reply:?}"))
}

/// Samples the leader's clock every second, as long as the node exists.
async fn check_clock(node: Weak<Node>) {
    let mut every = tokio::time::interval(CLOCK_CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(node) = node.upgrade() else { return };
        if node.raft.metrics().borrow().state == ServerState::Shutdown {
            return;
        }
        node.sample_clock().await;
    }
}
