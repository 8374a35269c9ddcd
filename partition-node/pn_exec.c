/* pn_exec.c -- the executor thread: queue, decode, round, reply (see pn_exec.h).
 *
 * Why one thread: the router is synchronous and owned by one thread, and a
 * single executor makes group commit natural -- while it waits on Redis for
 * one round, the NNG threads keep queueing, and the next round takes them all.
 * Throughput then comes from batching (items per script call), not from
 * threads; the node's CPU goes to encoding and the Redis round trips overlap
 * across masters inside sh_cluster_pipeline.
 *
 * Two queues: the shared ring (mutex + condvar) the NNG callbacks push to,
 * and a local ring the executor moves everything into under one short lock.
 * Both hold request pointers only and have the capacity of the server's
 * contexts, which bounds the requests in existence. */
#include "pn_exec.h"

#include "sh_clock.h"
#include "sh_cluster.h"
#include "sh_limits.h"
#include "sh_log.h"
#include "sh_wire.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PE_MOD                     "exec"
#define PE_INVALID_LOGS_PER_PERIOD 10 /* invalid messages logged per stats period */

/* One request of the round being built: its items are items[first, first + n). */
typedef struct pe_req {
    pn_request *req;
    uint64_t req_id;
    sh_wire_type type; /* DEDUCT_REQ or RELEASE_REQ */
    uint32_t first;
    uint32_t n;
} pe_req;

struct pn_exec {
    sh_cluster *router;
    pn_round *round;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool sync_ready;

    /* Shared with the NNG threads, under mu. */
    pn_request **queue;
    size_t capacity; /* of queue, local and reqs: the server's contexts */
    size_t qhead;
    size_t qcount;
    bool stopping;
    pn_exec_stats published;

    /* Executor thread only. */
    pn_request **local;
    size_t lhead;
    size_t lcount;
    pe_req *reqs;
    sh_wire_item *items;
    bool *release;
    sh_wire_result *results;
    uint64_t requests;
    uint64_t invalid_messages;
    uint64_t reply_failures;
    uint32_t invalid_logged; /* in this stats period */
    uint64_t next_tick_ms;
    pn_exec_stats last; /* at the previous tick, for the deltas */
};

/* ==== replies =============================================================== */

static void pe_reply(pn_exec *ex, pn_request *req, sh_wire_type type, uint64_t req_id,
                     const sh_wire_result *results, size_t n)
{
    SH_ASSERT(type == SH_WIRE_DEDUCT_REP || type == SH_WIRE_RELEASE_REP);
    size_t size = sh_wire_results_size(results, n);
    SH_ASSERT(size >= SH_WIRE_HEADER_BYTES);
    uint8_t *buf = pn_request_reply_buf(req, size);
    if (buf == NULL) {
        ex->reply_failures++;
        SH_WARN(PE_MOD, "no memory for a reply bytes=%zu req_id=%llu", size,
                (unsigned long long)req_id);
        pn_request_drop(req);
        return;
    }
    size_t len = 0;
    sh_err rc = sh_wire_results_encode(buf, size, &len, type, req_id, results, n);
    SH_ASSERT(rc == SH_OK && len == size); /* the round only writes encodable results */
    pn_request_send(req);
}

static uint64_t pe_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Answers a message that failed to decode with zero results, echoing its
 * req_id and kind when its header is readable, so the peer is not left
 * waiting and the context serves again. */
static void pe_invalid(pn_exec *ex, pn_request *req, const uint8_t *data, size_t len, sh_err why)
{
    ex->invalid_messages++;
    uint64_t req_id = 0;
    sh_wire_type type = SH_WIRE_DEDUCT_REP;
    if (len >= SH_WIRE_HEADER_BYTES && data[0] == SH_WIRE_VERSION) {
        req_id = pe_le64(data + 8);
        if (data[1] == SH_WIRE_RELEASE_REQ) {
            type = SH_WIRE_RELEASE_REP;
        }
    }
    if (ex->invalid_logged < PE_INVALID_LOGS_PER_PERIOD) {
        ex->invalid_logged++;
        SH_WARN(PE_MOD, "invalid message err=%s bytes=%zu type=%d req_id=%llu%s", sh_strerror(why),
                len, len >= 2 ? data[1] : -1, (unsigned long long)req_id,
                ex->invalid_logged == PE_INVALID_LOGS_PER_PERIOD ? " (more are only counted)" : "");
    }
    pe_reply(ex, req, type, req_id, NULL, 0);
}

