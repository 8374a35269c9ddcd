/* lg_admin.c -- one request/reply on the admin socket, bounded in time (see lg_admin.h).
 *
 * A non-blocking socket and poll(2) against one monotonic deadline: a Unix
 * connect waits only when the listen backlog is full (EAGAIN), the write only
 * when the socket buffer is, the read until the reply's newline arrives. The
 * reply buffer doubles as it fills, up to LG_ADMIN_REPLY_BYTES_MAX. */
#include "lg_admin.h"

#include "sh_clock.h"
#include "sh_log.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define LG_ADMIN_READ_CHUNK_BYTES 65536
#define LG_ADMIN_CONNECT_RETRY_MS 10 /* backlog full: try again after this */

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
static int left_ms(uint64_t deadline_ms)
{
    uint64_t now = sh_clock_mono_ms();
    if (now >= deadline_ms) {
        return 0;
    }
    uint64_t left = deadline_ms - now;
    return left > (uint64_t)INT32_MAX ? INT32_MAX : (int)left;
}

/* Waits until fd is ready for events or the deadline passes: 1 ready, 0 timed
 * out, -1 error (errno set). */
static int wait_fd(int fd, short events, uint64_t deadline_ms)
{
    for (;;) {
        int left = left_ms(deadline_ms);
        if (left == 0) {
            return 0;
        }
        struct pollfd p = {.fd = fd, .events = events, .revents = 0};
        int n = poll(&p, 1, left);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n != 0) {
            return n < 0 ? -1 : 1;
        }
    }
}

static sh_err admin_connect(int fd, const char *path, uint64_t deadline_ms, char *err,
                            size_t errlen)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    for (;;) {
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            return SH_OK;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN && left_ms(deadline_ms) > 0) {
            sh_clock_sleep_ms(LG_ADMIN_CONNECT_RETRY_MS);
            continue;
        }
        if (errno == EAGAIN) {
            return admin_fail(err, errlen, SH_ETIMEDOUT, "admin socket %s: connect timed out",
                              path);
        }
        return admin_fail(err, errlen, SH_EIO, "admin socket %s: cannot connect: %s%s", path,
                          strerror(errno),
                          errno == ENOENT || errno == ECONNREFUSED
                              ? " (is stock-scheduler running with this admin.socket?)"
                              : "");
    }
}

static sh_err admin_write(int fd, const char *path, const char *buf, size_t len,
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
            int w = wait_fd(fd, POLLOUT, deadline_ms);
            if (w == 0) {
                return admin_fail(err, errlen, SH_ETIMEDOUT, "admin socket %s: write timed out",
                                  path);
            }
            if (w > 0) {
                continue;
            }
        }
        return admin_fail(err, errlen, SH_EIO, "admin socket %s: write failed: %s", path,
                          strerror(errno));
    }
    return SH_OK;
}

/* Reads until a newline; on SH_OK *out is the line (NUL-terminated, no newline). */
static sh_err admin_read_line(int fd, const char *path, uint64_t deadline_ms, char **out,
                              size_t *out_len, char *err, size_t errlen)
{
    size_t cap = LG_ADMIN_READ_CHUNK_BYTES, len = 0;
    char *buf = malloc(cap + 1);
    if (buf == NULL) {
        return admin_fail(err, errlen, SH_ENOMEM, "admin socket %s: out of memory", path);
    }
    sh_err rc = SH_OK;
    for (;;) {
        if (len == cap) {
            if (cap >= LG_ADMIN_REPLY_BYTES_MAX) {
                rc = admin_fail(err, errlen, SH_EIO, "admin socket %s: reply longer than %u bytes",
                                path, LG_ADMIN_REPLY_BYTES_MAX);
                break;
            }
            size_t ncap = cap * 2 > LG_ADMIN_REPLY_BYTES_MAX ? LG_ADMIN_REPLY_BYTES_MAX : cap * 2;
            char *nbuf = realloc(buf, ncap + 1);
            if (nbuf == NULL) {
                rc = admin_fail(err, errlen, SH_ENOMEM, "admin socket %s: out of memory", path);
                break;
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
                *out = buf;
                *out_len = (size_t)(nl - buf);
                return SH_OK;
            }
            continue;
        }
        if (n == 0) {
            rc = admin_fail(err, errlen, SH_EIO,
                            "admin socket %s: closed before a whole reply (%zu bytes)", path, len);
            break;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int w = wait_fd(fd, POLLIN, deadline_ms);
            if (w > 0) {
                continue;
            }
            if (w == 0) {
                rc = admin_fail(err, errlen, SH_ETIMEDOUT, "admin socket %s: no reply in time",
                                path);
                break;
            }
        }
        rc = admin_fail(err, errlen, SH_EIO, "admin socket %s: read failed: %s", path,
                        strerror(errno));
        break;
    }
    free(buf);
    return rc;
}

sh_err lg_admin_call(const char *path, const char *request, int64_t timeout_ms, char **reply,
                     size_t *reply_len, char *err, size_t errlen)
{
    SH_ASSERT(path != NULL && request != NULL && reply != NULL && reply_len != NULL);
    SH_ASSERT(timeout_ms > 0);
    *reply = NULL;
    *reply_len = 0;
    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        return admin_fail(err, errlen, SH_EINVAL, "admin socket path too long: %s", path);
    }
    uint64_t deadline_ms = sh_clock_mono_ms() + (uint64_t)timeout_ms;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return admin_fail(err, errlen, SH_EIO, "admin socket %s: socket(): %s", path,
                          strerror(errno));
    }
    sh_err rc = admin_connect(fd, path, deadline_ms, err, errlen);
    size_t len = strlen(request);
    char *line = NULL;
    if (rc == SH_OK) {
        line = malloc(len + 2);
        if (line == NULL) {
            rc = admin_fail(err, errlen, SH_ENOMEM, "admin socket %s: out of memory", path);
        }
    }
    if (rc == SH_OK) {
        memcpy(line, request, len);
        line[len] = '\n';
        line[len + 1] = '\0';
        rc = admin_write(fd, path, line, len + 1, deadline_ms, err, errlen);
    }
    if (rc == SH_OK) {
        rc = admin_read_line(fd, path, deadline_ms, reply, reply_len, err, errlen);
    }
    free(line);
    close(fd);
    SH_ASSERT(rc != SH_OK || *reply != NULL);
    return rc;
}
