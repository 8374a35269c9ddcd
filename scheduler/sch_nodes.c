/* sch_nodes.c -- NNG req0 links to the partition nodes, batched per loop turn.
 *
 * Why batching: an NNG round trip costs about 7 us of CPU and a deduction's
 * Lua work about 3 us, so one message per deduction would spend the cores on
 * overhead. Items wait in a per-node outbox until the low-priority flush event
 * runs (after the loop's current burst of HTTP callbacks), which sends one
 * message per node with everything queued, cut at batch_items_max items.
 *
 * Why contexts: a req0 context carries one request at a time; a bounded set of
 * them per node bounds the messages in flight. No free context means items
 * stay in the (bounded) outbox until a reply frees one; a full outbox refuses
 * (the caller answers 503).
 *
 * Why no NNG resend: req0 resends an unanswered request after RESENDTIME, and
 * re-sends it to a restarted peer on reconnect; both would run a deduction a
 * second time and make its first answer look like a duplicate. Resend is off;
 * a timeout or a broken link fails the message's items ("outcome unknown"),
 * the client retries with the same order id, and the node's order claims make
 * that retry safe.
 *
 * Threads: NNG runs the aio callbacks on its own threads. A callback touches
 * only its context's in-flight fields (which the loop does not touch while the
 * context is busy) and pushes the context onto a mutex-protected completion
 * ring (one slot per context, so it never overflows); the push that finds the
 * ring without a wakeup pending writes an eventfd the loop watches. NNG
 * threads never call libevent, so the base runs without evthread locking
 * (which took the base lock on every event_add/del of every HTTP request and
 * made the loop and NNG threads contend for it). Everything else belongs to
 * the loop thread. */
#include "sch_nodes.h"

#include "sh_clock.h"
#include "sh_log.h"

#include <event2/event.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define NODES_URL_BYTES_MAX  256
#define NODES_TICK_MS        50   /* outbox expiry check period */
#define NODES_WARN_PERIOD_MS 1000 /* at most one link warning per node per period */
#define NODES_RECONN_MIN_MS  100  /* NNG redial delay after a link drops, ms */
#define NODES_RECONN_MAX_MS  1000 /* with backoff up to this, ms */
#define NODES_PRIO_REPLIES   0    /* replies first: they free slots and answer clients */
#define NODES_PRIO_FLUSH     1    /* flush last: after the burst of HTTP callbacks */

typedef enum ctx_phase {
    PHASE_SEND = 1,
    PHASE_RECV = 2,
} ctx_phase;

typedef struct node_link node_link;

typedef struct link_ctx {
    node_link *link;
    sch_nodes *owner;
    nng_ctx ctx;
    nng_aio *aio;
    int ctx_open;
    /* Loop-owned while idle; NNG-owned between send and completion. */
    int busy;
    ctx_phase phase;
    uint64_t deadline_ms; /* mono */
    uint64_t req_id;
    sh_wire_type type;
    size_t nitems;
    uint64_t *tags;    /* batch_items_max */
    uint8_t *answered; /* batch_items_max */
    /* Written by the NNG callback, read by the loop after the hand-off. */
    nng_msg *done_msg;
    int done_err;
} link_ctx;

typedef struct outbox_entry {
    uint64_t enqueued_ms; /* mono */
    sh_wire_type type;
    sh_wire_item item;
} outbox_entry;

struct node_link {
    int index;
    char url[NODES_URL_BYTES_MAX];
    nng_socket sock;
    int sock_open;
    link_ctx *ctxs;
    uint32_t nctx;
    uint32_t *idle; /* stack of idle context indexes */
    uint32_t nidle;
    outbox_entry *ob; /* ring */
    size_t ob_head, ob_len, ob_cap;
    uint64_t last_warn_ms;
};

