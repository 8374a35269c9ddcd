/* sw_audit.c -- SYNC_STATE: three SELECTs in one snapshot (see sw_audit.h).
 *
 * The session runs READ COMMITTED (sw_mysql.c), where every statement sees its
 * own fresh snapshot: a batch committed between the SELECT of the sync rows
 * and the SELECT of the details would make detail_rows and COUNT(*) disagree
 * and the audit cry wolf. So this one transaction asks for REPEATABLE READ and
 * a consistent snapshot before its first read (SET TRANSACTION applies to the
 * next transaction only; sw_mysql_tx calls a body with none open), reads, and
 * rolls back. Nothing is locked: the apply path never waits for an audit.
 *
 * The per-partition SELECTs are bounded: LIMIT one past
 * SH_PARTITIONS_PER_SKU_MAX, so a table holding more partitions for the SKU
 * than the system allows is reported instead of read without end; the
 * doubled-orders SELECT answers one row. Values from MySQL are checked before
 * they go into a reply (a partition id past the limit, a count past INT64_MAX
 * make the reply an error naming it). */
#include "sw_audit.h"

#include "sh_id.h"
#include "sh_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define SA_MOD "audit"

static const char SQL_SYNC_ROWS[] =
    "SELECT partition_id, synced_seq, deducted, detail_rows FROM stock_partition "
    "WHERE sku_id = ? ORDER BY partition_id LIMIT ?";
/* The checksum of a detail is CRC32 of "SEQ|ORDER|QTY" (sh_audit_detail_chk
 * computes the same from Redis's order records): a row whose order or qty
 * differs from the deduction Redis made at that seq changes the sum. */
static const char SQL_DETAIL_SUMS[] =
    "SELECT partition_id, COUNT(*), CAST(COALESCE(SUM(qty), 0) AS SIGNED), "
    "COALESCE(MAX(seq), 0), "
    "CAST(COALESCE(SUM(CRC32(CONCAT(seq, '|', order_id, '|', qty))), 0) AS UNSIGNED) "
    "FROM deduction_detail WHERE sku_id = ? "
    "GROUP BY partition_id ORDER BY partition_id LIMIT ?";
/* Orders deducted (or released) more than once per SKU, on any partitions. */
static const char SQL_DUP_ORDERS[] =
    "SELECT COUNT(*), MIN(order_id) FROM (SELECT order_id FROM deduction_detail "
    "WHERE sku_id = ? GROUP BY order_id HAVING SUM(qty > 0) > 1 OR SUM(qty < 0) > 1) t";

/* One transaction's state: the request, per-partition slots, the verdict. */
typedef struct sa_ctx {
    const sh_wire_sync_state_req *req;
    sw_audit_out *out;
    sh_wire_sync_part slot[SH_PARTITIONS_PER_SKU_MAX];
    unsigned char present[SH_PARTITIONS_PER_SKU_MAX];
    uint64_t dup_orders;
    uint8_t dup_order_len;
    char dup_order[SH_ORDER_ID_CHARS_MAX + 1];
    sw_verdict v;
} sa_ctx;

/* The slot of partition id p, or NULL (and the reply refused) when p is past the limit. */
static sh_wire_sync_part *sa_slot(sa_ctx *c, uint64_t p)
{
    if (p >= SH_PARTITIONS_PER_SKU_MAX) {
        sw_verdict_set(&c->v, SH_ERANGE,
                       "sku %s: partition_id %" PRIu64 " in MySQL is past the limit %d",
                       c->req->sku, p, SH_PARTITIONS_PER_SKU_MAX);
        return NULL;
    }
    if (!c->present[p]) {
        c->present[p] = 1;
        memset(&c->slot[p], 0, sizeof c->slot[p]);
        c->slot[p].partition = (uint16_t)p;
    }
    return &c->slot[p];
}

static int sa_count_ok(sa_ctx *c, const char *what, uint64_t p, uint64_t v)
{
    if (v > (uint64_t)INT64_MAX) {
        sw_verdict_set(&c->v, SH_ERANGE,
                       "sku %s partition %" PRIu64 ": %s %" PRIu64 " is out of range", c->req->sku,
                       p, what, v);
        return 0;
    }
    return 1;
}

