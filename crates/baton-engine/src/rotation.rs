//! One rotation: intent, issuer call, result.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use baton_core::{CommandError, Intent, Op, Output, RotationReason, Timestamp};
use baton_issuers::{IssueError, MintRequest};
use baton_raft::ProposeError;

use crate::metrics::{CredentialLabel, Outcome};
use crate::Engine;

/// How long before its intent's deadline, besides the clock skew, an issuer call is cut short.
const DEADLINE_MARGIN: Duration = Duration::from_secs(1);

/// A committed rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotated {
    pub version: u64,
    pub fence: u64,
    pub not_before: Timestamp,
    pub expires_at: Timestamp,
    pub revision: u64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotateError {
    #[error("no credential is named `{0}`")]
    NotFound(String),
    #[error("a rotation of `{0}` is already running")]
    InProgress(String),
    /// The state machine refused the intent or the result.
    #[error(transparent)]
    Refused(CommandError),
    /// The issuer failed; the failure is recorded and a retry scheduled.
    #[error("the issuer failed: {0}")]
    Issuer(String),
    /// The issuer call's outcome is unknown; the intent is waited out before a new call.
    #[error("the issuer call's outcome is unknown: {0}")]
    OutcomeUnknown(String),
    /// This node cannot write now.
    #[error("{0}")]
    Unavailable(String),
}

impl From<ProposeError> for RotateError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::Refused(CommandError::NotFound(name)) => RotateError::NotFound(name),
            ProposeError::Refused(e) => RotateError::Refused(e),
            other => RotateError::Unavailable(other.to_string()),
        }
    }
}

impl Engine {
    /// Rotates `name` now, as `POST /v1/credentials/{name}/rotate` asks. If a rotation of
    /// `name` is running on this node, waits for it to end (at most the intent timeout), then
    /// rotates again.
    pub async fn rotate_now(&self, name: &str) -> Result<Rotated, RotateError> {
        let give_up = tokio::time::Instant::now() + self.inner.config.intent_timeout;
        loop {
            let released = self.inner.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            match self.rotate(name, RotationReason::Manual).await {
                Err(RotateError::InProgress(_)) if tokio::time::Instant::now() < give_up => {
                    let _ = tokio::time::timeout_at(give_up, released).await;
                }
                result => return result,
            }
        }
    }

    #[tracing::instrument(skip_all, fields(credential = %name, ?reason))]
    pub(crate) async fn rotate(
        &self,
        name: &str,
        reason: RotationReason,
    ) -> Result<Rotated, RotateError> {
        let Some(_claim) = self.claim(name) else {
            return Err(RotateError::InProgress(name.to_owned()));
        };
        let started = Instant::now();
        let result = self.rotate_claimed(name, reason).await;

        let metrics = &self.inner.metrics;
        match &result {
            Ok(r) => {
                metrics.record(name, Outcome::Success);
                metrics.latency.observe(started.elapsed().as_secs_f64());
                tracing::info!(
                    credential = %name, version = r.version, fence = r.fence,
                    not_before = %r.not_before, expires_at = %r.expires_at, "rotated"
                );
            }
            Err(RotateError::Issuer(error)) => {
                metrics.record(name, Outcome::Failure);
                tracing::warn!(credential = %name, %error, "rotation failed");
            }
            Err(RotateError::OutcomeUnknown(error)) => {
                metrics.record(name, Outcome::Unknown);
                metrics
                    .unknown_outcomes
                    .get_or_create(&CredentialLabel::of(name))
                    .inc();
                tracing::warn!(credential = %name, %error,
                    "issuer call outcome unknown; waiting out the intent before calling again");
            }
            Err(RotateError::Refused(error)) => {
                metrics.record(name, Outcome::Refused);
                tracing::debug!(credential = %name, %error, "rotation refused");
            }
            Err(error) => tracing::debug!(credential = %name, %error, "rotation not done"),
        }
        result
    }

