/* sch_reconcile.c -- repair a diverged partition from the union of MySQL and Redis
 * (see sch_reconcile.h for the rule).
 *
 * A run reads, decides, then writes, and each write can run twice:
 *
 *   read     the pool hash (salt, per-user limit, nextid, avail) and the
 *            partition's state; refuse unless it is diverged. Journaled grants
 *            to it that it has not applied are applied first (GRANT_APPLY, as
 *            the scheduler's replay would), so the only grant the script may
 *            apply is this run's. Then MySQL's details (SYNC_DETAILS, a page at
 *            a time), the order hash (HSCAN) and the stream (XRANGE).
 *   decide   the union (sch_rc_union_plan, pure, unit-tested): every MySQL
 *            detail kept, what only Redis answered renumbered after MySQL's
 *            synced_seq, duplicates dropped, the record of each order.
 *   check    MySQL holds nothing past the synced_seq read (a batch in flight
 *            when the partition was marked could still land): else read again.
 *   write    records that follow from MySQL alone (restored, or a duplicate's
 *            put back) with HSET in pages; claims of the union's orders that are
 *            missing (SET NX "P:1") and, with a per-user limit, user entries --
 *            all true whatever happens next, so written before the partition
 *            opens (a retry routed while a claim is missing could deduct the
 *            order on another partition); a grant from the pool when the
 *            partition's own units cannot cover the union (GRANT_BEGIN with an
 *            id above the pool's nextid); then RECONCILE, which checks that seq,
 *            ded and g are what was read (else CHANGED: run again, bounded), and
 *            last JOURNAL_END of the grant.
 *
 * A step whose outcome is unknown (the router could not tell, or a replica
 * did not confirm it under pool.durability = replica) is sent again once with
 * the same ids: GRANT_BEGIN answers its first u, RECONCILE its first answer
 * (the reconcile id), the rest are idempotent. Every loop is bounded: pages by
 * SH_RECONCILE_ORDERS_MAX, attempts by SCH_RECONCILE_ATTEMPTS_MAX. Nothing read
 * from Redis or MySQL is asserted on. */
#include "sch_reconcile.h"

#include "sch_sync.h"
#include "sh_clock.h"
#include "sh_cluster.h"
#include "sh_id.h"
#include "sh_log.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RC_MOD            "reconcile"
#define RC_NUM_BYTES      24
#define RC_HSCAN_COUNT    "1000" /* fields asked per HSCAN page */
#define RC_XRANGE_COUNT   "64"   /* stream entries per XRANGE page (each up to a call) */
#define RC_PAGES_MAX      (SH_RECONCILE_ORDERS_MAX / 64 + 64) /* HSCAN / XRANGE pages */
#define RC_PIPE_CMDS      256  /* claims / user entries per pipeline */
#define RC_RESTORE_FIELDS 512  /* records per HSET of the pre-pass */
#define RC_JOURNAL_MAX    4096 /* journal entries looked at (as the replay) */
#define RC_GRANT_TRIES    3    /* grant ids tried when one turns out spent */
#define RC_ARGS_MAX       (SH_RECONCILE_FIXED_ARGS + 3 * SH_RECONCILE_RENUMBER_MAX)

_Static_assert(RC_ARGS_MAX + 8 <= SH_CLUSTER_ARGS_MAX, "RECONCILE's arguments fit one command");
_Static_assert(SH_RECONCILE_FIXED_ARGS == 13 && SH_RECONCILE_REPLY == 8, "RECONCILE's layout");
_Static_assert(SH_RECONCILE_ORDERS_MAX < UINT32_MAX / 2, "order indexes fit the map");

/* ==== the union =============================================================== */

struct sch_rc_union {
    sch_rc_order *ord;
    size_t n, cap;
    uint32_t *slot; /* open addressing by order id: index + 1, 0 empty */
    size_t nslot;   /* a power of two, at least twice n */
    uint64_t my_next;
    int64_t my_net;
    sch_rc_line *lines;
    size_t nlines;
};

static uint64_t rc_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h = (h ^ (uint8_t)s[i]) * 1099511628211ULL;
    }
    return h;
}

static sh_err rc_rehash(sch_rc_union *u, size_t nslot)
{
    uint32_t *slot = calloc(nslot, sizeof *slot);
    if (slot == NULL) {
        return SH_ENOMEM;
    }
    for (size_t i = 0; i < u->n; i++) {
        size_t k = (size_t)rc_hash(u->ord[i].id, strlen(u->ord[i].id)) & (nslot - 1);
        while (slot[k] != 0) {
            k = (k + 1) & (nslot - 1);
        }
        slot[k] = (uint32_t)i + 1;
    }
    free(u->slot);
    u->slot = slot;
    u->nslot = nslot;
    return SH_OK;
}

/* The order id[0..len), added when absent. */
static sh_err rc_get(sch_rc_union *u, const char *id, size_t len, sch_rc_order **out)
{
    if (sh_id_check_order(id, len) != SH_OK) {
        return SH_EPROTO;
    }
    size_t k = (size_t)rc_hash(id, len) & (u->nslot - 1);
    for (; u->slot[k] != 0; k = (k + 1) & (u->nslot - 1)) {
        sch_rc_order *o = &u->ord[u->slot[k] - 1];
        if (strncmp(o->id, id, len) == 0 && o->id[len] == '\0') {
            *out = o;
            return SH_OK;
        }
    }
    if (u->n >= SH_RECONCILE_ORDERS_MAX) {
        return SH_ELIMIT;
    }
    if (u->n == u->cap) {
        size_t cap = u->cap * 2;
        sch_rc_order *ord = realloc(u->ord, cap * sizeof *ord);
        if (ord == NULL) {
            return SH_ENOMEM;
        }
        u->ord = ord;
        u->cap = cap;
    }
    sch_rc_order *o = &u->ord[u->n];
    memset(o, 0, sizeof *o);
    memcpy(o->id, id, len);
    u->slot[k] = (uint32_t)++u->n;
    if (2 * u->n > u->nslot) {
        sh_err rc = rc_rehash(u, u->nslot * 2);
        if (rc != SH_OK) {
            return rc;
        }
    }
    *out = o;
    return SH_OK;
}

static void rc_set_user(sch_rc_order *o, const char *user, size_t len)
{
    if (o->user[0] == '\0' && len > 0 && len <= SH_USER_ID_CHARS_MAX) {
        memcpy(o->user, user, len);
        o->user[len] = '\0';
    }
}

sh_err sch_rc_union_new(sch_rc_union **out)
{
    SH_ASSERT(out != NULL);
    *out = NULL;
    sch_rc_union *u = calloc(1, sizeof *u);
    if (u == NULL) {
        return SH_ENOMEM;
    }
    u->cap = 256;
    u->ord = calloc(u->cap, sizeof *u->ord);
    u->my_next = 1;
    if (u->ord == NULL || rc_rehash(u, 1024) != SH_OK) {
        sch_rc_union_free(u);
        return SH_ENOMEM;
    }
    *out = u;
    return SH_OK;
}

void sch_rc_union_free(sch_rc_union *u)
{
    if (u == NULL) {
        return;
    }
    free(u->ord);
    free(u->slot);
    free(u->lines);
    free(u);
}

sh_err sch_rc_union_add_mysql(sch_rc_union *u, const sh_wire_detail *d)
{
    SH_ASSERT(u != NULL && d != NULL);
    if (d->seq != u->my_next || d->qty == 0) {
        return SH_EPROTO;
    }
    sch_rc_order *o = NULL;
    sh_err rc = rc_get(u, d->order_id, d->order_id_len, &o);
    if (rc != SH_OK) {
        return rc;
    }
    u->my_next++;
    u->my_net += d->qty;
    if (d->qty > 0 && o->my_ded_seq == 0) {
        o->my_ded_seq = d->seq;
        o->my_qty = d->qty;
        rc_set_user(o, d->user_id, d->user_id_len);
    } else if (d->qty < 0 && o->my_rel_seq == 0) {
        o->my_rel_seq = d->seq;
    } /* a second one of a kind stays counted in my_net: every MySQL detail is kept */
    return SH_OK;
}

