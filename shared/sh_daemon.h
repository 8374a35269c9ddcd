/* sh_daemon.h -- the command line every daemon shares: -c FILE, -t, -o KEY=VALUE.
 *
 * `<daemon> -c conf/x.ini` runs; `-t` checks the configuration and exits 0
 * (or 1 with the message naming file, line and key); `-o section.key=value`
 * overrides one key after the file (start.sh uses it for ports and paths);
 * `-v` with -t prints every effective value. */
#ifndef SH_DAEMON_H
#define SH_DAEMON_H

#include "sh_config.h"

#define SH_DAEMON_OVERRIDES_MAX 32

typedef struct sh_daemon_args {
    const char *prog;
    const char *config_path; /* NULL: built-in defaults only */
    int test_only;           /* -t */
    int verbose;             /* -v */
    const char *overrides[SH_DAEMON_OVERRIDES_MAX];
    size_t noverrides;
} sh_daemon_args;

#define SH_DAEMON_CONTINUE (-1)

/* Parses argv. Returns SH_DAEMON_CONTINUE to go on, or an exit code for main to
 * return (0 after -h, 2 on bad usage, with the usage printed). */
int sh_daemon_parse_args(sh_daemon_args *args, int argc, char **argv, const char *summary);

/* Loads the configuration described by keys into cfg. On failure prints
 * "<prog>: <message>" to stderr and returns 1; with -t and success prints
 * "<prog>: configuration <path> ok" and returns 0 with *exit_now set. */
int sh_daemon_load_config(const sh_daemon_args *args, const sh_config_key *keys, size_t nkeys,
                          void *cfg, int *exit_now);

#endif
