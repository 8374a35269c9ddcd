/* test_id.c -- id validation: alphabet, lengths, braces. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "t_cmocka.h"

#include "sh_id.h"
#include "sh_limits.h"

#include <string.h>

static sh_err order(const char *s)
{
    return sh_id_check_order(s, strlen(s));
}

static void test_valid_ids(void **state)
{
    (void)state;
    const char *ok[] = {"o1", "A", "order-2026.11.21:000042", "u_9", "0", "a:b:c", "-", "..."};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(order(ok[i]), SH_OK);
        assert_int_equal(sh_id_check_user(ok[i], strlen(ok[i])), SH_OK);
    }
    assert_int_equal(sh_id_check_sku("sku-1.a_B", 9), SH_OK);
}

static void test_braces_rejected(void **state)
{
    (void)state;
    const char *bad[] = {"{", "}", "{a}", "a{b", "o}1", "{}", "{{x}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(order(bad[i]), SH_EINVAL);
        assert_int_equal(sh_id_check_user(bad[i], strlen(bad[i])), SH_EINVAL);
        assert_int_equal(sh_id_check_sku(bad[i], strlen(bad[i])), SH_EINVAL);
    }
}

static void test_other_bytes_rejected(void **state)
{
    (void)state;
    const char *bad[] = {"a b",  "a\tb", "a/b", "a\"b", "a'b", "\xc3\xa9", "a*",
                         "a\\b", "a\nb", "a,b", "a;b",  "a@b", "a#b",      "a%b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(order(bad[i]), SH_EINVAL);
    }
    assert_int_equal(sh_id_check_order("a\0b", 3), SH_EINVAL);
    assert_int_equal(sh_id_check_order("", 0), SH_EINVAL);
    assert_int_equal(sh_id_check_order(NULL, 0), SH_EINVAL);
}

static void test_lengths(void **state)
{
    (void)state;
    char buf[SH_ORDER_ID_CHARS_MAX + 2];
    memset(buf, 'x', sizeof buf);
    assert_int_equal(sh_id_check_order(buf, SH_ORDER_ID_CHARS_MAX), SH_OK);
    assert_int_equal(sh_id_check_order(buf, SH_ORDER_ID_CHARS_MAX + 1), SH_ERANGE);
    assert_int_equal(sh_id_check_user(buf, SH_USER_ID_CHARS_MAX), SH_OK);
    assert_int_equal(sh_id_check_user(buf, SH_USER_ID_CHARS_MAX + 1), SH_ERANGE);
    assert_int_equal(sh_id_check_sku(buf, SH_SKU_ID_CHARS_MAX), SH_OK);
    assert_int_equal(sh_id_check_sku(buf, SH_SKU_ID_CHARS_MAX + 1), SH_ERANGE);
}

static void test_sku_no_colon(void **state)
{
    (void)state;
    /* A ':' in a SKU would let ("a:b","c") and ("a","b:c") share {o:a:b:c}. */
    assert_int_equal(sh_id_check_sku("a:b", 3), SH_EINVAL);
    assert_int_equal(sh_id_check_order("b:c", 3), SH_OK);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_ids),
        cmocka_unit_test(test_braces_rejected),
        cmocka_unit_test(test_other_bytes_rejected),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_sku_no_colon),
    };
    return T_CMOCKA_MAIN(argc, argv, "id", tests, NULL, NULL);
}
