//! Planning, with no I/O: what the controller does about a clamped decision,
//! an operator's request or a finished build, as [`Action`] values. The
//! driver (`super`) carries them out; this module never touches openraft,
//! the state machine or a counter, so every rule here is a table test.

use serde::{Deserialize, Serialize};

use crate::sdk::{self, Clamp, Decision, SnapshotKind};

/// What made the controller decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Trigger {
    /// The time the last decision asked for (`next-check-ms`) came.
    Scheduled,
    /// Someone asked for a decision now (a local policy swap, a test).
    Asked,
    /// This node's Raft role changed.
    RoleChanged,
    /// The cluster's leader changed.
    LeaderChanged,
    /// A follower fell behind (far behind the leader, or below its log).
    FollowerBehind,
    /// A snapshot build ended.
    SnapshotFinished,
    /// A policy rollout was applied and its policy now decides.
    PolicyRollout,
}

impl Trigger {
    /// Whether the trigger is an event (which come in bursts: the decision
    /// waits `min-check-ms` first) rather than the schedule.
    pub fn is_event(self) -> bool {
        self != Trigger::Scheduled
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Trigger::Scheduled => "scheduled",
            Trigger::Asked => "asked",
            Trigger::RoleChanged => "role changed",
            Trigger::LeaderChanged => "leader changed",
            Trigger::FollowerBehind => "a follower fell behind",
            Trigger::SnapshotFinished => "snapshot finished",
            Trigger::PolicyRollout => "policy rollout applied",
        })
    }
}

/// One thing the controller does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Action {
    /// Start building a snapshot of this kind now.
    Build(SnapshotKind),
    /// Build a snapshot of this kind once the running build ends (merged
    /// with what is queued already: full wins).
    Queue(SnapshotKind),
    /// Ask openraft to purge the log up to this index.
    Purge(u64),
    /// Keep this many snapshots from now on.
    Retain(u32),
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Build(k) => write!(f, "started {} snapshot", article(*k)),
            Action::Queue(k) => write!(
                f,
                "queued {} snapshot behind the running build",
                article(*k)
            ),
            Action::Purge(i) => write!(f, "purge up to {i}"),
            Action::Retain(n) => write!(f, "retain {n} snapshots"),
        }
    }
}

fn article(k: SnapshotKind) -> &'static str {
    match k {
        SnapshotKind::Full => "a full",
        SnapshotKind::Incremental => "an incremental",
    }
}

/// What the planner knows of the controller and the snapshot chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanState {
    /// A snapshot build is running.
    pub building: bool,
    /// The retention the last decision set, if any.
    pub retain: Option<u32>,
    /// Layers (base + deltas) of the newest snapshot; 0 without one.
    pub chain_length: u32,
    /// The longest chain kept ([`Bounds::max_chain`](crate::sdk::Bounds::max_chain)).
    pub max_chain: u32,
}

impl PlanState {
    /// The kind a build asked to be `asked` (`None`: what the chain calls
    /// for) is, with the host's chain bound applied, and the correction made.
    pub fn kind(&self, asked: Option<SnapshotKind>) -> (SnapshotKind, Option<Clamp>) {
        let has_base = self.chain_length > 0;
        let (kind, clamp) = sdk::snapshot_kind(
            asked.unwrap_or(SnapshotKind::Incremental),
            has_base,
            self.chain_length,
            self.max_chain,
        );
        // With no kind asked for, a first snapshot is full by nature: not a
        // correction.
        (kind, clamp.filter(|_| asked.is_some() || has_base))
    }
}

/// The actions for a decision the host has clamped (`deferred`: the
/// snapshot the clamp held back because a build is running).
pub fn decision(d: &Decision, deferred: Option<SnapshotKind>, state: &PlanState) -> Vec<Action> {
    let mut out = Vec::new();
    match (d.snapshot, deferred) {
        // The clamp saw a build running: it never leaves a snapshot in the
        // decision then, but the controller's view is the one that counts.
        (Some(k), _) if state.building => out.push(Action::Queue(k)),
        (Some(k), _) => out.push(Action::Build(k)),
        (None, Some(k)) => out.push(Action::Queue(k)),
        (None, None) => {}
    }
    if let Some(i) = d.purge_up_to {
        out.push(Action::Purge(i));
    }
    if let Some(n) = d.retain_snapshots
        && state.retain != Some(n)
    {
        out.push(Action::Retain(n));
    }
    out
}

/// What to do about an operator's snapshot request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Build a snapshot of this kind now.
    Build(SnapshotKind),
    /// Queue the request (`None`: the kind the chain calls for once the
    /// running build has ended).
    Queue(Option<SnapshotKind>),
}

