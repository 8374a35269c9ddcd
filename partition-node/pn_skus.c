/* pn_skus.c -- the per-SKU salt cache: a fixed entry table and an open-addressed index.
 *
 * Lookups happen for every item of every round, inserts once per SKU, removals
 * almost never (a pool that vanished or looked malformed). So entries live in
 * one dense array, the index is a linear-probing table of twice the capacity
 * (never more than half full, so probes stay short and always end), and a
 * removal simply compacts the array and rebuilds the index. */
#include "pn_skus.h"

#include "sh_log.h"
#include "sh_stock.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define PN_SKUS_EMPTY UINT32_MAX /* free index slot */

struct pn_skus {
    size_t capacity;
    size_t count;
    size_t mask;     /* index slots - 1; slots = power of two >= 2 * capacity */
    uint32_t *index; /* slot -> entry number, PN_SKUS_EMPTY when free */
    pn_sku *entries; /* [0, count) in use */
};

/* FNV-1a: ids are short and hashed once per item. */
static uint64_t pn_skus_hash(const char *id, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)id[i];
        h *= 1099511628211ull;
    }
    return h;
}

static bool pn_skus_same(const pn_sku *e, const char *id, size_t len)
{
    return e->id_len == len && memcmp(e->id, id, len) == 0;
}

/* The slot holding id, or the free slot where it would go. */
static size_t pn_skus_slot(const pn_skus *s, const char *id, size_t len)
{
    size_t slot = (size_t)pn_skus_hash(id, len) & s->mask;
    for (size_t probes = 0; probes <= s->mask; probes++) {
        uint32_t at = s->index[slot];
        if (at == PN_SKUS_EMPTY || pn_skus_same(&s->entries[at], id, len)) {
            return slot;
        }
        slot = (slot + 1) & s->mask;
    }
    SH_ASSERT(!"index never more than half full, so a probe always ends");
    return 0;
}

static void pn_skus_reindex(pn_skus *s)
{
    for (size_t i = 0; i <= s->mask; i++) {
        s->index[i] = PN_SKUS_EMPTY;
    }
    for (size_t k = 0; k < s->count; k++) {
        size_t slot = pn_skus_slot(s, s->entries[k].id, s->entries[k].id_len);
        SH_ASSERT(s->index[slot] == PN_SKUS_EMPTY);
        s->index[slot] = (uint32_t)k;
    }
}

sh_err pn_skus_new(pn_skus **out, size_t capacity)
{
    SH_ASSERT(out != NULL);
    *out = NULL;
    if (capacity < 1 || capacity > SH_SKUS_MAX) {
        return SH_EINVAL;
    }
    pn_skus *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return SH_ENOMEM;
    }
    size_t slots = 1;
    while (slots < 2 * capacity) {
        slots *= 2;
    }
    s->capacity = capacity;
    s->mask = slots - 1;
    s->index = malloc(slots * sizeof *s->index);
    s->entries = calloc(capacity, sizeof *s->entries);
    if (s->index == NULL || s->entries == NULL) {
        pn_skus_free(s);
        return SH_ENOMEM;
    }
    pn_skus_reindex(s);
    *out = s;
    return SH_OK;
}

void pn_skus_free(pn_skus *s)
{
    if (s == NULL) {
        return;
    }
    free(s->index);
    free(s->entries);
    free(s);
}

const pn_sku *pn_skus_find(const pn_skus *s, const char *id, size_t len)
{
    SH_ASSERT(s != NULL && id != NULL);
    uint32_t at = s->index[pn_skus_slot(s, id, len)];
    return at == PN_SKUS_EMPTY ? NULL : &s->entries[at];
}

size_t pn_skus_index(const pn_skus *s, const pn_sku *e)
{
    SH_ASSERT(s != NULL && e >= s->entries && e < s->entries + s->count);
    return (size_t)(e - s->entries);
}

