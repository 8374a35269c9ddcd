/* sh_wire.c -- encoder and decoder of the binary messages the daemons exchange over NNG.
 *
 * Every byte a decoder sees may come from a buggy or hostile peer, so decoding goes
 * through one small reader that knows where the buffer ends: each get_* checks the
 * bytes left, and the first underflow or bad length sticks in reader.err, after which
 * every get returns zero without reading. Decoders thus never index the buffer
 * themselves and cannot read outside it, and they write only records [0, count)
 * after checking count against the caller's capacity. Malformed input is answered
 * with an error code, never an assert: asserts here guard only the caller's side of
 * the contract (NULL pointers, a wrong type argument, a writer overrunning the size
 * it computed itself).
 *
 * Each record type has one check_* function, called by the encoder before it writes
 * and by the decoder after it reads, so the two sides of the boundary refuse exactly
 * the same facts. The encoder returns SH_EINVAL rather than asserting, because the
 * records it is given are often built from Redis or MySQL data (stream details,
 * catalog rows) that the house style forbids asserting on. Sizes are computed
 * exactly before encoding, so an encoder never writes a partial message past the
 * caller's capacity. */
#include "sh_wire.h"

#include <string.h>

#include "sh_log.h"

/* ---- wire sizes ------------------------------------------------------------ */
/* Fixed bytes of each record, strings' length bytes included, string bytes not. */
#define WIRE_ITEM_FIXED_BYTES           (8 + 4 + 4 + 2 + 2 + 4 + 1 + 3)
#define WIRE_RESULT_BYTES               (8 + 8 + 8 + 8 + 4 + 2 + 4 + 1 + 1 + 1)
#define WIRE_BATCH_HEAD_FIXED_BYTES     (1 + 2 + 8 + 8)
#define WIRE_DETAIL_FIXED_BYTES         (8 + 8 + 4 + 1 + 2)
#define WIRE_ACK_FIXED_BYTES            (1 + 1 + 2 + 8 + 1)
#define WIRE_SKU_FIXED_BYTES            (1 + 1 + 8 + 8 + 4 + 2 + 4 + 4)
#define WIRE_CATALOG_REQ_FIXED_BYTES    (1 + WIRE_SKU_FIXED_BYTES + 1 + 8)
#define WIRE_CATALOG_REP_FIXED_BYTES    (1 + 1 + 4 + 4 + 1)
#define WIRE_PARTOP_FIXED_BYTES         (1 + 1 + 1 + 2 + 8 + 8)
#define WIRE_PARTOP_RESULT_FIXED_BYTES  (1 + 1 + 1 + 1 + 1 + 2 + 8 + 8 + 8 + 8 + 8 + 8 + 1)
#define WIRE_SYNC_STATE_REQ_FIXED_BYTES 1
#define WIRE_SYNC_STATE_REP_FIXED_BYTES (1 + 1 + 8 + 1)
#define WIRE_SYNC_PART_BYTES            (2 + 8 + 8 + 8 + 8 + 8 + 8 + 8)

/* A full message of every type fits one NNG message, so an encoder never meets a
 * count within its limit that it cannot send. */
_Static_assert(SH_WIRE_HEADER_BYTES + (uint64_t)SH_WIRE_ITEMS_MAX *
                                          (WIRE_ITEM_FIXED_BYTES + SH_SKU_ID_CHARS_MAX +
                                           SH_ORDER_ID_CHARS_MAX + SH_USER_ID_CHARS_MAX) <=
                   SH_WIRE_MSG_BYTES_MAX,
               "a full item message fits one NNG message");
_Static_assert(SH_WIRE_HEADER_BYTES + (uint64_t)SH_WIRE_ITEMS_MAX * WIRE_RESULT_BYTES <=
                   SH_WIRE_MSG_BYTES_MAX,
               "a full result message fits one NNG message");
_Static_assert(SH_WIRE_HEADER_BYTES + WIRE_BATCH_HEAD_FIXED_BYTES + SH_SKU_ID_CHARS_MAX +
                       (uint64_t)SH_WIRE_DETAILS_MAX *
                           (WIRE_DETAIL_FIXED_BYTES + SH_ORDER_ID_CHARS_MAX +
                            SH_USER_ID_CHARS_MAX) <=
                   SH_WIRE_MSG_BYTES_MAX,
               "a full detail batch fits one NNG message");
_Static_assert(SH_WIRE_HEADER_BYTES + WIRE_CATALOG_REP_FIXED_BYTES + SH_MESSAGE_CHARS_MAX +
                       (uint64_t)SH_SKUS_MAX *
                           (WIRE_SKU_FIXED_BYTES + SH_SKU_ID_CHARS_MAX + SH_SKU_NAME_CHARS_MAX) <=
                   SH_WIRE_MSG_BYTES_MAX,
               "a full catalog listing fits one NNG message");
_Static_assert(SH_WIRE_HEADER_BYTES + (uint64_t)SH_WIRE_PARTOPS_MAX *
                                          (WIRE_PARTOP_RESULT_FIXED_BYTES + SH_SKU_ID_CHARS_MAX) <=
                   SH_WIRE_MSG_BYTES_MAX,
               "a full partop reply fits one NNG message");
_Static_assert(SH_WIRE_HEADER_BYTES + WIRE_SYNC_STATE_REP_FIXED_BYTES + SH_MESSAGE_CHARS_MAX +
                       (uint64_t)SH_PARTITIONS_PER_SKU_MAX * WIRE_SYNC_PART_BYTES <=
                   SH_WIRE_MSG_BYTES_MAX,
               "a full sync state reply fits one NNG message");
/* Counts travel in a u16, strings with a u8 length, enums in a u8. */
_Static_assert(SH_WIRE_ITEMS_MAX <= UINT16_MAX, "count is a u16");
_Static_assert(SH_WIRE_DETAILS_MAX <= UINT16_MAX, "count is a u16");
_Static_assert(SH_SKUS_MAX <= UINT16_MAX, "count is a u16");
_Static_assert(SH_WIRE_PARTOPS_MAX <= UINT16_MAX, "count is a u16");
_Static_assert(SH_WIRE_PARTOPS_MAX >= SH_PARTITIONS_PER_SKU_MAX * 4,
               "four ops for every partition of a SKU fit one message");
_Static_assert(SH_SKU_NAME_CHARS_MAX < 256, "strings travel with an 8-bit length");
_Static_assert(SH_RESTOCK_ID_CHARS_MAX < 256, "strings travel with an 8-bit length");
_Static_assert(SH_MESSAGE_CHARS_MAX < 256, "strings travel with an 8-bit length");
_Static_assert(SH_ERR_COUNT_ <= 256, "an sh_err travels in a u8");
_Static_assert(SH_PARTITIONS_PER_SKU_MAX <= UINT16_MAX, "a partition index is a u16");
_Static_assert(SH_QTY_UNITS_MAX <= INT32_MAX, "a detail qty is an i32");
_Static_assert(SH_CHUNK_UNITS_MAX <= UINT32_MAX, "a chunk is a u32");
_Static_assert(SH_PER_USER_LIMIT_UNITS_MAX <= UINT32_MAX, "a per-user limit is a u32");

/* ---- type table ------------------------------------------------------------ */

typedef struct wire_type_info {
    const char *name;
    uint16_t count_min;
    uint16_t count_max;
} wire_type_info;

#define WIRE_TYPE_LAST SH_WIRE_SYNC_DETAILS_REP

static const wire_type_info wire_types[WIRE_TYPE_LAST + 1] = {
    [0] = {"UNKNOWN", 0, 0},
    [SH_WIRE_DEDUCT_REQ] = {"DEDUCT_REQ", 1, SH_WIRE_ITEMS_MAX},
    [SH_WIRE_DEDUCT_REP] = {"DEDUCT_REP", 0, SH_WIRE_ITEMS_MAX},
    [SH_WIRE_RELEASE_REQ] = {"RELEASE_REQ", 1, SH_WIRE_ITEMS_MAX},
    [SH_WIRE_RELEASE_REP] = {"RELEASE_REP", 0, SH_WIRE_ITEMS_MAX},
    [SH_WIRE_DETAIL_BATCH] = {"DETAIL_BATCH", 0, SH_WIRE_DETAILS_MAX},
    [SH_WIRE_BATCH_ACK] = {"BATCH_ACK", 1, 1},
    [SH_WIRE_CATALOG_REQ] = {"CATALOG_REQ", 1, 1},
    [SH_WIRE_CATALOG_REP] = {"CATALOG_REP", 0, SH_SKUS_MAX},
    [SH_WIRE_PARTOP_REQ] = {"PARTOP_REQ", 1, SH_WIRE_PARTOPS_MAX},
    [SH_WIRE_PARTOP_REP] = {"PARTOP_REP", 0, SH_WIRE_PARTOPS_MAX},
    [SH_WIRE_SYNC_STATE_REQ] = {"SYNC_STATE_REQ", 1, 1},
    [SH_WIRE_SYNC_STATE_REP] = {"SYNC_STATE_REP", 0, SH_PARTITIONS_PER_SKU_MAX},
    [SH_WIRE_SYNC_DETAILS_REQ] = {"SYNC_DETAILS_REQ", 1, 1},
    [SH_WIRE_SYNC_DETAILS_REP] = {"SYNC_DETAILS_REP", 0, SH_WIRE_DETAILS_PAGE_MAX},
};

