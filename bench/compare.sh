#!/usr/bin/env bash
# compare.sh -- `make bench`: this design side by side with the classic ones,
# on the same box, through the same HTTP front, with the same load generator.
#
#   bench/compare.sh [--dir DIR] [--base-port N] [--duration S] [--conns "16 64 256"]
#                    [--nodes N] [--partitions N] [--durability both|replica|leader] [--no-build]
#
# Why: a claim like "N times a single Redis key" is worth only what its
# baseline is. So every design is measured in one run, against one
# infrastructure, by one load generator (closed loop, a unique order id per
# request, a fresh SKU per measurement large enough that nothing sells out):
#   ours        scheduler + partition nodes + sync worker (scripts/start.sh) on the
#               Redis Cluster, details persisted to MariaDB; each run's CPU
#               figures include shipping its details (wait_quiet)
#   single-key  bin/stock-classic --mode single-key: one Lua call per request on
#               one Redis key, against a plain redis-server started here with
#               the infra's durable settings (appendonly yes, appendfsync everysec)
#   mysql-row   bin/stock-classic --mode mysql-row: one InnoDB transaction per
#               request on one row, against the infra's MariaDB (flush at commit)
#   redis-ceil  redis-benchmark running single-key's script on one key with no
#               HTTP at all: what one Redis key can do on this box
# then open-loop runs of ours at 80% of its peak (p99 at 80% load), 50% and 20%,
# on the peak's connection count, ours' MySQL sync lag over the whole run, and
# Redis time per deduction of ours (INFO commandstats and INFO cpu of the masters).
# All of that runs ours with deduct.durability = replica (the default setting),
# unless --durability leader.
# Then, with --durability both (the default), the cost of that setting within
# the same run, on the same infrastructure: ours' daemons are stopped
# (scripts/stop.sh; the infrastructure stays up), started again with
# durability leader, warmed up, and measured closed loop at every connection
# count (runs ours-leader-cN); the report's "durability: replica vs leader"
# section gives, per count, both throughputs, replica/leader, and CPU per
# deduction of ours' processes. --durability replica or leader measures ours
# under that one setting only (and in all of ours' runs), which is quicker.
# CPU seconds of every process involved are sampled around each run
# (/proc/PID/stat), so the report says where the time goes, and how much of the
# box other processes took meanwhile.
#
# Output: bench/results/DATE.json (every figure, machine info, load average,
# the command line, "ratios" at the connection count where ours peaks,
# "durability_replica_vs_leader" with --durability both),
# DATE.md (the table) and DATE.png (throughput vs connections). The table is
# printed at the end. Everything this script starts is stopped on exit, also
# on failure: our daemons (scripts/stop.sh), the infrastructure if this run
# brought it up, its own redis-server and stock-classic servers (by pid).
#
# Ports for base port N: infra N..N+20 (infra.sh), ours N+80 (start.sh),
# bench redis N+30, single-key server N+31, mysql-row server N+32.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")
BIN=${STOCK_BIN:-$REPO_ROOT/bin}
RESULTS_DIR="$REPO_ROOT/bench/results"

DIR=/tmp/stock-bench
BASE_PORT=27000
DURATION_S=10
CONNS="16 64 256"
# Ours is deployed the way this box can run it: ONE partition node (on two
# shared cores a second node adds NNG hand-offs and Redis round trips without
# a core to run on) and 3 partitions per SKU, one per Redis master (each
# partition is one script call per node round, so more partitions than
# masters only shrink the batches: measured here, 8 partitions on 2 nodes cost
# ~165 us of CPU per deduction, 3 on 1 node ~127 us). --nodes and
# --partitions show the other shapes.
NODES=1
# ours' deduct.durability (and pool.durability): both = every run of ours on
# replica, then the closed loop again on leader; replica or leader = that one only.
DURABILITY=both
BUILD=1
CMDLINE="$0 $*"

SKU_TOTAL_UNITS=50000000  # nothing sells out: far above what a run sells
SKU_PARTITIONS=3
MIN_CHUNK_UNITS=10000
MAX_CHUNK_UNITS=1000000
REDIS_CEIL_STOCK_UNITS=1000000000
MYSQL_WORKERS=32          # mysql-row's pool: threads = connections
REDIS_CONNS=8             # single-key's hiredis connections
WARMUP_S=2
OPEN_LOOP_LOAD=0.8
OPEN_LOOP_CURVE="0.2 0.5"  # further open-loop points, fractions of the peak
READY_TIMEOUT_S=20
STOP_TIMEOUT_S=10
REDIS_BENCH_CAL_N=20000   # redis-benchmark calibration requests
REDIS_BENCH_MIN_N=50000   # a measured redis-benchmark run sends at least this many
QUIET_TICKS=10            # "done shipping": under 0.1 s CPU per second (clock ticks)
QUIET_MAX_S=20
REDIS_BENCH_MAX_S=5       # each redis-benchmark run aims at this long
SYNC_STATS_WAIT_S=15      # a node logs its ship stats every 10 s

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<EOF
usage: $(basename "$0") [--dir DIR] [--base-port N] [--duration S] [--conns "16 64 256"]
                  [--nodes N] [--partitions N] [--durability both|replica|leader] [--no-build]

  --dir DIR        scratch directory for the infrastructure and daemons (default $DIR)
  --base-port N    infra.sh base port (default $BASE_PORT); see the header for the others
  --duration S     seconds per measurement (default $DURATION_S)
  --conns LIST     closed-loop connection counts (default "$CONNS")
  --nodes N        partition nodes of ours (default $NODES)
  --partitions N   partitions per SKU of ours (default $SKU_PARTITIONS)
  --durability D   ours' deduct.durability: both (every run of ours on replica,
                   then the closed loop again on leader, for the cost of replica),
                   replica or leader (that setting only) (default $DURABILITY)
  --no-build       do not run make first

Writes bench/results/DATE.{json,md,png} and prints the table.
EOF
}

usage_error() { printf 'bench: %s\n' "$*" >&2; usage >&2; exit 2; }

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --dir)        [ $# -ge 2 ] || usage_error "--dir needs a value"; DIR=$2; shift 2 ;;
            --base-port)  [ $# -ge 2 ] || usage_error "--base-port needs a value"; BASE_PORT=$2; shift 2 ;;
            --duration)   [ $# -ge 2 ] || usage_error "--duration needs a value"; DURATION_S=$2; shift 2 ;;
            --conns)      [ $# -ge 2 ] || usage_error "--conns needs a value"; CONNS=$2; shift 2 ;;
            --nodes)      [ $# -ge 2 ] || usage_error "--nodes needs a value"; NODES=$2; shift 2 ;;
            --partitions) [ $# -ge 2 ] || usage_error "--partitions needs a value"; SKU_PARTITIONS=$2; shift 2 ;;
            --durability) [ $# -ge 2 ] || usage_error "--durability needs a value"; DURABILITY=$2; shift 2 ;;
            --no-build)   BUILD=0; shift ;;
            -h|--help)    usage; exit 0 ;;
            *)            usage_error "unknown argument: $1" ;;
        esac
    done
    [[ "$BASE_PORT" =~ ^[0-9]+$ ]] && [ "$BASE_PORT" -ge 1024 ] && [ "$BASE_PORT" -le 65400 ] ||
        usage_error "--base-port must be an integer in 1024..65400"
    [[ "$DURATION_S" =~ ^[0-9]+$ ]] && [ "$DURATION_S" -ge 1 ] && [ "$DURATION_S" -le 600 ] ||
        usage_error "--duration must be an integer in 1..600"
    case "$DURABILITY" in
        both|replica|leader) ;;
        *) usage_error "--durability must be both, replica or leader" ;;
    esac
    [[ "$SKU_PARTITIONS" =~ ^[0-9]+$ ]] && [ "$SKU_PARTITIONS" -ge 1 ] && [ "$SKU_PARTITIONS" -le 256 ] ||
        usage_error "--partitions must be an integer in 1..256"
    [[ "$NODES" =~ ^[0-9]+$ ]] && [ "$NODES" -ge 1 ] && [ "$NODES" -le 64 ] ||
        usage_error "--nodes must be an integer in 1..64"
    local c n=0
    for c in $CONNS; do
        [[ "$c" =~ ^[0-9]+$ ]] && [ "$c" -ge 1 ] && [ "$c" -le 4096 ] ||
            usage_error "--conns: '$c' is not an integer in 1..4096"
        n=$((n + 1))
    done
    [ "$n" -ge 1 ] && [ "$n" -le 8 ] || usage_error "--conns needs 1..8 counts"
    case "$DIR" in
        *[[:space:]\"\'\\,]*) usage_error "--dir must not contain spaces, quotes, commas or backslashes" ;;
    esac
}

