/* sch_pool.c -- the pre-allocation pool: loading SKUs, grants, returns, rebuild.
 *
 * Units leave the pool only through a journaled grant and come back only
 * through a journaled return (the scripts and the argument for why each step
 * applies once are in shared/sh_stock.c). This file sequences those steps:
 *
 *   grant:  GRANT_BEGIN (pool slot: avail -= u, journal "g:P:u")
 *           GRANT_APPLY (partition slot: standby += u once, g = id)
 *           JOURNAL_END (pool slot: forget it)
 *   return: RETURN_BEGIN (pool slot: journal "r:P")
 *           RETURN_TAKE  (partition slot: take s0 + s1 once, record r.ID = u)
 *           RETURN_APPLY (pool slot: avail += u while journaled, forget it)
 *           RETURN_END   (partition slot: forget r.ID)
 *
 * A crash between any two steps leaves a journal entry; sch_pool_rebuild
 * replays every entry to its end before the scheduler serves. Grants to one
 * partition are strictly one after the other (a grant whose partition step
 * failed is retried before any new grant to that partition), which is what
 * lets GRANT_APPLY recognise a replay by comparing ids.
 *
 * Everything runs synchronously on the scheduler's loop thread through its own
 * router: grants are rare and short, see sch_pool.h. */
#include "sch_pool.h"

#include "sh_clock.h"
#include "sh_cluster.h"
#include "sh_id.h"
#include "sh_log.h"
#include "sh_stock.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCH_POOL_NUM_BYTES   24
#define SCH_POOL_ARGS_MAX    (8 + SH_PARTITIONS_PER_SKU_MAX)
#define SCH_POOL_JOURNAL_MAX 4096 /* journal entries replayed per SKU at start */

struct sch_pool {
    sh_cluster *c;
    sch_pool_config cfg;
    char seeds[256];
    int script[SH_SCRIPT_COUNT_];
    uint64_t epoch; /* the scheduler's lease epoch: every grant and return carries it */
    char epoch_str[SCH_POOL_NUM_BYTES];
};

/* ---- small helpers -------------------------------------------------------- */

static const sh_stock_script sch_pool_scripts[] = {
    SH_SCRIPT_PART_INIT,   SH_SCRIPT_POOL_INIT,    SH_SCRIPT_GRANT_BEGIN, SH_SCRIPT_GRANT_APPLY,
    SH_SCRIPT_JOURNAL_END, SH_SCRIPT_RETURN_BEGIN, SH_SCRIPT_RETURN_TAKE, SH_SCRIPT_RETURN_APPLY,
    SH_SCRIPT_RETURN_END,  SH_SCRIPT_RESTOCK,      SH_SCRIPT_EPOCH_STAMP,
};

/* Runs script s with string keys and args. A Redis error reply becomes
 * SH_EREDIS (logged); the caller owns *out on SH_OK. */
static sh_err sch_pool_eval(sch_pool *p, sh_stock_script s, int nkeys, const char **keys, int nargs,
                            const char **args, redisReply **out)
{
    SH_ASSERT(nkeys >= 1 && nkeys <= 4 && nargs >= 0 && nargs <= SCH_POOL_ARGS_MAX);
    size_t klen[4], alen[SCH_POOL_ARGS_MAX];
    for (int i = 0; i < nkeys; i++) {
        klen[i] = strlen(keys[i]);
    }
    for (int i = 0; i < nargs; i++) {
        alen[i] = strlen(args[i]);
    }
    redisReply *r = NULL;
    sh_err rc = sh_cluster_evalsha(p->c, p->script[s], nkeys, keys, klen, nargs, args, alen, &r);
    if (rc != SH_OK) {
        SH_WARN("pool", "script failed script=%d key=%s err=%s", (int)s, keys[0], sh_strerror(rc));
        return rc;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        SH_ERROR("pool", "script error script=%d key=%s reply=\"%s\"", (int)s, keys[0], r->str);
        freeReplyObject(r);
        return SH_EREDIS;
    }
    if (p->cfg.durable) {
        /* The next step (often on another master) may build on this one only
         * once a replica holds it: a failover must never keep one half of a
         * move. Not confirmed: the step stays pending, and running it again
         * (same id) is harmless. */
        int failed = 0;
        if (sh_cluster_barrier(p->c, 1, p->cfg.wait_ms, &failed) != SH_OK) {
            SH_WARN("pool", "step not confirmed by a replica script=%d key=%s masters=%d", (int)s,
                    keys[0], failed);
            freeReplyObject(r);
            return SH_EUNKNOWN;
        }
    }
    *out = r;
    return SH_OK;
}

static int sch_pool_int(const redisReply *r, int64_t *out)
{
    if (r == NULL) {
        return -1;
    }
    if (r->type == REDIS_REPLY_INTEGER) {
        *out = (int64_t)r->integer;
        return 0;
    }
    if (r->type == REDIS_REPLY_STRING) {
        char *end = NULL;
        long long v = strtoll(r->str, &end, 10);
        if (r->len == 0 || *end != '\0') {
            return -1;
        }
        *out = (int64_t)v;
        return 0;
    }
    return -1;
}

/* Reads integer element i of an array reply; -1 when it is not there or not an integer. */
static int sch_pool_elem(const redisReply *r, size_t i, int64_t *out)
{
    if (r->type != REDIS_REPLY_ARRAY || i >= r->elements) {
        return -1;
    }
    return sch_pool_int(r->element[i], out);
}

static sh_err sch_pool_simple(sch_pool *p, const char *route, int argc, const char **argv,
                              redisReply **out)
{
    size_t lens[8];
    SH_ASSERT(argc <= 8);
    for (int i = 0; i < argc; i++) {
        lens[i] = strlen(argv[i]);
    }
    redisReply *r = NULL;
    sh_err rc = sh_cluster_command(p->c, route, strlen(route), argc, argv, lens, &r);
    if (rc != SH_OK) {
        return rc;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        SH_ERROR("pool", "command error cmd=%s key=%s reply=\"%s\"", argv[0], route, r->str);
        freeReplyObject(r);
        return SH_EREDIS;
    }
    *out = r;
    return SH_OK;
}

