/* test_wire.c -- unit tests of the wire codec (shared/sh_wire.c).
 *
 * The codec is the first thing that touches bytes from another process, so these
 * tests do two jobs: every message type must survive a round trip with every field
 * intact, at the edges of its ranges; and every class of malformed input must be
 * refused with its own error code without reading or writing out of bounds. Inputs
 * handed to decoders live in heap blocks of exactly their length and outputs in
 * arrays of exactly their capacity, so AddressSanitizer catches any stray byte. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "t_cmocka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sh_err.h"
#include "sh_limits.h"
#include "sh_wire.h"

/* ---- helpers ---------------------------------------------------------------- */

/* Copies src into a heap block of exactly len bytes (1 when len is 0). */
static uint8_t *dup_exact(const uint8_t *src, size_t len)
{
    uint8_t *p = malloc(len > 0 ? len : 1);
    assert_non_null(p);
    if (len > 0) {
        memcpy(p, src, len);
    }
    return p;
}

/* Sets a string field and its _len sibling: SET_STR(it.sku, "A1"). */
#define SET_STR(field, s) set_str((field), sizeof(field), &field##_len, (s))

static void set_str(char *dst, size_t dst_size, uint8_t *len, const char *s)
{
    assert_int_equal(sh_wire_str_set(dst, dst_size, len, s, strlen(s)), SH_OK);
}

/* A string of exactly n characters from a printable alphabet, distinct per seed. */
static const char *long_str(size_t n, char seed)
{
    static char bufs[4][256];
    static unsigned next;
    char *b = bufs[next++ % 4];
    assert_true(n < sizeof bufs[0]);
    for (size_t i = 0; i < n; i++) {
        b[i] = (char)('!' + (seed + i) % 94);
    }
    b[n] = '\0';
    return b;
}

#define SET_MAX(field, seed) SET_STR(field, long_str(sizeof(field) - 1, (seed)))

static void assert_str_field(const char *a, uint8_t a_len, const char *b, uint8_t b_len)
{
    assert_int_equal(a_len, b_len);
    assert_int_equal(strlen(a), a_len);
    assert_memory_equal(a, b, (size_t)a_len + 1);
}

