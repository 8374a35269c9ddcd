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
 * KEYS: st, d, o.  ARGV: now_ms, low_water_units, order_ttl_s, n, then the n
 * order ids, then per item op, user, qty, claim_version; op is 'D' (deduct),
 * 'U' (deduct for a user already past per_user_limit) or 'R' (release).
 * Numbers arrive as canonical decimal strings.
 * Reply: a, s0, s1, flags, then per item status, seq, qty, user.
 * Deduct: a recorded outcome answers a repeat (DUPLICATE, or CONFLICT when the
 * qty differs); a tombstone at or above the caller's claim version answers
 * MOVED; 'U' answers USER_LIMIT; too little stock writes a tombstone and
 * answers INSUFFICIENT; otherwise qty is taken from the active sub-domain
 * (split across both when it alone cannot serve), the partition flips when the
 * active one is at the low-water mark and the standby has stock, seq advances
 * and the outcome is recorded. Release: the outcome's units go back to the
 * active sub-domain with a negative detail; a second release is DUPLICATE.
 * All details of the call go into ONE stream entry whose id is the last seq.
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
    "if not n or n < 1 then return redis.error_reply('BADARGS no items') end\n"
    "local h = redis.call('HMGET', st, 'a', 's0', 's1', 'ded', 'seq', 'state')\n"
    "if not h[1] then return redis.error_reply('NOPART partition state missing') end\n"
    "local a = tonumber(h[1])\n"
    "local s = {[0] = tonumber(h[2]), [1] = tonumber(h[3])}\n"
    "local ded, seq, closed = tonumber(h[4]), tonumber(h[5]), h[6] == 'closed'\n"
    "local recs = redis.call('HMGET', ok, unpack(ARGV, 5, 4 + n))\n"
    "local SD = {[0] = '|0|', [1] = '|1|'}\n"
    "local flips, cur, sets, lines, out = 0, {}, {}, {}, {0, 0, 0, 0}\n"
    "local o, b = 4, 5 + n\n"
    "for i = 1, n do\n"
    "  local ord, op, usr, qs = ARGV[4 + i], ARGV[b], ARGV[b + 1], ARGV[b + 2]\n"
    "  local rec = cur[ord]\n"
    "  if rec == nil then rec = recs[i] end\n"
    "  local r1, r2, r3, r4 = 0, 0, 0, usr\n"
    "  local rq, rs, rr, ru\n"
    "  if rec and string.sub(rec, 1, 2) ~= 't,' then\n"
    "    rq, rs, rr, ru = string.match(rec, '^(%d+),(%d+),(%d+),(.*)$')\n"
    "  end\n"
    "  if op == 'R' then\n"
    "    if not rq then\n"
    "      r1, r4 = 6, ''\n"
    "    elseif rr ~= '0' then\n"
    "      r1, r2, r3, r4 = 1, tonumber(rr), tonumber(rq), ru\n"
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
    "    if rq == qs then r1 = 1 else r1 = 2 end\n"
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
    "if #sets > 0 then redis.call('HSET', ok, unpack(sets)) end\n"
    "if #lines > 0 then\n"
    "  redis.call('XADD', dk, seq .. '-0', 'n', #lines, 'b', table.concat(lines, '\\n'))\n"
    "  redis.call('HSET', st, 'a', a, 's0', s[0], 's1', s[1], 'ded', ded, 'seq', seq)\n"
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

