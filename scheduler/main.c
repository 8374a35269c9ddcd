/* main.c -- stock-scheduler: the HTTP front door, registry, pool and admin socket.
 *
 * Reads top to bottom: options, configuration, logging, then every part is
 * built in the order it depends on the others (registry, pool rebuilt from
 * Redis, the deduction state machine, node links, sync worker links, HTTP,
 * admin socket), the loop
 * runs, and they are torn down in reverse. One thread, the loop's, owns every
 * mutable thing; NNG's threads only hand replies over (sch_nodes).
 *
 * Shutdown (SIGTERM, SIGINT): stop accepting connections, refuse new requests
 * on open ones (503), give requests already at a node up to one node timeout to
 * be answered, answer the rest 503, let the answers drain to the sockets for a
 * moment, then close everything and exit 0. A second signal skips the wait. */
#include "sch_admin.h"
#include "sch_config.h"
#include "sch_ctx.h"
#include "sch_http.h"
#include "sch_nodes.h"
#include "sch_pool.h"
#include "sch_registry.h"
#include "sch_route.h"
#include "sch_sync.h"

#include "sh_clock.h"
#include "sh_daemon.h"
#include "sh_log.h"

#include <event2/event.h>
#include <nng/nng.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>

#define MAIN_PRIORITIES     2   /* 0: replies, signals; 1: HTTP, flush (see sch_nodes.c) */
#define MAIN_DRAIN_POLL_MS  20  /* how often shutdown checks for pending requests */
#define MAIN_DRAIN_EXTRA_MS 500 /* grace past nodes.timeout_ms before failing the rest */
#define MAIN_FLUSH_OUT_MS   200 /* time given to answers to reach the sockets */

typedef struct main_state {
    sch_ctx *ctx;
    sch_route *route;
    struct event *drain_ev;
    struct event *retry_ev; /* pool work left pending (sch_pool_retry) */
    uint64_t drain_deadline_ms; /* mono */
    int stopping;
} main_state;

/* The loop's base, with epoll's changelist: libevent then hands the kernel one
 * epoll_ctl per fd per loop turn with the net change, instead of one per
 * enable/disable. evhttp flips a connection's read/write interest several
 * times per request, so this saves a syscall per request (4 -> 3 epoll_ctl
 * measured at 256 connections). libevent's caveat for the changelist is an fd
 * shared through dup(); nothing on this base is. Other backends ignore the
 * flag. */
static struct event_base *main_base_new(void)
{
    struct event_config *ec = event_config_new();
    if (ec == NULL) {
        return NULL;
    }
    struct event_base *base = NULL;
    if (event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST) == 0) {
        base = event_base_new_with_config(ec);
    }
    event_config_free(ec);
    return base;
}

/* ---- shutdown -------------------------------------------------------------- */

static void main_finish(main_state *m)
{
    sch_route_fail_all(m->route);
    struct timeval flush = {0, MAIN_FLUSH_OUT_MS * 1000};
    if (event_base_loopexit(m->ctx->base, &flush) != 0) {
        event_base_loopbreak(m->ctx->base);
    }
}

static void main_drain_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    main_state *m = arg;
    if (sch_route_pending(m->route) == 0 || sh_clock_mono_ms() >= m->drain_deadline_ms) {
        event_del(m->drain_ev);
        SH_INFO("main", "stopping pending=%zu", sch_route_pending(m->route));
        main_finish(m);
    }
}

/* Every SCH_POOL_RETRY_MS: grants and returns a failed or unknown step left
 * pending are finished, whatever the pool holds, so no unit waits for a
 * restart. Nothing to do costs a scan of the registry. */
static void main_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    main_state *m = arg;
    size_t left = 0;
    sh_err rc = sch_pool_retry(m->ctx->pool, m->ctx->reg, &left);
    if (rc != SH_OK) {
        SH_WARN("main", "pool work still pending partitions=%zu err=%s", left, sh_strerror(rc));
    }
}

