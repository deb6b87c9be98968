//! The Wasm side: one engine, two linkers (nothing, or capability-free WASI),
//! the epoch ticker, and loaded policies with their instance pools.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ramrod_policy_sdk::{Decision, Facts};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, Trap};

use super::bindings::{self, CompactionPolicy, CompactionPolicyPre, POLICY_EXPORT, TYPES_IMPORT};
use super::cache::{CompileCache, CompileSource};
use super::error::{FailureKind, PolicyError, PolicyFailure};
use super::limits::SandboxLimits;
use super::sandbox::{GuestClock, GuestState, Limiter, StderrTail, capability_free_wasi};
use super::validate::{check_exports, check_header, check_imports};

/// How often the engine's epoch advances: the resolution of call timeouts.
const TICK: Duration = Duration::from_millis(2);

/// Builds and runs policy components under [`SandboxLimits`].
///
/// Cheap to clone; clones share the engine and the compile cache.
#[derive(Clone, Debug)]
pub struct PolicyRuntime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    plain: Linker<GuestState>,
    wasi: Linker<GuestState>,
    limits: SandboxLimits,
    cache: CompileCache,
    stop_ticker: Arc<AtomicBool>,
}

impl std::fmt::Debug for RuntimeInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyRuntime")
            .field("limits", &self.limits)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// What is known about a loaded policy.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PolicyMeta {
    /// The name the policy gives itself.
    pub name: String,
    /// The blake3 hash of the component, hex.
    pub hash: String,
    /// Where it came from: `builtin:NAME`, a file path, or a caller's label.
    pub source: String,
    /// Size of the component in bytes.
    pub size: usize,
    /// Whether it imports WASI (linked with no capabilities).
    pub imports_wasi: bool,
    /// The config it was configured with (TOML text).
    pub config: String,
}

impl PolicyMeta {
    /// The first 12 hex digits of the hash.
    pub fn short_hash(&self) -> &str {
        &self.hash[..12.min(self.hash.len())]
    }
}

/// Timings of a load.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LoadReport {
    /// Where the compiled code came from.
    pub compiled: CompileSource,
    /// Time to get compiled code (compile, or load from a cache).
    pub compile: Duration,
    /// Time to instantiate and configure the first instance.
    pub instantiate: Duration,
}

/// The result of one successful `decide` call.
#[derive(Clone, Debug)]
pub struct CallOutcome {
    /// What the policy returned, before clamping.
    pub decision: Decision,
    /// Fuel the call burnt.
    pub fuel: u64,
    /// Wall-clock time of the call.
    pub elapsed: Duration,
    /// The largest linear memory the instance has grown to, up to and
    /// including this call (instances are reused), in bytes.
    pub memory_bytes: usize,
}

/// A component that passed loading: compiled, linked, configured.
pub struct WasmPolicy {
    meta: PolicyMeta,
    runtime: Arc<RuntimeInner>,
    pre: CompactionPolicyPre<GuestState>,
    pool: Mutex<Vec<Instance>>,
    consecutive_failures: AtomicU32,
}

impl std::fmt::Debug for WasmPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmPolicy")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

struct Instance {
    store: Store<GuestState>,
    bindings: CompactionPolicy,
}

fn ticks(ms: u64) -> u64 {
    ms.div_ceil(TICK.as_millis() as u64) + 1
}

