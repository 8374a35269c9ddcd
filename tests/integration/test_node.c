/* test_node.c -- stock-node end to end: a real node process on a real Redis Cluster.
 *
 * The node's promises are about Redis state under concurrency and failure, so
 * these tests start bin/stock-node ($STOCK_BIN/stock-node), talk to it only
 * over NNG with the wire codec, and judge it only by what Redis holds
 * afterwards: exactly-once deductions (idempotency across partitions and
 * retries, no oversell), gap-free details, per-user limits, conservation of
 * units, group commit (script calls per deduction from INFO commandstats),
 * survival of garbage, and a kill -9 restart. The cluster comes from the
 * harness (tests/run.sh): REDIS_SEED=host:port, REDIS_PORTS="p1 ... p6",
 * STOCK_BIN=dir of the binaries; without REDIS_SEED the test fails, never
 * skips. SKUs are created here with the same scripts the scheduler uses
 * (PART_INIT, POOL_INIT, GRANT_BEGIN/APPLY, JOURNAL_END) and carry the test's
 * pid, so reruns on one cluster do not collide.
 *
 *   a  deduct / duplicate (any partition) / conflict / release / second release /
 *      unknown order / invalid items; the packed details in the stream
 *   b  16 threads, 1000 orders, 300 units on 2 partitions, RETRY followed by
 *      moving the claim: exactly 300 OK, seqs 1..N once each per partition
 *   c  every order sent 3 times at once to 3 different partitions, stock short
 *      so claims move: one deduction per order, repeats see the same outcome
 *   d  per-user limit 3 across partitions under concurrency; a release frees one
 *   e0 one message = one script call per batch_items_max items per partition
 *   e1 one order several times in one script call: each repeat sees the
 *      outcome written earlier in the same call (duplicate, conflict, release)
 *   e  2,000 one-item messages from 32 threads: EVALSHA calls per deduction
 *   f  garbage, truncated and foreign messages get a zero-result reply
 *   g  kill -9 under load, restart, resend everything: nothing deducted twice
 *   h  SIGTERM: exit status 0 (leak-free under ASan), ipc file removed
 *
 * Worker threads never call cmocka asserts (they are not thread-safe): they
 * record what they saw and the main thread judges it. Every wait is bounded. */
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
#include "sh_stock.h"
#include "sh_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define PATH_BYTES           512
#define ROUTER_TIMEOUT_MS    3000
#define NODE_START_WAIT_MS   30000 /* until the node answers a probe */
#define NODE_STOP_WAIT_MS    15000 /* SIGTERM to exit, then SIGKILL */
#define PROBE_TIMEOUT_MS     500
#define CALL_TIMEOUT_MS      15000 /* one request/reply (ASan builds are slow) */
#define CALL_ATTEMPTS_MAX    4     /* transport retries of one batch (idempotent) */
#define HOPS_MAX             8     /* RETRY answers followed per item */
#define NODE_BATCH_ITEMS     16    /* the node's deduct.batch_items_max */
#define NODE_BATCH_ITEMS_S   "16"
#define DETAILS_MAX          20000
#define THREADS_MAX          64
#define CALL_ETRANSPORT_BASE (-1000)
#define CALL_EMISMATCH       (-2000)

static char g_seed[PATH_BYTES];
static char g_bin[PATH_BYTES];
static char g_url[PATH_BYTES];
static char g_log[PATH_BYTES];
static pid_t g_node = -1;
static sh_cluster *g_router;
static int g_sid_part_init, g_sid_pool_init, g_sid_grant_begin, g_sid_grant_apply,
    g_sid_journal_end, g_sid_stamp, g_sid_deduct;
static atomic_uint_fast64_t g_req_id;

/* ==== environment and the node process ===================================== */

static void env_load(void)
{
    const char *seed = getenv("REDIS_SEED");
    if (seed == NULL || seed[0] == '\0') {
        fail_msg("REDIS_SEED is not set: run through tests/run.sh, or export REDIS_SEED=host:port "
                 "of a Redis Cluster node (scripts/infra.sh up writes it to infra.env) and "
                 "STOCK_BIN=directory of stock-node");
    }
    const char *bin = getenv("STOCK_BIN");
    if (bin == NULL || bin[0] == '\0') {
        fail_msg("STOCK_BIN is not set: export STOCK_BIN=the directory holding stock-node "
                 "(e.g. /work/main/bin or build/asan/bin)");
    }
    snprintf(g_seed, sizeof g_seed, "%s", seed);
    snprintf(g_bin, sizeof g_bin, "%s/stock-node", bin);
    snprintf(g_url, sizeof g_url, "ipc:///tmp/test-node-%d.ipc", (int)getpid());
    snprintf(g_log, sizeof g_log, "/tmp/test-node-%d.log", (int)getpid());
    if (access(g_bin, X_OK) != 0) {
        fail_msg("%s is not executable: build it first (make)", g_bin);
    }
}

static void node_log_tail(void)
{
    char cmd[PATH_BYTES + 32];
    snprintf(cmd, sizeof cmd, "tail -n 30 %s >&2", g_log);
    if (system(cmd) != 0) {
        fprintf(stderr, "(no node log at %s)\n", g_log);
    }
}

static bool node_alive(void)
{
    if (g_node <= 0) {
        return false;
    }
    int status;
    pid_t w = waitpid(g_node, &status, WNOHANG);
    if (w == 0) {
        return true;
    }
    if (w == g_node) {
        print_message("node pid %d exited: status 0x%x\n", (int)g_node, status);
        g_node = -1;
    }
    return false;
}

/* Waits (bounded) for the node to exit; returns its wait status or -1. */
static int node_reap(int wait_ms)
{
    uint64_t until = sh_clock_mono_ms() + (uint64_t)wait_ms;
    while (sh_clock_mono_ms() < until) {
        int status;
        pid_t w = waitpid(g_node, &status, WNOHANG);
        if (w == g_node) {
            g_node = -1;
            return status;
        }
        sh_clock_sleep_ms(10);
    }
    return -1;
}

/* SIGTERM, bounded wait, then SIGKILL. Returns the wait status (-1 if killed). */
static int node_stop(void)
{
    if (g_node <= 0) {
        return -1;
    }
    kill(g_node, SIGTERM);
    int status = node_reap(NODE_STOP_WAIT_MS);
    if (status == -1 && g_node > 0) {
        print_message("node pid %d ignored SIGTERM: killing it\n", (int)g_node);
        kill(g_node, SIGKILL);
        (void)node_reap(NODE_STOP_WAIT_MS);
        g_node = -1;
    }
    return status;
}

