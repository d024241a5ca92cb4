//! `baton lock NAME -- COMMAND ...`: run a command while holding a lease.
//!
//! ```text
//!  acquire ──▶ spawn COMMAND (own process group, BATON_FENCE, BATON_LEASE)
//!          ──▶ spawn `baton __watchdog` (the deadline, on its own)
//!  loop: renew every min(ttl/3, window/2) ──▶ new deadline to the watchdog
//!  lost (refused, or the deadline came) ──▶ watchdog: SIGTERM, grace, SIGKILL ──▶ exit 75
//!  COMMAND exits ──▶ release ──▶ exit with its status
//! ```
//!
//! The deadline is `last successful renewal's send time + ttl - max_clock_skew - margin` on
//! this machine's monotonic clock. The command gets SIGTERM then, and SIGKILL `margin / 2`
//! later: at `send + ttl - max_clock_skew - margin / 2`, which is before the earliest instant
//! at which any node, its clock up to `max_clock_skew` ahead, could judge the grant expired and
//! hand it to someone else, and so well before `ttl` has passed since the renewal. The
//! watchdog is a separate process so that this holds even while `baton lock` is paused.

use std::os::unix::process::ExitStatusExt as _;
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rustix::process::{kill_process_group, Pid, Signal};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};
use tokio::signal::unix::{signal, SignalKind};

use crate::client::Remote;
use crate::lease::{acquire_fresh, default_holder, margin, parse_duration, Keeper, LeaseClient};
use crate::watchdog::{monotonic_ms_at, STOPPED};

/// The exit status of `baton lock` when the lease was lost while the command ran (the
/// command was stopped): 75, EX_TEMPFAIL.
pub const LOST: u8 = 75;

