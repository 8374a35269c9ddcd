/* sch_route.c -- admission and the deduction state machine.
 *
 * A deduction walks: admission (start gate, rate limit, sold-out fast path) ->
 * a pending slot -> a partition (round-robin over the open ones whose free
 * units cover qty, or consolidation when none can) -> the partition's node
 * (through the batching outbox of sch_nodes) -> one result. On RETRY (the
 * partition refused the order under a claim version) the order goes to
 * another partition with the claim to move (from_partition, claim_version),
 * at most nparts + 3 hops; the node moves the claim by compare-and-set, so no
 * two partitions can both take the order however the hops interleave.
 *
 * Why a tag with a generation: an item's answer can arrive after its request
 * was answered (a timeout, shutdown) and its slot reused. The generation bumps
 * on every send, so only the answer to the item now outstanding is taken.
 *
 * Why inflight_units: between the send and the answer a partition's last
 * known stock overstates what it can still promise; routing subtracts the
 * units in flight so a burst does not pile onto one nearly empty partition.
 *
 * Why refills run after the burst: one grant is three Redis round trips; the
 * flags of many replies in one burst name the same partition, so candidates
 * are collected while replies are processed and each refilled once. */
#include "sch_route.h"

#include "sch_http.h"
#include "sh_clock.h"
#include "sh_log.h"
#include "sh_stock.h"
#include "sh_wire.h"

#include <event2/http.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUTE_EXTRA_HOPS       3    /* hops per deduction: nparts + this */
#define ROUTE_RELEASE_HOPS_MAX 4    /* a release follows the claim at most this often */
#define ROUTE_REFILLS_MAX      1024 /* refill candidates collected per burst */
#define ROUTE_BUCKETS          8192 /* per-SKU admission state (>= 2 * SH_SKUS_MAX) */
#define ROUTE_RECHECK_MS       1000 /* a sold-out verdict re-reads Redis at most this often */
#define ROUTE_WARN_PERIOD_MS   1000

_Static_assert(ROUTE_BUCKETS >= 2 * SH_SKUS_MAX, "bucket table load factor stays <= 1/2");
_Static_assert((ROUTE_BUCKETS & (ROUTE_BUCKETS - 1)) == 0, "bucket table size is a power of 2");

typedef enum slot_kind {
    SLOT_FREE = 0,
    SLOT_DEDUCT = 1,
    SLOT_RELEASE = 2,
} slot_kind;

typedef struct route_slot {
    uint64_t tag; /* the item outstanding at a node, 0 = none */
    struct evhttp_request *req;
    sch_sku *sku;
    uint64_t start_ns;       /* mono, for the latency histogram */
    uint64_t grants_at_send; /* part->grants when the item left */
    uint32_t gen;
    uint32_t qty;
    uint32_t inflight; /* units added to sku->parts[part].inflight_units */
    int32_t part;      /* the partition asked */
    uint16_t hops;
    uint8_t kind;
    uint8_t order_len;
    uint8_t user_len;
    char order[SH_ORDER_ID_CHARS_MAX + 1];
    char user[SH_USER_ID_CHARS_MAX + 1];
} route_slot;

/* Per-SKU admission state: the token bucket and the last sold-out re-check. */
typedef struct route_bucket {
    const sch_sku *sku; /* NULL = empty */
    double tokens;
    uint64_t last_ns;
    uint64_t rechecked_ms; /* mono; 0 = never */
} route_bucket;

typedef struct route_refill {
    sch_sku *sku;
    uint16_t part;
} route_refill;

struct sch_route {
    sch_ctx *ctx;
    route_slot *slots;
    uint32_t nslots;
    uint32_t *free_stack;
    uint32_t nfree;
    int closing;
    uint32_t release_rr;
    route_refill refills[ROUTE_REFILLS_MAX];
    size_t nrefills;
    route_bucket *buckets;
    sh_hist latency_ns;
    uint64_t last_warn_ms;
};

/* ---- slots ----------------------------------------------------------------- */

