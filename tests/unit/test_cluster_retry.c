/* test_cluster_retry.c -- the router's retry rule against a fake Redis node.
 *
 * The rule (sh_cluster.h): a command is sent again only when it surely did
 * not run (a routing reply, or no byte of it written); once bytes went out, a
 * timeout or a dropped connection gives SH_EUNKNOWN and no second send. A real
 * cluster cannot be made to time out or drop a connection at an exact point,
 * so the node here is a fake: a thread on 127.0.0.1 (ephemeral port) that
 * speaks just enough RESP. It answers CLUSTER SLOTS with itself owning every
 * slot (or a dead port, for the refused case), ASKING, SCRIPT LOAD and ECHO on
 * its own, and the test command (INCR or EVALSHA) from a per-test script of
 * steps: reply, sleep then reply, close after reading, reply then close. It
 * counts what it received, which is what the tests assert on. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "t_cmocka.h"

#include "sh_clock.h"
#include "sh_cluster.h"
#include "sh_err.h"
#include "sh_log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TIMEOUT_MS     200               /* the router's timeout in these tests */
#define LATE_MS        (3 * TIMEOUT_MS)  /* a "late" reply comes this long after */
#define BOUND_MS       (10 * TIMEOUT_MS) /* no call may take longer (3x margin) */
#define STEPS_MAX      8
#define CONNS_MAX      32
#define ARGS_MAX       16
#define REPLY_BYTES    256
#define CONN_BUF_BYTES 8192
#define POLL_MS        20
#define FAKE_SHA       "0123456789abcdef0123456789abcdef01234567"
#define SETTLE_MS      100 /* time for a FIN to reach the router's socket */

_Static_assert(sizeof FAKE_SHA - 1 == 40, "a script id is 40 hex characters");

/* ==== the fake node ======================================================== */

typedef enum fk_act {
    FK_REPLY = 0,   /* send the reply */
    FK_LATE,        /* sleep LATE_MS, then send the reply (to a router that gave up) */
    FK_CLOSE,       /* close the connection after reading the command, no reply */
    FK_REPLY_CLOSE, /* send the reply, then close: an idle pooled connection dies */
} fk_act;

typedef struct fk_step {
    fk_act act;
    char reply[REPLY_BYTES]; /* raw RESP */
} fk_step;

typedef struct fake {
    int listen_fd;
    int port;
    int slots_port; /* the port CLUSTER SLOTS names as the owner of every slot */
    pthread_t acceptor;
    pthread_mutex_t mu;
    bool stop;
    fk_step steps[STEPS_MAX];
    int step_count;
    int step_next;
    int conn_count;
    pthread_t conns[CONNS_MAX];
    int conn_fds[CONNS_MAX];
    /* what was received */
    int n_cmd; /* INCR and EVALSHA: the commands under test */
    int n_asking;
    int n_script_load;
    int n_echo;
    int n_slots;
} fake;

typedef struct fk_conn {
    fake *f;
    int fd;
} fk_conn;

static bool fk_stopping(fake *f)
{
    pthread_mutex_lock(&f->mu);
    bool stop = f->stop;
    pthread_mutex_unlock(&f->mu);
    return stop;
}

static void fk_send(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n <= 0) {
            return; /* the router closed it: expected after a timeout */
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* Parses one RESP array of bulk strings from buf[0..len). Returns the bytes
 * it used, 0 when incomplete, -1 when malformed. */
static long fk_parse(const char *buf, size_t len, int *argc, const char **argv, size_t *argvlen)
{
    const char *p = buf, *end = buf + len;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL) {
        return 0;
    }
    if (*p != '*') {
        return -1;
    }
    int n = atoi(p + 1);
    if (n < 1 || n > ARGS_MAX) {
        return -1;
    }
    p = nl + 1;
    for (int k = 0; k < n; k++) {
        nl = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
        if (nl == NULL) {
            return 0;
        }
        if (*p != '$') {
            return -1;
        }
        long blen = atol(p + 1);
        p = nl + 1;
        if (blen < 0 || end - p < blen + 2) {
            return blen < 0 ? -1 : 0;
        }
        argv[k] = p;
        argvlen[k] = (size_t)blen;
        p += blen + 2;
    }
    *argc = n;
    return (long)(p - buf);
}