# ---- what this run started, stopped on exit ---------------------------------

INFRA_STARTED=0
OURS_STARTED=0
BENCH_REDIS_PID=""
CLASSIC_PIDS=()
WORK=""

# Stop pid $1 if it still runs program $2 (a path; Debian's redis-server is a
# symlink, so both sides are resolved): SIGTERM, bounded wait, SIGKILL.
stop_pid() {
    local pid=$1 want exe deadline
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 0
    want=$(readlink -f "$2" 2>/dev/null) || return 0
    [ "${exe% (deleted)}" = "$want" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT_S))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "pid $pid ignored SIGTERM; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
}

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    set +e
    # A signal's trap runs when the command in flight ends, possibly inside a
    # redirection (the timed load generator's 2>file): talk to the real stderr.
    exec 2>&9
    for pid in "${CLASSIC_PIDS[@]}"; do stop_pid "$pid" "$BIN/stock-classic"; done
    stop_pid "$BENCH_REDIS_PID" "$(command -v redis-server)"
    if [ "$OURS_STARTED" -eq 1 ]; then
        timeout 60 bash "$REPO_ROOT/scripts/stop.sh" --dir "$DIR" >&2
    fi
    if [ "$INFRA_STARTED" -eq 1 ]; then
        timeout 120 bash "$REPO_ROOT/scripts/infra.sh" down --dir "$DIR" >&2
    fi
    if [ "$rc" -ne 0 ]; then
        log "failed (exit $rc); logs in ${WORK:-$DIR}"
    fi
    exit "$rc"
}

# ---- process CPU and box sampling -------------------------------------------

declare -A ROLE_PIDS=()   # role -> "pid pid ..."

# The pid in file $1, or nothing (never fails: callers run under set -e).
pid_of_file() { if [ -s "$1" ]; then tr -dc '0-9' <"$1"; fi; }

