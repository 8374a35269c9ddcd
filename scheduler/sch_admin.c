/* sch_admin.c -- the admin socket: one JSON request per line, one JSON reply per line.
 *
 * Operators (stockctl, socat, tests) reach the live scheduler here without going
 * through the HTTP front: the registry as the loop thread sees it, SKU loading
 * and restocks through the catalog (MySQL, via a sync worker), the invariant
 * audit (Redis, and Redis against MySQL), the repair of a diverged partition
 * and the counters. It runs on the scheduler's own event loop, so it reads the
 * registry and calls the pool without locks (sch_ctx.h); a short command
 * (sku load, restock: one sync worker round trip) holds the loop for its
 * duration, bounded by the router's and sync.timeout_ms. The long ones (audit,
 * partition reconcile: every record of a SKU or partition) run on the
 * operator thread (sch_jobs.h) and answer when done; meanwhile that client's
 * next lines wait and the loop serves everything else.
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

#include "sch_audit.h"
#include "sch_jobs.h"
#include "sch_json.h"
#include "sch_reconcile.h"
#include "sch_sync.h"

#include "sh_audit.h"
#include "sh_clock.h"
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
    int eof;      /* the peer shut its write side: answer what is buffered, then close */
    int paused;   /* reading stopped until queued replies drain */
    sch_job *job; /* a command running on the operator thread: its reply comes first */
} sch_admin_client;

struct sch_admin {
    sch_ctx *ctx;
    struct evconnlistener *listener;
    sch_jobs *jobs;            /* the operator thread (audit) */
    sch_admin_client *clients; /* doubly linked, newest first */
    size_t nclients;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

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
                                sch_fail *f)
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
            sch_failf(f, "bad_request", "unknown field '%.64s'", it->string ? it->string : "");
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
                             int *present, int64_t *out, sch_fail *f)
{
    SH_ASSERT(lo <= hi && lo > -(1LL << 53) && hi < (1LL << 53));
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(req, key);
    if (present != NULL) {
        *present = it != NULL;
        if (it == NULL) {
            return 0;
        }
    } else if (it == NULL) {
        sch_failf(f, "bad_request", "missing field '%s'", key);
        return -1;
    }
    if (!cJSON_IsNumber(it)) {
        sch_failf(f, "bad_request", "'%s' must be a number", key);
        return -1;
    }
    double d = it->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi)) { /* also refuses NaN */
        sch_failf(f, "bad_request", "'%s' must be within %" PRId64 "..%" PRId64, key, lo, hi);
        return -1;
    }
    int64_t v = (int64_t)d;
    if ((double)v != d) {
        sch_failf(f, "bad_request", "'%s' must be an integer", key);
        return -1;
    }
    *out = v;
    return 0;
}

/* Reads a SKU id field and validates it (sh_id_check_sku) into buf. */
static int sch_admin_get_sku(const cJSON *req, char *buf, size_t cap, sch_fail *f)
{
    SH_ASSERT(cap > SH_SKU_ID_CHARS_MAX);
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(req, "sku");
    if (it == NULL) {
        sch_failf(f, "bad_request", "missing field 'sku'");
        return -1;
    }
    if (!cJSON_IsString(it) || it->valuestring == NULL) {
        sch_failf(f, "bad_request", "'sku' must be a string");
        return -1;
    }
    size_t n = strlen(it->valuestring);
    sh_err rc = sh_id_check_sku(it->valuestring, n);
    if (rc != SH_OK) {
        sch_failf(f, "bad_request", "'sku' must be 1..%d characters of [A-Za-z0-9_.-] (%s)",
                  SH_SKU_ID_CHARS_MAX, sh_strerror(rc));
        return -1;
    }
    memcpy(buf, it->valuestring, n + 1);
    return 0;
}

/* ---- commands -----------------------------------------------------------
 * Each returns a reply object ({"ok":true,...}), or NULL with *f filled. */

/* lag: the partition's sync lag read from Redis, NULL when it could not be read. */
static int sch_admin_part_json(cJSON *arr, const sch_part *p, const sh_audit_lag *lag)
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
    if (sch_json_i64(o, "index", p->index) != 0 || sch_json_i64(o, "salt", p->salt) != 0 ||
        sch_json_i64(o, "node", p->node) != 0 ||
        sch_admin_add_fixed(o, "master", p->master, sizeof p->master) != 0 ||
        cJSON_AddStringToObject(o, "state",
                                p->diverged ? "diverged"
                                : p->closed ? "closed"
                                            : "open") == NULL ||
        sch_json_i64(o, "active", p->active) != 0 || sch_json_i64(o, "s0", p->s0) != 0 ||
        sch_json_i64(o, "s1", p->s1) != 0 || sch_json_i64(o, "deducted", p->deducted) != 0 ||
        sch_json_u64(o, "seq", p->seq) != 0 || sch_json_u64(o, "flips", p->flips) != 0 ||
        sch_json_u64(o, "grants", p->grants) != 0 ||
        sch_json_i64(o, "inflight", p->inflight_units) != 0 ||
        cJSON_AddNumberToObject(o, "rate_units_per_s", rate) == NULL) {
        return -1;
    }
    if (sch_part_pending(p)) {
        /* Pool work a failed step left; the retry timer finishes it. */
        uint64_t now = sh_clock_mono_ms();
        cJSON *pw = cJSON_AddObjectToObject(o, "pending_work");
        if (pw == NULL || sch_json_u64(pw, "grant_id", p->stuck_grant_id) != 0 ||
            sch_json_i64(pw, "grant_units", p->stuck_grant_units) != 0 ||
            sch_json_u64(pw, "doubt_grant_id", p->doubt_grant_id) != 0 ||
            sch_json_u64(pw, "return_id", p->return_id) != 0 ||
            sch_json_u64(pw, "age_ms", now - p->pending_since_ms) != 0) {
            return -1;
        }
    }
    if (lag != NULL &&
        (sch_json_u64(o, "details_pending", lag->details_pending) != 0 ||
         sch_json_u64(o, "oldest_pending_age_ms", lag->oldest_pending_age_ms) != 0)) {
        return -1;
    }
    return 0;
}

