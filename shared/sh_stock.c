/* sh_stock.c -- key names and the Lua scripts of the stock server.
 *
 * Every change of stock happens inside one of these scripts, so every
 * invariant of DESIGN.md section 8 is argued here, one script at a time:
 *
 * - Conservation. Units move only pool -> journal -> partition (grant) and
 *   partition -> partition record r.ID -> pool (return), each step one script
 *   on one slot, each guarded so it applies once: a grant's partition step
 *   compares its id with the partition's last applied id g (grants to one
 *   partition are serialised by the scheduler, so ids arrive in order); a
 *   return's pool step applies only while its journal entry exists and deletes
 *   it in the same script. Inside a partition, deduct moves units from s0/s1
 *   to ded and release moves them back, in the same script that writes the
 *   detail, so details and counters never disagree.
 * - No oversell. deduct takes q only when s0 + s1 >= q; no script lowers a
 *   counter below zero.
 * - Idempotency. An order's outcome lives in the order hash of the partition
 *   its claim names. A repeat finds the outcome. A partition that cannot serve
 *   an order writes a tombstone "t,VER" for the claim version it was asked
 *   under; it serves that order again only under a newer claim version, and
 *   claims move only by compare-and-set that bumps the version. So two
 *   partitions can never both take one order (DESIGN.md 5a).
 *
 * Scripts must not fail half-way (Redis does not roll back a script's writes),
 * so each checks what it needs before its first write. */
#include "sh_stock.h"

#include "sh_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- keys ------------------------------------------------------------------ */

static size_t sh_stock_fmt(int n)
{
    SH_ASSERT(n > 0 && n < SH_STOCK_KEY_BYTES_MAX);
    return (size_t)n;
}

size_t sh_stock_key_pool(char *buf, const char *sku)
{
    return sh_stock_fmt(snprintf(buf, SH_STOCK_KEY_BYTES_MAX, "{s:%s}:pool", sku));
}

size_t sh_stock_key_journal(char *buf, const char *sku)
{
    return sh_stock_fmt(snprintf(buf, SH_STOCK_KEY_BYTES_MAX, "{s:%s}:jrnl", sku));
}

size_t sh_stock_key_restocks(char *buf, const char *sku)
{
    return sh_stock_fmt(snprintf(buf, SH_STOCK_KEY_BYTES_MAX, "{s:%s}:rst", sku));
}

size_t sh_stock_part_tag(char *buf, const char *sku, unsigned part, unsigned salt)
{
    return sh_stock_fmt(snprintf(buf, SH_STOCK_KEY_BYTES_MAX, "s:%s:%u:%u", sku, part, salt));
}

size_t sh_stock_key_part(char *buf, const char *sku, unsigned part, unsigned salt, char which)
{
    SH_ASSERT(which == 's' || which == 'd' || which == 'o');
    const char *suffix = which == 's' ? "st" : which == 'd' ? "d" : "o";
    return sh_stock_fmt(
        snprintf(buf, SH_STOCK_KEY_BYTES_MAX, "{s:%s:%u:%u}:%s", sku, part, salt, suffix));
}

size_t sh_stock_key_claim(char *buf, const char *sku, const char *order)
{
    return sh_stock_fmt(snprintf(buf, SH_STOCK_KEY_BYTES_MAX, "{o:%s:%s}", sku, order));
}

size_t sh_stock_key_user(char *buf, const char *sku, const char *user)
{
    return sh_stock_fmt(snprintf(buf, SH_STOCK_KEY_BYTES_MAX, "{u:%s:%s}", sku, user));
}

/* ---- scripts ------------------------------------------------------------- */

