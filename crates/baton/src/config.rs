//! `baton serve` settings: flags over the config file over defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use baton_api::{ApiConfig, AuthConfig, CredentialRequest};
use baton_core::{AccessPolicy, Secs};
use baton_engine::EngineConfig;
use serde::Deserialize;

use crate::cli::ServeArgs;
use crate::tls::{ClientAuth, TlsSettings};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7171";
pub const DEFAULT_DATA_DIR: &str = "./baton-data";
/// The file in the data directory that holds the root token written at first start.
pub const ROOT_TOKEN_FILE: &str = "root-token";
/// The audit trail's file in the data directory, unless configured.
const AUDIT_LOG: &str = "audit.log";
/// How far the clocks of the nodes may disagree, unless configured.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_millis(500);
/// The largest `max_clock_skew` accepted: beyond it, short leases could not be held at all.
const MAX_MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    /// `"500ms"`, `"1s"`: how far node clocks may disagree (part of the lease promise).
    max_clock_skew: Option<String>,
    /// The master key that wraps the data key (see the `keys` module).
    master_key_file: Option<PathBuf>,
    /// The master key being replaced, while a rotation is under way.
    previous_master_key_file: Option<PathBuf>,
    /// Credentials applied at start, by name.
    #[serde(default)]
    credentials: BTreeMap<String, CredentialRequest>,
    #[serde(default)]
    rotation: RawRotation,
    /// PEM certificate chain of the API; with `tls_key`, the API is served over HTTPS.
    tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    tls_key: Option<PathBuf>,
    /// PEM CA(s) that sign client certificates: turns on client-certificate authentication.
    tls_client_ca: Option<PathBuf>,
    /// `"optional"` or `"required"` (the default when `tls_client_ca` is set).
    tls_client_auth: Option<String>,
    /// `/metrics` without a token (default: it needs `admin`).
    #[serde(default)]
    metrics_open: bool,
    /// The audit trail's file, or `"off"` [default: DATA_DIR/audit.log].
    audit_log: Option<PathBuf>,
    /// Refuse a request whose audit line cannot be written.
    #[serde(default)]
    audit_required: bool,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    cluster: RawCluster,
}

/// `[cluster]`: membership of a cluster of several nodes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    node_id: Option<u64>,
    /// Where the other nodes connect; turns cluster mode on.
    peer_listen: Option<String>,
    /// The address the other nodes dial [default: the address bound].
    peer_advertise: Option<String>,
    /// A file holding the cluster secret (instead of BATON_CLUSTER_SECRET).
    secret_file: Option<PathBuf>,
    /// A snapshot is taken, and older log entries purged, after this many entries.
    snapshot_logs: Option<u64>,
}

/// `[auth]`: access policies, certificate subjects, limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    /// Access policies applied at every start, by name.
    #[serde(default)]
    policies: BTreeMap<String, AccessPolicy>,
    /// Client-certificate subjects and the access policy each one gets.
    #[serde(default)]
    certificates: BTreeMap<String, String>,
    /// Writes per second per token or certificate [default: 50].
    write_rate: Option<f64>,
    /// Writes in a burst per token or certificate [default: 100].
    write_burst: Option<f64>,
    /// The longest a request may take [default: 60s]; more than the 30 s long-poll waits.
    request_timeout: Option<Secs>,
}

impl RawAuth {
    fn auth_config(&self) -> anyhow::Result<AuthConfig> {
        let defaults = AuthConfig::default();
        let config = AuthConfig {
            certificates: self.certificates.clone(),
            write_rate: self.write_rate.unwrap_or(defaults.write_rate),
            write_burst: self.write_burst.unwrap_or(defaults.write_burst),
            request_timeout: self
                .request_timeout
                .map_or(defaults.request_timeout, Secs::as_std),
            ..defaults
        };
        anyhow::ensure!(
            config.write_rate > 0.0 && config.write_rate.is_finite(),
            "auth.write_rate must be a positive number"
        );
        anyhow::ensure!(
            config.write_burst >= 1.0 && config.write_burst.is_finite(),
            "auth.write_burst must be at least 1"
        );
        let longest_wait = ApiConfig::default().max_wait;
        anyhow::ensure!(
            config.request_timeout > longest_wait + Duration::from_secs(5),
            "auth.request_timeout must exceed {}s, the longest long-poll wait, by more than 5s",
            longest_wait.as_secs()
        );
        Ok(config)
    }
}

/// `[rotation]`: how the rotation engine paces issuer calls.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRotation {
    /// How long an open intent holds off other rotations of its credential; an issuer call
    /// whose outcome is unknown is retried only after it.
    intent_timeout: Option<Secs>,
    /// The first retry delay after a failed issuer call; doubled per failure, with jitter.
    backoff_base: Option<Secs>,
    /// The longest retry delay.
    backoff_max: Option<Secs>,
    /// The shortest time between two calls to one credential's oauth2 or exec issuer.
    min_interval: Option<Secs>,
}

