/* sw_mysql.c -- the MariaDB Connector/C wrapper: connect, classify errors, retry.
 *
 * Why it is built this way (LIBRARY-NOTES.md section 5, all verified there):
 *  - MYSQL_OPT_RECONNECT is never set (it is off by default in Connector/C 3.x).
 *    Its silent reconnect inside a transaction comes back with autocommit=1 and
 *    the session settings gone, so a half-done transaction could go on in
 *    autocommit mode. Instead a lost connection (2006, 2013, 2055, a killed or
 *    shut-down connection, any client-side error) closes the handle, and the
 *    whole transaction runs again on a fresh connection set up from scratch.
 *  - After a reconnect old prepared statement handles answer 1243, so handles
 *    live in a table tied to the connection: mysql_close() detaches them (the
 *    connector marks them closed), we free them and prepare again on first use.
 *  - "localhost" means the Unix socket to the client; the host is taken from the
 *    config as given (127.0.0.1 over TCP) and the socket is used only when the
 *    host is empty, with the protocol forced either way so neither can surprise.
 *  - The server's built-in charset is latin1: utf8mb4 is set explicitly and
 *    checked after connecting.
 *  - 1213 (deadlock: the server already rolled back the whole transaction) and
 *    1205 (lock wait: only the statement was rolled back) both end in ROLLBACK and
 *    a new attempt.
 * Every loop is bounded: attempts_max attempts and retry_time_max_ms per
 * transaction, with an exponential, jittered pause capped at backoff_max_ms.
 *
 * The session runs READ COMMITTED: every decision of the apply transaction comes
 * from a locking read of the partition row (which sees the latest committed
 * version at any isolation level), and READ COMMITTED takes no gap locks, so two
 * workers racing to create the same partition row do not deadlock on the gap. */
#include "sw_mysql.h"

#include "sh_clock.h"
#include "sh_log.h"

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SM_MOD               "mysql"
#define SM_PAUSE_SLICE_MS    20 /* a pause checks the stop flag this often, ms */
#define SM_SQL_MODE          "STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION"
#define SM_CHARSET           "utf8mb4"
#define SM_SESSION_SQL_BYTES 256
#define SM_HOST_BYTES        64
#define SM_SOCKET_BYTES      108
#define SM_USER_BYTES        64
#define SM_PASSWORD_BYTES    128
#define SM_DATABASE_BYTES    64
/* MySQL 8 closes an idle connection with this error; MariaDB's headers lack it. */
#define SM_ER_CLIENT_INTERACTION_TIMEOUT 4031

typedef struct sm_stmt {
    const char *sql; /* identity: the caller's static string */
    MYSQL_STMT *st;
} sm_stmt;

struct sw_mysql {
    sw_mysql_opts opts; /* string pointers below point into this struct */
    char host[SM_HOST_BYTES];
    char socket[SM_SOCKET_BYTES];
    char user[SM_USER_BYTES];
    char password[SM_PASSWORD_BYTES];
    char database[SM_DATABASE_BYTES];
    MYSQL *conn; /* NULL when not connected */
    bool ever_connected;
    sm_stmt stmts[SW_MYSQL_STMTS_MAX];
    size_t nstmts;
    unsigned err_no;
    char err[SW_MYSQL_ERROR_CHARS_MAX + 1];
    uint64_t rng; /* xorshift state for the pause jitter */
};

/* ---- errors ------------------------------------------------------------------ */

void sw_mysql_set_error(sw_mysql *m, const char *fmt, ...)
{
    SH_ASSERT(m != NULL && fmt != NULL);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err, sizeof m->err, fmt, ap);
    va_end(ap);
    m->err_no = 0;
}

const char *sw_mysql_error(const sw_mysql *m)
{
    SH_ASSERT(m != NULL);
    return m->err;
}

/* Which way an error number goes. Client errors (2000..2999) all mean the
 * connection's state is unknown, so the connection is thrown away. */
