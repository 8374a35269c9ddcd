/* sh_wire.h -- the versioned binary codec of every NNG message between the daemons.
 *
 * Every message is a 16-byte header and a body. All integers are little-endian and
 * written byte by byte; strings travel as a u8 length and their bytes (no NUL) and
 * are decoded into fixed NUL-terminated arrays with the length kept beside them.
 *
 *   u8 version | u8 type | u16 count | u32 body_len | u64 req_id | body ...
 *
 * Both sides of the boundary check the same facts with the same code: an encoder
 * refuses (SH_EINVAL) a record its peer's decoder would refuse, and a decoder
 * refuses anything malformed with an error code, never an assert. Decoders read
 * only inside [buf, buf + len) and write only inside the arrays they are given,
 * whatever the input. On any error the outputs hold unspecified values.
 *
 * All functions are pure (no allocation, no global state) and thread-safe. */
#ifndef SH_WIRE_H
#define SH_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "sh_err.h"
#include "sh_limits.h"

/* 2: CATALOG_REP carries schema_before/after (catalog op MIGRATE).
 * 3: SYNC_STATE_REP carries the orders deducted twice and each partition's
 *    detail checksum (the audit's identity and once-per-order checks);
 *    SYNC_DETAILS_REQ/REP (reconcile's read of MySQL). */
#define SH_WIRE_VERSION     3
#define SH_WIRE_PARTOPS_MAX 1024 /* items in one PARTOP_REQ/REP (SH_PARTITIONS_PER_SKU_MAX * 4) */

typedef enum sh_wire_type {
    SH_WIRE_DEDUCT_REQ = 1,
    SH_WIRE_DEDUCT_REP = 2,
    SH_WIRE_RELEASE_REQ = 3,
    SH_WIRE_RELEASE_REP = 4,
    SH_WIRE_DETAIL_BATCH = 5,
    SH_WIRE_BATCH_ACK = 6,
    SH_WIRE_CATALOG_REQ = 7,
    SH_WIRE_CATALOG_REP = 8,
    SH_WIRE_PARTOP_REQ = 9,
    SH_WIRE_PARTOP_REP = 10,
    SH_WIRE_SYNC_STATE_REQ = 11,
    SH_WIRE_SYNC_STATE_REP = 12,
    SH_WIRE_SYNC_DETAILS_REQ = 13, /* reconcile: MySQL's details of one partition, a page */
    SH_WIRE_SYNC_DETAILS_REP = 14,
} sh_wire_type;

/* Outcome of one deduction or release: a business value, not an error. */
typedef enum sh_wire_outcome {
    SH_WIRE_OUT_OK = 0,
    SH_WIRE_OUT_SOLD_OUT = 1,
    SH_WIRE_OUT_CONFLICT = 2,      /* same order seen before with another qty */
    SH_WIRE_OUT_USER_LIMIT = 3,    /* the user's per-SKU limit would be passed */
    SH_WIRE_OUT_UNKNOWN_ORDER = 4, /* release of an order never deducted */
    SH_WIRE_OUT_RETRY = 5,         /* the claim points elsewhere, or try again */
    SH_WIRE_OUT_INVALID = 6,
    SH_WIRE_OUT_UNAVAILABLE = 7,
    SH_WIRE_OUT_ERROR = 8,
    SH_WIRE_OUT_RELEASED = 9, /* deduct of an order that was released since */
    SH_WIRE_OUT_LAST_ = SH_WIRE_OUT_RELEASED,
} sh_wire_outcome;

/* sh_wire_item.flags; a bit outside SH_WIRE_ITEM_F_ALL_ is refused on both sides. */
#define SH_WIRE_ITEM_F_FORCE_PARTITION 1u /* run on .partition, do not follow the claim */
#define SH_WIRE_ITEM_F_ALL_            1u

/* sh_wire_result.flags and sh_wire_partop_result.flags. */
#define SH_WIRE_RES_F_DUPLICATE      1u   /* the order's first outcome, replayed */
#define SH_WIRE_RES_F_FLIPPED        2u   /* the partition switched sub-domains */
#define SH_WIRE_RES_F_STANDBY_EMPTY  4u   /* the standby sub-domain needs a grant */
#define SH_WIRE_RES_F_EXHAUSTED      8u   /* both sub-domains are empty */
#define SH_WIRE_RES_F_CLOSED         16u  /* the partition is closed */
#define SH_WIRE_RES_F_NO_REPLICA     32u  /* UNAVAILABLE: a master it wrote to has no replica */
#define SH_WIRE_RES_F_NOT_REPLICATED 64u  /* UNAVAILABLE: no replica confirmed it in time */
#define SH_WIRE_RES_F_DIVERGED       128u /* UNAVAILABLE: the partition diverged from MySQL */
#define SH_WIRE_RES_F_ALL_           255u

