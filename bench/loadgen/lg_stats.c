/* lg_stats.c -- classify answers, count them, report them (see lg_stats.h).
 *
 * Classification is strict where the API promises a shape (a 200 must say
 * "status":"ok" and carry a boolean "duplicate"; a 409 must name one of its
 * three codes): anything else is counted as other_http, so a daemon that
 * answers garbage shows up in the report instead of passing as a success. */
#include "lg_stats.h"

#include "sh_log.h"

#include <cJSON.h>
#include <inttypes.h>
#include <string.h>

static const char *const LG_ANS_NAMES[LG_ANS_COUNT_] = {
    "ok",           "duplicate",       "sold_out",    "order_conflict", "user_limit", "not_started",
    "rate_limited", "invalid_request", "unknown_sku", "unavailable",    "other_http", "transport",
};

static const char *const LG_REL_NAMES[LG_REL_COUNT_] = {
    "ok", "duplicate", "unknown", "other", "transport",
};

const char *lg_answer_name(lg_answer a)
{
    SH_ASSERT((unsigned)a < LG_ANS_COUNT_);
    return LG_ANS_NAMES[a];
}

const char *lg_rel_answer_name(lg_rel_answer a)
{
    SH_ASSERT((unsigned)a < LG_REL_COUNT_);
    return LG_REL_NAMES[a];
}

/* Fills the fields every answer shares: parses body (if any) for "error",
 * "partition", "seq" and "duplicate". Returns the parsed JSON (caller frees)
 * or NULL when the body is not a JSON object. *ok_shape is set when the body is
 * a 200-style success: "status":"ok" and a boolean "duplicate". */
static cJSON *parse_common(int status, const char *body, size_t len, lg_reply *out, int *ok_shape)
{
    memset(out, 0, sizeof *out);
    out->status = status;
    out->partition = -1;
    out->seq = -1;
    *ok_shape = 0;
    if (body == NULL || len == 0) {
        return NULL;
    }
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return NULL;
    }
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (cJSON_IsString(err) && err->valuestring != NULL) {
        snprintf(out->error, sizeof out->error, "%s", err->valuestring);
    }
    const cJSON *part = cJSON_GetObjectItemCaseSensitive(root, "partition");
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(root, "seq");
    if (cJSON_IsNumber(part) && cJSON_IsNumber(seq)) {
        out->has_place = 1;
        out->partition = (int64_t)part->valuedouble;
        out->seq = (int64_t)seq->valuedouble;
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "status");
    const cJSON *dup = cJSON_GetObjectItemCaseSensitive(root, "duplicate");
    if (cJSON_IsString(st) && strcmp(st->valuestring, "ok") == 0 && cJSON_IsBool(dup)) {
        *ok_shape = 1;
        out->duplicate = cJSON_IsTrue(dup) ? 1 : 0;
    }
    return root;
}

lg_answer lg_classify_deduct(int status, const char *body, size_t len, lg_reply *out)
{
    SH_ASSERT(out != NULL);
    SH_ASSERT(body != NULL || len == 0);
    int ok_shape = 0;
    cJSON *root = parse_common(status, body, len, out, &ok_shape);
    lg_answer a = LG_ANS_OTHER_HTTP;
    switch (status) {
    case 0:
        a = LG_ANS_TRANSPORT;
        break;
    case 200:
        if (ok_shape) {
            a = out->duplicate ? LG_ANS_DUPLICATE : LG_ANS_OK;
        }
        break;
    case 409:
        if (strcmp(out->error, "sold_out") == 0) {
            a = LG_ANS_SOLD_OUT;
        } else if (strcmp(out->error, "order_conflict") == 0) {
            a = LG_ANS_ORDER_CONFLICT;
        } else if (strcmp(out->error, "user_limit") == 0) {
            a = LG_ANS_USER_LIMIT;
        }
        break;
    case 400:
        a = LG_ANS_INVALID_REQUEST;
        break;
    case 404:
        if (strcmp(out->error, "unknown_sku") == 0) {
            a = LG_ANS_UNKNOWN_SKU;
        }
        break;
    case 425:
        a = LG_ANS_NOT_STARTED;
        break;
    case 429:
        a = LG_ANS_RATE_LIMITED;
        break;
    case 503:
        a = LG_ANS_UNAVAILABLE;
        break;
    default:
        break;
    }
    cJSON_Delete(root);
    out->answer = (int)a;
    SH_ASSERT((unsigned)a < LG_ANS_COUNT_);
    return a;
}