/* DEDUCT: a batch of deductions and releases on one partition, in order.
 * KEYS: st, d, o.  ARGV: now_ms, low_water_units, order_ttl_s, n, round_id,
 * then the n order ids, then per item op, user, qty, claim_version; op is 'D'
 * (deduct), 'U' (deduct for a user whose counter refused it) or 'R' (release).
 * Numbers arrive as canonical decimal strings.
 * Reply: a, s0, s1, flags, then per item status, seq, qty, user.
 * Deduct: a recorded outcome answers a repeat (DUPLICATE, CONFLICT when the
 * qty differs, RELEASED when the order was given back); a tombstone at or
 * above the caller's claim version answers MOVED; 'U' answers USER_LIMIT; too
 * little stock writes a tombstone and answers INSUFFICIENT; otherwise qty is
 * taken from the active sub-domain (split across both when it alone cannot
 * serve), the partition flips when the active one is at the low-water mark
 * and the standby has stock, seq advances and the outcome is recorded.
 * Release: the outcome's units go back to the active sub-domain with a
 * negative detail; a second release is DUPLICATE; a tombstone answers MOVED
 * (the caller re-reads the claim and follows it).
 * All details of the call go into ONE stream entry whose id is the last seq.
 * The XADD is the call's first write: the one write that can fail on data
 * (an id at or below the stream's top, which only a Redis that lost writes
 * can present) then leaves nothing half-done.
 *
 * Running a call twice (the router could not tell whether the first send ran,
 * sh_cluster.h) changes nothing and gives the first answer: the call records
 * its round id (rid) and the seq it started from (rs0) in the state hash, and
 * a call carrying the recorded rid answers OK, not DUPLICATE, for the outcomes
 * whose seq is above rs0 -- exactly the ones its first run wrote. Only the
 * last writing call is remembered; the node re-runs an unknown call at once,
 * before its next round.
 *
 * Cost (this box, Redis 7.0): Lua turns a number into a string with sprintf,
 * about 0.9 us each, and every redis.call costs about 1 us, so the script
 * reads every order with ONE HMGET, writes every outcome with ONE HSET, and
 * converts one number per deduction (its seq): qty, claim version and now go
 * into records and details as the strings they arrived as. `cur` holds the
 * outcomes written by this call, so an order twice in one batch sees its
 * first outcome exactly as a later call would. */
static const char sh_script_deduct[] =
    "local st, dk, ok = KEYS[1], KEYS[2], KEYS[3]\n"
    "local now, low, ttl, n = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])\n"
    "local rid = ARGV[5]\n"
    "if not n or n < 1 then return redis.error_reply('BADARGS no items') end\n"
    "local h = redis.call('HMGET', st, 'a', 's0', 's1', 'ded', 'seq', 'state', 'rid', 'rs0')\n"
    "if not h[1] then return redis.error_reply('NOPART partition state missing') end\n"
    "if h[6] == 'diverged' then\n"
    "  return redis.error_reply('DIVERGED partition diverged from MySQL: reconcile it')\n"
    "end\n"
    "local a = tonumber(h[1])\n"
    "local s = {[0] = tonumber(h[2]), [1] = tonumber(h[3])}\n"
    "local ded, seq, closed = tonumber(h[4]), tonumber(h[5]), h[6] == 'closed'\n"
    "local seq0, rerun, rs0 = seq, h[7] == rid, tonumber(h[8] or '0')\n"
    "local recs = redis.call('HMGET', ok, unpack(ARGV, 6, 5 + n))\n"
    "local SD = {[0] = '|0|', [1] = '|1|'}\n"
    "local flips, cur, sets, lines, out = 0, {}, {}, {}, {0, 0, 0, 0}\n"
    "local o, b = 4, 6 + n\n"
    "for i = 1, n do\n"
    "  local ord, op, usr, qs = ARGV[5 + i], ARGV[b], ARGV[b + 1], ARGV[b + 2]\n"
    "  local rec = cur[ord]\n"
    "  if rec == nil then rec = recs[i] end\n"
    "  local r1, r2, r3, r4 = 0, 0, 0, usr\n"
    "  local rq, rs, rr, ru\n"
    "  if rec and string.sub(rec, 1, 2) ~= 't,' then\n"
    "    rq, rs, rr, ru = string.match(rec, '^(%d+),(%d+),(%d+),(.*)$')\n"
    "  end\n"
    "  if op == 'R' then\n"
    "    if not rq then\n"
    "      if rec then r1 = 5 else r1, r4 = 6, '' end\n"
    "    elseif rr ~= '0' then\n"
    "      r1, r2, r3, r4 = 1, tonumber(rr), tonumber(rq), ru\n"
    "      if rerun and r2 > rs0 then r1 = 0 end\n"
    "    else\n"
    "      local q = tonumber(rq)\n"
    "      seq = seq + 1\n"
    "      ded = ded - q\n"
    "      s[a] = s[a] + q\n"
    "      local ss = tostring(seq)\n"
    "      rec = rq .. ',' .. rs .. ',' .. ss .. ',' .. ru\n"
    "      lines[#lines + 1] = ss .. '|-' .. rq .. SD[a] .. now .. '|' .. ord .. '|' .. ru\n"
    "      cur[ord] = rec; sets[#sets + 1] = ord; sets[#sets + 1] = rec\n"
    "      r2, r3, r4 = seq, q, ru\n"
    "    end\n"
    "  elseif rq then\n"
    "    r2, r3, r4 = tonumber(rs), tonumber(rq), ru\n"
    "    if rr ~= '0' then r1 = 7\n"
    "    elseif rq ~= qs then r1 = 2\n"
    "    elseif rerun and r2 > rs0 then r1 = 0\n"
    "    else r1 = 1 end\n"
    "  elseif rec and tonumber(ARGV[b + 3]) <= tonumber(string.sub(rec, 3)) then\n"
    "    r1 = 5\n"
    "  elseif op == 'U' then\n"
    "    r1 = 3\n"
    "  else\n"
    "    local q = tonumber(qs)\n"
    "    if closed or s[0] + s[1] < q then\n"
    "      rec = 't,' .. ARGV[b + 3]\n"
    "      cur[ord] = rec; sets[#sets + 1] = ord; sets[#sets + 1] = rec\n"
    "      r1 = 4\n"
    "    else\n"
    "      local sd = a\n"
    "      if s[a] >= q then\n"
    "        s[a] = s[a] - q\n"
    "      else\n"
    "        local rest = q - s[a]\n"
    "        s[a] = 0\n"
    "        a = 1 - a\n"
    "        s[a] = s[a] - rest\n"
    "        flips = flips + 1\n"
    "      end\n"
    "      if s[a] <= low and s[1 - a] > 0 then a = 1 - a; flips = flips + 1 end\n"
    "      seq = seq + 1\n"
    "      ded = ded + q\n"
    "      local ss = tostring(seq)\n"
    "      rec = qs .. ',' .. ss .. ',0,' .. usr\n"
    "      lines[#lines + 1] = ss .. '|' .. qs .. SD[sd] .. now .. '|' .. ord .. '|' .. usr\n"
    "      cur[ord] = rec; sets[#sets + 1] = ord; sets[#sets + 1] = rec\n"
    "      r2, r3 = seq, q\n"
    "    end\n"
    "  end\n"
    "  out[o + 1], out[o + 2], out[o + 3], out[o + 4] = r1, r2, r3, r4\n"
    "  o = o + 4\n"
    "  b = b + 4\n"
    "end\n"
    "if #lines > 0 then\n"
    "  redis.call('XADD', dk, seq .. '-0', 'n', #lines, 'b', table.concat(lines, '\\n'))\n"
    "end\n"
    "if #sets > 0 then redis.call('HSET', ok, unpack(sets)) end\n"
    "if #lines > 0 then\n"
    "  redis.call('HSET', st, 'a', a, 's0', s[0], 's1', s[1], 'ded', ded, 'seq', seq,\n"
    "             'rid', rid, 'rs0', seq0)\n"
    "elseif #sets > 0 then\n"
    "  redis.call('HSET', st, 'rid', rid, 'rs0', seq0)\n"
    "end\n"
    "if flips > 0 then redis.call('HINCRBY', st, 'flips', flips) end\n"
    "redis.call('EXPIRE', ok, ttl)\n"
    "local flags = 0\n"
    "if flips > 0 then flags = flags + 2 end\n"
    "if s[1 - a] == 0 then flags = flags + 4 end\n"
    "if s[0] + s[1] == 0 then flags = flags + 8 end\n"
    "if closed then flags = flags + 16 end\n"
    "out[1], out[2], out[3], out[4] = a, s[0], s[1], flags\n"
    "return out\n";

