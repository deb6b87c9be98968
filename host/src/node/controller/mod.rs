//! The compaction controller: the one place where a node decides to build a
//! snapshot, purge its log or change snapshot retention.
//!
//! Three steps, each in its own place:
//! - **observe** (`observe`): the facts, read-only: log store statistics,
//!   the snapshot chain, follower progress and in-flight snapshot transfers,
//!   free disk space, the time;
//! - **plan** ([`plan`], pure): the policy host's clamped decision and the
//!   controller's state become [`Action`]s;
//! - **execute** (this module, the driver): the only code that touches
//!   openraft, the state machine and the counters.
//!
//! It decides again when the policy says (within the configured bounds) and
//! after the events of [`Trigger`].
//!
//! Guarantees:
//! - at most one snapshot build runs at a time, and a request that arrives
//!   while one runs (from the policy or an operator) is carried out after it;
//! - no snapshot chain grows past `snapshots.max-chain` layers: an
//!   incremental snapshot that would is built full, and the audit says so;
//! - every decision is recorded in a bounded audit log (policy name and
//!   hash, facts, what the policy chose, what the host clamped, what was
//!   done) and as a `tracing` event;
//! - purges go through openraft (`trigger().purge_log`), which never purges
//!   past the snapshot it knows nor logs a replication stream is reading; on
//!   top of that the host's clamp keeps every entry a follower with a
//!   snapshot transfer in flight needs.

mod audit;
mod observe;
pub mod plan;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::Raft;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use audit::{AuditEntry, ControllerShared, ControllerStats, Done, PolicyOrigin};
pub use plan::{Action, Trigger};

use audit::Counters;

use super::raft_rpc::InFlight;
use crate::log_store::LogStore;
use crate::policy::{PolicyError, PolicyHost, PolicySource, SwapReport};
use crate::raft::{NodeId, TypeConfig};
use crate::snapshot::{Manifest, SnapshotError, SnapshotKind};
use crate::state_machine::{AppliedPolicy, KvStateMachine};

/// Decisions kept in the audit log.
pub const AUDIT_CAPACITY: usize = 512;

/// A follower this many entries behind counts as fallen behind (an event).
const LAG_EVENT_ENTRIES: u64 = 10_000;

/// How often a rollout whose component is not here yet is retried.
const ROLLOUT_RETRY: Duration = Duration::from_secs(1);

/// How long to wait for openraft to take a snapshot the controller built.
const HANDOFF_WAIT: Duration = Duration::from_secs(10);

/// Why a snapshot the controller was asked for was not built.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerError {
    /// The controller has stopped (the node is shutting down).
    #[error("the compaction controller has stopped")]
    Stopped,
    /// Writing the snapshot failed; its changes are kept for the next one.
    #[error("snapshot build failed: {0}")]
    Build(Arc<SnapshotError>),
    /// The build task panicked.
    #[error("snapshot build task failed: {0}")]
    Panicked(String),
}

type BuildResult = Result<Manifest, ControllerError>;
type Reply = oneshot::Sender<BuildResult>;

