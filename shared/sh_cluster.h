/* sh_cluster.h -- a small synchronous Redis Cluster router on top of hiredis.
 *
 * hiredis 0.14.1 has no cluster support, so this module keeps the slot map
 * (CLUSTER SLOTS), sends each command to the master that owns its key's slot
 * and follows the cluster's answers: MOVED updates the map, ASK is followed
 * once with ASKING, TRYAGAIN/CLUSTERDOWN/READONLY/LOADING/MASTERDOWN and
 * failures to reach a node back off and refresh the map. Every retry loop is
 * bounded by SH_CLUSTER_REDIRECTS_MAX hops and by a total time of a few times
 * the timeout.
 *
 * Threads: an sh_cluster is owned by ONE thread. Every function taking an
 * sh_cluster * must be called from that thread only; there are no locks. A
 * daemon with several threads opens one router per thread.
 *
 * Replies: a redisReply handed out through reply_out or sh_cluster_cmd.reply
 * belongs to the caller, who frees it with freeReplyObject(). Error replies
 * that are not routing errors (WRONGTYPE, a Lua error, ...) are ordinary
 * replies: the call returns SH_OK and the reply has type REDIS_REPLY_ERROR.
 *
 * At most once per call. The router sends a command again only when it
 * knows the first send did not run: (a) Redis answered with a reply it gives
 * before running anything (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, READONLY,
 * LOADING, MASTERDOWN, NOSCRIPT of a script added here), or (b) no byte of the
 * command left this process (the connect failed, no node owns the slot, or the
 * first write failed having written nothing). Once any byte was written, a
 * timeout or a dropped connection makes the outcome unknown: the router closes
 * that connection (a late reply must not be read as another command's), does
 * not send again, and returns SH_EUNKNOWN for that command. The decision is
 * the caller's: its mutating scripts carry an id it chose (written with NX,
 * see DESIGN.md 4), so running one again with the same id changes nothing.
 * A pooled connection is checked before each send (one non-blocking peek):
 * one the peer closed (kill, failover) or one holding bytes nobody asked for
 * is replaced before the command is written, so a dead node costs a retry,
 * not an unknown outcome.
 *
 * SIGPIPE: hiredis writes with write(2); the process must ignore SIGPIPE. */
#ifndef SH_CLUSTER_H
#define SH_CLUSTER_H

#include "sh_err.h"

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sh_cluster sh_cluster;

/* What the last replication barrier (sh_cluster_barrier) found on a master. */
typedef enum sh_cluster_barrier_state {
    SH_CLUSTER_B_OK = 0,         /* enough replicas hold every write it took before */
    SH_CLUSTER_B_LAG = 1,        /* replicas attached, but too few acked in time */
    SH_CLUSTER_B_NO_REPLICA = 2, /* no replica attached */
    SH_CLUSTER_B_FAILED = 3,     /* no answer, not a master any more, or not in the barrier */
} sh_cluster_barrier_state;

/* Counters since open; all monotonic. */
typedef struct sh_cluster_stats {
    uint64_t commands;         /* commands submitted by callers (pipeline: one per entry) */
    uint64_t moved;            /* MOVED replies followed */
    uint64_t ask;              /* ASK replies followed */
    uint64_t tryagain;         /* TRYAGAIN, CLUSTERDOWN, READONLY, LOADING, MASTERDOWN */
    uint64_t refreshes;        /* slot maps read with CLUSTER SLOTS (open included) */
    uint64_t reconnects;       /* connections opened to a node whose earlier one died */
    uint64_t noscript_loads;   /* SCRIPT LOADs run after a NOSCRIPT reply */
    uint64_t io_errors;        /* failed connects, writes, reads, timeouts, stale connections */
    uint64_t barriers;         /* sh_cluster_barrier calls that had masters to confirm */
    uint64_t barrier_failures; /* masters a barrier could not confirm */
    uint64_t unknown;          /* commands whose outcome is unknown (SH_EUNKNOWN) */
} sh_cluster_stats;

/* One entry of a pipeline. The caller fills route_key..argvlen; the router
 * fills reply (caller frees it; NULL when rc != SH_OK) and rc. */
