/* main.c -- stock-syncd: applies detail batches to MySQL exactly once; owns the catalog.
 *
 * Reads top to bottom: options, configuration, validation, signals, the schema
 * migrations (sw_migrate; `--migrate` stops after them), the server, then the loop, which does
 * nothing but wait for SIGTERM/SIGINT and print the counters every SW_SUMMARY_INTERVAL_MS. SIGTERM
 * and SIGINT are blocked in every thread and taken synchronously here with sigtimedwait, so no
 * handler runs on an NNG or worker thread and shutdown happens in one place, in order. SIGPIPE is
 * ignored: a peer that went away must not kill the worker. */
#include "sw_config.h"
#include "sw_migrate.h"
#include "sw_server.h"
#include "sw_stats.h"

#include "sh_clock.h"
#include "sh_daemon.h"
#include "sh_log.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define SW_SUMMARY_INTERVAL_MS 10000 /* one summary line this often, when there was traffic */
#define SW_SIGNAL_WAIT_MS      1000  /* the main loop wakes at least this often */
#define SW_MOD                 "main"

/* Checks between keys that the per-key bounds cannot express. */
static int sw_validate(const sw_config *cfg, const char *prog)
{
    if (cfg->mysql_lock_wait_timeout_s >= cfg->mysql_rw_timeout_s) {
        fprintf(stderr,
                "%s: 'mysql.lock_wait_timeout_s' (%lld) must be below 'mysql.rw_timeout_s' "
                "(%lld): a lock wait must end in a retry, not in a read timeout\n",
                prog, (long long)cfg->mysql_lock_wait_timeout_s,
                (long long)cfg->mysql_rw_timeout_s);
        return 0;
    }
    if (cfg->mysql_host[0] == '\0' && cfg->mysql_socket[0] == '\0') {
        fprintf(stderr, "%s: 'mysql.host' is empty and 'mysql.socket' is not set\n", prog);
        return 0;
    }
    return 1;
}

/* Takes "--migrate" out of argv (the shared parser knows short options only)
 * and says whether it was there. */
static int sw_take_migrate_flag(int *argc, char **argv)
{
    int found = 0;
    int k = 1;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            for (; i < *argc; i++) {
                argv[k++] = argv[i];
            }
            break;
        }
        if (strcmp(argv[i], "--migrate") == 0) {
            found = 1;
        } else {
            argv[k++] = argv[i];
        }
    }
    *argc = k;
    argv[k] = NULL;
    return found;
}

/* Brings the schema up to this binary's version; 0 when done, 1 with the
 * reason on stderr and in the log. */
static int sw_migrate_now(const sw_config *cfg, const sw_mysql_opts *mo, const char *prog)
{
    sw_migrate_result res;
    char why[SW_MYSQL_ERROR_CHARS_MAX + 64];
    sh_err rc = sw_migrate_run(mo, (unsigned)cfg->migrate_lock_timeout_s, &res, why, sizeof why);
    if (rc != SH_OK) {
        fprintf(stderr, "%s: schema migration of database '%s' failed (%s): %s\n", prog,
                cfg->mysql_database, sh_strerror(rc), why);
        return 1;
    }
    SH_INFO(SW_MOD, "schema version=%u (was %u)", res.after, res.before);
    return 0;
}

