//! The fuzz targets (`ramrod::fuzzing`) on stable Rust: each target's
//! seeds, the committed corpus and regressions (`fuzz/corpus/TARGET/`,
//! `fuzz/regressions/TARGET/`, if any), and a bounded number of
//! deterministic mutations of them. A panic fails the test; so does a run
//! that takes too long per input (a decoder that loops or allocates without
//! bound shows up as one). Long coverage-guided runs: `scripts/fuzz.sh`.

use std::path::Path;
use std::time::{Duration, Instant};

use ramrod::fuzzing::{TARGETS, seeds};

use crate::support::Rng;

/// Mutated inputs per target.
const MUTATIONS: usize = 50_000;

fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..=rng.below(3) {
        let len = b.len().max(1) as u64;
        match rng.below(8) {
            0 if !b.is_empty() => {
                let i = rng.below(len) as usize;
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = rng.below(len) as usize;
                b[i] = rng.next_u64() as u8;
            }
            2 => b.truncate(rng.below(len + 1) as usize),
            3 => {
                let at = rng.below(len + 1) as usize;
                let n = rng.below(16) as usize + 1;
                let extra: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                b.splice(at.min(b.len())..at.min(b.len()), extra);
            }
            4 if b.len() >= 4 => {
                // An "interesting" 32-bit value over a length field.
                let i = rng.below(len - 3) as usize;
                let v: u32 = [0, 1, 0x7fff_ffff, 0xffff_ffff, 0x4000_0000][rng.below(5) as usize];
                b[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            5 if !other.is_empty() => {
                // Splice in part of another input.
                let from = rng.below(other.len() as u64) as usize;
                let n = rng.below((other.len() - from) as u64 + 1) as usize;
                let at = rng.below(len + 1) as usize;
                b.splice(
                    at.min(b.len())..at.min(b.len()),
                    other[from..from + n].iter().copied(),
                );
            }
            6 if b.len() > 1 => {
                // Duplicate a chunk.
                let from = rng.below(len) as usize;
                let n = rng.below((b.len() - from) as u64) as usize + 1;
                let chunk = b[from..from + n].to_vec();
                b.extend_from_slice(&chunk);
            }
            _ => b.push(rng.next_u64() as u8),
        }
    }
    b
}

fn files_in(dir: &Path) -> Vec<Vec<u8>> {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(Result::ok)
                .filter_map(|e| std::fs::read(e.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_decoder_of_untrusted_bytes_survives_mutated_inputs() {
    let fuzz_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut report = Vec::new();
    for (name, target) in TARGETS {
        let mut inputs = seeds(name);
        assert!(!inputs.is_empty(), "{name} has no seeds");
        inputs.extend(files_in(&fuzz_dir.join("corpus").join(name)));
        inputs.extend(files_in(&fuzz_dir.join("regressions").join(name)));
        let mut rng = Rng::new(0x5eed ^ name.len() as u64);
        let started = Instant::now();
        let mut slowest = Duration::ZERO;
        let mut run = |data: &[u8]| {
            let t = Instant::now();
            target(data);
            slowest = slowest.max(t.elapsed());
        };
        for input in &inputs {
            run(input);
            run(&[]);
        }
        for i in 0..MUTATIONS {
            let a = &inputs[i % inputs.len()];
            let b = &inputs[rng.below(inputs.len() as u64) as usize];
            let m = mutate(&mut rng, a, b);
            run(&m);
        }
        assert!(
            slowest < Duration::from_secs(2),
            "{name}: one input took {slowest:?}"
        );
        report.push(format!(
            "{name}: {} inputs in {:?}",
            inputs.len() * 2 + MUTATIONS,
            started.elapsed()
        ));
    }
    println!("{}", report.join("\n"));
}
