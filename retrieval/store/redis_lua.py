"""The Lua script behind ``RedisStore.append``: dedupe, time-ordered merge, cap and per-category lists of ONE user,
atomically (a script runs alone on the server). Kept as a Python string so it ships inside the package.

Called as ``EVALSHA sha 4 seq cat cnt eid  by_time cap per_category margin window_ms by_category groups [ids]``:

- ``by_time``: the user's new packed 21-byte records sorted stably by ts (arrival order on ties), with
  duplicates inside the batch already removed (first arrival wins);
- ``by_category``: the same records sorted stably by (category, ts), and ``groups`` = ``"c1 n1 c2 n2 ..."``:
  the runs of ``by_category`` (category, record count). Python groups with numpy so that the script does no
  per-record work in the common case; the script falls back to grouping itself when some records are duplicates
  or are evicted at birth;
- ``cap`` = max_behaviors, ``per_category``, ``margin`` = how far past the cap the stored string may grow before
  the dead prefix is cut off, ``window_ms`` = the dedupe window;
- ``ids``: the event id of each ``by_time`` record joined by newlines ('' = none; ids never contain a newline),
  omitted when no record has one.

Returns ``{accepted, duplicates}``. Every key it touches is one of KEYS (the user's hash tag: one Cluster slot).

Flags: the script starts with a ``#!lua flags=`` shebang declaring NO flags — not ``allow-oom``, not
``no-writes``, not ``allow-stale`` — so Redis (7.0+) checks it as a write script before it runs: over
``maxmemory`` it is refused whole with ``-OOM`` (without the shebang Redis only checks each write as the script
makes it, and the first write here, ZREMRANGEBYSCORE, is not deny-oom: the script then ran to the end and Redis
grew past its cap), and a read-only replica refuses it with ``-READONLY``. ``WRITE_PROBE_LUA`` has the same flags
and writes nothing: ``RedisStore.ping(writable=True)`` runs it to learn whether an append would be taken now.

Steps: (1) ids: drop ids first seen more than the window ago (ZREMRANGEBYSCORE), count known ids as duplicates
(one ZMSCORE), remember the new ones (one ZADD, score = server time in ms), PEXPIRE the set by the window.
(2) merge: APPEND when the oldest new record is not older than the last stored one; otherwise find the insertion
point by binary search on ts (8-byte GETRANGE probes), read the tail from there, merge (a new record goes after
stored ones with an equal ts) and SETRANGE it back. (3) eviction: the live sequence is the last ``cap`` records of
the string; stored records pushed into the dead prefix by this append decrement their category's count (``cnt``),
new records that land in it are never counted nor listed. (4) categories: each touched category's list gets its
new live records merged in and is cut to its newest ``min(per_category, count)``, so an evicted event is never
returned by a category read; a category whose count reaches 0 leaves both hashes (one HMGET and one HSET per
hash, however many categories). (5) when the string holds more than ``cap + margin`` records the dead prefix is
cut off with one rewrite (amortised: at most once per ``margin`` appended records).
"""

from __future__ import annotations

import hashlib

