//! The rotation engine: renews every credential exactly once per rotation.
//!
//! It keeps each credential's next deadline in a priority queue, taken from committed state
//! ([`baton_core::Credential::due`]). At a deadline it commits an intent, calls the issuer,
//! and commits the result under the intent's fence; it never writes state any other way.
//!
//! ```text
//!   applied changes ──▶ scheduler (heap of deadlines) ──due──▶ rotation task
//!                           ▲                                  │ BeginRotation → intent
//!                           └────────── done ◀─────────────────┤ issuer.mint(intent)
//!                                                              └ CommitRotation / FailRotation
//! ```
//!
//! At most one rotation per credential runs on this node at a time (scheduled or manual),
//! and the state machine refuses a second intent cluster-wide until the first one's deadline.
//! After a restart, an intent left open is minted again at once when the issuer is
//! idempotent (the same intent yields the same token), and is waited out otherwise.

mod metrics;
mod rotation;
mod scheduler;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use baton_raft::Node;
use tokio::sync::{mpsc, Notify};

pub use metrics::EngineMetrics;
pub use rotation::{RotateError, Rotated};

/// Tunables of the engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How long an intent holds off other rotations of its credential.
    pub intent_timeout: Duration,
    /// The first retry delay after a failed issuer call; doubled per failure.
    pub backoff_base: Duration,
    /// The longest retry delay.
    pub backoff_max: Duration,
    /// The shortest time between two calls to an issuer that calls out (oauth2, exec) for
    /// one credential, whatever asks for them.
    pub min_interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            intent_timeout: Duration::from_secs(30),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            min_interval: Duration::from_secs(1),
        }
    }
}

/// A handle to the engine; clones share it.
#[derive(Clone, Debug)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    node: Arc<Node>,
    config: EngineConfig,
    /// Credentials with a rotation running on this node.
    running: Mutex<HashSet<String>>,
    /// When this node last called each credential's issuer, for `min_interval`.
    last_call: Mutex<HashMap<String, Instant>>,
    /// Tells the scheduler that a rotation ended, so it plans the next one.
    done: mpsc::UnboundedSender<String>,
    /// Wakes manual rotations waiting for a running one to end.
    released: Notify,
    metrics: EngineMetrics,
}

impl Engine {
    /// Starts the engine's scheduler on the current tokio runtime.
    pub fn start(node: Arc<Node>, config: EngineConfig) -> Engine {
        let changes = node.state().watch_changes();
        let (done, done_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            node,
            config,
            running: Mutex::new(HashSet::new()),
            last_call: Mutex::new(HashMap::new()),
            done,
            released: Notify::new(),
            metrics: EngineMetrics::default(),
        });
        let engine = Engine { inner };
        tokio::spawn(scheduler::run(engine.clone(), changes, done_rx));
        engine
    }

    pub fn metrics(&self) -> &EngineMetrics {
        &self.inner.metrics
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.inner.node
    }

    /// Claims the right to rotate `name` on this node until the returned guard drops.
    fn claim(&self, name: &str) -> Option<Claim> {
        let mut running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        running.insert(name.to_owned()).then(|| Claim {
            engine: self.clone(),
            name: name.into(),
        })
    }

    fn is_running(&self, name: &str) -> bool {
        self.inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(name)
    }
}

/// A running rotation's hold on its credential.
struct Claim {
    engine: Engine,
    name: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let inner = &self.engine.inner;
        inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.name);
        // The scheduler is gone only when the runtime stops.
        let _ = inner.done.send(std::mem::take(&mut self.name));
        inner.released.notify_waiters();
    }
}
