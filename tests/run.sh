#!/usr/bin/env bash
# run.sh -- the test harness behind `make test` and `make asan`.
#
# Runs, in order: every unit test binary (cmocka), the configuration checks of
# the shipped conf/ files, then brings up a real Redis Cluster and MariaDB with
# scripts/infra.sh in a scratch directory on a free port range, runs every
# integration test against them, and brings them down again in a trap (also on
# failure or interrupt). Every test process runs under `timeout`. The last line
# is the summary the CI reads: "N passed, N failed".
#
# Environment: BIN (default bin) is where the binaries are; TEST_BASE_PORT
# forces the port range; KEEP_INFRA=1 leaves the scratch dir for a post-mortem.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-bin}
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
LOGDIR=$(mktemp -d /tmp/stock-test-logs.XXXXXX)
UNIT_TIMEOUT_S=120
INTEG_TIMEOUT_S=600

passed=0
failed=0
failures=()

note_fail() { failed=$((failed + 1)); failures+=("$1"); echo "FAIL: $1"; }
note_pass() { passed=$((passed + 1)); }

# run_cmocka NAME BINARY: runs one cmocka binary, adds its tests to the counts.
run_cmocka() {
    local name=$1 bin=$2 log="$LOGDIR/${1//\//_}.log" rc
    timeout --kill-after=10 "$3" "$bin" >"$log" 2>&1
    rc=$?
    local ok run
    ok=$(grep -c '^\[       OK \]' "$log")
    run=$(sed -n 's/^\[==========\] \([0-9][0-9]*\) test(s) run\./\1/p' "$log" | tail -1)
    passed=$((passed + ok))
    if [ -z "$run" ]; then
        note_fail "$name: did not finish (exit $rc); log $log"
        tail -20 "$log"
    elif [ "$run" -gt "$ok" ]; then
        failed=$((failed + run - ok))
        failures+=("$name: $((run - ok)) failed; log $log")
        echo "FAIL: $name"
        grep -E '^\[  (FAILED|ERROR) *\]|Failure|error:|ERROR' "$log" | head -20
    elif [ "$rc" -ne 0 ]; then
        note_fail "$name: tests passed but exit $rc (sanitizer?); log $log"
        tail -20 "$log"
    fi
    echo "  $name: $ok/${run:-?} passed"
}

# check NAME CMD...: a shell-level test, one count.
check() {
    local name=$1
    shift
    if "$@" >"$LOGDIR/check.log" 2>&1; then
        note_pass
        echo "  $name: ok"
    else
        note_fail "$name"
        tail -5 "$LOGDIR/check.log"
    fi
}

# ---- unit tests -------------------------------------------------------------
echo "== unit tests ($BIN)"
for t in "$BIN"/tests/unit/test_*; do
    [ -x "$t" ] || continue
    run_cmocka "unit/$(basename "$t")" "$t" "$UNIT_TIMEOUT_S"
done

# ---- configuration checks ---------------------------------------------------
echo "== configuration checks"
conf_shipped_is_default() {
    local prog=$1 file=$2
    diff <("$BIN/$prog" -t -v -c "$file" | grep ' = ') <("$BIN/$prog" -t -v | grep ' = ')
}
conf_unknown_key_named() {
    local prog=$1 file=$2 tmp out lines
    tmp=$(mktemp)
    cp "$file" "$tmp"
    echo "no_such_key = 1" >>"$tmp"
    lines=$(wc -l <"$tmp")
    out=$("$BIN/$prog" -t -c "$tmp" 2>&1) && { rm -f "$tmp"; return 1; }
    rm -f "$tmp"
    echo "$out"
    grep -q "no_such_key" <<<"$out" && grep -q ":$lines:" <<<"$out"
}
conf_out_of_range_named() {
    local prog=$1 file=$2 key=$3 tmp out
    tmp=$(mktemp)
    sed "s/^$key = .*/$key = 99999999999/" "$file" >"$tmp"
    out=$("$BIN/$prog" -t -c "$tmp" 2>&1) && { rm -f "$tmp"; return 1; }
    rm -f "$tmp"
    echo "$out"
    grep -q "'$key'" <<<"$out" && grep -q "out of range" <<<"$out"
}
for pair in stock-scheduler:scheduler:port stock-node:node:contexts stock-syncd:syncd:port; do
    IFS=: read -r prog conf key <<<"$pair"
    check "conf/$conf.ini passes -t" "$BIN/$prog" -t -c "$ROOT/conf/$conf.ini"
    check "conf/$conf.ini documents the defaults" conf_shipped_is_default "$prog" "$ROOT/conf/$conf.ini"
    check "conf/$conf.ini unknown key named with line" conf_unknown_key_named "$prog" "$ROOT/conf/$conf.ini"
    check "conf/$conf.ini out-of-range value named" conf_out_of_range_named "$prog" "$ROOT/conf/$conf.ini" "$key"
done

# ---- infrastructure ---------------------------------------------------------
port_range_free() {
    local base=$1 p
    for p in $(seq "$base" $((base + 30))); do
        if ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then return 1; fi
    done
    return 0
}
pick_base_port() {
    if [ -n "${TEST_BASE_PORT:-}" ]; then echo "$TEST_BASE_PORT"; return; fi
    local b
    for b in $(seq 26000 100 29900); do
        if port_range_free "$b"; then echo "$b"; return; fi
    done
    echo 26000
}

INFRA_DIR=$(mktemp -d /tmp/stock-test-infra.XXXXXX)
BASE_PORT=$(pick_base_port)
infra_down() {
    bash "$ROOT/scripts/infra.sh" down --dir "$INFRA_DIR" >>"$LOGDIR/infra.log" 2>&1 || true
    if [ "${KEEP_INFRA:-0}" != 1 ]; then rm -rf "$INFRA_DIR"; fi
}
trap infra_down EXIT
trap 'exit 130' INT TERM

echo "== infra up (dir $INFRA_DIR, base port $BASE_PORT)"
if timeout 180 bash "$ROOT/scripts/infra.sh" up --dir "$INFRA_DIR" --base-port "$BASE_PORT" \
    >"$LOGDIR/infra.log" 2>&1; then
    note_pass
    echo "  infra up: ok"
    set -a
    # shellcheck disable=SC1091
    . "$INFRA_DIR/infra.env"
    set +a
    export INFRA_DIR BASE_PORT STOCK_BIN="$BIN" STOCK_ROOT="$ROOT"

    echo "== integration tests"
    for t in "$BIN"/tests/integration/test_*; do
        [ -x "$t" ] || continue
        run_cmocka "integration/$(basename "$t")" "$t" "$INTEG_TIMEOUT_S"
    done
    for t in "$ROOT"/tests/integration/*.sh; do
        [ -f "$t" ] || continue
        check "integration/$(basename "$t")" timeout --kill-after=10 "$INTEG_TIMEOUT_S" bash "$t"
    done
else
    note_fail "infra up (log $LOGDIR/infra.log)"
    tail -20 "$LOGDIR/infra.log"
fi

echo
if [ "$failed" -gt 0 ]; then
    echo "failures:"
    printf '  %s\n' "${failures[@]}"
fi
echo "logs: $LOGDIR"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
