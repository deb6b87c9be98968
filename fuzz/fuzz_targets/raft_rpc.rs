//! `ramrod::fuzzing::raft_rpc` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ramrod::fuzzing::raft_rpc(data));
