"""A load worker process: ``python -m shoal.loadgen.worker`` (started by ``run_workers``).

Protocol on its pipes: it prints ``ready`` once imported, reads one JSON line (the plan, its
index, the worker count, the start instant on the monotonic clock, the loop and parser), runs,
and prints its stats as one JSON document. SIGTERM stops the run early; the stats still print.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

from shoal.loadgen.driver import run, run_load
from shoal.loadgen.plan import LoadPlan


async def _main(order: dict[str, Any]) -> dict[str, Any]:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    stats = await run_load(
        LoadPlan.from_dict(order["plan"]),
        worker=int(order["worker"]),
        workers=int(order["workers"]),
        start=float(order["start"]),
        stop=stop,
        parser=str(order.get("parser", "auto")),
        engine=order.get("engine"),
    )
    return stats.to_dict()


def main() -> None:
    print("ready", flush=True)
    order = json.loads(sys.stdin.readline())
    result = run(_main(order), loop=str(order.get("loop", "auto")))
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
