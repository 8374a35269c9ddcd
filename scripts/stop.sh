#!/usr/bin/env bash
# stop.sh -- stop the daemons scripts/start.sh started in a scratch directory.
#
#   stop.sh --dir DIR [--all] [--check]
#
# Why: tests and the demo must stop exactly the processes they started, also
# after a failure, and never anything else on the machine: so processes are
# found by their pid files in DIR (scheduler.pid, node-N.pid, syncd-N.pid) and
# a pid counts only while it still runs the daemon that file is named for
# (a reused pid is left alone). Never by process name.
#
# The scheduler (the front door) is stopped first so no new work reaches the
# nodes, then the partition nodes (their last detail batches can still reach a
# worker), then the sync workers. Each group gets SIGTERM, a bounded wait
# (STOP_TIMEOUT_S, SIGTERM repeated), then SIGKILL. Pid files are removed.
# The exit status of every daemon it stopped is logged: the shell start.sh
# launched it under appends "PID STATUS" to DIR/NAME.exit (stop.sh cannot wait
# for a process that is not its child). Exit 0 also when nothing was running.
# The infrastructure (infra.sh) is not touched, unless --all: then
# `infra.sh down --dir DIR` runs last (what `start.sh --all` brought up in DIR).
#
# --check (the tests' teardown, tests/lib/stock_test.sh, and tests/run.sh):
# after stopping, exit 1 when any daemon of DIR ever exited non-zero (every
# line of every DIR/*.exit: a crash between restarts counts, a SIGKILL after
# STOP_TIMEOUT_S is 137), unless DIR/expected_exits lists that "PID STATUS"
# (a test's deliberate kill -9), or when any DIR/*.log holds a sanitizer
# report ("AddressSanitizer", "LeakSanitizer", UBSan's "runtime error"). Each
# finding is one line "stop: check: ..." naming the daemon and its log.
set -euo pipefail

STOP_TIMEOUT_S=10
EXIT_WAIT_S=10 # bound on the launching shell writing a stopped daemon's status
SANITIZER_RE='AddressSanitizer|LeakSanitizer|runtime error'

DIR=""
ALL=0
CHECK=0
UNKNOWN=() # daemons stopped here whose exit status could not be read

log() { printf 'stop: %s\n' "$*"; }