enum Msg {
    Snapshot {
        kind: Option<SnapshotKind>,
        reply: Reply,
    },
    Check,
    /// Abort the running build, wait for it, and stop.
    Stop(oneshot::Sender<()>),
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

/// Why a rolled-out policy does not run on this node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RolloutError {
    /// Its component could not be had yet (no copy that matches its hash
    /// in the store or on any member reached): retried.
    #[error("waiting for its component (blake3 {hash}): {source}")]
    Fetch {
        /// The component's hash.
        hash: String,
        /// Why.
        source: SnapshotError,
    },
    /// The component was refused here.
    #[error(transparent)]
    Refused(#[from] PolicyError),
}

/// [`swap_in`] of a policy the cluster's state holds, its component taken
/// from the store or fetched ([`KvStateMachine::policy_bytes`]).
///
/// # Errors
/// Why the policy does not run; the running one stays.
pub async fn swap_applied(
    host: &Arc<PolicyHost>,
    sm: &KvStateMachine,
    applied: &AppliedPolicy,
) -> Result<SwapReport, RolloutError> {
    let p = &applied.policy;
    let bytes = sm
        .policy_bytes(applied)
        .await
        .map_err(|source| RolloutError::Fetch {
            hash: p.hash.clone(),
            source,
        })?;
    let source = PolicySource::Bytes {
        label: p.label.clone(),
        bytes: Arc::from(&bytes[..]),
    };
    Ok(swap_in(host, source, p.config.clone()).await?)
}

/// A handle on a node's controller.
#[derive(Clone, Debug)]
pub struct ControllerHandle {
    tx: mpsc::Sender<Msg>,
    shared: Arc<ControllerShared>,
}

impl ControllerHandle {
    /// Builds a snapshot (of `kind`, or what the chain calls for; the chain
    /// bound applies) for an operator: at once, or after the build that is
    /// running. Returns the snapshot's manifest.
    ///
    /// # Errors
    /// [`ControllerError`]: the build failed, or the controller stopped.
    pub async fn snapshot(&self, kind: Option<SnapshotKind>) -> BuildResult {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Msg::Snapshot { kind, reply })
            .await
            .map_err(|_| ControllerError::Stopped)?;
        answer.await.map_err(|_| ControllerError::Stopped)?
    }

    /// Stops the controller: a running build is aborted (a crash at that
    /// point leaves the old snapshots), and waited for, so nothing writes
    /// snapshots once this returns. Operators waiting get
    /// [`ControllerError::Stopped`].
    pub async fn stop(&self) {
        let (done, stopped) = oneshot::channel();
        if self.tx.send(Msg::Stop(done)).await.is_ok() {
            let _ = stopped.await;
        }
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
        waiting: None,
    };
    let task = tokio::spawn(c.run(rx, policy_rx));
    (ControllerHandle { tx, shared }, task)
}

/// A snapshot request waiting for the running build.
struct Pending {
    /// `None`: what the chain calls for when it starts.
    kind: Option<SnapshotKind>,
    by: String,
    waiters: Vec<Reply>,
}

/// The running build.
struct Build {
    task: JoinHandle<BuildResult>,
    started: Instant,
    kind: SnapshotKind,
}

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
    /// A rollout whose component could not be had yet: retried before
    /// each decision (the running policy decides meanwhile).
    waiting: Option<AppliedPolicy>,
}

