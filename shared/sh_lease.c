/* sh_lease.c -- a lease with a fencing epoch in Redis: acquire, renew from a thread, release.
 *
 * Layout, for a lease key K (one hash tag, so both keys share a slot):
 *   K          hash, never expires:  epoch = the last epoch handed out,
 *                                    owner = who got it (diagnostics only)
 *   K:holder   string "EPOCH:OWNER" with a TTL (PX) of the lease's ttl_ms
 * The holder's expiry is Redis's own (PEXPIRE), not a deadline computed from
 * `redis.call('TIME')`: Redis expires the key on the master with its own clock
 * and replicates the deletion, so replicas and a promoted replica agree with
 * the master, scripts stay deterministic (no effects-replication subtleties),
 * and PTTL gives the remaining time for the "held by" log for free. The epoch
 * lives apart from the holder precisely so that it survives the holder's
 * expiry: an epoch is never handed out twice.
 *
 * Why the holder may still run after its key expired: the process does not
 * read Redis's clock. The renewal thread counts a TTL from the moment it SENT
 * its last successful renewal, so its own deadline falls no later than the
 * key's expiry in Redis; past it the lease is declared lost. Between that
 * expiry and the owner's exit a successor may already hold a higher epoch;
 * the epoch checks of the protected scripts (not this module) fence that gap.
 *
 * Every script is idempotent for its caller, since the router may send one
 * again when the outcome is unknown: acquire by the current holder keeps its
 * epoch, renew and release compare the whole "EPOCH:OWNER" string. After a
 * successful acquire a `WAIT 1` asks one replica to confirm the new epoch, so
 * a failover right after start is unlikely to hand the same epoch out again;
 * a shard without a replica only gets a warning (the lease still works). */
#include "sh_lease.h"

#include "sh_clock.h"
#include "sh_cluster.h"
#include "sh_limits.h"
#include "sh_log.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LEASE_HOLDER_SUFFIX   ":holder"
#define LEASE_KEY_BYTES_MAX   (SH_LEASE_KEY_CHARS_MAX + sizeof LEASE_HOLDER_SUFFIX)
#define LEASE_WAIT_REPLICA_MS 1000 /* WAIT 1 after acquiring: at most this */
#define LEASE_NUM_CHARS_MAX   24   /* a uint64 in decimal, with room */

/* ---- scripts ----------------------------------------------------------------- */

/* ACQUIRE  KEYS: K, K:holder  ARGV: owner, ttl_ms, force ("1" or "0")
 * -> {1, epoch} taken (or already ours: TTL refreshed, epoch kept)
 * -> {0, holder_owner, remaining_ms, holder_epoch} held by another, no force.
 * A malformed holder value (no ':') counts as a foreign holder of epoch 0. */
static const char LEASE_LUA_ACQUIRE[] =
    "local cur = redis.call('GET', KEYS[2])\n"
    "if cur then\n"
    "  local sep = string.find(cur, ':', 1, true)\n"
    "  local ce, co = '0', cur\n"
    "  if sep then ce = string.sub(cur, 1, sep - 1); co = string.sub(cur, sep + 1) end\n"
    "  if co == ARGV[1] and sep then\n"
    "    redis.call('PEXPIRE', KEYS[2], ARGV[2])\n"
    "    return {1, tonumber(ce) or 0}\n"
    "  end\n"
    "  if ARGV[3] ~= '1' then\n"
    "    return {0, co, redis.call('PTTL', KEYS[2]), tonumber(ce) or 0}\n"
    "  end\n"
    "end\n"
    "local e = redis.call('HINCRBY', KEYS[1], 'epoch', 1)\n"
    "redis.call('HSET', KEYS[1], 'owner', ARGV[1])\n"
    "redis.call('SET', KEYS[2], e .. ':' .. ARGV[1], 'PX', ARGV[2])\n"
    "return {1, e}\n";

/* RENEW  KEYS: K, K:holder  ARGV: owner, epoch, ttl_ms
 * -> {1} extended; {0, holder_value_or_empty, current_epoch} lost. Both the
 * holder string and the epoch counter must still be ours. */
