/* pn_ship.h -- the shipper: every detail of the node's partitions, from Redis to a sync worker.
 *
 * The deduction script appends each call's details to the partition's stream
 * ({s:SKU:P:K}:d, one entry per call, entry id = the call's last seq). The
 * shipper sends them, as contiguous seq ranges (DETAIL_BATCH), to a sync
 * worker, which applies each range to MySQL once and answers with its
 * synced_seq; on that ack the shipper trims the stream up to synced_seq and
 * writes it into the state hash's `ack` field (the audit's "details pending"
 * is seq - ack). Nothing is ever dropped: until a worker acks them, details
 * stay in Redis, and a restarted node learns where each partition stands by
 * asking a worker (a count-0 batch), so a kill -9 loses nothing.
 *
 * Ownership: node `node.id` i of `node.count` n ships partition P of every SKU
 * exactly when P % n == i - 1 -- the partitions the scheduler routes to it.
 * The SKUs come from the set stock:skus and their layouts (partition count,
 * tag salts) from their pools, re-read for new SKUs about once a second.
 *
 * Threads: one shipper thread owns everything here, its own Redis router and
 * its own NNG req0 socket (pn_synclink.h); the executor is never touched.
 * pn_ship_start and pn_ship_stop are called from the main thread. */
#ifndef PN_SHIP_H
#define PN_SHIP_H

#include "pn_config.h"
#include "sh_err.h"

#include <stdint.h>

#define PN_SHIP_SLOTS             16    /* requests in flight at once, at most one per partition */
#define PN_SHIP_STATS_INTERVAL_MS 10000 /* summary log line period, ms */

typedef struct pn_ship pn_ship;

/* Checks the ship.* and node.* keys of cfg (node.id <= node.count: SH_EINVAL),
 * opens a Redis router on cfg->redis_seeds and the req0 socket to every URL of
 * cfg->ship_sync_urls (workers that are down are redialed in the background),
 * then starts the shipper thread, which owns both from then on. SH_EINVAL for
 * a bad config or URL list, the router's error when Redis Cluster cannot be
 * reached, SH_EIO / SH_ENOMEM. On failure nothing is left running and *out is
 * NULL. Main thread, with the daemon's signals blocked (the thread and NNG's
 * threads inherit the mask). */
sh_err pn_ship_start(pn_ship **out, const pn_config *cfg);

/* Stops the thread (a batch in flight is abandoned: its details are still in
 * Redis, and sending it again later is harmless), logs the final counters,
 * closes the socket and the router, frees s. Main thread; NULL is a no-op. */
void pn_ship_stop(pn_ship *s);

#endif
