#!/usr/bin/env bash
# The launch load benchmark of docs/BENCHMARKS.md: installs the comparison tools, builds
# lmsbridge and the generator in release mode, then runs lmsbridge-loadtest against
#   lmsbridge on SQLite, lmsbridge on PostgreSQL, pylti1p3 (Flask, gunicorn -w 2, Redis
#   cache storage) and ltijs (ltijs-sequelize on PostgreSQL)
# one after the other, each on its own loopback port, and prints the Markdown tables.
#
# Everything is bounded: per tool and concurrency at most $LAUNCHES launches or
# $MAX_SECONDS timed seconds, a wall-clock limit on every generator run, and every process
# started here is stopped on exit. Load goes to 127.0.0.1 only.
#
# Settings (environment):
#   LAUNCHES=20000 MAX_SECONDS=30 CONCURRENCY=16,64
#   TOOLS="lmsbridge-sqlite lmsbridge-postgres pylti1p3 ltijs"
#   PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/test  (databases are created and dropped)
#   REDIS_URL=redis://127.0.0.1:6379/0                    (keys under a per-run prefix, removed)
#   SKIP_INSTALL=1 to reuse the venv, node_modules and release build as they are
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
WORK=${BENCH_WORK:-$HERE/.work}
LAUNCHES=${LAUNCHES:-20000}
MAX_SECONDS=${MAX_SECONDS:-30}
CONCURRENCY=${CONCURRENCY:-16,64}
TOOLS=${TOOLS:-"lmsbridge-sqlite lmsbridge-postgres pylti1p3 ltijs"}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
VENV=$HERE/.venv-bench
# Copies of the release binaries, taken right after the build: a rebuild in the shared
# target/ directory during the run cannot swap the code under measurement.
LB=$WORK/bin/lmsbridge
GEN=$WORK/bin/lmsbridge-loadtest
RUN_ID=$$
PRODUCT_URL=http://127.0.0.1:1/product
export PGOPTIONS='-c client_min_messages=warning'

CHILDREN=()
DATABASES=()
REDIS_PREFIX="lmsbridge-bench-$RUN_ID-"

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
    if command -v redis-cli >/dev/null; then
        redis-cli -u "$REDIS_URL" --scan --pattern "${REDIS_PREFIX}*" 2>/dev/null |
            xargs -r -n 500 redis-cli -u "$REDIS_URL" DEL >/dev/null 2>&1 || true
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts a command in the background with its output in a log file; sets STARTED_PID.
start() {
    local name=$1
    shift
    "$@" >"$WORK/logs/$name.log" 2>&1 &
    STARTED_PID=$!
    CHILDREN+=("$STARTED_PID")
}

create_db() {
    local db=$1
    psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
    psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE $db" >/dev/null
    DATABASES+=("$db")
}

drop_db() {
    psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null || true
}

pg_url_for() { # the admin URL with another database name
    echo "${PG_ADMIN_URL%/*}/$1"
}

