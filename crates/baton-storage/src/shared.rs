//! The applied state as the rest of the node sees it.

use std::sync::{Mutex, PoisonError, RwLock};

use baton_core::State;
use tokio::sync::{mpsc, watch};

/// The applied [`State`], readable from any task, and notifications of what changed.
#[derive(Debug)]
pub struct SharedState {
    state: RwLock<State>,
    /// The revision (index of the last applied log entry).
    revision: watch::Sender<u64>,
    /// Names of credentials changed by applied entries, for the rotation engine.
    changes: Mutex<Option<mpsc::UnboundedSender<String>>>,
}

impl SharedState {
    pub(crate) fn new(state: State, revision: u64) -> Self {
        SharedState {
            state: RwLock::new(state),
            revision: watch::Sender::new(revision),
            changes: Mutex::new(None),
        }
    }

    /// Runs `f` on the applied state. Keep `f` short: applying waits for it.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn write<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.write().unwrap_or_else(PoisonError::into_inner))
    }

    /// The index of the last applied log entry.
    pub fn revision(&self) -> u64 {
        *self.revision.borrow()
    }

    /// A receiver that sees every new revision.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// Starts reporting the names of changed credentials to the returned receiver (replacing
    /// any earlier receiver).
    pub fn watch_changes(&self) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.changes.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
        rx
    }

    pub(crate) fn publish<'a>(&self, revision: u64, changed: impl IntoIterator<Item = &'a str>) {
        self.revision.send_replace(revision);
        let changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = changes.as_ref() {
            for name in changed {
                // A closed receiver means the engine stopped; nothing is waiting for news.
                let _ = tx.send(name.to_owned());
            }
        }
    }
}