static void node_kill9(void)
{
    assert_true(g_node > 0);
    assert_int_equal(kill(g_node, SIGKILL), 0);
    int status = node_reap(NODE_STOP_WAIT_MS);
    assert_true(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

/* ==== NNG client ============================================================ */

typedef struct client {
    nng_socket sock;
} client;

static int client_open(client *c, int timeout_ms)
{
    int rv = nng_req0_open(&c->sock);
    if (rv != 0) {
        return rv;
    }
    if ((rv = nng_socket_set_ms(c->sock, NNG_OPT_RECVTIMEO, timeout_ms)) != 0 ||
        (rv = nng_socket_set_ms(c->sock, NNG_OPT_SENDTIMEO, timeout_ms)) != 0 ||
        (rv = nng_socket_set_ms(c->sock, NNG_OPT_RECONNMINT, 50)) != 0 ||
        (rv = nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, SH_WIRE_MSG_BYTES_MAX)) != 0 ||
        (rv = nng_dial(c->sock, g_url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
        nng_close(c->sock);
        return rv;
    }
    return 0;
}

static void client_close(client *c)
{
    nng_close(c->sock);
}

/* Sends len raw bytes and receives one reply (caller frees with nng_free). */
static int client_raw(client *c, const void *buf, size_t len, void **rep, size_t *rep_len)
{
    int rv = nng_send(c->sock, (void *)buf, len, 0);
    if (rv != 0) {
        return rv;
    }
    return nng_recv(c->sock, rep, rep_len, NNG_FLAG_ALLOC);
}

/* One request/reply: 0, or a positive NNG error, CALL_ETRANSPORT_BASE - sh_err
 * for a reply that does not decode, CALL_EMISMATCH for one that does not
 * answer this request (req_id, type, count, tags). */
static int client_call(client *c, sh_wire_type type, const sh_wire_item *items, size_t n,
                       sh_wire_result *out)
{
    uint64_t req_id = atomic_fetch_add(&g_req_id, 1) + 1;
    size_t size = sh_wire_items_size(items, n);
    uint8_t *buf = malloc(size);
    if (buf == NULL) {
        return NNG_ENOMEM;
    }
    size_t len = 0;
    sh_err rc = sh_wire_items_encode(buf, size, &len, type, req_id, items, n);
    if (rc != SH_OK) {
        free(buf);
        return CALL_ETRANSPORT_BASE - (int)rc;
    }
    void *rep = NULL;
    size_t rep_len = 0;
    int rv = client_raw(c, buf, len, &rep, &rep_len);
    free(buf);
    if (rv != 0) {
        return rv;
    }
    sh_wire_header hdr;
    rc = sh_wire_results_decode(rep, rep_len, &hdr, out, n);
    nng_free(rep, rep_len);
    if (rc != SH_OK) {
        return CALL_ETRANSPORT_BASE - (int)rc;
    }
    sh_wire_type want = type == SH_WIRE_DEDUCT_REQ ? SH_WIRE_DEDUCT_REP : SH_WIRE_RELEASE_REP;
    if (hdr.req_id != req_id || hdr.type != want || hdr.count != n) {
        return CALL_EMISMATCH;
    }
    for (size_t i = 0; i < n; i++) {
        if (out[i].tag != items[i].tag) {
            return CALL_EMISMATCH;
        }
    }
    return 0;
}

static sh_wire_item mk_item(const char *sku, const char *order, const char *user, uint32_t qty,
                            uint16_t part)
{
    sh_wire_item it;
    memset(&it, 0, sizeof it);
    assert_int_equal(sh_wire_str_set(it.sku, sizeof it.sku, &it.sku_len, sku, strlen(sku)), SH_OK);
    assert_int_equal(
        sh_wire_str_set(it.order_id, sizeof it.order_id, &it.order_id_len, order, strlen(order)),
        SH_OK);
    assert_int_equal(
        sh_wire_str_set(it.user_id, sizeof it.user_id, &it.user_id_len, user, strlen(user)), SH_OK);
    it.qty = qty;
    it.partition = part;
    return it;
}

/* One item, one call, asserted to get through; main thread only. */
static sh_wire_result call1(sh_wire_type type, const sh_wire_item *item)
{
    client c;
    assert_int_equal(client_open(&c, CALL_TIMEOUT_MS), 0);
    sh_wire_result res;
    memset(&res, 0, sizeof res);
    int rv = client_call(&c, type, item, 1, &res);
    client_close(&c);
    if (rv != 0) {
        fail_msg("call failed: %d (%s)", rv, rv > 0 ? nng_strerror(rv) : "decode/mismatch");
    }
    return res;
}

/* The node answers a probe for a SKU that does not exist with INVALID. */
static bool node_answers(void)
{
    client c;
    if (client_open(&c, PROBE_TIMEOUT_MS) != 0) {
        return false;
    }
    char sku[64];
    snprintf(sku, sizeof sku, "probe-%d", (int)getpid());
    sh_wire_item it = mk_item(sku, "probe", "probe", 1, 0);
    sh_wire_result res;
    int rv = client_call(&c, SH_WIRE_DEDUCT_REQ, &it, 1, &res);
    client_close(&c);
    return rv == 0 && res.status == SH_WIRE_OUT_INVALID;
}

static void node_start(void)
{
    assert_true(g_node <= 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(g_log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        char listen[PATH_BYTES + 16], seeds[PATH_BYTES + 16];
        snprintf(listen, sizeof listen, "node.listen=%s", g_url);
        snprintf(seeds, sizeof seeds, "redis.seeds=%s", g_seed);
        /* A small script batch, so that coalesced rounds are cut into several calls. */
        execl(g_bin, "stock-node", "-o", listen, "-o", seeds, "-o", "node.contexts=64", "-o",
              "deduct.batch_items_max=" NODE_BATCH_ITEMS_S, (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", g_bin, strerror(errno));
        _exit(127);
    }
    g_node = pid;
    uint64_t until = sh_clock_mono_ms() + NODE_START_WAIT_MS;
    while (sh_clock_mono_ms() < until) {
        if (!node_alive()) {
            node_log_tail();
            fail_msg("stock-node exited during start (log %s)", g_log);
        }
        if (node_answers()) {
            return;
        }
        sh_clock_sleep_ms(50);
    }
    node_log_tail();
    fail_msg("stock-node did not answer within %d ms (log %s)", NODE_START_WAIT_MS, g_log);
}

/* ==== Redis helpers (main thread, through the test's own router) ============ */

static redisReply *rcmd(const char *route, int argc, const char **argv)
{
    size_t lens[16];
    assert_true(argc <= 16);
    for (int i = 0; i < argc; i++) {
        lens[i] = strlen(argv[i]);
    }
    redisReply *r = NULL;
    sh_err rc = sh_cluster_command(g_router, route, strlen(route), argc, argv, lens, &r);
    if (rc != SH_OK) {
        fail_msg("%s %s: %s", argv[0], route, sh_strerror(rc));
    }
    if (r->type == REDIS_REPLY_ERROR) {
        fail_msg("%s %s: %s", argv[0], route, r->str);
    }
    return r;
}

/* EVALSHA whose reply may be an error reply (returned as is). */
static redisReply *reval_any(int sid, int numkeys, const char **keys, int nargs, const char **args)
{
    size_t klen[4], alen[300];
    assert_true(numkeys <= 4 && nargs <= 300);
    for (int i = 0; i < numkeys; i++) {
        klen[i] = strlen(keys[i]);
    }
    for (int i = 0; i < nargs; i++) {
        alen[i] = strlen(args[i]);
    }
    redisReply *r = NULL;
    sh_err rc = sh_cluster_evalsha(g_router, sid, numkeys, keys, klen, nargs, args, alen, &r);
    if (rc != SH_OK) {
        fail_msg("EVALSHA %s: %s", keys[0], sh_strerror(rc));
    }
    return r;
}

static redisReply *reval(int sid, int numkeys, const char **keys, int nargs, const char **args)
{
    redisReply *r = reval_any(sid, numkeys, keys, nargs, args);
    if (r->type == REDIS_REPLY_ERROR) {
        fail_msg("EVALSHA %s: %s", keys[0], r->str);
    }
    return r;
}

static void assert_fenced(redisReply *r)
{
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(r->str, "FENCED"));
    freeReplyObject(r);
}

static int64_t reply_i64(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER) {
        return r->integer;
    }
    if (r->type == REDIS_REPLY_STRING) {
        return strtoll(r->str, NULL, 10);
    }
    if (r->type == REDIS_REPLY_NIL) {
        return 0;
    }
    fail_msg("reply type %d is not a number", r->type);
    return 0;
}

static void sku_name(char *buf, size_t cap, const char *tag)
{
    snprintf(buf, cap, "tn%d-%s", (int)getpid(), tag);
}

/* Creates a SKU as the scheduler would: partitions (salt 0), the pool holding
 * the total, then one journaled grant per partition. */
static void sku_create(const char *sku, int parts, const int64_t *units, uint32_t per_user_limit)
{
    char pool[SH_STOCK_KEY_BYTES_MAX], jrnl[SH_STOCK_KEY_BYTES_MAX], st[SH_STOCK_KEY_BYTES_MAX];
    sh_stock_key_pool(pool, sku);
    sh_stock_key_journal(jrnl, sku);
    int64_t total = 0;
    for (int p = 0; p < parts; p++) {
        total += units[p];
        sh_stock_key_part(st, sku, (unsigned)p, 0, 's');
        const char *keys[1] = {st};
        redisReply *r = reval(g_sid_part_init, 1, keys, 1, (const char *[]){"0"});
        assert_int_equal(reply_i64(r), 1);
        freeReplyObject(r);
    }
    char total_s[32], pul_s[32], parts_s[32];
    snprintf(total_s, sizeof total_s, "%" PRId64, total);
    snprintf(pul_s, sizeof pul_s, "%u", per_user_limit);
    snprintf(parts_s, sizeof parts_s, "%d", parts);
    const char *args[8 + SH_PARTITIONS_PER_SKU_MAX] = {total_s, "0",       pul_s,      parts_s,
                                                       "1",     "1000000", "test sku", "0"};
    for (int p = 0; p < parts; p++) {
        args[8 + p] = "0";
    }
    const char *pkeys[1] = {pool};
    redisReply *r = reval(g_sid_pool_init, 1, pkeys, 8 + parts, args);
    assert_int_equal(reply_i64(r), 1);
    freeReplyObject(r);
    for (int p = 0; p < parts; p++) {
        if (units[p] == 0) {
            continue;
        }
        char part_s[16], want_s[32], id_s[32], u_s[32];
        snprintf(part_s, sizeof part_s, "%d", p);
        snprintf(want_s, sizeof want_s, "%" PRId64, units[p]);
        const char *gkeys[2] = {pool, jrnl};
        char gid_s[16];
        snprintf(gid_s, sizeof gid_s, "%d", p + 1); /* journal ids chosen by the caller */
        const char *gargs[4] = {part_s, want_s, gid_s, "0"};
        r = reval(g_sid_grant_begin, 2, gkeys, 4, gargs);
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        assert_int_equal(r->elements, 3);
        int64_t id = reply_i64(r->element[0]), u = reply_i64(r->element[1]);
        freeReplyObject(r);
        assert_true(id > 0);
        assert_int_equal(u, units[p]);
        snprintf(id_s, sizeof id_s, "%" PRId64, id);
        snprintf(u_s, sizeof u_s, "%" PRId64, u);
        sh_stock_key_part(st, sku, (unsigned)p, 0, 's');
        const char *akeys[1] = {st};
        const char *aargs[4] = {id_s, u_s, "0", "0"};
        r = reval(g_sid_grant_apply, 1, akeys, 4, aargs);
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        assert_int_equal(reply_i64(r->element[0]), 1);
        freeReplyObject(r);
        const char *jkeys[1] = {jrnl};
        const char *jargs[1] = {id_s};
        r = reval(g_sid_journal_end, 1, jkeys, 1, jargs);
        freeReplyObject(r);
    }
}

typedef struct part_state {
    int64_t s0, s1, ded, seq;
} part_state;

static part_state part_read(const char *sku, int p)
{
    char st[SH_STOCK_KEY_BYTES_MAX];
    sh_stock_key_part(st, sku, (unsigned)p, 0, 's');
    const char *argv[] = {"HMGET", st, "s0", "s1", "ded", "seq"};
    redisReply *r = rcmd(st, 6, argv);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 4);
    part_state ps = {reply_i64(r->element[0]), reply_i64(r->element[1]), reply_i64(r->element[2]),
                     reply_i64(r->element[3])};
    freeReplyObject(r);
    assert_true(ps.s0 >= 0 && ps.s1 >= 0 && ps.ded >= 0 && ps.seq >= 0);
    return ps;
}

/* DESIGN.md 8.1: total = avail + pending grants + sum(s0 + s1 + ded). Returns sum(ded). */
static int64_t check_conservation(const char *sku, int parts)
{
    char pool[SH_STOCK_KEY_BYTES_MAX], jrnl[SH_STOCK_KEY_BYTES_MAX];
    sh_stock_key_pool(pool, sku);
    sh_stock_key_journal(jrnl, sku);
    const char *pargv[] = {"HMGET", pool, "avail", "total"};
    redisReply *r = rcmd(pool, 4, pargv);
    int64_t avail = reply_i64(r->element[0]), total = reply_i64(r->element[1]);
    freeReplyObject(r);
    const char *jargv[] = {"HVALS", jrnl};
    r = rcmd(jrnl, 2, jargv);
    int64_t pending = 0;
    for (size_t k = 0; k < r->elements; k++) {
        int gp;
        long long gu;
        if (sscanf(r->element[k]->str, "g:%d:%lld", &gp, &gu) == 2) {
            pending += gu;
        }
    }
    freeReplyObject(r);
    int64_t sum = 0, ded = 0;
    for (int p = 0; p < parts; p++) {
        part_state ps = part_read(sku, p);
        sum += ps.s0 + ps.s1 + ps.ded;
        ded += ps.ded;
    }
    if (total != avail + pending + sum) {
        fail_msg("conservation broken for %s: total=%" PRId64 " avail=%" PRId64 " pending=%" PRId64
                 " partitions=%" PRId64,
                 sku, total, avail, pending, sum);
    }
    assert_true(ded <= total);
    return ded;
}

typedef struct detail {
    int part;
    sh_stock_detail d;
} detail;

/* Every detail line of partition p's stream, appended to out (cap entries). */
static size_t details_read(const char *sku, int p, detail *out, size_t have, size_t cap)
{
    char dk[SH_STOCK_KEY_BYTES_MAX];
    sh_stock_key_part(dk, sku, (unsigned)p, 0, 'd');
    const char *argv[] = {"XRANGE", dk, "-", "+"};
    redisReply *r = rcmd(dk, 4, argv);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    for (size_t e = 0; e < r->elements; e++) {
        const redisReply *ent = r->element[e];
        assert_int_equal(ent->type, REDIS_REPLY_ARRAY);
        assert_int_equal(ent->elements, 2);
        const redisReply *fields = ent->element[1];
        const redisReply *b = NULL;
        for (size_t f = 0; f + 1 < fields->elements; f += 2) {
            if (strcmp(fields->element[f]->str, "b") == 0) {
                b = fields->element[f + 1];
            }
        }
        assert_non_null(b);
        const char *line = b->str, *end = b->str + b->len;
        while (line < end) {
            const char *nl = memchr(line, '\n', (size_t)(end - line));
            size_t len = nl ? (size_t)(nl - line) : (size_t)(end - line);
            assert_true(have < cap);
            out[have].part = p;
            if (sh_stock_detail_parse(line, len, &out[have].d) != SH_OK) {
                fail_msg("bad detail line in %s: %.*s", dk, (int)len, line);
            }
            have++;
            line += len + (nl ? 1 : 0);
        }
    }
    freeReplyObject(r);
    return have;
}

/* Details of every partition; asserts each partition's seqs are exactly 1..seq. */
static size_t details_check(const char *sku, int parts, detail *out, size_t cap)
{
    size_t n = 0;
    for (int p = 0; p < parts; p++) {
        size_t from = n;
        n = details_read(sku, p, out, n, cap);
        part_state ps = part_read(sku, p);
        assert_int_equal((int64_t)(n - from), ps.seq);
        bool *seen = calloc((size_t)ps.seq + 1, 1);
        assert_non_null(seen);
        int64_t net = 0;
        for (size_t k = from; k < n; k++) {
            uint64_t s = out[k].d.seq;
            assert_true(s >= 1 && s <= (uint64_t)ps.seq);
            assert_false(seen[s]);
            seen[s] = true;
            net += out[k].d.qty;
        }
        free(seen);
        assert_int_equal(net, ps.ded); /* details and counters never disagree */
    }
    return n;
}

/* Units a user holds by its counter: the sum of QTY over its entries
 * order -> "QTY:ROUND" (DESIGN.md 5a). */
static int64_t user_held(const char *key)
{
    const char *argv[] = {"HVALS", key};
    redisReply *r = rcmd(key, 2, argv);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    int64_t sum = 0;
    for (size_t i = 0; i < r->elements; i++) {
        assert_int_equal(r->element[i]->type, REDIS_REPLY_STRING);
        sum += strtoll(r->element[i]->str, NULL, 10);
    }
    freeReplyObject(r);
    return sum;
}

/* Sum of cmdstat_evalsha calls over every master. */
static int64_t evalsha_calls(void)
{
    int64_t sum = 0;
    int masters = sh_cluster_master_count(g_router);
    assert_true(masters >= 1);
    for (int m = 0; m < masters; m++) {
        char addr[300];
        assert_int_equal(sh_cluster_master_addr(g_router, m, addr, sizeof addr), SH_OK);
        const char *argv[] = {"INFO", "commandstats"};
        const size_t lens[] = {4, 12};
        redisReply *r = NULL;
        assert_int_equal(sh_cluster_node_command(g_router, addr, 2, argv, lens, &r), SH_OK);
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        const char *at = strstr(r->str, "cmdstat_evalsha:calls=");
        if (at != NULL) {
            sum += strtoll(at + strlen("cmdstat_evalsha:calls="), NULL, 10);
        }
        freeReplyObject(r);
    }
    return sum;
}

/* ==== the load driver (worker threads) ===================================== */

typedef struct job {
    sh_wire_item item;  /* partition = where to go next; from/claim_version set on retries */
    sh_wire_result res; /* the last answer */
    int hops;           /* RETRY answers followed */
    bool done;
} job;

typedef struct driver {
    job *jobs;
    size_t njobs;
    int parts;
    int batch_max; /* messages carry 1..batch_max items, at random */
    bool release;  /* RELEASE_REQ instead of DEDUCT_REQ */
    bool stop_on_error;
    unsigned seed;
    int timeout_ms;
    pthread_barrier_t *start;
    atomic_int *oks; /* bumped for every OK seen, if set */
    int err;         /* the first call failure that was not recovered */
    int calls;
} driver;

static void *driver_main(void *arg)
{
    driver *d = arg;
    client c;
    d->err = client_open(&c, d->timeout_ms);
    if (d->start != NULL) {
        pthread_barrier_wait(d->start);
    }
    if (d->err != 0) {
        return NULL;
    }
    sh_wire_item *items = calloc((size_t)d->batch_max, sizeof *items);
    sh_wire_result *res = calloc((size_t)d->batch_max, sizeof *res);
    size_t *which = calloc((size_t)d->batch_max, sizeof *which);
    if (items == NULL || res == NULL || which == NULL) {
        d->err = NNG_ENOMEM;
    }
    size_t left = d->njobs;
    size_t cursor = 0;
    while (d->err == 0 && left > 0) {
        size_t want = 1 + (size_t)(rand_r(&d->seed) % (unsigned)d->batch_max);
        size_t n = 0;
        for (size_t scanned = 0; scanned < d->njobs && n < want; scanned++) {
            size_t j = (cursor + scanned) % d->njobs;
            if (!d->jobs[j].done) {
                which[n] = j;
                items[n] = d->jobs[j].item;
                items[n].tag = j;
                n++;
            }
        }
        cursor = (which[n - 1] + 1) % d->njobs;
        int rv = -1;
        for (int attempt = 0; attempt < CALL_ATTEMPTS_MAX && rv != 0; attempt++) {
            rv = client_call(&c, d->release ? SH_WIRE_RELEASE_REQ : SH_WIRE_DEDUCT_REQ, items, n,
                             res);
            d->calls++;
            if (rv != 0 && d->stop_on_error) {
                break;
            }
        }
        if (rv != 0) {
            d->err = rv;
            break;
        }
        for (size_t k = 0; k < n; k++) {
            job *jb = &d->jobs[which[k]];
            jb->res = res[k];
            if (res[k].status == SH_WIRE_OUT_RETRY && jb->hops < HOPS_MAX && !d->release) {
                /* Move the claim away from the partition that refused, by CAS. */
                jb->hops++;
                jb->item.from_partition = res[k].partition;
                jb->item.claim_version = res[k].claim_version;
                jb->item.partition = (uint16_t)((res[k].partition + 1) % d->parts);
                continue;
            }
            if (res[k].status == SH_WIRE_OUT_OK && d->oks != NULL) {
                atomic_fetch_add(d->oks, 1);
            }
            jb->done = true;
            left--;
        }
    }
    free(items);
    free(res);
    free(which);
    client_close(&c);
    return NULL;
}

/* Runs nthreads drivers to completion (bounded by the calls' timeouts). */
static void drivers_run(driver *d, int nthreads)
{
    assert_true(nthreads >= 1 && nthreads <= THREADS_MAX);
    pthread_t th[THREADS_MAX];
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, (unsigned)nthreads), 0);
    for (int t = 0; t < nthreads; t++) {
        d[t].start = &start;
        assert_int_equal(pthread_create(&th[t], NULL, driver_main, &d[t]), 0);
    }
    for (int t = 0; t < nthreads; t++) {
        assert_int_equal(pthread_join(th[t], NULL), 0);
    }
    pthread_barrier_destroy(&start);
    for (int t = 0; t < nthreads; t++) {
        if (d[t].err != 0) {
            node_log_tail();
            fail_msg("thread %d: call failed %d (%s)", t, d[t].err,
                     d[t].err > 0 ? nng_strerror(d[t].err) : "decode/mismatch");
        }
    }
}

static driver driver_make(job *jobs, size_t njobs, int parts, int batch_max, unsigned seed)
{
    driver d;
    memset(&d, 0, sizeof d);
    d.jobs = jobs;
    d.njobs = njobs;
    d.parts = parts;
    d.batch_max = batch_max;
    d.seed = seed;
    d.timeout_ms = CALL_TIMEOUT_MS;
    return d;
}

/* ==== fixtures ============================================================== */

static int group_setup(void **state)
{
    (void)state;
    env_load();
    sh_log_init("test-node", SH_LOG_WARN, 2);
    signal(SIGPIPE, SIG_IGN);
    sh_err rc = sh_cluster_open(&g_router, g_seed, ROUTER_TIMEOUT_MS);
    if (rc != SH_OK) {
        fail_msg("sh_cluster_open(%s): %s", g_seed, sh_strerror(rc));
    }
    struct {
        sh_stock_script s;
        int *id;
    } scripts[] = {{SH_SCRIPT_PART_INIT, &g_sid_part_init},
                   {SH_SCRIPT_POOL_INIT, &g_sid_pool_init},
                   {SH_SCRIPT_GRANT_BEGIN, &g_sid_grant_begin},
                   {SH_SCRIPT_GRANT_APPLY, &g_sid_grant_apply},
                   {SH_SCRIPT_JOURNAL_END, &g_sid_journal_end},
                   {SH_SCRIPT_EPOCH_STAMP, &g_sid_stamp},
                   {SH_SCRIPT_DEDUCT, &g_sid_deduct}};
    for (size_t k = 0; k < sizeof scripts / sizeof scripts[0]; k++) {
        assert_int_equal(
            sh_cluster_script_add(g_router, sh_stock_script_text(scripts[k].s), scripts[k].id),
            SH_OK);
    }
    print_message("node log: %s\n", g_log);
    node_start();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g_node > 0) {
        (void)node_stop();
    }
    sh_cluster_close(g_router);
    g_router = NULL;
    return 0;
}

