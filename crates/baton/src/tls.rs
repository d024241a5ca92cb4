//! TLS for the HTTP API: certificate loading, reload on SIGHUP, client certificates, and the
//! accept loop that serves the API's `Router` on each TLS connection.
//!
//! ```text
//!  TcpListener ──accept──▶ TlsAcceptor (ServerConfig) ──▶ hyper http1 ──▶ axum Router
//!                              │ server cert: CertResolver (swapped on SIGHUP)
//!                              │ client cert: WebPkiClientVerifier (optional or required)
//!                              ▼
//!                   PeerCertificate { subject } inserted into every request
//! ```
//!
//! The certificate and key are held behind a [`ResolvesServerCert`]: a reload replaces what
//! new handshakes get, while connections already open keep the session they negotiated. The
//! client CA is read once at start; changing it needs a restart, because rustls hands the CA's
//! names out by reference and a verifier cannot swap them under a running handshake.
//!
//! Peer traffic between nodes does not exist yet; when the cluster transport is built it will
//! take its server and client configs from the same files through this module.

mod subject;

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use baton_api::PeerCertificate;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

pub use subject::subject;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether clients must present a certificate signed by the client CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// A client may present one; one that does not is served without a [`PeerCertificate`].
    Optional,
    /// A client without a valid certificate is refused at the handshake.
    Required,
}

impl ClientAuth {
    pub fn parse(text: &str) -> Option<ClientAuth> {
        match text {
            "optional" => Some(ClientAuth::Optional),
            "required" => Some(ClientAuth::Required),
            _ => None,
        }
    }
}

/// The TLS settings of `baton serve`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM: the server certificate first, then its chain.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: the CA(s) that sign client certificates, with how they are asked for.
    pub client_ca: Option<(PathBuf, ClientAuth)>,
}

impl TlsSettings {
    /// `none`, `optional` or `required`, for the log.
    pub fn client_auth_name(&self) -> &'static str {
        match self.client_ca {
            None => "none",
            Some((_, ClientAuth::Optional)) => "optional",
            Some((_, ClientAuth::Required)) => "required",
        }
    }
}

/// Why a TLS file could not be used. Never carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} is not a PEM certificate file: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey { path: PathBuf },
    #[error("the key {} does not fit the certificate {}, or cannot be used: {reason}",
        key.display(), cert.display())]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("the client CA {} cannot be used: {reason}", path.display())]
    BadClientCa { path: PathBuf, reason: String },
    #[error("the TLS configuration cannot be built: {reason}")]
    Config { reason: String },
}

/// The crypto provider of every TLS config baton builds: ring, as reqwest uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads every certificate of a PEM file.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Reads the certificate chain and key, and checks that they belong together.
fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = read_certs(cert)?;
    // The PEM error is not shown: its text could quote part of the key file.
    let key_der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|_| TlsError::NoKey {
        path: key.to_owned(),
    })?;
    CertifiedKey::from_der(chain, key_der, &provider()).map_err(|e| TlsError::KeyMismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// A short SHA-256 fingerprint of a certificate, for logs.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(cert.as_ref());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Hands the current certificate to every handshake; [`CertResolver::reload`] swaps it.
pub struct CertResolver {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("fingerprint", &self.loaded().fingerprint)
            .finish_non_exhaustive()
    }
}

/// What was loaded, for the log.
#[derive(Debug)]
pub struct Loaded {
    pub subject: String,
    pub fingerprint: String,
}

impl CertResolver {
    pub fn load(cert: &Path, key: &Path) -> Result<CertResolver, TlsError> {
        let current = load_certified_key(cert, key)?;
        Ok(CertResolver {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(current)),
        })
    }

    /// Reads the files again. On an error the certificate in use is kept.
    pub fn reload(&self) -> Result<Loaded, TlsError> {
        let fresh = Arc::new(load_certified_key(&self.cert, &self.key)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(self.loaded())
    }

    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The subject and fingerprint of the certificate in use.
    pub fn loaded(&self) -> Loaded {
        let current = self.get();
        let leaf = &current.cert[0];
        Loaded {
            subject: subject(leaf).unwrap_or_else(|| "?".to_owned()),
            fingerprint: fingerprint(leaf),
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// A ready TLS setup: the rustls config for new connections and the resolver to reload.
#[derive(Debug)]
pub struct Tls {
    pub config: Arc<ServerConfig>,
    pub resolver: Arc<CertResolver>,
}

impl Tls {
    pub fn load(settings: &TlsSettings) -> Result<Tls, TlsError> {
        let resolver = Arc::new(CertResolver::load(&settings.cert, &settings.key)?);
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config {
                reason: e.to_string(),
            })?;
        let builder = match &settings.client_ca {
            None => builder.with_no_client_auth(),
            Some((path, auth)) => builder.with_client_cert_verifier(client_verifier(path, *auth)?),
        };
        let mut config = builder.with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            config: Arc::new(config),
            resolver,
        })
    }
}

