/* test_cluster.c -- the slot router against a real 6-node Redis Cluster.
 *
 * The router's value is in what it does when the cluster moves under it, so
 * these tests move it: a slot is resharded by hand (MOVED), half-migrated
 * (ASK, TRYAGAIN), a master is failed over, script caches are flushed
 * (NOSCRIPT) and connections are killed (I/O errors). The cluster comes from
 * the environment:
 *   REDIS_SEED=127.0.0.1:21000  REDIS_PORTS="21000 21001 ... 21005"
 * and the test fails (never skips) without it. Keys carry a per-run prefix so
 * reruns against the same cluster do not collide, and every test leaves the
 * cluster with all slots assigned, no open slots and cluster_state:ok -- the
 * last test asserts exactly that. Admin commands (SETSLOT, MIGRATE, FAILOVER)
 * go over plain hiredis connections, not through the router under test. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "t_cmocka.h"

#include "sh_clock.h"
#include "sh_cluster.h"
#include "sh_limits.h"
#include "sh_log.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PORTS_MAX      16
#define ADDR_BYTES     300
#define WAIT_MS_MAX    20000 /* every wait loop gives up after this */
#define ROUTER_TIMEOUT 2000
#define KEY_SEARCH_MAX 200000
#define PIPELINE_PAIRS 150 /* 150 SET + 150 GET = 300 commands */
#define FAILOVER_KEYS  20
#define SCRIPT_INCRBY  "return redis.call('INCRBY', KEYS[1], ARGV[1])"

static char g_seed[ADDR_BYTES];
static char g_host[256];
static int g_ports[PORTS_MAX];
static int g_nports;
static char g_prefix[64];

/* ==== environment ========================================================== */

static void env_load(void)
{
    const char *seed = getenv("REDIS_SEED");
    const char *ports = getenv("REDIS_PORTS");
    if (seed == NULL || seed[0] == '\0') {
        fail_msg("REDIS_SEED is not set: export REDIS_SEED=host:port of a cluster node "
                 "(and REDIS_PORTS=\"p1 p2 ...\" for all nodes) before running this test");
    }
    if (ports == NULL || ports[0] == '\0') {
        fail_msg("REDIS_PORTS is not set: export REDIS_PORTS=\"p1 p2 ...\" (all cluster nodes)");
    }
    snprintf(g_seed, sizeof g_seed, "%s", seed);
    const char *colon = strrchr(seed, ':');
    assert_non_null(colon);
    snprintf(g_host, sizeof g_host, "%.*s", (int)(colon - seed), seed);
    g_nports = 0;
    const char *p = ports;
    while (*p != '\0' && g_nports < PORTS_MAX) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) {
            p++;
            continue;
        }
        assert_true(v > 0 && v < 65536);
        g_ports[g_nports++] = (int)v;
        p = end;
    }
    assert_true(g_nports >= 6);
}

static int addr_port(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    assert_non_null(colon);
    return atoi(colon + 1);
}

static sh_cluster *router_open(void)
{
    sh_cluster *c = NULL;
    sh_err rc = sh_cluster_open(&c, g_seed, ROUTER_TIMEOUT);
    if (rc != SH_OK) {
        fail_msg("sh_cluster_open(%s): %s", g_seed, sh_strerror(rc));
    }
    assert_non_null(c);
    return c;
}

/* ==== admin connections (plain hiredis) =================================== */

static redisContext *adm_connect(int port)
{
    struct timeval tv = {5, 0};
    redisContext *ctx = redisConnectWithTimeout(g_host, port, tv);
    assert_non_null(ctx);
    if (ctx->err != 0) {
        fail_msg("connect %s:%d: %s", g_host, port, ctx->errstr);
    }
    assert_int_equal(redisSetTimeout(ctx, tv), REDIS_OK);
    return ctx;
}

static redisReply *adm_vcmd(int port, const char *fmt, va_list ap)
{
    redisContext *ctx = adm_connect(port);
    redisReply *r = redisvCommand(ctx, fmt, ap);
    if (r == NULL) {
        fail_msg("command on port %d: %s", port, ctx->errstr);
    }
    redisFree(ctx);
    return r;
}

