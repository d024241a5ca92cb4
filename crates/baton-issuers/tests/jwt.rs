//! The jwt issuer end to end: requests become specs, specs mint tokens, and the tokens verify
//! against the published JWKS with exactly the claims the intent describes.
//!
//! The PEM files under `tests/keys/` are throwaway test keys made with OpenSSL 3
//! (`genrsa -traditional`, `pkcs8 -topk8 -nocrypt`, `genpkey -algorithm ed25519`); they check that
//! keys from the usual tool import.

use std::path::PathBuf;
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use baton_core::{
    Intent, IssuerSpec, JwtSpec, Overlap, Policy, PolicyRequest, RotationReason, Secs, Timestamp,
};
use baton_issuers::{
    describe, jwks, mint, prepare, IssueError, IssuerRequest, MintRequest, Minted, PrepareError,
};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const STARTED: u64 = 1_900_000_000;

fn key_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn key_text(name: &str) -> String {
    std::fs::read_to_string(key_file(name)).unwrap()
}

fn request(value: Value) -> IssuerRequest {
    serde_json::from_value(value).unwrap()
}

fn prepare_json(value: Value) -> IssuerSpec {
    prepare(request(value), None).unwrap()
}

fn prepare_err(value: Value) -> PrepareError {
    prepare(request(value), None).unwrap_err()
}

fn jwt_spec(spec: &IssuerSpec) -> &JwtSpec {
    match spec {
        IssuerSpec::Jwt(spec) => spec,
        other => panic!("not a jwt spec: {other:?}"),
    }
}

/// RSA key generation is the slow part of these tests: one generated key serves them all.
fn rs256_spec() -> &'static IssuerSpec {
    static SPEC: OnceLock<IssuerSpec> = OnceLock::new();
    SPEC.get_or_init(|| prepare_json(json!({"kind": "jwt", "algorithm": "RS256"})))
}

/// Rotation 7, begun at `STARTED` + 0.4s, for the window [STARTED, STARTED + 1h).
fn intent() -> Intent {
    Intent {
        rotation: 7,
        fence: 42,
        started_at: Timestamp::from_millis(STARTED * 1000 + 400),
        deadline: Timestamp::from_secs(STARTED + 60),
        not_before: Timestamp::from_secs(STARTED),
        expires_at: Timestamp::from_secs(STARTED + 3600),
        reason: RotationReason::Scheduled,
    }
}

async fn mint_with(spec: &IssuerSpec, intent: &Intent, overlap: Overlap) -> Minted {
    let policy = Policy::from_request(&PolicyRequest {
        overlap: Some(overlap),
        ..PolicyRequest::default()
    })
    .unwrap();
    let req = MintRequest {
        credential: "payments-api",
        uid: 3,
        intent,
        policy: &policy,
    };
    mint(spec, req).await.unwrap()
}

/// Verifies `token` with the key published in the spec's JWKS, leaving time checks to the
/// caller (the tokens here are for 2030), and returns its header and claims.
fn verify(spec: &IssuerSpec, token: &str) -> (jsonwebtoken::Header, Value) {
    let set: JwkSet = serde_json::from_value(jwks(spec).unwrap()).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = set
        .find(header.kid.as_deref().unwrap())
        .expect("kid is in the JWKS");
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap();
    (data.header, data.claims)
}