int main(int argc, char **argv)
{
    sh_daemon_args args;
    int migrate_only = sw_take_migrate_flag(&argc, argv);
    int rc = sh_daemon_parse_args(&args, argc, argv,
                                  "stock-syncd: detail batches into MySQL\n"
                                  "  --migrate  apply the schema migrations and exit (0 = done)");
    if (rc != SH_DAEMON_CONTINUE) {
        return rc;
    }
    sw_config cfg;
    int exit_now = 0;
    rc = sh_daemon_load_config(&args, sw_config_keys, sw_config_nkeys, &cfg, &exit_now);
    if (rc != 0) {
        return rc;
    }
    if (!sw_validate(&cfg, args.prog)) {
        return 1; /* with -t too, after sh_daemon's per-key "ok" */
    }
    if (exit_now) {
        return 0;
    }
    sh_log_init("syncd", (sh_log_level)sh_log_level_parse(cfg.log_level), 2);

    /* Signals: block before any thread exists so every thread inherits the mask. */
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        SH_ERROR(SW_MOD, "cannot ignore SIGPIPE");
        return 1;
    }
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &stop_set, NULL) != 0) {
        SH_ERROR(SW_MOD, "cannot block SIGTERM/SIGINT");
        return 1;
    }

    sw_stats stats;
    if (sw_stats_init(&stats) != SH_OK) {
        SH_ERROR(SW_MOD, "cannot initialise counters");
        return 1;
    }
    sw_mysql_opts mo = {
        .host = cfg.mysql_host,
        .socket = cfg.mysql_socket,
        .port = (unsigned)cfg.mysql_port,
        .user = cfg.mysql_user,
        .password = cfg.mysql_password,
        .database = cfg.mysql_database,
        .connect_timeout_s = (unsigned)cfg.mysql_connect_timeout_s,
        .rw_timeout_s = (unsigned)cfg.mysql_rw_timeout_s,
        .lock_wait_timeout_s = (unsigned)cfg.mysql_lock_wait_timeout_s,
        .backoff_max_ms = (uint32_t)cfg.mysql_retry_backoff_max_ms,
        .attempts_max = (uint32_t)cfg.mysql_retry_attempts_max,
        .retry_time_max_ms = (uint32_t)cfg.mysql_retry_time_max_ms,
    };
    if (migrate_only || cfg.migrate_on_start) {
        /* Before serving: a worker must never write a schema older or newer
         * than the one it was built for. Signals are blocked, so a SIGTERM
         * here waits until the run ends (bounded by the mysql.retry_* keys
         * and migrate.lock_timeout_s). */
        atomic_bool no_stop = false;
        sw_mysql_opts run = mo;
        run.stop = &no_stop;
        run.stats = &stats;
        if (sw_migrate_now(&cfg, &run, args.prog) != 0) {
            sw_stats_fini(&stats);
            return 1;
        }
        if (migrate_only) {
            sw_stats_fini(&stats);
            return 0;
        }
    }
    sw_server_opts so = {
        .url = cfg.syncd_listen,
        .contexts = (int)cfg.syncd_contexts,
        .threads = (int)cfg.syncd_threads,
        .group_batches_max = (int)cfg.apply_group_batches_max,
        .migrate_lock_timeout_s = (unsigned)cfg.migrate_lock_timeout_s,
        .mysql = mo,
        .stats = &stats,
    };
    sw_server *srv = NULL;
    sh_err err = sw_server_start(&srv, &so);
    if (err != SH_OK) {
        SH_ERROR(SW_MOD, "cannot start serving on %s: %s", cfg.syncd_listen, sh_strerror(err));
        sw_stats_fini(&stats);
        return 1;
    }
    SH_INFO(SW_MOD, "started mysql=%s:%lld database=%s threads=%lld",
            cfg.mysql_host[0] != '\0' ? cfg.mysql_host : cfg.mysql_socket,
            (long long)cfg.mysql_port, cfg.mysql_database, (long long)cfg.syncd_threads);

    sw_stats_snap prev;
    sw_stats_snapshot(&stats, &prev);
    uint64_t last_ms = sh_clock_mono_ms();
    int sig = 0;
    for (;;) {
        struct timespec ts = {SW_SIGNAL_WAIT_MS / 1000, (SW_SIGNAL_WAIT_MS % 1000) * 1000000L};
        sig = sigtimedwait(&stop_set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            break;
        }
        uint64_t now = sh_clock_mono_ms();
        if (now - last_ms >= SW_SUMMARY_INTERVAL_MS) {
            sw_stats_log(&stats, &prev, now - last_ms, 0);
            last_ms = now;
        }
    }
    SH_INFO(SW_MOD, "stopping signal=%d", sig);
    sw_server_stop(srv);
    sw_stats_log(&stats, &prev, sh_clock_mono_ms() - last_ms, 1);
    sw_stats_fini(&stats);
    SH_INFO(SW_MOD, "stopped");
    return 0;
}