struct sch_nodes {
    struct event_base *base;
    sch_nodes_config cfg;
    sch_nodes_handler h;
    sch_stats *stats;
    node_link *links;
    int nlinks;
    struct event *flush_ev;
    struct event *done_ev;
    struct event *tick_ev;
    pthread_mutex_t mu; /* guards done ring, wake_pending and closing */
    int mu_init;
    link_ctx **done; /* completion ring, one slot per context */
    size_t done_head, done_len, done_cap;
    int wake_pending; /* under mu: wake_fd written since the loop last drained */
    int wake_fd;      /* eventfd: NNG threads -> loop (done_ev watches it) */
    int closing;      /* under mu: NNG callbacks stop starting receives */
    link_ctx **batch; /* loop-side copy of the ring */
    sh_wire_item *scratch;
    sh_wire_result *results;
    uint64_t next_req_id;
    size_t outstanding; /* items queued or in flight */
};

/* ---- URLs ---------------------------------------------------------------- */

/* Calls fn for each trimmed, non-empty entry; returns SH_EINVAL on an empty or
 * overlong entry, SH_ELIMIT past SCH_NODES_MAX. */
static sh_err nodes_split_urls(const char *urls, char out[][NODES_URL_BYTES_MAX], int *count)
{
    int n = 0;
    const char *p = urls;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *s = p;
        while (len > 0 && (*s == ' ' || *s == '\t')) {
            s++;
            len--;
        }
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t')) {
            len--;
        }
        if (len == 0 || len >= NODES_URL_BYTES_MAX) {
            return SH_EINVAL;
        }
        if (n >= SCH_NODES_MAX) {
            return SH_ELIMIT;
        }
        if (out != NULL) {
            memcpy(out[n], s, len);
            out[n][len] = '\0';
        }
        n++;
        if (end == NULL) {
            break;
        }
        p = end + 1;
    }
    *count = n;
    return SH_OK;
}

sh_err sch_nodes_count_urls(const char *urls, int *count_out)
{
    SH_ASSERT(urls != NULL && count_out != NULL);
    *count_out = 0;
    return nodes_split_urls(urls, NULL, count_out);
}

/* ---- NNG side ------------------------------------------------------------ */

/* Hands a finished context to the loop. NNG thread. */
static void nodes_complete(link_ctx *c, nng_msg *msg, int err)
{
    sch_nodes *n = c->owner;
    c->done_msg = msg;
    c->done_err = err;
    SH_ASSERT(pthread_mutex_lock(&n->mu) == 0);
    SH_ASSERT(n->done_len < n->done_cap);
    n->done[(n->done_head + n->done_len) % n->done_cap] = c;
    n->done_len++;
    int wake = !n->wake_pending;
    n->wake_pending = 1;
    SH_ASSERT(pthread_mutex_unlock(&n->mu) == 0);
    if (wake) {
        /* Cannot fail short of a bug: the counter is far from its limit. The
         * tick drains the ring as well, so even then nothing is lost. */
        uint64_t one = 1;
        while (write(n->wake_fd, &one, sizeof one) < 0 && errno == EINTR) {
        }
    }
}

/* The aio callback of a context: send finished -> start the receive with what
 * is left of the deadline; receive finished -> hand over. NNG thread. */
static void nodes_ctx_cb(void *arg)
{
    link_ctx *c = arg;
    sch_nodes *n = c->owner;
    int rv = nng_aio_result(c->aio);
    if (c->phase == PHASE_SEND) {
        if (rv != 0) {
            /* A failed send leaves the message with us. */
            nng_msg_free(nng_aio_get_msg(c->aio));
            nng_aio_set_msg(c->aio, NULL);
            nodes_complete(c, NULL, rv);
            return;
        }
        SH_ASSERT(pthread_mutex_lock(&n->mu) == 0);
        int closing = n->closing;
        SH_ASSERT(pthread_mutex_unlock(&n->mu) == 0);
        if (closing) {
            nodes_complete(c, NULL, NNG_ECLOSED);
            return;
        }
        uint64_t now = sh_clock_mono_ms();
        nng_duration left = c->deadline_ms > now ? (nng_duration)(c->deadline_ms - now) : 1;
        c->phase = PHASE_RECV;
        nng_aio_set_timeout(c->aio, left);
        nng_ctx_recv(c->ctx, c->aio);
        return;
    }
    if (rv != 0) {
        nodes_complete(c, NULL, rv);
        return;
    }
    nng_msg *msg = nng_aio_get_msg(c->aio);
    nng_aio_set_msg(c->aio, NULL);
    nodes_complete(c, msg, 0);
}

/* ---- loop side ----------------------------------------------------------- */