static const char *const wire_outcome_names[SH_WIRE_OUT_LAST_ + 1] = {
    [SH_WIRE_OUT_OK] = "OK",
    [SH_WIRE_OUT_SOLD_OUT] = "SOLD_OUT",
    [SH_WIRE_OUT_CONFLICT] = "CONFLICT",
    [SH_WIRE_OUT_USER_LIMIT] = "USER_LIMIT",
    [SH_WIRE_OUT_UNKNOWN_ORDER] = "UNKNOWN_ORDER",
    [SH_WIRE_OUT_RETRY] = "RETRY",
    [SH_WIRE_OUT_INVALID] = "INVALID",
    [SH_WIRE_OUT_UNAVAILABLE] = "UNAVAILABLE",
    [SH_WIRE_OUT_ERROR] = "ERROR",
    [SH_WIRE_OUT_RELEASED] = "RELEASED",
};

static int wire_type_known(unsigned type)
{
    return type >= SH_WIRE_DEDUCT_REQ && type <= WIRE_TYPE_LAST;
}

const char *sh_wire_type_name(int type)
{
    if (type < 0 || !wire_type_known((unsigned)type)) {
        return "UNKNOWN";
    }
    return wire_types[type].name;
}

const char *sh_wire_outcome_name(int status)
{
    if (status < SH_WIRE_OUT_OK || status > SH_WIRE_OUT_LAST_) {
        return "UNKNOWN";
    }
    return wire_outcome_names[status];
}

/* ---- reader ---------------------------------------------------------------- */

/* Reads little-endian fields from [p, end). The first failure sticks in err; after it
 * every get returns 0 (strings "") and reads nothing. */
typedef struct wire_reader {
    const uint8_t *p;
    const uint8_t *end;
    sh_err err;
} wire_reader;

/* True when n more bytes are there to read; otherwise records SH_ETRUNC. */
static int rd_need(wire_reader *r, size_t n)
{
    SH_ASSERT(r->p <= r->end);
    if (r->err != SH_OK) {
        return 0;
    }
    if ((size_t)(r->end - r->p) < n) {
        r->err = SH_ETRUNC;
        return 0;
    }
    return 1;
}

static uint64_t rd_le(wire_reader *r, size_t bytes)
{
    SH_ASSERT(bytes >= 1 && bytes <= 8);
    if (!rd_need(r, bytes)) {
        return 0;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < bytes; i++) {
        v |= (uint64_t)r->p[i] << (8 * i);
    }
    r->p += bytes;
    return v;
}

static uint8_t rd_u8(wire_reader *r)
{
    return (uint8_t)rd_le(r, 1);
}

static uint16_t rd_u16(wire_reader *r)
{
    return (uint16_t)rd_le(r, 2);
}

static uint32_t rd_u32(wire_reader *r)
{
    return (uint32_t)rd_le(r, 4);
}

static uint64_t rd_u64(wire_reader *r)
{
    return rd_le(r, 8);
}

/* Two's-complement decoding without the implementation-defined unsigned-to-signed
 * conversion of an out-of-range value. */
static int64_t rd_i64(wire_reader *r)
{
    uint64_t u = rd_u64(r);
    if (u <= (uint64_t)INT64_MAX) {
        return (int64_t)u;
    }
    return (int64_t)(u - (uint64_t)INT64_MAX - 1u) + INT64_MIN;
}

static int32_t rd_i32(wire_reader *r)
{
    uint32_t u = rd_u32(r);
    if (u <= (uint32_t)INT32_MAX) {
        return (int32_t)u;
    }
    return (int32_t)(u - (uint32_t)INT32_MAX - 1u) + INT32_MIN;
}

/* Reads a u8-length string into dst[0..max], NUL-terminated. A length past max or a
 * NUL byte inside the string (which would make strlen and len disagree) is SH_EINVAL. */
static void rd_str(wire_reader *r, char *dst, size_t max, uint8_t *len_out)
{
    SH_ASSERT(max < 256);
    dst[0] = '\0';
    *len_out = 0;
    uint8_t n = rd_u8(r);
    if (r->err != SH_OK) {
        return;
    }
    if (n > max) {
        r->err = SH_EINVAL;
        return;
    }
    if (!rd_need(r, n)) {
        return;
    }
    if (n > 0 && memchr(r->p, '\0', n) != NULL) {
        r->err = SH_EINVAL;
        return;
    }
    memcpy(dst, r->p, n);
    dst[n] = '\0';
    *len_out = n;
    r->p += n;
}

/* ---- writer ---------------------------------------------------------------- */

/* Writes little-endian fields into [p, end). Encoders size the buffer exactly first,
 * so an overrun is a bug; it sticks in err (SH_ELIMIT) and the encoder asserts on it. */
typedef struct wire_writer {
    uint8_t *p;
    uint8_t *end;
    sh_err err;
} wire_writer;

static void wr_le(wire_writer *w, uint64_t v, size_t bytes)
{
    SH_ASSERT(bytes >= 1 && bytes <= 8);
    SH_ASSERT(w->p <= w->end);
    if (w->err != SH_OK) {
        return;
    }
    if ((size_t)(w->end - w->p) < bytes) {
        w->err = SH_ELIMIT;
        return;
    }
    for (size_t i = 0; i < bytes; i++) {
        w->p[i] = (uint8_t)(v >> (8 * i));
    }
    w->p += bytes;
}

static void wr_u8(wire_writer *w, uint8_t v)
{
    wr_le(w, v, 1);
}

static void wr_u16(wire_writer *w, uint16_t v)
{
    wr_le(w, v, 2);
}

static void wr_u32(wire_writer *w, uint32_t v)
{
    wr_le(w, v, 4);
}

static void wr_u64(wire_writer *w, uint64_t v)
{
    wr_le(w, v, 8);
}

static void wr_i64(wire_writer *w, int64_t v)
{
    wr_le(w, (uint64_t)v, 8); /* conversion to unsigned is modulo 2^64: well defined */
}

static void wr_i32(wire_writer *w, int32_t v)
{
    wr_le(w, (uint32_t)v, 4);
}

static void wr_str(wire_writer *w, const char *s, uint8_t len)
{
    wr_u8(w, len);
    if (w->err != SH_OK || len == 0) {
        return;
    }
    if ((size_t)(w->end - w->p) < len) {
        w->err = SH_ELIMIT;
        return;
    }
    memcpy(w->p, s, len);
    w->p += len;
}

/* ---- checks shared by encoders and decoders ------------------------------------ */

/* A string field: min <= len <= max, NUL right after it and none inside it. */
static sh_err check_str(const char *s, uint8_t len, size_t min, size_t max)
{
    if (len < min || len > max) {
        return SH_EINVAL;
    }
    if (s[len] != '\0' || (len > 0 && memchr(s, '\0', len) != NULL)) {
        return SH_EINVAL;
    }
    return SH_OK;
}

static sh_err check_item(sh_wire_type type, const sh_wire_item *it)
{
    SH_ASSERT(type == SH_WIRE_DEDUCT_REQ || type == SH_WIRE_RELEASE_REQ);
    int deduct = type == SH_WIRE_DEDUCT_REQ;
    if (it->qty > SH_QTY_UNITS_MAX || (deduct && it->qty == 0)) {
        return SH_EINVAL;
    }
    if (it->per_user_limit > SH_PER_USER_LIMIT_UNITS_MAX ||
        it->partition >= SH_PARTITIONS_PER_SKU_MAX ||
        it->from_partition >= SH_PARTITIONS_PER_SKU_MAX ||
        (it->flags & ~SH_WIRE_ITEM_F_ALL_) != 0) {
        return SH_EINVAL;
    }
    if (check_str(it->sku, it->sku_len, 1, SH_SKU_ID_CHARS_MAX) != SH_OK ||
        check_str(it->order_id, it->order_id_len, 1, SH_ORDER_ID_CHARS_MAX) != SH_OK ||
        check_str(it->user_id, it->user_id_len, deduct ? 1 : 0, SH_USER_ID_CHARS_MAX) != SH_OK) {
        return SH_EINVAL;
    }
    return SH_OK;
}

