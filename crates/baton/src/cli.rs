//! Command-line arguments and what each command does.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::client::{Client, Remote};

/// baton keeps shared credentials fresh for fleets of stateless programs: it renews each
/// credential exactly once per rotation and serves the current token over HTTP. It also
/// hands out leases with fencing tokens, for locks and leader election.
#[derive(Debug, Parser)]
#[command(name = "baton", version, propagate_version = true)]
pub struct Cli {
    /// The server that client commands talk to (not used by `serve`).
    #[arg(
        long,
        env = "BATON_ADDR",
        default_value = "http://127.0.0.1:7171",
        global = true,
        value_name = "URL",
        help_heading = "Client options"
    )]
    addr: String,
    /// PEM CA certificate(s) to trust for an https:// server, besides the public roots.
    #[arg(
        long,
        env = "BATON_CA_CERT",
        global = true,
        value_name = "FILE",
        help_heading = "Client options"
    )]
    ca_cert: Option<PathBuf>,
    /// PEM client certificate to present to a server that asks for one (mTLS).
    #[arg(
        long,
        env = "BATON_CLIENT_CERT",
        global = true,
        value_name = "FILE",
        requires = "client_key",
        help_heading = "Client options"
    )]
    client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(
        long,
        env = "BATON_CLIENT_KEY",
        global = true,
        value_name = "FILE",
        requires = "client_cert",
        help_heading = "Client options"
    )]
    client_key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a baton server: a single node with its embedded store, or with --peer-listen a
    /// member of a cluster.
    Serve(ServeArgs),
    /// Create, inspect, rotate and delete credentials.
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// Print the current token of a credential (alone, so that `$(baton token NAME)` works).
    Token {
        /// The credential's name.
        name: String,
        /// Print every field as JSON: version, validity, `next`, `refresh_at`, revision.
        #[arg(long)]
        json: bool,
        /// How long to wait for a token when none can be served yet (for example "10s").
        #[arg(long, value_name = "DURATION")]
        wait: Option<String>,
    },
    /// Acquire, renew, release and show leases.
    #[command(subcommand)]
    Lease(crate::lease::LeaseCommand),
    /// Run a command while holding a lease; stop it if the lease is lost (exit status 75).
    Lock(crate::lock::LockArgs),
    /// Campaign for leadership; print each change of leader as a line, until SIGINT/SIGTERM.
    Elect(crate::elect::ElectArgs),
    /// Print the current leader and fence (exit status 3 when there is none).
    Leader(crate::elect::LeaderArgs),
    /// Make a cluster of several nodes, change its members, show its state.
    #[command(subcommand)]
    Cluster(crate::cluster::ClusterCommand),
    /// Manage access tokens and access policies (needs `admin`).
    #[command(subcommand)]
    Auth(AuthCommand),
    #[command(name = "__watchdog", hide = true)]
    Watchdog(crate::watchdog::WatchdogArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:7171].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Directory for the data file [default: ./baton-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML file with the same settings, plus credentials applied at start.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// How far node clocks may disagree, e.g. "500ms" [default: 500ms]. Lease holders are
    /// told to stop this much (and a margin) before their TTL ends.
    #[arg(long, value_name = "DURATION")]
    pub max_clock_skew: Option<String>,
    /// Create a new root token and write it to DATA_DIR/root-token, even if admin tokens
    /// exist: the way back in when every admin token is lost.
    #[arg(long)]
    pub new_root_token: bool,
    /// PEM certificate (then its chain) to serve the API over HTTPS; needs --tls-key.
    /// Reloaded on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert. Reloaded on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) that sign client certificates: turns on mTLS.
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Whether clients must present a certificate signed by --tls-client-ca: "optional" or
    /// "required" [default: required].
    #[arg(long, value_name = "MODE")]
    pub tls_client_auth: Option<String>,
    /// This node's id in a cluster: a number unique among its members [default: 1].
    #[arg(long, value_name = "N", help_heading = "Cluster options")]
    pub node_id: Option<u64>,
    /// Listen for the other nodes of a cluster here: turns cluster mode on. Needs the cluster
    /// secret (BATON_CLUSTER_SECRET or cluster.secret_file).
    #[arg(long, value_name = "ADDR", help_heading = "Cluster options")]
    pub peer_listen: Option<String>,
    /// The address the other nodes dial to reach --peer-listen [default: the address bound].
    #[arg(long, value_name = "ADDR", help_heading = "Cluster options")]
    pub peer_advertise: Option<String>,
}

