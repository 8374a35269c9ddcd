/* sw_migrations.h -- the schema migrations compiled into stock-syncd.
 *
 * The table is generated at build time from sql/migrations/NNN_name.sql by
 * scripts/gen_migrations.sh (Makefile rule for $(BUILD)/gen/sw_migrations.c),
 * so the worker carries its schema and never reads the source tree at run time.
 * The generator guarantees versions 1..count in order, at most
 * SH_MIGRATIONS_MAX files of at most SH_MIGRATION_BYTES_MAX bytes each. */
#ifndef SW_MIGRATIONS_H
#define SW_MIGRATIONS_H

#include "sh_limits.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sw_migration {
    uint32_t version; /* NNN of the file name; sw_migrations[i].version == i + 1 */
    const char *name; /* the file name's name part, "baseline" */
    const char *sql;  /* the file's text, NUL-terminated */
    size_t len;       /* bytes of sql, without the NUL */
} sw_migration;

extern const sw_migration sw_migrations[];
extern const size_t sw_migrations_count;

#endif
