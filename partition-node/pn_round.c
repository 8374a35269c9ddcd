/* pn_round.c -- one group-commit round of deductions and releases (see pn_round.h).
 *
 * Why a round and not a request: the Lua script costs about 3 us of Redis time
 * per deduction when it carries many, and a round trip costs far more than
 * that, so the node gathers every request that arrived while the previous
 * round was in flight and runs them as one: a fixed number of pipelines (one
 * round trip per master each), one DEDUCT call per (SKU, partition).
 *
 * Correctness lives in the scripts (sh_stock.c) and in the claim protocol of
 * DESIGN.md 5a; this file must only (1) send each item to the partition its
 * claim names, under the claim's version, (2) never invent an outcome: an item
 * whose fate Redis did not tell us is answered UNAVAILABLE, and (3) keep the
 * per-user counters conservative: a counter taken for a deduction is given
 * back only when we know the deduction did not happen. When a script call
 * failed in a way that leaves its outcome unknown (I/O failure after sending,
 * an error or a malformed reply), the counter is kept: the user may be
 * refused early, but never allowed past the limit.
 *
 * Memory: every array is allocated once for PN_ROUND_ITEMS_MAX items, so a
 * round never allocates (the router's pipeline does, per call). */
#include "pn_round.h"

#include "pn_skus.h"
#include "sh_clock.h"
#include "sh_id.h"
#include "sh_log.h"
#include "sh_stock.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PR_MOD             "round"
#define PR_NUM_BYTES       24 /* a decimal uint64 and its NUL */
#define PR_CLAIM_BYTES     24 /* "P:V": u16 ':' u32 and NUL */
#define PR_SHA_CHARS       40
#define PR_A_ARGS_ITEM     16 /* claim (7) + EVALSHA USER_TAKE (9) */
#define PR_A_CMDS_ITEM     2
#define PR_B_ARGS_CALL     11 /* EVALSHA sha 3 st d o now low ttl n rid */
#define PR_RID_BYTES       40 /* "NONCE.SEQ": two hex uint64 and a dot */
#define PR_ENTRY_BYTES     (PR_NUM_BYTES + PR_RID_BYTES) /* a user entry "QTY:RID" */
#define PR_SETTLE_MAX      4096  /* unknown outcomes waiting to be settled */
#define PR_SETTLE_AFTER_MS 1000  /* first settle attempt after the round, ms */
#define PR_SETTLE_BATCH    256   /* entries settled per sweep */
#define PR_HWM_SLOTS       16384 /* partitions whose answered seq is remembered */
#define PR_HWM_PROBES      64    /* slots looked at per lookup */
#define PR_ARGS_ITEM       (PR_B_ARGS_CALL + SH_DEDUCT_ITEM_ARGS) /* B's worst: one item a call */
#define PR_ARGS_MAX        ((size_t)PN_ROUND_ITEMS_MAX * PR_ARGS_ITEM)
#define PR_CMDS_MAX        ((size_t)PN_ROUND_ITEMS_MAX * PR_A_CMDS_ITEM)
#define PR_CLAIM_VER_MAX   UINT32_MAX
#define PR_UNITS_VALUE_MAX SH_SKU_TOTAL_UNITS_MAX /* s0/s1 read from Redis */

_Static_assert(PR_ARGS_ITEM >= PR_A_ARGS_ITEM, "round A fits the argument pool");
_Static_assert(SH_DEDUCT_FIXED_ARGS == 5 && SH_DEDUCT_ITEM_ARGS == 5, "DEDUCT's ARGV layout");
_Static_assert(PR_SETTLE_BATCH <= PR_CMDS_MAX, "a sweep fits the command pool");
_Static_assert(SH_DEDUCT_REPLY_FIXED == 4 && SH_DEDUCT_REPLY_ITEM == 4, "DEDUCT's reply layout");
_Static_assert(SH_STOCK_TAG_SALT_MAX <= UINT16_MAX, "salts fit pn_sku.salt");
_Static_assert(SH_PARTITIONS_PER_SKU_MAX <= UINT16_MAX, "partitions fit u16");
/* The script's partition flags and the wire's result flags are separate
 * contracts that happen to agree; pr_flags maps them bit by bit anyway. */
_Static_assert(SH_PART_F_FLIPPED == SH_WIRE_RES_F_FLIPPED, "flag values agree");
_Static_assert(SH_PART_F_STANDBY_EMPTY == SH_WIRE_RES_F_STANDBY_EMPTY, "flag values agree");
_Static_assert(SH_PART_F_EXHAUSTED == SH_WIRE_RES_F_EXHAUSTED, "flag values agree");
_Static_assert(SH_PART_F_CLOSED == SH_WIRE_RES_F_CLOSED, "flag values agree");

#define PR_PART_F_ALL                                                                              \
    (SH_PART_F_FLIPPED | SH_PART_F_STANDBY_EMPTY | SH_PART_F_EXHAUSTED | SH_PART_F_CLOSED)

/* Failure kinds logged at most once per round each (counted every time). */
enum {
    PR_LOG_POOL = 1u << 0,
    PR_LOG_CLAIM = 1u << 1,
    PR_LOG_COUNTER = 1u << 2,
    PR_LOG_SCRIPT = 1u << 3,
    PR_LOG_GIVEBACK = 1u << 4,
    PR_LOG_CACHE = 1u << 5,
    PR_LOG_SETTLE = 1u << 6,
    PR_LOG_DURABLE = 1u << 7,
};

/* Working state of one item during a round. */
typedef struct pr_item {
    const pn_sku *sku; /* resolved layout; NULL until step 0 */
    int32_t load;      /* index into loads when the SKU had to be read, else -1 */
    int32_t cmd_claim; /* round A entries, -1 when none */
    int32_t cmd_incr;
    uint16_t part;     /* the partition the claim names: where the script runs */
    uint32_t ver;      /* the claim version it runs under */
    bool done;         /* results[i] is final */
    bool incr;         /* USER_TAKE wrote this item's entry ("QTY:RID") */
    bool take_unknown; /* USER_TAKE's outcome is unknown: the entry may exist */
    bool over;         /* the counter passed per_user_limit */
    bool sent;         /* a DEDUCT call carried it */
    bool answered;     /* ... and told its status */
    bool stale;        /* the cached layout disagrees with Redis: drop it after the round */
    uint8_t status;    /* sh_stock_item_status when answered */
    uint32_t rqty;     /* qty in the script's reply */
    uint8_t ruser_len;
    char ruser[SH_USER_ID_CHARS_MAX + 1]; /* user in the script's reply */
    size_t claim_key_len;
    size_t user_key_len;
    char claim_key[SH_STOCK_KEY_BYTES_MAX];
    char user_key[SH_STOCK_KEY_BYTES_MAX];
    char qty_str[PR_NUM_BYTES];
    char ver_str[PR_NUM_BYTES];
    char part_str[PR_NUM_BYTES];
    char lim_str[PR_NUM_BYTES];
    char entry[PR_ENTRY_BYTES]; /* the user entry this round writes: "QTY:RID" */
    size_t entry_len;
    char claim_str[PR_CLAIM_BYTES]; /* the new claim "P:1", or the expected "F:V" */
} pr_item;

/* One pool read (a SKU missing from the cache or with too few partitions cached). */
typedef struct pr_load {
    uint32_t item; /* an item naming the SKU */
    sh_err rc;     /* SH_OK, SH_ENOTFOUND (no pool), SH_EPROTO, SH_EBUSY (no room), router's */
    size_t key_len;
    char key[SH_STOCK_KEY_BYTES_MAX];
} pr_load;

/* Sort key: items by SKU id (loads) or by (SKU entry, partition, arrival) (groups). */
typedef struct pr_key {
    const sh_wire_item *item;
    uint32_t idx;
    uint32_t sku;
    uint16_t part;
} pr_key;

/* One DEDUCT call: keys[first .. first + n) of the sorted group keys. */
typedef struct pr_call {
    uint32_t first;
    uint32_t n;
    int32_t cmd;
    size_t key_len[3];
    char key[3][SH_STOCK_KEY_BYTES_MAX];
    char n_str[PR_NUM_BYTES];
} pr_call;

/* A user entry whose order's fate is unknown (DEDUCT or USER_TAKE gave no
 * answer): settled later by reading the order's outcome (pr_settle_run). */
typedef struct pr_settle {
    uint64_t due_ms; /* mono */
    uint32_t tries;
    uint8_t sku_len, order_len, user_len, entry_len;
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    char order[SH_ORDER_ID_CHARS_MAX + 1];
    char user[SH_USER_ID_CHARS_MAX + 1];
    char entry[PR_ENTRY_BYTES];
    /* working state of one sweep */
    int32_t cmd;
    uint16_t part;
    uint32_t ver;
    uint8_t step; /* PR_ST_* */
    size_t key_len;
    char key[SH_STOCK_KEY_BYTES_MAX];
    char ver_str[PR_NUM_BYTES];
} pr_settle;

/* A parsed DEDUCT reply head. */
typedef struct pr_head {
    uint8_t a;
    int64_t s0;
    int64_t s1;
    uint8_t flags; /* SH_WIRE_RES_F_* */
} pr_head;

