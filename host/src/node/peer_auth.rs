//! Peer authentication with the cluster secret: every request a node
//! sends to another (`/raft/*`: Raft RPCs, snapshot installs, segment and
//! catch-up fetches) carries `x-ramrod-peer: ID.UNIX_MS.MAC`, where MAC is
//! a blake3 keyed hash, under a key derived from the `cluster-secret`, of
//! the claimed node id, the time, the method and the path. A node accepts a
//! request whose MAC verifies (compared in constant time) and whose time is
//! within [`MAX_SKEW`] of its own clock; anything else is answered 401
//! before the body is read. The secret itself never travels.
//!
//! What it does not do: encrypt (traffic stays readable on the wire) or
//! bind a request to one node (any holder of the secret may claim any id).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::raft::NodeId;

/// The header peer requests carry.
pub const HEADER: &str = "x-ramrod-peer";

/// How far a request's time may be from the receiver's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(300);

/// The shortest cluster secret accepted.
pub const MIN_SECRET_CHARS: usize = 16;

const CONTEXT: &str = "ramrod 2026-12 cluster secret v1 peer requests";

/// A node's key for signing and checking peer requests.
#[derive(Clone)]
pub struct PeerAuth {
    key: [u8; 32],
    id: NodeId,
}

impl std::fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerAuth")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl PeerAuth {
    /// The key of node `id` in the cluster whose secret is `secret`.
    pub fn new(secret: &str, id: NodeId) -> Self {
        PeerAuth {
            key: blake3::derive_key(CONTEXT, secret.as_bytes()),
            id,
        }
    }

    fn mac(&self, id: NodeId, at_ms: u64, method: &str, path: &str) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(format!("{id}\n{at_ms}\n{method}\n{path}").as_bytes());
        h.finalize()
    }

    /// The header value for a request of `method` to `path`, now.
    pub fn sign(&self, method: &str, path: &str) -> String {
        let at = unix_ms();
        format!(
            "{}.{at}.{}",
            self.id,
            self.mac(self.id, at, method, path).to_hex()
        )
    }

    /// Checks a request's header; the node id it claims.
    ///
    /// # Errors
    /// Why the request is refused, for the 401's message.
    pub fn verify(
        &self,
        header: Option<&str>,
        method: &str,
        path: &str,
    ) -> Result<NodeId, &'static str> {
        let header =
            header.ok_or("a peer request needs the x-ramrod-peer header (the cluster secret)")?;
        let mut parts = header.splitn(3, '.');
        let (Some(id), Some(at), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("a malformed x-ramrod-peer header");
        };
        let (Ok(id), Ok(at), Ok(mac)) = (
            id.parse::<NodeId>(),
            at.parse::<u64>(),
            blake3::Hash::from_hex(mac),
        ) else {
            return Err("a malformed x-ramrod-peer header");
        };
        // `Hash` compares in constant time.
        if self.mac(id, at, method, path) != mac {
            return Err("the peer request is not signed with this cluster's secret");
        }
        if unix_ms().abs_diff(at) > MAX_SKEW.as_millis() as u64 {
            return Err("the peer request's time is more than 5 minutes from this node's clock");
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_requests_verify_and_others_do_not() {
        let a = PeerAuth::new("a cluster secret of some length", 2);
        let b = PeerAuth::new("a cluster secret of some length", 3);
        let h = a.sign("POST", "/raft/append");
        assert_eq!(b.verify(Some(&h), "POST", "/raft/append"), Ok(2));
        // Another path, method or secret; tampered, stale or missing.
        assert!(b.verify(Some(&h), "POST", "/raft/vote").is_err());
        assert!(b.verify(Some(&h), "GET", "/raft/append").is_err());
        let other = PeerAuth::new("another secret, also long enough", 3);
        assert!(other.verify(Some(&h), "POST", "/raft/append").is_err());
        let forged = h.replacen("2.", "1.", 1);
        assert!(b.verify(Some(&forged), "POST", "/raft/append").is_err());
        let stale_at = unix_ms() - 10 * 60 * 1000;
        let stale = format!(
            "2.{stale_at}.{}",
            a.mac(2, stale_at, "POST", "/raft/append").to_hex()
        );
        assert!(
            b.verify(Some(&stale), "POST", "/raft/append")
                .unwrap_err()
                .contains("5 minutes")
        );
        assert!(b.verify(None, "POST", "/raft/append").is_err());
        assert!(b.verify(Some("x.y"), "POST", "/raft/append").is_err());
        assert!(b.verify(Some("2.1.zz"), "POST", "/raft/append").is_err());
    }
}