fn expected_jti(credential: &str, uid: u64, rotation: u64) -> String {
    let digest = Sha256::digest(format!("{credential}\0{uid}\0{rotation}"));
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

#[tokio::test]
async fn minting_the_same_intent_twice_gives_identical_bytes() {
    let eddsa = prepare_json(json!({"kind": "jwt"}));
    for spec in [&eddsa, rs256_spec()] {
        let first = mint_with(spec, &intent(), Overlap::Allowed).await;
        let again = mint_with(spec, &intent(), Overlap::Allowed).await;
        assert_eq!(first.token, again.token, "{}", jwt_spec(spec).key_id);

        // A replica knows the spec only through the log: it must mint the same bytes too.
        let replicated: IssuerSpec =
            serde_json::from_str(&serde_json::to_string(spec).unwrap()).unwrap();
        let there = mint_with(&replicated, &intent(), Overlap::Allowed).await;
        assert_eq!(first.token, there.token);

        let mut next = intent();
        next.rotation += 1;
        let other = mint_with(spec, &next, Overlap::Allowed).await;
        assert_ne!(first.token, other.token);
    }
}

#[tokio::test]
async fn tokens_verify_against_the_jwks_with_the_intents_times() {
    let eddsa = prepare_json(json!({"kind": "jwt"}));
    for (spec, alg) in [
        (&eddsa, jsonwebtoken::Algorithm::EdDSA),
        (rs256_spec(), jsonwebtoken::Algorithm::RS256),
    ] {
        let minted = mint_with(spec, &intent(), Overlap::Allowed).await;
        let (header, claims) = verify(spec, minted.token.expose());

        assert_eq!(header.alg, alg);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(header.kid.as_deref(), Some(jwt_spec(spec).key_id.as_str()));
        // Back-dated by the default clock allowance of 30s; the intent's 0.4s are dropped.
        assert_eq!(claims["iat"], STARTED - 30);
        assert_eq!(claims["nbf"], STARTED - 30);
        assert_eq!(claims["exp"], STARTED + 3600);
        assert_eq!(claims["jti"], expected_jti("payments-api", 3, 7));

        assert_eq!(minted.issued_at, intent().started_at);
        assert_eq!(minted.not_before, intent().not_before);
        assert_eq!(minted.expires_at, intent().expires_at);
    }
}

#[tokio::test]
async fn overlap_none_keeps_nbf_exactly_at_the_window_start() {
    let spec = prepare_json(json!({"kind": "jwt", "clock_allowance": "2m"}));
    let minted = mint_with(&spec, &intent(), Overlap::None).await;
    let (_, claims) = verify(&spec, minted.token.expose());
    assert_eq!(claims["nbf"], STARTED);
    assert_eq!(claims["iat"], STARTED - 120);
}

#[tokio::test]
async fn the_claims_template_is_copied_into_every_token() {
    let spec = prepare_json(json!({
        "kind": "jwt",
        "claims": {
            "iss": "baton", "sub": "svc-payments", "aud": ["api-a", "api-b"],
            "scope": "read write", "tenant": {"id": 12, "tier": "gold"}
        }
    }));
    let minted = mint_with(&spec, &intent(), Overlap::Allowed).await;
    let (_, claims) = verify(&spec, minted.token.expose());
    assert_eq!(claims["iss"], "baton");
    assert_eq!(claims["sub"], "svc-payments");
    assert_eq!(claims["aud"], json!(["api-a", "api-b"]));
    assert_eq!(claims["scope"], "read write");
    assert_eq!(claims["tenant"], json!({"id": 12, "tier": "gold"}));
}

#[test]
fn claims_baton_sets_are_refused_in_the_template() {
    for claim in ["iat", "nbf", "exp", "jti"] {
        let err = prepare_err(json!({"kind": "jwt", "claims": {"sub": "x", claim: 1}}));
        assert_eq!(
            err.to_string(),
            format!("claims: claim `{claim}` is set by baton")
        );
    }
}

#[test]
fn aud_must_be_a_string_or_a_list_of_strings() {
    prepare_json(json!({"kind": "jwt", "claims": {"aud": "one"}}));
    for aud in [json!(5), json!(["a", 1]), json!({"a": "b"})] {
        let err = prepare_err(json!({"kind": "jwt", "claims": {"aud": aud}}));
        assert!(matches!(err, PrepareError::InvalidAudience), "{err:?}");
    }
}

#[test]
fn defaults_are_eddsa_a_generated_key_and_a_30s_allowance() {
    let spec = prepare_json(json!({"kind": "jwt"}));
    let spec = jwt_spec(&spec);
    assert_eq!(spec.algorithm, baton_core::Algorithm::EdDSA);
    assert_eq!(spec.clock_allowance, Secs(30));
    assert_eq!(spec.key_id.len(), 16);
    assert!(spec
        .private_key
        .expose()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[test]
fn generate_keeps_the_existing_key_and_key_id() {
    let req = || request(json!({"kind": "jwt", "key": "generate"}));
    let first = prepare(req(), None).unwrap();

    let again = prepare(req(), Some(&first)).unwrap();
    assert_eq!(again, first);

    // A new key id renames the key without replacing it...
    let renamed = request(json!({"kind": "jwt", "key_id": "k2"}));
    let renamed = prepare(renamed, Some(&first)).unwrap();
    assert_eq!(jwt_spec(&renamed).key_id, "k2");
    assert_eq!(jwt_spec(&renamed).private_key, jwt_spec(&first).private_key);
    // ...and the chosen id then sticks when the request stops naming one.
    let kept = prepare(req(), Some(&renamed)).unwrap();
    assert_eq!(jwt_spec(&kept).key_id, "k2");

    // Without an existing spec, or for another algorithm, a new key is generated.
    let fresh = prepare(req(), None).unwrap();
    assert_ne!(jwt_spec(&fresh).private_key, jwt_spec(&first).private_key);
    let rsa = request(json!({"kind": "jwt", "algorithm": "RS256"}));
    let rsa = prepare(rsa, Some(rs256_spec())).unwrap();
    assert_eq!(
        jwt_spec(&rsa).private_key,
        jwt_spec(rs256_spec()).private_key
    );
    let switched = prepare(req(), Some(rs256_spec())).unwrap();
    assert_eq!(jwt_spec(&switched).algorithm, baton_core::Algorithm::EdDSA);
}

#[test]
fn rsa_pkcs1_and_pkcs8_imports_store_the_same_pkcs8_key() {
    let pkcs1 = prepare_json(json!({
        "kind": "jwt", "algorithm": "RS256",
        "key": {"file": key_file("rsa2048-pkcs1.pem")}
    }));
    let pkcs8 = prepare_json(json!({
        "kind": "jwt", "algorithm": "RS256",
        "key": {"pem": key_text("rsa2048-pkcs8.pem")}
    }));
    assert_eq!(pkcs1, pkcs8);
    let stored = jwt_spec(&pkcs1).private_key.expose();
    assert!(
        stored.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "PKCS#8"
    );
    assert_eq!(stored.trim_end(), key_text("rsa2048-pkcs8.pem").trim_end());
}

#[tokio::test]
async fn an_openssl_ed25519_key_imports_and_signs() {
    let spec = prepare_json(json!({
        "kind": "jwt", "key": {"pem": key_text("ed25519-pkcs8.pem")}, "key_id": "ops-2030"
    }));
    assert_eq!(
        jwt_spec(&spec).private_key.expose(),
        key_text("ed25519-pkcs8.pem")
    );
    let minted = mint_with(&spec, &intent(), Overlap::Allowed).await;
    let (header, _) = verify(&spec, minted.token.expose());
    assert_eq!(header.kid.as_deref(), Some("ops-2030"));
}

#[test]
fn an_ed25519_key_with_its_public_key_is_normalised() {
    use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
    use rsa::pkcs8::LineEnding;
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&key_text("ed25519-pkcs8.pem")).unwrap();
    // ed25519-dalek writes PKCS#8 v2, which carries the public key as well.
    let v2 = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    assert_ne!(v2.as_str(), key_text("ed25519-pkcs8.pem"));

    let spec = prepare_json(json!({"kind": "jwt", "key": {"pem": v2.as_str()}}));
    assert_eq!(
        jwt_spec(&spec).private_key.expose(),
        key_text("ed25519-pkcs8.pem")
    );
}

#[test]
fn a_garbage_pem_is_refused_without_echoing_it() {
    let garbage =
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ1dC1ub3QtYS1rZXk=\n-----END PRIVATE KEY-----";
    for (algorithm, message) in [
        ("EdDSA", "key: not a PKCS#8 PEM private key for EdDSA"),
        (
            "RS256",
            "key: not a PKCS#8 or PKCS#1 PEM private key for RS256",
        ),
    ] {
        let err =
            prepare_err(json!({"kind": "jwt", "algorithm": algorithm, "key": {"pem": garbage}}));
        assert_eq!(err.to_string(), message);
        assert!(!format!("{err:?}").contains("c2VjcmV0"), "{err:?}");
    }
    let err = prepare_err(json!({"kind": "jwt", "key": {"pem": "hunter2"}}));
    assert!(!format!("{err} {err:?}").contains("hunter2"));
}

#[test]
fn a_key_for_the_other_algorithm_is_named_as_such() {
    let err = prepare_err(json!({"kind": "jwt", "key": {"pem": key_text("rsa2048-pkcs8.pem")}}));
    assert_eq!(
        err.to_string(),
        "key: this is an RSA private key, but algorithm is EdDSA"
    );
    let err = prepare_err(json!({
        "kind": "jwt", "algorithm": "RS256", "key": {"pem": key_text("ed25519-pkcs8.pem")}
    }));
    assert_eq!(
        err.to_string(),
        "key: this is an Ed25519 private key, but algorithm is RS256"
    );
}

#[test]
fn rsa_keys_below_2048_bits_are_refused() {
    let err = prepare_err(json!({
        "kind": "jwt", "algorithm": "RS256", "key": {"pem": key_text("rsa1024-pkcs1.pem")}
    }));
    assert_eq!(
        err.to_string(),
        "key: RSA keys must have at least 2048 bits, this one has 1024"
    );
}

#[test]
fn key_sources_name_the_variable_or_file() {
    let err = prepare_err(json!({"kind": "jwt", "key": {"env": "BATON_TEST_NO_SUCH_KEY"}}));
    assert_eq!(
        err.to_string(),
        "environment variable BATON_TEST_NO_SUCH_KEY is not set (references are read where the baton server runs)"
    );
    let err = prepare_err(json!({"kind": "jwt", "key": {"file": "/nonexistent/baton.pem"}}));
    assert!(
        err.to_string()
            .starts_with("cannot read /nonexistent/baton.pem: "),
        "{err}"
    );
}

#[test]
fn an_empty_key_id_is_refused() {
    let err = prepare_err(json!({"kind": "jwt", "key_id": " "}));
    assert_eq!(err.to_string(), "key_id: must not be empty");
}

#[test]
fn unknown_fields_and_kinds_are_refused() {
    let err = serde_json::from_value::<IssuerRequest>(json!({"kind": "jwt", "algoritm": "RS256"}))
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown field `algoritm`"),
        "{err}"
    );
    let err = serde_json::from_value::<IssuerRequest>(json!({"kind": "ldap"})).unwrap_err();
    assert!(err.to_string().contains("unknown variant `ldap`"), "{err}");
    let err = serde_json::from_value::<IssuerRequest>(json!({"kind": "jwt", "algorithm": "HS256"}))
        .unwrap_err();
    assert!(err.to_string().contains("HS256"), "{err}");
}

/// Regression: a PEM key given as a bare string came back in the error as an
/// "unknown variant", key and all.
#[test]
fn a_key_given_as_a_bare_string_is_refused_without_echoing_it() {
    let pem =
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIB3cr3tS3cr3t\n-----END PRIVATE KEY-----";
    for key in [
        json!(pem),
        json!({"pem": pem, "env": "X"}),
        json!({"pam": pem}),
    ] {
        let err = serde_json::from_value::<IssuerRequest>(json!({"kind": "jwt", "key": key}))
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("S3cr3t") && !err.contains("BEGIN PRIVATE"),
            "{err}"
        );
        assert!(err.contains("generate"), "{err}");
    }
    let ok = serde_json::from_value::<IssuerRequest>(json!({"kind": "jwt", "key": {"pem": pem}}));
    assert!(ok.is_ok());
}

