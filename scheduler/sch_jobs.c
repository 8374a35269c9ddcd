/* sch_jobs.c -- the operator thread (see sch_jobs.h).
 *
 * One mutex guards two FIFO lists: jobs waiting for the thread, and jobs done
 * waiting for the loop. The thread signals a done job by writing one byte to
 * a non-blocking pipe; the loop's read callback drains the pipe and then the
 * done list, so a lost or coalesced byte loses no job. */
#include "sch_jobs.h"

#include "sch_sync.h"

#include "sh_cluster.h"
#include "sh_limits.h"
#include "sh_log.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SJ_MOD "jobs"

struct sch_job {
    sch_job *next;
    sch_job_run_fn run;
    void *arg;
    sch_job_finish_fn finish;
    sch_job_done_fn done;
    void *owner; /* NULL once forgotten */
    cJSON *reply;
    sch_fail fail;
};

struct sch_jobs {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool started, stop;
    sch_job *todo, *todo_tail;
    sch_job *done, *done_tail;
    size_t count; /* queued + running + done not yet delivered */
    int pipe_rd, pipe_wr;
    struct event *ev;
    sch_jobs_config cfg;
    char seeds[256];
    char urls[512];
    sch_job_env env; /* the thread's own; opened on its first job */
};

static void sj_push(sch_job **head, sch_job **tail, sch_job *job)
{
    job->next = NULL;
    if (*tail != NULL) {
        (*tail)->next = job;
    } else {
        *head = job;
    }
    *tail = job;
}

static sch_job *sj_pop(sch_job **head, sch_job **tail)
{
    sch_job *job = *head;
    if (job != NULL) {
        *head = job->next;
        if (*head == NULL) {
            *tail = NULL;
        }
    }
    return job;
}

static void sj_free(sch_job *job, int closing)
{
    if (job->finish != NULL) {
        job->finish(job->arg, closing);
    }
    cJSON_Delete(job->reply);
    free(job);
}

/* Opens the thread's router and sync link if they are not open yet. */
static int sj_env_ready(sch_jobs *j, sch_fail *f)
{
    if (j->env.router == NULL) {
        sh_err rc = sh_cluster_open(&j->env.router, j->seeds, j->cfg.redis_timeout_ms);
        if (rc != SH_OK) {
            sch_failf(f, "unavailable", "the operator thread cannot reach Redis: %s",
                      sh_strerror(rc));
            return -1;
        }
    }
    if (j->env.sync == NULL && j->urls[0] != '\0') {
        sch_sync_config sc = {.urls = j->urls, .timeout_ms = j->cfg.sync_timeout_ms};
        sh_err rc = sch_sync_open(&j->env.sync, &sc);
        if (rc != SH_OK) {
            SH_WARN(SJ_MOD, "cannot open the sync worker link err=%s", sh_strerror(rc));
            j->env.sync = NULL; /* MySQL stays unverified; tried again next job */
        }
    }
    return 0;
}

