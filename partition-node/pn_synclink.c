/* pn_synclink.c -- NNG req0 slots to the sync workers (see pn_synclink.h).
 *
 * Each slot owns a context and an aio whose callback is a two-phase machine:
 * after the send it starts the receive with what is left of the request's
 * deadline; after the receive (or any failure) it queues one completion and
 * signals the owning thread. The callback never blocks and never touches
 * anything but its slot and the completion ring.
 *
 * NNG quirks handled here (LIBRARY-NOTES.md 3): RECVMAXSZ is set explicitly
 * (an oversized reply would otherwise be dropped in silence and look like a
 * timeout); resend is off; a failed send leaves the message with us, so we
 * free it; a req send with no connected worker waits in NNG, so every
 * operation carries the aio timeout, and the deadline covers send + reply;
 * shutdown goes aio_stop -> ctx_close -> aio_free -> close. */
#include "pn_synclink.h"

#include "sh_clock.h"
#include "sh_limits.h"
#include "sh_log.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PL_MOD "synclink"

typedef enum pl_phase {
    PL_IDLE = 0, /* owned by the owning thread */
    PL_SEND,     /* NNG's: the send is in progress */
    PL_RECV,     /* NNG's: waiting for the reply */
    PL_DONE,     /* the completion is queued, not yet taken */
} pl_phase;

typedef struct pl_slot {
    pn_synclink *link;
    int index;
    nng_ctx ctx;
    nng_aio *aio;
    bool ctx_open;
    pl_phase phase;       /* written by whoever owns the slot in that phase */
    uint64_t deadline_ms; /* monotonic; set before the send */
} pl_slot;

struct pn_synclink {
    nng_socket sock;
    bool sock_open;
    int nurls;
    int nslots;
    uint32_t timeout_ms;
    pl_slot *slots;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool sync_ready;
    /* Under mu: the completion ring (one place per slot) and the wake flag. */
    pn_synclink_done *ring;
    int ring_head;
    int ring_len;
    bool woken;
};

/* ==== NNG threads ============================================================ */

static void pl_complete(pl_slot *s, int rv, nng_msg *msg)
{
    pn_synclink *l = s->link;
    SH_ASSERT(pthread_mutex_lock(&l->mu) == 0);
    SH_ASSERT(l->ring_len < l->nslots); /* one completion per slot at most */
    s->phase = PL_DONE;
    pn_synclink_done *d = &l->ring[(l->ring_head + l->ring_len) % l->nslots];
    d->slot = s->index;
    d->rv = rv;
    d->msg = msg;
    l->ring_len++;
    SH_ASSERT(pthread_cond_signal(&l->cv) == 0);
    SH_ASSERT(pthread_mutex_unlock(&l->mu) == 0);
}

static void pl_cb(void *arg)
{
    pl_slot *s = arg;
    int rv = nng_aio_result(s->aio);
    if (s->phase == PL_SEND) {
        if (rv != 0) {
            /* A failed send leaves the message with us. */
            nng_msg_free(nng_aio_get_msg(s->aio));
            nng_aio_set_msg(s->aio, NULL);
            pl_complete(s, rv, NULL);
            return;
        }
        uint64_t now = sh_clock_mono_ms();
        nng_duration left = s->deadline_ms > now ? (nng_duration)(s->deadline_ms - now) : 1;
        s->phase = PL_RECV;
        nng_aio_set_timeout(s->aio, left);
        nng_ctx_recv(s->ctx, s->aio);
        return;
    }
    SH_ASSERT(s->phase == PL_RECV);
    nng_msg *msg = NULL;
    if (rv == 0) {
        msg = nng_aio_get_msg(s->aio);
        nng_aio_set_msg(s->aio, NULL);
    }
    pl_complete(s, rv, msg);
}

/* ==== owning thread ========================================================== */

sh_err pn_synclink_send(pn_synclink *l, int slot, const uint8_t *bytes, size_t len)
{
    SH_ASSERT(l != NULL && slot >= 0 && slot < l->nslots && (bytes != NULL || len == 0));
    SH_ASSERT(len <= SH_WIRE_MSG_BYTES_MAX);
    pl_slot *s = &l->slots[slot];
    SH_ASSERT(s->phase == PL_IDLE);
    nng_msg *msg = NULL;
    if (nng_msg_alloc(&msg, len) != 0) {
        return SH_ENOMEM;
    }
    if (len > 0) {
        memcpy(nng_msg_body(msg), bytes, len);
    }
    s->deadline_ms = sh_clock_mono_ms() + l->timeout_ms;
    s->phase = PL_SEND;
    nng_aio_set_msg(s->aio, msg);
    nng_aio_set_timeout(s->aio, (nng_duration)l->timeout_ms);
    nng_ctx_send(s->ctx, s->aio);
    return SH_OK;
}