static sh_err nodes_err_of(int nng_err)
{
    switch (nng_err) {
    case NNG_ETIMEDOUT:
        return SH_ETIMEDOUT;
    case NNG_ECLOSED:
    case NNG_ECANCELED:
        return SH_ECLOSED;
    default:
        return SH_EIO;
    }
}

static void nodes_warn(node_link *l, const char *what, const char *detail)
{
    uint64_t now = sh_clock_mono_ms();
    if (l->last_warn_ms != 0 && now - l->last_warn_ms < NODES_WARN_PERIOD_MS) {
        return;
    }
    l->last_warn_ms = now;
    SH_WARN("nodes", "%s node=%d url=%s detail=\"%s\"", what, l->index, l->url, detail);
}

static void nodes_fail_item(sch_nodes *n, node_link *l, uint64_t tag, sh_err why)
{
    SH_ASSERT(n->outstanding > 0);
    n->outstanding--;
    n->h.failed(n->h.arg, l->index, tag, why);
}

/* Fails what is left unanswered on a context and makes it idle again. */
static void nodes_ctx_finish(sch_nodes *n, link_ctx *c, sh_err why)
{
    node_link *l = c->link;
    for (size_t i = 0; i < c->nitems; i++) {
        if (!c->answered[i]) {
            c->answered[i] = 1;
            nodes_fail_item(n, l, c->tags[i], why);
        }
    }
    c->nitems = 0;
    c->busy = 0;
    SH_ASSERT(l->nidle < l->nctx);
    l->idle[l->nidle++] = (uint32_t)(c - l->ctxs);
}

/* Matches a reply's results to the context's items, positionally first (a
 * node answers in order), else by search. */
static void nodes_ctx_reply(sch_nodes *n, link_ctx *c, nng_msg *msg)
{
    node_link *l = c->link;
    sh_wire_header hdr;
    size_t len = nng_msg_len(msg);
    sh_err rc = sh_wire_results_decode(nng_msg_body(msg), len, &hdr, n->results, c->nitems);
    sh_wire_type want = c->type == SH_WIRE_DEDUCT_REQ ? SH_WIRE_DEDUCT_REP : SH_WIRE_RELEASE_REP;
    if (rc == SH_OK && (hdr.type != want || hdr.req_id != c->req_id)) {
        rc = SH_EPROTO;
    }
    if (rc != SH_OK) {
        nodes_warn(l, "bad reply", sh_strerror(rc));
        nodes_ctx_finish(n, c, SH_EPROTO);
        return;
    }
    for (size_t i = 0; i < hdr.count; i++) {
        const sh_wire_result *res = &n->results[i];
        size_t j = c->nitems;
        if (i < c->nitems && c->tags[i] == res->tag && !c->answered[i]) {
            j = i;
        } else {
            for (j = 0; j < c->nitems; j++) {
                if (c->tags[j] == res->tag && !c->answered[j]) {
                    break;
                }
            }
        }
        if (j == c->nitems) {
            nodes_warn(l, "reply result for no item", "ignored");
            continue;
        }
        c->answered[j] = 1;
        SH_ASSERT(n->outstanding > 0);
        n->outstanding--;
        n->h.result(n->h.arg, l->index, c->type, res);
    }
    /* Items the reply left out have no outcome. */
    nodes_ctx_finish(n, c, SH_EPROTO);
}

static void nodes_process(sch_nodes *n, link_ctx *c)
{
    SH_ASSERT(c->busy);
    nng_msg *msg = c->done_msg;
    int err = c->done_err;
    c->done_msg = NULL;
    if (msg == NULL) {
        SH_ASSERT(err != 0);
        if (!n->closing) {
            nodes_warn(c->link, "request failed", nng_strerror(err));
        }
        nodes_ctx_finish(n, c, nodes_err_of(err));
        return;
    }
    nodes_ctx_reply(n, c, msg);
    nng_msg_free(msg);
}

static int nodes_outbox_pending(const sch_nodes *n)
{
    for (int i = 0; i < n->nlinks; i++) {
        if (n->links[i].ob_len > 0) {
            return 1;
        }
    }
    return 0;
}

