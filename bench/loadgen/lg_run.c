/* lg_run.c -- the event loop of a load run (see lg_run.h for the model).
 *
 * Flow: every state change (an answer, a timer, a connection back from rest)
 * activates one `dispatch` event; dispatch sends what may be sent now
 * (releases first, then due orders while enough connections are idle), arms
 * the open-loop timer for the next due order, and ends the loop when nothing
 * is left to send or wait for. Deferring the sends to that event, instead of
 * sending from inside evhttp's completion callback, keeps evhttp's connection
 * state machine out of re-entrant calls and sends a burst per loop turn.
 *
 * evhttp quirks handled here: the completion callback may get a NULL request
 * (connection failure, timeout), and evhttp_make_request may fail
 * synchronously; both count as transport errors. A connection that had a
 * transport error rests --error-backoff-ms before its next request, so a dead
 * server does not turn the run into a tight loop of refused connects. */
#include "lg_run.h"

#include "lg_gen.h"
#include "sh_clock.h"
#include "sh_log.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

typedef enum req_kind { REQ_NONE = 0, REQ_DEDUCT, REQ_RELEASE } req_kind;

typedef struct lg_run lg_run;

typedef struct lg_conn {
    lg_run *run;
    struct evhttp_connection *evcon;
    struct event *rest_ev; /* backoff after a transport error */
    uint32_t idx;
    req_kind kind; /* REQ_NONE when idle or resting */
    lg_order ord;
    uint64_t t0_ns; /* latency reference: due time (open loop) or send time */
} lg_conn;

typedef struct rel_item {
    uint64_t n;
    uint64_t queued_ns;
} rel_item;

struct lg_run {
    const lg_opts *o;
    lg_stats *st;
    FILE *orders_out;
    FILE *progress;
    struct event_base *base;
    struct event *dispatch_ev; /* activated by hand */
    struct event *due_ev;      /* open loop: next order due */
    struct event *stop_ev;     /* --duration reached */
    struct event *timeout_ev;  /* --timeout reached */
    struct event *progress_ev;
    lg_conn *conns;
    uint32_t *idle; /* stack of idle connection indices */
    uint32_t nidle;
    uint32_t inflight;
    uint64_t jobs;           /* orders sent (each dup_concurrent times) */
    uint64_t orders_created; /* distinct new order numbers handed out */
    uint64_t start_ns;
    uint64_t last_answer_ns;
    int stop_sending; /* duration over: nothing new goes out */
    int timed_out;
    int finished;
    rel_item *relq; /* ring of LG_RELEASE_QUEUE_MAX */
    uint32_t rel_head, rel_len;
    /* progress: values at the previous line */
    uint64_t prev_answered;
    uint64_t prev_ns;
};

static void kick(lg_run *r)
{
    if (!r->finished) {
        event_active(r->dispatch_ev, EV_WRITE, 0);
    }
}

static uint64_t deduct_answers(const lg_stats *s)
{
    uint64_t n = 0;
    for (int a = 0; a < LG_ANS_COUNT_; a++) {
        n += s->answers[a];
    }
    return n;
}

static int more_jobs(const lg_run *r);

static void finish(lg_run *r)
{
    if (r->finished) {
        return;
    }
    r->finished = 1;
    if (r->o->rate_per_s > 0 && more_jobs(r)) {
        /* orders due by now that never went out: the server fell behind */
        double elapsed_s = (double)(sh_clock_mono_ns() - r->start_ns) / 1e9;
        if (r->o->duration_s > 0 && elapsed_s > r->o->duration_s) {
            elapsed_s = r->o->duration_s;
        }
        /* order j is due at j/R: those with j < elapsed * R were due */
        uint64_t due = (uint64_t)ceil(elapsed_s * r->o->rate_per_s);
        if (r->o->requests > 0 && due > r->o->requests) {
            due = r->o->requests;
        }
        r->st->backlog = due > r->jobs ? due - r->jobs : 0;
    }
    r->st->rel_skipped += r->rel_len;
    r->rel_len = 0;
    event_base_loopbreak(r->base);
}

static void push_idle(lg_run *r, lg_conn *c)
{
    SH_ASSERT(r->nidle < r->o->connections);
    SH_ASSERT(c->kind == REQ_NONE);
    r->idle[r->nidle++] = c->idx;
}

/* ---- answers --------------------------------------------------------------- */

