/* test_lease.c -- sh_lease against a real Redis Cluster: acquire, renew, takeover, release.
 *
 * Each test uses its own lease key ({lease:test-PID-N}), never the
 * scheduler's, so it runs beside anything else on the cluster. Timings use a
 * short TTL (600 ms) with 3x margins. The cluster comes from REDIS_SEED, and
 * the test fails (never skips) without it. Facts are read from Redis with a
 * router of the test's own, not through the module under test. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "t_cmocka.h"

#include "sh_clock.h"
#include "sh_cluster.h"
#include "sh_lease.h"
#include "sh_limits.h"
#include "sh_log.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TTL_MS         600
#define MARGIN         3
#define KEY_BYTES      64
#define ROUTER_TIMEOUT 2000
#define WAIT_LOST_MS   (MARGIN * TTL_MS)

static char g_seed[300];
static int g_key_seq;

typedef struct lost_flag {
    atomic_int calls;
} lost_flag;

static void lost_cb(void *arg)
{
    lost_flag *f = arg;
    atomic_fetch_add(&f->calls, 1);
}

static void env_load(void)
{
    const char *seed = getenv("REDIS_SEED");
    if (seed == NULL || seed[0] == '\0') {
        fail_msg("REDIS_SEED is not set: export REDIS_SEED=host:port of a cluster node");
    }
    snprintf(g_seed, sizeof g_seed, "%s", seed);
}

/* The environment is read in the group setup, not in main(): `--list` needs
 * none, and without it every test fails by name instead of the binary. */
static int group_setup(void **state)
{
    (void)state;
    env_load();
    return 0;
}

static void key_new(char *key)
{
    snprintf(key, KEY_BYTES, "{lease:test-%ld-%llu-%d}", (long)getpid(),
             (unsigned long long)sh_clock_wall_ms(), ++g_key_seq);
}

static sh_lease *lease_new(const char *key, const char *owner, uint32_t wait_ms, lost_flag *f)
{
    sh_lease_config cfg = {
        .redis_seeds = g_seed,
        .redis_timeout_ms = ROUTER_TIMEOUT,
        .key = key,
        .owner = owner,
        .ttl_ms = TTL_MS,
        .wait_ms = wait_ms,
        .lost_cb = f != NULL ? lost_cb : NULL,
        .lost_arg = f,
    };
    sh_lease *l = NULL;
    assert_int_equal(sh_lease_new(&l, &cfg), SH_OK);
    assert_non_null(l);
    return l;
}

/* A new lease for key acquired as owner, in less than bound_ms; *epoch set. */
static sh_lease *acquire_within(const char *key, const char *owner, uint32_t wait_ms,
                                uint64_t bound_ms, uint64_t *epoch)
{
    sh_lease *l = lease_new(key, owner, wait_ms, NULL);
    uint64_t t0 = sh_clock_mono_ms();
    assert_int_equal(sh_lease_acquire(l, epoch), SH_OK);
    assert_true(sh_clock_mono_ms() - t0 < bound_ms);
    assert_int_equal(sh_lease_epoch(l), *epoch);
    return l;
}

static void release_free(sh_lease *l)
{
    assert_int_equal(sh_lease_release(l), SH_OK);
    sh_lease_free(l);
}

/* GET key (a string, "" when missing) through the test's own router. */
static void redis_get(const char *key, char *buf, size_t len)
{
    sh_cluster *c = NULL;
    assert_int_equal(sh_cluster_open(&c, g_seed, ROUTER_TIMEOUT), SH_OK);
    const char *argv[2] = {"GET", key};
    size_t argvlen[2] = {3, strlen(key)};
    redisReply *r = NULL;
    assert_int_equal(sh_cluster_command(c, key, strlen(key), 2, argv, argvlen, &r), SH_OK);
    buf[0] = '\0';
    if (r->type == REDIS_REPLY_STRING) {
        snprintf(buf, len, "%.*s", (int)r->len, r->str);
    } else {
        assert_int_equal(r->type, REDIS_REPLY_NIL);
    }
    freeReplyObject(r);
    sh_cluster_close(c);
}

