"""The Lua script behind ``RedisStore.append``: dedupe, time-ordered merge, cap and per-category lists of ONE user,
atomically (a script runs alone on the server). Kept as a Python string so it ships inside the package.

Called as ``EVALSHA sha 4 seq cat cnt eid  records cap per_category margin window_ms [event_id ...]``:

- ``records``: the user's new packed 21-byte records, already sorted stably by ts in Python (arrival order on
  ties), with batch-internal duplicates removed; ``event_id`` i belongs to record i ('' = none) and the ids are
  omitted altogether when no record has one;
- ``cap`` = max_behaviors, ``per_category``, ``margin`` = how far past the cap the stored string may grow before
  the dead prefix is cut off, ``window_ms`` = the dedupe window.

Returns ``{accepted, duplicates}``. Every key it touches carries the user's hash tag (one Cluster slot).

Steps: (1) ids: drop ids first seen more than the window ago (ZREMRANGEBYSCORE), count known ids as duplicates,
remember the new ones (score = server time in ms), PEXPIRE the set by the window. (2) merge: APPEND when the
oldest new record is not older than the last stored one; otherwise find the insertion point by binary search on ts
(8-byte GETRANGE probes), read the tail from there, merge (a new record goes after stored ones with an equal ts)
and SETRANGE it back. (3) eviction: the live sequence is the last ``cap`` records of the string; records pushed
into the dead prefix by this append decrement their category's count (``cnt``), new records that land in it are
never counted. (4) categories: each touched category's list gets its new live records merged in and is cut to its
newest ``min(per_category, count)``, so an evicted event is never returned by a category read; a category whose
count reaches 0 is removed from both hashes. (5) when the string holds more than ``cap + margin`` records the dead
prefix is cut off with one rewrite (amortised: once per ``margin`` appended records at most).
"""

from __future__ import annotations

import hashlib

APPEND_LUA = r"""
local R = 21
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

-- (1) idempotency
local dups = 0
local add = batch
if #ARGV > 5 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', eid_key, '-inf', now - window_ms)
  local kept, fresh, zargs = {}, {}, {}
  for i = 1, n_in do
    local id = ARGV[5 + i]
    if id ~= '' and (fresh[id] or redis.call('ZSCORE', eid_key, id)) then
      dups = dups + 1
    else
      if id ~= '' then
        fresh[id] = true
        zargs[#zargs + 1] = now
        zargs[#zargs + 1] = id
      end
      kept[#kept + 1] = string.sub(batch, (i - 1) * R + 1, i * R)
    end
  end
  if dups > 0 then add = table.concat(kept) end
  if #zargs > 0 then
    for s = 1, #zargs, 1000 do
      redis.call('ZADD', eid_key, unpack(zargs, s, math.min(s + 999, #zargs)))
    end
    redis.call('PEXPIRE', eid_key, window_ms)
  end
end
local a = #add / R
if a == 0 then return {0, dups} end

-- (2) merge into the full sequence
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

-- (3) eviction bookkeeping: live = the last `cap` records; dead prefix = the first d records
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
local pos = {}
if p == n_old then
  redis.call('APPEND', seq_key, add)
  for j = 1, a do pos[j] = n_old + j - 1 end
else
  local tail = redis.call('GETRANGE', seq_key, p * R, -1)
  local merged, split = merge(tail, add)
  redis.call('SETRANGE', seq_key, p * R, merged)
  for j = 1, a do pos[j] = p + split[j] + j - 1 end
  if p < d_new then
    local n_tail = n_old - p
    local k0 = 0
    for j = 1, a + 1 do
      local k1 = n_tail
      if j <= a then k1 = split[j] end
      local start = p + k0 + j - 1
      local from = math.max(k0, d_old - p)
      local to = math.min(k1, k0 + d_new - start)
      if to > from then evict(tail, from, to) end
      k0 = k1
    end
  end
end

-- (4) per-category lists and counts
local groups, order = {}, {}
for j = 1, a do
  if pos[j] >= d_new then
    local c = cat_of(add, j - 1)
    local g = groups[c]
    if not g then
      g = {}
      groups[c] = g
      order[#order + 1] = c
    end
    g[#g + 1] = string.sub(add, (j - 1) * R + 1, j * R)
  end
end
for c, _ in pairs(dec) do
  if groups[c] == nil then
    groups[c] = false
    order[#order + 1] = c
  end
end
for _, c in ipairs(order) do
  local f = tostring(c)
  local g = groups[c]
  local plus = 0
  if g then plus = #g end
  local delta = plus - (dec[c] or 0)
  local count
  if delta ~= 0 then
    count = redis.call('HINCRBY', cnt_key, f, delta)
  else
    count = tonumber(redis.call('HGET', cnt_key, f) or '0')
  end
  if count <= 0 then
    redis.call('HDEL', cnt_key, f)
    redis.call('HDEL', cat_key, f)
  else
    local list = redis.call('HGET', cat_key, f) or ''
    if g then
      local fresh = table.concat(g)
      if #list == 0 or ts_of(fresh, 0) >= ts_of(list, #list / R - 1) then
        list = list .. fresh
      else
        list = (merge(list, fresh))
      end
    end
    local keep = math.min(per_cat, count)
    if #list > keep * R then list = string.sub(list, -keep * R) end
    redis.call('HSET', cat_key, f, list)
  end
end

-- (5) cut the dead prefix once it outgrows the margin
if n_new > cap + margin then
  redis.call('SET', seq_key, redis.call('GETRANGE', seq_key, d_new * R, -1))
end
return {a, dups}
"""

APPEND_SHA = hashlib.sha1(APPEND_LUA.encode()).hexdigest()