#define ASSERT_STR_EQ(a, b, field)                                                                 \
    assert_str_field((a)->field, (a)->field##_len, (b)->field, (b)->field##_len)

/* Checks a decoded string: within max, NUL-terminated where its length says. */
static void assert_str_sane(const char *s, uint8_t len, size_t size)
{
    assert_true(len < size);
    assert_int_equal(s[len], '\0');
    assert_int_equal(strlen(s), len);
}

#define ASSERT_SANE(obj, field)                                                                    \
    assert_str_sane((obj)->field, (obj)->field##_len, sizeof((obj)->field))

/* A tiny raw-byte builder, to hand-craft messages the encoders refuse to produce. */
typedef struct raw_msg {
    uint8_t buf[2048];
    size_t len;
} raw_msg;

static void raw_le(raw_msg *m, uint64_t v, size_t bytes)
{
    assert_true(m->len + bytes <= sizeof m->buf);
    for (size_t i = 0; i < bytes; i++) {
        m->buf[m->len++] = (uint8_t)(v >> (8 * i));
    }
}

static void raw_str(raw_msg *m, const char *s, size_t n)
{
    raw_le(m, n, 1);
    assert_true(m->len + n <= sizeof m->buf);
    memcpy(m->buf + m->len, s, n);
    m->len += n;
}

static void raw_header(raw_msg *m, uint8_t version, uint8_t type, uint16_t count, uint64_t req_id)
{
    m->len = 0;
    raw_le(m, version, 1);
    raw_le(m, type, 1);
    raw_le(m, count, 2);
    raw_le(m, 0, 4); /* body_len, patched by raw_seal */
    raw_le(m, req_id, 8);
}

static void raw_seal(raw_msg *m)
{
    uint32_t body = (uint32_t)(m->len - SH_WIRE_HEADER_BYTES);
    for (size_t i = 0; i < 4; i++) {
        m->buf[4 + i] = (uint8_t)(body >> (8 * i));
    }
}

static void patch_le(uint8_t *buf, size_t off, uint64_t v, size_t bytes)
{
    for (size_t i = 0; i < bytes; i++) {
        buf[off + i] = (uint8_t)(v >> (8 * i));
    }
}

/* ---- fixtures --------------------------------------------------------------- */

#define N_ITEMS      3
#define N_DETAILS    3
#define N_SKUS       5
#define N_PARTOPS    6
#define N_SYNC_PARTS 4

static void make_items(sh_wire_item *it, sh_wire_type type)
{
    memset(it, 0, sizeof *it * N_ITEMS);
    it[0].tag = UINT64_MAX;
    it[0].qty = SH_QTY_UNITS_MAX;
    it[0].per_user_limit = SH_PER_USER_LIMIT_UNITS_MAX;
    it[0].partition = SH_PARTITIONS_PER_SKU_MAX - 1;
    it[0].from_partition = SH_PARTITIONS_PER_SKU_MAX - 2;
    it[0].claim_version = UINT32_MAX;
    it[0].flags = SH_WIRE_ITEM_F_FORCE_PARTITION;
    SET_MAX(it[0].sku, 1);
    SET_MAX(it[0].order_id, 2);
    SET_MAX(it[0].user_id, 3);
    it[1].tag = 0;
    it[1].qty = type == SH_WIRE_RELEASE_REQ ? 0 : 1;
    SET_STR(it[1].sku, "S");
    SET_STR(it[1].order_id, "o");
    SET_STR(it[1].user_id, type == SH_WIRE_RELEASE_REQ ? "" : "u");
    it[2].tag = 0x0102030405060708ull;
    it[2].qty = 7;
    it[2].per_user_limit = 3;
    it[2].partition = 200;
    SET_STR(it[2].sku, "sku-42");
    SET_STR(it[2].order_id, "order:9.a_b-c");
    SET_STR(it[2].user_id, "user-7");
}

static void make_results(sh_wire_result *r)
{
    memset(r, 0, sizeof *r * N_ITEMS);
    r[0] = (sh_wire_result){.tag = UINT64_MAX,
                            .seq = UINT64_MAX,
                            .s0 = INT64_MIN,
                            .s1 = INT64_MAX,
                            .qty = SH_QTY_UNITS_MAX,
                            .partition = SH_PARTITIONS_PER_SKU_MAX - 1,
                            .claim_version = UINT32_MAX,
                            .status = SH_WIRE_OUT_ERROR,
                            .flags = SH_WIRE_RES_F_ALL_,
                            .active = 1};
    r[1] = (sh_wire_result){.tag = 0, .status = SH_WIRE_OUT_OK};
    r[2] = (sh_wire_result){.tag = 0x1122334455667788ull,
                            .seq = 12345,
                            .s0 = -1,
                            .s1 = 42,
                            .qty = 3,
                            .partition = 17,
                            .status = SH_WIRE_OUT_SOLD_OUT,
                            .flags = SH_WIRE_RES_F_FLIPPED | SH_WIRE_RES_F_EXHAUSTED,
                            .active = 0};
}

static void make_batch(sh_wire_batch *b, sh_wire_detail *d)
{
    memset(b, 0, sizeof *b);
    memset(d, 0, sizeof *d * N_DETAILS);
    SET_MAX(b->sku, 4);
    b->partition = SH_PARTITIONS_PER_SKU_MAX - 1;
    b->first_seq = UINT64_MAX - 2;
    b->last_seq = UINT64_MAX;
    for (size_t i = 0; i < N_DETAILS; i++) {
        d[i].seq = b->first_seq + i;
    }
    d[0].created_ms = INT64_MIN;
    d[0].qty = -SH_QTY_UNITS_MAX;
    d[0].sub_domain = 0;
    SET_MAX(d[0].order_id, 5);
    SET_STR(d[0].user_id, "");
    d[1].created_ms = INT64_MAX;
    d[1].qty = SH_QTY_UNITS_MAX;
    d[1].sub_domain = 1;
    SET_STR(d[1].order_id, "o2");
    SET_MAX(d[1].user_id, 6);
    d[2].created_ms = 1763761202123;
    d[2].qty = -1;
    d[2].sub_domain = 1;
    SET_STR(d[2].order_id, "o3");
    SET_STR(d[2].user_id, "u3");
}

static void make_ack(sh_wire_ack *a)
{
    memset(a, 0, sizeof *a);
    a->status = SH_EMYSQL;
    SET_MAX(a->sku, 7);
    a->partition = 9;
    a->synced_seq = UINT64_MAX;
    SET_MAX(a->message, 8);
}

static void make_sku(sh_wire_sku *s, int i)
{
    memset(s, 0, sizeof *s);
    char id[32];
    snprintf(id, sizeof id, "sku-%d", i);
    SET_STR(s->sku_id, i == 0 ? long_str(SH_SKU_ID_CHARS_MAX, 9) : id);
    SET_STR(s->name, i == 0 ? long_str(SH_SKU_NAME_CHARS_MAX, 10) : (i % 2 ? "" : "a name"));
    s->total = i == 0 ? SH_SKU_TOTAL_UNITS_MAX : i * 1000;
    s->start_ms = i == 0 ? INT64_MAX : i;
    s->per_user_limit = i == 0 ? SH_PER_USER_LIMIT_UNITS_MAX : (uint32_t)i;
    s->partitions = i == 0 ? SH_PARTITIONS_PER_SKU_MAX : (uint16_t)(i + 1);
    s->min_chunk = SH_CHUNK_UNITS_MIN + (uint32_t)i;
    s->max_chunk = i == 0 ? SH_CHUNK_UNITS_MAX : 100u * (uint32_t)(i + 1);
}

static void make_catalog_req(sh_wire_catalog_req *req, sh_wire_catalog_op op)
{
    memset(req, 0, sizeof *req);
    req->op = op;
    switch (op) {
    case SH_WIRE_CAT_UPSERT:
        make_sku(&req->sku, 0);
        break;
    case SH_WIRE_CAT_RESTOCK:
        SET_STR(req->sku.sku_id, "sku-r");
        SET_MAX(req->restock_id, 11);
        req->units = SH_SKU_TOTAL_UNITS_MAX;
        break;
    case SH_WIRE_CAT_GET:
        SET_STR(req->sku.sku_id, "sku-g");
        break;
    case SH_WIRE_CAT_LIST:
    case SH_WIRE_CAT_MIGRATE:
        break;
    }
}

static void make_catalog_rep(sh_wire_catalog_rep *rep, sh_wire_sku *skus)
{
    memset(rep, 0, sizeof *rep);
    rep->status = SH_OK;
    rep->applied = 1;
    rep->schema_before = 1;
    rep->schema_after = SH_WIRE_SCHEMA_VERSION_MAX;
    SET_MAX(rep->message, 12);
    for (int i = 0; i < N_SKUS; i++) {
        make_sku(&skus[i], i);
    }
}

static void make_partops(sh_wire_partop *ops)
{
    memset(ops, 0, sizeof *ops * N_PARTOPS);
    for (int i = 0; i < N_PARTOPS; i++) {
        ops[i].op = (sh_wire_partop_op)(SH_WIRE_PARTOP_GRANT + i);
        ops[i].sub_domain = (uint8_t)(i % 2);
        SET_STR(ops[i].sku, i == 0 ? long_str(SH_SKU_ID_CHARS_MAX, 13) : "sku-p");
        ops[i].partition = (uint16_t)(i == 0 ? SH_PARTITIONS_PER_SKU_MAX - 1 : i);
        ops[i].grant_id = (uint64_t)i + 1;
        ops[i].units = i;
    }
    ops[0].grant_id = UINT64_MAX;
    ops[0].units = SH_SKU_TOTAL_UNITS_MAX;
}

static void make_partop_results(sh_wire_partop_result *r)
{
    memset(r, 0, sizeof *r * N_PARTOPS);
    for (int i = 0; i < N_PARTOPS; i++) {
        r[i].status = (sh_err)(i == 1 ? SH_ERR_COUNT_ - 1 : SH_OK);
        r[i].op = (sh_wire_partop_op)(SH_WIRE_PARTOP_GRANT + i);
        r[i].active = (uint8_t)(i % 2);
        r[i].state = (uint8_t)((i / 2) % 2);
        SET_STR(r[i].sku, i == 0 ? long_str(SH_SKU_ID_CHARS_MAX, 14) : "sku-q");
        r[i].partition = (uint16_t)i;
        r[i].grant_id = (uint64_t)i * 1000;
        r[i].units = -i;
        r[i].s0 = i;
        r[i].s1 = 2 * i;
        r[i].deducted = 3 * i;
        r[i].seq = (uint64_t)i;
        r[i].flags = (uint8_t)(i % 32);
    }
    r[0].grant_id = UINT64_MAX;
    r[0].units = INT64_MIN;
    r[0].s0 = INT64_MAX;
    r[0].s1 = INT64_MIN;
    r[0].deducted = INT64_MIN;
    r[0].seq = UINT64_MAX;
    r[0].flags = SH_WIRE_RES_F_ALL_;
}

static void make_sync_state_req(sh_wire_sync_state_req *req)
{
    memset(req, 0, sizeof *req);
    SET_MAX(req->sku, 15);
}

/* Partitions 0, 1, 200 and the last, with every field at an edge somewhere. */
static void make_sync_state_rep(sh_wire_sync_state_rep *rep, sh_wire_sync_part *parts)
{
    memset(rep, 0, sizeof *rep);
    memset(parts, 0, sizeof *parts * N_SYNC_PARTS);
    rep->status = SH_OK;
    SET_MAX(rep->message, 16);
    SET_MAX(rep->dup_order, 17);
    rep->dup_orders = UINT64_MAX;
    static const uint16_t idx[N_SYNC_PARTS] = {0, 1, 200, SH_PARTITIONS_PER_SKU_MAX - 1};
    for (int i = 0; i < N_SYNC_PARTS; i++) {
        parts[i].partition = idx[i];
        parts[i].synced_seq = (uint64_t)i * 10;
        parts[i].deducted = i * 7;
        parts[i].detail_rows = i * 10;
        parts[i].rows_counted = i * 10;
        parts[i].qty_counted = -i;
        parts[i].max_seq = (uint64_t)i * 10 + 1;
        parts[i].chk = i == 0 ? UINT64_MAX : (uint64_t)i * 0x9e3779b97f4a7c15ULL;
    }
    parts[3].synced_seq = UINT64_MAX;
    parts[3].deducted = INT64_MIN;
    parts[3].detail_rows = INT64_MAX;
    parts[3].rows_counted = INT64_MAX;
    parts[3].qty_counted = INT64_MAX;
    parts[3].max_seq = UINT64_MAX;
}

static void make_sync_details_req(sh_wire_sync_details_req *req)
{
    memset(req, 0, sizeof *req);
    SET_MAX(req->sku, 17);
    req->partition = SH_PARTITIONS_PER_SKU_MAX - 1;
    req->after_seq = UINT64_MAX;
    req->limit = SH_WIRE_DETAILS_PAGE_MAX;
}

/* The batch's details (every field at an edge), seqs 1, 7, UINT64_MAX: a page
 * need not be contiguous, only increasing. */
static void make_sync_details_rep(sh_wire_sync_details_rep *rep, sh_wire_detail *d)
{
    sh_wire_batch b;
    make_batch(&b, d);
    memset(rep, 0, sizeof *rep);
    rep->status = SH_OK;
    SET_MAX(rep->message, 18);
    rep->synced_seq = UINT64_MAX;
    d[0].seq = 1;
    d[1].seq = 7;
    d[2].seq = UINT64_MAX;
}

/* One valid encoded message of each type (kind 0..13 = type 1..14), in a heap block
 * of exactly its length. */
#define N_KINDS 14

static uint8_t *make_msg(int kind, size_t *len)
{
    uint8_t *buf = malloc(65536);
    assert_non_null(buf);
    sh_wire_type type = (sh_wire_type)(kind + 1);
    uint64_t req_id = 0xABCDEF0000000000ull + (uint64_t)kind;
    sh_err rc = SH_EINTERNAL;
    switch (type) {
    case SH_WIRE_DEDUCT_REQ:
    case SH_WIRE_RELEASE_REQ: {
        sh_wire_item it[N_ITEMS];
        make_items(it, type);
        rc = sh_wire_items_encode(buf, 65536, len, type, req_id, it, N_ITEMS);
        break;
    }
    case SH_WIRE_DEDUCT_REP:
    case SH_WIRE_RELEASE_REP: {
        sh_wire_result r[N_ITEMS];
        make_results(r);
        rc = sh_wire_results_encode(buf, 65536, len, type, req_id, r, N_ITEMS);
        break;
    }
    case SH_WIRE_DETAIL_BATCH: {
        sh_wire_batch b;
        sh_wire_detail d[N_DETAILS];
        make_batch(&b, d);
        rc = sh_wire_batch_encode(buf, 65536, len, req_id, &b, d, N_DETAILS);
        break;
    }
    case SH_WIRE_BATCH_ACK: {
        sh_wire_ack a;
        make_ack(&a);
        rc = sh_wire_ack_encode(buf, 65536, len, req_id, &a);
        break;
    }
    case SH_WIRE_CATALOG_REQ: {
        sh_wire_catalog_req req;
        make_catalog_req(&req, SH_WIRE_CAT_UPSERT);
        rc = sh_wire_catalog_req_encode(buf, 65536, len, req_id, &req);
        break;
    }
    case SH_WIRE_CATALOG_REP: {
        sh_wire_catalog_rep rep;
        sh_wire_sku skus[N_SKUS];
        make_catalog_rep(&rep, skus);
        rc = sh_wire_catalog_rep_encode(buf, 65536, len, req_id, &rep, skus, N_SKUS);
        break;
    }
    case SH_WIRE_PARTOP_REQ: {
        sh_wire_partop ops[N_PARTOPS];
        make_partops(ops);
        rc = sh_wire_partop_req_encode(buf, 65536, len, req_id, ops, N_PARTOPS);
        break;
    }
    case SH_WIRE_PARTOP_REP: {
        sh_wire_partop_result r[N_PARTOPS];
        make_partop_results(r);
        rc = sh_wire_partop_rep_encode(buf, 65536, len, req_id, r, N_PARTOPS);
        break;
    }
    case SH_WIRE_SYNC_STATE_REQ: {
        sh_wire_sync_state_req req;
        make_sync_state_req(&req);
        rc = sh_wire_sync_state_req_encode(buf, 65536, len, req_id, &req);
        break;
    }
    case SH_WIRE_SYNC_STATE_REP: {
        sh_wire_sync_state_rep rep;
        sh_wire_sync_part parts[N_SYNC_PARTS];
        make_sync_state_rep(&rep, parts);
        rc = sh_wire_sync_state_rep_encode(buf, 65536, len, req_id, &rep, parts, N_SYNC_PARTS);
        break;
    }
    case SH_WIRE_SYNC_DETAILS_REQ: {
        sh_wire_sync_details_req req;
        make_sync_details_req(&req);
        rc = sh_wire_sync_details_req_encode(buf, 65536, len, req_id, &req);
        break;
    }
    case SH_WIRE_SYNC_DETAILS_REP: {
        sh_wire_sync_details_rep rep;
        sh_wire_detail d[N_DETAILS];
        make_sync_details_rep(&rep, d);
        rc = sh_wire_sync_details_rep_encode(buf, 65536, len, req_id, &rep, d, N_DETAILS);
        break;
    }
    }
    assert_int_equal(rc, SH_OK);
    uint8_t *exact = dup_exact(buf, *len);
    free(buf);
    return exact;
}

/* Runs decoder `which` (0..11, one per message family) with output arrays of exactly
 * cap records (NULL when cap is 0, so any write would fault). When it succeeds, checks every
 * decoded string is NUL-terminated and within its bounds and the count within cap. Returns the
 * decoder's code. */
#define N_DECODERS 12

static sh_err decode_any(int which, const uint8_t *buf, size_t len, size_t cap)
{
    sh_wire_header hdr;
    sh_err rc = SH_EINTERNAL;
    switch (which) {
    case 0: {
        sh_wire_item *it = (cap > 0 ? malloc(sizeof *it * cap) : NULL);
        assert_true(it != NULL || cap == 0);
        rc = sh_wire_items_decode(buf, len, &hdr, it, cap);
        for (size_t i = 0; rc == SH_OK && i < hdr.count; i++) {
            ASSERT_SANE(&it[i], sku);
            ASSERT_SANE(&it[i], order_id);
            ASSERT_SANE(&it[i], user_id);
        }
        free(it);
        break;
    }
    case 1: {
        sh_wire_result *r = (cap > 0 ? malloc(sizeof *r * cap) : NULL);
        assert_true(r != NULL || cap == 0);
        rc = sh_wire_results_decode(buf, len, &hdr, r, cap);
        for (size_t i = 0; rc == SH_OK && i < hdr.count; i++) {
            assert_true((unsigned)r[i].status <= SH_WIRE_OUT_LAST_);
            assert_true(r[i].active <= 1);
        }
        free(r);
        break;
    }
    case 2: {
        sh_wire_batch b;
        sh_wire_detail *d = (cap > 0 ? malloc(sizeof *d * cap) : NULL);
        assert_true(d != NULL || cap == 0);
        rc = sh_wire_batch_decode(buf, len, &hdr, &b, d, cap);
        if (rc == SH_OK) {
            ASSERT_SANE(&b, sku);
        }
        for (size_t i = 0; rc == SH_OK && i < hdr.count; i++) {
            ASSERT_SANE(&d[i], order_id);
            ASSERT_SANE(&d[i], user_id);
            assert_int_equal(d[i].seq, b.first_seq + i);
        }
        free(d);
        break;
    }
    case 3: {
        sh_wire_ack *a = malloc(sizeof *a);
        assert_non_null(a);
        rc = sh_wire_ack_decode(buf, len, &hdr, a);
        if (rc == SH_OK) {
            ASSERT_SANE(a, sku);
            ASSERT_SANE(a, message);
        }
        free(a);
        break;
    }
    case 4: {
        sh_wire_catalog_req *req = malloc(sizeof *req);
        assert_non_null(req);
        rc = sh_wire_catalog_req_decode(buf, len, &hdr, req);
        if (rc == SH_OK) {
            ASSERT_SANE(&req->sku, sku_id);
            ASSERT_SANE(&req->sku, name);
            ASSERT_SANE(req, restock_id);
        }
        free(req);
        break;
    }
    case 5: {
        sh_wire_catalog_rep rep;
        sh_wire_sku *s = (cap > 0 ? malloc(sizeof *s * cap) : NULL);
        assert_true(s != NULL || cap == 0);
        rc = sh_wire_catalog_rep_decode(buf, len, &hdr, &rep, s, cap);
        if (rc == SH_OK) {
            ASSERT_SANE(&rep, message);
        }
        for (size_t i = 0; rc == SH_OK && i < hdr.count; i++) {
            ASSERT_SANE(&s[i], sku_id);
            ASSERT_SANE(&s[i], name);
        }
        free(s);
        break;
    }
    case 6: {
        sh_wire_partop *ops = (cap > 0 ? malloc(sizeof *ops * cap) : NULL);
        assert_true(ops != NULL || cap == 0);
        rc = sh_wire_partop_req_decode(buf, len, &hdr, ops, cap);
        for (size_t i = 0; rc == SH_OK && i < hdr.count; i++) {
            ASSERT_SANE(&ops[i], sku);
        }
        free(ops);
        break;
    }
    case 7: {
        sh_wire_partop_result *r = (cap > 0 ? malloc(sizeof *r * cap) : NULL);
        assert_true(r != NULL || cap == 0);
        rc = sh_wire_partop_rep_decode(buf, len, &hdr, r, cap);
        for (size_t i = 0; rc == SH_OK && i < hdr.count; i++) {
            ASSERT_SANE(&r[i], sku);
        }
        free(r);
        break;
    }
    case 8: {
        sh_wire_sync_state_req *req = malloc(sizeof *req);
        assert_non_null(req);
        rc = sh_wire_sync_state_req_decode(buf, len, &hdr, req);
        if (rc == SH_OK) {
            ASSERT_SANE(req, sku);
            assert_true(req->sku_len >= 1);
        }
        free(req);
        break;
    }
    case 9: {
        sh_wire_sync_state_rep rep;
        sh_wire_sync_part *p = (cap > 0 ? malloc(sizeof *p * cap) : NULL);
        assert_true(p != NULL || cap == 0);
        rc = sh_wire_sync_state_rep_decode(buf, len, &hdr, &rep, p, cap);
        if (rc == SH_OK) {
            ASSERT_SANE(&rep, message);
            assert_true(rep.status == SH_OK || hdr.count == 0);
        }
        for (size_t i = 0; rc == SH_OK && i < hdr.count; i++) {
            assert_true(p[i].partition < SH_PARTITIONS_PER_SKU_MAX);
            assert_true(i == 0 || p[i].partition > p[i - 1].partition);
            assert_true(p[i].detail_rows >= 0 && p[i].rows_counted >= 0);
        }
        free(p);
        break;
    }
    case 10: {
        sh_wire_sync_details_req *req = malloc(sizeof *req);
        assert_non_null(req);
        rc = sh_wire_sync_details_req_decode(buf, len, &hdr, req);
        if (rc == SH_OK) {
            ASSERT_SANE(req, sku);
            assert_true(req->limit >= 1 && req->limit <= SH_WIRE_DETAILS_PAGE_MAX);
        }
        free(req);
        break;
    }
    case 11: {
        sh_wire_sync_details_rep rep;
        sh_wire_detail *d = (cap > 0 ? malloc(sizeof *d * cap) : NULL);
        assert_true(d != NULL || cap == 0);
        rc = sh_wire_sync_details_rep_decode(buf, len, &hdr, &rep, d, cap);
        if (rc == SH_OK) {
            ASSERT_SANE(&rep, message);
            assert_true(rep.status == SH_OK || hdr.count == 0);
        }
        for (size_t i = 0; rc == SH_OK && i < hdr.count; i++) {
            ASSERT_SANE(&d[i], order_id);
            ASSERT_SANE(&d[i], user_id);
            assert_true(d[i].seq >= 1 && (i == 0 || d[i].seq > d[i - 1].seq));
        }
        free(d);
        break;
    }
    default:
        fail();
    }
    if (rc == SH_OK) {
        /* the single-record decoders (ack, catalog and sync requests) take no cap */
        assert_true(hdr.count <= (which == 3 || which == 4 || which == 8 || which == 10 ? 1 : cap));
        assert_int_equal(hdr.body_len, len - SH_WIRE_HEADER_BYTES);
    }
    assert_true((unsigned)rc < SH_ERR_COUNT_);
    return rc;
}

/* The decoder family of each message kind. */
static int decoder_of_kind(int kind)
{
    static const int map[N_KINDS] = {0, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    return map[kind];
}

/* ---- round trips ------------------------------------------------------------ */

static void roundtrip_items(sh_wire_type type)
{
    sh_wire_item in[N_ITEMS], *out = calloc(N_ITEMS, sizeof *out);
    assert_non_null(out);
    make_items(in, type);
    uint8_t buf[2048];
    size_t len = 0;
    assert_int_equal(sh_wire_items_encode(buf, sizeof buf, &len, type, 77, in, N_ITEMS), SH_OK);
    assert_int_equal(len, sh_wire_items_size(in, N_ITEMS));
    uint8_t *msg = dup_exact(buf, len);
    sh_wire_header hdr;
    assert_int_equal(sh_wire_items_decode(msg, len, &hdr, out, N_ITEMS), SH_OK);
    assert_int_equal(hdr.version, SH_WIRE_VERSION);
    assert_int_equal(hdr.type, type);
    assert_int_equal(hdr.count, N_ITEMS);
    assert_int_equal(hdr.body_len, len - SH_WIRE_HEADER_BYTES);
    assert_int_equal(hdr.req_id, 77);
    for (size_t i = 0; i < N_ITEMS; i++) {
        assert_int_equal(out[i].tag, in[i].tag);
        assert_int_equal(out[i].qty, in[i].qty);
        assert_int_equal(out[i].per_user_limit, in[i].per_user_limit);
        assert_int_equal(out[i].partition, in[i].partition);
        assert_int_equal(out[i].from_partition, in[i].from_partition);
        assert_int_equal(out[i].claim_version, in[i].claim_version);
        assert_int_equal(out[i].flags, in[i].flags);
        ASSERT_STR_EQ(&out[i], &in[i], sku);
        ASSERT_STR_EQ(&out[i], &in[i], order_id);
        ASSERT_STR_EQ(&out[i], &in[i], user_id);
    }
    free(msg);
    free(out);
}

static void test_roundtrip_deduct_req(void **state)
{
    (void)state;
    roundtrip_items(SH_WIRE_DEDUCT_REQ);
}

static void test_roundtrip_release_req(void **state)
{
    (void)state;
    roundtrip_items(SH_WIRE_RELEASE_REQ);
}

static void roundtrip_results(sh_wire_type type)
{
    sh_wire_result in[N_ITEMS], *out = calloc(N_ITEMS, sizeof *out);
    assert_non_null(out);
    make_results(in);
    uint8_t buf[1024];
    size_t len = 0;
    assert_int_equal(sh_wire_results_encode(buf, sizeof buf, &len, type, UINT64_MAX, in, N_ITEMS),
                     SH_OK);
    assert_int_equal(len, sh_wire_results_size(in, N_ITEMS));
    uint8_t *msg = dup_exact(buf, len);
    sh_wire_header hdr;
    assert_int_equal(sh_wire_results_decode(msg, len, &hdr, out, N_ITEMS), SH_OK);
    assert_int_equal(hdr.type, type);
    assert_int_equal(hdr.count, N_ITEMS);
    assert_int_equal(hdr.req_id, UINT64_MAX);
    for (size_t i = 0; i < N_ITEMS; i++) {
        assert_int_equal(out[i].tag, in[i].tag);
        assert_int_equal(out[i].seq, in[i].seq);
        assert_true(out[i].s0 == in[i].s0);
        assert_true(out[i].s1 == in[i].s1);
        assert_int_equal(out[i].qty, in[i].qty);
        assert_int_equal(out[i].partition, in[i].partition);
        assert_int_equal(out[i].claim_version, in[i].claim_version);
        assert_int_equal(out[i].status, in[i].status);
        assert_int_equal(out[i].flags, in[i].flags);
        assert_int_equal(out[i].active, in[i].active);
    }
    assert_true(out[0].s0 == INT64_MIN && out[0].s1 == INT64_MAX);
    free(msg);

    /* An empty reply is legal (count 0..max). */
    assert_int_equal(sh_wire_results_encode(buf, sizeof buf, &len, type, 1, NULL, 0), SH_OK);
    assert_int_equal(len, SH_WIRE_HEADER_BYTES);
    msg = dup_exact(buf, len);
    assert_int_equal(sh_wire_results_decode(msg, len, &hdr, NULL, 0), SH_OK);
    assert_int_equal(hdr.count, 0);
    free(msg);
    free(out);
}

static void test_roundtrip_deduct_rep(void **state)
{
    (void)state;
    roundtrip_results(SH_WIRE_DEDUCT_REP);
}

static void test_roundtrip_release_rep(void **state)
{
    (void)state;
    roundtrip_results(SH_WIRE_RELEASE_REP);
}

static void test_roundtrip_batch(void **state)
{
    (void)state;
    sh_wire_batch bin, bout;
    sh_wire_detail din[N_DETAILS], *dout = calloc(N_DETAILS, sizeof *dout);
    assert_non_null(dout);
    make_batch(&bin, din);
    uint8_t buf[2048];
    size_t len = 0;
    assert_int_equal(sh_wire_batch_encode(buf, sizeof buf, &len, 5, &bin, din, N_DETAILS), SH_OK);
    assert_int_equal(len, sh_wire_batch_size(&bin, din, N_DETAILS));
    uint8_t *msg = dup_exact(buf, len);
    sh_wire_header hdr;
    assert_int_equal(sh_wire_batch_decode(msg, len, &hdr, &bout, dout, N_DETAILS), SH_OK);
    assert_int_equal(hdr.type, SH_WIRE_DETAIL_BATCH);
    assert_int_equal(hdr.count, N_DETAILS);
    assert_int_equal(hdr.req_id, 5);
    ASSERT_STR_EQ(&bout, &bin, sku);
    assert_int_equal(bout.partition, bin.partition);
    assert_int_equal(bout.first_seq, bin.first_seq);
    assert_int_equal(bout.last_seq, UINT64_MAX);
    for (size_t i = 0; i < N_DETAILS; i++) {
        assert_int_equal(dout[i].seq, din[i].seq);
        assert_true(dout[i].created_ms == din[i].created_ms);
        assert_true(dout[i].qty == din[i].qty);
        assert_int_equal(dout[i].sub_domain, din[i].sub_domain);
        ASSERT_STR_EQ(&dout[i], &din[i], order_id);
        ASSERT_STR_EQ(&dout[i], &din[i], user_id);
    }
    assert_true(dout[0].qty == -SH_QTY_UNITS_MAX);
    assert_true(dout[0].created_ms == INT64_MIN && dout[1].created_ms == INT64_MAX);
    free(msg);
    free(dout);
}

static void test_roundtrip_batch_empty_query(void **state)
{
    (void)state;
    sh_wire_batch bin, bout;
    memset(&bin, 0, sizeof bin);
    SET_STR(bin.sku, "sku-q");
    bin.partition = 3;
    uint8_t buf[128];
    size_t len = 0;
    assert_int_equal(sh_wire_batch_encode(buf, sizeof buf, &len, 9, &bin, NULL, 0), SH_OK);
    uint8_t *msg = dup_exact(buf, len);
    sh_wire_header hdr;
    memset(&bout, 0xAA, sizeof bout);
    assert_int_equal(sh_wire_batch_decode(msg, len, &hdr, &bout, NULL, 0), SH_OK);
    assert_int_equal(hdr.count, 0);
    ASSERT_STR_EQ(&bout, &bin, sku);
    assert_int_equal(bout.partition, 3);
    assert_int_equal(bout.first_seq, 0);
    assert_int_equal(bout.last_seq, 0);
    free(msg);

    /* A query must say first_seq == last_seq == 0, on both sides. */
    bin.first_seq = bin.last_seq = 1;
    assert_int_equal(sh_wire_batch_encode(buf, sizeof buf, &len, 9, &bin, NULL, 0), SH_EINVAL);
}

static void test_roundtrip_ack(void **state)
{
    (void)state;
    sh_wire_ack in, out;
    make_ack(&in);
    uint8_t buf[512];
    size_t len = 0;
    assert_int_equal(sh_wire_ack_encode(buf, sizeof buf, &len, 6, &in), SH_OK);
    assert_int_equal(len, sh_wire_ack_size(&in));
    uint8_t *msg = dup_exact(buf, len);
    sh_wire_header hdr;
    assert_int_equal(sh_wire_ack_decode(msg, len, &hdr, &out), SH_OK);
    assert_int_equal(hdr.type, SH_WIRE_BATCH_ACK);
    assert_int_equal(hdr.count, 1);
    assert_int_equal(hdr.req_id, 6);
    assert_int_equal(out.status, SH_EMYSQL);
    ASSERT_STR_EQ(&out, &in, sku);
    assert_int_equal(out.partition, in.partition);
    assert_int_equal(out.synced_seq, UINT64_MAX);
    ASSERT_STR_EQ(&out, &in, message);
    assert_int_equal(out.message_len, SH_MESSAGE_CHARS_MAX);
    free(msg);
}

static void assert_sku_equal(const sh_wire_sku *a, const sh_wire_sku *b)
{
    ASSERT_STR_EQ(a, b, sku_id);
    ASSERT_STR_EQ(a, b, name);
    assert_true(a->total == b->total);
    assert_true(a->start_ms == b->start_ms);
    assert_int_equal(a->per_user_limit, b->per_user_limit);
    assert_int_equal(a->partitions, b->partitions);
    assert_int_equal(a->min_chunk, b->min_chunk);
    assert_int_equal(a->max_chunk, b->max_chunk);
}

static void test_roundtrip_catalog_req(void **state)
{
    (void)state;
    static const sh_wire_catalog_op ops[] = {SH_WIRE_CAT_GET, SH_WIRE_CAT_UPSERT,
                                             SH_WIRE_CAT_RESTOCK, SH_WIRE_CAT_LIST,
                                             SH_WIRE_CAT_MIGRATE};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        sh_wire_catalog_req in, out;
        make_catalog_req(&in, ops[k]);
        uint8_t buf[1024];
        size_t len = 0;
        assert_int_equal(sh_wire_catalog_req_encode(buf, sizeof buf, &len, 100 + k, &in), SH_OK);
        assert_int_equal(len, sh_wire_catalog_req_size(&in));
        uint8_t *msg = dup_exact(buf, len);
        sh_wire_header hdr;
        assert_int_equal(sh_wire_catalog_req_decode(msg, len, &hdr, &out), SH_OK);
        assert_int_equal(hdr.type, SH_WIRE_CATALOG_REQ);
        assert_int_equal(hdr.req_id, 100 + k);
        assert_int_equal(out.op, ops[k]);
        assert_sku_equal(&out.sku, &in.sku);
        ASSERT_STR_EQ(&out, &in, restock_id);
        assert_true(out.units == in.units);
        free(msg);
    }
}

static void test_roundtrip_catalog_rep(void **state)
{
    (void)state;
    sh_wire_catalog_rep in, out;
    sh_wire_sku skus[N_SKUS], *got = calloc(N_SKUS, sizeof *got);
    assert_non_null(got);
    make_catalog_rep(&in, skus);
    uint8_t buf[4096];
    size_t len = 0;
    assert_int_equal(sh_wire_catalog_rep_encode(buf, sizeof buf, &len, 8, &in, skus, N_SKUS),
                     SH_OK);
    assert_int_equal(len, sh_wire_catalog_rep_size(&in, skus, N_SKUS));
    uint8_t *msg = dup_exact(buf, len);
    sh_wire_header hdr;
    assert_int_equal(sh_wire_catalog_rep_decode(msg, len, &hdr, &out, got, N_SKUS), SH_OK);
    assert_int_equal(hdr.type, SH_WIRE_CATALOG_REP);
    assert_int_equal(hdr.count, N_SKUS);
    assert_int_equal(out.status, SH_OK);
    assert_int_equal(out.applied, 1);
    assert_int_equal(out.schema_before, 1);
    assert_int_equal(out.schema_after, SH_WIRE_SCHEMA_VERSION_MAX);
    ASSERT_STR_EQ(&out, &in, message);
    for (size_t i = 0; i < N_SKUS; i++) {
        assert_sku_equal(&got[i], &skus[i]);
    }
    free(msg);

    /* A refusal carries no record. */
    in.status = SH_ENOTFOUND;
    in.applied = 0;
    SET_STR(in.message, "no such sku");
    assert_int_equal(sh_wire_catalog_rep_encode(buf, sizeof buf, &len, 8, &in, NULL, 0), SH_OK);
    msg = dup_exact(buf, len);
    assert_int_equal(sh_wire_catalog_rep_decode(msg, len, &hdr, &out, NULL, 0), SH_OK);
    assert_int_equal(hdr.count, 0);
    assert_int_equal(out.status, SH_ENOTFOUND);
    assert_string_equal(out.message, "no such sku");
    free(msg);
    free(got);
}

static void test_roundtrip_partop_req(void **state)
{
    (void)state;
    sh_wire_partop in[N_PARTOPS], *out = calloc(N_PARTOPS, sizeof *out);
    assert_non_null(out);
    make_partops(in);
    uint8_t buf[2048];
    size_t len = 0;
    assert_int_equal(sh_wire_partop_req_encode(buf, sizeof buf, &len, 10, in, N_PARTOPS), SH_OK);
    assert_int_equal(len, sh_wire_partop_req_size(in, N_PARTOPS));
    uint8_t *msg = dup_exact(buf, len);
    sh_wire_header hdr;
    assert_int_equal(sh_wire_partop_req_decode(msg, len, &hdr, out, N_PARTOPS), SH_OK);
    assert_int_equal(hdr.type, SH_WIRE_PARTOP_REQ);
    assert_int_equal(hdr.count, N_PARTOPS);
    for (size_t i = 0; i < N_PARTOPS; i++) {
        assert_int_equal(out[i].op, in[i].op);
        assert_int_equal(out[i].sub_domain, in[i].sub_domain);
        ASSERT_STR_EQ(&out[i], &in[i], sku);
        assert_int_equal(out[i].partition, in[i].partition);
        assert_int_equal(out[i].grant_id, in[i].grant_id);
        assert_true(out[i].units == in[i].units);
    }
    free(msg);
    free(out);
}

static void test_roundtrip_partop_rep(void **state)
{
    (void)state;
    sh_wire_partop_result in[N_PARTOPS], *out = calloc(N_PARTOPS, sizeof *out);
    assert_non_null(out);
    make_partop_results(in);
    uint8_t buf[2048];
    size_t len = 0;
    assert_int_equal(sh_wire_partop_rep_encode(buf, sizeof buf, &len, 11, in, N_PARTOPS), SH_OK);
    assert_int_equal(len, sh_wire_partop_rep_size(in, N_PARTOPS));
    uint8_t *msg = dup_exact(buf, len);
    sh_wire_header hdr;
    assert_int_equal(sh_wire_partop_rep_decode(msg, len, &hdr, out, N_PARTOPS), SH_OK);
    assert_int_equal(hdr.type, SH_WIRE_PARTOP_REP);
    assert_int_equal(hdr.count, N_PARTOPS);
    for (size_t i = 0; i < N_PARTOPS; i++) {
        assert_int_equal(out[i].status, in[i].status);
        assert_int_equal(out[i].op, in[i].op);
        assert_int_equal(out[i].active, in[i].active);
        assert_int_equal(out[i].state, in[i].state);
        ASSERT_STR_EQ(&out[i], &in[i], sku);
        assert_int_equal(out[i].partition, in[i].partition);
        assert_int_equal(out[i].grant_id, in[i].grant_id);
        assert_true(out[i].units == in[i].units);
        assert_true(out[i].s0 == in[i].s0);
        assert_true(out[i].s1 == in[i].s1);
        assert_true(out[i].deducted == in[i].deducted);
        assert_int_equal(out[i].seq, in[i].seq);
        assert_int_equal(out[i].flags, in[i].flags);
    }
    assert_true(out[0].units == INT64_MIN && out[0].s0 == INT64_MAX);
    free(msg);
    free(out);
}

static void test_roundtrip_sync_state_req(void **state)
{
    (void)state;
    sh_wire_sync_state_req in, out;
    make_sync_state_req(&in);
    uint8_t buf[256];
    size_t len = 0;
    assert_int_equal(sh_wire_sync_state_req_encode(buf, sizeof buf, &len, 12, &in), SH_OK);
    assert_int_equal(len, sh_wire_sync_state_req_size(&in));
    uint8_t *msg = dup_exact(buf, len);
    sh_wire_header hdr;
    assert_int_equal(sh_wire_sync_state_req_decode(msg, len, &hdr, &out), SH_OK);
    assert_int_equal(hdr.type, SH_WIRE_SYNC_STATE_REQ);
    assert_int_equal(hdr.count, 1);
    assert_int_equal(hdr.req_id, 12);
    ASSERT_STR_EQ(&out, &in, sku);
    free(msg);
    assert_string_equal(sh_wire_type_name(SH_WIRE_SYNC_STATE_REQ), "SYNC_STATE_REQ");
    assert_string_equal(sh_wire_type_name(SH_WIRE_SYNC_STATE_REP), "SYNC_STATE_REP");
}

static void test_roundtrip_sync_state_rep(void **state)
{
    (void)state;
    sh_wire_sync_state_rep in, out;
    sh_wire_sync_part parts[N_SYNC_PARTS], *got = calloc(N_SYNC_PARTS, sizeof *got);
    assert_non_null(got);
    make_sync_state_rep(&in, parts);
    uint8_t buf[1024];
    size_t len = 0;
    assert_int_equal(
        sh_wire_sync_state_rep_encode(buf, sizeof buf, &len, 13, &in, parts, N_SYNC_PARTS), SH_OK);
    assert_int_equal(len, sh_wire_sync_state_rep_size(&in, parts, N_SYNC_PARTS));
    uint8_t *msg = dup_exact(buf, len);
    sh_wire_header hdr;
    assert_int_equal(sh_wire_sync_state_rep_decode(msg, len, &hdr, &out, got, N_SYNC_PARTS), SH_OK);
    assert_int_equal(hdr.type, SH_WIRE_SYNC_STATE_REP);
    assert_int_equal(hdr.count, N_SYNC_PARTS);
    assert_int_equal(hdr.req_id, 13);
    assert_int_equal(out.status, SH_OK);
    ASSERT_STR_EQ(&out, &in, message);
    for (size_t i = 0; i < N_SYNC_PARTS; i++) {
        assert_int_equal(got[i].partition, parts[i].partition);
        assert_true(got[i].synced_seq == parts[i].synced_seq);
        assert_true(got[i].deducted == parts[i].deducted);
        assert_true(got[i].detail_rows == parts[i].detail_rows);
        assert_true(got[i].rows_counted == parts[i].rows_counted);
        assert_true(got[i].qty_counted == parts[i].qty_counted);
        assert_true(got[i].max_seq == parts[i].max_seq);
        assert_true(got[i].chk == parts[i].chk);
    }
    assert_true(got[3].deducted == INT64_MIN && got[3].max_seq == UINT64_MAX);
    assert_true(out.dup_orders == UINT64_MAX);
    ASSERT_STR_EQ(&out, &in, dup_order);
    free(msg);

    /* A count of doubled orders without one named, or one named with none
     * counted, is refused both ways. */
    in.dup_orders = 0;
    assert_int_equal(
        sh_wire_sync_state_rep_encode(buf, sizeof buf, &len, 13, &in, parts, N_SYNC_PARTS),
        SH_EINVAL);
    in.dup_orders = 1;

    /* No partition known yet: an empty answer. A refusal carries no record. */
    for (int refusal = 0; refusal < 2; refusal++) {
        in.status = refusal ? SH_EMYSQL : SH_OK;
        SET_STR(in.message, refusal ? "mysql 2013: Lost connection" : "");
        assert_int_equal(sh_wire_sync_state_rep_encode(buf, sizeof buf, &len, 14, &in, NULL, 0),
                         SH_OK);
        msg = dup_exact(buf, len);
        assert_int_equal(sh_wire_sync_state_rep_decode(msg, len, &hdr, &out, NULL, 0), SH_OK);
        assert_int_equal(hdr.count, 0);
        assert_int_equal(out.status, in.status);
        assert_string_equal(out.message, in.message);
        free(msg);
    }
    free(got);
}

/* SYNC_STATE messages refuse, on both sides, what would let the audit count a
 * partition twice or trust a row with a broken count. */
static void test_sync_state_bounds(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t len = 0;
    sh_wire_sync_state_req req;
    make_sync_state_req(&req);
    req.sku_len = 0;
    req.sku[0] = '\0';
    assert_int_equal(sh_wire_sync_state_req_encode(buf, sizeof buf, &len, 1, &req), SH_EINVAL);

    sh_wire_sync_state_rep rep;
    sh_wire_sync_part parts[N_SYNC_PARTS];
    struct {
        int field;
        const char *what;
    } cases[] = {{0, "partition past the last"}, {1, "partition repeated"},
                 {2, "partitions out of order"}, {3, "negative detail_rows"},
                 {4, "negative rows_counted"},   {5, "records with an error status"},
                 {6, "status past the last"}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        make_sync_state_rep(&rep, parts);
        switch (cases[c].field) {
        case 0:
            parts[3].partition = SH_PARTITIONS_PER_SKU_MAX;
            break;
        case 1:
            parts[2].partition = parts[1].partition;
            break;
        case 2:
            parts[1].partition = 201;
            break;
        case 3:
            parts[1].detail_rows = -1;
            break;
        case 4:
            parts[2].rows_counted = -1;
            break;
        case 5:
            rep.status = SH_EMYSQL;
            break;
        case 6:
            rep.status = SH_ERR_COUNT_;
            break;
        }
        if (sh_wire_sync_state_rep_encode(buf, sizeof buf, &len, 1, &rep, parts, N_SYNC_PARTS) !=
            SH_EINVAL) {
            fail_msg("encoder accepted %s", cases[c].what);
        }
    }

    /* The decoder refuses the same facts, patched into a valid message. Layout:
     * header, status u8, message (u8 length + bytes), dup_orders u64, dup_order
     * (u8 length + bytes), then 58-byte records whose first field is the u16
     * partition and whose fourth is detail_rows. */
    make_sync_state_rep(&rep, parts);
    assert_int_equal(
        sh_wire_sync_state_rep_encode(buf, sizeof buf, &len, 1, &rep, parts, N_SYNC_PARTS), SH_OK);
    size_t rec0 = SH_WIRE_HEADER_BYTES + 1 + 1 + rep.message_len + 8 + 1 + rep.dup_order_len;
    size_t rec_bytes = 2 + 7 * 8;
    assert_int_equal(len, rec0 + N_SYNC_PARTS * rec_bytes);
    struct {
        size_t off;
        uint64_t v;
        size_t bytes;
    } patches[] = {
        {rec0 + 3 * rec_bytes, SH_PARTITIONS_PER_SKU_MAX, 2},  /* past the last */
        {rec0 + 2 * rec_bytes, 1, 2},                          /* repeated */
        {rec0 + 1 * rec_bytes, 0, 2},                          /* repeated, first two */
        {rec0 + 1 * rec_bytes + 2 + 8 + 8, UINT64_MAX, 8},     /* detail_rows -1 */
        {rec0 + 2 * rec_bytes + 2 + 8 + 8 + 8, UINT64_MAX, 8}, /* rows_counted -1 */
        {SH_WIRE_HEADER_BYTES, SH_EMYSQL, 1},                  /* records with an error */
        {SH_WIRE_HEADER_BYTES, SH_ERR_COUNT_, 1},              /* status past the last */
    };
    for (size_t i = 0; i < sizeof patches / sizeof patches[0]; i++) {
        uint8_t *p = dup_exact(buf, len);
        patch_le(p, patches[i].off, patches[i].v, patches[i].bytes);
        if (decode_any(9, p, len, N_SYNC_PARTS) != SH_EINVAL) {
            fail_msg("decoder accepted patch %zu", i);
        }
        free(p);
    }
    /* An unpatched copy still decodes: the offsets above hit the intended fields. */
    uint8_t *p = dup_exact(buf, len);
    assert_int_equal(decode_any(9, p, len, N_SYNC_PARTS), SH_OK);
    free(p);

    /* A request with an empty sku, and one whose sku holds a NUL. */
    raw_msg m;
    raw_header(&m, SH_WIRE_VERSION, SH_WIRE_SYNC_STATE_REQ, 1, 1);
    raw_str(&m, "", 0);
    raw_seal(&m);
    p = dup_exact(m.buf, m.len);
    assert_int_equal(decode_any(8, p, m.len, 1), SH_EINVAL);
    free(p);
    raw_header(&m, SH_WIRE_VERSION, SH_WIRE_SYNC_STATE_REQ, 1, 1);
    raw_str(&m, "a\0", 2);
    raw_seal(&m);
    p = dup_exact(m.buf, m.len);
    assert_int_equal(decode_any(8, p, m.len, 1), SH_EINVAL);
    free(p);
}

static void test_roundtrip_sync_details(void **state)
{
    (void)state;
    sh_wire_sync_details_req qin, qout;
    make_sync_details_req(&qin);
    uint8_t buf[1024];
    size_t len = 0;
    assert_int_equal(sh_wire_sync_details_req_encode(buf, sizeof buf, &len, 15, &qin), SH_OK);
    assert_int_equal(len, sh_wire_sync_details_req_size(&qin));
    uint8_t *msg = dup_exact(buf, len);
    sh_wire_header hdr;
    assert_int_equal(sh_wire_sync_details_req_decode(msg, len, &hdr, &qout), SH_OK);
    assert_int_equal(hdr.type, SH_WIRE_SYNC_DETAILS_REQ);
    assert_int_equal(hdr.req_id, 15);
    ASSERT_STR_EQ(&qout, &qin, sku);
    assert_int_equal(qout.partition, qin.partition);
    assert_true(qout.after_seq == UINT64_MAX);
    assert_int_equal(qout.limit, SH_WIRE_DETAILS_PAGE_MAX);
    free(msg);
    assert_string_equal(sh_wire_type_name(SH_WIRE_SYNC_DETAILS_REQ), "SYNC_DETAILS_REQ");
    assert_string_equal(sh_wire_type_name(SH_WIRE_SYNC_DETAILS_REP), "SYNC_DETAILS_REP");

    sh_wire_sync_details_rep in, out;
    sh_wire_detail d[N_DETAILS], *got = calloc(N_DETAILS, sizeof *got);
    assert_non_null(got);
    make_sync_details_rep(&in, d);
    assert_int_equal(sh_wire_sync_details_rep_encode(buf, sizeof buf, &len, 16, &in, d, N_DETAILS),
                     SH_OK);
    assert_int_equal(len, sh_wire_sync_details_rep_size(&in, d, N_DETAILS));
    msg = dup_exact(buf, len);
    assert_int_equal(sh_wire_sync_details_rep_decode(msg, len, &hdr, &out, got, N_DETAILS), SH_OK);
    assert_int_equal(hdr.type, SH_WIRE_SYNC_DETAILS_REP);
    assert_int_equal(hdr.count, N_DETAILS);
    assert_int_equal(out.status, SH_OK);
    assert_true(out.synced_seq == UINT64_MAX);
    ASSERT_STR_EQ(&out, &in, message);
    for (size_t i = 0; i < N_DETAILS; i++) {
        assert_true(got[i].seq == d[i].seq);
        assert_true(got[i].created_ms == d[i].created_ms);
        assert_int_equal(got[i].qty, d[i].qty);
        assert_int_equal(got[i].sub_domain, d[i].sub_domain);
        ASSERT_STR_EQ(&got[i], &d[i], order_id);
        ASSERT_STR_EQ(&got[i], &d[i], user_id);
    }
    free(msg);

    /* Nothing after after_seq, and a refusal: no records. */
    for (int refusal = 0; refusal < 2; refusal++) {
        in.status = refusal ? SH_EMYSQL : SH_OK;
        in.synced_seq = refusal ? 0 : 42;
        SET_STR(in.message, refusal ? "mysql 2013: Lost connection" : "");
        assert_int_equal(sh_wire_sync_details_rep_encode(buf, sizeof buf, &len, 17, &in, NULL, 0),
                         SH_OK);
        msg = dup_exact(buf, len);
        assert_int_equal(sh_wire_sync_details_rep_decode(msg, len, &hdr, &out, NULL, 0), SH_OK);
        assert_int_equal(hdr.count, 0);
        assert_int_equal(out.status, in.status);
        assert_true(out.synced_seq == in.synced_seq);
        assert_string_equal(out.message, in.message);
        free(msg);
    }
    free(got);
}

/* SYNC_DETAILS messages refuse, on both sides, a page that could make reconcile
 * count a detail twice or take a broken one, and a request past its bounds. */
static void test_sync_details_bounds(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t len = 0;
    sh_wire_sync_details_req req;
    static const struct {
        int field;
        const char *what;
    } qcases[] = {{0, "empty sku"},
                  {1, "partition past the last"},
                  {2, "limit 0"},
                  {3, "limit past the page"}};
    for (size_t c = 0; c < sizeof qcases / sizeof qcases[0]; c++) {
        make_sync_details_req(&req);
        switch (qcases[c].field) {
        case 0:
            req.sku_len = 0;
            req.sku[0] = '\0';
            break;
        case 1:
            req.partition = SH_PARTITIONS_PER_SKU_MAX;
            break;
        case 2:
            req.limit = 0;
            break;
        case 3:
            req.limit = SH_WIRE_DETAILS_PAGE_MAX + 1;
            break;
        }
        if (sh_wire_sync_details_req_encode(buf, sizeof buf, &len, 1, &req) != SH_EINVAL) {
            fail_msg("encoder accepted %s", qcases[c].what);
        }
    }
    /* The decoder refuses the same limits, patched into a valid request (limit is last). */
    make_sync_details_req(&req);
    assert_int_equal(sh_wire_sync_details_req_encode(buf, sizeof buf, &len, 1, &req), SH_OK);
    static const uint32_t limits[] = {0, SH_WIRE_DETAILS_PAGE_MAX + 1, UINT32_MAX};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        uint8_t *p = dup_exact(buf, len);
        patch_le(p, len - 4, limits[i], 4);
        assert_int_equal(decode_any(10, p, len, 1), SH_EINVAL);
        free(p);
    }
    uint8_t *p = dup_exact(buf, len);
    patch_le(p, len - 4 - 8 - 2, SH_PARTITIONS_PER_SKU_MAX, 2);
    assert_int_equal(decode_any(10, p, len, 1), SH_EINVAL);
    free(p);

    sh_wire_sync_details_rep rep;
    sh_wire_detail d[N_DETAILS];
    static const struct {
        int field;
        const char *what;
    } cases[] = {{0, "seq 0"},         {1, "seq repeated"},     {2, "seqs going down"},
                 {3, "qty 0"},         {4, "sub_domain 2"},     {5, "empty order id"},
                 {6, "error records"}, {7, "status past last"}, {8, "qty past max"}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        make_sync_details_rep(&rep, d);
        switch (cases[c].field) {
        case 0:
            d[0].seq = 0;
            break;
        case 1:
            d[1].seq = d[0].seq;
            break;
        case 2:
            d[2].seq = 3;
            break;
        case 3:
            d[1].qty = 0;
            break;
        case 4:
            d[2].sub_domain = 2;
            break;
        case 5:
            d[1].order_id_len = 0;
            d[1].order_id[0] = '\0';
            break;
        case 6:
            rep.status = SH_EMYSQL;
            break;
        case 7:
            rep.status = SH_ERR_COUNT_;
            break;
        case 8:
            d[0].qty = -SH_QTY_UNITS_MAX - 1;
            break;
        }
        if (sh_wire_sync_details_rep_encode(buf, sizeof buf, &len, 1, &rep, d, N_DETAILS) !=
            SH_EINVAL) {
            fail_msg("encoder accepted %s", cases[c].what);
        }
    }
    /* Patched into a valid reply. Layout: header, status u8, message (u8 length
     * + bytes), synced_seq u64, then records whose first field is the u64 seq. */
    make_sync_details_rep(&rep, d);
    assert_int_equal(sh_wire_sync_details_rep_encode(buf, sizeof buf, &len, 1, &rep, d, N_DETAILS),
                     SH_OK);
    size_t rec0 = SH_WIRE_HEADER_BYTES + 1 + 1 + rep.message_len + 8;
    size_t rec1 = rec0 + 8 + 8 + 4 + 1 + 1 + d[0].order_id_len + 1 + d[0].user_id_len;
    struct {
        size_t off;
        uint64_t v;
        size_t bytes;
    } patches[] = {
        {rec0, 0, 8},                            /* seq 0 */
        {rec1, 1, 8},                            /* seq repeated */
        {rec1 + 8 + 8, 0, 4},                    /* qty 0 */
        {rec1 + 8 + 8 + 4, 2, 1},                /* sub_domain 2 */
        {SH_WIRE_HEADER_BYTES, SH_EMYSQL, 1},    /* records with an error */
        {SH_WIRE_HEADER_BYTES, SH_ERR_COUNT_, 1} /* status past the last */
    };
    for (size_t i = 0; i < sizeof patches / sizeof patches[0]; i++) {
        p = dup_exact(buf, len);
        patch_le(p, patches[i].off, patches[i].v, patches[i].bytes);
        if (decode_any(11, p, len, N_DETAILS) != SH_EINVAL) {
            fail_msg("decoder accepted patch %zu", i);
        }
        free(p);
    }
    p = dup_exact(buf, len); /* unpatched: the offsets above hit the intended fields */
    assert_int_equal(decode_any(11, p, len, N_DETAILS), SH_OK);
    free(p);

    /* A full page encodes, fits and decodes; one past it is refused. */
    size_t cap = SH_WIRE_MSG_BYTES_MAX;
    uint8_t *big = malloc(cap);
    sh_wire_detail *page = calloc(SH_WIRE_DETAILS_PAGE_MAX + 1, sizeof *page);
    assert_non_null(big);
    assert_non_null(page);
    for (size_t i = 0; i <= SH_WIRE_DETAILS_PAGE_MAX; i++) {
        page[i] = d[1];
        SET_MAX(page[i].order_id, 2);
        page[i].seq = 1 + 2 * i;
    }
    assert_int_equal(sh_wire_sync_details_rep_size(&rep, page, SH_WIRE_DETAILS_PAGE_MAX + 1), 0);
    assert_int_equal(sh_wire_sync_details_rep_encode(big, cap, &len, 1, &rep, page,
                                                     SH_WIRE_DETAILS_PAGE_MAX + 1),
                     SH_ELIMIT);
    assert_int_equal(
        sh_wire_sync_details_rep_encode(big, cap, &len, 1, &rep, page, SH_WIRE_DETAILS_PAGE_MAX),
        SH_OK);
    sh_wire_header hdr;
    assert_int_equal(
        sh_wire_sync_details_rep_decode(big, len, &hdr, &rep, page, SH_WIRE_DETAILS_PAGE_MAX),
        SH_OK);
    assert_int_equal(hdr.count, SH_WIRE_DETAILS_PAGE_MAX);
    assert_true(page[SH_WIRE_DETAILS_PAGE_MAX - 1].seq == 2 * SH_WIRE_DETAILS_PAGE_MAX - 1);
    free(page);
    free(big);
}

/* The byte layout is the contract with other builds: pin it down. */
static void test_golden_bytes(void **state)
{
    (void)state;
    sh_wire_item it;
    memset(&it, 0, sizeof it);
    it.tag = 0x0102030405060708ull;
    it.qty = 5;
    it.per_user_limit = 1000000;
    it.partition = 0x00FE;
    it.from_partition = 0x0003;
    it.claim_version = 0x0A0B0C0D;
    it.flags = SH_WIRE_ITEM_F_FORCE_PARTITION;
    SET_STR(it.sku, "AB");
    SET_STR(it.order_id, "o1");
    SET_STR(it.user_id, "u");
    static const uint8_t want[] = {
        0x03, 0x01, 0x01, 0x00, 0x21, 0x00, 0x00, 0x00,             /* v, type, count, len */
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,             /* req_id */
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,             /* tag */
        0x05, 0x00, 0x00, 0x00, 0x40, 0x42, 0x0F, 0x00, 0xFE, 0x00, /* qty .. partition */
        0x03, 0x00, 0x0D, 0x0C, 0x0B, 0x0A, 0x01, /* from_partition, claim_version, flags */
        0x02, 'A',  'B',  0x02, 'o',  '1',  0x01, 'u'};
    uint8_t buf[64];
    size_t len = 0;
    assert_int_equal(sh_wire_items_encode(buf, sizeof buf, &len, SH_WIRE_DEDUCT_REQ,
                                          0x1122334455667788ull, &it, 1),
                     SH_OK);
    assert_int_equal(len, sizeof want);
    assert_memory_equal(buf, want, sizeof want);

    sh_wire_sync_state_req sreq;
    memset(&sreq, 0, sizeof sreq);
    SET_STR(sreq.sku, "AB");
    static const uint8_t want_req[] = {
        0x03, 0x0B, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, /* v, type 11, count 1, len 3 */
        0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* req_id */
        0x02, 'A',  'B'};
    assert_int_equal(sh_wire_sync_state_req_encode(buf, sizeof buf, &len, 2, &sreq), SH_OK);
    assert_int_equal(len, sizeof want_req);
    assert_memory_equal(buf, want_req, sizeof want_req);

    sh_wire_sync_state_rep srep;
    memset(&srep, 0, sizeof srep);
    SET_STR(srep.message, "m");
    SET_STR(srep.dup_order, "o");
    srep.dup_orders = 2;
    sh_wire_sync_part sp = {.partition = 0x00FE,
                            .synced_seq = 3,
                            .deducted = -1,
                            .detail_rows = 3,
                            .rows_counted = 3,
                            .qty_counted = 2,
                            .max_seq = 3,
                            .chk = 0x0102030405060708ull};
    static const uint8_t want_rep[] = {
        0x03, 0x0C, 0x01, 0x00, 0x47, 0x00, 0x00, 0x00,  /* v, type 12, count 1, len 71 */
        0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  /* req_id */
        0x00, 0x01, 'm',                                 /* status, message */
        0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  /* dup_orders */
        0x01, 'o',                                       /* dup_order */
        0xFE, 0x00,                                      /* partition */
        0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  /* synced_seq */
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,  /* deducted */
        0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  /* detail_rows */
        0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  /* rows_counted */
        0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  /* qty_counted */
        0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  /* max_seq */
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01}; /* chk */
    uint8_t big[128];
    assert_int_equal(sh_wire_sync_state_rep_encode(big, sizeof big, &len, 3, &srep, &sp, 1), SH_OK);
    assert_int_equal(len, sizeof want_rep);
    assert_memory_equal(big, want_rep, sizeof want_rep);

    /* The answer to MIGRATE: versions before and after, no record. */
    sh_wire_catalog_rep crep;
    memset(&crep, 0, sizeof crep);
    crep.applied = 1;
    crep.schema_before = 1;
    crep.schema_after = 0x0102;
    SET_STR(crep.message, "m");
    static const uint8_t want_cat[] = {
        0x03, 0x08, 0x00, 0x00, 0x0C, 0x00, 0x00, 0x00, /* v, type 8, count 0, len 12 */
        0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* req_id */
        0x00, 0x01,                                     /* status, applied */
        0x01, 0x00, 0x00, 0x00, 0x02, 0x01, 0x00, 0x00, /* schema_before, schema_after */
        0x01, 'm'};
    assert_int_equal(sh_wire_catalog_rep_encode(big, sizeof big, &len, 4, &crep, NULL, 0), SH_OK);
    assert_int_equal(len, sizeof want_cat);
    assert_memory_equal(big, want_cat, sizeof want_cat);

    sh_wire_sync_details_req dreq;
    memset(&dreq, 0, sizeof dreq);
    SET_STR(dreq.sku, "AB");
    dreq.partition = 0x00FE;
    dreq.after_seq = 5;
    dreq.limit = 1000;
    static const uint8_t want_dreq[] = {
        0x03, 0x0D, 0x01, 0x00, 0x11, 0x00, 0x00, 0x00, /* v, type 13, count 1, len 17 */
        0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* req_id */
        0x02, 'A',  'B',  0xFE, 0x00,                   /* sku, partition */
        0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* after_seq */
        0xE8, 0x03, 0x00, 0x00};                        /* limit */
    assert_int_equal(sh_wire_sync_details_req_encode(big, sizeof big, &len, 5, &dreq), SH_OK);
    assert_int_equal(len, sizeof want_dreq);
    assert_memory_equal(big, want_dreq, sizeof want_dreq);

    sh_wire_sync_details_rep drep;
    memset(&drep, 0, sizeof drep);
    drep.synced_seq = 6;
    sh_wire_detail dd;
    memset(&dd, 0, sizeof dd);
    dd.seq = 6;
    dd.created_ms = 1;
    dd.qty = -2;
    dd.sub_domain = 1;
    SET_STR(dd.order_id, "o");
    SET_STR(dd.user_id, "u");
    static const uint8_t want_drep[] = {
        0x03, 0x0E, 0x01, 0x00, 0x23, 0x00, 0x00, 0x00, /* v, type 14, count 1, len 35 */
        0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* req_id */
        0x00, 0x00,                                     /* status, message "" */
        0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* synced_seq */
        0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* seq */
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* created_ms */
        0xFE, 0xFF, 0xFF, 0xFF, 0x01,                   /* qty, sub_domain */
        0x01, 'o',  0x01, 'u'};
    assert_int_equal(sh_wire_sync_details_rep_encode(big, sizeof big, &len, 6, &drep, &dd, 1),
                     SH_OK);
    assert_int_equal(len, sizeof want_drep);
    assert_memory_equal(big, want_drep, sizeof want_drep);
}

/* Full messages at every count limit encode, fit one NNG message and decode. */
static void test_full_messages(void **state)
{
    (void)state;
    size_t cap = SH_WIRE_MSG_BYTES_MAX, len = 0;
    uint8_t *buf = malloc(cap);
    sh_wire_item *items = calloc(SH_WIRE_ITEMS_MAX, sizeof *items);
    assert_non_null(buf);
    assert_non_null(items);
    sh_wire_item three[N_ITEMS];
    make_items(three, SH_WIRE_DEDUCT_REQ);
    for (size_t i = 0; i < SH_WIRE_ITEMS_MAX; i++) {
        items[i] = three[0]; /* every string at its maximum length */
        items[i].tag = i;
    }
    assert_int_equal(
        sh_wire_items_encode(buf, cap, &len, SH_WIRE_DEDUCT_REQ, 1, items, SH_WIRE_ITEMS_MAX),
        SH_OK);
    assert_true(len <= SH_WIRE_MSG_BYTES_MAX);
    assert_int_equal(sh_wire_items_decode(buf, len, &(sh_wire_header){0}, items, SH_WIRE_ITEMS_MAX),
                     SH_OK);
    assert_int_equal(items[SH_WIRE_ITEMS_MAX - 1].tag, SH_WIRE_ITEMS_MAX - 1);
    free(items);

    sh_wire_batch b;
    sh_wire_detail d3[N_DETAILS];
    make_batch(&b, d3);
    sh_wire_detail *d = calloc(SH_WIRE_DETAILS_MAX, sizeof *d);
    assert_non_null(d);
    b.first_seq = 1;
    b.last_seq = SH_WIRE_DETAILS_MAX;
    for (size_t i = 0; i < SH_WIRE_DETAILS_MAX; i++) {
        d[i] = d3[1];
        SET_MAX(d[i].order_id, 1);
        d[i].seq = 1 + i;
    }
    assert_int_equal(sh_wire_batch_encode(buf, cap, &len, 2, &b, d, SH_WIRE_DETAILS_MAX), SH_OK);
    assert_true(len <= SH_WIRE_MSG_BYTES_MAX);
    sh_wire_header hdr;
    assert_int_equal(sh_wire_batch_decode(buf, len, &hdr, &b, d, SH_WIRE_DETAILS_MAX), SH_OK);
    assert_int_equal(hdr.count, SH_WIRE_DETAILS_MAX);
    assert_int_equal(d[SH_WIRE_DETAILS_MAX - 1].seq, SH_WIRE_DETAILS_MAX);
    free(d);

    sh_wire_sync_state_rep srep;
    sh_wire_sync_part four[N_SYNC_PARTS];
    make_sync_state_rep(&srep, four);
    sh_wire_sync_part *sp = calloc(SH_PARTITIONS_PER_SKU_MAX, sizeof *sp);
    assert_non_null(sp);
    for (size_t i = 0; i < SH_PARTITIONS_PER_SKU_MAX; i++) {
        sp[i] = four[3];
        sp[i].partition = (uint16_t)i;
    }
    assert_int_equal(
        sh_wire_sync_state_rep_encode(buf, cap, &len, 3, &srep, sp, SH_PARTITIONS_PER_SKU_MAX),
        SH_OK);
    assert_true(len <= SH_WIRE_MSG_BYTES_MAX);
    assert_int_equal(
        sh_wire_sync_state_rep_decode(buf, len, &hdr, &srep, sp, SH_PARTITIONS_PER_SKU_MAX), SH_OK);
    assert_int_equal(hdr.count, SH_PARTITIONS_PER_SKU_MAX);
    assert_int_equal(sp[SH_PARTITIONS_PER_SKU_MAX - 1].partition, SH_PARTITIONS_PER_SKU_MAX - 1);
    free(sp);
    free(buf);
}

/* ---- malformed input ---------------------------------------------------------- */

/* Every prefix of every valid message fails with SH_ETRUNC, both as is (body_len
 * then points past the buffer) and with body_len patched to match (the body then
 * ends before the records it announces). */
static void test_truncated_prefixes(void **state)
{
    (void)state;
    for (int kind = 0; kind < N_KINDS; kind++) {
        size_t len = 0;
        uint8_t *full = make_msg(kind, &len);
        int dec = decoder_of_kind(kind);
        assert_int_equal(decode_any(dec, full, len, 16), SH_OK);
        for (size_t cut = 0; cut < len; cut++) {
            uint8_t *p = dup_exact(full, cut);
            assert_int_equal(decode_any(dec, p, cut, 16), SH_ETRUNC);
            for (int other = 0; other < N_DECODERS; other++) {
                assert_int_not_equal(decode_any(other, p, cut, 16), SH_OK);
            }
            if (cut >= SH_WIRE_HEADER_BYTES) {
                patch_le(p, 4, cut - SH_WIRE_HEADER_BYTES, 4);
                assert_int_equal(decode_any(dec, p, cut, 16), SH_ETRUNC);
            }
            free(p);
        }
        free(full);
    }
}

static void test_wrong_version(void **state)
{
    (void)state;
    static const uint8_t versions[] = {0, SH_WIRE_VERSION - 1, SH_WIRE_VERSION + 1, 255};
    for (int kind = 0; kind < N_KINDS; kind++) {
        size_t len = 0;
        uint8_t *msg = make_msg(kind, &len);
        for (size_t v = 0; v < sizeof versions; v++) {
            msg[0] = versions[v];
            sh_wire_header hdr;
            assert_int_equal(sh_wire_header_decode(msg, len, &hdr), SH_EVERSION);
            assert_int_equal(decode_any(decoder_of_kind(kind), msg, len, 16), SH_EVERSION);
        }
        free(msg);
    }
}

static void test_unknown_type(void **state)
{
    (void)state;
    static const uint8_t types[] = {0, SH_WIRE_SYNC_DETAILS_REP + 1, 255};
    size_t len = 0;
    uint8_t *msg = make_msg(0, &len);
    for (size_t t = 0; t < sizeof types; t++) {
        msg[1] = types[t];
        sh_wire_header hdr;
        assert_int_equal(sh_wire_header_decode(msg, len, &hdr), SH_ETYPE);
        for (int dec = 0; dec < N_DECODERS; dec++) {
            assert_int_equal(decode_any(dec, msg, len, 16), SH_ETYPE);
        }
    }
    free(msg);
    assert_string_equal(sh_wire_type_name(0), "UNKNOWN");
    assert_string_equal(sh_wire_type_name(SH_WIRE_SYNC_DETAILS_REP + 1), "UNKNOWN");
    assert_string_equal(sh_wire_type_name(-1), "UNKNOWN");
}

/* A decoder given a known type that is not its own refuses it as a protocol error. */
static void test_wrong_decoder(void **state)
{
    (void)state;
    for (int kind = 0; kind < N_KINDS; kind++) {
        size_t len = 0;
        uint8_t *msg = make_msg(kind, &len);
        for (int dec = 0; dec < N_DECODERS; dec++) {
            sh_err want = dec == decoder_of_kind(kind) ? SH_OK : SH_EPROTO;
            assert_int_equal(decode_any(dec, msg, len, 16), want);
        }
        free(msg);
    }
}

static void test_body_len_mismatch(void **state)
{
    (void)state;
    size_t len = 0;
    uint8_t *msg = make_msg(4, &len); /* DETAIL_BATCH */
    sh_wire_header hdr;
    /* body_len past the buffer */
    patch_le(msg, 4, len - SH_WIRE_HEADER_BYTES + 1, 4);
    assert_int_equal(sh_wire_header_decode(msg, len, &hdr), SH_ETRUNC);
    patch_le(msg, 4, UINT32_MAX, 4);
    assert_int_equal(sh_wire_header_decode(msg, len, &hdr), SH_ETRUNC);
    assert_int_equal(decode_any(2, msg, len, 16), SH_ETRUNC);
    /* body_len short of the buffer: trailing bytes */
    patch_le(msg, 4, len - SH_WIRE_HEADER_BYTES - 1, 4);
    assert_int_equal(sh_wire_header_decode(msg, len, &hdr), SH_EINVAL);
    assert_int_equal(decode_any(2, msg, len, 16), SH_EINVAL);
    free(msg);

    /* Trailing bytes inside the announced body, after the last record. */
    for (int kind = 0; kind < N_KINDS; kind++) {
        uint8_t *good = make_msg(kind, &len);
        uint8_t *longer = malloc(len + 3);
        assert_non_null(longer);
        memcpy(longer, good, len);
        memset(longer + len, 0, 3);
        patch_le(longer, 4, len + 3 - SH_WIRE_HEADER_BYTES, 4);
        assert_int_equal(sh_wire_header_decode(longer, len + 3, &hdr), SH_OK);
        assert_int_equal(decode_any(decoder_of_kind(kind), longer, len + 3, 16), SH_EINVAL);
        free(longer);
        free(good);
    }

    /* A buffer past the largest NNG message. */
    size_t big = (size_t)SH_WIRE_MSG_BYTES_MAX + 1;
    uint8_t *huge = calloc(big, 1);
    assert_non_null(huge);
    huge[0] = SH_WIRE_VERSION;
    huge[1] = SH_WIRE_DEDUCT_REP;
    patch_le(huge, 4, big - SH_WIRE_HEADER_BYTES, 4);
    assert_int_equal(sh_wire_header_decode(huge, big, &hdr), SH_ELIMIT);
    free(huge);
}

static void test_count_past_type_limit(void **state)
{
    (void)state;
    static const struct {
        uint8_t type;
        uint32_t max;
    } limits[] = {
        {SH_WIRE_DEDUCT_REQ, SH_WIRE_ITEMS_MAX},
        {SH_WIRE_DEDUCT_REP, SH_WIRE_ITEMS_MAX},
        {SH_WIRE_RELEASE_REQ, SH_WIRE_ITEMS_MAX},
        {SH_WIRE_RELEASE_REP, SH_WIRE_ITEMS_MAX},
        {SH_WIRE_DETAIL_BATCH, SH_WIRE_DETAILS_MAX},
        {SH_WIRE_BATCH_ACK, 1},
        {SH_WIRE_CATALOG_REQ, 1},
        {SH_WIRE_CATALOG_REP, SH_SKUS_MAX},
        {SH_WIRE_PARTOP_REQ, SH_WIRE_PARTOPS_MAX},
        {SH_WIRE_PARTOP_REP, SH_WIRE_PARTOPS_MAX},
        {SH_WIRE_SYNC_STATE_REQ, 1},
        {SH_WIRE_SYNC_STATE_REP, SH_PARTITIONS_PER_SKU_MAX},
        {SH_WIRE_SYNC_DETAILS_REQ, 1},
        {SH_WIRE_SYNC_DETAILS_REP, SH_WIRE_DETAILS_PAGE_MAX},
    };
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        raw_msg m;
        sh_wire_header hdr;
        raw_header(&m, SH_WIRE_VERSION, limits[i].type, (uint16_t)(limits[i].max + 1), 1);
        raw_seal(&m);
        assert_int_equal(sh_wire_header_decode(m.buf, m.len, &hdr), SH_ELIMIT);
        raw_header(&m, SH_WIRE_VERSION, limits[i].type, UINT16_MAX, 1);
        raw_seal(&m);
        assert_int_equal(sh_wire_header_decode(m.buf, m.len, &hdr), SH_ELIMIT);
        /* At the limit the header passes; the empty body then ends early. */
        raw_header(&m, SH_WIRE_VERSION, limits[i].type, (uint16_t)limits[i].max, 1);
        raw_seal(&m);
        assert_int_equal(sh_wire_header_decode(m.buf, m.len, &hdr), SH_OK);
        assert_int_equal(hdr.count, limits[i].max);
    }
    /* Below a type's minimum: requests carry at least one item, acks exactly one. */
    static const uint8_t need_one[] = {
        SH_WIRE_DEDUCT_REQ, SH_WIRE_RELEASE_REQ,    SH_WIRE_BATCH_ACK,       SH_WIRE_CATALOG_REQ,
        SH_WIRE_PARTOP_REQ, SH_WIRE_SYNC_STATE_REQ, SH_WIRE_SYNC_DETAILS_REQ};
    for (size_t i = 0; i < sizeof need_one; i++) {
        raw_msg m;
        sh_wire_header hdr;
        raw_header(&m, SH_WIRE_VERSION, need_one[i], 0, 1);
        raw_seal(&m);
        assert_int_equal(sh_wire_header_decode(m.buf, m.len, &hdr), SH_EINVAL);
    }
}