struct pn_round {
    pn_round_config cfg;
    sh_cluster *router;
    int sid_deduct;
    int sid_move;
    int sid_take;
    int sid_back;
    int sid_settle;
    int sid_diverge;
    struct pr_hwm *hwm; /* PR_HWM_SLOTS: the highest seq answered OK per partition */
    size_t hwm_count;
    uint64_t hwm_forgot; /* pr_forget_gen when the table was last emptied for it */
    const char *sha_deduct;
    const char *sha_move;
    const char *sha_take;
    const char *sha_back;
    const char *sha_settle;
    const char *sha_diverge;
    uint64_t rid_nonce; /* random per process: round ids never repeat across restarts */
    uint64_t rid_seq;
    char rid[PR_RID_BYTES];
    size_t rid_len;
    pr_settle *settle; /* ring of PR_SETTLE_MAX */
    size_t settle_head;
    size_t settle_count;
    uint64_t settle_next_ms; /* mono: the earliest due entry, UINT64_MAX when none */
    pr_settle *settle_batch; /* PR_SETTLE_BATCH: one sweep's entries */
    pn_skus *skus;
    pn_round_stats stats;
    unsigned logged; /* PR_LOG_* already logged this round */
    pr_item *it;
    pr_load *loads;
    pr_key *keys;
    pr_call *calls;
    sh_cluster_cmd *cmds;
    size_t ncmds;
    const char **argv;
    size_t *argvlen;
    size_t nargs;
    char ttl_str[PR_NUM_BYTES];
    char low_str[PR_NUM_BYTES];
    char now_str[PR_NUM_BYTES];
};

/* ==== small helpers ======================================================== */

static size_t pr_fmt_u64(char *buf, size_t cap, uint64_t v)
{
    int n = snprintf(buf, cap, "%" PRIu64, v);
    SH_ASSERT(n > 0 && (size_t)n < cap);
    return (size_t)n;
}

/* Starts a pipeline entry routed by key; its arguments follow with pr_arg. */
static sh_cluster_cmd *pr_cmd(pn_round *r, const char *route, size_t route_len, int32_t *index)
{
    SH_ASSERT(r->ncmds < PR_CMDS_MAX);
    sh_cluster_cmd *c = &r->cmds[r->ncmds];
    memset(c, 0, sizeof *c);
    c->route_key = route;
    c->route_len = route_len;
    c->argv = &r->argv[r->nargs];
    c->argvlen = &r->argvlen[r->nargs];
    if (index != NULL) {
        *index = (int32_t)r->ncmds;
    }
    r->ncmds++;
    return c;
}

/* Appends one argument to c, which must be the entry started last. */
static void pr_arg(pn_round *r, sh_cluster_cmd *c, const char *s, size_t len)
{
    SH_ASSERT(r->nargs < PR_ARGS_MAX);
    SH_ASSERT(c->argv + c->argc == &r->argv[r->nargs]);
    r->argv[r->nargs] = s;
    r->argvlen[r->nargs] = len;
    r->nargs++;
    c->argc++;
}

static void pr_args(pn_round *r, sh_cluster_cmd *c, const char *s)
{
    pr_arg(r, c, s, strlen(s));
}

/* Starts "EVALSHA sha 1 key" routed by key; the script's args follow with pr_arg. */
static sh_cluster_cmd *pr_evalsha1(pn_round *r, const char *sha, const char *key, size_t key_len,
                                   int32_t *index)
{
    sh_cluster_cmd *c = pr_cmd(r, key, key_len, index);
    pr_args(r, c, "EVALSHA");
    pr_arg(r, c, sha, PR_SHA_CHARS);
    pr_args(r, c, "1");
    pr_arg(r, c, key, key_len);
    return c;
}

static void pr_cmds_reset(pn_round *r)
{
    r->ncmds = 0;
    r->nargs = 0;
}

static void pr_cmds_free(pn_round *r)
{
    for (size_t k = 0; k < r->ncmds; k++) {
        if (r->cmds[k].reply != NULL) {
            freeReplyObject(r->cmds[k].reply);
            r->cmds[k].reply = NULL;
        }
    }
    pr_cmds_reset(r);
}

static void pr_pipeline(pn_round *r)
{
    if (r->ncmds == 0) {
        return;
    }
    r->stats.pipelines++;
    /* Per-entry rc and replies are read by the caller; the summary rc adds nothing. */
    (void)sh_cluster_pipeline(r->router, r->cmds, r->ncmds);
}

/* Asks again, alone, each entry of the last pipeline whose outcome the router
 * could not tell (SH_EUNKNOWN: written, then no reply in time). Every command
 * of a round may run twice without changing anything: claims are SET NX GET
 * and compare-and-set, user entries are keyed by order and round id, DEDUCT
 * answers a repeat of its round id as the first run did. So the second answer
 * is the first one's. Bounded: once per entry, and no more after one fails
 * (a master that is gone would make each ask wait the router's timeout). */
static void pr_rerun_unknown(pn_round *r)
{
    for (size_t k = 0; k < r->ncmds; k++) {
        sh_cluster_cmd *c = &r->cmds[k];
        if (c->rc != SH_EUNKNOWN) {
            continue;
        }
        SH_ASSERT(c->reply == NULL);
        r->stats.reruns++;
        c->rc = sh_cluster_command(r->router, c->route_key, c->route_len, c->argc, c->argv,
                                   c->argvlen, &c->reply);
        if (c->rc != SH_OK) {
            break;
        }
    }
}

static bool pr_is_noscript(const redisReply *rep)
{
    return rep != NULL && rep->type == REDIS_REPLY_ERROR && rep->len >= 8 &&
           memcmp(rep->str, "NOSCRIPT", 8) == 0;
}

/* The pipeline already heals NOSCRIPT for scripts the router knows; should a
 * NOSCRIPT still come back (e.g. the cache was flushed between the heal and
 * the retry), run that one EVALSHA again alone: sh_cluster_evalsha reloads. */
static void pr_heal_noscript(pn_round *r, sh_cluster_cmd *c, int sid, int numkeys)
{
    if (c->rc != SH_OK || !pr_is_noscript(c->reply)) {
        return;
    }
    SH_ASSERT(c->argc >= 3 + numkeys);
    freeReplyObject(c->reply);
    c->reply = NULL;
    c->rc = sh_cluster_evalsha(r->router, sid, numkeys, &c->argv[3], &c->argvlen[3],
                               c->argc - 3 - numkeys, &c->argv[3 + numkeys],
                               &c->argvlen[3 + numkeys], &c->reply);
}

/* Logs a failure the first time its kind shows up in this round. */
static void pr_log_once(pn_round *r, unsigned kind, const char *what, const sh_wire_item *item,
                        const sh_cluster_cmd *c)
{
    SH_ASSERT(item != NULL);
    r->stats.redis_errors++;
    if ((r->logged & kind) != 0) {
        return;
    }
    r->logged |= kind;
    if (c == NULL) {
        SH_WARN(PR_MOD, "%s sku=%s order=%s", what, item->sku, item->order_id);
    } else if (c->rc != SH_OK) {
        SH_WARN(PR_MOD, "%s: router failed sku=%s order=%s err=%s", what, item->sku, item->order_id,
                sh_strerror(c->rc));
    } else if (c->reply != NULL && c->reply->type == REDIS_REPLY_ERROR) {
        SH_WARN(PR_MOD, "%s: error reply sku=%s order=%s reply=%.*s", what, item->sku,
                item->order_id, (int)c->reply->len, c->reply->str);
    } else {
        SH_WARN(PR_MOD, "%s: unexpected reply sku=%s order=%s type=%d", what, item->sku,
                item->order_id, c->reply != NULL ? c->reply->type : -1);
    }
}

/* A decimal integer in [0, max] filling s[0..len) exactly. */
static bool pr_parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    if (len == 0 || len > 19) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max) {
        return false;
    }
    *out = v;
    return true;
}

/* "P:V" with P < SH_PARTITIONS_PER_SKU_MAX and 1 <= V <= PR_CLAIM_VER_MAX. */
static bool pr_parse_claim(const char *s, size_t len, uint16_t *part, uint32_t *ver)
{
    const char *colon = memchr(s, ':', len);
    if (colon == NULL) {
        return false;
    }
    size_t plen = (size_t)(colon - s);
    uint64_t p, v;
    if (!pr_parse_uint(s, plen, SH_PARTITIONS_PER_SKU_MAX - 1, &p) ||
        !pr_parse_uint(colon + 1, len - plen - 1, PR_CLAIM_VER_MAX, &v) || v < 1) {
        return false;
    }
    *part = (uint16_t)p;
    *ver = (uint32_t)v;
    return true;
}

static bool pr_reply_int(const redisReply *e, long long lo, long long hi, long long *out)
{
    if (e == NULL || e->type != REDIS_REPLY_INTEGER || e->integer < lo || e->integer > hi) {
        return false;
    }
    *out = e->integer;
    return true;
}

/* The script's partition flags, bit by bit, as wire result flags. */
static uint8_t pr_flags(long long part_flags)
{
    uint8_t f = 0;
    f |= (part_flags & SH_PART_F_FLIPPED) ? SH_WIRE_RES_F_FLIPPED : 0;
    f |= (part_flags & SH_PART_F_STANDBY_EMPTY) ? SH_WIRE_RES_F_STANDBY_EMPTY : 0;
    f |= (part_flags & SH_PART_F_EXHAUSTED) ? SH_WIRE_RES_F_EXHAUSTED : 0;
    f |= (part_flags & SH_PART_F_CLOSED) ? SH_WIRE_RES_F_CLOSED : 0;
    return f;
}

static void pr_finish(pr_item *it, sh_wire_result *res, sh_wire_outcome out)
{
    SH_ASSERT(!it->done);
    res->status = out;
    it->done = true;
}

/* ==== step 0: validation and partition layouts ============================== */

