#!/usr/bin/env bash
# Where a launch's time goes in lmsbridge (docs/BENCHMARKS.md, "Where the time goes").
#
#   bench/profile.sh sqlite|postgres
#
# 1. Serial launches (concurrency 1) with lmsbridge's SQL statement log on (sqlx::query at
#    debug, JSON): bench/sql_breakdown.py sums the statements' own execution time per
#    request path and per statement.
#    1b. The same at concurrency 16, to see where requests wait under load.
# 2. Concurrency 16 with the statement log off: latency under load, CPU time and context
#    switches per launch (perf stat), and on PostgreSQL what the backends wait on.
# 3. A CPU profile of the lmsbridge process under load at concurrency 16 (perf record,
#    software clock, flat by symbol) when perf is installed.
# 4. The single-core microbenchmarks of the generator (signing, RS256 verification, full
#    id_token validation).
#
# Bounded like run.sh: a few thousand launches, a wall-clock limit, loopback only, every
# process started here stopped on exit. Assumes run.sh has built the release binaries
# (or run with BUILD=1).
set -euo pipefail

DB=${1:-sqlite}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
WORK=${BENCH_WORK:-$HERE/.work}/profile-$DB
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/test}
LB=$WORK/bin/lmsbridge
GEN=$WORK/bin/lmsbridge-loadtest
PRODUCT_URL=http://127.0.0.1:1/product
SERIAL=${SERIAL:-1000}
LOADED=${LOADED:-6000}
export PGOPTIONS='-c client_min_messages=warning'

