//! A deterministic simulation of a three-node baton cluster under faults, checking the design's
//! promises after every step.
//!
//! Each seed runs a cluster of real [`Node`]s (openraft over redb files in a temporary
//! directory) on one tokio thread with paused time, wired through an in-memory network that
//! drops, delays and partitions messages. Clients write keys, take leases and ask for manual
//! rotations on random nodes; a rotator on every node rotates two credentials through a
//! simulated issuer that is not idempotent. A nemesis partitions the network, changes its
//! delays, crashes nodes and restarts them from their data directory, and restarts the whole
//! cluster. After every nemesis step, and every 100 ms in between, every live node's applied
//! state is observed and the history so far is checked:
//!
//! - under `overlap = none`, no two versions of a credential are valid at the same instant;
//! - at most one issuer call per credential is in flight, and a rotation number is issued
//!   successfully twice only after the first result was lost and its intent waited out;
//! - fences are unique, increase with the revision, and a stale fence is never accepted;
//! - a lease is never granted while another grant of it is live, by the leader's stamps;
//! - a node restarted from its data directory has not forgotten what it had applied.
//!
//! At the end the network heals, every node comes back, and once all have applied the same
//! revision their states must be equal and hold every acknowledged write.
//!
//! `BATON_SIM_SEEDS=n` runs seeds 0..n (default 200), `BATON_SIM_SEED=s` runs seed `s` only.
//! The schedule of faults and client operations is a function of the seed; openraft draws its
//! election timeouts from the thread's RNG, so two runs of a seed may interleave differently.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use baton_core::{
    CommandError, ExecSpec, Intent, IssuerSpec, LeaseRef, Op, Output, Overlap, Policy,
    PolicyRequest, RotationReason, Secret, Secs, State, Timestamp,
};
use baton_raft::peer::{BoxFuture, CallError, PeerReply, PeerRequest, Peers};
use baton_raft::{Clock, Committed, MasterKey, MasterKeys, Node, NodeConfig, ProposeError};
use baton_raft::{StartError, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use tokio::task::AbortHandle;
use tokio::time::{sleep, Instant};

const NODES: [u64; 3] = [1, 2, 3];
/// The simulated wall clock starts here (November 2023), plus each node's offset.
const EPOCH_MS: u64 = 1_700_000_000_000;
/// How long the nemesis injects faults.
const FAULT_PHASE: Duration = Duration::from_secs(12);
/// How long the healed cluster keeps running before the final checks.
const CALM_PHASE: Duration = Duration::from_secs(4);
/// A seed that has not finished after this much simulated time has hung.
const SEED_LIMIT: Duration = Duration::from_secs(600);

/// The simulated issuer's timeout, as in its `ExecSpec`.
const ISSUER_TIMEOUT: Duration = Duration::from_secs(1);
/// As the engine's `EngineConfig::intent_timeout`, shortened.
const INTENT_TIMEOUT: Duration = Duration::from_secs(4);
/// As the engine's `EngineConfig::min_interval`.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// As the engine's `EngineConfig::backoff_base`.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// As the engine's scheduler `RETRY_FLOOR_MS`.
const RETRY_FLOOR: Duration = Duration::from_millis(200);

const CREDENTIALS: [(&str, Overlap); 2] = [("none", Overlap::None), ("allowed", Overlap::Allowed)];
const LEASES: [&str; 2] = ["lock-a", "lock-b"];
const KV_KEYS: [&str; 4] = ["k0", "k1", "k2", "k3"];
const CLIENTS: u64 = 4;

#[test]
fn cluster_keeps_its_promises_under_faults() {
    let seeds: Vec<u64> = match std::env::var("BATON_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("BATON_SIM_SEED is a number")],
        Err(_) => {
            let n = std::env::var("BATON_SIM_SEEDS")
                .map_or(200, |s| s.parse().expect("BATON_SIM_SEEDS is a number"));
            (0..n).collect()
        }
    };

    // Seeds are independent: two threads, each running one seed at a time on its own runtime.
    let next = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&seed) = seeds.get(i) else { return };
                if let Err(report) = run_seed(seed) {
                    eprintln!("{report}");
                    lock(&failures).push(seed);
                }
            });
        }
    });

    let failures = failures
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    assert!(
        failures.is_empty(),
        "{} of {} seeds broke a promise: {failures:?}; rerun one with \
         BATON_SIM_SEED=<seed> cargo nextest run -p baton-raft --test simulation",
        failures.len(),
        seeds.len()
    );
}

fn run_seed(seed: u64) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let world = World::new(seed);
        let outcome = tokio::time::timeout(SEED_LIMIT, simulate(world.clone())).await;
        world.stop_all().await;
        let history = lock(&world.history);
        let mut problems = history.violations.clone();
        if outcome.is_err() {
            problems.push(format!("the seed did not finish within {SEED_LIMIT:?}"));
        }
        if std::env::var_os("BATON_SIM_TRACE").is_some() {
            eprintln!("seed {seed}:\n  {}", history.trace.join("\n  "));
        }
        if problems.is_empty() {
            return Ok(());
        }
        let trace: Vec<&String> = history.trace.iter().rev().take(80).collect();
        let trace: Vec<&str> = trace.into_iter().rev().map(String::as_str).collect();
        Err(format!(
            "seed {seed} failed:\n  {}\nlast events:\n  {}\nrerun with: BATON_SIM_SEED={seed} \
             cargo nextest run -p baton-raft --test simulation",
            problems.join("\n  "),
            trace.join("\n  ")
        ))
    })
}

/// One run: form the cluster, inject faults under load, heal, converge, check.
async fn simulate(world: Arc<World>) {
    for id in NODES {
        world.start_node(id).await;
    }
    let first = world.node(1).expect("node 1 runs");
    first.initialize().await.expect("node 1 initializes");
    for id in [2, 3] {
        first.join(&format!("n{id}")).await.expect("a node joins");
    }
    for (name, overlap) in CREDENTIALS {
        let op = put_credential(name, overlap);
        let out = world.submit(1, op.clone()).await;
        assert!(matches!(out, Submitted::Acked(_)), "{name}: {out:?}");
        world.record(&op, &out);
    }
    drop(first);
    world.event("cluster formed".into());

    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| tokio::spawn(client(world.clone(), i)))
        .collect();
    let observer = tokio::spawn(observe_every(world.clone(), Duration::from_millis(100)));

    nemesis(&world).await;
    world.heal().await;
    sleep(CALM_PHASE).await;

    world.stopping.store(true, Ordering::SeqCst);
    for c in clients {
        // A write returns within the node's leader patience, even when it fails.
        if tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .is_err()
        {
            let stuck = lock(&world.history).in_flight.clone();
            world.violation(format!(
                "a client's write never returned: {stuck:?}; nodes: {}",
                world.describe()
            ));
        }
    }
    // Rotations under way finish: a call, a commit, some retries.
    sleep(ISSUER_TIMEOUT * 2 + Duration::from_secs(3)).await;
    observer.abort();
    world.converge().await;
}

