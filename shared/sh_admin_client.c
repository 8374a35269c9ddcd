/* sh_admin_client.c -- one exchange with the scheduler's admin socket, bounded in time.
 *
 * A non-blocking socket and poll(2) against one monotonic deadline: a Unix
 * connect only waits when the listen backlog is full (EAGAIN), the write only
 * when the socket buffer is, and the read until the reply's newline arrives.
 * Errors name the socket path and the likely cause, because "connection
 * refused" alone sends an operator looking in the wrong place. Used by
 * stockctl and by the load generator's --verify. */
#include "sh_admin_client.h"

#include "sh_clock.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define SH_ADMIN_READ_CHUNK_BYTES 65536
#define SH_ADMIN_CONNECT_RETRY_MS 10 /* backlog full: try again after this */

static sh_err admin_fail(char *err, size_t errlen, sh_err rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static sh_err admin_fail(char *err, size_t errlen, sh_err rc, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Milliseconds left before deadline_ms (monotonic), 0 when past. */
static int admin_left_ms(uint64_t deadline_ms)
{
    uint64_t now = sh_clock_mono_ms();
    if (now >= deadline_ms) {
        return 0;
    }
    uint64_t left = deadline_ms - now;
    return left > (uint64_t)INT32_MAX ? INT32_MAX : (int)left;
}

/* Waits until fd is ready for events or the deadline passes. 1 ready, 0 timed
 * out, -1 error (errno set). */
static int admin_wait(int fd, short events, uint64_t deadline_ms)
{
    for (;;) {
        int left = admin_left_ms(deadline_ms);
        if (left == 0) {
            return 0;
        }
        struct pollfd p = {.fd = fd, .events = events, .revents = 0};
        int n = poll(&p, 1, left);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -1;
        }
        if (n > 0) {
            return 1;
        }
    }
}

static const char *admin_connect_hint(int e)
{
    switch (e) {
    case ENOENT:
        return " (is stock-scheduler running? use --socket PATH or $STOCK_ADMIN_SOCKET)";
    case ECONNREFUSED:
        return " (a stale socket file: is stock-scheduler running?)";
    case EACCES:
    case EPERM:
        return " (the socket is mode 0660: run as its owner or group)";
    default:
        return "";
    }
}

static sh_err admin_connect(int fd, const char *path, uint64_t deadline_ms, char *err,
                            size_t errlen)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof sun.sun_path) {
        return admin_fail(err, errlen, SH_EINVAL, "admin socket path '%s' is empty or too long",
                          path);
    }
    memcpy(sun.sun_path, path, n);
    for (;;) {
        if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0) {
            return SH_OK;
        }
        int e = errno;
        if (e == EINTR) {
            continue;
        }
        if (e == EINPROGRESS) {
            int w = admin_wait(fd, POLLOUT, deadline_ms);
            if (w <= 0) {
                return admin_fail(err, errlen, w == 0 ? SH_ETIMEDOUT : SH_EIO,
                                  "cannot connect to admin socket %s: %s", path,
                                  w == 0 ? "timed out" : strerror(errno));
            }
            int soerr = 0;
            socklen_t len = sizeof soerr;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) {
                soerr = errno;
            }
            if (soerr == 0) {
                return SH_OK;
            }
            return admin_fail(err, errlen, SH_EIO, "cannot connect to admin socket %s: %s%s", path,
                              strerror(soerr), admin_connect_hint(soerr));
        }
        if (e == EAGAIN) {
            /* The listen backlog is full; the scheduler is busy. */
            if (admin_left_ms(deadline_ms) == 0) {
                return admin_fail(err, errlen, SH_ETIMEDOUT,
                                  "cannot connect to admin socket %s: backlog full until the "
                                  "timeout",
                                  path);
            }
            sh_clock_sleep_ms(SH_ADMIN_CONNECT_RETRY_MS);
            continue;
        }
        return admin_fail(err, errlen, SH_EIO, "cannot connect to admin socket %s: %s%s", path,
                          strerror(e), admin_connect_hint(e));
    }
}

