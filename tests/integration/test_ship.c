/* test_ship.c -- detail shipping end to end: stock-node -> stock-syncd -> MySQL.
 *
 * The shipper's promise is "every detail of every partition reaches MySQL
 * exactly once, whatever dies on the way", so these tests start real processes
 * ($STOCK_BIN/stock-node and $STOCK_BIN/stock-syncd, fork/exec, stopped by pid),
 * drive deductions and releases through the node over NNG with the wire codec,
 * and judge only by what MySQL (the test's own connection) and Redis (the
 * test's own router) hold afterwards: per partition COUNT(*) == seq, SUM(qty)
 * == ded, synced_seq == seq, every (partition, seq) once, every order once
 * with its qty, the stream trimmed (XLEN 0) and `ack` == seq.
 *
 *   a  1,000 deductions + 100 releases on 4 partitions: MySQL matches Redis
 *      within ship.interval_ms + 2 s, detail by detail
 *   b  threshold path: interval 60 s, threshold 100: batches of >= 100 reach
 *      MySQL anyway (batch_max in the node log), the rest waits in Redis
 *   c  the worker killed -9: deductions go on, nothing reaches MySQL, the
 *      stream keeps them; the worker restarted: converges, no duplicates
 *   d  the node killed -9 mid-stream, restarted, every order sent again:
 *      converges with exact counts
 *   e  two workers in ship.sync_urls, one killed -9: shipping goes on through
 *      the other
 *   f  ownership: node 2 of 2 ships partitions 1 and 3 only; node 1 of 1
 *      then ships the rest
 *   g  SIGTERM: the node exits 0 (leak-free under ASan) and logs its counters
 *
 * The harness (tests/run.sh) exports REDIS_SEED, MYSQL_HOST/PORT/SOCKET/USER/DB
 * and STOCK_BIN; without them the tests fail, never skip. SKU ids carry the
 * pid and the start time, so reruns against one infra never collide; they are
 * added to stock:skus, which is how the shipper finds them. Threads never call
 * cmocka asserts; every wait is bounded. Logs: /tmp/test-ship-<pid>-*.log. */
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
#include <mysql.h>
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

#define PATH_BYTES        512
#define SQL_BYTES         1024
#define ROUTER_TIMEOUT_MS 3000
#define START_WAIT_MS     30000 /* until a new process answers */
#define STOP_WAIT_MS      20000 /* SIGTERM to exit, then SIGKILL */
#define PROBE_TIMEOUT_MS  500
#define CALL_TIMEOUT_MS   15000 /* one request/reply (ASan builds are slow) */
#define INTERVAL_MS       200   /* ship.interval_ms of the main node */
#define INTERVAL_S        "200"
#define ACK_TIMEOUT_S     "1000"               /* ship.ack_timeout_ms of the main node */
#define CONVERGE_A_MS     (INTERVAL_MS + 2000) /* test a's bound, from the last reply */
#define CONVERGE_MS       30000                /* the failure tests' bound */
#define WORKER_DOWN_MS    2000                 /* c: how long nothing may reach MySQL */
#define PARTS_MAX         8
#define PER_MSG           20 /* items per deduct/release message */
#define UNITS_PER_PART    100000
#define WORKERS           2

/* ==== environment =========================================================== */

static struct {
    char seed[PATH_BYTES];
    char node_bin[PATH_BYTES];
    char syncd_bin[PATH_BYTES];
    char host[128];
    char port[16];
    char socket[PATH_BYTES];
    char user[64];
    char db[64];
    char run[32]; /* unique per run: part of every SKU id */
} g_env;

typedef struct proc {
    pid_t pid;
    char url[PATH_BYTES];
    char log[PATH_BYTES];
} proc;

static proc g_node;             /* the node under test (main configuration unless said) */
static proc g_workers[WORKERS]; /* [0] always in the main node's sync_urls */
static char g_node_urls[2 * PATH_BYTES + 2]; /* ship.sync_urls of the main node */
static sh_cluster *g_router;
static MYSQL *g_my;
static int g_sid_part_init, g_sid_pool_init, g_sid_grant_begin, g_sid_grant_apply,
    g_sid_journal_end;
static atomic_uint_fast64_t g_req_id;

static void env_need(const char *name, const char *why)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0') {
        fail_msg("%s is not set: %s. Run under tests/run.sh, or source the infra.env of "
                 "scripts/infra.sh up and export STOCK_BIN=the directory of stock-node and "
                 "stock-syncd",
                 name, why);
    }
}

static void env_load(void)
{
    env_need("REDIS_SEED", "host:port of a Redis Cluster node");
    env_need("MYSQL_PORT", "the MariaDB port with the schema migrated (sql/migrations)");
    env_need("STOCK_BIN", "where stock-node and stock-syncd are");
    const char *bin = getenv("STOCK_BIN");
    const char *host = getenv("MYSQL_HOST");
    const char *sock = getenv("MYSQL_SOCKET");
    const char *user = getenv("MYSQL_USER");
    const char *db = getenv("MYSQL_DB");
    snprintf(g_env.seed, sizeof g_env.seed, "%s", getenv("REDIS_SEED"));
    snprintf(g_env.port, sizeof g_env.port, "%s", getenv("MYSQL_PORT"));
    snprintf(g_env.node_bin, sizeof g_env.node_bin, "%s/stock-node", bin);
    snprintf(g_env.syncd_bin, sizeof g_env.syncd_bin, "%s/stock-syncd", bin);
    /* "localhost" would mean the default Unix socket (LIBRARY-NOTES 5): TCP. */
    snprintf(g_env.host, sizeof g_env.host, "%s", host && host[0] ? host : "127.0.0.1");
    snprintf(g_env.socket, sizeof g_env.socket, "%s", sock ? sock : "");
    snprintf(g_env.user, sizeof g_env.user, "%s", user && user[0] ? user : "root");
    snprintf(g_env.db, sizeof g_env.db, "%s", db && db[0] ? db : "stock");
    snprintf(g_env.run, sizeof g_env.run, "%d-%" PRIu64, (int)getpid(),
             sh_clock_wall_ms() % 1000000u);
    if (access(g_env.node_bin, X_OK) != 0) {
        fail_msg("%s is not executable: build it first (make bin/stock-node)", g_env.node_bin);
    }
    if (access(g_env.syncd_bin, X_OK) != 0) {
        fail_msg("%s is not executable: build it first (make bin/stock-syncd)", g_env.syncd_bin);
    }
}

