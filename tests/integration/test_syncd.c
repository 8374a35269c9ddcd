/* test_syncd.c -- stock-syncd end to end: real worker processes on a real MariaDB.
 *
 * The sync worker's promise is "every detail in MySQL exactly once, whatever
 * arrives", so these tests start bin/stock-syncd ($STOCK_BIN/stock-syncd) with
 * fork/exec, talk to it only over NNG with the wire codec, and judge it only by
 * what MySQL holds afterwards, read over the test's own connection: batches
 * applied once, re-sent and overlapping batches, gaps, garbage, two worker
 * processes racing on the same batches, releases, the catalog, a partition's
 * details read back page by page (reconcile's SYNC_DETAILS), connections
 * killed under the worker, a lost ack (fault build), the socket path, MySQL
 * down, and a duplicate key inside a group. The database comes from the harness
 * (tests/run.sh): MYSQL_HOST, MYSQL_PORT, MYSQL_SOCKET, MYSQL_USER, MYSQL_DB;
 * without MYSQL_PORT the tests fail, never skip. SKU ids carry the pid and the
 * start time, so reruns against one database never collide.
 *
 * Threads never call cmocka asserts (they are not thread-safe): they record
 * what they saw and the main thread judges it. Every wait is bounded, and
 * every worker started here is stopped by pid with SIGTERM, which must end it
 * with exit status 0 (a sanitizer report would make it non-zero). Each worker
 * logs to /tmp/test-syncd-<pid>-<n>.log, printed when it misbehaves and removed
 * after a clean stop unless KEEP_SYNCD_LOGS=1. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "t_cmocka.h"

#include "sh_clock.h"
#include "sh_err.h"
#include "sh_limits.h"
#include "sh_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <mysql.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define PATH_BYTES         512
#define SQL_BYTES          1024
#define WORKER_START_MS    30000 /* until a new worker answers a query */
#define WORKER_STOP_MS     20000 /* SIGTERM to exit, then SIGKILL */
#define PROBE_TIMEOUT_MS   500
#define CALL_TIMEOUT_MS    20000 /* one request/reply (ASan builds are slow) */
#define DROP_TIMEOUT_MS    1500  /* the fault test's "no ack" wait */
#define BATCH_DETAILS_MAX  1000
#define CONC_THREADS       8
#define CONC_BATCHES       50
#define CONC_BATCH_DETAILS 20
#define CONC_COPIES        4 /* each batch: twice to each of two workers, at once */
#define GROUP_PARTITIONS   16
#define REP_BYTES_MAX      SH_WIRE_MSG_BYTES_MAX

/* ==== environment ============================================================== */

static struct {
    char bin[PATH_BYTES];
    char host[128];
    char port[16];
    char socket[PATH_BYTES];
    char user[64];
    char db[64];
    char run[32]; /* unique per run: part of every sku id */
    bool fault_build;
} g_env;

static MYSQL *g_my; /* the test's own connection */

typedef struct worker {
    pid_t pid;
    char url[PATH_BYTES];
    char log[PATH_BYTES];
} worker;

static worker g_main_worker; /* started by the group setup, used by most tests */
static int g_worker_seq;

static void env_load(void)
{
    const char *port = getenv("MYSQL_PORT");
    if (port == NULL || port[0] == '\0') {
        fail_msg("MYSQL_PORT is not set: run under tests/run.sh, or source the infra.env of "
                 "scripts/infra.sh up (MYSQL_HOST, MYSQL_PORT, MYSQL_SOCKET, MYSQL_DB) and "
                 "export STOCK_BIN=the directory holding stock-syncd");
    }
    const char *bin = getenv("STOCK_BIN");
    if (bin == NULL || bin[0] == '\0') {
        fail_msg("STOCK_BIN is not set: export STOCK_BIN=the directory holding stock-syncd");
    }
    const char *host = getenv("MYSQL_HOST");
    const char *sock = getenv("MYSQL_SOCKET");
    const char *user = getenv("MYSQL_USER");
    const char *db = getenv("MYSQL_DB");
    snprintf(g_env.bin, sizeof g_env.bin, "%s", bin);
    snprintf(g_env.port, sizeof g_env.port, "%s", port);
    snprintf(g_env.host, sizeof g_env.host, "%s", host && host[0] ? host : "127.0.0.1");
    snprintf(g_env.socket, sizeof g_env.socket, "%s", sock ? sock : "");
    snprintf(g_env.user, sizeof g_env.user, "%s", user && user[0] ? user : "root");
    snprintf(g_env.db, sizeof g_env.db, "%s", db && db[0] ? db : "stock");
    snprintf(g_env.run, sizeof g_env.run, "%d-%" PRIu64, (int)getpid(),
             sh_clock_wall_ms() % 100000000u);
    char path[PATH_BYTES + 32];
    /* The fault switch lives only in the test build of the worker (make builds
     * $(BIN)/tests/stock-syncd-fault with -DSH_FAULT_INJECTION). */
    snprintf(path, sizeof path, "%s/tests/stock-syncd-fault", g_env.bin);
    g_env.fault_build = access(path, X_OK) == 0;
    snprintf(path, sizeof path, "%s/stock-syncd", g_env.bin);
    if (access(path, X_OK) != 0) {
        fail_msg("%s is missing or not executable (make bin/stock-syncd)", path);
    }
}

/* A sku id unique to this run: "sw-<run>-<tag>". */
static void sku_name(char *out, size_t cap, const char *tag)
{
    snprintf(out, cap, "sw-%s-%s", g_env.run, tag);
    assert_true(strlen(out) <= SH_SKU_ID_CHARS_MAX);
}

/* ==== MySQL (the test's own connection) ========================================= */

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
}

static void db_exec(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void db_exec(const char *fmt, ...)
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
    if (res != NULL) {
        mysql_free_result(res);
    }
}

/* The first column of the first row as a signed number; 0 for no row or NULL. */
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

static int64_t db_details(const char *sku, unsigned part)
{
    return db_i64("SELECT COUNT(*) FROM deduction_detail WHERE sku_id='%s' AND partition_id=%u",
                  sku, part);
}

static int64_t db_synced(const char *sku, unsigned part)
{
    return db_i64("SELECT synced_seq FROM stock_partition WHERE sku_id='%s' AND partition_id=%u",
                  sku, part);
}

/* stock_partition's counters agree with the detail rows, and with the expectation. */
static void db_check_partition(const char *sku, unsigned part, int64_t rows, int64_t sum,
                               int64_t synced)
{
    assert_int_equal(db_details(sku, part), rows);
    assert_int_equal(db_i64("SELECT COUNT(DISTINCT seq) FROM deduction_detail WHERE sku_id='%s' "
                            "AND partition_id=%u",
                            sku, part),
                     rows);
    assert_int_equal(db_i64("SELECT COALESCE(SUM(qty),0) FROM deduction_detail WHERE sku_id='%s' "
                            "AND partition_id=%u",
                            sku, part),
                     sum);
    assert_int_equal(db_synced(sku, part), synced);
    assert_int_equal(db_i64("SELECT deducted FROM stock_partition WHERE sku_id='%s' AND "
                            "partition_id=%u",
                            sku, part),
                     sum);
    assert_int_equal(db_i64("SELECT detail_rows FROM stock_partition WHERE sku_id='%s' AND "
                            "partition_id=%u",
                            sku, part),
                     rows);
    if (rows > 0) {
        assert_int_equal(db_i64("SELECT MIN(seq) FROM deduction_detail WHERE sku_id='%s' AND "
                                "partition_id=%u",
                                sku, part),
                         1);
        assert_int_equal(db_i64("SELECT MAX(seq) FROM deduction_detail WHERE sku_id='%s' AND "
                                "partition_id=%u",
                                sku, part),
                         synced);
    }
}

/* ==== worker processes ========================================================== */

static bool worker_alive(worker *w)
{
    int status = 0;
    return w->pid > 0 && waitpid(w->pid, &status, WNOHANG) == 0;
}

