/* sch_audit.c -- the invariant audit of one SKU, on the operator thread.
 *
 * Redis's own invariants (sh_audit: conservation, signs, oversell) plus the
 * comparison with MySQL (DESIGN.md 8.3), partition by partition, plus the
 * deep checks that read every order record:
 *
 *   exactness       Redis ded == SUM(qty) of MySQL's detail rows + qty of the
 *                   details still pending in Redis (seq > synced_seq), and
 *                   stock_partition.deducted == that SUM(qty)
 *   each detail once  COUNT(*) == detail_rows == synced_seq == MAX(seq)
 *   no lost detail  Redis seq == synced_seq + pending count, the pending
 *                   details being exactly synced_seq+1 .. seq
 *   not diverged    no partition marked diverged (DIVERGE)
 *   pending age     no pending pool work and no unshipped detail older than
 *                   SH_AUDIT_PENDING_AGE_MS_MAX
 *   details match   MySQL's rows at or below synced_seq are the deductions
 *                   and releases Redis's order records hold at those seqs:
 *                   same count, same sum of CRC-32 of "SEQ|ORDER|QTY"
 *                   (sh_audit_detail_chk; MySQL computes it in SQL)
 *   orders once     no order with two deduction rows in MySQL, none held by
 *                   two partitions in Redis
 *   user entries    with a per-user limit: each holder's entries in
 *                   {u:SKU:USER} add up to the units its orders hold
 *
 * One pass reads Redis first (counters, then each stream from ack+1 up to the
 * seq just read), then MySQL through a sync worker. That order tolerates the
 * node shipping meanwhile: a trim after the Redis read removes only details
 * MySQL committed before acking them, which MySQL's later read then counts.
 * Traffic can still make a pass inconsistent (MySQL overtaking the Redis read),
 * so passes repeat, SCH_AUDIT_PAUSE_MS apart, until one is consistent
 * or two in a row read the same numbers (then what is broken is broken), at
 * most SCH_AUDIT_PASSES_MAX times; otherwise the reply says stable:false.
 *
 * The deep checks run once, after the passes, and scan the order hashes AFTER
 * the last MySQL read: every detail MySQL holds at or below synced_seq was in
 * Redis before MySQL got it, so the scan sees its record, and a release made
 * during the scan has a seq above synced_seq and is left out on both sides.
 * That comparison is exact under traffic. The user entries are not (an order
 * taken during the scan moves both sides), so a mismatch is read again, up to
 * SCH_AUDIT_DEEP_TRIES times, and only the same mismatch twice is broken.
 * A user whose entries name orders nobody holds, and who holds nothing, is not
 * seen: holders are found from the records.
 *
 * Nothing here runs on the loop thread: sch_jobs.h gives this code its own
 * router and sync worker link, and the loop only queues the audit and writes
 * its reply. */
#include "sch_audit.h"

#include "sch_sync.h"

#include "sh_audit.h"
#include "sh_clock.h"
#include "sh_limits.h"
#include "sh_log.h"
#include "sh_stock.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SA_MOD "audit"

#define SCH_AUDIT_PASSES_MAX  10
#define SCH_AUDIT_PAUSE_MS    100
#define SCH_AUDIT_DETAILS_MAX 200000 /* pending details read per pass, all partitions */
#define SCH_AUDIT_TEXT_BYTES  240
#define SCH_AUDIT_DEEP_TRIES  3    /* deep scans while user entries keep changing */
#define SCH_AUDIT_SEEN_MIN    1024 /* first size of the table of orders seen */

typedef enum sch_chk_state { CHK_OK = 0, CHK_BROKEN, CHK_UNVERIFIED } sch_chk_state;

enum {
    CHK_CONSERVATION = 0,
    CHK_NO_NEGATIVE,
    CHK_NO_OVERSELL,
    CHK_EXACTNESS,
    CHK_DETAILS_ONCE,
    CHK_NO_LOST_DETAIL,
    CHK_NOT_DIVERGED,
    CHK_PENDING_AGE,   /* from here on: not in the pass loop's verdict */
    CHK_DETAILS_MATCH, /* the deep checks, run once after the passes */
    CHK_ORDERS_ONCE,
    CHK_USER_ENTRIES,
    CHK_COUNT_
};
#define CHK_BASE_COUNT CHK_PENDING_AGE /* the checks the passes repeat until they agree */

static const struct {
    const char *name;  /* JSON key */
    const char *label; /* what stockctl prints */
} sch_chk_names[CHK_COUNT_] = {
    [CHK_CONSERVATION] = {"conservation", "conservation"},
    [CHK_NO_NEGATIVE] = {"no_negative", "no negative counter"},
    [CHK_NO_OVERSELL] = {"no_oversell", "no oversell"},
    [CHK_EXACTNESS] = {"exactness", "exactness"},
    [CHK_DETAILS_ONCE] = {"details_once", "each detail once"},
    [CHK_NO_LOST_DETAIL] = {"no_lost_detail", "no lost detail"},
    [CHK_NOT_DIVERGED] = {"not_diverged", "no diverged partition"},
    [CHK_PENDING_AGE] = {"pending_age", "no old pending work"},
    [CHK_DETAILS_MATCH] = {"details_match", "details match Redis"},
    [CHK_ORDERS_ONCE] = {"orders_once", "each order once"},
    [CHK_USER_ENTRIES] = {"user_entries", "user counters"},
};

