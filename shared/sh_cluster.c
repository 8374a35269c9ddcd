/* sh_cluster.c -- a small synchronous Redis Cluster router on top of hiredis.
 *
 * hiredis 0.14.1 speaks to one server; Redis Cluster spreads keys over 16384
 * slots owned by masters that move (resharding, failover). This module keeps
 * a slot -> node map read with CLUSTER SLOTS, one lazily opened blocking
 * connection per node, and a bounded retry loop that reacts to what the
 * cluster answers: MOVED fixes one slot at once and schedules a rate-limited
 * full refresh; ASK is followed once with ASKING pipelined before the command
 * and leaves the map alone (the migration is not finished); TRYAGAIN,
 * CLUSTERDOWN, READONLY, LOADING, MASTERDOWN and nodes that cannot be reached
 * back off, refresh and retry. Scripts are kept as text so a node that lost
 * its script cache (restart, failover, SCRIPT FLUSH) is healed on NOSCRIPT.
 *
 * The retry rule (sh_cluster.h): a command is sent again only when it surely
 * did not run. So the router writes each buffer itself (cl_flush) to learn
 * whether any byte left; after that, a failed or timed-out read makes the
 * outcome unknown (SH_EUNKNOWN) and the connection is closed, never reused.
 * Before a pooled connection is written to, one non-blocking peek
 * (cl_ctx_usable) finds the ones the peer closed, which would otherwise turn
 * every failover into unknown outcomes.
 *
 * Node table entries keep their index while the node stays in the cluster:
 * a refresh only drops nodes that left and fills freed entries with new ones.
 * That lets the pipeline remember "entry i went to node k" across the retry
 * phase even if a retry refreshes the map.
 *
 * One thread owns a router (see sh_cluster.h); nothing here locks. */
#define _POSIX_C_SOURCE 200809L
#include "sh_cluster.h"

#include "sh_clock.h"
#include "sh_limits.h"
#include "sh_log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>

#define CL_MOD             "cluster"
#define CL_HOST_BYTES      256                            /* host name or address, NUL included */
#define CL_SHA_CHARS       40                             /* hex sha1 of a script */
#define CL_SENDS_MAX       (1 + SH_CLUSTER_REDIRECTS_MAX) /* first send + hops */
#define CL_BACKOFF_MS_MIN  20    /* first back-off after TRYAGAIN / I/O failure */
#define CL_BACKOFF_MS_MAX  500   /* back-off doubles up to this */
#define CL_BUDGET_TIMEOUTS 2     /* a command's retries stop after this many timeouts */
#define CL_BKEY_BYTES      24    /* "{sh:b:K}" and its NUL */
#define CL_BKEY_TRIES      65536 /* tags tried to find one on a node's slots */

_Static_assert(SH_CLUSTER_NODES_MAX <= INT16_MAX, "node indices fit the int16_t slot map");
_Static_assert(SH_CLUSTER_SLOTS == 16384, "CRC16 & 16383 gives the slot");
_Static_assert(CL_SENDS_MAX >= 2, "a redirect can be followed at least once");

/* ==== types ================================================================ */

typedef struct cl_addr {
    char host[CL_HOST_BYTES];
    int port;
} cl_addr;

typedef struct cl_node {
    bool in_use;
    bool master;
    bool lost;  /* its last connection died: the next connect is a reconnect */
    bool wrote; /* a command went to it since the last barrier (reads count too) */
    cl_addr addr;
    redisContext *ctx;    /* NULL until first use or after it died */
    uint64_t barrier_gen; /* the barrier that last looked at it */
    sh_cluster_barrier_state barrier;
    uint8_t bkey_len; /* its barrier key, a tag on one of its slots; 0 unknown */
    char bkey[CL_BKEY_BYTES];
} cl_node;

typedef struct cl_script {
    char *lua;
    size_t len;
    char sha[CL_SHA_CHARS + 1];
} cl_script;

/* A slot map parsed from one CLUSTER SLOTS reply, before it replaces the live one. */
typedef struct cl_map {
    int count;
    cl_addr addr[SH_CLUSTER_NODES_MAX];
    bool master[SH_CLUSTER_NODES_MAX];
    int16_t slots[SH_CLUSTER_SLOTS]; /* index into addr, -1 unassigned */
} cl_map;

struct sh_cluster {
    uint32_t timeout_ms;
    struct timeval tv;
    int16_t slots[SH_CLUSTER_SLOTS]; /* index into nodes, -1 unassigned */
    cl_node nodes[SH_CLUSTER_NODES_MAX];
    int seed_count;
    cl_addr seeds[SH_CLUSTER_NODES_MAX];
    bool refresh_due;         /* a redirect or failure asked for a refresh */
    uint64_t refresh_last_ms; /* when the last refresh started (monotonic) */
    int script_count;
    cl_script scripts[SH_CLUSTER_SCRIPTS_MAX];
    sh_cluster_stats stats;
    uint64_t barrier_gen; /* barriers run (sh_cluster_barrier) */
    cl_map scratch;
};

/* One command as the retry loop sees it. */
typedef struct cl_req {
    int argc;
    const char **argv;
    const size_t *argvlen;
    int script; /* script id when this is an EVALSHA of a known script, else -1 */
} cl_req;

/* Retry state of one command. */
typedef struct cl_state {
    uint16_t slot;
    int sends;    /* sends made, bounded by CL_SENDS_MAX */
    int ask_node; /* >= 0: the next send goes there, after ASKING */
    bool wait;    /* back off before the next send */
    bool stop;    /* a failure retrying cannot fix */
    uint64_t backoff_ms;
    uint64_t deadline_ms;
    sh_err last; /* returned when the sends run out */
} cl_state;

typedef enum cl_kind {
    CL_FINAL = 0, /* give the reply to the caller */
    CL_MOVED,
    CL_ASK,
    CL_TRYAGAIN, /* TRYAGAIN, CLUSTERDOWN, READONLY, LOADING, MASTERDOWN */
    CL_NOSCRIPT,
} cl_kind;

/* ==== slots ================================================================ */

/* CRC16-XMODEM (poly 0x1021, init 0), bitwise: keys are short and the slot is
 * computed once per command, so a table buys nothing worth its 512 bytes. */
static uint16_t cl_crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint16_t)(uint8_t)buf[i] << 8);
        for (int bit = 0; bit < 8; bit++) {
            if (crc & 0x8000u) {
                crc = (uint16_t)((crc << 1) ^ 0x1021u);
            } else {
                crc = (uint16_t)(crc << 1);
            }
        }
    }
    return crc;
}

uint16_t sh_cluster_slot(const char *key, size_t len)
{
    SH_ASSERT(key != NULL || len == 0);
    if (len > 0) {
        const char *open = memchr(key, '{', len);
        if (open != NULL) {
            size_t from = (size_t)(open - key) + 1;
            const char *close = memchr(key + from, '}', len - from);
            if (close != NULL && close > key + from) {
                len = (size_t)(close - (key + from));
                key += from;
            }
        }
    }
    uint16_t slot = (uint16_t)(cl_crc16(key, len) & (SH_CLUSTER_SLOTS - 1));
    SH_ASSERT(slot < SH_CLUSTER_SLOTS);
    return slot;
}

/* ==== addresses ============================================================ */

/* Parses "host:port" or "[v6]:port" from s[0..len). The host may be empty
 * (Redis sends ":port" for "the node you asked"); callers decide. */
static bool cl_addr_parse(const char *s, size_t len, cl_addr *out)
{
    SH_ASSERT(s != NULL && out != NULL);
    const char *colon = NULL;
    for (size_t i = len; i > 0; i--) {
        if (s[i - 1] == ':') {
            colon = s + i - 1;
            break;
        }
    }
    if (colon == NULL) {
        return false;
    }
    const char *host = s;
    size_t host_len = (size_t)(colon - s);
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        host++;
        host_len -= 2;
    }
    size_t port_len = len - (size_t)(colon + 1 - s);
    if (host_len >= CL_HOST_BYTES || port_len == 0 || port_len > 5) {
        return false;
    }
    int port = 0;
    for (size_t i = 0; i < port_len; i++) {
        char ch = colon[1 + i];
        if (ch < '0' || ch > '9') {
            return false;
        }
        port = port * 10 + (ch - '0');
    }
    if (port < 1 || port > 65535) {
        return false;
    }
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    out->port = port;
    return true;
}

static bool cl_addr_eq(const cl_addr *a, const char *host, int port)
{
    return a->port == port && strcmp(a->host, host) == 0;
}

