#!/usr/bin/env bash
# Runs every test: the committed guest components must match their sources,
# then the whole workspace (unit, integration, doc tests).
# Needs only rustup and cargo; installs the pinned guest toolchain itself.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== guests: rebuilding policies/ and comparing with the committed components"
cargo xtask guests --check

echo "== cargo test --workspace"
cargo test --workspace --locked
