#!/usr/bin/env bash
# start.sh -- start the stock server's daemons (sync workers, partition nodes,
# scheduler) in a scratch directory, against the Redis Cluster and MariaDB that
# infra.sh started (or starts, with --all).
#
#   start.sh --dir DIR [--nodes N] [--workers N] [--infra-env FILE] [--http-port PORT]
#            [--scheduler-opt SECTION.KEY=VALUE ...] [--all [--base-port N]]
#
# Why: tests, benchmarks and the demo need the daemons up on loopback with every
# path and port derived from one directory, so that several runs sit side by
# side, a crashed daemon can be restarted alone, and nothing is found or
# stopped by process name.
#
# What it does:
#   - with --all, first runs `infra.sh up --dir DIR --base-port N` (default:
#     DIR's recorded base port, else 21000), so one command brings everything
#     up (infra.sh leaves a healthy infrastructure as it is);
#   - reads the infrastructure's KEY=value file: FILE from --infra-env, else
#     DIR/infra.env (what `infra.sh up --dir DIR` writes): REDIS_SEED,
#     BASE_PORT, MYSQL_*;
#   - starts N sync workers (--workers, default 1): worker i listens on
#     ipc://DIR/syncd-i.ipc and reaches MariaDB with the MYSQL_* values; then
#     the partition nodes (--nodes, default 2): node i listens on
#     ipc://DIR/node-i.ipc, is told node.id=i and node.count=N (it ships the
#     details of the partitions P with P % N == i-1, the ones the scheduler
#     routes to it) and every worker URL (ship.sync_urls); then the scheduler:
#     HTTP on 127.0.0.1:PORT (default BASE_PORT+80), admin socket
#     DIR/admin.sock, nodes.urls and sync.urls. Each runs in its own session (setsid), output to
#     DIR/<name>.log (appended), pid in DIR/<name>.pid (the daemon's own pid),
#     and "PID STATUS" appended to DIR/<name>.exit when it exits (written by
#     the shell that launched it and waits for it);
#   - starts ONLY what is not running: a pid file whose process is alive and
#     runs the same binary counts as running. After a crash the same command
#     restarts just the missing process;
#   - waits (at most READY_TIMEOUT_S) until the scheduler answers GET /healthz
#     and every worker's and node's ipc socket exists; on failure prints the log
#     tail, stops what this invocation started and exits 1;
#   - writes DIR/endpoints.env (HTTP_URL, ADMIN_SOCKET, SYNC_URLS, REDIS_SEED,
#     MYSQL_*).
#   The options of the first start are kept in DIR/start.env, so a later
#   `start.sh --dir DIR` (a restart) uses the same node and worker counts,
#   env file, --scheduler-opt overrides (e.g. a test's short lease.ttl_ms)
#   and --http-port if one was given (without it the port is
#   BASE_PORT+80 of the infrastructure of the day).
#
# Binaries come from $STOCK_BIN if set, else the repository's bin/; the
# configuration from the repository's conf/, with -o overrides for every path
# and port. Stop everything with scripts/stop.sh --dir DIR.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")
CONF_DIR="$REPO_ROOT/conf"
BIN_DIR=${STOCK_BIN:-$REPO_ROOT/bin}

READY_TIMEOUT_S=20    # bound on waiting for the daemons to come up
PIDFILE_TIMEOUT_S=5   # bound on a launched process writing its pid file
NODES_MAX=64
WORKERS_MAX=64        # sync.urls holds at most this many (SCH_SYNC_WORKERS_MAX)
HTTP_PORT_OFFSET=80   # default HTTP port = BASE_PORT + this (infra.sh uses N..N+20)
INFRA_TIMEOUT_S=300   # bound on `infra.sh up` (--all)
DEFAULT_BASE_PORT=21000

# Set by parse_args / load_settings.
DIR=""
NODES=""
WORKERS=""
INFRA_ENV=""
HTTP_PORT=""
ALL=0
BASE_PORT_ARG=
SCHED_OPTS=()   # --scheduler-opt values: extra -o overrides of the scheduler
NODE_OPTS=()    # --node-opt values: extra -o overrides of every node

