/* pn_skus.h -- the partition node's cache of per-SKU partition tag salts.
 *
 * The keys of partition P of a SKU carry a salt K ({s:SKU:P:K}:st) that the
 * scheduler picked when it loaded the SKU, and stored in the pool hash as
 * field t.P (with the partition count in field parts). Salts never change once
 * written, so the node reads a pool once (HGETALL) and keeps what it learnt.
 * The cache is bounded (a fixed table of entries); when full it is emptied and
 * refilled on demand, which is safe because every entry can be read again.
 *
 * Threads: a cache is owned by the one thread that created it (the executor). */
#ifndef PN_SKUS_H
#define PN_SKUS_H

#include "sh_err.h"
#include "sh_limits.h"

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

/* One SKU's partition layout. salt[p] is the tag salt of partition p < parts. */
typedef struct pn_sku {
    char id[SH_SKU_ID_CHARS_MAX + 1];
    uint8_t id_len;
    uint16_t parts; /* 1..SH_PARTITIONS_PER_SKU_MAX */
    uint16_t salt[SH_PARTITIONS_PER_SKU_MAX];
} pn_sku;

typedef struct pn_skus pn_skus;

/* Allocates an empty cache of capacity entries (1..SH_SKUS_MAX). SH_ENOMEM, or
 * SH_EINVAL for a capacity out of range; *out is NULL on failure. */
sh_err pn_skus_new(pn_skus **out, size_t capacity);

/* Frees the cache and every entry. NULL is a no-op. */
void pn_skus_free(pn_skus *s);

/* The entry of id[0..len), or NULL. The pointer stays valid until the next
 * pn_skus_put, pn_skus_remove or pn_skus_clear. */
const pn_sku *pn_skus_find(const pn_skus *s, const char *id, size_t len);

/* Position of an entry in the cache's table: a small dense number (0..capacity-1)
 * that orders entries, for grouping. e must come from pn_skus_find. */
size_t pn_skus_index(const pn_skus *s, const pn_sku *e);

/* Stores (or replaces) the entry e->id. SH_EBUSY when the cache is full and
 * the id is not in it (the caller clears the cache first). */
sh_err pn_skus_put(pn_skus *s, const pn_sku *e);

/* Forgets id[0..len) if present (its pool vanished or looked wrong). */
void pn_skus_remove(pn_skus *s, const char *id, size_t len);

/* Forgets every entry. */
void pn_skus_clear(pn_skus *s);

/* Entries held, and the capacity. */
size_t pn_skus_count(const pn_skus *s);
size_t pn_skus_capacity(const pn_skus *s);

/* Parses an HGETALL reply of {s:SKU}:pool into out (out->id is left alone).
 * SH_ENOTFOUND for an empty array (no pool: unknown SKU); SH_EPROTO when the
 * reply is not a flat array of string pairs, parts is missing or outside
 * 1..SH_PARTITIONS_PER_SKU_MAX, or a salt t.0..t.(parts-1) is missing or not an
 * integer in 0..SH_STOCK_TAG_SALT_MAX. Never asserts on the reply's content. */
sh_err pn_skus_parse_pool(const redisReply *r, pn_sku *out);

#endif
