/* t_cmocka.h -- the main() of every cmocka test binary: run the group, or name it.
 *
 * Why: tests/run.sh must count every test a binary declares, also the ones a
 * crash, a hang or a failed group setup never ran. cmocka's own summary counts
 * only what ran ("[==========] 0 test(s) run." after a failed group setup, and
 * nothing at all after an abort), so the binary itself names its tests:
 *
 *     BIN --list    prints the name of every test of the group, one a line, and
 *                   exits 0 without running anything (no setup, no environment);
 *     BIN           runs the group as cmocka_run_group_tests_name() does.
 *
 * The harness runs `--list` first, then the group, and counts a declared test
 * as passed only when its "[       OK ] NAME" line is in the output. */
#ifndef T_CMOCKA_H
#define T_CMOCKA_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

/* Runs (or with `--list`, names) the count tests of tests[] as the group
 * group_name; returns main()'s exit status: cmocka's (0 when every test
 * passed), 0 after `--list`, 2 on an unknown argument. */
int t_cmocka_main(int argc, char **argv, const char *group_name, const struct CMUnitTest *tests,
                  size_t count, CMFixtureFunction group_setup, CMFixtureFunction group_teardown);

/* T_CMOCKA_MAIN(argc, argv, "name", tests, setup, teardown): tests is the
 * array itself (its length is taken with sizeof), as for cmocka's own macro. */
#define T_CMOCKA_MAIN(argc, argv, group_name, tests, group_setup, group_teardown)                  \
    t_cmocka_main((argc), (argv), (group_name), (tests), sizeof(tests) / sizeof((tests)[0]),       \
                  (group_setup), (group_teardown))

#endif
