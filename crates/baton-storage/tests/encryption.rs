//! Encryption at rest: the database file holds no secret in plain text, opens only with its
//! master key, and survives a rotation of the master key.

use baton_core::{Command, IssuerSpec, Op, Policy, PolicyRequest, Secret, StaticSpec, Timestamp};
use baton_storage::{KeyError, MasterKey, MasterKeys, OpenError};
use openraft::storage::{RaftLogStorageExt, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

const SECRET: &str = "plain-text-token-that-must-never-be-on-disk";

fn key(byte: &str) -> MasterKey {
    MasterKey::from_text(&byte.repeat(32)).expect("a key")
}

fn keys(current: &str, previous: Option<&str>) -> MasterKeys {
    MasterKeys {
        current: key(current),
        previous: previous.map(key),
    }
}

fn put_entry() -> Entry<baton_storage::TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
        payload: EntryPayload::Normal(Command {
            now: Timestamp::from_secs(1_000),
            op: Op::PutCredential {
                name: "partner".into(),
                issuer: IssuerSpec::Static(StaticSpec {
                    token: Secret::new(SECRET),
                    expires_at: None,
                }),
                policy: Policy::from_request(&PolicyRequest::default()).expect("policy"),
            },
        }),
    }
}

/// Writes the secret through the log and the state machine, then closes the store.
async fn write_secret(path: &std::path::Path, keys: &MasterKeys) {
    let mut store = baton_storage::open(path, keys).expect("open");
    let entry = put_entry();
    store
        .log
        .blocking_append(vec![entry.clone()])
        .await
        .expect("append");
    store.state_machine.apply(vec![entry]).await.expect("apply");
}

fn file_holds(path: &std::path::Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).expect("read the database file");
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn the_database_file_holds_no_secret_in_plain_text() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("baton.redb");
    write_secret(&path, &keys("11", None)).await;
    assert!(
        !file_holds(&path, SECRET),
        "the secret is on disk in plain text"
    );

    let store = baton_storage::open(&path, &keys("11", None)).expect("reopen");
    let token = store
        .shared
        .read(|s| match &s.credentials["partner"].issuer {
            IssuerSpec::Static(spec) => spec.token.expose().to_owned(),
            other => panic!("{other:?}"),
        });
    assert_eq!(token, SECRET);
}

#[tokio::test]
async fn another_master_key_does_not_open_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("baton.redb");
    write_secret(&path, &keys("11", None)).await;
    let err = baton_storage::open(&path, &keys("22", None)).unwrap_err();
    assert!(
        matches!(err, OpenError::Keys(KeyError::WrongMasterKey { .. })),
        "{err}"
    );
    assert!(!err.to_string().contains(&"22".repeat(32)), "{err}");
}

#[tokio::test]
async fn a_rotated_master_key_opens_the_store_and_the_old_one_no_longer_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("baton.redb");
    write_secret(&path, &keys("11", None)).await;

    // Online: re-wrap with the new key while the store is open.
    {
        let store = baton_storage::open(&path, &keys("11", None)).expect("open");
        store.keyring.rewrap(&key("22")).expect("rewrap");
        assert_eq!(store.keyring.master_id(), key("22").id());
    }
    assert!(baton_storage::open(&path, &keys("11", None)).is_err());
    let store = baton_storage::open(&path, &keys("22", None)).expect("open with the new key");
    assert_eq!(store.shared.read(|s| s.credentials.len()), 1);
    drop(store);

    // At start: the new key as current and the old one as previous re-wraps.
    let store = baton_storage::open(&path, &keys("33", Some("22"))).expect("open");
    assert_eq!(store.keyring.master_id(), key("33").id());
    drop(store);
    assert!(baton_storage::open(&path, &keys("33", None)).is_ok());
}