static sh_err cl_addr_format(const cl_addr *a, char *buf, size_t buflen)
{
    SH_ASSERT(buf != NULL);
    int n = snprintf(buf, buflen, "%s:%d", a->host, a->port);
    if (n < 0 || (size_t)n >= buflen) {
        return SH_ERANGE;
    }
    return SH_OK;
}

/* ==== connections ========================================================== */

static sh_err cl_ctx_rc(const redisContext *ctx, int saved_errno)
{
    switch (ctx->err) {
    case REDIS_ERR_OOM:
        return SH_ENOMEM;
    case REDIS_ERR_PROTOCOL:
        return SH_EPROTO;
    case REDIS_ERR_IO:
        /* A SO_RCVTIMEO/SO_SNDTIMEO expiry surfaces as EAGAIN; a connect
         * timeout as ETIMEDOUT. */
        if (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK || saved_errno == ETIMEDOUT ||
            saved_errno == EINPROGRESS) {
            return SH_ETIMEDOUT;
        }
        return SH_EIO;
    default:
        return SH_EIO;
    }
}

static redisContext *cl_connect(sh_cluster *c, const cl_addr *a, sh_err *rc)
{
    SH_ASSERT(c != NULL && a != NULL && rc != NULL);
    redisContext *ctx = redisConnectWithTimeout(a->host, a->port, c->tv);
    if (ctx == NULL) {
        *rc = SH_ENOMEM;
        return NULL;
    }
    if (ctx->err != 0) {
        *rc = cl_ctx_rc(ctx, errno);
        SH_WARN(CL_MOD, "connect failed addr=%s:%d err=%s", a->host, a->port, ctx->errstr);
        redisFree(ctx);
        return NULL;
    }
    if (redisSetTimeout(ctx, c->tv) != REDIS_OK) {
        *rc = SH_EIO;
        SH_WARN(CL_MOD, "set timeout failed addr=%s:%d err=%s", a->host, a->port, ctx->errstr);
        redisFree(ctx);
        return NULL;
    }
    /* Keepalive only speeds up noticing a vanished peer; the timeouts above
     * already bound every call, so a failure here is not worth failing on. */
    if (redisEnableKeepAlive(ctx) != REDIS_OK) {
        SH_DEBUG(CL_MOD, "keepalive not enabled addr=%s:%d", a->host, a->port);
    }
    *rc = SH_OK;
    return ctx;
}

/* Frees a dead connection; the next use of the node reconnects. */
static void cl_node_kill(sh_cluster *c, int i, sh_err why)
{
    SH_ASSERT(i >= 0 && i < SH_CLUSTER_NODES_MAX);
    cl_node *n = &c->nodes[i];
    SH_ASSERT(n->in_use);
    if (n->ctx != NULL) {
        SH_WARN(CL_MOD, "connection lost addr=%s:%d err=%s detail=%s", n->addr.host, n->addr.port,
                sh_strerror(why), n->ctx->errstr[0] != '\0' ? n->ctx->errstr : "-");
        redisFree(n->ctx);
        n->ctx = NULL;
    }
    n->lost = true;
    c->stats.io_errors++;
    c->refresh_due = true;
}

/* The node's connection, opened now if needed. NULL (and *rc) when it cannot be. */
static redisContext *cl_node_ctx(sh_cluster *c, int i, sh_err *rc)
{
    SH_ASSERT(i >= 0 && i < SH_CLUSTER_NODES_MAX);
    cl_node *n = &c->nodes[i];
    SH_ASSERT(n->in_use);
    if (n->ctx != NULL) {
        *rc = SH_OK;
        return n->ctx;
    }
    n->ctx = cl_connect(c, &n->addr, rc);
    if (n->ctx == NULL) {
        n->lost = true;
        c->stats.io_errors++;
        c->refresh_due = true;
        return NULL;
    }
    if (n->lost) {
        c->stats.reconnects++;
        n->lost = false;
    }
    return n->ctx;
}

/* True when ctx can take a new command: the peer has not closed or reset it,
 * and no byte is waiting that no command asked for (a stream out of sync).
 * One recv(MSG_PEEK | MSG_DONTWAIT): it never blocks and consumes nothing. */
