//! `GET /v1/credentials/{name}/token`: the one endpoint that hands out secrets.
//!
//! A read is served from the node's applied state. When no version may be handed out (none
//! issued yet, or the current one is within `min_remaining` of its end and nothing follows),
//! the read waits, bounded by `?wait=`, for the rotation engine to commit one; it never calls
//! an issuer itself.

use std::time::Duration;

use axum::extract::RawQuery;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use baton_core::{Credential, Secs, Timestamp, Version};
use serde::Serialize;

use crate::extract::Name;
use crate::{ApiError, AppState};

#[derive(Serialize)]
struct NextView<'a> {
    token: &'a str,
    version: u64,
    not_before: String,
    expires_at: String,
}

#[derive(Serialize)]
struct TokenBody<'a> {
    token: &'a str,
    version: u64,
    not_before: String,
    expires_at: String,
    refresh_at: String,
    next: Option<NextView<'a>>,
    revision: u64,
}

/// A rendered answer.
struct Rendered {
    body: String,
    etag: String,
    max_age: u64,
}

enum Lookup {
    Missing,
    NotYet {
        retry_at: Option<Timestamp>,
        last_error: Option<String>,
    },
    Ready(Rendered),
}

fn render(c: &Credential, now: Timestamp, revision: u64) -> Lookup {
    let Some(view) = c.token_view(now) else {
        return Lookup::NotYet {
            retry_at: c.status.retry_at,
            last_error: c.status.last_error.clone(),
        };
    };
    let next = view.next.map(|n: &Version| NextView {
        token: n.token.expose(),
        version: n.number,
        not_before: n.not_before.to_string(),
        expires_at: n.expires_at.to_string(),
    });
    let body = TokenBody {
        token: view.current.token.expose(),
        version: view.current.number,
        not_before: view.current.not_before.to_string(),
        expires_at: view.current.expires_at.to_string(),
        refresh_at: view.refresh_at.to_string(),
        next,
        revision,
    };
    let etag = format!(
        "\"{}-{}-{}\"",
        c.uid,
        view.current.number,
        view.next.map_or(0, |n| n.number)
    );
    let max_age = view.refresh_at.millis_since(now) / 1000;
    match serde_json::to_string(&body) {
        Ok(body) => Lookup::Ready(Rendered {
            body,
            etag,
            max_age,
        }),
        // Serializing strings and numbers cannot fail; treat it as "not yet" if it ever does.
        Err(_) => Lookup::NotYet {
            retry_at: None,
            last_error: None,
        },
    }
}

/// Reads `?wait=` (a duration such as `5s`, or seconds), capped by the configuration.
fn wait_of(query: Option<&str>, default: Duration, max: Duration) -> Result<Duration, ApiError> {
    let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes());
    for (key, value) in pairs {
        if key == "wait" {
            let secs = Secs::parse(&value)
                .map_err(|e| ApiError::bad_request("invalid_wait", format!("wait: {e}")))?;
            return Ok(secs.as_std().min(max));
        }
    }
    Ok(default)
}

pub(crate) async fn read(
    state: AppState,
    Name(name): Name,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let app = state.0;
    let wait = wait_of(
        query.as_deref(),
        app.config.default_wait,
        app.config.max_wait,
    )?;
    let give_up = tokio::time::Instant::now() + wait;
    let mut applied = app.node.state().subscribe();

    loop {
        let now = app.node.now();
        let shared = app.node.state();
        let lookup = shared.read(|s| match s.credentials.get(&name) {
            None => Lookup::Missing,
            Some(c) => render(c, now, shared.revision()),
        });
        let (retry_at, last_error) = match lookup {
            Lookup::Ready(rendered) => return Ok(respond(rendered, &headers)),
            Lookup::Missing => return Err(ApiError::not_found(&name)),
            Lookup::NotYet {
                retry_at,
                last_error,
            } => (retry_at, last_error),
        };

        // Wait for the next applied change, and look again at least every 250 ms (a version
        // can become servable by time alone).
        let tick = tokio::time::Instant::now() + Duration::from_millis(250);
        if tokio::time::Instant::now() >= give_up {
            let after = retry_at.map_or(1, |t| t.millis_since(now).div_ceil(1000).max(1));
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "token_unavailable",
                match last_error {
                    // Rotation errors never hold a secret: issuers leave them out.
                    Some(error) => format!(
                        "no version of `{name}` can be served yet; the last rotation failed: \
                         {error}"
                    ),
                    None => format!(
                        "no version of `{name}` can be served yet; the next rotation is pending"
                    ),
                },
            )
            .retry_after(after));
        }
        let _ = tokio::time::timeout_at(tick.min(give_up), applied.changed()).await;
    }
}

fn respond(rendered: Rendered, headers: &HeaderMap) -> Response {
    let cache = format!("max-age={}", rendered.max_age);
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == rendered.etag));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], rendered.body).into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&cache) {
        h.insert(header::CACHE_CONTROL, v);
    }
    if let Ok(v) = HeaderValue::from_str(&rendered.etag) {
        h.insert(header::ETAG, v);
    }
    response
}