static bool fk_is(const char *arg, size_t len, const char *word)
{
    return len == strlen(word) && strncasecmp(arg, word, len) == 0;
}

/* Answers one command; false when the connection is to close. */
static bool fk_answer(fake *f, int fd, int argc, const char **argv, const size_t *argvlen)
{
    char out[REPLY_BYTES * 2];
    if (fk_is(argv[0], argvlen[0], "CLUSTER")) {
        pthread_mutex_lock(&f->mu);
        f->n_slots++;
        pthread_mutex_unlock(&f->mu);
        int n =
            snprintf(out, sizeof out,
                     "*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:%d\r\n$40\r\n%s\r\n",
                     f->slots_port, FAKE_SHA);
        fk_send(fd, out, (size_t)n);
        return true;
    }
    if (fk_is(argv[0], argvlen[0], "ASKING")) {
        pthread_mutex_lock(&f->mu);
        f->n_asking++;
        pthread_mutex_unlock(&f->mu);
        fk_send(fd, "+OK\r\n", 5);
        return true;
    }
    if (fk_is(argv[0], argvlen[0], "SCRIPT")) {
        pthread_mutex_lock(&f->mu);
        f->n_script_load++;
        pthread_mutex_unlock(&f->mu);
        const char *r = "$40\r\n" FAKE_SHA "\r\n";
        fk_send(fd, r, strlen(r));
        return true;
    }
    if (fk_is(argv[0], argvlen[0], "ECHO") && argc == 2) {
        pthread_mutex_lock(&f->mu);
        f->n_echo++;
        pthread_mutex_unlock(&f->mu);
        int n = snprintf(out, sizeof out, "$%zu\r\n%.*s\r\n", argvlen[1], (int)argvlen[1], argv[1]);
        fk_send(fd, out, (size_t)n);
        return true;
    }
    if (!fk_is(argv[0], argvlen[0], "INCR") && !fk_is(argv[0], argvlen[0], "EVALSHA")) {
        fk_send(fd, "-ERR unknown command\r\n", 22);
        return true;
    }
    fk_step step = {FK_REPLY, "+OK\r\n"}; /* past the script */
    pthread_mutex_lock(&f->mu);
    f->n_cmd++;
    if (f->step_next < f->step_count) {
        step = f->steps[f->step_next++];
    }
    pthread_mutex_unlock(&f->mu);
    switch (step.act) {
    case FK_REPLY:
        fk_send(fd, step.reply, strlen(step.reply));
        return true;
    case FK_LATE:
        sh_clock_sleep_ms(LATE_MS);
        fk_send(fd, step.reply, strlen(step.reply));
        return true;
    case FK_CLOSE:
        return false;
    case FK_REPLY_CLOSE:
        fk_send(fd, step.reply, strlen(step.reply));
        return false;
    }
    return false;
}

static void *fk_conn_main(void *arg)
{
    fk_conn *cn = arg;
    fake *f = cn->f;
    int fd = cn->fd;
    free(cn);
    char *buf = malloc(CONN_BUF_BYTES);
    size_t len = 0;
    bool open = buf != NULL;
    while (open && !fk_stopping(f)) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, POLL_MS) <= 0) {
            continue;
        }
        ssize_t n = recv(fd, buf + len, CONN_BUF_BYTES - len, 0);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        for (;;) {
            int argc = 0;
            const char *argv[ARGS_MAX];
            size_t argvlen[ARGS_MAX];
            long used = fk_parse(buf, len, &argc, argv, argvlen);
            if (used < 0) {
                open = false;
                break;
            }
            if (used == 0) {
                break;
            }
            open = fk_answer(f, fd, argc, argv, argvlen);
            memmove(buf, buf + used, len - (size_t)used);
            len -= (size_t)used;
            if (!open) {
                break;
            }
        }
    }
    shutdown(fd, SHUT_RDWR);
    free(buf);
    return NULL;
}

