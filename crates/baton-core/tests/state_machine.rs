//! The state machine driven through `State::apply`, the way replication drives it.
//!
//! Unit tests come first, one module per topic and each named by the behaviour it pins. The
//! property tests at the end play a rotation engine against random policies and schedules and
//! check the promises of DESIGN.md that the state machine alone must keep: one rotation at a
//! time, no overlap when asked, fresh enough reads, and fences that mean something.
//!
//! Tests marked `#[ignore]` show a defect of `src/` and say which; they pass once it is fixed.

mod common;

use baton_core::{
    CommandError, Due, Output, Overlap, Policy, PolicyError, RotationStatus, Secs, Timestamp,
};
use common::{at, jwt_issuer, policy, static_issuer, token_for, Harness, NAME, T0};

mod put {
    use super::*;

    #[test]
    fn put_creates_and_a_second_identical_put_is_unchanged() {
        let mut h = Harness::default();

        let out = h.put(at(0), NAME, jwt_issuer("k"), policy(Overlap::None));
        assert_eq!(
            out,
            Ok(Output::Put {
                created: true,
                changed: true
            })
        );
        let created = h.credential(NAME).clone();
        assert_eq!(created.created_at, at(0));
        assert_eq!(created.updated_at, at(0));
        assert_eq!(created.last_rotation, 0);
        assert!(created.current.is_none() && created.next.is_none() && created.rotation.is_none());

        let out = h.put(at(5), NAME, jwt_issuer("k"), policy(Overlap::None));
        assert_eq!(
            out,
            Ok(Output::Put {
                created: false,
                changed: false
            })
        );
        assert_eq!(
            h.credential(NAME),
            &created,
            "updated_at must not move either"
        );
    }

    #[test]
    fn put_with_a_new_policy_keeps_versions_and_the_open_intent() {
        let mut h = Harness::with_credential(Overlap::Allowed);
        h.rotate(at(0), NAME);
        let intent = h.begin_ok(at(10), NAME, at(70));
        let before = h.credential(NAME).clone();

        let longer = Policy {
            min_remaining: Secs(60),
            ..policy(Overlap::Allowed)
        };
        let out = h.put(at(20), NAME, jwt_issuer("k"), longer);
        assert_eq!(
            out,
            Ok(Output::Put {
                created: false,
                changed: true
            })
        );
        let after = h.credential(NAME);
        assert_eq!(after.policy, longer);
        assert_eq!(after.updated_at, at(20));
        assert_eq!(after.current, before.current);
        assert_eq!(after.rotation, Some(intent));
        assert!(!after.rotate_requested);
    }

    #[test]
    fn put_with_an_invalid_name_is_refused_and_changes_nothing() {
        let mut h = Harness::with_credential(Overlap::None);
        let before = h.state.clone();
        let too_long = "x".repeat(129);

        for name in [
            "",
            "has space",
            "slash/inside",
            "ünïcode",
            // Regression: `.` and `..` were accepted, then unreachable through any URL.
            ".",
            "..",
            too_long.as_str(),
        ] {
            let out = h.put(at(0), name, static_issuer("t"), policy(Overlap::Allowed));
            assert!(
                matches!(out, Err(CommandError::InvalidName(_))),
                "{name:?}: {out:?}"
            );
            assert_eq!(h.state, before, "{name:?}");
        }

        let longest = "x".repeat(128);
        let out = h.put(
            at(0),
            &longest,
            static_issuer("t"),
            policy(Overlap::Allowed),
        );
        assert!(out.is_ok(), "{out:?}");
    }

    #[test]
    fn put_with_an_invalid_policy_is_refused_and_changes_nothing() {
        let mut h = Harness::with_credential(Overlap::None);
        h.rotate(at(0), NAME);
        let before = h.state.clone();
        let broken = Policy {
            renew_before: Secs(10),
            min_remaining: Secs(30),
            ..policy(Overlap::None)
        };
        let expected = Err(CommandError::InvalidPolicy(
            PolicyError::RenewBeforeNotAboveMinRemaining {
                renew_before: Secs(10),
                min_remaining: Secs(30),
            },
        ));

        // Neither replacing an existing credential nor creating a new one.
        assert_eq!(h.put(at(0), NAME, static_issuer("t"), broken), expected);
        assert_eq!(h.state, before);
        assert_eq!(h.put(at(0), "other", jwt_issuer("k"), broken), expected);
        assert_eq!(h.state, before);

        let zero = Policy {
            lifetime: Secs::ZERO,
            ..policy(Overlap::None)
        };
        let out = h.put(at(0), NAME, jwt_issuer("k"), zero);
        assert_eq!(
            out,
            Err(CommandError::InvalidPolicy(PolicyError::ZeroLifetime))
        );
        assert_eq!(h.state, before);
    }

    #[test]
    fn changing_the_issuer_requests_a_rotation_and_drops_the_open_intent() {
        let mut h = Harness::with_credential(Overlap::Allowed);
        let first = h.rotate(at(0), NAME);
        let failed = h.begin_ok(at(1), NAME, at(61));
        h.fail(at(2), NAME, failed.fence, at(100)).unwrap();
        let open = h.begin_ok(at(100), NAME, at(160));

        let out = h.put(
            at(110),
            NAME,
            static_issuer("by-hand"),
            policy(Overlap::Allowed),
        );
        assert_eq!(
            out,
            Ok(Output::Put {
                created: false,
                changed: true
            })
        );
        let c = h.credential(NAME);
        assert_eq!(c.issuer, static_issuer("by-hand"));
        assert!(c.rotate_requested);
        assert_eq!(c.rotation, None);
        assert_eq!(
            c.status.retry_at, None,
            "the old issuer's back-off is forgotten"
        );
        assert_eq!(c.updated_at, at(110));
        assert_eq!(c.current.as_ref().map(|v| v.fence), Some(first.fence));
        assert_eq!(
            c.due(),
            Due::Start { at: Timestamp(0) },
            "rotate as soon as possible"
        );

        // The old issuer's result arrives late: refused.
        let before = h.state.clone();
        let out = h.commit_planned(at(110), NAME, &open);
        assert_eq!(
            out,
            Err(CommandError::StaleFence {
                fence: open.fence,
                open: None
            })
        );
        assert_eq!(h.state, before);

        // A commit clears the request.
        h.rotate(at(120), NAME);
        assert!(!h.credential(NAME).rotate_requested);
    }

    #[test]
    fn commands_for_an_unknown_credential_are_refused_with_not_found() {
        let mut h = Harness::with_credential(Overlap::None);
        let before = h.state.clone();
        let not_found = Err(CommandError::NotFound("nope".into()));

        assert_eq!(h.begin(at(0), "nope", at(60)), not_found);
        assert_eq!(h.commit(at(0), "nope", 1, at(0), at(600)), not_found);
        assert_eq!(h.fail(at(0), "nope", 1, at(60)), not_found);
        assert_eq!(h.state, before);
        assert_eq!(
            h.delete(at(0), "nope"),
            Ok(Output::Deleted { existed: false })
        );
    }
}

mod rotation {
    use super::*;