static void sku_name(char *buf, size_t cap, const char *tag)
{
    snprintf(buf, cap, "ts%s-%s", g_env.run, tag);
    assert_true(strlen(buf) <= SH_SKU_ID_CHARS_MAX);
}

/* ==== processes ============================================================= */

static void log_tail(const proc *p, int lines)
{
    char cmd[PATH_BYTES + 64];
    snprintf(cmd, sizeof cmd, "tail -n %d %s >&2", lines, p->log);
    if (system(cmd) != 0) {
        fprintf(stderr, "(no log at %s)\n", p->log);
    }
}

static bool proc_alive(proc *p)
{
    if (p->pid <= 0) {
        return false;
    }
    int status;
    pid_t w = waitpid(p->pid, &status, WNOHANG);
    if (w == p->pid) {
        print_message("pid %d exited: status 0x%x (log %s)\n", (int)p->pid, (unsigned)status,
                      p->log);
        p->pid = -1;
        return false;
    }
    return w == 0;
}

/* Waits (bounded) for the process to exit; its wait status, or -1. */
static int proc_reap(proc *p, int wait_ms)
{
    uint64_t until = sh_clock_mono_ms() + (uint64_t)wait_ms;
    pid_t pid = p->pid;
    while (sh_clock_mono_ms() < until) {
        int status = 0;
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            p->pid = -1;
            return status;
        }
        if (w < 0) {
            p->pid = -1; /* not our child any more */
            return -1;
        }
        sh_clock_sleep_ms(10);
    }
    return -1;
}

/* SIGTERM, bounded wait, SIGKILL. The wait status, or -1 when it had to be killed. */
static int proc_stop(proc *p)
{
    if (p->pid <= 0) {
        return -1;
    }
    pid_t pid = p->pid;
    kill(pid, SIGTERM);
    int status = proc_reap(p, STOP_WAIT_MS);
    if (status == -1 && p->pid > 0) {
        print_message("pid %d ignored SIGTERM: killing it\n", (int)pid);
        kill(pid, SIGKILL);
        (void)proc_reap(p, STOP_WAIT_MS);
        p->pid = -1;
    }
    return status;
}

static void proc_kill9(proc *p)
{
    assert_true(p->pid > 0);
    assert_int_equal(kill(p->pid, SIGKILL), 0);
    int status = 0;
    assert_int_equal(waitpid(p->pid, &status, 0), p->pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    p->pid = -1;
}

/* fork/exec path with "-o" before each of opts[0..n); output appended to p->log. */
static void proc_spawn(proc *p, const char *path, const char *const *opts, int n)
{
    const char *argv[64];
    int argc = 0;
    argv[argc++] = path;
    assert_true(2 * n + 2 < 64);
    for (int i = 0; i < n; i++) {
        argv[argc++] = "-o";
        argv[argc++] = opts[i];
    }
    argv[argc] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(path, (char *const *)(uintptr_t)argv);
        fprintf(stderr, "exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    p->pid = pid;
}

/* ==== NNG client ============================================================ */

typedef struct client {
    nng_socket sock;
} client;

static int client_open(client *c, const char *url, int timeout_ms)
{
    int rv = nng_req0_open(&c->sock);
    if (rv != 0) {
        return rv;
    }
    if ((rv = nng_socket_set_ms(c->sock, NNG_OPT_RECVTIMEO, timeout_ms)) != 0 ||
        (rv = nng_socket_set_ms(c->sock, NNG_OPT_SENDTIMEO, timeout_ms)) != 0 ||
        (rv = nng_socket_set_ms(c->sock, NNG_OPT_RECONNMINT, 50)) != 0 ||
        (rv = nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, SH_WIRE_MSG_BYTES_MAX)) != 0 ||
        (rv = nng_dial(c->sock, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
        nng_close(c->sock);
        return rv;
    }
    return 0;
}

static void client_close(client *c)
{
    nng_close(c->sock);
}

/* One deduct/release message: 0, a positive NNG error, or -1 for a reply that
 * does not decode or does not answer this request. */
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
    if (sh_wire_items_encode(buf, size, &len, type, req_id, items, n) != SH_OK) {
        free(buf);
        return -1;
    }
    int rv = nng_send(c->sock, buf, len, 0);
    free(buf);
    if (rv != 0) {
        return rv;
    }
    void *rep = NULL;
    size_t rep_len = 0;
    if ((rv = nng_recv(c->sock, &rep, &rep_len, NNG_FLAG_ALLOC)) != 0) {
        return rv;
    }
    sh_wire_header hdr;
    sh_err rc = sh_wire_results_decode(rep, rep_len, &hdr, out, n);
    nng_free(rep, rep_len);
    if (rc != SH_OK || hdr.req_id != req_id || hdr.count != n) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (out[i].tag != items[i].tag) {
            return -1;
        }
    }
    return 0;
}

/* ==== the processes under test ============================================== */

/* The node answers a probe for a SKU that does not exist with INVALID. */
static bool node_answers(void)
{
    client c;
    if (client_open(&c, g_node.url, PROBE_TIMEOUT_MS) != 0) {
        return false;
    }
    sh_wire_item it;
    memset(&it, 0, sizeof it);
    char sku[64];
    snprintf(sku, sizeof sku, "probe-%d", (int)getpid());
    (void)sh_wire_str_set(it.sku, sizeof it.sku, &it.sku_len, sku, strlen(sku));
    (void)sh_wire_str_set(it.order_id, sizeof it.order_id, &it.order_id_len, "p", 1);
    (void)sh_wire_str_set(it.user_id, sizeof it.user_id, &it.user_id_len, "p", 1);
    it.qty = 1;
    sh_wire_result res;
    int rv = client_call(&c, SH_WIRE_DEDUCT_REQ, &it, 1, &res);
    client_close(&c);
    return rv == 0 && res.status == SH_WIRE_OUT_INVALID;
}

/* Starts the node with the test's Redis, its URL and log, ship.sync_urls =
 * urls, and the extra overrides; waits until it answers. */
static void node_start_with(const char *log, const char *urls, const char *const *extra, int n)
{
    assert_true(g_node.pid <= 0);
    snprintf(g_node.log, sizeof g_node.log, "%s", log);
    static char o[4][2 * PATH_BYTES + 32];
    snprintf(o[0], sizeof o[0], "node.listen=%s", g_node.url);
    snprintf(o[1], sizeof o[1], "redis.seeds=%s", g_env.seed);
    snprintf(o[2], sizeof o[2], "ship.sync_urls=%s", urls);
    snprintf(o[3], sizeof o[3], "ship.interval_ms=%s", INTERVAL_S);
    const char *opts[16] = {o[0], o[1], o[2], o[3]};
    int k = 4;
    for (int i = 0; i < n; i++) {
        assert_true(k < 16);
        opts[k++] = extra[i];
    }
    proc_spawn(&g_node, g_env.node_bin, opts, k);
    uint64_t until = sh_clock_mono_ms() + START_WAIT_MS;
    while (sh_clock_mono_ms() < until) {
        if (!proc_alive(&g_node)) {
            log_tail(&g_node, 30);
            fail_msg("stock-node exited during start (log %s)", g_node.log);
        }
        if (node_answers()) {
            return;
        }
        sh_clock_sleep_ms(50);
    }
    log_tail(&g_node, 30);
    fail_msg("stock-node did not answer within %d ms (log %s)", START_WAIT_MS, g_node.log);
}

static char g_main_log[PATH_BYTES];

/* The main node: interval 200 ms, the main worker list, the main log. */
static int64_t log_count(const char *log, const char *needle);
static void node_start(void)
{
    /* A short ack timeout, so that test c's 2 s without a worker sees batches
     * time out, back off and go again. */
    const char *extra[1] = {"ship.ack_timeout_ms=" ACK_TIMEOUT_S};
    node_start_with(g_main_log, g_node_urls, extra, 1);
}

/* SIGTERM; the exit must be a clean 0 (a leak under ASan would not be). */
static void node_stop_clean(void)
{
    int status = proc_stop(&g_node);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        log_tail(&g_node, 30);
        fail_msg("stock-node did not exit cleanly: status 0x%x (log %s)", (unsigned)status,
                 g_node.log);
    }
}