/* ---- open / close ------------------------------------------------------------ */

sh_err sch_pool_open(sch_pool **out, const sch_pool_config *cfg)
{
    SH_ASSERT(out != NULL && cfg != NULL && cfg->redis_seeds != NULL);
    *out = NULL;
    sch_pool *p = calloc(1, sizeof *p);
    if (p == NULL) {
        return SH_ENOMEM;
    }
    p->cfg = *cfg;
    snprintf(p->seeds, sizeof p->seeds, "%s", cfg->redis_seeds);
    p->cfg.redis_seeds = p->seeds;
    snprintf(p->epoch_str, sizeof p->epoch_str, "0");
    sh_err rc = sh_cluster_open(&p->c, p->seeds, cfg->redis_timeout_ms);
    if (rc != SH_OK) {
        free(p);
        return rc;
    }
    for (size_t i = 0; i < sizeof sch_pool_scripts / sizeof sch_pool_scripts[0]; i++) {
        sh_stock_script s = sch_pool_scripts[i];
        rc = sh_cluster_script_add(p->c, sh_stock_script_text(s), &p->script[s]);
        if (rc != SH_OK) {
            SH_ERROR("pool", "cannot load script=%d err=%s", (int)s, sh_strerror(rc));
            sch_pool_close(p);
            return rc;
        }
    }
    *out = p;
    return SH_OK;
}

void sch_pool_close(sch_pool *p)
{
    if (p == NULL) {
        return;
    }
    sh_cluster_close(p->c);
    free(p);
}

void sch_pool_set_epoch(sch_pool *p, uint64_t epoch)
{
    SH_ASSERT(p != NULL && epoch >= p->epoch);
    p->epoch = epoch;
    snprintf(p->epoch_str, sizeof p->epoch_str, "%" PRIu64, epoch);
}

struct sh_cluster *sch_pool_router(sch_pool *p)
{
    SH_ASSERT(p != NULL);
    return p->c;
}

/* ---- reading state from Redis --------------------------------------------- */

static const char *sch_pool_field(const redisReply *h, const char *name)
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

static int sch_pool_field_i64(const redisReply *h, const char *name, int64_t *out)
{
    const char *v = sch_pool_field(h, name);
    if (v == NULL) {
        return -1;
    }
    char *end = NULL;
    long long x = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0') {
        return -1;
    }
    *out = (int64_t)x;
    return 0;
}

/* Fills a partition's counters from its state hash (HGETALL reply). */
static int sch_pool_part_from_hash(sch_part *part, const redisReply *h)
{
    int64_t a, s0, s1, ded, seq, flips = 0, grants = 0;
    if (sch_pool_field_i64(h, "a", &a) != 0 || sch_pool_field_i64(h, "s0", &s0) != 0 ||
        sch_pool_field_i64(h, "s1", &s1) != 0 || sch_pool_field_i64(h, "ded", &ded) != 0 ||
        sch_pool_field_i64(h, "seq", &seq) != 0 || (a != 0 && a != 1)) {
        return -1;
    }
    (void)sch_pool_field_i64(h, "flips", &flips);
    (void)sch_pool_field_i64(h, "grants", &grants);
    const char *state = sch_pool_field(h, "state");
    part->active = (int)a;
    part->s0 = s0;
    part->s1 = s1;
    part->deducted = ded;
    part->seq = (uint64_t)seq;
    part->closed = state != NULL && strcmp(state, "closed") == 0;
    part->diverged = state != NULL && strcmp(state, "diverged") == 0;
    part->flips = (uint64_t)flips;
    part->grants = (uint64_t)grants;
    return 0;
}

/* Reads the partitions' state hashes of s in one pipeline. */
static sh_err sch_pool_read_parts(sch_pool *p, sch_sku *s)
{
    char keys[SH_PARTITIONS_PER_SKU_MAX][SH_STOCK_KEY_BYTES_MAX];
    const char *argv[SH_PARTITIONS_PER_SKU_MAX][2];
    size_t lens[SH_PARTITIONS_PER_SKU_MAX][2];
    sh_cluster_cmd cmds[SH_PARTITIONS_PER_SKU_MAX];
    memset(cmds, 0, sizeof cmds);
    for (uint16_t i = 0; i < s->nparts; i++) {
        size_t n = sh_stock_key_part(keys[i], s->id, i, s->parts[i].salt, 's');
        argv[i][0] = "HGETALL";
        argv[i][1] = keys[i];
        lens[i][0] = 7;
        lens[i][1] = n;
        cmds[i] = (sh_cluster_cmd){
            .route_key = keys[i], .route_len = n, .argc = 2, .argv = argv[i], .argvlen = lens[i]};
    }
    sh_err rc = sh_cluster_pipeline(p->c, cmds, s->nparts);
    for (uint16_t i = 0; i < s->nparts; i++) {
        if (rc == SH_OK && sch_pool_part_from_hash(&s->parts[i], cmds[i].reply) != 0) {
            SH_ERROR("pool", "partition state unreadable sku=%s part=%u", s->id, i);
            rc = SH_EPROTO;
        }
        char tag[SH_STOCK_KEY_BYTES_MAX];
        size_t tl = sh_stock_part_tag(tag, s->id, i, s->parts[i].salt);
        (void)sh_cluster_slot_owner(p->c, sh_cluster_slot(tag, tl), s->parts[i].master,
                                    sizeof s->parts[i].master);
        if (cmds[i].reply != NULL) {
            freeReplyObject(cmds[i].reply);
        }
    }
    return rc;
}

