/* cl_req.h -- one request of stock-classic as it travels from the HTTP front to
 * a backend (single-key Redis or MySQL row) and back.
 *
 * Why a struct of its own: the two classic designs differ only in where the
 * deduction runs (one Lua call on one Redis key, or one InnoDB transaction on
 * one row), so the front parses and validates once, fills a cl_req and hands
 * it to the backend; the backend fills the outcome and calls r->done(r)
 * exactly once, on the loop thread, and the front answers. That keeps the HTTP
 * cost identical for both baselines and close to our scheduler's. */
#ifndef CL_REQ_H
#define CL_REQ_H

#include "sh_err.h"
#include "sh_limits.h"

#include <stdint.h>

struct evhttp_request;

#define CL_MESSAGE_BYTES_MAX 160 /* error text carried back to the client */

typedef enum cl_kind {
    CL_DEDUCT = 0, /* POST /v1/deduct */
    CL_LOAD,       /* POST /v1/load: set the SKU's stock to total */
} cl_kind;

typedef enum cl_outcome {
    CL_OUT_NONE = 0,    /* not decided yet */
    CL_OUT_OK,          /* deducted; seq set */
    CL_OUT_DUPLICATE,   /* the order was deducted before with the same qty; seq set */
    CL_OUT_SOLD_OUT,    /* not enough stock */
    CL_OUT_CONFLICT,    /* the order exists with another qty */
    CL_OUT_UNKNOWN_SKU, /* the SKU was never loaded */
    CL_OUT_LOADED,      /* CL_LOAD done */
    CL_OUT_UNAVAILABLE, /* backend down, queue full, error: message says which */
} cl_outcome;

typedef struct cl_req cl_req;
typedef void (*cl_done_fn)(cl_req *r);

struct cl_req {
    cl_req *next;                /* queue link, owned by whoever holds r */
    struct evhttp_request *http; /* the request to answer */
    cl_kind kind;
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    char order[SH_ORDER_ID_CHARS_MAX + 1];
    char user[SH_USER_ID_CHARS_MAX + 1];
    uint32_t qty;     /* CL_DEDUCT, 1..max qty */
    int64_t total;    /* CL_LOAD, units */
    uint64_t wall_ms; /* when the front took it; goes into the detail */
    int attempts;     /* backend retries (NOSCRIPT, deadlock) */
    cl_outcome outcome;
    uint64_t seq;
    char message[CL_MESSAGE_BYTES_MAX];
    cl_done_fn done; /* set by the front; called once by the backend, loop thread */
    void *done_arg;
};

/* What the front needs from a backend. submit takes r and ends, before or after
 * it returns, with exactly one r->done(r) on the loop thread (a refusal, e.g. a
 * full queue, is an outcome: CL_OUT_UNAVAILABLE). pending counts requests
 * taken and not yet done. */
typedef struct cl_backend {
    const char *name;
    void *impl;
    void (*submit)(void *impl, cl_req *r);
    uint64_t (*pending)(const void *impl);
} cl_backend;

/* Sets r's outcome to CL_OUT_UNAVAILABLE with a printf-style message. */
void cl_req_unavailable(cl_req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
