/* sh_lease.h -- a named lease with a fencing epoch in Redis Cluster: one holder at a time.
 *
 * A process that must be alone in its role (the scheduler: grants to one
 * partition must be strictly sequential, DESIGN.md 5b) takes the lease at
 * start, keeps it alive from a thread of this module, and stops when it loses
 * it. Every acquisition bumps an epoch kept in Redis forever, so a holder that
 * lost the lease without knowing it yet carries a lower epoch than its
 * successor: scripts that compare epochs fence it off.
 *
 * The caller names the lease with a Redis key holding one hash tag (e.g.
 * "{lease:scheduler}"); the module keeps the epoch counter in that key (a
 * hash, never expires) and the holder in "<key>:holder" (same slot, with a TTL).
 * Nothing here knows what the lease protects, so other roles reuse it with
 * other names.
 *
 * Threads: sh_lease_new, sh_lease_acquire, sh_lease_release and sh_lease_free
 * are called from one thread, the owner's. After a successful acquire a
 * renewal thread of the module runs with its own Redis router; sh_lease_epoch,
 * sh_lease_lost and sh_lease_holder may be called from any thread. The lost
 * callback runs ON THE RENEWAL THREAD, once: it must only hand the event to
 * the owner's loop (write an eventfd or a pipe) and return. */
#ifndef SH_LEASE_H
#define SH_LEASE_H

#include "sh_err.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sh_lease sh_lease;

/* Called once from the renewal thread when the lease is lost: another holder
 * took it over, or renewals failed for a whole TTL since the last success. */
typedef void (*sh_lease_lost_cb)(void *arg);

typedef struct sh_lease_config {
    const char *redis_seeds;   /* host:port[,host:port] */
    uint32_t redis_timeout_ms; /* the owner's router; the renewal router uses min(this, ttl/3) */
    const char *key;          /* lease key with one non-empty hash tag, <= SH_LEASE_KEY_CHARS_MAX */
    const char *owner;        /* holder identity, e.g. "host:pid:start_ms"; unique per process */
    uint32_t ttl_ms;          /* SH_LEASE_TTL_MS_MIN..SH_LEASE_TTL_MS_MAX */
    uint32_t wait_ms;         /* sh_lease_acquire takes over by force after this; <= _MAX */
    sh_lease_lost_cb lost_cb; /* may be NULL */
    void *lost_arg;
} sh_lease_config;

/* Opens the two Redis routers (the owner's and the renewal thread's) and loads
 * the scripts. Does not touch the lease. cfg's strings are copied. SH_EINVAL
 * for bounds or a key without a hash tag; router errors as sh_cluster_open.
 * On failure *out is NULL. */
sh_err sh_lease_new(sh_lease **out, const sh_lease_config *cfg);

/* Blocking, for start-up. Takes the lease when it is free or expired; while
 * another holder has it, logs the holder and its remaining TTL (at most once a
 * second) and retries; after wait_ms takes it over by force with a higher
 * epoch (logged). Retaking a lease this owner already holds keeps its epoch.
 * On success *epoch_out (>= 1) is the epoch and the renewal thread runs
 * (every ttl/3). Redis errors are returned as they come (SH_EIO, ...); the
 * lease is then not held. Call once. */
sh_err sh_lease_acquire(sh_lease *l, uint64_t *epoch_out);

/* The epoch acquired (0 before). Any thread. */
uint64_t sh_lease_epoch(const sh_lease *l);

/* 1 once the lease is lost (then forever), else 0. Any thread. */
int sh_lease_lost(const sh_lease *l);

/* After a loss: the holder Redis named when the renewal was refused
 * ("owner" string, "" when unknown: the key had expired or Redis was
 * unreachable) and its epoch (0 when unknown). Any thread. */
void sh_lease_holder(const sh_lease *l, char *buf, size_t len, uint64_t *epoch_out);

/* Clean shutdown: stops the renewal thread (waits for it, at most about one
 * Redis timeout) and deletes the holder when it is still this owner's, so the
 * next start does not wait. The epoch counter stays. SH_OK too when nothing
 * was held or the lease was lost. Owner thread; call before sh_lease_free. */
sh_err sh_lease_release(sh_lease *l);

/* Stops the renewal thread if it still runs (without releasing: a crash-like
 * exit, the lease expires after its TTL) and frees everything. NULL is a no-op. */
void sh_lease_free(sh_lease *l);

#endif