/* Processes the contexts NNG handed over. Loop thread. */
static void nodes_drain(sch_nodes *n)
{
    size_t count = 0;
    SH_ASSERT(pthread_mutex_lock(&n->mu) == 0);
    /* Cleared before the ring is emptied: a push after this point writes the
     * eventfd again, so no completion waits for a wakeup that never comes. */
    n->wake_pending = 0;
    while (n->done_len > 0) {
        n->batch[count++] = n->done[n->done_head];
        n->done_head = (n->done_head + 1) % n->done_cap;
        n->done_len--;
    }
    SH_ASSERT(pthread_mutex_unlock(&n->mu) == 0);
    for (size_t i = 0; i < count; i++) {
        nodes_process(n, n->batch[i]);
    }
    if (count > 0) {
        n->h.drained(n->h.arg);
    }
    if (nodes_outbox_pending(n)) {
        event_active(n->flush_ev, EV_TIMEOUT, 0);
    }
}

/* Runs on the loop when an NNG thread wrote the eventfd. */
static void nodes_done_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    sch_nodes *n = arg;
    /* Read before draining (see nodes_drain); EAGAIN means a wakeup already
     * consumed, which is harmless. */
    uint64_t count = 0;
    while (read(fd, &count, sizeof count) < 0 && errno == EINTR) {
    }
    nodes_drain(n);
}

/* Fails outbox items older than the timeout: the node is not taking them. */
static void nodes_expire(sch_nodes *n, node_link *l, uint64_t now)
{
    while (l->ob_len > 0) {
        outbox_entry *e = &l->ob[l->ob_head];
        if (e->enqueued_ms + n->cfg.timeout_ms > now) {
            break;
        }
        uint64_t tag = e->item.tag;
        l->ob_head = (l->ob_head + 1) % l->ob_cap;
        l->ob_len--;
        nodes_fail_item(n, l, tag, SH_ETIMEDOUT);
    }
}

/* Sends scratch[0..k) of type on an idle context of l. */
static void nodes_send(sch_nodes *n, node_link *l, sh_wire_type type, size_t k)
{
    SH_ASSERT(l->nidle > 0 && k > 0 && k <= n->cfg.batch_items_max);
    link_ctx *c = &l->ctxs[l->idle[--l->nidle]];
    SH_ASSERT(!c->busy);
    c->busy = 1;
    c->type = type;
    c->nitems = k;
    for (size_t i = 0; i < k; i++) {
        c->tags[i] = n->scratch[i].tag;
        c->answered[i] = 0;
    }
    c->req_id = ++n->next_req_id;
    size_t size = sh_wire_items_size(n->scratch, k);
    nng_msg *msg = NULL;
    int rv = size == 0 ? NNG_EINVAL : nng_msg_alloc(&msg, size);
    if (rv != 0) {
        nodes_warn(l, "message alloc failed", nng_strerror(rv));
        nodes_ctx_finish(n, c, SH_ENOMEM);
        return;
    }
    size_t len = 0;
    sh_err rc = sh_wire_items_encode(nng_msg_body(msg), size, &len, type, c->req_id, n->scratch, k);
    if (rc != SH_OK) {
        /* The caller validated every field, so this is a bug; fail the items
         * rather than the daemon. */
        SH_ERROR("nodes", "encode failed node=%d err=%s items=%zu", l->index, sh_strerror(rc), k);
        nng_msg_free(msg);
        nodes_ctx_finish(n, c, SH_EINTERNAL);
        return;
    }
    SH_ASSERT(len == size);
    n->stats->node_messages++;
    n->stats->node_items += k;
    c->phase = PHASE_SEND;
    c->deadline_ms = sh_clock_mono_ms() + n->cfg.timeout_ms;
    c->done_msg = NULL;
    c->done_err = 0;
    nng_aio_set_msg(c->aio, msg);
    nng_aio_set_timeout(c->aio, (nng_duration)n->cfg.timeout_ms);
    nng_ctx_send(c->ctx, c->aio);
}

