/* sw_apply.c -- the batch transaction (see sw_apply.h for the contract).
 *
 * One transaction, for every batch of the group in (sku, partition) order:
 *   SELECT synced_seq FROM stock_partition WHERE sku_id=? AND partition_id=? FOR UPDATE
 *     no row and first_seq == 1:
 *       INSERT INTO stock_partition (sku_id, partition_id) VALUES (?,?)
 *         ON DUPLICATE KEY UPDATE synced_seq = synced_seq     -- create, or lock if a racer did
 *       SELECT ... FOR UPDATE again
 *     no row and first_seq > 1: a gap after 0 (nothing created)
 *   last_seq <= synced_seq        -> already applied (a re-sent batch): nothing to write
 *   first_seq > synced_seq + 1    -> a gap: nothing written, error ack
 *   else rows with seq > synced_seq join multi-row
 *       INSERT INTO deduction_detail (...) VALUES (...),(...)   -- <= 1000 rows each
 * then for each batch that wrote rows:
 *   UPDATE stock_partition SET synced_seq=last, deducted=deducted+sum(qty),
 *          detail_rows=detail_rows+rows WHERE sku_id=? AND partition_id=? AND synced_seq=old
 * and COMMIT (ROLLBACK when nothing was written).
 *
 * Why these choices:
 *  - Lock first, create only when absent. The brief's INSERT IGNORE before the
 *    locking read takes a shared lock on an existing row; two workers holding it
 *    both then ask for the exclusive one and deadlock, on every duplicate batch.
 *    ON DUPLICATE KEY UPDATE takes the exclusive lock at once and, unlike IGNORE,
 *    does not turn other errors into warnings.
 *  - Detail rows use a plain INSERT: a duplicate primary key would mean the seq
 *    logic above is wrong, and must fail the transaction (1062), not vanish.
 *  - Detail rows travel as escaped text in multi-row statements: one round trip
 *    per 1000 rows without a prepared statement per row count. Values are
 *    numbers we format and strings through mysql_real_escape_string.
 *  - The UPDATE repeats the old synced_seq in its WHERE and must touch exactly
 *    one row: both sides of the lock assert the same fact.
 *  - The transaction body runs again after a deadlock or a lost connection (even
 *    after a COMMIT whose answer was lost): every decision is re-read from the
 *    locked row, so a redo after a commit that did happen finds the batch
 *    applied and writes nothing. */
#include "sw_apply.h"

#include "sh_log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SA_MOD "apply"

static const char SQL_IDENTITY[] =
    "SELECT seq, order_id, qty FROM deduction_detail "
    "WHERE sku_id = ? AND partition_id = ? AND seq BETWEEN ? AND ? ORDER BY seq";
static const char SQL_LOCK[] =
    "SELECT synced_seq FROM stock_partition WHERE sku_id = ? AND partition_id = ? FOR UPDATE";
static const char SQL_CREATE[] = "INSERT INTO stock_partition (sku_id, partition_id) VALUES (?, ?) "
                                 "ON DUPLICATE KEY UPDATE synced_seq = synced_seq";
static const char SQL_ADVANCE[] =
    "UPDATE stock_partition SET synced_seq = ?, deducted = deducted + ?, "
    "detail_rows = detail_rows + ? WHERE sku_id = ? AND partition_id = ? AND synced_seq = ?";
static const char SQL_QUERY[] =
    "SELECT synced_seq FROM stock_partition WHERE sku_id = ? AND partition_id = ?";
static const char SQL_INSERT_HEAD[] =
    "INSERT INTO deduction_detail "
    "(sku_id, partition_id, seq, order_id, user_id, qty, sub_domain, created_ms) VALUES ";

/* One row at most: quotes, commas, parentheses, five numbers of at most 20
 * characters and three escaped strings. */
#define SA_ROW_BYTES_MAX                                                                           \
    (16 + 5 * 21 + 2 * SH_SKU_ID_CHARS_MAX + 2 * SH_ORDER_ID_CHARS_MAX + 2 * SH_USER_ID_CHARS_MAX)
#define SA_SQL_BYTES (sizeof SQL_INSERT_HEAD + SW_APPLY_INSERT_ROWS_MAX * SA_ROW_BYTES_MAX)

_Static_assert(SA_SQL_BYTES < 1024 * 1024, "one INSERT stays far below max_allowed_packet");

struct sw_apply {
    sw_stats *stats;
    char *sql; /* SA_SQL_BYTES */
    size_t sql_len;
    size_t sql_rows;
};

/* The transaction's argument: the group and its lock order. */
typedef struct sa_group {
    sw_apply *a;
    sw_apply_item *items;
    size_t n;
    size_t order[SW_APPLY_GROUP_MAX];
} sa_group;