/* Each test starts with a live node, even after an earlier test lost it. */
static int test_setup(void **state)
{
    (void)state;
    if (!node_alive()) {
        print_message("node not running: starting it\n");
        node_start();
    }
    return 0;
}

/* ==== a. basics ============================================================= */

static void test_a_basic(void **state)
{
    (void)state;
    char sku[64];
    sku_name(sku, sizeof sku, "a");
    const int64_t units[2] = {10, 10};
    sku_create(sku, 2, units, 0);

    sh_wire_item it = mk_item(sku, "o1", "u1", 2, 0);
    it.tag = 77;
    sh_wire_result r = call1(SH_WIRE_DEDUCT_REQ, &it);
    assert_int_equal(r.status, SH_WIRE_OUT_OK);
    assert_int_equal(r.flags & SH_WIRE_RES_F_DUPLICATE, 0);
    assert_int_equal(r.tag, 77);
    assert_int_equal(r.seq, 1);
    assert_int_equal(r.qty, 2);
    assert_int_equal(r.partition, 0);
    assert_int_equal(r.claim_version, 1);
    assert_int_equal(r.s0 + r.s1, 8);

    /* The same order again, here and on the other partition: the first outcome. */
    r = call1(SH_WIRE_DEDUCT_REQ, &it);
    assert_int_equal(r.status, SH_WIRE_OUT_OK);
    assert_true(r.flags & SH_WIRE_RES_F_DUPLICATE);
    assert_int_equal(r.seq, 1);
    assert_int_equal(r.partition, 0);
    sh_wire_item other = it;
    other.partition = 1;
    r = call1(SH_WIRE_DEDUCT_REQ, &other);
    assert_int_equal(r.status, SH_WIRE_OUT_OK);
    assert_true(r.flags & SH_WIRE_RES_F_DUPLICATE);
    assert_int_equal(r.seq, 1);
    assert_int_equal(r.partition, 0);

    /* Same order, other qty. */
    sh_wire_item conflict = it;
    conflict.qty = 3;
    r = call1(SH_WIRE_DEDUCT_REQ, &conflict);
    assert_int_equal(r.status, SH_WIRE_OUT_CONFLICT);
    assert_int_equal(r.partition, 0);

    /* Release: units back, a negative detail. */
    sh_wire_item rel = mk_item(sku, "o1", "", 0, 1);
    r = call1(SH_WIRE_RELEASE_REQ, &rel);
    assert_int_equal(r.status, SH_WIRE_OUT_OK);
    assert_int_equal(r.flags & SH_WIRE_RES_F_DUPLICATE, 0);
    assert_int_equal(r.partition, 0);
    assert_int_equal(r.seq, 2);
    assert_int_equal(r.qty, 2);
    assert_int_equal(r.s0 + r.s1, 10);
    detail det[8];
    size_t nd = details_read(sku, 0, det, 0, 8);
    assert_int_equal(nd, 2);
    assert_int_equal(det[0].d.seq, 1);
    assert_int_equal(det[0].d.qty, 2);
    assert_string_equal(det[0].d.order_id, "o1");
    assert_string_equal(det[0].d.user_id, "u1");
    assert_int_equal(det[1].d.seq, 2);
    assert_int_equal(det[1].d.qty, -2);
    assert_string_equal(det[1].d.order_id, "o1");
    assert_string_equal(det[1].d.user_id, "u1");

    r = call1(SH_WIRE_RELEASE_REQ, &rel);
    assert_int_equal(r.status, SH_WIRE_OUT_OK);
    assert_true(r.flags & SH_WIRE_RES_F_DUPLICATE);
    assert_int_equal(r.seq, 2);

    sh_wire_item unknown = mk_item(sku, "never-seen", "", 0, 0);
    r = call1(SH_WIRE_RELEASE_REQ, &unknown);
    assert_int_equal(r.status, SH_WIRE_OUT_UNKNOWN_ORDER);

    /* Invalid items are answered one by one, next to valid ones. */
    sh_wire_item batch[4] = {mk_item(sku, "o2", "u2", 1, 1), mk_item("no{such", "o3", "u", 1, 0),
                             mk_item(sku, "o4", "u4", 1, 7), mk_item(sku, "o{5", "u5", 1, 0)};
    char nosku[64];
    sku_name(nosku, sizeof nosku, "a-missing");
    sh_wire_item missing = mk_item(nosku, "o6", "u6", 1, 0);
    client c;
    assert_int_equal(client_open(&c, CALL_TIMEOUT_MS), 0);
    sh_wire_result rs[4];
    for (int k = 0; k < 4; k++) {
        batch[k].tag = (uint64_t)k;
    }
    assert_int_equal(client_call(&c, SH_WIRE_DEDUCT_REQ, batch, 4, rs), 0);
    assert_int_equal(rs[0].status, SH_WIRE_OUT_OK);
    assert_int_equal(rs[0].partition, 1);
    assert_int_equal(rs[1].status, SH_WIRE_OUT_INVALID);
    assert_int_equal(rs[2].status, SH_WIRE_OUT_INVALID); /* partition 7 of 2 */
    assert_int_equal(rs[3].status, SH_WIRE_OUT_INVALID);
    assert_int_equal(client_call(&c, SH_WIRE_DEDUCT_REQ, &missing, 1, rs), 0);
    assert_int_equal(rs[0].status, SH_WIRE_OUT_INVALID); /* no pool: unknown SKU */
    client_close(&c);

    assert_int_equal(check_conservation(sku, 2), 1);
    detail all[16];
    assert_int_equal(details_check(sku, 2, all, 16), 3);
}