static void test_count_past_cap(void **state)
{
    (void)state;
    static const size_t counts[N_KINDS] = {
        N_ITEMS, N_ITEMS,   N_ITEMS,   N_ITEMS, N_DETAILS,    1, 1,
        N_SKUS,  N_PARTOPS, N_PARTOPS, 1,       N_SYNC_PARTS, 1, N_DETAILS};
    for (int kind = 0; kind < N_KINDS; kind++) {
        size_t len = 0;
        uint8_t *msg = make_msg(kind, &len);
        int dec = decoder_of_kind(kind);
        size_t n = counts[kind];
        if (dec == 3 || dec == 4 || dec == 8 || dec == 10) { /* single records take no cap */
            free(msg);
            continue;
        }
        assert_int_equal(decode_any(dec, msg, len, n), SH_OK);
        assert_int_equal(decode_any(dec, msg, len, n - 1), SH_ELIMIT);
        assert_int_equal(decode_any(dec, msg, len, 0), SH_ELIMIT);
        free(msg);
    }
}

static void test_string_past_max(void **state)
{
    (void)state;
    raw_msg m;
    sh_wire_header hdr;
    sh_wire_item it[1];
    const char *s65 = long_str(SH_SKU_ID_CHARS_MAX + 1, 0);

    /* sku of max + 1 characters, all present */
    raw_header(&m, SH_WIRE_VERSION, SH_WIRE_DEDUCT_REQ, 1, 1);
    raw_le(&m, 1, 8);
    raw_le(&m, 1, 4);
    raw_le(&m, 0, 4);
    raw_le(&m, 0, 2);
    raw_le(&m, 0, 2);
    raw_le(&m, 0, 4);
    raw_le(&m, 0, 1);
    raw_str(&m, s65, SH_SKU_ID_CHARS_MAX + 1);
    raw_str(&m, "o", 1);
    raw_str(&m, "u", 1);
    raw_seal(&m);
    uint8_t *p = dup_exact(m.buf, m.len);
    assert_int_equal(sh_wire_items_decode(p, m.len, &hdr, it, 1), SH_EINVAL);
    free(p);

    /* The same message with a max-length sku decodes: the bound is exact. */
    raw_header(&m, SH_WIRE_VERSION, SH_WIRE_DEDUCT_REQ, 1, 1);
    raw_le(&m, 1, 8);
    raw_le(&m, 1, 4);
    raw_le(&m, 0, 4);
    raw_le(&m, 0, 2);
    raw_le(&m, 0, 2);
    raw_le(&m, 0, 4);
    raw_le(&m, 0, 1);
    raw_str(&m, s65, SH_SKU_ID_CHARS_MAX);
    raw_str(&m, "o", 1);
    raw_str(&m, "u", 1);
    raw_seal(&m);
    p = dup_exact(m.buf, m.len);
    assert_int_equal(sh_wire_items_decode(p, m.len, &hdr, it, 1), SH_OK);
    assert_int_equal(it[0].sku_len, SH_SKU_ID_CHARS_MAX);
    free(p);

    /* An ack message of 201 characters. */
    const char *s201 = long_str(SH_MESSAGE_CHARS_MAX + 1, 3);
    raw_header(&m, SH_WIRE_VERSION, SH_WIRE_BATCH_ACK, 1, 1);
    raw_le(&m, SH_OK, 1);
    raw_str(&m, "sku", 3);
    raw_le(&m, 0, 2);
    raw_le(&m, 10, 8);
    raw_str(&m, s201, SH_MESSAGE_CHARS_MAX + 1);
    raw_seal(&m);
    p = dup_exact(m.buf, m.len);
    assert_int_equal(decode_any(3, p, m.len, 1), SH_EINVAL);
    free(p);

    /* A NUL byte inside a string would make strlen and len disagree. */
    raw_header(&m, SH_WIRE_VERSION, SH_WIRE_DEDUCT_REQ, 1, 1);
    raw_le(&m, 1, 8);
    raw_le(&m, 1, 4);
    raw_le(&m, 0, 4);
    raw_le(&m, 0, 2);
    raw_le(&m, 0, 2);
    raw_le(&m, 0, 4);
    raw_le(&m, 0, 1);
    raw_str(&m, "a\0b", 3);
    raw_str(&m, "o", 1);
    raw_str(&m, "u", 1);
    raw_seal(&m);
    p = dup_exact(m.buf, m.len);
    assert_int_equal(sh_wire_items_decode(p, m.len, &hdr, it, 1), SH_EINVAL);
    free(p);

    /* An empty sku and an empty deduct user are below their minimum. */
    sh_wire_item good[N_ITEMS];
    make_items(good, SH_WIRE_DEDUCT_REQ);
    uint8_t buf[1024];
    size_t len;
    good[1].user_id_len = 0;
    good[1].user_id[0] = '\0';
    assert_int_equal(
        sh_wire_items_encode(buf, sizeof buf, &len, SH_WIRE_DEDUCT_REQ, 1, good, N_ITEMS),
        SH_EINVAL);
    assert_int_equal(
        sh_wire_items_encode(buf, sizeof buf, &len, SH_WIRE_RELEASE_REQ, 1, good, N_ITEMS), SH_OK);
}