static sh_err check_result(const sh_wire_result *res)
{
    if ((unsigned)res->status > SH_WIRE_OUT_LAST_ || res->active > 1 ||
        (res->flags & ~SH_WIRE_RES_F_ALL_) != 0) {
        return SH_EINVAL;
    }
    if (res->qty > SH_QTY_UNITS_MAX || res->partition >= SH_PARTITIONS_PER_SKU_MAX) {
        return SH_EINVAL;
    }
    return SH_OK;
}

/* The batch head against the number of details it carries. */
static sh_err check_batch(const sh_wire_batch *b, size_t n)
{
    if (check_str(b->sku, b->sku_len, 1, SH_SKU_ID_CHARS_MAX) != SH_OK ||
        b->partition >= SH_PARTITIONS_PER_SKU_MAX) {
        return SH_EINVAL;
    }
    if (n == 0) {
        return b->first_seq == 0 && b->last_seq == 0 ? SH_OK : SH_EINVAL;
    }
    /* last - first + 1 == n, written so that no operand can wrap. */
    if (b->first_seq < 1 || b->last_seq < b->first_seq || b->last_seq - b->first_seq != n - 1) {
        return SH_EINVAL;
    }
    return SH_OK;
}

/* A detail's own fields (a batch's and a SYNC_DETAILS_REP's records). */
static sh_err check_detail_fields(const sh_wire_detail *d)
{
    if (d->qty == 0 || d->qty > SH_QTY_UNITS_MAX || d->qty < -SH_QTY_UNITS_MAX ||
        d->sub_domain > 1) {
        return SH_EINVAL;
    }
    if (check_str(d->order_id, d->order_id_len, 1, SH_ORDER_ID_CHARS_MAX) != SH_OK ||
        check_str(d->user_id, d->user_id_len, 0, SH_USER_ID_CHARS_MAX) != SH_OK) {
        return SH_EINVAL;
    }
    return SH_OK;
}

/* Detail i of a batch whose head already passed check_batch. */
static sh_err check_detail(const sh_wire_batch *b, size_t i, const sh_wire_detail *d)
{
    if (d->seq != b->first_seq + i) { /* cannot wrap: first + i <= last */
        return SH_EINVAL;
    }
    return check_detail_fields(d);
}

static sh_err check_ack(const sh_wire_ack *a)
{
    if ((unsigned)a->status >= SH_ERR_COUNT_ || a->partition >= SH_PARTITIONS_PER_SKU_MAX) {
        return SH_EINVAL;
    }
    if (check_str(a->sku, a->sku_len, 1, SH_SKU_ID_CHARS_MAX) != SH_OK ||
        check_str(a->message, a->message_len, 0, SH_MESSAGE_CHARS_MAX) != SH_OK) {
        return SH_EINVAL;
    }
    return SH_OK;
}

/* A catalog row; complete rows (replies, upserts) also need an id, partitions and
 * an ordered chunk range. */
static sh_err check_sku(const sh_wire_sku *s, int complete)
{
    if (check_str(s->sku_id, s->sku_id_len, complete ? 1 : 0, SH_SKU_ID_CHARS_MAX) != SH_OK ||
        check_str(s->name, s->name_len, 0, SH_SKU_NAME_CHARS_MAX) != SH_OK) {
        return SH_EINVAL;
    }
    if (s->total < 0 || s->total > SH_SKU_TOTAL_UNITS_MAX || s->start_ms < 0 ||
        s->per_user_limit > SH_PER_USER_LIMIT_UNITS_MAX ||
        s->partitions > SH_PARTITIONS_PER_SKU_MAX || s->min_chunk > SH_CHUNK_UNITS_MAX ||
        s->max_chunk > SH_CHUNK_UNITS_MAX) {
        return SH_EINVAL;
    }
    if (complete &&
        (s->partitions < 1 || s->min_chunk < SH_CHUNK_UNITS_MIN || s->min_chunk > s->max_chunk)) {
        return SH_EINVAL;
    }
    return SH_OK;
}

static sh_err check_catalog_req(const sh_wire_catalog_req *req)
{
    unsigned op = (unsigned)req->op;
    if (op < SH_WIRE_CAT_GET || op > SH_WIRE_CAT_MIGRATE) {
        return SH_EINVAL;
    }
    if (check_sku(&req->sku, op == SH_WIRE_CAT_UPSERT) != SH_OK) {
        return SH_EINVAL;
    }
    if (op != SH_WIRE_CAT_LIST && op != SH_WIRE_CAT_MIGRATE && req->sku.sku_id_len == 0) {
        return SH_EINVAL;
    }
    if (op == SH_WIRE_CAT_MIGRATE && req->sku.sku_id_len != 0) {
        return SH_EINVAL;
    }
    if (op == SH_WIRE_CAT_RESTOCK) {
        if (check_str(req->restock_id, req->restock_id_len, 1, SH_RESTOCK_ID_CHARS_MAX) != SH_OK ||
            req->units < 1 || req->units > SH_SKU_TOTAL_UNITS_MAX) {
            return SH_EINVAL;
        }
    } else if (check_str(req->restock_id, req->restock_id_len, 0, 0) != SH_OK || req->units != 0) {
        return SH_EINVAL;
    }
    return SH_OK;
}

static sh_err check_catalog_rep(const sh_wire_catalog_rep *rep)
{
    if ((unsigned)rep->status >= SH_ERR_COUNT_ || rep->applied > 1) {
        return SH_EINVAL;
    }
    if (rep->schema_before > SH_WIRE_SCHEMA_VERSION_MAX ||
        rep->schema_after > SH_WIRE_SCHEMA_VERSION_MAX ||
        (rep->status == SH_OK && rep->schema_before > rep->schema_after)) {
        return SH_EINVAL;
    }
    return check_str(rep->message, rep->message_len, 0, SH_MESSAGE_CHARS_MAX);
}

static int partop_op_known(unsigned op)
{
    return op >= SH_WIRE_PARTOP_GRANT && op <= SH_WIRE_PARTOP_INIT;
}

static sh_err check_partop(const sh_wire_partop *op)
{
    if (!partop_op_known((unsigned)op->op) || op->sub_domain > 1 ||
        op->partition >= SH_PARTITIONS_PER_SKU_MAX) {
        return SH_EINVAL;
    }
    if (check_str(op->sku, op->sku_len, 1, SH_SKU_ID_CHARS_MAX) != SH_OK) {
        return SH_EINVAL;
    }
    if (op->units < 0 || op->units > SH_SKU_TOTAL_UNITS_MAX) {
        return SH_EINVAL;
    }
    if (op->op == SH_WIRE_PARTOP_GRANT && (op->grant_id == 0 || op->units == 0)) {
        return SH_EINVAL;
    }
    if (op->op == SH_WIRE_PARTOP_RECLAIM && op->grant_id == 0) {
        return SH_EINVAL;
    }
    return SH_OK;
}

static sh_err check_partop_result(const sh_wire_partop_result *res)
{
    if ((unsigned)res->status >= SH_ERR_COUNT_ || !partop_op_known((unsigned)res->op) ||
        res->active > 1 || res->state > 1 || (res->flags & ~SH_WIRE_RES_F_ALL_) != 0) {
        return SH_EINVAL;
    }
    if (check_str(res->sku, res->sku_len, 1, SH_SKU_ID_CHARS_MAX) != SH_OK ||
        res->partition >= SH_PARTITIONS_PER_SKU_MAX) {
        return SH_EINVAL;
    }
    return SH_OK;
}

static sh_err check_sync_state_rep(const sh_wire_sync_state_rep *rep, size_t n)
{
    if ((unsigned)rep->status >= SH_ERR_COUNT_ || (rep->status != SH_OK && n != 0)) {
        return SH_EINVAL;
    }
    if ((rep->dup_orders == 0) != (rep->dup_order_len == 0) ||
        check_str(rep->dup_order, rep->dup_order_len, 0, SH_ORDER_ID_CHARS_MAX) != SH_OK) {
        return SH_EINVAL;
    }
    return check_str(rep->message, rep->message_len, 0, SH_MESSAGE_CHARS_MAX);
}

/* Partition i of a reply; prev is partition i - 1 (NULL for the first): partitions
 * strictly increase, so none is reported twice. */
static sh_err check_sync_part(const sh_wire_sync_part *p, const sh_wire_sync_part *prev)
{
    if (p->partition >= SH_PARTITIONS_PER_SKU_MAX || p->detail_rows < 0 || p->rows_counted < 0) {
        return SH_EINVAL;
    }
    if (prev != NULL && p->partition <= prev->partition) {
        return SH_EINVAL;
    }
    return SH_OK;
}

/* ---- header ---------------------------------------------------------------- */