/* Units of journaled grants that their partitions have not applied yet. */
static sh_err sch_pool_read_pending(sch_pool *p, sch_sku *s)
{
    char key[SH_STOCK_KEY_BYTES_MAX];
    sh_stock_key_journal(key, s->id);
    const char *argv[] = {"HGETALL", key};
    redisReply *r = NULL;
    sh_err rc = sch_pool_simple(p, key, 2, argv, &r);
    if (rc != SH_OK) {
        return rc;
    }
    int64_t pending = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        unsigned part = 0;
        long long units = 0;
        if (r->element[1 + i]->type == REDIS_REPLY_STRING &&
            sscanf(r->element[1 + i]->str, "g:%u:%lld", &part, &units) == 2) {
            pending += units; /* an upper bound until replayed; rebuild replays first */
        }
    }
    freeReplyObject(r);
    s->pending_units = pending;
    return SH_OK;
}

static sh_err sch_pool_read_pool(sch_pool *p, sch_sku *s, redisReply **hash_out)
{
    char key[SH_STOCK_KEY_BYTES_MAX];
    sh_stock_key_pool(key, s->id);
    const char *argv[] = {"HGETALL", key};
    redisReply *r = NULL;
    sh_err rc = sch_pool_simple(p, key, 2, argv, &r);
    if (rc != SH_OK) {
        return rc;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        freeReplyObject(r);
        return SH_ENOTFOUND;
    }
    int64_t avail, total;
    if (sch_pool_field_i64(r, "avail", &avail) != 0 ||
        sch_pool_field_i64(r, "total", &total) != 0) {
        freeReplyObject(r);
        return SH_EPROTO;
    }
    s->avail = avail;
    s->total = total;
    int64_t nextid = 0;
    if (sch_pool_field_i64(r, "nextid", &nextid) == 0 && nextid > 0 &&
        (uint64_t)nextid > s->next_id) {
        s->next_id = (uint64_t)nextid; /* ours only grows: ids in doubt stay spent */
    }
    if (hash_out != NULL) {
        *hash_out = r;
    } else {
        freeReplyObject(r);
    }
    return SH_OK;
}

/* Builds a registry entry for SKU id from Redis. parts is allocated into *s. */
static sh_err sch_pool_read_sku(sch_pool *p, const char *id, sch_sku *s, sch_part *parts)
{
    memset(s, 0, sizeof *s);
    snprintf(s->id, sizeof s->id, "%s", id);
    redisReply *h = NULL;
    sh_err rc = sch_pool_read_pool(p, s, &h);
    if (rc != SH_OK) {
        return rc;
    }
    int64_t start = 0, pul = 0, nparts = 0, minc = 0, maxc = 0;
    if (sch_pool_field_i64(h, "start_ms", &start) != 0 || sch_pool_field_i64(h, "pul", &pul) != 0 ||
        sch_pool_field_i64(h, "parts", &nparts) != 0 || sch_pool_field_i64(h, "minc", &minc) != 0 ||
        sch_pool_field_i64(h, "maxc", &maxc) != 0 || nparts < 1 ||
        nparts > SH_PARTITIONS_PER_SKU_MAX || minc < 1 || maxc < minc) {
        freeReplyObject(h);
        SH_ERROR("pool", "pool hash malformed sku=%s", id);
        return SH_EPROTO;
    }
    const char *name = sch_pool_field(h, "name");
    snprintf(s->name, sizeof s->name, "%s", name ? name : "");
    s->start_ms = start;
    s->per_user_limit = (uint32_t)pul;
    s->min_chunk = (uint32_t)minc;
    s->max_chunk = (uint32_t)maxc;
    s->nparts = (uint16_t)nparts;
    s->parts = parts;
    memset(parts, 0, sizeof *parts * (size_t)nparts);
    for (uint16_t i = 0; i < s->nparts; i++) {
        char f[16];
        int64_t salt = 0;
        snprintf(f, sizeof f, "t.%u", i);
        if (sch_pool_field_i64(h, f, &salt) != 0 || salt < 0 || salt >= SH_STOCK_TAG_SALT_MAX) {
            freeReplyObject(h);
            SH_ERROR("pool", "partition salt missing sku=%s part=%u", id, i);
            return SH_EPROTO;
        }
        parts[i].index = i;
        parts[i].salt = (uint16_t)salt;
        parts[i].window_start_ms = sh_clock_mono_ms();
    }
    freeReplyObject(h);
    rc = sch_pool_read_parts(p, s);
    if (rc == SH_OK) {
        rc = sch_pool_read_pending(p, s);
    }
    return rc;
}

sh_err sch_pool_refresh(sch_pool *p, sch_sku *s)
{
    SH_ASSERT(p != NULL && s != NULL);
    sh_err rc = sch_pool_read_pool(p, s, NULL);
    if (rc == SH_OK) {
        rc = sch_pool_read_parts(p, s);
    }
    if (rc == SH_OK) {
        rc = sch_pool_read_pending(p, s);
    }
    return rc;
}

/* ---- grants and returns ----------------------------------------------------- */

static void sch_pool_part_keys(const sch_sku *s, const sch_part *part, char *st)
{
    sh_stock_key_part(st, s->id, part->index, part->salt, 's');
}

/* Whether a failed step may have run: only an error reply (the script
 * checked and refused before writing) surely did not. */
static int sch_pool_maybe_ran(sh_err rc)
{
    return rc != SH_OK && rc != SH_EREDIS && rc != SH_EINVAL;
}

static void sch_pool_note_pending(sch_part *part)
{
    if (part->pending_since_ms == 0) {
        part->pending_since_ms = sh_clock_mono_ms();
    }
}

static void sch_pool_clear_pending(sch_part *part)
{
    if (!sch_part_pending(part)) {
        part->pending_since_ms = 0;
    }
}

