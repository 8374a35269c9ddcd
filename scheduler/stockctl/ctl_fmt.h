/* ctl_fmt.h -- stockctl's reading of the admin socket's replies: exact numbers, tables.
 *
 * Pure functions over a reply text or a parsed reply and FILE *s, so the unit
 * tests check the tables byte for byte without a scheduler. Every print
 * function returns stockctl's exit status: 0 done, 1 an invariant is broken,
 * 2 the reply is not what the command expects (message on err). */
#ifndef CTL_FMT_H
#define CTL_FMT_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Returns a copy of the JSON text in[0..len) in which every integer token
 * outside strings is wrapped in quotes ("42" for 42, "-7" for -7); fractions
 * and exponents stay numbers. cJSON keeps numbers as doubles, which loses
 * digits past 2^53 (LIBRARY-NOTES 6); as strings the digits survive and
 * ctl_json_i64 reads them exactly. NUL-terminated, free() it; NULL when out of
 * memory. Malformed text is copied as is and left for the parser to refuse. */
char *ctl_json_quote_ints(const char *in, size_t len);

/* Parses one reply line (integers kept exact as above). Returns the object,
 * or NULL with a reason in err when the text is not a JSON object holding a
 * boolean "ok". Free with cJSON_Delete. */
cJSON *ctl_reply_parse(const char *line, size_t len, char *err, size_t errlen);

/* 1 when reply["ok"] is true. */
int ctl_reply_ok(const cJSON *reply);

/* Reads integer field key of o: a quoted integer (see above) or a JSON number
 * that is an exact integer. 0 on success, -1 when absent or not an integer. */
int ctl_json_i64(const cJSON *o, const char *key, int64_t *out);

/* Formats a sale start (ms since the epoch) for people: "none" for 0, else
 * "2026-11-21T21:40:00.000Z". */
void ctl_format_start(int64_t start_ms, char *buf, size_t len);

/* {"ok":false,...}: prints "stockctl: the scheduler answered CODE: MESSAGE" on
 * err; returns 1. */
int ctl_print_error(FILE *err, const cJSON *reply);

/* Per SKU a header line, then its partitions as a column-aligned table. */
int ctl_print_registry(FILE *out, FILE *err, const cJSON *reply);

/* "sku SKU loaded ..." or "sku SKU already loaded (nothing changed) ...", with
 * the total and partitions when the reply has them; a "note" (the stored row
 * differs from what was asked) goes to err as "stockctl: note: ...". */
int ctl_print_sku_load(FILE *out, FILE *err, const char *sku, const cJSON *reply);

/* "restock RID: N units added" or "restock RID already applied (nothing changed)". */
int ctl_print_sku_restock(FILE *out, FILE *err, const cJSON *reply);

/* The audit's quantities (Redis, then MySQL), then one line per check with
 * ok / BROKEN / NOT VERIFIED and its detail. A broken check is named on err
 * and gives 1; so does a check that could not be verified (MySQL unreachable,
 * too many pending details), with the reason. */
int ctl_print_audit(FILE *out, FILE *err, const cJSON *reply);

/* "schema version N (was M)", or "schema version N (up to date)" when nothing
 * was applied. */
int ctl_print_db_migrate(FILE *out, FILE *err, const cJSON *reply);

/* "partition P of SKU reconciled (ID)" and what changed, one line each,
 * aligned; an oversold count above 0 is named on err and gives 1 (units were
 * answered that nothing backs: the audit will say so too), as does MySQL
 * having moved during the run (it wants another). */
int ctl_print_reconcile(FILE *out, FILE *err, const cJSON *reply);

/* Every counter of the reply, one per line, aligned. */
int ctl_print_stats(FILE *out, FILE *err, const cJSON *reply);

/* The exit status of a reply printed raw (--json): 1 for an error reply, a
 * broken audit or a reconcile that left units oversold or saw MySQL move, else 0. */
int ctl_json_status(const cJSON *reply);

#endif
