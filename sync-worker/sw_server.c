/* sw_server.c -- NNG rep contexts, the request queue and the worker threads.
 *
 * A request's life: its context receives it (sv_cb, on an NNG thread) and puts
 * it in the queue; a worker takes it, decodes it, runs it against MySQL,
 * writes the reply into the request's own message and sends it on the same
 * context; the send's completion (sv_cb again) arms the next receive. So every
 * context holds at most one request, and the queue, sized to the number of
 * contexts, can never overflow.
 *
 * NNG quirks handled here (LIBRARY-NOTES.md section 3): RECVMAXSZ is set to what
 * the codec accepts (NNG's default is unlimited, and a message over a limit is
 * dropped silently, so the two limits must be the same); a failed send leaves
 * the message with us; shutdown goes aio_stop -> ctx_close -> aio_free -> close.
 * NNG's req side resends a request that is not answered in time, so the same
 * batch may arrive twice, even at two workers at once: that is why applying is
 * idempotent (sw_apply), not something this file tries to filter.
 *
 * Decoding happens on the worker, never in the callback: anything malformed is
 * answered with an error ack naming the sh_err code, counted, and forgotten. A
 * worker takes up to apply.group_batches_max requests at once (no more than its
 * share while other workers wait idle), so batches of different partitions that
 * queued up while MySQL was busy share one commit. */
#include "sw_server.h"

#include "sh_id.h"
#include "sh_log.h"
#include "sh_wire.h"
#include "sw_apply.h"
#include "sw_audit.h"
#include "sw_catalog.h"
#include "sw_details.h"
#include "sw_migrate.h"

#include <errno.h>
#include <inttypes.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SV_MOD "server"
/* Details one worker decodes for one group: two full batches, so the first
 * batch of a round always fits whatever the others took. */
#define SV_POOL_DETAILS (2 * SH_WIRE_DETAILS_MAX)
/* Logged bad messages: the first few, then one in SV_BAD_LOG_EVERY (a flood of
 * garbage must not become a flood of log lines). */
#define SV_BAD_LOG_FIRST 20
#define SV_BAD_LOG_EVERY 1000

_Static_assert(SV_POOL_DETAILS >= SH_WIRE_DETAILS_MAX, "a full batch always fits the pool");

typedef enum sv_state {
    SV_IDLE = 0, /* not armed */
    SV_RECV,     /* a receive is pending */
    SV_BUSY,     /* queued or held by a worker */
    SV_SEND,     /* the reply is being sent */
} sv_state;

typedef struct sv_req {
    sw_server *srv;
    nng_ctx ctx;
    nng_aio *aio;
    nng_msg *msg; /* the request while SV_BUSY; the reply is written into it */
    sv_state state;
    bool ctx_open;
} sv_req;

typedef struct sv_worker {
    sw_server *srv;
    pthread_t thread;
    bool started;
    sw_mysql *mysql;
    sw_apply *apply;
    sv_req **pending;     /* this round's requests */
    sv_req **deferred;    /* next round's */
    sv_req **group_reqs;  /* the group's requests, parallel to items */
    sh_wire_batch *heads; /* group_batches_max + 1 (the last for single messages) */
    sw_apply_item *items; /* group_batches_max */
    sh_wire_detail *pool; /* SV_POOL_DETAILS */
    sh_wire_sku *skus;    /* SH_SKUS_MAX, for catalog replies */
    sh_wire_catalog_req catalog_req;
} sv_worker;

struct sw_server {
    sw_server_opts opts;
    atomic_bool stop;
    nng_socket sock;
    bool sock_open;
    sv_req *reqs;
    int nreqs;
    /* the queue: a ring of at most nreqs requests */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool sync_init;
    sv_req **ring;
    size_t ring_head;
    size_t ring_count;
    size_t waiting; /* workers blocked in sv_take */
    sv_worker *workers;
    int nworkers;
    atomic_uint_fast64_t bad_logged;
#ifdef SH_FAULT_INJECTION
    atomic_uint_fast64_t fault_drop_acks_left;
#endif
};

/* ==== FAULT INJECTION (builds with -DSH_FAULT_INJECTION only) ===================
 * STOCK_FAULT_DROP_ACKS=N in the environment: the first N detail batches that
 * apply successfully get no reply, as if the ack were lost on the way, so a test
 * can watch the sender time out and resend the same batch. This block is the
 * whole switch; normal builds compile none of it. */