    #[test]
    fn begin_gives_rotation_one_with_a_fresh_fence_and_a_window_planned_by_the_policy() {
        for overlap in [Overlap::Allowed, Overlap::None] {
            let mut h = Harness::with_credential(overlap);
            let fence_before = h.state.next_fence;
            let now = at(7).add_millis(400);

            let intent = h.begin_ok(now, NAME, at(67));
            assert_eq!(intent.rotation, 1);
            assert!(intent.fence > fence_before);
            assert_eq!(h.state.next_fence, intent.fence);
            assert_eq!(intent.started_at, now);
            assert_eq!(intent.deadline, at(67));
            // Windows are whole seconds: the start is rounded down.
            assert_eq!(intent.not_before, at(7));
            assert_eq!(intent.expires_at, at(7 + 600));
            assert_eq!(h.credential(NAME).rotation.as_ref(), Some(&intent));
            assert_eq!(h.credential(NAME).last_rotation, 0, "nothing committed yet");
        }
    }

    #[test]
    fn a_deadline_in_the_past_is_raised_to_now() {
        let mut h = Harness::with_credential(Overlap::Allowed);
        let intent = h.begin_ok(at(10), NAME, at(5));
        assert_eq!(intent.deadline, at(10));
    }

    #[test]
    fn a_second_begin_before_the_deadline_is_refused_with_rotation_in_progress() {
        let mut h = Harness::with_credential(Overlap::Allowed);
        let intent = h.begin_ok(at(0), NAME, at(60));
        let before = h.state.clone();

        let out = h.begin(at(59), NAME, at(120));
        assert_eq!(
            out,
            Err(CommandError::RotationInProgress {
                rotation: 1,
                deadline: at(60)
            })
        );
        assert_eq!(h.state.credentials, before.credentials);
        assert_eq!(h.state.next_fence, before.next_fence, "no fence is used up");
        assert_eq!(h.credential(NAME).rotation, Some(intent));
    }

    #[test]
    fn a_begin_after_the_deadline_supersedes_with_a_larger_fence_and_the_same_number() {
        let mut h = Harness::with_credential(Overlap::Allowed);
        let first = h.begin_ok(at(0), NAME, at(60));

        // The deadline itself is the first instant a new intent may take over.
        let second = h.begin_ok(at(60), NAME, at(120));
        assert_eq!(second.rotation, first.rotation);
        assert!(second.fence > first.fence);
        assert_eq!(second.started_at, at(60));
        assert_eq!(second.not_before, at(60), "the window is planned anew");

        let third = h.begin_ok(at(500), NAME, at(560));
        assert_eq!(third.rotation, 1);
        assert!(third.fence > second.fence);
        assert_eq!(h.credential(NAME).rotation, Some(third));
    }

    #[test]
    fn commit_with_the_open_fence_installs_current_and_bumps_last_rotation() {
        let mut h = Harness::with_credential(Overlap::Allowed);
        let first = h.begin_ok(at(0), NAME, at(60));

        let out = h.commit_planned(at(3), NAME, &first);
        assert_eq!(
            out,
            Ok(Output::RotationCommitted {
                version: 1,
                not_before: at(0),
                expires_at: at(600)
            })
        );
        let c = h.credential(NAME);
        let v1 = c.current.clone().expect("version 1 is current");
        assert_eq!(v1.number, 1);
        assert_eq!(v1.token, token_for(first.fence));
        assert_eq!(v1.fence, first.fence);
        assert_eq!(v1.issued_at, at(3));
        assert_eq!((v1.not_before, v1.expires_at), (at(0), at(600)));
        assert_eq!(c.last_rotation, 1);
        assert_eq!(c.rotation, None);
        assert_eq!(
            c.status,
            RotationStatus {
                last_success_at: Some(at(3)),
                ..RotationStatus::default()
            }
        );

        // Under overlap = allowed the successor starts at once, while version 1 is still valid.
        let second = h.begin_ok(at(100), NAME, at(160));
        assert_eq!(second.rotation, 2);
        assert_eq!(second.not_before, at(100));
        h.commit_planned(at(101), NAME, &second).unwrap();
        let c = h.credential(NAME);
        assert_eq!(c.last_rotation, 2);
        assert_eq!(c.current.as_ref().map(|v| v.number), Some(2));
        assert_eq!(c.previous.as_ref(), Some(&v1));
        assert!(v1.is_valid_at(at(101)), "overlap is allowed");
    }

    #[test]
    fn commit_with_a_superseded_fence_is_refused_and_changes_nothing() {
        let mut h = Harness::with_credential(Overlap::Allowed);
        let first = h.begin_ok(at(0), NAME, at(60));
        let second = h.begin_ok(at(60), NAME, at(120));
        let before = h.state.clone();

        let out = h.commit_planned(at(60), NAME, &first);
        assert_eq!(
            out,
            Err(CommandError::StaleFence {
                fence: first.fence,
                open: Some(second.fence)
            })
        );
        assert_eq!(h.state, before);

        // The superseding intent still commits.
        let out = h.commit_planned(at(61), NAME, &second);
        assert!(
            matches!(out, Ok(Output::RotationCommitted { version: 1, .. })),
            "{out:?}"
        );
    }

    #[test]
    fn commit_after_fail_is_refused_and_changes_nothing() {
        let mut h = Harness::with_credential(Overlap::Allowed);
        let intent = h.begin_ok(at(0), NAME, at(60));
        h.fail(at(1), NAME, intent.fence, at(30)).unwrap();
        let before = h.state.clone();

        let out = h.commit_planned(at(1), NAME, &intent);
        assert_eq!(
            out,
            Err(CommandError::StaleFence {
                fence: intent.fence,
                open: None
            })
        );
        assert_eq!(h.state, before);

        // Failing twice is refused the same way.
        let out = h.fail(at(1), NAME, intent.fence, at(30));
        assert!(
            matches!(out, Err(CommandError::StaleFence { .. })),
            "{out:?}"
        );
        assert_eq!(h.state, before);
    }

    #[test]
    fn a_commit_with_a_fence_never_issued_is_refused() {
        let mut h = Harness::with_credential(Overlap::Allowed);
        let intent = h.begin_ok(at(0), NAME, at(60));
        let before = h.state.clone();

        let out = h.commit(at(0), NAME, intent.fence + 1, at(0), at(600));
        assert_eq!(
            out,
            Err(CommandError::StaleFence {
                fence: intent.fence + 1,
                open: Some(intent.fence)
            })
        );
        assert_eq!(h.state, before);
    }

