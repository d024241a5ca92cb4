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
    Unknown,
    Refused,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Unknown => "unknown",
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
    /// Issuer calls whose outcome is unknown (timed out after the request was sent).
    pub(crate) unknown_outcomes: Family<CredentialLabel, Counter>,
    /// Versions issued for less than `min_use` or `renew_before`.
    pub(crate) short_lifetimes: Family<CredentialLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CredentialLabel {
    pub credential: String,
}

impl CredentialLabel {
    pub(crate) fn of(credential: &str) -> Self {
        CredentialLabel {
            credential: credential.to_owned(),
        }
    }
}

impl Default for EngineMetrics {
    fn default() -> Self {
        EngineMetrics {
            rotations: Family::default(),
            latency: Histogram::new(exponential_buckets(0.001, 4.0, 10)),
            unknown_outcomes: Family::default(),
            short_lifetimes: Family::default(),
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
        registry.register(
            "baton_issuer_unknown_outcomes",
            "Issuer calls whose outcome is unknown; each is waited out, never repeated at once",
            self.unknown_outcomes.clone(),
        );
        registry.register(
            "baton_short_lifetimes",
            "Versions issued for less than min_use or renew_before",
            self.short_lifetimes.clone(),
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
