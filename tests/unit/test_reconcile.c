/* test_reconcile.c -- unit tests of reconcile's union (scheduler/sch_reconcile.c).
 *
 * The union decides what a repaired partition holds; a mistake there keeps an
 * order twice, loses one, or moves units that were not there, so every rule of
 * sch_reconcile.h has a case here, from the sources (MySQL's details, Redis's
 * order records and stream) to the plan (records to write, details to
 * renumber, the new ded and seq). The I/O half runs against real servers in
 * tests/integration/exact_reconcile.sh. The module under test is compiled
 * into this file (its sch_sync dependency too, unused here). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "t_cmocka.h"

#include "../../scheduler/sch_reconcile.c"
#include "../../scheduler/sch_sync.c"

#include <stdio.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------ */

static sch_rc_union *new_union(void)
{
    sch_rc_union *u = NULL;
    assert_int_equal(sch_rc_union_new(&u), SH_OK);
    return u;
}

static void my(sch_rc_union *u, uint64_t seq, int32_t qty, const char *order, const char *user)
{
    sh_wire_detail d;
    memset(&d, 0, sizeof d);
    d.seq = seq;
    d.qty = qty;
    d.created_ms = 1000 + (int64_t)seq;
    assert_int_equal(
        sh_wire_str_set(d.order_id, sizeof d.order_id, &d.order_id_len, order, strlen(order)),
        SH_OK);
    assert_int_equal(
        sh_wire_str_set(d.user_id, sizeof d.user_id, &d.user_id_len, user, strlen(user)), SH_OK);
    assert_int_equal(sch_rc_union_add_mysql(u, &d), SH_OK);
}

static void rec(sch_rc_union *u, const char *order, const char *record)
{
    assert_int_equal(sch_rc_union_add_record(u, order, strlen(order), record, strlen(record)),
                     SH_OK);
}

static void st(sch_rc_union *u, const char *line)
{
    sh_stock_detail d;
    assert_int_equal(sh_stock_detail_parse(line, strlen(line), &d), SH_OK);
    assert_int_equal(sch_rc_union_add_stream(u, &d), SH_OK);
}

static const sch_rc_order *find(const sch_rc_union *u, const char *order)
{
    for (size_t i = 0; i < sch_rc_union_count(u); i++) {
        if (strcmp(sch_rc_union_at(u, i)->id, order) == 0) {
            return sch_rc_union_at(u, i);
        }
    }
    fail_msg("order %s not in the union", order);
    return NULL;
}

static void plan_ok(sch_rc_union *u, uint64_t synced, sch_rc_plan *p)
{
    char why[256];
    sh_err rc = sch_rc_union_plan(u, synced, 1, 99999, p, why, sizeof why);
    if (rc != SH_OK) {
        fail_msg("plan: %s (%s)", sh_strerror(rc), why);
    }
}

static void expect_record(const sch_rc_union *u, const char *order, int write, const char *want)
{
    const sch_rc_order *o = find(u, order);
    char buf[SCH_RC_TEXT_BYTES];
    sch_rc_record_text(o, buf, sizeof buf);
    assert_true(o->held);
    assert_string_equal(buf, want);
    assert_int_equal(o->write, write);
}

static void expect_line(const sch_rc_union *u, const sch_rc_plan *p, size_t k, const char *want)
{
    char buf[SCH_RC_TEXT_BYTES];
    assert_true(k < p->nlines);
    sch_rc_line_text(u, &p->lines[k], buf, sizeof buf);
    assert_string_equal(buf, want);
}

/* ---- cases ------------------------------------------------------------------------ */

/* Redis forgot an answered deduction MySQL holds: its record comes back from
 * MySQL, nothing is renumbered, ded is MySQL's. */
static void test_lost_record_restored(void **state)
{
    (void)state;
    sch_rc_union *u = new_union();
    my(u, 1, 1, "o1", "u1");
    my(u, 2, 2, "o2", "u2");
    my(u, 3, 1, "o3", "u3");
    rec(u, "o1", "1,1,0,u1");
    rec(u, "o2", "2,2,0,u2");
    sch_rc_plan p;
    plan_ok(u, 3, &p);
    assert_int_equal(p.nlines, 0);
    assert_int_equal(p.new_seq, 3);
    assert_int_equal(p.new_ded, 4);
    assert_int_equal(p.kept, 3);
    assert_int_equal(p.restored, 1);
    assert_int_equal(p.fixed, 0);
    assert_int_equal(p.duplicates, 0);
    expect_record(u, "o3", 1, "1,3,0,u3");
    assert_true(find(u, "o3")->restored);
    assert_int_equal(find(u, "o1")->write, 0);
    sch_rc_union_free(u);
}

