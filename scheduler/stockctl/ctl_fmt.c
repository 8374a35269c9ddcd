/* ctl_fmt.c -- stockctl's reading of the admin socket's replies: exact numbers, tables.
 *
 * The scheduler prints integers as raw digits so counters past 2^53 stay exact;
 * cJSON would read them back as doubles and lose that, so the reply text has
 * its integers quoted before parsing and they are read with strtoll. Tables
 * are sized to their widest cell so a 10-digit seq does not shear the columns.
 * A reply missing a field the table needs is reported, not printed half. */
#include "ctl_fmt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CTL_CELL_BYTES 64 /* one formatted table cell */

/* ---- exact integers -------------------------------------------------------- */

char *ctl_json_quote_ints(const char *in, size_t len)
{
    /* Each integer token of n >= 1 bytes grows by 2: at most 3x. */
    if (len > (SIZE_MAX - 1) / 3) {
        return NULL;
    }
    char *out = malloc(3 * len + 1);
    if (out == NULL) {
        return NULL;
    }
    size_t o = 0;
    size_t i = 0;
    while (i < len) {
        char ch = in[i];
        if (ch == '"') {
            /* Copy the string through its closing quote, escapes included. */
            out[o++] = in[i++];
            while (i < len && in[i] != '"') {
                if (in[i] == '\\' && i + 1 < len) {
                    out[o++] = in[i++];
                }
                out[o++] = in[i++];
            }
            if (i < len) {
                out[o++] = in[i++];
            }
        } else if (ch == '-' || (ch >= '0' && ch <= '9')) {
            /* A number token: the longest run of number characters. Only an
             * exact JSON integer, -?(0|[1-9][0-9]*), is quoted, so that quoting
             * never turns malformed text (01, 1-2) into a valid string. */
            size_t start = i;
            while (i < len && ((in[i] >= '0' && in[i] <= '9') || in[i] == '-' || in[i] == '+' ||
                               in[i] == '.' || in[i] == 'e' || in[i] == 'E')) {
                i++;
            }
            size_t n = i - start;
            size_t d = in[start] == '-' ? 1 : 0;
            int integral = d < n && (in[start + d] != '0' || d + 1 == n);
            for (size_t k = d; integral && k < n; k++) {
                integral = in[start + k] >= '0' && in[start + k] <= '9';
            }
            if (integral) {
                out[o++] = '"';
            }
            memcpy(out + o, in + start, n);
            o += n;
            if (integral) {
                out[o++] = '"';
            }
        } else {
            out[o++] = in[i++];
        }
    }
    out[o] = '\0';
    return out;
}

cJSON *ctl_reply_parse(const char *line, size_t len, char *err, size_t errlen)
{
    char *text = ctl_json_quote_ints(line, len);
    if (text == NULL) {
        snprintf(err, errlen, "out of memory reading the reply");
        return NULL;
    }
    const char *end = NULL;
    cJSON *r = cJSON_ParseWithOpts(text, &end, 0);
    if (r != NULL && end != NULL) {
        /* cJSON accepts trailing garbage; only whitespace may follow. */
        for (const char *p = end; *p != '\0'; p++) {
            if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
                cJSON_Delete(r);
                r = NULL;
                break;
            }
        }
    }
    free(text);
    if (r == NULL) {
        snprintf(err, errlen, "the reply is not valid JSON");
        return NULL;
    }
    if (!cJSON_IsObject(r) || !cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(r, "ok"))) {
        cJSON_Delete(r);
        snprintf(err, errlen, "the reply is not an object with a boolean \"ok\"");
        return NULL;
    }
    return r;
}

int ctl_reply_ok(const cJSON *reply)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"));
}

int ctl_json_i64(const cJSON *o, const char *key, int64_t *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (it == NULL) {
        return -1;
    }
    if (cJSON_IsString(it) && it->valuestring != NULL) {
        const char *s = it->valuestring;
        const char *p = s[0] == '-' ? s + 1 : s;
        if (*p == '\0') {
            return -1;
        }
        for (; *p != '\0'; p++) {
            if (*p < '0' || *p > '9') {
                return -1;
            }
        }
        errno = 0;
        char *end = NULL;
        long long v = strtoll(s, &end, 10);
        if (errno != 0 || end == NULL || *end != '\0') {
            return -1;
        }
        *out = (int64_t)v;
        return 0;
    }
    if (cJSON_IsNumber(it)) {
        double d = it->valuedouble;
        if (!(d > -9007199254740992.0 && d < 9007199254740992.0)) {
            return -1;
        }
        int64_t v = (int64_t)d;
        if ((double)v != d) {
            return -1;
        }
        *out = v;
        return 0;
    }
    return -1;
}

static const char *ctl_json_str(const cJSON *o, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

void ctl_format_start(int64_t start_ms, char *buf, size_t len)
{
    if (start_ms <= 0) {
        snprintf(buf, len, "none");
        return;
    }
    time_t secs = (time_t)(start_ms / 1000);
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL) {
        snprintf(buf, len, "%" PRId64 " ms", start_ms);
        return;
    }
    char day[32];
    if (strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        snprintf(buf, len, "%" PRId64 " ms", start_ms);
        return;
    }
    snprintf(buf, len, "%s.%03dZ", day, (int)(start_ms % 1000));
}

