//! `baton serve`: start a node, its rotation engine and the HTTP API; stop on SIGINT/SIGTERM.
//!
//! The API is served over plain HTTP by axum, or over HTTPS by [`crate::tls`] when a
//! certificate and key are configured; then SIGHUP reloads them. SIGHUP also reads the master
//! key file again and rotates the master key when it changed ([`crate::keys`]).

use std::sync::Arc;

use anyhow::Context;
use baton_api::ApiConfig;
use baton_engine::Engine;
use baton_raft::{Node, NodeConfig};
use tracing_subscriber::EnvFilter;

use crate::cli::ServeArgs;
use crate::config::ServeConfig;
use crate::tls::{CertResolver, Tls, TlsSettings};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging();
    let config = ServeConfig::from_args(args)?;

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
    let node = Node::start(NodeConfig {
        node_id: 1,
        data_dir: config.data_dir.clone(),
        advertise: addr.to_string(),
        master_keys,
    })
    .await
    .context("cannot start the node")?;
    let node = Arc::new(node);
    tokio::spawn(rotate_master_key_on_sighup(node.clone(), key_source));
    let data_dir = std::fs::canonicalize(&config.data_dir).unwrap_or(config.data_dir.clone());
    tracing::info!(data_dir = %data_dir.display(), revision = node.state().revision(), "store opened");

    for (name, request) in config.credentials {
        baton_api::put_credential(&node, &name, request)
            .await
            .map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.code))
            .with_context(|| format!("the config file's credential `{name}` was not applied"))?;
    }

    let engine = Engine::start(node.clone(), config.engine.clone());
    let api = ApiConfig {
        max_clock_skew: config.max_clock_skew,
        ..ApiConfig::default()
    };
    tracing::debug!(
        max_clock_skew_ms = api.max_clock_skew.as_millis() as u64,
        "lease settings"
    );
    let app = baton_api::router(engine, api);

    match tls {
        None => {
            tracing::info!(
                "baton {} listening on http://{addr}",
                env!("CARGO_PKG_VERSION")
            );
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
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
            crate::tls::serve(listener, app, tls.config, shutdown_signal()).await;
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

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}
