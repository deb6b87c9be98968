//! Peer authentication: every request a node sends to another (`/raft/*`:
//! Raft RPCs, snapshot installs, segment and catch-up fetches) carries
//! `x-ramrod-peer`, naming the node that sends it, and the receiver checks
//! the claim in one or both of two ways:
//!
//! - **The cluster secret.** The header is `ID.UNIX_MS.MAC`, where MAC is a
//!   blake3 keyed hash, under a key derived from the `cluster-secret`, of
//!   the claimed node id, the time, the method and the path. A node accepts
//!   a request whose MAC verifies (compared in constant time) and whose
//!   time is within [`MAX_SKEW`] of its own clock. The secret never
//!   travels, but the traffic stays readable, and any holder of the secret
//!   may claim any id.
//! - **TLS** ([`super::tls`]). The request comes over mutual TLS with a
//!   certificate the cluster CA signed, and that certificate names the node
//!   the header claims (`ID`, or the signed form with a secret too).
//!
//! A refused request is answered 401 (no or bad credentials) or 403 (a
//! certificate of another node) before its body is read. The Raft handlers
//! then check that the RPC's sender is the authenticated node.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateDer;

use super::tls::NodeTls;
use crate::raft::NodeId;

/// The header peer requests carry.
pub const HEADER: &str = "x-ramrod-peer";

/// How far a request's time may be from the receiver's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(300);

/// The shortest cluster secret accepted.
pub const MIN_SECRET_CHARS: usize = 16;

const CONTEXT: &str = "ramrod 2026-12 cluster secret v1 peer requests";

/// How a node authenticates itself to its peers and checks them: a key
/// derived from the cluster secret, TLS, or both.
#[derive(Clone)]
pub struct PeerAuth {
    key: Option<[u8; 32]>,
    tls: Option<NodeTls>,
    id: NodeId,
}

impl std::fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerAuth")
            .field("id", &self.id)
            .field("secret", &self.key.is_some())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a peer request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// 401 (no or bad credentials) or 403 (the credentials of another node).
    pub status: u16,
    /// What was wrong, for the answer.
    pub reason: String,
}

