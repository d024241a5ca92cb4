//! baton's HTTP API (v1): credentials, tokens, JWKS, leases, kv, access control, health and
//! metrics.
//!
//! Every request passes [`auth::guard`] first: it authenticates the caller, checks the
//! capability the route needs, limits writes, and writes the audit trail ([`audit`]).
//!
//! Handlers turn requests into commands for the replication layer and read answers from the
//! node's applied state. Every error leaves as one JSON shape, `{"error": {"code", "message"}}`
//! ([`ApiError`]); client mistakes are not logged, server faults are logged once here.

mod access;
mod audit;
mod auth;
mod cluster;
mod credentials;
mod error;
mod extract;
mod kv;
mod leases;
mod metrics;
mod peer;
mod token;
mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use baton_engine::Engine;
use baton_raft::Node;

pub use access::{create_token, put_access_policy, CreatedToken};
pub use auth::{AuthConfig, Principal, PrincipalKind, TOKEN_PREFIX};
pub use credentials::{put_credential, CredentialRequest};
pub use error::ApiError;
pub use peer::PeerCertificate;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The route patterns, which are also the `route` label of request metrics.
mod route {
    pub(crate) const HEALTHZ: &str = "/healthz";
    pub(crate) const METRICS: &str = "/metrics";
    pub(crate) const CREDENTIALS: &str = "/v1/credentials";
    pub(crate) const CREDENTIAL: &str = "/v1/credentials/{name}";
    pub(crate) const ROTATE: &str = "/v1/credentials/{name}/rotate";
    pub(crate) const TOKEN: &str = "/v1/credentials/{name}/token";
    pub(crate) const JWKS: &str = "/v1/credentials/{name}/jwks.json";
    pub(crate) const LEASE: &str = "/v1/leases/{name}";
    pub(crate) const ACQUIRE: &str = "/v1/leases/{name}/acquire";
    pub(crate) const RENEW: &str = "/v1/leases/{name}/renew";
    pub(crate) const RELEASE: &str = "/v1/leases/{name}/release";
    pub(crate) const KV: &str = "/v1/kv/{name}";
    pub(crate) const CLUSTER_JOIN: &str = "/v1/cluster/join";
    pub(crate) const CLUSTER_MEMBER: &str = "/v1/cluster/members/{name}";
    pub(crate) const CLUSTER_STATUS: &str = "/v1/cluster/status";
}

/// Every route pattern, most requested first.
const ROUTES: [&str; 15] = [
    route::TOKEN,
    route::JWKS,
    route::LEASE,
    route::RENEW,
    route::ACQUIRE,
    route::RELEASE,
    route::KV,
    route::CREDENTIAL,
    route::CREDENTIALS,
    route::ROTATE,
    route::HEALTHZ,
    route::METRICS,
    route::CLUSTER_STATUS,
    route::CLUSTER_JOIN,
    route::CLUSTER_MEMBER,
];

/// Tunables of the API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// How long a token read may wait for a version when none can be served, when the request
    /// does not say (`?wait=`).
    pub default_wait: Duration,
    /// The longest `?wait=` honoured.
    pub max_wait: Duration,
    /// How far the clocks of the nodes may disagree; part of the lease promise.
    pub max_clock_skew: Duration,
    /// Authentication, authorization, limits and the audit trail.
    pub auth: AuthConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            default_wait: Duration::from_secs(5),
            max_wait: Duration::from_secs(30),
            max_clock_skew: Duration::from_millis(500),
            auth: AuthConfig::default(),
        }
    }
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct App {
    node: Arc<Node>,
    engine: Engine,
    config: ApiConfig,
    metrics: metrics::Metrics,
    limiter: auth::RateLimiter,
    audit: audit::Audit,
    tokens: token::TokenCache,
}

type AppState = axum::extract::State<Arc<App>>;

/// The whole API as an axum router.
pub fn router(engine: Engine, config: ApiConfig) -> Router {
    engine
        .node()
        .set_rotate_handler(credentials::rotate_handler(engine.clone()));
    let app = Arc::new(App {
        node: engine.node().clone(),
        metrics: metrics::Metrics::new(engine.metrics()),
        engine,
        limiter: auth::RateLimiter::default(),
        audit: audit::Audit::new(config.auth.audit_log.clone()),
        config,
        tokens: token::TokenCache::default(),
    });

    Router::new()
        .route(route::HEALTHZ, get(metrics::healthz))
        .route(route::METRICS, get(metrics::render))
        .route(route::CREDENTIALS, get(credentials::list))
        .route(
            route::CREDENTIAL,
            get(credentials::show)
                .put(credentials::put)
                .delete(credentials::delete),
        )
        .route(route::ROTATE, post(credentials::rotate))
        .route(route::TOKEN, get(token::read))
        .route(route::JWKS, get(credentials::jwks))
        .route(route::LEASE, get(leases::observe))
        .route(route::ACQUIRE, post(leases::acquire))
        .route(route::RENEW, post(leases::renew))
        .route(route::RELEASE, post(leases::release))
        .route(route::KV, get(kv::get).put(kv::put).delete(kv::delete))
        .route(
            "/v1/auth/tokens",
            get(access::list_tokens).post(access::create),
        )
        .route("/v1/auth/tokens/{name}", delete(access::revoke))
        .route(route::CLUSTER_JOIN, post(cluster::join))
        .route(route::CLUSTER_MEMBER, delete(cluster::remove))
        .route(route::CLUSTER_STATUS, get(cluster::status))
        .route("/v1/auth/policies", get(access::list_policies))
        .route(
            "/v1/auth/policies/{name}",
            get(access::show_policy)
                .put(access::put_policy)
                .delete(access::delete_policy),
        )
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::bad_method)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::guard,
        ))
        .layer(metrics::TrackLayer {
            requests: app.metrics.requests.clone(),
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}