static bool cl_ctx_usable(const redisContext *ctx)
{
    if (sdslen(ctx->obuf) != 0 || ctx->reader->pos < ctx->reader->len) {
        return false; /* unsent bytes, or bytes after the last reply */
    }
    char b;
    ssize_t n = recv(ctx->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n >= 0) {
        return false; /* 0: EOF; 1: data no command asked for */
    }
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

/* The node's connection for a new send: the pooled one if cl_ctx_usable, else
 * a new one. Checking here keeps a dead node a retryable connect failure
 * instead of a written command with an unknown outcome. */
static redisContext *cl_node_fresh(sh_cluster *c, int i, sh_err *rc)
{
    SH_ASSERT(i >= 0 && i < SH_CLUSTER_NODES_MAX);
    cl_node *n = &c->nodes[i];
    if (n->ctx != NULL && !cl_ctx_usable(n->ctx)) {
        SH_INFO(CL_MOD, "stale connection replaced addr=%s:%d", n->addr.host, n->addr.port);
        cl_node_kill(c, i, SH_EIO);
    }
    return cl_node_ctx(c, i, rc);
}

/* Writes ctx's output buffer until it is empty. *wrote tells whether any byte
 * left: until one does, a failure proves the commands in it never reached the
 * node. Each redisBufferWrite is one write(2) on a blocking socket with a send
 * timeout, so it makes progress or fails; only EINTR gives neither, and the
 * deadline bounds that. */
static sh_err cl_flush(redisContext *ctx, uint64_t deadline_ms, bool *wrote)
{
    SH_ASSERT(ctx != NULL && wrote != NULL);
    *wrote = false;
    size_t left = sdslen(ctx->obuf);
    int done = 0;
    while (!done) {
        int ok = redisBufferWrite(ctx, &done);
        int saved_errno = errno;
        size_t now_left = sdslen(ctx->obuf);
        SH_ASSERT(now_left <= left);
        *wrote = *wrote || now_left < left;
        left = now_left;
        if (ok != REDIS_OK) {
            return cl_ctx_rc(ctx, saved_errno);
        }
        if (!done && sh_clock_mono_ms() > deadline_ms) {
            return SH_ETIMEDOUT;
        }
    }
    SH_ASSERT(left == 0);
    return SH_OK;
}

static int cl_node_find(const sh_cluster *c, const char *host, int port)
{
    for (int i = 0; i < SH_CLUSTER_NODES_MAX; i++) {
        if (c->nodes[i].in_use && cl_addr_eq(&c->nodes[i].addr, host, port)) {
            return i;
        }
    }
    return -1;
}

/* Index of the node at host:port, added (not connected) if new; -1 when the
 * table is full. */
static int cl_node_get(sh_cluster *c, const char *host, int port)
{
    int i = cl_node_find(c, host, port);
    if (i >= 0) {
        return i;
    }
    for (i = 0; i < SH_CLUSTER_NODES_MAX; i++) {
        cl_node *n = &c->nodes[i];
        if (!n->in_use) {
            memset(n, 0, sizeof *n);
            n->in_use = true;
            snprintf(n->addr.host, sizeof n->addr.host, "%s", host);
            n->addr.port = port;
            return i;
        }
    }
    SH_WARN(CL_MOD, "node table full addr=%s:%d max=%d", host, port, SH_CLUSTER_NODES_MAX);
    return -1;
}

static void cl_node_drop(sh_cluster *c, int i)
{
    cl_node *n = &c->nodes[i];
    SH_ASSERT(n->in_use);
    if (n->ctx != NULL) {
        redisFree(n->ctx);
    }
    memset(n, 0, sizeof *n);
}

/* Marks the nodes owning at least one slot; returns how many. */
static int cl_owners(const sh_cluster *c, bool owns[SH_CLUSTER_NODES_MAX])
{
    memset(owns, 0, sizeof(bool) * SH_CLUSTER_NODES_MAX);
    int count = 0;
    for (int s = 0; s < SH_CLUSTER_SLOTS; s++) {
        int i = c->slots[s];
        if (i >= 0 && !owns[i]) {
            owns[i] = true;
            count++;
        }
    }
    SH_ASSERT(count <= SH_CLUSTER_NODES_MAX);
    return count;
}

/* ==== slot map ============================================================= */

static int cl_map_add(cl_map *m, const char *host, size_t host_len, int port, bool master)
{
    if (host_len >= CL_HOST_BYTES) {
        return -1;
    }
    char name[CL_HOST_BYTES];
    memcpy(name, host, host_len);
    name[host_len] = '\0';
    for (int i = 0; i < m->count; i++) {
        if (cl_addr_eq(&m->addr[i], name, port)) {
            m->master[i] = m->master[i] || master;
            return i;
        }
    }
    if (m->count == SH_CLUSTER_NODES_MAX) {
        return -1;
    }
    int i = m->count++;
    memcpy(m->addr[i].host, name, host_len + 1);
    m->addr[i].port = port;
    m->master[i] = master;
    return i;
}

/* Parses a CLUSTER SLOTS reply: [[start, end, [ip, port, id, meta], replicas...], ...].
 * Node entries need >= 2 useful elements; we require >= 3 as 7.0 sends 4. An
 * empty ip means "the node you asked" (from_host); "?" means unknown. */
static sh_err cl_map_parse(const redisReply *r, const char *from_host, cl_map *m)
{
    SH_ASSERT(r != NULL && from_host != NULL && m != NULL);
    m->count = 0;
    for (int s = 0; s < SH_CLUSTER_SLOTS; s++) {
        m->slots[s] = -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        SH_WARN(CL_MOD, "CLUSTER SLOTS refused from=%s err=%.*s", from_host, (int)r->len, r->str);
        return SH_ECLUSTER;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        return SH_EPROTO;
    }
    for (size_t e = 0; e < r->elements; e++) {
        const redisReply *range = r->element[e];
        if (range == NULL || range->type != REDIS_REPLY_ARRAY || range->elements < 3) {
            return SH_EPROTO;
        }
        const redisReply *lo = range->element[0];
        const redisReply *hi = range->element[1];
        if (lo->type != REDIS_REPLY_INTEGER || hi->type != REDIS_REPLY_INTEGER || lo->integer < 0 ||
            hi->integer >= SH_CLUSTER_SLOTS || lo->integer > hi->integer) {
            return SH_EPROTO;
        }
        for (size_t j = 2; j < range->elements; j++) {
            const redisReply *node = range->element[j];
            if (node->type != REDIS_REPLY_ARRAY || node->elements < 3) {
                return SH_EPROTO;
            }
            const redisReply *ip = node->element[0];
            const redisReply *port = node->element[1];
            if (ip->type != REDIS_REPLY_STRING || port->type != REDIS_REPLY_INTEGER ||
                port->integer < 1 || port->integer > 65535) {
                return SH_EPROTO;
            }
            if (ip->len == 1 && ip->str[0] == '?') {
                continue; /* endpoint unknown: unreachable for us */
            }
            const char *host = ip->len > 0 ? ip->str : from_host;
            size_t host_len = ip->len > 0 ? ip->len : strlen(from_host);
            bool master = j == 2;
            int idx = cl_map_add(m, host, host_len, (int)port->integer, master);
            if (idx < 0) {
                if (master) {
                    SH_WARN(CL_MOD, "CLUSTER SLOTS has too many nodes max=%d",
                            SH_CLUSTER_NODES_MAX);
                    return SH_ELIMIT;
                }
                continue; /* a replica we cannot track is not needed for routing */
            }
            if (master) {
                for (long long s = lo->integer; s <= hi->integer; s++) {
                    m->slots[s] = (int16_t)idx;
                }
            }
        }
    }
    int assigned = 0;
    for (int s = 0; s < SH_CLUSTER_SLOTS; s++) {
        assigned += m->slots[s] >= 0;
    }
    if (assigned == 0) {
        SH_WARN(CL_MOD, "CLUSTER SLOTS assigns no slot from=%s", from_host);
        return SH_ECLUSTER;
    }
    return SH_OK;
}

/* Replaces the live map with c->scratch, keeping node indices and connections
 * of nodes that stay. */
static void cl_map_apply(sh_cluster *c, const char *from)
{
    cl_map *m = &c->scratch;
    SH_ASSERT(m->count > 0 && m->count <= SH_CLUSTER_NODES_MAX);
    for (int i = 0; i < SH_CLUSTER_NODES_MAX; i++) {
        if (!c->nodes[i].in_use) {
            continue;
        }
        bool kept = false;
        for (int k = 0; k < m->count && !kept; k++) {
            kept = cl_addr_eq(&m->addr[k], c->nodes[i].addr.host, c->nodes[i].addr.port);
        }
        if (!kept) {
            cl_node_drop(c, i);
        }
    }
    int16_t remap[SH_CLUSTER_NODES_MAX];
    memset(remap, 0xff, sizeof remap); /* -1: every used entry is set below */
    for (int k = 0; k < m->count; k++) {
        int i = cl_node_get(c, m->addr[k].host, m->addr[k].port);
        SH_ASSERT(i >= 0); /* only nodes of m remain, and m fits the table */
        c->nodes[i].master = m->master[k];
        remap[k] = (int16_t)i;
    }
    int changed = 0;
    for (int s = 0; s < SH_CLUSTER_SLOTS; s++) {
        int16_t owner = m->slots[s] < 0 ? -1 : remap[m->slots[s]];
        changed += owner != c->slots[s];
        c->slots[s] = owner;
    }
    c->stats.refreshes++;
    if (changed > 0) {
        bool owns[SH_CLUSTER_NODES_MAX];
        SH_INFO(CL_MOD, "slot map updated from=%s masters=%d nodes=%d slots_changed=%d", from,
                cl_owners(c, owns), m->count, changed);
    }
}

/* Runs CLUSTER SLOTS on ctx into c->scratch. *dead tells the caller to free ctx. */
static sh_err cl_slots_read(sh_cluster *c, redisContext *ctx, const char *from_host, bool *dead)
{
    *dead = false;
    redisReply *r = redisCommand(ctx, "CLUSTER SLOTS");
    if (r == NULL) {
        *dead = true;
        return cl_ctx_rc(ctx, errno);
    }
    sh_err rc = cl_map_parse(r, from_host, &c->scratch);
    freeReplyObject(r);
    return rc;
}

static sh_err cl_refresh_from_node(sh_cluster *c, int i)
{
    sh_err rc;
    redisContext *ctx = cl_node_fresh(c, i, &rc);
    if (ctx == NULL) {
        return rc;
    }
    bool dead;
    rc = cl_slots_read(c, ctx, c->nodes[i].addr.host, &dead);
    if (dead) {
        cl_node_kill(c, i, rc);
        return rc;
    }
    if (rc == SH_OK) {
        char from[CL_HOST_BYTES + 8];
        (void)cl_addr_format(&c->nodes[i].addr, from, sizeof from);
        cl_map_apply(c, from);
    }
    return rc;
}

static sh_err cl_refresh_from_seed(sh_cluster *c, const cl_addr *seed)
{
    sh_err rc;
    redisContext *ctx = cl_connect(c, seed, &rc);
    if (ctx == NULL) {
        c->stats.io_errors++;
        return rc;
    }
    bool dead;
    rc = cl_slots_read(c, ctx, seed->host, &dead);
    if (dead) {
        c->stats.io_errors++;
    }
    redisFree(ctx);
    if (rc == SH_OK) {
        char from[CL_HOST_BYTES + 8];
        (void)cl_addr_format(seed, from, sizeof from);
        cl_map_apply(c, from);
    }
    return rc;
}

static bool cl_is_io_rc(sh_err rc)
{
    return rc == SH_EIO || rc == SH_ETIMEDOUT || rc == SH_ENOMEM;
}

/* Asks known nodes in turn, best first: live connections before new ones,
 * nodes that have not just failed before those that have, masters before
 * replicas; then the seeds. No new candidate after CL_BUDGET_TIMEOUTS
 * timeouts, so a refresh is bounded too. */
static sh_err cl_refresh_now(sh_cluster *c)
{
    uint64_t start_ms = sh_clock_mono_ms();
    uint64_t deadline_ms = start_ms + (uint64_t)CL_BUDGET_TIMEOUTS * c->timeout_ms;
    c->refresh_last_ms = start_ms;
    c->refresh_due = false;
    sh_err io_rc = SH_EIO;   /* the last connect/read failure */
    sh_err reply_rc = SH_OK; /* the last unusable answer, preferred when set */
    bool tried[SH_CLUSTER_NODES_MAX] = {false};
    for (int rank = 0; rank < 8; rank++) {
        for (int i = 0; i < SH_CLUSTER_NODES_MAX; i++) {
            const cl_node *n = &c->nodes[i];
            if (!n->in_use || tried[i]) {
                continue;
            }
            int my_rank = (n->lost ? 4 : 0) + (n->ctx == NULL ? 2 : 0) + (n->master ? 0 : 1);
            if (my_rank != rank) {
                continue;
            }
            if (sh_clock_mono_ms() >= deadline_ms) {
                continue; /* the first candidate always gets its chance */
            }
            tried[i] = true;
            sh_err rc = cl_refresh_from_node(c, i);
            if (rc == SH_OK) {
                c->refresh_due = false; /* failed candidates before it asked again */
                return SH_OK;
            }
            if (cl_is_io_rc(rc)) {
                io_rc = rc;
            } else {
                reply_rc = rc;
            }
        }
    }
    for (int s = 0; s < c->seed_count; s++) {
        int known = cl_node_find(c, c->seeds[s].host, c->seeds[s].port);
        if ((known >= 0 && tried[known]) || sh_clock_mono_ms() >= deadline_ms) {
            continue;
        }
        sh_err rc = cl_refresh_from_seed(c, &c->seeds[s]);
        if (rc == SH_OK) {
            c->refresh_due = false;
            return SH_OK;
        }
        if (cl_is_io_rc(rc)) {
            io_rc = rc;
        } else {
            reply_rc = rc;
        }
    }
    sh_err rc = reply_rc != SH_OK ? reply_rc : io_rc;
    SH_WARN(CL_MOD, "slot map refresh failed err=%s elapsed_ms=%llu", sh_strerror(rc),
            (unsigned long long)(sh_clock_mono_ms() - start_ms));
    return rc;
}

/* Refreshes when one is due and the last one is at least
 * SH_CLUSTER_REFRESH_MS_MIN old; a failure is logged and left to the retry loop. */
static void cl_refresh_limited(sh_cluster *c)
{
    if (!c->refresh_due) {
        return;
    }
    if (sh_clock_mono_ms() - c->refresh_last_ms < SH_CLUSTER_REFRESH_MS_MIN) {
        return;
    }
    (void)cl_refresh_now(c);
}

sh_err sh_cluster_refresh(sh_cluster *c)
{
    SH_ASSERT(c != NULL);
    return cl_refresh_now(c);
}

/* ==== open / close ========================================================= */

static sh_err cl_seeds_parse(sh_cluster *c, const char *seeds)
{
    const char *p = seeds;
    c->seed_count = 0;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        while (len > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t')) {
            len--;
        }
        if (c->seed_count == SH_CLUSTER_NODES_MAX) {
            return SH_EINVAL;
        }
        cl_addr *a = &c->seeds[c->seed_count];
        if (!cl_addr_parse(p, len, a) || a->host[0] == '\0') {
            return SH_EINVAL;
        }
        c->seed_count++;
        if (end == NULL) {
            break;
        }
        p = end + 1;
    }
    SH_ASSERT(c->seed_count > 0);
    return SH_OK;
}