/// Injects a fault, checks, and waits, until the fault phase is over.
async fn nemesis(world: &Arc<World>) {
    let end = Instant::now() + FAULT_PHASE;
    while Instant::now() < end && !world.failed() {
        let choice = world.rng_below(100);
        match choice {
            0..=19 => {
                let id = world.pick_node();
                world.isolate(id, world.rng_below(4) == 0);
            }
            20..=29 => {
                // The leader, cut off from the others.
                if let Some(leader) = world.leader() {
                    world.isolate(leader, false);
                }
            }
            30..=44 => world.heal_links(),
            45..=59 => {
                let down = world.down_nodes();
                if down.is_empty() {
                    world.crash(world.pick_node()).await;
                } else {
                    world.restart(down[0]).await;
                }
            }
            60..=64 => {
                // The whole cluster goes down and comes back.
                for id in NODES {
                    world.crash(id).await;
                }
                sleep(Duration::from_millis(world.rng_below(2000))).await;
                for id in NODES {
                    world.restart(id).await;
                }
            }
            65..=79 => {
                let delays = [(0, 2), (1, 20), (10, 100), (50, 400)];
                let (lo, hi) = delays[world.rng_below(delays.len() as u64) as usize];
                world.set_delay(lo, hi);
            }
            _ => {}
        }
        world.check();
        sleep(Duration::from_millis(300 + world.rng_below(2200))).await;
    }
}

/// Observes every live node and checks the history, every `period`.
async fn observe_every(world: Arc<World>, period: Duration) {
    loop {
        sleep(period).await;
        world.check();
    }
}

// ---------------------------------------------------------------------------------------------
// The world: nodes, the network between them, and the history of what happened.
// ---------------------------------------------------------------------------------------------

struct World {
    seed: u64,
    dir: tempfile::TempDir,
    keys: MasterKeys,
    start: Instant,
    /// Each node's clock minus the simulated true time, in milliseconds.
    offsets: BTreeMap<u64, i64>,
    net: Mutex<Net>,
    history: Mutex<History>,
    /// The nemesis's choices.
    rng: Mutex<Rng>,
    /// Clients and rotators stop starting work once set.
    stopping: AtomicBool,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").field("seed", &self.seed).finish()
    }
}

struct Net {
    slots: BTreeMap<u64, Slot>,
    /// Directed links that drop every message.
    cut: BTreeSet<(u64, u64)>,
    /// One-way delay of a message, in milliseconds.
    delay: (u64, u64),
    rng: Rng,
}

#[derive(Default)]
struct Slot {
    node: Option<Arc<Node>>,
    rotator: Option<Arc<Rotator>>,
    /// Everything running on the node besides openraft: a crash ends it all.
    tasks: Vec<AbortHandle>,
    /// The revision the node had applied when it last went down.
    applied_at_crash: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl World {
    fn new(seed: u64) -> Arc<World> {
        let mut rng = Rng::new(seed);
        // The store syncs every commit: a memory file system keeps a seed fast where there is one.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new().prefix("baton-sim").tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("a temporary directory");
        let offsets = NODES
            .iter()
            .map(|id| (*id, rng.below(301) as i64 - 150))
            .collect();
        let net = Net {
            slots: NODES.iter().map(|id| (*id, Slot::default())).collect(),
            cut: BTreeSet::new(),
            delay: (1, 20),
            rng: Rng::new(seed ^ 0x6e65_7477_6f72_6b00),
        };
        Arc::new(World {
            seed,
            dir,
            keys: MasterKeys {
                current: MasterKey::from_text(&"7".repeat(64)).expect("a master key"),
                previous: None,
            },
            start: Instant::now(),
            offsets,
            net: Mutex::new(net),
            history: Mutex::new(History::default()),
            rng: Mutex::new(rng),
            stopping: AtomicBool::new(false),
        })
    }

    /// Simulated true time, in milliseconds since the epoch: the issuer's clock.
    fn true_now(&self) -> Timestamp {
        Timestamp::from_millis(EPOCH_MS + self.start.elapsed().as_millis() as u64)
    }

    fn rng_below(&self, n: u64) -> u64 {
        lock(&self.rng).below(n)
    }

    fn pick_node(&self) -> u64 {
        NODES[self.rng_below(NODES.len() as u64) as usize]
    }

    fn failed(&self) -> bool {
        !lock(&self.history).violations.is_empty()
    }

    fn event(&self, text: String) {
        let at = self.start.elapsed().as_secs_f64();
        lock(&self.history).trace.push(format!("{at:8.3}s {text}"));
    }

    fn violation(&self, text: String) {
        let at = self.start.elapsed().as_secs_f64();
        let mut history = lock(&self.history);
        let known = history.violations.iter().any(|v| v.ends_with(&text));
        if !known && history.violations.len() < 20 {
            history.violations.push(format!("{at:8.3}s {text}"));
        }
    }

    fn config(&self, id: u64) -> NodeConfig {
        let mut config = NodeConfig::new(
            id,
            self.dir.path().join(format!("n{id}")),
            self.keys.clone(),
        );
        config.advertise = format!("n{id}");
        config.api_addr = format!("n{id}");
        // Small, so that snapshots are built, purged logs are skipped and snapshots installed.
        config.snapshot_logs = 40;
        let (start, offset) = (self.start, self.offsets[&id]);
        config.clock = Clock::custom(move || {
            let true_ms = EPOCH_MS + start.elapsed().as_millis() as u64;
            true_ms.saturating_add_signed(offset)
        });
        config
    }

    fn node(&self, id: u64) -> Option<Arc<Node>> {
        lock(&self.net).slots[&id].node.clone()
    }

    fn rotator(&self, id: u64) -> Option<Arc<Rotator>> {
        lock(&self.net).slots[&id].rotator.clone()
    }

    fn live_nodes(&self) -> Vec<Arc<Node>> {
        let net = lock(&self.net);
        net.slots.values().filter_map(|s| s.node.clone()).collect()
    }

    fn down_nodes(&self) -> Vec<u64> {
        let net = lock(&self.net);
        net.slots
            .iter()
            .filter(|(_, s)| s.node.is_none())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Each live node's view of the cluster, for a report.
    fn describe(&self) -> String {
        let views: Vec<String> = self
            .live_nodes()
            .iter()
            .map(|n| {
                let m = n.raft().metrics().borrow().clone();
                format!(
                    "n{}: {:?} term {} leader {:?} log {:?} applied {:?} voters {:?}",
                    n.id(),
                    m.state,
                    m.current_term,
                    m.current_leader,
                    m.last_log_index,
                    m.last_applied.map(|l| l.index),
                    m.membership_config
                        .membership()
                        .voter_ids()
                        .collect::<Vec<_>>()
                )
            })
            .collect();
        views.join("; ")
    }

    fn leader(&self) -> Option<u64> {
        self.live_nodes()
            .iter()
            .find(|n| n.is_leader())
            .map(|n| n.id())
    }

    /// Runs `fut` as a task of node `id`, ended by the node's crash; `None` if the node is down.
    fn spawn_on<F>(&self, id: u64, fut: F) -> Option<tokio::task::JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let mut net = lock(&self.net);
        let slot = net.slots.get_mut(&id)?;
        slot.node.as_ref()?;
        slot.tasks.retain(|t| !t.is_finished());
        let handle = tokio::spawn(fut);
        slot.tasks.push(handle.abort_handle());
        Some(handle)
    }

    // --- network ------------------------------------------------------------------------------

    fn link_up(&self, from: u64, to: u64) -> bool {
        let net = lock(&self.net);
        let up = |id: u64| net.slots.get(&id).is_some_and(|s| s.node.is_some());
        !net.cut.contains(&(from, to)) && up(from) && up(to)
    }

    fn delay(&self) -> Duration {
        let mut net = lock(&self.net);
        let (lo, hi) = net.delay;
        Duration::from_millis(lo + net.rng.below(hi - lo + 1))
    }

    fn set_delay(&self, lo: u64, hi: u64) {
        lock(&self.net).delay = (lo, hi);
        self.event(format!("nemesis: delays {lo}..{hi} ms"));
    }

    /// Cuts `id` off from every other node (only its outgoing messages when `one_way`),
    /// replacing any earlier partition.
    fn isolate(&self, id: u64, one_way: bool) {
        let mut net = lock(&self.net);
        net.cut.clear();
        for other in NODES.into_iter().filter(|o| *o != id) {
            net.cut.insert((id, other));
            if !one_way {
                net.cut.insert((other, id));
            }
        }
        drop(net);
        let how = if one_way { "outgoing" } else { "both ways" };
        self.event(format!("nemesis: isolate n{id} ({how})"));
    }

    fn heal_links(&self) {
        lock(&self.net).cut.clear();
        self.event("nemesis: heal the network".into());
    }

    /// Carries a request from `from` to `to` and its answer back, as `handle` computes it on the
    /// receiving node; fails like a network would, within `ttl`.
    async fn deliver<T, F, Fut>(
        self: &Arc<Self>,
        from: u64,
        to: u64,
        ttl: Duration,
        handle: F,
    ) -> Result<T, Lost>
    where
        F: FnOnce(Arc<Node>) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let trip = async {
            if !self.link_up(from, to) {
                return Err(Lost::NotDelivered);
            }
            sleep(self.delay()).await;
            let node = self.node(to).filter(|_| self.link_up(from, to));
            let Some(node) = node else {
                return Err(Lost::NotDelivered);
            };
            let task = self.spawn_on(to, handle(node)).ok_or(Lost::NotDelivered)?;
            let reply = task.await.map_err(|_| Lost::Answer)?;
            sleep(self.delay()).await;
            if !self.link_up(to, from) {
                return Err(Lost::Answer);
            }
            Ok(reply)
        };
        tokio::time::timeout(ttl, trip)
            .await
            .unwrap_or(Err(Lost::Answer))
    }

