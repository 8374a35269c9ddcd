#!/usr/bin/env bash
# infra.sh -- start, stop and check the local infrastructure the stock server
# runs against: a 6-node Redis Cluster (3 masters + 1 replica each) and one
# MariaDB server, all on 127.0.0.1, all state inside one scratch directory.
#
#   infra.sh up|down|status --dir DIR [--base-port N]      (N defaults to 21000)
#
# Why: tests, benchmarks and the demo need a real cluster (MOVED/ASK, failover)
# and a real MySQL, without systemd, without a pre-existing server and without
# touching anything outside DIR, so that several runs can sit side by side on
# different base ports.
#
# The schema is made by the sync worker's own migration runner
# (`$BIN/stock-syncd --migrate`, sql/migrations compiled in), the one source of
# truth, so `up` needs the programs built first (`make all`). The programs are
# taken from $STOCK_BIN, else $BIN (`make asan` passes BIN=build/asan/bin), else
# bin/; a relative path is taken from the repository root.
#
# Port layout for base port N:
#   N .. N+5        Redis client ports (the first three become masters)
#   N+10 .. N+15    Redis cluster bus ports (cluster-port, set explicitly)
#   N+20            MariaDB (TCP; root@127.0.0.1, no password)
#
# Files inside DIR:
#   redis/PORT/     redis.conf (restart a node: redis-server DIR/redis/PORT/redis.conf),
#                   nodes.conf, redis.pid, redis.log, start.log, appendonlydir/
#   redis/cluster-create.log
#   mysql/          data/, mysqld.sock, mysqld.pid, mysqld.err, mariadbd.out,
#                   install.log, migrate.log (stock-syncd --migrate)
#   base_port       base port of the last `up` (read by down and status)
#   infra.env       written last by a successful `up`: KEY=value lines to source
#
# `up` is idempotent when everything is already healthy; otherwise it stops
# whatever is left, wipes DIR/redis and DIR/mysql and starts fresh. `down`
# stops only the processes named by the pid files in DIR (SIGTERM, bounded
# wait, SIGKILL), never by process name; it keeps the data, but the next `up`
# starts from empty stores. `status` prints one line per process
# and exits 0 only if all seven run.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")
STOCK_BIN=${STOCK_BIN:-${BIN:-bin}}
case "$STOCK_BIN" in /*) ;; *) STOCK_BIN="$REPO_ROOT/$STOCK_BIN" ;; esac
SYNCD="$STOCK_BIN/stock-syncd"

DEFAULT_BASE_PORT=21000
REDIS_NODES=6          # 3 masters + 3 replicas
REDIS_MASTERS=3
REDIS_BUS_OFFSET=10    # bus port = client port + 10
MYSQL_OFFSET=20        # MariaDB port = base port + 20
HTTP_OFFSET_HINT=99    # scripts and benches put daemons up to base port + 99
READY_TIMEOUT_S=60     # bound on every wait for readiness during `up`
REDIS_STOP_TIMEOUT_S=15
MYSQL_STOP_TIMEOUT_S=60
# Failover detection time; short so failover tests finish quickly.
REDIS_NODE_TIMEOUT_MS=${INFRA_REDIS_NODE_TIMEOUT_MS:-5000}

# mariadbd lives in /usr/sbin, which a non-root PATH may lack.
PATH=$PATH:/usr/sbin:/sbin
# The mariadb client prefers these to --socket and -h/-P defaults; a caller
# that sourced another infrastructure's infra.env (a test building a cluster
# of its own) must not point ours at that one's server.
unset MYSQL_HOST MYSQL_TCP_PORT MYSQL_UNIX_PORT MYSQL_PWD

# Set by parse_args.
CMD=""
DIR=""
BASE_PORT=$DEFAULT_BASE_PORT
BASE_PORT_GIVEN=0

# ---- small helpers --------------------------------------------------------

log()  { printf 'infra: %s\n' "$*"; }
warn() { printf 'infra: %s\n' "$*" >&2; }
die()  { printf 'infra: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<EOF
usage: $(basename "$0") up|down|status --dir DIR [--base-port N]

  up      start a 6-node Redis Cluster (ports N..N+5, bus N+10..N+15) and
          MariaDB (port N+20) with state in DIR; write DIR/infra.env
  down    stop the processes started in DIR (by their pid files)
  status  one line per process; exit 0 if all run, 1 otherwise

  --dir DIR        scratch directory (required; created if missing)
  --base-port N    first port (default $DEFAULT_BASE_PORT; 1024..$((65535 - MYSQL_OFFSET)))
EOF
}

usage_error() { printf 'infra: %s\n' "$*" >&2; usage >&2; exit 2; }

parse_args() {
    [ $# -ge 1 ] || usage_error "missing command"
    case "$1" in
        up|down|status) CMD=$1 ;;
        -h|--help) usage; exit 0 ;;
        *) usage_error "unknown command: $1" ;;
    esac
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
            --dir)        [ $# -ge 2 ] || usage_error "--dir needs a value"; DIR=$2; shift 2 ;;
            --dir=*)      DIR=${1#--dir=}; shift ;;
            --base-port)  [ $# -ge 2 ] || usage_error "--base-port needs a value"
                          BASE_PORT=$2; BASE_PORT_GIVEN=1; shift 2 ;;
            --base-port=*) BASE_PORT=${1#--base-port=}; BASE_PORT_GIVEN=1; shift ;;
            -h|--help)    usage; exit 0 ;;
            *)            usage_error "unknown argument: $1" ;;
        esac
    done
    [ -n "$DIR" ] || usage_error "--dir is required"
    case "$DIR" in
        *[[:space:]\"\'\\]*) usage_error "--dir must not contain spaces, quotes or backslashes" ;;
    esac
    if ! [[ "$BASE_PORT" =~ ^[0-9]{4,5}$ ]] || [ "$BASE_PORT" -lt 1024 ] ||
        [ "$BASE_PORT" -gt $((65535 - MYSQL_OFFSET)) ]; then
        usage_error "--base-port must be an integer in 1024..$((65535 - MYSQL_OFFSET))"
    fi
}

# Make DIR absolute (creating it for `up`); refuse "/".
resolve_dir() {
    if [ "$CMD" = up ]; then
        mkdir -p "$DIR"
    elif [ ! -d "$DIR" ]; then
        DIR=$(realpath -m "$DIR")
        return 0
    fi
    DIR=$(cd "$DIR" && pwd -P)
    [ "$DIR" != / ] || die "--dir must not be /"
}

# down/status use the base port recorded by the last `up` in DIR.
load_recorded_base_port() {
    local f="$DIR/base_port" recorded
    [ -f "$f" ] || return 0
    recorded=$(<"$f")
    [[ "$recorded" =~ ^[0-9]+$ ]] || return 0
    if [ "$BASE_PORT_GIVEN" -eq 1 ] && [ "$recorded" != "$BASE_PORT" ]; then
        warn "note: $DIR was started with base port $recorded; using that, not $BASE_PORT"
    fi
    BASE_PORT=$recorded
}

redis_ports() {
    local i
    for ((i = 0; i < REDIS_NODES; i++)); do printf '%s ' $((BASE_PORT + i)); done
}
mysql_port()     { echo $((BASE_PORT + MYSQL_OFFSET)); }
redis_dir()      { echo "$DIR/redis/$1"; }
mysql_dir()      { echo "$DIR/mysql"; }
mysql_datadir()  { echo "$DIR/mysql/data"; }
mysql_socket()   { echo "$DIR/mysql/mysqld.sock"; }
mysql_pidfile()  { echo "$DIR/mysql/mysqld.pid"; }

# redis-cli / mariadb against our servers, bounded so a stopped server cannot hang us.
rcli() { local port=$1; shift; timeout 5 redis-cli -h 127.0.0.1 -p "$port" "$@"; }
mysql_tcp() { timeout 30 mariadb --no-defaults -h 127.0.0.1 -P "$(mysql_port)" -u root "$@"; }

# Poll "$@" every 0.2 s until it succeeds or $1 seconds pass.
wait_for() {
    local limit=$1; shift
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

# ---- process ownership (pid files, never names) ---------------------------

# Echo the pid in pid file $1 if that process is alive and is ours: its working
# directory is $2 (redis-server chdirs to its `dir`, mariadbd to its datadir).
owned_pid() {
    local pidfile=$1 want_cwd=$2 pid cwd
    [ -s "$pidfile" ] || return 1
    pid=$(tr -dc '0-9' <"$pidfile")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 1
    [ "$cwd" = "$want_cwd" ] || return 1
    echo "$pid"
}

redis_pid() { owned_pid "$(redis_dir "$1")/redis.pid" "$(redis_dir "$1")"; }
mysql_pid() { owned_pid "$(mysql_pidfile)" "$(mysql_datadir)"; }

# All "pidfile<TAB>cwd" pairs present in DIR, whatever base port created them.
pidfile_pairs() {
    local d
    for d in "$DIR"/redis/*/; do
        d=${d%/}
        if [ -f "$d/redis.pid" ]; then printf '%s\t%s\n' "$d/redis.pid" "$d"; fi
    done
    if [ -f "$(mysql_pidfile)" ]; then printf '%s\t%s\n' "$(mysql_pidfile)" "$(mysql_datadir)"; fi
}

