//! A fault-injecting TCP proxy for the process tests: network partitions
//! between nodes, and an unreachable service (a snapshot store).
//!
//! Every proxy of one [`Network`] follows the same rules. A proxy stands in
//! front of one node (its address is the one the cluster's membership holds
//! for that node, through `advertise` and `[[peers]]`), and tells which node
//! a connection comes from by the `x-ramrod-peer` header of the first
//! request on it: a node's peer client sends every request on a connection
//! with it, and clients send none, so clients always pass. A link from one
//! node to another is cut one way; a partition cuts both. A proxy in front
//! of a service (no node behind it) is cut as a whole with
//! [`Network::cut_all`].
//!
//! A cut is one of two kinds ([`Cut`]): connections refused (closed at once,
//! as by a stopped server), or packets dropped (connections held, nothing
//! passes: senders wait for their own timeouts; what was held goes on when
//! the cut heals, as a retransmission would). Plain HTTP only: with TLS the
//! proxy cannot read who sends.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::NodeId;

/// What the connections of a cut link see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Closed at once, new and established ones: a stopped server, or a
    /// router answering with resets.
    Refuse,
    /// Held open with nothing passing: lost packets. The sender waits for
    /// its timeout; what it sent goes on if the cut heals first.
    Drop,
}

#[derive(Clone, Debug, Default)]
struct Rules {
    /// Every connection through every proxy.
    all: Option<Cut>,
    /// From one node to another, one way.
    links: BTreeMap<(NodeId, NodeId), Cut>,
}

impl Rules {
    /// What a connection from `from` to the proxy in front of `to` sees
    /// (`None`: it passes).
    fn verdict(&self, from: Option<NodeId>, to: Option<NodeId>) -> Option<Cut> {
        if self.all.is_some() {
            return self.all;
        }
        match (from, to) {
            (Some(f), Some(t)) => self.links.get(&(f, t)).copied(),
            _ => None,
        }
    }
}

/// The rules a set of [`Proxy`]s follows, and the thread their connections
/// run on (it ends when the network and its proxies are dropped). Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct Network {
    rules: Arc<watch::Sender<Rules>>,
    runtime: tokio::runtime::Handle,
    _stop: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl Network {
    /// A network where everything passes.
    ///
    /// # Errors
    /// If its thread or runtime cannot be made.
    pub fn new() -> io::Result<Network> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Network {
            rules: Arc::new(watch::channel(Rules::default()).0),
            runtime: handle,
            _stop: Arc::new(stop),
        })
    }

    /// A proxy on a fresh loopback port forwarding to `upstream`, in front
    /// of node `node` (or of a service, with `None`).
    ///
    /// # Errors
    /// If no port can be bound.
    pub fn proxy(&self, upstream: SocketAddr, node: Option<NodeId>) -> io::Result<Proxy> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let rules = self.rules.subscribe();
        let task = self.runtime.spawn(async move {
            let listener = match TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "fault proxy: the listener does not register");
                    return;
                }
            };
            loop {
                match listener.accept().await {
                    Ok((conn, _)) => {
                        tokio::spawn(relay(conn, upstream, node, rules.clone()));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
        Ok(Proxy {
            addr,
            task,
            _network: self.clone(),
        })
    }

    /// Cuts the link from node `from` to node `to` (one way: `to`'s
    /// requests to `from` still pass).
    pub fn cut(&self, from: NodeId, to: NodeId, how: Cut) {
        self.rules.send_modify(|r| {
            r.links.insert((from, to), how);
        });
    }

    /// Cuts node `id` off from every node in `others`, both ways.
    pub fn isolate(&self, id: NodeId, others: impl IntoIterator<Item = NodeId>, how: Cut) {
        self.rules.send_modify(|r| {
            for o in others.into_iter().filter(|&o| o != id) {
                r.links.insert((id, o), how);
                r.links.insert((o, id), how);
            }
        });
    }

    /// Cuts every connection through every proxy (a service that is down).
    pub fn cut_all(&self, how: Cut) {
        self.rules.send_modify(|r| r.all = Some(how));
    }

    /// Heals every cut.
    pub fn heal(&self) {
        self.rules.send_replace(Rules::default());
    }
}

/// A proxy of a [`Network`]; stops accepting when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    _network: Network,
}

impl Proxy {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The longest request head read to find the sender.
const MAX_HEAD: usize = 64 << 10;

/// The sender named by the first request's `x-ramrod-peer` header (its
/// value is `ID` or `ID.MS.MAC`), reading the head into `head`. `Err` if
/// the connection ends first.
async fn read_head(conn: &mut TcpStream, head: &mut Vec<u8>) -> io::Result<Option<NodeId>> {
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(head);
    let header = crate::node::peer_auth::HEADER;
    Ok(text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case(header) {
            return None;
        }
        let value = value.trim();
        value.split('.').next()?.parse().ok()
    }))
}

