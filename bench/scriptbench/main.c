/* stock-scriptbench -- Redis time of the DEDUCT script alone, by batch size.
 *
 *   stock-scriptbench --port P [--calls N] [--items "1 8 64 256"]
 *
 * Why: the "Redis time per deduction" mixes the script's own cost
 * with what a loaded box adds (preemption inside a call counts as call time,
 * and batches are whatever the load makes them). This runs the very script the
 * nodes run (sh_stock_script_text) against a plain redis-server of its own
 * (bench/script_bench.sh starts one), one synchronous call at a time, with a
 * fixed number of new deductions per call, and reports per deduction both the
 * EVALSHA time Redis accounts (INFO commandstats) and Redis's CPU time (INFO
 * cpu: the script, parsing the request and writing the AOF).
 *
 * Each batch size gets its own partition key (hash tag "sb:<pid>:<n>"), so
 * the order hash and the detail stream grow as they do in a sale; every order
 * id is new, so every item takes the deduct path. Nothing is cleaned up: the
 * redis-server is a scratch one. */
#include "sh_log.h"
#include "sh_stock.h"

#include <hiredis/hiredis.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define SB_CALLS_DEFAULT 200
#define SB_CALLS_MAX     100000
#define SB_ITEMS_MAX     SH_DEDUCT_BATCH_ITEMS_MAX
#define SB_SIZES_MAX     16
#define SB_STOCK_UNITS   1000000000 /* never runs out */
#define SB_ID_BYTES      48
#define SB_TIMEOUT_S     10
#define SB_CLAIM_TTL_S   "604800"
#define SB_FIXED_ARGS    (3 + 3 + SH_DEDUCT_FIXED_ARGS) /* EVALSHA sha 3 st d o now low ttl n rid */

static void sb_usage(FILE *f)
{
    fprintf(f, "usage: stock-scriptbench --port P [--calls N] [--items \"1 8 64 256\"]\n"
               "  Runs the DEDUCT script on 127.0.0.1:P (a scratch redis-server) N times per\n"
               "  batch size and prints Redis time per deduction.\n");
}

static redisReply *sb_cmd(redisContext *c, int argc, const char **argv, const size_t *lens)
{
    redisReply *r = redisCommandArgv(c, argc, argv, lens);
    if (r == NULL) {
        fprintf(stderr, "scriptbench: redis: %s\n", c->errstr);
        exit(1);
    }
    if (r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "scriptbench: %s: %s\n", argv[0], r->str);
        exit(1);
    }
    return r;
}

/* Reads the number after "key:" in INFO section (0 when absent). */
static double sb_info_num(redisContext *c, const char *section, const char *key)
{
    const char *argv[] = {"INFO", section};
    redisReply *r = sb_cmd(c, 2, argv, NULL);
    char pat[64];
    snprintf(pat, sizeof pat, "%s:", key);
    const char *p = r->str != NULL ? strstr(r->str, pat) : NULL;
    double v = p != NULL ? strtod(p + strlen(pat), NULL) : 0;
    freeReplyObject(r);
    return v;
}

/* Redis's own CPU time, s. */
static double sb_cpu_s(redisContext *c)
{
    return sb_info_num(c, "cpu", "used_cpu_sys") + sb_info_num(c, "cpu", "used_cpu_user");
}

/* usec=... of cmdstat_evalsha since the last CONFIG RESETSTAT. */
static double sb_evalsha_usec(redisContext *c)
{
    const char *argv[] = {"INFO", "commandstats"};
    redisReply *r = sb_cmd(c, 2, argv, NULL);
    const char *p = r->str != NULL ? strstr(r->str, "cmdstat_evalsha:") : NULL;
    p = p != NULL ? strstr(p, "usec=") : NULL;
    double v = p != NULL ? strtod(p + 5, NULL) : 0;
    freeReplyObject(r);
    return v;
}

static int sb_parse_sizes(const char *s, unsigned *sizes)
{
    int n = 0;
    const char *p = s;
    while (*p != '\0') {
        while (*p == ' ') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        char *end = NULL;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > SB_ITEMS_MAX || n == SB_SIZES_MAX ||
            (*end != ' ' && *end != '\0')) {
            return -1;
        }
        sizes[n++] = (unsigned)v;
        p = end;
    }
    return n > 0 ? n : -1;
}