static const char LEASE_LUA_RENEW[] = "local cur = redis.call('GET', KEYS[2])\n"
                                      "local e = redis.call('HGET', KEYS[1], 'epoch')\n"
                                      "if cur == ARGV[2] .. ':' .. ARGV[1] and e == ARGV[2] then\n"
                                      "  redis.call('PEXPIRE', KEYS[2], ARGV[3])\n"
                                      "  return {1}\n"
                                      "end\n"
                                      "return {0, cur or '', tonumber(e or '0') or 0}\n";

/* RELEASE  KEYS: K, K:holder  ARGV: owner, epoch -> 1 deleted, 0 not ours.
 * The epoch counter stays. */
static const char LEASE_LUA_RELEASE[] =
    "if redis.call('GET', KEYS[2]) == ARGV[2] .. ':' .. ARGV[1] then\n"
    "  redis.call('DEL', KEYS[2])\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

/* One router with the three scripts loaded on it. */
typedef struct lease_router {
    sh_cluster *c;
    int acquire_id, renew_id, release_id;
} lease_router;

struct sh_lease {
    char key[LEASE_KEY_BYTES_MAX];
    char holder_key[LEASE_KEY_BYTES_MAX];
    char owner[SH_LEASE_OWNER_CHARS_MAX + 1];
    uint32_t ttl_ms, wait_ms;
    sh_lease_lost_cb lost_cb;
    void *lost_arg;

    lease_router own;   /* the owner's thread: acquire, release */
    lease_router renew; /* the renewal thread only, from pthread_create to pthread_join */

    _Atomic uint64_t epoch;
    atomic_int lost;

    pthread_t thread;
    int thread_running;  /* owner thread only */
    pthread_mutex_t mu;  /* guards stop, cond, and the holder fields below */
    pthread_cond_t cond; /* wakes the renewal thread to stop */
    int stop;            /* under mu */
    char other_owner[SH_LEASE_OWNER_CHARS_MAX + 1]; /* under mu: who took it over */
    uint64_t other_epoch;                           /* under mu */
};

/* ---- replies (Redis's data is validated, never asserted) ----------------------- */

static int lease_reply_int(const redisReply *r, int64_t *out)
{
    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        return -1;
    }
    *out = (int64_t)r->integer;
    return 0;
}

static void lease_reply_str(const redisReply *r, char *buf, size_t len)
{
    SH_ASSERT(len > 0);
    buf[0] = '\0';
    if (r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)) {
        snprintf(buf, len, "%.*s", (int)r->len, r->str);
    }
}

/* Runs one script with K and K:holder; *reply_out is an array (caller frees)
 * or the call fails with SH_EREDIS (error reply) / SH_EPROTO (other type). */
static sh_err lease_eval(sh_lease *l, lease_router *lr, int script_id, int nargs, const char **args,
                         redisReply **reply_out)
{
    SH_ASSERT(nargs >= 1 && nargs <= 3);
    const char *keys[2] = {l->key, l->holder_key};
    size_t keylens[2] = {strlen(l->key), strlen(l->holder_key)};
    size_t arglens[3];
    for (int i = 0; i < nargs; i++) {
        arglens[i] = strlen(args[i]);
    }
    redisReply *r = NULL;
    sh_err rc = sh_cluster_evalsha(lr->c, script_id, 2, keys, keylens, nargs, args, arglens, &r);
    if (rc != SH_OK) {
        return rc;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        SH_WARN("lease", "script error key=%s err=\"%.*s\"", l->key, (int)r->len, r->str);
        freeReplyObject(r);
        return SH_EREDIS;
    }
    if (r->type != REDIS_REPLY_ARRAY && r->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(r);
        return SH_EPROTO;
    }
    *reply_out = r;
    return SH_OK;
}

/* ---- new / free ------------------------------------------------------------------ */

