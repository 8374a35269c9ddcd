/* lg_verify_run.c -- the drain wait and the audits of --verify (see lg_verify_run.h).
 *
 * Per SKU, in --skus order, against one deadline for all of them:
 *   1. while the registry shows details pending for the SKU (not yet acked by
 *      a sync worker) and time is left, wait;
 *   2. run the audit; if it shows details above MySQL's synced_seq (or could
 *      not read MySQL) and time is left, wait and go to 1;
 *   3. keep the last audit: lg_verify_finish judges it.
 * A transport error on the admin socket ends that SKU's verification at once
 * (a wrong path or a dead scheduler will not heal by waiting); an error reply
 * (unknown SKU) too. */
#include "lg_verify_run.h"

#include "sh_admin_client.h"
#include "sh_clock.h"
#include "sh_log.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

_Static_assert(LG_ADMIN_PATH_CHARS_MAX < sizeof(((struct sockaddr_un *)0)->sun_path),
               "an --admin-socket path fits sun_path with its NUL");

/* The most an admin reply may hold: a registry of many SKUs is large, an audit small. */
#define LG_ADMIN_REPLY_BYTES_MAX (64u * 1024u * 1024u)

/* One admin call; on success *reply is the line (free() it). */
static sh_err call(const lg_opts *o, const char *req, char **reply, size_t *len, char *err,
                   size_t errlen)
{
    return sh_admin_call(o->admin_socket, req, LG_VERIFY_CALL_TIMEOUT_MS, LG_ADMIN_REPLY_BYTES_MAX,
                         reply, len, err, errlen);
}

/* The SKU's pending details per the registry: 1 and *pending, or 0 when the
 * registry cannot say (not there, lag not read, call failed): ask the audit. */
static int registry_pending(const lg_opts *o, const char *sku, int64_t *pending)
{
    char *reply = NULL;
    size_t len = 0;
    char err[LG_VERIFY_TEXT_BYTES];
    if (call(o, "{\"cmd\":\"registry\"}", &reply, &len, err, sizeof err) != SH_OK) {
        return 0;
    }
    int rc = lg_registry_pending(reply, len, sku, pending);
    free(reply);
    return rc == 1;
}

/* Takes one audit of s->sku into s. Returns 0 when a reply was parsed (ok or
 * an error reply), -1 when there is none (s->admin_error says why). */
static int audit_once(const lg_opts *o, lg_verify_sku *s)
{
    char req[SH_SKU_ID_CHARS_MAX + 32];
    snprintf(req, sizeof req, "{\"cmd\":\"audit\",\"sku\":\"%s\"}", s->sku);
    char *reply = NULL;
    size_t len = 0;
    s->have_audit = 0;
    if (call(o, req, &reply, &len, s->admin_error, sizeof s->admin_error) != SH_OK) {
        return -1;
    }
    char err[LG_VERIFY_TEXT_BYTES];
    if (lg_audit_parse(reply, len, &s->audit, err, sizeof err) != 0) {
        snprintf(s->admin_error, sizeof s->admin_error, "%s", err);
        free(reply);
        return -1;
    }
    free(reply);
    s->have_audit = 1;
    return 0;
}

static void verify_sku(const lg_opts *o, lg_verify_sku *s, uint64_t t0_ms, uint64_t deadline_ms,
                       FILE *progress)
{
    uint64_t next_note_ms = 0;
    s->drain_ms = -1;
    for (;;) {
        uint64_t now = sh_clock_mono_ms();
        int64_t pending = 0;
        int waiting = now < deadline_ms && registry_pending(o, s->sku, &pending) && pending > 0;
        if (!waiting) {
            if (audit_once(o, s) != 0 || !s->audit.reply_ok) {
                return;
            }
            now = sh_clock_mono_ms();
            if (lg_audit_drained(&s->audit)) {
                s->drain_ms = (int64_t)(now - t0_ms);
                return;
            }
            if (now >= deadline_ms) {
                return;
            }
            pending = s->audit.has_mysql ? s->audit.unsynced_details : -1;
        }
        if (progress != NULL && now >= next_note_ms) {
            if (pending >= 0) {
                fprintf(progress,
                        "stock-loadgen: verify %s: %" PRId64
                        " details still wait in Redis for MySQL\n",
                        s->sku, pending);
            } else {
                fprintf(progress, "stock-loadgen: verify %s: the audit cannot read MySQL yet\n",
                        s->sku);
            }
            fflush(progress);
            next_note_ms = now + LG_VERIFY_PROGRESS_MS;
        }
        sh_clock_sleep_ms(LG_VERIFY_POLL_MS);
    }
}

int lg_verify_exec(const lg_opts *o, const lg_stats *st, lg_verify_result *r, FILE *progress)
{
    SH_ASSERT(o != NULL && r != NULL && o->verify);
    SH_ASSERT(st != NULL || o->nexpect == o->nskus);
    memset(r, 0, sizeof *r);
    r->nskus = o->nskus;
    r->drain_timeout_s = o->drain_timeout_s;
    uint64_t t0_ms = sh_clock_mono_ms();
    uint64_t deadline_ms = t0_ms + (uint64_t)(o->drain_timeout_s * 1000.0);
    for (size_t i = 0; i < o->nskus; i++) {
        lg_verify_sku *s = &r->sku[i];
        snprintf(s->sku, sizeof s->sku, "%s", o->skus[i]);
        if (st != NULL) {
            SH_ASSERT(i < st->nskus);
            lg_expect_from_run(&st->sku[i], &s->expect);
        } else {
            lg_expect_exact(o->expect_units[i], &s->expect);
        }
        verify_sku(o, s, t0_ms, deadline_ms, progress);
    }
    lg_verify_finish(r);
    return r->ok ? 0 : -1;
}
