/* test_log.c -- log line format, level filter, error names, clocks. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "t_cmocka.h"

#include "sh_clock.h"
#include "sh_err.h"
#include "sh_log.h"

#include <regex.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static size_t capture(char *buf, size_t cap, void (*emit)(void))
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    sh_log_init("tester", SH_LOG_INFO, fds[1]);
    emit();
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (n < cap - 1 && (r = read(fds[0], buf + n, cap - 1 - n)) > 0) {
        n += (size_t)r;
    }
    buf[n] = '\0';
    close(fds[0]);
    sh_log_init("tester", SH_LOG_INFO, 2);
    return n;
}

static void emit_two(void)
{
    SH_INFO("http", "listening addr=%s port=%d", "127.0.0.1", 8080);
    SH_DEBUG("http", "hidden");
    SH_ERROR("redis", "down node=%s", "n1");
}

static void test_format(void **state)
{
    (void)state;
    char buf[4096];
    capture(buf, sizeof buf, emit_two);
    regex_t re;
    /* time pid role level module message key=value */
    assert_int_equal(regcomp(&re,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                             "[0-9]+ tester info http listening addr=127\\.0\\.0\\.1 port=8080\n"
                             "[0-9TZ:.-]+ [0-9]+ tester error redis down node=n1\n$",
                             REG_EXTENDED),
                     0);
    assert_int_equal(regexec(&re, buf, 0, NULL, 0), 0);
    regfree(&re);
    assert_null(strstr(buf, "hidden"));
}

static void emit_long(void)
{
    char big[4000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    SH_WARN("x", "%s", big);
}

static void test_long_line_truncated(void **state)
{
    (void)state;
    char buf[8192];
    size_t n = capture(buf, sizeof buf, emit_long);
    assert_true(n > 0 && n <= 1024);
    assert_int_equal(buf[n - 1], '\n');
    assert_null(memchr(buf, '\n', n - 1));
}

static void test_level_parse(void **state)
{
    (void)state;
    assert_int_equal(sh_log_level_parse("debug"), SH_LOG_DEBUG);
    assert_int_equal(sh_log_level_parse("error"), SH_LOG_ERROR);
    assert_int_equal(sh_log_level_parse("loud"), -1);
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(sh_strerror(SH_OK), "ok");
    for (int i = 1; i < SH_ERR_COUNT_; i++) {
        const char *a = sh_strerror((sh_err)i);
        assert_non_null(a);
        assert_string_not_equal(a, "unknown error");
        for (int j = 1; j < i; j++) {
            assert_string_not_equal(a, sh_strerror((sh_err)j));
        }
    }
    assert_string_equal(sh_strerror((sh_err)999), "unknown error");
    assert_string_equal(sh_strerror((sh_err)-1), "unknown error");
}

static void test_clock(void **state)
{
    (void)state;
    uint64_t a = sh_clock_mono_ns();
    sh_clock_sleep_ms(20);
    uint64_t b = sh_clock_mono_ns();
    assert_true(b >= a + 20000000ull);
    assert_true(sh_clock_mono_ms() >= b / 1000000ull);
    /* wall clock is after 2024-01-01 */
    assert_true(sh_clock_wall_ms() > 1704067200000ull);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),      cmocka_unit_test(test_long_line_truncated),
        cmocka_unit_test(test_level_parse), cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_clock),
    };
    return T_CMOCKA_MAIN(argc, argv, "log", tests, NULL, NULL);
}
