/* cl_redis.c -- design (b): one Redis key per SKU, one Lua call per request.
 *
 * This is the design most flash-sale write-ups end with (seeds 000-002): keep
 * the stock in one Redis key and make check-and-decrement atomic with a Lua
 * script. To be a fair baseline it does everything our partition script does
 * for one order -- idempotency by order id, stock check, decrement, a seq and
 * a detail record -- but per request: no group commit, one key, one slot, so
 * one Redis core is its ceiling whatever runs in front of it.
 *
 * hiredis async on the loop's event base (LIBRARY-NOTES 1): commands issued in
 * one loop turn leave in one write, so the connection pipelines as any modern
 * client would; that is transport, not batching -- each request is still its
 * own EVALSHA. A reply of NULL means the connection died: the request is
 * answered 503 and the connection is re-opened after CL_REDIS_RETRY_MS.
 * NOSCRIPT (a restarted server) is retried once with EVAL, which also caches
 * the script again. */
#include "cl_redis.h"

#include "sh_log.h"

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libevent.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CL_REDIS_CONNECTIONS_MAX 256
#define CL_REDIS_RETRY_MS        1000 /* wait before re-opening a dead connection */
#define CL_REDIS_SHA_CHARS       40
#define CL_REDIS_NUM_CHARS       24 /* a uint64 in decimal, with room */

/* Why each step: the order key is read first so a retry gets its first answer
 * even when the stock has run out since; the key is written with NX (redundant
 * inside an atomic script, kept as the classic design's guard) and a TTL. */
static const char cl_redis_script_deduct[] =
    "local q = tonumber(ARGV[1])\n"
    "local s = tonumber(redis.call('GET', KEYS[1]))\n"
    "if s == nil then return {4, 0} end\n"
    "local prev = redis.call('GET', KEYS[4])\n"
    "if prev then\n"
    "  local pq, ps = string.match(prev, '^(%d+),(%d+)$')\n"
    "  if tonumber(pq) ~= q then return {3, 0} end\n"
    "  return {1, tonumber(ps)}\n"
    "end\n"
    "if s < q then return {2, 0} end\n"
    "local seq = redis.call('INCR', KEYS[2])\n"
    "redis.call('DECRBY', KEYS[1], q)\n"
    "redis.call('SET', KEYS[4], q .. ',' .. seq, 'NX', 'EX', ARGV[3])\n"
    "redis.call('RPUSH', KEYS[3], seq .. ',' .. ARGV[2] .. ',' .. ARGV[4] .. ',' .. q .. ',' .. "
    "ARGV[5])\n"
    "return {0, seq}\n";

/* KEYS stock seq; ARGV total. Sets the stock; keeps seq if there is one. */
static const char cl_redis_script_load[] = "redis.call('SET', KEYS[1], ARGV[1])\n"
                                           "redis.call('SETNX', KEYS[2], 0)\n"
                                           "return 1\n";

typedef struct rd_conn {
    cl_redis *owner;
    unsigned index;
    redisAsyncContext *ac; /* NULL while down */
    struct event *retry_ev;
} rd_conn;

struct cl_redis {
    cl_redis_config cfg;
    struct event_base *base;
    char sha[CL_REDIS_SHA_CHARS + 1];
    rd_conn *conns;
    unsigned next; /* round-robin cursor */
    uint64_t pending;
    int closing;
};

const char *cl_redis_deduct_script(void)
{
    return cl_redis_script_deduct;
}

/* ---- connections ----------------------------------------------------------- */

static void rd_connect(rd_conn *c);

static void rd_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rd_conn *c = arg;
    if (!c->owner->closing && c->ac == NULL) {
        rd_connect(c);
    }
}

static void rd_lost(rd_conn *c, const char *why)
{
    c->ac = NULL; /* hiredis frees it */
    if (c->owner->closing) {
        return;
    }
    SH_WARN("redis", "connection down conn=%u why=%s; retrying in %d ms", c->index, why,
            CL_REDIS_RETRY_MS);
    struct timeval tv = {CL_REDIS_RETRY_MS / 1000, (CL_REDIS_RETRY_MS % 1000) * 1000};
    if (evtimer_add(c->retry_ev, &tv) != 0) {
        SH_ERROR("redis", "retry timer failed conn=%u", c->index);
    }
}

