//! `baton serve`: start a node, its rotation engine and the HTTP API; stop on SIGINT/SIGTERM.
//!
//! The API is served over plain HTTP by axum, or over HTTPS by [`crate::tls`] when a
//! certificate and key are configured; then SIGHUP reloads them. SIGHUP also reads the master
//! key file again and rotates the master key when it changed ([`crate::keys`]).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use baton_api::ApiConfig;
use baton_core::{Op, ROOT_POLICY};
use baton_engine::Engine;
use baton_raft::{Node, NodeConfig};
use tracing_subscriber::EnvFilter;

use crate::cli::ServeArgs;
use crate::config::{ServeConfig, ROOT_TOKEN_FILE};
use crate::tls::{CertResolver, Tls, TlsSettings};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging();
    let mut config = ServeConfig::from_args(args)?;

    // Read the TLS files before anything else: a bad file should fail before the port is taken.
    let tls = match &config.tls {
        Some(settings) => Some(Tls::load(settings).context("cannot set up TLS")?),
        None => None,
    };

    // Bind first: a busy port should fail before anything is written.
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener
        .local_addr()
        .context("reading the listening address")?;

    let (master_keys, key_source) = crate::keys::load(
        &config.data_dir,
        config.master_key_file.as_deref(),
        config.previous_master_key_file.as_deref(),
    )?;
    if let crate::keys::Source::File {
        path,
        generated: true,
    } = &key_source
    {
        tracing::warn!(path = %path.display(), master_key = %master_keys.current.id(),
            "generated a master key beside the data; keep a copy elsewhere, or give one with \
             BATON_MASTER_KEY or master_key_file");
    }
    let mut node_config = NodeConfig::new(config.node_id, config.data_dir.clone(), master_keys);
    node_config.api_addr = addr.to_string();
    node_config.max_clock_skew = config.max_clock_skew;
    node_config.snapshot_logs = config.snapshot_logs;
    let node = match &config.cluster {
        None => {
            node_config.advertise = addr.to_string();
            let node = Node::start(node_config)
                .await
                .context("cannot start the node")?;
            Arc::new(node)
        }
        Some(cluster) => start_member(node_config, cluster).await?,
    };
    tokio::spawn(rotate_master_key_on_sighup(node.clone(), key_source));
    let data_dir = std::fs::canonicalize(&config.data_dir).unwrap_or(config.data_dir.clone());
    tracing::info!(data_dir = %data_dir.display(), revision = node.state().revision(), "store opened");

    let setup = Setup {
        credentials: std::mem::take(&mut config.credentials),
        policies: std::mem::take(&mut config.policies),
        data_dir: config.data_dir.clone(),
        new_root_token: config.new_root_token,
    };
    if config.cluster.is_none() {
        setup.apply(&node).await?;
    } else {
        // A member applies the config file once it belongs to a cluster; until then there is
        // nowhere to write. Failures are logged: the node keeps serving.
        let node = node.clone();
        tokio::spawn(async move {
            node.wait_initialized().await;
            node.wait_leader(std::time::Duration::from_secs(30)).await;
            if let Err(e) = setup.apply(&node).await {
                tracing::error!("{e:#}");
            }
        });
    }
    for (subject, policy) in &config.auth.certificates {
        if node.state().read(|s| s.auth.policy(policy).is_none()) {
            tracing::warn!(%subject, %policy,
                "a certificate subject maps to an access policy that does not exist; it can do \
                 nothing until the policy is created");
        }
    }
    if let Some(path) = &config.auth.audit_log {
        tracing::info!(path = %path.display(), required = config.auth.audit_required, "audit log");
    }

    let engine = Engine::start(node.clone(), config.engine.clone());
    let api = ApiConfig {
        max_clock_skew: config.max_clock_skew,
        auth: config.auth,
        ..ApiConfig::default()
    };
    tracing::debug!(
        max_clock_skew_ms = api.max_clock_skew.as_millis() as u64,
        "lease settings"
    );
    let app = baton_api::router(engine, api);

    let shutdown = shutdown_signal();
    match tls {
        None => {
            tracing::info!(
                "baton {} listening on http://{addr}",
                env!("CARGO_PKG_VERSION")
            );
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
                .context("the HTTP server failed")?;
        }
        Some(tls) => {
            let loaded = tls.resolver.loaded();
            tracing::info!(
                subject = %loaded.subject,
                fingerprint = %loaded.fingerprint,
                client_auth = config.tls.as_ref().map_or("none", TlsSettings::client_auth_name),
                "TLS certificate loaded"
            );
            reload_on_sighup(tls.resolver.clone())?;
            tracing::info!(
                "baton {} listening on https://{addr}",
                env!("CARGO_PKG_VERSION")
            );
            crate::tls::serve(listener, app, tls.config, shutdown).await;
        }
    }

    node.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Re-reads the certificate and key on every SIGHUP; a bad file is logged and the certificate