/* router: where the partitions' sync lag is read (one pipeline per SKU); NULL
 * leaves it out. */
static int sch_admin_sku_json(cJSON *arr, const sch_sku *s, struct sh_cluster *router)
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
        sch_json_i64(o, "total", s->total) != 0 || sch_json_i64(o, "avail", s->avail) != 0 ||
        sch_json_i64(o, "pending", s->pending_units) != 0 ||
        sch_json_i64(o, "remaining", sch_sku_remaining(s)) != 0 ||
        sch_json_u64(o, "per_user_limit", s->per_user_limit) != 0 ||
        sch_json_i64(o, "start_ms", s->start_ms) != 0 ||
        sch_json_u64(o, "min_chunk", s->min_chunk) != 0 ||
        sch_json_u64(o, "max_chunk", s->max_chunk) != 0 || sch_json_u64(o, "ok", s->ok) != 0 ||
        sch_json_u64(o, "sold_out", s->sold_out) != 0) {
        return -1;
    }
    cJSON *parts = cJSON_AddArrayToObject(o, "partitions");
    if (parts == NULL) {
        return -1;
    }
    if (s->nparts > 0 && s->parts == NULL) {
        return -1; /* a registry bug; reported as internal rather than read */
    }
    sh_audit_lag lag[SH_PARTITIONS_PER_SKU_MAX];
    int have_lag = 0;
    if (router != NULL && s->nparts > 0) {
        uint16_t salts[SH_PARTITIONS_PER_SKU_MAX];
        for (uint16_t i = 0; i < s->nparts; i++) {
            salts[i] = s->parts[i].salt;
        }
        sh_err rc = sh_audit_lag_read(router, s->id, salts, s->nparts, sh_clock_wall_ms(), lag);
        have_lag = rc == SH_OK;
        if (!have_lag && cJSON_AddStringToObject(o, "lag_error", sh_strerror(rc)) == NULL) {
            return -1;
        }
    }
    for (uint16_t i = 0; i < s->nparts; i++) {
        if (sch_admin_part_json(parts, &s->parts[i], have_lag ? &lag[i] : NULL) != 0) {
            return -1;
        }
    }
    return 0;
}

static cJSON *sch_admin_cmd_registry(sch_admin *a, const cJSON *req, sch_fail *f)
{
    static const char *const keys[] = {"cmd"};
    if (sch_admin_check_keys(req, keys, 1, f) != 0) {
        return NULL;
    }
    if (a->ctx->reg == NULL) {
        sch_failf(f, "internal", "the registry is not available");
        return NULL;
    }
    cJSON *r = sch_json_reply_ok(f);
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
            sch_failf(f, "internal", "registry entry %zu of %zu missing", i, n);
            cJSON_Delete(r);
            return NULL;
        }
        if (sch_admin_sku_json(skus, s, a->ctx->pool ? sch_pool_router(a->ctx->pool) : NULL) != 0) {
            goto oom;
        }
    }
    return r;
oom:
    cJSON_Delete(r);
    sch_failf(f, "internal", "out of memory building the registry reply");
    return NULL;
}

/* A sku_load request: the SKU, and when total and partitions are given, the
 * row to create in the catalog if it is absent (defaults applied). */
typedef struct sch_admin_load {
    sch_sku_spec spec;
    int has_row; /* total and partitions given */
    int has_min, has_max, has_start, has_pul, has_name;
} sch_admin_load;

