/* lg_run.h -- the load run itself: keep-alive HTTP connections on one event loop.
 *
 * The only module that knows libevent. One thread, one event_base, C
 * evhttp_connections, each with at most one request in flight (no pipelining:
 * a pipelined request's latency would include its predecessor's). Closed loop:
 * an idle connection takes the next order at once. Open loop (--rate R): order
 * j is due at start + j/R; a due order waits for an idle connection and its
 * latency still counts from the due time, so a stalled server shows up as
 * latency instead of as a slower send rate (no coordinated omission).
 *
 * Bounds: the run stops sending after --requests orders or --duration, and
 * the loop is broken by --timeout whatever is in flight (those count as
 * unfinished). Releases wait in a bounded queue (LG_RELEASE_QUEUE_MAX). */
#ifndef LG_RUN_H
#define LG_RUN_H

#include "lg_opts.h"
#include "lg_stats.h"

#include <stdio.h>

#define LG_RELEASE_QUEUE_MAX 65536 /* releases waiting for a connection; more are skipped */
#define LG_PROGRESS_MS       1000  /* one progress line per second */

/* Runs the load described by o and fills stats (initialised here). Answers are
 * written to orders_out (may be NULL) in completion order; progress lines go
 * to progress (may be NULL). Returns 0 when the run took place (whatever the
 * answers), -1 when it could not start (message on stderr). */
int lg_run_exec(const lg_opts *o, lg_stats *stats, FILE *orders_out, FILE *progress);

#endif