/* One batch size: calls EVALSHA calls of n new deductions each. */
static void sb_run(redisContext *c, const char *sha, unsigned n, long calls)
{
    char st[SH_STOCK_KEY_BYTES_MAX], dk[SH_STOCK_KEY_BYTES_MAX], ok[SH_STOCK_KEY_BYTES_MAX];
    char sku[32];
    snprintf(sku, sizeof sku, "sb%ld", (long)getpid());
    sh_stock_key_part(st, sku, n, 0, 's');
    sh_stock_key_part(dk, sku, n, 0, 'd');
    sh_stock_key_part(ok, sku, n, 0, 'o');
    char units[24];
    snprintf(units, sizeof units, "%d", SB_STOCK_UNITS);
    const char *init[] = {"HSET", st,    "a", "0",   "s0", units,   "s1",
                          "0",    "ded", "0", "seq", "0",  "state", "open"};
    freeReplyObject(sb_cmd(c, (int)(sizeof init / sizeof init[0]), init, NULL));

    size_t argc = SB_FIXED_ARGS + (size_t)n * SH_DEDUCT_ITEM_ARGS;
    const char **argv = calloc(argc, sizeof *argv);
    char(*orders)[SB_ID_BYTES] = calloc(n, sizeof *orders);
    if (argv == NULL || orders == NULL) {
        fprintf(stderr, "scriptbench: out of memory\n");
        exit(1);
    }
    char now[24], nstr[24], rid[32];
    snprintf(nstr, sizeof nstr, "%u", n);
    const char *reset[] = {"CONFIG", "RESETSTAT"};
    freeReplyObject(sb_cmd(c, 2, reset, NULL));
    double cpu0 = sb_cpu_s(c);
    for (long k = 0; k < calls; k++) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        snprintf(now, sizeof now, "%lld", (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000);
        size_t a = 0;
        argv[a++] = "EVALSHA";
        argv[a++] = sha;
        argv[a++] = "3";
        argv[a++] = st;
        argv[a++] = dk;
        argv[a++] = ok;
        argv[a++] = now;
        argv[a++] = "0";
        argv[a++] = SB_CLAIM_TTL_S;
        argv[a++] = nstr;
        snprintf(rid, sizeof rid, "sb.%ld", k); /* a new round id per call */
        argv[a++] = rid;
        for (unsigned i = 0; i < n; i++) {
            snprintf(orders[i], SB_ID_BYTES, "o-%ld-%u", k, i);
            argv[a++] = orders[i];
        }
        for (unsigned i = 0; i < n; i++) {
            argv[a++] = "D";
            argv[a++] = "user-1";
            argv[a++] = "1";
            argv[a++] = "1";
        }
        SH_ASSERT(a == argc);
        redisReply *r = sb_cmd(c, (int)argc, argv, NULL);
        if (r->type != REDIS_REPLY_ARRAY ||
            r->elements != SH_DEDUCT_REPLY_FIXED + (size_t)n * SH_DEDUCT_REPLY_ITEM) {
            fprintf(stderr, "scriptbench: unexpected DEDUCT reply\n");
            exit(1);
        }
        freeReplyObject(r);
    }
    double cpu1 = sb_cpu_s(c);
    double usec = sb_evalsha_usec(c);
    double items = (double)calls * n;
    printf("items_per_call=%u calls=%ld evalsha_us_per_call=%.1f evalsha_us_per_deduction=%.2f "
           "redis_cpu_us_per_deduction=%.2f\n",
           n, calls, usec / (double)calls, usec / items, (cpu1 - cpu0) * 1e6 / items);
    fflush(stdout);
    free(argv);
    free(orders);
}

int main(int argc, char **argv)
{
    long port = 0, calls = SB_CALLS_DEFAULT;
    const char *items = "1 8 64 256";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            sb_usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "scriptbench: %s needs a value\n", argv[i]);
            sb_usage(stderr);
            return 2;
        }
        char *end = NULL;
        if (strcmp(argv[i], "--port") == 0) {
            port = strtol(argv[++i], &end, 10);
            if (*end != '\0' || port < 1 || port > 65535) {
                fprintf(stderr, "scriptbench: --port must be 1..65535\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--calls") == 0) {
            calls = strtol(argv[++i], &end, 10);
            if (*end != '\0' || calls < 1 || calls > SB_CALLS_MAX) {
                fprintf(stderr, "scriptbench: --calls must be 1..%d\n", SB_CALLS_MAX);
                return 2;
            }
        } else if (strcmp(argv[i], "--items") == 0) {
            items = argv[++i];
        } else {
            fprintf(stderr, "scriptbench: unknown argument %s\n", argv[i]);
            sb_usage(stderr);
            return 2;
        }
    }
    unsigned sizes[SB_SIZES_MAX];
    int nsizes = sb_parse_sizes(items, sizes);
    if (port == 0 || nsizes < 0) {
        fprintf(stderr, "scriptbench: %s\n",
                port == 0 ? "--port is required" : "--items: 1..16 sizes in 1..1024");
        sb_usage(stderr);
        return 2;
    }
    struct timeval tmo = {SB_TIMEOUT_S, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", (int)port, tmo);
    if (c == NULL || c->err) {
        fprintf(stderr, "scriptbench: cannot connect to 127.0.0.1:%ld: %s\n", port,
                c != NULL ? c->errstr : "out of memory");
        return 1;
    }
    redisSetTimeout(c, tmo);
    const char *load[] = {"SCRIPT", "LOAD", sh_stock_script_text(SH_SCRIPT_DEDUCT)};
    redisReply *r = sb_cmd(c, 3, load, NULL);
    char sha[48];
    snprintf(sha, sizeof sha, "%s", r->str != NULL ? r->str : "");
    freeReplyObject(r);
    for (int i = 0; i < nsizes; i++) {
        sb_run(c, sha, sizes[i], calls);
    }
    redisFree(c);
    return 0;
}