/* PART_INIT: KEYS: st. Creates the partition state once. Reply 1 created, 0 existed. */
static const char sh_script_part_init[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'a', 0, 's0', 0, 's1', 0, 'ded', 0, 'seq', 0,\n"
    "           'state', 'open', 'g', 0, 'flips', 0, 'grants', 0)\n"
    "return 1\n";

/* POOL_INIT: KEYS: pool. ARGV: total, start_ms, per_user_limit, parts, min_chunk,
 * max_chunk, name, then the salt of partition 0 .. parts-1. Creates the pool
 * once (reply 1) or changes nothing (reply 0). The SKU index lives on another
 * slot, so the caller adds the SKU to it (SADD, idempotent) afterwards. */
static const char sh_script_pool_init[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'avail', ARGV[1], 'total', ARGV[1], 'start_ms', ARGV[2],\n"
    "           'pul', ARGV[3], 'parts', ARGV[4], 'minc', ARGV[5], 'maxc', ARGV[6],\n"
    "           'name', ARGV[7], 'nextid', 0)\n"
    "for i = 0, tonumber(ARGV[4]) - 1 do\n"
    "  redis.call('HSET', KEYS[1], 't.' .. i, ARGV[8 + i])\n"
    "end\n"
    "return 1\n";

/* GRANT_BEGIN: KEYS: pool, jrnl. ARGV: partition, wanted_units.
 * Takes u = min(avail, wanted) from avail and journals "g:P:u" under a new id.
 * Reply: {id, u, avail_after}; id 0 when the pool is empty. */
static const char sh_script_grant_begin[] =
    "local avail = tonumber(redis.call('HGET', KEYS[1], 'avail') or '0')\n"
    "local u = math.min(avail, tonumber(ARGV[2]))\n"
    "if u <= 0 then return {0, 0, avail} end\n"
    "local id = redis.call('HINCRBY', KEYS[1], 'nextid', 1)\n"
    "redis.call('HINCRBY', KEYS[1], 'avail', -u)\n"
    "redis.call('HSET', KEYS[2], id, 'g:' .. ARGV[1] .. ':' .. u)\n"
    "return {id, u, avail - u}\n";

/* GRANT_APPLY: KEYS: st. ARGV: id, units, low_water_units.
 * Adds units to the standby sub-domain once (ids at or below g are done) and
 * flips when the active one is at the low-water mark.
 * Reply: {applied 0|1, a, s0, s1}. */
static const char sh_script_grant_apply[] =
    "local h = redis.call('HMGET', KEYS[1], 'a', 's0', 's1', 'g')\n"
    "if not h[1] then return redis.error_reply('NOPART partition state missing') end\n"
    "local a = tonumber(h[1])\n"
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

/* JOURNAL_END: KEYS: jrnl. ARGV: id. Forgets a finished grant. Reply: 1 | 0. */
static const char sh_script_journal_end[] = "return redis.call('HDEL', KEYS[1], ARGV[1])\n";

/* RETURN_BEGIN: KEYS: pool, jrnl. ARGV: partition. Journals "r:P" under a new
 * id. Reply: id. */
static const char sh_script_return_begin[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOPOOL') end\n"
    "local id = redis.call('HINCRBY', KEYS[1], 'nextid', 1)\n"
    "redis.call('HSET', KEYS[2], id, 'r:' .. ARGV[1])\n"
    "return id\n";

/* RETURN_TAKE: KEYS: st. ARGV: id, close ('1' | '0').
 * Takes everything in s0 + s1 once per id and records it as r.ID; with close
 * the partition stops serving. Reply: {units, a, s0, s1}. */
static const char sh_script_return_take[] =
    "local f = 'r.' .. ARGV[1]\n"
    "local h = redis.call('HMGET', KEYS[1], 'a', 's0', 's1', f)\n"
    "if not h[1] then return redis.error_reply('NOPART partition state missing') end\n"
    "if h[4] then return {tonumber(h[4]), tonumber(h[1]), tonumber(h[2]), tonumber(h[3])} end\n"
    "local u = tonumber(h[2]) + tonumber(h[3])\n"
    "redis.call('HSET', KEYS[1], 's0', 0, 's1', 0, f, u)\n"
    "if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'state', 'closed') end\n"
    "return {u, tonumber(h[1]), 0, 0}\n";

/* RETURN_APPLY: KEYS: pool, jrnl. ARGV: id, units. Adds units to avail while the
 * journal entry exists and deletes it in the same step. Reply: 1 applied, 0 done before. */
static const char sh_script_return_apply[] =
    "if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end\n"
    "redis.call('HINCRBY', KEYS[1], 'avail', ARGV[2])\n"
    "redis.call('HDEL', KEYS[2], ARGV[1])\n"
    "return 1\n";

/* RETURN_END: KEYS: st. ARGV: id. Forgets the record of a finished return. */
static const char sh_script_return_end[] = "return redis.call('HDEL', KEYS[1], 'r.' .. ARGV[1])\n";

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
