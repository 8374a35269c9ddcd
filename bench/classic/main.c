/* main.c -- stock-classic: the classic flash-sale designs behind our HTTP front,
 * for bench/compare.sh. A baseline, not a product.
 *
 *   stock-classic --mode single-key|mysql-row --port P [--redis HOST:PORT]
 *                 [--mysql-host H --mysql-port P] [--connections-to-backend K]
 *
 * Why it exists: "N times faster" means nothing without the designs people
 * actually run, measured on the same box, through the same HTTP/JSON front,
 * with the same load generator. single-key is design (b), one Lua call per
 * request on one Redis key (cl_redis.c); mysql-row is design (c), one InnoDB
 * transaction per request on one row (cl_mysql.c). The front (cl_http.c)
 * mirrors our scheduler's parsing and answers, so the difference measured is
 * the design behind it.
 *
 * Reads top to bottom: options, logging, signals, event base, backend, HTTP,
 * loop; SIGTERM/SIGINT stop accepting, give requests in flight a bounded time
 * (MAIN_DRAIN_MS) to be answered, then tear down (the rest get 503). */
#include "cl_http.h"
#include "cl_mysql.h"
#include "cl_redis.h"

#include "sh_log.h"

#include <event2/event.h>
#include <event2/thread.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAIN_DRAIN_MS              2000 /* shutdown: time given to requests in flight */
#define MAIN_DRAIN_POLL_MS         20
#define MAIN_INFLIGHT_MAX          65536 /* as the scheduler's http.pending_max */
#define MAIN_IDLE_TIMEOUT_S        30    /* as the scheduler's http.idle_timeout_s */
#define MAIN_REDIS_CONNS_DEFAULT   8
#define MAIN_MYSQL_WORKERS_DEFAULT 32
#define MAIN_MYSQL_QUEUE_DEFAULT   8192
#define MAIN_ORDER_TTL_S           604800 /* 7 days, as deduct.claim_ttl_s */
#define MAIN_HOST_CHARS_MAX        255

typedef enum main_mode { MODE_NONE = 0, MODE_SINGLE_KEY, MODE_MYSQL_ROW } main_mode;

typedef struct main_opts {
    main_mode mode;
    unsigned long port;
    char redis_host[MAIN_HOST_CHARS_MAX + 1];
    unsigned long redis_port;
    const char *mysql_host;
    unsigned long mysql_port;
    const char *mysql_user;
    const char *mysql_db;
    unsigned long backend_conns; /* 0: the mode's default */
    unsigned long queue;
    const char *log_level;
    int print_script;
} main_opts;

typedef struct main_state {
    struct event_base *base;
    cl_http *http;
    struct event *drain_ev;
    uint64_t drain_left_ms;
    int stopping;
} main_state;

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: stock-classic --mode single-key|mysql-row --port P [options]\n"
        "\n"
        "The classic flash-sale designs behind the same HTTP API as stock-scheduler\n"
        "(POST /v1/deduct, POST /v1/load {\"sku\",\"total\"}, GET /healthz), for benchmarks.\n"
        "\n"
        "  --mode M                   single-key: one Lua call per request on one Redis key\n"
        "                             mysql-row: one InnoDB transaction per request on one row\n"
        "  --port P                   HTTP port on 127.0.0.1 (required)\n"
        "  --redis HOST:PORT          single-key's Redis (default 127.0.0.1:6379)\n"
        "  --mysql-host H             mysql-row's server address (default 127.0.0.1)\n"
        "  --mysql-port P             (default 3306)\n"
        "  --mysql-user U             (default root, no password)\n"
        "  --mysql-db D               database holding bench_stock/bench_detail (default "
        "stock)\n"
        "  --connections-to-backend K Redis connections (default %d) or MySQL worker\n"
        "                             threads, one connection each (default %d)\n"
        "  --queue N                  mysql-row: requests waiting for a worker (default %d)\n"
        "  --log-level L              debug|info|warn|error (default info)\n"
        "  --print-script             print single-key's Lua script and exit\n",
        MAIN_REDIS_CONNS_DEFAULT, MAIN_MYSQL_WORKERS_DEFAULT, MAIN_MYSQL_QUEUE_DEFAULT);
}

