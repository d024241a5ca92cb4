//! Replication: every change to baton's state goes through an openraft group.
//!
//! A single node is a one-voter cluster: [`Node::start`] opens the store, starts openraft,
//! initializes the membership on first start and waits until the node leads. Writes are
//! [`Node::propose`]d as commands stamped with the leader's clock; once committed and applied
//! they are visible to every reader through [`Node::state`].
//!
//! A cluster of several nodes is started with [`Node::start_cluster`] and a transport
//! ([`http::HttpNetwork`]); any node accepts writes and forwards them to the leader.

pub mod http;
mod network;
mod node;
pub mod peer;

pub use baton_storage::{Keyring, MasterKey, MasterKeys, SharedState, TypeConfig};
pub use node::{
    Clock, ClockSample, ClusterStatus, Committed, MemberStatus, Node, NodeConfig, ProposeError,
    RotateHandler, StartError,
};
pub use peer::{NodeInfo, NodeStatus};
