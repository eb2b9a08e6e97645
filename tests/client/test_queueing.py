"""The work queue: de-duplication, no key processed twice at once, back-off on a fake clock."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.client import FakeClock, QueueSettings, QueueShutDown, WorkQueue, backoff_delay


async def _next(queue: WorkQueue[str]) -> str:
    return await asyncio.wait_for(queue.get(), timeout=2)


async def test_adding_a_queued_key_again_does_nothing() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "a", "c", "b"):
        queue.add(key)
    assert len(queue) == 3
    assert [await _next(queue) for _ in range(3)] == ["a", "b", "c"]


async def test_a_key_added_while_processing_is_processed_again_after_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert await _next(queue) == "a"
    queue.add("a")  # a change arrives while a worker has the key
    assert len(queue) == 0, "never handed to a second worker while the first has it"
    queue.done("a")
    assert await _next(queue) == "a"


async def test_delayed_keys_wait_for_the_clock() -> None:
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("later", 5.0)
    queue.add_after("sooner", 1.0)
    waiter = asyncio.ensure_future(queue.get())  # noqa: TID251 - awaited below in this test
    await asyncio.sleep(0)
    assert not waiter.done()
    clock.advance(1.0)
    assert await asyncio.wait_for(waiter, 2) == "sooner"
    clock.advance(3.9)
    waiter = asyncio.ensure_future(queue.get())  # noqa: TID251
    await asyncio.sleep(0)
    assert not waiter.done()
    clock.advance(0.1)
    assert await asyncio.wait_for(waiter, 2) == "later"


async def test_rate_limited_keys_back_off_exponentially_until_forgotten() -> None:
    settings = QueueSettings(base_delay=0.5, max_delay=3.0)
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(settings, clock)
    delays = []
    for _ in range(5):
        delays.append(queue.add_rate_limited("k"))
        clock.advance(delays[-1])
        assert await _next(queue) == "k"
        queue.done("k")
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    queue.forget("k")
    assert queue.add_rate_limited("k") == 0.5


def test_backoff_never_overflows() -> None:
    assert backoff_delay(10_000, QueueSettings()) == QueueSettings().max_delay


async def test_shut_down_drains_then_stops_workers() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add_after("never", 100)
    queue.shut_down()
    assert await _next(queue) == "a"
    with pytest.raises(QueueShutDown):
        await _next(queue)
    queue.add("b")
    assert len(queue) == 0


@given(
    st.lists(
        st.tuples(st.sampled_from(["add", "get", "done"]), st.sampled_from(["a", "b", "c"])),
        max_size=60,
    )
)
def test_no_key_is_ever_held_by_two_workers_and_none_is_lost(ops: list[tuple[str, str]]) -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        held: set[str] = set()
        pending_changes: set[str] = set()  # keys added and not yet handed out since
        for op, key in ops:
            if op == "add":
                queue.add(key)
                pending_changes.add(key)
            elif op == "get" and len(queue):
                got = await _next(queue)
                assert got not in held
                held.add(got)
                pending_changes.discard(got)
            elif op == "done" and key in held:
                held.discard(key)
                queue.done(key)
        for key in list(held):
            queue.done(key)
        drained = set()
        while len(queue):
            got = await _next(queue)
            drained.add(got)
            queue.done(got)
        assert pending_changes <= drained

    asyncio.run(scenario())