#[test]
fn a_request_reads_from_toml() {
    let req: IssuerRequest = toml::from_str(
        r#"
        kind = "jwt"
        algorithm = "EdDSA"
        key = "generate"
        clock_allowance = "1m"
        [claims]
        iss = "baton"
        aud = ["a", "b"]
        scope = "read"
        "#,
    )
    .unwrap();
    let spec = prepare(req, None).unwrap();
    let spec = jwt_spec(&spec);
    assert_eq!(spec.clock_allowance, Secs(60));
    assert_eq!(spec.claims.aud, Some(json!(["a", "b"])));
    assert_eq!(spec.claims.custom["scope"], "read");

    let req: IssuerRequest = toml::from_str(
        r#"
        kind = "jwt"
        key = { file = "/etc/baton/key.pem" }
        "#,
    )
    .unwrap();
    let IssuerRequest::Jwt(req) = req else {
        panic!("jwt")
    };
    assert_eq!(
        req.key,
        baton_issuers::KeyRequest::File("/etc/baton/key.pem".into())
    );
}

#[test]
fn jwks_publishes_only_the_public_key() {
    let eddsa = prepare_json(json!({"kind": "jwt", "key_id": "k1"}));
    assert_eq!(
        jwks(&eddsa).unwrap()["keys"][0],
        json!({
            "kid": "k1", "use": "sig", "alg": "EdDSA", "kty": "OKP", "crv": "Ed25519",
            "x": jwks(&eddsa).unwrap()["keys"][0]["x"],
        })
    );
    let rsa = jwks(rs256_spec()).unwrap();
    let key = rsa["keys"][0].as_object().unwrap();
    let mut fields: Vec<&str> = key.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["alg", "e", "kid", "kty", "n", "use"]);

    let static_spec = prepare_json(json!({"kind": "static", "token": "t"}));
    let err = jwks(&static_spec).unwrap_err();
    assert!(
        matches!(err, IssueError::NoPublicKey { kind: "static" }),
        "{err:?}"
    );
}

