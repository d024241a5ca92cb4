//! A baton node: the store, the openraft instance, and the leader's clock.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use baton_core::{Command, CommandError, Op, Output, Timestamp};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};

use crate::network::SingleNodeNetwork;
use crate::{SharedState, TypeConfig};

/// How to start a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: u64,
    /// Holds `baton.redb`. Created if missing.
    pub data_dir: PathBuf,
    /// Where peers reach this node (recorded in the membership).
    pub advertise: String,
    /// The master keys that open the store's data key.
    pub master_keys: baton_storage::MasterKeys,
}

/// A write that was committed and applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub output: Output,
    /// The log index of the command: the revision at which its effect is visible.
    pub revision: u64,
}

/// Why a proposal did not produce an output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProposeError {
    /// The state machine refused the command; nothing changed.
    #[error(transparent)]
    Refused(#[from] CommandError),
    /// This node does not lead the cluster.
    #[error("this node is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    /// The node cannot serve writes (stopping, or its storage failed).
    #[error("the node cannot accept writes: {0}")]
    Unavailable(String),
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

/// A running node.
pub struct Node {
    id: u64,
    raft: Raft<TypeConfig>,
    shared: Arc<SharedState>,
    keyring: baton_storage::Keyring,
    /// The latest time this node stamped (milliseconds), so that stamps never go backwards.
    last_stamp: AtomicU64,
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
            election_timeout_min: 600,
            election_timeout_max: 1200,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(5000),
            max_in_snapshot_log_to_keep: 1000,
            ..Config::default()
        }
        .validate()
        .map_err(|e| StartError::Raft(e.to_string()))?;

        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            SingleNodeNetwork,
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if !initialized {
            let members = BTreeMap::from([(
                config.node_id,
                BasicNode {
                    addr: config.advertise.clone(),
                },
            )]);
            raft.initialize(members)
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?;
            tracing::info!(
                node = config.node_id,
                "initialized a new single-node cluster"
            );
        }

        raft.wait(Some(Duration::from_secs(30)))
            .state(ServerState::Leader, "single node becomes leader")
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;

        Ok(Node {
            id: config.node_id,
            raft,
            shared,
            keyring,
            last_stamp: AtomicU64::new(0),
        })
    }

    pub fn id(&self) -> u64 {
        self.id
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
        let now = Timestamp::from_system_time(SystemTime::now()).as_millis();
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

    /// Stamps `op` with this node's clock, replicates it and returns its output once applied.
    pub async fn propose(&self, op: Op) -> Result<Committed, ProposeError> {
        let cmd = Command {
            now: self.now(),
            op,
        };
        match self.raft.client_write(cmd).await {
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

    /// Stops replication. Applied state stays readable.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "replication did not stop cleanly");
        }
    }
}