/* One partition compared: Redis, MySQL, and what lies between. */
typedef struct sch_audit_part {
    sh_audit_part_state red;
    sh_wire_sync_part my; /* zeros when MySQL has nothing of it */
    uint64_t pend_n;      /* details with seq > synced_seq read from the stream */
    int64_t pend_qty;
    int pend_contiguous; /* they are synced_seq+1 .. in order */
    size_t det_off, det_n;
    /* The deep scan: Redis's order records summed like MySQL's rows. */
    int records_exist;   /* the order hash exists (it expires after the sale) */
    uint64_t rec_chk;    /* sum of sh_audit_detail_chk over details at or below synced_seq */
    int64_t rec_details; /* how many such details the records hold */
    uint64_t lag_age_ms; /* the oldest unshipped detail's age */
} sch_audit_part;

/* One pass. */
typedef struct sch_audit_pass {
    sh_audit au;
    sch_audit_part p[SH_PARTITIONS_PER_SKU_MAX];
    int mysql_ok;    /* MySQL's state was read */
    int details_ok;  /* every pending detail fitted SCH_AUDIT_DETAILS_MAX */
    int mysql_extra; /* MySQL holds a partition index Redis does not have */
    uint16_t extra_part;
    int64_t my_qty, my_rows, my_ded, my_detail_rows;
    uint64_t my_synced, pend_n, red_seq;
    int64_t pend_qty;
    uint64_t my_dup_orders; /* MySQL: orders with more than one deduction row */
    char my_dup_order[SH_ORDER_ID_CHARS_MAX + 1];
    sch_chk_state chk[CHK_COUNT_];
    char text[CHK_COUNT_][SCH_AUDIT_TEXT_BYTES];
} sch_audit_pass;

/* The work area of one audit command (about 3.5 MB with the details). */
typedef struct sch_audit_work {
    sch_audit_pass cur, prev;
    sh_audit_detail *details; /* SCH_AUDIT_DETAILS_MAX */
    sh_audit_part_state red[SH_PARTITIONS_PER_SKU_MAX];
    sh_wire_sync_part my[SH_PARTITIONS_PER_SKU_MAX];
    sch_audit_input in; /* what the loop thread knew */
    int mysql_gave_up;  /* no worker answered: MySQL stays unverified, not asked again */
    char mysql_why[SCH_FAIL_MESSAGE_BYTES];
} sch_audit_work;

static void sch_chk_set(sch_audit_pass *ps, int c, sch_chk_state st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void sch_chk_set(sch_audit_pass *ps, int c, sch_chk_state st, const char *fmt, ...)
{
    ps->chk[c] = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->text[c], sizeof ps->text[c], fmt, ap);
    va_end(ap);
}

/* Reads Redis (counters and pending details) and then MySQL into w->cur. */
static sh_err sch_audit_read(struct sh_cluster *router, struct sch_sync *sync, const char *sku,
                             sch_audit_work *w, sch_fail *f)
{
    sch_audit_pass *ps = &w->cur;
    memset(ps, 0, sizeof *ps);
    sh_err rc = sh_audit_sku_parts(router, sku, &ps->au, w->red, SH_PARTITIONS_PER_SKU_MAX);
    if (rc == SH_ENOTFOUND) {
        sch_failf(f, "unknown_sku", "no SKU '%s' in Redis", sku);
        return rc;
    }
    if (rc != SH_OK) {
        sch_failf(f, "internal", "audit of %s: %s", sku, sh_strerror(rc));
        return rc;
    }
    ps->au.broken[sizeof ps->au.broken - 1] = '\0';
    int np = ps->au.partitions;
    SH_ASSERT(np >= 1 && np <= SH_PARTITIONS_PER_SKU_MAX);
    for (int i = 0; i < np; i++) {
        ps->p[i].red = w->red[i];
        ps->red_seq += w->red[i].seq;
    }
    if (w->mysql_gave_up || sync == NULL) {
        return SH_OK;
    }
    /* The details not acked yet, up to the seq just read. */
    size_t used = 0;
    ps->details_ok = 1;
    for (int i = 0; i < np && ps->details_ok; i++) {
        const sh_audit_part_state *r = &w->red[i];
        int truncated = 0;
        size_t n = 0;
        ps->p[i].det_off = used;
        rc = sh_audit_details_read(router, sku, r->index, r->salt, r->ack, r->seq,
                                   w->details + used, SCH_AUDIT_DETAILS_MAX - used, &n, &truncated);
        if (rc != SH_OK) {
            sch_failf(f, "internal", "audit of %s: reading the stream of partition %d: %s", sku, i,
                      sh_strerror(rc));
            return rc;
        }
        ps->p[i].det_n = n;
        used += n;
        ps->details_ok = !truncated;
    }
    /* Then MySQL. */
    sh_wire_sync_state_rep rep;
    size_t nmy = 0;
    char why[SCH_FAIL_MESSAGE_BYTES];
    rc = sch_sync_state(sync, sku, &rep, w->my, &nmy, why, sizeof why);
    if (rc != SH_OK || rep.status != SH_OK) {
        w->mysql_gave_up = 1;
        if (rc != SH_OK) {
            snprintf(w->mysql_why, sizeof w->mysql_why, "no sync worker answered (%.200s)", why);
        } else {
            snprintf(w->mysql_why, sizeof w->mysql_why,
                     "the sync worker could not read MySQL: %.190s", rep.message);
        }
        SH_WARN(SA_MOD, "MySQL not verified sku=%s why=\"%s\"", sku, w->mysql_why);
        return SH_OK;
    }
    ps->mysql_ok = 1;
    ps->my_dup_orders = rep.dup_orders;
    memcpy(ps->my_dup_order, rep.dup_order, rep.dup_order_len);
    ps->my_dup_order[rep.dup_order_len] = '\0';
    for (size_t k = 0; k < nmy; k++) {
        const sh_wire_sync_part *m = &w->my[k];
        if (m->partition >= np) {
            if (!ps->mysql_extra) {
                ps->mysql_extra = 1;
                ps->extra_part = m->partition;
            }
            continue;
        }
        ps->p[m->partition].my = *m;
    }
    return SH_OK;
}

