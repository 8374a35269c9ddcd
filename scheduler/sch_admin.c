/* sch_admin.c -- the admin socket: one JSON request per line, one JSON reply per line.
 *
 * Operators (stockctl, socat, tests) reach the live scheduler here without going
 * through the HTTP front: the registry as the loop thread sees it, SKU loading,
 * the invariant audit and the counters. It runs on the scheduler's own event
 * loop, so it reads the registry and calls the pool without locks (sch_ctx.h);
 * the price is that a slow command (an audit reads Redis) holds the loop for
 * its duration, which is fine for an operator's tool and bounded by the
 * router's timeouts.
 *
 * Everything a client can make us hold is bounded: SCH_ADMIN_CLIENTS_MAX
 * connections (more are closed at accept), one line of at most
 * SCH_ADMIN_LINE_BYTES_MAX bytes buffered (the read high-watermark stops the
 * socket there; a longer line closes the client), replies queued up to
 * SCH_ADMIN_OUT_PAUSE_BYTES before we stop reading that client's requests, and an
 * idle timeout. Input is never trusted: every field is type- and range-checked
 * and a bad request gets an error reply on a connection that stays open.
 *
 * Integers that may pass 2^53 are printed as raw digits (cJSON would print
 * them as lossy doubles, LIBRARY-NOTES 6). */
#include "sch_admin.h"

#include "sh_audit.h"
#include "sh_id.h"
#include "sh_limits.h"
#include "sh_log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- limits ------------------------------------------------------------- */

#define SCH_ADMIN_OUT_PAUSE_BYTES   (1024u * 1024u) /* stop reading while this much is queued */
#define SCH_ADMIN_IDLE_TIMEOUT_S    300             /* no request / no progress writing: close */
#define SCH_ADMIN_BACKLOG_COUNT     16
#define SCH_ADMIN_MESSAGE_BYTES     256
#define SCH_ADMIN_CHUNK_MIN_DEFAULT 100
#define SCH_ADMIN_CHUNK_MAX_DEFAULT 10000
/* 9999-12-31T23:59:59.999Z: a bound, and far below 2^53 so a JSON double is exact. */
#define SCH_ADMIN_START_MS_MAX 253402300799999LL

_Static_assert(SCH_ADMIN_CHUNK_MIN_DEFAULT >= SH_CHUNK_UNITS_MIN, "default chunk within limits");
_Static_assert(SCH_ADMIN_CHUNK_MAX_DEFAULT <= SH_CHUNK_UNITS_MAX, "default chunk within limits");
_Static_assert(SH_SKU_TOTAL_UNITS_MAX < (1LL << 53), "totals travel exactly as JSON numbers");
_Static_assert(SCH_ADMIN_START_MS_MAX < (1LL << 53), "start_ms travels exactly as a JSON number");

typedef struct sch_admin_client {
    struct sch_admin *admin;
    struct bufferevent *bev;
    struct sch_admin_client *prev, *next;
    int eof;    /* the peer shut its write side: answer what is buffered, then close */
    int paused; /* reading stopped until queued replies drain */
} sch_admin_client;

struct sch_admin {
    sch_ctx *ctx;
    struct evconnlistener *listener;
    sch_admin_client *clients; /* doubly linked, newest first */
    size_t nclients;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* A failed command: one of the error codes of sch_admin.h and a message. */
typedef struct sch_admin_fail {
    const char *code;
    char message[SCH_ADMIN_MESSAGE_BYTES];
} sch_admin_fail;

static void sch_admin_failf(sch_admin_fail *f, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void sch_admin_failf(sch_admin_fail *f, const char *code, const char *fmt, ...)
{
    va_list ap;
    f->code = code;
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof f->message, fmt, ap);
    va_end(ap);
}

/* ---- JSON helpers -------------------------------------------------------
 * Each returns 0 on success, -1 when cJSON could not allocate. */

static int sch_admin_add_i64(cJSON *o, const char *key, int64_t v)
{
    char digits[24];
    snprintf(digits, sizeof digits, "%" PRId64, v);
    return cJSON_AddRawToObject(o, key, digits) ? 0 : -1;
}

static int sch_admin_add_u64(cJSON *o, const char *key, uint64_t v)
{
    char digits[24];
    snprintf(digits, sizeof digits, "%" PRIu64, v);
    return cJSON_AddRawToObject(o, key, digits) ? 0 : -1;
}

static int sch_admin_add_bool(cJSON *o, const char *key, int v)
{
    return cJSON_AddBoolToObject(o, key, v ? 1 : 0) ? 0 : -1;
}

/* Adds a string held in a fixed array that the registry keeps NUL-terminated;
 * copied with a bound anyway so a missing NUL cannot make us read past it. */
static int sch_admin_add_fixed(cJSON *o, const char *key, const char *s, size_t cap)
{
    char buf[256];
    size_t n = strnlen(s, cap);
    if (n >= sizeof buf) {
        n = sizeof buf - 1;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    return cJSON_AddStringToObject(o, key, buf) ? 0 : -1;
}

/* Refuses keys other than those listed: a typo such as "min_chnk" must not be
 * silently ignored and leave a default in its place. */
static int sch_admin_check_keys(const cJSON *req, const char *const *allowed, size_t nallowed,
                                sch_admin_fail *f)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, req)
    {
        size_t i;
        for (i = 0; i < nallowed; i++) {
            if (it->string != NULL && strcmp(it->string, allowed[i]) == 0) {
                break;
            }
        }
        if (i == nallowed) {
            sch_admin_failf(f, "bad_request", "unknown field '%.64s'",
                            it->string ? it->string : "");
            return -1;
        }
    }
    return 0;
}

