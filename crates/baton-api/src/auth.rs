//! Authentication and authorization of every request, as one middleware in front of the
//! handlers.
//!
//! Each route is mapped to what it needs ([`need_of`]): nothing (`/healthz`), an authenticated
//! caller (listing credentials, which the handler filters), or a capability on the name in its
//! path. The caller is a [`Principal`]: the holder of a bearer token baton issued, or a client
//! certificate whose subject the configuration maps to a policy. The middleware also limits the
//! size of headers, the rate of writes per principal and the time a request may take, and
//! writes the audit line of every request that reads a secret or changes state.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{MatchedPath, RawPathParams, Request};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use baton_core::{token_accessor, token_hash, AccessPolicy, AuthState, Capability, Timestamp};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use crate::audit::{AuditLine, Sink};
use crate::{ApiError, AppState};

/// The prefix of every token baton issues; the rest is 64 hex digits (256 random bits).
pub const TOKEN_PREFIX: &str = "btn_";

/// How requests are authenticated, limited and audited.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// `/metrics` without a token; otherwise it needs `admin`.
    pub metrics_open: bool,
    /// Client-certificate subjects (RFC 4514, `CN=worker-1`) and the policy each one gets.
    pub certificates: BTreeMap<String, String>,
    /// Where audit lines are appended; None: no audit trail.
    pub audit_log: Option<PathBuf>,
    /// Refuse (503) a request whose audit line cannot be written.
    pub audit_required: bool,
    /// Writes per second each principal may sustain.
    pub write_rate: f64,
    /// Writes a principal may make in a burst.
    pub write_burst: f64,
    /// The longest a request may take; above the longest long-poll wait.
    pub request_timeout: Duration,
    /// The largest total size of a request's header names and values.
    pub max_header_bytes: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            metrics_open: false,
            certificates: BTreeMap::new(),
            audit_log: None,
            audit_required: false,
            write_rate: 50.0,
            write_burst: 100.0,
            request_timeout: Duration::from_secs(60),
            max_header_bytes: 16 * 1024,
        }
    }
}

/// Who is asking, as the authorization layer established it. Handlers find it as a request
/// extension.
#[derive(Clone, Debug)]
pub struct Principal {
    pub kind: PrincipalKind,
    /// The token's accessor, or the certificate's subject. Never a secret.
    pub id: String,
    pub policy_name: String,
    pub policy: Arc<AccessPolicy>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    Token,
    Certificate,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Token => "token",
            PrincipalKind::Certificate => "certificate",
        }
    }
}

impl Principal {
    pub fn allows(&self, cap: Capability, target: &str) -> bool {
        self.policy.allows(cap, target)
    }
}

/// What a route needs of its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Need {
    Open,
    /// Any authenticated caller; the handler decides what it may see.
    Authenticated,
    /// One of these capabilities on the target.
    Any(&'static [Capability]),
}

/// The need of a request, by its route pattern and method.
fn need_of(route: Option<&str>, method: &Method, metrics_open: bool) -> Need {
    use Capability::*;
    let Some(route) = route else {
        return Need::Authenticated;
    };
    let read = method == Method::GET || method == Method::HEAD;
    match route {
        "/healthz" => Need::Open,
        "/metrics" if metrics_open => Need::Open,
        "/metrics" => Need::Any(&[Admin]),
        "/v1/credentials" => Need::Authenticated,
        "/v1/credentials/{name}" if read => Need::Any(&[ReadMeta]),
        "/v1/credentials/{name}" => Need::Any(&[Write]),
        "/v1/credentials/{name}/rotate" => Need::Any(&[Rotate]),
        "/v1/credentials/{name}/token" => Need::Any(&[ReadToken]),
        // Public keys: whoever may read the tokens or the metadata may verify them.
        "/v1/credentials/{name}/jwks.json" => Need::Any(&[ReadToken, ReadMeta]),
        r if r.starts_with("/v1/leases/") => Need::Any(&[Lease]),
        r if r.starts_with("/v1/kv/") => Need::Any(&[Kv]),
        r if r.starts_with("/v1/auth/") => Need::Any(&[Admin]),
        r if r.starts_with("/v1/cluster/") => Need::Any(&[Admin]),
        _ => Need::Authenticated,
    }
}

/// Whether a request is written to the audit trail: it reads a secret or may change state.
fn is_audited(route: Option<&str>, method: &Method) -> bool {
    match route {
        None => false,
        Some("/v1/credentials/{name}/token") => true,
        Some(_) => method != Method::GET && method != Method::HEAD,
    }
}

