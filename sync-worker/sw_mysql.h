/* sw_mysql.h -- one MySQL/MariaDB connection and the transaction loop around it.
 *
 * The only module that includes <mysql.h>: it knows the client's quirks
 * (LIBRARY-NOTES.md section 5) so the rest of the worker does not. A connection
 * belongs to one thread; nothing here is shared between threads except the
 * counters in sw_stats and the stop flag, both atomics.
 *
 * Callers write a transaction as a body function that issues statements and
 * returns a sw_db verdict; sw_mysql_tx() runs it with autocommit off, commits,
 * and on a lost connection or a deadlock rolls back, reconnects if needed and
 * runs the whole body again, a bounded number of times. Bodies must therefore be
 * restartable: reset their outputs at the top, and keep every decision on what
 * they read inside the transaction. */
#ifndef SW_MYSQL_H
#define SW_MYSQL_H

#include "sh_err.h"
#include "sw_stats.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SW_MYSQL_ERROR_CHARS_MAX 200 /* last error text kept, "mysql 1062: Duplicate ..." */
#define SW_MYSQL_STMTS_MAX       24  /* distinct prepared statements one connection keeps */
#define SW_MYSQL_PARAMS_MAX      16  /* parameters of one prepared statement */
#define SW_MYSQL_COLS_MAX        16  /* result columns of one prepared statement */
#define SW_MYSQL_BACKOFF_MIN_MS  10  /* first pause before a retry, ms; doubles up to the cap */

typedef struct sw_mysql sw_mysql;

typedef struct sw_mysql_opts {
    const char *host;   /* "" = use socket; never "localhost" semantics by accident */
    const char *socket; /* used when host is "" */
    unsigned port;
    const char *user;
    const char *password;
    const char *database;
    unsigned connect_timeout_s;
    unsigned rw_timeout_s;
    unsigned lock_wait_timeout_s;
    uint32_t backoff_max_ms;    /* cap of the pause between attempts */
    uint32_t attempts_max;      /* attempts at one transaction, >= 1 */
    uint32_t retry_time_max_ms; /* no new attempt after this much time in one sw_mysql_tx */
    const atomic_bool *stop;    /* when set, retries stop at the next pause (shutdown) */
    sw_stats *stats;            /* reconnects and retries are counted here */
} sw_mysql_opts;

/* Verdict of one statement or of a transaction body. */
typedef enum sw_db {
    SW_DB_OK = 0, /* statement ran; body: commit */
    SW_DB_ABORT,  /* body only: roll back; the outcome is a business value in the body's output */
    SW_DB_RETRY,  /* deadlock (1213) or lock wait timeout (1205): roll back, run the body again */
    SW_DB_LOST,   /* connection lost or never made: reconnect, run the body again */
    SW_DB_FAIL,   /* an error no retry fixes (duplicate key, bad value): roll back, give up */
} sw_db;

/* A parameter of a prepared statement. The string is not copied; it must live
 * until the statement ran. */
typedef enum sw_ptype { SW_P_STR = 1, SW_P_I64, SW_P_U64 } sw_ptype;

typedef struct sw_param {
    sw_ptype type;
    const char *s;
    unsigned long len;
    int64_t i64;
    uint64_t u64;
} sw_param;

static inline sw_param sw_p_str(const char *s, size_t len)
{
    sw_param p = {SW_P_STR, s, (unsigned long)len, 0, 0};
    return p;
}
static inline sw_param sw_p_i64(int64_t v)
{
    sw_param p = {SW_P_I64, NULL, 0, v, 0};
    return p;
}
static inline sw_param sw_p_u64(uint64_t v)
{
    sw_param p = {SW_P_U64, NULL, 0, 0, v};
    return p;
}

/* A result column of a prepared SELECT. STR columns need buf/cap from the caller;
 * len is the value's length (a value longer than cap - 1 is an error, never cut).
 * is_null is set for SQL NULL. */
typedef struct sw_col {
    sw_ptype type;
    char *buf;
    unsigned long cap;
    unsigned long len;
    int64_t i64;
    uint64_t u64;
    char is_null;
} sw_col;

/* Called once per fetched row with cols filled; return SW_DB_OK to go on, any
 * other verdict stops the fetch and becomes the query's verdict. */
typedef sw_db (*sw_row_fn)(void *arg, const sw_col *cols, size_t ncols);