/* Reads integer field key of req into *out. Absent: -1 with *present = 0 when
 * optional (present != NULL), an error when required. The value must be a JSON
 * number with no fraction within [lo, hi]; lo and hi lie within +-2^53, where
 * doubles are exact. */
static int sch_admin_get_int(const cJSON *req, const char *key, int64_t lo, int64_t hi,
                             int *present, int64_t *out, sch_admin_fail *f)
{
    SH_ASSERT(lo <= hi && lo > -(1LL << 53) && hi < (1LL << 53));
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(req, key);
    if (present != NULL) {
        *present = it != NULL;
        if (it == NULL) {
            return 0;
        }
    } else if (it == NULL) {
        sch_admin_failf(f, "bad_request", "missing field '%s'", key);
        return -1;
    }
    if (!cJSON_IsNumber(it)) {
        sch_admin_failf(f, "bad_request", "'%s' must be a number", key);
        return -1;
    }
    double d = it->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi)) { /* also refuses NaN */
        sch_admin_failf(f, "bad_request", "'%s' must be within %" PRId64 "..%" PRId64, key, lo, hi);
        return -1;
    }
    int64_t v = (int64_t)d;
    if ((double)v != d) {
        sch_admin_failf(f, "bad_request", "'%s' must be an integer", key);
        return -1;
    }
    *out = v;
    return 0;
}

/* Reads a SKU id field and validates it (sh_id_check_sku) into buf. */
static int sch_admin_get_sku(const cJSON *req, char *buf, size_t cap, sch_admin_fail *f)
{
    SH_ASSERT(cap > SH_SKU_ID_CHARS_MAX);
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(req, "sku");
    if (it == NULL) {
        sch_admin_failf(f, "bad_request", "missing field 'sku'");
        return -1;
    }
    if (!cJSON_IsString(it) || it->valuestring == NULL) {
        sch_admin_failf(f, "bad_request", "'sku' must be a string");
        return -1;
    }
    size_t n = strlen(it->valuestring);
    sh_err rc = sh_id_check_sku(it->valuestring, n);
    if (rc != SH_OK) {
        sch_admin_failf(f, "bad_request", "'sku' must be 1..%d characters of [A-Za-z0-9_.-] (%s)",
                        SH_SKU_ID_CHARS_MAX, sh_strerror(rc));
        return -1;
    }
    memcpy(buf, it->valuestring, n + 1);
    return 0;
}

/* ---- commands -----------------------------------------------------------
 * Each returns a reply object ({"ok":true,...}), or NULL with *f filled. */

static cJSON *sch_admin_reply_ok(sch_admin_fail *f)
{
    cJSON *r = cJSON_CreateObject();
    if (r == NULL || sch_admin_add_bool(r, "ok", 1) != 0) {
        cJSON_Delete(r);
        sch_admin_failf(f, "internal", "out of memory");
        return NULL;
    }
    return r;
}

static int sch_admin_part_json(cJSON *arr, const sch_part *p)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) {
        return -1;
    }
    if (!cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        return -1;
    }
    double rate = isfinite(p->rate_units_per_s) ? p->rate_units_per_s : 0.0;
    if (sch_admin_add_i64(o, "index", p->index) != 0 ||
        sch_admin_add_i64(o, "salt", p->salt) != 0 || sch_admin_add_i64(o, "node", p->node) != 0 ||
        sch_admin_add_fixed(o, "master", p->master, sizeof p->master) != 0 ||
        cJSON_AddStringToObject(o, "state", p->closed ? "closed" : "open") == NULL ||
        sch_admin_add_i64(o, "active", p->active) != 0 || sch_admin_add_i64(o, "s0", p->s0) != 0 ||
        sch_admin_add_i64(o, "s1", p->s1) != 0 ||
        sch_admin_add_i64(o, "deducted", p->deducted) != 0 ||
        sch_admin_add_u64(o, "seq", p->seq) != 0 || sch_admin_add_u64(o, "flips", p->flips) != 0 ||
        sch_admin_add_u64(o, "grants", p->grants) != 0 ||
        sch_admin_add_i64(o, "inflight", p->inflight_units) != 0 ||
        cJSON_AddNumberToObject(o, "rate_units_per_s", rate) == NULL) {
        return -1;
    }
    return 0;
}