static void worker_print_log(const worker *w)
{
    FILE *f = fopen(w->log, "r");
    if (f == NULL) {
        return;
    }
    char line[1024];
    print_message("---- %s ----\n", w->log);
    while (fgets(line, sizeof line, f) != NULL) {
        print_message("%s", line);
    }
    fclose(f);
}

/* fork/exec stock-syncd with the harness's MySQL, its own ipc URL and the given
 * extra -o overrides (NULL-terminated); env_kv ("K=V" or NULL) is added to its
 * environment. Does not wait for it. */
static void worker_spawn(worker *w, const char *env_kv, const char *const *extra)
{
    memset(w, 0, sizeof *w);
    int n = ++g_worker_seq;
    snprintf(w->url, sizeof w->url, "ipc:///tmp/test-syncd-%d-%d.ipc", (int)getpid(), n);
    snprintf(w->log, sizeof w->log, "/tmp/test-syncd-%d-%d.log", (int)getpid(), n);
    char path[PATH_BYTES + 32];
    if (env_kv != NULL && strncmp(env_kv, "STOCK_FAULT_", 12) == 0) {
        snprintf(path, sizeof path, "%s/tests/stock-syncd-fault", g_env.bin);
    } else {
        snprintf(path, sizeof path, "%s/stock-syncd", g_env.bin);
    }
    static char o[8][PATH_BYTES + 64];
    snprintf(o[0], sizeof o[0], "syncd.listen=%s", w->url);
    snprintf(o[1], sizeof o[1], "mysql.host=%s", g_env.host);
    snprintf(o[2], sizeof o[2], "mysql.port=%s", g_env.port);
    snprintf(o[3], sizeof o[3], "mysql.user=%s", g_env.user);
    snprintf(o[4], sizeof o[4], "mysql.database=%s", g_env.db);
    snprintf(o[5], sizeof o[5], "mysql.socket=%s", g_env.socket);
    const char *argv[64];
    int argc = 0;
    argv[argc++] = path;
    for (int i = 0; i < 6; i++) {
        argv[argc++] = "-o";
        argv[argc++] = o[i];
    }
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        assert_true(argc < 60);
        argv[argc++] = "-o";
        argv[argc++] = extra[i];
    }
    argv[argc] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(w->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        if (env_kv != NULL) {
            putenv((char *)(uintptr_t)env_kv);
        }
        execv(path, (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    w->pid = pid;
}

/* SIGTERM, bounded wait, SIGKILL; the exit must be a clean 0. */
static void worker_stop(worker *w)
{
    if (w->pid <= 0) {
        return;
    }
    pid_t pid = w->pid;
    w->pid = 0;
    kill(pid, SIGTERM);
    int status = 0;
    uint64_t end = sh_clock_mono_ms() + WORKER_STOP_MS;
    pid_t r = 0;
    while ((r = waitpid(pid, &status, WNOHANG)) == 0 && sh_clock_mono_ms() < end) {
        sh_clock_sleep_ms(20);
    }
    if (r == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        worker_print_log(w);
        fail_msg("stock-syncd pid %d did not stop within %d ms of SIGTERM", (int)pid,
                 WORKER_STOP_MS);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        worker_print_log(w);
        fail_msg("stock-syncd pid %d ended with status 0x%x (not a clean exit 0)", (int)pid,
                 (unsigned)status);
    }
    const char *keep = getenv("KEEP_SYNCD_LOGS");
    if (keep == NULL || strcmp(keep, "1") != 0) {
        unlink(w->log);
    }
}

/* ==== NNG client ================================================================ */

typedef struct cli {
    nng_socket s;
    bool open;
} cli;

static int cli_open(cli *c, const char *url, int timeout_ms)
{
    memset(c, 0, sizeof *c);
    int rv = nng_req0_open(&c->s);
    if (rv != 0) {
        return rv;
    }
    c->open = true;
    /* The test resends by hand where it means to; NNG's own resend stays out of it. */
    if ((rv = nng_socket_set_ms(c->s, NNG_OPT_REQ_RESENDTIME, 3600000)) != 0 ||
        (rv = nng_socket_set_ms(c->s, NNG_OPT_RECVTIMEO, timeout_ms)) != 0 ||
        (rv = nng_socket_set_ms(c->s, NNG_OPT_SENDTIMEO, timeout_ms)) != 0 ||
        (rv = nng_socket_set_size(c->s, NNG_OPT_RECVMAXSZ, REP_BYTES_MAX)) != 0) {
        return rv;
    }
    return nng_dial(c->s, url, NULL, NNG_FLAG_NONBLOCK);
}

static void cli_close(cli *c)
{
    if (c->open) {
        nng_close(c->s);
        c->open = false;
    }
}

static int cli_send(cli *c, const uint8_t *buf, size_t len)
{
    nng_msg *m = NULL;
    int rv = nng_msg_alloc(&m, len);
    if (rv != 0) {
        return rv;
    }
    if (len > 0) {
        memcpy(nng_msg_body(m), buf, len);
    }
    rv = nng_sendmsg(c->s, m, 0);
    if (rv != 0) {
        nng_msg_free(m);
    }
    return rv;
}

/* Receives one reply into *out (the caller frees it with nng_msg_free). */
static int cli_recv(cli *c, nng_msg **out)
{
    return nng_recvmsg(c->s, out, 0);
}

static int cli_call(cli *c, const uint8_t *buf, size_t len, nng_msg **out)
{
    int rv = cli_send(c, buf, len);
    if (rv != 0) {
        return rv;
    }
    return cli_recv(c, out);
}

/* Decodes a reply as a BATCH_ACK; SH_OK or the decode error. */
static sh_err ack_of(nng_msg *m, sh_wire_ack *ack)
{
    sh_wire_header hdr;
    return sh_wire_ack_decode(nng_msg_body(m), nng_msg_len(m), &hdr, ack);
}

/* ==== batches ==================================================================== */

typedef int32_t (*qty_fn)(uint64_t seq);

static int32_t qty_pos(uint64_t seq)
{
    return (int32_t)(seq % 5) + 1;
}

static int32_t qty_mixed(uint64_t seq)
{
    /* deductions with a release every third seq */
    return seq % 3 == 0 ? -(int32_t)(seq % 4 + 1) : (int32_t)(seq % 7 + 1);
}

static int64_t qty_sum(qty_fn f, uint64_t first, uint64_t last)
{
    int64_t s = 0;
    for (uint64_t q = first; q <= last; q++) {
        s += f(q);
    }
    return s;
}

static void detail_fill(sh_wire_detail *d, uint64_t seq, qty_fn f)
{
    memset(d, 0, sizeof *d);
    d->seq = seq;
    d->created_ms = (int64_t)(1700000000000ull + seq);
    d->qty = f(seq);
    d->sub_domain = (uint8_t)(seq % 2);
    int n = snprintf(d->order_id, sizeof d->order_id, "ord-%" PRIu64, seq);
    d->order_id_len = (uint8_t)n;
    if (d->qty > 0) {
        n = snprintf(d->user_id, sizeof d->user_id, "user:%" PRIu64, seq % 7);
        d->user_id_len = (uint8_t)n;
    }
}

/* Encodes a batch of seq first..last (count 0 when last < first: a query) into
 * buf; returns its length. */
static size_t batch_encode(uint8_t *buf, size_t cap, uint64_t req_id, const char *sku,
                           unsigned part, uint64_t first, uint64_t last, qty_fn f)
{
    static __thread sh_wire_detail details[BATCH_DETAILS_MAX];
    sh_wire_batch b;
    memset(&b, 0, sizeof b);
    assert_int_equal(sh_wire_str_set(b.sku, sizeof b.sku, &b.sku_len, sku, strlen(sku)), SH_OK);
    b.partition = (uint16_t)part;
    size_t n = 0;
    if (last >= first && first > 0) {
        n = (size_t)(last - first + 1);
        assert_true(n <= BATCH_DETAILS_MAX);
        b.first_seq = first;
        b.last_seq = last;
        for (size_t i = 0; i < n; i++) {
            detail_fill(&details[i], first + i, f);
        }
    }
    size_t len = 0;
    sh_err rc = sh_wire_batch_encode(buf, cap, &len, req_id, &b, details, n);
    assert_int_equal(rc, SH_OK);
    return len;
}

static uint8_t g_buf[SH_WIRE_MSG_BYTES_MAX];

/* Sends one batch (or query) and returns its ack; fails the test on transport errors. */
static sh_wire_ack call_batch(cli *c, const char *sku, unsigned part, uint64_t first, uint64_t last,
                              qty_fn f)
{
    size_t len = batch_encode(g_buf, sizeof g_buf, first * 1000 + part, sku, part, first, last, f);
    nng_msg *rep = NULL;
    int rv = cli_call(c, g_buf, len, &rep);
    if (rv != 0) {
        fail_msg("batch %s/%u %" PRIu64 "..%" PRIu64 ": %s", sku, part, first, last,
                 nng_strerror(rv));
    }
    sh_wire_ack ack;
    assert_int_equal(ack_of(rep, &ack), SH_OK);
    nng_msg_free(rep);
    return ack;
}

static void expect_ok(const sh_wire_ack *ack, const char *sku, unsigned part, uint64_t synced)
{
    if (ack->status != SH_OK) {
        fail_msg("ack for %s/%u: status %s message '%s'", sku, part, sh_strerror(ack->status),
                 ack->message);
    }
    assert_string_equal(ack->sku, sku);
    assert_int_equal(ack->partition, part);
    assert_int_equal(ack->synced_seq, synced);
}

/* Waits until w answers a query (or dies, or the bound passes). */
static void worker_wait_ready(worker *w)
{
    uint64_t end = sh_clock_mono_ms() + WORKER_START_MS;
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    sku_name(sku, sizeof sku, "probe");
    while (sh_clock_mono_ms() < end) {
        if (!worker_alive(w)) {
            worker_print_log(w);
            fail_msg("stock-syncd exited during start (log above)");
        }
        cli c;
        if (cli_open(&c, w->url, PROBE_TIMEOUT_MS) == 0) {
            size_t len = batch_encode(g_buf, sizeof g_buf, 1, sku, 0, 0, 0, qty_pos);
            nng_msg *rep = NULL;
            if (cli_call(&c, g_buf, len, &rep) == 0) {
                nng_msg_free(rep);
                cli_close(&c);
                return;
            }
        }
        cli_close(&c);
        sh_clock_sleep_ms(100);
    }
    worker_print_log(w);
    fail_msg("stock-syncd at %s did not answer within %d ms", w->url, WORKER_START_MS);
}

static void worker_start(worker *w, const char *env_kv, const char *const *extra)
{
    worker_spawn(w, env_kv, extra);
    worker_wait_ready(w);
}

static void cli_open_ok(cli *c, const worker *w, int timeout_ms)
{
    int rv = cli_open(c, w->url, timeout_ms);
    if (rv != 0) {
        fail_msg("req socket to %s: %s", w->url, nng_strerror(rv));
    }
}

/* ==== fixtures ==================================================================== */

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    env_load();
    db_connect();
    worker_start(&g_main_worker, NULL, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    worker_stop(&g_main_worker);
    if (g_my != NULL) {
        mysql_close(g_my);
        g_my = NULL;
    }
    return 0;
}

/* ==== a. one batch ================================================================ */

static void test_apply_one_batch(void **state)
{
    (void)state;
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    sku_name(sku, sizeof sku, "a");
    cli c;
    cli_open_ok(&c, &g_main_worker, CALL_TIMEOUT_MS);
    sh_wire_ack ack = call_batch(&c, sku, 0, 1, 0, qty_pos); /* query before anything */
    expect_ok(&ack, sku, 0, 0);
    ack = call_batch(&c, sku, 0, 1, 100, qty_pos);
    expect_ok(&ack, sku, 0, 100);
    db_check_partition(sku, 0, 100, qty_sum(qty_pos, 1, 100), 100);
    ack = call_batch(&c, sku, 0, 1, 0, qty_pos);
    expect_ok(&ack, sku, 0, 100);
    /* one row in full, as the worker wrote it */
    assert_int_equal(db_i64("SELECT COUNT(*) FROM deduction_detail WHERE sku_id='%s' AND "
                            "partition_id=0 AND seq=42 AND order_id='ord-42' AND "
                            "user_id='user:0' AND qty=%d AND sub_domain=0 AND created_ms=%" PRIu64,
                            sku, (int)qty_pos(42), (uint64_t)1700000000042ull),
                     1);
    /* an untouched partition of the same sku is 0 and has no row */
    ack = call_batch(&c, sku, 7, 1, 0, qty_pos);
    expect_ok(&ack, sku, 7, 0);
    assert_int_equal(
        db_i64("SELECT COUNT(*) FROM stock_partition WHERE sku_id='%s' AND partition_id=7", sku),
        0);
    cli_close(&c);
}

/* ==== b. the same batch again, and an overlapping one ================================= */

static void test_resent_and_overlapping(void **state)
{
    (void)state;
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    sku_name(sku, sizeof sku, "b");
    cli c;
    cli_open_ok(&c, &g_main_worker, CALL_TIMEOUT_MS);
    sh_wire_ack ack = call_batch(&c, sku, 1, 1, 100, qty_pos);
    expect_ok(&ack, sku, 1, 100);
    ack = call_batch(&c, sku, 1, 1, 100, qty_pos);
    expect_ok(&ack, sku, 1, 100);
    db_check_partition(sku, 1, 100, qty_sum(qty_pos, 1, 100), 100);
    ack = call_batch(&c, sku, 1, 50, 150, qty_pos);
    expect_ok(&ack, sku, 1, 150);
    db_check_partition(sku, 1, 150, qty_sum(qty_pos, 1, 150), 150);
    /* a batch wholly inside what is applied, at the start and at the end */
    ack = call_batch(&c, sku, 1, 1, 1, qty_pos);
    expect_ok(&ack, sku, 1, 150);
    ack = call_batch(&c, sku, 1, 150, 150, qty_pos);
    expect_ok(&ack, sku, 1, 150);
    db_check_partition(sku, 1, 150, qty_sum(qty_pos, 1, 150), 150);
    cli_close(&c);
}

/* A seq that MySQL holds with another qty (Redis handed it to another
 * deduction after a failover): for the details of a batch at or below
 * synced_seq the worker compares each with the row it holds. */
static int32_t qty_reused_at_7(uint64_t seq)
{
    return seq == 7 ? 2 : qty_pos(seq);
}

static void test_identity_checked(void **state)
{
    (void)state;
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    sku_name(sku, sizeof sku, "div");
    cli c;
    cli_open_ok(&c, &g_main_worker, CALL_TIMEOUT_MS);
    sh_wire_ack ack = call_batch(&c, sku, 0, 1, 10, qty_pos);
    expect_ok(&ack, sku, 0, 10);
    /* The same details again, wholly or overlapping: equal, so fine. */
    ack = call_batch(&c, sku, 0, 5, 12, qty_pos);
    expect_ok(&ack, sku, 0, 12);
    /* Seq 7 with another qty: refused, nothing written, synced_seq kept. */
    ack = call_batch(&c, sku, 0, 5, 15, qty_reused_at_7);
    assert_int_equal(ack.status, SH_EDIVERGED);
    assert_int_equal(ack.synced_seq, 12);
    assert_non_null(strstr(ack.message, "seq 7"));
    ack = call_batch(&c, sku, 0, 7, 7, qty_reused_at_7);
    assert_int_equal(ack.status, SH_EDIVERGED);
    db_check_partition(sku, 0, 12, qty_sum(qty_pos, 1, 12), 12);
    cli_close(&c);
}

/* ==== c. a gap ===================================================================== */

static void test_gap_refused(void **state)
{
    (void)state;
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    sku_name(sku, sizeof sku, "c");
    cli c;
    cli_open_ok(&c, &g_main_worker, CALL_TIMEOUT_MS);
    sh_wire_ack ack = call_batch(&c, sku, 2, 1, 150, qty_pos);
    expect_ok(&ack, sku, 2, 150);
    ack = call_batch(&c, sku, 2, 200, 210, qty_pos);
    assert_int_equal(ack.status, SH_EINVAL);
    assert_string_equal(ack.sku, sku);
    assert_int_equal(ack.partition, 2);
    assert_non_null(strstr(ack.message, "gap after synced_seq 150"));
    db_check_partition(sku, 2, 150, qty_sum(qty_pos, 1, 150), 150);
    assert_int_equal(
        db_i64("SELECT COUNT(*) FROM deduction_detail WHERE sku_id='%s' AND seq>150", sku), 0);
    /* the very first batch of a partition must start at 1: no row is created otherwise */
    ack = call_batch(&c, sku, 3, 5, 10, qty_pos);
    assert_int_equal(ack.status, SH_EINVAL);
    assert_non_null(strstr(ack.message, "gap after synced_seq 0"));
    assert_int_equal(
        db_i64("SELECT COUNT(*) FROM stock_partition WHERE sku_id='%s' AND partition_id=3", sku),
        0);
    assert_int_equal(db_details(sku, 3), 0);
    /* the next contiguous batch still applies */
    ack = call_batch(&c, sku, 2, 151, 160, qty_pos);
    expect_ok(&ack, sku, 2, 160);
    db_check_partition(sku, 2, 160, qty_sum(qty_pos, 1, 160), 160);
    cli_close(&c);
}

/* ==== d. malformed messages ========================================================== */

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* Sends buf[0..len) and expects a BATCH_ACK with status want (any error when want
 * is SH_OK... never: want is always an error here) and the unknown sku "?". */
static void expect_bad(cli *c, const uint8_t *buf, size_t len, sh_err want, const char *what)
{
    nng_msg *rep = NULL;
    int rv = cli_call(c, buf, len, &rep);
    if (rv != 0) {
        fail_msg("%s: no reply: %s", what, nng_strerror(rv));
    }
    sh_wire_ack ack;
    sh_err rc = ack_of(rep, &ack);
    nng_msg_free(rep);
    if (rc != SH_OK) {
        fail_msg("%s: reply is not a BATCH_ACK (%s)", what, sh_strerror(rc));
    }
    if (want == SH_ERR_COUNT_) { /* any error */
        if (ack.status == SH_OK) {
            fail_msg("%s: answered OK", what);
        }
    } else if (ack.status != want) {
        fail_msg("%s: status %s, expected %s (message '%s')", what, sh_strerror(ack.status),
                 sh_strerror(want), ack.message);
    }
    assert_true(ack.message_len > 0);
}

static void test_malformed_messages(void **state)
{
    (void)state;
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    sku_name(sku, sizeof sku, "d");
    cli c;
    cli_open_ok(&c, &g_main_worker, CALL_TIMEOUT_MS);
    static uint8_t good[65536];
    static uint8_t bad[65536];
    size_t len = batch_encode(good, sizeof good, 77, sku, 0, 1, 5, qty_pos);
    size_t skul = strlen(sku);
    size_t off_last = SH_WIRE_HEADER_BYTES + 1 + skul + 2 + 8;
    size_t off_d0 = off_last + 8;

    expect_bad(&c, good, 0, SH_ETRUNC, "empty message");
    expect_bad(&c, good, 10, SH_ETRUNC, "10 bytes");
    expect_bad(&c, good, len - 3, SH_ETRUNC, "body cut short");
    memcpy(bad, good, len);
    bad[0] = 9;
    expect_bad(&c, bad, len, SH_EVERSION, "version 9");
    memcpy(bad, good, len);
    bad[1] = 99;
    expect_bad(&c, bad, len, SH_ETYPE, "type 99");
    memcpy(bad, good, len);
    put_u64(bad + off_last, 9); /* 1..9 announced, 5 details */
    expect_bad(&c, bad, len, SH_EINVAL, "count against seq range");
    memcpy(bad, good, len);
    /* detail 1 of 1..5 claims seq 3: a gap inside the batch */
    size_t d1 = off_d0 + 8 + 8 + 4 + 1 + 1 + strlen("ord-1") + 1 + strlen("user:1");
    assert_int_equal(bad[d1], 2);
    put_u64(bad + d1, 3);
    expect_bad(&c, bad, len, SH_EINVAL, "seq gap inside the batch");
    memcpy(bad, good, len);
    bad[len] = 0;
    expect_bad(&c, bad, len + 1, SH_EINVAL, "trailing byte");
    /* a well-formed message of a type the worker does not serve */
    sh_wire_ack a;
    memset(&a, 0, sizeof a);
    a.status = SH_OK;
    a.sku[0] = 'x';
    a.sku_len = 1;
    size_t alen = 0;
    assert_int_equal(sh_wire_ack_encode(bad, sizeof bad, &alen, 5, &a), SH_OK);
    expect_bad(&c, bad, alen, SH_EPROTO, "a BATCH_ACK sent to the worker");
    /* an order id MySQL-bound text must never carry */
    memcpy(bad, good, len);
    bad[off_d0 + 8 + 8 + 4 + 1 + 1] = '\'';
    expect_bad(&c, bad, len, SH_EINVAL, "quote in an order id");
    /* random bytes, several sizes, fixed seed */
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int round = 0; round < 20; round++) {
        size_t n = 1 + (size_t)(x % 3000);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bad[i] = (uint8_t)x;
        }
        if (round % 2 == 0 && n > 2) {
            bad[0] = SH_WIRE_VERSION; /* get past the version check sometimes */
            bad[1] = SH_WIRE_DETAIL_BATCH;
        }
        expect_bad(&c, bad, n, SH_ERR_COUNT_, "random bytes");
    }
    /* a catalog request with a bad op: answered as a CATALOG_REP */
    sh_wire_catalog_req cr;
    memset(&cr, 0, sizeof cr);
    cr.op = SH_WIRE_CAT_GET;
    assert_int_equal(
        sh_wire_str_set(cr.sku.sku_id, sizeof cr.sku.sku_id, &cr.sku.sku_id_len, sku, skul), SH_OK);
    size_t clen = 0;
    assert_int_equal(sh_wire_catalog_req_encode(bad, sizeof bad, &clen, 6, &cr), SH_OK);
    bad[SH_WIRE_HEADER_BYTES] = 42;
    nng_msg *rep = NULL;
    assert_int_equal(cli_call(&c, bad, clen, &rep), 0);
    sh_wire_header hdr;
    sh_wire_catalog_rep crep;
    static sh_wire_sku skus[4];
    assert_int_equal(
        sh_wire_catalog_rep_decode(nng_msg_body(rep), nng_msg_len(rep), &hdr, &crep, skus, 4),
        SH_OK);
    nng_msg_free(rep);
    assert_int_equal(crep.status, SH_EINVAL);
    assert_int_equal(hdr.count, 0);

    /* nothing of all that reached MySQL, and the worker still applies a good batch */
    assert_int_equal(db_i64("SELECT COUNT(*) FROM stock_partition WHERE sku_id='%s'", sku), 0);
    assert_int_equal(db_i64("SELECT COUNT(*) FROM deduction_detail WHERE sku_id='%s'", sku), 0);
    nng_msg *r2 = NULL;
    assert_int_equal(cli_call(&c, good, len, &r2), 0);
    sh_wire_ack ok;
    assert_int_equal(ack_of(r2, &ok), SH_OK);
    nng_msg_free(r2);
    expect_ok(&ok, sku, 0, 5);
    db_check_partition(sku, 0, 5, qty_sum(qty_pos, 1, 5), 5);
    assert_true(worker_alive(&g_main_worker));
    cli_close(&c);
}

