/* ctl_args.c -- stockctl's command line: strict parsing into a request.
 *
 * An operator types these under pressure during a sale, so nothing is guessed:
 * numbers must be whole decimal integers within the scheduler's own bounds,
 * an option given twice or unknown is an error, and the message says which
 * argument is wrong. Global options (--socket, --json, --timeout-ms) may come
 * before or after the command. */
#include "ctl_args.h"

#include "sh_id.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void ctl_usage(FILE *f)
{
    fprintf(f,
            "usage: stockctl [--socket PATH] [--json] [--timeout-ms N] COMMAND ...\n"
            "\n"
            "commands:\n"
            "  registry                 SKUs and their partitions as the scheduler sees them\n"
            "  sku load SKU [--total N --partitions P [--min-chunk N] [--max-chunk N]\n"
            "           [--start UNIX_MS] [--per-user-limit N] [--name NAME]]\n"
            "                           load a SKU from its catalog row (MySQL); with --total\n"
            "                           and --partitions the row is created first if absent.\n"
            "                           Loading again changes nothing: the stored row wins\n"
            "  sku restock SKU UNITS --id RESTOCK_ID\n"
            "                           add UNITS to the SKU's total, once per RESTOCK_ID\n"
            "  audit SKU [--max-pending-age-ms N]\n"
            "                           check the invariants of one SKU in Redis and MySQL;\n"
            "                           pending work or an unshipped detail older than N ms\n"
            "                           (default and most %d) breaks it\n"
            "  partition reconcile SKU P\n"
            "                           repair partition P of SKU after Redis lost answered\n"
            "                           deductions (the audit names it diverged): MySQL's\n"
            "                           details stay, what only Redis answered is renumbered\n"
            "                           after them, counters, records and claims are rebuilt\n"
            "                           and the partition opens; prints what changed. Exit 1\n"
            "                           when units are oversold (answered, and backed by none)\n"
            "  stats                    the scheduler's counters\n"
            "  db migrate               have a sync worker apply the schema migrations it\n"
            "                           carries (sql/migrations); prints the version before\n"
            "                           and after. Safe to repeat; a database newer than the\n"
            "                           worker is refused\n"
            "  help                     this text\n"
            "\n"
            "options:\n"
            "  --socket PATH            admin socket (default $%s, else %s)\n"
            "  --json                   print the scheduler's raw JSON reply\n"
            "  --timeout-ms N           give up after N ms (default %d)\n"
            "\n"
            "exit status: 0 ok; 1 the scheduler answered an error or an invariant is broken;\n"
            "2 usage error or no answer from the admin socket.\n",
            SH_AUDIT_PENDING_AGE_MS_MAX, CTL_SOCKET_ENV, CTL_SOCKET_DEFAULT,
            CTL_TIMEOUT_MS_DEFAULT);
}

sh_err ctl_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    if (s == NULL || out == NULL) {
        return SH_EINVAL;
    }
    const char *p = s[0] == '-' ? s + 1 : s;
    if (*p == '\0') {
        return SH_EINVAL;
    }
    for (const char *q = p; *q != '\0'; q++) {
        if (*q < '0' || *q > '9') {
            return SH_EINVAL;
        }
    }
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (end == NULL || *end != '\0') {
        return SH_EINVAL;
    }
    if (errno == ERANGE || v < lo || v > hi) {
        return SH_ERANGE;
    }
    *out = (int64_t)v;
    return SH_OK;
}

static int ctl_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int ctl_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Matches argv[*i] against option name, as "--name VALUE" or "--name=VALUE".
 * Returns 1 and sets *val (advancing *i past a separate value), 0 when it is
 * another option, -1 when the value is missing. */
static int ctl_opt_value(int argc, char **argv, int *i, const char *name, const char **val)
{
    size_t n = strlen(name);
    const char *arg = argv[*i];
    if (strncmp(arg, name, n) != 0) {
        return 0;
    }
    if (arg[n] == '=') {
        *val = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0') {
        return 0;
    }
    if (*i + 1 >= argc) {
        return -1;
    }
    *i += 1;
    *val = argv[*i];
    return 1;
}

/* Parses a numeric option value with a message naming the option. */
static int ctl_num(const char *opt, const char *val, int64_t lo, int64_t hi, int64_t *out,
                   char *err, size_t errlen)
{
    sh_err rc = ctl_parse_i64(val, lo, hi, out);
    if (rc == SH_EINVAL) {
        return ctl_fail(err, errlen, "%s: '%s' is not a whole decimal number", opt, val);
    }
    if (rc != SH_OK) {
        return ctl_fail(err, errlen, "%s: %s is outside %" PRId64 "..%" PRId64, opt, val, lo, hi);
    }
    return 0;
}

