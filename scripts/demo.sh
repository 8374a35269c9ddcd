#!/usr/bin/env bash
# demo.sh -- `make demo`: one whole flash sale, end to end, with its proof.
#
#   demo.sh [--small] [--keep] [--base-port N]
#
# What it does (the Makefile target has already run scripts/deps.sh and built):
#   1. picks a free port range (28000, 28100, ... checked with `ss`) and brings
#      up, in a scratch directory, a Redis Cluster (3 masters + 3 replicas),
#      MariaDB, a sync worker, two partition nodes and the scheduler
#      (scripts/start.sh --all);
#   2. creates the catalog rows of sql/demo.sql in MariaDB and loads each SKU
#      with `stockctl sku load SKU` (the scheduler reads the stored row through
#      the sync worker);
#   3. sells them all at once: one stock-loadgen per SKU, in parallel, orders
#      of 1..5 units, demand about 1.3x supply, each run with --verify (after
#      its sale it waits until MySQL holds every deduction, runs the audit and
#      checks the units it saw answered ok against Redis and MySQL);
#   4. runs `stockctl audit` per SKU, stops the daemons (their final counters
#      give the sync lag) and the infrastructure, and prints a report: per SKU
#      sold / total / left, sold-out answers, throughput, latency, how long
#      MySQL took to catch up, and whether the invariants held.
# Everything it started is stopped in an EXIT trap, also on failure or ^C,
# by pid files (scripts/stop.sh --all), never by process name. Exit 0 only when
# every check held.
#
# --small (make demo SMALL=1): 1k / 10k / 100k units instead of 10k / 100k /
# 1M, for CI. --keep: leave the scratch directory (logs, JSON) after success
# too (it is always kept after a failure). --base-port N: use that port range.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$SCRIPT_DIR")
BIN=${STOCK_BIN:-$ROOT/bin}
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
export STOCK_BIN=$BIN

DEMAND_FACTOR_PCT=130   # units asked for / units for sale
QTY="1-5"               # units per order (mean 3)
QTY_MEAN_X10=30
NODES=2
WORKERS=1
START_TIMEOUT_S=300     # start.sh --all (infra + daemons)
STOP_TIMEOUT_S=120
LOADGEN_TIMEOUT_S=600   # the whole sale of one SKU (loadgen --timeout)
DRAIN_TIMEOUT_S=120     # loadgen --verify: MySQL catching up
CMD_TIMEOUT_S=60        # one stockctl / mariadb call
PROGRESS_EVERY_S=5
BASE_PORTS="28000 28100 28200 28300 28400 28500 28600 28700 28800 28900 29000 29100"

SMALL=0
KEEP=0
BASE_PORT=""
DIR=""
T0=$SECONDS
LG_PIDS=()
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3 || echo python3)

say()  { printf 'demo [%4ss] %s\n' "$((SECONDS - T0))" "$*"; }
die()  { printf 'demo [%4ss] FAILED: %s\n' "$((SECONDS - T0))" "$*" >&2; exit 1; }

usage() {
    cat <<EOF
usage: $(basename "$0") [--small] [--keep] [--base-port N]

One flash sale end to end: servers up in a scratch directory, three SKUs
loaded from sql/demo.sql, a parallel sale with demand above supply, every
answer verified against Redis and MySQL, a report, everything stopped.
  --small        1k / 10k / 100k units (default 10k / 100k / 1M)
  --keep         keep the scratch directory after success too
  --base-port N  ports N..N+99 (default: the first free of 28000, 28100, ...)
EOF
}

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --small) SMALL=1; shift ;;
            --keep) KEEP=1; shift ;;
            --base-port) [ $# -ge 2 ] || { usage >&2; exit 2; }; BASE_PORT=$2; shift 2 ;;
            -h|--help) usage; exit 0 ;;
            *) printf 'demo: unknown argument: %s\n' "$1" >&2; usage >&2; exit 2 ;;
        esac
    done
    if [ -n "$BASE_PORT" ] && ! [[ "$BASE_PORT" =~ ^[0-9]+$ && "$BASE_PORT" -ge 1024 &&
        "$BASE_PORT" -le 65400 ]]; then
        printf 'demo: --base-port must be an integer in 1024..65400\n' >&2
        exit 2
    fi
}

