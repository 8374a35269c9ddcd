/* cl_mysql.h -- design (c), the classic MySQL hot-row deduction: one InnoDB
 * transaction per request on the SKU's one stock row.
 *
 * Tables (bench-only, created if missing in the server's database):
 * bench_stock(sku PK, total, avail) and bench_detail(id AUTO_INCREMENT, sku,
 * order_id, user_id, qty, created_ms, UNIQUE(sku, order_id)). The client
 * library blocks, so K worker threads each own a connection and take requests
 * from one bounded queue; answers go back to the loop thread with
 * event_active (evthread_use_pthreads must have been called before the base
 * was made). */
#ifndef CL_MYSQL_H
#define CL_MYSQL_H

#include "cl_req.h"

#include <stdint.h>

struct event_base;

typedef struct cl_mysql cl_mysql;

typedef struct cl_mysql_config {
    const char *host;
    uint16_t port;
    const char *user;
    const char *password;
    const char *database;
    uint32_t workers;     /* K threads = K connections */
    uint32_t queue_max;   /* requests waiting for a worker; more -> 503 */
    uint32_t timeout_s;   /* connect/read/write timeout of every connection */
    uint32_t lock_wait_s; /* innodb_lock_wait_timeout of every session */
} cl_mysql_config;

/* Creates the tables, connects K sessions and starts the workers. */
sh_err cl_mysql_open(cl_mysql **out, struct event_base *base, const cl_mysql_config *cfg);

/* The backend face for the HTTP front. Loop thread only. */
cl_backend cl_mysql_backend(cl_mysql *m);

/* Stops the workers (each finishes its current transaction), answers what is
 * still queued as unavailable, closes the connections. Loop thread. */
void cl_mysql_free(cl_mysql *m);

#endif