/* Computes the checks of w->cur from what sch_audit_read read. */
static void sch_audit_check(sch_audit_work *w)
{
    sch_audit_pass *ps = &w->cur;
    const sh_audit *au = &ps->au;
    int np = au->partitions;
    /* Redis alone (sh_audit's verdicts). */
    if (au->conservation_ok) {
        sch_chk_set(ps, CHK_CONSERVATION, CHK_OK,
                    "total %" PRId64 " = pool %" PRId64 " + grants %" PRId64 " + returns %" PRId64
                    " + partitions %" PRId64 " + deducted %" PRId64,
                    au->total, au->avail, au->pending_grant_units, au->pending_return_units,
                    au->partition_units, au->deducted);
    } else {
        sch_chk_set(ps, CHK_CONSERVATION, CHK_BROKEN,
                    "total %" PRId64 " != pool %" PRId64 " + grants %" PRId64 " + returns %" PRId64
                    " + partitions %" PRId64 " + deducted %" PRId64,
                    au->total, au->avail, au->pending_grant_units, au->pending_return_units,
                    au->partition_units, au->deducted);
    }
    sch_chk_set(ps, CHK_NO_NEGATIVE, au->no_negative_ok ? CHK_OK : CHK_BROKEN, "%s",
                au->no_negative_ok ? "" : au->broken);
    sch_chk_set(ps, CHK_NO_OVERSELL, au->no_oversell_ok ? CHK_OK : CHK_BROKEN,
                "Redis %" PRId64 " %s total %" PRId64, au->deducted,
                au->no_oversell_ok ? "<=" : ">", au->total);
    if (au->diverged_part >= 0) {
        sch_chk_set(ps, CHK_NOT_DIVERGED, CHK_BROKEN,
                    "partition %d diverged from MySQL at seq %" PRId64 " (%s): reconcile it",
                    au->diverged_part, au->diverged_seq, au->diverged_why);
    } else {
        sch_chk_set(ps, CHK_NOT_DIVERGED, CHK_OK, "%s", "");
    }
    if (!ps->mysql_ok) {
        const char *why = w->mysql_why[0] ? w->mysql_why : "no sync worker link";
        sch_chk_set(ps, CHK_EXACTNESS, CHK_UNVERIFIED, "MySQL not verified: %s", why);
        sch_chk_set(ps, CHK_DETAILS_ONCE, CHK_UNVERIFIED, "MySQL not verified");
        sch_chk_set(ps, CHK_NO_LOST_DETAIL, CHK_UNVERIFIED, "MySQL not verified");
        return;
    }
    /* Per partition against MySQL. The first partition that breaks a check
     * names it; the sums describe the SKU when all hold. */
    int exact = -1, once = -1, lost = -1, neg = -1;
    for (int i = 0; i < np; i++) {
        sch_audit_part *p = &ps->p[i];
        const sh_wire_sync_part *m = &p->my;
        const sh_audit_detail *d = w->details + p->det_off;
        uint64_t expect = m->synced_seq + 1;
        p->pend_contiguous = 1;
        for (size_t k = 0; k < p->det_n; k++) {
            if (d[k].seq <= m->synced_seq) {
                continue; /* MySQL has it: committed, not acked yet when Redis was read */
            }
            p->pend_contiguous &= d[k].seq == expect;
            expect = d[k].seq + 1;
            p->pend_n++;
            p->pend_qty += d[k].qty;
        }
        ps->my_qty += m->qty_counted;
        ps->my_rows += m->rows_counted;
        ps->my_ded += m->deducted;
        ps->my_detail_rows += m->detail_rows;
        ps->my_synced += m->synced_seq;
        ps->pend_n += p->pend_n;
        ps->pend_qty += p->pend_qty;
        if (neg < 0 && (m->deducted < 0 || m->qty_counted < 0)) {
            neg = i;
        }
        if (exact < 0 &&
            (p->red.ded != m->qty_counted + p->pend_qty || m->deducted != m->qty_counted)) {
            exact = i;
        }
        if (once < 0 &&
            !(m->rows_counted == m->detail_rows && (uint64_t)m->detail_rows == m->synced_seq &&
              m->max_seq == m->synced_seq)) {
            once = i;
        }
        if (lost < 0 && !(m->synced_seq <= p->red.seq && p->pend_contiguous &&
                          p->red.seq == m->synced_seq + p->pend_n)) {
            lost = i;
        }
    }
    if (neg >= 0 && ps->chk[CHK_NO_NEGATIVE] == CHK_OK) {
        sch_chk_set(ps, CHK_NO_NEGATIVE, CHK_BROKEN,
                    "MySQL partition %d: deducted %" PRId64 ", SUM(qty) %" PRId64, neg,
                    ps->p[neg].my.deducted, ps->p[neg].my.qty_counted);
    }
    if (ps->my_ded > au->total || ps->my_qty > au->total) {
        sch_chk_set(ps, CHK_NO_OVERSELL, CHK_BROKEN,
                    "MySQL deducted %" PRId64 " (SUM(qty) %" PRId64 ") > total %" PRId64,
                    ps->my_ded, ps->my_qty, au->total);
    } else if (ps->chk[CHK_NO_OVERSELL] == CHK_OK) {
        sch_chk_set(ps, CHK_NO_OVERSELL, CHK_OK,
                    "Redis %" PRId64 " <= total %" PRId64 ", MySQL %" PRId64 " <= total",
                    au->deducted, au->total, ps->my_qty);
    }
    if (!ps->details_ok) {
        sch_chk_set(ps, CHK_EXACTNESS, CHK_UNVERIFIED,
                    "too many pending to verify: more than %d details pending in Redis",
                    SCH_AUDIT_DETAILS_MAX);
        sch_chk_set(ps, CHK_NO_LOST_DETAIL, CHK_UNVERIFIED,
                    "too many pending to verify: more than %d details pending in Redis",
                    SCH_AUDIT_DETAILS_MAX);
    } else {
        if (ps->mysql_extra) {
            sch_chk_set(ps, CHK_EXACTNESS, CHK_BROKEN,
                        "MySQL holds partition %u, which Redis does not have (%d partitions)",
                        (unsigned)ps->extra_part, np);
        } else if (exact >= 0) {
            const sch_audit_part *p = &ps->p[exact];
            sch_chk_set(ps, CHK_EXACTNESS, CHK_BROKEN,
                        "partition %d: Redis ded %" PRId64 " vs MySQL SUM(qty) %" PRId64
                        " + pending %" PRId64 " (stock_partition.deducted %" PRId64 ")",
                        exact, p->red.ded, p->my.qty_counted, p->pend_qty, p->my.deducted);
        } else {
            sch_chk_set(ps, CHK_EXACTNESS, CHK_OK,
                        "Redis %" PRId64 " = MySQL %" PRId64 " + pending %" PRId64
                        ", every partition",
                        au->deducted, ps->my_qty, ps->pend_qty);
        }
        if (lost >= 0) {
            const sch_audit_part *p = &ps->p[lost];
            sch_chk_set(ps, CHK_NO_LOST_DETAIL, CHK_BROKEN,
                        "partition %d: Redis seq %" PRIu64 " vs synced_seq %" PRIu64
                        " + pending %" PRIu64 "%s",
                        lost, p->red.seq, p->my.synced_seq, p->pend_n,
                        p->my.synced_seq > p->red.seq ? " (MySQL ahead of the Redis read)"
                        : !p->pend_contiguous         ? " (a gap in the pending details)"
                                                      : "");
        } else {
            sch_chk_set(ps, CHK_NO_LOST_DETAIL, CHK_OK,
                        "Redis seq %" PRIu64 " = synced_seq %" PRIu64 " + pending %" PRIu64
                        ", every partition",
                        ps->red_seq, ps->my_synced, ps->pend_n);
        }
    }
    if (once >= 0) {
        const sh_wire_sync_part *m = &ps->p[once].my;
        sch_chk_set(ps, CHK_DETAILS_ONCE, CHK_BROKEN,
                    "partition %d: rows %" PRId64 ", detail_rows %" PRId64 ", synced_seq %" PRIu64
                    ", max seq %" PRIu64,
                    once, m->rows_counted, m->detail_rows, m->synced_seq, m->max_seq);
    } else {
        sch_chk_set(ps, CHK_DETAILS_ONCE, CHK_OK,
                    "rows %" PRId64 " = detail_rows %" PRId64 " = synced_seq %" PRIu64
                    " = max seq, every partition",
                    ps->my_rows, ps->my_detail_rows, ps->my_synced);
    }
}

