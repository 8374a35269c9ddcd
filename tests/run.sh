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
# What is counted: every test a test file declares, once, passed or failed,
# so N + N is the same number on every run whatever breaks:
#   - a cmocka binary (tests/unit/test_*.c, tests/integration/test_*.c)
#     declares the tests of its group and names them (`BIN --list`,
#     tests/lib/t_cmocka.h). A declared test passes only when its
#     "[       OK ] NAME" line is in the output; one that failed, crashed,
#     hung, or never ran (a crash before it, a failed group setup) fails by
#     name. A binary that exits non-zero after every test passed (a leak report
#     at exit) fails all of them; a binary that is missing or cannot name its
#     tests fails every test its source lists.
#   - a shell test (tests/integration/*.sh) is one check, or N with a line
#     `# checks: N`, each reported by `t_check` (tests/lib/stock_test.sh). It
#     fails when it exits non-zero, which its teardown makes it do when one of
#     its daemons exited non-zero or left a sanitizer report (stop.sh --check);
#     the harness also runs stop.sh --check on any daemon dir the test left in
#     its scratch dir (STOCK_T_TMP), and names each finding and daemon log.
#   - each configuration check is one check.
#   - when the infrastructure does not come up, every integration test fails,
#     by name, with the infrastructure's log.
# Each test file writes its own log (LOGDIR/unit/, conf/, integration/); the
# end lists every failed test and the path of every failed test's log.
#
# Environment: BIN (default bin) is where the binaries are; TEST_BASE_PORT
# forces the port range; KEEP_INFRA=1 leaves the scratch dir for a post-mortem.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-bin}
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
LOGDIR=$(mktemp -d /tmp/stock-test-logs.XXXXXX)
mkdir -p "$LOGDIR/unit" "$LOGDIR/conf" "$LOGDIR/integration" "$LOGDIR/t"
UNIT_TIMEOUT_S=120
INTEG_TIMEOUT_S=600
LIST_TIMEOUT_S=30 # `BIN --list`
STOP_CHECK_TIMEOUT_S=120

passed=0
failed=0
failures=()    # "NAME: why"
failed_logs=() # the log of every failed test, once each

pass_one() { passed=$((passed + 1)); }

# fail_one NAME WHY LOG: one declared test failed.
fail_one() {
    local l
    failed=$((failed + 1))
    failures+=("$1: $2")
    echo "FAIL: $1: $2"
    for l in ${failed_logs[@]+"${failed_logs[@]}"}; do
        [ "$l" != "$3" ] || return 0
    done
    failed_logs+=("$3")
}

# ---- cmocka binaries ----------------------------------------------------------

# source_tests SRC: the tests SRC's group lists, for a binary that cannot name
# them itself: in the array `struct CMUnitTest tests[] = { ... };`, the first
# name in each entry's parentheses (cmocka_unit_test*(NAME, ...), or a local
# macro such as T(NAME)).
source_tests() {
    awk '/struct CMUnitTest tests\[\] = \{/ { on = 1; next } on && /^ *\};/ { on = 0 } on' "$1" |
        grep -oE '\( *[A-Za-z_][A-Za-z0-9_]*' | sed 's/^( *//'
}

# cmocka_why NAME LOG RC: why the declared test NAME has no OK line.
cmocka_why() {
    local t=$1 log=$2 rc=$3 how="exit $3"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        how="timed out (exit $rc)"
    elif [ "$rc" -gt 128 ]; then
        how="killed by signal $((rc - 128))"
    fi
    if grep -qxF "[  FAILED  ] $t" "$log"; then
        echo "failed"
    elif grep -qxF "[  SKIPPED ] $t" "$log"; then
        echo "skipped"
    elif grep -qxF "[ RUN      ] $t" "$log"; then
        echo "did not finish: $how"
    elif grep -qxF "[  FAILED  ] GROUP SETUP" "$log"; then
        echo "not run: the group setup failed"
    else
        echo "not run: $how before it"
    fi
}

