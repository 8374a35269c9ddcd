/* sw_catalog.c -- GET, UPSERT, RESTOCK and LIST of SKU rows (see sw_catalog.h).
 *
 * Each op is one transaction body for sw_mysql_tx, so a deadlock or a lost
 * connection redoes it whole. Write bodies are idempotent by construction: the
 * SKU row is created only when absent, and a restock id row is created in the
 * same transaction that adds its units, so a redo after a commit whose answer
 * was lost finds the id and adds nothing. (That redo then reports applied = 0
 * for work that was in fact done by the lost commit: the flag is advisory, the
 * totals are exact.)
 *
 * Rows read back from MySQL are checked against the wire bounds before they go
 * into a reply: MySQL data is never trusted to fit (a hand-edited row could
 * hold anything), and a bad row is reported, not asserted on.
 *
 * INSERT ... ON DUPLICATE KEY UPDATE with a no-op update stands in for the
 * brief's INSERT IGNORE: the same "create if absent" (affected rows 1 for a new
 * row, 0 for an existing one), but it does not turn other errors (a value out
 * of range, a failed CHECK) into silent warnings. */
#include "sw_catalog.h"

#include "sh_id.h"
#include "sh_log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define SC_MOD "catalog"

/* Column buffers: VARCHAR(64) and VARCHAR(128) in utf8mb4 take up to 4 bytes a
 * character; a longer value than the wire allows is refused after the fetch. */
#define SC_SKU_ID_BYTES (4 * SH_SKU_ID_CHARS_MAX + 1)
#define SC_NAME_BYTES   (4 * SH_SKU_NAME_CHARS_MAX + 1)
#define SC_COLS         8

#define SC_SELECT                                                                                  \
    "SELECT sku_id, name, total, start_ms, per_user_limit, partitions, min_chunk, max_chunk "      \
    "FROM sku "

static const char SQL_GET[] = SC_SELECT "WHERE sku_id = ?";
static const char SQL_GET_LOCK[] = SC_SELECT "WHERE sku_id = ? FOR UPDATE";
static const char SQL_LIST[] = SC_SELECT "ORDER BY sku_id LIMIT ?";
static const char SQL_UPSERT[] =
    "INSERT INTO sku (sku_id, name, total, start_ms, per_user_limit, partitions, min_chunk, "
    "max_chunk) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE sku_id = sku_id";
static const char SQL_RESTOCK_ADD[] =
    "INSERT INTO restock (restock_id, sku_id, units) VALUES (?, ?, ?) "
    "ON DUPLICATE KEY UPDATE restock_id = restock_id";
static const char SQL_RESTOCK_GET[] = "SELECT sku_id, units FROM restock WHERE restock_id = ?";
static const char SQL_TOTAL_ADD[] = "UPDATE sku SET total = total + ? WHERE sku_id = ?";

/* One transaction's state: the request, the reply, column buffers. */
typedef struct sc_ctx {
    const sh_wire_catalog_req *req;
    sw_catalog_out *out;
    sh_err status;
    uint8_t applied;
    uint64_t bad_rows;
    uint64_t more_rows; /* LIST rows past SH_SKUS_MAX */
    char message[SH_MESSAGE_CHARS_MAX + 1];
    char sku_id[SC_SKU_ID_BYTES];
    char name[SC_NAME_BYTES];
    sw_col cols[SC_COLS];
} sc_ctx;

static void sc_message(sc_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sc_message(sc_ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->message, sizeof c->message, fmt, ap);
    va_end(ap);
}

static void sc_cols_init(sc_ctx *c)
{
    memset(c->cols, 0, sizeof c->cols);
    c->cols[0] = (sw_col){.type = SW_P_STR, .buf = c->sku_id, .cap = sizeof c->sku_id};
    c->cols[1] = (sw_col){.type = SW_P_STR, .buf = c->name, .cap = sizeof c->name};
    c->cols[2].type = SW_P_I64; /* total */
    c->cols[3].type = SW_P_I64; /* start_ms */
    c->cols[4].type = SW_P_U64; /* per_user_limit */
    c->cols[5].type = SW_P_U64; /* partitions */
    c->cols[6].type = SW_P_U64; /* min_chunk */
    c->cols[7].type = SW_P_U64; /* max_chunk */
}

