#!/usr/bin/env bash
# Runs every test: the committed guest components must match their sources,
# then the whole workspace (unit, integration and doc tests, and the
# examples, each run as a test).
# Needs only rustup, cargo and python3; installs the pinned guest toolchain
# and a SeaweedFS server (for the S3 snapshot store tests) itself.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== guests: rebuilding policies/ and comparing with the committed components"
cargo xtask guests --check

# A real S3-compatible server on loopback, stopped whatever happens.
source scripts/seaweedfs.sh start
trap 'bash scripts/seaweedfs.sh stop' EXIT
export RAMROD_REQUIRE_S3=1

echo "== cargo test --workspace"
cargo test --workspace --locked
