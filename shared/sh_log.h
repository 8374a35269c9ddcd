/* sh_log.h -- one log line format for every daemon, and the assert that stays on.
 *
 * A line reads:  time pid role level module message key=value ...
 *   2026-11-21T21:40:02.123Z 4242 scheduler info http listening addr=127.0.0.1:8080
 * Each line is written with one write(2), so lines from several threads never
 * interleave. Logging is for events, not for the hot path: counters are. */
#ifndef SH_LOG_H
#define SH_LOG_H

#include <stdarg.h>

typedef enum sh_log_level {
    SH_LOG_DEBUG = 0,
    SH_LOG_INFO,
    SH_LOG_WARN,
    SH_LOG_ERROR,
} sh_log_level;

/* Sets the role printed on every line ("scheduler", "node", "syncd", ...),
 * the lowest level written and the file descriptor lines go to (2 = stderr).
 * Call once at start, before threads exist. role is copied. */
void sh_log_init(const char *role, sh_log_level min_level, int fd);

/* Parses "debug", "info", "warn", "error"; returns -1 when name is none of them. */
int sh_log_level_parse(const char *name);

/* Writes one line. module is a short word ("http", "cluster"); fmt holds the
 * message and then key=value pairs. Thread-safe. */
void sh_log(sh_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sh_logv(sh_log_level level, const char *module, const char *fmt, va_list ap);

#define SH_DEBUG(mod, ...) sh_log(SH_LOG_DEBUG, (mod), __VA_ARGS__)
#define SH_INFO(mod, ...)  sh_log(SH_LOG_INFO, (mod), __VA_ARGS__)
#define SH_WARN(mod, ...)  sh_log(SH_LOG_WARN, (mod), __VA_ARGS__)
#define SH_ERROR(mod, ...) sh_log(SH_LOG_ERROR, (mod), __VA_ARGS__)

/* Logs the failed expression with file and line, then aborts. */
_Noreturn void sh_assert_fail(const char *expr, const char *file, int line);

/* Stays on in release builds: asserts guard programmer errors, never data from
 * the network, Redis or MySQL (validate those and answer with an error). */
#define SH_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            sh_assert_fail(#cond, __FILE__, __LINE__);                                             \
        }                                                                                          \
    } while (0)

#endif
