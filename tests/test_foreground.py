"""Members first: background work waits while a command is being answered, and for
a short gap after one came in, but never longer than its patience. On a virtual
clock (tests/fixtures/engine.py): the waits cost no real time and are exact."""

import asyncio
import contextvars

import pytest

from aibot.foreground import Foreground
from tests.fixtures.engine import on_virtual_clock


async def _background(foreground: Foreground, log: list[tuple[str, float]], name: str) -> None:
    await foreground.turn()
    log.append((name, asyncio.get_running_loop().time()))


async def _command(foreground: Foreground, seconds: float, *, served_after: float | None = None):
    """A member's command: foreground from its first step; answered after
    `served_after` seconds (when given), over after `seconds`."""
    foreground.serving()
    if served_after is not None:
        await asyncio.sleep(served_after)
        foreground.served()
        seconds -= served_after
    await asyncio.sleep(seconds)


@on_virtual_clock
async def test_background_goes_at_once_when_no_command_is_being_answered() -> None:
    foreground = Foreground(gap=0.002)
    log: list[tuple[str, float]] = []
    await _background(foreground, log, "job")
    assert log == [("job", 0.0)] and foreground.waiting == 0


@on_virtual_clock
async def test_background_waits_for_the_command_and_then_the_gap() -> None:
    foreground = Foreground(gap=0.5, patience=100)
    log: list[tuple[str, float]] = []
    command = asyncio.create_task(_command(foreground, 3.0))
    await asyncio.sleep(0)  # the command has begun
    assert foreground.busy == 1
    job = asyncio.create_task(_background(foreground, log, "job"))
    await asyncio.sleep(1)
    assert log == [] and foreground.waiting == 1
    await asyncio.gather(command, job)
    # The command came in at 0 and ended at 3; the gap had passed by then.
    assert log == [("job", 3.0)] and foreground.busy == 0


@on_virtual_clock
async def test_the_gap_after_a_quick_command_holds_background_back() -> None:
    foreground = Foreground(gap=0.5, patience=100)
    log: list[tuple[str, float]] = []
    await asyncio.create_task(_command(foreground, 0.1))  # in at 0, answered at 0.1
    await _background(foreground, log, "job")
    assert log == [("job", 0.5)]  # not before the gap after its arrival


@on_virtual_clock
async def test_served_lets_background_go_before_the_command_ends() -> None:
    foreground = Foreground(gap=0.0, patience=100)
    log: list[tuple[str, float]] = []
    command = asyncio.create_task(_command(foreground, 5.0, served_after=1.0))
    await asyncio.sleep(0)
    await asyncio.gather(_background(foreground, log, "job"), command)
    assert log == [("job", 1.0)]


@on_virtual_clock
async def test_a_command_never_waits_for_itself() -> None:
    foreground = Foreground(gap=10.0, patience=100)
    log: list[tuple[str, float]] = []

    async def command() -> None:
        foreground.serving()
        await _background(foreground, log, "own step")

    await asyncio.create_task(command())
    assert log == [("own step", 0.0)]


@on_virtual_clock
async def test_patience_bounds_the_wait_behind_a_command_that_never_ends() -> None:
    foreground = Foreground(gap=0.0, patience=2.0)
    log: list[tuple[str, float]] = []
    stuck = asyncio.create_task(_command(foreground, 3600))
    await asyncio.sleep(0)
    await _background(foreground, log, "job")
    assert log == [("job", 2.0)]
    stuck.cancel()


@on_virtual_clock
async def test_waiters_go_in_order_a_few_per_turn_of_the_loop() -> None:
    foreground = Foreground(gap=0.0, patience=100, batch=2)
    log: list[tuple[str, float]] = []
    command = asyncio.create_task(_command(foreground, 1.0))
    await asyncio.sleep(0)
    jobs = [asyncio.create_task(_background(foreground, log, f"job{n}")) for n in range(5)]
    await asyncio.sleep(0)
    cancelled = jobs.pop(1)
    cancelled.cancel()  # gives up its place; the others keep theirs
    await command
    turns = 0
    while len(log) < 4:
        released = len(log)
        await asyncio.sleep(0)
        assert len(log) - released <= 2  # at most `batch` released per turn
        turns += 1
    assert [name for name, _ in log] == ["job0", "job2", "job3", "job4"]
    assert turns >= 2 and foreground.waiting == 0
    await asyncio.gather(*jobs)


_TAG: contextvars.ContextVar[str] = contextvars.ContextVar("tag", default="")


@on_virtual_clock
async def test_a_call_in_turn_waits_like_a_step_in_the_line_and_keeps_its_context() -> None:
    foreground = Foreground(gap=0.0, patience=100)
    calls: list[tuple[str, str, float]] = []

    def call(name: str) -> None:
        calls.append((name, _TAG.get(), asyncio.get_running_loop().time()))

    foreground.call_in_turn(call, "at once")  # nobody is being answered
    command = asyncio.create_task(_command(foreground, 1.0))
    await asyncio.sleep(0)
    log: list[tuple[str, float]] = []
    step = asyncio.create_task(_background(foreground, log, "step"))
    await asyncio.sleep(0)
    _TAG.set("job 7")
    foreground.call_in_turn(call, "later")
    _TAG.set("")
    await asyncio.sleep(0.5)
    assert calls == [("at once", "", 0.0)] and foreground.waiting == 2
    await asyncio.gather(command, step)
    # Both once the command is over; the call in the context it was lined up in.
    assert log == [("step", 1.0)] and calls[1:] == [("later", "job 7", 1.0)]


@on_virtual_clock
async def test_a_call_in_turn_goes_when_its_patience_runs_out() -> None:
    foreground = Foreground(gap=0.0, patience=2.0)
    calls: list[float] = []
    stuck = asyncio.create_task(_command(foreground, 3600))
    await asyncio.sleep(0)
    foreground.call_in_turn(lambda: calls.append(asyncio.get_running_loop().time()))
    await asyncio.sleep(5)
    assert calls == [2.0]
    stuck.cancel()


@on_virtual_clock
async def test_background_waits_out_a_burst_of_quick_commands_and_then_the_gap() -> None:
    foreground = Foreground(gap=0.005, patience=100)
    log: list[tuple[str, float]] = []
    commands = [asyncio.create_task(_command(foreground, 0.0005))]
    await asyncio.sleep(0)
    job = asyncio.create_task(_background(foreground, log, "job"))
    for _ in range(99):  # one every millisecond, each answered in half of it
        await asyncio.sleep(0.001)
        commands.append(asyncio.create_task(_command(foreground, 0.0005)))
    await asyncio.gather(job, *commands)
    # The last command came in at 0.099; nothing went before the gap after it.
    [(_, at)] = log
    assert at == pytest.approx(0.099 + 0.005)
