/* sh_admin_client.h -- one exchange with the scheduler's admin socket, bounded in time.
 *
 * Connect to the Unix socket, write one request line, read one reply line,
 * close. Every step shares one deadline, so a wedged scheduler costs the
 * caller the timeout and never a hang. */
#ifndef SH_ADMIN_CLIENT_H
#define SH_ADMIN_CLIENT_H

#include "sh_err.h"

#include <stddef.h>
#include <stdint.h>

/* Sends request (a NUL-terminated line without its newline) to the admin
 * socket at path and reads the reply line within timeout_ms; a reply may hold
 * at most reply_max bytes (at least 64 KiB). On SH_OK *reply holds the line
 * without its newline, NUL-terminated (free() it), and *reply_len its length.
 * Otherwise *reply is NULL and err (when not NULL) holds one line that names
 * path: SH_EIO (cannot connect, the peer closed without a full reply, a reply
 * over reply_max), SH_ETIMEDOUT, SH_EINVAL (path too long, bad arguments),
 * SH_ENOMEM. */
sh_err sh_admin_call(const char *path, const char *request, int64_t timeout_ms, size_t reply_max,
                     char **reply, size_t *reply_len, char *err, size_t errlen);

#endif