static void pr_begin(pn_round *r, const sh_wire_item *items, const bool *release, size_t n,
                     sh_wire_result *res)
{
    for (size_t i = 0; i < n; i++) {
        const sh_wire_item *item = &items[i];
        pr_item *it = &r->it[i];
        it->sku = NULL;
        it->load = -1;
        it->cmd_claim = -1;
        it->cmd_incr = -1;
        it->part = item->partition;
        it->ver = item->claim_version;
        it->done = false;
        it->incr = false;
        it->take_unknown = false;
        it->entry_len = 0;
        it->over = false;
        it->sent = false;
        it->answered = false;
        it->stale = false;
        it->status = 0;
        it->rqty = 0;
        it->ruser_len = 0;
        it->ruser[0] = '\0';
        memset(&res[i], 0, sizeof res[i]);
        res[i].tag = item->tag;
        res[i].partition = item->partition;
        res[i].claim_version = item->claim_version;
        res[i].status = SH_WIRE_OUT_ERROR;

        bool user_ok = (release[i] && item->user_id_len == 0) ||
                       sh_id_check_user(item->user_id, item->user_id_len) == SH_OK;
        /* FORCE_PARTITION would bypass the order's claim, which is what makes
         * idempotency global (DESIGN.md 5a); the node refuses it. */
        if (sh_id_check_sku(item->sku, item->sku_len) != SH_OK ||
            sh_id_check_order(item->order_id, item->order_id_len) != SH_OK || !user_ok ||
            (item->flags & SH_WIRE_ITEM_F_FORCE_PARTITION) != 0 ||
            (!release[i] && (item->qty < 1 || item->qty > SH_QTY_UNITS_MAX))) {
            pr_finish(it, &res[i], SH_WIRE_OUT_INVALID);
        }
    }
}

/* The cached layout has every partition the item names. */
static bool pr_fits(const pn_sku *e, const sh_wire_item *item, bool release)
{
    if (item->partition >= e->parts) {
        return false;
    }
    return release || item->claim_version == 0 || item->from_partition < e->parts;
}

