/* cl_http.h -- stock-classic's HTTP front: the same requests and answers as
 * our scheduler (scheduler/sch_http.c), in front of a classic backend.
 *
 * POST /v1/deduct {"sku","order_id","user_id","qty"} -> 200 {"status":"ok",
 * "partition":0,"seq":N,"duplicate":B}, 409 sold_out / order_conflict, 400
 * invalid_request (naming the field), 404 unknown_sku, 413, 503 unavailable.
 * POST /v1/load {"sku","total"} sets a SKU's stock. GET /healthz.
 * One thread (the loop's) runs it; backends answer on that thread. */
#ifndef CL_HTTP_H
#define CL_HTTP_H

#include "cl_req.h"

#include <stdint.h>

struct event_base;

typedef struct cl_http cl_http;

typedef struct cl_http_config {
    const char *listen;      /* IPv4 address to bind */
    uint16_t port;           /* TCP port */
    uint32_t inflight_max;   /* requests at the backend at once; more -> 503 */
    uint32_t idle_timeout_s; /* idle keep-alive connections closed after this */
    uint32_t body_bytes_max; /* larger bodies -> 413 */
    uint32_t max_qty;        /* largest qty of one deduction */
    const char *mode;        /* printed by /healthz */
} cl_http_config;

/* Binds and starts serving on base. be must outlive the front. */
sh_err cl_http_open(cl_http **out, struct event_base *base, const cl_http_config *cfg,
                    const cl_backend *be);

/* Closes the listening socket; open connections stay until freed. */
void cl_http_stop_accepting(cl_http *h);

/* Requests taken and not yet answered. */
uint64_t cl_http_inflight(const cl_http *h);

/* Logs the answer counters (one line). */
void cl_http_log_stats(const cl_http *h);

/* Frees the server. Call after the backend has answered everything. */
void cl_http_free(cl_http *h);

#endif