/* A fetched row into a wire record, if it keeps every bound the codec checks. */
static int sc_row_to_sku(const sw_col *col, sh_wire_sku *s)
{
    for (size_t i = 0; i < SC_COLS; i++) {
        if (col[i].is_null) {
            return 0;
        }
    }
    memset(s, 0, sizeof *s);
    if (col[0].len < 1 ||
        sh_wire_str_set(s->sku_id, sizeof s->sku_id, &s->sku_id_len, col[0].buf, col[0].len) !=
            SH_OK ||
        sh_wire_str_set(s->name, sizeof s->name, &s->name_len, col[1].buf, col[1].len) != SH_OK) {
        return 0;
    }
    if (col[2].i64 < 0 || col[2].i64 > SH_SKU_TOTAL_UNITS_MAX || col[3].i64 < 0 ||
        col[4].u64 > SH_PER_USER_LIMIT_UNITS_MAX || col[5].u64 < 1 ||
        col[5].u64 > SH_PARTITIONS_PER_SKU_MAX || col[6].u64 < SH_CHUNK_UNITS_MIN ||
        col[6].u64 > col[7].u64 || col[7].u64 > SH_CHUNK_UNITS_MAX) {
        return 0;
    }
    s->total = col[2].i64;
    s->start_ms = col[3].i64;
    s->per_user_limit = (uint32_t)col[4].u64;
    s->partitions = (uint16_t)col[5].u64;
    s->min_chunk = (uint32_t)col[6].u64;
    s->max_chunk = (uint32_t)col[7].u64;
    return 1;
}

/* Reads the request's SKU row into out->skus[0]; *found tells. A row that breaks
 * the bounds is a FAIL (the reply says which). */
static sw_db sc_read_one(sw_mysql *m, sc_ctx *c, const char *sql, int *found)
{
    const sh_wire_sku *rs = &c->req->sku;
    sw_param p[1] = {sw_p_str(rs->sku_id, rs->sku_id_len)};
    uint64_t rows = 0;
    sc_cols_init(c);
    *found = 0;
    sw_db v = sw_mysql_stmt(m, sql, p, 1, c->cols, SC_COLS, NULL, NULL, &rows, NULL);
    if (v != SW_DB_OK || rows == 0) {
        return v;
    }
    if (!sc_row_to_sku(c->cols, &c->out->skus[0])) {
        sw_mysql_set_error(m, "stored row of sku %s breaks the catalog bounds", rs->sku_id);
        return SW_DB_FAIL;
    }
    *found = 1;
    return SW_DB_OK;
}

static void sc_reset(sc_ctx *c)
{
    c->status = SH_OK;
    c->applied = 0;
    c->bad_rows = 0;
    c->more_rows = 0;
    c->message[0] = '\0';
    c->out->n = 0;
}

/* ---- bodies ------------------------------------------------------------------ */

static sw_db sc_get_body(sw_mysql *m, void *arg)
{
    sc_ctx *c = arg;
    sc_reset(c);
    int found = 0;
    sw_db v = sc_read_one(m, c, SQL_GET, &found);
    if (v != SW_DB_OK) {
        return v;
    }
    if (!found) {
        c->status = SH_ENOTFOUND;
        sc_message(c, "no sku %s", c->req->sku.sku_id);
    } else {
        c->out->n = 1;
    }
    return SW_DB_ABORT; /* read only */
}

