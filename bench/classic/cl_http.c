/* cl_http.c -- stock-classic's HTTP front, a mirror of scheduler/sch_http.c.
 *
 * Why a mirror and not a shared module: the baselines must pay what our
 * scheduler pays per request (evhttp parse, cJSON, the same id checks from
 * shared/sh_id, the same JSON answers), so that a throughput ratio compares
 * the designs behind the front and not two fronts. The scheduler's module is
 * tied to its registry and router, so the parsing is repeated here; keep the
 * two in step (same checks, same messages, same limits).
 *
 * libevent and cJSON quirks handled as there (LIBRARY-NOTES 4, 6): the body is
 * not NUL-terminated (parse with a length, check trailing bytes by hand), only
 * case-sensitive lookups, a NUL or "\u0000" in a body is refused. */
#include "cl_http.h"

#include "sh_id.h"
#include "sh_log.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define CL_HTTP_HARD_BODY_BYTES (1024u * 1024u + 1024u) /* as SCH_HTTP_HARD_BODY_BYTES */

typedef struct cl_http_stats {
    uint64_t requests;
    uint64_t ok;
    uint64_t duplicate;
    uint64_t sold_out;
    uint64_t conflict;
    uint64_t unknown_sku;
    uint64_t bad_request;
    uint64_t unavailable;
    uint64_t loads;
} cl_http_stats;

struct cl_http {
    cl_http_config cfg;
    const cl_backend *be;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct evbuffer *out; /* reused for every answer; evhttp drains it */
    uint64_t inflight;
    cl_http_stats st;
};

void cl_req_unavailable(cl_req *r, const char *fmt, ...)
{
    SH_ASSERT(r != NULL && fmt != NULL);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
    r->outcome = CL_OUT_UNAVAILABLE;
}

/* ---- answers --------------------------------------------------------------- */

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
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

static void http_send(cl_http *h, struct evhttp_request *req, int code)
{
    struct evkeyvalq *hd = evhttp_request_get_output_headers(req);
    if (evhttp_add_header(hd, "Content-Type", "application/json") != 0) {
        SH_WARN("http", "add header failed");
    }
    h->st.requests++;
    evhttp_send_reply(req, code, http_reason(code), h->out);
}

static void http_error(cl_http *h, struct evhttp_request *req, int code, const char *error,
                       const char *message)
{
    SH_ASSERT(code >= 400 && code <= 599);
    evbuffer_add_printf(h->out, "{\"error\":");
    http_json_string(h->out, error);
    evbuffer_add_printf(h->out, ",\"message\":");
    http_json_string(h->out, message);
    evbuffer_add_printf(h->out, "}\n");
    if (code == 503 &&
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1") != 0) {
        SH_WARN("http", "add header failed");
    }
    if (code == 400 || code == 413) {
        h->st.bad_request++;
    } else if (code == 503) {
        h->st.unavailable++;
    }
    http_send(h, req, code);
}

/* The backend's verdict, on the loop thread: answer, count, free. */
static void http_done(cl_req *r)
{
    cl_http *h = r->done_arg;
    SH_ASSERT(h != NULL && h->inflight > 0 && r->http != NULL);
    h->inflight--;
    switch (r->outcome) {
    case CL_OUT_OK:
    case CL_OUT_DUPLICATE: {
        int dup = r->outcome == CL_OUT_DUPLICATE;
        evbuffer_add_printf(
            h->out, "{\"status\":\"ok\",\"partition\":0,\"seq\":%" PRIu64 ",\"duplicate\":%s}\n",
            r->seq, dup ? "true" : "false");
        if (dup) {
            h->st.duplicate++;
        } else {
            h->st.ok++;
        }
        http_send(h, r->http, 200);
        break;
    }
    case CL_OUT_LOADED:
        evbuffer_add_printf(h->out, "{\"status\":\"ok\",\"sku\":");
        http_json_string(h->out, r->sku);
        evbuffer_add_printf(h->out, ",\"total\":%" PRId64 "}\n", r->total);
        h->st.loads++;
        http_send(h, r->http, 200);
        break;
    case CL_OUT_SOLD_OUT:
        h->st.sold_out++;
        http_error(h, r->http, 409, "sold_out", "not enough stock for this qty");
        break;
    case CL_OUT_CONFLICT:
        h->st.conflict++;
        http_error(h, r->http, 409, "order_conflict", "this order was taken with another qty");
        break;
    case CL_OUT_UNKNOWN_SKU:
        h->st.unknown_sku++;
        http_error(h, r->http, 404, "unknown_sku", "no such sku");
        break;
    case CL_OUT_UNAVAILABLE:
        http_error(h, r->http, 503, "unavailable", r->message[0] ? r->message : "unavailable");
        break;
    case CL_OUT_NONE:
    default:
        SH_ERROR("http", "backend gave no outcome kind=%d", (int)r->kind);
        http_error(h, r->http, 503, "unavailable", "internal error: no outcome");
        break;
    }
    free(r);
}

