//! TLS for a node (`[tls]`): its listener serves HTTPS to clients and
//! peers, and its requests to peers present its certificate (mutual TLS).
//!
//! One cluster CA signs every node's certificate ([`make_ca`],
//! [`make_node_cert`]; `ramrod certs init|node`). A node certificate names
//! the node by a DNS name, [`node_name`] (`node-ID.ramrod`), beside the
//! hosts clients and peers reach it by. A node:
//! - accepts a TLS client only with a certificate the CA signed, or with
//!   none (a client of the KV and admin API, which has its own bearer
//!   token); the handshake refuses any other certificate;
//! - serves `/raft/*` only to a client whose certificate is the node it
//!   claims to be ([`cert_names_node`], checked in `peer_auth`);
//! - checks a peer's server certificate against the CA and the address it
//!   dials, as any HTTPS client does.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use crate::config::TlsConfig;
use crate::raft::NodeId;

/// The DNS name in node `id`'s certificate that says which node it is.
pub fn node_name(id: NodeId) -> String {
    format!("node-{id}.ramrod")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Whether `cert` (a certificate the CA signed: the handshake checked
/// that) names node `id`.
pub fn cert_names_node(cert: &CertificateDer<'_>, id: NodeId) -> bool {
    let Ok(name) = ServerName::try_from(node_name(id)) else {
        return false;
    };
    rustls::server::ParsedCertificate::try_from(cert)
        .and_then(|parsed| rustls::client::verify_server_name(&parsed, &name))
        .is_ok()
}

/// A node's TLS setup, loaded from its `[tls]` files.
#[derive(Clone)]
pub struct NodeTls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls").finish_non_exhaustive()
    }
}

