"""
What a hop costs the pods behind it: the quickstart app's four replicas as plain processes (no
cluster), reached directly and through a hop, with the pods' CPU per request and how often their
threads block per request.

Run: ``python bench/hop_cost.py`` (about a minute; ``--rounds``, ``--duration``, ``--connections``).
Needs Debian's ``wrk`` and ``nginx``; the blocking count needs ``perf`` and the right to trace the
scheduler (root, or ``kernel.perf_event_paranoid`` at -1), and is left out without them.

The app is the quickstart's (``app.py`` from the ``users-app`` ConfigMap of
``examples/03-sharded-replicated/users.yaml``: a ``ThreadingHTTPServer``, a thread per connection),
four copies on 127.77.0.1-4, port 8080. Targets, interleaved round by round, medians:

* ``direct x4``: one ``wrk -t1 -c C/4`` per copy, at once, summed (as ``bench/cluster.py``'s
  baseline);
* ``shoal``: ``wrk -t1 -cC`` through shoal's proxy engine run standalone (the service proxy's
  engine, least-request over the four);
* ``nginx``: the same through nginx, one worker, upstream keepalive (the peer hop).

For each: requests per second and the ratio to direct; the pods' CPU per request (``/proc``, all
their threads); the hop's CPU per request; and the pods' *blocks* per request: the scheduler
switching a pod's thread out because it waits (``perf record -e sched:sched_switch -a`` over the
run, switches whose previous task belongs to a pod and is not runnable), that is a thread going to
sleep in ``recv`` or on the GIL and being woken again. Every process started here is stopped on
exit; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The bench directory is not a package: its modules import each other from the path above.
from cluster import (
    cpu_seconds,
    loadavg,
    manifests,
    nginx_proxy,
    shoal_proxy,
    wrk,
)

PODS = [f"127.77.0.{i}" for i in range(1, 5)]
PORT = 8080


@contextlib.contextmanager
def pods(tmp: Path) -> Iterator[list[int]]:
    """The four copies of the app, serving; yields their pids."""
    config_map = next(doc for doc in manifests() if doc["kind"] == "ConfigMap")
    app = tmp / "app.py"
    app.write_text(config_map["data"]["app.py"])
    procs = []
    try:
        for index, ip in enumerate(PODS):
            env = dict(os.environ, POD_IP=ip, PORT=str(PORT), SHARD="0", POD_NAME=f"pod-{index}")
            env["DRAIN_SECONDS"] = "0"
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-u", str(app)],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 20
        for proc, ip in zip(procs, PODS, strict=True):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the app on {ip} exited with {proc.returncode}")
                try:
                    socket.create_connection((ip, PORT), 0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        yield [proc.pid for proc in procs]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def can_trace() -> bool:
    """Whether ``perf`` can record scheduler switches of the whole machine here."""
    if shutil.which("perf") is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        probe = subprocess.run(
            ["perf", "record", "-q", "-e", "sched:sched_switch", "-a", "-o", f"{tmp}/p", "true"],
            capture_output=True,
            timeout=30,
        )
    return probe.returncode == 0


_SWITCH = re.compile(r"^\s*(\d+)\s.*prev_state=(\S+)")


def blocks(trace: Path, pids: set[int]) -> int:
    """Switches in ``trace`` that took a waiting (not runnable) thread of ``pids`` off a CPU."""
    out = subprocess.run(
        ["perf", "script", "-i", str(trace), "-F", "pid,trace"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    count = 0
    for line in out.splitlines():
        match = _SWITCH.match(line)
        if match and int(match.group(1)) in pids and not match.group(2).startswith("R"):
            count += 1
    return count


async def measure(
    urls: Sequence[str],
    connections: int,
    duration: float,
    pod_pids: Sequence[int],
    hop_pid: int | None,
    trace: Path | None,
) -> dict[str, float]:
    await wrk(urls, connections, 1)  # warm up: connections opened, pools filled
    pods_before = sum(map(cpu_seconds, pod_pids))
    hop_before = cpu_seconds(hop_pid) if hop_pid else 0.0
    recorder = None
    if trace is not None:
        recorder = await asyncio.create_subprocess_exec(
            *("perf", "record", "-q", "-e", "sched:sched_switch", "-a", "-o", str(trace)),
            *("--", "sleep", f"{duration:g}"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    result = await wrk(urls, connections, duration)
    pods_cpu = sum(map(cpu_seconds, pod_pids)) - pods_before
    hop_cpu = (cpu_seconds(hop_pid) - hop_before) if hop_pid else 0.0
    row = {
        "rps": result.rps,
        "errors": float(result.errors),
        "pods": pods_cpu / result.requests * 1e6,
        "hop": hop_cpu / result.requests * 1e6 if hop_pid else float("nan"),
    }
    if recorder is not None and trace is not None:
        await recorder.wait()
        row["blocks"] = blocks(trace, set(pod_pids)) / result.requests
    return row


async def run(args: argparse.Namespace) -> None:
    trace_ok = can_trace()
    if not trace_ok:
        print("perf cannot trace the scheduler here: no blocks column", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-hop-") as name, pods(Path(name)) as pod_pids:
        tmp = Path(name)
        trace = tmp / "sched.data" if trace_ok else None
        with shoal_proxy(PODS, PORT) as shoal, nginx_proxy(PODS, PORT) as nginx:
            targets: dict[str, tuple[list[str], int | None]] = {
                "direct x4": ([f"http://{ip}:{PORT}/hello" for ip in PODS], None),
                "shoal": ([shoal[0]], shoal[1]),
                "nginx": ([nginx[0]], nginx[1]),
            }
            rows: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
            for round_number in range(1, args.rounds + 1):
                for target, (urls, hop_pid) in targets.items():
                    row = await measure(
                        urls, args.connections, args.duration, pod_pids, hop_pid, trace
                    )
                    rows[target].append(row)
                    print(
                        f"round {round_number} {target:>9}: {row['rps']:,.0f} req/s, pods "
                        f"{row['pods']:.0f} µs/req, blocks {row.get('blocks', float('nan')):.2f}",
                        file=sys.stderr,
                        flush=True,
                    )
    direct = statistics.median(r["rps"] for r in rows["direct x4"])
    print(
        f"python bench/hop_cost.py --rounds {args.rounds} --duration {args.duration:g} "
        f"--connections {args.connections}  ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())};"
        f" load average {loadavg()})"
    )
    print()
    print(
        "| target | req/s | / direct x4 | errors | pods CPU µs/req | pods' blocks per request "
        "| hop CPU µs/req |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for target, results in rows.items():

        def median(key: str, results: list[dict[str, float]] = results) -> float:
            return statistics.median(r.get(key, float("nan")) for r in results)

        hop = "" if target == "direct x4" else f"{median('hop'):.1f}"
        blocks_cell = f"{median('blocks'):.2f}" if trace_ok else "-"
        print(
            f"| {target} | {median('rps'):,.0f} | {median('rps') / direct:.2f} | "
            f"{sum(r['errors'] for r in results):.0f} | {median('pods'):.0f} | {blocks_cell} "
            f"| {hop} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (x4)")
    args = parser.parse_args()
    if args.connections % 4:
        parser.error("--connections must be a multiple of 4 (shared by the 4 direct runs)")
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is needed (apt-get install -y wrk nginx)")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
