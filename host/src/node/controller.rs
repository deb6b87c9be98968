//! The compaction controller: the one place where a node decides to build a
//! snapshot, purge its log or change snapshot retention.
//!
//! It gathers the facts (log store statistics, the state machine's snapshot
//! facts, follower progress and in-flight snapshot transfers from openraft's
//! metrics and the network, free disk space, the time), asks the policy
//! host, and carries out the clamped decision. It asks again when the policy
//! says (within the configured bounds) and after notable events: a snapshot
//! finished, a role or leader change, a follower fell behind, a new policy.
//!
//! Guarantees:
//! - at most one snapshot build runs at a time, and a request that arrives
//!   while one runs (from the policy or an operator) is carried out after it;
//! - every decision is recorded in a bounded audit log (policy name and
//!   hash, facts, what the policy chose, what the host clamped, what was
//!   done) and as a `tracing` event;
//! - purges go through openraft (`trigger().purge_log`), which never purges
//!   past the snapshot it knows nor logs a replication stream is reading; on
//!   top of that the host's clamp keeps every entry a follower with a
//!   snapshot transfer in flight needs.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::{Raft, ServerState};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::network::InFlight;
use crate::log_store::LogStore;
use crate::policy::{DecisionRecord, PolicyError, PolicyHost, PolicySource, SwapReport};
use crate::raft::{NodeId, PolicySpec, TypeConfig};
use crate::sdk::{self, Clamp, Facts, Follower, LogFacts, Role, SnapshotFacts};
use crate::snapshot::{Manifest, SnapshotKind};
use crate::state_machine::{AppliedPolicy, KvStateMachine};

/// Decisions kept in the audit log.
pub const AUDIT_CAPACITY: usize = 512;

/// A follower this many entries behind counts as fallen behind (an event).
const LAG_EVENT_ENTRIES: u64 = 10_000;

/// How long to wait for openraft to take a snapshot the controller built.
const HANDOFF_WAIT: Duration = Duration::from_secs(10);

/// One decision, as the audit log keeps it.
#[derive(Clone, Debug, Serialize)]
pub struct AuditEntry {
    /// Sequence number since the node started.
    pub seq: u64,
    /// When (Unix milliseconds).
    pub at_unix_ms: u64,
    /// What made the controller ask.
    pub trigger: String,
    /// The facts the policy saw.
    pub facts: Facts,
    /// The policy, what it chose, what the host clamped.
    pub record: DecisionRecord,
    /// What the controller did about it.
    pub actions: Vec<String>,
}

/// The controller's counters.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ControllerStats {
    /// Decisions made.
    pub decisions: u64,
    /// Snapshot builds started, full.
    pub builds_full: u64,
    /// Snapshot builds started, incremental.
    pub builds_incremental: u64,
    /// Builds that failed (their changes are kept for the next one).
    pub build_failures: u64,
    /// Snapshot requests queued behind a running build.
    pub queued: u64,
    /// Purges asked of openraft.
    pub purges: u64,
    /// Entries removed from the log's head since the node started.
    pub purged_entries: u64,
    /// Policy swaps that a rollout entry caused.
    pub rollouts_applied: u64,
    /// Rollouts this node could not load (it kept its policy).
    pub rollout_failures: u64,
    /// Whether a snapshot build is running now.
    pub building: bool,
}

#[derive(Debug, Default)]
struct Counters {
    decisions: AtomicU64,
    builds_full: AtomicU64,
    builds_incremental: AtomicU64,
    build_failures: AtomicU64,
    queued: AtomicU64,
    purges: AtomicU64,
    purged_entries: AtomicU64,
    rollouts_applied: AtomicU64,
    rollout_failures: AtomicU64,
    building: std::sync::atomic::AtomicBool,
}

/// Which policy runs and why.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PolicyOrigin {
    /// `config`, `rollout` or `local` (an operator's swap on this node only).
    pub origin: String,
    /// For a rollout: the index of its entry.
    pub index: Option<u64>,
    /// The last rollout this node could not load, and why.
    pub last_error: Option<String>,
}

