//! `GET /v1/credentials/{name}/token`: the one endpoint that hands out secrets.
//!
//! A read is served from the node's applied state. When no version may be handed out (none
//! issued yet, or the current one is within `min_remaining` of its end and nothing follows),
//! the read waits, bounded by `?wait=`, for the rotation engine to commit one; it never calls
//! an issuer itself.
//!
//! Rendering the JSON answer is cached per credential ([`TokenCache`]); the rules above are
//! checked on every read, and `Cache-Control: max-age` is computed from the time of the read.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::extract::RawQuery;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use baton_core::{Credential, Secs, Timestamp, TokenView, Version};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::extract::Name;
use crate::{ApiError, AppState};

#[derive(Serialize)]
struct NextView<'a> {
    token: &'a str,
    version: u64,
    not_before: String,
    expires_at: String,
}

/// The answer's body without its last field, `revision`, which changes with every applied
/// command and is appended per request.
#[derive(Serialize)]
struct TokenHead<'a> {
    token: &'a str,
    version: u64,
    not_before: String,
    expires_at: String,
    refresh_at: String,
    next: Option<NextView<'a>>,
}

/// What a rendered answer depends on, besides the revision and the time of the read: the
/// credential's identity, the versions the read hands out and when to ask again.
///
/// A version is named by its number and its fence: fences never repeat in the state, so a
/// version with the same fence is the same commit and holds the same token. Its window is
/// part of the key because a commit may shorten the window of the version it replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RenderKey {
    uid: u64,
    current: VersionKey,
    next: Option<VersionKey>,
    refresh_at: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct VersionKey {
    number: u64,
    fence: u64,
    not_before: Timestamp,
    expires_at: Timestamp,
}

impl VersionKey {
    fn of(v: &Version) -> Self {
        VersionKey {
            number: v.number,
            fence: v.fence,
            not_before: v.not_before,
            expires_at: v.expires_at,
        }
    }
}

impl RenderKey {
    fn of(uid: u64, view: &TokenView<'_>) -> Self {
        RenderKey {
            uid,
            current: VersionKey::of(view.current),
            next: view.next.map(VersionKey::of),
            refresh_at: view.refresh_at,
        }
    }
}

/// A rendered answer, reused for as long as its key matches what a read computes. Its
/// `Debug` leaves the body out: the body holds the token.
struct Rendered {
    key: RenderKey,
    /// The JSON body up to the revision's value: `{"token":…,"revision":`. It holds the
    /// token, so it is wiped when the entry is replaced or dropped, like a [`baton_core::Secret`].
    head: Zeroizing<String>,
    /// The `ETag`, checked to be a valid header value when rendered.
    etag: String,
}

impl Rendered {
    fn new(key: RenderKey, view: &TokenView<'_>) -> Option<Self> {
        let next = view.next.map(|n: &Version| NextView {
            token: n.token.expose(),
            version: n.number,
            not_before: n.not_before.to_string(),
            expires_at: n.expires_at.to_string(),
        });
        let head = TokenHead {
            token: view.current.token.expose(),
            version: view.current.number,
            not_before: view.current.not_before.to_string(),
            expires_at: view.current.expires_at.to_string(),
            refresh_at: view.refresh_at.to_string(),
            next,
        };
        // Serializing strings and numbers cannot fail.
        let mut head = Zeroizing::new(serde_json::to_string(&head).ok()?);
        head.pop();
        head.push_str(",\"revision\":");
        let etag = format!(
            "\"{}-{}-{}\"",
            key.uid,
            key.current.number,
            key.next.map_or(0, |n| n.number)
        );
        HeaderValue::from_str(&etag).ok()?;
        Some(Rendered { key, head, etag })
    }

    /// The whole body at `revision`, and the `ETag`. Both are copies, so that reads on
    /// different threads share no reference count.
    fn answer(&self, revision: u64) -> (String, HeaderValue) {
        let mut body = String::with_capacity(self.head.len() + 21);
        body.push_str(&self.head);
        // Writing to a String cannot fail.
        let _ = write!(body, "{revision}}}");
        let etag = HeaderValue::from_str(&self.etag).unwrap_or(HeaderValue::from_static("\"\""));
        (body, etag)
    }
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendered")
            .field("key", &self.key)
            .field("head_len", &self.head.len())
            .field("etag", &self.etag)
            .finish()
    }
}

/// Rendered answers by credential name.
///
/// Every read still computes the token view from the applied state at the time of the read
/// (so `min_remaining`, expiry and the switch to `next` apply as before); only turning that
/// view into JSON is skipped when it matches the cached key. An entry whose credential is
/// read as missing is dropped.
#[derive(Default)]
pub(crate) struct TokenCache {
    entries: RwLock<HashMap<String, Rendered>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("TokenCache")
            .field("entries", &entries.len())
            .finish()
    }
}

impl TokenCache {
    /// The cached answer of `name` at `revision`, if it was rendered for `key`.
    fn answer(&self, name: &str, key: &RenderKey, revision: u64) -> Option<(String, HeaderValue)> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(name)
            .filter(|r| r.key == *key)
            .map(|r| r.answer(revision))
    }

    fn put(&self, name: &str, rendered: Rendered) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        match entries.get_mut(name) {
            Some(slot) => *slot = rendered,
            None => {
                entries.insert(name.to_owned(), rendered);
            }
        }
    }

    fn forget(&self, name: &str) {
        let present = self
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(name);
        if present {
            let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
            entries.remove(name);
        }
    }
}

