//! The engine's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// How a rotation ended, as the `outcome` label says it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failure,
    Refused,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Refused => "refused",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RotationLabels {
    pub credential: String,
    pub outcome: &'static str,
}

/// Rotations by credential and outcome, and how long they take.
#[derive(Debug)]
pub struct EngineMetrics {
    pub(crate) rotations: Family<RotationLabels, Counter>,
    pub(crate) latency: Histogram,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        EngineMetrics {
            rotations: Family::default(),
            latency: Histogram::new(exponential_buckets(0.001, 4.0, 10)),
        }
    }
}

impl EngineMetrics {
    /// Adds the engine's metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "baton_rotations",
            "Rotations by credential and outcome",
            self.rotations.clone(),
        );
        registry.register(
            "baton_rotation_duration_seconds",
            "Time from a rotation's start to its committed result",
            self.latency.clone(),
        );
    }

    pub(crate) fn record(&self, credential: &str, outcome: Outcome) {
        let labels = RotationLabels {
            credential: credential.to_owned(),
            outcome: outcome.label(),
        };
        self.rotations.get_or_create(&labels).inc();
    }
}
