"""The Redis store's Lua scripts: one per operation, each one atomic round trip.

They run the rules of `queue.py` (the queue model, learning) and `breakers.py` (the
breaker state machine) inside Redis, on the server's clock (``TIME``), so that a
check-and-take cannot interleave with another process's. A property test drives these
and `MemoryStore` with the same operations and compares the answers; change both or
neither.

Storage, per admission key (all of one key's Redis keys share a hash tag):

- ``…:leases``  hash: lease id → "started first_token|- learn_prompt(1|0)";
- ``…:exp``     sorted set: lease id → expiry (server seconds); purged on every access;
- ``…:est``     hash: prompt, prompt_n, gen, gen_n, load, load_n (EWMAs and their sample
  counts) and seq (the lease id counter: ids give the admission order). It is kept
  ``idle_ttl`` once it has learned something; until then only as long as the leases.

A breaker is a hash (failures, steps, epoch, opened, open_until, probe_until, reason); a
gate is a sorted set of holders scored by expiry. Numbers travel as ``%.17g`` strings,
which round-trip a double exactly (Lua's own ``tostring`` keeps only 14 digits, and a
number returned from a script would be truncated to an integer).

Every script takes the time as ``ARGV[1]``: empty for the server's clock; a number when a
test freezes time on both stores.
"""

from __future__ import annotations

from .queue import ALPHA, LOAD_MIN_S

__all__ = ["SCRIPTS"]

