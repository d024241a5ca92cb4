//! The redb store against openraft's storage suite, and across reopening.

use std::collections::BTreeSet;

use baton_core::{
    Command, IssuerSpec, Op, Output, Policy, PolicyRequest, RotationReason, Secret, StaticSpec,
    Timestamp,
};
use baton_storage::{LogStore, MasterKey, MasterKeys, StateMachineStore, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftSnapshotBuilder, StorageError,
};
use tempfile::TempDir;

struct Builder;

/// A fixed master key, so that a store reopens with the key it was created with.
fn keys() -> MasterKeys {
    MasterKeys {
        current: MasterKey::from_text(&"ab".repeat(32)).expect("a key"),
        previous: None,
    }
}

/// `baton_storage::open` with [`keys`], as the tuple these tests destructure.
fn open(
    path: &std::path::Path,
) -> Result<
    (
        LogStore,
        StateMachineStore,
        std::sync::Arc<baton_storage::SharedState>,
    ),
    baton_storage::OpenError,
> {
    baton_storage::open(path, &keys()).map(|s| (s.log, s.state_machine, s.shared))
}

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, sm, _) = open(&dir.path().join("baton.redb")).expect("open");
        Ok((dir, log, sm))
    }
}

#[test]
fn passes_the_openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft storage suite");
}

fn entry(index: u64, op: Op) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Command {
            now: Timestamp::from_secs(1_000 + index),
            op,
        }),
    }
}

fn put(name: &str) -> Op {
    Op::PutCredential {
        name: name.to_owned(),
        issuer: IssuerSpec::Static(StaticSpec {
            token: Secret::new("s3cret"),
            expires_at: None,
        }),
        policy: Policy::from_request(&PolicyRequest::default()).expect("default policy"),
    }
}

fn begin(name: &str) -> Op {
    Op::BeginRotation {
        name: name.to_owned(),
        deadline: Timestamp::from_secs(5_000),
        reason: RotationReason::Scheduled,
    }
}

#[tokio::test]
async fn applied_state_survives_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("baton.redb");

    let before = {
        let (_, mut sm, shared) = open(&path).expect("open");
        let membership = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
            payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1])], None)),
        };
        let entries = vec![
            membership,
            entry(2, put("a")),
            entry(3, put("b")),
            entry(4, begin("a")),
        ];
        let out = sm.apply(entries).await.expect("apply");
        assert!(
            matches!(out[3], Ok(Output::RotationStarted(_))),
            "{:?}",
            out[3]
        );
        let out = sm
            .apply(vec![entry(5, Op::DeleteCredential { name: "b".into() })])
            .await;
        assert_eq!(
            out.expect("apply"),
            vec![Ok(Output::Deleted { existed: true })]
        );
        assert_eq!(shared.revision(), 5);
        shared.read(Clone::clone)
    };

    let (_, mut sm, shared) = open(&path).expect("reopen");
    assert_eq!(
        shared.read(Clone::clone),
        before,
        "the state read back differs"
    );
    assert_eq!(shared.revision(), 5);
    let (applied, membership) = sm.applied_state().await.expect("applied state");
    assert_eq!(applied.map(|id| id.index), Some(5));
    assert_eq!(membership.log_id().map(|id| id.index), Some(1));
    assert!(before.credentials.contains_key("a") && !before.credentials.contains_key("b"));
}

#[tokio::test]
async fn a_snapshot_restores_the_state_elsewhere() {
    let source_dir = tempfile::tempdir().expect("temp dir");
    let (_, mut source, source_state) = open(&source_dir.path().join("baton.redb")).expect("open");
    source
        .apply(vec![
            entry(1, put("a")),
            entry(2, put("b")),
            entry(3, begin("b")),
        ])
        .await
        .expect("apply");
    let snapshot = source.build_snapshot().await.expect("snapshot");

    let target_dir = tempfile::tempdir().expect("temp dir");
    let path = target_dir.path().join("baton.redb");
    {
        let (_, mut target, _) = open(&path).expect("open");
        // The target knew a credential the snapshot does not have: it must disappear.
        target
            .apply(vec![entry(1, put("stale"))])
            .await
            .expect("apply");
        target
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .expect("install");
    }

    let (_, mut target, target_state) = open(&path).expect("reopen");
    assert_eq!(
        target_state.read(Clone::clone),
        source_state.read(Clone::clone)
    );
    assert_eq!(target_state.revision(), 3);
    let current = target
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("a snapshot");
    assert_eq!(current.meta.last_log_id.map(|id| id.index), Some(3));
}