sh_err sh_cluster_open(sh_cluster **out, const char *seeds, uint32_t timeout_ms)
{
    SH_ASSERT(out != NULL && seeds != NULL);
    *out = NULL;
    if (timeout_ms == 0) {
        timeout_ms = SH_CLUSTER_TIMEOUT_MS_DEFAULT;
    }
    if (timeout_ms > SH_CLUSTER_TIMEOUT_MS_MAX) {
        return SH_EINVAL;
    }
    sh_cluster *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return SH_ENOMEM;
    }
    c->timeout_ms = timeout_ms;
    c->tv.tv_sec = (time_t)(timeout_ms / 1000);
    c->tv.tv_usec = (suseconds_t)((timeout_ms % 1000) * 1000);
    for (int s = 0; s < SH_CLUSTER_SLOTS; s++) {
        c->slots[s] = -1;
    }
    sh_err rc = cl_seeds_parse(c, seeds);
    if (rc != SH_OK) {
        SH_WARN(CL_MOD, "bad seed list seeds=\"%s\"", seeds);
        free(c);
        return rc;
    }
    rc = cl_refresh_now(c);
    if (rc != SH_OK) {
        SH_WARN(CL_MOD, "open failed: no seed gave a slot map seeds=\"%s\" err=%s", seeds,
                sh_strerror(rc));
        sh_cluster_close(c);
        return rc;
    }
    bool owns[SH_CLUSTER_NODES_MAX];
    SH_INFO(CL_MOD, "open seeds=\"%s\" masters=%d timeout_ms=%u", seeds, cl_owners(c, owns),
            timeout_ms);
    *out = c;
    return SH_OK;
}

void sh_cluster_close(sh_cluster *c)
{
    if (c == NULL) {
        return;
    }
    for (int i = 0; i < SH_CLUSTER_NODES_MAX; i++) {
        if (c->nodes[i].in_use) {
            cl_node_drop(c, i);
        }
    }
    for (int k = 0; k < c->script_count; k++) {
        free(c->scripts[k].lua);
    }
    free(c);
}

/* ==== the retry loop ======================================================= */

static bool cl_word(const redisReply *r, const char *word)
{
    size_t n = strlen(word);
    return r->len >= n && memcmp(r->str, word, n) == 0 && (r->len == n || r->str[n] == ' ');
}

static cl_kind cl_reply_kind(const redisReply *r, const cl_req *req)
{
    SH_ASSERT(r != NULL && req != NULL);
    if (r->type != REDIS_REPLY_ERROR || r->str == NULL) {
        return CL_FINAL;
    }
    if (cl_word(r, "MOVED")) {
        return CL_MOVED;
    }
    if (cl_word(r, "ASK")) {
        return CL_ASK;
    }
    /* READONLY: a replica (or a master demoted by a failover) refused a write
     * without running it; the map is stale, as after TRYAGAIN. */
    if (cl_word(r, "TRYAGAIN") || cl_word(r, "CLUSTERDOWN") || cl_word(r, "READONLY") ||
        cl_word(r, "LOADING") || cl_word(r, "MASTERDOWN")) {
        return CL_TRYAGAIN;
    }
    if (req->script >= 0 && cl_word(r, "NOSCRIPT")) {
        return CL_NOSCRIPT;
    }
    return CL_FINAL;
}

/* Parses "MOVED 3999 127.0.0.1:6381" / "ASK ..." into a slot and a node index
 * (the node is added when new). Redis may send ":port" for the answering node. */
static bool cl_redirect_parse(sh_cluster *c, const redisReply *r, int from, uint16_t *slot,
                              int *node)
{
    const char *p = memchr(r->str, ' ', r->len);
    const char *end = r->str + r->len;
    if (p == NULL) {
        return false;
    }
    p++;
    long s = 0;
    const char *digits = p;
    while (p < end && *p >= '0' && *p <= '9' && p - digits < 6) {
        s = s * 10 + (*p - '0');
        p++;
    }
    if (p == digits || p >= end || *p != ' ' || s >= SH_CLUSTER_SLOTS) {
        return false;
    }
    p++;
    cl_addr a;
    if (!cl_addr_parse(p, (size_t)(end - p), &a)) {
        return false;
    }
    if (a.host[0] == '\0') {
        if (from < 0 || !c->nodes[from].in_use) {
            return false;
        }
        memcpy(a.host, c->nodes[from].addr.host, sizeof a.host);
    }
    int i = cl_node_get(c, a.host, a.port);
    if (i < 0) {
        return false;
    }
    *slot = (uint16_t)s;
    *node = i;
    return true;
}

/* SCRIPT LOAD of script k on node i, after it answered NOSCRIPT. */
static sh_err cl_script_load(sh_cluster *c, int i, int k)
{
    SH_ASSERT(k >= 0 && k < c->script_count);
    sh_err rc;
    redisContext *ctx = cl_node_fresh(c, i, &rc);
    if (ctx == NULL) {
        return rc;
    }
    const cl_script *sc = &c->scripts[k];
    const char *argv[3] = {"SCRIPT", "LOAD", sc->lua};
    const size_t argvlen[3] = {6, 4, sc->len};
    redisReply *r = redisCommandArgv(ctx, 3, argv, argvlen);
    if (r == NULL) {
        rc = cl_ctx_rc(ctx, errno);
        cl_node_kill(c, i, rc);
        return rc;
    }
    if (r->type == REDIS_REPLY_STRING && r->len == CL_SHA_CHARS &&
        memcmp(r->str, sc->sha, CL_SHA_CHARS) == 0) {
        rc = SH_OK;
        c->stats.noscript_loads++;
    } else if (r->type == REDIS_REPLY_ERROR) {
        SH_WARN(CL_MOD, "SCRIPT LOAD refused addr=%s:%d err=%.*s", c->nodes[i].addr.host,
                c->nodes[i].addr.port, (int)r->len, r->str);
        rc = SH_EREDIS;
    } else {
        SH_WARN(CL_MOD, "SCRIPT LOAD gave an unexpected reply addr=%s:%d type=%d",
                c->nodes[i].addr.host, c->nodes[i].addr.port, r->type);
        rc = SH_EPROTO;
    }
    freeReplyObject(r);
    return rc;
}