/* ==== e. two workers, eight senders, every batch four times at once =================== */

typedef struct conc_arg {
    const char *sku;
    unsigned part;
    const char *urls[2];
    int failures;
    char why[512];
} conc_arg;

static void *conc_thread(void *p)
{
    conc_arg *a = p;
    cli c[CONC_COPIES];
    memset(c, 0, sizeof c);
    static __thread uint8_t buf[65536];
    for (int k = 0; k < CONC_COPIES; k++) {
        if (cli_open(&c[k], a->urls[k % 2], CALL_TIMEOUT_MS) != 0) {
            a->failures++;
            snprintf(a->why, sizeof a->why, "open socket %d", k);
            goto out;
        }
    }
    for (uint64_t b = 0; b < CONC_BATCHES; b++) {
        uint64_t first = b * CONC_BATCH_DETAILS + 1;
        uint64_t last = first + CONC_BATCH_DETAILS - 1;
        size_t len = batch_encode(buf, sizeof buf, b, a->sku, a->part, first, last, qty_mixed);
        for (int k = 0; k < CONC_COPIES; k++) {
            int rv = cli_send(&c[k], buf, len);
            if (rv != 0) {
                a->failures++;
                snprintf(a->why, sizeof a->why, "send: %s", nng_strerror(rv));
                goto out;
            }
        }
        for (int k = 0; k < CONC_COPIES; k++) {
            nng_msg *rep = NULL;
            int rv = cli_recv(&c[k], &rep);
            if (rv != 0) {
                a->failures++;
                snprintf(a->why, sizeof a->why, "recv: %s", nng_strerror(rv));
                goto out;
            }
            sh_wire_ack ack;
            sh_err rc = ack_of(rep, &ack);
            nng_msg_free(rep);
            if (rc != SH_OK || ack.status != SH_OK || ack.synced_seq != last ||
                ack.partition != a->part) {
                a->failures++;
                snprintf(a->why, sizeof a->why,
                         "batch %" PRIu64 " copy %d: decode %s status %s synced %" PRIu64
                         " message '%s'",
                         b, k, sh_strerror(rc), sh_strerror(ack.status), ack.synced_seq,
                         ack.message);
                goto out;
            }
        }
    }
out:
    for (int k = 0; k < CONC_COPIES; k++) {
        cli_close(&c[k]);
    }
    return NULL;
}