sh_err sw_apply_new(sw_apply **out, sw_stats *stats)
{
    SH_ASSERT(out != NULL && stats != NULL);
    *out = NULL;
    sw_apply *a = calloc(1, sizeof *a);
    if (a == NULL) {
        return SH_ENOMEM;
    }
    a->sql = malloc(SA_SQL_BYTES);
    if (a->sql == NULL) {
        free(a);
        return SH_ENOMEM;
    }
    a->stats = stats;
    *out = a;
    return SH_OK;
}

void sw_apply_free(sw_apply *a)
{
    if (a == NULL) {
        return;
    }
    free(a->sql);
    free(a);
}

static void sa_message(sw_apply_item *it, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sa_message(sw_apply_item *it, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->message, sizeof it->message, fmt, ap);
    va_end(ap);
}

/* ---- the multi-row INSERT ------------------------------------------------------ */

static void sa_sql_reset(sw_apply *a)
{
    memcpy(a->sql, SQL_INSERT_HEAD, sizeof SQL_INSERT_HEAD - 1);
    a->sql_len = sizeof SQL_INSERT_HEAD - 1;
    a->sql_rows = 0;
}

/* Sends the rows gathered so far, if any; each must be inserted. */
static sw_db sa_sql_flush(sw_apply *a, sw_mysql *m)
{
    if (a->sql_rows == 0) {
        return SW_DB_OK;
    }
    uint64_t affected = 0;
    sw_db v = sw_mysql_exec(m, a->sql, a->sql_len, &affected);
    if (v == SW_DB_OK && affected != a->sql_rows) {
        sw_mysql_set_error(m, "detail insert wrote %" PRIu64 " of %zu rows", affected, a->sql_rows);
        v = SW_DB_FAIL;
    }
    sa_sql_reset(a);
    return v;
}

static void sa_put(sw_apply *a, const char *s, size_t n)
{
    SH_ASSERT(a->sql_len + n < SA_SQL_BYTES);
    memcpy(a->sql + a->sql_len, s, n);
    a->sql_len += n;
}

static void sa_put_str(sw_apply *a, sw_mysql *m, const char *s, size_t n)
{
    SH_ASSERT(a->sql_len + 2 * n + 2 < SA_SQL_BYTES);
    a->sql[a->sql_len++] = '\'';
    a->sql_len += sw_mysql_escape(m, a->sql + a->sql_len, s, n);
    a->sql[a->sql_len++] = '\'';
}

/* Appends one detail row, flushing first when the statement is full. */
static sw_db sa_sql_row(sw_apply *a, sw_mysql *m, const sw_apply_item *it, const sh_wire_detail *d)
{
    if (a->sql_rows == SW_APPLY_INSERT_ROWS_MAX) {
        sw_db v = sa_sql_flush(a, m);
        if (v != SW_DB_OK) {
            return v;
        }
    }
    SH_ASSERT(a->sql_len + SA_ROW_BYTES_MAX < SA_SQL_BYTES);
    if (a->sql_rows > 0) {
        sa_put(a, ",", 1);
    }
    sa_put(a, "('", 2);
    sa_put(a, it->sku_esc, it->sku_esc_len);
    char num[96];
    int k = snprintf(num, sizeof num, "',%u,%" PRIu64 ",", (unsigned)it->head->partition, d->seq);
    SH_ASSERT(k > 0 && (size_t)k < sizeof num);
    sa_put(a, num, (size_t)k);
    sa_put_str(a, m, d->order_id, d->order_id_len);
    sa_put(a, ",", 1);
    sa_put_str(a, m, d->user_id, d->user_id_len);
    k = snprintf(num, sizeof num, ",%" PRId32 ",%u,%" PRId64 ")", d->qty, (unsigned)d->sub_domain,
                 d->created_ms);
    SH_ASSERT(k > 0 && (size_t)k < sizeof num);
    sa_put(a, num, (size_t)k);
    a->sql_rows++;
    return SW_DB_OK;
}

/* ---- the transaction ----------------------------------------------------------- */

/* Locks the partition row; *found 0 when it does not exist. */
static sw_db sa_lock(sw_mysql *m, const sw_apply_item *it, int *found, uint64_t *synced)
{
    sw_param p[2] = {sw_p_str(it->head->sku, it->head->sku_len), sw_p_u64(it->head->partition)};
    sw_col c = {.type = SW_P_U64};
    uint64_t rows = 0;
    sw_db v = sw_mysql_stmt(m, SQL_LOCK, p, 2, &c, 1, NULL, NULL, &rows, NULL);
    if (v != SW_DB_OK) {
        return v;
    }
    *found = rows > 0 && !c.is_null;
    *synced = *found ? c.u64 : 0;
    return SW_DB_OK;
}