/// Per-principal token buckets for writes.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// Takes one write from `id`'s bucket, or says how many seconds until one is available.
    fn take(&self, id: &str, rate: f64, burst: f64) -> Result<(), u64> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, last) = buckets.entry(id.to_owned()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        let wait = if rate > 0.0 {
            ((1.0 - *tokens) / rate).ceil()
        } else {
            60.0
        };
        Err((wait as u64).max(1))
    }
}

/// A 401 that tells the client to present a bearer token.
fn unauthorized(message: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Whether `token` has the shape of a token baton issues.
fn well_formed(token: &str) -> bool {
    token.strip_prefix(TOKEN_PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Why a caller is not authenticated: the message of its 401.
type Unauthenticated = &'static str;

/// Finds the principal of a bearer token, judging expiry at `now`.
fn token_principal(
    auth: &AuthState,
    token: &str,
    now: Timestamp,
) -> Result<Principal, Unauthenticated> {
    if !well_formed(token) {
        return Err("the bearer token is malformed");
    }
    let accessor = token_accessor(token);
    let hash = token_hash(token);
    let record = auth
        .tokens
        .get(&accessor)
        .filter(|r| bool::from(r.hash.as_bytes().ct_eq(hash.as_bytes())))
        .ok_or("the bearer token is unknown or revoked")?;
    if record.is_expired(now) {
        return Err("the bearer token has expired");
    }
    Ok(Principal {
        kind: PrincipalKind::Token,
        id: accessor,
        policy_name: record.policy.clone(),
        policy: Arc::new(auth.policy(&record.policy).unwrap_or_default()),
    })
}

/// The caller of a request: its bearer token if it sent one, else its mapped certificate.
fn authenticate(app: &crate::App, req: &Request) -> Result<Principal, Unauthenticated> {
    // Two headers could be read differently by a proxy and by baton: refuse the request.
    if req
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err("send one Authorization header, not several");
    }
    let bearer = match req.headers().get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let text = value.to_str().unwrap_or("");
            let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err("the Authorization header must be `Bearer TOKEN`");
            }
            Some(rest.trim().to_owned())
        }
    };
    let now = app.node.now();
    if let Some(token) = bearer {
        let token = baton_core::Secret::new(token);
        return app
            .node
            .state()
            .read(|s| token_principal(&s.auth, token.expose(), now));
    }

    let subject = req
        .extensions()
        .get::<crate::PeerCertificate>()
        .map(|c| c.subject.clone());
    let mapped = subject.and_then(|subject| {
        let policy_name = app.config.auth.certificates.get(&subject)?.clone();
        Some((subject, policy_name))
    });
    match mapped {
        Some((subject, policy_name)) => {
            let policy = app
                .node
                .state()
                .read(|s| s.auth.policy(&policy_name))
                .unwrap_or_default();
            Ok(Principal {
                kind: PrincipalKind::Certificate,
                id: subject,
                policy_name,
                policy: Arc::new(policy),
            })
        }
        None => Err("this endpoint needs a bearer token"),
    }
}

fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum()
}

/// The `{name}` of the route, as sent: the target of the request.
fn target_of(params: &RawPathParams) -> String {
    params
        .iter()
        .find(|(key, _)| *key == "name")
        .map(|(_, value)| value.to_owned())
        .unwrap_or_default()
}