/* ==== rounds ================================================================ */

static pn_request *pe_local_pop(pn_exec *ex)
{
    SH_ASSERT(ex->lcount > 0);
    pn_request *req = ex->local[ex->lhead];
    ex->lhead = (ex->lhead + 1) % ex->capacity;
    ex->lcount--;
    return req;
}

/* Decodes requests from the local ring until it is empty or the next one
 * would not fit the round, then runs the round and answers every request. */
static void pe_round(pn_exec *ex)
{
    size_t nitems = 0, nreqs = 0;
    while (ex->lcount > 0) {
        pn_request *req = ex->local[ex->lhead];
        size_t len = 0;
        const uint8_t *data = pn_request_data(req, &len);
        sh_wire_header hdr;
        sh_err rc = sh_wire_header_decode(data, len, &hdr);
        if (rc == SH_OK && hdr.type != SH_WIRE_DEDUCT_REQ && hdr.type != SH_WIRE_RELEASE_REQ) {
            rc = SH_EPROTO; /* a valid message, but not one a node serves */
        }
        if (rc == SH_OK && nreqs > 0 && nitems + hdr.count > PN_ROUND_ITEMS_MAX) {
            break; /* first in the next round */
        }
        if (rc == SH_OK) {
            rc = sh_wire_items_decode(data, len, &hdr, ex->items + nitems,
                                      PN_ROUND_ITEMS_MAX - nitems);
        }
        (void)pe_local_pop(ex);
        ex->requests++;
        if (rc != SH_OK) {
            pe_invalid(ex, req, data, len, rc);
            continue;
        }
        SH_ASSERT(hdr.count >= 1 && nitems + hdr.count <= PN_ROUND_ITEMS_MAX);
        SH_ASSERT(nreqs < ex->capacity);
        pe_req *r = &ex->reqs[nreqs++];
        r->req = req;
        r->req_id = hdr.req_id;
        r->type = hdr.type;
        r->first = (uint32_t)nitems;
        r->n = hdr.count;
        for (size_t i = 0; i < hdr.count; i++) {
            ex->release[nitems + i] = hdr.type == SH_WIRE_RELEASE_REQ;
        }
        nitems += hdr.count;
    }
    if (nitems == 0) {
        return;
    }
    pn_round_run(ex->round, ex->items, ex->release, nitems, ex->results);
    for (size_t k = 0; k < nreqs; k++) {
        const pe_req *r = &ex->reqs[k];
        sh_wire_type rep =
            r->type == SH_WIRE_RELEASE_REQ ? SH_WIRE_RELEASE_REP : SH_WIRE_DEDUCT_REP;
        pe_reply(ex, r->req, rep, r->req_id, ex->results + r->first, r->n);
    }
}

/* ==== counters ============================================================== */

static void pe_snapshot(const pn_exec *ex, pn_exec_stats *out)
{
    out->requests = ex->requests;
    out->invalid_messages = ex->invalid_messages;
    out->reply_failures = ex->reply_failures;
    out->round = *pn_round_stats_get(ex->round);
}

