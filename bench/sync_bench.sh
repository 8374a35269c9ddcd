#!/usr/bin/env bash
# sync_bench.sh -- how fast details reach MySQL: sync lag under load, and the
# drain rate of one sync worker.
#
#   bench/sync_bench.sh [--dir DIR] [--base-port N] [--duration S] [--backlog N]
#
# Phase 1 (lag): a closed-loop sale of --duration seconds at 64 connections;
# the partition nodes' own histogram of ship lag (ack time minus the creation
# time of the oldest detail in each batch, so it is the worst detail of every
# batch) is read from their final "ship stats" log line.
# Phase 2 (drain): the sync worker is stopped, --backlog qty-1 deductions are
# sold (their details wait in Redis), the worker is started again and the time
# until MySQL holds every detail is measured: details applied per second by ONE
# worker, batched inserts included, end to end through the node's shipper.
# Everything runs in its own scratch dir and port range and is stopped at the
# end, also on failure. Output: a summary and bench/results/sync-DATE.json.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${STOCK_BIN:-$ROOT/bin}
DIR=/tmp/stock-sync-bench
BASE=27500
DURATION_S=15
BACKLOG=100000
DRAIN_TIMEOUT_S=120

usage() { echo "usage: $0 [--dir DIR] [--base-port N] [--duration S] [--backlog N]" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
    --dir) DIR=$2; shift 2 ;;
    --base-port) BASE=$2; shift 2 ;;
    --duration) DURATION_S=$2; shift 2 ;;
    --backlog) BACKLOG=$2; shift 2 ;;
    *) usage ;;
    esac
done

say() { printf 'sync_bench: %s\n' "$*"; }
cleanup() { bash "$ROOT/scripts/stop.sh" --dir "$DIR" --all >/dev/null 2>&1 || true; }
trap cleanup EXIT

say "infra + daemons up in $DIR (base port $BASE)"
bash "$ROOT/scripts/start.sh" --dir "$DIR" --all --base-port "$BASE" --nodes 2 --workers 1 >"$DIR.start.log" 2>&1 ||
    { tail -20 "$DIR.start.log"; exit 1; }
# shellcheck disable=SC1091
. "$DIR/endpoints.env"
CTL=("$BIN/stockctl" --socket "$ADMIN_SOCKET")
mysql_q() { timeout 30 mariadb -N -B -h "$MYSQL_HOST" -P "$MYSQL_PORT" -u root stock -e "$1"; }
redis_ded() {
    local sku=$1 parts p salt sum=0 v
    parts=$(redis-cli -c -p "${REDIS_SEED##*:}" HGET "{s:$sku}:pool" parts)
    for ((p = 0; p < parts; p++)); do
        salt=$(redis-cli -c -p "${REDIS_SEED##*:}" HGET "{s:$sku}:pool" "t.$p")
        v=$(redis-cli -c -p "${REDIS_SEED##*:}" HGET "{s:$sku:$p:$salt}:st" ded)
        sum=$((sum + v))
    done
    echo "$sum"
}

# ---- phase 1: lag under load --------------------------------------------------
sku1="syncbench-lag-$$"
"${CTL[@]}" sku load "$sku1" --total 100000000 --partitions 8 --min-chunk 10000 --max-chunk 1000000 >/dev/null
say "phase 1: ${DURATION_S}s sale at 64 connections on $sku1"
timeout $((DURATION_S + 60)) "$BIN/stock-loadgen" --url "$HTTP_URL" --skus "$sku1" --duration "$DURATION_S" \
    --connections 64 --qty 1 --quiet --json "$DIR/lag.json" >"$DIR/lag.txt"
rate=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["throughput_per_s"]))' "$DIR/lag.json" 2>/dev/null ||
    grep -o 'throughput[^,]*' "$DIR/lag.txt" | head -1)
sleep 3 # let shipping drain, then stop so the nodes log this phase's final counters
bash "$ROOT/scripts/stop.sh" --dir "$DIR" >/dev/null 2>&1
final() { grep -h 'stats final' "$DIR"/node-*.log | grep -o "$1=[0-9]*" | cut -d= -f2 | sort -n | tail -1; }
lags=$(final lag_p99_ms)
batch=$(final batch_max)
bash "$ROOT/scripts/start.sh" --dir "$DIR" >>"$DIR.start.log" 2>&1

# ---- phase 2: drain rate of one worker ------------------------------------------
sku2="syncbench-drain-$$"
"${CTL[@]}" sku load "$sku2" --total 100000000 --partitions 8 --min-chunk 10000 --max-chunk 1000000 >/dev/null
wpid=$(tr -dc '0-9' <"$DIR/syncd-1.pid")
say "phase 2: stop the worker (pid $wpid), sell $BACKLOG units with no worker"
kill "$wpid"
for _ in $(seq 1 100); do kill -0 "$wpid" 2>/dev/null || break; sleep 0.1; done
timeout 300 "$BIN/stock-loadgen" --url "$HTTP_URL" --skus "$sku2" --requests "$BACKLOG" \
    --connections 64 --qty 1 --quiet --json "$DIR/drain.json" >"$DIR/drain.txt"
want=$(redis_ded "$sku2")
say "restart the worker; $want details wait in Redis"
t0=$(date +%s%N)
bash "$ROOT/scripts/start.sh" --dir "$DIR" >>"$DIR.start.log" 2>&1
got=0
deadline=$(($(date +%s) + DRAIN_TIMEOUT_S))
while [ "$(date +%s)" -lt "$deadline" ]; do
    got=$(mysql_q "select coalesce(sum(qty),0) from deduction_detail where sku_id='$sku2'")
    [ "$got" -ge "$want" ] && break
    sleep 0.05
done
t1=$(date +%s%N)
[ "$got" -ge "$want" ] || { say "MySQL did not catch up: $got of $want"; exit 1; }
drain_ms=$(((t1 - t0) / 1000000))
drain_rate=$((want * 1000 / (drain_ms > 0 ? drain_ms : 1)))

# ---- results --------------------------------------------------------------------
mkdir -p "$ROOT/bench/results"
out="$ROOT/bench/results/sync-$(date +%Y%m%d-%H%M%S).json"
cat >"$out" <<EOF
{"bench":"sync","machine":{"nproc":$(nproc),"load_avg":"$(cut -d' ' -f1-3 /proc/loadavg)"},
 "phase1":{"duration_s":$DURATION_S,"connections":64,"deductions_per_s":"$rate","ship_lag_p99_ms":${lags:-null},"batch_max":${batch:-null}},
 "phase2":{"backlog_details":$want,"drain_ms":$drain_ms,"details_per_s_one_worker":$drain_rate},
 "command":"bench/sync_bench.sh --duration $DURATION_S --backlog $BACKLOG"}
EOF
say "phase 1: ${rate} deductions/s; ship lag p99 ${lags:-?} ms (worst node); largest batch ${batch:-?}"
say "phase 2: one worker drained $want details in ${drain_ms} ms = ${drain_rate} details/s"
say "results in $out"