/// What the controller shares with the API.
#[derive(Debug)]
pub struct ControllerShared {
    host: Arc<PolicyHost>,
    audit: Mutex<VecDeque<AuditEntry>>,
    seq: AtomicU64,
    counters: Counters,
    origin: Mutex<PolicyOrigin>,
}

impl ControllerShared {
    /// The policy host.
    pub fn host(&self) -> &Arc<PolicyHost> {
        &self.host
    }

    /// The newest `limit` decisions, oldest first.
    pub fn audit(&self, limit: usize) -> Vec<AuditEntry> {
        let audit = self.audit.lock().unwrap_or_else(|e| e.into_inner());
        let skip = audit.len().saturating_sub(limit);
        audit.iter().skip(skip).cloned().collect()
    }

    /// The counters.
    pub fn stats(&self) -> ControllerStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ControllerStats {
            decisions: g(&c.decisions),
            builds_full: g(&c.builds_full),
            builds_incremental: g(&c.builds_incremental),
            build_failures: g(&c.build_failures),
            queued: g(&c.queued),
            purges: g(&c.purges),
            purged_entries: g(&c.purged_entries),
            rollouts_applied: g(&c.rollouts_applied),
            rollout_failures: g(&c.rollout_failures),
            building: c.building.load(Ordering::Relaxed),
        }
    }

    /// Which policy runs and why.
    pub fn origin(&self) -> PolicyOrigin {
        self.origin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records that an operator swapped this node's policy by hand.
    pub fn note_local_swap(&self) {
        let mut o = self.origin.lock().unwrap_or_else(|e| e.into_inner());
        o.origin = "local".into();
        o.index = None;
    }

    fn push(&self, mut entry: AuditEntry) {
        entry.seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut audit = self.audit.lock().unwrap_or_else(|e| e.into_inner());
        if audit.len() == AUDIT_CAPACITY {
            audit.pop_front();
        }
        audit.push_back(entry);
    }
}

type Reply = oneshot::Sender<Result<Manifest, String>>;

enum Msg {
    Snapshot {
        kind: Option<SnapshotKind>,
        reply: Reply,
    },
    Check,
}

/// Swaps `source`, configured with `config`, into `host` (compile,
/// instantiate, configure, dry run) on a blocking thread.
///
/// # Errors
/// Why the policy was refused; the running one stays.
pub async fn swap_in(
    host: &Arc<PolicyHost>,
    source: PolicySource,
    config: String,
) -> Result<SwapReport, PolicyError> {
    let host = host.clone();
    tokio::task::spawn_blocking(move || host.swap(&source, &config))
        .await
        .unwrap_or_else(|e| Err(PolicyError::Engine(format!("the swap task failed: {e}"))))
}

/// [`swap_in`] of a policy the cluster's state holds.
///
/// # Errors
/// Why the policy was refused; the running one stays.
pub async fn swap_spec(
    host: &Arc<PolicyHost>,
    spec: &PolicySpec,
) -> Result<SwapReport, PolicyError> {
    let source = PolicySource::Bytes {
        label: spec.label.clone(),
        bytes: spec.wasm.clone().into(),
    };
    swap_in(host, source, spec.config.clone()).await
}

/// A handle on a node's controller.
#[derive(Clone, Debug)]
pub struct ControllerHandle {
    tx: mpsc::Sender<Msg>,
    shared: Arc<ControllerShared>,
}

impl ControllerHandle {
    /// Builds a snapshot (of `kind`, or what the chain calls for) for an
    /// operator: at once, or after the build that is running. Returns the
    /// snapshot's manifest.
    ///
    /// # Errors
    /// If the build fails or the controller has stopped.
    pub async fn snapshot(&self, kind: Option<SnapshotKind>) -> Result<Manifest, String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Msg::Snapshot { kind, reply })
            .await
            .map_err(|_| "the controller has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the controller has stopped".to_string())?
    }

    /// Asks the controller to decide now.
    pub fn check(&self) {
        let _ = self.tx.try_send(Msg::Check);
    }

    /// What the controller shares.
    pub fn shared(&self) -> &Arc<ControllerShared> {
        &self.shared
    }
}