static int sch_admin_sku_json(cJSON *arr, const sch_sku *s)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) {
        return -1;
    }
    if (!cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        return -1;
    }
    if (sch_admin_add_fixed(o, "sku", s->id, sizeof s->id) != 0 ||
        sch_admin_add_fixed(o, "name", s->name, sizeof s->name) != 0 ||
        sch_admin_add_i64(o, "total", s->total) != 0 ||
        sch_admin_add_i64(o, "avail", s->avail) != 0 ||
        sch_admin_add_i64(o, "pending", s->pending_units) != 0 ||
        sch_admin_add_i64(o, "remaining", sch_sku_remaining(s)) != 0 ||
        sch_admin_add_u64(o, "per_user_limit", s->per_user_limit) != 0 ||
        sch_admin_add_i64(o, "start_ms", s->start_ms) != 0 ||
        sch_admin_add_u64(o, "min_chunk", s->min_chunk) != 0 ||
        sch_admin_add_u64(o, "max_chunk", s->max_chunk) != 0 ||
        sch_admin_add_u64(o, "ok", s->ok) != 0 ||
        sch_admin_add_u64(o, "sold_out", s->sold_out) != 0) {
        return -1;
    }
    cJSON *parts = cJSON_AddArrayToObject(o, "partitions");
    if (parts == NULL) {
        return -1;
    }
    if (s->nparts > 0 && s->parts == NULL) {
        return -1; /* a registry bug; reported as internal rather than read */
    }
    for (uint16_t i = 0; i < s->nparts; i++) {
        if (sch_admin_part_json(parts, &s->parts[i]) != 0) {
            return -1;
        }
    }
    return 0;
}

static cJSON *sch_admin_cmd_registry(sch_admin *a, const cJSON *req, sch_admin_fail *f)
{
    static const char *const keys[] = {"cmd"};
    if (sch_admin_check_keys(req, keys, 1, f) != 0) {
        return NULL;
    }
    if (a->ctx->reg == NULL) {
        sch_admin_failf(f, "internal", "the registry is not available");
        return NULL;
    }
    cJSON *r = sch_admin_reply_ok(f);
    if (r == NULL) {
        return NULL;
    }
    cJSON *skus = cJSON_AddArrayToObject(r, "skus");
    if (skus == NULL) {
        goto oom;
    }
    size_t n = sch_registry_count(a->ctx->reg);
    for (size_t i = 0; i < n; i++) {
        const sch_sku *s = sch_registry_at(a->ctx->reg, i);
        if (s == NULL) {
            sch_admin_failf(f, "internal", "registry entry %zu of %zu missing", i, n);
            cJSON_Delete(r);
            return NULL;
        }
        if (sch_admin_sku_json(skus, s) != 0) {
            goto oom;
        }
    }
    return r;
oom:
    cJSON_Delete(r);
    sch_admin_failf(f, "internal", "out of memory building the registry reply");
    return NULL;
}

