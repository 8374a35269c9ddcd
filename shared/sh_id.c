/* sh_id.c -- id alphabets (see sh_id.h for why they are this strict). */
#include "sh_id.h"

#include "sh_limits.h"

#include <stdint.h>

static int sh_id_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static sh_err sh_id_check(const char *s, size_t len, size_t max, int allow_colon)
{
    if (s == NULL || len == 0) {
        return SH_EINVAL;
    }
    if (len > max) {
        return SH_ERANGE;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (sh_id_alnum(c) || c == '_' || c == '.' || c == '-' || (allow_colon && c == ':')) {
            continue;
        }
        return SH_EINVAL;
    }
    return SH_OK;
}

sh_err sh_id_check_order(const char *s, size_t len)
{
    return sh_id_check(s, len, SH_ORDER_ID_CHARS_MAX, 1);
}

sh_err sh_id_check_user(const char *s, size_t len)
{
    return sh_id_check(s, len, SH_USER_ID_CHARS_MAX, 1);
}

sh_err sh_id_check_sku(const char *s, size_t len)
{
    return sh_id_check(s, len, SH_SKU_ID_CHARS_MAX, 0);
}