# Clock ticks (utime + stime, all threads) of pid $1; 0 if gone. The name
# field may hold spaces, so fields are counted after its closing parenthesis.
proc_ticks() {
    local line rest
    read -r line <"/proc/$1/stat" 2>/dev/null || { echo 0; return; }
    rest=${line##*) }
    # shellcheck disable=SC2086
    set -- $rest
    echo $((${12} + ${13}))
}

# snapshot FILE: one "key value" line per role (ticks), plus the box's busy and
# total ticks (/proc/stat) and the 1-minute load average.
snapshot() {
    local f=$1 role pid sum user nice sys idle iow irq sirq steal rest
    {
        for role in "${!ROLE_PIDS[@]}"; do
            sum=0
            for pid in ${ROLE_PIDS[$role]}; do sum=$((sum + $(proc_ticks "$pid"))); done
            echo "ticks.$role $sum"
        done
        read -r _ user nice sys idle iow irq sirq steal rest </proc/stat
        echo "box.busy $((user + nice + sys + irq + sirq + steal))"
        echo "box.softirq $((irq + sirq))"
        echo "box.steal $steal"
        echo "box.total $((user + nice + sys + idle + iow + irq + sirq + steal))"
        echo "loadavg $(cut -d' ' -f1 /proc/loadavg)"
        echo "mono_ms $(($(date +%s%N) / 1000000))"
    } >"$f"
}

# Ticks of the processes that carry ours' deferred work (detail shipping to
# the sync workers and MySQL).
ours_async_ticks() {
    local role pid sum=0
    for role in ours_nodes ours_syncd cluster_masters mariadbd; do
        for pid in ${ROLE_PIDS[$role]:-}; do sum=$((sum + $(proc_ticks "$pid"))); done
    done
    echo "$sum"
}

# After a run of ours, its details are still being shipped to MySQL: wait until
# that work is done (those processes use under QUIET_TICKS per second), at most
# QUIET_MAX_S. The run's CPU figures then include the whole persistence cost,
# and none of it spills into the next design's measurement.
wait_quiet() {
    local deadline=$((SECONDS + QUIET_MAX_S)) t0 t1
    t0=$(ours_async_ticks)
    while [ "$SECONDS" -lt "$deadline" ]; do
        sleep 1
        t1=$(ours_async_ticks)
        [ $((t1 - t0)) -ge "$QUIET_TICKS" ] || return 0
        t0=$t1
    done
    log "ours still busy after ${QUIET_MAX_S}s; measuring on"
}

rcli() { local port=$1; shift; timeout 5 redis-cli -h 127.0.0.1 -p "$port" "$@"; }

# redis_stats FILE PORT...: INFO commandstats and INFO cpu of each port.
redis_stats() {
    local f=$1 p
    shift
    : >"$f"
    for p in "$@"; do
        { echo "## port $p"; rcli "$p" info commandstats; rcli "$p" info cpu; } >>"$f" 2>&1 || true
    done
}

# ---- bring-up -----------------------------------------------------------------

build() {
    [ "$BUILD" -eq 1 ] && [ -z "${STOCK_BIN:-}" ] || return 0
    log "building"
    make -s -C "$REPO_ROOT" bin/stock-scheduler bin/stock-node bin/stock-syncd bin/stockctl \
        bin/stock-loadgen bin/stock-classic >"$WORK/build.log" 2>&1 ||
        { tail -n 20 "$WORK/build.log" >&2; die "make failed; see $WORK/build.log"; }
}

check_tools() {
    local t
    for t in redis-server redis-cli redis-benchmark mariadb curl gnuplot python3 timeout; do
        command -v "$t" >/dev/null || die "$t not found; run scripts/deps.sh"
    done
    for t in stock-scheduler stock-node stock-syncd stockctl stock-loadgen stock-classic; do
        [ -x "$BIN/$t" ] || die "$BIN/$t missing; run make"
    done
}

# KEY=value of file $1 (data, not sourced).
env_get() { sed -n "s/^$2=\"\\{0,1\\}\\([^\"]*\\)\"\\{0,1\\}\$/\\1/p" "$1" | tail -n 1; }

infra_up() {
    if bash "$REPO_ROOT/scripts/infra.sh" status --dir "$DIR" >/dev/null 2>&1 &&
        [ -f "$DIR/infra.env" ]; then
        log "infrastructure already up in $DIR"
    else
        log "infrastructure: up --dir $DIR --base-port $BASE_PORT"
        INFRA_STARTED=1
        timeout 180 bash "$REPO_ROOT/scripts/infra.sh" up --dir "$DIR" --base-port "$BASE_PORT" \
            >"$WORK/infra-up.log" 2>&1 ||
            { tail -n 20 "$WORK/infra-up.log" >&2; die "infra.sh up failed"; }
    fi
    local bp
    bp=$(env_get "$DIR/infra.env" BASE_PORT)
    if [ "$bp" != "$BASE_PORT" ]; then
        log "note: $DIR runs on base port $bp; using it"
        BASE_PORT=$bp
    fi
    REDIS_PORTS=$(env_get "$DIR/infra.env" REDIS_PORTS)
    MYSQL_PORT=$(env_get "$DIR/infra.env" MYSQL_PORT)
    [ -n "$REDIS_PORTS" ] && [ -n "$MYSQL_PORT" ] || die "$DIR/infra.env lacks REDIS_PORTS/MYSQL_PORT"
    MASTER_PORTS="" REPLICA_PORTS=""
    local p
    for p in $REDIS_PORTS; do
        if rcli "$p" info replication | grep -q '^role:master'; then
            MASTER_PORTS+="$p "
        else
            REPLICA_PORTS+="$p "
        fi
    done
    [ -n "$MASTER_PORTS" ] || die "no Redis master answers on $REDIS_PORTS"
}

# ours_up DURABILITY: start ours' daemons (start.sh starts only what is not
# running) with that deduct.durability and pool.durability.
ours_up() {
    local durability=$1
    local args=(--dir "$DIR" --nodes "$NODES" --http-port "$((BASE_PORT + 80))"
        --node-opt "deduct.durability=$durability" --scheduler-opt "pool.durability=$durability")
    # Sync workers arrive with a later issue; give one when start.sh knows them.
    if bash "$REPO_ROOT/scripts/start.sh" --help 2>/dev/null | grep -q -- '--workers'; then
        args+=(--workers 1)
    fi
    local pid
    pid=$(pid_of_file "$DIR/scheduler.pid")
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        OURS_STARTED=1
    fi
    log "ours: start.sh ${args[*]}"
    STOCK_BIN="$BIN" timeout 60 bash "$REPO_ROOT/scripts/start.sh" "${args[@]}" \
        >"$WORK/start-$durability.log" 2>&1 ||
        { tail -n 20 "$WORK/start-$durability.log" >&2; die "start.sh failed"; }
    OURS_URL=$(env_get "$DIR/endpoints.env" HTTP_URL)
    ADMIN_SOCKET=$(env_get "$DIR/endpoints.env" ADMIN_SOCKET)
    [ -n "$OURS_URL" ] && [ -n "$ADMIN_SOCKET" ] || die "$DIR/endpoints.env lacks HTTP_URL/ADMIN_SOCKET"
}

healthz_ok() { timeout 2 curl -sf --max-time 1 -o /dev/null "$1/healthz"; }

wait_healthz() {
    local url=$1 pid=$2 name=$3 deadline=$((SECONDS + READY_TIMEOUT_S))
    until healthz_ok "$url"; do
        kill -0 "$pid" 2>/dev/null || { tail -n 10 "$WORK/$name.log" >&2; die "$name exited"; }
        [ "$SECONDS" -lt "$deadline" ] || die "$name not answering $url/healthz after ${READY_TIMEOUT_S}s"
        sleep 0.1
    done
}

port_busy() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

classic_up() {
    BENCH_REDIS_PORT=$((BASE_PORT + 30))
    SK_PORT=$((BASE_PORT + 31))
    MY_PORT=$((BASE_PORT + 32))
    local p
    for p in $BENCH_REDIS_PORT $SK_PORT $MY_PORT; do
        ! port_busy "$p" || die "port $p is in use (another bench on this base port?)"
    done
    # A plain redis-server with the infra's durable settings, empty each run.
    local rdir="$DIR/bench-redis"
    rm -rf "$rdir"
    mkdir -p "$rdir"
    redis-server --port "$BENCH_REDIS_PORT" --bind 127.0.0.1 --protected-mode no \
        --dir "$rdir" --appendonly yes --appendfsync everysec --save '' \
        --daemonize yes --pidfile "$rdir/redis.pid" --logfile "$rdir/redis.log" </dev/null ||
        die "bench redis-server did not start; see $rdir/redis.log"
    local deadline=$((SECONDS + READY_TIMEOUT_S))
    until rcli "$BENCH_REDIS_PORT" ping >/dev/null 2>&1 && [ -s "$rdir/redis.pid" ]; do
        [ "$SECONDS" -lt "$deadline" ] || die "bench redis on $BENCH_REDIS_PORT not answering"
        sleep 0.1
    done
    BENCH_REDIS_PID=$(pid_of_file "$rdir/redis.pid")

    "$BIN/stock-classic" --mode single-key --port "$SK_PORT" \
        --redis "127.0.0.1:$BENCH_REDIS_PORT" --connections-to-backend "$REDIS_CONNS" \
        </dev/null >"$WORK/single-key.log" 2>&1 &
    SK_PID=$!
    CLASSIC_PIDS+=("$SK_PID")
    "$BIN/stock-classic" --mode mysql-row --port "$MY_PORT" --mysql-port "$MYSQL_PORT" \
        --connections-to-backend "$MYSQL_WORKERS" </dev/null >"$WORK/mysql-row.log" 2>&1 &
    MY_PID=$!
    CLASSIC_PIDS+=("$MY_PID")
    SK_URL="http://127.0.0.1:$SK_PORT"
    MY_URL="http://127.0.0.1:$MY_PORT"
    wait_healthz "$SK_URL" "$SK_PID" single-key
    wait_healthz "$MY_URL" "$MY_PID" mysql-row
    # Earlier runs' details would slow the inserts of this one.
    timeout 30 mariadb --no-defaults -h 127.0.0.1 -P "$MYSQL_PORT" -u root stock \
        -e 'TRUNCATE TABLE bench_detail; DELETE FROM bench_stock' ||
        die "cannot reset the bench tables in MariaDB"
}

collect_roles() {
    local f p pids=""
    ROLE_PIDS[ours_scheduler]=$(pid_of_file "$DIR/scheduler.pid")
    pids=""
    for f in "$DIR"/node-*.pid; do [ -e "$f" ] && pids+="$(pid_of_file "$f") "; done
    ROLE_PIDS[ours_nodes]=$pids
    pids=""
    for f in "$DIR"/syncd-*.pid; do [ -e "$f" ] && pids+="$(pid_of_file "$f") "; done
    ROLE_PIDS[ours_syncd]=$pids
    pids=""
    for p in $MASTER_PORTS; do pids+="$(pid_of_file "$DIR/redis/$p/redis.pid") "; done
    ROLE_PIDS[cluster_masters]=$pids
    pids=""
    for p in $REPLICA_PORTS; do pids+="$(pid_of_file "$DIR/redis/$p/redis.pid") "; done
    ROLE_PIDS[cluster_replicas]=$pids
    ROLE_PIDS[mariadbd]=$(pid_of_file "$DIR/mysql/mysqld.pid")
    ROLE_PIDS[classic_single_key]=$SK_PID
    ROLE_PIDS[classic_mysql_row]=$MY_PID
    ROLE_PIDS[bench_redis]=$BENCH_REDIS_PID
}

# ---- measurements -----------------------------------------------------------

STAMP=$(date +%Y%m%d-%H%M%S)
SKU_SEQ=0
SKU=""
# Sets SKU to a SKU id never used before (not in a subshell: it counts).
next_sku() { SKU_SEQ=$((SKU_SEQ + 1)); SKU="b${STAMP//-/}n$SKU_SEQ$1"; }

load_ours() {
    timeout 30 "$BIN/stockctl" --socket "$ADMIN_SOCKET" sku load "$1" --total "$SKU_TOTAL_UNITS" \
        --partitions "$SKU_PARTITIONS" --min-chunk "$MIN_CHUNK_UNITS" \
        --max-chunk "$MAX_CHUNK_UNITS" >>"$WORK/loads.log" 2>&1 || die "stockctl sku load $1 failed"
}

load_classic() {
    local url=$1 sku=$2
    timeout 30 curl -sf --max-time 20 -XPOST "$url/v1/load" \
        -d "{\"sku\":\"$sku\",\"total\":$SKU_TOTAL_UNITS}" >>"$WORK/loads.log" 2>&1 ||
        die "loading $sku at $url failed"
}

# run_lg NAME URL SKU CONNS DURATION [loadgen options...]: one measurement,
# with process and Redis samples around it. Files: WORK/NAME.{lg.json,before,after,lgtime,...}
run_lg() {
    local name=$1 url=$2 sku=$3 conns=$4 dur=$5 rc=0
    shift 5
    log "$name: $conns connections, ${dur}s $*"
    redis_stats "$WORK/$name.redis.before" $MASTER_PORTS $REPLICA_PORTS "$BENCH_REDIS_PORT"
    snapshot "$WORK/$name.before"
    local TIMEFORMAT='%R %U %S'
    { time timeout $((dur + 40)) "$BIN/stock-loadgen" --url "$url" --skus "$sku" \
        --connections "$conns" --duration "$dur" --quiet --json "$WORK/$name.lg.json" "$@" \
        >"$WORK/$name.lg.txt" 2>"$WORK/$name.lg.err"; } 2>"$WORK/$name.lgtime" || rc=$?
    case "$name" in ours*) wait_quiet ;; esac
    snapshot "$WORK/$name.after"
    redis_stats "$WORK/$name.redis.after" $MASTER_PORTS $REPLICA_PORTS "$BENCH_REDIS_PORT"
    echo "$rc" >"$WORK/$name.rc"
    [ -s "$WORK/$name.lg.json" ] || { cat "$WORK/$name.lg.err" >&2; die "$name: no loadgen JSON (exit $rc)"; }
    [ "$rc" -eq 0 ] || log "$name: loadgen exit $rc (transport errors above 1%); kept in the results"
}

