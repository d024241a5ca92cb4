//! Leases in the state machine, driven through `State::apply` with random schedules.
//!
//! A model rebuilt only from the state machine's answers checks the lease promises of
//! DESIGN.md (4 and the state machine's half of 5): fences are unique and strictly increase
//! per name; a name never has two live holders; a stale fence is refused by every operation
//! that carries one (renew, release, a key bound to a lease) and the refusal changes nothing.
//!
//! Run with `cargo test -p baton-core --test leases`.

use std::collections::BTreeMap;

use baton_core::{CommandError, LeaseRef, Op, Output, Response, State, Timestamp};
use proptest::prelude::*;

const T0: Timestamp = Timestamp::from_secs(1_700_000_000);
const NAMES: [&str; 2] = ["leader", "cron"];
const HOLDERS: [&str; 3] = ["h1", "h2", "h3"];

/// A state, its revision counter and the time of the next command.
struct Harness {
    state: State,
    revision: u64,
    now: Timestamp,
}

impl Harness {
    fn new() -> Self {
        Harness {
            state: State::default(),
            revision: 0,
            now: T0,
        }
    }

    fn apply(&mut self, op: Op) -> Response {
        self.revision += 1;
        let cmd = baton_core::Command { now: self.now, op };
        self.state.apply(self.revision, cmd)
    }
}

/// Which fence an operation carries.
#[derive(Clone, Debug)]
enum FenceChoice {
    /// The name's latest grant.
    Latest,
    /// An earlier grant of the name (by index, wrapped), if any.
    Older(usize),
    /// Any number, mostly one that never existed.
    Any(u64),
}

#[derive(Clone, Debug)]
enum Step {
    Acquire {
        name: usize,
        holder: usize,
        ttl_ms: u64,
    },
    Renew {
        name: usize,
        holder: usize,
        fence: FenceChoice,
    },
    Release {
        name: usize,
        holder: usize,
        fence: FenceChoice,
    },
    /// A key bound to the lease with this fence.
    PutBound {
        name: usize,
        fence: FenceChoice,
    },
    Advance {
        ms: u64,
    },
}