typedef enum sh_wire_catalog_op {
    SH_WIRE_CAT_GET = 1,
    SH_WIRE_CAT_UPSERT = 2, /* insert the row if absent, return the stored row */
    SH_WIRE_CAT_RESTOCK = 3,
    SH_WIRE_CAT_LIST = 4,
    SH_WIRE_CAT_MIGRATE = 5, /* apply the schema migrations; answers versions before and after */
} sh_wire_catalog_op;

/* Highest schema version a CATALOG_REP may carry: schema_version.version is an INT. */
#define SH_WIRE_SCHEMA_VERSION_MAX 2147483647u

typedef enum sh_wire_partop_op {
    SH_WIRE_PARTOP_GRANT = 1,   /* add units to a sub-domain once per grant id */
    SH_WIRE_PARTOP_RECLAIM = 2, /* take remnants back, once per return id (grant_id) */
    SH_WIRE_PARTOP_CLOSE = 3,
    SH_WIRE_PARTOP_OPEN = 4,
    SH_WIRE_PARTOP_STATUS = 5,
    SH_WIRE_PARTOP_INIT = 6,
} sh_wire_partop_op;

typedef struct sh_wire_header {
    uint8_t version;
    sh_wire_type type;
    uint16_t count;    /* items in the body; meaning per type */
    uint32_t body_len; /* bytes after the header */
    uint64_t req_id;   /* a reply echoes its request's */
} sh_wire_header;

/* One deduction (DEDUCT_REQ) or release (RELEASE_REQ). */
typedef struct sh_wire_item {
    uint64_t tag;            /* caller's cookie, echoed in the result */
    uint32_t qty;            /* deduct 1..SH_QTY_UNITS_MAX; release 0..SH_QTY_UNITS_MAX */
    uint32_t per_user_limit; /* 0 = none; at most SH_PER_USER_LIMIT_UNITS_MAX */
    uint16_t partition;      /* < SH_PARTITIONS_PER_SKU_MAX */
    uint16_t from_partition; /* with claim_version > 0: the claim to move away from */
    uint32_t claim_version;  /* 0: first attempt; else move the claim "from_partition:claim_version"
                                to .partition (compare-and-set) before running */
    uint8_t flags;           /* SH_WIRE_ITEM_F_* */
    uint8_t sku_len;         /* 1..max */
    uint8_t order_id_len;    /* 1..max */
    uint8_t user_id_len;     /* deduct 1..max; release 0..max */
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    char order_id[SH_ORDER_ID_CHARS_MAX + 1];
    char user_id[SH_USER_ID_CHARS_MAX + 1];
} sh_wire_item;

/* The answer to one item (DEDUCT_REP, RELEASE_REP). */
typedef struct sh_wire_result {
    uint64_t tag; /* the item's tag */
    uint64_t seq; /* detail seq written for the item, 0 if none */
    int64_t s0;   /* the partition's sub-domain counters after the call */
    int64_t s1;
    uint32_t qty;           /* <= SH_QTY_UNITS_MAX */
    uint16_t partition;     /* < SH_PARTITIONS_PER_SKU_MAX; the one that decided */
    uint32_t claim_version; /* the order's claim version the partition was asked under */
    sh_wire_outcome status; /* decode refuses values past SH_WIRE_OUT_LAST_ */
    uint8_t flags;          /* SH_WIRE_RES_F_* */
    uint8_t active;         /* 0 or 1 */
} sh_wire_result;

/* Head of a DETAIL_BATCH: a contiguous seq range of one partition. count == 0 asks
 * for the partition's synced_seq and then first_seq == last_seq == 0. Otherwise
 * first_seq >= 1, last_seq - first_seq + 1 == count and detail[i].seq == first_seq + i. */
typedef struct sh_wire_batch {
    uint8_t sku_len; /* 1..max */
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    uint16_t partition; /* < SH_PARTITIONS_PER_SKU_MAX */
    uint64_t first_seq;
    uint64_t last_seq;
} sh_wire_batch;

