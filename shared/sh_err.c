/* sh_err.c -- names for the sh_err codes. */
#include "sh_err.h"

#include <stddef.h>

static const char *const sh_err_names[SH_ERR_COUNT_] = {
    [SH_OK] = "ok",
    [SH_EINVAL] = "invalid argument",
    [SH_ENOMEM] = "out of memory",
    [SH_ERANGE] = "value out of range",
    [SH_ETRUNC] = "truncated input",
    [SH_EVERSION] = "unsupported version",
    [SH_ETYPE] = "unknown message type",
    [SH_ELIMIT] = "limit exceeded",
    [SH_EIO] = "i/o error",
    [SH_ETIMEDOUT] = "timed out",
    [SH_EBUSY] = "busy",
    [SH_ENOTFOUND] = "not found",
    [SH_EEXIST] = "already exists",
    [SH_EPROTO] = "protocol error",
    [SH_EREDIS] = "redis error reply",
    [SH_ECLUSTER] = "cluster routing failed",
    [SH_EMYSQL] = "mysql error",
    [SH_ECONFIG] = "invalid configuration",
    [SH_ECLOSED] = "closed",
    [SH_EINTERNAL] = "internal error",
    [SH_EUNKNOWN] = "outcome unknown: the command may have run",
    [SH_EDIVERGED] = "diverged: Redis and MySQL disagree on a detail",
};

const char *sh_strerror(sh_err rc)
{
    if ((unsigned)rc >= SH_ERR_COUNT_ || sh_err_names[rc] == NULL) {
        return "unknown error";
    }
    return sh_err_names[rc];
}