#ifdef SH_FAULT_INJECTION
static void sv_fault_init(sw_server *s)
{
    uint64_t n = 0;
    const char *v = getenv("STOCK_FAULT_DROP_ACKS");
    if (v != NULL && v[0] != '\0') {
        char *end = NULL;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno == 0 && end != NULL && *end == '\0') {
            n = (uint64_t)x;
        } else {
            SH_WARN(SV_MOD, "fault injection: ignoring STOCK_FAULT_DROP_ACKS=%s", v);
        }
    }
    atomic_init(&s->fault_drop_acks_left, n);
    if (n > 0) {
        SH_WARN(SV_MOD, "fault injection: the first %llu batch acks will be withheld",
                (unsigned long long)n);
    }
}

static bool sv_fault_drop_ack(sw_server *s)
{
    uint_fast64_t left = atomic_load(&s->fault_drop_acks_left);
    while (left > 0) {
        if (atomic_compare_exchange_weak(&s->fault_drop_acks_left, &left, left - 1)) {
            SH_WARN(SV_MOD, "fault injection: withholding a batch ack, %llu more",
                    (unsigned long long)(left - 1));
            return true;
        }
    }
    return false;
}
#else
static void sv_fault_init(sw_server *s)
{
    (void)s;
}

static bool sv_fault_drop_ack(sw_server *s)
{
    (void)s;
    return false;
}
#endif
/* ==== end of fault injection =================================================== */

/* ---- contexts (NNG threads) ------------------------------------------------------ */

static void sv_recv(sv_req *q)
{
    if (atomic_load(&q->srv->stop)) {
        q->state = SV_IDLE;
        return;
    }
    q->state = SV_RECV;
    nng_ctx_recv(q->ctx, q->aio);
}

static void sv_enqueue(sw_server *s, sv_req *q)
{
    pthread_mutex_lock(&s->mu);
    /* One slot per context, and a context is queued at most once. */
    SH_ASSERT(s->ring_count < (size_t)s->nreqs);
    s->ring[(s->ring_head + s->ring_count) % (size_t)s->nreqs] = q;
    s->ring_count++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void sv_cb(void *arg)
{
    sv_req *q = arg;
    sw_server *s = q->srv;
    int rv = nng_aio_result(q->aio);
    if (q->state == SV_SEND) {
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(q->aio)); /* a failed send leaves it with us */
            nng_aio_set_msg(q->aio, NULL);
            atomic_fetch_add(&s->opts.stats->replies_dropped, 1);
            SH_DEBUG(SV_MOD, "send failed err=%s", nng_strerror(rv));
        }
        sv_recv(q);
        return;
    }
    SH_ASSERT(q->state == SV_RECV);
    if (rv != 0) {
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED || atomic_load(&s->stop)) {
            q->state = SV_IDLE;
            return;
        }
        SH_WARN(SV_MOD, "receive failed err=%s", nng_strerror(rv));
        sv_recv(q);
        return;
    }
    nng_msg *msg = nng_aio_get_msg(q->aio);
    nng_aio_set_msg(q->aio, NULL);
    SH_ASSERT(msg != NULL);
    if (atomic_load(&s->stop)) {
        nng_msg_free(msg); /* shutting down: the sender will resend elsewhere or later */
        q->state = SV_IDLE;
        return;
    }
    atomic_fetch_add(&s->opts.stats->requests, 1);
    q->msg = msg;
    q->state = SV_BUSY;
    sv_enqueue(s, q);
}

/* ---- replies (worker threads) ----------------------------------------------------- */

static void sv_send(sv_req *q)
{
    SH_ASSERT(q->state == SV_BUSY && q->msg != NULL);
    q->state = SV_SEND;
    nng_aio_set_msg(q->aio, q->msg);
    q->msg = NULL;
    nng_ctx_send(q->ctx, q->aio);
}

/* Ends a request without a reply; the rep context forgets it on the next receive. */
static void sv_drop(sv_req *q)
{
    SH_ASSERT(q->state == SV_BUSY && q->msg != NULL);
    nng_msg_free(q->msg);
    q->msg = NULL;
    atomic_fetch_add(&q->srv->opts.stats->replies_dropped, 1);
    sv_recv(q);
}

/* The request's message, emptied and sized for a reply of len bytes. The rep
 * context keeps the routing backtrace itself, so the message can be reused. */
static uint8_t *sv_reply_buf(sv_req *q, size_t len)
{
    nng_msg_clear(q->msg);
    if (nng_msg_realloc(q->msg, len) != 0) {
        return NULL;
    }
    return nng_msg_body(q->msg);
}