    // --- nodes --------------------------------------------------------------------------------

    async fn start_node(self: &Arc<Self>, id: u64) {
        let mut tries = 0;
        let node = loop {
            let network = SimNetwork {
                world: self.clone(),
                from: id,
            };
            match Node::start_cluster(self.config(id), network).await {
                Ok(node) => break node,
                // The previous incarnation's database may take a moment to close.
                Err(StartError::Store(e)) if tries < 500 => {
                    tries += 1;
                    if tries == 500 {
                        panic!("node {id} cannot reopen its store: {e}");
                    }
                    sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("node {id} does not start: {e}"),
            }
        };
        let revision = node.state().revision();
        let rotator = Arc::new(Rotator {
            world: Arc::downgrade(self),
            node: node.clone(),
            running: Mutex::new(BTreeSet::new()),
            last_call: Mutex::new(BTreeMap::new()),
            last_done: Mutex::new(BTreeMap::new()),
        });
        let before = {
            let mut net = lock(&self.net);
            let slot = net.slots.get_mut(&id).expect("a slot");
            slot.node = Some(node);
            slot.rotator = Some(rotator.clone());
            slot.applied_at_crash
        };
        if revision < before {
            self.violation(format!(
                "n{id} restarted at revision {revision}, but had applied {before} before it \
                 went down"
            ));
        }
        self.spawn_on(id, rotator.run());
        self.event(format!("n{id} started at revision {revision}"));
    }

    /// Stops node `id` as a crash would: its tasks end, then openraft, then the store closes.
    async fn crash(self: &Arc<Self>, id: u64) {
        let (node, tasks) = {
            let mut net = lock(&self.net);
            let slot = net.slots.get_mut(&id).expect("a slot");
            slot.rotator = None;
            (slot.node.take(), std::mem::take(&mut slot.tasks))
        };
        let Some(node) = node else { return };
        for task in tasks {
            task.abort();
        }
        node.shutdown().await;
        let revision = node.state().revision();
        for _ in 0..1000 {
            if Arc::strong_count(&node) == 1 {
                break;
            }
            sleep(Duration::from_millis(1)).await;
        }
        drop(node);
        if let Some(slot) = lock(&self.net).slots.get_mut(&id) {
            slot.applied_at_crash = revision;
        }
        self.event(format!("nemesis: crash n{id} at revision {revision}"));
    }

    async fn restart(self: &Arc<Self>, id: u64) {
        if self.node(id).is_none() {
            self.start_node(id).await;
        }
    }

    /// Heals the network, makes delays short, and brings every node back.
    async fn heal(self: &Arc<Self>) {
        self.heal_links();
        self.set_delay(1, 20);
        for id in self.down_nodes() {
            self.restart(id).await;
        }
    }

    async fn stop_all(self: &Arc<Self>) {
        self.stopping.store(true, Ordering::SeqCst);
        for id in NODES {
            self.crash(id).await;
        }
    }

    /// Proposes `op` through node `id`, as a client of that node would.
    async fn submit(self: &Arc<Self>, id: u64, op: Op) -> Submitted {
        let Some(node) = self.node(id) else {
            return Submitted::NotSent;
        };
        let Some(task) = self.spawn_on(id, async move { node.propose(op).await }) else {
            return Submitted::NotSent;
        };
        match task.await {
            Ok(Ok(committed)) => Submitted::Acked(committed),
            Ok(Err(ProposeError::Refused(e))) => Submitted::Refused(e),
            Ok(Err(e)) => Submitted::Unknown(e.to_string()),
            Err(_) => Submitted::Unknown("the node crashed".into()),
        }
    }

    /// Waits until every node has applied the same revision, then runs the final checks.
    async fn converge(self: &Arc<Self>) {
        let give_up = Instant::now() + Duration::from_secs(120);
        loop {
            self.check();
            let nodes = self.live_nodes();
            let revisions: BTreeSet<u64> = nodes.iter().map(|n| n.state().revision()).collect();
            if nodes.len() == NODES.len() && revisions.len() == 1 {
                let states: Vec<(u64, u64, State)> = nodes
                    .iter()
                    .map(|n| (n.id(), n.state().revision(), n.state().read(State::clone)))
                    .collect();
                if states.iter().all(|(_, r, _)| revisions.contains(r)) {
                    self.final_checks(&states);
                    return;
                }
            }
            if Instant::now() >= give_up {
                self.violation(format!(
                    "the healed cluster did not converge: applied revisions {revisions:?}"
                ));
                return;
            }
            sleep(Duration::from_millis(250)).await;
        }
    }
}

#[derive(Debug)]
enum Lost {
    /// The request never reached the node.
    NotDelivered,
    /// It may have been acted on; no answer came back.
    Answer,
}

#[derive(Debug)]
enum Submitted {
    NotSent,
    Acked(Committed),
    Refused(CommandError),
    /// The write may or may not have been applied.
    Unknown(String),
}

// ---------------------------------------------------------------------------------------------
// The in-memory transport: openraft's RPCs and baton's peer requests.
// ---------------------------------------------------------------------------------------------

/// The network as node `from` sees it.
#[derive(Clone, Debug)]
struct SimNetwork {
    world: Arc<World>,
    from: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SimError(&'static str);

fn node_id(addr: &str) -> Option<u64> {
    addr.strip_prefix('n')?.parse().ok()
}

impl Peers for SimNetwork {
    fn call(
        &self,
        addr: &str,
        request: PeerRequest,
        timeout: Duration,
    ) -> BoxFuture<Result<PeerReply, CallError>> {
        let (world, from, addr) = (self.world.clone(), self.from, addr.to_owned());
        Box::pin(async move {
            let Some(to) = node_id(&addr) else {
                return Err(CallError::Unreachable {
                    addr,
                    message: "no such node".into(),
                });
            };
            let handle = move |node: Arc<Node>| async move { node.handle_peer(request).await };
            match world.deliver(from, to, timeout, handle).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(e)) => Err(CallError::Remote(e)),
                Err(Lost::NotDelivered) => Err(CallError::Unreachable {
                    addr,
                    message: "not delivered".into(),
                }),
                Err(Lost::Answer) => Err(CallError::Failed {
                    addr,
                    message: "no answer".into(),
                }),
            }
        })
    }
}

impl RaftNetworkFactory<TypeConfig> for SimNetwork {
    type Network = SimPeer;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> SimPeer {
        SimPeer {
            world: self.world.clone(),
            from: self.from,
            target,
        }
    }
}

/// openraft's connection from one node to another.
#[derive(Debug)]
struct SimPeer {
    world: Arc<World>,
    from: u64,
    target: u64,
}

type RpcResult<T, E> = Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

impl SimPeer {
    /// The error type is openraft's, as `RaftNetwork` requires.
    #[allow(clippy::result_large_err)]
    fn answer<T, E: std::error::Error>(
        &self,
        delivered: Result<Result<T, RaftError<u64, E>>, Lost>,
    ) -> RpcResult<T, E> {
        match delivered {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Err(Lost::NotDelivered) => Err(RPCError::Unreachable(Unreachable::new(&SimError(
                "not delivered",
            )))),
            Err(Lost::Answer) => Err(RPCError::Network(NetworkError::new(&SimError("no answer")))),
        }
    }
}

impl RaftNetwork<TypeConfig> for SimPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, openraft::error::Infallible> {
        let handle = move |node: Arc<Node>| async move { node.raft().append_entries(rpc).await };
        let delivered = self
            .world
            .deliver(self.from, self.target, option.hard_ttl(), handle)
            .await;
        self.answer(delivered)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        let handle = move |node: Arc<Node>| async move { node.raft().install_snapshot(rpc).await };
        let ttl = option.hard_ttl().max(Duration::from_secs(10));
        let delivered = self
            .world
            .deliver(self.from, self.target, ttl, handle)
            .await;
        self.answer(delivered)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>, openraft::error::Infallible> {
        let handle = move |node: Arc<Node>| async move { node.raft().vote(rpc).await };
        let delivered = self
            .world
            .deliver(self.from, self.target, option.hard_ttl(), handle)
            .await;
        self.answer(delivered)
    }
}

// ---------------------------------------------------------------------------------------------
// The rotator and its issuer.
// ---------------------------------------------------------------------------------------------

/// The rotation engine's protocol (`baton_engine::Engine`), step for step, with a simulated
/// issuer in place of `baton_issuers::mint`: the engine's issuers call out to processes and
/// servers, which paused time cannot drive.
///
/// On the leader, a credential whose `due()` came is rotated: `BeginRotation` proposed on this
/// node only, then the issuer called with the issuer's timeout, then `CommitRotation` under the
/// intent's fence (forwarded to the leader wherever it is), `FailRotation { unknown: true }`
/// with `retry_at` = the deadline when the call timed out, or `FailRotation` with a backoff
/// when the issuer refused.
#[derive(Debug)]
struct Rotator {
    world: std::sync::Weak<World>,
    node: Arc<Node>,
    /// Credentials with a rotation running on this node.
    running: Mutex<BTreeSet<String>>,
    /// When this node last called each credential's issuer.
    last_call: Mutex<BTreeMap<String, Instant>>,
    /// When each credential's last rotation on this node ended.
    last_done: Mutex<BTreeMap<String, Instant>>,
}

impl Rotator {
    async fn run(self: Arc<Self>) {
        loop {
            sleep(Duration::from_millis(100)).await;
            let Some(world) = self.world.upgrade() else {
                return;
            };
            if world.stopping.load(Ordering::SeqCst) || !self.node.is_leader() {
                continue;
            }
            let now = self.node.now();
            let due: Vec<String> = self.node.state().read(|s| {
                s.credentials
                    .values()
                    .filter(|c| c.due().at() <= now)
                    .map(|c| c.name.clone())
                    .collect()
            });
            for name in due {
                let floor = lock(&self.last_done)
                    .get(&name)
                    .is_some_and(|t| t.elapsed() < RETRY_FLOOR);
                if floor || lock(&self.running).contains(&name) {
                    continue;
                }
                let me = self.clone();
                world.spawn_on(self.node.id(), async move {
                    me.rotate(&name, RotationReason::Scheduled).await;
                });
            }
        }
    }