static redisReply *adm(int port, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static redisReply *adm(int port, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = adm_vcmd(port, fmt, ap);
    va_end(ap);
    return r;
}

/* Runs a command that must answer +OK. */
static void adm_ok(int port, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void adm_ok(int port, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = adm_vcmd(port, fmt, ap);
    va_end(ap);
    if (r->type != REDIS_REPLY_STATUS || strcmp(r->str, "OK") != 0) {
        fail_msg("port %d: '%s' answered type=%d %s", port, fmt, r->type,
                 r->str != NULL ? r->str : "");
    }
    freeReplyObject(r);
}

static void node_id(int port, char id[64])
{
    redisReply *r = adm(port, "CLUSTER MYID");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_true(r->len > 0 && r->len < 64);
    memcpy(id, r->str, r->len + 1);
    freeReplyObject(r);
}

/* ROLE: "master" / "slave"; for a slave also its master's port and link state. */
static bool node_is_master(int port, int *master_port, bool *link_up)
{
    redisReply *r = adm(port, "ROLE");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_true(r->elements >= 1);
    assert_int_equal(r->element[0]->type, REDIS_REPLY_STRING);
    bool master = strcmp(r->element[0]->str, "master") == 0;
    if (!master && master_port != NULL) {
        assert_true(r->elements >= 4);
        *master_port = (int)r->element[2]->integer;
        *link_up = strcmp(r->element[3]->str, "connected") == 0;
    }
    freeReplyObject(r);
    return master;
}

static int masters_list(int out[PORTS_MAX])
{
    int n = 0;
    for (int i = 0; i < g_nports; i++) {
        if (node_is_master(g_ports[i], NULL, NULL)) {
            out[n++] = g_ports[i];
        }
    }
    return n;
}

/* ==== cluster health and slot moves ======================================= */

static bool node_healthy(int port)
{
    redisReply *r = adm(port, "CLUSTER INFO");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    bool ok = strstr(r->str, "cluster_state:ok") != NULL &&
              strstr(r->str, "cluster_slots_assigned:16384") != NULL &&
              strstr(r->str, "cluster_slots_ok:16384") != NULL;
    freeReplyObject(r);
    if (!ok) {
        return false;
    }
    /* No open (migrating/importing) slot: CLUSTER NODES shows them as [..] on
     * the node's own line. */
    r = adm(port, "CLUSTER NODES");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    const char *me = strstr(r->str, "myself");
    assert_non_null(me);
    const char *eol = strchr(me, '\n');
    size_t len = eol != NULL ? (size_t)(eol - me) : strlen(me);
    ok = memchr(me, '[', len) == NULL;
    freeReplyObject(r);
    return ok;
}

static bool cluster_healthy_wait(void)
{
    uint64_t deadline = sh_clock_mono_ms() + WAIT_MS_MAX;
    while (sh_clock_mono_ms() < deadline) {
        bool all = true;
        for (int i = 0; i < g_nports && all; i++) {
            all = node_healthy(g_ports[i]);
        }
        if (all) {
            return true;
        }
        sh_clock_sleep_ms(100);
    }
    return false;
}

/* True when the node at port sees rep_id as a replica of master_id and
 * master_id as a healthy master (CLUSTER NODES: id addr flags master-id ...). */
static bool node_sees_pair(int port, const char *master_id, const char *rep_id)
{
    redisReply *r = adm(port, "CLUSTER NODES");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    bool master_ok = false, rep_ok = false;
    char *save = NULL;
    for (char *line = strtok_r(r->str, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char id[64], addr[128], flags[128], of[64];
        if (sscanf(line, "%63s %127s %127s %63s", id, addr, flags, of) != 4) {
            continue;
        }
        if (strcmp(id, master_id) == 0) {
            master_ok = strstr(flags, "master") != NULL && strstr(flags, "fail") == NULL;
        } else if (strcmp(id, rep_id) == 0) {
            rep_ok = strstr(flags, "slave") != NULL && strstr(flags, "fail") == NULL &&
                     strcmp(of, master_id) == 0;
        }
    }
    freeReplyObject(r);
    return master_ok && rep_ok;
}

/* Waits until every node agrees rep_port replicates master_port. A manual
 * failover asked for before that is silently dropped by the master (it only
 * accepts MFSTART from nodes it knows as its replicas) and times out. */
static void pair_agreed_wait(int master_port, int rep_port)
{
    char master_id[64], rep_id[64];
    node_id(master_port, master_id);
    node_id(rep_port, rep_id);
    uint64_t deadline = sh_clock_mono_ms() + WAIT_MS_MAX;
    for (;;) {
        bool all = true;
        for (int i = 0; i < g_nports && all; i++) {
            all = node_sees_pair(g_ports[i], master_id, rep_id);
        }
        if (all) {
            return;
        }
        if (sh_clock_mono_ms() >= deadline) {
            fail_msg("nodes do not agree that %d replicates %d", rep_port, master_port);
        }
        sh_clock_sleep_ms(100);
    }
}

/* Waits until every node's CLUSTER SLOTS (read through a fresh router seeded
 * with that node alone) names want_addr as slot's owner. */
static void slot_owner_wait(uint16_t slot, const char *want_addr)
{
    uint64_t deadline = sh_clock_mono_ms() + WAIT_MS_MAX;
    for (;;) {
        int agree = 0;
        for (int i = 0; i < g_nports; i++) {
            char seed[ADDR_BYTES];
            snprintf(seed, sizeof seed, "%s:%d", g_host, g_ports[i]);
            sh_cluster *c = NULL;
            if (sh_cluster_open(&c, seed, ROUTER_TIMEOUT) != SH_OK) {
                continue;
            }
            char addr[ADDR_BYTES];
            if (sh_cluster_slot_owner(c, slot, addr, sizeof addr) == SH_OK &&
                strcmp(addr, want_addr) == 0) {
                agree++;
            }
            sh_cluster_close(c);
        }
        if (agree == g_nports) {
            return;
        }
        if (sh_clock_mono_ms() >= deadline) {
            fail_msg("slot %u: only %d of %d nodes see owner %s", slot, agree, g_nports, want_addr);
        }
        sh_clock_sleep_ms(100);
    }
}

/* Moves every key of slot held by port to dst with ASKING + MIGRATE (ASKING
 * lets an importing node hand back keys of a slot it does not own). */
static void slot_drain(uint16_t slot, int port, int dst)
{
    for (int round = 0; round < 1000; round++) {
        redisReply *keys = adm(port, "CLUSTER GETKEYSINSLOT %u 100", slot);
        assert_int_equal(keys->type, REDIS_REPLY_ARRAY);
        if (keys->elements == 0) {
            freeReplyObject(keys);
            return;
        }
        int argc = 8 + (int)keys->elements;
        const char **argv = calloc((size_t)argc, sizeof *argv);
        size_t *argvlen = calloc((size_t)argc, sizeof *argvlen);
        assert_non_null(argv);
        assert_non_null(argvlen);
        char dst_port[16];
        snprintf(dst_port, sizeof dst_port, "%d", dst);
        const char *head[8] = {"MIGRATE", g_host, dst_port, "", "0", "5000", "REPLACE", "KEYS"};
        for (int i = 0; i < 8; i++) {
            argv[i] = head[i];
            argvlen[i] = strlen(head[i]);
        }
        for (size_t k = 0; k < keys->elements; k++) {
            argv[8 + k] = keys->element[k]->str;
            argvlen[8 + k] = keys->element[k]->len;
        }
        redisContext *ctx = adm_connect(port);
        redisReply *asking = redisCommand(ctx, "ASKING");
        assert_non_null(asking);
        freeReplyObject(asking);
        redisReply *r = redisCommandArgv(ctx, argc, argv, argvlen);
        assert_non_null(r);
        if (r->type != REDIS_REPLY_STATUS) {
            fail_msg("MIGRATE slot %u %d->%d: %s", slot, port, dst, r->str ? r->str : "?");
        }
        freeReplyObject(r);
        redisFree(ctx);
        free(argv);
        free(argvlen);
        freeReplyObject(keys);
    }
    fail_msg("slot %u did not drain from port %d", slot, port);
}

/* Moves slot from src to dst the way redis-cli --cluster reshard does; with
 * src == dst it rolls a half-done migration back to src. Ends with the slot
 * stable everywhere and every node agreeing on the owner. */
static void slot_move(uint16_t slot, int src, int dst)
{
    char src_id[64], dst_id[64];
    node_id(src, src_id);
    node_id(dst, dst_id);
    int masters[PORTS_MAX];
    int nm = masters_list(masters);
    if (src != dst) {
        adm_ok(dst, "CLUSTER SETSLOT %u IMPORTING %s", slot, src_id);
        adm_ok(src, "CLUSTER SETSLOT %u MIGRATING %s", slot, dst_id);
    } else {
        /* Rolling back: while the owner is MIGRATING it answers ASK to the
         * RESTORE-ASKING that MIGRATE sends it for keys it no longer has. */
        adm_ok(dst, "CLUSTER SETSLOT %u STABLE", slot);
    }
    for (int i = 0; i < nm; i++) {
        if (masters[i] != dst) {
            slot_drain(slot, masters[i], dst);
        }
    }
    adm_ok(dst, "CLUSTER SETSLOT %u NODE %s", slot, dst_id);
    for (int i = 0; i < nm; i++) {
        if (masters[i] != dst) {
            adm_ok(masters[i], "CLUSTER SETSLOT %u NODE %s", slot, dst_id);
        }
    }
    for (int i = 0; i < nm; i++) {
        adm_ok(masters[i], "CLUSTER SETSLOT %u STABLE", slot);
    }
    char want[ADDR_BYTES];
    snprintf(want, sizeof want, "%s:%d", g_host, dst);
    slot_owner_wait(slot, want);
}

/* A slot a test is moving, and its owner before: the teardown puts it back
 * if the test stopped half way, so one failure does not break later runs. */
static int g_heal_slot = -1;
static int g_heal_port;

static int slot_owner_port(int seen_by, uint16_t slot)
{
    char seed[ADDR_BYTES], addr[ADDR_BYTES];
    snprintf(seed, sizeof seed, "%s:%d", g_host, seen_by);
    sh_cluster *c = NULL;
    assert_int_equal(sh_cluster_open(&c, seed, ROUTER_TIMEOUT), SH_OK);
    assert_int_equal(sh_cluster_slot_owner(c, slot, addr, sizeof addr), SH_OK);
    sh_cluster_close(c);
    return addr_port(addr);
}

static int teardown_heal_slot(void **state)
{
    (void)state;
    if (g_heal_slot >= 0) {
        uint16_t slot = (uint16_t)g_heal_slot;
        g_heal_slot = -1;
        SH_WARN("test", "restoring slot %u to port %d", slot, g_heal_port);
        slot_move(slot, slot_owner_port(g_heal_port, slot), g_heal_port);
    }
    return 0;
}

/* ==== router helpers ======================================================= */

static void r_set(sh_cluster *c, const char *key, const char *val)
{
    const char *argv[3] = {"SET", key, val};
    size_t argvlen[3] = {3, strlen(key), strlen(val)};
    redisReply *r = NULL;
    sh_err rc = sh_cluster_command(c, key, strlen(key), 3, argv, argvlen, &r);
    if (rc != SH_OK) {
        fail_msg("SET %s: %s", key, sh_strerror(rc));
    }
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    assert_string_equal(r->str, "OK");
    freeReplyObject(r);
}

static void r_get_expect(sh_cluster *c, const char *key, const char *want)
{
    const char *argv[2] = {"GET", key};
    size_t argvlen[2] = {3, strlen(key)};
    redisReply *r = NULL;
    sh_err rc = sh_cluster_command(c, key, strlen(key), 2, argv, argvlen, &r);
    if (rc != SH_OK) {
        fail_msg("GET %s: %s", key, sh_strerror(rc));
    }
    assert_non_null(r);
    if (r->type != REDIS_REPLY_STRING) {
        fail_msg("GET %s: reply type %d %s", key, r->type, r->str != NULL ? r->str : "");
    }
    assert_string_equal(r->str, want);
    freeReplyObject(r);
}

static void key_slot_owner(sh_cluster *c, const char *key, char *addr)
{
    assert_int_equal(sh_cluster_slot_owner(c, sh_cluster_slot(key, strlen(key)), addr, ADDR_BYTES),
                     SH_OK);
}

/* A key "<prefix>:<stem>:<n>" whose slot the router maps to owner_addr. */
static void key_for_owner(sh_cluster *c, const char *stem, const char *owner_addr, char *key,
                          size_t keylen)
{
    for (int n = 0; n < KEY_SEARCH_MAX; n++) {
        snprintf(key, keylen, "%s:%s:%d", g_prefix, stem, n);
        char addr[ADDR_BYTES];
        if (sh_cluster_slot_owner(c, sh_cluster_slot(key, strlen(key)), addr, sizeof addr) ==
                SH_OK &&
            strcmp(addr, owner_addr) == 0) {
            return;
        }
    }
    fail_msg("no key found for owner %s", owner_addr);
}

static int master_addrs(sh_cluster *c, char addrs[][ADDR_BYTES])
{
    int n = sh_cluster_master_count(c);
    assert_true(n >= 1 && n <= PORTS_MAX);
    for (int i = 0; i < n; i++) {
        assert_int_equal(sh_cluster_master_addr(c, i, addrs[i], ADDR_BYTES), SH_OK);
    }
    return n;
}

/* ==== tests ================================================================ */

/* a. Keys on each of the three masters, SET then GET through the router. */
static void test_open_and_route_to_every_master(void **state)
{
    (void)state;
    env_load();
    sh_cluster *c = router_open();
    assert_int_equal(sh_cluster_master_count(c), 3);
    char masters[PORTS_MAX][ADDR_BYTES];
    int nm = master_addrs(c, masters);
    assert_int_equal(nm, 3);
    char reached[3][ADDR_BYTES];
    for (int m = 0; m < nm; m++) {
        char key[128], val[64], addr[ADDR_BYTES];
        key_for_owner(c, "a", masters[m], key, sizeof key);
        snprintf(val, sizeof val, "v-%d", m);
        r_set(c, key, val);
        r_get_expect(c, key, val);
        key_slot_owner(c, key, addr);
        snprintf(reached[m], ADDR_BYTES, "%s", addr);
    }
    assert_string_not_equal(reached[0], reached[1]);
    assert_string_not_equal(reached[0], reached[2]);
    assert_string_not_equal(reached[1], reached[2]);
    sh_cluster_stats st;
    sh_cluster_stats_get(c, &st);
    assert_int_equal(st.commands, 6);
    assert_int_equal(st.moved, 0);
    assert_true(st.refreshes >= 1);
    sh_cluster_close(c);
}

/* b. A slot moves A -> B behind the router's back: one MOVED, then direct. */
static void test_moved_after_reshard(void **state)
{
    (void)state;
    env_load();
    sh_cluster *c = router_open();
    sh_cluster *c2 = router_open(); /* a second stale router, driven by a pipeline */
    char masters[PORTS_MAX][ADDR_BYTES];
    int nm = master_addrs(c, masters);
    assert_true(nm >= 2);
    char key[128], a_addr[ADDR_BYTES], b_addr[ADDR_BYTES];
    snprintf(key, sizeof key, "%s:moved", g_prefix);
    uint16_t slot = sh_cluster_slot(key, strlen(key));
    key_slot_owner(c, key, a_addr);
    snprintf(b_addr, sizeof b_addr, "%s",
             strcmp(masters[0], a_addr) == 0 ? masters[1] : masters[0]);
    r_set(c, key, "moved-value");

    g_heal_slot = slot;
    g_heal_port = addr_port(a_addr);
    slot_move(slot, addr_port(a_addr), addr_port(b_addr));

    sh_cluster_stats before, after;
    sh_cluster_stats_get(c, &before);
    char owner[ADDR_BYTES];
    key_slot_owner(c, key, owner);
    assert_string_equal(owner, a_addr); /* the map is stale */
    r_get_expect(c, key, "moved-value");
    sh_cluster_stats_get(c, &after);
    assert_int_equal(after.moved, before.moved + 1);
    key_slot_owner(c, key, owner);
    assert_string_equal(owner, b_addr);
    r_get_expect(c, key, "moved-value"); /* straight to B now */
    r_set(c, key, "moved-value-2");
    sh_cluster_stats_get(c, &before);
    assert_int_equal(before.moved, after.moved);

    /* The stale second router, through a pipeline: the redirected entry is
     * re-run alone and still answers in place. */
    const char *argv[3][2] = {{"GET", key}, {"PING", NULL}, {"GET", key}};
    size_t argvlen[3][2] = {{3, strlen(key)}, {4, 0}, {3, strlen(key)}};
    sh_cluster_cmd cmds[3];
    memset(cmds, 0, sizeof cmds);
    for (int i = 0; i < 3; i++) {
        cmds[i].route_key = key;
        cmds[i].route_len = strlen(key);
        cmds[i].argc = i == 1 ? 1 : 2;
        cmds[i].argv = argv[i];
        cmds[i].argvlen = argvlen[i];
    }
    assert_int_equal(sh_cluster_pipeline(c2, cmds, 3), SH_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cmds[i].rc, SH_OK);
        assert_non_null(cmds[i].reply);
    }
    assert_int_equal(cmds[0].reply->type, REDIS_REPLY_STRING);
    assert_string_equal(cmds[0].reply->str, "moved-value-2");
    assert_int_equal(cmds[1].reply->type, REDIS_REPLY_STATUS);
    assert_string_equal(cmds[2].reply->str, "moved-value-2");
    for (int i = 0; i < 3; i++) {
        freeReplyObject(cmds[i].reply);
    }
    sh_cluster_stats st2;
    sh_cluster_stats_get(c2, &st2);
    assert_true(st2.moved >= 1);

    slot_move(slot, addr_port(b_addr), addr_port(a_addr));
    g_heal_slot = -1;
    r_get_expect(c, key, "moved-value-2");
    key_slot_owner(c, key, owner);
    assert_string_equal(owner, a_addr);
    sh_cluster_close(c2);
    sh_cluster_close(c);
}

/* c. A half-migrated slot: ASK for the moved key (map unchanged), TRYAGAIN for
 * a multi-key command whose keys are split, then roll the migration back. */
static void test_ask_during_migration(void **state)
{
    (void)state;
    env_load();
    sh_cluster *c = router_open();
    char masters[PORTS_MAX][ADDR_BYTES];
    int nm = master_addrs(c, masters);
    assert_true(nm >= 2);
    char k1[128], k2[128], a_addr[ADDR_BYTES], b_addr[ADDR_BYTES], owner[ADDR_BYTES];
    snprintf(k1, sizeof k1, "{%s:ask}:1", g_prefix);
    snprintf(k2, sizeof k2, "{%s:ask}:2", g_prefix);
    uint16_t slot = sh_cluster_slot(k1, strlen(k1));
    assert_int_equal(slot, sh_cluster_slot(k2, strlen(k2)));
    key_slot_owner(c, k1, a_addr);
    snprintf(b_addr, sizeof b_addr, "%s",
             strcmp(masters[0], a_addr) == 0 ? masters[1] : masters[0]);
    int a = addr_port(a_addr), b = addr_port(b_addr);
    r_set(c, k1, "ask-1");
    r_set(c, k2, "ask-2");

    char a_id[64], b_id[64];
    node_id(a, a_id);
    node_id(b, b_id);
    g_heal_slot = slot;
    g_heal_port = a;
    adm_ok(b, "CLUSTER SETSLOT %u IMPORTING %s", slot, a_id);
    adm_ok(a, "CLUSTER SETSLOT %u MIGRATING %s", slot, b_id);
    redisReply *m = adm(a, "MIGRATE %s %d %s 0 5000", g_host, b, k1);
    assert_int_equal(m->type, REDIS_REPLY_STATUS);
    assert_string_equal(m->str, "OK");
    freeReplyObject(m);

    sh_cluster_stats before, after;
    sh_cluster_stats_get(c, &before);
    r_get_expect(c, k1, "ask-1"); /* A: ASK -> B with ASKING */
    r_get_expect(c, k2, "ask-2"); /* still on A */
    sh_cluster_stats_get(c, &after);
    assert_int_equal(after.ask, before.ask + 1);
    assert_int_equal(after.moved, before.moved);
    key_slot_owner(c, k1, owner);
    assert_string_equal(owner, a_addr); /* ASK does not touch the map */

    /* MGET across the split: A answers TRYAGAIN until the bound runs out. */
    const char *argv[3] = {"MGET", k1, k2};
    size_t argvlen[3] = {4, strlen(k1), strlen(k2)};
    redisReply *r = NULL;
    sh_err rc = sh_cluster_command(c, k1, strlen(k1), 3, argv, argvlen, &r);
    assert_int_equal(rc, SH_ECLUSTER);
    assert_null(r);
    sh_cluster_stats_get(c, &before);
    assert_true(before.tryagain >= after.tryagain + 1);

    slot_move(slot, a, a); /* roll back: k1 returns to A, slot stable */
    g_heal_slot = -1;
    r_get_expect(c, k1, "ask-1");
    key_slot_owner(c, k1, owner);
    assert_string_equal(owner, a_addr);
    sh_cluster_close(c);
}

/* The master whose config epoch is lowest, as the node at port sees it: the
 * pair least recently failed over (see test_failover for why that matters). */
static int master_oldest_epoch(int port)
{
    redisReply *r = adm(port, "CLUSTER NODES");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    int best_port = -1;
    unsigned long long best_epoch = 0;
    char *save = NULL;
    for (char *line = strtok_r(r->str, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char id[64], addr[128], flags[128], of[64], link[32];
        unsigned long long ping, pong, epoch;
        int n = sscanf(line, "%63s %127s %127s %63s %llu %llu %llu %31s", id, addr, flags, of,
                       &ping, &pong, &epoch, link);
        if (n != 8 || strstr(flags, "master") == NULL || strstr(flags, "fail") != NULL) {
            continue;
        }
        if (best_port < 0 || epoch < best_epoch) {
            best_epoch = epoch;
            best_port = addr_port(strtok(addr, "@"));
        }
    }
    freeReplyObject(r);
    assert_true(best_port > 0);
    return best_port;
}

/* Waits up to ms for rep_port to report master and for every node to agree
 * that master_port now replicates it. */
static bool failover_done_wait(int master_port, int rep_port, uint64_t ms)
{
    char master_id[64], rep_id[64];
    node_id(master_port, master_id);
    node_id(rep_port, rep_id);
    uint64_t deadline = sh_clock_mono_ms() + ms;
    while (sh_clock_mono_ms() < deadline) {
        bool all = node_is_master(rep_port, NULL, NULL);
        for (int i = 0; i < g_nports && all; i++) {
            all = node_sees_pair(g_ports[i], rep_id, master_id);
        }
        if (all) {
            return true;
        }
        sh_clock_sleep_ms(50);
    }
    return false;
}

/* d. Manual failover of a master; a router opened before it keeps working.
 *
 * Redis quirk met here: a replica that won an election less than about
 * 4 x cluster-node-timeout ago still holds that election's vote count, so a
 * new CLUSTER FAILOVER "wins" at once with the old epoch, loses to the
 * current master's higher epoch and times out. Running this test twice in a
 * row hits it when the same pair is failed over back. So the pair chosen is
 * the one with the oldest config epoch (the least recently failed over), and
 * if the failover still does not happen in time, CLUSTER FAILOVER TAKEOVER
 * (no election) finishes it. Every wait is bounded. */
static void test_failover(void **state)
{
    (void)state;
    env_load();
    sh_cluster *c = router_open();
    int mport = master_oldest_epoch(addr_port(g_seed));
    char maddr[ADDR_BYTES];
    snprintf(maddr, sizeof maddr, "%s:%d", g_host, mport);
    int rport = -1;
    uint64_t deadline = sh_clock_mono_ms() + WAIT_MS_MAX;
    while (rport < 0 && sh_clock_mono_ms() < deadline) {
        for (int i = 0; i < g_nports && rport < 0; i++) {
            int of = -1;
            bool up = false;
            if (!node_is_master(g_ports[i], &of, &up) && of == mport && up) {
                rport = g_ports[i];
            }
        }
        if (rport < 0) {
            sh_clock_sleep_ms(100);
        }
    }
    if (rport < 0) {
        fail_msg("master %d has no connected replica", mport);
    }

    char keys[FAILOVER_KEYS][128], vals[FAILOVER_KEYS][64];
    for (int i = 0; i < FAILOVER_KEYS; i++) {
        char stem[32];
        snprintf(stem, sizeof stem, "fo%d", i);
        key_for_owner(c, stem, maddr, keys[i], sizeof keys[i]);
        snprintf(vals[i], sizeof vals[i], "before-%d", i);
        r_set(c, keys[i], vals[i]);
    }
    /* Make sure the replica has them before it takes over. */
    const char *wargv[3] = {"WAIT", "1", "5000"};
    size_t wlen[3] = {4, 1, 4};
    redisReply *w = NULL;
    assert_int_equal(sh_cluster_command(c, keys[0], strlen(keys[0]), 3, wargv, wlen, &w), SH_OK);
    assert_int_equal(w->type, REDIS_REPLY_INTEGER);
    assert_true(w->integer >= 1);
    freeReplyObject(w);

    pair_agreed_wait(mport, rport);
    adm_ok(rport, "CLUSTER FAILOVER");
    if (!failover_done_wait(mport, rport, 8000)) {
        SH_WARN("test", "CLUSTER FAILOVER on %d did not complete in 8 s; using TAKEOVER", rport);
        pair_agreed_wait(mport, rport);
        adm_ok(rport, "CLUSTER FAILOVER TAKEOVER");
        if (!failover_done_wait(mport, rport, 15000)) {
            fail_msg("replica %d did not become master", rport);
        }
    }

    for (int i = 0; i < FAILOVER_KEYS; i++) {
        r_get_expect(c, keys[i], vals[i]);
    }
    char want[ADDR_BYTES], owner[ADDR_BYTES];
    snprintf(want, sizeof want, "%s:%d", g_host, rport);
    key_slot_owner(c, keys[0], owner);
    assert_string_equal(owner, want);
    for (int i = 0; i < FAILOVER_KEYS; i++) {
        snprintf(vals[i], sizeof vals[i], "after-%d", i);
        r_set(c, keys[i], vals[i]);
        r_get_expect(c, keys[i], vals[i]);
    }
    sh_cluster_stats st;
    sh_cluster_stats_get(c, &st);
    assert_true(st.moved >= 1); /* the old master redirected us */
    assert_true(cluster_healthy_wait());
    sh_cluster_close(c);
}

/* e. Scripts on every master; SCRIPT FLUSH everywhere; EVALSHA heals. */
static void test_scripts_and_noscript(void **state)
{
    (void)state;
    env_load();
    sh_cluster *c = router_open();
    int id = -1;
    assert_int_equal(sh_cluster_script_add(c, SCRIPT_INCRBY, &id), SH_OK);
    assert_int_equal(id, 0);
    int id2 = -1;
    assert_int_equal(sh_cluster_script_add(c, SCRIPT_INCRBY, &id2), SH_OK);
    assert_int_equal(id2, id); /* same text, same id */
    assert_non_null(sh_cluster_script_sha(c, id));
    assert_int_equal(strlen(sh_cluster_script_sha(c, id)), 40);
    assert_int_equal(sh_cluster_script_add(c, "return +", &id2), SH_EREDIS);

    char masters[PORTS_MAX][ADDR_BYTES];
    int nm = master_addrs(c, masters);
    assert_int_equal(nm, 3);
    char keys[3][128];
    for (int m = 0; m < nm; m++) {
        key_for_owner(c, "script", masters[m], keys[m], sizeof keys[m]);
    }
    for (int round = 0; round < 2; round++) {
        if (round == 1) {
            for (int m = 0; m < nm; m++) {
                const char *argv[2] = {"SCRIPT", "FLUSH"};
                size_t argvlen[2] = {6, 5};
                redisReply *r = NULL;
                assert_int_equal(sh_cluster_node_command(c, masters[m], 2, argv, argvlen, &r),
                                 SH_OK);
                assert_int_equal(r->type, REDIS_REPLY_STATUS);
                freeReplyObject(r);
            }
        }
        sh_cluster_stats before, after;
        sh_cluster_stats_get(c, &before);
        for (int m = 0; m < nm; m++) {
            const char *k[1] = {keys[m]};
            size_t kl[1] = {strlen(keys[m])};
            const char *args[1] = {round == 0 ? "5" : "7"};
            size_t al[1] = {1};
            redisReply *r = NULL;
            assert_int_equal(sh_cluster_evalsha(c, id, 1, k, kl, 1, args, al, &r), SH_OK);
            assert_int_equal(r->type, REDIS_REPLY_INTEGER);
            assert_int_equal(r->integer, round == 0 ? 5 : 12);
            freeReplyObject(r);
        }
        sh_cluster_stats_get(c, &after);
        if (round == 1) {
            assert_true(after.noscript_loads >= before.noscript_loads + 3);
        }
    }

    /* A Lua error is an ordinary reply: SH_OK, type error, caller frees. */
    const char *k[1] = {keys[0]};
    size_t kl[1] = {strlen(keys[0])};
    const char *bad[1] = {"not-a-number"};
    size_t badl[1] = {strlen(bad[0])};
    redisReply *r = NULL;
    assert_int_equal(sh_cluster_evalsha(c, id, 1, k, kl, 1, bad, badl, &r), SH_OK);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);

    /* Keys of different slots are refused before anything is sent. */
    const char *two[2] = {keys[0], keys[1]};
    size_t twol[2] = {strlen(keys[0]), strlen(keys[1])};
    r = NULL;
    assert_int_equal(sh_cluster_evalsha(c, id, 2, two, twol, 1, bad, badl, &r), SH_EINVAL);
    assert_null(r);
    assert_int_equal(sh_cluster_evalsha(c, 99, 1, k, kl, 0, NULL, NULL, &r), SH_EINVAL);

    /* EVALSHA inside a pipeline heals NOSCRIPT too. */
    for (int m = 0; m < nm; m++) {
        const char *argv[2] = {"SCRIPT", "FLUSH"};
        size_t argvlen[2] = {6, 5};
        assert_int_equal(sh_cluster_node_command(c, masters[m], 2, argv, argvlen, &r), SH_OK);
        freeReplyObject(r);
    }
    const char *sha = sh_cluster_script_sha(c, id);
    const char *argv[3][5];
    size_t argvlen[3][5];
    sh_cluster_cmd cmds[3];
    memset(cmds, 0, sizeof cmds);
    for (int m = 0; m < 3; m++) {
        const char *v[5] = {"EVALSHA", sha, "1", keys[m], "1"};
        for (int j = 0; j < 5; j++) {
            argv[m][j] = v[j];
            argvlen[m][j] = strlen(v[j]);
        }
        cmds[m] = (sh_cluster_cmd){keys[m], strlen(keys[m]), 5, argv[m], argvlen[m], NULL, SH_OK};
    }
    assert_int_equal(sh_cluster_pipeline(c, cmds, 3), SH_OK);
    for (int m = 0; m < 3; m++) {
        assert_int_equal(cmds[m].reply->type, REDIS_REPLY_INTEGER);
        assert_int_equal(cmds[m].reply->integer, 13); /* 5 + 7 + 1 */
        freeReplyObject(cmds[m].reply);
    }
    sh_cluster_close(c);
}

/* f. 300 commands on all masters in one pipeline call. */
static void test_pipeline_300(void **state)
{
    (void)state;
    env_load();
    sh_cluster *c = router_open();
    enum { N = 2 * PIPELINE_PAIRS };
    static char keys[PIPELINE_PAIRS][96], vals[PIPELINE_PAIRS][32];
    static const char *argv[N][3];
    static size_t argvlen[N][3];
    static sh_cluster_cmd cmds[N];
    memset(cmds, 0, sizeof cmds);
    char masters[PORTS_MAX][ADDR_BYTES];
    int nm = master_addrs(c, masters);
    bool hit[PORTS_MAX] = {false};
    for (int i = 0; i < PIPELINE_PAIRS; i++) {
        snprintf(keys[i], sizeof keys[i], "%s:pipe:%d", g_prefix, i);
        snprintf(vals[i], sizeof vals[i], "pv-%d", i * 7);
        size_t kl = strlen(keys[i]);
        argv[2 * i][0] = "SET";
        argv[2 * i][1] = keys[i];
        argv[2 * i][2] = vals[i];
        argvlen[2 * i][0] = 3;
        argvlen[2 * i][1] = kl;
        argvlen[2 * i][2] = strlen(vals[i]);
        argv[2 * i + 1][0] = "GET";
        argv[2 * i + 1][1] = keys[i];
        argvlen[2 * i + 1][0] = 3;
        argvlen[2 * i + 1][1] = kl;
        cmds[2 * i] = (sh_cluster_cmd){keys[i], kl, 3, argv[2 * i], argvlen[2 * i], NULL, SH_OK};
        cmds[2 * i + 1] =
            (sh_cluster_cmd){keys[i], kl, 2, argv[2 * i + 1], argvlen[2 * i + 1], NULL, SH_OK};
        char owner[ADDR_BYTES];
        key_slot_owner(c, keys[i], owner);
        for (int m = 0; m < nm; m++) {
            hit[m] = hit[m] || strcmp(owner, masters[m]) == 0;
        }
    }
    for (int m = 0; m < nm; m++) {
        assert_true(hit[m]);
    }
    sh_cluster_stats before, after;
    sh_cluster_stats_get(c, &before);
    assert_int_equal(sh_cluster_pipeline(c, cmds, N), SH_OK);
    sh_cluster_stats_get(c, &after);
    assert_int_equal(after.commands, before.commands + N);
    for (int i = 0; i < PIPELINE_PAIRS; i++) {
        sh_cluster_cmd *set = &cmds[2 * i], *get = &cmds[2 * i + 1];
        assert_int_equal(set->rc, SH_OK);
        assert_int_equal(set->reply->type, REDIS_REPLY_STATUS);
        assert_string_equal(set->reply->str, "OK");
        assert_int_equal(get->rc, SH_OK);
        assert_int_equal(get->reply->type, REDIS_REPLY_STRING);
        assert_string_equal(get->reply->str, vals[i]);
        freeReplyObject(set->reply);
        freeReplyObject(get->reply);
    }
    assert_int_equal(sh_cluster_pipeline(c, cmds, 0), SH_OK);
    sh_cluster_close(c);
}

/* Connections killed server-side: the next command and pipeline reconnect. */
static void test_io_error_reconnects(void **state)
{
    (void)state;
    env_load();
    sh_cluster *c = router_open();
    char masters[PORTS_MAX][ADDR_BYTES];
    int nm = master_addrs(c, masters);
    char keys[PORTS_MAX][128];
    for (int m = 0; m < nm; m++) {
        key_for_owner(c, "io", masters[m], keys[m], sizeof keys[m]);
        r_set(c, keys[m], "io-value");
    }
    for (int m = 0; m < nm; m++) {
        redisReply *r = adm(addr_port(masters[m]), "CLIENT KILL TYPE normal SKIPME yes");
        assert_int_equal(r->type, REDIS_REPLY_INTEGER);
        freeReplyObject(r);
    }
    sh_cluster_stats before, after;
    sh_cluster_stats_get(c, &before);
    r_get_expect(c, keys[0], "io-value");
    sh_cluster_stats_get(c, &after);
    assert_true(after.io_errors >= before.io_errors + 1);
    assert_true(after.reconnects >= before.reconnects + 1);

    const char *argv[PORTS_MAX][2];
    size_t argvlen[PORTS_MAX][2];
    sh_cluster_cmd cmds[PORTS_MAX];
    for (int m = 0; m < nm; m++) {
        argv[m][0] = "GET";
        argv[m][1] = keys[m];
        argvlen[m][0] = 3;
        argvlen[m][1] = strlen(keys[m]);
        cmds[m] = (sh_cluster_cmd){keys[m], strlen(keys[m]), 2, argv[m], argvlen[m], NULL, SH_OK};
    }
    assert_int_equal(sh_cluster_pipeline(c, cmds, (size_t)nm), SH_OK);
    for (int m = 0; m < nm; m++) {
        assert_int_equal(cmds[m].reply->type, REDIS_REPLY_STRING);
        assert_string_equal(cmds[m].reply->str, "io-value");
        freeReplyObject(cmds[m].reply);
    }
    sh_cluster_stats_get(c, &before);
    assert_true(before.reconnects >= (uint64_t)nm);
    sh_cluster_close(c);
}

/* A master that stops answering (CLIENT PAUSE) after the command was
 * written: the outcome is unknown, so the router returns SH_EUNKNOWN after one
 * timeout, without sending it again, and recovers once the master answers. */
static void test_timeout_is_bounded(void **state)
{
    (void)state;
    env_load();
    sh_cluster *c = NULL;
    assert_int_equal(sh_cluster_open(&c, g_seed, 300), SH_OK);
    char masters[PORTS_MAX][ADDR_BYTES], key[128];
    (void)master_addrs(c, masters);
    key_for_owner(c, "pause", masters[0], key, sizeof key);
    r_set(c, key, "paused-value");
    int port = addr_port(masters[0]);
    adm_ok(port, "CLIENT PAUSE 3000 ALL");

    sh_cluster_stats before, after;
    sh_cluster_stats_get(c, &before);
    const char *argv[2] = {"GET", key};
    size_t argvlen[2] = {3, strlen(key)};
    redisReply *r = NULL;
    uint64_t t0 = sh_clock_mono_ms();
    sh_err rc = sh_cluster_command(c, key, strlen(key), 2, argv, argvlen, &r);
    uint64_t elapsed_ms = sh_clock_mono_ms() - t0;
    adm_ok(port, "CLIENT UNPAUSE"); /* itself paused under ALL: returns when the pause ends */
    assert_int_equal(rc, SH_EUNKNOWN);
    assert_null(r);
    assert_true(elapsed_ms < 3000); /* gave up before the pause ended */
    sh_cluster_stats_get(c, &after);
    assert_true(after.io_errors >= before.io_errors + 1);
    assert_int_equal(after.unknown, before.unknown + 1);

    r_get_expect(c, key, "paused-value");
    sh_cluster_close(c);
}

/* g. Nothing listening: a prompt, typed error. Bad seed lists: SH_EINVAL. */
static void test_open_failures(void **state)
{
    (void)state;
    env_load();
    sh_cluster *c = NULL;
    assert_int_equal(sh_cluster_open(&c, "127.0.0.1:1", 1000), SH_EIO);
    assert_null(c);
    assert_int_equal(sh_cluster_open(&c, "", 1000), SH_EINVAL);
    assert_int_equal(sh_cluster_open(&c, "127.0.0.1", 1000), SH_EINVAL);
    assert_int_equal(sh_cluster_open(&c, "127.0.0.1:70000", 1000), SH_EINVAL);
    assert_int_equal(sh_cluster_open(&c, "127.0.0.1:1,", 1000), SH_EINVAL);
    assert_int_equal(sh_cluster_open(&c, g_seed, SH_CLUSTER_TIMEOUT_MS_MAX + 1), SH_EINVAL);
    assert_null(c);

    /* A dead first seed is skipped. */
    char seeds[2 * ADDR_BYTES];
    snprintf(seeds, sizeof seeds, "127.0.0.1:1, %s", g_seed);
    assert_int_equal(sh_cluster_open(&c, seeds, 1000), SH_OK);
    assert_non_null(c);
    assert_int_equal(sh_cluster_master_count(c), 3);
    char addr[8];
    assert_int_equal(sh_cluster_slot_owner(c, 0, addr, sizeof addr), SH_ERANGE);
    assert_int_equal(sh_cluster_master_addr(c, 3, addr, sizeof addr), SH_ENOTFOUND);
    assert_int_equal(sh_cluster_refresh(c), SH_OK);
    const char *argv[1] = {"PING"};
    size_t argvlen[1] = {4};
    redisReply *r = NULL;
    assert_int_equal(sh_cluster_node_command(c, "127.0.0.1:1", 1, argv, argvlen, &r), SH_EIO);
    assert_null(r);
    assert_int_equal(sh_cluster_command(c, "k", 1, 0, argv, argvlen, &r), SH_EINVAL);
    sh_cluster_close(c);
}

/* Last: the cluster is left as the tests found it (healthy). */
static void test_cluster_left_healthy(void **state)
{
    (void)state;
    env_load();
    if (!cluster_healthy_wait()) {
        fail_msg("cluster not healthy: some node lacks cluster_state:ok / 16384 slots, "
                 "or has an open slot");
    }
    sh_cluster *c = router_open();
    assert_int_equal(sh_cluster_master_count(c), 3);
    int masters[PORTS_MAX];
    assert_int_equal(masters_list(masters), 3);
    for (int s = 0; s < SH_CLUSTER_SLOTS; s++) {
        char addr[ADDR_BYTES];
        assert_int_equal(sh_cluster_slot_owner(c, (uint16_t)s, addr, sizeof addr), SH_OK);
    }
    sh_cluster_close(c);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN); /* hiredis writes with write(2) */
    /* TEST_LOG_LEVEL=info shows the router's slot map updates. */
    const char *level = getenv("TEST_LOG_LEVEL");
    int lv = level != NULL ? sh_log_level_parse(level) : -1;
    sh_log_init("test", lv >= 0 ? (sh_log_level)lv : SH_LOG_WARN, 2);
    snprintf(g_prefix, sizeof g_prefix, "rt:%ld:%llu", (long)getpid(),
             (unsigned long long)sh_clock_mono_ms());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_and_route_to_every_master),
        cmocka_unit_test_teardown(test_moved_after_reshard, teardown_heal_slot),
        cmocka_unit_test_teardown(test_ask_during_migration, teardown_heal_slot),
        cmocka_unit_test(test_failover),
        cmocka_unit_test(test_scripts_and_noscript),
        cmocka_unit_test(test_pipeline_300),
        cmocka_unit_test(test_io_error_reconnects),
        cmocka_unit_test(test_timeout_is_bounded),
        cmocka_unit_test(test_open_failures),
        cmocka_unit_test(test_cluster_left_healthy),
    };
    return T_CMOCKA_MAIN(argc, argv, "cluster", tests, NULL, NULL);
}