typedef struct sh_cluster_cmd {
    const char *route_key; /* key whose slot picks the node; bytes, not a C string */
    size_t route_len;
    int argc;
    const char **argv;
    const size_t *argvlen;
    redisReply *reply;
    sh_err rc;
} sh_cluster_cmd;

/* The Redis Cluster slot of key[0..len): CRC16-XMODEM & 16383, hashing only
 * the text between the first '{' and the next '}' when that text is non-empty.
 * Pure function; any thread. */
uint16_t sh_cluster_slot(const char *key, size_t len);

/* Opens a router. seeds is "host:port[,host:port...]"; the first seed that
 * answers CLUSTER SLOTS with at least one assigned slot gives the map.
 * timeout_ms bounds each connect and each reply (0 = SH_CLUSTER_TIMEOUT_MS_DEFAULT,
 * at most SH_CLUSTER_TIMEOUT_MS_MAX). Connections to nodes open lazily.
 * Returns SH_EINVAL for a malformed seed list, SH_EIO / SH_ETIMEDOUT when no
 * seed answers, SH_ECLUSTER when seeds answer but give no usable map (cluster
 * support disabled, no slot assigned), SH_ENOMEM. On success *out is owned by
 * the calling thread until sh_cluster_close; on failure *out is NULL. */
sh_err sh_cluster_open(sh_cluster **out, const char *seeds, uint32_t timeout_ms);

/* Closes every connection and frees the router and its scripts. NULL is a no-op.
 * Replies handed out earlier stay valid (they are the caller's). */
void sh_cluster_close(sh_cluster *c);

/* Re-reads CLUSTER SLOTS now (no rate limit), asking known nodes in turn (live
 * connections to masters first) and then the seeds. Connections to nodes that
 * are still in the cluster are kept; others are closed. On failure the old map
 * stays and SH_EIO / SH_ETIMEDOUT / SH_ECLUSTER is returned. */
sh_err sh_cluster_refresh(sh_cluster *c);

/* Sends argv to the master owning route_key's slot and returns its reply in
 * *reply_out (caller frees). Follows MOVED (updates the map, schedules a refresh
 * rate-limited to one per SH_CLUSTER_REFRESH_MS_MIN), ASK (ASKING + command on
 * the target, once, map unchanged), TRYAGAIN / CLUSTERDOWN / READONLY /
 * LOADING / MASTERDOWN and failures before any byte was written (back off,
 * refresh, reconnect). An EVALSHA of a script added with sh_cluster_script_add
 * is reloaded on NOSCRIPT. At most 1 + SH_CLUSTER_REDIRECTS_MAX sends. When
 * they run out: SH_ECLUSTER, SH_EIO or SH_ETIMEDOUT (the last failure) and
 * *reply_out = NULL; the command did not run. SH_EUNKNOWN (and *reply_out =
 * NULL) when the command was written and then the reply timed out or the
 * connection dropped: it may have run, and it was not sent again. SH_EINVAL
 * when argc is not in 1..SH_CLUSTER_ARGS_MAX. */
sh_err sh_cluster_command(sh_cluster *c, const char *route_key, size_t route_len, int argc,
                          const char **argv, const size_t *argvlen, redisReply **reply_out);

/* Runs SCRIPT LOAD of lua on every master and keeps the text and its sha1, so
 * NOSCRIPT can be healed later. The same text added twice gives the same id.
 * Masters that cannot be reached are skipped (NOSCRIPT heals them); at least
 * one must load it. SH_ELIMIT past SH_CLUSTER_SCRIPTS_MAX scripts, SH_EREDIS
 * when a master rejects the script (compile error), SH_EPROTO when masters
 * disagree on the sha1. lua is copied. */
sh_err sh_cluster_script_add(sh_cluster *c, const char *lua, int *script_id_out);

/* The 40-character sha1 of a script added by sh_cluster_script_add, or NULL for
 * an unknown id. Valid until sh_cluster_close. Lets callers put EVALSHA into a
 * pipeline: such entries are reloaded on NOSCRIPT too. */
const char *sh_cluster_script_sha(const sh_cluster *c, int script_id);

