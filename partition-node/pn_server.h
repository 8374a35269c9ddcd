/* pn_server.h -- the node's NNG rep0 socket: contexts that receive requests and send replies.
 *
 * The only module of the node that calls NNG. Each of the socket's contexts
 * holds at most one request at a time and cycles: receive -> hand the request
 * to the submit function (on an NNG thread, which must not block) -> the
 * owner of the request replies (or drops it) from any thread -> receive again.
 * A request is therefore also the handle of its context: at most `contexts`
 * requests exist at once, which is what bounds the executor's queue.
 *
 * Lifecycle: pn_server_open (listens and starts receiving), pn_server_quiesce
 * (contexts stop re-arming; requests still held may be replied to or dropped),
 * pn_server_close (stops every aio, closes contexts and the socket). */
#ifndef PN_SERVER_H
#define PN_SERVER_H

#include "sh_err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pn_server pn_server;
typedef struct pn_request pn_request;

/* Takes a received request. Runs on an NNG thread: must only queue it and
 * return. true: the callee now owns req and must end it with exactly one
 * pn_request_send or pn_request_drop. false: refused; the server drops it. */
typedef bool (*pn_server_submit_fn)(void *arg, pn_request *req);

/* Counters since open; monotonic. */
typedef struct pn_server_stats {
    uint64_t received;    /* messages received */
    uint64_t sent;        /* replies handed to NNG that it accepted */
    uint64_t send_errors; /* replies NNG failed to send (peer gone, closing) */
    uint64_t recv_errors; /* receive failures other than shutdown */
    uint64_t dropped;     /* requests ended without a reply */
} pn_server_stats;

/* Opens a rep0 socket with NNG_OPT_RECVMAXSZ = SH_WIRE_MSG_BYTES_MAX, opens
 * contexts (1..1024) contexts, listens on url (ipc:// or tcp://) and starts
 * receiving; submit(arg, req) is called for every message. SH_EINVAL for bad
 * arguments or an unusable URL, SH_EIO when NNG refuses (address in use, ...),
 * SH_ENOMEM. On failure nothing is left open and *out is NULL. */
sh_err pn_server_open(pn_server **out, const char *url, int contexts, pn_server_submit_fn submit,
                      void *arg);

/* From now on no context receives again once its current request ends.
 * Any thread; idempotent. */
void pn_server_quiesce(pn_server *s);

/* Quiesces, stops every aio (waiting for callbacks), closes the contexts and
 * the socket, frees everything. Requests still owned by someone must have been
 * ended before (the executor is stopped first). NULL is a no-op. */
void pn_server_close(pn_server *s);

void pn_server_stats_get(const pn_server *s, pn_server_stats *out);

/* The received message's bytes; valid until the request ends or its reply
 * buffer is taken. */
const uint8_t *pn_request_data(const pn_request *req, size_t *len);

/* Turns the request's message into a reply of exactly len bytes and returns
 * where to write them (the request's bytes are gone after this). NULL when
 * memory runs out; the request must then be dropped. */
uint8_t *pn_request_reply_buf(pn_request *req, size_t len);

/* Sends the reply written into the buffer and ends the request. Any thread. */
void pn_request_send(pn_request *req);

/* Ends the request without a reply (the peer's resend timer will ask again).
 * Any thread. */
void pn_request_drop(pn_request *req);

#endif
