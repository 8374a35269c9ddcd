# shellcheck shell=bash
# stock_test.sh -- shared helpers of the shell integration tests (tests/integration/*.sh).
#
# Sourced, not run. A test does:
#     . "$(dirname "$0")/../lib/stock_test.sh"
#     t_start_daemons --nodes 2         # own scratch dir, own HTTP port, stop in a trap
#     sku=$(t_sku oversell)             # unique per run
#     t_ctl sku load "$sku" --total 100 --partitions 2
#     ...assertions...
#     t_pass
#
# Why this shape: every test uses the Redis Cluster and MariaDB the harness
# (tests/run.sh) started -- INFRA_DIR/infra.env -- and never starts its own;
# it runs its own daemons from scripts/start.sh in a fresh directory with an
# HTTP port of its own, so tests cannot see each other's state or ports, and
# the EXIT trap stops them (scripts/stop.sh, by pid file) on success, failure
# or interrupt. Every command that talks to a process runs under `timeout`.
# JSON is read with python3 (installed on the build machines; jq is not in
# scripts/deps.sh). Facts about stock are read from Redis itself when the
# point is to check the daemons' own reports.
#
# Teardown checks the daemons too: stop.sh --check fails the test when any
# daemon of its dir exited non-zero (also a crash between restarts) or left a
# sanitizer report ("AddressSanitizer", "LeakSanitizer", "runtime error") in
# its log; a deliberate kill is declared with t_kill9 or t_expect_exit.
#
# A test is one check for tests/run.sh; a file that runs several declares them
# in its header with a line `# checks: N` and reports each one that passed
# with t_check (the harness counts the ones it never reported as failed).
#
# Environment (exported by tests/run.sh): INFRA_DIR, STOCK_BIN, STOCK_ROOT,
# REDIS_SEED, BASE_PORT, STOCK_T_TMP (where the scratch dirs go, default /tmp:
# the harness looks there for daemons a test left behind). KEEP_T_DIR=1 keeps
# the scratch dir after success too.