/* A count-0 batch answered: the worker is up and reaches MySQL. */
static bool worker_answers(const proc *w)
{
    client c;
    if (client_open(&c, w->url, PROBE_TIMEOUT_MS) != 0) {
        return false;
    }
    sh_wire_batch head;
    memset(&head, 0, sizeof head);
    (void)sh_wire_str_set(head.sku, sizeof head.sku, &head.sku_len, "probe", 5);
    uint8_t buf[256];
    size_t len = 0;
    bool ok = sh_wire_batch_encode(buf, sizeof buf, &len, 1, &head, NULL, 0) == SH_OK &&
              nng_send(c.sock, buf, len, 0) == 0;
    void *rep = NULL;
    size_t rep_len = 0;
    if (ok && nng_recv(c.sock, &rep, &rep_len, NNG_FLAG_ALLOC) == 0) {
        sh_wire_header hdr;
        sh_wire_ack ack;
        ok = sh_wire_ack_decode(rep, rep_len, &hdr, &ack) == SH_OK && ack.status == SH_OK;
        nng_free(rep, rep_len);
    } else {
        ok = false;
    }
    client_close(&c);
    return ok;
}

static void worker_start(int k)
{
    proc *w = &g_workers[k];
    assert_true(w->pid <= 0);
    static char o[6][PATH_BYTES + 32];
    snprintf(o[0], sizeof o[0], "syncd.listen=%s", w->url);
    snprintf(o[1], sizeof o[1], "mysql.host=%s", g_env.host);
    snprintf(o[2], sizeof o[2], "mysql.port=%s", g_env.port);
    snprintf(o[3], sizeof o[3], "mysql.user=%s", g_env.user);
    snprintf(o[4], sizeof o[4], "mysql.database=%s", g_env.db);
    snprintf(o[5], sizeof o[5], "mysql.socket=%s", g_env.socket);
    const char *opts[6] = {o[0], o[1], o[2], o[3], o[4], o[5]};
    proc_spawn(w, g_env.syncd_bin, opts, 6);
    uint64_t until = sh_clock_mono_ms() + START_WAIT_MS;
    while (sh_clock_mono_ms() < until) {
        if (!proc_alive(w)) {
            log_tail(w, 30);
            fail_msg("stock-syncd exited during start (log %s)", w->log);
        }
        if (worker_answers(w)) {
            return;
        }
        sh_clock_sleep_ms(50);
    }
    log_tail(w, 30);
    fail_msg("stock-syncd at %s did not answer within %d ms (log %s)", w->url, START_WAIT_MS,
             w->log);
}

/* ==== Redis (main thread, the test's own router) ============================ */

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