/* USER_TAKE: KEYS: user. ARGV: order, qty, per_user_limit, token, ttl_s.
 * The per-user counter is a hash order -> "QTY:TOKEN" (DESIGN.md 5a): the
 * units a user holds are the sum of its entries. Takes qty for order when the
 * sum of the user's OTHER orders plus qty stays within the limit, writing the
 * entry with the caller's token (a re-run, or a retry of the same order,
 * re-writes the same entry: never counted twice). Reply 1 taken, 0 refused
 * (nothing written). The counter lives on another slot than the partition,
 * so it cannot be atomic with DEDUCT; keyed by order it can run any number
 * of times, and USER_BACK / SETTLE decide when it is given back. */
static const char sh_script_user_take[] =
    "local h = redis.call('HGETALL', KEYS[1])\n"
    "local sum = tonumber(ARGV[2])\n"
    "for i = 1, #h, 2 do\n"
    "  if h[i] ~= ARGV[1] then sum = sum + tonumber(string.match(h[i + 1], '^(%d+)')) end\n"
    "end\n"
    "if sum > tonumber(ARGV[3]) then return 0 end\n"
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[4])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[5])\n"
    "return 1\n";

/* USER_BACK: KEYS: user. ARGV: order, entry ("QTY:TOKEN", or '*' for any).
 * Gives an order's units back: deletes the entry when it still reads what
 * the caller wrote (so a retry of the same order that re-took it since keeps
 * it), or whatever it reads with '*' (a release: the order holds nothing).
 * Reply 1 deleted, 0 not. */