fn fence_choice() -> impl Strategy<Value = FenceChoice> {
    prop_oneof![
        3 => Just(FenceChoice::Latest),
        2 => any::<usize>().prop_map(FenceChoice::Older),
        1 => (0u64..40).prop_map(FenceChoice::Any),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let name = 0..NAMES.len();
    let holder = 0..HOLDERS.len();
    prop_oneof![
        4 => (name.clone(), holder.clone(), 100u64..3_000)
            .prop_map(|(name, holder, ttl_ms)| Step::Acquire { name, holder, ttl_ms }),
        3 => (name.clone(), holder.clone(), fence_choice())
            .prop_map(|(name, holder, fence)| Step::Renew { name, holder, fence }),
        3 => (name.clone(), holder, fence_choice())
            .prop_map(|(name, holder, fence)| Step::Release { name, holder, fence }),
        1 => (name, fence_choice()).prop_map(|(name, fence)| Step::PutBound { name, fence }),
        3 => (0u64..2_500).prop_map(|ms| Step::Advance { ms }),
    ]
}

/// One grant as the answers described it.
#[derive(Clone, Debug)]
struct Grant {
    holder: String,
    fence: u64,
    ends_at: Timestamp,
    released: bool,
}

impl Grant {
    fn live(&self, now: Timestamp) -> bool {
        !self.released && now < self.ends_at
    }
}

/// Everything the answers said so far.
#[derive(Default)]
struct Model {
    grants: BTreeMap<String, Vec<Grant>>,
    highest_fence: u64,
}

impl Model {
    fn latest(&self, name: &str) -> Option<&Grant> {
        self.grants.get(name).and_then(|g| g.last())
    }

    fn latest_mut(&mut self, name: &str) -> Option<&mut Grant> {
        self.grants.get_mut(name).and_then(|g| g.last_mut())
    }

    fn pick(&self, name: &str, choice: &FenceChoice) -> u64 {
        let grants = self.grants.get(name).map(Vec::as_slice).unwrap_or(&[]);
        match choice {
            FenceChoice::Latest => grants.last().map_or(1, |g| g.fence),
            FenceChoice::Older(i) if grants.len() > 1 => grants[i % (grants.len() - 1)].fence,
            FenceChoice::Older(_) => 0,
            FenceChoice::Any(f) => *f,
        }
    }

    /// Whether `fence` is the name's latest grant, the only one an operation may touch.
    fn is_current(&self, name: &str, fence: u64) -> bool {
        self.latest(name).is_some_and(|g| g.fence == fence)
    }
}

fn play(steps: &[Step]) -> Result<usize, TestCaseError> {
    let mut h = Harness::new();
    let mut model = Model::default();
    let mut grants = 0;
    for step in steps {
        let before = h.state.clone();
        match step {
            Step::Advance { ms } => h.now = h.now.add_millis(*ms),
            Step::Acquire {
                name,
                holder,
                ttl_ms,
            } => {
                let (name, holder) = (NAMES[*name], HOLDERS[*holder]);
                let op = Op::AcquireLease {
                    name: name.into(),
                    holder: holder.into(),
                    ttl_ms: *ttl_ms,
                };
                let out = h.apply(op);
                grants += check_acquire(&mut model, h.now, name, holder, out, &before, &h.state)?;
            }
            Step::Renew {
                name,
                holder,
                fence,
            } => {
                let (name, holder) = (NAMES[*name], HOLDERS[*holder]);
                let fence = model.pick(name, fence);
                let op = Op::RenewLease {
                    name: name.into(),
                    holder: holder.into(),
                    fence,
                };
                let out = h.apply(op);
                check_renew(
                    &mut model, h.now, name, holder, fence, out, &before, &h.state,
                )?;
            }
            Step::Release {
                name,
                holder,
                fence,
            } => {
                let (name, holder) = (NAMES[*name], HOLDERS[*holder]);
                let fence = model.pick(name, fence);
                let op = Op::ReleaseLease {
                    name: name.into(),
                    holder: holder.into(),
                    fence,
                };
                let out = h.apply(op);
                check_release(&mut model, name, holder, fence, out, &before, &h.state)?;
            }
            Step::PutBound { name, fence } => {
                let name = NAMES[*name];
                let fence = model.pick(name, fence);
                let op = Op::PutKv {
                    key: format!("{name}-config"),
                    value: serde_json::json!({ "fence": fence }),
                    if_revision: None,
                    lease: Some(LeaseRef {
                        name: name.into(),
                        fence,
                    }),
                };
                let out = h.apply(op);
                let live = model
                    .latest(name)
                    .is_some_and(|g| g.fence == fence && g.live(h.now));
                prop_assert_eq!(
                    live,
                    out.is_ok(),
                    "bound put with fence {}: {:?}",
                    fence,
                    out
                );
                if out.is_err() {
                    prop_assert_eq!(&h.state, &before, "a refused put changed the state");
                }
            }
        }
        check_one_holder(&model, &h.state, h.now)?;
    }
    Ok(grants)
}

/// Returns 1 when the acquire made a new grant.
fn check_acquire(
    model: &mut Model,
    now: Timestamp,
    name: &str,
    holder: &str,
    out: Response,
    before: &State,
    after: &State,
) -> Result<usize, TestCaseError> {
    let live_other = model
        .latest(name)
        .filter(|g| g.live(now))
        .map(|g| g.holder != holder);
    match out {
        Ok(Output::LeaseGranted {
            fence,
            expires_at,
            renewed: true,
        }) => {
            prop_assert_eq!(live_other, Some(false), "renewed a grant that was not live");
            let latest = model.latest_mut(name).expect("a live grant");
            prop_assert_eq!(latest.fence, fence, "a retried acquire changed the fence");
            latest.ends_at = expires_at;
            Ok(0)
        }
        Ok(Output::LeaseGranted {
            fence,
            expires_at,
            renewed: false,
        }) => {
            prop_assert_eq!(live_other, None, "granted while another grant was live");
            prop_assert!(
                fence > model.highest_fence,
                "fence {} is not above every earlier fence ({})",
                fence,
                model.highest_fence
            );
            model.highest_fence = fence;
            model.grants.entry(name.into()).or_default().push(Grant {
                holder: holder.into(),
                fence,
                ends_at: expires_at,
                released: false,
            });
            Ok(1)
        }
        Err(CommandError::LeaseHeld { .. }) => {
            prop_assert_eq!(live_other, Some(true), "refused although free");
            prop_assert_eq!(after, before, "a refused acquire changed the state");
            Ok(0)
        }
        other => Err(TestCaseError::fail(format!("acquire answered {other:?}"))),
    }
}

#[allow(clippy::too_many_arguments)]
fn check_renew(
    model: &mut Model,
    now: Timestamp,
    name: &str,
    holder: &str,
    fence: u64,
    out: Response,
    before: &State,
    after: &State,
) -> Result<(), TestCaseError> {
    let allowed = model
        .latest(name)
        .is_some_and(|g| g.fence == fence && g.holder == holder && g.live(now));
    match out {
        Ok(Output::LeaseRenewed {
            fence: renewed,
            expires_at,
        }) => {
            prop_assert!(allowed, "renewed fence {} of {}", fence, name);
            prop_assert_eq!(renewed, fence);
            if let Some(g) = model.latest_mut(name) {
                g.ends_at = expires_at;
            }
        }
        Err(e) => {
            prop_assert!(!allowed, "the holder's renewal was refused: {}", e);
            prop_assert_eq!(after, before, "a refused renewal changed the state");
            if !model.is_current(name, fence) {
                prop_assert!(
                    matches!(e, CommandError::NotOwner { .. }),
                    "a stale fence got {:?}",
                    e
                );
            }
        }
        Ok(other) => return Err(TestCaseError::fail(format!("renew answered {other:?}"))),
    }
    Ok(())
}

fn check_release(
    model: &mut Model,
    name: &str,
    holder: &str,
    fence: u64,
    out: Response,
    before: &State,
    after: &State,
) -> Result<(), TestCaseError> {
    let latest = model.latest(name).cloned();
    let owns = latest
        .as_ref()
        .is_some_and(|g| g.fence == fence && g.holder == holder);
    match out {
        Ok(Output::LeaseReleased { released: true, .. }) => {
            prop_assert!(owns, "released fence {} of {} for {}", fence, name, holder);
            prop_assert!(!latest.is_some_and(|g| g.released), "released twice");
            if let Some(g) = model.latest_mut(name) {
                g.released = true;
            }
        }
        Ok(Output::LeaseReleased {
            released: false, ..
        }) => {
            // A retried release: the latest grant, released already; nothing changes.
            prop_assert!(
                model.is_current(name, fence),
                "stale fence {} accepted",
                fence
            );
            prop_assert!(latest.is_some_and(|g| g.released && g.holder == holder));
            prop_assert_eq!(&after.leases, &before.leases);
            prop_assert_eq!(&after.kv, &before.kv);
        }
        Err(e) => {
            prop_assert!(!owns, "the holder's release was refused: {}", e);
            prop_assert_eq!(after, before, "a refused release changed the state");
        }
        Ok(other) => return Err(TestCaseError::fail(format!("release answered {other:?}"))),
    }
    if !model.is_current(name, fence) {
        prop_assert_eq!(after, before, "a stale release changed the state");
    }
    Ok(())
}

/// At most one live grant per name, and the state agrees with the answers about which.
fn check_one_holder(model: &Model, state: &State, now: Timestamp) -> Result<(), TestCaseError> {
    for name in NAMES {
        let live: Vec<&Grant> = model
            .grants
            .get(name)
            .map(|gs| gs.iter().filter(|g| g.live(now)).collect())
            .unwrap_or_default();
        prop_assert!(live.len() <= 1, "{} has {} live holders", name, live.len());
        let in_state = state
            .leases
            .get(name)
            .and_then(|l| l.live_hold(now))
            .map(|h| (h.holder.as_str(), h.fence));
        let in_model = live.first().map(|g| (g.holder.as_str(), g.fence));
        prop_assert_eq!(in_state, in_model, "state and answers disagree on {}", name);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random acquire / renew / release / bound-put / time steps over two names and three
    /// holders keep every lease promise the state machine is responsible for.
    #[test]
    fn random_schedules_keep_fences_increasing_one_holder_and_stale_fences_refused(
        steps in prop::collection::vec(step(), 1..120),
    ) {
        play(&steps)?;
    }
}

/// The generator reaches the interesting cases: many grants, so fences and hand-overs are
/// really exercised, not just refusals.
#[test]
fn schedules_make_many_grants() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = prop::collection::vec(step(), 100..120);
    let mut total = 0;
    for _ in 0..20 {
        let steps = strategy
            .new_tree(&mut runner)
            .expect("a schedule")
            .current();
        total += play(&steps).expect("the promises hold");
    }
    assert!(total > 200, "only {total} grants in 20 schedules");
}

/// A stale fence, after the lease passed on, is refused by renew, release and a bound put,
/// and the new holder's grant is untouched.
#[test]
fn stale_fence_is_refused_by_renew_release_and_bound_put() {
    let mut h = Harness::new();
    let acquire = |holder: &str| Op::AcquireLease {
        name: "leader".into(),
        holder: holder.into(),
        ttl_ms: 1_000,
    };
    let Ok(Output::LeaseGranted { fence: old, .. }) = h.apply(acquire("h1")) else {
        panic!("the first acquire is granted");
    };
    h.now = h.now.add_millis(1_000);
    let Ok(Output::LeaseGranted { fence: new, .. }) = h.apply(acquire("h2")) else {
        panic!("an expired lease can be acquired");
    };
    assert!(new > old);
    let before = h.state.clone();

    let stale_ops = [
        Op::RenewLease {
            name: "leader".into(),
            holder: "h1".into(),
            fence: old,
        },
        Op::ReleaseLease {
            name: "leader".into(),
            holder: "h1".into(),
            fence: old,
        },
        Op::PutKv {
            key: "config".into(),
            value: serde_json::json!(1),
            if_revision: None,
            lease: Some(LeaseRef {
                name: "leader".into(),
                fence: old,
            }),
        },
    ];
    for op in stale_ops {
        let out = h.apply(op.clone());
        assert!(
            matches!(out, Err(CommandError::NotOwner { current: Some(f), .. }) if f == new),
            "{op:?} answered {out:?}"
        );
        assert_eq!(h.state, before, "{op:?} changed the state");
    }
}

/// Regression: a release retried by a holder that never held the released grant answered
/// success (`released: false`); it is refused as not the owner.
#[test]
fn a_retried_release_by_another_holder_is_refused() {
    let mut h = Harness::new();
    let Ok(Output::LeaseGranted { fence, .. }) = h.apply(Op::AcquireLease {
        name: "leader".into(),
        holder: "h1".into(),
        ttl_ms: 1_000,
    }) else {
        panic!("the first acquire is granted");
    };
    let release = |holder: &str| Op::ReleaseLease {
        name: "leader".into(),
        holder: holder.into(),
        fence,
    };
    assert!(matches!(
        h.apply(release("h1")),
        Ok(Output::LeaseReleased { released: true, .. })
    ));
    let out = h.apply(release("h2"));
    assert!(matches!(out, Err(CommandError::NotOwner { .. })), "{out:?}");
    assert!(matches!(
        h.apply(release("h1")),
        Ok(Output::LeaseReleased {
            released: false,
            ..
        })
    ));
}