static void test_concurrent_workers(void **state)
{
    (void)state;
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    sku_name(sku, sizeof sku, "e");
    worker second;
    worker_start(&second, NULL, NULL);
    pthread_t th[CONC_THREADS];
    conc_arg args[CONC_THREADS];
    for (int t = 0; t < CONC_THREADS; t++) {
        memset(&args[t], 0, sizeof args[t]);
        args[t].sku = sku;
        args[t].part = (unsigned)t;
        args[t].urls[0] = g_main_worker.url;
        args[t].urls[1] = second.url;
        assert_int_equal(pthread_create(&th[t], NULL, conc_thread, &args[t]), 0);
    }
    for (int t = 0; t < CONC_THREADS; t++) {
        pthread_join(th[t], NULL);
    }
    worker_stop(&second);
    for (int t = 0; t < CONC_THREADS; t++) {
        if (args[t].failures > 0) {
            fail_msg("sender %d: %s", t, args[t].why);
        }
    }
    int64_t rows = CONC_BATCHES * CONC_BATCH_DETAILS;
    for (unsigned p = 0; p < CONC_THREADS; p++) {
        db_check_partition(sku, p, rows, qty_sum(qty_mixed, 1, (uint64_t)rows), rows);
    }
    assert_int_equal(db_i64("SELECT COUNT(*) FROM deduction_detail WHERE sku_id='%s'", sku),
                     rows * CONC_THREADS);
}

