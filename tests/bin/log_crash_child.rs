//! The child of the log store crash test: appends to the log store in DIR
//! for ever, printing `ACK <last index>` after each durable append,
//! `VOTE <term>` after saving its vote and `PURGED <index>` after each purge.
//! The parent kills it with SIGKILL at a random moment and checks that
//! everything acknowledged survived.

use std::io::Write;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload};
use ramrod::internals::log_store::{LogOptions, LogStore};
use ramrod::internals::raft::{Entry, LogId, Request, Vote};

/// 200 incompressible bytes derived from `i`, so segments fill up.
fn noise(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..200)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = std::env::args().nth(1).expect("usage: log-crash-child DIR");
    // Small segments, so that kills also land around segment changes.
    let options = LogOptions {
        segment_bytes: 64 << 10,
        ..LogOptions::default()
    };
    let mut store = LogStore::open_with(std::path::Path::new(&dir), options).expect("open");
    let mut out = std::io::stdout().lock();
    let term = store.vote().map_or(1, |v| v.leader_id.term + 1);
    store
        .save_vote(&Vote::new(term, 1))
        .await
        .expect("save vote");
    writeln!(out, "VOTE {term}").unwrap();
    out.flush().unwrap();

    let mut next = store.last_log_id().map_or(1, |l| l.index + 1);
    let mut seed = u64::from(std::process::id()) | 1;
    loop {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let n = 1 + seed % 48;
        let entries: Vec<Entry> = (next..next + n)
            .map(|i| Entry {
                log_id: LogId::new(CommittedLeaderId::new(term, 1), i),
                payload: EntryPayload::Normal(Request::put(format!("key-{i}"), noise(i))),
            })
            .collect();
        store.blocking_append(entries).await.expect("append");
        next += n;
        writeln!(out, "ACK {}", next - 1).unwrap();
        out.flush().unwrap();
        if seed % 16 == 0 && next > 400 {
            let upto = next - 300;
            let id = store
                .read(upto, upto + 1)
                .expect("read")
                .pop()
                .expect("entry to purge")
                .log_id;
            store.purge(id).await.expect("purge");
            writeln!(out, "PURGED {upto}").unwrap();
            out.flush().unwrap();
        }
    }
}