    async fn rotate(self: Arc<Self>, name: &str, reason: RotationReason) {
        if !lock(&self.running).insert(name.to_owned()) {
            return;
        }
        self.rotate_claimed(name, reason).await;
        lock(&self.running).remove(name);
        lock(&self.last_done).insert(name.to_owned(), Instant::now());
    }

    async fn rotate_claimed(&self, name: &str, reason: RotationReason) {
        let Some(world) = self.world.upgrade() else {
            return;
        };
        let node = &self.node;
        let last = lock(&self.last_call).get(name).copied();
        if let Some(last) = last {
            tokio::time::sleep_until(last + MIN_INTERVAL).await;
        }

        // The intent outlives the call it covers, with room to commit the result.
        let hold = INTENT_TIMEOUT.max(ISSUER_TIMEOUT * 2 + Duration::from_secs(5));
        let deadline = node.now().add_millis(hold.as_millis() as u64);
        let begin = Op::BeginRotation {
            name: name.to_owned(),
            deadline,
            reason,
        };
        let result = node.propose_local(begin.clone()).await;
        let out = submitted(result);
        world.record(&begin, &out);
        let Submitted::Acked(Committed {
            output: Output::RotationStarted(intent),
            ..
        }) = out
        else {
            return;
        };
        world.event(format!(
            "n{} began {name} rotation {} fence {} ({reason:?})",
            node.id(),
            intent.rotation,
            intent.fence
        ));

        // As the engine does: the call must be over before the intent's deadline, with the
        // clock skew and a margin to spare; an intent committed too late is closed uncalled.
        let spare = node.max_clock_skew() + Duration::from_secs(1);
        let left = intent
            .deadline
            .as_millis()
            .saturating_sub(node.now().as_millis());
        let Some(budget) = Duration::from_millis(left)
            .checked_sub(spare)
            .filter(|b| !b.is_zero())
        else {
            world.event(format!(
                "{name} fence {} committed too close to its deadline",
                intent.fence
            ));
            let fail = Op::FailRotation {
                name: name.to_owned(),
                fence: intent.fence,
                error: "committed too close to its deadline".into(),
                retry_at: node.now(),
                unknown: false,
            };
            world.attempted(&fail);
            let out = submitted(node.propose(fail.clone()).await);
            world.record(&fail, &out);
            return;
        };
        let limit = ISSUER_TIMEOUT.min(budget);

        lock(&self.last_call).insert(name.to_owned(), Instant::now());
        let call = world.call_issuer(name, &intent);
        sleep(call.takes.min(limit)).await;

        let op = if call.refuses {
            let attempts = node
                .state()
                .read(|s| s.credentials.get(name).map_or(0, |c| c.status.attempts));
            let wait = BACKOFF_BASE.saturating_mul(1 << attempts.min(8));
            Op::FailRotation {
                name: name.to_owned(),
                fence: intent.fence,
                error: "the issuer refused".into(),
                retry_at: node.now().add_millis(wait.as_millis() as u64),
                unknown: false,
            }
        } else if call.takes > limit {
            world.event(format!(
                "{name} fence {} issuer call timed out",
                intent.fence
            ));
            Op::FailRotation {
                name: name.to_owned(),
                fence: intent.fence,
                error: "the issuer call timed out".into(),
                retry_at: intent.deadline,
                unknown: true,
            }
        } else {
            world.issuer_answered(name, &intent);
            let issued = world.true_now();
            let lifetime = Policy::from_request(&policy_request(Overlap::None))
                .expect("a policy")
                .lifetime;
            Op::CommitRotation {
                name: name.to_owned(),
                fence: intent.fence,
                token: Secret::new(format!("{name}-{}-{}", intent.rotation, intent.fence)),
                issued_at: issued,
                not_before: issued,
                expires_at: issued.add(lifetime),
            }
        };
        world.attempted(&op);
        let out = submitted(node.propose(op.clone()).await);
        world.record(&op, &out);
        if let Submitted::Refused(
            refusal @ (CommandError::InvalidWindow { .. } | CommandError::Overlap { .. }),
        ) = &out
        {
            // As the engine does: an intent whose result can never be committed is closed.
            let fail = Op::FailRotation {
                name: name.to_owned(),
                fence: intent.fence,
                error: format!("the minted version was refused: {refusal}"),
                retry_at: node.now(),
                unknown: false,
            };
            world.attempted(&fail);
            let out = submitted(node.propose(fail.clone()).await);
            world.record(&fail, &out);
        }
    }
}

fn op_kind(op: &Op) -> &'static str {
    match op {
        Op::PutCredential { .. } => "put credential",
        Op::BeginRotation { .. } => "begin rotation",
        Op::CommitRotation { .. } => "commit rotation",
        Op::FailRotation { .. } => "fail rotation",
        Op::AcquireLease { .. } => "acquire",
        Op::RenewLease { .. } => "renew",
        Op::ReleaseLease { .. } => "release",
        Op::PutKv { .. } => "put key",
        _ => "other",
    }
}