    #[test]
    fn fail_records_attempts_last_error_and_retry_at() {
        let mut h = Harness::with_credential(Overlap::Allowed);

        let first = h.begin_ok(at(0), NAME, at(60));
        let out = h.fail(at(1), NAME, first.fence, at(31));
        assert_eq!(out, Ok(Output::RotationFailed { attempts: 1 }));
        let c = h.credential(NAME);
        assert_eq!(c.rotation, None);
        assert_eq!(c.status.attempts, 1);
        assert_eq!(c.status.last_error.as_deref(), Some("issuer answered 503"));
        assert_eq!(c.status.retry_at, Some(at(31)));
        assert_eq!(c.due(), Due::Start { at: at(31) });

        let second = h.begin_ok(at(31), NAME, at(91));
        assert_eq!(second.rotation, 1, "a failed rotation keeps its number");
        let out = h.fail(at(32), NAME, second.fence, at(92));
        assert_eq!(out, Ok(Output::RotationFailed { attempts: 2 }));
        assert_eq!(h.credential(NAME).due(), Due::Start { at: at(92) });

        // A success resets the record.
        let third = h.begin_ok(at(92), NAME, at(152));
        h.commit_planned(at(93), NAME, &third).unwrap();
        assert_eq!(
            h.credential(NAME).status,
            RotationStatus {
                last_success_at: Some(at(93)),
                ..RotationStatus::default()
            }
        );
    }

    #[test]
    fn due_is_the_later_of_the_renewal_point_and_retry_at() {
        let mut h = Harness::with_credential(Overlap::Allowed);
        h.rotate(at(0), NAME);
        // Version 1 expires at 600; renewal starts 120 s before.
        assert_eq!(h.credential(NAME).due(), Due::Start { at: at(480) });

        let early = h.begin_ok(at(10), NAME, at(70));
        h.fail(at(11), NAME, early.fence, at(20)).unwrap();
        assert_eq!(h.credential(NAME).due(), Due::Start { at: at(480) });

        let late = h.begin_ok(at(480), NAME, at(540));
        h.fail(at(481), NAME, late.fence, at(500)).unwrap();
        assert_eq!(h.credential(NAME).due(), Due::Start { at: at(500) });
    }

    #[test]
    fn a_commit_with_an_empty_or_past_window_is_refused() {
        let mut h = Harness::with_credential(Overlap::Allowed);
        let intent = h.begin_ok(at(100), NAME, at(160));
        let before = h.state.clone();

        let empty = h.commit(at(100), NAME, intent.fence, at(100), at(100));
        assert_eq!(
            empty,
            Err(CommandError::InvalidWindow {
                not_before: at(100),
                expires_at: at(100)
            })
        );
        let over = h.commit(at(100), NAME, intent.fence, at(0), at(100));
        assert_eq!(
            over,
            Err(CommandError::InvalidWindow {
                not_before: at(0),
                expires_at: at(100)
            })
        );
        assert_eq!(h.state, before, "the intent stays open");
    }

    #[test]
    fn expires_at_is_capped_at_not_before_plus_max_lifetime() {
        let mut h = Harness::default();
        let generous = Policy {
            max_lifetime: Secs(900),
            ..policy(Overlap::Allowed)
        };
        h.put(at(0), NAME, static_issuer("t"), generous).unwrap();
        let intent = h.begin_ok(at(0), NAME, at(60));

        let out = h.commit(at(1), NAME, intent.fence, at(0), at(86_400));
        assert_eq!(
            out,
            Ok(Output::RotationCommitted {
                version: 1,
                not_before: at(0),
                expires_at: at(900)
            })
        );
        assert_eq!(
            h.credential(NAME).current.as_ref().map(|v| v.expires_at),
            Some(at(900))
        );
    }
}

mod overlap_none {
    use super::*;

    #[test]
    fn a_rotation_begun_renew_before_ahead_is_minted_as_next_and_becomes_current_on_time() {
        let mut h = Harness::with_credential(Overlap::None);
        h.rotate(at(0), NAME);
        assert_eq!(h.credential(NAME).due(), Due::Start { at: at(480) });

        // Due 120 s before version 1 expires: version 2 is planned to start exactly then.
        let intent = h.begin_ok(at(480), NAME, at(540));
        assert_eq!(intent.rotation, 2);
        assert_eq!((intent.not_before, intent.expires_at), (at(600), at(1200)));

        let out = h.commit_planned(at(481), NAME, &intent);
        assert_eq!(
            out,
            Ok(Output::RotationCommitted {
                version: 2,
                not_before: at(600),
                expires_at: at(1200)
            })
        );
        let c = h.credential(NAME);
        assert_eq!(c.current.as_ref().map(|v| v.number), Some(1));
        assert_eq!(c.next.as_ref().map(|v| v.number), Some(2));
        assert_eq!(c.last_rotation, 2);
        assert_eq!(c.due(), Due::Start { at: at(1080) }, "renew the newest");

        // Until 600 a read gets version 1 and version 2, and switches at 600.
        let view = c.token_view(at(481)).expect("version 1 is served");
        assert_eq!(view.current.number, 1);
        assert_eq!(view.next.map(|v| v.number), Some(2));
        assert_eq!(view.refresh_at, at(600));
        let view = c
            .token_view(at(599))
            .expect("under min_remaining, but next follows");
        assert_eq!(view.current.number, 1);
        assert_eq!(view.next.map(|v| v.number), Some(2));

        // From 600 version 2 is current, before any command touches the credential.
        let (current, next) = c.effective(at(600));
        assert_eq!(current.map(|v| v.number), Some(2));
        assert!(next.is_none());
        let view = c.token_view(at(600)).expect("version 2 is served");
        assert_eq!(view.current.number, 2);
        assert!(view.next.is_none());
        assert_eq!(view.refresh_at, at(1080));
        assert_eq!(
            c.next.as_ref().map(|v| v.number),
            Some(2),
            "not settled yet"
        );

        // The next command settles it; an early rotation now plans after version 2.
        let early = h.begin_ok(at(600), NAME, at(660));
        assert_eq!((early.not_before, early.expires_at), (at(1200), at(1800)));
        let c = h.credential(NAME);
        assert_eq!(c.previous.as_ref().map(|v| v.number), Some(1));
        assert_eq!(c.current.as_ref().map(|v| v.number), Some(2));
        assert!(c.next.is_none());
    }

    #[test]
    fn begin_while_a_next_is_pending_is_refused_with_next_already_minted() {
        let mut h = Harness::with_credential(Overlap::None);
        h.rotate(at(0), NAME);
        h.rotate(at(480), NAME);
        let before = h.state.clone();

        let out = h.begin(at(500), NAME, at(560));
        assert_eq!(
            out,
            Err(CommandError::NextAlreadyMinted {
                version: 2,
                not_before: at(600)
            })
        );
        assert_eq!(h.state.credentials, before.credentials);
        assert_eq!(h.state.next_fence, before.next_fence);
    }

    #[test]
    fn a_commit_whose_window_overlaps_current_is_refused() {
        let mut h = Harness::with_credential(Overlap::None);
        h.rotate(at(0), NAME);
        let intent = h.begin_ok(at(480), NAME, at(540));
        let before = h.state.clone();

        // An issuer that ignores the plan and starts its token now.
        let out = h.commit(at(480), NAME, intent.fence, at(480), at(1080));
        assert_eq!(
            out,
            Err(CommandError::Overlap {
                version: 1,
                not_before: at(480),
                expires_at: at(600)
            })
        );
        assert_eq!(h.state, before, "the intent stays open");

        // Ending exactly where the current version ends is no overlap.
        let out = h.commit_planned(at(480), NAME, &intent);
        assert!(
            matches!(out, Ok(Output::RotationCommitted { .. })),
            "{out:?}"
        );
    }