/* Phase 2 and 3 of grant id (units u) to part. */
static sh_err sch_pool_grant_finish(sch_pool *p, sch_sku *s, sch_part *part, uint64_t id, int64_t u)
{
    char st[SH_STOCK_KEY_BYTES_MAX], jr[SH_STOCK_KEY_BYTES_MAX];
    char a_id[SCH_POOL_NUM_BYTES], a_u[SCH_POOL_NUM_BYTES], a_low[SCH_POOL_NUM_BYTES];
    sch_pool_part_keys(s, part, st);
    sh_stock_key_journal(jr, s->id);
    snprintf(a_id, sizeof a_id, "%" PRIu64, id);
    snprintf(a_u, sizeof a_u, "%" PRId64, u);
    snprintf(a_low, sizeof a_low, "%" PRId64, p->cfg.low_water_units);
    const char *keys[] = {st};
    const char *args[] = {a_id, a_u, a_low, p->epoch_str};
    redisReply *r = NULL;
    sh_err rc = sch_pool_eval(p, SH_SCRIPT_GRANT_APPLY, 1, keys, 4, args, &r);
    int64_t applied, a, s0, s1;
    if (rc == SH_OK && (sch_pool_elem(r, 0, &applied) != 0 || sch_pool_elem(r, 1, &a) != 0 ||
                        sch_pool_elem(r, 2, &s0) != 0 || sch_pool_elem(r, 3, &s1) != 0)) {
        freeReplyObject(r);
        rc = SH_EPROTO;
    }
    if (rc != SH_OK) {
        part->stuck_grant_id = id;
        part->stuck_grant_units = u;
        sch_pool_note_pending(part);
        return rc;
    }
    freeReplyObject(r);
    part->stuck_grant_id = 0;
    part->stuck_grant_units = 0;
    sch_pool_clear_pending(part);
    if (part->active != (int)a) {
        part->flips++;
    }
    part->active = (int)a;
    part->s0 = s0;
    part->s1 = s1;
    if (applied) {
        part->grants++;
    }
    s->pending_units -= u;
    if (s->pending_units < 0) {
        s->pending_units = 0;
    }
    const char *jkeys[] = {jr};
    const char *jargs[] = {a_id};
    if (sch_pool_eval(p, SH_SCRIPT_JOURNAL_END, 1, jkeys, 1, jargs, &r) == SH_OK) {
        freeReplyObject(r);
    } /* else: a done grant left in the journal; replay skips it (g >= id) */
    return SH_OK;
}

/* Phase 1 of grant id: GRANT_BEGIN, which the caller may run again with the
 * same id (it then answers its first u). *u_out is 0 when nothing was taken.
 * When the outcome is unknown the grant stays "in doubt" on part. */
static sh_err sch_pool_grant_begin(sch_pool *p, sch_sku *s, sch_part *part, uint64_t id,
                                   int64_t units, int64_t *u_out)
{
    *u_out = 0;
    char pool[SH_STOCK_KEY_BYTES_MAX], jr[SH_STOCK_KEY_BYTES_MAX];
    char a_p[SCH_POOL_NUM_BYTES], a_u[SCH_POOL_NUM_BYTES], a_id[SCH_POOL_NUM_BYTES];
    sh_stock_key_pool(pool, s->id);
    sh_stock_key_journal(jr, s->id);
    snprintf(a_p, sizeof a_p, "%u", part->index);
    snprintf(a_u, sizeof a_u, "%" PRId64, units);
    snprintf(a_id, sizeof a_id, "%" PRIu64, id);
    const char *keys[] = {pool, jr};
    const char *args[] = {a_p, a_u, a_id, p->epoch_str};
    redisReply *r = NULL;
    sh_err rc = sch_pool_eval(p, SH_SCRIPT_GRANT_BEGIN, 2, keys, 4, args, &r);
    int64_t rid = 0, u = 0, avail = 0;
    if (rc == SH_OK &&
        (sch_pool_elem(r, 0, &rid) != 0 || sch_pool_elem(r, 1, &u) != 0 ||
         sch_pool_elem(r, 2, &avail) != 0 || (uint64_t)rid != id || u < 0 || avail < 0)) {
        rc = SH_EPROTO;
    }
    if (r != NULL) {
        freeReplyObject(r);
    }
    if (sch_pool_maybe_ran(rc)) {
        part->doubt_grant_id = id;
        part->doubt_grant_units = units;
        sch_pool_note_pending(part);
        SH_WARN("pool", "grant begin in doubt sku=%s part=%u id=%" PRIu64 " err=%s", s->id,
                part->index, id, sh_strerror(rc));
        return rc;
    }
    part->doubt_grant_id = 0;
    part->doubt_grant_units = 0;
    sch_pool_clear_pending(part);
    if (rc != SH_OK) {
        return rc;
    }
    s->avail = avail;
    if (u > 0) {
        s->pending_units += u;
    }
    *u_out = u;
    return SH_OK;
}

/* Steps 2-4 of return id of part, each applying once whatever ran before:
 * BEGIN again (answers the id while journaled, 0 once spent), TAKE (once per
 * id), APPLY (while journaled), END. *returned gets the units. */
static sh_err sch_pool_return_finish(sch_pool *p, sch_sku *s, sch_part *part, uint64_t id,
                                     int64_t *returned)
{
    *returned = 0;
    char pool[SH_STOCK_KEY_BYTES_MAX], jr[SH_STOCK_KEY_BYTES_MAX], st[SH_STOCK_KEY_BYTES_MAX];
    char a_p[SCH_POOL_NUM_BYTES], a_id[SCH_POOL_NUM_BYTES], a_u[SCH_POOL_NUM_BYTES];
    sh_stock_key_pool(pool, s->id);
    sh_stock_key_journal(jr, s->id);
    sch_pool_part_keys(s, part, st);
    snprintf(a_p, sizeof a_p, "%u", part->index);
    snprintf(a_id, sizeof a_id, "%" PRIu64, id);
    const char *pkeys[] = {pool, jr};
    const char *skeys[] = {st};
    part->return_id = id;
    sch_pool_note_pending(part);
    const char *bargs[] = {a_p, a_id, p->epoch_str};
    redisReply *r = NULL;
    sh_err rc = sch_pool_eval(p, SH_SCRIPT_RETURN_BEGIN, 2, pkeys, 3, bargs, &r);
    if (rc != SH_OK) {
        return rc;
    }
    int64_t jid = -1;
    (void)sch_pool_int(r, &jid);
    freeReplyObject(r);
    if (jid != 0 && (uint64_t)jid != id) {
        return SH_EPROTO;
    }
    int64_t u = 0;
    if (jid != 0) {
        const char *targs[] = {a_id, "0", p->epoch_str};
        rc = sch_pool_eval(p, SH_SCRIPT_RETURN_TAKE, 1, skeys, 3, targs, &r);
        if (rc != SH_OK) {
            return rc;
        }
        int64_t a, s0, s1;
        if (sch_pool_elem(r, 0, &u) != 0 || sch_pool_elem(r, 1, &a) != 0 ||
            sch_pool_elem(r, 2, &s0) != 0 || sch_pool_elem(r, 3, &s1) != 0 || u < 0) {
            freeReplyObject(r);
            return SH_EPROTO;
        }
        freeReplyObject(r);
        part->active = (int)a;
        part->s0 = s0;
        part->s1 = s1;
        snprintf(a_u, sizeof a_u, "%" PRId64, u);
        const char *aargs[] = {a_id, a_u, p->epoch_str};
        rc = sch_pool_eval(p, SH_SCRIPT_RETURN_APPLY, 2, pkeys, 3, aargs, &r);
        if (rc != SH_OK) {
            return rc;
        }
        int64_t applied = 0;
        (void)sch_pool_int(r, &applied);
        freeReplyObject(r);
        if (applied) {
            s->avail += u;
        }
    }
    /* Spent (0): it never ran, or it finished and only its record may be left. */
    const char *eargs[] = {a_id};
    if (sch_pool_eval(p, SH_SCRIPT_RETURN_END, 1, skeys, 1, eargs, &r) == SH_OK) {
        freeReplyObject(r);
    }
    part->return_id = 0;
    sch_pool_clear_pending(part);
    *returned = u;
    return SH_OK;
}