static void sv_reply_ack(sv_req *q, uint64_t req_id, const sh_wire_batch *head, sh_err status,
                         uint64_t synced_seq, const char *message)
{
    sh_wire_ack ack;
    memset(&ack, 0, sizeof ack);
    ack.status = status;
    if (head != NULL) {
        memcpy(ack.sku, head->sku, (size_t)head->sku_len + 1);
        ack.sku_len = head->sku_len;
        ack.partition = head->partition;
    } else {
        ack.sku[0] = '?'; /* unknown: the message did not decode */
        ack.sku_len = 1;
    }
    ack.synced_seq = synced_seq;
    size_t mlen = strlen(message);
    if (mlen > SH_MESSAGE_CHARS_MAX) {
        mlen = SH_MESSAGE_CHARS_MAX;
    }
    sh_err rc = sh_wire_str_set(ack.message, sizeof ack.message, &ack.message_len, message, mlen);
    SH_ASSERT(rc == SH_OK);
    size_t size = sh_wire_ack_size(&ack);
    uint8_t *buf = sv_reply_buf(q, size);
    size_t len = 0;
    if (buf == NULL || (rc = sh_wire_ack_encode(buf, size, &len, req_id, &ack)) != SH_OK) {
        SH_ERROR(SV_MOD, "cannot build an ack: %s",
                 buf == NULL ? "out of memory" : sh_strerror(rc));
        sv_drop(q);
        return;
    }
    SH_ASSERT(len == size);
    sv_send(q);
}

static void sv_reply_catalog(sv_req *q, uint64_t req_id, const sw_catalog_out *out)
{
    size_t size = sh_wire_catalog_rep_size(&out->rep, out->skus, out->n);
    uint8_t *buf = size > 0 ? sv_reply_buf(q, size) : NULL;
    size_t len = 0;
    sh_err rc = SH_ENOMEM;
    if (buf == NULL || (rc = sh_wire_catalog_rep_encode(buf, size, &len, req_id, &out->rep,
                                                        out->skus, out->n)) != SH_OK) {
        SH_ERROR(SV_MOD, "cannot build a catalog reply: %s", sh_strerror(rc));
        sv_drop(q);
        return;
    }
    sv_send(q);
}