static int sch_audit_ok_upto(const sch_audit_pass *ps, int upto)
{
    for (int c = 0; c < upto; c++) {
        if (ps->chk[c] != CHK_OK) {
            return 0;
        }
    }
    return 1;
}

/* Two passes read the same numbers (texts follow from them). */
static int sch_audit_same(const sch_audit_pass *x, const sch_audit_pass *y)
{
    const sh_audit *a = &x->au, *b = &y->au;
    if (a->total != b->total || a->avail != b->avail ||
        a->pending_grant_units != b->pending_grant_units ||
        a->pending_return_units != b->pending_return_units ||
        a->partition_units != b->partition_units || a->deducted != b->deducted ||
        a->seq_sum != b->seq_sum || a->partitions != b->partitions || x->mysql_ok != y->mysql_ok ||
        x->details_ok != y->details_ok) {
        return 0;
    }
    for (int i = 0; i < a->partitions; i++) {
        const sch_audit_part *p = &x->p[i], *q = &y->p[i];
        const sh_wire_sync_part *m = &p->my, *n = &q->my;
        if (p->red.ded != q->red.ded || p->red.seq != q->red.seq || p->pend_n != q->pend_n ||
            p->pend_qty != q->pend_qty || m->synced_seq != n->synced_seq ||
            m->deducted != n->deducted || m->detail_rows != n->detail_rows ||
            m->rows_counted != n->rows_counted || m->qty_counted != n->qty_counted ||
            m->max_seq != n->max_seq) {
            return 0;
        }
    }
    return 1;
}

static int sch_audit_part_json(cJSON *arr, const sch_audit_pass *ps, int i)
{
    const sch_audit_part *p = &ps->p[i];
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) {
        return -1;
    }
    if (!cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        return -1;
    }
    if (sch_json_i64(o, "partition", i) != 0 || sch_json_i64(o, "redis_ded", p->red.ded) != 0 ||
        sch_json_u64(o, "redis_seq", p->red.seq) != 0 || sch_json_u64(o, "ack", p->red.ack) != 0) {
        return -1;
    }
    if (!ps->mysql_ok) {
        return 0;
    }
    if (sch_json_u64(o, "synced_seq", p->my.synced_seq) != 0 ||
        sch_json_i64(o, "mysql_deducted", p->my.deducted) != 0 ||
        sch_json_i64(o, "detail_rows", p->my.detail_rows) != 0 ||
        sch_json_i64(o, "rows_counted", p->my.rows_counted) != 0 ||
        sch_json_i64(o, "qty_counted", p->my.qty_counted) != 0 ||
        sch_json_u64(o, "max_seq", p->my.max_seq) != 0 ||
        sch_json_u64(o, "pending_details", p->pend_n) != 0 ||
        sch_json_i64(o, "pending_qty", p->pend_qty) != 0) {
        return -1;
    }
    return 0;
}

