//! Entry points for fuzzing every decoder of bytes a node does not trust:
//! log records, snapshot segments and manifests (a store may be damaged or
//! written by someone else), Raft RPC bodies (from the network), and policy
//! compile-cache entries (from disk). Each takes any bytes and returns;
//! none may panic, loop or allocate without bound.
//!
//! Used by the cargo-fuzz targets in `fuzz/` (long runs: `scripts/fuzz.sh`)
//! and by the corpus replay in the tests (`tests/it/fuzz.rs`), which mutates
//! [`seeds`] on stable Rust. A target also tries its input with the
//! checksum made right, so that the parsers behind the checksum are reached.

use crate::node::raft_rpc::{CatchUpReply, CatchUpRequest, decode};
use crate::raft::{NodeId, TypeConfig};

/// A fuzz target: takes any bytes.
pub type Target = fn(&[u8]);

/// The targets, by name.
pub const TARGETS: [(&str, Target); 5] = [
    ("log_record", log_record),
    ("snapshot_segment", snapshot_segment),
    ("manifest", manifest),
    ("raft_rpc", raft_rpc),
    ("policy_cache", policy_cache),
];

/// A log segment record: checksum, header, sections (plain and lz4), meta
/// records, and the entries in them.
pub fn log_record(data: &[u8]) {
    crate::log_store::fuzz::record(data);
}

/// A snapshot segment (named by its own hash, so the format is reached):
/// header, blocks, records.
pub fn snapshot_segment(data: &[u8]) {
    let bytes = bytes::Bytes::copy_from_slice(data);
    let name = crate::snapshot::segment::name_of(&bytes);
    let _ = crate::snapshot::segment::read(&name, &bytes, |_, _| {});
}

/// A snapshot manifest: as is, and its bytes as the body of a well-framed
/// manifest (the JSON and what it describes).
pub fn manifest(data: &[u8]) {
    use crate::snapshot::Manifest;
    let _ = Manifest::decode(data);
    let _ = Manifest::decode(&crate::snapshot::manifest::frame(data));
}

/// The body of every Raft RPC and peer request a node decodes.
pub fn raft_rpc(data: &[u8]) {
    let _ = decode::<openraft::raft::AppendEntriesRequest<TypeConfig>>(data);
    let _ = decode::<openraft::raft::VoteRequest<NodeId>>(data);
    let _ = decode::<openraft::raft::InstallSnapshotRequest<TypeConfig>>(data);
    let _ = decode::<CatchUpRequest>(data);
    let _ = decode::<CatchUpReply>(data);
    if let Ok(req) = decode::<CatchUpRequest>(data) {
        let _ = crate::snapshot::Manifest::decode(&req.manifest);
    }
}

/// A compile-cache entry's header and checksum (its payload, once verified,
/// is wasmtime's own serialized component: see `policy::cache`).
pub fn policy_cache(data: &[u8]) {
    let _ = crate::policy::cache::verify(data);
    let _ = crate::policy::cache::verify(&crate::policy::cache::frame(data));
}

/// Valid inputs of target `name`, to start mutating from.
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    match name {
        "log_record" => crate::log_store::fuzz::seeds(),
        "snapshot_segment" => {
            let mut b = crate::snapshot::segment::SegmentBuilder::new(4 << 10, 512);
            let mut out = Vec::new();
            for i in 0..200u32 {
                let key = format!("key/{i:05}");
                let value = (i % 7 != 0).then(|| vec![b'x'; (i % 50) as usize]);
                if let Some(s) = b.push(key.as_bytes(), value.as_deref()) {
                    out.push(s.bytes.to_vec());
                }
            }
            out.extend(b.finish().map(|s| s.bytes.to_vec()));
            out
        }
        "manifest" => vec![crate::snapshot::manifest::sample().encode()],
        "raft_rpc" => {
            use crate::node::raft_rpc::encode;
            let vote = openraft::Vote::new_committed(4, 1);
            let entries = vec![openraft::Entry::<TypeConfig> {
                log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(4, 1), 8),
                payload: openraft::EntryPayload::Normal(crate::raft::Request::put("k", "v")),
            }];
            vec![
                encode(&openraft::raft::AppendEntriesRequest::<TypeConfig> {
                    vote,
                    prev_log_id: None,
                    entries,
                    leader_commit: None,
                }),
                encode(&openraft::raft::VoteRequest::<NodeId>::new(vote, None)),
                encode(&CatchUpRequest {
                    manifest: crate::snapshot::manifest::sample().encode(),
                    from: 1,
                }),
            ]
        }
        "policy_cache" => vec![crate::policy::cache::frame(b"a compiled component")],
        _ => Vec::new(),
    }
}
