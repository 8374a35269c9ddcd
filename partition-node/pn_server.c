/* pn_server.c -- NNG rep0 contexts for the partition node (see pn_server.h).
 *
 * Each context owns one aio whose callback is a two-state machine: after a
 * receive it hands the message on and does nothing else; after a send it
 * receives again. NNG quirks handled here (LIBRARY-NOTES.md 3): RECVMAXSZ is
 * set explicitly (the default is unlimited; an oversized message is silently
 * dropped by NNG, so the limit must equal what the codec accepts); a failed
 * send leaves the message with us, so we free it; shutdown goes aio_stop ->
 * ctx_close -> aio_free -> close. After nng_aio_stop an aio refuses new
 * operations with NNG_ECANCELED, so a late callback cannot re-arm a stopped
 * context. */
#include "pn_server.h"

#include "sh_limits.h"
#include "sh_log.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define PS_MOD          "server"
#define PS_CONTEXTS_MAX 1024

typedef enum ps_state {
    PS_IDLE = 0, /* not armed (before start, after quiesce) */
    PS_RECV,     /* a receive is pending */
    PS_BUSY,     /* a request is held by its owner */
    PS_SEND,     /* a reply is being sent */
} ps_state;

struct pn_request {
    pn_server *srv;
    nng_ctx ctx;
    nng_aio *aio;
    nng_msg *msg; /* the request, then its reply, while PS_BUSY */
    ps_state state;
    bool ctx_open;
};

struct pn_server {
    nng_socket sock;
    bool sock_open;
    int contexts;
    pn_request *reqs;
    pn_server_submit_fn submit;
    void *arg;
    atomic_bool closing;
    atomic_uint_fast64_t received;
    atomic_uint_fast64_t sent;
    atomic_uint_fast64_t send_errors;
    atomic_uint_fast64_t recv_errors;
    atomic_uint_fast64_t dropped;
};

static void ps_recv(pn_request *q)
{
    if (atomic_load(&q->srv->closing)) {
        q->state = PS_IDLE;
        return;
    }
    q->state = PS_RECV;
    nng_ctx_recv(q->ctx, q->aio);
}

static void ps_cb(void *arg)
{
    pn_request *q = arg;
    pn_server *s = q->srv;
    int rv = nng_aio_result(q->aio);
    if (q->state == PS_SEND) {
        if (rv != 0) {
            /* A failed send leaves the message with us. */
            nng_msg_free(nng_aio_get_msg(q->aio));
            nng_aio_set_msg(q->aio, NULL);
            atomic_fetch_add(&s->send_errors, 1);
            if (!atomic_load(&s->closing)) {
                SH_DEBUG(PS_MOD, "send failed err=%s", nng_strerror(rv));
            }
        } else {
            atomic_fetch_add(&s->sent, 1);
        }
        ps_recv(q);
        return;
    }
    SH_ASSERT(q->state == PS_RECV);
    if (rv != 0) {
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED || atomic_load(&s->closing)) {
            q->state = PS_IDLE;
            return;
        }
        atomic_fetch_add(&s->recv_errors, 1);
        SH_WARN(PS_MOD, "receive failed err=%s", nng_strerror(rv));
        ps_recv(q);
        return;
    }
    atomic_fetch_add(&s->received, 1);
    q->msg = nng_aio_get_msg(q->aio);
    nng_aio_set_msg(q->aio, NULL);
    SH_ASSERT(q->msg != NULL);
    q->state = PS_BUSY;
    if (!s->submit(s->arg, q)) {
        pn_request_drop(q);
    }
}

const uint8_t *pn_request_data(const pn_request *req, size_t *len)
{
    SH_ASSERT(req != NULL && len != NULL && req->state == PS_BUSY && req->msg != NULL);
    *len = nng_msg_len(req->msg);
    return nng_msg_body(req->msg);
}

uint8_t *pn_request_reply_buf(pn_request *req, size_t len)
{
    SH_ASSERT(req != NULL && req->state == PS_BUSY && req->msg != NULL);
    /* The rep0 context keeps the routing backtrace itself, so the request's
     * message can carry the reply: one allocation saved per request. */
    nng_msg_clear(req->msg);
    if (nng_msg_realloc(req->msg, len) != 0) {
        return NULL;
    }
    SH_ASSERT(nng_msg_len(req->msg) == len);
    return nng_msg_body(req->msg);
}

