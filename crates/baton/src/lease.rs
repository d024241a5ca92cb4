//! Leases from the holder's side: calls to `/v1/leases`, the stop-at rule, and the
//! `baton lease` commands.
//!
//! The server judges expiry by the time stamped in its log; a holder cannot see that clock, so
//! it keeps its own deadline on its monotonic clock: a grant is good until
//! `sent + ttl - max_clock_skew - margin`, where `sent` is when the successful acquire or renew
//! was *sent* (the server stamped it later, so its TTL runs out later). [`crate::lock`] and
//! [`crate::elect`] build on [`LeaseClient`] and [`Grant`].

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::client::{out, Remote};

/// How long a lease command waits for an answer beyond its own wait: longer than a server
/// looks for a leader (10 s), so that its answer, not a client timeout, is what is reported.
const SERVER_PATIENCE: Duration = Duration::from_secs(15);

/// `baton lease ...`: one call each, for people (terse) and scripts (`--json`).
#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Acquire a lease, or renew it if this holder already holds it.
    Acquire {
        name: String,
        /// Who holds it: the same id must renew and release.
        #[arg(long)]
        holder: String,
        /// How long the grant lasts unless renewed, e.g. "10s", "1500ms".
        #[arg(long, value_parser = parse_duration)]
        ttl: Duration,
        /// How long to wait for the lease to become free (at most 30s per call).
        #[arg(long, value_parser = parse_duration)]
        wait: Option<Duration>,
        #[arg(long)]
        json: bool,
    },
    /// Extend a grant; refused unless HOLDER holds it with FENCE.
    Renew {
        name: String,
        #[arg(long)]
        holder: String,
        #[arg(long)]
        fence: u64,
        #[arg(long)]
        json: bool,
    },
    /// End a grant; refused unless HOLDER holds it (or held it last) with FENCE.
    Release {
        name: String,
        #[arg(long)]
        holder: String,
        #[arg(long)]
        fence: u64,
        #[arg(long)]
        json: bool,
    },
    /// Show who holds a lease; with --after, wait up to --wait for a change since REVISION.
    Show {
        name: String,
        #[arg(long, value_parser = parse_duration)]
        wait: Option<Duration>,
        #[arg(long, value_name = "REVISION")]
        after: Option<u64>,
        #[arg(long)]
        json: bool,
    },
}

/// Reads "10s", "1500ms", "1m 30s", or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.trim().parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text.trim()).map_err(|e| format!("`{text}` is not a duration: {e}"))
}

/// What a holder keeps besides `max_clock_skew`, for its own scheduling and clock drift: a
/// tenth of the TTL, within [100 ms, 2 s].
pub fn margin(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(100), Duration::from_secs(2))
}

/// A grant as the holder sees it.
#[derive(Clone, Debug)]
pub struct Grant {
    pub name: String,
    pub holder: String,
    pub fence: u64,
    pub ttl: Duration,
    pub max_clock_skew: Duration,
    /// When the holder must consider the grant over, on its own monotonic clock.
    pub stop_at: Instant,
    /// The server's answer.
    pub body: Value,
}

impl Grant {
    /// A grant known only by name, holder and fence (on the command line): enough to renew.
    pub fn known(name: &str, holder: &str, fence: u64) -> Grant {
        Grant {
            name: name.to_owned(),
            holder: holder.to_owned(),
            fence,
            ttl: Duration::ZERO,
            max_clock_skew: Duration::ZERO,
            stop_at: Instant::now(),
            body: Value::Null,
        }
    }

    /// How long a grant lasts on the holder's clock after a successful acquire or renew.
    pub fn window(&self) -> Duration {
        self.ttl
            .saturating_sub(self.max_clock_skew + margin(self.ttl))
    }
}

/// The server refused, or could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The server answered with an error: the lease is held, not this holder's, expired, or
    /// the request was invalid. Retrying the same request gets the same answer.
    #[error("{message} ({code}, HTTP {status})")]
    Refused {
        status: u16,
        code: String,
        message: String,
        body: Value,
    },
    /// No usable answer: the server is unreachable, timed out, or answered garbage. The
    /// request may or may not have been applied; every lease operation is safe to retry.
    #[error("cannot reach baton at {base}: {reason}")]
    Unreachable { base: String, reason: String },
}

impl LeaseError {
    pub fn code(&self) -> Option<&str> {
        match self {
            LeaseError::Refused { code, .. } => Some(code),
            LeaseError::Unreachable { .. } => None,
        }
    }
}

/// An HTTP client for `/v1/leases`.
#[derive(Clone, Debug)]
pub struct LeaseClient {
    base: String,
    http: reqwest::Client,
}

impl LeaseClient {
    pub fn new(remote: &Remote) -> anyhow::Result<LeaseClient> {
        Ok(LeaseClient {
            base: remote.base_url(),
            http: remote.http_client()?,
        })
    }