/* Learns from a routing reply (and frees it): MOVED updates the map, ASK sets
 * the next target, TRYAGAIN asks for a back-off, NOSCRIPT reloads the script
 * (only when may_io: the pipeline's read phase must not talk to nodes). */
static void cl_absorb(sh_cluster *c, cl_state *st, const cl_req *req, int from, cl_kind kind,
                      redisReply *r, bool may_io)
{
    SH_ASSERT(kind != CL_FINAL);
    uint16_t slot;
    int node;
    st->last = SH_ECLUSTER;
    switch (kind) {
    case CL_MOVED:
        st->ask_node = -1;
        if (cl_redirect_parse(c, r, from, &slot, &node)) {
            c->slots[slot] = (int16_t)node;
            c->nodes[node].master = true;
            c->stats.moved++;
            c->refresh_due = true;
        } else {
            SH_WARN(CL_MOD, "unusable redirect reply=%.*s", (int)r->len, r->str);
            c->refresh_due = true;
            st->wait = true;
        }
        break;
    case CL_ASK:
        if (cl_redirect_parse(c, r, from, &slot, &node)) {
            st->ask_node = node;
            c->stats.ask++;
        } else {
            SH_WARN(CL_MOD, "unusable redirect reply=%.*s", (int)r->len, r->str);
            st->ask_node = -1;
            st->wait = true;
        }
        break;
    case CL_TRYAGAIN:
        c->stats.tryagain++;
        c->refresh_due = true;
        st->ask_node = -1;
        st->wait = true;
        break;
    case CL_NOSCRIPT:
        /* ask_node is kept: the retry must carry ASKING again. */
        if (may_io) {
            sh_err rc = cl_script_load(c, from, req->script);
            if (rc != SH_OK) {
                st->last = rc;
                if (cl_is_io_rc(rc)) {
                    st->ask_node = -1;
                    st->wait = true;
                } else {
                    st->stop = true;
                }
            }
        }
        break;
    case CL_FINAL:
        break;
    }
    freeReplyObject(r);
}

/* Sends one command (after ASKING when asked to) on node i's live connection
 * and reads its reply. On failure the connection is freed; the error is the
 * I/O one while no byte had left (the command did not run), SH_EUNKNOWN after
 * (it may have run; counted in stats.unknown). */
static sh_err cl_send(sh_cluster *c, int i, bool asking, const cl_req *req, redisReply **out)
{
    redisContext *ctx = c->nodes[i].ctx;
    SH_ASSERT(ctx != NULL && out != NULL);
    SH_ASSERT(sdslen(ctx->obuf) == 0);
    c->nodes[i].wrote = true;
    void *r = NULL;
    *out = NULL;
    bool wrote = false;
    sh_err rc;
    if ((asking && redisAppendCommand(ctx, "ASKING") != REDIS_OK) ||
        redisAppendCommandArgv(ctx, req->argc, req->argv, req->argvlen) != REDIS_OK) {
        rc = cl_ctx_rc(ctx, errno);
        goto dead;
    }
    rc = cl_flush(ctx, sh_clock_mono_ms() + c->timeout_ms, &wrote);
    if (rc != SH_OK) {
        goto dead;
    }
    SH_ASSERT(wrote);
    if (asking) {
        if (redisGetReply(ctx, &r) != REDIS_OK || r == NULL) {
            rc = cl_ctx_rc(ctx, errno);
            goto dead;
        }
        freeReplyObject(r); /* +OK, or an error the command's own reply will repeat */
        r = NULL;
    }
    if (redisGetReply(ctx, &r) != REDIS_OK || r == NULL) {
        rc = cl_ctx_rc(ctx, errno);
        goto dead;
    }
    *out = r;
    return SH_OK;
dead:
    cl_node_kill(c, i, rc);
    if (!wrote) {
        return rc;
    }
    c->stats.unknown++;
    SH_WARN(CL_MOD, "outcome unknown, not sent again addr=%s:%d err=%s", c->nodes[i].addr.host,
            c->nodes[i].addr.port, sh_strerror(rc));
    return SH_EUNKNOWN;
}

static void cl_state_init(const sh_cluster *c, cl_state *st, uint16_t slot, uint64_t deadline_ms)
{
    memset(st, 0, sizeof *st);
    st->slot = slot;
    st->ask_node = -1;
    st->backoff_ms = CL_BACKOFF_MS_MIN;
    st->deadline_ms = deadline_ms;
    st->last = SH_ECLUSTER;
    SH_ASSERT(c->timeout_ms > 0);
}

static void cl_backoff(const sh_cluster *c, cl_state *st)
{
    uint64_t now = sh_clock_mono_ms();
    if (now >= st->deadline_ms) {
        return;
    }
    uint64_t ms = st->backoff_ms;
    if (ms > st->deadline_ms - now) {
        ms = st->deadline_ms - now;
    }
    sh_clock_sleep_ms(ms);
    uint64_t cap = c->timeout_ms / 2 < CL_BACKOFF_MS_MAX ? c->timeout_ms / 2 : CL_BACKOFF_MS_MAX;
    st->backoff_ms = st->backoff_ms * 2 > cap ? cap : st->backoff_ms * 2;
    if (st->backoff_ms < CL_BACKOFF_MS_MIN) {
        st->backoff_ms = CL_BACKOFF_MS_MIN;
    }
}

/* Sends req until a final reply, at most CL_SENDS_MAX sends in all (st->sends
 * may already count sends made by the pipeline) and no new send after the
 * deadline. Stops at once with SH_EUNKNOWN when a send may have run. */
static sh_err cl_loop(sh_cluster *c, cl_state *st, const cl_req *req, redisReply **out)
{
    SH_ASSERT(out != NULL && *out == NULL);
    while (st->sends < CL_SENDS_MAX && !st->stop) {
        if (st->sends > 0 && sh_clock_mono_ms() >= st->deadline_ms) {
            break;
        }
        if (st->wait) {
            /* A failure: sleep, then look at the cluster again. A MOVED alone
             * does not come here: its one-slot fix is enough to retry, and the
             * full refresh it scheduled runs at the start of the next call. */
            cl_backoff(c, st);
            st->wait = false;
            cl_refresh_limited(c);
        }
        if (st->ask_node >= 0 && !c->nodes[st->ask_node].in_use) {
            st->ask_node = -1; /* a refresh dropped it */
        }
        bool asking = st->ask_node >= 0;
        int node = asking ? st->ask_node : c->slots[st->slot];
        st->sends++;
        if (node < 0) {
            st->last = SH_ECLUSTER; /* slot unassigned in our map */
            c->refresh_due = true;
            st->wait = true;
            continue;
        }
        sh_err rc;
        if (cl_node_fresh(c, node, &rc) == NULL) {
            st->last = rc;
            st->ask_node = -1;
            st->wait = true;
            continue;
        }
        redisReply *r;
        rc = cl_send(c, node, asking, req, &r);
        if (rc == SH_EUNKNOWN) {
            return rc; /* at most once: the caller decides */
        }
        if (rc != SH_OK) {
            st->last = rc;
            st->ask_node = -1;
            st->wait = true;
            continue;
        }
        cl_kind kind = cl_reply_kind(r, req);
        if (kind == CL_FINAL) {
            *out = r;
            return SH_OK;
        }
        if (asking && kind != CL_NOSCRIPT) {
            st->ask_node = -1; /* ASK is followed once */
        }
        cl_absorb(c, st, req, node, kind, r, true);
    }
    SH_ASSERT(st->last != SH_OK);
    SH_WARN(CL_MOD, "command gave up slot=%u sends=%d err=%s", st->slot, st->sends,
            sh_strerror(st->last));
    return st->last;
}

