"""
The load generator, side by side: ``shoal load`` against wrk (closed loop) and Locust's
FastHttpUser, all against the same nginx serving directly.

Run: ``python bench/loadgen.py`` (a few minutes) or ``python bench/loadgen.py --quick``.
Needs Debian's ``nginx`` and ``wrk`` (``apt-get install -y nginx wrk``) and Locust
(``pip install '.[bench]'``).

The backend is one nginx worker (``access_log off``, ``return 200``) on a loopback port. Then:

* **accuracy**: ``shoal load --rate R --connections 64`` (one process, uvloop and httptools) at
  10k and 50k req/s: achieved / requested, dropped and late requests, p50/p99 (from the
  intended start), and the generator's CPU seconds (``getrusage`` of the child);
* **efficiency**: requests per CPU-second of the generator process, ours (from the 50k run: an
  open-loop generator only works as hard as its rate) against ``wrk -t1 -c64`` (closed loop, as
  fast as nginx answers: its ceiling) and Locust ``FastHttpUser`` (1 process, 64 users, no wait);
* **latency**: our p50 at 10k req/s against wrk's p50 with the same 64 connections.

``shoal load`` runs its compiled engine (``shoal.loadgen._engine``) when built; the ``py-*`` rows
run the pure-Python engine (``SHOAL_LOADGEN_ENGINE=python``) in the same rounds, for comparison.

Each measurement runs ``--rounds`` times (3; 1 with --quick), interleaved, and the median is
reported with the ratios. Every process started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

NGINX = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ default_type text/plain; return 200 "hello from nginx"; }}
    }}
}}
"""

LOCUSTFILE = """
from locust import FastHttpUser, constant, task

class User(FastHttpUser):
    wait_time = constant(0)

    @task
    def index(self):
        self.client.get("/")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextlib.contextmanager
def nginx(tmp: Path) -> Iterator[int]:
    port = free_port()
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / sub).mkdir(exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX.format(tmp=tmp, port=port))
    proc = subprocess.Popen(
        ["nginx", "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_port(port)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def timed(args: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[str, float]:
    """Run a child; its stdout and the CPU seconds (user + system) it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{args[:4]}... exited {done.returncode}: {done.stderr[-2000:]}")
    out = done.stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out, cpu


def ours(
    port: int,
    rate: str,
    seconds: int,
    tmp: Path,
    workers: int = 1,
    src: str | None = None,
    engine: str | None = None,
) -> dict[str, float]:
    """One ``shoal load`` run; ``src``: run the shoal found there instead (a baseline);
    ``engine``: force it (``python`` or ``native``; else the default, native when built)."""
    report = tmp / "ours.json"
    args = [sys.executable, "-m", "shoal", "load", f"http://127.0.0.1:{port}/", "--rate", rate]
    args += ["--duration", f"{seconds}s", "--connections", "64", "--json", str(report), "-q"]
    args += ["--workers", str(workers)]
    env = None
    if src is not None:
        env = {**os.environ, "PYTHONPATH": src}
    if engine is not None:
        env = {**(env or os.environ), "SHOAL_LOADGEN_ENGINE": engine}
    _, cpu = timed(args, seconds + 120, env)
    summary = json.loads(report.read_text())
    # The generator's CPU from the start of the run to its end (interpreter start-up, about a
    # second of imports, excluded), when the version measured reports it.
    run_cpu = summary.get("cpuSeconds") or cpu
    return {
        "ratio": summary["achievedRatio"],
        "achieved": summary["achievedRequestsPerSecond"],
        "requests": summary["requests"],
        "dropped": summary["dropped"],
        "late": summary["late"],
        "errors": summary["errors"],
        "p50": summary["latency"]["p50"],
        "p99": summary["latency"]["p99"],
        "cpu": cpu,
        "run_cpu": run_cpu,
        "per_core": summary["requests"] / cpu if cpu else 0.0,
        "per_run_core": summary["requests"] / run_cpu if run_cpu else 0.0,
        "us_per_request": run_cpu / summary["requests"] * 1e6 if summary["requests"] else 0.0,
    }


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s)", text)
    assert match, text
    return float(match[1]) * _UNITS[match[2]]


