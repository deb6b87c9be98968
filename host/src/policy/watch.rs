//! Reload a policy when its file changes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::host::PolicyHost;
use super::source::PolicySource;

/// Watches a policy file and swaps it in whenever its content changes.
///
/// Polls the file's content hash (no platform file-notification API, so it
/// works the same on every filesystem). A change that fails validation is
/// logged and remembered in [`last_error`](Self::last_error); the running
/// policy stays. Stops when dropped.
#[derive(Debug)]
pub struct PolicyWatcher {
    stop: Arc<AtomicBool>,
    state: Arc<WatchState>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct WatchState {
    reloads: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl PolicyWatcher {
    /// Starts watching `path`, checking every `interval`. The file's current
    /// content is loaded on the first check unless it is what runs already.
    pub fn start(
        host: Arc<PolicyHost>,
        path: PathBuf,
        config_toml: String,
        interval: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(WatchState::default());
        let (stop2, state2) = (stop.clone(), state.clone());
        let thread = std::thread::Builder::new()
            .name("ramrod-policy-watch".into())
            .spawn(move || {
                let mut seen = host.active_meta().map(|m| m.hash);
                while !stop2.load(Ordering::Relaxed) {
                    if let Ok(bytes) = std::fs::read(&path) {
                        let hash = blake3::hash(&bytes).to_hex().to_string();
                        if seen.as_deref() != Some(hash.as_str()) {
                            seen = Some(hash);
                            let source = PolicySource::Bytes {
                                label: path.display().to_string(),
                                bytes: Arc::from(bytes),
                            };
                            let result = host.swap(&source, &config_toml);
                            let mut last =
                                state2.last_error.lock().unwrap_or_else(|e| e.into_inner());
                            match result {
                                Ok(_) => {
                                    state2.reloads.fetch_add(1, Ordering::Relaxed);
                                    *last = None;
                                }
                                Err(e) => *last = Some(e.to_string()),
                            }
                        }
                    }
                    let mut slept = Duration::ZERO;
                    while slept < interval && !stop2.load(Ordering::Relaxed) {
                        let step = Duration::from_millis(10).min(interval - slept);
                        std::thread::sleep(step);
                        slept += step;
                    }
                }
            })
            .expect("spawning the policy watch thread");
        PolicyWatcher {
            stop,
            state,
            thread: Some(thread),
        }
    }

    /// Successful reloads so far.
    pub fn reloads(&self) -> u64 {
        self.state.reloads.load(Ordering::Relaxed)
    }

    /// Why the last change was refused, if it was.
    pub fn last_error(&self) -> Option<String> {
        self.state
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for PolicyWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