static void pe_log_stats(pn_exec *ex, const pn_exec_stats *now, const char *when)
{
    const pn_exec_stats *was = &ex->last;
    const pn_round_stats *r = &now->round;
    uint64_t calls = r->script_calls - was->round.script_calls;
    uint64_t carried = r->script_items - was->round.script_items;
    sh_hist_summary h, rt;
    sh_hist_summarize(&r->items_per_call, &h);
    sh_hist_summarize(&r->round_us, &rt);
    SH_INFO(PE_MOD,
            "%s requests=%llu items=%llu rounds=%llu script_calls=%llu items_per_call=%.1f "
            "items_per_call_p50=%llu items_per_call_p99=%llu items_per_call_max=%llu "
            "round_us_p50=%llu round_us_p99=%llu claim_moves=%llu pool_loads=%llu pipelines=%llu "
            "give_backs=%llu reruns=%llu settle_queued=%llu settled=%llu settle_given_back=%llu "
            "settle_pending=%llu invalid_messages=%llu redis_errors=%llu reply_failures=%llu",
            when, (unsigned long long)(now->requests - was->requests),
            (unsigned long long)(r->items - was->round.items),
            (unsigned long long)(r->rounds - was->round.rounds), (unsigned long long)calls,
            calls > 0 ? (double)carried / (double)calls : 0.0, (unsigned long long)h.p50,
            (unsigned long long)h.p99, (unsigned long long)h.max, (unsigned long long)rt.p50,
            (unsigned long long)rt.p99,
            (unsigned long long)(r->claim_moves - was->round.claim_moves),
            (unsigned long long)(r->pool_loads - was->round.pool_loads),
            (unsigned long long)(r->pipelines - was->round.pipelines),
            (unsigned long long)(r->give_backs - was->round.give_backs),
            (unsigned long long)(r->reruns - was->round.reruns),
            (unsigned long long)(r->settle_queued - was->round.settle_queued),
            (unsigned long long)(r->settled - was->round.settled),
            (unsigned long long)(r->settle_given_back - was->round.settle_given_back),
            (unsigned long long)(r->settle_queued - r->settled - r->settle_dropped),
            (unsigned long long)(now->invalid_messages - was->invalid_messages),
            (unsigned long long)(r->redis_errors - was->round.redis_errors),
            (unsigned long long)(now->reply_failures - was->reply_failures));
}

/* Every PN_EXEC_STATS_INTERVAL_MS: a summary line when there was traffic, and
 * a fresh snapshot for pn_exec_stats_get. */
static void pe_tick(pn_exec *ex, bool force)
{
    uint64_t now_ms = sh_clock_mono_ms();
    if (!force && now_ms < ex->next_tick_ms) {
        return;
    }
    ex->next_tick_ms = now_ms + PN_EXEC_STATS_INTERVAL_MS;
    ex->invalid_logged = 0;
    pn_exec_stats *now = malloc(sizeof *now); /* ~18 KiB with the histogram: not on the stack */
    if (now == NULL) {
        return;
    }
    pe_snapshot(ex, now);
    if (now->requests != ex->last.requests) {
        pe_log_stats(ex, now, force ? "stats final" : "stats");
    }
    pthread_mutex_lock(&ex->mu);
    ex->published = *now;
    pthread_mutex_unlock(&ex->mu);
    ex->last = *now;
    free(now);
}

/* ==== the thread ============================================================ */

static struct timespec pe_abs_mono(uint64_t at_ms)
{
    struct timespec ts = {(time_t)(at_ms / 1000), (long)(at_ms % 1000) * 1000000L};
    return ts;
}

/* Waits for work and moves the shared queue into the local ring. false when
 * the executor is stopping. */
static bool pe_wait(pn_exec *ex)
{
    pthread_mutex_lock(&ex->mu);
    while (ex->qcount == 0 && ex->lcount == 0 && !ex->stopping) {
        /* The round object is the executor's alone: reading when its next
         * settle is due needs no lock. */
        uint64_t settle_ms = pn_round_settle_due_ms(ex->round);
        struct timespec until =
            pe_abs_mono(settle_ms < ex->next_tick_ms ? settle_ms : ex->next_tick_ms);
        int rc = pthread_cond_timedwait(&ex->cv, &ex->mu, &until);
        if (rc == ETIMEDOUT) {
            pthread_mutex_unlock(&ex->mu);
            pn_round_settle(ex->round);
            pe_tick(ex, false);
            pthread_mutex_lock(&ex->mu);
        } else {
            SH_ASSERT(rc == 0);
        }
    }
    if (ex->stopping) {
        pthread_mutex_unlock(&ex->mu);
        return false;
    }
    while (ex->qcount > 0) {
        SH_ASSERT(ex->lcount < ex->capacity); /* both rings hold distinct live requests */
        ex->local[(ex->lhead + ex->lcount) % ex->capacity] = ex->queue[ex->qhead];
        ex->lcount++;
        ex->qhead = (ex->qhead + 1) % ex->capacity;
        ex->qcount--;
    }
    pthread_mutex_unlock(&ex->mu);
    return true;
}