    async fn rotate_claimed(
        &self,
        name: &str,
        reason: RotationReason,
    ) -> Result<Rotated, RotateError> {
        let node = &self.inner.node;
        let open = node.state().read(|s| {
            let c = s.credentials.get(name)?;
            Some(c.rotation.clone().filter(|_| c.issuer.is_idempotent()))
        });
        let Some(open) = open else {
            return Err(RotateError::NotFound(name.to_owned()));
        };
        self.wait_min_interval(name).await;

        // An intent left open (by a crash) for an idempotent issuer is minted again as it is:
        // the token is the same one that may already have been handed to the issuer's peer.
        let intent = match open.filter(|_| reason == RotationReason::Scheduled) {
            Some(intent) => {
                tracing::info!(credential = %name, rotation = intent.rotation, fence = intent.fence,
                    "resuming an open rotation intent");
                intent
            }
            None => self.begin(name, reason).await?,
        };

        // Read the issuer after the intent is committed: a later change of issuer drops the
        // intent, so a result minted from a stale issuer is refused.
        let spec = node.state().read(|s| {
            s.credentials
                .get(name)
                .map(|c| (c.issuer.clone(), c.uid, c.policy))
        });
        let Some((issuer, uid, policy)) = spec else {
            return Err(RotateError::NotFound(name.to_owned()));
        };
        let request = MintRequest {
            credential: name,
            uid,
            intent: &intent,
            policy: &policy,
        };
        let minted = match issuer.call_timeout() {
            None => baton_issuers::mint(&issuer, request).await,
            Some(_) => {
                // Once the intent's deadline passes, another node may begin this rotation
                // again, so the call must be over by then, with the clocks' disagreement to
                // spare. An intent committed late (its proposal waited out a partition, say)
                // leaves less time than the issuer's timeout, or none.
                let spare = node.max_clock_skew() + DEADLINE_MARGIN;
                let left = intent
                    .deadline
                    .as_millis()
                    .saturating_sub(node.now().as_millis());
                let Some(budget) = Duration::from_millis(left)
                    .checked_sub(spare)
                    .filter(|b| !b.is_zero())
                else {
                    let error = "the rotation intent was committed too close to its deadline \
                                 to call the issuer"
                        .to_owned();
                    self.fail(name, intent.fence, error.clone(), node.now())
                        .await?;
                    return Err(RotateError::Unavailable(error));
                };
                self.called(name);
                let kind = issuer.kind();
                tokio::time::timeout(budget, baton_issuers::mint(&issuer, request))
                    .await
                    .unwrap_or(Err(IssueError::OutcomeUnknown {
                        kind,
                        timeout: budget,
                    }))
            }
        };
        match minted {
            Ok(minted) => {
                if let Some(note) = &minted.note {
                    tracing::warn!(credential = %name, note = %note, "issuer answer adjusted");
                }
                let op = Op::CommitRotation {
                    name: name.to_owned(),
                    fence: intent.fence,
                    token: minted.token,
                    issued_at: minted.issued_at,
                    not_before: minted.not_before,
                    expires_at: minted.expires_at,
                };
                let committed = match node.propose(op).await {
                    Err(ProposeError::Refused(
                        refusal @ (CommandError::InvalidWindow { .. }
                        | CommandError::Overlap { .. }),
                    )) => {
                        // The intent can never be committed (it outlived its window while the
                        // node was down, say): close it so that a fresh one can begin.
                        let error = format!("the minted version was refused: {refusal}");
                        self.fail(name, intent.fence, error, node.now()).await?;
                        return Err(RotateError::Refused(refusal));
                    }
                    other => other?,
                };
                match committed.output {
                    Output::RotationCommitted {
                        version,
                        not_before,
                        expires_at,
                    } => {
                        self.report_short_lifetime(name, not_before, expires_at);
                        Ok(Rotated {
                            version,
                            fence: intent.fence,
                            not_before,
                            expires_at,
                            revision: committed.revision,
                        })
                    }
                    other => Err(RotateError::Unavailable(format!(
                        "unexpected output {other:?}"
                    ))),
                }
            }
            Err(error) if error.outcome_unknown() => {
                // The issuer may have issued a token: no new call before the intent deadline.
                let text = error.to_string();
                let op = Op::FailRotation {
                    name: name.to_owned(),
                    fence: intent.fence,
                    error: text.clone(),
                    retry_at: intent.deadline,
                    unknown: true,
                };
                node.propose(op).await?;
                Err(RotateError::OutcomeUnknown(text))
            }
            Err(error) => {
                let wait = self
                    .backoff(name)
                    .max(error.retry_after().unwrap_or_default());
                let text = error.to_string();
                let retry_at = node.now().add_millis(wait.as_millis() as u64);
                self.fail(name, intent.fence, text.clone(), retry_at)
                    .await?;
                Err(RotateError::Issuer(text))
            }
        }
    }