sh_err sh_wire_header_decode(const uint8_t *buf, size_t len, sh_wire_header *out)
{
    SH_ASSERT(out != NULL);
    SH_ASSERT(buf != NULL || len == 0);
    memset(out, 0, sizeof *out);
    if (len < SH_WIRE_HEADER_BYTES) {
        return SH_ETRUNC;
    }
    wire_reader r = {buf, buf + SH_WIRE_HEADER_BYTES, SH_OK};
    out->version = rd_u8(&r);
    uint8_t type = rd_u8(&r);
    out->count = rd_u16(&r);
    out->body_len = rd_u32(&r);
    out->req_id = rd_u64(&r);
    SH_ASSERT(r.err == SH_OK && r.p == r.end);
    if (out->version != SH_WIRE_VERSION) {
        return SH_EVERSION;
    }
    if (!wire_type_known(type)) {
        return SH_ETYPE;
    }
    out->type = (sh_wire_type)type;
    size_t body_avail = len - SH_WIRE_HEADER_BYTES;
    if ((uint64_t)out->body_len > (uint64_t)body_avail) {
        return SH_ETRUNC; /* the length points past the buffer */
    }
    if ((uint64_t)out->body_len < (uint64_t)body_avail) {
        return SH_EINVAL; /* trailing bytes after the announced body */
    }
    if (len > SH_WIRE_MSG_BYTES_MAX || out->count > wire_types[type].count_max) {
        return SH_ELIMIT;
    }
    if (out->count < wire_types[type].count_min) {
        return SH_EINVAL;
    }
    return SH_OK;
}

/* Decodes and checks the header, checks the type is type_a or type_b and the count
 * fits cap, and points r at the body. */
static sh_err decode_begin(const uint8_t *buf, size_t len, sh_wire_header *hdr, sh_wire_type type_a,
                           sh_wire_type type_b, size_t cap, wire_reader *r)
{
    SH_ASSERT(wire_type_known(type_a) && wire_type_known(type_b));
    sh_err rc = sh_wire_header_decode(buf, len, hdr);
    if (rc != SH_OK) {
        return rc;
    }
    if (hdr->type != type_a && hdr->type != type_b) {
        return SH_EPROTO;
    }
    if (hdr->count > cap) {
        return SH_ELIMIT;
    }
    r->p = buf + SH_WIRE_HEADER_BYTES;
    r->end = buf + len;
    r->err = SH_OK;
    return SH_OK;
}

/* After the last record: the reader's error, or SH_EINVAL for bytes left over. */
static sh_err decode_end(const wire_reader *r)
{
    if (r->err != SH_OK) {
        return r->err;
    }
    return r->p == r->end ? SH_OK : SH_EINVAL;
}

/* An encoder's count against its type's bounds; checked before any record. */
static sh_err encode_count(sh_wire_type type, size_t count)
{
    SH_ASSERT(wire_type_known(type));
    if (count > wire_types[type].count_max) {
        return SH_ELIMIT;
    }
    if (count < wire_types[type].count_min) {
        return SH_EINVAL;
    }
    return SH_OK;
}

/* Checks size against cap, then writes the header. count passed encode_count; size
 * is the message's exact length, header included. */
static sh_err encode_begin(uint8_t *buf, size_t cap, size_t size, sh_wire_type type,
                           uint64_t req_id, size_t count, wire_writer *w)
{
    SH_ASSERT(buf != NULL);
    SH_ASSERT(encode_count(type, count) == SH_OK);
    SH_ASSERT(size >= SH_WIRE_HEADER_BYTES && size <= SH_WIRE_MSG_BYTES_MAX);
    if (size > cap) {
        return SH_ELIMIT;
    }
    w->p = buf;
    w->end = buf + size;
    w->err = SH_OK;
    wr_u8(w, SH_WIRE_VERSION);
    wr_u8(w, (uint8_t)type);
    wr_u16(w, (uint16_t)count);
    wr_u32(w, (uint32_t)(size - SH_WIRE_HEADER_BYTES));
    wr_u64(w, req_id);
    return SH_OK;
}

/* The writer must have filled exactly the size computed before. */
static void encode_end(const uint8_t *buf, size_t size, const wire_writer *w, size_t *len_out)
{
    SH_ASSERT(w->err == SH_OK);
    SH_ASSERT(w->p == buf + size);
    *len_out = size;
}

/* ---- helpers ---------------------------------------------------------------- */

sh_err sh_wire_str_set(char *dst, size_t dst_size, uint8_t *len_out, const char *src,
                       size_t src_len)
{
    SH_ASSERT(dst != NULL && len_out != NULL);
    SH_ASSERT(dst_size >= 1 && dst_size <= 256);
    SH_ASSERT(src != NULL || src_len == 0);
    dst[0] = '\0';
    *len_out = 0;
    if (src_len > dst_size - 1) {
        return SH_ELIMIT;
    }
    if (src_len > 0 && memchr(src, '\0', src_len) != NULL) {
        return SH_EINVAL;
    }
    if (src_len > 0) {
        memcpy(dst, src, src_len);
    }
    dst[src_len] = '\0';
    *len_out = (uint8_t)src_len;
    return SH_OK;
}

void sh_wire_text_set(char *dst, size_t dst_size, uint8_t *len_out, const char *text)
{
    SH_ASSERT(text != NULL && dst_size >= 1);
    size_t len = strlen(text);
    if (len > dst_size - 1) {
        len = dst_size - 1;
    }
    sh_err rc = sh_wire_str_set(dst, dst_size, len_out, text, len);
    SH_ASSERT(rc == SH_OK); /* a C string holds no NUL before its end, and len fits */
}

/* ---- DEDUCT_REQ / RELEASE_REQ ---------------------------------------------------- */

size_t sh_wire_items_size(const sh_wire_item *items, size_t n)
{
    SH_ASSERT(items != NULL || n == 0);
    if (n > SH_WIRE_ITEMS_MAX) {
        return 0;
    }
    size_t size = SH_WIRE_HEADER_BYTES;
    for (size_t i = 0; i < n; i++) {
        size += WIRE_ITEM_FIXED_BYTES + (size_t)items[i].sku_len + items[i].order_id_len +
                items[i].user_id_len;
    }
    return size;
}

sh_err sh_wire_items_encode(uint8_t *buf, size_t cap, size_t *len_out, sh_wire_type type,
                            uint64_t req_id, const sh_wire_item *items, size_t n)
{
    SH_ASSERT(type == SH_WIRE_DEDUCT_REQ || type == SH_WIRE_RELEASE_REQ);
    SH_ASSERT(len_out != NULL && (items != NULL || n == 0));
    sh_err rc = encode_count(type, n);
    if (rc != SH_OK) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        if (check_item(type, &items[i]) != SH_OK) {
            return SH_EINVAL;
        }
    }
    size_t size = sh_wire_items_size(items, n);
    wire_writer w;
    rc = encode_begin(buf, cap, size, type, req_id, n, &w);
    if (rc != SH_OK) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        const sh_wire_item *it = &items[i];
        wr_u64(&w, it->tag);
        wr_u32(&w, it->qty);
        wr_u32(&w, it->per_user_limit);
        wr_u16(&w, it->partition);
        wr_u16(&w, it->from_partition);
        wr_u32(&w, it->claim_version);
        wr_u8(&w, it->flags);
        wr_str(&w, it->sku, it->sku_len);
        wr_str(&w, it->order_id, it->order_id_len);
        wr_str(&w, it->user_id, it->user_id_len);
    }
    encode_end(buf, size, &w, len_out);
    return SH_OK;
}

sh_err sh_wire_items_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                            sh_wire_item *items, size_t items_cap)
{
    SH_ASSERT(hdr != NULL && (items != NULL || items_cap == 0));
    wire_reader r;
    sh_err rc = decode_begin(buf, len, hdr, SH_WIRE_DEDUCT_REQ, SH_WIRE_RELEASE_REQ, items_cap, &r);
    if (rc != SH_OK) {
        return rc;
    }
    for (size_t i = 0; i < hdr->count && r.err == SH_OK; i++) {
        sh_wire_item *it = &items[i];
        it->tag = rd_u64(&r);
        it->qty = rd_u32(&r);
        it->per_user_limit = rd_u32(&r);
        it->partition = rd_u16(&r);
        it->from_partition = rd_u16(&r);
        it->claim_version = rd_u32(&r);
        it->flags = rd_u8(&r);
        rd_str(&r, it->sku, SH_SKU_ID_CHARS_MAX, &it->sku_len);
        rd_str(&r, it->order_id, SH_ORDER_ID_CHARS_MAX, &it->order_id_len);
        rd_str(&r, it->user_id, SH_USER_ID_CHARS_MAX, &it->user_id_len);
        if (r.err == SH_OK && check_item(hdr->type, it) != SH_OK) {
            return SH_EINVAL;
        }
    }
    return decode_end(&r);
}