/* Whole-string unsigned integer in [lo, hi]. */
static int parse_ulong(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
    if (s == NULL || *s < '0' || *s > '9') {
        return -1;
    }
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_hostport(const char *s, char *host, size_t hostcap, unsigned long *port)
{
    const char *colon = s != NULL ? strrchr(s, ':') : NULL;
    if (colon == NULL || colon == s || (size_t)(colon - s) >= hostcap) {
        return -1;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    return parse_ulong(colon + 1, 1, 65535, port);
}

/* Returns 0 to run, or the exit code (0 after --help/--print-script, 2 usage). */
static int parse_opts(main_opts *o, int argc, char **argv, int *exit_now)
{
    memset(o, 0, sizeof *o);
    snprintf(o->redis_host, sizeof o->redis_host, "127.0.0.1");
    o->redis_port = 6379;
    o->mysql_host = "127.0.0.1";
    o->mysql_port = 3306;
    o->mysql_user = "root";
    o->mysql_db = "stock";
    o->queue = MAIN_MYSQL_QUEUE_DEFAULT;
    o->log_level = "info";
    *exit_now = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0, takes_value = 1;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--print-script") == 0) {
            o->print_script = 1;
            takes_value = 0;
        } else if (v == NULL) {
            fprintf(stderr, "stock-classic: %s needs a value (or is unknown)\n", a);
            usage(stderr);
            return 2;
        } else if (strcmp(a, "--mode") == 0) {
            o->mode = strcmp(v, "single-key") == 0  ? MODE_SINGLE_KEY
                      : strcmp(v, "mysql-row") == 0 ? MODE_MYSQL_ROW
                                                    : MODE_NONE;
            bad = o->mode == MODE_NONE;
        } else if (strcmp(a, "--port") == 0) {
            bad = parse_ulong(v, 1, 65535, &o->port) != 0;
        } else if (strcmp(a, "--redis") == 0) {
            bad = parse_hostport(v, o->redis_host, sizeof o->redis_host, &o->redis_port) != 0;
        } else if (strcmp(a, "--mysql-host") == 0) {
            o->mysql_host = v;
            bad = *v == '\0';
        } else if (strcmp(a, "--mysql-port") == 0) {
            bad = parse_ulong(v, 1, 65535, &o->mysql_port) != 0;
        } else if (strcmp(a, "--mysql-user") == 0) {
            o->mysql_user = v;
        } else if (strcmp(a, "--mysql-db") == 0) {
            o->mysql_db = v;
        } else if (strcmp(a, "--connections-to-backend") == 0) {
            bad = parse_ulong(v, 1, 512, &o->backend_conns) != 0;
        } else if (strcmp(a, "--queue") == 0) {
            bad = parse_ulong(v, 1, 1u << 20, &o->queue) != 0;
        } else if (strcmp(a, "--log-level") == 0) {
            o->log_level = v;
            bad = sh_log_level_parse(v) < 0;
        } else {
            fprintf(stderr, "stock-classic: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "stock-classic: bad value for %s: '%s'\n", a, v);
            usage(stderr);
            return 2;
        }
        i += takes_value;
    }
    if (o->print_script) {
        fputs(cl_redis_deduct_script(), stdout);
        return 0;
    }
    if (o->mode == MODE_NONE || o->port == 0) {
        fprintf(stderr, "stock-classic: --mode and --port are required\n");
        usage(stderr);
        return 2;
    }
    if (o->backend_conns == 0) {
        o->backend_conns =
            o->mode == MODE_SINGLE_KEY ? MAIN_REDIS_CONNS_DEFAULT : MAIN_MYSQL_WORKERS_DEFAULT;
    }
    *exit_now = 0;
    return 0;
}

/* ---- shutdown -------------------------------------------------------------- */

static void main_drain_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    main_state *m = arg;
    uint64_t left = cl_http_inflight(m->http);
    if (left == 0 || m->drain_left_ms <= MAIN_DRAIN_POLL_MS) {
        event_del(m->drain_ev);
        SH_INFO("main", "stopping inflight=%llu", (unsigned long long)left);
        event_base_loopbreak(m->base);
        return;
    }
    m->drain_left_ms -= MAIN_DRAIN_POLL_MS;
}

static void main_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    main_state *m = arg;
    if (m->stopping) {
        event_base_loopbreak(m->base); /* a second signal: no more waiting */
        return;
    }
    m->stopping = 1;
    SH_INFO("main", "shutting down sig=%d", (int)sig);
    cl_http_stop_accepting(m->http);
    m->drain_left_ms = MAIN_DRAIN_MS;
    struct timeval poll = {0, MAIN_DRAIN_POLL_MS * 1000};
    if (event_add(m->drain_ev, &poll) != 0) {
        event_base_loopbreak(m->base);
    }
}