static route_slot *route_slot_alloc(sch_route *r)
{
    if (r->nfree == 0) {
        return NULL;
    }
    route_slot *sl = &r->slots[r->free_stack[--r->nfree]];
    SH_ASSERT(sl->kind == SLOT_FREE && sl->tag == 0);
    return sl;
}

static uint32_t route_slot_index(const sch_route *r, const route_slot *sl)
{
    return (uint32_t)(sl - r->slots);
}

/* Gives back the units a slot holds in its partition's inflight count. */
static void route_slot_settle(route_slot *sl)
{
    if (sl->inflight > 0) {
        sch_part *p = &sl->sku->parts[sl->part];
        p->inflight_units -= sl->inflight;
        SH_ASSERT(p->inflight_units >= 0);
        sl->inflight = 0;
    }
    sl->tag = 0;
}

static void route_slot_free(sch_route *r, route_slot *sl)
{
    SH_ASSERT(sl->kind != SLOT_FREE && sl->inflight == 0);
    sl->kind = SLOT_FREE;
    sl->tag = 0;
    sl->req = NULL;
    sl->sku = NULL;
    SH_ASSERT(r->nfree < r->nslots);
    r->free_stack[r->nfree++] = route_slot_index(r, sl);
}

/* The one exit of a pending request: answer, settle, free. */
static void route_finish_error(sch_route *r, route_slot *sl, int code, const char *error,
                               const char *message)
{
    route_slot_settle(sl);
    if (sl->kind == SLOT_DEDUCT) {
        sh_hist_record(&r->latency_ns, sh_clock_mono_ns() - sl->start_ns);
    }
    sch_http_reply_error(r->ctx, sl->req, code, error, message);
    route_slot_free(r, sl);
}

/* 503 for an UNAVAILABLE result, saying why when the node said (durability =
 * replica: the outcome is recorded, but no replica confirmed it yet). */
static void route_finish_unavailable(sch_route *r, route_slot *sl, const sh_wire_result *res)
{
    route_slot_settle(sl);
    if (sl->kind == SLOT_DEDUCT) {
        sh_hist_record(&r->latency_ns, sh_clock_mono_ns() - sl->start_ns);
    }
    if ((res->flags & SH_WIRE_RES_F_DIVERGED) != 0) {
        /* Routed around from now on; orders claimed there wait for its reconcile. */
        sl->sku->parts[res->partition].diverged = 1;
        sch_http_reply_error_reason(r->ctx, sl->req, 503, "unavailable", "diverged",
                                    "the partition diverged from MySQL and waits for a "
                                    "reconcile; retry");
    } else if ((res->flags & SH_WIRE_RES_F_NO_REPLICA) != 0) {
        sch_http_reply_error_reason(r->ctx, sl->req, 503, "unavailable", "no_replica",
                                    "the partition's Redis master has no replica; retry");
    } else if ((res->flags & SH_WIRE_RES_F_NOT_REPLICATED) != 0) {
        sch_http_reply_error_reason(r->ctx, sl->req, 503, "unavailable", "replication_timeout",
                                    "no replica confirmed the outcome in time; retry");
    } else {
        sch_http_reply_error(r->ctx, sl->req, 503, "unavailable",
                             "the partition is unavailable; retry");
    }
    route_slot_free(r, sl);
}

static void route_finish_ok(sch_route *r, route_slot *sl, unsigned partition, uint64_t seq,
                            int duplicate)
{
    route_slot_settle(sl);
    if (sl->kind == SLOT_DEDUCT) {
        sh_hist_record(&r->latency_ns, sh_clock_mono_ns() - sl->start_ns);
    }
    sch_http_reply_ok(r->ctx, sl->req, partition, seq, duplicate);
    route_slot_free(r, sl);
}

static void route_warn(sch_route *r, const char *what, const char *sku, const char *detail)
{
    uint64_t now = sh_clock_mono_ms();
    if (r->last_warn_ms != 0 && now - r->last_warn_ms < ROUTE_WARN_PERIOD_MS) {
        return;
    }
    r->last_warn_ms = now;
    SH_WARN("route", "%s sku=%s detail=\"%s\"", what, sku, detail);
}

