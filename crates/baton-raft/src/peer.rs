//! What nodes ask each other besides Raft's own RPCs: forwarded writes, read indexes, clock
//! samples, membership changes and status.
//!
//! A [`Peers`] implementation carries a [`PeerRequest`] to the node at a peer address and
//! brings back its answer; the receiving node answers with [`crate::Node::handle_peer`].
//! [`crate::http`] carries them over HTTP; a simulation can carry them in memory.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use baton_core::Op;
use serde::{Deserialize, Serialize};

use crate::{Committed, ProposeError};

/// A future that may be sent between threads.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A request from one node to another.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PeerRequest {
    /// Who are you? Asked of a node about to join.
    Hello,
    /// Make yourself the first member of a new cluster.
    Init,
    /// Propose this operation, stamped with the receiver's clock; the receiver must lead.
    Propose(Box<Op>),
    /// Confirm leadership with a quorum and return the index a linearizable read must see.
    ReadIndex,
    /// The receiver's wall clock, in milliseconds since the Unix epoch.
    Clock,
    /// The receiver's own view of itself.
    Status,
    /// Add the node listening for peers at `addr`: as a learner, then a voter once caught up.
    Join { addr: String },
    /// Take the node out of the membership.
    Remove { id: u64 },
    /// Rotate a credential now, on the leader's rotation engine.
    Rotate { name: String },
    /// The receiver was taken out of the cluster (by node `by`).
    Removed { by: u64 },
}

/// The answer to a [`PeerRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PeerReply {
    Hello(NodeInfo),
    Proposed(Committed),
    ReadIndex(u64),
    Clock {
        now_ms: u64,
    },
    Status(NodeStatus),
    Joined(NodeInfo),
    Removed,
    /// An API answer computed by the leader, passed on as it is.
    Api {
        status: u16,
        body: serde_json::Value,
    },
}

/// A node's identity, as a joining node announces it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: u64,
    /// Where peers reach it.
    pub peer_addr: String,
    /// Where clients reach it (as it was configured to listen).
    pub api_addr: String,
    /// Whether it already belongs to a cluster.
    pub initialized: bool,
}

/// One node's view of itself and of the cluster, for `baton cluster status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: u64,
    pub api_addr: String,
    pub peer_addr: String,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub state: String,
    pub leader: Option<u64>,
    pub term: u64,
    /// The index of the last log entry this node holds.
    pub last_log_index: u64,
    /// The revision this node has applied.
    pub applied: u64,
    /// This node's clock minus the leader's, measured over the peer connection; none on the
    /// leader itself or before a first sample.
    pub clock_offset_ms: Option<i64>,
    /// Whether this node's clock is off those of a quorum of the voters by more than
    /// `max_clock_skew`; such a node does not stand for election.
    pub clock_skewed: bool,
}

/// Why a peer call brought back no answer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CallError {
    /// The request was certainly not delivered (no connection could be made).
    #[error("cannot connect to the node at {addr}: {message}")]
    Unreachable { addr: String, message: String },
    /// The request may or may not have been acted on.
    #[error("the call to the node at {addr} failed: {message}")]
    Failed { addr: String, message: String },
    /// The peer answered with an error.
    #[error(transparent)]
    Remote(ProposeError),
}

/// Carries peer requests.
pub trait Peers: Send + Sync + std::fmt::Debug + 'static {
    /// Sends `request` to the node whose peer address is `addr`, waiting at most `timeout`.
    fn call(
        &self,
        addr: &str,
        request: PeerRequest,
        timeout: Duration,
    ) -> BoxFuture<Result<PeerReply, CallError>>;
}
