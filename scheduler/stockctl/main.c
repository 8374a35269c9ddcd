/* main.c -- stockctl: the command-line face of the scheduler's admin socket.
 *
 * Reads top to bottom: parse the command line, send one request line, read one
 * reply line, print it as a table (or raw with --json). Exit status: 0 done,
 * 1 the scheduler answered an error, or an audited invariant is broken or could
 * not be verified (MySQL unreachable), 2 a usage error or no usable answer from
 * the socket. Scripts rely on these. */
#include "ctl_args.h"
#include "ctl_fmt.h"
#include "ctl_sock.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    ctl_args args;
    char err[512];
    if (ctl_args_parse(&args, argc, argv, getenv(CTL_SOCKET_ENV), err, sizeof err) != 0) {
        fprintf(stderr, "stockctl: %s\n(stockctl --help for usage)\n", err);
        return 2;
    }
    if (args.cmd == CTL_CMD_HELP) {
        ctl_usage(stdout);
        return 0;
    }
    char *request = ctl_request_build(&args);
    if (request == NULL) {
        fprintf(stderr, "stockctl: out of memory building the request\n");
        return 2;
    }
    char *line = NULL;
    size_t len = 0;
    sh_err rc =
        ctl_sock_call(args.socket_path, request, args.timeout_ms, &line, &len, err, sizeof err);
    cJSON_free(request);
    if (rc != SH_OK) {
        fprintf(stderr, "stockctl: %s\n", err);
        return 2;
    }
    cJSON *reply = ctl_reply_parse(line, len, err, sizeof err);
    if (reply == NULL) {
        fprintf(stderr, "stockctl: admin socket %s: %s\n", args.socket_path, err);
        free(line);
        return 2;
    }
    int status;
    if (args.json) {
        printf("%s\n", line);
        status = ctl_json_status(reply);
    } else if (!ctl_reply_ok(reply)) {
        status = ctl_print_error(stderr, reply);
    } else {
        switch (args.cmd) {
        case CTL_CMD_REGISTRY:
            status = ctl_print_registry(stdout, stderr, reply);
            break;
        case CTL_CMD_SKU_LOAD:
            status = ctl_print_sku_load(stdout, stderr, args.sku, reply);
            break;
        case CTL_CMD_AUDIT:
            status = ctl_print_audit(stdout, stderr, reply);
            break;
        case CTL_CMD_SKU_RESTOCK:
            status = ctl_print_sku_restock(stdout, stderr, reply);
            break;
        case CTL_CMD_STATS:
            status = ctl_print_stats(stdout, stderr, reply);
            break;
        case CTL_CMD_DB_MIGRATE:
            status = ctl_print_db_migrate(stdout, stderr, reply);
            break;
        case CTL_CMD_PARTITION_RECONCILE:
            status = ctl_print_reconcile(stdout, stderr, reply);
            break;
        case CTL_CMD_HELP:
        default:
            status = 2;
            break;
        }
    }
    cJSON_Delete(reply);
    free(line);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "stockctl: cannot write the output\n");
        return 2;
    }
    return status;
}
