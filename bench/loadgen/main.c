/* main.c -- stock-loadgen: load generator for the stock server's HTTP API.
 *
 * Reads top to bottom: options, output files, the run, the verification
 * (--verify, or --verify-only instead of a run), the report, the exit code.
 * Exit 0 when the run completed (answers of any kind) and, with --verify,
 * every check held; 1 when transport errors (no HTTP answer, or still in
 * flight at --timeout) exceed 1% of the requests; 2 on a usage error or when
 * the run could not start; 3 when a verification check failed (this wins over
 * 1: a broken invariant matters more than a flaky network). */
#include "lg_opts.h"
#include "lg_run.h"
#include "lg_stats.h"
#include "lg_verify.h"
#include "lg_verify_run.h"

#include "sh_clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LG_TRANSPORT_ERROR_RATIO_MAX 0.01 /* above this the run failed (exit 1) */
#define LG_EXIT_VERIFY_FAILED        3

static FILE *open_out(const char *path, const char *what)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "stock-loadgen: cannot write %s %s: %s\n", what, path, strerror(errno));
    }
    return f;
}

/* The verification's ,"verify":{...} members as a malloc'ed string, NULL on
 * failure (the JSON then goes without them and says so on stderr). */
static char *verify_json_members(const lg_verify_result *vr)
{
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (m == NULL) {
        return NULL;
    }
    int bad = lg_verify_write_json(m, vr);
    if (fclose(m) != 0 || bad != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static void report_verify_failures(const lg_verify_result *vr)
{
    for (size_t i = 0; i < vr->nskus; i++) {
        if (vr->sku[i].verdict.failed != 0) {
            fprintf(stderr, "stock-loadgen: verification failed for sku %s: %s\n", vr->sku[i].sku,
                    vr->sku[i].verdict.message);
        }
    }
}

/* --verify-only: no load; verify, report, exit 0 or 3 (2 when the JSON
 * cannot be written). */
static int verify_only(const lg_opts *o)
{
    lg_verify_result *vr = malloc(sizeof *vr);
    if (vr == NULL) {
        fprintf(stderr, "stock-loadgen: out of memory\n");
        return 2;
    }
    int bad = lg_verify_exec(o, NULL, vr, o->quiet ? NULL : stderr) != 0;
    lg_verify_print(stdout, vr);
    fflush(stdout);
    int exit_code = bad ? LG_EXIT_VERIFY_FAILED : 0;
    if (bad) {
        report_verify_failures(vr);
    }
    if (o->json_path[0] != '\0') {
        FILE *jf = open_out(o->json_path, "--json");
        if (jf == NULL) {
            free(vr);
            return 2;
        }
        fprintf(jf, "{\"verify_only\":true");
        int werr = lg_verify_write_json(jf, vr);
        fprintf(jf, "}\n");
        if (fclose(jf) != 0 || werr != 0) {
            fprintf(stderr, "stock-loadgen: writing %s failed\n", o->json_path);
        }
    }
    free(vr);
    return exit_code;
}

int main(int argc, char **argv)
{
    /* ---- options ---- */
    lg_opts *o = malloc(sizeof *o);
    lg_stats *st = malloc(sizeof *st);
    if (o == NULL || st == NULL) {
        fprintf(stderr, "stock-loadgen: out of memory\n");
        return 2;
    }
    lg_opts_defaults(o, sh_clock_wall_ms(), (long)getpid());
    char err[256] = "";
    switch (lg_opts_parse(o, argc, argv, err, sizeof err)) {
    case LG_PARSE_HELP:
        lg_opts_usage(stdout);
        free(o);
        free(st);
        return 0;
    case LG_PARSE_ERROR:
        fprintf(stderr, "stock-loadgen: %s\n", err);
        lg_opts_usage(stderr);
        free(o);
        free(st);
        return 2;
    case LG_PARSE_OK:
        break;
    }
    if (o->verify_only) {
        free(st);
        int code = verify_only(o);
        free(o);
        return code;
    }

    /* ---- output files ---- */
    FILE *orders = NULL;
    if (o->orders_out[0] != '\0' && (orders = open_out(o->orders_out, "--orders-out")) == NULL) {
        free(o);
        free(st);
        return 2;
    }
    if (!o->quiet) {
        fprintf(
            stderr,
            "stock-loadgen: %s, %u connections, %s, skus %zu, qty %u-%u, prefix %s, seed %llu\n",
            o->url, o->connections, o->rate_per_s > 0 ? "open loop" : "closed loop", o->nskus,
            o->qty_min, o->qty_max, o->order_prefix, (unsigned long long)o->seed);
    }

    /* ---- the run ---- */
    int rc = lg_run_exec(o, st, orders, o->quiet ? NULL : stderr);
    if (orders != NULL && fclose(orders) != 0) {
        fprintf(stderr, "stock-loadgen: writing %s failed: %s\n", o->orders_out, strerror(errno));
        rc = -1;
    }
    if (rc != 0) {
        free(o);
        free(st);
        return 2;
    }

    /* ---- the verification (--verify) ----
     * After the run, before the report, so its result joins the report, the
     * JSON and the exit code. */
    lg_verify_result *vr = NULL;
    int verify_bad = 0;
    if (o->verify) {
        vr = malloc(sizeof *vr);
        if (vr == NULL) {
            fprintf(stderr, "stock-loadgen: out of memory for --verify\n");
            free(o);
            free(st);
            return 2;
        }
        verify_bad = lg_verify_exec(o, st, vr, o->quiet ? NULL : stderr) != 0;
    }

    /* ---- the report ---- */
    lg_stats_print(stdout, st, o);
    if (vr != NULL) {
        lg_verify_print(stdout, vr);
    }
    fflush(stdout);
    if (o->json_path[0] != '\0') {
        FILE *jf = open_out(o->json_path, "--json");
        if (jf == NULL) {
            free(vr);
            free(o);
            free(st);
            return 2;
        }
        char *extra = vr != NULL ? verify_json_members(vr) : NULL;
        if (vr != NULL && extra == NULL) {
            fprintf(stderr, "stock-loadgen: cannot render the verify object for %s\n",
                    o->json_path);
        }
        int bad = lg_stats_write_json(jf, st, o, extra);
        free(extra);
        if (fclose(jf) != 0 || bad != 0) {
            fprintf(stderr, "stock-loadgen: writing %s failed\n", o->json_path);
        }
    }

    /* ---- the exit code ---- */
    double ratio = lg_stats_transport_ratio(st);
    int exit_code = 0;
    if (ratio > LG_TRANSPORT_ERROR_RATIO_MAX) {
        fprintf(stderr, "stock-loadgen: transport errors %.2f%% of requests (limit %.0f%%)\n",
                ratio * 100.0, LG_TRANSPORT_ERROR_RATIO_MAX * 100.0);
        exit_code = 1;
    }
    if (verify_bad) {
        report_verify_failures(vr);
        exit_code = LG_EXIT_VERIFY_FAILED;
    }
    free(vr);
    free(o);
    free(st);
    return exit_code;
}