/// The plan for an operator's snapshot request of `asked` (`None`: what the
/// chain calls for): a build now, or queued behind the running one, its
/// kind chosen when it starts.
pub fn request(asked: Option<SnapshotKind>, state: &PlanState) -> Request {
    if state.building {
        Request::Queue(asked)
    } else {
        Request::Build(state.kind(asked).0)
    }
}

/// Merges a queued snapshot request with a new one: full wins, and a kind
/// asked for wins over none.
pub fn merge(queued: Option<SnapshotKind>, new: Option<SnapshotKind>) -> Option<SnapshotKind> {
    match (queued, new) {
        (Some(SnapshotKind::Full), _) | (_, Some(SnapshotKind::Full)) => Some(SnapshotKind::Full),
        (Some(k), _) | (None, Some(k)) => Some(k),
        (None, None) => None,
    }
}

/// A queued request, as the planner sees it when a build ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queued {
    /// The merged kind asked for (`None`: what the chain calls for).
    pub kind: Option<SnapshotKind>,
    /// Operators are waiting for its manifest.
    pub waited_for: bool,
}

/// What to do with the queued request when a build ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterBuild {
    /// Nothing queued, or only a policy's request with nothing applied since
    /// the build: drop it.
    Drop,
    /// Nothing was applied since the build that just succeeded, and it is of
    /// the kind asked for: it answers the waiting operators.
    AnswerWithLast,
    /// Start the queued build (of this kind, the chain bound applied to the
    /// chain the finished build left).
    Build(SnapshotKind),
}