/* ---- tables -----------------------------------------------------------------
 * Rows of string cells (row 0 the header, when there is one), printed with each
 * column as wide as its widest cell, two spaces apart, no trailing blanks. */

#define CTL_TABLE_COLS_MAX 16

typedef struct ctl_table {
    size_t ncols;
    const char *align; /* ncols of 'l' or 'r' */
    size_t nrows, cap;
    char **cells; /* nrows * ncols, owned */
    int oom;
} ctl_table;

static void ctl_table_init(ctl_table *t, size_t ncols, const char *align)
{
    memset(t, 0, sizeof *t);
    t->ncols = ncols < CTL_TABLE_COLS_MAX ? ncols : CTL_TABLE_COLS_MAX;
    t->align = align;
}

static void ctl_table_add(ctl_table *t, const char *const *row)
{
    if (t->oom) {
        return;
    }
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **cells = realloc(t->cells, cap * t->ncols * sizeof *cells);
        if (cells == NULL) {
            t->oom = 1;
            return;
        }
        t->cells = cells;
        t->cap = cap;
    }
    char **dst = t->cells + t->nrows * t->ncols;
    for (size_t c = 0; c < t->ncols; c++) {
        dst[c] = strdup(row[c] ? row[c] : "");
        if (dst[c] == NULL) {
            for (size_t k = 0; k < c; k++) {
                free(dst[k]);
            }
            t->oom = 1;
            return;
        }
    }
    t->nrows++;
}

static void ctl_table_print(const ctl_table *t, FILE *f, const char *indent, size_t first_min)
{
    size_t w[CTL_TABLE_COLS_MAX] = {0};
    w[0] = first_min;
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            size_t n = strlen(t->cells[r * t->ncols + c]);
            if (n > w[c]) {
                w[c] = n;
            }
        }
    }
    for (size_t r = 0; r < t->nrows; r++) {
        char *const *row = t->cells + r * t->ncols;
        /* The last non-empty left-aligned cell needs no padding after it. */
        size_t last = t->ncols;
        while (last > 0 && row[last - 1][0] == '\0') {
            last--;
        }
        fputs(indent, f);
        for (size_t c = 0; c < last; c++) {
            int width = (int)w[c];
            if (c > 0) {
                fputs("  ", f);
            }
            if (t->align[c] == 'r') {
                fprintf(f, "%*s", width, row[c]);
            } else if (c + 1 == last) {
                fputs(row[c], f);
            } else {
                fprintf(f, "%-*s", width, row[c]);
            }
        }
        fputc('\n', f);
    }
}

static void ctl_table_free(ctl_table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++) {
        free(t->cells[i]);
    }
    free(t->cells);
    memset(t, 0, sizeof *t);
}

/* ---- replies ------------------------------------------------------------- */

static int ctl_malformed(FILE *err, const char *what, const char *field)
{
    fprintf(err, "stockctl: malformed %s reply from the scheduler: field '%s' missing or invalid\n",
            what, field);
    return 2;
}

int ctl_print_error(FILE *err, const cJSON *reply)
{
    const char *code = ctl_json_str(reply, "error");
    const char *msg = ctl_json_str(reply, "message");
    fprintf(err, "stockctl: the scheduler answered %s: %s\n", code ? code : "(no code)",
            msg ? msg : "(no message)");
    return 1;
}

/* Copies integer field key of o into buf as decimal text, without reading it
 * into a C type, so any integer the scheduler prints (uint64 counters too) is
 * shown exactly. 0, or -1 when absent, not an integer, or too long. */
static int ctl_json_int_text(const cJSON *o, const char *key, char *buf, size_t len)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsString(it) && it->valuestring != NULL) {
        const char *s = it->valuestring;
        const char *p = s[0] == '-' ? s + 1 : s;
        size_t n = strlen(s);
        if (*p == '\0' || n >= len || n > 21) {
            return -1;
        }
        for (; *p != '\0'; p++) {
            if (*p < '0' || *p > '9') {
                return -1;
            }
        }
        memcpy(buf, s, n + 1);
        return 0;
    }
    int64_t v;
    if (ctl_json_i64(o, key, &v) != 0) {
        return -1;
    }
    snprintf(buf, len, "%" PRId64, v);
    return 0;
}

/* Reads fields[0..n) of o as integer text into cells. Returns the index of
 * the first bad field, or -1 when all were read. */
static int ctl_cells_int(const cJSON *o, const char *const *fields, size_t n,
                         char (*cells)[CTL_CELL_BYTES])
{
    for (size_t i = 0; i < n; i++) {
        if (ctl_json_int_text(o, fields[i], cells[i], CTL_CELL_BYTES) != 0) {
            return (int)i;
        }
    }
    return -1;
}