static void *fk_accept_main(void *arg)
{
    fake *f = arg;
    while (!fk_stopping(f)) {
        struct pollfd pfd = {f->listen_fd, POLLIN, 0};
        if (poll(&pfd, 1, POLL_MS) <= 0) {
            continue;
        }
        int fd = accept(f->listen_fd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        fk_conn *cn = malloc(sizeof *cn);
        pthread_mutex_lock(&f->mu);
        bool room = cn != NULL && f->conn_count < CONNS_MAX;
        if (room) {
            cn->f = f;
            cn->fd = fd;
            f->conn_fds[f->conn_count] = fd;
            if (pthread_create(&f->conns[f->conn_count], NULL, fk_conn_main, cn) == 0) {
                f->conn_count++;
            } else {
                room = false;
            }
        }
        pthread_mutex_unlock(&f->mu);
        if (!room) {
            free(cn);
            close(fd);
        }
    }
    return NULL;
}

/* A port with nothing listening: bound, read back, closed. */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* Starts a fake node; slots_port 0 makes it the owner of every slot. */
static fake *fake_start(int slots_port)
{
    fake *f = calloc(1, sizeof *f);
    assert_non_null(f);
    pthread_mutex_init(&f->mu, NULL);
    f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->listen_fd >= 0);
    int one = 1;
    setsockopt(f->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->listen_fd, 16), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(f->listen_fd, (struct sockaddr *)&sa, &sl), 0);
    f->port = ntohs(sa.sin_port);
    f->slots_port = slots_port != 0 ? slots_port : f->port;
    assert_int_equal(pthread_create(&f->acceptor, NULL, fk_accept_main, f), 0);
    return f;
}

static void fake_stop(fake *f)
{
    pthread_mutex_lock(&f->mu);
    f->stop = true;
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->acceptor, NULL);
    for (int i = 0; i < f->conn_count; i++) {
        pthread_join(f->conns[i], NULL);
        close(f->conn_fds[i]);
    }
    close(f->listen_fd);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static void fake_step(fake *f, fk_act act, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fake_step(fake *f, fk_act act, const char *fmt, ...)
{
    pthread_mutex_lock(&f->mu);
    assert_true(f->step_count < STEPS_MAX);
    fk_step *s = &f->steps[f->step_count++];
    s->act = act;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->reply, sizeof s->reply, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&f->mu);
}

static int fake_count(fake *f, const int *counter)
{
    pthread_mutex_lock(&f->mu);
    int n = *counter;
    pthread_mutex_unlock(&f->mu);
    return n;
}

/* ==== fixture and helpers ================================================== */

/* Each test gets a fake node and a router opened on it; the teardown runs
 * even when an assertion failed, so threads and sockets never leak. */
typedef struct fixture {
    fake *f;
    sh_cluster *c;
} fixture;

static int fixture_open(void **state, int slots_port)
{
    fixture *x = calloc(1, sizeof *x);
    assert_non_null(x);
    x->f = fake_start(slots_port);
    char seed[64];
    snprintf(seed, sizeof seed, "127.0.0.1:%d", x->f->port);
    assert_int_equal(sh_cluster_open(&x->c, seed, TIMEOUT_MS), SH_OK);
    *state = x;
    return 0;
}

static int setup_owner(void **state)
{
    return fixture_open(state, 0);
}

/* CLUSTER SLOTS names a port where nothing listens. */
static int setup_refused(void **state)
{
    return fixture_open(state, dead_port());
}

