//! The sandbox of one store: the memory and table limiter, and the WASI
//! context a guest that imports WASI gets, which has no capability at all
//! (its clocks are deterministic: [`GuestClock`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Per-store state: the memory limiter and, for WASI guests, a context with
/// no capabilities.
pub(crate) struct GuestState {
    pub(super) limiter: Limiter,
    pub(super) wasi: Option<(WasiCtx, ResourceTable)>,
    /// The clocks its WASI context reads.
    pub(super) clock: Arc<GuestClock>,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (ctx, table) = self
            .wasi
            .as_mut()
            .expect("WASI is linked only into stores that have a WASI context");
        WasiCtxView { ctx, table }
    }
}

pub(super) struct Limiter {
    pub(super) memory_bytes: usize,
    pub(super) table_elements: usize,
    pub(super) denied: Option<String>,
    /// The largest linear memory the guest has grown to, in bytes.
    pub(super) peak_bytes: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            let why = format!(
                "memory growth from {current} to {desired} bytes denied (cap {})",
                self.memory_bytes
            );
            self.denied = Some(why.clone());
            return Err(wasmtime::Error::msg(why));
        }
        self.peak_bytes = self.peak_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            let why = format!(
                "table growth from {current} to {desired} elements denied (cap {})",
                self.table_elements
            );
            self.denied = Some(why.clone());
            return Err(wasmtime::Error::msg(why));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        64
    }
    fn tables(&self) -> usize {
        64
    }
    fn memories(&self) -> usize {
        16
    }
}

/// The clocks a guest that imports WASI reads. Wall time is the `now-ms`
/// of the facts of the call being made, so a guest's clock agrees with
/// what it is told. Monotonic time starts at one second and moves one
/// microsecond per reading: deterministic, and never zero (Go's runtime
/// refuses to start on a monotonic clock that reads 0).
#[derive(Debug)]
pub(crate) struct GuestClock {
    now_ms: AtomicU64,
    mono_ns: AtomicU64,
}

impl Default for GuestClock {
    fn default() -> Self {
        GuestClock {
            now_ms: AtomicU64::new(0),
            mono_ns: AtomicU64::new(MONOTONIC_START_NS),
        }
    }
}

/// Where a guest's monotonic clock starts.
const MONOTONIC_START_NS: u64 = 1_000_000_000;
/// How far it moves per reading.
const MONOTONIC_STEP_NS: u64 = 1_000;

impl GuestClock {
    /// The wall time the next call's guest reads: its facts' `now-ms`.
    pub(crate) fn set_now_ms(&self, now_ms: u64) {
        self.now_ms.store(now_ms, Ordering::Relaxed);
    }
}

struct WallClock(Arc<GuestClock>);

impl wasmtime_wasi::HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.now_ms.load(Ordering::Relaxed))
    }
}

struct MonotonicClock(Arc<GuestClock>);

impl wasmtime_wasi::HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        MONOTONIC_STEP_NS
    }
    fn now(&self) -> u64 {
        self.0
            .mono_ns
            .fetch_add(MONOTONIC_STEP_NS, Ordering::Relaxed)
    }
}

/// A WASI context with no capabilities: no preopened directories, no
/// environment, no arguments, no network, empty stdio, the clocks of
/// [`GuestClock`] and deterministic "randomness".
pub(super) fn capability_free_wasi(clock: &Arc<GuestClock>) -> WasiCtx {
    let mut b = wasmtime_wasi::WasiCtxBuilder::new();
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .wall_clock(WallClock(clock.clone()))
        .monotonic_clock(MonotonicClock(clock.clone()))
        .secure_random(wasmtime_wasi::Deterministic::new(vec![4, 2]))
        .insecure_random(wasmtime_wasi::Deterministic::new(vec![4, 2]))
        .insecure_random_seed(42);
    b.build()
}
