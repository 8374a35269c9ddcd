/* sch_sync.c -- NNG req0 sockets to the sync workers, synchronous calls (see sch_sync.h).
 *
 * Why synchronous: catalog and sync-state requests come from operators (sku
 * load, restock, audit), a handful per sale; an asynchronous state machine
 * through the admin socket would cost more code than the pause it saves.
 *
 * Why one socket per worker rather than one socket dialling every URL: a req0
 * socket with several pipes picks one itself, and a request that times out on
 * a dead pipe would just wait again; with one socket per worker we know which
 * one failed and go to the next. The pipe notifications (NNG threads) keep an
 * atomic count of live connections per worker, so workers that are connected
 * are tried before those that are not.
 *
 * Every reply is checked like any input from the network: its header, its
 * type (a worker too old to know a type answers with an error BATCH_ACK,
 * whose message we pass on), the req_id it echoes, and the codec's bounds. */
#include "sch_sync.h"

#include "sh_log.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYNC_URL_BYTES_MAX 256
#define SYNC_RECONN_MIN_MS 100  /* NNG redial delay after a link drops, ms */
#define SYNC_RECONN_MAX_MS 1000 /* with backoff up to this, ms */
#define SYNC_STALE_MAX     16   /* replies to older requests skipped per call */
/* A worker with no live connection gets at most this long: it is down, or was
 * restarted and is about to be redialled (within SYNC_RECONN_MAX_MS). */
#define SYNC_DOWN_WAIT_MS   1000
#define SYNC_REQ_BYTES_MAX  1024 /* our requests: one catalog row at most */
#define SYNC_WHY_LINE_BYTES 160

_Static_assert(SYNC_REQ_BYTES_MAX >= SH_WIRE_HEADER_BYTES + 64 + SH_SKU_ID_CHARS_MAX +
                                         SH_SKU_NAME_CHARS_MAX + SH_RESTOCK_ID_CHARS_MAX,
               "a catalog request with its longest strings fits (fixed fields < 64 bytes)");

typedef struct sync_link {
    char url[SYNC_URL_BYTES_MAX];
    nng_socket sock;
    int sock_open;
    atomic_int pipes; /* live connections; written by NNG's pipe callbacks */
} sync_link;

struct sch_sync {
    sync_link *links;
    int nlinks;
    int preferred; /* the worker that answered last */
    uint32_t timeout_ms;
    uint64_t next_req_id;
};

/* What a caller's decoder makes of a reply. */
typedef struct sync_answer {
    sh_err decoded; /* SH_OK: the reply is the expected type and well-formed */
    sh_err status;  /* the reply's status when decoded */
    char message[SH_MESSAGE_CHARS_MAX + 1];
} sync_answer;

typedef void (*sync_decode_fn)(const uint8_t *buf, size_t len, void *arg, sync_answer *ans);

/* ---- URLs ---------------------------------------------------------------- */