impl RawRotation {
    fn engine_config(&self) -> anyhow::Result<EngineConfig> {
        let defaults = EngineConfig::default();
        let pick = |v: Option<Secs>, d| v.map_or(d, Secs::as_std);
        let config = EngineConfig {
            intent_timeout: pick(self.intent_timeout, defaults.intent_timeout),
            backoff_base: pick(self.backoff_base, defaults.backoff_base),
            backoff_max: pick(self.backoff_max, defaults.backoff_max),
            min_interval: pick(self.min_interval, defaults.min_interval),
        };
        anyhow::ensure!(
            !config.intent_timeout.is_zero(),
            "rotation.intent_timeout must be at least 1s"
        );
        anyhow::ensure!(
            !config.backoff_base.is_zero() && !config.min_interval.is_zero(),
            "rotation.backoff_base and rotation.min_interval must be at least 1s"
        );
        anyhow::ensure!(
            config.backoff_base <= config.backoff_max,
            "rotation.backoff_base must not exceed rotation.backoff_max"
        );
        Ok(config)
    }
}

/// Validated settings of a server.
#[derive(Debug)]
pub struct ServeConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    /// Lease holders are told to stop this much before their TTL ends.
    pub max_clock_skew: Duration,
    pub credentials: BTreeMap<String, CredentialRequest>,
    pub engine: EngineConfig,
    pub master_key_file: Option<PathBuf>,
    pub previous_master_key_file: Option<PathBuf>,
    /// `--new-root-token`: make a root token whatever tokens exist.
    pub new_root_token: bool,
    /// `None`: plain HTTP.
    pub tls: Option<TlsSettings>,
    /// Access policies applied at start, by name.
    pub policies: BTreeMap<String, AccessPolicy>,
    pub auth: AuthConfig,
    /// This node's id (1 for a single node).
    pub node_id: u64,
    /// `None`: a single node.
    pub cluster: Option<ClusterSettings>,
    pub snapshot_logs: u64,
}

/// How a cluster member reaches its peers.
#[derive(Debug)]
pub struct ClusterSettings {
    pub peer_listen: String,
    pub peer_advertise: Option<String>,
    /// Every peer request carries it; it also lets `baton cluster init` in.
    pub secret: baton_core::Secret,
}

/// The shortest cluster secret accepted.
const MIN_CLUSTER_SECRET: usize = 16;

/// `BATON_CLUSTER_SECRET`, when set and not empty.
pub fn cluster_secret_from_env() -> anyhow::Result<Option<baton_core::Secret>> {
    match std::env::var_os("BATON_CLUSTER_SECRET").filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => {
            let text = v
                .into_string()
                .map_err(|_| anyhow::anyhow!("BATON_CLUSTER_SECRET is not valid UTF-8"))?;
            Ok(Some(baton_core::Secret::new(text.trim())))
        }
    }
}

fn cluster_settings(
    raw: RawCluster,
    peer_listen: Option<String>,
    peer_advertise: Option<String>,
) -> anyhow::Result<Option<ClusterSettings>> {
    let Some(peer_listen) = peer_listen.or(raw.peer_listen) else {
        anyhow::ensure!(
            peer_advertise.is_none() && raw.peer_advertise.is_none(),
            "--peer-advertise (peer_advertise) needs --peer-listen (peer_listen)"
        );
        return Ok(None);
    };
    let secret = match cluster_secret_from_env()? {
        Some(secret) => secret,
        None => match &raw.secret_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the cluster secret file {}", path.display())
                })?;
                baton_core::Secret::new(text.trim())
            }
            None => anyhow::bail!(
                "a cluster node needs the cluster secret: set BATON_CLUSTER_SECRET, or \
                 cluster.secret_file in the config file, to the same value on every node"
            ),
        },
    };
    anyhow::ensure!(
        secret.expose().chars().count() >= MIN_CLUSTER_SECRET,
        "the cluster secret must be at least {MIN_CLUSTER_SECRET} characters long"
    );
    Ok(Some(ClusterSettings {
        peer_listen,
        peer_advertise: peer_advertise.or(raw.peer_advertise),
        secret,
    }))
}

