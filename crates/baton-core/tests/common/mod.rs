//! Helpers for the state machine tests: issuers and policies to put, and a [`Harness`] that
//! stamps each command with a time and numbers it like a log entry, the way replication does.
//!
//! Every helper goes through `State::apply`, the one entry point the rest of baton uses.
#![allow(dead_code)]

use baton_core::{
    Algorithm, Claims, Command, Credential, Intent, IssuerSpec, JwtSpec, Op, Output, Overlap,
    Policy, Response, RotationReason, Secret, Secs, State, StaticSpec, Timestamp,
};

/// The instant every scenario starts from: a whole second, far from the epoch.
pub const T0: Timestamp = Timestamp::from_secs(1_700_000_000);

/// The credential most scenarios are about.
pub const NAME: &str = "github-app";

/// `T0` plus whole seconds.
pub fn at(secs: u64) -> Timestamp {
    T0.add(Secs(secs))
}

pub fn static_issuer(token: &str) -> IssuerSpec {
    IssuerSpec::Static(StaticSpec {
        token: Secret::new(token),
        expires_at: None,
    })
}

/// A jwt issuer; the state machine never parses the key, so it need not be one.
pub fn jwt_issuer(key_id: &str) -> IssuerSpec {
    IssuerSpec::Jwt(JwtSpec {
        algorithm: Algorithm::EdDSA,
        key_id: key_id.into(),
        private_key: Secret::new("not-a-real-key"),
        claims: Claims::default(),
        clock_allowance: Secs(30),
    })
}

/// Versions live 10 minutes, renewal starts 2 minutes before expiry, reads need 30 seconds left.
pub fn policy(overlap: Overlap) -> Policy {
    Policy {
        lifetime: Secs(600),
        min_use: Secs::ZERO,
        max_lifetime: Secs(600),
        renew_before: Secs(120),
        min_remaining: Secs(30),
        overlap,
    }
}

/// The token a test issuer mints for the intent with this fence.
pub fn token_for(fence: u64) -> Secret {
    Secret::new(format!("token-for-fence-{fence}"))
}

/// A [`State`] and the log index of the last command applied to it.
#[derive(Debug, Default)]
pub struct Harness {
    pub state: State,
    revision: u64,
}

impl Harness {
    /// A state holding [`NAME`], a jwt credential under [`policy`], put at `at(0)`.
    pub fn with_credential(overlap: Overlap) -> Self {
        let mut h = Harness::default();
        h.put(at(0), NAME, jwt_issuer("k"), policy(overlap))
            .expect("the test policy is valid");
        h
    }

    /// Applies `op` as the next log entry, stamped with `now`.
    pub fn apply(&mut self, now: Timestamp, op: Op) -> Response {
        self.revision += 1;
        self.state.apply(self.revision, Command { now, op })
    }

    pub fn credential(&self, name: &str) -> &Credential {
        self.state
            .credentials
            .get(name)
            .unwrap_or_else(|| panic!("no credential `{name}`"))
    }

    pub fn put(
        &mut self,
        now: Timestamp,
        name: &str,
        issuer: IssuerSpec,
        policy: Policy,
    ) -> Response {
        self.apply(
            now,
            Op::PutCredential {
                name: name.into(),
                issuer,
                policy,
            },
        )
    }

    pub fn delete(&mut self, now: Timestamp, name: &str) -> Response {
        self.apply(now, Op::DeleteCredential { name: name.into() })
    }

    pub fn begin(&mut self, now: Timestamp, name: &str, deadline: Timestamp) -> Response {
        self.apply(
            now,
            Op::BeginRotation {
                name: name.into(),
                deadline,
                reason: RotationReason::Scheduled,
            },
        )
    }

    /// Begins a rotation that must be accepted, and returns its intent.
    pub fn begin_ok(&mut self, now: Timestamp, name: &str, deadline: Timestamp) -> Intent {
        match self.begin(now, name, deadline) {
            Ok(Output::RotationStarted(intent)) => intent,
            other => panic!("begin at {now} was not accepted: {other:?}"),
        }
    }

    /// Commits a result for `fence` with the window the issuer chose.
    pub fn commit(
        &mut self,
        now: Timestamp,
        name: &str,
        fence: u64,
        not_before: Timestamp,
        expires_at: Timestamp,
    ) -> Response {
        self.apply(
            now,
            Op::CommitRotation {
                name: name.into(),
                fence,
                token: token_for(fence),
                issued_at: now,
                not_before,
                expires_at,
            },
        )
    }

    /// Commits the window the intent planned, as a jwt issuer mints it.
    pub fn commit_planned(&mut self, now: Timestamp, name: &str, intent: &Intent) -> Response {
        self.commit(
            now,
            name,
            intent.fence,
            intent.not_before,
            intent.expires_at,
        )
    }

    pub fn fail(
        &mut self,
        now: Timestamp,
        name: &str,
        fence: u64,
        retry_at: Timestamp,
    ) -> Response {
        self.apply(
            now,
            Op::FailRotation {
                name: name.into(),
                fence,
                error: "issuer answered 503".into(),
                retry_at,
                unknown: false,
            },
        )
    }

    /// Begins at `now` and commits the planned window at once: the first version, or the next.
    pub fn rotate(&mut self, now: Timestamp, name: &str) -> Intent {
        let intent = self.begin_ok(now, name, now.add(Secs(60)));
        let out = self.commit_planned(now, name, &intent);
        assert!(
            matches!(out, Ok(Output::RotationCommitted { .. })),
            "commit at {now} was refused: {out:?}"
        );
        intent
    }
}