/* Tries the global options at argv[*i]. Returns 1 when one matched, 0 when
 * argv[*i] is not a global option, -1 on error. */
static int ctl_global(ctl_args *a, int argc, char **argv, int *i, int *seen_socket, char *err,
                      size_t errlen)
{
    const char *val = NULL;
    const char *arg = argv[*i];
    if (strcmp(arg, "--json") == 0) {
        a->json = 1;
        return 1;
    }
    int m = ctl_opt_value(argc, argv, i, "--socket", &val);
    if (m < 0) {
        return ctl_fail(err, errlen, "--socket needs a path");
    }
    if (m > 0) {
        if (*seen_socket) {
            return ctl_fail(err, errlen, "--socket given twice");
        }
        *seen_socket = 1;
        a->socket_path = val;
        return 1;
    }
    m = ctl_opt_value(argc, argv, i, "--timeout-ms", &val);
    if (m < 0) {
        return ctl_fail(err, errlen, "--timeout-ms needs a value");
    }
    if (m > 0) {
        return ctl_num("--timeout-ms", val, 1, CTL_TIMEOUT_MS_MAX, &a->timeout_ms, err, errlen) == 0
                   ? 1
                   : -1;
    }
    return 0;
}

static int ctl_set_sku(ctl_args *a, const char *s, char *err, size_t errlen)
{
    size_t n = strlen(s);
    sh_err rc = sh_id_check_sku(s, n);
    if (rc != SH_OK) {
        return ctl_fail(err, errlen, "bad SKU id '%.80s': 1..%d characters of [A-Za-z0-9_.-]", s,
                        SH_SKU_ID_CHARS_MAX);
    }
    memcpy(a->sku, s, n + 1);
    return 0;
}

/* The numeric options of `sku load` (audit 0) and of `audit` (audit 1). */
typedef struct ctl_load_opt {
    const char *name;
    int64_t lo, hi;
    size_t value_off; /* offsetof(ctl_args, ...) */
    size_t has_off;   /* offsetof(ctl_args, has_...) */
    int audit;
} ctl_load_opt;

static const ctl_load_opt ctl_load_opts[] = {
    {"--total", 1, SH_SKU_TOTAL_UNITS_MAX, offsetof(ctl_args, total), offsetof(ctl_args, has_total),
     0},
    {"--partitions", 1, SH_PARTITIONS_PER_SKU_MAX, offsetof(ctl_args, partitions),
     offsetof(ctl_args, has_partitions), 0},
    {"--min-chunk", SH_CHUNK_UNITS_MIN, SH_CHUNK_UNITS_MAX, offsetof(ctl_args, min_chunk),
     offsetof(ctl_args, has_min_chunk), 0},
    {"--max-chunk", SH_CHUNK_UNITS_MIN, SH_CHUNK_UNITS_MAX, offsetof(ctl_args, max_chunk),
     offsetof(ctl_args, has_max_chunk), 0},
    {"--start", 0, CTL_START_MS_MAX, offsetof(ctl_args, start_ms), offsetof(ctl_args, has_start_ms),
     0},
    {"--per-user-limit", 0, SH_PER_USER_LIMIT_UNITS_MAX, offsetof(ctl_args, per_user_limit),
     offsetof(ctl_args, has_per_user_limit), 0},
    {"--max-pending-age-ms", 1, SH_AUDIT_PENDING_AGE_MS_MAX, offsetof(ctl_args, max_pending_age_ms),
     offsetof(ctl_args, has_max_pending_age_ms), 1},
};
#define CTL_LOAD_NOPTS (sizeof ctl_load_opts / sizeof ctl_load_opts[0])

/* Parses the words after the command: positionals into pos[] (at most maxpos),
 * `sku load` options when load != 0, `sku restock`'s --id when restock != 0. */
