//! The sandbox of one store: the memory and table limiter, and the WASI
//! context a guest that imports WASI gets, which has no capability at all.

use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Per-store state: the memory limiter and, for WASI guests, a context with
/// no capabilities.
pub(crate) struct GuestState {
    pub(super) limiter: Limiter,
    pub(super) wasi: Option<(WasiCtx, ResourceTable)>,
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

/// A wall clock stuck at the Unix epoch: policies get the time from the facts.
struct FrozenWallClock;

impl wasmtime_wasi::HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// A monotonic clock that never moves.
struct FrozenMonotonicClock;

impl wasmtime_wasi::HostMonotonicClock for FrozenMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A WASI context with no capabilities: no preopened directories, no
/// environment, no arguments, no network, empty stdio, frozen clocks and
/// deterministic "randomness".
pub(super) fn capability_free_wasi() -> WasiCtx {
    let mut b = wasmtime_wasi::WasiCtxBuilder::new();
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .wall_clock(FrozenWallClock)
        .monotonic_clock(FrozenMonotonicClock)
        .secure_random(wasmtime_wasi::Deterministic::new(vec![4, 2]))
        .insecure_random(wasmtime_wasi::Deterministic::new(vec![4, 2]))
        .insecure_random_seed(42);
    b.build()
}