/* ---- main ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    main_opts o;
    int exit_now = 0;
    int rc = parse_opts(&o, argc, argv, &exit_now);
    if (exit_now) {
        return rc;
    }
    sh_log_init("classic", (sh_log_level)sh_log_level_parse(o.log_level), 2);
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        SH_ERROR("main", "cannot ignore SIGPIPE");
        return 1;
    }
    /* Before the base exists: MySQL workers wake the loop with event_active(). */
    if (evthread_use_pthreads() != 0) {
        SH_ERROR("main", "evthread_use_pthreads failed");
        return 1;
    }
    int exit_code = 1;
    main_state m;
    memset(&m, 0, sizeof m);
    cl_redis *redis = NULL;
    cl_mysql *mysql = NULL;
    cl_backend be;
    memset(&be, 0, sizeof be);
    struct event *sigterm_ev = NULL, *sigint_ev = NULL;

    m.base = event_base_new();
    if (m.base == NULL) {
        SH_ERROR("main", "event base failed");
        goto out;
    }
    sh_err err = SH_OK;
    if (o.mode == MODE_SINGLE_KEY) {
        cl_redis_config rc_cfg = {.host = o.redis_host,
                                  .port = (uint16_t)o.redis_port,
                                  .connections = (uint32_t)o.backend_conns,
                                  .order_ttl_s = MAIN_ORDER_TTL_S,
                                  .timeout_ms = 2000};
        if ((err = cl_redis_open(&redis, m.base, &rc_cfg)) != SH_OK) {
            SH_ERROR("main", "single-key backend failed err=%s", sh_strerror(err));
            goto out;
        }
        be = cl_redis_backend(redis);
    } else {
        cl_mysql_config mc = {.host = o.mysql_host,
                              .port = (uint16_t)o.mysql_port,
                              .user = o.mysql_user,
                              .password = "",
                              .database = o.mysql_db,
                              .workers = (uint32_t)o.backend_conns,
                              .queue_max = (uint32_t)o.queue,
                              .timeout_s = 10,
                              .lock_wait_s = 10};
        if ((err = cl_mysql_open(&mysql, m.base, &mc)) != SH_OK) {
            SH_ERROR("main", "mysql-row backend failed err=%s", sh_strerror(err));
            goto out;
        }
        be = cl_mysql_backend(mysql);
    }
    cl_http_config hc = {.listen = "127.0.0.1",
                         .port = (uint16_t)o.port,
                         .inflight_max = MAIN_INFLIGHT_MAX,
                         .idle_timeout_s = MAIN_IDLE_TIMEOUT_S,
                         .body_bytes_max = SH_HTTP_BODY_BYTES_MAX,
                         .max_qty = SH_QTY_UNITS_MAX,
                         .mode = be.name};
    if ((err = cl_http_open(&m.http, m.base, &hc, &be)) != SH_OK) {
        SH_ERROR("main", "HTTP server failed err=%s", sh_strerror(err));
        goto out;
    }
    m.drain_ev = event_new(m.base, -1, EV_PERSIST, main_drain_cb, &m);
    sigterm_ev = evsignal_new(m.base, SIGTERM, main_signal_cb, &m);
    sigint_ev = evsignal_new(m.base, SIGINT, main_signal_cb, &m);
    if (m.drain_ev == NULL || sigterm_ev == NULL || sigint_ev == NULL ||
        event_add(sigterm_ev, NULL) != 0 || event_add(sigint_ev, NULL) != 0) {
        SH_ERROR("main", "signal events failed");
        goto out;
    }
    SH_INFO("main", "ready mode=%s port=%lu backend_connections=%lu", be.name, o.port,
            o.backend_conns);
    if (event_base_dispatch(m.base) < 0) {
        SH_ERROR("main", "event loop failed");
        goto out;
    }
    exit_code = 0;
out:
    /* Backends first: what they still hold is answered 503 while the front exists. */
    cl_redis_free(redis);
    cl_mysql_free(mysql);
    if (m.http != NULL) {
        cl_http_log_stats(m.http);
        cl_http_free(m.http);
    }
    if (sigterm_ev != NULL) {
        event_free(sigterm_ev);
    }
    if (sigint_ev != NULL) {
        event_free(sigint_ev);
    }
    if (m.drain_ev != NULL) {
        event_free(m.drain_ev);
    }
    if (m.base != NULL) {
        event_base_free(m.base);
    }
    return exit_code;
}
