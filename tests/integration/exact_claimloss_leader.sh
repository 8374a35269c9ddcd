#!/usr/bin/env bash
# exact_claimloss_leader.sh -- exact_claimloss.sh under durability = leader:
# the claim lost in the failover lets order O be deducted on two partitions
# (shown: held by both in Redis, twice in MySQL), and `stockctl audit` must
# exit 1 with its check orders_once broken and naming O. See the header of
# exact_claimloss.sh for the scenario.
set -euo pipefail
CLAIMLOSS_DURABILITY=leader exec bash "$(dirname "$0")/exact_claimloss.sh" "$@"
