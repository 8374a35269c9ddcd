/* pn_ship.c -- ship the partitions' details from Redis to the sync workers (see pn_ship.h).
 *
 * Why one thread with its own router and socket: the router is synchronous
 * and owned by one thread, and the executor's thread must spend its time on
 * deductions; shipping is background work whose Redis cost (one HGET per
 * partition per tick, one XRANGE per batch, one XTRIM + HSET per ack) is small
 * next to the deductions', so it runs beside them without sharing anything.
 *
 * Why contexts, PN_SHIP_SLOTS of them, at most one per partition: the wait
 * for a worker's ack (a MySQL commit) is far longer than building a batch, so
 * one batch at a time would cap the node at one commit per round trip over
 * all its partitions. With a context per in-flight request the shipper keeps
 * up to PN_SHIP_SLOTS batches of different partitions at the workers (which
 * may group them into one transaction) while this thread goes on reading
 * Redis. One per partition keeps each partition's batches contiguous: batch
 * k+1 starts after what the ack of batch k confirmed, so a worker never sees a
 * gap, and the order of acks never matters. A fixed number bounds memory and
 * the load put on the workers; partitions wait their turn round-robin.
 *
 * The life of a partition: unknown -> ask a worker for its synced_seq (a
 * count-0 batch) -> known: acked_seq = synced_seq (trim what is older) ->
 * ship when seq - acked_seq >= ship.threshold_details, or when anything is
 * pending and ship.interval_ms passed since its last batch -> on the ack trim
 * and go on. A batch is whole stream entries read with XRANGE from
 * acked_seq + 1, and its details must run acked_seq + 1, +2, ... without a
 * hole; a hole or a malformed entry is a bug or data loss: it is logged with
 * the partition and the seqs, nothing past it is shipped, and the partition
 * asks again later (a worker may have moved on in the meantime).
 *
 * No ack (timeout, worker down, MySQL down, an error ack): nothing is lost,
 * the details are still in the stream. The partition backs off (doubling from
 * PS_BACKOFF_MIN_MS up to ship.backoff_max_ms) and sends the same range again,
 * re-read from Redis (it cannot have changed: nothing was trimmed). A worker
 * skips seqs at or below its synced_seq, so a batch applied twice (our resend,
 * or a reply lost on the way) changes nothing. A gap ack means the worker's
 * synced_seq is behind what we took as acked: the partition asks again and
 * ships from there. An ack past our seq means MySQL is ahead of Redis (Redis
 * lost writes): logged as an error, and the stream is never trimmed past seq.
 *
 * Nothing read from Redis or from a worker is asserted on: every reply is
 * checked and a bad one is counted and logged. */
#include "pn_ship.h"

#include "pn_round.h"
#include "pn_skus.h"
#include "pn_synclink.h"
#include "sh_clock.h"
#include "sh_cluster.h"
#include "sh_hist.h"
#include "sh_id.h"
#include "sh_limits.h"
#include "sh_log.h"
#include "sh_stock.h"
#include "sh_wire.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PS_MOD                 "ship"
#define PS_TICK_MS_MAX         50    /* seq poll period (or interval / 4 when shorter), ms */
#define PS_DISCOVER_MS_MAX     1000  /* stock:skus re-read period (or ship.interval_ms), ms */
#define PS_BACKOFF_MIN_MS      100   /* first resend delay after a failure, ms */
#define PS_XRANGE_FIRST        16    /* entries asked by a batch's first XRANGE */
#define PS_XRANGE_ENTRIES_MAX  128   /* entries asked by one XRANGE */
#define PS_POLL_CMDS_MAX       1024  /* HGETs in one pipeline */
#define PS_POOL_READS_MAX      64    /* HGETALLs of new pools in one pipeline */
#define PS_WARN_PERIOD_MS      1000  /* one warning line per kind per period */
#define PS_PART_WARN_PERIOD_MS 10000 /* one data-error line per partition per period */
#define PS_NUM_BYTES           24    /* a decimal uint64 with "-0" and its NUL */
#define PS_REFS_MAX            ((size_t)SH_SKUS_MAX * SH_PARTITIONS_PER_SKU_MAX)
/* Reads of one batch: the first, then each adds >= 1 detail per entry read. */
#define PS_XRANGE_READS_MAX (SH_SYNC_BATCH_DETAILS_MAX / PS_XRANGE_ENTRIES_MAX + 2)

_Static_assert(PN_SHIP_SLOTS <= PN_SYNCLINK_SLOTS_MAX, "the link has a context per slot");
_Static_assert(SH_DEDUCT_BATCH_ITEMS_MAX <= SH_SYNC_BATCH_DETAILS_MAX,
               "one script call's entry always fits one batch");
_Static_assert(SH_QTY_UNITS_MAX <= INT32_MAX, "a detail's qty fits the wire's i32");

/* Warning kinds, each rate-limited on its own. */
enum { PS_W_TRANSPORT = 0, PS_W_ACK, PS_W_REDIS, PS_W_GAP, PS_W_COUNT_ };

/* One partition this node ships. */
typedef struct ps_part {
    uint16_t index;
    uint16_t salt;
    bool known;            /* acked_seq came from a worker */
    bool busy;             /* a request of this partition is in flight */
    bool stalled;          /* a hole or a malformed entry right after acked_seq */
    bool hole_seen;        /* a hole met once: ask the worker before calling it an error */
    uint64_t acked_seq;    /* the worker's synced_seq: every seq <= it is in MySQL */
    uint64_t seq;          /* the partition's seq as last read from Redis */
    uint64_t trimmed_seq;  /* stream trimmed and `ack` written up to here */
    uint64_t trim_want;    /* ... and should be up to here (min(acked_seq, seq)) */
    uint64_t resend_last;  /* last_seq of a batch without ack: send that range again; 0 none */
    uint64_t last_ship_ms; /* monotonic: last batch sent (or synced_seq learnt) */
    uint64_t retry_at_ms;  /* monotonic: nothing is sent before; 0 none */
    uint32_t backoff_ms;   /* the current resend delay; 0 after a success */
    uint64_t warned_ms;    /* monotonic: last data-error line of this partition */
    bool diverged;         /* Redis and MySQL disagree: nothing shipped until reconciled */
} ps_part;

typedef struct ps_sku {
    char id[SH_SKU_ID_CHARS_MAX + 1];
    uint8_t id_len;
    uint16_t parts;  /* of the SKU, 1..SH_PARTITIONS_PER_SKU_MAX */
    uint16_t nowned; /* ours: index % node_count == node_id - 1 */
    ps_part *owned;
} ps_sku;

typedef struct ps_ref {
    ps_sku *sku;
    ps_part *part;
} ps_ref;

/* One request in flight. */
typedef struct ps_slot {
    bool busy;
    bool query; /* count-0 batch: the question "synced_seq?" */
    ps_sku *sku;
    ps_part *part;
    uint64_t req_id;
    uint64_t first_seq, last_seq;
    uint32_t count;
    int64_t oldest_ms; /* smallest created_ms of the batch, wall clock */
} ps_slot;

/* Counters since start; shipper thread only. */
typedef struct ps_stats {
    uint64_t batches;      /* batches acked */
    uint64_t details;      /* details in the acked batches */
    uint64_t resends;      /* batches sent again after no ack */
    uint64_t trims;        /* XTRIM + HSET ack pairs done */
    uint64_t errors;       /* data errors, Redis errors, gaps, MySQL ahead of Redis */
    uint64_t failures;     /* requests without an ack (timeout, transport, error ack) */
    uint64_t queries;      /* synced_seq questions answered */
    uint64_t unreplicated; /* batches held back: no replica confirmed them yet */
    uint64_t diverged;     /* partitions found diverged (marked in Redis) */
    uint64_t rewinds;      /* Redis's ack went back (a failover): shipped again to verify */
    sh_hist batch_details;
    sh_hist lag_ms; /* ack time - created_ms of the batch's oldest detail */
} ps_stats;

