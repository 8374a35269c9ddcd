/* sch_http.h -- the scheduler's HTTP API (libevent evhttp) and its JSON answers.
 *
 *   POST /v1/deduct {"sku","order_id","user_id","qty"}
 *   POST /v1/release {"sku","order_id"}
 *   GET  /v1/skus/{sku}   GET /healthz   GET /metrics
 *
 * Every answer is JSON (Prometheus text for /metrics); every error body is
 * exactly {"error":"code","message":"..."}. The exceptions are the answers
 * libevent writes itself before our handler runs: a body past
 * SCH_HTTP_HARD_BODY_BYTES (413), headers past SH_HTTP_HEADERS_BYTES_MAX (400)
 * and a method other than GET/POST (501) get libevent's HTML page, which it
 * cannot be told to write as JSON. Loop thread only. */
#ifndef SCH_HTTP_H
#define SCH_HTTP_H

#include "sch_ctx.h"
#include "sch_route.h"
#include "sh_err.h"

#include <stdint.h>

struct evhttp_request;

/* Our hard cap on a request body, bytes: 1 MiB + 1024. Bodies up to it are read
 * and, past http.body_bytes_max, answered with our JSON 413; past it libevent
 * answers its own HTML 413 and closes the connection. */
#define SCH_HTTP_HARD_BODY_BYTES (1024u * 1024u + 1024u)

typedef struct sch_http sch_http;

/* Binds ctx->cfg->http_listen:http_port on ctx->base. Requests that pass
 * validation go to route. */
sh_err sch_http_open(sch_http **out, sch_ctx *ctx, sch_route *route);

/* Stops accepting connections; open connections stay until sch_http_free. */
void sch_http_stop_accepting(sch_http *h);

/* Closes every connection and frees h. Every request must have been answered. */
void sch_http_free(sch_http *h);

/* Answers req with {"error":error,"message":message} and status code, counting
 * it in ctx->stats; 503 and 429 carry Retry-After: 1. */
void sch_http_reply_error(sch_ctx *ctx, struct evhttp_request *req, int code, const char *error,
                          const char *message);

/* The same with "reason":reason after "error" when reason is not NULL (a 503
 * says why: "no_replica", "replication_timeout"). */
void sch_http_reply_error_reason(sch_ctx *ctx, struct evhttp_request *req, int code,
                                 const char *error, const char *reason, const char *message);

/* Answers req 200 {"status":"ok","partition":P,"seq":S,"duplicate":bool}. */
void sch_http_reply_ok(sch_ctx *ctx, struct evhttp_request *req, unsigned partition, uint64_t seq,
                       int duplicate);

#endif
