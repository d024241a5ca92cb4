//! `/v1/leases/{name}`: acquire, renew, release and observe; the holder-side rules.
//!
//! Expiry is judged by the state machine from the time the leader stamped on each command;
//! clients never send timestamps. Every answer carries `max_clock_skew_ms`, so that a holder
//! can stop at `ttl - max_clock_skew - margin` after it sent its last successful renewal,
//! measured on its own monotonic clock.

use std::time::Duration;

use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::Json;
use baton_core::{CommandError, Lease, Op, Output, Secs, Timestamp};
use baton_raft::ProposeError;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::extract::{JsonBody, Name};
use crate::{ApiError, App, AppState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcquireRequest {
    holder: String,
    /// `"10s"`, `"500ms"`, or a number of seconds.
    ttl: DurationArg,
    /// How long to wait for the lease to become free; no waiting by default.
    #[serde(default)]
    wait: Option<DurationArg>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HoldRequest {
    holder: String,
    fence: u64,
}

/// A duration with millisecond precision, written as for humans or as seconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DurationArg {
    Seconds(u64),
    Text(String),
}

impl DurationArg {
    fn millis(&self, field: &str) -> Result<u64, ApiError> {
        match self {
            DurationArg::Seconds(s) => Ok(s.saturating_mul(1000)),
            DurationArg::Text(t) => parse_millis(t).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_request",
                    format!("{field}: `{t}` is not a duration"),
                )
            }),
        }
    }
}

fn parse_millis(text: &str) -> Option<u64> {
    if let Ok(secs) = Secs::parse(text) {
        return Some(secs.as_millis());
    }
    humantime::parse_duration(text.trim())
        .ok()
        .map(|d| d.as_millis() as u64)
}

impl App {
    fn skew_ms(&self) -> u64 {
        self.config.max_clock_skew.as_millis() as u64
    }
}

fn lease_error(e: ProposeError) -> ApiError {
    match e {
        ProposeError::Refused(CommandError::LeaseHeld {
            ref holder,
            expires_at,
            ..
        }) => {
            let details = json!({ "holder": holder, "expires_at": expires_at.to_string() });
            ApiError::new(StatusCode::CONFLICT, "lease_held", e.to_string()).with_details(details)
        }
        ProposeError::Refused(CommandError::NotOwner { .. }) => {
            ApiError::new(StatusCode::CONFLICT, "not_owner", e.to_string())
        }
        ProposeError::Refused(CommandError::LeaseExpired { .. }) => {
            ApiError::new(StatusCode::CONFLICT, "lease_expired", e.to_string())
        }
        ProposeError::Refused(
            CommandError::InvalidTtl { .. }
            | CommandError::InvalidHolder
            | CommandError::InvalidName(_),
        ) => ApiError::bad_request("invalid_request", e.to_string()),
        other => other.into(),
    }
}

pub(crate) async fn acquire(
    state: AppState,
    Name(name): Name,
    JsonBody(req): JsonBody<AcquireRequest>,
) -> Result<Json<Value>, ApiError> {
    let app = state.0;
    let ttl_ms = req.ttl.millis("ttl")?;
    let wait = match &req.wait {
        Some(w) => Duration::from_millis(w.millis("wait")?).min(app.config.max_wait),
        None => Duration::ZERO,
    };
    let give_up = tokio::time::Instant::now() + wait;
    let mut applied = app.node.state().subscribe();

    loop {
        let op = Op::AcquireLease {
            name: name.clone(),
            holder: req.holder.clone(),
            ttl_ms,
        };
        let refusal = match app.node.propose(op).await {
            Ok(committed) => {
                let Output::LeaseGranted {
                    fence,
                    expires_at,
                    renewed,
                } = committed.output
                else {
                    return Err(ApiError::internal("acquire", "unexpected output"));
                };
                tracing::debug!(lease = %name, holder = %req.holder, fence, renewed, "lease granted");
                return Ok(Json(json!({
                    "name": name,
                    "holder": req.holder,
                    "fence": fence,
                    "expires_at": expires_at.to_string(),
                    "ttl_ms": ttl_ms,
                    "max_clock_skew_ms": app.skew_ms(),
                    "renewed": renewed,
                    "revision": committed.revision,
                })));
            }
            Err(e) => e,
        };
        if !matches!(
            refusal,
            ProposeError::Refused(CommandError::LeaseHeld { .. })
        ) {
            return Err(lease_error(refusal));
        }

        // Wait until the applied state says the grant ended (a release, or its expiry), then
        // try again. A refused acquire is itself a log entry, so never retry on a guess.
        loop {
            let now = app.node.now();
            let live_until = app.node.state().read(|s| {
                s.leases
                    .get(&name)
                    .and_then(|l| l.live_hold(now))
                    .map(|h| h.expires_at())
            });
            let Some(live_until) = live_until else { break };
            let t = tokio::time::Instant::now();
            if t >= give_up {
                return Err(lease_error(refusal));
            }
            let until_expiry = Duration::from_millis(live_until.millis_since(now) + 1);
            let _ =
                tokio::time::timeout_at((t + until_expiry).min(give_up), applied.changed()).await;
        }
    }
}