    #[test]
    fn a_rotation_begun_after_current_expired_starts_at_once() {
        let mut h = Harness::with_credential(Overlap::None);
        h.rotate(at(0), NAME);

        let now = at(700).add_millis(250);
        let intent = h.begin_ok(now, NAME, now.add(Secs(60)));
        assert_eq!((intent.not_before, intent.expires_at), (at(700), at(1300)));
        h.commit_planned(now, NAME, &intent).unwrap();
        let c = h.credential(NAME);
        assert_eq!(c.current.as_ref().map(|v| v.number), Some(2));
        assert_eq!(c.previous.as_ref().map(|v| v.number), Some(1));
        assert!(c.next.is_none());
    }

    #[test]
    fn a_result_arriving_after_the_planned_start_becomes_current_directly() {
        let mut h = Harness::with_credential(Overlap::None);
        h.rotate(at(0), NAME);
        let intent = h.begin_ok(at(480), NAME, at(900));

        // The issuer was slow: version 1 is over when the result lands.
        h.commit_planned(at(650), NAME, &intent).unwrap();
        let c = h.credential(NAME);
        assert_eq!(c.current.as_ref().map(|v| v.number), Some(2));
        assert_eq!(c.current.as_ref().map(|v| v.not_before), Some(at(600)));
        assert!(c.next.is_none());
    }
}

mod token_view {
    use super::*;

    #[test]
    fn token_view_is_none_before_the_first_version() {
        let mut h = Harness::with_credential(Overlap::Allowed);
        assert!(h.credential(NAME).token_view(at(0)).is_none());
        h.begin_ok(at(0), NAME, at(60));
        assert!(h.credential(NAME).token_view(at(1)).is_none());
    }

    #[test]
    fn token_view_is_none_when_less_than_min_remaining_is_left_and_nothing_follows() {
        let mut h = Harness::with_credential(Overlap::Allowed);
        h.rotate(at(0), NAME);
        let c = h.credential(NAME);

        // Expiry at 600, min_remaining 30 s: exactly 30 s left is still enough.
        assert!(c.token_view(at(570)).is_some());
        assert!(c.token_view(at(570).add_millis(1)).is_none());
    }

    #[test]
    fn token_view_is_none_once_expired() {
        let mut h = Harness::default();
        let lax = Policy {
            min_remaining: Secs::ZERO,
            ..policy(Overlap::Allowed)
        };
        h.put(at(0), NAME, jwt_issuer("k"), lax).unwrap();
        h.rotate(at(0), NAME);
        let c = h.credential(NAME);

        assert!(c.token_view(Timestamp(at(600).as_millis() - 1)).is_some());
        assert!(c.token_view(at(600)).is_none());
        assert!(c.token_view(at(10_000)).is_none());
    }

    #[test]
    fn token_view_is_none_when_even_the_next_version_is_over() {
        let mut h = Harness::with_credential(Overlap::None);
        h.rotate(at(0), NAME);
        h.rotate(at(480), NAME);
        assert!(h.credential(NAME).token_view(at(1200)).is_none());
    }

    #[test]
    fn refresh_at_is_the_renewal_point_then_soon_but_never_past_the_cutoff() {
        let mut h = Harness::with_credential(Overlap::Allowed);
        h.rotate(at(0), NAME);
        let c = h.credential(NAME);
        let refresh = |t: Timestamp| c.token_view(t).map(|v| v.refresh_at);

        assert_eq!(refresh(at(100)), Some(at(480)));
        assert_eq!(refresh(at(480)), Some(at(481)));
        // The cut-off is expiry - min_remaining = 570.
        assert_eq!(refresh(at(569).add_millis(500)), Some(at(570)));
        assert_eq!(refresh(at(570)), Some(at(570)));
    }

    #[test]
    fn reads_during_a_rotation_get_the_current_version() {
        let mut h = Harness::with_credential(Overlap::Allowed);
        h.rotate(at(0), NAME);
        h.begin_ok(at(480), NAME, at(540));

        let view = h.credential(NAME).token_view(at(500)).expect("served");
        assert_eq!(view.current.number, 1);
    }
}

mod clock_and_fences {
    use super::*;

    #[test]
    fn command_times_going_backwards_do_not_move_the_clock_back() {
        let mut h = Harness::with_credential(Overlap::Allowed);
        h.put(at(100), "other", jwt_issuer("k"), policy(Overlap::Allowed))
            .unwrap();
        assert_eq!(h.state.clock, at(100));

        // A new leader whose clock runs 50 s behind.
        let intent = h.begin_ok(at(50), NAME, at(60));
        assert_eq!(h.state.clock, at(100));
        assert_eq!(intent.started_at, at(100), "stamped with the state's time");
        assert_eq!(intent.deadline, at(100));
        assert_eq!(intent.not_before, at(100));

        let out = h.put(at(10), NAME, static_issuer("t"), policy(Overlap::Allowed));
        assert!(out.is_ok(), "{out:?}");
        assert_eq!(h.credential(NAME).updated_at, at(100));
        assert_eq!(h.state.clock, at(100));
    }

    #[test]
    fn fences_strictly_increase_across_credentials_and_deletions() {
        let mut h = Harness::with_credential(Overlap::Allowed);
        h.put(at(0), "other", static_issuer("t"), policy(Overlap::Allowed))
            .unwrap();
        let mut fences = Vec::new();

        fences.push(h.begin_ok(at(0), NAME, at(60)).fence);
        fences.push(h.begin_ok(at(0), "other", at(60)).fence);
        let open = h.begin_ok(at(60), NAME, at(120));
        fences.push(open.fence);

        // Delete with an intent open, re-create, begin again.
        assert_eq!(
            h.delete(at(61), NAME),
            Ok(Output::Deleted { existed: true })
        );
        assert_eq!(
            h.commit_planned(at(61), NAME, &open),
            Err(CommandError::NotFound(NAME.into()))
        );
        h.put(at(62), NAME, jwt_issuer("k"), policy(Overlap::Allowed))
            .unwrap();
        let fresh = h.begin_ok(at(62), NAME, at(122));
        fences.push(fresh.fence);
        fences.push(h.begin_ok(at(200), "other", at(260)).fence);

        assert!(fences.windows(2).all(|w| w[0] < w[1]), "{fences:?}");

        // The old credential's result never matches the new one's intent.
        let out = h.commit_planned(at(63), NAME, &open);
        assert_eq!(
            out,
            Err(CommandError::StaleFence {
                fence: open.fence,
                open: Some(fresh.fence)
            })
        );
    }