static struct timespec pl_abs_mono(uint64_t at_ms)
{
    struct timespec ts = {(time_t)(at_ms / 1000), (long)(at_ms % 1000) * 1000000L};
    return ts;
}

void pn_synclink_wait(pn_synclink *l, uint64_t until_ms)
{
    SH_ASSERT(l != NULL);
    struct timespec until = pl_abs_mono(until_ms);
    SH_ASSERT(pthread_mutex_lock(&l->mu) == 0);
    while (l->ring_len == 0 && !l->woken) {
        int rc = pthread_cond_timedwait(&l->cv, &l->mu, &until);
        if (rc == ETIMEDOUT) {
            break;
        }
        SH_ASSERT(rc == 0);
    }
    l->woken = false;
    SH_ASSERT(pthread_mutex_unlock(&l->mu) == 0);
}

void pn_synclink_wake(pn_synclink *l)
{
    SH_ASSERT(l != NULL);
    SH_ASSERT(pthread_mutex_lock(&l->mu) == 0);
    l->woken = true;
    SH_ASSERT(pthread_cond_signal(&l->cv) == 0);
    SH_ASSERT(pthread_mutex_unlock(&l->mu) == 0);
}

bool pn_synclink_take(pn_synclink *l, pn_synclink_done *out)
{
    SH_ASSERT(l != NULL && out != NULL);
    SH_ASSERT(pthread_mutex_lock(&l->mu) == 0);
    bool got = l->ring_len > 0;
    if (got) {
        *out = l->ring[l->ring_head];
        l->ring_head = (l->ring_head + 1) % l->nslots;
        l->ring_len--;
        pl_slot *s = &l->slots[out->slot];
        SH_ASSERT(s->phase == PL_DONE);
        s->phase = PL_IDLE;
    }
    SH_ASSERT(pthread_mutex_unlock(&l->mu) == 0);
    return got;
}

const uint8_t *pn_synclink_reply_data(void *msg, size_t *len)
{
    SH_ASSERT(msg != NULL && len != NULL);
    *len = nng_msg_len(msg);
    return nng_msg_body(msg);
}

const char *pn_synclink_strerror(int rv)
{
    return nng_strerror(rv);
}

void pn_synclink_reply_free(void *msg)
{
    if (msg != NULL) {
        nng_msg_free(msg);
    }
}

int pn_synclink_url_count(const pn_synclink *l)
{
    SH_ASSERT(l != NULL);
    return l->nurls;
}

int pn_synclink_slots(const pn_synclink *l)
{
    SH_ASSERT(l != NULL);
    return l->nslots;
}

/* ==== lifecycle ============================================================== */

void pn_synclink_close(pn_synclink *l)
{
    if (l == NULL) {
        return;
    }
    /* Stop every aio first: afterwards no callback runs and none starts. */
    for (int i = 0; l->slots != NULL && i < l->nslots; i++) {
        if (l->slots[i].aio != NULL) {
            nng_aio_stop(l->slots[i].aio);
        }
    }
    if (l->sync_ready) {
        pn_synclink_done d;
        while (pn_synclink_take(l, &d)) {
            pn_synclink_reply_free(d.msg);
        }
    }
    for (int i = 0; l->slots != NULL && i < l->nslots; i++) {
        pl_slot *s = &l->slots[i];
        if (s->ctx_open) {
            nng_ctx_close(s->ctx);
        }
        if (s->aio != NULL) {
            nng_aio_free(s->aio);
        }
    }
    if (l->sock_open) {
        nng_close(l->sock);
    }
    if (l->sync_ready) {
        pthread_cond_destroy(&l->cv);
        pthread_mutex_destroy(&l->mu);
    }
    free(l->slots);
    free(l->ring);
    free(l);
}

static sh_err pl_sync_init(pn_synclink *l)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0) {
        return SH_ENOMEM;
    }
    /* Monotonic: a wall-clock step must not stall or fire the shipper's timers. */
    int rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0) {
        rc = pthread_cond_init(&l->cv, &attr);
    }
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        return SH_ENOMEM;
    }
    if (pthread_mutex_init(&l->mu, NULL) != 0) {
        pthread_cond_destroy(&l->cv);
        return SH_ENOMEM;
    }
    l->sync_ready = true;
    return SH_OK;
}

/* Splits urls at commas into out[0..*n), trimming spaces. SH_EINVAL for an
 * empty item, an item too long, or more than PN_SYNCLINK_URLS_MAX items. */