/* Builds a DETAIL_BATCH by hand: head (sku "s", partition 0, first, last) and n
 * details with the given seqs. */
static void raw_batch(raw_msg *m, uint16_t count, uint64_t first, uint64_t last,
                      const uint64_t *seqs, size_t n)
{
    raw_header(m, SH_WIRE_VERSION, SH_WIRE_DETAIL_BATCH, count, 1);
    raw_str(m, "s", 1);
    raw_le(m, 0, 2);
    raw_le(m, first, 8);
    raw_le(m, last, 8);
    for (size_t i = 0; i < n; i++) {
        raw_le(m, seqs[i], 8);
        raw_le(m, 1000, 8);
        raw_le(m, 1, 4);
        raw_le(m, 0, 1);
        raw_str(m, "o", 1);
        raw_str(m, "", 0);
    }
    raw_seal(m);
}

static sh_err decode_raw_batch(const raw_msg *m)
{
    uint8_t *p = dup_exact(m->buf, m->len);
    sh_err rc = decode_any(2, p, m->len, 8);
    free(p);
    return rc;
}

static void test_batch_count_mismatch(void **state)
{
    (void)state;
    static const uint64_t seqs[] = {10, 11, 12};
    raw_msg m;
    raw_batch(&m, 3, 10, 12, seqs, 3);
    assert_int_equal(decode_raw_batch(&m), SH_OK);
    raw_batch(&m, 3, 10, 13, seqs, 3); /* range of 4, count 3 */
    assert_int_equal(decode_raw_batch(&m), SH_EINVAL);
    raw_batch(&m, 3, 10, 11, seqs, 3); /* range of 2, count 3 */
    assert_int_equal(decode_raw_batch(&m), SH_EINVAL);
    raw_batch(&m, 3, 12, 10, seqs, 3); /* reversed */
    assert_int_equal(decode_raw_batch(&m), SH_EINVAL);
    raw_batch(&m, 0, 5, 5, NULL, 0); /* a query must carry 0..0 */
    assert_int_equal(decode_raw_batch(&m), SH_EINVAL);
    raw_batch(&m, 1, 0, 0, (const uint64_t[]){0}, 1); /* seqs start at 1 */
    assert_int_equal(decode_raw_batch(&m), SH_EINVAL);
    raw_batch(&m, 2, UINT64_MAX, 0, (const uint64_t[]){UINT64_MAX, 0}, 2); /* wraps */
    assert_int_equal(decode_raw_batch(&m), SH_EINVAL);

    /* The encoder refuses the same facts. */
    sh_wire_batch b;
    sh_wire_detail d[N_DETAILS];
    make_batch(&b, d);
    uint8_t buf[2048];
    size_t len;
    b.last_seq = b.first_seq + 3;
    assert_int_equal(sh_wire_batch_encode(buf, sizeof buf, &len, 1, &b, d, N_DETAILS), SH_EINVAL);
}

