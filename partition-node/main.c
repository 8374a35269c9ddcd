/* main.c -- stock-node: serves deductions on the partitions it owns in Redis Cluster.
 *
 * Reads top to bottom: options, configuration, signals, the executor (Redis
 * router + group-commit thread), the shipper (its own router + NNG req socket
 * to the sync workers, pn_ship.h), the NNG server, then wait for
 * SIGTERM/SIGINT and stop in reverse order. The node keeps no state of its
 * own: claims, outcomes, counters and details all live in Redis, and how far
 * each partition reached MySQL is asked of a sync worker at start, so a
 * restart (or a kill -9) loses nothing; a request in flight at the kill is
 * re-sent by the peer and answered idempotently by the scripts. */
#include "pn_config.h"
#include "pn_exec.h"
#include "pn_server.h"
#include "pn_ship.h"

#include "sh_daemon.h"
#include "sh_log.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define PN_MOD "main"

static bool pn_submit(void *arg, pn_request *req)
{
    return pn_exec_submit(arg, req);
}

/* SIGPIPE ignored (hiredis writes with write(2)); SIGTERM/SIGINT blocked in
 * every thread (NNG's and the executor inherit the mask) and taken by sigwait. */
static int pn_signals(sigset_t *wait_set)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    if (sigemptyset(&sa.sa_mask) != 0 || sigaction(SIGPIPE, &sa, NULL) != 0) {
        return -1;
    }
    if (sigemptyset(wait_set) != 0 || sigaddset(wait_set, SIGTERM) != 0 ||
        sigaddset(wait_set, SIGINT) != 0) {
        return -1;
    }
    return pthread_sigmask(SIG_BLOCK, wait_set, NULL) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    sh_daemon_args args;
    int rc = sh_daemon_parse_args(&args, argc, argv, "stock-node: partition deductions on Redis");
    if (rc != SH_DAEMON_CONTINUE) {
        return rc;
    }
    pn_config cfg;
    int exit_now = 0;
    rc = sh_daemon_load_config(&args, pn_config_keys, pn_config_nkeys, &cfg, &exit_now);
    if (rc == 0 && cfg.node_id > cfg.node_count) {
        /* A cross-key bound the table cannot express: checked here, with -t too. */
        fprintf(stderr, "%s: node.id=%lld must not exceed node.count=%lld\n", args.prog,
                (long long)cfg.node_id, (long long)cfg.node_count);
        return 1;
    }
    if (rc == 0 && cfg.deduct_wait_timeout_ms >= cfg.redis_timeout_ms) {
        /* WAIT runs under the Redis timeout: past it the router gives up on it. */
        fprintf(stderr, "%s: deduct.wait_timeout_ms=%lld must be below redis.timeout_ms=%lld\n",
                args.prog, (long long)cfg.deduct_wait_timeout_ms, (long long)cfg.redis_timeout_ms);
        return 1;
    }
    if (exit_now) {
        return rc;
    }
    sh_log_init("node", (sh_log_level)sh_log_level_parse(cfg.log_level), 2);

    sigset_t wait_set;
    if (pn_signals(&wait_set) != 0) {
        SH_ERROR(PN_MOD, "cannot set up signals");
        return 1;
    }
    pn_exec *ex = NULL;
    sh_err err = pn_exec_start(&ex, &cfg);
    if (err != SH_OK) {
        SH_ERROR(PN_MOD, "cannot start err=%s", sh_strerror(err));
        return 1;
    }
    pn_ship *ship = NULL;
    err = pn_ship_start(&ship, &cfg);
    if (err != SH_OK) {
        SH_ERROR(PN_MOD, "cannot start the shipper err=%s", sh_strerror(err));
        pn_exec_stop(ex);
        return 1;
    }
    pn_server *srv = NULL;
    err = pn_server_open(&srv, cfg.node_listen, (int)cfg.node_contexts, pn_submit, ex);
    if (err != SH_OK) {
        SH_ERROR(PN_MOD, "cannot serve on node.listen=%s: %s", cfg.node_listen, sh_strerror(err));
        pn_ship_stop(ship);
        pn_exec_stop(ex);
        return 1;
    }
    SH_INFO(PN_MOD, "serving node_id=%lld node_count=%lld listen=%s contexts=%lld",
            (long long)cfg.node_id, (long long)cfg.node_count, cfg.node_listen,
            (long long)cfg.node_contexts);

    int sig = 0;
    for (;;) {
        int wrc = sigwait(&wait_set, &sig);
        if (wrc == 0) {
            break;
        }
        SH_WARN(PN_MOD, "sigwait failed: %s", strerror(wrc));
    }
    SH_INFO(PN_MOD, "stopping signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    /* Contexts stop re-arming; the round in flight replies; queued requests are
     * dropped (their peers re-send to the next node); then NNG shuts down. */
    pn_server_quiesce(srv);
    pn_exec_stop(ex);
    /* Abandons a batch in flight: its details stay in Redis until acked. */
    pn_ship_stop(ship);
    pn_server_stats st;
    pn_server_stats_get(srv, &st);
    pn_server_close(srv);
    SH_INFO(PN_MOD,
            "stopped received=%llu sent=%llu send_errors=%llu recv_errors=%llu dropped=%llu",
            (unsigned long long)st.received, (unsigned long long)st.sent,
            (unsigned long long)st.send_errors, (unsigned long long)st.recv_errors,
            (unsigned long long)st.dropped);
    return 0;
}
