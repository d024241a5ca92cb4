//! The API's one error type.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use baton_core::CommandError;
use baton_engine::RotateError;
use baton_raft::ProposeError;
use serde_json::json;

/// An error as the client sees it: a status, a stable code and a message for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds after which retrying makes sense (`Retry-After`).
    pub retry_after: Option<u64>,
    /// Fields added to the error object, for clients that act on them.
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            details: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(name: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no credential is named `{name}`"),
        )
    }

    /// A server fault: logged here, once, and described to the client without detail.
    pub fn internal(what: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "{what}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{what}; see the server log"),
        )
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl ApiError {
    /// The JSON body of the error's response.
    pub fn body(&self) -> serde_json::Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let (Some(serde_json::Value::Object(extra)), Some(obj)) =
            (self.details.clone(), error.as_object_mut())
        {
            obj.extend(extra);
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        let message = e.to_string();
        match e {
            CommandError::InvalidName(_) => ApiError::bad_request("invalid_name", message),
            CommandError::InvalidPolicy(_) => ApiError::bad_request("policy_invalid", message),
            CommandError::InvalidIssuer(_) => ApiError::bad_request("issuer_invalid", message),
            CommandError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            CommandError::RotationInProgress { .. } => {
                ApiError::new(StatusCode::CONFLICT, "rotation_in_progress", message).retry_after(1)
            }
            CommandError::MinUseNotReached { .. } => {
                ApiError::new(StatusCode::CONFLICT, "min_use_not_reached", message)
            }
            CommandError::NextAlreadyMinted { .. } => {
                ApiError::new(StatusCode::CONFLICT, "next_already_minted", message)
            }
            _ => ApiError::new(StatusCode::CONFLICT, "conflict", message),
        }
    }
}

impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::Refused(e) => e.into(),
            ProposeError::NotLeader { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_leader", e.to_string())
                    .retry_after(1)
            }
            ProposeError::Unavailable(message) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
                    .retry_after(1)
            }
            ProposeError::Invalid(message) => ApiError::bad_request("invalid_request", message),
            other => ApiError::internal("the write could not be replicated", other),
        }
    }
}

impl From<RotateError> for ApiError {
    fn from(e: RotateError) -> Self {
        match e {
            RotateError::NotFound(name) => ApiError::not_found(&name),
            RotateError::InProgress(_) => {
                ApiError::new(StatusCode::CONFLICT, "rotation_in_progress", e.to_string())
                    .retry_after(1)
            }
            RotateError::Refused(e) => e.into(),
            RotateError::Issuer(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "issuer_failed", e.to_string())
            }
            RotateError::OutcomeUnknown(_) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "issuer_outcome_unknown",
                e.to_string(),
            ),
            RotateError::Unavailable(message) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
                    .retry_after(1)
            }
            other => ApiError::internal("the rotation could not be completed", other),
        }
    }
}

pub(crate) async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "no such endpoint; see the HTTP API in the README",
    )
}

pub(crate) async fn bad_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}
