#!/usr/bin/env bash
# A longer chaos run than the test suite's (host/tests/chaos.rs): three
# `ramrod serve` processes; a nemesis killing, freezing and partitioning
# nodes, filling their disks (as root: a tmpfs per node) and cutting off
# the S3 snapshot store (a SeaweedFS started here); the history checked for
# linearizability. Prints what it did and found.
#
#   scripts/chaos.sh [SECONDS]      (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/seaweedfs.sh start
trap 'bash scripts/seaweedfs.sh stop' EXIT
export RAMROD_REQUIRE_S3=1
RAMROD_CHAOS_SECONDS="${1:-300}" cargo test --release -p ramrod --test chaos -- --nocapture
