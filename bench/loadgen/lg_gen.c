/* lg_gen.c -- deterministic request contents (see lg_gen.h for why). */
#include "lg_gen.h"

#include "sh_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Streams: independent draws per order or job. */
enum {
    STREAM_QTY = 1,
    STREAM_USER = 2,
    STREAM_DUP = 3,
    STREAM_DUP_TARGET = 4,
    STREAM_RELEASE = 5,
};

uint64_t lg_mix(uint64_t seed, uint64_t n, uint64_t stream)
{
    uint64_t z = seed ^ (n * 0x9E3779B97F4A7C15ull) ^ (stream * 0xD6E8FEB86659FD93ull);
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double lg_unit(uint64_t seed, uint64_t n, uint64_t stream)
{
    /* top 53 bits: exactly representable, strictly below 1 */
    return (double)(lg_mix(seed, n, stream) >> 11) * (1.0 / 9007199254740992.0);
}

void lg_gen_order(const lg_opts *o, uint64_t n, lg_order *out)
{
    SH_ASSERT(o != NULL && out != NULL);
    SH_ASSERT(o->nskus > 0 && o->qty_min >= 1 && o->qty_min <= o->qty_max && o->users > 0);
    out->n = n;
    out->sku_idx = (uint32_t)(n % o->nskus);
    uint64_t span = (uint64_t)(o->qty_max - o->qty_min) + 1;
    /* span <= 1000: the modulo bias is below 1e-16 */
    out->qty = o->qty_min + (uint32_t)(lg_mix(o->seed, n, STREAM_QTY) % span);
    out->user = lg_mix(o->seed, n, STREAM_USER) % o->users;
    SH_ASSERT(out->qty >= o->qty_min && out->qty <= o->qty_max);
}

int lg_gen_job(const lg_opts *o, uint64_t j, uint64_t orders_created, uint64_t *order_n)
{
    SH_ASSERT(o != NULL && order_n != NULL);
    if (orders_created > 0 && o->dup_ratio > 0 && lg_unit(o->seed, j, STREAM_DUP) < o->dup_ratio) {
        *order_n = lg_mix(o->seed, j, STREAM_DUP_TARGET) % orders_created;
        return 1;
    }
    *order_n = orders_created;
    return 0;
}

int lg_gen_wants_release(const lg_opts *o, uint64_t n)
{
    SH_ASSERT(o != NULL);
    return o->release_ratio > 0 && lg_unit(o->seed, n, STREAM_RELEASE) < o->release_ratio;
}

size_t lg_gen_order_id(const lg_opts *o, uint64_t n, char *buf)
{
    SH_ASSERT(o != NULL && buf != NULL);
    int len = snprintf(buf, LG_ORDER_ID_BYTES, "%s-%" PRIu64, o->order_prefix, n);
    SH_ASSERT(len > 0 && len < LG_ORDER_ID_BYTES);
    return (size_t)len;
}

size_t lg_gen_deduct_body(const lg_opts *o, const lg_order *ord, char *buf)
{
    SH_ASSERT(o != NULL && ord != NULL && buf != NULL);
    SH_ASSERT(ord->sku_idx < o->nskus);
    char oid[LG_ORDER_ID_BYTES];
    lg_gen_order_id(o, ord->n, oid);
    int len =
        snprintf(buf, LG_BODY_BYTES_MAX,
                 "{\"sku\":\"%s\",\"order_id\":\"%s\",\"user_id\":\"u%" PRIu64 "\",\"qty\":%u}",
                 o->skus[ord->sku_idx], oid, ord->user, ord->qty);
    SH_ASSERT(len > 0 && len < LG_BODY_BYTES_MAX);
    return (size_t)len;
}

size_t lg_gen_release_body(const lg_opts *o, const lg_order *ord, char *buf)
{
    SH_ASSERT(o != NULL && ord != NULL && buf != NULL);
    SH_ASSERT(ord->sku_idx < o->nskus);
    char oid[LG_ORDER_ID_BYTES];
    lg_gen_order_id(o, ord->n, oid);
    int len = snprintf(buf, LG_BODY_BYTES_MAX, "{\"sku\":\"%s\",\"order_id\":\"%s\"}",
                       o->skus[ord->sku_idx], oid);
    SH_ASSERT(len > 0 && len < LG_BODY_BYTES_MAX);
    return (size_t)len;
}