fn submitted(result: Result<Committed, ProposeError>) -> Submitted {
    match result {
        Ok(committed) => Submitted::Acked(committed),
        Err(ProposeError::Refused(e)) => Submitted::Refused(e),
        Err(e) => Submitted::Unknown(e.to_string()),
    }
}

/// One call to the simulated issuer, as the issuer sees it.
struct IssuerCall {
    /// How long the issuer works on it; past the timeout, the caller gives up but the issuer
    /// still issues a token.
    takes: Duration,
    /// The issuer answers with an error (quickly) instead of a token.
    refuses: bool,
}

impl World {
    /// Starts an issuer call for `intent`, checking that no other call of `name` is in flight.
    fn call_issuer(&self, name: &str, intent: &Intent) -> IssuerCall {
        let (takes, refuses) = {
            let mut rng = lock(&self.rng);
            let refuses = rng.below(10) == 0;
            let takes = if refuses {
                Duration::from_millis(10 + rng.below(200))
            } else {
                Duration::from_millis(20 + rng.below(ISSUER_TIMEOUT.as_millis() as u64 * 3 / 2))
            };
            (takes, refuses)
        };
        let now = Instant::now();
        let mut history = lock(&self.history);
        let busy = history
            .issuer_busy
            .get(name)
            .filter(|(until, _)| *until > now)
            .map(|(_, fence)| *fence);
        history
            .issuer_busy
            .insert(name.to_owned(), (now + takes, intent.fence));
        drop(history);
        if let Some(other) = busy {
            self.violation(format!(
                "{name}: the issuer is called for fence {} while its call for fence {other} is \
                 in flight",
                intent.fence
            ));
        }
        self.event(format!(
            "{name} fence {} rotation {}: issuer called ({} ms{})",
            intent.fence,
            intent.rotation,
            takes.as_millis(),
            if refuses { ", refuses" } else { "" }
        ));
        IssuerCall { takes, refuses }
    }

    /// The issuer's token for `intent` reached the rotator within the timeout.
    fn issuer_answered(&self, name: &str, intent: &Intent) {
        let mut history = lock(&self.history);
        history
            .successes
            .entry((name.to_owned(), intent.rotation))
            .or_default()
            .push(intent.clone());
    }
}

// ---------------------------------------------------------------------------------------------
// Clients.
// ---------------------------------------------------------------------------------------------