struct pn_ship {
    /* Configuration, fixed at start. */
    uint32_t node_id, node_count;
    uint32_t threshold;
    uint64_t interval_ms, tick_ms, discover_ms;
    uint32_t backoff_max_ms;
    bool durable;     /* durability = replica: ship only what a replica holds */
    uint32_t wait_ms; /* ... WAIT's timeout, ms */

    sh_cluster *router;
    pn_synclink *link;
    pthread_t thread;
    bool thread_started;
    atomic_bool stopping;

    /* Shipper thread only. */
    ps_sku **skus; /* sorted by id, nskus of SH_SKUS_MAX */
    size_t nskus;
    bool skus_full_warned;
    ps_ref *refs; /* every owned partition, in discovery order */
    size_t nrefs, refs_cap;
    size_t cursor; /* round-robin start of the next schedule pass */
    ps_slot slots[PN_SHIP_SLOTS];
    int busy_slots;
    uint64_t next_req_id;
    sh_wire_detail *details; /* SH_SYNC_BATCH_DETAILS_MAX: the batch being built */
    uint8_t *wire;           /* encode buffer, grown on demand */
    size_t wire_cap;
    /* Poll pipeline scratch, PS_POLL_CMDS_MAX each. */
    char (*keys)[SH_STOCK_KEY_BYTES_MAX];
    const char *(*argv)[5];
    size_t (*argvlen)[5];
    int sid_diverge;
    sh_cluster_cmd *cmds;
    uint64_t next_poll_ms, next_discover_ms, next_stats_ms;
    uint64_t warn_ms[PS_W_COUNT_];
    uint64_t warn_quiet[PS_W_COUNT_]; /* warnings not logged since the last line */
    ps_stats st;
    ps_stats last; /* counters at the previous summary line (histograms unused) */
};

/* ==== small helpers ========================================================== */