/// One connection: learn its sender, wait while its link is dropped,
/// connect upstream, and copy both ways while the link passes.
async fn relay(
    mut conn: TcpStream,
    upstream: SocketAddr,
    node: Option<NodeId>,
    mut rules: watch::Receiver<Rules>,
) {
    let mut head = Vec::new();
    let sender = match node {
        Some(_) => match read_head(&mut conn, &mut head).await {
            Ok(s) => s,
            Err(_) => return,
        },
        None => None,
    };
    // Returns false when the connection is to be closed.
    let wait_until_passing = async |rules: &mut watch::Receiver<Rules>| loop {
        let verdict = rules.borrow_and_update().verdict(sender, node);
        match verdict {
            None => return true,
            Some(Cut::Refuse) => return false,
            Some(Cut::Drop) => {
                if rules.changed().await.is_err() {
                    return false;
                }
            }
        }
    };
    if !wait_until_passing(&mut rules).await {
        return;
    }
    let Ok(mut up) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = conn.set_nodelay(true);
    let _ = up.set_nodelay(true);
    if up.write_all(&head).await.is_err() {
        return;
    }
    let (mut cr, mut cw) = conn.split();
    let (mut ur, mut uw) = up.split();
    let (mut b1, mut b2) = (vec![0u8; 16 << 10], vec![0u8; 16 << 10]);
    let (mut client_open, mut upstream_open) = (true, true);
    while client_open || upstream_open {
        if rules.has_changed().unwrap_or(true) && !wait_until_passing(&mut rules).await {
            return;
        }
        tokio::select! {
            r = cr.read(&mut b1), if client_open => match r {
                Ok(0) | Err(_) => {
                    client_open = false;
                    let _ = uw.shutdown().await;
                }
                Ok(n) => {
                    if uw.write_all(&b1[..n]).await.is_err() {
                        return;
                    }
                }
            },
            r = ur.read(&mut b2), if upstream_open => match r {
                Ok(0) | Err(_) => {
                    upstream_open = false;
                    let _ = cw.shutdown().await;
                }
                Ok(n) => {
                    if cw.write_all(&b2[..n]).await.is_err() {
                        return;
                    }
                }
            },
            changed = rules.changed() => {
                if changed.is_err() {
                    return;
                }
                // Marked seen by `changed`: look at the new rules now.
                rules.mark_changed();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server that prefixes what it sends back, on a held listener.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut c, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1024];
                    loop {
                        let n = match c.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if c.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn request(from: Option<NodeId>) -> Vec<u8> {
        let peer = from.map_or(String::new(), |f| format!("X-Ramrod-Peer: {f}.17.abc\r\n"));
        format!("POST /raft/append HTTP/1.1\r\nhost: x\r\n{peer}\r\n").into_bytes()
    }

    /// Sends a request head and reads its echo, within `wait`.
    async fn round_trip(c: &mut TcpStream, from: Option<NodeId>, wait: Duration) -> bool {
        let req = request(from);
        if c.write_all(&req).await.is_err() {
            return false;
        }
        let mut got = vec![0u8; req.len()];
        matches!(
            tokio::time::timeout(wait, c.read_exact(&mut got)).await,
            Ok(Ok(_)) if got == req
        )
    }

    #[tokio::test]
    async fn links_are_cut_by_sender_and_healed() {
        let net = Network::new().unwrap();
        let proxy = net.proxy(echo().await, Some(1)).unwrap();
        let wait = Duration::from_millis(300);
        let connect = || TcpStream::connect(proxy.addr());

        // Everything passes; an established connection of node 2.
        let mut from2 = connect().await.unwrap();
        assert!(round_trip(&mut from2, Some(2), wait).await);

        // 2 -> 1 refused: the established connection is closed, a new one
        // too; node 3 and clients still pass.
        net.cut(2, 1, Cut::Refuse);
        let mut buf = [0u8; 1];
        assert!(matches!(
            tokio::time::timeout(wait, from2.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        ));
        let mut c = connect().await.unwrap();
        assert!(!round_trip(&mut c, Some(2), wait).await);
        let mut c = connect().await.unwrap();
        assert!(round_trip(&mut c, Some(3), wait).await);
        let mut c = connect().await.unwrap();
        assert!(round_trip(&mut c, None, wait).await);

        // Dropped: held, nothing passes, then delivered on healing.
        net.heal();
        net.isolate(1, [2, 3], Cut::Drop);
        let mut held = connect().await.unwrap();
        let req = request(Some(3));
        held.write_all(&req).await.unwrap();
        let mut got = vec![0u8; req.len()];
        assert!(
            tokio::time::timeout(wait, held.read_exact(&mut got))
                .await
                .is_err()
        );
        net.heal();
        tokio::time::timeout(Duration::from_secs(5), held.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, req);

        // A service proxy cut as a whole refuses clients too.
        let service = net.proxy(echo().await, None).unwrap();
        net.cut_all(Cut::Refuse);
        let mut c = TcpStream::connect(service.addr()).await.unwrap();
        assert!(!round_trip(&mut c, None, wait).await);
        net.heal();
        let mut c = TcpStream::connect(service.addr()).await.unwrap();
        assert!(round_trip(&mut c, None, wait).await);
    }
}
