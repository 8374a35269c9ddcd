#!/usr/bin/env bash
# script_bench.sh -- Redis time of the DEDUCT script alone, by batch size.
#
#   bench/script_bench.sh [--port P] [--calls N] [--items "1 8 64 256"] [--no-build]
#
# Why: "Redis time per deduction" measured during a sale mixes the script's
# own cost with what a loaded box adds (a call preempted half-way counts as
# call time) and with whatever batch sizes the load produced. This starts a
# scratch redis-server (127.0.0.1:P, default 27090, appendonly everysec as the
# infrastructure ships it, data in a temporary directory), runs
# bin/stock-scriptbench against it -- the very script the nodes run, one
# synchronous call at a time, every order new -- and stops it by pid.
#
# Output, one line per batch size: EVALSHA time per call and per deduction
# (INFO commandstats), and Redis CPU per deduction (INFO cpu: the script,
# request parsing, AOF writes).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")
BIN=${STOCK_BIN:-$REPO_ROOT/bin}
PORT=27090
CALLS=200
ITEMS="1 8 64 256"
BUILD=1
READY_TIMEOUT_S=10
STOP_TIMEOUT_S=10

die() { printf 'script_bench: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --port)     [ $# -ge 2 ] || die "--port needs a value"; PORT=$2; shift 2 ;;
        --calls)    [ $# -ge 2 ] || die "--calls needs a value"; CALLS=$2; shift 2 ;;
        --items)    [ $# -ge 2 ] || die "--items needs a value"; ITEMS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help)  usage; exit 0 ;;
        *)          usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ "$PORT" =~ ^[0-9]+$ ]] && [ "$PORT" -ge 1024 ] && [ "$PORT" -le 65535 ] ||
    die "--port must be an integer in 1024..65535"

if [ "$BUILD" -eq 1 ]; then
    make -s -C "$REPO_ROOT" bin/stock-scriptbench >/dev/null || die "build failed"
fi
[ -x "$BIN/stock-scriptbench" ] || die "$BIN/stock-scriptbench is missing (make)"
command -v redis-server >/dev/null || die "redis-server not found (scripts/deps.sh)"
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    die "port $PORT is in use (choose --port)"
fi

WORK=$(mktemp -d /tmp/stock-script-bench.XXXXXX)
REDIS_PID=""
cleanup() {
    if [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" 2>/dev/null; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        local deadline=$((SECONDS + STOP_TIMEOUT_S))
        while kill -0 "$REDIS_PID" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
        kill -KILL "$REDIS_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

redis-server --port "$PORT" --bind 127.0.0.1 --dir "$WORK" --save '' \
    --appendonly yes --appendfsync everysec --logfile "$WORK/redis.log" </dev/null &
REDIS_PID=$!
deadline=$((SECONDS + READY_TIMEOUT_S))
until redis-cli -p "$PORT" ping >/dev/null 2>&1; do
    kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server exited: $(tail -3 "$WORK/redis.log")"
    [ "$SECONDS" -lt "$deadline" ] || die "redis-server not answering after ${READY_TIMEOUT_S}s"
    sleep 0.1
done
echo "script_bench: redis $(redis-server --version | grep -o 'v=[0-9.]*'), $(nproc) cores," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg), $CALLS calls per batch size"
"$BIN/stock-scriptbench" --port "$PORT" --calls "$CALLS" --items "$ITEMS"