/* A rate-limited warning of kind k: at most one line per PS_WARN_PERIOD_MS. */
static void ps_warn(pn_ship *s, int k, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void ps_warn(pn_ship *s, int k, const char *fmt, ...)
{
    SH_ASSERT(k >= 0 && k < PS_W_COUNT_);
    uint64_t now = sh_clock_mono_ms();
    if (s->warn_ms[k] != 0 && now - s->warn_ms[k] < PS_WARN_PERIOD_MS) {
        s->warn_quiet[k]++;
        return;
    }
    char msg[SH_LOG_LINE_BYTES_MAX / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    SH_WARN(PS_MOD, "%s suppressed=%" PRIu64, msg, s->warn_quiet[k]);
    s->warn_ms[k] = now;
    s->warn_quiet[k] = 0;
}

/* A data error of one partition: logged at most once per PS_PART_WARN_PERIOD_MS. */
static bool ps_part_may_log(ps_part *p, uint64_t now)
{
    if (p->warned_ms != 0 && now - p->warned_ms < PS_PART_WARN_PERIOD_MS) {
        return false;
    }
    p->warned_ms = now;
    return true;
}

/* A decimal uint64 filling str[0..len) exactly. */
static bool ps_u64(const char *str, size_t len, uint64_t *out)
{
    if (len == 0 || len > 19) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (str[i] < '0' || str[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(str[i] - '0');
    }
    *out = v;
    return true;
}

/* A reply holding a non-negative integer; NIL (field or key missing) is 0. */
static bool ps_reply_u64(const redisReply *r, uint64_t *out)
{
    if (r == NULL) {
        return false;
    }
    if (r->type == REDIS_REPLY_NIL) {
        *out = 0;
        return true;
    }
    if (r->type == REDIS_REPLY_INTEGER) {
        if (r->integer < 0) {
            return false;
        }
        *out = (uint64_t)r->integer;
        return true;
    }
    return r->type == REDIS_REPLY_STRING && ps_u64(r->str, r->len, out);
}

/* A stream entry id "N-0"; the deduction script writes no other kind. */
static bool ps_entry_id(const redisReply *r, uint64_t *out)
{
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len < 3) {
        return false;
    }
    const char *dash = memchr(r->str, '-', r->len);
    if (dash == NULL || (size_t)(dash - r->str) + 2 != r->len || dash[1] != '0') {
        return false;
    }
    return ps_u64(r->str, (size_t)(dash - r->str), out);
}

static uint64_t ps_now_ms(void)
{
    return sh_clock_mono_ms();
}

static size_t ps_key(char *buf, const ps_ref *r, char which)
{
    return sh_stock_key_part(buf, r->sku->id, r->part->index, r->part->salt, which);
}

static void ps_backoff(pn_ship *s, ps_part *p, uint64_t now)
{
    uint64_t b = p->backoff_ms == 0 ? PS_BACKOFF_MIN_MS : (uint64_t)p->backoff_ms * 2;
    if (b > s->backoff_max_ms) {
        b = s->backoff_max_ms;
    }
    p->backoff_ms = (uint32_t)b;
    p->retry_at_ms = now + b;
}

static void ps_succeeded(ps_part *p)
{
    p->backoff_ms = 0;
    p->retry_at_ms = 0;
}

/* ==== Redis: trim, learn ====================================================== */

/* XTRIM d MINID T+1 (removes the entries whose id, the last seq of their call,
 * is <= T: whole entries only) and HSET st ack T, pipelined: same slot, one
 * round trip. On failure trim_want stays ahead and the schedule retries. */
static void ps_trim(pn_ship *s, const ps_ref *r, uint64_t now)
{
    ps_part *p = r->part;
    uint64_t t = p->trim_want;
    SH_ASSERT(t > p->trimmed_seq);
    char st[SH_STOCK_KEY_BYTES_MAX], dk[SH_STOCK_KEY_BYTES_MAX];
    char minid[PS_NUM_BYTES], ack[PS_NUM_BYTES];
    size_t stlen = ps_key(st, r, 's'), dlen = ps_key(dk, r, 'd');
    int mlen = snprintf(minid, sizeof minid, "%" PRIu64, t + 1);
    int alen = snprintf(ack, sizeof ack, "%" PRIu64, t);
    SH_ASSERT(mlen > 0 && alen > 0);
    const char *xargv[4] = {"XTRIM", dk, "MINID", minid};
    const size_t xlen[4] = {5, dlen, 5, (size_t)mlen};
    const char *hargv[4] = {"HSET", st, "ack", ack};
    const size_t hlen[4] = {4, stlen, 3, (size_t)alen};
    /* `ack` first: the two replicate in this order, so a replica never holds
     * a stream trimmed past its `ack` (a failover then rewinds the shipper to
     * `ack` and re-reads what follows, which must still be there). */
    sh_cluster_cmd cmds[2] = {
        {.route_key = st, .route_len = stlen, .argc = 4, .argv = hargv, .argvlen = hlen},
        {.route_key = dk, .route_len = dlen, .argc = 4, .argv = xargv, .argvlen = xlen},
    };
    (void)sh_cluster_pipeline(s->router, cmds, 2);
    bool ok = true;
    for (int i = 0; i < 2; i++) {
        if (cmds[i].rc != SH_OK || cmds[i].reply == NULL ||
            cmds[i].reply->type != REDIS_REPLY_INTEGER) {
            ok = false;
            s->st.errors++;
            ps_warn(s, PS_W_REDIS, "trim failed sku=%s partition=%u to=%" PRIu64 " err=%s %s",
                    r->sku->id, p->index, t, sh_strerror(cmds[i].rc),
                    cmds[i].reply != NULL && cmds[i].reply->type == REDIS_REPLY_ERROR
                        ? cmds[i].reply->str
                        : "");
        }
        if (cmds[i].reply != NULL) {
            freeReplyObject(cmds[i].reply);
        }
    }
    if (!ok) {
        ps_backoff(s, p, now);
        return;
    }
    p->trimmed_seq = t;
    s->st.trims++;
}

/* Reads seq (and ack) of the partition's state hash. false on any failure. */
static bool ps_read_state(pn_ship *s, const ps_ref *r, uint64_t *seq, uint64_t *ack)
{
    char st[SH_STOCK_KEY_BYTES_MAX];
    size_t stlen = ps_key(st, r, 's');
    const char *argv[4] = {"HMGET", st, "seq", "ack"};
    const size_t lens[4] = {5, stlen, 3, 3};
    redisReply *rep = NULL;
    sh_err rc = sh_cluster_command(s->router, st, stlen, 4, argv, lens, &rep);
    bool ok = rc == SH_OK && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
              ps_reply_u64(rep->element[0], seq) && ps_reply_u64(rep->element[1], ack);
    if (!ok) {
        s->st.errors++;
        ps_warn(s, PS_W_REDIS, "cannot read the state sku=%s partition=%u err=%s", r->sku->id,
                r->part->index, sh_strerror(rc == SH_OK ? SH_EPROTO : rc));
    }
    if (rep != NULL) {
        freeReplyObject(rep);
    }
    return ok;
}

static void ps_diverged(pn_ship *s, const ps_ref *r, const char *why, uint64_t seq,
                        const char *detail);

/* The worker's synced_seq is S. What may be trimmed is min(S, seq): never past
 * what Redis holds, even when MySQL claims more (Redis lost writes: loud). */
static void ps_set_trim_want(pn_ship *s, const ps_ref *r, uint64_t synced, uint64_t now)
{
    ps_part *p = r->part;
    uint64_t want = synced;
    if (synced > p->seq) {
        uint64_t seq = 0, ack = 0;
        if (!ps_read_state(s, r, &seq, &ack)) {
            return; /* trimmed at the next ack */
        }
        if (seq > p->seq) {
            p->seq = seq;
        }
        if (synced > p->seq) {
            s->st.errors++;
            char detail[96];
            snprintf(detail, sizeof detail, "redis seq %" PRIu64 " below MySQL synced_seq %" PRIu64,
                     p->seq, synced);
            ps_diverged(s, r, "mysql_ahead", p->seq, detail);
            want = p->seq;
            (void)now;
        }
    }
    if (want > p->trim_want) {
        p->trim_want = want;
    }
}

/* ==== discovery ============================================================== */

static int ps_sku_cmp(const void *a, const void *b)
{
    const ps_sku *x = *(ps_sku *const *)a, *y = *(ps_sku *const *)b;
    return strcmp(x->id, y->id);
}

static ps_sku *ps_sku_find(const pn_ship *s, const char *id)
{
    ps_sku key;
    memset(&key, 0, sizeof key);
    snprintf(key.id, sizeof key.id, "%s", id);
    const ps_sku *kp = &key;
    ps_sku **hit = bsearch(&kp, s->skus, s->nskus, sizeof *s->skus, ps_sku_cmp);
    return hit != NULL ? *hit : NULL;
}

/* Adds a SKU read from its pool, with the partitions this node owns. */
static sh_err ps_sku_add(pn_ship *s, const char *id, size_t id_len, const pn_sku *layout,
                         uint64_t now)
{
    SH_ASSERT(s->nskus < SH_SKUS_MAX);
    SH_ASSERT(layout->parts >= 1 && layout->parts <= SH_PARTITIONS_PER_SKU_MAX);
    uint16_t nowned = 0;
    for (uint32_t p = 0; p < layout->parts; p++) {
        nowned += p % s->node_count == s->node_id - 1;
    }
    if (s->nrefs + nowned > s->refs_cap) {
        size_t cap = s->refs_cap == 0 ? 256 : s->refs_cap;
        while (cap < s->nrefs + nowned) {
            cap *= 2;
        }
        if (cap > PS_REFS_MAX) {
            cap = PS_REFS_MAX;
        }
        SH_ASSERT(cap >= s->nrefs + nowned); /* SH_SKUS_MAX SKUs of at most 256 partitions */
        ps_ref *refs = realloc(s->refs, cap * sizeof *refs);
        if (refs == NULL) {
            return SH_ENOMEM;
        }
        s->refs = refs;
        s->refs_cap = cap;
    }
    ps_sku *k = calloc(1, sizeof *k);
    if (k == NULL) {
        return SH_ENOMEM;
    }
    if (nowned > 0 && (k->owned = calloc(nowned, sizeof *k->owned)) == NULL) {
        free(k);
        return SH_ENOMEM;
    }
    memcpy(k->id, id, id_len);
    k->id[id_len] = '\0';
    k->id_len = (uint8_t)id_len;
    k->parts = layout->parts;
    for (uint32_t p = 0; p < layout->parts; p++) {
        if (p % s->node_count != s->node_id - 1) {
            continue;
        }
        ps_part *pt = &k->owned[k->nowned++];
        pt->index = (uint16_t)p;
        pt->salt = layout->salt[p];
        pt->last_ship_ms = now;
        s->refs[s->nrefs].sku = k;
        s->refs[s->nrefs].part = pt;
        s->nrefs++;
    }
    SH_ASSERT(k->nowned == nowned);
    s->skus[s->nskus++] = k;
    return SH_OK;
}

/* Reads the pools of ids[0..n) in one pipeline and adds those that parse. */
static void ps_read_pools(pn_ship *s, const redisReply *const *ids, size_t n, uint64_t now)
{
    SH_ASSERT(n <= PS_POOL_READS_MAX);
    for (size_t i = 0; i < n; i++) {
        size_t klen = sh_stock_key_pool(s->keys[i], ids[i]->str);
        s->argv[i][0] = "HGETALL";
        s->argv[i][1] = s->keys[i];
        s->argvlen[i][0] = 7;
        s->argvlen[i][1] = klen;
        s->cmds[i] = (sh_cluster_cmd){.route_key = s->keys[i],
                                      .route_len = klen,
                                      .argc = 2,
                                      .argv = s->argv[i],
                                      .argvlen = s->argvlen[i]};
    }
    (void)sh_cluster_pipeline(s->router, s->cmds, n);
    pn_sku layout;
    for (size_t i = 0; i < n; i++) {
        sh_cluster_cmd *c = &s->cmds[i];
        sh_err rc = c->rc;
        if (rc == SH_OK) {
            memset(&layout, 0, sizeof layout);
            rc = pn_skus_parse_pool(c->reply, &layout);
        }
        if (c->reply != NULL) {
            freeReplyObject(c->reply);
            c->reply = NULL;
        }
        if (rc == SH_ENOTFOUND) {
            continue; /* indexed before its pool exists: read again next time */
        }
        if (rc != SH_OK) {
            s->st.errors++;
            ps_warn(s, PS_W_REDIS, "cannot read the pool of sku=%s err=%s", ids[i]->str,
                    sh_strerror(rc));
            continue;
        }
        rc = ps_sku_add(s, ids[i]->str, ids[i]->len, &layout, now);
        if (rc != SH_OK) {
            s->st.errors++;
            ps_warn(s, PS_W_REDIS, "cannot add sku=%s err=%s", ids[i]->str, sh_strerror(rc));
        }
    }
}

/* SMEMBERS stock:skus; the pools of SKUs not seen yet. */
static void ps_discover(pn_ship *s, uint64_t now)
{
    static const char key[] = SH_STOCK_SKU_INDEX_KEY;
    const char *argv[2] = {"SMEMBERS", key};
    const size_t lens[2] = {8, sizeof key - 1};
    redisReply *rep = NULL;
    sh_err rc = sh_cluster_command(s->router, key, sizeof key - 1, 2, argv, lens, &rep);
    if (rc != SH_OK || rep->type != REDIS_REPLY_ARRAY) {
        s->st.errors++;
        ps_warn(s, PS_W_REDIS, "cannot read %s err=%s", key,
                sh_strerror(rc == SH_OK ? SH_EPROTO : rc));
        if (rep != NULL) {
            freeReplyObject(rep);
        }
        return;
    }
    const redisReply *batch[PS_POOL_READS_MAX];
    size_t nbatch = 0;
    size_t before = s->nskus;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *m = rep->element[i];
        if (m == NULL || m->type != REDIS_REPLY_STRING ||
            sh_id_check_sku(m->str, m->len) != SH_OK || ps_sku_find(s, m->str) != NULL) {
            continue;
        }
        if (s->nskus + nbatch >= SH_SKUS_MAX) {
            if (!s->skus_full_warned) {
                SH_ERROR(PS_MOD, "more than %d SKUs in %s: the rest are not shipped", SH_SKUS_MAX,
                         key);
                s->skus_full_warned = true;
            }
            break;
        }
        batch[nbatch++] = m;
        if (nbatch == PS_POOL_READS_MAX) {
            ps_read_pools(s, batch, nbatch, now);
            nbatch = 0;
            /* Kept sorted between batches: ps_sku_find must see the new ones. */
            qsort(s->skus, s->nskus, sizeof *s->skus, ps_sku_cmp);
        }
    }
    if (nbatch > 0) {
        ps_read_pools(s, batch, nbatch, now);
    }
    if (s->nskus != before) {
        qsort(s->skus, s->nskus, sizeof *s->skus, ps_sku_cmp);
        SH_INFO(PS_MOD, "skus found new=%zu skus=%zu partitions=%zu", s->nskus - before, s->nskus,
                s->nrefs);
    }
    freeReplyObject(rep);
}

/* ==== the seq poll ============================================================ */

/* Marks r's partition diverged in Redis (DIVERGE: DEDUCT refuses it from then
 * on, the scheduler routes around it, the audit names it) and stops shipping
 * it. Logged as an error once. */
static void ps_diverged(pn_ship *s, const ps_ref *r, const char *why, uint64_t seq,
                        const char *detail)
{
    ps_part *p = r->part;
    if (p->diverged) {
        return;
    }
    char st[SH_STOCK_KEY_BYTES_MAX], seq_s[24];
    size_t stlen = ps_key(st, r, 's');
    snprintf(seq_s, sizeof seq_s, "%" PRIu64, seq);
    const char *keys[1] = {st};
    const size_t klen[1] = {stlen};
    const char *args[3] = {why, seq_s, detail};
    const size_t alen[3] = {strlen(why), strlen(seq_s), strlen(detail)};
    redisReply *rep = NULL;
    sh_err rc = sh_cluster_evalsha(s->router, s->sid_diverge, 1, keys, klen, 3, args, alen, &rep);
    bool ok = rc == SH_OK && rep->type == REDIS_REPLY_INTEGER;
    if (rep != NULL) {
        freeReplyObject(rep);
    }
    if (!ok) {
        s->st.errors++;
        ps_warn(s, PS_W_REDIS, "cannot mark diverged sku=%s partition=%u err=%s: trying again",
                r->sku->id, p->index, sh_strerror(rc == SH_OK ? SH_EPROTO : rc));
        return; /* p->diverged stays false: the next check marks it again */
    }
    p->diverged = true;
    s->st.diverged++;
    pn_round_forget_marks(); /* a reconcile may restart its seqs below the node's marks */
    SH_ERROR(PS_MOD,
             "partition diverged from MySQL sku=%s partition=%u why=%s seq=%" PRIu64
             " detail=\"%s\": it takes no deduction until `stockctl partition reconcile`",
             r->sku->id, p->index, why, seq, detail);
}

/* What one poll read of a partition says: seq below what MySQL holds means
 * Redis lost details MySQL has (a failover to a replica that lacked them):
 * diverged. An `ack` below what this shipper wrote means Redis lost writes
 * too, and the seqs after it may have been handed to other orders since: the
 * shipper goes back and ships from there, and the worker compares every
 * detail at or below its synced_seq with what it holds (SH_EDIVERGED). */
static void ps_check_seq(pn_ship *s, const ps_ref *r, uint64_t seq, uint64_t ack, uint64_t now)
{
    ps_part *p = r->part;
    if (p->known && !p->diverged && seq < p->acked_seq) {
        char detail[96];
        snprintf(detail, sizeof detail, "redis seq %" PRIu64 " below MySQL synced_seq %" PRIu64,
                 seq, p->acked_seq);
        ps_diverged(s, r, "mysql_ahead", seq, detail);
    }
    if (p->known && !p->busy && ack < p->trimmed_seq) {
        s->st.rewinds++;
        SH_WARN(PS_MOD,
                "Redis's ack went back sku=%s partition=%u ack=%" PRIu64 " written=%" PRIu64
                ": shipping again from there to verify",
                r->sku->id, p->index, ack, p->trimmed_seq);
        p->acked_seq = ack;
        p->trimmed_seq = ack;
        p->trim_want = ack;
        p->resend_last = 0;
        p->last_ship_ms = 0; /* due now */
        (void)now;
    }
    p->seq = seq;
}

/* HMGET st seq ack of every owned partition, PS_POLL_CMDS_MAX per pipeline. */
static void ps_poll(pn_ship *s)
{
    for (size_t from = 0; from < s->nrefs; from += PS_POLL_CMDS_MAX) {
        size_t n = s->nrefs - from < PS_POLL_CMDS_MAX ? s->nrefs - from : PS_POLL_CMDS_MAX;
        for (size_t i = 0; i < n; i++) {
            size_t klen = ps_key(s->keys[i], &s->refs[from + i], 's');
            s->argv[i][0] = "HMGET";
            s->argv[i][1] = s->keys[i];
            s->argv[i][2] = "seq";
            s->argv[i][3] = "ack";
            s->argv[i][4] = "state";
            s->argvlen[i][0] = 5;
            s->argvlen[i][1] = klen;
            s->argvlen[i][2] = 3;
            s->argvlen[i][3] = 3;
            s->argvlen[i][4] = 5;
            s->cmds[i] = (sh_cluster_cmd){.route_key = s->keys[i],
                                          .route_len = klen,
                                          .argc = 5,
                                          .argv = s->argv[i],
                                          .argvlen = s->argvlen[i]};
        }
        (void)sh_cluster_pipeline(s->router, s->cmds, n);
        for (size_t i = 0; i < n; i++) {
            sh_cluster_cmd *c = &s->cmds[i];
            ps_ref *r = &s->refs[from + i];
            uint64_t seq = 0, ack = 0;
            const redisReply *rep = c->rc == SH_OK ? c->reply : NULL;
            if (rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
                ps_reply_u64(rep->element[0], &seq)) {
                const redisReply *state = rep->element[2];
                if (state->type == REDIS_REPLY_STRING && state->len == 8 &&
                    memcmp(state->str, "diverged", 8) == 0) {
                    r->part->diverged = true; /* marked by anyone: ship nothing of it */
                } else if (r->part->diverged && state->type == REDIS_REPLY_STRING) {
                    r->part->diverged = false; /* reconciled and opened again */
                    r->part->known = false;    /* learn synced_seq anew */
                }
                if (rep->element[1]->type != REDIS_REPLY_NIL &&
                    !ps_reply_u64(rep->element[1], &ack)) {
                    ack = 0;
                }
                ps_check_seq(s, r, seq, ack, ps_now_ms());
            } else {
                s->st.errors++;
                ps_warn(s, PS_W_REDIS, "cannot read seq sku=%s partition=%u err=%s", r->sku->id,
                        r->part->index, sh_strerror(c->rc == SH_OK ? SH_EPROTO : c->rc));
            }
            if (c->reply != NULL) {
                freeReplyObject(c->reply);
                c->reply = NULL;
            }
        }
    }
}

/* ==== building a batch ======================================================= */

typedef enum ps_build {
    PS_BUILD_OK = 0, /* n >= 1 contiguous details from acked_seq + 1 */
    PS_BUILD_EMPTY,  /* nothing after acked_seq in the stream */
    PS_BUILD_HOLE,   /* the stream does not go on at acked_seq + 1 */
    PS_BUILD_BAD,    /* a malformed entry or detail */
    PS_BUILD_REDIS,  /* Redis could not be read */
} ps_build;

/* One entry [id, [field, value, ...]] of an XRANGE reply: its id and the n and
 * b fields. false when it does not have that shape. */
static bool ps_entry(const redisReply *e, uint64_t *id, uint64_t *n, const redisReply **b)
{
    if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        !ps_entry_id(e->element[0], id)) {
        return false;
    }
    const redisReply *f = e->element[1];
    if (f == NULL || f->type != REDIS_REPLY_ARRAY || f->elements % 2 != 0) {
        return false;
    }
    bool have_n = false;
    *b = NULL;
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i], *v = f->element[i + 1];
        if (k == NULL || v == NULL || k->type != REDIS_REPLY_STRING ||
            v->type != REDIS_REPLY_STRING || k->len != 1) {
            continue;
        }
        if (k->str[0] == 'n') {
            have_n = ps_u64(v->str, v->len, n);
        } else if (k->str[0] == 'b') {
            *b = v;
        }
    }
    return have_n && *b != NULL && *n >= 1 && *n <= SH_SYNC_BATCH_DETAILS_MAX;
}