/* ---- admission ------------------------------------------------------------- */

static route_bucket *route_bucket_of(sch_route *r, const sch_sku *s)
{
    uintptr_t h = ((uintptr_t)s >> 4) * 2654435761u;
    size_t mask = ROUTE_BUCKETS - 1;
    size_t i = (size_t)h & mask;
    for (size_t probe = 0; probe < ROUTE_BUCKETS; probe++) {
        route_bucket *b = &r->buckets[i];
        if (b->sku == s || b->sku == NULL) {
            return b;
        }
        i = (i + 1) & mask;
    }
    SH_ASSERT(!"bucket table full");
    return NULL;
}

/* Token bucket per SKU: rate tokens per second, a burst of one second's worth. */
static int route_admit_rate(sch_route *r, const sch_sku *s)
{
    double rate = (double)r->ctx->cfg->admission_rate_limit_per_s;
    if (rate <= 0) {
        return 1;
    }
    route_bucket *b = route_bucket_of(r, s);
    uint64_t now = sh_clock_mono_ns();
    if (b->sku == NULL) {
        b->sku = s;
        b->tokens = rate;
        b->last_ns = now;
    } else if (b->last_ns == 0) {
        b->tokens = rate; /* entry made by route_still_sellable */
        b->last_ns = now;
    }
    double add = rate * (double)(now - b->last_ns) / 1e9;
    b->last_ns = now;
    b->tokens = b->tokens + add > rate ? rate : b->tokens + add;
    if (b->tokens < 1.0) {
        return 0;
    }
    b->tokens -= 1.0;
    return 1;
}

/* The sold-out fast path trusts the registry, whose counts come from node
 * replies. Replies of one partition can be processed out of order, so a count
 * can be stale-low; if nothing else were routed there, units would strand.
 * So a "cannot serve qty" verdict re-reads the SKU from Redis first, at most
 * once per ROUTE_RECHECK_MS per SKU. Returns whether the SKU can serve qty. */
static int route_still_sellable(sch_route *r, sch_sku *s, uint32_t qty)
{
    if (sch_sku_remaining(s) >= (int64_t)qty) {
        return 1;
    }
    route_bucket *b = route_bucket_of(r, s);
    uint64_t now = sh_clock_mono_ms();
    if (b->sku == NULL) {
        b->sku = s;
    } else if (b->rechecked_ms != 0 && now - b->rechecked_ms < ROUTE_RECHECK_MS) {
        return 0;
    }
    b->rechecked_ms = now;
    sh_err rc = sch_pool_refresh(r->ctx->pool, s);
    if (rc != SH_OK) {
        route_warn(r, "sold-out re-check failed", s->id, sh_strerror(rc));
        return 0;
    }
    return sch_sku_remaining(s) >= (int64_t)qty;
}

/* ---- sales rate and refills ------------------------------------------------ */

static int64_t route_standby_units(const sch_part *p)
{
    return p->active ? p->s0 : p->s1;
}

/* Notes a partition whose standby needs a grant, once per burst. */
static void route_note_refill(sch_route *r, sch_sku *s, uint16_t part)
{
    const sch_part *p = &s->parts[part];
    if (!(p->flags & (SH_PART_F_STANDBY_EMPTY | SH_PART_F_EXHAUSTED)) || !sch_part_open(p) ||
        s->avail <= 0 || route_standby_units(p) > 0) {
        return;
    }
    for (size_t i = 0; i < r->nrefills; i++) {
        if (r->refills[i].sku == s && r->refills[i].part == part) {
            return;
        }
    }
    if (r->nrefills < ROUTE_REFILLS_MAX) {
        r->refills[r->nrefills].sku = s;
        r->refills[r->nrefills].part = part;
        r->nrefills++;
    }
    /* A full list drops the candidate: the next reply flags it again. */
}