static cJSON *sch_audit_reply(const char *sku, const sch_audit_work *w, int stable, int passes,
                              sch_fail *f)
{
    const sch_audit_pass *ps = &w->cur;
    const sh_audit *au = &ps->au;
    int all_ok = sch_audit_ok_upto(ps, CHK_COUNT_);
    const char *broken = "";
    for (int c = 0; c < CHK_COUNT_ && broken[0] == '\0'; c++) {
        if (ps->chk[c] != CHK_OK) {
            broken = ps->text[c];
        }
    }
    cJSON *r = sch_json_reply_ok(f);
    if (r == NULL) {
        return NULL;
    }
    cJSON *inv = NULL, *checks = NULL, *parts = NULL;
    if (cJSON_AddStringToObject(r, "sku", sku) == NULL ||
        sch_json_i64(r, "total", au->total) != 0 || sch_json_i64(r, "avail", au->avail) != 0 ||
        sch_json_i64(r, "pending_grant_units", au->pending_grant_units) != 0 ||
        sch_json_i64(r, "pending_return_units", au->pending_return_units) != 0 ||
        sch_json_i64(r, "partition_units", au->partition_units) != 0 ||
        sch_json_i64(r, "deducted", au->deducted) != 0 ||
        sch_json_i64(r, "details_pending", au->details_pending) != 0 ||
        sch_json_u64(r, "seq_sum", au->seq_sum) != 0 ||
        sch_json_i64(r, "partitions", au->partitions) != 0 ||
        sch_json_bool(r, "stable", stable) != 0 || sch_json_i64(r, "passes", passes) != 0 ||
        sch_json_bool(r, "mysql_verified", ps->mysql_ok) != 0 ||
        sch_json_bool(r, "invariants_ok", all_ok) != 0 ||
        cJSON_AddStringToObject(r, "broken", broken) == NULL) {
        goto oom;
    }
    if (ps->mysql_ok) {
        if (sch_json_i64(r, "mysql_deducted", ps->my_qty) != 0 ||
            sch_json_i64(r, "mysql_detail_rows", ps->my_rows) != 0 ||
            sch_json_i64(r, "mysql_deducted_counter", ps->my_ded) != 0 ||
            sch_json_i64(r, "mysql_detail_rows_counter", ps->my_detail_rows) != 0 ||
            sch_json_u64(r, "mysql_synced_seq_sum", ps->my_synced) != 0 ||
            sch_json_u64(r, "unsynced_details", ps->pend_n) != 0 ||
            sch_json_i64(r, "unsynced_qty", ps->pend_qty) != 0) {
            goto oom;
        }
    } else if (cJSON_AddStringToObject(r, "mysql_error",
                                       w->mysql_why[0] ? w->mysql_why : "no sync worker link") ==
               NULL) {
        goto oom;
    }
    if ((inv = cJSON_AddObjectToObject(r, "invariants")) == NULL ||
        (checks = cJSON_AddArrayToObject(r, "checks")) == NULL) {
        goto oom;
    }
    for (int c = 0; c < CHK_COUNT_; c++) {
        static const char *const states[] = {"ok", "broken", "not_verified"};
        cJSON *o = cJSON_CreateObject();
        if (o == NULL || !cJSON_AddItemToArray(checks, o)) {
            cJSON_Delete(o);
            goto oom;
        }
        if (sch_json_bool(inv, sch_chk_names[c].name, ps->chk[c] == CHK_OK) != 0 ||
            cJSON_AddStringToObject(o, "name", sch_chk_names[c].name) == NULL ||
            cJSON_AddStringToObject(o, "label", sch_chk_names[c].label) == NULL ||
            cJSON_AddStringToObject(o, "state", states[ps->chk[c]]) == NULL ||
            cJSON_AddStringToObject(o, "detail", ps->text[c]) == NULL) {
            goto oom;
        }
    }
    if ((parts = cJSON_AddArrayToObject(r, "partition_report")) == NULL) {
        goto oom;
    }
    for (int i = 0; i < au->partitions; i++) {
        if (sch_audit_part_json(parts, ps, i) != 0) {
            goto oom;
        }
    }
    return r;
oom:
    cJSON_Delete(r);
    sch_failf(f, "internal", "out of memory");
    return NULL;
}

/* ---- the deep checks ------------------------------------------------------ */

/* One order seen by the scan, keyed by a 64-bit FNV-1a hash of its id (two
 * ids of one SKU sharing a hash, about 1 in 2^64 per pair, would read as one
 * order: the scan would skip the second, and the checksums then disagree, a
 * false alarm rather than a missed loss). */
typedef struct sa_seen {
    uint64_t h; /* 0 = empty slot */
    uint16_t part;
    uint8_t held;
} sa_seen;

typedef struct sa_holder {
    int64_t qty;
    char user[SH_USER_ID_CHARS_MAX + 1];
} sa_holder;

typedef struct sa_scan {
    sch_audit_part *p; /* the partition being scanned */
    uint16_t part;
    uint64_t cut; /* its synced_seq: details at or below it are compared */
    sa_seen *seen;
    size_t seen_cap, seen_n;
    int oom;
    int want_users;
    sa_holder *holders;
    size_t nholders, holders_cap;
    int holders_over; /* more than SH_AUDIT_HOLDERS_MAX held orders */
    uint64_t held_twice;
    uint16_t twice_p, twice_q;
    char twice_order[SH_ORDER_ID_CHARS_MAX + 1];
} sa_scan;

static uint64_t sa_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    }
    return h != 0 ? h : 1;
}