/// What the controller works with.
pub struct Parts {
    /// The node's id.
    pub id: NodeId,
    /// Its Raft.
    pub raft: Raft<TypeConfig>,
    /// Its state machine.
    pub sm: KvStateMachine,
    /// Its log store.
    pub log: LogStore,
    /// Its policy host, with the first policy already in.
    pub host: Arc<PolicyHost>,
    /// Where free disk space is measured.
    pub data_dir: PathBuf,
    /// Snapshot transfers in flight from this node.
    pub in_flight: InFlight,
    /// Where the running policy came from.
    pub origin: PolicyOrigin,
    /// Whether the controller decides (false: openraft's own snapshot
    /// policy runs, as a baseline; operator snapshots still work).
    pub decide: bool,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Starts the controller task.
pub fn start(parts: Parts) -> (ControllerHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(64);
    let shared = Arc::new(ControllerShared {
        host: parts.host.clone(),
        audit: Mutex::new(VecDeque::with_capacity(64)),
        seq: AtomicU64::new(0),
        counters: Counters::default(),
        origin: Mutex::new(parts.origin),
    });
    let policy_rx = parts.sm.subscribe_policy();
    let first = parts.log.stats().first_index;
    let c = Controller {
        id: parts.id,
        raft: parts.raft,
        sm: parts.sm,
        log: parts.log,
        host: parts.host,
        data_dir: parts.data_dir,
        in_flight: parts.in_flight,
        shared: shared.clone(),
        building: None,
        current: Vec::new(),
        pending: None,
        last_build_ms: 0,
        started: Instant::now(),
        seen_first: first,
        retain: None,
        decide: parts.decide,
    };
    let task = tokio::spawn(c.run(rx, policy_rx));
    (ControllerHandle { tx, shared }, task)
}

/// A snapshot request waiting for the running build.
struct Pending {
    kind: Option<SnapshotKind>,
    by: String,
    waiters: Vec<Reply>,
}

/// The running build: its task, when it started, its kind.
type Build = (JoinHandle<Result<Manifest, String>>, Instant, SnapshotKind);

struct Controller {
    id: NodeId,
    raft: Raft<TypeConfig>,
    sm: KvStateMachine,
    log: LogStore,
    host: Arc<PolicyHost>,
    data_dir: PathBuf,
    in_flight: InFlight,
    shared: Arc<ControllerShared>,
    building: Option<Build>,
    /// Operators waiting for the running build.
    current: Vec<Reply>,
    pending: Option<Pending>,
    last_build_ms: u64,
    started: Instant,
    /// The log's first index last seen (to count purged entries).
    seen_first: u64,
    /// The retention last set by a decision.
    retain: Option<u32>,
    decide: bool,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Free bytes on the file system holding `dir` (0 if unknown).
fn disk_free(dir: &std::path::Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return 0;
    };
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `path` is a valid C string and `st` is writable memory of the
    // right type; statvfs only writes into it.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // c_ulong is not u64 everywhere.
    (st.f_bavail as u64).saturating_mul(st.f_frsize as u64)
}

/// What makes a change of openraft's metrics worth a decision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Notable {
    state: Option<ServerState>,
    leader: Option<NodeId>,
    behind: BTreeSet<NodeId>,
}