const OPERATOR: &str = "operator (admin API)";

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
                    Some(Trigger::PolicyRollout)
                }
                done = async { (&mut self.building.as_mut().expect("guarded").task).await },
                    if self.building.is_some() => {
                    self.finish_build(done);
                    Some(Trigger::SnapshotFinished)
                }
                msg = rx.recv() => match msg {
                    None => return,
                    Some(Msg::Snapshot { kind, reply }) => {
                        self.operator_snapshot(kind, reply);
                        None
                    }
                    Some(Msg::Check) => Some(Trigger::Asked),
                    Some(Msg::Stop(done)) => {
                        if let Some(build) = self.building.take() {
                            build.task.abort();
                            let _ = build.task.await;
                        }
                        let _ = done.send(());
                        return;
                    }
                },
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return; // Raft stopped.
                    }
                    let now = self.notable(&metrics.borrow_and_update());
                    let trigger = notable.trigger(&now);
                    notable = now;
                    trigger
                }
                () = tokio::time::sleep_until(next) => Some(Trigger::Scheduled),
            };
            let Some(trigger) = woke else {
                continue;
            };
            if !self.decide {
                next = tokio::time::Instant::now() + Duration::from_secs(3600);
                continue;
            }
            if trigger.is_event() {
                // Events come in bursts: decide soon, but not more often
                // than the bounds allow.
                tokio::time::sleep(min_gap).await;
            }
            if policy_rx.has_changed().unwrap_or(false) {
                let applied = policy_rx.borrow_and_update().clone();
                self.apply_rollout(applied).await;
            } else if let Some(w) = self.waiting.take() {
                self.apply_rollout(Some(w)).await;
            }
            let mut wait = self.decide(trigger).await;
            if self.waiting.is_some() {
                wait = wait.min(ROLLOUT_RETRY);
            }
            next = tokio::time::Instant::now() + wait;
        }
    }

    async fn apply_rollout(&mut self, applied: Option<AppliedPolicy>) {
        let Some(applied) = applied else {
            return;
        };
        let retry = self
            .waiting
            .take()
            .is_some_and(|w| w.index == applied.index);
        let result = swap_applied(&self.host, &self.sm, &applied).await;
        let c = &self.shared.counters;
        let mut origin = self.shared.origin.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Err(e @ RolloutError::Fetch { .. }) => {
                // Counted once per rollout; retried until it comes.
                if !retry {
                    Counters::add(&c.rollout_failures, 1);
                    tracing::warn!(index = applied.index, error = %e, "the rolled-out policy is not here yet; the running one decides until it is");
                }
                origin.last_error = Some(format!("rollout at index {}: {e}", applied.index));
                self.waiting = Some(applied);
            }
            Ok(report) => {
                Counters::add(&c.rollouts_applied, 1);
                tracing::info!(
                    index = applied.index, policy = %report.meta.name,
                    hash = %report.meta.short_hash(), "rolled out policy now decides"
                );
                origin.origin = "rollout".into();
                origin.index = Some(applied.index);
                // An error about this very rollout (its component was
                // not here at first) is over.
                let about = format!("rollout at index {}:", applied.index);
                if origin
                    .last_error
                    .as_ref()
                    .is_some_and(|e| e.starts_with(&about))
                {
                    origin.last_error = None;
                }
            }
            Err(e) => {
                Counters::add(&c.rollout_failures, 1);
                tracing::error!(index = applied.index, error = %e, "could not load the rolled-out policy; keeping the running one");
                origin.last_error = Some(format!("rollout at index {}: {e}", applied.index));
            }
        }
    }

    /// The planner's view of the controller and the chain.
    fn plan_state(&self) -> plan::PlanState {
        plan::PlanState {
            building: self.building.is_some(),
            retain: self.retain,
            chain_length: self.sm.chain().1,
            max_chain: self.host.bounds().max_chain,
        }
    }

    fn operator_snapshot(&mut self, kind: Option<SnapshotKind>, reply: Reply) {
        match plan::request(kind, &self.plan_state()) {
            plan::Request::Queue(kind) => self.queue(kind, OPERATOR, Some(reply)),
            plan::Request::Build(kind) => {
                self.start_build(kind, OPERATOR.into());
                self.current.push(reply);
            }
        }
    }

    /// Queues a snapshot request behind the running build; requests merge.
    fn queue(&mut self, kind: Option<SnapshotKind>, by: &str, reply: Option<Reply>) {
        Counters::add(&self.shared.counters.queued, 1);
        let p = self.pending.get_or_insert_with(|| Pending {
            kind,
            by: by.to_string(),
            waiters: Vec::new(),
        });
        p.kind = plan::merge(p.kind, kind);
        p.waiters.extend(reply);
    }

    /// Starts a build of `kind` (already planned: the state machine builds
    /// exactly this kind). The one place builds are counted.
    fn start_build(&mut self, kind: SnapshotKind, by: String) {
        let (sm, raft) = (self.sm.clone(), self.raft.clone());
        let task = tokio::spawn(async move {
            let m = sm
                .build_for(kind, &by)
                .await
                .map_err(|e| ControllerError::Build(Arc::new(e)))?;
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
        Counters::add(
            match kind {
                SnapshotKind::Full => &c.builds_full,
                SnapshotKind::Incremental => &c.builds_incremental,
            },
            1,
        );
        c.building.store(true, Ordering::Relaxed);
        self.building = Some(Build {
            task,
            started: Instant::now(),
            kind,
        });
    }

    fn finish_build(&mut self, done: Result<BuildResult, tokio::task::JoinError>) {
        let Some(build) = self.building.take() else {
            return;
        };
        let c = &self.shared.counters;
        c.building.store(false, Ordering::Relaxed);
        self.last_build_ms = build.started.elapsed().as_millis() as u64;
        let result = done.unwrap_or_else(|e| Err(ControllerError::Panicked(e.to_string())));
        match &result {
            Ok(m) => {
                Counters::add(&c.build_ms, self.last_build_ms);
                c.last_build_ms.store(self.last_build_ms, Ordering::Relaxed);
                tracing::info!(
                snapshot = %m.id, kind = %build.kind, last_index = m.last_log_id.map_or(0, |l| l.index),
                bytes_written = m.bytes_written, ms = self.last_build_ms, "snapshot built"
                );
            }
            Err(e) => {
                Counters::add(&c.build_failures, 1);
                tracing::warn!(error = %e, "snapshot build failed; its changes are kept for the next one");
            }
        }
        for r in self.current.drain(..) {
            let _ = r.send(result.clone());
        }
        let pending = self.pending.take();
        let queued = pending.as_ref().map(|p| plan::Queued {
            kind: p.kind,
            waited_for: !p.waiters.is_empty(),
        });
        let applied = self.sm.last_applied().map_or(0, |l| l.index);
        let covered = self.sm.chain().0.unwrap_or(0);
        let built = result.as_ref().ok().map(|m| m.kind);
        let next = plan::after_build(queued, applied, covered, built, &self.plan_state());
        let Some(p) = pending else {
            return;
        };
        match next {
            plan::AfterBuild::Drop => {}
            plan::AfterBuild::AnswerWithLast => {
                for r in p.waiters {
                    let _ = r.send(result.clone());
                }
            }
            plan::AfterBuild::Build(kind) => {
                self.start_build(kind, p.by);
                self.current = p.waiters;
            }
        }
    }

    /// Carries out one planned action.
    async fn execute(&mut self, action: Action, by: &str) -> Done {
        let mut refused = None;
        match action {
            Action::Build(kind) => self.start_build(kind, by.to_string()),
            Action::Queue(kind) => self.queue(Some(kind), by, None),
            Action::Purge(upto) => match self.raft.trigger().purge_log(upto).await {
                Ok(()) => Counters::add(&self.shared.counters.purges, 1),
                Err(e) => refused = Some(e.to_string()),
            },
            Action::Retain(n) => {
                self.sm.set_retain(n as usize);
                self.retain = Some(n);
            }
        }
        Done { action, refused }
    }

    /// Makes one decision and carries it out; returns when to decide next.
    async fn decide(&mut self, trigger: Trigger) -> Duration {
        let facts = self.facts();
        let first = facts.log.first_index;
        if first > self.seen_first {
            Counters::add(
                &self.shared.counters.purged_entries,
                first - self.seen_first,
            );
            self.seen_first = first;
        }
        let host = self.host.clone();
        let f = facts.clone();
        let record = match tokio::task::spawn_blocking(move || host.decide(&f)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "the policy call panicked");
                return Duration::from_millis(u64::from(self.host.bounds().max_check_ms));
            }
        };
        Counters::add(&self.shared.counters.decisions, 1);
        let by = format!("policy {} ({})", record.policy, record.hash);
        let planned = plan::decision(&record.decision, record.deferred, &self.plan_state());
        let mut actions = Vec::with_capacity(planned.len());
        for action in planned {
            actions.push(self.execute(action, &by).await);
        }
        let d = &record.decision;
        let wait = Duration::from_millis(u64::from(d.next_check_ms));
        if actions.is_empty() {
            tracing::debug!(
                target: "ramrod::controller", %trigger, policy = %record.policy, hash = %record.hash,
                reason = %d.reason, next_check_ms = d.next_check_ms, "decision: wait"
            );
        } else {
            let done: Vec<String> = actions.iter().map(Done::to_string).collect();
            tracing::info!(
                target: "ramrod::controller", %trigger, policy = %record.policy, hash = %record.hash,
                decided_by = ?record.decided_by, clamps = ?record.clamps, reason = %d.reason,
                actions = ?done, "decision"
            );
        }
        self.shared.push(AuditEntry {
            seq: 0,
            at_unix_ms: facts.log.now_ms,
            trigger,
            facts,
            record,
            actions,
        });
        wait
    }
}