_PRELUDE = r"""
local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function num(x) return string.format('%.17g', x) end

local function map(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

-- Removes members (and their hash fields) in batches: unpack() has a stack limit.
local function remove(zset, hash, ids)
  for i = 1, #ids, 500 do
    local batch = {}
    for j = i, math.min(i + 499, #ids) do batch[#batch + 1] = ids[j] end
    redis.call('ZREM', zset, unpack(batch))
    if hash then redis.call('HDEL', hash, unpack(batch)) end
  end
end

-- A member whose expiry is due is gone (its process stopped renewing it).
local function purge(zset, hash, now)
  remove(zset, hash, redis.call('ZRANGEBYSCORE', zset, '-inf', num(now)))
end

local function parse(value)
  local started, ft, learn = string.match(value, '^(%S+) (%S+) (%S+)$')
  return started, ft, learn
end

-- Leases in admission order.
local function leases(hash)
  local flat = redis.call('HGETALL', hash)
  local items = {}
  for i = 1, #flat, 2 do
    local started, ft, learn = parse(flat[i + 1])
    local item = {seq = tonumber(flat[i]), id = flat[i], started = tonumber(started), learn = learn}
    if ft ~= '-' then item.ft = tonumber(ft) end
    items[#items + 1] = item
  end
  table.sort(items, function(a, b) return a.seq < b.seq end)
  return items
end

local function has_learned(est)
  return est['prompt_n'] or est['gen_n'] or est['load_n']
end

local function estimate(est, name, prior)
  local n = tonumber(est[name .. '_n'] or '0')
  if n > 0 then return tonumber(est[name]), n end
  return prior, 0
end

local function learn(key, est, name, sample)
  local n = tonumber(est[name .. '_n'] or '0')
  local value = sample
  if n > 0 then
    local old = tonumber(est[name])
    value = old + __ALPHA__ * (sample - old)
  end
  est[name] = num(value)
  est[name .. '_n'] = tostring(n + 1)
  redis.call('HSET', key, name, est[name], name .. '_n', est[name .. '_n'])
end

local function push(heap, value)
  local i = #heap + 1
  heap[i] = value
  while i > 1 do
    local parent = math.floor(i / 2)
    if heap[parent] <= heap[i] then break end
    heap[parent], heap[i] = heap[i], heap[parent]
    i = parent
  end
end

local function pop(heap)
  local n = #heap
  if n == 0 then return 0.0 end
  local top = heap[1]
  heap[1] = heap[n]
  heap[n] = nil
  n = n - 1
  local i = 1
  while true do
    local left, smallest = 2 * i, i
    if left <= n and heap[left] < heap[smallest] then smallest = left end
    if left + 1 <= n and heap[left + 1] < heap[smallest] then smallest = left + 1 end
    if smallest == i then break end
    heap[i], heap[smallest] = heap[smallest], heap[i]
    i = smallest
  end
  return top
end

-- queue.first_token_in; target is a 1-based index into waiting_since, or nil.
local function first_token_in(slots, prompt, gen, running_since, waiting_since,
                              extra_running, extra_waiting, target, cold)
  local slot_free = {}
  for _, since in ipairs(running_since) do
    if #slot_free >= slots then break end
    slot_free[#slot_free + 1] = math.max(gen - since, 0.0)
  end
  for _ = 1, extra_running do
    if #slot_free >= slots then break end
    slot_free[#slot_free + 1] = gen / 2
  end
  local waiting = {}
  for _, since in ipairs(waiting_since) do waiting[#waiting + 1] = since end
  for _ = 1, extra_waiting do waiting[#waiting + 1] = 0.0 end
  local in_prompt = math.max(slots - #slot_free, 0)
  for i = 1, math.min(in_prompt, #waiting) do
    if i == target then return math.max(prompt - waiting[i], 0.0) + cold end
    slot_free[#slot_free + 1] = math.max(prompt - waiting[i], 0.0) + gen
  end
  if #slot_free < slots then
    for _ = 1, math.min(slots - #slot_free, #waiting + 1) do slot_free[#slot_free + 1] = 0.0 end
  end
  table.sort(slot_free)  -- a sorted array is a heap
  local service = prompt + gen
  for i = in_prompt + 1, #waiting do
    local wait = pop(slot_free)
    if i == target then return wait + prompt + cold end
    push(slot_free, wait + service)
  end
  return pop(slot_free) + prompt + cold
end

-- The queue at `now`: seconds since each running lease's first token, since each waiting
-- lease's admission, and the waiting leases' ids (for a target).
local function queue_of(items, now)
  local running, waiting, waiting_ids = {}, {}, {}
  for _, item in ipairs(items) do
    if item.ft then
      running[#running + 1] = now - item.ft
    else
      waiting[#waiting + 1] = now - item.started
      waiting_ids[#waiting_ids + 1] = item.id
    end
  end
  return running, waiting, waiting_ids
end

-- queue.extra_from_server; an empty server_running means no report.
local function extra_from_server(slots, running, waiting, server_running, server_waiting)
  if server_running == '' then return 0, 0 end
  local in_prompt = math.min(waiting, math.max(slots - running, 0))
  local extra_running = math.max(tonumber(server_running) - (running + in_prompt), 0)
  local extra_waiting = math.max(tonumber(server_waiting) - (waiting - in_prompt), 0)
  return extra_running, extra_waiting
end

local function predict(items, est, now, slots, prompt_prior, gen_prior, cold,
                       server_running, server_waiting, target_id)
  local prompt = estimate(est, 'prompt', prompt_prior)
  local gen = estimate(est, 'gen', gen_prior)
  local running, waiting, waiting_ids = queue_of(items, now)
  local target = nil
  if target_id ~= '' then
    for i, id in ipairs(waiting_ids) do
      if id == target_id then target = i end
    end
    if target == nil then
      for _, item in ipairs(items) do
        if item.id == target_id then return 0.0 end  -- it has its first token already
      end
    end
  end
  local extra_running, extra_waiting =
    extra_from_server(slots, #running, #waiting, server_running, server_waiting)
  return first_token_in(slots, prompt, gen, running, waiting, extra_running, extra_waiting,
                        target, cold)
end

local function touch_load(keys, lease_key_ms, idle_ms, learned)
  redis.call('PEXPIRE', keys[1], lease_key_ms)
  redis.call('PEXPIRE', keys[2], lease_key_ms)
  -- Estimates are kept while idle; a key that learned nothing holds only the id counter,
  -- and a caller naming a new model in every request must not leave one per name for a day.
  if learned then
    redis.call('PEXPIRE', keys[3], idle_ms)
  elseif redis.call('PTTL', keys[3]) < tonumber(lease_key_ms) then
    redis.call('PEXPIRE', keys[3], lease_key_ms)
  end
end
"""