    /// Logs and counts a version issued for less than the policy works with.
    fn report_short_lifetime(&self, name: &str, not_before: Timestamp, expires_at: Timestamp) {
        let short = self.inner.node.state().read(|s| {
            let c = s.credentials.get(name)?;
            c.status.short_lifetime.map(|issued| (issued, c.policy))
        });
        if let Some((issued, policy)) = short {
            self.inner
                .metrics
                .short_lifetimes
                .get_or_create(&CredentialLabel::of(name))
                .inc();
            tracing::warn!(
                credential = %name, issued = %issued, min_use = %policy.min_use,
                renew_before = %policy.renew_before, %not_before, %expires_at,
                "the issuer issued a shorter lifetime than the policy works with; \
                 renewing a third of the lifetime before it ends"
            );
        }
    }

    /// Waits until this node's last call to `name`'s issuer is `min_interval` old.
    async fn wait_min_interval(&self, name: &str) {
        let last = self
            .inner
            .last_call
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .copied();
        if let Some(last) = last {
            let ready = last + self.inner.config.min_interval;
            tokio::time::sleep_until(ready.into()).await;
        }
    }

    fn called(&self, name: &str) {
        self.inner
            .last_call
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), Instant::now());
    }

    async fn begin(&self, name: &str, reason: RotationReason) -> Result<Intent, RotateError> {
        let node = &self.inner.node;
        // The intent must outlive the issuer call it covers, with room to commit the result.
        let call = node.state().read(|s| {
            s.credentials
                .get(name)
                .and_then(|c| c.issuer.call_timeout())
        });
        let hold = call.map_or(Duration::ZERO, |t| t.as_std() * 2 + Duration::from_secs(5));
        let deadline = node
            .now()
            .add_millis(self.inner.config.intent_timeout.max(hold).as_millis() as u64);
        let op = Op::BeginRotation {
            name: name.to_owned(),
            deadline,
            reason,
        };
        // Only the leader begins a rotation: a node that lost the lead must not start one through
        // the new leader, whose own engine rotates. Results are forwarded (`propose`), so that
        // a token minted just before a leader change is still committed.
        match node.propose_local(op).await?.output {
            Output::RotationStarted(intent) => Ok(intent),
            other => Err(RotateError::Unavailable(format!(
                "unexpected output {other:?}"
            ))),
        }
    }

    async fn fail(
        &self,
        name: &str,
        fence: u64,
        error: String,
        retry_at: Timestamp,
    ) -> Result<(), RotateError> {
        let op = Op::FailRotation {
            name: name.to_owned(),
            fence,
            error,
            retry_at,
            unknown: false,
        };
        self.inner.node.propose(op).await?;
        Ok(())
    }

    /// Capped exponential backoff with ±20 % jitter, from the failures recorded so far.
    fn backoff(&self, name: &str) -> Duration {
        let attempts = self
            .inner
            .node
            .state()
            .read(|s| s.credentials.get(name).map_or(0, |c| c.status.attempts));
        let config = &self.inner.config;
        let exp = config.backoff_base.saturating_mul(1u32 << attempts.min(20));
        let base = exp.min(config.backoff_max).as_millis() as f64;
        // A fresh RandomState is seeded from the OS: enough randomness for spreading retries.
        let r = RandomState::new().hash_one(name) % 1000;
        let factor = 0.8 + 0.4 * (r as f64 / 1000.0);
        Duration::from_millis((base * factor) as u64)
    }
}