static void route_run_refills(sch_route *r)
{
    for (size_t i = 0; i < r->nrefills; i++) {
        sch_sku *s = r->refills[i].sku;
        sch_part *p = &s->parts[r->refills[i].part];
        /* A refill earlier in this list (or a grant) may have changed things. */
        if (!(p->flags & (SH_PART_F_STANDBY_EMPTY | SH_PART_F_EXHAUSTED)) || !sch_part_open(p) ||
            s->avail <= 0 || route_standby_units(p) > 0) {
            continue;
        }
        int64_t granted = 0;
        sh_err rc = sch_pool_refill(r->ctx->pool, s, p, &granted);
        if (rc != SH_OK) {
            route_warn(r, "refill failed", s->id, sh_strerror(rc));
            continue;
        }
        if (granted > 0) {
            r->ctx->stats.grants++;
        }
    }
    r->nrefills = 0;
}

/* ---- sending --------------------------------------------------------------- */

static void route_item_fill(sh_wire_item *it, const route_slot *sl, uint16_t part)
{
    memset(it, 0, sizeof *it);
    it->tag = sl->tag;
    it->partition = part;
    size_t sku_len = strlen(sl->sku->id);
    SH_ASSERT(sh_wire_str_set(it->sku, sizeof it->sku, &it->sku_len, sl->sku->id, sku_len) ==
              SH_OK);
    SH_ASSERT(sh_wire_str_set(it->order_id, sizeof it->order_id, &it->order_id_len, sl->order,
                              sl->order_len) == SH_OK);
    SH_ASSERT(sh_wire_str_set(it->user_id, sizeof it->user_id, &it->user_id_len, sl->user,
                              sl->user_len) == SH_OK);
}

/* Sends the slot's item to partition part (claim to move: from/version). On
 * refusal by the outbox the request is answered 503 and the slot freed;
 * returns 0 then, 1 when the item left. */
static int route_send(sch_route *r, route_slot *sl, int part, uint16_t from, uint32_t version)
{
    sch_sku *s = sl->sku;
    SH_ASSERT(part >= 0 && part < (int)s->nparts && sl->tag == 0 && sl->inflight == 0);
    sch_part *p = &s->parts[part];
    sl->gen = sl->gen + 1 == 0 ? 1 : sl->gen + 1;
    sl->tag = ((uint64_t)sl->gen << 32) | route_slot_index(r, sl);
    sl->part = part;
    sl->hops++;
    sh_wire_item it;
    route_item_fill(&it, sl, (uint16_t)part);
    if (s->per_user_limit > SH_PER_USER_LIMIT_UNITS_MAX) {
        /* From Redis, past what the codec carries: refuse this one request
         * rather than let it spoil the encoding of a whole batch. */
        route_warn(r, "per_user_limit out of range", s->id, "answered 503");
        route_finish_error(r, sl, 503, "unavailable", "the sku's settings are invalid");
        return 0;
    }
    sh_wire_type type = sl->kind == SLOT_DEDUCT ? SH_WIRE_DEDUCT_REQ : SH_WIRE_RELEASE_REQ;
    it.qty = sl->kind == SLOT_DEDUCT ? sl->qty : 0;
    /* A release gives the order's entry back to the user's limit too. */
    it.per_user_limit = s->per_user_limit;
    /* A deduction moves the claim from -> part; a release following a
     * tombstone says which claim it met there (see route_release_result). */
    it.from_partition = from;
    it.claim_version = version;
    sh_err rc = sch_nodes_enqueue(r->ctx->nodes, p->node, type, &it);
    if (rc != SH_OK) {
        route_finish_error(r, sl, 503, "unavailable",
                           rc == SH_EBUSY ? "the node's queue is full; retry"
                                          : "the scheduler is shutting down");
        return 0;
    }
    if (sl->kind == SLOT_DEDUCT) {
        sl->inflight = sl->qty;
        p->inflight_units += sl->qty;
    }
    sl->grants_at_send = p->grants;
    return 1;
}

/* The open partition whose last known stock (in-flight units not counted)
 * is largest and covers qty, or -1. */