/* ---- body parsing (as sch_http.c) ------------------------------------------ */

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

/* The body as one JSON object, or NULL after answering 400/413/503. */
static cJSON *http_body_object(cl_http *h, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = in != NULL ? evbuffer_get_length(in) : 0;
    if (len > h->cfg.body_bytes_max) {
        char msg[CL_MESSAGE_BYTES_MAX];
        snprintf(msg, sizeof msg, "the body is %zu bytes; at most %u are accepted", len,
                 (unsigned)h->cfg.body_bytes_max);
        http_error(h, req, 413, "payload_too_large", msg);
        return NULL;
    }
    if (len == 0) {
        http_error(h, req, 400, "invalid_request", "the body is empty");
        return NULL;
    }
    const char *buf = (const char *)evbuffer_pullup(in, -1);
    if (buf == NULL) {
        http_error(h, req, 503, "unavailable", "out of memory");
        return NULL;
    }
    if (http_has_nul(buf, len)) {
        http_error(h, req, 400, "invalid_request", "the body holds a NUL character");
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (root == NULL) {
        http_error(h, req, 400, "invalid_request", "the body is not valid JSON");
        return NULL;
    }
    for (const char *p = end; p < buf + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            cJSON_Delete(root);
            http_error(h, req, 400, "invalid_request",
                       "the body holds characters after the JSON value");
            return NULL;
        }
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        http_error(h, req, 400, "invalid_request", "the body must be a JSON object");
        return NULL;
    }
    return root;
}

typedef sh_err (*http_id_check)(const char *s, size_t len);

/* Copies field name of root, an id checked by check, into out[0..cap). */
static int http_get_id(const cJSON *root, const char *name, http_id_check check, char *out,
                       size_t cap, char *msg, size_t msglen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (v == NULL) {
        snprintf(msg, msglen, "missing field: %s", name);
        return 0;
    }
    if (!cJSON_IsString(v) || v->valuestring == NULL) {
        snprintf(msg, msglen, "%s must be a JSON string", name);
        return 0;
    }
    size_t len = strlen(v->valuestring);
    int is_sku = check == sh_id_check_sku;
    sh_err rc = check(v->valuestring, len);
    if (rc == SH_ERANGE) {
        snprintf(msg, msglen, "%s is longer than %d characters", name,
                 is_sku ? SH_SKU_ID_CHARS_MAX : SH_ORDER_ID_CHARS_MAX);
        return 0;
    }
    if (rc != SH_OK) {
        snprintf(msg, msglen, "%s must be 1..%d characters of %s", name,
                 is_sku ? SH_SKU_ID_CHARS_MAX : SH_ORDER_ID_CHARS_MAX,
                 is_sku ? "[A-Za-z0-9_.-]" : "[A-Za-z0-9_.:-]");
        return 0;
    }
    SH_ASSERT(len < cap); /* the checks bound len below every buffer */
    memcpy(out, v->valuestring, len + 1);
    return 1;
}

