//! `ramrod::fuzzing::policy_cache` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ramrod::fuzzing::policy_cache(data));
