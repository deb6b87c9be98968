//! Local clusters of `ramrod serve` processes on loopback, for the demo and
//! the tests that run nodes as a user would: the one process harness.
//!
//! The harness binds every node's listening socket itself ([`HeldSocket`])
//! and hands it to the node's process (`ramrod serve --listen-fd 3`), and
//! keeps it while the node is down: no port is ever chosen, released and
//! bound again, so no other process can take it, and a restarted node has
//! the same address. While a node is down, the harness accepts and closes
//! every connection to it, so clients fail at once, as on a closed port.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::client::{Client, ClientError};
use crate::{NodeId, Status, Written};

mod disk;
mod proxy;
pub use disk::SmallDisk;
pub use proxy::{Cut, Network, Proxy};

/// A loopback listening socket held for a node across its restarts. While
/// it is parked (the node is down), a thread accepts and closes every
/// connection, so a client fails at once, as it would on a closed port,
/// and no other process can take the port.
#[derive(Debug)]
pub struct HeldSocket {
    listener: TcpListener,
    refuser: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl HeldSocket {
    /// Binds `127.0.0.1` on a port the system picks; parked.
    ///
    /// # Errors
    /// If no socket can be bound.
    pub fn bind_loopback() -> io::Result<HeldSocket> {
        let mut s = HeldSocket {
            listener: TcpListener::bind("127.0.0.1:0")?,
            refuser: None,
        };
        s.park()?;
        Ok(s)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The node is down: refuse connections until [`hand_out`](Self::hand_out).
    ///
    /// # Errors
    /// If the socket cannot be duplicated for the refusing thread.
    pub fn park(&mut self) -> io::Result<()> {
        if self.refuser.is_some() {
            return Ok(());
        }
        let l = self.listener.try_clone()?;
        l.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((conn, _)) => drop(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        self.refuser = Some((stop, thread));
        Ok(())
    }

    fn unpark(&mut self) {
        if let Some((stop, thread)) = self.refuser.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
    }

    /// Stops refusing and returns a copy of the listener for the node.
    ///
    /// # Errors
    /// If the socket cannot be duplicated.
    pub fn hand_out(&mut self) -> io::Result<TcpListener> {
        self.unpark();
        self.listener.try_clone()
    }

    /// Stops refusing, for a process to inherit the listener.
    fn for_child(&mut self) -> &TcpListener {
        self.unpark();
        &self.listener
    }
}

impl Drop for HeldSocket {
    fn drop(&mut self) {
        self.unpark();
    }
}

/// A fresh secret: 32 hex digits of a hash of the time, the process and a
/// counter (unique per cluster; the demo's and tests' clusters live on
/// loopback for minutes).
pub fn random_secret() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = blake3::Hasher::new();
    h.update(format!("{:?}", std::time::SystemTime::now()).as_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(
        &N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_le_bytes(),
    );
    h.update(format!("{:p}", &h).as_bytes());
    h.finalize().to_hex()[..32].to_string()
}

/// How to set up a [`ProcessCluster`].
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Nodes (ids `1..=nodes`).
    pub nodes: u64,
    /// The admin token every node gets.
    pub token: String,
    /// The cluster secret every node gets (default: a new random one per
    /// cluster; none with [`tls`](Self::tls)).
    pub cluster_secret: String,
    /// TOML appended to every node's config (after `[[peers]]`; tables
    /// only, such as `[policy]` or `[snapshots]`).
    pub extra_toml: String,
    /// Raft timing: heartbeat, election min and max (ms).
    pub raft_ms: (u64, u64, u64),
    /// `RUST_LOG` of the node processes.
    pub rust_log: String,
    /// Write each node's output to `DIR/node-{id}.log` (else discard it).
    pub log_files: bool,
    /// TLS: a cluster CA and node certificates in `DIR/certs` (made by
    /// [`ProcessCluster::new`]), `[tls]` in every config; URLs are
    /// `https://`, clients trust the CA.
    pub tls: bool,
    /// Peers reach each node through a fault proxy
    /// ([`ProcessCluster::network`]), which can cut links between nodes:
    /// each node advertises its proxy's address, and its peers are
    /// configured with theirs. Clients of [`ProcessCluster::client`] reach
    /// nodes directly. Not with [`tls`](Self::tls).
    pub proxied: bool,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            nodes: 3,
            token: "process-cluster-token".into(),
            cluster_secret: random_secret(),
            extra_toml: String::new(),
            raft_ms: (50, 300, 600),
            rust_log: "off".into(),
            log_files: false,
            tls: false,
            proxied: false,
        }
    }
}

