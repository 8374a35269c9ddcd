/* sh_audit.c -- conservation and sign checks of one SKU, read from Redis.
 *
 * The units of a SKU are in exactly one of these places at any instant (see
 * shared/sh_stock.c): the pool's avail; a journaled grant whose partition has
 * not applied it (g < id); a partition's s0 or s1; a partition's ded (sold,
 * net of releases); or the r.ID record of a journaled return taken from its
 * partition and not yet added to the pool. This file adds them up.
 *
 * It also reads what the comparison with MySQL needs from Redis (the
 * scheduler's audit does the comparing): each partition's counters from the
 * same pass as the sums, the details still in a stream between two seqs, and
 * the sync lag (seq - ack, age of the oldest unacked detail) for the registry.
 * Stream reads are paged and bounded; a malformed entry is reported, never
 * trusted. */
#include "sh_audit.h"

#include "sh_cluster.h"
#include "sh_limits.h"
#include "sh_log.h"
#include "sh_stock.h"

#include <hiredis/hiredis.h>
#include <zlib.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SH_AUDIT_READS_MAX    8      /* reads tried to get two that agree */
#define SH_AUDIT_PAGE_ENTRIES 64     /* stream entries per XRANGE page (each up to a batch) */
#define SH_AUDIT_PAGES_MAX    100000 /* bound on XRANGE pages of one pending read */
#define SH_AUDIT_NUM_BYTES    32

typedef struct sh_audit_part {
    int64_t s0, s1, ded, seq, ack, g;
    redisReply *hash; /* HGETALL of the state hash, for r.ID lookups */
} sh_audit_part;

static const char *sh_audit_field(const redisReply *h, const char *name)
{
    if (h == NULL || h->type != REDIS_REPLY_ARRAY) {
        return NULL;
    }
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const redisReply *k = h->element[i], *v = h->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING &&
            strcmp(k->str, name) == 0) {
            return v->str;
        }
    }
    return NULL;
}

static int sh_audit_i64(const redisReply *h, const char *name, int64_t dflt, int64_t *out)
{
    const char *v = sh_audit_field(h, name);
    if (v == NULL) {
        *out = dflt;
        return dflt < 0 ? -1 : 0; /* a negative default marks a required field */
    }
    char *end = NULL;
    long long x = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0') {
        return -1;
    }
    *out = (int64_t)x;
    return 0;
}

static sh_err sh_audit_hgetall(sh_cluster *c, const char *key, redisReply **out)
{
    const char *argv[] = {"HGETALL", key};
    size_t lens[] = {7, strlen(key)};
    sh_err rc = sh_cluster_command(c, key, lens[1], 2, argv, lens, out);
    if (rc == SH_OK && (*out)->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(*out);
        *out = NULL;
        return SH_EPROTO;
    }
    return rc;
}

/* One pass over every key of the SKU; parts (NULL: not wanted) gets each
 * partition's counters. */