static sw_db sm_classify(unsigned e)
{
    switch (e) {
    case ER_LOCK_DEADLOCK:
    case ER_LOCK_WAIT_TIMEOUT:
        return SW_DB_RETRY;
    case ER_CONNECTION_KILLED:
    case ER_SERVER_SHUTDOWN:
    case ER_QUERY_INTERRUPTED:
    case ER_UNKNOWN_STMT_HANDLER:
    case ER_NEW_ABORTING_CONNECTION:
    case ER_CON_COUNT_ERROR:
    case ER_OUT_OF_RESOURCES:
        return SW_DB_LOST;
    default:
        break;
    }
    if (e == SM_ER_CLIENT_INTERACTION_TIMEOUT) {
        return SW_DB_LOST;
    }
    if ((e >= CR_MIN_ERROR && e <= CR_MAX_ERROR) || (e >= CER_MIN_ERROR && e <= CER_MAX_ERROR)) {
        return SW_DB_LOST; /* 2006, 2013, 2055, 2002, 2003, 2014, ... */
    }
    return SW_DB_FAIL;
}

static sw_db sm_fail_conn(sw_mysql *m, const char *what)
{
    unsigned e = m->conn != NULL ? mysql_errno(m->conn) : CR_SERVER_GONE_ERROR;
    snprintf(m->err, sizeof m->err, "%s: mysql %u: %s", what, e,
             m->conn != NULL ? mysql_error(m->conn) : "not connected");
    m->err_no = e;
    return sm_classify(e);
}

static sw_db sm_fail_stmt(sw_mysql *m, MYSQL_STMT *st, const char *what)
{
    unsigned e = mysql_stmt_errno(st);
    snprintf(m->err, sizeof m->err, "%s: mysql %u: %s", what, e, mysql_stmt_error(st));
    m->err_no = e;
    return sm_classify(e);
}

/* ---- connection -------------------------------------------------------------- */

static void sm_disconnect(sw_mysql *m)
{
    if (m->conn != NULL) {
        /* mysql_close detaches every statement of the connection (the connector
         * marks them closed), so closing them afterwards only frees memory and
         * sends nothing on a possibly dead socket. */
        mysql_close(m->conn);
        m->conn = NULL;
    }
    for (size_t i = 0; i < m->nstmts; i++) {
        if (m->stmts[i].st != NULL) {
            mysql_stmt_close(m->stmts[i].st);
            m->stmts[i].st = NULL;
        }
    }
    m->nstmts = 0;
}

/* One statement of the session setup on a fresh connection. */
static sh_err sm_setup_exec(sw_mysql *m, const char *sql)
{
    if (mysql_real_query(m->conn, sql, strlen(sql)) != 0) {
        sm_fail_conn(m, "session setup");
        return SH_EMYSQL;
    }
    return SH_OK;
}