lg_rel_answer lg_classify_release(int status, const char *body, size_t len, lg_reply *out)
{
    SH_ASSERT(out != NULL);
    SH_ASSERT(body != NULL || len == 0);
    int ok_shape = 0;
    cJSON *root = parse_common(status, body, len, out, &ok_shape);
    lg_rel_answer a = LG_REL_OTHER;
    if (status == 0) {
        a = LG_REL_TRANSPORT;
    } else if (status == 200 && ok_shape) {
        a = out->duplicate ? LG_REL_DUPLICATE : LG_REL_OK;
    } else if (status == 404 && strcmp(out->error, "unknown_order") == 0) {
        a = LG_REL_UNKNOWN;
    }
    cJSON_Delete(root);
    out->answer = (int)a;
    return a;
}

int lg_answer_outcome_unknown(lg_answer a)
{
    SH_ASSERT((unsigned)a < LG_ANS_COUNT_);
    return a == LG_ANS_TRANSPORT || a == LG_ANS_UNAVAILABLE || a == LG_ANS_OTHER_HTTP;
}

void lg_stats_init(lg_stats *s, size_t nskus)
{
    SH_ASSERT(s != NULL);
    SH_ASSERT(nskus >= 1 && nskus <= LG_SKUS_MAX);
    memset(s, 0, sizeof *s);
    sh_hist_init(&s->lat_us);
    sh_hist_init(&s->rel_lat_us);
    s->nskus = nskus;
}

static uint32_t min_qty(uint32_t cur, uint32_t qty)
{
    return cur == 0 || qty < cur ? qty : cur;
}

void lg_stats_add_deduct(lg_stats *s, const lg_reply *r, uint32_t sku_idx, uint32_t qty,
                         uint64_t lat_us)
{
    SH_ASSERT(s != NULL && r != NULL);
    SH_ASSERT(r->answer >= 0 && r->answer < LG_ANS_COUNT_);
    SH_ASSERT(sku_idx < s->nskus);
    lg_sku_stats *k = &s->sku[sku_idx];
    s->answers[r->answer]++;
    if (r->answer == LG_ANS_OK) {
        s->units_ok += qty;
        k->ok++;
        k->units_ok += qty;
        k->late_sold_out = 0; /* refusals before this ok are explained by it */
        k->late_sold_out_min_qty = 0;
    } else if (r->answer == LG_ANS_SOLD_OUT) {
        k->sold_out++;
        k->sold_out_min_qty = min_qty(k->sold_out_min_qty, qty);
        k->late_sold_out++;
        k->late_sold_out_min_qty = min_qty(k->late_sold_out_min_qty, qty);
    } else if (r->answer == LG_ANS_OTHER_HTTP && r->status > 0 && r->status < LG_HTTP_STATUS_MAX) {
        s->other_status[r->status]++;
    }
    if (lg_answer_outcome_unknown((lg_answer)r->answer)) {
        k->units_unknown += qty;
    }
    sh_hist_record(&s->lat_us, lat_us);
}

void lg_stats_add_release(lg_stats *s, const lg_reply *r, uint32_t sku_idx, uint32_t qty,
                          uint64_t lat_us)
{
    SH_ASSERT(s != NULL && r != NULL);
    SH_ASSERT(r->answer >= 0 && r->answer < LG_REL_COUNT_);
    SH_ASSERT(sku_idx < s->nskus);
    s->rel_answers[r->answer]++;
    if (r->answer == LG_REL_OK) {
        s->units_released += qty;
        s->sku[sku_idx].units_released += qty;
    } else if (r->answer == LG_REL_OTHER || r->answer == LG_REL_TRANSPORT) {
        s->sku[sku_idx].units_rel_unknown += qty;
    }
    sh_hist_record(&s->rel_lat_us, lat_us);
}

void lg_stats_add_unfinished(lg_stats *s, int release, uint32_t sku_idx, uint32_t qty)
{
    SH_ASSERT(s != NULL && sku_idx < s->nskus);
    if (release) {
        s->sku[sku_idx].units_rel_unknown += qty;
    } else {
        s->sku[sku_idx].units_unknown += qty;
    }
}

uint64_t lg_stats_errors(const lg_stats *s)
{
    SH_ASSERT(s != NULL);
    uint64_t n = 0;
    for (int a = LG_ANS_SOLD_OUT; a < LG_ANS_COUNT_; a++) {
        n += s->answers[a];
    }
    return n;
}