void pn_request_send(pn_request *req)
{
    SH_ASSERT(req != NULL && req->state == PS_BUSY && req->msg != NULL);
    req->state = PS_SEND;
    nng_aio_set_msg(req->aio, req->msg);
    req->msg = NULL;
    nng_ctx_send(req->ctx, req->aio);
}

void pn_request_drop(pn_request *req)
{
    SH_ASSERT(req != NULL && req->state == PS_BUSY);
    nng_msg_free(req->msg);
    req->msg = NULL;
    atomic_fetch_add(&req->srv->dropped, 1);
    ps_recv(req);
}

static sh_err ps_rc(int rv)
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

sh_err pn_server_open(pn_server **out, const char *url, int contexts, pn_server_submit_fn submit,
                      void *arg)
{
    SH_ASSERT(out != NULL && url != NULL && submit != NULL);
    *out = NULL;
    if (contexts < 1 || contexts > PS_CONTEXTS_MAX) {
        return SH_EINVAL;
    }
    pn_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return SH_ENOMEM;
    }
    s->contexts = contexts;
    s->submit = submit;
    s->arg = arg;
    atomic_init(&s->closing, false);
    s->reqs = calloc((size_t)contexts, sizeof *s->reqs);
    if (s->reqs == NULL) {
        free(s);
        return SH_ENOMEM;
    }
    int rv = nng_rep0_open(&s->sock);
    if (rv != 0) {
        SH_ERROR(PS_MOD, "rep0 socket: %s", nng_strerror(rv));
        pn_server_close(s);
        return ps_rc(rv);
    }
    s->sock_open = true;
    /* Explicit: NNG's default is unlimited, and anything above what the codec
     * accepts is garbage we need not buffer. */
    rv = nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, SH_WIRE_MSG_BYTES_MAX);
    if (rv != 0) {
        SH_ERROR(PS_MOD, "set %s: %s", NNG_OPT_RECVMAXSZ, nng_strerror(rv));
        pn_server_close(s);
        return ps_rc(rv);
    }
    for (int i = 0; i < contexts; i++) {
        pn_request *q = &s->reqs[i];
        q->srv = s;
        q->state = PS_IDLE;
        rv = nng_aio_alloc(&q->aio, ps_cb, q);
        if (rv == 0) {
            rv = nng_ctx_open(&q->ctx, s->sock);
            q->ctx_open = rv == 0;
        }
        if (rv != 0) {
            SH_ERROR(PS_MOD, "context %d: %s", i, nng_strerror(rv));
            pn_server_close(s);
            return ps_rc(rv);
        }
    }
    rv = nng_listen(s->sock, url, NULL, 0);
    if (rv != 0) {
        SH_ERROR(PS_MOD, "listen url=%s: %s", url, nng_strerror(rv));
        pn_server_close(s);
        return ps_rc(rv);
    }
    for (int i = 0; i < contexts; i++) {
        ps_recv(&s->reqs[i]);
    }
    SH_INFO(PS_MOD, "listening url=%s contexts=%d recv_max_bytes=%u", url, contexts,
            (unsigned)SH_WIRE_MSG_BYTES_MAX);
    *out = s;
    return SH_OK;
}

void pn_server_quiesce(pn_server *s)
{
    if (s != NULL) {
        atomic_store(&s->closing, true);
    }
}

void pn_server_close(pn_server *s)
{
    if (s == NULL) {
        return;
    }
    pn_server_quiesce(s);
    for (int i = 0; i < s->contexts; i++) {
        if (s->reqs[i].aio != NULL) {
            nng_aio_stop(s->reqs[i].aio);
        }
    }
    for (int i = 0; i < s->contexts; i++) {
        pn_request *q = &s->reqs[i];
        SH_ASSERT(q->state != PS_BUSY); /* the owner ended every request first */
        if (q->ctx_open) {
            nng_ctx_close(q->ctx);
        }
        if (q->aio != NULL) {
            nng_aio_free(q->aio);
        }
    }
    if (s->sock_open) {
        nng_close(s->sock);
    }
    free(s->reqs);
    free(s);
}

void pn_server_stats_get(const pn_server *s, pn_server_stats *out)
{
    SH_ASSERT(s != NULL && out != NULL);
    pn_server *m = (pn_server *)s; /* atomics are read-only here; C11 loads take non-const */
    out->received = atomic_load(&m->received);
    out->sent = atomic_load(&m->sent);
    out->send_errors = atomic_load(&m->send_errors);
    out->recv_errors = atomic_load(&m->recv_errors);
    out->dropped = atomic_load(&m->dropped);
}