/* A message that failed to decode, or that this worker does not serve. */
static void sv_reply_bad(sw_server *s, sv_req *q, uint64_t req_id, sh_err rc, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void sv_reply_bad(sw_server *s, sv_req *q, uint64_t req_id, sh_err rc, const char *fmt, ...)
{
    char message[SH_MESSAGE_CHARS_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    atomic_fetch_add(&s->opts.stats->bad_messages, 1);
    uint64_t n = atomic_fetch_add(&s->bad_logged, 1) + 1;
    if (n <= SV_BAD_LOG_FIRST || n % SV_BAD_LOG_EVERY == 0) {
        SH_WARN(SV_MOD, "bad message status=%s bytes=%zu message=\"%s\" seen=%" PRIu64,
                sh_strerror(rc), nng_msg_len(q->msg), message, n);
    }
    sv_reply_ack(q, req_id, NULL, rc, 0, message);
}

/* ---- request handling (worker threads) -------------------------------------------- */

/* Ids in a detail batch: the wire checks lengths, the alphabet is checked here
 * so that nothing MySQL would refuse or mangle reaches it. */
static sh_err sv_check_ids(const sh_wire_batch *h, const sh_wire_detail *d, size_t n, char *why,
                           size_t whylen)
{
    if (sh_id_check_sku(h->sku, h->sku_len) != SH_OK) {
        snprintf(why, whylen, "invalid sku id");
        return SH_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (sh_id_check_order(d[i].order_id, d[i].order_id_len) != SH_OK ||
            (d[i].user_id_len > 0 && sh_id_check_user(d[i].user_id, d[i].user_id_len) != SH_OK)) {
            snprintf(why, whylen, "invalid order or user id at seq %" PRIu64, d[i].seq);
            return SH_EINVAL;
        }
    }
    return SH_OK;
}

static size_t sv_group_cap(const sv_worker *w)
{
    return (size_t)w->srv->opts.group_batches_max;
}

/* The catalog op MIGRATE (stockctl db migrate): a migration run on its own
 * connection (sw_migrate), answering the versions before and after. This
 * worker thread is busy for the run; the others go on serving. */
static void sv_migrate(sv_worker *w, sw_catalog_out *out)
{
    sw_server *s = w->srv;
    sw_mysql_opts mo = s->opts.mysql;
    mo.stop = &s->stop;
    mo.stats = s->opts.stats;
    sw_migrate_result res;
    char why[SH_MESSAGE_CHARS_MAX + 1];
    sh_err rc = sw_migrate_run(&mo, s->opts.migrate_lock_timeout_s, &res, why, sizeof why);
    memset(&out->rep, 0, sizeof out->rep);
    out->n = 0;
    out->rep.status = rc;
    out->rep.applied = rc == SH_OK && res.after > res.before;
    out->rep.schema_before = res.before <= SH_WIRE_SCHEMA_VERSION_MAX ? res.before : 0;
    out->rep.schema_after = res.after <= SH_WIRE_SCHEMA_VERSION_MAX ? res.after : 0;
    if (rc == SH_OK) {
        snprintf(why, sizeof why, "schema at version %u (was %u)", res.after, res.before);
    }
    size_t k = strlen(why);
    memcpy(out->rep.message, why, k + 1);
    out->rep.message_len = (uint8_t)k;
    SH_ASSERT(rc != SH_OK || out->rep.schema_before <= out->rep.schema_after);
}

/* hdr is the message's header, already decoded once (its req_id is good even if
 * the body below fails to decode). */
static void sv_catalog(sv_worker *w, sv_req *q, const uint8_t *data, size_t len,
                       const sh_wire_header *hdr)
{
    sw_server *s = w->srv;
    sh_wire_header h2;
    sh_err rc = sh_wire_catalog_req_decode(data, len, &h2, &w->catalog_req);
    sw_catalog_out out = {.skus = w->skus, .cap = SH_SKUS_MAX};
    if (rc != SH_OK) {
        /* The header said CATALOG_REQ: answer in the type the sender decodes. */
        atomic_fetch_add(&s->opts.stats->bad_messages, 1);
        SH_WARN(SV_MOD, "bad catalog request status=%s bytes=%zu", sh_strerror(rc), len);
        memset(&out.rep, 0, sizeof out.rep);
        out.rep.status = rc;
        int k = snprintf(out.rep.message, sizeof out.rep.message, "malformed catalog request: %s",
                         sh_strerror(rc));
        SH_ASSERT(k > 0 && (size_t)k < sizeof out.rep.message);
        out.rep.message_len = (uint8_t)k;
        out.n = 0;
        sv_reply_catalog(q, hdr->req_id, &out);
        return;
    }
    if (w->catalog_req.op == SH_WIRE_CAT_MIGRATE) {
        sv_migrate(w, &out);
    } else {
        sw_catalog_run(w->mysql, s->opts.stats, &w->catalog_req, &out);
    }
    sv_reply_catalog(q, hdr->req_id, &out);
}

static void sv_reply_sync_state(sv_req *q, uint64_t req_id, const sw_audit_out *out)
{
    size_t size = sh_wire_sync_state_rep_size(&out->rep, out->parts, out->n);
    uint8_t *buf = size > 0 ? sv_reply_buf(q, size) : NULL;
    size_t len = 0;
    sh_err rc = SH_ENOMEM;
    if (buf == NULL || (rc = sh_wire_sync_state_rep_encode(buf, size, &len, req_id, &out->rep,
                                                           out->parts, out->n)) != SH_OK) {
        SH_ERROR(SV_MOD, "cannot build a sync state reply: %s", sh_strerror(rc));
        sv_drop(q);
        return;
    }
    sv_send(q);
}

/* SYNC_STATE_REQ: the audit's question "what does MySQL hold for this SKU?".
 * Answered in the type the sender decodes, also when the request is malformed. */
static void sv_sync_state(sv_worker *w, sv_req *q, const uint8_t *data, size_t len,
                          const sh_wire_header *hdr)
{
    sw_server *s = w->srv;
    sh_wire_header h2;
    sh_wire_sync_state_req req;
    sh_wire_sync_part parts[SH_PARTITIONS_PER_SKU_MAX];
    sw_audit_out out = {.parts = parts};
    sh_err rc = sh_wire_sync_state_req_decode(data, len, &h2, &req);
    if (rc != SH_OK) {
        atomic_fetch_add(&s->opts.stats->bad_messages, 1);
        SH_WARN(SV_MOD, "bad sync state request status=%s bytes=%zu", sh_strerror(rc), len);
        memset(&out.rep, 0, sizeof out.rep);
        out.rep.status = rc;
        int k = snprintf(out.rep.message, sizeof out.rep.message,
                         "malformed sync state request: %s", sh_strerror(rc));
        SH_ASSERT(k > 0 && (size_t)k < sizeof out.rep.message);
        out.rep.message_len = (uint8_t)k;
        sv_reply_sync_state(q, hdr->req_id, &out);
        return;
    }
    sw_audit_run(w->mysql, s->opts.stats, &req, &out);
    sv_reply_sync_state(q, hdr->req_id, &out);
}

static void sv_reply_sync_details(sv_req *q, uint64_t req_id, const sw_details_out *out)
{
    size_t size = sh_wire_sync_details_rep_size(&out->rep, out->details, out->n);
    uint8_t *buf = size > 0 ? sv_reply_buf(q, size) : NULL;
    size_t len = 0;
    sh_err rc = SH_ENOMEM;
    if (buf == NULL || (rc = sh_wire_sync_details_rep_encode(buf, size, &len, req_id, &out->rep,
                                                             out->details, out->n)) != SH_OK) {
        SH_ERROR(SV_MOD, "cannot build a details reply: %s", sh_strerror(rc));
        sv_drop(q);
        return;
    }
    sv_send(q);
}

/* SYNC_DETAILS_REQ: reconcile's question "which details of this partition do
 * you hold after seq S?". Answered in the type the sender decodes, also when
 * the request is malformed. */
static void sv_sync_details(sv_worker *w, sv_req *q, const uint8_t *data, size_t len,
                            const sh_wire_header *hdr)
{
    sw_server *s = w->srv;
    sh_wire_header h2;
    sh_wire_sync_details_req req;
    /* Its own page (about 160 KB): the pool may hold this round's batches.
     * Reconcile is a rare operator's command, so one allocation per page. */
    sw_details_out out = {.details = calloc(SH_WIRE_DETAILS_PAGE_MAX, sizeof *out.details)};
    sh_err rc = sh_wire_sync_details_req_decode(data, len, &h2, &req);
    if (rc == SH_OK && out.details == NULL) {
        rc = SH_ENOMEM;
    }
    if (rc != SH_OK) {
        atomic_fetch_add(&s->opts.stats->bad_messages, 1);
        SH_WARN(SV_MOD, "bad details request status=%s bytes=%zu", sh_strerror(rc), len);
        memset(&out.rep, 0, sizeof out.rep);
        out.rep.status = rc;
        sh_wire_text_set(out.rep.message, sizeof out.rep.message, &out.rep.message_len,
                         rc == SH_ENOMEM ? "out of memory" : "malformed details request");
        out.n = 0;
        sv_reply_sync_details(q, hdr->req_id, &out);
        free(out.details);
        return;
    }
    sw_details_run(w->mysql, s->opts.stats, &req, &out);
    sv_reply_sync_details(q, hdr->req_id, &out);
    free(out.details);
}

/* A count-0 batch: the question "what is your synced_seq for this partition?". */
static void sv_query(sv_worker *w, sv_req *q, const uint8_t *data, size_t len,
                     const sh_wire_header *hdr)
{
    sw_server *s = w->srv;
    sh_wire_batch *head = &w->heads[sv_group_cap(w)]; /* the spare head */
    sh_wire_header h2;
    sh_err rc = sh_wire_batch_decode(data, len, &h2, head, NULL, 0);
    if (rc != SH_OK) {
        sv_reply_bad(s, q, hdr->req_id, rc, "malformed batch: %s", sh_strerror(rc));
        return;
    }
    char why[SH_MESSAGE_CHARS_MAX + 1];
    if (sv_check_ids(head, NULL, 0, why, sizeof why) != SH_OK) {
        sv_reply_bad(s, q, hdr->req_id, SH_EINVAL, "%s", why);
        return;
    }
    sw_apply_item it = {.head = head, .details = NULL, .n = 0};
    sw_apply_query(w->apply, w->mysql, &it);
    sv_reply_ack(q, hdr->req_id, head, it.status, it.synced_seq, it.message);
}

static void sv_ack_batch(sw_server *s, sv_req *q, uint64_t req_id, const sw_apply_item *it)
{
    if (it->status == SH_OK && sv_fault_drop_ack(s)) { /* test builds only */
        sv_drop(q);
        return;
    }
    sv_reply_ack(q, req_id, it->head, it->status, it->synced_seq, it->message);
}

/* One round over w->pending[0..npend): answers every message that is not a
 * groupable batch, applies one group of batches of distinct partitions in one
 * transaction, and moves the rest (a second batch of a partition already in the
 * group, or no room left) to w->deferred. Returns how many were deferred. Each
 * round answers at least one request: the first batch always joins the group. */
static size_t sv_round(sv_worker *w, size_t npend, uint64_t *group_ids)
{
    sw_server *s = w->srv;
    size_t cap = sv_group_cap(w);
    size_t ngroup = 0;
    size_t used = 0;
    size_t ndefer = 0;
    for (size_t i = 0; i < npend; i++) {
        sv_req *q = w->pending[i];
        size_t len = nng_msg_len(q->msg);
        const uint8_t *data = len > 0 ? nng_msg_body(q->msg) : NULL;
        sh_wire_header hdr;
        sh_err rc = sh_wire_header_decode(data, len, &hdr);
        if (rc != SH_OK) {
            sv_reply_bad(s, q, 0, rc, "malformed message: %s", sh_strerror(rc));
            continue;
        }
        if (hdr.type == SH_WIRE_CATALOG_REQ) {
            sv_catalog(w, q, data, len, &hdr);
            continue;
        }
        if (hdr.type == SH_WIRE_SYNC_STATE_REQ) {
            sv_sync_state(w, q, data, len, &hdr);
            continue;
        }
        if (hdr.type == SH_WIRE_SYNC_DETAILS_REQ) {
            sv_sync_details(w, q, data, len, &hdr);
            continue;
        }
        if (hdr.type != SH_WIRE_DETAIL_BATCH) {
            sv_reply_bad(s, q, hdr.req_id, SH_EPROTO, "unexpected message type %s",
                         sh_wire_type_name((int)hdr.type));
            continue;
        }
        if (hdr.count == 0) {
            sv_query(w, q, data, len, &hdr);
            continue;
        }
        if (ngroup == cap || used + hdr.count > SV_POOL_DETAILS) {
            w->deferred[ndefer++] = q;
            continue;
        }
        uint64_t req_id = hdr.req_id;
        sh_wire_batch *head = &w->heads[ngroup];
        sh_wire_detail *d = w->pool + used;
        rc = sh_wire_batch_decode(data, len, &hdr, head, d, SV_POOL_DETAILS - used);
        if (rc != SH_OK) {
            sv_reply_bad(s, q, req_id, rc, "malformed batch: %s", sh_strerror(rc));
            continue;
        }
        char why[SH_MESSAGE_CHARS_MAX + 1];
        if (sv_check_ids(head, d, hdr.count, why, sizeof why) != SH_OK) {
            sv_reply_bad(s, q, req_id, SH_EINVAL, "%s", why);
            continue;
        }
        bool clash = false;
        for (size_t j = 0; j < ngroup && !clash; j++) {
            clash = w->items[j].head->partition == head->partition &&
                    strcmp(w->items[j].head->sku, head->sku) == 0;
        }
        if (clash) {
            w->deferred[ndefer++] = q; /* same partition: after this group's commit */
            continue;
        }
        memset(&w->items[ngroup], 0, sizeof w->items[ngroup]);
        w->items[ngroup].head = head;
        w->items[ngroup].details = d;
        w->items[ngroup].n = hdr.count;
        w->group_reqs[ngroup] = q;
        group_ids[ngroup] = req_id;
        used += hdr.count;
        ngroup++;
    }
    SH_ASSERT(ndefer < npend || npend == 0);
    if (ngroup > 0) {
        sw_apply_batches(w->apply, w->mysql, w->items, ngroup);
        for (size_t k = 0; k < ngroup; k++) {
            sv_ack_batch(s, w->group_reqs[k], group_ids[k], &w->items[k]);
        }
    }
    return ndefer;
}

/* Takes 1..max requests from the queue, waiting for the first; 0 at shutdown.
 * A thread takes no more than its share when others wait idle: grouping saves
 * commits, but not at the price of leaving the other connections unused. */
static size_t sv_take(sw_server *s, sv_req **out, size_t max)
{
    pthread_mutex_lock(&s->mu);
    s->waiting++;
    while (s->ring_count == 0 && !atomic_load(&s->stop)) {
        pthread_cond_wait(&s->cv, &s->mu);
    }
    s->waiting--;
    size_t n = 0;
    if (!atomic_load(&s->stop)) {
        size_t share = (s->ring_count + s->waiting) / (s->waiting + 1); /* ceil */
        if (share < max) {
            max = share;
        }
        while (n < max && s->ring_count > 0) {
            out[n++] = s->ring[s->ring_head];
            s->ring_head = (s->ring_head + 1) % (size_t)s->nreqs;
            s->ring_count--;
        }
        if (s->ring_count > 0 && s->waiting > 0) {
            pthread_cond_signal(&s->cv); /* the rest is someone else's */
        }
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void *sv_worker_main(void *arg)
{
    sv_worker *w = arg;
    sw_server *s = w->srv;
    size_t cap = sv_group_cap(w);
    uint64_t group_ids[SW_APPLY_GROUP_MAX];
    if (sw_mysql_connect(w->mysql) != SH_OK) {
        SH_WARN(SV_MOD, "mysql not reachable at start, will retry per request err=\"%s\"",
                sw_mysql_error(w->mysql));
    }
    for (;;) {
        size_t n = sv_take(s, w->pending, cap);
        if (n == 0) {
            break;
        }
        while (n > 0) { /* each round answers at least one: at most n rounds */
            size_t left = sv_round(w, n, group_ids);
            sv_req **t = w->pending;
            w->pending = w->deferred;
            w->deferred = t;
            n = left;
        }
    }
    return NULL;
}

/* ---- lifecycle ----------------------------------------------------------------------- */

static sh_err sv_rc(int rv)
{
    switch (rv) {
    case NNG_ENOMEM:
        return SH_ENOMEM;
    case NNG_EADDRINVAL:
    case NNG_EINVAL:
    case NNG_ENOTSUP:
        return SH_EINVAL;
    default:
        return SH_EIO;
    }
}

static void sv_worker_free(sv_worker *w)
{
    sw_mysql_close(w->mysql);
    sw_apply_free(w->apply);
    free(w->pending);
    free(w->deferred);
    free(w->group_reqs);
    free(w->heads);
    free(w->items);
    free(w->pool);
    free(w->skus);
}

static sh_err sv_worker_init(sw_server *s, sv_worker *w)
{
    size_t cap = (size_t)s->opts.group_batches_max;
    w->srv = s;
    w->pending = calloc(cap, sizeof *w->pending);
    w->deferred = calloc(cap, sizeof *w->deferred);
    w->group_reqs = calloc(cap, sizeof *w->group_reqs);
    w->heads = calloc(cap + 1, sizeof *w->heads);
    w->items = calloc(cap, sizeof *w->items);
    w->pool = calloc(SV_POOL_DETAILS, sizeof *w->pool);
    w->skus = calloc(SH_SKUS_MAX, sizeof *w->skus);
    if (w->pending == NULL || w->deferred == NULL || w->group_reqs == NULL || w->heads == NULL ||
        w->items == NULL || w->pool == NULL || w->skus == NULL) {
        return SH_ENOMEM;
    }
    sh_err rc = sw_apply_new(&w->apply, s->opts.stats);
    if (rc != SH_OK) {
        return rc;
    }
    sw_mysql_opts mo = s->opts.mysql;
    mo.stop = &s->stop;
    mo.stats = s->opts.stats;
    return sw_mysql_open(&w->mysql, &mo);
}

void sw_server_stop(sw_server *s)
{
    if (s == NULL) {
        return;
    }
    atomic_store(&s->stop, true);
    if (s->sync_init) {
        pthread_mutex_lock(&s->mu);
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    for (int i = 0; i < s->nworkers; i++) {
        if (s->workers[i].started) {
            pthread_join(s->workers[i].thread, NULL);
        }
    }
    /* Workers are gone; stop every aio (this waits for running callbacks). */
    for (int i = 0; i < s->nreqs; i++) {
        if (s->reqs[i].aio != NULL) {
            nng_aio_stop(s->reqs[i].aio);
        }
    }
    /* Requests still queued were never answered: their senders resend. */
    for (size_t k = 0; k < s->ring_count; k++) {
        sv_req *q = s->ring[(s->ring_head + k) % (size_t)s->nreqs];
        nng_msg_free(q->msg);
        q->msg = NULL;
        q->state = SV_IDLE;
    }
    s->ring_count = 0;
    for (int i = 0; i < s->nreqs; i++) {
        sv_req *q = &s->reqs[i];
        SH_ASSERT(q->state != SV_BUSY);
        if (q->ctx_open) {
            nng_ctx_close(q->ctx);
        }
        if (q->aio != NULL) {
            nng_msg *m = nng_aio_get_msg(q->aio);
            if (m != NULL) {
                nng_msg_free(m);
            }
            nng_aio_free(q->aio);
        }
    }
    if (s->sock_open) {
        nng_close(s->sock);
    }
    for (int i = 0; i < s->nworkers; i++) {
        sv_worker_free(&s->workers[i]);
    }
    if (s->sync_init) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
    }
    free(s->workers);
    free(s->ring);
    free(s->reqs);
    free(s);
}

sh_err sw_server_start(sw_server **out, const sw_server_opts *opts)
{
    SH_ASSERT(out != NULL && opts != NULL && opts->url != NULL && opts->stats != NULL);
    *out = NULL;
    if (opts->contexts < 1 || opts->contexts > SW_SERVER_CONTEXTS_MAX || opts->threads < 1 ||
        opts->threads > SW_SERVER_THREADS_MAX || opts->group_batches_max < 1 ||
        opts->group_batches_max > SW_APPLY_GROUP_MAX) {
        return SH_EINVAL;
    }
    sw_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return SH_ENOMEM;
    }
    s->opts = *opts;
    atomic_init(&s->stop, false);
    atomic_init(&s->bad_logged, 0);
    sv_fault_init(s);
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        return SH_ENOMEM;
    }
    if (pthread_cond_init(&s->cv, NULL) != 0) {
        pthread_mutex_destroy(&s->mu);
        free(s);
        return SH_ENOMEM;
    }
    s->sync_init = true;
    s->reqs = calloc((size_t)opts->contexts, sizeof *s->reqs);
    s->ring = calloc((size_t)opts->contexts, sizeof *s->ring);
    s->workers = calloc((size_t)opts->threads, sizeof *s->workers);
    if (s->reqs == NULL || s->ring == NULL || s->workers == NULL) {
        sw_server_stop(s);
        return SH_ENOMEM;
    }
    s->nworkers = opts->threads;
    for (int i = 0; i < opts->threads; i++) {
        sh_err rc = sv_worker_init(s, &s->workers[i]);
        if (rc != SH_OK) {
            sw_server_stop(s);
            return rc;
        }
    }
    int rv = nng_rep0_open(&s->sock);
    if (rv != 0) {
        SH_ERROR(SV_MOD, "rep0 socket: %s", nng_strerror(rv));
        sw_server_stop(s);
        return sv_rc(rv);
    }
    s->sock_open = true;
    /* Explicit: NNG's default is unlimited; the codec's limit is the real one. */
    rv = nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, SH_WIRE_MSG_BYTES_MAX);
    if (rv != 0) {
        SH_ERROR(SV_MOD, "set %s: %s", NNG_OPT_RECVMAXSZ, nng_strerror(rv));
        sw_server_stop(s);
        return sv_rc(rv);
    }
    s->nreqs = opts->contexts;
    for (int i = 0; i < opts->contexts; i++) {
        sv_req *q = &s->reqs[i];
        q->srv = s;
        q->state = SV_IDLE;
        rv = nng_aio_alloc(&q->aio, sv_cb, q);
        if (rv == 0) {
            rv = nng_ctx_open(&q->ctx, s->sock);
            q->ctx_open = rv == 0;
        }
        if (rv != 0) {
            SH_ERROR(SV_MOD, "context %d: %s", i, nng_strerror(rv));
            sw_server_stop(s);
            return sv_rc(rv);
        }
    }
    rv = nng_listen(s->sock, opts->url, NULL, 0);
    if (rv != 0) {
        SH_ERROR(SV_MOD, "listen url=%s: %s", opts->url, nng_strerror(rv));
        sw_server_stop(s);
        return sv_rc(rv);
    }
    for (int i = 0; i < s->nworkers; i++) {
        if (pthread_create(&s->workers[i].thread, NULL, sv_worker_main, &s->workers[i]) != 0) {
            SH_ERROR(SV_MOD, "cannot start worker thread %d", i);
            sw_server_stop(s);
            return SH_ENOMEM;
        }
        s->workers[i].started = true;
    }
    for (int i = 0; i < s->nreqs; i++) {
        sv_recv(&s->reqs[i]);
    }
    SH_INFO(SV_MOD,
            "listening url=%s contexts=%d threads=%d group_batches_max=%d "
            "recv_max_bytes=%u",
            opts->url, opts->contexts, opts->threads, opts->group_batches_max,
            (unsigned)SH_WIRE_MSG_BYTES_MAX);
    *out = s;
    return SH_OK;
}
