//! Starting a node: open the stores, restore, load the first policy, start
//! Raft, the controller and the HTTP server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{Raft, SnapshotPolicy};

use super::builder::{Endpoints, Listen, PolicyChoice, SnapshotStoreSpec};
use super::controller::{self, PolicyOrigin};
use super::handle::{NodeHandle, Parts};
use super::{Node, NodeError, Recovery, http, raft_rpc};
use crate::config::NodeConfig;
use crate::log_store::LogStore;
use crate::policy::{PolicyHost, PolicyRuntime};
use crate::snapshot::{DirStore, S3Store, SnapshotError, SnapshotStore, Snapshots};
use crate::state_machine::KvStateMachine;

/// Everything [`start`] needs, as the builder resolved it.
pub(super) struct Plan {
    pub config: NodeConfig,
    pub listen: Listen,
    pub endpoints: Endpoints,
    pub store: SnapshotStoreSpec,
    pub policy: PolicyChoice,
}

pub(super) async fn start(plan: Plan) -> Result<Node, NodeError> {
    let Plan {
        config,
        listen,
        endpoints,
        store,
        policy,
    } = plan;
    config
        .validate()
        .map_err(|reason| NodeError::Config { reason })?;
    if matches!(listen, Listen::Nowhere) && !config.peers.is_empty() {
        return Err(NodeError::Config {
            reason: "a node with peers must listen: they reach it over HTTP".into(),
        });
    }
    let secret = config
        .cluster_secret()
        .map_err(|reason| NodeError::Config { reason })?;
    let tls = match &config.tls {
        Some(files) => Some(
            super::tls::NodeTls::load(files, config.id)
                .map_err(|reason| NodeError::Config { reason })?,
        ),
        None => None,
    };
    if tls.is_some() && matches!(listen, Listen::Nowhere) {
        return Err(NodeError::Config {
            reason: "`tls` is for a node that listens".into(),
        });
    }
    if secret.is_none() && tls.is_none() && config.multi_node() {
        return Err(NodeError::Config {
            reason: "a node of a multi-node cluster needs `cluster-secret` (or \
                     `cluster-secret-file`), the same on every node, or `[tls]`: every \
                     request between nodes is authenticated, and any local process can \
                     reach a loopback port"
                .into(),
        });
    }
    let peer_auth = super::peer_auth::PeerAuth::setup(secret.as_deref(), tls.clone(), config.id);
    std::fs::create_dir_all(&config.data_dir).map_err(|source| NodeError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let opened = LogStore::open_with(&config.data_dir, config.log);
    let store: Arc<dyn SnapshotStore> = match store {
        SnapshotStoreSpec::S3(s3) => Arc::new(S3Store::new(&s3).map_err(SnapshotError::from)?),
        SnapshotStoreSpec::Dir(dir) => Arc::new(DirStore::open(&dir).map_err(SnapshotError::from)?),
        SnapshotStoreSpec::Custom(s) => s,
    };
    let group = format!("node-{}", config.id);
    let snaps = Arc::new(Snapshots::new(store, &group, config.snapshots.clone()));
    let started = Instant::now();
    let (sm, report) = open_state(snaps).await?;
    sm.set_watch_limits(config.watch.limits());
    let restore_ms = started.elapsed().as_millis() as u64;
    for (name, why) in &report.skipped {
        tracing::warn!(snapshot = %name, reason = %why, "skipped a damaged snapshot at start-up");
    }
    let (log, recovering) = trusted_log(&config, opened, &sm, peer_auth.as_ref()).await?;
    let (host, origin) = start_policy(&config, &sm, policy).await?;

    // Bind before Raft starts, so a port in use fails the start cleanly.
    let listener = match listen {
        Listen::Nowhere => None,
        Listen::Addr(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| NodeError::Listen { addr, source })?,
        ),
        Listen::Listener(l) => {
            let addr = l.local_addr().map_err(|source| NodeError::Listen {
                addr: config.listen,
                source,
            })?;
            let l = l
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(l))
                .map_err(|source| NodeError::Listen { addr, source })?;
            Some(l)
        }
    };
    let unix = match &config.listen_unix {
        Some(_) if endpoints == Endpoints::RaftOnly => {
            return Err(NodeError::Config {
                reason: "`listen-unix` serves the client and admin API, which a Raft-only node does not have".into(),
            });
        }
        Some(path) => Some(
            super::socket::bind(path).map_err(|source| NodeError::Socket {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let addr = match &listener {
        Some(l) => Some(l.local_addr().map_err(|source| NodeError::Listen {
            addr: config.listen,
            source,
        })?),
        None => None,
    };

    let t = &config.raft;
    let raft_config = openraft::Config {
        cluster_name: "ramrod".into(),
        heartbeat_interval: t.heartbeat_ms,
        election_timeout_min: t.election_min_ms,
        election_timeout_max: t.election_max_ms,
        snapshot_policy: match t.builtin_snapshot_every {
            Some(n) => SnapshotPolicy::LogsSinceLast(n),
            None => SnapshotPolicy::Never,
        },
        max_in_snapshot_log_to_keep: match t.builtin_snapshot_every {
            Some(_) => t.builtin_keep,
            None => u64::MAX,
        },
        install_snapshot_timeout: t.install_timeout_ms.max(t.rpc_timeout_ms),
        ..Default::default()
    }
    .validate()
    .map_err(|e| NodeError::Raft(Box::new(e)))?;
    let network =
        raft_rpc::HttpNetwork::new(Duration::from_millis(t.rpc_timeout_ms), peer_auth.clone());
    let in_flight = network.in_flight();
    let sent = network.sent();
    let votes_withheld = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let raft = Raft::new(
        config.id,
        Arc::new(raft_config),
        network,
        log.clone(),
        sm.clone(),
    )
    .await
    .map_err(|e| NodeError::Raft(Box::new(e)))?;
    // A follower installing a snapshot fetches the segments its store
    // lacks from the leader.
    let leader_hint = raft_rpc::LeaderHint::default();
    sm.set_segment_source(Some(Arc::new(raft_rpc::LeaderSource::new(
        raft.metrics(),
        Duration::from_millis(t.install_timeout_ms),
        leader_hint.clone(),
        peer_auth.clone(),
    ))));
    let loaded = report.loaded.as_ref();
    let recovery = Arc::new(Recovery {
        snapshot: loaded.map(|l| l.manifest.id.clone()),
        snapshot_index: loaded.and_then(|l| l.manifest.last_log_id).map(|l| l.index),
        layers: loaded.map_or(0, |l| l.manifest.layers() as usize),
        bytes_read: loaded.map_or(0, |l| l.bytes_read),
        skipped: report.skipped.len(),
        restore_ms,
        applied_at_ready: sm.last_applied().map(|l| l.index),
        ready_ms: started.elapsed().as_millis() as u64,
        index_rebuilt: log
            .index_rebuild()
            .map(|r| format!("{} (the damaged file is {})", r.reason, r.damaged.display())),
        discarded: recovering
            .as_ref()
            .map(|r| format!("{} (moved to {})", r.why, r.discarded.moved_to.display())),
        votes_withheld_until: recovering.as_ref().map(|r| r.until),
        discards: crate::log_store::discards(&config.data_dir),
    });
    if let Some(r) = &recovering {
        withhold_votes(&raft, r.until, &votes_withheld);
    }
    let (controller, controller_task) = controller::start(controller::Parts {
        id: config.id,
        raft: raft.clone(),
        sm: sm.clone(),
        log: log.clone(),
        host,
        data_dir: config.data_dir.clone(),
        in_flight,
        origin,
        decide: t.builtin_snapshot_every.is_none(),
    });
    let mut members = BTreeMap::new();
    let self_addr = config
        .advertise
        .clone()
        .unwrap_or_else(|| addr.map_or_else(|| config.listen.to_string(), |a| a.to_string()));
    members.insert(config.id, openraft::BasicNode::new(self_addr));
    for p in &config.peers {
        members.insert(p.id, openraft::BasicNode::new(p.addr.clone()));
    }
    let parts = Arc::new(Parts {
        id: config.id,
        raft,
        sm,
        log,
        controller,
        recovery,
        sent,
        addr,
        members,
        join: config.join,
        handing_over: Default::default(),
        leader_hint,
        max_policy_bytes: config.policy.max_upload_bytes(),
        data_dir: config.data_dir.clone(),
        peer_auth: peer_auth.clone(),
        votes_withheld,
    });
    let handle = NodeHandle::new(&parts);
    let app = http::router(
        handle.clone(),
        endpoints,
        config.token.clone(),
        config.policy.max_upload_bytes(),
        peer_auth,
    );
    let mut servers = Vec::new();
    match (listener, &tls) {
        (Some(listener), Some(tls)) => {
            let listener = tls.listener(listener).map_err(|source| NodeError::Listen {
                addr: config.listen,
                source,
            })?;
            servers.push(serve(listener, app.clone()));
        }
        (Some(listener), None) => servers.push(serve(listener, app.clone())),
        (None, _) => {}
    }
    let mut socket = None;
    if let Some(bound) = unix {
        socket = Some(bound.remover());
        let path = bound.path().to_path_buf();
        let listener = bound
            .listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixListener::from_std(bound.listener))
            .map_err(|source| NodeError::Socket { path, source })?;
        servers.push(serve(listener, app));
    }
    Ok(Node {
        parts,
        handle,
        controller_task,
        servers,
        socket,
    })
}

/// Serves `app` on `listener` until the returned sender fires (or drops).
fn serve<L>(
    listener: L,
    app: axum::Router,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    super::tls::PeerCert:
        for<'a> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = app.into_make_service_with_connect_info::<super::tls::PeerCert>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    (stop, task)
}

/// Opens the state machine, waiting for a snapshot store that does not
/// answer (a network store that is down, a volume not mounted yet): its
/// failures are retried with backoff (200 ms doubling to 10 s), logged each
/// time, until it answers; damage and format errors are not retried.
async fn open_state(
    snaps: Arc<Snapshots>,
) -> Result<(KvStateMachine, crate::snapshot::RestoreReport), SnapshotError> {
    let mut delay = Duration::from_millis(200);
    loop {
        match KvStateMachine::open(snaps.clone()).await {
            Err(SnapshotError::Store(e @ crate::snapshot::StoreError::Other { .. })) => {
                tracing::warn!(error = %e, retry_in = ?delay, "the snapshot store does not answer; the node starts when it does");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            r => return r,
        }
    }
}

/// The policy host with the node's first policy in: the one the state holds
/// (the last rollout), else `choice`.
async fn start_policy(
    config: &NodeConfig,
    sm: &KvStateMachine,
    choice: PolicyChoice,
) -> Result<(Arc<PolicyHost>, PolicyOrigin), NodeError> {
    let cache = config
        .policy
        .cache_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("policy-cache"));
    let runtime = PolicyRuntime::new(config.limits.clone(), Some(cache))?;
    // The native policy is the fallback, configured by the choice's config.
    let fallback = match &choice.source {
        None => choice.config.as_str(),
        Some(_) => "",
    };
    let bounds = crate::sdk::Bounds {
        max_chain: u32::try_from(config.snapshots.max_chain).unwrap_or(u32::MAX),
        ..config.bounds.clone()
    };
    let host = Arc::new(PolicyHost::new(runtime, bounds, fallback)?);
    let mut origin = PolicyOrigin::default();
    if let Some(applied) = sm.policy() {
        match controller::swap_applied(&host, sm, &applied).await {
            Ok(_) => {
                origin.origin = "rollout".into();
                origin.index = Some(applied.index);
                return Ok((host, origin));
            }
            Err(e) => {
                tracing::error!(index = applied.index, error = %e, "the rolled-out policy in the state does not load here; using the configured one");
                origin.last_error = Some(format!("rollout at index {}: {e}", applied.index));
            }
        }
    }
    origin.origin = "config".into();
    if let Some(source) = choice.source {
        controller::swap_in(&host, source, choice.config).await?;
    }
    Ok((host, origin))
}

/// A local state discarded at start-up to recover from the cluster.
struct Recovering {
    why: String,
    discarded: crate::log_store::Discarded,
    /// Votes are withheld until this index is applied.
    until: u64,
}

/// Whether `e` means the log store is damaged beyond repair (not in use,
/// unreadable, full or misconfigured: those are not the node's to discard).
fn beyond_repair(e: &crate::log_store::LogStoreError) -> bool {
    use crate::log_store::LogStoreError as E;
    matches!(
        e,
        E::Segment { .. } | E::Corrupt { .. } | E::Open { .. } | E::Foreign { .. }
    )
}

/// The log store to start with. When the local state cannot be trusted (the
/// log is damaged beyond repair, or the newest snapshot that verifies ends
/// before the log begins), a node of a cluster whose other voters answer
/// discards its log (keeping its vote) and recovers from the cluster: the
/// leader sends it a snapshot and the log. A lone node, or one whose peers
/// do not answer, stops with what to do.
async fn trusted_log(
    config: &NodeConfig,
    opened: Result<LogStore, crate::log_store::LogStoreError>,
    sm: &KvStateMachine,
    auth: Option<&super::peer_auth::PeerAuth>,
) -> Result<(LogStore, Option<Recovering>), NodeError> {
    let applied = sm.last_applied().map(|l| l.index);
    let why = match opened {
        Ok(log) => match log.purged() {
            Some(p) if applied.is_none_or(|a| a < p.index) => {
                drop(log);
                format!(
                    "the newest snapshot that verifies ends at {} but the log begins after \
                     index {}: the entries between are gone",
                    applied.map_or_else(|| "nothing".to_string(), |a| format!("index {a}")),
                    p.index
                )
            }
            _ => match log.verify_entries() {
                Ok(_) => return Ok((log, None)),
                Err(e) if beyond_repair(&e) => {
                    drop(log);
                    format!("its log is damaged beyond repair: {e}")
                }
                Err(e) => return Err(e.into()),
            },
        },
        Err(e) if beyond_repair(&e) => format!("its log store is damaged beyond repair: {e}"),
        Err(e) => return Err(e.into()),
    };
    tracing::error!(node = config.id, reason = %why, "this node's local state cannot be trusted");
    let dir = config.data_dir.display();
    if !config.multi_node() {
        return Err(NodeError::Damaged {
            reason: format!("node {}: {why}", config.id),
            remedy: format!(
                "It is the only node, so nothing can be recovered from a cluster. `ramrod log \
                 discard --data-dir {dir}` moves the log aside (keeping its vote) so that the node \
                 starts from its newest snapshot that verifies ({}), losing the writes after it",
                applied.map_or_else(|| "none: empty".to_string(), |a| format!("index {a}"))
            ),
        });
    }
    let salvage = crate::log_store::salvage(&config.data_dir);
    if salvage.vote.is_none() {
        return Err(NodeError::Damaged {
            reason: format!("node {}: {why}, and its vote cannot be read", config.id),
            remedy: format!(
                "Without its vote it must not rejoin as itself: remove it from the cluster \
                 (`ramrod members remove {id} --node URL`), empty {dir}, start it with `join = \
                 true` and add it again (`ramrod members add {id} ADDR --node URL`)",
                id = config.id
            ),
        });
    }
    others_answer(config, sm, auth, &why).await?;
    let discarded = crate::log_store::discard(&config.data_dir)?;
    let vote = discarded
        .salvage
        .vote
        .or(salvage.vote)
        .expect("checked above");
    let log = LogStore::open_with(&config.data_dir, config.log)?;
    openraft::storage::RaftLogStorage::save_vote(&mut log.clone(), &vote)
        .await
        .map_err(|e| NodeError::Raft(Box::new(e)))?;
    let s = &discarded.salvage;
    let until = [s.last_index, s.committed.map(|c| c.index), applied]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0);
    tracing::error!(
        node = config.id,
        moved_to = %discarded.moved_to.display(),
        votes_withheld_until = until,
        "discarded the untrusted log (its vote kept): recovering from the cluster"
    );
    Ok((
        log,
        Some(Recovering {
            why,
            discarded,
            until,
        }),
    ))
}

/// Waits (up to 10 s) until enough of the other voters answer to recover
/// this node from them: a majority of the voters, without this one.
async fn others_answer(
    config: &NodeConfig,
    sm: &KvStateMachine,
    auth: Option<&super::peer_auth::PeerAuth>,
    why: &str,
) -> Result<(), NodeError> {
    let (_, stored) = openraft::storage::RaftStateMachine::applied_state(&mut sm.clone())
        .await
        .map_err(|e| NodeError::Raft(Box::new(e)))?;
    let m = stored.membership();
    let mut voters: Vec<u64> = m.voter_ids().collect();
    let mut others: Vec<String> = voters
        .iter()
        .filter(|&&id| id != config.id)
        .filter_map(|id| m.get_node(id).map(|n| n.addr.clone()))
        .collect();
    if voters.is_empty() {
        voters = config
            .peers
            .iter()
            .map(|p| p.id)
            .chain([config.id])
            .collect();
        others = config.peers.iter().map(|p| p.addr.clone()).collect();
    }
    if others.is_empty() {
        // A joining node that knows no member: the leader finds it.
        return Ok(());
    }
    let need = voters.len() / 2 + 1;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut answering = 0;
        for addr in &others {
            if super::raft_rpc::peer_initialized(addr, auth).await.is_ok() {
                answering += 1;
            }
        }
        if answering >= need {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(NodeError::Damaged {
                reason: format!("node {}: {why}", config.id),
                remedy: format!(
                    "It can be recovered from the cluster, but only {answering} of the {} other \
                     voters answered and {need} are needed: start them, then this node again \
                     (it recovers then, by itself)",
                    others.len()
                ),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// While a node recovers from the cluster it starts no election and its
/// vote handler grants none (`withheld`), until it has applied `until`:
/// an entry it acknowledged and then lost may be committed, and a leader
/// elected with its vote might lack it.
fn withhold_votes(
    raft: &Raft<crate::raft::TypeConfig>,
    until: u64,
    withheld: &Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::Ordering;
    withheld.store(until.max(1), Ordering::Release);
    raft.runtime_config().elect(false);
    let (raft, withheld) = (raft.clone(), withheld.clone());
    tokio::spawn(async move {
        let mut metrics = raft.metrics();
        loop {
            let applied = metrics.borrow().last_applied.map_or(0, |l| l.index);
            if applied >= until {
                withheld.store(0, Ordering::Release);
                raft.runtime_config().elect(true);
                tracing::warn!(applied, "recovered from the cluster: this node votes again");
                return;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    });
}