static int route_overcommit(const sch_sku *s, uint32_t qty)
{
    int best = -1;
    int64_t best_units = (int64_t)qty - 1;
    for (uint16_t i = 0; i < s->nparts; i++) {
        const sch_part *p = &s->parts[i];
        if (sch_part_open(p) && p->inflight_units > 0 && p->s0 + p->s1 > best_units) {
            best = i;
            best_units = p->s0 + p->s1;
        }
    }
    return best;
}

/* Finds a partition for the slot's deduction, skipping skip, consolidating
 * when none can serve. Returns the partition, or -1 after answering. */
static int route_pick(sch_route *r, route_slot *sl, int skip)
{
    sch_sku *s = sl->sku;
    int p = sch_registry_route(s, sl->qty, skip);
    if (p >= 0) {
        return p;
    }
    if (skip < 0) {
        /* First hop, and every partition's free units are promised to items
         * in flight, yet one still holds qty by its last count: let its node
         * decide (a refusal comes back as RETRY) rather than block the loop
         * on a Redis consolidation while answers are on their way. Retries
         * consolidate, so an order never walks the partitions for nothing. */
        p = route_overcommit(s, sl->qty);
        if (p >= 0) {
            return p;
        }
    }
    r->ctx->stats.consolidations++;
    int part = -1;
    sh_err rc = sch_pool_consolidate(r->ctx->pool, s, sl->qty, &part);
    if (rc != SH_OK) {
        route_warn(r, "consolidate failed", s->id, sh_strerror(rc));
        route_finish_error(r, sl, 503, "unavailable", "the stock pool is unavailable; retry");
        return -1;
    }
    if (part < 0) {
        s->sold_out++;
        route_finish_error(r, sl, 409, "sold_out", "not enough units left for this qty");
        return -1;
    }
    if (part >= (int)s->nparts) {
        route_warn(r, "consolidate gave a bad partition", s->id, "answered 503");
        route_finish_error(r, sl, 503, "unavailable", "internal routing error; retry");
        return -1;
    }
    return part;
}

/* ---- answers --------------------------------------------------------------- */

/* Whether a result's counters describe the partition after a script ran there
 * (so the registry may take them). */
static int route_counters_valid(sh_wire_outcome st)
{
    return st == SH_WIRE_OUT_OK || st == SH_WIRE_OUT_RETRY || st == SH_WIRE_OUT_SOLD_OUT ||
           st == SH_WIRE_OUT_CONFLICT || st == SH_WIRE_OUT_USER_LIMIT;
}

static void route_observe(sch_route *r, route_slot *sl, const sh_wire_result *res)
{
    sch_sku *s = sl->sku;
    sch_part *p = &s->parts[res->partition];
    /* A grant applied while the item was in flight (the pool bumps grants):
     * its counters may predate the grant, and taking them would undo what
     * the pool recorded and ask for a second grant. */
    if ((int)res->partition == sl->part && p->grants != sl->grants_at_send) {
        return;
    }
    sch_part_observe(p, res->active, res->s0, res->s1, res->flags);
    route_note_refill(r, s, res->partition);
}

