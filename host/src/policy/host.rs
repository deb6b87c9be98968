//! The policy host: the running policy, hot swap, the native fallback,
//! rollback, clamping, statistics and the audit trail.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ramrod_policies::Entries;
use ramrod_policy_sdk::testing::scenarios;
use ramrod_policy_sdk::{Bounds, Clamp, Decision, Facts, Policy, clamp};
use serde::Serialize;

use super::error::{FailureKind, PolicyError, PolicyFailure};
use super::runtime::{LoadReport, PolicyMeta, PolicyRuntime, WasmPolicy};
use super::source::PolicySource;

/// What decides now.
#[derive(Clone, Debug)]
pub enum ActivePolicy {
    /// A Wasm component.
    Wasm(Arc<WasmPolicy>),
    /// The native fallback alone (no Wasm policy loaded, or rolled back to it).
    Native,
}

#[derive(Debug)]
struct Active {
    current: ActivePolicy,
    /// The policy that was running before `current` was swapped in: what a
    /// rollback restores.
    previous: Option<Arc<WasmPolicy>>,
}

/// Who made a decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "by", rename_all = "kebab-case")]
pub enum DecidedBy {
    /// The Wasm policy.
    Policy,
    /// The native fallback, because the Wasm policy failed.
    Fallback {
        /// How it failed.
        failure: PolicyFailure,
    },
    /// The native fallback, because no Wasm policy is active.
    Native,
}

impl DecidedBy {
    /// `policy`, `fallback` or `native`.
    pub fn label(&self) -> &'static str {
        match self {
            DecidedBy::Policy => "policy",
            DecidedBy::Fallback { .. } => "fallback",
            DecidedBy::Native => "native",
        }
    }
}

/// One decision, with everything needed to audit it.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct DecisionRecord {
    /// The active policy's name (`native-entries` when none).
    pub policy: String,
    /// The active policy's hash (short), empty for the native one.
    pub hash: String,
    /// Who decided.
    pub decided_by: DecidedBy,
    /// What was decided, before clamping.
    pub proposed: Decision,
    /// What the host will do.
    pub decision: Decision,
    /// What the host changed.
    pub clamps: Vec<Clamp>,
    /// A snapshot the host held back because one is being built: to be
    /// built when that one ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred: Option<crate::sdk::SnapshotKind>,
    /// Fuel the Wasm call burnt (`None` when the native policy decided).
    pub fuel: Option<u64>,
    /// Time the whole decision took.
    #[serde(with = "micros")]
    pub elapsed: Duration,
}

mod micros {
    use serde::Deserialize;

    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_micros() as u64)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<std::time::Duration, D::Error> {
        u64::deserialize(d).map(std::time::Duration::from_micros)
    }
}

/// Decisions of a dry run the host had to clamp: `(scenario, clamps)`.
pub type ScenarioClamps = Vec<(String, Vec<Clamp>)>;

/// The result of a successful swap.
#[derive(Clone, Debug, Serialize)]
pub struct SwapReport {
    /// The policy now running.
    pub meta: PolicyMeta,
    /// Compile and instantiate timings.
    pub load: LoadReport,
    /// Time of the dry run over the synthetic scenarios.
    pub dry_run: Duration,
    /// Decisions of the dry run the host had to clamp: `(scenario, clamps)`.
    pub dry_run_clamps: ScenarioClamps,
    /// Time from the call to the swap.
    pub total: Duration,
}

/// Counters since the host started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PolicyStats {
    /// Decisions made.
    pub decisions: u64,
    /// Decisions the Wasm policy made.
    pub by_policy: u64,
    /// Decisions the native fallback made because the Wasm policy failed.
    pub by_fallback: u64,
    /// Decisions the native policy made with no Wasm policy active.
    pub by_native: u64,
    /// Failed Wasm calls, by kind.
    pub failures: Vec<(FailureKind, u64)>,
    /// Decisions the host had to clamp.
    pub clamped: u64,
    /// Successful swaps.
    pub swaps: u64,
    /// Refused swaps.
    pub failed_swaps: u64,
    /// Rollbacks after repeated failures.
    pub rollbacks: u64,
}

#[derive(Debug, Default)]
struct Counters {
    decisions: AtomicU64,
    by_policy: AtomicU64,
    by_fallback: AtomicU64,
    by_native: AtomicU64,
    failures: [AtomicU64; FailureKind::ALL.len()],
    clamped: AtomicU64,
    swaps: AtomicU64,
    failed_swaps: AtomicU64,
    rollbacks: AtomicU64,
}