pub(crate) async fn renew(
    state: AppState,
    Name(name): Name,
    JsonBody(req): JsonBody<HoldRequest>,
) -> Result<Json<Value>, ApiError> {
    let app = state.0;
    let op = Op::RenewLease {
        name: name.clone(),
        holder: req.holder,
        fence: req.fence,
    };
    let committed = app.node.propose(op).await.map_err(lease_error)?;
    let Output::LeaseRenewed { fence, expires_at } = committed.output else {
        return Err(ApiError::internal("renew", "unexpected output"));
    };
    Ok(Json(json!({
        "name": name,
        "fence": fence,
        "expires_at": expires_at.to_string(),
        "max_clock_skew_ms": app.skew_ms(),
        "revision": committed.revision,
    })))
}

pub(crate) async fn release(
    state: AppState,
    Name(name): Name,
    JsonBody(req): JsonBody<HoldRequest>,
) -> Result<Json<Value>, ApiError> {
    let op = Op::ReleaseLease {
        name: name.clone(),
        holder: req.holder,
        fence: req.fence,
    };
    let committed = state.0.node.propose(op).await.map_err(lease_error)?;
    let Output::LeaseReleased { fence, released } = committed.output else {
        return Err(ApiError::internal("release", "unexpected output"));
    };
    Ok(Json(json!({
        "name": name,
        "fence": fence,
        "released": released,
        "revision": committed.revision,
    })))
}

/// What an observer compares: the lease's revision, and whether its grant is live.
fn observed(lease: Option<&Lease>, now: Timestamp) -> (u64, Option<u64>) {
    lease.map_or((0, None), |l| {
        (l.revision, l.live_hold(now).map(|h| h.fence))
    })
}

fn view(name: &str, lease: Option<&Lease>, now: Timestamp, skew_ms: u64) -> Value {
    let hold = lease.and_then(|l| l.live_hold(now));
    json!({
        "name": name,
        "holder": hold.map(|h| json!({
            "id": h.holder,
            "fence": h.fence,
            "acquired_at": h.acquired_at.to_string(),
            "renewed_at": h.renewed_at.to_string(),
            "expires_at": h.expires_at().to_string(),
            "ttl_ms": h.ttl_ms,
        })),
        "last_fence": lease.map_or(0, |l| l.last_fence),
        "revision": lease.map_or(0, |l| l.revision),
        "max_clock_skew_ms": skew_ms,
    })
}

/// `GET /v1/leases/{name}[?wait=30s&after=REVISION]`: the lease now, or, with `after`, once it
/// differs from what the observer saw at that revision (a new grant, a release, an expiry).
pub(crate) async fn observe(
    state: AppState,
    Name(name): Name,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let app = state.0;
    crate::extract::consistency(&app, query.as_deref()).await?;
    let mut wait = Duration::ZERO;
    let mut after = None;
    for pair in query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "wait" => {
                let ms = parse_millis(value).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_wait",
                        format!("wait: `{value}` is not a duration"),
                    )
                })?;
                wait = Duration::from_millis(ms).min(app.config.max_wait);
            }
            "after" => {
                after = Some(value.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(
                        "invalid_after",
                        format!("after: `{value}` is not a revision"),
                    )
                })?);
            }
            _ => {}
        }
    }

    let give_up = tokio::time::Instant::now() + wait;
    let mut applied = app.node.state().subscribe();
    let node = &app.node;
    // What the observer saw: the lease at `after`, with a live grant if one is live now.
    let baseline = after.map(|_| {
        node.state()
            .read(|s| observed(s.leases.get(&name), node.now()))
    });
    loop {
        let now = node.now();
        let (current, expires_at, body) = node.state().read(|s| {
            let lease = s.leases.get(&name);
            let expires = lease.and_then(|l| l.live_hold(now)).map(|h| h.expires_at());
            (
                observed(lease, now),
                expires,
                view(&name, lease, now, app.skew_ms()),
            )
        });
        let changed = match (after, baseline) {
            (Some(after), Some(base)) => current.0 > after || current != base,
            _ => true,
        };
        let t = tokio::time::Instant::now();
        if changed || t >= give_up {
            return Ok(Json(body));
        }
        let until_expiry = expires_at.map_or(Duration::MAX, |e| {
            Duration::from_millis(e.millis_since(now) + 1)
        });
        let wake = t
            .checked_add(until_expiry)
            .map_or(give_up, |w| w.min(give_up));
        let _ = tokio::time::timeout_at(wake, applied.changed()).await;
    }
}