    #[test]
    fn delete_then_recreate_gives_a_new_uid_and_a_fresh_history() {
        let mut h = Harness::with_credential(Overlap::Allowed);
        h.rotate(at(0), NAME);
        let old_uid = h.credential(NAME).uid;

        assert_eq!(h.delete(at(1), NAME), Ok(Output::Deleted { existed: true }));
        assert_eq!(
            h.delete(at(1), NAME),
            Ok(Output::Deleted { existed: false })
        );
        assert!(!h.state.credentials.contains_key(NAME));

        let out = h.put(at(2), NAME, jwt_issuer("k"), policy(Overlap::Allowed));
        assert_eq!(
            out,
            Ok(Output::Put {
                created: true,
                changed: true
            })
        );
        let c = h.credential(NAME);
        assert_ne!(c.uid, old_uid);
        assert!(c.current.is_none() && c.previous.is_none());
        assert_eq!(c.last_rotation, 0);
        assert_eq!(h.begin_ok(at(2), NAME, at(62)).rotation, 1);
    }
}

mod due {
    use super::*;

    #[test]
    fn due_before_the_first_version_is_immediate() {
        let h = Harness::with_credential(Overlap::None);
        assert_eq!(h.credential(NAME).due(), Due::Start { at: Timestamp(0) });
    }

    #[test]
    fn due_with_an_open_intent_is_resume_for_idempotent_issuers() {
        for issuer in [jwt_issuer("k"), static_issuer("t")] {
            assert!(issuer.is_idempotent(), "{}", issuer.kind());
            let mut h = Harness::default();
            h.put(at(0), NAME, issuer, policy(Overlap::None)).unwrap();
            let intent = h.begin_ok(at(5), NAME, at(65));

            let due = h.credential(NAME).due();
            assert_eq!(due, Due::Resume { at: at(5) });
            assert_eq!(due.at(), intent.started_at);
        }
    }
}

/// Defects found in `src/` while writing these tests. Each test states what should hold; it
/// fails today and is ignored until the fix lands.
/// Cases the property tests found, fixed since; each doc line tells what used to go wrong.
mod regressions {
    use super::*;

    /// `due()` ignores a pending `next` when the issuer changed: it says "now", but
    /// `BeginRotation` is refused with `NextAlreadyMinted` until `next.not_before`, so an engine
    /// that trusts `due()` spins against refusals for up to `renew_before`.
    #[test]
    fn due_after_an_issuer_change_waits_for_a_pending_next() {
        let mut h = Harness::with_credential(Overlap::None);
        h.rotate(at(0), NAME);
        h.rotate(at(480), NAME);
        h.put(at(490), NAME, jwt_issuer("new-key"), policy(Overlap::None))
            .unwrap();

        let at_due = h.credential(NAME).due().at().max(h.state.clock);
        let out = h.begin(at_due, NAME, at_due.add(Secs(60)));
        assert!(
            matches!(out, Ok(Output::RotationStarted(_))),
            "due() pointed at {at_due}, and begin there got {out:?}"
        );
    }

    /// The same mismatch when an issuer's window for `next` is shorter than `renew_before`:
    /// `due()` = `next.expires_at - renew_before` lies before `next.not_before`.
    #[test]
    fn due_never_lies_before_a_pending_next_starts() {
        let mut h = Harness::with_credential(Overlap::None);
        h.rotate(at(0), NAME);
        let intent = h.begin_ok(at(480), NAME, at(540));
        // A 60 s token starting when version 1 ends (renew_before is 120 s).
        h.commit(at(481), NAME, intent.fence, at(600), at(660))
            .unwrap();

        let at_due = h.credential(NAME).due().at().max(h.state.clock);
        let out = h.begin(at_due, NAME, at_due.add(Secs(60)));
        assert!(
            matches!(out, Ok(Output::RotationStarted(_))),
            "due() pointed at {at_due}, and begin there got {out:?}"
        );
    }

    /// `CommitRotation` accepts windows in milliseconds, yet `plan_window` assumes whole
    /// seconds: once such a version has expired, the next intent plans `now.floor_secs()`, which
    /// can lie before that expiry, so under overlap = none the intent's own window is refused.
    #[test]
    fn a_planned_window_never_overlaps_the_current_version() {
        let mut h = Harness::default();
        h.put(at(0), NAME, static_issuer("t"), policy(Overlap::None))
            .unwrap();
        let first = h.begin_ok(at(0), NAME, at(60));
        // A static token that ends half-way through a second (well within max_lifetime).
        let ends = at(300).add_millis(500);
        h.commit(at(0), NAME, first.fence, at(0), ends).unwrap();

        // 200 ms after it ended, a rotation plans from the start of the second: 300.
        let now = at(300).add_millis(700);
        let second = h.begin_ok(now, NAME, now.add(Secs(60)));
        let out = h.commit_planned(now, NAME, &second);
        assert!(
            matches!(out, Ok(Output::RotationCommitted { .. })),
            "planned [{}, {}) after a version ending at {}: {out:?}",
            second.not_before,
            second.expires_at,
            ends
        );
    }

    /// `State::apply` promises "A refused command changes nothing", but commit and fail settle
    /// a started `next` before checking the fence, so a refused command rewrites
    /// `previous`/`current`/`next` (reads are unaffected; the stored state differs).
    #[test]
    fn a_refused_command_leaves_the_stored_state_as_it_was() {
        let mut h = Harness::with_credential(Overlap::None);
        let first = h.rotate(at(0), NAME);
        h.rotate(at(480), NAME);
        // A put does not settle: the state's clock passes 600 with version 2 still in `next`.
        h.put(at(700), "other", jwt_issuer("k"), policy(Overlap::None))
            .unwrap();
        let before = h.state.clone();

        let out = h.fail(at(700), NAME, first.fence, at(760));
        assert!(
            matches!(out, Err(CommandError::StaleFence { .. })),
            "{out:?}"
        );
        assert_eq!(h.state.clock, before.clock);
        assert_eq!(h.credential(NAME), &before.credentials[NAME]);
    }

    /// `Policy::min_use` says "a version is in use at least this long before the next one
    /// replaces it", but only `validate` looks at it: under overlap = allowed, an early or manual
    /// rotation replaces the current version at once, however young it is.
    #[test]
    fn an_early_rotation_does_not_replace_a_version_before_min_use() {
        let mut h = Harness::default();
        let strict = Policy {
            min_use: Secs(300),
            ..policy(Overlap::Allowed)
        };
        h.put(at(0), NAME, jwt_issuer("k"), strict).unwrap();
        h.rotate(at(0), NAME);

        let out = h.begin(at(10), NAME, at(70));
        if let Ok(Output::RotationStarted(intent)) = out {
            let _ = h.commit_planned(at(11), NAME, &intent);
        }
        let view = h.credential(NAME).token_view(at(11)).expect("served");
        assert_eq!(
            view.current.number, 1,
            "version 1 was used only 11 s of min_use 300 s"
        );
    }
}

mod properties {
    //! A rotation engine played at random: it begins when `due()` says so, or early, or very
    //! late; commits the planned window, or one an issuer chose, or a stale one; fails; and
    //! waits out deadlines. Time moves by random steps, sometimes by zero and sometimes past
    //! expiry, and commands are sometimes stamped by a leader whose clock runs behind.

    use baton_core::{Credential, Intent, Response, Version};
    use proptest::prelude::*;
    use proptest::sample::Index;
    use proptest::test_runner::FileFailurePersistence;