static int ctl_print_sku(FILE *out, FILE *err, const cJSON *s)
{
    static const char *const nums[] = {"total",     "avail",          "pending",
                                       "remaining", "per_user_limit", "start_ms"};
    int64_t v[6];
    const char *id = ctl_json_str(s, "sku");
    if (id == NULL) {
        return ctl_malformed(err, "registry", "sku");
    }
    for (size_t i = 0; i < 6; i++) {
        if (ctl_json_i64(s, nums[i], &v[i]) != 0) {
            return ctl_malformed(err, "registry", nums[i]);
        }
    }
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(s, "partitions");
    if (!cJSON_IsArray(parts)) {
        return ctl_malformed(err, "registry", "partitions");
    }
    char limit[CTL_CELL_BYTES], start[CTL_CELL_BYTES];
    if (v[4] == 0) {
        snprintf(limit, sizeof limit, "none");
    } else {
        snprintf(limit, sizeof limit, "%" PRId64, v[4]);
    }
    ctl_format_start(v[5], start, sizeof start);
    const char *name = ctl_json_str(s, "name");
    fprintf(out, "sku %s", id);
    if (name != NULL && name[0] != '\0' && strcmp(name, id) != 0) {
        fprintf(out, " \"%s\"", name);
    }
    fprintf(out,
            "  total %" PRId64 "  pool avail %" PRId64 "  pending %" PRId64 "  remaining %" PRId64
            "  per-user limit %s  start %s\n",
            v[0], v[1], v[2], v[3], limit, start);

    /* Columns: P master node state active s0 s1 deducted seq flips grants, then
     * the sync lag: details not acked by MySQL and the age of the oldest ("-"
     * when the scheduler could not read them). */
    static const char *const heads[] = {"P",      "master",   "node",     "state", "active",
                                        "s0",     "s1",       "deducted", "seq",   "flips",
                                        "grants", "unsynced", "oldest_ms"};
    static const char *const ints[] = {"index",    "node", "active", "s0",    "s1",
                                       "deducted", "seq",  "flips",  "grants"};
    ctl_table t;
    ctl_table_init(&t, 13, "rlrlrrrrrrrrr");
    ctl_table_add(&t, heads);
    const cJSON *p;
    cJSON_ArrayForEach(p, parts)
    {
        char c[9][CTL_CELL_BYTES];
        int bad = ctl_cells_int(p, ints, 9, c);
        const char *master = ctl_json_str(p, "master");
        const char *state = ctl_json_str(p, "state");
        if (bad >= 0 || master == NULL || state == NULL) {
            ctl_table_free(&t);
            return ctl_malformed(err, "registry",
                                 bad >= 0         ? ints[bad]
                                 : master == NULL ? "master"
                                                  : "state");
        }
        char lag[2][CTL_CELL_BYTES];
        if (ctl_json_int_text(p, "details_pending", lag[0], CTL_CELL_BYTES) != 0) {
            snprintf(lag[0], CTL_CELL_BYTES, "-");
        }
        if (ctl_json_int_text(p, "oldest_pending_age_ms", lag[1], CTL_CELL_BYTES) != 0) {
            snprintf(lag[1], CTL_CELL_BYTES, "-");
        }
        const char *row[13] = {c[0], master, c[1], state, c[2],   c[3],  c[4],
                               c[5], c[6],   c[7], c[8],  lag[0], lag[1]};
        ctl_table_add(&t, row);
    }
    if (t.oom) {
        ctl_table_free(&t);
        fprintf(err, "stockctl: out of memory formatting the registry\n");
        return 2;
    }
    ctl_table_print(&t, out, "  ", 0);
    ctl_table_free(&t);
    /* Pool work a failed step left (the scheduler retries it on a timer). */
    cJSON_ArrayForEach(p, parts)
    {
        const cJSON *pw = cJSON_GetObjectItemCaseSensitive(p, "pending_work");
        if (!cJSON_IsObject(pw)) {
            continue;
        }
        static const char *const pk[] = {"grant_id", "grant_units", "doubt_grant_id", "return_id",
                                         "age_ms"};
        char w[5][CTL_CELL_BYTES], idx[CTL_CELL_BYTES];
        int bad = ctl_cells_int(pw, pk, 5, w);
        if (bad >= 0 || ctl_json_int_text(p, "index", idx, CTL_CELL_BYTES) != 0) {
            return ctl_malformed(err, "registry", bad >= 0 ? pk[bad] : "index");
        }
        fprintf(out,
                "  pending on P%s: grant %s (%s units) to apply, grant %s in doubt, return %s; "
                "for %s ms\n",
                idx, w[0], w[1], w[2], w[3], w[4]);
    }
    return 0;
}

