/* test_cluster_slot.c -- sh_cluster_slot against slots a real Redis computed.
 *
 * The router sends each command to the owner of its key's slot; a slot off by
 * one bit means every command costs a MOVED round trip (or, for hash tags, a
 * CROSSSLOT error in scripts). So the expected values below are not derived
 * from our own CRC: they were printed by a real server. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "t_cmocka.h"

#include "sh_cluster.h"
#include "sh_limits.h"

#include <stdio.h>
#include <string.h>

typedef struct slot_case {
    const char *key;
    uint16_t slot;
} slot_case;

/* Expected slots from redis-server 7.0.15 on this machine:
 *   redis-cli -p 23000 CLUSTER KEYSLOT "<key>"
 * (dev cluster on ports 23000-23005). Keys are C strings, so the UTF-8 ones
 * are written as escaped bytes. */
static const slot_case plain_cases[] = {
    {"", 0},
    {"foo", 12182},
    {"bar", 5061},
    {"123456789", 12739}, /* the CRC16-XMODEM check value 0x31C3 & 16383 */
    {"user:1000", 1649},
    {"tag200", 8268},
};

static const slot_case tag_cases[] = {
    {"{a}", 15495},
    {"a{b}c", 3300},
    {"{s:sku1}:pool", 8913},
    {"{s:sku1}:grants", 8913},
    {"{s:sku1:3}:st", 3118},
    {"{s:sku1:3}:d", 3118},
    {"{o:sku1:order-9}", 5139},
    {"{u:sku1:user-7}", 12648},
    {"{tag200}", 8268},
};

static const slot_case edge_cases[] = {
    {"{}", 15257},     /* empty tag: whole key */
    {"a{}b", 13694},   /* empty tag: whole key */
    {"{a}{b}", 15495}, /* first tag only: "a" */
    {"a{b}{c}", 3300}, /* first tag only: "b" */
    {"a{b", 13340},    /* no closing brace: whole key */
    {"{{a}}", 10276},  /* tag is "{a" */
    {"}{a}", 15495},   /* a '}' before the '{' does not count */
    {"{", 4092},       {"}", 12090},
    {"a}b{c}", 7365},  {"{}{a}", 13650}, /* first '{' has an empty tag: whole key, "{a}" ignored */
    {"x{}", 2608},
};

static const slot_case unicode_cases[] = {
    {"h\xc3\xa9llo", 11061},                         /* "héllo" */
    {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 12788}, /* "日本語" */
    {"{\xc3\xa9}x", 10180},                          /* "{é}x" */
};

static void check_cases(const slot_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint16_t got = sh_cluster_slot(cases[i].key, strlen(cases[i].key));
        if (got != cases[i].slot) {
            fail_msg("key \"%s\": slot %u, redis says %u", cases[i].key, got, cases[i].slot);
        }
    }
}

static void test_plain_keys(void **state)
{
    (void)state;
    check_cases(plain_cases, sizeof plain_cases / sizeof plain_cases[0]);
}

static void test_hash_tags(void **state)
{
    (void)state;
    check_cases(tag_cases, sizeof tag_cases / sizeof tag_cases[0]);
}

static void test_tag_edge_cases(void **state)
{
    (void)state;
    check_cases(edge_cases, sizeof edge_cases / sizeof edge_cases[0]);
}

static void test_unicode_bytes(void **state)
{
    (void)state;
    check_cases(unicode_cases, sizeof unicode_cases / sizeof unicode_cases[0]);
}

/* 200-byte keys: redis-cli KEYSLOT of 'a'..'z' repeated to 200 bytes gave 3341;
 * 100 'k', "{tag200}", 92 'x' gave 8268 (= KEYSLOT tag200). */
static void test_long_keys(void **state)
{
    (void)state;
    char plain[201];
    for (int i = 0; i < 200; i++) {
        plain[i] = (char)('a' + i % 26);
    }
    plain[200] = '\0';
    assert_int_equal(strlen(plain), 200);
    assert_int_equal(sh_cluster_slot(plain, 200), 3341);

    char tagged[201];
    memset(tagged, 'k', 100);
    memcpy(tagged + 100, "{tag200}", 8);
    memset(tagged + 108, 'x', 92);
    tagged[200] = '\0';
    assert_int_equal(strlen(tagged), 200);
    assert_int_equal(sh_cluster_slot(tagged, 200), 8268);
}

/* Keys are bytes: the length decides, not a NUL, and a NUL inside hashes. */
static void test_length_not_nul(void **state)
{
    (void)state;
    assert_int_equal(sh_cluster_slot("foobar", 3), 12182); /* "foo" */
    assert_int_equal(sh_cluster_slot("{a}xyz", 3), 15495); /* "{a}" */
    assert_int_equal(sh_cluster_slot("a{b}", 3), 13340);   /* "a{b": tag cut off */
    assert_int_equal(sh_cluster_slot(NULL, 0), 0);
    assert_int_not_equal(sh_cluster_slot("a\0b", 3), sh_cluster_slot("a", 1));
}

/* Same tag, same slot, whatever surrounds it: what DESIGN.md 4 relies on to
 * keep a partition's keys in one script call. */
static void test_same_tag_same_slot(void **state)
{
    (void)state;
    const char *suffixes[] = {"", ":pool", ":grants", ":st", ":d", ":o", "{x}", "}", "{"};
    const char *tags[] = {"s:sku1", "s:sku1:3", "o:sku1:order-9", "u:sku1:user-7", "\xc3\xa9"};
    for (size_t t = 0; t < sizeof tags / sizeof tags[0]; t++) {
        char bare[64];
        snprintf(bare, sizeof bare, "%s", tags[t]);
        uint16_t want = sh_cluster_slot(bare, strlen(bare));
        for (size_t s = 0; s < sizeof suffixes / sizeof suffixes[0]; s++) {
            char key[128];
            snprintf(key, sizeof key, "pre{%s}%s", tags[t], suffixes[s]);
            assert_int_equal(sh_cluster_slot(key, strlen(key)), want);
        }
    }
}

/* Every slot is in range and the 16384 slots are all reachable from short keys. */
static void test_range_and_spread(void **state)
{
    (void)state;
    static unsigned char seen[SH_CLUSTER_SLOTS];
    memset(seen, 0, sizeof seen);
    int distinct = 0;
    for (int i = 0; i < 200000 && distinct < SH_CLUSTER_SLOTS; i++) {
        char key[32];
        int n = snprintf(key, sizeof key, "k%d", i);
        uint16_t s = sh_cluster_slot(key, (size_t)n);
        assert_true(s < SH_CLUSTER_SLOTS);
        if (!seen[s]) {
            seen[s] = 1;
            distinct++;
        }
    }
    assert_int_equal(distinct, SH_CLUSTER_SLOTS);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_keys),         cmocka_unit_test(test_hash_tags),
        cmocka_unit_test(test_tag_edge_cases),     cmocka_unit_test(test_unicode_bytes),
        cmocka_unit_test(test_long_keys),          cmocka_unit_test(test_length_not_nul),
        cmocka_unit_test(test_same_tag_same_slot), cmocka_unit_test(test_range_and_spread),
    };
    return T_CMOCKA_MAIN(argc, argv, "cluster_slot", tests, NULL, NULL);
}
