//! Applying committed entries to the state machine, and snapshots of it.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::sync::Arc;

use baton_core::{AuthState, Changed, Credential, KvEntry, Lease, Output, Response, State};
use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use redb::{Database, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::seal::Sealer;
use crate::{io_error, SharedState, TypeConfig, CREDENTIALS, KV, LEASES, SM_META};

type StorageResult<T> = Result<T, StorageError<u64>>;
type Membership = StoredMembership<u64, openraft::BasicNode>;

/// The state machine's Raft bookkeeping, persisted beside the credentials.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId<u64>>,
    membership: Membership,
    next_fence: u64,
    clock: baton_core::Timestamp,
}

/// A snapshot as stored and as sent to followers: the bookkeeping and every credential.
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    applied: Applied,
    credentials: Vec<Credential>,
    #[serde(default)]
    leases: Vec<Lease>,
    #[serde(default)]
    kv: Vec<KvEntry>,
    /// Access tokens (hashed) and policies.
    #[serde(default)]
    auth: AuthState,
}

/// [`SnapshotData`] borrowed from the live state, to serialize it without a copy.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    applied: &'a Applied,
    credentials: Vec<&'a Credential>,
    leases: Vec<&'a Lease>,
    kv: Vec<&'a KvEntry>,
    auth: &'a AuthState,
}

/// A snapshot as kept in the store: its meta under `snapshot_meta` (JSON) and its data, as
/// is, under `snapshot_data`. Stores written before kept both as one JSON document under
/// `snapshot`, with the data as an array of numbers; that form is still read.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, openraft::BasicNode>,
    data: Vec<u8>,
}

/// The state machine store: owned by openraft, sharing its state through [`SharedState`].
#[derive(Clone, Debug)]
pub struct StateMachineStore {
    db: Arc<Database>,
    sealer: Arc<Sealer>,
    shared: Arc<SharedState>,
    applied: Applied,
}

impl StateMachineStore {
    /// Loads the applied state from the database.
    pub(crate) fn load(
        db: Arc<Database>,
        sealer: Arc<Sealer>,
    ) -> Result<(Self, Arc<SharedState>), String> {
        let tx = db.begin_read().map_err(|e| e.to_string())?;
        let meta = tx.open_table(SM_META).map_err(|e| e.to_string())?;
        let applied: Applied = match meta.get("applied").map_err(|e| e.to_string())? {
            Some(v) => sealer.decode(v.value())?,
            None => Applied::default(),
        };

        let mut state = State {
            next_fence: applied.next_fence,
            clock: applied.clock,
            ..State::default()
        };
        for c in read_all::<Credential>(&sealer, &tx, CREDENTIALS)? {
            state.credentials.insert(c.name.clone(), c);
        }
        for l in read_all::<Lease>(&sealer, &tx, LEASES)? {
            state.leases.insert(l.name.clone(), l);
        }
        for e in read_all::<KvEntry>(&sealer, &tx, KV)? {
            state.kv.insert(e.key.clone(), e);
        }
        if let Some(v) = meta.get("auth").map_err(|e| e.to_string())? {
            state.auth = sealer.decode(v.value())?;
        }

        let revision = applied.last_applied.map_or(0, |id| id.index);
        let shared = Arc::new(SharedState::new(state, revision));
        Ok((
            StateMachineStore {
                db,
                sealer,
                shared: shared.clone(),
                applied,
            },
            shared,
        ))
    }

