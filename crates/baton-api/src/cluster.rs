//! Membership and status of a cluster: `baton cluster join | remove | status`.
//!
//! Each request may reach any node; membership changes run on the leader (forwarded over the
//! peer network), and the status is gathered from every member by the node asked.

use axum::extract::Path;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::extract::JsonBody;
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JoinRequest {
    /// The peer address of the node to add, as it listens for peers.
    addr: String,
}

pub(crate) async fn join(
    state: AppState,
    JsonBody(request): JsonBody<JoinRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if request.addr.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_addr",
            "addr: give the peer address of the node to add, as HOST:PORT",
        ));
    }
    let joined = state.0.node.join(request.addr.trim()).await?;
    tracing::info!(node = joined.id, addr = %joined.peer_addr, "node joined the cluster");
    Ok(Json(json!({ "joined": joined })))
}

pub(crate) async fn remove(
    state: AppState,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id: u64 = id.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_node_id",
            format!("`{id}` is not a node id (a number)"),
        )
    })?;
    state.0.node.remove(id).await?;
    Ok(Json(json!({ "removed": id })))
}

pub(crate) async fn status(state: AppState) -> Json<serde_json::Value> {
    let status = state.0.node.cluster_status().await;
    Json(serde_json::to_value(status).unwrap_or_default())
}