/* ==== b. concurrency and oversell =========================================== */

#define B_THREADS 16
#define B_ORDERS  1000
#define B_UNITS   150 /* per partition; 2 partitions */

static void test_b_oversell(void **state)
{
    (void)state;
    char sku[64];
    sku_name(sku, sizeof sku, "b");
    const int64_t units[2] = {B_UNITS, B_UNITS};
    sku_create(sku, 2, units, 0);
    job *jobs = calloc(B_ORDERS, sizeof *jobs);
    assert_non_null(jobs);
    for (int k = 0; k < B_ORDERS; k++) {
        char order[32], user[32];
        snprintf(order, sizeof order, "b-%d", k);
        snprintf(user, sizeof user, "user-%d", k % 97);
        jobs[k].item = mk_item(sku, order, user, 1, (uint16_t)(k % 2)); /* round-robin */
    }
    driver d[B_THREADS];
    size_t per = B_ORDERS / B_THREADS;
    for (int t = 0; t < B_THREADS; t++) {
        size_t from = (size_t)t * per;
        size_t n = t == B_THREADS - 1 ? B_ORDERS - from : per;
        d[t] = driver_make(jobs + from, n, 2, 32, 1000u + (unsigned)t);
    }
    drivers_run(d, B_THREADS);

    int ok = 0, retry = 0, other = 0;
    for (int k = 0; k < B_ORDERS; k++) {
        assert_true(jobs[k].done);
        if (jobs[k].res.status == SH_WIRE_OUT_OK) {
            ok++;
            assert_int_equal(jobs[k].res.flags & SH_WIRE_RES_F_DUPLICATE, 0);
        } else if (jobs[k].res.status == SH_WIRE_OUT_RETRY) {
            retry++;
        } else {
            other++;
        }
    }
    print_message("b: ok=%d refused=%d other=%d\n", ok, retry, other);
    assert_int_equal(ok, 2 * B_UNITS);                         /* all stock sold ... */
    assert_int_equal(other, 0);                                /* ... and nothing else went wrong */
    assert_int_equal(check_conservation(sku, 2), 2 * B_UNITS); /* ... and no more */
    detail *det = calloc(DETAILS_MAX, sizeof *det);
    assert_non_null(det);
    size_t nd = details_check(sku, 2, det, DETAILS_MAX);
    assert_int_equal(nd, 2 * B_UNITS);
    /* Every OK answer is exactly the detail Redis wrote. */
    for (size_t i = 0; i < nd; i++) {
        int k = atoi(det[i].d.order_id + 2);
        assert_true(k >= 0 && k < B_ORDERS);
        assert_int_equal(jobs[k].res.status, SH_WIRE_OUT_OK);
        assert_int_equal(jobs[k].res.partition, det[i].part);
        assert_int_equal(jobs[k].res.seq, det[i].d.seq);
        assert_int_equal(det[i].d.qty, 1);
    }
    free(det);
    free(jobs);
}

