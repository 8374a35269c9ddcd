/* lg_verify.c -- expectations, audit replies and the verdict of --verify (see lg_verify.h).
 *
 * Replies come from another process: every field is type-checked and an
 * integer must be a whole number below 2^53 (the admin socket prints counts as
 * raw digits; beyond 2^53 a double would not hold them exactly). A reply that
 * lacks a field the verdict needs is not an audit reply; one that lacks an
 * optional field (MySQL's numbers when MySQL was not read) leaves it 0 with
 * has_mysql unset. */
#include "lg_verify.h"

#include "sh_log.h"

#include <cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#define LG_JSON_INT_MAX 9007199254740992.0 /* 2^53 */

static const char *const LG_VCHK_NAMES[LG_VCHK_COUNT_] = {
    "admin", "drained", "mysql_verified", "invariants", "units_redis", "units_mysql",
};

const char *lg_vchk_name(unsigned bit)
{
    unsigned i = 0;
    while (i < LG_VCHK_COUNT_ && bit != 1u << i) {
        i++;
    }
    SH_ASSERT(i < LG_VCHK_COUNT_); /* exactly one check bit */
    return LG_VCHK_NAMES[i];
}

/* ---- expectations -------------------------------------------------------------- */

void lg_expect_from_run(const lg_sku_stats *k, lg_expect *e)
{
    SH_ASSERT(k != NULL && e != NULL);
    SH_ASSERT(k->units_ok <= (uint64_t)INT64_MAX / 4 &&
              k->units_unknown <= (uint64_t)INT64_MAX / 4);
    memset(e, 0, sizeof *e);
    e->from_run = 1;
    e->units_ok = k->units_ok;
    e->units_released = k->units_released;
    e->units_unknown = k->units_unknown;
    e->units_rel_unknown = k->units_rel_unknown;
    int64_t net = (int64_t)k->units_ok - (int64_t)k->units_released;
    /* a deduct of unknown outcome may have taken its units; a release of
     * unknown outcome may have given its units back */
    e->lo = net - (int64_t)k->units_rel_unknown;
    e->hi = net + (int64_t)k->units_unknown;
    SH_ASSERT(e->lo <= e->hi);
}

void lg_expect_exact(int64_t n, lg_expect *e)
{
    SH_ASSERT(e != NULL && n >= 0);
    memset(e, 0, sizeof *e);
    e->lo = n;
    e->hi = n;
}

int lg_expect_is_exact(const lg_expect *e)
{
    SH_ASSERT(e != NULL && e->lo <= e->hi);
    return e->lo == e->hi;
}

/* ---- parsing ---------------------------------------------------------------------- */

/* A whole number below 2^53 at key; 0 or -1 when absent or not one. */
static int vf_get_int(const cJSON *o, const char *key, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
        fabs(v->valuedouble) >= LG_JSON_INT_MAX || floor(v->valuedouble) != v->valuedouble) {
        return -1;
    }
    *out = (int64_t)v->valuedouble;
    return 0;
}

static int vf_get_bool(const cJSON *o, const char *key, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsBool(v)) {
        return -1;
    }
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return 0;
}

/* Copies the string at key into buf (truncated); "" when absent. */
static void vf_get_str(const cJSON *o, const char *key, char *buf, size_t buflen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    buf[0] = '\0';
    if (cJSON_IsString(v) && v->valuestring != NULL) {
        snprintf(buf, buflen, "%s", v->valuestring);
    }
}