static void *pe_main(void *arg)
{
    pn_exec *ex = arg;
    while (pe_wait(ex)) {
        pe_round(ex);
        pn_round_settle(ex->round); /* nothing unless an entry is due */
        pe_tick(ex, false);
    }
    return NULL;
}

/* ==== lifecycle ============================================================= */

bool pn_exec_submit(pn_exec *ex, pn_request *req)
{
    SH_ASSERT(ex != NULL && req != NULL);
    pthread_mutex_lock(&ex->mu);
    if (ex->stopping || ex->qcount == ex->capacity) {
        bool full = !ex->stopping;
        pthread_mutex_unlock(&ex->mu);
        if (full) {
            SH_WARN(PE_MOD, "queue full capacity=%zu: request refused", ex->capacity);
        }
        return false;
    }
    ex->queue[(ex->qhead + ex->qcount) % ex->capacity] = req;
    ex->qcount++;
    if (ex->qcount == 1) {
        pthread_cond_signal(&ex->cv);
    }
    pthread_mutex_unlock(&ex->mu);
    return true;
}

static void pe_free(pn_exec *ex)
{
    pn_round_free(ex->round);
    sh_cluster_close(ex->router);
    if (ex->sync_ready) {
        pthread_cond_destroy(&ex->cv);
        pthread_mutex_destroy(&ex->mu);
    }
    free(ex->queue);
    free(ex->local);
    free(ex->reqs);
    free(ex->items);
    free(ex->release);
    free(ex->results);
    free(ex);
}

static sh_err pe_sync_init(pn_exec *ex)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0) {
        return SH_ENOMEM;
    }
    /* Monotonic: a wall-clock step must not stall or fire the stats timer. */
    int rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0) {
        rc = pthread_cond_init(&ex->cv, &attr);
    }
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        return SH_ENOMEM;
    }
    if (pthread_mutex_init(&ex->mu, NULL) != 0) {
        pthread_cond_destroy(&ex->cv);
        return SH_ENOMEM;
    }
    ex->sync_ready = true;
    return SH_OK;
}