static int teardown(void **state)
{
    fixture *x = *state;
    sh_cluster_close(x->c);
    fake_stop(x->f);
    free(x);
    return 0;
}

static sh_err incr(sh_cluster *c, redisReply **r)
{
    const char *argv[2] = {"INCR", "k"};
    const size_t argvlen[2] = {4, 1};
    return sh_cluster_command(c, "k", 1, 2, argv, argvlen, r);
}

static void expect_status(redisReply *r, const char *want)
{
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    assert_string_equal(r->str, want);
    freeReplyObject(r);
}

static void expect_integer(redisReply *r, long long want)
{
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, want);
    freeReplyObject(r);
}

static uint64_t unknown_count(const sh_cluster *c)
{
    sh_cluster_stats st;
    sh_cluster_stats_get(c, &st);
    return st.unknown;
}

/* The call gave SH_EUNKNOWN and no reply, the node received the command
 * once (never sent again), and stats.unknown counts `unknown` in all. */
static void expect_unknown_once(const fixture *x, sh_err rc, const redisReply *r, uint64_t unknown)
{
    assert_int_equal(rc, SH_EUNKNOWN);
    assert_null(r);
    assert_int_equal(fake_count(x->f, &x->f->n_cmd), 1);
    assert_int_equal(unknown_count(x->c), unknown);
}

static sh_err evalsha(sh_cluster *c, int id, redisReply **r)
{
    const char *keys[1] = {"k"};
    const size_t keylens[1] = {1};
    return sh_cluster_evalsha(c, id, 1, keys, keylens, 0, NULL, NULL, r);
}

static int script_add(const fixture *x)
{
    int id = -1;
    assert_int_equal(sh_cluster_script_add(x->c, "return 7", &id), SH_OK);
    assert_int_equal(fake_count(x->f, &x->f->n_script_load), 1);
    return id;
}

/* ==== routing replies: sent again ========================================== */

/* The first answer is `first` (a routing reply), the second +OK: the
 * command is received twice and the caller sees +OK. */
static void check_resent(void **state, const char *first)
{
    fixture *x = *state;
    fake_step(x->f, FK_REPLY, "%s\r\n", first);
    fake_step(x->f, FK_REPLY, "+OK\r\n");
    redisReply *r = NULL;
    uint64_t t0 = sh_clock_mono_ms();
    assert_int_equal(incr(x->c, &r), SH_OK);
    assert_true(sh_clock_mono_ms() - t0 < BOUND_MS);
    expect_status(r, "OK");
    assert_int_equal(fake_count(x->f, &x->f->n_cmd), 2);
    assert_int_equal(unknown_count(x->c), 0);
}

/* MOVED and ASK name the node itself: the map gains nothing, the rule is the same. */
static void test_moved_resent(void **state)
{
    fixture *x = *state;
    char first[REPLY_BYTES];
    snprintf(first, sizeof first, "-MOVED 1234 127.0.0.1:%d", x->f->port);
    check_resent(state, first);
    sh_cluster_stats st;
    sh_cluster_stats_get(x->c, &st);
    assert_int_equal(st.moved, 1);
}

static void test_ask_resent_after_asking(void **state)
{
    fixture *x = *state;
    char first[REPLY_BYTES];
    snprintf(first, sizeof first, "-ASK 1234 127.0.0.1:%d", x->f->port);
    check_resent(state, first);
    assert_int_equal(fake_count(x->f, &x->f->n_asking), 1);
}

static void test_tryagain_resent(void **state)
{
    check_resent(state, "-TRYAGAIN Multiple keys request during rehashing of slot");
}

static void test_clusterdown_resent(void **state)
{
    check_resent(state, "-CLUSTERDOWN The cluster is down");
}

static void test_loading_resent(void **state)
{
    check_resent(state, "-LOADING Redis is loading the dataset in memory");
}

