/* cl_mysql.c -- design (c): one InnoDB row per SKU, one transaction per request.
 *
 * The design the seeds start from (000 6.1, 003): the stock is a MySQL row and
 * `UPDATE ... SET avail = avail - q WHERE sku = ? AND avail >= q` makes the
 * check-and-decrement atomic. Every buyer of a SKU queues on that row's lock,
 * and with innodb_flush_log_at_trx_commit=1 (as infra.sh ships it) each commit
 * waits for the redo log flush. Per request, in one transaction: INSERT the
 * detail (the unique (sku, order_id) key is the idempotency guard; its
 * auto-increment id is the seq we answer), UPDATE the row, COMMIT; zero rows
 * changed means not enough stock: ROLLBACK, 409. The detail goes first so
 * that the hot row's lock is held only for the UPDATE and the commit.
 *
 * Threads: the client library blocks, so K workers each own one connection and
 * take requests from one bounded ring (full -> 503 at once); answers go on a
 * list the loop thread drains, woken by event_active (LIBRARY-NOTES 3, the
 * hand-off). No state but the two queues is shared.
 *
 * Ids reach SQL text unescaped: the front let through only [A-Za-z0-9_.:-]
 * (shared/sh_id), which holds no quote or backslash; my_assert_sql_safe checks
 * it again. Text queries rather than prepared statements: a baseline as most
 * code writes it, and no re-prepare after a reconnect (LIBRARY-NOTES 5, 1243).
 * Deadlock (1213) and lock wait timeout (1205) roll back and retry, bounded;
 * a lost connection (2006/2013) answers 503 and reconnects on the next request. */
#include "cl_mysql.h"

#include "sh_log.h"

#include <event2/event.h>
#include <mysql.h>
#include <mysqld_error.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CL_MYSQL_WORKERS_MAX  512
#define CL_MYSQL_QUEUE_MAX    (1u << 20)
#define CL_MYSQL_TXN_ATTEMPTS 3    /* tries of one transaction on deadlock / lock wait */
#define CL_MYSQL_SQL_BYTES    512  /* one statement with ids of at most 64 chars */
#define CL_MYSQL_CLIENT_ERR   2000 /* CR_* (client side: connection) errors start here */

static const char *const cl_mysql_ddl[] = {
    "CREATE TABLE IF NOT EXISTS bench_stock ("
    " sku VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,"
    " total BIGINT NOT NULL,"
    " avail BIGINT NOT NULL,"
    " PRIMARY KEY (sku)"
    ") ENGINE=InnoDB COMMENT='stock-classic (bench only): one row per SKU, the hot row'",
    "CREATE TABLE IF NOT EXISTS bench_detail ("
    " id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,"
    " sku VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,"
    " order_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,"
    " user_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,"
    " qty INT UNSIGNED NOT NULL,"
    " created_ms BIGINT NOT NULL,"
    " PRIMARY KEY (id),"
    " UNIQUE KEY uk_bench_detail_order (sku, order_id)"
    ") ENGINE=InnoDB COMMENT='stock-classic (bench only): one row per deduction'",
};

typedef struct my_worker {
    cl_mysql *owner;
    unsigned index;
    MYSQL *db; /* NULL while down; only this worker's thread touches it once started */
    pthread_t tid;
    int started;
} my_worker;

struct cl_mysql {
    cl_mysql_config cfg;
    struct event *done_ev;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu: */
    cl_req **ring;
    uint32_t head, count;
    cl_req *done_head, *done_tail;
    int stopping;
    /* loop thread only: */
    uint64_t pending;
    my_worker *workers;
};

/* ---- one connection -------------------------------------------------------- */

static MYSQL *my_connect(const cl_mysql_config *cfg, unsigned index)
{
    MYSQL *db = mysql_init(NULL);
    if (db == NULL) {
        SH_ERROR("mysql", "mysql_init failed worker=%u", index);
        return NULL;
    }
    unsigned int t = cfg->timeout_s;
    if (mysql_options(db, MYSQL_OPT_CONNECT_TIMEOUT, &t) != 0 ||
        mysql_options(db, MYSQL_OPT_READ_TIMEOUT, &t) != 0 ||
        mysql_options(db, MYSQL_OPT_WRITE_TIMEOUT, &t) != 0 ||
        mysql_options(db, MYSQL_SET_CHARSET_NAME, "utf8mb4") != 0) {
        SH_ERROR("mysql", "mysql_options failed worker=%u", index);
        mysql_close(db);
        return NULL;
    }
    /* "localhost" would mean the Unix socket (LIBRARY-NOTES 5): the caller gives an address. */
    if (mysql_real_connect(db, cfg->host, cfg->user, cfg->password, cfg->database, cfg->port, NULL,
                           0) == NULL) {
        SH_ERROR("mysql", "connect failed worker=%u addr=%s:%u db=%s errno=%u err=%s", index,
                 cfg->host, (unsigned)cfg->port, cfg->database, mysql_errno(db), mysql_error(db));
        mysql_close(db);
        return NULL;
    }
    char sql[CL_MYSQL_SQL_BYTES];
    snprintf(sql, sizeof sql, "SET SESSION innodb_lock_wait_timeout = %u", cfg->lock_wait_s);
    if (mysql_query(db, sql) != 0 || mysql_autocommit(db, 0) != 0) {
        SH_ERROR("mysql", "session setup failed worker=%u errno=%u err=%s", index, mysql_errno(db),
                 mysql_error(db));
        mysql_close(db);
        return NULL;
    }
    return db;
}

