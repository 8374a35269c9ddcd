/* ctl_args.h -- stockctl's command line: strict parsing into a request.
 *
 * Pure functions (no I/O but the FILE * given), so the unit tests drive them
 * directly. Everything the scheduler checks is checked here too, with the
 * same bounds (sh_limits.h), so a typo is refused before it travels. */
#ifndef CTL_ARGS_H
#define CTL_ARGS_H

#include "sh_err.h"
#include "sh_limits.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CTL_SOCKET_DEFAULT     "/tmp/stock-admin.sock"
#define CTL_SOCKET_ENV         "STOCK_ADMIN_SOCKET"
#define CTL_SOCKET_PATH_MAX    107 /* sun_path holds 108 bytes with the NUL */
#define CTL_TIMEOUT_MS_DEFAULT 10000
#define CTL_TIMEOUT_MS_MAX     600000
/* 9999-12-31T23:59:59.999Z; the scheduler uses the same bound. */
#define CTL_START_MS_MAX 253402300799999LL

typedef enum ctl_cmd {
    CTL_CMD_HELP = 0,
    CTL_CMD_REGISTRY,
    CTL_CMD_SKU_LOAD,
    CTL_CMD_AUDIT,
    CTL_CMD_STATS,
    CTL_CMD_SKU_RESTOCK,
    CTL_CMD_DB_MIGRATE,
    CTL_CMD_PARTITION_RECONCILE,
} ctl_cmd;

typedef struct ctl_args {
    const char *socket_path; /* --socket, else $STOCK_ADMIN_SOCKET, else the default */
    int json;                /* --json: print the raw reply */
    int64_t timeout_ms;      /* bound on connect + request + reply */
    ctl_cmd cmd;
    char sku[SH_SKU_ID_CHARS_MAX + 1]; /* sku load, sku restock, audit, partition reconcile */
    int64_t partition;                 /* partition reconcile */
    /* sku load: without --total and --partitions, the catalog row is loaded as it is */
    int64_t total, partitions, min_chunk, max_chunk, start_ms, per_user_limit;
    int has_total, has_partitions;
    int has_min_chunk, has_max_chunk, has_start_ms, has_per_user_limit;
    const char *name; /* NULL when not given; points into argv */
    /* audit: the bound on pending work's age, ms (sh_limits.h's when not given) */
    int64_t max_pending_age_ms;
    int has_max_pending_age_ms;
    /* sku restock */
    int64_t units;
    char restock_id[SH_RESTOCK_ID_CHARS_MAX + 1];
} ctl_args;

/* Parses s as a whole decimal integer (optional '-', digits, nothing else: no
 * blanks, no '+', no hex) into *out. SH_EINVAL when it is not one, SH_ERANGE
 * when it lies outside [lo, hi] or int64_t. *out is untouched on error. */
sh_err ctl_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);

/* Parses argv (argv[0] is the program) into *a. env_socket is the value of
 * $STOCK_ADMIN_SOCKET (NULL when unset). Returns 0, or -1 with a one-line
 * reason in err (a usage error: exit 2). argv must outlive *a. */
int ctl_args_parse(ctl_args *a, int argc, char **argv, const char *env_socket, char *err,
                   size_t errlen);

/* The request line for a (no newline), as a NUL-terminated string to free
 * with cJSON_free, or NULL when out of memory. a->cmd != CTL_CMD_HELP. */
char *ctl_request_build(const ctl_args *a);

/* Prints the usage text. */
void ctl_usage(FILE *f);

#endif