# Safety net for a lost pid file: redis-server or mariadbd processes whose
# working directory is inside DIR (identified by binary and directory, not name).
stray_pids() {
    local redis_exe mysql_exe proc pid exe cwd
    redis_exe=$(readlink -f "$(command -v redis-server)" 2>/dev/null || true)
    mysql_exe=$(readlink -f "$(command -v mariadbd)" 2>/dev/null || true)
    for proc in /proc/[0-9]*; do
        pid=${proc#/proc/}
        cwd=$(readlink "$proc/cwd" 2>/dev/null) || continue
        case "$cwd" in "$DIR"/redis/*|"$(mysql_datadir)") ;; *) continue ;; esac
        exe=$(readlink "$proc/exe" 2>/dev/null) || continue
        if [ "$exe" = "$redis_exe" ] || [ "$exe" = "$mysql_exe" ]; then echo "$pid"; fi
    done
}

# Send SIGTERM to every owned process (plus the pids given as arguments), wait
# up to the bound, then SIGKILL. SIGTERM is repeated every 2 s: redis-server
# drops a SIGTERM that arrives while it writes its initial AOF ("Writing
# initial AOF, can't exit.", e.g. just after a replica's first sync) and does
# not retry it by itself.
stop_all() {
    local pair pidfile cwd pid limit=$REDIS_STOP_TIMEOUT_S
    local -a pids=()
    for pid in "$@"; do
        log "stopping pid $pid"
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid")
        limit=$MYSQL_STOP_TIMEOUT_S
    done
    while IFS= read -r pair; do
        pidfile=${pair%%$'\t'*}; cwd=${pair#*$'\t'}
        if pid=$(owned_pid "$pidfile" "$cwd"); then
            log "stopping pid $pid ($cwd)"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            [ "$pidfile" != "$(mysql_pidfile)" ] || limit=$MYSQL_STOP_TIMEOUT_S
        else
            rm -f "$pidfile"   # stale: the process is gone (or the pid was reused)
        fi
    done < <(pidfile_pairs)
    for pid in $(stray_pids); do
        [[ " ${pids[*]} " == *" $pid "* ]] && continue
        warn "stopping pid $pid: runs in $DIR but its pid file is gone"
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid")
        limit=$MYSQL_STOP_TIMEOUT_S
    done
    [ ${#pids[@]} -gt 0 ] || return 0

    local deadline=$((SECONDS + limit)) resend=$((SECONDS + 2)) alive
    while :; do
        alive=()
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
        [ ${#alive[@]} -gt 0 ] || break
        if [ "$SECONDS" -ge "$deadline" ]; then
            warn "pids ${alive[*]} ignored SIGTERM for ${limit}s; sending SIGKILL"
            kill -KILL "${alive[@]}" 2>/dev/null || true
            sleep 0.5
            break
        fi
        if [ "$SECONDS" -ge "$resend" ]; then
            kill -TERM "${alive[@]}" 2>/dev/null || true
            resend=$((SECONDS + 2))
        fi
        sleep 0.2
    done
    while IFS= read -r pair; do rm -f "${pair%%$'\t'*}"; done < <(pidfile_pairs)
}

# ---- checks ---------------------------------------------------------------

# Fail if any port we need already accepts connections on 127.0.0.1.
check_ports_free() {
    local p busy=()
    for p in $(redis_ports) $(seq $((BASE_PORT + REDIS_BUS_OFFSET)) \
               $((BASE_PORT + REDIS_BUS_OFFSET + REDIS_NODES - 1))) "$(mysql_port)"; do
        if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p" 2>/dev/null; then busy+=("$p"); fi
    done
    [ ${#busy[@]} -eq 0 ] ||
        die "ports already in use on 127.0.0.1: ${busy[*]} (another run on this base port? try --base-port)"
}

check_tools() {
    local t
    for t in redis-server redis-cli mariadbd mariadb-install-db mariadb mariadb-admin timeout realpath; do
        command -v "$t" >/dev/null || die "$t not found; run scripts/deps.sh"
    done
    [ -x "$SYNCD" ] || die "$SYNCD not found: build first (make all); it applies the schema"
    # sun_path holds 108 bytes; MariaDB refuses longer socket paths.
    [ ${#DIR} -le 80 ] || die "--dir path too long for a Unix socket (max 80 chars): $DIR"
}

# CLUSTER NODES text on stdin describes exactly 3 masters and 3 replicas, each
# master with exactly one replica, all links connected, no fail/handshake flags.
# (Gossip lags CLUSTER REPLICATE: a node may still list a new replica as an
# empty master for a moment after the replica itself reports its link up.)
topology_ok() {
    awk -v want_m="$REDIS_MASTERS" -v want_r=$((REDIS_NODES - REDIS_MASTERS)) '
        $3 ~ /fail|handshake|noaddr/ || $8 != "connected" { bad = 1 }
        $3 ~ /master/ { m++; master[$1] = 1 }
        $3 ~ /slave/  { r++; replicas_of[$4]++ }
        END {
            if (bad || m != want_m || r != want_r) exit 1
            for (id in master) if (replicas_of[id] != 1) exit 1
        }'
}

# Every node: cluster_state:ok, 3 slot-owning masters, 6 known nodes, and the
# same topology (topology_ok); exactly 3 masters each with one online replica;
# every replica's link up.
cluster_healthy() {
    local p info repl masters=0 replicas=0
    for p in $(redis_ports); do
        info=$(rcli "$p" cluster info) || return 1
        grep -q '^cluster_state:ok' <<<"$info" || return 1
        grep -q "^cluster_size:$REDIS_MASTERS" <<<"$info" || return 1
        grep -q "^cluster_known_nodes:$REDIS_NODES" <<<"$info" || return 1
        rcli "$p" cluster nodes | topology_ok || return 1
        repl=$(rcli "$p" info replication) || return 1
        if grep -q '^role:master' <<<"$repl"; then
            grep -q '^connected_slaves:1' <<<"$repl" || return 1
            grep -q '^slave0:.*state=online' <<<"$repl" || return 1
            masters=$((masters + 1))
        else
            grep -q '^master_link_status:up' <<<"$repl" || return 1
            replicas=$((replicas + 1))
        fi
    done
    [ "$masters" -eq "$REDIS_MASTERS" ] && [ "$replicas" -eq $((REDIS_NODES - REDIS_MASTERS)) ]
}

mysql_ready() {
    timeout 5 mariadb-admin --no-defaults -h 127.0.0.1 -P "$(mysql_port)" -u root \
        --connect-timeout=2 ping >/dev/null 2>&1
}

schema_loaded() { mysql_tcp -N -e 'SELECT version FROM stock.schema_version' >/dev/null 2>&1; }

all_running() {
    local p
    for p in $(redis_ports); do redis_pid "$p" >/dev/null || return 1; done
    mysql_pid >/dev/null
}

fully_up() {
    [ -f "$DIR/infra.env" ] && all_running && cluster_healthy && mysql_ready && schema_loaded
}

# ---- Redis ----------------------------------------------------------------

write_redis_conf() {
    local port=$1 d
    d=$(redis_dir "$port")
    mkdir -p "$d"
    cat >"$d/redis.conf" <<EOF
# Generated by scripts/infra.sh; restart this node with: redis-server $d/redis.conf
port $port
bind 127.0.0.1
protected-mode no
daemonize yes
dir $d
pidfile $d/redis.pid
logfile $d/redis.log
cluster-enabled yes
cluster-port $((port + REDIS_BUS_OFFSET))
cluster-config-file nodes.conf
cluster-node-timeout $REDIS_NODE_TIMEOUT_MS
appendonly yes
appendfsync everysec
save ""
# One replica per master: no reason to wait for more before a full sync.
repl-diskless-sync-delay 0
# DEBUG SLEEP / DEBUG SEGFAULT from loopback, for failure tests.
enable-debug-command local
EOF
}

start_redis_nodes() {
    local p
    for p in $(redis_ports); do
        write_redis_conf "$p"
        redis-server "$(redis_dir "$p")/redis.conf" </dev/null >"$(redis_dir "$p")/start.log" 2>&1 ||
            die "redis-server on port $p did not start: $(tail -n 3 "$(redis_dir "$p")/start.log" | tr '\n' ' ')"
    done
    for p in $(redis_ports); do
        wait_for "$READY_TIMEOUT_S" rcli "$p" ping ||
            die "redis on port $p does not answer PING; see $(redis_dir "$p")/redis.log"
    done
}

create_cluster() {
    local p nodes=()
    for p in $(redis_ports); do nodes+=("127.0.0.1:$p"); done
    timeout "$READY_TIMEOUT_S" redis-cli --cluster create "${nodes[@]}" \
        --cluster-replicas 1 --cluster-yes >"$DIR/redis/cluster-create.log" 2>&1 ||
        die "redis-cli --cluster create failed; see $DIR/redis/cluster-create.log"
}

# Gossip needs a few seconds to tell every node who replicates whom.
wait_cluster() {
    wait_for "$READY_TIMEOUT_S" cluster_healthy ||
        die "cluster not healthy after ${READY_TIMEOUT_S}s (cluster_state:ok, 3 masters with a linked replica each)"
}

# ---- MariaDB --------------------------------------------------------------

init_mysql_datadir() {
    mkdir -p "$(mysql_datadir)"
    timeout "$READY_TIMEOUT_S" mariadb-install-db --no-defaults --datadir="$(mysql_datadir)" --user="$(id -un)" \
        --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
        >"$(mysql_dir)/install.log" 2>&1 ||
        die "mariadb-install-db failed; see $(mysql_dir)/install.log"
}

# mariadb-install-db runs in the background while the cluster forms (it takes
# 1-3 s); INSTALL_PID is that job, bounded by the timeout above.
INSTALL_PID=""
wait_install() {
    local pid=$INSTALL_PID
    [ -n "$pid" ] || return 0
    INSTALL_PID=""
    wait "$pid"
}

# Start mariadbd detached (own session, output to a file) and return at once.
# Its pid is kept in MYSQL_LAUNCH_PID (it stays our child), so a failed `up`
# can stop it even before it has written its pid file.
MYSQL_LAUNCH_PID=""
start_mysql() {
    setsid nohup mariadbd --no-defaults \
        --user="$(id -un)" \
        --datadir="$(mysql_datadir)" \
        --bind-address=127.0.0.1 --port="$(mysql_port)" \
        --socket="$(mysql_socket)" --pid-file="$(mysql_pidfile)" \
        --log-error="$(mysql_dir)/mysqld.err" \
        --skip-name-resolve \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
        --innodb-buffer-pool-size=256M --innodb-flush-log-at-trx-commit=1 \
        --max-connections=500 \
        </dev/null >>"$(mysql_dir)/mariadbd.out" 2>&1 &
    MYSQL_LAUNCH_PID=$!
}

# The mariadbd this run launched, if it is still alive and still our child.
launched_mysql_pid() {
    local ppid
    [ -n "$MYSQL_LAUNCH_PID" ] && kill -0 "$MYSQL_LAUNCH_PID" 2>/dev/null || return 1
    ppid=$(awk '/^PPid:/ { print $2 }' "/proc/$MYSQL_LAUNCH_PID/status" 2>/dev/null) || return 1
    [ "$ppid" = "$$" ] || return 1
    echo "$MYSQL_LAUNCH_PID"
}

wait_mysql() {
    local deadline=$((SECONDS + READY_TIMEOUT_S))
    until mysql_ready; do
        [ "$SECONDS" -lt "$deadline" ] ||
            die "MariaDB not answering on port $(mysql_port) after ${READY_TIMEOUT_S}s; see $(mysql_dir)/mysqld.err"
        # Give up early if the server died (bad option, ...).
        launched_mysql_pid >/dev/null ||
            die "mariadbd exited; see $(mysql_dir)/mysqld.err"
        sleep 0.2
    done
}

# root@127.0.0.1 with no password over TCP (install-db normally creates it; make sure),
# then the schema: every migration of sql/migrations, applied by the sync worker's
# runner (the same code every worker runs at start), before init_connect below
# names the database it creates.
setup_mysql() {
    timeout 30 mariadb --no-defaults --socket="$(mysql_socket)" -u root -e "
        CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
        GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;" ||
        die "could not grant root@127.0.0.1 over $(mysql_socket)"
    timeout 120 "$SYNCD" --migrate -o mysql.host=127.0.0.1 -o "mysql.port=$(mysql_port)" \
        -o mysql.user=root -o mysql.database=stock >"$(mysql_dir)/migrate.log" 2>&1 ||
        die "$SYNCD --migrate failed; see $(mysql_dir)/migrate.log"
    # TCP sessions of root@127.0.0.1 start in the `stock` database, so a bare
    # `mariadb -h 127.0.0.1 -P PORT -u root -e 'select * from schema_version'`
    # answers. The server runs init_connect only for accounts without SUPER and
    # CONNECTION ADMIN, so this scratch account gives those two up (nothing here
    # needs them: the daemons and tests only read, write and kill their own
    # sessions); root@localhost over the socket keeps every privilege.
    timeout 30 mariadb --no-defaults --socket="$(mysql_socket)" -u root -e "
        REVOKE SUPER, CONNECTION ADMIN ON *.* FROM 'root'@'127.0.0.1';
        SET GLOBAL init_connect = 'USE stock';" ||
        die "could not set the default database of root@127.0.0.1"
    schema_loaded || die "stock.schema_version not readable over TCP as root@127.0.0.1"
}

# ---- commands -------------------------------------------------------------

write_env() {
    local tmp="$DIR/infra.env.tmp"
    {
        echo "# Written by scripts/infra.sh up; source it."
        echo "INFRA_DIR=$DIR"
        echo "BASE_PORT=$BASE_PORT"
        echo "REDIS_SEED=127.0.0.1:$BASE_PORT"
        echo "REDIS_PORTS=\"$(redis_ports | sed 's/ $//')\""
        echo "MYSQL_HOST=127.0.0.1"
        echo "MYSQL_PORT=$(mysql_port)"
        echo "MYSQL_SOCKET=$(mysql_socket)"
        echo "MYSQL_USER=root"
        echo "MYSQL_DB=stock"
    } >"$tmp"
    mv "$tmp" "$DIR/infra.env"
}

# If `up` fails or is interrupted part way, stop what it started.
UP_DONE=0
on_up_exit() {
    local rc=$?
    if [ "$UP_DONE" -ne 1 ]; then
        set +e
        warn "up failed (exit $rc); stopping what was started"
        wait_install 2>/dev/null   # never leave a half-written datadir behind a running job
        local pid
        if pid=$(launched_mysql_pid) && [ "$pid" != "$(mysql_pid)" ]; then
            stop_all "$pid"
        else
            stop_all
        fi
        rm -f "$DIR/infra.env"
        [ "$rc" -ne 0 ] || rc=1
    fi
    exit "$rc"
}

# The kernel picks client ports from ip_local_port_range; a server port in
# that range can be taken by some client connection (say, to Redis) just
# before the server binds it, and the bind then fails at random. Warn.
warn_ephemeral_overlap() {
    local lo hi last=$((BASE_PORT + HTTP_OFFSET_HINT))
    read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || return 0
    if [ "$BASE_PORT" -le "$hi" ] && [ "$last" -ge "$lo" ]; then
        warn "warning: ports $BASE_PORT..$last overlap the kernel's ephemeral range $lo..$hi;" \
            "a client connection may take one of them first (pick a base below $lo)"
    fi
}

cmd_up() {
    if [ -f "$DIR/base_port" ] && fully_up_at_recorded_port; then
        return 0
    fi
    check_tools
    if [ -d "$DIR/redis" ] || [ -d "$DIR/mysql" ]; then
        log "$DIR is not fully up: stopping what is left, wiping it, starting fresh"
        stop_all
    fi
    rm -rf "${DIR:?}/redis" "${DIR:?}/mysql" "$DIR/infra.env"
    check_ports_free
    warn_ephemeral_overlap

    trap on_up_exit EXIT
    trap 'exit 130' INT TERM
    echo "$BASE_PORT" >"$DIR/base_port"
    mkdir -p "$DIR/redis" "$(mysql_dir)"
    local t0=$SECONDS

    # MariaDB installs, then boots, while the cluster forms.
    init_mysql_datadir &
    INSTALL_PID=$!
    start_redis_nodes
    create_cluster
    wait_install || die "mariadb-install-db failed; see $(mysql_dir)/install.log"
    start_mysql
    wait_cluster
    log "redis cluster ok on ports $(redis_ports)(bus +$REDIS_BUS_OFFSET)"
    wait_mysql
    setup_mysql
    log "mariadb ok on port $(mysql_port), schema loaded"
    write_env
    UP_DONE=1
    log "up in $((SECONDS - t0))s; env in $DIR/infra.env"
}

# Already healthy? Say so. Healthy on another port than asked for? Refuse.
fully_up_at_recorded_port() {
    local asked=$BASE_PORT asked_given=$BASE_PORT_GIVEN
    BASE_PORT_GIVEN=0
    load_recorded_base_port
    BASE_PORT_GIVEN=$asked_given
    if fully_up; then
        if [ "$asked_given" -eq 1 ] && [ "$asked" != "$BASE_PORT" ]; then
            die "$DIR is already up on base port $BASE_PORT, not $asked; run down first"
        fi
        log "already up (base port $BASE_PORT); env in $DIR/infra.env"
        return 0
    fi
    BASE_PORT=$asked
    return 1
}

cmd_down() {
    [ -d "$DIR" ] || { log "nothing to stop in $DIR"; return 0; }
    stop_all
    rm -f "$DIR/infra.env"
    log "down ($DIR; data kept)"
}

cmd_status() {
    load_recorded_base_port
    local p pid ok=0
    for p in $(redis_ports); do
        if pid=$(redis_pid "$p"); then
            printf 'redis-server  port %-5s  pid %-7s  running\n' "$p" "$pid"
        else
            printf 'redis-server  port %-5s  pid %-7s  not running\n' "$p" "-"; ok=1
        fi
    done
    if pid=$(mysql_pid); then
        printf 'mariadbd      port %-5s  pid %-7s  running\n' "$(mysql_port)" "$pid"
    else
        printf 'mariadbd      port %-5s  pid %-7s  not running\n' "$(mysql_port)" "-"; ok=1
    fi
    return "$ok"
}

main() {
    parse_args "$@"
    resolve_dir
    case "$CMD" in
        up)     cmd_up ;;
        down)   cmd_down ;;
        status) cmd_status ;;
    esac
}

main "$@"
