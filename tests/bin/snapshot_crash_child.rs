//! The child of the snapshot crash test: applies entries to a KV state
//! machine whose snapshots go to DIR and snapshots every 40 entries, for
//! ever. It prints `RESTORED <index> <skipped>` after opening (the restored
//! snapshot's last index, 0 for none, and how many damaged snapshots it had
//! to skip) and `SNAP <index>` once each snapshot's manifest is durable. The
//! parent kills it with SIGKILL at random moments.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload};
use ramrod::internals::raft::{Command, Entry, LogId, Request};
use ramrod::internals::snapshot::{DirStore, SnapshotConfig, SnapshotStore, Snapshots};
use ramrod::internals::state_machine::KvStateMachine;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: snapshot-crash-child DIR");
    let store: Arc<dyn SnapshotStore> =
        Arc::new(DirStore::open(std::path::Path::new(&dir)).expect("store"));
    let config = SnapshotConfig {
        segment_bytes: 4 << 10,
        block_bytes: 1 << 10,
        retain: 3,
        max_chain: 4,
        gc_grace: Duration::ZERO,
    };
    let snaps = Arc::new(Snapshots::new(store, "crash", config));
    let (mut sm, report) = KvStateMachine::open(snaps).await.expect("open");
    let mut out = std::io::stdout().lock();
    let restored = sm.last_applied().map_or(0, |l| l.index);
    writeln!(out, "RESTORED {restored} {}", report.skipped.len()).unwrap();
    out.flush().unwrap();
    let mut index = restored;
    loop {
        for _ in 0..40 {
            index += 1;
            let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let commands = (0..8)
                .map(|_| {
                    let key = format!("key/{:05}", next() % 3_000).into_bytes();
                    if next() % 5 == 0 {
                        Command::Delete { key }
                    } else {
                        Command::Put {
                            key,
                            value: vec![(next() % 251) as u8; (next() % 200) as usize],
                        }
                    }
                })
                .collect();
            let e = Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
                payload: EntryPayload::Normal(Request { commands }),
            };
            sm.apply([e]).await.expect("apply");
        }
        sm.build(None).await.expect("snapshot");
        writeln!(out, "SNAP {index}").unwrap();
        out.flush().unwrap();
    }
}
