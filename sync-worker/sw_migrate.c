/* sw_migrate.c -- the schema migration runner: lock, read the version, apply what is above it.
 *
 * Why it is built this way:
 *  - Its own connection, opened without a default database: the database may
 *    not exist yet (a fresh server), and its name comes from mysql.database, so
 *    the migrations never name it; the runner creates it and selects it with USE.
 *  - One named lock (GET_LOCK) for the whole run, not a transaction: DDL
 *    commits implicitly in MariaDB, so no transaction can hold a migration
 *    together. The lock belongs to the connection, which is why a lost
 *    connection starts the whole run over on a new one (lock, read, apply)
 *    instead of going on where it stopped, and why sw_mysql_tx (which would
 *    reconnect inside a body) is not used here.
 *  - The version row of a migration is inserted after all its statements
 *    succeeded and committed at once; migrations are idempotent (IF NOT EXISTS,
 *    IF EXISTS), so a crash between a statement and the row re-runs them.
 *  - Statements are split here rather than with the client's multi-statement
 *    mode, so a failure names the statement, and so the limit on one statement
 *    (SH_MIGRATION_STATEMENT_BYTES_MAX) is ours: a line whose last non-blank
 *    character is ';' ends a statement; whole-line comments ("--", "#") and
 *    blank lines are dropped, so a ';' in them splits nothing. A ';' inside a
 *    string at the end of a line, or a trailing comment after the ';', is not
 *    supported: write migrations so that neither happens.
 * The retry loop is bounded by the connection's attempts_max and
 * retry_time_max_ms, like every other transaction of the worker. */
#include "sw_migrate.h"

#include "sh_clock.h"
#include "sh_limits.h"
#include "sh_log.h"
#include "sw_migrations.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MG_MOD                "migrate"
#define MG_SQL_BYTES          256 /* CREATE DATABASE / USE with a 64-char name */
#define MG_DATABASE_CHARS_MAX 64

static const char MG_SQL_LOCK[] = "SELECT GET_LOCK('" SW_MIGRATE_LOCK_NAME "', ?)";
static const char MG_SQL_UNLOCK[] = "SELECT RELEASE_LOCK('" SW_MIGRATE_LOCK_NAME "')";
static const char MG_SQL_HAS_TABLE[] =
    "SELECT COUNT(*) FROM information_schema.tables "
    "WHERE table_schema = DATABASE() AND table_name = 'schema_version'";
static const char MG_SQL_VERSION[] = "SELECT COALESCE(MAX(version), 0) FROM schema_version";
static const char MG_SQL_RECORD[] = "INSERT INTO schema_version (version) VALUES (?)";

/* The migrations of this run: the compiled ones, plus the test-only extra. */
typedef struct mg_list {
    const sw_migration *items[SH_MIGRATIONS_MAX + 1];
    size_t n;
    sw_migration extra; /* fault-injection builds only */
    char *extra_sql;
} mg_list;

