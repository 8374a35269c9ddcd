/* test_registry.c -- the scheduler's registry: lookup, limits, routing, accounting.
 *
 * Unit tests link only libsh.a, not the scheduler's objects, so the module
 * under test is compiled into this file directly: the #include of
 * sch_registry.c below is deliberate. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "t_cmocka.h"

#include "../../scheduler/sch_registry.c"

#include <stdio.h>
#include <string.h>

/* Builds a SKU spec with nparts partitions of s0 units each (s1 = 0). */
static sch_sku make_sku(const char *id, uint16_t nparts, int64_t s0, sch_part *parts)
{
    sch_sku s;
    memset(&s, 0, sizeof s);
    snprintf(s.id, sizeof s.id, "%s", id);
    snprintf(s.name, sizeof s.name, "name of %s", id);
    s.total = (int64_t)nparts * s0 + 100;
    s.avail = 100;
    s.nparts = nparts;
    s.min_chunk = 1;
    s.max_chunk = 1000;
    memset(parts, 0, sizeof *parts * nparts);
    for (uint16_t i = 0; i < nparts; i++) {
        parts[i].s0 = s0;
    }
    s.parts = parts;
    return s;
}

static sch_registry *new_reg(int nnodes)
{
    sch_registry *r = NULL;
    assert_int_equal(sch_registry_new(&r, nnodes), SH_OK);
    assert_non_null(r);
    return r;
}

static void test_add_find_limits_duplicates(void **state)
{
    (void)state;
    sch_registry *bad = NULL;
    assert_int_equal(sch_registry_new(&bad, 0), SH_EINVAL);
    assert_null(bad);

    sch_registry *r = new_reg(3);
    sch_part parts[SH_PARTITIONS_PER_SKU_MAX + 1];
    sch_sku spec = make_sku("sku-1", 4, 10, parts);
    sch_sku *got = NULL;
    assert_int_equal(sch_registry_add(r, &spec, &got), SH_OK);
    assert_non_null(got);
    assert_ptr_not_equal(got->parts, parts); /* copied */
    assert_string_equal(got->name, "name of sku-1");
    for (uint16_t i = 0; i < 4; i++) {
        assert_int_equal(got->parts[i].index, i);
        assert_int_equal(got->parts[i].node, i % 3); /* partition index % nnodes */
    }
    /* The caller's array may go away: the registry owns its copy. */
    parts[0].s0 = 999;
    assert_int_equal(got->parts[0].s0, 10);

    assert_ptr_equal(sch_registry_find(r, "sku-1", 5), got);
    assert_null(sch_registry_find(r, "sku-", 4));
    assert_null(sch_registry_find(r, "sku-12", 6));
    assert_null(sch_registry_find(r, "", 0));
    assert_int_equal(sch_registry_count(r), 1);
    assert_ptr_equal(sch_registry_at(r, 0), got);

    /* Duplicate id: SH_EEXIST, the first entry stays and is returned. */
    sch_sku again = make_sku("sku-1", 2, 5, parts);
    sch_sku *dup = NULL;
    assert_int_equal(sch_registry_add(r, &again, &dup), SH_EEXIST);
    assert_ptr_equal(dup, got);
    assert_int_equal(got->nparts, 4);
    assert_int_equal(sch_registry_count(r), 1);

    /* Partition count bounds. */
    sch_sku none = make_sku("sku-0", 1, 1, parts);
    none.nparts = 0;
    assert_int_equal(sch_registry_add(r, &none, NULL), SH_EINVAL);
    sch_sku many = make_sku("sku-many", SH_PARTITIONS_PER_SKU_MAX + 1, 1, parts);
    assert_int_equal(sch_registry_add(r, &many, NULL), SH_ELIMIT);
    sch_sku max = make_sku("sku-max", SH_PARTITIONS_PER_SKU_MAX, 1, parts);
    assert_int_equal(sch_registry_add(r, &max, NULL), SH_OK);
    sch_sku noid = make_sku("", 1, 1, parts);
    assert_int_equal(sch_registry_add(r, &noid, NULL), SH_EINVAL);
    assert_int_equal(sch_registry_count(r), 2);
    sch_registry_free(r);
}

