//! The static issuer: a value set by hand is served within the intent's window, cut short at
//! its own expiry, and refused once that has passed.

use baton_core::{
    Intent, IssuerSpec, Policy, PolicyRequest, RotationReason, Secret, StaticSpec, Timestamp,
};
use baton_issuers::{
    describe, mint, prepare, IssueError, IssuerRequest, MintRequest, PrepareError,
};
use serde_json::{json, Value};

const START: u64 = 1_900_000_000; // 2030-03-17T17:46:40Z

fn prepare_json(value: Value) -> Result<IssuerSpec, PrepareError> {
    let req: IssuerRequest = serde_json::from_value(value).unwrap();
    prepare(req, None)
}

fn static_spec(spec: &IssuerSpec) -> &StaticSpec {
    match spec {
        IssuerSpec::Static(spec) => spec,
        other => panic!("not a static spec: {other:?}"),
    }
}

fn intent() -> Intent {
    Intent {
        rotation: 1,
        fence: 1,
        started_at: Timestamp::from_secs(START),
        deadline: Timestamp::from_secs(START + 60),
        not_before: Timestamp::from_secs(START),
        expires_at: Timestamp::from_secs(START + 3600),
        reason: RotationReason::Scheduled,
    }
}

async fn mint_intent(
    spec: &IssuerSpec,
    intent: &Intent,
) -> Result<baton_issuers::Minted, IssueError> {
    let policy = Policy::from_request(&PolicyRequest::default()).unwrap();
    let req = MintRequest {
        credential: "legacy",
        uid: 1,
        intent,
        policy: &policy,
    };
    mint(spec, req).await
}

#[test]
fn the_token_is_read_inline_from_env_or_from_a_file() {
    let spec = prepare_json(json!({"kind": "static", "token": "s3cr3t"})).unwrap();
    assert_eq!(static_spec(&spec).token, Secret::new("s3cr3t"));

    let spec = prepare_json(json!({"kind": "static", "token": {"env": "CARGO_PKG_NAME"}})).unwrap();
    assert_eq!(static_spec(&spec).token, Secret::new("baton-issuers"));

    let path = std::env::temp_dir().join(format!("baton-static-{}", std::process::id()));
    std::fs::write(&path, "from-a-file\n").unwrap();
    let spec = prepare_json(json!({"kind": "static", "token": {"file": path}})).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(static_spec(&spec).token, Secret::new("from-a-file"));
}

#[test]
fn an_empty_token_or_a_bad_expiry_is_refused() {
    let err = prepare_json(json!({"kind": "static", "token": ""})).unwrap_err();
    assert_eq!(err.to_string(), "static: token is empty");

    let err = prepare_json(json!({"kind": "static", "token": "t", "expires_at": "next tuesday"}))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "static: expires_at `next tuesday` is not an RFC 3339 time (e.g. 2030-01-31T12:00:00Z)"
    );

    let err = prepare_json(json!({"kind": "static", "token": {"env": "BATON_TEST_UNSET_TOKEN"}}))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment variable BATON_TEST_UNSET_TOKEN is not set (references are read where the baton server runs)"
    );
}

#[tokio::test]
async fn mint_serves_the_value_within_the_intents_window() {
    let spec = prepare_json(json!({"kind": "static", "token": "s3cr3t"})).unwrap();
    let minted = mint_intent(&spec, &intent()).await.unwrap();
    assert_eq!(minted.token.expose(), "s3cr3t");
    assert_eq!(minted.issued_at, intent().started_at);
    assert_eq!(minted.not_before, intent().not_before);
    assert_eq!(minted.expires_at, intent().expires_at);
}

#[tokio::test]
async fn a_version_never_outlives_the_values_expiry() {
    let spec = prepare_json(json!({
        "kind": "static", "token": "s3cr3t", "expires_at": "2030-03-17T18:16:40Z"
    }))
    .unwrap();
    let expiry = Timestamp::from_secs(START + 1800);
    assert_eq!(static_spec(&spec).expires_at, Some(expiry));

    let minted = mint_intent(&spec, &intent()).await.unwrap();
    assert_eq!(minted.expires_at, expiry);

    // A window starting at or after the expiry cannot be served.
    let mut late = intent();
    late.not_before = expiry;
    let err = mint_intent(&spec, &late).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "static: the value expired at 2030-03-17T18:16:40Z, set a new one"
    );
}

#[tokio::test]
async fn an_empty_window_is_refused() {
    let spec = prepare_json(json!({"kind": "static", "token": "s3cr3t"})).unwrap();
    let mut empty = intent();
    empty.expires_at = empty.not_before;
    let err = mint_intent(&spec, &empty).await.unwrap_err();
    assert!(matches!(err, IssueError::EmptyWindow { .. }), "{err:?}");
}

#[test]
fn unknown_fields_are_refused() {
    let err = serde_json::from_value::<IssuerRequest>(
        json!({"kind": "static", "token": "t", "expires": "2030-01-01T00:00:00Z"}),
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `expires`"), "{err}");
}

/// Pins that neither `Debug` nor `describe` shows the value.
#[tokio::test]
async fn the_value_is_never_shown() {
    let value = "static-value-hunter2";
    let req: IssuerRequest = serde_json::from_value(json!({
        "kind": "static", "token": value, "expires_at": "2030-03-17T18:16:40Z"
    }))
    .unwrap();
    let spec = prepare(req.clone(), None).unwrap();
    let minted = mint_intent(&spec, &intent()).await.unwrap();
    let description = describe(&spec);
    assert_eq!(
        description,
        json!({"kind": "static", "expires_at": "2030-03-17T18:16:40Z"})
    );
    for shown in [
        format!("{req:?}"),
        format!("{spec:?}"),
        format!("{spec:#?}"),
        format!("{minted:?}"),
        description.to_string(),
    ] {
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