# KEYS: leases, exp, est.
# ARGV: now, slots, prompt_prior, gen_prior, limit|'', cold, server_running|'',
#       server_waiting, lease_ttl, lease_key_ms, idle_ms
# -> {admitted 1|0, predicted, in_flight, id, started}
_ADMIT = r"""
local now = clock(ARGV[1])
purge(KEYS[2], KEYS[1], now)
local est = map(redis.call('HGETALL', KEYS[3]))
local slots = tonumber(ARGV[2])
local in_flight = redis.call('HLEN', KEYS[1])
local predicted
if in_flight < slots and ARGV[7] == '' then
  -- A slot is free whatever the others do: no leases to read, no queue to simulate.
  predicted = estimate(est, 'prompt', tonumber(ARGV[3])) + tonumber(ARGV[6])
else
  predicted = predict(leases(KEYS[1]), est, now, slots, tonumber(ARGV[3]), tonumber(ARGV[4]),
                      tonumber(ARGV[6]), ARGV[7], ARGV[8], '')
end
if ARGV[5] ~= '' and predicted > tonumber(ARGV[5]) then
  return {0, num(predicted), in_flight}
end
local id = redis.call('HINCRBY', KEYS[3], 'seq', 1)
if id == 1 and in_flight > 0 then
  -- The counter's key expired (it learned nothing, see touch_load) while leases were
  -- held: go on after the highest, so ids stay unique and in admission order.
  local top = 0
  for _, held in ipairs(redis.call('HKEYS', KEYS[1])) do top = math.max(top, tonumber(held)) end
  if top >= id then
    id = top + 1
    redis.call('HSET', KEYS[3], 'seq', id)
  end
end
id = tostring(id)
local learn_prompt = '0'
if in_flight < slots then learn_prompt = '1' end
redis.call('HSET', KEYS[1], id, num(now) .. ' - ' .. learn_prompt)
redis.call('ZADD', KEYS[2], num(now + tonumber(ARGV[9])), id)
touch_load(KEYS, ARGV[10], ARGV[11], has_learned(est))
return {1, num(predicted), in_flight, id, num(now)}
"""

# KEYS: leases, exp, est.  ARGV: now, id, idle_ms
_FIRST_TOKEN = r"""
local now = clock(ARGV[1])
purge(KEYS[2], KEYS[1], now)
local value = redis.call('HGET', KEYS[1], ARGV[2])
if not value then return 0 end
local started, ft, learn_prompt = parse(value)
if ft ~= '-' then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], started .. ' ' .. num(now) .. ' ' .. learn_prompt)
if learn_prompt == '1' then
  local est = map(redis.call('HGETALL', KEYS[3]))
  learn(KEYS[3], est, 'prompt', now - tonumber(started))
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
end
return 1
"""

# KEYS: leases, exp, est.  ARGV: now, id, ok 1|0, load_s|'', idle_ms
_FINISH = r"""
local now = clock(ARGV[1])
purge(KEYS[2], KEYS[1], now)
local value = redis.call('HGET', KEYS[1], ARGV[2])
if not value then return 0 end
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
local _, ft, _ = parse(value)
local est = map(redis.call('HGETALL', KEYS[3]))
if ARGV[3] == '1' and ft ~= '-' then learn(KEYS[3], est, 'gen', now - tonumber(ft)) end
if ARGV[4] ~= '' and tonumber(ARGV[4]) > __LOAD_MIN__ then
  learn(KEYS[3], est, 'load', tonumber(ARGV[4]))
end
if has_learned(est) then  -- else as touch_load left it
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
return 1
"""