static void sa_gap(sw_apply_item *it, uint64_t synced)
{
    it->status = SH_EINVAL;
    it->synced_seq = synced;
    sa_message(it, "gap after synced_seq %" PRIu64 ": batch starts at %" PRIu64, synced,
               it->head->first_seq);
}

/* The identity check of the details at or below synced_seq: the batch and
 * MySQL must name the same order and qty at every seq. */
typedef struct sa_ident {
    sw_apply_item *it;
    uint64_t next; /* the seq the next row must have */
    uint64_t upto;
    char order[SH_ORDER_ID_CHARS_MAX + 1];
    bool diverged;
} sa_ident;

static void sa_diverged(sa_ident *x, uint64_t seq, const char *what)
{
    x->diverged = true;
    const sh_wire_detail *d = &x->it->details[seq - x->it->head->first_seq];
    sa_message(x->it, "seq %" PRIu64 ": %s; Redis sent order %s qty %" PRId32, seq, what,
               d->order_id, d->qty);
}

static sw_db sa_ident_row(void *arg, const sw_col *cols, size_t ncols)
{
    sa_ident *x = arg;
    SH_ASSERT(ncols == 3);
    if (x->diverged) {
        return SW_DB_OK;
    }
    uint64_t seq = cols[0].u64;
    if (seq != x->next) {
        sa_diverged(x, x->next, "MySQL has no detail there");
        return SW_DB_OK;
    }
    const sh_wire_detail *d = &x->it->details[seq - x->it->head->first_seq];
    if (cols[1].len != d->order_id_len || memcmp(cols[1].buf, d->order_id, cols[1].len) != 0 ||
        cols[2].i64 != d->qty) {
        char what[SH_MESSAGE_CHARS_MAX / 2];
        snprintf(what, sizeof what, "MySQL has order %.*s qty %" PRId64, (int)cols[1].len,
                 cols[1].buf, cols[2].i64);
        sa_diverged(x, seq, what);
        return SW_DB_OK;
    }
    x->next++;
    return SW_DB_OK;
}

/* Details a batch carries at or below synced_seq were applied before (a
 * resend, a restarted node shipping from its last trim): they must be the
 * same deductions MySQL holds. A failover to a replica that lacked some of
 * them makes Redis hand their seqs to other orders; skipping them would lose
 * those silently. SH_EDIVERGED then, and nothing of the batch is written. */
static sw_db sa_verify(sw_mysql *m, sw_apply_item *it, uint64_t synced)
{
    const sh_wire_batch *h = it->head;
    uint64_t upto = h->last_seq < synced ? h->last_seq : synced;
    sa_ident x = {.it = it, .next = h->first_seq, .upto = upto};
    sw_param p[4] = {sw_p_str(h->sku, h->sku_len), sw_p_u64(h->partition), sw_p_u64(h->first_seq),
                     sw_p_u64(upto)};
    sw_col c[3] = {{.type = SW_P_U64},
                   {.type = SW_P_STR, .buf = x.order, .cap = sizeof x.order},
                   {.type = SW_P_I64}};
    sw_db v = sw_mysql_stmt(m, SQL_IDENTITY, p, 4, c, 3, sa_ident_row, &x, NULL, NULL);
    if (v != SW_DB_OK) {
        return v;
    }
    if (!x.diverged && x.next <= upto) {
        sa_diverged(&x, x.next, "MySQL has no detail there");
    }
    if (x.diverged) {
        it->status = SH_EDIVERGED;
        it->synced_seq = synced;
    }
    return SW_DB_OK;
}

