"""Controllers: the retry policy of each outcome, as transcripts on a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from shoal.client import Controller, FakeClock, QueueSettings, Result, WorkQueue
from shoal.errors import PermanentError, RetryableError


async def _until(condition: Callable[[], bool], within: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


async def _run(controller: Controller, script: Callable[[], object]) -> None:
    async with asyncio.TaskGroup() as group:
        group.create_task(controller.run())
        try:
            await script()  # type: ignore[misc]
        finally:
            controller.stop()


async def test_outcomes_decide_what_happens_next() -> None:
    clock = FakeClock()
    calls: list[str] = []
    outcomes: dict[str, list[object]] = {
        "ok": [None],
        "poll": [Result(requeue_after=30), None],
        "flaky": [RetryableError("busy", retry_after=10), None],
        "bug": [ValueError("boom"), None],
        "bad": [PermanentError("invalid spec")],
    }

    async def reconcile(key: str) -> Result | None:
        calls.append(key)
        outcome = outcomes[key].pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome  # type: ignore[return-value]

    queue: WorkQueue[str] = WorkQueue(QueueSettings(base_delay=1.0), clock)
    controller = Controller("test", reconcile, queue=queue)

    async def script() -> None:
        for key in outcomes:
            controller.enqueue(key)
        await _until(lambda: controller.reconciles == 5)
        assert sorted(calls) == sorted(outcomes)
        clock.advance(1.0)  # the bug's back-off
        await _until(lambda: controller.reconciles == 6)
        assert calls[-1] == "bug"
        clock.advance(9.0)  # the retryable error's retry_after
        await _until(lambda: controller.reconciles == 7)
        assert calls[-1] == "flaky"
        clock.advance(20.0)  # the requested requeue
        await _until(lambda: controller.reconciles == 8)
        assert calls[-1] == "poll"
        assert all(not queue.failures(key) for key in outcomes)

    await _run(controller, script)
    assert calls.count("bad") == 1
    assert calls.count("ok") == 1


async def test_workers_never_reconcile_one_key_concurrently() -> None:
    running: set[str] = set()
    overlaps = 0
    release = asyncio.Event()

    async def reconcile(key: str) -> None:
        nonlocal overlaps
        if key in running:
            overlaps += 1
        running.add(key)
        await release.wait()
        running.discard(key)

    from shoal.client import ControllerSettings

    controller = Controller("test", reconcile, settings=ControllerSettings(workers=4))

    async def script() -> None:
        for _ in range(3):
            controller.enqueue("same")
            controller.enqueue("other")
        await _until(lambda: running == {"same", "other"})
        controller.enqueue("same")  # arrives while "same" is being reconciled
        release.set()
        await _until(lambda: controller.reconciles == 3)

    await _run(controller, script)
    assert overlaps == 0