static void vf_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void vf_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int lg_audit_parse(const char *json, size_t len, lg_audit_facts *out, char *err, size_t errlen)
{
    SH_ASSERT(out != NULL);
    SH_ASSERT(json != NULL || len == 0);
    memset(out, 0, sizeof *out);
    cJSON *root = len > 0 ? cJSON_ParseWithLength(json, len) : NULL;
    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        vf_set_err(err, errlen, "the audit reply is not a JSON object");
        return -1;
    }
    int rc = -1;
    if (vf_get_bool(root, "ok", &out->reply_ok) != 0) {
        vf_set_err(err, errlen, "the audit reply has no boolean 'ok'");
        goto done;
    }
    if (!out->reply_ok) {
        vf_get_str(root, "error", out->error, sizeof out->error);
        vf_get_str(root, "message", out->message, sizeof out->message);
        rc = 0;
        goto done;
    }
    static const char *const ints[] = {"total", "avail", "deducted", "details_pending"};
    int64_t *const int_out[] = {&out->total, &out->avail, &out->deducted, &out->details_pending};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (vf_get_int(root, ints[i], int_out[i]) != 0) {
            vf_set_err(err, errlen, "the audit reply has no integer '%s'", ints[i]);
            goto done;
        }
    }
    static const char *const bools[] = {"stable", "mysql_verified", "invariants_ok"};
    int *const bool_out[] = {&out->stable, &out->mysql_verified, &out->invariants_ok};
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
        if (vf_get_bool(root, bools[i], bool_out[i]) != 0) {
            vf_set_err(err, errlen, "the audit reply has no boolean '%s'", bools[i]);
            goto done;
        }
    }
    vf_get_str(root, "broken", out->broken, sizeof out->broken);
    vf_get_str(root, "mysql_error", out->mysql_error, sizeof out->mysql_error);
    if (out->mysql_verified) {
        if (vf_get_int(root, "mysql_deducted", &out->mysql_deducted) != 0 ||
            vf_get_int(root, "unsynced_details", &out->unsynced_details) != 0) {
            vf_set_err(err, errlen,
                       "the audit reply says MySQL was verified but lacks mysql_deducted or "
                       "unsynced_details");
            goto done;
        }
        out->has_mysql = 1;
        /* informative only */
        (void)vf_get_int(root, "mysql_detail_rows", &out->mysql_detail_rows);
        (void)vf_get_int(root, "unsynced_qty", &out->unsynced_qty);
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

int lg_audit_drained(const lg_audit_facts *a)
{
    SH_ASSERT(a != NULL);
    return a->reply_ok && a->has_mysql && a->unsynced_details == 0;
}

int lg_registry_pending(const char *json, size_t len, const char *sku, int64_t *pending)
{
    SH_ASSERT(sku != NULL && pending != NULL);
    SH_ASSERT(json != NULL || len == 0);
    cJSON *root = len > 0 ? cJSON_ParseWithLength(json, len) : NULL;
    const cJSON *skus = cJSON_GetObjectItemCaseSensitive(root, "skus");
    int rc = -1;
    if (!cJSON_IsArray(skus)) {
        goto done;
    }
    const cJSON *s;
    rc = 0;
    cJSON_ArrayForEach(s, skus)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(s, "sku");
        if (!cJSON_IsString(id) || id->valuestring == NULL || strcmp(id->valuestring, sku) != 0) {
            continue;
        }
        const cJSON *parts = cJSON_GetObjectItemCaseSensitive(s, "partitions");
        if (!cJSON_IsArray(parts)) {
            rc = -1;
            goto done;
        }
        int64_t sum = 0;
        const cJSON *p;
        cJSON_ArrayForEach(p, parts)
        {
            int64_t v;
            if (vf_get_int(p, "details_pending", &v) != 0 || v < 0) {
                rc = -1; /* lag not read (lag_error): the caller asks the audit */
                goto done;
            }
            sum += v;
        }
        *pending = sum;
        rc = 1;
        goto done;
    }
done:
    cJSON_Delete(root);
    return rc;
}

/* ---- the verdict ------------------------------------------------------------------ */

static void vf_add_fail(lg_verdict *v, unsigned bit, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void vf_add_fail(lg_verdict *v, unsigned bit, const char *fmt, ...)
{
    v->failed |= bit;
    size_t used = strlen(v->message);
    if (used + 3 >= sizeof v->message) {
        return;
    }
    used += (size_t)snprintf(v->message + used, sizeof v->message - used,
                             "%s%s: ", used > 0 ? "; " : "", lg_vchk_name(bit));
    if (used >= sizeof v->message) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->message + used, sizeof v->message - used, fmt, ap);
    va_end(ap);
}

