//! The Raft log, vote and committed index in redb.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::{Database, Durability, ReadableTable};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::seal::Sealer;
use crate::{io_error, TypeConfig, LOG, LOG_META};

type StorageResult<T> = Result<T, StorageError<u64>>;

/// The log store. Clones share the database; a clone is also the log reader.
#[derive(Clone, Debug)]
pub struct LogStore {
    db: Arc<Database>,
    sealer: Arc<Sealer>,
    /// The latest committed index openraft reported, not yet written with a log append.
    committed: Option<Option<LogId<u64>>>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<Database>, sealer: Arc<Sealer>) -> Self {
        LogStore {
            db,
            sealer,
            committed: None,
        }
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, openraft::AnyError> {
        let tx = self.db.begin_read().map_err(io_error)?;
        let table = tx.open_table(LOG_META).map_err(io_error)?;
        let Some(value) = table.get(key).map_err(io_error)? else {
            return Ok(None);
        };
        self.sealer
            .decode(value.value())
            .map(Some)
            .map_err(io_error)
    }

    fn write_meta<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        durability: Durability,
    ) -> Result<(), openraft::AnyError> {
        let bytes = self.sealer.encode(value).map_err(io_error)?;
        let mut tx = self.db.begin_write().map_err(io_error)?;
        tx.set_durability(durability);
        tx.open_table(LOG_META)
            .map_err(io_error)?
            .insert(key, bytes.as_slice())
            .map_err(io_error)?;
        tx.commit().map_err(io_error)
    }

    /// Removes the entries whose index lies in `range`.
    fn remove_range(&self, range: impl RangeBounds<u64>) -> Result<(), openraft::AnyError> {
        let tx = self.db.begin_write().map_err(io_error)?;
        {
            let mut table = tx.open_table(LOG).map_err(io_error)?;
            table.retain_in(range, |_, _| false).map_err(io_error)?;
        }
        tx.commit().map_err(io_error)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let read = || -> Result<Vec<Entry<TypeConfig>>, openraft::AnyError> {
            let tx = self.db.begin_read().map_err(io_error)?;
            let table = tx.open_table(LOG).map_err(io_error)?;
            let mut entries = Vec::new();
            for item in table.range(range.clone()).map_err(io_error)? {
                let (_, value) = item.map_err(io_error)?;
                entries.push(self.sealer.decode(value.value()).map_err(io_error)?);
            }
            Ok(entries)
        };
        read().map_err(|e| StorageIOError::read_logs(e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let read = || -> Result<LogState<TypeConfig>, openraft::AnyError> {
            let last_purged_log_id: Option<LogId<u64>> = self.read_meta("last_purged")?;
            let tx = self.db.begin_read().map_err(io_error)?;
            let table = tx.open_table(LOG).map_err(io_error)?;
            let last = match table.last().map_err(io_error)? {
                Some((_, value)) => {
                    let entry: Entry<TypeConfig> =
                        self.sealer.decode(value.value()).map_err(io_error)?;
                    Some(entry.log_id)
                }
                None => last_purged_log_id,
            };
            Ok(LogState {
                last_purged_log_id,
                last_log_id: last,
            })
        };
        read().map_err(|e| StorageIOError::read_logs(e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> StorageResult<()> {
        self.write_meta("vote", vote, Durability::Immediate)
            .map_err(|e| StorageIOError::write_vote(e).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<u64>>> {
        self.read_meta("vote")
            .map_err(|e| StorageIOError::read_vote(e).into())
    }

    /// The committed index is a hint: the state machine commits each applied batch durably,
    /// with its applied index, so a committed index lost to a crash loses nothing (the leader
    /// tells a restarted node again). It is kept in memory and written with the next log
    /// append, in the same transaction, instead of costing a transaction of its own.
    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> StorageResult<()> {
        self.committed = Some(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<u64>>> {
        let committed: Option<Option<LogId<u64>>> =
            self.read_meta("committed").map_err(StorageIOError::read)?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let write = || -> Result<(), openraft::AnyError> {
            let tx = self.db.begin_write().map_err(io_error)?;
            if let Some(committed) = self.committed.take() {
                let bytes = self.sealer.encode(&committed).map_err(io_error)?;
                tx.open_table(LOG_META)
                    .map_err(io_error)?
                    .insert("committed", bytes.as_slice())
                    .map_err(io_error)?;
            }
            {
                let mut table = tx.open_table(LOG).map_err(io_error)?;
                for entry in entries {
                    let bytes = self.sealer.encode(&entry).map_err(io_error)?;
                    table
                        .insert(entry.log_id.index, bytes.as_slice())
                        .map_err(io_error)?;
                }
            }
            // Committing a redb write transaction flushes it to disk before returning.
            tx.commit().map_err(io_error)
        };
        match write() {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        tracing::debug!(index = log_id.index, "truncating the log");
        self.remove_range(log_id.index..)
            .map_err(|e| StorageIOError::write_logs(e).into())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        tracing::debug!(index = log_id.index, "purging the log");
        // Record the purge point first: a crash between the two steps leaves entries that
        // are already covered by it, which is harmless.
        self.write_meta("last_purged", &log_id, Durability::Immediate)
            .and_then(|()| self.remove_range(..=log_id.index))
            .map_err(|e| StorageIOError::write_logs(e).into())
    }
}
