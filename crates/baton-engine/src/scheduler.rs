//! The scheduler: a priority queue of each credential's next deadline.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use baton_core::{RotationReason, Timestamp};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::Engine;

/// The shortest time between the end of a rotation and the start of the next one.
const RETRY_FLOOR_MS: u64 = 200;

/// Deadlines by credential. The heap may hold outdated entries; `planned` says which entry
/// is the live one for each credential.
#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<(Timestamp, String)>>,
    planned: HashMap<String, Timestamp>,
}

impl Queue {
    fn plan(&mut self, name: String, at: Timestamp) {
        if self.planned.get(&name) != Some(&at) {
            self.planned.insert(name.clone(), at);
            self.heap.push(Reverse((at, name)));
        }
    }

    fn forget(&mut self, name: &str) {
        self.planned.remove(name);
    }

    fn next_at(&mut self) -> Option<Timestamp> {
        // Drop outdated entries so that the head is a live deadline.
        while let Some(Reverse((at, name))) = self.heap.peek() {
            if self.planned.get(name) == Some(at) {
                return Some(*at);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns the credentials due at or before `now`.
    fn pop_due(&mut self, now: Timestamp) -> Vec<String> {
        let mut due = Vec::new();
        while let Some(at) = self.next_at() {
            if at > now {
                break;
            }
            if let Some(Reverse((_, name))) = self.heap.pop() {
                self.planned.remove(&name);
                due.push(name);
            }
        }
        due
    }
}

pub(crate) async fn run(
    engine: Engine,
    mut changes: UnboundedReceiver<String>,
    mut done: UnboundedReceiver<String>,
) {
    let mut queue = Queue::default();
    let names: Vec<String> = engine
        .node()
        .state()
        .read(|s| s.credentials.keys().cloned().collect());
    tracing::info!(credentials = names.len(), "rotation engine started");
    for name in names {
        engine.replan(&mut queue, name);
    }

    loop {
        let now = engine.node().now();
        // Wake at the next deadline, or at least once a minute to notice leadership changes.
        let wait = queue.next_at().map_or(Duration::from_secs(60), |at| {
            Duration::from_millis(at.millis_since(now))
        });

        tokio::select! {
            Some(name) = changes.recv() => engine.replan(&mut queue, name),
            Some(name) = done.recv() => {
                // Never start the same credential again within RETRY_FLOOR, whatever the
                // state says: a node that cannot write would otherwise spin.
                engine.replan(&mut queue, name.clone());
                let floor = engine.node().now().add_millis(RETRY_FLOOR_MS);
                if queue.planned.get(&name).is_some_and(|at| *at < floor) {
                    queue.plan(name, floor);
                }
            }
            () = tokio::time::sleep(wait) => {
                let now = engine.node().now();
                for name in queue.pop_due(now) {
                    engine.launch(&mut queue, name);
                }
            }
            else => break,
        }
    }
}

impl Engine {
    /// Plans the next action on `name` from committed state.
    fn replan(&self, queue: &mut Queue, name: String) {
        if self.is_running(&name) {
            // The rotation's end replans it.
            queue.forget(&name);
            return;
        }
        let due = self
            .node()
            .state()
            .read(|s| s.credentials.get(&name).map(|c| c.due()));
        match due {
            Some(due) => {
                tracing::debug!(credential = %name, at = %due.at(), "next rotation planned");
                queue.plan(name, due.at());
            }
            None => queue.forget(&name),
        }
    }

    /// Starts the rotation of a credential whose deadline came.
    fn launch(&self, queue: &mut Queue, name: String) {
        if !self.node().is_leader() {
            // Only the leader rotates; look again later in case leadership returns.
            let later = self.node().now().add_millis(1000);
            queue.plan(name, later);
            return;
        }
        let engine = self.clone();
        tokio::spawn(async move {
            // Errors are logged and counted by `rotate`; the next attempt is planned from the
            // state it committed.
            let _ = engine.rotate(&name, RotationReason::Scheduled).await;
        });
    }
}
