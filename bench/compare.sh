#!/usr/bin/env bash
# compare.sh -- `make bench`: this design side by side with the classic ones.
#
# Needs the deduction path and the load generator, which later issues build.
# Until then it says what is missing and fails.
set -euo pipefail
cat >&2 <<'MSG'
make bench: not built yet.
  missing: the deduction path (scheduler + partition nodes), stock-loadgen, and
  the single-key and MySQL-row comparison servers.
MSG
exit 2