static void rd_connect_cb(const redisAsyncContext *ac, int status)
{
    rd_conn *c = ac->data;
    if (status != REDIS_OK) {
        rd_lost(c, ac->errstr[0] ? ac->errstr : "connect failed");
    }
}

static void rd_disconnect_cb(const redisAsyncContext *ac, int status)
{
    rd_conn *c = ac->data;
    rd_lost(c, status == REDIS_OK ? "closed" : (ac->errstr[0] ? ac->errstr : "I/O error"));
}

static void rd_connect(rd_conn *c)
{
    cl_redis *b = c->owner;
    redisAsyncContext *ac = redisAsyncConnect(b->cfg.host, (int)b->cfg.port);
    if (ac == NULL || ac->err != 0) {
        SH_WARN("redis", "connect failed conn=%u err=%s", c->index,
                ac != NULL ? ac->errstr : "out of memory");
        if (ac != NULL) {
            redisAsyncFree(ac);
        }
        rd_lost(c, "connect failed");
        return;
    }
    ac->data = c;
    if (redisLibeventAttach(ac, b->base) != REDIS_OK ||
        redisAsyncSetConnectCallback(ac, rd_connect_cb) != REDIS_OK ||
        redisAsyncSetDisconnectCallback(ac, rd_disconnect_cb) != REDIS_OK) {
        redisAsyncFree(ac);
        rd_lost(c, "attach failed");
        return;
    }
    c->ac = ac; /* commands may be queued before the connect completes */
}

/* ---- deductions ------------------------------------------------------------ */

static void rd_reply_cb(redisAsyncContext *ac, void *reply, void *privdata);

/* Sends r's deduction on ac: EVALSHA, or EVAL (use_eval) after a NOSCRIPT. */
static int rd_send_deduct(cl_redis *b, redisAsyncContext *ac, cl_req *r, int use_eval)
{
    char k_stock[SH_SKU_ID_CHARS_MAX + 16], k_seq[SH_SKU_ID_CHARS_MAX + 16];
    char k_det[SH_SKU_ID_CHARS_MAX + 16], k_ord[SH_SKU_ID_CHARS_MAX + SH_ORDER_ID_CHARS_MAX + 16];
    char qty[CL_REDIS_NUM_CHARS], ttl[CL_REDIS_NUM_CHARS], now[CL_REDIS_NUM_CHARS];
    snprintf(k_stock, sizeof k_stock, "{cl:%s}:stock", r->sku);
    snprintf(k_seq, sizeof k_seq, "{cl:%s}:seq", r->sku);
    snprintf(k_det, sizeof k_det, "{cl:%s}:d", r->sku);
    snprintf(k_ord, sizeof k_ord, "{cl:%s}:o:%s", r->sku, r->order);
    snprintf(qty, sizeof qty, "%" PRIu32, r->qty);
    snprintf(ttl, sizeof ttl, "%" PRIu32, b->cfg.order_ttl_s);
    snprintf(now, sizeof now, "%" PRIu64, r->wall_ms);
    const char *argv[] = {use_eval ? "EVAL" : "EVALSHA",
                          use_eval ? cl_redis_script_deduct : b->sha,
                          "4",
                          k_stock,
                          k_seq,
                          k_det,
                          k_ord,
                          qty,
                          r->order,
                          ttl,
                          r->user,
                          now};
    size_t lens[sizeof argv / sizeof argv[0]];
    for (size_t i = 0; i < sizeof argv / sizeof argv[0]; i++) {
        lens[i] = strlen(argv[i]);
    }
    return redisAsyncCommandArgv(ac, rd_reply_cb, r, (int)(sizeof argv / sizeof argv[0]), argv,
                                 lens);
}

