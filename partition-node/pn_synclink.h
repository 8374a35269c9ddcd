/* pn_synclink.h -- the node's NNG req0 socket to the sync workers: slots that carry one
 * request each.
 *
 * The only module of the shipper that calls NNG (pn_server.c is the node's
 * other one, on the serving side). One req0 socket dials every sync worker URL
 * (NNG_FLAG_NONBLOCK: a worker that is down is redialed in the background);
 * req0 hands each request to a connected worker, so with two workers of which
 * one is down every request goes to the live one. The socket has `slots` req
 * contexts; a slot carries at most one request (send, then receive its reply)
 * and ends in exactly one completion, which the owning thread collects with
 * pn_synclink_take after pn_synclink_wait returns.
 *
 * No NNG resend (NNG_OPT_REQ_RESENDTIME = infinite): NNG would re-send on its
 * own timer and again to a restarted worker (LIBRARY-NOTES.md 3); the shipper
 * resends itself, with backoff, from what Redis still holds, and the worker's
 * apply is idempotent, so a request that did reach a worker and is sent again
 * changes nothing. A request gets one overall deadline (send + reply):
 * a worker that is down or does not answer ends the slot with NNG_ETIMEDOUT,
 * a worker that dies with the request outstanding with NNG_ECONNRESET.
 *
 * Threads: one owning thread calls everything except pn_synclink_wake (any
 * thread). Completions are produced on NNG's threads and queued in a ring with
 * one place per slot, so it cannot overflow. */
#ifndef PN_SYNCLINK_H
#define PN_SYNCLINK_H

#include "sh_err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PN_SYNCLINK_URLS_MAX      16   /* worker URLs in ship.sync_urls */
#define PN_SYNCLINK_URL_BYTES_MAX 256  /* one URL, NUL included */
#define PN_SYNCLINK_SLOTS_MAX     256  /* requests in flight at once */
#define PN_SYNCLINK_RECONN_MIN_MS 100  /* NNG redial delay after a link drops, ms */
#define PN_SYNCLINK_RECONN_MAX_MS 1000 /* doubling up to this, ms */

typedef struct pn_synclink pn_synclink;

/* The end of one slot's request. msg is the reply's bytes (0 == rv only;
 * free with pn_synclink_reply_free), NULL otherwise. rv is 0 or an NNG error
 * (NNG_ETIMEDOUT, NNG_ECONNRESET, NNG_ECLOSED, NNG_ECANCELED, ...). */
typedef struct pn_synclink_done {
    int slot;
    int rv;
    void *msg; /* an nng_msg *, opaque here */
} pn_synclink_done;

/* Opens the socket with RECVMAXSZ = SH_WIRE_MSG_BYTES_MAX, no resend,
 * RECVTIMEO = timeout_ms, redial 100..1000 ms, opens `slots` contexts
 * (1..PN_SYNCLINK_SLOTS_MAX) and dials every URL of the comma-separated list
 * urls (spaces around a URL are ignored; 1..PN_SYNCLINK_URLS_MAX URLs).
 * timeout_ms (>= 1) is each request's deadline. SH_EINVAL for a bad list or a
 * URL NNG refuses, SH_EIO when NNG fails, SH_ENOMEM. On failure nothing is
 * left open and *out is NULL. Any thread; the caller then owns the link. */
sh_err pn_synclink_open(pn_synclink **out, const char *urls, int slots, uint32_t timeout_ms);

/* Stops every slot (a request in flight is abandoned: its reply, if any, is
 * dropped by NNG), frees every completion not taken, closes the contexts and
 * the socket, frees l. NULL is a no-op. Owning thread. */
void pn_synclink_close(pn_synclink *l);

/* Number of URLs dialed, and the slots. */
int pn_synclink_url_count(const pn_synclink *l);
int pn_synclink_slots(const pn_synclink *l);

/* Sends bytes[0..len) on slot (0 <= slot < slots, not busy: the previous
 * request of the slot has been taken) and receives its reply, all within the
 * link's timeout. Copies the bytes (the caller keeps its buffer). Always ends
 * in exactly one completion for slot, also when NNG cannot start (then rv is
 * that error). SH_ENOMEM when the message cannot be allocated: then nothing
 * was started and no completion follows. Owning thread. */
sh_err pn_synclink_send(pn_synclink *l, int slot, const uint8_t *bytes, size_t len);

/* Blocks until a completion is queued, pn_synclink_wake was called (since the
 * last wait returned) or the monotonic clock reaches until_ms, whichever comes
 * first. Owning thread. */
void pn_synclink_wait(pn_synclink *l, uint64_t until_ms);

/* Makes the current or the next pn_synclink_wait return at once. Any thread. */
void pn_synclink_wake(pn_synclink *l);

/* Pops one completion into *out; false when none is queued. The slot is free
 * again once its completion was taken. Owning thread. */
bool pn_synclink_take(pn_synclink *l, pn_synclink_done *out);

/* NNG's name of an error of pn_synclink_done.rv. Any thread. */
const char *pn_synclink_strerror(int rv);

/* The bytes of a reply from a completion; valid until pn_synclink_reply_free. */
const uint8_t *pn_synclink_reply_data(void *msg, size_t *len);
void pn_synclink_reply_free(void *msg);

#endif