    use super::*;

    /// A random policy that `Policy::validate` accepts, lifetimes from 2 s to 30 min.
    fn valid_policy(overlap: Overlap) -> impl Strategy<Value = Policy> {
        (2u64..=1800)
            .prop_flat_map(|lifetime| (Just(lifetime), 1..lifetime))
            .prop_flat_map(|(lifetime, renew_before)| {
                (
                    Just(lifetime),
                    Just(renew_before),
                    0..renew_before,
                    0..=lifetime - renew_before,
                    lifetime..=2 * lifetime,
                )
            })
            .prop_map(
                move |(lifetime, renew_before, min_remaining, min_use, max_lifetime)| Policy {
                    lifetime: Secs(lifetime),
                    min_use: Secs(min_use),
                    max_lifetime: Secs(max_lifetime),
                    renew_before: Secs(renew_before),
                    min_remaining: Secs(min_remaining),
                    overlap,
                },
            )
    }

    /// How far the engine's clock moves before a step.
    #[derive(Clone, Copy, Debug)]
    enum Advance {
        Zero,
        Millis(u64),
        /// Thousandths of the policy's lifetime; 1000 and more jump past an expiry.
        Permille(u64),
    }

    #[derive(Clone, Copy, Debug)]
    enum Action {
        /// Begin if `due()` says Start and its time has come; commit again if it says Resume.
        BeginWhenDue { deadline: u64 },
        /// Begin whatever `due()` says: early, or late after a jump.
        BeginNow { deadline: u64 },
        /// Commit the open intent's planned window, as a jwt issuer does.
        CommitPlanned,
        /// Commit the open fence with a window an issuer chose, of any length. Whole seconds
        /// only: fractional windows break planning (see `findings`).
        CommitChosen { start: i64, length: u64 },
        /// Commit a fence that is not the open one.
        CommitStale { pick: Index },
        /// Fail the open intent, or a stale fence when none is open.
        Fail { retry_after: u64 },
        /// Let the open intent's deadline pass and begin again.
        Supersede { deadline: u64 },
        /// Only read.
        Read,
    }

    #[derive(Clone, Copy, Debug)]
    struct Step {
        advance: Advance,
        /// The command is stamped this many milliseconds behind the engine's clock.
        behind: Option<u64>,
        action: Action,
    }

    fn step(chosen_windows: bool) -> impl Strategy<Value = Step> {
        let advance = prop_oneof![
            2 => Just(Advance::Zero),
            3 => (1u64..3_000).prop_map(Advance::Millis),
            4 => (1u64..1_000).prop_map(Advance::Permille),
            1 => (1_000u64..3_000).prop_map(Advance::Permille),
        ];
        let deadline = 0u64..500;
        let action = prop_oneof![
            5 => deadline.clone().prop_map(|deadline| Action::BeginWhenDue { deadline }),
            1 => deadline.clone().prop_map(|deadline| Action::BeginNow { deadline }),
            4 => Just(Action::CommitPlanned),
            2 => (-1_000i64..1_000, 0u64..2_000).prop_map(move |(start, length)| {
                if chosen_windows {
                    Action::CommitChosen { start, length }
                } else {
                    Action::CommitPlanned
                }
            }),
            1 => any::<Index>().prop_map(|pick| Action::CommitStale { pick }),
            1 => (0u64..1_000).prop_map(|retry_after| Action::Fail { retry_after }),
            1 => deadline.prop_map(|deadline| Action::Supersede { deadline }),
            1 => Just(Action::Read),
        ];
        let behind = prop::option::weighted(0.1, 1u64..5_000);
        (advance, behind, action).prop_map(|(advance, behind, action)| Step {
            advance,
            behind,
            action,
        })
    }

    /// A version as the commit's output announced it.
    #[derive(Clone, Copy, Debug)]
    struct Committed {
        number: u64,
        not_before: Timestamp,
        expires_at: Timestamp,
        /// Whether the window is the one the intent planned.
        planned: bool,
    }

    /// The engine, and everything it saw.
    struct Engine {
        h: Harness,
        policy: Policy,
        /// The engine's own clock; commands may be stamped behind it.
        now: Timestamp,
        committed: Vec<Committed>,
        /// Every intent's fence, in the order the intents were opened.
        fences: Vec<u64>,
    }

    impl Engine {
        fn new(policy: Policy) -> Self {
            let mut h = Harness::default();
            h.put(T0, NAME, jwt_issuer("k"), policy)
                .expect("the generated policy is valid");
            Engine {
                h,
                policy,
                now: T0,
                committed: Vec::new(),
                fences: Vec::new(),
            }
        }

        fn cred(&self) -> &Credential {
            self.h.credential(NAME)
        }

        fn lifetime_permille(&self, permille: u64) -> u64 {
            self.policy.lifetime.as_millis() * permille / 1000
        }

        fn was_planned(&self, number: u64) -> bool {
            self.committed
                .iter()
                .any(|c| c.number == number && c.planned)
        }

        fn run(&mut self, step: &Step) -> Result<(), TestCaseError> {
            let advance = match step.advance {
                Advance::Zero => 0,
                Advance::Millis(ms) => ms,
                Advance::Permille(p) => self.lifetime_permille(p),
            };
            self.now = self.now.add_millis(advance);
            let stamp = Timestamp(self.now.as_millis() - step.behind.unwrap_or(0));
            // The time the state machine will act at: command times never go backwards.
            let eff = stamp.max(self.h.state.clock);
            let clock_before = self.h.state.clock;

            match step.action {
                Action::BeginWhenDue { deadline } => self.begin_when_due(stamp, eff, deadline)?,
                Action::BeginNow { deadline } => {
                    // Accepted or refused, the answer was checked against the state.
                    let _answer = self.begin(stamp, eff, deadline)?;
                }
                Action::CommitPlanned => {
                    if let Some(intent) = self.cred().rotation.clone() {
                        self.commit(
                            stamp,
                            eff,
                            intent.fence,
                            intent.not_before,
                            intent.expires_at,
                        )?;
                    }
                }
                Action::CommitChosen { start, length } => {
                    self.commit_chosen(stamp, eff, start, length)?
                }
                Action::CommitStale { pick } => self.commit_stale(stamp, eff, pick)?,
                Action::Fail { retry_after } => self.fail(stamp, eff, retry_after)?,
                Action::Supersede { deadline } => self.supersede(deadline)?,
                Action::Read => {}
            }

            prop_assert!(self.h.state.clock >= clock_before, "the clock went back");
            prop_assert!(self.h.state.clock <= self.now);
            self.check_reads(self.h.state.clock)?;
            self.check_reads(self.now)
        }