install() {
    if [[ ${SKIP_INSTALL:-0} == 1 ]]; then return; fi
    log "installing pylti1p3 into $VENV"
    [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/pylti1p3/requirements.txt"
    log "installing ltijs into bench/ltijs/node_modules"
    (cd "$HERE/ltijs" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
    log "building lmsbridge and lmsbridge-loadtest (release)"
    (cd "$ROOT" && cargo build --release -q -p lmsbridge -p loadtest)
}

# Takes the binaries to measure and notes which code they are.
take_binaries() {
    mkdir -p "$WORK/bin"
    cp "$ROOT/target/release/lmsbridge" "$ROOT/target/release/lmsbridge-loadtest" "$WORK/bin/"
    local dirty=""
    if [[ -n $(git -C "$ROOT" status --porcelain -- src crates ':!crates/loadtest' Cargo.toml 2>/dev/null) ]]; then
        dirty=" with uncommitted changes"
    fi
    CODE="lmsbridge $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty"
}

# gen TOOL LABEL OUT EXTRA_ARGS...: one generator run over every concurrency.
gen() {
    local tool=$1 label=$2 out=$3
    shift 3
    "$GEN" run --tool "$tool" --label "$label" \
        --platform-listen "127.0.0.1:$PLATFORM_PORT" --platform-key "$WORK/platform-key.der" \
        --issuer "$ISSUER" --client-id bench --deployment-id d1 \
        --concurrency "$CONCURRENCY" --launches "$LAUNCHES" --max-seconds "$MAX_SECONDS" \
        --wall-limit 900 --out "$WORK/results/$out.json" "$@" >/dev/null
}

bench_lmsbridge() {
    local db=$1 label dbargs=() comm=()
    local data=$WORK/lmsbridge-$db port
    rm -rf "$data"
    mkdir -p "$data"
    if [[ $db == postgres ]]; then
        local name=lmsbridge_bench_$RUN_ID
        create_db "$name"
        # No TLS on loopback, like ltijs's connection (sqlx would otherwise prefer TLS).
        dbargs=(--database-url "$(pg_url_for "$name")?sslmode=disable")
        label="lmsbridge (PostgreSQL)"
        comm=(--count-comm postgres)
    else
        label="lmsbridge (SQLite)"
    fi
    log "$label: registering the platform"
    local tenant
    tenant=$("$LB" tenant create --name bench --launch-url "$PRODUCT_URL" --data-dir "$data" "${dbargs[@]}" 2>>"$WORK/logs/lmsbridge-$db-cli.log" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    "$LB" platform add --tenant "$tenant" --kind lti --issuer "$ISSUER" --client-id bench \
        --auth-url "$PLATFORM/auth" --token-url "$PLATFORM/token" --jwks-url "$PLATFORM/jwks" \
        --deployment-id d1 --data-dir "$data" "${dbargs[@]}" >/dev/null 2>>"$WORK/logs/lmsbridge-$db-cli.log"
    port=$(free_port)
    log "$label: serving on 127.0.0.1:$port"
    start "lmsbridge-$db" "$LB" serve --listen "127.0.0.1:$port" --data-dir "$data" "${dbargs[@]}"
    local pid=$STARTED_PID base=http://127.0.0.1:$port
    gen lmsbridge "$label" "lmsbridge-$db" \
        --login-url "$base/lti/login" --target-link-uri "$base/lti/launch" \
        --product-url "$PRODUCT_URL" --ready-url "$base/ready" --ceiling-url "$base/health" \
        --tool-pid "$pid" "${comm[@]}"
    stop_pid "$pid"
    if [[ $db == postgres ]]; then drop_db "lmsbridge_bench_$RUN_ID"; fi
}

bench_pylti1p3() {
    local port
    port=$(free_port)
    local base=http://127.0.0.1:$port
    log "pylti1p3: gunicorn -w 2 on 127.0.0.1:$port"
    (
        cd "$HERE/pylti1p3"
        export BENCH_ISSUER=$ISSUER BENCH_CLIENT_ID=bench BENCH_DEPLOYMENT_ID=d1 \
            BENCH_AUTH_URL=$PLATFORM/auth BENCH_TOKEN_URL=$PLATFORM/token \
            BENCH_JWKS_URL=$PLATFORM/jwks BENCH_LAUNCH_URL=$base/launch \
            BENCH_PRODUCT_URL=$PRODUCT_URL BENCH_REDIS_URL=$REDIS_URL \
            BENCH_CACHE_PREFIX=$REDIS_PREFIX
        exec "$VENV/bin/gunicorn" --workers 2 --bind "127.0.0.1:$port" \
            --log-level warning app:app
    ) >"$WORK/logs/pylti1p3.log" 2>&1 &
    local pid=$!
    CHILDREN+=("$pid")
    local pids=(--tool-pid "$pid")
    for _ in $(seq 50); do
        curl -fs "$base/health" >/dev/null 2>&1 && break
        sleep 0.2
    done
    for w in $(pgrep -P "$pid"); do pids+=(--tool-pid "$w"); done
    gen pylti1p3 "pylti1p3 (gunicorn -w 2, Redis)" pylti1p3 \
        --login-url "$base/login" --target-link-uri "$base/launch" \
        --product-url "$PRODUCT_URL" --ready-url "$base/health" \
        "${pids[@]}" --count-comm redis-server
    stop_pid "$pid"
}

bench_ltijs() {
    local port name=ltijs_bench_$RUN_ID
    port=$(free_port)
    create_db "$name"
    local base=http://127.0.0.1:$port
    log "ltijs: node on 127.0.0.1:$port, database $name"
    (
        cd "$HERE/ltijs"
        export BENCH_PORT=$port BENCH_ISSUER=$ISSUER BENCH_CLIENT_ID=bench \
            BENCH_AUTH_URL=$PLATFORM/auth BENCH_TOKEN_URL=$PLATFORM/token \
            BENCH_JWKS_URL=$PLATFORM/jwks BENCH_PG_DATABASE=$name \
            BENCH_PG_HOST=127.0.0.1 BENCH_PG_PORT=5432 BENCH_PG_USER=postgres \
            NODE_ENV=production
        exec node app.js
    ) >"$WORK/logs/ltijs.log" 2>&1 &
    local pid=$!
    CHILDREN+=("$pid")
    gen ltijs "ltijs (ltijs-sequelize, PostgreSQL)" ltijs \
        --login-url "$base/login" --target-link-uri "$base/" --ready-url "$base/health" \
        --tool-pid "$pid" --count-comm postgres
    stop_pid "$pid"
    drop_db "$name"
}

main() {
    mkdir -p "$WORK/logs" "$WORK/results"
    # One benchmark at a time on this machine: two at once would measure each other.
    exec 9>/tmp/lmsbridge-bench.lock
    if ! flock -n 9; then
        log "another benchmark holds /tmp/lmsbridge-bench.lock; waiting for it (at most 30 min)"
        flock -w 1800 9 || { log "still busy; giving up"; exit 1; }
    fi
    rm -f "$WORK"/results/*.json
    install
    take_binaries
    PLATFORM_PORT=$(free_port)
    PLATFORM=http://127.0.0.1:$PLATFORM_PORT
    ISSUER=$PLATFORM
    rm -f "$WORK/platform-key.der"
    log "platform (the generator) at $PLATFORM; $LAUNCHES launches or $MAX_SECONDS s per tool and concurrency ($CONCURRENCY)"
    local files=()
    for t in $TOOLS; do
        case $t in
            lmsbridge-sqlite) bench_lmsbridge sqlite; files+=("$WORK/results/lmsbridge-sqlite.json") ;;
            lmsbridge-postgres) bench_lmsbridge postgres; files+=("$WORK/results/lmsbridge-postgres.json") ;;
            pylti1p3) bench_pylti1p3; files+=("$WORK/results/pylti1p3.json") ;;
            ltijs) bench_ltijs; files+=("$WORK/results/ltijs.json") ;;
            *) echo "unknown tool $t" >&2; exit 2 ;;
        esac
    done
    echo
    echo "Code: $CODE. Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    "$GEN" report "${files[@]}"
}

main "$@"