static void test_masterdown_resent(void **state)
{
    check_resent(state, "-MASTERDOWN Link with MASTER is down and "
                        "replica-serve-stale-data is set to 'no'.");
}

static void test_readonly_resent(void **state)
{
    check_resent(state, "-READONLY You can't write against a read only replica.");
}

/* An ordinary error reply is the command's answer: returned, not sent again. */
static void test_error_reply_is_final(void **state)
{
    fixture *x = *state;
    fake_step(x->f, FK_REPLY, "-ERR wrong\r\n");
    redisReply *r = NULL;
    assert_int_equal(incr(x->c, &r), SH_OK);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_string_equal(r->str, "ERR wrong");
    freeReplyObject(r);
    assert_int_equal(fake_count(x->f, &x->f->n_cmd), 1);
}

/* ==== after bytes went out: unknown, never sent again ====================== */

static void test_timeout_is_unknown(void **state)
{
    fixture *x = *state;
    fake_step(x->f, FK_LATE, ":1\r\n");
    fake_step(x->f, FK_REPLY, "+SECOND\r\n");
    redisReply *r = NULL;
    uint64_t t0 = sh_clock_mono_ms();
    sh_err rc = incr(x->c, &r);
    uint64_t elapsed_ms = sh_clock_mono_ms() - t0;
    expect_unknown_once(x, rc, r, 1);
    assert_true(elapsed_ms >= TIMEOUT_MS / 2 && elapsed_ms < LATE_MS);
    /* The next command gets its own answer on a new connection, not the
     * late ":1" of the one that timed out. */
    assert_int_equal(incr(x->c, &r), SH_OK);
    expect_status(r, "SECOND");
    assert_int_equal(fake_count(x->f, &x->f->n_cmd), 2);
}

static void test_drop_after_read_is_unknown(void **state)
{
    fixture *x = *state;
    fake_step(x->f, FK_CLOSE, "%s", "");
    redisReply *r = NULL;
    sh_err rc = incr(x->c, &r);
    expect_unknown_once(x, rc, r, 1);
    assert_string_equal(sh_strerror(SH_EUNKNOWN), "outcome unknown: the command may have run");
}

/* ==== stale and refused connections: safe to send (again) ================== */

/* The first INCR is answered with `first` (and maybe a close); once that
 * reached the router, the second finds its pooled connection unusable,
 * reconnects, and runs once. */
static void check_replaced(void **state, fk_act act, const char *first)
{
    fixture *x = *state;
    fake_step(x->f, act, "%s", first);
    fake_step(x->f, FK_REPLY, "+SECOND\r\n");
    redisReply *r = NULL;
    assert_int_equal(incr(x->c, &r), SH_OK);
    expect_status(r, "FIRST");
    sh_clock_sleep_ms(SETTLE_MS);
    sh_cluster_stats before, after;
    sh_cluster_stats_get(x->c, &before);
    assert_int_equal(incr(x->c, &r), SH_OK);
    expect_status(r, "SECOND");
    sh_cluster_stats_get(x->c, &after);
    assert_int_equal(fake_count(x->f, &x->f->n_cmd), 2);
    assert_int_equal(after.reconnects, before.reconnects + 1);
    assert_int_equal(after.unknown, 0);
}

/* The node closes an idle pooled connection (a kill, a failover). */
static void test_stale_connection_reconnects(void **state)
{
    check_replaced(state, FK_REPLY_CLOSE, "+FIRST\r\n");
}

/* Bytes no command asked for on a pooled connection: out of sync. */
static void test_unasked_bytes_reconnect(void **state)
{
    check_replaced(state, FK_REPLY, "+FIRST\r\n+EXTRA\r\n");
}

/* The slot's owner refuses connections: retried within the bound, and the
 * error says the command did not run. */