/// The middleware: authenticate, authorize, limit, run the handler, audit.
pub(crate) async fn guard(state: AppState, req: Request, next: Next) -> Response {
    let app = state.0;
    let cfg = &app.config.auth;
    if header_bytes(req.headers()) > cfg.max_header_bytes {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("the request headers exceed {} bytes", cfg.max_header_bytes),
        )
        .into_response();
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let method = req.method().clone();
    let (mut parts, body) = req.into_parts();
    let target = match <RawPathParams as axum::extract::FromRequestParts<()>>::from_request_parts(
        &mut parts,
        &(),
    )
    .await
    {
        Ok(params) => target_of(&params),
        Err(_) => String::new(),
    };
    let mut req = Request::from_parts(parts, body);

    let need = need_of(route.as_deref(), &method, cfg.metrics_open);
    let audited = is_audited(route.as_deref(), &method);
    let mut audit = AuditLine {
        principal: None,
        action: format!("{method} {}", route.as_deref().unwrap_or("")),
        target: target.clone(),
    };

    let principal = if need == Need::Open {
        None
    } else {
        match authenticate(&app, &req) {
            Ok(p) => Some(p),
            // A cluster node that joined no cluster yet knows no token at all.
            Err(_) if !app.node.is_initialized() => {
                let response = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_in_cluster",
                    "this node belongs to no cluster yet: run `baton cluster init` or \
                     `baton cluster join` first",
                )
                .into_response();
                return finish(&app, audited, &audit, None, response);
            }
            Err(why) => return finish(&app, audited, &audit, None, unauthorized(why)),
        }
    };
    if let Some(p) = &principal {
        audit.principal = Some((p.kind, p.id.clone()));
        if let Need::Any(caps) = need {
            if !caps.iter().any(|cap| p.allows(*cap, &target)) {
                let names: Vec<String> = caps.iter().map(ToString::to_string).collect();
                let refused = ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    if target.is_empty() {
                        format!(
                            "policy `{}` does not grant {}",
                            p.policy_name,
                            names.join(" or ")
                        )
                    } else {
                        format!(
                            "policy `{}` does not grant {} on `{target}`",
                            p.policy_name,
                            names.join(" or ")
                        )
                    },
                )
                .into_response();
                return finish(&app, audited, &audit, None, refused);
            }
        }
        let write = method != Method::GET && method != Method::HEAD;
        if write {
            if let Err(secs) = app.limiter.take(&p.id, cfg.write_rate, cfg.write_burst) {
                let refused = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "more than {} writes per second for this principal",
                        cfg.write_rate
                    ),
                )
                .retry_after(secs)
                .into_response();
                return finish(&app, audited, &audit, None, refused);
            }
        }
        req.extensions_mut().insert(p.clone());
    }

    // With a required audit trail, nothing runs unless its line can be written.
    let sink = if audited {
        match app.audit.open() {
            Ok(sink) => sink,
            Err(e) if cfg.audit_required => return audit_failed(&e),
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the audit log");
                None
            }
        }
    } else {
        None
    };

    let response = match tokio::time::timeout(cfg.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {}s",
                cfg.request_timeout.as_secs()
            ),
        )
        .into_response(),
    };
    finish(&app, audited, &audit, sink, response)
}

/// Writes the audit line of an audited request and returns its response, or a 503 when the
/// line is required and could not be written.
fn finish(
    app: &crate::App,
    audited: bool,
    line: &AuditLine,
    sink: Option<Sink>,
    response: Response,
) -> Response {
    if !audited || app.audit.is_off() {
        return response;
    }
    let sink = match sink {
        Some(sink) => Ok(sink),
        None => app.audit.open().and_then(|s| {
            s.ok_or_else(|| std::io::Error::other("the audit log is not configured"))
        }),
    };
    let named;
    let line = match response.extensions().get::<crate::audit::AuditTarget>() {
        Some(target) if line.target.is_empty() => {
            named = AuditLine {
                principal: line.principal.clone(),
                action: line.action.clone(),
                target: target.0.clone(),
            };
            &named
        }
        _ => line,
    };
    let written = sink.and_then(|sink| {
        sink.write(
            line,
            app.node.now(),
            response.status().as_u16(),
            app.node.state().revision(),
        )
    });
    match written {
        Ok(()) => response,
        Err(e) if app.config.auth.audit_required && response.status().is_success() => {
            audit_failed(&e)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot write an audit line");
            response
        }
    }
}

fn audit_failed(error: &std::io::Error) -> Response {
    tracing::error!(%error, "cannot write the audit log; refusing audited requests");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        "the audit log cannot be written; see the server log",
    )
    .retry_after(1)
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_needs_what_the_readme_says() {
        use Capability::*;
        let get = Method::GET;
        let put = Method::PUT;
        let post = Method::POST;
        assert_eq!(need_of(Some("/healthz"), &get, false), Need::Open);
        assert_eq!(need_of(Some("/metrics"), &get, true), Need::Open);
        assert_eq!(need_of(Some("/metrics"), &get, false), Need::Any(&[Admin]));
        assert_eq!(
            need_of(Some("/v1/credentials/{name}"), &put, false),
            Need::Any(&[Write])
        );
        assert_eq!(
            need_of(Some("/v1/leases/{name}/acquire"), &post, false),
            Need::Any(&[Lease])
        );
        assert_eq!(need_of(None, &get, false), Need::Authenticated);
    }

    #[test]
    fn only_issued_shapes_are_well_formed() {
        assert!(well_formed(&format!("btn_{}", "a".repeat(64))));
        assert!(!well_formed(&format!("btn_{}", "A".repeat(64))));
        assert!(!well_formed("btn_abc"));
        assert!(!well_formed(&"a".repeat(68)));
    }

    #[tokio::test]
    async fn a_bucket_refills_at_its_rate() {
        let limiter = RateLimiter::default();
        assert!(limiter.take("a", 1.0, 2.0).is_ok());
        assert!(limiter.take("a", 1.0, 2.0).is_ok());
        assert_eq!(limiter.take("a", 1.0, 2.0), Err(1));
        assert!(limiter.take("b", 1.0, 2.0).is_ok());
    }
}