fn read_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("`tls.{what}` {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "`tls.{what}` {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

impl NodeTls {
    /// Loads node `id`'s CA, certificate and key, and checks that the
    /// certificate is node `id`'s, signed by the CA and valid now.
    ///
    /// # Errors
    /// A message naming the file and what is wrong with it.
    pub fn load(files: &TlsConfig, id: NodeId) -> Result<NodeTls, String> {
        let ca = read_certs("ca-file", &files.ca_file)?;
        let chain = read_certs("cert-file", &files.cert_file)?;
        let key = PrivateKeyDer::from_pem_file(&files.key_file)
            .map_err(|e| format!("`tls.key-file` {}: {e}", files.key_file.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in ca {
            roots.add(cert).map_err(|e| {
                format!(
                    "`tls.ca-file` {}: not a CA certificate: {e}",
                    files.ca_file.display()
                )
            })?;
        }
        let roots = Arc::new(roots);
        let provider = provider();
        let own = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| format!("`tls.ca-file` {}: {e}", files.ca_file.display()))?;
        let name = ServerName::try_from(node_name(id)).expect("a node name is a DNS name");
        rustls::client::danger::ServerCertVerifier::verify_server_cert(
            own.as_ref(),
            &chain[0],
            &chain[1..],
            &name,
            &[],
            UnixTime::now(),
        )
        .map_err(|e| {
            format!(
                "`tls.cert-file` {} is not a valid certificate of node {id} under `tls.ca-file` \
                 {}: {e} (make one with `ramrod certs node --id {id}`)",
                files.cert_file.display(),
                files.ca_file.display()
            )
        })?;
        let bad_key = |e: rustls::Error| {
            format!(
                "`tls.key-file` {}: {e} (is it the key of `tls.cert-file`?)",
                files.key_file.display()
            )
        };
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("`tls.ca-file` {}: {e}", files.ca_file.display()))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(bad_key)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(bad_key)?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(bad_key)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(bad_key)?;
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(NodeTls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    /// An HTTP client builder that speaks only HTTPS, trusts only the
    /// cluster CA and presents this node's certificate.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .use_preconfigured_tls((*self.client).clone())
            .https_only(true)
    }

    /// The listener: TLS over `tcp`.
    pub fn listener(&self, tcp: TcpListener) -> std::io::Result<TlsListener> {
        TlsListener::new(tcp, tokio_rustls::TlsAcceptor::from(self.server.clone()))
    }
}

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at most; more connections wait to be accepted.
const MAX_HANDSHAKES: usize = 256;

/// A TLS listener for `axum::serve`: accepts TCP connections and runs
/// their handshakes in tasks of their own (so a slow client holds up no
/// other), handing over the connections that complete one.
pub struct TlsListener {
    local: SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn new(tcp: TcpListener, acceptor: tokio_rustls::TlsAcceptor) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let accepting = tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, as
                        // axum's own listener does.
                        tracing::warn!(error = %e, "accepting a TLS connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "a TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "a TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            local,
            ready,
            accepting,
        })
    }
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accepting task ended (it does not, but for its abort).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// What a connection tells about its client: the certificate it presented
/// over TLS, if any (the handshake checked it against the cluster CA).
#[derive(Clone, Debug, Default)]
pub struct PeerCert(pub Option<CertificateDer<'static>>);

impl Connected<IncomingStream<'_, TlsListener>> for PeerCert {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        PeerCert(
            stream
                .io()
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .cloned(),
        )
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for PeerCert {
    fn connect_info(_: IncomingStream<'_, TcpListener>) -> Self {
        PeerCert(None)
    }
}

impl Connected<IncomingStream<'_, tokio::net::UnixListener>> for PeerCert {
    fn connect_info(_: IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        PeerCert(None)
    }
}

/// A cluster CA, in PEM: its certificate and its private key.
#[derive(Clone, Debug)]
pub struct CaPem {
    /// The certificate (every node and client trusts it).
    pub cert: String,
    /// The private key (keep it off the nodes: it signs certificates).
    pub key: String,
}

/// A node's certificate and key, in PEM.
#[derive(Clone, Debug)]
pub struct NodePem {
    /// The certificate, signed by the CA.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

fn validity(params: &mut rcgen::CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // A day of slack for clocks behind the signer's.
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// Makes a cluster CA named `name`, valid for `days`.
///
/// # Errors
/// If the key or certificate cannot be made.
pub fn make_ca(name: &str, days: u32) -> Result<CaPem, String> {
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("ramrod cluster CA {name}"),
    );
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, days);
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok(CaPem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Makes node `id`'s certificate, signed by `ca`, for the `hosts` (names
/// or IP addresses) clients and peers reach it by, valid for `days`.
///
/// # Errors
/// If a host is not a DNS name or IP address, or `ca` does not parse.
pub fn make_node_cert(
    ca: &CaPem,
    id: NodeId,
    hosts: &[String],
    days: u32,
) -> Result<NodePem, String> {
    let ca_key = rcgen::KeyPair::from_pem(&ca.key).map_err(|e| format!("the CA key: {e}"))?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.cert, ca_key)
        .map_err(|e| format!("the CA certificate: {e}"))?;
    for host in hosts {
        if ServerName::try_from(host.as_str()).is_err() {
            return Err(format!(
                "host {host:?} is neither a DNS name nor an IP address"
            ));
        }
    }
    let mut names = vec![node_name(id)];
    names.extend(hosts.iter().cloned());
    let mut params =
        rcgen::CertificateParams::new(names).map_err(|e| format!("a host name: {e}"))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("ramrod node {id}"));
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
    Ok(NodePem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Writes `text` to `path` with mode `mode`, refusing to replace a file.
///
/// # Errors
/// If `path` exists or cannot be written.
pub fn write_new(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_certificates_name_their_node_only() {
        let ca = make_ca("test", 30).unwrap();
        let node = make_node_cert(&ca, 2, &["127.0.0.1".into(), "localhost".into()], 30).unwrap();
        let der = CertificateDer::from_pem_slice(node.cert.as_bytes()).unwrap();
        assert!(cert_names_node(&der, 2));
        assert!(!cert_names_node(&der, 3));
        assert!(!cert_names_node(&der, 22));
        assert!(make_node_cert(&ca, 2, &["not a host!".into()], 30).is_err());
    }

    #[test]
    fn loading_checks_the_files_and_names_the_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca("test", 30).unwrap();
        let other = make_ca("other", 30).unwrap();
        let node = make_node_cert(&ca, 1, &["127.0.0.1".into()], 30).unwrap();
        let foreign = make_node_cert(&other, 1, &["127.0.0.1".into()], 30).unwrap();
        let put = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let files = TlsConfig {
            ca_file: put("ca.pem", &ca.cert),
            cert_file: put("node-1.pem", &node.cert),
            key_file: put("node-1.key", &node.key),
        };
        NodeTls::load(&files, 1).unwrap();
        let e = NodeTls::load(&files, 2).unwrap_err();
        assert!(e.contains("not a valid certificate of node 2"), "{e}");
        let cases = [
            (
                TlsConfig {
                    cert_file: put("foreign.pem", &foreign.cert),
                    ..files.clone()
                },
                ["tls.cert-file", "foreign.pem"],
            ),
            (
                TlsConfig {
                    key_file: put("foreign.key", &foreign.key),
                    ..files.clone()
                },
                ["tls.key-file", "foreign.key"],
            ),
            (
                TlsConfig {
                    ca_file: put("empty.pem", ""),
                    ..files.clone()
                },
                ["tls.ca-file", "no PEM certificate"],
            ),
            (
                TlsConfig {
                    key_file: dir.path().join("missing.key"),
                    ..files.clone()
                },
                ["tls.key-file", "missing.key"],
            ),
        ];
        for (bad, words) in cases {
            let e = NodeTls::load(&bad, 1).unwrap_err();
            assert!(words.iter().all(|w| e.contains(w)), "{words:?}: {e}");
        }
    }
}