static int pr_key_by_sku(const void *a, const void *b)
{
    const pr_key *x = a, *y = b;
    size_t n = x->item->sku_len < y->item->sku_len ? x->item->sku_len : y->item->sku_len;
    int c = memcmp(x->item->sku, y->item->sku, n);
    if (c != 0) {
        return c;
    }
    if (x->item->sku_len != y->item->sku_len) {
        return x->item->sku_len < y->item->sku_len ? -1 : 1;
    }
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static bool pr_same_sku(const sh_wire_item *a, const sh_wire_item *b)
{
    return a->sku_len == b->sku_len && memcmp(a->sku, b->sku, a->sku_len) == 0;
}

/* Collects the items whose SKU is not cached (or cached with too few
 * partitions) into one pool read per distinct SKU. Returns the number of loads. */
static size_t pr_plan_loads(pn_round *r, const sh_wire_item *items, const bool *release, size_t n,
                            size_t *new_skus)
{
    size_t nmiss = 0;
    for (size_t i = 0; i < n; i++) {
        pr_item *it = &r->it[i];
        it->load = -1;
        if (it->done) {
            continue;
        }
        const pn_sku *e = pn_skus_find(r->skus, items[i].sku, items[i].sku_len);
        if (e != NULL && pr_fits(e, &items[i], release[i])) {
            continue;
        }
        r->keys[nmiss++] = (pr_key){&items[i], (uint32_t)i, 0, 0};
    }
    if (nmiss == 0) {
        *new_skus = 0;
        return 0;
    }
    qsort(r->keys, nmiss, sizeof r->keys[0], pr_key_by_sku);
    size_t nloads = 0, fresh = 0;
    bool room = false;
    for (size_t k = 0; k < nmiss; k++) {
        const pr_key *key = &r->keys[k];
        if (k == 0 || !pr_same_sku(r->keys[k - 1].item, key->item)) {
            /* At most one cache's worth of layouts per round; the rest wait. */
            room = nloads < pn_skus_capacity(r->skus);
            if (room) {
                pr_load *l = &r->loads[nloads++];
                l->item = key->idx;
                l->rc = SH_EBUSY;
                fresh += pn_skus_find(r->skus, key->item->sku, key->item->sku_len) == NULL;
            }
        }
        r->it[key->idx].load = room ? (int32_t)nloads - 1 : -1;
    }
    *new_skus = fresh;
    return nloads;
}

static void pr_resolve(pn_round *r, const sh_wire_item *items, const bool *release, size_t n,
                       sh_wire_result *res)
{
    size_t fresh = 0;
    size_t nloads = pr_plan_loads(r, items, release, n, &fresh);
    if (nloads > 0 && pn_skus_count(r->skus) + fresh > pn_skus_capacity(r->skus)) {
        /* Full: forget every layout (each can be read again) and plan anew. */
        if ((r->logged & PR_LOG_CACHE) == 0) {
            r->logged |= PR_LOG_CACHE;
            SH_INFO(PR_MOD, "sku cache full, emptied entries=%zu capacity=%zu",
                    pn_skus_count(r->skus), pn_skus_capacity(r->skus));
        }
        pn_skus_clear(r->skus);
        nloads = pr_plan_loads(r, items, release, n, &fresh);
    }
    if (nloads > 0) {
        pr_cmds_reset(r);
        for (size_t k = 0; k < nloads; k++) {
            pr_load *l = &r->loads[k];
            const sh_wire_item *item = &items[l->item];
            l->key_len = sh_stock_key_pool(l->key, item->sku);
            sh_cluster_cmd *c = pr_cmd(r, l->key, l->key_len, NULL);
            pr_args(r, c, "HGETALL");
            pr_arg(r, c, l->key, l->key_len);
        }
        r->stats.pool_loads += nloads;
        pr_pipeline(r);
        for (size_t k = 0; k < nloads; k++) {
            pr_load *l = &r->loads[k];
            const sh_wire_item *item = &items[l->item];
            sh_cluster_cmd *c = &r->cmds[k];
            if (c->rc != SH_OK) {
                l->rc = c->rc;
                pr_log_once(r, PR_LOG_POOL, "pool read", item, c);
                continue;
            }
            pn_sku e;
            memset(&e, 0, sizeof e);
            l->rc = pn_skus_parse_pool(c->reply, &e);
            if (l->rc == SH_OK) {
                memcpy(e.id, item->sku, item->sku_len);
                e.id[item->sku_len] = '\0';
                e.id_len = item->sku_len;
                if (pn_skus_put(r->skus, &e) != SH_OK) {
                    l->rc = SH_EBUSY; /* cannot happen: room was made above */
                }
            } else {
                pn_skus_remove(r->skus, item->sku, item->sku_len);
                if (l->rc == SH_EPROTO) {
                    pr_log_once(r, PR_LOG_POOL, "pool malformed", item, c);
                }
            }
        }
        pr_cmds_free(r);
    }
    /* Every pending item looks its layout up again: loads may have moved entries. */
    for (size_t i = 0; i < n; i++) {
        pr_item *it = &r->it[i];
        if (it->done) {
            continue;
        }
        const pn_sku *e = pn_skus_find(r->skus, items[i].sku, items[i].sku_len);
        if (e != NULL && pr_fits(e, &items[i], release[i])) {
            it->sku = e;
            continue;
        }
        sh_err rc = it->load >= 0 ? r->loads[it->load].rc : SH_EBUSY;
        if (rc == SH_OK || rc == SH_ENOTFOUND) {
            pr_finish(it, &res[i], SH_WIRE_OUT_INVALID); /* unknown SKU or partition */
        } else if (rc == SH_EPROTO) {
            pr_finish(it, &res[i], SH_WIRE_OUT_ERROR);
        } else {
            pr_finish(it, &res[i], SH_WIRE_OUT_UNAVAILABLE);
        }
    }
}

/* ==== round A: claims and user counters ==================================== */

static void pr_round_a_build(pn_round *r, const sh_wire_item *items, const bool *release, size_t n)
{
    pr_cmds_reset(r);
    for (size_t i = 0; i < n; i++) {
        pr_item *it = &r->it[i];
        const sh_wire_item *item = &items[i];
        if (it->done) {
            continue;
        }
        it->claim_key_len = sh_stock_key_claim(it->claim_key, item->sku, item->order_id);
        sh_cluster_cmd *c = pr_cmd(r, it->claim_key, it->claim_key_len, &it->cmd_claim);
        if (release[i]) {
            pr_args(r, c, "GET");
            pr_arg(r, c, it->claim_key, it->claim_key_len);
        } else if (item->claim_version == 0) {
            /* Redis 7: NX with GET answers nil when it created the claim, else the claim. */
            int len =
                snprintf(it->claim_str, sizeof it->claim_str, "%u:1", (unsigned)item->partition);
            SH_ASSERT(len > 0 && (size_t)len < sizeof it->claim_str);
            pr_args(r, c, "SET");
            pr_arg(r, c, it->claim_key, it->claim_key_len);
            pr_arg(r, c, it->claim_str, (size_t)len);
            pr_args(r, c, "NX");
            pr_args(r, c, "GET");
            pr_args(r, c, "EX");
            pr_args(r, c, r->ttl_str);
        } else {
            int len = snprintf(it->claim_str, sizeof it->claim_str, "%u:%" PRIu32,
                               (unsigned)item->from_partition, item->claim_version);
            SH_ASSERT(len > 0 && (size_t)len < sizeof it->claim_str);
            size_t plen = pr_fmt_u64(it->part_str, sizeof it->part_str, item->partition);
            pr_args(r, c, "EVALSHA");
            pr_arg(r, c, r->sha_move, PR_SHA_CHARS);
            pr_args(r, c, "1");
            pr_arg(r, c, it->claim_key, it->claim_key_len);
            pr_arg(r, c, it->claim_str, (size_t)len);
            pr_arg(r, c, it->part_str, plen);
            pr_args(r, c, r->ttl_str);
            r->stats.claim_moves++;
        }
        size_t qlen = pr_fmt_u64(it->qty_str, sizeof it->qty_str, item->qty);
        if (!release[i] && item->per_user_limit > 0) {
            /* The order's entry "QTY:RID" in the user's hash; it lives as long
             * as the outcome it guards (claim_ttl_s), not forever. */
            it->user_key_len = sh_stock_key_user(it->user_key, item->sku, item->user_id);
            int elen = snprintf(it->entry, sizeof it->entry, "%s:%s", it->qty_str, r->rid);
            SH_ASSERT(elen > 0 && (size_t)elen < sizeof it->entry);
            it->entry_len = (size_t)elen;
            size_t llen = pr_fmt_u64(it->lim_str, sizeof it->lim_str, item->per_user_limit);
            c = pr_evalsha1(r, r->sha_take, it->user_key, it->user_key_len, &it->cmd_incr);
            pr_arg(r, c, item->order_id, item->order_id_len);
            pr_arg(r, c, it->qty_str, qlen);
            pr_arg(r, c, it->lim_str, llen);
            pr_arg(r, c, r->rid, r->rid_len);
            pr_args(r, c, r->ttl_str);
        }
    }
}

static void pr_round_a_read(pn_round *r, const sh_wire_item *items, const bool *release, size_t n,
                            sh_wire_result *res)
{
    for (size_t i = 0; i < n; i++) {
        pr_item *it = &r->it[i];
        const sh_wire_item *item = &items[i];
        if (it->done) {
            continue;
        }
        if (it->cmd_incr >= 0) {
            sh_cluster_cmd *c = &r->cmds[it->cmd_incr];
            pr_heal_noscript(r, c, r->sid_take, 1);
            if (c->rc != SH_OK) {
                /* It may or may not have run: the sweep settles the entry. */
                pr_log_once(r, PR_LOG_COUNTER, "user counter", item, c);
                it->take_unknown = true;
                pr_finish(it, &res[i], SH_WIRE_OUT_UNAVAILABLE);
            } else if (c->reply->type != REDIS_REPLY_INTEGER ||
                       (c->reply->integer != 0 && c->reply->integer != 1)) {
                /* An error reply: the script writes nothing before it checks. */
                pr_log_once(r, PR_LOG_COUNTER, "user counter", item, c);
                pr_finish(it, &res[i], SH_WIRE_OUT_ERROR);
            } else {
                it->incr = c->reply->integer == 1;
                it->over = c->reply->integer == 0;
            }
        }
        sh_cluster_cmd *c = &r->cmds[it->cmd_claim];
        if (!release[i] && item->claim_version > 0) {
            pr_heal_noscript(r, c, r->sid_move, 1);
        }
        if (it->done) {
            continue;
        }
        if (c->rc != SH_OK) {
            pr_log_once(r, PR_LOG_CLAIM, "claim", item, c);
            pr_finish(it, &res[i], SH_WIRE_OUT_UNAVAILABLE);
            continue;
        }
        const redisReply *rep = c->reply;
        if (rep->type == REDIS_REPLY_NIL && release[i]) {
            pr_finish(it, &res[i], SH_WIRE_OUT_UNKNOWN_ORDER); /* never claimed (or expired) */
            continue;
        }
        if (rep->type == REDIS_REPLY_NIL && !release[i] && item->claim_version == 0) {
            it->part = item->partition; /* we created it */
            it->ver = 1;
        } else if (rep->type != REDIS_REPLY_STRING ||
                   !pr_parse_claim(rep->str, rep->len, &it->part, &it->ver)) {
            pr_log_once(r, PR_LOG_CLAIM, "claim", item, c);
            pr_finish(it, &res[i], SH_WIRE_OUT_ERROR);
            continue;
        }
        if (release[i] && item->claim_version > 0 && it->part == item->from_partition &&
            it->ver == item->claim_version) {
            /* A follow-up of a release that met a tombstone under this very
             * claim: it has not moved since, so no partition holds the order. */
            pr_finish(it, &res[i], SH_WIRE_OUT_UNKNOWN_ORDER);
            continue;
        }
        res[i].partition = it->part;
        res[i].claim_version = it->ver;
        if (it->part >= it->sku->parts) {
            /* A claim on a partition we do not know: our layout may be old. */
            it->stale = true;
            pr_log_once(r, PR_LOG_CLAIM, "claim names an unknown partition", item, NULL);
            pr_finish(it, &res[i], SH_WIRE_OUT_ERROR);
        }
    }
}

static void pr_round_a(pn_round *r, const sh_wire_item *items, const bool *release, size_t n,
                       sh_wire_result *res)
{
    pr_round_a_build(r, items, release, n);
    pr_pipeline(r);
    pr_rerun_unknown(r);
    pr_round_a_read(r, items, release, n, res);
    pr_cmds_free(r);
}

/* ==== round B: one DEDUCT call per (SKU, partition) ======================== */

static int pr_key_by_group(const void *a, const void *b)
{
    const pr_key *x = a, *y = b;
    if (x->sku != y->sku) {
        return x->sku < y->sku ? -1 : 1;
    }
    if (x->part != y->part) {
        return x->part < y->part ? -1 : 1;
    }
    return x->idx < y->idx ? -1 : x->idx > y->idx; /* request order within a group */
}

static size_t pr_plan_calls(pn_round *r, const sh_wire_item *items, size_t n)
{
    size_t nkeys = 0;
    for (size_t i = 0; i < n; i++) {
        pr_item *it = &r->it[i];
        if (it->done) {
            continue;
        }
        r->keys[nkeys++] =
            (pr_key){&items[i], (uint32_t)i, (uint32_t)pn_skus_index(r->skus, it->sku), it->part};
    }
    qsort(r->keys, nkeys, sizeof r->keys[0], pr_key_by_group);
    size_t ncalls = 0;
    for (size_t k = 0; k < nkeys; k++) {
        pr_call *call = ncalls > 0 ? &r->calls[ncalls - 1] : NULL;
        bool same = call != NULL && r->keys[call->first].sku == r->keys[k].sku &&
                    r->keys[call->first].part == r->keys[k].part &&
                    call->n < r->cfg.batch_items_max;
        if (same) {
            call->n++;
            continue;
        }
        call = &r->calls[ncalls++];
        call->first = (uint32_t)k;
        call->n = 1;
        call->cmd = -1;
    }
    return ncalls;
}

static void pr_round_b_build(pn_round *r, const sh_wire_item *items, const bool *release,
                             size_t ncalls)
{
    pr_cmds_reset(r);
    for (size_t k = 0; k < ncalls; k++) {
        pr_call *call = &r->calls[k];
        const pr_item *head = &r->it[r->keys[call->first].idx];
        const pn_sku *e = head->sku;
        static const char which[3] = {'s', 'd', 'o'};
        for (int w = 0; w < 3; w++) {
            call->key_len[w] =
                sh_stock_key_part(call->key[w], e->id, head->part, e->salt[head->part], which[w]);
        }
        size_t nlen = pr_fmt_u64(call->n_str, sizeof call->n_str, call->n);
        sh_cluster_cmd *c = pr_cmd(r, call->key[0], call->key_len[0], &call->cmd);
        pr_args(r, c, "EVALSHA");
        pr_arg(r, c, r->sha_deduct, PR_SHA_CHARS);
        pr_args(r, c, "3");
        for (int w = 0; w < 3; w++) {
            pr_arg(r, c, call->key[w], call->key_len[w]);
        }
        pr_args(r, c, r->now_str);
        pr_args(r, c, r->low_str);
        pr_args(r, c, r->ttl_str);
        pr_arg(r, c, call->n_str, nlen);
        pr_arg(r, c, r->rid, r->rid_len);
        for (uint32_t j = 0; j < call->n; j++) {
            const sh_wire_item *item = &items[r->keys[call->first + j].idx];
            pr_arg(r, c, item->order_id, item->order_id_len);
        }
        for (uint32_t j = 0; j < call->n; j++) {
            uint32_t i = r->keys[call->first + j].idx;
            pr_item *it = &r->it[i];
            const sh_wire_item *item = &items[i];
            SH_ASSERT(it->sku == e && it->part == head->part && !it->done);
            size_t vlen = pr_fmt_u64(it->ver_str, sizeof it->ver_str, it->ver);
            pr_args(r, c, release[i] ? "R" : it->over ? "U" : "D");
            pr_arg(r, c, item->user_id, item->user_id_len);
            pr_args(r, c, it->qty_str);
            pr_arg(r, c, it->ver_str, vlen);
            it->sent = true;
        }
        SH_ASSERT(c->argc == 3 + 3 + SH_DEDUCT_FIXED_ARGS + (int)call->n * SH_DEDUCT_ITEM_ARGS);
        r->stats.script_calls++;
        r->stats.script_items += call->n;
        sh_hist_record(&r->stats.items_per_call, call->n);
    }
}

/* Checks one item's four reply values against what was asked; the status must
 * be one the script can give for that op, with a seq and qty that fit it. */
static bool pr_item_reply_ok(const redisReply *const *v, const sh_wire_item *item, bool release,
                             long long *status, long long *seq, long long *qty)
{
    if (!pr_reply_int(v[0], SH_ITEM_OK, SH_ITEM_RELEASED, status) ||
        !pr_reply_int(v[1], 0, INT64_MAX, seq) || !pr_reply_int(v[2], 0, SH_QTY_UNITS_MAX, qty)) {
        return false;
    }
    if (v[3] == NULL || v[3]->type != REDIS_REPLY_STRING || v[3]->len > SH_USER_ID_CHARS_MAX ||
        (v[3]->len > 0 && sh_id_check_user(v[3]->str, v[3]->len) != SH_OK)) {
        return false;
    }
    if (release) {
        if (*status == SH_ITEM_OK || *status == SH_ITEM_DUPLICATE) {
            return *seq >= 1 && *qty >= 1;
        }
        return *status == SH_ITEM_UNKNOWN || *status == SH_ITEM_MOVED;
    }
    switch (*status) {
    case SH_ITEM_OK:
    case SH_ITEM_DUPLICATE:
        return *seq >= 1 && *qty == (long long)item->qty;
    case SH_ITEM_CONFLICT:
        return *seq >= 1 && *qty != (long long)item->qty;
    case SH_ITEM_RELEASED:
        return *seq >= 1 && *qty >= 1;
    case SH_ITEM_USER_LIMIT:
    case SH_ITEM_INSUFFICIENT:
    case SH_ITEM_MOVED:
        return true;
    default:
        return false; /* UNKNOWN answers releases only */
    }
}

/* Validates a whole DEDUCT reply before anything of it is used. */
static bool pr_reply_ok(pn_round *r, const pr_call *call, const redisReply *rep,
                        const sh_wire_item *items, const bool *release, pr_head *head)
{
    if (rep->type != REDIS_REPLY_ARRAY ||
        rep->elements != SH_DEDUCT_REPLY_FIXED + (size_t)call->n * SH_DEDUCT_REPLY_ITEM) {
        return false;
    }
    long long a, s0, s1, flags;
    if (!pr_reply_int(rep->element[0], 0, 1, &a) ||
        !pr_reply_int(rep->element[1], 0, PR_UNITS_VALUE_MAX, &s0) ||
        !pr_reply_int(rep->element[2], 0, PR_UNITS_VALUE_MAX, &s1) ||
        !pr_reply_int(rep->element[3], 0, PR_PART_F_ALL, &flags) || (flags & ~PR_PART_F_ALL) != 0) {
        return false;
    }
    for (uint32_t j = 0; j < call->n; j++) {
        uint32_t i = r->keys[call->first + j].idx;
        const redisReply *const *v =
            (const redisReply *const *)&rep
                ->element[SH_DEDUCT_REPLY_FIXED + (size_t)j * SH_DEDUCT_REPLY_ITEM];
        long long status, seq, qty;
        if (!pr_item_reply_ok(v, &items[i], release[i], &status, &seq, &qty)) {
            return false;
        }
    }
    head->a = (uint8_t)a;
    head->s0 = s0;
    head->s1 = s1;
    head->flags = pr_flags(flags);
    return true;
}

static sh_wire_outcome pr_outcome(long long status)
{
    switch (status) {
    case SH_ITEM_OK:
    case SH_ITEM_DUPLICATE:
        return SH_WIRE_OUT_OK;
    case SH_ITEM_CONFLICT:
        return SH_WIRE_OUT_CONFLICT;
    case SH_ITEM_USER_LIMIT:
        return SH_WIRE_OUT_USER_LIMIT;
    case SH_ITEM_INSUFFICIENT:
    case SH_ITEM_MOVED:
        /* .partition and .claim_version say who refused under which claim, so
         * the scheduler can move the claim on by compare-and-set. */
        return SH_WIRE_OUT_RETRY;
    case SH_ITEM_UNKNOWN:
        return SH_WIRE_OUT_UNKNOWN_ORDER;
    case SH_ITEM_RELEASED:
        return SH_WIRE_OUT_RELEASED;
    default:
        SH_ASSERT(!"status validated by pr_item_reply_ok");
        return SH_WIRE_OUT_ERROR;
    }
}

static void pr_round_b_read(pn_round *r, const sh_wire_item *items, const bool *release,
                            size_t ncalls, sh_wire_result *res)
{
    for (size_t k = 0; k < ncalls; k++) {
        const pr_call *call = &r->calls[k];
        sh_cluster_cmd *c = &r->cmds[call->cmd];
        pr_heal_noscript(r, c, r->sid_deduct, 3);
        const sh_wire_item *first = &items[r->keys[call->first].idx];
        if (c->rc == SH_OK && c->reply->type == REDIS_REPLY_ERROR && c->reply->len >= 8 &&
            memcmp(c->reply->str, "DIVERGED", 8) == 0) {
            /* The partition diverged from MySQL (DIVERGE): the script refused
             * before writing anything, so no item was deducted here. */
            pr_log_once(r, PR_LOG_SCRIPT, "deduct script", first, c);
            for (uint32_t j = 0; j < call->n; j++) {
                uint32_t i = r->keys[call->first + j].idx;
                pr_item *it = &r->it[i];
                it->answered = true;
                it->status = SH_ITEM_MOVED; /* not held: round C gives its entry back */
                res[i].partition = it->part;
                res[i].flags = SH_WIRE_RES_F_DIVERGED;
                pr_finish(it, &res[i], SH_WIRE_OUT_UNAVAILABLE);
            }
            continue;
        }
        pr_head head;
        if (c->rc != SH_OK || !pr_reply_ok(r, call, c->reply, items, release, &head)) {
            /* Still no answer: its items' fate is unknown to us; the sweep
             * settles their user entries (pr_settle_add). */
            pr_log_once(r, PR_LOG_SCRIPT, "deduct script", first, c);
            for (uint32_t j = 0; j < call->n; j++) {
                uint32_t i = r->keys[call->first + j].idx;
                pr_finish(&r->it[i], &res[i], SH_WIRE_OUT_UNAVAILABLE);
            }
            continue;
        }
        const redisReply *rep = c->reply;
        for (uint32_t j = 0; j < call->n; j++) {
            uint32_t i = r->keys[call->first + j].idx;
            pr_item *it = &r->it[i];
            const redisReply *const *v =
                (const redisReply *const *)&rep
                    ->element[SH_DEDUCT_REPLY_FIXED + (size_t)j * SH_DEDUCT_REPLY_ITEM];
            long long status = v[0]->integer;
            it->answered = true;
            it->status = (uint8_t)status;
            it->rqty = (uint32_t)v[2]->integer;
            it->ruser_len = (uint8_t)v[3]->len;
            memcpy(it->ruser, v[3]->str, v[3]->len);
            it->ruser[v[3]->len] = '\0';
            sh_wire_result *out = &res[i];
            out->partition = it->part;
            out->claim_version = it->ver;
            out->active = head.a;
            out->s0 = head.s0;
            out->s1 = head.s1;
            out->flags = head.flags;
            out->seq = (uint64_t)v[1]->integer;
            out->qty = it->rqty;
            if (status == SH_ITEM_DUPLICATE) {
                out->flags |= SH_WIRE_RES_F_DUPLICATE;
            }
            pr_finish(it, out, pr_outcome(status));
        }
    }
}

static void pr_round_b(pn_round *r, const sh_wire_item *items, const bool *release, size_t n,
                       sh_wire_result *res)
{
    size_t ncalls = pr_plan_calls(r, items, n);
    if (ncalls == 0) {
        return;
    }
    (void)pr_fmt_u64(r->now_str, sizeof r->now_str, sh_clock_wall_ms());
    pr_round_b_build(r, items, release, ncalls);
    pr_pipeline(r);
    /* A call whose outcome is unknown carries this round's id: asked again
     * now, before any later round writes to its partition, it changes nothing
     * and answers as the first run did (the DEDUCT contract in sh_stock.c). */
    pr_rerun_unknown(r);
    pr_round_b_read(r, items, release, ncalls, res);
    pr_cmds_free(r);
}

/* ==== round C: user entries given back, fixed, or left to settle ========== */

static void pr_settle_add(pn_round *r, const sh_wire_item *item, const char *user, size_t user_len,
                          const pr_item *it);

/* Appends USER_BACK(order, entry) on key: entry "QTY:RID" gives back only what
 * this round wrote, "*" whatever the order holds (a release). */
static void pr_user_back(pn_round *r, pr_item *it, const sh_wire_item *item, const char *entry,
                         size_t entry_len)
{
    sh_cluster_cmd *c = pr_evalsha1(r, r->sha_back, it->user_key, it->user_key_len, &it->cmd_incr);
    pr_arg(r, c, item->order_id, item->order_id_len);
    pr_arg(r, c, entry, entry_len);
}

/* The per-user entries after the answers (DESIGN.md 5a): an entry stays
 * exactly while its order holds units.
 * - A deduction that surely did not happen here (never sent; refused; the
 *   order was released) gives back the entry this round wrote, only while it
 *   still reads "QTY:RID" (a retry of the order may have re-taken it since).
 * - CONFLICT: the order holds its first qty, so the entry says that qty.
 * - A release that gave units back (now or before) deletes the order's entry.
 * - An unknown outcome keeps the entry and queues it for the sweep, which
 *   reads the order's outcome and gives back what was never deducted. */
static void pr_round_c(pn_round *r, const sh_wire_item *items, const bool *release, size_t n)
{
    pr_cmds_reset(r);
    for (size_t i = 0; i < n; i++) {
        pr_item *it = &r->it[i];
        const sh_wire_item *item = &items[i];
        SH_ASSERT(it->done);
        it->cmd_incr = -1; /* from here on: this round's give-back entry */
        if (!release[i]) {
            bool unknown = it->take_unknown || (it->incr && it->sent && !it->answered);
            if (unknown) {
                pr_settle_add(r, item, item->user_id, item->user_id_len, it);
                continue;
            }
            if (!it->incr) {
                continue;
            }
            bool held =
                it->answered && (it->status == SH_ITEM_OK || it->status == SH_ITEM_DUPLICATE);
            if (held) {
                continue;
            }
            if (it->answered && it->status == SH_ITEM_CONFLICT) {
                int len = snprintf(it->entry, sizeof it->entry, "%" PRIu32 ":%s", it->rqty, r->rid);
                SH_ASSERT(len > 0 && (size_t)len < sizeof it->entry);
                sh_cluster_cmd *c = pr_cmd(r, it->user_key, it->user_key_len, &it->cmd_incr);
                pr_args(r, c, "HSET");
                pr_arg(r, c, it->user_key, it->user_key_len);
                pr_arg(r, c, item->order_id, item->order_id_len);
                pr_arg(r, c, it->entry, (size_t)len);
                continue;
            }
            pr_user_back(r, it, item, it->entry, it->entry_len);
        } else if (it->answered && (it->status == SH_ITEM_OK || it->status == SH_ITEM_DUPLICATE) &&
                   item->per_user_limit > 0 && it->ruser_len > 0) {
            /* The units went back: so does the order's share of the limit. */
            it->user_key_len = sh_stock_key_user(it->user_key, item->sku, it->ruser);
            pr_user_back(r, it, item, "*", 1);
        }
    }
    if (r->ncmds == 0) {
        return;
    }
    r->stats.give_backs += r->ncmds;
    pr_pipeline(r);
    pr_rerun_unknown(r);
    for (size_t i = 0; i < n; i++) {
        pr_item *it = &r->it[i];
        sh_cluster_cmd *c = it->cmd_incr >= 0 ? &r->cmds[it->cmd_incr] : NULL;
        if (c == NULL) {
            continue;
        }
        pr_heal_noscript(r, c, r->sid_back, 1);
        if (c->rc != SH_OK || c->reply->type != REDIS_REPLY_INTEGER) {
            /* The entry may stay: the sweep settles it from the order's outcome. */
            pr_log_once(r, PR_LOG_GIVEBACK, "user entry give-back", &items[i], c);
            const char *user = release[i] ? it->ruser : items[i].user_id;
            size_t ulen = release[i] ? it->ruser_len : items[i].user_id_len;
            pr_settle_add(r, &items[i], user, ulen, it);
        }
    }
    pr_cmds_free(r);
}

/* ==== durability = replica ================================================ */

/* The worst barrier state of the masters item it wrote to this round. */
static sh_cluster_barrier_state pr_item_barrier(const pn_round *r, const pr_item *it, bool release)
{
    sh_cluster_barrier_state worst = SH_CLUSTER_B_OK, b;
    char st[SH_STOCK_KEY_BYTES_MAX];
    size_t len = sh_stock_key_part(st, it->sku->id, it->part, it->sku->salt[it->part], 's');
    b = sh_cluster_barrier_of(r->router, st, len);
    worst = b > worst ? b : worst;
    if (!release) {
        b = sh_cluster_barrier_of(r->router, it->claim_key, it->claim_key_len);
        worst = b > worst ? b : worst;
    }
    if (it->incr) {
        b = sh_cluster_barrier_of(r->router, it->user_key, it->user_key_len);
        worst = b > worst ? b : worst;
    }
    return worst;
}

/* Runs one barrier when want; returns true when some master was not confirmed. */
static bool pr_barrier_failed(pn_round *r, bool want)
{
    if (!want) {
        return false;
    }
    int failed = 0;
    r->stats.barriers++;
    (void)sh_cluster_barrier(r->router, 1, r->cfg.wait_ms, &failed);
    return failed != 0;
}

/* Item i becomes 503 because a master it relies on is not confirmed (b). */
static void pr_not_durable(pn_round *r, const sh_wire_item *item, sh_wire_result *res,
                           sh_cluster_barrier_state b, const char *what)
{
    res->status = SH_WIRE_OUT_UNAVAILABLE;
    res->flags =
        b == SH_CLUSTER_B_NO_REPLICA ? SH_WIRE_RES_F_NO_REPLICA : SH_WIRE_RES_F_NOT_REPLICATED;
    r->stats.not_durable++;
    if ((r->logged & PR_LOG_DURABLE) == 0) {
        r->logged |= PR_LOG_DURABLE;
        SH_WARN(PR_MOD, "%s not confirmed by a replica: answered 503 sku=%s order=%s why=%s", what,
                item->sku, item->order_id,
                b == SH_CLUSTER_B_NO_REPLICA ? "no_replica" : "replication_timeout");
    }
}

/* Before any DEDUCT: the claims and user entries the round relies on must be
 * on a replica. A claim lost in a failover after its order was deducted would
 * let a retry claim another partition and take the order twice; a lost user
 * entry would let the user pass the limit. So one barrier confirms the masters
 * round A touched (and any master an earlier barrier could not confirm); a
 * deduction whose claim or entry is not confirmed is not sent: it answers 503
 * and round C gives its entry back. Releases need no claim confirmed (a lost
 * claim makes a release UNKNOWN_ORDER, never a second deduction). */
static void pr_claims_durable(pn_round *r, const sh_wire_item *items, const bool *release, size_t n,
                              sh_wire_result *res)
{
    bool any = false;
    for (size_t i = 0; i < n && !any; i++) {
        any = !r->it[i].done && !release[i];
    }
    if (!pr_barrier_failed(r, any)) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        pr_item *it = &r->it[i];
        if (it->done || release[i]) {
            continue;
        }
        sh_cluster_barrier_state b =
            sh_cluster_barrier_of(r->router, it->claim_key, it->claim_key_len);
        if (it->incr) {
            sh_cluster_barrier_state u =
                sh_cluster_barrier_of(r->router, it->user_key, it->user_key_len);
            b = u > b ? u : b;
        }
        if (b != SH_CLUSTER_B_OK) {
            it->done = true;
            pr_not_durable(r, &items[i], &res[i], b, "claim");
        }
    }
}