/* ---- DEDUCT_REP / RELEASE_REP ---------------------------------------------------- */

size_t sh_wire_results_size(const sh_wire_result *results, size_t n)
{
    SH_ASSERT(results != NULL || n == 0);
    if (n > SH_WIRE_ITEMS_MAX) {
        return 0;
    }
    return SH_WIRE_HEADER_BYTES + n * WIRE_RESULT_BYTES;
}

sh_err sh_wire_results_encode(uint8_t *buf, size_t cap, size_t *len_out, sh_wire_type type,
                              uint64_t req_id, const sh_wire_result *results, size_t n)
{
    SH_ASSERT(type == SH_WIRE_DEDUCT_REP || type == SH_WIRE_RELEASE_REP);
    SH_ASSERT(len_out != NULL && (results != NULL || n == 0));
    sh_err rc = encode_count(type, n);
    if (rc != SH_OK) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        if (check_result(&results[i]) != SH_OK) {
            return SH_EINVAL;
        }
    }
    size_t size = sh_wire_results_size(results, n);
    wire_writer w;
    rc = encode_begin(buf, cap, size, type, req_id, n, &w);
    if (rc != SH_OK) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        const sh_wire_result *res = &results[i];
        wr_u64(&w, res->tag);
        wr_u64(&w, res->seq);
        wr_i64(&w, res->s0);
        wr_i64(&w, res->s1);
        wr_u32(&w, res->qty);
        wr_u16(&w, res->partition);
        wr_u32(&w, res->claim_version);
        wr_u8(&w, (uint8_t)res->status);
        wr_u8(&w, res->flags);
        wr_u8(&w, res->active);
    }
    encode_end(buf, size, &w, len_out);
    return SH_OK;
}

sh_err sh_wire_results_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                              sh_wire_result *results, size_t results_cap)
{
    SH_ASSERT(hdr != NULL && (results != NULL || results_cap == 0));
    wire_reader r;
    sh_err rc =
        decode_begin(buf, len, hdr, SH_WIRE_DEDUCT_REP, SH_WIRE_RELEASE_REP, results_cap, &r);
    if (rc != SH_OK) {
        return rc;
    }
    for (size_t i = 0; i < hdr->count && r.err == SH_OK; i++) {
        sh_wire_result *res = &results[i];
        res->tag = rd_u64(&r);
        res->seq = rd_u64(&r);
        res->s0 = rd_i64(&r);
        res->s1 = rd_i64(&r);
        res->qty = rd_u32(&r);
        res->partition = rd_u16(&r);
        res->claim_version = rd_u32(&r);
        res->status = (sh_wire_outcome)rd_u8(&r);
        res->flags = rd_u8(&r);
        res->active = rd_u8(&r);
        if (r.err == SH_OK && check_result(res) != SH_OK) {
            return SH_EINVAL;
        }
    }
    return decode_end(&r);
}

/* ---- DETAIL_BATCH ------------------------------------------------------------ */

/* One detail as it travels, in a batch and in a SYNC_DETAILS_REP. */
static void wr_detail(wire_writer *w, const sh_wire_detail *d)
{
    wr_u64(w, d->seq);
    wr_i64(w, d->created_ms);
    wr_i32(w, d->qty);
    wr_u8(w, d->sub_domain);
    wr_str(w, d->order_id, d->order_id_len);
    wr_str(w, d->user_id, d->user_id_len);
}

static void rd_detail(wire_reader *r, sh_wire_detail *d)
{
    d->seq = rd_u64(r);
    d->created_ms = rd_i64(r);
    d->qty = rd_i32(r);
    d->sub_domain = rd_u8(r);
    rd_str(r, d->order_id, SH_ORDER_ID_CHARS_MAX, &d->order_id_len);
    rd_str(r, d->user_id, SH_USER_ID_CHARS_MAX, &d->user_id_len);
}

size_t sh_wire_batch_size(const sh_wire_batch *batch, const sh_wire_detail *details, size_t n)
{
    SH_ASSERT(batch != NULL && (details != NULL || n == 0));
    if (n > SH_WIRE_DETAILS_MAX) {
        return 0;
    }
    size_t size = SH_WIRE_HEADER_BYTES + WIRE_BATCH_HEAD_FIXED_BYTES + batch->sku_len;
    for (size_t i = 0; i < n; i++) {
        size += WIRE_DETAIL_FIXED_BYTES + (size_t)details[i].order_id_len + details[i].user_id_len;
    }
    return size;
}

sh_err sh_wire_batch_encode(uint8_t *buf, size_t cap, size_t *len_out, uint64_t req_id,
                            const sh_wire_batch *batch, const sh_wire_detail *details, size_t n)
{
    SH_ASSERT(len_out != NULL && batch != NULL && (details != NULL || n == 0));
    sh_err rc = encode_count(SH_WIRE_DETAIL_BATCH, n);
    if (rc != SH_OK) {
        return rc;
    }
    if (check_batch(batch, n) != SH_OK) {
        return SH_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (check_detail(batch, i, &details[i]) != SH_OK) {
            return SH_EINVAL;
        }
    }
    size_t size = sh_wire_batch_size(batch, details, n);
    wire_writer w;
    rc = encode_begin(buf, cap, size, SH_WIRE_DETAIL_BATCH, req_id, n, &w);
    if (rc != SH_OK) {
        return rc;
    }
    wr_str(&w, batch->sku, batch->sku_len);
    wr_u16(&w, batch->partition);
    wr_u64(&w, batch->first_seq);
    wr_u64(&w, batch->last_seq);
    for (size_t i = 0; i < n; i++) {
        wr_detail(&w, &details[i]);
    }
    encode_end(buf, size, &w, len_out);
    return SH_OK;
}

sh_err sh_wire_batch_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                            sh_wire_batch *batch, sh_wire_detail *details, size_t details_cap)
{
    SH_ASSERT(hdr != NULL && batch != NULL && (details != NULL || details_cap == 0));
    wire_reader r;
    sh_err rc =
        decode_begin(buf, len, hdr, SH_WIRE_DETAIL_BATCH, SH_WIRE_DETAIL_BATCH, details_cap, &r);
    if (rc != SH_OK) {
        return rc;
    }
    rd_str(&r, batch->sku, SH_SKU_ID_CHARS_MAX, &batch->sku_len);
    batch->partition = rd_u16(&r);
    batch->first_seq = rd_u64(&r);
    batch->last_seq = rd_u64(&r);
    if (r.err == SH_OK && check_batch(batch, hdr->count) != SH_OK) {
        return SH_EINVAL;
    }
    for (size_t i = 0; i < hdr->count && r.err == SH_OK; i++) {
        sh_wire_detail *d = &details[i];
        rd_detail(&r, d);
        if (r.err == SH_OK && check_detail(batch, i, d) != SH_OK) {
            return SH_EINVAL;
        }
    }
    return decode_end(&r);
}

/* ---- BATCH_ACK --------------------------------------------------------------- */

size_t sh_wire_ack_size(const sh_wire_ack *ack)
{
    SH_ASSERT(ack != NULL);
    return SH_WIRE_HEADER_BYTES + WIRE_ACK_FIXED_BYTES + (size_t)ack->sku_len + ack->message_len;
}

sh_err sh_wire_ack_encode(uint8_t *buf, size_t cap, size_t *len_out, uint64_t req_id,
                          const sh_wire_ack *ack)
{
    SH_ASSERT(len_out != NULL && ack != NULL);
    if (check_ack(ack) != SH_OK) {
        return SH_EINVAL;
    }
    size_t size = sh_wire_ack_size(ack);
    wire_writer w;
    sh_err rc = encode_begin(buf, cap, size, SH_WIRE_BATCH_ACK, req_id, 1, &w);
    if (rc != SH_OK) {
        return rc;
    }
    wr_u8(&w, (uint8_t)ack->status);
    wr_str(&w, ack->sku, ack->sku_len);
    wr_u16(&w, ack->partition);
    wr_u64(&w, ack->synced_seq);
    wr_str(&w, ack->message, ack->message_len);
    encode_end(buf, size, &w, len_out);
    return SH_OK;
}

sh_err sh_wire_ack_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr, sh_wire_ack *ack)
{
    SH_ASSERT(hdr != NULL && ack != NULL);
    wire_reader r;
    sh_err rc = decode_begin(buf, len, hdr, SH_WIRE_BATCH_ACK, SH_WIRE_BATCH_ACK, 1, &r);
    if (rc != SH_OK) {
        return rc;
    }
    ack->status = (sh_err)rd_u8(&r);
    rd_str(&r, ack->sku, SH_SKU_ID_CHARS_MAX, &ack->sku_len);
    ack->partition = rd_u16(&r);
    ack->synced_seq = rd_u64(&r);
    rd_str(&r, ack->message, SH_MESSAGE_CHARS_MAX, &ack->message_len);
    if (r.err == SH_OK && check_ack(ack) != SH_OK) {
        return SH_EINVAL;
    }
    return decode_end(&r);
}