/// A client: writes keys, takes and renews leases, asks for rotations, through random nodes.
async fn client(world: Arc<World>, index: u64) {
    let mut rng = Rng::new(world.seed ^ (0x636c_6965_6e74 + index));
    let holder = format!("client-{index}");
    // The grant this client believes it holds, and an older one to try stale fences with.
    let mut held: Option<(String, u64)> = None;
    let mut stale: Option<(String, u64)> = None;
    while !world.stopping.load(Ordering::SeqCst) {
        sleep(Duration::from_millis(20 + rng.below(400))).await;
        let via = NODES[rng.below(NODES.len() as u64) as usize];
        let op = match rng.below(100) {
            0..=34 => {
                let value = lock(&world.history).next_value();
                Op::PutKv {
                    key: KV_KEYS[rng.below(KV_KEYS.len() as u64) as usize].into(),
                    value: serde_json::json!(value),
                    if_revision: None,
                    lease: None,
                }
            }
            35..=69 => match &held {
                Some((lease, fence)) if rng.below(3) > 0 => Op::RenewLease {
                    name: lease.clone(),
                    holder: holder.clone(),
                    fence: *fence,
                },
                Some((lease, fence)) => Op::ReleaseLease {
                    name: lease.clone(),
                    holder: holder.clone(),
                    fence: *fence,
                },
                None => Op::AcquireLease {
                    name: LEASES[rng.below(LEASES.len() as u64) as usize].into(),
                    holder: holder.clone(),
                    ttl_ms: 300 + rng.below(2700),
                },
            },
            70..=79 => match held.clone().or(stale.clone()) {
                Some((lease, fence)) => Op::PutKv {
                    key: format!("{lease}-owner"),
                    value: serde_json::json!(holder),
                    if_revision: None,
                    lease: Some(LeaseRef { name: lease, fence }),
                },
                None => continue,
            },
            80..=87 => match stale.clone() {
                Some((lease, fence)) => Op::RenewLease {
                    name: lease,
                    holder: holder.clone(),
                    fence,
                },
                None => continue,
            },
            88..=93 => {
                // A manual rotation, on the leader's rotator as `rotate_on_leader` asks.
                let name = CREDENTIALS[rng.below(2) as usize].0;
                if let Some(leader) = world.leader() {
                    if let Some(rotator) = world.rotator(leader) {
                        world.spawn_on(leader, async move {
                            rotator.rotate(name, RotationReason::Manual).await;
                        });
                    }
                }
                continue;
            }
            _ => {
                let (name, overlap) = CREDENTIALS[rng.below(2) as usize];
                put_credential(name, overlap)
            }
        };
        world.attempted(&op);
        let started = format!(
            "{:.3}s via n{via}: {op:?}",
            world.start.elapsed().as_secs_f64()
        );
        lock(&world.history).in_flight.insert(index, started);
        let out = world.submit(via, op.clone()).await;
        lock(&world.history).in_flight.remove(&index);
        world.record(&op, &out);
        match (&op, &out) {
            (
                Op::AcquireLease { name, .. },
                Submitted::Acked(Committed {
                    output: Output::LeaseGranted { fence, .. },
                    ..
                }),
            ) => held = Some((name.clone(), *fence)),
            (Op::RenewLease { .. }, Submitted::Acked(_)) => {}
            (Op::RenewLease { fence, .. } | Op::ReleaseLease { fence, .. }, _)
                if held.as_ref().is_some_and(|(_, f)| f == fence) =>
            {
                stale = held.take();
            }
            _ => {}
        }
    }
}

fn policy_request(overlap: Overlap) -> PolicyRequest {
    PolicyRequest {
        lifetime: Some(Secs(6)),
        renew_before: Some(Secs(3)),
        min_remaining: Some(Secs(1)),
        overlap: Some(overlap),
        ..PolicyRequest::default()
    }
}

fn put_credential(name: &str, overlap: Overlap) -> Op {
    Op::PutCredential {
        name: name.into(),
        issuer: IssuerSpec::Exec(ExecSpec {
            command: vec!["/usr/local/bin/issue-token".into()],
            env: BTreeMap::new(),
            working_dir: None,
            timeout: Secs(ISSUER_TIMEOUT.as_secs()),
        }),
        policy: Policy::from_request(&policy_request(overlap)).expect("a valid policy"),
    }
}

// ---------------------------------------------------------------------------------------------
// The history and its checks.
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct History {
    violations: Vec<String>,
    trace: Vec<String>,
    /// Every write whose propose returned Ok: the op and its answer.
    acked: Vec<(Op, Committed)>,
    /// Fences named in writes that may have been applied (acknowledged or not).
    failed_known: BTreeSet<u64>,
    released: BTreeSet<u64>,
    /// Until when the issuer works on each credential's latest call, and for which fence.
    issuer_busy: BTreeMap<String, (Instant, u64)>,
    /// Issuer calls answered within the timeout, by credential and rotation number.
    successes: BTreeMap<(String, u64), Vec<Intent>>,
    /// Everything seen in any node's state, by fence.
    intents: BTreeMap<u64, (String, Intent)>,
    versions: BTreeMap<(String, u64), SeenVersion>,
    grants: BTreeMap<u64, SeenGrant>,
    fence_owner: BTreeMap<u64, String>,
    /// Values written to keys, so that a value nobody wrote is noticed.
    written: BTreeSet<u64>,
    next_value: u64,
    /// Each client's write under way.
    in_flight: BTreeMap<u64, String>,
}

#[derive(Clone, Debug)]
struct SeenVersion {
    fence: u64,
    token: String,
    not_before: Timestamp,
    /// The smallest expiry seen: under `overlap = none` a version is cut short when the next
    /// one is committed.
    expires_at: Timestamp,
}

#[derive(Clone, Debug, Default)]
struct SeenGrant {
    lease: String,
    holder: String,
    acquired_at: Option<Timestamp>,
    /// When the grant ends as its latest renewal set it (a holder that acquires again with a
    /// shorter TTL shortens its own grant), with the revision of that renewal.
    ends: (u64, Timestamp),
    /// The revision that granted it, when acknowledged.
    revision: Option<u64>,
}

impl History {
    fn next_value(&mut self) -> u64 {
        self.next_value += 1;
        self.written.insert(self.next_value);
        self.next_value
    }
}

impl World {
    /// Notes a write about to be proposed, whose effect may happen whatever its answer.
    fn attempted(&self, op: &Op) {
        let mut history = lock(&self.history);
        match op {
            Op::FailRotation {
                fence,
                unknown: false,
                ..
            } => {
                history.failed_known.insert(*fence);
            }
            Op::ReleaseLease { fence, .. } => {
                history.released.insert(*fence);
            }
            _ => {}
        }
    }

