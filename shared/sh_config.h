/* sh_config.h -- table-driven INI configuration, read with inih.
 *
 * Every daemon describes its keys in one table of sh_config_key (section, name,
 * type, bounds, default, field offset, doc), as Redis does with static_configs[].
 * The loader applies every default first, then the file, then -o overrides, and
 * checks every value against the same bounds whichever way it came. An unknown
 * section or key, a duplicate, a malformed or out-of-range value stops the load
 * with one message naming the file, the line and the key. */
#ifndef SH_CONFIG_H
#define SH_CONFIG_H

#include "sh_err.h"

#include <stddef.h>
#include <stdint.h>

typedef enum sh_config_type {
    SH_CONFIG_INT,  /* int64_t field; bounds are the value's [min, max] */
    SH_CONFIG_BOOL, /* int field, 0 or 1; accepts yes/no/true/false/on/off/1/0 */
    SH_CONFIG_STR,  /* char[size] field; bounds are the length's [min, max] in bytes */
} sh_config_type;

typedef struct sh_config_key {
    const char *section; /* INI section without brackets */
    const char *name;    /* key inside the section */
    sh_config_type type;
    int64_t min;         /* INT: smallest value; STR: shortest length */
    int64_t max;         /* INT: largest value; STR: longest length (< size) */
    const char *def;     /* default, as text: parsed and checked like a file value */
    size_t offset;       /* offsetof(the daemon's config struct, field) */
    size_t size;         /* STR: bytes of the char array; others: ignored */
    const char *doc;     /* one line: what it is, with its unit */
    const char *choices; /* STR: NULL, or the allowed values as "a|b|c" */
} sh_config_key;

/* Longest message an error can take, including the file:line prefix. */
#define SH_CONFIG_ERR_BYTES 512

/* Fills cfg from the defaults in keys[0..nkeys), then from the INI file at
 * path (path NULL: defaults only), then from overrides[0..noverrides), each a
 * "section.key=value" string (from -o on the command line). On failure returns
 * SH_ECONFIG (or SH_EIO when the file cannot be read) and writes into err a
 * message such as "conf/scheduler.ini:12: unknown key 'foo' in [http]". The
 * caller owns cfg, which must be a struct the offsets in keys describe. */
sh_err sh_config_load(const sh_config_key *keys, size_t nkeys, void *cfg, const char *path,
                      const char *const *overrides, size_t noverrides, char *err, size_t errlen);

/* Same, from text in memory; name is used in messages in place of a path. */
sh_err sh_config_load_string(const sh_config_key *keys, size_t nkeys, void *cfg, const char *text,
                             const char *name, char *err, size_t errlen);

/* Writes every key with its effective value, one "section.key = value" line
 * each, to fd (for -t -v and for the logs at start). */
void sh_config_dump(const sh_config_key *keys, size_t nkeys, const void *cfg, int fd);

#endif
