"""The split ambassador on 127.0.0.1: shares within binomial bounds, sticky routing, and a mirror
whose slowness or failure never touches the client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator

from shoal.components.split import Mirror, SplitCounts, SplitSettings, split_ambassador
from shoal.dataplane.driver import ProxyServer
from tests.components.http_app import App, request

WAIT = 10.0


@contextlib.asynccontextmanager
async def ambassador(
    settings: SplitSettings,
) -> AsyncIterator[tuple[tuple[str, int], SplitCounts, Mirror | None]]:
    server: ProxyServer
    server, counts, mirror = split_ambassador(settings)
    await server.start("127.0.0.1", 0)
    stop = asyncio.Event()
    try:
        async with asyncio.TaskGroup() as group:
            if mirror is not None:
                group.create_task(mirror.run(stop))
            try:
                yield server.address, counts, mirror
            finally:
                stop.set()
    finally:
        await server.shutdown(2.0)


async def spread(
    address: tuple[str, int], n: int, headers: dict[str, str] | None = None
) -> list[str]:
    """The app that answered each of ``n`` requests (8 at a time)."""
    answers: list[str] = []
    semaphore = asyncio.Semaphore(8)

    async def one() -> None:
        async with semaphore:
            status, _, body = await request(*address, headers=headers)
            assert status == 200
            answers.append(json.loads(body)["app"])

    async with asyncio.TaskGroup() as group:
        for _ in range(n):
            group.create_task(one())
    return answers


async def test_share_within_binomial_bounds() -> None:
    async with App("primary") as primary, App("canary") as canary:
        settings = SplitSettings(upstream=primary.address, canary=canary.address, weight=25, seed=7)
        async with ambassador(settings) as (address, counts, _):
            n = 600
            answers = await spread(address, n)
    hits = answers.count("canary")
    assert abs(hits - n * 0.25) <= 5 * math.sqrt(n * 0.25 * 0.75)
    assert (counts.primary, counts.canary) == (n - hits, hits)
    assert len(primary.requests) == n - hits


async def test_sticky_header_and_cookie() -> None:
    async with App("primary") as primary, App("canary") as canary:
        settings = SplitSettings(
            upstream=primary.address,
            canary=canary.address,
            weight=50,
            sticky_header="X-User",
            sticky_cookie="session",
        )
        async with ambassador(settings) as (address, _, _):
            sides = {}
            for user in ("alice", "bob", "carol", "dave", "erin", "frank"):
                answers = await spread(address, 6, {"X-User": user})
                assert len(set(answers)) == 1, user  # every request of a user on one side
                sides[user] = answers[0]
                cookie = await spread(address, 4, {"Cookie": f"theme=dark; session={user}"})
                assert set(cookie) == {answers[0]}  # the same key hashes the same way
    assert len(set(sides.values())) == 2  # and the users are spread over both (p = 1/32 per miss)


async def test_mirror_copies_and_drops_answers() -> None:
    async with App("primary") as primary, App("canary") as canary, App("shadow") as shadow:
        settings = SplitSettings(
            upstream=primary.address, canary=canary.address, weight=0, mirror=shadow.address
        )
        async with ambassador(settings) as (address, _, mirror):
            assert mirror is not None
            answers = await spread(address, 20)
            status, _, _ = await request(*address, method="POST", body=b"abc")
            assert status == 200
            deadline = asyncio.get_running_loop().time() + WAIT
            while mirror.completed < 20:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.01)
    assert set(answers) == {"primary"}  # the client only ever sees the chosen side
    assert len(shadow.requests) == 20
    assert shadow.requests[0]["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert (mirror.failed, mirror.dropped, mirror.skipped) == (0, 0, 1)  # the POST had a body


async def test_a_slow_shadow_never_delays_or_fails_the_client() -> None:
    # The shadow takes an hour per answer: copies pile up, then are dropped.
    async with App("primary") as primary, App("shadow", delay=3600) as shadow:
        settings = SplitSettings(
            upstream=primary.address,
            canary=primary.address,
            weight=0,
            mirror=shadow.address,
            mirror_connections=1,
            mirror_queue=2,
            mirror_timeout=3600,
        )
        async with ambassador(settings) as (address, _, mirror):
            assert mirror is not None
            answers = await spread(address, 30)
            assert set(answers) == {"primary"}
            assert mirror.completed == 0
            assert mirror.dropped >= 30 - 1 - 2  # one in flight, two queued


async def test_a_failing_shadow_never_fails_the_client() -> None:
    async with App("primary") as primary, App("shadow", fail=True) as shadow:
        settings = SplitSettings(
            upstream=primary.address, canary=primary.address, weight=0, mirror=shadow.address
        )
        async with ambassador(settings) as (address, _, mirror):
            assert mirror is not None
            answers = await spread(address, 20)
            deadline = asyncio.get_running_loop().time() + WAIT
            while mirror.failed + mirror.dropped < 20:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.01)
    assert answers == ["primary"] * 20
    assert mirror.completed == 0
    # A dead shadow (nothing listening) fails copies the same way.
    async with App("primary") as primary:
        settings = SplitSettings(
            upstream=primary.address, canary=primary.address, weight=0, mirror="127.0.0.1:1"
        )
        async with ambassador(settings) as (address, _, mirror):
            assert await spread(address, 5) == ["primary"] * 5