/* Validates a sku_load request into *spec, defaults applied. */
static int sch_admin_parse_spec(const cJSON *req, sch_sku_spec *spec, sch_admin_fail *f)
{
    static const char *const keys[] = {"cmd",       "sku",       "total",    "partitions",
                                       "min_chunk", "max_chunk", "start_ms", "per_user_limit",
                                       "name"};
    if (sch_admin_check_keys(req, keys, sizeof keys / sizeof keys[0], f) != 0) {
        return -1;
    }
    memset(spec, 0, sizeof *spec);
    if (sch_admin_get_sku(req, spec->id, sizeof spec->id, f) != 0) {
        return -1;
    }
    int64_t total, parts, minc = 0, maxc = 0, start = 0, pul = 0;
    int has_min, has_max, has_start, has_pul;
    if (sch_admin_get_int(req, "total", 1, SH_SKU_TOTAL_UNITS_MAX, NULL, &total, f) != 0 ||
        sch_admin_get_int(req, "partitions", 1, SH_PARTITIONS_PER_SKU_MAX, NULL, &parts, f) != 0 ||
        sch_admin_get_int(req, "min_chunk", SH_CHUNK_UNITS_MIN, SH_CHUNK_UNITS_MAX, &has_min, &minc,
                          f) != 0 ||
        sch_admin_get_int(req, "max_chunk", SH_CHUNK_UNITS_MIN, SH_CHUNK_UNITS_MAX, &has_max, &maxc,
                          f) != 0 ||
        sch_admin_get_int(req, "start_ms", 0, SCH_ADMIN_START_MS_MAX, &has_start, &start, f) != 0 ||
        sch_admin_get_int(req, "per_user_limit", 0, SH_PER_USER_LIMIT_UNITS_MAX, &has_pul, &pul,
                          f) != 0) {
        return -1;
    }
    /* Defaults: a chunk of 100 (never more than the SKU, nor than a given
     * max_chunk), up to 10000 (never less than min_chunk). */
    if (!has_min) {
        minc = SCH_ADMIN_CHUNK_MIN_DEFAULT;
        if (minc > total) {
            minc = total;
        }
        if (has_max && minc > maxc) {
            minc = maxc;
        }
    }
    if (!has_max) {
        maxc = SCH_ADMIN_CHUNK_MAX_DEFAULT > minc ? SCH_ADMIN_CHUNK_MAX_DEFAULT : minc;
    }
    if (minc > maxc) {
        sch_admin_failf(f, "bad_request", "min_chunk %" PRId64 " exceeds max_chunk %" PRId64, minc,
                        maxc);
        return -1;
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(req, "name");
    if (name != NULL) {
        if (!cJSON_IsString(name) || name->valuestring == NULL) {
            sch_admin_failf(f, "bad_request", "'name' must be a string");
            return -1;
        }
        size_t n = strlen(name->valuestring);
        if (n > SH_SKU_NAME_CHARS_MAX) {
            sch_admin_failf(f, "bad_request", "'name' is longer than %d bytes",
                            SH_SKU_NAME_CHARS_MAX);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)name->valuestring[i];
            if (ch < 0x20 || ch == 0x7f) {
                sch_admin_failf(f, "bad_request", "'name' holds a control character");
                return -1;
            }
        }
        memcpy(spec->name, name->valuestring, n + 1);
    } else {
        memcpy(spec->name, spec->id, sizeof spec->id); /* a readable default */
    }
    spec->total = total;
    spec->partitions = (uint16_t)parts;
    spec->min_chunk = (uint32_t)minc;
    spec->max_chunk = (uint32_t)maxc;
    spec->start_ms = start;
    spec->per_user_limit = (uint32_t)pul;
    return 0;
}

static cJSON *sch_admin_cmd_sku_load(sch_admin *a, const cJSON *req, sch_admin_fail *f)
{
    sch_sku_spec spec;
    if (sch_admin_parse_spec(req, &spec, f) != 0) {
        return NULL;
    }
    if (a->ctx->pool == NULL || a->ctx->reg == NULL) {
        sch_admin_failf(f, "internal", "the pool is not available");
        return NULL;
    }
    int created = 0;
    char msg[SCH_ADMIN_MESSAGE_BYTES] = "";
    sh_err rc = sch_pool_load_sku(a->ctx->pool, a->ctx->reg, &spec, &created, msg, sizeof msg);
    msg[sizeof msg - 1] = '\0';
    if (rc != SH_OK) {
        /* Refusals of the request itself are the caller's to fix; the rest
         * (Redis, cluster, memory) are ours. */
        int theirs = rc == SH_EINVAL || rc == SH_ERANGE || rc == SH_ELIMIT || rc == SH_EEXIST;
        sch_admin_failf(f, theirs ? "bad_request" : "internal", "sku load %s: %s%s%s", spec.id,
                        sh_strerror(rc), msg[0] ? ": " : "", msg);
        SH_WARN("admin", "sku load failed sku=%s rc=%s msg=\"%s\"", spec.id, sh_strerror(rc), msg);
        return NULL;
    }
    SH_INFO("admin", "sku load sku=%s created=%d total=%" PRId64 " partitions=%u", spec.id,
            created ? 1 : 0, spec.total, (unsigned)spec.partitions);
    cJSON *r = sch_admin_reply_ok(f);
    if (r == NULL) {
        return NULL;
    }
    if (sch_admin_add_bool(r, "created", created) != 0) {
        cJSON_Delete(r);
        sch_admin_failf(f, "internal", "out of memory");
        return NULL;
    }
    return r;
}

typedef struct sch_admin_verdict {
    int conservation, no_negative, no_oversell;
} sch_admin_verdict;