static void route_deduct_result(sch_route *r, route_slot *sl, const sh_wire_result *res)
{
    sch_ctx *ctx = r->ctx;
    sch_sku *s = sl->sku;
    int dup = (res->flags & SH_WIRE_RES_F_DUPLICATE) != 0;
    switch (res->status) {
    case SH_WIRE_OUT_OK: {
        ctx->stats.deduct_ok++;
        s->ok++;
        if (dup) {
            ctx->stats.deduct_dup++;
            s->duplicates++;
        } else {
            /* The pool turns the window into rate_units_per_s when it sizes
             * the partition's next chunk. */
            sch_part *p = &s->parts[res->partition];
            p->sold_units_window += sl->qty;
            p->deducted += sl->qty;
            p->seq = res->seq > p->seq ? res->seq : p->seq;
        }
        route_finish_ok(r, sl, res->partition, res->seq, dup);
        return;
    }
    case SH_WIRE_OUT_RETRY:
    case SH_WIRE_OUT_SOLD_OUT: {
        /* The partition refused the order under res->claim_version: move the
         * claim from it to another partition. */
        ctx->stats.retries++;
        int from = res->partition;
        uint32_t version = res->claim_version;
        route_slot_settle(sl);
        if (sl->hops >= s->nparts + ROUTE_EXTRA_HOPS) {
            route_finish_error(r, sl, 503, "unavailable", "too many partitions refused; retry");
            return;
        }
        int part = route_pick(r, sl, from);
        if (part < 0) {
            return;
        }
        route_send(r, sl, part, (uint16_t)from, version);
        return;
    }
    case SH_WIRE_OUT_CONFLICT:
        s->conflicts++;
        route_finish_error(r, sl, 409, "order_conflict",
                           "this order id was used before with another qty or user");
        return;
    case SH_WIRE_OUT_USER_LIMIT:
        route_finish_error(r, sl, 409, "user_limit", "the per-user limit of this sku is reached");
        return;
    case SH_WIRE_OUT_RELEASED:
        route_finish_error(r, sl, 409, "order_released",
                           "this order was released; it holds no units and cannot deduct again");
        return;
    case SH_WIRE_OUT_UNKNOWN_ORDER:
        route_finish_error(r, sl, 404, "unknown_order", "no such order");
        return;
    case SH_WIRE_OUT_INVALID:
        route_finish_error(r, sl, 400, "invalid_request", "the partition node refused the item");
        return;
    case SH_WIRE_OUT_UNAVAILABLE:
        route_finish_unavailable(r, sl, res);
        return;
    case SH_WIRE_OUT_ERROR:
    default:
        route_finish_error(r, sl, 503, "unavailable", "the partition is unavailable; retry");
        return;
    }
}

static void route_release_result(sch_route *r, route_slot *sl, const sh_wire_result *res)
{
    sch_ctx *ctx = r->ctx;
    sch_sku *s = sl->sku;
    int dup = (res->flags & SH_WIRE_RES_F_DUPLICATE) != 0;
    switch (res->status) {
    case SH_WIRE_OUT_OK:
        ctx->stats.releases++;
        s->releases++;
        if (!dup) {
            sch_part *p = &s->parts[res->partition];
            p->deducted -= res->qty;
            p->seq = res->seq > p->seq ? res->seq : p->seq;
        }
        route_finish_ok(r, sl, res->partition, res->seq, dup);
        return;
    case SH_WIRE_OUT_UNKNOWN_ORDER:
        route_finish_error(r, sl, 404, "unknown_order", "no such order");
        return;
    case SH_WIRE_OUT_RETRY:
        /* The partition the claim named holds a tombstone for the order: the
         * claim may have moved on since it was read. Send the release again,
         * saying which claim met the tombstone: the node re-reads the claim
         * and follows it, or answers UNKNOWN_ORDER when it still names that
         * partition and version (then no partition holds the order). */
        route_slot_settle(sl);
        if (sl->hops >= ROUTE_RELEASE_HOPS_MAX) {
            route_finish_error(r, sl, 503, "unavailable", "the order is moving; retry");
            return;
        }
        route_send(r, sl, res->partition, res->partition, res->claim_version);
        return;
    case SH_WIRE_OUT_CONFLICT:
        route_finish_error(r, sl, 409, "order_conflict", "the order cannot be released");
        return;
    case SH_WIRE_OUT_INVALID:
        route_finish_error(r, sl, 400, "invalid_request", "the partition node refused the item");
        return;
    case SH_WIRE_OUT_UNAVAILABLE:
        route_finish_unavailable(r, sl, res);
        return;
    default:
        route_finish_error(r, sl, 503, "unavailable", "the partition is unavailable; retry");
        return;
    }
}

/* Finds the pending slot an item's tag names, or NULL for a stale tag. */
static route_slot *route_slot_of(sch_route *r, uint64_t tag)
{
    uint32_t idx = (uint32_t)(tag & 0xffffffffu);
    if (idx >= r->nslots) {
        return NULL;
    }
    route_slot *sl = &r->slots[idx];
    if (sl->kind == SLOT_FREE || sl->tag != tag) {
        return NULL;
    }
    return sl;
}

