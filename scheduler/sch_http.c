/* sch_http.c -- the HTTP API: parse, validate, find the SKU, answer in JSON.
 *
 * This is the only module that knows evhttp and cJSON. It refuses bad input
 * with a precise 400 before anything else looks at it: ids must be JSON
 * strings (64-bit ids lose precision as JSON doubles) of the sh_id alphabets
 * (an id becomes part of a hash-tagged Redis key, so a brace must never get
 * through), qty a JSON number that is an integer in 1..http.max_qty. What
 * passes goes to sch_route, which admits, routes and answers.
 *
 * libevent quirks handled here (LIBRARY-NOTES 4, 6): the body buffer is not
 * NUL-terminated, so it is parsed with a length and trailing bytes are checked
 * by hand (cJSON accepts trailing garbage); cJSON's plain lookup is case-
 * insensitive, so only ...CaseSensitive is used; a "\u0000" escape would
 * silently cut a cJSON string short, so a body holding one (or a raw NUL) is
 * refused. Bodies past SCH_HTTP_HARD_BODY_BYTES, headers past
 * SH_HTTP_HEADERS_BYTES_MAX and methods other than GET/POST are refused by
 * libevent itself with its own HTML page (413, 400, 501): it cannot be told
 * to write those as JSON, so our JSON 413 covers bodies from
 * http.body_bytes_max up to the hard cap. */
#include "sch_http.h"

#include "sch_nodes.h"
#include "sh_id.h"
#include "sh_log.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HTTP_MESSAGE_BYTES_MAX 160 /* error message text we build */
#define HTTP_SKU_PREFIX        "/v1/skus/"

struct sch_http {
    sch_ctx *ctx;
    sch_route *route;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct evbuffer *out; /* reused for every answer; evhttp drains it */
};

/* ---- answers --------------------------------------------------------------- */

/* JSON string body of s (our ids, or a name from Redis): quotes, backslashes
 * and control bytes escaped; other bytes pass as they are. */
static void http_json_string(struct evbuffer *b, const char *s)
{
    evbuffer_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            evbuffer_add(b, esc, 2);
        } else if (*p < 0x20) {
            evbuffer_add_printf(b, "\\u%04x", *p);
        } else {
            evbuffer_add(b, p, 1);
        }
    }
    evbuffer_add(b, "\"", 1);
}

static struct evbuffer *http_out(sch_ctx *ctx, int *owned)
{
    if (ctx->http != NULL) {
        *owned = 0;
        return ctx->http->out;
    }
    *owned = 1;
    return evbuffer_new();
}

static void http_send(sch_ctx *ctx, struct evhttp_request *req, int code, const char *reason,
                      const char *content_type, struct evbuffer *b)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (evhttp_add_header(h, "Content-Type", content_type) != 0) {
        SH_WARN("http", "add header failed");
    }
    ctx->stats.http_requests++;
    evhttp_send_reply(req, code, reason, b);
}