int ctl_print_registry(FILE *out, FILE *err, const cJSON *reply)
{
    const cJSON *skus = cJSON_GetObjectItemCaseSensitive(reply, "skus");
    if (!cJSON_IsArray(skus)) {
        return ctl_malformed(err, "registry", "skus");
    }
    if (cJSON_GetArraySize(skus) == 0) {
        fprintf(out, "no SKUs loaded\n");
        return 0;
    }
    const cJSON *s;
    int first = 1;
    cJSON_ArrayForEach(s, skus)
    {
        if (!first) {
            fputc('\n', out);
        }
        first = 0;
        int rc = ctl_print_sku(out, err, s);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int ctl_print_sku_load(FILE *out, FILE *err, const char *sku, const cJSON *reply)
{
    const cJSON *created = cJSON_GetObjectItemCaseSensitive(reply, "created");
    if (!cJSON_IsBool(created)) {
        return ctl_malformed(err, "sku_load", "created");
    }
    int64_t total = 0, parts = 0;
    int sized =
        ctl_json_i64(reply, "total", &total) == 0 && ctl_json_i64(reply, "partitions", &parts) == 0;
    char what[2 * CTL_CELL_BYTES] = "";
    if (sized) {
        snprintf(what, sizeof what, ": total %" PRId64 ", %" PRId64 " partition%s", total, parts,
                 parts == 1 ? "" : "s");
    }
    if (cJSON_IsTrue(created)) {
        const cJSON *row = cJSON_GetObjectItemCaseSensitive(reply, "row_created");
        const char *from = !cJSON_IsBool(row)  ? ""
                           : cJSON_IsTrue(row) ? ", catalog row created"
                                               : " from its catalog row";
        fprintf(out, "sku %s loaded%s%s\n", sku, from, what);
    } else {
        fprintf(out, "sku %s already loaded (nothing changed)%s\n", sku, what);
    }
    const char *note = ctl_json_str(reply, "note");
    if (note != NULL && note[0] != '\0') {
        fprintf(err, "stockctl: note: %s\n", note);
    }
    return 0;
}

int ctl_print_sku_restock(FILE *out, FILE *err, const cJSON *reply)
{
    const char *id = ctl_json_str(reply, "restock_id");
    const cJSON *applied = cJSON_GetObjectItemCaseSensitive(reply, "applied");
    int64_t units = 0;
    if (id == NULL) {
        return ctl_malformed(err, "sku_restock", "restock_id");
    }
    if (!cJSON_IsBool(applied)) {
        return ctl_malformed(err, "sku_restock", "applied");
    }
    if (ctl_json_i64(reply, "units", &units) != 0) {
        return ctl_malformed(err, "sku_restock", "units");
    }
    if (cJSON_IsTrue(applied)) {
        fprintf(out, "restock %s: %" PRId64 " units added\n", id, units);
    } else {
        fprintf(out, "restock %s already applied (nothing changed)\n", id);
    }
    return 0;
}

/* ---- audit -----------------------------------------------------------------
 * The scheduler sends its sums, and one entry per check ("checks": name, label,
 * state ok|broken|not_verified, detail). A reply without "checks" (a scheduler
 * from before the MySQL comparison) gets the three Redis checks rebuilt from
 * its "invariants". Either way the Redis sums are checked here again (both
 * sides of the boundary check the same fact): a check holds only when the
 * scheduler and the sums agree. */

#define CTL_AUDIT_CHECKS_MAX 16
#define CTL_CHECK_OK         0
#define CTL_CHECK_BROKEN     1
#define CTL_CHECK_UNVERIFIED 2

typedef struct ctl_check {
    const char *name, *label, *detail;
    int state;
} ctl_check;

/* The audit's sums and verdicts, read once for printing and for --json. */
typedef struct ctl_audit {
    int64_t total, avail, grants, returns, parts, deducted, details, npart;
    int stable, ok_server;
    int has_mysql;      /* the reply says whether MySQL was verified */
    int mysql_verified; /* and it was: the MySQL numbers below are there */
    int64_t my_ded, my_rows, unsynced, unsynced_qty;
    const char *mysql_error;
    const char *broken;
    ctl_check chk[CTL_AUDIT_CHECKS_MAX];
    size_t nchk;
    char cons[4 * CTL_CELL_BYTES], over[2 * CTL_CELL_BYTES], exact[3 * CTL_CELL_BYTES];
} ctl_audit;

static ctl_check *ctl_audit_check(ctl_audit *a, const char *name)
{
    for (size_t i = 0; i < a->nchk; i++) {
        if (strcmp(a->chk[i].name, name) == 0) {
            return &a->chk[i];
        }
    }
    return NULL;
}

/* Marks check name broken with our own reason when the scheduler said ok. */
static void ctl_audit_overrule(ctl_audit *a, const char *name, const char *why)
{
    ctl_check *c = ctl_audit_check(a, name);
    if (c != NULL && c->state == CTL_CHECK_OK) {
        c->state = CTL_CHECK_BROKEN;
        c->detail = why;
    }
}

/* Reads the "checks" array; returns the bad field's name or NULL. */
static const char *ctl_audit_read_checks(const cJSON *checks, ctl_audit *a)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, checks)
    {
        if (a->nchk == CTL_AUDIT_CHECKS_MAX) {
            return "checks";
        }
        ctl_check *k = &a->chk[a->nchk];
        k->name = ctl_json_str(c, "name");
        k->label = ctl_json_str(c, "label");
        k->detail = ctl_json_str(c, "detail");
        const char *st = ctl_json_str(c, "state");
        if (k->name == NULL || k->label == NULL || k->detail == NULL || st == NULL) {
            return "checks";
        }
        if (strcmp(st, "ok") == 0) {
            k->state = CTL_CHECK_OK;
        } else if (strcmp(st, "broken") == 0) {
            k->state = CTL_CHECK_BROKEN;
        } else if (strcmp(st, "not_verified") == 0) {
            k->state = CTL_CHECK_UNVERIFIED;
        } else {
            return "checks";
        }
        a->nchk++;
    }
    return NULL;
}