/* ---- CATALOG_REQ / CATALOG_REP ------------------------------------------------ */

static size_t sku_bytes(const sh_wire_sku *s)
{
    return WIRE_SKU_FIXED_BYTES + (size_t)s->sku_id_len + s->name_len;
}

static void wr_sku(wire_writer *w, const sh_wire_sku *s)
{
    wr_str(w, s->sku_id, s->sku_id_len);
    wr_str(w, s->name, s->name_len);
    wr_i64(w, s->total);
    wr_i64(w, s->start_ms);
    wr_u32(w, s->per_user_limit);
    wr_u16(w, s->partitions);
    wr_u32(w, s->min_chunk);
    wr_u32(w, s->max_chunk);
}

static void rd_sku(wire_reader *r, sh_wire_sku *s)
{
    rd_str(r, s->sku_id, SH_SKU_ID_CHARS_MAX, &s->sku_id_len);
    rd_str(r, s->name, SH_SKU_NAME_CHARS_MAX, &s->name_len);
    s->total = rd_i64(r);
    s->start_ms = rd_i64(r);
    s->per_user_limit = rd_u32(r);
    s->partitions = rd_u16(r);
    s->min_chunk = rd_u32(r);
    s->max_chunk = rd_u32(r);
}

size_t sh_wire_catalog_req_size(const sh_wire_catalog_req *req)
{
    SH_ASSERT(req != NULL);
    return SH_WIRE_HEADER_BYTES + WIRE_CATALOG_REQ_FIXED_BYTES + (size_t)req->sku.sku_id_len +
           req->sku.name_len + req->restock_id_len;
}

sh_err sh_wire_catalog_req_encode(uint8_t *buf, size_t cap, size_t *len_out, uint64_t req_id,
                                  const sh_wire_catalog_req *req)
{
    SH_ASSERT(len_out != NULL && req != NULL);
    if (check_catalog_req(req) != SH_OK) {
        return SH_EINVAL;
    }
    size_t size = sh_wire_catalog_req_size(req);
    wire_writer w;
    sh_err rc = encode_begin(buf, cap, size, SH_WIRE_CATALOG_REQ, req_id, 1, &w);
    if (rc != SH_OK) {
        return rc;
    }
    wr_u8(&w, (uint8_t)req->op);
    wr_sku(&w, &req->sku);
    wr_str(&w, req->restock_id, req->restock_id_len);
    wr_i64(&w, req->units);
    encode_end(buf, size, &w, len_out);
    return SH_OK;
}

sh_err sh_wire_catalog_req_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                                  sh_wire_catalog_req *req)
{
    SH_ASSERT(hdr != NULL && req != NULL);
    wire_reader r;
    sh_err rc = decode_begin(buf, len, hdr, SH_WIRE_CATALOG_REQ, SH_WIRE_CATALOG_REQ, 1, &r);
    if (rc != SH_OK) {
        return rc;
    }
    req->op = (sh_wire_catalog_op)rd_u8(&r);
    rd_sku(&r, &req->sku);
    rd_str(&r, req->restock_id, SH_RESTOCK_ID_CHARS_MAX, &req->restock_id_len);
    req->units = rd_i64(&r);
    if (r.err == SH_OK && check_catalog_req(req) != SH_OK) {
        return SH_EINVAL;
    }
    return decode_end(&r);
}

size_t sh_wire_catalog_rep_size(const sh_wire_catalog_rep *rep, const sh_wire_sku *skus, size_t n)
{
    SH_ASSERT(rep != NULL && (skus != NULL || n == 0));
    if (n > SH_SKUS_MAX) {
        return 0;
    }
    size_t size = SH_WIRE_HEADER_BYTES + WIRE_CATALOG_REP_FIXED_BYTES + rep->message_len;
    for (size_t i = 0; i < n; i++) {
        size += sku_bytes(&skus[i]);
    }
    return size;
}

sh_err sh_wire_catalog_rep_encode(uint8_t *buf, size_t cap, size_t *len_out, uint64_t req_id,
                                  const sh_wire_catalog_rep *rep, const sh_wire_sku *skus, size_t n)
{
    SH_ASSERT(len_out != NULL && rep != NULL && (skus != NULL || n == 0));
    sh_err rc = encode_count(SH_WIRE_CATALOG_REP, n);
    if (rc != SH_OK) {
        return rc;
    }
    if (check_catalog_rep(rep) != SH_OK) {
        return SH_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (check_sku(&skus[i], 1) != SH_OK) {
            return SH_EINVAL;
        }
    }
    size_t size = sh_wire_catalog_rep_size(rep, skus, n);
    wire_writer w;
    rc = encode_begin(buf, cap, size, SH_WIRE_CATALOG_REP, req_id, n, &w);
    if (rc != SH_OK) {
        return rc;
    }
    wr_u8(&w, (uint8_t)rep->status);
    wr_u8(&w, rep->applied);
    wr_u32(&w, rep->schema_before);
    wr_u32(&w, rep->schema_after);
    wr_str(&w, rep->message, rep->message_len);
    for (size_t i = 0; i < n; i++) {
        wr_sku(&w, &skus[i]);
    }
    encode_end(buf, size, &w, len_out);
    return SH_OK;
}

sh_err sh_wire_catalog_rep_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                                  sh_wire_catalog_rep *rep, sh_wire_sku *skus, size_t skus_cap)
{
    SH_ASSERT(hdr != NULL && rep != NULL && (skus != NULL || skus_cap == 0));
    wire_reader r;
    sh_err rc = decode_begin(buf, len, hdr, SH_WIRE_CATALOG_REP, SH_WIRE_CATALOG_REP, skus_cap, &r);
    if (rc != SH_OK) {
        return rc;
    }
    rep->status = (sh_err)rd_u8(&r);
    rep->applied = rd_u8(&r);
    rep->schema_before = rd_u32(&r);
    rep->schema_after = rd_u32(&r);
    rd_str(&r, rep->message, SH_MESSAGE_CHARS_MAX, &rep->message_len);
    if (r.err == SH_OK && check_catalog_rep(rep) != SH_OK) {
        return SH_EINVAL;
    }
    for (size_t i = 0; i < hdr->count && r.err == SH_OK; i++) {
        rd_sku(&r, &skus[i]);
        if (r.err == SH_OK && check_sku(&skus[i], 1) != SH_OK) {
            return SH_EINVAL;
        }
    }
    return decode_end(&r);
}

/* ---- PARTOP_REQ / PARTOP_REP -------------------------------------------------- */

size_t sh_wire_partop_req_size(const sh_wire_partop *ops, size_t n)
{
    SH_ASSERT(ops != NULL || n == 0);
    if (n > SH_WIRE_PARTOPS_MAX) {
        return 0;
    }
    size_t size = SH_WIRE_HEADER_BYTES;
    for (size_t i = 0; i < n; i++) {
        size += WIRE_PARTOP_FIXED_BYTES + (size_t)ops[i].sku_len;
    }
    return size;
}

sh_err sh_wire_partop_req_encode(uint8_t *buf, size_t cap, size_t *len_out, uint64_t req_id,
                                 const sh_wire_partop *ops, size_t n)
{
    SH_ASSERT(len_out != NULL && (ops != NULL || n == 0));
    sh_err rc = encode_count(SH_WIRE_PARTOP_REQ, n);
    if (rc != SH_OK) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        if (check_partop(&ops[i]) != SH_OK) {
            return SH_EINVAL;
        }
    }
    size_t size = sh_wire_partop_req_size(ops, n);
    wire_writer w;
    rc = encode_begin(buf, cap, size, SH_WIRE_PARTOP_REQ, req_id, n, &w);
    if (rc != SH_OK) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        const sh_wire_partop *op = &ops[i];
        wr_u8(&w, (uint8_t)op->op);
        wr_u8(&w, op->sub_domain);
        wr_str(&w, op->sku, op->sku_len);
        wr_u16(&w, op->partition);
        wr_u64(&w, op->grant_id);
        wr_i64(&w, op->units);
    }
    encode_end(buf, size, &w, len_out);
    return SH_OK;
}

