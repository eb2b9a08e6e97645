"""Controllers: idempotent ``reconcile(key)`` functions driven by a work queue.

A controller never sees events, only keys: ``reconcile`` reads the current state of the object
named by the key, compares it with the desired state, and acts. The result decides what happens
to the key next:

================================  ===========================================================
outcome                           what the controller does
================================  ===========================================================
returns ``None`` / ``Result()``   done: the key's failure count is reset
``Result(requeue_after=s)``       look again after ``s`` seconds (polling an external state)
raises ``RetryableError``         retry after its ``retry_after`` (0: after the back-off)
raises ``PermanentError``         give up on this version of the object (logged); a later
                                  change to it queues the key again
raises anything else              a bug or an unexpected failure: logged, retried with back-off
================================  ===========================================================
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shoal.client.queueing import QueueShutDown, WorkQueue
from shoal.errors import PermanentError, RetryableError

__all__ = ["Controller", "ControllerSettings", "Result"]

log = logging.getLogger("shoal.controllers")


@dataclass(frozen=True, slots=True)
class Result:
    """What a reconcile asks for next."""

    requeue_after: float | None = None
    """Seconds after which to reconcile the key again, even without a change."""


Reconcile = Callable[[str], Awaitable[Result | None]]


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """How a controller runs."""

    workers: int = 1
    """Keys reconciled concurrently (never the same key twice at once)."""


class Controller:
    """Runs ``reconcile`` for every key put in its queue, with the policy of the module docstring."""

    def __init__(
        self,
        name: str,
        reconcile: Reconcile,
        *,
        queue: WorkQueue[str] | None = None,
        settings: ControllerSettings | None = None,
    ) -> None:
        self.name = name
        self.reconcile = reconcile
        # `queue or ...` would be wrong: an empty queue is falsy.
        self.queue: WorkQueue[str] = queue if queue is not None else WorkQueue()
        self.settings = settings or ControllerSettings()
        self.reconciles = 0
        """How many reconciles have finished (successfully or not)."""

    def enqueue(self, key: str) -> None:
        self.queue.add(key)

    async def run(self) -> None:
        """Run the workers until :meth:`stop`."""
        async with asyncio.TaskGroup() as group:
            for _ in range(self.settings.workers):
                group.create_task(self._worker())

    def stop(self) -> None:
        """Finish the keys being processed and the queued ones, then return from :meth:`run`."""
        self.queue.shut_down()

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except QueueShutDown:
                return
            try:
                await self._process(key)
            finally:
                self.reconciles += 1
                self.queue.done(key)

    async def _process(self, key: str) -> None:
        try:
            result = await self.reconcile(key)
        except PermanentError as error:
            log.warning("%s: %s: giving up until it changes: %s", self.name, key, error)
            self.queue.forget(key)
            return
        except RetryableError as error:
            if error.retry_after > 0:
                self.queue.add_after(key, error.retry_after)
            else:
                self.queue.add_rate_limited(key)
            log.info("%s: %s: will retry: %s", self.name, key, error)
            return
        except Exception:
            delay = self.queue.add_rate_limited(key)
            log.exception("%s: %s: reconcile failed; retrying in %.3fs", self.name, key, delay)
            return
        self.queue.forget(key)
        if result is not None and result.requeue_after is not None:
            self.queue.add_after(key, result.requeue_after)