static redisReply *reval(int sid, int numkeys, const char **keys, int nargs, const char **args)
{
    size_t klen[4], alen[16 + PARTS_MAX];
    assert_true(numkeys <= 4 && nargs <= 16 + PARTS_MAX);
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
    if (r->type == REDIS_REPLY_ERROR) {
        fail_msg("EVALSHA %s: %s", keys[0], r->str);
    }
    return r;
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

/* Creates a SKU as the scheduler would (partitions with salt 0, the pool, one
 * journaled grant of UNITS_PER_PART per partition) and indexes it in
 * stock:skus, where the shipper looks for SKUs. */
static void sku_create(const char *sku, int parts)
{
    assert_true(parts >= 1 && parts <= PARTS_MAX);
    char pool[SH_STOCK_KEY_BYTES_MAX], jrnl[SH_STOCK_KEY_BYTES_MAX], st[SH_STOCK_KEY_BYTES_MAX];
    sh_stock_key_pool(pool, sku);
    sh_stock_key_journal(jrnl, sku);
    for (int p = 0; p < parts; p++) {
        sh_stock_key_part(st, sku, (unsigned)p, 0, 's');
        const char *keys[1] = {st};
        redisReply *r = reval(g_sid_part_init, 1, keys, 1, (const char *[]){"0"});
        assert_int_equal(reply_i64(r), 1);
        freeReplyObject(r);
    }
    char total_s[32], parts_s[16];
    snprintf(total_s, sizeof total_s, "%d", parts * UNITS_PER_PART);
    snprintf(parts_s, sizeof parts_s, "%d", parts);
    const char *args[8 + PARTS_MAX] = {total_s, "0",       "0",         parts_s,
                                       "1",     "1000000", "ship test", "0"};
    for (int p = 0; p < parts; p++) {
        args[8 + p] = "0";
    }
    const char *pkeys[1] = {pool};
    redisReply *r = reval(g_sid_pool_init, 1, pkeys, 8 + parts, args);
    assert_int_equal(reply_i64(r), 1);
    freeReplyObject(r);
    for (int p = 0; p < parts; p++) {
        char part_s[16], want_s[32], id_s[32], u_s[32];
        snprintf(part_s, sizeof part_s, "%d", p);
        snprintf(want_s, sizeof want_s, "%d", UNITS_PER_PART);
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
        assert_int_equal(u, UNITS_PER_PART);
        snprintf(id_s, sizeof id_s, "%" PRId64, id);
        snprintf(u_s, sizeof u_s, "%" PRId64, u);
        sh_stock_key_part(st, sku, (unsigned)p, 0, 's');
        const char *akeys[1] = {st};
        const char *aargs[4] = {id_s, u_s, "0", "0"};
        r = reval(g_sid_grant_apply, 1, akeys, 4, aargs);
        assert_int_equal(reply_i64(r->element[0]), 1);
        freeReplyObject(r);
        const char *jkeys[1] = {jrnl};
        const char *jargs[1] = {id_s};
        r = reval(g_sid_journal_end, 1, jkeys, 1, jargs);
        freeReplyObject(r);
    }
    const char *sargv[3] = {"SADD", SH_STOCK_SKU_INDEX_KEY, sku};
    r = rcmd(SH_STOCK_SKU_INDEX_KEY, 3, sargv);
    freeReplyObject(r);
}

typedef struct part_state {
    int64_t ded, seq, ack, xlen;
} part_state;

static part_state part_read(const char *sku, int p)
{
    char st[SH_STOCK_KEY_BYTES_MAX], dk[SH_STOCK_KEY_BYTES_MAX];
    sh_stock_key_part(st, sku, (unsigned)p, 0, 's');
    sh_stock_key_part(dk, sku, (unsigned)p, 0, 'd');
    const char *argv[5] = {"HMGET", st, "ded", "seq", "ack"};
    redisReply *r = rcmd(st, 5, argv);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 3);
    part_state ps = {reply_i64(r->element[0]), reply_i64(r->element[1]), reply_i64(r->element[2]),
                     0};
    freeReplyObject(r);
    const char *xargv[2] = {"XLEN", dk};
    r = rcmd(dk, 2, xargv);
    ps.xlen = reply_i64(r);
    freeReplyObject(r);
    return ps;
}

/* Net qty and count of the details still in partition p's stream. */
static void stream_sum(const char *sku, int p, int64_t *qty, int64_t *count)
{
    char dk[SH_STOCK_KEY_BYTES_MAX];
    sh_stock_key_part(dk, sku, (unsigned)p, 0, 'd');
    const char *argv[4] = {"XRANGE", dk, "-", "+"};
    redisReply *r = rcmd(dk, 4, argv);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    *qty = 0;
    *count = 0;
    for (size_t e = 0; e < r->elements; e++) {
        const redisReply *fields = r->element[e]->element[1];
        for (size_t f = 0; f + 1 < fields->elements; f += 2) {
            if (strcmp(fields->element[f]->str, "b") != 0) {
                continue;
            }
            const char *line = fields->element[f + 1]->str;
            const char *end = line + fields->element[f + 1]->len;
            while (line < end) {
                const char *nl = memchr(line, '\n', (size_t)(end - line));
                size_t len = nl ? (size_t)(nl - line) : (size_t)(end - line);
                sh_stock_detail d;
                assert_int_equal(sh_stock_detail_parse(line, len, &d), SH_OK);
                *qty += d.qty;
                (*count)++;
                line += len + (nl ? 1 : 0);
            }
        }
    }
    freeReplyObject(r);
}

/* ==== MySQL (the test's own connection) ===================================== */

static void db_connect(void)
{
    g_my = mysql_init(NULL);
    assert_non_null(g_my);
    unsigned timeout_s = 30;
    assert_int_equal(mysql_options(g_my, MYSQL_OPT_CONNECT_TIMEOUT, &timeout_s), 0);
    assert_int_equal(mysql_options(g_my, MYSQL_OPT_READ_TIMEOUT, &timeout_s), 0);
    assert_int_equal(mysql_options(g_my, MYSQL_SET_CHARSET_NAME, "utf8mb4"), 0);
    if (mysql_real_connect(g_my, g_env.host, g_env.user, NULL, g_env.db, (unsigned)atoi(g_env.port),
                           NULL, 0) == NULL) {
        fail_msg("connect to MySQL %s:%s: %s", g_env.host, g_env.port, mysql_error(g_my));
    }
    /* Autocommit, and a fresh snapshot per statement: see the worker's commits. */
    assert_int_equal(mysql_autocommit(g_my, 1), 0);
}