/* The slot of h: its entry, or the empty slot where it goes. */
static sa_seen *sa_slot(sa_seen *t, size_t cap, uint64_t h)
{
    size_t i = (size_t)h & (cap - 1);
    while (t[i].h != 0 && t[i].h != h) {
        i = (i + 1) & (cap - 1);
    }
    return &t[i];
}

static int sa_seen_grow(sa_scan *s)
{
    size_t cap = s->seen_cap ? s->seen_cap * 2 : SCH_AUDIT_SEEN_MIN;
    sa_seen *t = calloc(cap, sizeof *t);
    if (t == NULL) {
        return -1;
    }
    for (size_t i = 0; i < s->seen_cap; i++) {
        if (s->seen[i].h != 0) {
            *sa_slot(t, cap, s->seen[i].h) = s->seen[i];
        }
    }
    free(s->seen);
    s->seen = t;
    s->seen_cap = cap;
    return 0;
}

static int sa_holder_add(sa_scan *s, const sh_audit_record *rec)
{
    if (s->nholders == SH_AUDIT_HOLDERS_MAX) {
        s->holders_over = 1;
        return 0;
    }
    if (s->nholders == s->holders_cap) {
        size_t cap = s->holders_cap ? s->holders_cap * 2 : SCH_AUDIT_SEEN_MIN;
        sa_holder *h = realloc(s->holders, cap * sizeof *h);
        if (h == NULL) {
            return -1;
        }
        s->holders = h;
        s->holders_cap = cap;
    }
    sa_holder *h = &s->holders[s->nholders++];
    h->qty = rec->qty;
    memcpy(h->user, rec->user, rec->user_len);
    h->user[rec->user_len] = '\0';
    return 0;
}

/* sh_audit_records_scan's callback: one record of partition s->part. */
static int sa_record(void *arg, const sh_audit_record *rec)
{
    sa_scan *s = arg;
    if (s->seen_n * 2 >= s->seen_cap && sa_seen_grow(s) != 0) {
        s->oom = 1;
        return -1;
    }
    uint64_t h = sa_hash(rec->order, rec->order_len);
    int held = rec->relseq == 0;
    sa_seen *e = sa_slot(s->seen, s->seen_cap, h);
    if (e->h == h && e->part == s->part) {
        return 0; /* HSCAN gave it twice (the hash grew during the scan) */
    }
    if (e->h == h) {
        if (e->held && held && s->held_twice++ == 0) {
            s->twice_p = e->part;
            s->twice_q = s->part;
            memcpy(s->twice_order, rec->order, rec->order_len);
            s->twice_order[rec->order_len] = '\0';
        }
        if (held) {
            e->part = s->part;
            e->held = 1;
        }
    } else {
        *e = (sa_seen){.h = h, .part = s->part, .held = (uint8_t)held};
        s->seen_n++;
    }
    if (rec->seq <= s->cut) {
        s->p->rec_chk += sh_audit_detail_chk(rec->seq, rec->order, rec->order_len, rec->qty);
        s->p->rec_details++;
    }
    if (rec->relseq != 0 && rec->relseq <= s->cut) {
        s->p->rec_chk += sh_audit_detail_chk(rec->relseq, rec->order, rec->order_len, -rec->qty);
        s->p->rec_details++;
    }
    if (held && s->want_users && rec->user_len > 0 && sa_holder_add(s, rec) != 0) {
        s->oom = 1;
        return -1;
    }
    return 0;
}

static int sa_holder_cmp(const void *a, const void *b)
{
    return strcmp(((const sa_holder *)a)->user, ((const sa_holder *)b)->user);
}

/* The first holder whose entries disagree with its orders, and how many do. */
typedef struct sa_users {
    sch_chk_state st;
    size_t holders, mismatched;
    char user[SH_USER_ID_CHARS_MAX + 1];
    int64_t held, entries;
    char why[SCH_AUDIT_TEXT_BYTES];
} sa_users;

/* Compares each holder's entries with what its orders hold. */
static void sa_users_check(struct sh_cluster *router, const char *sku, sa_scan *s, sa_users *u)
{
    memset(u, 0, sizeof *u);
    if (s->holders_over) {
        u->st = CHK_UNVERIFIED;
        snprintf(u->why, sizeof u->why, "more than %d held orders to compare",
                 SH_AUDIT_HOLDERS_MAX);
        return;
    }
    qsort(s->holders, s->nholders, sizeof *s->holders, sa_holder_cmp);
    size_t n = 0; /* aggregate in place: holders[0..n) one per user, qty summed */
    for (size_t i = 0; i < s->nholders; i++) {
        if (n > 0 && strcmp(s->holders[n - 1].user, s->holders[i].user) == 0) {
            s->holders[n - 1].qty += s->holders[i].qty;
        } else {
            s->holders[n++] = s->holders[i];
        }
    }
    u->holders = n;
    const char **users = malloc((n ? n : 1) * sizeof *users);
    int64_t *sums = malloc((n ? n : 1) * sizeof *sums);
    sh_err rc = users != NULL && sums != NULL ? SH_OK : SH_ENOMEM;
    for (size_t i = 0; rc == SH_OK && i < n; i++) {
        users[i] = s->holders[i].user;
    }
    if (rc == SH_OK) {
        rc = sh_audit_user_sums(router, sku, users, n, sums);
    }
    if (rc != SH_OK) {
        u->st = CHK_UNVERIFIED;
        snprintf(u->why, sizeof u->why, "cannot read the user entries: %s", sh_strerror(rc));
    } else {
        for (size_t i = 0; i < n; i++) {
            if (sums[i] == s->holders[i].qty) {
                continue;
            }
            if (u->mismatched++ == 0) {
                snprintf(u->user, sizeof u->user, "%s", s->holders[i].user);
                u->held = s->holders[i].qty;
                u->entries = sums[i];
            }
        }
        u->st = u->mismatched == 0 ? CHK_OK : CHK_BROKEN;
    }
    free(users);
    free(sums);
}