sh_err sw_mysql_connect(sw_mysql *m)
{
    SH_ASSERT(m != NULL);
    sm_disconnect(m);
    MYSQL *c = mysql_init(NULL);
    if (c == NULL) {
        sw_mysql_set_error(m, "mysql_init: out of memory");
        return SH_EMYSQL;
    }
    unsigned connect_s = m->opts.connect_timeout_s;
    unsigned rw_s = m->opts.rw_timeout_s;
    int use_socket = m->host[0] == '\0';
    unsigned protocol = use_socket ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
    if (mysql_options(c, MYSQL_OPT_CONNECT_TIMEOUT, &connect_s) != 0 ||
        mysql_options(c, MYSQL_OPT_READ_TIMEOUT, &rw_s) != 0 ||
        mysql_options(c, MYSQL_OPT_WRITE_TIMEOUT, &rw_s) != 0 ||
        mysql_options(c, MYSQL_SET_CHARSET_NAME, SM_CHARSET) != 0 ||
        mysql_options(c, MYSQL_OPT_PROTOCOL, &protocol) != 0) {
        sw_mysql_set_error(m, "mysql_options refused a setting");
        mysql_close(c);
        return SH_EMYSQL;
    }
    /* MYSQL_OPT_RECONNECT is deliberately never touched: see the file comment. */
    if (mysql_real_connect(c, use_socket ? NULL : m->host, m->user, m->password, m->database,
                           use_socket ? 0 : m->opts.port, use_socket ? m->socket : NULL,
                           0) == NULL) {
        unsigned e = mysql_errno(c);
        snprintf(m->err, sizeof m->err, "connect %s: mysql %u: %s",
                 use_socket ? m->socket : m->host, e, mysql_error(c));
        m->err_no = e;
        mysql_close(c);
        return SH_EMYSQL;
    }
    m->conn = c;
    const char *cs = mysql_character_set_name(c);
    if (cs == NULL || strcmp(cs, SM_CHARSET) != 0) {
        sw_mysql_set_error(m, "connection charset is %s, not " SM_CHARSET, cs ? cs : "?");
        sm_disconnect(m);
        return SH_EMYSQL;
    }
    if (mysql_autocommit(c, 0) != 0) {
        sm_fail_conn(m, "autocommit off");
        sm_disconnect(m);
        return SH_EMYSQL;
    }
    char sql[SM_SESSION_SQL_BYTES];
    snprintf(sql, sizeof sql,
             "SET SESSION innodb_lock_wait_timeout = %u, SESSION sql_mode = '" SM_SQL_MODE "'",
             m->opts.lock_wait_timeout_s);
    if (sm_setup_exec(m, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED") != SH_OK ||
        sm_setup_exec(m, sql) != SH_OK) {
        sm_disconnect(m);
        return SH_EMYSQL;
    }
    if (m->ever_connected) {
        atomic_fetch_add(&m->opts.stats->reconnects, 1);
        SH_INFO(SM_MOD, "reconnected thread_id=%lu", mysql_thread_id(c));
    } else {
        SH_INFO(SM_MOD, "connected thread_id=%lu server=%s", mysql_thread_id(c),
                mysql_get_server_info(c));
    }
    m->ever_connected = true;
    m->err[0] = '\0';
    m->err_no = 0;
    return SH_OK;
}

static int sm_copy(char *dst, size_t cap, const char *src)
{
    if (src == NULL) {
        dst[0] = '\0';
        return 1;
    }
    size_t n = strlen(src);
    if (n >= cap) {
        return 0;
    }
    memcpy(dst, src, n + 1);
    return 1;
}

sh_err sw_mysql_open(sw_mysql **out, const sw_mysql_opts *opts)
{
    SH_ASSERT(out != NULL && opts != NULL && opts->stats != NULL && opts->stop != NULL);
    SH_ASSERT(opts->attempts_max >= 1);
    *out = NULL;
    sw_mysql *m = calloc(1, sizeof *m);
    if (m == NULL) {
        return SH_ENOMEM;
    }
    m->opts = *opts;
    if (!sm_copy(m->host, sizeof m->host, opts->host) ||
        !sm_copy(m->socket, sizeof m->socket, opts->socket) ||
        !sm_copy(m->user, sizeof m->user, opts->user) ||
        !sm_copy(m->password, sizeof m->password, opts->password) ||
        !sm_copy(m->database, sizeof m->database, opts->database)) {
        free(m);
        return SH_EINVAL;
    }
    m->opts.host = m->host;
    m->opts.socket = m->socket;
    m->opts.user = m->user;
    m->opts.password = m->password;
    m->opts.database = m->database;
    m->rng = (sh_clock_mono_ns() ^ (uint64_t)(uintptr_t)m) | 1u;
    *out = m;
    return SH_OK;
}

void sw_mysql_close(sw_mysql *m)
{
    if (m == NULL) {
        return;
    }
    sm_disconnect(m);
    free(m);
}

unsigned long sw_mysql_thread_id(const sw_mysql *m)
{
    SH_ASSERT(m != NULL);
    return m->conn != NULL ? mysql_thread_id(m->conn) : 0;
}

size_t sw_mysql_escape(sw_mysql *m, char *dst, const char *src, size_t len)
{
    SH_ASSERT(m != NULL && m->conn != NULL && dst != NULL && (src != NULL || len == 0));
    unsigned long n = mysql_real_escape_string(m->conn, dst, src, (unsigned long)len);
    /* (unsigned long)-1 only under NO_BACKSLASH_ESCAPES, which our sql_mode excludes. */
    SH_ASSERT(n != (unsigned long)-1 && n <= 2 * len);
    return n;
}

/* ---- statements -------------------------------------------------------------- */

sw_db sw_mysql_exec(sw_mysql *m, const char *sql, size_t len, uint64_t *affected)
{
    SH_ASSERT(m != NULL && sql != NULL);
    if (m->conn == NULL) {
        sw_mysql_set_error(m, "not connected");
        return SW_DB_LOST;
    }
    if (mysql_real_query(m->conn, sql, (unsigned long)len) != 0) {
        return sm_fail_conn(m, "query");
    }
    if (mysql_field_count(m->conn) > 0) {
        /* A statement with a result set where none was expected: drain it. */
        MYSQL_RES *res = mysql_store_result(m->conn);
        if (res != NULL) {
            mysql_free_result(res);
        }
    }
    if (affected != NULL) {
        my_ulonglong a = mysql_affected_rows(m->conn);
        *affected = a == (my_ulonglong)-1 ? 0 : (uint64_t)a;
    }
    return SW_DB_OK;
}

/* The prepared handle for sql on this connection, preparing it on first use. */
static sw_db sm_stmt_get(sw_mysql *m, const char *sql, size_t nparams, size_t ncols,
                         MYSQL_STMT **out)
{
    for (size_t i = 0; i < m->nstmts; i++) {
        if (m->stmts[i].sql == sql) {
            *out = m->stmts[i].st;
            return SW_DB_OK;
        }
    }
    SH_ASSERT(m->nstmts < SW_MYSQL_STMTS_MAX); /* a fixed set of static statements */
    MYSQL_STMT *st = mysql_stmt_init(m->conn);
    if (st == NULL) {
        return sm_fail_conn(m, "stmt_init");
    }
    if (mysql_stmt_prepare(st, sql, (unsigned long)strlen(sql)) != 0) {
        sw_db v = sm_fail_stmt(m, st, "prepare");
        mysql_stmt_close(st);
        return v;
    }
    /* Our own SQL against our own argument lists: a mismatch is a bug. */
    SH_ASSERT(mysql_stmt_param_count(st) == nparams);
    SH_ASSERT(mysql_stmt_field_count(st) == ncols);
    m->stmts[m->nstmts].sql = sql;
    m->stmts[m->nstmts].st = st;
    m->nstmts++;
    *out = st;
    return SW_DB_OK;
}

static void sm_bind_param(MYSQL_BIND *b, const sw_param *p, unsigned long *len)
{
    memset(b, 0, sizeof *b);
    switch (p->type) {
    case SW_P_STR:
        b->buffer_type = MYSQL_TYPE_STRING;
        b->buffer = (void *)(uintptr_t)p->s;
        b->buffer_length = p->len;
        *len = p->len;
        b->length = len;
        break;
    case SW_P_I64:
        b->buffer_type = MYSQL_TYPE_LONGLONG;
        b->buffer = (void *)(uintptr_t)&p->i64;
        break;
    case SW_P_U64:
        b->buffer_type = MYSQL_TYPE_LONGLONG;
        b->buffer = (void *)(uintptr_t)&p->u64;
        b->is_unsigned = 1;
        break;
    default:
        sh_assert_fail("known parameter type", __FILE__, __LINE__);
    }
}

static void sm_bind_col(MYSQL_BIND *b, sw_col *c)
{
    memset(b, 0, sizeof *b);
    c->len = 0;
    c->is_null = 0;
    b->is_null = (my_bool *)&c->is_null;
    b->length = &c->len;
    switch (c->type) {
    case SW_P_STR:
        SH_ASSERT(c->buf != NULL && c->cap >= 2);
        b->buffer_type = MYSQL_TYPE_STRING;
        b->buffer = c->buf;
        b->buffer_length = c->cap - 1; /* room for our NUL */
        break;
    case SW_P_I64:
        b->buffer_type = MYSQL_TYPE_LONGLONG;
        b->buffer = &c->i64;
        break;
    case SW_P_U64:
        b->buffer_type = MYSQL_TYPE_LONGLONG;
        b->buffer = &c->u64;
        b->is_unsigned = 1;
        break;
    default:
        sh_assert_fail("known column type", __FILE__, __LINE__);
    }
}

/* Fetches every row of an executed SELECT. */
static sw_db sm_fetch(sw_mysql *m, MYSQL_STMT *st, sw_col *cols, size_t ncols, sw_row_fn fn,
                      void *arg, uint64_t *rows)
{
    MYSQL_BIND rb[SW_MYSQL_COLS_MAX];
    for (size_t i = 0; i < ncols; i++) {
        sm_bind_col(&rb[i], &cols[i]);
    }
    if (mysql_stmt_bind_result(st, rb) != 0) {
        return sm_fail_stmt(m, st, "bind_result");
    }
    if (mysql_stmt_store_result(st) != 0) {
        return sm_fail_stmt(m, st, "store_result");
    }
    sw_db v = SW_DB_OK;
    uint64_t n = 0;
    for (;;) {
        int r = mysql_stmt_fetch(st);
        if (r == MYSQL_NO_DATA) {
            break;
        }
        if (r == 1) {
            v = sm_fail_stmt(m, st, "fetch");
            break;
        }
        if (r == MYSQL_DATA_TRUNCATED) {
            sw_mysql_set_error(m, "fetch: a value is longer than its buffer");
            v = SW_DB_FAIL;
            break;
        }
        bool too_long = false;
        for (size_t i = 0; i < ncols; i++) {
            if (cols[i].type == SW_P_STR) {
                if (cols[i].len >= cols[i].cap) { /* a value from MySQL: checked, not asserted */
                    too_long = true;
                    break;
                }
                cols[i].buf[cols[i].len] = '\0';
            }
        }
        if (too_long) {
            sw_mysql_set_error(m, "fetch: a value is longer than its buffer");
            v = SW_DB_FAIL;
            break;
        }
        n++;
        if (fn != NULL) {
            v = fn(arg, cols, ncols);
            if (v != SW_DB_OK) {
                break;
            }
        }
    }
    mysql_stmt_free_result(st);
    if (rows != NULL) {
        *rows = n;
    }
    return v;
}

sw_db sw_mysql_stmt(sw_mysql *m, const char *sql, const sw_param *params, size_t nparams,
                    sw_col *cols, size_t ncols, sw_row_fn fn, void *arg, uint64_t *rows,
                    uint64_t *affected)
{
    SH_ASSERT(m != NULL && sql != NULL);
    SH_ASSERT(nparams <= SW_MYSQL_PARAMS_MAX && ncols <= SW_MYSQL_COLS_MAX);
    SH_ASSERT((params != NULL || nparams == 0) && (cols != NULL || ncols == 0));
    if (rows != NULL) {
        *rows = 0;
    }
    if (affected != NULL) {
        *affected = 0;
    }
    if (m->conn == NULL) {
        sw_mysql_set_error(m, "not connected");
        return SW_DB_LOST;
    }
    MYSQL_STMT *st = NULL;
    sw_db v = sm_stmt_get(m, sql, nparams, ncols, &st);
    if (v != SW_DB_OK) {
        return v;
    }
    MYSQL_BIND pb[SW_MYSQL_PARAMS_MAX];
    unsigned long lens[SW_MYSQL_PARAMS_MAX];
    for (size_t i = 0; i < nparams; i++) {
        sm_bind_param(&pb[i], &params[i], &lens[i]);
    }
    if (nparams > 0 && mysql_stmt_bind_param(st, pb) != 0) {
        return sm_fail_stmt(m, st, "bind_param");
    }
    if (mysql_stmt_execute(st) != 0) {
        return sm_fail_stmt(m, st, "execute");
    }
    if (ncols > 0) {
        return sm_fetch(m, st, cols, ncols, fn, arg, rows);
    }
    if (affected != NULL) {
        my_ulonglong a = mysql_stmt_affected_rows(st);
        *affected = a == (my_ulonglong)-1 ? 0 : (uint64_t)a;
    }
    return SW_DB_OK;
}

/* ---- transactions ------------------------------------------------------------ */

/* ROLLBACK; a connection that cannot even roll back is thrown away (the server
 * rolls back an open transaction when the connection goes). */
static void sm_rollback(sw_mysql *m)
{
    if (m->conn != NULL && mysql_rollback(m->conn) != 0) {
        SH_DEBUG(SM_MOD, "rollback failed, dropping the connection err=%u", mysql_errno(m->conn));
        sm_disconnect(m);
    }
}

int sw_mysql_pause(const atomic_bool *stop, uint32_t ms)
{
    SH_ASSERT(stop != NULL);
    uint64_t end = sh_clock_mono_ms() + ms;
    for (;;) {
        if (atomic_load(stop)) {
            return 0;
        }
        uint64_t now = sh_clock_mono_ms();
        if (now >= end) {
            return 1;
        }
        uint64_t left = end - now;
        sh_clock_sleep_ms(left < SM_PAUSE_SLICE_MS ? left : SM_PAUSE_SLICE_MS);
    }
}

/* A pause in [b/2, b]: spreads out workers that deadlocked on the same rows. */
static uint32_t sm_jitter(sw_mysql *m, uint32_t b)
{
    m->rng ^= m->rng << 13;
    m->rng ^= m->rng >> 7;
    m->rng ^= m->rng << 17;
    uint32_t half = b / 2;
    return half + (uint32_t)(m->rng % (uint64_t)(b - half + 1));
}

static const char *sm_verdict_name(sw_db v)
{
    switch (v) {
    case SW_DB_OK:
        return "ok";
    case SW_DB_ABORT:
        return "abort";
    case SW_DB_RETRY:
        return "retry";
    case SW_DB_LOST:
        return "lost";
    case SW_DB_FAIL:
        return "fail";
    }
    return "?";
}

sh_err sw_mysql_tx(sw_mysql *m, sw_tx_body body, void *arg, sw_db *verdict)
{
    SH_ASSERT(m != NULL && body != NULL);
    sw_db dummy;
    if (verdict == NULL) {
        verdict = &dummy;
    }
    uint64_t start_ms = sh_clock_mono_ms();
    uint32_t backoff_ms = SW_MYSQL_BACKOFF_MIN_MS;
    for (uint32_t attempt = 1;; attempt++) {
        sw_db v;
        *verdict = SW_DB_LOST;
        if (m->conn == NULL && sw_mysql_connect(m) != SH_OK) {
            v = SW_DB_LOST;
        } else {
            v = body(m, arg);
            SH_ASSERT(v >= SW_DB_OK && v <= SW_DB_FAIL);
            if (v == SW_DB_OK) {
                if (mysql_commit(m->conn) == 0) {
                    atomic_fetch_add(&m->opts.stats->transactions, 1);
                    *verdict = SW_DB_OK;
                    return SH_OK;
                }
                v = sm_fail_conn(m, "commit");
            }
        }
        *verdict = v;
        switch (v) {
        case SW_DB_ABORT:
            sm_rollback(m);
            return SH_OK;
        case SW_DB_FAIL:
            sm_rollback(m);
            SH_WARN(SM_MOD, "transaction failed err=\"%s\"", m->err);
            return SH_EMYSQL;
        case SW_DB_RETRY:
            sm_rollback(m);
            break;
        case SW_DB_LOST:
            if (m->conn != NULL) {
                SH_WARN(SM_MOD, "connection lost, reconnecting err=\"%s\"", m->err);
            }
            sm_disconnect(m);
            break;
        case SW_DB_OK:
            sh_assert_fail("commit handled above", __FILE__, __LINE__);
        }
        uint64_t elapsed_ms = sh_clock_mono_ms() - start_ms;
        if (attempt >= m->opts.attempts_max || elapsed_ms >= m->opts.retry_time_max_ms) {
            char why[SW_MYSQL_ERROR_CHARS_MAX + 1];
            snprintf(why, sizeof why, "%s", m->err);
            sw_mysql_set_error(m, "gave up after %u attempts in %llu ms: %s", attempt,
                               (unsigned long long)elapsed_ms, why);
            SH_WARN(SM_MOD, "transaction gave up attempts=%u last=%s err=\"%s\"", attempt,
                    sm_verdict_name(v), why);
            return SH_EMYSQL;
        }
        atomic_fetch_add(&m->opts.stats->tx_retries, 1);
        SH_DEBUG(SM_MOD, "retrying transaction attempt=%u verdict=%s err=\"%s\"", attempt,
                 sm_verdict_name(v), m->err);
        if (!sw_mysql_pause(m->opts.stop, sm_jitter(m, backoff_ms))) {
            sw_mysql_set_error(m, "shutting down");
            return SH_ECLOSED;
        }
        backoff_ms =
            backoff_ms >= m->opts.backoff_max_ms / 2 ? m->opts.backoff_max_ms : backoff_ms * 2;
    }
}

void sw_verdict_set(sw_verdict *v, sh_err status, const char *fmt, ...)
{
    if (v->status != SH_OK) {
        return; /* the first reason stands */
    }
    v->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->message, sizeof v->message, fmt, ap);
    va_end(ap);
}

sw_db sw_mysql_snapshot_begin(sw_mysql *m)
{
    static const char level[] = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ";
    static const char begin[] = "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY";
    sw_db v = sw_mysql_exec(m, level, sizeof level - 1, NULL);
    return v == SW_DB_OK ? sw_mysql_exec(m, begin, sizeof begin - 1, NULL) : v;
}