    fn url(&self, name: &str, rest: &str) -> Result<String, LeaseError> {
        baton_core::validate_name(name).map_err(|e| LeaseError::Refused {
            status: 400,
            code: "invalid_name".into(),
            message: e.to_string(),
            body: Value::Null,
        })?;
        Ok(format!("{}/v1/leases/{name}{rest}", self.base))
    }

    async fn call(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<Value, LeaseError> {
        let unreachable = |e: reqwest::Error| LeaseError::Unreachable {
            base: self.base.clone(),
            reason: crate::client::error_chain(&e),
        };
        let resp = req.timeout(timeout).send().await.map_err(unreachable)?;
        let status = resp.status();
        let text = resp.text().await.map_err(unreachable)?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let error = &body["error"];
        match (error["code"].as_str(), error["message"].as_str()) {
            (Some(code), Some(message)) => Err(LeaseError::Refused {
                status: status.as_u16(),
                code: code.to_owned(),
                message: message.to_owned(),
                body: error.clone(),
            }),
            _ => Err(LeaseError::Unreachable {
                base: self.base.clone(),
                reason: format!("the server answered HTTP {status}"),
            }),
        }
    }

    /// Acquires `name` for `holder`, waiting up to `wait` for it to become free.
    pub async fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Grant, LeaseError> {
        let body = json!({
            "holder": holder,
            "ttl": format!("{}ms", ttl.as_millis()),
            "wait": format!("{}ms", wait.as_millis()),
        });
        let req = self.http.post(self.url(name, "/acquire")?).json(&body);
        let sent = Instant::now();
        let answer = self.call(req, wait + SERVER_PATIENCE).await?;
        Ok(grant(name, holder, ttl, sent, answer))
    }

    /// Renews `held`; `timeout` bounds the call (a renewal is useless after the grant's end).
    pub async fn renew(&self, held: &Grant, timeout: Duration) -> Result<Grant, LeaseError> {
        let body = json!({ "holder": held.holder, "fence": held.fence });
        let req = self.http.post(self.url(&held.name, "/renew")?).json(&body);
        let sent = Instant::now();
        let answer = self.call(req, timeout).await?;
        Ok(grant(&held.name, &held.holder, held.ttl, sent, answer))
    }

    /// Releases the grant with `fence`; the answer says whether it was still held
    /// (`released: false` for a retried release).
    pub async fn release(&self, name: &str, holder: &str, fence: u64) -> Result<Value, LeaseError> {
        let body = json!({ "holder": holder, "fence": fence });
        let req = self.http.post(self.url(name, "/release")?).json(&body);
        self.call(req, SERVER_PATIENCE).await
    }

    /// The lease now, or once it changed after revision `after` (waiting at most `wait`).
    pub async fn observe(
        &self,
        name: &str,
        wait: Duration,
        after: Option<u64>,
    ) -> Result<Value, LeaseError> {
        let mut query = vec![("wait", format!("{}ms", wait.as_millis()))];
        if let Some(after) = after {
            query.push(("after", after.to_string()));
        }
        let req = self.http.get(self.url(name, "")?).query(&query);
        self.call(req, wait + SERVER_PATIENCE).await
    }
}

/// The holder's view of a successful acquire or renew that was sent at `sent`.
fn grant(name: &str, holder: &str, ttl: Duration, sent: Instant, body: Value) -> Grant {
    let skew = Duration::from_millis(body["max_clock_skew_ms"].as_u64().unwrap_or(500));
    let mut grant = Grant {
        name: name.to_owned(),
        holder: holder.to_owned(),
        fence: body["fence"].as_u64().unwrap_or(0),
        ttl,
        max_clock_skew: skew,
        stop_at: sent,
        body,
    };
    grant.stop_at = sent + grant.window();
    grant
}

/// The current holder of an observed lease: (id, fence).
pub fn holder_of(view: &Value) -> Option<(String, u64)> {
    let holder = &view["holder"];
    Some((holder["id"].as_str()?.to_owned(), holder["fence"].as_u64()?))
}

/// Runs one `baton lease` command.
pub async fn run(remote: &Remote, cmd: LeaseCommand) -> anyhow::Result<ExitCode> {
    let client = LeaseClient::new(remote)?;
    let (json, body, text) = match cmd {
        LeaseCommand::Acquire {
            name,
            holder,
            ttl,
            wait,
            json,
        } => {
            let g = client
                .acquire(&name, &holder, ttl, wait.unwrap_or_default())
                .await?;
            let text = format!(
                "acquired {name}: holder {holder}, fence {}, expires {} (stop within {} ms)",
                g.fence,
                g.body["expires_at"].as_str().unwrap_or("?"),
                g.window().as_millis(),
            );
            (json, g.body, text)
        }
        LeaseCommand::Renew {
            name,
            holder,
            fence,
            json,
        } => {
            let held = Grant::known(&name, &holder, fence);
            let g = client.renew(&held, SERVER_PATIENCE).await?;
            let text = format!(
                "renewed {name}: fence {fence}, expires {}",
                g.body["expires_at"].as_str().unwrap_or("?")
            );
            (json, g.body, text)
        }
        LeaseCommand::Release {
            name,
            holder,
            fence,
            json,
        } => {
            let body = client.release(&name, &holder, fence).await?;
            let text = if body["released"] == Value::Bool(true) {
                format!("released {name}: fence {fence}")
            } else {
                format!("{name}: fence {fence} was already released")
            };
            (json, body, text)
        }
        LeaseCommand::Show {
            name,
            wait,
            after,
            json,
        } => {
            let body = client
                .observe(&name, wait.unwrap_or_default(), after)
                .await?;
            let text = describe(&name, &body);
            (json, body, text)
        }
    };
    if json {
        out(&serde_json::to_string_pretty(&body)?);
    } else {
        out(&text);
    }
    Ok(ExitCode::SUCCESS)
}

/// One line about an observed lease.
fn describe(name: &str, view: &Value) -> String {
    let revision = &view["revision"];
    match holder_of(view) {
        Some((id, fence)) => format!(
            "{name}: held by {id}, fence {fence}, expires {} (revision {revision})",
            view["holder"]["expires_at"].as_str().unwrap_or("?")
        ),
        None => format!(
            "{name}: free (last fence {}, revision {revision})",
            view["last_fence"]
        ),
    }
}

/// A holder id unique to this process: host name, process id and a random part (so that
/// containers with equal host names and process ids still differ).
pub fn default_holder() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{host}/{}/{:08x}", std::process::id(), random as u32)
}

