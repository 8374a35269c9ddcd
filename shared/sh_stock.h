/* sh_stock.h -- the Redis layout of the stock server and the Lua scripts on it.
 *
 * One module holds every key name and every script, so the scheduler, the
 * partition node and the audit agree on them by construction. Keys of one
 * partition share a hash tag, so one script touches them atomically; pool and
 * journal share the SKU's tag. Ids are validated (sh_id.h) before they reach a
 * key: no id can contain a brace or, for SKUs, a ':'.
 *
 *   stock:skus                 set   every loaded SKU id (the registry index)
 *   {s:SKU}:pool               hash  avail total start_ms pul parts minc maxc
 *                                    name nextid ep t.P (tag salt of partition P)
 *   {s:SKU}:jrnl               hash  id -> "g:P:UNITS" pending grant
 *                                         | "r:P"      pending return
 *   {s:SKU}:rst                hash  restock id -> units (applied once)
 *   {s:SKU:P:K}:st             hash  a s0 s1 ded seq state g flips grants r.ID
 *                                    ep rid rs0 (fencing epoch, last round id and
 *                                    the seq it started from) ack (MySQL's, by the
 *                                    shipper) dwhy dseq ddetail (DIVERGE) rcid
 *                                    rcsum (the last RECONCILE and its answer)
 *   {s:SKU:P:K}:d              stream packed details, entry id = last seq of the call
 *   {s:SKU:P:K}:o              hash  order -> "QTY,SEQ,RELSEQ,USER" | "t,VER"
 *   {o:SKU:ORDER}              string claim "P:VER": the partition that decides the order
 *   {u:SKU:USER}               hash  order -> "QTY:TOKEN", the orders a user holds
 *                                    (per-user limit: the sum of QTY)
 *
 * K is a small salt chosen when the SKU is loaded so that the partitions of a
 * SKU land on distinct masters (the slot of "s:SKU:P:K" is what decides). */
#ifndef SH_STOCK_H
#define SH_STOCK_H

#include "sh_err.h"
#include "sh_limits.h"

#include <stddef.h>
#include <stdint.h>

#define SH_STOCK_KEY_BYTES_MAX (SH_SKU_ID_CHARS_MAX + SH_ORDER_ID_CHARS_MAX + 32)
#define SH_STOCK_SKU_INDEX_KEY "stock:skus"
#define SH_STOCK_TAG_SALT_MAX  4096 /* salts tried to place a partition on a master */

/* Key builders: write a NUL-terminated key into buf (SH_STOCK_KEY_BYTES_MAX
 * bytes) and return its length. sku/order/user must already be validated. */
size_t sh_stock_key_pool(char *buf, const char *sku);
size_t sh_stock_key_journal(char *buf, const char *sku);
size_t sh_stock_key_restocks(char *buf, const char *sku);
size_t sh_stock_part_tag(char *buf, const char *sku, unsigned part, unsigned salt); /* s:SKU:P:K */
size_t sh_stock_key_part(char *buf, const char *sku, unsigned part, unsigned salt,
                         char which); /* which: 's' st, 'd' stream, 'o' orders */
size_t sh_stock_key_claim(char *buf, const char *sku, const char *order);
size_t sh_stock_key_user(char *buf, const char *sku, const char *user);

/* ---- scripts ---------------------------------------------------------------
 * Each script's contract is written above its text in sh_stock.c. */