/* Converts a parsed detail line into the wire's record. false when a field
 * is out of the wire's bounds. */
static bool ps_to_wire(const sh_stock_detail *d, sh_wire_detail *w)
{
    if (d->qty == 0 || d->qty > SH_QTY_UNITS_MAX || d->qty < -SH_QTY_UNITS_MAX) {
        return false;
    }
    w->seq = d->seq;
    w->created_ms = d->created_ms;
    w->qty = (int32_t)d->qty;
    w->sub_domain = (uint8_t)d->sub_domain;
    return sh_wire_str_set(w->order_id, sizeof w->order_id, &w->order_id_len, d->order_id,
                           strlen(d->order_id)) == SH_OK &&
           sh_wire_str_set(w->user_id, sizeof w->user_id, &w->user_id_len, d->user_id,
                           strlen(d->user_id)) == SH_OK;
}

typedef struct ps_batch {
    size_t n;           /* details in s->details */
    uint64_t hole_seq;  /* PS_BUILD_HOLE: the seq expected; BAD: the entry id */
    uint64_t found_seq; /* PS_BUILD_HOLE: the first seq found instead (0: none) */
    int64_t oldest_ms;
} ps_batch;

/* Parses the lines of entry b into s->details from index out->n on; next is
 * the seq the next detail must carry. Returns OK, HOLE (nothing after next - 1
 * in this entry starts at next) or BAD. */