static sh_err sh_audit_read(sh_cluster *c, const char *sku, sh_audit *out,
                            sh_audit_part_state *parts_out)
{
    memset(out, 0, sizeof *out);
    out->diverged_part = -1;
    char key[SH_STOCK_KEY_BYTES_MAX];
    redisReply *pool = NULL, *jr = NULL;
    sh_stock_key_pool(key, sku);
    sh_err rc = sh_audit_hgetall(c, key, &pool);
    if (rc != SH_OK) {
        return rc;
    }
    if (pool->elements == 0) {
        freeReplyObject(pool);
        return SH_ENOTFOUND;
    }
    int64_t nparts = 0;
    if (sh_audit_i64(pool, "total", -1, &out->total) != 0 ||
        sh_audit_i64(pool, "avail", -1, &out->avail) != 0 ||
        sh_audit_i64(pool, "pul", 0, &out->per_user_limit) != 0 ||
        sh_audit_i64(pool, "parts", -1, &nparts) != 0 || nparts < 1 ||
        nparts > SH_PARTITIONS_PER_SKU_MAX) {
        freeReplyObject(pool);
        return SH_EPROTO;
    }
    sh_audit_part *parts = calloc((size_t)nparts, sizeof *parts);
    if (parts == NULL) {
        freeReplyObject(pool);
        return SH_ENOMEM;
    }
    out->partitions = (int)nparts;
    for (int i = 0; i < nparts && rc == SH_OK; i++) {
        char f[16];
        int64_t salt = 0;
        snprintf(f, sizeof f, "t.%d", i);
        if (sh_audit_i64(pool, f, -1, &salt) != 0 || salt < 0) {
            rc = SH_EPROTO;
            break;
        }
        sh_stock_key_part(key, sku, (unsigned)i, (unsigned)salt, 's');
        rc = sh_audit_hgetall(c, key, &parts[i].hash);
        if (rc != SH_OK) {
            break;
        }
        sh_audit_part *p = &parts[i];
        if (sh_audit_i64(p->hash, "s0", -1, &p->s0) != 0 ||
            sh_audit_i64(p->hash, "s1", -1, &p->s1) != 0 ||
            sh_audit_i64(p->hash, "ded", -1, &p->ded) != 0 ||
            sh_audit_i64(p->hash, "seq", -1, &p->seq) != 0 ||
            sh_audit_i64(p->hash, "g", 0, &p->g) != 0 ||
            sh_audit_i64(p->hash, "ack", 0, &p->ack) != 0) {
            rc = SH_EPROTO;
            break;
        }
        if (parts_out != NULL) {
            parts_out[i] = (sh_audit_part_state){.index = (uint16_t)i,
                                                 .salt = (uint16_t)salt,
                                                 .s0 = p->s0,
                                                 .s1 = p->s1,
                                                 .ded = p->ded,
                                                 .seq = (uint64_t)p->seq,
                                                 .ack = (uint64_t)p->ack};
        }
        const char *state = sh_audit_field(p->hash, "state");
        if (state != NULL && strcmp(state, "diverged") == 0 && out->diverged_part < 0) {
            const char *why = sh_audit_field(p->hash, "dwhy");
            const char *detail = sh_audit_field(p->hash, "ddetail");
            out->diverged_part = i;
            (void)sh_audit_i64(p->hash, "dseq", 0, &out->diverged_seq);
            snprintf(out->diverged_why, sizeof out->diverged_why, "%s%s%s", why != NULL ? why : "?",
                     detail != NULL ? ": " : "", detail != NULL ? detail : "");
        }
        out->partition_units += p->s0 + p->s1;
        out->deducted += p->ded;
        out->seq_sum += (uint64_t)p->seq;
        out->details_pending += p->seq - p->ack;
        if (p->s0 < 0 || p->s1 < 0 || p->ded < 0 || p->ack > p->seq) {
            if (out->broken[0] == '\0') {
                snprintf(out->broken, sizeof out->broken,
                         "negative counter: partition %d s0=%" PRId64 " s1=%" PRId64
                         " ded=%" PRId64,
                         i, p->s0, p->s1, p->ded);
            }
        }
    }
    if (rc == SH_OK) {
        sh_stock_key_journal(key, sku);
        rc = sh_audit_hgetall(c, key, &jr);
    }
    for (size_t i = 0; rc == SH_OK && i + 1 < jr->elements; i += 2) {
        const redisReply *k = jr->element[i], *v = jr->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
            continue;
        }
        long long id = strtoll(k->str, NULL, 10);
        unsigned pi = 0;
        long long units = 0;
        if (sscanf(v->str, "g:%u:%lld", &pi, &units) == 2 && pi < (unsigned)nparts) {
            if (parts[pi].g < id) {
                out->pending_grant_units += units; /* not yet in its partition */
            }
        } else if (sscanf(v->str, "r:%u", &pi) == 1 && pi < (unsigned)nparts) {
            char f[32];
            int64_t taken = 0;
            snprintf(f, sizeof f, "r.%lld", id);
            if (sh_audit_i64(parts[pi].hash, f, 0, &taken) == 0) {
                out->pending_return_units += taken; /* taken, not yet in the pool */
            }
        }
    }
    for (int i = 0; i < nparts; i++) {
        if (parts[i].hash != NULL) {
            freeReplyObject(parts[i].hash);
        }
    }
    free(parts);
    freeReplyObject(pool);
    if (jr != NULL) {
        freeReplyObject(jr);
    }
    return rc;
}