static const char *http_reason(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 425:
        return "Too Early";
    case 429:
        return "Too Many Requests";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

static void http_count_error(sch_stats *st, int code, const char *error)
{
    switch (code) {
    case 400:
    case 413:
        st->bad_requests++;
        break;
    case 425:
        st->not_started++;
        break;
    case 429:
        st->rate_limited++;
        break;
    case 503:
        st->unavailable++;
        break;
    case 409:
        if (strcmp(error, "sold_out") == 0) {
            st->sold_out++;
        } else if (strcmp(error, "order_conflict") == 0) {
            st->conflicts++;
        } else if (strcmp(error, "user_limit") == 0) {
            st->user_limit++;
        }
        break;
    default:
        break;
    }
}

void sch_http_reply_error(sch_ctx *ctx, struct evhttp_request *req, int code, const char *error,
                          const char *message)
{
    sch_http_reply_error_reason(ctx, req, code, error, NULL, message);
}

void sch_http_reply_error_reason(sch_ctx *ctx, struct evhttp_request *req, int code,
                                 const char *error, const char *reason, const char *message)
{
    SH_ASSERT(ctx != NULL && req != NULL && error != NULL && message != NULL);
    SH_ASSERT(code >= 400 && code <= 599);
    int owned = 0;
    struct evbuffer *b = http_out(ctx, &owned);
    if (b == NULL) {
        /* Out of memory: still answer, with libevent's own body. */
        evhttp_send_error(req, 503, NULL);
        return;
    }
    evbuffer_add_printf(b, "{\"error\":");
    http_json_string(b, error);
    if (reason != NULL) {
        evbuffer_add_printf(b, ",\"reason\":");
        http_json_string(b, reason);
    }
    evbuffer_add_printf(b, ",\"message\":");
    http_json_string(b, message);
    evbuffer_add_printf(b, "}\n");
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (code == 503 || code == 429) {
        if (evhttp_add_header(h, "Retry-After", "1") != 0) {
            SH_WARN("http", "add header failed");
        }
    }
    http_count_error(&ctx->stats, code, error);
    http_send(ctx, req, code, http_reason(code), "application/json", b);
    if (owned) {
        evbuffer_free(b);
    }
}

/* Writes v in decimal at dst (room for 20 digits); returns the digit count. */
static size_t http_u64(char *dst, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++) {
        dst[i] = tmp[n - 1 - i];
    }
    return n;
}

#define HTTP_OK_HEAD  "{\"status\":\"ok\",\"partition\":"
#define HTTP_OK_SEQ   ",\"seq\":"
#define HTTP_OK_DUP   ",\"duplicate\":"
#define HTTP_OK_TRUE  "true}\n"
#define HTTP_OK_FALSE "false}\n"
#define HTTP_LIT(s)   (sizeof(s) - 1)
#define HTTP_OK_BYTES_MAX                                                                          \
    (HTTP_LIT(HTTP_OK_HEAD) + 20 + HTTP_LIT(HTTP_OK_SEQ) + 20 + HTTP_LIT(HTTP_OK_DUP) +            \
     HTTP_LIT(HTTP_OK_FALSE))

void sch_http_reply_ok(sch_ctx *ctx, struct evhttp_request *req, unsigned partition, uint64_t seq,
                       int duplicate)
{
    SH_ASSERT(ctx != NULL && req != NULL);
    int owned = 0;
    struct evbuffer *b = http_out(ctx, &owned);
    if (b == NULL) {
        evhttp_send_error(req, 503, NULL);
        return;
    }
    /* The one answer of every deduction: built by hand in one piece and
     * added with one evbuffer_add (printf's parsing and the evbuffer's
     * vprintf retry showed in profiles). Same bytes as the format
     * {"status":"ok","partition":%u,"seq":%llu,"duplicate":%s}\n. */
    char body[HTTP_OK_BYTES_MAX];
    size_t n = 0;
    memcpy(body + n, HTTP_OK_HEAD, HTTP_LIT(HTTP_OK_HEAD));
    n += HTTP_LIT(HTTP_OK_HEAD);
    n += http_u64(body + n, partition);
    memcpy(body + n, HTTP_OK_SEQ, HTTP_LIT(HTTP_OK_SEQ));
    n += HTTP_LIT(HTTP_OK_SEQ);
    n += http_u64(body + n, seq);
    memcpy(body + n, HTTP_OK_DUP, HTTP_LIT(HTTP_OK_DUP));
    n += HTTP_LIT(HTTP_OK_DUP);
    if (duplicate) {
        memcpy(body + n, HTTP_OK_TRUE, HTTP_LIT(HTTP_OK_TRUE));
        n += HTTP_LIT(HTTP_OK_TRUE);
    } else {
        memcpy(body + n, HTTP_OK_FALSE, HTTP_LIT(HTTP_OK_FALSE));
        n += HTTP_LIT(HTTP_OK_FALSE);
    }
    SH_ASSERT(n <= sizeof body);
    if (evbuffer_add(b, body, n) != 0) {
        SH_WARN("http", "evbuffer_add failed");
    }
    http_send(ctx, req, 200, "OK", "application/json", b);
    if (owned) {
        evbuffer_free(b);
    }
}

