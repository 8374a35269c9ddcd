/* sch_registry.c -- the scheduler's table of SKUs and partitions, and routing.
 *
 * The registry answers two questions on the hot path of every deduction:
 * "which SKU is this id?" (a hash lookup) and "which partition should serve
 * qty units of it?" (round-robin over the open partitions whose last known
 * stock covers qty). Both must be cheap and allocation-free, so SKUs live in
 * a fixed array of SH_SKUS_MAX pointers, found through an open-addressing
 * index twice that size (load factor <= 1/2, so probes stay short), and SKUs
 * are never removed (a SKU of a finished sale costs a few hundred bytes).
 *
 * The registry is a cache of Redis, never the authority: a stale count costs
 * a retry at the partition node (whose Lua script refuses what it cannot
 * serve), never a unit. Loop thread only; no locks. */
#include "sch_registry.h"

#include "sh_log.h"
#include "sh_stock.h"

#include <stdlib.h>
#include <string.h>

/* Index slots: a power of two, at least twice SH_SKUS_MAX. */
#define REG_INDEX_SLOTS 8192u
_Static_assert((REG_INDEX_SLOTS & (REG_INDEX_SLOTS - 1)) == 0, "index size is a power of two");
_Static_assert(REG_INDEX_SLOTS >= 2u * SH_SKUS_MAX, "index load factor stays <= 1/2");
_Static_assert(SH_SKUS_MAX < UINT16_MAX, "index entries are u16");

struct sch_registry {
    int nnodes;
    size_t count;
    sch_sku *skus[SH_SKUS_MAX];
    /* index[h] = position in skus + 1; 0 = empty slot. */
    uint16_t index[REG_INDEX_SLOTS];
};

/* FNV-1a, 32 bits: ids are short, so a simple byte hash is fast enough. */
static uint32_t reg_hash(const char *id, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)id[i];
        h *= 16777619u;
    }
    return h;
}

/* Returns the index slot holding id, or the empty slot where it would go. */
static size_t reg_slot(const sch_registry *r, const char *id, size_t len)
{
    size_t mask = REG_INDEX_SLOTS - 1;
    size_t h = reg_hash(id, len) & mask;
    /* The table is never more than half full, so this loop ends. */
    for (size_t probe = 0; probe < REG_INDEX_SLOTS; probe++) {
        uint16_t e = r->index[h];
        if (e == 0) {
            return h;
        }
        const sch_sku *s = r->skus[e - 1];
        if (strlen(s->id) == len && memcmp(s->id, id, len) == 0) {
            return h;
        }
        h = (h + 1) & mask;
    }
    SH_ASSERT(!"registry index full");
    return 0;
}

sh_err sch_registry_new(sch_registry **out, int nnodes)
{
    SH_ASSERT(out != NULL);
    *out = NULL;
    if (nnodes < 1) {
        return SH_EINVAL;
    }
    sch_registry *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return SH_ENOMEM;
    }
    r->nnodes = nnodes;
    *out = r;
    return SH_OK;
}

void sch_registry_free(sch_registry *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->count; i++) {
        free(r->skus[i]->parts);
        free(r->skus[i]);
    }
    free(r);
}