static void test_sku_count_limit(void **state)
{
    (void)state;
    sch_registry *r = new_reg(1);
    sch_part parts[1];
    char id[32];
    for (int i = 0; i < SH_SKUS_MAX; i++) {
        snprintf(id, sizeof id, "s%d", i);
        sch_sku spec = make_sku(id, 1, 1, parts);
        assert_int_equal(sch_registry_add(r, &spec, NULL), SH_OK);
    }
    assert_int_equal(sch_registry_count(r), SH_SKUS_MAX);
    sch_sku one_more = make_sku("one-more", 1, 1, parts);
    assert_int_equal(sch_registry_add(r, &one_more, NULL), SH_ELIMIT);
    /* A duplicate is still recognised when full. */
    sch_sku dup = make_sku("s7", 1, 1, parts);
    assert_int_equal(sch_registry_add(r, &dup, NULL), SH_EEXIST);
    /* Every one is found, by id and length. */
    for (int i = 0; i < SH_SKUS_MAX; i++) {
        snprintf(id, sizeof id, "s%d", i);
        sch_sku *s = sch_registry_find(r, id, strlen(id));
        assert_non_null(s);
        assert_string_equal(s->id, id);
    }
    assert_null(sch_registry_find(r, "one-more", 8));
    sch_registry_free(r);
}

static void test_round_robin_order(void **state)
{
    (void)state;
    sch_registry *r = new_reg(2);
    sch_part parts[4];
    sch_sku spec = make_sku("rr", 4, 100, parts);
    sch_sku *s = NULL;
    assert_int_equal(sch_registry_add(r, &spec, &s), SH_OK);
    /* Three full turns visit 0,1,2,3 in order. */
    for (int turn = 0; turn < 3; turn++) {
        for (int i = 0; i < 4; i++) {
            assert_int_equal(sch_registry_route(s, 1, -1), i);
        }
    }
    sch_registry_free(r);
}

static void test_skips_low_and_closed(void **state)
{
    (void)state;
    sch_registry *r = new_reg(1);
    sch_part parts[4];
    sch_sku spec = make_sku("skip", 4, 10, parts);
    sch_sku *s = NULL;
    assert_int_equal(sch_registry_add(r, &spec, &s), SH_OK);
    s->parts[1].closed = 1; /* closed: never */
    s->parts[2].s0 = 2;     /* too low for qty 3 */
    s->parts[2].s1 = 0;
    s->parts[3].s0 = 1; /* split across sub-domains still counts */
    s->parts[3].s1 = 2;
    assert_int_equal(sch_registry_route(s, 3, -1), 0);
    assert_int_equal(sch_registry_route(s, 3, -1), 3);
    assert_int_equal(sch_registry_route(s, 3, -1), 0);
    /* qty 2 fits partition 2 again, never partition 1. */
    assert_int_equal(sch_registry_route(s, 2, -1), 2);
    assert_int_equal(sch_registry_route(s, 2, -1), 3);
    assert_int_equal(sch_registry_route(s, 2, -1), 0);
    /* No open partition covers qty 11. */
    assert_int_equal(sch_registry_route(s, 11, -1), -1);
    /* A reply saying "closed" closes it; one saying open reopens it. */
    sch_part_observe(&s->parts[0], 0, 50, 0, SH_PART_F_CLOSED);
    assert_true(s->parts[0].closed);
    assert_int_equal(sch_registry_route(s, 20, -1), -1);
    sch_part_observe(&s->parts[0], 0, 50, 0, 0);
    assert_false(s->parts[0].closed);
    assert_int_equal(sch_registry_route(s, 20, -1), 0);
    sch_registry_free(r);
}

static void test_skip_argument(void **state)
{
    (void)state;
    sch_registry *r = new_reg(1);
    sch_part parts[3];
    sch_sku spec = make_sku("skiparg", 3, 10, parts);
    sch_sku *s = NULL;
    assert_int_equal(sch_registry_add(r, &spec, &s), SH_OK);
    assert_int_equal(sch_registry_route(s, 1, 0), 1);
    assert_int_equal(sch_registry_route(s, 1, 2), 0);
    assert_int_equal(sch_registry_route(s, 1, 0), 1);
    assert_int_equal(sch_registry_route(s, 1, 1), 2);
    /* The only partition able to serve is the skipped one: none. */
    s->parts[0].s0 = 0;
    s->parts[2].s0 = 0;
    assert_int_equal(sch_registry_route(s, 1, 1), -1);
    assert_int_equal(sch_registry_route(s, 1, -1), 1);
    sch_registry_free(r);
}