/* Reads an audit reply; returns the bad field's name or NULL. */
static const char *ctl_audit_read(const cJSON *reply, ctl_audit *a)
{
    static const char *const f[] = {
        "total",           "avail",    "pending_grant_units", "pending_return_units",
        "partition_units", "deducted", "details_pending",     "partitions"};
    int64_t *dst[] = {&a->total, &a->avail,    &a->grants,  &a->returns,
                      &a->parts, &a->deducted, &a->details, &a->npart};
    memset(a, 0, sizeof *a);
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (ctl_json_i64(reply, f[i], dst[i]) != 0) {
            return f[i];
        }
    }
    const cJSON *stable = cJSON_GetObjectItemCaseSensitive(reply, "stable");
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(reply, "invariants_ok");
    if (!cJSON_IsBool(stable)) {
        return "stable";
    }
    if (!cJSON_IsBool(ok)) {
        return "invariants_ok";
    }
    a->stable = cJSON_IsTrue(stable);
    a->ok_server = cJSON_IsTrue(ok);
    a->broken = ctl_json_str(reply, "broken");
    const cJSON *mv = cJSON_GetObjectItemCaseSensitive(reply, "mysql_verified");
    if (mv != NULL) {
        if (!cJSON_IsBool(mv)) {
            return "mysql_verified";
        }
        a->has_mysql = 1;
        a->mysql_verified = cJSON_IsTrue(mv);
        a->mysql_error = ctl_json_str(reply, "mysql_error");
    }
    if (a->mysql_verified) {
        static const char *const g[] = {"mysql_deducted", "mysql_detail_rows", "unsynced_details",
                                        "unsynced_qty"};
        int64_t *gd[] = {&a->my_ded, &a->my_rows, &a->unsynced, &a->unsynced_qty};
        for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
            if (ctl_json_i64(reply, g[i], gd[i]) != 0) {
                return g[i];
            }
        }
    }
    /* Sums of values each below 2^62 in any sane reply; computed unsigned so
     * garbage wraps instead of overflowing, and then reads as broken. */
    uint64_t sum = (uint64_t)a->avail + (uint64_t)a->grants + (uint64_t)a->returns +
                   (uint64_t)a->parts + (uint64_t)a->deducted;
    int conservation = sum == (uint64_t)a->total;
    int no_oversell = a->deducted <= a->total;
    int no_negative = a->total >= 0 && a->avail >= 0 && a->grants >= 0 && a->returns >= 0 &&
                      a->parts >= 0 && a->deducted >= 0 && a->details >= 0;
    snprintf(a->cons, sizeof a->cons,
             "total %" PRId64 " %s pool %" PRId64 " + grants %" PRId64 " + returns %" PRId64
             " + partitions %" PRId64 " + deducted %" PRId64,
             a->total, conservation ? "=" : "!=", a->avail, a->grants, a->returns, a->parts,
             a->deducted);
    snprintf(a->over, sizeof a->over, "deducted %" PRId64 " %s total %" PRId64, a->deducted,
             no_oversell ? "<=" : ">", a->total);

    const cJSON *checks = cJSON_GetObjectItemCaseSensitive(reply, "checks");
    if (checks != NULL) {
        if (!cJSON_IsArray(checks)) {
            return "checks";
        }
        const char *bad = ctl_audit_read_checks(checks, a);
        if (bad != NULL) {
            return bad;
        }
    } else {
        /* An older scheduler: its verdicts per invariant, Redis only. */
        const cJSON *inv = cJSON_GetObjectItemCaseSensitive(reply, "invariants");
        static const char *const names[] = {"conservation", "no_negative", "no_oversell"};
        static const char *const labels[] = {"conservation", "no negative counter", "no oversell"};
        const char *details[] = {a->cons, a->ok_server || a->broken == NULL ? "" : a->broken,
                                 a->over};
        for (size_t i = 0; i < 3; i++) {
            ctl_check *k = &a->chk[a->nchk++];
            k->name = names[i];
            k->label = labels[i];
            k->detail = details[i];
            k->state = cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(inv, names[i]))
                           ? CTL_CHECK_BROKEN
                           : CTL_CHECK_OK;
        }
    }
    if (!conservation) {
        ctl_audit_overrule(a, "conservation", a->cons);
    }
    if (!no_oversell) {
        ctl_audit_overrule(a, "no_oversell", a->over);
    }
    if (!no_negative) {
        ctl_audit_overrule(a, "no_negative", "a sum is negative");
    }
    if (a->mysql_verified &&
        (uint64_t)a->deducted != (uint64_t)a->my_ded + (uint64_t)a->unsynced_qty) {
        snprintf(a->exact, sizeof a->exact,
                 "Redis %" PRId64 " != MySQL %" PRId64 " + pending %" PRId64, a->deducted,
                 a->my_ded, a->unsynced_qty);
        ctl_audit_overrule(a, "exactness", a->exact);
    }
    int all_ok = 1;
    for (size_t i = 0; i < a->nchk; i++) {
        all_ok &= a->chk[i].state == CTL_CHECK_OK;
    }
    if (!a->ok_server && all_ok) {
        /* The server saw what the sums cannot show (a negative counter in one
         * partition): its verdict stands on the first check it could fail. */
        ctl_audit_overrule(a, "no_negative",
                           a->broken && a->broken[0] ? a->broken : "reported by the scheduler");
    }
    return NULL;
}

