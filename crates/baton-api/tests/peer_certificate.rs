//! A verified client certificate, as the TLS layer hands it over (a `PeerCertificate` request
//! extension), is a principal when the configuration maps its subject to an access policy.
//! In-process router tests: the extension is inserted by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use baton_api::{ApiConfig, AuthConfig, PeerCertificate};
use baton_core::{AccessPolicy, Capability, Rule};
use baton_engine::{Engine, EngineConfig};
use baton_raft::{Node, NodeConfig};
use tower::ServiceExt;

async fn setup(dir: &std::path::Path) -> axum::Router {
    let keys = baton_raft::MasterKeys {
        current: baton_raft::MasterKey::generate().expect("a key"),
        previous: None,
    };
    let node = Node::start(NodeConfig::new(1, dir.join("data"), keys))
        .await
        .expect("node");
    let node = Arc::new(node);
    let policy = AccessPolicy {
        rules: vec![Rule {
            pattern: "partner-*".into(),
            capabilities: BTreeSet::from([Capability::ReadToken]),
        }],
    };
    baton_api::put_access_policy(&node, "worker-policy", policy)
        .await
        .expect("policy");
    for name in ["partner-api", "other"] {
        let spec = serde_json::json!({"issuer": {"kind": "static", "token": "the-static-value"}});
        let req = serde_json::from_value(spec).expect("spec");
        baton_api::put_credential(&node, name, req)
            .await
            .expect("credential");
    }
    let engine = Engine::start(node, EngineConfig::default());
    let config = ApiConfig {
        auth: AuthConfig {
            certificates: BTreeMap::from([("CN=worker-1".into(), "worker-policy".into())]),
            audit_log: Some(dir.join("audit.log")),
            ..AuthConfig::default()
        },
        ..ApiConfig::default()
    };
    baton_api::router(engine, config)
}

fn token_read(name: &str, subject: Option<&str>) -> Request<Body> {
    let mut req = Request::get(format!("/v1/credentials/{name}/token?wait=5s"))
        .body(Body::empty())
        .expect("request");
    if let Some(subject) = subject {
        req.extensions_mut().insert(PeerCertificate {
            subject: subject.into(),
        });
    }
    req
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mapped_certificate_subject_gets_its_policy_and_is_audited() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = setup(dir.path()).await;

    let ok = app
        .clone()
        .oneshot(token_read("partner-api", Some("CN=worker-1")))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);

    let other = app
        .clone()
        .oneshot(token_read("other", Some("CN=worker-1")))
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::FORBIDDEN);

    let unmapped = app
        .clone()
        .oneshot(token_read("partner-api", Some("CN=stranger")))
        .await
        .unwrap();
    assert_eq!(unmapped.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unmapped.headers()["www-authenticate"], "Bearer");

    let none = app
        .clone()
        .oneshot(token_read("partner-api", None))
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);

    let audit = std::fs::read_to_string(dir.path().join("audit.log")).expect("audit log");
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert!(lines.iter().any(|l| l["principal"] == "CN=worker-1"
        && l["principal_kind"] == "certificate"
        && l["target"] == "partner-api"
        && l["outcome"] == 200));
    assert!(lines
        .iter()
        .any(|l| l["principal"] == "CN=worker-1" && l["outcome"] == 403));
    assert!(!audit.contains("the-static-value"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bearer_token_wins_over_a_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = setup(dir.path()).await;
    let mut req = token_read("partner-api", Some("CN=worker-1"));
    req.headers_mut().insert(
        "authorization",
        format!("Bearer btn_{}", "0".repeat(64)).parse().unwrap(),
    );
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}