sh_err sh_wire_partop_req_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                                 sh_wire_partop *ops, size_t ops_cap)
{
    SH_ASSERT(hdr != NULL && (ops != NULL || ops_cap == 0));
    wire_reader r;
    sh_err rc = decode_begin(buf, len, hdr, SH_WIRE_PARTOP_REQ, SH_WIRE_PARTOP_REQ, ops_cap, &r);
    if (rc != SH_OK) {
        return rc;
    }
    for (size_t i = 0; i < hdr->count && r.err == SH_OK; i++) {
        sh_wire_partop *op = &ops[i];
        op->op = (sh_wire_partop_op)rd_u8(&r);
        op->sub_domain = rd_u8(&r);
        rd_str(&r, op->sku, SH_SKU_ID_CHARS_MAX, &op->sku_len);
        op->partition = rd_u16(&r);
        op->grant_id = rd_u64(&r);
        op->units = rd_i64(&r);
        if (r.err == SH_OK && check_partop(op) != SH_OK) {
            return SH_EINVAL;
        }
    }
    return decode_end(&r);
}

size_t sh_wire_partop_rep_size(const sh_wire_partop_result *results, size_t n)
{
    SH_ASSERT(results != NULL || n == 0);
    if (n > SH_WIRE_PARTOPS_MAX) {
        return 0;
    }
    size_t size = SH_WIRE_HEADER_BYTES;
    for (size_t i = 0; i < n; i++) {
        size += WIRE_PARTOP_RESULT_FIXED_BYTES + (size_t)results[i].sku_len;
    }
    return size;
}

sh_err sh_wire_partop_rep_encode(uint8_t *buf, size_t cap, size_t *len_out, uint64_t req_id,
                                 const sh_wire_partop_result *results, size_t n)
{
    SH_ASSERT(len_out != NULL && (results != NULL || n == 0));
    sh_err rc = encode_count(SH_WIRE_PARTOP_REP, n);
    if (rc != SH_OK) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        if (check_partop_result(&results[i]) != SH_OK) {
            return SH_EINVAL;
        }
    }
    size_t size = sh_wire_partop_rep_size(results, n);
    wire_writer w;
    rc = encode_begin(buf, cap, size, SH_WIRE_PARTOP_REP, req_id, n, &w);
    if (rc != SH_OK) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        const sh_wire_partop_result *res = &results[i];
        wr_u8(&w, (uint8_t)res->status);
        wr_u8(&w, (uint8_t)res->op);
        wr_u8(&w, res->active);
        wr_u8(&w, res->state);
        wr_str(&w, res->sku, res->sku_len);
        wr_u16(&w, res->partition);
        wr_u64(&w, res->grant_id);
        wr_i64(&w, res->units);
        wr_i64(&w, res->s0);
        wr_i64(&w, res->s1);
        wr_i64(&w, res->deducted);
        wr_u64(&w, res->seq);
        wr_u8(&w, res->flags);
    }
    encode_end(buf, size, &w, len_out);
    return SH_OK;
}

sh_err sh_wire_partop_rep_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                                 sh_wire_partop_result *results, size_t results_cap)
{
    SH_ASSERT(hdr != NULL && (results != NULL || results_cap == 0));
    wire_reader r;
    sh_err rc =
        decode_begin(buf, len, hdr, SH_WIRE_PARTOP_REP, SH_WIRE_PARTOP_REP, results_cap, &r);
    if (rc != SH_OK) {
        return rc;
    }
    for (size_t i = 0; i < hdr->count && r.err == SH_OK; i++) {
        sh_wire_partop_result *res = &results[i];
        res->status = (sh_err)rd_u8(&r);
        res->op = (sh_wire_partop_op)rd_u8(&r);
        res->active = rd_u8(&r);
        res->state = rd_u8(&r);
        rd_str(&r, res->sku, SH_SKU_ID_CHARS_MAX, &res->sku_len);
        res->partition = rd_u16(&r);
        res->grant_id = rd_u64(&r);
        res->units = rd_i64(&r);
        res->s0 = rd_i64(&r);
        res->s1 = rd_i64(&r);
        res->deducted = rd_i64(&r);
        res->seq = rd_u64(&r);
        res->flags = rd_u8(&r);
        if (r.err == SH_OK && check_partop_result(res) != SH_OK) {
            return SH_EINVAL;
        }
    }
    return decode_end(&r);
}

/* ---- SYNC_STATE_REQ / SYNC_STATE_REP ------------------------------------------- */

size_t sh_wire_sync_state_req_size(const sh_wire_sync_state_req *req)
{
    SH_ASSERT(req != NULL);
    return SH_WIRE_HEADER_BYTES + WIRE_SYNC_STATE_REQ_FIXED_BYTES + (size_t)req->sku_len;
}

sh_err sh_wire_sync_state_req_encode(uint8_t *buf, size_t cap, size_t *len_out, uint64_t req_id,
                                     const sh_wire_sync_state_req *req)
{
    SH_ASSERT(len_out != NULL && req != NULL);
    if (check_str(req->sku, req->sku_len, 1, SH_SKU_ID_CHARS_MAX) != SH_OK) {
        return SH_EINVAL;
    }
    size_t size = sh_wire_sync_state_req_size(req);
    wire_writer w;
    sh_err rc = encode_begin(buf, cap, size, SH_WIRE_SYNC_STATE_REQ, req_id, 1, &w);
    if (rc != SH_OK) {
        return rc;
    }
    wr_str(&w, req->sku, req->sku_len);
    encode_end(buf, size, &w, len_out);
    return SH_OK;
}

sh_err sh_wire_sync_state_req_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                                     sh_wire_sync_state_req *req)
{
    SH_ASSERT(hdr != NULL && req != NULL);
    wire_reader r;
    sh_err rc = decode_begin(buf, len, hdr, SH_WIRE_SYNC_STATE_REQ, SH_WIRE_SYNC_STATE_REQ, 1, &r);
    if (rc != SH_OK) {
        return rc;
    }
    rd_str(&r, req->sku, SH_SKU_ID_CHARS_MAX, &req->sku_len);
    if (r.err == SH_OK && check_str(req->sku, req->sku_len, 1, SH_SKU_ID_CHARS_MAX) != SH_OK) {
        return SH_EINVAL;
    }
    return decode_end(&r);
}

size_t sh_wire_sync_state_rep_size(const sh_wire_sync_state_rep *rep,
                                   const sh_wire_sync_part *parts, size_t n)
{
    SH_ASSERT(rep != NULL && (parts != NULL || n == 0));
    if (n > SH_PARTITIONS_PER_SKU_MAX) {
        return 0;
    }
    return SH_WIRE_HEADER_BYTES + WIRE_SYNC_STATE_REP_FIXED_BYTES + (size_t)rep->message_len +
           (size_t)rep->dup_order_len + n * WIRE_SYNC_PART_BYTES;
}

sh_err sh_wire_sync_state_rep_encode(uint8_t *buf, size_t cap, size_t *len_out, uint64_t req_id,
                                     const sh_wire_sync_state_rep *rep,
                                     const sh_wire_sync_part *parts, size_t n)
{
    SH_ASSERT(len_out != NULL && rep != NULL && (parts != NULL || n == 0));
    sh_err rc = encode_count(SH_WIRE_SYNC_STATE_REP, n);
    if (rc != SH_OK) {
        return rc;
    }
    if (check_sync_state_rep(rep, n) != SH_OK) {
        return SH_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (check_sync_part(&parts[i], i > 0 ? &parts[i - 1] : NULL) != SH_OK) {
            return SH_EINVAL;
        }
    }
    size_t size = sh_wire_sync_state_rep_size(rep, parts, n);
    wire_writer w;
    rc = encode_begin(buf, cap, size, SH_WIRE_SYNC_STATE_REP, req_id, n, &w);
    if (rc != SH_OK) {
        return rc;
    }
    wr_u8(&w, (uint8_t)rep->status);
    wr_str(&w, rep->message, rep->message_len);
    wr_u64(&w, rep->dup_orders);
    wr_str(&w, rep->dup_order, rep->dup_order_len);
    for (size_t i = 0; i < n; i++) {
        const sh_wire_sync_part *p = &parts[i];
        wr_u16(&w, p->partition);
        wr_u64(&w, p->synced_seq);
        wr_i64(&w, p->deducted);
        wr_i64(&w, p->detail_rows);
        wr_i64(&w, p->rows_counted);
        wr_i64(&w, p->qty_counted);
        wr_u64(&w, p->max_seq);
        wr_u64(&w, p->chk);
    }
    encode_end(buf, size, &w, len_out);
    return SH_OK;
}

