#!/usr/bin/env bash
# A longer chaos run than the test suite's (host/tests/chaos.rs): three
# `ramrod serve` processes, a nemesis killing and freezing nodes, the
# history checked for linearizability. Prints what it did and found.
#
#   scripts/chaos.sh [SECONDS]      (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
RAMROD_CHAOS_SECONDS="${1:-300}" cargo test --release -p ramrod --test chaos -- --nocapture
