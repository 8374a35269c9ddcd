/* main.c -- stock-syncd: applies detail batches to MySQL exactly once; owns the catalog.
 *
 * Reads top to bottom: options, configuration, validation, then the loop. */
#include "sw_config.h"

#include "sh_daemon.h"
#include "sh_log.h"

int main(int argc, char **argv)
{
    sh_daemon_args args;
    int rc = sh_daemon_parse_args(&args, argc, argv, "stock-syncd: detail batches into MySQL");
    if (rc != SH_DAEMON_CONTINUE) {
        return rc;
    }
    sw_config cfg;
    int exit_now = 0;
    rc = sh_daemon_load_config(&args, sw_config_keys, sw_config_nkeys, &cfg, &exit_now);
    if (exit_now) {
        return rc;
    }
    sh_log_init("syncd", (sh_log_level)sh_log_level_parse(cfg.log_level), 2);
    SH_ERROR("main", "serving is not built yet: exact persistence arrives with a later issue");
    return 1;
}
