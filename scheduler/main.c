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
 * moment, then close everything and exit 0. A second signal skips the wait.
 *
 * One scheduler at a time (DESIGN.md 5b): before the pool is rebuilt the
 * scheduler takes the lease {lease:scheduler} (sh_lease), waiting for a live
 * holder up to lease.wait_ms and then taking it over with a higher epoch. The
 * lease thread renews it; when it is lost (another scheduler took over, or
 * Redis could not be reached for a TTL) the thread writes an eventfd, and the
 * loop shuts down the way SIGTERM does but exits MAIN_EXIT_LEASE_LOST: this
 * process may no longer move stock. A clean stop releases the lease, so a
 * restart does not wait. */
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
#include "sh_lease.h"
#include "sh_limits.h"
#include "sh_log.h"

#include <event2/event.h>
#include <nng/nng.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define MAIN_PRIORITIES      2   /* 0: replies, signals; 1: HTTP, flush (see sch_nodes.c) */
#define MAIN_DRAIN_POLL_MS   20  /* how often shutdown checks for pending requests */
#define MAIN_DRAIN_EXTRA_MS  500 /* grace past nodes.timeout_ms before failing the rest */
#define MAIN_FLUSH_OUT_MS    200 /* time given to answers to reach the sockets */
#define MAIN_LEASE_KEY       "{lease:scheduler}"
#define MAIN_EXIT_LEASE_LOST 3 /* exit status after losing the lease */

