//! Applying committed entries to the state machine, and snapshots of it.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::sync::Arc;

use baton_core::{Changed, Credential, KvEntry, Lease, Output, Response, State};
use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use redb::{Database, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

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
}

/// [`SnapshotData`] borrowed from the live state, to serialize it without a copy.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    applied: &'a Applied,
    credentials: Vec<&'a Credential>,
    leases: Vec<&'a Lease>,
    kv: Vec<&'a KvEntry>,
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
    shared: Arc<SharedState>,
    applied: Applied,
}

impl StateMachineStore {
    /// Loads the applied state from the database.
    pub(crate) fn load(db: Arc<Database>) -> Result<(Self, Arc<SharedState>), String> {
        let tx = db.begin_read().map_err(|e| e.to_string())?;
        let meta = tx.open_table(SM_META).map_err(|e| e.to_string())?;
        let applied: Applied = match meta.get("applied").map_err(|e| e.to_string())? {
            Some(v) => serde_json::from_slice(v.value()).map_err(|e| e.to_string())?,
            None => Applied::default(),
        };

        let mut state = State {
            next_fence: applied.next_fence,
            clock: applied.clock,
            ..State::default()
        };
        for c in read_all::<Credential>(&tx, CREDENTIALS)? {
            state.credentials.insert(c.name.clone(), c);
        }
        for l in read_all::<Lease>(&tx, LEASES)? {
            state.leases.insert(l.name.clone(), l);
        }
        for e in read_all::<KvEntry>(&tx, KV)? {
            state.kv.insert(e.key.clone(), e);
        }

        let revision = applied.last_applied.map_or(0, |id| id.index);
        let shared = Arc::new(SharedState::new(state, revision));
        Ok((
            StateMachineStore {
                db,
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
        for change in changed {
            let (table, key, value) = match change {
                Changed::Credential(k) => (&mut credentials, k, to_json(state.credentials.get(k))?),
                Changed::Lease(k) => (&mut leases, k, to_json(state.leases.get(k))?),
                Changed::Kv(k) => (&mut kv, k, to_json(state.kv.get(k))?),
            };
            match value {
                Some(bytes) => table.insert(key.as_str(), bytes.as_slice()).map(drop),
                None => table.remove(key.as_str()).map(drop),
            }
            .map_err(io_error)?;
        }
        let bytes = serde_json::to_vec(&self.applied).map_err(io_error)?;
        tx.open_table(SM_META)
            .map_err(io_error)?
            .insert("applied", bytes.as_slice())
            .map_err(io_error)?;
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
            };
            serde_json::to_vec(&data).map_err(io_error)
        })
    }

    fn save_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), openraft::AnyError> {
        let meta = serde_json::to_vec(&snapshot.meta).map_err(io_error)?;
        let tx = self.db.begin_write().map_err(io_error)?;
        {
            let mut table = tx.open_table(SM_META).map_err(io_error)?;
            table
                .insert("snapshot_meta", meta.as_slice())
                .map_err(io_error)?;
            table
                .insert("snapshot_data", snapshot.data.as_slice())
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
            let meta = serde_json::from_slice(meta.value()).map_err(io_error)?;
            let data = table
                .get("snapshot_data")
                .map_err(io_error)?
                .map(|v| v.value().to_vec())
                .ok_or_else(|| io_error("the snapshot's meta is stored without its data"))?;
            return Ok(Some(StoredSnapshot { meta, data }));
        }
        let Some(value) = table.get("snapshot").map_err(io_error)? else {
            return Ok(None);
        };
        serde_json::from_slice(value.value())
            .map(Some)
            .map_err(io_error)
    }
}

fn to_json<T: Serialize>(value: Option<&T>) -> Result<Option<Vec<u8>>, openraft::AnyError> {
    value
        .map(|v| serde_json::to_vec(v).map_err(io_error))
        .transpose()
}

fn read_all<T: serde::de::DeserializeOwned>(
    tx: &redb::ReadTransaction,
    table: redb::TableDefinition<&str, &[u8]>,
) -> Result<Vec<T>, String> {
    let table = tx.open_table(table).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for item in table.iter().map_err(|e| e.to_string())? {
        let (_, value) = item.map_err(|e| e.to_string())?;
        out.push(serde_json::from_slice(value.value()).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

fn all_keys(state: &State) -> BTreeSet<Changed> {
    let credentials = state.credentials.keys().cloned().map(Changed::Credential);
    let leases = state.leases.keys().cloned().map(Changed::Lease);
    let kv = state.kv.keys().cloned().map(Changed::Kv);
    credentials.chain(leases).chain(kv).collect()
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
