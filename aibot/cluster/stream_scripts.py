"""The Lua scripts behind `aibot.cluster.streams.JobStream`, each one atomic step
on Redis: reclaim, renew owned leases, claim a delivery, finish an entry."""

from __future__ import annotations

__all__ = ["CLAIM_DELIVERY", "FINISH", "MARK_SENT", "RECLAIM", "RENEW"]

# Reclaim up to ARGV[4] entries idle for ARGV[3] ms; finish those whose answer was
# sent already, dead-letter those delivered more than ARGV[5] times. An entry whose
# delivery was claimed but not marked sent lost its sender before it had sent (it
# stopped renewing): the claim passes to this delivery, which runs the job again.
# KEYS: stream, dead-letter stream. ARGV: group, consumer, min idle ms, count, max
# deliveries, dead-letter length cap, prefix of delivery claim keys.
# Returns {id, fields, deliveries, state} per entry; state 0 live, 1 dead, 2 answered.
# (It reads claim keys it is not given in KEYS: fine on one Redis, with or without
# Sentinel; Redis Cluster is not supported.)
RECLAIM = """
local stream, dead = KEYS[1], KEYS[2]
local group, consumer, idle = ARGV[1], ARGV[2], ARGV[3]
local count, most, cap, delivered = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], ARGV[7]
local taken, cursor = {}, '0-0'
repeat
  local reply = redis.call('XAUTOCLAIM', stream, group, consumer, idle, cursor,
                           'COUNT', count - #taken)
  cursor = reply[1]
  for _, entry in ipairs(reply[2]) do
    if entry[2] then taken[#taken + 1] = entry end
  end
until cursor == '0-0' or #taken >= count
local out = {}
for _, entry in ipairs(taken) do
  local id, fields = entry[1], entry[2]
  local info = redis.call('XPENDING', stream, group, id, id, 1)[1]
  local times = info and info[4] or 1
  local job_id
  for i = 1, #fields, 2 do
    if fields[i] == 'id' then job_id = fields[i + 1] end
  end
  local claim = job_id and redis.call('GET', delivered .. job_id)
  if claim == 'sent' then
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
    out[#out + 1] = {id, fields, times, 2}
  else
    if claim then
      redis.call('SET', delivered .. job_id, consumer .. '#' .. times, 'XX', 'KEEPTTL')
    end
    if times > most then
      local copy = {'XADD', dead, 'MAXLEN', '~', cap, '*'}
      for _, value in ipairs(fields) do copy[#copy + 1] = value end
      for _, value in ipairs({'entry', id, 'deliveries', times, 'consumer', consumer}) do
        copy[#copy + 1] = value
      end
      redis.call(unpack(copy))
      redis.call('XACK', stream, group, id)
      redis.call('XDEL', stream, id)
      out[#out + 1] = {id, fields, times, 1}
    else
      out[#out + 1] = {id, fields, times, 0}
    end
  end
end
return out
"""

# Renew the leases of the entries ARGV[3..] that consumer ARGV[2] still owns.
# KEYS: stream. ARGV: group, consumer, entry ids. Returns the ids still owned.
RENEW = """
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local owned, claim = {}, {'XCLAIM', stream, group, consumer, 0}
for i = 3, #ARGV do
  local info = redis.call('XPENDING', stream, group, ARGV[i], ARGV[i], 1)[1]
  if info and info[2] == consumer then
    owned[#owned + 1] = ARGV[i]
    claim[#claim + 1] = ARGV[i]
  end
end
if #owned > 0 then
  claim[#claim + 1] = 'JUSTID'
  redis.call(unpack(claim))
end
return owned
"""

# Claim the delivery of a job for one delivery of it (ARGV[1]), and take its lease.
# KEYS: delivered key, stream. ARGV: holder, expiry ms, group, consumer, entry id.
# Returns 1 when this holder has the claim (now or already), else 0.
CLAIM_DELIVERY = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('XCLAIM', KEYS[2], ARGV[3], ARGV[4], 0, ARGV[5], 'JUSTID')
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""

# The answer of the delivery ARGV[1] (the holder of the claim at KEYS[1]) is sent:
# a reclaimer finishes the entry instead of running it again. Returns 1 when marked.
MARK_SENT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], 'sent', 'KEEPTTL')
  return 1
end
return 0
"""

# Acknowledge, then delete. KEYS: stream. ARGV: group, entry id. One command where
# a MULTI/EXEC pipeline would be four: this runs once for every job.
# KEYS[2], when given: the job's delivery claim, marked sent (a reclaimer that took
# the claim over while this answer was being sent then sends nothing).
FINISH = """
if KEYS[2] then redis.call('SET', KEYS[2], 'sent', 'XX', 'KEEPTTL') end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return redis.call('XDEL', KEYS[1], ARGV[2])
"""