#[test]
fn describe_shows_the_setup_but_not_the_key() {
    let spec = prepare_json(json!({"kind": "jwt", "key_id": "k1", "claims": {"iss": "baton"}}));
    assert_eq!(
        describe(&spec),
        json!({
            "kind": "jwt", "algorithm": "EdDSA", "key_id": "k1",
            "claims": {"iss": "baton"}, "clock_allowance": "30s",
        })
    );
}

/// Pins that no `Debug` output (which ends up in logs and panics) carries a key or a token.
#[tokio::test]
async fn debug_output_never_contains_a_key_or_a_token() {
    let pem = key_text("ed25519-pkcs8.pem");
    let key_body = pem.lines().nth(1).unwrap().to_owned();
    let req = request(json!({"kind": "jwt", "key": {"pem": pem}}));
    let spec = prepare(req.clone(), None).unwrap();
    let minted = mint_with(&spec, &intent(), Overlap::Allowed).await;
    let signature = minted.token.expose().rsplit('.').next().unwrap().to_owned();

    let rsa = rs256_spec();
    let rsa_body = jwt_spec(rsa)
        .private_key
        .expose()
        .lines()
        .nth(5)
        .unwrap()
        .to_owned();

    for shown in [
        format!("{req:?}"),
        format!("{req:#?}"),
        format!("{spec:?}"),
        format!("{spec:#?}"),
        format!("{rsa:?}"),
        format!("{minted:?}"),
        format!("{minted:#?}"),
        describe(&spec).to_string(),
        jwks(&spec).unwrap().to_string(),
    ] {
        assert!(!shown.contains(&key_body), "{shown}");
        assert!(!shown.contains(&rsa_body), "{shown}");
        assert!(!shown.contains(&signature), "{shown}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }
}