fn client_verifier(
    path: &Path,
    auth: ClientAuth,
) -> Result<Arc<dyn tokio_rustls::rustls::server::danger::ClientCertVerifier>, TlsError> {
    let bad = |reason: String| TlsError::BadClientCa {
        path: path.to_owned(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let builder = match auth {
        ClientAuth::Optional => builder.allow_unauthenticated(),
        ClientAuth::Required => builder,
    };
    builder.build().map_err(|e| bad(e.to_string()))
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, then waits for the open
/// connections to finish their requests (idle keep-alive connections are closed).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: Arc<ServerConfig>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(config);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            serve_connection(tcp, remote, acceptor, app, watcher).await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Completes the handshake, then serves HTTP/1.1 requests on one connection.
async fn serve_connection(
    tcp: TcpStream,
    remote: std::net::SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let _ = tcp.set_nodelay(true);
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "TLS handshake timed out");
            return;
        }
    };

    // rustls keeps a client's certificates only once it has verified them.
    let peer = match stream.get_ref().1.peer_certificates() {
        Some([leaf, ..]) => match subject(leaf) {
            Some(subject) => {
                tracing::debug!(%remote, subject = %subject, "client certificate verified");
                Some(PeerCertificate { subject })
            }
            None => {
                tracing::warn!(%remote, "a verified client certificate has no readable subject");
                return;
            }
        },
        _ => None,
    };

    let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
        if let Some(peer) = &peer {
            req.extensions_mut().insert(peer.clone());
        }
        let mut app = app.clone();
        async move { app.call(req).await }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::trace!(%remote, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Extension;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };

    /// Writes `text` to `name` in `dir`.
    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The handler of the test router: the subject the TLS layer handed it, or `none`.
    async fn whoami(peer: Option<Extension<PeerCertificate>>) -> String {
        peer.map_or_else(|| "none".to_owned(), |Extension(p)| p.subject)
    }

    /// Every request of a connection whose client certificate was verified carries it as a
    /// `PeerCertificate`; requests of a client without one carry none; shutdown ends `serve`.
    #[tokio::test]
    async fn requests_carry_the_verified_client_subject() {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params.distinguished_name = rcgen::DistinguishedName::new();
        client_params
            .distinguished_name
            .push(DnType::OrganizationName, "fleet");
        client_params
            .distinguished_name
            .push(DnType::CommonName, "worker-1");
        let client_key = KeyPair::generate().unwrap();
        let client_cert = client_params.signed_by(&client_key, &ca).unwrap();

        let settings = TlsSettings {
            cert: write(dir.path(), "cert.pem", &server_cert.pem()),
            key: write(dir.path(), "key.pem", &server_key.serialize_pem()),
            client_ca: Some((write(dir.path(), "ca.pem", &ca.pem()), ClientAuth::Optional)),
        };
        let tls = Tls::load(&settings).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}/whoami", listener.local_addr().unwrap());
        let app = Router::new().route("/whoami", get(whoami));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, tls.config, async {
            let _ = stopped.await;
        }));

        let root = reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap();
        let identity = format!("{}\n{}", client_cert.pem(), client_key.serialize_pem());
        let worker = reqwest::Client::builder()
            .add_root_certificate(root.clone())
            .identity(reqwest::Identity::from_pem(identity.as_bytes()).unwrap())
            .build()
            .unwrap();
        let anonymous = reqwest::Client::builder()
            .add_root_certificate(root)
            .build()
            .unwrap();
        for _ in 0..2 {
            let subject = worker.get(&url).send().await.unwrap().text().await.unwrap();
            assert_eq!(subject, "CN=worker-1,O=fleet");
        }
        let subject = anonymous.get(&url).send().await.unwrap().text().await;
        assert_eq!(subject.unwrap(), "none");

        drop((worker, anonymous));
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serve ends after shutdown")
            .unwrap();
    }
}