# run_redis_bench NAME CONNS: design (b)'s script straight on one key. Every call
# carries a fresh order id (__rand_int__, 2e9 values), so the NX path is the
# one taken; the request count is calibrated (at most 64 connections: setting
# up hundreds of connections would dominate a short calibration) to last about
# REDIS_BENCH_MAX_S, and never less than REDIS_BENCH_MIN_N requests.
run_redis_bench() {
    local name=$1 conns=$2 key="{cl:rc$2}" n rps attempt rc=0
    rcli "$BENCH_REDIS_PORT" set "$key:stock" "$REDIS_CEIL_STOCK_UNITS" >/dev/null
    local cmd=(-r 2000000000 --csv
        EVALSHA "$SCRIPT_SHA" 4 "$key:stock" "$key:seq" "$key:d" "$key:o:rb-__rand_int__"
        1 "rb-__rand_int__" 604800 u1 "$(($(date +%s) * 1000))")
    local args=(-h 127.0.0.1 -p "$BENCH_REDIS_PORT" -c "$conns" "${cmd[@]}")
    # redis-benchmark has been seen to exit at once without a word on this box;
    # retry, and if it keeps failing record the ceiling as missing, not the run as lost.
    for attempt in 1 2 3; do
        rc=0
        timeout 60 redis-benchmark -h 127.0.0.1 -p "$BENCH_REDIS_PORT" \
            -c $((conns > 64 ? 64 : conns)) -n "$REDIS_BENCH_CAL_N" "${cmd[@]}" \
            >"$WORK/$name.cal.csv" 2>&1 || rc=$?
        rps=$(tail -n 1 "$WORK/$name.cal.csv" | awk -F'","' '{print int($2)}')
        [ "$rc" -ne 0 ] || [ "${rps:-0}" -le 0 ] || break
        log "$name: redis-benchmark calibration exit $rc, no result (attempt $attempt)"
        rps=0
        sleep 1
    done
    if [ "$rps" -le 0 ]; then
        echo "calibration exit $rc" >"$WORK/$name.failed"
        return 0
    fi
    n=$((rps * REDIS_BENCH_MAX_S))
    [ "$n" -ge "$REDIS_BENCH_MIN_N" ] || n=$REDIS_BENCH_MIN_N
    log "$name: redis-benchmark -c $conns -n $n (calibrated at $rps/s)"
    redis_stats "$WORK/$name.redis.before" "$BENCH_REDIS_PORT"
    snapshot "$WORK/$name.before"
    local TIMEFORMAT='%R %U %S'
    rc=0
    { time timeout $((REDIS_BENCH_MAX_S * 6 + 30)) redis-benchmark -n "$n" "${args[@]}" \
        >"$WORK/$name.csv" 2>&1; } 2>"$WORK/$name.lgtime" || rc=$?
    snapshot "$WORK/$name.after"
    redis_stats "$WORK/$name.redis.after" "$BENCH_REDIS_PORT"
    if [ "$rc" -ne 0 ] || ! grep -q '^"test"' "$WORK/$name.csv"; then
        log "$name: redis-benchmark exit $rc, no result; see $WORK/$name.csv"
        echo "run exit $rc" >"$WORK/$name.failed"
    fi
}

load_script() {
    local f="$WORK/single-key.lua"
    "$BIN/stock-classic" --print-script >"$f"
    # -x: the file is the last argument, byte for byte: the same sha as the server's.
    SCRIPT_SHA=$(rcli "$BENCH_REDIS_PORT" -x script load <"$f")
    [[ "$SCRIPT_SHA" =~ ^[0-9a-f]{40}$ ]] || die "SCRIPT LOAD answered '$SCRIPT_SHA'"
}

measure() {
    local c sku
    log "warm-up: ${WARMUP_S}s per design (not recorded)"
    next_sku w; sku=$SKU; load_ours "$sku"
    run_lg warmup-ours "$OURS_URL" "$sku" 16 "$WARMUP_S"
    next_sku w; sku=$SKU; load_classic "$SK_URL" "$sku"
    run_lg warmup-single-key "$SK_URL" "$sku" 16 "$WARMUP_S"
    next_sku w; sku=$SKU; load_classic "$MY_URL" "$sku"
    run_lg warmup-mysql-row "$MY_URL" "$sku" 16 "$WARMUP_S"
    for c in $CONNS; do
        next_sku o; sku=$SKU; load_ours "$sku"
        run_lg "ours-c$c" "$OURS_URL" "$sku" "$c" "$DURATION_S"
        next_sku s; sku=$SKU; load_classic "$SK_URL" "$sku"
        run_lg "single-key-c$c" "$SK_URL" "$sku" "$c" "$DURATION_S"
        next_sku m; sku=$SKU; load_classic "$MY_URL" "$sku"
        run_lg "mysql-row-c$c" "$MY_URL" "$sku" "$c" "$DURATION_S"
        run_redis_bench "redis-ceiling-c$c" "$c"
    done
    # Open loop at 80% of ours' closed-loop peak, on the largest connection
    # count measured (256 by default: the issue's "256 connections at 80% of
    # peak"), plus lighter loads (OPEN_LOOP_CURVE) to show where the latency
    # goes. Latency counts from each order's due time, so an order waiting for
    # a free connection waits on the clock too.
    local best=0 t f c
    for c in $CONNS; do
        t=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["throughput_per_s"]))' \
            "$WORK/ours-c$c.lg.json")
        if [ "$t" -gt "$best" ]; then best=$t; fi
    done
    OPEN_RATE=$(python3 -c "print(max(1, int($best * $OPEN_LOOP_LOAD)))")
    OPEN_CONNS=0
    for c in $CONNS; do
        if [ "$c" -gt "$OPEN_CONNS" ]; then OPEN_CONNS=$c; fi
    done
    next_sku r; sku=$SKU; load_ours "$sku"
    run_lg ours-open "$OURS_URL" "$sku" "$OPEN_CONNS" "$DURATION_S" --rate "$OPEN_RATE"
    for f in $OPEN_LOOP_CURVE; do
        next_sku r; sku=$SKU; load_ours "$sku"
        run_lg "ours-open-$f" "$OURS_URL" "$sku" "$OPEN_CONNS" "$DURATION_S" \
            --rate "$(python3 -c "print(max(1, int($best * $f)))")"
    done
    sync_lag
}

