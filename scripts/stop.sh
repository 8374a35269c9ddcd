#!/usr/bin/env bash
# stop.sh -- stop the daemons scripts/start.sh started in a scratch directory.
#
#   stop.sh --dir DIR [--all]
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
# Exit 0 also when nothing was running. The infrastructure (infra.sh) is not
# touched, unless --all: then `infra.sh down --dir DIR` runs last (what
# `start.sh --all` brought up in DIR).
set -euo pipefail

STOP_TIMEOUT_S=10

DIR=""
ALL=0

log() { printf 'stop: %s\n' "$*"; }

usage() {
    cat <<EOF
usage: $(basename "$0") --dir DIR [--all]

Stops the daemons started by scripts/start.sh --dir DIR (by their pid files);
with --all also the infrastructure in DIR (scripts/infra.sh down --dir DIR).
EOF
}

usage_error() { printf 'stop: %s\n' "$*" >&2; usage >&2; exit 2; }

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --dir)   [ $# -ge 2 ] || usage_error "--dir needs a value"; DIR=$2; shift 2 ;;
            --dir=*) DIR=${1#--dir=}; shift ;;
            --all)   ALL=1; shift ;;
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

# stop_group PIDFILE...: SIGTERM to each owned pid, bounded wait, SIGKILL.
stop_group() {
    local pidfile pid deadline resend
    local -a pids=()
    for pidfile in "$@"; do
        [ -e "$pidfile" ] || continue
        if pid=$(owned_pid "$pidfile"); then
            log "stopping $(basename "$pidfile" .pid) (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
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
    for pidfile in "$@"; do
        rm -f "$pidfile"
    done
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
}

main "$@"