static ps_build ps_take_entry(pn_ship *s, const redisReply *b, uint64_t lines_expected,
                              uint64_t eid, uint64_t *next, ps_batch *out)
{
    if (b->len == 0) {
        return PS_BUILD_BAD;
    }
    const char *line = b->str, *end = b->str + b->len;
    uint64_t lines = 0, last = 0;
    sh_stock_detail d;
    while (line < end) {
        size_t left = (size_t)(end - line);
        const char *nl = memchr(line, '\n', left);
        size_t len = nl != NULL ? (size_t)(nl - line) : left;
        if (lines == lines_expected || sh_stock_detail_parse(line, len, &d) != SH_OK) {
            return PS_BUILD_BAD;
        }
        lines++;
        if (lines > 1 && d.seq != last + 1) {
            return PS_BUILD_BAD; /* one call's details are contiguous */
        }
        last = d.seq;
        if (d.seq >= *next) {
            if (d.seq != *next) {
                out->hole_seq = *next;
                out->found_seq = d.seq;
                return PS_BUILD_HOLE;
            }
            SH_ASSERT(out->n < SH_SYNC_BATCH_DETAILS_MAX);
            if (!ps_to_wire(&d, &s->details[out->n])) {
                return PS_BUILD_BAD;
            }
            if (out->n == 0 || d.created_ms < out->oldest_ms) {
                out->oldest_ms = d.created_ms;
            }
            out->n++;
            (*next)++;
        }
        line += len + (nl != NULL ? 1 : 0);
        if (nl == NULL) {
            break;
        }
    }
    /* The entry's id is its call's last seq, and n counts its lines. */
    return lines == lines_expected && last == eid ? PS_BUILD_OK : PS_BUILD_BAD;
}

/* Reads whole entries from acked_seq + 1 until the batch holds >= threshold
 * details, the stream ends, an entry's id reaches limit (a resend: the same
 * range as before; 0 = none) or the next entry would pass
 * SH_SYNC_BATCH_DETAILS_MAX. A hole after some details ends the batch there. */
static ps_build ps_build_batch(pn_ship *s, const ps_ref *r, uint64_t limit, ps_batch *out)
{
    ps_part *p = r->part;
    memset(out, 0, sizeof *out);
    char dk[SH_STOCK_KEY_BYTES_MAX], start[PS_NUM_BYTES], count[PS_NUM_BYTES];
    size_t dlen = ps_key(dk, r, 'd');
    uint64_t next = p->acked_seq + 1; /* the seq the next detail must carry */
    uint64_t from = next;             /* the next XRANGE's start id */
    uint64_t entries_seen = 0;
    for (int reads = 0; reads < PS_XRANGE_READS_MAX; reads++) {
        /* Entries to ask for: what the details seen so far suggest is needed. */
        uint64_t need = s->threshold > out->n ? s->threshold - out->n : 1;
        uint64_t ask = PS_XRANGE_FIRST;
        if (entries_seen > 0) {
            uint64_t per = out->n / entries_seen > 0 ? out->n / entries_seen : 1;
            ask = (need + per - 1) / per;
        }
        ask = ask < need ? ask : need;
        ask = ask < 1 ? 1 : ask > PS_XRANGE_ENTRIES_MAX ? PS_XRANGE_ENTRIES_MAX : ask;
        int slen = snprintf(start, sizeof start, "%" PRIu64 "-0", from);
        int clen = snprintf(count, sizeof count, "%" PRIu64, ask);
        SH_ASSERT(slen > 0 && clen > 0);
        const char *argv[6] = {"XRANGE", dk, start, "+", "COUNT", count};
        const size_t lens[6] = {6, dlen, (size_t)slen, 1, 5, (size_t)clen};
        redisReply *rep = NULL;
        sh_err rc = sh_cluster_command(s->router, dk, dlen, 6, argv, lens, &rep);
        if (rc != SH_OK || rep->type != REDIS_REPLY_ARRAY) {
            s->st.errors++;
            ps_warn(s, PS_W_REDIS, "XRANGE failed sku=%s partition=%u from=%" PRIu64 " err=%s %s",
                    r->sku->id, p->index, from, sh_strerror(rc == SH_OK ? SH_EPROTO : rc),
                    rep != NULL && rep->type == REDIS_REPLY_ERROR ? rep->str : "");
            if (rep != NULL) {
                freeReplyObject(rep);
            }
            return PS_BUILD_REDIS;
        }
        ps_build v = PS_BUILD_OK;
        bool done = false;
        bool at_end = rep->elements < ask; /* the stream has nothing past these */
        for (size_t e = 0; e < rep->elements && v == PS_BUILD_OK && !done; e++) {
            uint64_t eid = 0, n = 0;
            const redisReply *b = NULL;
            if (!ps_entry(rep->element[e], &eid, &n, &b) || eid < from) {
                out->hole_seq = eid; /* 0 when the id itself is malformed */
                v = PS_BUILD_BAD;
                break;
            }
            /* ps_entry bounds n by SH_SYNC_BATCH_DETAILS_MAX: an entry always
             * fits an empty batch, and a full one leaves it for the next. */
            if (out->n + n > SH_SYNC_BATCH_DETAILS_MAX) {
                done = true;
                break;
            }
            v = ps_take_entry(s, b, n, eid, &next, out);
            if (v == PS_BUILD_BAD) {
                out->hole_seq = eid;
            }
            entries_seen++;
            from = eid + 1;
            if (v == PS_BUILD_OK && p->seq < eid) {
                p->seq = eid; /* the stream is newer than the last poll */
            }
            done = done || out->n >= s->threshold || (limit != 0 && eid >= limit);
        }
        freeReplyObject(rep);
        if (v == PS_BUILD_HOLE && out->n > 0) {
            return PS_BUILD_OK; /* ship up to the hole; the next batch meets it */
        }
        if (v != PS_BUILD_OK) {
            return v;
        }
        if (done || at_end) {
            break;
        }
    }
    return out->n > 0 ? PS_BUILD_OK : PS_BUILD_EMPTY;
}

/* ==== sending ================================================================= */

static int ps_free_slot(const pn_ship *s)
{
    for (int i = 0; i < PN_SHIP_SLOTS; i++) {
        if (!s->slots[i].busy) {
            return i;
        }
    }
    return -1;
}

