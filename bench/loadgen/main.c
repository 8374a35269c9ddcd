/* main.c -- stock-loadgen: load generator and verifier for the HTTP API.
 *
 * Not built yet: it arrives with the load generator issue. It says so. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("usage: stock-loadgen --url URL [options]\n");
        return 0;
    }
    fprintf(stderr,
            "stock-loadgen: not built yet: the load generator arrives with a later issue\n");
    return 2;
}