/* Answers only what a replica holds: one barrier for the whole round, then
 * every answered item whose masters a replica did not confirm becomes
 * UNAVAILABLE. Its outcome stays recorded in Redis, so a retry after the
 * replica caught up returns it (DUPLICATE -> ok), and a failover before that
 * loses only answers nobody was given. */
static void pr_durable(pn_round *r, const sh_wire_item *items, const bool *release, size_t n,
                       sh_wire_result *res)
{
    bool any = false;
    for (size_t i = 0; i < n && !any; i++) {
        any = r->it[i].sent;
    }
    /* When nothing reached a script every answer is an error already. */
    if (!pr_barrier_failed(r, any)) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        pr_item *it = &r->it[i];
        if (!it->answered || res[i].status == SH_WIRE_OUT_UNAVAILABLE) {
            continue;
        }
        sh_cluster_barrier_state b = pr_item_barrier(r, it, release[i]);
        if (b != SH_CLUSTER_B_OK) {
            pr_not_durable(r, &items[i], &res[i], b, "round");
        }
    }
}

/* ==== answered seqs: a partition handing out a seq it answered before ====== */

/* One partition's highest seq this node answered OK, in an open-addressing
 * table keyed by (SKU, partition). A new OK with a seq at or below it means
 * Redis lost answered deductions and is reusing their seqs (a failover under
 * durability = leader): the partition is marked diverged at once. */