static cJSON *sch_admin_cmd_audit(sch_admin *a, const cJSON *req, sch_admin_fail *f)
{
    static const char *const keys[] = {"cmd", "sku"};
    if (sch_admin_check_keys(req, keys, 2, f) != 0) {
        return NULL;
    }
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    if (sch_admin_get_sku(req, sku, sizeof sku, f) != 0) {
        return NULL;
    }
    if (a->ctx->pool == NULL) {
        sch_admin_failf(f, "internal", "the pool is not available");
        return NULL;
    }
    struct sh_cluster *router = sch_pool_router(a->ctx->pool);
    if (router == NULL) {
        sch_admin_failf(f, "internal", "no Redis router");
        return NULL;
    }
    sh_audit au;
    memset(&au, 0, sizeof au);
    sh_err rc = sh_audit_sku(router, sku, &au);
    if (rc == SH_ENOTFOUND) {
        sch_admin_failf(f, "unknown_sku", "no SKU '%s' in Redis", sku);
        return NULL;
    }
    if (rc != SH_OK) {
        sch_admin_failf(f, "internal", "audit of %s: %s", sku, sh_strerror(rc));
        return NULL;
    }
    au.broken[sizeof au.broken - 1] = '\0';
    sch_admin_verdict v = {au.conservation_ok, au.no_negative_ok, au.no_oversell_ok};
    int all_ok = au.ok;
    if (!all_ok) {
        SH_WARN("admin", "audit broken sku=%s stable=%d broken=\"%s\"", sku, au.stable, au.broken);
    }
    cJSON *r = sch_admin_reply_ok(f);
    if (r == NULL) {
        return NULL;
    }
    cJSON *inv = NULL;
    if (cJSON_AddStringToObject(r, "sku", sku) == NULL ||
        sch_admin_add_i64(r, "total", au.total) != 0 ||
        sch_admin_add_i64(r, "avail", au.avail) != 0 ||
        sch_admin_add_i64(r, "pending_grant_units", au.pending_grant_units) != 0 ||
        sch_admin_add_i64(r, "pending_return_units", au.pending_return_units) != 0 ||
        sch_admin_add_i64(r, "partition_units", au.partition_units) != 0 ||
        sch_admin_add_i64(r, "deducted", au.deducted) != 0 ||
        sch_admin_add_i64(r, "details_pending", au.details_pending) != 0 ||
        sch_admin_add_u64(r, "seq_sum", au.seq_sum) != 0 ||
        sch_admin_add_i64(r, "partitions", au.partitions) != 0 ||
        sch_admin_add_bool(r, "stable", au.stable) != 0 ||
        sch_admin_add_bool(r, "invariants_ok", all_ok) != 0 ||
        cJSON_AddStringToObject(r, "broken", au.broken) == NULL ||
        (inv = cJSON_AddObjectToObject(r, "invariants")) == NULL ||
        sch_admin_add_bool(inv, "conservation", v.conservation) != 0 ||
        sch_admin_add_bool(inv, "no_negative", v.no_negative) != 0 ||
        sch_admin_add_bool(inv, "no_oversell", v.no_oversell) != 0) {
        cJSON_Delete(r);
        sch_admin_failf(f, "internal", "out of memory");
        return NULL;
    }
    return r;
}

static cJSON *sch_admin_cmd_stats(sch_admin *a, const cJSON *req, sch_admin_fail *f)
{
    static const char *const keys[] = {"cmd"};
    static const struct {
        const char *name;
        size_t offset;
    } counters[] = {
#define C(field) {#field, offsetof(sch_stats, field)}
        C(http_requests), C(deduct_ok),    C(deduct_dup),   C(sold_out),
        C(conflicts),     C(user_limit),   C(bad_requests), C(unavailable),
        C(not_started),   C(rate_limited), C(releases),     C(node_messages),
        C(node_items),    C(retries),      C(grants),       C(consolidations),
#undef C
    };
    _Static_assert(sizeof counters / sizeof counters[0] == sizeof(sch_stats) / sizeof(uint64_t),
                   "every counter of sch_stats is served");
    if (sch_admin_check_keys(req, keys, 1, f) != 0) {
        return NULL;
    }
    cJSON *r = sch_admin_reply_ok(f);
    if (r == NULL) {
        return NULL;
    }
    const unsigned char *base = (const unsigned char *)&a->ctx->stats;
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        uint64_t v;
        memcpy(&v, base + counters[i].offset, sizeof v);
        if (sch_admin_add_u64(r, counters[i].name, v) != 0) {
            goto oom;
        }
    }
    if (sch_admin_add_u64(r, "skus", a->ctx->reg ? sch_registry_count(a->ctx->reg) : 0) != 0 ||
        sch_admin_add_u64(r, "admin_clients", a->nclients) != 0) {
        goto oom;
    }
    return r;
