/* sch_sync.h -- the scheduler's NNG req link to the sync workers: catalog and sync state.
 *
 * The scheduler asks a sync worker for SKU rows (sku load), to write them
 * (sku load with numbers, restock), to apply the schema migrations (db migrate,
 * catalog op MIGRATE), for MySQL's sync state of a SKU (audit) and for the
 * details of one partition (partition reconcile).
 * These are rare admin operations, so the calls are SYNCHRONOUS and run on the
 * calling thread: on the loop thread (sku load, restock, db migrate) no HTTP
 * request is served while one waits for its answer (at most sync.timeout_ms
 * per worker tried): an operator's command during a sale costs the sale a
 * pause of one MySQL round trip, and a worker that is down costs the timeout.
 * The audit uses its own sch_sync on the operator thread (sch_jobs.h), so its
 * waits pause nothing. One sch_sync is used by one thread at a time.
 *
 * One req0 socket per worker URL (sync.urls), dialled without blocking (a
 * worker that is down is redialled in the background). A call goes to the
 * worker that answered last, then to the others, connected ones first; a
 * worker that does not answer in time, breaks the protocol or answers that it
 * could not reach MySQL (SH_EMYSQL, SH_ECLOSED) is a failure and the next one
 * is tried. A worker without a live connection gets at most about a second
 * (it is down, or about to be redialled), so with every worker down a call
 * costs about a second per worker rather than sync.timeout_ms. NNG's resend is off
 * (NNG_OPT_REQ_RESENDTIME infinite): a resent request would run twice; trying the next worker sends
 * it again too, which is safe because every catalog write is idempotent by its key (the SKU row is
 * created only if absent, a restock applies once per restock id). */
#ifndef SCH_SYNC_H
#define SCH_SYNC_H

#include "sh_err.h"
#include "sh_wire.h"

#include <stddef.h>
#include <stdint.h>

#define SCH_SYNC_WORKERS_MAX 64 /* URLs in sync.urls */

typedef struct sch_sync sch_sync;

typedef struct sch_sync_config {
    const char *urls;    /* comma-separated NNG URLs, 1..SCH_SYNC_WORKERS_MAX */
    uint32_t timeout_ms; /* one request to one worker, send to reply */
} sch_sync_config;

/* Counts and checks a sync.urls value: SH_EINVAL for an empty entry or one
 * longer than 255 bytes, SH_ELIMIT past SCH_SYNC_WORKERS_MAX. */
sh_err sch_sync_count_urls(const char *urls, int *count_out);

/* Opens one socket per URL and dials it without blocking. SH_EINVAL for a bad
 * URL list, SH_EIO when NNG refuses a socket or a dial, SH_ENOMEM. On failure
 * nothing is left open and *out is NULL. Loop thread. */
sh_err sch_sync_open(sch_sync **out, const sch_sync_config *cfg);

/* Closes every socket and frees s. NULL is a no-op. */
void sch_sync_close(sch_sync *s);

/* Number of workers (URLs) and of those with a live connection now. */
int sch_sync_count(const sch_sync *s);
int sch_sync_connected(const sch_sync *s);

/* Sends one CATALOG_REQ and waits for a worker's CATALOG_REP: SH_OK with the
 * answer in *rep and its row, if any, in *row (*nrows 0 or 1); the business
 * outcome is rep->status. When no worker gave a usable answer: SH_ETIMEDOUT
 * (none answered in time), SH_EIO, SH_EPROTO, or SH_EMYSQL (a worker answered
 * it could not reach MySQL), with why holding one line per worker tried.
 * SH_EINVAL when req fails the codec's checks. Loop thread; blocks (see above). */
sh_err sch_sync_catalog(sch_sync *s, const sh_wire_catalog_req *req, sh_wire_catalog_rep *rep,
                        sh_wire_sku *row, size_t *nrows, char *why, size_t whylen);

/* Sends one SYNC_STATE_REQ for sku and waits for the SYNC_STATE_REP: SH_OK with
 * rep->status SH_OK and parts[0..*n) (parts holds SH_PARTITIONS_PER_SKU_MAX
 * records, in increasing partition order), or SH_OK with another rep->status
 * when the worker refused (message in rep). No usable answer: as
 * sch_sync_catalog. Loop thread; blocks (see above). */
sh_err sch_sync_state(sch_sync *s, const char *sku, sh_wire_sync_state_rep *rep,
                      sh_wire_sync_part *parts, size_t *n, char *why, size_t whylen);

/* Sends one SYNC_DETAILS_REQ (details of sku's partition part with seq >
 * after_seq, at most limit, 1..SH_WIRE_DETAILS_PAGE_MAX) and waits for the
 * SYNC_DETAILS_REP: SH_OK with rep->status SH_OK, rep->synced_seq and
 * details[0..*n) (details holds limit records; their seqs are checked to lie
 * above after_seq, the rest by the codec), or SH_OK with another rep->status
 * when the worker refused (message in rep). No usable answer: as
 * sch_sync_catalog. Blocks (see above); any one thread at a time per sch_sync. */
sh_err sch_sync_details(sch_sync *s, const char *sku, unsigned part, uint64_t after_seq,
                        uint32_t limit, sh_wire_sync_details_rep *rep, sh_wire_detail *details,
                        size_t *n, char *why, size_t whylen);

#endif
