#!/usr/bin/env bash
# The service benchmark: coda and Restate running the same five-step flow, interleaved, on
# this machine (README.md beside this file). For every repetition and client count it runs
# coda, then Restate, each with a fresh data directory, driven by the same load generator
# (loadgen.mjs), then coda's open loop once per repetition; it prints the median table.
#
# env: N (20000) WARMUP (1000) CONCURRENCIES ("16 64 256") REPS (3) TARGETS ("coda restate")
#      OPEN (1: also the open loop, N runs) CODA_DB (a postgres://…/NAME URL, NAME a database
#      dropped and made again for each run; default SQLite in the data dir) CODA_BIN (a coda already built; default: built here, release) OUT_DIR (target/bench/service) NETNS (1: loopback-only network namespace)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WORK="$ROOT/target/bench/service"
OUT_DIR="${OUT_DIR:-$WORK}"
N="${N:-20000}" WARMUP="${WARMUP:-1000}" CONCURRENCIES="${CONCURRENCIES:-16 64 256}"
REPS="${REPS:-3}" TARGETS="${TARGETS:-coda restate}" OPEN="${OPEN:-1}" CODA_DB="${CODA_DB:-}"
export N WARMUP CONCURRENCIES REPS TARGETS OPEN CODA_DB OUT_DIR
RESTATE_VERSION=1.7.12 RESTATE_SDK_VERSION=1.17.2
RESTATE="$WORK/restate"
CODA="${CODA_BIN:-$ROOT/target/release/coda}"

# Build and install first (they need the package registries), then measure inside a network
# namespace with only loopback, so nothing leaves the machine (Restate checks for releases).
if [[ -z "${IN_NETNS:-}" ]]; then
    mkdir -p "$WORK" "$RESTATE"
    if [[ -z ${CODA_BIN:-} ]]; then
        echo "==> building coda (release)" >&2
        (cd "$ROOT" && cargo build --quiet --release -p coda-cli)
    fi
    if [[ $TARGETS == *restate* && ! -x $RESTATE/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server ]]; then
        echo "==> installing Restate $RESTATE_VERSION and its SDK $RESTATE_SDK_VERSION (npm)" >&2
        (cd "$RESTATE" && { [[ -f package.json ]] || npm init -y >/dev/null; } &&
            npm install --silent --no-audit --no-fund "@restatedev/restate-server@$RESTATE_VERSION" \
                "@restatedev/restate-sdk@$RESTATE_SDK_VERSION")
    fi
    cp "$HERE/restate/service.mjs" "$RESTATE/"
    if [[ ${NETNS:-1} == 1 ]] && unshare -n true 2>/dev/null; then
        exec unshare -n env IN_NETNS=1 bash -c 'ip link set lo up && exec bash "$0"' "$0"
    fi
fi

PIDS=()
stop_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
trap stop_all EXIT
wait_http() { # url
    for _ in $(seq 1 200); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "timeout waiting for $1" >&2
    return 1
}