static int ctl_sub_args(ctl_args *a, int argc, char **argv, int i, int load, int restock,
                        const char **pos, int maxpos, int *npos, int *seen_socket, char *err,
                        size_t errlen)
{
    int seen[CTL_LOAD_NOPTS] = {0};
    int seen_name = 0, seen_id = 0;
    int opts_done = 0;
    *npos = 0;
    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (!opts_done && strcmp(arg, "--") == 0) {
            opts_done = 1;
            continue;
        }
        if (opts_done || arg[0] != '-' || arg[1] == '\0') {
            if (*npos >= maxpos) {
                return ctl_fail(err, errlen, "unexpected argument '%.80s'", arg);
            }
            pos[(*npos)++] = arg;
            continue;
        }
        int g = ctl_global(a, argc, argv, &i, seen_socket, err, errlen);
        if (g < 0) {
            return -1;
        }
        if (g > 0) {
            continue;
        }
        int matched = 0;
        int audit = a->cmd == CTL_CMD_AUDIT;
        for (size_t k = 0; (load || audit) && k < CTL_LOAD_NOPTS && !matched; k++) {
            const ctl_load_opt *o = &ctl_load_opts[k];
            if (o->audit != audit) {
                continue;
            }
            const char *val = NULL;
            int m = ctl_opt_value(argc, argv, &i, o->name, &val);
            if (m < 0) {
                return ctl_fail(err, errlen, "%s needs a value", o->name);
            }
            if (m == 0) {
                continue;
            }
            if (seen[k]) {
                return ctl_fail(err, errlen, "%s given twice", o->name);
            }
            seen[k] = 1;
            int64_t v;
            if (ctl_num(o->name, val, o->lo, o->hi, &v, err, errlen) != 0) {
                return -1;
            }
            memcpy((char *)a + o->value_off, &v, sizeof v);
            int one = 1;
            memcpy((char *)a + o->has_off, &one, sizeof one);
            matched = 1;
        }
        if (!matched && load) {
            const char *val = NULL;
            int m = ctl_opt_value(argc, argv, &i, "--name", &val);
            if (m < 0) {
                return ctl_fail(err, errlen, "--name needs a value");
            }
            if (m > 0) {
                if (seen_name) {
                    return ctl_fail(err, errlen, "--name given twice");
                }
                seen_name = 1;
                size_t n = strlen(val);
                if (n > SH_SKU_NAME_CHARS_MAX) {
                    return ctl_fail(err, errlen, "--name is longer than %d bytes",
                                    SH_SKU_NAME_CHARS_MAX);
                }
                for (size_t k = 0; k < n; k++) {
                    unsigned char ch = (unsigned char)val[k];
                    if (ch < 0x20 || ch == 0x7f) {
                        return ctl_fail(err, errlen, "--name holds a control character");
                    }
                }
                a->name = val;
                matched = 1;
            }
        }
        if (!matched && restock) {
            const char *val = NULL;
            int m = ctl_opt_value(argc, argv, &i, "--id", &val);
            if (m < 0) {
                return ctl_fail(err, errlen, "--id needs a value");
            }
            if (m > 0) {
                if (seen_id) {
                    return ctl_fail(err, errlen, "--id given twice");
                }
                seen_id = 1;
                size_t n = strlen(val);
                if (sh_id_check_order(val, n) != SH_OK) {
                    return ctl_fail(err, errlen,
                                    "bad restock id '%.80s': 1..%d characters of [A-Za-z0-9_.:-]",
                                    val, SH_ORDER_ID_CHARS_MAX);
                }
                memcpy(a->restock_id, val, n + 1);
                matched = 1;
            }
        }
        if (!matched) {
            return ctl_fail(err, errlen, "unknown option '%.80s'", arg);
        }
    }
    if (restock && !seen_id) {
        return ctl_fail(err, errlen, "sku restock needs --id RESTOCK_ID");
    }
    if (load) {
        /* Both or neither: without them the catalog row is loaded as it is, and
         * the sale parameters belong to the row they would create. */
        if (a->has_total && !a->has_partitions) {
            return ctl_fail(err, errlen, "sku load with --total needs --partitions");
        }
        if (a->has_partitions && !a->has_total) {
            return ctl_fail(err, errlen, "sku load with --partitions needs --total");
        }
        if (!a->has_total && (a->has_min_chunk || a->has_max_chunk || a->has_start_ms ||
                              a->has_per_user_limit || a->name != NULL)) {
            return ctl_fail(err, errlen,
                            "sku load: sale parameters need --total and --partitions (they "
                            "create the catalog row)");
        }
        if (a->has_min_chunk && a->has_max_chunk && a->min_chunk > a->max_chunk) {
            return ctl_fail(err, errlen,
                            "--min-chunk %" PRId64 " is larger than --max-chunk %" PRId64,
                            a->min_chunk, a->max_chunk);
        }
    }
    return 0;
}

