//! The state machine with issuers that call out (oauth2, exec): tokens valid from the moment
//! they are issued, lifetimes chosen by the issuer, calls whose outcome is unknown.

mod common;

use baton_core::{
    AuthMethod, CommandError, Due, IssuerSpec, OAuth2Spec, Op, Output, Overlap, SecretRef, Secs,
};
use common::{at, policy, Harness, NAME};

fn oauth2_issuer() -> IssuerSpec {
    IssuerSpec::OAuth2(OAuth2Spec {
        token_url: "https://auth.example/token".into(),
        client_id: "fleet".into(),
        client_secret: SecretRef::Env {
            env: "FLEET_SECRET".into(),
        },
        auth_method: AuthMethod::Basic,
        scope: None,
        params: Default::default(),
        timeout: Secs(10),
    })
}

fn harness(overlap: Overlap) -> Harness {
    let mut h = Harness::default();
    h.put(at(0), NAME, oauth2_issuer(), policy(overlap))
        .expect("the test policy is valid");
    h
}

/// Issues version 1 at `at(0)`, valid for `lifetime` seconds as the issuer says.
fn first_version(h: &mut Harness, lifetime: u64) {
    let intent = h.begin_ok(at(0), NAME, at(30));
    h.commit(at(0), NAME, intent.fence, at(0), at(lifetime))
        .expect("commit");
}

#[test]
fn a_short_issued_lifetime_is_reported_and_renewed_a_third_before_it_ends() {
    // The policy renews 120 s ahead; the issuer gave 60 s.
    let mut h = harness(Overlap::Allowed);
    first_version(&mut h, 60);
    let c = h.credential(NAME);
    assert_eq!(c.status.short_lifetime, Some(Secs(60)));
    assert_eq!(c.due(), Due::Start { at: at(40) });
}

#[test]
fn a_lifetime_the_policy_works_with_is_renewed_renew_before_ahead() {
    let mut h = harness(Overlap::Allowed);
    first_version(&mut h, 600);
    let c = h.credential(NAME);
    assert_eq!(c.status.short_lifetime, None);
    assert_eq!(c.due(), Due::Start { at: at(480) });
}

#[test]
fn an_unknown_outcome_keeps_the_intent_until_its_deadline() {
    let mut h = harness(Overlap::Allowed);
    let intent = h.begin_ok(at(0), NAME, at(30));
    let out = h.apply(
        at(10),
        Op::FailRotation {
            name: NAME.into(),
            fence: intent.fence,
            error: "oauth2: no answer within 10s".into(),
            retry_at: at(11),
            unknown: true,
        },
    );
    assert!(
        matches!(out, Ok(Output::RotationFailed { attempts: 1 })),
        "{out:?}"
    );

    let c = h.credential(NAME);
    assert_eq!(c.status.unknown_outcomes, 1);
    assert_eq!(c.status.retry_at, Some(at(30)), "never before the deadline");
    assert_eq!(c.due(), Due::Start { at: at(30) });
    assert!(c.rotation.is_some(), "the intent stays open");

    // No new call before the deadline; one after it, with a larger fence.
    let early = h.begin(at(20), NAME, at(50));
    assert!(
        matches!(early, Err(CommandError::RotationInProgress { .. })),
        "{early:?}"
    );
    let later = h.begin_ok(at(30), NAME, at(60));
    assert!(later.fence > intent.fence);
    assert_eq!(later.rotation, intent.rotation, "the same rotation number");
}

#[test]
fn a_known_failure_closes_the_intent() {
    let mut h = harness(Overlap::Allowed);
    let intent = h.begin_ok(at(0), NAME, at(30));
    h.fail(at(1), NAME, intent.fence, at(3)).expect("fail");
    let c = h.credential(NAME);
    assert!(c.rotation.is_none());
    assert_eq!(c.status.unknown_outcomes, 0);
    assert_eq!(c.due(), Due::Start { at: at(3) });
}

#[test]
fn under_overlap_none_the_current_version_is_withdrawn_while_a_rotation_runs() {
    let mut h = harness(Overlap::None);
    first_version(&mut h, 600);
    assert!(h.credential(NAME).token_view(at(400)).is_some());

    // The rotation point: the issuer may revoke version 1 as soon as it is called.
    let intent = h.begin_ok(at(480), NAME, at(510));
    assert!(
        h.credential(NAME).token_view(at(481)).is_none(),
        "version 1 is not served during the issuer call"
    );

    // Version 2 is valid from the answer; version 1 ends at the rotation point.
    h.commit(at(482), NAME, intent.fence, at(482), at(1082))
        .expect("commit");
    let c = h.credential(NAME);
    let previous = c.previous.as_ref().expect("version 1 kept as previous");
    let current = c.current.as_ref().expect("version 2");
    assert_eq!(previous.expires_at, at(480));
    assert!(previous.expires_at <= current.not_before, "no overlap");
    let view = c.token_view(at(483)).expect("version 2 is served");
    assert_eq!(view.current.number, 2);
}

#[test]
fn under_overlap_none_a_failed_call_serves_the_current_version_again() {
    let mut h = harness(Overlap::None);
    first_version(&mut h, 600);
    let intent = h.begin_ok(at(480), NAME, at(510));
    h.fail(at(481), NAME, intent.fence, at(490)).expect("fail");
    let view = h
        .credential(NAME)
        .token_view(at(482))
        .expect("served again");
    assert_eq!(view.current.number, 1);
}

#[test]
fn the_answer_of_an_earlier_read_ends_at_the_rotation_point() {
    let mut h = harness(Overlap::None);
    first_version(&mut h, 600);
    let view = h.credential(NAME).token_view(at(100)).expect("served");
    assert_eq!(view.refresh_at, at(480));
}