CHILDREN=()
DBNAME=lmsbridge_profile_$$
cleanup() {
    local status=$?
    for pid in "${CHILDREN[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $DB == postgres ]]; then
        psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $DBNAME WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

exec 9>/tmp/lmsbridge-bench.lock
flock -w 1800 9 || { echo "another benchmark holds /tmp/lmsbridge-bench.lock" >&2; exit 1; }
if [[ ${BUILD:-0} == 1 ]]; then
    (cd "$ROOT" && cargo build --release -q -p lmsbridge -p loadtest)
fi
rm -rf "$WORK"
mkdir -p "$WORK/data" "$WORK/bin"
cp "$ROOT/target/release/lmsbridge" "$ROOT/target/release/lmsbridge-loadtest" "$WORK/bin/"
echo "code: lmsbridge $(git -C "$ROOT" rev-parse --short HEAD)$([[ -n $(git -C "$ROOT" status --porcelain -- src crates ':!crates/loadtest' Cargo.toml) ]] && echo ' with uncommitted changes')"
dbargs=()
comm=()
if [[ $DB == postgres ]]; then
    psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE $DBNAME" >/dev/null
    dbargs=(--database-url "${PG_ADMIN_URL%/*}/$DBNAME?sslmode=disable")
    comm=(--count-comm postgres)
fi
PLATFORM_PORT=$(free_port)
PLATFORM=http://127.0.0.1:$PLATFORM_PORT
tenant=$("$LB" tenant create --name bench --launch-url "$PRODUCT_URL" --data-dir "$WORK/data" "${dbargs[@]}" 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
"$LB" platform add --tenant "$tenant" --kind lti --issuer "$PLATFORM" --client-id bench \
    --auth-url "$PLATFORM/auth" --token-url "$PLATFORM/token" --jwks-url "$PLATFORM/jwks" \
    --deployment-id d1 --data-dir "$WORK/data" "${dbargs[@]}" >/dev/null 2>&1

# serve LOGFILE [ENV...]: starts lmsbridge, sets PID and BASE.
serve() {
    local logfile=$1
    shift
    local port
    port=$(free_port)
    env "$@" "$LB" serve --listen "127.0.0.1:$port" --data-dir "$WORK/data" "${dbargs[@]}" >"$logfile" 2>&1 &
    PID=$!
    CHILDREN+=("$PID")
    BASE=http://127.0.0.1:$port
}

# gen CONCURRENCY LAUNCHES OUT [ARGS...]
gen() {
    local c=$1 n=$2 out=$3
    shift 3
    "$GEN" run --tool lmsbridge --label "lmsbridge ($DB)" \
        --platform-listen "127.0.0.1:$PLATFORM_PORT" --platform-key "$WORK/platform-key.der" \
        --login-url "$BASE/lti/login" --target-link-uri "$BASE/lti/launch" \
        --product-url "$PRODUCT_URL" --ready-url "$BASE/ready" \
        --concurrency "$c" --launches "$n" --max-seconds 60 --wall-limit 300 \
        --out "$WORK/$out.json" "${comm[@]}" "$@"
}

echo "== 1. serial launches with the SQL statement log"
serve "$WORK/serial.log" LMSBRIDGE_LOG_FORMAT=json RUST_LOG=info,sqlx::query=debug,tower_http=debug
gen 1 "$SERIAL" serial --warmup 100 --tool-pid "$PID" >/dev/null
kill -TERM "$PID"
wait "$PID" 2>/dev/null || true
python3 "$HERE/sql_breakdown.py" "$WORK/serial.log" "$WORK/serial.json"

echo
echo "== 1b. the same at concurrency 16: where the waiting goes under load (the log itself slows it)"
serve "$WORK/c16.log" LMSBRIDGE_LOG_FORMAT=json RUST_LOG=info,sqlx::query=debug,tower_http=debug
gen 16 "$SERIAL" c16 --warmup 0 --tool-pid "$PID" >/dev/null
kill -TERM "$PID"
wait "$PID" 2>/dev/null || true
python3 "$HERE/sql_breakdown.py" "$WORK/c16.log" "$WORK/c16.json"

echo
echo "== 2. concurrency 16, statement log off (RUST_LOG=info, the default)"
serve "$WORK/loaded.log"
if command -v perf >/dev/null; then
    # Context switches and CPU of the lmsbridge process while the load runs.
    perf stat -e task-clock,context-switches,cpu-migrations -p "$PID" -o "$WORK/perf-stat.txt" -- sleep 600 >/dev/null 2>&1 &
    STAT=$!
    CHILDREN+=("$STAT")
fi
if [[ $DB == postgres ]]; then
    # What PostgreSQL backends of this database wait on, sampled every 50 ms.
    (
        for _ in $(seq 1200); do
            psql -qAt "$PG_ADMIN_URL" -c "SELECT coalesce(wait_event_type, 'CPU'), coalesce(wait_event, '-') FROM pg_stat_activity WHERE datname = '$DBNAME' AND state = 'active'"
            sleep 0.05
        done
    ) >"$WORK/pg-waits.txt" 2>/dev/null &
    SAMPLER=$!
    CHILDREN+=("$SAMPLER")
fi
gen 16 "$LOADED" loaded --tool-pid "$PID" 2>&1 | grep -v '^platform:' | grep -v '^|' | grep -v '^$' >&2 || true
if [[ -n ${STAT:-} ]]; then
    # perf stat prints its counts when its command ends: end that sleep (its child).
    for child in $(pgrep -P "$STAT"); do kill "$child" 2>/dev/null || true; done
    wait "$STAT" 2>/dev/null || true
    python3 - "$WORK/perf-stat.txt" "$WORK/loaded.json" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
runs = json.load(open(sys.argv[2]))
launches = sum(r["launches_ok"] for r in runs) + 300  # plus the warm-up
def count(name):
    m = re.search(r"([\d,.]+)\s+(?:msec\s+)?" + name, text)
    return float(m.group(1).replace(",", "")) if m else float("nan")
cs = count("context-switches")
task = count("task-clock")
print(f"lmsbridge over the whole run: {task / launches:.2f} CPU ms and {cs / launches:.0f} context switches per launch (login + launch), {launches} launches")
PY
fi
if [[ -n ${SAMPLER:-} ]]; then
    kill "$SAMPLER" 2>/dev/null || true
    wait "$SAMPLER" 2>/dev/null || true
    echo "-- PostgreSQL backends of lmsbridge's database: what active ones were doing (samples)"
    sort "$WORK/pg-waits.txt" | uniq -c | sort -rn | head -12 || true
fi

if command -v perf >/dev/null; then
    echo
    echo "== 3. CPU profile of lmsbridge at concurrency 16 (perf, software clock)"
    perf record -e cpu-clock -F 999 -p "$PID" -o "$WORK/perf.data" -- sleep 12 >/dev/null 2>&1 &
    PERF=$!
    CHILDREN+=("$PERF")
    sleep 0.5
    gen 16 "$LOADED" perf --warmup 0 --tool-pid "$PID" >/dev/null 2>&1 || true
    wait "$PERF" 2>/dev/null || true
    report() {
        perf report -i "$WORK/perf.data" --no-children --stdio "$@" 2>/dev/null |
            grep -v '^#' | grep -v '^$' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//'
    }
    echo "-- by thread kind and object ([kernel.kallsyms] is time in the kernel)"
    report --sort comm,dso | head -10 || true
    echo "-- hottest symbols"
    report --sort comm,sym | head -30 || true
fi
kill -TERM "$PID"
wait "$PID" 2>/dev/null || true

echo
echo "== 4. single-core costs"
"$GEN" microbench --iterations 2000