/* ==== c. idempotency across partitions under races ========================= */

#define C_ORDERS 200
#define C_SENDS  3 /* per order, from different threads, to different partitions */
#define C_PARTS  3
#define C_UNITS  50 /* per partition: fewer units than orders, so claims move */

static void test_c_idempotent_races(void **state)
{
    (void)state;
    char sku[64];
    sku_name(sku, sizeof sku, "c");
    const int64_t units[C_PARTS] = {C_UNITS, C_UNITS, C_UNITS};
    sku_create(sku, C_PARTS, units, 0);
    job *jobs = calloc(C_SENDS * C_ORDERS, sizeof *jobs);
    assert_non_null(jobs);
    driver d[C_SENDS];
    for (int t = 0; t < C_SENDS; t++) {
        for (int k = 0; k < C_ORDERS; k++) {
            char order[32];
            snprintf(order, sizeof order, "c-%d", k);
            jobs[t * C_ORDERS + k].item =
                mk_item(sku, order, "cu", 1, (uint16_t)((k + t) % C_PARTS));
        }
        d[t] = driver_make(jobs + t * C_ORDERS, C_ORDERS, C_PARTS, 16, 2000u + (unsigned)t);
    }
    drivers_run(d, C_SENDS);

    int ok_orders = 0;
    for (int k = 0; k < C_ORDERS; k++) {
        int firsts = 0, oks = 0;
        const sh_wire_result *ref = NULL;
        for (int t = 0; t < C_SENDS; t++) {
            const sh_wire_result *r = &jobs[t * C_ORDERS + k].res;
            assert_true(r->status == SH_WIRE_OUT_OK || r->status == SH_WIRE_OUT_RETRY);
            if (r->status != SH_WIRE_OUT_OK) {
                continue;
            }
            oks++;
            firsts += (r->flags & SH_WIRE_RES_F_DUPLICATE) == 0;
            if (ref == NULL) {
                ref = r;
            }
            /* Repeats return the first outcome: same partition, same seq. */
            assert_int_equal(r->partition, ref->partition);
            assert_int_equal(r->seq, ref->seq);
        }
        assert_true(firsts <= 1);
        assert_true(oks == 0 || firsts == 1);
        ok_orders += oks > 0;
    }
    int64_t ded = check_conservation(sku, C_PARTS);
    print_message("c: orders deducted=%d of %d, units=%d\n", ok_orders, C_ORDERS,
                  C_PARTS * C_UNITS);
    assert_int_equal(ded, ok_orders);
    assert_true(ok_orders <= C_PARTS * C_UNITS);
    detail *det = calloc(DETAILS_MAX, sizeof *det);
    assert_non_null(det);
    size_t nd = details_check(sku, C_PARTS, det, DETAILS_MAX);
    assert_int_equal(nd, (size_t)ok_orders);
    bool seen[C_ORDERS] = {false};
    for (size_t i = 0; i < nd; i++) {
        int k = atoi(det[i].d.order_id + 2);
        assert_true(k >= 0 && k < C_ORDERS);
        assert_false(seen[k]); /* one order, one deduction, on one partition */
        seen[k] = true;
    }
    free(det);
    free(jobs);
}

/* ==== d. per-user limit across partitions =================================== */

#define D_ORDERS 10
#define D_LIMIT  3