impl ServeConfig {
    pub fn from_args(args: ServeArgs) -> anyhow::Result<ServeConfig> {
        let raw = match &args.config {
            Some(path) => read(path)?,
            None => RawConfig::default(),
        };
        let engine = raw
            .rotation
            .engine_config()
            .context("the config file's [rotation] settings are invalid")?;
        let max_clock_skew = match args.max_clock_skew.or(raw.max_clock_skew) {
            Some(text) => parse_skew(&text)?,
            None => DEFAULT_MAX_CLOCK_SKEW,
        };
        let tls = tls_settings(
            args.tls_cert.or(raw.tls_cert),
            args.tls_key.or(raw.tls_key),
            args.tls_client_ca.or(raw.tls_client_ca),
            args.tls_client_auth.or(raw.tls_client_auth),
        )?;
        let mut auth = raw
            .auth
            .auth_config()
            .context("the config file's [auth] settings are invalid")?;
        let data_dir: PathBuf = args
            .data_dir
            .or(raw.data_dir)
            .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
        auth.metrics_open = raw.metrics_open;
        auth.audit_required = raw.audit_required;
        auth.audit_log = match raw.audit_log {
            Some(path) if path.as_os_str() == "off" => None,
            Some(path) => Some(path),
            None => Some(data_dir.join(AUDIT_LOG)),
        };
        anyhow::ensure!(
            !(auth.audit_required && auth.audit_log.is_none()),
            "audit_required = true needs an audit_log"
        );
        let given_id = args.node_id.or(raw.cluster.node_id);
        let node_id = given_id.unwrap_or(1);
        anyhow::ensure!(node_id > 0, "node_id must be at least 1");
        let snapshot_logs = raw.cluster.snapshot_logs.unwrap_or(5000);
        anyhow::ensure!(
            snapshot_logs >= 10,
            "cluster.snapshot_logs must be at least 10"
        );
        let cluster = cluster_settings(raw.cluster, args.peer_listen, args.peer_advertise)?;
        anyhow::ensure!(
            cluster.is_none() || given_id.is_some(),
            "a cluster node needs its own id: give --node-id N (or cluster.node_id), different on \
             every node"
        );
        Ok(ServeConfig {
            node_id,
            cluster,
            snapshot_logs,
            engine,
            tls,
            policies: raw.auth.policies,
            auth,
            listen: args
                .listen
                .or(raw.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            data_dir,
            max_clock_skew,
            credentials: raw.credentials,
            new_root_token: args.new_root_token,
            master_key_file: raw.master_key_file,
            previous_master_key_file: raw.previous_master_key_file,
        })
    }
}

/// Checks that the TLS settings make sense together; the files are read later.
fn tls_settings(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    client_auth: Option<String>,
) -> anyhow::Result<Option<TlsSettings>> {
    let auth = match client_auth.as_deref() {
        None => None,
        Some(text) => Some(ClientAuth::parse(text).with_context(|| {
            format!("tls_client_auth: `{text}` is neither \"optional\" nor \"required\"")
        })?),
    };
    let (cert, key) = match (cert, key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => {
            anyhow::ensure!(
                client_ca.is_none() && auth.is_none(),
                "tls_client_ca and tls_client_auth need tls_cert and tls_key"
            );
            return Ok(None);
        }
        (Some(_), None) => anyhow::bail!("tls_cert is set but tls_key is not: give both"),
        (None, Some(_)) => anyhow::bail!("tls_key is set but tls_cert is not: give both"),
    };
    let client_ca = match (client_ca, auth) {
        (Some(ca), auth) => Some((ca, auth.unwrap_or(ClientAuth::Required))),
        (None, None) => None,
        (None, Some(_)) => anyhow::bail!("tls_client_auth needs tls_client_ca"),
    };
    Ok(Some(TlsSettings {
        cert,
        key,
        client_ca,
    }))
}

fn read(path: &Path) -> anyhow::Result<RawConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    from_toml(&text).with_context(|| format!("the config file {} is invalid", path.display()))
}

/// Parses TOML, with errors that give the line, column and reason but never quote the text:
/// the offending line may hold a secret.
pub fn from_toml<T: serde::de::DeserializeOwned>(text: &str) -> anyhow::Result<T> {
    toml::from_str(text).map_err(|e| {
        let at = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.chars().rev().take_while(|c| *c != '\n').count() + 1;
            format!("line {line}, column {column}: ")
        });
        anyhow::anyhow!("{}{}", at.unwrap_or_default(), e.message().trim_end())
    })
}

fn parse_skew(text: &str) -> anyhow::Result<Duration> {
    let skew = humantime::parse_duration(text.trim())
        .with_context(|| format!("max_clock_skew: `{text}` is not a duration (e.g. \"500ms\")"))?;
    if skew > MAX_MAX_CLOCK_SKEW {
        anyhow::bail!(
            "max_clock_skew: {text} is more than {}",
            humantime::format_duration(MAX_MAX_CLOCK_SKEW)
        );
    }
    Ok(skew)
}
