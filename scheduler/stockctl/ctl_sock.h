/* ctl_sock.h -- stockctl's one exchange with the admin socket, bounded in time.
 *
 * Connect to the Unix socket, write one request line, read one reply line,
 * close. Every step shares one deadline, so a wedged scheduler costs the
 * operator the timeout and never a hung terminal. */
#ifndef CTL_SOCK_H
#define CTL_SOCK_H

#include "sh_err.h"

#include <stddef.h>
#include <stdint.h>

/* The most a reply may hold: the registry of SH_SKUS_MAX SKUs with
 * SH_PARTITIONS_PER_SKU_MAX partitions each is about 250 MB of JSON. */
#define CTL_REPLY_BYTES_MAX (512u * 1024u * 1024u)

/* Sends request (a NUL-terminated line without its newline) to the admin
 * socket at path and reads the reply line within timeout_ms. On SH_OK *reply
 * holds the line without its newline, NUL-terminated (free() it), and
 * *reply_len its length. Otherwise *reply is NULL and err holds one line that
 * names path: SH_EIO (cannot connect, the peer closed without a full reply, a
 * reply over CTL_REPLY_BYTES_MAX), SH_ETIMEDOUT, SH_EINVAL (path too long),
 * SH_ENOMEM. */
sh_err ctl_sock_call(const char *path, const char *request, int64_t timeout_ms, char **reply,
                     size_t *reply_len, char *err, size_t errlen);

#endif
