/* pn_exec.h -- the executor: one thread, one Redis router, group-committed rounds.
 *
 * NNG callbacks hand every received request to the executor through a
 * bounded queue (capacity = the server's contexts; each context holds at most
 * one request, so it cannot overflow) and return at once. The executor thread
 * loops: wait for work, take every queued request (up to PN_ROUND_ITEMS_MAX
 * items), decode them, run all their items as one round (pn_round.h), reply
 * to each request, repeat. Requests that arrive while a round is in flight
 * are coalesced into the next one. A message that fails to decode is counted,
 * logged and answered with a reply of zero results, so the socket keeps
 * serving whatever it is sent.
 *
 * The executor owns the router and all counters; it logs a one-line summary
 * every PN_EXEC_STATS_INTERVAL_MS when there was traffic, and publishes a
 * snapshot of its counters for other threads (pn_exec_stats_get). */
#ifndef PN_EXEC_H
#define PN_EXEC_H

#include "pn_config.h"
#include "pn_round.h"
#include "pn_server.h"
#include "sh_err.h"

#include <stdbool.h>
#include <stdint.h>

#define PN_EXEC_STATS_INTERVAL_MS 10000 /* summary log line period, ms */

typedef struct pn_exec pn_exec;

/* Snapshot of the executor's counters (monotonic since start). */
typedef struct pn_exec_stats {
    uint64_t requests;         /* messages taken from the queue */
    uint64_t invalid_messages; /* messages that failed to decode (answered with 0 results) */
    uint64_t reply_failures;   /* replies that could not be built (out of memory) */
    pn_round_stats round;      /* rounds, items, script calls, items per call, redis errors */
} pn_exec_stats;

/* Opens the router on cfg->redis_seeds, loads the scripts on every master
 * and starts the executor thread, which then owns the router. The queue holds
 * cfg->node_contexts requests. SH_EIO / SH_ETIMEDOUT / SH_ECLUSTER when Redis
 * Cluster cannot be reached or used, SH_EREDIS when a script is refused,
 * SH_ENOMEM, SH_EINVAL for a bad config. On failure nothing is left running.
 * Call from the main thread, with the signals the daemon waits for blocked
 * (the thread inherits the mask). */
sh_err pn_exec_start(pn_exec **out, const pn_config *cfg);

/* Queues req for the next round. Any thread (NNG callbacks); never blocks on
 * Redis. false when the executor is stopping or the queue is full (then the
 * caller keeps req). */
bool pn_exec_submit(pn_exec *ex, pn_request *req);

/* Lets the round in flight finish and reply, stops the thread, drops every
 * request still queued (pn_request_drop), closes the router and frees ex.
 * Main thread; NULL is a no-op. */
void pn_exec_stop(pn_exec *ex);

/* Copies the counters published at the last summary tick (and at stop). */
void pn_exec_stats_get(pn_exec *ex, pn_exec_stats *out);

#endif