static sw_db sa_sync_row(void *arg, const sw_col *cols, size_t ncols)
{
    sa_ctx *c = arg;
    SH_ASSERT(ncols == 4);
    if (cols[0].is_null || cols[1].is_null || cols[2].is_null || cols[3].is_null) {
        sw_verdict_set(&c->v, SH_ERANGE, "sku %s: a stock_partition row holds NULL", c->req->sku);
        return SW_DB_OK;
    }
    sh_wire_sync_part *s = sa_slot(c, cols[0].u64);
    if (s == NULL || !sa_count_ok(c, "detail_rows", cols[0].u64, cols[3].u64)) {
        return SW_DB_OK;
    }
    s->synced_seq = cols[1].u64;
    s->deducted = cols[2].i64;
    s->detail_rows = (int64_t)cols[3].u64;
    return SW_DB_OK;
}

static sw_db sa_detail_row(void *arg, const sw_col *cols, size_t ncols)
{
    sa_ctx *c = arg;
    SH_ASSERT(ncols == 5);
    if (cols[0].is_null || cols[1].is_null || cols[2].is_null || cols[3].is_null ||
        cols[4].is_null) {
        sw_verdict_set(&c->v, SH_ERANGE, "sku %s: a detail aggregate is NULL", c->req->sku);
        return SW_DB_OK;
    }
    sh_wire_sync_part *s = sa_slot(c, cols[0].u64);
    if (s == NULL || !sa_count_ok(c, "COUNT(*)", cols[0].u64, cols[1].u64)) {
        return SW_DB_OK;
    }
    s->rows_counted = (int64_t)cols[1].u64;
    s->qty_counted = cols[2].i64;
    s->max_seq = cols[3].u64;
    s->chk = cols[4].u64;
    return SW_DB_OK;
}

static sw_db sa_dup_row(void *arg, const sw_col *cols, size_t ncols)
{
    sa_ctx *c = arg;
    SH_ASSERT(ncols == 2);
    c->dup_orders = cols[0].is_null ? 0 : cols[0].u64;
    c->dup_order_len = 0;
    if (c->dup_orders > 0 && !cols[1].is_null) {
        size_t n = cols[1].len < SH_ORDER_ID_CHARS_MAX ? cols[1].len : SH_ORDER_ID_CHARS_MAX;
        memcpy(c->dup_order, cols[1].buf, n);
        c->dup_order[n] = '\0';
        c->dup_order_len = (uint8_t)n;
    }
    if (c->dup_orders > 0 && c->dup_order_len == 0) {
        sw_verdict_set(&c->v, SH_ERANGE, "sku %s: an order deducted twice has an empty id",
                       c->req->sku);
    }
    return SW_DB_OK;
}