static void test_refused_is_not_unknown(void **state)
{
    fixture *x = *state;
    redisReply *r = NULL;
    sh_cluster_stats before, after;
    sh_cluster_stats_get(x->c, &before);
    uint64_t t0 = sh_clock_mono_ms();
    sh_err rc = incr(x->c, &r);
    assert_true(sh_clock_mono_ms() - t0 < BOUND_MS);
    assert_true(rc == SH_EIO || rc == SH_ECLUSTER);
    assert_null(r);
    sh_cluster_stats_get(x->c, &after);
    assert_true(after.io_errors >= before.io_errors + 2); /* tried more than once */
    assert_int_equal(after.unknown, 0);

    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", x->f->slots_port);
    const char *argv[1] = {"PING"};
    const size_t argvlen[1] = {4};
    assert_int_equal(sh_cluster_node_command(x->c, addr, 1, argv, argvlen, &r), SH_EIO);
    assert_null(r);
    assert_int_equal(fake_count(x->f, &x->f->n_cmd), 0);
}

/* ==== sh_cluster_node_command ============================================== */

static void test_node_command_timeout_is_unknown(void **state)
{
    fixture *x = *state;
    fake_step(x->f, FK_LATE, ":1\r\n");
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", x->f->port);
    const char *argv[2] = {"INCR", "k"};
    const size_t argvlen[2] = {4, 1};
    redisReply *r = NULL;
    sh_err rc = sh_cluster_node_command(x->c, addr, 2, argv, argvlen, &r);
    expect_unknown_once(x, rc, r, 1);
    assert_int_equal(sh_cluster_node_command(x->c, addr, 2, argv, argvlen, &r), SH_OK);
    expect_status(r, "OK");
}

/* ==== sh_cluster_evalsha =================================================== */

static void test_evalsha_noscript_reloads(void **state)
{
    fixture *x = *state;
    int id = script_add(x);
    fake_step(x->f, FK_REPLY, "-NOSCRIPT No matching script. Please use EVAL.\r\n");
    fake_step(x->f, FK_REPLY, ":7\r\n");
    redisReply *r = NULL;
    assert_int_equal(evalsha(x->c, id, &r), SH_OK);
    expect_integer(r, 7);
    assert_int_equal(fake_count(x->f, &x->f->n_cmd), 2);
    assert_int_equal(fake_count(x->f, &x->f->n_script_load), 2);
}

static void test_evalsha_moved_resent(void **state)
{
    fixture *x = *state;
    int id = script_add(x);
    fake_step(x->f, FK_REPLY, "-MOVED 3999 127.0.0.1:%d\r\n", x->f->port);
    fake_step(x->f, FK_REPLY, ":7\r\n");
    redisReply *r = NULL;
    assert_int_equal(evalsha(x->c, id, &r), SH_OK);
    expect_integer(r, 7);
    assert_int_equal(fake_count(x->f, &x->f->n_cmd), 2);
}

static void check_evalsha_unknown(void **state, fk_act act)
{
    fixture *x = *state;
    int id = script_add(x);
    fake_step(x->f, act, ":7\r\n");
    redisReply *r = NULL;
    sh_err rc = evalsha(x->c, id, &r);
    expect_unknown_once(x, rc, r, 1);
}

static void test_evalsha_timeout_is_unknown(void **state)
{
    check_evalsha_unknown(state, FK_LATE);
}

static void test_evalsha_drop_is_unknown(void **state)
{
    check_evalsha_unknown(state, FK_CLOSE);
}

/* ==== sh_cluster_pipeline ================================================== */

#define PIPE_N 3

typedef struct pipe_args {
    const char *argv[PIPE_N][2];
    size_t argvlen[PIPE_N][2];
    sh_cluster_cmd cmds[PIPE_N];
} pipe_args;

