/* sh_id.h -- validation of the ids that become parts of Redis keys.
 *
 * Order and user ids are 1..64 characters of [A-Za-z0-9_.:-]; SKU ids are
 * 1..64 of [A-Za-z0-9_.-], without ':'. Anything else is refused, braces above
 * all: an id is pasted into hash-tagged keys such as {o:SKU:ORDER}, and a '{' or
 * '}' in it could move the key to another slot. SKU ids have no ':' so that
 * {o:SKU:ORDER} names exactly one (SKU, order) pair: with a ':' allowed in both,
 * ("a:b","c") and ("a","b:c") would share a claim key. */
#ifndef SH_ID_H
#define SH_ID_H

#include "sh_err.h"

#include <stddef.h>

/* Each returns SH_OK when s[0..len) is a valid id of its kind, SH_EINVAL when a
 * character is outside the alphabet or the id is empty, SH_ERANGE when it is
 * longer than its limit. s need not be NUL-terminated; a NUL inside is invalid. */
sh_err sh_id_check_order(const char *s, size_t len);
sh_err sh_id_check_user(const char *s, size_t len);
sh_err sh_id_check_sku(const char *s, size_t len);

#endif