/* Decides one batch against its locked row and queues its rows. */
static sw_db sa_one(sw_apply *a, sw_mysql *m, sw_apply_item *it)
{
    const sh_wire_batch *h = it->head;
    int found = 0;
    uint64_t synced = 0;
    sw_db v = sa_lock(m, it, &found, &synced);
    if (v != SW_DB_OK) {
        return v;
    }
    if (!found) {
        if (h->first_seq > 1) {
            sa_gap(it, 0);
            return SW_DB_OK;
        }
        sw_param p[2] = {sw_p_str(h->sku, h->sku_len), sw_p_u64(h->partition)};
        v = sw_mysql_stmt(m, SQL_CREATE, p, 2, NULL, 0, NULL, NULL, NULL, NULL);
        if (v != SW_DB_OK) {
            return v;
        }
        v = sa_lock(m, it, &found, &synced);
        if (v != SW_DB_OK) {
            return v;
        }
        if (!found) {
            sw_mysql_set_error(m, "stock_partition row of %s/%u missing after insert", h->sku,
                               (unsigned)h->partition);
            return SW_DB_FAIL;
        }
    }
    it->synced_seq = synced;
    if (h->first_seq <= synced) {
        v = sa_verify(m, it, synced);
        if (v != SW_DB_OK || it->status != SH_OK) {
            return v;
        }
    }
    if (h->last_seq <= synced) {
        it->skipped = it->n; /* a batch sent again: all of it is in already */
        return SW_DB_OK;
    }
    if (h->first_seq > synced + 1) {
        sa_gap(it, synced);
        return SW_DB_OK;
    }
    /* first_seq <= synced + 1 <= last_seq, so 0 <= start < n. */
    size_t start = (size_t)(synced + 1 - h->first_seq);
    SH_ASSERT(start < it->n && it->details[start].seq == synced + 1);
    it->sku_esc_len = sw_mysql_escape(m, it->sku_esc, h->sku, h->sku_len);
    int64_t sum = 0;
    for (size_t i = start; i < it->n; i++) {
        v = sa_sql_row(a, m, it, &it->details[i]);
        if (v != SW_DB_OK) {
            return v;
        }
        sum += it->details[i].qty;
    }
    it->skipped = start;
    it->inserted = it->n - start;
    it->qty_sum = sum;
    it->old_synced = synced;
    it->synced_seq = h->last_seq;
    it->write = 1;
    return SW_DB_OK;
}

static sw_db sa_advance(sw_mysql *m, const sw_apply_item *it)
{
    const sh_wire_batch *h = it->head;
    sw_param p[6] = {sw_p_u64(h->last_seq),  sw_p_i64(it->qty_sum),
                     sw_p_u64(it->inserted), sw_p_str(h->sku, h->sku_len),
                     sw_p_u64(h->partition), sw_p_u64(it->old_synced)};
    uint64_t affected = 0;
    sw_db v = sw_mysql_stmt(m, SQL_ADVANCE, p, 6, NULL, 0, NULL, NULL, NULL, &affected);
    if (v == SW_DB_OK && affected != 1) {
        sw_mysql_set_error(m,
                           "stock_partition row of %s/%u did not hold synced_seq %" PRIu64
                           " under its lock (updated %" PRIu64 " rows)",
                           h->sku, (unsigned)h->partition, it->old_synced, affected);
        v = SW_DB_FAIL;
    }
    return v;
}

static sw_db sa_body(sw_mysql *m, void *arg)
{
    sa_group *g = arg;
    sw_apply *a = g->a;
    for (size_t i = 0; i < g->n; i++) {
        sw_apply_item *it = &g->items[i];
        it->status = SH_OK;
        it->synced_seq = 0;
        it->inserted = 0;
        it->skipped = 0;
        it->message[0] = '\0';
        it->old_synced = 0;
        it->qty_sum = 0;
        it->write = 0;
    }
    sa_sql_reset(a);
    int writes = 0;
    for (size_t k = 0; k < g->n; k++) {
        sw_apply_item *it = &g->items[g->order[k]];
        sw_db v = sa_one(a, m, it);
        if (v != SW_DB_OK) {
            return v;
        }
        writes += it->write;
    }
    sw_db v = sa_sql_flush(a, m);
    if (v != SW_DB_OK) {
        return v;
    }
    for (size_t k = 0; k < g->n; k++) {
        const sw_apply_item *it = &g->items[g->order[k]];
        if (it->write) {
            v = sa_advance(m, it);
            if (v != SW_DB_OK) {
                return v;
            }
        }
    }
    /* Nothing written (all re-sent, or a gap): roll back, which also drops nothing. */
    return writes > 0 ? SW_DB_OK : SW_DB_ABORT;
}

/* (sku, partition) order: the lock order every worker follows. */
static int sa_before(const sw_apply_item *x, const sw_apply_item *y)
{
    int c = strcmp(x->head->sku, y->head->sku);
    if (c != 0) {
        return c < 0;
    }
    return x->head->partition < y->head->partition;
}

static void sa_sort(sa_group *g)
{
    for (size_t i = 0; i < g->n; i++) {
        g->order[i] = i;
    }
    for (size_t i = 1; i < g->n; i++) { /* insertion sort: n <= 64 */
        size_t x = g->order[i];
        size_t j = i;
        while (j > 0 && sa_before(&g->items[x], &g->items[g->order[j - 1]])) {
            g->order[j] = g->order[j - 1];
            j--;
        }
        g->order[j] = x;
    }
}