log()  { printf 'start: %s\n' "$*"; }
die()  { printf 'start: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<EOF
usage: $(basename "$0") --dir DIR [--nodes N] [--workers N] [--infra-env FILE] [--http-port PORT]
                [--scheduler-opt SECTION.KEY=VALUE ...] [--node-opt SECTION.KEY=VALUE ...]
                [--all [--base-port N]]

  --dir DIR          scratch directory for pid files, logs, sockets (created if missing)
  --nodes N          partition nodes to run (default 2, 1..$NODES_MAX)
  --workers N        sync workers to run (default 1, 1..$WORKERS_MAX)
  --infra-env FILE   infra.sh's env file (default DIR/infra.env)
  --http-port PORT   scheduler HTTP port (default BASE_PORT+$HTTP_PORT_OFFSET)
  --scheduler-opt S.K=V  one more -o override for the scheduler (repeatable; kept
                     for restarts), e.g. lease.ttl_ms=1000
  --node-opt S.K=V   one more -o override for every node (repeatable; kept for
                     restarts), e.g. deduct.durability=leader
  --all              first bring the infrastructure up: infra.sh up --dir DIR
  --base-port N      with --all: infra.sh's base port (default: the one DIR was
                     brought up with, else $DEFAULT_BASE_PORT)

Starts only what is not already running; waits until it answers; writes
DIR/endpoints.env. Binaries: \$STOCK_BIN or the repository's bin/.
EOF
}

usage_error() { printf 'start: %s\n' "$*" >&2; usage >&2; exit 2; }

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --dir)         [ $# -ge 2 ] || usage_error "--dir needs a value"; DIR=$2; shift 2 ;;
            --dir=*)       DIR=${1#--dir=}; shift ;;
            --nodes)       [ $# -ge 2 ] || usage_error "--nodes needs a value"; NODES=$2; shift 2 ;;
            --nodes=*)     NODES=${1#--nodes=}; shift ;;
            --workers)     [ $# -ge 2 ] || usage_error "--workers needs a value"; WORKERS=$2; shift 2 ;;
            --workers=*)   WORKERS=${1#--workers=}; shift ;;
            --all)         ALL=1; shift ;;
            --base-port)   [ $# -ge 2 ] || usage_error "--base-port needs a value"; BASE_PORT_ARG=$2; shift 2 ;;
            --base-port=*) BASE_PORT_ARG=${1#--base-port=}; shift ;;
            --infra-env)   [ $# -ge 2 ] || usage_error "--infra-env needs a value"; INFRA_ENV=$2; shift 2 ;;
            --infra-env=*) INFRA_ENV=${1#--infra-env=}; shift ;;
            --http-port)   [ $# -ge 2 ] || usage_error "--http-port needs a value"; HTTP_PORT=$2; shift 2 ;;
            --http-port=*) HTTP_PORT=${1#--http-port=}; shift ;;
            --scheduler-opt) [ $# -ge 2 ] || usage_error "--scheduler-opt needs a value"; SCHED_OPTS+=("$2"); shift 2 ;;
            --scheduler-opt=*) SCHED_OPTS+=("${1#--scheduler-opt=}"); shift ;;
            --node-opt) [ $# -ge 2 ] || usage_error "--node-opt needs a value"; NODE_OPTS+=("$2"); shift 2 ;;
            --node-opt=*) NODE_OPTS+=("${1#--node-opt=}"); shift ;;
            -h|--help)     usage; exit 0 ;;
            *)             usage_error "unknown argument: $1" ;;
        esac
    done
    [ -n "$DIR" ] || usage_error "--dir is required"
    case "$DIR" in
        *[[:space:]\"\'\\,]*) usage_error "--dir must not contain spaces, quotes, commas or backslashes" ;;
    esac
    if [ -n "$NODES" ] && { ! [[ "$NODES" =~ ^[0-9]+$ ]] || [ "$NODES" -lt 1 ] || [ "$NODES" -gt "$NODES_MAX" ]; }; then
        usage_error "--nodes must be an integer in 1..$NODES_MAX"
    fi
    if [ -n "$WORKERS" ] && { ! [[ "$WORKERS" =~ ^[0-9]+$ ]] || [ "$WORKERS" -lt 1 ] || [ "$WORKERS" -gt "$WORKERS_MAX" ]; }; then
        usage_error "--workers must be an integer in 1..$WORKERS_MAX"
    fi
    if [ -n "$HTTP_PORT" ] && { ! [[ "$HTTP_PORT" =~ ^[0-9]+$ ]] || [ "$HTTP_PORT" -lt 1024 ] || [ "$HTTP_PORT" -gt 65535 ]; }; then
        usage_error "--http-port must be an integer in 1024..65535"
    fi
    local opt
    for opt in ${SCHED_OPTS[@]+"${SCHED_OPTS[@]}"} ${NODE_OPTS[@]+"${NODE_OPTS[@]}"}; do
        [[ "$opt" =~ ^[a-z_]+\.[a-z_]+=[^[:space:]]*$ ]] ||
            usage_error "--scheduler-opt and --node-opt take SECTION.KEY=VALUE without spaces: $opt"
    done
    if [ -n "$BASE_PORT_ARG" ]; then
        [ "$ALL" -eq 1 ] || usage_error "--base-port goes with --all (infra.sh's ports)"
        { [[ "$BASE_PORT_ARG" =~ ^[0-9]+$ ]] && [ "$BASE_PORT_ARG" -ge 1024 ] && [ "$BASE_PORT_ARG" -le 65400 ]; } ||
            usage_error "--base-port must be an integer in 1024..65400"
    fi
    if [ "$ALL" -eq 1 ] && [ -n "$INFRA_ENV" ]; then
        usage_error "--all brings up DIR's own infrastructure; it does not go with --infra-env"
    fi
}