/* The script id when argv is "EVALSHA <sha of a known script> ...", else -1. */
static int cl_script_of(const sh_cluster *c, int argc, const char **argv, const size_t *argvlen)
{
    if (argc < 2 || argvlen[0] != 7 || strncasecmp(argv[0], "EVALSHA", 7) != 0 ||
        argvlen[1] != CL_SHA_CHARS) {
        return -1;
    }
    for (int k = 0; k < c->script_count; k++) {
        if (strncasecmp(argv[1], c->scripts[k].sha, CL_SHA_CHARS) == 0) {
            return k;
        }
    }
    return -1;
}

static uint64_t cl_deadline(const sh_cluster *c)
{
    return sh_clock_mono_ms() + (uint64_t)CL_BUDGET_TIMEOUTS * c->timeout_ms;
}

/* ==== commands ============================================================= */

sh_err sh_cluster_command(sh_cluster *c, const char *route_key, size_t route_len, int argc,
                          const char **argv, const size_t *argvlen, redisReply **reply_out)
{
    SH_ASSERT(c != NULL && argv != NULL && argvlen != NULL && reply_out != NULL);
    SH_ASSERT(route_key != NULL || route_len == 0);
    *reply_out = NULL;
    if (argc < 1 || argc > SH_CLUSTER_ARGS_MAX) {
        return SH_EINVAL;
    }
    c->stats.commands++;
    cl_refresh_limited(c);
    cl_req req = {argc, argv, argvlen, cl_script_of(c, argc, argv, argvlen)};
    cl_state st;
    cl_state_init(c, &st, sh_cluster_slot(route_key, route_len), cl_deadline(c));
    return cl_loop(c, &st, &req, reply_out);
}

sh_err sh_cluster_node_command(sh_cluster *c, const char *addr, int argc, const char **argv,
                               const size_t *argvlen, redisReply **reply_out)
{
    SH_ASSERT(c != NULL && addr != NULL && argv != NULL && argvlen != NULL);
    SH_ASSERT(reply_out != NULL);
    *reply_out = NULL;
    cl_addr a;
    if (argc < 1 || argc > SH_CLUSTER_ARGS_MAX || !cl_addr_parse(addr, strlen(addr), &a) ||
        a.host[0] == '\0') {
        return SH_EINVAL;
    }
    c->stats.commands++;
    int i = cl_node_get(c, a.host, a.port);
    if (i < 0) {
        return SH_ELIMIT;
    }
    sh_err rc;
    if (cl_node_fresh(c, i, &rc) == NULL) {
        return rc;
    }
    cl_req req = {argc, argv, argvlen, -1};
    return cl_send(c, i, false, &req, reply_out);
}

/* ==== scripts ============================================================== */

sh_err sh_cluster_script_add(sh_cluster *c, const char *lua, int *script_id_out)
{
    SH_ASSERT(c != NULL && lua != NULL && script_id_out != NULL);
    size_t len = strlen(lua);
    if (len == 0) {
        return SH_EINVAL;
    }
    for (int k = 0; k < c->script_count; k++) {
        if (c->scripts[k].len == len && memcmp(c->scripts[k].lua, lua, len) == 0) {
            *script_id_out = k;
            return SH_OK;
        }
    }
    if (c->script_count == SH_CLUSTER_SCRIPTS_MAX) {
        return SH_ELIMIT;
    }
    cl_script *sc = &c->scripts[c->script_count];
    memset(sc, 0, sizeof *sc);
    bool owns[SH_CLUSTER_NODES_MAX];
    (void)cl_owners(c, owns);
    int loaded = 0;
    sh_err rc = SH_ECLUSTER;
    for (int i = 0; i < SH_CLUSTER_NODES_MAX; i++) {
        if (!owns[i]) {
            continue;
        }
        redisContext *ctx = cl_node_fresh(c, i, &rc);
        if (ctx == NULL) {
            continue;
        }
        const char *argv[3] = {"SCRIPT", "LOAD", lua};
        const size_t argvlen[3] = {6, 4, len};
        redisReply *r = redisCommandArgv(ctx, 3, argv, argvlen);
        if (r == NULL) {
            rc = cl_ctx_rc(ctx, errno);
            cl_node_kill(c, i, rc);
            continue;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            SH_WARN(CL_MOD, "SCRIPT LOAD refused addr=%s:%d err=%.*s", c->nodes[i].addr.host,
                    c->nodes[i].addr.port, (int)r->len, r->str);
            freeReplyObject(r);
            return SH_EREDIS; /* a compile error: every master would say the same */
        }
        if (r->type != REDIS_REPLY_STRING || r->len != CL_SHA_CHARS ||
            (loaded > 0 && memcmp(sc->sha, r->str, CL_SHA_CHARS) != 0)) {
            freeReplyObject(r);
            return SH_EPROTO;
        }
        memcpy(sc->sha, r->str, CL_SHA_CHARS);
        sc->sha[CL_SHA_CHARS] = '\0';
        freeReplyObject(r);
        loaded++;
    }
    if (loaded == 0) {
        SH_WARN(CL_MOD, "SCRIPT LOAD reached no master err=%s", sh_strerror(rc));
        return rc;
    }
    sc->lua = malloc(len + 1);
    if (sc->lua == NULL) {
        return SH_ENOMEM;
    }
    memcpy(sc->lua, lua, len + 1);
    sc->len = len;
    *script_id_out = c->script_count++;
    SH_ASSERT(c->script_count <= SH_CLUSTER_SCRIPTS_MAX);
    return SH_OK;
}

const char *sh_cluster_script_sha(const sh_cluster *c, int script_id)
{
    SH_ASSERT(c != NULL);
    if (script_id < 0 || script_id >= c->script_count) {
        return NULL;
    }
    return c->scripts[script_id].sha;
}

sh_err sh_cluster_evalsha(sh_cluster *c, int script_id, int numkeys, const char **keys,
                          const size_t *keylens, int nargs, const char **args,
                          const size_t *arglens, redisReply **reply_out)
{
    SH_ASSERT(c != NULL && reply_out != NULL);
    *reply_out = NULL;
    if (script_id < 0 || script_id >= c->script_count || numkeys < 1 || nargs < 0 || keys == NULL ||
        keylens == NULL || (nargs > 0 && (args == NULL || arglens == NULL)) ||
        numkeys > SH_CLUSTER_ARGS_MAX - 3 - nargs) {
        return SH_EINVAL;
    }
    uint16_t slot = sh_cluster_slot(keys[0], keylens[0]);
    for (int k = 1; k < numkeys; k++) {
        if (sh_cluster_slot(keys[k], keylens[k]) != slot) {
            return SH_EINVAL;
        }
    }
    int argc = 3 + numkeys + nargs;
    const char **argv = malloc(sizeof *argv * (size_t)argc);
    size_t *argvlen = malloc(sizeof *argvlen * (size_t)argc);
    if (argv == NULL || argvlen == NULL) {
        free(argv);
        free(argvlen);
        return SH_ENOMEM;
    }
    char nk[16];
    int nk_len = snprintf(nk, sizeof nk, "%d", numkeys);
    SH_ASSERT(nk_len > 0 && (size_t)nk_len < sizeof nk);
    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = c->scripts[script_id].sha;
    argvlen[1] = CL_SHA_CHARS;
    argv[2] = nk;
    argvlen[2] = (size_t)nk_len;
    for (int k = 0; k < numkeys; k++) {
        argv[3 + k] = keys[k];
        argvlen[3 + k] = keylens[k];
    }
    for (int k = 0; k < nargs; k++) {
        argv[3 + numkeys + k] = args[k];
        argvlen[3 + numkeys + k] = arglens[k];
    }
    c->stats.commands++;
    cl_refresh_limited(c);
    cl_req req = {argc, argv, argvlen, script_id};
    cl_state st;
    cl_state_init(c, &st, slot, cl_deadline(c));
    sh_err rc = cl_loop(c, &st, &req, reply_out);
    free(argv);
    free(argvlen);
    return rc;
}

/* ==== pipeline ============================================================= */

typedef enum cl_phase {
    CL_P_DONE = 0, /* rc (and reply) final */
    CL_P_SENT,     /* written to node; reply to read */
    CL_P_ALONE,    /* to re-run through cl_loop */
} cl_phase;

typedef struct cl_entry {
    cl_phase phase;
    int node;
    int script;
    bool noscript; /* node answered NOSCRIPT: load before re-running */
    cl_state st;
} cl_entry;

/* One node's part in a pipeline call. */
typedef struct cl_pipe_node {
    bool used;    /* entries were appended to its output buffer */
    bool down;    /* its connection failed during this call */
    bool unknown; /* ... after bytes of its buffer left: its entries may have run */
    sh_err rc;    /* why it went down */
} cl_pipe_node;

