"""Conversation memory for /chat: each member's exchanges in a channel or thread.

A conversation is keyed by (channel id, user id); in a thread the bot opened,
the channel id is the thread's, so each thread is its own conversation. It is
bounded by a token budget (`AIBOT_CHAT_HISTORY_TOKENS`): after each new turn
the oldest turns go until the rest fits, and the number forgotten is kept so
the member can be told on their next message (`recall`). A conversation nobody
added to for `MEMORY_DAYS` is forgotten (`forget_idle_conversations`, which the
store runs daily), as Redis expires it in cluster mode.

Tokens are estimated, not counted, so no tokenizer is needed: English and
other ASCII text runs about four characters a token in OpenAI's and MiniMax's
tokenizers, while a Hangul syllable (or any other non-ASCII character) is
about one token, so each is counted as one; every message adds 4 for its
framing. The estimate errs high for CJK text, which keeps requests in bounds.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from aibot.jobs import Job

from .days import Calendar
from .db import Database, transaction

__all__ = [
    "MEMORY_DAYS",
    "Memory",
    "Recall",
    "Turn",
    "as_messages",
    "estimate_tokens",
    "fit",
    "forget_idle_conversations",
    "turn_within",
]

# Days after which a conversation nobody added to is forgotten.
MEMORY_DAYS = 30
_PER_MESSAGE = 4


def estimate_tokens(text: str) -> int:
    """About how many tokens `text` is as one chat message (see the module docstring)."""
    ascii_chars = len(text.encode("ascii", "ignore"))
    return -(-ascii_chars // 4) + (len(text) - ascii_chars) + _PER_MESSAGE


@dataclass(frozen=True, slots=True)
class Recall:
    """A conversation so far as OpenAI-style messages, oldest first, how many
    turns were forgotten since the member was last told (0: nothing to tell), and
    how many times /reset forgot it."""

    messages: list[dict[str, str]]
    dropped: int
    resets: int = 0  # times /reset forgot this conversation: `remember` checks it


class Memory:
    """Stores conversations; implements the chat pool's `memory` protocol."""

    def __init__(self, db: Database, calendar: Calendar, budget: int) -> None:
        self._db = db
        self._calendar = calendar
        self.budget = budget

    async def history(self, job: Job) -> list[dict[str, str]]:
        """The member's conversation in the job's channel, within the budget."""
        turns = await self._db.run(lambda conn: _turns(conn, job.channel_id, job.user_id))
        return as_messages(fit(turns, self.budget))

    async def recall(self, job: Job) -> Recall:
        """Like `history`, plus the count of forgotten turns, which it then resets
        (the caller tells the member once)."""
        turns, dropped, resets = await self._db.run(
            lambda conn: _recall(conn, job.channel_id, job.user_id)
        )
        return Recall(as_messages(fit(turns, self.budget)), dropped, resets)

    async def remember(self, job: Job, prompt: str, answer: str, *, resets: int = 0) -> int:
        """Add one exchange, unless /reset forgot the conversation since it was
        recalled with `resets`; returns how many old turns were forgotten to fit."""
        prompt, answer, tokens = turn_within(prompt, answer, self.budget)
        row = (job.channel_id, job.user_id, self._calendar.now(), prompt, answer, tokens)
        return await self._db.run(lambda conn: _remember(conn, row, self.budget, resets))

    async def reset(self, channel_id: int, user_id: int) -> int:
        """Forget a member's conversation in a channel (/reset); returns turns removed."""
        return await self._db.run(lambda conn: _reset(conn, channel_id, user_id))


Turn = tuple[str, str, int]  # (prompt, answer, tokens)


def _turns(conn: sqlite3.Connection, channel_id: int, user_id: int) -> list[Turn]:
    return conn.execute(
        "SELECT prompt, answer, tokens FROM turns WHERE channel_id = ? AND user_id = ? ORDER BY id",
        (channel_id, user_id),
    ).fetchall()


def turn_within(prompt: str, answer: str, budget: int) -> Turn:
    """The exchange to keep, with its tokens: shortened when it alone is over
    `budget` (each text keeps its start, "…" where cut; the shorter one keeps all it
    can), so that the newest exchange is remembered rather than forgotten with every
    turn before it."""
    need = estimate_tokens(prompt), estimate_tokens(answer)
    if sum(need) > budget:
        half = budget // 2
        prompt_room = need[0] if need[0] <= half else max(half, budget - need[1])
        prompt, answer = (
            _start_within(prompt, prompt_room),
            _start_within(answer, budget - prompt_room),
        )
    return prompt, answer, estimate_tokens(prompt) + estimate_tokens(answer)