static sw_db sa_body(sw_mysql *m, void *arg)
{
    sa_ctx *c = arg;
    /* Restartable: everything the reply holds is rebuilt from scratch. */
    memset(c->present, 0, sizeof c->present);
    c->dup_orders = 0;
    c->dup_order_len = 0;
    memset(&c->v, 0, sizeof c->v);
    sw_db v = sw_mysql_snapshot_begin(m);
    if (v != SW_DB_OK) {
        return v;
    }
    const sh_wire_sync_state_req *r = c->req;
    sw_param p[2] = {sw_p_str(r->sku, r->sku_len), sw_p_u64(SH_PARTITIONS_PER_SKU_MAX + 1)};
    sw_col sc[4] = {{.type = SW_P_U64}, {.type = SW_P_U64}, {.type = SW_P_I64}, {.type = SW_P_U64}};
    uint64_t rows = 0;
    v = sw_mysql_stmt(m, SQL_SYNC_ROWS, p, 2, sc, 4, sa_sync_row, c, &rows, NULL);
    if (v != SW_DB_OK) {
        return v;
    }
    if (rows > SH_PARTITIONS_PER_SKU_MAX) {
        sw_verdict_set(&c->v, SH_ERANGE, "sku %s: more than %d stock_partition rows", r->sku,
                       SH_PARTITIONS_PER_SKU_MAX);
    }
    sw_col dc[5] = {{.type = SW_P_U64},
                    {.type = SW_P_U64},
                    {.type = SW_P_I64},
                    {.type = SW_P_U64},
                    {.type = SW_P_U64}};
    v = sw_mysql_stmt(m, SQL_DETAIL_SUMS, p, 2, dc, 5, sa_detail_row, c, &rows, NULL);
    if (v != SW_DB_OK) {
        return v;
    }
    char order[SH_ORDER_ID_CHARS_MAX + 1];
    sw_col uc[2] = {{.type = SW_P_U64}, {.type = SW_P_STR, .buf = order, .cap = sizeof order}};
    v = sw_mysql_stmt(m, SQL_DUP_ORDERS, p, 1, uc, 2, sa_dup_row, c, &rows, NULL);
    if (v != SW_DB_OK) {
        return v;
    }
    if (rows > SH_PARTITIONS_PER_SKU_MAX) {
        sw_verdict_set(&c->v, SH_ERANGE, "sku %s: details of more than %d partitions", r->sku,
                       SH_PARTITIONS_PER_SKU_MAX);
    }
    return SW_DB_ABORT; /* read only */
}

static void sa_finish(sw_audit_out *out, sh_err status, const char *message)
{
    out->rep.status = status;
    size_t len = strlen(message);
    if (len > SH_MESSAGE_CHARS_MAX) {
        len = SH_MESSAGE_CHARS_MAX;
    }
    sh_err rc = sh_wire_str_set(out->rep.message, sizeof out->rep.message, &out->rep.message_len,
                                message, len);
    SH_ASSERT(rc == SH_OK); /* vsnprintf'd text holds no NUL and fits */
    if (status != SH_OK) {
        out->n = 0; /* a refusal carries no record (the codec checks it too) */
    }
}

void sw_audit_run(sw_mysql *m, sw_stats *stats, const sh_wire_sync_state_req *req,
                  sw_audit_out *out)
{
    SH_ASSERT(m != NULL && stats != NULL && req != NULL && out != NULL && out->parts != NULL);
    memset(&out->rep, 0, sizeof out->rep);
    out->n = 0;
    atomic_fetch_add(&stats->catalog_ops, 1);
    if (sh_id_check_sku(req->sku, req->sku_len) != SH_OK) {
        atomic_fetch_add(&stats->bad_messages, 1);
        sa_finish(out, SH_EINVAL, "invalid sku id");
        return;
    }
    sa_ctx c; /* about 13 KB; the worker threads run on the default 8 MB stacks */
    memset(&c, 0, sizeof c);
    c.req = req;
    c.out = out;
    sh_err rc = sw_mysql_tx(m, sa_body, &c, NULL);
    if (rc != SH_OK) {
        atomic_fetch_add(&stats->mysql_errors, 1);
        sa_finish(out, rc, sw_mysql_error(m));
        SH_WARN(SA_MOD, "sync state sku=%s failed status=%s message=\"%s\"", req->sku,
                sh_strerror(rc), sw_mysql_error(m));
        return;
    }
    if (c.v.status != SH_OK) {
        sa_finish(out, c.v.status, c.v.message);
        SH_WARN(SA_MOD, "sync state sku=%s refused status=%s message=\"%s\"", req->sku,
                sh_strerror(c.v.status), c.v.message);
        return;
    }
    for (size_t p = 0; p < SH_PARTITIONS_PER_SKU_MAX; p++) {
        if (c.present[p]) {
            out->parts[out->n++] = c.slot[p];
        }
    }
    SH_ASSERT(out->n <= SH_PARTITIONS_PER_SKU_MAX);
    out->rep.dup_orders = c.dup_orders;
    memcpy(out->rep.dup_order, c.dup_order, c.dup_order_len);
    out->rep.dup_order[c.dup_order_len] = '\0';
    out->rep.dup_order_len = c.dup_order_len;
    sa_finish(out, SH_OK, "");
}