/* Finishes whatever pool work part has pending, oldest first: a grant in
 * doubt, a grant whose partition step failed, a return. SH_OK when none is
 * left. Runs whatever the pool holds (a pending grant needs no avail). */
static sh_err sch_pool_settle_part(sch_pool *p, sch_sku *s, sch_part *part)
{
    sh_err rc = SH_OK;
    if (part->doubt_grant_id != 0) {
        int64_t u = 0;
        uint64_t id = part->doubt_grant_id;
        rc = sch_pool_grant_begin(p, s, part, id, part->doubt_grant_units, &u);
        if (rc != SH_OK) {
            return rc;
        }
        if (u > 0) {
            part->stuck_grant_id = id;
            part->stuck_grant_units = u;
            sch_pool_note_pending(part);
        }
    }
    if (part->stuck_grant_id != 0) {
        rc = sch_pool_grant_finish(p, s, part, part->stuck_grant_id, part->stuck_grant_units);
        if (rc != SH_OK) {
            return rc;
        }
    }
    if (part->return_id != 0) {
        int64_t back = 0;
        rc = sch_pool_return_finish(p, s, part, part->return_id, &back);
    }
    return rc;
}

/* Grants up to `units` from the pool to part's standby sub-domain. */
static sh_err sch_pool_grant(sch_pool *p, sch_sku *s, sch_part *part, int64_t units,
                             int64_t *granted)
{
    *granted = 0;
    if (sch_part_pending(part)) {
        /* The earlier work must land first: ids reach a partition in order. */
        sh_err rc = sch_pool_settle_part(p, s, part);
        if (rc != SH_OK) {
            return rc;
        }
    }
    if (units <= 0) {
        return SH_OK;
    }
    uint64_t id = ++s->next_id;
    int64_t u = 0;
    sh_err rc = sch_pool_grant_begin(p, s, part, id, units, &u);
    if (rc != SH_OK || u == 0) {
        return rc; /* refused, in doubt, or the pool is empty */
    }
    rc = sch_pool_grant_finish(p, s, part, id, u);
    if (rc != SH_OK) {
        SH_WARN("pool", "grant left pending sku=%s part=%u id=%" PRIu64 " units=%" PRId64 " err=%s",
                s->id, part->index, id, u, sh_strerror(rc));
        return rc;
    }
    *granted = u;
    return SH_OK;
}

/* Takes every unit out of part back into the pool (reverse two-phase transfer). */
static sh_err sch_pool_return(sch_pool *p, sch_sku *s, sch_part *part, int64_t *returned)
{
    *returned = 0;
    if (sch_part_pending(part)) {
        sh_err rc = sch_pool_settle_part(p, s, part);
        if (rc != SH_OK) {
            return rc;
        }
    }
    sh_err rc = sch_pool_return_finish(p, s, part, ++s->next_id, returned);
    if (rc != SH_OK) {
        SH_WARN("pool", "return left pending sku=%s part=%u id=%" PRIu64 " err=%s", s->id,
                part->index, part->return_id, sh_strerror(rc));
    }
    return rc;
}

sh_err sch_pool_retry(sch_pool *p, sch_registry *reg, size_t *left)
{
    SH_ASSERT(p != NULL && reg != NULL && left != NULL);
    *left = 0;
    sh_err first = SH_OK;
    for (size_t k = 0; k < sch_registry_count(reg); k++) {
        sch_sku *s = sch_registry_at(reg, k);
        for (uint16_t i = 0; i < s->nparts; i++) {
            sch_part *part = &s->parts[i];
            if (!sch_part_pending(part)) {
                continue;
            }
            sh_err rc = sch_pool_settle_part(p, s, part);
            if (rc != SH_OK) {
                *left += 1;
                first = first == SH_OK ? rc : first;
                continue;
            }
            SH_INFO("pool", "pending pool work finished sku=%s part=%u", s->id, part->index);
        }
    }
    return first;
}