/* "N" or "LO..HI" into buf. */
static const char *vf_range_text(const lg_expect *e, char *buf, size_t buflen)
{
    if (lg_expect_is_exact(e)) {
        snprintf(buf, buflen, "%" PRId64, e->lo);
    } else {
        snprintf(buf, buflen, "%" PRId64 "..%" PRId64, e->lo, e->hi);
    }
    return buf;
}

void lg_verify_judge(const lg_expect *e, int have_audit, const lg_audit_facts *a,
                     const char *admin_error, lg_verdict *v)
{
    SH_ASSERT(e != NULL && v != NULL && e->lo <= e->hi);
    SH_ASSERT(!have_audit || a != NULL);
    memset(v, 0, sizeof *v);
    if (!have_audit) {
        vf_add_fail(v, LG_VCHK_ADMIN, "%s",
                    admin_error != NULL && admin_error[0] ? admin_error : "no audit reply");
        return;
    }
    if (!a->reply_ok) {
        vf_add_fail(v, LG_VCHK_ADMIN, "the audit answered %s: %s", a->error[0] ? a->error : "error",
                    a->message);
        return;
    }
    char want[48];
    vf_range_text(e, want, sizeof want);
    if (!a->has_mysql) {
        vf_add_fail(v, LG_VCHK_MYSQL, "the audit could not read MySQL (%s)",
                    a->mysql_error[0] ? a->mysql_error : "no reason given");
    } else if (!lg_audit_drained(a)) {
        vf_add_fail(v, LG_VCHK_DRAINED,
                    "%" PRId64 " details (%" PRId64 " units) still wait in Redis for MySQL",
                    a->unsynced_details, a->unsynced_qty);
    }
    if (!a->invariants_ok) {
        vf_add_fail(v, LG_VCHK_INVARIANTS, "%s%s", a->broken[0] ? a->broken : "a check failed",
                    a->stable ? "" : " (unstable read)");
    }
    if (a->deducted < e->lo || a->deducted > e->hi) {
        vf_add_fail(v, LG_VCHK_UNITS_REDIS, "Redis net deducted %" PRId64 ", expected %s",
                    a->deducted, want);
    }
    if (a->has_mysql && (a->mysql_deducted < e->lo || a->mysql_deducted > e->hi)) {
        vf_add_fail(v, LG_VCHK_UNITS_MYSQL, "MySQL net deducted %" PRId64 ", expected %s",
                    a->mysql_deducted, want);
    }
    SH_ASSERT(v->failed == 0 || v->message[0] != '\0');
}

void lg_verify_finish(lg_verify_result *r)
{
    SH_ASSERT(r != NULL && r->nskus <= LG_SKUS_MAX);
    r->ok = r->nskus > 0;
    for (size_t i = 0; i < r->nskus; i++) {
        lg_verify_sku *s = &r->sku[i];
        lg_verify_judge(&s->expect, s->have_audit, &s->audit, s->admin_error, &s->verdict);
        if (s->verdict.failed != 0) {
            r->ok = 0;
        }
    }
}

/* ---- output ------------------------------------------------------------------------ */

void lg_verify_print(FILE *f, const lg_verify_result *r)
{
    SH_ASSERT(f != NULL && r != NULL);
    size_t failed = 0;
    for (size_t i = 0; i < r->nskus; i++) {
        failed += r->sku[i].verdict.failed != 0;
    }
    if (r->ok) {
        fprintf(f,
                "verify         ok: %zu SKU(s): invariants hold, Redis and MySQL hold the units "
                "answered ok\n",
                r->nskus);
    } else {
        fprintf(f, "verify         FAILED for %zu of %zu SKU(s)\n", failed, r->nskus);
    }
    for (size_t i = 0; i < r->nskus; i++) {
        const lg_verify_sku *s = &r->sku[i];
        char want[48];
        vf_range_text(&s->expect, want, sizeof want);
        fprintf(f, "  sku %s: expected %s (%s)", s->sku, want,
                s->expect.from_run
                    ? (lg_expect_is_exact(&s->expect) ? "exact, from this run"
                                                      : "range: answers of unknown outcome")
                    : "--expect-units");
        if (s->have_audit && s->audit.reply_ok) {
            fprintf(f, ", Redis %" PRId64, s->audit.deducted);
            if (s->audit.has_mysql) {
                fprintf(f, ", MySQL %" PRId64, s->audit.mysql_deducted);
            }
            fprintf(f, ", total %" PRId64 ", left %" PRId64, s->audit.total,
                    s->audit.total - s->audit.deducted);
        }
        if (s->drain_ms >= 0) {
            fprintf(f, ", drained after %" PRId64 " ms", s->drain_ms);
        }
        if (s->verdict.failed == 0) {
            fprintf(f, ": ok\n");
        } else {
            fprintf(f, ": FAILED: %s\n", s->verdict.message);
        }
    }
}

