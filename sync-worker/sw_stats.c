/* sw_stats.c -- counters and the batch-size histogram of the sync worker.
 *
 * Why a module of its own: three files bump these counters (server, apply,
 * MySQL wrapper) and main prints them; keeping the struct and the one summary
 * format here keeps the log line the same wherever a counter is added. */
#include "sw_stats.h"

#include "sh_err.h"
#include "sh_log.h"

#include <string.h>

#define SS_MOD "stats"

sh_err sw_stats_init(sw_stats *s)
{
    SH_ASSERT(s != NULL);
    memset(s, 0, sizeof *s);
    sh_hist_init(&s->batch_details);
    return pthread_mutex_init(&s->mu, NULL) == 0 ? SH_OK : SH_ENOMEM;
}

void sw_stats_fini(sw_stats *s)
{
    SH_ASSERT(s != NULL);
    pthread_mutex_destroy(&s->mu);
}

void sw_stats_batch_size(sw_stats *s, uint64_t n)
{
    SH_ASSERT(s != NULL);
    pthread_mutex_lock(&s->mu);
    sh_hist_record(&s->batch_details, n);
    pthread_mutex_unlock(&s->mu);
}

void sw_stats_snapshot(sw_stats *s, sw_stats_snap *out)
{
    SH_ASSERT(s != NULL && out != NULL);
    out->requests = atomic_load(&s->requests);
    out->batches_applied = atomic_load(&s->batches_applied);
    out->batches_duplicate = atomic_load(&s->batches_duplicate);
    out->details_inserted = atomic_load(&s->details_inserted);
    out->details_duplicate = atomic_load(&s->details_duplicate);
    out->gaps = atomic_load(&s->gaps);
    out->queries = atomic_load(&s->queries);
    out->catalog_ops = atomic_load(&s->catalog_ops);
    out->transactions = atomic_load(&s->transactions);
    out->bad_messages = atomic_load(&s->bad_messages);
    out->mysql_errors = atomic_load(&s->mysql_errors);
    out->tx_retries = atomic_load(&s->tx_retries);
    out->reconnects = atomic_load(&s->reconnects);
    out->replies_dropped = atomic_load(&s->replies_dropped);
}

void sw_stats_log(sw_stats *s, sw_stats_snap *prev, uint64_t elapsed_ms, int force)
{
    SH_ASSERT(s != NULL && prev != NULL);
    sw_stats_snap now;
    sw_stats_snapshot(s, &now);
    if (!force && now.requests == prev->requests) {
        return;
    }
    sh_hist_summary hs;
    pthread_mutex_lock(&s->mu);
    sh_hist_summarize(&s->batch_details, &hs);
    pthread_mutex_unlock(&s->mu);
    uint64_t inserted = now.details_inserted - prev->details_inserted;
    uint64_t rate = elapsed_ms > 0 ? inserted * 1000u / elapsed_ms : 0;
    SH_INFO(SS_MOD,
            "summary requests=%llu batches_applied=%llu batches_duplicate=%llu "
            "details_inserted=%llu details_per_s=%llu details_duplicate=%llu gaps=%llu "
            "queries=%llu catalog_ops=%llu transactions=%llu bad_messages=%llu "
            "mysql_errors=%llu tx_retries=%llu reconnects=%llu replies_dropped=%llu "
            "batch_details_p50=%llu batch_details_p99=%llu batch_details_max=%llu",
            (unsigned long long)(now.requests - prev->requests),
            (unsigned long long)(now.batches_applied - prev->batches_applied),
            (unsigned long long)(now.batches_duplicate - prev->batches_duplicate),
            (unsigned long long)inserted, (unsigned long long)rate,
            (unsigned long long)(now.details_duplicate - prev->details_duplicate),
            (unsigned long long)(now.gaps - prev->gaps),
            (unsigned long long)(now.queries - prev->queries),
            (unsigned long long)(now.catalog_ops - prev->catalog_ops),
            (unsigned long long)(now.transactions - prev->transactions),
            (unsigned long long)(now.bad_messages - prev->bad_messages),
            (unsigned long long)(now.mysql_errors - prev->mysql_errors),
            (unsigned long long)(now.tx_retries - prev->tx_retries),
            (unsigned long long)(now.reconnects - prev->reconnects),
            (unsigned long long)(now.replies_dropped - prev->replies_dropped),
            (unsigned long long)hs.p50, (unsigned long long)hs.p99, (unsigned long long)hs.max);
    *prev = now;
}
