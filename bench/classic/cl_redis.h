/* cl_redis.h -- design (b), the classic single-key Redis deduction: one Lua
 * call per request on the SKU's one stock key, no batching.
 *
 * Keys of SKU S share the hash tag {cl:S} (so the script would also run on a
 * cluster): {cl:S}:stock (units left), {cl:S}:seq (last seq), {cl:S}:d (list of
 * details), {cl:S}:o:ORDER (the order's outcome "qty,seq", the idempotency
 * key, with a TTL). Runs on the caller's event base with hiredis async, K
 * connections used round-robin. Loop thread only. */
#ifndef CL_REDIS_H
#define CL_REDIS_H

#include "cl_req.h"

#include <stdint.h>

struct event_base;

typedef struct cl_redis cl_redis;

typedef struct cl_redis_config {
    const char *host;
    uint16_t port;
    uint32_t connections; /* K async connections, round-robin */
    uint32_t order_ttl_s; /* lifetime of an order's idempotency key */
    uint32_t timeout_ms;  /* bound on the start-up connection and SCRIPT LOAD */
} cl_redis_config;

/* The deduction script's text (compare.sh loads it for redis-benchmark):
 * KEYS stock seq details order; ARGV qty order_id ttl_s user_id now_ms.
 * Returns {code, seq}: 0 ok, 1 duplicate, 2 sold out, 3 order conflict, 4 unknown SKU. */
const char *cl_redis_deduct_script(void);

/* Connects (synchronously once, to load the script and fail early with a clear
 * message), then opens the K async connections on base. */
sh_err cl_redis_open(cl_redis **out, struct event_base *base, const cl_redis_config *cfg);

/* The backend face of r (submit, pending) for the HTTP front. */
cl_backend cl_redis_backend(cl_redis *r);

/* Closes the connections; requests still waiting are answered unavailable. */
void cl_redis_free(cl_redis *r);

#endif