/* Replays every journal entry of SKU id, oldest first, to its end. */
static sh_err sch_pool_replay(sch_pool *p, sch_sku *s)
{
    char jr[SH_STOCK_KEY_BYTES_MAX];
    sh_stock_key_journal(jr, s->id);
    const char *argv[] = {"HGETALL", jr};
    redisReply *r = NULL;
    sh_err rc = sch_pool_simple(p, jr, 2, argv, &r);
    if (rc != SH_OK) {
        return rc;
    }
    size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements / 2 : 0;
    if (n > SCH_POOL_JOURNAL_MAX) {
        SH_WARN("pool", "journal longer than replay bound sku=%s entries=%zu", s->id, n);
        n = SCH_POOL_JOURNAL_MAX;
    }
    /* Oldest first: ids are increasing per SKU. Selection by smallest id keeps the
     * code simple; the journal holds a handful of entries at most. */
    unsigned char *done = calloc(n ? n : 1, 1);
    if (done == NULL) {
        freeReplyObject(r);
        return SH_ENOMEM;
    }
    for (size_t round = 0; round < n && rc == SH_OK; round++) {
        size_t best = n;
        long long best_id = 0;
        for (size_t i = 0; i < n; i++) {
            long long id = done[i] ? 0 : strtoll(r->element[2 * i]->str, NULL, 10);
            if (!done[i] && (best == n || id < best_id)) {
                best = i;
                best_id = id;
            }
        }
        done[best] = 1;
        const char *v = r->element[2 * best + 1]->str;
        unsigned part = 0;
        long long units = 0;
        if (best_id <= 0) {
            continue;
        }
        if (sscanf(v, "g:%u:%lld", &part, &units) == 2 && part < s->nparts && units > 0) {
            SH_INFO("pool", "replaying grant sku=%s part=%u id=%lld units=%lld", s->id, part,
                    best_id, units);
            rc = sch_pool_grant_finish(p, s, &s->parts[part], (uint64_t)best_id, units);
        } else if (sscanf(v, "r:%u", &part) == 1 && part < s->nparts) {
            SH_INFO("pool", "replaying return sku=%s part=%u id=%lld", s->id, part, best_id);
            int64_t back = 0;
            rc = sch_pool_return_finish(p, s, &s->parts[part], (uint64_t)best_id, &back);
        } else {
            SH_ERROR("pool", "journal entry malformed sku=%s id=%lld value=\"%s\"", s->id, best_id,
                     v);
        }
    }
    free(done);
    freeReplyObject(r);
    return rc;
}

/* Raises the fencing epoch of s's pool and partitions to ours (EPOCH_STAMP):
 * from here on a scheduler with a lower epoch can move no unit of s. */
static sh_err sch_pool_stamp(sch_pool *p, const sch_sku *s)
{
    char key[SH_STOCK_KEY_BYTES_MAX];
    const char *keys[] = {key};
    const char *args[] = {p->epoch_str};
    redisReply *r = NULL;
    sh_stock_key_pool(key, s->id);
    sh_err rc = sch_pool_eval(p, SH_SCRIPT_EPOCH_STAMP, 1, keys, 1, args, &r);
    for (uint16_t i = 0; rc == SH_OK && i <= s->nparts; i++) {
        freeReplyObject(r);
        r = NULL;
        if (i == s->nparts) {
            break;
        }
        sch_pool_part_keys(s, &s->parts[i], key);
        rc = sch_pool_eval(p, SH_SCRIPT_EPOCH_STAMP, 1, keys, 1, args, &r);
    }
    return rc;
}

/* ---- chunk sizing ---------------------------------------------------------- */

static int64_t sch_pool_chunk(const sch_pool *p, const sch_sku *s, sch_part *part)
{
    uint64_t now = sh_clock_mono_ms();
    uint64_t elapsed = now - part->window_start_ms;
    if (elapsed >= 100) {
        double inst = (double)part->sold_units_window * 1000.0 / (double)elapsed;
        part->rate_units_per_s =
            part->rate_units_per_s == 0.0 ? inst : 0.5 * part->rate_units_per_s + 0.5 * inst;
        part->sold_units_window = 0;
        part->window_start_ms = now;
    }
    /* About one refill horizon of this partition's sales ... */
    int64_t chunk = (int64_t)ceil(part->rate_units_per_s * p->cfg.refill_horizon_ms / 1000.0);
    if (chunk < (int64_t)s->min_chunk) {
        chunk = s->min_chunk;
    }
    if (chunk > (int64_t)s->max_chunk) {
        chunk = s->max_chunk;
    }
    /* ... shrinking as the pool empties, so partitions run dry together. */
    int open = 0;
    for (uint16_t i = 0; i < s->nparts; i++) {
        open += !s->parts[i].closed;
    }
    int64_t fair = open > 0 ? (s->avail + open - 1) / open : s->avail;
    if (fair < (int64_t)s->min_chunk) {
        fair = s->min_chunk;
    }
    if (chunk > fair) {
        chunk = fair;
    }
    return chunk < s->avail ? chunk : s->avail;
}

sh_err sch_pool_refill(sch_pool *p, sch_sku *s, sch_part *part, int64_t *granted)
{
    SH_ASSERT(p != NULL && s != NULL && part != NULL && granted != NULL);
    *granted = 0;
    if (!sch_part_open(part)) {
        return SH_OK;
    }
    /* Only a standby that is empty gets a chunk: at most two chunks per partition. */
    int64_t standby = part->active ? part->s0 : part->s1;
    if (standby > 0 && part->stuck_grant_id == 0) {
        return SH_OK;
    }
    int64_t chunk = sch_pool_chunk(p, s, part);
    return sch_pool_grant(p, s, part, standby > 0 ? 0 : chunk, granted);
}

/* ---- loading --------------------------------------------------------------- */

/* Picks salts so that partition i lands on master i % masters. */
static void sch_pool_place(sch_pool *p, const char *sku, uint16_t nparts, uint16_t *salts)
{
    int masters = sh_cluster_master_count(p->c);
    for (uint16_t i = 0; i < nparts; i++) {
        salts[i] = 0;
        char want[48];
        if (masters <= 0 || sh_cluster_master_addr(p->c, i % masters, want, sizeof want) != SH_OK) {
            continue;
        }
        for (unsigned k = 0; k < SH_STOCK_TAG_SALT_MAX; k++) {
            char tag[SH_STOCK_KEY_BYTES_MAX], owner[48];
            size_t tl = sh_stock_part_tag(tag, sku, i, k);
            if (sh_cluster_slot_owner(p->c, sh_cluster_slot(tag, tl), owner, sizeof owner) ==
                    SH_OK &&
                strcmp(owner, want) == 0) {
                salts[i] = (uint16_t)k;
                break;
            }
        }
    }
}