static void test_batch_seq_gap(void **state)
{
    (void)state;
    raw_msg m;
    raw_batch(&m, 3, 10, 12, (const uint64_t[]){10, 12, 12}, 3);
    assert_int_equal(decode_raw_batch(&m), SH_EINVAL);
    raw_batch(&m, 3, 10, 12, (const uint64_t[]){10, 11, 11}, 3);
    assert_int_equal(decode_raw_batch(&m), SH_EINVAL);
    raw_batch(&m, 3, 10, 12, (const uint64_t[]){11, 12, 13}, 3);
    assert_int_equal(decode_raw_batch(&m), SH_EINVAL);

    sh_wire_batch b;
    sh_wire_detail d[N_DETAILS];
    make_batch(&b, d);
    uint8_t buf[2048];
    size_t len;
    d[2].seq = d[1].seq;
    assert_int_equal(sh_wire_batch_encode(buf, sizeof buf, &len, 1, &b, d, N_DETAILS), SH_EINVAL);
    make_batch(&b, d);
    d[1].qty = 0; /* a detail moves stock */
    assert_int_equal(sh_wire_batch_encode(buf, sizeof buf, &len, 1, &b, d, N_DETAILS), SH_EINVAL);
    make_batch(&b, d);
    d[1].sub_domain = 2;
    assert_int_equal(sh_wire_batch_encode(buf, sizeof buf, &len, 1, &b, d, N_DETAILS), SH_EINVAL);
}