def _start_within(text: str, tokens: int) -> str:
    """The longest start of `text` (with "…" when cut) within `tokens`."""
    if estimate_tokens(text) <= tokens:
        return text
    low, high = 0, len(text)  # the estimate grows with the length: bisect it
    while low < high:
        middle = (low + high + 1) // 2
        if estimate_tokens(text[:middle] + "…") <= tokens:
            low = middle
        else:
            high = middle - 1
    return text[:low] + "…"


def fit(turns: list[Turn], budget: int) -> list[Turn]:
    """The newest turns whose tokens add up to at most `budget`."""
    total, start = 0, len(turns)
    while start > 0 and total + turns[start - 1][2] <= budget:
        start -= 1
        total += turns[start][2]
    return turns[start:]


def as_messages(turns: list[Turn]) -> list[dict[str, str]]:
    """The turns as OpenAI-style chat messages, oldest first."""
    messages: list[dict[str, str]] = []
    for prompt, answer, _ in turns:
        messages.append({"role": "user", "content": prompt})
        messages.append({"role": "assistant", "content": answer})
    return messages


def _recall(conn: sqlite3.Connection, channel_id: int, user_id: int) -> tuple[list[Turn], int, int]:
    with transaction(conn):
        turns = _turns(conn, channel_id, user_id)
        dropped, resets = _conversation(conn, channel_id, user_id)
        if dropped:
            conn.execute(
                "UPDATE conversations SET dropped = 0 WHERE channel_id = ? AND user_id = ?",
                (channel_id, user_id),
            )
    return turns, dropped, resets


def _conversation(conn: sqlite3.Connection, channel_id: int, user_id: int) -> tuple[int, int]:
    """(turns dropped not yet told, times reset) of a conversation."""
    found = conn.execute(
        "SELECT dropped, resets FROM conversations WHERE channel_id = ? AND user_id = ?",
        (channel_id, user_id),
    ).fetchone()
    return (found[0], found[1]) if found else (0, 0)


def _remember(conn: sqlite3.Connection, row: tuple, budget: int, resets: int) -> int:
    channel_id, user_id = row[0], row[1]
    with transaction(conn):
        if _conversation(conn, channel_id, user_id)[1] != resets:
            return 0  # /reset forgot the conversation this answer came from
        conn.execute(
            "INSERT INTO turns (channel_id, user_id, at, prompt, answer, tokens) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            row,
        )
        ids = conn.execute(
            "SELECT id, tokens FROM turns WHERE channel_id = ? AND user_id = ? ORDER BY id DESC",
            (channel_id, user_id),
        ).fetchall()
        total, cut = 0, None
        for turn_id, tokens in ids:
            total += tokens
            if total > budget:
                cut = turn_id
                break
        if cut is None:
            return 0
        dropped = conn.execute(
            "DELETE FROM turns WHERE channel_id = ? AND user_id = ? AND id <= ?",
            (channel_id, user_id, cut),
        ).rowcount
        conn.execute(
            "INSERT INTO conversations (channel_id, user_id, dropped) VALUES (?, ?, ?) "
            "ON CONFLICT (channel_id, user_id) DO UPDATE SET dropped = dropped + excluded.dropped",
            (channel_id, user_id, dropped),
        )
    return dropped


def _reset(conn: sqlite3.Connection, channel_id: int, user_id: int) -> int:
    with transaction(conn):
        removed = conn.execute(
            "DELETE FROM turns WHERE channel_id = ? AND user_id = ?", (channel_id, user_id)
        ).rowcount
        # The row stays, counting the resets: an answer on its way stays out.
        conn.execute(
            "INSERT INTO conversations (channel_id, user_id, dropped, resets) VALUES (?, ?, 0, 1) "
            "ON CONFLICT (channel_id, user_id) DO UPDATE SET dropped = 0, resets = resets + 1",
            (channel_id, user_id),
        )
    return removed


def forget_idle_conversations(conn: sqlite3.Connection, before: float) -> None:
    """Forget every conversation last added to before `before` (unix seconds), in
    the caller's transaction. A conversation's row goes too, unless /reset counted
    on it: an answer recalled before a reset must stay out after."""
    conn.execute(
        "DELETE FROM turns WHERE (channel_id, user_id) IN (SELECT channel_id, user_id "
        "FROM turns GROUP BY channel_id, user_id HAVING MAX(at) < ?)",
        (before,),
    )
    conn.execute(
        "DELETE FROM conversations WHERE resets = 0 AND NOT EXISTS (SELECT 1 FROM turns "
        "WHERE turns.channel_id = conversations.channel_id "
        "AND turns.user_id = conversations.user_id)"
    )