static sh_err sch_pool_register(sch_pool *p, sch_registry *reg, const char *id, sch_sku **out)
{
    sch_sku *have = sch_registry_find(reg, id, strlen(id));
    if (have != NULL) {
        *out = have;
        return sch_pool_refresh(p, have);
    }
    sch_sku s;
    sch_part *parts = calloc(SH_PARTITIONS_PER_SKU_MAX, sizeof *parts);
    if (parts == NULL) {
        return SH_ENOMEM;
    }
    sh_err rc = sch_pool_read_sku(p, id, &s, parts);
    if (rc == SH_OK) {
        rc = sch_registry_add(reg, &s, out);
    }
    free(parts);
    return rc;
}

sh_err sch_pool_load_sku(sch_pool *p, sch_registry *reg, const sch_sku_spec *spec, int *created,
                         char *msg, size_t msglen)
{
    SH_ASSERT(p != NULL && reg != NULL && spec != NULL && created != NULL && msg != NULL);
    *created = 0;
    msg[0] = '\0';
    if (sh_id_check_sku(spec->id, strlen(spec->id)) != SH_OK || spec->partitions < 1 ||
        spec->partitions > SH_PARTITIONS_PER_SKU_MAX || spec->total < 0 ||
        spec->total > SH_SKU_TOTAL_UNITS_MAX || spec->min_chunk < SH_CHUNK_UNITS_MIN ||
        spec->max_chunk < spec->min_chunk || spec->max_chunk > SH_CHUNK_UNITS_MAX) {
        snprintf(msg, msglen, "invalid sku spec");
        return SH_EINVAL;
    }
    char pool[SH_STOCK_KEY_BYTES_MAX];
    sh_stock_key_pool(pool, spec->id);
    const char *ex[] = {"EXISTS", pool};
    redisReply *r = NULL;
    sh_err rc = sch_pool_simple(p, pool, 2, ex, &r);
    if (rc != SH_OK) {
        snprintf(msg, msglen, "redis: %s", sh_strerror(rc));
        return rc;
    }
    int exists = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);

    if (!exists) {
        uint16_t salts[SH_PARTITIONS_PER_SKU_MAX];
        sch_pool_place(p, spec->id, spec->partitions, salts);
        for (uint16_t i = 0; i < spec->partitions && rc == SH_OK; i++) {
            char st[SH_STOCK_KEY_BYTES_MAX];
            sh_stock_key_part(st, spec->id, i, salts[i], 's');
            const char *keys[] = {st};
            const char *args[] = {p->epoch_str};
            rc = sch_pool_eval(p, SH_SCRIPT_PART_INIT, 1, keys, 1, args, &r);
            if (rc == SH_OK) {
                freeReplyObject(r);
            }
        }
        char a_total[SCH_POOL_NUM_BYTES], a_start[SCH_POOL_NUM_BYTES], a_pul[SCH_POOL_NUM_BYTES];
        char a_parts[SCH_POOL_NUM_BYTES], a_minc[SCH_POOL_NUM_BYTES], a_maxc[SCH_POOL_NUM_BYTES];
        char a_salt[SH_PARTITIONS_PER_SKU_MAX][8];
        const char *args[SCH_POOL_ARGS_MAX];
        snprintf(a_total, sizeof a_total, "%" PRId64, spec->total);
        snprintf(a_start, sizeof a_start, "%" PRId64, spec->start_ms);
        snprintf(a_pul, sizeof a_pul, "%u", spec->per_user_limit);
        snprintf(a_parts, sizeof a_parts, "%u", spec->partitions);
        snprintf(a_minc, sizeof a_minc, "%u", spec->min_chunk);
        snprintf(a_maxc, sizeof a_maxc, "%u", spec->max_chunk);
        int nargs = 0;
        args[nargs++] = a_total;
        args[nargs++] = a_start;
        args[nargs++] = a_pul;
        args[nargs++] = a_parts;
        args[nargs++] = a_minc;
        args[nargs++] = a_maxc;
        args[nargs++] = spec->name;
        args[nargs++] = p->epoch_str;
        for (uint16_t i = 0; i < spec->partitions; i++) {
            snprintf(a_salt[i], sizeof a_salt[i], "%u", salts[i]);
            args[nargs++] = a_salt[i];
        }
        if (rc == SH_OK) {
            const char *keys[] = {pool};
            rc = sch_pool_eval(p, SH_SCRIPT_POOL_INIT, 1, keys, nargs, args, &r);
        }
        if (rc != SH_OK) {
            snprintf(msg, msglen, "redis: %s", sh_strerror(rc));
            return rc;
        }
        *created = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        freeReplyObject(r);
    }
    const char *sadd[] = {"SADD", SH_STOCK_SKU_INDEX_KEY, spec->id};
    rc = sch_pool_simple(p, SH_STOCK_SKU_INDEX_KEY, 3, sadd, &r);
    if (rc != SH_OK) {
        snprintf(msg, msglen, "redis: %s", sh_strerror(rc));
        return rc;
    }
    freeReplyObject(r);
    sch_sku *s = NULL;
    rc = sch_pool_register(p, reg, spec->id, &s);
    if (rc != SH_OK) {
        snprintf(msg, msglen, "cannot read sku back: %s", sh_strerror(rc));
        return rc;
    }
    if (*created) {
        /* First chunks: both sub-domains of every partition, a quarter of the
         * stock spread over them, within [min_chunk, max_chunk]. */
        int64_t first = s->total / (4 * (int64_t)s->nparts);
        first = first < s->min_chunk ? s->min_chunk : first;
        first = first > s->max_chunk ? s->max_chunk : first;
        for (int round = 0; round < 2; round++) {
            for (uint16_t i = 0; i < s->nparts && s->avail > 0; i++) {
                int64_t g = 0;
                int64_t want = first < s->avail ? first : s->avail;
                rc = sch_pool_grant(p, s, &s->parts[i], want, &g);
                if (rc != SH_OK) {
                    snprintf(msg, msglen, "first grant failed: %s", sh_strerror(rc));
                    return rc;
                }
            }
        }
        SH_INFO("pool", "sku loaded sku=%s total=%" PRId64 " parts=%u first_chunk=%" PRId64, s->id,
                s->total, s->nparts, first);
    }
    return SH_OK;
}