# ---- setup --------------------------------------------------------------------

check_tools() {
    local t b
    for t in mariadb ss curl timeout "$PY"; do
        command -v "$t" >/dev/null || die "$t not found (run scripts/deps.sh as root)"
    done
    for b in stock-scheduler stock-node stock-syncd stockctl stock-loadgen; do
        [ -x "$BIN/$b" ] || die "$BIN/$b not built (run make)"
    done
    [ -r "$ROOT/sql/demo.sql" ] || die "$ROOT/sql/demo.sql not found"
}

# True when no TCP port in N..N+99 is listening (infra.sh uses N..N+20, the
# scheduler N+80).
range_free() {
    local base=$1
    ! ss -Hltn 2>/dev/null | awk -v lo="$base" -v hi="$((base + 99))" '
        { n = split($4, a, ":"); p = a[n] + 0; if (p >= lo && p <= hi) found = 1 }
        END { exit found ? 0 : 1 }'
}

pick_base_port() {
    local b
    if [ -n "$BASE_PORT" ]; then
        range_free "$BASE_PORT" || die "ports $BASE_PORT..$((BASE_PORT + 99)) are not all free"
        return 0
    fi
    for b in $BASE_PORTS; do
        if range_free "$b"; then BASE_PORT=$b; return 0; fi
    done
    die "no free port range among $BASE_PORTS (use --base-port N)"
}

# The SKUs of this demo: "id total connections seed" per line.
skus() {
    if [ "$SMALL" -eq 1 ]; then
        printf '%s\n' "demo-1k 1000 16 1" "demo-10k 10000 32 2" "demo-100k 100000 64 3"
    else
        printf '%s\n' "demo-10k 10000 16 1" "demo-100k 100000 32 2" "demo-1m 1000000 64 3"
    fi
}

# Orders that ask for DEMAND_FACTOR_PCT of the units on average: total * 1.3 / 3.
requests_for() { echo $((($1 * DEMAND_FACTOR_PCT * 10 / 100 + QTY_MEAN_X10 - 1) / QTY_MEAN_X10)); }

# ---- teardown (EXIT trap) ------------------------------------------------------

FINISHED=0
cleanup() {
    local rc=$? pid
    trap - EXIT
    set +e
    # the loadgens' `timeout` processes: they pass SIGTERM on to the loadgens
    for pid in "${LG_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null; fi
    done
    for pid in "${LG_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    if [ -n "$DIR" ] && [ -d "$DIR" ]; then
        if [ "$FINISHED" -ne 1 ]; then say "stopping everything (scripts/stop.sh --all)"; fi
        timeout "$STOP_TIMEOUT_S" bash "$SCRIPT_DIR/stop.sh" --dir "$DIR" --all >>"$DIR/stop.log" 2>&1 ||
            printf 'demo: scripts/stop.sh --dir %s --all failed; see %s/stop.log\n' "$DIR" "$DIR" >&2
        if [ "$rc" -ne 0 ]; then
            printf 'demo: logs and JSON kept in %s\n' "$DIR" >&2
        elif [ "$KEEP" -eq 1 ]; then
            say "scratch directory kept: $DIR"
        else
            rm -rf "$DIR"
        fi
    fi
    exit "$rc"
}

# ---- steps ---------------------------------------------------------------------

