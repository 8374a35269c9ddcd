/* lg_admin.h -- the load generator's one exchange with the scheduler's admin socket.
 *
 * --verify asks the scheduler itself (registry, audit) rather than reading
 * Redis and MySQL on its own: the audit is the project's one definition of the
 * invariants, and the loadgen links neither hiredis nor the MySQL client
 * (DESIGN.md 3). One call: connect to the Unix socket, write one request line,
 * read one reply line, close; every step shares one deadline, so a wedged
 * scheduler costs the timeout and never a hung run. */
#ifndef LG_ADMIN_H
#define LG_ADMIN_H

#include "sh_err.h"

#include <stddef.h>
#include <stdint.h>

/* The most a reply may hold: a registry of many SKUs is large, an audit small. */
#define LG_ADMIN_REPLY_BYTES_MAX (64u * 1024u * 1024u)

/* Sends request (one JSON object, NUL-terminated, no newline) to the admin
 * socket at path and reads the reply line within timeout_ms. On SH_OK *reply
 * holds the line without its newline, NUL-terminated (the caller free()s it)
 * and *reply_len its length. Otherwise *reply is NULL and err holds one line
 * naming path: SH_EIO (cannot connect, closed early, reply too long),
 * SH_ETIMEDOUT, SH_EINVAL (path too long), SH_ENOMEM. */
sh_err lg_admin_call(const char *path, const char *request, int64_t timeout_ms, char **reply,
                     size_t *reply_len, char *err, size_t errlen);

#endif
