/* test_config.c -- sh_config: defaults, bounds, unknown keys, duplicates, line numbers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "t_cmocka.h"

#include "sh_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct tcfg {
    int64_t port;
    int64_t batch;
    int enabled;
    char name[32];
    char level[8];
} tcfg;

static const sh_config_key tkeys[] = {
    {"http", "port", SH_CONFIG_INT, 1, 65535, "8080", offsetof(tcfg, port), 0, "TCP port", NULL},
    {"http", "batch", SH_CONFIG_INT, 1, 1024, "64", offsetof(tcfg, batch), 0, "items", NULL},
    {"node", "enabled", SH_CONFIG_BOOL, 0, 1, "yes", offsetof(tcfg, enabled), 0, "switch", NULL},
    {"node", "name", SH_CONFIG_STR, 1, 31, "n1", offsetof(tcfg, name), 32, "name", NULL},
    {"log", "level", SH_CONFIG_STR, 1, 7, "info", offsetof(tcfg, level), 8, "level", "info|warn"},
};
#define NKEYS (sizeof tkeys / sizeof tkeys[0])

static sh_err load(const char *text, tcfg *c, char *err)
{
    memset(c, 0xA5, sizeof *c);
    return sh_config_load_string(tkeys, NKEYS, c, text, "t.ini", err, SH_CONFIG_ERR_BYTES);
}

static void test_defaults(void **state)
{
    (void)state;
    tcfg c;
    char err[SH_CONFIG_ERR_BYTES];
    assert_int_equal(load("", &c, err), SH_OK);
    assert_int_equal(c.port, 8080);
    assert_int_equal(c.batch, 64);
    assert_int_equal(c.enabled, 1);
    assert_string_equal(c.name, "n1");
}

static void test_values_and_comments(void **state)
{
    (void)state;
    tcfg c;
    char err[SH_CONFIG_ERR_BYTES];
    const char *text = "; comment\n[http]\nport = 9090 ; inline\nbatch=1024\n\n[node]\n"
                       "enabled = off\nname = alpha\n";
    assert_int_equal(load(text, &c, err), SH_OK);
    assert_int_equal(c.port, 9090);
    assert_int_equal(c.batch, 1024);
    assert_int_equal(c.enabled, 0);
    assert_string_equal(c.name, "alpha");
}

static void test_unknown_key_names_line(void **state)
{
    (void)state;
    tcfg c;
    char err[SH_CONFIG_ERR_BYTES];
    assert_int_equal(load("[http]\nport = 1\n\nbogus = 3\n", &c, err), SH_ECONFIG);
    assert_non_null(strstr(err, "t.ini:4:"));
    assert_non_null(strstr(err, "bogus"));
}

static void test_unknown_section(void **state)
{
    (void)state;
    tcfg c;
    char err[SH_CONFIG_ERR_BYTES];
    assert_int_equal(load("[nope]\nport = 1\n", &c, err), SH_ECONFIG);
    assert_non_null(strstr(err, "t.ini:2:"));
    assert_non_null(strstr(err, "[nope]"));
}

static void test_int_bounds(void **state)
{
    (void)state;
    tcfg c;
    char err[SH_CONFIG_ERR_BYTES];
    assert_int_equal(load("[http]\nport = 0\n", &c, err), SH_ECONFIG);
    assert_non_null(strstr(err, "port"));
    assert_non_null(strstr(err, "out of range"));
    assert_int_equal(load("[http]\nport = 65536\n", &c, err), SH_ECONFIG);
    assert_int_equal(load("[http]\nport = 65535\n", &c, err), SH_OK);
    assert_int_equal(c.port, 65535);
    assert_int_equal(load("[http]\nport = 1\n", &c, err), SH_OK);
    assert_int_equal(load("[http]\nbatch = 1025\n", &c, err), SH_ECONFIG);
    assert_int_equal(load("[http]\nport = 99999999999999999999999\n", &c, err), SH_ECONFIG);
}

static void test_int_malformed(void **state)
{
    (void)state;
    tcfg c;
    char err[SH_CONFIG_ERR_BYTES];
    assert_int_equal(load("[http]\nport = 80x\n", &c, err), SH_ECONFIG);
    assert_non_null(strstr(err, "not an integer"));
    assert_int_equal(load("[http]\nport =\n", &c, err), SH_ECONFIG);
    assert_int_equal(load("[http]\nport = 0x50\n", &c, err), SH_ECONFIG);
}

static void test_bool_and_string(void **state)
{
    (void)state;
    tcfg c;
    char err[SH_CONFIG_ERR_BYTES];
    assert_int_equal(load("[node]\nenabled = maybe\n", &c, err), SH_ECONFIG);
    assert_int_equal(load("[node]\nname = 0123456789012345678901234567890123\n", &c, err),
                     SH_ECONFIG);
    assert_non_null(strstr(err, "length"));
    assert_int_equal(load("[node]\nname = 0123456789012345678901234567890\n", &c, err), SH_OK);
    assert_int_equal(strlen(c.name), 31);
}

static void test_choices(void **state)
{
    (void)state;
    tcfg c;
    char err[SH_CONFIG_ERR_BYTES];
    assert_int_equal(load("[log]\nlevel = warn\n", &c, err), SH_OK);
    assert_string_equal(c.level, "warn");
    assert_int_equal(load("[log]\nlevel = war\n", &c, err), SH_ECONFIG);
    assert_non_null(strstr(err, "info|warn"));
    assert_int_equal(load("[log]\nlevel = warnx\n", &c, err), SH_ECONFIG);
}

static void test_duplicate_key(void **state)
{
    (void)state;
    tcfg c;
    char err[SH_CONFIG_ERR_BYTES];
    assert_int_equal(load("[http]\nport = 1\nport = 2\n", &c, err), SH_ECONFIG);
    assert_non_null(strstr(err, "t.ini:3:"));
    assert_non_null(strstr(err, "duplicate"));
}

static void test_syntax_error(void **state)
{
    (void)state;
    tcfg c;
    char err[SH_CONFIG_ERR_BYTES];
    assert_int_equal(load("[http]\nport 80\n", &c, err), SH_ECONFIG);
    assert_non_null(strstr(err, "t.ini:2:"));
}

static void test_file_and_overrides(void **state)
{
    (void)state;
    char path[] = "/tmp/test_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "[http]\nport = 7000\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    tcfg c;
    char err[SH_CONFIG_ERR_BYTES];
    const char *ov[] = {"http.batch=5", "node.name=zz"};
    assert_int_equal(sh_config_load(tkeys, NKEYS, &c, path, ov, 2, err, sizeof err), SH_OK);
    assert_int_equal(c.port, 7000);
    assert_int_equal(c.batch, 5);
    assert_string_equal(c.name, "zz");
    const char *bad[] = {"http.nope=1"};
    assert_int_equal(sh_config_load(tkeys, NKEYS, &c, path, bad, 1, err, sizeof err), SH_ECONFIG);
    assert_non_null(strstr(err, "nope"));
    const char *range[] = {"http.port=0"};
    assert_int_equal(sh_config_load(tkeys, NKEYS, &c, path, range, 1, err, sizeof err), SH_ECONFIG);
    unlink(path);
    assert_int_equal(sh_config_load(tkeys, NKEYS, &c, path, NULL, 0, err, sizeof err), SH_EIO);
    assert_non_null(strstr(err, path));
}

static void test_long_line(void **state)
{
    (void)state;
    tcfg c;
    char err[SH_CONFIG_ERR_BYTES];
    char text[600];
    memset(text, 0, sizeof text);
    strcpy(text, "[node]\n; ");
    memset(text + strlen(text), 'x', 400);
    strcat(text, "\nname = ok\n");
    assert_int_equal(load(text, &c, err), SH_ECONFIG);
    assert_non_null(strstr(err, "t.ini:2:"));
    assert_non_null(strstr(err, "longer"));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values_and_comments),
        cmocka_unit_test(test_unknown_key_names_line),
        cmocka_unit_test(test_unknown_section),
        cmocka_unit_test(test_int_bounds),
        cmocka_unit_test(test_int_malformed),
        cmocka_unit_test(test_bool_and_string),
        cmocka_unit_test(test_choices),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_file_and_overrides),
        cmocka_unit_test(test_long_line),
    };
    return T_CMOCKA_MAIN(argc, argv, "config", tests, NULL, NULL);
}