# Reads KEY=value lines of file $1 for the keys we use, without sourcing it
# (it is data, not code). Sets the shell variables of those keys.
read_env_file() {
    local file=$1 key value line
    while IFS= read -r line || [ -n "$line" ]; do
        [[ "$line" =~ ^([A-Z_][A-Z0-9_]*)=(.*)$ ]] || continue
        key=${BASH_REMATCH[1]}
        value=${BASH_REMATCH[2]}
        value=${value#\"}; value=${value%\"}
        case "$key" in
            REDIS_SEED|BASE_PORT|MYSQL_HOST|MYSQL_PORT|MYSQL_SOCKET|MYSQL_DB|MYSQL_USER) ;;
            NODES|WORKERS|HTTP_PORT|INFRA_ENV|SCHEDULER_OPTS|NODE_OPTS) ;;   # DIR/start.env
            *) continue ;;
        esac
        printf -v "ENV_$key" '%s' "$value"
    done <"$file"
}

# Options: given > DIR/start.env (earlier start) > defaults.
load_settings() {
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd -P)
    [ "$DIR" != / ] || usage_error "--dir must not be /"
    # sun_path holds 108 bytes: DIR/admin.sock and DIR/node-64.ipc must fit.
    [ ${#DIR} -le 90 ] || die "--dir path too long for a Unix socket (max 90 chars): $DIR"
    if [ -f "$DIR/start.env" ]; then
        read_env_file "$DIR/start.env"
        NODES=${NODES:-${ENV_NODES:-}}
        WORKERS=${WORKERS:-${ENV_WORKERS:-}}
        HTTP_PORT=${HTTP_PORT:-${ENV_HTTP_PORT:-}}
        INFRA_ENV=${INFRA_ENV:-${ENV_INFRA_ENV:-}}
        if [ ${#SCHED_OPTS[@]} -eq 0 ] && [ -n "${ENV_SCHEDULER_OPTS:-}" ]; then
            read -r -a SCHED_OPTS <<<"$ENV_SCHEDULER_OPTS"
        fi
        if [ ${#NODE_OPTS[@]} -eq 0 ] && [ -n "${ENV_NODE_OPTS:-}" ]; then
            read -r -a NODE_OPTS <<<"$ENV_NODE_OPTS"
        fi
    fi
    NODES=${NODES:-2}
    WORKERS=${WORKERS:-1}
    INFRA_ENV=${INFRA_ENV:-$DIR/infra.env}
    [ -f "$INFRA_ENV" ] ||
        die "no infrastructure env file $INFRA_ENV (run scripts/infra.sh up --dir DIR, or pass --infra-env FILE)"
    INFRA_ENV=$(cd "$(dirname "$INFRA_ENV")" && pwd -P)/$(basename "$INFRA_ENV")
    read_env_file "$INFRA_ENV"
    [ -n "${ENV_REDIS_SEED:-}" ] || die "$INFRA_ENV has no REDIS_SEED"
    # An HTTP port given once (--http-port) is kept; otherwise it follows the
    # infrastructure's base port, which may change between runs in one DIR.
    local kept_port=$HTTP_PORT
    if [ -z "$HTTP_PORT" ]; then
        [[ "${ENV_BASE_PORT:-}" =~ ^[0-9]+$ ]] || die "$INFRA_ENV has no BASE_PORT; pass --http-port"
        HTTP_PORT=$((ENV_BASE_PORT + HTTP_PORT_OFFSET))
    fi
    {
        echo "# Written by scripts/start.sh: the options of this directory's daemons."
        echo "# HTTP_PORT is empty unless --http-port gave one: then BASE_PORT+$HTTP_PORT_OFFSET."
        echo "NODES=$NODES"
        echo "WORKERS=$WORKERS"
        echo "HTTP_PORT=$kept_port"
        echo "INFRA_ENV=$INFRA_ENV"
        echo "SCHEDULER_OPTS=${SCHED_OPTS[*]+${SCHED_OPTS[*]}}"
        echo "NODE_OPTS=${NODE_OPTS[*]+${NODE_OPTS[*]}}"
    } >"$DIR/start.env.tmp"
    mv "$DIR/start.env.tmp" "$DIR/start.env"
}

check_binaries() {
    local b
    for b in stock-scheduler stock-node stock-syncd; do
        [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b not found or not executable (run make, or set STOCK_BIN)"
    done
}

# ---- process ownership (pid files, never names) -------------------------------

# The binary process $1 runs, without the " (deleted)" a rebuilt file gets.
exe_of() {
    local exe
    exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
    echo "${exe% (deleted)}"
}

# Echo the pid in pid file $1 if that process is alive and runs binary $2
# (return 0); return 1 when it is not running (no file, dead, or the pid was
# reused by another program). Return 2, with the pid echoed, when a live
# process runs another copy of the same program (another bin dir): starting a
# second one would fight it for the same sockets.
running_pid() {
    local pidfile=$1 bin=$2 pid exe
    [ -s "$pidfile" ] || return 1
    pid=$(tr -dc '0-9' <"$pidfile")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    exe=$(exe_of "$pid") || return 1
    echo "$pid"
    [ "$exe" != "$(readlink -f "$bin")" ] || return 0
    [ "$(basename "$exe")" != "$(basename "$bin")" ] || return 2
    return 1
}

# is_running NAME BINARY: 0 when DIR/NAME.pid names a live BINARY (logged),
# 1 when NAME must be started; dies on a copy from another bin dir.
is_running() {
    local name=$1 bin=$2 pid rc=0
    pid=$(running_pid "$DIR/$name.pid" "$bin") || rc=$?
    case "$rc" in
        0) log "$name already running (pid $pid)"; return 0 ;;
        2) die "$DIR/$name.pid: pid $pid runs $(exe_of "$pid"), not $bin; run scripts/stop.sh --dir $DIR first" ;;
    esac
    return 1
}

STARTED=()   # "name pid" of what this invocation launched

# launch NAME BINARY ARGS...: starts BINARY in its own session with output to
# DIR/NAME.log, under a small shell that stays its parent: it writes the
# daemon's pid to DIR/NAME.pid once the daemon is forked, waits for it, and
# appends "PID STATUS" to DIR/NAME.exit when it ends (STATUS as the shell's $?:
# 128+N after signal N). The daemon is not a child of stop.sh or of a test, so
# this is the only process that can collect its exit status (stop.sh --check
# reads it; a crash between stops is recorded too). A restart appends a line.
launch() {
    local name=$1 pidfile="$DIR/$1.pid" logfile="$DIR/$1.log" pid deadline
    shift
    rm -f "$pidfile"
    printf '=== %s start.sh: starting %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$logfile"
    # shellcheck disable=SC2016 # $! $? and $@ belong to the inner shell
    setsid bash -c '"$@" & pid=$!
        echo "$pid" >"$0.tmp" && mv "$0.tmp" "$0"
        wait "$pid"
        echo "$pid $?" >>"${0%.pid}.exit"' "$pidfile" "$@" \
        </dev/null >>"$logfile" 2>&1 &
    deadline=$((SECONDS + PIDFILE_TIMEOUT_S))
    until [ -s "$pidfile" ]; do
        [ "$SECONDS" -lt "$deadline" ] || die "$name did not write $pidfile; see $logfile"
        sleep 0.05
    done
    pid=$(tr -dc '0-9' <"$pidfile")
    STARTED+=("$name $pid")
    log "started $name pid $pid (log $logfile)"
}

# If this invocation fails part way, stop what it started (not what was running before).
on_exit() {
    local rc=$? entry pid
    if [ "$rc" -ne 0 ] && [ ${#STARTED[@]} -gt 0 ]; then
        for entry in "${STARTED[@]}"; do
            pid=${entry#* }
            kill -TERM "$pid" 2>/dev/null || true
        done
        sleep 1
        for entry in "${STARTED[@]}"; do
            pid=${entry#* }
            kill -KILL "$pid" 2>/dev/null || true
            rm -f "$DIR/${entry%% *}.pid"
        done
        printf 'start: stopped what this run started: %s\n' "${STARTED[*]}" >&2
    fi
    exit "$rc"
}

# ---- the daemons ------------------------------------------------------------------

node_url()    { echo "ipc://$DIR/node-$1.ipc"; }
syncd_url()   { echo "ipc://$DIR/syncd-$1.ipc"; }
join_urls() {   # join_urls FUNC COUNT: "u1,u2,..."
    local f=$1 n=$2 i out=""
    for ((i = 1; i <= n; i++)); do out+="${out:+,}$($f "$i")"; done
    echo "$out"
}

start_nodes() {
    local i opt bin="$BIN_DIR/stock-node"
    local -a extra=()
    for opt in ${NODE_OPTS[@]+"${NODE_OPTS[@]}"}; do
        extra+=(-o "$opt")
    done
    for ((i = 1; i <= NODES; i++)); do
        if is_running "node-$i" "$bin"; then
            continue
        fi
        rm -f "$DIR/node-$i.ipc"   # a crashed node's socket file: wait for the new one
        launch "node-$i" "$bin" -c "$CONF_DIR/node.ini" \
            -o "node.id=$i" \
            -o "node.count=$NODES" \
            -o "node.listen=$(node_url "$i")" \
            -o "redis.seeds=$ENV_REDIS_SEED" \
            -o "ship.sync_urls=$(join_urls syncd_url "$WORKERS")" \
            ${extra[@]+"${extra[@]}"}
    done
}

port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

start_scheduler() {
    local bin="$BIN_DIR/stock-scheduler"
    if is_running scheduler "$bin"; then
        return 0
    fi
    if port_busy "$HTTP_PORT"; then
        die "port $HTTP_PORT is already in use by another process (choose --http-port)"
    fi
    local -a extra=()
    local opt
    for opt in ${SCHED_OPTS[@]+"${SCHED_OPTS[@]}"}; do
        extra+=(-o "$opt")
    done
    launch scheduler "$bin" -c "$CONF_DIR/scheduler.ini" \
        -o "http.listen=127.0.0.1" \
        -o "http.port=$HTTP_PORT" \
        -o "admin.socket=$DIR/admin.sock" \
        -o "redis.seeds=$ENV_REDIS_SEED" \
        -o "nodes.urls=$(join_urls node_url "$NODES")" \
        -o "sync.urls=$(join_urls syncd_url "$WORKERS")" \
        ${extra[@]+"${extra[@]}"}
}

# The sync workers reach MariaDB the way infra.env says: over TCP when
# MYSQL_HOST is set, else through MYSQL_SOCKET (mysql.host empty).
start_workers() {
    local i bin="$BIN_DIR/stock-syncd"
    local -a db=()
    if [ -n "${ENV_MYSQL_HOST:-}" ]; then
        db+=(-o "mysql.host=$ENV_MYSQL_HOST")
        [ -z "${ENV_MYSQL_PORT:-}" ] || db+=(-o "mysql.port=$ENV_MYSQL_PORT")
    elif [ -n "${ENV_MYSQL_SOCKET:-}" ]; then
        db+=(-o "mysql.host=" -o "mysql.socket=$ENV_MYSQL_SOCKET")
    else
        die "$INFRA_ENV has neither MYSQL_HOST nor MYSQL_SOCKET"
    fi
    [ -z "${ENV_MYSQL_USER:-}" ] || db+=(-o "mysql.user=$ENV_MYSQL_USER")
    [ -z "${ENV_MYSQL_DB:-}" ] || db+=(-o "mysql.database=$ENV_MYSQL_DB")
    for ((i = 1; i <= WORKERS; i++)); do
        if is_running "syncd-$i" "$bin"; then
            continue
        fi
        rm -f "$DIR/syncd-$i.ipc"   # a crashed worker's socket file: wait for the new one
        launch "syncd-$i" "$bin" -c "$CONF_DIR/syncd.ini" \
            -o "syncd.listen=$(syncd_url "$i")" \
            "${db[@]}"
    done
}

healthz_ok() {
    timeout 2 curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$HTTP_PORT/healthz"
}

# Fails with the log tail of $1 when process $2 (from pid file) is gone.
check_alive() {
    local name=$1 pid
    pid=$(tr -dc '0-9' <"$DIR/$name.pid" 2>/dev/null || true)
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        printf 'start: error: %s exited; last lines of %s:\n' "$name" "$DIR/$name.log" >&2
        tail -n 15 "$DIR/$name.log" >&2 || true
        exit 1
    fi
}

wait_ready() {
    local deadline=$((SECONDS + READY_TIMEOUT_S)) i ready name
    while :; do
        ready=1
        for ((i = 1; i <= WORKERS; i++)); do
            check_alive "syncd-$i"
            [ -S "$DIR/syncd-$i.ipc" ] || ready=0
        done
        for ((i = 1; i <= NODES; i++)); do
            check_alive "node-$i"
            [ -S "$DIR/node-$i.ipc" ] || ready=0
        done
        check_alive scheduler
        if [ "$ready" -eq 1 ] && healthz_ok; then
            return 0
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            printf 'start: error: not ready after %ss (scheduler /healthz on port %s, node and worker sockets in %s)\n' \
                "$READY_TIMEOUT_S" "$HTTP_PORT" "$DIR" >&2
            for name in scheduler $(for ((i = 1; i <= NODES; i++)); do echo "node-$i"; done) \
                $(for ((i = 1; i <= WORKERS; i++)); do echo "syncd-$i"; done); do
                printf -- '--- %s.log\n' "$name" >&2
                tail -n 8 "$DIR/$name.log" >&2 || true
            done
            exit 1
        fi
        sleep 0.1
    done
}

write_endpoints() {
    local tmp="$DIR/endpoints.env.tmp"
    {
        echo "# Written by scripts/start.sh; source it."
        echo "STOCK_DIR=$DIR"
        echo "HTTP_URL=http://127.0.0.1:$HTTP_PORT"
        echo "HTTP_PORT=$HTTP_PORT"
        echo "ADMIN_SOCKET=$DIR/admin.sock"
        echo "NODES=$NODES"
        echo "WORKERS=$WORKERS"
        echo "SYNC_URLS=$(join_urls syncd_url "$WORKERS")"
        echo "REDIS_SEED=$ENV_REDIS_SEED"
        echo "MYSQL_HOST=${ENV_MYSQL_HOST:-127.0.0.1}"
        echo "MYSQL_PORT=${ENV_MYSQL_PORT:-}"
        echo "MYSQL_SOCKET=${ENV_MYSQL_SOCKET:-}"
        echo "MYSQL_DB=${ENV_MYSQL_DB:-stock}"
        echo "MYSQL_USER=${ENV_MYSQL_USER:-root}"
    } >"$tmp"
    mv "$tmp" "$DIR/endpoints.env"
}

# --all: the infrastructure first, in DIR (infra.sh keeps a healthy one as it is).
# Without --base-port, a restart reuses the base port infra.sh recorded in DIR.
start_infra() {
    [ "$ALL" -eq 1 ] || return 0
    mkdir -p "$DIR"
    local base=${BASE_PORT_ARG:-}
    if [ -z "$base" ] && [ -s "$DIR/base_port" ]; then
        base=$(tr -dc '0-9' <"$DIR/base_port")
    fi
    base=${base:-$DEFAULT_BASE_PORT}
    log "infrastructure: scripts/infra.sh up --dir $DIR --base-port $base"
    timeout "$INFRA_TIMEOUT_S" bash "$SCRIPT_DIR/infra.sh" up --dir "$DIR" --base-port "$base" ||
        die "scripts/infra.sh up --dir $DIR failed (see its output above)"
}

main() {
    parse_args "$@"
    start_infra
    load_settings
    check_binaries
    command -v curl >/dev/null || die "curl not found; run scripts/deps.sh"
    trap on_exit EXIT
    trap 'exit 130' INT TERM
    start_workers
    start_nodes
    start_scheduler
    wait_ready
    write_endpoints
    link_default_socket
    log "ready: http://127.0.0.1:$HTTP_PORT, $NODES nodes, $WORKERS sync workers, admin $DIR/admin.sock; env in $DIR/endpoints.env"
}

# stockctl's default socket is /tmp/stock-admin.sock: point it at this run's
# socket when no other live run holds it, so `bin/stockctl registry` works
# without --socket. A link to a socket that no longer exists is replaced.
link_default_socket() {
    local link=/tmp/stock-admin.sock
    if [ -L "$link" ] && [ ! -S "$(readlink "$link")" ]; then
        rm -f "$link"
    fi
    if [ ! -e "$link" ] && [ ! -L "$link" ]; then
        ln -s "$DIR/admin.sock" "$link" && log "stockctl's default socket $link -> $DIR/admin.sock"
    fi
}

main "$@"