/* Validates a sku_load request into *l. */
static int sch_admin_parse_load(const cJSON *req, sch_admin_load *l, sch_fail *f)
{
    static const char *const keys[] = {"cmd",       "sku",       "total",    "partitions",
                                       "min_chunk", "max_chunk", "start_ms", "per_user_limit",
                                       "name"};
    if (sch_admin_check_keys(req, keys, sizeof keys / sizeof keys[0], f) != 0) {
        return -1;
    }
    memset(l, 0, sizeof *l);
    sch_sku_spec *spec = &l->spec;
    if (sch_admin_get_sku(req, spec->id, sizeof spec->id, f) != 0) {
        return -1;
    }
    int64_t total = 0, parts = 0, minc = 0, maxc = 0, start = 0, pul = 0;
    int has_total, has_parts;
    if (sch_admin_get_int(req, "total", 1, SH_SKU_TOTAL_UNITS_MAX, &has_total, &total, f) != 0 ||
        sch_admin_get_int(req, "partitions", 1, SH_PARTITIONS_PER_SKU_MAX, &has_parts, &parts, f) !=
            0 ||
        sch_admin_get_int(req, "min_chunk", SH_CHUNK_UNITS_MIN, SH_CHUNK_UNITS_MAX, &l->has_min,
                          &minc, f) != 0 ||
        sch_admin_get_int(req, "max_chunk", SH_CHUNK_UNITS_MIN, SH_CHUNK_UNITS_MAX, &l->has_max,
                          &maxc, f) != 0 ||
        sch_admin_get_int(req, "start_ms", 0, SCH_ADMIN_START_MS_MAX, &l->has_start, &start, f) !=
            0 ||
        sch_admin_get_int(req, "per_user_limit", 0, SH_PER_USER_LIMIT_UNITS_MAX, &l->has_pul, &pul,
                          f) != 0) {
        return -1;
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(req, "name");
    l->has_name = name != NULL;
    if (has_total != has_parts) {
        sch_failf(f, "bad_request",
                  "'total' and 'partitions' go together (give neither to load the catalog "
                  "row as it is)");
        return -1;
    }
    l->has_row = has_total;
    if (!l->has_row) {
        if (l->has_min || l->has_max || l->has_start || l->has_pul || l->has_name) {
            sch_failf(f, "bad_request",
                      "sale parameters need 'total' and 'partitions' (they create the "
                      "catalog row)");
            return -1;
        }
        return 0;
    }
    /* Defaults: a chunk of 100 (never more than the SKU, nor than a given
     * max_chunk), up to 10000 (never less than min_chunk). */
    if (!l->has_min) {
        minc = SCH_ADMIN_CHUNK_MIN_DEFAULT;
        if (minc > total) {
            minc = total;
        }
        if (l->has_max && minc > maxc) {
            minc = maxc;
        }
    }
    if (!l->has_max) {
        maxc = SCH_ADMIN_CHUNK_MAX_DEFAULT > minc ? SCH_ADMIN_CHUNK_MAX_DEFAULT : minc;
    }
    if (minc > maxc) {
        sch_failf(f, "bad_request", "min_chunk %" PRId64 " exceeds max_chunk %" PRId64, minc, maxc);
        return -1;
    }
    if (name != NULL) {
        if (!cJSON_IsString(name) || name->valuestring == NULL) {
            sch_failf(f, "bad_request", "'name' must be a string");
            return -1;
        }
        size_t n = strlen(name->valuestring);
        if (n > SH_SKU_NAME_CHARS_MAX) {
            sch_failf(f, "bad_request", "'name' is longer than %d bytes", SH_SKU_NAME_CHARS_MAX);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)name->valuestring[i];
            if (ch < 0x20 || ch == 0x7f) {
                sch_failf(f, "bad_request", "'name' holds a control character");
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

/* ---- the catalog (sync workers) -------------------------------------------------- */

/* The catalog row of a load request (UPSERT). */
static void sch_admin_spec_to_row(const sch_sku_spec *spec, sh_wire_sku *row)
{
    memset(row, 0, sizeof *row);
    sh_err rc = sh_wire_str_set(row->sku_id, sizeof row->sku_id, &row->sku_id_len, spec->id,
                                strlen(spec->id));
    SH_ASSERT(rc == SH_OK); /* validated by sch_admin_parse_load */
    rc = sh_wire_str_set(row->name, sizeof row->name, &row->name_len, spec->name,
                         strlen(spec->name));
    SH_ASSERT(rc == SH_OK);
    row->total = spec->total;
    row->start_ms = spec->start_ms;
    row->per_user_limit = spec->per_user_limit;
    row->partitions = spec->partitions;
    row->min_chunk = spec->min_chunk;
    row->max_chunk = spec->max_chunk;
}

/* A stored catalog row into the spec the pool loads. Rows come from MySQL
 * through a worker: the codec checked their bounds, this checks what the codec
 * cannot know (the id is the one asked for, byte for byte; a start the admin
 * socket could not have taken). */
static int sch_admin_row_to_spec(const sh_wire_sku *row, const char *sku, sch_sku_spec *spec,
                                 sch_fail *f)
{
    if (strcmp(row->sku_id, sku) != 0) {
        /* sku.sku_id compares case-insensitively in MySQL (utf8mb4_unicode_ci),
         * Redis keys do not: loading one under the other's name would split it. */
        sch_failf(f, "catalog_conflict",
                  "the catalog answered row '%s' for SKU '%s' (MySQL compares ids without "
                  "case); use the catalog's id",
                  row->sku_id, sku);
        return -1;
    }
    if (row->start_ms > SCH_ADMIN_START_MS_MAX ||
        sh_id_check_sku(row->sku_id, row->sku_id_len) != SH_OK) {
        sch_failf(f, "catalog_conflict", "the catalog row of '%s' is out of range", sku);
        return -1;
    }
    memset(spec, 0, sizeof *spec);
    memcpy(spec->id, row->sku_id, (size_t)row->sku_id_len + 1);
    memcpy(spec->name, row->name, (size_t)row->name_len + 1);
    spec->total = row->total;
    spec->start_ms = row->start_ms;
    spec->per_user_limit = row->per_user_limit;
    spec->partitions = row->partitions;
    spec->min_chunk = row->min_chunk;
    spec->max_chunk = row->max_chunk;
    return 0;
}

/* Runs one catalog request. 0 with *rep and *row (when *nrows) filled and
 * rep->status SH_OK; -1 with *f filled otherwise (unknown SKU, conflict, no
 * worker). */
static int sch_admin_catalog(sch_admin *a, const sh_wire_catalog_req *req, sh_wire_catalog_rep *rep,
                             sh_wire_sku *row, size_t *nrows, sch_fail *f)
{
    if (a->ctx->sync == NULL) {
        sch_failf(f, "internal", "no sync worker links");
        return -1;
    }
    char why[SCH_ADMIN_MESSAGE_BYTES];
    sh_err rc = sch_sync_catalog(a->ctx->sync, req, rep, row, nrows, why, sizeof why);
    if (rc != SH_OK) {
        sch_failf(f, "unavailable", "the catalog (MySQL) did not answer: %s", why);
        SH_WARN("admin", "catalog request failed sku=%s err=%s why=\"%s\"", req->sku.sku_id,
                sh_strerror(rc), why);
        return -1;
    }
    switch (rep->status) {
    case SH_OK:
        if (req->op != SH_WIRE_CAT_LIST && *nrows != 1) {
            sch_failf(f, "internal", "the catalog answered without the row of %s", req->sku.sku_id);
            return -1;
        }
        return 0;
    case SH_ENOTFOUND:
        sch_failf(f, "unknown_sku", "no SKU '%s' in the catalog (MySQL)%s", req->sku.sku_id,
                  req->op == SH_WIRE_CAT_GET ? "; give total and partitions to create it" : "");
        return -1;
    case SH_EEXIST:
        sch_failf(f, req->op == SH_WIRE_CAT_RESTOCK ? "restock_conflict" : "catalog_conflict", "%s",
                  rep->message);
        return -1;
    case SH_EINVAL:
    case SH_ERANGE:
        sch_failf(f, "bad_request", "the catalog refused it: %s (%s)", rep->message,
                  sh_strerror(rep->status));
        return -1;
    default:
        sch_failf(f, "internal", "the catalog answered %s: %s", sh_strerror(rep->status),
                  rep->message);
        return -1;
    }
}

/* Appends "; "-separated text to a note. */
static void sch_admin_note(char *note, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void sch_admin_note(char *note, size_t cap, const char *fmt, ...)
{
    size_t used = strnlen(note, cap);
    if (used + 3 >= cap) {
        return;
    }
    if (used > 0) {
        memcpy(note + used, ", ", 3);
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(note + used, cap - used, fmt, ap);
    va_end(ap);
}

/* The fields of a load request that the stored row does not match. */
static void sch_admin_load_diff(const sch_admin_load *l, const sh_wire_sku *row, char *note,
                                size_t cap)
{
    const sch_sku_spec *q = &l->spec;
    if (row->total != q->total) {
        sch_admin_note(note, cap, "total %" PRId64 " (asked %" PRId64 ")", row->total, q->total);
    }
    if (row->partitions != q->partitions) {
        sch_admin_note(note, cap, "partitions %u (asked %u)", (unsigned)row->partitions,
                       (unsigned)q->partitions);
    }
    if (l->has_min && row->min_chunk != q->min_chunk) {
        sch_admin_note(note, cap, "min_chunk %u (asked %u)", row->min_chunk, q->min_chunk);
    }
    if (l->has_max && row->max_chunk != q->max_chunk) {
        sch_admin_note(note, cap, "max_chunk %u (asked %u)", row->max_chunk, q->max_chunk);
    }
    if (l->has_start && row->start_ms != q->start_ms) {
        sch_admin_note(note, cap, "start_ms %" PRId64 " (asked %" PRId64 ")", row->start_ms,
                       q->start_ms);
    }
    if (l->has_pul && row->per_user_limit != q->per_user_limit) {
        sch_admin_note(note, cap, "per_user_limit %u (asked %u)", row->per_user_limit,
                       q->per_user_limit);
    }
    if (l->has_name && strcmp(row->name, q->name) != 0) {
        sch_admin_note(note, cap, "name \"%.40s\" (asked \"%.40s\")", row->name, q->name);
    }
}

/* sku_load: the catalog row is the truth. With total and partitions the row is
 * created if absent (UPSERT); without them it must exist (GET). Either way the
 * STORED row is what the pool loads, so loading again, with the same or with
 * other numbers, changes nothing (and says so). A crash between the two steps
 * heals on the next load: the row is there, the pool is created from it. */
static cJSON *sch_admin_cmd_sku_load(sch_admin *a, const cJSON *req, sch_fail *f)
{
    sch_admin_load l;
    if (sch_admin_parse_load(req, &l, f) != 0) {
        return NULL;
    }
    if (a->ctx->pool == NULL || a->ctx->reg == NULL) {
        sch_failf(f, "internal", "the pool is not available");
        return NULL;
    }
    sh_wire_catalog_req creq;
    memset(&creq, 0, sizeof creq);
    if (l.has_row) {
        creq.op = SH_WIRE_CAT_UPSERT;
        sch_admin_spec_to_row(&l.spec, &creq.sku);
    } else {
        creq.op = SH_WIRE_CAT_GET;
        sh_err rc = sh_wire_str_set(creq.sku.sku_id, sizeof creq.sku.sku_id, &creq.sku.sku_id_len,
                                    l.spec.id, strlen(l.spec.id));
        SH_ASSERT(rc == SH_OK);
    }
    sh_wire_catalog_rep crep;
    sh_wire_sku row;
    size_t nrows = 0;
    if (sch_admin_catalog(a, &creq, &crep, &row, &nrows, f) != 0) {
        return NULL;
    }
    int row_created = l.has_row && crep.applied;
    sch_sku_spec spec;
    if (sch_admin_row_to_spec(&row, l.spec.id, &spec, f) != 0) {
        return NULL;
    }
    char note[SCH_ADMIN_MESSAGE_BYTES] = "";
    if (l.has_row && !row_created) {
        char diff[SCH_ADMIN_MESSAGE_BYTES] = "";
        sch_admin_load_diff(&l, &row, diff, sizeof diff);
        if (diff[0] != '\0') {
            snprintf(note, sizeof note, "the catalog row already existed and was kept: %.200s",
                     diff);
        }
    }

    int created = 0;
    char msg[SCH_ADMIN_MESSAGE_BYTES] = "";
    sh_err rc = sch_pool_load_sku(a->ctx->pool, a->ctx->reg, &spec, &created, msg, sizeof msg);
    msg[sizeof msg - 1] = '\0';
    if (rc != SH_OK) {
        /* Refusals of the request itself are the caller's to fix; the rest
         * (Redis, cluster, memory) are ours. */
        int theirs = rc == SH_EINVAL || rc == SH_ERANGE || rc == SH_ELIMIT || rc == SH_EEXIST;
        sch_failf(f, theirs ? "bad_request" : "internal", "sku load %s: %s%s%s", spec.id,
                  sh_strerror(rc), msg[0] ? ": " : "", msg);
        SH_WARN("admin", "sku load failed sku=%s rc=%s msg=\"%s\"", spec.id, sh_strerror(rc), msg);
        return NULL;
    }
    const sch_sku *s = sch_registry_find(a->ctx->reg, spec.id, strlen(spec.id));
    if (s != NULL && !created && (s->total != spec.total || s->nparts != spec.partitions)) {
        /* A restock applied in the catalog but not (yet) in the pool, or a pool
         * made before the catalog held the row. */
        char d[SCH_ADMIN_MESSAGE_BYTES];
        snprintf(d, sizeof d,
                 "Redis holds total %" PRId64 " in %u partitions, the catalog row total %" PRId64
                 " in %u",
                 s->total, (unsigned)s->nparts, spec.total, (unsigned)spec.partitions);
        sch_admin_note(note, sizeof note, "%s", d);
    }
    SH_INFO("admin",
            "sku load sku=%s created=%d row_created=%d total=%" PRId64 " partitions=%u note=\"%s\"",
            spec.id, created ? 1 : 0, row_created, spec.total, (unsigned)spec.partitions, note);
    cJSON *r = sch_json_reply_ok(f);
    if (r == NULL) {
        return NULL;
    }
    if (sch_json_bool(r, "created", created) != 0 ||
        sch_json_bool(r, "row_created", row_created) != 0 ||
        cJSON_AddStringToObject(r, "sku", spec.id) == NULL ||
        sch_json_i64(r, "total", s != NULL ? s->total : spec.total) != 0 ||
        sch_json_i64(r, "partitions", s != NULL ? s->nparts : spec.partitions) != 0 ||
        sch_json_i64(r, "catalog_total", spec.total) != 0 ||
        (note[0] != '\0' && cJSON_AddStringToObject(r, "note", note) == NULL)) {
        cJSON_Delete(r);
        sch_failf(f, "internal", "out of memory");
        return NULL;
    }
    return r;
}

/* sku_restock: units to sku.total once per restock id (the catalog), then to
 * the pool once per restock id (Redis). The Redis step runs also when the
 * catalog says "already applied", so a crash between the two heals when the
 * operator repeats the command; each step is idempotent by the id. */
static cJSON *sch_admin_cmd_sku_restock(sch_admin *a, const cJSON *req, sch_fail *f)
{
    static const char *const keys[] = {"cmd", "sku", "units", "restock_id"};
    if (sch_admin_check_keys(req, keys, sizeof keys / sizeof keys[0], f) != 0) {
        return NULL;
    }
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    int64_t units = 0;
    if (sch_admin_get_sku(req, sku, sizeof sku, f) != 0 ||
        sch_admin_get_int(req, "units", 1, SH_SKU_TOTAL_UNITS_MAX, NULL, &units, f) != 0) {
        return NULL;
    }
    const cJSON *rid = cJSON_GetObjectItemCaseSensitive(req, "restock_id");
    if (rid == NULL) {
        sch_failf(f, "bad_request", "missing field 'restock_id'");
        return NULL;
    }
    if (!cJSON_IsString(rid) || rid->valuestring == NULL ||
        sh_id_check_order(rid->valuestring, strlen(rid->valuestring)) != SH_OK) {
        sch_failf(f, "bad_request",
                  "'restock_id' must be a string of 1..%d characters of [A-Za-z0-9_.:-]",
                  SH_RESTOCK_ID_CHARS_MAX);
        return NULL;
    }
    _Static_assert(SH_ORDER_ID_CHARS_MAX <= SH_RESTOCK_ID_CHARS_MAX,
                   "a restock id checked like an order id fits the restock table");
    const char *restock_id = rid->valuestring;
    if (a->ctx->pool == NULL || a->ctx->reg == NULL) {
        sch_failf(f, "internal", "the pool is not available");
        return NULL;
    }
    /* Loaded first: a restock of a SKU the pool does not hold would change the
     * catalog and leave Redis behind with nothing to heal it. */
    sch_sku *s = sch_registry_find(a->ctx->reg, sku, strlen(sku));
    if (s == NULL) {
        sch_failf(f, "unknown_sku", "SKU '%s' is not loaded (sku load it first)", sku);
        return NULL;
    }
    sh_wire_catalog_req creq;
    memset(&creq, 0, sizeof creq);
    creq.op = SH_WIRE_CAT_RESTOCK;
    creq.units = units;
    sh_err rc = sh_wire_str_set(creq.sku.sku_id, sizeof creq.sku.sku_id, &creq.sku.sku_id_len, sku,
                                strlen(sku));
    SH_ASSERT(rc == SH_OK);
    rc = sh_wire_str_set(creq.restock_id, sizeof creq.restock_id, &creq.restock_id_len, restock_id,
                         strlen(restock_id));
    SH_ASSERT(rc == SH_OK);
    sh_wire_catalog_rep crep;
    sh_wire_sku row;
    size_t nrows = 0;
    if (sch_admin_catalog(a, &creq, &crep, &row, &nrows, f) != 0) {
        return NULL;
    }
    int catalog_applied = crep.applied;
    int pool_applied = 0;
    rc = sch_pool_restock(a->ctx->pool, s, restock_id, units, &pool_applied);
    if (rc != SH_OK) {
        sch_failf(f, "internal",
                  "restock %s: the catalog holds it%s, the pool failed (%s); repeat the "
                  "same command to finish it",
                  restock_id, catalog_applied ? " now" : "", sh_strerror(rc));
        SH_WARN("admin", "restock pool step failed sku=%s id=%s err=%s", sku, restock_id,
                sh_strerror(rc));
        return NULL;
    }
    /* The registry's copy of the pool follows the script's answer, refreshed
     * from Redis so a restock applied by an earlier, crashed attempt shows. */
    (void)sch_pool_refresh(a->ctx->pool, s);
    SH_INFO("admin",
            "restock sku=%s id=%s units=%" PRId64 " catalog_applied=%d pool_applied=%d "
            "total=%" PRId64,
            sku, restock_id, units, catalog_applied, pool_applied, s->total);
    cJSON *r = sch_json_reply_ok(f);
    if (r == NULL) {
        return NULL;
    }
    if (cJSON_AddStringToObject(r, "sku", sku) == NULL ||
        cJSON_AddStringToObject(r, "restock_id", restock_id) == NULL ||
        sch_json_i64(r, "units", units) != 0 ||
        sch_json_bool(r, "applied", catalog_applied || pool_applied) != 0 ||
        sch_json_bool(r, "catalog_applied", catalog_applied) != 0 ||
        sch_json_bool(r, "pool_applied", pool_applied) != 0 ||
        sch_json_i64(r, "total", s->total) != 0 ||
        sch_json_i64(r, "catalog_total", row.total) != 0) {
        cJSON_Delete(r);
        sch_failf(f, "internal", "out of memory");
        return NULL;
    }
    return r;
}

/* ---- commands on the operator thread -------------------------------------
 * The audit (sch_audit.h) runs on the operator thread (sch_jobs.h): the
 * command only takes what the loop thread knows, queues the job and answers
 * when it is done. Meanwhile that client's next lines wait; other clients and
 * every deduction go on. */

static int sch_admin_send(sch_admin_client *c, cJSON *reply, const sch_fail *f);
static void sch_admin_client_pump(sch_admin_client *c);
static void sch_admin_client_free(sch_admin_client *c);

/* sch_jobs' done callback: the reply of c's running command. */
static void sch_admin_job_done(void *owner, cJSON *reply, const sch_fail *f)
{
    sch_admin_client *c = owner;
    c->job = NULL;
    if (sch_admin_send(c, reply, f) != 0) {
        return;
    }
    if (!c->eof && !c->paused && bufferevent_enable(c->bev, EV_READ) != 0) {
        sch_admin_client_free(c);
        return;
    }
    sch_admin_client_pump(c); /* the lines that waited behind it */
}

static cJSON *sch_admin_audit_job(const sch_job_env *env, void *arg, sch_fail *f)
{
    return sch_audit_run(env->router, env->sync, arg, f);
}

static void sch_admin_free_arg(void *arg, int closing)
{
    (void)closing;
    free(arg);
}

static int sch_admin_start_audit(sch_admin *a, sch_admin_client *c, const cJSON *req, sch_fail *f)
{
    static const char *const keys[] = {"cmd", "sku", "max_pending_age_ms"};
    if (sch_admin_check_keys(req, keys, 3, f) != 0) {
        return -1;
    }
    int present = 0;
    int64_t age_max = SH_AUDIT_PENDING_AGE_MS_MAX;
    if (sch_admin_get_int(req, "max_pending_age_ms", 1, SH_AUDIT_PENDING_AGE_MS_MAX, &present,
                          &age_max, f) != 0) {
        return -1;
    }
    sch_audit_input *in = calloc(1, sizeof *in);
    if (in == NULL) {
        sch_failf(f, "internal", "out of memory");
        return -1;
    }
    if (sch_admin_get_sku(req, in->sku, sizeof in->sku, f) != 0) {
        free(in);
        return -1;
    }
    in->pending_part = -1;
    in->pending_age_ms_max = present ? (uint64_t)age_max : SH_AUDIT_PENDING_AGE_MS_MAX;
    const sch_sku *s = sch_registry_find(a->ctx->reg, in->sku, strlen(in->sku));
    uint64_t now = sh_clock_mono_ms();
    for (uint16_t i = 0; s != NULL && s->parts != NULL && i < s->nparts; i++) {
        uint64_t since = s->parts[i].pending_since_ms;
        if (since != 0 && now - since > in->pending_age_ms) {
            in->pending_age_ms = now - since;
            in->pending_part = i;
        }
    }
    sh_err rc = sch_jobs_submit(a->jobs, sch_admin_audit_job, in, sch_admin_free_arg,
                                sch_admin_job_done, c, &c->job);
    if (rc != SH_OK) {
        free(in);
        sch_failf(f, "busy", "%d operator commands are queued already; try again later",
                  SH_AUDIT_QUEUE_MAX);
        return -1;
    }
    return 0;
}

/* db_migrate: a sync worker applies the schema migrations it carries (catalog
 * op MIGRATE) and answers the version before and after. Idempotent: a second
 * call answers the same version twice. A database newer than the worker is
 * refused with both versions named (code "schema_too_new"). */
static cJSON *sch_admin_cmd_db_migrate(sch_admin *a, const cJSON *req, sch_fail *f)
{
    static const char *const keys[] = {"cmd"};
    if (sch_admin_check_keys(req, keys, 1, f) != 0) {
        return NULL;
    }
    if (a->ctx->sync == NULL) {
        sch_failf(f, "internal", "no sync worker links");
        return NULL;
    }
    sh_wire_catalog_req creq;
    memset(&creq, 0, sizeof creq);
    creq.op = SH_WIRE_CAT_MIGRATE;
    sh_wire_catalog_rep crep;
    sh_wire_sku row; /* MIGRATE answers no row */
    size_t nrows = 0;
    char why[SCH_ADMIN_MESSAGE_BYTES];
    sh_err rc = sch_sync_catalog(a->ctx->sync, &creq, &crep, &row, &nrows, why, sizeof why);
    if (rc != SH_OK) {
        sch_failf(f, "unavailable", "no sync worker answered the migration: %s", why);
        SH_WARN("admin", "db migrate failed err=%s why=\"%s\"", sh_strerror(rc), why);
        return NULL;
    }
    if (crep.status != SH_OK) {
        sch_failf(f, crep.status == SH_ERANGE ? "schema_too_new" : "migration_failed", "%s (%s)",
                  crep.message, sh_strerror(crep.status));
        SH_WARN("admin", "db migrate refused status=%s message=\"%s\"", sh_strerror(crep.status),
                crep.message);
        return NULL;
    }
    SH_INFO("admin", "db migrate schema_before=%u schema_after=%u", crep.schema_before,
            crep.schema_after);
    cJSON *r = sch_json_reply_ok(f);
    if (r == NULL) {
        return NULL;
    }
    if (sch_json_u64(r, "schema_before", crep.schema_before) != 0 ||
        sch_json_u64(r, "schema_after", crep.schema_after) != 0 ||
        sch_json_bool(r, "applied", crep.applied) != 0) {
        cJSON_Delete(r);
        sch_failf(f, "internal", "out of memory");
        return NULL;
    }
    return r;
}

static cJSON *sch_admin_cmd_stats(sch_admin *a, const cJSON *req, sch_fail *f)
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
    cJSON *r = sch_json_reply_ok(f);
    if (r == NULL) {
        return NULL;
    }
    const unsigned char *base = (const unsigned char *)&a->ctx->stats;
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        uint64_t v;
        memcpy(&v, base + counters[i].offset, sizeof v);
        if (sch_json_u64(r, counters[i].name, v) != 0) {
            goto oom;
        }
    }
    if (sch_json_u64(r, "skus", a->ctx->reg ? sch_registry_count(a->ctx->reg) : 0) != 0 ||
        sch_json_u64(r, "admin_clients", a->nclients) != 0 ||
        sch_json_u64(r, "lease_epoch", a->ctx->lease_epoch) != 0) {
        goto oom;
    }
    return r;
oom:
    cJSON_Delete(r);
    sch_failf(f, "internal", "out of memory");
    return NULL;
}

/* ---- partition reconcile ------------------------------------------------------
 * {"sku", "partition"}: repairs a diverged partition (sch_reconcile.h) on the
 * operator thread, with that thread's router and sync link: it reads every
 * MySQL detail and every order record of the partition. Back on the loop
 * thread the SKU is refreshed in the registry (even when the client has gone)
 * so routing sees the partition open. The reply says what changed. */

static cJSON *sch_admin_reconcile_json(const char *sku, unsigned part, const sch_reconcile_out *o,
                                       sch_fail *f)
{
    cJSON *r = sch_json_reply_ok(f);
    if (r == NULL) {
        return NULL;
    }
    if (cJSON_AddStringToObject(r, "sku", sku) == NULL || sch_json_i64(r, "partition", part) != 0 ||
        cJSON_AddStringToObject(r, "reconcile_id", o->id) == NULL ||
        sch_json_u64(r, "mysql_synced_seq", o->mysql_synced_seq) != 0 ||
        sch_json_u64(r, "mysql_max_seq", o->mysql_max_seq) != 0 ||
        sch_json_u64(r, "redis_seq_before", o->redis_seq_before) != 0 ||
        sch_json_u64(r, "redis_ack_before", o->redis_ack_before) != 0 ||
        sch_json_u64(r, "kept_from_mysql", o->kept_from_mysql) != 0 ||
        sch_json_u64(r, "renumbered", o->renumbered) != 0 ||
        sch_json_u64(r, "renumbered_first", o->renumbered_first) != 0 ||
        sch_json_u64(r, "renumbered_last", o->renumbered_last) != 0 ||
        sch_json_u64(r, "seq_after", o->seq_after) != 0 ||
        sch_json_u64(r, "dropped_duplicates", o->dropped_duplicates) != 0 ||
        sch_json_u64(r, "records_restored", o->records_restored) != 0 ||
        sch_json_u64(r, "records_fixed", o->records_fixed) != 0 ||
        sch_json_u64(r, "grants_finished", o->grants_finished) != 0 ||
        sch_json_i64(r, "ded_before", o->ded_before) != 0 ||
        sch_json_i64(r, "ded_after", o->ded_after) != 0 ||
        sch_json_i64(r, "units_from_partition", o->from_partition) != 0 ||
        sch_json_i64(r, "units_from_pool", o->from_pool) != 0 ||
        sch_json_i64(r, "units_given_back", o->given_back) != 0 ||
        sch_json_i64(r, "oversold", o->oversold) != 0 ||
        sch_json_u64(r, "grant_id", o->grant_id) != 0 ||
        sch_json_u64(r, "claims_set", o->claims_set) != 0 ||
        sch_json_u64(r, "claims_elsewhere", o->claims_elsewhere) != 0 ||
        sch_json_u64(r, "user_entries_fixed", o->user_entries_fixed) != 0 ||
        sch_json_u64(r, "mysql_synced_after", o->mysql_synced_after) != 0 ||
        sch_json_bool(r, "mysql_moved", o->mysql_moved) != 0 ||
        sch_json_bool(r, "already_applied", o->already) != 0 ||
        sch_json_i64(r, "attempts", o->attempts) != 0 ||
        sch_json_bool(r, "reopened", o->reopened) != 0) {
        cJSON_Delete(r);
        sch_failf(f, "internal", "out of memory");
        return NULL;
    }
    return r;
}

/* One reconcile: what the job needs, taken on the loop thread. */
typedef struct sch_admin_reconcile_job {
    sch_admin *admin;
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    unsigned part;
    sch_reconcile_opts opts;
} sch_admin_reconcile_job;

static cJSON *sch_admin_reconcile_run(const sch_job_env *env, void *arg, sch_fail *f)
{
    sch_admin_reconcile_job *j = arg;
    sch_reconcile_out out;
    char why[SCH_FAIL_MESSAGE_BYTES];
    sh_err rc =
        sch_reconcile_run(env->router, env->sync, &j->opts, j->sku, j->part, &out, why, sizeof why);
    if (rc != SH_OK) {
        sch_failf(f, out.error != NULL ? out.error : "internal", "%s", why);
        return NULL;
    }
    return sch_admin_reconcile_json(j->sku, j->part, &out, f);
}

/* Loop thread, after the job (whether or not its client is still there). */
static void sch_admin_reconcile_finish(void *arg, int closing)
{
    sch_admin_reconcile_job *j = arg;
    sch_ctx *ctx = j->admin->ctx;
    sch_sku *s =
        !closing && ctx->reg != NULL ? sch_registry_find(ctx->reg, j->sku, strlen(j->sku)) : NULL;
    if (s != NULL && ctx->pool != NULL) {
        (void)sch_pool_refresh(ctx->pool, s); /* routing sees it open (or still diverged) */
    }
    free(j);
}

static int sch_admin_start_reconcile(sch_admin *a, sch_admin_client *c, const cJSON *req,
                                     sch_fail *f)
{
    static const char *const keys[] = {"cmd", "sku", "partition"};
    if (sch_admin_check_keys(req, keys, sizeof keys / sizeof keys[0], f) != 0) {
        return -1;
    }
    sch_admin_reconcile_job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        sch_failf(f, "internal", "out of memory");
        return -1;
    }
    int64_t part = 0;
    if (sch_admin_get_sku(req, j->sku, sizeof j->sku, f) != 0 ||
        sch_admin_get_int(req, "partition", 0, SH_PARTITIONS_PER_SKU_MAX - 1, NULL, &part, f) !=
            0) {
        free(j);
        return -1;
    }
    const sch_config *cfg = a->ctx->cfg;
    j->admin = a;
    j->part = (unsigned)part;
    j->opts =
        (sch_reconcile_opts){.epoch = a->ctx->lease_epoch,
                             .durable = cfg != NULL && strcmp(cfg->pool_durability, "replica") == 0,
                             .wait_ms = cfg != NULL ? (uint32_t)cfg->pool_wait_timeout_ms : 0};
    if (sch_jobs_submit(a->jobs, sch_admin_reconcile_run, j, sch_admin_reconcile_finish,
                        sch_admin_job_done, c, &c->job) != SH_OK) {
        free(j);
        sch_failf(f, "busy", "%d operator commands are queued already; try again later",
                  SH_AUDIT_QUEUE_MAX);
        return -1;
    }
    return 0;
}

/* A command answers at once (run) or later, from the operator thread (start:
 * 0 when its job was queued, -1 with *f set otherwise). */
static const struct {
    const char *name;
    cJSON *(*run)(sch_admin *a, const cJSON *req, sch_fail *f);
    int (*start)(sch_admin *a, sch_admin_client *c, const cJSON *req, sch_fail *f);
} sch_admin_commands[] = {
    {"registry", sch_admin_cmd_registry, NULL},
    {"sku_load", sch_admin_cmd_sku_load, NULL},
    {"sku_restock", sch_admin_cmd_sku_restock, NULL},
    {"audit", NULL, sch_admin_start_audit},
    {"stats", sch_admin_cmd_stats, NULL},
    {"db_migrate", sch_admin_cmd_db_migrate, NULL},
    {"partition_reconcile", NULL, sch_admin_start_reconcile},
};

/* Parses one request line and returns its reply, or NULL with *f set; NULL
 * with c->job set when the command went to the operator thread. */
static cJSON *sch_admin_dispatch(sch_admin_client *c, const char *line, size_t len, sch_fail *f)
{
    sch_admin *a = c->admin;
    if (memchr(line, '\0', len) != NULL) {
        sch_failf(f, "bad_request", "NUL byte in request");
        return NULL;
    }
    size_t blank = 0;
    while (blank < len && (line[blank] == ' ' || line[blank] == '\t' || line[blank] == '\r')) {
        blank++;
    }
    if (blank == len) {
        sch_failf(f, "bad_request", "empty request line");
        return NULL;
    }
    const char *end = NULL;
    cJSON *req = cJSON_ParseWithLengthOpts(line, len, &end, 0);
    if (req == NULL) {
        sch_failf(f, "bad_request", "malformed JSON");
        return NULL;
    }
    /* cJSON accepts trailing garbage (LIBRARY-NOTES 6): only whitespace may follow. */
    for (const char *p = end; p != NULL && p < line + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            cJSON_Delete(req);
            sch_failf(f, "bad_request", "trailing characters after the JSON object");
            return NULL;
        }
    }
    cJSON *reply = NULL;
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd");
    if (!cJSON_IsObject(req)) {
        sch_failf(f, "bad_request", "the request must be a JSON object");
    } else if (cmd == NULL) {
        sch_failf(f, "bad_request", "missing field 'cmd'");
    } else if (!cJSON_IsString(cmd) || cmd->valuestring == NULL) {
        sch_failf(f, "bad_request", "'cmd' must be a string");
    } else {
        size_t i;
        for (i = 0; i < sizeof sch_admin_commands / sizeof sch_admin_commands[0]; i++) {
            if (strcmp(cmd->valuestring, sch_admin_commands[i].name) == 0) {
                if (sch_admin_commands[i].run != NULL) {
                    reply = sch_admin_commands[i].run(a, req, f);
                } else {
                    (void)sch_admin_commands[i].start(a, c, req, f);
                }
                break;
            }
        }
        if (i == sizeof sch_admin_commands / sizeof sch_admin_commands[0]) {
            sch_failf(f, "unknown_command",
                      "unknown command '%.64s' (registry, sku_load, sku_restock, audit, "
                      "stats, db_migrate, partition_reconcile)",
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
    if (c->job != NULL) {
        sch_jobs_forget(c->job); /* it runs to its end; its reply is dropped */
    }
    bufferevent_free(c->bev);
    free(c);
}

/* Queues the reply (or f's error) for c. Returns -1 when the client had to be
 * dropped (its output could not grow): c is freed then. */
static int sch_admin_send(sch_admin_client *c, cJSON *reply, const sch_fail *f)
{
    static const char oom_reply[] =
        "{\"ok\":false,\"error\":\"internal\",\"message\":\"out of memory\"}\n";
    if (reply == NULL) {
        reply = cJSON_CreateObject();
        if (reply != NULL && (sch_json_bool(reply, "ok", 0) != 0 ||
                              cJSON_AddStringToObject(reply, "error", f->code) == NULL ||
                              cJSON_AddStringToObject(reply, "message", f->message) == NULL)) {
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

/* Answers one line: 0 answered, 1 the command went to the operator thread
 * (c waits for it, reading stopped), -1 the client was dropped (c is freed). */
static int sch_admin_answer(sch_admin_client *c, const char *line, size_t len)
{
    sch_fail f = {"internal", "out of memory"};
    cJSON *reply = sch_admin_dispatch(c, line, len, &f);
    if (reply == NULL && c->job != NULL) {
        bufferevent_disable(c->bev, EV_READ);
        return 1;
    }
    return sch_admin_send(c, reply, &f);
}

/* Answers every complete line buffered, while the queued output stays under
 * SCH_ADMIN_OUT_PAUSE_BYTES; then either waits for more input, pauses reading
 * until the output drains, or (after EOF) closes once the output is flushed.
 * May free c. */
static void sch_admin_client_pump(sch_admin_client *c)
{
    if (c->job != NULL) {
        return; /* its reply comes first: sch_admin_job_done pumps again */
    }
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
            return; /* dropped, or waiting for the operator thread */
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
    sch_jobs_config jc = {.redis_seeds = ctx->cfg->redis_seeds,
                          .redis_timeout_ms = (uint32_t)ctx->cfg->redis_timeout_ms,
                          .sync_urls = ctx->cfg->sync_urls,
                          .sync_timeout_ms = (uint32_t)ctx->cfg->sync_timeout_ms};
    rc = sch_jobs_open(&a->jobs, ctx->base, &jc);
    if (rc != SH_OK) {
        SH_ERROR("admin", "cannot start the operator thread err=%s", sh_strerror(rc));
        evconnlistener_free(a->listener);
        unlink(a->path);
        free(a);
        return rc;
    }
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
    sch_jobs_close(a->jobs); /* after the clients: their jobs are forgotten, not freed */
    evconnlistener_free(a->listener);
    if (unlink(a->path) != 0 && errno != ENOENT) {
        SH_WARN("admin", "cannot remove the admin socket path=%s err=%s", a->path, strerror(errno));
    }
    free(a);
}