/* Handles the end of c's request: status 0 = transport error. */
static void complete(lg_conn *c, int status, const char *body, size_t len)
{
    lg_run *r = c->run;
    SH_ASSERT(c->kind != REQ_NONE && r->inflight > 0);
    uint64_t now = sh_clock_mono_ns();
    uint64_t lat_us = now > c->t0_ns ? (now - c->t0_ns) / 1000 : 0;
    r->last_answer_ns = now;
    r->inflight--;
    lg_reply rep;
    req_kind kind = c->kind;
    c->kind = REQ_NONE;
    if (kind == REQ_DEDUCT) {
        lg_classify_deduct(status, body, len, &rep);
        lg_stats_add_deduct(r->st, &rep, c->ord.sku_idx, c->ord.qty, lat_us);
        if (r->orders_out != NULL) {
            char oid[LG_ORDER_ID_BYTES];
            lg_gen_order_id(r->o, c->ord.n, oid);
            lg_orders_line(r->orders_out, oid, r->o->skus[c->ord.sku_idx], c->ord.qty, &rep);
        }
        if (rep.answer == LG_ANS_OK && lg_gen_wants_release(r->o, c->ord.n)) {
            if (r->rel_len < LG_RELEASE_QUEUE_MAX) {
                uint32_t tail = (r->rel_head + r->rel_len) % LG_RELEASE_QUEUE_MAX;
                r->relq[tail].n = c->ord.n;
                r->relq[tail].queued_ns = now;
                r->rel_len++;
            } else {
                r->st->rel_skipped++;
            }
        }
    } else {
        lg_classify_release(status, body, len, &rep);
        lg_stats_add_release(r->st, &rep, c->ord.sku_idx, c->ord.qty, lat_us);
    }
    if (status == 0 && r->o->error_backoff_ms > 0) {
        struct timeval tv = {.tv_sec = r->o->error_backoff_ms / 1000,
                             .tv_usec = (r->o->error_backoff_ms % 1000) * 1000};
        evtimer_add(c->rest_ev, &tv);
    } else {
        push_idle(r, c);
    }
    kick(r);
}

static void req_done_cb(struct evhttp_request *req, void *arg)
{
    lg_conn *c = arg;
    if (c->kind == REQ_NONE || c->run->finished) {
        return; /* already counted (synchronous make_request failure) or run over */
    }
    int status = req != NULL ? evhttp_request_get_response_code(req) : 0;
    const char *body = NULL;
    size_t len = 0;
    if (req != NULL && status > 0) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        len = evbuffer_get_length(in);
        if (len > 0) {
            body = (const char *)evbuffer_pullup(in, -1);
            if (body == NULL) {
                len = 0;
            }
        }
    }
    complete(c, status, body, len);
}

static void rest_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    lg_conn *c = arg;
    push_idle(c->run, c);
    kick(c->run);
}

/* ---- sending --------------------------------------------------------------- */