int ctl_args_parse(ctl_args *a, int argc, char **argv, const char *env_socket, char *err,
                   size_t errlen)
{
    if (a == NULL || argv == NULL || err == NULL || errlen == 0) {
        return -1;
    }
    memset(a, 0, sizeof *a);
    err[0] = '\0';
    a->timeout_ms = CTL_TIMEOUT_MS_DEFAULT;
    a->cmd = CTL_CMD_HELP;
    /* -h or --help anywhere (before a "--") asks for the usage, whatever else
     * the line holds: it is what someone typing a half-remembered command wants. */
    for (int k = 1; k < argc && strcmp(argv[k], "--") != 0; k++) {
        if (strcmp(argv[k], "-h") == 0 || strcmp(argv[k], "--help") == 0) {
            return 0;
        }
    }
    int seen_socket = 0;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        int g = ctl_global(a, argc, argv, &i, &seen_socket, err, errlen);
        if (g < 0) {
            return -1;
        }
        if (g == 0) {
            return ctl_fail(err, errlen, "unknown option '%.80s'", argv[i]);
        }
    }
    if (i >= argc) {
        return ctl_fail(err, errlen,
                        "no command given (registry, sku load, sku restock, audit, stats, "
                        "db migrate, partition reconcile)");
    }
    const char *cmd = argv[i++];
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    int rc;
    if (strcmp(cmd, "help") == 0) {
        a->cmd = CTL_CMD_HELP;
        return 0;
    } else if (strcmp(cmd, "registry") == 0 || strcmp(cmd, "stats") == 0) {
        a->cmd = cmd[0] == 'r' ? CTL_CMD_REGISTRY : CTL_CMD_STATS;
        rc = ctl_sub_args(a, argc, argv, i, 0, 0, pos, 0, &npos, &seen_socket, err, errlen);
    } else if (strcmp(cmd, "audit") == 0) {
        a->cmd = CTL_CMD_AUDIT;
        rc = ctl_sub_args(a, argc, argv, i, 0, 0, pos, 1, &npos, &seen_socket, err, errlen);
        if (rc == 0 && npos != 1) {
            rc = ctl_fail(err, errlen, "usage: stockctl audit SKU [--max-pending-age-ms N]");
        }
        if (rc == 0) {
            rc = ctl_set_sku(a, pos[0], err, errlen);
        }
    } else if (strcmp(cmd, "sku") == 0 && i < argc && strcmp(argv[i], "restock") == 0) {
        a->cmd = CTL_CMD_SKU_RESTOCK;
        rc = ctl_sub_args(a, argc, argv, i + 1, 0, 1, pos, 2, &npos, &seen_socket, err, errlen);
        if (rc == 0 && npos != 2) {
            rc = ctl_fail(err, errlen, "usage: stockctl sku restock SKU UNITS --id RESTOCK_ID");
        }
        if (rc == 0) {
            rc = ctl_set_sku(a, pos[0], err, errlen);
        }
        if (rc == 0) {
            rc = ctl_num("UNITS", pos[1], 1, SH_SKU_TOTAL_UNITS_MAX, &a->units, err, errlen);
        }
    } else if (strcmp(cmd, "partition") == 0) {
        if (i >= argc || strcmp(argv[i], "reconcile") != 0) {
            return ctl_fail(err, errlen, "usage: stockctl partition reconcile SKU P");
        }
        a->cmd = CTL_CMD_PARTITION_RECONCILE;
        rc = ctl_sub_args(a, argc, argv, i + 1, 0, 0, pos, 2, &npos, &seen_socket, err, errlen);
        if (rc == 0 && npos != 2) {
            rc = ctl_fail(err, errlen, "usage: stockctl partition reconcile SKU P");
        }
        if (rc == 0) {
            rc = ctl_set_sku(a, pos[0], err, errlen);
        }
        if (rc == 0) {
            rc = ctl_num("P", pos[1], 0, SH_PARTITIONS_PER_SKU_MAX - 1, &a->partition, err, errlen);
        }
    } else if (strcmp(cmd, "db") == 0) {
        if (i >= argc || strcmp(argv[i], "migrate") != 0) {
            return ctl_fail(err, errlen, "usage: stockctl db migrate");
        }
        a->cmd = CTL_CMD_DB_MIGRATE;
        rc = ctl_sub_args(a, argc, argv, i + 1, 0, 0, pos, 0, &npos, &seen_socket, err, errlen);
    } else if (strcmp(cmd, "sku") == 0) {
        if (i >= argc || strcmp(argv[i], "load") != 0) {
            return ctl_fail(err, errlen,
                            "usage: stockctl sku load SKU [--total N --partitions P] | "
                            "stockctl sku restock SKU UNITS --id RESTOCK_ID");
        }
        a->cmd = CTL_CMD_SKU_LOAD;
        rc = ctl_sub_args(a, argc, argv, i + 1, 1, 0, pos, 1, &npos, &seen_socket, err, errlen);
        if (rc == 0) {
            if (npos != 1) {
                rc = ctl_fail(err, errlen,
                              "usage: stockctl sku load SKU [--total N --partitions P]");
            } else {
                rc = ctl_set_sku(a, pos[0], err, errlen);
            }
        }
    } else {
        return ctl_fail(err, errlen,
                        "unknown command '%.80s' (registry, sku load, sku restock, audit, stats, "
                        "db migrate, partition reconcile)",
                        cmd);
    }
    if (rc != 0) {
        return -1;
    }
    if (!seen_socket) {
        a->socket_path =
            env_socket != NULL && env_socket[0] != '\0' ? env_socket : CTL_SOCKET_DEFAULT;
    }
    size_t plen = strlen(a->socket_path);
    if (plen == 0 || plen > CTL_SOCKET_PATH_MAX) {
        return ctl_fail(err, errlen, "socket path '%.120s' is empty or longer than %d bytes",
                        a->socket_path, CTL_SOCKET_PATH_MAX);
    }
    return 0;
}