/* Field name of root as an integer JSON number in [lo, hi]. */
static int http_get_int(const cJSON *root, const char *name, double lo, double hi, int64_t *out,
                        char *msg, size_t msglen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (v == NULL) {
        snprintf(msg, msglen, "missing field: %s", name);
        return 0;
    }
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || !isfinite(d) || d != floor(d) || d < lo || d > hi) {
        snprintf(msg, msglen, "%s must be an integer JSON number in %.0f..%.0f", name, lo, hi);
        return 0;
    }
    *out = (int64_t)d;
    return 1;
}

/* ---- handlers -------------------------------------------------------------- */

static cl_req *http_req_new(cl_http *h, struct evhttp_request *req, cl_kind kind)
{
    cl_req *r = calloc(1, sizeof *r);
    if (r == NULL) {
        http_error(h, req, 503, "unavailable", "out of memory");
        return NULL;
    }
    r->http = req;
    r->kind = kind;
    r->done = http_done;
    r->done_arg = h;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    r->wall_ms = (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
    return r;
}

static void http_submit(cl_http *h, cl_req *r)
{
    h->inflight++;
    h->be->submit(h->be->impl, r); /* ends in http_done, maybe already here */
}

static void http_deduct(cl_http *h, struct evhttp_request *req)
{
    if (h->inflight >= h->cfg.inflight_max) {
        http_error(h, req, 503, "unavailable", "too many requests in flight");
        return;
    }
    cJSON *root = http_body_object(h, req);
    if (root == NULL) {
        return;
    }
    char msg[CL_MESSAGE_BYTES_MAX];
    cl_req tmp;
    memset(&tmp, 0, sizeof tmp);
    int64_t qty = 0;
    int valid =
        http_get_id(root, "sku", sh_id_check_sku, tmp.sku, sizeof tmp.sku, msg, sizeof msg) &&
        http_get_id(root, "order_id", sh_id_check_order, tmp.order, sizeof tmp.order, msg,
                    sizeof msg) &&
        http_get_id(root, "user_id", sh_id_check_user, tmp.user, sizeof tmp.user, msg,
                    sizeof msg) &&
        http_get_int(root, "qty", 1, (double)h->cfg.max_qty, &qty, msg, sizeof msg);
    cJSON_Delete(root);
    if (!valid) {
        http_error(h, req, 400, "invalid_request", msg);
        return;
    }
    cl_req *r = http_req_new(h, req, CL_DEDUCT);
    if (r == NULL) {
        return;
    }
    memcpy(r->sku, tmp.sku, sizeof r->sku);
    memcpy(r->order, tmp.order, sizeof r->order);
    memcpy(r->user, tmp.user, sizeof r->user);
    r->qty = (uint32_t)qty;
    http_submit(h, r);
}

static void http_load(cl_http *h, struct evhttp_request *req)
{
    cJSON *root = http_body_object(h, req);
    if (root == NULL) {
        return;
    }
    char msg[CL_MESSAGE_BYTES_MAX];
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    int64_t total = 0;
    int valid =
        http_get_id(root, "sku", sh_id_check_sku, sku, sizeof sku, msg, sizeof msg) &&
        http_get_int(root, "total", 0, (double)SH_SKU_TOTAL_UNITS_MAX, &total, msg, sizeof msg);
    cJSON_Delete(root);
    if (!valid) {
        http_error(h, req, 400, "invalid_request", msg);
        return;
    }
    cl_req *r = http_req_new(h, req, CL_LOAD);
    if (r == NULL) {
        return;
    }
    memcpy(r->sku, sku, sizeof r->sku);
    r->total = total;
    http_submit(h, r);
}

static void http_healthz(cl_http *h, struct evhttp_request *req)
{
    evbuffer_add_printf(h->out,
                        "{\"status\":\"ok\",\"mode\":\"%s\",\"inflight\":%" PRIu64
                        ",\"backend_pending\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"duplicate\":%" PRIu64
                        ",\"sold_out\":%" PRIu64 ",\"unavailable\":%" PRIu64 "}\n",
                        h->cfg.mode, h->inflight, h->be->pending(h->be->impl), h->st.ok,
                        h->st.duplicate, h->st.sold_out, h->st.unavailable);
    http_send(h, req, 200);
}

static void http_method_not_allowed(cl_http *h, struct evhttp_request *req, const char *allow)
{
    if (evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow) != 0) {
        SH_WARN("http", "add header failed");
    }
    char msg[CL_MESSAGE_BYTES_MAX];
    snprintf(msg, sizeof msg, "this path accepts %s only", allow);
    http_error(h, req, 405, "method_not_allowed", msg);
}