static sh_err admin_send_all(int fd, const char *path, const char *buf, size_t len,
                             uint64_t deadline_ms, char *err, size_t errlen)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = admin_wait(fd, POLLOUT, deadline_ms);
            if (w == 0) {
                return admin_fail(err, errlen, SH_ETIMEDOUT,
                                  "admin socket %s: timed out sending the request", path);
            }
            if (w < 0) {
                return admin_fail(err, errlen, SH_EIO, "admin socket %s: poll: %s", path,
                                  strerror(errno));
            }
            continue;
        }
        return admin_fail(err, errlen, SH_EIO,
                          "admin socket %s: cannot send the request: %s (the scheduler closed "
                          "the connection: too many admin clients?)",
                          path, n < 0 ? strerror(errno) : "nothing written");
    }
    return SH_OK;
}

/* Reads until a newline; the reply is everything before it. */
static sh_err admin_recv_line(int fd, const char *path, uint64_t deadline_ms, size_t reply_max,
                              char **reply, size_t *reply_len, char *err, size_t errlen)
{
    size_t cap = SH_ADMIN_READ_CHUNK_BYTES, len = 0;
    char *buf = malloc(cap + 1);
    if (buf == NULL) {
        return admin_fail(err, errlen, SH_ENOMEM, "out of memory");
    }
    for (;;) {
        if (cap - len < SH_ADMIN_READ_CHUNK_BYTES / 2) {
            if (cap >= reply_max) {
                free(buf);
                return admin_fail(err, errlen, SH_EIO,
                                  "admin socket %s: reply longer than %zu bytes", path, reply_max);
            }
            size_t ncap = cap * 2 > reply_max ? reply_max : cap * 2;
            char *nbuf = realloc(buf, ncap + 1);
            if (nbuf == NULL) {
                free(buf);
                return admin_fail(err, errlen, SH_ENOMEM, "out of memory reading the reply");
            }
            buf = nbuf;
            cap = ncap;
        }
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n > 0) {
            char *nl = memchr(buf + len, '\n', (size_t)n);
            len += (size_t)n;
            if (nl != NULL) {
                *nl = '\0';
                *reply_len = (size_t)(nl - buf);
                *reply = buf;
                return SH_OK;
            }
            continue;
        }
        if (n == 0) {
            free(buf);
            return admin_fail(err, errlen, SH_EIO,
                              "admin socket %s: the scheduler closed the connection %s "
                              "(too many admin clients, or the request was too long?)",
                              path, len ? "in the middle of its reply" : "without replying");
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int w = admin_wait(fd, POLLIN, deadline_ms);
            if (w == 0) {
                free(buf);
                return admin_fail(err, errlen, SH_ETIMEDOUT,
                                  "admin socket %s: no reply within the timeout", path);
            }
            if (w < 0) {
                free(buf);
                return admin_fail(err, errlen, SH_EIO, "admin socket %s: poll: %s", path,
                                  strerror(errno));
            }
            continue;
        }
        int e = errno;
        free(buf);
        return admin_fail(err, errlen, SH_EIO, "admin socket %s: cannot read the reply: %s", path,
                          strerror(e));
    }
}

sh_err sh_admin_call(const char *path, const char *request, int64_t timeout_ms, size_t reply_max,
                     char **reply, size_t *reply_len, char *err, size_t errlen)
{
    if (reply == NULL || reply_len == NULL || path == NULL || request == NULL || timeout_ms <= 0 ||
        reply_max < SH_ADMIN_READ_CHUNK_BYTES) {
        return admin_fail(err, errlen, SH_EINVAL, "bad arguments");
    }
    *reply = NULL;
    *reply_len = 0;
    uint64_t deadline_ms = sh_clock_mono_ms() + (uint64_t)timeout_ms;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return admin_fail(err, errlen, SH_EIO, "socket: %s", strerror(errno));
    }
    sh_err rc = admin_connect(fd, path, deadline_ms, err, errlen);
    if (rc == SH_OK) {
        size_t n = strlen(request);
        char *line = malloc(n + 1);
        if (line == NULL) {
            rc = admin_fail(err, errlen, SH_ENOMEM, "out of memory");
        } else {
            memcpy(line, request, n);
            line[n] = '\n';
            rc = admin_send_all(fd, path, line, n + 1, deadline_ms, err, errlen);
            free(line);
        }
    }
    if (rc == SH_OK) {
        rc = admin_recv_line(fd, path, deadline_ms, reply_max, reply, reply_len, err, errlen);
    }
    close(fd);
    return rc;
}