static sh_err lease_router_open(lease_router *lr, const char *seeds, uint32_t timeout_ms)
{
    sh_err rc = sh_cluster_open(&lr->c, seeds, timeout_ms);
    if (rc != SH_OK) {
        return rc;
    }
    if ((rc = sh_cluster_script_add(lr->c, LEASE_LUA_ACQUIRE, &lr->acquire_id)) != SH_OK ||
        (rc = sh_cluster_script_add(lr->c, LEASE_LUA_RENEW, &lr->renew_id)) != SH_OK ||
        (rc = sh_cluster_script_add(lr->c, LEASE_LUA_RELEASE, &lr->release_id)) != SH_OK) {
        sh_cluster_close(lr->c);
        lr->c = NULL;
    }
    return rc;
}

/* The key must carry one non-empty hash tag, so K and K:holder share a slot
 * and scripts may touch both. */
static int lease_key_ok(const char *key)
{
    size_t n = strlen(key);
    const char *open = strchr(key, '{');
    if (n == 0 || n > SH_LEASE_KEY_CHARS_MAX || open == NULL) {
        return 0;
    }
    const char *close = strchr(open + 1, '}');
    return close != NULL && close > open + 1;
}

sh_err sh_lease_new(sh_lease **out, const sh_lease_config *cfg)
{
    SH_ASSERT(out != NULL && cfg != NULL);
    *out = NULL;
    if (cfg->redis_seeds == NULL || cfg->key == NULL || !lease_key_ok(cfg->key) ||
        cfg->owner == NULL || cfg->owner[0] == '\0' ||
        strlen(cfg->owner) > SH_LEASE_OWNER_CHARS_MAX || cfg->ttl_ms < SH_LEASE_TTL_MS_MIN ||
        cfg->ttl_ms > SH_LEASE_TTL_MS_MAX || cfg->wait_ms > SH_LEASE_WAIT_MS_MAX) {
        return SH_EINVAL;
    }
    sh_lease *l = calloc(1, sizeof *l);
    if (l == NULL) {
        return SH_ENOMEM;
    }
    snprintf(l->key, sizeof l->key, "%s", cfg->key);
    snprintf(l->holder_key, sizeof l->holder_key, "%s%s", cfg->key, LEASE_HOLDER_SUFFIX);
    SH_ASSERT(sh_cluster_slot(l->key, strlen(l->key)) ==
              sh_cluster_slot(l->holder_key, strlen(l->holder_key)));
    snprintf(l->owner, sizeof l->owner, "%s", cfg->owner);
    l->ttl_ms = cfg->ttl_ms;
    l->wait_ms = cfg->wait_ms;
    l->lost_cb = cfg->lost_cb;
    l->lost_arg = cfg->lost_arg;
    atomic_init(&l->epoch, 0);
    atomic_init(&l->lost, 0);

    pthread_condattr_t ca;
    int mu_ok = pthread_mutex_init(&l->mu, NULL) == 0;
    int cond_ok = 0;
    if (pthread_condattr_init(&ca) == 0) {
        cond_ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
                  pthread_cond_init(&l->cond, &ca) == 0;
        pthread_condattr_destroy(&ca);
    }
    if (!mu_ok || !cond_ok) {
        if (mu_ok) {
            pthread_mutex_destroy(&l->mu);
        }
        free(l);
        return SH_ENOMEM;
    }
    /* A renewal must not eat the TTL in one stuck call: its router gives up
     * after a third of it, and the thread retries. */
    uint32_t renew_timeout_ms = cfg->ttl_ms / 3;
    if (cfg->redis_timeout_ms != 0 && cfg->redis_timeout_ms < renew_timeout_ms) {
        renew_timeout_ms = cfg->redis_timeout_ms;
    }
    sh_err rc = lease_router_open(&l->own, cfg->redis_seeds, cfg->redis_timeout_ms);
    if (rc == SH_OK) {
        rc = lease_router_open(&l->renew, cfg->redis_seeds, renew_timeout_ms);
    }
    if (rc != SH_OK) {
        sh_lease_free(l);
        return rc;
    }
    *out = l;
    return SH_OK;
}

/* ---- renewal thread ---------------------------------------------------------------- */