static void send_on(lg_run *r, req_kind kind, const lg_order *ord, uint64_t t0_ns)
{
    SH_ASSERT(r->nidle > 0);
    lg_conn *c = &r->conns[r->idle[--r->nidle]];
    SH_ASSERT(c->kind == REQ_NONE);
    char body[LG_BODY_BYTES_MAX];
    size_t len = kind == REQ_DEDUCT ? lg_gen_deduct_body(r->o, ord, body)
                                    : lg_gen_release_body(r->o, ord, body);
    c->kind = kind;
    c->ord = *ord;
    c->t0_ns = t0_ns;
    r->inflight++;
    if (kind == REQ_DEDUCT) {
        r->st->sent++;
    } else {
        r->st->rel_sent++;
    }
    struct evhttp_request *req = evhttp_request_new(req_done_cb, c);
    if (req == NULL) {
        complete(c, 0, NULL, 0);
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", r->o->host);
    evhttp_add_header(h, "Content-Type", "application/json");
    evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
    const char *path = kind == REQ_DEDUCT ? "/v1/deduct" : "/v1/release";
    if (evhttp_make_request(c->evcon, req, EVHTTP_REQ_POST, path) != 0 && c->kind != REQ_NONE) {
        /* A synchronous failure. evhttp may already have called req_done_cb
         * for it (then c->kind is REQ_NONE and the answer is counted); if it
         * has not, count the transport error here. */
        complete(c, 0, NULL, 0);
    }
}

static int more_jobs(const lg_run *r)
{
    return r->o->requests == 0 || r->jobs < r->o->requests;
}

static uint64_t due_ns(const lg_run *r, uint64_t j)
{
    return r->start_ns + (uint64_t)((double)j * 1e9 / r->o->rate_per_s);
}

static void dispatch_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    lg_run *r = arg;
    const lg_opts *o = r->o;
    if (r->finished) {
        return;
    }
    uint64_t now = sh_clock_mono_ns();
    if (o->duration_s > 0 && now >= r->start_ns + (uint64_t)(o->duration_s * 1e9)) {
        r->stop_sending = 1;
    }
    if (!r->stop_sending) {
        while (r->rel_len > 0 && r->nidle > 0) {
            rel_item it = r->relq[r->rel_head];
            r->rel_head = (r->rel_head + 1) % LG_RELEASE_QUEUE_MAX;
            r->rel_len--;
            lg_order ord;
            lg_gen_order(o, it.n, &ord);
            send_on(r, REQ_RELEASE, &ord, it.queued_ns);
        }
        while (more_jobs(r) && r->nidle >= o->dup_concurrent) {
            uint64_t t0 = now;
            if (o->rate_per_s > 0) {
                t0 = due_ns(r, r->jobs);
                if (t0 > now) {
                    uint64_t wait_us = (t0 - now + 999) / 1000;
                    struct timeval tv = {.tv_sec = (time_t)(wait_us / 1000000),
                                         .tv_usec = (suseconds_t)(wait_us % 1000000)};
                    evtimer_add(r->due_ev, &tv);
                    break;
                }
            }
            uint64_t n;
            if (!lg_gen_job(o, r->jobs, r->orders_created, &n)) {
                r->orders_created++;
            }
            lg_order ord;
            lg_gen_order(o, n, &ord);
            for (uint32_t k = 0; k < o->dup_concurrent; k++) {
                send_on(r, REQ_DEDUCT, &ord, t0);
            }
            r->jobs++;
        }
    }
    int nothing_to_send = r->stop_sending || (!more_jobs(r) && r->rel_len == 0);
    if (nothing_to_send && r->inflight == 0) {
        finish(r);
    }
}

/* ---- timers ---------------------------------------------------------------- */

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    lg_run *r = arg;
    r->stop_sending = 1;
    kick(r);
}

/* The requests still in flight when the run is cut off: counted as
 * unfinished, their units as of unknown outcome (--verify widens its range). */
static void count_unfinished(lg_run *r)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->o->connections; i++) {
        const lg_conn *c = &r->conns[i];
        if (c->kind != REQ_NONE) {
            lg_stats_add_unfinished(r->st, c->kind == REQ_RELEASE, c->ord.sku_idx, c->ord.qty);
            n++;
        }
    }
    SH_ASSERT(n == r->inflight);
    r->st->unfinished = r->inflight;
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    lg_run *r = arg;
    r->timed_out = 1;
    count_unfinished(r);
    if (r->progress != NULL) {
        fprintf(r->progress, "stock-loadgen: --timeout %.1f s reached with %u requests in flight\n",
                r->o->timeout_s, r->inflight);
    }
    finish(r);
}

static void progress_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    lg_run *r = arg;
    const lg_stats *s = r->st;
    uint64_t now = sh_clock_mono_ns();
    uint64_t ans = deduct_answers(s);
    double dt = (double)(now - r->prev_ns) / 1e9;
    double rate = dt > 0 ? (double)(ans - r->prev_answered) / dt : 0.0;
    uint64_t other = lg_stats_errors(s) - s->answers[LG_ANS_SOLD_OUT];
    fprintf(r->progress,
            "%7.1fs sent %" PRIu64 " ok %" PRIu64 " sold_out %" PRIu64 " other %" PRIu64
            " rate %.0f/s p99 %.3f ms\n",
            (double)(now - r->start_ns) / 1e9, s->sent, s->answers[LG_ANS_OK],
            s->answers[LG_ANS_SOLD_OUT], other, rate,
            (double)sh_hist_percentile(&s->lat_us, 99.0) / 1000.0);
    fflush(r->progress);
    r->prev_answered = ans;
    r->prev_ns = now;
}

/* ---- setup and teardown ------------------------------------------------------ */