static void mg_why(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void mg_why(char *why, size_t whylen, const char *fmt, ...)
{
    if (whylen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

/* ==== FAULT INJECTION (builds with -DSH_FAULT_INJECTION only) ===================
 * STOCK_FAULT_MIGRATION_EXTRA=FILE in the environment: FILE is read at the start
 * of every run and applied as one more migration, version count + 1, named
 * "test_extra". The tests use it to upgrade a database with a real step without
 * shipping a test migration in sql/migrations. Release builds ignore it. */
#ifdef SH_FAULT_INJECTION
static sh_err mg_extra_load(mg_list *l, char *why, size_t whylen)
{
    const char *path = getenv("STOCK_FAULT_MIGRATION_EXTRA");
    if (path == NULL || path[0] == '\0') {
        return SH_OK;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        mg_why(why, whylen, "STOCK_FAULT_MIGRATION_EXTRA: cannot open %s", path);
        return SH_EIO;
    }
    l->extra_sql = malloc(SH_MIGRATION_BYTES_MAX + 1);
    if (l->extra_sql == NULL) {
        fclose(f);
        return SH_ENOMEM;
    }
    size_t n = fread(l->extra_sql, 1, SH_MIGRATION_BYTES_MAX + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > SH_MIGRATION_BYTES_MAX) {
        mg_why(why, whylen, "STOCK_FAULT_MIGRATION_EXTRA: %s unreadable or too long", path);
        return SH_EIO;
    }
    l->extra_sql[n] = '\0';
    l->extra.version = (uint32_t)sw_migrations_count + 1;
    l->extra.name = "test_extra";
    l->extra.sql = l->extra_sql;
    l->extra.len = n;
    l->items[l->n++] = &l->extra;
    SH_WARN(MG_MOD, "fault injection: extra migration version=%u file=%s", l->extra.version, path);
    return SH_OK;
}
#else
static sh_err mg_extra_load(mg_list *l, char *why, size_t whylen)
{
    (void)l;
    (void)why;
    (void)whylen;
    return SH_OK;
}
#endif

static sh_err mg_list_init(mg_list *l, char *why, size_t whylen)
{
    SH_ASSERT(sw_migrations_count >= 1 && sw_migrations_count <= SH_MIGRATIONS_MAX);
    memset(l, 0, sizeof *l);
    for (size_t i = 0; i < sw_migrations_count; i++) {
        /* The generator numbers them 1..count; a mismatch is a build bug. */
        SH_ASSERT(sw_migrations[i].version == i + 1 && sw_migrations[i].sql != NULL);
        l->items[l->n++] = &sw_migrations[i];
    }
    return mg_extra_load(l, why, whylen);
}

static void mg_list_fini(mg_list *l)
{
    free(l->extra_sql);
    l->extra_sql = NULL;
}

uint32_t sw_migrate_known(void)
{
    uint32_t known = (uint32_t)sw_migrations_count;
#ifdef SH_FAULT_INJECTION
    const char *path = getenv("STOCK_FAULT_MIGRATION_EXTRA");
    if (path != NULL && path[0] != '\0') {
        known++;
    }
#endif
    SH_ASSERT(known >= 1 && known <= SH_MIGRATIONS_MAX + 1);
    return known;
}

/* ---- statements ---------------------------------------------------------------- */

/* Copies the next statement of text[*pos..len) into buf (without its ';'),
 * dropping blank lines and whole-line comments. Returns 1 with *n > 0 bytes,
 * 0 when only blanks and comments are left, -1 when a statement would pass cap - 1. */
static int mg_next_stmt(const char *text, size_t len, size_t *pos, char *buf, size_t cap, size_t *n)
{
    SH_ASSERT(*pos <= len && cap >= 2);
    size_t used = 0;
    while (*pos < len) {
        size_t start = *pos;
        const char *nl = memchr(text + start, '\n', len - start);
        size_t end = nl != NULL ? (size_t)(nl - text) : len; /* line is text[start..end) */
        *pos = nl != NULL ? end + 1 : len;
        size_t b = start;
        while (b < end && (text[b] == ' ' || text[b] == '\t' || text[b] == '\r')) {
            b++;
        }
        size_t e = end;
        while (e > b && (text[e - 1] == ' ' || text[e - 1] == '\t' || text[e - 1] == '\r')) {
            e--;
        }
        if (b == e || text[b] == '#' || (e - b >= 2 && text[b] == '-' && text[b + 1] == '-')) {
            continue; /* blank or a whole-line comment */
        }
        bool last = text[e - 1] == ';';
        size_t take = last ? e - 1 - start : e - start;
        if (used + take + 1 > cap - 1) {
            return -1;
        }
        memcpy(buf + used, text + start, take);
        used += take;
        buf[used++] = '\n';
        if (last) {
            break;
        }
    }
    buf[used] = '\0';
    *n = used;
    return used > 0 ? 1 : 0;
}

/* ---- one run ------------------------------------------------------------------- */

typedef struct mg_run {
    sw_mysql *m;
    const char *database;
    unsigned lock_timeout_s;
    mg_list *list;
    sw_migrate_result *res;
    sh_err err; /* the error when the attempt ends in SW_DB_FAIL */
    char *stmt; /* SH_MIGRATION_STATEMENT_BYTES_MAX */
} mg_run;

/* SELECT of one integer; SW_DB_FAIL on NULL. */
static sw_db mg_select_i64(sw_mysql *m, const char *sql, const sw_param *params, size_t nparams,
                           int64_t *out, bool *is_null)
{
    sw_col col = {.type = SW_P_I64};
    uint64_t rows = 0;
    sw_db v = sw_mysql_stmt(m, sql, params, nparams, &col, 1, NULL, NULL, &rows, NULL);
    if (v != SW_DB_OK) {
        return v;
    }
    if (rows != 1) {
        sw_mysql_set_error(m, "%s: %llu rows, expected 1", sql, (unsigned long long)rows);
        return SW_DB_FAIL;
    }
    *is_null = col.is_null != 0;
    *out = col.i64;
    return SW_DB_OK;
}

static sw_db mg_exec(sw_mysql *m, const char *sql)
{
    return sw_mysql_exec(m, sql, strlen(sql), NULL);
}

static sw_db mg_apply_one(mg_run *r, const sw_migration *mig)
{
    size_t pos = 0;
    size_t n = 0;
    unsigned k = 0;
    for (;;) {
        int got =
            mg_next_stmt(mig->sql, mig->len, &pos, r->stmt, SH_MIGRATION_STATEMENT_BYTES_MAX, &n);
        if (got == 0) {
            break;
        }
        k++;
        if (got < 0) {
            sw_mysql_set_error(r->m, "migration %03u_%s: statement %u is over %d bytes",
                               mig->version, mig->name, k, SH_MIGRATION_STATEMENT_BYTES_MAX);
            r->err = SH_ELIMIT;
            return SW_DB_FAIL;
        }
        sw_db v = sw_mysql_exec(r->m, r->stmt, n, NULL);
        if (v != SW_DB_OK) {
            char e[SW_MYSQL_ERROR_CHARS_MAX + 1];
            snprintf(e, sizeof e, "%s", sw_mysql_error(r->m));
            sw_mysql_set_error(r->m, "migration %03u_%s statement %u: %s", mig->version, mig->name,
                               k, e);
            return v;
        }
    }
    sw_param p = sw_p_i64(mig->version);
    sw_db v = sw_mysql_stmt(r->m, MG_SQL_RECORD, &p, 1, NULL, 0, NULL, NULL, NULL, NULL);
    if (v == SW_DB_OK) {
        v = mg_exec(r->m, "COMMIT");
    }
    if (v == SW_DB_OK) {
        SH_INFO(MG_MOD, "applied version=%u name=%s statements=%u", mig->version, mig->name, k);
        r->res->after = mig->version;
    }
    return v;
}

/* Reads the version applied; the caller holds the lock. */
static sw_db mg_read_version(mg_run *r, uint32_t *version)
{
    int64_t v64 = 0;
    bool is_null = false;
    sw_db v = mg_select_i64(r->m, MG_SQL_HAS_TABLE, NULL, 0, &v64, &is_null);
    if (v != SW_DB_OK) {
        return v;
    }
    if (is_null || v64 == 0) {
        *version = 0;
        return SW_DB_OK;
    }
    v = mg_select_i64(r->m, MG_SQL_VERSION, NULL, 0, &v64, &is_null);
    if (v != SW_DB_OK) {
        return v;
    }
    /* A value from MySQL: checked, not asserted. */
    if (is_null || v64 < 0 || v64 > INT32_MAX) {
        sw_mysql_set_error(r->m, "schema_version holds an invalid version %lld", (long long)v64);
        return SW_DB_FAIL;
    }
    *version = (uint32_t)v64;
    return SW_DB_OK;
}

/* One attempt: connect, create and select the database, lock, read, apply. */
static sw_db mg_attempt(mg_run *r)
{
    r->err = SH_EMYSQL;
    if (sw_mysql_connect(r->m) != SH_OK) {
        return SW_DB_LOST;
    }
    char sql[MG_SQL_BYTES];
    snprintf(sql, sizeof sql,
             "CREATE DATABASE IF NOT EXISTS `%s` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
             r->database);
    sw_db v = mg_exec(r->m, sql);
    if (v != SW_DB_OK) {
        return v;
    }
    snprintf(sql, sizeof sql, "USE `%s`", r->database);
    if ((v = mg_exec(r->m, sql)) != SW_DB_OK) {
        return v;
    }
    int64_t got = 0;
    bool is_null = false;
    sw_param p = sw_p_i64(r->lock_timeout_s);
    if ((v = mg_select_i64(r->m, MG_SQL_LOCK, &p, 1, &got, &is_null)) != SW_DB_OK) {
        return v;
    }
    if (is_null || got != 1) {
        sw_mysql_set_error(r->m, "lock '%s' not free within %u s (another runner is migrating)",
                           SW_MIGRATE_LOCK_NAME, r->lock_timeout_s);
        r->err = SH_ETIMEDOUT;
        return SW_DB_FAIL;
    }
    uint32_t before = 0;
    if ((v = mg_read_version(r, &before)) != SW_DB_OK) {
        return v;
    }
    r->res->before = before;
    r->res->after = before;
    if (before > r->res->known) {
        sw_mysql_set_error(r->m,
                           "database '%s' is at schema version %u, newer than this binary's %u: "
                           "refusing to run (install a newer stock-syncd)",
                           r->database, before, r->res->known);
        r->err = SH_ERANGE;
        return SW_DB_FAIL;
    }
    for (size_t i = before; i < r->list->n; i++) {
        if ((v = mg_apply_one(r, r->list->items[i])) != SW_DB_OK) {
            return v;
        }
    }
    SH_ASSERT(r->res->after == r->res->known);
    /* Closing the connection would release the lock too; this says so sooner. */
    return mg_select_i64(r->m, MG_SQL_UNLOCK, NULL, 0, &got, &is_null);
}

static int mg_database_ok(const char *db)
{
    size_t n = strlen(db);
    if (n == 0 || n > MG_DATABASE_CHARS_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = db[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '$')) {
            return 0;
        }
    }
    return 1;
}

sh_err sw_migrate_run(const sw_mysql_opts *mo, unsigned lock_timeout_s, sw_migrate_result *res,
                      char *why, size_t whylen)
{
    SH_ASSERT(mo != NULL && res != NULL && (why != NULL || whylen == 0));
    SH_ASSERT(mo->stop != NULL && mo->stats != NULL && mo->attempts_max >= 1);
    SH_ASSERT(lock_timeout_s <= SH_MIGRATE_LOCK_TIMEOUT_S_MAX);
    memset(res, 0, sizeof *res);
    mg_why(why, whylen, "%s", "");
    if (mo->database == NULL || !mg_database_ok(mo->database)) {
        mg_why(why, whylen, "database name '%s' is not 1..%d characters of [A-Za-z0-9_$]",
               mo->database != NULL ? mo->database : "", MG_DATABASE_CHARS_MAX);
        return SH_EINVAL;
    }
    mg_list *list = malloc(sizeof *list);
    char *stmt = malloc(SH_MIGRATION_STATEMENT_BYTES_MAX);
    if (list == NULL || stmt == NULL) {
        free(list);
        free(stmt);
        return SH_ENOMEM;
    }
    sh_err rc = mg_list_init(list, why, whylen);
    if (rc != SH_OK) {
        mg_list_fini(list);
        free(list);
        free(stmt);
        return rc;
    }
    res->known = (uint32_t)list->n;
    sw_mysql_opts no_db = *mo;
    no_db.database = ""; /* connect without one: it may not exist yet */
    sw_mysql *m = NULL;
    rc = sw_mysql_open(&m, &no_db);
    if (rc != SH_OK) {
        mg_why(why, whylen, "cannot set up a MySQL connection: %s", sh_strerror(rc));
        mg_list_fini(list);
        free(list);
        free(stmt);
        return rc;
    }
    mg_run r = {m, mo->database, lock_timeout_s, list, res, SH_OK, stmt};
    uint64_t start_ms = sh_clock_mono_ms();
    uint32_t backoff_ms = SW_MYSQL_BACKOFF_MIN_MS;
    rc = SH_EMYSQL;
    for (uint32_t attempt = 1;; attempt++) {
        sw_db v = mg_attempt(&r);
        if (v == SW_DB_OK) {
            rc = SH_OK;
            break;
        }
        if (v == SW_DB_FAIL || v == SW_DB_ABORT) {
            rc = r.err;
            mg_why(why, whylen, "%s", sw_mysql_error(m));
            break;
        }
        /* RETRY or LOST: start over on a new connection (the lock went with the old one). */
        uint64_t elapsed_ms = sh_clock_mono_ms() - start_ms;
        if (attempt >= mo->attempts_max || elapsed_ms >= mo->retry_time_max_ms) {
            mg_why(why, whylen, "gave up after %u attempts in %llu ms: %s", attempt,
                   (unsigned long long)elapsed_ms, sw_mysql_error(m));
            rc = SH_EMYSQL;
            break;
        }
        SH_WARN(MG_MOD, "attempt failed, starting over attempt=%u err=\"%s\"", attempt,
                sw_mysql_error(m));
        if (!sw_mysql_pause(mo->stop, backoff_ms)) {
            mg_why(why, whylen, "shutting down");
            rc = SH_ECLOSED;
            break;
        }
        backoff_ms = backoff_ms >= mo->backoff_max_ms / 2 ? mo->backoff_max_ms : backoff_ms * 2;
    }
    sw_mysql_close(m);
    mg_list_fini(list);
    free(list);
    free(stmt);
    if (rc == SH_OK) {
        SH_ASSERT(res->after == res->known && res->before <= res->after);
        SH_INFO(MG_MOD, "schema up to date database=%s before=%u after=%u", mo->database,
                res->before, res->after);
    } else {
        SH_ERROR(MG_MOD,
                 "migration failed database=%s status=%s before=%u after=%u known=%u "
                 "err=\"%s\"",
                 mo->database, sh_strerror(rc), res->before, res->after, res->known,
                 why != NULL ? why : "");
    }
    return rc;
}
