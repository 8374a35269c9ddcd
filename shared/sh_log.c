/* sh_log.c -- formatted log lines, one write(2) each. */
#define _POSIX_C_SOURCE 200809L
#include "sh_log.h"

#include "sh_limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char sh_log_role[32] = "stock";
static sh_log_level sh_log_min = SH_LOG_INFO;
static int sh_log_fd = 2;

static const char *const sh_log_names[] = {"debug", "info", "warn", "error"};

void sh_log_init(const char *role, sh_log_level min_level, int fd)
{
    SH_ASSERT(role != NULL);
    SH_ASSERT(fd >= 0);
    snprintf(sh_log_role, sizeof sh_log_role, "%s", role);
    sh_log_min = min_level;
    sh_log_fd = fd;
}

int sh_log_level_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof sh_log_names / sizeof sh_log_names[0]); i++) {
        if (strcmp(name, sh_log_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

void sh_logv(sh_log_level level, const char *module, const char *fmt, va_list ap)
{
    if (level < sh_log_min) {
        return;
    }
    char line[SH_LOG_LINE_BYTES_MAX];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n =
        snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %ld %s %s %s ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 ts.tv_nsec / 1000000L, (long)getpid(), sh_log_role, sh_log_names[level], module);
    if (n < 0) {
        return;
    }
    size_t used = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    int m = vsnprintf(line + used, sizeof line - used, fmt, ap);
    if (m > 0) {
        used += (size_t)m < sizeof line - used ? (size_t)m : sizeof line - used - 1;
    }
    if (used >= sizeof line - 1) {
        used = sizeof line - 2; /* truncated: keep room for the newline */
    }
    line[used++] = '\n';
    ssize_t w = write(sh_log_fd, line, used);
    (void)w; /* nowhere to report a failed log write */
}

void sh_log(sh_log_level level, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sh_logv(level, module, fmt, ap);
    va_end(ap);
}

_Noreturn void sh_assert_fail(const char *expr, const char *file, int line)
{
    sh_log(SH_LOG_ERROR, "assert", "assertion failed expr=\"%s\" at=%s:%d", expr, file, line);
    abort();
}
