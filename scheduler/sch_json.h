/* sch_json.h -- what the admin socket's commands share: a failed command's
 * code and message, and cJSON helpers that keep 64-bit integers exact.
 *
 * Integers that may pass 2^53 are written as raw digits (cJSON would print
 * them as lossy doubles, LIBRARY-NOTES 6). Used by sch_admin.c (loop thread)
 * and by the commands that run on the operator thread (sch_audit.c,
 * sch_jobs.h); each call touches only the objects it is given. */
#ifndef SCH_JSON_H
#define SCH_JSON_H

#include <cjson/cJSON.h>
#include <stdint.h>

#define SCH_FAIL_MESSAGE_BYTES 256

/* A failed command: an error code (sch_admin.h lists them) and a message. */
typedef struct sch_fail {
    const char *code; /* a string literal */
    char message[SCH_FAIL_MESSAGE_BYTES];
} sch_fail;

void sch_failf(sch_fail *f, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Each returns 0 on success, -1 when cJSON could not allocate. */
int sch_json_i64(cJSON *o, const char *key, int64_t v);
int sch_json_u64(cJSON *o, const char *key, uint64_t v);
int sch_json_bool(cJSON *o, const char *key, int v);

/* {"ok":true}, or NULL with f set to internal / out of memory. */
cJSON *sch_json_reply_ok(sch_fail *f);

#endif