/* cmds[incr_at] is INCR k, the others ECHO e<i>. */
static void pipe_fill(pipe_args *p, int incr_at)
{
    static const char *const echoes[PIPE_N] = {"e0", "e1", "e2"};
    for (int i = 0; i < PIPE_N; i++) {
        p->argv[i][0] = i == incr_at ? "INCR" : "ECHO";
        p->argv[i][1] = i == incr_at ? "k" : echoes[i];
        p->argvlen[i][0] = 4;
        p->argvlen[i][1] = strlen(p->argv[i][1]);
        p->cmds[i] = (sh_cluster_cmd){
            p->argv[i][1], p->argvlen[i][1], 2, p->argv[i], p->argvlen[i], NULL, SH_OK};
    }
}

static void expect_echo(sh_cluster_cmd *cmd, const char *want)
{
    assert_int_equal(cmd->rc, SH_OK);
    assert_non_null(cmd->reply);
    assert_int_equal(cmd->reply->type, REDIS_REPLY_STRING);
    assert_string_equal(cmd->reply->str, want);
    freeReplyObject(cmd->reply);
    cmd->reply = NULL;
}

/* Runs [ECHO e0, INCR k, ECHO e2]: every entry gets its reply, INCR +want. */
static void pipe_expect_ok(const fixture *x, const char *want)
{
    pipe_args p;
    pipe_fill(&p, 1);
    assert_int_equal(sh_cluster_pipeline(x->c, p.cmds, PIPE_N), SH_OK);
    expect_echo(&p.cmds[0], "e0");
    assert_int_equal(p.cmds[1].rc, SH_OK);
    expect_status(p.cmds[1].reply, want);
    expect_echo(&p.cmds[2], "e2");
}

static void test_pipeline_routing_resent(void **state)
{
    fixture *x = *state;
    fake_step(x->f, FK_REPLY, "-MOVED 1234 127.0.0.1:%d\r\n", x->f->port);
    fake_step(x->f, FK_REPLY, "-TRYAGAIN Multiple keys\r\n");
    pipe_expect_ok(x, "OK");
    assert_int_equal(fake_count(x->f, &x->f->n_cmd), 3);
    assert_int_equal(fake_count(x->f, &x->f->n_echo), 2);
}

/* The read of the middle entry times out: it and the entry written after it
 * on the same connection are unknown; the one before has its reply. */
static void test_pipeline_timeout_is_unknown(void **state)
{
    fixture *x = *state;
    fake_step(x->f, FK_LATE, ":1\r\n");
    pipe_args p;
    pipe_fill(&p, 1);
    sh_err rc = sh_cluster_pipeline(x->c, p.cmds, PIPE_N);
    expect_echo(&p.cmds[0], "e0");
    expect_unknown_once(x, p.cmds[2].rc, p.cmds[2].reply, 2);
    expect_unknown_once(x, p.cmds[1].rc, p.cmds[1].reply, 2);
    assert_int_equal(rc, SH_EUNKNOWN);
    pipe_expect_ok(x, "OK"); /* on a new connection */
}

/* The connection drops after the last entry was read: the first two have
 * their replies, the last is unknown. */
static void test_pipeline_drop_is_unknown(void **state)
{
    fixture *x = *state;
    fake_step(x->f, FK_CLOSE, "%s", "");
    pipe_args p;
    pipe_fill(&p, 2);
    sh_err rc = sh_cluster_pipeline(x->c, p.cmds, PIPE_N);
    expect_echo(&p.cmds[0], "e0");
    expect_echo(&p.cmds[1], "e1");
    expect_unknown_once(x, p.cmds[2].rc, p.cmds[2].reply, 1);
    assert_int_equal(rc, SH_EUNKNOWN);
}

static void test_pipeline_stale_connection_reconnects(void **state)
{
    fixture *x = *state;
    fake_step(x->f, FK_REPLY_CLOSE, "+FIRST\r\n");
    fake_step(x->f, FK_REPLY, "+SECOND\r\n");
    redisReply *r = NULL;
    assert_int_equal(incr(x->c, &r), SH_OK);
    expect_status(r, "FIRST");
    sh_clock_sleep_ms(SETTLE_MS);
    pipe_expect_ok(x, "SECOND");
    assert_int_equal(fake_count(x->f, &x->f->n_cmd), 2);
    assert_int_equal(fake_count(x->f, &x->f->n_echo), 2);
    assert_int_equal(unknown_count(x->c), 0);
}