usage() {
    cat <<EOF
usage: $(basename "$0") --dir DIR [--all] [--check]

Stops the daemons started by scripts/start.sh --dir DIR (by their pid files);
with --all also the infrastructure in DIR (scripts/infra.sh down --dir DIR);
with --check exits 1 when a daemon of DIR exited non-zero (DIR/*.exit, minus
DIR/expected_exits) or a log in DIR holds a sanitizer report.
EOF
}

usage_error() { printf 'stop: %s\n' "$*" >&2; usage >&2; exit 2; }

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --dir)   [ $# -ge 2 ] || usage_error "--dir needs a value"; DIR=$2; shift 2 ;;
            --dir=*) DIR=${1#--dir=}; shift ;;
            --all)   ALL=1; shift ;;
            --check) CHECK=1; shift ;;
            -h|--help) usage; exit 0 ;;
            *) usage_error "unknown argument: $1" ;;
        esac
    done
    [ -n "$DIR" ] || usage_error "--dir is required"
}

# The program a pid file is named for: scheduler.pid -> stock-scheduler, ...
program_of() {
    case "$(basename "$1")" in
        scheduler.pid) echo stock-scheduler ;;
        node-[0-9]*.pid) echo stock-node ;;
        syncd-[0-9]*.pid) echo stock-syncd ;;
        *) return 1 ;;
    esac
}

# Echo the pid in pid file $1 if it is alive and runs the program the file is named for.
owned_pid() {
    local pidfile=$1 prog pid exe
    prog=$(program_of "$pidfile") || return 1
    [ -s "$pidfile" ] || return 1
    pid=$(tr -dc '0-9' <"$pidfile")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    exe=${exe% (deleted)}
    [ "$(basename "$exe")" = "$prog" ] || return 1
    echo "$pid"
}

# launched_by_start PID PIDFILE: 0 when PID's parent is the shell start.sh
# launched it under (its command line names PIDFILE), which will write its
# exit status to the .exit file beside PIDFILE.
launched_by_start() {
    local ppid
    ppid=$(awk '{ print $4 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$ppid" ] && [ "$ppid" -gt 1 ] || return 1
    tr '\0' '\n' <"/proc/$ppid/cmdline" 2>/dev/null | grep -qxF -- "$2"
}

# exit_status NAME PID: the status the launching shell recorded for PID in
# DIR/NAME.exit; waits up to EXIT_WAIT_S for it. Returns 1 when none came.
exit_status() {
    local file="$DIR/$1.exit" deadline=$((SECONDS + EXIT_WAIT_S)) st
    while :; do
        st=$(awk -v pid="$2" '$1 == pid { s = $2 } END { if (s != "") print s }' "$file" \
            2>/dev/null || true)
        if [ -n "$st" ]; then echo "$st"; return 0; fi
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

# stop_group PIDFILE...: SIGTERM to each owned pid, bounded wait, SIGKILL;
# then logs each one's exit status.
stop_group() {
    local pidfile pid deadline resend name st
    local -a pids=() names=() watched=()
    for pidfile in "$@"; do
        [ -e "$pidfile" ] || continue
        if pid=$(owned_pid "$pidfile"); then
            name=$(basename "$pidfile" .pid)
            log "stopping $name (pid $pid)"
            if launched_by_start "$pid" "$pidfile"; then watched+=(1); else watched+=(0); fi
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            names+=("$name")
        fi
    done
    if [ ${#pids[@]} -gt 0 ]; then
        deadline=$((SECONDS + STOP_TIMEOUT_S))
        resend=$((SECONDS + 2))
        while :; do
            local -a alive=()
            for pid in "${pids[@]}"; do
                if kill -0 "$pid" 2>/dev/null; then alive+=("$pid"); fi
            done
            [ ${#alive[@]} -gt 0 ] || break
            if [ "$SECONDS" -ge "$deadline" ]; then
                log "pids ${alive[*]} ignored SIGTERM for ${STOP_TIMEOUT_S}s; sending SIGKILL"
                kill -KILL "${alive[@]}" 2>/dev/null || true
                sleep 0.2
                break
            fi
            if [ "$SECONDS" -ge "$resend" ]; then
                kill -TERM "${alive[@]}" 2>/dev/null || true
                resend=$((SECONDS + 2))
            fi
            sleep 0.1
        done
    fi
    local i
    for ((i = 0; i < ${#pids[@]}; i++)); do
        if [ "${watched[$i]}" -eq 0 ]; then
            UNKNOWN+=("${names[$i]} (pid ${pids[$i]}) stopped; exit status unknown (not launched by start.sh)")
        elif st=$(exit_status "${names[$i]}" "${pids[$i]}"); then
            log "${names[$i]} (pid ${pids[$i]}) exited $st"
            continue
        else
            UNKNOWN+=("${names[$i]} (pid ${pids[$i]}) stopped; no exit status in $DIR/${names[$i]}.exit after ${EXIT_WAIT_S}s")
        fi
        log "${UNKNOWN[-1]}"
    done
    for pidfile in "$@"; do
        rm -f "$pidfile"
    done
}

# check_dir: one "stop: check: ..." line per daemon of DIR that exited
# non-zero (not in DIR/expected_exits), per daemon stopped here whose status
# is unknown, and per log with a sanitizer report; returns 1 when there was any.
check_dir() {
    local f name pid st bad=0 first summary u
    for u in ${UNKNOWN[@]+"${UNKNOWN[@]}"}; do
        log "check: $u"
        bad=1
    done
    for f in "$DIR"/*.exit; do
        name=$(basename "$f" .exit)
        while read -r pid st _; do
            if [ -z "$pid" ] || [ "$st" = 0 ]; then continue; fi
            if [ -f "$DIR/expected_exits" ] && grep -qxF "$pid $st" "$DIR/expected_exits"; then
                continue
            fi
            log "check: $name (pid $pid) exited $st (log $DIR/$name.log)"
            bad=1
        done <"$f"
    done
    for f in "$DIR"/*.log; do
        first=$(grep -m1 -E "$SANITIZER_RE" "$f" || true)
        [ -n "$first" ] || continue
        summary=$(grep -m1 '^SUMMARY: ' "$f" || true)
        [ "$summary" != "$first" ] || summary=""
        log "check: sanitizer report in $f: $first${summary:+ / $summary}"
        bad=1
    done
    return "$bad"
}

main() {
    parse_args "$@"
    if [ ! -d "$DIR" ]; then
        log "nothing to stop: $DIR does not exist"
        return 0
    fi
    shopt -s nullglob
    stop_group "$DIR/scheduler.pid"
    stop_group "$DIR"/node-[0-9]*.pid
    stop_group "$DIR"/syncd-[0-9]*.pid
    # The default-socket link start.sh made, if it points into this run.
    if [ -L /tmp/stock-admin.sock ] && [ "$(readlink /tmp/stock-admin.sock)" = "$(cd "$DIR" && pwd -P)/admin.sock" ]; then
        rm -f /tmp/stock-admin.sock
    fi
    log "stopped (dir $DIR)"
    if [ "$ALL" -eq 1 ]; then
        log "infrastructure: scripts/infra.sh down --dir $DIR"
        bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/infra.sh" down --dir "$DIR"
    fi
    if [ "$CHECK" -eq 1 ] && ! check_dir; then
        log "check failed: a daemon exited non-zero or reported a sanitizer error (dir $DIR)"
        return 1
    fi
}

main "$@"
