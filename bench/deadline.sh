#!/usr/bin/env bash
# The assignment-deadline benchmark of docs/BENCHMARKS.md: builds lmsbridge and the generator
# in release mode, then for each database and each way of sending scores starts a fresh
# lmsbridge on loopback and runs `lmsbridge-loadtest deadline` against it: 10,000 scores
# (2,000 students x 5 assignments) sent in a burst through the product API, drained by
# lmsbridge's worker into a simulated LMS that allows 100 requests/s (429 with Retry-After
# beyond) and refuses 5% of score posts at random with 429. Prints the Markdown table.
#
# Bounded: every generator run has a drain limit and a wall-clock limit, every process
# started here is stopped on exit, and a lock file keeps two benchmarks from running at
# once. Load goes to 127.0.0.1 only.
#
# Settings (environment):
#   DBS="sqlite postgres"  MODES="batch single"  STUDENTS=2000  ASSIGNMENTS=5
#   PLATFORM_RATE=100 THROTTLE_SHARE=0.05 THROTTLE_RETRY_AFTER=1   (the simulated LMS; the
#     last is the Retry-After, in seconds, of the random 429s)
#   WORKER_RATE=98                            (LMSBRIDGE_PLATFORM_RATE_PER_SEC)
#   WORKER_CONCURRENCY=16                     (LMSBRIDGE_PLATFORM_MAX_CONCURRENCY)
#   CONCURRENCY=32 BATCH_SIZE=1000            (how the generator sends)
#   MAX_DRAIN_SECONDS=600
#   PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/test  (a database is created and dropped)
#   SKIP_BUILD=1 to reuse the release binaries as they are
#   BUILD_PROFILE=debug to check the script and the generator with the debug binaries
#     (cargo build -p lmsbridge -p loadtest first); its figures are not benchmark figures
set -euo pipefail
# The API key files and logs are for this user only.
umask 077

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
WORK=${BENCH_WORK:-$ROOT/target/bench-deadline}
DBS=${DBS:-"sqlite postgres"}
MODES=${MODES:-"batch single"}
STUDENTS=${STUDENTS:-2000}
ASSIGNMENTS=${ASSIGNMENTS:-5}
PLATFORM_RATE=${PLATFORM_RATE:-100}
THROTTLE_SHARE=${THROTTLE_SHARE:-0.05}
THROTTLE_RETRY_AFTER=${THROTTLE_RETRY_AFTER:-1}
WORKER_RATE=${WORKER_RATE:-98}
WORKER_CONCURRENCY=${WORKER_CONCURRENCY:-16}
CONCURRENCY=${CONCURRENCY:-32}
BATCH_SIZE=${BATCH_SIZE:-1000}
MAX_DRAIN_SECONDS=${MAX_DRAIN_SECONDS:-600}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/test}
BUILD_PROFILE=${BUILD_PROFILE:-release}
LB=$WORK/bin/lmsbridge
GEN=$WORK/bin/lmsbridge-loadtest
RUN_ID=$$
export PGOPTIONS='-c client_min_messages=warning'

CHILDREN=()
DATABASES=()

log() { printf '== %s\n' "$*" >&2; }

stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    for pid in "${CHILDREN[@]}"; do stop_pid "$pid"; done
    for db in "${DATABASES[@]}"; do
        psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two distinct free ports: both sockets stay bound until both numbers are known.
free_ports() {
    python3 -c 'import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])'
}

build() {
    if [[ ${SKIP_BUILD:-0} != 1 && $BUILD_PROFILE == release ]]; then
        log "building lmsbridge and lmsbridge-loadtest (release)"
        (cd "$ROOT" && cargo build --release -q -p lmsbridge -p loadtest)
    fi
    # Copies, so that a rebuild in the shared target/ cannot swap the code under measurement.
    mkdir -p "$WORK/bin"
    cp "$ROOT/target/$BUILD_PROFILE/lmsbridge" "$ROOT/target/$BUILD_PROFILE/lmsbridge-loadtest" "$WORK/bin/"
    local dirty=""
    if [[ -n $(git -C "$ROOT" status --porcelain -- src crates Cargo.toml 2>/dev/null) ]]; then
        dirty=" with uncommitted changes"
    fi
    CODE="lmsbridge $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty, $BUILD_PROFILE build"
}