static int sh_audit_same(const sh_audit *a, const sh_audit *b)
{
    return a->total == b->total && a->avail == b->avail &&
           a->pending_grant_units == b->pending_grant_units &&
           a->pending_return_units == b->pending_return_units &&
           a->partition_units == b->partition_units && a->deducted == b->deducted &&
           a->seq_sum == b->seq_sum;
}

sh_err sh_audit_sku(struct sh_cluster *c, const char *sku, sh_audit *out)
{
    return sh_audit_sku_parts(c, sku, out, NULL, 0);
}

sh_err sh_audit_sku_parts(struct sh_cluster *c, const char *sku, sh_audit *out,
                          sh_audit_part_state *parts, size_t cap)
{
    SH_ASSERT(c != NULL && sku != NULL && out != NULL);
    SH_ASSERT(parts == NULL || cap >= SH_PARTITIONS_PER_SKU_MAX);
    sh_audit prev;
    sh_err rc = sh_audit_read(c, sku, &prev, parts);
    if (rc != SH_OK) {
        return rc;
    }
    *out = prev;
    for (int i = 1; i < SH_AUDIT_READS_MAX; i++) {
        rc = sh_audit_read(c, sku, out, parts);
        if (rc != SH_OK) {
            return rc;
        }
        if (sh_audit_same(&prev, out)) {
            out->stable = 1;
            break;
        }
        prev = *out;
    }
    int64_t held = out->avail + out->pending_grant_units + out->pending_return_units +
                   out->partition_units + out->deducted;
    /* sh_audit_read set broken already when a partition counter was negative. */
    out->no_negative_ok = out->broken[0] == '\0' && out->avail >= 0 && out->total >= 0;
    out->conservation_ok = held == out->total;
    out->no_oversell_ok = out->deducted <= out->total;
    if (out->broken[0] == '\0' && !out->no_negative_ok) {
        snprintf(out->broken, sizeof out->broken, "negative counter: pool avail=%" PRId64,
                 out->avail);
    }
    if (out->broken[0] == '\0' && !out->conservation_ok) {
        snprintf(out->broken, sizeof out->broken,
                 "conservation: total=%" PRId64 " != avail %" PRId64 " + pending grants %" PRId64
                 " + pending returns %" PRId64 " + partitions %" PRId64 " + deducted %" PRId64,
                 out->total, out->avail, out->pending_grant_units, out->pending_return_units,
                 out->partition_units, out->deducted);
    }
    if (out->broken[0] == '\0' && !out->no_oversell_ok) {
        snprintf(out->broken, sizeof out->broken, "oversell: deducted %" PRId64 " > total %" PRId64,
                 out->deducted, out->total);
    }
    if (out->broken[0] == '\0' && out->diverged_part >= 0) {
        snprintf(out->broken, sizeof out->broken,
                 "diverged: partition %d at seq %" PRId64 " (%s); reconcile it", out->diverged_part,
                 out->diverged_seq, out->diverged_why);
    }
    out->ok = out->broken[0] == '\0';
    return SH_OK;
}

/* ---- pending details and lag ------------------------------------------------------ */

/* Appends the details of one stream entry (XRANGE element [id, [field, value ...]])
 * with after_seq < seq <= upto_seq to out[*n..cap); sets *truncated at cap. -1
 * when the entry is malformed. */