static void main_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    main_state *m = arg;
    if (m->stopping) {
        SH_WARN("main", "second signal: not waiting for pending requests sig=%d", (int)sig);
        event_del(m->drain_ev);
        main_finish(m);
        return;
    }
    m->stopping = 1;
    SH_INFO("main", "shutting down sig=%d pending=%zu", (int)sig, sch_route_pending(m->route));
    sch_http_stop_accepting(m->ctx->http);
    sch_route_close(m->route);
    m->drain_deadline_ms =
        sh_clock_mono_ms() + (uint64_t)m->ctx->cfg->node_timeout_ms + MAIN_DRAIN_EXTRA_MS;
    struct timeval poll = {0, MAIN_DRAIN_POLL_MS * 1000};
    if (event_add(m->drain_ev, &poll) != 0) {
        main_finish(m);
    }
}

/* ---- main ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    sh_daemon_args args;
    int rc =
        sh_daemon_parse_args(&args, argc, argv, "stock-scheduler: HTTP deductions, registry, pool");
    if (rc != SH_DAEMON_CONTINUE) {
        return rc;
    }
    sch_config cfg;
    int exit_now = 0;
    rc = sh_daemon_load_config(&args, sch_config_keys, sch_config_nkeys, &cfg, &exit_now);
    if (exit_now) {
        return rc;
    }
    sh_log_init("scheduler", (sh_log_level)sh_log_level_parse(cfg.log_level), 2);
    int nnodes = 0;
    sh_err err = sch_nodes_count_urls(cfg.node_urls, &nnodes);
    if (err != SH_OK) {
        if (err == SH_ELIMIT) {
            SH_ERROR("main", "bad nodes.urls: more than %d URLs", SCH_NODES_MAX);
        } else {
            SH_ERROR("main", "bad nodes.urls: an entry is empty or longer than 255 bytes");
        }
        return 1;
    }
    int nworkers = 0;
    err = sch_sync_count_urls(cfg.sync_urls, &nworkers);
    if (err != SH_OK) {
        if (err == SH_ELIMIT) {
            SH_ERROR("main", "bad sync.urls: more than %d URLs", SCH_SYNC_WORKERS_MAX);
        } else {
            SH_ERROR("main", "bad sync.urls: an entry is empty or longer than 255 bytes");
        }
        return 1;
    }

    /* A reply to a client that went away must not kill the daemon. */
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        SH_ERROR("main", "cannot ignore SIGPIPE");
        return 1;
    }
    /* No evthread_use_pthreads(): only the loop thread calls libevent (NNG
     * threads wake it through an eventfd, see sch_nodes.c), so the base needs
     * no locks. */

    int exit_code = 1;
    sch_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.cfg = &cfg;
    main_state m;
    memset(&m, 0, sizeof m);
    m.ctx = &ctx;
    struct event *sigterm_ev = NULL, *sigint_ev = NULL;

    ctx.base = main_base_new();
    if (ctx.base == NULL || event_base_priority_init(ctx.base, MAIN_PRIORITIES) != 0) {
        SH_ERROR("main", "event base failed");
        goto out;
    }
    if ((err = sch_registry_new(&ctx.reg, nnodes)) != SH_OK) {
        SH_ERROR("main", "registry failed err=%s", sh_strerror(err));
        goto out;
    }

    /* The registry is rebuilt from Redis and pending grants are replayed
     * before the first request is taken, so nothing is lost or doubled. */
    sch_pool_config pcfg = {
        .redis_seeds = cfg.redis_seeds,
        .redis_timeout_ms = (uint32_t)cfg.redis_timeout_ms,
        .refill_horizon_ms = (uint32_t)cfg.pool_refill_horizon_ms,
        .low_water_units = cfg.pool_low_water_units,
    };
    if ((err = sch_pool_open(&ctx.pool, &pcfg)) != SH_OK) {
        SH_ERROR("main", "pool open failed seeds=%s err=%s", cfg.redis_seeds, sh_strerror(err));
        goto out;
    }
    if ((err = sch_pool_rebuild(ctx.pool, ctx.reg)) != SH_OK) {
        SH_ERROR("main", "registry rebuild from Redis failed err=%s", sh_strerror(err));
        goto out;
    }
    SH_INFO("main", "registry rebuilt skus=%zu", sch_registry_count(ctx.reg));

    if ((err = sch_route_new(&m.route, &ctx)) != SH_OK) {
        SH_ERROR("main", "pending table failed err=%s", sh_strerror(err));
        goto out;
    }
    sch_nodes_config ncfg = {
        .urls = cfg.node_urls,
        .contexts = (uint32_t)cfg.node_contexts,
        .timeout_ms = (uint32_t)cfg.node_timeout_ms,
        .batch_items_max = (uint32_t)cfg.node_batch_items_max,
        .outbox_items_max = (uint32_t)cfg.node_outbox_items_max,
    };
    sch_nodes_handler handler = sch_route_node_handler(m.route);
    if ((err = sch_nodes_open(&ctx.nodes, ctx.base, &ncfg, &handler, &ctx.stats)) != SH_OK) {
        SH_ERROR("main", "node links failed urls=%s err=%s", cfg.node_urls, sh_strerror(err));
        goto out;
    }
    /* Catalog and sync-state requests (admin only); workers that are down are
     * dialled in the background, so the scheduler serves deductions without them. */
    sch_sync_config scfg = {.urls = cfg.sync_urls, .timeout_ms = (uint32_t)cfg.sync_timeout_ms};
    if ((err = sch_sync_open(&ctx.sync, &scfg)) != SH_OK) {
        SH_ERROR("main", "sync worker links failed urls=%s err=%s", cfg.sync_urls,
                 sh_strerror(err));
        goto out;
    }
    if ((err = sch_http_open(&ctx.http, &ctx, m.route)) != SH_OK) {
        SH_ERROR("main", "HTTP server failed err=%s", sh_strerror(err));
        goto out;
    }
    if ((err = sch_admin_open(&ctx.admin, &ctx)) != SH_OK) {
        SH_ERROR("main", "admin socket failed path=%s err=%s", cfg.admin_socket, sh_strerror(err));
        goto out;
    }

    m.drain_ev = event_new(ctx.base, -1, EV_PERSIST, main_drain_cb, &m);
    m.retry_ev = event_new(ctx.base, -1, EV_PERSIST, main_retry_cb, &m);
    struct timeval retry_tv = {SCH_POOL_RETRY_MS / 1000, (SCH_POOL_RETRY_MS % 1000) * 1000};
    if (m.retry_ev == NULL || event_add(m.retry_ev, &retry_tv) != 0) {
        SH_ERROR("main", "pool retry timer failed");
        goto out;
    }
    sigterm_ev = evsignal_new(ctx.base, SIGTERM, main_signal_cb, &m);
    sigint_ev = evsignal_new(ctx.base, SIGINT, main_signal_cb, &m);
    if (m.drain_ev == NULL || sigterm_ev == NULL || sigint_ev == NULL ||
        event_priority_set(sigterm_ev, 0) != 0 || event_priority_set(sigint_ev, 0) != 0 ||
        event_add(sigterm_ev, NULL) != 0 || event_add(sigint_ev, NULL) != 0) {
        SH_ERROR("main", "signal events failed");
        goto out;
    }

    SH_INFO("main", "serving skus=%zu nodes=%d sync_workers=%d", sch_registry_count(ctx.reg),
            nnodes, nworkers);
    if (event_base_dispatch(ctx.base) < 0) {
        SH_ERROR("main", "event loop failed");
        goto out;
    }
    exit_code = 0;