# One coda run: a fresh data dir, the loopback server, `coda serve` with the benchmark's
# grants, a token for tenant local, the two plans published. Prints the token.
start_coda() { # tag
    local data="$WORK/coda-data"
    rm -rf "$data" && mkdir -p "$data"
    # A PostgreSQL database starts empty too, as the SQLite file does: CODA_DB names a
    # database of its own (not `postgres`), dropped and made again from `postgres`.
    if [[ $CODA_DB == postgres* ]]; then
        psql -q "${CODA_DB%/*}/postgres" -c "DROP DATABASE IF EXISTS ${CODA_DB##*/} WITH (FORCE)" \
            -c "CREATE DATABASE ${CODA_DB##*/}" >/dev/null
        psql -qtA "${CODA_DB%/*}/postgres" -c "SELECT pg_stat_statements_reset()" >/dev/null 2>&1 || true
    fi
    LOOPBACK_PORT=8026 node "$HERE/loopback.mjs" >"$WORK/logs/loopback-$1.log" 2>&1 &
    PIDS+=($!)
    local operator=bench-operator-$RANDOM$RANDOM
    CODA_OPERATOR_TOKEN=$operator CODA_LOG=warn "$CODA" serve --listen 127.0.0.1:8080 \
        --data-dir "$data" ${CODA_DB:+--db "$CODA_DB"} --grants "$ROOT/examples/bench/grants.yaml" \
        >"$WORK/logs/coda-$1.log" 2>&1 &
    PIDS+=($!)
    CODA_PID=$!
    wait_http http://127.0.0.1:8080/readyz
    wait_http http://127.0.0.1:8026/stats
    TOKEN=$(curl -sf -X POST -H "Authorization: Bearer $operator" \
        http://127.0.0.1:8080/v1/operator/tenants/local/tokens | node -e 'process.stdin.on("data", d => console.log(JSON.parse(d).token))')
    for plan in "$ROOT/examples/bench/five-real-steps.yaml" "$HERE/bench-live.yaml"; do
        curl -sf -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/yaml' \
            --data-binary @"$plan" "http://127.0.0.1:8080/v1/plans/$(basename "$plan" .yaml)" >/dev/null
    done
}

start_restate() { # tag
    rm -rf "$WORK/restate-data"
    sed "s|^base-dir = .*|base-dir = \"$WORK/restate-data\"|" "$HERE/restate/restate.toml" >"$WORK/restate.toml"
    "$RESTATE/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server" \
        -c "$WORK/restate.toml" --no-logo >"$WORK/logs/restate-$1.log" 2>&1 &
    PIDS+=($!)
    RESTATE_PID=$!
    LOOPBACK_PORT=8026 node "$HERE/loopback.mjs" >"$WORK/logs/loopback-$1.log" 2>&1 &
    PIDS+=($!)
    RESTATE_LOGGING=WARN SERVICE_PORT=9080 LOOPBACK_PORT=8026 node "$RESTATE/service.mjs" >"$WORK/logs/service-$1.log" 2>&1 &
    PIDS+=($!)
    SERVICE_PID=$!
    wait_http http://127.0.0.1:9070/health
    wait_http http://127.0.0.1:8026/stats
    for _ in $(seq 1 40); do
        curl -sf -X POST http://127.0.0.1:9070/deployments -H 'content-type: application/json' \
            -d '{"uri":"http://127.0.0.1:9080"}' >/dev/null && return 0
        sleep 0.5
    done
    echo "Restate did not register the service" >&2
    return 1
}

# The store's counters after a coda run (warm-up included): group commits, writes and, on
# PostgreSQL, round trips; and with pg_stat_statements in the server, the statements it ran.
store_counters() { # tag
    curl -sf http://127.0.0.1:8080/metrics | grep -E '^coda_store_' >"$OUT_DIR/store-$1.txt" || true
    if [[ $CODA_DB == postgres* ]]; then
        psql -qtA "${CODA_DB%/*}/postgres" -c "SELECT 'pg_statements_total ' || SUM(calls)
            FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '${CODA_DB##*/}')" \
            >>"$OUT_DIR/store-$1.txt" 2>/dev/null || true
    fi
}

mkdir -p "$WORK/logs" "$OUT_DIR"
{
    echo "date: $(date -u +%FT%TZ)  commit: $(git -C "$ROOT" rev-parse --short HEAD)"
    echo "cpus: $(nproc) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)  mem: $(free -m | awk '/Mem:/{print $2" MiB"}')"
    echo "N=$N WARMUP=$WARMUP CONCURRENCIES=$CONCURRENCIES REPS=$REPS TARGETS=$TARGETS OPEN=$OPEN CODA_DB=${CODA_DB:-sqlite}"
} | tee "$OUT_DIR/env.txt" >&2
RAW="$OUT_DIR/raw.jsonl"
: >"$RAW"
for rep in $(seq 1 "$REPS"); do
    for C in $CONCURRENCIES; do
        for target in $TARGETS; do
            tag="$target-c$C-r$rep"
            echo "==> $tag" >&2
            if [[ $target == coda ]]; then
                start_coda "$tag"
                node "$HERE/loadgen.mjs" --target coda --api http://127.0.0.1:8080 --token "$TOKEN" \
                    --n "$N" --c "$C" --warmup "$WARMUP" --prefix "$tag" --pid "server=$CODA_PID" | tee -a "$RAW" >&2
                store_counters "$tag"
            else
                start_restate "$tag"
                node "$HERE/loadgen.mjs" --target restate --ingress http://127.0.0.1:8080 \
                    --n "$N" --c "$C" --warmup "$WARMUP" --prefix "$tag" \
                    --pid "server=$RESTATE_PID" --pid "service=$SERVICE_PID" | tee -a "$RAW" >&2
            fi
            stop_all
        done
    done
    if [[ $OPEN == 1 && $TARGETS == *coda* ]]; then
        tag="coda-open-r$rep"
        echo "==> $tag" >&2
        start_coda "$tag"
        node "$HERE/loadgen.mjs" --target coda --mode open --api http://127.0.0.1:8080 --token "$TOKEN" \
            --n "$N" --c 64 --warmup "$WARMUP" --prefix "$tag" --pid "server=$CODA_PID" | tee -a "$RAW" >&2
        stop_all
    fi
done
node "$HERE/summarize.mjs" "$RAW" | tee "$OUT_DIR/summary.md"