static int sh_audit_entry_add(const redisReply *e, uint64_t after_seq, uint64_t upto_seq,
                              sh_audit_detail *out, size_t cap, size_t *n, int *truncated)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY) {
        return -1;
    }
    const redisReply *fv = e->element[1];
    const redisReply *b = NULL;
    for (size_t i = 0; i + 1 < fv->elements; i += 2) {
        if (fv->element[i]->type == REDIS_REPLY_STRING && strcmp(fv->element[i]->str, "b") == 0) {
            b = fv->element[i + 1];
        }
    }
    if (b == NULL || b->type != REDIS_REPLY_STRING) {
        return -1;
    }
    const char *p = b->str, *end = b->str + b->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        sh_stock_detail d;
        if (sh_stock_detail_parse(p, len, &d) != SH_OK) {
            return -1;
        }
        p += len + (nl != NULL ? 1 : 0);
        if (d.seq <= after_seq || d.seq > upto_seq) {
            continue; /* an entry that straddles a bound */
        }
        if (*n >= cap) {
            *truncated = 1;
            return 0;
        }
        out[*n].seq = d.seq;
        out[*n].qty = d.qty;
        (*n)++;
    }
    return 0;
}

sh_err sh_audit_details_read(struct sh_cluster *c, const char *sku, unsigned part, unsigned salt,
                             uint64_t after_seq, uint64_t upto_seq, sh_audit_detail *out,
                             size_t cap, size_t *n, int *truncated)
{
    SH_ASSERT(c != NULL && sku != NULL && n != NULL && truncated != NULL);
    SH_ASSERT(out != NULL || cap == 0);
    SH_ASSERT(part < SH_PARTITIONS_PER_SKU_MAX);
    *n = 0;
    *truncated = 0;
    if (after_seq >= upto_seq) {
        return SH_OK; /* nothing in between */
    }
    char key[SH_STOCK_KEY_BYTES_MAX];
    size_t klen = sh_stock_key_part(key, sku, part, salt, 'd');
    char start[SH_AUDIT_NUM_BYTES], stop[SH_AUDIT_NUM_BYTES], count[SH_AUDIT_NUM_BYTES];
    snprintf(start, sizeof start, "%" PRIu64 "-0", after_seq + 1);
    snprintf(stop, sizeof stop, "%" PRIu64 "-0", upto_seq);
    snprintf(count, sizeof count, "%d", SH_AUDIT_PAGE_ENTRIES);
    for (int page = 0; page < SH_AUDIT_PAGES_MAX; page++) {
        const char *argv[] = {"XRANGE", key, start, stop, "COUNT", count};
        size_t lens[] = {6, klen, strlen(start), strlen(stop), 5, strlen(count)};
        redisReply *r = NULL;
        sh_err rc = sh_cluster_command(c, key, klen, 6, argv, lens, &r);
        if (rc != SH_OK) {
            return rc;
        }
        if (r->type != REDIS_REPLY_ARRAY) {
            SH_WARN("audit", "XRANGE answered type=%d key=%s", r->type, key);
            freeReplyObject(r);
            return SH_EPROTO;
        }
        size_t got = r->elements;
        for (size_t i = 0; i < got && !*truncated; i++) {
            if (sh_audit_entry_add(r->element[i], after_seq, upto_seq, out, cap, n, truncated) !=
                0) {
                SH_WARN("audit", "malformed stream entry key=%s", key);
                freeReplyObject(r);
                return SH_EPROTO;
            }
        }
        if (*truncated || got < SH_AUDIT_PAGE_ENTRIES) {
            freeReplyObject(r);
            return SH_OK;
        }
        /* The next page starts right after the last id read (exclusive range). */
        int k = snprintf(start, sizeof start, "(%s", r->element[got - 1]->element[0]->str);
        freeReplyObject(r);
        if (k < 0 || (size_t)k >= sizeof start) {
            return SH_EPROTO;
        }
    }
    *truncated = 1; /* the page bound ran out before the stream did */
    return SH_OK;
}

