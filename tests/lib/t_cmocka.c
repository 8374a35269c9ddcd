/* t_cmocka.c -- the shared main() of the cmocka binaries (see t_cmocka.h). */
#include "t_cmocka.h"

#include <stdio.h>
#include <string.h>

int t_cmocka_main(int argc, char **argv, const char *group_name, const struct CMUnitTest *tests,
                  size_t count, CMFixtureFunction group_setup, CMFixtureFunction group_teardown)
{
    const char *prog = argc > 0 ? argv[0] : "test";
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < count; i++) {
            if (printf("%s\n", tests[i].name) < 0) {
                return 1;
            }
        }
        return fflush(stdout) == 0 ? 0 : 1;
    }
    if (argc > 1) {
        fprintf(stderr, "usage: %s [--list]\n  --list  name every test of the group, run none\n",
                prog);
        return 2;
    }
    return _cmocka_run_group_tests(group_name, tests, count, group_setup, group_teardown);
}