/* Offsets inside a results message: status, flags and active of result 0. */
#define RES0_STATUS_OFF (SH_WIRE_HEADER_BYTES + 8 + 8 + 8 + 8 + 4 + 2 + 4)

static void test_enum_out_of_range(void **state)
{
    (void)state;
    size_t len = 0;
    uint8_t *msg = make_msg(1, &len); /* DEDUCT_REP */
    assert_int_equal(decode_any(1, msg, len, 8), SH_OK);
    msg[RES0_STATUS_OFF] = SH_WIRE_OUT_LAST_ + 1;
    assert_int_equal(decode_any(1, msg, len, 8), SH_EINVAL);
    msg[RES0_STATUS_OFF] = 255;
    assert_int_equal(decode_any(1, msg, len, 8), SH_EINVAL);
    msg[RES0_STATUS_OFF] = SH_WIRE_OUT_LAST_;
    assert_int_equal(decode_any(1, msg, len, 8), SH_OK);
    /* Every bit of a result's flags is defined now: all of them decode. */
    _Static_assert(SH_WIRE_RES_F_ALL_ == 0xff, "result flags use every bit");
    msg[RES0_STATUS_OFF + 1] = SH_WIRE_RES_F_ALL_;
    assert_int_equal(decode_any(1, msg, len, 8), SH_OK);
    msg[RES0_STATUS_OFF + 1] = 0;
    msg[RES0_STATUS_OFF + 2] = 2; /* active */
    assert_int_equal(decode_any(1, msg, len, 8), SH_EINVAL);
    free(msg);

    /* An ack status past the last sh_err. */
    msg = make_msg(5, &len);
    msg[SH_WIRE_HEADER_BYTES] = SH_ERR_COUNT_;
    assert_int_equal(decode_any(3, msg, len, 1), SH_EINVAL);
    msg[SH_WIRE_HEADER_BYTES] = SH_ERR_COUNT_ - 1;
    assert_int_equal(decode_any(3, msg, len, 1), SH_OK);
    free(msg);

    /* A catalog op and a partop op past their last value. */
    msg = make_msg(6, &len);
    msg[SH_WIRE_HEADER_BYTES] = SH_WIRE_CAT_MIGRATE + 1;
    assert_int_equal(decode_any(4, msg, len, 1), SH_EINVAL);
    msg[SH_WIRE_HEADER_BYTES] = 0;
    assert_int_equal(decode_any(4, msg, len, 1), SH_EINVAL);
    free(msg);

    /* A catalog reply's schema versions, as bytes: status, applied, before, after (LE). */
    msg = make_msg(SH_WIRE_CATALOG_REP - 1, &len);
    size_t vb = SH_WIRE_HEADER_BYTES + 2;
    assert_int_equal(decode_any(5, msg, len, N_SKUS), SH_OK);
    msg[vb + 7] = 0x80; /* after = 2^31 + ...: past an INT */
    assert_int_equal(decode_any(5, msg, len, N_SKUS), SH_EINVAL);
    memset(msg + vb + 4, 0, 4); /* after = 0 < before = 1 with status OK */
    assert_int_equal(decode_any(5, msg, len, N_SKUS), SH_EINVAL);
    msg[SH_WIRE_HEADER_BYTES] = SH_ERANGE; /* the same versions in a refusal */
    assert_int_equal(decode_any(5, msg, len, N_SKUS), SH_OK);
    msg[vb + 3] = 0x80; /* before past an INT */
    assert_int_equal(decode_any(5, msg, len, N_SKUS), SH_EINVAL);
    free(msg);
    msg = make_msg(8, &len);
    msg[SH_WIRE_HEADER_BYTES] = SH_WIRE_PARTOP_INIT + 1;
    assert_int_equal(decode_any(6, msg, len, 16), SH_EINVAL);
    msg[SH_WIRE_HEADER_BYTES] = SH_WIRE_PARTOP_GRANT;
    msg[SH_WIRE_HEADER_BYTES + 1] = 2; /* sub_domain */
    assert_int_equal(decode_any(6, msg, len, 16), SH_EINVAL);
    free(msg);

    assert_string_equal(sh_wire_outcome_name(SH_WIRE_OUT_SOLD_OUT), "SOLD_OUT");
    assert_string_equal(sh_wire_outcome_name(SH_WIRE_OUT_ERROR), "ERROR");
    assert_string_equal(sh_wire_outcome_name(SH_WIRE_OUT_RELEASED), "RELEASED");
    assert_string_equal(sh_wire_outcome_name(SH_WIRE_OUT_LAST_ + 1), "UNKNOWN");
    assert_string_equal(sh_wire_outcome_name(-1), "UNKNOWN");
    assert_string_equal(sh_wire_type_name(SH_WIRE_PARTOP_REP), "PARTOP_REP");
    assert_string_equal(sh_wire_type_name(SH_WIRE_DEDUCT_REQ), "DEDUCT_REQ");
}

