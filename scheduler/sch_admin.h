/* sch_admin.h -- the admin socket: one JSON request per line, one JSON reply per line.
 *
 * A Unix stream socket (mode 0660) served on the scheduler's event loop.
 * Commands ({"cmd": ...}): registry, sku_load, audit, stats. Every reply is one
 * line: {"ok":true,...} or {"ok":false,"error":"code","message":"..."}. A bad
 * line gets an error reply and the connection stays usable; a line longer than
 * SCH_ADMIN_LINE_BYTES_MAX closes the connection. */
#ifndef SCH_ADMIN_H
#define SCH_ADMIN_H

#include "sch_ctx.h"
#include "sh_err.h"

#define SCH_ADMIN_LINE_BYTES_MAX 65536
#define SCH_ADMIN_CLIENTS_MAX    64

typedef struct sch_admin sch_admin;

/* Listens on ctx->cfg->admin_socket (a stale file is replaced) on ctx->base.
 * Loop thread only. */
sh_err sch_admin_open(sch_admin **out, sch_ctx *ctx);

/* Closes every connection and the listener and unlinks the socket file. */
void sch_admin_close(sch_admin *a);

#endif