static int rd_send_load(redisAsyncContext *ac, cl_req *r)
{
    char k_stock[SH_SKU_ID_CHARS_MAX + 16], k_seq[SH_SKU_ID_CHARS_MAX + 16];
    char total[CL_REDIS_NUM_CHARS];
    snprintf(k_stock, sizeof k_stock, "{cl:%s}:stock", r->sku);
    snprintf(k_seq, sizeof k_seq, "{cl:%s}:seq", r->sku);
    snprintf(total, sizeof total, "%" PRId64, r->total);
    const char *argv[] = {"EVAL", cl_redis_script_load, "2", k_stock, k_seq, total};
    size_t lens[sizeof argv / sizeof argv[0]];
    for (size_t i = 0; i < sizeof argv / sizeof argv[0]; i++) {
        lens[i] = strlen(argv[i]);
    }
    return redisAsyncCommandArgv(ac, rd_reply_cb, r, (int)(sizeof argv / sizeof argv[0]), argv,
                                 lens);
}

/* The script's {code, seq} into r's outcome; anything else is a protocol error. */
static void rd_deduct_outcome(cl_req *r, const redisReply *rep)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER ||
        rep->element[1]->type != REDIS_REPLY_INTEGER || rep->element[1]->integer < 0) {
        cl_req_unavailable(r, "unexpected reply from the deduction script (type %d)", rep->type);
        return;
    }
    r->seq = (uint64_t)rep->element[1]->integer;
    switch (rep->element[0]->integer) {
    case 0:
        r->outcome = CL_OUT_OK;
        break;
    case 1:
        r->outcome = CL_OUT_DUPLICATE;
        break;
    case 2:
        r->outcome = CL_OUT_SOLD_OUT;
        break;
    case 3:
        r->outcome = CL_OUT_CONFLICT;
        break;
    case 4:
        r->outcome = CL_OUT_UNKNOWN_SKU;
        break;
    default:
        cl_req_unavailable(r, "unknown code %lld from the deduction script",
                           (long long)rep->element[0]->integer);
        break;
    }
}

static void rd_reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    cl_req *r = privdata;
    rd_conn *c = ac->data;
    cl_redis *b = c->owner;
    const redisReply *rep = reply;
    SH_ASSERT(r != NULL && b->pending > 0);
    if (rep == NULL) {
        cl_req_unavailable(r, "%s", b->closing ? "shutting down" : "redis connection lost");
    } else if (rep->type == REDIS_REPLY_ERROR) {
        if (r->kind == CL_DEDUCT && r->attempts == 0 && strncmp(rep->str, "NOSCRIPT", 8) == 0 &&
            !b->closing) {
            r->attempts++;
            if (rd_send_deduct(b, ac, r, 1) == REDIS_OK) {
                return; /* still pending; the retry's reply lands here again */
            }
        }
        cl_req_unavailable(r, "redis error: %.100s", rep->str);
    } else if (r->kind == CL_LOAD) {
        r->outcome = CL_OUT_LOADED;
    } else {
        rd_deduct_outcome(r, rep);
    }
    b->pending--;
    r->done(r);
}

static void rd_submit(void *impl, cl_req *r)
{
    cl_redis *b = impl;
    SH_ASSERT(b != NULL && r != NULL && r->done != NULL);
    redisAsyncContext *ac = NULL;
    for (uint32_t i = 0; i < b->cfg.connections && ac == NULL; i++) {
        rd_conn *c = &b->conns[b->next];
        b->next = (b->next + 1) % b->cfg.connections;
        ac = c->ac;
    }
    if (ac == NULL || b->closing) {
        cl_req_unavailable(r, "no redis connection is up");
        r->done(r);
        return;
    }
    int rc = r->kind == CL_LOAD ? rd_send_load(ac, r) : rd_send_deduct(b, ac, r, 0);
    if (rc != REDIS_OK) {
        cl_req_unavailable(r, "redis command could not be queued");
        r->done(r);
        return;
    }
    b->pending++;
}

static uint64_t rd_pending(const void *impl)
{
    const cl_redis *b = impl;
    return b->pending;
}

cl_backend cl_redis_backend(cl_redis *r)
{
    SH_ASSERT(r != NULL);
    cl_backend be = {.name = "single-key", .impl = r, .submit = rd_submit, .pending = rd_pending};
    return be;
}