# run_one DB MODE: a fresh lmsbridge, one generator run, everything stopped.
run_one() {
    local db=$1 mode=$2 label dbargs=()
    local data=$WORK/data-$db-$mode
    rm -rf "$data"
    mkdir -p "$data"
    if [[ $db == postgres ]]; then
        local name=lmsbridge_deadline_${RUN_ID}_$mode
        psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null
        psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE $name" >/dev/null
        DATABASES+=("$name")
        dbargs=(--database-url "${PG_ADMIN_URL%/*}/$name?sslmode=disable")
        label="lmsbridge (PostgreSQL)"
    else
        label="lmsbridge (SQLite)"
    fi
    local lms_port port
    read -r lms_port port < <(free_ports)
    local lms=http://127.0.0.1:$lms_port
    log "$label, $mode: tenant and platform"
    "$LB" tenant create --name deadline --launch-url "$lms/product/launch" \
        --data-dir "$data" "${dbargs[@]}" 2>>"$WORK/logs/cli.log" |
        python3 -c 'import json, sys; t = json.load(sys.stdin); print(t["id"]); print(t["api_key"], file=open(sys.argv[1], "w"))' \
            "$data/api-key" >"$data/tenant-id"
    "$LB" platform add --tenant "$(cat "$data/tenant-id")" --kind lti --issuer "$lms" \
        --client-id deadline --auth-url "$lms/auth" --token-url "$lms/token" --jwks-url "$lms/jwks" \
        --deployment-id 1 --data-dir "$data" "${dbargs[@]}" >/dev/null 2>>"$WORK/logs/cli.log"
    log "$label, $mode: lmsbridge on 127.0.0.1:$port (worker rate $WORKER_RATE/s), LMS on $lms ($PLATFORM_RATE/s)"
    LMSBRIDGE_PLATFORM_RATE_PER_SEC=$WORKER_RATE LMSBRIDGE_PLATFORM_MAX_CONCURRENCY=$WORKER_CONCURRENCY \
        "$LB" serve --listen "127.0.0.1:$port" --data-dir "$data" "${dbargs[@]}" \
        >"$WORK/logs/lmsbridge-$db-$mode.log" 2>&1 &
    local pid=$!
    CHILDREN+=("$pid")
    local status=0
    "$GEN" deadline --lmsbridge "http://127.0.0.1:$port/" --api-key-file "$data/api-key" \
        --lms-listen "127.0.0.1:$lms_port" --client-id deadline --deployment-id 1 \
        --mode "$mode" --students "$STUDENTS" --assignments "$ASSIGNMENTS" \
        --batch-size "$BATCH_SIZE" --concurrency "$CONCURRENCY" \
        --platform-rate "$PLATFORM_RATE" --throttle-share "$THROTTLE_SHARE" \
        --throttle-retry-after "$THROTTLE_RETRY_AFTER" \
        --max-drain-seconds "$MAX_DRAIN_SECONDS" --wall-limit $((MAX_DRAIN_SECONDS + 300)) \
        --label "$label" --out "$WORK/results/$db-$mode.json" \
        >"$WORK/logs/generator-$db-$mode.log" 2>&1 || status=$?
    stop_pid "$pid"
    if [[ $status != 0 ]]; then
        log "$label, $mode: the generator failed ($status); see $WORK/logs/generator-$db-$mode.log"
        tail -n 5 "$WORK/logs/generator-$db-$mode.log" >&2 || true
    fi
    tail -n 1 "$WORK/logs/generator-$db-$mode.log" >&2 || true
}

main() {
    mkdir -p "$WORK/logs" "$WORK/results"
    exec 9>/tmp/lmsbridge-bench.lock
    if ! flock -n 9; then
        log "another benchmark holds /tmp/lmsbridge-bench.lock; waiting for it (at most 30 min)"
        flock -w 1800 9 || { log "still busy; giving up"; exit 1; }
    fi
    rm -f "$WORK"/results/*.json
    build
    for db in $DBS; do
        for mode in $MODES; do
            run_one "$db" "$mode"
        done
    done
    echo
    echo "Code: $CODE. Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    python3 - "$WORK"/results/*.json <<'PY'
import json, sys
print("| run | mode | scores | enqueued/s | drain s (after enqueue) | requests/s sent | utilisation | accepted/s | 429 random / rate limit | duplicates | lost | coalesced | final states |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for f in sys.argv[1:]:
    r = json.load(open(f))
    states = ", ".join(f"{k} {v}" for k, v in r["states"].items())
    print(f"| {r['label']} | {r['mode']} | {r['accepted']} | {r['enqueue_per_sec']:.0f} | "
          f"{r['drain_secs']:.1f} ({r['drain_after_enqueue_secs']:.1f}) | {r['requests_per_sec']:.1f} | "
          f"{100 * r['utilisation']:.1f}% | {r['accepted_per_sec']:.1f} | "
          f"{r['refused_at_random']} / {r['refused_by_rate_limit']} | {r['duplicates']} | {r['lost']} | "
          f"{r['coalesced']} | {states} |")
PY
}

main "$@"
