-- Apply one user's events, in order, and record their ids, atomically.
--
-- KEYS[1]  the user's hash: counts, session, affinities, recent items, dedupe.
-- KEYS[2]  the user's outbox: item and global updates not applied yet.
-- ARGV[1]  JSON settings: ttl (seconds the hash lives after a new event),
--          idle (session gap, seconds), tau (affinity decay, seconds),
--          dedupe (digests kept), recent (recent and purchased items kept),
--          partners (same-session items an event pairs with), affinity
--          (categories and brands kept), windows ([[code, bucket seconds,
--          bucket count], ...], longest last), weights ({type code: weight})
-- ARGV[2]  JSON list of events, each [digest hex (5 bytes), type code,
--          event time (string), item id, category ('' if unknown), brand
--          ('' if unknown), price ('' if unknown), partition, offset (-1 when
--          unknown)]
--
-- Returns one {status, state} per event and, last, the outbox JSON: the
-- item and global updates that are still to be applied for this user.
-- Status: 0 new, 1 new and late (older than the newest event), 2 new and
-- older than the longest window, 3 redelivered (seen at or before the newest
-- offset of the same partition), 4 duplicate. ``state`` is the JSON
-- object of the hash before the event, without the dedupe digests.

local key = KEYS[1]
local outbox_key = KEYS[2]
local config = cjson.decode(ARGV[1])
local events = cjson.decode(ARGV[2])
local ttl = config.ttl
local idle = config.idle
local tau = config.tau
local max_dedupe = config.dedupe
local max_recent = config.recent
local max_partners = config.partners
local max_affinity = config.affinity
local windows = config.windows
local weights = config.weights
local longest = windows[#windows][2] * windows[#windows][3]

-- Affinities live in their own tables while the script runs, so an update
-- touches a handful of entries instead of every field of the hash.
local state = {}
local affinity = {['C:'] = {}, ['B:'] = {}}
-- Long values (recent items, purchased items, digests) are stored in chunks
-- of at most 60 bytes, in fields 'r#1', 'r#2', and so on. Redis keeps a hash
-- in its compact listpack encoding only while every value is at most
-- hash-max-listpack-value bytes long (64 by default in Redis 7).
local chunked = {r = true, pi = true, d = true}
local chunk_bytes = 60
local chunks = {}
local flat = redis.call('HGETALL', key)
for i = 1, #flat, 2 do
  local field, value = flat[i], flat[i + 1]
  local base, index = nil, nil
  if string.find(field, '#', 1, true) then
    base, index = string.match(field, '^(%a+)#(%d+)$')
  end
  local table_of = affinity[string.sub(field, 1, 2)]
  if base and chunked[base] then
    chunks[base] = chunks[base] or {}
    chunks[base][tonumber(index)] = value
  elseif table_of then
    table_of[string.sub(field, 3)] = tonumber(value)
  else
    state[field] = value
  end
end
for base, parts in pairs(chunks) do
  state[base] = table.concat(parts)
end

local function format_affinity(value)
  return string.format('%.6g', value)
end

-- The stored text of each affinity ('C:' or 'B:' prefix, then the name)
-- beside its number, so a snapshot formats nothing. Text written by
-- format_affinity reads back to the same text for every normal number, and
-- anything else is formatted again.
local smallest_normal = 2.2250738585072014e-308
local affinity_text = {['C:'] = {}, ['B:'] = {}}

local function set_affinity(prefix, name, text)
  local value = tonumber(text)
  affinity[prefix][name] = value
  if value ~= 0 and value < smallest_normal then
    text = format_affinity(value)
  end
  affinity_text[prefix][name] = {prefix .. name, text}
end

local function drop_affinity(prefix, name)
  affinity[prefix][name] = nil
  affinity_text[prefix][name] = nil
end

for prefix, entries in pairs(affinity) do
  for name, value in pairs(entries) do
    affinity_text[prefix][name] = {prefix .. name, format_affinity(value)}
  end
end

-- The state as JSON, without the dedupe digests (binary). The affinities are
-- added to the state table only while it is encoded.
local function snapshot()
  local digests = state['d']
  state['d'] = nil
  for _, texts in pairs(affinity_text) do
    for _, entry in pairs(texts) do
      state[entry[1]] = entry[2]
    end
  end
  local encoded = cjson.encode(state)
  for _, texts in pairs(affinity_text) do
    for _, entry in pairs(texts) do
      state[entry[1]] = nil
    end
  end
  state['d'] = digests
  return encoded
end

-- Digests are 5 bytes each, so only a match that starts on a multiple of 5
-- counts. A plain string.find skips the rest without creating substrings.
local function has_digest(digest)
  local seen = state['d'] or ''
  local start = 1
  while true do
    local found = string.find(seen, digest, start, true)
    if found == nil then
      return false
    end
    if (found - 1) % 5 == 0 then
      return true
    end
    start = found + 1
  end
end

-- Lists of ids are stored as one string joined by the unit separator (0x1F),
-- which keeps short values inside Redis's compact hash encoding. Validated
-- events have no control characters in their ids. An id with 0x1F from a
-- caller that skipped validation is left out of the lists, so that it cannot
-- split them.
local separator = '\31'

local function decode_list(field)
  local raw = state[field]
  local list = {}
  if raw == nil or raw == '' then
    return list
  end
  for entry in string.gmatch(raw, '[^\31]+') do
    list[#list + 1] = entry
  end
  return list
end

local function encode_list(field, list)
  if #list == 0 then
    state[field] = nil
  else
    state[field] = table.concat(list, separator)
  end
end

local function prune_buckets(newest)
  for field, _ in pairs(state) do
    local code, window_code, index = string.match(field, '^([cap])([a-z])(%d+)$')
    if code then
      for _, window in ipairs(windows) do
        if window[1] == window_code then
          if tonumber(index) <= math.floor(newest / window[2]) - window[3] then
            state[field] = nil
          end
        end
      end
    end
  end
end

local function count_in_windows(code, time)
  for _, window in ipairs(windows) do
    local field = code .. window[1] .. math.floor(time / window[2])
    state[field] = tostring((tonumber(state[field]) or 0) + 1)
  end
end

-- Affinities are stored as of the anchor time 'at'; a newer event decays all
-- of them to its own time, an older one adds its weight already decayed.
-- Values are rounded after every step exactly as they are stored, so the
-- result does not depend on how events are split across calls.
local function update_affinity(prefix, name, weight)
  if name == '' then
    return
  end
  local entries = affinity[prefix]
  set_affinity(prefix, name, format_affinity((entries[name] or 0) + weight))
  local count = 0
  for _ in pairs(entries) do
    count = count + 1
  end
  if count > max_affinity then
    local ranked = {}
    for entry, value in pairs(entries) do
      ranked[#ranked + 1] = {entry, value}
    end
    table.sort(ranked, function(a, b)
      if a[2] == b[2] then
        return a[1] > b[1]
      end
      return a[2] > b[2]
    end)
    for i = max_affinity + 1, #ranked do
      drop_affinity(prefix, ranked[i][1])
    end
  end
end

local function add_affinity(name, brand, weight, time)
  local anchor = tonumber(state['at']) or time
  if time > anchor then
    local factor = math.exp(-(time - anchor) / tau)
    for prefix, entries in pairs(affinity) do
      for entry, value in pairs(entries) do
        set_affinity(prefix, entry, format_affinity(value * factor))
      end
    end
    anchor = time
  else
    weight = weight * math.exp(-(anchor - time) / tau)
  end
  state['at'] = string.format('%.17g', anchor)
  update_affinity('C:', name, weight)
  update_affinity('B:', brand, weight)
end

local function add_price(price)
  if price == '' then
    return
  end
  local value = tonumber(price)
  state['pn'] = tostring((tonumber(state['pn']) or 0) + 1)
  state['ps'] = string.format('%.12g', (tonumber(state['ps']) or 0) + value)
  state['pq'] = string.format('%.12g', (tonumber(state['pq']) or 0) + value * value)
end

-- Items of the current session, newest first, that the new item pairs with.
local function session_partners(recent, item_id, session_count, only_code)
  local partners = {}
  local seen = {}
  for i = 1, math.min(session_count, #recent) do
    local entry = recent[i]
    local code = string.sub(entry, 1, 1)
    local other = string.sub(entry, 2)
    if other ~= item_id and not seen[other] and (only_code == nil or code == only_code) then
      seen[other] = true
      partners[#partners + 1] = other
      if #partners >= max_partners then
        break
      end
    end
  end
  return partners
end

local function record_digest(digest)
  local seen = digest .. (state['d'] or '')
  state['d'] = string.sub(seen, 1, 5 * max_dedupe)
end

local function track_offset(partition, offset)
  if offset < 0 then
    return
  end
  if tonumber(state['kp']) ~= partition or offset > (tonumber(state['ko']) or -1) then
    state['kp'] = tostring(partition)
    state['ko'] = tostring(offset)
  end
end

local function apply_session(code, item_id, time, outbox_entry)
  local last = tonumber(state['lt'])
  local session_count = tonumber(state['sn']) or 0
  if last == nil or time - last > idle then
    state['ss'] = string.format('%.17g', time)
    session_count = 0
  end
  local recent = decode_list('r')
  outbox_entry[7] = session_partners(recent, item_id, session_count, nil)
  if code == 'a' then
    outbox_entry[8] = session_partners(recent, item_id, session_count, 'a')
  elseif code == 'p' then
    outbox_entry[9] = session_partners(recent, item_id, session_count, 'p')
  end
  state['sn'] = tostring(session_count + 1)
  state['lt'] = string.format('%.17g', time)
  if not string.find(item_id, separator, 1, true) then
    table.insert(recent, 1, code .. item_id)
  end
  while #recent > max_recent do
    table.remove(recent)
  end
  encode_list('r', recent)
end

local function add_purchase(item_id)
  local purchased = decode_list('pi')
  for i = #purchased, 1, -1 do
    if purchased[i] == item_id then
      table.remove(purchased, i)
    end
  end
  if not string.find(item_id, separator, 1, true) then
    table.insert(purchased, 1, item_id)
  end
  while #purchased > max_recent do
    table.remove(purchased)
  end
  encode_list('pi', purchased)
end

local outbox = {}
local pending = redis.call('GET', outbox_key)
if pending then
  outbox = cjson.decode(pending)
end

local results = {}
local has_new = false
local function unhex(text)
  return (string.gsub(text, '..', function(pair)
    return string.char(tonumber(pair, 16))
  end))
end

for _, event in ipairs(events) do
  local digest_hex = event[1]
  local digest = unhex(digest_hex)
  local code = event[2]
  local time_text = event[3]
  local time = tonumber(time_text)
  local item_id = event[4]
  local category = event[5]
  local brand = event[6]
  local price = event[7]
  local partition = event[8]
  local offset = event[9]

  if has_digest(digest) then
    -- A repeat changes nothing, not even the newest offset, so a replay of
    -- a dropped duplicate is dropped again.
    local status = 4
    if offset >= 0 and tonumber(state['kp']) == partition
        and offset <= (tonumber(state['ko']) or -1) then
      status = 3
    end
    results[#results + 1] = {status, snapshot()}
  else
    has_new = true
    local before = snapshot()
    local last = tonumber(state['lt'])
    local status = 0
    if last ~= nil and time < last - longest then
      status = 2
    elseif last ~= nil and time < last then
      status = 1
    end

    -- outbox entry: digest hex, type, time, item, category, stale flag,
    -- co-visit, co-cart and co-purchase partners
    local entry = {
      digest_hex, code, time_text, item_id, category, status == 2 and 1 or 0,
      {}, {}, {},
    }
    if status ~= 2 then
      count_in_windows(code, time)
    end
    if status == 0 then
      apply_session(code, item_id, time, entry)
    end
    state['n'] = tostring((tonumber(state['n']) or 0) + 1)
    if category ~= '' or brand ~= '' then
      add_affinity(category, brand, weights[code], time)
    end
    add_price(price)
    if code == 'p' then
      add_purchase(item_id)
    end
    record_digest(digest)
    track_offset(partition, offset)
    outbox[#outbox + 1] = entry
    results[#results + 1] = {status, before}
  end
end

local outbox_json = ''
if #outbox > 0 then
  outbox_json = cjson.encode(outbox)
  redis.call('SET', outbox_key, outbox_json, 'EX', ttl)
end

if has_new then
  -- Pruning once per call leaves the same state as after every event,
  -- because the cut-off only moves forward with the newest event time.
  if state['lt'] then
    prune_buckets(tonumber(state['lt']))
  end
  local fields = {}
  for field, value in pairs(state) do
    if chunked[field] then
      local part = 0
      for start = 1, #value, chunk_bytes do
        part = part + 1
        fields[#fields + 1] = field .. '#' .. part
        fields[#fields + 1] = string.sub(value, start, start + chunk_bytes - 1)
      end
    else
      fields[#fields + 1] = field
      fields[#fields + 1] = value
    end
  end
  for prefix, entries in pairs(affinity) do
    for name, value in pairs(entries) do
      fields[#fields + 1] = prefix .. name
      fields[#fields + 1] = format_affinity(value)
    end
  end
  redis.call('DEL', key)
  redis.call('HSET', key, unpack(fields))
  redis.call('EXPIRE', key, ttl)
end

results[#results + 1] = outbox_json
return results