/* ==== f. releases ===================================================================== */

static int32_t qty_release_heavy(uint64_t seq)
{
    return seq % 2 == 0 ? -(int32_t)(seq % 5 + 1) : (int32_t)(seq % 3 + 1);
}

static void test_negative_qty(void **state)
{
    (void)state;
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    sku_name(sku, sizeof sku, "f");
    cli c;
    cli_open_ok(&c, &g_main_worker, CALL_TIMEOUT_MS);
    sh_wire_ack ack = call_batch(&c, sku, 4, 1, 60, qty_release_heavy);
    expect_ok(&ack, sku, 4, 60);
    ack = call_batch(&c, sku, 4, 61, 80, qty_release_heavy);
    expect_ok(&ack, sku, 4, 80);
    int64_t sum = qty_sum(qty_release_heavy, 1, 80);
    assert_true(sum < 0); /* more released than taken: a plain signed sum */
    db_check_partition(sku, 4, 80, sum, 80);
    assert_int_equal(
        db_i64("SELECT COUNT(*) FROM deduction_detail WHERE sku_id='%s' AND qty<0", sku), 40);
    assert_int_equal(db_i64("SELECT qty FROM deduction_detail WHERE sku_id='%s' AND "
                            "partition_id=4 AND seq=4 AND user_id=''",
                            sku),
                     -5);
    cli_close(&c);
}

/* ==== g. catalog ======================================================================= */

typedef struct cat_reply {
    sh_wire_catalog_rep rep;
    uint16_t count;
    sh_wire_sku skus[SH_SKUS_MAX];
} cat_reply;

static cat_reply g_cat;

static void cat_call(cli *c, sh_wire_catalog_op op, const sh_wire_sku *sku, const char *restock_id,
                     int64_t units)
{
    sh_wire_catalog_req req;
    memset(&req, 0, sizeof req);
    req.op = op;
    if (sku != NULL) {
        req.sku = *sku;
    }
    if (restock_id != NULL) {
        assert_int_equal(sh_wire_str_set(req.restock_id, sizeof req.restock_id, &req.restock_id_len,
                                         restock_id, strlen(restock_id)),
                         SH_OK);
        req.units = units;
    }
    size_t len = 0;
    assert_int_equal(sh_wire_catalog_req_encode(g_buf, sizeof g_buf, &len, 99, &req), SH_OK);
    nng_msg *rep = NULL;
    int rv = cli_call(c, g_buf, len, &rep);
    if (rv != 0) {
        fail_msg("catalog op %d: %s", (int)op, nng_strerror(rv));
    }
    sh_wire_header hdr;
    assert_int_equal(sh_wire_catalog_rep_decode(nng_msg_body(rep), nng_msg_len(rep), &hdr,
                                                &g_cat.rep, g_cat.skus, SH_SKUS_MAX),
                     SH_OK);
    assert_int_equal(hdr.req_id, 99);
    g_cat.count = hdr.count;
    nng_msg_free(rep);
}

static sh_wire_sku sku_row(const char *id, const char *name, int64_t total)
{
    sh_wire_sku s;
    memset(&s, 0, sizeof s);
    assert_int_equal(sh_wire_str_set(s.sku_id, sizeof s.sku_id, &s.sku_id_len, id, strlen(id)),
                     SH_OK);
    assert_int_equal(sh_wire_str_set(s.name, sizeof s.name, &s.name_len, name, strlen(name)),
                     SH_OK);
    s.total = total;
    s.start_ms = 1700000000000;
    s.per_user_limit = 5;
    s.partitions = 4;
    s.min_chunk = 10;
    s.max_chunk = 50;
    return s;
}