/* Redis lost seqs 4..5 (c1, c2 in MySQL) and handed them to d1, d2: both sets
 * stay, d* renumbered 6, 7 in Redis's order with the stream's created_ms and
 * sub-domain; c* restored from MySQL. */
static void test_reused_seqs_renumbered(void **state)
{
    (void)state;
    sch_rc_union *u = new_union();
    my(u, 1, 1, "a1", "ua");
    my(u, 2, 1, "a2", "ua");
    my(u, 3, 1, "a3", "ub");
    my(u, 4, 1, "c1", "uc1");
    my(u, 5, 3, "c2", "uc2");
    rec(u, "a1", "1,1,0,ua");
    rec(u, "a2", "1,2,0,ua");
    rec(u, "a3", "1,3,0,ub");
    rec(u, "d2", "2,5,0,ud2");
    rec(u, "d1", "1,4,0,ud1");
    st(u, "4|1|0|7004|d1|ud1");
    st(u, "5|2|1|7005|d2|ud2");
    sch_rc_plan p;
    plan_ok(u, 5, &p);
    assert_int_equal(p.nlines, 2);
    assert_int_equal(p.new_seq, 7);
    assert_int_equal(p.new_ded, 3 + 4 + 3);
    assert_int_equal(p.restored, 2);
    assert_int_equal(p.fixed, 2);
    expect_line(u, &p, 0, "6|1|0|7004|d1|ud1");
    expect_line(u, &p, 1, "7|2|1|7005|d2|ud2");
    expect_record(u, "d1", 2, "1,6,0,ud1");
    expect_record(u, "d2", 2, "2,7,0,ud2");
    expect_record(u, "c1", 1, "1,4,0,uc1");
    expect_record(u, "c2", 1, "3,5,0,uc2");
    sch_rc_union_free(u);
}

/* An order MySQL holds that Redis deducted again under another seq after the
 * loss (a retry): kept once, MySQL's; its record goes back to MySQL's seq. */
static void test_duplicate_kept_once(void **state)
{
    (void)state;
    sch_rc_union *u = new_union();
    my(u, 1, 2, "o1", "u1");
    my(u, 2, 1, "o2", "u2");
    rec(u, "o1", "2,3,0,u1"); /* re-deducted at 3 after Redis lost 1..2 */
    rec(u, "o9", "1,4,0,u9"); /* a new order after it */
    st(u, "3|2|0|5003|o1|u1");
    st(u, "4|1|0|5004|o9|u9");
    sch_rc_plan p;
    plan_ok(u, 2, &p);
    assert_int_equal(p.duplicates, 1);
    assert_int_equal(p.nlines, 1);
    expect_line(u, &p, 0, "3|1|0|5004|o9|u9");
    expect_record(u, "o1", 1, "2,1,0,u1");
    assert_true(find(u, "o1")->duplicate);
    expect_record(u, "o9", 2, "1,3,0,u9");
    assert_int_equal(p.new_ded, 3 + 1);
    sch_rc_union_free(u);
}

/* A release Redis answered that MySQL lacks is renumbered and kept; its qty is
 * the union's (MySQL's) deduction; a release MySQL holds that Redis lost is
 * written back into the record. */
static void test_releases(void **state)
{
    (void)state;
    sch_rc_union *u = new_union();
    my(u, 1, 2, "r1", "u1");
    my(u, 2, 1, "r2", "u2");
    my(u, 3, -1, "r2", "u2");
    rec(u, "r1", "2,1,4,u1"); /* released at 4, MySQL synced 3 */
    rec(u, "r2", "1,2,0,u2"); /* its release at 3 lost in Redis */
    st(u, "4|-2|1|8004|r1|u1");
    sch_rc_plan p;
    plan_ok(u, 3, &p);
    assert_int_equal(p.nlines, 1);
    expect_line(u, &p, 0, "4|-2|1|8004|r1|u1");
    expect_record(u, "r1", 2, "2,1,4,u1");
    expect_record(u, "r2", 1, "1,2,3,u2");
    assert_int_equal(p.new_ded, 0);
    assert_int_equal(p.fixed, 2);
    sch_rc_union_free(u);
}

/* A deduction and its release that only Redis answered, one found only in
 * the stream (its record gone), and a tombstone nobody holds. Answers are
 * renumbered in Redis's seq order whatever the order of the sources; what the
 * stream no longer holds gets the active sub-domain and the clock. */
