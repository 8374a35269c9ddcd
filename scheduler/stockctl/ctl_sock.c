/* ctl_sock.c -- stockctl's one exchange with the admin socket (see ctl_sock.h);
 * the client itself is shared with the load generator (sh_admin_client). */
#include "ctl_sock.h"

#include "sh_admin_client.h"

sh_err ctl_sock_call(const char *path, const char *request, int64_t timeout_ms, char **reply,
                     size_t *reply_len, char *err, size_t errlen)
{
    return sh_admin_call(path, request, timeout_ms, CTL_REPLY_BYTES_MAX, reply, reply_len, err,
                         errlen);
}
