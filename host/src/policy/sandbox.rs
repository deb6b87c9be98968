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
    /// What the guest wrote to stderr (the newest bytes), and how much
    /// it had written when the current call began.
    pub(super) stderr: StderrTail,
    pub(super) stderr_mark: u64,
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

/// How much of a guest's stderr is kept: the newest bytes, attached to a
/// failure (a Python traceback, a JavaScript exception, a Rust panic).
pub(crate) const STDERR_TAIL: usize = 4 << 10;

/// A guest's stderr: the newest [`STDERR_TAIL`] bytes and a count of all.
/// Writing never fails and never grows past that.
#[derive(Clone, Debug, Default)]
pub(crate) struct StderrTail(Arc<std::sync::Mutex<(std::collections::VecDeque<u8>, u64)>>);

impl StderrTail {
    fn push(&self, bytes: &[u8]) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (buf, written) = &mut *g;
        *written += bytes.len() as u64;
        let keep = &bytes[bytes.len().saturating_sub(STDERR_TAIL)..];
        buf.extend(keep);
        let over = buf.len().saturating_sub(STDERR_TAIL);
        buf.drain(..over);
    }

    /// Bytes written so far.
    pub(super) fn written(&self) -> u64 {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// What was written after `mark` (as much of it as is kept), as text.
    pub(super) fn since(&self, mark: u64) -> String {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (buf, written) = &*g;
        let new = (written - mark.min(*written)).min(buf.len() as u64) as usize;
        let bytes: Vec<u8> = buf.iter().skip(buf.len() - new).copied().collect();
        String::from_utf8_lossy(&bytes).trim_end().to_string()
    }
}

impl wasmtime_wasi::p2::OutputStream for StderrTail {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(64 << 10)
    }
}

#[async_trait::async_trait]
impl wasmtime_wasi::p2::Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl wasmtime_wasi::cli::IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for StderrTail {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// A WASI context with no capabilities: no preopened directories, no
/// environment, no arguments, no network, empty stdio, the clocks of
/// [`GuestClock`], deterministic "randomness", and stderr kept for
/// failures ([`StderrTail`]).
pub(super) fn capability_free_wasi(clock: &Arc<GuestClock>, stderr: &StderrTail) -> WasiCtx {
    let mut b = wasmtime_wasi::WasiCtxBuilder::new();
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .wall_clock(WallClock(clock.clone()))
        .monotonic_clock(MonotonicClock(clock.clone()))
        .stderr(stderr.clone())
        .secure_random(wasmtime_wasi::Deterministic::new(vec![4, 2]))
        .insecure_random(wasmtime_wasi::Deterministic::new(vec![4, 2]))
        .insecure_random_seed(42);
    b.build()
}