sh_err sh_wire_sync_state_rep_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                                     sh_wire_sync_state_rep *rep, sh_wire_sync_part *parts,
                                     size_t parts_cap)
{
    SH_ASSERT(hdr != NULL && rep != NULL && (parts != NULL || parts_cap == 0));
    wire_reader r;
    sh_err rc =
        decode_begin(buf, len, hdr, SH_WIRE_SYNC_STATE_REP, SH_WIRE_SYNC_STATE_REP, parts_cap, &r);
    if (rc != SH_OK) {
        return rc;
    }
    rep->status = (sh_err)rd_u8(&r);
    rd_str(&r, rep->message, SH_MESSAGE_CHARS_MAX, &rep->message_len);
    rep->dup_orders = rd_u64(&r);
    rd_str(&r, rep->dup_order, SH_ORDER_ID_CHARS_MAX, &rep->dup_order_len);
    if (r.err == SH_OK && check_sync_state_rep(rep, hdr->count) != SH_OK) {
        return SH_EINVAL;
    }
    for (size_t i = 0; i < hdr->count && r.err == SH_OK; i++) {
        sh_wire_sync_part *p = &parts[i];
        p->partition = rd_u16(&r);
        p->synced_seq = rd_u64(&r);
        p->deducted = rd_i64(&r);
        p->detail_rows = rd_i64(&r);
        p->rows_counted = rd_i64(&r);
        p->qty_counted = rd_i64(&r);
        p->max_seq = rd_u64(&r);
        p->chk = rd_u64(&r);
        if (r.err == SH_OK && check_sync_part(p, i > 0 ? &parts[i - 1] : NULL) != SH_OK) {
            return SH_EINVAL;
        }
    }
    return decode_end(&r);
}

/* ==== SYNC_DETAILS_REQ / SYNC_DETAILS_REP (reconcile) ===========================
 * Kept apart from the types above: its sizes, checks and codec live here. */

#define WIRE_SYNC_DETAILS_REQ_FIXED_BYTES (1 + 2 + 8 + 4)
#define WIRE_SYNC_DETAILS_REP_FIXED_BYTES (1 + 1 + 8)

_Static_assert(SH_WIRE_HEADER_BYTES + WIRE_SYNC_DETAILS_REP_FIXED_BYTES + SH_MESSAGE_CHARS_MAX +
                       (uint64_t)SH_WIRE_DETAILS_PAGE_MAX *
                           (WIRE_DETAIL_FIXED_BYTES + SH_ORDER_ID_CHARS_MAX +
                            SH_USER_ID_CHARS_MAX) <=
                   SH_WIRE_MSG_BYTES_MAX,
               "a full details page fits one NNG message");
_Static_assert(SH_WIRE_DETAILS_PAGE_MAX <= UINT16_MAX, "count is a u16");

static sh_err check_sync_details_req(const sh_wire_sync_details_req *req)
{
    if (check_str(req->sku, req->sku_len, 1, SH_SKU_ID_CHARS_MAX) != SH_OK ||
        req->partition >= SH_PARTITIONS_PER_SKU_MAX || req->limit < 1 ||
        req->limit > SH_WIRE_DETAILS_PAGE_MAX) {
        return SH_EINVAL;
    }
    return SH_OK;
}

static sh_err check_sync_details_rep(const sh_wire_sync_details_rep *rep, size_t n)
{
    if ((unsigned)rep->status >= SH_ERR_COUNT_ || (rep->status != SH_OK && n != 0)) {
        return SH_EINVAL;
    }
    return check_str(rep->message, rep->message_len, 0, SH_MESSAGE_CHARS_MAX);
}

/* Record i of a reply; prev is record i - 1 (NULL for the first): seqs start at
 * 1 and strictly increase, so no detail is reported twice. */
static sh_err check_sync_details_rec(const sh_wire_detail *d, const sh_wire_detail *prev)
{
    if (d->seq < 1 || (prev != NULL && d->seq <= prev->seq)) {
        return SH_EINVAL;
    }
    return check_detail_fields(d);
}

size_t sh_wire_sync_details_req_size(const sh_wire_sync_details_req *req)
{
    SH_ASSERT(req != NULL);
    return SH_WIRE_HEADER_BYTES + WIRE_SYNC_DETAILS_REQ_FIXED_BYTES + (size_t)req->sku_len;
}

sh_err sh_wire_sync_details_req_encode(uint8_t *buf, size_t cap, size_t *len_out, uint64_t req_id,
                                       const sh_wire_sync_details_req *req)
{
    SH_ASSERT(len_out != NULL && req != NULL);
    if (check_sync_details_req(req) != SH_OK) {
        return SH_EINVAL;
    }
    size_t size = sh_wire_sync_details_req_size(req);
    wire_writer w;
    sh_err rc = encode_begin(buf, cap, size, SH_WIRE_SYNC_DETAILS_REQ, req_id, 1, &w);
    if (rc != SH_OK) {
        return rc;
    }
    wr_str(&w, req->sku, req->sku_len);
    wr_u16(&w, req->partition);
    wr_u64(&w, req->after_seq);
    wr_u32(&w, req->limit);
    encode_end(buf, size, &w, len_out);
    return SH_OK;
}

sh_err sh_wire_sync_details_req_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                                       sh_wire_sync_details_req *req)
{
    SH_ASSERT(hdr != NULL && req != NULL);
    wire_reader r;
    sh_err rc =
        decode_begin(buf, len, hdr, SH_WIRE_SYNC_DETAILS_REQ, SH_WIRE_SYNC_DETAILS_REQ, 1, &r);
    if (rc != SH_OK) {
        return rc;
    }
    rd_str(&r, req->sku, SH_SKU_ID_CHARS_MAX, &req->sku_len);
    req->partition = rd_u16(&r);
    req->after_seq = rd_u64(&r);
    req->limit = rd_u32(&r);
    if (r.err == SH_OK && check_sync_details_req(req) != SH_OK) {
        return SH_EINVAL;
    }
    return decode_end(&r);
}

size_t sh_wire_sync_details_rep_size(const sh_wire_sync_details_rep *rep,
                                     const sh_wire_detail *details, size_t n)
{
    SH_ASSERT(rep != NULL && (details != NULL || n == 0));
    if (n > SH_WIRE_DETAILS_PAGE_MAX) {
        return 0;
    }
    size_t size =
        SH_WIRE_HEADER_BYTES + WIRE_SYNC_DETAILS_REP_FIXED_BYTES + (size_t)rep->message_len;
    for (size_t i = 0; i < n; i++) {
        size += WIRE_DETAIL_FIXED_BYTES + (size_t)details[i].order_id_len + details[i].user_id_len;
    }
    return size;
}

sh_err sh_wire_sync_details_rep_encode(uint8_t *buf, size_t cap, size_t *len_out, uint64_t req_id,
                                       const sh_wire_sync_details_rep *rep,
                                       const sh_wire_detail *details, size_t n)
{
    SH_ASSERT(len_out != NULL && rep != NULL && (details != NULL || n == 0));
    sh_err rc = encode_count(SH_WIRE_SYNC_DETAILS_REP, n);
    if (rc != SH_OK) {
        return rc;
    }
    if (check_sync_details_rep(rep, n) != SH_OK) {
        return SH_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (check_sync_details_rec(&details[i], i > 0 ? &details[i - 1] : NULL) != SH_OK) {
            return SH_EINVAL;
        }
    }
    size_t size = sh_wire_sync_details_rep_size(rep, details, n);
    wire_writer w;
    rc = encode_begin(buf, cap, size, SH_WIRE_SYNC_DETAILS_REP, req_id, n, &w);
    if (rc != SH_OK) {
        return rc;
    }
    wr_u8(&w, (uint8_t)rep->status);
    wr_str(&w, rep->message, rep->message_len);
    wr_u64(&w, rep->synced_seq);
    for (size_t i = 0; i < n; i++) {
        wr_detail(&w, &details[i]);
    }
    encode_end(buf, size, &w, len_out);
    return SH_OK;
}

sh_err sh_wire_sync_details_rep_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                                       sh_wire_sync_details_rep *rep, sh_wire_detail *details,
                                       size_t details_cap)
{
    SH_ASSERT(hdr != NULL && rep != NULL && (details != NULL || details_cap == 0));
    wire_reader r;
    sh_err rc = decode_begin(buf, len, hdr, SH_WIRE_SYNC_DETAILS_REP, SH_WIRE_SYNC_DETAILS_REP,
                             details_cap, &r);
    if (rc != SH_OK) {
        return rc;
    }
    rep->status = (sh_err)rd_u8(&r);
    rd_str(&r, rep->message, SH_MESSAGE_CHARS_MAX, &rep->message_len);
    rep->synced_seq = rd_u64(&r);
    if (r.err == SH_OK && check_sync_details_rep(rep, hdr->count) != SH_OK) {
        return SH_EINVAL;
    }
    for (size_t i = 0; i < hdr->count && r.err == SH_OK; i++) {
        rd_detail(&r, &details[i]);
        if (r.err == SH_OK &&
            check_sync_details_rec(&details[i], i > 0 ? &details[i - 1] : NULL) != SH_OK) {
            return SH_EINVAL;
        }
    }
    return decode_end(&r);
}
