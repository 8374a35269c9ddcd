/* sw_server.h -- NNG front of the sync worker: rep contexts, a bounded queue and
 * the worker threads that do the MySQL work and reply.
 *
 * NNG callbacks run on NNG's own threads and must not block, so they only move
 * a received request into a queue. Each worker thread owns one MySQL connection
 * (sw_mysql), takes requests from the queue, decodes them, applies them and
 * sends the reply on the request's own context. The queue holds at most one
 * request per context, so it is bounded by syncd.contexts by construction. */
#ifndef SW_SERVER_H
#define SW_SERVER_H

#include "sh_err.h"
#include "sw_mysql.h"
#include "sw_stats.h"

#include <stdint.h>

typedef struct sw_server sw_server;

typedef struct sw_server_opts {
    const char *url;                 /* NNG listen URL */
    int contexts;                    /* rep contexts, 1..SW_SERVER_CONTEXTS_MAX */
    int threads;                     /* worker threads, 1..SW_SERVER_THREADS_MAX */
    int group_batches_max;           /* batches per transaction, 1..SW_APPLY_GROUP_MAX */
    unsigned migrate_lock_timeout_s; /* catalog op MIGRATE (sw_migrate_run) */
    sw_mysql_opts mysql;             /* per thread; stop and stats are filled in by the server */
    sw_stats *stats;
} sw_server_opts;

#define SW_SERVER_CONTEXTS_MAX 1024
#define SW_SERVER_THREADS_MAX  64

/* Opens the socket, listens on opts->url, starts the threads (each connects to
 * MySQL once; a failure there is logged and retried per request, so the worker
 * serves error acks while MySQL is down rather than not starting). On error
 * nothing is left running and *out is NULL: SH_EIO (listen failed: message
 * logged), SH_ENOMEM, SH_EINVAL. */
sh_err sw_server_start(sw_server **out, const sw_server_opts *opts);

/* Stops taking requests, lets every thread finish the request it holds and
 * reply, drops what is still queued (the senders resend), closes the socket
 * and MySQL connections and frees s. From the thread that started it. */
void sw_server_stop(sw_server *s);

#endif