oom:
    cJSON_Delete(r);
    sch_admin_failf(f, "internal", "out of memory");
    return NULL;
}

static const struct {
    const char *name;
    cJSON *(*run)(sch_admin *a, const cJSON *req, sch_admin_fail *f);
} sch_admin_commands[] = {
    {"registry", sch_admin_cmd_registry},
    {"sku_load", sch_admin_cmd_sku_load},
    {"audit", sch_admin_cmd_audit},
    {"stats", sch_admin_cmd_stats},
};

/* Parses one request line and returns its reply, never NULL unless out of
 * memory for the error reply itself. */
static cJSON *sch_admin_dispatch(sch_admin *a, const char *line, size_t len, sch_admin_fail *f)
{
    if (memchr(line, '\0', len) != NULL) {
        sch_admin_failf(f, "bad_request", "NUL byte in request");
        return NULL;
    }
    size_t blank = 0;
    while (blank < len && (line[blank] == ' ' || line[blank] == '\t' || line[blank] == '\r')) {
        blank++;
    }
    if (blank == len) {
        sch_admin_failf(f, "bad_request", "empty request line");
        return NULL;
    }
    const char *end = NULL;
    cJSON *req = cJSON_ParseWithLengthOpts(line, len, &end, 0);
    if (req == NULL) {
        sch_admin_failf(f, "bad_request", "malformed JSON");
        return NULL;
    }
    /* cJSON accepts trailing garbage (LIBRARY-NOTES 6): only whitespace may follow. */
    for (const char *p = end; p != NULL && p < line + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            cJSON_Delete(req);
            sch_admin_failf(f, "bad_request", "trailing characters after the JSON object");
            return NULL;
        }
    }
    cJSON *reply = NULL;
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd");
    if (!cJSON_IsObject(req)) {
        sch_admin_failf(f, "bad_request", "the request must be a JSON object");
    } else if (cmd == NULL) {
        sch_admin_failf(f, "bad_request", "missing field 'cmd'");
    } else if (!cJSON_IsString(cmd) || cmd->valuestring == NULL) {
        sch_admin_failf(f, "bad_request", "'cmd' must be a string");
    } else {
        size_t i;
        for (i = 0; i < sizeof sch_admin_commands / sizeof sch_admin_commands[0]; i++) {
            if (strcmp(cmd->valuestring, sch_admin_commands[i].name) == 0) {
                reply = sch_admin_commands[i].run(a, req, f);
                break;
            }
        }
        if (i == sizeof sch_admin_commands / sizeof sch_admin_commands[0]) {
            sch_admin_failf(f, "unknown_command",
                            "unknown command '%.64s' (registry, sku_load, audit, stats)",
                            cmd->valuestring);
        }
    }
    cJSON_Delete(req);
    return reply;
}

/* ---- connections --------------------------------------------------------- */

static void sch_admin_client_free(sch_admin_client *c)
{
    sch_admin *a = c->admin;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        a->clients = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    SH_ASSERT(a->nclients > 0);
    a->nclients--;
    bufferevent_free(c->bev);
    free(c);
}

/* Answers one line; returns -1 when the client had to be dropped (its output
 * could not grow). The caller must not touch c after -1. */
static int sch_admin_answer(sch_admin_client *c, const char *line, size_t len)
{
    static const char oom_reply[] =
        "{\"ok\":false,\"error\":\"internal\",\"message\":\"out of memory\"}\n";
    sch_admin_fail f = {"internal", "out of memory"};
    cJSON *reply = sch_admin_dispatch(c->admin, line, len, &f);
    if (reply == NULL) {
        reply = cJSON_CreateObject();
        if (reply != NULL && (sch_admin_add_bool(reply, "ok", 0) != 0 ||
                              cJSON_AddStringToObject(reply, "error", f.code) == NULL ||
                              cJSON_AddStringToObject(reply, "message", f.message) == NULL)) {
            cJSON_Delete(reply);
            reply = NULL;
        }
    }
    char *text = reply ? cJSON_PrintUnformatted(reply) : NULL;
    cJSON_Delete(reply);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    int rc;
    if (text != NULL) {
        rc = evbuffer_add(out, text, strlen(text)) == 0 && evbuffer_add(out, "\n", 1) == 0 ? 0 : -1;
        cJSON_free(text);
    } else {
        rc = evbuffer_add(out, oom_reply, sizeof oom_reply - 1);
    }
    if (rc != 0) {
        SH_WARN("admin", "cannot queue a reply; closing the client");
        sch_admin_client_free(c);
        return -1;
    }
    return 0;
}

/* Answers every complete line buffered, while the queued output stays under
 * SCH_ADMIN_OUT_PAUSE_BYTES; then either waits for more input, pauses reading
 * until the output drains, or (after EOF) closes once the output is flushed.
 * May free c. */
