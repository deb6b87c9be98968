//! `ramrod::fuzzing::snapshot_segment` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ramrod::fuzzing::snapshot_segment(data));