start_servers() {
    say "starting Redis Cluster (3 masters, 3 replicas), MariaDB, $WORKERS sync worker," \
        "$NODES partition nodes, scheduler in $DIR (ports $BASE_PORT..$((BASE_PORT + 99)))"
    if ! timeout "$START_TIMEOUT_S" bash "$SCRIPT_DIR/start.sh" --dir "$DIR" --all \
        --base-port "$BASE_PORT" --nodes "$NODES" --workers "$WORKERS" >"$DIR/start.log" 2>&1; then
        tail -n 25 "$DIR/start.log" >&2
        die "scripts/start.sh --all failed (log $DIR/start.log)"
    fi
    # shellcheck disable=SC1091
    . "$DIR/endpoints.env"
    say "servers up: HTTP $HTTP_URL, admin socket $ADMIN_SOCKET"
}

sql() {
    timeout "$CMD_TIMEOUT_S" mariadb --protocol=tcp -h "${MYSQL_HOST:-127.0.0.1}" \
        -P "${MYSQL_PORT:?}" -u "${MYSQL_USER:-root}" --connect-timeout=5 "$@"
}

ctl() { timeout "$CMD_TIMEOUT_S" "$BIN/stockctl" --socket "$ADMIN_SOCKET" "$@"; }

load_skus() {
    local id total conns seed out
    say "catalog: applying sql/demo.sql to MariaDB (INSERT IGNORE into table sku)"
    sql "${MYSQL_DB:-stock}" <"$ROOT/sql/demo.sql" || die "applying sql/demo.sql failed"
    while read -r id total conns seed; do
        out=$(ctl sku load "$id" 2>&1) || die "stockctl sku load $id failed: $out"
        say "loaded: $out"
    done < <(skus)
}

# One "SKU: elapsed ok sold_out rate" line from the last progress line of each loadgen.
progress_line() {
    local id line parts=()
    while read -r id _; do
        if [ -f "$DIR/lg-$id.exit" ]; then
            parts+=("$id done")
            continue
        fi
        line=$(grep -E '^ *[0-9.]+s sent' "$DIR/lg-$id.err" 2>/dev/null | tail -n 1 || true)
        if [ -z "$line" ]; then
            parts+=("$id starting")
        else
            parts+=("$(awk -v id="$id" '{ printf "%s %s ok %s sold_out %s %s", id, $1, $5, $7, $11 }' <<<"$line")")
        fi
    done < <(skus)
    local IFS='|'
    say "sale: ${parts[*]}"
}

# Starts one stock-loadgen per SKU in the background (under `timeout`, whose
# pid is kept: a SIGTERM to it reaches the loadgen), shows their progress, and
# writes each exit code to DIR/lg-SKU.exit.
run_sale() {
    local id total conns seed n pid i alive
    local -a ids=()
    say "flash sale: every SKU at once, orders of $QTY units, demand ~${DEMAND_FACTOR_PCT}% of supply," \
        "each stock-loadgen with --verify"
    while read -r id total conns seed; do
        n=$(requests_for "$total")
        say "  $id: $total units, $n orders on $conns connections"
        timeout --kill-after=10 $((LOADGEN_TIMEOUT_S + DRAIN_TIMEOUT_S + 60)) \
            "$BIN/stock-loadgen" --url "$HTTP_URL" --skus "$id" --requests "$n" \
            --connections "$conns" --qty "$QTY" --seed "$seed" --timeout "$LOADGEN_TIMEOUT_S" \
            --json "$DIR/lg-$id.json" --verify --admin-socket "$ADMIN_SOCKET" \
            --drain-timeout "$DRAIN_TIMEOUT_S" >"$DIR/lg-$id.out" 2>"$DIR/lg-$id.err" &
        LG_PIDS+=("$!")
        ids+=("$id")
    done < <(skus)
    local t_sale=$SECONDS next=$((SECONDS + PROGRESS_EVERY_S)) rc
    while :; do
        alive=0
        for i in "${!LG_PIDS[@]}"; do
            pid=${LG_PIDS[$i]}
            [ -f "$DIR/lg-${ids[$i]}.exit" ] && continue
            if kill -0 "$pid" 2>/dev/null; then
                alive=1
            else
                rc=0
                wait "$pid" || rc=$?   # bash keeps the status of a finished child
                echo "$rc" >"$DIR/lg-${ids[$i]}.exit"
            fi
        done
        [ "$alive" -eq 1 ] || break
        if [ "$SECONDS" -ge "$next" ]; then
            progress_line
            next=$((SECONDS + PROGRESS_EVERY_S))
        fi
        sleep 0.5
    done
    LG_PIDS=()
    SALE_S=$((SECONDS - t_sale))
    say "sale and verification done in ${SALE_S}s"
}