static cl_req cl_entry_req(const sh_cluster_cmd *cmd, const cl_entry *e)
{
    cl_req req = {cmd->argc, cmd->argv, cmd->argvlen, e->script};
    return req;
}

static void cl_pipe_down(sh_cluster *c, cl_pipe_node *pn, int i, sh_err rc, bool unknown)
{
    cl_node_kill(c, i, rc);
    pn[i].down = true;
    pn[i].unknown = unknown;
    pn[i].rc = rc;
}

/* Phase 1: append every entry to its owner's output buffer. A node's pooled
 * connection is checked once, before its first entry. */
static void cl_pipe_append(sh_cluster *c, sh_cluster_cmd *cmds, cl_entry *ents, size_t n,
                           cl_pipe_node *pn, uint64_t deadline_ms)
{
    for (size_t i = 0; i < n; i++) {
        sh_cluster_cmd *cmd = &cmds[i];
        cl_entry *e = &ents[i];
        cmd->reply = NULL;
        cmd->rc = SH_OK;
        e->phase = CL_P_DONE;
        if (cmd->argc < 1 || cmd->argc > SH_CLUSTER_ARGS_MAX || cmd->argv == NULL ||
            cmd->argvlen == NULL || (cmd->route_key == NULL && cmd->route_len > 0)) {
            cmd->rc = SH_EINVAL;
            continue;
        }
        c->stats.commands++;
        e->script = cl_script_of(c, cmd->argc, cmd->argv, cmd->argvlen);
        cl_state_init(c, &e->st, sh_cluster_slot(cmd->route_key, cmd->route_len), deadline_ms);
        e->node = c->slots[e->st.slot];
        e->phase = CL_P_ALONE;
        if (e->node < 0 || pn[e->node].down) {
            e->st.wait = e->node >= 0;
            if (e->node >= 0) {
                e->st.last = pn[e->node].rc;
            }
            continue;
        }
        sh_err rc;
        redisContext *ctx =
            pn[e->node].used ? c->nodes[e->node].ctx : cl_node_fresh(c, e->node, &rc);
        if (ctx == NULL) {
            pn[e->node].down = true;
            pn[e->node].rc = rc;
            e->st.last = rc;
            e->st.wait = true;
            continue;
        }
        if (redisAppendCommandArgv(ctx, cmd->argc, cmd->argv, cmd->argvlen) != REDIS_OK) {
            /* Nothing is written yet, so the entries appended before are
             * unsent too: cl_pipe_read re-runs them alone. */
            cl_pipe_down(c, pn, e->node, cl_ctx_rc(ctx, errno), false);
            e->st.last = pn[e->node].rc;
            e->st.wait = true;
            continue;
        }
        pn[e->node].used = true;
        c->nodes[e->node].wrote = true;
        e->phase = CL_P_SENT;
    }
}

/* Phase 2: write every node's buffer before reading any reply, so the nodes
 * work in parallel. */
static void cl_pipe_flush(sh_cluster *c, cl_pipe_node *pn, uint64_t deadline_ms)
{
    for (int i = 0; i < SH_CLUSTER_NODES_MAX; i++) {
        if (!pn[i].used || pn[i].down) {
            continue;
        }
        redisContext *ctx = c->nodes[i].ctx;
        SH_ASSERT(ctx != NULL);
        bool wrote;
        sh_err rc = cl_flush(ctx, deadline_ms, &wrote);
        if (rc != SH_OK) {
            cl_pipe_down(c, pn, i, rc, wrote);
        }
    }
}

static void cl_pipe_unknown(sh_cluster *c, sh_cluster_cmd *cmd, cl_entry *e)
{
    cmd->reply = NULL;
    cmd->rc = SH_EUNKNOWN;
    e->phase = CL_P_DONE;
    c->stats.unknown++;
}

/* Phase 3: read the replies in entry order (each node answers in its order).
 * Entries of a node that failed after bytes left get SH_EUNKNOWN; entries of
 * a node that failed before are re-run in phase 4. */
static void cl_pipe_read(sh_cluster *c, sh_cluster_cmd *cmds, cl_entry *ents, size_t n,
                         cl_pipe_node *pn)
{
    for (size_t i = 0; i < n; i++) {
        cl_entry *e = &ents[i];
        if (e->phase != CL_P_SENT) {
            continue;
        }
        e->phase = CL_P_ALONE;
        e->st.sends = 1;
        cl_pipe_node *p = &pn[e->node];
        if (p->down && p->unknown) {
            cl_pipe_unknown(c, &cmds[i], e);
            continue;
        }
        if (p->down) {
            e->st.last = p->rc;
            e->st.wait = true;
            continue;
        }
        redisContext *ctx = c->nodes[e->node].ctx;
        void *r = NULL;
        if (redisGetReply(ctx, &r) != REDIS_OK || r == NULL) {
            cl_pipe_down(c, pn, e->node, cl_ctx_rc(ctx, errno), true);
            SH_WARN(CL_MOD, "outcome unknown, not sent again addr=%s:%d err=%s",
                    c->nodes[e->node].addr.host, c->nodes[e->node].addr.port, sh_strerror(p->rc));
            cl_pipe_unknown(c, &cmds[i], e);
            continue;
        }
        cl_req req = cl_entry_req(&cmds[i], e);
        cl_kind kind = cl_reply_kind(r, &req);
        if (kind == CL_FINAL) {
            cmds[i].reply = r;
            cmds[i].rc = SH_OK;
            e->phase = CL_P_DONE;
            continue;
        }
        e->noscript = kind == CL_NOSCRIPT;
        cl_absorb(c, &e->st, &req, e->node, kind, r, false);
    }
}

sh_err sh_cluster_pipeline(sh_cluster *c, sh_cluster_cmd *cmds, size_t n)
{
    SH_ASSERT(c != NULL && (cmds != NULL || n == 0));
    if (n == 0) {
        return SH_OK;
    }
    cl_entry *ents = calloc(n, sizeof *ents);
    if (ents == NULL) {
        for (size_t i = 0; i < n; i++) {
            cmds[i].reply = NULL;
            cmds[i].rc = SH_ENOMEM;
        }
        return SH_ENOMEM;
    }
    uint64_t deadline_ms = cl_deadline(c);
    cl_pipe_node pn[SH_CLUSTER_NODES_MAX];
    memset(pn, 0, sizeof pn);
    cl_refresh_limited(c);
    cl_pipe_append(c, cmds, ents, n, pn, deadline_ms);
    cl_pipe_flush(c, pn, deadline_ms);
    cl_pipe_read(c, cmds, ents, n, pn);

    /* Phase 4: the leftovers, one at a time. Only the first of them honours a
     * pending back-off: the others failed at the same moment, and the first
     * one's sleep and refresh already served them. */
    bool waited = false;
    for (size_t i = 0; i < n; i++) {
        cl_entry *e = &ents[i];
        if (e->phase != CL_P_ALONE) {
            continue;
        }
        if (sh_clock_mono_ms() >= deadline_ms) {
            cmds[i].rc = SH_ETIMEDOUT;
            continue;
        }
        if (waited) {
            e->st.wait = false;
        }
        waited = waited || e->st.wait;
        if (e->noscript && c->nodes[e->node].in_use) {
            /* Load now rather than spend a send on a second NOSCRIPT; if it
             * fails, cl_loop meets NOSCRIPT again and handles it. */
            (void)cl_script_load(c, e->node, e->script);
        }
        cl_req req = cl_entry_req(&cmds[i], e);
        cmds[i].rc = cl_loop(c, &e->st, &req, &cmds[i].reply);
        SH_ASSERT((cmds[i].rc == SH_OK) == (cmds[i].reply != NULL));
    }
    free(ents);
    for (size_t i = 0; i < n; i++) {
        if (cmds[i].rc != SH_OK) {
            return cmds[i].rc;
        }
    }
    return SH_OK;
}

/* ==== replication barrier ================================================== */

/* A key on one of node i's slots ("{sh:b:K}", the first K that lands there),
 * kept until the map moves its slot. false when none is found. */
static bool cl_barrier_key(sh_cluster *c, int i)
{
    cl_node *n = &c->nodes[i];
    if (n->bkey_len > 0 && c->slots[sh_cluster_slot(n->bkey, n->bkey_len)] == i) {
        return true;
    }
    for (unsigned k = 0; k < CL_BKEY_TRIES; k++) {
        int len = snprintf(n->bkey, sizeof n->bkey, "{sh:b:%u}", k);
        SH_ASSERT(len > 0 && (size_t)len < sizeof n->bkey);
        if (c->slots[sh_cluster_slot(n->bkey, (size_t)len)] == i) {
            n->bkey_len = (uint8_t)len;
            return true;
        }
    }
    n->bkey_len = 0;
    return false;
}