# The cost of durability = replica within this run (--durability both): ours'
# daemons are stopped (not the infrastructure: same Redis Cluster, same
# MariaDB), started again with leader, warmed up, and the closed loop is run
# at every connection count again (ours-leader-cN, a fresh SKU each, CPU
# sampled as in every run). Ours stays up on leader: cleanup stops it. Skipped
# when ours ran before this bench: its daemons are not this script's to stop.
LEADER_MEASURED=0
measure_leader() {
    [ "$DURABILITY" = both ] || return 0
    if [ "$OURS_STARTED" -ne 1 ]; then
        log "durability: ours ran before this bench; not stopping it, leader not measured"
        return 0
    fi
    local c sku
    log "durability: stopping ours (replica) to measure it again with leader"
    timeout 60 bash "$REPO_ROOT/scripts/stop.sh" --dir "$DIR" >"$WORK/stop-replica.log" 2>&1 ||
        { tail -n 20 "$WORK/stop-replica.log" >&2; die "stop.sh failed"; }
    ours_up leader
    collect_roles   # new pids for the scheduler, nodes and sync workers
    next_sku w; sku=$SKU; load_ours "$sku"
    run_lg warmup-ours-leader "$OURS_URL" "$sku" 16 "$WARMUP_S"
    wait_quiet
    for c in $CONNS; do
        next_sku l; sku=$SKU; load_ours "$sku"
        run_lg "ours-leader-c$c" "$OURS_URL" "$sku" "$c" "$DURATION_S"
    done
    LEADER_MEASURED=1
}

# MySQL sync lag of every detail ours sold during this run: each node's ship
# histogram (ack time minus creation time of a batch's oldest detail) covers
# its whole life, so it is read from the first stats line logged after the
# last run, worst node. Left empty when ours was already running before
# (its histogram would include older traffic) or no line comes in time.
SYNC_LAG_P99_MS=""
sync_lag() {
    [ "$OURS_STARTED" -eq 1 ] || { log "sync lag: ours ran before this bench; not reported"; return 0; }
    local f n deadline=$((SECONDS + SYNC_STATS_WAIT_S)) worst="" v have
    local -A seen=()
    for f in "$DIR"/node-*.log; do seen[$f]=$(grep -c 'ship stats' "$f" || true); done
    while [ "$SECONDS" -lt "$deadline" ]; do
        have=1
        for f in "${!seen[@]}"; do
            n=$(grep -c 'ship stats' "$f" || true)
            [ "$n" -gt "${seen[$f]}" ] || have=0
        done
        [ "$have" -eq 1 ] && break
        sleep 1
    done
    [ "$have" -eq 1 ] || { log "sync lag: no ship stats line within ${SYNC_STATS_WAIT_S}s"; return 0; }
    for f in "${!seen[@]}"; do
        v=$(grep 'ship stats' "$f" | tail -1 | sed -n 's/.* lag_p99_ms=\([0-9]*\).*/\1/p')
        [ -n "$v" ] || continue
        if [ -z "$worst" ] || [ "$v" -gt "$worst" ]; then worst=$v; fi
    done
    SYNC_LAG_P99_MS=$worst
    log "sync lag p99 over the whole run: ${worst:-?} ms (worst node)"
}

# ---- report -------------------------------------------------------------------

machine_info() {
    {
        echo "nproc $(nproc)"
        echo "model $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
        echo "mem_kb $(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\).*/\1/p' /proc/meminfo)"
        echo "kernel $(uname -r)"
        echo "redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')"
        echo "mariadb $(timeout 10 mariadb --no-defaults -h 127.0.0.1 -P "$MYSQL_PORT" -u root -N \
            -e 'select version()' 2>/dev/null || echo unknown)"
        echo "clk_tck $(getconf CLK_TCK)"
        echo "loadavg_start $LOADAVG_START"
        echo "loadavg_end $(cut -d' ' -f1-3 /proc/loadavg)"
        # What was measured: the commit, and how many files differed from it.
        if git -C "$REPO_ROOT" rev-parse HEAD >/dev/null 2>&1; then
            echo "commit $(git -C "$REPO_ROOT" rev-parse --short HEAD)"
            echo "dirty_files $(git -C "$REPO_ROOT" status --porcelain | wc -l)"
        else
            echo "commit none ($REPO_ROOT is not a git checkout)"
        fi
    } >"$WORK/machine.txt"
}