# KEYS: est.  ARGV: load_s, idle_ms
_OBSERVE = r"""
if tonumber(ARGV[1]) <= __LOAD_MIN__ then return 0 end
local est = map(redis.call('HGETALL', KEYS[1]))
learn(KEYS[1], est, 'load', tonumber(ARGV[1]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: leases, exp, est.
# ARGV: now, slots, prompt_prior, gen_prior, cold, server_running|'', server_waiting, id|''
_PREDICT = r"""
local now = clock(ARGV[1])
purge(KEYS[2], KEYS[1], now)
local est = map(redis.call('HGETALL', KEYS[3]))
if ARGV[8] == '' and ARGV[6] == '' and redis.call('HLEN', KEYS[1]) < tonumber(ARGV[2]) then
  return num(estimate(est, 'prompt', tonumber(ARGV[3])) + tonumber(ARGV[5]))  -- a slot is free
end
return num(predict(leases(KEYS[1]), est, now, tonumber(ARGV[2]), tonumber(ARGV[3]),
                   tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8]))
"""

# KEYS: leases, exp, est.  ARGV: now, prompt_prior, gen_prior, load_prior
# -> {in_flight, running, prompt, gen, load, gen_n, load_n}
_VIEW = r"""
local now = clock(ARGV[1])
purge(KEYS[2], KEYS[1], now)
local items = leases(KEYS[1])
local running = 0
for _, item in ipairs(items) do
  if item.ft then running = running + 1 end