/* ---- body parsing ---------------------------------------------------------- */

/* Whether buf[0..len) holds a NUL byte or a "\u0000" escape. */
static int http_has_nul(const char *buf, size_t len)
{
    if (memchr(buf, '\0', len) != NULL) {
        return 1;
    }
    for (size_t i = 0; i + 6 <= len; i++) {
        if (buf[i] == '\\' && buf[i + 1] == 'u' && memcmp(buf + i + 2, "0000", 4) == 0) {
            return 1;
        }
    }
    return 0;
}

/* One field of a request body as the checks below see it, whichever parser
 * read it. A string's bytes stay where the parser left them (the body
 * buffer or the cJSON tree) until the request has been handed on. */
typedef enum http_kind {
    HTTP_ABSENT = 0,
    HTTP_STRING = 1,
    HTTP_NUMBER = 2,
    HTTP_OTHER = 3, /* any other JSON type */
} http_kind;

typedef struct http_field {
    const char *name; /* in */
    http_kind kind;
    const char *str; /* HTTP_STRING: the bytes, len of them */
    size_t len;
    double num; /* HTTP_NUMBER */
} http_field;

#define HTTP_FIELDS_MAX  4 /* fields a handler reads */
#define HTTP_FAST_DIGITS 9 /* numbers the fast path reads: exact as doubles */
#define HTTP_IS_SPACE(c) ((c) == ' ' || (c) == '\t' || (c) == '\r' || (c) == '\n')

/* Reads a plain JSON string at *pp ('"' ... '"', no backslash, no control
 * byte); returns its length and moves *pp past it, or returns -1. */
static long http_flat_string(const char **pp, const char *end, const char **out)
{
    const char *p = *pp;
    if (p >= end || *p != '"') {
        return -1;
    }
    const char *s = ++p;
    while (p < end && *p != '"') {
        if ((unsigned char)*p < 0x20 || *p == '\\') {
            return -1;
        }
        p++;
    }
    if (p >= end) {
        return -1;
    }
    *out = s;
    *pp = p + 1;
    return (long)(p - s);
}

/* The fast path for the bodies clients send: a flat JSON object whose keys
 * are plain strings and whose values are plain strings or integers of 1..9
 * digits without a leading zero, with only space, tab, CR and LF around the
 * tokens, nothing but those after the '}'. Fills the fields named in f (the
 * first occurrence of a key wins, as with cJSON) and returns 1; returns 0 for
 * any other body, which then goes to cJSON. On what it accepts cJSON builds
 * the same members with the same bytes and values, so the checks below give
 * the same answers either way; it only saves cJSON's allocations, about a
 * dozen per request. */