static void route_on_result(void *arg, int node, sh_wire_type type, const sh_wire_result *res)
{
    (void)node;
    sch_route *r = arg;
    route_slot *sl = route_slot_of(r, res->tag);
    if (sl == NULL) {
        return; /* answered already (timeout, shutdown) */
    }
    sch_sku *s = sl->sku;
    if ((sl->kind == SLOT_DEDUCT) != (type == SH_WIRE_DEDUCT_REQ) || res->partition >= s->nparts) {
        /* Decoded fine but does not fit what we asked: a node bug, not ours. */
        route_warn(r, "result does not match its item", s->id, sh_wire_outcome_name(res->status));
        route_finish_error(r, sl, 503, "unavailable", "bad answer from the partition node");
        return;
    }
    /* Units in flight come back first, so the counters below are the whole view. */
    route_slot_settle(sl);
    if (route_counters_valid(res->status)) {
        route_observe(r, sl, res);
    }
    if (sl->kind == SLOT_DEDUCT) {
        route_deduct_result(r, sl, res);
    } else {
        route_release_result(r, sl, res);
    }
}

static void route_on_failed(void *arg, int node, uint64_t tag, sh_err why)
{
    (void)node;
    sch_route *r = arg;
    route_slot *sl = route_slot_of(r, tag);
    if (sl == NULL) {
        return;
    }
    const char *msg = why == SH_ETIMEDOUT ? "the partition node did not answer in time; retry"
                      : why == SH_ECLOSED ? "the scheduler is shutting down; retry"
                                          : "the partition node is unreachable; retry";
    route_finish_error(r, sl, 503, "unavailable", msg);
}

static void route_on_drained(void *arg)
{
    sch_route *r = arg;
    if (r->nrefills > 0 && !r->closing) {
        route_run_refills(r);
    }
    r->nrefills = 0;
}

/* ---- public ---------------------------------------------------------------- */

sh_err sch_route_new(sch_route **out, sch_ctx *ctx)
{
    SH_ASSERT(out != NULL && ctx != NULL && ctx->cfg != NULL);
    *out = NULL;
    int64_t n = ctx->cfg->http_pending_max;
    if (n < 1 || n > SCH_PENDING_REQUESTS_LIMIT) {
        return SH_EINVAL;
    }
    sch_route *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return SH_ENOMEM;
    }
    r->ctx = ctx;
    r->nslots = (uint32_t)n;
    r->slots = calloc(r->nslots, sizeof *r->slots);
    r->free_stack = calloc(r->nslots, sizeof *r->free_stack);
    r->buckets = calloc(ROUTE_BUCKETS, sizeof *r->buckets);
    if (r->slots == NULL || r->free_stack == NULL || r->buckets == NULL) {
        sch_route_free(r);
        return SH_ENOMEM;
    }
    for (uint32_t i = 0; i < r->nslots; i++) {
        r->free_stack[i] = r->nslots - 1 - i;
    }
    r->nfree = r->nslots;
    sh_hist_init(&r->latency_ns);
    *out = r;
    return SH_OK;
}

void sch_route_free(sch_route *r)
{
    if (r == NULL) {
        return;
    }
    SH_ASSERT(r->slots == NULL || r->nfree == r->nslots);
    free(r->slots);
    free(r->free_stack);
    free(r->buckets);
    free(r);
}

sch_nodes_handler sch_route_node_handler(sch_route *r)
{
    sch_nodes_handler h = {
        .arg = r,
        .result = route_on_result,
        .failed = route_on_failed,
        .drained = route_on_drained,
    };
    return h;
}

