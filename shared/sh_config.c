/* sh_config.c -- the INI loader behind every daemon's configuration.
 *
 * inih does the INI syntax; this file does everything that makes a config
 * trustworthy: defaults, bounds, unknown keys, duplicates, and error messages
 * that name file, line and key. inih as Debian builds it does not pass line
 * numbers to the handler, so lines are counted by our own reader, which inih
 * calls once per line (the same count inih uses for its own syntax errors). */
#define _POSIX_C_SOURCE 200809L
#include "sh_config.h"

#include "sh_limits.h"
#include "sh_log.h"

#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* inih's compiled-in line buffer (INI_MAX_LINE in Debian's build). */
#define SH_CONFIG_INIH_LINE_BYTES 200

typedef struct sh_config_ctx {
    const sh_config_key *keys;
    size_t nkeys;
    void *cfg;
    const char *name; /* file name for messages */
    int line;         /* current line, counted by the readers */
    int long_line;    /* first line that was too long, 0 if none */
    unsigned char seen[SH_CONFIG_KEYS_MAX];
    char *err;
    size_t errlen;
    int failed;
    /* in-memory source */
    const char *text;
    /* file source */
    FILE *fp;
} sh_config_ctx;

/* ---- values -------------------------------------------------------------- */

static int sh_config_parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"1", "yes", "true", "on"};
    static const char *const no[] = {"0", "no", "false", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* Is value one of the '|'-separated words of choices? */
static int sh_config_is_choice(const char *choices, const char *value)
{
    size_t vlen = strlen(value);
    const char *p = choices;
    while (*p != '\0') {
        const char *bar = strchr(p, '|');
        size_t wlen = bar ? (size_t)(bar - p) : strlen(p);
        if (wlen == vlen && strncmp(p, value, vlen) == 0) {
            return 1;
        }
        p += wlen + (bar ? 1 : 0);
    }
    return 0;
}

/* Parses and checks value for key k, storing it in cfg. On failure writes a
 * message (without location) into why and returns -1. */
static int sh_config_apply(const sh_config_key *k, void *cfg, const char *value, char *why,
                           size_t whylen)
{
    char *field = (char *)cfg + k->offset;
    switch (k->type) {
    case SH_CONFIG_INT: {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (value[0] == '\0' || end == value || *end != '\0' || errno == ERANGE) {
            snprintf(why, whylen, "value '%s' is not an integer", value);
            return -1;
        }
        if (v < k->min || v > k->max) {
            snprintf(why, whylen, "value %lld out of range [%" PRId64 ", %" PRId64 "]", v, k->min,
                     k->max);
            return -1;
        }
        int64_t v64 = (int64_t)v;
        memcpy(field, &v64, sizeof v64);
        return 0;
    }
    case SH_CONFIG_BOOL: {
        int b = 0;
        if (sh_config_parse_bool(value, &b) != 0) {
            snprintf(why, whylen, "value '%s' is not a boolean (yes/no)", value);
            return -1;
        }
        memcpy(field, &b, sizeof b);
        return 0;
    }
    case SH_CONFIG_STR: {
        size_t len = strlen(value);
        if ((int64_t)len < k->min || (int64_t)len > k->max || len >= k->size) {
            snprintf(why, whylen, "length %zu out of range [%" PRId64 ", %" PRId64 "]", len, k->min,
                     k->max);
            return -1;
        }
        if (k->choices != NULL && !sh_config_is_choice(k->choices, value)) {
            snprintf(why, whylen, "value '%s' is not one of %s", value, k->choices);
            return -1;
        }
        memcpy(field, value, len + 1);
        return 0;
    }
    }
    snprintf(why, whylen, "bad key type");
    return -1;
}

static const sh_config_key *sh_config_find(const sh_config_key *keys, size_t nkeys,
                                           const char *section, const char *name, size_t *idx)
{
    for (size_t i = 0; i < nkeys; i++) {
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0) {
            *idx = i;
            return &keys[i];
        }
    }
    return NULL;
}

static int sh_config_section_known(const sh_config_key *keys, size_t nkeys, const char *section)
{
    for (size_t i = 0; i < nkeys; i++) {
        if (strcmp(keys[i].section, section) == 0) {
            return 1;
        }
    }
    return 0;
}

static void sh_config_fail(sh_config_ctx *ctx, const char *fmt, const char *a, const char *b,
                           const char *why)
{
    if (ctx->failed) {
        return; /* keep the first error: it is the one to fix first */
    }
    ctx->failed = 1;
    char msg[SH_CONFIG_ERR_BYTES];
    snprintf(msg, sizeof msg, fmt, a, b, why);
    snprintf(ctx->err, ctx->errlen, "%s:%d: %s", ctx->name, ctx->line, msg);
}