static int ctl_audit_all_ok(const ctl_audit *a)
{
    if (!a->ok_server || a->nchk == 0) {
        return 0;
    }
    for (size_t i = 0; i < a->nchk; i++) {
        if (a->chk[i].state != CTL_CHECK_OK) {
            return 0;
        }
    }
    return 1;
}

/* "a, b, c" of the labels of the checks in state st; the first one's detail in *first. */
static void ctl_audit_names(const ctl_audit *a, int st, char *buf, size_t len, const char **first)
{
    buf[0] = '\0';
    *first = NULL;
    for (size_t i = 0; i < a->nchk; i++) {
        if (a->chk[i].state != st) {
            continue;
        }
        size_t used = strlen(buf);
        snprintf(buf + used, len - used, "%s%s", used > 0 ? ", " : "", a->chk[i].label);
        if (*first == NULL) {
            *first = a->chk[i].detail;
        }
    }
}

int ctl_print_audit(FILE *out, FILE *err, const cJSON *reply)
{
    ctl_audit a;
    const char *bad = ctl_audit_read(reply, &a);
    const char *sku = ctl_json_str(reply, "sku");
    if (bad != NULL || sku == NULL) {
        return ctl_malformed(err, "audit", bad ? bad : "sku");
    }
    fprintf(out, "audit %s: %" PRId64 " partition%s, %s\n", sku, a.npart, a.npart == 1 ? "" : "s",
            a.stable ? "stable read" : "UNSTABLE read (Redis changed while it was read)");

    const char *labels[] = {"total",
                            "pool avail",
                            "units in pending grants",
                            "units in pending returns",
                            "units in partitions",
                            "net deducted in Redis",
                            "details pending in Redis",
                            "net deducted in MySQL",
                            "detail rows in MySQL"};
    int64_t vals[] = {a.total,
                      a.avail,
                      a.grants,
                      a.returns,
                      a.parts,
                      a.deducted,
                      a.mysql_verified ? a.unsynced : a.details,
                      a.my_ded,
                      a.my_rows};
    size_t nrows = a.has_mysql ? 9 : 7;
    size_t first = 0;
    for (size_t i = 0; i < nrows; i++) {
        size_t n = strlen(labels[i]);
        first = n > first ? n : first;
    }
    for (size_t i = 0; i < a.nchk; i++) {
        size_t n = strlen(a.chk[i].label);
        first = n > first ? n : first;
    }
    ctl_table q;
    ctl_table_init(&q, 2, "lr");
    for (size_t i = 0; i < nrows; i++) {
        char v[CTL_CELL_BYTES];
        if (i >= 7 && !a.mysql_verified) {
            snprintf(v, sizeof v, "not verified");
        } else {
            snprintf(v, sizeof v, "%" PRId64, vals[i]);
        }
        const char *row[2] = {labels[i], v};
        ctl_table_add(&q, row);
    }
    ctl_table inv;
    ctl_table_init(&inv, 3, "lll");
    static const char *const states[] = {"ok", "BROKEN", "NOT VERIFIED"};
    for (size_t i = 0; i < a.nchk; i++) {
        const char *row[3] = {a.chk[i].label, states[a.chk[i].state], a.chk[i].detail};
        ctl_table_add(&inv, row);
    }
    if (q.oom || inv.oom) {
        ctl_table_free(&q);
        ctl_table_free(&inv);
        fprintf(err, "stockctl: out of memory formatting the audit\n");
        return 2;
    }
    ctl_table_print(&q, out, "  ", first);
    ctl_table_print(&inv, out, "  ", first);
    ctl_table_free(&q);
    ctl_table_free(&inv);

    if (ctl_audit_all_ok(&a)) {
        return 0;
    }
    char names[256];
    const char *detail = NULL;
    ctl_audit_names(&a, CTL_CHECK_BROKEN, names, sizeof names, &detail);
    char unverified[256];
    const char *why_unverified = NULL;
    ctl_audit_names(&a, CTL_CHECK_UNVERIFIED, unverified, sizeof unverified, &why_unverified);
    /* A scheduler's "not ok" with nothing broken and nothing unverified is
     * still reported, as the scheduler's word. */
    if (names[0] != '\0' || (!a.ok_server && unverified[0] == '\0')) {
        fprintf(err, "stockctl: invariant broken for %s: %s%s%s%s\n", sku,
                names[0] ? names : "reported by the scheduler", detail && detail[0] ? " (" : "",
                detail ? detail : "", detail && detail[0] ? ")" : "");
    }
    if (a.has_mysql && !a.mysql_verified) {
        fprintf(err,
                "stockctl: MySQL not verified for %s: %s; the MySQL checks did not run (start a "
                "sync worker and audit again)\n",
                sku, a.mysql_error ? a.mysql_error : "no reason given");
    } else if (unverified[0] != '\0') {
        fprintf(err, "stockctl: not verified for %s: %s (%s)\n", sku, unverified,
                why_unverified ? why_unverified : "no reason given");
    }
    if (!a.stable) {
        fprintf(err, "stockctl: the read was not stable (traffic); run the audit again when the "
                     "sale is quiet\n");
    }
    return 1;
}