/* Waits ms on the monotonic clock or until stop; returns 1 when asked to stop. */
static int lease_wait_stop(sh_lease *l, uint32_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        if (pthread_cond_timedwait(&l->cond, &l->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    int stop = l->stop;
    pthread_mutex_unlock(&l->mu);
    return stop;
}

/* Marks the lease lost (once), records the new holder, tells the owner. */
static void lease_mark_lost(sh_lease *l, const char *other_owner, uint64_t other_epoch,
                            const char *why)
{
    pthread_mutex_lock(&l->mu);
    snprintf(l->other_owner, sizeof l->other_owner, "%s", other_owner);
    l->other_epoch = other_epoch;
    pthread_mutex_unlock(&l->mu);
    atomic_store(&l->lost, 1);
    SH_ERROR("lease",
             "lease lost key=%s epoch=%" PRIu64 " why=\"%s\" holder=\"%s\" "
             "holder_epoch=%" PRIu64,
             l->key, atomic_load(&l->epoch), why, other_owner, other_epoch);
    if (l->lost_cb != NULL) {
        l->lost_cb(l->lost_arg);
    }
}

/* One RENEW. Returns 1 renewed, 0 refused (lost; holder filled), -1 no answer. */
static int lease_renew_once(sh_lease *l, char *holder, size_t holder_len, uint64_t *holder_epoch)
{
    char epoch[LEASE_NUM_CHARS_MAX], ttl[LEASE_NUM_CHARS_MAX];
    snprintf(epoch, sizeof epoch, "%" PRIu64, atomic_load(&l->epoch));
    snprintf(ttl, sizeof ttl, "%" PRIu32, l->ttl_ms);
    const char *args[3] = {l->owner, epoch, ttl};
    redisReply *r = NULL;
    sh_err rc = lease_eval(l, &l->renew, l->renew.renew_id, 3, args, &r);
    if (rc != SH_OK) {
        SH_WARN("lease", "renewal failed key=%s err=%s", l->key, sh_strerror(rc));
        return -1;
    }
    int64_t ok = 0, e = 0;
    int result = -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        lease_reply_int(r->element[0], &ok) == 0) {
        if (ok == 1) {
            result = 1;
        } else if (r->elements == 3 && lease_reply_int(r->element[2], &e) == 0) {
            /* The holder value is "EPOCH:OWNER"; name the owner. */
            char val[SH_LEASE_OWNER_CHARS_MAX + LEASE_NUM_CHARS_MAX + 2];
            lease_reply_str(r->element[1], val, sizeof val);
            const char *sep = strchr(val, ':');
            const char *who = sep != NULL ? sep + 1 : val;
            size_t n = strnlen(who, holder_len - 1); /* an overlong holder is cut */
            memcpy(holder, who, n);
            holder[n] = '\0';
            *holder_epoch = e > 0 ? (uint64_t)e : 0;
            result = 0;
        }
    }
    if (result < 0) {
        SH_WARN("lease", "renewal: unexpected reply key=%s type=%d", l->key, r->type);
    }
    freeReplyObject(r);
    return result;
}

static void *lease_renew_main(void *arg)
{
    sh_lease *l = arg;
    uint32_t period_ms = l->ttl_ms / 3;
    uint32_t retry_ms = l->ttl_ms / 6;
    uint64_t last_ok_ms = sh_clock_mono_ms(); /* acquire was sent before this */
    uint32_t next_ms = period_ms;
    while (!lease_wait_stop(l, next_ms)) {
        uint64_t sent_ms = sh_clock_mono_ms();
        char holder[SH_LEASE_OWNER_CHARS_MAX + 1] = "";
        uint64_t holder_epoch = 0;
        int r = lease_renew_once(l, holder, sizeof holder, &holder_epoch);
        if (r == 1) {
            last_ok_ms = sent_ms;
            next_ms = period_ms;
            continue;
        }
        if (r == 0) {
            lease_mark_lost(l, holder, holder_epoch, "renewal refused: another holder or expired");
            break;
        }
        /* No answer: the key may still be ours in Redis, but only until a TTL
         * past the last renewal sent; by then we stop counting on it. */
        if (sh_clock_mono_ms() >= last_ok_ms + l->ttl_ms) {
            lease_mark_lost(l, "", 0, "renewals failed for a whole TTL");
            break;
        }
        next_ms = retry_ms;
    }
    return NULL;
}

/* ---- acquire ------------------------------------------------------------------------- */

/* One ACQUIRE. Returns 1 taken (*epoch_out), 0 held by another (holder,
 * *remaining_ms, *holder_epoch filled), or -1 with *rc set. */
static int lease_try(sh_lease *l, int force, uint64_t *epoch_out, char *holder, size_t holder_len,
                     int64_t *remaining_ms, uint64_t *holder_epoch, sh_err *rc)
{
    char ttl[LEASE_NUM_CHARS_MAX];
    snprintf(ttl, sizeof ttl, "%" PRIu32, l->ttl_ms);
    const char *args[3] = {l->owner, ttl, force ? "1" : "0"};
    redisReply *r = NULL;
    *rc = lease_eval(l, &l->own, l->own.acquire_id, 3, args, &r);
    if (*rc != SH_OK) {
        return -1;
    }
    int64_t ok = 0, e = 0;
    int result = -1;
    *rc = SH_EPROTO;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
        lease_reply_int(r->element[0], &ok) == 0) {
        if (ok == 1 && lease_reply_int(r->element[1], &e) == 0 && e >= 1) {
            *epoch_out = (uint64_t)e;
            result = 1;
        } else if (ok == 0 && r->elements == 4 &&
                   lease_reply_int(r->element[2], remaining_ms) == 0 &&
                   lease_reply_int(r->element[3], &e) == 0) {
            lease_reply_str(r->element[1], holder, holder_len);
            *holder_epoch = e > 0 ? (uint64_t)e : 0;
            result = 0;
        }
    }
    if (result >= 0) {
        *rc = SH_OK;
    }
    freeReplyObject(r);
    return result;
}

