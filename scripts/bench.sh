#!/usr/bin/env bash
# Runs every benchmark and writes the reports to target/bench-reports/.
# Starts a SeaweedFS server on loopback for the S3 snapshot figures.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/seaweedfs.sh start
trap 'bash scripts/seaweedfs.sh stop' EXIT

cargo bench -p ramrod --bench policy
cargo bench -p ramrod-tests --bench log_store
cargo bench -p ramrod-tests --bench snapshot
cargo bench -p ramrod-tests --bench cluster
cargo bench -p ramrod-tests --bench control_plane
# The policy kits in every language (built first; cached by source hash).
examples/policies/build.sh
cargo bench -p ramrod-tests --bench kits
# The Flintlock repository over the unix socket, against release nodes.
cargo build --release -p ramrod --bin ramrod
RAMROD_BENCH=1 RAMROD_BIN="$PWD/target/release/ramrod" \
    scripts/go.sh -C examples/flintlock test -count=1 -timeout 60m -run TestFlintlockBenchmark -v ./microvmstore/
ls -l target/bench-reports/