/* The lag of one partition from its HMGET seq ack and XRANGE d - + COUNT 1 replies. */
static int sh_audit_lag_one(const redisReply *h, const redisReply *x, uint64_t now_wall_ms,
                            sh_audit_lag *out)
{
    memset(out, 0, sizeof *out);
    if (h == NULL || h->type != REDIS_REPLY_ARRAY || h->elements != 2 || x == NULL ||
        x->type != REDIS_REPLY_ARRAY) {
        return -1;
    }
    uint64_t v[2] = {0, 0};
    for (size_t i = 0; i < 2; i++) {
        const redisReply *e = h->element[i];
        if (e->type == REDIS_REPLY_NIL) {
            continue; /* no ack yet: nothing shipped */
        }
        char *end = NULL;
        if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->str[0] == '-') {
            return -1;
        }
        unsigned long long n = strtoull(e->str, &end, 10);
        if (*end != '\0') {
            return -1;
        }
        v[i] = (uint64_t)n;
    }
    uint64_t seq = v[0], ack = v[1];
    out->details_pending = seq > ack ? seq - ack : 0;
    if (out->details_pending == 0 || x->elements == 0) {
        return 0;
    }
    /* Only the created_ms of the first detail past ack is wanted: parse the entry. */
    const redisReply *e = x->element[0];
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[1]->type != REDIS_REPLY_ARRAY) {
        return -1;
    }
    const redisReply *fv = e->element[1];
    for (size_t i = 0; i + 1 < fv->elements; i += 2) {
        const redisReply *f = fv->element[i], *b = fv->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || strcmp(f->str, "b") != 0 ||
            b->type != REDIS_REPLY_STRING) {
            continue;
        }
        int64_t created = -1;
        const char *p = b->str, *end = b->str + b->len;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
            sh_stock_detail d;
            if (sh_stock_detail_parse(p, n, &d) != SH_OK) {
                return -1;
            }
            if (created < 0) {
                created = d.created_ms; /* the entry's first, if none is past ack */
            }
            if (d.seq > ack) {
                created = d.created_ms;
                break;
            }
            p += n + (nl != NULL ? 1 : 0);
        }
        if (created >= 0 && now_wall_ms > (uint64_t)created) {
            out->oldest_pending_age_ms = now_wall_ms - (uint64_t)created;
        }
        return 0;
    }
    return -1; /* an entry without its "b" field */
}

sh_err sh_audit_lag_read(struct sh_cluster *c, const char *sku, const uint16_t *salts,
                         size_t nparts, uint64_t now_wall_ms, sh_audit_lag *out)
{
    SH_ASSERT(c != NULL && sku != NULL && salts != NULL && out != NULL);
    SH_ASSERT(nparts >= 1 && nparts <= SH_PARTITIONS_PER_SKU_MAX);
    memset(out, 0, sizeof *out * nparts);
    size_t ncmds = 2 * nparts;
    char(*keys)[SH_STOCK_KEY_BYTES_MAX] = calloc(ncmds, sizeof *keys);
    sh_cluster_cmd *cmds = calloc(ncmds, sizeof *cmds);
    const char *(*argv)[6] = calloc(ncmds, sizeof *argv);
    size_t(*lens)[6] = calloc(ncmds, sizeof *lens);
    if (keys == NULL || cmds == NULL || argv == NULL || lens == NULL) {
        free(keys);
        free(cmds);
        free(argv);
        free(lens);
        return SH_ENOMEM;
    }
    for (size_t i = 0; i < nparts; i++) {
        size_t h = 2 * i, x = 2 * i + 1;
        size_t hl = sh_stock_key_part(keys[h], sku, (unsigned)i, salts[i], 's');
        size_t xl = sh_stock_key_part(keys[x], sku, (unsigned)i, salts[i], 'd');
        argv[h][0] = "HMGET";
        argv[h][1] = keys[h];
        argv[h][2] = "seq";
        argv[h][3] = "ack";
        lens[h][0] = 5;
        lens[h][1] = hl;
        lens[h][2] = 3;
        lens[h][3] = 3;
        cmds[h] = (sh_cluster_cmd){
            .route_key = keys[h], .route_len = hl, .argc = 4, .argv = argv[h], .argvlen = lens[h]};
        argv[x][0] = "XRANGE";
        argv[x][1] = keys[x];
        argv[x][2] = "-";
        argv[x][3] = "+";
        argv[x][4] = "COUNT";
        argv[x][5] = "1";
        lens[x][0] = 6;
        lens[x][1] = xl;
        lens[x][2] = 1;
        lens[x][3] = 1;
        lens[x][4] = 5;
        lens[x][5] = 1;
        cmds[x] = (sh_cluster_cmd){
            .route_key = keys[x], .route_len = xl, .argc = 6, .argv = argv[x], .argvlen = lens[x]};
    }
    sh_err rc = sh_cluster_pipeline(c, cmds, ncmds);
    for (size_t i = 0; i < nparts && rc == SH_OK; i++) {
        if (sh_audit_lag_one(cmds[2 * i].reply, cmds[2 * i + 1].reply, now_wall_ms, &out[i]) != 0) {
            SH_WARN("audit", "malformed lag reply sku=%s part=%zu", sku, i);
            rc = SH_EPROTO;
        }
    }
    if (rc != SH_OK) {
        memset(out, 0, sizeof *out * nparts);
    }
    for (size_t i = 0; i < ncmds; i++) {
        if (cmds[i].reply != NULL) {
            freeReplyObject(cmds[i].reply);
        }
    }
    free(keys);
    free(cmds);
    free(argv);
    free(lens);
    return rc;
}

