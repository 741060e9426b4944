#!/usr/bin/env bash
# Durable runs per second on NODES nodes sharing one PostgreSQL database (or, with a SQLite
# path and one node, on SQLite): each node is a `coda run` process that starts its share of
# RUNS runs (interactions of its own) and, like every node, steps whichever due runs it
# claims, until none is left. The figure is all runs over the wall time from the first
# node's start to the last one's exit.
#
#   examples/bench/nodes.sh ADMIN_URL|SQLITE_PATH NODES RUNS [PLAN]
#
# ADMIN_URL names a PostgreSQL server's maintenance database (postgres://coda@127.0.0.1:54330/postgres):
# a fresh database `coda_bench` is made on that server for each measure. The plan's HTTP
# step needs `coda-loopback-http 127.0.0.1:8026` running (see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
target=$1 nodes=$2 runs=$3 plan=${4:-examples/bench/five-real-steps.yaml}
coda=${CODA:-target/release/coda}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ $target == postgres://* || $target == postgresql://* ]]; then
    psql -q "$target" -c "DROP DATABASE IF EXISTS coda_bench WITH (FORCE)" -c "CREATE DATABASE coda_bench"
    db="${target%/*}/coda_bench"
else
    rm -f "$target" "$target"-wal "$target"-shm
    db=$target
fi
# Migrate once before the clock starts, so every node finds the schema.
"$coda" resume --db "$db" --grants examples/bench/grants.yaml >/dev/null
share=$((runs / nodes))
start=$(date +%s.%N)
pids=()
for n in $(seq 1 "$nodes"); do
    printf '{"interaction":"bench-node%d","outcome":"completed","data":{"CustomerName":"Ada"}}' "$n" >"$work/event-$n.json"
    "$coda" run "$plan" --event "$work/event-$n.json" --grants examples/bench/grants.yaml \
        --clock virtual --repeat "$share" --db "$db" >"$work/out-$n.json" 2>/dev/null &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
end=$(date +%s.%N)
# Every run done, whichever node stepped it.
"$coda" resume --db "$db" --grants examples/bench/grants.yaml >/dev/null
python3 - "$start" "$end" "$((share * nodes))" "$nodes" <<'PY'
import sys
start, end, runs, nodes = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
wall = end - start
print(f"{nodes} node(s): {runs} runs in {wall:.2f} s = {runs / wall:.0f} runs/s")
PY