/* EVALSHA of script_id with numkeys >= 1 keys and nargs args, routed by keys[0].
 * All keys must share keys[0]'s slot (SH_EINVAL otherwise, nothing sent).
 * NOSCRIPT runs SCRIPT LOAD on that node and retries (counts against the same
 * bound). Reply and error codes as sh_cluster_command, SH_EUNKNOWN included. */
sh_err sh_cluster_evalsha(sh_cluster *c, int script_id, int numkeys, const char **keys,
                          const size_t *keylens, int nargs, const char **args,
                          const size_t *arglens, redisReply **reply_out);

/* Sends cmds[0..n) grouped by owner node: every group is written first, then
 * the replies are read, so one batch costs one round trip per node and keeps
 * the order within a node. An entry answered by a routing reply (as in
 * sh_cluster_command) or never written (its node could not be reached, or the
 * first write of its node's buffer failed having written nothing) is then
 * re-run alone with sh_cluster_command's logic. Entries written to a node
 * whose write or read then failed get SH_EUNKNOWN and are not re-run: each
 * may have run. Each cmds[i] gets its reply (caller frees) and rc. The whole
 * call is bounded by about twice the timeout; entries left unsent when it runs
 * out get SH_ETIMEDOUT. Returns SH_OK when every entry has a reply, else the
 * first failing entry's rc. */
sh_err sh_cluster_pipeline(sh_cluster *c, sh_cluster_cmd *cmds, size_t n);

/* Number of distinct masters owning at least one slot in the current map. */
int sh_cluster_master_count(const sh_cluster *c);

/* Writes "host:port" of the index-th master (0 <= index < master_count) into
 * addr. SH_ENOTFOUND for an index past the end, SH_ERANGE if addrlen is short. */
sh_err sh_cluster_master_addr(const sh_cluster *c, int index, char *addr, size_t addrlen);

/* Writes "host:port" of slot's owner in the current map into addr. SH_EINVAL for
 * slot >= SH_CLUSTER_SLOTS, SH_ENOTFOUND when unassigned, SH_ERANGE if short. */
sh_err sh_cluster_slot_owner(const sh_cluster *c, uint16_t slot, char *addr, size_t addrlen);

/* Sends argv to the node at addr ("host:port"), known or not, with no routing
 * and no retry (e.g. SCRIPT FLUSH, CLUSTER INFO). Any reply, error replies
 * included, is returned with SH_OK (caller frees). SH_EIO / SH_ETIMEDOUT when
 * the node cannot be reached or the command could not be written (it did not
 * run); SH_EUNKNOWN when it was written and the read then failed or timed out
 * (it may have run). The connection is reopened next time. */
sh_err sh_cluster_node_command(sh_cluster *c, const char *addr, int argc, const char **argv,
                               const size_t *argvlen, redisReply **reply_out);

/* Replication barrier (DESIGN.md 5b, durability = replica). On every master
 * this router sent a command to since the last barrier, runs SET of a key on
 * one of its slots followed by WAIT replicas wait_ms, all pipelined (one round
 * trip per master, the masters in parallel): the SET brings the connection's
 * replication offset to the master's, so a confirmed WAIT means that at least
 * `replicas` replicas hold every write that master had taken, from any
 * connection. Masters that acked too few are asked ROLE, to tell a lagging
 * replica from none attached. *failed_out gets the masters not confirmed;
 * SH_OK when there are none, else SH_ETIMEDOUT. wait_ms must be below the
 * router's timeout. sh_cluster_barrier_of tells, per key, what the barrier
 * found on the master owning the key's slot. */
sh_err sh_cluster_barrier(sh_cluster *c, int replicas, uint32_t wait_ms, int *failed_out);

/* What the last barrier that included the master owning key's slot found
 * there, when nothing was sent to that master since; SH_CLUSTER_B_FAILED when
 * no barrier included it, or commands went to it after its last barrier (so
 * a master confirmed by a node's first barrier of a round and untouched since
 * stays confirmed after the second). */
sh_cluster_barrier_state sh_cluster_barrier_of(const sh_cluster *c, const char *key, size_t len);

/* Copies the counters into *out. */
void sh_cluster_stats_get(const sh_cluster *c, sh_cluster_stats *out);

#endif