sh_err pn_exec_start(pn_exec **out, const pn_config *cfg)
{
    SH_ASSERT(out != NULL && cfg != NULL);
    *out = NULL;
    if (cfg->node_contexts < 1 || cfg->deduct_batch_items_max < 1 ||
        cfg->deduct_batch_items_max > SH_DEDUCT_BATCH_ITEMS_MAX || cfg->deduct_claim_ttl_s < 1 ||
        cfg->deduct_low_water_units < 0 || cfg->redis_timeout_ms < 1 ||
        cfg->deduct_wait_timeout_ms >= cfg->redis_timeout_ms ||
        cfg->redis_timeout_ms > SH_CLUSTER_TIMEOUT_MS_MAX) {
        return SH_EINVAL;
    }
    pn_exec *ex = calloc(1, sizeof *ex);
    if (ex == NULL) {
        return SH_ENOMEM;
    }
    ex->capacity = (size_t)cfg->node_contexts;
    ex->queue = calloc(ex->capacity, sizeof *ex->queue);
    ex->local = calloc(ex->capacity, sizeof *ex->local);
    ex->reqs = calloc(ex->capacity, sizeof *ex->reqs);
    ex->items = calloc(PN_ROUND_ITEMS_MAX, sizeof *ex->items);
    ex->release = calloc(PN_ROUND_ITEMS_MAX, sizeof *ex->release);
    ex->results = calloc(PN_ROUND_ITEMS_MAX, sizeof *ex->results);
    sh_err rc = SH_ENOMEM;
    if (ex->queue == NULL || ex->local == NULL || ex->reqs == NULL || ex->items == NULL ||
        ex->release == NULL || ex->results == NULL || (rc = pe_sync_init(ex)) != SH_OK) {
        pe_free(ex);
        return rc;
    }
    rc = sh_cluster_open(&ex->router, cfg->redis_seeds, (uint32_t)cfg->redis_timeout_ms);
    if (rc != SH_OK) {
        SH_ERROR(PE_MOD, "cannot open Redis Cluster seeds=%s err=%s", cfg->redis_seeds,
                 sh_strerror(rc));
        pe_free(ex);
        return rc;
    }
    pn_round_config rcfg = {
        .batch_items_max = (uint32_t)cfg->deduct_batch_items_max,
        .low_water_units = (uint32_t)cfg->deduct_low_water_units,
        .claim_ttl_s = (uint32_t)cfg->deduct_claim_ttl_s,
        .durable = strcmp(cfg->deduct_durability, "replica") == 0,
        .wait_ms = (uint32_t)cfg->deduct_wait_timeout_ms,
    };
    rc = pn_round_new(&ex->round, &rcfg, ex->router);
    if (rc != SH_OK) {
        pe_free(ex);
        return rc;
    }
    pe_snapshot(ex, &ex->last);
    ex->published = ex->last;
    ex->next_tick_ms = sh_clock_mono_ms() + PN_EXEC_STATS_INTERVAL_MS;
    int prc = pthread_create(&ex->thread, NULL, pe_main, ex);
    if (prc != 0) {
        SH_ERROR(PE_MOD, "cannot start the executor thread: %s", strerror(prc));
        pe_free(ex);
        return SH_ENOMEM;
    }
    ex->thread_started = true;
    SH_INFO(PE_MOD,
            "executor started masters=%d queue=%zu batch_items_max=%u round_items_max=%u "
            "low_water_units=%u claim_ttl_s=%u durability=%s wait_timeout_ms=%u",
            sh_cluster_master_count(ex->router), ex->capacity, rcfg.batch_items_max,
            (unsigned)PN_ROUND_ITEMS_MAX, rcfg.low_water_units, rcfg.claim_ttl_s,
            rcfg.durable ? "replica" : "leader", rcfg.wait_ms);
    *out = ex;
    return SH_OK;
}

void pn_exec_stop(pn_exec *ex)
{
    if (ex == NULL) {
        return;
    }
    pthread_mutex_lock(&ex->mu);
    ex->stopping = true;
    pthread_cond_signal(&ex->cv);
    pthread_mutex_unlock(&ex->mu);
    if (ex->thread_started) {
        int rc = pthread_join(ex->thread, NULL);
        SH_ASSERT(rc == 0);
    }
    /* The thread is gone: its state is ours now. No submit succeeds any more. */
    size_t dropped = ex->lcount + ex->qcount;
    while (ex->lcount > 0) {
        pn_request_drop(pe_local_pop(ex));
    }
    while (ex->qcount > 0) {
        pn_request_drop(ex->queue[ex->qhead]);
        ex->qhead = (ex->qhead + 1) % ex->capacity;
        ex->qcount--;
    }
    pe_tick(ex, true);
    SH_INFO(PE_MOD, "executor stopped requests=%llu dropped_at_stop=%zu",
            (unsigned long long)ex->requests, dropped);
    pe_free(ex);
}

void pn_exec_stats_get(pn_exec *ex, pn_exec_stats *out)
{
    SH_ASSERT(ex != NULL && out != NULL);
    pthread_mutex_lock(&ex->mu);
    *out = ex->published;
    pthread_mutex_unlock(&ex->mu);
}
