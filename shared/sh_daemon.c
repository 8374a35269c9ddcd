/* sh_daemon.c -- shared command-line handling for the daemons. */
#define _POSIX_C_SOURCE 200809L
#include "sh_daemon.h"

#include "sh_log.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void sh_daemon_usage(const char *prog, const char *summary, FILE *to)
{
    fprintf(to,
            "usage: %s [-c FILE] [-t [-v]] [-o section.key=value ...]\n"
            "%s\n"
            "  -c FILE   configuration file (INI); without it, built-in defaults\n"
            "  -t        check the configuration and exit (0 = valid)\n"
            "  -v        with -t, print every effective value\n"
            "  -o K=V    override one key after the file, e.g. -o http.port=8081\n",
            prog, summary);
}

int sh_daemon_parse_args(sh_daemon_args *args, int argc, char **argv, const char *summary)
{
    SH_ASSERT(args != NULL && argc >= 1);
    memset(args, 0, sizeof *args);
    const char *slash = strrchr(argv[0], '/');
    args->prog = slash ? slash + 1 : argv[0];
    int opt;
    opterr = 0;
    optind = 1;
    while ((opt = getopt(argc, argv, "c:to:vh")) != -1) {
        switch (opt) {
        case 'c':
            args->config_path = optarg;
            break;
        case 't':
            args->test_only = 1;
            break;
        case 'v':
            args->verbose = 1;
            break;
        case 'o':
            if (args->noverrides == SH_DAEMON_OVERRIDES_MAX) {
                fprintf(stderr, "%s: more than %d -o options\n", args->prog,
                        SH_DAEMON_OVERRIDES_MAX);
                return 2;
            }
            args->overrides[args->noverrides++] = optarg;
            break;
        case 'h':
            sh_daemon_usage(args->prog, summary, stdout);
            return 0;
        default:
            fprintf(stderr, "%s: unknown or incomplete option -%c\n", args->prog, optopt);
            sh_daemon_usage(args->prog, summary, stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", args->prog, argv[optind]);
        sh_daemon_usage(args->prog, summary, stderr);
        return 2;
    }
    return SH_DAEMON_CONTINUE;
}

int sh_daemon_load_config(const sh_daemon_args *args, const sh_config_key *keys, size_t nkeys,
                          void *cfg, int *exit_now)
{
    char err[SH_CONFIG_ERR_BYTES];
    *exit_now = 0;
    sh_err rc = sh_config_load(keys, nkeys, cfg, args->config_path, args->overrides,
                               args->noverrides, err, sizeof err);
    if (rc != SH_OK) {
        fprintf(stderr, "%s: %s\n", args->prog, err);
        *exit_now = 1;
        return 1;
    }
    if (args->test_only) {
        if (args->verbose) {
            sh_config_dump(keys, nkeys, cfg, 1);
        }
        printf("%s: configuration %s ok\n", args->prog,
               args->config_path ? args->config_path : "(defaults)");
        *exit_now = 1;
        return 0;
    }
    return 0;
}
