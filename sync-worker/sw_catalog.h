/* sw_catalog.h -- the catalog requests: SKU master rows and restocks in MySQL.
 *
 * The scheduler loads SKUs from here (GET, LIST), creates them (UPSERT: insert
 * if absent, always answer the stored row, so loading twice changes nothing)
 * and restocks them (RESTOCK: once per restock id, in one transaction with the
 * total). Every reply carries the stored row(s), never the request's copy. */
#ifndef SW_CATALOG_H
#define SW_CATALOG_H

#include "sh_wire.h"
#include "sw_mysql.h"
#include "sw_stats.h"

#include <stddef.h>

/* A reply under construction: rep is the CATALOG_REP head, skus[0..n) its rows. */
typedef struct sw_catalog_out {
    sh_wire_catalog_rep rep;
    sh_wire_sku *skus; /* the caller's array */
    size_t cap;        /* >= SH_SKUS_MAX for LIST; >= 1 otherwise */
    size_t n;
} sw_catalog_out;

/* Carries out req (decoded and checked by the codec) on m and fills out:
 *   GET      one row; SH_ENOTFOUND when absent
 *   UPSERT   applied = 1 when the row was created; the stored row either way
 *   RESTOCK  applied = 1 the first time restock_id is seen, when sku.total grows
 *            by units; SH_ENOTFOUND for an unknown SKU, SH_EEXIST when the id was
 *            used before for another SKU or another number of units, SH_ERANGE
 *            when the total would pass SH_SKU_TOTAL_UNITS_MAX
 *   LIST     every row (sku_id order), at most SH_SKUS_MAX
 * SH_EINVAL for an invalid sku id; SH_EMYSQL / SH_ECLOSED when MySQL could not
 * answer (message says why). Stored rows that break the wire bounds are left
 * out of a LIST (counted in the message) and make a GET answer SH_EMYSQL. */
void sw_catalog_run(sw_mysql *m, sw_stats *stats, const sh_wire_catalog_req *req,
                    sw_catalog_out *out);

#endif
