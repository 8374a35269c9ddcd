/* sch_admin.h -- the admin socket: one JSON request per line, one JSON reply per line.
 *
 * A Unix stream socket (mode 0660) served on the scheduler's event loop.
 * Commands ({"cmd": ...}):
 *   registry     SKUs and partitions, with each partition's sync lag
 *                (details_pending, oldest_pending_age_ms) read from Redis
 *   sku_load     {"sku"[, "total", "partitions", ...]}: the catalog row (MySQL,
 *                through a sync worker) is created if absent when total and
 *                partitions are given, and the STORED row is loaded into Redis
 *   sku_restock  {"sku","units","restock_id"}: the catalog, then the pool, each
 *                once per restock id
 *   audit        {"sku"[, "max_pending_age_ms"]}: Redis's invariants, Redis
 *                against MySQL, and the deep checks (sch_audit.h)
 *   stats        counters
 *   partition_reconcile {"sku","partition"}: repair a diverged partition
 *                (sch_reconcile.h) and say what changed; codes not_diverged,
 *                unknown_partition, mysql_inconsistent, too_large, changed
 * Every reply is one line: {"ok":true,...} or {"ok":false,"error":"code",
 * "message":"..."}; codes: bad_request, unknown_command, unknown_sku,
 * unavailable (no sync worker answered), restock_conflict, catalog_conflict,
 * busy (SH_AUDIT_QUEUE_MAX operator commands queued), internal. A bad line
 * gets an error reply and the connection stays usable; a line longer than
 * SCH_ADMIN_LINE_BYTES_MAX closes the connection.
 *
 * sku_load and sku_restock call a sync worker synchronously from the loop
 * thread (sch_sync.h): rare, one MySQL round trip each. The audit reads every
 * order record of a SKU, so it runs on the operator thread (sch_jobs.h) and
 * its client's next lines wait for its reply; the loop goes on serving. */
#ifndef SCH_ADMIN_H
#define SCH_ADMIN_H

#include "sch_ctx.h"
#include "sh_err.h"

#define SCH_ADMIN_LINE_BYTES_MAX 65536
#define SCH_ADMIN_CLIENTS_MAX    64

typedef struct sch_admin sch_admin;

/* Listens on ctx->cfg->admin_socket (a stale file is replaced) on ctx->base.
 * Loop thread only. */
sh_err sch_admin_open(sch_admin **out, sch_ctx *ctx);

/* Closes every connection and the listener and unlinks the socket file. */
void sch_admin_close(sch_admin *a);

#endif
