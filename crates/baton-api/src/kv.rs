//! `/v1/kv/{key}`: a small key-value store with compare-and-set on revision, whose keys may be
//! bound to a lease grant and disappear when it ends.

use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::Json;
use baton_core::{CommandError, LeaseRef, Op, Output};
use baton_raft::ProposeError;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::extract::{JsonBody, Name};
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutRequest {
    value: Value,
    /// Write only if the key is at this revision; 0: only if it does not exist.
    #[serde(default)]
    if_revision: Option<u64>,
    /// Bind the key to this lease grant.
    #[serde(default)]
    lease: Option<LeaseRef>,
}

fn kv_error(e: ProposeError) -> ApiError {
    match e {
        ProposeError::Refused(CommandError::RevisionMismatch { .. }) => {
            ApiError::new(StatusCode::CONFLICT, "revision_mismatch", e.to_string())
        }
        ProposeError::Refused(CommandError::NotOwner { .. }) => {
            ApiError::new(StatusCode::CONFLICT, "not_owner", e.to_string())
        }
        other => other.into(),
    }
}

pub(crate) async fn put(
    state: AppState,
    Name(key): Name,
    JsonBody(req): JsonBody<PutRequest>,
) -> Result<Json<Value>, ApiError> {
    let op = Op::PutKv {
        key: key.clone(),
        value: req.value,
        if_revision: req.if_revision,
        lease: req.lease,
    };
    let committed = state.0.node.propose(op).await.map_err(kv_error)?;
    let Output::KvPut { revision, created } = committed.output else {
        return Err(ApiError::internal("kv put", "unexpected output"));
    };
    Ok(Json(
        json!({ "key": key, "revision": revision, "created": created }),
    ))
}

pub(crate) async fn get(
    state: AppState,
    Name(key): Name,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    crate::extract::consistency(&state.0, query.as_deref()).await?;
    let node = &state.0.node;
    let now = node.now();
    let found = node.state().read(|s| {
        s.kv_get(&key, now).map(|e| {
            json!({
                "key": e.key,
                "value": e.value,
                "revision": e.revision,
                "created_revision": e.created_revision,
                "lease": e.lease,
            })
        })
    });
    found.map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no key `{key}`"),
        )
    })
}

pub(crate) async fn delete(
    state: AppState,
    Name(key): Name,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let mut if_revision = None;
    for (key, v) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        if key == "if_revision" {
            if_revision = Some(v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(
                    "invalid_request",
                    format!("if_revision: `{v}` is not a revision"),
                )
            })?);
        }
    }
    let op = Op::DeleteKv {
        key: key.clone(),
        if_revision,
    };
    let committed = state.0.node.propose(op).await.map_err(kv_error)?;
    match committed.output {
        Output::KvDeleted { existed: true } => Ok(Json(
            json!({ "deleted": key, "revision": committed.revision }),
        )),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no key `{key}`"),
        )),
    }
}
