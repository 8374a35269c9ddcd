/* sw_stats.h -- the sync worker's counters and batch-size histogram.
 *
 * Counters are atomics bumped by the worker threads (one add per event, off the
 * MySQL critical section); the histogram of batch sizes sits behind a mutex that
 * is taken once per batch, which costs nothing next to a MySQL transaction. The
 * main thread reads a snapshot every few seconds and logs one summary line. */
#ifndef SW_STATS_H
#define SW_STATS_H

#include "sh_err.h"
#include "sh_hist.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef struct sw_stats {
    atomic_uint_fast64_t requests;          /* messages taken from NNG */
    atomic_uint_fast64_t batches_applied;   /* batches that inserted at least one detail */
    atomic_uint_fast64_t batches_duplicate; /* batches wholly at or below synced_seq */
    atomic_uint_fast64_t details_inserted;  /* detail rows written */
    atomic_uint_fast64_t details_duplicate; /* details skipped: seq <= synced_seq */
    atomic_uint_fast64_t gaps;              /* batches refused: first_seq > synced_seq + 1 */
    atomic_uint_fast64_t queries;           /* count-0 batches (synced_seq questions) */
    atomic_uint_fast64_t catalog_ops;       /* CATALOG_REQ answered */
    atomic_uint_fast64_t transactions;      /* transactions committed */
    atomic_uint_fast64_t bad_messages;      /* decode errors, unexpected types, bad ids */
    atomic_uint_fast64_t mysql_errors;      /* requests answered SH_EMYSQL */
    atomic_uint_fast64_t tx_retries;        /* transactions redone (deadlock, lock wait, lost) */
    atomic_uint_fast64_t reconnects;        /* MySQL connections re-established */
    atomic_uint_fast64_t replies_dropped;   /* replies not sent (send failure, fault switch) */
    pthread_mutex_t mu;                     /* guards batch_details */
    sh_hist batch_details;                  /* details per non-empty batch */
} sw_stats;

/* A plain copy of the counters, for deltas between two summaries. */
typedef struct sw_stats_snap {
    uint64_t requests, batches_applied, batches_duplicate, details_inserted, details_duplicate,
        gaps, queries, catalog_ops, transactions, bad_messages, mysql_errors, tx_retries,
        reconnects, replies_dropped;
} sw_stats_snap;

/* Zeroes s and initialises its mutex. Returns SH_OK or SH_ENOMEM. */
sh_err sw_stats_init(sw_stats *s);
void sw_stats_fini(sw_stats *s);

/* Counts one non-empty batch of n details in the histogram. Thread-safe. */
void sw_stats_batch_size(sw_stats *s, uint64_t n);

void sw_stats_snapshot(sw_stats *s, sw_stats_snap *out);

/* Logs one summary line with the counters since prev (and the running batch-size
 * percentiles) when anything happened since prev; then stores the current values in
 * prev. force logs even when nothing happened (the last line at shutdown).
 * elapsed_ms is the time since prev, for the rates. Main thread only. */
void sw_stats_log(sw_stats *s, sw_stats_snap *prev, uint64_t elapsed_ms, int force);

#endif