static int http_flat_scan(const char *buf, size_t len, http_field *f, size_t nf)
{
    const char *p = buf, *end = buf + len;
    while (p < end && HTTP_IS_SPACE(*p)) {
        p++;
    }
    if (p >= end || *p++ != '{') {
        return 0;
    }
    for (size_t i = 0; i < nf; i++) {
        f[i].kind = HTTP_ABSENT;
    }
    int first = 1;
    for (;;) {
        while (p < end && HTTP_IS_SPACE(*p)) {
            p++;
        }
        if (p < end && *p == '}' && first) {
            p++;
            break;
        }
        const char *key = NULL;
        long klen = http_flat_string(&p, end, &key);
        if (klen < 0) {
            return 0;
        }
        while (p < end && HTTP_IS_SPACE(*p)) {
            p++;
        }
        if (p >= end || *p++ != ':') {
            return 0;
        }
        while (p < end && HTTP_IS_SPACE(*p)) {
            p++;
        }
        http_field v = {NULL, HTTP_ABSENT, NULL, 0, 0};
        if (p < end && *p == '"') {
            long vlen = http_flat_string(&p, end, &v.str);
            if (vlen < 0) {
                return 0;
            }
            v.kind = HTTP_STRING;
            v.len = (size_t)vlen;
        } else if (p < end && *p >= '1' && *p <= '9') {
            long n = 0;
            int digits = 0;
            while (p < end && *p >= '0' && *p <= '9') {
                if (++digits > HTTP_FAST_DIGITS) {
                    return 0;
                }
                n = n * 10 + (*p++ - '0');
            }
            /* A number cJSON would read on into (1.5, 1e3) is not ours. */
            if (p < end && (*p == '.' || *p == 'e' || *p == 'E')) {
                return 0;
            }
            v.kind = HTTP_NUMBER;
            v.num = (double)n;
        } else {
            return 0;
        }
        for (size_t i = 0; i < nf; i++) {
            if (f[i].kind == HTTP_ABSENT && strlen(f[i].name) == (size_t)klen &&
                memcmp(f[i].name, key, (size_t)klen) == 0) {
                f[i].kind = v.kind;
                f[i].str = v.str;
                f[i].len = v.len;
                f[i].num = v.num;
                break;
            }
        }
        first = 0;
        while (p < end && HTTP_IS_SPACE(*p)) {
            p++;
        }
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        if (p < end && *p == '}') {
            p++;
            break;
        }
        return 0;
    }
    while (p < end && HTTP_IS_SPACE(*p)) {
        p++;
    }
    return p == end;
}

/* Reads the request body as one JSON object and the fields named in f.
 * Answers 400/413/503 itself and returns 0 on failure. On success returns 1
 * and sets *root to the cJSON tree the strings point into (NULL when the
 * fast path read the body); the caller frees it once done with the fields. */
static int http_body_fields(sch_http *h, struct evhttp_request *req, http_field *f, size_t nf,
                            cJSON **root_out)
{
    SH_ASSERT(nf >= 1 && nf <= HTTP_FIELDS_MAX && root_out != NULL);
    *root_out = NULL;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = in != NULL ? evbuffer_get_length(in) : 0;
    if (len > (size_t)h->ctx->cfg->http_body_bytes_max) {
        char msg[HTTP_MESSAGE_BYTES_MAX];
        snprintf(msg, sizeof msg, "the body is %zu bytes; at most %lld are accepted", len,
                 (long long)h->ctx->cfg->http_body_bytes_max);
        sch_http_reply_error(h->ctx, req, 413, "payload_too_large", msg);
        return 0;
    }
    if (len == 0) {
        sch_http_reply_error(h->ctx, req, 400, "invalid_request", "the body is empty");
        return 0;
    }
    const char *buf = (const char *)evbuffer_pullup(in, -1);
    if (buf == NULL) {
        sch_http_reply_error(h->ctx, req, 503, "unavailable", "out of memory");
        return 0;
    }
    if (http_has_nul(buf, len)) {
        sch_http_reply_error(h->ctx, req, 400, "invalid_request", "the body holds a NUL character");
        return 0;
    }
    if (http_flat_scan(buf, len, f, nf)) {
        return 1;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (root == NULL) {
        sch_http_reply_error(h->ctx, req, 400, "invalid_request", "the body is not valid JSON");
        return 0;
    }
    for (const char *p = end; p < buf + len; p++) {
        if (!HTTP_IS_SPACE(*p)) {
            cJSON_Delete(root);
            sch_http_reply_error(h->ctx, req, 400, "invalid_request",
                                 "the body holds characters after the JSON value");
            return 0;
        }
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        sch_http_reply_error(h->ctx, req, 400, "invalid_request", "the body must be a JSON object");
        return 0;
    }
    for (size_t i = 0; i < nf; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, f[i].name);
        f[i].str = NULL;
        f[i].len = 0;
        f[i].num = 0;
        if (v == NULL) {
            f[i].kind = HTTP_ABSENT;
        } else if (cJSON_IsString(v) && v->valuestring != NULL) {
            f[i].kind = HTTP_STRING;
            f[i].str = v->valuestring;
            f[i].len = strlen(v->valuestring);
        } else if (cJSON_IsNumber(v)) {
            f[i].kind = HTTP_NUMBER;
            f[i].num = v->valuedouble;
        } else {
            f[i].kind = HTTP_OTHER;
        }
    }
    *root_out = root;
    return 1;
}

