//! `/v1/credentials`: create, show, list, delete, rotate, and the JWKS of a credential.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use baton_core::{Op, Output, Policy, PolicyRequest};
use baton_issuers::IssuerRequest;
use baton_raft::{Committed, Node};
use serde::Deserialize;
use serde_json::json;

use crate::extract::{JsonBody, Name};
use crate::views::{CredentialView, Summary};
use crate::{ApiError, AppState};

/// The body of `PUT /v1/credentials/{name}`, and a credential in the config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRequest {
    pub issuer: IssuerRequest,
    #[serde(default)]
    pub policy: PolicyRequest,
}

/// Validates `req`, resolves its secrets, generates a key if asked, and writes the credential.
pub async fn put_credential(
    node: &Node,
    name: &str,
    req: CredentialRequest,
) -> Result<Committed, ApiError> {
    baton_core::validate_name(name)
        .map_err(|e| ApiError::bad_request("invalid_name", e.to_string()))?;
    let policy = Policy::from_request(&req.policy)
        .map_err(|e| ApiError::bad_request("policy_invalid", e.to_string()))?;

    let existing = node
        .state()
        .read(|s| s.credentials.get(name).map(|c| c.issuer.clone()));
    // Key generation (RSA especially) is CPU-bound: keep it off the request threads.
    let prepared =
        tokio::task::spawn_blocking(move || baton_issuers::prepare(req.issuer, existing.as_ref()))
            .await
            .map_err(|e| ApiError::internal("preparing the issuer failed", e))?;
    let issuer = prepared.map_err(|e| ApiError::bad_request("issuer_invalid", e.to_string()))?;

    let committed = node
        .propose(Op::PutCredential {
            name: name.to_owned(),
            issuer,
            policy,
        })
        .await?;
    if let Output::Put { created, changed } = committed.output {
        tracing::info!(credential = %name, created, changed, revision = committed.revision, "credential written");
    }
    Ok(committed)
}

pub(crate) async fn put(
    state: AppState,
    principal: Option<axum::Extension<crate::auth::Principal>>,
    Name(name): Name,
    JsonBody(req): JsonBody<CredentialRequest>,
) -> Result<Response, ApiError> {
    let app = state.0;
    // A command to run, or a reference to the server's environment or files, acts with the
    // server's authority: only an admin may write one.
    let admin = |p: &crate::auth::Principal| p.allows(baton_core::Capability::Admin, &name);
    if req.issuer.uses_server_authority() && principal.as_ref().is_some_and(|p| !admin(p)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "an exec issuer, or a secret read from the server's environment or files \
             ({\"env\": …}, {\"file\": …}), needs the admin capability: it acts with the \
             server's own authority",
        ));
    }
    let committed = put_credential(&app.node, &name, req).await?;
    let status = match committed.output {
        Output::Put { created: true, .. } => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    let view = show_view(&app, &name, committed.revision)?;
    Ok((status, Json(view)).into_response())
}

fn show_view(app: &crate::App, name: &str, revision: u64) -> Result<serde_json::Value, ApiError> {
    let now = app.node.now();
    let revision = revision.max(app.node.state().revision());
    let view = app.node.state().read(|s| {
        s.credentials
            .get(name)
            .map(|c| serde_json::to_value(CredentialView::new(c, now, revision)))
    });
    match view {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(ApiError::internal("rendering the credential failed", e)),
        None => Err(ApiError::not_found(name)),
    }
}

pub(crate) async fn show(
    state: AppState,
    Name(name): Name,
) -> Result<Json<serde_json::Value>, ApiError> {
    show_view(&state.0, &name, 0).map(Json)
}

/// Lists the credentials whose metadata the caller may read.
pub(crate) async fn list(
    state: AppState,
    principal: Option<axum::Extension<crate::Principal>>,
) -> Json<serde_json::Value> {
    let app: Arc<crate::App> = state.0;
    let now = app.node.now();
    let visible = |name: &str| {
        principal
            .as_ref()
            .is_some_and(|p| p.allows(baton_core::Capability::ReadMeta, name))
    };
    let (summaries, revision) = app.node.state().read(|s| {
        let list: Vec<Summary> = s
            .credentials
            .values()
            .filter(|c| visible(&c.name))
            .map(|c| Summary::new(c, now))
            .collect();
        (list, app.node.state().revision())
    });
    Json(json!({ "credentials": summaries, "revision": revision }))
}

pub(crate) async fn delete(
    state: AppState,
    Name(name): Name,
) -> Result<Json<serde_json::Value>, ApiError> {
    let committed = state
        .0
        .node
        .propose(Op::DeleteCredential { name: name.clone() })
        .await?;
    match committed.output {
        Output::Deleted { existed: true } => {
            tracing::info!(credential = %name, revision = committed.revision, "credential deleted");
            Ok(Json(
                json!({ "deleted": name, "revision": committed.revision }),
            ))
        }
        _ => Err(ApiError::not_found(&name)),
    }
}

/// Rotates on the leader's engine: here when this node leads, else forwarded to the leader.
pub(crate) async fn rotate(state: AppState, Name(name): Name) -> Result<Response, ApiError> {
    let app = state.0;
    if app.node.is_leader() {
        let rotated = rotate_here(&app.engine, &name).await?;
        return Ok(Json(rotated).into_response());
    }
    let (status, body) = app.node.rotate_on_leader(&name).await?;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    Ok((status, Json(body)).into_response())
}

async fn rotate_here(
    engine: &baton_engine::Engine,
    name: &str,
) -> Result<serde_json::Value, ApiError> {
    let rotated = engine.rotate_now(name).await?;
    Ok(json!({
        "version": rotated.version,
        "fence": rotated.fence,
        "not_before": rotated.not_before.to_string(),
        "expires_at": rotated.expires_at.to_string(),
        "revision": rotated.revision,
    }))
}

/// What a rotation forwarded by another node runs: the same rotation, answered as the
/// status and JSON body the API would send.
pub(crate) fn rotate_handler(engine: baton_engine::Engine) -> baton_raft::RotateHandler {
    std::sync::Arc::new(move |name: String| {
        let engine = engine.clone();
        Box::pin(async move {
            match rotate_here(&engine, &name).await {
                Ok(body) => (200, body),
                Err(e) => (e.status.as_u16(), e.body()),
            }
        })
    })
}

pub(crate) async fn jwks(state: AppState, Name(name): Name) -> Result<Response, ApiError> {
    let issuer = state
        .0
        .node
        .state()
        .read(|s| s.credentials.get(&name).map(|c| c.issuer.clone()));
    let issuer = issuer.ok_or_else(|| ApiError::not_found(&name))?;
    let doc = baton_issuers::jwks(&issuer)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "no_jwks", e.to_string()))?;
    Ok((
        [(axum::http::header::CACHE_CONTROL, "max-age=60")],
        Json(doc),
    )
        .into_response())
}
