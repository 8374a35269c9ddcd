#!/usr/bin/env bash
# exact_failover_leader.sh -- exact_failover.sh under durability = leader: the
# answered deductions a failover loses show as a diverged partition and a
# broken audit naming it, and `stockctl partition reconcile` makes the audit
# clean again, printing the oversold count (issue 10, "Exact II").
set -euo pipefail
FAILOVER_DURABILITY=leader exec bash "$(dirname "$0")/exact_failover.sh"