typedef struct sh_wire_detail {
    uint64_t seq;
    int64_t created_ms;   /* wall clock, ms since the epoch */
    int32_t qty;          /* non-zero, |qty| <= SH_QTY_UNITS_MAX; negative = release */
    uint8_t sub_domain;   /* 0 or 1 */
    uint8_t order_id_len; /* 1..max */
    uint8_t user_id_len;  /* 0..max */
    char order_id[SH_ORDER_ID_CHARS_MAX + 1];
    char user_id[SH_USER_ID_CHARS_MAX + 1];
} sh_wire_detail;

/* BATCH_ACK (count = 1): the sync worker's answer to a DETAIL_BATCH. */
typedef struct sh_wire_ack {
    sh_err status;   /* < SH_ERR_COUNT_ */
    uint8_t sku_len; /* 1..max */
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    uint16_t partition; /* < SH_PARTITIONS_PER_SKU_MAX */
    uint64_t synced_seq;
    uint8_t message_len; /* 0..max */
    char message[SH_MESSAGE_CHARS_MAX + 1];
} sh_wire_ack;

/* One catalog row. In a CATALOG_REP, and in an UPSERT, the row is complete: sku_id
 * non-empty, 1 <= partitions, SH_CHUNK_UNITS_MIN <= min_chunk <= max_chunk. Always:
 * 0 <= total <= SH_SKU_TOTAL_UNITS_MAX, start_ms >= 0, per_user_limit <=
 * SH_PER_USER_LIMIT_UNITS_MAX, partitions <= SH_PARTITIONS_PER_SKU_MAX, chunks <=
 * SH_CHUNK_UNITS_MAX. */
typedef struct sh_wire_sku {
    uint8_t sku_id_len;
    char sku_id[SH_SKU_ID_CHARS_MAX + 1];
    uint8_t name_len;
    char name[SH_SKU_NAME_CHARS_MAX + 1];
    int64_t total;    /* units */
    int64_t start_ms; /* sale start, ms since the epoch; 0 = open */
    uint32_t per_user_limit;
    uint16_t partitions;
    uint32_t min_chunk; /* units */
    uint32_t max_chunk; /* units */
} sh_wire_sku;

/* CATALOG_REQ (count = 1). GET, UPSERT and RESTOCK need sku.sku_id; LIST ignores
 * the record; MIGRATE needs it empty. restock_id (1..max) and units
 * (1..SH_SKU_TOTAL_UNITS_MAX) are for RESTOCK only and must be empty and 0 for
 * the other ops. */
typedef struct sh_wire_catalog_req {
    sh_wire_catalog_op op;
    sh_wire_sku sku;
    uint8_t restock_id_len;
    char restock_id[SH_RESTOCK_ID_CHARS_MAX + 1];
    int64_t units;
} sh_wire_catalog_req;

/* CATALOG_REP head; count complete sh_wire_sku records follow (0..SH_SKUS_MAX).
 * schema_before/after are MIGRATE's answer (0 for the other ops): the version
 * found and the version left, both <= SH_WIRE_SCHEMA_VERSION_MAX, and with
 * status SH_OK before <= after. */
typedef struct sh_wire_catalog_rep {
    sh_err status;   /* < SH_ERR_COUNT_ */
    uint8_t applied; /* 1 when the request changed something (row created, restock applied,
                        a migration applied) */
    uint32_t schema_before;
    uint32_t schema_after;
    uint8_t message_len;
    char message[SH_MESSAGE_CHARS_MAX + 1];
} sh_wire_catalog_rep;

/* One partition operation (PARTOP_REQ). GRANT needs grant_id >= 1 and units >= 1;
 * RECLAIM needs grant_id >= 1 (the return id). Always 0 <= units <=
 * SH_SKU_TOTAL_UNITS_MAX, sub_domain 0 or 1, sku 1..max. */
typedef struct sh_wire_partop {
    sh_wire_partop_op op;
    uint8_t sub_domain;
    uint8_t sku_len;
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    uint16_t partition; /* < SH_PARTITIONS_PER_SKU_MAX */
    uint64_t grant_id;
    int64_t units;
} sh_wire_partop;