#[derive(Debug, Subcommand)]
enum CredentialCommand {
    /// Create or replace a credential from a spec file (JSON or TOML).
    Put {
        /// The credential's name: 1 to 128 of A-Z a-z 0-9 . _ -
        name: String,
        /// The spec: `{"issuer": {...}, "policy": {...}}`, or the same in TOML (a file ending
        /// in `.toml`). `-` reads it from stdin, as JSON or TOML.
        #[arg(long, short, value_name = "SPEC")]
        file: PathBuf,
    },
    /// List credentials.
    List,
    /// Show a credential's issuer, policy, versions and rotation state (never its secrets).
    Show {
        /// The credential's name.
        name: String,
    },
    /// Delete a credential.
    Delete {
        /// The credential's name.
        name: String,
    },
    /// Rotate a credential now.
    Rotate {
        /// The credential's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuthCommand {
    /// Create, revoke and list access tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Create, show, list and delete access policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token; it is printed once, with its accessor (for revoke and the audit log).
    Create {
        /// The access policy the token gets (`root`: every capability).
        #[arg(long, value_name = "NAME")]
        policy: String,
        /// How long the token is valid, e.g. "30d" [default: until revoked].
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
        /// A note shown by `list`, e.g. the worker's name.
        #[arg(long, value_name = "TEXT")]
        name: Option<String>,
    },
    /// Revoke the token with this accessor.
    Revoke {
        /// The accessor `create` printed (or `list` shows).
        accessor: String,
    },
    /// List tokens: accessors, policies and expiry (never the tokens).
    List,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Create or replace an access policy from a file (JSON or TOML): `{"rules": [{"pattern":
    /// "partner-*", "capabilities": ["read-token"]}]}`.
    Put {
        /// The policy's name.
        name: String,
        /// The spec; `-` reads it from stdin.
        #[arg(long, short, value_name = "SPEC")]
        file: PathBuf,
    },
    /// List access policy names.
    List,
    /// Show an access policy's rules.
    Show {
        /// The policy's name.
        name: String,
    },
    /// Delete an access policy; tokens that name it can no longer do anything.
    Delete {
        /// The policy's name.
        name: String,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let remote = Remote {
        addr: cli.addr,
        ca_cert: cli.ca_cert,
        client_cert: cli.client_cert,
        client_key: cli.client_key,
    };
    let client = || Client::new(&remote);
    match cli.command {
        Command::Serve(args) => crate::serve::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Token {
            ref name,
            json,
            ref wait,
        } => client()?.token(name, json, wait.as_deref()).await,
        Command::Lease(cmd) => crate::lease::run(&remote, cmd).await,
        Command::Lock(args) => crate::lock::run(&remote, args).await,
        Command::Elect(args) => crate::elect::elect(&remote, args).await,
        Command::Leader(args) => crate::elect::leader(&remote, args).await,
        Command::Watchdog(args) => crate::watchdog::run(args).await,
        Command::Cluster(cmd) => crate::cluster::run(&remote, cmd).await,
        Command::Auth(AuthCommand::Token(ref cmd)) => match cmd {
            TokenCommand::Create { policy, ttl, name } => {
                client()?
                    .token_create(policy, ttl.as_deref(), name.as_deref())
                    .await
            }
            TokenCommand::Revoke { accessor } => client()?.token_revoke(accessor).await,
            TokenCommand::List => client()?.token_list().await,
        },
        Command::Auth(AuthCommand::Policy(ref cmd)) => match cmd {
            PolicyCommand::Put { name, file } => client()?.policy_put(name, file).await,
            PolicyCommand::List => client()?.policy_list().await,
            PolicyCommand::Show { name } => client()?.policy_show(name).await,
            PolicyCommand::Delete { name } => client()?.policy_delete(name).await,
        },
        Command::Credential(ref cmd) => match cmd {
            CredentialCommand::Put { name, file } => client()?.put(name, file).await,
            CredentialCommand::List => client()?.list().await,
            CredentialCommand::Show { name } => client()?.show(name).await,
            CredentialCommand::Delete { name } => client()?.delete(name).await,
            CredentialCommand::Rotate { name } => client()?.rotate(name).await,
        },
    }
}
