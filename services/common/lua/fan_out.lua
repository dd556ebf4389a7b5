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
--          anchor (Unix seconds that decayed log-scores are relative to)
-- ARGV[2]  JSON list of outbox entries in event order (see apply_user.lua)
--
-- Returns {digest hex, item state before the entry (JSON object)} for
-- every entry, in order.
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
-- Sizes of the sorted sets touched in this call, so a cap check needs a
-- ZCARD only the first time a key is touched.
local sizes = {}
local touched = {}

local function add_capped(key, member, score, cap)
  local added = redis.call('ZADD', key, string.format('%.17g', score), member)
  local size = sizes[key]
  if size == nil then
    size = redis.call('ZCARD', key)
  else
    size = size + added
  end
  if size > cap then
    redis.call('ZREMRANGEBYRANK', key, 0, size - cap - 1)
    size = cap
  end
  sizes[key] = size
  touched[key] = config.item_ttl
end

local function bump(key, member, log_weight, cap)
  local old = redis.call('ZSCORE', key, member)
  add_capped(key, member, log_add(old and tonumber(old) or nil, log_weight), cap)
end

local function apply_item(key, code, time)
  local flat = redis.call('HGETALL', key)
  local before = {}
  local last = nil
  local stale_fields = {}
  for i = 1, #flat, 2 do
    before[flat[i]] = flat[i + 1]
  end
  last = tonumber(before['lt'])
  local newest = math.max(last or time, time)
  if last == nil or time >= last - longest then
    for _, window in ipairs(windows) do
      redis.call('HINCRBY', key, code .. window[1] .. math.floor(time / window[2]), 1)
    end
  end
  -- Buckets can only fall out of a window when the newest time enters a new
  -- bucket of the narrowest window, so most events skip the scan.
  local narrowest = windows[1][2]
  if last ~= nil and math.floor(newest / narrowest) == math.floor(last / narrowest) then
    return before, newest
  end
  for field, _ in pairs(before) do
    local _, window_code, index = string.match(field, '^([cap])([a-z])(%d+)$')
    if window_code then
      for _, window in ipairs(windows) do
        if window[1] == window_code
            and tonumber(index) <= math.floor(newest / window[2]) - window[3] then
          stale_fields[#stale_fields + 1] = field
        end
      end
    end
  end
  if #stale_fields > 0 then
    redis.call('HDEL', key, unpack(stale_fields))
  end
  return before, newest
end

local function pair_up(suffix, item_id, partners, log_weight)
  for _, other in ipairs(partners) do
    bump(item_key(item_id, suffix), other, log_weight, config.max_pairs)
    bump(item_key(other, suffix), item_id, log_weight, config.max_pairs)
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
    local before, newest = apply_item(key, code, time)

    -- The item's own score lives in its hash, so an item that fell out of a
    -- capped list comes back with its full score.
    local trend_weight = (time - config.anchor) / config.trend_tau + math.log(config.weights[code])
    local trend = log_add(before['tr'] and tonumber(before['tr']) or nil, trend_weight)
    redis.call('HSET', key, 'lt', string.format('%.17g', newest), 'tr', string.format('%.17g', trend))
    add_capped(prefix .. ':{g}:trend', item_id, trend, config.max_trending)
    if category ~= '' then
      add_capped(prefix .. ':{g}:trend:' .. category, item_id, trend, config.max_trending_category)
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
    results[#results + 1] = {digest, cjson.encode(before)}
  end
end

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