/* Asks one replica of the lease's shard to confirm the acquisition. */
static void lease_wait_replica(sh_lease *l)
{
    char ms[LEASE_NUM_CHARS_MAX];
    snprintf(ms, sizeof ms, "%d", LEASE_WAIT_REPLICA_MS);
    const char *argv[3] = {"WAIT", "1", ms};
    size_t argvlen[3] = {4, 1, strlen(ms)};
    redisReply *r = NULL;
    sh_err rc = sh_cluster_command(l->own.c, l->key, strlen(l->key), 3, argv, argvlen, &r);
    int64_t n = 0;
    if (rc != SH_OK || lease_reply_int(r, &n) != 0 || n < 1) {
        SH_WARN("lease", "no replica confirmed the new epoch key=%s err=%s", l->key,
                rc != SH_OK ? sh_strerror(rc) : "none in time");
    }
    if (r != NULL) {
        freeReplyObject(r);
    }
}

sh_err sh_lease_acquire(sh_lease *l, uint64_t *epoch_out)
{
    SH_ASSERT(l != NULL && epoch_out != NULL);
    SH_ASSERT(!l->thread_running && atomic_load(&l->epoch) == 0);
    uint64_t start_ms = sh_clock_mono_ms();
    uint64_t deadline_ms = start_ms + l->wait_ms;
    uint64_t logged_ms = 0;
    char holder[SH_LEASE_OWNER_CHARS_MAX + 1] = "";
    uint64_t holder_epoch = 0;
    int forced = 0;
    uint64_t epoch = 0;
    for (;;) {
        uint64_t now_ms = sh_clock_mono_ms();
        forced = now_ms >= deadline_ms;
        int64_t remaining_ms = 0;
        sh_err rc = SH_OK;
        int r =
            lease_try(l, forced, &epoch, holder, sizeof holder, &remaining_ms, &holder_epoch, &rc);
        if (r < 0) {
            SH_ERROR("lease", "acquire failed key=%s err=%s", l->key, sh_strerror(rc));
            return rc;
        }
        if (r == 1) {
            break;
        }
        if (logged_ms == 0 || now_ms >= logged_ms + SH_LEASE_LOG_MS_MIN) {
            SH_WARN("lease",
                    "lease held, waiting key=%s holder=\"%s\" holder_epoch=%" PRIu64
                    " remaining_ms=%" PRId64 " takeover_in_ms=%" PRIu64,
                    l->key, holder, holder_epoch, remaining_ms, deadline_ms - now_ms);
            logged_ms = now_ms;
        }
        /* Retry when the holder's TTL runs out or the wait does, polling at
         * least every SH_LEASE_POLL_MS_MAX (the holder may release early). */
        uint64_t sleep_ms = deadline_ms - now_ms;
        if (remaining_ms >= 0 && (uint64_t)remaining_ms + 1 < sleep_ms) {
            sleep_ms = (uint64_t)remaining_ms + 1;
        }
        if (sleep_ms > SH_LEASE_POLL_MS_MAX) {
            sleep_ms = SH_LEASE_POLL_MS_MAX;
        }
        sh_clock_sleep_ms(sleep_ms);
    }
    SH_ASSERT(epoch >= 1);
    if (forced && holder[0] != '\0') {
        SH_WARN("lease",
                "took the lease over by force key=%s epoch=%" PRIu64
                " previous_holder=\"%s\" previous_epoch=%" PRIu64 " waited_ms=%" PRIu64,
                l->key, epoch, holder, holder_epoch, sh_clock_mono_ms() - start_ms);
    }
    lease_wait_replica(l);
    atomic_store(&l->epoch, epoch);
    if (pthread_create(&l->thread, NULL, lease_renew_main, l) != 0) {
        SH_ERROR("lease", "renewal thread failed key=%s", l->key);
        sh_lease_release(l);
        return SH_ENOMEM;
    }
    l->thread_running = 1;
    *epoch_out = epoch;
    return SH_OK;
}