/* Field bounds other than strings and enums, refused on both sides. */
static void test_field_bounds(void **state)
{
    (void)state;
    uint8_t buf[4096];
    size_t len;
    sh_wire_item it[N_ITEMS];

    make_items(it, SH_WIRE_DEDUCT_REQ);
    it[1].qty = 0; /* a deduction takes at least one unit */
    assert_int_equal(
        sh_wire_items_encode(buf, sizeof buf, &len, SH_WIRE_DEDUCT_REQ, 1, it, N_ITEMS), SH_EINVAL);
    make_items(it, SH_WIRE_DEDUCT_REQ);
    it[1].qty = SH_QTY_UNITS_MAX + 1;
    assert_int_equal(
        sh_wire_items_encode(buf, sizeof buf, &len, SH_WIRE_DEDUCT_REQ, 1, it, N_ITEMS), SH_EINVAL);
    make_items(it, SH_WIRE_DEDUCT_REQ);
    it[1].partition = SH_PARTITIONS_PER_SKU_MAX;
    assert_int_equal(
        sh_wire_items_encode(buf, sizeof buf, &len, SH_WIRE_DEDUCT_REQ, 1, it, N_ITEMS), SH_EINVAL);
    make_items(it, SH_WIRE_DEDUCT_REQ);
    it[1].flags = 0x80;
    assert_int_equal(
        sh_wire_items_encode(buf, sizeof buf, &len, SH_WIRE_DEDUCT_REQ, 1, it, N_ITEMS), SH_EINVAL);
    make_items(it, SH_WIRE_DEDUCT_REQ);
    it[1].sku_len = 2; /* the length disagrees with the string */
    assert_int_equal(
        sh_wire_items_encode(buf, sizeof buf, &len, SH_WIRE_DEDUCT_REQ, 1, it, N_ITEMS), SH_EINVAL);

    /* qty past SH_QTY_UNITS_MAX on the wire: patch item 0's qty (offset 24). */
    make_items(it, SH_WIRE_DEDUCT_REQ);
    assert_int_equal(
        sh_wire_items_encode(buf, sizeof buf, &len, SH_WIRE_DEDUCT_REQ, 1, it, N_ITEMS), SH_OK);
    patch_le(buf, SH_WIRE_HEADER_BYTES + 8, SH_QTY_UNITS_MAX + 1, 4);
    uint8_t *p = dup_exact(buf, len);
    assert_int_equal(decode_any(0, p, len, 8), SH_EINVAL);
    free(p);

    /* Catalog: an upsert needs a complete row; non-restock ops carry no restock. */
    sh_wire_catalog_req req;
    make_catalog_req(&req, SH_WIRE_CAT_UPSERT);
    req.sku.min_chunk = req.sku.max_chunk + 1;
    assert_int_equal(sh_wire_catalog_req_encode(buf, sizeof buf, &len, 1, &req), SH_EINVAL);
    make_catalog_req(&req, SH_WIRE_CAT_UPSERT);
    req.sku.total = SH_SKU_TOTAL_UNITS_MAX + 1;
    assert_int_equal(sh_wire_catalog_req_encode(buf, sizeof buf, &len, 1, &req), SH_EINVAL);
    make_catalog_req(&req, SH_WIRE_CAT_GET);
    req.units = 5;
    assert_int_equal(sh_wire_catalog_req_encode(buf, sizeof buf, &len, 1, &req), SH_EINVAL);
    make_catalog_req(&req, SH_WIRE_CAT_RESTOCK);
    req.units = 0;
    assert_int_equal(sh_wire_catalog_req_encode(buf, sizeof buf, &len, 1, &req), SH_EINVAL);
    make_catalog_req(&req, SH_WIRE_CAT_GET);
    req.sku.sku_id_len = 0;
    req.sku.sku_id[0] = '\0';
    assert_int_equal(sh_wire_catalog_req_encode(buf, sizeof buf, &len, 1, &req), SH_EINVAL);

    sh_wire_catalog_rep rep;
    sh_wire_sku skus[N_SKUS];
    make_catalog_rep(&rep, skus);
    skus[3].partitions = 0;
    assert_int_equal(sh_wire_catalog_rep_encode(buf, sizeof buf, &len, 1, &rep, skus, N_SKUS),
                     SH_EINVAL);
    make_catalog_rep(&rep, skus);
    rep.applied = 2;
    assert_int_equal(sh_wire_catalog_rep_encode(buf, sizeof buf, &len, 1, &rep, skus, N_SKUS),
                     SH_EINVAL);

    /* MIGRATE: no SKU id; versions within an INT, and an OK never goes down. */
    make_catalog_req(&req, SH_WIRE_CAT_MIGRATE);
    assert_int_equal(sh_wire_catalog_req_encode(buf, sizeof buf, &len, 1, &req), SH_OK);
    SET_STR(req.sku.sku_id, "sku-m");
    assert_int_equal(sh_wire_catalog_req_encode(buf, sizeof buf, &len, 1, &req), SH_EINVAL);
    make_catalog_rep(&rep, skus);
    rep.schema_after = SH_WIRE_SCHEMA_VERSION_MAX + 1u;
    assert_int_equal(sh_wire_catalog_rep_encode(buf, sizeof buf, &len, 1, &rep, skus, N_SKUS),
                     SH_EINVAL);
    make_catalog_rep(&rep, skus);
    rep.schema_before = SH_WIRE_SCHEMA_VERSION_MAX + 1u;
    assert_int_equal(sh_wire_catalog_rep_encode(buf, sizeof buf, &len, 1, &rep, skus, N_SKUS),
                     SH_EINVAL);
    make_catalog_rep(&rep, skus);
    rep.schema_before = 5;
    rep.schema_after = 4;
    assert_int_equal(sh_wire_catalog_rep_encode(buf, sizeof buf, &len, 1, &rep, skus, N_SKUS),
                     SH_EINVAL);
    rep.status = SH_ERANGE; /* a database newer than the worker: before > after is the news */
    assert_int_equal(sh_wire_catalog_rep_encode(buf, sizeof buf, &len, 1, &rep, NULL, 0), SH_OK);

    sh_wire_partop ops[N_PARTOPS];
    make_partops(ops);
    ops[0].grant_id = 0; /* a grant is applied once per id, so it needs one */
    assert_int_equal(sh_wire_partop_req_encode(buf, sizeof buf, &len, 1, ops, N_PARTOPS),
                     SH_EINVAL);
    make_partops(ops);
    ops[2].units = -1;
    assert_int_equal(sh_wire_partop_req_encode(buf, sizeof buf, &len, 1, ops, N_PARTOPS),
                     SH_EINVAL);

    sh_wire_partop_result pr[N_PARTOPS];
    make_partop_results(pr);
    pr[1].state = 2;
    assert_int_equal(sh_wire_partop_rep_encode(buf, sizeof buf, &len, 1, pr, N_PARTOPS), SH_EINVAL);
}

/* ---- encoder limits ------------------------------------------------------------- */