static void run_free(lg_run *r)
{
    if (r->conns != NULL) {
        for (uint32_t i = 0; i < r->o->connections; i++) {
            if (r->conns[i].evcon != NULL) {
                evhttp_connection_free(r->conns[i].evcon);
            }
            if (r->conns[i].rest_ev != NULL) {
                event_free(r->conns[i].rest_ev);
            }
        }
    }
    struct event *evs[] = {r->dispatch_ev, r->due_ev, r->stop_ev, r->timeout_ev, r->progress_ev};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++) {
        if (evs[i] != NULL) {
            event_free(evs[i]);
        }
    }
    free(r->conns);
    free(r->idle);
    free(r->relq);
    if (r->base != NULL) {
        event_base_free(r->base);
    }
}

static struct timeval tv_of_s(double s)
{
    struct timeval tv;
    tv.tv_sec = (time_t)s;
    tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
    return tv;
}

static int run_setup(lg_run *r)
{
    const lg_opts *o = r->o;
    struct event_config *cfg = event_config_new();
    if (cfg == NULL) {
        return -1;
    }
    /* timerfd-backed timers: the open loop's due times need sub-ms precision */
    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    /* evhttp toggles read/write interest several times per request; the
     * changelist folds those into at most one epoll_ctl per fd per loop turn */
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    r->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (r->base == NULL) {
        return -1;
    }
    r->conns = calloc(o->connections, sizeof *r->conns);
    r->idle = calloc(o->connections, sizeof *r->idle);
    r->relq = calloc(LG_RELEASE_QUEUE_MAX, sizeof *r->relq);
    r->dispatch_ev = event_new(r->base, -1, 0, dispatch_cb, r);
    r->due_ev = evtimer_new(r->base, dispatch_cb, r);
    r->stop_ev = evtimer_new(r->base, stop_cb, r);
    r->timeout_ev = evtimer_new(r->base, timeout_cb, r);
    r->progress_ev = event_new(r->base, -1, EV_PERSIST, progress_cb, r);
    if (r->conns == NULL || r->idle == NULL || r->relq == NULL || r->dispatch_ev == NULL ||
        r->due_ev == NULL || r->stop_ev == NULL || r->timeout_ev == NULL ||
        r->progress_ev == NULL) {
        return -1;
    }
    for (uint32_t i = 0; i < o->connections; i++) {
        lg_conn *c = &r->conns[i];
        c->run = r;
        c->idx = i;
        c->evcon = evhttp_connection_base_new(r->base, NULL, o->host, o->port);
        c->rest_ev = evtimer_new(r->base, rest_cb, c);
        if (c->evcon == NULL || c->rest_ev == NULL) {
            return -1;
        }
        /* no retries: a silently re-sent deduct would be answered duplicate
         * and hide the first attempt's outcome */
        evhttp_connection_set_retries(c->evcon, 0);
        evhttp_connection_set_timeout(c->evcon, (int)o->request_timeout_s);
        push_idle(r, c);
    }
    return 0;
}

int lg_run_exec(const lg_opts *o, lg_stats *stats, FILE *orders_out, FILE *progress)
{
    SH_ASSERT(o != NULL && stats != NULL);
    SH_ASSERT(o->connections >= o->dup_concurrent && o->nskus > 0);
    lg_stats_init(stats, o->nskus);
    signal(SIGPIPE, SIG_IGN);
    lg_run r;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.st = stats;
    r.orders_out = orders_out;
    r.progress = progress;
    if (run_setup(&r) != 0) {
        fprintf(stderr, "stock-loadgen: cannot set up the event loop (out of memory?)\n");
        run_free(&r);
        return -1;
    }
    r.start_ns = sh_clock_mono_ns();
    r.prev_ns = r.start_ns;
    r.last_answer_ns = r.start_ns;
    struct timeval tv = tv_of_s(o->timeout_s);
    evtimer_add(r.timeout_ev, &tv);
    if (o->duration_s > 0) {
        tv = tv_of_s(o->duration_s);
        evtimer_add(r.stop_ev, &tv);
    }
    if (progress != NULL) {
        tv = tv_of_s(LG_PROGRESS_MS / 1000.0);
        event_add(r.progress_ev, &tv);
    }
    kick(&r);
    int rc = event_base_dispatch(r.base);
    if (rc < 0) {
        fprintf(stderr, "stock-loadgen: event loop failed\n");
    }
    if (!r.finished) {
        /* the loop ran dry without finish(): nothing can make progress */
        count_unfinished(&r);
        r.st->rel_skipped += r.rel_len;
    }
    stats->elapsed_us = (r.last_answer_ns - r.start_ns) / 1000;
    run_free(&r);
    return 0;
}
