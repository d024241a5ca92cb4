//! The network of a single-node cluster, which never sends an RPC: every peer is
//! unreachable. Clusters of several nodes use [`crate::http::HttpNetwork`].

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;

use crate::TypeConfig;

/// Connects to peers: with one voter there are none.
#[derive(Debug, Clone, Default)]
pub(crate) struct SingleNodeNetwork;

/// A connection to a peer that cannot exist in a one-voter cluster.
#[derive(Debug)]
pub(crate) struct NoPeer {
    target: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("node {0} is not reachable: this build runs a single-node cluster")]
struct NoTransport(u64);

impl NoPeer {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<u64, BasicNode, E> {
        RPCError::Unreachable(Unreachable::new(&NoTransport(self.target)))
    }
}

impl RaftNetworkFactory<TypeConfig> for SingleNodeNetwork {
    type Network = NoPeer;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> NoPeer {
        NoPeer { target }
    }
}

impl RaftNetwork<TypeConfig> for NoPeer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(self.unreachable())
    }
}

impl crate::peer::Peers for SingleNodeNetwork {
    fn call(
        &self,
        addr: &str,
        _request: crate::peer::PeerRequest,
        _timeout: std::time::Duration,
    ) -> crate::peer::BoxFuture<Result<crate::peer::PeerReply, crate::peer::CallError>> {
        let addr = addr.to_owned();
        Box::pin(async move {
            Err(crate::peer::CallError::Unreachable {
                addr,
                message: "this node runs a single-node cluster".into(),
            })
        })
    }
}
