/* main.c -- stock-loadgen: load generator for the stock server's HTTP API.
 *
 * Reads top to bottom: options, output files, the run, the report, the exit
 * code. Exit 0 when the run completed (answers of any kind), 1 when transport
 * errors (no HTTP answer, or still in flight at --timeout) exceed 1% of the
 * requests, 2 on a usage error or when the run could not start. */
#include "lg_opts.h"
#include "lg_run.h"
#include "lg_stats.h"

#include "sh_clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LG_TRANSPORT_ERROR_RATIO_MAX 0.01 /* above this the run failed (exit 1) */

static FILE *open_out(const char *path, const char *what)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "stock-loadgen: cannot write %s %s: %s\n", what, path, strerror(errno));
    }
    return f;
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

    /* ---- --verify (later issue) ----
     * Checks the answers against the server's own numbers (admin socket audit,
     * MySQL details) go here: after the run, before the report, so their
     * result can join the report, the JSON and the exit code. */

    /* ---- the report ---- */
    lg_stats_print(stdout, st);
    fflush(stdout);
    if (o->json_path[0] != '\0') {
        FILE *jf = open_out(o->json_path, "--json");
        if (jf == NULL) {
            free(o);
            free(st);
            return 2;
        }
        int bad = lg_stats_write_json(jf, st);
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
    free(o);
    free(st);
    return exit_code;
}
