/* sch_route.h -- admission and the deduction state machine of the scheduler.
 *
 * sch_http parses and validates a request and finds its SKU; this module
 * decides the rest: the start gate (425), the per-SKU rate limit (429), the
 * sold-out fast path (409 without a hop), then routing to a partition, the
 * hand-off to its node (sch_nodes), retries on another partition when one
 * refuses the order, consolidation when no single partition can serve, and the
 * one answer each request gets. Pending requests live in a bounded table
 * indexed by a tag (slot index + generation), so a late reply for a reused
 * slot is recognised and ignored. Loop thread only. */
#ifndef SCH_ROUTE_H
#define SCH_ROUTE_H

#include "sch_ctx.h"
#include "sch_nodes.h"
#include "sh_err.h"
#include "sh_hist.h"

#include <stddef.h>
#include <stdint.h>

struct evhttp_request;

typedef struct sch_route sch_route;

/* A validated deduction (ids checked with sh_id_check_*, 1 <= qty <= max_qty). */
typedef struct sch_deduct_args {
    const char *order_id;
    size_t order_id_len;
    const char *user_id;
    size_t user_id_len;
    uint32_t qty;
} sch_deduct_args;

/* Allocates the pending table (ctx->cfg->http_pending_max slots). ctx->nodes
 * may still be NULL; it must be set before the first request arrives. */
sh_err sch_route_new(sch_route **out, sch_ctx *ctx);

/* Frees r. Pending requests must have been answered (sch_route_fail_all). */
void sch_route_free(sch_route *r);

/* The callbacks sch_nodes delivers node answers through. */
sch_nodes_handler sch_route_node_handler(sch_route *r);

/* Admits and routes one deduction of s. Answers req exactly once, now (refusal)
 * or when a node answers or fails. */
void sch_route_deduct(sch_route *r, struct evhttp_request *req, sch_sku *s,
                      const sch_deduct_args *a);

/* Sends one release of order_id (validated) of s to a node. Answers req once. */
void sch_route_release(sch_route *r, struct evhttp_request *req, sch_sku *s, const char *order_id,
                       size_t order_id_len);

/* Requests waiting for a node. */
size_t sch_route_pending(const sch_route *r);

/* From now on new requests are answered 503 (shutting down). */
void sch_route_close(sch_route *r);

/* Answers every pending request 503 now; their node answers, if any come, are
 * ignored. */
void sch_route_fail_all(sch_route *r);

/* Latency of answered deductions, ns, from admission to answer. */
const sh_hist *sch_route_latency(const sch_route *r);

#endif