/* The answer to one partition operation (PARTOP_REP). */
typedef struct sh_wire_partop_result {
    sh_err status; /* < SH_ERR_COUNT_ */
    sh_wire_partop_op op;
    uint8_t active; /* 0 or 1 */
    uint8_t state;  /* 0 open, 1 closed */
    uint8_t sku_len;
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    uint16_t partition;
    uint64_t grant_id;
    int64_t units; /* applied */
    int64_t s0;
    int64_t s1;
    int64_t deducted;
    uint64_t seq;
    uint8_t flags; /* SH_WIRE_RES_F_* */
} sh_wire_partop_result;

/* SYNC_STATE_REQ (count = 1): "what does MySQL hold for this SKU?", asked by the
 * scheduler's audit. */
typedef struct sh_wire_sync_state_req {
    uint8_t sku_len; /* 1..max */
    char sku[SH_SKU_ID_CHARS_MAX + 1];
} sh_wire_sync_state_req;

/* SYNC_STATE_REP head; count sh_wire_sync_part records follow, one per partition
 * MySQL knows of (0..SH_PARTITIONS_PER_SKU_MAX), in strictly increasing partition
 * order (so no partition appears twice). */
typedef struct sh_wire_sync_state_rep {
    sh_err status; /* < SH_ERR_COUNT_; records only with SH_OK */
    uint8_t message_len;
    char message[SH_MESSAGE_CHARS_MAX + 1];
    uint64_t dup_orders; /* orders with more than one deduction (or release) row */
    uint8_t dup_order_len;
    char dup_order[SH_ORDER_ID_CHARS_MAX + 1]; /* the least of them, "" when none */
} sh_wire_sync_state_rep;

/* One partition's sync state in MySQL: its stock_partition row (zeros without one)
 * and what its deduction_detail rows add up to (zeros without rows). Counts are
 * >= 0; the sums may have any sign. */
typedef struct sh_wire_sync_part {
    uint16_t partition;   /* < SH_PARTITIONS_PER_SKU_MAX */
    uint64_t synced_seq;  /* stock_partition.synced_seq */
    int64_t deducted;     /* stock_partition.deducted */
    int64_t detail_rows;  /* stock_partition.detail_rows, >= 0 */
    int64_t rows_counted; /* COUNT(*) of its deduction_detail rows, >= 0 */
    int64_t qty_counted;  /* SUM(qty) of those rows */
    uint64_t max_seq;     /* MAX(seq) of those rows */
    uint64_t chk;         /* SUM of sh_audit_detail_chk over those rows (the identity check) */
} sh_wire_sync_part;

/* ---- header and helpers ------------------------------------------------ */

/* Decodes and checks the header of the message buf[0..len). Checks, in order:
 * len >= SH_WIRE_HEADER_BYTES (SH_ETRUNC), version (SH_EVERSION), a known type
 * (SH_ETYPE), body_len past the buffer (SH_ETRUNC) or short of it, leaving
 * trailing bytes (SH_EINVAL), len > SH_WIRE_MSG_BYTES_MAX or count past the
 * type's limit (SH_ELIMIT), count below the type's minimum (SH_EINVAL).
 * buf may be NULL only when len is 0. out must not be NULL. */
sh_err sh_wire_header_decode(const uint8_t *buf, size_t len, sh_wire_header *out);

/* Static names for logs: "DEDUCT_REQ", "SOLD_OUT", ...; "UNKNOWN" when out of range. */
const char *sh_wire_type_name(int type);
const char *sh_wire_outcome_name(int status);

/* Copies src[0..src_len) into the string field dst of dst_size bytes (sizeof the
 * array, max + 1), NUL-terminates it and stores the length in *len_out. Returns
 * SH_ELIMIT when src_len > dst_size - 1, SH_EINVAL when src holds a NUL byte; then
 * dst is "" and *len_out 0. */
sh_err sh_wire_str_set(char *dst, size_t dst_size, uint8_t *len_out, const char *src,
                       size_t src_len);

/* Copies the C string text into the string field dst of dst_size bytes (a
 * message field: an error text), cut to what fits. Never fails. */
void sh_wire_text_set(char *dst, size_t dst_size, uint8_t *len_out, const char *text);