static int ctl_add_i64(cJSON *o, const char *key, int64_t v)
{
    char digits[24];
    snprintf(digits, sizeof digits, "%" PRId64, v);
    return cJSON_AddRawToObject(o, key, digits) != NULL ? 0 : -1;
}

char *ctl_request_build(const ctl_args *a)
{
    static const char *const names[] = {
        [CTL_CMD_REGISTRY] = "registry",
        [CTL_CMD_SKU_LOAD] = "sku_load",
        [CTL_CMD_AUDIT] = "audit",
        [CTL_CMD_STATS] = "stats",
        [CTL_CMD_SKU_RESTOCK] = "sku_restock",
        [CTL_CMD_DB_MIGRATE] = "db_migrate",
        [CTL_CMD_PARTITION_RECONCILE] = "partition_reconcile",
    };
    if (a == NULL || a->cmd == CTL_CMD_HELP || (size_t)a->cmd >= sizeof names / sizeof names[0]) {
        return NULL;
    }
    cJSON *req = cJSON_CreateObject();
    if (req == NULL || cJSON_AddStringToObject(req, "cmd", names[a->cmd]) == NULL) {
        goto fail;
    }
    if (a->cmd == CTL_CMD_AUDIT || a->cmd == CTL_CMD_SKU_LOAD || a->cmd == CTL_CMD_SKU_RESTOCK ||
        a->cmd == CTL_CMD_PARTITION_RECONCILE) {
        if (cJSON_AddStringToObject(req, "sku", a->sku) == NULL) {
            goto fail;
        }
    }
    if (a->cmd == CTL_CMD_AUDIT && a->has_max_pending_age_ms &&
        ctl_add_i64(req, "max_pending_age_ms", a->max_pending_age_ms) != 0) {
        goto fail;
    }
    if (a->cmd == CTL_CMD_PARTITION_RECONCILE && ctl_add_i64(req, "partition", a->partition) != 0) {
        goto fail;
    }
    if (a->cmd == CTL_CMD_SKU_RESTOCK) {
        if (ctl_add_i64(req, "units", a->units) != 0 ||
            cJSON_AddStringToObject(req, "restock_id", a->restock_id) == NULL) {
            goto fail;
        }
    }
    if (a->cmd == CTL_CMD_SKU_LOAD && a->has_total) {
        if (ctl_add_i64(req, "total", a->total) != 0 ||
            ctl_add_i64(req, "partitions", a->partitions) != 0 ||
            (a->has_min_chunk && ctl_add_i64(req, "min_chunk", a->min_chunk) != 0) ||
            (a->has_max_chunk && ctl_add_i64(req, "max_chunk", a->max_chunk) != 0) ||
            (a->has_start_ms && ctl_add_i64(req, "start_ms", a->start_ms) != 0) ||
            (a->has_per_user_limit && ctl_add_i64(req, "per_user_limit", a->per_user_limit) != 0) ||
            (a->name != NULL && cJSON_AddStringToObject(req, "name", a->name) == NULL)) {
            goto fail;
        }
    }
    char *text = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    return text;
fail:
    cJSON_Delete(req);
    return NULL;
}