static void sa_count(sw_apply *a, const sw_apply_item *it)
{
    sw_stats *s = a->stats;
    if (it->status == SH_EINVAL) {
        atomic_fetch_add(&s->gaps, 1);
        return;
    }
    if (it->status != SH_OK) {
        atomic_fetch_add(&s->mysql_errors, 1);
        return;
    }
    sw_stats_batch_size(s, it->n);
    atomic_fetch_add(&s->details_duplicate, it->skipped);
    if (it->inserted > 0) {
        atomic_fetch_add(&s->batches_applied, 1);
        atomic_fetch_add(&s->details_inserted, it->inserted);
    } else {
        atomic_fetch_add(&s->batches_duplicate, 1);
    }
}

/* Runs one group; on failure every item carries the error. Returns the verdict. */
static sw_db sa_run(sw_apply *a, sw_mysql *m, sw_apply_item *items, size_t n)
{
    sa_group g = {.a = a, .items = items, .n = n};
    sa_sort(&g);
    sw_db verdict = SW_DB_OK;
    sh_err rc = sw_mysql_tx(m, sa_body, &g, &verdict);
    if (rc == SH_OK) {
        return verdict;
    }
    for (size_t i = 0; i < n; i++) {
        items[i].status = rc;
        items[i].synced_seq = 0;
        items[i].inserted = 0;
        items[i].skipped = 0;
        sa_message(&items[i], "%s", sw_mysql_error(m));
    }
    return verdict;
}

void sw_apply_batches(sw_apply *a, sw_mysql *m, sw_apply_item *items, size_t n)
{
    SH_ASSERT(a != NULL && m != NULL && items != NULL);
    SH_ASSERT(n >= 1 && n <= SW_APPLY_GROUP_MAX);
    for (size_t i = 0; i < n; i++) {
        SH_ASSERT(items[i].head != NULL && items[i].details != NULL && items[i].n >= 1);
        SH_ASSERT(items[i].n == items[i].head->last_seq - items[i].head->first_seq + 1);
        for (size_t j = 0; j < i; j++) { /* the caller keeps partitions apart */
            SH_ASSERT(items[i].head->partition != items[j].head->partition ||
                      strcmp(items[i].head->sku, items[j].head->sku) != 0);
        }
    }
    sw_db verdict = sa_run(a, m, items, n);
    if (verdict == SW_DB_FAIL && n > 1) {
        /* Something in the group's data failed; find out which batch, alone. */
        SH_WARN(SA_MOD, "group of %zu batches failed, applying them one by one", n);
        for (size_t i = 0; i < n; i++) {
            sa_run(a, m, &items[i], 1);
        }
    }
    for (size_t i = 0; i < n; i++) {
        const sw_apply_item *it = &items[i];
        sa_count(a, it);
        if (it->status != SH_OK) {
            SH_WARN(SA_MOD,
                    "batch refused sku=%s partition=%u first_seq=%" PRIu64 " last_seq=%" PRIu64
                    " status=%s message=\"%s\"",
                    it->head->sku, (unsigned)it->head->partition, it->head->first_seq,
                    it->head->last_seq, sh_strerror(it->status), it->message);
        }
    }
}

/* ---- the synced_seq question ----------------------------------------------------- */

static sw_db sa_query_body(sw_mysql *m, void *arg)
{
    sw_apply_item *it = arg;
    sw_param p[2] = {sw_p_str(it->head->sku, it->head->sku_len), sw_p_u64(it->head->partition)};
    sw_col c = {.type = SW_P_U64};
    uint64_t rows = 0;
    it->synced_seq = 0;
    sw_db v = sw_mysql_stmt(m, SQL_QUERY, p, 2, &c, 1, NULL, NULL, &rows, NULL);
    if (v != SW_DB_OK) {
        return v;
    }
    it->synced_seq = rows > 0 && !c.is_null ? c.u64 : 0;
    return SW_DB_ABORT; /* read only: end the transaction without a commit */
}

void sw_apply_query(sw_apply *a, sw_mysql *m, sw_apply_item *item)
{
    SH_ASSERT(a != NULL && m != NULL && item != NULL && item->head != NULL && item->n == 0);
    item->status = SH_OK;
    item->inserted = 0;
    item->skipped = 0;
    item->message[0] = '\0';
    atomic_fetch_add(&a->stats->queries, 1);
    sh_err rc = sw_mysql_tx(m, sa_query_body, item, NULL);
    if (rc != SH_OK) {
        item->status = rc;
        item->synced_seq = 0;
        sa_message(item, "%s", sw_mysql_error(m));
        atomic_fetch_add(&a->stats->mysql_errors, 1);
    }
}