impl PolicyRuntime {
    /// Builds an engine with `limits`, caching compiled components in memory
    /// and, if `cache_dir` is given, on disk.
    ///
    /// # Errors
    /// [`PolicyError::Engine`] if wasmtime refuses the limits,
    /// [`PolicyError::Cache`] if `cache_dir` cannot be created.
    pub fn new(
        limits: SandboxLimits,
        cache_dir: Option<std::path::PathBuf>,
    ) -> Result<Self, PolicyError> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(limits.fuel_per_call > 0)
            .epoch_interruption(true)
            .max_wasm_stack(limits.stack_bytes)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config).map_err(|e| PolicyError::Engine(format!("{e:#}")))?;
        let engine_err = |e: wasmtime::Error| PolicyError::Engine(format!("{e:#}"));
        let mut plain = Linker::new(&engine);
        let mut wasi = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut wasi).map_err(engine_err)?;
        // The types interface has no functions; guests import it for its types.
        plain.instance(TYPES_IMPORT).map_err(engine_err)?;
        wasi.instance(TYPES_IMPORT).map_err(engine_err)?;
        let cache = CompileCache::new(&engine, cache_dir)?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let (stop, ticking) = (stop_ticker.clone(), engine.clone());
        std::thread::Builder::new()
            .name("ramrod-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| PolicyError::Engine(format!("starting the epoch thread: {e}")))?;

        Ok(PolicyRuntime {
            inner: Arc::new(RuntimeInner {
                engine,
                plain,
                wasi,
                limits,
                cache,
                stop_ticker,
            }),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &SandboxLimits {
        &self.inner.limits
    }

    /// Compiles (or fetches from the cache), links, instantiates and configures
    /// a policy component. Does not dry-run it: [`PolicyHost::swap`] does.
    ///
    /// [`PolicyHost::swap`]: super::PolicyHost::swap
    ///
    /// # Errors
    /// A [`PolicyError`] that says what is wrong with the component or config.
    pub fn load(
        &self,
        bytes: &[u8],
        source: &str,
        config_toml: &str,
    ) -> Result<(WasmPolicy, LoadReport), PolicyError> {
        let rt = &self.inner;
        let label = source.to_string();
        check_header(bytes, &label)?;
        let hash = blake3::hash(bytes);

        let t = Instant::now();
        let (component, compiled) = rt.cache.get_or_compile(&rt.engine, &hash, bytes, &label)?;
        let compile = t.elapsed();

        let imports_wasi = check_imports(&component, &rt.engine, &label)?;
        check_exports(&component, &rt.engine, &label)?;
        let linker = if imports_wasi { &rt.wasi } else { &rt.plain };
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| PolicyError::Invalid {
                label: label.clone(),
                reason: format!("{e:#}"),
            })?;
        let pre = CompactionPolicyPre::new(pre).map_err(|e| PolicyError::WrongContract {
            label: label.clone(),
            expected: POLICY_EXPORT,
            reason: format!("{e:#}"),
        })?;

        let mut policy = WasmPolicy {
            meta: PolicyMeta {
                name: String::new(),
                hash: hash.to_hex().to_string(),
                source: label,
                size: bytes.len(),
                imports_wasi,
                config: config_toml.to_string(),
            },
            runtime: rt.clone(),
            pre,
            pool: Mutex::new(Vec::new()),
            consecutive_failures: AtomicU32::new(0),
        };
        let t = Instant::now();
        let mut first = policy.start().map_err(|e| match e {
            Started::Contract(reason) => PolicyError::WrongContract {
                label: policy.meta.source.clone(),
                expected: POLICY_EXPORT,
                reason,
            },
            Started::Rejected(message) => PolicyError::Config {
                label: policy.meta.source.clone(),
                message,
            },
            Started::Failed(failure) => PolicyError::Start {
                label: policy.meta.source.clone(),
                failure,
            },
        })?;
        let instantiate = t.elapsed();
        let name = policy
            .call_name(&mut first)
            .map_err(|failure| PolicyError::Start {
                label: policy.meta.source.clone(),
                failure,
            })?;
        policy.meta.name = name.chars().filter(|c| !c.is_control()).take(64).collect();
        policy
            .pool
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .push(first);
        Ok((
            policy,
            LoadReport {
                compiled,
                compile,
                instantiate,
            },
        ))
    }
}

/// Why a fresh instance could not be started.
enum Started {
    /// The exports do not have the contract's types.
    Contract(String),
    Rejected(String),
    Failed(PolicyFailure),
}

impl WasmPolicy {
    /// What is known about the policy.
    pub fn meta(&self) -> &PolicyMeta {
        &self.meta
    }

    /// Failed calls since the last successful one.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    pub(crate) fn note_success(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Counts a failure and returns the count of consecutive ones.
    pub(crate) fn note_failure(&self) -> u32 {
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A fresh instance: new store, instantiated, configured.
    fn start(&self) -> Result<Instance, Started> {
        let rt = &self.runtime;
        let l = &rt.limits;
        let clock = Arc::new(GuestClock::default());
        let stderr = StderrTail::default();
        let wasi = self
            .meta
            .imports_wasi
            .then(|| (capability_free_wasi(&clock, &stderr), ResourceTable::new()));
        let state = GuestState {
            limiter: Limiter {
                memory_bytes: l.memory_bytes,
                table_elements: l.table_elements,
                denied: None,
                peak_bytes: 0,
            },
            wasi,
            clock,
            stderr,
            stderr_mark: 0,
        };
        let mut store = Store::new(&rt.engine, state);
        store.limiter(|s| &mut s.limiter);
        if l.fuel_per_call > 0 {
            store
                .set_fuel(l.fuel_per_configure)
                .map_err(|e| Started::Failed(classify(&store, e)))?;
        }
        store.set_epoch_deadline(ticks(l.configure_timeout_ms));
        store.epoch_deadline_trap();
        let bindings = self.pre.instantiate(&mut store).map_err(|e| {
            let failure = classify(&store, e);
            match failure.kind {
                FailureKind::Other => Started::Contract(failure.message),
                _ => Started::Failed(failure),
            }
        })?;
        let configured = bindings
            .ramrod_policy_policy()
            .call_configure(&mut store, &self.meta.config);
        match configured {
            Ok(Ok(())) => Ok(Instance { store, bindings }),
            Ok(Err(message)) => Err(Started::Rejected(message.chars().take(4096).collect())),
            Err(e) => Err(Started::Failed(classify(&store, e))),
        }
    }

    fn call_name(&self, inst: &mut Instance) -> Result<String, PolicyFailure> {
        let l = &self.runtime.limits;
        arm(&mut inst.store, l.fuel_per_call, l.call_timeout_ms);
        inst.bindings
            .ramrod_policy_policy()
            .call_name(&mut inst.store)
            .map_err(|e| classify(&inst.store, e))
    }

    /// Calls `decide` on a pooled instance (or a fresh one), under the call
    /// limits. A failed instance is dropped, never entered again.
    ///
    /// # Errors
    /// The [`PolicyFailure`]; the caller decides what answers instead.
    pub fn decide(&self, facts: &Facts) -> Result<CallOutcome, PolicyFailure> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut inst = match pooled {
            Some(i) => i,
            None => self.start().map_err(|e| match e {
                Started::Rejected(m) | Started::Contract(m) => PolicyFailure {
                    kind: FailureKind::Instantiate,
                    message: m,
                },
                Started::Failed(f) => PolicyFailure {
                    kind: FailureKind::Instantiate,
                    message: f.to_string(),
                },
            })?,
        };
        let l = &self.runtime.limits;
        let log = bindings::log_facts(&facts.log);
        let snap = bindings::snapshot_facts(&facts.snapshot);
        arm(&mut inst.store, l.fuel_per_call, l.call_timeout_ms);
        inst.store.data().clock.set_now_ms(facts.log.now_ms);
        let t = Instant::now();
        let r = inst
            .bindings
            .ramrod_policy_policy()
            .call_decide(&mut inst.store, &log, snap);
        let elapsed = t.elapsed();
        match r {
            Ok(d) => {
                let fuel = match l.fuel_per_call {
                    0 => 0,
                    limit => limit.saturating_sub(inst.store.get_fuel().unwrap_or(0)),
                };
                let memory_bytes = inst.store.data().limiter.peak_bytes;
                let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
                if pool.len() < l.pooled_instances {
                    pool.push(inst);
                }
                Ok(CallOutcome {
                    decision: bindings::decision(d),
                    memory_bytes,
                    fuel,
                    elapsed,
                })
            }
            Err(e) => Err(classify(&inst.store, e)),
        }
    }
}

/// Sets the fuel and deadline for the next call.
fn arm(store: &mut Store<GuestState>, fuel: u64, timeout_ms: u64) {
    if fuel > 0 {
        // Fuel is on for every store of this engine, so this cannot fail.
        let _ = store.set_fuel(fuel);
    }
    store.set_epoch_deadline(ticks(timeout_ms));
    let data = store.data_mut();
    data.limiter.denied = None;
    data.stderr_mark = data.stderr.written();
}

fn classify(store: &Store<GuestState>, e: wasmtime::Error) -> PolicyFailure {
    if let Some(why) = &store.data().limiter.denied {
        return PolicyFailure {
            kind: FailureKind::MemoryLimit,
            message: why.clone(),
        };
    }
    let kind = match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => FailureKind::OutOfFuel,
        Some(Trap::Interrupt) => FailureKind::Timeout,
        Some(Trap::StackOverflow) => FailureKind::StackOverflow,
        Some(_) => FailureKind::Trap,
        None => FailureKind::Other,
    };
    let mut message = format!("{e:#}");
    if message.len() > 2048 {
        let mut cut = 2048;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    // What the guest said before it failed (its exception, its panic).
    let said = store.data().stderr.since(store.data().stderr_mark);
    if !said.is_empty() {
        message.push_str("; guest stderr: ");
        message.push_str(&said);
    }
    PolicyFailure { kind, message }
}