/* ---- readers ---------------------------------------------------------------------------- */

uint64_t sh_lease_epoch(const sh_lease *l)
{
    SH_ASSERT(l != NULL);
    return atomic_load(&((sh_lease *)l)->epoch);
}

int sh_lease_lost(const sh_lease *l)
{
    SH_ASSERT(l != NULL);
    return atomic_load(&((sh_lease *)l)->lost);
}

void sh_lease_holder(const sh_lease *l, char *buf, size_t len, uint64_t *epoch_out)
{
    SH_ASSERT(l != NULL && buf != NULL && len > 0);
    sh_lease *m = (sh_lease *)l; /* the mutex, not the lease, changes */
    pthread_mutex_lock(&m->mu);
    snprintf(buf, len, "%s", m->other_owner);
    if (epoch_out != NULL) {
        *epoch_out = m->other_epoch;
    }
    pthread_mutex_unlock(&m->mu);
}

/* ---- release ------------------------------------------------------------------------------ */

static void lease_stop_thread(sh_lease *l)
{
    if (!l->thread_running) {
        return;
    }
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_signal(&l->cond);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    l->thread_running = 0;
}

sh_err sh_lease_release(sh_lease *l)
{
    SH_ASSERT(l != NULL);
    lease_stop_thread(l);
    uint64_t epoch = atomic_load(&l->epoch);
    if (epoch == 0 || atomic_load(&l->lost)) {
        return SH_OK;
    }
    char e[LEASE_NUM_CHARS_MAX];
    snprintf(e, sizeof e, "%" PRIu64, epoch);
    const char *args[2] = {l->owner, e};
    redisReply *r = NULL;
    sh_err rc = lease_eval(l, &l->own, l->own.release_id, 2, args, &r);
    if (rc != SH_OK) {
        SH_WARN("lease", "release failed key=%s epoch=%" PRIu64 " err=%s", l->key, epoch,
                sh_strerror(rc));
        return rc;
    }
    int64_t deleted = 0;
    if (lease_reply_int(r, &deleted) != 0 || deleted != 1) {
        SH_WARN("lease", "release: the lease was no longer ours key=%s epoch=%" PRIu64, l->key,
                epoch);
    } else {
        SH_INFO("lease", "released key=%s epoch=%" PRIu64, l->key, epoch);
    }
    freeReplyObject(r);
    return SH_OK;
}

void sh_lease_free(sh_lease *l)
{
    if (l == NULL) {
        return;
    }
    lease_stop_thread(l);
    sh_cluster_close(l->own.c);
    sh_cluster_close(l->renew.c);
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->mu);
    free(l);
}