APPEND_LUA = r"""#!lua flags=
local R = 21
local CHUNK = 4000  -- arguments per redis.call when spreading a long list (Lua's unpack has a limit)
local seq_key, cat_key, cnt_key, eid_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local batch = ARGV[1]
local cap = tonumber(ARGV[2])
local per_cat = tonumber(ARGV[3])
local margin = tonumber(ARGV[4])
local window_ms = tonumber(ARGV[5])
local n_in = #batch / R

local function ts_of(s, i) return (struct.unpack('<i8', s, i * R + 1)) end
local function cat_of(s, i) return (struct.unpack('<i4', s, i * R + 17)) end

-- first index in [lo, hi) of the records of s whose ts > x (hi when none)
local function upper(s, lo, hi, x)
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if ts_of(s, mid) > x then hi = mid else lo = mid + 1 end
  end
  return lo
end

-- merge sorted records `new` into sorted records `old`, a new record after old ones with an equal ts;
-- returns the merged string and split[j] = how many old records precede new record j (1-based)
local function merge(old, new)
  local n_old, n_new = #old / R, #new / R
  local parts, split, at = {}, {}, 0
  for j = 1, n_new do
    local k = upper(old, at, n_old, ts_of(new, j - 1))
    if k > at then parts[#parts + 1] = string.sub(old, at * R + 1, k * R) end
    parts[#parts + 1] = string.sub(new, (j - 1) * R + 1, j * R)
    split[j] = k
    at = k
  end
  if at < n_old then parts[#parts + 1] = string.sub(old, at * R + 1) end
  return table.concat(parts), split
end

local function call_chunked(cmd, key, args)
  for s = 1, #args, CHUNK do
    redis.call(cmd, key, unpack(args, s, math.min(s + CHUNK - 1, #args)))
  end
end

local function hmget_chunked(key, fields)
  local out = {}
  for s = 1, #fields, CHUNK do
    local got = redis.call('HMGET', key, unpack(fields, s, math.min(s + CHUNK - 1, #fields)))
    for q = 1, #got do out[s + q - 1] = got[q] end
  end
  return out
end

-- (1) idempotency
local dups = 0
local add = batch
if ARGV[8] then
  local ids = {}
  for id in string.gmatch(ARGV[8] .. '\n', '([^\n]*)\n') do ids[#ids + 1] = id end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', eid_key, '-inf', now - window_ms)
  local named, at = {}, {}
  for i = 1, n_in do
    if ids[i] ~= '' then
      named[#named + 1] = ids[i]
      at[#at + 1] = i
    end
  end
  local known = {}
  for s = 1, #named, CHUNK do
    local scores = redis.call('ZMSCORE', eid_key, unpack(named, s, math.min(s + CHUNK - 1, #named)))
    for q = 1, #scores do
      if scores[q] then known[at[s + q - 1]] = true end
    end
  end
  local fresh, zargs = {}, {}
  for i = 1, n_in do
    local id = ids[i]
    if known[i] or (id ~= '' and fresh[id]) then
      known[i] = true
      dups = dups + 1
    elseif id ~= '' then
      fresh[id] = true
      zargs[#zargs + 1] = now
      zargs[#zargs + 1] = id
    end
  end
  if dups > 0 then
    local kept = {}
    for i = 1, n_in do
      if not known[i] then kept[#kept + 1] = string.sub(batch, (i - 1) * R + 1, i * R) end
    end
    add = table.concat(kept)
  end
  if #zargs > 0 then
    call_chunked('ZADD', eid_key, zargs)
    redis.call('PEXPIRE', eid_key, window_ms)
  end
end
local a = #add / R
if a == 0 then return {0, dups} end

-- (2) merge into the full sequence: p = where the oldest new record goes
local n_old = redis.call('STRLEN', seq_key) / R
local x0 = ts_of(add, 0)
local p = n_old
if n_old > 0 then
  local last = redis.call('GETRANGE', seq_key, (n_old - 1) * R, (n_old - 1) * R + 7)
  if struct.unpack('<i8', last) > x0 then
    local lo, hi = 0, n_old - 1
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      local t = struct.unpack('<i8', redis.call('GETRANGE', seq_key, mid * R, mid * R + 7))
      if t > x0 then hi = mid else lo = mid + 1 end
    end
    p = lo
  end
end

-- (3) eviction bookkeeping: live = the last `cap` records; the first d records are dead
local n_new = n_old + a
local d_old = math.max(0, n_old - cap)
local d_new = math.max(0, n_new - cap)
local dec = {}
local function evict(s, from, to)
  for k = from, to - 1 do
    local c = cat_of(s, k)
    dec[c] = (dec[c] or 0) + 1
  end
end
local e_hi = math.min(p, d_new)
if e_hi > d_old then
  evict(redis.call('GETRANGE', seq_key, d_old * R, e_hi * R - 1), 0, e_hi - d_old)
end
local split = nil
if p == n_old then
  redis.call('APPEND', seq_key, add)
else
  local tail = redis.call('GETRANGE', seq_key, p * R, -1)
  local merged
  merged, split = merge(tail, add)
  redis.call('SETRANGE', seq_key, p * R, merged)
  if p < d_new then
    local n_tail = n_old - p
    local k0 = 0
    for j = 1, a + 1 do
      local k1 = n_tail
      if j <= a then k1 = split[j] end
      local start = p + k0 + j - 1  -- final index of tail record k0
      local from = math.max(k0, d_old - p)
      local to = math.min(k1, k0 + d_new - start)
      if to > from then evict(tail, from, to) end
      k0 = k1
    end
  end
end

-- (4) per-category lists and counts
local groups, order = {}, {}  -- category -> its new live records (packed, time order); categories in order
if dups == 0 and p >= d_new then  -- every record is new and live: take Python's grouping as is
  local off = 0
  for c, k in string.gmatch(ARGV[7], '(%d+) (%d+)') do
    c, k = tonumber(c), tonumber(k)
    groups[c] = string.sub(ARGV[6], off * R + 1, (off + k) * R)
    order[#order + 1] = c
    off = off + k
  end
else
  local parts = {}
  for j = 1, a do
    local pos = n_old + j - 1
    if split then pos = p + split[j] + j - 1 end
    if pos >= d_new then
      local c = cat_of(add, j - 1)
      if not parts[c] then
        parts[c] = {}
        order[#order + 1] = c
      end
      parts[c][#parts[c] + 1] = string.sub(add, (j - 1) * R + 1, j * R)
    end
  end
  for _, c in ipairs(order) do groups[c] = table.concat(parts[c]) end
end
for c, _ in pairs(dec) do
  if groups[c] == nil then
    groups[c] = false
    order[#order + 1] = c
  end
end
if #order > 0 then
  local fields = {}
  for q, c in ipairs(order) do fields[q] = tostring(c) end
  local counts = hmget_chunked(cnt_key, fields)
  local lists = hmget_chunked(cat_key, fields)
  local cnt_set, cat_set, gone = {}, {}, {}
  for q, c in ipairs(order) do
    local f = fields[q]
    local new = groups[c]
    local count = tonumber(counts[q] or '0') - (dec[c] or 0)
    if new then count = count + #new / R end
    if count <= 0 then
      gone[#gone + 1] = f
    else
      local keep = math.min(per_cat, count) * R
      local list = lists[q] or ''
      if new and #list > 0 and ts_of(new, 0) < ts_of(list, #list / R - 1) then
        list = (merge(list, new))
      elseif new then  -- plain append: copy only what is kept
        if #new >= keep then
          list = string.sub(new, -keep)
        elseif #list + #new > keep then
          list = string.sub(list, #list + #new - keep + 1) .. new
        else
          list = list .. new
        end
      end
      if #list > keep then list = string.sub(list, -keep) end
      cnt_set[#cnt_set + 1] = f
      cnt_set[#cnt_set + 1] = count
      cat_set[#cat_set + 1] = f
      cat_set[#cat_set + 1] = list
    end
  end
  if #cnt_set > 0 then
    call_chunked('HSET', cnt_key, cnt_set)
    call_chunked('HSET', cat_key, cat_set)
  end
  if #gone > 0 then
    call_chunked('HDEL', cnt_key, gone)
    call_chunked('HDEL', cat_key, gone)
  end
end

-- (5) cut the dead prefix once it outgrows the margin
if n_new > cap + margin then
  redis.call('SET', seq_key, redis.call('GETRANGE', seq_key, d_new * R, -1))
end
return {a, dups}
"""

APPEND_SHA = hashlib.sha1(APPEND_LUA.encode()).hexdigest()
WRITE_PROBE_LUA = "#!lua flags=\nreturn 1\n"  # refused exactly when APPEND_LUA would be (OOM, READONLY)