/* ---- messages ------------------------------------------------------------
 * Every message type has the same three functions:
 *
 *   size_t _size(payload)  exact encoded bytes, header included; 0 when the
 *                          count is past the type's limit (never a valid size).
 *   _encode(buf, cap, len_out, [type,] req_id, payload)
 *                          writes one message into buf[0..cap) and its length to
 *                          *len_out. SH_ELIMIT when the count is past the type's
 *                          limit or cap is below _size; SH_EINVAL when the count is
 *                          below the type's minimum or a record breaks a bound the
 *                          decoder checks. On error nothing useful is in buf and
 *                          *len_out is untouched.
 *   _decode(buf, len, hdr, payload, cap)
 *                          decodes the whole message buf[0..len): the header as in
 *                          sh_wire_header_decode, then SH_EPROTO when the type is not
 *                          this function's, SH_ELIMIT when count > cap, SH_ETRUNC when
 *                          the body ends early, SH_EINVAL when bytes remain after the
 *                          last record or a field breaks its bound.
 *
 * Pointers must not be NULL (an array may be NULL when its count or cap is 0). */

/* DEDUCT_REQ / RELEASE_REQ (type picks which): n items, 1..SH_WIRE_ITEMS_MAX. */
size_t sh_wire_items_size(const sh_wire_item *items, size_t n);
sh_err sh_wire_items_encode(uint8_t *buf, size_t cap, size_t *len_out, sh_wire_type type,
                            uint64_t req_id, const sh_wire_item *items, size_t n);
/* Accepts DEDUCT_REQ and RELEASE_REQ; hdr->type tells which. */
sh_err sh_wire_items_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                            sh_wire_item *items, size_t items_cap);

/* DEDUCT_REP / RELEASE_REP (type picks which): n results, 0..SH_WIRE_ITEMS_MAX. */
size_t sh_wire_results_size(const sh_wire_result *results, size_t n);
sh_err sh_wire_results_encode(uint8_t *buf, size_t cap, size_t *len_out, sh_wire_type type,
                              uint64_t req_id, const sh_wire_result *results, size_t n);
/* Accepts DEDUCT_REP and RELEASE_REP; hdr->type tells which. */
sh_err sh_wire_results_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                              sh_wire_result *results, size_t results_cap);

/* DETAIL_BATCH: a head and n details, 0..SH_WIRE_DETAILS_MAX, contiguous in seq. */
size_t sh_wire_batch_size(const sh_wire_batch *batch, const sh_wire_detail *details, size_t n);
sh_err sh_wire_batch_encode(uint8_t *buf, size_t cap, size_t *len_out, uint64_t req_id,
                            const sh_wire_batch *batch, const sh_wire_detail *details, size_t n);
sh_err sh_wire_batch_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                            sh_wire_batch *batch, sh_wire_detail *details, size_t details_cap);

/* BATCH_ACK: one ack. */
size_t sh_wire_ack_size(const sh_wire_ack *ack);
sh_err sh_wire_ack_encode(uint8_t *buf, size_t cap, size_t *len_out, uint64_t req_id,
                          const sh_wire_ack *ack);
sh_err sh_wire_ack_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr, sh_wire_ack *ack);

/* CATALOG_REQ: one request. */
size_t sh_wire_catalog_req_size(const sh_wire_catalog_req *req);
sh_err sh_wire_catalog_req_encode(uint8_t *buf, size_t cap, size_t *len_out, uint64_t req_id,
                                  const sh_wire_catalog_req *req);
sh_err sh_wire_catalog_req_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                                  sh_wire_catalog_req *req);

/* CATALOG_REP: a head and n complete records, 0..SH_SKUS_MAX. */
size_t sh_wire_catalog_rep_size(const sh_wire_catalog_rep *rep, const sh_wire_sku *skus, size_t n);
sh_err sh_wire_catalog_rep_encode(uint8_t *buf, size_t cap, size_t *len_out, uint64_t req_id,
                                  const sh_wire_catalog_rep *rep, const sh_wire_sku *skus,
                                  size_t n);
sh_err sh_wire_catalog_rep_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                                  sh_wire_catalog_rep *rep, sh_wire_sku *skus, size_t skus_cap);

/* PARTOP_REQ: n operations, 1..SH_WIRE_PARTOPS_MAX. */
size_t sh_wire_partop_req_size(const sh_wire_partop *ops, size_t n);
sh_err sh_wire_partop_req_encode(uint8_t *buf, size_t cap, size_t *len_out, uint64_t req_id,
                                 const sh_wire_partop *ops, size_t n);
sh_err sh_wire_partop_req_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                                 sh_wire_partop *ops, size_t ops_cap);

