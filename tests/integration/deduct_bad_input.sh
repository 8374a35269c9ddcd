#!/usr/bin/env bash
# deduct_bad_input.sh -- bad requests get a clear error and the scheduler stays up (DESIGN 10).
#
# Each class of bad input gets its stated answer (400 with a message naming
# the field, 404 unknown_sku, 425 not_started, 413 for a huge body, 404 for an
# unknown path), and the next valid deduct right after it succeeds, so no bad
# request leaves the connection handling or the registry in a bad state. At
# the end the scheduler is the same process as at the start (no crash and
# restart) and nothing was deducted by the bad requests.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib/stock_test.sh
. "$(dirname "$0")/../lib/stock_test.sh"

t_start_daemons --nodes 1
sched_pid=$(t_pid scheduler)
sku=$(t_sku bad)
t_sku_load "$sku" --total 10000 --partitions 2
late=$(t_sku late)
t_sku_load "$late" --total 100 --partitions 1 --start $(( ($(date +%s) + 3600) * 1000 ))

valid_n=0
# After every bad request: a valid one must succeed.
then_valid() {
    valid_n=$((valid_n + 1))
    t_deduct "$sku" "valid-$$-$valid_n" u1 1
    [ "$T_STATUS" = 200 ] || fail "valid deduct after '$1': expected 200, got $T_STATUS: $T_BODY"
}

# bad BODY WHAT STATUS ERROR [FIELD]: POST BODY to /v1/deduct; expect STATUS and
# ERROR, and FIELD named in the message when given.
bad() {
    local body=$1 what=$2 status=$3 err=$4 field=${5-} msg
    t_http POST /v1/deduct "$body"
    t_expect "$what" "$status" "$err"
    if [ -n "$field" ]; then
        msg=$(t_json_get message <<<"$T_BODY")
        assert_contains "message of '$what' names '$field' ($msg)" "$msg" "$field"
    fi
    then_valid "$what"
}

ok_body() { printf '{"sku":"%s","order_id":"%s","user_id":"u1","qty":%s}' "$sku" "$1" "$2"; }

bad '{"sku": "x", "order_id": ' "malformed JSON" 400 invalid_request
bad '' "empty body" 400 invalid_request
bad '[1,2,3]' "a JSON array" 400 invalid_request
bad "$(ok_body o1 1)xyz" "trailing garbage after the object" 400 invalid_request
bad "{\"order_id\":\"o2\",\"user_id\":\"u1\",\"qty\":1}" "missing sku" 400 invalid_request sku
bad "{\"sku\":\"$sku\",\"user_id\":\"u1\",\"qty\":1}" "missing order_id" 400 invalid_request order_id
bad "{\"sku\":\"$sku\",\"order_id\":\"o3\",\"qty\":1}" "missing user_id" 400 invalid_request user_id
bad "{\"sku\":\"$sku\",\"order_id\":\"o4\",\"user_id\":\"u1\"}" "missing qty" 400 invalid_request qty
bad "$(ok_body o5 0)" "qty 0" 400 invalid_request qty
bad "$(ok_body o6 -1)" "qty -1" 400 invalid_request qty
bad "$(ok_body o7 1.5)" "qty 1.5" 400 invalid_request qty
bad "$(ok_body o8 '"3"')" "qty as a string" 400 invalid_request qty
bad "$(ok_body o9 1001)" "qty over max_qty (1000)" 400 invalid_request qty
bad "$(ok_body o10 1e12)" "qty 1e12" 400 invalid_request qty
bad "{\"sku\":\"$sku\",\"order_id\":12345,\"user_id\":\"u1\",\"qty\":1}" "order_id as a number" \
    400 invalid_request order_id
bad "$(ok_body 'a{b' 1)" "order_id with a brace" 400 invalid_request order_id
bad "$(ok_body 'a}b' 1)" "order_id with a closing brace" 400 invalid_request order_id
bad "{\"sku\":\"a{b\",\"order_id\":\"o11\",\"user_id\":\"u1\",\"qty\":1}" "sku with a brace" \
    400 invalid_request sku
