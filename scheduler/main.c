/* main.c -- stock-scheduler: the HTTP front door, registry, pool and admin socket.
 *
 * Reads top to bottom: options, configuration, validation, then the loop. */
#include "sch_config.h"

#include "sh_daemon.h"
#include "sh_log.h"

#include <stdio.h>

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
    SH_ERROR("main", "serving is not built yet: the deduction path arrives with the next issue");
    return 1;
}