/* ---- inih callbacks ----------------------------------------------------- */

static int sh_config_handler(void *user, const char *section, const char *name, const char *value)
{
    sh_config_ctx *ctx = user;
    size_t idx = 0;
    const sh_config_key *k = sh_config_find(ctx->keys, ctx->nkeys, section, name, &idx);
    if (k == NULL) {
        if (!sh_config_section_known(ctx->keys, ctx->nkeys, section)) {
            sh_config_fail(ctx, "unknown section [%s] (key '%s')%s", section, name, "");
        } else {
            sh_config_fail(ctx, "unknown key '%s' in [%s]%s", name, section, "");
        }
        return 0;
    }
    if (ctx->seen[idx]) {
        sh_config_fail(ctx, "duplicate key '%s' in [%s]%s", name, section, "");
        return 0;
    }
    ctx->seen[idx] = 1;
    char why[256];
    if (sh_config_apply(k, ctx->cfg, value, why, sizeof why) != 0) {
        sh_config_fail(ctx, "key '%s' in [%s]: %s", name, section, why);
        return 0;
    }
    return 1;
}

/* Hands inih one line; counts lines and notices lines longer than inih's buffer. */
static char *sh_config_reader_common(sh_config_ctx *ctx, char *str, int num, const char *line,
                                     size_t len)
{
    ctx->line++;
    size_t has_nl = (len > 0 && line[len - 1] == '\n') ? 1 : 0;
    if (len - has_nl >= (size_t)num - 1 && ctx->long_line == 0) {
        ctx->long_line = ctx->line;
    }
    size_t n = len < (size_t)num - 1 ? len : (size_t)num - 1;
    memcpy(str, line, n);
    str[n] = '\0';
    return str;
}

static char *sh_config_string_reader(char *str, int num, void *stream)
{
    sh_config_ctx *ctx = stream;
    if (ctx->text == NULL || *ctx->text == '\0') {
        return NULL;
    }
    const char *nl = strchr(ctx->text, '\n');
    size_t len = nl ? (size_t)(nl - ctx->text) + 1 : strlen(ctx->text);
    const char *line = ctx->text;
    ctx->text += len;
    return sh_config_reader_common(ctx, str, num, line, len);
}

static char *sh_config_file_reader(char *str, int num, void *stream)
{
    sh_config_ctx *ctx = stream;
    char buf[SH_CONFIG_LINE_BYTES_MAX];
    if (fgets(buf, sizeof buf, ctx->fp) == NULL) {
        return NULL;
    }
    size_t len = strlen(buf);
    if (len == sizeof buf - 1 && buf[len - 1] != '\n') {
        /* Longer than our own buffer: swallow the rest so lines stay counted right. */
        int c;
        while ((c = fgetc(ctx->fp)) != EOF && c != '\n') {
        }
    }
    return sh_config_reader_common(ctx, str, num, buf, len);
}

/* ---- loading ------------------------------------------------------------- */

static sh_err sh_config_defaults(const sh_config_key *keys, size_t nkeys, void *cfg, char *err,
                                 size_t errlen)
{
    SH_ASSERT(nkeys <= SH_CONFIG_KEYS_MAX);
    for (size_t i = 0; i < nkeys; i++) {
        char why[256];
        SH_ASSERT(keys[i].def != NULL);
        if (sh_config_apply(&keys[i], cfg, keys[i].def, why, sizeof why) != 0) {
            /* A default outside its own bounds is a bug in the key table. */
            snprintf(err, errlen, "default of %s.%s: %s", keys[i].section, keys[i].name, why);
            return SH_EINTERNAL;
        }
    }
    return SH_OK;
}

static sh_err sh_config_run(sh_config_ctx *ctx, ini_reader reader)
{
    int rc = ini_parse_stream(reader, ctx, sh_config_handler, ctx);
    if (ctx->failed) {
        return SH_ECONFIG;
    }
    if (ctx->long_line != 0) {
        snprintf(ctx->err, ctx->errlen, "%s:%d: line longer than %d bytes", ctx->name,
                 ctx->long_line, SH_CONFIG_INIH_LINE_BYTES - 2);
        return SH_ECONFIG;
    }
    if (rc > 0) {
        snprintf(ctx->err, ctx->errlen, "%s:%d: syntax error (expected [section] or key = value)",
                 ctx->name, rc);
        return SH_ECONFIG;
    }
    if (rc < 0) {
        snprintf(ctx->err, ctx->errlen, "%s: cannot be read", ctx->name);
        return SH_EIO;
    }
    return SH_OK;
}