/// in use is kept. Connections already open are not touched either way.
fn reload_on_sighup(resolver: Arc<CertResolver>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let resolver = resolver.clone();
            match tokio::task::spawn_blocking(move || resolver.reload()).await {
                Ok(Ok(loaded)) => tracing::info!(
                    subject = %loaded.subject,
                    fingerprint = %loaded.fingerprint,
                    "SIGHUP: TLS certificate reloaded"
                ),
                Ok(Err(e)) => tracing::warn!(
                    error = %e,
                    "SIGHUP: TLS certificate not reloaded, the previous one stays in use"
                ),
                Err(e) => tracing::warn!(error = %e, "SIGHUP: the TLS reload failed"),
            }
        }
    });
    Ok(())
}

/// What the config file asks of the state at start.
struct Setup {
    credentials: std::collections::BTreeMap<String, baton_api::CredentialRequest>,
    policies: std::collections::BTreeMap<String, baton_core::AccessPolicy>,
    data_dir: std::path::PathBuf,
    new_root_token: bool,
}

impl Setup {
    async fn apply(self, node: &Node) -> anyhow::Result<()> {
        for (name, request) in self.credentials {
            baton_api::put_credential(node, &name, request)
                .await
                .map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.code))
                .with_context(|| {
                    format!("the config file's credential `{name}` was not applied")
                })?;
        }
        for (name, policy) in self.policies {
            baton_api::put_access_policy(node, &name, policy)
                .await
                .map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.code))
                .with_context(|| {
                    format!("the config file's access policy `{name}` was not applied")
                })?;
        }
        // In a cluster, the first root token is made by the node that leads once the cluster
        // exists (the one `baton cluster init` initialized); the others leave it be.
        if self.new_root_token || node.is_leader() {
            ensure_root_token(node, &self.data_dir, self.new_root_token).await?;
        }
        Ok(())
    }
}