/// Runs the node's compaction policy.
///
/// Every decision is made wholly by one policy version: [`decide`] takes one
/// reference to the active policy and uses it throughout, and [`swap`]
/// replaces that reference atomically once the new policy has been compiled,
/// instantiated, configured and dry-run. If a Wasm call fails for any reason
/// the native fallback (the `entries` policy, compiled in) answers instead;
/// after [`SandboxLimits::failures_before_rollback`] consecutive failures the
/// previous good policy is restored. Every decision is clamped to what is safe.
///
/// [`decide`]: PolicyHost::decide
/// [`swap`]: PolicyHost::swap
/// [`SandboxLimits::failures_before_rollback`]: super::SandboxLimits::failures_before_rollback
#[derive(Debug)]
pub struct PolicyHost {
    runtime: PolicyRuntime,
    active: ArcSwap<Active>,
    fallback: Entries,
    bounds: Bounds,
    counters: Counters,
    swap_lock: Mutex<()>,
}

/// The name the native fallback goes by in records and metrics.
pub const NATIVE_NAME: &str = "native-entries";

impl PolicyHost {
    /// A host with no Wasm policy: the native fallback decides until a policy
    /// is swapped in. `fallback_config` configures the fallback (TOML, the
    /// `entries` policy's keys).
    ///
    /// # Errors
    /// [`PolicyError::Config`] if `fallback_config` is not a valid `entries` config.
    pub fn new(
        runtime: PolicyRuntime,
        bounds: Bounds,
        fallback_config: &str,
    ) -> Result<Self, PolicyError> {
        let fallback = ramrod_policy_sdk::testing::configure::<Entries>(fallback_config).map_err(
            |message| PolicyError::Config {
                label: NATIVE_NAME.into(),
                message,
            },
        )?;
        Ok(PolicyHost {
            runtime,
            active: ArcSwap::from_pointee(Active {
                current: ActivePolicy::Native,
                previous: None,
            }),
            fallback,
            bounds,
            counters: Counters::default(),
            swap_lock: Mutex::new(()),
        })
    }

    /// The runtime policies are loaded into.
    pub fn runtime(&self) -> &PolicyRuntime {
        &self.runtime
    }

    /// The bounds decisions are clamped to.
    pub fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    /// What decides now.
    pub fn active(&self) -> ActivePolicy {
        self.active.load().current.clone()
    }

    /// Metadata of the active Wasm policy, `None` when the native one decides.
    pub fn active_meta(&self) -> Option<PolicyMeta> {
        match &self.active.load().current {
            ActivePolicy::Wasm(p) => Some(p.meta().clone()),
            ActivePolicy::Native => None,
        }
    }

    /// Makes a decision on `facts`. Never fails: a failing Wasm policy is
    /// answered for by the native fallback, and the result is always clamped.
    pub fn decide(&self, facts: &Facts) -> DecisionRecord {
        let t = Instant::now();
        let active = self.active.load_full();
        let c = &self.counters;
        c.decisions.fetch_add(1, Ordering::Relaxed);
        let (policy, hash, decided_by, proposed, fuel) = match &active.current {
            ActivePolicy::Native => {
                c.by_native.fetch_add(1, Ordering::Relaxed);
                let d = self.fallback.decide(&facts.log, &facts.snapshot);
                (
                    NATIVE_NAME.to_string(),
                    String::new(),
                    DecidedBy::Native,
                    d,
                    None,
                )
            }
            ActivePolicy::Wasm(p) => {
                let meta = p.meta();
                match p.decide(facts) {
                    Ok(out) => {
                        p.note_success();
                        c.by_policy.fetch_add(1, Ordering::Relaxed);
                        let hash = meta.short_hash().to_string();
                        (
                            meta.name.clone(),
                            hash,
                            DecidedBy::Policy,
                            out.decision,
                            Some(out.fuel),
                        )
                    }
                    Err(failure) => {
                        c.by_fallback.fetch_add(1, Ordering::Relaxed);
                        let kind_index = FailureKind::ALL
                            .iter()
                            .position(|k| *k == failure.kind)
                            .unwrap_or(0);
                        c.failures[kind_index].fetch_add(1, Ordering::Relaxed);
                        let n = p.note_failure();
                        tracing::warn!(
                            policy = %meta.name, hash = %meta.short_hash(), kind = %failure.kind,
                            consecutive = n, error = %failure.message,
                            "policy failed; the native fallback decides"
                        );
                        if n >= self.runtime.limits().failures_before_rollback {
                            self.rollback(&active, &failure);
                        }
                        let d = self.fallback.decide(&facts.log, &facts.snapshot);
                        let hash = meta.short_hash().to_string();
                        (
                            meta.name.clone(),
                            hash,
                            DecidedBy::Fallback { failure },
                            d,
                            None,
                        )
                    }
                }
            }
        };
        let clamped = clamp(proposed.clone(), &facts.log, &facts.snapshot, &self.bounds);
        if !clamped.clamps.is_empty() {
            c.clamped.fetch_add(1, Ordering::Relaxed);
        }
        let record = DecisionRecord {
            policy,
            hash,
            decided_by,
            proposed,
            decision: clamped.decision,
            clamps: clamped.clamps,
            deferred: clamped.deferred,
            fuel,
            elapsed: t.elapsed(),
        };
        if tracing::enabled!(target: "ramrod::policy::audit", tracing::Level::DEBUG) {
            tracing::debug!(
                target: "ramrod::policy::audit",
                facts = %serde_json::to_string(facts).unwrap_or_default(),
                record = %serde_json::to_string(&record).unwrap_or_default(),
                "policy decision"
            );
        }
        record
    }