    /// Records the answer to a write and checks what an answer alone can show.
    fn record(&self, op: &Op, out: &Submitted) {
        let committed = match out {
            Submitted::Acked(committed) => committed,
            Submitted::Unknown(e) => {
                self.event(format!(
                    "outcome unknown: {} on {}: {e}",
                    op_kind(op),
                    op.target()
                ));
                return;
            }
            Submitted::NotSent | Submitted::Refused(_) => return,
        };
        let mut problems = Vec::new();
        {
            let mut h = lock(&self.history);
            let revision = committed.revision;
            if let Some((other, _)) = h.acked.iter().find(|(_, c)| c.revision == revision) {
                problems.push(format!(
                    "two writes acknowledged at revision {revision}: {other:?} and {op:?}"
                ));
            }
            match (op, &committed.output) {
                (
                    Op::AcquireLease {
                        name,
                        holder,
                        ttl_ms,
                    },
                    Output::LeaseGranted {
                        fence,
                        expires_at,
                        renewed,
                    },
                ) => {
                    let g = h.grants.entry(*fence).or_default();
                    g.lease.clone_from(name);
                    g.holder.clone_from(holder);
                    g.ends = g.ends.max((revision, *expires_at));
                    if !renewed {
                        g.acquired_at = Some(expires_at.sub_millis(*ttl_ms));
                        g.revision = Some(revision);
                    }
                    problems.extend(own_fence(&mut h, *fence, format!("lease {name}")));
                }
                (Op::RenewLease { name, fence, .. }, Output::LeaseRenewed { expires_at, .. }) => {
                    let g = h.grants.entry(*fence).or_default();
                    g.ends = g.ends.max((revision, *expires_at));
                    problems.extend(stale_use(&h, name, *fence, revision, "renew"));
                }
                (
                    Op::ReleaseLease { name, fence, .. },
                    Output::LeaseReleased { released: true, .. },
                ) => {
                    h.released.insert(*fence);
                    problems.extend(stale_use(&h, name, *fence, revision, "release"));
                }
                (Op::PutKv { lease: Some(l), .. }, _) => {
                    problems.extend(stale_use(&h, &l.name, l.fence, revision, "bound put"))
                }
                (Op::BeginRotation { name, .. }, Output::RotationStarted(intent)) => {
                    problems.extend(own_fence(
                        &mut h,
                        intent.fence,
                        format!("credential {name}"),
                    ));
                }
                _ => {}
            }
            if std::env::var_os("BATON_SIM_TRACE").is_some() {
                let at = self.start.elapsed().as_secs_f64();
                h.trace
                    .push(format!("{at:8.3}s acked {op:?} -> {committed:?}"));
            }
            h.acked.push((op.clone(), committed.clone()));
        }
        for p in problems {
            self.violation(p);
        }
    }

    /// Observes every live node's state and checks the whole history.
    fn check(&self) {
        for node in self.live_nodes() {
            let state = node.state().read(State::clone);
            self.observe(node.id(), &state);
        }
        let problems = {
            let h = lock(&self.history);
            let mut problems = check_leases(&h);
            problems.extend(check_intents(&h));
            problems.extend(check_fence_order(&h));
            problems.extend(check_overlap(&h));
            problems.extend(check_issues(&h));
            problems
        };
        for p in problems {
            self.violation(p);
        }
    }

    fn observe(&self, id: u64, s: &State) {
        let mut problems = Vec::new();
        let mut h = lock(&self.history);
        for c in s.credentials.values() {
            if let Some(intent) = &c.rotation {
                match h.intents.get(&intent.fence) {
                    Some((name, seen)) if name != &c.name || seen != intent => {
                        problems.push(format!(
                            "n{id}: fence {} is the intent {intent:?} of {}, elsewhere {seen:?} \
                             of {name}",
                            intent.fence, c.name
                        ));
                    }
                    Some(_) => {}
                    None => {
                        h.intents
                            .insert(intent.fence, (c.name.clone(), intent.clone()));
                    }
                }
                problems.extend(own_fence(
                    &mut h,
                    intent.fence,
                    format!("credential {}", c.name),
                ));
            }
            let versions = [&c.previous, &c.current, &c.next];
            for v in versions.into_iter().flatten() {
                let key = (c.name.clone(), v.number);
                let seen = h.versions.entry(key).or_insert_with(|| SeenVersion {
                    fence: v.fence,
                    token: v.token.expose().to_owned(),
                    not_before: v.not_before,
                    expires_at: v.expires_at,
                });
                if seen.fence != v.fence
                    || seen.token != v.token.expose()
                    || seen.not_before != v.not_before
                {
                    problems.push(format!(
                        "n{id}: {} version {} is fence {} from {}, elsewhere fence {} from {}",
                        c.name, v.number, v.fence, v.not_before, seen.fence, seen.not_before
                    ));
                }
                seen.expires_at = seen.expires_at.min(v.expires_at);
                problems.extend(own_fence(&mut h, v.fence, format!("credential {}", c.name)));
            }
            if c.policy.overlap == Overlap::None {
                let all: Vec<_> = versions.into_iter().flatten().collect();
                for (i, a) in all.iter().enumerate() {
                    for b in &all[i + 1..] {
                        if a.not_before < b.expires_at && b.not_before < a.expires_at {
                            problems.push(format!(
                                "n{id}: {} versions {} [{}, {}) and {} [{}, {}) overlap",
                                c.name,
                                a.number,
                                a.not_before,
                                a.expires_at,
                                b.number,
                                b.not_before,
                                b.expires_at
                            ));
                        }
                    }
                }
            }
        }
        for lease in s.leases.values() {
            match &lease.hold {
                Some(hold) => {
                    let g = h.grants.entry(hold.fence).or_default();
                    if g.holder.is_empty() {
                        g.lease.clone_from(&lease.name);
                        g.holder.clone_from(&hold.holder);
                    }
                    if g.lease != lease.name || g.holder != hold.holder {
                        problems.push(format!(
                            "n{id}: fence {} is held by {} on {}, elsewhere by {} on {}",
                            hold.fence, hold.holder, lease.name, g.holder, g.lease
                        ));
                    }
                    match g.acquired_at {
                        Some(at) if at != hold.acquired_at => problems.push(format!(
                            "n{id}: fence {} acquired at {}, elsewhere at {at}",
                            hold.fence, hold.acquired_at
                        )),
                        _ => g.acquired_at = Some(hold.acquired_at),
                    }
                    g.ends = g.ends.max((lease.revision, hold.expires_at()));
                    problems.extend(own_fence(
                        &mut h,
                        hold.fence,
                        format!("lease {}", lease.name),
                    ));
                }
                None if lease.last_fence > 0 => {
                    h.released.insert(lease.last_fence);
                }
                None => {}
            }
        }
        for entry in s.kv.values() {
            let written = entry.value.as_u64().is_some_and(|v| h.written.contains(&v));
            if entry.lease.is_none() && !written {
                problems.push(format!(
                    "n{id}: key {} holds {}, which nobody wrote",
                    entry.key, entry.value
                ));
            }
        }
        drop(h);
        for p in problems {
            self.violation(p);
        }
    }