/* Encodes the batch head (and s->details[0..n)) and sends it on a free slot. */
static sh_err ps_send(pn_ship *s, const ps_ref *r, size_t n, int64_t oldest_ms, bool query)
{
    int i = ps_free_slot(s);
    SH_ASSERT(i >= 0 && !r->part->busy);
    ps_slot *slot = &s->slots[i];
    sh_wire_batch head;
    memset(&head, 0, sizeof head);
    memcpy(head.sku, r->sku->id, (size_t)r->sku->id_len + 1);
    head.sku_len = r->sku->id_len;
    head.partition = r->part->index;
    if (n > 0) {
        head.first_seq = s->details[0].seq;
        head.last_seq = s->details[n - 1].seq;
    }
    size_t size = sh_wire_batch_size(&head, s->details, n);
    SH_ASSERT(size >= SH_WIRE_HEADER_BYTES && size <= SH_WIRE_MSG_BYTES_MAX);
    if (size > s->wire_cap) {
        uint8_t *w = realloc(s->wire, size);
        if (w == NULL) {
            return SH_ENOMEM;
        }
        s->wire = w;
        s->wire_cap = size;
    }
    uint64_t req_id = ++s->next_req_id;
    size_t len = 0;
    sh_err rc = sh_wire_batch_encode(s->wire, s->wire_cap, &len, req_id, &head, s->details, n);
    if (rc != SH_OK) {
        return rc; /* a detail the codec refuses: the caller reports it */
    }
    SH_ASSERT(len == size);
    rc = pn_synclink_send(s->link, i, s->wire, len);
    if (rc != SH_OK) {
        return rc;
    }
    *slot = (ps_slot){.busy = true,
                      .query = query,
                      .sku = r->sku,
                      .part = r->part,
                      .req_id = req_id,
                      .first_seq = head.first_seq,
                      .last_seq = head.last_seq,
                      .count = (uint32_t)n,
                      .oldest_ms = oldest_ms};
    r->part->busy = true;
    s->busy_slots++;
    return SH_OK;
}

/* A hole or a malformed entry right after acked_seq: nothing is shipped past
 * it. A hole met for the first time only makes the partition ask the worker
 * again; met again right after, it is logged loudly (once per period per
 * partition), and after the longest backoff the partition asks again, which
 * heals it if the details reached MySQL some other way. */
static void ps_stall(pn_ship *s, const ps_ref *r, ps_build v, const ps_batch *b, uint64_t now)
{
    ps_part *p = r->part;
    if (v != PS_BUILD_BAD && !p->hole_seen) {
        /* Maybe not lost: another shipper (a node that owned the partition a
         * moment ago) may have shipped and trimmed it. Ask the worker first. */
        p->hole_seen = true;
        p->known = false;
        p->resend_last = 0;
        return;
    }
    s->st.errors++;
    p->stalled = true;
    p->known = false;
    p->resend_last = 0;
    p->backoff_ms = s->backoff_max_ms;
    p->retry_at_ms = now + s->backoff_max_ms;
    if (!ps_part_may_log(p, now)) {
        return;
    }
    if (v == PS_BUILD_HOLE || v == PS_BUILD_EMPTY) {
        SH_ERROR(PS_MOD,
                 "hole in the details sku=%s partition=%u acked_seq=%" PRIu64 " seq=%" PRIu64
                 " expected_seq=%" PRIu64 " found_seq=%" PRIu64
                 ": details lost or a bug; not shipping past it",
                 r->sku->id, p->index, p->acked_seq, p->seq, p->acked_seq + 1, b->found_seq);
    } else {
        SH_ERROR(PS_MOD,
                 "malformed stream entry sku=%s partition=%u acked_seq=%" PRIu64 " entry=%" PRIu64
                 ": not shipping past it",
                 r->sku->id, p->index, p->acked_seq, b->hole_seq);
    }
}

/* Durability = replica: MySQL must never hold a detail Redis can lose, or a
 * failover to a replica that lacks it would reuse its seq for another
 * deduction. The batch was just read from the master; the router's barrier
 * (SET + WAIT 1 on it) confirms a replica holds everything the master had,
 * the batch included. One round trip per batch, not per detail. */
static bool ps_replicated(pn_ship *s, const ps_ref *r)
{
    char dk[SH_STOCK_KEY_BYTES_MAX];
    size_t dlen = ps_key(dk, r, 'd');
    int failed = 0;
    (void)sh_cluster_barrier(s->router, 1, s->wait_ms, &failed);
    return sh_cluster_barrier_of(s->router, dk, dlen) == SH_CLUSTER_B_OK;
}

static void ps_ship(pn_ship *s, const ps_ref *r, uint64_t now)
{
    ps_part *p = r->part;
    if (p->resend_last != 0 && p->resend_last <= p->acked_seq) {
        p->resend_last = 0;
    }
    ps_batch b;
    ps_build v = ps_build_batch(s, r, p->resend_last, &b);
    if (v == PS_BUILD_REDIS) {
        ps_backoff(s, p, now);
        return;
    }
    if (v == PS_BUILD_EMPTY && p->seq <= p->acked_seq) {
        return; /* nothing pending after all */
    }
    if (v != PS_BUILD_OK) {
        ps_stall(s, r, v, &b, now);
        return;
    }
    if (s->durable && !ps_replicated(s, r)) {
        s->st.unreplicated++;
        ps_warn(s, PS_W_REDIS,
                "batch held back: no replica holds it yet sku=%s partition=%u details=%zu",
                r->sku->id, p->index, b.n);
        ps_backoff(s, p, now);
        return;
    }
    sh_err rc = ps_send(s, r, b.n, b.oldest_ms, false);
    if (rc != SH_OK) {
        s->st.errors++;
        ps_warn(s, PS_W_ACK, "cannot send a batch sku=%s partition=%u details=%zu err=%s",
                r->sku->id, p->index, b.n, sh_strerror(rc));
        ps_backoff(s, p, now);
        return;
    }
    if (p->resend_last != 0) {
        s->st.resends++;
    }
    p->stalled = false;
    p->hole_seen = false;
    p->last_ship_ms = now;
}

static void ps_query(pn_ship *s, const ps_ref *r, uint64_t now)
{
    sh_err rc = ps_send(s, r, 0, 0, true);
    if (rc != SH_OK) {
        s->st.errors++;
        ps_warn(s, PS_W_ACK, "cannot send a query sku=%s partition=%u err=%s", r->sku->id,
                r->part->index, sh_strerror(rc));
        ps_backoff(s, r->part, now);
    }
}

/* Ship now? Everything pending reaches the threshold, or something is pending
 * and the interval passed since the partition's last batch, or a batch waits
 * to be sent again. */
static bool ps_due(const pn_ship *s, const ps_part *p, uint64_t now)
{
    if (p->diverged) {
        return false;
    }
    if (p->resend_last != 0) {
        return true;
    }
    if (p->seq <= p->acked_seq) {
        return false;
    }
    return p->seq - p->acked_seq >= s->threshold || now - p->last_ship_ms >= s->interval_ms;
}

/* One pass over the owned partitions, round-robin from the cursor, while a
 * slot is free: pending trims, questions, batches. */
static void ps_schedule(pn_ship *s, uint64_t now)
{
    size_t n = s->nrefs;
    size_t last = SIZE_MAX;
    for (size_t k = 0; k < n; k++) {
        size_t i = (s->cursor + k) % n;
        const ps_ref *r = &s->refs[i];
        ps_part *p = r->part;
        if (p->busy || (p->retry_at_ms != 0 && now < p->retry_at_ms)) {
            continue;
        }
        if (p->diverged) {
            continue; /* nothing trimmed or shipped until reconciled */
        }
        if (p->known && p->trimmed_seq < p->trim_want) {
            ps_trim(s, r, now);
        }
        if (s->busy_slots == PN_SHIP_SLOTS) {
            continue; /* trims go on; sends wait for a slot */
        }
        if (!p->known) {
            ps_query(s, r, now);
            last = i;
        } else if (ps_due(s, p, now)) {
            ps_ship(s, r, now);
            last = i;
        }
    }
    if (last != SIZE_MAX) {
        s->cursor = (last + 1) % n; /* the next pass starts after the last served */
    }
}