sh_err sch_registry_add(sch_registry *r, const sch_sku *sku, sch_sku **out)
{
    SH_ASSERT(r != NULL && sku != NULL);
    if (out != NULL) {
        *out = NULL;
    }
    size_t len = strnlen(sku->id, sizeof sku->id);
    if (len == 0 || len >= sizeof sku->id) {
        return SH_EINVAL;
    }
    if (sku->nparts == 0 || sku->parts == NULL) {
        return SH_EINVAL;
    }
    if (sku->nparts > SH_PARTITIONS_PER_SKU_MAX) {
        return SH_ELIMIT;
    }
    size_t slot = reg_slot(r, sku->id, len);
    if (r->index[slot] != 0) {
        if (out != NULL) {
            *out = r->skus[r->index[slot] - 1];
        }
        return SH_EEXIST;
    }
    if (r->count >= SH_SKUS_MAX) {
        return SH_ELIMIT;
    }
    sch_sku *copy = malloc(sizeof *copy);
    sch_part *parts = calloc(sku->nparts, sizeof *parts);
    if (copy == NULL || parts == NULL) {
        free(copy);
        free(parts);
        return SH_ENOMEM;
    }
    *copy = *sku;
    copy->name[sizeof copy->name - 1] = '\0';
    memcpy(parts, sku->parts, (size_t)sku->nparts * sizeof *parts);
    for (uint16_t i = 0; i < sku->nparts; i++) {
        /* A partition's number is its position; its node follows from it, so
         * every scheduler (and every restart) sends it to the same node. */
        parts[i].index = i;
        parts[i].node = (int)(i % (unsigned)r->nnodes);
    }
    copy->parts = parts;
    copy->rr %= copy->nparts;
    r->skus[r->count] = copy;
    r->count++;
    r->index[slot] = (uint16_t)r->count;
    if (out != NULL) {
        *out = copy;
    }
    return SH_OK;
}

sch_sku *sch_registry_find(sch_registry *r, const char *id, size_t len)
{
    SH_ASSERT(r != NULL);
    if (id == NULL || len == 0 || len > SH_SKU_ID_CHARS_MAX) {
        return NULL;
    }
    uint16_t e = r->index[reg_slot(r, id, len)];
    return e == 0 ? NULL : r->skus[e - 1];
}

size_t sch_registry_count(const sch_registry *r)
{
    SH_ASSERT(r != NULL);
    return r->count;
}

sch_sku *sch_registry_at(sch_registry *r, size_t i)
{
    SH_ASSERT(r != NULL && i < r->count);
    return r->skus[i];
}

int sch_part_open(const sch_part *p)
{
    SH_ASSERT(p != NULL);
    return !p->closed && !p->diverged;
}

int sch_part_pending(const sch_part *p)
{
    SH_ASSERT(p != NULL);
    return p->stuck_grant_id != 0 || p->doubt_grant_id != 0 || p->return_id != 0;
}

int64_t sch_part_free(const sch_part *p)
{
    SH_ASSERT(p != NULL);
    int64_t free_units = p->s0 + p->s1 - p->inflight_units;
    return free_units > 0 ? free_units : 0;
}

int sch_registry_route(sch_sku *s, uint32_t qty, int skip)
{
    SH_ASSERT(s != NULL && s->nparts > 0 && s->parts != NULL);
    SH_ASSERT(skip >= -1 && skip < (int)s->nparts);
    uint32_t n = s->nparts;
    uint32_t start = s->rr % n;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = (start + k) % n;
        const sch_part *p = &s->parts[i];
        if ((int)i == skip || !sch_part_open(p) || sch_part_free(p) < (int64_t)qty) {
            continue;
        }
        s->rr = (i + 1) % n;
        return (int)i;
    }
    return -1;
}

int64_t sch_sku_remaining(const sch_sku *s)
{
    SH_ASSERT(s != NULL);
    int64_t units = (s->avail > 0 ? s->avail : 0) + (s->pending_units > 0 ? s->pending_units : 0);
    for (uint16_t i = 0; i < s->nparts; i++) {
        units += s->parts[i].s0 + s->parts[i].s1;
    }
    return units;
}

void sch_part_observe(sch_part *p, int active, int64_t s0, int64_t s1, uint8_t flags)
{
    SH_ASSERT(p != NULL);
    /* The values come from a node's reply: clamp rather than trust them, so a
     * bad reply can mislead routing (a retry) but never break the arithmetic. */
    p->active = active ? 1 : 0;
    p->s0 = s0 > 0 ? s0 : 0;
    p->s1 = s1 > 0 ? s1 : 0;
    p->flags = flags;
    p->closed = (flags & SH_PART_F_CLOSED) != 0;
    if (flags & SH_PART_F_FLIPPED) {
        p->flips++;
    }
}