static void test_catalog(void **state)
{
    (void)state;
    char id[SH_SKU_ID_CHARS_MAX + 1];
    char other[SH_SKU_ID_CHARS_MAX + 1];
    char rid[64];
    sku_name(id, sizeof id, "g");
    sku_name(other, sizeof other, "g-none");
    snprintf(rid, sizeof rid, "rs-%s", g_env.run);
    cli c;
    cli_open_ok(&c, &g_main_worker, CALL_TIMEOUT_MS);

    sh_wire_sku s = sku_row(id, "Widget \"deluxe\" O'Neil", 100);
    cat_call(&c, SH_WIRE_CAT_UPSERT, &s, NULL, 0);
    assert_int_equal(g_cat.rep.status, SH_OK);
    assert_int_equal(g_cat.rep.applied, 1);
    assert_int_equal(g_cat.count, 1);
    assert_string_equal(g_cat.skus[0].sku_id, id);
    assert_string_equal(g_cat.skus[0].name, "Widget \"deluxe\" O'Neil");
    assert_int_equal(g_cat.skus[0].total, 100);
    assert_int_equal(g_cat.skus[0].start_ms, 1700000000000);
    assert_int_equal(g_cat.skus[0].per_user_limit, 5);
    assert_int_equal(g_cat.skus[0].partitions, 4);
    assert_int_equal(g_cat.skus[0].min_chunk, 10);
    assert_int_equal(g_cat.skus[0].max_chunk, 50);
    /* loading again, even with other values, changes nothing and answers the stored row */
    sh_wire_sku s2 = sku_row(id, "other", 999);
    cat_call(&c, SH_WIRE_CAT_UPSERT, &s2, NULL, 0);
    assert_int_equal(g_cat.rep.status, SH_OK);
    assert_int_equal(g_cat.rep.applied, 0);
    assert_int_equal(g_cat.count, 1);
    assert_int_equal(g_cat.skus[0].total, 100);
    assert_string_equal(g_cat.skus[0].name, "Widget \"deluxe\" O'Neil");
    assert_int_equal(db_i64("SELECT total FROM sku WHERE sku_id='%s'", id), 100);

    cat_call(&c, SH_WIRE_CAT_RESTOCK, &s, rid, 50);
    assert_int_equal(g_cat.rep.status, SH_OK);
    assert_int_equal(g_cat.rep.applied, 1);
    assert_int_equal(g_cat.skus[0].total, 150);
    cat_call(&c, SH_WIRE_CAT_RESTOCK, &s, rid, 50);
    assert_int_equal(g_cat.rep.status, SH_OK);
    assert_int_equal(g_cat.rep.applied, 0);
    assert_int_equal(g_cat.skus[0].total, 150);
    assert_int_equal(db_i64("SELECT total FROM sku WHERE sku_id='%s'", id), 150);
    assert_int_equal(db_i64("SELECT COUNT(*) FROM restock WHERE restock_id='%s'", rid), 1);
    /* the same id for other units is a conflict, not a second restock */
    cat_call(&c, SH_WIRE_CAT_RESTOCK, &s, rid, 70);
    assert_int_equal(g_cat.rep.status, SH_EEXIST);
    assert_int_equal(g_cat.rep.applied, 0);
    assert_int_equal(db_i64("SELECT total FROM sku WHERE sku_id='%s'", id), 150);

    sh_wire_sku none = sku_row(other, "", 1);
    char rid2[80];
    snprintf(rid2, sizeof rid2, "%s-2", rid);
    cat_call(&c, SH_WIRE_CAT_RESTOCK, &none, rid2, 5);
    assert_int_equal(g_cat.rep.status, SH_ENOTFOUND);
    assert_int_equal(g_cat.count, 0);
    assert_int_equal(db_i64("SELECT COUNT(*) FROM restock WHERE restock_id='%s'", rid2), 0);

    sh_wire_sku key;
    memset(&key, 0, sizeof key);
    assert_int_equal(
        sh_wire_str_set(key.sku_id, sizeof key.sku_id, &key.sku_id_len, id, strlen(id)), SH_OK);
    cat_call(&c, SH_WIRE_CAT_GET, &key, NULL, 0);
    assert_int_equal(g_cat.rep.status, SH_OK);
    assert_int_equal(g_cat.count, 1);
    assert_int_equal(g_cat.skus[0].total, 150);
    memset(&key, 0, sizeof key);
    assert_int_equal(
        sh_wire_str_set(key.sku_id, sizeof key.sku_id, &key.sku_id_len, other, strlen(other)),
        SH_OK);
    cat_call(&c, SH_WIRE_CAT_GET, &key, NULL, 0);
    assert_int_equal(g_cat.rep.status, SH_ENOTFOUND);
    assert_int_equal(g_cat.count, 0);

    cat_call(&c, SH_WIRE_CAT_LIST, NULL, NULL, 0);
    assert_int_equal(g_cat.rep.status, SH_OK);
    assert_true(g_cat.count >= 1);
    assert_int_equal(g_cat.count, db_i64("SELECT LEAST(COUNT(*), %d) FROM sku", SH_SKUS_MAX));
    int seen = 0;
    for (uint16_t i = 0; i < g_cat.count; i++) {
        if (strcmp(g_cat.skus[i].sku_id, id) == 0) {
            seen++;
            assert_int_equal(g_cat.skus[i].total, 150);
        }
    }
    assert_int_equal(seen, 1);
    cli_close(&c);
}

/* ==== g2. SYNC_DETAILS: a partition's details, page by page (reconcile) ================ */

static sh_wire_detail g_page[SH_WIRE_DETAILS_PAGE_MAX];

/* One SYNC_DETAILS_REQ; the reply's head in *rep, its records in g_page. */
static size_t details_call(cli *c, const char *sku, unsigned part, uint64_t after, uint32_t limit,
                           sh_wire_sync_details_rep *rep)
{
    sh_wire_sync_details_req req;
    memset(&req, 0, sizeof req);
    assert_int_equal(sh_wire_str_set(req.sku, sizeof req.sku, &req.sku_len, sku, strlen(sku)),
                     SH_OK);
    req.partition = (uint16_t)part;
    req.after_seq = after;
    req.limit = limit;
    size_t len = 0;
    assert_int_equal(sh_wire_sync_details_req_encode(g_buf, sizeof g_buf, &len, 77, &req), SH_OK);
    nng_msg *m = NULL;
    int rv = cli_call(c, g_buf, len, &m);
    if (rv != 0) {
        fail_msg("details %s/%u after %" PRIu64 ": %s", sku, part, after, nng_strerror(rv));
    }
    sh_wire_header hdr;
    assert_int_equal(sh_wire_sync_details_rep_decode(nng_msg_body(m), nng_msg_len(m), &hdr, rep,
                                                     g_page, SH_WIRE_DETAILS_PAGE_MAX),
                     SH_OK);
    nng_msg_free(m);
    assert_int_equal(hdr.req_id, 77);
    return hdr.count;
}

/* Every detail applied comes back once, in order, with its fields as written,
 * page by page; synced_seq comes with every page; nothing past the end; a
 * partition MySQL never saw answers synced 0 and no detail; a malformed
 * request is answered in the reply type, with its error. */
static void test_sync_details(void **state)
{
    (void)state;
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    sku_name(sku, sizeof sku, "det");
    cli c;
    cli_open_ok(&c, &g_main_worker, CALL_TIMEOUT_MS);
    sh_wire_ack ack = call_batch(&c, sku, 3, 1, 150, qty_mixed);
    expect_ok(&ack, sku, 3, 150);
    sh_wire_sync_details_rep rep;
    uint64_t after = 0;
    int pages = 0;
    for (; pages < 10; pages++) {
        size_t n = details_call(&c, sku, 3, after, 64, &rep);
        assert_int_equal(rep.status, SH_OK);
        assert_int_equal(rep.synced_seq, 150);
        assert_true(n <= 64);
        for (size_t i = 0; i < n; i++) {
            sh_wire_detail want;
            detail_fill(&want, after + 1 + i, qty_mixed);
            const sh_wire_detail *d = &g_page[i];
            assert_int_equal(d->seq, want.seq);
            assert_int_equal(d->qty, want.qty);
            assert_int_equal(d->sub_domain, want.sub_domain);
            assert_true(d->created_ms == want.created_ms);
            assert_string_equal(d->order_id, want.order_id);
            assert_string_equal(d->user_id, want.user_id);
        }
        if (n == 0) {
            break;
        }
        after = g_page[n - 1].seq;
    }
    assert_int_equal(after, 150);
    assert_int_equal(pages, 3); /* 64 + 64 + 22, then the empty page */
    assert_int_equal(details_call(&c, sku, 3, 149, SH_WIRE_DETAILS_PAGE_MAX, &rep), 1);
    assert_int_equal(g_page[0].seq, 150);
    assert_int_equal(details_call(&c, sku, 9, 0, 10, &rep), 0);
    assert_int_equal(rep.status, SH_OK);
    assert_int_equal(rep.synced_seq, 0);

    /* limit 0 patched into a valid request (the limit is its last 4 bytes) */
    sh_wire_sync_details_req req;
    memset(&req, 0, sizeof req);
    assert_int_equal(sh_wire_str_set(req.sku, sizeof req.sku, &req.sku_len, sku, strlen(sku)),
                     SH_OK);
    req.limit = 1;
    size_t len = 0;
    assert_int_equal(sh_wire_sync_details_req_encode(g_buf, sizeof g_buf, &len, 78, &req), SH_OK);
    memset(g_buf + len - 4, 0, 4);
    nng_msg *m = NULL;
    assert_int_equal(cli_call(&c, g_buf, len, &m), 0);
    sh_wire_header hdr;
    assert_int_equal(sh_wire_sync_details_rep_decode(nng_msg_body(m), nng_msg_len(m), &hdr, &rep,
                                                     g_page, SH_WIRE_DETAILS_PAGE_MAX),
                     SH_OK);
    nng_msg_free(m);
    assert_int_equal(hdr.req_id, 78);
    assert_int_equal(rep.status, SH_EINVAL);
    assert_int_equal(hdr.count, 0);
    /* the worker still serves */
    assert_int_equal(details_call(&c, sku, 3, 0, 1, &rep), 1);
    cli_close(&c);
}