audit_skus() {
    local id rc
    while read -r id _; do
        rc=0
        ctl audit "$id" >"$DIR/audit-$id.txt" 2>&1 || rc=$?
        echo "$rc" >"$DIR/audit-$id.exit"
        if [ "$rc" -eq 0 ]; then
            say "stockctl audit $id: exit 0 (every invariant holds)"
        else
            say "stockctl audit $id: exit $rc"
            cat "$DIR/audit-$id.txt"
        fi
    done < <(skus)
}

# Stops the daemons first (each node logs its final shipping counters), then
# the infrastructure.
stop_servers() {
    say "stopping the daemons, then Redis and MariaDB (scripts/stop.sh --all)"
    timeout "$STOP_TIMEOUT_S" bash "$SCRIPT_DIR/stop.sh" --dir "$DIR" --all >>"$DIR/stop.log" 2>&1 ||
        die "scripts/stop.sh --dir $DIR --all failed (log $DIR/stop.log)"
    grep -h 'stats final ship_batches=' "$DIR"/node-*.log >"$DIR/ship-final.txt" 2>/dev/null || true
}

# The report; exit 1 when a check failed.
report() {
    local args=() id total
    while read -r id total _; do
        args+=("$id" "$total" "$(cat "$DIR/lg-$id.exit" 2>/dev/null || echo 99)"
            "$(cat "$DIR/audit-$id.exit" 2>/dev/null || echo 99)")
    done < <(skus)
    "$PY" - "$DIR" "$SALE_S" "$((SECONDS - T0))" "${args[@]}" <<'PY'
import json, os, re, sys

d, sale_s, wall_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rest = sys.argv[4:]
rows, failures, all_answers, all_ok_units = [], [], 0, 0
for i in range(0, len(rest), 4):
    sku, total, lg_rc, audit_rc = rest[i], int(rest[i + 1]), int(rest[i + 2]), int(rest[i + 3])
    try:
        j = json.load(open(os.path.join(d, "lg-%s.json" % sku)))
    except (OSError, ValueError) as e:
        failures.append("%s: no loadgen JSON (%s); loadgen exit %d" % (sku, e, lg_rc))
        continue
    v = (j.get("verify") or {}).get("skus", [{}])[0]
    ps = j.get("per_sku", [{}])[0]
    ans = j["answers"]
    other = sum(n for k, n in ans.items() if k not in ("ok", "duplicate", "sold_out"))
    sold = v.get("redis_deducted")
    left = v.get("left")
    late_min = ps.get("sold_out_after_last_ok_min_qty", 0)
    if left is None:
        stranded = "?"
        failures.append("%s: the verification has no audit: %s" % (sku, v.get("message", "")))
    elif left == 0:
        stranded = "ok (0 left)"
    elif late_min and left < late_min:
        stranded = "ok (%d left < smallest late refusal %d)" % (left, late_min)
    else:
        stranded = "STRANDED"
        failures.append("%s: %d units left, smallest refusal after the last sale: %s"
                        % (sku, left, late_min or "none"))
    if lg_rc != 0:
        failures.append("%s: stock-loadgen --verify exit %d: %s"
                        % (sku, lg_rc, v.get("message") or "see lg-%s.err" % sku))
    if audit_rc != 0:
        failures.append("%s: stockctl audit exit %d (see audit-%s.txt)" % (sku, audit_rc, sku))
    if sold is not None and sold != total - left:
        failures.append("%s: sold %s + left %s != total %d" % (sku, sold, left, total))
    all_answers += j["answered"]
    all_ok_units += ans["ok"]
    el = j["elapsed_s"] or 1e-9
    drain = v.get("drain_ms", -1)
    audit = {0: "held (exit 0)", 1: "BROKEN (exit 1)"}.get(
        audit_rc, "not checked (exit %d: scheduler unreachable?)" % audit_rc)
    rows.append(dict(sku=sku, total=total, sold=sold, left=left, sold_out=ans["sold_out"],
                     other=other, oks=ans["ok"], oks_s=ans["ok"] / el, ans_s=j["throughput_per_s"],
                     p50=j["latency_ms"]["p50"], p99=j["latency_ms"]["p99"],
                     drain=("%d ms after the sale" % drain) if drain >= 0 else "NOT SEEN",
                     exact=v.get("exact"), verify=("ok" if v.get("ok") else "FAILED"),
                     audit=audit, stranded=stranded, el=el))

lag_p99 = lag_max = None
try:
    for line in open(os.path.join(d, "ship-final.txt")):
        m99 = re.search(r"lag_p99_ms=(\d+)", line)
        mmax = re.search(r"lag_max_ms=(\d+)", line)
        if m99:
            lag_p99 = max(lag_p99 or 0, int(m99.group(1)))
        if mmax:
            lag_max = max(lag_max or 0, int(mmax.group(1)))
except OSError:
    pass

print()
print("=" * 100)
print("flash sale report")
print("=" * 100)
fmt = "%-10s %9s %9s %6s %9s %8s %9s %9s %8s %8s"
print(fmt % ("sku", "sold", "total", "left", "sold_out", "other", "oks/s", "answers/s",
             "p50 ms", "p99 ms"))
for r in rows:
    print(fmt % (r["sku"], "?" if r["sold"] is None else r["sold"], r["total"],
                 "?" if r["left"] is None else r["left"], r["sold_out"], r["other"],
                 "%.0f" % r["oks_s"], "%.0f" % r["ans_s"], "%.2f" % r["p50"], "%.2f" % r["p99"]))
print()
for r in rows:
    print("%-10s no stranded stock: %s; MySQL held every deduction: %s;"
          % (r["sku"], r["stranded"], r["drain"]))
    print("%-10s loadgen --verify: %s (%s); invariants (stockctl audit): %s"
          % ("", r["verify"], "exact: units answered ok == Redis == MySQL" if r["exact"]
             else "range", r["audit"]))
print()
# The loadgens start together: the sale lasts as long as the longest one.
sale_el = max([r["el"] for r in rows] or [1e-9])
print("all SKUs   %d units sold in %d deductions; %d answers in a %.1f s sale: %.0f deductions/s, "
      "%.0f answers/s" % (sum(r["sold"] or 0 for r in rows), all_ok_units, all_answers, sale_el,
                          all_ok_units / sale_el, all_answers / sale_el))
print("           (then %.1f s until MySQL held every deduction and the audits were done)"
      % max(sale_s - sale_el, 0))
if lag_p99 is not None:
    print("sync lag   detail batches acked by MySQL: p99 %d ms, max %d ms after the deduction "
          "(partition nodes' ship stats)" % (lag_p99, lag_max or 0))
else:
    print("sync lag   (no final ship stats line in the node logs)")
print("wall time  %d s for the demo script (servers up, sale, verification, stop)" % wall_s)
print("=" * 100)
if failures:
    print("FAILED:")
    for f in failures:
        print("  " + f)
    sys.exit(1)
print("every check held: no oversell, no stranded stock, Redis == MySQL == the answers")
PY
}

main() {
    parse_args "$@"
    check_tools
    pick_base_port
    DIR=$(mktemp -d /tmp/stock-demo-XXXXXX)
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    say "make demo$([ "$SMALL" -eq 1 ] && echo ' (small)'): a flash sale of" \
        "$(skus | awk '{ printf "%s%s", (NR > 1 ? ", " : ""), $1 }')"
    start_servers
    load_skus
    run_sale
    audit_skus
    stop_servers
    FINISHED=1
    report
}

SALE_S=0
main "$@"