static sw_db sc_upsert_body(sw_mysql *m, void *arg)
{
    sc_ctx *c = arg;
    sc_reset(c);
    const sh_wire_sku *s = &c->req->sku;
    sw_param p[8] = {sw_p_str(s->sku_id, s->sku_id_len),
                     sw_p_str(s->name, s->name_len),
                     sw_p_i64(s->total),
                     sw_p_i64(s->start_ms),
                     sw_p_u64(s->per_user_limit),
                     sw_p_u64(s->partitions),
                     sw_p_u64(s->min_chunk),
                     sw_p_u64(s->max_chunk)};
    uint64_t affected = 0;
    sw_db v = sw_mysql_stmt(m, SQL_UPSERT, p, 8, NULL, 0, NULL, NULL, NULL, &affected);
    if (v != SW_DB_OK) {
        return v;
    }
    int found = 0;
    v = sc_read_one(m, c, SQL_GET, &found);
    if (v != SW_DB_OK) {
        return v;
    }
    if (!found) {
        sw_mysql_set_error(m, "sku %s missing right after its insert", s->sku_id);
        return SW_DB_FAIL;
    }
    c->out->n = 1;
    c->applied = affected == 1;
    return c->applied ? SW_DB_OK : SW_DB_ABORT;
}

static sw_db sc_restock_body(sw_mysql *m, void *arg)
{
    sc_ctx *c = arg;
    sc_reset(c);
    const sh_wire_catalog_req *r = c->req;
    int found = 0;
    sw_db v = sc_read_one(m, c, SQL_GET_LOCK, &found); /* the sku row lock orders restocks */
    if (v != SW_DB_OK) {
        return v;
    }
    if (!found) {
        c->status = SH_ENOTFOUND;
        sc_message(c, "no sku %s", r->sku.sku_id);
        return SW_DB_ABORT;
    }
    sh_wire_sku *row = &c->out->skus[0];
    c->out->n = 1;
    sw_param p[3] = {sw_p_str(r->restock_id, r->restock_id_len),
                     sw_p_str(r->sku.sku_id, r->sku.sku_id_len), sw_p_i64(r->units)};
    uint64_t affected = 0;
    v = sw_mysql_stmt(m, SQL_RESTOCK_ADD, p, 3, NULL, 0, NULL, NULL, NULL, &affected);
    if (v != SW_DB_OK) {
        return v;
    }
    if (affected == 0) {
        /* Seen before: the same restock again is a no-op; another one is a conflict. */
        char sku[SC_SKU_ID_BYTES];
        sw_col rc[2] = {{.type = SW_P_STR, .buf = sku, .cap = sizeof sku}, {.type = SW_P_I64}};
        uint64_t rows = 0;
        v = sw_mysql_stmt(m, SQL_RESTOCK_GET, p, 1, rc, 2, NULL, NULL, &rows, NULL);
        if (v != SW_DB_OK) {
            return v;
        }
        if (rows == 0 || rc[0].is_null || rc[1].is_null) {
            sw_mysql_set_error(m, "restock %s neither new nor stored", r->restock_id);
            return SW_DB_FAIL;
        }
        if (rc[0].len != r->sku.sku_id_len || memcmp(sku, r->sku.sku_id, rc[0].len) != 0 ||
            rc[1].i64 != r->units) {
            c->status = SH_EEXIST;
            sc_message(c, "restock id %s was used for sku %s units %" PRId64, r->restock_id, sku,
                       rc[1].i64);
        }
        return SW_DB_ABORT;
    }
    if (row->total > SH_SKU_TOTAL_UNITS_MAX - r->units) {
        c->status = SH_ERANGE;
        sc_message(c, "total %" PRId64 " + %" PRId64 " passes %lld", row->total, r->units,
                   (long long)SH_SKU_TOTAL_UNITS_MAX);
        return SW_DB_ABORT; /* the restock row goes with the rollback */
    }
    sw_param q[2] = {sw_p_i64(r->units), sw_p_str(r->sku.sku_id, r->sku.sku_id_len)};
    v = sw_mysql_stmt(m, SQL_TOTAL_ADD, q, 2, NULL, 0, NULL, NULL, NULL, &affected);
    if (v != SW_DB_OK) {
        return v;
    }
    if (affected != 1) {
        sw_mysql_set_error(m, "restock of sku %s updated %" PRIu64 " rows", r->sku.sku_id,
                           affected);
        return SW_DB_FAIL;
    }
    row->total += r->units;
    c->applied = 1;
    return SW_DB_OK;
}

