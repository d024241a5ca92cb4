//! baton's HTTP API (v1): credentials, tokens, JWKS, health and metrics.
//!
//! Handlers turn requests into commands for the replication layer and read answers from the
//! node's applied state. Every error leaves as one JSON shape, `{"error": {"code", "message"}}`
//! ([`ApiError`]); client mistakes are not logged, server faults are logged once here.

mod credentials;
mod error;
mod extract;
mod kv;
mod leases;
mod metrics;
mod token;
mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use baton_engine::Engine;
use baton_raft::Node;

pub use credentials::{put_credential, CredentialRequest};
pub use error::ApiError;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

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
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            default_wait: Duration::from_secs(5),
            max_wait: Duration::from_secs(30),
            max_clock_skew: Duration::from_millis(500),
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
    tokens: token::TokenCache,
}

type AppState = axum::extract::State<Arc<App>>;

/// The whole API as an axum router.
pub fn router(engine: Engine, config: ApiConfig) -> Router {
    let app = Arc::new(App {
        node: engine.node().clone(),
        metrics: metrics::Metrics::new(engine.metrics()),
        engine,
        config,
        tokens: token::TokenCache::default(),
    });

    Router::new()
        .route("/healthz", get(metrics::healthz))
        .route("/metrics", get(metrics::render))
        .route("/v1/credentials", get(credentials::list))
        .route(
            "/v1/credentials/{name}",
            get(credentials::show)
                .put(credentials::put)
                .delete(credentials::delete),
        )
        .route("/v1/credentials/{name}/rotate", post(credentials::rotate))
        .route("/v1/credentials/{name}/token", get(token::read))
        .route("/v1/credentials/{name}/jwks.json", get(credentials::jwks))
        .route("/v1/leases/{name}", get(leases::observe))
        .route("/v1/leases/{name}/acquire", post(leases::acquire))
        .route("/v1/leases/{name}/renew", post(leases::renew))
        .route("/v1/leases/{name}/release", post(leases::release))
        .route(
            "/v1/kv/{name}",
            get(kv::get).put(kv::put).delete(kv::delete),
        )
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::bad_method)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}
