"""The gateway's view of a pool over every live node (`aibot.cluster.views`): one
snapshot per pool, each key once, as every process paces it through Redis."""

from __future__ import annotations

from aibot.cluster.heartbeat import NodeInfo
from aibot.cluster.views import merged_snapshots, snapshot_to_dict
from aibot.snapshots import KeyRingSnapshot, KeySnapshot, PoolSnapshot


def key(key_id: str, fingerprint: str, state: str, *, calls: int, room: float) -> KeySnapshot:
    return KeySnapshot(
        key_id,
        state,
        inflight=0,
        calls=calls,
        rate_limited=0,
        failures=0,
        reason="401 invalid key" if state == "disabled" else "",
        budget_left=room,
        budget_limit=1.0,
        fingerprint=fingerprint,
    )


def merged_chat(a: tuple[KeySnapshot, ...], b: tuple[KeySnapshot, ...]) -> PoolSnapshot:
    """The chat pool as the gateway shows it: worker a holds keys `a`, worker b `b`."""
    nodes = []
    for name, keys in (("a", a), ("b", b)):
        ring = KeyRingSnapshot("chat", "openai", keys)
        chat = PoolSnapshot("chat", "running", 0, 8, 0, 64, 3, 0, 0.0, 0.0, 0.0, rings=(ring,))
        nodes.append(NodeInfo(name, ("chat",), {"chat": 8}, snapshots=(snapshot_to_dict(chat),)))
    [merged] = merged_snapshots(nodes)
    return merged


def test_each_key_is_counted_once_in_its_worst_state_anywhere() -> None:
    # Worker a disabled the first key (a 401); worker b has not used it since and
    # still holds it as ready. Both hold the same two keys.
    a = (
        key("sk-...aaaa", "f1", "disabled", calls=4, room=0),
        key("sk-...bbbb", "f2", "busy", calls=2, room=0),
    )
    b = (
        key("sk-...aaaa", "f1", "ready", calls=1, room=1),
        key("sk-...bbbb", "f2", "ready", calls=5, room=1),
    )
    chat = merged_chat(a, b)
    assert (chat.keys_healthy, chat.keys_total) == (1, 2)
    first, second = chat.rings[0].keys
    assert (first.state, first.reason, first.calls) == ("disabled", "401 invalid key", 5)
    assert first.budget_left == 0
    assert (second.state, second.calls, second.budget_left) == ("ready", 7, 1)
    assert chat.workers_total == 16 and chat.done == 6


def test_keys_of_the_same_redacted_form_stay_apart() -> None:
    same = (
        key("sk-...aaaa", "f1", "ready", calls=1, room=1),
        key("sk-...aaaa", "f9", "ready", calls=1, room=1),
    )
    assert merged_chat(same, same).keys_total == 2
