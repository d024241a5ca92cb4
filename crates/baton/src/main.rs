//! The `baton` binary: `baton serve` runs a node; the other commands talk to one over HTTP.
//!
//! This crate only parses arguments, sets up logging and wires the library crates together.

mod cli;
mod client;
mod cluster;
mod config;
mod elect;
mod keys;
mod lease;
mod lock;
mod serve;
mod tls;
mod watchdog;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