/* One deep scan of every partition's order hash into s (and each part's
 * rec_* fields). SH_OK, or the router's error / SH_ENOMEM. */
static sh_err sa_scan_all(struct sh_cluster *router, const char *sku, sch_audit_work *w, sa_scan *s)
{
    sch_audit_pass *ps = &w->cur;
    for (int i = 0; i < ps->au.partitions; i++) {
        sch_audit_part *p = &ps->p[i];
        p->rec_chk = 0;
        p->rec_details = 0;
        s->p = p;
        s->part = (uint16_t)i;
        s->cut = ps->mysql_ok ? p->my.synced_seq : 0;
        sh_err rc = sh_audit_records_scan(router, sku, p->red.index, p->red.salt, sa_record, s,
                                          &p->records_exist);
        if (rc != SH_OK) {
            return s->oom ? SH_ENOMEM : rc;
        }
    }
    return SH_OK;
}

static void sa_scan_reset(sa_scan *s)
{
    free(s->seen);
    free(s->holders);
    memset(s, 0, sizeof *s);
}

/* details_match and orders_once from one scan. */
static void sa_judge_records(sch_audit_pass *ps, const sa_scan *s)
{
    int np = ps->au.partitions;
    if (!ps->mysql_ok) {
        sch_chk_set(ps, CHK_DETAILS_MATCH, CHK_UNVERIFIED, "MySQL not verified");
    } else {
        int bad = -1, expired = -1;
        int64_t compared = 0;
        for (int i = 0; i < np; i++) {
            const sch_audit_part *p = &ps->p[i];
            if (!p->records_exist && p->my.rows_counted > 0) {
                expired = expired < 0 ? i : expired;
                continue;
            }
            compared += p->rec_details;
            if (bad < 0 && (p->rec_chk != p->my.chk || p->rec_details != p->my.rows_counted)) {
                bad = i;
            }
        }
        if (bad >= 0) {
            const sch_audit_part *p = &ps->p[bad];
            sch_chk_set(
                ps, CHK_DETAILS_MATCH, CHK_BROKEN,
                "partition %d: MySQL's %" PRId64 " details up to seq %" PRIu64
                " are not the %" PRId64 " Redis recorded (checksum %" PRIu64 " vs %" PRIu64 ")",
                bad, p->my.rows_counted, p->my.synced_seq, p->rec_details, p->my.chk, p->rec_chk);
        } else if (expired >= 0) {
            sch_chk_set(ps, CHK_DETAILS_MATCH, CHK_UNVERIFIED,
                        "partition %d: Redis's order records expired (order_ttl)", expired);
        } else {
            sch_chk_set(ps, CHK_DETAILS_MATCH, CHK_OK,
                        "%" PRId64 " details in MySQL = Redis's order records, every partition",
                        compared);
        }
    }
    if (ps->mysql_ok && ps->my_dup_orders > 0) {
        sch_chk_set(ps, CHK_ORDERS_ONCE, CHK_BROKEN,
                    "order %s has more than one deduction in MySQL (%" PRIu64 " such orders)",
                    ps->my_dup_order, ps->my_dup_orders);
    } else if (s->held_twice > 0) {
        sch_chk_set(ps, CHK_ORDERS_ONCE, CHK_BROKEN,
                    "order %s is held by partitions %u and %u in Redis (%" PRIu64 " such orders)",
                    s->twice_order, (unsigned)s->twice_p, (unsigned)s->twice_q, s->held_twice);
    } else if (!ps->mysql_ok) {
        sch_chk_set(ps, CHK_ORDERS_ONCE, CHK_UNVERIFIED,
                    "MySQL not verified; no order held twice in Redis (%zu orders)", s->seen_n);
    } else {
        sch_chk_set(ps, CHK_ORDERS_ONCE, CHK_OK,
                    "%zu orders in Redis, none held twice; none twice in MySQL", s->seen_n);
    }
}

/* pending_age from the loop thread's pending pool work and the partitions' lag. */
static void sa_judge_age(struct sh_cluster *router, const char *sku, sch_audit_work *w)
{
    sch_audit_pass *ps = &w->cur;
    int np = ps->au.partitions;
    uint16_t salts[SH_PARTITIONS_PER_SKU_MAX];
    sh_audit_lag lag[SH_PARTITIONS_PER_SKU_MAX];
    for (int i = 0; i < np; i++) {
        salts[i] = ps->p[i].red.salt;
    }
    sh_err rc = sh_audit_lag_read(router, sku, salts, (size_t)np, sh_clock_wall_ms(), lag);
    if (rc != SH_OK) {
        sch_chk_set(ps, CHK_PENDING_AGE, CHK_UNVERIFIED, "cannot read the partitions' lag: %s",
                    sh_strerror(rc));
        return;
    }
    uint64_t oldest = 0;
    int oldest_part = -1;
    for (int i = 0; i < np; i++) {
        ps->p[i].lag_age_ms = lag[i].oldest_pending_age_ms;
        if (lag[i].oldest_pending_age_ms > oldest) {
            oldest = lag[i].oldest_pending_age_ms;
            oldest_part = i;
        }
    }
    const sch_audit_input *in = &w->in;
    uint64_t bound = in->pending_age_ms_max;
    if (in->pending_age_ms > bound) {
        sch_chk_set(ps, CHK_PENDING_AGE, CHK_BROKEN,
                    "partition %d: pool work pending for %" PRIu64 " ms (bound %" PRIu64 " ms)",
                    in->pending_part, in->pending_age_ms, bound);
    } else if (oldest > bound) {
        sch_chk_set(ps, CHK_PENDING_AGE, CHK_BROKEN,
                    "partition %d: a detail unshipped for %" PRIu64 " ms (bound %" PRIu64 " ms)",
                    oldest_part, oldest, bound);
    } else {
        sch_chk_set(ps, CHK_PENDING_AGE, CHK_OK,
                    "oldest pool work %" PRIu64 " ms, oldest unshipped detail %" PRIu64
                    " ms (bound %" PRIu64 " ms)",
                    in->pending_age_ms, oldest, bound);
    }
}