static void *sj_main(void *arg)
{
    sch_jobs *j = arg;
    pthread_mutex_lock(&j->mu);
    for (;;) {
        while (!j->stop && j->todo == NULL) {
            pthread_cond_wait(&j->cv, &j->mu);
        }
        if (j->stop) {
            break;
        }
        sch_job *job = sj_pop(&j->todo, &j->todo_tail);
        pthread_mutex_unlock(&j->mu);
        sch_fail f = {"internal", "the job gave no reply"};
        if (sj_env_ready(j, &f) == 0) {
            job->reply = job->run(&j->env, job->arg, &f);
        }
        job->fail = f;
        pthread_mutex_lock(&j->mu);
        sj_push(&j->done, &j->done_tail, job);
        char b = 1;
        ssize_t w = write(j->pipe_wr, &b, 1); /* full pipe: a byte is already pending */
        (void)w;
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* Loop thread: delivers every done job. */
static void sj_ready_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    sch_jobs *j = arg;
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    for (;;) {
        pthread_mutex_lock(&j->mu);
        sch_job *job = sj_pop(&j->done, &j->done_tail);
        if (job != NULL) {
            SH_ASSERT(j->count > 0);
            j->count--;
        }
        pthread_mutex_unlock(&j->mu);
        if (job == NULL) {
            return;
        }
        if (job->owner != NULL) {
            cJSON *reply = job->reply;
            job->reply = NULL;
            job->done(job->owner, reply, &job->fail);
        }
        sj_free(job, 0);
    }
}

sh_err sch_jobs_open(sch_jobs **out, struct event_base *base, const sch_jobs_config *cfg)
{
    SH_ASSERT(out != NULL && base != NULL && cfg != NULL && cfg->redis_seeds != NULL);
    *out = NULL;
    sch_jobs *j = calloc(1, sizeof *j);
    if (j == NULL) {
        return SH_ENOMEM;
    }
    j->cfg = *cfg;
    snprintf(j->seeds, sizeof j->seeds, "%s", cfg->redis_seeds);
    snprintf(j->urls, sizeof j->urls, "%s", cfg->sync_urls ? cfg->sync_urls : "");
    j->pipe_rd = j->pipe_wr = -1;
    int p[2];
    if (pipe(p) != 0) {
        free(j);
        return SH_EIO;
    }
    j->pipe_rd = p[0];
    j->pipe_wr = p[1];
    if (fcntl(p[0], F_SETFL, O_NONBLOCK) != 0 || fcntl(p[1], F_SETFL, O_NONBLOCK) != 0 ||
        fcntl(p[0], F_SETFD, FD_CLOEXEC) != 0 || fcntl(p[1], F_SETFD, FD_CLOEXEC) != 0) {
        sch_jobs_close(j);
        return SH_EIO;
    }
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->ev = event_new(base, j->pipe_rd, EV_READ | EV_PERSIST, sj_ready_cb, j);
    if (j->ev == NULL || event_add(j->ev, NULL) != 0) {
        sch_jobs_close(j);
        return SH_ENOMEM;
    }
    if (pthread_create(&j->thread, NULL, sj_main, j) != 0) {
        sch_jobs_close(j);
        return SH_ENOMEM;
    }
    j->started = true;
    *out = j;
    return SH_OK;
}

void sch_jobs_close(sch_jobs *j)
{
    if (j == NULL) {
        return;
    }
    if (j->started) {
        pthread_mutex_lock(&j->mu);
        j->stop = true;
        pthread_cond_signal(&j->cv);
        pthread_mutex_unlock(&j->mu);
        pthread_join(j->thread, NULL);
    }
    sch_job *job;
    while ((job = sj_pop(&j->todo, &j->todo_tail)) != NULL) {
        sj_free(job, 1);
    }
    while ((job = sj_pop(&j->done, &j->done_tail)) != NULL) {
        sj_free(job, 1);
    }
    if (j->ev != NULL) {
        event_free(j->ev);
    }
    if (j->pipe_rd >= 0) {
        close(j->pipe_rd);
        close(j->pipe_wr);
        pthread_cond_destroy(&j->cv);
        pthread_mutex_destroy(&j->mu);
    }
    sch_sync_close(j->env.sync);
    sh_cluster_close(j->env.router);
    free(j);
}

sh_err sch_jobs_submit(sch_jobs *j, sch_job_run_fn run, void *arg, sch_job_finish_fn finish,
                       sch_job_done_fn done, void *owner, sch_job **handle)
{
    SH_ASSERT(j != NULL && run != NULL && done != NULL && owner != NULL && handle != NULL);
    sch_job *job = calloc(1, sizeof *job);
    if (job == NULL) {
        return SH_ENOMEM;
    }
    *job = (sch_job){.run = run, .arg = arg, .finish = finish, .done = done, .owner = owner};
    pthread_mutex_lock(&j->mu);
    if (j->count >= SH_AUDIT_QUEUE_MAX) {
        pthread_mutex_unlock(&j->mu);
        free(job);
        return SH_EBUSY;
    }
    j->count++;
    sj_push(&j->todo, &j->todo_tail, job);
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    *handle = job;
    return SH_OK;
}

void sch_jobs_forget(sch_job *job)
{
    SH_ASSERT(job != NULL);
    job->owner = NULL; /* read by the loop thread only (sj_ready_cb) */
}