/* s as a JSON string (quotes, backslashes and control characters escaped). */
static void vf_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            fprintf(f, "\\%c", *p);
        } else if (*p < 0x20) {
            fprintf(f, "\\u%04x", *p);
        } else {
            fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void vf_json_sku(FILE *f, const lg_verify_sku *s)
{
    const lg_audit_facts *a = &s->audit;
    int audited = s->have_audit && a->reply_ok;
    fprintf(f, "{\"sku\":");
    vf_json_str(f, s->sku);
    fprintf(f, ",\"ok\":%s,\"failed\":[", s->verdict.failed == 0 ? "true" : "false");
    int first = 1;
    for (unsigned i = 0; i < LG_VCHK_COUNT_; i++) {
        if (s->verdict.failed & (1u << i)) {
            fprintf(f, "%s\"%s\"", first ? "" : ",", LG_VCHK_NAMES[i]);
            first = 0;
        }
    }
    fprintf(f, "],\"message\":");
    vf_json_str(f, s->verdict.message);
    fprintf(f,
            ",\"expected_lo\":%" PRId64 ",\"expected_hi\":%" PRId64
            ",\"exact\":%s,\"source\":\"%s\"",
            s->expect.lo, s->expect.hi, lg_expect_is_exact(&s->expect) ? "true" : "false",
            s->expect.from_run ? "run" : "expect_units");
    if (s->expect.from_run) {
        fprintf(f,
                ",\"units_ok\":%" PRIu64 ",\"units_released\":%" PRIu64
                ",\"units_unknown\":%" PRIu64 ",\"units_release_unknown\":%" PRIu64,
                s->expect.units_ok, s->expect.units_released, s->expect.units_unknown,
                s->expect.units_rel_unknown);
    }
    fprintf(f, ",\"drain_ms\":%" PRId64 ",\"audited\":%s", s->drain_ms, audited ? "true" : "false");
    if (audited) {
        fprintf(f,
                ",\"total\":%" PRId64 ",\"left\":%" PRId64 ",\"redis_deducted\":%" PRId64
                ",\"details_pending\":%" PRId64 ",\"stable\":%s,\"invariants_ok\":%s"
                ",\"mysql_verified\":%s",
                a->total, a->total - a->deducted, a->deducted, a->details_pending,
                a->stable ? "true" : "false", a->invariants_ok ? "true" : "false",
                a->has_mysql ? "true" : "false");
        if (a->has_mysql) {
            fprintf(f,
                    ",\"mysql_deducted\":%" PRId64 ",\"mysql_detail_rows\":%" PRId64
                    ",\"unsynced_details\":%" PRId64,
                    a->mysql_deducted, a->mysql_detail_rows, a->unsynced_details);
        }
        fprintf(f, ",\"broken\":");
        vf_json_str(f, a->broken);
    }
    fprintf(f, "}");
}

int lg_verify_write_json(FILE *f, const lg_verify_result *r)
{
    SH_ASSERT(f != NULL && r != NULL);
    fprintf(f, ",\"verify\":{\"ok\":%s,\"drain_timeout_s\":%.3f,\"skus\":[",
            r->ok ? "true" : "false", r->drain_timeout_s);
    for (size_t i = 0; i < r->nskus; i++) {
        if (i > 0) {
            fputc(',', f);
        }
        vf_json_sku(f, &r->sku[i]);
    }
    fprintf(f, "]}");
    return ferror(f) ? -1 : 0;
}
