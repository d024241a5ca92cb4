//! Request extractors whose rejections are [`ApiError`]s.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// A JSON body, parsed with messages that say what is wrong and where.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the request body exceeds {} bytes", crate::MAX_BODY_BYTES),
                )
            } else {
                ApiError::bad_request("bad_body", rejection.body_text())
            }
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = if path == "." || path.is_empty() {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            };
            let code = if inner.is_syntax() || inner.is_eof() {
                "malformed_json"
            } else {
                "invalid_request"
            };
            ApiError::bad_request(code, message)
        })?;
        de.end()
            .map_err(|e| ApiError::bad_request("malformed_json", e.to_string()))?;
        Ok(JsonBody(value))
    }
}

/// A credential name from the path, validated.
#[derive(Debug)]
pub(crate) struct Name(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Name {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(name) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request("invalid_name", e.body_text()))?;
        baton_core::validate_name(&name)
            .map_err(|e| ApiError::bad_request("invalid_name", e.to_string()))?;
        Ok(Name(name))
    }
}

/// Honours `?consistency=` on a read: `local` (the default) reads this node's applied state as
/// it is; `linearizable` first asks the leader what is committed and waits until this node has
/// applied it, so that the read sees every write acknowledged before it began.
pub(crate) async fn consistency(app: &crate::App, query: Option<&str>) -> Result<(), ApiError> {
    let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes());
    for (key, value) in pairs {
        if key != "consistency" {
            continue;
        }
        return match value.as_ref() {
            "local" => Ok(()),
            "linearizable" => app.node.read_index().await.map(|_| ()).map_err(Into::into),
            other => Err(ApiError::bad_request(
                "invalid_consistency",
                format!("consistency: `{other}` is neither `local` nor `linearizable`"),
            )),
        };
    }
    Ok(())
}