/* ---- lifecycle ------------------------------------------------------------- */

/* One synchronous connection: PING, then SCRIPT LOAD for the sha. */
static sh_err rd_load_script(cl_redis *b)
{
    struct timeval tv = {b->cfg.timeout_ms / 1000, (b->cfg.timeout_ms % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout(b->cfg.host, (int)b->cfg.port, tv);
    if (ctx == NULL || ctx->err != 0) {
        SH_ERROR("redis", "cannot connect addr=%s:%u err=%s", b->cfg.host, (unsigned)b->cfg.port,
                 ctx != NULL ? ctx->errstr : "out of memory");
        if (ctx != NULL) {
            redisFree(ctx);
        }
        return SH_EIO;
    }
    sh_err rc = SH_OK;
    if (redisSetTimeout(ctx, tv) != REDIS_OK) {
        rc = SH_EIO;
    }
    redisReply *rep =
        rc == SH_OK ? redisCommand(ctx, "SCRIPT LOAD %s", cl_redis_script_deduct) : NULL;
    if (rep == NULL) {
        SH_ERROR("redis", "SCRIPT LOAD failed addr=%s:%u err=%s", b->cfg.host,
                 (unsigned)b->cfg.port, ctx->errstr);
        rc = SH_EIO;
    } else if (rep->type != REDIS_REPLY_STRING || rep->len != CL_REDIS_SHA_CHARS) {
        SH_ERROR("redis", "SCRIPT LOAD answered type=%d %.100s", rep->type,
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "");
        rc = SH_EREDIS;
    } else {
        memcpy(b->sha, rep->str, CL_REDIS_SHA_CHARS);
        b->sha[CL_REDIS_SHA_CHARS] = '\0';
    }
    if (rep != NULL) {
        freeReplyObject(rep);
    }
    redisFree(ctx);
    return rc;
}

sh_err cl_redis_open(cl_redis **out, struct event_base *base, const cl_redis_config *cfg)
{
    SH_ASSERT(out != NULL && base != NULL && cfg != NULL && cfg->host != NULL);
    *out = NULL;
    if (cfg->connections == 0 || cfg->connections > CL_REDIS_CONNECTIONS_MAX) {
        SH_ERROR("redis", "connections must be 1..%d", CL_REDIS_CONNECTIONS_MAX);
        return SH_ERANGE;
    }
    cl_redis *b = calloc(1, sizeof *b);
    if (b == NULL) {
        return SH_ENOMEM;
    }
    b->cfg = *cfg;
    b->base = base;
    sh_err rc = rd_load_script(b);
    if (rc != SH_OK) {
        free(b);
        return rc;
    }
    b->conns = calloc(cfg->connections, sizeof *b->conns);
    if (b->conns == NULL) {
        free(b);
        return SH_ENOMEM;
    }
    for (uint32_t i = 0; i < cfg->connections; i++) {
        rd_conn *c = &b->conns[i];
        c->owner = b;
        c->index = i;
        c->retry_ev = evtimer_new(base, rd_retry_cb, c);
        if (c->retry_ev == NULL) {
            cl_redis_free(b);
            return SH_ENOMEM;
        }
        rd_connect(c);
    }
    SH_INFO("redis", "single-key backend addr=%s:%u connections=%u sha=%s", cfg->host,
            (unsigned)cfg->port, (unsigned)cfg->connections, b->sha);
    *out = b;
    return SH_OK;
}

void cl_redis_free(cl_redis *b)
{
    if (b == NULL) {
        return;
    }
    b->closing = 1;
    for (uint32_t i = 0; b->conns != NULL && i < b->cfg.connections; i++) {
        rd_conn *c = &b->conns[i];
        if (c->ac != NULL) {
            redisAsyncContext *ac = c->ac;
            c->ac = NULL;
            redisAsyncFree(ac); /* pending callbacks get NULL: answered 503 */
        }
        if (c->retry_ev != NULL) {
            event_free(c->retry_ev);
        }
    }
    SH_ASSERT(b->pending == 0);
    free(b->conns);
    free(b);
}