/// The rule for a queued request when a build ends: `applied` is the state
/// machine's applied index, `covered` the newest snapshot's, `built` the
/// kind of the build that ended if it succeeded; `state` describes the chain
/// it left.
pub fn after_build(
    queued: Option<Queued>,
    applied: u64,
    covered: u64,
    built: Option<SnapshotKind>,
    state: &PlanState,
) -> AfterBuild {
    let Some(q) = queued else {
        return AfterBuild::Drop;
    };
    let news = applied > covered;
    // A full snapshot answers any request; an incremental one only a
    // request that did not ask for a full one.
    let answers =
        built.is_some_and(|b| b == SnapshotKind::Full || q.kind != Some(SnapshotKind::Full));
    if !news && answers && q.waited_for {
        AfterBuild::AnswerWithLast
    } else if news || q.waited_for {
        AfterBuild::Build(state.kind(q.kind).0)
    } else {
        AfterBuild::Drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SnapshotKind::{Full, Incremental};

    fn state(building: bool, chain_length: u32) -> PlanState {
        PlanState {
            building,
            retain: Some(3),
            chain_length,
            max_chain: 4,
        }
    }

    /// A decision with a snapshot of `snap`, purge `purge`, retain `retain`.
    fn d(snap: Option<SnapshotKind>, purge: Option<u64>, retain: Option<u32>) -> Decision {
        Decision {
            snapshot: snap,
            purge_up_to: purge,
            retain_snapshots: retain,
            ..Decision::wait(1000, "")
        }
    }

    fn check(
        state: &PlanState,
        decision: Decision,
        deferred: Option<SnapshotKind>,
        expect: &[Action],
    ) {
        assert_eq!(
            super::decision(&decision, deferred, state),
            expect,
            "{decision:?} deferred {deferred:?} on {state:?}"
        );
    }

    #[test]
    fn every_trigger_decides_and_only_the_schedule_skips_the_minimum_gap() {
        use Trigger::*;
        // (trigger, an event?, how the audit shows it)
        let table = [
            (Scheduled, false, "scheduled"),
            (Asked, true, "asked"),
            (RoleChanged, true, "role changed"),
            (LeaderChanged, true, "leader changed"),
            (FollowerBehind, true, "a follower fell behind"),
            (SnapshotFinished, true, "snapshot finished"),
            (PolicyRollout, true, "policy rollout applied"),
        ];
        for (t, event, shown) in table {
            assert_eq!(t.is_event(), event, "{t:?}");
            assert_eq!(t.to_string(), shown);
            // A value in the audit, not a string to parse.
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<Trigger>(&json).unwrap(), t);
        }
    }

    #[test]
    fn a_decision_becomes_actions() {
        use Action::*;
        let idle = state(false, 2);
        let busy = state(true, 2);
        check(&idle, d(None, None, None), None, &[]);
        check(&idle, d(Some(Full), None, None), None, &[Build(Full)]);
        check(
            &idle,
            d(Some(Incremental), Some(90), None),
            None,
            &[Build(Incremental), Purge(90)],
        );
        // The clamp deferred a snapshot: queued, never lost.
        check(
            &busy,
            d(None, Some(90), None),
            Some(Incremental),
            &[Queue(Incremental), Purge(90)],
        );
        // A build started after the facts were gathered: queue, don't race.
        check(&busy, d(Some(Full), None, None), None, &[Queue(Full)]);
        // Retention only when it changes.
        check(&idle, d(None, None, Some(3)), None, &[]);
        check(&idle, d(None, None, Some(5)), None, &[Retain(5)]);
    }

    #[test]
    fn operator_requests_build_now_or_queue() {
        assert_eq!(request(Some(Full), &state(false, 2)), Request::Build(Full));
        assert_eq!(request(None, &state(false, 2)), Request::Build(Incremental));
        assert_eq!(
            request(None, &state(false, 0)),
            Request::Build(Full),
            "no base"
        );
        // Queued as asked: the kind is chosen when the build starts, on the
        // chain the running build leaves.
        assert_eq!(request(None, &state(true, 0)), Request::Queue(None));
        assert_eq!(
            request(Some(Incremental), &state(true, 4)),
            Request::Queue(Some(Incremental))
        );
        // The chain bound holds for operators too.
        assert_eq!(
            request(Some(Incremental), &state(false, 4)),
            Request::Build(Full)
        );
    }

    #[test]
    fn the_chain_bound_turns_incrementals_full() {
        let s = state(false, 4);
        assert_eq!(
            s.kind(Some(Incremental)),
            (Full, Some(Clamp::ChainTooLong { length: 4, max: 4 }))
        );
        assert_eq!(state(false, 3).kind(Some(Incremental)), (Incremental, None));
        assert_eq!(state(false, 0).kind(None), (Full, None));
        assert_eq!(
            state(false, 0).kind(Some(Incremental)),
            (Full, Some(Clamp::IncrementalWithoutBase))
        );
        // Asking for incrementals for ever: the chain cycles 1..=max.
        let mut s = state(false, 0);
        let mut longest = 0;
        for _ in 0..100 {
            let (kind, _) = s.kind(Some(Incremental));
            s.chain_length = match kind {
                Full => 1,
                Incremental => s.chain_length + 1,
            };
            longest = longest.max(s.chain_length);
        }
        assert_eq!(longest, s.max_chain);
    }

    #[test]
    fn queued_requests_merge_and_full_wins() {
        assert_eq!(
            merge(Some(Incremental), Some(Incremental)),
            Some(Incremental)
        );
        assert_eq!(merge(Some(Incremental), Some(Full)), Some(Full));
        assert_eq!(merge(Some(Full), Some(Incremental)), Some(Full));
        assert_eq!(merge(None, Some(Incremental)), Some(Incremental));
        assert_eq!(merge(Some(Incremental), None), Some(Incremental));
        assert_eq!(merge(None, None), None);
    }

    #[test]
    fn what_happens_to_the_queue_when_a_build_ends() {
        let s = state(false, 2);
        let policy = |kind| {
            Some(Queued {
                kind: Some(kind),
                waited_for: false,
            })
        };
        let operator = |kind| {
            Some(Queued {
                kind,
                waited_for: true,
            })
        };
        let (full, inc) = (Some(Full), Some(Incremental));
        // (queued, applied, covered, built) -> what happens
        let table = [
            (None, 100, 90, full, AfterBuild::Drop),
            // Nothing applied since: a policy's request is dropped...
            (policy(Full), 90, 90, full, AfterBuild::Drop),
            // ...an operator gets the build that just finished...
            (operator(full), 90, 90, full, AfterBuild::AnswerWithLast),
            (operator(None), 90, 90, inc, AfterBuild::AnswerWithLast),
            // ...unless it failed, or was incremental and a full one was
            // asked for: then the operator's build runs.
            (operator(full), 90, 90, None, AfterBuild::Build(Full)),
            (operator(full), 90, 90, inc, AfterBuild::Build(Full)),
            // Something new: the queued build runs.
            (
                policy(Incremental),
                100,
                90,
                full,
                AfterBuild::Build(Incremental),
            ),
            (operator(inc), 100, 90, None, AfterBuild::Build(Incremental)),
            (
                operator(None),
                100,
                90,
                full,
                AfterBuild::Build(Incremental),
            ),
        ];
        for (q, applied, covered, built, expect) in table {
            assert_eq!(
                after_build(q, applied, covered, built, &s),
                expect,
                "{q:?} {applied} {covered} {built:?}"
            );
        }
        // The chain the finished build left decides the kind.
        assert_eq!(
            after_build(policy(Incremental), 100, 90, full, &state(false, 4)),
            AfterBuild::Build(Full)
        );
    }
}
