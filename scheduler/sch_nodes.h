/* sch_nodes.h -- the scheduler's NNG links to the partition nodes, with batching.
 *
 * One req0 socket per node URL, each with a bounded set of req contexts (one
 * message in flight per context). Callers never send directly: they append an
 * item to the node's bounded outbox, and a low-priority "flush" event, which
 * runs after the current burst of HTTP callbacks, sends ONE message per node
 * carrying every queued item (up to batch_items_max per message). Replies
 * arrive on NNG threads and are handed to the loop thread through a
 * mutex-protected queue and an eventfd; the loop decodes them and calls
 * the handler once per item. Every item enqueued gets exactly one outcome:
 * a result or a failure (timeout, link error, bad reply, close). */
#ifndef SCH_NODES_H
#define SCH_NODES_H

#include "sch_ctx.h"
#include "sh_err.h"
#include "sh_wire.h"

#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef struct sch_nodes sch_nodes;

/* Called on the loop thread. result: one item's answer (its tag is one this
 * module sent on that message). failed: the item got no answer (why:
 * SH_ETIMEDOUT, SH_EIO, SH_EPROTO, SH_ECLOSED); its outcome at the node is
 * unknown. drained: after each burst of replies and failures, so the caller
 * can act once per burst (refills). */
typedef struct sch_nodes_handler {
    void *arg;
    void (*result)(void *arg, int node, sh_wire_type type, const sh_wire_result *res);
    void (*failed)(void *arg, int node, uint64_t tag, sh_err why);
    void (*drained)(void *arg);
} sch_nodes_handler;

typedef struct sch_nodes_config {
    const char *urls;          /* comma-separated NNG URLs, 1..SCH_NODES_MAX */
    uint32_t contexts;         /* per node, 1..SCH_NODE_CONTEXTS_LIMIT */
    uint32_t timeout_ms;       /* one message, send to reply */
    uint32_t batch_items_max;  /* items per message, 1..SH_DEDUCT_BATCH_ITEMS_MAX */
    uint32_t outbox_items_max; /* items waiting per node */
} sch_nodes_config;

/* Counts and checks the URLs of a nodes.urls value: SH_EINVAL for an empty
 * entry or one longer than 255 bytes, SH_ELIMIT past SCH_NODES_MAX. */
sh_err sch_nodes_count_urls(const char *urls, int *count_out);

/* Opens one socket per URL and dials it without blocking (a node that is down
 * is reconnected in the background). stats receives node_messages and
 * node_items. Loop thread; base must have 2 priorities. No libevent call is
 * made from another thread, so the base needs no evthread locking. */
sh_err sch_nodes_open(sch_nodes **out, struct event_base *base, const sch_nodes_config *cfg,
                      const sch_nodes_handler *handler, sch_stats *stats);

/* Number of nodes (URLs). */
int sch_nodes_count(const sch_nodes *n);

/* Queues one item (item->tag is the caller's) for node. SH_EBUSY when that
 * node's outbox is full, SH_ECLOSED after sch_nodes_close began; then the
 * handler is not called for it. Otherwise exactly one handler call follows,
 * never from inside this function. Loop thread. */
sh_err sch_nodes_enqueue(sch_nodes *n, int node, sh_wire_type type, const sh_wire_item *item);

/* Items queued or in flight, over all nodes. */
size_t sch_nodes_outstanding(const sch_nodes *n);

/* Stops every context (waiting for NNG callbacks to finish), fails every item
 * still queued or in flight with SH_ECLOSED through the handler, closes the
 * sockets and frees n. Loop thread, with the loop stopped or running. */
void sch_nodes_close(sch_nodes *n);

#endif
