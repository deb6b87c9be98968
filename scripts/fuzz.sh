#!/usr/bin/env bash
# Coverage-guided fuzzing of ramrod's decoders of untrusted bytes
# (ramrod::fuzzing: log records, snapshot segments, manifests, Raft RPC
# bodies, policy cache entries) with cargo-fuzz and libFuzzer.
#
#   scripts/fuzz.sh [TARGET|all] [SECONDS]     (default: all, 60 s each)
#
# Installs cargo-fuzz under target/fuzz-tools, and builds with the one
# stable toolchain (RUSTC_BOOTSTRAP=1 lets it take the sanitizer flags
# cargo-fuzz passes). Each run starts from the targets' seeds and the
# corpus it grew before (fuzz/corpus/TARGET, not committed). A crash is
# saved under fuzz/artifacts/TARGET/: copy it into fuzz/regressions/TARGET/
# (committed), and the tests replay it on every run (tests/it/fuzz.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

target="${1:-all}"
seconds="${2:-60}"
tools="$PWD/target/fuzz-tools"
export RUSTC_BOOTSTRAP=1

if [ ! -x "$tools/bin/cargo-fuzz" ]; then
    echo "== fuzz: installing cargo-fuzz into $tools"
    cargo install --locked --root "$tools" cargo-fuzz@0.13.2
fi
export PATH="$tools/bin:$PATH"

echo "== fuzz: writing the seeds into fuzz/corpus"
cargo run --quiet --manifest-path fuzz/Cargo.toml --bin write-seeds -- fuzz/corpus

if [ "$target" = all ]; then
    targets="log_record snapshot_segment manifest raft_rpc policy_cache"
else
    targets="$target"
fi
for t in $targets; do
    echo "== fuzz: $t for ${seconds}s"
    extra=()
    if [ -d "fuzz/regressions/$t" ]; then
        extra+=("fuzz/regressions/$t")
    fi
    (cd fuzz && cargo fuzz run "$t" "corpus/$t" "${extra[@]/#fuzz\//}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=5 -print_final_stats=1)
done
