//! `baton elect` (campaign for a lease, print each change of leadership) and `baton leader`
//! (print the current leader, or wait for one).
//!
//! A campaigner that does not lead watches the lease with the observe long poll, so waiting
//! costs no log writes; when the lease is free it tries to acquire it. While it leads it renews
//! like `baton lock`, and counts itself leader only until its own deadline
//! (`send + ttl - max_clock_skew - margin`). Lines on stdout:
//!
//! ```text
//! leader ID fence N    a leader was seen (this campaigner when ID is its own)
//! no leader            this campaigner lost its grant; it campaigns again
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use crate::client::{out, Remote};
use crate::lease::{default_holder, holder_of, parse_duration, Keeper, LeaseClient, LeaseError};

/// The exit status of `baton leader` when the lease has no leader.
pub const NO_LEADER: u8 = 3;

/// The longest long poll asked of the server in one call (it caps waits at 30 s anyway).
const POLL: Duration = Duration::from_secs(25);

#[derive(Debug, Args)]
pub struct ElectArgs {
    /// The lease the campaigners compete for.
    name: String,
    /// This campaigner's id [default: host name, process id and a random part].
    #[arg(long)]
    holder: Option<String>,
    /// How long leadership lasts unless renewed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    ttl: Duration,
}

#[derive(Debug, Args)]
pub struct LeaderArgs {
    /// The lease.
    name: String,
    /// Wait this long for a leader when there is none.
    #[arg(long, value_parser = parse_duration)]
    wait: Option<Duration>,
    /// Print the lease as JSON.
    #[arg(long)]
    json: bool,
}

/// Prints a leadership line when it differs from the last one printed.
#[derive(Debug, Default)]
struct Printer(Option<String>);

impl Printer {
    fn show(&mut self, line: String) {
        if self.0.as_ref() != Some(&line) {
            out(&line);
            self.0 = Some(line);
        }
    }
}

pub async fn elect(remote: &Remote, args: ElectArgs) -> anyhow::Result<ExitCode> {
    let client = LeaseClient::new(remote)?;
    let holder = args.holder.unwrap_or_else(default_holder);
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut printer = Printer::default();
    loop {
        tokio::select! {
            result = campaign(&client, &args.name, &holder, args.ttl, &mut printer) => result?,
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    // Whatever this campaigner may hold ends now; a refusal means it held nothing.
    let view = client.observe(&args.name, Duration::ZERO, None).await?;
    if let Some((id, fence)) = holder_of(&view).filter(|(id, _)| *id == holder) {
        client.release(&args.name, &id, fence).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One round: wait for the lease to be free, acquire it, lead until the grant is lost.
async fn campaign(
    client: &LeaseClient,
    name: &str,
    holder: &str,
    ttl: Duration,
    printer: &mut Printer,
) -> anyhow::Result<()> {
    let grant = match client.acquire(name, holder, ttl, Duration::ZERO).await {
        Ok(grant) => grant,
        Err(e) if e.code() == Some("lease_held") => {
            follow(client, name, printer).await?;
            return Ok(());
        }
        Err(e @ LeaseError::Refused { .. }) => return Err(e.into()),
        Err(e @ LeaseError::Unreachable { .. }) => {
            tracing::debug!(error = %e, "campaign: server unreachable");
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Ok(());
        }
    };
    if Instant::now() >= grant.stop_at {
        return Ok(()); // too slow an answer to lead on; try again
    }
    printer.show(format!("leader {holder} fence {}", grant.fence));
    let mut keeper = Keeper::new(client.clone(), grant);
    while keeper.step().await.is_ok() {}
    printer.show("no leader".to_owned());
    Ok(())
}

/// Prints the current leader and waits until the lease is free.
async fn follow(client: &LeaseClient, name: &str, printer: &mut Printer) -> anyhow::Result<()> {
    let mut after = None;
    loop {
        let view = match client.observe(name, POLL, after).await {
            Ok(view) => view,
            Err(e @ LeaseError::Refused { .. }) => return Err(e.into()),
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some((id, fence)) = holder_of(&view) else {
            return Ok(());
        };
        printer.show(format!("leader {id} fence {fence}"));
        after = view["revision"].as_u64();
    }
}

pub async fn leader(remote: &Remote, args: LeaderArgs) -> anyhow::Result<ExitCode> {
    let client = LeaseClient::new(remote)?;
    let give_up = Instant::now() + args.wait.unwrap_or_default();
    let mut view = client.observe(&args.name, Duration::ZERO, None).await?;
    while holder_of(&view).is_none() {
        let left = give_up.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let after = view["revision"].as_u64();
        view = client.observe(&args.name, left.min(POLL), after).await?;
    }
    if args.json {
        out(&serde_json::to_string_pretty(&view)?);
    }
    match holder_of(&view) {
        Some((id, fence)) => {
            if !args.json {
                out(&format!("leader {id} fence {fence}"));
            }
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("baton: lease {} has no leader", args.name);
            Ok(ExitCode::from(NO_LEADER))
        }
    }
}