static void test_inflight_accounting(void **state)
{
    (void)state;
    sch_registry *r = new_reg(1);
    sch_part parts[2];
    sch_sku spec = make_sku("inflight", 2, 5, parts);
    sch_sku *s = NULL;
    assert_int_equal(sch_registry_add(r, &spec, &s), SH_OK);
    sch_part *p0 = &s->parts[0];
    assert_int_equal(sch_part_free(p0), 5);
    p0->s1 = 3;
    p0->inflight_units = 6;
    assert_int_equal(sch_part_free(p0), 2);
    /* Free units never go below zero, even when more is in flight. */
    p0->inflight_units = 20;
    assert_int_equal(sch_part_free(p0), 0);
    /* Routing counts what is in flight: partition 0 cannot take 3 more. */
    p0->inflight_units = 6;
    assert_int_equal(sch_registry_route(s, 3, -1), 1);
    assert_int_equal(sch_registry_route(s, 3, -1), 1);
    s->parts[1].inflight_units = 4;
    assert_int_equal(sch_registry_route(s, 3, -1), -1);
    assert_int_equal(sch_registry_route(s, 2, -1), 0);
    /* Answers settle: back to full. */
    p0->inflight_units = 0;
    s->parts[1].inflight_units = 0;
    assert_int_equal(sch_registry_route(s, 8, -1), 0);
    sch_registry_free(r);
}

static void test_remaining_and_observe(void **state)
{
    (void)state;
    sch_registry *r = new_reg(1);
    sch_part parts[3];
    sch_sku spec = make_sku("rem", 3, 7, parts);
    sch_sku *s = NULL;
    assert_int_equal(sch_registry_add(r, &spec, &s), SH_OK);
    s->avail = 40;
    s->pending_units = 5;
    s->parts[1].s1 = 4;
    /* avail + pending + sum(s0 + s1); in-flight units do not count against it. */
    s->parts[2].inflight_units = 7;
    assert_int_equal(sch_sku_remaining(s), 40 + 5 + 7 + 7 + 4 + 7);
    /* observe() replaces a partition's view and counts flips. */
    sch_part_observe(&s->parts[1], 1, 0, 2, SH_PART_F_FLIPPED | SH_PART_F_STANDBY_EMPTY);
    assert_int_equal(s->parts[1].active, 1);
    assert_int_equal(s->parts[1].s0, 0);
    assert_int_equal(s->parts[1].s1, 2);
    assert_int_equal(s->parts[1].flips, 1);
    assert_int_equal(s->parts[1].flags, SH_PART_F_FLIPPED | SH_PART_F_STANDBY_EMPTY);
    assert_int_equal(sch_sku_remaining(s), 40 + 5 + 7 + 2 + 7);
    /* Negative counters from a bad reply are clamped, never trusted. */
    sch_part_observe(&s->parts[0], 7, -5, -1, 0);
    assert_int_equal(s->parts[0].active, 1);
    assert_int_equal(s->parts[0].s0, 0);
    assert_int_equal(s->parts[0].s1, 0);
    assert_int_equal(sch_sku_remaining(s), 40 + 5 + 2 + 7);
    s->avail = 0;
    s->pending_units = 0;
    sch_part_observe(&s->parts[1], 0, 0, 0, SH_PART_F_EXHAUSTED);
    sch_part_observe(&s->parts[2], 0, 0, 0, SH_PART_F_EXHAUSTED);
    assert_int_equal(sch_sku_remaining(s), 0);
    assert_int_equal(sch_registry_route(s, 1, -1), -1);
    sch_registry_free(r);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_find_limits_duplicates),
        cmocka_unit_test(test_sku_count_limit),
        cmocka_unit_test(test_round_robin_order),
        cmocka_unit_test(test_skips_low_and_closed),
        cmocka_unit_test(test_skip_argument),
        cmocka_unit_test(test_inflight_accounting),
        cmocka_unit_test(test_remaining_and_observe),
    };
    return T_CMOCKA_MAIN(argc, argv, "registry", tests, NULL, NULL);
}