static void holder_of(const char *key, char *buf, size_t len)
{
    char hk[KEY_BYTES + 16];
    snprintf(hk, sizeof hk, "%s:holder", key);
    redis_get(hk, buf, len);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_bad_config(void **state)
{
    (void)state;
    sh_lease *l = NULL;
    sh_lease_config cfg = {
        .redis_seeds = g_seed, .key = "lease:no-tag", .owner = "a", .ttl_ms = TTL_MS};
    assert_int_equal(sh_lease_new(&l, &cfg), SH_EINVAL);
    assert_null(l);
    cfg.key = "{}x";
    assert_int_equal(sh_lease_new(&l, &cfg), SH_EINVAL);
    cfg.key = "{lease:ok}";
    cfg.ttl_ms = SH_LEASE_TTL_MS_MIN - 1;
    assert_int_equal(sh_lease_new(&l, &cfg), SH_EINVAL);
    cfg.ttl_ms = TTL_MS;
    cfg.owner = "";
    assert_int_equal(sh_lease_new(&l, &cfg), SH_EINVAL);
}

/* A free lease is taken at once with epoch 1 and stays held across several
 * TTLs because the thread renews it; a clean release deletes the holder. */
static void test_acquire_renew_release(void **state)
{
    (void)state;
    char key[KEY_BYTES], h[256];
    key_new(key);
    lost_flag f = {0};
    sh_lease *a = lease_new(key, "host:1:a", 5000, &f);
    uint64_t t0 = sh_clock_mono_ms(), epoch = 0;
    assert_int_equal(sh_lease_acquire(a, &epoch), SH_OK);
    assert_true(sh_clock_mono_ms() - t0 < TTL_MS);
    assert_int_equal(epoch, 1);
    assert_int_equal(sh_lease_epoch(a), 1);
    sh_clock_sleep_ms(MARGIN * TTL_MS);
    holder_of(key, h, sizeof h);
    assert_string_equal(h, "1:host:1:a");
    assert_int_equal(sh_lease_lost(a), 0);
    assert_int_equal(atomic_load(&f.calls), 0);
    assert_int_equal(sh_lease_release(a), SH_OK);
    holder_of(key, h, sizeof h);
    assert_string_equal(h, "");
    sh_lease_free(a);

    /* The epoch counter survives the release: the next holder gets 2, at once. */
    sh_lease *b = acquire_within(key, "host:2:b", 5000, TTL_MS, &epoch);
    assert_int_equal(epoch, 2);
    release_free(b);
}

/* A live holder is taken over by force after wait_ms with a higher epoch; the
 * old holder's thread notices within about a TTL, calls back once and names
 * the new holder. Its release then leaves the new holder alone. */
static void test_takeover(void **state)
{
    (void)state;
    char key[KEY_BYTES], h[256];
    key_new(key);
    lost_flag fa = {0}, fb = {0};
    sh_lease *a = lease_new(key, "host:1:a", 0, &fa);
    uint64_t ea = 0, eb = 0;
    assert_int_equal(sh_lease_acquire(a, &ea), SH_OK);

    const uint32_t wait_ms = 2 * TTL_MS; /* longer than a TTL: a's renewals must hold it */
    sh_lease *b = lease_new(key, "host:2:b", wait_ms, &fb);
    uint64_t t0 = sh_clock_mono_ms();
    assert_int_equal(sh_lease_acquire(b, &eb), SH_OK);
    uint64_t waited = sh_clock_mono_ms() - t0;
    assert_true(waited >= wait_ms);
    assert_true(waited < (uint64_t)MARGIN * wait_ms);
    assert_int_equal(eb, ea + 1);

    uint64_t lost_t0 = sh_clock_mono_ms();
    while (!sh_lease_lost(a)) {
        assert_true(sh_clock_mono_ms() - lost_t0 < WAIT_LOST_MS);
        sh_clock_sleep_ms(10);
    }
    sh_clock_sleep_ms(50); /* the callback runs right after the flag */
    assert_int_equal(atomic_load(&fa.calls), 1);
    char other[SH_LEASE_OWNER_CHARS_MAX + 1];
    uint64_t other_epoch = 0;
    sh_lease_holder(a, other, sizeof other, &other_epoch);
    assert_string_equal(other, "host:2:b");
    assert_int_equal(other_epoch, eb);

    assert_int_equal(sh_lease_release(a), SH_OK); /* lost: must not delete b's holder */
    sh_lease_free(a);
    holder_of(key, h, sizeof h);
    char want[64];
    snprintf(want, sizeof want, "%llu:host:2:b", (unsigned long long)eb);
    assert_string_equal(h, want);
    assert_int_equal(sh_lease_lost(b), 0);
    assert_int_equal(atomic_load(&fb.calls), 0);
    release_free(b);
}

/* Holds key as "host:1:a", optionally vanishes without releasing (free
 * without release: renewals stop, like a kill -9), then acquires as owner_b
 * within bound_ms and expects epoch + epoch_step. */
static void second_acquire(const char *owner_b, int crash_a, uint64_t bound_ms, uint64_t epoch_step)
{
    char key[KEY_BYTES];
    key_new(key);
    uint64_t ea = 0, eb = 0;
    sh_lease *a = acquire_within(key, "host:1:a", 0, TTL_MS, &ea);
    if (crash_a) {
        sh_lease_free(a);
        a = NULL;
    }
    sh_lease *b = acquire_within(key, owner_b, 10 * TTL_MS, bound_ms, &eb);
    assert_int_equal(eb, ea + epoch_step);
    release_free(b);
    sh_lease_free(a);
}

/* A crashed holder blocks the next one for at most about the remaining TTL;
 * the next one gets epoch + 1 without forcing (wait_ms is far longer). */
static void test_crashed_holder_expires(void **state)
{
    (void)state;
    second_acquire("host:2:b", 1, MARGIN * TTL_MS, 1);
}

/* Acquiring again under the owner that holds it keeps the epoch, at once (an
 * acquire the router sent twice must not bump it). */
static void test_reacquire_same_owner(void **state)
{
    (void)state;
    second_acquire("host:1:a", 0, TTL_MS, 0);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN); /* hiredis writes with write(2) */
    const char *lvl = getenv("TEST_LOG_LEVEL");
    int level = lvl != NULL ? sh_log_level_parse(lvl) : -1;
    sh_log_init("test_lease", level >= 0 ? (sh_log_level)level : SH_LOG_ERROR, 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_acquire_renew_release),
        cmocka_unit_test(test_takeover),
        cmocka_unit_test(test_crashed_holder_expires),
        cmocka_unit_test(test_reacquire_same_owner),
    };
    return T_CMOCKA_MAIN(argc, argv, "lease", tests, group_setup, NULL);
}