/* Runs sql; returns 0 or the error number. A client-side error (the
 * connection is gone or broken) closes the connection. */
static unsigned my_exec(my_worker *w, const char *sql)
{
    SH_ASSERT(w->db != NULL);
    if (mysql_query(w->db, sql) == 0) {
        return 0;
    }
    unsigned err = mysql_errno(w->db);
    SH_ASSERT(err != 0);
    if (err >= CL_MYSQL_CLIENT_ERR) {
        SH_WARN("mysql", "connection lost worker=%u errno=%u err=%s", w->index, err,
                mysql_error(w->db));
        mysql_close(w->db);
        w->db = NULL;
    }
    return err;
}

static void my_rollback(my_worker *w)
{
    if (w->db != NULL && mysql_rollback(w->db) != 0) {
        SH_WARN("mysql", "rollback failed worker=%u err=%s", w->index, mysql_error(w->db));
        mysql_close(w->db); /* a session in an unknown state: start a fresh one */
        w->db = NULL;
    }
}

/* Runs a query returning at most one row of up to two integer columns. Returns
 * 1 with the row, 0 when there is none, -1 on error. Ends the transaction. */
static int my_select_row(my_worker *w, const char *sql, uint64_t *c0, uint64_t *c1)
{
    if (my_exec(w, sql) != 0) {
        my_rollback(w);
        return -1;
    }
    MYSQL_RES *res = mysql_store_result(w->db);
    if (res == NULL) {
        my_rollback(w);
        return -1;
    }
    int found = 0;
    MYSQL_ROW row = mysql_fetch_row(res);
    if (row != NULL && row[0] != NULL) {
        found = 1;
        *c0 = strtoull(row[0], NULL, 10);
        *c1 = mysql_num_fields(res) > 1 && row[1] != NULL ? strtoull(row[1], NULL, 10) : 0;
    }
    mysql_free_result(res);
    my_rollback(w);
    return found;
}

/* The front let only [A-Za-z0-9_.:-] through; SQL text relies on it. */
static void my_assert_sql_safe(const cl_req *r)
{
    SH_ASSERT(strpbrk(r->sku, "'\\\"") == NULL && strpbrk(r->order, "'\\\"") == NULL &&
              strpbrk(r->user, "'\\\"") == NULL);
}

/* ---- the two requests ------------------------------------------------------ */

/* After a duplicate key on the detail: the first outcome of this order. */
static void my_duplicate(my_worker *w, cl_req *r)
{
    char sql[CL_MYSQL_SQL_BYTES];
    snprintf(sql, sizeof sql,
             "SELECT id, qty FROM bench_detail WHERE sku = '%s' AND order_id = '%s'", r->sku,
             r->order);
    uint64_t id = 0, qty = 0;
    int found = my_select_row(w, sql, &id, &qty);
    if (found < 0) {
        cl_req_unavailable(r, "mysql error reading the order");
    } else if (found == 0) {
        cl_req_unavailable(r, "the order is being decided by another request; retry");
    } else if (qty != r->qty) {
        r->outcome = CL_OUT_CONFLICT;
    } else {
        r->outcome = CL_OUT_DUPLICATE;
        r->seq = id;
    }
}

/* After zero rows changed: sold out, or no such SKU. */
static void my_refused(my_worker *w, cl_req *r)
{
    char sql[CL_MYSQL_SQL_BYTES];
    snprintf(sql, sizeof sql, "SELECT avail FROM bench_stock WHERE sku = '%s'", r->sku);
    uint64_t avail = 0, unused = 0;
    int found = my_select_row(w, sql, &avail, &unused);
    if (found < 0) {
        cl_req_unavailable(r, "mysql error reading the stock");
    } else {
        r->outcome = found ? CL_OUT_SOLD_OUT : CL_OUT_UNKNOWN_SKU;
    }
}