    /// After healing: equal states, and every acknowledged write still there.
    fn final_checks(&self, states: &[(u64, u64, State)]) {
        let mut problems = Vec::new();
        let (first_id, _, first) = &states[0];
        for (id, revision, state) in &states[1..] {
            if state != first {
                problems.push(format!(
                    "n{id} and n{first_id} applied revision {revision} but their states differ"
                ));
            }
        }
        let h = lock(&self.history);
        let mut kv_acked: BTreeMap<&str, (u64, &serde_json::Value)> = BTreeMap::new();
        for (id, revision, state) in states {
            for (op, committed) in &h.acked {
                let rev = committed.revision;
                if rev > *revision {
                    problems.push(format!(
                        "n{id} is at revision {revision}, but revision {rev} was acknowledged"
                    ));
                }
                match (op, &committed.output) {
                    (
                        Op::PutKv {
                            key,
                            value,
                            lease: None,
                            ..
                        },
                        _,
                    ) => {
                        let latest = kv_acked.entry(key).or_insert((rev, value));
                        if rev > latest.0 {
                            *latest = (rev, value);
                        }
                    }
                    (Op::PutCredential { name, .. }, _)
                        if !state.credentials.contains_key(name) =>
                    {
                        problems.push(format!(
                            "n{id}: credential {name}, acknowledged at {rev}, is gone"
                        ));
                    }
                    (
                        Op::CommitRotation { name, fence, .. },
                        Output::RotationCommitted { version, .. },
                    ) => {
                        let c = state.credentials.get(name);
                        let last = c.map_or(0, |c| c.last_rotation);
                        let kept = c.and_then(|c| {
                            [&c.previous, &c.current, &c.next]
                                .into_iter()
                                .flatten()
                                .find(|v| v.number == *version)
                        });
                        if last < *version || kept.is_some_and(|v| v.fence != *fence) {
                            problems.push(format!(
                                "n{id}: {name} version {version} (fence {fence}), acknowledged \
                                 at {rev}, is lost: last rotation {last}, kept {kept:?}"
                            ));
                        }
                    }
                    (Op::AcquireLease { name, .. }, Output::LeaseGranted { fence, .. }) => {
                        let last = state.leases.get(name).map_or(0, |l| l.last_fence);
                        if last < *fence {
                            problems.push(format!(
                                "n{id}: lease {name} granted with fence {fence} at {rev}, but \
                                 its last fence is {last}"
                            ));
                        }
                    }
                    _ => {}
                }
            }
            for (key, (rev, value)) in &kv_acked {
                match state.kv.get(*key) {
                    Some(e) if e.revision > *rev => {}
                    Some(e) if e.revision == *rev && &&e.value == value => {}
                    other => problems.push(format!(
                        "n{id}: key {key} was written {value} at revision {rev} (acknowledged), \
                         but holds {other:?}"
                    )),
                }
            }
        }
        let summary = format!(
            "final: {} nodes at revision {}, {} acknowledged writes, {} versions, {} grants",
            states.len(),
            states[0].1,
            h.acked.len(),
            h.versions.len(),
            h.grants.len()
        );
        drop(h);
        self.event(summary);
        for p in problems {
            self.violation(p);
        }
    }
}

/// Claims `fence` for `owner`; fences are unique across the whole state.
fn own_fence(h: &mut History, fence: u64, owner: String) -> Option<String> {
    match h.fence_owner.get(&fence) {
        Some(other) if *other != owner => {
            Some(format!("fence {fence} belongs to both {other} and {owner}"))
        }
        Some(_) => None,
        None => {
            h.fence_owner.insert(fence, owner);
            None
        }
    }
}

/// An operation carrying `fence` on lease `name` was accepted at `revision`: no newer grant may
/// have been made before it.
fn stale_use(h: &History, name: &str, fence: u64, revision: u64, what: &str) -> Option<String> {
    h.grants
        .iter()
        .find(|(f, g)| **f > fence && g.lease == name && g.revision.is_some_and(|r| r < revision))
        .map(|(f, g)| {
            format!(
                "lease {name}: a {what} with fence {fence} was accepted at revision {revision}, \
                 after fence {f} was granted at {:?}",
                g.revision
            )
        })
}

/// A lease is granted only once the previous grant has ended, by the leader's stamps.
fn check_leases(h: &History) -> Vec<String> {
    let mut problems = Vec::new();
    for lease in LEASES {
        let grants: Vec<(&u64, &SeenGrant)> =
            h.grants.iter().filter(|(_, g)| g.lease == lease).collect();
        for pair in grants.windows(2) {
            let ((fa, a), (fb, b)) = (pair[0], pair[1]);
            let Some(acquired) = b.acquired_at else {
                continue;
            };
            if !h.released.contains(fa) && acquired < a.ends.1 {
                problems.push(format!(
                    "lease {lease}: {} got fence {fb} at {acquired} while {} held fence {fa} \
                     until {}",
                    b.holder, a.holder, a.ends.1
                ));
            }
        }
    }
    problems
}

/// A credential's next intent opens only once the previous one is closed or its deadline passed.
fn check_intents(h: &History) -> Vec<String> {
    let mut problems = Vec::new();
    let committed: BTreeSet<(&str, u64)> = h
        .versions
        .iter()
        .map(|((name, _), v)| (name.as_str(), v.fence))
        .collect();
    for (name, _) in CREDENTIALS {
        let intents: Vec<&Intent> = h
            .intents
            .values()
            .filter(|(n, _)| n == name)
            .map(|(_, i)| i)
            .collect();
        for pair in intents.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let closed = committed.contains(&(name, a.fence)) || h.failed_known.contains(&a.fence);
            if !closed && b.started_at < a.deadline {
                problems.push(format!(
                    "{name}: intent fence {} opened at {} while fence {} was open until {}",
                    b.fence, b.started_at, a.fence, a.deadline
                ));
            }
        }
    }
    problems
}

/// Fences handed out by acknowledged writes increase with their revision.
fn check_fence_order(h: &History) -> Vec<String> {
    let mut made: Vec<(u64, u64)> = h
        .acked
        .iter()
        .filter_map(|(_, c)| match &c.output {
            Output::LeaseGranted {
                fence,
                renewed: false,
                ..
            } => Some((c.revision, *fence)),
            Output::RotationStarted(intent) => Some((c.revision, intent.fence)),
            _ => None,
        })
        .collect();
    made.sort_unstable();
    made.windows(2)
        .filter(|p| p[1].1 <= p[0].1)
        .map(|p| {
            format!(
                "fence {} made at revision {} is not above fence {} made at revision {}",
                p[1].1, p[1].0, p[0].1, p[0].0
            )
        })
        .collect()
}

/// Under `overlap = none`, version k ends no later than version k+1 starts.
fn check_overlap(h: &History) -> Vec<String> {
    let mut problems = Vec::new();
    for ((name, number), v) in &h.versions {
        if name != "none" {
            continue;
        }
        if let Some(next) = h.versions.get(&(name.clone(), number + 1)) {
            if next.not_before < v.expires_at {
                problems.push(format!(
                    "{name}: version {} starts at {}, before version {number} ends at {}",
                    number + 1,
                    next.not_before,
                    v.expires_at
                ));
            }
        }
    }
    problems
}

/// A rotation number is issued twice only when the first answer never became a version and the
/// second call waited out the first intent's deadline.
fn check_issues(h: &History) -> Vec<String> {
    let committed: BTreeSet<(&str, u64)> = h
        .versions
        .iter()
        .map(|((name, _), v)| (name.as_str(), v.fence))
        .collect();
    let mut problems = Vec::new();
    for ((name, rotation), calls) in &h.successes {
        for pair in calls.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if committed.contains(&(name.as_str(), a.fence)) || b.started_at < a.deadline {
                problems.push(format!(
                    "{name} rotation {rotation} was issued under fence {} and again under fence \
                     {} (opened at {}, the first intent's deadline {})",
                    a.fence, b.fence, b.started_at, a.deadline
                ));
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------

/// SplitMix64: small, seedable, and good enough to schedule faults.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
