//! `ramrod::fuzzing::manifest` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ramrod::fuzzing::manifest(data));