int ctl_print_db_migrate(FILE *out, FILE *err, const cJSON *reply)
{
    int64_t before = 0;
    int64_t after = 0;
    if (ctl_json_i64(reply, "schema_before", &before) != 0) {
        return ctl_malformed(err, "db migrate", "schema_before");
    }
    if (ctl_json_i64(reply, "schema_after", &after) != 0) {
        return ctl_malformed(err, "db migrate", "schema_after");
    }
    if (after == before) {
        fprintf(out, "schema version %" PRId64 " (up to date)\n", after);
    } else {
        fprintf(out, "schema version %" PRId64 " (was %" PRId64 ")\n", after, before);
    }
    return 0;
}

/* ---- partition reconcile ---------------------------------------------------- */

/* The reconcile reply's integers, in the order the table shows them. */
enum {
    RC_SYNCED = 0,
    RC_MAXSEQ,
    RC_KEPT,
    RC_SEQ_BEFORE,
    RC_ACK_BEFORE,
    RC_RENUM,
    RC_RENUM_FIRST,
    RC_RENUM_LAST,
    RC_SEQ_AFTER,
    RC_DUPS,
    RC_RESTORED,
    RC_FIXED,
    RC_DED_BEFORE,
    RC_DED_AFTER,
    RC_FROM_PART,
    RC_FROM_POOL,
    RC_GRANT,
    RC_BACK,
    RC_OVERSOLD,
    RC_CLAIMS_SET,
    RC_CLAIMS_ELSE,
    RC_USERS,
    RC_PARTITION,
    RC_NFIELDS_
};

static const char *const ctl_rc_fields[RC_NFIELDS_] = {
    [RC_SYNCED] = "mysql_synced_seq",
    [RC_MAXSEQ] = "mysql_max_seq",
    [RC_KEPT] = "kept_from_mysql",
    [RC_SEQ_BEFORE] = "redis_seq_before",
    [RC_ACK_BEFORE] = "redis_ack_before",
    [RC_RENUM] = "renumbered",
    [RC_RENUM_FIRST] = "renumbered_first",
    [RC_RENUM_LAST] = "renumbered_last",
    [RC_SEQ_AFTER] = "seq_after",
    [RC_DUPS] = "dropped_duplicates",
    [RC_RESTORED] = "records_restored",
    [RC_FIXED] = "records_fixed",
    [RC_DED_BEFORE] = "ded_before",
    [RC_DED_AFTER] = "ded_after",
    [RC_FROM_PART] = "units_from_partition",
    [RC_FROM_POOL] = "units_from_pool",
    [RC_GRANT] = "grant_id",
    [RC_BACK] = "units_given_back",
    [RC_OVERSOLD] = "oversold",
    [RC_CLAIMS_SET] = "claims_set",
    [RC_CLAIMS_ELSE] = "claims_elsewhere",
    [RC_USERS] = "user_entries_fixed",
    [RC_PARTITION] = "partition",
};