typedef struct pr_hwm {
    uint8_t used;
    uint8_t sku_len;
    uint16_t part;
    char sku[SH_SKU_ID_CHARS_MAX];
    uint64_t seq;
} pr_hwm;

static uint64_t pr_hwm_hash(const char *sku, size_t len, uint16_t part)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h = (h ^ (uint8_t)sku[i]) * 1099511628211ULL;
    }
    return (h ^ part) * 1099511628211ULL;
}

/* Bumped by pn_round_forget_marks (any thread); each round empties its table
 * when it sees a new value. */
static atomic_uint_fast64_t pr_forget_gen;

void pn_round_forget_marks(void)
{
    atomic_fetch_add(&pr_forget_gen, 1);
}

/* Empties the table when a partition was marked diverged since the last run. */
static void pr_hwm_maybe_forget(pn_round *r)
{
    uint64_t gen = atomic_load(&pr_forget_gen);
    if (gen != r->hwm_forgot) {
        if (r->hwm_count > 0) {
            SH_INFO(PR_MOD, "a partition diverged: answered seqs forgotten entries=%zu",
                    r->hwm_count);
        }
        memset(r->hwm, 0, sizeof *r->hwm * PR_HWM_SLOTS);
        r->hwm_count = 0;
        r->hwm_forgot = gen;
    }
}

/* The entry of (sku, part), created when absent; NULL when the table is full
 * (then it is emptied for the next round: a check missed, never a false one). */