static sw_db sc_list_row(void *arg, const sw_col *cols, size_t ncols)
{
    sc_ctx *c = arg;
    SH_ASSERT(ncols == SC_COLS);
    if (c->out->n >= c->out->cap || c->out->n >= SH_SKUS_MAX) {
        c->more_rows++;
        return SW_DB_OK;
    }
    if (!sc_row_to_sku(cols, &c->out->skus[c->out->n])) {
        c->bad_rows++;
        return SW_DB_OK;
    }
    c->out->n++;
    return SW_DB_OK;
}

static sw_db sc_list_body(sw_mysql *m, void *arg)
{
    sc_ctx *c = arg;
    sc_reset(c);
    sc_cols_init(c);
    sw_param p[1] = {sw_p_u64(SH_SKUS_MAX + 1)};
    sw_db v = sw_mysql_stmt(m, SQL_LIST, p, 1, c->cols, SC_COLS, sc_list_row, c, NULL, NULL);
    if (v != SW_DB_OK) {
        return v;
    }
    if (c->bad_rows > 0 || c->more_rows > 0) {
        sc_message(c, "left out: %" PRIu64 " rows breaking the bounds, %" PRIu64 " past %d",
                   c->bad_rows, c->more_rows, SH_SKUS_MAX);
    }
    return SW_DB_ABORT;
}

/* ---- entry ------------------------------------------------------------------- */

static void sc_finish(sw_catalog_out *out, sh_err status, uint8_t applied, const char *message)
{
    out->rep.status = status;
    out->rep.applied = applied;
    size_t len = strlen(message);
    if (len > SH_MESSAGE_CHARS_MAX) {
        len = SH_MESSAGE_CHARS_MAX;
    }
    sh_err rc = sh_wire_str_set(out->rep.message, sizeof out->rep.message, &out->rep.message_len,
                                message, len);
    SH_ASSERT(rc == SH_OK); /* vsnprintf'd text holds no NUL and fits */
}

void sw_catalog_run(sw_mysql *m, sw_stats *stats, const sh_wire_catalog_req *req,
                    sw_catalog_out *out)
{
    SH_ASSERT(m != NULL && stats != NULL && req != NULL && out != NULL);
    SH_ASSERT(out->skus != NULL && out->cap >= 1);
    memset(&out->rep, 0, sizeof out->rep);
    out->n = 0;
    atomic_fetch_add(&stats->catalog_ops, 1);
    if (req->op != SH_WIRE_CAT_LIST &&
        sh_id_check_sku(req->sku.sku_id, req->sku.sku_id_len) != SH_OK) {
        atomic_fetch_add(&stats->bad_messages, 1);
        sc_finish(out, SH_EINVAL, 0, "invalid sku id");
        return;
    }
    sw_tx_body body = NULL;
    switch (req->op) {
    case SH_WIRE_CAT_GET:
        body = sc_get_body;
        break;
    case SH_WIRE_CAT_UPSERT:
        body = sc_upsert_body;
        break;
    case SH_WIRE_CAT_RESTOCK:
        body = sc_restock_body;
        break;
    case SH_WIRE_CAT_LIST:
        body = sc_list_body;
        break;
    default:
        /* The codec refuses unknown ops; keep the reply well-formed all the same. */
        sc_finish(out, SH_EINVAL, 0, "unknown catalog op");
        return;
    }
    sc_ctx c = {.req = req, .out = out};
    sh_err rc = sw_mysql_tx(m, body, &c, NULL);
    if (rc != SH_OK) {
        atomic_fetch_add(&stats->mysql_errors, 1);
        out->n = 0;
        sc_finish(out, rc, 0, sw_mysql_error(m));
        SH_WARN(SC_MOD, "catalog op=%d sku=%s failed status=%s message=\"%s\"", (int)req->op,
                req->sku.sku_id, sh_strerror(rc), sw_mysql_error(m));
        return;
    }
    if (c.status != SH_OK) {
        out->n = c.status == SH_EEXIST || c.status == SH_ERANGE ? out->n : 0;
    }
    sc_finish(out, c.status, c.applied, c.message);
    if (c.applied) {
        SH_INFO(SC_MOD, "%s sku=%s total=%" PRId64,
                req->op == SH_WIRE_CAT_UPSERT ? "created" : "restocked", req->sku.sku_id,
                out->skus[0].total);
    }
}