static int64_t db_i64(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int64_t db_i64(const char *fmt, ...)
{
    char sql[SQL_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    if (mysql_query(g_my, sql) != 0) {
        fail_msg("%s: %s", sql, mysql_error(g_my));
    }
    MYSQL_RES *res = mysql_store_result(g_my);
    assert_non_null(res);
    MYSQL_ROW row = mysql_fetch_row(res);
    int64_t v = row != NULL && row[0] != NULL ? strtoll(row[0], NULL, 10) : 0;
    mysql_free_result(res);
    return v;
}

static int64_t db_synced(const char *sku, int p)
{
    return db_i64("SELECT synced_seq FROM stock_partition WHERE sku_id='%s' AND partition_id=%d",
                  sku, p);
}

static int64_t db_rows(const char *sku, int p)
{
    return db_i64("SELECT COUNT(*) FROM deduction_detail WHERE sku_id='%s' AND partition_id=%d",
                  sku, p);
}

/* ==== convergence =========================================================== */

/* True when every partition is fully shipped: synced_seq == seq, stream empty,
 * ack == seq. */
static bool converged(const char *sku, int parts)
{
    for (int p = 0; p < parts; p++) {
        part_state ps = part_read(sku, p);
        if (db_synced(sku, p) != ps.seq || ps.xlen != 0 || ps.ack != ps.seq) {
            return false;
        }
    }
    return true;
}

/* Waits (bounded) for converged(); the ms it took, or fails showing the state. */
static uint64_t converge_wait(const char *sku, int parts, uint64_t bound_ms)
{
    uint64_t t0 = sh_clock_mono_ms();
    while (sh_clock_mono_ms() - t0 < bound_ms) {
        if (converged(sku, parts)) {
            return sh_clock_mono_ms() - t0;
        }
        sh_clock_sleep_ms(20);
    }
    for (int p = 0; p < parts; p++) {
        part_state ps = part_read(sku, p);
        print_message("%s/%d: seq=%" PRId64 " ack=%" PRId64 " xlen=%" PRId64 " synced_seq=%" PRId64
                      " rows=%" PRId64 "\n",
                      sku, p, ps.seq, ps.ack, ps.xlen, db_synced(sku, p), db_rows(sku, p));
    }
    log_tail(&g_node, 20);
    fail_msg("%s did not converge within %" PRIu64 " ms", sku, bound_ms);
    return 0;
}

/* The exactness checks of a converged SKU, per partition: rows == seq, every
 * seq 1..seq once, SUM(qty) == ded, synced_seq == seq, counters of
 * stock_partition agree, stream empty, ack == seq. Returns the total of seq. */
static int64_t check_exact(const char *sku, int parts)
{
    int64_t total = 0;
    for (int p = 0; p < parts; p++) {
        part_state ps = part_read(sku, p);
        assert_true(ps.seq > 0);
        assert_int_equal(db_rows(sku, p), ps.seq);
        assert_int_equal(db_i64("SELECT COUNT(DISTINCT seq) FROM deduction_detail WHERE "
                                "sku_id='%s' AND partition_id=%d",
                                sku, p),
                         ps.seq);
        assert_int_equal(db_i64("SELECT MIN(seq) FROM deduction_detail WHERE sku_id='%s' AND "
                                "partition_id=%d",
                                sku, p),
                         1);
        assert_int_equal(db_i64("SELECT MAX(seq) FROM deduction_detail WHERE sku_id='%s' AND "
                                "partition_id=%d",
                                sku, p),
                         ps.seq);
        assert_int_equal(db_i64("SELECT COALESCE(SUM(qty),0) FROM deduction_detail WHERE "
                                "sku_id='%s' AND partition_id=%d",
                                sku, p),
                         ps.ded);
        assert_int_equal(db_synced(sku, p), ps.seq);
        assert_int_equal(db_i64("SELECT deducted FROM stock_partition WHERE sku_id='%s' AND "
                                "partition_id=%d",
                                sku, p),
                         ps.ded);
        assert_int_equal(db_i64("SELECT detail_rows FROM stock_partition WHERE sku_id='%s' AND "
                                "partition_id=%d",
                                sku, p),
                         ps.seq);
        assert_int_equal(ps.xlen, 0);
        assert_int_equal(ps.ack, ps.seq);
        total += ps.seq;
    }
    return total;
}

/* ==== driving the node ======================================================= */

typedef struct order {
    char id[32];
    uint16_t part;
    uint32_t qty;
} order;

static sh_wire_item mk_item(const char *sku, const order *o, bool release)
{
    sh_wire_item it;
    memset(&it, 0, sizeof it);
    (void)sh_wire_str_set(it.sku, sizeof it.sku, &it.sku_len, sku, strlen(sku));
    (void)sh_wire_str_set(it.order_id, sizeof it.order_id, &it.order_id_len, o->id, strlen(o->id));
    if (!release) {
        (void)sh_wire_str_set(it.user_id, sizeof it.user_id, &it.user_id_len, "u1", 2);
    }
    it.qty = release ? 0 : o->qty;
    it.partition = o->part;
    return it;
}

/* n orders "PREFIX-k", k = first.., spread round-robin over parts, qty 1..3. */
static order *orders_make(const char *prefix, int first, int n, int parts)
{
    order *o = calloc((size_t)n, sizeof *o);
    assert_non_null(o);
    for (int k = 0; k < n; k++) {
        snprintf(o[k].id, sizeof o[k].id, "%s-%d", prefix, first + k);
        o[k].part = (uint16_t)((first + k) % parts);
        o[k].qty = 1 + (uint32_t)((first + k) % 3);
    }
    return o;
}

/* Sends every order, PER_MSG a message; main thread; every answer must be OK. */
static void drive(const char *sku, const order *o, int n, bool release)
{
    client c;
    assert_int_equal(client_open(&c, g_node.url, CALL_TIMEOUT_MS), 0);
    sh_wire_item items[PER_MSG];
    sh_wire_result res[PER_MSG];
    for (int from = 0; from < n; from += PER_MSG) {
        int m = n - from < PER_MSG ? n - from : PER_MSG;
        for (int i = 0; i < m; i++) {
            items[i] = mk_item(sku, &o[from + i], release);
            items[i].tag = (uint64_t)(from + i);
        }
        int rv = client_call(&c, release ? SH_WIRE_RELEASE_REQ : SH_WIRE_DEDUCT_REQ, items,
                             (size_t)m, res);
        if (rv != 0) {
            log_tail(&g_node, 20);
            fail_msg("call failed: %d (%s)", rv, rv > 0 ? nng_strerror(rv) : "decode/mismatch");
        }
        for (int i = 0; i < m; i++) {
            if (res[i].status != SH_WIRE_OUT_OK) {
                fail_msg("%s of %s: outcome %s", release ? "release" : "deduct", o[from + i].id,
                         sh_wire_outcome_name(res[i].status));
            }
        }
    }
    client_close(&c);
}

/* MySQL holds each order's deduction once with its qty, and a release (-qty)
 * for exactly the released ones. */
static void check_orders(const char *sku, const order *o, int n, int released)
{
    assert_int_equal(
        db_i64("SELECT COUNT(*) FROM deduction_detail WHERE sku_id='%s' AND qty > 0", sku), n);
    assert_int_equal(db_i64("SELECT COUNT(DISTINCT order_id) FROM deduction_detail WHERE "
                            "sku_id='%s' AND qty > 0",
                            sku),
                     n);
    assert_int_equal(
        db_i64("SELECT COUNT(*) FROM deduction_detail WHERE sku_id='%s' AND qty < 0", sku),
        released);
    int64_t want = 0;
    for (int k = 0; k < n; k++) {
        want += o[k].qty;
    }
    for (int k = 0; k < released; k++) {
        want -= o[k].qty;
    }
    assert_int_equal(
        db_i64("SELECT COALESCE(SUM(qty),0) FROM deduction_detail WHERE sku_id='%s'", sku), want);
    /* Spot checks, detail by detail: partition, qty, user. */
    for (int k = 0; k<n; k += n / 10> 0 ? n / 10 : 1) {
        assert_int_equal(db_i64("SELECT COUNT(*) FROM deduction_detail WHERE sku_id='%s' AND "
                                "order_id='%s' AND partition_id=%u AND qty=%u AND user_id='u1'",
                                sku, o[k].id, o[k].part, o[k].qty),
                         1);
    }
}

/* The largest batch_max=N in log (the last summary line has the run's max). */
static int64_t log_batch_max(const char *log)
{
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    char line[2048];
    int64_t best = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        const char *at = strstr(line, " batch_max=");
        if (at != NULL) {
            int64_t v = strtoll(at + strlen(" batch_max="), NULL, 10);
            best = v > best ? v : best;
        }
    }
    fclose(f);
    return best;
}

/* The last line of log holding needle, printed. */
static void log_print_last(const char *log, const char *needle)
{
    FILE *f = fopen(log, "r");
    if (f == NULL) {
        return;
    }
    char line[2048], last[2048] = "";
    while (fgets(line, sizeof line, f) != NULL) {
        if (strstr(line, needle) != NULL) {
            snprintf(last, sizeof last, "%s", line);
        }
    }
    fclose(f);
    print_message("%s", last);
}

/* Lines of log holding needle. */
static int64_t log_count(const char *log, const char *needle)
{
    FILE *f = fopen(log, "r");
    if (f == NULL) {
        return 0;
    }
    char line[2048];
    int64_t n = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        n += strstr(line, needle) != NULL;
    }
    fclose(f);
    return n;
}