static uint64_t answered(const lg_stats *s)
{
    uint64_t n = 0;
    for (int a = 0; a < LG_ANS_COUNT_; a++) {
        n += s->answers[a];
    }
    return n;
}

double lg_stats_transport_ratio(const lg_stats *s)
{
    SH_ASSERT(s != NULL);
    uint64_t total = s->sent + s->rel_sent;
    if (total == 0) {
        return 0.0;
    }
    uint64_t bad = s->answers[LG_ANS_TRANSPORT] + s->rel_answers[LG_REL_TRANSPORT] + s->unfinished;
    return (double)bad / (double)total;
}

static double ms(uint64_t us)
{
    return (double)us / 1000.0;
}

static double throughput(const lg_stats *s)
{
    return s->elapsed_us > 0 ? (double)answered(s) * 1e6 / (double)s->elapsed_us : 0.0;
}

void lg_stats_print(FILE *f, const lg_stats *s, const lg_opts *o)
{
    SH_ASSERT(f != NULL && s != NULL && o != NULL);
    SH_ASSERT(s->nskus <= o->nskus);
    sh_hist_summary h, rh;
    sh_hist_summarize(&s->lat_us, &h);
    sh_hist_summarize(&s->rel_lat_us, &rh);
    fprintf(f, "elapsed        %.3f s\n", (double)s->elapsed_us / 1e6);
    fprintf(f, "deducts        sent %" PRIu64 ", answered %" PRIu64 ", %.0f/s\n", s->sent,
            answered(s), throughput(s));
    fprintf(f,
            "latency ms     p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (n=%" PRIu64 ")\n",
            ms(h.p50), ms(h.p90), ms(h.p99), ms(h.p999), ms(h.max), h.count);
    fprintf(f, "answers\n");
    for (int a = 0; a < LG_ANS_COUNT_; a++) {
        fprintf(f, "  %-16s %" PRIu64 "\n", LG_ANS_NAMES[a], s->answers[a]);
    }
    for (int st = 0; st < LG_HTTP_STATUS_MAX; st++) {
        if (s->other_status[st] != 0) {
            fprintf(f, "    http %d       %" PRIu64 "\n", st, s->other_status[st]);
        }
    }
    if (s->unfinished != 0) {
        fprintf(f, "  %-16s %" PRIu64 "\n", "unfinished", s->unfinished);
    }
    if (s->backlog != 0) {
        fprintf(f, "backlog        %" PRIu64 " orders were due (--rate) but never sent\n",
                s->backlog);
    }
    fprintf(f,
            "releases       sent %" PRIu64 ", ok %" PRIu64 ", duplicate %" PRIu64
            ", unknown %" PRIu64 ", other %" PRIu64 ", transport %" PRIu64 ", skipped %" PRIu64
            "\n",
            s->rel_sent, s->rel_answers[LG_REL_OK], s->rel_answers[LG_REL_DUPLICATE],
            s->rel_answers[LG_REL_UNKNOWN], s->rel_answers[LG_REL_OTHER],
            s->rel_answers[LG_REL_TRANSPORT], s->rel_skipped);
    if (rh.count > 0) {
        fprintf(f, "release ms     p50 %.3f  p99 %.3f  max %.3f\n", ms(rh.p50), ms(rh.p99),
                ms(rh.max));
    }
    fprintf(f, "units_ok       %" PRIu64 "\n", s->units_ok);
    fprintf(f, "units_released %" PRIu64 "\n", s->units_released);
    for (size_t i = 0; i < s->nskus; i++) {
        const lg_sku_stats *k = &s->sku[i];
        fprintf(f,
                "sku %-10s ok %" PRIu64 ", units_ok %" PRIu64 ", released %" PRIu64
                ", sold_out %" PRIu64 " (smallest qty %u), unknown units %" PRIu64 "\n",
                o->skus[i], k->ok, k->units_ok, k->units_released, k->sold_out, k->sold_out_min_qty,
                k->units_unknown + k->units_rel_unknown);
    }
}

static void json_latency(FILE *f, const char *name, const sh_hist *hist)
{
    sh_hist_summary h;
    sh_hist_summarize(hist, &h);
    fprintf(f,
            "\"%s\":{\"count\":%" PRIu64 ",\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
            "\"p999\":%.3f,\"max\":%.3f,\"mean\":%.3f}",
            name, h.count, ms(h.p50), ms(h.p90), ms(h.p99), ms(h.p999), ms(h.max), h.mean / 1000.0);
}