typedef enum sh_stock_script {
    SH_SCRIPT_DEDUCT = 0,   /* partition: a batch of deductions and releases */
    SH_SCRIPT_CLAIM_MOVE,   /* claim: compare-and-set "P:V" -> "Q:V+1" */
    SH_SCRIPT_PART_INIT,    /* partition: create the state hash once */
    SH_SCRIPT_POOL_INIT,    /* pool: create the pool hash once */
    SH_SCRIPT_GRANT_BEGIN,  /* pool: take units from avail, journal the grant */
    SH_SCRIPT_GRANT_APPLY,  /* partition: add a grant's units once */
    SH_SCRIPT_JOURNAL_END,  /* pool: forget a finished grant */
    SH_SCRIPT_RETURN_BEGIN, /* pool: journal a return */
    SH_SCRIPT_RETURN_TAKE,  /* partition: take the remnant once per return id */
    SH_SCRIPT_RETURN_APPLY, /* pool: add a return's units once, forget it */
    SH_SCRIPT_RETURN_END,   /* partition: forget the taken-record of a return */
    SH_SCRIPT_RESTOCK,      /* pool: add units once per restock id */
    SH_SCRIPT_USER_TAKE,    /* user counter: take an order's units within the limit */
    SH_SCRIPT_USER_BACK,    /* user counter: give an order's units back */
    SH_SCRIPT_SETTLE,       /* partition: decide an order whose deduction was unknown */
    SH_SCRIPT_EPOCH_STAMP,  /* pool or partition: raise the fencing epoch */
    SH_SCRIPT_DIVERGE,      /* partition: stop it, Redis and MySQL disagree */
    SH_SCRIPT_RECONCILE,    /* partition: rebuild a diverged one from the union, open it */
    SH_SCRIPT_COUNT_
} sh_stock_script;

/* Returns the Lua text of script s. */
const char *sh_stock_script_text(sh_stock_script s);

/* Per-item status codes returned by SH_SCRIPT_DEDUCT. */
typedef enum sh_stock_item_status {
    SH_ITEM_OK = 0,           /* deducted (or released) now */
    SH_ITEM_DUPLICATE = 1,    /* the order's first outcome, unchanged */
    SH_ITEM_CONFLICT = 2,     /* the order exists with another qty; nothing changed */
    SH_ITEM_USER_LIMIT = 3,   /* the per-user limit refuses it; nothing changed */
    SH_ITEM_INSUFFICIENT = 4, /* this partition cannot serve it; tombstone written */
    SH_ITEM_MOVED = 5,        /* the claim moved away from here; re-read the claim */
    SH_ITEM_UNKNOWN = 6,      /* release of an order this partition never served */
    SH_ITEM_RELEASED = 7,     /* deduct of an order that was released; nothing changed */
} sh_stock_item_status;

/* Partition flags returned by SH_SCRIPT_DEDUCT (and the registry's view). */
#define SH_PART_F_FLIPPED       0x02
#define SH_PART_F_STANDBY_EMPTY 0x04
#define SH_PART_F_EXHAUSTED     0x08
#define SH_PART_F_CLOSED        0x10

/* Arguments per item of SH_SCRIPT_DEDUCT, after the 5 fixed ones: its order
 * id (all order ids come first, in item order), then op, user, qty, version. */
#define SH_DEDUCT_FIXED_ARGS 5
#define SH_DEDUCT_ITEM_ARGS  5
/* Values per item in its reply, after the 4 fixed ones (a, s0, s1, flags). */
#define SH_DEDUCT_REPLY_FIXED 4
#define SH_DEDUCT_REPLY_ITEM  4

/* Arguments of SH_SCRIPT_RECONCILE before its records and detail lines, and
 * the values of its reply (sh_stock.c has the contract). */
#define SH_RECONCILE_FIXED_ARGS 13
#define SH_RECONCILE_REPLY      8

/* Parses one packed detail line of a stream entry's "b" field:
 * "SEQ|QTY|SD|MS|ORDER|USER". Returns SH_EPROTO when malformed. */
typedef struct sh_stock_detail {
    uint64_t seq;
    int64_t qty;
    int sub_domain;
    int64_t created_ms;
    char order_id[SH_ORDER_ID_CHARS_MAX + 1];
    char user_id[SH_USER_ID_CHARS_MAX + 1];
} sh_stock_detail;
sh_err sh_stock_detail_parse(const char *line, size_t len, sh_stock_detail *out);

#endif