/* ==== a. the normal path ===================================================== */

#define A_PARTS    4
#define A_ORDERS   1000
#define A_RELEASES 100

static void test_a_normal(void **state)
{
    (void)state;
    char sku[64];
    sku_name(sku, sizeof sku, "a");
    sku_create(sku, A_PARTS);
    order *o = orders_make("a", 0, A_ORDERS, A_PARTS);
    drive(sku, o, A_ORDERS, false);
    drive(sku, o, A_RELEASES, true);
    uint64_t ms = converge_wait(sku, A_PARTS, CONVERGE_A_MS);
    print_message("a: %d deductions + %d releases in MySQL %" PRIu64 " ms after the last reply\n",
                  A_ORDERS, A_RELEASES, ms);
    assert_int_equal(check_exact(sku, A_PARTS), A_ORDERS + A_RELEASES);
    check_orders(sku, o, A_ORDERS, A_RELEASES);
    free(o);
}

/* ==== b. the threshold path ================================================== */

#define B_PARTS     2
#define B_ORDERS    1050 /* 525 a partition in entries of 10: 25 stay below the threshold */
#define B_THRESHOLD 100

static void test_b_threshold(void **state)
{
    (void)state;
    char sku[64], log[PATH_BYTES];
    sku_name(sku, sizeof sku, "b");
    sku_create(sku, B_PARTS);
    node_stop_clean();
    snprintf(log, sizeof log, "/tmp/test-ship-%d-b.log", (int)getpid());
    unlink(log);
    const char *extra[2] = {"ship.interval_ms=60000", "ship.threshold_details=100"};
    node_start_with(log, g_node_urls, extra, 2);
    order *o = orders_make("b", 0, B_ORDERS, B_PARTS);
    drive(sku, o, B_ORDERS, false);
    /* Everything at or past the threshold is shipped; less than 100 may wait. */
    uint64_t t0 = sh_clock_mono_ms();
    bool done = false;
    while (!done && sh_clock_mono_ms() - t0 < CONVERGE_MS) {
        done = true;
        for (int p = 0; p < B_PARTS; p++) {
            part_state ps = part_read(sku, p);
            int64_t synced = db_synced(sku, p);
            done = done && ps.seq - synced < B_THRESHOLD && ps.ack == synced;
        }
        sh_clock_sleep_ms(20);
    }
    assert_true(done);
    print_message("b: shipped by threshold in %" PRIu64 " ms\n", sh_clock_mono_ms() - t0);
    int64_t shipped = 0;
    for (int p = 0; p < B_PARTS; p++) {
        part_state ps = part_read(sku, p);
        int64_t synced = db_synced(sku, p);
        int64_t rest_qty = 0, rest_n = 0;
        stream_sum(sku, p, &rest_qty, &rest_n);
        print_message("b: partition %d seq=%" PRId64 " synced_seq=%" PRId64 " in_stream=%" PRId64
                      "\n",
                      p, ps.seq, synced, rest_n);
        assert_true(synced >= B_THRESHOLD);
        shipped += synced;
        /* MySQL holds 1..synced exactly; the stream holds the rest, nothing else. */
        assert_int_equal(db_rows(sku, p), synced);
        assert_int_equal(rest_n, ps.seq - synced);
        assert_int_equal(db_i64("SELECT COALESCE(SUM(qty),0) FROM deduction_detail WHERE "
                                "sku_id='%s' AND partition_id=%d",
                                sku, p) +
                             rest_qty,
                         ps.ded);
        assert_int_equal(ps.ack, synced);
    }
    assert_true(shipped >= 1000); /* without the 60 s timer ever firing */
    node_stop_clean();
    int64_t bmax = log_batch_max(log);
    log_print_last(log, "stats final");
    print_message("b: batch_max=%" PRId64 "\n", bmax);
    assert_true(bmax >= B_THRESHOLD);
    /* The main node (interval 200 ms) ships the rest. */
    node_start();
    (void)converge_wait(sku, B_PARTS, CONVERGE_MS);
    assert_int_equal(check_exact(sku, B_PARTS), B_ORDERS);
    check_orders(sku, o, B_ORDERS, 0);
    free(o);
}

/* ==== c. the worker down ===================================================== */

#define C_PARTS  2
#define C_BEFORE 100
#define C_DOWN   500