typedef sh_err (*http_id_check)(const char *s, size_t len);

/* Checks field v as an id string checked by check. On failure writes the
 * reason into msg and returns 0. */
static int http_get_id(const http_field *v, http_id_check check, char *msg, size_t msglen)
{
    if (v->kind == HTTP_ABSENT) {
        snprintf(msg, msglen, "missing field: %s", v->name);
        return 0;
    }
    if (v->kind != HTTP_STRING) {
        snprintf(msg, msglen, "%s must be a JSON string", v->name);
        return 0;
    }
    sh_err rc = check(v->str, v->len);
    if (rc == SH_ERANGE) {
        snprintf(msg, msglen, "%s is longer than %d characters", v->name,
                 check == sh_id_check_sku ? SH_SKU_ID_CHARS_MAX : SH_ORDER_ID_CHARS_MAX);
        return 0;
    }
    if (rc != SH_OK) {
        snprintf(msg, msglen, "%s must be 1..%d characters of %s", v->name,
                 check == sh_id_check_sku ? SH_SKU_ID_CHARS_MAX : SH_ORDER_ID_CHARS_MAX,
                 check == sh_id_check_sku ? "[A-Za-z0-9_.-]" : "[A-Za-z0-9_.:-]");
        return 0;
    }
    return 1;
}

static int http_get_qty(const http_field *v, int64_t max_qty, uint32_t *out, char *msg,
                        size_t msglen)
{
    if (v->kind == HTTP_ABSENT) {
        snprintf(msg, msglen, "missing field: qty");
        return 0;
    }
    double d = v->num;
    if (v->kind != HTTP_NUMBER || !isfinite(d) || d != floor(d) || d < 1 || d > (double)max_qty) {
        snprintf(msg, msglen, "qty must be an integer JSON number in 1..%lld", (long long)max_qty);
        return 0;
    }
    *out = (uint32_t)d;
    return 1;
}

/* ---- handlers -------------------------------------------------------------- */

static void http_deduct(sch_http *h, struct evhttp_request *req)
{
    http_field f[HTTP_FIELDS_MAX] = {
        {.name = "sku"}, {.name = "order_id"}, {.name = "user_id"}, {.name = "qty"}};
    cJSON *root = NULL;
    if (!http_body_fields(h, req, f, HTTP_FIELDS_MAX, &root)) {
        return;
    }
    char msg[HTTP_MESSAGE_BYTES_MAX];
    sch_deduct_args a;
    memset(&a, 0, sizeof a);
    if (!http_get_id(&f[0], sh_id_check_sku, msg, sizeof msg) ||
        !http_get_id(&f[1], sh_id_check_order, msg, sizeof msg) ||
        !http_get_id(&f[2], sh_id_check_user, msg, sizeof msg) ||
        !http_get_qty(&f[3], h->ctx->cfg->http_max_qty, &a.qty, msg, sizeof msg)) {
        cJSON_Delete(root);
        sch_http_reply_error(h->ctx, req, 400, "invalid_request", msg);
        return;
    }
    a.order_id = f[1].str;
    a.order_id_len = f[1].len;
    a.user_id = f[2].str;
    a.user_id_len = f[2].len;
    sch_sku *s = sch_registry_find(h->ctx->reg, f[0].str, f[0].len);
    if (s == NULL) {
        cJSON_Delete(root);
        sch_http_reply_error(h->ctx, req, 404, "unknown_sku", "no such sku");
        return;
    }
    /* The route copies the ids before it returns. */
    sch_route_deduct(h->route, req, s, &a);
    cJSON_Delete(root);
}