static void my_deduct(my_worker *w, cl_req *r)
{
    my_assert_sql_safe(r);
    char ins[CL_MYSQL_SQL_BYTES], upd[CL_MYSQL_SQL_BYTES];
    snprintf(ins, sizeof ins,
             "INSERT INTO bench_detail (sku, order_id, user_id, qty, created_ms) "
             "VALUES ('%s', '%s', '%s', %" PRIu32 ", %" PRIu64 ")",
             r->sku, r->order, r->user, r->qty, r->wall_ms);
    snprintf(upd, sizeof upd,
             "UPDATE bench_stock SET avail = avail - %" PRIu32 " WHERE sku = '%s' AND avail >= "
             "%" PRIu32,
             r->qty, r->sku, r->qty);
    unsigned err = 0;
    for (int attempt = 0; attempt < CL_MYSQL_TXN_ATTEMPTS && w->db != NULL; attempt++) {
        r->attempts = attempt;
        if ((err = my_exec(w, ins)) != 0) {
            my_rollback(w);
            if (err == ER_DUP_ENTRY) {
                my_duplicate(w, r);
                return;
            }
            if (err == ER_LOCK_DEADLOCK || err == ER_LOCK_WAIT_TIMEOUT) {
                continue;
            }
            break;
        }
        uint64_t seq = mysql_insert_id(w->db);
        if ((err = my_exec(w, upd)) != 0) {
            my_rollback(w);
            if (err == ER_LOCK_DEADLOCK || err == ER_LOCK_WAIT_TIMEOUT) {
                continue;
            }
            break;
        }
        if (mysql_affected_rows(w->db) == 0) {
            my_rollback(w);
            my_refused(w, r);
            return;
        }
        if (mysql_commit(w->db) != 0) {
            err = mysql_errno(w->db);
            my_rollback(w);
            if (err == ER_LOCK_DEADLOCK) {
                continue;
            }
            break;
        }
        r->outcome = CL_OUT_OK;
        r->seq = seq;
        return;
    }
    cl_req_unavailable(r, "mysql transaction failed (errno %u)", err);
}

static void my_load(my_worker *w, cl_req *r)
{
    my_assert_sql_safe(r);
    char sql[CL_MYSQL_SQL_BYTES];
    snprintf(sql, sizeof sql,
             "INSERT INTO bench_stock (sku, total, avail) VALUES ('%s', %" PRId64 ", %" PRId64
             ") ON DUPLICATE KEY UPDATE total = VALUES(total), avail = VALUES(avail)",
             r->sku, r->total, r->total);
    unsigned err = my_exec(w, sql);
    if (err == 0 && mysql_commit(w->db) == 0) {
        r->outcome = CL_OUT_LOADED;
        return;
    }
    err = w->db != NULL ? mysql_errno(w->db) : err;
    my_rollback(w);
    cl_req_unavailable(r, "mysql load failed (errno %u)", err);
}

/* ---- threads --------------------------------------------------------------- */

static void *my_worker_main(void *arg)
{
    my_worker *w = arg;
    cl_mysql *m = w->owner;
    if (mysql_thread_init() != 0) {
        SH_ERROR("mysql", "mysql_thread_init failed worker=%u", w->index);
    }
    for (;;) {
        pthread_mutex_lock(&m->mu);
        while (m->count == 0 && !m->stopping) {
            pthread_cond_wait(&m->cv, &m->mu);
        }
        if (m->stopping) {
            pthread_mutex_unlock(&m->mu);
            break;
        }
        cl_req *r = m->ring[m->head];
        m->head = (m->head + 1) % m->cfg.queue_max;
        m->count--;
        pthread_mutex_unlock(&m->mu);

        if (w->db == NULL) {
            w->db = my_connect(&m->cfg, w->index);
        }
        if (w->db == NULL) {
            cl_req_unavailable(r, "mysql connection is down");
        } else if (r->kind == CL_LOAD) {
            my_load(w, r);
        } else {
            my_deduct(w, r);
        }
        SH_ASSERT(r->outcome != CL_OUT_NONE);

        pthread_mutex_lock(&m->mu);
        r->next = NULL;
        if (m->done_tail != NULL) {
            m->done_tail->next = r;
        } else {
            m->done_head = r;
        }
        m->done_tail = r;
        pthread_mutex_unlock(&m->mu);
        event_active(m->done_ev, EV_READ, 0);
    }
    mysql_thread_end();
    return NULL;
}

/* Loop thread: answer everything the workers finished. */
static void my_done_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cl_mysql *m = arg;
    pthread_mutex_lock(&m->mu);
    cl_req *r = m->done_head;
    m->done_head = m->done_tail = NULL;
    pthread_mutex_unlock(&m->mu);
    while (r != NULL) {
        cl_req *next = r->next;
        SH_ASSERT(m->pending > 0);
        m->pending--;
        r->done(r);
        r = next;
    }
}

