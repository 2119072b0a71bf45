"""Conversation memory for /chat in Redis: any process answers with the same past.

The same rules as the embedded memory (`aibot.store.memory`, whose docstring
says how tokens are estimated): a conversation is keyed by (channel id, user
id); after each new turn the oldest turns go until the rest fits the token
budget (`AIBOT_CHAT_HISTORY_TOKENS`), and the count forgotten is kept so the
member is told once, on their next message. Each change is one Lua script
(remember) or one MULTI (recall, reset), so two processes answering the
same member at once neither lose a turn nor tell them twice.

Redis keys (under `prefix`): `memory:<channel>:<user>`, a list of turns
oldest first, each the JSON `{"p": prompt, "a": answer, "t": tokens}`;
`memory:<channel>:<user>:meta`, a hash of `tokens` (the list's total) and
`dropped` (turns forgotten since the member was last told). Both expire
`ttl` seconds after the conversation was last added to (`MEMORY_DAYS` by
default, as the embedded store forgets it; None keeps them).
"""

from __future__ import annotations

import json

import redis.asyncio as redis

from aibot.jobs import Job
from aibot.store.memory import MEMORY_DAYS, Recall, Turn, as_messages, fit, turn_within

__all__ = ["SharedMemory"]

_MEMORY_SECONDS = MEMORY_DAYS * 86_400

# KEYS: the turns, the meta hash. ARGV: the new turn (JSON), its tokens, the
# budget, the lifetime in seconds (0: none), the resets the turn's answer was
# recalled with. Returns the turns forgotten to fit (0 too when /reset came since).
_REMEMBER = """
if (tonumber(redis.call('HGET', KEYS[2], 'resets')) or 0) ~= tonumber(ARGV[5]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
local total = redis.call('HINCRBY', KEYS[2], 'tokens', ARGV[2])
local budget = tonumber(ARGV[3])
local dropped = 0
while total > budget do
  local oldest = redis.call('LPOP', KEYS[1])
  if not oldest then total = 0 break end
  total = total - cjson.decode(oldest)['t']
  dropped = dropped + 1
end
redis.call('HSET', KEYS[2], 'tokens', total)
if dropped > 0 then redis.call('HINCRBY', KEYS[2], 'dropped', dropped) end
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return dropped
"""


class SharedMemory:
    """Conversations in Redis; implements `aibot.ports.Memory`, plus `reset`.

    `client` is a `redis.asyncio.Redis`; `prefix` names this bot's keys;
    `budget` is the token budget of one conversation."""

    def __init__(
        self, client: redis.Redis, prefix: str, budget: int, *, ttl: int | None = _MEMORY_SECONDS
    ) -> None:
        self._client = client
        self._prefix = prefix
        self.budget = budget
        self._ttl = ttl or 0
        self._remember = client.register_script(_REMEMBER)

    def keys(self, channel_id: int, user_id: int) -> tuple[str, str]:
        """The Redis keys of one conversation: its turns and its meta hash."""
        turns = f"{self._prefix}:memory:{channel_id}:{user_id}"
        return turns, f"{turns}:meta"

    async def history(self, job: Job) -> list[dict[str, str]]:
        """The member's conversation in the job's channel, within the budget."""
        turns, _ = self.keys(job.channel_id, job.user_id)
        return as_messages(fit(_decoded(await self._client.lrange(turns, 0, -1)), self.budget))

    async def recall(self, job: Job) -> Recall:
        """Like `history`, plus the count of forgotten turns, which it then resets
        (the caller tells the member once)."""
        turns, meta = self.keys(job.channel_id, job.user_id)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.lrange(turns, 0, -1)
            pipe.hmget(meta, "dropped", "resets")
            pipe.hdel(meta, "dropped")
            stored, (dropped, resets), _ = await pipe.execute()
        messages = as_messages(fit(_decoded(stored), self.budget))
        return Recall(messages, int(dropped or 0), int(resets or 0))

    async def remember(self, job: Job, prompt: str, answer: str, *, resets: int = 0) -> int:
        """Add one exchange, unless /reset forgot the conversation since it was
        recalled with `resets`; returns how many old turns were forgotten to fit."""
        prompt, answer, tokens = turn_within(prompt, answer, self.budget)
        dropped = await self._remember(
            keys=list(self.keys(job.channel_id, job.user_id)),
            args=[_encoded((prompt, answer, tokens)), tokens, self.budget, self._ttl, resets],
        )
        return int(dropped)

    async def reset(self, channel_id: int, user_id: int) -> int:
        """Forget a member's conversation in a channel (/reset); returns turns removed.
        The meta hash stays, counting the resets: an answer on its way stays out."""
        turns, meta = self.keys(channel_id, user_id)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.llen(turns)
            pipe.delete(turns)
            pipe.hset(meta, mapping={"tokens": 0, "dropped": 0})
            pipe.hincrby(meta, "resets", 1)
            if self._ttl:
                pipe.expire(meta, self._ttl)
            removed, *_ = await pipe.execute()
        return int(removed)

    async def restore(self, channel_id: int, user_id: int, turns: list[Turn], dropped: int) -> None:
        """Put a whole conversation in place (oldest turn first), replacing any:
        for moving a bot's memory from the embedded store (`aibot.cluster.migrate`)."""
        key, meta = self.keys(channel_id, user_id)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(key, meta)
            if turns:
                pipe.rpush(key, *(_encoded(turn) for turn in turns))
            pipe.hset(meta, mapping={"tokens": sum(t[2] for t in turns), "dropped": dropped})
            if self._ttl:
                pipe.expire(key, self._ttl)
                pipe.expire(meta, self._ttl)
            await pipe.execute()


def _encoded(turn: Turn) -> str:
    prompt, answer, tokens = turn
    return json.dumps({"p": prompt, "a": answer, "t": tokens}, ensure_ascii=False)


def _decoded(stored: list[str | bytes]) -> list[Turn]:
    turns = []
    for item in stored:
        turn = json.loads(item)
        turns.append((turn["p"], turn["a"], int(turn["t"])))
    return turns
