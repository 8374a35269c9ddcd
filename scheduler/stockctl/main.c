/* main.c -- stockctl: the command-line face of the scheduler's admin socket.
 *
 * The admin socket arrives with the deduction path; until then stockctl says so
 * rather than pretending. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("usage: stockctl [--socket PATH] [--json] COMMAND ...\n");
        return 0;
    }
    fprintf(stderr, "stockctl: not built yet: the admin socket arrives with the deduction path\n");
    return 2;
}