void sch_route_deduct(sch_route *r, struct evhttp_request *req, sch_sku *s,
                      const sch_deduct_args *a)
{
    SH_ASSERT(r != NULL && req != NULL && s != NULL && a != NULL);
    SH_ASSERT(a->qty >= 1 && a->order_id_len >= 1 && a->order_id_len <= SH_ORDER_ID_CHARS_MAX &&
              a->user_id_len >= 1 && a->user_id_len <= SH_USER_ID_CHARS_MAX);
    sch_ctx *ctx = r->ctx;
    if (r->closing) {
        sch_http_reply_error(ctx, req, 503, "unavailable", "the scheduler is shutting down");
        return;
    }
    if (s->start_ms > 0 && (int64_t)sh_clock_wall_ms() < s->start_ms) {
        char msg[96];
        snprintf(msg, sizeof msg, "the sale starts at %lld ms since the epoch",
                 (long long)s->start_ms);
        sch_http_reply_error(ctx, req, 425, "not_started", msg);
        return;
    }
    if (!route_admit_rate(r, s)) {
        sch_http_reply_error(ctx, req, 429, "rate_limited", "too many deductions for this sku");
        return;
    }
    if (!route_still_sellable(r, s, a->qty)) {
        s->sold_out++;
        sch_http_reply_error(ctx, req, 409, "sold_out", "not enough units left for this qty");
        return;
    }
    route_slot *sl = route_slot_alloc(r);
    if (sl == NULL) {
        sch_http_reply_error(ctx, req, 503, "unavailable", "too many requests in progress");
        return;
    }
    sl->kind = SLOT_DEDUCT;
    sl->req = req;
    sl->sku = s;
    sl->qty = a->qty;
    sl->hops = 0;
    sl->inflight = 0;
    sl->start_ns = sh_clock_mono_ns();
    memcpy(sl->order, a->order_id, a->order_id_len);
    sl->order[a->order_id_len] = '\0';
    sl->order_len = (uint8_t)a->order_id_len;
    memcpy(sl->user, a->user_id, a->user_id_len);
    sl->user[a->user_id_len] = '\0';
    sl->user_len = (uint8_t)a->user_id_len;
    int part = route_pick(r, sl, -1);
    if (part < 0) {
        return;
    }
    route_send(r, sl, part, 0, 0);
}

void sch_route_release(sch_route *r, struct evhttp_request *req, sch_sku *s, const char *order_id,
                       size_t order_id_len)
{
    SH_ASSERT(r != NULL && req != NULL && s != NULL && order_id != NULL);
    SH_ASSERT(order_id_len >= 1 && order_id_len <= SH_ORDER_ID_CHARS_MAX);
    sch_ctx *ctx = r->ctx;
    if (r->closing) {
        sch_http_reply_error(ctx, req, 503, "unavailable", "the scheduler is shutting down");
        return;
    }
    route_slot *sl = route_slot_alloc(r);
    if (sl == NULL) {
        sch_http_reply_error(ctx, req, 503, "unavailable", "too many requests in progress");
        return;
    }
    sl->kind = SLOT_RELEASE;
    sl->req = req;
    sl->sku = s;
    sl->qty = 0;
    sl->hops = 0;
    sl->inflight = 0;
    sl->start_ns = sh_clock_mono_ns();
    memcpy(sl->order, order_id, order_id_len);
    sl->order[order_id_len] = '\0';
    sl->order_len = (uint8_t)order_id_len;
    sl->user[0] = '\0';
    sl->user_len = 0;
    /* Any node can run a release: it follows the order's claim to the
     * partition that holds it. Spread them round-robin over the partitions. */
    int part = (int)(r->release_rr++ % s->nparts);
    route_send(r, sl, part, 0, 0);
}

size_t sch_route_pending(const sch_route *r)
{
    SH_ASSERT(r != NULL);
    return r->nslots - r->nfree;
}

void sch_route_close(sch_route *r)
{
    SH_ASSERT(r != NULL);
    r->closing = 1;
}

void sch_route_fail_all(sch_route *r)
{
    SH_ASSERT(r != NULL);
    for (uint32_t i = 0; i < r->nslots && r->nfree < r->nslots; i++) {
        route_slot *sl = &r->slots[i];
        if (sl->kind != SLOT_FREE) {
            route_finish_error(r, sl, 503, "unavailable", "the scheduler is shutting down; retry");
        }
    }
    SH_ASSERT(r->nfree == r->nslots);
}

const sh_hist *sch_route_latency(const sch_route *r)
{
    SH_ASSERT(r != NULL);
    return &r->latency_ns;
}
