/* sw_details.c -- SYNC_DETAILS: one page of a partition's details in one snapshot
 * (see sw_details.h).
 *
 * The session runs READ COMMITTED (sw_mysql.c), where each statement sees its
 * own snapshot; this one transaction asks for REPEATABLE READ and a
 * consistent snapshot before its first read, reads the stock_partition row and
 * the page, and rolls back. The page is bounded by the request's limit (at
 * most SH_WIRE_DETAILS_PAGE_MAX); the caller pages with after_seq = the last
 * seq it got. Every value from MySQL is checked against the bounds the codec
 * and the scheduler rely on before it goes into a reply: a row that breaks
 * one makes the reply an error naming its seq. */
#include "sw_details.h"

#include "sh_id.h"
#include "sh_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define SD_MOD "details"

static const char SQL_SYNCED[] =
    "SELECT synced_seq FROM stock_partition WHERE sku_id = ? AND partition_id = ?";
static const char SQL_PAGE[] =
    "SELECT seq, qty, sub_domain, created_ms, order_id, user_id FROM deduction_detail "
    "WHERE sku_id = ? AND partition_id = ? AND seq > ? ORDER BY seq LIMIT ?";

/* One transaction's state: the request, the page being filled, the verdict. */
typedef struct sd_ctx {
    const sh_wire_sync_details_req *req;
    sw_details_out *out;
    char order[SH_ORDER_ID_CHARS_MAX + 1];
    char user[SH_USER_ID_CHARS_MAX + 1];
    sw_verdict v;
} sd_ctx;

/* One row: seq, qty, sub_domain, created_ms, order_id, user_id. */
static sw_db sd_row(void *arg, const sw_col *cols, size_t ncols)
{
    sd_ctx *c = arg;
    SH_ASSERT(ncols == 6);
    sw_details_out *o = c->out;
    if (o->n >= c->req->limit) {
        sw_verdict_set(&c->v, SH_ERANGE, "more rows than the page limit %u", c->req->limit);
        return SW_DB_OK;
    }
    uint64_t seq = cols[0].u64;
    int64_t qty = cols[1].i64;
    sh_wire_detail *d = &o->details[o->n];
    memset(d, 0, sizeof *d);
    if (cols[0].is_null || cols[1].is_null || cols[2].is_null || cols[3].is_null ||
        cols[4].is_null || cols[5].is_null || seq <= c->req->after_seq ||
        (o->n > 0 && seq <= o->details[o->n - 1].seq) || qty == 0 || qty > SH_QTY_UNITS_MAX ||
        qty < -SH_QTY_UNITS_MAX || cols[2].u64 > 1 ||
        sh_id_check_order(cols[4].buf, cols[4].len) != SH_OK ||
        (cols[5].len > 0 && sh_id_check_user(cols[5].buf, cols[5].len) != SH_OK)) {
        sw_verdict_set(&c->v, SH_ERANGE,
                       "sku %s partition %u: the detail at seq %" PRIu64
                       " breaks the detail bounds",
                       c->req->sku, (unsigned)c->req->partition, seq);
        return SW_DB_OK;
    }
    d->seq = seq;
    d->qty = (int32_t)qty;
    d->sub_domain = (uint8_t)cols[2].u64;
    d->created_ms = cols[3].i64;
    sh_err rc = sh_wire_str_set(d->order_id, sizeof d->order_id, &d->order_id_len, cols[4].buf,
                                cols[4].len);
    if (rc == SH_OK) {
        rc = sh_wire_str_set(d->user_id, sizeof d->user_id, &d->user_id_len, cols[5].buf,
                             cols[5].len);
    }
    SH_ASSERT(rc == SH_OK); /* checked ids fit their arrays and hold no NUL */
    o->n++;
    return SW_DB_OK;
}

static sw_db sd_body(sw_mysql *m, void *arg)
{
    sd_ctx *c = arg;
    /* Restartable: everything the reply holds is rebuilt from scratch. */
    c->out->n = 0;
    c->out->rep.synced_seq = 0;
    memset(&c->v, 0, sizeof c->v);
    sw_db v = sw_mysql_snapshot_begin(m);
    if (v != SW_DB_OK) {
        return v;
    }
    const sh_wire_sync_details_req *r = c->req;
    sw_param p[4] = {sw_p_str(r->sku, r->sku_len), sw_p_u64(r->partition), sw_p_u64(r->after_seq),
                     sw_p_u64(r->limit)};
    sw_col sc = {.type = SW_P_U64};
    uint64_t rows = 0;
    v = sw_mysql_stmt(m, SQL_SYNCED, p, 2, &sc, 1, NULL, NULL, &rows, NULL);
    if (v != SW_DB_OK) {
        return v;
    }
    if (rows == 1 && !sc.is_null) {
        c->out->rep.synced_seq = sc.u64;
    }
    sw_col dc[6] = {{.type = SW_P_U64},
                    {.type = SW_P_I64},
                    {.type = SW_P_U64},
                    {.type = SW_P_I64},
                    {.type = SW_P_STR, .buf = c->order, .cap = sizeof c->order},
                    {.type = SW_P_STR, .buf = c->user, .cap = sizeof c->user}};
    v = sw_mysql_stmt(m, SQL_PAGE, p, 4, dc, 6, sd_row, c, &rows, NULL);
    if (v != SW_DB_OK) {
        return v;
    }
    return SW_DB_ABORT; /* read only */
}

static void sd_finish(sw_details_out *out, sh_err status, const char *message)
{
    out->rep.status = status;
    sh_wire_text_set(out->rep.message, sizeof out->rep.message, &out->rep.message_len, message);
    if (status != SH_OK) {
        out->n = 0; /* a refusal carries no record (the codec checks it too) */
    }
}

void sw_details_run(sw_mysql *m, sw_stats *stats, const sh_wire_sync_details_req *req,
                    sw_details_out *out)
{
    SH_ASSERT(m != NULL && stats != NULL && req != NULL && out != NULL && out->details != NULL);
    SH_ASSERT(req->limit >= 1 && req->limit <= SH_WIRE_DETAILS_PAGE_MAX); /* the codec checked */
    memset(&out->rep, 0, sizeof out->rep);
    out->n = 0;
    atomic_fetch_add(&stats->catalog_ops, 1);
    if (sh_id_check_sku(req->sku, req->sku_len) != SH_OK) {
        atomic_fetch_add(&stats->bad_messages, 1);
        sd_finish(out, SH_EINVAL, "invalid sku id");
        return;
    }
    sd_ctx c;
    memset(&c, 0, sizeof c);
    c.req = req;
    c.out = out;
    sh_err rc = sw_mysql_tx(m, sd_body, &c, NULL);
    if (rc != SH_OK) {
        atomic_fetch_add(&stats->mysql_errors, 1);
        sd_finish(out, rc, sw_mysql_error(m));
        SH_WARN(SD_MOD, "details sku=%s partition=%u failed status=%s message=\"%s\"", req->sku,
                (unsigned)req->partition, sh_strerror(rc), sw_mysql_error(m));
        return;
    }
    if (c.v.status != SH_OK) {
        sd_finish(out, c.v.status, c.v.message);
        SH_WARN(SD_MOD, "details sku=%s partition=%u refused status=%s message=\"%s\"", req->sku,
                (unsigned)req->partition, sh_strerror(c.v.status), c.v.message);
        return;
    }
    SH_ASSERT(out->n <= req->limit);
    sd_finish(out, SH_OK, "");
}