/* ==== acks =================================================================== */

static void ps_failed(pn_ship *s, const ps_slot *slot, uint64_t now, const char *why,
                      const char *detail)
{
    ps_part *p = slot->part;
    s->st.failures++;
    if (!slot->query) {
        p->resend_last = slot->last_seq;
    }
    ps_backoff(s, p, now);
    ps_warn(s, PS_W_TRANSPORT,
            "no ack sku=%s partition=%u %s first_seq=%" PRIu64 " last_seq=%" PRIu64
            " why=%s detail=\"%s\" retry_ms=%u",
            slot->sku->id, p->index, slot->query ? "query" : "batch", slot->first_seq,
            slot->last_seq, why, detail, p->backoff_ms);
}

/* The worker's synced_seq for a partition we had not heard about. */
static void ps_learned(pn_ship *s, const ps_ref *r, uint64_t synced, uint64_t now)
{
    ps_part *p = r->part;
    uint64_t seq = 0, ack = 0;
    if (!ps_read_state(s, r, &seq, &ack)) {
        ps_backoff(s, p, now); /* ask again */
        return;
    }
    s->st.queries++;
    p->known = true;
    /* Ship from what the stream says was trimmed, not from synced_seq: the
     * details in (ack, synced] are shipped again and the worker compares them
     * with what it holds (a node killed between an ack and its trim finds them
     * equal; Redis after a failover that lost them may hold other orders at
     * those seqs: SH_EDIVERGED). Nothing is trimmed before that. */
    p->acked_seq = ack < synced ? ack : synced;
    p->seq = seq;
    p->resend_last = 0;
    p->last_ship_ms = now;
    p->trimmed_seq = ack;
    p->trim_want = ack;
    if (synced > seq) {
        char detail[96];
        snprintf(detail, sizeof detail, "redis seq %" PRIu64 " below MySQL synced_seq %" PRIu64,
                 seq, synced);
        ps_diverged(s, r, "mysql_ahead", seq, detail);
    }
    ps_succeeded(p);
    if (synced != ack && !p->stalled) { /* e.g. a node killed between an ack and its trim */
        SH_INFO(PS_MOD,
                "synced_seq sku=%s partition=%u synced_seq=%" PRIu64 " ack=%" PRIu64
                " seq=%" PRIu64,
                r->sku->id, p->index, synced, ack, seq);
    }
}

static void ps_acked(pn_ship *s, const ps_ref *r, const ps_slot *slot, uint64_t synced,
                     uint64_t now)
{
    ps_part *p = r->part;
    s->st.batches++;
    s->st.details += slot->count;
    sh_hist_record(&s->st.batch_details, slot->count);
    int64_t wall = (int64_t)sh_clock_wall_ms();
    sh_hist_record(&s->st.lag_ms, wall > slot->oldest_ms ? (uint64_t)(wall - slot->oldest_ms) : 0);
    if (synced > p->acked_seq) {
        p->acked_seq = synced;
    }
    p->resend_last = 0;
    ps_succeeded(p);
    ps_set_trim_want(s, r, synced, now);
    if (p->trimmed_seq < p->trim_want) {
        ps_trim(s, r, now);
    }
}

/* One completion: decode the ack and act on it. */
static void ps_complete(pn_ship *s, const pn_synclink_done *d, uint64_t now)
{
    SH_ASSERT(d->slot >= 0 && d->slot < PN_SHIP_SLOTS);
    ps_slot slot = s->slots[d->slot];
    SH_ASSERT(slot.busy && slot.part->busy);
    s->slots[d->slot].busy = false;
    s->busy_slots--;
    slot.part->busy = false;
    const ps_ref r = {slot.sku, slot.part};
    if (d->rv != 0) {
        ps_failed(s, &slot, now, "transport", pn_synclink_strerror(d->rv));
        return;
    }
    size_t len = 0;
    const uint8_t *data = pn_synclink_reply_data(d->msg, &len);
    sh_wire_header hdr;
    sh_wire_ack ack;
    sh_err rc = sh_wire_ack_decode(data, len, &hdr, &ack);
    pn_synclink_reply_free(d->msg); /* ack holds copies of everything */
    if (rc == SH_OK &&
        (hdr.req_id != slot.req_id || ack.partition != slot.part->index ||
         ack.sku_len != slot.sku->id_len || memcmp(ack.sku, slot.sku->id, ack.sku_len) != 0)) {
        rc = SH_EPROTO;
    }
    if (rc != SH_OK) {
        s->st.errors++;
        ps_failed(s, &slot, now, "bad ack", sh_strerror(rc));
        return;
    }
    if (slot.query) {
        if (ack.status != SH_OK) {
            ps_failed(s, &slot, now, sh_strerror(ack.status), ack.message);
            return;
        }
        ps_learned(s, &r, ack.synced_seq, now);
        return;
    }
    if (ack.status == SH_OK && ack.synced_seq >= slot.last_seq) {
        ps_acked(s, &r, &slot, ack.synced_seq, now);
        return;
    }
    if (ack.status == SH_EDIVERGED) {
        ps_diverged(s, &r, "identity", slot.first_seq, ack.message);
        return;
    }
    if (ack.status == SH_EINVAL && ack.synced_seq < slot.first_seq - 1) {
        /* A gap: the worker is behind what we took as acked. Ask it again. */
        s->st.errors++;
        ps_warn(s, PS_W_GAP,
                "gap at the worker sku=%s partition=%u acked_seq=%" PRIu64
                " worker_synced_seq=%" PRIu64 " message=\"%s\": asking again",
                slot.sku->id, slot.part->index, slot.part->acked_seq, ack.synced_seq, ack.message);
        slot.part->known = false;
        slot.part->resend_last = 0;
        ps_backoff(s, slot.part, now);
        return;
    }
    if (ack.status == SH_OK) {
        s->st.errors++; /* OK below what we sent: not the worker's contract */
    }
    ps_failed(s, &slot, now, sh_strerror(ack.status), ack.message);
}

/* ==== counters =============================================================== */

static void ps_log_stats(pn_ship *s, const char *when)
{
    sh_hist_summary b, l;
    sh_hist_summarize(&s->st.batch_details, &b);
    sh_hist_summarize(&s->st.lag_ms, &l);
    uint64_t pending = 0;
    size_t unknown = 0;
    for (size_t i = 0; i < s->nrefs; i++) {
        const ps_part *p = s->refs[i].part;
        pending += p->known && p->seq > p->acked_seq ? p->seq - p->acked_seq : 0;
        unknown += !p->known;
    }
    SH_INFO(PS_MOD,
            "%s ship_batches=%" PRIu64 " ship_details=%" PRIu64 " ship_resends=%" PRIu64
            " ship_trims=%" PRIu64 " ship_errors=%" PRIu64 " ship_failures=%" PRIu64
            " ship_queries=%" PRIu64 " ship_unreplicated=%" PRIu64 " ship_diverged=%" PRIu64
            " ship_rewinds=%" PRIu64 " batch_p50=%" PRIu64 " batch_p99=%" PRIu64
            " batch_max=%" PRIu64 " lag_p50_ms=%" PRIu64 " lag_p99_ms=%" PRIu64
            " lag_max_ms=%" PRIu64 " skus=%zu partitions=%zu unknown=%zu pending=%" PRIu64
            " in_flight=%d",
            when, s->st.batches, s->st.details, s->st.resends, s->st.trims, s->st.errors,
            s->st.failures, s->st.queries, s->st.unreplicated, s->st.diverged, s->st.rewinds, b.p50,
            b.p99, b.max, l.p50, l.p99, l.max, s->nskus, s->nrefs, unknown, pending, s->busy_slots);
}

