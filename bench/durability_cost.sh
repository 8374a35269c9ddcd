#!/usr/bin/env bash
# durability_cost.sh -- what deduct.durability = replica costs against leader.
#
#   bench/durability_cost.sh [--dir DIR] [--base-port N] [--duration S] [--connections C] [--rounds R]
#
# One infrastructure (3 masters + 3 replicas, MariaDB) and, R times in turn,
# the daemons (1 node, 3 partitions per SKU) under each setting: a fresh SKU
# sold by a closed loop of C connections for S seconds. The two settings run
# alternately inside one run, so the machine's drift between days cancels
# out; compare the ratios, not the absolute figures. Output: a table and
# bench/results/durability-DATE.json. Everything is stopped at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${STOCK_BIN:-$ROOT/bin}
DIR=/tmp/stock-durability-bench
BASE=27700
DURATION_S=10
CONNECTIONS=64
ROUNDS=2

usage() {
    echo "usage: $0 [--dir DIR] [--base-port N] [--duration S] [--connections C] [--rounds R]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
    --dir) DIR=$2; shift 2 ;;
    --base-port) BASE=$2; shift 2 ;;
    --duration) DURATION_S=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) usage ;;
    esac
done
for v in "$BASE" "$DURATION_S" "$CONNECTIONS" "$ROUNDS"; do
    [[ "$v" =~ ^[0-9]+$ ]] || usage
done

say() { printf 'durability_cost: %s\n' "$*"; }
cleanup() {
    bash "$ROOT/scripts/stop.sh" --dir "$DIR/daemons" >/dev/null 2>&1 || true
    bash "$ROOT/scripts/infra.sh" down --dir "$DIR/infra" >/dev/null 2>&1 || true
}
trap cleanup EXIT
mkdir -p "$DIR" "$ROOT/bench/results"

say "infrastructure in $DIR/infra (base port $BASE)"
bash "$ROOT/scripts/infra.sh" up --dir "$DIR/infra" --base-port "$BASE" >"$DIR/infra.log" 2>&1 ||
    { tail -20 "$DIR/infra.log"; exit 1; }

results=()
for ((round = 1; round <= ROUNDS; round++)); do
    for mode in replica leader; do
        rm -rf "$DIR/daemons"
        bash "$ROOT/scripts/start.sh" --dir "$DIR/daemons" --infra-env "$DIR/infra/infra.env" \
            --nodes 1 --http-port $((BASE + 90)) --node-opt "deduct.durability=$mode" \
            --scheduler-opt "pool.durability=$mode" >"$DIR/start.log" 2>&1 ||
            { tail -20 "$DIR/start.log"; exit 1; }
        # shellcheck disable=SC1091
        . "$DIR/daemons/endpoints.env"
        sku="dur-$mode-$round-$$"
        "$BIN/stockctl" --socket "$ADMIN_SOCKET" sku load "$sku" --total 100000000 \
            --partitions 3 --min-chunk 1000 --max-chunk 100000 >/dev/null
        json="$DIR/$mode-$round.json"
        "$BIN/stock-loadgen" --url "$HTTP_URL" --skus "$sku" --duration "$DURATION_S" \
            --connections "$CONNECTIONS" --qty 1 --quiet --json "$json" >"$DIR/$mode-$round.txt"
        line=$(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
lat = j["latency_ms"]
print("%s %d %.0f %.2f %.2f %d" % (sys.argv[2], int(sys.argv[3]), j["throughput_per_s"],
      lat["p50"], lat["p99"], j["answers"].get("unavailable", 0)))
' "$json" "$mode" "$round")
        say "round $round $mode: $line"
        results+=("$line")
        bash "$ROOT/scripts/stop.sh" --dir "$DIR/daemons" >/dev/null 2>&1
    done
done

out="$ROOT/bench/results/durability-$(date +%Y%m%d-%H%M%S).json"
printf '%s\n' "${results[@]}" | python3 -c '
import json, sys
rows = [l.split() for l in sys.stdin if l.strip()]
by = {}
for mode, rnd, tput, p50, p99, unav in rows:
    by.setdefault(mode, []).append((float(tput), float(p50), float(p99), int(unav)))
summary = {}
print("setting   deductions/s   p50 ms   p99 ms   503s")
for mode in ("replica", "leader"):
    v = by[mode]
    t = sum(x[0] for x in v) / len(v)
    p50 = sum(x[1] for x in v) / len(v)
    p99 = sum(x[2] for x in v) / len(v)
    u = sum(x[3] for x in v)
    summary[mode] = {"throughput_per_s": t, "p50_ms": p50, "p99_ms": p99, "unavailable": u,
                     "runs": len(v)}
    print("%-9s %12.0f %8.2f %8.2f %6d" % (mode, t, p50, p99, u))
r = summary["replica"]["throughput_per_s"] / summary["leader"]["throughput_per_s"]
summary["replica_over_leader_throughput"] = r
print("replica / leader throughput: %.2fx" % r)
json.dump({"rows": rows, "summary": summary}, open(sys.argv[1], "w"), indent=1)
' "$out"
say "results: $out"
