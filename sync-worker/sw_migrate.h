/* sw_migrate.h -- brings the MySQL schema up to the version this binary carries.
 *
 * The migrations are sql/migrations/NNN_name.sql, compiled in (sw_migrations.h).
 * A run connects on its own connection (not a worker thread's: it switches
 * databases and holds a named lock), creates the database named by
 * mysql.database if absent, takes GET_LOCK('stock_schema_migrate') so that two
 * workers starting at once apply each version once, reads the version applied
 * (the highest row of schema_version; no table or no row means 0; a database
 * made by the former sql/schema.sql holds version 1), and applies every
 * migration above it in order. MariaDB commits DDL implicitly, so a migration's
 * statements are written idempotent (IF NOT EXISTS / IF EXISTS) and its version
 * row is inserted and committed only after all of them succeeded: a crash half
 * way leaves the version below it, and the next run re-runs it harmlessly.
 *
 * A database at a HIGHER version than the binary knows is refused (SH_ERANGE,
 * the message naming both): an old worker must not write a schema it does not
 * understand. Callers: main.c at start (before serving) and for --migrate, and
 * sw_server for the catalog op MIGRATE (stockctl db migrate). Any thread; the
 * call blocks for the MySQL work and at most lock_timeout_s for the lock. */
#ifndef SW_MIGRATE_H
#define SW_MIGRATE_H

#include "sh_err.h"
#include "sw_mysql.h"

#include <stddef.h>
#include <stdint.h>

#define SW_MIGRATE_LOCK_NAME "stock_schema_migrate"

typedef struct sw_migrate_result {
    uint32_t before; /* version found in the database (0: none); may exceed known on SH_ERANGE */
    uint32_t after;  /* version when the run ended; == known on SH_OK */
    uint32_t known;  /* highest version this binary carries */
} sw_migrate_result;

/* The highest migration version compiled in (>= 1), plus the test-only extra
 * migration in a fault-injection build (STOCK_FAULT_MIGRATION_EXTRA). */
uint32_t sw_migrate_known(void);

/* Runs the migrations against the server and database of mo (mo->stop and
 * mo->stats are required; mo->attempts_max and mo->retry_time_max_ms bound the
 * retries of a lost connection or a deadlock, each retry starting the run over).
 * res is filled as far as the run got. SH_OK; SH_ERANGE (database newer than
 * the binary); SH_ETIMEDOUT (the lock was not free within lock_timeout_s);
 * SH_EINVAL (a database name that is not [A-Za-z0-9_$]); SH_ELIMIT (a statement
 * over SH_MIGRATION_STATEMENT_BYTES_MAX); SH_EMYSQL (MySQL refused or could not
 * be reached); SH_ECLOSED (mo->stop was raised). On failure why holds one line. */
sh_err sw_migrate_run(const sw_mysql_opts *mo, unsigned lock_timeout_s, sw_migrate_result *res,
                      char *why, size_t whylen);

#endif