# run_cmocka NAME SRC BINARY TIMEOUT_S: runs one cmocka binary and counts
# every test it declares.
run_cmocka() {
    local name=$1 src=$2 bin=$3 to=$4 log="$LOGDIR/$1.log" out rc t ok=0 why
    local -a tests=() bad=()
    : >"$log"
    if [ ! -x "$bin" ]; then
        mapfile -t tests < <(source_tests "$src")
        why="binary $bin missing (did it build?)"
    elif ! out=$(timeout "$LIST_TIMEOUT_S" "$bin" --list 2>>"$log") || [ -z "$out" ]; then
        mapfile -t tests < <(source_tests "$src")
        why="$bin --list named no test"
    else
        mapfile -t tests <<<"$out"
        why=""
    fi
    if [ ${#tests[@]} -eq 0 ]; then
        fail_one "$name" "declares no test: ${why:-empty --list}" "$log"
        return
    fi
    if [ -n "$why" ]; then
        for t in "${tests[@]}"; do fail_one "$name: $t" "$why" "$log"; done
        return
    fi
    timeout --kill-after=10 "$to" "$bin" >>"$log" 2>&1
    rc=$?
    for t in "${tests[@]}"; do
        if grep -qxF "[       OK ] $t" "$log"; then
            ok=$((ok + 1))
        else
            bad+=("$t")
        fi
    done
    if [ ${#bad[@]} -eq 0 ] && [ "$rc" -ne 0 ]; then
        # Every test passed but the process did not: a sanitizer's report at
        # exit belongs to no one test, so it fails them all.
        for t in "${tests[@]}"; do
            fail_one "$name: $t" "every test passed but the binary exited $rc (sanitizer?)" "$log"
        done
        tail -20 "$log"
    else
        passed=$((passed + ok))
        for t in ${bad[@]+"${bad[@]}"}; do
            fail_one "$name: $t" "$(cmocka_why "$t" "$log" "$rc")" "$log"
        done
        if [ ${#bad[@]} -gt 0 ]; then
            grep -E '^\[  (FAILED|ERROR) *\]|Failure|error:|ERROR|Sanitizer' "$log" | head -20
        fi
    fi
    echo "  $name: $ok/${#tests[@]} passed (log $log)"
}

# fail_cmocka_unrun NAME SRC BINARY WHY LOG: every declared test fails with WHY.
fail_cmocka_unrun() {
    local name=$1 src=$2 bin=$3 why=$4 log=$5 out t
    local -a tests=()
    if [ -x "$bin" ] && out=$(timeout "$LIST_TIMEOUT_S" "$bin" --list 2>/dev/null) &&
        [ -n "$out" ]; then
        mapfile -t tests <<<"$out"
    else
        mapfile -t tests < <(source_tests "$src")
    fi
    if [ ${#tests[@]} -eq 0 ]; then
        fail_one "$name" "$why" "$log"
    fi
    for t in ${tests[@]+"${tests[@]}"}; do fail_one "$name: $t" "$why" "$log"; done
}

# ---- shell checks -------------------------------------------------------------

# shell_checks FILE: the checks FILE declares (`# checks: N`), else 1.
shell_checks() {
    local n
    n=$(sed -n 's/^# checks: \([1-9][0-9]*\)$/\1/p' "$1" | head -1)
    echo "${n:-1}"
}

# check NAME CMD...: a shell-level check of this file, one count, its own log.
check() {
    local name=$1 log="$LOGDIR/conf/${1//[^A-Za-z0-9._-]/_}.log"
    shift
    if "$@" >"$log" 2>&1; then
        pass_one
        echo "  $name: ok"
    else
        fail_one "$name" "failed" "$log"
        tail -5 "$log"
    fi
}

# run_shell_test NAME FILE: one integration script, its declared checks, and
# the daemons it left in its scratch dir (stop.sh --check on each).
run_shell_test() {
    local name=$1 file=$2 log="$LOGDIR/$1.log" n rc reported d out line findings="" nfail why
    local scratch
    scratch="$LOGDIR/t/$(basename "$file" .sh)"
    n=$(shell_checks "$file")
    mkdir -p "$scratch"
    STOCK_T_TMP="$scratch" timeout --kill-after=10 "$INTEG_TIMEOUT_S" bash "$file" >"$log" 2>&1
    rc=$?
    for d in "$scratch"/*/; do
        [ -d "$d" ] || continue
        if ! out=$(timeout "$STOP_CHECK_TIMEOUT_S" bash "$ROOT/scripts/stop.sh" --dir "${d%/}" \
            --check 2>&1); then
            printf '%s\n' "$out" >>"$log"
            while IFS= read -r line; do
                case "$line" in "stop: check: "*) findings+="; ${line#stop: check: }" ;; esac
            done <<<"$out"
            [ -n "$findings" ] || findings="; stop.sh --dir ${d%/} --check failed"
        fi
    done
    reported=$(grep -c '^\[[^]]*\] check ok: ' "$log")
    if [ "$n" -eq 1 ]; then reported=$((rc == 0 ? 1 : 0)); fi
    [ "$reported" -le "$n" ] || reported=$n
    if [ "$rc" -eq 0 ] && [ -z "$findings" ] && [ "$reported" -eq "$n" ]; then
        passed=$((passed + n))
        rm -rf "$scratch"
        echo "  $name: ok"
        return
    fi
    # Failed: at least one check, and every one it did not report.
    nfail=$((n - reported))
    [ "$nfail" -ge 1 ] || nfail=1
    passed=$((passed + n - nfail))
    why="exit $rc"
    [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || why="timed out after ${INTEG_TIMEOUT_S}s (exit $rc)"
    [ "$n" -eq 1 ] || why+=", $((n - nfail)) of $n declared checks passed"
    why+=$findings
    local i
    for ((i = 0; i < nfail; i++)); do fail_one "$name" "$why" "$log"; done
    grep -E '\] FAIL: ' "$log" | head -10
    tail -5 "$log"
}

# ---- unit tests -------------------------------------------------------------
echo "== unit tests ($BIN)"
for src in "$ROOT"/tests/unit/test_*.c; do
    base=$(basename "$src" .c)
    run_cmocka "unit/$base" "$src" "$BIN/tests/unit/$base" "$UNIT_TIMEOUT_S"
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
    echo "  infra up: ok"
    set -a
    # shellcheck disable=SC1091
    . "$INFRA_DIR/infra.env"
    set +a
    export INFRA_DIR BASE_PORT STOCK_BIN="$BIN" STOCK_ROOT="$ROOT"

    echo "== integration tests"
    for src in "$ROOT"/tests/integration/test_*.c; do
        base=$(basename "$src" .c)
        run_cmocka "integration/$base" "$src" "$BIN/tests/integration/$base" "$INTEG_TIMEOUT_S"
    done
    for t in "$ROOT"/tests/integration/*.sh; do
        [ -f "$t" ] || continue
        run_shell_test "integration/$(basename "$t")" "$t"
    done
else
    echo "  infra up: FAILED (log $LOGDIR/infra.log)"
    tail -20 "$LOGDIR/infra.log"
    why="not run: the infrastructure did not start (log $LOGDIR/infra.log)"
    for src in "$ROOT"/tests/integration/test_*.c; do
        base=$(basename "$src" .c)
        fail_cmocka_unrun "integration/$base" "$src" "$BIN/tests/integration/$base" "$why" \
            "$LOGDIR/infra.log"
    done
    for t in "$ROOT"/tests/integration/*.sh; do
        [ -f "$t" ] || continue
        for ((i = $(shell_checks "$t"); i > 0; i--)); do
            fail_one "integration/$(basename "$t")" "$why" "$LOGDIR/infra.log"
        done
    done
fi

echo
if [ "$failed" -gt 0 ]; then
    echo "failures:"
    printf '  %s\n' "${failures[@]}"
    echo "logs of the failed tests:"
    printf '  %s\n' "${failed_logs[@]}"
fi
echo "logs: $LOGDIR"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