T_NAME=$(basename "$0" .sh)
T_ROOT=${STOCK_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
T_BIN=${STOCK_BIN:-$T_ROOT/bin}
case "$T_BIN" in /*) ;; *) T_BIN="$T_ROOT/$T_BIN" ;; esac
T_DIR=""
T_HTTP_PORT=""
# python3 itself, not a version-manager shim in front of it (a pyenv shim costs
# ~200 ms per call, and the helpers call python3 often).
T_PY=/usr/bin/python3
if [ ! -x "$T_PY" ]; then T_PY=$(command -v python3 || echo python3); fi
T_CMD_TIMEOUT_S=30      # one curl, stockctl or redis-cli call
T_START_TIMEOUT_S=60    # start.sh (it waits up to 20 s itself)
T_STOP_TIMEOUT_S=60
HTTP_URL=""
ADMIN_SOCKET=""

# ---- reporting --------------------------------------------------------------

say()  { printf '[%s] %s\n' "$T_NAME" "$*"; }
fail() { printf '[%s] FAIL: %s\n' "$T_NAME" "$*" >&2; exit 1; }
t_pass() { say "PASS"; exit 0; }
# t_check LABEL: one declared check (`# checks: N`) passed.
t_check() { say "check ok: $1"; }

# assert_eq WHAT EXPECTED GOT
assert_eq() {
    if [ "$2" != "$3" ]; then fail "$1: expected '$2', got '$3'"; fi
    say "ok: $1 = $3"
}
# assert_le WHAT A B: integers, A <= B
assert_le() {
    if ! [ "$2" -le "$3" ]; then fail "$1: expected $2 <= $3"; fi
    say "ok: $1 ($2 <= $3)"
}
# assert_lt WHAT A B: A < B
assert_lt() {
    if ! [ "$2" -lt "$3" ]; then fail "$1: expected $2 < $3"; fi
    say "ok: $1 ($2 < $3)"
}
# assert_contains WHAT HAYSTACK NEEDLE
assert_contains() {
    case "$2" in *"$3"*) say "ok: $1" ;; *) fail "$1: '$3' not in: $2" ;; esac
}

# ---- environment and daemons -------------------------------------------------

t_require_infra() {
    if [ -z "${INFRA_DIR:-}" ] || [ ! -f "$INFRA_DIR/infra.env" ]; then
        fail "no infrastructure: run under tests/run.sh, or export INFRA_DIR (scripts/infra.sh up --dir DIR)"
    fi
    # shellcheck disable=SC1091
    . "$INFRA_DIR/infra.env"
    [ -n "${REDIS_SEED:-}" ] || fail "$INFRA_DIR/infra.env has no REDIS_SEED"
    local b
    for b in stock-scheduler stock-node stockctl stock-loadgen; do
        [ -x "$T_BIN/$b" ] || fail "$T_BIN/$b missing (make)"
    done
    command -v "$T_PY" >/dev/null || fail "python3 not found"
    command -v curl >/dev/null || fail "curl not found"
}

# A port is busy when any TCP socket uses it locally, not only a listener: the
# test range may lie in the kernel's ephemeral range (e.g. base 38000), and an
# outgoing connection that took the port makes the scheduler's bind fail.
t_port_busy() { ss -Htan "sport = :$1" 2>/dev/null | grep -q .; }

# A free TCP port in BASE_PORT+81 .. BASE_PORT+99 (infra.sh uses N..N+20;
# start.sh's default is N+80, left to manual runs). The start point depends on
# the test's pid, so tests running side by side rarely try the same port first.
t_pick_port() {
    local base=${BASE_PORT:?} i p
    for ((i = 0; i < 19; i++)); do
        p=$((base + 81 + ($$ + i) % 19))
        if ! t_port_busy "$p"; then echo "$p"; return 0; fi
    done
    fail "no free port in $((base + 81))..$((base + 99))"
}

# A SKU id unique to this run: NAME-<time><pid><random>.
t_sku() { echo "$1-$(date +%s)$$${RANDOM}"; }

# t_cleanup: the EXIT trap: stops the daemons and checks how they ended
# (stop.sh --check); a test that passed fails when one of them exited
# non-zero or left a sanitizer report. The scratch dir is kept on failure.
t_cleanup() {
    local rc=$?
    trap - EXIT
    if [ -n "$T_DIR" ]; then
        local out src=0 line
        out=$(timeout "$T_STOP_TIMEOUT_S" bash "$T_ROOT/scripts/stop.sh" --dir "$T_DIR" --check 2>&1) ||
            src=$?
        if [ "$src" -ne 0 ]; then
            while IFS= read -r line; do
                case "$line" in "stop: check: "*) printf '[%s] FAIL: daemon: %s\n' "$T_NAME" \
                    "${line#stop: check: }" >&2 ;; esac
            done <<<"$out"
            [ "$src" -eq 1 ] || printf '[%s] FAIL: stop.sh --dir %s --check exited %s: %s\n' \
                "$T_NAME" "$T_DIR" "$src" "$(tail -n 3 <<<"$out")" >&2
            [ "$rc" -ne 0 ] || rc=1
        fi
        if [ "$rc" -ne 0 ]; then
            local f
            for f in "$T_DIR"/scheduler.log "$T_DIR"/node-*.log; do
                [ -f "$f" ] || continue
                printf '[%s] --- last lines of %s\n' "$T_NAME" "$f" >&2
                tail -n 12 "$f" >&2
            done
            printf '[%s] scratch dir kept: %s\n' "$T_NAME" "$T_DIR" >&2
        elif [ "${KEEP_T_DIR:-0}" != 1 ]; then
            rm -rf "$T_DIR"
        fi
    fi
    exit "$rc"
}

# t_start_daemons [start.sh options]: fresh dir, free port, start, trap.
t_start_daemons() {
    t_require_infra
    T_DIR=$(mktemp -d "${STOCK_T_TMP:-/tmp}/stock-t-XXXXXX")
    if [ ${#T_EXIT_HOOKS[@]} -gt 0 ]; then
        trap t_run_exit_hooks EXIT # hooks set before the daemons still run
    else
        trap t_cleanup EXIT
    fi
    trap 'exit 130' INT TERM
    T_HTTP_PORT=$(t_pick_port)
    say "daemons in $T_DIR, http port $T_HTTP_PORT"
    timeout "$T_START_TIMEOUT_S" bash "$T_ROOT/scripts/start.sh" --dir "$T_DIR" \
        --infra-env "$INFRA_DIR/infra.env" --http-port "$T_HTTP_PORT" "$@" ||
        fail "scripts/start.sh --dir $T_DIR failed"
    t_load_endpoints
}

# t_restart: start.sh again on the same dir (starts only what is missing).
t_restart() {
    timeout "$T_START_TIMEOUT_S" bash "$T_ROOT/scripts/start.sh" --dir "$T_DIR" ||
        fail "scripts/start.sh --dir $T_DIR (restart) failed"
    t_load_endpoints
}

t_load_endpoints() {
    [ -f "$T_DIR/endpoints.env" ] || fail "start.sh wrote no $T_DIR/endpoints.env"
    # shellcheck disable=SC1091
    . "$T_DIR/endpoints.env"
    if [ -z "$HTTP_URL" ] || [ -z "$ADMIN_SOCKET" ]; then
        fail "endpoints.env lacks HTTP_URL or ADMIN_SOCKET"
    fi
}

# t_pid NAME: the pid in T_DIR/NAME.pid ("" when none).
t_pid() { tr -dc '0-9' <"$T_DIR/$1.pid" 2>/dev/null || true; }

# t_expect_exit PID STATUS: the daemon PID of this test's dir is meant to end
# with STATUS (e.g. 3 after losing the lease), so the teardown's check does not
# count it as a failure.
t_expect_exit() { echo "$1 $2" >>"$T_DIR/expected_exits"; }

# t_kill9 NAME: SIGKILL the daemon of T_DIR/NAME.pid and wait until it is gone.
t_kill9() {
    local pid i
    pid=$(t_pid "$1")
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        fail "$1 is not running (pid '$pid')"
    fi
    t_expect_exit "$pid" 137
    kill -KILL "$pid"
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || { say "killed $1 (pid $pid) with SIGKILL"; return 0; }
        sleep 0.05
    done
    fail "$1 (pid $pid) survived SIGKILL for 5 s"
}

# ---- admin socket --------------------------------------------------------------

# t_ctl ARGS...: stockctl on this test's admin socket; output on stdout, its exit code kept.
t_ctl() { timeout "$T_CMD_TIMEOUT_S" "$T_BIN/stockctl" --socket "$ADMIN_SOCKET" "$@"; }

# t_sku_load SKU ARGS...: `stockctl sku load`, fails the test on error.
t_sku_load() {
    local out
    out=$(t_ctl sku load "$@" 2>&1) || fail "stockctl sku load $* failed: $out"
    say "loaded $1 ($*)"
}

# t_audit SKU: `stockctl audit SKU` must exit 0 (invariants hold).
t_audit() {
    local out rc=0
    out=$(t_ctl audit "$1" 2>&1) || rc=$?
    [ "$rc" -eq 0 ] || fail "stockctl audit $1 exited $rc (invariants broken?): $out"
    say "ok: stockctl audit $1 exits 0"
}

# ---- HTTP -------------------------------------------------------------------------

T_STATUS=""
T_BODY=""

# t_http METHOD PATH [BODY]: sets T_STATUS (000 on transport failure) and T_BODY.
t_http() {
    local method=$1 path=$2 body=${3-} out
    out=$(mktemp)
    if [ $# -ge 3 ]; then
        T_STATUS=$(printf '%s' "$body" | timeout "$T_CMD_TIMEOUT_S" curl -s -o "$out" \
            -w '%{http_code}' --max-time 10 -X "$method" -H 'Content-Type: application/json' \
            --data-binary @- "$HTTP_URL$path") || true
    else
        T_STATUS=$(timeout "$T_CMD_TIMEOUT_S" curl -s -o "$out" -w '%{http_code}' --max-time 10 \
            -X "$method" "$HTTP_URL$path") || true
    fi
    T_STATUS=${T_STATUS:-000}
    T_BODY=$(cat "$out")
    rm -f "$out"
}

# t_http_file METHOD PATH FILE: like t_http with the body read from FILE.
t_http_file() {
    local out
    out=$(mktemp)
    T_STATUS=$(timeout "$T_CMD_TIMEOUT_S" curl -s -o "$out" -w '%{http_code}' --max-time 10 \
        -X "$1" -H 'Content-Type: application/json' --data-binary "@$3" "$HTTP_URL$2") || true
    T_STATUS=${T_STATUS:-000}
    T_BODY=$(cat "$out")
    rm -f "$out"
}

# t_deduct SKU ORDER USER QTY (qty pasted as is, so tests can send 1.5 or "3").
t_deduct() {
    t_http POST /v1/deduct "{\"sku\":\"$1\",\"order_id\":\"$2\",\"user_id\":\"$3\",\"qty\":$4}"
}
t_release() { t_http POST /v1/release "{\"sku\":\"$1\",\"order_id\":\"$2\"}"; }

# t_expect WHAT STATUS [ERROR]: the last answer has STATUS (and "error": ERROR).
t_expect() {
    local what=$1 status=$2 err=${3-} got
    [ "$T_STATUS" = "$status" ] || fail "$what: expected HTTP $status${err:+ $err}, got $T_STATUS: $T_BODY"
    if [ -n "$err" ]; then
        got=$(t_json_get error <<<"$T_BODY")
        [ "$got" = "$err" ] || fail "$what: expected error '$err', got '$got': $T_BODY"
    fi
    say "ok: $what -> $T_STATUS${err:+ $err}"
}

# ---- JSON (python3) ------------------------------------------------------------------

# t_json_get PATH < JSON: the value at a dotted path (a.b.0.c); "" when absent;
# booleans print as true/false, objects as JSON.
t_json_get() {
    "$T_PY" -c '
import json, sys
try:
    v = json.load(sys.stdin)
except ValueError:
    sys.exit(0)
for k in [p for p in sys.argv[1].split(".") if p]:
    if isinstance(v, list) and k.isdigit() and int(k) < len(v):
        v = v[int(k)]
    elif isinstance(v, dict) and k in v:
        v = v[k]
    else:
        sys.exit(0)
if isinstance(v, bool):
    print("true" if v else "false")
elif isinstance(v, (dict, list)):
    print(json.dumps(v))
else:
    print(v)
' "$1"
}

# t_json_sum KEY < JSON: the sum of every number stored under KEY anywhere in
# the document (e.g. "grants" over all partitions of a registry dump).
t_json_sum() {
    "$T_PY" -c '
import json, sys
def walk(v, key):
    if isinstance(v, dict):
        s = 0
        for k, x in v.items():
            if k == key and isinstance(x, (int, float)) and not isinstance(x, bool):
                s += x
            else:
                s += walk(x, key)
        return s
    if isinstance(v, list):
        return sum(walk(x, key) for x in v)
    return 0
print(int(walk(json.load(sys.stdin), sys.argv[1])))
' "$1"
}

# ---- Redis (the truth the daemons' reports are checked against) -----------------------

t_rcli() {
    timeout "$T_CMD_TIMEOUT_S" redis-cli -c -h "${REDIS_SEED%%:*}" -p "${REDIS_SEED##*:}" "$@"
}

# t_redis_sum SKU FIELD: the sum of FIELD of every partition's state hash
# ({s:SKU:P:K}:st, K from the pool's t.P), e.g. ded (net deducted), flips, grants.
t_redis_sum() {
    local sku=$1 field=$2 parts p salt v sum=0
    parts=$(t_rcli HGET "{s:$sku}:pool" parts)
    [[ "$parts" =~ ^[0-9]+$ ]] || fail "Redis has no pool for $sku (parts='$parts')"
    for ((p = 0; p < parts; p++)); do
        salt=$(t_rcli HGET "{s:$sku}:pool" "t.$p")
        v=$(t_rcli HGET "{s:$sku:$p:$salt}:st" "$field")
        [[ "$v" =~ ^-?[0-9]+$ ]] || v=0
        sum=$((sum + v))
    done
    echo "$sum"
}

# ---- Redis nodes (failure tests) --------------------------------------------------------

# t_slot_owner KEY: the port of the master that owns KEY's slot, whether or not
# KEY exists (a master that does not own it answers MOVED).
t_slot_owner() {
    local p
    for p in $REDIS_PORTS; do
        if [ "$(timeout 5 redis-cli -p "$p" ROLE 2>/dev/null | head -1)" = master ] &&
            ! timeout 5 redis-cli -p "$p" GET "$1" | grep -q '^MOVED'; then
            echo "$p"
            return 0
        fi
    done
    fail "no master owns the slot of $1"
}

# t_replica_of PORT: the port of that master's first replica ("" when none).
t_replica_of() { timeout 5 redis-cli -p "$1" ROLE | sed -n 4p; }

# t_replicas_attached PORT: connected_slaves of that master.
t_replicas_attached() {
    timeout 5 redis-cli -p "$1" INFO replication | tr -d '\r' | sed -n 's/^connected_slaves://p'
}

# t_wait_replicas PORT N TIMEOUT_S: waits until the master on PORT has N
# replicas attached (or the bound passes; the caller asserts).
t_wait_replicas() {
    local deadline=$((SECONDS + $3))
    until [ "$(t_replicas_attached "$1")" = "$2" ] || [ "$SECONDS" -ge "$deadline" ]; do
        sleep 0.1
    done
}

# t_deduct_asleep PORT SECONDS SKU ORDER USER QTY: DEBUG SLEEP on the Redis on
# PORT, one deduction while it sleeps (T_STATUS/T_BODY as t_deduct), then
# waits for the sleep to end.
t_deduct_asleep() {
    local sleeper
    timeout $((${2%.*} + 8)) redis-cli -p "$1" DEBUG SLEEP "$2" >/dev/null &
    sleeper=$!
    sleep 0.2
    t_deduct "$3" "$4" "$5" "$6"
    wait "$sleeper" || true
}

# t_redis_pid PORT: the pid of the redis-server on PORT.
t_redis_pid() {
    timeout 5 redis-cli -p "$1" INFO server | tr -d '\r' | sed -n 's/^process_id://p'
}

# t_wait_role PORT ROLE TIMEOUT_S: waits until the Redis on PORT says ROLE
# (master, slave) or the bound passes (the caller asserts).
t_wait_role() {
    local deadline=$((SECONDS + $3))
    until [ "$(timeout 2 redis-cli -p "$1" ROLE 2>/dev/null | head -1)" = "$2" ] ||
        [ "$SECONDS" -ge "$deadline" ]; do
        sleep 0.2
    done
}

# t_wait_cluster_ok PORT TIMEOUT_S: waits until the node on PORT says
# cluster_state:ok; returns 1 when the bound passes.
t_wait_cluster_ok() {
    local deadline=$((SECONDS + $2))
    until timeout 2 redis-cli -p "$1" CLUSTER INFO 2>/dev/null | grep -q 'cluster_state:ok'; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

# ---- a cluster of the test's own (failover tests) -------------------------------------------
#
# A failover is destructive, so a test that kills a master leaves the suite's
# cluster alone and brings up its own (scripts/infra.sh at BASE_PORT+200, with
# a cluster node timeout of 1 s so a failover takes seconds, not the default
# 5 s + election).

T_OWN_INFRA=""
T_FROZEN="" # the pid of a redis-server the test stopped (SIGSTOP): resumed at exit

# t_own_infra: up, down at exit (T_FROZEN resumed, the daemons stopped first),
# and INFRA_DIR / BASE_PORT pointed at it, so every t_* helper and
# t_start_daemons (called after this) use it.
t_own_infra() {
    t_require_infra
    local base=$((BASE_PORT + 200))
    T_OWN_INFRA=$(mktemp -d "/tmp/stock-$T_NAME-infra.XXXXXX")
    say "own infrastructure in $T_OWN_INFRA (base port $base, node timeout 1 s)"
    INFRA_REDIS_NODE_TIMEOUT_MS=1000 STOCK_BIN=$T_BIN timeout 300 bash "$T_ROOT/scripts/infra.sh" \
        up --dir "$T_OWN_INFRA" --base-port "$base" >"$T_OWN_INFRA.log" 2>&1 || {
        local why # read before t_own_infra_down removes the log
        why=$(tail -n 12 "$T_OWN_INFRA.log" 2>&1)
        t_own_infra_down
        fail "infra.sh up failed: $why"
    }
    rm -f "$T_OWN_INFRA.log"
    t_at_exit t_own_infra_down
    INFRA_DIR=$T_OWN_INFRA
    t_require_infra
    BASE_PORT=$base
}

t_own_infra_down() {
    if [ -n "$T_FROZEN" ]; then kill -CONT "$T_FROZEN" 2>/dev/null || true; fi
    if [ -n "$T_DIR" ]; then # the daemons first, then what they talk to
        timeout "$T_STOP_TIMEOUT_S" bash "$T_ROOT/scripts/stop.sh" --dir "$T_DIR" >/dev/null 2>&1 || true
    fi
    timeout 120 bash "$T_ROOT/scripts/infra.sh" down --dir "$T_OWN_INFRA" >/dev/null 2>&1 || true
    rm -rf "$T_OWN_INFRA" "$T_OWN_INFRA.log"
}

# t_part_key SKU P WHICH: partition P's key: st (state), d (stream), o (orders).
t_part_key() { echo "{s:$1:$2:$(t_rcli HGET "{s:$1}:pool" "t.$2")}:$3"; }

# t_redis_pool SKU FIELD: one field of the pool hash (avail, total, ...).
t_redis_pool() { t_rcli HGET "{s:$1}:pool" "$2"; }

# ---- load generator --------------------------------------------------------------------

# t_loadgen ARGS...: stock-loadgen against this test's scheduler, bounded; its
# exit code is returned (0 completed, 1 transport errors > 1%, 2 usage).
t_loadgen() {
    timeout --kill-after=10 600 "$T_BIN/stock-loadgen" --url "$HTTP_URL" "$@"
}

# t_lg FILE PATH: one number from a loadgen --json FILE (e.g. answers.ok, units_ok).
t_lg() { t_json_get "$2" <"$1"; }

# t_lg_other FILE: deduct answers that are neither ok, duplicate nor sold_out.
t_lg_other() {
    "$T_PY" -c '
import json, sys
a = json.load(open(sys.argv[1]))["answers"]
print(sum(v for k, v in a.items() if k not in ("ok", "duplicate", "sold_out")))
' "$1"
}

# t_registry_sku SKU: the registry entry of SKU (JSON) from `stockctl --json registry`.
t_registry_sku() {
    local out
    out=$(t_ctl --json registry) || fail "stockctl --json registry failed: $out"
    "$T_PY" -c '
import json, sys
def find(v, sku):
    if isinstance(v, dict):
        if v.get("sku") == sku or v.get("id") == sku:
            return v
        v = list(v.values())
    if isinstance(v, list):
        for x in v:
            r = find(x, sku)
            if r is not None:
                return r
    return None
r = find(json.load(sys.stdin), sys.argv[1])
if r is None:
    sys.exit(1)
print(json.dumps(r))
' "$1" <<<"$out" || fail "SKU $1 not in the registry: $out"
}

# t_sku_field SKU FIELD: one field of GET /v1/skus/SKU (must answer 200).
t_sku_field() {
    t_http GET "/v1/skus/$1"
    [ "$T_STATUS" = 200 ] || fail "GET /v1/skus/$1: HTTP $T_STATUS: $T_BODY"
    t_json_get "$2" <<<"$T_BODY"
}

# t_post_many PATH BODIES OUT: POSTs every line of file BODIES to PATH over one
# keep-alive connection (one process instead of a curl per request) and writes
# one line per answer to OUT: "STATUS JSON-BODY". Bounded: 10 s per request.
t_post_many() {
    timeout 300 "$T_PY" -c '
import http.client, sys
host, port = sys.argv[1].split("//")[1].split(":")
conn = http.client.HTTPConnection(host, int(port), timeout=10)
with open(sys.argv[3]) as bodies, open(sys.argv[4], "w") as out:
    for line in bodies:
        body = line.rstrip("\n")
        try:
            conn.request("POST", sys.argv[2], body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            status, text = r.status, r.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            status, text = 0, "transport error: %s" % e
        out.write("%d %s\n" % (status, text.replace("\n", " ")))
' "$HTTP_URL" "$1" "$2" "$3" || fail "t_post_many $1 $2 failed"
}

# ---- MySQL and sync (the sync tests: tests/integration/sync_*.sh) -------------------------
#
# MySQL is read with the mariadb client (-N -B: bare tab-separated values) under
# `timeout`, with a short connect timeout: a test that froze MariaDB (SIGSTOP)
# must not hang on it. Redis facts per partition are read with one redis-cli -c
# pipeline per poll (redirect notices filtered out), since a poll loop that
# forked a redis-cli per field would cost more than the sync lag it measures.

T_MYSQL_CONNECT_TIMEOUT_S=5

# t_mysql ARGS...: the mariadb client on the harness's database (-N -B), bounded;
# e.g. t_mysql -e 'select 1'. Its exit code is kept.
t_mysql() {
    local conn=()
    if [ -n "${MYSQL_HOST:-}" ]; then
        conn=(--protocol=tcp -h "$MYSQL_HOST" -P "${MYSQL_PORT:?MYSQL_PORT not set}")
    else
        conn=(-S "${MYSQL_SOCKET:?neither MYSQL_HOST nor MYSQL_SOCKET set}")
    fi
    timeout "$T_CMD_TIMEOUT_S" mariadb "${conn[@]}" -u "${MYSQL_USER:-root}" \
        --connect-timeout="$T_MYSQL_CONNECT_TIMEOUT_S" -N -B "${MYSQL_DB:-stock}" "$@"
}

# t_mysql_q SQL: the result of one query (tab-separated rows); fails the test on error.
t_mysql_q() {
    local out
    out=$(t_mysql -e "$1" 2>&1) || fail "mariadb -e \"$1\" failed: $out"
    printf '%s\n' "$out"
}

# t_sql_str S: S as a quoted SQL string (ids here never hold quotes; checked).
t_sql_str() {
    case "$1" in *[\'\\]*) fail "t_sql_str: quote or backslash in '$1'" ;; esac
    printf "'%s'" "$1"
}

# t_mysql_sku_sums SKU: "SUM(qty) COUNT(*) COUNT(DISTINCT partition_id, seq)" of
# the SKU's rows in deduction_detail (0 0 0 when none).
t_mysql_sku_sums() {
    t_mysql_q "select coalesce(sum(qty),0), count(*), count(distinct partition_id, seq)
               from deduction_detail where sku_id=$(t_sql_str "$1")" | tr '\t' ' '
}

# t_mysql_parts SKU: one line per stock_partition row of the SKU:
# "partition synced_seq deducted detail_rows".
t_mysql_parts() {
    t_mysql_q "select partition_id, synced_seq, deducted, detail_rows from stock_partition
               where sku_id=$(t_sql_str "$1") order by partition_id" | tr '\t' ' '
}

# t_mysql_detail_parts SKU: one line per partition that has detail rows:
# "partition count(*) sum(qty) max(seq)".
t_mysql_detail_parts() {
    t_mysql_q "select partition_id, count(*), sum(qty), max(seq) from deduction_detail
               where sku_id=$(t_sql_str "$1") group by partition_id order by partition_id" |
        tr '\t' ' '
}

# t_redis_parts SKU: one line per partition, read in one pipeline:
# "partition seq ded ack stream_len" (a missing field reads 0).
t_redis_parts() {
    local sku=$1 parts p salts=() cmds="" out
    parts=$(t_rcli HGET "{s:$sku}:pool" parts)
    [[ "$parts" =~ ^[0-9]+$ ]] || fail "Redis has no pool for $sku (parts='$parts')"
    for ((p = 0; p < parts; p++)); do cmds+=" t.$p"; done
    # shellcheck disable=SC2086 # the field names are meant to split
    mapfile -t salts < <(t_rcli HMGET "{s:$sku}:pool" $cmds)
    [ "${#salts[@]}" -eq "$parts" ] || fail "Redis pool of $sku: $parts parts, ${#salts[@]} salts"
    cmds=""
    for ((p = 0; p < parts; p++)); do
        cmds+="HMGET {s:$sku:$p:${salts[$p]}}:st seq ded ack"$'\n'
        cmds+="XLEN {s:$sku:$p:${salts[$p]}}:d"$'\n'
    done
    out=$(printf '%s' "$cmds" | t_rcli | grep -v '^-> Redirected') ||
        fail "redis-cli pipeline for $sku failed"
    "$T_PY" -c '
import sys
parts, lines = int(sys.argv[1]), sys.stdin.read().split("\n")
def num(s):
    s = s.strip()
    return int(s) if s.lstrip("-").isdigit() else 0
if len(lines) < parts * 4:
    sys.exit("short redis-cli output: %r" % lines)
for p in range(parts):
    seq, ded, ack, xlen = (num(x) for x in lines[p * 4:p * 4 + 4])
    print(p, seq, ded, ack, xlen)
' "$parts" <<<"$out" || fail "cannot read the partitions of $sku from Redis"
}

# t_now_ms: wall clock, ms.
t_now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }

# t_sync_state SKU: compares Redis and MySQL for SKU once. Prints one line
# "synced=0|1 redis_ded=D mysql_sum=S rows=R distinct=U" followed by the
# partitions that differ ("p<P> redis_seq=.. mysql_synced=.. ..."). Synced
# means: MySQL's SUM(qty) of the SKU's details == Redis's net deducted, and
# every partition's synced_seq == its Redis seq (a partition without a row
# counts as synced_seq 0).
t_sync_state() {
    local sku=$1 r m d
    r=$(t_redis_parts "$sku")
    m=$(t_mysql_parts "$sku")
    d=$(t_mysql_sku_sums "$sku")
    "$T_PY" -c '
import sys
red, mys, sums = sys.argv[1], sys.argv[2], sys.argv[3].split()
rp = {int(l.split()[0]): [int(x) for x in l.split()[1:]] for l in red.splitlines() if l.strip()}
mp = {int(l.split()[0]): [int(x) for x in l.split()[1:]] for l in mys.splitlines() if l.strip()}
ded = sum(v[1] for v in rp.values())
bad = []
for p, (seq, pded, ack, xlen) in sorted(rp.items()):
    synced, mded, rows = mp.get(p, [0, 0, 0])
    if synced != seq:
        bad.append("p%d redis_seq=%d redis_ded=%d ack=%d stream=%d mysql_synced=%d mysql_ded=%d rows=%d"
                   % (p, seq, pded, ack, xlen, synced, mded, rows))
ok = not bad and int(sums[0]) == ded
print("synced=%d redis_ded=%d mysql_sum=%s rows=%s distinct=%s" % (ok, ded, sums[0], sums[1], sums[2]))
for b in bad:
    print(b)
' "$r" "$m" "$d"
}

T_SYNC_WAIT_MS=""   # set by t_wait_synced: how long it waited

# t_wait_synced SKU TIMEOUT_S [POLL_S]: polls (every POLL_S, default 0.1 s) until
# t_sync_state says synced; sets T_SYNC_WAIT_MS (from the call to the first
# synced poll). Fails the test with both sides' numbers after TIMEOUT_S. Polls
# that cannot reach MySQL (stopped, restarting) count as not synced.
t_wait_synced() {
    local sku=$1 timeout_s=$2 poll_s=${3:-0.1} t0 deadline st=""
    t0=$(t_now_ms)
    deadline=$((t0 + timeout_s * 1000))
    while :; do
        st=$( (t_sync_state "$sku") 2>&1) || st="(poll failed) $st"
        if [[ "$st" == synced=1* ]]; then
            T_SYNC_WAIT_MS=$(($(t_now_ms) - t0))
            say "synced after ${T_SYNC_WAIT_MS} ms: ${st%%$'\n'*}"
            return 0
        fi
        [ "$(t_now_ms)" -lt "$deadline" ] || break
        sleep "$poll_s"
    done
    fail "MySQL did not converge with Redis for $sku within ${timeout_s}s: $st"
}

# t_wait_acked SKU TIMEOUT_S: polls until every partition's stream is trimmed
# (XLEN 0) and its `ack` field equals its seq; fails after TIMEOUT_S.
t_wait_acked() {
    local sku=$1 timeout_s=$2 deadline r bad
    deadline=$(($(t_now_ms) + timeout_s * 1000))
    while :; do
        r=$(t_redis_parts "$sku")
        bad=$(awk '$2 != $4 || $5 != 0' <<<"$r")
        if [ -z "$bad" ]; then
            say "ok: every stream of $sku trimmed and acked"
            return 0
        fi
        [ "$(t_now_ms)" -lt "$deadline" ] || break
        sleep 0.1
    done
    fail "streams of $sku not trimmed/acked within ${timeout_s}s (partition seq ded ack xlen): $bad"
}

# t_assert_synced_exact SKU: the exactness checks once sync has drained:
# no (partition, seq) twice, rows per partition == its Redis seq == synced_seq,
# SUM(qty) per partition == its Redis ded == stock_partition.deducted, and
# detail_rows == rows. Prints the SKU's totals.
t_assert_synced_exact() {
    local sku=$1 sums r m d bad
    sums=$(t_mysql_sku_sums "$sku")
    read -r T_MYSQL_SUM T_MYSQL_ROWS T_MYSQL_DISTINCT <<<"$sums"
    assert_eq "$sku: detail rows without a duplicate (partition, seq)" "$T_MYSQL_ROWS" \
        "$T_MYSQL_DISTINCT"
    r=$(t_redis_parts "$sku")
    m=$(t_mysql_parts "$sku")
    d=$(t_mysql_detail_parts "$sku")
    bad=$("$T_PY" -c '
import sys
def table(s):
    return {int(l.split()[0]): [int(x) for x in l.split()[1:]] for l in s.splitlines() if l.strip()}
rp, mp, dp = table(sys.argv[1]), table(sys.argv[2]), table(sys.argv[3])
for p, (seq, ded, ack, xlen) in sorted(rp.items()):
    synced, mded, mrows = mp.get(p, [0, 0, 0])
    rows, qsum, maxseq = dp.get(p, [0, 0, 0])
    if not (rows == seq == synced == mrows and maxseq == seq and qsum == ded == mded):
        print("p%d: redis seq=%d ded=%d | stock_partition synced_seq=%d deducted=%d detail_rows=%d"
              " | deduction_detail rows=%d sum=%d max_seq=%d" % (p, seq, ded, synced, mded, mrows,
                                                               rows, qsum, maxseq))
for p in sorted(set(dp) - set(rp)):
    print("p%d: detail rows for a partition Redis does not have" % p)
' "$r" "$m" "$d")
    [ -z "$bad" ] || fail "$sku: MySQL and Redis differ per partition: $bad"
    say "ok: $sku: per partition, detail rows == seq == synced_seq and SUM(qty) == ded" \
        "(rows $T_MYSQL_ROWS, sum $T_MYSQL_SUM)"
}

# t_registry_pending SKU: the sum of details_pending over the SKU's partitions
# in `stockctl --json registry` ("" when the registry has no such field).
t_registry_pending() {
    local e
    e=$(t_registry_sku "$1")
    if ! grep -q '"details_pending"' <<<"$e"; then
        echo ""
        return 0
    fi
    t_json_sum details_pending <<<"$e"
}

# ---- exit hooks --------------------------------------------------------------------------

T_EXIT_HOOKS=()
T_EXIT_RC=0

# t_at_exit CMD: runs the string CMD (eval) when the test exits, before
# t_cleanup stops the daemons; T_EXIT_RC holds the exit status. Call it after
# t_start_daemons (which sets the EXIT trap this one replaces).
t_at_exit() {
    T_EXIT_HOOKS+=("$1")
    trap t_run_exit_hooks EXIT
}

t_run_exit_hooks() {
    T_EXIT_RC=$?
    local h
    trap - EXIT
    set +e
    for h in "${T_EXIT_HOOKS[@]}"; do
        eval "$h"
    done
    if [ -n "$T_DIR" ]; then
        (exit "$T_EXIT_RC")
        t_cleanup # reads $?, stops the daemons, exits with it
    fi
    exit "$T_EXIT_RC"
}

# t_tail_syncd_logs: on a failed exit, the last lines of the sync workers' logs
# (t_cleanup shows the scheduler's and the nodes').
t_tail_syncd_logs() {
    [ "$T_EXIT_RC" -ne 0 ] && [ -n "$T_DIR" ] || return 0
    local f
    for f in "$T_DIR"/syncd-*.log; do
        [ -f "$f" ] || continue
        printf '[%s] --- last lines of %s\n' "$T_NAME" "$f" >&2
        tail -n 12 "$f" >&2
    done
}

# t_node_summaries: the nodes' periodic shipping summary lines (ship_batches=...).
t_node_summaries() { cat "$T_DIR"/node-*.log 2>/dev/null | grep 'ship_batches=' || true; }

# t_wait_log_line FILE... -- PATTERN TIMEOUT_S: polls until a line of the
# FILEs matches the extended regex PATTERN; prints the matches. Returns 1 on
# timeout.
t_wait_log_line() {
    local files=() pat to deadline out
    while [ $# -gt 0 ] && [ "$1" != -- ]; do files+=("$1"); shift; done
    shift
    pat=$1
    to=$2
    deadline=$(($(t_now_ms) + to * 1000))
    while :; do
        out=$(cat "${files[@]}" 2>/dev/null | grep -E "$pat" || true)
        if [ -n "$out" ]; then
            printf '%s\n' "$out"
            return 0
        fi
        [ "$(t_now_ms)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

# t_conf_value PROGRAM INI KEY: the effective value of KEY (section.key) in the
# shipped conf/INI, as PROGRAM -t -v prints it (the value the daemons run with,
# since start.sh overrides only paths, ports and ids).
t_conf_value() {
    local v
    v=$(timeout "$T_CMD_TIMEOUT_S" "$T_BIN/$1" -t -v -c "$T_ROOT/conf/$2" 2>/dev/null |
        sed -n "s/^$3 = //p")
    [ -n "$v" ] || fail "$1 -t -v -c conf/$2 prints no $3"
    echo "$v"
}

# t_audit_mysql_numbers < AUDIT-JSON: "SUM(qty) COUNT(*)" of the SKU's detail rows
# as `stockctl --json audit` prints them (mysql_deducted, mysql_detail_rows);
# returns 1 when the audit did not verify MySQL (mysql_verified not true).
t_audit_mysql_numbers() {
    "$T_PY" -c '
import json, sys
j = json.load(sys.stdin)
if j.get("mysql_verified") is not True or "mysql_deducted" not in j:
    sys.exit(1)
print(j["mysql_deducted"], j["mysql_detail_rows"])
'
}

# t_audit_check NAME < AUDIT-JSON: "STATE<TAB>DETAIL" of the check NAME of a
# `stockctl --json audit` reply (its "checks": name, label, state, detail);
# "" when the reply has no such check.
t_audit_check() {
    "$T_PY" -c '
import json, sys
try:
    checks = json.load(sys.stdin).get("checks")
except (ValueError, AttributeError):
    sys.exit(0)
if isinstance(checks, dict):
    checks = [dict(v, name=k) for k, v in checks.items() if isinstance(v, dict)]
for c in checks if isinstance(checks, list) else []:
    if isinstance(c, dict) and c.get("name") == sys.argv[1]:
        print("%s\t%s" % (c.get("state", ""), c.get("detail", "")))
        break
' "$1"
}

# t_stop_daemons: scripts/stop.sh on this test's dir now, so that each daemon
# logs its final counters (the EXIT trap's stop then finds nothing to stop).
t_stop_daemons() {
    timeout "$T_STOP_TIMEOUT_S" bash "$T_ROOT/scripts/stop.sh" --dir "$T_DIR" >/dev/null ||
        fail "scripts/stop.sh --dir $T_DIR failed"
}

# t_ship_final: the nodes' final shipping counters (after t_stop_daemons).
t_ship_final() { cat "$T_DIR"/node-*.log 2>/dev/null | grep 'stats final ship_batches=' || true; }