static void test_d_user_limit(void **state)
{
    (void)state;
    char sku[64];
    sku_name(sku, sizeof sku, "d");
    const int64_t units[2] = {50, 50};
    sku_create(sku, 2, units, D_LIMIT);
    job jobs[D_ORDERS];
    driver d[D_ORDERS];
    memset(jobs, 0, sizeof jobs);
    for (int k = 0; k < D_ORDERS; k++) {
        char order[32];
        snprintf(order, sizeof order, "d-%d", k);
        jobs[k].item = mk_item(sku, order, "buyer", 1, (uint16_t)(k % 2));
        jobs[k].item.per_user_limit = D_LIMIT;
        d[k] = driver_make(&jobs[k], 1, 2, 1, 3000u + (unsigned)k);
    }
    drivers_run(d, D_ORDERS);
    int ok = 0, limited = 0;
    sh_wire_item rel = jobs[0].item; /* the first order that got OK, released below */
    for (int k = D_ORDERS - 1; k >= 0; k--) {
        if (jobs[k].res.status == SH_WIRE_OUT_OK) {
            ok++;
            rel = jobs[k].item;
        } else if (jobs[k].res.status == SH_WIRE_OUT_USER_LIMIT) {
            limited++;
        }
    }
    print_message("d: ok=%d user_limit=%d\n", ok, limited);
    assert_int_equal(ok, D_LIMIT);
    assert_int_equal(limited, D_ORDERS - D_LIMIT);
    char ukey[SH_STOCK_KEY_BYTES_MAX];
    sh_stock_key_user(ukey, sku, "buyer");
    assert_int_equal(user_held(ukey), D_LIMIT); /* refusals gave their units back */

    /* Releasing one order gives the user room for exactly one more. */
    rel.qty = 0;
    rel.user_id[0] = '\0';
    rel.user_id_len = 0;
    sh_wire_result r = call1(SH_WIRE_RELEASE_REQ, &rel);
    assert_int_equal(r.status, SH_WIRE_OUT_OK);
    assert_int_equal(user_held(ukey), D_LIMIT - 1);
    sh_wire_item more = mk_item(sku, "d-more", "buyer", 1, 1);
    more.per_user_limit = D_LIMIT;
    r = call1(SH_WIRE_DEDUCT_REQ, &more);
    assert_int_equal(r.status, SH_WIRE_OUT_OK);
    sh_wire_item again = mk_item(sku, "d-again", "buyer", 1, 0);
    again.per_user_limit = D_LIMIT;
    r = call1(SH_WIRE_DEDUCT_REQ, &again);
    assert_int_equal(r.status, SH_WIRE_OUT_USER_LIMIT);
    assert_int_equal(user_held(ukey), D_LIMIT);
    assert_int_equal(check_conservation(sku, 2), D_LIMIT);
}

/* ==== i. scripts that run twice, and fencing ================================ */

/* Element k of an array reply as an integer. */
static int64_t elem_i64(const redisReply *r, size_t k)
{
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_true(k < r->elements);
    return reply_i64(r->element[k]);
}

/* GRANT_BEGIN and DEDUCT take an id their caller chose, so running one twice
 * (the router could not tell whether the first send ran) changes nothing and
 * answers as the first run did; grant scripts refuse an epoch below the one
 * stamped into the keys (issue "Exact I"). */
static void test_i_rerun_and_fence(void **state)
{
    (void)state;
    char sku[64], pool[SH_STOCK_KEY_BYTES_MAX], jrnl[SH_STOCK_KEY_BYTES_MAX];
    char st[SH_STOCK_KEY_BYTES_MAX], dk[SH_STOCK_KEY_BYTES_MAX], ok[SH_STOCK_KEY_BYTES_MAX];
    sku_name(sku, sizeof sku, "i");
    const int64_t units[1] = {10};
    sku_create(sku, 1, units, 0);
    sh_stock_key_pool(pool, sku);
    sh_stock_key_journal(jrnl, sku);
    sh_stock_key_part(st, sku, 0, 0, 's');
    sh_stock_key_part(dk, sku, 0, 0, 'd');
    sh_stock_key_part(ok, sku, 0, 0, 'o');
    const char *incr[] = {"HINCRBY", pool, "avail", "50"};
    freeReplyObject(rcmd(pool, 4, incr));

    /* A begin run twice with its id takes once and answers the same. */
    const char *gkeys[2] = {pool, jrnl};
    const char *g10[4] = {"0", "20", "10", "0"};
    redisReply *r = reval(g_sid_grant_begin, 2, gkeys, 4, g10);
    assert_int_equal(elem_i64(r, 0), 10);
    assert_int_equal(elem_i64(r, 1), 20);
    assert_int_equal(elem_i64(r, 2), 30);
    freeReplyObject(r);
    r = reval(g_sid_grant_begin, 2, gkeys, 4, g10);
    assert_int_equal(elem_i64(r, 1), 20);
    assert_int_equal(elem_i64(r, 2), 30);
    freeReplyObject(r);
    /* A spent id (at or below nextid, not journaled) takes nothing: a late
     * copy of a begin its caller gave up on. */
    const char *g5[4] = {"0", "20", "5", "0"};
    r = reval(g_sid_grant_begin, 2, gkeys, 4, g5);
    assert_int_equal(elem_i64(r, 1), 0);
    assert_int_equal(elem_i64(r, 2), 30);
    freeReplyObject(r);

    /* Fencing: stamp epoch 7; epoch 6 can neither stamp nor begin nor apply. */
    const char *pk[1] = {pool};
    const char *sk[1] = {st};
    r = reval(g_sid_stamp, 1, pk, 1, (const char *[]){"7"});
    assert_int_equal(reply_i64(r), 1);
    freeReplyObject(r);
    r = reval(g_sid_stamp, 1, sk, 1, (const char *[]){"7"});
    freeReplyObject(r);
    assert_fenced(reval_any(g_sid_stamp, 1, pk, 1, (const char *[]){"6"}));
    assert_fenced(reval_any(g_sid_grant_begin, 2, gkeys, 4, (const char *[]){"0", "5", "11", "6"}));
    assert_fenced(reval_any(g_sid_grant_apply, 1, sk, 4, (const char *[]){"10", "20", "0", "6"}));
    const char *hget[] = {"HGET", pool, "avail"};
    r = rcmd(pool, 3, hget);
    assert_int_equal(reply_i64(r), 30);
    freeReplyObject(r);
    r = reval(g_sid_grant_apply, 1, sk, 4, (const char *[]){"10", "20", "0", "7"});
    assert_int_equal(elem_i64(r, 0), 1);
    freeReplyObject(r);

    /* DEDUCT run twice with its round id answers OK both times (not
     * DUPLICATE) and deducts once; another round id sees a DUPLICATE. */
    const char *dkeys[3] = {st, dk, ok};
    const char *d1[10] = {"1", "0", "600", "1", "rid-1", "o1", "D", "u1", "3", "1"};
    for (int run = 0; run < 2; run++) {
        r = reval(g_sid_deduct, 3, dkeys, 10, d1);
        assert_int_equal(elem_i64(r, 4), SH_ITEM_OK);
        assert_int_equal(elem_i64(r, 5), 1); /* seq */
        freeReplyObject(r);
    }
    const char *d2[10] = {"1", "0", "600", "1", "rid-2", "o1", "D", "u1", "3", "1"};
    r = reval(g_sid_deduct, 3, dkeys, 10, d2);
    assert_int_equal(elem_i64(r, 4), SH_ITEM_DUPLICATE);
    freeReplyObject(r);
    part_state ps = part_read(sku, 0);
    assert_int_equal(ps.ded, 3);
    assert_int_equal(ps.seq, 1);
    /* Released, then deducted again: RELEASED, nothing changes. */
    const char *rel[10] = {"1", "0", "600", "1", "rid-3", "o1", "R", "", "0", "0"};
    r = reval(g_sid_deduct, 3, dkeys, 10, rel);
    assert_int_equal(elem_i64(r, 4), SH_ITEM_OK);
    freeReplyObject(r);
    const char *d4[10] = {"1", "0", "600", "1", "rid-4", "o1", "D", "u1", "3", "1"};
    r = reval(g_sid_deduct, 3, dkeys, 10, d4);
    assert_int_equal(elem_i64(r, 4), SH_ITEM_RELEASED);
    freeReplyObject(r);
    ps = part_read(sku, 0);
    assert_int_equal(ps.ded, 0);
    assert_int_equal(ps.seq, 2);
}

/* ==== e0. batching is exact ================================================= */

#define E0_ITEMS 40

/* One message: one script call per NODE_BATCH_ITEMS items of a partition, in
 * request order; nothing else runs a script meanwhile (claims are SETs). */