static void http_request_cb(struct evhttp_request *req, void *arg)
{
    cl_http *h = arg;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    if (path == NULL) {
        http_error(h, req, 404, "not_found", "no such path");
    } else if (strcmp(path, "/v1/deduct") == 0) {
        if (cmd != EVHTTP_REQ_POST) {
            http_method_not_allowed(h, req, "POST");
        } else {
            http_deduct(h, req);
        }
    } else if (strcmp(path, "/v1/load") == 0) {
        if (cmd != EVHTTP_REQ_POST) {
            http_method_not_allowed(h, req, "POST");
        } else {
            http_load(h, req);
        }
    } else if (strcmp(path, "/healthz") == 0) {
        if (cmd != EVHTTP_REQ_GET) {
            http_method_not_allowed(h, req, "GET");
        } else {
            http_healthz(h, req);
        }
    } else {
        http_error(h, req, 404, "not_found", "no such path");
    }
}

/* ---- lifecycle ------------------------------------------------------------- */

sh_err cl_http_open(cl_http **out, struct event_base *base, const cl_http_config *cfg,
                    const cl_backend *be)
{
    SH_ASSERT(out != NULL && base != NULL && cfg != NULL && be != NULL);
    SH_ASSERT(be->submit != NULL && be->pending != NULL && cfg->inflight_max > 0);
    *out = NULL;
    cl_http *h = calloc(1, sizeof *h);
    if (h == NULL) {
        return SH_ENOMEM;
    }
    h->cfg = *cfg;
    h->be = be;
    h->out = evbuffer_new();
    h->http = evhttp_new(base);
    if (h->out == NULL || h->http == NULL) {
        cl_http_free(h);
        return SH_ENOMEM;
    }
    evhttp_set_timeout(h->http, (int)cfg->idle_timeout_s);
    evhttp_set_max_body_size(h->http, (ev_ssize_t)CL_HTTP_HARD_BODY_BYTES);
    evhttp_set_max_headers_size(h->http, (ev_ssize_t)SH_HTTP_HEADERS_BYTES_MAX);
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_gencb(h->http, http_request_cb, h);
    h->bound = evhttp_bind_socket_with_handle(h->http, cfg->listen, cfg->port);
    if (h->bound == NULL) {
        SH_ERROR("http", "bind failed addr=%s:%u", cfg->listen, (unsigned)cfg->port);
        cl_http_free(h);
        return SH_EIO;
    }
    SH_INFO("http", "listening addr=%s:%u mode=%s", cfg->listen, (unsigned)cfg->port, cfg->mode);
    *out = h;
    return SH_OK;
}

void cl_http_stop_accepting(cl_http *h)
{
    SH_ASSERT(h != NULL);
    if (h->bound != NULL) {
        evhttp_del_accept_socket(h->http, h->bound);
        h->bound = NULL;
    }
}

uint64_t cl_http_inflight(const cl_http *h)
{
    SH_ASSERT(h != NULL);
    return h->inflight;
}

void cl_http_log_stats(const cl_http *h)
{
    SH_ASSERT(h != NULL);
    SH_INFO("http",
            "answers requests=%" PRIu64 " ok=%" PRIu64 " duplicate=%" PRIu64 " sold_out=%" PRIu64
            " conflict=%" PRIu64 " unknown_sku=%" PRIu64 " bad_request=%" PRIu64
            " unavailable=%" PRIu64 " loads=%" PRIu64,
            h->st.requests, h->st.ok, h->st.duplicate, h->st.sold_out, h->st.conflict,
            h->st.unknown_sku, h->st.bad_request, h->st.unavailable, h->st.loads);
}

void cl_http_free(cl_http *h)
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