/* The deep checks on w->cur, after the last pass. */
static void sa_deep(struct sh_cluster *router, const char *sku, sch_audit_work *w)
{
    sch_audit_pass *ps = &w->cur;
    sa_judge_age(router, sku, w);
    sa_users prev;
    memset(&prev, 0, sizeof prev);
    for (int t = 1; t <= SCH_AUDIT_DEEP_TRIES; t++) {
        sa_scan s;
        memset(&s, 0, sizeof s);
        s.want_users = ps->au.per_user_limit > 0;
        sh_err rc = sa_scan_all(router, sku, w, &s);
        if (rc != SH_OK) {
            const char *why = sh_strerror(rc);
            sch_chk_set(ps, CHK_DETAILS_MATCH, CHK_UNVERIFIED, "scan failed: %s", why);
            sch_chk_set(ps, CHK_ORDERS_ONCE, CHK_UNVERIFIED, "scan failed: %s", why);
            sch_chk_set(ps, CHK_USER_ENTRIES, CHK_UNVERIFIED, "scan failed: %s", why);
            sa_scan_reset(&s);
            return;
        }
        sa_judge_records(ps, &s);
        if (!s.want_users) {
            sch_chk_set(ps, CHK_USER_ENTRIES, CHK_OK, "no per-user limit: no entries kept");
            sa_scan_reset(&s);
            return;
        }
        sa_users u;
        sa_users_check(router, sku, &s, &u);
        sa_scan_reset(&s);
        if (u.st == CHK_OK) {
            sch_chk_set(ps, CHK_USER_ENTRIES, CHK_OK,
                        "%zu holders: entries = units held, each (limit %" PRId64 ")", u.holders,
                        ps->au.per_user_limit);
            return;
        }
        if (u.st == CHK_UNVERIFIED) {
            sch_chk_set(ps, CHK_USER_ENTRIES, CHK_UNVERIFIED, "%s", u.why);
            return;
        }
        if (t > 1 && strcmp(u.user, prev.user) == 0 && u.held == prev.held &&
            u.entries == prev.entries) {
            sch_chk_set(ps, CHK_USER_ENTRIES, CHK_BROKEN,
                        "user %s holds %" PRId64 " units but its entries say %" PRId64
                        " (%zu of %zu holders differ)",
                        u.user, u.held, u.entries, u.mismatched, u.holders);
            return;
        }
        prev = u;
        sh_clock_sleep_ms(SCH_AUDIT_PAUSE_MS);
    }
    sch_chk_set(ps, CHK_USER_ENTRIES, CHK_UNVERIFIED,
                "user entries kept changing during the audit (user %s: %" PRId64
                " held, entries %" PRId64 ")",
                prev.user, prev.held, prev.entries);
}

/* ---- the command ---------------------------------------------------------- */

cJSON *sch_audit_run(struct sh_cluster *router, struct sch_sync *sync, const sch_audit_input *in,
                     sch_fail *f)
{
    SH_ASSERT(router != NULL && in != NULL && f != NULL);
    const char *sku = in->sku;
    sch_audit_work *w = calloc(1, sizeof *w);
    sh_audit_detail *details = calloc(SCH_AUDIT_DETAILS_MAX, sizeof *details);
    if (w == NULL || details == NULL) {
        free(w);
        free(details);
        sch_failf(f, "internal", "out of memory for the audit");
        return NULL;
    }
    w->details = details;
    w->in = *in;
    uint64_t t0 = sh_clock_mono_ms();
    int stable = 0, passes = 0;
    cJSON *r = NULL;
    for (passes = 1; passes <= SCH_AUDIT_PASSES_MAX; passes++) {
        if (sch_audit_read(router, sync, sku, w, f) != SH_OK) {
            goto done;
        }
        sch_audit_check(w);
        if (sch_audit_ok_upto(&w->cur, CHK_BASE_COUNT) ||
            (!w->cur.mysql_ok && w->cur.au.stable) || /* Redis alone: sh_audit judged it */
            (passes > 1 && sch_audit_same(&w->cur, &w->prev))) {
            stable = 1;
            break;
        }
        if (passes == SCH_AUDIT_PASSES_MAX) {
            break;
        }
        w->prev = w->cur;
        sh_clock_sleep_ms(SCH_AUDIT_PAUSE_MS);
    }
    if (passes > SCH_AUDIT_PASSES_MAX) {
        passes = SCH_AUDIT_PASSES_MAX;
    }
    stable = stable && w->cur.au.stable;
    sa_deep(router, sku, w);
    if (!sch_audit_ok_upto(&w->cur, CHK_COUNT_)) {
        SH_WARN(SA_MOD, "not ok sku=%s stable=%d passes=%d mysql=%d ms=%" PRIu64, sku, stable,
                passes, w->cur.mysql_ok, sh_clock_mono_ms() - t0);
    } else {
        SH_INFO(SA_MOD, "ok sku=%s passes=%d ms=%" PRIu64, sku, passes, sh_clock_mono_ms() - t0);
    }
    r = sch_audit_reply(sku, w, stable, passes, f);
done:
    free(details);
    free(w);
    return r;
}