/* ==== h. connections killed under the worker ========================================== */

/* Kills every connection of our user on our database but the test's own; returns
 * how many. Under tests/run.sh only this test's workers are connected then. */
static int kill_worker_connections(void)
{
    char sql[SQL_BYTES];
    snprintf(sql, sizeof sql,
             "SELECT ID FROM information_schema.PROCESSLIST WHERE USER='%s' AND DB='%s' AND "
             "ID <> CONNECTION_ID()",
             g_env.user, g_env.db);
    if (mysql_query(g_my, sql) != 0) {
        fail_msg("%s: %s", sql, mysql_error(g_my));
    }
    MYSQL_RES *res = mysql_store_result(g_my);
    assert_non_null(res);
    unsigned long ids[64];
    int n = 0;
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(res)) != NULL && n < 64) {
        ids[n++] = strtoul(row[0], NULL, 10);
    }
    mysql_free_result(res);
    for (int i = 0; i < n; i++) {
        char k[64];
        snprintf(k, sizeof k, "KILL %lu", ids[i]);
        if (mysql_query(g_my, k) != 0 && mysql_errno(g_my) != 1094 /* unknown thread */) {
            fail_msg("%s: %s", k, mysql_error(g_my));
        }
    }
    return n;
}

static void test_reconnect_after_kill(void **state)
{
    (void)state;
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    sku_name(sku, sizeof sku, "h");
    cli c;
    cli_open_ok(&c, &g_main_worker, CALL_TIMEOUT_MS);
    sh_wire_ack ack = call_batch(&c, sku, 0, 1, 10, qty_pos);
    expect_ok(&ack, sku, 0, 10);
    /* both worker threads hold a connection: kill them, then keep going */
    for (uint64_t round = 0; round < 4; round++) {
        assert_true(kill_worker_connections() >= 1);
        uint64_t first = 11 + round * 10;
        ack = call_batch(&c, sku, 0, first, first + 9, qty_pos);
        expect_ok(&ack, sku, 0, first + 9);
        ack = call_batch(&c, sku, 0, first, first + 9, qty_pos); /* and the same again */
        expect_ok(&ack, sku, 0, first + 9);
    }
    db_check_partition(sku, 0, 50, qty_sum(qty_pos, 1, 50), 50);
    /* prepared statements of the catalog come back too */
    assert_true(kill_worker_connections() >= 1);
    sh_wire_sku key;
    memset(&key, 0, sizeof key);
    assert_int_equal(
        sh_wire_str_set(key.sku_id, sizeof key.sku_id, &key.sku_id_len, sku, strlen(sku)), SH_OK);
    cat_call(&c, SH_WIRE_CAT_GET, &key, NULL, 0);
    assert_int_equal(g_cat.rep.status, SH_ENOTFOUND);
    ack = call_batch(&c, sku, 0, 1, 0, qty_pos);
    expect_ok(&ack, sku, 0, 50);
    cli_close(&c);
}

/* A killer thread ends the worker's connections every few ms while one sender
 * ships batches, resending on an error ack as the node does: kills land inside
 * statements and around COMMIT, and every detail must still be there once. */
typedef struct storm {
    volatile bool done;
    unsigned long spare_id; /* the test's own main connection: never killed */
    int kills;
    char err[256];
} storm;

static void *storm_killer(void *p)
{
    storm *st = p;
    MYSQL *my = mysql_init(NULL);
    if (my == NULL || mysql_options(my, MYSQL_SET_CHARSET_NAME, "utf8mb4") != 0 ||
        mysql_real_connect(my, g_env.host, g_env.user, NULL, g_env.db, (unsigned)atoi(g_env.port),
                           NULL, 0) == NULL) {
        snprintf(st->err, sizeof st->err, "killer connect: %s", my ? mysql_error(my) : "init");
        if (my != NULL) {
            mysql_close(my);
        }
        return NULL;
    }
    char sql[SQL_BYTES];
    snprintf(sql, sizeof sql,
             "SELECT ID FROM information_schema.PROCESSLIST WHERE USER='%s' AND DB='%s' AND "
             "ID NOT IN (CONNECTION_ID(), %lu)",
             g_env.user, g_env.db, st->spare_id);
    uint64_t end = sh_clock_mono_ms() + 60000; /* bound, whatever the sender does */
    while (!st->done && sh_clock_mono_ms() < end) {
        if (mysql_query(my, sql) == 0) {
            MYSQL_RES *res = mysql_store_result(my);
            MYSQL_ROW row;
            while (res != NULL && (row = mysql_fetch_row(res)) != NULL) {
                char k[64];
                snprintf(k, sizeof k, "KILL %s", row[0]);
                if (mysql_query(my, k) == 0) {
                    st->kills++;
                }
            }
            if (res != NULL) {
                mysql_free_result(res);
            }
        }
        sh_clock_sleep_ms(3 + (uint64_t)(st->kills % 7));
    }
    mysql_close(my);
    return NULL;
}

static void test_kill_storm(void **state)
{
    (void)state;
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    sku_name(sku, sizeof sku, "storm");
    const char *extra[] = {"mysql.retry_attempts_max=20", "mysql.retry_backoff_max_ms=50", NULL};
    worker w;
    worker_start(&w, NULL, extra);
    storm st;
    memset(&st, 0, sizeof st);
    st.spare_id = mysql_thread_id(g_my);
    pthread_t killer;
    assert_int_equal(pthread_create(&killer, NULL, storm_killer, &st), 0);
    cli c;
    cli_open_ok(&c, &w, CALL_TIMEOUT_MS);
    int errors = 0;
    char last_err[SH_MESSAGE_CHARS_MAX + 1] = "";
    bool stuck = false;
    for (uint64_t b = 0; b < 40 && !stuck; b++) {
        uint64_t first = b * 100 + 1;
        for (int attempt = 0;; attempt++) {
            size_t len = batch_encode(g_buf, sizeof g_buf, b, sku, 0, first, first + 99, qty_mixed);
            nng_msg *rep = NULL;
            int rv = cli_call(&c, g_buf, len, &rep);
            sh_wire_ack ack;
            memset(&ack, 0, sizeof ack);
            if (rv == 0) {
                sh_err rc = ack_of(rep, &ack);
                nng_msg_free(rep);
                if (rc == SH_OK && ack.status == SH_OK && ack.synced_seq == first + 99) {
                    break;
                }
                snprintf(last_err, sizeof last_err, "%s", ack.message);
            }
            errors++;
            if (attempt >= 30) {
                stuck = true;
                break;
            }
        }
    }
    st.done = true;
    pthread_join(killer, NULL);
    cli_close(&c);
    worker_stop(&w);
    if (st.err[0] != '\0') {
        fail_msg("%s", st.err);
    }
    if (stuck) {
        fail_msg("a batch never got an OK ack in 30 tries; last error '%s'", last_err);
    }
    print_message("kill storm: %d connections killed, %d error acks resent\n", st.kills, errors);
    assert_true(st.kills > 0);
    db_check_partition(sku, 0, 4000, qty_sum(qty_mixed, 1, 4000), 4000);
}

/* ==== i. a lost ack (fault build only) ================================================= */