static void test_redis_only_and_tombstone(void **state)
{
    (void)state;
    sch_rc_union *u = new_union();
    my(u, 1, 1, "m1", "");
    rec(u, "m1", "1,1,0,");
    rec(u, "x1", "3,4,6,ux");  /* deducted at 4, released at 6; the stream holds neither */
    rec(u, "t1", "t,2");       /* refused here: not held */
    st(u, "5|1|0|6005|y1|uy"); /* no record: the stream tells */
    sch_rc_plan p;
    plan_ok(u, 1, &p);
    assert_int_equal(p.nlines, 3);
    expect_line(u, &p, 0, "2|3|1|99999|x1|ux");
    expect_line(u, &p, 1, "3|1|0|6005|y1|uy");
    expect_line(u, &p, 2, "4|-3|1|99999|x1|ux");
    expect_record(u, "x1", 2, "3,2,4,ux");
    expect_record(u, "y1", 2, "1,3,0,uy");
    assert_false(find(u, "y1")->restored); /* not MySQL's: renumbered */
    assert_false(find(u, "t1")->held);
    assert_int_equal(find(u, "t1")->write, 0);
    assert_int_equal(p.new_ded, 1 + 1);
    assert_int_equal(p.new_seq, 4);
    sch_rc_union_free(u);
}

/* MySQL's details must run 1..synced_seq, and a release needs its deduction;
 * malformed records and ids are refused; past the renumber bound, ELIMIT. */
static void test_refusals(void **state)
{
    (void)state;
    char why[256];
    sch_rc_plan p;
    sch_rc_union *u = new_union();
    my(u, 1, 1, "o1", "u");
    sh_wire_detail d;
    memset(&d, 0, sizeof d);
    d.seq = 3; /* a gap */
    d.qty = 1;
    assert_int_equal(sh_wire_str_set(d.order_id, sizeof d.order_id, &d.order_id_len, "o3", 2),
                     SH_OK);
    assert_int_equal(sch_rc_union_add_mysql(u, &d), SH_EPROTO);
    assert_int_equal(sch_rc_union_plan(u, 2, 0, 0, &p, why, sizeof why), SH_EPROTO);
    assert_non_null(strstr(why, "synced_seq is 2"));
    static const char *const bad[] = {"",        "1,2",      "0,1,0,u", "1,0,0,u",
                                      "x,1,0,u", "1,1,0,u!", "t,",      "1,1,-1,u"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (sch_rc_union_add_record(u, "o1", 2, bad[i], strlen(bad[i])) != SH_EPROTO) {
            fail_msg("record '%s' accepted", bad[i]);
        }
    }
    assert_int_equal(sch_rc_union_add_record(u, "o{1}", 4, "1,1,0,u", 7), SH_EPROTO);
    sch_rc_union_free(u);

    u = new_union();
    my(u, 1, -1, "o1", "u");
    assert_int_equal(sch_rc_union_plan(u, 1, 0, 0, &p, why, sizeof why), SH_EPROTO);
    assert_non_null(strstr(why, "without its deduction"));
    sch_rc_union_free(u);

    u = new_union();
    char order[32], record[64];
    for (int i = 0; i <= SH_RECONCILE_RENUMBER_MAX; i++) {
        snprintf(order, sizeof order, "n%d", i);
        snprintf(record, sizeof record, "1,%d,0,u", i + 1);
        rec(u, order, record);
    }
    assert_int_equal(sch_rc_union_plan(u, 0, 0, 0, &p, why, sizeof why), SH_ELIMIT);
    sch_rc_union_free(u);
}

/* Many orders: the map grows and finds each again; every MySQL detail and
 * every record meets its order once. */
static void test_many_orders(void **state)
{
    (void)state;
    sch_rc_union *u = new_union();
    char order[32], record[64];
    const int n = 20000;
    for (int i = 1; i <= n; i++) {
        snprintf(order, sizeof order, "ord-%d", i);
        my(u, (uint64_t)i, 1, order, "u");
    }
    for (int i = 1; i <= n; i += 2) {
        snprintf(order, sizeof order, "ord-%d", i);
        snprintf(record, sizeof record, "1,%d,0,u", i);
        rec(u, order, record);
    }
    assert_int_equal(sch_rc_union_count(u), n);
    sch_rc_plan p;
    plan_ok(u, (uint64_t)n, &p);
    assert_int_equal(p.restored, n / 2);
    assert_int_equal(p.new_ded, n);
    assert_int_equal(p.nlines, 0);
    sch_rc_union_free(u);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lost_record_restored),
        cmocka_unit_test(test_reused_seqs_renumbered),
        cmocka_unit_test(test_duplicate_kept_once),
        cmocka_unit_test(test_releases),
        cmocka_unit_test(test_redis_only_and_tombstone),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_many_orders),
    };
    return T_CMOCKA_MAIN(argc, argv, "reconcile", tests, NULL, NULL);
}