static void test_c_worker_down(void **state)
{
    (void)state;
    char sku[64];
    sku_name(sku, sizeof sku, "c");
    sku_create(sku, C_PARTS);
    order *o = orders_make("c", 0, C_BEFORE + C_DOWN, C_PARTS);
    drive(sku, o, C_BEFORE, false);
    (void)converge_wait(sku, C_PARTS, CONVERGE_MS);
    int64_t rows_before = db_i64("SELECT COUNT(*) FROM deduction_detail WHERE sku_id='%s'", sku);
    assert_int_equal(rows_before, C_BEFORE);

    int64_t c_no_acks = log_count(g_main_log, "warn ship no ack");
    proc_kill9(&g_workers[0]);
    drive(sku, o + C_BEFORE, C_DOWN, false); /* sales go on */
    sh_clock_sleep_ms(WORKER_DOWN_MS);
    assert_int_equal(db_i64("SELECT COUNT(*) FROM deduction_detail WHERE sku_id='%s'", sku),
                     C_BEFORE);
    for (int p = 0; p < C_PARTS; p++) {
        part_state ps = part_read(sku, p);
        assert_true(ps.xlen > 0); /* the details wait in Redis */
        assert_int_equal(ps.ack, db_synced(sku, p));
        int64_t rest_qty = 0, rest_n = 0;
        stream_sum(sku, p, &rest_qty, &rest_n);
        assert_int_equal(rest_n, ps.seq - ps.ack);
    }
    /* Batches did go out and time out meanwhile (and were kept). */
    int64_t no_acks = log_count(g_main_log, "warn ship no ack") - c_no_acks;
    print_message("c: %" PRId64 " no-ack warnings while the worker was down\n", no_acks);
    assert_true(no_acks > 0);
    worker_start(0);
    uint64_t ms = converge_wait(sku, C_PARTS, CONVERGE_MS);
    print_message("c: converged %" PRIu64 " ms after the worker came back\n", ms);
    assert_int_equal(check_exact(sku, C_PARTS), C_BEFORE + C_DOWN);
    check_orders(sku, o, C_BEFORE + C_DOWN, 0);
    free(o);
}

/* ==== d. the node killed mid-stream ========================================== */

#define D_PARTS    2
#define D_ORDERS   2000
#define D_KILL_OKS 700
#define D_PER_MSG  5
#define D_PAUSE_MS 2 /* between messages: the 2,000 orders take about a second */

typedef struct d_driver {
    const char *sku;
    order *o;
    int n;
    atomic_int answered; /* orders answered OK */
    int err;
} d_driver;

/* Sends D_PER_MSG orders a message until a call fails (the node died). */
static void *d_main(void *arg)
{
    d_driver *d = arg;
    client c;
    d->err = client_open(&c, g_node.url, 2000);
    if (d->err != 0) {
        return NULL;
    }
    sh_wire_item items[D_PER_MSG];
    sh_wire_result res[D_PER_MSG];
    for (int from = 0; from < d->n; from += D_PER_MSG) {
        int m = d->n - from < D_PER_MSG ? d->n - from : D_PER_MSG;
        for (int i = 0; i < m; i++) {
            items[i] = mk_item(d->sku, &d->o[from + i], false);
            items[i].tag = (uint64_t)(from + i);
        }
        d->err = client_call(&c, SH_WIRE_DEDUCT_REQ, items, (size_t)m, res);
        if (d->err != 0) {
            break;
        }
        sh_clock_sleep_ms(D_PAUSE_MS); /* a steady stream, so shipping runs beside it */
        for (int i = 0; i < m; i++) {
            if (res[i].status == SH_WIRE_OUT_OK) {
                atomic_fetch_add(&d->answered, 1);
            }
        }
    }
    client_close(&c);
    return NULL;
}

static void test_d_node_kill(void **state)
{
    (void)state;
    char sku[64];
    sku_name(sku, sizeof sku, "d");
    sku_create(sku, D_PARTS);
    order *o = orders_make("d", 0, D_ORDERS, D_PARTS);
    d_driver d = {.sku = sku, .o = o, .n = D_ORDERS};
    atomic_init(&d.answered, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, d_main, &d), 0);
    /* Kill once shipping is under way: some details in MySQL, more coming. */
    uint64_t until = sh_clock_mono_ms() + CONVERGE_MS;
    int64_t rows_at_kill = 0;
    while (sh_clock_mono_ms() < until) {
        rows_at_kill = db_i64("SELECT COUNT(*) FROM deduction_detail WHERE sku_id='%s'", sku);
        if (atomic_load(&d.answered) >= D_KILL_OKS && rows_at_kill > 0) {
            break;
        }
        sh_clock_sleep_ms(1);
    }
    int at_kill = atomic_load(&d.answered);
    proc_kill9(&g_node);
    assert_int_equal(pthread_join(th, NULL), 0);
    print_message("d: killed the node after %d oks (%" PRId64 " rows in MySQL); %d answered\n",
                  at_kill, rows_at_kill, atomic_load(&d.answered));
    assert_true(at_kill >= D_KILL_OKS);
    assert_true(rows_at_kill > 0);
    assert_true(atomic_load(&d.answered) < D_ORDERS); /* it really died mid-stream */

    node_start();
    drive(sku, o, D_ORDERS, false); /* every order again: the first outcome comes back */
    uint64_t ms = converge_wait(sku, D_PARTS, CONVERGE_MS);
    print_message("d: converged %" PRIu64 " ms after the last reply\n", ms);
    assert_int_equal(check_exact(sku, D_PARTS), D_ORDERS);
    check_orders(sku, o, D_ORDERS, 0);
    free(o);
}

/* ==== e. two workers, one down =============================================== */

#define E_PARTS  4
#define E_BEFORE 300
#define E_AFTER  500

static void test_e_two_workers(void **state)
{
    (void)state;
    char sku[64];
    sku_name(sku, sizeof sku, "e");
    sku_create(sku, E_PARTS);
    worker_start(1);
    node_stop_clean();
    snprintf(g_node_urls, sizeof g_node_urls, "%s,%s", g_workers[0].url, g_workers[1].url);
    node_start();
    order *o = orders_make("e", 0, E_BEFORE + E_AFTER, E_PARTS);
    drive(sku, o, E_BEFORE, false);
    (void)converge_wait(sku, E_PARTS, CONVERGE_MS);

    proc_kill9(&g_workers[0]); /* the first URL of the list */
    drive(sku, o + E_BEFORE, E_AFTER, false);
    uint64_t ms = converge_wait(sku, E_PARTS, CONVERGE_MS);
    print_message("e: converged through the second worker %" PRIu64 " ms after the last reply\n",
                  ms);
    assert_int_equal(check_exact(sku, E_PARTS), E_BEFORE + E_AFTER);
    check_orders(sku, o, E_BEFORE + E_AFTER, 0);
    worker_start(0);
    free(o);
}