/* Whether a ROLE reply names a master with no replica attached. */
static bool cl_role_alone(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements >= 3 &&
           r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "master") == 0 &&
           r->element[2]->type == REDIS_REPLY_ARRAY && r->element[2]->elements == 0;
}

sh_err sh_cluster_barrier(sh_cluster *c, int replicas, uint32_t wait_ms, int *failed_out)
{
    SH_ASSERT(c != NULL && failed_out != NULL && replicas >= 1);
    SH_ASSERT(wait_ms >= 1 && wait_ms < c->timeout_ms);
    *failed_out = 0;
    uint64_t gen = ++c->barrier_gen;
    bool owns[SH_CLUSTER_NODES_MAX];
    (void)cl_owners(c, owns);
    int idx[SH_CLUSTER_NODES_MAX];
    int n = 0;
    for (int i = 0; i < SH_CLUSTER_NODES_MAX; i++) {
        cl_node *nd = &c->nodes[i];
        if (!nd->in_use || !nd->wrote) {
            continue;
        }
        nd->barrier_gen = gen;
        nd->wrote = false;
        if (!owns[i] || !cl_barrier_key(c, i)) {
            nd->barrier = SH_CLUSTER_B_FAILED; /* written to, yet no longer a master */
            (*failed_out)++;
            continue;
        }
        idx[n++] = i;
    }
    if (n == 0) {
        return *failed_out == 0 ? SH_OK : SH_ETIMEDOUT;
    }
    /* SET then WAIT on each node, pipelined: the SET moves this connection's
     * replication offset to the master's current one, so WAIT confirms every
     * write the master took before it, whichever connection sent them (a
     * reconnect in the middle of a round included). */
    char gen_s[24], n_s[16], ms_s[16];
    snprintf(gen_s, sizeof gen_s, "%" PRIu64, gen);
    snprintf(n_s, sizeof n_s, "%d", replicas);
    snprintf(ms_s, sizeof ms_s, "%" PRIu32, wait_ms);
    const char *argv[SH_CLUSTER_NODES_MAX][3];
    size_t lens[SH_CLUSTER_NODES_MAX][3];
    const char *wargv[3] = {"WAIT", n_s, ms_s};
    const size_t wlens[3] = {4, strlen(n_s), strlen(ms_s)};
    sh_cluster_cmd cmds[2 * SH_CLUSTER_NODES_MAX];
    memset(cmds, 0, sizeof cmds);
    for (int k = 0; k < n; k++) {
        cl_node *nd = &c->nodes[idx[k]];
        argv[k][0] = "SET";
        argv[k][1] = nd->bkey;
        argv[k][2] = gen_s;
        lens[k][0] = 3;
        lens[k][1] = nd->bkey_len;
        lens[k][2] = strlen(gen_s);
        cmds[2 * k] = (sh_cluster_cmd){nd->bkey, nd->bkey_len, 3, argv[k], lens[k], NULL, SH_OK};
        cmds[2 * k + 1] = (sh_cluster_cmd){nd->bkey, nd->bkey_len, 3, wargv, wlens, NULL, SH_OK};
    }
    (void)sh_cluster_pipeline(c, cmds, (size_t)(2 * n));
    sh_cluster_cmd roles[SH_CLUSTER_NODES_MAX];
    const char *rargv[1] = {"ROLE"};
    const size_t rlens[1] = {4};
    int nroles = 0, ridx[SH_CLUSTER_NODES_MAX];
    for (int k = 0; k < n; k++) {
        cl_node *nd = &c->nodes[idx[k]];
        const redisReply *set = cmds[2 * k].reply, *w = cmds[2 * k + 1].reply;
        bool set_ok = cmds[2 * k].rc == SH_OK && set->type == REDIS_REPLY_STATUS;
        bool acked =
            cmds[2 * k + 1].rc == SH_OK && w->type == REDIS_REPLY_INTEGER && w->integer >= replicas;
        if (set_ok && acked) {
            nd->barrier = SH_CLUSTER_B_OK;
        } else if (set_ok && cmds[2 * k + 1].rc == SH_OK && w->type == REDIS_REPLY_INTEGER) {
            /* Too few replicas in time: lagging, or none attached (ROLE says). */
            nd->barrier = SH_CLUSTER_B_LAG;
            roles[nroles] = (sh_cluster_cmd){nd->bkey, nd->bkey_len, 1, rargv, rlens, NULL, SH_OK};
            ridx[nroles++] = idx[k];
        } else {
            nd->barrier = SH_CLUSTER_B_FAILED;
        }
        *failed_out += nd->barrier != SH_CLUSTER_B_OK;
    }
    for (int k = 0; k < 2 * n; k++) {
        if (cmds[k].reply != NULL) {
            freeReplyObject(cmds[k].reply);
        }
    }
    if (nroles > 0) {
        (void)sh_cluster_pipeline(c, roles, (size_t)nroles);
        for (int k = 0; k < nroles; k++) {
            if (roles[k].rc == SH_OK && cl_role_alone(roles[k].reply)) {
                c->nodes[ridx[k]].barrier = SH_CLUSTER_B_NO_REPLICA;
            }
            if (roles[k].reply != NULL) {
                freeReplyObject(roles[k].reply);
            }
        }
    }
    for (int k = 0; k < n; k++) {
        /* Confirmed: the barrier's own SET and ROLE are covered. Not confirmed:
         * the master still holds writes no replica has, so the next barrier
         * asks again, even if the caller only reads from it by then (a claim
         * read back after a 503 must be confirmed before anything relies on it). */
        cl_node *nd = &c->nodes[idx[k]];
        nd->wrote = nd->barrier != SH_CLUSTER_B_OK;
    }
    c->stats.barriers++;
    c->stats.barrier_failures += (uint64_t)*failed_out;
    return *failed_out == 0 ? SH_OK : SH_ETIMEDOUT;
}

sh_cluster_barrier_state sh_cluster_barrier_of(const sh_cluster *c, const char *key, size_t len)
{
    SH_ASSERT(c != NULL && key != NULL);
    int i = c->slots[sh_cluster_slot(key, len)];
    if (i < 0 || c->nodes[i].barrier_gen == 0) {
        return SH_CLUSTER_B_FAILED; /* never in a barrier: nothing confirms it */
    }
    const cl_node *nd = &c->nodes[i];
    if (nd->barrier_gen == c->barrier_gen) {
        return nd->barrier;
    }
    /* Not in the last barrier: confirmed by an earlier one when nothing was
     * sent to it since (a master a barrier could not confirm stays "wrote"
     * until one does, so its state here is never a stale OK). */
    return nd->wrote ? SH_CLUSTER_B_FAILED : nd->barrier;
}

/* ==== introspection ======================================================== */

int sh_cluster_master_count(const sh_cluster *c)
{
    SH_ASSERT(c != NULL);
    bool owns[SH_CLUSTER_NODES_MAX];
    return cl_owners(c, owns);
}

sh_err sh_cluster_master_addr(const sh_cluster *c, int index, char *addr, size_t addrlen)
{
    SH_ASSERT(c != NULL && addr != NULL);
    bool owns[SH_CLUSTER_NODES_MAX];
    (void)cl_owners(c, owns);
    int seen = 0;
    for (int i = 0; i < SH_CLUSTER_NODES_MAX; i++) {
        if (owns[i] && seen++ == index) {
            return cl_addr_format(&c->nodes[i].addr, addr, addrlen);
        }
    }
    return SH_ENOTFOUND;
}

sh_err sh_cluster_slot_owner(const sh_cluster *c, uint16_t slot, char *addr, size_t addrlen)
{
    SH_ASSERT(c != NULL && addr != NULL);
    if (slot >= SH_CLUSTER_SLOTS) {
        return SH_EINVAL;
    }
    int i = c->slots[slot];
    if (i < 0) {
        return SH_ENOTFOUND;
    }
    SH_ASSERT(c->nodes[i].in_use);
    return cl_addr_format(&c->nodes[i].addr, addr, addrlen);
}

void sh_cluster_stats_get(const sh_cluster *c, sh_cluster_stats *out)
{
    SH_ASSERT(c != NULL && out != NULL);
    *out = c->stats;
}