static sh_err sync_split_urls(const char *urls, char out[][SYNC_URL_BYTES_MAX], int *count)
{
    int n = 0;
    const char *p = urls;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *u = p;
        while (len > 0 && (*u == ' ' || *u == '\t')) {
            u++;
            len--;
        }
        while (len > 0 && (u[len - 1] == ' ' || u[len - 1] == '\t')) {
            len--;
        }
        if (len == 0 || len >= SYNC_URL_BYTES_MAX) {
            return SH_EINVAL;
        }
        if (n >= SCH_SYNC_WORKERS_MAX) {
            return SH_ELIMIT;
        }
        if (out != NULL) {
            memcpy(out[n], u, len);
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

sh_err sch_sync_count_urls(const char *urls, int *count_out)
{
    SH_ASSERT(urls != NULL && count_out != NULL);
    *count_out = 0;
    return sync_split_urls(urls, NULL, count_out);
}

/* ---- open / close ---------------------------------------------------------- */

/* NNG thread: a connection to the worker came or went. */
static void sync_pipe_cb(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
    (void)pipe;
    sync_link *l = arg;
    if (ev == NNG_PIPE_EV_ADD_POST) {
        atomic_fetch_add(&l->pipes, 1);
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        int n = atomic_load(&l->pipes);
        while (n > 0 && !atomic_compare_exchange_weak(&l->pipes, &n, n - 1)) {
        }
    }
}

static sh_err sync_link_open(sch_sync *s, sync_link *l, const char *url)
{
    int rv;
    size_t n = strnlen(url, sizeof l->url);
    SH_ASSERT(n < sizeof l->url); /* sync_split_urls checked it */
    memcpy(l->url, url, n + 1);
    atomic_init(&l->pipes, 0);
    if ((rv = nng_req0_open(&l->sock)) != 0) {
        SH_ERROR("sync", "req0 socket failed url=%s err=\"%s\"", url, nng_strerror(rv));
        return SH_EIO;
    }
    l->sock_open = 1;
    if ((rv = nng_socket_set_size(l->sock, NNG_OPT_RECVMAXSZ, SH_WIRE_MSG_BYTES_MAX)) != 0 ||
        (rv = nng_socket_set_ms(l->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) != 0 ||
        (rv = nng_socket_set_ms(l->sock, NNG_OPT_SENDTIMEO, (nng_duration)s->timeout_ms)) != 0 ||
        (rv = nng_socket_set_ms(l->sock, NNG_OPT_RECVTIMEO, (nng_duration)s->timeout_ms)) != 0 ||
        (rv = nng_socket_set_ms(l->sock, NNG_OPT_RECONNMINT, SYNC_RECONN_MIN_MS)) != 0 ||
        (rv = nng_socket_set_ms(l->sock, NNG_OPT_RECONNMAXT, SYNC_RECONN_MAX_MS)) != 0 ||
        (rv = nng_pipe_notify(l->sock, NNG_PIPE_EV_ADD_POST, sync_pipe_cb, l)) != 0 ||
        (rv = nng_pipe_notify(l->sock, NNG_PIPE_EV_REM_POST, sync_pipe_cb, l)) != 0) {
        SH_ERROR("sync", "socket option failed url=%s err=\"%s\"", url, nng_strerror(rv));
        return SH_EIO;
    }
    /* Non-blocking: a worker that is down now is dialled again in the background. */
    if ((rv = nng_dial(l->sock, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
        SH_ERROR("sync", "dial failed url=%s err=\"%s\"", url, nng_strerror(rv));
        return SH_EINVAL;
    }
    return SH_OK;
}

sh_err sch_sync_open(sch_sync **out, const sch_sync_config *cfg)
{
    SH_ASSERT(out != NULL && cfg != NULL && cfg->urls != NULL);
    *out = NULL;
    if (cfg->timeout_ms < 1) {
        return SH_EINVAL;
    }
    char urls[SCH_SYNC_WORKERS_MAX][SYNC_URL_BYTES_MAX];
    int count = 0;
    sh_err rc = sync_split_urls(cfg->urls, urls, &count);
    if (rc != SH_OK) {
        SH_ERROR("sync", "bad sync.urls value=\"%s\" err=%s", cfg->urls, sh_strerror(rc));
        return rc;
    }
    sch_sync *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return SH_ENOMEM;
    }
    s->links = calloc((size_t)count, sizeof *s->links);
    if (s->links == NULL) {
        free(s);
        return SH_ENOMEM;
    }
    s->nlinks = count;
    s->timeout_ms = cfg->timeout_ms;
    s->next_req_id = 1;
    for (int i = 0; i < count; i++) {
        rc = sync_link_open(s, &s->links[i], urls[i]);
        if (rc != SH_OK) {
            sch_sync_close(s);
            return rc;
        }
    }
    SH_INFO("sync", "sync worker links open workers=%d timeout_ms=%u", count, cfg->timeout_ms);
    *out = s;
    return SH_OK;
}

void sch_sync_close(sch_sync *s)
{
    if (s == NULL) {
        return;
    }
    for (int i = 0; i < s->nlinks; i++) {
        if (s->links[i].sock_open) {
            nng_close(s->links[i].sock);
        }
    }
    free(s->links);
    free(s);
}

int sch_sync_count(const sch_sync *s)
{
    SH_ASSERT(s != NULL);
    return s->nlinks;
}

int sch_sync_connected(const sch_sync *s)
{
    SH_ASSERT(s != NULL);
    int n = 0;
    for (int i = 0; i < s->nlinks; i++) {
        n += atomic_load(&s->links[i].pipes) > 0;
    }
    return n;
}

/* ---- one call ----------------------------------------------------------------- */

static void sync_why(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void sync_why(char *why, size_t whylen, const char *fmt, ...)
{
    size_t used = strnlen(why, whylen);
    if (used + 1 >= whylen) {
        return;
    }
    char line[SYNC_WHY_LINE_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    snprintf(why + used, whylen - used, "%s%s", used > 0 ? "; " : "", line);
}

/* Sends req[0..len) on l and receives the reply to it within wait_ms. SH_OK
 * with *reply (the caller frees it), or SH_ETIMEDOUT / SH_EIO with nng's
 * reason in *nerr. */
static sh_err sync_exchange(sync_link *l, const uint8_t *req, size_t len, uint64_t req_id,
                            uint32_t wait_ms, nng_msg **reply, int *nerr)
{
    *reply = NULL;
    *nerr = 0;
    /* Both: req0 holds a send until the socket has a connection to send on. */
    int rv = nng_socket_set_ms(l->sock, NNG_OPT_SENDTIMEO, (nng_duration)wait_ms);
    if (rv == 0) {
        rv = nng_socket_set_ms(l->sock, NNG_OPT_RECVTIMEO, (nng_duration)wait_ms);
    }
    if (rv != 0) {
        *nerr = rv;
        return SH_EIO;
    }
    nng_msg *m = NULL;
    rv = nng_msg_alloc(&m, len);
    if (rv != 0) {
        *nerr = rv;
        return SH_ENOMEM;
    }
    memcpy(nng_msg_body(m), req, len);
    if ((rv = nng_sendmsg(l->sock, m, 0)) != 0) {
        nng_msg_free(m); /* a failed send leaves the message with us */
        *nerr = rv;
        return rv == NNG_ETIMEDOUT ? SH_ETIMEDOUT : SH_EIO;
    }
    /* req0 drops replies to requests it abandoned; the req_id check is the
     * codec-level second opinion, bounded all the same. */
    for (int stale = 0; stale <= SYNC_STALE_MAX; stale++) {
        nng_msg *r = NULL;
        if ((rv = nng_recvmsg(l->sock, &r, 0)) != 0) {
            *nerr = rv;
            return rv == NNG_ETIMEDOUT ? SH_ETIMEDOUT : SH_EIO;
        }
        sh_wire_header hdr;
        size_t rlen = nng_msg_len(r);
        if (sh_wire_header_decode(rlen > 0 ? nng_msg_body(r) : NULL, rlen, &hdr) == SH_OK &&
            hdr.req_id != req_id) {
            nng_msg_free(r);
            continue;
        }
        *reply = r;
        return SH_OK;
    }
    *nerr = NNG_EPROTO;
    return SH_EPROTO;
}

/* The order workers are tried in: the one that answered last, then the others
 * with a live connection, then the rest. */
static int sync_order(const sch_sync *s, int *order)
{
    int n = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < s->nlinks; k++) {
            int i = (s->preferred + k) % s->nlinks;
            int live = atomic_load(&s->links[i].pipes) > 0;
            if ((pass == 0) == (live || k == 0)) {
                order[n++] = i;
            }
        }
    }
    SH_ASSERT(n == s->nlinks);
    return n;
}

/* Sends the encoded request to the workers in turn until one gives a usable
 * answer (decoded, and not "cannot reach MySQL"). */
static sh_err sync_call(sch_sync *s, const uint8_t *req, size_t len, uint64_t req_id,
                        const char *what, sync_decode_fn decode, void *arg, char *why,
                        size_t whylen)
{
    int order[SCH_SYNC_WORKERS_MAX];
    int n = sync_order(s, order);
    sh_err last = SH_EIO;
    why[0] = '\0';
    for (int k = 0; k < n; k++) {
        sync_link *l = &s->links[order[k]];
        nng_msg *reply = NULL;
        int nerr = 0;
        int live = atomic_load(&l->pipes) > 0;
        uint32_t wait_ms =
            live || s->timeout_ms < SYNC_DOWN_WAIT_MS ? s->timeout_ms : SYNC_DOWN_WAIT_MS;
        sh_err rc = sync_exchange(l, req, len, req_id, wait_ms, &reply, &nerr);
        if (rc != SH_OK) {
            sync_why(why, whylen, "%s: %s", l->url,
                     rc != SH_ETIMEDOUT ? nng_strerror(nerr)
                     : live             ? "no answer in time"
                                        : "not connected");
            SH_WARN("sync", "%s: no answer url=%s err=\"%s\"", what, l->url, nng_strerror(nerr));
            last = rc;
            continue;
        }
        sync_answer ans;
        memset(&ans, 0, sizeof ans);
        size_t rlen = nng_msg_len(reply);
        const uint8_t *body = rlen > 0 ? nng_msg_body(reply) : NULL;
        decode(body, rlen, arg, &ans);
        if (ans.decoded != SH_OK) {
            /* A worker that cannot serve the type answers with an error ack. */
            sh_wire_header hdr;
            sh_wire_ack ack;
            if (sh_wire_ack_decode(body, rlen, &hdr, &ack) == SH_OK) {
                sync_why(why, whylen, "%s: refused: %s (%s)", l->url, ack.message,
                         sh_strerror(ack.status));
            } else {
                sync_why(why, whylen, "%s: malformed reply (%s)", l->url, sh_strerror(ans.decoded));
            }
            SH_WARN("sync", "%s: unusable reply url=%s err=%s", what, l->url,
                    sh_strerror(ans.decoded));
            nng_msg_free(reply);
            last = SH_EPROTO;
            continue;
        }
        nng_msg_free(reply);
        if (ans.status == SH_EMYSQL || ans.status == SH_ECLOSED) {
            sync_why(why, whylen, "%s: %s", l->url, ans.message);
            SH_WARN("sync", "%s: worker cannot reach MySQL url=%s message=\"%s\"", what, l->url,
                    ans.message);
            last = SH_EMYSQL;
            continue;
        }
        s->preferred = order[k];
        return SH_OK;
    }
    return last;
}

/* ---- catalog ------------------------------------------------------------------ */

typedef struct sync_catalog_out {
    sh_wire_catalog_rep *rep;
    sh_wire_sku *row;
    size_t *nrows;
} sync_catalog_out;

static void sync_decode_catalog(const uint8_t *buf, size_t len, void *arg, sync_answer *ans)
{
    sync_catalog_out *o = arg;
    sh_wire_header hdr;
    ans->decoded = sh_wire_catalog_rep_decode(buf, len, &hdr, o->rep, o->row, 1);
    if (ans->decoded == SH_OK) {
        *o->nrows = hdr.count;
        ans->status = o->rep->status;
        memcpy(ans->message, o->rep->message, (size_t)o->rep->message_len + 1);
    }
}

sh_err sch_sync_catalog(sch_sync *s, const sh_wire_catalog_req *req, sh_wire_catalog_rep *rep,
                        sh_wire_sku *row, size_t *nrows, char *why, size_t whylen)
{
    SH_ASSERT(s != NULL && req != NULL && rep != NULL && row != NULL && nrows != NULL);
    SH_ASSERT(why != NULL && whylen > 0);
    *nrows = 0;
    why[0] = '\0';
    uint8_t buf[SYNC_REQ_BYTES_MAX];
    size_t len = 0;
    uint64_t req_id = s->next_req_id++;
    sh_err rc = sh_wire_catalog_req_encode(buf, sizeof buf, &len, req_id, req);
    if (rc != SH_OK) {
        snprintf(why, whylen, "catalog request refused by the codec: %s", sh_strerror(rc));
        return SH_EINVAL;
    }
    sync_catalog_out o = {rep, row, nrows};
    return sync_call(s, buf, len, req_id, "catalog", sync_decode_catalog, &o, why, whylen);
}

/* ---- sync state ------------------------------------------------------------------ */

typedef struct sync_state_out {
    sh_wire_sync_state_rep *rep;
    sh_wire_sync_part *parts;
    size_t *n;
} sync_state_out;

static void sync_decode_state(const uint8_t *buf, size_t len, void *arg, sync_answer *ans)
{
    sync_state_out *o = arg;
    sh_wire_header hdr;
    ans->decoded =
        sh_wire_sync_state_rep_decode(buf, len, &hdr, o->rep, o->parts, SH_PARTITIONS_PER_SKU_MAX);
    if (ans->decoded == SH_OK) {
        *o->n = hdr.count;
        ans->status = o->rep->status;
        memcpy(ans->message, o->rep->message, (size_t)o->rep->message_len + 1);
    }
}

sh_err sch_sync_state(sch_sync *s, const char *sku, sh_wire_sync_state_rep *rep,
                      sh_wire_sync_part *parts, size_t *n, char *why, size_t whylen)
{
    SH_ASSERT(s != NULL && sku != NULL && rep != NULL && parts != NULL && n != NULL);
    SH_ASSERT(why != NULL && whylen > 0);
    *n = 0;
    why[0] = '\0';
    sh_wire_sync_state_req req;
    memset(&req, 0, sizeof req);
    if (sh_wire_str_set(req.sku, sizeof req.sku, &req.sku_len, sku, strlen(sku)) != SH_OK) {
        snprintf(why, whylen, "sku id too long");
        return SH_EINVAL;
    }
    uint8_t buf[SYNC_REQ_BYTES_MAX];
    size_t len = 0;
    uint64_t req_id = s->next_req_id++;
    sh_err rc = sh_wire_sync_state_req_encode(buf, sizeof buf, &len, req_id, &req);
    if (rc != SH_OK) {
        snprintf(why, whylen, "sync state request refused by the codec: %s", sh_strerror(rc));
        return SH_EINVAL;
    }
    sync_state_out o = {rep, parts, n};
    return sync_call(s, buf, len, req_id, "sync state", sync_decode_state, &o, why, whylen);
}

/* ---- partition details (reconcile) ---------------------------------------------- */

typedef struct sync_details_out {
    sh_wire_sync_details_rep *rep;
    sh_wire_detail *details;
    size_t cap;
    uint64_t after_seq;
    size_t *n;
} sync_details_out;

static void sync_decode_details(const uint8_t *buf, size_t len, void *arg, sync_answer *ans)
{
    sync_details_out *o = arg;
    sh_wire_header hdr;
    ans->decoded = sh_wire_sync_details_rep_decode(buf, len, &hdr, o->rep, o->details, o->cap);
    if (ans->decoded == SH_OK && hdr.count > 0 && o->details[0].seq <= o->after_seq) {
        ans->decoded = SH_EPROTO; /* seqs increase (the codec checked): the first is enough */
    }
    if (ans->decoded == SH_OK) {
        *o->n = hdr.count;
        ans->status = o->rep->status;
        memcpy(ans->message, o->rep->message, (size_t)o->rep->message_len + 1);
    }
}

sh_err sch_sync_details(sch_sync *s, const char *sku, unsigned part, uint64_t after_seq,
                        uint32_t limit, sh_wire_sync_details_rep *rep, sh_wire_detail *details,
                        size_t *n, char *why, size_t whylen)
{
    SH_ASSERT(s != NULL && sku != NULL && rep != NULL && details != NULL && n != NULL);
    SH_ASSERT(why != NULL && whylen > 0);
    SH_ASSERT(limit >= 1 && limit <= SH_WIRE_DETAILS_PAGE_MAX);
    *n = 0;
    why[0] = '\0';
    sh_wire_sync_details_req req;
    memset(&req, 0, sizeof req);
    if (sh_wire_str_set(req.sku, sizeof req.sku, &req.sku_len, sku, strlen(sku)) != SH_OK) {
        snprintf(why, whylen, "sku id too long");
        return SH_EINVAL;
    }
    req.partition = (uint16_t)part;
    req.after_seq = after_seq;
    req.limit = limit;
    uint8_t buf[SYNC_REQ_BYTES_MAX];
    size_t len = 0;
    uint64_t req_id = s->next_req_id++;
    sh_err rc = sh_wire_sync_details_req_encode(buf, sizeof buf, &len, req_id, &req);
    if (rc != SH_OK) {
        snprintf(why, whylen, "details request refused by the codec: %s", sh_strerror(rc));
        return SH_EINVAL;
    }
    sync_details_out o = {rep, details, limit, after_seq, n};
    return sync_call(s, buf, len, req_id, "details", sync_decode_details, &o, why, whylen);
}