/* ---- rebuild ----------------------------------------------------------------- */

sh_err sch_pool_rebuild(sch_pool *p, sch_registry *reg)
{
    SH_ASSERT(p != NULL && reg != NULL);
    const char *argv[] = {"SMEMBERS", SH_STOCK_SKU_INDEX_KEY};
    redisReply *r = NULL;
    sh_err rc = sch_pool_simple(p, SH_STOCK_SKU_INDEX_KEY, 2, argv, &r);
    if (rc != SH_OK) {
        return rc;
    }
    size_t loaded = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING || sh_id_check_sku(e->str, e->len) != SH_OK) {
            continue;
        }
        sch_sku *s = NULL;
        rc = sch_pool_register(p, reg, e->str, &s);
        if (rc == SH_OK) {
            rc = sch_pool_stamp(p, s);
        }
        if (rc == SH_OK) {
            rc = sch_pool_replay(p, s);
        }
        if (rc == SH_OK) {
            rc = sch_pool_refresh(p, s); /* counters after the replay */
        }
        if (rc != SH_OK) {
            SH_ERROR("pool", "cannot rebuild sku=%s err=%s", e->str, sh_strerror(rc));
            break;
        }
        for (uint16_t k = 0; k < s->nparts; k++) {
            int64_t g = 0;
            (void)sch_pool_refill(p, s, &s->parts[k], &g);
        }
        loaded++;
    }
    freeReplyObject(r);
    SH_INFO("pool", "registry rebuilt skus=%zu", loaded);
    return rc;
}

/* ---- end game ------------------------------------------------------------------ */

sh_err sch_pool_consolidate(sch_pool *p, sch_sku *s, uint32_t qty, int *part_out)
{
    SH_ASSERT(p != NULL && s != NULL && part_out != NULL && qty >= 1);
    *part_out = -1;
    sh_err rc = sch_pool_refresh(p, s);
    if (rc != SH_OK) {
        return rc;
    }
    /* Units in pending grants and returns are the SKU's too: finish that work
     * first, so they can serve; while any is left, the answer is "retry",
     * never a false sold out. */
    int64_t unsettled = 0;
    for (uint16_t i = 0; i < s->nparts; i++) {
        sch_part *pt = &s->parts[i];
        if (sch_part_pending(pt) && sch_pool_settle_part(p, s, pt) != SH_OK) {
            unsettled += pt->stuck_grant_units + pt->doubt_grant_units + (pt->return_id != 0);
        }
    }
    int target = -1;
    int64_t remaining = s->avail, best = -1;
    for (uint16_t i = 0; i < s->nparts; i++) {
        sch_part *pt = &s->parts[i];
        if (!sch_part_open(pt)) {
            if (pt->diverged) {
                unsettled += pt->s0 + pt->s1; /* they wait for its reconcile */
            }
            continue;
        }
        int64_t have = pt->s0 + pt->s1;
        remaining += have;
        if (have > best) {
            best = have;
            target = i;
        }
    }
    if (target < 0 || remaining < (int64_t)qty) {
        /* The whole SKU cannot serve qty, unless units wait in pending work. */
        return unsettled > 0 ? SH_EBUSY : SH_OK;
    }
    sch_part *t = &s->parts[target];
    int64_t need = (int64_t)qty - (t->s0 + t->s1);
    /* Take remnants back from the others until the pool covers what is missing. */
    for (uint16_t i = 0; i < s->nparts && need > 0 && s->avail < need; i++) {
        sch_part *pt = &s->parts[i];
        if ((int)i == target || !sch_part_open(pt) || pt->s0 + pt->s1 == 0) {
            continue;
        }
        int64_t back = 0;
        rc = sch_pool_return(p, s, pt, &back);
        if (rc != SH_OK) {
            return rc;
        }
    }
    if (need > 0) {
        int64_t want = need > (int64_t)s->min_chunk ? need : (int64_t)s->min_chunk;
        int64_t g = 0;
        rc = sch_pool_grant(p, s, t, want < s->avail ? want : s->avail, &g);
        if (rc != SH_OK) {
            return rc;
        }
        if (t->s0 + t->s1 < (int64_t)qty) {
            return SH_OK; /* raced with deductions in flight: caller answers sold out */
        }
    }
    SH_INFO("pool", "consolidated sku=%s qty=%u part=%d", s->id, qty, target);
    *part_out = target;
    return SH_OK;
}

/* ---- restock --------------------------------------------------------------- */

sh_err sch_pool_restock(sch_pool *p, sch_sku *s, const char *restock_id, int64_t units,
                        int *applied)
{
    SH_ASSERT(p != NULL && s != NULL && restock_id != NULL && applied != NULL);
    *applied = 0;
    if (units < 1 || units > SH_SKU_TOTAL_UNITS_MAX ||
        sh_id_check_order(restock_id, strlen(restock_id)) != SH_OK) {
        return SH_EINVAL;
    }
    char pool[SH_STOCK_KEY_BYTES_MAX], rst[SH_STOCK_KEY_BYTES_MAX], a_u[SCH_POOL_NUM_BYTES];
    sh_stock_key_pool(pool, s->id);
    sh_stock_key_restocks(rst, s->id);
    snprintf(a_u, sizeof a_u, "%" PRId64, units);
    const char *keys[] = {pool, rst};
    const char *args[] = {restock_id, a_u};
    redisReply *r = NULL;
    sh_err rc = sch_pool_eval(p, SH_SCRIPT_RESTOCK, 2, keys, 2, args, &r);
    if (rc != SH_OK) {
        return rc;
    }
    *applied = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    if (*applied) {
        s->avail += units;
        s->total += units;
    }
    return SH_OK;
}