/* ==== f. ownership ============================================================ */

#define F_PARTS  4
#define F_ORDERS 400

static void test_f_ownership(void **state)
{
    (void)state;
    char sku[64], log[PATH_BYTES];
    sku_name(sku, sizeof sku, "f");
    sku_create(sku, F_PARTS);
    node_stop_clean();
    snprintf(log, sizeof log, "/tmp/test-ship-%d-f.log", (int)getpid());
    const char *extra[2] = {"node.count=2", "node.id=2"};
    node_start_with(log, g_node_urls, extra, 2);
    order *o = orders_make("f", 0, F_ORDERS, F_PARTS);
    drive(sku, o, F_ORDERS, false);
    /* Node 2 of 2 owns partitions 1 and 3 (p % 2 == 1). */
    uint64_t t0 = sh_clock_mono_ms();
    bool done = false;
    while (!done && sh_clock_mono_ms() - t0 < CONVERGE_MS) {
        part_state p1 = part_read(sku, 1), p3 = part_read(sku, 3);
        done = db_synced(sku, 1) == p1.seq && db_synced(sku, 3) == p3.seq && p1.xlen == 0 &&
               p3.xlen == 0;
        sh_clock_sleep_ms(20);
    }
    assert_true(done);
    sh_clock_sleep_ms(2 * INTERVAL_MS + 500); /* time enough to ship what is not its own */
    for (int p = 0; p < F_PARTS; p += 2) {
        part_state ps = part_read(sku, p);
        assert_int_equal(db_rows(sku, p), 0);
        assert_int_equal(db_synced(sku, p), 0);
        assert_true(ps.xlen > 0);
        assert_int_equal(ps.ack, 0);
    }
    node_stop_clean();
    node_start(); /* node 1 of 1 owns everything */
    (void)converge_wait(sku, F_PARTS, CONVERGE_MS);
    assert_int_equal(check_exact(sku, F_PARTS), F_ORDERS);
    check_orders(sku, o, F_ORDERS, 0);
    free(o);
}

/* ==== g. clean shutdown ======================================================= */

static void test_g_sigterm(void **state)
{
    (void)state;
    assert_true(proc_alive(&g_node));
    node_stop_clean();
    char cmd[PATH_BYTES + 64];
    snprintf(cmd, sizeof cmd, "grep -q 'info ship shipper stopped' %s", g_main_log);
    assert_int_equal(system(cmd), 0);
    log_print_last(g_main_log, "ship stats final");
    if (access(g_node.url + strlen("ipc://"), F_OK) == 0) {
        fail_msg("the ipc file %s is left behind", g_node.url + strlen("ipc://"));
    }
}

/* ==== fixtures ================================================================ */

static int group_setup(void **state)
{
    (void)state;
    env_load();
    sh_log_init("test-ship", SH_LOG_WARN, 2);
    signal(SIGPIPE, SIG_IGN);
    sh_err rc = sh_cluster_open(&g_router, g_env.seed, ROUTER_TIMEOUT_MS);
    if (rc != SH_OK) {
        fail_msg("sh_cluster_open(%s): %s", g_env.seed, sh_strerror(rc));
    }
    struct {
        sh_stock_script s;
        int *id;
    } scripts[] = {{SH_SCRIPT_PART_INIT, &g_sid_part_init},
                   {SH_SCRIPT_POOL_INIT, &g_sid_pool_init},
                   {SH_SCRIPT_GRANT_BEGIN, &g_sid_grant_begin},
                   {SH_SCRIPT_GRANT_APPLY, &g_sid_grant_apply},
                   {SH_SCRIPT_JOURNAL_END, &g_sid_journal_end}};
    for (size_t k = 0; k < sizeof scripts / sizeof scripts[0]; k++) {
        assert_int_equal(
            sh_cluster_script_add(g_router, sh_stock_script_text(scripts[k].s), scripts[k].id),
            SH_OK);
    }
    db_connect();
    int pid = (int)getpid();
    for (int k = 0; k < WORKERS; k++) {
        g_workers[k].pid = -1;
        snprintf(g_workers[k].url, sizeof g_workers[k].url, "ipc:///tmp/test-ship-syncd-%d-%d.ipc",
                 pid, k);
        snprintf(g_workers[k].log, sizeof g_workers[k].log, "/tmp/test-ship-%d-syncd-%d.log", pid,
                 k);
    }
    g_node.pid = -1;
    snprintf(g_node.url, sizeof g_node.url, "ipc:///tmp/test-ship-node-%d.ipc", pid);
    snprintf(g_main_log, sizeof g_main_log, "/tmp/test-ship-%d-node.log", pid);
    snprintf(g_node_urls, sizeof g_node_urls, "%s", g_workers[0].url);
    print_message("logs: /tmp/test-ship-%d-*.log\n", pid);
    worker_start(0);
    node_start();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    (void)proc_stop(&g_node);
    for (int k = 0; k < WORKERS; k++) {
        (void)proc_stop(&g_workers[k]);
    }
    if (g_my != NULL) {
        mysql_close(g_my);
        g_my = NULL;
    }
    sh_cluster_close(g_router);
    g_router = NULL;
    return 0;
}

/* Each test starts with the main worker and a node up, even after an earlier
 * test failed half-way. */
static int test_setup(void **state)
{
    (void)state;
    if (!proc_alive(&g_workers[0])) {
        worker_start(0);
    }
    if (!proc_alive(&g_node)) {
        node_start();
    }
    return 0;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_a_normal, test_setup),
        cmocka_unit_test_setup(test_b_threshold, test_setup),
        cmocka_unit_test_setup(test_c_worker_down, test_setup),
        cmocka_unit_test_setup(test_d_node_kill, test_setup),
        cmocka_unit_test_setup(test_e_two_workers, test_setup),
        cmocka_unit_test_setup(test_f_ownership, test_setup),
        cmocka_unit_test_setup(test_g_sigterm, test_setup),
    };
    return T_CMOCKA_MAIN(argc, argv, "ship", tests, group_setup, group_teardown);
}