static void test_e0_batching_exact(void **state)
{
    (void)state;
    char sku[64];
    sku_name(sku, sizeof sku, "e0");
    const int64_t units[2] = {100, 100};
    sku_create(sku, 2, units, 0);
    sh_wire_item items[E0_ITEMS];
    sh_wire_result res[E0_ITEMS];
    for (int k = 0; k < E0_ITEMS; k++) {
        char order[32];
        snprintf(order, sizeof order, "one-%d", k);
        items[k] = mk_item(sku, order, "eu", 1, 0);
        items[k].tag = (uint64_t)k;
    }
    client c;
    assert_int_equal(client_open(&c, CALL_TIMEOUT_MS), 0);
    int64_t before = evalsha_calls();
    assert_int_equal(client_call(&c, SH_WIRE_DEDUCT_REQ, items, E0_ITEMS, res), 0);
    int64_t one_part = evalsha_calls() - before;
    for (int k = 0; k < E0_ITEMS; k++) {
        assert_int_equal(res[k].status, SH_WIRE_OUT_OK);
        assert_int_equal(res[k].partition, 0);
        assert_int_equal(res[k].seq, (uint64_t)k + 1); /* request order within the group */
    }
    assert_int_equal(one_part, (E0_ITEMS + NODE_BATCH_ITEMS - 1) / NODE_BATCH_ITEMS);

    /* Half of them to each partition: ceil(20/16) = 2 calls each. */
    for (int k = 0; k < E0_ITEMS; k++) {
        char order[32];
        snprintf(order, sizeof order, "two-%d", k);
        items[k] = mk_item(sku, order, "eu", 1, (uint16_t)(k % 2));
        items[k].tag = (uint64_t)k;
    }
    before = evalsha_calls();
    assert_int_equal(client_call(&c, SH_WIRE_DEDUCT_REQ, items, E0_ITEMS, res), 0);
    int64_t two_parts = evalsha_calls() - before;
    client_close(&c);
    for (int k = 0; k < E0_ITEMS; k++) {
        assert_int_equal(res[k].status, SH_WIRE_OUT_OK);
        assert_int_equal(res[k].partition, k % 2);
    }
    int per_part = E0_ITEMS / 2;
    assert_int_equal(two_parts, 2 * ((per_part + NODE_BATCH_ITEMS - 1) / NODE_BATCH_ITEMS));
    assert_int_equal(check_conservation(sku, 2), 2 * E0_ITEMS);
    detail det[2 * E0_ITEMS + 4];
    assert_int_equal(details_check(sku, 2, det, 2 * E0_ITEMS + 4), 2 * E0_ITEMS);
}

/* The script reads every order of a call with one HMGET before it writes
 * anything, so repeats inside one call must be answered from what the call
 * itself wrote. */
static void test_e1_repeats_in_one_call(void **state)
{
    (void)state;
    char sku[64];
    sku_name(sku, sizeof sku, "e1");
    const int64_t units[1] = {10};
    sku_create(sku, 1, units, 0);
    sh_wire_item items[5] = {
        mk_item(sku, "A", "ua", 2, 0), mk_item(sku, "A", "ua", 2, 0), mk_item(sku, "A", "ua", 3, 0),
        mk_item(sku, "B", "ub", 1, 0), mk_item(sku, "B", "ub", 1, 0),
    };
    sh_wire_result res[5];
    client c;
    assert_int_equal(client_open(&c, CALL_TIMEOUT_MS), 0);
    int64_t before = evalsha_calls();
    assert_int_equal(client_call(&c, SH_WIRE_DEDUCT_REQ, items, 5, res), 0);
    assert_int_equal(evalsha_calls() - before, 1);
    assert_int_equal(res[0].status, SH_WIRE_OUT_OK);
    assert_int_equal(res[0].flags & SH_WIRE_RES_F_DUPLICATE, 0);
    assert_int_equal(res[0].seq, 1);
    assert_int_equal(res[1].status, SH_WIRE_OUT_OK);
    assert_true(res[1].flags & SH_WIRE_RES_F_DUPLICATE);
    assert_int_equal(res[1].seq, 1);
    assert_int_equal(res[2].status, SH_WIRE_OUT_CONFLICT);
    assert_int_equal(res[3].status, SH_WIRE_OUT_OK);
    assert_int_equal(res[3].flags & SH_WIRE_RES_F_DUPLICATE, 0);
    assert_int_equal(res[3].seq, 2);
    assert_int_equal(res[4].status, SH_WIRE_OUT_OK);
    assert_true(res[4].flags & SH_WIRE_RES_F_DUPLICATE);
    assert_int_equal(res[4].seq, 2);
    assert_int_equal(res[4].s0 + res[4].s1, 7);

    /* Release A twice in one call: units back once, one negative detail. */
    sh_wire_item rel[2] = {mk_item(sku, "A", "", 0, 0), mk_item(sku, "A", "", 0, 0)};
    before = evalsha_calls();
    assert_int_equal(client_call(&c, SH_WIRE_RELEASE_REQ, rel, 2, res), 0);
    assert_int_equal(evalsha_calls() - before, 1);
    client_close(&c);
    assert_int_equal(res[0].status, SH_WIRE_OUT_OK);
    assert_int_equal(res[0].flags & SH_WIRE_RES_F_DUPLICATE, 0);
    assert_int_equal(res[0].seq, 3);
    assert_int_equal(res[0].qty, 2);
    assert_int_equal(res[1].status, SH_WIRE_OUT_OK);
    assert_true(res[1].flags & SH_WIRE_RES_F_DUPLICATE);
    assert_int_equal(res[1].seq, 3);
    assert_int_equal(res[1].s0 + res[1].s1, 9);
    detail det[8];
    size_t nd = details_read(sku, 0, det, 0, 8);
    assert_int_equal(nd, 3);
    assert_int_equal(det[0].d.qty, 2);
    assert_string_equal(det[0].d.order_id, "A");
    assert_int_equal(det[1].d.qty, 1);
    assert_string_equal(det[1].d.order_id, "B");
    assert_int_equal(det[2].d.qty, -2);
    assert_string_equal(det[2].d.order_id, "A");
    assert_int_equal(check_conservation(sku, 1), 1);
}

/* ==== e. coalescing (group commit) ========================================== */

#define E_THREADS    32
#define E_DEDUCTIONS 2000

static void test_e_coalescing(void **state)
{
    (void)state;
    char sku[64];
    sku_name(sku, sizeof sku, "e");
    const int64_t units[2] = {5000, 5000};
    sku_create(sku, 2, units, 0);
    job *jobs = calloc(E_DEDUCTIONS, sizeof *jobs);
    assert_non_null(jobs);
    for (int k = 0; k < E_DEDUCTIONS; k++) {
        char order[32];
        snprintf(order, sizeof order, "e-%d", k);
        jobs[k].item = mk_item(sku, order, "eu", 1, (uint16_t)(k % 2));
    }
    driver d[E_THREADS];
    size_t per = E_DEDUCTIONS / E_THREADS;
    for (int t = 0; t < E_THREADS; t++) {
        size_t from = (size_t)t * per;
        size_t n = t == E_THREADS - 1 ? E_DEDUCTIONS - from : per;
        d[t] = driver_make(jobs + from, n, 2, 1, 4000u + (unsigned)t); /* one item a message */
    }
    int64_t before = evalsha_calls();
    uint64_t t0 = sh_clock_mono_us();
    drivers_run(d, E_THREADS);
    uint64_t us = sh_clock_mono_us() - t0;
    int64_t calls = evalsha_calls() - before;
    for (int k = 0; k < E_DEDUCTIONS; k++) {
        assert_int_equal(jobs[k].res.status, SH_WIRE_OUT_OK);
    }
    print_message("e: coalescing %" PRId64 " evalsha for %d deductions (%.3f per deduction), "
                  "%d messages of one item from %d threads, %.0f deductions/s\n",
                  calls, E_DEDUCTIONS, (double)calls / E_DEDUCTIONS, E_DEDUCTIONS, E_THREADS,
                  us > 0 ? E_DEDUCTIONS * 1e6 / (double)us : 0.0);
    assert_true(calls >= 1);
    assert_true(calls < E_DEDUCTIONS / 2);
    assert_int_equal(check_conservation(sku, 2), E_DEDUCTIONS);
    free(jobs);
}

/* ==== f. garbage ============================================================ */

/* Sends raw bytes; asserts a reply of zero results of the given type and req_id. */
static void expect_empty_reply(client *c, const void *buf, size_t len, sh_wire_type type,
                               uint64_t req_id)
{
    void *rep = NULL;
    size_t rep_len = 0;
    int rv = client_raw(c, buf, len, &rep, &rep_len);
    if (rv != 0) {
        node_log_tail();
        fail_msg("no reply to %zu bytes of garbage: %s", len, nng_strerror(rv));
    }
    sh_wire_header hdr;
    sh_err rc = sh_wire_results_decode(rep, rep_len, &hdr, NULL, 0);
    nng_free(rep, rep_len);
    assert_int_equal(rc, SH_OK);
    assert_int_equal(hdr.count, 0);
    assert_int_equal(hdr.type, type);
    assert_int_equal(hdr.req_id, req_id);
}