static void http_release(sch_http *h, struct evhttp_request *req)
{
    http_field f[2] = {{.name = "sku"}, {.name = "order_id"}};
    cJSON *root = NULL;
    if (!http_body_fields(h, req, f, 2, &root)) {
        return;
    }
    char msg[HTTP_MESSAGE_BYTES_MAX];
    if (!http_get_id(&f[0], sh_id_check_sku, msg, sizeof msg) ||
        !http_get_id(&f[1], sh_id_check_order, msg, sizeof msg)) {
        cJSON_Delete(root);
        sch_http_reply_error(h->ctx, req, 400, "invalid_request", msg);
        return;
    }
    sch_sku *s = sch_registry_find(h->ctx->reg, f[0].str, f[0].len);
    if (s == NULL) {
        cJSON_Delete(root);
        sch_http_reply_error(h->ctx, req, 404, "unknown_sku", "no such sku");
        return;
    }
    sch_route_release(h->route, req, s, f[1].str, f[1].len);
    cJSON_Delete(root);
}

static void http_sku(sch_http *h, struct evhttp_request *req, const char *id)
{
    size_t len = strlen(id);
    if (sh_id_check_sku(id, len) != SH_OK) {
        sch_http_reply_error(h->ctx, req, 400, "invalid_request",
                             "the sku in the path must be 1..64 characters of [A-Za-z0-9_.-]");
        return;
    }
    sch_sku *s = sch_registry_find(h->ctx->reg, id, len);
    if (s == NULL) {
        sch_http_reply_error(h->ctx, req, 404, "unknown_sku", "no such sku");
        return;
    }
    sh_err rc = sch_pool_refresh(h->ctx->pool, s);
    if (rc != SH_OK) {
        SH_WARN("http", "sku refresh failed sku=%s err=%s", s->id, sh_strerror(rc));
        sch_http_reply_error(h->ctx, req, 503, "unavailable", "could not read the sku from Redis");
        return;
    }
    int64_t available = sch_sku_remaining(s);
    struct evbuffer *b = h->out;
    evbuffer_add_printf(b, "{\"sku\":");
    http_json_string(b, s->id);
    evbuffer_add_printf(b, ",\"name\":");
    http_json_string(b, s->name);
    evbuffer_add_printf(b,
                        ",\"total\":%" PRId64 ",\"available\":%" PRId64 ",\"sold\":%" PRId64
                        ",\"partitions\":%u,\"start_ms\":%" PRId64 ",\"per_user_limit\":%" PRIu32
                        "}\n",
                        s->total, available, s->total - available, (unsigned)s->nparts, s->start_ms,
                        s->per_user_limit);
    http_send(h->ctx, req, 200, "OK", "application/json", b);
}

static void http_healthz(sch_http *h, struct evhttp_request *req)
{
    struct evbuffer *b = h->out;
    evbuffer_add_printf(b, "{\"status\":\"ok\",\"skus\":%zu,\"nodes\":%d}\n",
                        sch_registry_count(h->ctx->reg),
                        h->ctx->nodes != NULL ? sch_nodes_count(h->ctx->nodes) : 0);
    http_send(h->ctx, req, 200, "OK", "application/json", b);
}

static void http_metric(struct evbuffer *b, const char *name, const char *type, const char *help,
                        uint64_t value)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type,
                        name, value);
}