/// A servable answer: what to send and how long a client may keep it.
struct Answer {
    body: String,
    etag: HeaderValue,
    max_age: u64,
}

enum Lookup {
    Missing,
    NotYet {
        retry_at: Option<Timestamp>,
        last_error: Option<String>,
    },
    Ready(Answer),
}

fn lookup(c: &Credential, now: Timestamp, revision: u64, cache: &TokenCache) -> Lookup {
    let Some(view) = c.token_view(now) else {
        return Lookup::NotYet {
            retry_at: c.status.retry_at,
            last_error: c.status.last_error.clone(),
        };
    };
    let key = RenderKey::of(c.uid, &view);
    let (body, etag) = match cache.answer(&c.name, &key, revision) {
        Some(hit) => hit,
        None => match Rendered::new(key, &view) {
            Some(fresh) => {
                let answer = fresh.answer(revision);
                cache.put(&c.name, fresh);
                answer
            }
            // Unreachable in practice (see `Rendered::new`); treat it as "not yet".
            None => {
                return Lookup::NotYet {
                    retry_at: None,
                    last_error: None,
                }
            }
        },
    };
    Lookup::Ready(Answer {
        body,
        etag,
        max_age: view.refresh_at.millis_since(now) / 1000,
    })
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
    IfNoneMatch(if_none_match): IfNoneMatch,
) -> Result<Response, ApiError> {
    let app = state.0;
    let wait = wait_of(
        query.as_deref(),
        app.config.default_wait,
        app.config.max_wait,
    )?;
    crate::extract::consistency(&app, query.as_deref()).await?;
    let give_up = tokio::time::Instant::now() + wait;
    // Subscribed to only once a read has to wait; the state is looked at again after
    // subscribing, so no change is missed.
    let mut applied = None;

    loop {
        let now = app.node.now();
        let shared = app.node.state();
        let found = shared.read(|s| match s.credentials.get(&name) {
            None => Lookup::Missing,
            Some(c) => lookup(c, now, shared.revision(), &app.tokens),
        });
        let (retry_at, last_error) = match found {
            Lookup::Ready(answer) => return Ok(respond(answer, if_none_match.as_ref())),
            Lookup::Missing => {
                app.tokens.forget(&name);
                return Err(ApiError::not_found(&name));
            }
            Lookup::NotYet {
                retry_at,
                last_error,
            } => (retry_at, last_error),
        };
        let Some(changes) = applied.as_mut() else {
            applied = Some(shared.subscribe());
            continue;
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
        let _ = tokio::time::timeout_at(tick.min(give_up), changes.changed()).await;
    }
}

/// The request's `If-None-Match`, taken without copying the other headers (as extracting a
/// whole `HeaderMap` would).
pub(crate) struct IfNoneMatch(Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IfNoneMatch(
            parts.headers.get(header::IF_NONE_MATCH).cloned(),
        ))
    }
}

fn respond(answer: Answer, if_none_match: Option<&HeaderValue>) -> Response {
    let etag = answer.etag;
    let not_modified = if_none_match
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().as_bytes() == etag.as_bytes()));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let json = HeaderValue::from_static("application/json");
        ([(header::CONTENT_TYPE, json)], answer.body).into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::try_from(format!("max-age={}", answer.max_age)) {
        h.insert(header::CACHE_CONTROL, v);
    }
    h.insert(header::ETAG, etag);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::Secret;

    fn version(number: u64, token: &str) -> Version {
        Version {
            number,
            token: Secret::new(token),
            issued_at: Timestamp::from_secs(100),
            not_before: Timestamp::from_secs(100),
            expires_at: Timestamp::from_secs(3700),
            fence: number,
        }
    }

    #[test]
    fn debug_of_the_cache_never_shows_a_token() {
        let current = version(1, "cached-secret-token");
        let view = TokenView {
            current: &current,
            next: None,
            refresh_at: Timestamp::from_secs(2800),
        };
        let rendered = Rendered::new(RenderKey::of(7, &view), &view).expect("rendered");
        assert!(rendered.head.contains("cached-secret-token"));
        let cache = TokenCache::default();
        let shown_entry = format!("{rendered:?}");
        cache.put("c", rendered);
        for shown in [shown_entry, format!("{cache:?}")] {
            assert!(!shown.contains("cached-secret-token"), "{shown}");
        }
    }

    #[test]
    fn the_body_is_the_rendered_head_with_the_revision_of_the_read() {
        let current = version(1, "t");
        let view = TokenView {
            current: &current,
            next: None,
            refresh_at: Timestamp::from_secs(2800),
        };
        let rendered = Rendered::new(RenderKey::of(7, &view), &view).expect("rendered");
        let (body, etag) = rendered.answer(42);
        let body: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(body["revision"], 42);
        assert_eq!(body["token"], "t");
        assert_eq!(body["next"], serde_json::Value::Null);
        assert_eq!(etag, "\"7-1-0\"");
    }
}