/* A transaction body: statements on m, outputs in arg. */
typedef sw_db (*sw_tx_body)(sw_mysql *m, void *arg);

/* Allocates a connection object with a copy of opts (strings are copied). Does
 * not connect: the first sw_mysql_tx or sw_mysql_connect does. SH_ENOMEM or
 * SH_EINVAL (a string too long). */
sh_err sw_mysql_open(sw_mysql **out, const sw_mysql_opts *opts);

/* Closes the connection and its statements, frees m. NULL is a no-op. */
void sw_mysql_close(sw_mysql *m);

/* Connects now (one attempt, no retry) and sets the session up. SH_OK, or
 * SH_EMYSQL with the reason in sw_mysql_error(). */
sh_err sw_mysql_connect(sw_mysql *m);

/* Runs body in one transaction until it commits or gives up; *verdict (may be
 * NULL) gets the last verdict:
 *   body OK    -> COMMIT; SH_OK, verdict OK
 *   body ABORT -> ROLLBACK; SH_OK, verdict ABORT (nothing was written)
 *   RETRY/LOST -> ROLLBACK (or reconnect), pause, run body again: at most
 *                 attempts_max attempts and retry_time_max_ms in all; then
 *                 SH_EMYSQL, verdict RETRY or LOST (the database is unwell)
 *   body FAIL  -> ROLLBACK; SH_EMYSQL, verdict FAIL (this body cannot succeed)
 *   stop set   -> SH_ECLOSED at the next pause, verdict RETRY or LOST
 * A COMMIT that loses the connection has an unknown outcome; the body runs again,
 * which is why every body must be idempotent against its own committed effect.
 * On SH_EMYSQL/SH_ECLOSED sw_mysql_error() says why. */
sh_err sw_mysql_tx(sw_mysql *m, sw_tx_body body, void *arg, sw_db *verdict);

/* Runs a text statement (no result set expected). *affected may be NULL. Inside a
 * body only. */
sw_db sw_mysql_exec(sw_mysql *m, const char *sql, size_t len, uint64_t *affected);

/* Runs the prepared statement whose text is sql (prepared on first use on this
 * connection and again after a reconnect; the pointer identifies it, so pass a
 * static string). With cols (a SELECT) every row is fetched and handed to fn
 * (fn NULL: the values of the last row stay in cols); *rows counts them. Without
 * cols, *affected gets the affected rows. rows/affected may be NULL. */
sw_db sw_mysql_stmt(sw_mysql *m, const char *sql, const sw_param *params, size_t nparams,
                    sw_col *cols, size_t ncols, sw_row_fn fn, void *arg, uint64_t *rows,
                    uint64_t *affected);

/* Escapes src[0..len) for a quoted SQL literal into dst (at least 2 * len + 1
 * bytes) in the connection's charset; returns the escaped length. Connected
 * only (inside a body). */
size_t sw_mysql_escape(sw_mysql *m, char *dst, const char *src, size_t len);

/* Sleeps ms in slices of a few ms; returns 1 after the full pause, 0 as soon
 * as *stop is set (shutdown). Any thread. */
int sw_mysql_pause(const atomic_bool *stop, uint32_t ms);

/* Records a body's own failure reason (e.g. "synced_seq moved") as the last error. */
void sw_mysql_set_error(sw_mysql *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The last error, "" when none. Valid until the next call on m. */
const char *sw_mysql_error(const sw_mysql *m);

/* What a read-only request answers besides rows: SH_OK, or the first reason it
 * was refused (later reasons do not replace it). */
typedef struct sw_verdict {
    sh_err status;
    char message[SH_MESSAGE_CHARS_MAX + 1];
} sw_verdict;

/* Starts a read-only REPEATABLE READ transaction with a consistent snapshot
 * (the session runs READ COMMITTED; SET TRANSACTION applies to the next
 * transaction only, so call it first in a sw_mysql_tx body): every SELECT
 * after it reads the same instant. The body then returns SW_DB_ABORT. */
sw_db sw_mysql_snapshot_begin(sw_mysql *m);

/* Sets v's status and message unless a refusal is already recorded. */
void sw_verdict_set(sw_verdict *v, sh_err status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The server's thread id of the current connection, 0 when not connected. */
unsigned long sw_mysql_thread_id(const sw_mysql *m);

#endif
