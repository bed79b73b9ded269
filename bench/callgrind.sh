#!/usr/bin/env bash
# Instructions and system calls per full launch (login + launch post + batch write) of
# lmsbridge on SQLite, counted rather than timed, so that figures taken on a busy machine can
# be compared (docs/BENCHMARKS.md, "Instructions and system calls per launch").
#
#   bench/callgrind.sh [callgrind|strace|both]      (default: both)
#
# For each: a fresh data directory with the benchmark's tenant and platform, `lmsbridge
# serve` with its defaults, WARMUP launches (untimed, not counted: key cache, pools, prepared
# statements), then LAUNCHES launches at CONCURRENCY, counted:
#   callgrind: the server runs under `valgrind --tool=callgrind`; its counters are zeroed
#     after the warm-up (`callgrind_control -z`) and dumped after the counted launches
#     (`callgrind_control -d`); instructions (Ir) of every thread ÷ LAUNCHES.
#   strace: the server runs natively; `strace -c -f` is attached to all its threads after the
#     warm-up and detached after the counted launches; calls ÷ LAUNCHES, by call.
# Both include what runs beside the launches while they run (the passback worker's polls,
# the WAL checkpointer every 250 ms), which is why the counted phase is a fixed number of
# launches and why its length (slow under valgrind) weighs in a little.
#
# Settings (environment): LAUNCHES=2000 CONCURRENCY=8 WARMUP=300 BIN=<dir with the release
# binaries> (default target/release). Loopback only; everything started is stopped on exit.
set -euo pipefail

MODE=${1:-both}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BIN=${BIN:-$ROOT/target/release}
WORK=${BENCH_WORK:-$HERE/.work}/callgrind
LAUNCHES=${LAUNCHES:-2000}
CONCURRENCY=${CONCURRENCY:-8}
WARMUP=${WARMUP:-300}
PRODUCT_URL=http://127.0.0.1:1/product

CHILDREN=()
cleanup() {
    local status=$?
    for pid in "${CHILDREN[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

rm -rf "$WORK"
mkdir -p "$WORK/bin"
cp "$BIN/lmsbridge" "$BIN/lmsbridge-loadtest" "$WORK/bin/"
LB=$WORK/bin/lmsbridge
GEN=$WORK/bin/lmsbridge-loadtest
echo "code: lmsbridge $(git -C "$ROOT" rev-parse --short HEAD)$([[ -n $(git -C "$ROOT" status --porcelain -- src crates ':!crates/loadtest' Cargo.toml) ]] && echo ' with uncommitted changes')"

# prepare NAME: a fresh data directory with the tenant and platform; sets DATA, PLATFORM_PORT.
prepare() {
    DATA=$WORK/$1/data
    mkdir -p "$DATA"
    PLATFORM_PORT=$(free_port)
    local platform=http://127.0.0.1:$PLATFORM_PORT tenant
    tenant=$("$LB" tenant create --name bench --launch-url "$PRODUCT_URL" --data-dir "$DATA" 2>/dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    "$LB" platform add --tenant "$tenant" --kind lti --issuer "$platform" --client-id bench \
        --auth-url "$platform/auth" --token-url "$platform/token" --jwks-url "$platform/jwks" \
        --deployment-id d1 --data-dir "$DATA" >/dev/null 2>&1
}

# gen BASE LAUNCHES OUT: one generator run of exactly LAUNCHES launches (no time limit binds).
gen() {
    local base=$1 n=$2 out=$3
    "$GEN" run --tool lmsbridge --label lmsbridge \
        --platform-listen "127.0.0.1:$PLATFORM_PORT" --platform-key "$WORK/platform-key.der" \
        --login-url "$base/lti/login" --target-link-uri "$base/lti/launch" \
        --product-url "$PRODUCT_URL" --ready-url "$base/ready" \
        --concurrency "$CONCURRENCY" --launches "$n" --warmup 0 --max-seconds 3000 \
        --wall-limit 3600 --out "$out" >/dev/null 2>"$out.log"
    python3 - "$out" "$n" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))
ok = sum(r["launches_ok"] for r in runs)
if ok != int(sys.argv[2]):
    sys.exit(f"{sys.argv[1]}: {ok} launches succeeded, not {sys.argv[2]}")
PY
}

if [[ $MODE == callgrind || $MODE == both ]]; then
    prepare callgrind
    port=$(free_port)
    base=http://127.0.0.1:$port
    valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind/callgrind.out" \
        "$LB" serve --listen "127.0.0.1:$port" --data-dir "$DATA" >"$WORK/callgrind/serve.log" 2>&1 &
    PID=$!
    CHILDREN+=("$PID")
    gen "$base" "$WARMUP" "$WORK/callgrind/warmup.json"
    callgrind_control -z "$PID" >/dev/null
    gen "$base" "$LAUNCHES" "$WORK/callgrind/counted.json"
    callgrind_control -d "$PID" >/dev/null
    kill -TERM "$PID"
    wait "$PID" 2>/dev/null || true
    # The dump after zeroing is the one with the highest part number.
    dump=$(ls "$WORK"/callgrind/callgrind.out.* | sort -t. -k3 -n | tail -1)
    ir=$(grep '^summary:' "$dump" | awk '{print $2}')
    echo "callgrind: $ir instructions for $LAUNCHES launches = $((ir / LAUNCHES)) per launch ($dump)"
    callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | head -60 >"$WORK/callgrind/inclusive.txt" || true
    callgrind_annotate "$dump" 2>/dev/null | head -60 >"$WORK/callgrind/self.txt" || true
fi

if [[ $MODE == strace || $MODE == both ]]; then
    prepare strace
    port=$(free_port)
    base=http://127.0.0.1:$port
    "$LB" serve --listen "127.0.0.1:$port" --data-dir "$DATA" >"$WORK/strace/serve.log" 2>&1 &
    PID=$!
    CHILDREN+=("$PID")
    gen "$base" "$WARMUP" "$WORK/strace/warmup.json"
    strace -c -f -p "$PID" -o "$WORK/strace/strace.txt" 2>/dev/null &
    STRACE=$!
    CHILDREN+=("$STRACE")
    sleep 1
    gen "$base" "$LAUNCHES" "$WORK/strace/counted.json"
    kill -INT "$STRACE"
    wait "$STRACE" 2>/dev/null || true
    kill -TERM "$PID"
    wait "$PID" 2>/dev/null || true
    python3 - "$WORK/strace/strace.txt" "$LAUNCHES" <<'PY'
import re, sys
n = int(sys.argv[2])
rows = []
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 5 and re.match(r"^[\d.]+$", f[0]) and f[-1] != "total":
        calls = int(f[3])
        rows.append((calls, f[-1]))
total = sum(c for c, _ in rows)
print(f"strace: {total} system calls for {n} launches = {total / n:.2f} per launch")
for calls, name in sorted(rows, reverse=True)[:12]:
    print(f"  {name:<16} {calls / n:6.2f}")
PY
fi