def wrk(port: int, seconds: int) -> dict[str, float]:
    args = ["wrk", "-t1", "-c64", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}/"]
    out, cpu = timed(args, seconds + 30)
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out)[1])  # type: ignore[index]
    total = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    return {
        "rps": rps,
        "p50": _ms(re.search(r"\s50%\s+(\S+)", out)[1]),  # type: ignore[index]
        "cpu": cpu,
        "per_core": total / cpu if cpu else 0.0,
        "us_per_request": cpu / total * 1e6 if total else 0.0,
    }


def locust(port: int, seconds: int, tmp: Path) -> dict[str, float] | None:
    if shutil.which("locust") is None:
        return None
    locustfile = tmp / "locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    prefix = tmp / "locust"
    args = ["locust", "-f", str(locustfile), "--headless", "-u", "64", "-r", "64"]
    args += ["-t", f"{seconds}s", "-H", f"http://127.0.0.1:{port}", "--csv", str(prefix)]
    args += ["--only-summary", "--loglevel", "ERROR"]
    _, cpu = timed(args, seconds + 60)
    rows = (tmp / "locust_stats.csv").read_text().splitlines()
    header = rows[0].split(",")
    total = next(r.split(",") for r in rows[1:] if ",Aggregated," in r)
    requests = int(total[header.index("Request Count")])
    return {
        "rps": float(total[header.index("Requests/s")]),
        "cpu": cpu,
        "per_core": requests / cpu if cpu else 0.0,
        "us_per_request": cpu / requests * 1e6 if requests else 0.0,
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 5 s each")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--baseline",
        metavar="SRC",
        help="also run the shoal under SRC (a 'src' directory, e.g. from git archive) at 10k "
        "and 50k, for a before/after in the same run",
    )
    parser.add_argument(
        "--ceiling-rate", default="200k", help="the over-rate for our ceiling (default 200k)"
    )
    parser.add_argument(
        "--no-python", action="store_true", help="skip the pure-Python engine's rows"
    )
    options = parser.parse_args()
    rounds, seconds = (1, 5) if options.quick else (options.rounds, options.seconds)
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (apt-get install -y nginx wrk)", file=sys.stderr)
            return 2
    results: dict[str, list[dict[str, float]]] = {}
    loads: list[float] = []

    def add(name: str, measured: dict[str, float] | None) -> None:
        if measured is not None:
            results.setdefault(name, []).append(measured)

    with tempfile.TemporaryDirectory(prefix="shoal-bench-loadgen-") as directory:
        tmp = Path(directory)
        with nginx(tmp) as port:
            for round_ in range(rounds):
                loads.append(os.getloadavg()[0])
                print(f"round {round_ + 1}/{rounds}, load {loads[-1]:.1f}", file=sys.stderr)
                add("ours-10k", ours(port, "10k", seconds, tmp))
                add("wrk", wrk(port, seconds))
                add("ours-50k", ours(port, "50k", seconds, tmp))
                add("ours-50k-2w", ours(port, "50k", seconds, tmp, workers=2))
                add("ours-ceiling", ours(port, options.ceiling_rate, seconds, tmp))
                add("locust", locust(port, seconds, tmp))
                if not options.no_python:
                    add("py-10k", ours(port, "10k", seconds, tmp, engine="python"))
                    add("py-50k", ours(port, "50k", seconds, tmp, engine="python"))
                if options.baseline:
                    add("base-10k", ours(port, "10k", seconds, tmp, src=options.baseline))
                    add("base-50k", ours(port, "50k", seconds, tmp, src=options.baseline))
                loads.append(os.getloadavg()[0])

    def med(name: str, key: str) -> float:
        return median([r[key] for r in results.get(name, [])])

    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"rounds: {rounds} x {seconds} s; medians; load average (1 min) during the run "
        f"{min(loads):.1f}-{max(loads):.1f}\n"
    )
    print(
        f"{'run':<16}{'achieved/req':>13}{'req/s':>10}{'dropped':>9}{'late':>8}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'CPU us/req':>11}{'req/CPU-s':>11}"
    )
    names = ["ours-10k", "ours-50k", "ours-50k-2w", "ours-ceiling", "py-10k", "py-50k"]
    names += ["base-10k", "base-50k"]
    for name in names:
        if name not in results:
            continue
        print(
            f"{name:<16}{med(name, 'ratio'):>13.4f}{med(name, 'achieved'):>10.0f}"
            f"{med(name, 'dropped'):>9.0f}{med(name, 'late'):>8.0f}{med(name, 'p50'):>9.3f}"
            f"{med(name, 'p99'):>9.3f}{med(name, 'us_per_request'):>11.2f}"
            f"{med(name, 'per_run_core'):>11.0f}"
        )
    print(
        f"{'wrk -t1 -c64':<16}{'':>13}{med('wrk', 'rps'):>10.0f}{'':>9}{'':>8}"
        f"{med('wrk', 'p50'):>9.3f}{'':>9}{med('wrk', 'us_per_request'):>11.2f}"
        f"{med('wrk', 'per_core'):>11.0f}"
    )
    if "locust" in results:
        print(
            f"{'locust fast':<16}{'':>13}{med('locust', 'rps'):>10.0f}{'':>9}{'':>8}{'':>9}{'':>9}"
            f"{med('locust', 'us_per_request'):>11.2f}{med('locust', 'per_core'):>11.0f}"
        )
    print("\n(CPU of ours: the run itself; of wrk and Locust: the whole process.)")
    print("\nratios:")
    print(f"  achieved/requested at 10k: {med('ours-10k', 'ratio'):.4f} (goal >= 0.995)")
    print(
        f"  achieved/requested at 50k: {med('ours-50k', 'ratio'):.4f}, "
        f"2 workers {med('ours-50k-2w', 'ratio'):.4f} (goal >= 0.995)"
    )
    ceiling = med("ours-ceiling", "achieved")
    print(
        f"  one process's ceiling (req/s at {options.ceiling_rate} requested) vs wrk -t1: "
        f"{ceiling / med('wrk', 'rps'):.2f}x (goal >= 0.9x)"
    )
    ours_core = med("ours-50k", "per_run_core")
    print(
        f"  requests per CPU-second at its ceiling vs wrk's closed loop: "
        f"{med('ours-ceiling', 'per_run_core') / med('wrk', 'per_core'):.2f}x (goal >= 0.9x)"
    )
    print(
        f"  requests per CPU-second at 50k (open loop, idle between bursts) vs wrk's closed loop: "
        f"{ours_core / med('wrk', 'per_core'):.2f}x"
    )
    if "py-50k" in results:
        print(
            f"  the pure-Python engine: per CPU-second at 50k vs wrk "
            f"{med('py-50k', 'per_run_core') / med('wrk', 'per_core'):.2f}x; CPU us/request at "
            f"50k {med('py-50k', 'us_per_request'):.2f} -> {med('ours-50k', 'us_per_request'):.2f}"
            f" (compiled); p50 at 10k {med('py-10k', 'p50'):.3f} -> {med('ours-10k', 'p50'):.3f} ms"
        )
    if "locust" in results:
        print(
            f"  requests per CPU-second at 50k vs Locust FastHttpUser: "
            f"{ours_core / med('locust', 'per_core'):.1f}x; "
            f"one process's ceiling vs Locust's req/s: {ceiling / med('locust', 'rps'):.1f}x "
            "(goal >= 10x)"
        )
    print(
        f"  p50 at 10k vs wrk's p50 (64 connections): "
        f"{med('ours-10k', 'p50') / med('wrk', 'p50'):.2f}x (goal <= 1.2x)"
    )
    if "base-10k" in results:
        print(
            f"  baseline: achieved/requested at 50k {med('base-50k', 'ratio'):.4f}; "
            f"CPU us/request at 50k {med('base-50k', 'us_per_request'):.2f} -> "
            f"{med('ours-50k', 'us_per_request'):.2f}; p50 at 10k "
            f"{med('base-10k', 'p50'):.3f} -> {med('ours-10k', 'p50'):.3f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