int ctl_print_reconcile(FILE *out, FILE *err, const cJSON *reply)
{
    int64_t v[RC_NFIELDS_];
    for (int i = 0; i < RC_NFIELDS_; i++) {
        if (ctl_json_i64(reply, ctl_rc_fields[i], &v[i]) != 0) {
            return ctl_malformed(err, "partition_reconcile", ctl_rc_fields[i]);
        }
    }
    const char *sku = ctl_json_str(reply, "sku");
    const char *id = ctl_json_str(reply, "reconcile_id");
    const cJSON *reopened = cJSON_GetObjectItemCaseSensitive(reply, "reopened");
    const cJSON *already = cJSON_GetObjectItemCaseSensitive(reply, "already_applied");
    if (sku == NULL || id == NULL || !cJSON_IsBool(reopened)) {
        return ctl_malformed(err, "partition_reconcile",
                             sku == NULL  ? "sku"
                             : id == NULL ? "reconcile_id"
                                          : "reopened");
    }
    fprintf(out, "partition %" PRId64 " of %s reconciled (%s)%s\n", v[RC_PARTITION], sku, id,
            cJSON_IsTrue(already) ? ": applied by an earlier attempt, its answer" : "");
    char c[12][2 * CTL_CELL_BYTES];
    snprintf(c[0], sizeof c[0], "synced_seq %" PRId64 ", max seq %" PRId64, v[RC_SYNCED],
             v[RC_MAXSEQ]);
    snprintf(c[1], sizeof c[1], "%" PRId64 " details, with their seqs", v[RC_KEPT]);
    snprintf(c[2], sizeof c[2], "seq %" PRId64 ", ack %" PRId64, v[RC_SEQ_BEFORE],
             v[RC_ACK_BEFORE]);
    if (v[RC_RENUM] > 0) {
        snprintf(c[3], sizeof c[3],
                 "%" PRId64 " only Redis answered, now seqs %" PRId64 "..%" PRId64, v[RC_RENUM],
                 v[RC_RENUM_FIRST], v[RC_RENUM_LAST]);
    } else {
        snprintf(c[3], sizeof c[3], "none");
    }
    snprintf(c[4], sizeof c[4], "%" PRId64 " (Redis deducted them again; kept once, MySQL's)",
             v[RC_DUPS]);
    snprintf(c[5], sizeof c[5], "%" PRId64 " restored from MySQL, %" PRId64 " rewritten",
             v[RC_RESTORED], v[RC_FIXED]);
    snprintf(c[6], sizeof c[6], "%" PRId64 " -> %" PRId64 " (seq %" PRId64 ")", v[RC_DED_BEFORE],
             v[RC_DED_AFTER], v[RC_SEQ_AFTER]);
    snprintf(c[7], sizeof c[7], "%" PRId64 " from the partition, %" PRId64 " from the pool%s",
             v[RC_FROM_PART], v[RC_FROM_POOL], v[RC_GRANT] > 0 ? " (grant" : "");
    if (v[RC_GRANT] > 0) {
        size_t n = strlen(c[7]);
        snprintf(c[7] + n, sizeof c[7] - n, " %" PRId64 ")", v[RC_GRANT]);
    }
    snprintf(c[8], sizeof c[8], "%" PRId64, v[RC_BACK]);
    snprintf(c[9], sizeof c[9], "%" PRId64, v[RC_OVERSOLD]);
    snprintf(c[10], sizeof c[10], "%" PRId64 " set, %" PRId64 " naming another partition",
             v[RC_CLAIMS_SET], v[RC_CLAIMS_ELSE]);
    snprintf(c[11], sizeof c[11], "%" PRId64 " fixed", v[RC_USERS]);
    static const char *const labels[] = {
        "MySQL",    "kept",        "Redis before",     "renumbered", "duplicates", "order records",
        "deducted", "units taken", "units given back", "oversold",   "claims",     "user entries"};
    ctl_table t;
    ctl_table_init(&t, 2, "ll");
    for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++) {
        const char *row[2] = {labels[i], c[i]};
        ctl_table_add(&t, row);
    }
    const char *row[2] = {"state", cJSON_IsTrue(reopened) ? "open" : "NOT open"};
    ctl_table_add(&t, row);
    if (t.oom) {
        ctl_table_free(&t);
        fprintf(err, "stockctl: out of memory formatting the reply\n");
        return 2;
    }
    ctl_table_print(&t, out, "  ", 0);
    ctl_table_free(&t);
    const cJSON *moved = cJSON_GetObjectItemCaseSensitive(reply, "mysql_moved");
    int64_t after = 0;
    if (cJSON_IsTrue(moved) && ctl_json_i64(reply, "mysql_synced_after", &after) == 0) {
        fprintf(err,
                "stockctl: MySQL's synced_seq of %s moved from %" PRId64 " to %" PRId64
                " during the reconcile (a batch sent before the partition was marked landed): "
                "it will diverge again; run the reconcile again\n",
                sku, v[RC_SYNCED], after);
    }
    if (v[RC_OVERSOLD] > 0) {
        fprintf(err,
                "stockctl: %" PRId64 " units oversold on %s: answered deductions that neither "
                "the partition nor the pool could back (the audit's conservation and "
                "no-oversell checks will say so)\n",
                v[RC_OVERSOLD], sku);
        return 1;
    }
    return cJSON_IsTrue(moved) ? 1 : 0;
}

int ctl_print_stats(FILE *out, FILE *err, const cJSON *reply)
{
    ctl_table t;
    ctl_table_init(&t, 2, "lr");
    const cJSON *it;
    cJSON_ArrayForEach(it, reply)
    {
        if (it->string == NULL || strcmp(it->string, "ok") == 0) {
            continue;
        }
        char buf[CTL_CELL_BYTES];
        const char *v = buf;
        if (cJSON_IsString(it) && it->valuestring != NULL) {
            v = it->valuestring; /* integers arrive quoted (ctl_json_quote_ints) */
        } else if (cJSON_IsBool(it)) {
            v = cJSON_IsTrue(it) ? "true" : "false";
        } else if (cJSON_IsNumber(it)) {
            snprintf(buf, sizeof buf, "%.6g", it->valuedouble);
        } else {
            continue; /* nested values are for --json */
        }
        const char *row[2] = {it->string, v};
        ctl_table_add(&t, row);
    }
    if (t.oom) {
        ctl_table_free(&t);
        fprintf(err, "stockctl: out of memory formatting the stats\n");
        return 2;
    }
    ctl_table_print(&t, out, "", 0);
    ctl_table_free(&t);
    return 0;
}

int ctl_json_status(const cJSON *reply)
{
    if (!ctl_reply_ok(reply)) {
        return 1;
    }
    int64_t oversold = 0;
    if (cJSON_GetObjectItemCaseSensitive(reply, "reconcile_id") != NULL &&
        ((ctl_json_i64(reply, "oversold", &oversold) == 0 && oversold > 0) ||
         cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "mysql_moved")))) {
        return 1;
    }
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(reply, "invariants_ok");
    if (cJSON_IsBool(ok)) {
        ctl_audit a;
        if (ctl_audit_read(reply, &a) != NULL) {
            return cJSON_IsTrue(ok) ? 0 : 1;
        }
        return ctl_audit_all_ok(&a) ? 0 : 1;
    }
    return 0;
}