/// Starts a cluster member: its peer listener, then the node on the HTTP peer network.
async fn start_member(
    mut node_config: NodeConfig,
    cluster: &crate::config::ClusterSettings,
) -> anyhow::Result<Arc<Node>> {
    use axum::serve::ListenerExt;
    let peer_listener = tokio::net::TcpListener::bind(&cluster.peer_listen)
        .await
        .with_context(|| format!("cannot listen for peers on {}", cluster.peer_listen))?;
    let peer_addr = peer_listener
        .local_addr()
        .context("reading the peer listening address")?;
    node_config.advertise = cluster
        .peer_advertise
        .clone()
        .unwrap_or_else(|| peer_addr.to_string());
    let id = node_config.node_id;
    let advertise = node_config.advertise.clone();
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(std::time::Duration::from_secs(30))
        .build()
        .context("cannot build the peer HTTP client")?;
    let network = baton_raft::http::HttpNetwork::new(client, false, cluster.secret.clone());
    let node = Node::start_cluster(node_config, network)
        .await
        .context("cannot start the node")?;
    // The store must belong to this node before peers are answered.
    let members = node.recorded_members().await;
    if members.is_empty() {
        tracing::info!(
            node = id,
            "this node belongs to no cluster yet: run `baton cluster init {advertise}` to make \
             it the first member, or `baton cluster join {advertise}` against a member to add it"
        );
    } else if let Some(recorded) = members.get(&id) {
        if *recorded != advertise {
            node.shutdown().await;
            anyhow::bail!(
                "the cluster knows node {id} at the peer address {recorded}, but this node \
                 would be reached at {advertise}: start it with --peer-listen (or \
                 --peer-advertise) {recorded}, or remove it from the cluster and join it again \
                 with an empty data directory"
            );
        }
    } else if let Some((owner, _)) = members.iter().find(|(_, addr)| **addr == advertise) {
        node.shutdown().await;
        anyhow::bail!(
            "this data directory belongs to node {owner} (peer address {advertise}), not to \
             node {id}: start it with --node-id {owner}"
        );
    } else {
        tracing::warn!(
            node = id,
            "this node was removed from its cluster: it takes part in nothing and its data may \
             be stale; to bring it back, delete its data directory and join it again"
        );
    }
    let peers = baton_raft::http::router(node.clone(), cluster.secret.clone());
    let listener = peer_listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, peers).await {
            tracing::error!(error = %e, "the peer listener failed");
        }
    });
    tracing::info!(node = id, "listening for peers on {peer_addr}");
    Ok(node)
}

/// When no live token can administer baton (a first start, or every admin token revoked or
/// expired), or when `forced`, creates a root token and writes it to `DATA_DIR/root-token`
/// with mode 0600. The token itself is never logged.
async fn ensure_root_token(node: &Node, data_dir: &Path, forced: bool) -> anyhow::Result<()> {
    let now = node.now();
    let admin_exists = node.state().read(|s| {
        s.auth.tokens.values().any(|t| {
            !t.is_expired(now)
                && s.auth
                    .policy(&t.policy)
                    .is_some_and(|p| p.allows(baton_core::Capability::Admin, "*"))
        })
    });
    if admin_exists && !forced {
        return Ok(());
    }
    let created = baton_api::create_token(node, ROOT_POLICY, None, "root")
        .await
        .map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.code))
        .context("cannot create the root token")?;
    let path = data_dir.join(ROOT_TOKEN_FILE);
    if let Err(e) = write_private(&path, created.token.expose()) {
        // A root token nobody can read is of no use: withdraw it, so that the next start
        // makes another one.
        let _ = node
            .propose(Op::RevokeToken {
                accessor: created.accessor.clone(),
            })
            .await;
        return Err(e)
            .with_context(|| format!("cannot write the root token to {}", path.display()));
    }
    tracing::info!(
        path = %path.display(),
        accessor = %created.accessor,
        "created a root token and wrote it to the data directory (mode 0600)"
    );
    Ok(())
}

/// Writes `text` to `path` readable by the owner only, replacing any earlier file whole.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn init_logging() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,openraft=warn"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// SIGHUP: read the master key file again, and re-wrap the data key if it changed.
async fn rotate_master_key_on_sighup(node: Arc<Node>, source: crate::keys::Source) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP");
            return;
        }
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP received");
        crate::keys::rotate(node.keyring(), &source);
    }
}

/// The next delivery of `signal`; never, when it could not be listened for.
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Resolves on SIGINT or SIGTERM. Both are listened for from the moment this is called, so a
/// signal sent as soon as the server says it listens is never missed.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for {name}");
            None
        }
    };
    let mut int = listen(SignalKind::interrupt(), "SIGINT");
    let mut term = listen(SignalKind::terminate(), "SIGTERM");
    async move {
        tokio::select! {
            () = received(int.as_mut()) => tracing::info!("SIGINT received, shutting down"),
            () = received(term.as_mut()) => tracing::info!("SIGTERM received, shutting down"),
        }
    }
}