/* ---- order records and user entries ------------------------------------- */

uint64_t sh_audit_detail_chk(uint64_t seq, const char *order, size_t order_len, int64_t qty)
{
    SH_ASSERT(order != NULL && order_len <= SH_ORDER_ID_CHARS_MAX);
    char buf[SH_ORDER_ID_CHARS_MAX + 2 * SH_AUDIT_NUM_BYTES];
    int a = snprintf(buf, sizeof buf, "%" PRIu64 "|", seq);
    SH_ASSERT(a > 0 && (size_t)a < sizeof buf);
    memcpy(buf + a, order, order_len);
    size_t len = (size_t)a + order_len;
    int b = snprintf(buf + len, sizeof buf - len, "|%" PRId64, qty);
    SH_ASSERT(b > 0 && (size_t)b < sizeof buf - len);
    len += (size_t)b;
    uLong crc = crc32(0L, Z_NULL, 0);
    return (uint64_t)crc32(crc, (const Bytef *)buf, (uInt)len);
}

/* Parses "QTY,SEQ,RELSEQ,USER" (DEDUCT's record) into rec; -1 when malformed. */
static int sh_audit_record_parse(const char *v, size_t len, sh_audit_record *rec)
{
    uint64_t num[3] = {0, 0, 0};
    size_t i = 0;
    for (int k = 0; k < 3; k++) {
        size_t start = i;
        while (i < len && v[i] >= '0' && v[i] <= '9' && i - start < 19) {
            num[k] = num[k] * 10 + (uint64_t)(v[i] - '0');
            i++;
        }
        if (i == start || i >= len || v[i] != ',') {
            return -1;
        }
        i++;
    }
    if (num[0] == 0 || num[0] > SH_QTY_UNITS_MAX || num[1] == 0 || len - i > SH_USER_ID_CHARS_MAX) {
        return -1;
    }
    rec->qty = (int64_t)num[0];
    rec->seq = num[1];
    rec->relseq = num[2];
    rec->user = v + i;
    rec->user_len = len - i;
    return 0;
}

