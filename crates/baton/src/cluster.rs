//! `baton cluster`: make a cluster, add and remove nodes, and show its state.
//!
//! `init` talks to the first node's peer listener with the cluster secret (no access token
//! exists before the cluster does); the other commands go through the API with an `admin`
//! token, and any node can take them.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use baton_raft::http::HttpNetwork;
use baton_raft::peer::{PeerReply, PeerRequest, Peers};
use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::{out, Client};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Make the node at PEER_ADDR the first member of a new cluster. Needs the cluster secret
    /// (BATON_CLUSTER_SECRET). The node then writes a root token to its data directory.
    Init {
        /// The first node's peer address (its --peer-listen).
        #[arg(value_name = "PEER_ADDR", default_value = "127.0.0.1:7172")]
        peer: String,
    },
    /// Add the node whose peer listener is at PEER_ADDR: it catches up as a learner, then
    /// becomes a voter. Ask any member (--addr), with an admin token (BATON_TOKEN).
    Join {
        /// The new node's peer address (its --peer-listen or --peer-advertise).
        #[arg(value_name = "PEER_ADDR")]
        peer: String,
    },
    /// Take node ID out of the cluster. Ask any member, with an admin token.
    Remove {
        /// The node's id (its --node-id).
        id: u64,
    },
    /// Show the members, the leader, the term, and each node's applied revision and lag.
    Status {
        /// Print the whole answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(remote: &crate::client::Remote, cmd: ClusterCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ClusterCommand::Init { peer } => init(&peer_addr(&peer)?).await,
        ClusterCommand::Join { peer } => {
            let peer = peer_addr(&peer)?;
            let client = Client::new(remote)?;
            let body = client
                .call(
                    client
                        .http
                        .post(client.url("/v1/cluster/join"))
                        .json(&json!({ "addr": peer })),
                )
                .await?;
            out(&format!(
                "node {} ({peer}) joined the cluster as a voter",
                body["joined"]["id"]
            ));
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Remove { id } => {
            let client = Client::new(remote)?;
            client
                .call(
                    client
                        .http
                        .delete(client.url(&format!("/v1/cluster/members/{id}"))),
                )
                .await?;
            out(&format!("node {id} removed from the cluster"));
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Status { json } => {
            let client = Client::new(remote)?;
            let body = client
                .call(client.http.get(client.url("/v1/cluster/status")))
                .await?;
            if json {
                out(&serde_json::to_string_pretty(&body)?);
            } else {
                print_status(&body);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Checks that `addr` is a peer address, HOST:PORT.
fn peer_addr(addr: &str) -> anyhow::Result<String> {
    let addr = addr.trim();
    if addr.contains("://") {
        anyhow::bail!("give the peer address as HOST:PORT, without a scheme (not `{addr}`)");
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(addr.to_owned())
        }
        _ => anyhow::bail!("`{addr}` is not a peer address: give HOST:PORT, e.g. 10.0.0.2:7172"),
    }
}

async fn init(peer: &str) -> anyhow::Result<ExitCode> {
    let secret = crate::config::cluster_secret_from_env()?.ok_or_else(|| {
        anyhow!("set BATON_CLUSTER_SECRET to the secret the nodes were started with")
    })?;
    let network = HttpNetwork::new(reqwest::Client::new(), false, secret);
    let reply = network
        .call(peer, PeerRequest::Init, Duration::from_secs(40))
        .await
        .with_context(|| format!("cannot initialize the node at {peer}"))?;
    match reply {
        PeerReply::Hello(info) => {
            out(&format!(
                "node {} initialized a new cluster and leads it; it writes a root token to \
                 root-token in its data directory. Add nodes with `baton cluster join PEER_ADDR`.",
                info.id
            ));
            Ok(ExitCode::SUCCESS)
        }
        other => Err(anyhow!("unexpected answer: {other:?}")),
    }
}

fn print_status(body: &Value) {
    let text = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    out(&format!(
        "leader: {}   term: {}   (asked node {})",
        text(&body["leader"]),
        text(&body["term"]),
        text(&body["node"])
    ));
    out(&format!(
        "{:<6} {:<11} {:<8} {:<22} {:<22} {:>9} {:>6} {:>10}",
        "NODE", "STATE", "VOTER", "PEER", "API", "APPLIED", "LAG", "CLOCK"
    ));
    let empty = Vec::new();
    for m in body["members"].as_array().unwrap_or(&empty) {
        let s = &m["status"];
        let state = if s.is_null() {
            "unreachable".to_owned()
        } else {
            text(&s["state"])
        };
        let clock = match (&s["clock_offset_ms"], s["clock_skewed"].as_bool()) {
            (Value::Number(ms), Some(true)) => format!("{ms}ms SKEW"),
            (Value::Number(ms), _) => format!("{ms}ms"),
            (_, Some(true)) => "SKEW".to_owned(),
            _ => "-".to_owned(),
        };
        out(&format!(
            "{:<6} {:<11} {:<8} {:<22} {:<22} {:>9} {:>6} {:>10}",
            text(&m["id"]),
            state,
            if m["voter"].as_bool() == Some(true) {
                "yes"
            } else {
                "learner"
            },
            text(&m["peer_addr"]),
            text(&s["api_addr"]),
            text(&s["applied"]),
            text(&m["lag"]),
            clock,
        ));
        if let Some(error) = m["error"].as_str() {
            out(&format!("       {error}"));
        }
    }
}
