/* lg_gen.h -- what each request of a load run says, as a pure function of the seed.
 *
 * Order number n (0, 1, 2, ...) fixes the order's SKU (round-robin), qty
 * (uniform in [qty_min, qty_max]), user and whether it is released after an ok,
 * all from a hash of (seed, n). So a duplicate of order n is re-created exactly
 * (same SKU, qty, user) without storing anything, and two runs with the same
 * seed send the same load. Job j (the j-th send slot of the run) is either a
 * new order or, with probability dup_ratio, a re-send of an earlier one. */
#ifndef LG_GEN_H
#define LG_GEN_H

#include "lg_opts.h"

#include <stddef.h>
#include <stdint.h>

#define LG_ORDER_ID_BYTES (SH_ORDER_ID_CHARS_MAX + 1)
#define LG_USER_ID_BYTES  (SH_USER_ID_CHARS_MAX + 1)
/* {"sku":"...","order_id":"...","user_id":"...","qty":NNNN} with every id at its max */
#define LG_BODY_BYTES_MAX 320

_Static_assert(SH_SKU_ID_CHARS_MAX + SH_ORDER_ID_CHARS_MAX + SH_USER_ID_CHARS_MAX + 64 <
                   LG_BODY_BYTES_MAX,
               "a deduct body always fits");

typedef struct lg_order {
    uint64_t n;       /* order number */
    uint32_t sku_idx; /* index into opts->skus */
    uint32_t qty;
    uint64_t user; /* user number: id "u<user>" */
} lg_order;

/* splitmix64 finaliser of (seed, n, stream): the run's only randomness. */
uint64_t lg_mix(uint64_t seed, uint64_t n, uint64_t stream);

/* Uniform double in [0, 1) from lg_mix. */
double lg_unit(uint64_t seed, uint64_t n, uint64_t stream);

/* Fills out for order number n. */
void lg_gen_order(const lg_opts *o, uint64_t n, lg_order *out);

/* Job j: sets *order_n to the order it sends and returns 1 when that is a
 * re-send of an earlier order (orders_created > 0 and the dup draw hits), or
 * 0 when it is new (then *order_n = orders_created; the caller increments it). */
int lg_gen_job(const lg_opts *o, uint64_t j, uint64_t orders_created, uint64_t *order_n);

/* Whether a new ok of order n is followed by a release. */
int lg_gen_wants_release(const lg_opts *o, uint64_t n);

/* "PREFIX-n" into buf (LG_ORDER_ID_BYTES); returns the length. */
size_t lg_gen_order_id(const lg_opts *o, uint64_t n, char *buf);

/* JSON bodies into buf (LG_BODY_BYTES_MAX); return the length. Ids are
 * validated ids (no quote or backslash), so no escaping is needed. */
size_t lg_gen_deduct_body(const lg_opts *o, const lg_order *ord, char *buf);
size_t lg_gen_release_body(const lg_opts *o, const lg_order *ord, char *buf);

#endif
