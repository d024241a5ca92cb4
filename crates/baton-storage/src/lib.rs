//! baton's storage: the Raft log and the applied state, in one redb file.
//!
//! [`LogStore`] keeps the log, the vote and the committed index; [`StateMachineStore`] applies
//! committed entries to the pure [`baton_core::State`] and persists every credential a batch
//! touched in the same redb transaction as the applied index, so a restart (even after
//! `kill -9`) finds the state exactly as of the last applied entry. Snapshots are the whole
//! state serialized, for followers that fall behind the purged log.
//!
//! The applied state is shared with the rest of the node through [`SharedState`]: readers take
//! it from memory, and watch [`SharedState::subscribe`] to learn of new revisions.

mod log_store;
mod seal;
mod shared;
mod state_machine;

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use baton_core::{Command, Response};
use redb::{Database, TableDefinition};

pub use log_store::LogStore;
pub use seal::{KeyError, Keyring, MasterKey, MasterKeys};
pub use shared::SharedState;
pub use state_machine::StateMachineStore;

openraft::declare_raft_types!(
    /// The types baton's Raft group is made of.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Log entries by index.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// The log store's metadata: `vote`, `committed`, `last_purged`.
const LOG_META: TableDefinition<&str, &[u8]> = TableDefinition::new("log_meta");
/// The state machine's metadata: `last_applied`, `membership`, `next_fence`, `clock`, `snapshot`.
const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
/// Credentials by name.
const CREDENTIALS: TableDefinition<&str, &[u8]> = TableDefinition::new("credentials");
/// Leases by name.
const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("leases");
/// Key-value entries by key.
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");

/// The memory redb may use to cache pages of the file (reads and pending writes).
///
/// redb's default (1 GiB) lets the cache grow with the file: every page written stays cached,
/// so a node holding 10,000 credentials kept most of its file in memory. The whole applied
/// state already lives in memory ([`SharedState`]), and the log is read back only for recent
/// entries, so a small cache serves every read the node makes.
pub const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// The store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The cause follows in the error's chain ("Database already open" when another baton
    /// process uses the same data directory).
    #[error("cannot open the database {path}")]
    Database {
        path: String,
        source: redb::DatabaseError,
    },
    #[error("the database {path} is unreadable: {message}")]
    Corrupt { path: String, message: String },
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// An opened store: its two halves for openraft, the shared applied state, and the keyring.
#[derive(Debug)]
pub struct Store {
    pub log: LogStore,
    pub state_machine: StateMachineStore,
    pub shared: Arc<SharedState>,
    pub keyring: Keyring,
}

/// Opens (or creates) the store at `path` with `keys`, and loads the applied state.
pub fn open(path: &Path, keys: &MasterKeys) -> Result<Store, OpenError> {
    let shown = path.display().to_string();
    let is_new = !path.exists();
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(|source| OpenError::Database {
            path: shown.clone(),
            source,
        })?;
    if is_new {
        // The file holds sealed values only, but nobody else needs to read it.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    let db = Arc::new(db);
    let corrupt = |message: String| OpenError::Corrupt {
        path: shown.clone(),
        message,
    };

    let keyring = Keyring::load(db.clone(), keys)?;
    let sealer = Arc::new(keyring.sealer());
    create_tables(&db).map_err(corrupt)?;
    let (state_machine, shared) =
        StateMachineStore::load(db.clone(), sealer.clone()).map_err(corrupt)?;
    Ok(Store {
        log: LogStore::new(db, sealer),
        state_machine,
        shared,
        keyring,
    })
}

fn create_tables(db: &Database) -> Result<(), String> {
    let tx = db.begin_write().map_err(|e| e.to_string())?;
    for table in [LOG_META, SM_META, CREDENTIALS, LEASES, KV] {
        tx.open_table(table).map_err(|e| e.to_string())?;
    }
    tx.open_table(LOG).map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| e.to_string())
}

/// Wraps any storage failure for openraft, which treats it as fatal for the node.
fn io_error(e: impl std::fmt::Display) -> openraft::AnyError {
    openraft::AnyError::error(e)
}
