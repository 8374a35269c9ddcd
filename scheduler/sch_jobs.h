/* sch_jobs.h -- the operator thread: admin commands too long for the loop.
 *
 * An audit reads every order record of a SKU; a reconcile reads every detail
 * of a partition. On the loop thread either would stop deductions for its
 * whole duration, so they run here, one at a time, on one thread with its own
 * Redis router and its own sync worker link (opened on the first job; NNG and
 * hiredis objects are never shared with the loop). The loop thread submits a
 * job and gets its reply back through a pipe watched by its event base: the
 * done callback runs on the loop thread, in submission order.
 *
 * Bounded: at most SH_AUDIT_QUEUE_MAX jobs wait or run; more are refused
 * (SH_EBUSY). A job whose owner went away (sch_jobs_forget) still runs to the
 * end (a half-run reconcile must finish), and its reply is dropped. */
#ifndef SCH_JOBS_H
#define SCH_JOBS_H

#include "sch_json.h"

#include "sh_err.h"

#include <cjson/cJSON.h>
#include <stdint.h>

struct event_base;
struct sh_cluster;
struct sch_sync;

typedef struct sch_jobs sch_jobs;
typedef struct sch_job sch_job;

typedef struct sch_jobs_config {
    const char *redis_seeds;
    uint32_t redis_timeout_ms;
    const char *sync_urls; /* NULL or "": no sync link */
    uint32_t sync_timeout_ms;
} sch_jobs_config;

/* What a job runs with: the operator thread's own connections. */
typedef struct sch_job_env {
    struct sh_cluster *router;
    struct sch_sync *sync; /* NULL when no sync worker is configured */
} sch_job_env;

/* Runs on the operator thread; returns the reply, or NULL with *f set. */
typedef cJSON *(*sch_job_run_fn)(const sch_job_env *env, void *arg, sch_fail *f);
/* Runs on the loop thread with the reply (owned by the callee) or NULL and f. */
typedef void (*sch_job_done_fn)(void *owner, cJSON *reply, const sch_fail *f);

/* Starts the thread and watches its pipe on base. SH_ENOMEM, SH_EIO. */
sh_err sch_jobs_open(sch_jobs **out, struct event_base *base, const sch_jobs_config *cfg);

/* Stops the thread after the job it runs, drops the others and frees j. */
void sch_jobs_close(sch_jobs *j);

/* Runs on the loop thread once per job, after done (also when the owner was
 * forgotten): the loop's share of the job's end, and arg's release. closing
 * is 1 when sch_jobs_close drops the job: then only release arg. */
typedef void (*sch_job_finish_fn)(void *arg, int closing);

/* Queues run(env, arg); done(owner, ...) follows on the loop thread, then
 * finish(arg, 0) (finish may be NULL). SH_EBUSY when SH_AUDIT_QUEUE_MAX jobs
 * are queued (nothing is called then). *handle identifies it for
 * sch_jobs_forget. */
sh_err sch_jobs_submit(sch_jobs *j, sch_job_run_fn run, void *arg, sch_job_finish_fn finish,
                       sch_job_done_fn done, void *owner, sch_job **handle);

/* The owner of job is gone: its done callback will not be called. Loop thread. */
void sch_jobs_forget(sch_job *job);

#endif