/// Why a holder no longer holds its grant.
#[derive(Debug, thiserror::Error)]
pub enum Lost {
    /// The server refused a renewal: the grant expired or passed to another holder.
    #[error("renewal refused: {0}")]
    Refused(LeaseError),
    /// No renewal succeeded in time: the holder's own deadline arrived.
    #[error("no renewal succeeded before the holder's deadline")]
    Deadline,
}

/// Keeps a grant: renews it every `min(ttl / 3, window / 2)` after the last successful send,
/// retrying quickly while the server cannot be reached, until the grant is lost.
#[derive(Debug)]
pub struct Keeper {
    client: LeaseClient,
    pub grant: Grant,
    every: Duration,
    next: Instant,
}

impl Keeper {
    pub fn new(client: LeaseClient, grant: Grant) -> Keeper {
        let every = (grant.ttl / 3).min(grant.window() / 2);
        let sent = grant.stop_at - grant.window();
        Keeper {
            client,
            next: sent + every,
            every,
            grant,
        }
    }

    /// Waits for the next renewal and makes it. Returns after each successful renewal (the
    /// grant's `stop_at` moved on), or when the grant is lost. Safe to cancel.
    pub async fn step(&mut self) -> Result<(), Lost> {
        loop {
            tokio::select! {
                biased;
                () = tokio::time::sleep_until(self.grant.stop_at) => return Err(Lost::Deadline),
                () = tokio::time::sleep_until(self.next) => {}
            }
            let left = self.grant.stop_at.saturating_duration_since(Instant::now());
            match self.client.renew(&self.grant, left).await {
                Ok(renewed) if Instant::now() < renewed.stop_at => {
                    self.next = renewed.stop_at - renewed.window() + self.every;
                    self.grant = renewed;
                    return Ok(());
                }
                Ok(_) => return Err(Lost::Deadline),
                Err(e @ LeaseError::Refused { .. }) => return Err(Lost::Refused(e)),
                Err(LeaseError::Unreachable { reason, .. }) => {
                    tracing::debug!(lease = %self.grant.name, %reason, "renewal failed; retrying");
                    self.next = Instant::now() + (self.every / 4).min(Duration::from_millis(250));
                }
            }
        }
    }
}

/// Acquires `name`, waiting up to `wait`, and returns a grant whose deadline is fresh: an
/// acquire that waited was sent long before it was granted, so its deadline (counted from
/// the send) may already be near; it is renewed at once to count from now.
pub async fn acquire_fresh(
    client: &LeaseClient,
    name: &str,
    holder: &str,
    ttl: Duration,
    wait: Duration,
) -> Result<Grant, LeaseError> {
    let give_up = Instant::now() + wait;
    loop {
        let left = give_up.saturating_duration_since(Instant::now());
        let grant = client.acquire(name, holder, ttl, left).await?;
        if grant.stop_at.saturating_duration_since(Instant::now()) > grant.window() / 2 {
            return Ok(grant);
        }
        match client.renew(&grant, grant.window()).await {
            Ok(renewed) => return Ok(renewed),
            // The grant ended while the answer travelled: ask again.
            Err(LeaseError::Refused { .. }) if Instant::now() < give_up => continue,
            Err(e) => return Err(e),
        }
    }
}