sh_err pn_skus_put(pn_skus *s, const pn_sku *e)
{
    SH_ASSERT(s != NULL && e != NULL);
    SH_ASSERT(e->id_len >= 1 && e->id_len <= SH_SKU_ID_CHARS_MAX && e->id[e->id_len] == '\0');
    SH_ASSERT(e->parts >= 1 && e->parts <= SH_PARTITIONS_PER_SKU_MAX);
    size_t slot = pn_skus_slot(s, e->id, e->id_len);
    uint32_t at = s->index[slot];
    if (at == PN_SKUS_EMPTY) {
        if (s->count == s->capacity) {
            return SH_EBUSY;
        }
        at = (uint32_t)s->count++;
        s->index[slot] = at;
    }
    s->entries[at] = *e;
    SH_ASSERT(s->count <= s->capacity);
    return SH_OK;
}

void pn_skus_remove(pn_skus *s, const char *id, size_t len)
{
    SH_ASSERT(s != NULL && id != NULL);
    uint32_t at = s->index[pn_skus_slot(s, id, len)];
    if (at == PN_SKUS_EMPTY) {
        return;
    }
    s->count--;
    if (at != s->count) {
        s->entries[at] = s->entries[s->count];
    }
    pn_skus_reindex(s);
}

void pn_skus_clear(pn_skus *s)
{
    SH_ASSERT(s != NULL);
    s->count = 0;
    pn_skus_reindex(s);
}

size_t pn_skus_count(const pn_skus *s)
{
    SH_ASSERT(s != NULL);
    return s->count;
}

size_t pn_skus_capacity(const pn_skus *s)
{
    SH_ASSERT(s != NULL);
    return s->capacity;
}

/* ---- pool parsing ---------------------------------------------------------- */

/* A decimal integer in [0, max] filling str[0..len) exactly. */
static bool pn_skus_uint(const char *str, size_t len, unsigned long max, unsigned long *out)
{
    if (len == 0 || len > 10) {
        return false;
    }
    unsigned long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (str[i] < '0' || str[i] > '9') {
            return false;
        }
        v = v * 10 + (unsigned long)(str[i] - '0');
    }
    if (v > max) {
        return false;
    }
    *out = v;
    return true;
}

sh_err pn_skus_parse_pool(const redisReply *r, pn_sku *out)
{
    SH_ASSERT(r != NULL && out != NULL);
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
        return SH_EPROTO;
    }
    if (r->elements == 0) {
        return SH_ENOTFOUND;
    }
    bool seen[SH_PARTITIONS_PER_SKU_MAX] = {false};
    unsigned long parts = 0;
    for (size_t k = 0; k < r->elements; k += 2) {
        const redisReply *f = r->element[k];
        const redisReply *v = r->element[k + 1];
        if (f == NULL || v == NULL || f->type != REDIS_REPLY_STRING ||
            v->type != REDIS_REPLY_STRING) {
            return SH_EPROTO;
        }
        if (f->len == 5 && memcmp(f->str, "parts", 5) == 0) {
            if (!pn_skus_uint(v->str, v->len, SH_PARTITIONS_PER_SKU_MAX, &parts) || parts < 1) {
                return SH_EPROTO;
            }
        } else if (f->len > 2 && f->str[0] == 't' && f->str[1] == '.') {
            unsigned long p, salt;
            if (!pn_skus_uint(f->str + 2, f->len - 2, SH_PARTITIONS_PER_SKU_MAX - 1, &p) ||
                !pn_skus_uint(v->str, v->len, SH_STOCK_TAG_SALT_MAX, &salt)) {
                return SH_EPROTO;
            }
            out->salt[p] = (uint16_t)salt;
            seen[p] = true;
        }
    }
    if (parts < 1) {
        return SH_EPROTO;
    }
    for (unsigned long p = 0; p < parts; p++) {
        if (!seen[p]) {
            return SH_EPROTO;
        }
    }
    out->parts = (uint16_t)parts;
    return SH_OK;
}