static const char sh_script_user_back[] = "local v = redis.call('HGET', KEYS[1], ARGV[1])\n"
                                          "if v and (ARGV[2] == '*' or v == ARGV[2]) then\n"
                                          "  return redis.call('HDEL', KEYS[1], ARGV[1])\n"
                                          "end\n"
                                          "return 0\n";

/* SETTLE: KEYS: o (the order hash of the partition the claim names).
 * ARGV: order, claim_version. Decides, once and for all, whether an order
 * whose DEDUCT had an unknown outcome holds units: 1 when its outcome is
 * recorded (held), 0 when it was released, refused, or never ran -- then a
 * tombstone for claim_version is written, so a late copy of that DEDUCT can
 * no longer take it (DEDUCT answers MOVED at or below a tombstone's version).
 * The per-user entry may then be given back. */
static const char sh_script_settle[] =
    "local rec = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if rec and string.sub(rec, 1, 2) ~= 't,' then\n"
    "  if string.match(rec, '^%d+,%d+,0,') then return 1 end\n"
    "  return 0\n"
    "end\n"
    "if rec and tonumber(string.sub(rec, 3)) >= tonumber(ARGV[2]) then return 0 end\n"
    "redis.call('HSET', KEYS[1], ARGV[1], 't,' .. ARGV[2])\n"
    "return 0\n";

/* CLAIM_MOVE: KEYS: claim. ARGV: expected "P:V", new partition Q, ttl_s.
 * When the claim still reads "P:V" (or has expired) it becomes "Q:V+1".
 * Reply: the claim as it is after the call. */