static sh_err pl_split(const char *urls, char out[][PN_SYNCLINK_URL_BYTES_MAX], int *n)
{
    *n = 0;
    const char *p = urls;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma != NULL ? comma : p + strlen(p);
        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }
        const char *e = end;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t')) {
            e--;
        }
        size_t len = (size_t)(e - p);
        if (len == 0 || len >= PN_SYNCLINK_URL_BYTES_MAX || *n == PN_SYNCLINK_URLS_MAX) {
            return SH_EINVAL;
        }
        memcpy(out[*n], p, len);
        out[*n][len] = '\0';
        (*n)++;
        if (comma == NULL) {
            return SH_OK;
        }
        p = comma + 1;
    }
}

static sh_err pl_err(int rv)
{
    switch (rv) {
    case NNG_ENOMEM:
        return SH_ENOMEM;
    case NNG_EINVAL:
    case NNG_EADDRINVAL:
    case NNG_ENOTSUP:
        return SH_EINVAL;
    default:
        return SH_EIO;
    }
}

sh_err pn_synclink_open(pn_synclink **out, const char *urls, int slots, uint32_t timeout_ms)
{
    SH_ASSERT(out != NULL && urls != NULL);
    *out = NULL;
    if (slots < 1 || slots > PN_SYNCLINK_SLOTS_MAX || timeout_ms < 1) {
        return SH_EINVAL;
    }
    char(*list)[PN_SYNCLINK_URL_BYTES_MAX] = calloc(PN_SYNCLINK_URLS_MAX, sizeof *list);
    if (list == NULL) {
        return SH_ENOMEM;
    }
    int nurls = 0;
    if (pl_split(urls, list, &nurls) != SH_OK) {
        SH_ERROR(PL_MOD, "bad ship.sync_urls=\"%s\": 1..%d comma-separated URLs expected", urls,
                 PN_SYNCLINK_URLS_MAX);
        free(list);
        return SH_EINVAL;
    }
    pn_synclink *l = calloc(1, sizeof *l);
    sh_err rc = SH_ENOMEM;
    if (l == NULL) {
        free(list);
        return SH_ENOMEM;
    }
    l->nslots = slots;
    l->timeout_ms = timeout_ms;
    l->slots = calloc((size_t)slots, sizeof *l->slots);
    l->ring = calloc((size_t)slots, sizeof *l->ring);
    if (l->slots == NULL || l->ring == NULL || (rc = pl_sync_init(l)) != SH_OK) {
        free(list);
        pn_synclink_close(l);
        return rc;
    }
    int rv = nng_req0_open(&l->sock);
    if (rv != 0) {
        SH_ERROR(PL_MOD, "cannot open a req0 socket: %s", nng_strerror(rv));
        free(list);
        pn_synclink_close(l);
        return pl_err(rv);
    }
    l->sock_open = true;
    if ((rv = nng_socket_set_size(l->sock, NNG_OPT_RECVMAXSZ, SH_WIRE_MSG_BYTES_MAX)) != 0 ||
        (rv = nng_socket_set_ms(l->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) != 0 ||
        (rv = nng_socket_set_ms(l->sock, NNG_OPT_RECVTIMEO, (nng_duration)timeout_ms)) != 0 ||
        (rv = nng_socket_set_ms(l->sock, NNG_OPT_SENDTIMEO, (nng_duration)timeout_ms)) != 0 ||
        (rv = nng_socket_set_ms(l->sock, NNG_OPT_RECONNMINT, PN_SYNCLINK_RECONN_MIN_MS)) != 0 ||
        (rv = nng_socket_set_ms(l->sock, NNG_OPT_RECONNMAXT, PN_SYNCLINK_RECONN_MAX_MS)) != 0) {
        SH_ERROR(PL_MOD, "cannot set socket options: %s", nng_strerror(rv));
        free(list);
        pn_synclink_close(l);
        return pl_err(rv);
    }
    for (int i = 0; i < slots; i++) {
        pl_slot *s = &l->slots[i];
        s->link = l;
        s->index = i;
        if ((rv = nng_aio_alloc(&s->aio, pl_cb, s)) != 0 ||
            (rv = nng_ctx_open(&s->ctx, l->sock)) != 0) {
            SH_ERROR(PL_MOD, "cannot open context %d: %s", i, nng_strerror(rv));
            free(list);
            pn_synclink_close(l);
            return pl_err(rv);
        }
        s->ctx_open = true;
    }
    for (int i = 0; i < nurls; i++) {
        rv = nng_dial(l->sock, list[i], NULL, NNG_FLAG_NONBLOCK);
        if (rv != 0) {
            SH_ERROR(PL_MOD, "cannot dial sync worker url=%s: %s", list[i], nng_strerror(rv));
            free(list);
            pn_synclink_close(l);
            return pl_err(rv);
        }
    }
    l->nurls = nurls;
    free(list);
    *out = l;
    return SH_OK;
}