static void json_per_sku(FILE *f, const lg_stats *s, const lg_opts *o)
{
    fprintf(f, ",\"per_sku\":[");
    for (size_t i = 0; i < s->nskus; i++) {
        const lg_sku_stats *k = &s->sku[i];
        /* SKU ids are validated ([A-Za-z0-9_.-]): nothing to escape */
        fprintf(f,
                "%s{\"sku\":\"%s\",\"ok\":%" PRIu64 ",\"sold_out\":%" PRIu64
                ",\"units_ok\":%" PRIu64 ",\"units_released\":%" PRIu64
                ",\"units_unknown\":%" PRIu64 ",\"units_release_unknown\":%" PRIu64
                ",\"sold_out_min_qty\":%u,\"sold_out_after_last_ok\":%" PRIu64
                ",\"sold_out_after_last_ok_min_qty\":%u}",
                i ? "," : "", o->skus[i], k->ok, k->sold_out, k->units_ok, k->units_released,
                k->units_unknown, k->units_rel_unknown, k->sold_out_min_qty, k->late_sold_out,
                k->late_sold_out_min_qty);
    }
    fprintf(f, "]");
}

int lg_stats_write_json(FILE *f, const lg_stats *s, const lg_opts *o, const char *extra)
{
    SH_ASSERT(f != NULL && s != NULL && o != NULL);
    SH_ASSERT(s->nskus <= o->nskus);
    /* Printed by hand rather than with cJSON: counts are printed as exact
     * integers (cJSON prints doubles, lossy past 2^53). */
    fprintf(f,
            "{\"elapsed_s\":%.6f,\"sent\":%" PRIu64 ",\"answered\":%" PRIu64
            ",\"throughput_per_s\":%.1f,",
            (double)s->elapsed_us / 1e6, s->sent, answered(s), throughput(s));
    json_latency(f, "latency_ms", &s->lat_us);
    fprintf(f, ",\"answers\":{");
    for (int a = 0; a < LG_ANS_COUNT_; a++) {
        fprintf(f, "%s\"%s\":%" PRIu64, a ? "," : "", LG_ANS_NAMES[a], s->answers[a]);
    }
    fprintf(f, "},\"other_status\":{");
    int first = 1;
    for (int st = 0; st < LG_HTTP_STATUS_MAX; st++) {
        if (s->other_status[st] != 0) {
            fprintf(f, "%s\"%d\":%" PRIu64, first ? "" : ",", st, s->other_status[st]);
            first = 0;
        }
    }
    fprintf(f,
            "},\"unfinished\":%" PRIu64 ",\"backlog\":%" PRIu64 ",\"releases\":{\"sent\":%" PRIu64,
            s->unfinished, s->backlog, s->rel_sent);
    for (int a = 0; a < LG_REL_COUNT_; a++) {
        fprintf(f, ",\"%s\":%" PRIu64, LG_REL_NAMES[a], s->rel_answers[a]);
    }
    fprintf(f, ",\"skipped\":%" PRIu64 "},", s->rel_skipped);
    json_latency(f, "release_latency_ms", &s->rel_lat_us);
    fprintf(f, ",\"units_ok\":%" PRIu64 ",\"units_released\":%" PRIu64, s->units_ok,
            s->units_released);
    json_per_sku(f, s, o);
    fprintf(f, "%s}\n", extra != NULL ? extra : "");
    return ferror(f) ? -1 : 0;
}

void lg_orders_line(FILE *f, const char *order_id, const char *sku, uint32_t qty, const lg_reply *r)
{
    SH_ASSERT(f != NULL && order_id != NULL && sku != NULL && r != NULL);
    SH_ASSERT(r->answer >= 0 && r->answer < LG_ANS_COUNT_);
    const char *result = LG_ANS_NAMES[r->answer];
    if (r->answer == LG_ANS_DUPLICATE) {
        result = "ok"; /* the duplicate column says it */
    }
    if (r->has_place) {
        fprintf(f, "%s %s %u %d %s %" PRId64 " %" PRId64 " %s\n", order_id, sku, qty, r->status,
                result, r->partition, r->seq,
                (r->answer == LG_ANS_OK || r->answer == LG_ANS_DUPLICATE)
                    ? (r->duplicate ? "true" : "false")
                    : "-");
    } else {
        fprintf(f, "%s %s %u %d %s - - %s\n", order_id, sku, qty, r->status, result,
                (r->answer == LG_ANS_OK || r->answer == LG_ANS_DUPLICATE)
                    ? (r->duplicate ? "true" : "false")
                    : "-");
    }
}