/// A cluster of `ramrod serve` processes; every process it started is
/// stopped (SIGTERM, then SIGKILL) when it is dropped.
#[derive(Debug)]
pub struct ProcessCluster {
    exe: PathBuf,
    dir: PathBuf,
    spec: ClusterSpec,
    /// The cluster CA's certificate (PEM), with TLS.
    ca: Option<String>,
    sockets: Vec<std::sync::Mutex<HeldSocket>>,
    /// Behind a lock so that `&self` queries can reap a process that exited
    /// by itself (and park its socket, so clients fail at once).
    children: std::sync::Mutex<BTreeMap<NodeId, Child>>,
    /// How the processes that exited by themselves ended.
    exited: std::sync::Mutex<BTreeMap<NodeId, std::process::ExitStatus>>,
    /// With [`ClusterSpec::proxied`]: the network and a proxy per node.
    network: Option<(Network, Vec<Proxy>)>,
}

impl ProcessCluster {
    /// Binds a loopback listener per node and writes each node's config to
    /// `dir/node-{id}.toml` (data in `dir/node-{id}`); starts nothing.
    ///
    /// # Errors
    /// If a socket cannot be bound or a config not written.
    pub fn new(exe: &Path, dir: &Path, spec: ClusterSpec) -> io::Result<ProcessCluster> {
        let sockets = (0..spec.nodes)
            .map(|_| HeldSocket::bind_loopback())
            .collect::<io::Result<Vec<_>>>()?;
        let addrs: Vec<SocketAddr> = sockets.iter().map(HeldSocket::addr).collect();
        let network = if spec.proxied {
            if spec.tls {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a proxied cluster cannot use TLS: the proxy reads who sends each request",
                ));
            }
            let net = Network::new()?;
            let proxies = (1..=spec.nodes)
                .map(|id| net.proxy(addrs[id as usize - 1], Some(id)))
                .collect::<io::Result<Vec<_>>>()?;
            Some((net, proxies))
        } else {
            None
        };
        // Where peers reach each node.
        let peer_addrs: Vec<SocketAddr> = match &network {
            Some((_, proxies)) => proxies.iter().map(Proxy::addr).collect(),
            None => addrs.clone(),
        };
        let sockets = sockets.into_iter().map(std::sync::Mutex::new).collect();
        let (hb, emin, emax) = spec.raft_ms;
        let ca = if spec.tls {
            let certs = dir.join("certs");
            std::fs::create_dir_all(&certs)?;
            let ca = crate::node::tls::make_ca("process-cluster", 30).map_err(io::Error::other)?;
            std::fs::write(certs.join("ca.pem"), &ca.cert)?;
            for id in 1..=spec.nodes {
                let node = crate::node::tls::make_node_cert(&ca, id, &["127.0.0.1".into()], 30)
                    .map_err(io::Error::other)?;
                std::fs::write(certs.join(format!("node-{id}.pem")), &node.cert)?;
                let key = certs.join(format!("node-{id}.key"));
                // A cluster made again in the same directory: new keys.
                let _ = std::fs::remove_file(&key);
                crate::node::tls::write_new(&key, &node.key, 0o600)?;
            }
            Some(ca.cert)
        } else {
            None
        };
        for id in 1..=spec.nodes {
            let mut t = format!(
                "id = {id}\nlisten = \"{}\"\ndata-dir = \"node-{id}\"\ntoken = \"{}\"\n",
                addrs[id as usize - 1],
                spec.token,
            );
            if network.is_some() {
                t += &format!("advertise = \"{}\"\n", peer_addrs[id as usize - 1]);
            }
            // With TLS, certificates alone authenticate peers.
            if ca.is_none() {
                t += &format!("cluster-secret = \"{}\"\n", spec.cluster_secret);
            }
            t += "\n";
            t += &format!(
                "[raft]\nheartbeat-ms = {hb}\nelection-min-ms = {emin}\nelection-max-ms = {emax}\n\n"
            );
            if ca.is_some() {
                t += &format!(
                    "[tls]\nca-file = \"certs/ca.pem\"\ncert-file = \"certs/node-{id}.pem\"\n\
                     key-file = \"certs/node-{id}.key\"\n\n"
                );
            }
            for p in (1..=spec.nodes).filter(|&p| p != id) {
                t += &format!(
                    "[[peers]]\nid = {p}\naddr = \"{}\"\n\n",
                    peer_addrs[p as usize - 1]
                );
            }
            t += &spec.extra_toml;
            std::fs::write(dir.join(format!("node-{id}.toml")), t)?;
        }
        Ok(ProcessCluster {
            exe: exe.to_path_buf(),
            dir: dir.to_path_buf(),
            ca,
            spec,
            sockets,
            children: std::sync::Mutex::new(BTreeMap::new()),
            exited: std::sync::Mutex::new(BTreeMap::new()),
            network,
        })
    }

    /// Starts every node.
    ///
    /// # Errors
    /// If a process cannot be started.
    pub fn start_all(&mut self) -> io::Result<()> {
        for id in 1..=self.spec.nodes {
            self.start(id)?;
        }
        Ok(())
    }

    /// Starts node `id`'s process (on its listener).
    ///
    /// # Errors
    /// If the process cannot be started (or its log file created).
    ///
    /// # Panics
    /// If `id` is not a node of the cluster.
    pub fn start(&mut self, id: NodeId) -> io::Result<()> {
        self.exited
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some(mut old) = self.children_mut().remove(&id) {
            let _ = old.kill();
            let _ = old.wait();
        }
        let mut cmd = Command::new(&self.exe);
        cmd.arg("serve")
            .arg("--config")
            .arg(self.dir.join(format!("node-{id}.toml")))
            .arg("--listen-fd")
            .arg(crate::platform::LISTEN_FD.to_string())
            .env("RUST_LOG", &self.spec.rust_log)
            .stdin(Stdio::null());
        if self.spec.log_files {
            let log = std::fs::File::create(self.dir.join(format!("node-{id}.log")))?;
            cmd.stdout(log.try_clone()?).stderr(log);
        } else {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let spawned = {
            let mut socket = self.socket(id);
            crate::platform::pass_listener(&mut cmd, socket.for_child()).and_then(|()| cmd.spawn())
        };
        match spawned {
            Ok(child) => {
                self.children_mut().insert(id, child);
                Ok(())
            }
            Err(e) => {
                self.park(id);
                Err(e)
            }
        }
    }

    /// SIGKILL of node `id` (a no-op if it is not running).
    pub fn kill(&mut self, id: NodeId) {
        if let Some(mut c) = self.children_mut().remove(&id) {
            let _ = c.kill();
            let _ = c.wait();
            self.park(id);
        }
    }

    /// Freezes node `id`'s process (SIGSTOP), or lets it go on (SIGCONT).
    pub fn pause(&self, id: NodeId, paused: bool) {
        if let Some(c) = self
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            let _ = crate::platform::pause(c.id(), paused);
        }
    }

    /// Stops node `id`: SIGTERM, then SIGKILL if it has not exited within
    /// 5 s.
    pub fn stop(&mut self, id: NodeId) {
        let Some(mut c) = self.children_mut().remove(&id) else {
            return;
        };
        let mut exited = false;
        if crate::platform::terminate(c.id()).is_ok() {
            let t = Instant::now();
            while !exited && t.elapsed() < Duration::from_secs(5) {
                exited = matches!(c.try_wait(), Ok(Some(_)));
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if !exited {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.park(id);
    }

    fn children_mut(&mut self) -> &mut BTreeMap<NodeId, Child> {
        self.children.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    fn socket(&self, id: NodeId) -> std::sync::MutexGuard<'_, HeldSocket> {
        self.sockets[id as usize - 1]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses connections on node `id`'s port (it is down).
    fn park(&self, id: NodeId) {
        if let Err(e) = self.socket(id).park() {
            tracing::warn!(node = id, error = %e, "could not refuse connections to a stopped node");
        }
    }

    /// Whether node `id`'s process runs (it was started, not killed, and has
    /// not exited by itself).
    pub fn running(&self, id: NodeId) -> bool {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        let Some(c) = children.get_mut(&id) else {
            return false;
        };
        match c.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                tracing::warn!(node = id, %status, "a node process exited by itself");
                self.exited
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, status);
                children.remove(&id);
                drop(children);
                self.park(id);
                false
            }
            Err(_) => true,
        }
    }

    /// How node `id`'s process ended, if it exited by itself (as
    /// [`running`](Self::running) found).
    pub fn exit_status(&self, id: NodeId) -> Option<std::process::ExitStatus> {
        self.exited
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .copied()
    }

    /// The network between the nodes, with [`ClusterSpec::proxied`]: cut
    /// and heal links.
    pub fn network(&self) -> Option<&Network> {
        self.network.as_ref().map(|(n, _)| n)
    }

    /// The node ids.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> + use<> {
        1..=self.spec.nodes
    }

    /// Where the cluster keeps its configs, data and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The admin token.
    pub fn token(&self) -> &str {
        &self.spec.token
    }

    /// Node `id`'s address.
    ///
    /// # Panics
    /// If `id` is not a node of the cluster.
    pub fn addr(&self, id: NodeId) -> SocketAddr {
        self.socket(id).addr()
    }

    /// Node `id`'s base URL (`https://` with TLS).
    pub fn url(&self, id: NodeId) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr(id))
    }

    /// The cluster CA's certificate file, with TLS.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.ca
            .as_ref()
            .map(|_| self.dir.join("certs").join("ca.pem"))
    }

    /// A client of node `id` with the admin token and a 5 s timeout
    /// (trusting the cluster CA, with TLS).
    pub fn client(&self, id: NodeId) -> Client {
        let c = Client::new(&self.url(id)).expect("a loopback URL is an address");
        let c = match &self.ca {
            Some(ca) => c
                .with_ca_pem(ca.as_bytes())
                .expect("the CA made here parses"),
            None => c,
        };
        c.with_token(&self.spec.token)
            .with_timeout(Duration::from_secs(5))
    }

    /// Node `id`'s status, if it runs and answers.
    pub async fn status(&self, id: NodeId) -> Option<Status> {
        if !self.running(id) {
            return None;
        }
        self.client(id).status().await.ok()
    }

    /// The leader among the running nodes, waiting up to `timeout`.
    pub async fn leader(&self, timeout: Duration) -> Option<NodeId> {
        let deadline = Instant::now() + timeout;
        loop {
            for id in self.ids() {
                if let Some(s) = self.status(id).await
                    && s.is_leader()
                {
                    return Some(id);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Writes `key = value` through any running node (the client follows
    /// the node to the leader), retrying until acknowledged or `timeout`.
    ///
    /// # Errors
    /// The last error when `timeout` passed first.
    pub async fn put(
        &self,
        key: &str,
        value: &str,
        timeout: Duration,
    ) -> Result<Written, ClientError> {
        let deadline = Instant::now() + timeout;
        let mut target = 0usize;
        loop {
            let ids: Vec<NodeId> = self.ids().filter(|&i| self.running(i)).collect();
            let id = ids.get(target % ids.len().max(1)).copied().unwrap_or(1);
            match self.client(id).put(key, value).await {
                Ok(w) => return Ok(w),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => {
                    target += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Waits until node `id` has applied `index`; its status then.
    pub async fn applied(&self, id: NodeId, index: u64, timeout: Duration) -> Option<Status> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.status(id).await
                && s.last_applied.is_some_and(|a| a >= index)
            {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ProcessCluster {
    /// SIGTERM to every node, up to 5 s for all of them to exit, then
    /// SIGKILL to the rest.
    fn drop(&mut self) {
        let mut children: Vec<Child> = std::mem::take(self.children_mut()).into_values().collect();
        for c in &children {
            let _ = crate::platform::terminate(c.id());
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
            if children.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for mut c in children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