static pr_hwm *pr_hwm_get(pn_round *r, const char *sku, size_t len, uint16_t part)
{
    size_t i = (size_t)(pr_hwm_hash(sku, len, part) % PR_HWM_SLOTS);
    for (size_t k = 0; k < PR_HWM_PROBES; k++) {
        pr_hwm *e = &r->hwm[(i + k) % PR_HWM_SLOTS];
        if (!e->used) {
            e->used = 1;
            e->sku_len = (uint8_t)len;
            memcpy(e->sku, sku, len);
            e->part = part;
            e->seq = 0;
            r->hwm_count++;
            return e;
        }
        if (e->part == part && e->sku_len == len && memcmp(e->sku, sku, len) == 0) {
            return e;
        }
    }
    if (r->hwm_count > 0) {
        SH_INFO(PR_MOD, "answered-seq table full, emptied entries=%zu", r->hwm_count);
        memset(r->hwm, 0, sizeof *r->hwm * PR_HWM_SLOTS);
        r->hwm_count = 0;
    }
    return NULL;
}

/* After the answers are final: every new OK moves its partition's mark up; a
 * new OK at or below the mark is a seq handed out twice. */
static void pr_answered(pn_round *r, const sh_wire_item *items, size_t n, sh_wire_result *res)
{
    for (size_t i = 0; i < n; i++) {
        pr_item *it = &r->it[i];
        if (res[i].status != SH_WIRE_OUT_OK || (res[i].flags & SH_WIRE_RES_F_DUPLICATE) != 0 ||
            !it->answered || it->status != SH_ITEM_OK || it->sku == NULL) {
            continue;
        }
        pr_hwm *e = pr_hwm_get(r, items[i].sku, items[i].sku_len, it->part);
        if (e == NULL) {
            continue;
        }
        if (res[i].seq > e->seq) {
            e->seq = res[i].seq;
            continue;
        }
        /* Reused: mark the partition (its next calls are refused before any
         * write) and answer this one 503; its outcome stays recorded. */
        char st[SH_STOCK_KEY_BYTES_MAX], seq_s[PR_NUM_BYTES], detail[128];
        size_t stlen = sh_stock_key_part(st, it->sku->id, it->part, it->sku->salt[it->part], 's');
        size_t slen = pr_fmt_u64(seq_s, sizeof seq_s, res[i].seq);
        int dlen = snprintf(detail, sizeof detail,
                            "seq %" PRIu64 " handed out again; this node answered up to %" PRIu64,
                            res[i].seq, e->seq);
        SH_ASSERT(dlen > 0 && (size_t)dlen < sizeof detail);
        const char *keys[1] = {st};
        const size_t klen[1] = {stlen};
        const char *args[3] = {"answered_lost", seq_s, detail};
        const size_t alen[3] = {13, slen, (size_t)dlen};
        redisReply *rep = NULL;
        sh_err rc =
            sh_cluster_evalsha(r->router, r->sid_diverge, 1, keys, klen, 3, args, alen, &rep);
        if (rep != NULL) {
            freeReplyObject(rep);
        }
        r->stats.diverged++;
        pn_round_forget_marks(); /* after this round: reconcile renumbers below the mark */
        SH_ERROR(PR_MOD,
                 "partition diverged sku=%s partition=%u why=answered_lost seq=%" PRIu64
                 " answered_up_to=%" PRIu64 " marked=%s",
                 items[i].sku, (unsigned)it->part, res[i].seq, e->seq, sh_strerror(rc));
        res[i].status = SH_WIRE_OUT_UNAVAILABLE;
        res[i].flags = SH_WIRE_RES_F_DIVERGED;
    }
}

/* ==== the sweep: settle user entries of unknown outcomes ==================== */

enum { PR_ST_CLAIM = 0, PR_ST_SETTLE, PR_ST_BACK, PR_ST_DONE, PR_ST_RETRY };

static void pr_settle_add(pn_round *r, const sh_wire_item *item, const char *user, size_t user_len,
                          const pr_item *it)
{
    if (user_len == 0) {
        return;
    }
    if (r->settle_count == PR_SETTLE_MAX) {
        r->stats.settle_dropped++;
        SH_WARN(PR_MOD, "settle queue full, entry left to its ttl sku=%s order=%s cap=%d",
                item->sku, item->order_id, PR_SETTLE_MAX);
        return;
    }
    pr_settle *e = &r->settle[(r->settle_head + r->settle_count) % PR_SETTLE_MAX];
    memset(e, 0, sizeof *e);
    e->due_ms = sh_clock_mono_ms() + PR_SETTLE_AFTER_MS;
    e->sku_len = (uint8_t)item->sku_len;
    memcpy(e->sku, item->sku, item->sku_len);
    e->order_len = (uint8_t)item->order_id_len;
    memcpy(e->order, item->order_id, item->order_id_len);
    e->user_len = (uint8_t)user_len;
    memcpy(e->user, user, user_len);
    /* A take whose outcome is unknown, or a give-back that failed: the entry
     * may read "QTY:RID"; a release's give-back: any entry of the order. */
    if (it->entry_len > 0 && it->entry_len < sizeof e->entry && (it->incr || it->take_unknown)) {
        memcpy(e->entry, it->entry, it->entry_len);
        e->entry_len = (uint8_t)it->entry_len;
    } else {
        e->entry[0] = '*';
        e->entry_len = 1;
    }
    r->settle_count++;
    if (e->due_ms < r->settle_next_ms) {
        r->settle_next_ms = e->due_ms;
    }
    r->stats.settle_queued++;
}

uint64_t pn_round_settle_due_ms(const pn_round *r)
{
    SH_ASSERT(r != NULL);
    return r->settle_count == 0 ? UINT64_MAX : r->settle_next_ms;
}

/* Puts e at the tail of the queue (there is room: it was just taken out). */
static void pr_settle_push(pn_round *r, const pr_settle *e)
{
    SH_ASSERT(r->settle_count < PR_SETTLE_MAX);
    r->settle[(r->settle_head + r->settle_count) % PR_SETTLE_MAX] = *e;
    r->settle_count++;
    if (e->due_ms < r->settle_next_ms) {
        r->settle_next_ms = e->due_ms;
    }
}

/* The layout of a SKU for the sweep: the cache, else one pool read. */
static const pn_sku *pr_settle_sku(pn_round *r, const pr_settle *e)
{
    const pn_sku *sku = pn_skus_find(r->skus, e->sku, e->sku_len);
    if (sku != NULL) {
        return sku;
    }
    char key[SH_STOCK_KEY_BYTES_MAX];
    size_t klen = sh_stock_key_pool(key, e->sku);
    const char *argv[2] = {"HGETALL", key};
    const size_t lens[2] = {7, klen};
    redisReply *rep = NULL;
    if (sh_cluster_command(r->router, key, klen, 2, argv, lens, &rep) != SH_OK) {
        return NULL;
    }
    pn_sku fresh;
    memset(&fresh, 0, sizeof fresh);
    if (pn_skus_count(r->skus) < pn_skus_capacity(r->skus) &&
        pn_skus_parse_pool(rep, &fresh) == SH_OK) {
        memcpy(fresh.id, e->sku, e->sku_len);
        fresh.id[e->sku_len] = '\0';
        fresh.id_len = e->sku_len;
        (void)pn_skus_put(r->skus, &fresh);
    }
    freeReplyObject(rep);
    return pn_skus_find(r->skus, e->sku, e->sku_len);
}

/* One pipelined step of the sweep over batch[0..n): builds what each entry in
 * `step` needs, sends it, and moves each entry on by its reply. */
static void pr_settle_step(pn_round *r, pr_settle *batch, size_t n, uint8_t step)
{
    pr_cmds_reset(r);
    for (size_t k = 0; k < n; k++) {
        pr_settle *e = &batch[k];
        e->cmd = -1;
        if (e->step != step) {
            continue;
        }
        sh_cluster_cmd *c;
        if (step == PR_ST_CLAIM) {
            e->key_len = sh_stock_key_claim(e->key, e->sku, e->order);
            c = pr_cmd(r, e->key, e->key_len, &e->cmd);
            pr_args(r, c, "GET");
            pr_arg(r, c, e->key, e->key_len);
        } else if (step == PR_ST_SETTLE) {
            const pn_sku *sku = pr_settle_sku(r, e);
            if (sku == NULL || e->part >= sku->parts) {
                e->step = PR_ST_RETRY;
                continue;
            }
            e->key_len = sh_stock_key_part(e->key, e->sku, e->part, sku->salt[e->part], 'o');
            size_t vlen = pr_fmt_u64(e->ver_str, sizeof e->ver_str, e->ver);
            c = pr_evalsha1(r, r->sha_settle, e->key, e->key_len, &e->cmd);
            pr_arg(r, c, e->order, e->order_len);
            pr_arg(r, c, e->ver_str, vlen);
        } else {
            e->key_len = sh_stock_key_user(e->key, e->sku, e->user);
            c = pr_evalsha1(r, r->sha_back, e->key, e->key_len, &e->cmd);
            pr_arg(r, c, e->order, e->order_len);
            pr_arg(r, c, e->entry, e->entry_len);
        }
    }
    pr_pipeline(r);
    for (size_t k = 0; k < n; k++) {
        pr_settle *e = &batch[k];
        if (e->cmd < 0) {
            continue;
        }
        sh_cluster_cmd *c = &r->cmds[e->cmd];
        if (step != PR_ST_CLAIM) {
            pr_heal_noscript(r, c, step == PR_ST_SETTLE ? r->sid_settle : r->sid_back, 1);
        }
        const redisReply *rep = c->rc == SH_OK ? c->reply : NULL;
        if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
            e->step = PR_ST_RETRY;
        } else if (step == PR_ST_CLAIM) {
            if (rep->type == REDIS_REPLY_NIL) {
                e->step = PR_ST_BACK; /* never claimed: nothing can hold it */
            } else if (rep->type == REDIS_REPLY_STRING &&
                       pr_parse_claim(rep->str, rep->len, &e->part, &e->ver)) {
                e->step = PR_ST_SETTLE;
            } else {
                e->step = PR_ST_RETRY;
            }
        } else if (step == PR_ST_SETTLE) {
            /* 1: the order holds units, its entry stays; 0: it holds none,
             * and no late copy of its DEDUCT can take any now. */
            e->step = rep->type == REDIS_REPLY_INTEGER && rep->integer == 0 ? PR_ST_BACK
                      : rep->type == REDIS_REPLY_INTEGER                    ? PR_ST_DONE
                                                                            : PR_ST_RETRY;
            if (e->step == PR_ST_DONE) {
                r->stats.settle_kept++;
            }
        } else {
            e->step = rep->type == REDIS_REPLY_INTEGER ? PR_ST_DONE : PR_ST_RETRY;
            if (e->step == PR_ST_DONE) {
                r->stats.settle_given_back += rep->integer == 1;
            }
        }
    }
    pr_cmds_free(r);
}