        fn begin_when_due(
            &mut self,
            stamp: Timestamp,
            eff: Timestamp,
            deadline: u64,
        ) -> Result<(), TestCaseError> {
            let c = self.cred().clone();
            match c.due() {
                Due::Resume { at } => {
                    let intent = c.rotation.clone().expect("Resume only with an open intent");
                    prop_assert_eq!(at, intent.started_at);
                    self.commit(
                        stamp,
                        eff,
                        intent.fence,
                        intent.not_before,
                        intent.expires_at,
                    )
                }
                Due::Start { at } if at <= eff => {
                    prop_assert!(
                        c.rotation.is_none(),
                        "Start while an idempotent intent is open"
                    );
                    let out = self.begin(stamp, eff, deadline)?;
                    // With windows the policy planned, due() never points at a refusal.
                    let newest_planned = c.newest().is_none_or(|v| self.was_planned(v.number));
                    if newest_planned {
                        prop_assert!(
                            out.is_ok(),
                            "due() said {} but begin at {} got {:?}",
                            at,
                            eff,
                            out
                        );
                    }
                    Ok(())
                }
                Due::Start { .. } => Ok(()),
            }
        }

        /// Begins at `stamp` and checks the answer against what the state said before.
        fn begin(
            &mut self,
            stamp: Timestamp,
            eff: Timestamp,
            deadline: u64,
        ) -> Result<Response, TestCaseError> {
            let before = self.cred().clone();
            let deadline = eff.add_millis(self.lifetime_permille(deadline));
            let (current, next) = before.effective(eff);
            let refusal = match (&before.rotation, next) {
                (Some(open), _) if open.deadline > eff => Some(CommandError::RotationInProgress {
                    rotation: open.rotation,
                    deadline: open.deadline,
                }),
                (_, Some(next)) => Some(CommandError::NextAlreadyMinted {
                    version: next.number,
                    not_before: next.not_before,
                }),
                _ => current
                    .filter(|_| self.policy.overlap == Overlap::Allowed && !before.rotate_requested)
                    .map(|c| (c.number, c.not_before.add(self.policy.min_use)))
                    .filter(|(_, until)| eff < *until)
                    .map(|(version, until)| CommandError::MinUseNotReached { version, until }),
            };
            let current = current.cloned();

            let out = self.h.begin(stamp, NAME, deadline);
            let Some(refusal) = refusal else {
                let Ok(Output::RotationStarted(intent)) = &out else {
                    return Err(TestCaseError::fail(format!("begin refused: {out:?}")));
                };
                self.check_intent(intent, &before, current.as_ref(), eff, deadline)?;
                return Ok(out);
            };
            prop_assert_eq!(&out, &Err(refusal));
            prop_assert_eq!(self.cred(), &before, "a refused command changes nothing");
            Ok(out)
        }

        fn check_intent(
            &mut self,
            intent: &Intent,
            before: &Credential,
            current: Option<&Version>,
            eff: Timestamp,
            deadline: Timestamp,
        ) -> Result<(), TestCaseError> {
            // Fences of intents strictly increase.
            if let Some(&last) = self.fences.last() {
                prop_assert!(intent.fence > last, "fence {} after {}", intent.fence, last);
            }
            self.fences.push(intent.fence);
            prop_assert_eq!(self.h.state.next_fence, intent.fence);

            prop_assert_eq!(intent.rotation, before.last_rotation + 1);
            if let Some(old) = &before.rotation {
                prop_assert_eq!(
                    intent.rotation,
                    old.rotation,
                    "a superseding intent keeps its number"
                );
            }
            prop_assert_eq!(intent.started_at, eff);
            prop_assert_eq!(intent.deadline, deadline.max(eff));
            let expected_start = match current {
                Some(c) if self.policy.overlap == Overlap::None && c.expires_at > eff => {
                    c.expires_at
                }
                _ => eff.floor_secs(),
            };
            prop_assert_eq!(intent.not_before, expected_start);
            prop_assert_eq!(
                intent.expires_at,
                intent.not_before.add(self.policy.lifetime)
            );
            if let (Overlap::None, Some(c)) = (self.policy.overlap, current) {
                prop_assert!(
                    intent.not_before >= c.expires_at,
                    "planned into the current version"
                );
            }
            prop_assert_eq!(self.cred().rotation.as_ref(), Some(intent));
            Ok(())
        }

        fn commit_chosen(
            &mut self,
            stamp: Timestamp,
            eff: Timestamp,
            start: i64,
            length: u64,
        ) -> Result<(), TestCaseError> {
            let base = eff.floor_secs();
            let shift = Secs(self.policy.lifetime.as_secs() * start.unsigned_abs() / 1000);
            let not_before = if start >= 0 {
                base.add(shift)
            } else {
                base.sub(shift)
            };
            let length = Secs(self.policy.max_lifetime.as_secs() * length / 1000);
            let fence = match &self.cred().rotation {
                Some(intent) => intent.fence,
                None => self.h.state.next_fence,
            };
            self.commit(stamp, eff, fence, not_before, not_before.add(length))
        }

        fn commit_stale(
            &mut self,
            stamp: Timestamp,
            eff: Timestamp,
            pick: Index,
        ) -> Result<(), TestCaseError> {
            let open = self.cred().rotation.as_ref().map(|i| i.fence);
            let fence = match self.fences.get(pick.index(self.fences.len().max(1))) {
                Some(&f) if Some(f) != open => f,
                // A fence no intent ever had.
                _ => self.h.state.next_fence + 1,
            };
            let not_before = eff.floor_secs();
            self.commit(
                stamp,
                eff,
                fence,
                not_before,
                not_before.add(self.policy.lifetime),
            )
        }

        /// Commits and checks the answer against a model of the rules.
        fn commit(
            &mut self,
            stamp: Timestamp,
            eff: Timestamp,
            fence: u64,
            not_before: Timestamp,
            expires_at: Timestamp,
        ) -> Result<(), TestCaseError> {
            let before = self.cred().clone();
            let (current, _) = before.effective(eff);
            let capped = expires_at.min(not_before.add(self.policy.max_lifetime));
            let planned = before.rotation.as_ref().is_some_and(|i| {
                i.fence == fence && (i.not_before, i.expires_at) == (not_before, capped)
            });
            let expected: Response = match &before.rotation {
                Some(open) if open.fence == fence => {
                    if capped <= not_before || capped <= eff {
                        Err(CommandError::InvalidWindow {
                            not_before,
                            expires_at: capped,
                        })
                    } else if let Some(c) = current.filter(|c| {
                        self.policy.overlap == Overlap::None && not_before < c.expires_at
                    }) {
                        prop_assert!(!planned, "the planned window overlaps version {}", c.number);
                        Err(CommandError::Overlap {
                            version: c.number,
                            not_before,
                            expires_at: c.expires_at,
                        })
                    } else {
                        Ok(Output::RotationCommitted {
                            version: open.rotation,
                            not_before,
                            expires_at: capped,
                        })
                    }
                }
                open => Err(CommandError::StaleFence {
                    fence,
                    open: open.as_ref().map(|i| i.fence),
                }),
            };

            let out = self.h.commit(stamp, NAME, fence, not_before, expires_at);
            prop_assert_eq!(&out, &expected);
            let Ok(Output::RotationCommitted { version, .. }) = out else {
                prop_assert_eq!(self.cred(), &before, "a refused command changes nothing");
                return Ok(());
            };

            // Version numbers go up by one, so each rotation number is committed once.
            let last = self.committed.last().map_or(0, |c| c.number);
            prop_assert_eq!(version, last + 1);
            self.committed.push(Committed {
                number: version,
                not_before,
                expires_at: capped,
                planned,
            });

            let after = self.cred();
            let newest = after.newest().expect("just committed");
            prop_assert_eq!(newest.number, version);
            prop_assert_eq!(newest.fence, fence);
            prop_assert_eq!(&newest.token, &token_for(fence));
            prop_assert_eq!((newest.not_before, newest.expires_at), (not_before, capped));
            prop_assert_eq!(after.next.is_some(), not_before > eff);
            prop_assert_eq!(after.last_rotation, version);
            prop_assert!(after.rotation.is_none());
            Ok(())
        }