static void sch_admin_client_pump(sch_admin_client *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    while (evbuffer_get_length(out) < SCH_ADMIN_OUT_PAUSE_BYTES) {
        size_t eol_len = 0;
        struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
        size_t buffered = evbuffer_get_length(in);
        if ((eol.pos >= 0 && (size_t)eol.pos > SCH_ADMIN_LINE_BYTES_MAX) ||
            (eol.pos < 0 && buffered > SCH_ADMIN_LINE_BYTES_MAX)) {
            SH_WARN("admin", "request line longer than %d bytes; closing the client",
                    SCH_ADMIN_LINE_BYTES_MAX);
            sch_admin_client_free(c);
            return;
        }
        size_t len = 0;
        char *line = NULL;
        if (eol.pos >= 0) {
            line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
        } else if (c->eof && buffered > 0) {
            /* The last line of a peer that closed without a newline. */
            line = malloc(buffered + 1);
            if (line != NULL) {
                ev_ssize_t got = evbuffer_remove(in, line, buffered);
                if (got < 0) {
                    free(line);
                    line = NULL;
                } else {
                    len = (size_t)got;
                    line[len] = '\0';
                }
            }
        } else {
            break;
        }
        if (line == NULL) {
            SH_WARN("admin", "cannot read a request line; closing the client");
            sch_admin_client_free(c);
            return;
        }
        int rc = sch_admin_answer(c, line, len);
        free(line);
        if (rc != 0) {
            return;
        }
    }
    if (evbuffer_get_length(out) >= SCH_ADMIN_OUT_PAUSE_BYTES) {
        /* Let the client read what it asked for before it may ask more. */
        if (!c->paused && !c->eof) {
            bufferevent_disable(c->bev, EV_READ);
        }
        c->paused = 1;
        return;
    }
    if (c->paused) {
        c->paused = 0;
        if (!c->eof && bufferevent_enable(c->bev, EV_READ) != 0) {
            sch_admin_client_free(c);
            return;
        }
    }
    if (c->eof && evbuffer_get_length(out) == 0) {
        sch_admin_client_free(c);
    }
}

static void sch_admin_read_cb(struct bufferevent *bev, void *arg)
{
    sch_admin_client *c = arg;
    SH_ASSERT(c->bev == bev);
    sch_admin_client_pump(c);
}

/* Called when the output buffer has drained (low watermark 0). */
static void sch_admin_write_cb(struct bufferevent *bev, void *arg)
{
    sch_admin_client *c = arg;
    SH_ASSERT(c->bev == bev);
    if (c->paused || c->eof) {
        sch_admin_client_pump(c);
    }
}

static void sch_admin_event_cb(struct bufferevent *bev, short what, void *arg)
{
    sch_admin_client *c = arg;
    SH_ASSERT(c->bev == bev);
    if ((what & BEV_EVENT_EOF) && !(what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))) {
        /* Half-close (`echo ... | socat`): answer what is buffered, then close. */
        c->eof = 1;
        bufferevent_disable(bev, EV_READ);
        sch_admin_client_pump(c);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        SH_DEBUG("admin", "client idle for %d s; closing", SCH_ADMIN_IDLE_TIMEOUT_S);
    } else if (what & BEV_EVENT_ERROR) {
        SH_DEBUG("admin", "client error; closing err=%s",
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    }
    sch_admin_client_free(c);
}

