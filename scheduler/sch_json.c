/* sch_json.c -- see sch_json.h. */
#include "sch_json.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

void sch_failf(sch_fail *f, const char *code, const char *fmt, ...)
{
    va_list ap;
    f->code = code;
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof f->message, fmt, ap);
    va_end(ap);
}

int sch_json_i64(cJSON *o, const char *key, int64_t v)
{
    char digits[24];
    snprintf(digits, sizeof digits, "%" PRId64, v);
    return cJSON_AddRawToObject(o, key, digits) ? 0 : -1;
}

int sch_json_u64(cJSON *o, const char *key, uint64_t v)
{
    char digits[24];
    snprintf(digits, sizeof digits, "%" PRIu64, v);
    return cJSON_AddRawToObject(o, key, digits) ? 0 : -1;
}

int sch_json_bool(cJSON *o, const char *key, int v)
{
    return cJSON_AddBoolToObject(o, key, v ? 1 : 0) ? 0 : -1;
}

cJSON *sch_json_reply_ok(sch_fail *f)
{
    cJSON *r = cJSON_CreateObject();
    if (r == NULL || sch_json_bool(r, "ok", 1) != 0) {
        cJSON_Delete(r);
        sch_failf(f, "internal", "out of memory");
        return NULL;
    }
    return r;
}