    /// Writes what `changed` names, as it is in `state`, and the bookkeeping.
    fn persist(
        &self,
        tx: &WriteTransaction,
        state: &State,
        changed: &BTreeSet<Changed>,
    ) -> Result<(), openraft::AnyError> {
        let mut credentials = tx.open_table(CREDENTIALS).map_err(io_error)?;
        let mut leases = tx.open_table(LEASES).map_err(io_error)?;
        let mut kv = tx.open_table(KV).map_err(io_error)?;
        let mut meta = tx.open_table(SM_META).map_err(io_error)?;
        for change in changed {
            let (table, key, value) = match change {
                // Tokens and policies are few: they are kept as one value.
                Changed::Auth => {
                    let bytes = self.sealer.encode(&state.auth).map_err(io_error)?;
                    meta.insert("auth", bytes.as_slice()).map_err(io_error)?;
                    continue;
                }
                Changed::Credential(k) => {
                    (&mut credentials, k, self.sealed(state.credentials.get(k))?)
                }
                Changed::Lease(k) => (&mut leases, k, self.sealed(state.leases.get(k))?),
                Changed::Kv(k) => (&mut kv, k, self.sealed(state.kv.get(k))?),
            };
            match value {
                Some(bytes) => table.insert(key.as_str(), bytes.as_slice()).map(drop),
                None => table.remove(key.as_str()).map(drop),
            }
            .map_err(io_error)?;
        }
        let bytes = self.sealer.encode(&self.applied).map_err(io_error)?;
        meta.insert("applied", bytes.as_slice()).map_err(io_error)?;
        Ok(())
    }

    fn apply_all(
        &mut self,
        entries: impl IntoIterator<Item = Entry<TypeConfig>>,
    ) -> Result<Vec<Response>, openraft::AnyError> {
        let shared = self.shared.clone();
        let mut changed = Vec::new();
        let mut responses = Vec::new();

        let tx = self.db.begin_write().map_err(io_error)?;
        let changed = shared.write(|state| -> Result<BTreeSet<Changed>, openraft::AnyError> {
            for entry in entries {
                self.applied.last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => Ok(Output::None),
                    EntryPayload::Normal(cmd) => {
                        state.apply_tracked(entry.log_id.index, cmd, &mut changed)
                    }
                    EntryPayload::Membership(m) => {
                        self.applied.membership = StoredMembership::new(Some(entry.log_id), m);
                        Ok(Output::None)
                    }
                };
                responses.push(response);
            }
            self.applied.next_fence = state.next_fence;
            self.applied.clock = state.clock;
            let changed: BTreeSet<Changed> = changed.drain(..).collect();
            self.persist(&tx, state, &changed)?;
            Ok(changed)
        })?;
        tx.commit().map_err(io_error)?;

