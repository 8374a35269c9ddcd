/* sh_audit.c -- conservation and sign checks of one SKU, read from Redis.
 *
 * The units of a SKU are in exactly one of these places at any instant (see
 * shared/sh_stock.c): the pool's avail; a journaled grant whose partition has
 * not applied it (g < id); a partition's s0 or s1; a partition's ded (sold,
 * net of releases); or the r.ID record of a journaled return taken from its
 * partition and not yet added to the pool. This file adds them up. */
#include "sh_audit.h"

#include "sh_cluster.h"
#include "sh_limits.h"
#include "sh_log.h"
#include "sh_stock.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SH_AUDIT_READS_MAX 8 /* reads tried to get two that agree */

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

/* One pass over every key of the SKU. */
static sh_err sh_audit_read(sh_cluster *c, const char *sku, sh_audit *out)
{
    memset(out, 0, sizeof *out);
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
    SH_ASSERT(c != NULL && sku != NULL && out != NULL);
    sh_audit prev;
    sh_err rc = sh_audit_read(c, sku, &prev);
    if (rc != SH_OK) {
        return rc;
    }
    *out = prev;
    for (int i = 1; i < SH_AUDIT_READS_MAX; i++) {
        rc = sh_audit_read(c, sku, out);
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
    out->ok = out->broken[0] == '\0';
    return SH_OK;
}