impl Controller {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Msg>,
        mut policy_rx: watch::Receiver<Option<AppliedPolicy>>,
    ) {
        let mut metrics = self.raft.metrics();
        let mut notable = self.notable(&metrics.borrow_and_update());
        let min_gap = Duration::from_millis(u64::from(self.host.bounds().min_check_ms));
        let mut next = tokio::time::Instant::now();
        // `Node::start` loaded the policy the state held then; entries
        // applied since (openraft applies the log tail while starting) may
        // hold a newer rollout.
        let current = policy_rx.borrow_and_update().clone();
        if current.as_ref().map(|p| p.index) != self.shared.origin().index {
            self.apply_rollout(current).await;
        }
        loop {
            // Wait for the next reason to decide.
            let woke = tokio::select! {
                biased;
                changed = policy_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let applied = policy_rx.borrow_and_update().clone();
                    self.apply_rollout(applied).await;
                    Some("policy rollout applied".to_string())
                }
                done = async { (&mut self.building.as_mut().expect("guarded").0).await },
                    if self.building.is_some() => {
                    self.finish_build(done);
                    Some("snapshot finished".to_string())
                }
                msg = rx.recv() => match msg {
                    None => return,
                    Some(Msg::Snapshot { kind, reply }) => {
                        self.operator_snapshot(kind, reply);
                        None
                    }
                    Some(Msg::Check) => Some("asked".to_string()),
                },
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return; // Raft stopped.
                    }
                    let now = self.notable(&metrics.borrow_and_update());
                    if now != notable {
                        let why = if now.state != notable.state {
                            "role changed"
                        } else if now.leader != notable.leader {
                            "leader changed"
                        } else if now.behind.difference(&notable.behind).next().is_some() {
                            "a follower fell behind"
                        } else {
                            ""
                        };
                        notable = now;
                        (!why.is_empty()).then(|| why.to_string())
                    } else {
                        None
                    }
                }
                () = tokio::time::sleep_until(next) => Some("scheduled".to_string()),
            };
            let Some(trigger) = woke else {
                continue;
            };
            if !self.decide {
                next = tokio::time::Instant::now() + Duration::from_secs(3600);
                continue;
            }
            if trigger != "scheduled" {
                // An event: decide soon, but not more often than the bounds
                // allow (events come in bursts).
                tokio::time::sleep(min_gap).await;
            }
            if policy_rx.has_changed().unwrap_or(false) {
                let applied = policy_rx.borrow_and_update().clone();
                self.apply_rollout(applied).await;
            }
            let wait = self.decide(&trigger).await;
            next = tokio::time::Instant::now() + wait;
        }
    }

    fn notable(&self, m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>) -> Notable {
        let mut behind = BTreeSet::new();
        if let (Some(repl), Some(last)) = (&m.replication, m.last_log_index) {
            let first = self.log.stats().first_index;
            for (id, matched) in repl {
                let matched = matched.map_or(0, |l| l.index);
                if *id != self.id
                    && (last.saturating_sub(matched) > LAG_EVENT_ENTRIES || matched + 1 < first)
                {
                    behind.insert(*id);
                }
            }
        }
        Notable {
            state: Some(m.state),
            leader: m.current_leader,
            behind,
        }
    }

    async fn apply_rollout(&mut self, applied: Option<AppliedPolicy>) {
        let Some(applied) = applied else {
            return;
        };
        let result = swap_spec(&self.host, &applied.spec).await;
        let mut origin = self.shared.origin.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(report) => {
                self.shared
                    .counters
                    .rollouts_applied
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    index = applied.index, policy = %report.meta.name,
                    hash = %report.meta.short_hash(), "rolled out policy now decides"
                );
                origin.origin = "rollout".into();
                origin.index = Some(applied.index);
            }
            Err(e) => {
                self.shared
                    .counters
                    .rollout_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(index = applied.index, error = %e, "could not load the rolled-out policy; keeping the running one");
                origin.last_error = Some(format!("rollout at index {}: {e}", applied.index));
            }
        }
    }

    fn operator_snapshot(&mut self, kind: Option<SnapshotKind>, reply: Reply) {
        if self.building.is_some() {
            self.queue(kind, "operator (admin API)", Some(reply));
        } else {
            self.start_build(kind, "operator (admin API)".into());
            self.current.push(reply);
        }
    }

    /// Queues a snapshot request behind the running build. Requests merge:
    /// a full one wins.
    fn queue(&mut self, kind: Option<SnapshotKind>, by: &str, reply: Option<Reply>) {
        self.shared.counters.queued.fetch_add(1, Ordering::Relaxed);
        let p = self.pending.get_or_insert_with(|| Pending {
            kind,
            by: by.to_string(),
            waiters: Vec::new(),
        });
        if kind == Some(SnapshotKind::Full) || p.kind.is_none() {
            p.kind = kind.or(p.kind);
        }
        if let Some(r) = reply {
            p.waiters.push(r);
        }
    }

    fn start_build(&mut self, kind: Option<SnapshotKind>, by: String) {
        let (sm, raft) = (self.sm.clone(), self.raft.clone());
        let chosen = self.sm.planned_kind(kind);
        let task = tokio::spawn(async move {
            let m = sm.build_for(kind, &by).await.map_err(|e| e.to_string())?;
            // Tell openraft: it then may purge up to the snapshot and sends
            // it to followers that need it.
            sm.hand_off(m.clone());
            if raft.trigger().snapshot().await.is_ok() {
                let want = m.last_log_id;
                let mut metrics = raft.metrics();
                let _ =
                    tokio::time::timeout(HANDOFF_WAIT, metrics.wait_for(|x| x.snapshot >= want))
                        .await;
            }
            Ok(m)
        });
        let c = &self.shared.counters;
        match chosen {
            SnapshotKind::Full => c.builds_full.fetch_add(1, Ordering::Relaxed),
            SnapshotKind::Incremental => c.builds_incremental.fetch_add(1, Ordering::Relaxed),
        };
        self.building = Some((task, Instant::now(), chosen));
        c.building.store(true, Ordering::Relaxed);
    }

    fn finish_build(&mut self, done: Result<Result<Manifest, String>, tokio::task::JoinError>) {
        let Some((_, started, kind)) = self.building.take() else {
            return;
        };
        self.shared
            .counters
            .building
            .store(false, Ordering::Relaxed);
        self.last_build_ms = started.elapsed().as_millis() as u64;
        let result = done.unwrap_or_else(|e| Err(format!("snapshot task failed: {e}")));
        match &result {
            Ok(m) => tracing::info!(
                snapshot = %m.id, %kind, last_index = m.last_log_id.map_or(0, |l| l.index),
                bytes_written = m.bytes_written, ms = self.last_build_ms, "snapshot built"
            ),
            Err(e) => {
                self.shared
                    .counters
                    .build_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "snapshot build failed; its changes are kept for the next one");
            }
        }
        for r in self.current.drain(..) {
            let _ = r.send(result.clone());
        }
        if let Some(p) = self.pending.take() {
            let applied = self.sm.last_applied().map_or(0, |l| l.index);
            let covered = self
                .sm
                .current_manifest()
                .and_then(|m| m.last_log_id)
                .map_or(0, |l| l.index);
            if applied <= covered && result.is_ok() && !p.waiters.is_empty() {
                // Nothing new since the build that just finished: it is the
                // answer.
                for r in p.waiters {
                    let _ = r.send(result.clone());
                }
            } else if applied > covered || !p.waiters.is_empty() {
                self.start_build(p.kind, p.by);
                self.current = p.waiters;
            }
        }
    }

    fn facts(&mut self) -> Facts {
        let m = self.raft.metrics().borrow().clone();
        let st = self.log.stats();
        if st.first_index > self.seen_first {
            self.shared
                .counters
                .purged_entries
                .fetch_add(st.first_index - self.seen_first, Ordering::Relaxed);
        }
        self.seen_first = self.seen_first.max(st.first_index);
        let now_ms = unix_ms();
        let role = match m.state {
            ServerState::Leader => Role::Leader,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Follower | ServerState::Shutdown => Role::Follower,
        };
        let applied = self.sm.last_applied().map_or(0, |l| l.index);
        let mut followers = Vec::new();
        if let Some(repl) = &m.replication {
            for (id, matched) in repl {
                if *id == self.id {
                    continue;
                }
                let matched = matched.map(|l| l.index);
                self.in_flight.settle(*id, matched, st.last_index);
                followers.push(Follower {
                    id: *id,
                    matched,
                    lag_entries: st.last_index.saturating_sub(matched.unwrap_or(0)),
                    snapshot_in_flight: self.in_flight.get(*id),
                });
            }
        }
        let log = LogFacts {
            now_ms,
            role,
            first_index: st.first_index,
            last_index: st.last_index,
            committed: st.committed.unwrap_or(0).max(applied),
            applied,
            entries: st.entries,
            bytes: st.bytes,
            append_rate: st.append_rate,
            byte_rate: st.byte_rate,
            followers,
            disk_free_bytes: disk_free(&self.data_dir),
        };
        let manifest = self.sm.current_manifest();
        let last_index = manifest
            .as_ref()
            .and_then(|m| m.last_log_id)
            .map(|l| l.index);
        let entries_since = applied.saturating_sub(last_index.unwrap_or(0));
        // The log's bytes per entry, times the entries since the snapshot.
        let bytes_since = if st.entries == 0 {
            0
        } else {
            (st.bytes as u128 * u128::from(entries_since.min(st.entries)) / u128::from(st.entries))
                as u64
        };
        let stats = self.sm.stats();
        let snapshot = SnapshotFacts {
            last_index,
            age_ms: manifest.as_ref().map_or_else(
                || self.started.elapsed().as_millis() as u64,
                |m| now_ms.saturating_sub(m.created_unix_ms),
            ),
            entries_since,
            bytes_since,
            chain_length: manifest.as_ref().map_or(0, |m| 1 + m.deltas.len() as u32),
            chain_bytes: manifest.as_ref().map_or(0, Manifest::chain_bytes),
            base_bytes: manifest.as_ref().map_or(0, |m| m.base.bytes()),
            state_keys: self.sm.len() as u64,
            state_bytes: self.sm.state_bytes(),
            dirty_keys: stats.dirty_keys,
            last_build_ms: self.last_build_ms,
            in_progress: self.building.is_some(),
        };
        Facts { log, snapshot }
    }

    /// Makes one decision and carries it out; returns when to decide next.
    async fn decide(&mut self, trigger: &str) -> Duration {
        let facts = self.facts();
        let host = self.host.clone();
        let f = facts.clone();
        let record = match tokio::task::spawn_blocking(move || host.decide(&f)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "the policy call panicked");
                return Duration::from_millis(u64::from(self.host.bounds().max_check_ms));
            }
        };
        self.shared
            .counters
            .decisions
            .fetch_add(1, Ordering::Relaxed);
        let d = &record.decision;
        let by = format!("policy {} ({})", record.policy, record.hash);
        let mut actions = Vec::new();
        if let Some(kind) = d.snapshot {
            let kind = to_kind(kind);
            self.start_build(Some(kind), by.clone());
            actions.push(format!("started {} snapshot", article(kind)));
        } else if let Some(kind) = record.proposed.snapshot
            && record.clamps.contains(&Clamp::SnapshotInProgress)
        {
            self.queue(Some(to_kind(kind)), &by, None);
            actions.push(format!(
                "queued {} snapshot behind the running build",
                article(to_kind(kind))
            ));
        }
        if let Some(upto) = d.purge_up_to {
            match self.raft.trigger().purge_log(upto).await {
                Ok(()) => {
                    self.shared.counters.purges.fetch_add(1, Ordering::Relaxed);
                    actions.push(format!("purge up to {upto}"));
                }
                Err(e) => actions.push(format!("purge up to {upto} refused: {e}")),
            }
        }
        if let Some(n) = d.retain_snapshots
            && self.retain != Some(n)
        {
            self.sm.set_retain(n as usize);
            self.retain = Some(n);
            actions.push(format!("retain {n} snapshots"));
        }
        let wait = Duration::from_millis(u64::from(d.next_check_ms));
        if actions.is_empty() {
            tracing::debug!(
                target: "ramrod::controller", %trigger, policy = %record.policy, hash = %record.hash,
                reason = %d.reason, next_check_ms = d.next_check_ms, "decision: wait"
            );
        } else {
            tracing::info!(
                target: "ramrod::controller", %trigger, policy = %record.policy, hash = %record.hash,
                decided_by = ?record.decided_by, clamps = ?record.clamps, reason = %d.reason,
                actions = ?actions, "decision"
            );
        }
        self.shared.push(AuditEntry {
            seq: 0,
            at_unix_ms: facts.log.now_ms,
            trigger: trigger.to_string(),
            facts,
            record,
            actions,
        });
        wait
    }
}

fn article(k: SnapshotKind) -> &'static str {
    match k {
        SnapshotKind::Full => "a full",
        SnapshotKind::Incremental => "an incremental",
    }
}

fn to_kind(k: sdk::SnapshotKind) -> SnapshotKind {
    match k {
        sdk::SnapshotKind::Full => SnapshotKind::Full,
        sdk::SnapshotKind::Incremental => SnapshotKind::Incremental,
    }
}