static void test_pipeline_refused_is_not_unknown(void **state)
{
    fixture *x = *state;
    pipe_args p;
    pipe_fill(&p, 1);
    uint64_t t0 = sh_clock_mono_ms();
    sh_err rc = sh_cluster_pipeline(x->c, p.cmds, PIPE_N);
    assert_true(sh_clock_mono_ms() - t0 < BOUND_MS);
    assert_true(rc != SH_OK && rc != SH_EUNKNOWN);
    for (int i = 0; i < PIPE_N; i++) {
        sh_err e = p.cmds[i].rc;
        assert_true(e == SH_EIO || e == SH_ECLUSTER || e == SH_ETIMEDOUT);
        assert_null(p.cmds[i].reply);
    }
    assert_int_equal(unknown_count(x->c), 0);
    assert_int_equal(fake_count(x->f, &x->f->n_cmd), 0);
}

static void test_pipeline_noscript_reloads(void **state)
{
    fixture *x = *state;
    int id = script_add(x);
    fake_step(x->f, FK_REPLY, "-NOSCRIPT No matching script. Please use EVAL.\r\n");
    fake_step(x->f, FK_REPLY, ":7\r\n");
    const char *argv[4] = {"EVALSHA", sh_cluster_script_sha(x->c, id), "1", "k"};
    const size_t argvlen[4] = {7, 40, 1, 1};
    sh_cluster_cmd cmd = {"k", 1, 4, argv, argvlen, NULL, SH_OK};
    assert_int_equal(sh_cluster_pipeline(x->c, &cmd, 1), SH_OK);
    expect_integer(cmd.reply, 7);
    assert_int_equal(fake_count(x->f, &x->f->n_cmd), 2);
    assert_int_equal(fake_count(x->f, &x->f->n_script_load), 2);
}

#define T(fn)         cmocka_unit_test_setup_teardown(fn, setup_owner, teardown)
#define T_REFUSED(fn) cmocka_unit_test_setup_teardown(fn, setup_refused, teardown)

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN); /* hiredis writes with write(2) */
    /* Quiet by default: the router warns on every case these tests provoke. */
    const char *level = getenv("TEST_LOG_LEVEL");
    int lv = level != NULL ? sh_log_level_parse(level) : -1;
    sh_log_init("test", lv >= 0 ? (sh_log_level)lv : SH_LOG_ERROR, 2);
    const struct CMUnitTest tests[] = {
        T(test_moved_resent),
        T(test_ask_resent_after_asking),
        T(test_tryagain_resent),
        T(test_clusterdown_resent),
        T(test_loading_resent),
        T(test_masterdown_resent),
        T(test_readonly_resent),
        T(test_error_reply_is_final),
        T(test_timeout_is_unknown),
        T(test_drop_after_read_is_unknown),
        T(test_stale_connection_reconnects),
        T(test_unasked_bytes_reconnect),
        T_REFUSED(test_refused_is_not_unknown),
        T(test_node_command_timeout_is_unknown),
        T(test_evalsha_noscript_reloads),
        T(test_evalsha_moved_resent),
        T(test_evalsha_timeout_is_unknown),
        T(test_evalsha_drop_is_unknown),
        T(test_pipeline_routing_resent),
        T(test_pipeline_timeout_is_unknown),
        T(test_pipeline_drop_is_unknown),
        T(test_pipeline_stale_connection_reconnects),
        T_REFUSED(test_pipeline_refused_is_not_unknown),
        T(test_pipeline_noscript_reloads),
    };
    return T_CMOCKA_MAIN(argc, argv, "cluster_retry", tests, NULL, NULL);
}