static void my_submit(void *impl, cl_req *r)
{
    cl_mysql *m = impl;
    SH_ASSERT(m != NULL && r != NULL && r->done != NULL);
    pthread_mutex_lock(&m->mu);
    int full = m->count >= m->cfg.queue_max || m->stopping;
    if (!full) {
        m->ring[(m->head + m->count) % m->cfg.queue_max] = r;
        m->count++;
        pthread_cond_signal(&m->cv);
    }
    pthread_mutex_unlock(&m->mu);
    if (full) {
        cl_req_unavailable(r, "mysql queue is full (%u requests)", (unsigned)m->cfg.queue_max);
        r->done(r);
        return;
    }
    m->pending++;
}

static uint64_t my_pending(const void *impl)
{
    const cl_mysql *m = impl;
    return m->pending;
}

cl_backend cl_mysql_backend(cl_mysql *m)
{
    SH_ASSERT(m != NULL);
    cl_backend be = {.name = "mysql-row", .impl = m, .submit = my_submit, .pending = my_pending};
    return be;
}

/* ---- lifecycle ------------------------------------------------------------- */

sh_err cl_mysql_open(cl_mysql **out, struct event_base *base, const cl_mysql_config *cfg)
{
    SH_ASSERT(out != NULL && base != NULL && cfg != NULL && cfg->host != NULL);
    *out = NULL;
    if (cfg->workers == 0 || cfg->workers > CL_MYSQL_WORKERS_MAX || cfg->queue_max == 0 ||
        cfg->queue_max > CL_MYSQL_QUEUE_MAX) {
        SH_ERROR("mysql", "workers must be 1..%d and the queue 1..%u", CL_MYSQL_WORKERS_MAX,
                 CL_MYSQL_QUEUE_MAX);
        return SH_ERANGE;
    }
    cl_mysql *m = calloc(1, sizeof *m);
    if (m == NULL) {
        return SH_ENOMEM;
    }
    m->cfg = *cfg;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    m->ring = calloc(cfg->queue_max, sizeof *m->ring);
    m->workers = calloc(cfg->workers, sizeof *m->workers);
    m->done_ev = event_new(base, -1, EV_PERSIST, my_done_cb, m); /* never added: event_active */
    if (m->ring == NULL || m->workers == NULL || m->done_ev == NULL) {
        cl_mysql_free(m);
        return SH_ENOMEM;
    }
    /* Every session first, so a wrong port or database fails here, clearly. */
    for (uint32_t i = 0; i < cfg->workers; i++) {
        m->workers[i].owner = m;
        m->workers[i].index = i;
        m->workers[i].db = my_connect(cfg, i);
        if (m->workers[i].db == NULL) {
            cl_mysql_free(m);
            return SH_EMYSQL;
        }
    }
    for (size_t i = 0; i < sizeof cl_mysql_ddl / sizeof cl_mysql_ddl[0]; i++) {
        MYSQL *db = m->workers[0].db;
        if (mysql_query(db, cl_mysql_ddl[i]) != 0 || mysql_commit(db) != 0) {
            SH_ERROR("mysql", "creating the bench tables failed errno=%u err=%s", mysql_errno(db),
                     mysql_error(db));
            cl_mysql_free(m);
            return SH_EMYSQL;
        }
    }
    for (uint32_t i = 0; i < cfg->workers; i++) {
        if (pthread_create(&m->workers[i].tid, NULL, my_worker_main, &m->workers[i]) != 0) {
            SH_ERROR("mysql", "pthread_create failed worker=%u", (unsigned)i);
            cl_mysql_free(m);
            return SH_ENOMEM;
        }
        m->workers[i].started = 1;
    }
    SH_INFO("mysql", "mysql-row backend addr=%s:%u db=%s workers=%u queue=%u", cfg->host,
            (unsigned)cfg->port, cfg->database, (unsigned)cfg->workers, (unsigned)cfg->queue_max);
    *out = m;
    return SH_OK;
}

void cl_mysql_free(cl_mysql *m)
{
    if (m == NULL) {
        return;
    }
    pthread_mutex_lock(&m->mu);
    m->stopping = 1;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    for (uint32_t i = 0; m->workers != NULL && i < m->cfg.workers; i++) {
        if (m->workers[i].started) {
            pthread_join(m->workers[i].tid, NULL);
        }
        if (m->workers[i].db != NULL) {
            mysql_close(m->workers[i].db);
        }
    }
    /* The workers are gone: answer what they finished, then what they never took. */
    if (m->done_ev != NULL) {
        my_done_cb(-1, 0, m);
    }
    while (m->ring != NULL && m->count > 0) {
        cl_req *r = m->ring[m->head];
        m->head = (m->head + 1) % m->cfg.queue_max;
        m->count--;
        m->pending--;
        cl_req_unavailable(r, "shutting down");
        r->done(r);
    }
    SH_ASSERT(m->pending == 0);
    if (m->done_ev != NULL) {
        event_free(m->done_ev);
    }
    free(m->ring);
    free(m->workers);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    free(m);
}
