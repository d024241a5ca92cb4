//! `/metrics` (Prometheus text), `/healthz`, and the middleware counting requests.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::extract::{MatchedPath, Request};
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use baton_engine::EngineMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::json;
use tower_layer::Layer;
use tower_service::Service;

use crate::AppState;

/// Labels of a request. Known routes and standard methods are borrowed, so counting a request
/// allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HttpLabels {
    route: Cow<'static, str>,
    method: Cow<'static, str>,
    status: u16,
}

/// The route pattern a request matched, as a label.
fn route_label(req: &Request) -> Cow<'static, str> {
    let Some(matched) = req.extensions().get::<MatchedPath>() else {
        return Cow::Borrowed("unmatched");
    };
    let matched = matched.as_str();
    match crate::ROUTES.iter().find(|r| **r == matched) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(matched.to_owned()),
    }
}

fn method_label(method: &Method) -> Cow<'static, str> {
    const STANDARD: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::PUT, "PUT"),
        (Method::POST, "POST"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::PATCH, "PATCH"),
        (Method::TRACE, "TRACE"),
        (Method::CONNECT, "CONNECT"),
    ];
    match STANDARD.iter().find(|(m, _)| m == method) {
        Some((_, label)) => Cow::Borrowed(label),
        None => Cow::Owned(method.as_str().to_owned()),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CredentialLabel {
    credential: String,
}

#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Mutex<Registry>,
    pub(crate) requests: Family<HttpLabels, Counter>,
    expiry: Family<CredentialLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    clock_offset: Gauge<f64, std::sync::atomic::AtomicU64>,
    clock_skewed: Gauge,
    is_leader: Gauge,
}

impl Metrics {
    pub(crate) fn new(engine: &EngineMetrics) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<HttpLabels, Counter>::default();
        let expiry = Family::<CredentialLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "baton_http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "baton_credential_expiry_seconds",
            "Seconds until the current version of each credential expires (negative: expired)",
            expiry.clone(),
        );
        let clock_offset = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "baton_clock_offset_seconds",
            "This node's clock minus the leader's, as last measured (0 on the leader)",
            clock_offset.clone(),
        );
        let clock_skewed = Gauge::default();
        registry.register(
            "baton_clock_skewed",
            "1 when this node's clock is off those of a quorum of the voters by more than \
             max_clock_skew; such a node does not stand for election",
            clock_skewed.clone(),
        );
        let is_leader = Gauge::default();
        registry.register(
            "baton_is_leader",
            "1 when this node leads the cluster",
            is_leader.clone(),
        );
        engine.register(&mut registry);
        Metrics {
            registry: Mutex::new(registry),
            requests,
            expiry,
            clock_offset,
            clock_skewed,
            is_leader,
        }
    }
}

/// Counts every request by its route pattern (never the raw path: names are unbounded) and
/// status. Applied to each route by [`axum::Router::layer`], where the matched pattern is known.
#[derive(Clone, Debug)]
pub(crate) struct TrackLayer {
    pub(crate) requests: Family<HttpLabels, Counter>,
}

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            requests: self.requests.clone(),
        }
    }
}

/// [`TrackLayer`] around one route.
#[derive(Clone, Debug)]
pub(crate) struct Track<S> {
    inner: S,
    requests: Family<HttpLabels, Counter>,
}

impl<S> Service<Request> for Track<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let labels = Some((route_label(&req), method_label(req.method())));
        Tracked {
            inner: self.inner.call(req),
            requests: self.requests.clone(),
            labels,
        }
    }
}

pin_project_lite::pin_project! {
    /// A tracked request's response: counted when it is ready.
    pub(crate) struct Tracked<F> {
        #[pin]
        inner: F,
        requests: Family<HttpLabels, Counter>,
        labels: Option<(Cow<'static, str>, Cow<'static, str>)>,
    }
}

impl<F, E> Future for Tracked<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some((route, method))) = (&result, this.labels.take()) {
            let status = response.status().as_u16();
            tracing::trace!(%route, %method, status, "request");
            this.requests
                .get_or_create(&HttpLabels {
                    route,
                    method,
                    status,
                })
                .inc();
        }
        Poll::Ready(result)
    }
}

pub(crate) async fn render(state: AppState) -> Response {
    let app = state.0;
    let now = app.node.now();
    app.metrics.expiry.clear();
    app.node.state().read(|s| {
        for c in s.credentials.values() {
            if let (Some(current), _) = c.effective(now) {
                let left = current.expires_at.as_millis() as f64 - now.as_millis() as f64;
                let label = CredentialLabel {
                    credential: c.name.clone(),
                };
                app.metrics.expiry.get_or_create(&label).set(left / 1000.0);
            }
        }
    });

    let leads = app.node.is_leader();
    let sample = app.node.clock_sample();
    app.metrics.clock_offset.set(
        sample
            .and_then(|s| s.offset_ms)
            .map_or(0.0, |ms| ms as f64 / 1000.0),
    );
    app.metrics
        .clock_skewed
        .set(i64::from(sample.is_some_and(|s| s.skewed)));
    app.metrics.is_leader.set(i64::from(leads));

    let mut text = String::new();
    let registry = app
        .metrics
        .registry
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        return crate::ApiError::internal("encoding metrics failed", e).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

pub(crate) async fn healthz(state: AppState) -> Json<serde_json::Value> {
    let node = &state.0.node;
    Json(json!({
        "status": if node.is_removed() { "removed" } else { "ok" },
        "node": node.id(),
        "leader": node.is_leader(),
        // A leader cut off from its quorum takes no writes.
        "quorum": node.quorum_silent_for().is_none(),
        "revision": node.state().revision(),
    }))
}
