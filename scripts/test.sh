#!/usr/bin/env bash
# Runs every test: the committed guest components must match their sources,
# then the whole workspace (unit, integration and doc tests, and the
# examples, each run as a test).
# Needs only rustup, cargo, python3 and node/npm; installs the pinned guest
# toolchains (Rust, and the policy kits' C, Go, Python and JavaScript ones)
# and a SeaweedFS server (for the S3 snapshot store tests) itself.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== guests: rebuilding policies/ and comparing with the committed components"
cargo xtask guests --check

# The policy kits (examples/policies): every language's components, built
# with their pinned toolchains (cached by source hash under
# target/policy-kits), and each kit's native tests. The cargo tests then
# check the components against the built-in policies and in a cluster.
echo "== kits: building examples/policies and running their native tests"
examples/policies/build.sh --test
export RAMROD_REQUIRE_KITS=1

# A real S3-compatible server on loopback, stopped whatever happens.
source scripts/seaweedfs.sh start
trap 'bash scripts/seaweedfs.sh stop' EXIT
export RAMROD_REQUIRE_S3=1

echo "== cargo test --workspace"
cargo test --workspace --locked

# The Flintlock Go module (examples/flintlock): formatted, vetted, static
# builds for both release targets, and its tests against real `ramrod
# serve` processes (the debug binary the cargo tests just built).
echo "== go: examples/flintlock"
GO="$PWD/scripts/go.sh"
unformatted="$("$("$GO" env GOROOT)/bin/gofmt" -l examples/flintlock)"
if [ -n "$unformatted" ]; then
    echo "gofmt: not formatted: $unformatted" >&2
    exit 1
fi
"$GO" -C examples/flintlock vet ./...
for arch in amd64 arm64; do
    CGO_ENABLED=0 GOOS=linux GOARCH=$arch "$GO" -C examples/flintlock build -o /dev/null ./...
done
RAMROD_BIN="$PWD/target/debug/ramrod" "$GO" -C examples/flintlock test -count=1 ./...