static void test_dropped_ack_resent(void **state)
{
    (void)state;
    if (!g_env.fault_build) {
        fail_msg("%s/tests/stock-syncd-fault is missing: make builds it (the worker with "
                 "-DSH_FAULT_INJECTION)",
                 g_env.bin);
    }
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    sku_name(sku, sizeof sku, "i");
    worker w;
    worker_start(&w, "STOCK_FAULT_DROP_ACKS=1", NULL);
    cli c;
    cli_open_ok(&c, &w, DROP_TIMEOUT_MS);
    size_t len = batch_encode(g_buf, sizeof g_buf, 500, sku, 0, 1, 30, qty_pos);
    nng_msg *rep = NULL;
    int rv = cli_call(&c, g_buf, len, &rep);
    if (rv == 0) {
        nng_msg_free(rep);
        worker_stop(&w);
        fail_msg("the first ack was not withheld: is the fault switch compiled in?");
    }
    assert_int_equal(rv, NNG_ETIMEDOUT);
    /* applied although unanswered */
    db_check_partition(sku, 0, 30, qty_sum(qty_pos, 1, 30), 30);
    rv = cli_call(&c, g_buf, len, &rep); /* the sender's resend: same batch */
    assert_int_equal(rv, 0);
    sh_wire_ack ack;
    assert_int_equal(ack_of(rep, &ack), SH_OK);
    nng_msg_free(rep);
    expect_ok(&ack, sku, 0, 30);
    db_check_partition(sku, 0, 30, qty_sum(qty_pos, 1, 30), 30);
    cli_close(&c);
    worker_stop(&w);
}

/* ==== j. the Unix socket when host is empty ============================================ */

static void test_unix_socket(void **state)
{
    (void)state;
    if (g_env.socket[0] == '\0') {
        fail_msg("MYSQL_SOCKET is not set: the harness exports the server's socket path");
    }
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    sku_name(sku, sizeof sku, "j");
    const char *extra[] = {"mysql.host=", NULL};
    worker w;
    worker_start(&w, NULL, extra);
    cli c;
    cli_open_ok(&c, &w, CALL_TIMEOUT_MS);
    sh_wire_ack ack = call_batch(&c, sku, 0, 1, 20, qty_pos);
    expect_ok(&ack, sku, 0, 20);
    cli_close(&c);
    worker_stop(&w);
    db_check_partition(sku, 0, 20, qty_sum(qty_pos, 1, 20), 20);
}

/* ==== k. MySQL unreachable: bounded retries, error acks, still up ====================== */

static void test_mysql_down(void **state)
{
    (void)state;
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    sku_name(sku, sizeof sku, "k");
    /* port 1 on loopback: nothing listens there, connects are refused at once.
     * migrate.on_start=no: with it the worker would (rightly) refuse to start
     * without a schema it could check; this test is about serving while down. */
    const char *extra[] = {"mysql.port=1",
                           "migrate.on_start=no",
                           "mysql.retry_attempts_max=3",
                           "mysql.retry_time_max_ms=2000",
                           "mysql.retry_backoff_max_ms=50",
                           NULL};
    worker w;
    worker_spawn(&w, NULL, extra);
    cli c;
    cli_open_ok(&c, &w, CALL_TIMEOUT_MS);
    for (int i = 0; i < 2; i++) {
        uint64_t t0 = sh_clock_mono_ms();
        size_t len = batch_encode(g_buf, sizeof g_buf, 9, sku, 0, 1, 5, qty_pos);
        nng_msg *rep = NULL;
        int rv = cli_call(&c, g_buf, len, &rep);
        if (rv != 0) {
            worker_print_log(&w);
            fail_msg("no answer while MySQL is down: %s", nng_strerror(rv));
        }
        sh_wire_ack ack;
        assert_int_equal(ack_of(rep, &ack), SH_OK);
        nng_msg_free(rep);
        assert_int_equal(ack.status, SH_EMYSQL);
        assert_string_equal(ack.sku, sku);
        assert_non_null(strstr(ack.message, "gave up after 3 attempts"));
        assert_true(sh_clock_mono_ms() - t0 < 10000);
    }
    assert_true(worker_alive(&w));
    cli_close(&c);
    worker_stop(&w);
    assert_int_equal(db_i64("SELECT COUNT(*) FROM stock_partition WHERE sku_id='%s'", sku), 0);
}

/* ==== l. a duplicate key fails only its own batch, even inside a group ================= */

typedef struct grp_arg {
    const char *url;
    const char *sku;
    unsigned part;
    sh_wire_ack ack;
    int rv;
} grp_arg;

static void *grp_thread(void *p)
{
    grp_arg *a = p;
    static __thread uint8_t buf[65536];
    cli c;
    a->rv = cli_open(&c, a->url, CALL_TIMEOUT_MS);
    if (a->rv == 0) {
        size_t len = batch_encode(buf, sizeof buf, a->part, a->sku, a->part, 1, 40, qty_pos);
        nng_msg *rep = NULL;
        a->rv = cli_call(&c, buf, len, &rep);
        if (a->rv == 0) {
            a->rv = ack_of(rep, &a->ack) == SH_OK ? 0 : -1;
            nng_msg_free(rep);
        }
    }
    cli_close(&c);
    return NULL;
}

static void test_duplicate_key_in_group(void **state)
{
    (void)state;
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    sku_name(sku, sizeof sku, "l");
    /* A row the seq logic does not know about: partition 5 holds seq 7 already while
     * its synced_seq is 0. Inserting 1..40 there must fail (1062), not be skipped. */
    db_exec("INSERT INTO deduction_detail (sku_id, partition_id, seq, order_id, user_id, qty, "
            "sub_domain, created_ms) VALUES ('%s', 5, 7, 'planted', '', 1, 0, 0)",
            sku);
    const char *extra[] = {"syncd.threads=1", "apply.group_batches_max=8", NULL};
    worker w;
    worker_start(&w, NULL, extra);
    pthread_t th[GROUP_PARTITIONS];
    grp_arg args[GROUP_PARTITIONS];
    for (int i = 0; i < GROUP_PARTITIONS; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].url = w.url;
        args[i].sku = sku;
        args[i].part = (unsigned)i;
        assert_int_equal(pthread_create(&th[i], NULL, grp_thread, &args[i]), 0);
    }
    for (int i = 0; i < GROUP_PARTITIONS; i++) {
        pthread_join(th[i], NULL);
    }
    worker_stop(&w);
    for (unsigned i = 0; i < GROUP_PARTITIONS; i++) {
        if (args[i].rv != 0) {
            fail_msg("partition %u: no ack (%d)", i, args[i].rv);
        }
        if (i == 5) {
            assert_int_equal(args[i].ack.status, SH_EMYSQL);
            assert_non_null(strstr(args[i].ack.message, "1062"));
            assert_int_equal(db_details(sku, 5), 1); /* the planted row only */
            assert_int_equal(db_i64("SELECT COUNT(*) FROM stock_partition WHERE sku_id='%s' AND "
                                    "partition_id=5",
                                    sku),
                             0);
        } else {
            expect_ok(&args[i].ack, sku, i, 40);
            db_check_partition(sku, i, 40, qty_sum(qty_pos, 1, 40), 40);
        }
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_one_batch),
        cmocka_unit_test(test_resent_and_overlapping),
        cmocka_unit_test(test_identity_checked),
        cmocka_unit_test(test_gap_refused),
        cmocka_unit_test(test_malformed_messages),
        cmocka_unit_test(test_concurrent_workers),
        cmocka_unit_test(test_negative_qty),
        cmocka_unit_test(test_catalog),
        cmocka_unit_test(test_sync_details),
        cmocka_unit_test(test_reconnect_after_kill),
        cmocka_unit_test(test_kill_storm),
        cmocka_unit_test(test_dropped_ack_resent),
        cmocka_unit_test(test_unix_socket),
        cmocka_unit_test(test_mysql_down),
        cmocka_unit_test(test_duplicate_key_in_group),
    };
    return T_CMOCKA_MAIN(argc, argv, "syncd", tests, group_setup, group_teardown);
}