static sh_err encode_kind(int kind, uint8_t *buf, size_t cap, size_t *len, size_t *want)
{
    sh_wire_type type = (sh_wire_type)(kind + 1);
    switch (type) {
    case SH_WIRE_DEDUCT_REQ:
    case SH_WIRE_RELEASE_REQ: {
        sh_wire_item it[N_ITEMS];
        make_items(it, type);
        *want = sh_wire_items_size(it, N_ITEMS);
        return sh_wire_items_encode(buf, cap, len, type, 1, it, N_ITEMS);
    }
    case SH_WIRE_DEDUCT_REP:
    case SH_WIRE_RELEASE_REP: {
        sh_wire_result r[N_ITEMS];
        make_results(r);
        *want = sh_wire_results_size(r, N_ITEMS);
        return sh_wire_results_encode(buf, cap, len, type, 1, r, N_ITEMS);
    }
    case SH_WIRE_DETAIL_BATCH: {
        sh_wire_batch b;
        sh_wire_detail d[N_DETAILS];
        make_batch(&b, d);
        *want = sh_wire_batch_size(&b, d, N_DETAILS);
        return sh_wire_batch_encode(buf, cap, len, 1, &b, d, N_DETAILS);
    }
    case SH_WIRE_BATCH_ACK: {
        sh_wire_ack a;
        make_ack(&a);
        *want = sh_wire_ack_size(&a);
        return sh_wire_ack_encode(buf, cap, len, 1, &a);
    }
    case SH_WIRE_CATALOG_REQ: {
        sh_wire_catalog_req req;
        make_catalog_req(&req, SH_WIRE_CAT_RESTOCK);
        *want = sh_wire_catalog_req_size(&req);
        return sh_wire_catalog_req_encode(buf, cap, len, 1, &req);
    }
    case SH_WIRE_CATALOG_REP: {
        sh_wire_catalog_rep rep;
        sh_wire_sku skus[N_SKUS];
        make_catalog_rep(&rep, skus);
        *want = sh_wire_catalog_rep_size(&rep, skus, N_SKUS);
        return sh_wire_catalog_rep_encode(buf, cap, len, 1, &rep, skus, N_SKUS);
    }
    case SH_WIRE_PARTOP_REQ: {
        sh_wire_partop ops[N_PARTOPS];
        make_partops(ops);
        *want = sh_wire_partop_req_size(ops, N_PARTOPS);
        return sh_wire_partop_req_encode(buf, cap, len, 1, ops, N_PARTOPS);
    }
    case SH_WIRE_PARTOP_REP: {
        sh_wire_partop_result r[N_PARTOPS];
        make_partop_results(r);
        *want = sh_wire_partop_rep_size(r, N_PARTOPS);
        return sh_wire_partop_rep_encode(buf, cap, len, 1, r, N_PARTOPS);
    }
    case SH_WIRE_SYNC_STATE_REQ: {
        sh_wire_sync_state_req req;
        make_sync_state_req(&req);
        *want = sh_wire_sync_state_req_size(&req);
        return sh_wire_sync_state_req_encode(buf, cap, len, 1, &req);
    }
    case SH_WIRE_SYNC_STATE_REP: {
        sh_wire_sync_state_rep rep;
        sh_wire_sync_part parts[N_SYNC_PARTS];
        make_sync_state_rep(&rep, parts);
        *want = sh_wire_sync_state_rep_size(&rep, parts, N_SYNC_PARTS);
        return sh_wire_sync_state_rep_encode(buf, cap, len, 1, &rep, parts, N_SYNC_PARTS);
    }
    case SH_WIRE_SYNC_DETAILS_REQ: {
        sh_wire_sync_details_req req;
        make_sync_details_req(&req);
        *want = sh_wire_sync_details_req_size(&req);
        return sh_wire_sync_details_req_encode(buf, cap, len, 1, &req);
    }
    case SH_WIRE_SYNC_DETAILS_REP: {
        sh_wire_sync_details_rep rep;
        sh_wire_detail d[N_DETAILS];
        make_sync_details_rep(&rep, d);
        *want = sh_wire_sync_details_rep_size(&rep, d, N_DETAILS);
        return sh_wire_sync_details_rep_encode(buf, cap, len, 1, &rep, d, N_DETAILS);
    }
    }
    fail();
    return SH_EINTERNAL;
}

static void test_encoder_buffer_too_small(void **state)
{
    (void)state;
    for (int kind = 0; kind < N_KINDS; kind++) {
        size_t want = 0, len = 12345;
        uint8_t *buf = malloc(4096);
        assert_non_null(buf);
        assert_int_equal(encode_kind(kind, buf, 4096, &len, &want), SH_OK);
        assert_int_equal(len, want);
        /* Exactly the size works; one byte less, or none, is refused and len untouched. */
        uint8_t *exact = malloc(want);
        assert_non_null(exact);
        assert_int_equal(encode_kind(kind, exact, want, &len, &want), SH_OK);
        assert_memory_equal(exact, buf, want);
        free(exact);
        uint8_t *small = malloc(want - 1);
        assert_non_null(small);
        len = 12345;
        assert_int_equal(encode_kind(kind, small, want - 1, &len, &want), SH_ELIMIT);
        assert_int_equal(len, 12345);
        assert_int_equal(encode_kind(kind, small, 0, &len, &want), SH_ELIMIT);
        assert_int_equal(len, 12345);
        free(small);
        free(buf);
    }
}

static void test_encoder_too_many(void **state)
{
    (void)state;
    size_t cap = SH_WIRE_MSG_BYTES_MAX, len = 0;
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);

    sh_wire_item *items = calloc(SH_WIRE_ITEMS_MAX + 1, sizeof *items);
    assert_non_null(items);
    for (size_t i = 0; i <= SH_WIRE_ITEMS_MAX; i++) {
        items[i].qty = 1;
        SET_STR(items[i].sku, "s");
        SET_STR(items[i].order_id, "o");
        SET_STR(items[i].user_id, "u");
    }
    assert_int_equal(sh_wire_items_size(items, SH_WIRE_ITEMS_MAX + 1), 0);
    assert_int_equal(
        sh_wire_items_encode(buf, cap, &len, SH_WIRE_DEDUCT_REQ, 1, items, SH_WIRE_ITEMS_MAX + 1),
        SH_ELIMIT);
    assert_int_equal(
        sh_wire_items_encode(buf, cap, &len, SH_WIRE_DEDUCT_REQ, 1, items, SH_WIRE_ITEMS_MAX),
        SH_OK);
    assert_int_equal(sh_wire_items_encode(buf, cap, &len, SH_WIRE_DEDUCT_REQ, 1, items, 0),
                     SH_EINVAL); /* a request carries at least one item */
    free(items);

    sh_wire_result *res = calloc(SH_WIRE_ITEMS_MAX + 1, sizeof *res);
    assert_non_null(res);
    assert_int_equal(
        sh_wire_results_encode(buf, cap, &len, SH_WIRE_DEDUCT_REP, 1, res, SH_WIRE_ITEMS_MAX + 1),
        SH_ELIMIT);
    free(res);

    sh_wire_batch b;
    sh_wire_detail *d = calloc(SH_WIRE_DETAILS_MAX + 1, sizeof *d);
    assert_non_null(d);
    memset(&b, 0, sizeof b);
    SET_STR(b.sku, "s");
    b.first_seq = 1;
    b.last_seq = SH_WIRE_DETAILS_MAX + 1;
    for (size_t i = 0; i <= SH_WIRE_DETAILS_MAX; i++) {
        d[i].seq = 1 + i;
        d[i].qty = 1;
        SET_STR(d[i].order_id, "o");
    }
    assert_int_equal(sh_wire_batch_size(&b, d, SH_WIRE_DETAILS_MAX + 1), 0);
    assert_int_equal(sh_wire_batch_encode(buf, cap, &len, 1, &b, d, SH_WIRE_DETAILS_MAX + 1),
                     SH_ELIMIT);
    free(d);

    sh_wire_catalog_rep rep;
    sh_wire_sku *skus = calloc(SH_SKUS_MAX + 1, sizeof *skus);
    assert_non_null(skus);
    make_catalog_rep(&rep, skus);
    for (size_t i = 1; i <= SH_SKUS_MAX; i++) {
        skus[i] = skus[1];
    }
    assert_int_equal(sh_wire_catalog_rep_encode(buf, cap, &len, 1, &rep, skus, SH_SKUS_MAX + 1),
                     SH_ELIMIT);
    assert_int_equal(sh_wire_catalog_rep_encode(buf, cap, &len, 1, &rep, skus, SH_SKUS_MAX), SH_OK);
    free(skus);

    sh_wire_partop *ops = calloc(SH_WIRE_PARTOPS_MAX + 1, sizeof *ops);
    assert_non_null(ops);
    for (size_t i = 0; i <= SH_WIRE_PARTOPS_MAX; i++) {
        ops[i].op = SH_WIRE_PARTOP_STATUS;
        SET_STR(ops[i].sku, "s");
    }
    assert_int_equal(sh_wire_partop_req_encode(buf, cap, &len, 1, ops, SH_WIRE_PARTOPS_MAX + 1),
                     SH_ELIMIT);
    assert_int_equal(sh_wire_partop_req_encode(buf, cap, &len, 1, ops, SH_WIRE_PARTOPS_MAX), SH_OK);
    free(ops);

    sh_wire_partop_result *pr = calloc(SH_WIRE_PARTOPS_MAX + 1, sizeof *pr);
    assert_non_null(pr);
    assert_int_equal(sh_wire_partop_rep_encode(buf, cap, &len, 1, pr, SH_WIRE_PARTOPS_MAX + 1),
                     SH_ELIMIT);
    free(pr);

    sh_wire_sync_state_rep srep;
    memset(&srep, 0, sizeof srep);
    sh_wire_sync_part *sp = calloc(SH_PARTITIONS_PER_SKU_MAX + 1, sizeof *sp);
    assert_non_null(sp);
    assert_int_equal(sh_wire_sync_state_rep_size(&srep, sp, SH_PARTITIONS_PER_SKU_MAX + 1), 0);
    assert_int_equal(
        sh_wire_sync_state_rep_encode(buf, cap, &len, 1, &srep, sp, SH_PARTITIONS_PER_SKU_MAX + 1),
        SH_ELIMIT);
    free(sp);
    free(buf);
}

static void test_str_set(void **state)
{
    (void)state;
    sh_wire_item it;
    memset(&it, 0, sizeof it);
    const char *max = long_str(SH_SKU_ID_CHARS_MAX, 0);
    assert_int_equal(sh_wire_str_set(it.sku, sizeof it.sku, &it.sku_len, max, strlen(max)), SH_OK);
    assert_int_equal(it.sku_len, SH_SKU_ID_CHARS_MAX);
    assert_int_equal(it.sku[SH_SKU_ID_CHARS_MAX], '\0');
    const char *over = long_str(SH_SKU_ID_CHARS_MAX + 1, 0);
    assert_int_equal(sh_wire_str_set(it.sku, sizeof it.sku, &it.sku_len, over, strlen(over)),
                     SH_ELIMIT);
    assert_int_equal(it.sku_len, 0);
    assert_string_equal(it.sku, "");
    assert_int_equal(sh_wire_str_set(it.sku, sizeof it.sku, &it.sku_len, "a\0b", 3), SH_EINVAL);
    assert_int_equal(it.sku_len, 0);
    /* src need not be NUL-terminated: only src_len bytes are read. */
    assert_int_equal(sh_wire_str_set(it.sku, sizeof it.sku, &it.sku_len, "abcdef", 3), SH_OK);
    assert_string_equal(it.sku, "abc");
    assert_int_equal(sh_wire_str_set(it.user_id, sizeof it.user_id, &it.user_id_len, NULL, 0),
                     SH_OK);
    assert_int_equal(it.user_id_len, 0);
}

/* ---- fuzz ------------------------------------------------------------------ */

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

#define FUZZ_ITERATIONS 20000

/* Flips random bytes of valid messages (and, for a third of the rounds, writes a
 * well-formed header over random bytes so the body parsers see deep input), then
 * runs every decoder with a random capacity. Passing means no crash and no
 * sanitizer report; decode_any checks what a success returns. */
static void test_fuzz(void **state)
{
    (void)state;
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    uint8_t *valid[N_KINDS];
    size_t valid_len[N_KINDS];
    for (int k = 0; k < N_KINDS; k++) {
        valid[k] = make_msg(k, &valid_len[k]);
    }
    unsigned ok = 0;
    for (int iter = 0; iter < FUZZ_ITERATIONS; iter++) {
        uint64_t r = xorshift64(&seed);
        int kind = (int)(r % N_KINDS);
        size_t len = valid_len[kind];
        uint8_t *p;
        if (r % 3 == 0) {
            len = SH_WIRE_HEADER_BYTES + (size_t)(xorshift64(&seed) % 400);
            p = malloc(len);
            assert_non_null(p);
            for (size_t i = 0; i < len; i++) {
                p[i] = (uint8_t)xorshift64(&seed);
            }
            p[0] = SH_WIRE_VERSION;
            p[1] = (uint8_t)(kind + 1);
            patch_le(p, 2, xorshift64(&seed) % 8, 2);
            patch_le(p, 4, len - SH_WIRE_HEADER_BYTES, 4);
        } else {
            if (xorshift64(&seed) % 8 == 0) {
                len = (size_t)(xorshift64(&seed) % len); /* and truncate */
            }
            p = dup_exact(valid[kind], len);
            int flips = 1 + (int)(xorshift64(&seed) % 4);
            for (int f = 0; f < flips && len > 0; f++) {
                p[xorshift64(&seed) % len] ^= (uint8_t)(1 + xorshift64(&seed) % 255);
            }
        }
        size_t cap = (size_t)(xorshift64(&seed) % 10);
        for (int dec = 0; dec < N_DECODERS; dec++) {
            if (decode_any(dec, p, len, cap) == SH_OK) {
                ok++;
            }
        }
        free(p);
    }
    for (int k = 0; k < N_KINDS; k++) {
        free(valid[k]);
    }
    /* Some mutations are harmless (a flipped tag or seq), so some must decode. */
    assert_true(ok > 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_deduct_req),
        cmocka_unit_test(test_roundtrip_release_req),
        cmocka_unit_test(test_roundtrip_deduct_rep),
        cmocka_unit_test(test_roundtrip_release_rep),
        cmocka_unit_test(test_roundtrip_batch),
        cmocka_unit_test(test_roundtrip_batch_empty_query),
        cmocka_unit_test(test_roundtrip_ack),
        cmocka_unit_test(test_roundtrip_catalog_req),
        cmocka_unit_test(test_roundtrip_catalog_rep),
        cmocka_unit_test(test_roundtrip_partop_req),
        cmocka_unit_test(test_roundtrip_partop_rep),
        cmocka_unit_test(test_roundtrip_sync_state_req),
        cmocka_unit_test(test_roundtrip_sync_state_rep),
        cmocka_unit_test(test_sync_state_bounds),
        cmocka_unit_test(test_roundtrip_sync_details),
        cmocka_unit_test(test_sync_details_bounds),
        cmocka_unit_test(test_golden_bytes),
        cmocka_unit_test(test_full_messages),
        cmocka_unit_test(test_truncated_prefixes),
        cmocka_unit_test(test_wrong_version),
        cmocka_unit_test(test_unknown_type),
        cmocka_unit_test(test_wrong_decoder),
        cmocka_unit_test(test_body_len_mismatch),
        cmocka_unit_test(test_count_past_type_limit),
        cmocka_unit_test(test_count_past_cap),
        cmocka_unit_test(test_string_past_max),
        cmocka_unit_test(test_batch_count_mismatch),
        cmocka_unit_test(test_batch_seq_gap),
        cmocka_unit_test(test_enum_out_of_range),
        cmocka_unit_test(test_field_bounds),
        cmocka_unit_test(test_encoder_buffer_too_small),
        cmocka_unit_test(test_encoder_too_many),
        cmocka_unit_test(test_str_set),
        cmocka_unit_test(test_fuzz),
    };
    return T_CMOCKA_MAIN(argc, argv, "wire", tests, NULL, NULL);
}