typedef struct main_state {
    sch_ctx *ctx;
    sch_route *route;
    struct event *drain_ev;
    struct event *retry_ev;     /* pool work left pending (sch_pool_retry) */
    uint64_t drain_deadline_ms; /* mono */
    int stopping;
    int lease_fd; /* eventfd: lease thread -> loop (lease_ev watches it) */
    struct event *lease_ev;
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

/* Stops taking requests and drains the pending ones (main_drain_cb), then
 * main_finish; shared by the signals and a lost lease. */
static void main_stop(main_state *m)
{
    m->stopping = 1;
    sch_http_stop_accepting(m->ctx->http);
    sch_route_close(m->route);
    m->drain_deadline_ms =
        sh_clock_mono_ms() + (uint64_t)m->ctx->cfg->node_timeout_ms + MAIN_DRAIN_EXTRA_MS;
    struct timeval poll = {0, MAIN_DRAIN_POLL_MS * 1000};
    if (event_add(m->drain_ev, &poll) != 0) {
        main_finish(m);
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
    SH_INFO("main", "shutting down sig=%d pending=%zu", (int)sig, sch_route_pending(m->route));
    main_stop(m);
}

/* ---- lease ------------------------------------------------------------------ */

/* Runs on the lease thread: only wakes the loop (the base has no evthread locks). */
static void main_lease_lost_cb(void *arg)
{
    const main_state *m = arg;
    uint64_t one = 1;
    while (write(m->lease_fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

/* Runs on the loop when the lease thread reported the lease lost. */
static void main_lease_ev_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    main_state *m = arg;
    uint64_t n;
    while (read(fd, &n, sizeof n) < 0 && errno == EINTR) {
    }
    event_del(m->lease_ev);
    char holder[SH_LEASE_OWNER_CHARS_MAX + 1];
    uint64_t holder_epoch = 0;
    sh_lease_holder(m->ctx->lease, holder, sizeof holder, &holder_epoch);
    SH_ERROR("main",
             "lease lost: no longer allowed to move stock, stopping epoch=%" PRIu64
             " holder=\"%s\" holder_epoch=%" PRIu64 " pending=%zu exit=%d",
             m->ctx->lease_epoch, holder[0] != '\0' ? holder : "unknown", holder_epoch,
             sch_route_pending(m->route), MAIN_EXIT_LEASE_LOST);
    if (!m->stopping) {
        main_stop(m);
    }
}

/* Takes the scheduler lease (blocking up to lease.wait_ms) before anything
 * reads or moves stock; the identity names this process in the other's logs. */
static sh_err main_lease_acquire(main_state *m)
{
    sch_ctx *ctx = m->ctx;
    char host[64] = "unknown";
    if (gethostname(host, sizeof host) != 0) {
        snprintf(host, sizeof host, "unknown");
    }
    host[sizeof host - 1] = '\0';
    char owner[SH_LEASE_OWNER_CHARS_MAX + 1];
    snprintf(owner, sizeof owner, "%s:%ld:%" PRIu64, host, (long)getpid(), sh_clock_wall_ms());
    if (ctx->cfg->lease_wait_ms < ctx->cfg->lease_ttl_ms) {
        SH_WARN("main", "lease.wait_ms below lease.ttl_ms: a restart after a crash takes the "
                        "lease over by force instead of waiting for it to expire");
    }
    sh_lease_config lcfg = {
        .redis_seeds = ctx->cfg->redis_seeds,
        .redis_timeout_ms = (uint32_t)ctx->cfg->redis_timeout_ms,
        .key = MAIN_LEASE_KEY,
        .owner = owner,
        .ttl_ms = (uint32_t)ctx->cfg->lease_ttl_ms,
        .wait_ms = (uint32_t)ctx->cfg->lease_wait_ms,
        .lost_cb = main_lease_lost_cb,
        .lost_arg = m,
    };
    sh_err err = sh_lease_new(&ctx->lease, &lcfg);
    if (err == SH_OK) {
        err = sh_lease_acquire(ctx->lease, &ctx->lease_epoch);
    }
    if (err == SH_OK) {
        SH_INFO("main", "lease acquired key=%s epoch=%" PRIu64 " owner=%s ttl_ms=%" PRId64,
                MAIN_LEASE_KEY, ctx->lease_epoch, owner, ctx->cfg->lease_ttl_ms);
    }
    return err;
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
    if (rc == 0 && cfg.pool_wait_timeout_ms >= cfg.redis_timeout_ms) {
        /* WAIT runs under the Redis timeout: past it the router gives up on it. */
        fprintf(stderr, "%s: pool.wait_timeout_ms=%lld must be below redis.timeout_ms=%lld\n",
                args.prog, (long long)cfg.pool_wait_timeout_ms, (long long)cfg.redis_timeout_ms);
        return 1;
    }
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
    m.lease_fd = -1;
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

    /* The lease comes before the pool: nothing reads the journal or moves
     * stock while another scheduler may still be doing so. */
    m.lease_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    m.lease_ev = m.lease_fd < 0
                     ? NULL
                     : event_new(ctx.base, m.lease_fd, EV_READ | EV_PERSIST, main_lease_ev_cb, &m);
    if (m.lease_ev == NULL || event_priority_set(m.lease_ev, 0) != 0 ||
        event_add(m.lease_ev, NULL) != 0) {
        SH_ERROR("main", "lease wakeup failed err=\"%s\"", strerror(errno));
        goto out;
    }
    if ((err = main_lease_acquire(&m)) != SH_OK) {
        SH_ERROR("main", "scheduler lease failed key=%s err=%s", MAIN_LEASE_KEY, sh_strerror(err));
        goto out;
    }

    /* The registry is rebuilt from Redis and pending grants are replayed
     * before the first request is taken, so nothing is lost or doubled. */
    sch_pool_config pcfg = {
        .redis_seeds = cfg.redis_seeds,
        .redis_timeout_ms = (uint32_t)cfg.redis_timeout_ms,
        .refill_horizon_ms = (uint32_t)cfg.pool_refill_horizon_ms,
        .low_water_units = cfg.pool_low_water_units,
        .durable = strcmp(cfg.pool_durability, "replica") == 0,
        .wait_ms = (uint32_t)cfg.pool_wait_timeout_ms,
    };
    if ((err = sch_pool_open(&ctx.pool, &pcfg)) != SH_OK) {
        SH_ERROR("main", "pool open failed seeds=%s err=%s", cfg.redis_seeds, sh_strerror(err));
        goto out;
    }
    /* Every grant and return carries the lease's epoch; the rebuild stamps it
     * into each SKU's pool and partitions, so a deposed scheduler's next step
     * is refused (FENCED) before it writes. */
    sch_pool_set_epoch(ctx.pool, ctx.lease_epoch);
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

    SH_INFO("main", "serving skus=%zu nodes=%d sync_workers=%d lease_epoch=%" PRIu64,
            sch_registry_count(ctx.reg), nnodes, nworkers, ctx.lease_epoch);
    if (event_base_dispatch(ctx.base) < 0) {
        SH_ERROR("main", "event loop failed");
        goto out;
    }
    exit_code = sh_lease_lost(ctx.lease) ? MAIN_EXIT_LEASE_LOST : 0;

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
    /* Last of the Redis users: released only once nothing moves stock. A lost
     * lease is not released (it is not ours). */
    if (ctx.lease != NULL) {
        sh_lease_release(ctx.lease);
        if (sh_lease_lost(ctx.lease)) {
            exit_code = MAIN_EXIT_LEASE_LOST;
        }
        sh_lease_free(ctx.lease);
        ctx.lease = NULL;
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
    if (m.lease_ev != NULL) {
        event_free(m.lease_ev);
    }
    if (m.lease_fd >= 0) {
        close(m.lease_fd);
    }
    if (ctx.base != NULL) {
        event_base_free(ctx.base);
    }
    nng_fini();
    SH_INFO("main", "stopped exit=%d", exit_code);
    return exit_code;
}
