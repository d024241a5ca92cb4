//! `/v1/auth`: access tokens and access policies (all `admin`).
//!
//! A token is made here, from 256 random bits, and shown once in the answer to its creation;
//! the replicated state keeps only its hash and accessor.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use baton_core::{
    token_accessor, token_hash, AccessPolicy, NewToken, Op, Output, Secret, Secs, ROOT_POLICY,
};
use baton_raft::{Committed, Node};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::extract::{JsonBody, Name};
use crate::{ApiError, AppState};

/// A token just created: the only time its value is known.
#[derive(Debug)]
pub struct CreatedToken {
    pub token: Secret,
    pub accessor: String,
    pub committed: Committed,
}

/// Makes a token for `policy`, valid `ttl` from the command's time (None: forever), and
/// records its hash.
pub async fn create_token(
    node: &Node,
    policy: &str,
    ttl: Option<Secs>,
    display_name: &str,
) -> Result<CreatedToken, ApiError> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut())
        .map_err(|e| ApiError::internal("no randomness for a token", e))?;
    let mut text = String::with_capacity(crate::auth::TOKEN_PREFIX.len() + 64);
    text.push_str(crate::auth::TOKEN_PREFIX);
    for b in bytes.iter() {
        text.push_str(&format!("{b:02x}"));
    }
    let token = Secret::new(text);
    let accessor = token_accessor(token.expose());
    let committed = node
        .propose(Op::CreateToken(NewToken {
            accessor: accessor.clone(),
            hash: token_hash(token.expose()),
            policy: policy.to_owned(),
            ttl_ms: ttl.map(Secs::as_millis),
            display_name: display_name.to_owned(),
        }))
        .await
        .map_err(access_error)?;
    tracing::info!(%accessor, policy, revision = committed.revision, "access token created");
    Ok(CreatedToken {
        token,
        accessor,
        committed,
    })
}

/// Creates or replaces an access policy.
pub async fn put_access_policy(
    node: &Node,
    name: &str,
    policy: AccessPolicy,
) -> Result<Committed, ApiError> {
    node.propose(Op::PutAccessPolicy {
        name: name.to_owned(),
        policy,
    })
    .await
    .map_err(access_error)
}

fn access_error(e: baton_raft::ProposeError) -> ApiError {
    use baton_core::CommandError;
    match e {
        baton_raft::ProposeError::Refused(CommandError::InvalidAccessPolicy(m)) => {
            ApiError::bad_request("access_policy_invalid", m)
        }
        baton_raft::ProposeError::Refused(CommandError::NoSuchAccessPolicy(name)) => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no access policy is named `{name}`"),
        ),
        other => other.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRequest {
    policy: String,
    /// How long the token is valid; absent: until revoked.
    #[serde(default)]
    ttl: Option<Secs>,
    #[serde(default)]
    display_name: Option<String>,
}

pub(crate) async fn create(
    state: AppState,
    JsonBody(req): JsonBody<CreateRequest>,
) -> Result<Response, ApiError> {
    if req
        .ttl
        .is_some_and(|t| t == Secs::ZERO || t > baton_core::Policy::MAX_DURATION)
    {
        return Err(ApiError::bad_request(
            "invalid_ttl",
            "ttl must lie within [1s, 10 years]; leave it out for a token that does not expire",
        ));
    }
    let name = req.display_name.unwrap_or_default();
    if name.len() > 256 {
        return Err(ApiError::bad_request(
            "invalid_display_name",
            "display_name is at most 256 bytes",
        ));
    }
    let created = create_token(&state.0.node, &req.policy, req.ttl, &name).await?;
    let expires_at = match created.committed.output {
        Output::TokenCreated { expires_at } => expires_at.map(|t| t.to_string()),
        _ => None,
    };
    let body = json!({
        "token": created.token.expose(),
        "accessor": created.accessor,
        "policy": req.policy,
        "expires_at": expires_at,
        "revision": created.committed.revision,
    });
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    // The audit line names the token made (by its accessor, never the token) and its policy.
    response
        .extensions_mut()
        .insert(crate::audit::AuditTarget(format!(
            "{} (policy {})",
            created.accessor, req.policy
        )));
    Ok(response)
}

pub(crate) async fn list_tokens(state: AppState) -> Json<Value> {
    let shared = state.0.node.state();
    let (tokens, revision) = shared.read(|s| {
        let tokens: Vec<Value> = s
            .auth
            .tokens
            .values()
            .map(|t| {
                json!({
                    "accessor": t.accessor,
                    "policy": t.policy,
                    "display_name": t.display_name,
                    "created_at": t.created_at.to_string(),
                    "expires_at": t.expires_at.map(|e| e.to_string()),
                })
            })
            .collect();
        (tokens, shared.revision())
    });
    Json(json!({ "tokens": tokens, "revision": revision }))
}

pub(crate) async fn revoke(state: AppState, Name(accessor): Name) -> Result<Json<Value>, ApiError> {
    let committed = state
        .0
        .node
        .propose(Op::RevokeToken {
            accessor: accessor.clone(),
        })
        .await?;
    match committed.output {
        Output::Deleted { existed: true } => {
            tracing::info!(%accessor, revision = committed.revision, "access token revoked");
            Ok(Json(
                json!({ "revoked": accessor, "revision": committed.revision }),
            ))
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no token has the accessor `{accessor}`"),
        )),
    }
}

pub(crate) async fn list_policies(state: AppState) -> Json<Value> {
    let shared = state.0.node.state();
    let (mut names, revision) = shared.read(|s| {
        let names: Vec<String> = s.auth.policies.keys().cloned().collect();
        (names, shared.revision())
    });
    names.insert(0, ROOT_POLICY.to_owned());
    Json(json!({ "policies": names, "revision": revision }))
}

pub(crate) async fn show_policy(
    state: AppState,
    Name(name): Name,
) -> Result<Json<Value>, ApiError> {
    let policy = state.0.node.state().read(|s| s.auth.policy(&name));
    let policy = policy.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no access policy is named `{name}`"),
        )
    })?;
    Ok(Json(json!({ "name": name, "rules": policy.rules })))
}

pub(crate) async fn put_policy(
    state: AppState,
    Name(name): Name,
    JsonBody(policy): JsonBody<AccessPolicy>,
) -> Result<Response, ApiError> {
    let committed = put_access_policy(&state.0.node, &name, policy).await?;
    let status = match committed.output {
        Output::Put { created: true, .. } => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    tracing::info!(policy = %name, revision = committed.revision, "access policy written");
    let body = json!({ "policy": name, "revision": committed.revision });
    Ok((status, Json(body)).into_response())
}

pub(crate) async fn delete_policy(
    state: AppState,
    Name(name): Name,
) -> Result<Json<Value>, ApiError> {
    let committed = state
        .0
        .node
        .propose(Op::DeleteAccessPolicy { name: name.clone() })
        .await?;
    match committed.output {
        Output::Deleted { existed: true } => Ok(Json(
            json!({ "deleted": name, "revision": committed.revision }),
        )),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no access policy is named `{name}`"),
        )),
    }
}