/// The shortest time a grant may be held between renewals; below it, renewing cannot keep up.
const MIN_WINDOW: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
pub struct LockArgs {
    /// The lease's name.
    name: String,
    /// How long the lease lasts unless renewed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    ttl: Duration,
    /// How long to wait for the lease when another holder has it [default: do not wait].
    #[arg(long, value_parser = parse_duration)]
    wait: Option<Duration>,
    /// The holder id [default: host name, process id and a random part].
    #[arg(long)]
    holder: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(required = true, last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// How a run under the lease ended.
enum End {
    Exited(ExitStatus),
    Lost(String),
}

pub async fn run(remote: &Remote, args: LockArgs) -> anyhow::Result<ExitCode> {
    let client = LeaseClient::new(remote)?;
    let holder = args.holder.clone().unwrap_or_else(default_holder);
    let wait = args.wait.unwrap_or_default();
    let grant = acquire_fresh(&client, &args.name, &holder, args.ttl, wait)
        .await
        .with_context(|| format!("cannot acquire lease {}", args.name))?;
    let (name, fence) = (grant.name.clone(), grant.fence);
    if grant.window() < MIN_WINDOW {
        let _ = client.release(&name, &holder, fence).await;
        anyhow::bail!(
            "ttl {} is too short: with max_clock_skew {} ms and a margin of {} ms the holder \
             would have to stop within {} ms",
            humantime::format_duration(args.ttl),
            grant.max_clock_skew.as_millis(),
            margin(args.ttl).as_millis(),
            grant.window().as_millis()
        );
    }
    eprintln!("baton lock: acquired {name} with fence {fence}");

    let mut child = match spawn_command(&args.command, &name, &holder, fence) {
        Ok(child) => child,
        Err(e) => {
            let _ = client.release(&name, &holder, fence).await;
            return Err(e);
        }
    };
    let pgid = child.id().and_then(|id| Pid::from_raw(id as i32));
    let Some(pgid) = pgid else {
        anyhow::bail!("the command exited before it could be watched");
    };
    let grace = margin(grant.ttl) / 2;
    let mut watchdog = match spawn_watchdog(pgid, monotonic_ms_at(grant.stop_at), grace) {
        Ok(w) => w,
        Err(e) => {
            let _ = kill_process_group(pgid, Signal::KILL);
            let _ = child.wait().await;
            let _ = client.release(&name, &holder, fence).await;
            return Err(e);
        }
    };
    let mut feed = watchdog.stdin.take().context("the watchdog's stdin")?;

    let end = supervise(
        Keeper::new(client.clone(), grant),
        &mut child,
        &mut feed,
        pgid,
    )
    .await?;
    let (status, lost) = match end {
        End::Exited(status) => (status, false),
        End::Lost(reason) => {
            eprintln!("baton lock: lease {name} lost ({reason}); stopping the command");
            (stop_now(&mut feed, &mut child, pgid, grace).await?, true)
        }
    };
    let _ = feed.write_all(b"done\n").await;
    drop(feed);
    let stopped = watchdog.wait().await.ok().and_then(|s| s.code()) == Some(STOPPED.into());

    match client.release(&name, &holder, fence).await {
        Ok(_) => {}
        Err(e) => eprintln!("baton lock: release of {name} fence {fence} refused: {e}"),
    }
    if lost || stopped {
        eprintln!("baton lock: the command was stopped: lease {name} fence {fence} was lost");
        return Ok(ExitCode::from(LOST));
    }
    Ok(ExitCode::from(exit_code(status)))
}

/// Renews while the command runs; forwards SIGINT and SIGTERM to the command's group.
async fn supervise(
    mut keeper: Keeper,
    child: &mut Child,
    feed: &mut ChildStdin,
    pgid: Pid,
) -> anyhow::Result<End> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            biased;
            status = child.wait() => return Ok(End::Exited(status?)),
            step = keeper.step() => match step {
                Ok(()) => {
                    let line = format!("{}\n", monotonic_ms_at(keeper.grant.stop_at));
                    // A watchdog that cannot be told has stopped the command, or will.
                    let _ = feed.write_all(line.as_bytes()).await;
                }
                Err(lost) => return Ok(End::Lost(lost.to_string())),
            },
            _ = interrupt.recv() => {
                let _ = kill_process_group(pgid, Signal::INT);
            }
            _ = terminate.recv() => {
                let _ = kill_process_group(pgid, Signal::TERM);
            }
        }
    }
}

/// Has the watchdog stop the command at once, and does it here as well should the watchdog
/// be gone.
async fn stop_now(
    feed: &mut ChildStdin,
    child: &mut Child,
    pgid: Pid,
    grace: Duration,
) -> anyhow::Result<ExitStatus> {
    let _ = feed.write_all(b"0\n").await;
    if let Ok(status) = tokio::time::timeout(grace * 2, child.wait()).await {
        return Ok(status?);
    }
    let _ = kill_process_group(pgid, Signal::KILL);
    Ok(child.wait().await?)
}

fn spawn_command(
    command: &[String],
    name: &str,
    holder: &str,
    fence: u64,
) -> anyhow::Result<Child> {
    let (program, rest) = command.split_first().context("no command given")?;
    Command::new(program)
        .args(rest)
        .env("BATON_LEASE", name)
        .env("BATON_FENCE", fence.to_string())
        .env("BATON_HOLDER", holder)
        // Its own process group, so that the stop signals reach every process it started.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot run `{program}`"))
}

fn spawn_watchdog(pgid: Pid, deadline_ms: u64, grace: Duration) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("cannot find the baton executable")?;
    Command::new(exe)
        .arg("__watchdog")
        .arg(format!("--pgid={}", pgid.as_raw_nonzero().get()))
        .arg(format!("--deadline={deadline_ms}"))
        .arg(format!("--grace-ms={}", grace.as_millis()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start the watchdog")
}

/// The command's status as an exit code: its own, or 128 + the signal that ended it.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => (128 + signal) as u8,
        (None, None) => 1,
    }
}