static const char sh_script_claim_move[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur == ARGV[1] or not cur then\n"
    "  local v = tonumber(string.match(ARGV[1], ':(%d+)$'))\n"
    "  local nv = ARGV[2] .. ':' .. (v + 1)\n"
    "  redis.call('SET', KEYS[1], nv, 'EX', ARGV[3])\n"
    "  return nv\n"
    "end\n"
    "return cur\n";

// clang-format off: it cannot lay out SH_FENCE pasted between string pieces.
/* Fencing (DESIGN.md 5b): one scheduler at a time holds a lease whose epoch
 * grows with every takeover. The scheduler stamps its epoch into the pool
 * hash and every partition state ('ep') when it takes over, and every grant
 * and return script refuses a caller whose epoch is below the stamp, with
 * the error "FENCED". A deposed scheduler can then finish nothing half-way:
 * its next step fails before it writes. */
#define SH_FENCE(key, arg)                                                                         \
    "if tonumber(" arg ") < tonumber(redis.call('HGET', " key ", 'ep') or '0') then\n"             \
    "  return redis.error_reply('FENCED epoch ' .. " arg " .. ' is below the stamp')\n"            \
    "end\n"

/* PART_INIT: KEYS: st. ARGV: epoch. Creates the partition state once.
 * Reply 1 created, 0 existed. */
static const char sh_script_part_init[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'a', 0, 's0', 0, 's1', 0, 'ded', 0, 'seq', 0,\n"
    "           'state', 'open', 'g', 0, 'flips', 0, 'grants', 0, 'ep', ARGV[1])\n"
    "return 1\n";

/* POOL_INIT: KEYS: pool. ARGV: total, start_ms, per_user_limit, parts, min_chunk,
 * max_chunk, name, epoch, then the salt of partition 0 .. parts-1. Creates the
 * pool once (reply 1) or changes nothing (reply 0). The SKU index lives on
 * another slot, so the caller adds the SKU to it (SADD, idempotent) afterwards. */
static const char sh_script_pool_init[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'avail', ARGV[1], 'total', ARGV[1], 'start_ms', ARGV[2],\n"
    "           'pul', ARGV[3], 'parts', ARGV[4], 'minc', ARGV[5], 'maxc', ARGV[6],\n"
    "           'name', ARGV[7], 'nextid', 0, 'ep', ARGV[8])\n"
    "for i = 0, tonumber(ARGV[4]) - 1 do\n"
    "  redis.call('HSET', KEYS[1], 't.' .. i, ARGV[9 + i])\n"
    "end\n"
    "return 1\n";

/* EPOCH_STAMP: KEYS: a pool hash or a partition state. ARGV: epoch.
 * Raises the key's 'ep' to epoch; a lower epoch is FENCED. Reply 1. */
static const char sh_script_epoch_stamp[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOKEY') end\n" SH_FENCE(
        "KEYS[1]", "ARGV[1]") "redis.call('HSET', KEYS[1], 'ep', ARGV[1])\n"
                              "return 1\n";

/* GRANT_BEGIN: KEYS: pool, jrnl. ARGV: partition, wanted_units, id, epoch.
 * The caller chooses the journal id (above every id it used before: 'nextid'
 * is the highest id begun). Takes u = min(avail, wanted) from avail and
 * journals "g:P:u" under id. Run again with the same id it changes nothing:
 * a journaled id answers its first u; an id at or below nextid without an
 * entry (it found the pool empty, or its grant finished) answers u = 0, so a
 * late copy of a begin the caller gave up on takes nothing.
 * Reply: {id, u, avail_after}; u 0 when nothing was taken. */
static const char sh_script_grant_begin[] =
    "local h = redis.call('HMGET', KEYS[1], 'avail', 'nextid')\n"
    "if not h[1] then return redis.error_reply('NOPOOL') end\n" SH_FENCE(
        "KEYS[1]", "ARGV[4]") "local avail, id = tonumber(h[1]), tonumber(ARGV[3])\n"
                              "local j = redis.call('HGET', KEYS[2], ARGV[3])\n"
                              "if j then\n"
                              "  local p, u = string.match(j, '^g:(%d+):(%d+)$')\n"
                              "  if p ~= ARGV[1] then return redis.error_reply('BADID journal id "
                              "used otherwise') end\n"
                              "  return {id, tonumber(u), avail}\n"
                              "end\n"
                              "if id <= tonumber(h[2] or '0') then return {id, 0, avail} end\n"
                              "local u = math.min(avail, tonumber(ARGV[2]))\n"
                              "if u <= 0 then\n"
                              "  redis.call('HSET', KEYS[1], 'nextid', id)\n"
                              "  return {id, 0, avail}\n"
                              "end\n"
                              "redis.call('HSET', KEYS[1], 'avail', avail - u, 'nextid', id)\n"
                              "redis.call('HSET', KEYS[2], id, 'g:' .. ARGV[1] .. ':' .. u)\n"
                              "return {id, u, avail - u}\n";

/* GRANT_APPLY: KEYS: st. ARGV: id, units, low_water_units, epoch.
 * Adds units to the standby sub-domain once (ids at or below g are done) and
 * flips when the active one is at the low-water mark.
 * Reply: {applied 0|1, a, s0, s1}. */
static const char sh_script_grant_apply[] =
    "local h = redis.call('HMGET', KEYS[1], 'a', 's0', 's1', 'g')\n"
    "if not h[1] then return redis.error_reply('NOPART partition state missing') end\n" SH_FENCE(
        "KEYS[1]",
        "ARGV[4]") "local a = tonumber(h[1])\n"
                   "local s = {[0] = tonumber(h[2]), [1] = tonumber(h[3])}\n"
                   "local id = tonumber(ARGV[1])\n"
                   "if tonumber(h[4]) >= id then return {0, a, s[0], s[1]} end\n"
                   "local sb = 1 - a\n"
                   "s[sb] = s[sb] + tonumber(ARGV[2])\n"
                   "if s[a] <= tonumber(ARGV[3]) and s[sb] > 0 then\n"
                   "  a = sb\n"
                   "  redis.call('HINCRBY', KEYS[1], 'flips', 1)\n"
                   "end\n"
                   "redis.call('HSET', KEYS[1], 'a', a, 's0', s[0], 's1', s[1], 'g', id)\n"
                   "redis.call('HINCRBY', KEYS[1], 'grants', 1)\n"
                   "return {1, a, s[0], s[1]}\n";

// clang-format on

/* JOURNAL_END: KEYS: jrnl. ARGV: id. Forgets a finished grant. Reply: 1 | 0. */
static const char sh_script_journal_end[] = "return redis.call('HDEL', KEYS[1], ARGV[1])\n";

// clang-format off
/* RETURN_BEGIN: KEYS: pool, jrnl. ARGV: partition, id, epoch. Journals "r:P"
 * under the caller's id (ids as GRANT_BEGIN). Run again it changes nothing.
 * Reply: id when journaled (now or before), 0 when the id is spent (at or
 * below nextid without an entry: a late copy must not journal anything). */
static const char sh_script_return_begin[] =
    "local h = redis.call('HMGET', KEYS[1], 'avail', 'nextid')\n"
    "if not h[1] then return redis.error_reply('NOPOOL') end\n"
    SH_FENCE("KEYS[1]", "ARGV[3]")
    "local j = redis.call('HGET', KEYS[2], ARGV[2])\n"
    "if j then\n"
    "  if j ~= 'r:' .. ARGV[1] then return redis.error_reply('BADID journal id used otherwise') end\n"
    "  return tonumber(ARGV[2])\n"
    "end\n"
    "if tonumber(ARGV[2]) <= tonumber(h[2] or '0') then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'nextid', ARGV[2])\n"
    "redis.call('HSET', KEYS[2], ARGV[2], 'r:' .. ARGV[1])\n"
    "return tonumber(ARGV[2])\n";

/* RETURN_TAKE: KEYS: st. ARGV: id, close ('1' | '0'), epoch.
 * Takes everything in s0 + s1 once per id and records it as r.ID; with close
 * the partition stops serving. Reply: {units, a, s0, s1}. */
static const char sh_script_return_take[] =
    "local f = 'r.' .. ARGV[1]\n"
    "local h = redis.call('HMGET', KEYS[1], 'a', 's0', 's1', f)\n"
    "if not h[1] then return redis.error_reply('NOPART partition state missing') end\n"
    "if h[4] then return {tonumber(h[4]), tonumber(h[1]), tonumber(h[2]), tonumber(h[3])} end\n"
    SH_FENCE("KEYS[1]", "ARGV[3]")
    "local u = tonumber(h[2]) + tonumber(h[3])\n"
    "redis.call('HSET', KEYS[1], 's0', 0, 's1', 0, f, u)\n"
    "if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'state', 'closed') end\n"
    "return {u, tonumber(h[1]), 0, 0}\n";

/* RETURN_APPLY: KEYS: pool, jrnl. ARGV: id, units, epoch. Adds units to avail
 * while the journal entry exists and deletes it in the same step.
 * Reply: 1 applied, 0 done before. */
static const char sh_script_return_apply[] =
    "if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end\n"
    SH_FENCE("KEYS[1]", "ARGV[3]")
    "redis.call('HINCRBY', KEYS[1], 'avail', ARGV[2])\n"
    "redis.call('HDEL', KEYS[2], ARGV[1])\n"
    "return 1\n";

// clang-format on

/* RETURN_END: KEYS: st. ARGV: id. Forgets the record of a finished return. */
static const char sh_script_return_end[] = "return redis.call('HDEL', KEYS[1], 'r.' .. ARGV[1])\n";

/* DIVERGE: KEYS: st. ARGV: why, seq, detail. Marks the partition diverged
 * (Redis and MySQL disagree on its details, DESIGN.md 5b): DEDUCT refuses every
 * item of it from then on, until `stockctl partition reconcile` opens it
 * again. The first reason is kept. Reply 1 marked now, 0 already. */
static const char sh_script_diverge[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOPART') end\n"
    "if redis.call('HGET', KEYS[1], 'state') == 'diverged' then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'state', 'diverged', 'dwhy', ARGV[1], 'dseq', ARGV[2],\n"
    "           'ddetail', ARGV[3])\n"
    "return 1\n";

// clang-format off
/* RECONCILE: KEYS: st, d, o. ARGV: rcid, epoch, expect_seq, expect_ded,
 * expect_g, new_seq, new_ack, new_ded, grant_id, grant_units, ttl_s, nrec,
 * nlines, then nrec pairs (order, record "QTY,SEQ,RELSEQ,USER"), then nlines
 * packed detail lines ("SEQ|QTY|SD|MS|ORDER|USER", DEDUCT's format) whose seqs
 * run new_ack+1 .. new_seq. Rebuilds a diverged partition from the union of
 * what MySQL and Redis hold (scheduler/sch_reconcile.c computes it) and opens
 * it again, in one step on the partition's slot:
 *   - ded becomes new_ded, seq new_seq, ack new_ack (MySQL's synced_seq: every
 *     seq up to it is MySQL's), the records are written, the stream holds
 *     exactly the renumbered details (the shipper ships them next, from ack),
 *     state is open, DIVERGE's fields and the last round id are gone (a late
 *     re-run of a call from before the loss must not answer OK);
 *   - conservation: D = new_ded - ded units must come from somewhere or go
 *     back. D > 0 is taken from the active sub-domain, then the standby, then
 *     from journaled grant grant_id (the caller ran GRANT_BEGIN for it; it is
 *     applied here instead of to a sub-domain, g = grant_id, so the audit stops
 *     counting it pending and a replay of GRANT_APPLY finds it done); what is
 *     still missing is oversold (answered units no unit backs: reported, and
 *     the audit's conservation and no-oversell checks say so). D < 0 goes back
 *     to the active sub-domain, as does any grant unit not needed.
 * Checks before the first write: the partition exists, the epoch is not
 * fenced, the state is diverged, and seq, ded and g are what the caller read
 * (anything else ran since: CHANGED, compute again). Run again with the same
 * rcid (an unknown outcome) it changes nothing and answers what the first run
 * answered. Reply: {applied 1 | 0 (done before), from_partition, from_pool,
 * given_back, oversold, a, s0, s1}. */
static const char sh_script_reconcile[] =
    "local st, dk, ok = KEYS[1], KEYS[2], KEYS[3]\n"
    "if redis.call('EXISTS', st) == 0 then return redis.error_reply('NOPART partition state missing') end\n"
    SH_FENCE("st", "ARGV[2]")
    "local h = redis.call('HMGET', st, 'a', 's0', 's1', 'ded', 'seq', 'g', 'state', 'rcid', 'rcsum')\n"
    "local a = tonumber(h[1])\n"
    "local s = {[0] = tonumber(h[2]), [1] = tonumber(h[3])}\n"
    "if h[8] == ARGV[1] then\n"
    "  local t, p, b, o = string.match(h[9] or '', '^(%d+),(%d+),(%d+),(%d+)$')\n"
    "  return {0, tonumber(t), tonumber(p), tonumber(b), tonumber(o), a, s[0], s[1]}\n"
    "end\n"
    "if h[7] ~= 'diverged' then\n"
    "  return redis.error_reply('NOTDIVERGED the partition is not diverged')\n"
    "end\n"
    "if h[5] ~= ARGV[3] or h[4] ~= ARGV[4] or (h[6] or '0') ~= ARGV[5] then\n"
    "  return redis.error_reply('CHANGED the partition changed since it was read')\n"
    "end\n"
    "local nseq, nack, nded = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])\n"
    "local gid, gu = tonumber(ARGV[9]), tonumber(ARGV[10])\n"
    "local nrec, nl = tonumber(ARGV[12]), tonumber(ARGV[13])\n"
    "local r0, l0 = 14, 14 + 2 * nrec\n"
    "if #ARGV ~= l0 - 1 + nl or nseq - nack ~= nl or gu < 0 or\n"
    "   (gid > 0 and gid <= tonumber(h[6] or '0')) then\n"
    "  return redis.error_reply('BADARGS reconcile arguments disagree')\n"
    "end\n"
    "for i = 0, nl - 1 do\n"
    "  if string.match(ARGV[l0 + i], '^(%d+)|') ~= tostring(nack + 1 + i) then\n"
    "    return redis.error_reply('BADARGS detail line ' .. i .. ' is not seq ' .. (nack + 1 + i))\n"
    "  end\n"
    "end\n"
    "local d = nded - tonumber(h[4])\n"
    "local take, pool, back, over = 0, 0, 0, 0\n"
    "if d > 0 then\n"
    "  for _, k in ipairs({a, 1 - a}) do\n"
    "    local t = math.min(d - take, s[k])\n"
    "    s[k] = s[k] - t\n"
    "    take = take + t\n"
    "  end\n"
    "  pool = math.min(d - take, gu)\n"
    "  over = d - take - pool\n"
    "else\n"
    "  back = -d\n"
    "end\n"
    "s[a] = s[a] + back + (gu - pool)\n"
    "for i = r0, l0 - 1, 1000 do\n"
    "  redis.call('HSET', ok, unpack(ARGV, i, math.min(i + 999, l0 - 1)))\n"
    "end\n"
    "if nrec > 0 and redis.call('PTTL', ok) < 0 then redis.call('EXPIRE', ok, ARGV[11]) end\n"
    "redis.call('DEL', dk)\n"
    "for i = 0, nl - 1, 1024 do\n"
    "  local k = math.min(1024, nl - i)\n"
    "  redis.call('XADD', dk, (nack + i + k) .. '-0', 'n', k,\n"
    "             'b', table.concat(ARGV, '\\n', l0 + i, l0 + i + k - 1))\n"
    "end\n"
    "redis.call('HSET', st, 'a', a, 's0', s[0], 's1', s[1], 'ded', nded, 'seq', nseq,\n"
    "           'ack', nack, 'state', 'open', 'rcid', ARGV[1],\n"
    "           'rcsum', take .. ',' .. pool .. ',' .. back .. ',' .. over)\n"
    "if gid > 0 then\n"
    "  redis.call('HSET', st, 'g', gid)\n"
    "  redis.call('HINCRBY', st, 'grants', 1)\n"
    "end\n"
    "redis.call('HDEL', st, 'dwhy', 'dseq', 'ddetail', 'rid', 'rs0')\n"
    "return {1, take, pool, back, over, a, s[0], s[1]}\n";
// clang-format on

/* RESTOCK: KEYS: pool, rst. ARGV: restock_id, units. Adds units to avail and
 * total once per restock id. Reply: 1 applied, 0 seen before. */
static const char sh_script_restock[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOPOOL') end\n"
    "if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end\n"
    "redis.call('HINCRBY', KEYS[1], 'avail', ARGV[2])\n"
    "redis.call('HINCRBY', KEYS[1], 'total', ARGV[2])\n"
    "return 1\n";

static const char *const sh_scripts[SH_SCRIPT_COUNT_] = {
    [SH_SCRIPT_DEDUCT] = sh_script_deduct,
    [SH_SCRIPT_CLAIM_MOVE] = sh_script_claim_move,
    [SH_SCRIPT_PART_INIT] = sh_script_part_init,
    [SH_SCRIPT_POOL_INIT] = sh_script_pool_init,
    [SH_SCRIPT_GRANT_BEGIN] = sh_script_grant_begin,
    [SH_SCRIPT_GRANT_APPLY] = sh_script_grant_apply,
    [SH_SCRIPT_JOURNAL_END] = sh_script_journal_end,
    [SH_SCRIPT_RETURN_BEGIN] = sh_script_return_begin,
    [SH_SCRIPT_RETURN_TAKE] = sh_script_return_take,
    [SH_SCRIPT_RETURN_APPLY] = sh_script_return_apply,
    [SH_SCRIPT_RETURN_END] = sh_script_return_end,
    [SH_SCRIPT_RESTOCK] = sh_script_restock,
    [SH_SCRIPT_USER_TAKE] = sh_script_user_take,
    [SH_SCRIPT_USER_BACK] = sh_script_user_back,
    [SH_SCRIPT_SETTLE] = sh_script_settle,
    [SH_SCRIPT_EPOCH_STAMP] = sh_script_epoch_stamp,
    [SH_SCRIPT_DIVERGE] = sh_script_diverge,
    [SH_SCRIPT_RECONCILE] = sh_script_reconcile,
};

const char *sh_stock_script_text(sh_stock_script s)
{
    SH_ASSERT((unsigned)s < SH_SCRIPT_COUNT_);
    return sh_scripts[s];
}

/* ---- details -------------------------------------------------------------- */

static int sh_stock_next_field(const char **p, const char *end, const char **f, size_t *flen)
{
    const char *bar = memchr(*p, '|', (size_t)(end - *p));
    *f = *p;
    *flen = bar ? (size_t)(bar - *p) : (size_t)(end - *p);
    *p = bar ? bar + 1 : end;
    return bar != NULL;
}

static int sh_stock_parse_i64(const char *f, size_t len, int64_t *out)
{
    char buf[24];
    if (len == 0 || len >= sizeof buf) {
        return -1;
    }
    memcpy(buf, f, len);
    buf[len] = '\0';
    char *e = NULL;
    long long v = strtoll(buf, &e, 10);
    if (*e != '\0') {
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

sh_err sh_stock_detail_parse(const char *line, size_t len, sh_stock_detail *out)
{
    SH_ASSERT(line != NULL && out != NULL);
    const char *p = line, *end = line + len, *f;
    size_t flen;
    int64_t seq, qty, sd, ms;
    if (!sh_stock_next_field(&p, end, &f, &flen) || sh_stock_parse_i64(f, flen, &seq) != 0 ||
        !sh_stock_next_field(&p, end, &f, &flen) || sh_stock_parse_i64(f, flen, &qty) != 0 ||
        !sh_stock_next_field(&p, end, &f, &flen) || sh_stock_parse_i64(f, flen, &sd) != 0 ||
        !sh_stock_next_field(&p, end, &f, &flen) || sh_stock_parse_i64(f, flen, &ms) != 0) {
        return SH_EPROTO;
    }
    if (seq < 1 || qty == 0 || (sd != 0 && sd != 1)) {
        return SH_EPROTO;
    }
    if (!sh_stock_next_field(&p, end, &f, &flen) || flen == 0 || flen > SH_ORDER_ID_CHARS_MAX) {
        return SH_EPROTO;
    }
    memcpy(out->order_id, f, flen);
    out->order_id[flen] = '\0';
    sh_stock_next_field(&p, end, &f, &flen);
    if (flen > SH_USER_ID_CHARS_MAX || memchr(f, '|', flen) != NULL) {
        return SH_EPROTO;
    }
    memcpy(out->user_id, f, flen);
    out->user_id[flen] = '\0';
    out->seq = (uint64_t)seq;
    out->qty = qty;
    out->sub_domain = (int)sd;
    out->created_ms = ms;
    return SH_OK;
}