end
local est = map(redis.call('HGETALL', KEYS[3]))
local prompt = estimate(est, 'prompt', tonumber(ARGV[2]))
local gen, gen_n = estimate(est, 'gen', tonumber(ARGV[3]))
local load, load_n = estimate(est, 'load', tonumber(ARGV[4]))
return {#items, running, num(prompt), num(gen), num(load), gen_n, load_n}
"""

_BREAKER = r"""
local FIELDS = {'failures', 'steps', 'epoch', 'opened', 'open_until', 'probe_until'}

local function read_breaker(key)
  local raw = map(redis.call('HGETALL', key))
  local b = {reason = raw.reason or ''}
  for _, name in ipairs(FIELDS) do b[name] = tonumber(raw[name] or '0') end
  return b
end

local function write_breaker(key, b, idle_ms)
  redis.call('HSET', key, 'failures', b.failures, 'steps', b.steps, 'epoch', b.epoch,
             'opened', b.opened, 'open_until', num(b.open_until),
             'probe_until', num(b.probe_until), 'reason', b.reason)
  redis.call('PEXPIRE', key, idle_ms)
end

-- breakers.breaker_state, as {state, failures, steps, retry_in, reason, epoch}
local function state_of(b, now)
  if b.opened == 0 then return {'closed', b.failures, b.steps, num(0.0), '', b.epoch} end
  if now < b.open_until then
    return {'open', b.failures, b.steps, num(b.open_until - now), b.reason, b.epoch}
  end
  return {'half-open', b.failures, b.steps, num(0.0), b.reason, b.epoch}
end

local function open_until(b, reason, untl)
  b.opened = 1
  b.open_until = untl
  b.epoch = b.epoch + 1
  b.failures = 0
  b.probe_until = 0.0
  b.reason = reason
end

-- breakers.cooldown_for
local function step(b, now, cooldown, cooldown_max, reason)
  b.steps = b.steps + 1
  local doublings = math.min(math.max(b.steps - 1, 0), 60)
  open_until(b, reason, now + math.min(cooldown * 2 ^ doublings, cooldown_max))
end
"""

# KEYS: breaker.  ARGV: now, probe_ttl, idle_ms -> {allowed, probe, epoch, state...}
_BREAKER_PASS = r"""
local now = clock(ARGV[1])
local b = read_breaker(KEYS[1])
local allowed, probe = 0, 0
if b.opened == 0 then
  allowed = 1
elseif now >= b.open_until and now >= b.probe_until then
  b.probe_until = now + tonumber(ARGV[2])
  allowed, probe = 1, 1
  write_breaker(KEYS[1], b, ARGV[3])
end
local s = state_of(b, now)
return {allowed, probe, b.epoch, s[1], s[2], s[3], s[4], s[5], s[6]}
"""

# KEYS: breaker.
# ARGV: now, threshold, cooldown, cooldown_max, outcome, epoch, reason, probe 1|0,
#       disable_s|'', idle_ms
_BREAKER_REPORT = r"""
local now = clock(ARGV[1])
local b = read_breaker(KEYS[1])
local outcome, reason, probe = ARGV[5], ARGV[7], ARGV[8] == '1'
if outcome == 'disable' then
  local seconds = tonumber(ARGV[4])
  if ARGV[9] ~= '' then seconds = math.max(tonumber(ARGV[9]), 0.0) end
  local untl = now + seconds
  if b.opened == 1 then untl = math.max(untl, b.open_until) end
  open_until(b, reason, untl)
elseif tonumber(ARGV[6]) ~= b.epoch then
  return 0
elseif outcome == 'neutral' or outcome == 'release' then
  if not probe then return 0 end
  b.probe_until = 0.0
elseif outcome == 'success' then
  b.failures, b.steps, b.opened = 0, 0, 0
  b.open_until, b.probe_until, b.reason = 0.0, 0.0, ''
elseif outcome == 'open' or (outcome == 'failure' and (probe or b.opened == 1)) then
  step(b, now, tonumber(ARGV[3]), tonumber(ARGV[4]), reason)
elseif outcome == 'failure' then
  b.failures = b.failures + 1
  if b.failures >= tonumber(ARGV[2]) then
    step(b, now, tonumber(ARGV[3]), tonumber(ARGV[4]), reason)
  end
else
  return 0
end
write_breaker(KEYS[1], b, ARGV[10])
return 1
"""

# KEYS: breaker.  ARGV: now
_BREAKER_STATE = r"""
return state_of(read_breaker(KEYS[1]), clock(ARGV[1]))
"""

# KEYS: gate.  ARGV: now, limit, id, lease_ttl, lease_key_ms -> {taken 1|0, count, started}
_GATE_TAKE = r"""
local now = clock(ARGV[1])
purge(KEYS[1], nil, now)
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[2]) then return {0, count} end
redis.call('ZADD', KEYS[1], num(now + tonumber(ARGV[4])), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, count, num(now)}
"""

# KEYS: gate.  ARGV: now
_GATE_COUNT = r"""
return redis.call('ZCOUNT', KEYS[1], '(' .. num(clock(ARGV[1])), '+inf')
"""

# KEYS: a lease set (sorted set), and its leases hash when it has one.
# ARGV: now, lease_ttl, lease_key_ms, ids... -> ids no longer held (expired or finished)
_RENEW = r"""
local now = clock(ARGV[1])
purge(KEYS[1], KEYS[2], now)
local expiry = num(now + tonumber(ARGV[2]))
local gone = {}
for i = 4, #ARGV do
  if redis.call('ZADD', KEYS[1], 'XX', 'CH', expiry, ARGV[i]) == 0
     and not redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    gone[#gone + 1] = ARGV[i]
  end
end
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ARGV[3]) end
return gone
"""


def _script(body: str, *parts: str) -> str:
    source = "\n".join((_PRELUDE, *parts, body))
    return source.replace("__ALPHA__", repr(ALPHA)).replace("__LOAD_MIN__", repr(LOAD_MIN_S))


SCRIPTS: dict[str, str] = {
    "admit": _script(_ADMIT),
    "first_token": _script(_FIRST_TOKEN),
    "finish": _script(_FINISH),
    "observe": _script(_OBSERVE),
    "predict": _script(_PREDICT),
    "view": _script(_VIEW),
    "breaker_pass": _script(_BREAKER_PASS, _BREAKER),
    "breaker_report": _script(_BREAKER_REPORT, _BREAKER),
    "breaker_state": _script(_BREAKER_STATE, _BREAKER),
    "gate_take": _script(_GATE_TAKE),
    "gate_count": _script(_GATE_COUNT),
    "renew": _script(_RENEW),
}
"Operation name → Lua source."