/* Every PN_SHIP_STATS_INTERVAL_MS: a summary line when something happened. */
static void ps_tick_stats(pn_ship *s, uint64_t now)
{
    if (now < s->next_stats_ms) {
        return;
    }
    s->next_stats_ms = now + PN_SHIP_STATS_INTERVAL_MS;
    const ps_stats *a = &s->st, *b = &s->last;
    if (a->batches != b->batches || a->errors != b->errors || a->failures != b->failures ||
        a->queries != b->queries || a->trims != b->trims) {
        ps_log_stats(s, "stats");
    }
    s->last.batches = a->batches;
    s->last.errors = a->errors;
    s->last.failures = a->failures;
    s->last.queries = a->queries;
    s->last.trims = a->trims;
}

/* ==== the thread ============================================================= */

static void *ps_main(void *arg)
{
    pn_ship *s = arg;
    uint64_t now = ps_now_ms();
    ps_discover(s, now);
    s->next_discover_ms = now + s->discover_ms;
    s->next_poll_ms = now;
    s->next_stats_ms = now + PN_SHIP_STATS_INTERVAL_MS;
    while (!atomic_load(&s->stopping)) {
        now = ps_now_ms();
        if (now >= s->next_discover_ms) {
            ps_discover(s, now);
            s->next_discover_ms = now + s->discover_ms;
        }
        if (now >= s->next_poll_ms) {
            ps_poll(s);
            s->next_poll_ms = now + s->tick_ms;
        }
        pn_synclink_done d;
        while (pn_synclink_take(s->link, &d)) {
            ps_complete(s, &d, ps_now_ms());
        }
        ps_schedule(s, ps_now_ms());
        now = ps_now_ms();
        ps_tick_stats(s, now);
        uint64_t until = s->next_poll_ms;
        until = s->next_discover_ms < until ? s->next_discover_ms : until;
        until = s->next_stats_ms < until ? s->next_stats_ms : until;
        if (until > now) {
            pn_synclink_wait(s->link, until);
        }
    }
    return NULL;
}

/* ==== lifecycle ============================================================== */

static void ps_free(pn_ship *s)
{
    pn_synclink_close(s->link); /* first: no completion may refer to freed partitions */
    sh_cluster_close(s->router);
    for (size_t i = 0; s->skus != NULL && i < s->nskus; i++) {
        free(s->skus[i]->owned);
        free(s->skus[i]);
    }
    free(s->skus);
    free(s->refs);
    free(s->details);
    free(s->wire);
    free(s->keys);
    free(s->argv);
    free(s->argvlen);
    free(s->cmds);
    free(s);
}

static bool ps_config_ok(const pn_config *cfg)
{
    return cfg->node_count >= 1 && cfg->node_count <= 1024 && cfg->node_id >= 1 &&
           cfg->node_id <= cfg->node_count && cfg->ship_threshold_details >= 1 &&
           cfg->ship_threshold_details <= SH_SYNC_BATCH_DETAILS_MAX &&
           cfg->ship_interval_ms >= SH_SYNC_INTERVAL_MS_MIN &&
           cfg->ship_interval_ms <= SH_SYNC_INTERVAL_MS_MAX && cfg->ship_ack_timeout_ms >= 1 &&
           cfg->ship_ack_timeout_ms <= UINT32_MAX &&
           cfg->ship_backoff_max_ms >= PS_BACKOFF_MIN_MS &&
           cfg->ship_backoff_max_ms <= UINT32_MAX / 2 && cfg->redis_timeout_ms >= 1 &&
           cfg->redis_timeout_ms <= SH_CLUSTER_TIMEOUT_MS_MAX;
}

sh_err pn_ship_start(pn_ship **out, const pn_config *cfg)
{
    SH_ASSERT(out != NULL && cfg != NULL);
    *out = NULL;
    if (!ps_config_ok(cfg)) {
        return SH_EINVAL;
    }
    pn_ship *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return SH_ENOMEM;
    }
    s->node_id = (uint32_t)cfg->node_id;
    s->node_count = (uint32_t)cfg->node_count;
    s->threshold = (uint32_t)cfg->ship_threshold_details;
    s->interval_ms = (uint64_t)cfg->ship_interval_ms;
    s->tick_ms = s->interval_ms / 4 < PS_TICK_MS_MAX ? s->interval_ms / 4 : PS_TICK_MS_MAX;
    s->tick_ms = s->tick_ms < 1 ? 1 : s->tick_ms;
    /* New SKUs are looked for every interval, but at least once a second: with a
     * long interval a new SKU must not wait that long for its first batch. */
    s->discover_ms = s->interval_ms < PS_DISCOVER_MS_MAX ? s->interval_ms : PS_DISCOVER_MS_MAX;
    s->backoff_max_ms = (uint32_t)cfg->ship_backoff_max_ms;
    s->durable = strcmp(cfg->deduct_durability, "replica") == 0;
    s->wait_ms = (uint32_t)cfg->deduct_wait_timeout_ms;
    atomic_init(&s->stopping, false);
    sh_hist_init(&s->st.batch_details);
    sh_hist_init(&s->st.lag_ms);
    s->skus = calloc(SH_SKUS_MAX, sizeof *s->skus);
    s->details = calloc(SH_SYNC_BATCH_DETAILS_MAX, sizeof *s->details);
    s->keys = calloc(PS_POLL_CMDS_MAX, sizeof *s->keys);
    s->argv = calloc(PS_POLL_CMDS_MAX, sizeof *s->argv);
    s->argvlen = calloc(PS_POLL_CMDS_MAX, sizeof *s->argvlen);
    s->cmds = calloc(PS_POLL_CMDS_MAX, sizeof *s->cmds);
    if (s->skus == NULL || s->details == NULL || s->keys == NULL || s->argv == NULL ||
        s->argvlen == NULL || s->cmds == NULL) {
        ps_free(s);
        return SH_ENOMEM;
    }
    sh_err rc = sh_cluster_open(&s->router, cfg->redis_seeds, (uint32_t)cfg->redis_timeout_ms);
    if (rc != SH_OK) {
        SH_ERROR(PS_MOD, "cannot open Redis Cluster seeds=%s err=%s", cfg->redis_seeds,
                 sh_strerror(rc));
        ps_free(s);
        return rc;
    }
    rc = sh_cluster_script_add(s->router, sh_stock_script_text(SH_SCRIPT_DIVERGE), &s->sid_diverge);
    if (rc != SH_OK) {
        SH_ERROR(PS_MOD, "cannot load the DIVERGE script err=%s", sh_strerror(rc));
        ps_free(s);
        return rc;
    }
    rc = pn_synclink_open(&s->link, cfg->ship_sync_urls, PN_SHIP_SLOTS,
                          (uint32_t)cfg->ship_ack_timeout_ms);
    if (rc != SH_OK) {
        ps_free(s);
        return rc;
    }
    int prc = pthread_create(&s->thread, NULL, ps_main, s);
    if (prc != 0) {
        SH_ERROR(PS_MOD, "cannot start the shipper thread: %s", strerror(prc));
        ps_free(s);
        return SH_ENOMEM;
    }
    s->thread_started = true;
    SH_INFO(PS_MOD,
            "shipper started node_id=%u node_count=%u sync_urls=%s workers=%d slots=%d "
            "threshold_details=%u interval_ms=%" PRIu64 " tick_ms=%" PRIu64
            " ack_timeout_ms=%lld backoff_max_ms=%u",
            s->node_id, s->node_count, cfg->ship_sync_urls, pn_synclink_url_count(s->link),
            PN_SHIP_SLOTS, s->threshold, s->interval_ms, s->tick_ms,
            (long long)cfg->ship_ack_timeout_ms, s->backoff_max_ms);
    *out = s;
    return SH_OK;
}

void pn_ship_stop(pn_ship *s)
{
    if (s == NULL) {
        return;
    }
    atomic_store(&s->stopping, true);
    pn_synclink_wake(s->link);
    if (s->thread_started) {
        int rc = pthread_join(s->thread, NULL);
        SH_ASSERT(rc == 0);
    }
    /* The thread is gone: its state is ours. Batches in flight are abandoned
     * (their details are still in Redis; the next start ships them again). */
    ps_log_stats(s, "stats final");
    SH_INFO(PS_MOD, "shipper stopped abandoned_in_flight=%d", s->busy_slots);
    ps_free(s);
}