static void nodes_flush_link(sch_nodes *n, node_link *l)
{
    while (l->ob_len > 0 && l->nidle > 0) {
        sh_wire_type type = l->ob[l->ob_head].type;
        size_t k = 0;
        while (k < n->cfg.batch_items_max && l->ob_len > 0 && l->ob[l->ob_head].type == type) {
            n->scratch[k++] = l->ob[l->ob_head].item;
            l->ob_head = (l->ob_head + 1) % l->ob_cap;
            l->ob_len--;
        }
        nodes_send(n, l, type, k);
    }
}

static void nodes_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sch_nodes *n = arg;
    uint64_t now = sh_clock_mono_ms();
    for (int i = 0; i < n->nlinks; i++) {
        nodes_expire(n, &n->links[i], now);
        nodes_flush_link(n, &n->links[i]);
    }
}

static void nodes_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sch_nodes *n = arg;
    uint64_t now = sh_clock_mono_ms();
    for (int i = 0; i < n->nlinks; i++) {
        nodes_expire(n, &n->links[i], now);
    }
    nodes_drain(n); /* a safety net only: the eventfd wakes the loop */
}

/* ---- public -------------------------------------------------------------- */

static sh_err nodes_link_open(sch_nodes *n, node_link *l, const char *url)
{
    int rv;
    size_t url_len = strnlen(url, sizeof l->url);
    SH_ASSERT(url_len < sizeof l->url); /* nodes_split_urls checked it */
    memcpy(l->url, url, url_len + 1);
    l->nctx = n->cfg.contexts;
    l->ob_cap = n->cfg.outbox_items_max;
    l->ctxs = calloc(l->nctx, sizeof *l->ctxs);
    l->idle = calloc(l->nctx, sizeof *l->idle);
    l->ob = calloc(l->ob_cap, sizeof *l->ob);
    if (l->ctxs == NULL || l->idle == NULL || l->ob == NULL) {
        return SH_ENOMEM;
    }
    if ((rv = nng_req0_open(&l->sock)) != 0) {
        SH_ERROR("nodes", "req0 socket failed url=%s err=\"%s\"", url, nng_strerror(rv));
        return SH_EIO;
    }
    l->sock_open = 1;
    /* Options before the contexts open: a req0 context copies the socket's
     * resend time when it is created (and we set it on each one as well). */
    if ((rv = nng_socket_set_size(l->sock, NNG_OPT_RECVMAXSZ, SH_WIRE_MSG_BYTES_MAX)) != 0 ||
        (rv = nng_socket_set_ms(l->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) != 0 ||
        (rv = nng_socket_set_ms(l->sock, NNG_OPT_RECONNMINT, NODES_RECONN_MIN_MS)) != 0 ||
        (rv = nng_socket_set_ms(l->sock, NNG_OPT_RECONNMAXT, NODES_RECONN_MAX_MS)) != 0) {
        SH_ERROR("nodes", "socket option failed url=%s err=\"%s\"", url, nng_strerror(rv));
        return SH_EIO;
    }
    for (uint32_t i = 0; i < l->nctx; i++) {
        link_ctx *c = &l->ctxs[i];
        c->link = l;
        c->owner = n;
        c->tags = calloc(n->cfg.batch_items_max, sizeof *c->tags);
        c->answered = calloc(n->cfg.batch_items_max, sizeof *c->answered);
        if (c->tags == NULL || c->answered == NULL) {
            return SH_ENOMEM;
        }
        if ((rv = nng_aio_alloc(&c->aio, nodes_ctx_cb, c)) != 0) {
            SH_ERROR("nodes", "aio alloc failed url=%s err=\"%s\"", url, nng_strerror(rv));
            return SH_ENOMEM;
        }
        if ((rv = nng_ctx_open(&c->ctx, l->sock)) != 0) {
            SH_ERROR("nodes", "ctx open failed url=%s err=\"%s\"", url, nng_strerror(rv));
            return SH_EIO;
        }
        c->ctx_open = 1;
        if ((rv = nng_ctx_set_ms(c->ctx, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) != 0) {
            SH_ERROR("nodes", "ctx option failed url=%s err=\"%s\"", url, nng_strerror(rv));
            return SH_EIO;
        }
        l->idle[l->nidle++] = l->nctx - 1 - i;
    }
    /* Non-blocking: a node that is down now is dialled again in the background. */
    if ((rv = nng_dial(l->sock, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
        SH_ERROR("nodes", "dial failed url=%s err=\"%s\"", url, nng_strerror(rv));
        return SH_EINVAL;
    }
    return SH_OK;
}

/* Builds n; on failure returns the error and leaves n for sch_nodes_close. */
static sh_err nodes_build(sch_nodes **out, struct event_base *base, const sch_nodes_config *cfg,
                          const sch_nodes_handler *handler, sch_stats *stats)
{
    if (cfg->contexts < 1 || cfg->contexts > SCH_NODE_CONTEXTS_LIMIT || cfg->batch_items_max < 1 ||
        cfg->batch_items_max > SH_DEDUCT_BATCH_ITEMS_MAX || cfg->outbox_items_max < 1 ||
        cfg->timeout_ms < 1) {
        return SH_EINVAL;
    }
    char urls[SCH_NODES_MAX][NODES_URL_BYTES_MAX];
    int count = 0;
    sh_err rc = nodes_split_urls(cfg->urls, urls, &count);
    if (rc != SH_OK) {
        SH_ERROR("nodes", "bad nodes.urls value=\"%s\" err=%s", cfg->urls, sh_strerror(rc));
        return rc;
    }
    sch_nodes *n = calloc(1, sizeof *n);
    if (n == NULL) {
        return SH_ENOMEM;
    }
    n->base = base;
    n->cfg = *cfg;
    n->cfg.urls = NULL;
    n->h = *handler;
    n->stats = stats;
    n->nlinks = count;
    n->wake_fd = -1;
    *out = n;
    n->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (n->wake_fd < 0) {
        SH_ERROR("nodes", "eventfd failed err=\"%s\"", strerror(errno));
        return SH_EIO;
    }
    if (pthread_mutex_init(&n->mu, NULL) != 0) {
        return SH_ENOMEM;
    }
    n->mu_init = 1;
    n->done_cap = (size_t)count * cfg->contexts;
    n->done = calloc(n->done_cap, sizeof *n->done);
    n->batch = calloc(n->done_cap, sizeof *n->batch);
    n->scratch = calloc(cfg->batch_items_max, sizeof *n->scratch);
    n->results = calloc(cfg->batch_items_max, sizeof *n->results);
    n->links = calloc((size_t)count, sizeof *n->links);
    if (n->done == NULL || n->batch == NULL || n->scratch == NULL || n->results == NULL ||
        n->links == NULL) {
        return SH_ENOMEM;
    }
    n->done_ev = event_new(base, n->wake_fd, EV_READ | EV_PERSIST, nodes_done_cb, n);
    n->flush_ev = event_new(base, -1, 0, nodes_flush_cb, n);
    n->tick_ev = event_new(base, -1, EV_PERSIST, nodes_tick_cb, n);
    if (n->done_ev == NULL || n->flush_ev == NULL || n->tick_ev == NULL) {
        return SH_ENOMEM;
    }
    if (event_priority_set(n->done_ev, NODES_PRIO_REPLIES) != 0 ||
        event_priority_set(n->flush_ev, NODES_PRIO_FLUSH) != 0 ||
        event_priority_set(n->tick_ev, NODES_PRIO_FLUSH) != 0) {
        SH_ERROR("nodes", "event priorities failed: the base needs 2 priorities");
        return SH_EINVAL;
    }
    struct timeval tick = {0, NODES_TICK_MS * 1000};
    if (event_add(n->tick_ev, &tick) != 0 || event_add(n->done_ev, NULL) != 0) {
        return SH_EIO;
    }
    for (int i = 0; i < count; i++) {
        n->links[i].index = i;
        rc = nodes_link_open(n, &n->links[i], urls[i]);
        if (rc != SH_OK) {
            return rc;
        }
        SH_INFO("nodes", "dialling node=%d url=%s contexts=%u", i, urls[i], cfg->contexts);
    }
    return SH_OK;
}

sh_err sch_nodes_open(sch_nodes **out, struct event_base *base, const sch_nodes_config *cfg,
                      const sch_nodes_handler *handler, sch_stats *stats)
{
    SH_ASSERT(out != NULL && base != NULL && cfg != NULL && handler != NULL && stats != NULL);
    SH_ASSERT(handler->result != NULL && handler->failed != NULL && handler->drained != NULL);
    *out = NULL;
    sch_nodes *n = NULL;
    sh_err rc = nodes_build(&n, base, cfg, handler, stats);
    if (rc != SH_OK) {
        sch_nodes_close(n);
        return rc;
    }
    *out = n;
    return SH_OK;
}

int sch_nodes_count(const sch_nodes *n)
{
    SH_ASSERT(n != NULL);
    return n->nlinks;
}

sh_err sch_nodes_enqueue(sch_nodes *n, int node, sh_wire_type type, const sh_wire_item *item)
{
    SH_ASSERT(n != NULL && item != NULL);
    SH_ASSERT(node >= 0 && node < n->nlinks);
    SH_ASSERT(type == SH_WIRE_DEDUCT_REQ || type == SH_WIRE_RELEASE_REQ);
    if (n->closing) {
        return SH_ECLOSED;
    }
    node_link *l = &n->links[node];
    if (l->ob_len >= l->ob_cap) {
        return SH_EBUSY;
    }
    outbox_entry *e = &l->ob[(l->ob_head + l->ob_len) % l->ob_cap];
    e->enqueued_ms = sh_clock_mono_ms();
    e->type = type;
    e->item = *item;
    l->ob_len++;
    n->outstanding++;
    event_active(n->flush_ev, EV_TIMEOUT, 0);
    return SH_OK;
}

size_t sch_nodes_outstanding(const sch_nodes *n)
{
    SH_ASSERT(n != NULL);
    return n->outstanding;
}

void sch_nodes_close(sch_nodes *n)
{
    if (n == NULL) {
        return;
    }
    if (n->mu_init) {
        SH_ASSERT(pthread_mutex_lock(&n->mu) == 0);
        n->closing = 1;
        SH_ASSERT(pthread_mutex_unlock(&n->mu) == 0);
    }
    n->closing = 1; /* also when the mutex never got made */
    /* Stop every aio first: afterwards no NNG callback runs, and each busy
     * context either sits in the completion ring or was cancelled into it. */
    for (int i = 0; i < n->nlinks && n->links != NULL; i++) {
        node_link *l = &n->links[i];
        for (uint32_t j = 0; l->ctxs != NULL && j < l->nctx; j++) {
            if (l->ctxs[j].aio != NULL) {
                nng_aio_stop(l->ctxs[j].aio);
            }
        }
    }
    for (int i = 0; i < n->nlinks && n->links != NULL; i++) {
        node_link *l = &n->links[i];
        for (uint32_t j = 0; l->ctxs != NULL && j < l->nctx; j++) {
            link_ctx *c = &l->ctxs[j];
            if (c->busy) {
                if (c->done_msg != NULL) {
                    nng_msg_free(c->done_msg);
                    c->done_msg = NULL;
                }
                nodes_ctx_finish(n, c, SH_ECLOSED);
            }
        }
        while (l->ob != NULL && l->ob_len > 0) {
            uint64_t tag = l->ob[l->ob_head].item.tag;
            l->ob_head = (l->ob_head + 1) % l->ob_cap;
            l->ob_len--;
            nodes_fail_item(n, l, tag, SH_ECLOSED);
        }
        for (uint32_t j = 0; l->ctxs != NULL && j < l->nctx; j++) {
            link_ctx *c = &l->ctxs[j];
            if (c->ctx_open) {
                nng_ctx_close(c->ctx);
            }
            if (c->aio != NULL) {
                nng_aio_free(c->aio);
            }
            free(c->tags);
            free(c->answered);
        }
        if (l->sock_open) {
            nng_close(l->sock);
        }
        free(l->ctxs);
        free(l->idle);
        free(l->ob);
    }
    if (n->done_ev != NULL) {
        event_free(n->done_ev);
    }
    if (n->flush_ev != NULL) {
        event_free(n->flush_ev);
    }
    if (n->tick_ev != NULL) {
        event_free(n->tick_ev);
    }
    if (n->mu_init) {
        pthread_mutex_destroy(&n->mu);
    }
    if (n->wake_fd >= 0) {
        close(n->wake_fd);
    }
    free(n->links);
    free(n->done);
    free(n->batch);
    free(n->scratch);
    free(n->results);
    free(n);
}
