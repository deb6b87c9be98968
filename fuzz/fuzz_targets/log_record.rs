//! `ramrod::fuzzing::log_record` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ramrod::fuzzing::log_record(data));