/* A decimal uint64 of s[0..len), all digits. */
static int rc_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 19) {
        return -1;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

sh_err sch_rc_union_add_record(sch_rc_union *u, const char *order, size_t olen, const char *rec,
                               size_t rlen)
{
    SH_ASSERT(u != NULL && order != NULL && rec != NULL);
    sch_rc_order *o = NULL;
    sh_err rc = rc_get(u, order, olen, &o);
    if (rc != SH_OK) {
        return rc;
    }
    const char *f[4];
    size_t fl[4];
    size_t nf = 0;
    const char *p = rec, *end = rec + rlen;
    while (nf < 4) {
        const char *c = nf < 3 ? memchr(p, ',', (size_t)(end - p)) : NULL;
        f[nf] = p;
        fl[nf] = c != NULL ? (size_t)(c - p) : (size_t)(end - p);
        nf++;
        if (c == NULL) {
            break;
        }
        p = c + 1;
    }
    uint64_t v[3] = {0, 0, 0};
    if (nf == 2 && fl[0] == 1 && f[0][0] == 't' && rc_u64(f[1], fl[1], &v[0]) == 0) {
        if (o->rec_kind == 0) {
            o->rec_kind = 2;
        }
        return SH_OK;
    }
    if (nf != 4 || rc_u64(f[0], fl[0], &v[0]) != 0 || rc_u64(f[1], fl[1], &v[1]) != 0 ||
        rc_u64(f[2], fl[2], &v[2]) != 0 || v[0] < 1 || v[0] > SH_QTY_UNITS_MAX || v[1] < 1 ||
        (fl[3] > 0 && sh_id_check_user(f[3], fl[3]) != SH_OK)) {
        return SH_EPROTO;
    }
    o->rec_kind = 1;
    o->rec_qty = (int64_t)v[0];
    o->rec_seq = v[1];
    o->rec_rel = v[2];
    rc_set_user(o, f[3], fl[3]);
    return SH_OK;
}

sh_err sch_rc_union_add_stream(sch_rc_union *u, const sh_stock_detail *d)
{
    SH_ASSERT(u != NULL && d != NULL);
    sch_rc_order *o = NULL;
    sh_err rc = rc_get(u, d->order_id, strlen(d->order_id), &o);
    if (rc != SH_OK) {
        return rc;
    }
    if (d->qty > 0 && d->seq > o->st_ded_seq) {
        o->st_ded_seq = d->seq;
        o->st_qty = d->qty;
        o->st_ded_ms = d->created_ms;
        o->st_ded_sd = (uint8_t)d->sub_domain;
        rc_set_user(o, d->user_id, strlen(d->user_id));
    } else if (d->qty < 0 && d->seq > o->st_rel_seq) {
        o->st_rel_seq = d->seq;
        o->st_rel_ms = d->created_ms;
        o->st_rel_sd = (uint8_t)d->sub_domain;
    }
    return SH_OK;
}

/* An answer Redis gave that MySQL lacks, to renumber: its seq in Redis (the
 * order they keep), a deduction (0) or release (1), its order. */
typedef struct rc_event {
    uint64_t key;
    uint32_t rel;
    uint32_t order;
} rc_event;

static int rc_event_cmp(const void *a, const void *b)
{
    const rc_event *x = a, *y = b;
    if (x->key != y->key) {
        return x->key < y->key ? -1 : 1;
    }
    if (x->rel != y->rel) {
        return x->rel < y->rel ? -1 : 1;
    }
    return x->order < y->order ? -1 : x->order > y->order;
}

static void rc_why(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void rc_why(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

/* Decides one order; appends its renumbered answers to ev. */
static sh_err rc_decide(sch_rc_order *o, uint32_t idx, rc_event *ev, size_t *nev, char *why,
                        size_t whylen)
{
    uint64_t r_seq = 0, r_rel = 0;
    int64_t r_qty = 0;
    if (o->rec_kind == 1) {
        r_seq = o->rec_seq;
        r_qty = o->rec_qty;
        r_rel = o->rec_rel;
    } else if (o->st_ded_seq != 0) {
        r_seq = o->st_ded_seq;
        r_qty = o->st_qty;
    }
    if (r_rel == 0 && (r_seq != 0 || o->my_ded_seq != 0) && o->st_rel_seq > r_seq) {
        r_rel = o->st_rel_seq; /* a release the stream holds and the record lost */
    }
    if (o->my_rel_seq != 0 && (o->my_ded_seq == 0 || o->my_rel_seq < o->my_ded_seq)) {
        rc_why(why, whylen,
               "MySQL holds a release of order %s (seq %" PRIu64
               ") without its deduction before it",
               o->id, o->my_rel_seq);
        return SH_EPROTO;
    }
    o->held = o->my_ded_seq != 0 || r_seq != 0;
    if (o->my_ded_seq != 0) {
        o->qty = o->my_qty;
        o->ded_seq = o->my_ded_seq;
        o->rel_seq = o->my_rel_seq;
        o->duplicate = r_seq != 0 && (r_seq != o->my_ded_seq || r_qty != o->my_qty);
        if (o->my_rel_seq == 0 && r_rel != 0) {
            ev[(*nev)++] = (rc_event){r_rel, 1, idx}; /* a release MySQL lacks */
        }
    } else if (r_seq != 0) {
        o->qty = r_qty;
        ev[(*nev)++] = (rc_event){r_seq, 0, idx}; /* a deduction only Redis answered */
        if (r_rel != 0) {
            ev[(*nev)++] = (rc_event){r_rel, 1, idx};
        }
    }
    return SH_OK;
}

sh_err sch_rc_union_plan(sch_rc_union *u, uint64_t synced_seq, int active, int64_t now_ms,
                         sch_rc_plan *plan, char *why, size_t whylen)
{
    SH_ASSERT(u != NULL && plan != NULL && why != NULL && (active == 0 || active == 1));
    memset(plan, 0, sizeof *plan);
    why[0] = '\0';
    if (u->my_next - 1 != synced_seq) {
        rc_why(why, whylen, "MySQL holds details 1..%" PRIu64 " but its synced_seq is %" PRIu64,
               u->my_next - 1, synced_seq);
        return SH_EPROTO;
    }
    /* At most two answers per order: allocate for all, use what is needed. */
    rc_event *ev = calloc(2 * u->n + 1, sizeof *ev);
    if (ev == NULL) {
        return SH_ENOMEM;
    }
    size_t nev = 0;
    for (size_t i = 0; i < u->n; i++) {
        sh_err rc = rc_decide(&u->ord[i], (uint32_t)i, ev, &nev, why, whylen);
        if (rc != SH_OK) {
            free(ev);
            return rc;
        }
    }
    if (nev > SH_RECONCILE_RENUMBER_MAX) {
        rc_why(why, whylen, "%zu answers to renumber, more than %d in one run", nev,
               SH_RECONCILE_RENUMBER_MAX);
        free(ev);
        return SH_ELIMIT;
    }
    qsort(ev, nev, sizeof *ev, rc_event_cmp);
    free(u->lines);
    u->lines = calloc(nev + 1, sizeof *u->lines);
    if (u->lines == NULL) {
        free(ev);
        return SH_ENOMEM;
    }
    u->nlines = nev;
    int64_t net = u->my_net;
    for (size_t k = 0; k < nev; k++) {
        sch_rc_order *o = &u->ord[ev[k].order];
        sch_rc_line *l = &u->lines[k];
        l->seq = synced_seq + 1 + k;
        l->order = ev[k].order;
        /* The stream's created_ms and sub-domain when it still holds this answer. */
        uint64_t st_seq = ev[k].rel ? o->st_rel_seq : o->st_ded_seq;
        l->created_ms = st_seq == ev[k].key ? (ev[k].rel ? o->st_rel_ms : o->st_ded_ms) : now_ms;
        l->sub_domain =
            st_seq == ev[k].key ? (ev[k].rel ? o->st_rel_sd : o->st_ded_sd) : (uint8_t)active;
        l->qty = ev[k].rel ? -o->qty : o->qty;
        net += l->qty;
        if (ev[k].rel) {
            o->rel_seq = l->seq;
        } else {
            o->ded_seq = l->seq;
        }
        o->write = 2;
    }
    free(ev);
    for (size_t i = 0; i < u->n; i++) {
        sch_rc_order *o = &u->ord[i];
        if (!o->held) {
            continue;
        }
        int same = o->rec_kind == 1 && o->rec_qty == o->qty && o->rec_seq == o->ded_seq &&
                   o->rec_rel == o->rel_seq;
        if (!same && o->write == 0) {
            o->write = 1;
        }
        o->restored = o->write != 0 && o->rec_kind != 1 && o->my_ded_seq != 0;
        plan->restored += (uint64_t)o->restored;
        plan->fixed += (uint64_t)(o->write != 0 && o->rec_kind == 1);
        plan->duplicates += (uint64_t)o->duplicate;
    }
    plan->synced_seq = synced_seq;
    plan->kept = synced_seq;
    plan->mysql_net = u->my_net;
    plan->new_ded = net;
    plan->new_seq = synced_seq + nev;
    plan->nlines = nev;
    plan->lines = u->lines;
    return SH_OK;
}

size_t sch_rc_union_count(const sch_rc_union *u)
{
    SH_ASSERT(u != NULL);
    return u->n;
}

const sch_rc_order *sch_rc_union_at(const sch_rc_union *u, size_t i)
{
    SH_ASSERT(u != NULL && i < u->n);
    return &u->ord[i];
}

size_t sch_rc_record_text(const sch_rc_order *o, char *buf, size_t cap)
{
    SH_ASSERT(o != NULL && buf != NULL && cap >= SCH_RC_TEXT_BYTES);
    int k = snprintf(buf, cap, "%" PRId64 ",%" PRIu64 ",%" PRIu64 ",%s", o->qty, o->ded_seq,
                     o->rel_seq, o->user);
    SH_ASSERT(k > 0 && (size_t)k < cap);
    return (size_t)k;
}

size_t sch_rc_line_text(const sch_rc_union *u, const sch_rc_line *l, char *buf, size_t cap)
{
    SH_ASSERT(u != NULL && l != NULL && buf != NULL && cap >= SCH_RC_TEXT_BYTES);
    SH_ASSERT(l->order < u->n);
    const sch_rc_order *o = &u->ord[l->order];
    int k = snprintf(buf, cap, "%" PRIu64 "|%" PRId64 "|%u|%" PRId64 "|%s|%s", l->seq, l->qty,
                     (unsigned)l->sub_domain, l->created_ms, o->id, o->user);
    SH_ASSERT(k > 0 && (size_t)k < cap);
    return (size_t)k;
}

/* ==== I/O ======================================================================= */

/* One run's handles, what it read, and its scratch. */
typedef struct rc_run {
    sh_cluster *c;
    struct sch_sync *sync;
    const sch_reconcile_opts *opts;
    const char *sku;
    unsigned part;
    sch_reconcile_out *out;
    char *why;
    size_t whylen;
    int sid[SH_SCRIPT_COUNT_];
    char epoch[RC_NUM_BYTES];
    char st[SH_STOCK_KEY_BYTES_MAX], dk[SH_STOCK_KEY_BYTES_MAX], ok[SH_STOCK_KEY_BYTES_MAX];
    char pool[SH_STOCK_KEY_BYTES_MAX], jr[SH_STOCK_KEY_BYTES_MAX];
    /* the pool */
    uint64_t pul, nextid;
    int64_t avail;
    unsigned salt;
    /* the partition */
    char seq_s[RC_NUM_BYTES], ded_s[RC_NUM_BYTES], g_s[RC_NUM_BYTES];
    uint64_t seq, ack, g;
    int64_t ded, s0, s1;
    int active;
    int64_t ttl_s;
    sch_rc_union *u;
    sch_rc_plan plan;
} rc_run;

/* Fails the run with a JSON error code and a one-line reason. */
static sh_err rc_fail(rc_run *r, sh_err rc, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static sh_err rc_fail(rc_run *r, sh_err rc, const char *code, const char *fmt, ...)
{
    SH_ASSERT(rc != SH_OK);
    r->out->error = code;
    char line[512]; /* the arguments may quote r->why itself */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    snprintf(r->why, r->whylen, "%s", line);
    return rc;
}

static int rc_reply_u64(const redisReply *e, uint64_t *out)
{
    if (e == NULL || e->type != REDIS_REPLY_STRING) {
        return -1;
    }
    return rc_u64(e->str, e->len, out);
}

static int rc_reply_i64(const redisReply *e, int64_t *out)
{
    if (e != NULL && e->type == REDIS_REPLY_INTEGER) {
        *out = (int64_t)e->integer;
        return 0;
    }
    uint64_t v = 0;
    if (e != NULL && e->type == REDIS_REPLY_STRING && e->len > 1 && e->str[0] == '-' &&
        rc_u64(e->str + 1, e->len - 1, &v) == 0) {
        *out = -(int64_t)v;
        return 0;
    }
    if (rc_reply_u64(e, &v) != 0 || v > INT64_MAX) {
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

/* A plain command routed by key; error replies are SH_EREDIS (text in why). */
static sh_err rc_cmd(rc_run *r, const char *key, int argc, const char **argv, redisReply **out)
{
    size_t lens[8];
    SH_ASSERT(argc >= 1 && argc <= 8);
    for (int i = 0; i < argc; i++) {
        lens[i] = strlen(argv[i]);
    }
    *out = NULL;
    r->why[0] = '\0';
    sh_err rc = sh_cluster_command(r->c, key, strlen(key), argc, argv, lens, out);
    if (rc == SH_OK && (*out)->type == REDIS_REPLY_ERROR) {
        rc_why(r->why, r->whylen, "%s %s: %s", argv[0], key, (*out)->str);
        freeReplyObject(*out);
        *out = NULL;
        return SH_EREDIS;
    }
    return rc;
}

/* Under pool.durability = replica a write counts once a replica holds it. */
static sh_err rc_confirm(rc_run *r)
{
    if (!r->opts->durable) {
        return SH_OK;
    }
    int failed = 0;
    if (sh_cluster_barrier(r->c, 1, r->opts->wait_ms, &failed) != SH_OK) {
        SH_WARN(RC_MOD, "step not confirmed by a replica sku=%s partition=%u masters=%d", r->sku,
                r->part, failed);
        return SH_EUNKNOWN;
    }
    return SH_OK;
}

/* EVALSHA of script s on key[0]; an error reply is SH_EREDIS with its text in
 * why. A step whose outcome is unknown is sent once more: every script here
 * carries ids that make a second run change nothing. */
static sh_err rc_eval(rc_run *r, sh_stock_script s, int nkeys, const char **keys, int nargs,
                      const char **args, const size_t *alen, redisReply **out)
{
    size_t klen[3];
    SH_ASSERT(nkeys >= 1 && nkeys <= 3);
    for (int i = 0; i < nkeys; i++) {
        klen[i] = strlen(keys[i]);
    }
    sh_err rc = SH_EUNKNOWN;
    r->why[0] = '\0';
    for (int tries = 0; tries < 2 && rc == SH_EUNKNOWN; tries++) {
        *out = NULL;
        rc = sh_cluster_evalsha(r->c, r->sid[s], nkeys, keys, klen, nargs, args, alen, out);
        if (rc == SH_OK && (*out)->type == REDIS_REPLY_ERROR) {
            rc_why(r->why, r->whylen, "%s", (*out)->str);
            freeReplyObject(*out);
            *out = NULL;
            return SH_EREDIS;
        }
        if (rc == SH_OK && rc_confirm(r) != SH_OK) {
            freeReplyObject(*out);
            *out = NULL;
            rc = SH_EUNKNOWN;
        }
    }
    if (rc != SH_OK && r->why[0] == '\0') {
        rc_why(r->why, r->whylen, "script %d on %s: %s", (int)s, keys[0], sh_strerror(rc));
    }
    return rc;
}

static sh_err rc_eval_str(rc_run *r, sh_stock_script s, int nkeys, const char **keys, int nargs,
                          const char **args, redisReply **out)
{
    size_t alen[8];
    SH_ASSERT(nargs <= 8);
    for (int i = 0; i < nargs; i++) {
        alen[i] = strlen(args[i]);
    }
    return rc_eval(r, s, nkeys, keys, nargs, args, alen, out);
}

/* ---- reading Redis ---------------------------------------------------------- */

static sh_err rc_read_pool(rc_run *r)
{
    char tfield[16];
    snprintf(tfield, sizeof tfield, "t.%u", r->part);
    const char *argv[] = {"HMGET", r->pool, "parts", "pul", "nextid", "avail", tfield};
    redisReply *h = NULL;
    sh_err rc = rc_cmd(r, r->pool, 7, argv, &h);
    if (rc != SH_OK) {
        return rc_fail(r, rc, "unavailable", "cannot read the pool of %s: %s", r->sku,
                       sh_strerror(rc));
    }
    uint64_t parts = 0, salt = 0;
    int64_t avail = 0;
    if (h->type != REDIS_REPLY_ARRAY || h->elements != 5 ||
        h->element[0]->type == REDIS_REPLY_NIL) {
        freeReplyObject(h);
        return rc_fail(r, SH_ENOTFOUND, "unknown_sku", "no SKU '%s' in Redis", r->sku);
    }
    r->pul = 0;
    r->nextid = 0;
    if (rc_reply_u64(h->element[0], &parts) != 0 || parts < 1 ||
        parts > SH_PARTITIONS_PER_SKU_MAX ||
        (h->element[1]->type != REDIS_REPLY_NIL && rc_reply_u64(h->element[1], &r->pul) != 0) ||
        (h->element[2]->type != REDIS_REPLY_NIL && rc_reply_u64(h->element[2], &r->nextid) != 0) ||
        rc_reply_i64(h->element[3], &avail) != 0) {
        freeReplyObject(h);
        return rc_fail(r, SH_EPROTO, "internal", "the pool hash of %s is malformed", r->sku);
    }
    if (r->part >= parts) {
        freeReplyObject(h);
        return rc_fail(r, SH_ENOTFOUND, "unknown_partition",
                       "SKU %s has %" PRIu64 " partitions (0..%" PRIu64 "), not %u", r->sku, parts,
                       parts - 1, r->part);
    }
    if (rc_reply_u64(h->element[4], &salt) != 0 || salt >= SH_STOCK_TAG_SALT_MAX) {
        freeReplyObject(h);
        return rc_fail(r, SH_EPROTO, "internal", "partition %u of %s has no salt", r->part, r->sku);
    }
    freeReplyObject(h);
    r->avail = avail;
    r->salt = (unsigned)salt;
    sh_stock_key_part(r->st, r->sku, r->part, r->salt, 's');
    sh_stock_key_part(r->dk, r->sku, r->part, r->salt, 'd');
    sh_stock_key_part(r->ok, r->sku, r->part, r->salt, 'o');
    return SH_OK;
}

/* The partition's state; refuses anything but diverged. */
static sh_err rc_read_state(rc_run *r)
{
    const char *argv[] = {"HMGET", r->st, "state", "seq", "ded", "g", "a", "s0", "s1", "ack"};
    size_t lens[10];
    for (int i = 0; i < 10; i++) {
        lens[i] = strlen(argv[i]);
    }
    redisReply *h = NULL;
    sh_err rc = sh_cluster_command(r->c, r->st, strlen(r->st), 10, argv, lens, &h);
    if (rc != SH_OK) {
        return rc_fail(r, rc, "unavailable", "cannot read partition %u of %s: %s", r->part, r->sku,
                       sh_strerror(rc));
    }
    if (h->type != REDIS_REPLY_ARRAY || h->elements != 8 ||
        h->element[0]->type != REDIS_REPLY_STRING) {
        freeReplyObject(h);
        return rc_fail(r, SH_EPROTO, "internal", "partition %u of %s has no state", r->part,
                       r->sku);
    }
    int64_t a = -1;
    r->g = 0;
    r->ack = 0;
    if (strcmp(h->element[0]->str, "diverged") != 0) {
        char state[32];
        snprintf(state, sizeof state, "%s", h->element[0]->str);
        freeReplyObject(h);
        /* Say which reconcile opened it, when one did: a repeat after an unknown outcome. */
        const char *av[] = {"HMGET", r->st, "rcid", "rcsum"};
        redisReply *x = NULL;
        char last[160] = "";
        if (rc_cmd(r, r->st, 4, av, &x) == SH_OK && x->type == REDIS_REPLY_ARRAY &&
            x->elements == 2 && x->element[0]->type == REDIS_REPLY_STRING &&
            x->element[1]->type == REDIS_REPLY_STRING) {
            snprintf(last, sizeof last,
                     "; last reconcile %.48s (from partition, pool, back, "
                     "oversold: %.32s)",
                     x->element[0]->str, x->element[1]->str);
        }
        if (x != NULL) {
            freeReplyObject(x);
        }
        return rc_fail(r, SH_EINVAL, "not_diverged",
                       "partition %u of %s is %s, not diverged: nothing to reconcile%s", r->part,
                       r->sku, state, last);
    }
    if (rc_reply_u64(h->element[1], &r->seq) != 0 || rc_reply_i64(h->element[2], &r->ded) != 0 ||
        (h->element[3]->type != REDIS_REPLY_NIL && rc_reply_u64(h->element[3], &r->g) != 0) ||
        rc_reply_i64(h->element[4], &a) != 0 || (a != 0 && a != 1) ||
        rc_reply_i64(h->element[5], &r->s0) != 0 || rc_reply_i64(h->element[6], &r->s1) != 0 ||
        (h->element[7]->type != REDIS_REPLY_NIL && rc_reply_u64(h->element[7], &r->ack) != 0)) {
        freeReplyObject(h);
        return rc_fail(r, SH_EPROTO, "internal", "partition %u of %s: malformed state", r->part,
                       r->sku);
    }
    r->active = (int)a;
    /* The exact strings RECONCILE compares with. */
    snprintf(r->seq_s, sizeof r->seq_s, "%s", h->element[1]->str);
    snprintf(r->ded_s, sizeof r->ded_s, "%s", h->element[2]->str);
    snprintf(r->g_s, sizeof r->g_s, "%s",
             h->element[3]->type == REDIS_REPLY_STRING ? h->element[3]->str : "0");
    freeReplyObject(h);
    return SH_OK;
}

/* Applies the journaled grants to this partition it has not applied (id > g),
 * oldest first, as the scheduler's replay does, so that ids keep reaching it
 * in order and only this run's grant is left to RECONCILE. Sets *finished. */
static sh_err rc_finish_grants(rc_run *r, int *finished)
{
    *finished = 0;
    const char *argv[] = {"HGETALL", r->jr};
    redisReply *j = NULL;
    sh_err rc = rc_cmd(r, r->jr, 2, argv, &j);
    if (rc != SH_OK) {
        return rc_fail(r, rc, "unavailable", "cannot read the journal of %s: %s", r->sku,
                       sh_strerror(rc));
    }
    size_t n = j->type == REDIS_REPLY_ARRAY ? j->elements / 2 : 0;
    if (n > RC_JOURNAL_MAX) {
        n = RC_JOURNAL_MAX;
    }
    for (int round = 0; round < (int)n; round++) {
        uint64_t best = 0;
        int64_t units = 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t id = 0;
            unsigned p = 0;
            long long u = 0;
            const redisReply *k = j->element[2 * i], *v = j->element[2 * i + 1];
            if (rc_reply_u64(k, &id) == 0 && v->type == REDIS_REPLY_STRING &&
                sscanf(v->str, "g:%u:%lld", &p, &u) == 2 && p == r->part && u > 0 && id > r->g &&
                (best == 0 || id < best)) {
                best = id;
                units = u;
            }
        }
        if (best == 0) {
            break;
        }
        char a_id[RC_NUM_BYTES], a_u[RC_NUM_BYTES];
        snprintf(a_id, sizeof a_id, "%" PRIu64, best);
        snprintf(a_u, sizeof a_u, "%" PRId64, units);
        const char *keys[] = {r->st};
        const char *args[] = {a_id, a_u, "0", r->epoch};
        redisReply *x = NULL;
        rc = rc_eval_str(r, SH_SCRIPT_GRANT_APPLY, 1, keys, 4, args, &x);
        if (rc == SH_OK) {
            freeReplyObject(x);
            const char *jkeys[] = {r->jr};
            const char *jargs[] = {a_id};
            rc = rc_eval_str(r, SH_SCRIPT_JOURNAL_END, 1, jkeys, 1, jargs, &x);
        }
        if (rc != SH_OK) {
            freeReplyObject(j);
            return rc_fail(r, rc, "internal", "applying pending grant %" PRIu64 ": %s", best,
                           r->why);
        }
        freeReplyObject(x);
        SH_INFO(RC_MOD,
                "pending grant applied first sku=%s partition=%u id=%" PRIu64 " units=%" PRId64,
                r->sku, r->part, best, units);
        r->g = best;
        (*finished)++;
    }
    freeReplyObject(j);
    return SH_OK;
}

/* The order hash, HSCAN page by page, into the union. */
static sh_err rc_read_records(rc_run *r)
{
    char cursor[RC_NUM_BYTES] = "0";
    for (long page = 0; page < RC_PAGES_MAX; page++) {
        const char *argv[] = {"HSCAN", r->ok, cursor, "COUNT", RC_HSCAN_COUNT};
        redisReply *x = NULL;
        sh_err rc = rc_cmd(r, r->ok, 5, argv, &x);
        if (rc != SH_OK) {
            return rc_fail(r, rc, "unavailable", "HSCAN of %s: %s", r->ok, sh_strerror(rc));
        }
        if (x->type != REDIS_REPLY_ARRAY || x->elements != 2 ||
            x->element[0]->type != REDIS_REPLY_STRING || x->element[0]->len >= sizeof cursor ||
            x->element[1]->type != REDIS_REPLY_ARRAY || x->element[1]->elements % 2 != 0) {
            freeReplyObject(x);
            return rc_fail(r, SH_EPROTO, "internal", "HSCAN of %s: malformed reply", r->ok);
        }
        const redisReply *fv = x->element[1];
        for (size_t i = 0; i + 1 < fv->elements; i += 2) {
            const redisReply *f = fv->element[i], *v = fv->element[i + 1];
            rc = f->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING
                     ? sch_rc_union_add_record(r->u, f->str, f->len, v->str, v->len)
                     : SH_EPROTO;
            if (rc != SH_OK) {
                freeReplyObject(x);
                return rc == SH_ELIMIT
                           ? rc_fail(r, rc, "too_large", "more than %d orders in partition %u",
                                     SH_RECONCILE_ORDERS_MAX, r->part)
                           : rc_fail(r, rc, "internal", "order hash %s: a malformed record", r->ok);
            }
        }
        memcpy(cursor, x->element[0]->str, x->element[0]->len + 1);
        freeReplyObject(x);
        if (strcmp(cursor, "0") == 0) {
            return SH_OK;
        }
    }
    return rc_fail(r, SH_ELIMIT, "too_large", "HSCAN of %s did not end within %d pages", r->ok,
                   RC_PAGES_MAX);
}

/* One entry [id, [field, value, ...]]: its details into the union. */
static sh_err rc_entry(rc_run *r, const redisReply *e)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[1]->type != REDIS_REPLY_ARRAY) {
        return SH_EPROTO;
    }
    const redisReply *fv = e->element[1], *b = NULL;
    for (size_t i = 0; i + 1 < fv->elements; i += 2) {
        if (fv->element[i]->type == REDIS_REPLY_STRING && strcmp(fv->element[i]->str, "b") == 0) {
            b = fv->element[i + 1];
        }
    }
    if (b == NULL || b->type != REDIS_REPLY_STRING) {
        return SH_EPROTO;
    }
    const char *p = b->str, *end = b->str + b->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        sh_stock_detail d;
        sh_err rc = sh_stock_detail_parse(p, len, &d);
        if (rc == SH_OK) {
            rc = sch_rc_union_add_stream(r->u, &d);
        }
        if (rc != SH_OK) {
            return rc;
        }
        p += len + (nl != NULL ? 1 : 0);
    }
    return SH_OK;
}

/* The whole stream, XRANGE page by page, into the union. */
static sh_err rc_read_stream(rc_run *r)
{
    char start[RC_NUM_BYTES + 2] = "-";
    for (long page = 0; page < RC_PAGES_MAX; page++) {
        const char *argv[] = {"XRANGE", r->dk, start, "+", "COUNT", RC_XRANGE_COUNT};
        redisReply *x = NULL;
        sh_err rc = rc_cmd(r, r->dk, 6, argv, &x);
        if (rc != SH_OK) {
            return rc_fail(r, rc, "unavailable", "XRANGE of %s: %s", r->dk, sh_strerror(rc));
        }
        if (x->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(x);
            return rc_fail(r, SH_EPROTO, "internal", "XRANGE of %s: malformed reply", r->dk);
        }
        for (size_t i = 0; i < x->elements; i++) {
            rc = rc_entry(r, x->element[i]);
            if (rc != SH_OK) {
                freeReplyObject(x);
                return rc == SH_ELIMIT
                           ? rc_fail(r, rc, "too_large", "more than %d orders in partition %u",
                                     SH_RECONCILE_ORDERS_MAX, r->part)
                           : rc_fail(r, rc, "internal", "stream %s: a malformed entry", r->dk);
            }
        }
        size_t got = x->elements;
        if (got > 0) {
            const redisReply *id = x->element[got - 1]->element[0];
            if (id->type != REDIS_REPLY_STRING || id->len >= RC_NUM_BYTES) {
                freeReplyObject(x);
                return rc_fail(r, SH_EPROTO, "internal", "stream %s: a malformed id", r->dk);
            }
            snprintf(start, sizeof start, "(%s", id->str);
        }
        freeReplyObject(x);
        if (got < 64) {
            return SH_OK;
        }
    }
    return rc_fail(r, SH_ELIMIT, "too_large", "XRANGE of %s did not end within %d pages", r->dk,
                   RC_PAGES_MAX);
}

/* The order hash's remaining TTL, for claims and records written here. */
static void rc_read_ttl(rc_run *r)
{
    const char *argv[] = {"PTTL", r->ok};
    redisReply *x = NULL;
    r->ttl_s = SCH_RECONCILE_TTL_S_DEFAULT;
    if (rc_cmd(r, r->ok, 2, argv, &x) == SH_OK) {
        if (x->type == REDIS_REPLY_INTEGER && x->integer > 0) {
            r->ttl_s = (int64_t)((x->integer + 999) / 1000);
        }
        freeReplyObject(x);
    }
    r->why[0] = '\0';
}

/* ---- reading MySQL ------------------------------------------------------------ */

/* Every detail MySQL holds of the partition, page by page, into the union;
 * *synced gets synced_seq (every page must agree: else it moved). */
static sh_err rc_read_mysql(rc_run *r, uint64_t *synced)
{
    sh_wire_detail *page = calloc(SH_WIRE_DETAILS_PAGE_MAX, sizeof *page);
    if (page == NULL) {
        return rc_fail(r, SH_ENOMEM, "internal", "out of memory for a page of details");
    }
    uint64_t after = 0;
    sh_err rc = SH_OK;
    for (long pages = 0; pages <= SH_RECONCILE_ORDERS_MAX / SH_WIRE_DETAILS_PAGE_MAX * 2 + 1;
         pages++) {
        sh_wire_sync_details_rep rep;
        size_t n = 0;
        char why[256];
        rc = sch_sync_details(r->sync, r->sku, r->part, after, SH_WIRE_DETAILS_PAGE_MAX, &rep, page,
                              &n, why, sizeof why);
        if (rc != SH_OK) {
            rc = rc_fail(r, rc, "unavailable", "no sync worker answered: %s", why);
            break;
        }
        if (rep.status != SH_OK) {
            rc = rc_fail(r, rep.status, "unavailable", "the sync worker could not read MySQL: %s",
                         rep.message);
            break;
        }
        if (pages == 0) {
            *synced = rep.synced_seq;
        } else if (rep.synced_seq != *synced) {
            rc = rc_fail(r, SH_EBUSY, "changed",
                         "MySQL's synced_seq moved from %" PRIu64 " to %" PRIu64 " while read",
                         *synced, rep.synced_seq);
            break;
        }
        for (size_t i = 0; i < n && rc == SH_OK; i++) {
            rc = sch_rc_union_add_mysql(r->u, &page[i]);
        }
        if (rc != SH_OK) {
            rc = rc == SH_ELIMIT ? rc_fail(r, rc, "too_large",
                                           "more than %d orders in "
                                           "partition %u",
                                           SH_RECONCILE_ORDERS_MAX, r->part)
                                 : rc_fail(r, rc, "mysql_inconsistent",
                                           "MySQL's details of partition %u do not run 1, 2, ... "
                                           "(at seq %" PRIu64 ")",
                                           r->part, after + 1);
            break;
        }
        if (n < SH_WIRE_DETAILS_PAGE_MAX) {
            break;
        }
        after = page[n - 1].seq;
    }
    free(page);
    return rc;
}

/* MySQL holds nothing past synced (a batch in flight when the partition was
 * marked may land after the read): else the run reads again. */
static sh_err rc_mysql_still(rc_run *r, uint64_t synced)
{
    sh_wire_detail one;
    sh_wire_sync_details_rep rep;
    size_t n = 0;
    char why[256];
    sh_err rc =
        sch_sync_details(r->sync, r->sku, r->part, synced, 1, &rep, &one, &n, why, sizeof why);
    if (rc != SH_OK || rep.status != SH_OK) {
        return rc_fail(r, rc != SH_OK ? rc : rep.status, "unavailable",
                       "no sync worker answered: %s", rc != SH_OK ? why : rep.message);
    }
    if (n != 0 || rep.synced_seq != synced) {
        return rc_fail(r, SH_EBUSY, "changed", "MySQL's synced_seq moved past %" PRIu64, synced);
    }
    return SH_OK;
}

/* ---- writing ------------------------------------------------------------------- */

/* Records that follow from MySQL alone (write == 1), HSET in pages: true
 * whatever happens next, and the script's arguments stay bounded. */
static sh_err rc_write_restored(rc_run *r)
{
    size_t n = sch_rc_union_count(r->u);
    const char **argv = calloc(2 + 2 * RC_RESTORE_FIELDS, sizeof *argv);
    size_t *lens = calloc(2 + 2 * RC_RESTORE_FIELDS, sizeof *lens);
    char(*text)[SCH_RC_TEXT_BYTES] = calloc(RC_RESTORE_FIELDS, sizeof *text);
    sh_err rc = argv != NULL && lens != NULL && text != NULL ? SH_OK : SH_ENOMEM;
    size_t i = 0;
    while (rc == SH_OK && i < n) {
        int argc = 2, k = 0;
        argv[0] = "HSET";
        argv[1] = r->ok;
        for (; i < n && k < RC_RESTORE_FIELDS; i++) {
            const sch_rc_order *o = sch_rc_union_at(r->u, i);
            if (o->write != 1) {
                continue;
            }
            lens[argc] = strlen(o->id);
            argv[argc++] = o->id;
            lens[argc] = sch_rc_record_text(o, text[k], sizeof text[k]);
            argv[argc++] = text[k++];
        }
        if (k == 0) {
            break;
        }
        lens[0] = 4;
        lens[1] = strlen(r->ok);
        redisReply *x = NULL;
        rc = sh_cluster_command(r->c, r->ok, lens[1], argc, argv, lens, &x);
        if (rc == SH_OK) {
            rc = x->type == REDIS_REPLY_ERROR ? SH_EREDIS : SH_OK;
            freeReplyObject(x);
        }
    }
    if (rc == SH_OK) {
        const char *av[] = {"PTTL", r->ok};
        redisReply *x = NULL;
        char ttl[RC_NUM_BYTES];
        snprintf(ttl, sizeof ttl, "%" PRId64, r->ttl_s);
        if (rc_cmd(r, r->ok, 2, av, &x) == SH_OK) {
            if (x->type == REDIS_REPLY_INTEGER && x->integer == -1) {
                const char *ev[] = {"EXPIRE", r->ok, ttl};
                redisReply *y = NULL;
                if (rc_cmd(r, r->ok, 3, ev, &y) == SH_OK) {
                    freeReplyObject(y);
                }
            }
            freeReplyObject(x);
        }
        rc = rc_confirm(r);
    }
    free(argv);
    free(lens);
    free(text);
    if (rc != SH_OK) {
        return rc_fail(r, rc, "unavailable", "writing the records MySQL holds: %s",
                       sh_strerror(rc));
    }
    r->why[0] = '\0';
    return SH_OK;
}

/* Claims of the union's orders (SET NX "P:1"), and with a per-user limit the
 * user entries (held: "QTY:RCID", released: none), a pipeline per page. */
typedef struct rc_page {
    sh_cluster_cmd cmds[RC_PIPE_CMDS];
    const char *argv[RC_PIPE_CMDS][7];
    size_t lens[RC_PIPE_CMDS][7];
    char keys[RC_PIPE_CMDS][SH_STOCK_KEY_BYTES_MAX];
    char vals[RC_PIPE_CMDS][RC_NUM_BYTES + SCH_RECONCILE_ID_CHARS_MAX + 2];
    size_t idx[RC_PIPE_CMDS];
} rc_page;

static void rc_page_cmd(rc_page *pg, size_t k, int argc)
{
    for (int a = 0; a < argc; a++) {
        pg->lens[k][a] = strlen(pg->argv[k][a]);
    }
    pg->cmds[k] = (sh_cluster_cmd){.route_key = pg->keys[k],
                                   .route_len = strlen(pg->keys[k]),
                                   .argc = argc,
                                   .argv = pg->argv[k],
                                   .argvlen = pg->lens[k]};
}

static void rc_page_free(rc_page *pg, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (pg->cmds[k].reply != NULL) {
            freeReplyObject(pg->cmds[k].reply);
            pg->cmds[k].reply = NULL;
        }
    }
}

/* One page of claims from order index *i on: GET, then SET NX where missing. */
static sh_err rc_claims_page(rc_run *r, rc_page *pg, size_t *i, char *pval, char *ttl)
{
    size_t n = sch_rc_union_count(r->u), k = 0;
    for (; *i < n && k < RC_PIPE_CMDS; (*i)++) {
        const sch_rc_order *o = sch_rc_union_at(r->u, *i);
        if (!o->held) {
            continue;
        }
        sh_stock_key_claim(pg->keys[k], r->sku, o->id);
        pg->argv[k][0] = "GET";
        pg->argv[k][1] = pg->keys[k];
        rc_page_cmd(pg, k, 2);
        k++;
    }
    sh_err rc = k > 0 ? sh_cluster_pipeline(r->c, pg->cmds, k) : SH_OK;
    size_t nset = 0;
    size_t plen = strlen(pval) - 2; /* "P" of "P:1" */
    for (size_t j = 0; j < k && rc == SH_OK; j++) {
        const redisReply *x = pg->cmds[j].reply;
        if (x->type == REDIS_REPLY_NIL) {
            if (nset != j) {
                memcpy(pg->keys[nset], pg->keys[j], sizeof pg->keys[j]);
            }
            nset++;
        } else if (x->type == REDIS_REPLY_STRING) {
            if (!(x->len > plen && memcmp(x->str, pval, plen) == 0 && x->str[plen] == ':')) {
                r->out->claims_elsewhere++;
                SH_WARN(RC_MOD,
                        "claim names another partition sku=%s partition=%u key=%s "
                        "claim=%s",
                        r->sku, r->part, pg->keys[j], x->str);
            }
        } else {
            rc = SH_EPROTO;
        }
    }
    rc_page_free(pg, k);
    for (size_t j = 0; j < nset; j++) {
        pg->argv[j][0] = "SET";
        pg->argv[j][1] = pg->keys[j];
        pg->argv[j][2] = pval;
        pg->argv[j][3] = "NX";
        pg->argv[j][4] = "EX";
        pg->argv[j][5] = ttl;
        rc_page_cmd(pg, j, 6);
    }
    if (rc == SH_OK && nset > 0) {
        rc = sh_cluster_pipeline(r->c, pg->cmds, nset);
        for (size_t j = 0; j < nset && rc == SH_OK; j++) {
            r->out->claims_set += pg->cmds[j].reply->type == REDIS_REPLY_STATUS;
        }
        rc_page_free(pg, nset);
    }
    return rc;
}

/* One page of user entries from order index *i on: HGET, then HSET or HDEL. */
static sh_err rc_users_page(rc_run *r, rc_page *pg, size_t *i, char *ttl)
{
    size_t n = sch_rc_union_count(r->u), k = 0;
    for (; *i < n && k < RC_PIPE_CMDS; (*i)++) {
        const sch_rc_order *o = sch_rc_union_at(r->u, *i);
        if (!o->held || o->user[0] == '\0') {
            continue;
        }
        sh_stock_key_user(pg->keys[k], r->sku, o->user);
        pg->argv[k][0] = "HGET";
        pg->argv[k][1] = pg->keys[k];
        pg->argv[k][2] = o->id;
        pg->idx[k] = *i;
        rc_page_cmd(pg, k, 3);
        k++;
    }
    sh_err rc = k > 0 ? sh_cluster_pipeline(r->c, pg->cmds, k) : SH_OK;
    size_t nfix = 0;
    for (size_t j = 0; j < k && rc == SH_OK; j++) {
        const redisReply *x = pg->cmds[j].reply;
        const sch_rc_order *o = sch_rc_union_at(r->u, pg->idx[j]);
        char want[RC_NUM_BYTES];
        int wl = snprintf(want, sizeof want, "%" PRId64 ":", o->qty);
        int has = x->type == REDIS_REPLY_STRING;
        int right = has && strncmp(x->str, want, (size_t)wl) == 0;
        if (x->type != REDIS_REPLY_NIL && !has) {
            rc = SH_EPROTO;
        } else if (o->rel_seq == 0 && !right) {
            if (nfix != j) {
                memcpy(pg->keys[nfix], pg->keys[j], sizeof pg->keys[j]);
            }
            snprintf(pg->vals[nfix], sizeof pg->vals[nfix], "%s%s", want, r->out->id);
            pg->argv[nfix][0] = "HSET";
            pg->argv[nfix][2] = o->id;
            pg->argv[nfix][3] = pg->vals[nfix];
            pg->idx[nfix++] = 4;
        } else if (o->rel_seq != 0 && has) {
            if (nfix != j) {
                memcpy(pg->keys[nfix], pg->keys[j], sizeof pg->keys[j]);
            }
            pg->argv[nfix][0] = "HDEL";
            pg->argv[nfix][2] = o->id;
            pg->idx[nfix++] = 3;
        }
    }
    rc_page_free(pg, k);
    for (size_t j = 0; j < nfix; j++) {
        pg->argv[j][1] = pg->keys[j];
        rc_page_cmd(pg, j, (int)pg->idx[j]);
    }
    if (rc == SH_OK && nfix > 0) {
        rc = sh_cluster_pipeline(r->c, pg->cmds, nfix);
        rc_page_free(pg, nfix);
        /* A user hash written here outlives nothing it should not: the ttl. */
        for (size_t j = 0; j < nfix && rc == SH_OK; j++) {
            pg->argv[j][0] = "EXPIRE";
            pg->argv[j][1] = pg->keys[j];
            pg->argv[j][2] = ttl;
            rc_page_cmd(pg, j, 3);
        }
        if (rc == SH_OK) {
            rc = sh_cluster_pipeline(r->c, pg->cmds, nfix);
            rc_page_free(pg, nfix);
        }
        r->out->user_entries_fixed += rc == SH_OK ? nfix : 0;
    }
    return rc;
}

static sh_err rc_write_claims_users(rc_run *r)
{
    rc_page *pg = calloc(1, sizeof *pg);
    if (pg == NULL) {
        return rc_fail(r, SH_ENOMEM, "internal", "out of memory for the claims");
    }
    char pval[RC_NUM_BYTES], ttl[RC_NUM_BYTES];
    snprintf(pval, sizeof pval, "%u:1", r->part);
    snprintf(ttl, sizeof ttl, "%" PRId64, r->ttl_s);
    size_t n = sch_rc_union_count(r->u);
    sh_err rc = SH_OK;
    for (size_t i = 0; i < n && rc == SH_OK;) {
        rc = rc_claims_page(r, pg, &i, pval, ttl);
    }
    for (size_t i = 0; i < n && rc == SH_OK && r->pul > 0;) {
        rc = rc_users_page(r, pg, &i, ttl);
    }
    free(pg);
    if (rc == SH_OK) {
        rc = rc_confirm(r);
    }
    if (rc != SH_OK) {
        return rc_fail(r, rc, "unavailable", "writing claims and user entries: %s",
                       sh_strerror(rc));
    }
    return SH_OK;
}

/* Units from the pool when the partition's own cannot cover the union: a
 * journaled grant (GRANT_BEGIN) with an id above every id begun. *u_out gets
 * what the pool gave (0: empty). */
static sh_err rc_grant(rc_run *r, int64_t want, uint64_t *id_out, int64_t *u_out)
{
    *id_out = 0;
    *u_out = 0;
    if (want <= 0) {
        return SH_OK;
    }
    char a_p[RC_NUM_BYTES], a_u[RC_NUM_BYTES], a_id[RC_NUM_BYTES];
    snprintf(a_p, sizeof a_p, "%u", r->part);
    snprintf(a_u, sizeof a_u, "%" PRId64, want);
    uint64_t id = r->nextid;
    for (int tries = 0; tries < RC_GRANT_TRIES; tries++) {
        id = (id > r->g ? id : r->g) + 1;
        snprintf(a_id, sizeof a_id, "%" PRIu64, id);
        const char *keys[] = {r->pool, r->jr};
        const char *args[] = {a_p, a_u, a_id, r->epoch};
        redisReply *x = NULL;
        sh_err rc = rc_eval_str(r, SH_SCRIPT_GRANT_BEGIN, 2, keys, 4, args, &x);
        if (rc == SH_EREDIS && strncmp(r->why, "BADID", 5) == 0) {
            continue; /* the id is another partition's: someone began it meanwhile */
        }
        if (rc != SH_OK) {
            return rc_fail(r, rc, rc == SH_EREDIS ? "internal" : "unavailable",
                           "taking %" PRId64 " units from the pool: %s", want, r->why);
        }
        int64_t rid = 0, u = 0, avail = 0;
        if (x->type != REDIS_REPLY_ARRAY || x->elements != 3 ||
            rc_reply_i64(x->element[0], &rid) != 0 || rc_reply_i64(x->element[1], &u) != 0 ||
            rc_reply_i64(x->element[2], &avail) != 0 || (uint64_t)rid != id || u < 0 || u > want) {
            freeReplyObject(x);
            return rc_fail(r, SH_EPROTO, "internal", "GRANT_BEGIN answered malformed");
        }
        freeReplyObject(x);
        if (u == 0 && avail > 0) {
            continue; /* spent: another begin took this id since nextid was read */
        }
        *id_out = u > 0 ? id : 0;
        *u_out = u;
        return SH_OK;
    }
    return rc_fail(r, SH_EBUSY, "changed", "no free journal id after %d tries", RC_GRANT_TRIES);
}

/* RECONCILE with the plan; fills the out's unit counts. */
static sh_err rc_script(rc_run *r, uint64_t grant_id, int64_t grant_u)
{
    const sch_rc_plan *pl = &r->plan;
    size_t n = sch_rc_union_count(r->u);
    size_t nrec = 0;
    for (size_t i = 0; i < n; i++) {
        nrec += sch_rc_union_at(r->u, i)->write == 2;
    }
    SH_ASSERT(nrec <= pl->nlines); /* each has at least one renumbered answer */
    size_t nargs = SH_RECONCILE_FIXED_ARGS + 2 * nrec + pl->nlines;
    SH_ASSERT(nargs <= RC_ARGS_MAX);
    const char **args = calloc(nargs, sizeof *args);
    size_t *alen = calloc(nargs, sizeof *alen);
    char(*text)[SCH_RC_TEXT_BYTES] = calloc(nrec + pl->nlines + 1, sizeof *text);
    char fixed[SH_RECONCILE_FIXED_ARGS][RC_NUM_BYTES];
    if (args == NULL || alen == NULL || text == NULL) {
        free(args);
        free(alen);
        free(text);
        return rc_fail(r, SH_ENOMEM, "internal", "out of memory for the script's arguments");
    }
    snprintf(fixed[5], RC_NUM_BYTES, "%" PRIu64, pl->new_seq);
    snprintf(fixed[6], RC_NUM_BYTES, "%" PRIu64, pl->synced_seq);
    snprintf(fixed[7], RC_NUM_BYTES, "%" PRId64, pl->new_ded);
    snprintf(fixed[8], RC_NUM_BYTES, "%" PRIu64, grant_id);
    snprintf(fixed[9], RC_NUM_BYTES, "%" PRId64, grant_u);
    snprintf(fixed[10], RC_NUM_BYTES, "%" PRId64, r->ttl_s);
    snprintf(fixed[11], RC_NUM_BYTES, "%zu", nrec);
    snprintf(fixed[12], RC_NUM_BYTES, "%zu", pl->nlines);
    const char *head[SH_RECONCILE_FIXED_ARGS] = {
        r->out->id, r->epoch, r->seq_s, r->ded_s,  r->g_s,    fixed[5], fixed[6],
        fixed[7],   fixed[8], fixed[9], fixed[10], fixed[11], fixed[12]};
    size_t a = 0, t = 0;
    for (; a < SH_RECONCILE_FIXED_ARGS; a++) {
        args[a] = head[a];
        alen[a] = strlen(head[a]);
    }
    for (size_t i = 0; i < n; i++) {
        const sch_rc_order *o = sch_rc_union_at(r->u, i);
        if (o->write == 2) {
            args[a] = o->id;
            alen[a++] = strlen(o->id);
            alen[a] = sch_rc_record_text(o, text[t], sizeof text[t]);
            args[a++] = text[t++];
        }
    }
    for (size_t k = 0; k < pl->nlines; k++) {
        alen[a] = sch_rc_line_text(r->u, &pl->lines[k], text[t], sizeof text[t]);
        args[a++] = text[t++];
    }
    SH_ASSERT(a == nargs);
    const char *keys[] = {r->st, r->dk, r->ok};
    redisReply *x = NULL;
    sh_err rc = rc_eval(r, SH_SCRIPT_RECONCILE, 3, keys, (int)nargs, args, alen, &x);
    free(args);
    free(alen);
    free(text);
    if (rc == SH_EREDIS && strncmp(r->why, "CHANGED", 7) == 0) {
        return rc_fail(r, SH_EBUSY, "changed", "%s", r->why);
    }
    if (rc == SH_EREDIS && strncmp(r->why, "NOTDIVERGED", 11) == 0) {
        return rc_fail(r, SH_EINVAL, "not_diverged", "%s", r->why);
    }
    if (rc != SH_OK) {
        return rc_fail(r, rc, rc == SH_EREDIS ? "internal" : "unavailable",
                       "RECONCILE on %s: %s (%s)", r->st, r->why, sh_strerror(rc));
    }
    int64_t v[SH_RECONCILE_REPLY];
    int bad = x->type != REDIS_REPLY_ARRAY || x->elements != SH_RECONCILE_REPLY;
    for (size_t k = 0; !bad && k < SH_RECONCILE_REPLY; k++) {
        bad = rc_reply_i64(x->element[k], &v[k]) != 0;
    }
    freeReplyObject(x);
    if (bad) {
        return rc_fail(r, SH_EPROTO, "internal", "RECONCILE answered malformed");
    }
    r->out->already = v[0] == 0;
    r->out->from_partition = v[1];
    r->out->from_pool = v[2];
    r->out->given_back = v[3];
    r->out->oversold = v[4];
    return SH_OK;
}

/* One attempt: read, decide, check, write. SH_EBUSY (error "changed") when
 * the partition or MySQL moved meanwhile: the caller tries again. */
static sh_err rc_attempt(rc_run *r)
{
    sch_reconcile_out *out = r->out;
    sh_err rc = rc_read_pool(r);
    if (rc == SH_OK) {
        rc = rc_read_state(r);
    }
    int finished = 0;
    if (rc == SH_OK) {
        rc = rc_finish_grants(r, &finished);
    }
    if (rc == SH_OK && finished > 0) {
        out->grants_finished += (uint64_t)finished;
        rc = rc_read_state(r); /* the grants moved s0/s1 and g */
    }
    if (rc != SH_OK) {
        return rc;
    }
    out->redis_seq_before = r->seq;
    out->redis_ack_before = r->ack;
    out->ded_before = r->ded;
    sch_rc_union_free(r->u);
    r->u = NULL;
    if (sch_rc_union_new(&r->u) != SH_OK) {
        return rc_fail(r, SH_ENOMEM, "internal", "out of memory for the union");
    }
    uint64_t synced = 0;
    rc = rc_read_mysql(r, &synced);
    if (rc == SH_OK) {
        rc = rc_read_records(r);
    }
    if (rc == SH_OK) {
        rc = rc_read_stream(r);
    }
    if (rc != SH_OK) {
        return rc;
    }
    rc_read_ttl(r);
    char why[256];
    rc = sch_rc_union_plan(r->u, synced, r->active, (int64_t)sh_clock_wall_ms(), &r->plan, why,
                           sizeof why);
    if (rc != SH_OK) {
        return rc_fail(r, rc, rc == SH_ELIMIT ? "too_large" : "mysql_inconsistent", "%s", why);
    }
    rc = rc_mysql_still(r, synced);
    if (rc != SH_OK) {
        return rc;
    }
    const sch_rc_plan *pl = &r->plan;
    out->mysql_synced_seq = synced;
    out->mysql_max_seq = synced; /* the plan checked MySQL's seqs run 1..synced_seq */
    out->kept_from_mysql = pl->kept;
    out->renumbered = pl->nlines;
    out->renumbered_first = pl->nlines > 0 ? synced + 1 : 0;
    out->renumbered_last = pl->nlines > 0 ? pl->new_seq : 0;
    out->dropped_duplicates += pl->duplicates;
    out->records_restored += pl->restored;
    out->records_fixed += pl->fixed;
    out->ded_after = pl->new_ded;
    out->seq_after = pl->new_seq;
    rc = rc_write_restored(r);
    if (rc == SH_OK) {
        rc = rc_write_claims_users(r);
    }
    int64_t need = pl->new_ded - r->ded - (r->s0 + r->s1);
    uint64_t grant_id = 0;
    int64_t grant_u = 0;
    if (rc == SH_OK) {
        rc = rc_grant(r, need, &grant_id, &grant_u);
    }
    if (rc == SH_OK) {
        rc = rc_script(r, grant_id, grant_u);
    }
    if (rc != SH_OK) {
        return rc; /* a grant begun stays journaled: the next attempt applies it first */
    }
    out->grant_id = grant_id;
    if (grant_id != 0) {
        char a_id[RC_NUM_BYTES];
        snprintf(a_id, sizeof a_id, "%" PRIu64, grant_id);
        const char *keys[] = {r->jr};
        const char *args[] = {a_id};
        redisReply *x = NULL;
        if (rc_eval_str(r, SH_SCRIPT_JOURNAL_END, 1, keys, 1, args, &x) == SH_OK) {
            freeReplyObject(x);
        } /* else: applied (g = id) and left in the journal; the replay skips it */
        r->why[0] = '\0';
    }
    out->reopened = 1;
    /* A batch the shipper sent before the partition was marked can still land
     * (a worker that was unreachable then); then the seqs just renumbered
     * collide with it and the partition diverges again: say so. */
    sh_wire_detail one;
    sh_wire_sync_details_rep rep;
    size_t n = 0;
    char why2[256];
    out->mysql_synced_after = synced;
    if (sch_sync_details(r->sync, r->sku, r->part, synced, 1, &rep, &one, &n, why2, sizeof why2) ==
            SH_OK &&
        rep.status == SH_OK && (n > 0 || rep.synced_seq != synced)) {
        out->mysql_synced_after = rep.synced_seq;
        out->mysql_moved = 1;
        SH_WARN(RC_MOD,
                "MySQL moved while reconciling sku=%s partition=%u synced_seq=%" PRIu64
                " now=%" PRIu64 ": a batch in flight landed; reconcile it again",
                r->sku, r->part, synced, rep.synced_seq);
    }
    return SH_OK;
}

sh_err sch_reconcile_run(struct sh_cluster *router, struct sch_sync *sync,
                         const sch_reconcile_opts *opts, const char *sku, unsigned part,
                         sch_reconcile_out *out, char *why, size_t whylen)
{
    SH_ASSERT(router != NULL && opts != NULL && sku != NULL && out != NULL);
    SH_ASSERT(why != NULL && whylen > 0);
    static atomic_uint_fast64_t runs; /* ids distinct within a process; wall ms across */
    memset(out, 0, sizeof *out);
    why[0] = '\0';
    rc_run r;
    memset(&r, 0, sizeof r);
    r.c = router;
    r.sync = sync;
    r.opts = opts;
    r.sku = sku;
    r.part = part;
    r.out = out;
    r.why = why;
    r.whylen = whylen;
    if (sh_id_check_sku(sku, strlen(sku)) != SH_OK || part >= SH_PARTITIONS_PER_SKU_MAX) {
        return rc_fail(&r, SH_EINVAL, "bad_request", "bad SKU id or partition %u", part);
    }
    if (sync == NULL) {
        return rc_fail(&r, SH_ECLOSED, "unavailable", "no sync worker link: MySQL cannot be read");
    }
    static const sh_stock_script scripts[] = {SH_SCRIPT_RECONCILE, SH_SCRIPT_GRANT_BEGIN,
                                              SH_SCRIPT_GRANT_APPLY, SH_SCRIPT_JOURNAL_END};
    for (size_t i = 0; i < sizeof scripts / sizeof scripts[0]; i++) {
        sh_err rc =
            sh_cluster_script_add(router, sh_stock_script_text(scripts[i]), &r.sid[scripts[i]]);
        if (rc != SH_OK) {
            return rc_fail(&r, rc, "unavailable", "cannot load script %d: %s", (int)scripts[i],
                           sh_strerror(rc));
        }
    }
    snprintf(r.epoch, sizeof r.epoch, "%" PRIu64, opts->epoch);
    snprintf(out->id, sizeof out->id, "rc.%" PRIu64 ".%" PRIu64 ".%" PRIu64, opts->epoch,
             sh_clock_wall_ms(), (uint64_t)atomic_fetch_add(&runs, 1) + 1);
    sh_stock_key_pool(r.pool, sku);
    sh_stock_key_journal(r.jr, sku);
    sh_err rc = SH_EBUSY;
    for (int a = 1; a <= SCH_RECONCILE_ATTEMPTS_MAX && rc == SH_EBUSY; a++) {
        out->attempts = a;
        out->error = NULL;
        why[0] = '\0';
        rc = rc_attempt(&r);
        if (rc == SH_EBUSY) {
            SH_WARN(RC_MOD,
                    "partition changed while reconciling sku=%s partition=%u attempt=%d "
                    "why=\"%s\"",
                    sku, part, a, why);
        }
    }
    sch_rc_union_free(r.u);
    if (rc != SH_OK) {
        SH_WARN(RC_MOD, "reconcile refused sku=%s partition=%u error=%s why=\"%s\"", sku, part,
                out->error ? out->error : "?", why);
        return rc;
    }
    out->error = NULL;
    SH_INFO(RC_MOD,
            "partition reconciled sku=%s partition=%u id=%s synced_seq=%" PRIu64
            " redis_seq_before=%" PRIu64 " renumbered=%" PRIu64 " seq_after=%" PRIu64
            " dropped_duplicates=%" PRIu64 " records_restored=%" PRIu64 " ded_before=%" PRId64
            " ded_after=%" PRId64 " from_partition=%" PRId64 " from_pool=%" PRId64
            " given_back=%" PRId64 " oversold=%" PRId64 " claims_set=%" PRIu64
            " claims_elsewhere=%" PRIu64 " user_entries_fixed=%" PRIu64 " already=%d",
            sku, part, out->id, out->mysql_synced_seq, out->redis_seq_before, out->renumbered,
            out->seq_after, out->dropped_duplicates, out->records_restored, out->ded_before,
            out->ded_after, out->from_partition, out->from_pool, out->given_back, out->oversold,
            out->claims_set, out->claims_elsewhere, out->user_entries_fixed, out->already);
    if (out->oversold > 0) {
        SH_ERROR(RC_MOD,
                 "reconcile left units oversold sku=%s partition=%u oversold=%" PRId64
                 ": answered deductions no unit backs",
                 sku, part, out->oversold);
    }
    return SH_OK;
}