out:
    /* Reverse order. Every request was answered before the loop stopped
     * (main_finish); anything the nodes still hold is failed into the void. */
    if (m.route != NULL && sch_route_pending(m.route) > 0) {
        sch_route_fail_all(m.route);
    }
    if (ctx.admin != NULL) {
        sch_admin_close(ctx.admin);
        ctx.admin = NULL;
    }
    if (ctx.http != NULL) {
        sch_http_stop_accepting(ctx.http);
    }
    sch_nodes_close(ctx.nodes);
    ctx.nodes = NULL;
    sch_http_free(ctx.http);
    ctx.http = NULL;
    sch_route_free(m.route);
    sch_sync_close(ctx.sync);
    ctx.sync = NULL;
    if (ctx.pool != NULL) {
        sch_pool_close(ctx.pool);
    }
    sch_registry_free(ctx.reg);
    if (sigterm_ev != NULL) {
        event_free(sigterm_ev);
    }
    if (sigint_ev != NULL) {
        event_free(sigint_ev);
    }
    if (m.drain_ev != NULL) {
        event_free(m.drain_ev);
    }
    if (m.retry_ev != NULL) {
        event_free(m.retry_ev);
    }
    if (ctx.base != NULL) {
        event_base_free(ctx.base);
    }
    nng_fini();
    SH_INFO("main", "stopped exit=%d", exit_code);
    return exit_code;
}