bad "{\"sku\":\"$sku\",\"order_id\":\"o12\",\"user_id\":\"u{1\",\"qty\":1}" "user_id with a brace" \
    400 invalid_request user_id
bad "$(ok_body "$(printf 'x%.0s' {1..65})" 1)" "order_id of 65 chars" 400 invalid_request order_id
bad "$(ok_body '' 1)" "empty order_id" 400 invalid_request order_id
# the longest valid order id (64 chars) is accepted
t_deduct "$sku" "$(printf 'y%.0s' {1..64})" u1 1
t_expect "order_id of 64 chars" 200

t_deduct "no-such-sku-$$" o13 u1 1
t_expect "unknown sku" 404 unknown_sku
then_valid "unknown sku"
t_deduct "$late" o14 u1 1
t_expect "SKU whose sale starts in an hour" 425 not_started
then_valid "not started"

big="$T_DIR/big.json"
"$T_PY" -c '
import sys
pad = "x" * (1024 * 1024)
sys.stdout.write("{\"sku\":\"%s\",\"order_id\":\"o15\",\"user_id\":\"u1\",\"qty\":1,\"pad\":\"%s\"}" % (sys.argv[1], pad))
' "$sku" >"$big"
t_http_file POST /v1/deduct "$big"
t_expect "a 1 MiB body" 413
then_valid "1 MiB body"

t_http POST /v1/nothing-here '{}'
t_expect "POST to an unknown path" 404
then_valid "unknown path"
t_http GET /v1/nothing-here
t_expect "GET of an unknown path" 404
then_valid "unknown GET path"
t_http POST /v1/release '{"sku":"a{b","order_id":"o16"}'
t_expect "release with a bad sku" 400 invalid_request
then_valid "bad release"

# The scheduler reads plain flat bodies with its own scanner and everything
# else with cJSON: the same request must get the same answer either way.
# Spacing, an escape, a repeated key (the first wins, as in cJSON), 2e0.
extra=0
same() {
    local body=$1 what=$2 dup=$3
    t_http POST /v1/deduct "$body"
    t_expect "$what" 200
    assert_eq "$what: duplicate" "$dup" "$(t_json_get duplicate <<<"$T_BODY")"
}
same "{ \"sku\" :\"$sku\" ,  \"order_id\":\"flat-$$\",\"user_id\":\"u1\",\"qty\":2 }" "spaced flat body" false
same "{\"sku\":\"$sku\",\"order_id\":\"fl\\u0061t-$$\",\"user_id\":\"u1\",\"qty\":2e0}" "escaped id, 2e0" true
same "{\"sku\":\"$sku\",\"order_id\":\"rep-$$\",\"order_id\":\"x-$$\",\"user_id\":\"u1\",\"qty\":1}" "repeated key" false
same "{\"sku\":\"$sku\",\"order_id\":\"rep-$$\",\"user_id\":\"u1\",\"qty\":1.0}" "first key won" true
extra=3
bad "{\"sku\":\"$sku\",\"order_id\":\"z-$$\",\"user_id\":\"u1\",\"qty\":1234567890}" "qty of 10 digits" 400 invalid_request qty

assert_eq "scheduler pid unchanged (no crash)" "$sched_pid" "$(t_pid scheduler)"
kill -0 "$sched_pid" 2>/dev/null || fail "scheduler pid $sched_pid is gone"
say "ok: scheduler pid $sched_pid alive"
t_deduct "$sku" "final-$$" u1 1
t_expect "a valid deduct at the end" 200
# only the valid requests deducted: valid_n + the 64-char id + the final one,
# and the flat/cJSON pairs (2 units once, 1 unit once)
assert_eq "Redis net deducted (valid requests only)" $((valid_n + 2 + extra)) "$(t_redis_sum "$sku" ded)"
t_audit "$sku"

t_pass
