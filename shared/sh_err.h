/* sh_err.h -- the error enum every fallible function in the project returns.
 *
 * SH_OK is zero so `if (rc != SH_OK)` reads naturally. Business outcomes of a
 * deduction (sold out, duplicate, conflict) are values in their own enums, not
 * errors: an error here means the operation could not be carried out. */
#ifndef SH_ERR_H
#define SH_ERR_H

typedef enum sh_err {
    SH_OK = 0,
    SH_EINVAL,    /* argument or input failed validation */
    SH_ENOMEM,    /* allocation failed */
    SH_ERANGE,    /* value outside its limit */
    SH_ETRUNC,    /* input ends before the structure it announces */
    SH_EVERSION,  /* wire message of an unsupported version */
    SH_ETYPE,     /* wire message of an unknown type */
    SH_ELIMIT,    /* a count or size exceeds its limit */
    SH_EIO,       /* I/O error on a socket or file */
    SH_ETIMEDOUT, /* the peer did not answer within the bound */
    SH_EBUSY,     /* a bounded queue is full; retry later */
    SH_ENOTFOUND, /* the thing asked for does not exist */
    SH_EEXIST,    /* the thing already exists */
    SH_EPROTO,    /* the peer broke the protocol (bad reply type, ...) */
    SH_EREDIS,    /* Redis answered an error reply */
    SH_ECLUSTER,  /* the cluster could not route the command within the retry bound */
    SH_EMYSQL,    /* MySQL answered an error */
    SH_ECONFIG,   /* configuration file is invalid */
    SH_ECLOSED,   /* the object was closed or is shutting down */
    SH_EINTERNAL, /* an invariant failed; a bug */
    SH_EUNKNOWN,  /* the command reached the peer but no answer came back: it may have run */
    SH_EDIVERGED, /* Redis and MySQL disagree on a detail: a reconcile is needed */
    SH_ERR_COUNT_ /* number of codes; keep last */
} sh_err;

/* Returns a static, human-readable name for rc ("invalid argument", ...).
 * Never NULL; unknown codes give "unknown error". Thread-safe. */
const char *sh_strerror(sh_err rc);

#endif