/* PARTOP_REP: n results, 0..SH_WIRE_PARTOPS_MAX. */
size_t sh_wire_partop_rep_size(const sh_wire_partop_result *results, size_t n);
sh_err sh_wire_partop_rep_encode(uint8_t *buf, size_t cap, size_t *len_out, uint64_t req_id,
                                 const sh_wire_partop_result *results, size_t n);
sh_err sh_wire_partop_rep_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                                 sh_wire_partop_result *results, size_t results_cap);

/* SYNC_STATE_REQ: one request. */
size_t sh_wire_sync_state_req_size(const sh_wire_sync_state_req *req);
sh_err sh_wire_sync_state_req_encode(uint8_t *buf, size_t cap, size_t *len_out, uint64_t req_id,
                                     const sh_wire_sync_state_req *req);
sh_err sh_wire_sync_state_req_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                                     sh_wire_sync_state_req *req);

/* SYNC_STATE_REP: a head and n partitions, 0..SH_PARTITIONS_PER_SKU_MAX; n must be 0
 * unless rep->status is SH_OK. */
size_t sh_wire_sync_state_rep_size(const sh_wire_sync_state_rep *rep,
                                   const sh_wire_sync_part *parts, size_t n);
sh_err sh_wire_sync_state_rep_encode(uint8_t *buf, size_t cap, size_t *len_out, uint64_t req_id,
                                     const sh_wire_sync_state_rep *rep,
                                     const sh_wire_sync_part *parts, size_t n);
sh_err sh_wire_sync_state_rep_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                                     sh_wire_sync_state_rep *rep, sh_wire_sync_part *parts,
                                     size_t parts_cap);

/* ==== SYNC_DETAILS: MySQL's details of one partition, for reconcile ==========
 * `stockctl partition reconcile` (scheduler/sch_reconcile.c) reads every detail
 * MySQL holds of a diverged partition, page by page, through a sync worker
 * (sync-worker/sw_details.c). The records are sh_wire_detail, on the wire as
 * in a DETAIL_BATCH, but a page need not be contiguous: only strictly
 * increasing seqs (each >= 1) are required, since MySQL is the one that knows. */

/* SYNC_DETAILS_REQ (count = 1): "the details of (sku, partition) with seq >
 * after_seq, at most limit of them, in seq order". */
typedef struct sh_wire_sync_details_req {
    uint8_t sku_len; /* 1..max */
    char sku[SH_SKU_ID_CHARS_MAX + 1];
    uint16_t partition; /* < SH_PARTITIONS_PER_SKU_MAX */
    uint64_t after_seq;
    uint32_t limit; /* 1..SH_WIRE_DETAILS_PAGE_MAX */
} sh_wire_sync_details_req;

/* SYNC_DETAILS_REP head; count sh_wire_detail records follow (0..
 * SH_WIRE_DETAILS_PAGE_MAX, none unless status is SH_OK), seqs strictly
 * increasing. synced_seq is stock_partition.synced_seq (0 without a row), read
 * in the same snapshot as the records. */
typedef struct sh_wire_sync_details_rep {
    sh_err status; /* < SH_ERR_COUNT_ */
    uint8_t message_len;
    char message[SH_MESSAGE_CHARS_MAX + 1];
    uint64_t synced_seq;
} sh_wire_sync_details_rep;

/* SYNC_DETAILS_REQ: one request. */
size_t sh_wire_sync_details_req_size(const sh_wire_sync_details_req *req);
sh_err sh_wire_sync_details_req_encode(uint8_t *buf, size_t cap, size_t *len_out, uint64_t req_id,
                                       const sh_wire_sync_details_req *req);
sh_err sh_wire_sync_details_req_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                                       sh_wire_sync_details_req *req);

/* SYNC_DETAILS_REP: a head and n records, 0..SH_WIRE_DETAILS_PAGE_MAX. */
size_t sh_wire_sync_details_rep_size(const sh_wire_sync_details_rep *rep,
                                     const sh_wire_detail *details, size_t n);
sh_err sh_wire_sync_details_rep_encode(uint8_t *buf, size_t cap, size_t *len_out, uint64_t req_id,
                                       const sh_wire_sync_details_rep *rep,
                                       const sh_wire_detail *details, size_t n);
sh_err sh_wire_sync_details_rep_decode(const uint8_t *buf, size_t len, sh_wire_header *hdr,
                                       sh_wire_sync_details_rep *rep, sh_wire_detail *details,
                                       size_t details_cap);

#endif