report() {
    mkdir -p "$RESULTS_DIR"
    local out="$RESULTS_DIR/$STAMP"
    SKU_TOTAL_UNITS=$SKU_TOTAL_UNITS SKU_PARTITIONS=$SKU_PARTITIONS MIN_CHUNK_UNITS=$MIN_CHUNK_UNITS \
        MAX_CHUNK_UNITS=$MAX_CHUNK_UNITS REDIS_CONNS=$REDIS_CONNS MYSQL_WORKERS=$MYSQL_WORKERS \
        WARMUP_S=$WARMUP_S SYNC_LAG_P99_MS=$SYNC_LAG_P99_MS OPEN_LOOP_CURVE=$OPEN_LOOP_CURVE \
        DURABILITY=$DURABILITY OURS_DURABILITY=$OURS_DURABILITY LEADER_MEASURED=$LEADER_MEASURED \
        python3 - "$WORK" "$out" "$CONNS" "$DURATION_S" "$CMDLINE" "$OPEN_RATE" "$OPEN_CONNS" \
        "$MASTER_PORTS" "$REPLICA_PORTS" "$BENCH_REDIS_PORT" "$NODES" <<'PY'
import csv, json, os, sys
env = os.environ

work, out, conns, duration, cmdline, open_rate, open_conns = sys.argv[1:8]
masters = sys.argv[8].split()
replicas = sys.argv[9].split()
bench_redis = sys.argv[10]
nodes = int(sys.argv[11])
conns = [int(c) for c in conns.split()]

def kv(path):
    d = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition(" ")
            d[k] = v
    return d

machine = kv(os.path.join(work, "machine.txt"))
tck = float(machine.get("clk_tck", "100"))

def cpu(name, ok):
    """CPU seconds per role during run `name`, and per ok answer (us)."""
    b, a = kv(f"{work}/{name}.before"), kv(f"{work}/{name}.after")
    wall_s = (int(a["mono_ms"]) - int(b["mono_ms"])) / 1000.0
    roles, ours = {}, 0.0
    for k in a:
        if k.startswith("ticks."):
            s = (int(a[k]) - int(b.get(k, a[k]))) / tck
            roles[k[6:]] = round(s, 2)
            ours += s
    busy = (int(a["box.busy"]) - int(b["box.busy"])) / tck
    sirq = (int(a["box.softirq"]) - int(b["box.softirq"])) / tck
    steal = (int(a["box.steal"]) - int(b["box.steal"])) / tck
    total = (int(a["box.total"]) - int(b["box.total"])) / tck
    lt = os.path.join(work, f"{name}.lgtime")
    gen = 0.0
    if os.path.exists(lt):
        f = open(lt).read().split()
        if len(f) >= 3:
            gen = float(f[1]) + float(f[2])
    roles["load_generator"] = round(gen, 2)
    res = {"wall_s": round(wall_s, 2), "cpu_s": roles,
           "box_busy_s": round(busy, 2), "box_capacity_s": round(total, 2),
           "irq_softirq_s": round(sirq, 2), "steal_s": round(steal, 2),
           # busy time of processes we did not start (irq/softirq time, mostly
           # our own loopback traffic, and steal are not in it)
           "others_s": round(max(0.0, busy - ours - gen - sirq - steal), 2),
           "loadavg_before": float(b["loadavg"]), "loadavg_after": float(a["loadavg"])}
    if ok:
        res["cpu_us_per_ok"] = {k: round(v * 1e6 / ok, 1) for k, v in roles.items() if v > 0}
    return res

def redis_info(path):
    """port -> {cmdstat name -> (calls, usec)}, plus cpu seconds."""
    ports, cur = {}, None
    for line in open(path):
        line = line.strip()
        if line.startswith("## port "):
            cur = ports.setdefault(line.split()[2], {"cmd": {}, "cpu_s": 0.0})
        elif cur is not None and line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            f = dict(x.split("=", 1) for x in rest.split(","))
            cur["cmd"][name[8:]] = (int(f["calls"]), int(f["usec"]))
        elif cur is not None and line.startswith(("used_cpu_user:", "used_cpu_sys:")):
            cur["cpu_s"] += float(line.split(":")[1])
    return ports

def redis_delta(name, ports, cmds):
    b = redis_info(f"{work}/{name}.redis.before")
    a = redis_info(f"{work}/{name}.redis.after")
    d = {"cpu_s": 0.0}
    for c in cmds:
        d[c] = {"calls": 0, "usec": 0}
    for p in ports:
        if p not in a or p not in b:
            continue
        d["cpu_s"] += a[p]["cpu_s"] - b[p]["cpu_s"]
        for c in cmds:
            ca, ua = a[p]["cmd"].get(c, (0, 0))
            cb, ub = b[p]["cmd"].get(c, (0, 0))
            d[c]["calls"] += ca - cb
            d[c]["usec"] += ua - ub
    d["cpu_s"] = round(d["cpu_s"], 3)
    return d

def lg(name):
    d = json.load(open(f"{work}/{name}.lg.json"))
    rc = int(open(f"{work}/{name}.rc").read().strip() or 0)
    lat = d["latency_ms"]
    return {"throughput_per_s": d["throughput_per_s"], "ok": d["answers"]["ok"],
            "p50_ms": lat["p50"], "p90_ms": lat["p90"], "p99_ms": lat["p99"],
            "p999_ms": lat["p999"], "max_ms": lat["max"], "loadgen_exit": rc,
            "answers": d["answers"], "backlog": d.get("backlog", 0), "loadgen": d}

def rbench(name):
    failed = os.path.join(work, f"{name}.failed")
    if os.path.exists(failed):
        return {"throughput_per_s": None, "p50_ms": None, "p99_ms": None, "max_ms": None,
                "failed": open(failed).read().strip()}
    rows = [r for r in csv.reader(open(f"{work}/{name}.csv")) if r]
    hdr = next(r for r in rows if r[0] == "test")  # warnings may come first
    val = rows[-1]
    r = dict(zip(hdr, val))
    rps = float(r["rps"])
    res = {"throughput_per_s": rps, "p50_ms": float(r.get("p50_latency_ms", "nan")),
           "p99_ms": float(r.get("p99_latency_ms", "nan")),
           "max_ms": float(r.get("max_latency_ms", "nan")), "raw": r}
    return res

designs = ["ours", "single-key", "mysql-row", "redis-ceiling"]
runs = {d: {} for d in designs}
for c in conns:
    for d in designs[:3]:
        name = f"{d}-c{c}"
        r = lg(name)
        r["process_cpu"] = cpu(name, r["ok"])
        if d == "ours":
            r["redis_masters"] = redis_delta(name, masters, ["evalsha", "set", "eval"])
            r["redis_replicas"] = redis_delta(name, replicas, [])
        elif d == "single-key":
            r["redis"] = redis_delta(name, [bench_redis], ["evalsha"])
        runs[d][c] = r
    name = f"redis-ceiling-c{c}"
    r = rbench(name)
    runs["redis-ceiling"][c] = r
    if "failed" in r:
        continue
    rd = redis_delta(name, [bench_redis], ["evalsha"])
    r["redis"] = rd
    calls = rd["evalsha"]["calls"]
    r["process_cpu"] = cpu(name, calls)
    r["redis_cpu_us_per_call"] = round(rd["cpu_s"] * 1e6 / calls, 2) if calls else None
    r["evalsha_usec_per_call"] = round(rd["evalsha"]["usec"] / calls, 2) if calls else None

# Server CPU per answered request: the design's own processes only. Unlike
# throughput it hardly moves when other work shares the box, so it is the
# steadier comparison; a run where others and steal took more than
# NOISY_SHARE of the box is flagged noisy.
NOISY_SHARE = 0.2
srv_roles = {"ours": ["ours_scheduler", "ours_nodes", "ours_syncd", "cluster_masters", "cluster_replicas",
                      "mariadbd"],
             "single-key": ["classic_single_key", "bench_redis"],
             "mysql-row": ["classic_mysql_row", "mariadbd"],
             "redis-ceiling": ["bench_redis"]}
for d in designs:
    for c in conns:
        r = runs[d][c]
        if "failed" in r:
            r["server_cpu_us_per_request"], r["noisy"] = None, False
            continue
        pc = r["process_cpu"]
        n = r["ok"] if "ok" in r else r["redis"]["evalsha"]["calls"]
        srv = sum(pc["cpu_s"].get(k, 0) for k in srv_roles[d])
        r["server_cpu_us_per_request"] = round(srv * 1e6 / n, 1) if n else None
        cap = pc["box_capacity_s"] or 1
        r["noisy"] = (pc["others_s"] + pc["steal_s"]) > NOISY_SHARE * cap

# --durability both: ours again on leader after the runs above (ours-leader-cN),
# CPU counted over the same roles as ours' server CPU.
leader_runs = {}
if env.get("LEADER_MEASURED") == "1":
    for c in conns:
        name = f"ours-leader-c{c}"
        r = lg(name)
        r["process_cpu"] = pc = cpu(name, r["ok"])
        r["redis_masters"] = redis_delta(name, masters, ["evalsha", "set", "eval"])
        r["redis_replicas"] = redis_delta(name, replicas, [])
        srv = sum(pc["cpu_s"].get(k, 0) for k in srv_roles["ours"])
        r["server_cpu_us_per_request"] = round(srv * 1e6 / r["ok"], 1) if r["ok"] else None
        r["noisy"] = (pc["others_s"] + pc["steal_s"]) > NOISY_SHARE * (pc["box_capacity_s"] or 1)
        leader_runs[c] = r

peak_c = max(conns, key=lambda c: runs["ours"][c]["throughput_per_s"])
tp = {d: runs[d][peak_c]["throughput_per_s"] for d in designs}
def ratio(a, b):
    return round(a / b, 3) if a and b else None
srv_us = {d: runs[d][peak_c]["server_cpu_us_per_request"] for d in designs}
ratios = {"at_connections": peak_c,
          "noisy_runs_at_peak": [d for d in designs if runs[d][peak_c]["noisy"]],
          # > 1: ours spends less server CPU per deduction than that design
          "cpu_per_request_vs_single_key": ratio(srv_us["single-key"] or 0, srv_us["ours"] or 0),
          "cpu_per_request_vs_mysql_row": ratio(srv_us["mysql-row"] or 0, srv_us["ours"] or 0),
          "vs_single_key": ratio(tp["ours"], tp["single-key"]),
          "vs_mysql_row": ratio(tp["ours"], tp["mysql-row"]),
          "vs_redis_ceiling": ratio(tp["ours"], tp["redis-ceiling"])}

# The cost of deduct.durability = replica: ours' runs (replica) against
# ours-leader-cN, per connection count. < 1 throughput, > 1 CPU: what replica costs.
dur_roles = ["ours_scheduler", "ours_nodes", "ours_syncd", "cluster_masters", "cluster_replicas",
             "mariadbd"]
def dur_side(r, run):
    u = r["process_cpu"].get("cpu_us_per_ok", {})
    return {"run": run, "throughput_per_s": r["throughput_per_s"], "p50_ms": r["p50_ms"],
            "p99_ms": r["p99_ms"], "server_cpu_us_per_deduction": r["server_cpu_us_per_request"],
            "cpu_us_per_deduction_by_process": {k: u.get(k) for k in dur_roles},
            "noisy": r["noisy"]}
durability = None
if leader_runs:
    by_c, tp_ratio, cpu_ratio = {}, {}, {}
    for c in conns:
        rr, lr = runs["ours"][c], leader_runs[c]
        tp_ratio[str(c)] = ratio(rr["throughput_per_s"], lr["throughput_per_s"])
        cpu_ratio[str(c)] = ratio(rr["server_cpu_us_per_request"], lr["server_cpu_us_per_request"])
        by_c[str(c)] = {"replica": dur_side(rr, f"ours-c{c}"), "leader": dur_side(lr, f"ours-leader-c{c}")}
    durability = {
        "throughput_ratio_replica_over_leader": tp_ratio,
        "cpu_per_deduction_ratio_replica_over_leader": cpu_ratio,
        "by_connections": by_c,
        "note": ("ours measured with deduct.durability = replica (runs ours-cN), then its daemons "
                 "stopped and started again with leader on the same infrastructure (ours-leader-cN); "
                 "server CPU = scheduler, nodes, sync workers, Redis masters and replicas, mariadbd, "
                 "per deduction answered"),
    }
    ratios["durability_throughput_replica_over_leader"] = tp_ratio[str(peak_c)]
    ratios["durability_cpu_per_deduction_replica_over_leader"] = cpu_ratio[str(peak_c)]

open_run = lg("ours-open")
open_run["process_cpu"] = cpu("ours-open", open_run["ok"])
open_run["rate_per_s"] = int(open_rate)
open_run["connections"] = int(open_conns)
open_run["offered_fraction_of_peak"] = 0.8
open_curve = []
for f in env["OPEN_LOOP_CURVE"].split():
    r = lg(f"ours-open-{f}")
    r["rate_per_s"] = max(1, int(tp["ours"] * float(f))) if tp["ours"] else None
    r["offered_fraction_of_peak"] = float(f)
    del r["loadgen"]
    open_curve.append(r)

# Redis time per deduction for ours: at 64 connections (or the closest count).
rc = min(conns, key=lambda c: abs(c - 64))
o = runs["ours"][rc]
ded = o["ok"]
m = o["redis_masters"]
def per(x):
    return round(x / ded, 3) if ded else None
ev_us = per(m["evalsha"]["usec"])
set_us = per(m["set"]["usec"])
cpu_us = per(m["cpu_s"] * 1e6)
redis_cost = {
    "connections": rc, "deductions": ded, "masters": len(masters),
    "evalsha_calls": m["evalsha"]["calls"], "evalsha_usec": m["evalsha"]["usec"],
    "evalsha_usec_per_deduction": ev_us,
    "evalsha_calls_per_deduction": per(m["evalsha"]["calls"]),
    "deductions_per_evalsha": round(ded / m["evalsha"]["calls"], 2) if m["evalsha"]["calls"] else None,
    "claim_set_usec_per_deduction": set_us,
    "set_calls_per_deduction": per(m["set"]["calls"]),
    "master_cpu_us_per_deduction": cpu_us,
    "replica_cpu_us_per_deduction": per(o["redis_replicas"]["cpu_s"] * 1e6),
    "per_master_core_deductions_per_s_evalsha": round(1e6 / ev_us) if ev_us else None,
    "per_master_core_deductions_per_s_evalsha_plus_claims":
        round(1e6 / (ev_us + set_us)) if ev_us else None,
    "per_master_core_deductions_per_s_cpu": round(1e6 / cpu_us) if cpu_us else None,
    "note": ("commandstats usec is wall time inside the command (nested redis.call "
             "time is inside evalsha's; preemption on a busy box inflates it); "
             "master_cpu_us is INFO cpu (user+sys) of the masters over the run, "
             "I/O and replication included. N shards scale the per-master figures by N."),
}
sk = runs["single-key"][rc]
skr = sk["redis"]
single_key_cost = {
    "connections": rc,
    "evalsha_usec_per_request": round(skr["evalsha"]["usec"] / skr["evalsha"]["calls"], 3)
    if skr["evalsha"]["calls"] else None,
    "redis_cpu_us_per_request": round(skr["cpu_s"] * 1e6 / skr["evalsha"]["calls"], 3)
    if skr["evalsha"]["calls"] else None,
}

result = {
    "date": os.path.basename(out), "command_line": cmdline,
    "source": {"commit": machine.get("commit", "unknown"),
               "dirty_files": int(machine.get("dirty_files", "-1"))},
    "machine": {"nproc": int(machine["nproc"]), "model_name": machine["model"],
                "mem_total_kb": int(machine["mem_kb"]), "kernel": machine["kernel"],
                "redis": machine["redis"], "mariadb": machine["mariadb"],
                "loadavg_start": machine["loadavg_start"], "loadavg_end": machine["loadavg_end"]},
    "settings": {"duration_s": int(duration), "connections": conns, "nodes": nodes,
                 "sku_total_units": int(env["SKU_TOTAL_UNITS"]),
                 "partitions": int(env["SKU_PARTITIONS"]),
                 "min_chunk": int(env["MIN_CHUNK_UNITS"]), "max_chunk": int(env["MAX_CHUNK_UNITS"]),
                 "single_key_redis_connections": int(env["REDIS_CONNS"]),
                 "mysql_row_workers": int(env["MYSQL_WORKERS"]),
                 "warmup_s": int(env["WARMUP_S"]),
                 "durability": env["DURABILITY"],
                 "ours_durability": env["OURS_DURABILITY"],
                 "redis_durability": "appendonly yes, appendfsync everysec (as infra.sh)",
                 "mysql_durability": "innodb_flush_log_at_trx_commit=1 (as infra.sh)"},
    "ratios": ratios,
    "peak": {"connections": peak_c, "throughput_per_s": tp},
    "open_loop": open_run,
    "open_loop_curve": open_curve,
    "sync_lag_p99_ms": int(env["SYNC_LAG_P99_MS"]) if env.get("SYNC_LAG_P99_MS") else None,
    "redis_per_deduction": redis_cost,
    "single_key_redis_per_request": single_key_cost,
    "durability_replica_vs_leader": durability,
    "runs": {d: {str(c): runs[d][c] for c in conns} for d in designs},
}
if leader_runs:
    result["runs"]["ours-leader"] = {str(c): leader_runs[c] for c in conns}
with open(out + ".json", "w") as f:
    json.dump(result, f, indent=1)

# ---- markdown ----
def fmt(x, nd=1):
    return "-" if x is None else f"{x:,.{nd}f}"
L = []
L.append(f"# Benchmark {os.path.basename(out)}\n")
L.append(f"{machine['nproc']} cores ({machine['model']}), {int(machine['mem_kb'])//1024} MiB; "
         f"load average {machine['loadavg_start']} at start, {machine['loadavg_end']} at end. "
         f"{duration} s per measurement, closed loop, qty 1, unique order ids, "
         f"ours with {nodes} partition nodes and {env['SKU_PARTITIONS']} partitions per SKU, "
         f"deduct.durability = {env['OURS_DURABILITY']}.\n")
L.append("Server CPU = CPU time of the design's own processes per answered request "
         "(ours: scheduler, nodes, sync workers, masters, replicas, mariadbd; single-key: "
         "stock-classic, its redis; "
         "mysql-row: stock-classic, mariadbd; ceiling: redis). Others = CPU of processes this "
         "run did not start; steal = CPU the hypervisor took: both are noise, and a run where "
         "they took more than 20% of the box is marked (noisy).\n")
L.append("| connections | design | throughput /s | p50 ms | p99 ms | server CPU us/req | box busy | others' CPU s | steal s |")
L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
for c in conns:
    for d in designs:
        r = runs[d][c]
        if "failed" in r:
            L.append(f"| {c} | {d} | - | - | - | - | - | - | - |")
            continue
        pc = r["process_cpu"]
        us = r["server_cpu_us_per_request"]
        busy = pc["box_busy_s"] / pc["box_capacity_s"] * 100 if pc["box_capacity_s"] else 0
        name = d + (" (noisy)" if r["noisy"] else "")
        L.append(f"| {c} | {name} | {fmt(r['throughput_per_s'], 0)} | {fmt(r['p50_ms'], 2)} | "
                 f"{fmt(r['p99_ms'], 2)} | {fmt(us)} | {busy:.0f}% | {pc['others_s']:.1f} | "
                 f"{pc['steal_s']:.1f} |")
L.append("")
L.append(f"**Ratios** at {peak_c} connections (where ours peaks): "
         f"vs single-key {ratios['vs_single_key']}, vs mysql-row {ratios['vs_mysql_row']}, "
         f"vs one-key Redis ceiling {ratios['vs_redis_ceiling']}"
         + (f" (noisy at that count: {', '.join(ratios['noisy_runs_at_peak'])})"
            if ratios["noisy_runs_at_peak"] else "")
         + f". Server CPU per request, theirs / ours: single-key "
         f"{ratios['cpu_per_request_vs_single_key']}, mysql-row {ratios['cpu_per_request_vs_mysql_row']}"
         " (steadier than throughput on a shared box).\n")
L.append(f"**Open loop**, ours at {open_rate}/s (80% of its peak) on {open_conns} connections: "
         f"{fmt(open_run['throughput_per_s'], 0)}/s answered, p50 {open_run['p50_ms']:.2f} ms, "
         f"p99 {open_run['p99_ms']:.2f} ms, p99.9 {open_run['p999_ms']:.2f} ms, "
         f"backlog {open_run['backlog']} (orders due but never sent)."
         + "".join(f" At {int(r['offered_fraction_of_peak'] * 100)}% ({r['rate_per_s']}/s): "
                   f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms." for r in open_curve)
         + "\n")
lag = env.get("SYNC_LAG_P99_MS")
L.append(f"**MySQL sync lag** of ours over the whole run (each node's ship histogram, worst node): "
         + (f"p99 {lag} ms.\n" if lag else "not measured (see the bench log).\n"))
L.append(f"**Redis per deduction (ours, {rc} connections, {len(masters)} masters)**: "
         f"EVALSHA {fmt(ev_us, 2)} us and {redis_cost['evalsha_calls_per_deduction']} calls "
         f"({redis_cost['deductions_per_evalsha']} deductions per call); claims (SET) "
         f"{fmt(set_us, 2)} us; master CPU (INFO cpu) {fmt(cpu_us, 2)} us, replicas "
         f"{fmt(redis_cost['replica_cpu_us_per_deduction'], 2)} us. One master core: "
         f"~{fmt(redis_cost['per_master_core_deductions_per_s_evalsha'], 0)} deductions/s by EVALSHA "
         f"time, ~{fmt(redis_cost['per_master_core_deductions_per_s_cpu'], 0)}/s by CPU; N shards: N times that. "
         f"Single-key for comparison: EVALSHA {fmt(single_key_cost['evalsha_usec_per_request'], 2)} us, "
         f"Redis CPU {fmt(single_key_cost['redis_cpu_us_per_request'], 2)} us per request.\n")
if durability:
    L.append("**durability: replica vs leader**: ours as above (replica), then its daemons stopped and "
             "started again with deduct.durability = leader on the same infrastructure, warmed up, "
             "and the closed loop run again (ours-leader-cN). CPU: us per deduction of ours' "
             "processes; server = all of them.\n")
    L.append("| connections | durability | throughput /s | p99 ms | server CPU us/ded | scheduler | "
             "nodes | sync workers | masters | replicas | mariadbd |")
    L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in conns:
        sides = durability["by_connections"][str(c)]
        for k in ("replica", "leader"):
            x = sides[k]
            pr = x["cpu_us_per_deduction_by_process"]
            L.append(f"| {c} | {k}" + (" (noisy)" if x["noisy"] else "") +
                     f" | {fmt(x['throughput_per_s'], 0)} | {fmt(x['p99_ms'], 2)} | "
                     f"{fmt(x['server_cpu_us_per_deduction'])} | " +
                     " | ".join(fmt(pr[r]) for r in dur_roles) + " |")
        pr_r = sides["replica"]["cpu_us_per_deduction_by_process"]
        pr_l = sides["leader"]["cpu_us_per_deduction_by_process"]
        L.append(f"| {c} | **replica/leader** | **{fmt(durability['throughput_ratio_replica_over_leader'][str(c)], 3)}** | "
                 f"{fmt(ratio(sides['replica']['p99_ms'], sides['leader']['p99_ms']), 2)} | "
                 f"**{fmt(durability['cpu_per_deduction_ratio_replica_over_leader'][str(c)], 3)}** | " +
                 " | ".join(fmt(ratio(pr_r[r], pr_l[r]), 2) for r in dur_roles) + " |")
    L.append("")
elif env["DURABILITY"] == "both":
    L.append("**durability: replica vs leader**: not measured (ours ran before this bench; see the log).\n")
L.append("CPU per request by process (us, all processes of each role, during each run):\n")
L.append("| run | " + " | ".join(["scheduler", "nodes", "sync workers", "masters", "replicas",
                                   "classic srv", "bench redis", "mariadbd", "loadgen"]) + " |")
L.append("|---|" + "---:|" * 9)
keys = ["ours_scheduler", "ours_nodes", "ours_syncd", "cluster_masters", "cluster_replicas", None,
        "bench_redis", "mariadbd", "load_generator"]
for c in conns:
    for d in designs[:3]:
        r = runs[d][c]
        u = r["process_cpu"].get("cpu_us_per_ok", {})
        row = []
        for k in keys:
            if k is None:
                k = {"single-key": "classic_single_key", "mysql-row": "classic_mysql_row"}.get(d)
            row.append(fmt(u.get(k)) if k else "-")
        L.append(f"| {d} c{c} | " + " | ".join(row) + " |")
L.append("")
L.append(f"![throughput]({os.path.basename(out)}.png)\n")
with open(out + ".md", "w") as f:
    f.write("\n".join(L) + "\n")

with open(f"{work}/plot.dat", "w") as f:
    f.write("# conns ours single-key mysql-row redis-ceiling\n")
    for c in conns:
        f.write(f"{c} " + " ".join("?" if runs[d][c]["throughput_per_s"] is None
                                   else str(runs[d][c]["throughput_per_s"]) for d in designs) + "\n")
with open(f"{work}/plot.title", "w") as f:
    noisy = sum(1 for d in designs for c in conns if runs[d][c].get("noisy"))
    f.write(f"{os.path.basename(out)}, {machine['nproc']} cores, load avg {machine['loadavg_start'].split()[0]}"
            f"; ours/single-key {ratios['vs_single_key']} at {peak_c} conns; "
            f"{noisy}/{len(designs) * len(conns)} runs noisy")
PY
    local term=png xt="" c
    gnuplot -e 'set terminal' 2>&1 | grep -q pngcairo && term=pngcairo
    for c in $CONNS; do xt+="\"$c\" $c, "; done
    gnuplot <<EOF || log "gnuplot failed; no PNG"
set terminal $term size 960,600
set output "$out.png"
set title "$(cat "$WORK/plot.title")"
set xlabel "closed-loop connections"
set ylabel "deductions answered per second"
set logscale x 2
set logscale y 10
set xrange [$(($(echo "$CONNS" | tr ' ' '\n' | sort -n | head -n 1))) / 1.5 : \
    $(($(echo "$CONNS" | tr ' ' '\n' | sort -n | tail -n 1))) * 1.5]
set xtics (${xt%, })
set grid
set key below
set yrange [*:*]
set datafile missing "?"
plot "$WORK/plot.dat" using 1:2 with linespoints lw 2 pt 7 title "ours (partitioned)", \
     "" using 1:3 with linespoints lw 2 pt 5 title "single-key Redis (HTTP)", \
     "" using 1:4 with linespoints lw 2 pt 9 title "MySQL row (HTTP)", \
     "" using 1:5 with linespoints lw 2 dt 2 pt 13 title "one-key Redis ceiling (no HTTP)"
EOF
    RESULT_BASE=$out
}

main() {
    parse_args "$@"
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd -P)
    WORK="$DIR/bench-$STAMP"
    mkdir -p "$WORK"
    LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
    exec 9>&2   # the real stderr, for cleanup
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    build
    check_tools
    infra_up
    # Every run of ours but the leader ones of --durability both: replica.
    OURS_DURABILITY=$DURABILITY
    [ "$OURS_DURABILITY" != both ] || OURS_DURABILITY=replica
    ours_up "$OURS_DURABILITY"
    classic_up
    load_script
    collect_roles
    measure
    measure_leader
    machine_info
    report
    log "results: $RESULT_BASE.json $RESULT_BASE.md $RESULT_BASE.png (work files in $WORK)"
    cat "$RESULT_BASE.md"
}

main "$@"