static void sch_admin_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                                int salen, void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    sch_admin *a = arg;
    if (a->nclients >= SCH_ADMIN_CLIENTS_MAX) {
        SH_WARN("admin", "too many admin clients; closing the new one clients=%zu", a->nclients);
        evutil_closesocket(fd);
        return;
    }
    sch_admin_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        SH_WARN("admin", "out of memory accepting a client");
        evutil_closesocket(fd);
        return;
    }
    c->admin = a;
    c->bev = bufferevent_socket_new(a->ctx->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        SH_WARN("admin", "bufferevent_socket_new failed");
        evutil_closesocket(fd);
        free(c);
        return;
    }
    c->next = a->clients;
    if (a->clients != NULL) {
        a->clients->prev = c;
    }
    a->clients = c;
    a->nclients++;
    struct timeval idle = {SCH_ADMIN_IDLE_TIMEOUT_S, 0};
    bufferevent_setcb(c->bev, sch_admin_read_cb, sch_admin_write_cb, sch_admin_event_cb, c);
    /* One longest line plus its newline: a full buffer without a newline means
     * the line is too long, and reading stops there instead of growing. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, SCH_ADMIN_LINE_BYTES_MAX + 1);
    if (bufferevent_set_timeouts(c->bev, &idle, &idle) != 0 ||
        bufferevent_enable(c->bev, EV_READ | EV_WRITE) != 0) {
        SH_WARN("admin", "cannot enable the client's events");
        sch_admin_client_free(c);
        return;
    }
}

static void sch_admin_accept_error_cb(struct evconnlistener *l, void *arg)
{
    (void)l;
    (void)arg;
    /* EMFILE and friends: libevent keeps listening; the next accept may work. */
    SH_WARN("admin", "accept failed err=%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

/* ---- open / close -------------------------------------------------------- */

/* Removes a stale socket file at path. A live one (another scheduler answers)
 * or a file that is not a socket is left alone: replacing either would steal
 * or destroy something that is not ours. */
static sh_err sch_admin_clear_path(const struct sockaddr_un *sun)
{
    struct stat st;
    if (lstat(sun->sun_path, &st) != 0) {
        if (errno == ENOENT) {
            return SH_OK;
        }
        SH_ERROR("admin", "cannot stat the admin socket path path=%s err=%s", sun->sun_path,
                 strerror(errno));
        return SH_EIO;
    }
    if (!S_ISSOCK(st.st_mode)) {
        SH_ERROR("admin", "admin socket path exists and is not a socket path=%s", sun->sun_path);
        return SH_EIO;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        SH_ERROR("admin", "socket failed err=%s", strerror(errno));
        return SH_EIO;
    }
    int live = connect(fd, (const struct sockaddr *)sun, sizeof *sun) == 0;
    close(fd);
    if (live) {
        SH_ERROR("admin", "admin socket is in use by a live process path=%s", sun->sun_path);
        return SH_EIO;
    }
    if (unlink(sun->sun_path) != 0 && errno != ENOENT) {
        SH_ERROR("admin", "cannot remove the stale admin socket path=%s err=%s", sun->sun_path,
                 strerror(errno));
        return SH_EIO;
    }
    return SH_OK;
}

sh_err sch_admin_open(sch_admin **out, sch_ctx *ctx)
{
    SH_ASSERT(out != NULL && ctx != NULL && ctx->cfg != NULL && ctx->base != NULL);
    *out = NULL;
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    size_t plen = strnlen(ctx->cfg->admin_socket, sizeof ctx->cfg->admin_socket);
    if (plen == 0 || plen >= sizeof sun.sun_path) {
        SH_ERROR("admin", "admin socket path is empty or longer than %zu bytes",
                 sizeof sun.sun_path - 1);
        return SH_EINVAL;
    }
    memcpy(sun.sun_path, ctx->cfg->admin_socket, plen);
    sh_err rc = sch_admin_clear_path(&sun);
    if (rc != SH_OK) {
        return rc;
    }
    sch_admin *a = calloc(1, sizeof *a);
    if (a == NULL) {
        return SH_ENOMEM;
    }
    a->ctx = ctx;
    memcpy(a->path, sun.sun_path, sizeof a->path);
    /* bind, chmod, then listen: no client can connect while the file still has
     * the umask's mode. */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        SH_ERROR("admin", "socket failed err=%s", strerror(errno));
        free(a);
        return SH_EIO;
    }
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
        SH_ERROR("admin", "cannot bind the admin socket path=%s err=%s", a->path, strerror(errno));
        close(fd);
        free(a);
        return SH_EIO;
    }
    if (chmod(a->path, 0660) != 0) {
        SH_ERROR("admin", "cannot chmod the admin socket path=%s err=%s", a->path, strerror(errno));
        close(fd);
        unlink(a->path);
        free(a);
        return SH_EIO;
    }
    a->listener = evconnlistener_new(ctx->base, sch_admin_accept_cb, a,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                     SCH_ADMIN_BACKLOG_COUNT, fd);
    if (a->listener == NULL) {
        SH_ERROR("admin", "cannot listen on the admin socket path=%s err=%s", a->path,
                 strerror(errno));
        close(fd);
        unlink(a->path);
        free(a);
        return SH_EIO;
    }
    evconnlistener_set_error_cb(a->listener, sch_admin_accept_error_cb);
    SH_INFO("admin", "listening path=%s", a->path);
    *out = a;
    return SH_OK;
}

void sch_admin_close(sch_admin *a)
{
    if (a == NULL) {
        return;
    }
    while (a->clients != NULL) {
        sch_admin_client_free(a->clients);
    }
    SH_ASSERT(a->nclients == 0);
    evconnlistener_free(a->listener);
    if (unlink(a->path) != 0 && errno != ENOENT) {
        SH_WARN("admin", "cannot remove the admin socket path=%s err=%s", a->path, strerror(errno));
    }
    free(a);
}