static sh_err sh_config_override(const sh_config_key *keys, size_t nkeys, void *cfg, const char *ov,
                                 char *err, size_t errlen)
{
    char section[64], name[64];
    const char *dot = strchr(ov, '.');
    const char *eq = strchr(ov, '=');
    if (dot == NULL || eq == NULL || dot > eq || (size_t)(dot - ov) >= sizeof section ||
        (size_t)(eq - dot - 1) >= sizeof name) {
        snprintf(err, errlen, "-o %s: expected section.key=value", ov);
        return SH_ECONFIG;
    }
    memcpy(section, ov, (size_t)(dot - ov));
    section[dot - ov] = '\0';
    memcpy(name, dot + 1, (size_t)(eq - dot - 1));
    name[eq - dot - 1] = '\0';
    size_t idx = 0;
    const sh_config_key *k = sh_config_find(keys, nkeys, section, name, &idx);
    if (k == NULL) {
        snprintf(err, errlen, "-o %s: unknown key '%s' in [%s]", ov, name, section);
        return SH_ECONFIG;
    }
    char why[256];
    if (sh_config_apply(k, cfg, eq + 1, why, sizeof why) != 0) {
        snprintf(err, errlen, "-o %s: key '%s' in [%s]: %s", ov, name, section, why);
        return SH_ECONFIG;
    }
    return SH_OK;
}

sh_err sh_config_load(const sh_config_key *keys, size_t nkeys, void *cfg, const char *path,
                      const char *const *overrides, size_t noverrides, char *err, size_t errlen)
{
    SH_ASSERT(keys != NULL && cfg != NULL && err != NULL && errlen > 0);
    err[0] = '\0';
    sh_err rc = sh_config_defaults(keys, nkeys, cfg, err, errlen);
    if (rc != SH_OK) {
        return rc;
    }
    if (path != NULL) {
        sh_config_ctx ctx = {
            .keys = keys, .nkeys = nkeys, .cfg = cfg, .name = path, .err = err, .errlen = errlen};
        ctx.fp = fopen(path, "r");
        if (ctx.fp == NULL) {
            snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
            return SH_EIO;
        }
        rc = sh_config_run(&ctx, sh_config_file_reader);
        fclose(ctx.fp);
        if (rc != SH_OK) {
            return rc;
        }
    }
    for (size_t i = 0; i < noverrides; i++) {
        rc = sh_config_override(keys, nkeys, cfg, overrides[i], err, errlen);
        if (rc != SH_OK) {
            return rc;
        }
    }
    return SH_OK;
}

sh_err sh_config_load_string(const sh_config_key *keys, size_t nkeys, void *cfg, const char *text,
                             const char *name, char *err, size_t errlen)
{
    SH_ASSERT(keys != NULL && cfg != NULL && text != NULL && name != NULL && err != NULL);
    err[0] = '\0';
    sh_err rc = sh_config_defaults(keys, nkeys, cfg, err, errlen);
    if (rc != SH_OK) {
        return rc;
    }
    sh_config_ctx ctx = {.keys = keys,
                         .nkeys = nkeys,
                         .cfg = cfg,
                         .name = name,
                         .err = err,
                         .errlen = errlen,
                         .text = text};
    return sh_config_run(&ctx, sh_config_string_reader);
}

void sh_config_dump(const sh_config_key *keys, size_t nkeys, const void *cfg, int fd)
{
    for (size_t i = 0; i < nkeys; i++) {
        const char *field = (const char *)cfg + keys[i].offset;
        char line[SH_CONFIG_STRING_BYTES_MAX + 128];
        int n = 0;
        if (keys[i].type == SH_CONFIG_INT) {
            int64_t v;
            memcpy(&v, field, sizeof v);
            n = snprintf(line, sizeof line, "%s.%s = %" PRId64 "\n", keys[i].section, keys[i].name,
                         v);
        } else if (keys[i].type == SH_CONFIG_BOOL) {
            int b;
            memcpy(&b, field, sizeof b);
            n = snprintf(line, sizeof line, "%s.%s = %s\n", keys[i].section, keys[i].name,
                         b ? "yes" : "no");
        } else {
            n = snprintf(line, sizeof line, "%s.%s = %s\n", keys[i].section, keys[i].name, field);
        }
        if (n > 0) {
            size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
            ssize_t w = write(fd, line, len);
            (void)w;
        }
    }
}