        fn fail(
            &mut self,
            stamp: Timestamp,
            eff: Timestamp,
            retry_after: u64,
        ) -> Result<(), TestCaseError> {
            let before = self.cred().clone();
            let retry_at = eff.add_millis(self.lifetime_permille(retry_after));
            let (fence, expected) = match &before.rotation {
                Some(open) => (
                    open.fence,
                    Ok(Output::RotationFailed {
                        attempts: before.status.attempts + 1,
                    }),
                ),
                None => {
                    let fence = self.fences.last().copied().unwrap_or(1);
                    (fence, Err(CommandError::StaleFence { fence, open: None }))
                }
            };

            let out = self.h.fail(stamp, NAME, fence, retry_at);
            prop_assert_eq!(&out, &expected);
            let after = self.cred();
            if out.is_ok() {
                prop_assert!(after.rotation.is_none());
                prop_assert_eq!(after.status.retry_at, Some(retry_at));
                prop_assert!(after.status.last_error.is_some());
                prop_assert!(after.due().at() >= retry_at, "due() ignores retry_at");
            } else {
                prop_assert_eq!(after, &before, "a refused command changes nothing");
            }
            Ok(())
        }

        /// Waits out the open intent's deadline, begins again, and replays the old result.
        fn supersede(&mut self, deadline: u64) -> Result<(), TestCaseError> {
            let Some(old) = self.cred().rotation.clone() else {
                return Ok(());
            };
            self.now = self.now.max(old.deadline);
            let eff = self.now.max(self.h.state.clock);

            let out = self.begin(self.now, eff, deadline)?;
            prop_assert!(out.is_ok(), "begin after the deadline refused: {:?}", out);
            self.commit(self.now, eff, old.fence, old.not_before, old.expires_at)
        }

        /// What readers get at `t`, for any `t` not before the state's clock.
        fn check_reads(&self, t: Timestamp) -> Result<(), TestCaseError> {
            let c = self.cred();
            let min_remaining = self.policy.min_remaining.as_millis();
            let Some(view) = c.token_view(t) else {
                // A read is refused only when no committed version could be served.
                for v in &self.committed {
                    let usable = v.not_before <= t
                        && t < v.expires_at
                        && v.expires_at.millis_since(t) >= min_remaining;
                    prop_assert!(!usable, "nothing served at {} while {:?} is usable", t, v);
                }
                return Ok(());
            };

            let current = view.current;
            prop_assert!(current.is_valid_at(t), "served {:?} at {}", current, t);
            let left = current.expires_at.millis_since(t);
            prop_assert!(
                left >= min_remaining || view.next.is_some(),
                "served with {} ms left and nothing next",
                left
            );
            prop_assert!(view.refresh_at >= t);
            prop_assert!(
                self.committed.iter().any(|v| v.number == current.number
                    && (v.not_before, v.expires_at) == (current.not_before, current.expires_at)),
                "served a version never committed"
            );
            if let Some(next) = view.next {
                prop_assert!(next.not_before > t);
                prop_assert_eq!(view.refresh_at, next.not_before);
                if self.was_planned(next.number) {
                    prop_assert_eq!(next.not_before, current.expires_at, "a gap or overlap");
                }
            }
            if self.policy.overlap == Overlap::Allowed {
                prop_assert!(left >= min_remaining, "served with {} ms left", left);
            }
            Ok(())
        }

        /// Checks that hold over the whole run.
        fn check_history(&self) -> Result<(), TestCaseError> {
            let numbers: Vec<u64> = self.committed.iter().map(|c| c.number).collect();
            let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
            prop_assert_eq!(numbers, expected);
            prop_assert!(self.fences.windows(2).all(|w| w[0] < w[1]));

            if self.policy.overlap == Overlap::None {
                for (i, a) in self.committed.iter().enumerate() {
                    for b in &self.committed[i + 1..] {
                        prop_assert!(
                            a.expires_at <= b.not_before || b.expires_at <= a.not_before,
                            "versions {:?} and {:?} overlap",
                            a,
                            b
                        );
                    }
                }
            }

            // Whatever the state still holds was announced by a commit.
            let c = self.cred();
            for v in [&c.previous, &c.current, &c.next].into_iter().flatten() {
                prop_assert!(self.committed.iter().any(|k| k.number == v.number
                    && (k.not_before, k.expires_at) == (v.not_before, v.expires_at)));
            }
            Ok(())
        }
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 256,
            failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
                "proptest-regressions",
            ))),
            ..ProptestConfig::default()
        }
    }

    fn play(policy: Policy, steps: &[Step]) -> Result<(), TestCaseError> {
        prop_assert!(policy.validate().is_ok(), "{:?}", policy);
        let mut engine = Engine::new(policy);
        for step in steps {
            engine.run(step)?;
        }
        engine.check_history()
    }

    proptest! {
        #![proptest_config(config())]

        /// Overlap = none: windows never intersect, reads get a valid token with enough left
        /// unless the next one is already published, rotation numbers and fences behave.
        #[test]
        fn overlap_none_keeps_versions_disjoint_and_reads_fresh(
            policy in valid_policy(Overlap::None),
            steps in prop::collection::vec(step(true), 1..80),
        ) {
            play(policy, &steps)?;
        }

        /// Overlap = allowed: reads never get an expired token nor one with less than
        /// min_remaining left.
        #[test]
        fn overlap_allowed_reads_are_never_expired_nor_short(
            policy in valid_policy(Overlap::Allowed),
            steps in prop::collection::vec(step(false), 1..80),
        ) {
            play(policy, &steps)?;
        }
    }

    /// The driver itself, on a schedule written by hand: it must see rotations happen.
    #[test]
    fn the_engine_rotates_on_a_plain_schedule() {
        let mut engine = Engine::new(policy(Overlap::None));
        let due = Step {
            advance: Advance::Permille(100),
            behind: None,
            action: Action::BeginWhenDue { deadline: 100 },
        };
        let commit = Step {
            action: Action::CommitPlanned,
            advance: Advance::Zero,
            ..due
        };
        for _ in 0..50 {
            engine.run(&due).unwrap();
            engine.run(&commit).unwrap();
        }
        engine.check_history().unwrap();
        // 50 steps of 60 s are five lifetimes: version 1 and five successors.
        assert_eq!(engine.committed.len(), 6);
    }
}