static void test_f_garbage(void **state)
{
    (void)state;
    char sku[64];
    sku_name(sku, sizeof sku, "f");
    const int64_t units[1] = {10};
    sku_create(sku, 1, units, 0);
    client c;
    assert_int_equal(client_open(&c, CALL_TIMEOUT_MS), 0);

    uint8_t junk[300];
    unsigned seed = 5u;
    for (size_t i = 0; i < sizeof junk; i++) {
        junk[i] = (uint8_t)rand_r(&seed);
    }
    junk[0] = 0xFF; /* not a version: the req_id is unknown, so 0 */
    expect_empty_reply(&c, junk, sizeof junk, SH_WIRE_DEDUCT_REP, 0);
    expect_empty_reply(&c, junk, 5, SH_WIRE_DEDUCT_REP, 0);
    expect_empty_reply(&c, junk, 0, SH_WIRE_DEDUCT_REP, 0);

    /* A valid request cut short: the header is readable, so its req_id comes back. */
    sh_wire_item items[3] = {mk_item(sku, "f1", "fu", 1, 0), mk_item(sku, "f2", "fu", 1, 0),
                             mk_item(sku, "f3", "fu", 1, 0)};
    uint8_t buf[1024];
    size_t len = 0;
    assert_int_equal(
        sh_wire_items_encode(buf, sizeof buf, &len, SH_WIRE_DEDUCT_REQ, 4242, items, 3), SH_OK);
    expect_empty_reply(&c, buf, len / 2, SH_WIRE_DEDUCT_REP, 4242);
    expect_empty_reply(&c, buf, SH_WIRE_HEADER_BYTES, SH_WIRE_DEDUCT_REP, 4242);
    assert_int_equal(
        sh_wire_items_encode(buf, sizeof buf, &len, SH_WIRE_RELEASE_REQ, 4343, items, 3), SH_OK);
    expect_empty_reply(&c, buf, len - 1, SH_WIRE_RELEASE_REP, 4343);
    /* A bad version byte, and a well-formed message of a type nodes do not serve. */
    assert_int_equal(
        sh_wire_items_encode(buf, sizeof buf, &len, SH_WIRE_DEDUCT_REQ, 4444, items, 3), SH_OK);
    buf[0] = 99;
    expect_empty_reply(&c, buf, len, SH_WIRE_DEDUCT_REP, 0);
    sh_wire_ack ack;
    memset(&ack, 0, sizeof ack);
    assert_int_equal(sh_wire_str_set(ack.sku, sizeof ack.sku, &ack.sku_len, "x", 1), SH_OK);
    assert_int_equal(sh_wire_ack_encode(buf, sizeof buf, &len, 4545, &ack), SH_OK);
    expect_empty_reply(&c, buf, len, SH_WIRE_DEDUCT_REP, 4545);
    /* Trailing bytes after a complete request. */
    assert_int_equal(
        sh_wire_items_encode(buf, sizeof buf, &len, SH_WIRE_DEDUCT_REQ, 4646, items, 3), SH_OK);
    buf[len] = 0;
    expect_empty_reply(&c, buf, len + 1, SH_WIRE_DEDUCT_REP, 4646);

    /* Still serving, and still alive. */
    sh_wire_result res[3];
    assert_int_equal(client_call(&c, SH_WIRE_DEDUCT_REQ, items, 3, res), 0);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(res[k].status, SH_WIRE_OUT_OK);
        assert_int_equal(res[k].seq, (uint64_t)k + 1);
    }
    client_close(&c);
    int status;
    assert_int_equal(waitpid(g_node, &status, WNOHANG), 0);
    assert_int_equal(check_conservation(sku, 1), 3);
}

/* ==== g. kill -9 and restart ================================================ */

#define G_ORDERS   600
#define G_KILL_OKS 100 /* kill once this many deductions were answered */
#define G_WAIT_MS  30000

static void test_g_restart(void **state)
{
    (void)state;
    char sku[64];
    sku_name(sku, sizeof sku, "g");
    const int64_t units[2] = {500, 500};
    sku_create(sku, 2, units, 0);
    job *first = calloc(G_ORDERS, sizeof *first);
    job *second = calloc(G_ORDERS, sizeof *second);
    assert_non_null(first);
    assert_non_null(second);
    for (int k = 0; k < G_ORDERS; k++) {
        char order[32];
        snprintf(order, sizeof order, "g-%d", k);
        first[k].item = mk_item(sku, order, "gu", 1, (uint16_t)(k % 2));
        second[k].item = first[k].item;
    }
    /* Phase 1: one thread sends; the node dies under it. */
    atomic_int oks;
    atomic_init(&oks, 0);
    driver d1 = driver_make(first, G_ORDERS, 2, 8, 5000u);
    d1.oks = &oks;
    d1.stop_on_error = true;
    d1.timeout_ms = 2000;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, driver_main, &d1), 0);
    uint64_t until = sh_clock_mono_ms() + G_WAIT_MS;
    while (atomic_load(&oks) < G_KILL_OKS && sh_clock_mono_ms() < until) {
        sh_clock_sleep_ms(1);
    }
    int at_kill = atomic_load(&oks);
    node_kill9();
    assert_int_equal(pthread_join(th, NULL), 0);
    int answered = 0;
    for (int k = 0; k < G_ORDERS; k++) {
        answered += first[k].done;
    }
    print_message("g: killed the node after %d oks; %d of %d orders answered; thread err=%d\n",
                  at_kill, answered, G_ORDERS, d1.err);
    assert_true(at_kill >= G_KILL_OKS);
    assert_true(answered < G_ORDERS); /* it really died mid-load */
    (void)check_conservation(sku, 2); /* holds at any instant, also right after a kill */

    /* Phase 2: restart and send every order again. */
    node_start();
    driver d2 = driver_make(second, G_ORDERS, 2, 20, 6000u);
    drivers_run(&d2, 1);
    for (int k = 0; k < G_ORDERS; k++) {
        assert_int_equal(second[k].res.status, SH_WIRE_OUT_OK);
        if (first[k].done) {
            /* Answered before the kill: now the same outcome, replayed. */
            assert_int_equal(first[k].res.status, SH_WIRE_OUT_OK);
            assert_true(second[k].res.flags & SH_WIRE_RES_F_DUPLICATE);
            assert_int_equal(second[k].res.partition, first[k].res.partition);
            assert_int_equal(second[k].res.seq, first[k].res.seq);
        }
    }
    assert_int_equal(check_conservation(sku, 2), G_ORDERS); /* no order twice */
    detail *det = calloc(DETAILS_MAX, sizeof *det);
    assert_non_null(det);
    size_t nd = details_check(sku, 2, det, DETAILS_MAX);
    assert_int_equal(nd, G_ORDERS);
    bool seen[G_ORDERS] = {false};
    for (size_t i = 0; i < nd; i++) {
        int k = atoi(det[i].d.order_id + 2);
        assert_true(k >= 0 && k < G_ORDERS);
        assert_false(seen[k]);
        seen[k] = true;
    }
    free(det);
    free(first);
    free(second);
}

/* ==== h. clean shutdown ===================================================== */

static void test_h_sigterm(void **state)
{
    (void)state;
    assert_true(node_alive());
    int status = node_stop();
    assert_true(status != -1);
    assert_true(WIFEXITED(status)); /* under ASan a leak would make this non-zero */
    assert_int_equal(WEXITSTATUS(status), 0);
    char cmd[PATH_BYTES + 64];
    snprintf(cmd, sizeof cmd, "grep -q 'info main stopped' %s", g_log);
    assert_int_equal(system(cmd), 0);
    if (access(g_url + strlen("ipc://"), F_OK) == 0) {
        fail_msg("the ipc file %s is left behind", g_url + strlen("ipc://"));
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_a_basic, test_setup),
        cmocka_unit_test_setup(test_b_oversell, test_setup),
        cmocka_unit_test_setup(test_c_idempotent_races, test_setup),
        cmocka_unit_test_setup(test_d_user_limit, test_setup),
        cmocka_unit_test_setup(test_e0_batching_exact, test_setup),
        cmocka_unit_test_setup(test_e1_repeats_in_one_call, test_setup),
        cmocka_unit_test_setup(test_e_coalescing, test_setup),
        cmocka_unit_test_setup(test_f_garbage, test_setup),
        cmocka_unit_test_setup(test_g_restart, test_setup),
        cmocka_unit_test_setup(test_h_sigterm, test_setup),
        cmocka_unit_test_setup(test_i_rerun_and_fence, test_setup),
    };
    return T_CMOCKA_MAIN(argc, argv, "stock-node", tests, group_setup, group_teardown);
}
