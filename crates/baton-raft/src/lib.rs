//! Replication: every change to baton's state goes through an openraft group.
//!
//! A single node is a one-voter cluster: [`Node::start`] opens the store, starts openraft,
//! initializes the membership on first start and waits until the node leads. Writes are
//! [`Node::propose`]d as commands stamped with the leader's clock; once committed and applied
//! they are visible to every reader through [`Node::state`].

mod network;
mod node;

pub use baton_storage::{Keyring, MasterKey, MasterKeys, SharedState, TypeConfig};
pub use node::{Committed, Node, NodeConfig, ProposeError, StartError};
