"""Members first: background work waits while a command is being answered, and for
a short gap after one came in, but never longer than its patience. On a virtual
clock (tests/fixtures/engine.py): the waits cost no real time and are exact."""

import asyncio

from aibot.foreground import Foreground
from aibot.sandbox.replies import RecordingReplies
from aibot.settings import Settings
from aibot.transport import LocalQueue
from aibot.worker import Worker
from tests.fixtures.engine import ENGINE_ENV, make_job, on_virtual_clock


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


@on_virtual_clock
async def test_the_local_queue_hands_no_job_over_while_a_command_is_being_answered() -> None:
    foreground = Foreground(gap=0.0, patience=100)
    # No provider is reachable: the job fails at once when it runs, which is enough
    # to see when it reached its pool.
    settings = Settings.from_env({**ENGINE_ENV, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    replies = RecordingReplies()
    worker = Worker(settings, replies=replies)
    queue = LocalQueue(worker, turn=foreground.turn)
    command = asyncio.create_task(_command(foreground, 1.0))
    await asyncio.sleep(0)
    job = make_job(1)
    job.pool = "chat"
    handed = asyncio.create_task(queue.submit(job))
    await asyncio.sleep(0.5)
    assert not handed.done() and replies.made == {} and worker.jobs() == []
    await command
    assert await handed == 1
    assert asyncio.get_running_loop().time() == 1.0
    await worker.drain(0)
    await worker.aclose()