static void http_metrics(sch_http *h, struct evhttp_request *req)
{
    const sch_stats *st = &h->ctx->stats;
    struct evbuffer *b = h->out;
    /* This request counts itself, as it is answered below. */
    http_metric(b, "stock_http_requests_total", "counter", "HTTP requests answered",
                st->http_requests + 1);
    http_metric(b, "stock_deduct_ok_total", "counter", "deductions answered 200, duplicates too",
                st->deduct_ok);
    http_metric(b, "stock_deduct_duplicates_total", "counter", "of which replayed duplicates",
                st->deduct_dup);
    http_metric(b, "stock_sold_out_total", "counter", "409 sold_out answers", st->sold_out);
    http_metric(b, "stock_order_conflicts_total", "counter", "409 order_conflict answers",
                st->conflicts);
    http_metric(b, "stock_user_limit_total", "counter", "409 user_limit answers", st->user_limit);
    http_metric(b, "stock_bad_requests_total", "counter", "400 and 413 answers", st->bad_requests);
    http_metric(b, "stock_unavailable_total", "counter", "503 answers", st->unavailable);
    http_metric(b, "stock_not_started_total", "counter", "425 answers", st->not_started);
    http_metric(b, "stock_rate_limited_total", "counter", "429 answers", st->rate_limited);
    http_metric(b, "stock_releases_total", "counter", "releases answered 200", st->releases);
    http_metric(b, "stock_node_messages_total", "counter", "messages sent to partition nodes",
                st->node_messages);
    http_metric(b, "stock_node_items_total", "counter", "items carried by those messages",
                st->node_items);
    http_metric(b, "stock_retries_total", "counter", "items re-routed after a refusal",
                st->retries);
    http_metric(b, "stock_grants_total", "counter", "grants completed", st->grants);
    http_metric(b, "stock_consolidations_total", "counter", "consolidations run",
                st->consolidations);
    http_metric(b, "stock_pending_requests", "gauge", "requests waiting for a node",
                sch_route_pending(h->route));
    sh_hist_summary sum;
    sh_hist_summarize(sch_route_latency(h->route), &sum);
    evbuffer_add_printf(b, "# HELP stock_deduct_latency_seconds deduction latency, admission to "
                           "answer\n# TYPE stock_deduct_latency_seconds summary\n");
    evbuffer_add_printf(b, "stock_deduct_latency_seconds{quantile=\"0.5\"} %.9f\n",
                        (double)sum.p50 / 1e9);
    evbuffer_add_printf(b, "stock_deduct_latency_seconds{quantile=\"0.99\"} %.9f\n",
                        (double)sum.p99 / 1e9);
    evbuffer_add_printf(b, "stock_deduct_latency_seconds{quantile=\"0.999\"} %.9f\n",
                        (double)sum.p999 / 1e9);
    evbuffer_add_printf(b, "stock_deduct_latency_seconds_sum %.9f\n",
                        sum.mean * (double)sum.count / 1e9);
    evbuffer_add_printf(b, "stock_deduct_latency_seconds_count %" PRIu64 "\n", sum.count);
    static const char *const names[] = {"stock_sku_ok_total",         "stock_sku_sold_out_total",
                                        "stock_sku_duplicates_total", "stock_sku_conflicts_total",
                                        "stock_sku_releases_total",   "stock_sku_remaining_units"};
    static const char *const helps[] = {
        "deductions answered 200 per sku", "409 sold_out answers per sku",
        "replayed duplicates per sku",     "409 order_conflict answers per sku",
        "releases answered 200 per sku",   "units the registry believes the sku can still sell"};
    size_t n = sch_registry_count(h->ctx->reg);
    for (size_t m = 0; m < sizeof names / sizeof names[0]; m++) {
        evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", names[m], helps[m], names[m],
                            m == 5 ? "gauge" : "counter");
        for (size_t i = 0; i < n; i++) {
            const sch_sku *s = sch_registry_at(h->ctx->reg, i);
            int64_t v = m == 0   ? (int64_t)s->ok
                        : m == 1 ? (int64_t)s->sold_out
                        : m == 2 ? (int64_t)s->duplicates
                        : m == 3 ? (int64_t)s->conflicts
                        : m == 4 ? (int64_t)s->releases
                                 : sch_sku_remaining(s);
            /* SKU ids are [A-Za-z0-9_.-]: safe inside a label value. */
            evbuffer_add_printf(b, "%s{sku=\"%s\"} %" PRId64 "\n", names[m], s->id, v);
        }
    }
    http_send(h->ctx, req, 200, "OK", "text/plain; version=0.0.4", b);
}