        let revision = self.applied.last_applied.map_or(0, |id| id.index);
        shared.publish(revision, credential_names(&changed));
        Ok(responses)
    }

    fn snapshot_bytes(&self) -> Result<Vec<u8>, openraft::AnyError> {
        // Serialized under the read lock, straight from the state: applying waits meanwhile,
        // token reads do not.
        self.shared.read(|s| {
            let data = SnapshotRef {
                applied: &self.applied,
                credentials: s.credentials.values().collect(),
                leases: s.leases.values().collect(),
                kv: s.kv.values().collect(),
                auth: &s.auth,
            };
            serde_json::to_vec(&data).map_err(io_error)
        })
    }

    fn save_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), openraft::AnyError> {
        let meta = self.sealer.encode(&snapshot.meta).map_err(io_error)?;
        let data = self.sealer.seal(&snapshot.data).map_err(io_error)?;
        let tx = self.db.begin_write().map_err(io_error)?;
        {
            let mut table = tx.open_table(SM_META).map_err(io_error)?;
            table
                .insert("snapshot_meta", meta.as_slice())
                .map_err(io_error)?;
            table
                .insert("snapshot_data", data.as_slice())
                .map_err(io_error)?;
            table.remove("snapshot").map_err(io_error)?;
        }
        tx.commit().map_err(io_error)
    }

    fn install(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        data: Vec<u8>,
    ) -> Result<(), openraft::AnyError> {
        let snapshot: SnapshotData = serde_json::from_slice(&data).map_err(io_error)?;
        let mut state = State {
            next_fence: snapshot.applied.next_fence,
            clock: snapshot.applied.clock,
            ..State::default()
        };
        for c in snapshot.credentials {
            state.credentials.insert(c.name.clone(), c);
        }
        for l in snapshot.leases {
            state.leases.insert(l.name.clone(), l);
        }
        for e in snapshot.kv {
            state.kv.insert(e.key.clone(), e);
        }
        state.auth = snapshot.auth;

        // Everything that existed before or exists now may have changed.
        let mut changed = all_keys(&state);
        changed.extend(self.shared.read(all_keys));

        self.applied = snapshot.applied;
        self.applied.last_applied = meta.last_log_id;
        self.applied.membership = meta.last_membership.clone();
        let tx = self.db.begin_write().map_err(io_error)?;
        self.persist(&tx, &state, &changed)?;
        tx.commit().map_err(io_error)?;
        self.save_snapshot(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })?;

        self.shared.write(|s| *s = state);
        let revision = self.applied.last_applied.map_or(0, |id| id.index);
        self.shared.publish(revision, credential_names(&changed));
        Ok(())
    }

    fn current_snapshot(&self) -> Result<Option<StoredSnapshot>, openraft::AnyError> {
        let tx = self.db.begin_read().map_err(io_error)?;
        let table = tx.open_table(SM_META).map_err(io_error)?;
        if let Some(meta) = table.get("snapshot_meta").map_err(io_error)? {
            let meta = self.sealer.decode(meta.value()).map_err(io_error)?;
            let data = table
                .get("snapshot_data")
                .map_err(io_error)?
                .ok_or_else(|| io_error("the snapshot's meta is stored without its data"))?;
            let data = self
                .sealer
                .open(data.value())
                .map_err(io_error)?
                .into_owned();
            return Ok(Some(StoredSnapshot { meta, data }));
        }
        let Some(value) = table.get("snapshot").map_err(io_error)? else {
            return Ok(None);
        };
        self.sealer
            .decode(value.value())
            .map(Some)
            .map_err(io_error)
    }

    fn sealed<T: Serialize>(
        &self,
        value: Option<&T>,
    ) -> Result<Option<Vec<u8>>, openraft::AnyError> {
        value
            .map(|v| self.sealer.encode(v).map_err(io_error))
            .transpose()
    }
}

fn read_all<T: serde::de::DeserializeOwned>(
    sealer: &Sealer,
    tx: &redb::ReadTransaction,
    table: redb::TableDefinition<&str, &[u8]>,
) -> Result<Vec<T>, String> {
    let table = tx.open_table(table).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for item in table.iter().map_err(|e| e.to_string())? {
        let (_, value) = item.map_err(|e| e.to_string())?;
        out.push(sealer.decode(value.value())?);
    }
    Ok(out)
}

fn all_keys(state: &State) -> BTreeSet<Changed> {
    let credentials = state.credentials.keys().cloned().map(Changed::Credential);
    let leases = state.leases.keys().cloned().map(Changed::Lease);
    let kv = state.kv.keys().cloned().map(Changed::Kv);
    credentials
        .chain(leases)
        .chain(kv)
        .chain([Changed::Auth])
        .collect()
}

fn credential_names(changed: &BTreeSet<Changed>) -> impl Iterator<Item = &str> {
    changed.iter().filter_map(|c| match c {
        Changed::Credential(name) => Some(name.as_str()),
        _ => None,
    })
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let data = self
            .snapshot_bytes()
            .map_err(StorageIOError::read_state_machine)?;
        let last = self.applied.last_applied;
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: self.applied.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                last.map_or(0, |id| id.leader_id.term),
                last.map_or(0, |id| id.index)
            ),
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.save_snapshot(&stored)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        tracing::info!(snapshot = %meta.snapshot_id, "built a snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<u64>>, Membership)> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        self.apply_all(entries)
            .map_err(|e| StorageIOError::write_state_machine(e).into())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        tracing::info!(snapshot = %meta.snapshot_id, "installing a snapshot");
        self.install(meta, snapshot.into_inner())
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e).into())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let stored = self
            .current_snapshot()
            .map_err(StorageIOError::read_state_machine)?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
