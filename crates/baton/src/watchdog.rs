//! `baton __watchdog`: the process that stops `baton lock`'s command at the holder's deadline,
//! even when `baton lock` itself cannot run (paused by SIGSTOP or a debugger, starved, killed).
//!
//! A holder that is paused cannot stop anything, so the deadline is enforced by a second
//! process. `baton lock` starts it beside the command and writes every new deadline to its
//! stdin, one line each, in milliseconds of `CLOCK_MONOTONIC` (one clock for every process of
//! the machine). When the deadline arrives, or stdin closes without `done` (the supervisor
//! died), it sends SIGTERM to the command's process group, then SIGKILL after the grace
//! period. It exits 0 after `done`, and [`STOPPED`] when it had to stop the command.
//!
//! When the whole process tree is paused at once (a frozen container), the watchdog is paused
//! too; it stops the command as soon as it runs again, and only fencing (`BATON_FENCE`) can
//! protect what the command touched in between.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use rustix::process::{kill_process_group, test_kill_process_group, Pid, Signal};
use tokio::io::AsyncBufReadExt;

/// The exit status of a watchdog that stopped the command.
pub const STOPPED: u8 = 3;

#[derive(Debug, Args)]
pub struct WatchdogArgs {
    /// The command's process group.
    #[arg(long)]
    pgid: i32,
    /// The first deadline, in milliseconds of CLOCK_MONOTONIC.
    #[arg(long)]
    deadline: u64,
    /// How long SIGTERM has to work before SIGKILL.
    #[arg(long)]
    grace_ms: u64,
}

/// Now, in milliseconds of `CLOCK_MONOTONIC`, rounded down.
pub fn monotonic_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64) * 1000 + (t.tv_nsec as u64) / 1_000_000
}

/// `at` in milliseconds of `CLOCK_MONOTONIC`, rounded down (never later than `at`).
pub fn monotonic_ms_at(at: tokio::time::Instant) -> u64 {
    let (now, mono) = (tokio::time::Instant::now(), monotonic_ms());
    match at.checked_duration_since(now) {
        Some(ahead) => mono + ahead.as_millis() as u64,
        None => mono.saturating_sub(now.duration_since(at).as_millis() as u64 + 1),
    }
}

pub async fn run(args: WatchdogArgs) -> anyhow::Result<ExitCode> {
    let Some(pgid) = Pid::from_raw(args.pgid) else {
        anyhow::bail!("invalid process group {}", args.pgid);
    };
    // Ctrl-C reaches the supervisor's process group, this process included: only the
    // supervisor decides what happens then, so these signals are caught and ignored here.
    let _int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let _term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;

    let mut deadline = args.deadline;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        let left = Duration::from_millis(deadline.saturating_sub(monotonic_ms()));
        // A deadline that has passed wins over a renewal still in the pipe: stopping early is
        // safe, stopping late is not.
        tokio::select! {
            biased;
            () = tokio::time::sleep(left) => break,
            line = lines.next_line() => match line {
                Ok(Some(line)) if line.trim() == "done" => return Ok(ExitCode::SUCCESS),
                Ok(Some(line)) => {
                    if let Ok(ms) = line.trim().parse() {
                        deadline = ms;
                    }
                }
                // The supervisor is gone: nobody renews the lease any more.
                Ok(None) | Err(_) => break,
            },
        }
    }
    stop(pgid, Duration::from_millis(args.grace_ms)).await;
    Ok(ExitCode::from(STOPPED))
}

/// SIGTERM to the group, then SIGKILL once `grace` has passed if any of it is still there.
async fn stop(pgid: Pid, grace: Duration) {
    if kill_process_group(pgid, Signal::TERM).is_err() {
        return; // the group is gone already
    }
    let until = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < until {
        if test_kill_process_group(pgid).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = kill_process_group(pgid, Signal::KILL);
}
