-- Apply the item, item-to-item and global part of a batch, then clear the
-- users' outboxes, atomically.
--
-- The user script leaves one outbox entry per new event in the user's outbox.
-- This script applies those entries and deletes the outboxes in one step, so
-- an entry is applied exactly once even when the consumer dies between the
-- two scripts: the replayed batch finds the entries still in the outbox.
--
-- KEYS     the users' outbox keys that this call applies and deletes.
-- ARGV[1]  JSON settings: prefix, item_ttl, catalog_ttl, trend_tau, pair_tau,
--          max_trending, max_trending_category, max_pairs, windows, weights,
--          anchor (Unix seconds that decayed log-scores are relative to),
--          slots (the [type code, window code] of each returned count)
-- ARGV[2]  JSON list of outbox entries in event order (see apply_user.lua)
--
-- Returns, for every entry in order, {digest hex, the item's trending
-- log-score before the entry (nil when none), then one windowed count per
-- slot}: the item's event counts just before the entry, over the windows
-- that end at the entry's own event time.
--
-- LIMITATION(L-20): the item and global keys are not in KEYS because they are
-- only known from the outboxes. This works on a single Redis server (or one
-- with replicas) but not on Redis Cluster, where the call must be split per
-- slot and loses its atomicity.

local config = cjson.decode(ARGV[1])
local entries = cjson.decode(ARGV[2])
local prefix = config.prefix
local windows = config.windows
local longest = windows[#windows][2] * windows[#windows][3]

local function item_key(item_id, suffix)
  return prefix .. ':{i:' .. item_id .. '}' .. suffix
end

local function log_add(a, b)
  if a == nil then
    return b
  end
  local high = math.max(a, b)
  return high + math.log(math.exp(a - high) + math.exp(b - high))
end

-- Decayed counts live as log-scores relative to the anchor: the value at
-- time T is exp(score - (T - anchor) / tau), and the order of members is the
-- order of their decayed counts at any time.
--
-- Writes are gathered in memory and each key is written once at the end. The
-- final state of a key depends only on the updates to that key, in order, so
-- this leaves Redis as the event-by-event updates would:
-- - item hashes are read once and changed in memory, so later events of the
--   same item still see the state just before them;
-- - a trending list gets each item's newest score once. Scores only grow, so
--   one cap at the end keeps the same members as a cap after every update;
-- - an item-to-item list gets its decayed sums in one ZADD when it cannot
--   overflow its cap in this call. Otherwise a member dropped by the cap in
--   the middle of the call restarts from 0, so its updates are applied one
--   at a time.
local touched = {}

-- Calls a command with many arguments in slices, because unpack in Redis's
-- Lua 5.1 fails past 8000 values (LUAI_MAXCSTACK). An even ``step`` keeps
-- score-member and field-value pairs together.
local function call_sliced(command, key, args, step)
  local replies = {}
  for first = 1, #args, step do
    local reply = redis.call(command, key, unpack(args, first, math.min(first + step - 1, #args)))
    if type(reply) == 'table' then
      for _, value in ipairs(reply) do
        replies[#replies + 1] = value
      end
    end
  end
  return replies
end

-- Trending lists: key -> {cap, {member -> newest score}, members in order}.
local trends = {}

local function set_trend(key, member, score, cap)
  local list = trends[key]
  if list == nil then
    list = {cap = cap, scores = {}, order = {}}
    trends[key] = list
  end
  if list.scores[member] == nil then
    list.order[#list.order + 1] = member
  end
  list.scores[member] = score
  touched[key] = config.item_ttl
end

-- Item-to-item lists: key -> updates {member, log weight} in order.
local pair_lists = {}
local pair_order = {}

local function queue_bump(key, member, log_weight)
  local updates = pair_lists[key]
  if updates == nil then
    updates = {}
    pair_lists[key] = updates
    pair_order[#pair_order + 1] = key
  end
  updates[#updates + 1] = {member, log_weight}
  touched[key] = config.item_ttl
end

-- Bucket fields ('cm5232985': type code, window code, bucket index), parsed
-- once per name: {slot of the count, window position, index}, or false.
local slot_of = {}
for slot, pair in ipairs(config.slots) do
  slot_of[pair[1] .. pair[2]] = slot
end
local window_position = {}
for position, window in ipairs(windows) do
  window_position[window[1]] = position
end
local parsed = {}

local function parse_bucket(field)
  local bucket = parsed[field]
  if bucket == nil then
    bucket = false
    local code, window_code, index = string.match(field, '^([cap])([a-z])(%d+)$')
    if code and slot_of[code .. window_code] then
      bucket = {slot_of[code .. window_code], window_position[window_code], tonumber(index)}
    end
    parsed[field] = bucket
  end
  return bucket
end

-- Item hashes: key -> {fields = current fields, dirty = {field -> true},
-- buckets = {bucket field -> {parsed bucket, count as a number}}}. Values
-- changed in this call stay numbers until they are written, because
-- converting numbers to and from text is a large part of the script's time.
local items = {}
local item_order = {}

local function load_item(key)
  local item = items[key]
  if item == nil then
    local flat = redis.call('HGETALL', key)
    local fields = {}
    local buckets = {}
    for i = 1, #flat, 2 do
      fields[flat[i]] = flat[i + 1]
      local bucket = parse_bucket(flat[i])
      if bucket then
        buckets[flat[i]] = {bucket, tonumber(flat[i + 1])}
      end
    end
    item = {fields = fields, dirty = {}, buckets = buckets}
    items[key] = item
    item_order[#item_order + 1] = key
  end
  return item
end

-- Floor division as Python computes it for floats, so the windows end at
-- the same bucket as in the vectors computed from a whole hash.
local function floor_div(value, width)
  local mod = math.fmod(value, width)
  local div = (value - mod) / width
  if mod ~= 0 and (width < 0) ~= (mod < 0) then
    div = div - 1
  end
  local floored = math.floor(div)
  if div - floored > 0.5 then
    floored = floored + 1
  end
  return floored
end

-- The item's counts per slot at ``time``, and the names of its bucket fields
-- when ``with_names`` is set.
local function window_counts(buckets, time, with_names)
  local low, high = {}, {}
  for position, window in ipairs(windows) do
    high[position] = floor_div(time, window[2])
    low[position] = high[position] - window[3]
  end
  local counts = {}
  for slot = 1, #config.slots do
    counts[slot] = 0
  end
  local names = {}
  for field, entry in pairs(buckets) do
    local bucket = entry[1]
    local position, index = bucket[2], bucket[3]
    if low[position] < index and index <= high[position] then
      counts[bucket[1]] = counts[bucket[1]] + entry[2]
    end
    if with_names then
      names[#names + 1] = field
    end
  end
  return counts, names
end

-- Bucket field names by type code, window code and bucket index.
local name_cache = {}

local function bucket_name(code, window_code, index)
  local names = name_cache[code .. window_code]
  if names == nil then
    names = {}
    name_cache[code .. window_code] = names
  end
  local name = names[index]
  if name == nil then
    name = code .. window_code .. index
    names[index] = name
  end
  return name
end

-- Text of a log-score or time as stored: '%.17g' reads back to the same
-- number, so keeping the number in between changes no result.
local function format_score(value)
  if type(value) == 'number' then
    return string.format('%.17g', value)
  end
  return value
end

local function apply_item(key, code, time)
  local item = load_item(key)
  local fields = item.fields
  local dirty = item.dirty
  local buckets = item.buckets
  local last = tonumber(fields['lt'])
  local newest = math.max(last or time, time)
  -- Buckets can only fall out of a window when the newest time enters a new
  -- bucket of the narrowest window, so most events skip the scan. Only the
  -- fields present before the event are checked.
  local narrowest = windows[1][2]
  local prune = last == nil or math.floor(newest / narrowest) ~= math.floor(last / narrowest)
  local counts, bucket_names = window_counts(buckets, time, prune)
  local before = {counts = counts, lt = fields['lt'], tr = fields['tr']}
  if last == nil or time >= last - longest then
    for _, window in ipairs(windows) do
      local field = bucket_name(code, window[1], math.floor(time / window[2]))
      local count = (tonumber(fields[field]) or 0) + 1
      fields[field] = count
      dirty[field] = true
      local bucket = parse_bucket(field)
      if bucket then
        buckets[field] = {bucket, count}
      end
    end
  end
  if not prune then
    return item, before, newest
  end
  for _, field in ipairs(bucket_names) do
    local bucket = parsed[field]
    local window = windows[bucket[2]]
    if bucket[3] <= math.floor(newest / window[2]) - window[3] then
      fields[field] = nil
      buckets[field] = nil
      dirty[field] = true
    end
  end
  return item, before, newest
end

local function pair_up(suffix, item_id, partners, log_weight)
  for _, other in ipairs(partners) do
    queue_bump(item_key(item_id, suffix), other, log_weight)
    queue_bump(item_key(other, suffix), item_id, log_weight)
  end
end

local function write_items()
  for _, key in ipairs(item_order) do
    local item = items[key]
    local set_args = {}
    local deleted = {}
    for field, _ in pairs(item.dirty) do
      local value = item.fields[field]
      if field == 'lt' or field == 'tr' then
        value = format_score(value)
      elseif type(value) == 'number' then
        value = tostring(value)
      end
      if value == nil then
        deleted[#deleted + 1] = field
      else
        set_args[#set_args + 1] = field
        set_args[#set_args + 1] = value
      end
    end
    if #deleted > 0 then
      call_sliced('HDEL', key, deleted, 1000)
    end
    if #set_args > 0 then
      call_sliced('HSET', key, set_args, 1000)
    end
  end
end

local function write_trends()
  for key, list in pairs(trends) do
    local args = {}
    for _, member in ipairs(list.order) do
      args[#args + 1] = string.format('%.17g', list.scores[member])
      args[#args + 1] = member
    end
    call_sliced('ZADD', key, args, 1000)
    local size = redis.call('ZCARD', key)
    if size > list.cap then
      redis.call('ZREMRANGEBYRANK', key, 0, size - list.cap - 1)
    end
  end
end

-- Applies a list's updates one at a time, each a ZADD followed by a cap with
-- ZREMRANGEBYRANK, so a member dropped by the cap restarts from 0 when it
-- comes back. Reading the whole list instead costs more, because Redis
-- formats every score of a ZRANGE reply as text.
local function replay_capped(key, updates, cap, size)
  for _, update in ipairs(updates) do
    local old = redis.call('ZSCORE', key, update[1])
    local score = log_add(old and tonumber(old) or nil, update[2])
    size = size + redis.call('ZADD', key, string.format('%.17g', score), update[1])
    if size > cap then
      redis.call('ZREMRANGEBYRANK', key, 0, size - cap - 1)
      size = cap
    end
  end
end

local function write_pairs()
  local cap = config.max_pairs
  for _, key in ipairs(pair_order) do
    local updates = pair_lists[key]
    local members = {}
    local seen = {}
    for _, update in ipairs(updates) do
      if not seen[update[1]] then
        seen[update[1]] = true
        members[#members + 1] = update[1]
      end
    end
    local size = redis.call('ZCARD', key)
    if size + #members <= cap then
      local old = call_sliced('ZMSCORE', key, members, 1000)
      local scores = {}
      for i, member in ipairs(members) do
        scores[member] = old[i] and tonumber(old[i]) or nil
      end
      for _, update in ipairs(updates) do
        scores[update[1]] = log_add(scores[update[1]], update[2])
      end
      local args = {}
      for _, member in ipairs(members) do
        args[#args + 1] = string.format('%.17g', scores[member])
        args[#args + 1] = member
      end
      call_sliced('ZADD', key, args, 1000)
    else
      replay_capped(key, updates, cap, size)
    end
  end
end

-- Only entries still in an outbox are applied, so running this script twice
-- with the same entries (a client retry after a lost reply) applies them once.
local pending = {}
for _, outbox_key in ipairs(KEYS) do
  local outbox = redis.call('GET', outbox_key)
  if outbox then
    for _, entry in ipairs(cjson.decode(outbox)) do
      pending[entry[1]] = true
    end
  end
end

local results = {}
local day_counts = {}
local newest_day = nil
local totals = prefix .. ':{g}:totals'
for _, entry in ipairs(entries) do
  if pending[entry[1]] then
    pending[entry[1]] = nil
    local digest, code, time, item_id, category = entry[1], entry[2], tonumber(entry[3]), entry[4], entry[5]
    local key = item_key(item_id, '')
    local item, before, newest = apply_item(key, code, time)

    -- The item's own score lives in its hash, so an item that fell out of a
    -- capped list comes back with its full score.
    local trend_weight = (time - config.anchor) / config.trend_tau + math.log(config.weights[code])
    local trend = log_add(tonumber(before['tr']), trend_weight)
    item.fields['lt'] = newest
    item.fields['tr'] = trend
    item.dirty['lt'] = true
    item.dirty['tr'] = true
    set_trend(prefix .. ':{g}:trend', item_id, trend, config.max_trending)
    if category ~= '' then
      set_trend(prefix .. ':{g}:trend:' .. category, item_id, trend, config.max_trending_category)
    end
    touched[key] = config.item_ttl
    touched[item_key(item_id, ':cat')] = config.catalog_ttl

    local pair_weight = (time - config.anchor) / config.pair_tau
    pair_up(':cv', item_id, entry[7], pair_weight)
    pair_up(':cc', item_id, entry[8], pair_weight)
    pair_up(':cp', item_id, entry[9], pair_weight)

    local day = math.floor(time / 86400)
    local field = code .. 'd' .. day
    day_counts[field] = (day_counts[field] or 0) + 1
    if newest_day == nil or day > newest_day then
      newest_day = day
    end
    local result = {digest, format_score(before['tr']) or false}
    for _, count in ipairs(before.counts) do
      result[#result + 1] = count
    end
    results[#results + 1] = result
  end
end

write_items()
write_trends()
write_pairs()

if newest_day ~= nil then
  for field, count in pairs(day_counts) do
    redis.call('HINCRBY', totals, field, count)
  end
  local flat = redis.call('HGETALL', totals)
  for i = 1, #flat, 2 do
    local index = string.match(flat[i], '^[cap]d(%d+)$')
    if index and tonumber(index) <= newest_day - 8 then
      redis.call('HDEL', totals, flat[i])
    end
  end
  touched[totals] = config.item_ttl
end

-- TTLs are set once per key and call; EXPIRE on a missing key does nothing.
for key, ttl in pairs(touched) do
  redis.call('EXPIRE', key, ttl)
end

redis.call('DEL', unpack(KEYS))
return results