fn unauthorized(reason: impl Into<String>) -> Refused {
    Refused {
        status: 401,
        reason: reason.into(),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl PeerAuth {
    /// The key of node `id` in the cluster whose secret is `secret` (no TLS).
    pub fn new(secret: &str, id: NodeId) -> Self {
        PeerAuth {
            key: Some(blake3::derive_key(CONTEXT, secret.as_bytes())),
            tls: None,
            id,
        }
    }

    /// Node `id`'s peer authentication with the cluster secret, TLS, both,
    /// or (`None`) neither: then it accepts no peer requests.
    pub fn setup(secret: Option<&str>, tls: Option<NodeTls>, id: NodeId) -> Option<Self> {
        if secret.is_none() && tls.is_none() {
            return None;
        }
        Some(PeerAuth {
            key: secret.map(|s| blake3::derive_key(CONTEXT, s.as_bytes())),
            tls,
            id,
        })
    }

    /// This node's TLS setup, if it has one.
    pub fn tls(&self) -> Option<&NodeTls> {
        self.tls.as_ref()
    }

    fn mac(key: &[u8; 32], id: NodeId, at_ms: u64, method: &str, path: &str) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(key);
        h.update(format!("{id}\n{at_ms}\n{method}\n{path}").as_bytes());
        h.finalize()
    }

    /// The header value for a request of `method` to `path`, now.
    pub fn sign(&self, method: &str, path: &str) -> String {
        let Some(key) = &self.key else {
            return self.id.to_string();
        };
        let at = unix_ms();
        format!(
            "{}.{at}.{}",
            self.id,
            Self::mac(key, self.id, at, method, path).to_hex()
        )
    }

    /// Checks a request's header and, with TLS, the client certificate its
    /// connection presented; the node id it claims.
    ///
    /// # Errors
    /// Why the request is refused, for the 401 or 403.
    pub fn verify(
        &self,
        header: Option<&str>,
        method: &str,
        path: &str,
        cert: Option<&CertificateDer<'_>>,
    ) -> Result<NodeId, Refused> {
        let header = header.ok_or_else(|| {
            unauthorized(if self.key.is_some() {
                "a peer request needs the x-ramrod-peer header (the cluster secret)"
            } else {
                "a peer request needs the x-ramrod-peer header"
            })
        })?;
        let id = match &self.key {
            Some(key) => Self::check_mac(key, header, method, path)?,
            None => header.parse::<NodeId>().map_err(|_| {
                unauthorized(
                    "a malformed x-ramrod-peer header (a signed one? this node has no cluster secret)",
                )
            })?,
        };
        if self.tls.is_some() {
            let Some(cert) = cert else {
                return Err(unauthorized(
                    "a peer request needs a TLS client certificate signed by the cluster CA",
                ));
            };
            if !super::tls::cert_names_node(cert, id) {
                return Err(Refused {
                    status: 403,
                    reason: format!(
                        "the client certificate is not node {id}'s (it does not name {})",
                        super::tls::node_name(id)
                    ),
                });
            }
        }
        Ok(id)
    }

    fn check_mac(
        key: &[u8; 32],
        header: &str,
        method: &str,
        path: &str,
    ) -> Result<NodeId, Refused> {
        let malformed = || unauthorized("a malformed x-ramrod-peer header");
        let mut parts = header.splitn(3, '.');
        let (Some(id), Some(at), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(malformed());
        };
        let (Ok(id), Ok(at), Ok(mac)) = (
            id.parse::<NodeId>(),
            at.parse::<u64>(),
            blake3::Hash::from_hex(mac),
        ) else {
            return Err(malformed());
        };
        // `Hash` compares in constant time.
        if Self::mac(key, id, at, method, path) != mac {
            return Err(unauthorized(
                "the peer request is not signed with this cluster's secret",
            ));
        }
        if unix_ms().abs_diff(at) > MAX_SKEW.as_millis() as u64 {
            return Err(unauthorized(
                "the peer request's time is more than 5 minutes from this node's clock",
            ));
        }
        Ok(id)
    }
}

/// An HTTP client for requests to peers: over TLS (only) when `auth` has
/// it, with a total `timeout` if given.
///
/// # Panics
/// If the client cannot be built (its TLS setup was checked when loaded).
pub fn http_client(auth: Option<&PeerAuth>, timeout: Option<Duration>) -> reqwest::Client {
    let mut b = match auth.and_then(PeerAuth::tls) {
        Some(tls) => tls.client_builder(),
        None => reqwest::Client::builder(),
    };
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    b.build().expect("a peer HTTP client builds")
}

/// The URL of `path` on the peer at `addr` (`host:port`): `https` when
/// `auth` has TLS.
pub fn url(auth: Option<&PeerAuth>, addr: &str, path: &str) -> String {
    let scheme = if auth.and_then(PeerAuth::tls).is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{addr}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_requests_verify_and_others_do_not() {
        let a = PeerAuth::new("a cluster secret of some length", 2);
        let b = PeerAuth::new("a cluster secret of some length", 3);
        let h = a.sign("POST", "/raft/append");
        assert_eq!(b.verify(Some(&h), "POST", "/raft/append", None), Ok(2));
        // Another path, method or secret; tampered, stale or missing.
        assert!(b.verify(Some(&h), "POST", "/raft/vote", None).is_err());
        assert!(b.verify(Some(&h), "GET", "/raft/append", None).is_err());
        let other = PeerAuth::new("another secret, also long enough", 3);
        assert!(
            other
                .verify(Some(&h), "POST", "/raft/append", None)
                .is_err()
        );
        let forged = h.replacen("2.", "1.", 1);
        assert!(
            b.verify(Some(&forged), "POST", "/raft/append", None)
                .is_err()
        );
        let stale_at = unix_ms() - 10 * 60 * 1000;
        let stale = format!(
            "2.{stale_at}.{}",
            PeerAuth::mac(a.key.as_ref().unwrap(), 2, stale_at, "POST", "/raft/append").to_hex()
        );
        assert!(
            b.verify(Some(&stale), "POST", "/raft/append", None)
                .unwrap_err()
                .reason
                .contains("5 minutes")
        );
        assert!(b.verify(None, "POST", "/raft/append", None).is_err());
        assert!(b.verify(Some("x.y"), "POST", "/raft/append", None).is_err());
        assert!(
            b.verify(Some("2.1.zz"), "POST", "/raft/append", None)
                .is_err()
        );
    }

    #[test]
    fn over_tls_the_certificate_must_name_the_claimed_node() {
        use rustls::pki_types::pem::PemObject;
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::node::tls::make_ca("t", 30).unwrap();
        let files = |id: NodeId| {
            let node =
                crate::node::tls::make_node_cert(&ca, id, &["127.0.0.1".into()], 30).unwrap();
            let put = |name: String, text: &str| {
                let p = dir.path().join(name);
                std::fs::write(&p, text).unwrap();
                p
            };
            let cfg = crate::config::TlsConfig {
                ca_file: put("ca.pem".into(), &ca.cert),
                cert_file: put(format!("{id}.pem"), &node.cert),
                key_file: put(format!("{id}.key"), &node.key),
            };
            (
                cfg,
                CertificateDer::from_pem_slice(node.cert.as_bytes()).unwrap(),
            )
        };
        let (cfg1, _) = files(1);
        let (_, cert2) = files(2);
        let tls = crate::node::tls::NodeTls::load(&cfg1, 1).unwrap();
        let one = PeerAuth::setup(None, Some(tls.clone()), 1).unwrap();
        let two = PeerAuth::setup(None, Some(tls), 2).unwrap();
        let h = two.sign("POST", "/raft/vote");
        assert_eq!(h, "2");
        assert_eq!(
            one.verify(Some(&h), "POST", "/raft/vote", Some(&cert2)),
            Ok(2)
        );
        // No certificate, or another node's: 401 and 403.
        assert_eq!(
            one.verify(Some(&h), "POST", "/raft/vote", None)
                .unwrap_err()
                .status,
            401
        );
        let e = one
            .verify(Some("3"), "POST", "/raft/vote", Some(&cert2))
            .unwrap_err();
        assert_eq!(e.status, 403);
        assert!(e.reason.contains("node 3"), "{e:?}");
        // A signed header where there is no secret.
        assert_eq!(
            one.verify(Some("2.1.ab"), "POST", "/raft/vote", Some(&cert2))
                .unwrap_err()
                .status,
            401
        );
        assert!(PeerAuth::setup(None, None, 1).is_none());
    }
}