sh_err sh_audit_records_scan(sh_cluster *c, const char *sku, unsigned part, unsigned salt,
                             sh_audit_record_fn fn, void *arg, int *exists)
{
    SH_ASSERT(c != NULL && sku != NULL && fn != NULL && exists != NULL);
    char key[SH_STOCK_KEY_BYTES_MAX], count[SH_AUDIT_NUM_BYTES];
    size_t klen = sh_stock_key_part(key, sku, part, salt, 'o');
    snprintf(count, sizeof count, "%d", SH_AUDIT_SCAN_COUNT);
    *exists = 0;
    {
        const char *argv[] = {"EXISTS", key};
        size_t lens[] = {6, klen};
        redisReply *r = NULL;
        sh_err rc = sh_cluster_command(c, key, klen, 2, argv, lens, &r);
        if (rc != SH_OK) {
            return rc;
        }
        *exists = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        freeReplyObject(r);
    }
    char cursor[SH_AUDIT_NUM_BYTES] = "0";
    do {
        const char *argv[] = {"HSCAN", key, cursor, "COUNT", count};
        size_t lens[] = {5, klen, strlen(cursor), 5, strlen(count)};
        redisReply *r = NULL;
        sh_err rc = sh_cluster_command(c, key, klen, 5, argv, lens, &r);
        if (rc != SH_OK) {
            return rc;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= sizeof cursor ||
            r->element[1]->type != REDIS_REPLY_ARRAY || r->element[1]->elements % 2 != 0) {
            freeReplyObject(r);
            return SH_EPROTO;
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len);
        cursor[r->element[0]->len] = '\0';
        const redisReply *kv = r->element[1];
        for (size_t i = 0; i + 1 < kv->elements; i += 2) {
            const redisReply *f = kv->element[i], *v = kv->element[i + 1];
            if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || f->len == 0 ||
                f->len > SH_ORDER_ID_CHARS_MAX) {
                freeReplyObject(r);
                return SH_EPROTO;
            }
            if (v->len >= 2 && v->str[0] == 't' && v->str[1] == ',') {
                continue; /* a tombstone: the order is served elsewhere, or nowhere */
            }
            sh_audit_record rec = {.order = f->str, .order_len = f->len};
            if (sh_audit_record_parse(v->str, v->len, &rec) != 0) {
                freeReplyObject(r);
                return SH_EPROTO;
            }
            if (fn(arg, &rec) != 0) {
                freeReplyObject(r);
                return SH_ELIMIT;
            }
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return SH_OK;
}

sh_err sh_audit_user_sums(sh_cluster *c, const char *sku, const char *const *users, size_t n,
                          int64_t *sums)
{
    SH_ASSERT(c != NULL && sku != NULL && (users != NULL || n == 0) && (sums != NULL || n == 0));
    enum { PAGE = SH_AUDIT_SCAN_COUNT };
    char(*keys)[SH_STOCK_KEY_BYTES_MAX] = malloc(sizeof *keys * PAGE);
    size_t(*lens)[2] = malloc(sizeof *lens * PAGE);
    const char **av = malloc(sizeof *av * 2 * PAGE);
    sh_cluster_cmd *cmds = malloc(sizeof *cmds * PAGE);
    sh_err rc = SH_OK;
    if (keys == NULL || lens == NULL || av == NULL || cmds == NULL) {
        rc = SH_ENOMEM;
    }
    for (size_t off = 0; off < n && rc == SH_OK; off += PAGE) {
        size_t m = n - off < PAGE ? n - off : PAGE;
        memset(cmds, 0, sizeof *cmds * m);
        for (size_t k = 0; k < m; k++) {
            size_t klen = sh_stock_key_user(keys[k], sku, users[off + k]);
            av[2 * k] = "HVALS";
            av[2 * k + 1] = keys[k];
            lens[k][0] = 5;
            lens[k][1] = klen;
            cmds[k] = (sh_cluster_cmd){keys[k], klen, 2, &av[2 * k], lens[k], NULL, SH_OK};
        }
        rc = sh_cluster_pipeline(c, cmds, m);
        for (size_t k = 0; k < m; k++) {
            const redisReply *r = cmds[k].reply;
            if (rc == SH_OK && cmds[k].rc != SH_OK) {
                rc = cmds[k].rc;
            }
            if (rc == SH_OK && r->type != REDIS_REPLY_ARRAY) {
                rc = SH_EPROTO;
            }
            int64_t sum = 0;
            for (size_t e = 0; rc == SH_OK && e < r->elements; e++) {
                const redisReply *v = r->element[e];
                int64_t q = 0;
                size_t d = 0;
                while (v->type == REDIS_REPLY_STRING && d < v->len && d < 10 && v->str[d] >= '0' &&
                       v->str[d] <= '9') {
                    q = q * 10 + (v->str[d++] - '0');
                }
                if (d == 0 || d >= v->len || v->str[d] != ':') {
                    rc = SH_EPROTO; /* an entry is "QTY:TOKEN" */
                }
                sum += q;
            }
            sums[off + k] = sum;
            if (cmds[k].reply != NULL) {
                freeReplyObject(cmds[k].reply);
            }
        }
    }
    free(keys);
    free(lens);
    free(av);
    free(cmds);
    return rc;
}