void pn_round_settle(pn_round *r)
{
    SH_ASSERT(r != NULL);
    uint64_t now = sh_clock_mono_ms();
    if (r->settle_count == 0 || r->settle_next_ms > now) {
        return;
    }
    /* One pass over the queue: the due entries (up to a batch) come out, the
     * others go back to the tail in their order. */
    pr_settle *batch = r->settle_batch;
    size_t n = 0, pass = r->settle_count;
    r->settle_next_ms = UINT64_MAX;
    for (size_t k = 0; k < pass; k++) {
        pr_settle e = r->settle[r->settle_head];
        r->settle_head = (r->settle_head + 1) % PR_SETTLE_MAX;
        r->settle_count--;
        if (e.due_ms <= now && n < PR_SETTLE_BATCH) {
            batch[n] = e;
            batch[n].step = PR_ST_CLAIM;
            n++;
        } else {
            pr_settle_push(r, &e);
        }
    }
    SH_ASSERT(n > 0);
    r->logged = 0;
    pr_settle_step(r, batch, n, PR_ST_CLAIM);
    pr_settle_step(r, batch, n, PR_ST_SETTLE);
    pr_settle_step(r, batch, n, PR_ST_BACK);
    for (size_t k = 0; k < n; k++) {
        pr_settle *e = &batch[k];
        SH_ASSERT(e->step == PR_ST_DONE || e->step == PR_ST_RETRY);
        if (e->step == PR_ST_DONE) {
            r->stats.settled++;
            continue;
        }
        /* Redis still not answering: again later, backing off to a minute. */
        e->tries++;
        uint64_t wait = (uint64_t)PR_SETTLE_AFTER_MS << (e->tries < 6 ? e->tries : 6);
        e->due_ms = now + wait;
        pr_settle_push(r, e); /* room: the batch was taken out of the queue */
        if ((r->logged & PR_LOG_SETTLE) == 0) {
            r->logged |= PR_LOG_SETTLE;
            SH_WARN(PR_MOD, "settle deferred sku=%s order=%s tries=%u", e->sku, e->order, e->tries);
        }
    }
}

/* ==== lifecycle ============================================================ */

sh_err pn_round_new(pn_round **out, const pn_round_config *cfg, sh_cluster *router)
{
    SH_ASSERT(out != NULL && cfg != NULL && router != NULL);
    *out = NULL;
    if (cfg->batch_items_max < 1 || cfg->batch_items_max > SH_DEDUCT_BATCH_ITEMS_MAX ||
        cfg->claim_ttl_s < 1) {
        return SH_EINVAL;
    }
    pn_round *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return SH_ENOMEM;
    }
    r->cfg = *cfg;
    r->router = router;
    sh_hist_init(&r->stats.items_per_call);
    sh_hist_init(&r->stats.round_us);
    (void)pr_fmt_u64(r->ttl_str, sizeof r->ttl_str, cfg->claim_ttl_s);
    (void)pr_fmt_u64(r->low_str, sizeof r->low_str, cfg->low_water_units);
    sh_err rc = pn_skus_new(&r->skus, SH_SKUS_MAX);
    if (rc != SH_OK) {
        pn_round_free(r);
        return rc;
    }
    r->it = calloc(PN_ROUND_ITEMS_MAX, sizeof *r->it);
    r->loads = calloc(SH_SKUS_MAX, sizeof *r->loads);
    r->keys = calloc(PN_ROUND_ITEMS_MAX, sizeof *r->keys);
    r->calls = calloc(PN_ROUND_ITEMS_MAX, sizeof *r->calls);
    r->settle = calloc(PR_SETTLE_MAX, sizeof *r->settle);
    r->settle_batch = calloc(PR_SETTLE_BATCH, sizeof *r->settle_batch);
    r->hwm = calloc(PR_HWM_SLOTS, sizeof *r->hwm);
    r->settle_next_ms = UINT64_MAX;
    r->cmds = calloc(PR_CMDS_MAX, sizeof *r->cmds);
    r->argv = calloc(PR_ARGS_MAX, sizeof *r->argv);
    r->argvlen = calloc(PR_ARGS_MAX, sizeof *r->argvlen);
    if (r->it == NULL || r->loads == NULL || r->keys == NULL || r->calls == NULL ||
        r->settle == NULL || r->settle_batch == NULL || r->hwm == NULL || r->cmds == NULL ||
        r->argv == NULL || r->argvlen == NULL) {
        pn_round_free(r);
        return SH_ENOMEM;
    }
    const struct {
        sh_stock_script s;
        int *sid;
        const char **sha;
    } scripts[] = {
        {SH_SCRIPT_DEDUCT, &r->sid_deduct, &r->sha_deduct},
        {SH_SCRIPT_CLAIM_MOVE, &r->sid_move, &r->sha_move},
        {SH_SCRIPT_USER_TAKE, &r->sid_take, &r->sha_take},
        {SH_SCRIPT_USER_BACK, &r->sid_back, &r->sha_back},
        {SH_SCRIPT_SETTLE, &r->sid_settle, &r->sha_settle},
        {SH_SCRIPT_DIVERGE, &r->sid_diverge, &r->sha_diverge},
    };
    for (size_t k = 0; k < sizeof scripts / sizeof scripts[0] && rc == SH_OK; k++) {
        rc = sh_cluster_script_add(router, sh_stock_script_text(scripts[k].s), scripts[k].sid);
        if (rc == SH_OK) {
            *scripts[k].sha = sh_cluster_script_sha(router, *scripts[k].sid);
            SH_ASSERT(*scripts[k].sha != NULL && strlen(*scripts[k].sha) == PR_SHA_CHARS);
        }
    }
    if (rc != SH_OK) {
        SH_ERROR(PR_MOD, "cannot load the scripts err=%s", sh_strerror(rc));
        pn_round_free(r);
        return rc;
    }
    r->rid_nonce = sh_clock_wall_ms() ^ ((uint64_t)getpid() << 40) ^ sh_clock_mono_ns();
    *out = r;
    return SH_OK;
}

void pn_round_free(pn_round *r)
{
    if (r == NULL) {
        return;
    }
    pn_skus_free(r->skus);
    free(r->it);
    free(r->loads);
    free(r->keys);
    free(r->calls);
    free(r->settle);
    free(r->settle_batch);
    free(r->hwm);
    free(r->cmds);
    free(r->argv);
    free(r->argvlen);
    free(r);
}

const pn_round_stats *pn_round_stats_get(const pn_round *r)
{
    SH_ASSERT(r != NULL);
    return &r->stats;
}

void pn_round_run(pn_round *r, const sh_wire_item *items, const bool *release, size_t n,
                  sh_wire_result *results)
{
    SH_ASSERT(r != NULL && items != NULL && release != NULL && results != NULL);
    SH_ASSERT(n >= 1 && n <= PN_ROUND_ITEMS_MAX);
    uint64_t t0 = sh_clock_mono_us();
    r->logged = 0;
    r->stats.rounds++;
    r->stats.items += n;
    /* This round's id: DEDUCT records it so a re-run answers as the first run;
     * user entries carry it so a give-back deletes only what this round wrote. */
    int rl = snprintf(r->rid, sizeof r->rid, "%" PRIx64 ".%" PRIx64, r->rid_nonce, ++r->rid_seq);
    SH_ASSERT(rl > 0 && (size_t)rl < sizeof r->rid);
    r->rid_len = (size_t)rl;
    pr_hwm_maybe_forget(r);
    pr_begin(r, items, release, n, results);
    pr_resolve(r, items, release, n, results);
    pr_round_a(r, items, release, n, results);
    if (r->cfg.durable) {
        pr_claims_durable(r, items, release, n, results);
    }
    pr_round_b(r, items, release, n, results);
    for (size_t i = 0; i < n; i++) {
        SH_ASSERT(r->it[i].done); /* every item has its answer before counters go back */
    }
    pr_round_c(r, items, release, n);
    if (r->cfg.durable) {
        pr_durable(r, items, release, n, results);
    }
    pr_answered(r, items, n, results);
    for (size_t i = 0; i < n; i++) {
        if (r->it[i].stale && r->it[i].sku != NULL) {
            /* After the round: removal may move entries other items point to. */
            pn_skus_remove(r->skus, items[i].sku, items[i].sku_len);
            r->it[i].sku = NULL;
        }
        SH_ASSERT(results[i].status <= SH_WIRE_OUT_LAST_ && results[i].qty <= SH_QTY_UNITS_MAX);
    }
    sh_hist_record(&r->stats.round_us, sh_clock_mono_us() - t0);
}