    /// Restores the previous good policy (or the native fallback) if `from` is
    /// still the active state.
    fn rollback(&self, from: &Arc<Active>, failure: &PolicyFailure) {
        let _guard = self.swap_lock.lock().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&self.active.load(), from) {
            return; // Someone swapped in the meantime.
        }
        let current = match &from.previous {
            Some(p) => {
                p.note_success();
                ActivePolicy::Wasm(p.clone())
            }
            None => ActivePolicy::Native,
        };
        let failed = match &from.current {
            ActivePolicy::Wasm(p) => format!("{} ({})", p.meta().name, p.meta().short_hash()),
            ActivePolicy::Native => NATIVE_NAME.into(),
        };
        let restored = match &current {
            ActivePolicy::Wasm(p) => format!("{} ({})", p.meta().name, p.meta().short_hash()),
            ActivePolicy::Native => NATIVE_NAME.into(),
        };
        tracing::error!(%failed, %restored, last_error = %failure, "policy keeps failing; rolled back");
        self.active.store(Arc::new(Active {
            current,
            previous: None,
        }));
        self.counters.rollbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// Loads, validates and atomically swaps in a new policy.
    ///
    /// Validation compiles (or fetches from the cache), instantiates, configures
    /// with `config_toml`, and dry-runs `decide` on every synthetic scenario. If
    /// any step fails the running policy stays and the error says why.
    /// Decisions in flight finish with the policy they started with.
    ///
    /// # Errors
    /// A [`PolicyError`] naming what was wrong.
    pub fn swap(
        &self,
        source: &PolicySource,
        config_toml: &str,
    ) -> Result<SwapReport, PolicyError> {
        let t = Instant::now();
        let result = self.validate(source, config_toml);
        let (policy, load, dry_run, dry_run_clamps) = match result {
            Ok(v) => v,
            Err(e) => {
                self.counters.failed_swaps.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(source = %source, error = %e, "policy swap refused; the running policy stays");
                return Err(e);
            }
        };
        let meta = policy.meta().clone();
        {
            let _guard = self.swap_lock.lock().unwrap_or_else(|e| e.into_inner());
            let old = self.active.load_full();
            let previous = match &old.current {
                ActivePolicy::Wasm(p) => Some(p.clone()),
                ActivePolicy::Native => None,
            };
            self.active.store(Arc::new(Active {
                current: ActivePolicy::Wasm(Arc::new(policy)),
                previous,
            }));
        }
        self.counters.swaps.fetch_add(1, Ordering::Relaxed);
        let total = t.elapsed();
        tracing::info!(
            policy = %meta.name, hash = %meta.short_hash(), source = %meta.source,
            compiled = ?load.compiled, total_us = total.as_micros() as u64, "policy swapped in"
        );
        Ok(SwapReport {
            meta,
            load,
            dry_run,
            dry_run_clamps,
            total,
        })
    }

    fn validate(
        &self,
        source: &PolicySource,
        config_toml: &str,
    ) -> Result<(WasmPolicy, LoadReport, Duration, ScenarioClamps), PolicyError> {
        let bytes = source.bytes()?;
        let (policy, load) = self
            .runtime
            .load(&bytes, &source.to_string(), config_toml)?;
        let (dry_run, clamps) = dry_run(&policy, &self.bounds)?;
        Ok((policy, load, dry_run, clamps))
    }

    /// The counters so far.
    pub fn stats(&self) -> PolicyStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PolicyStats {
            decisions: get(&c.decisions),
            by_policy: get(&c.by_policy),
            by_fallback: get(&c.by_fallback),
            by_native: get(&c.by_native),
            failures: FailureKind::ALL
                .iter()
                .zip(&c.failures)
                .map(|(k, n)| (*k, get(n)))
                .collect(),
            clamped: get(&c.clamped),
            swaps: get(&c.swaps),
            failed_swaps: get(&c.failed_swaps),
            rollbacks: get(&c.rollbacks),
        }
    }
}

/// Runs `decide` on every synthetic scenario; fails on the first failure.
/// Returns the time taken and the decisions the host would clamp.
pub fn dry_run(
    policy: &WasmPolicy,
    bounds: &Bounds,
) -> Result<(Duration, ScenarioClamps), PolicyError> {
    let t = Instant::now();
    let mut clamped = Vec::new();
    for s in scenarios() {
        let out = policy
            .decide(&s.facts)
            .map_err(|failure| PolicyError::DryRun {
                label: policy.meta().source.clone(),
                scenario: s.name,
                failure,
            })?;
        let c = clamp(out.decision, &s.facts.log, &s.facts.snapshot, bounds);
        if !c.clamps.is_empty() {
            clamped.push((s.name.to_string(), c.clamps));
        }
    }
    Ok((t.elapsed(), clamped))
}