static void http_method_not_allowed(sch_http *h, struct evhttp_request *req, const char *allow)
{
    struct evkeyvalq *hd = evhttp_request_get_output_headers(req);
    if (evhttp_add_header(hd, "Allow", allow) != 0) {
        SH_WARN("http", "add header failed");
    }
    char msg[HTTP_MESSAGE_BYTES_MAX];
    snprintf(msg, sizeof msg, "this path accepts %s only", allow);
    sch_http_reply_error(h->ctx, req, 405, "method_not_allowed", msg);
}

/* Every request lands here (evhttp_set_gencb): dispatch on path and method. */
static void http_request_cb(struct evhttp_request *req, void *arg)
{
    sch_http *h = arg;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    if (path == NULL) {
        sch_http_reply_error(h->ctx, req, 404, "not_found", "no such path");
        return;
    }
    if (strcmp(path, "/v1/deduct") == 0 || strcmp(path, "/v1/release") == 0) {
        if (cmd != EVHTTP_REQ_POST) {
            http_method_not_allowed(h, req, "POST");
        } else if (path[4] == 'd') {
            http_deduct(h, req);
        } else {
            http_release(h, req);
        }
        return;
    }
    int is_sku = strncmp(path, HTTP_SKU_PREFIX, strlen(HTTP_SKU_PREFIX)) == 0;
    if (is_sku || strcmp(path, "/healthz") == 0 || strcmp(path, "/metrics") == 0) {
        if (cmd != EVHTTP_REQ_GET) {
            http_method_not_allowed(h, req, "GET");
        } else if (is_sku) {
            http_sku(h, req, path + strlen(HTTP_SKU_PREFIX));
        } else if (path[1] == 'h') {
            http_healthz(h, req);
        } else {
            http_metrics(h, req);
        }
        return;
    }
    sch_http_reply_error(h->ctx, req, 404, "not_found", "no such path");
}

/* ---- lifecycle ------------------------------------------------------------- */

sh_err sch_http_open(sch_http **out, sch_ctx *ctx, sch_route *route)
{
    SH_ASSERT(out != NULL && ctx != NULL && route != NULL && ctx->base != NULL);
    *out = NULL;
    const sch_config *cfg = ctx->cfg;
    sch_http *h = calloc(1, sizeof *h);
    if (h == NULL) {
        return SH_ENOMEM;
    }
    h->ctx = ctx;
    h->route = route;
    h->out = evbuffer_new();
    h->http = evhttp_new(ctx->base);
    if (h->out == NULL || h->http == NULL) {
        sch_http_free(h);
        return SH_ENOMEM;
    }
    evhttp_set_timeout(h->http, (int)cfg->http_idle_timeout_s);
    /* Our hard cap; bodies past http.body_bytes_max and below it get our JSON 413. */
    evhttp_set_max_body_size(h->http, (ev_ssize_t)SCH_HTTP_HARD_BODY_BYTES);
    evhttp_set_max_headers_size(h->http, (ev_ssize_t)SH_HTTP_HEADERS_BYTES_MAX);
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_gencb(h->http, http_request_cb, h);
    h->bound = evhttp_bind_socket_with_handle(h->http, cfg->http_listen, (uint16_t)cfg->http_port);
    if (h->bound == NULL) {
        SH_ERROR("http", "bind failed addr=%s:%lld", cfg->http_listen, (long long)cfg->http_port);
        sch_http_free(h);
        return SH_EIO;
    }
    SH_INFO("http", "listening addr=%s:%lld body_bytes_max=%lld", cfg->http_listen,
            (long long)cfg->http_port, (long long)cfg->http_body_bytes_max);
    *out = h;
    return SH_OK;
}

void sch_http_stop_accepting(sch_http *h)
{
    SH_ASSERT(h != NULL);
    if (h->bound != NULL) {
        evhttp_del_accept_socket(h->http, h->bound);
        h->bound = NULL;
    }
}

void sch_http_free(sch_http *h)
{
    if (h == NULL) {
        return;
    }
    if (h->http != NULL) {
        evhttp_free(h->http);
    }
    if (h->out != NULL) {
        evbuffer_free(h->out);
    }
    free(h);
}
