"""
The Redis ambassador, side by side with twemproxy over the same three redis-server shards.

Run: ``python bench/ambassador_redis.py`` (a few minutes) or ``--quick`` (about a minute).
Needs Debian's ``redis-server``, ``redis-tools`` (redis-benchmark) and ``nutcracker``
(``apt-get install -y redis-server redis-tools nutcracker``).

Three redis-servers (no persistence) on loopback ports are the shards. In front of them, each
with one connection per server:

* ``twemproxy``: Debian's nutcracker, ketama over fnv1a_64 (the book's configuration);
* ``shoal``: ``python -m shoal ambassador redis`` (uvloop when installed), Maglev (the default);
* ``shoal-2w``: the same with ``--workers 2`` (two processes on one port; ``--workers 1`` skips it);
* ``shoal-pure`` (with ``--pure``): one process forced onto the pure-Python path
  (``SHOAL_PURE_PYTHON=1``); ``shoal`` runs the compiled path when it is built.

Throughput: ``redis-benchmark -t set`` then ``-t get``, ``-c 50 -r 100000``, against each, not
pipelined and pipelined (``-P 16``), the proxies interleaved run by run so a burst of other work
on the box hits them alike; the median of the rounds (5 by default), each round's ratio, and the
ratio of the medians shoal/twemproxy (goal: >= 0.8). Each single-process proxy's CPU (user +
system, from /proc) around each run gives its CPU per request: steadier than throughput on a
shared box.

Key distribution: 200,000 distinct keys SET through each proxy (the shards flushed before each),
then each shard's DBSIZE: max/mean (goal: <= 1.02).

Every process started here is stopped on exit; loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def need(binary: str, package: str) -> str:
    found = shutil.which(binary)
    if found is None:
        sys.exit(f"{binary} is missing: apt-get install -y {package}")
    return found


def wait_port(port: int, process: subprocess.Popen[bytes], deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            sys.exit(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    sys.exit(f"nothing listens on {port} after {deadline}s")


def command(port: int, *args: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(
            b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)
        )
        return conn.recv(1024)


def set_keys(port: int, count: int) -> None:
    """SET ``count`` distinct keys through ``port``, pipelined in batches."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        batch = 2000
        for start in range(0, count, batch):
            keys = [b"user:%d" % i for i in range(start, min(count, start + batch))]
            conn.sendall(
                b"".join(b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$1\r\n1\r\n" % (len(k), k) for k in keys)
            )
            want = len(keys) * 5  # "+OK\r\n"
            got = 0
            while got < want:
                chunk = conn.recv(65536)
                if not chunk:
                    sys.exit("proxy closed the connection")
                if b"-" in chunk:
                    sys.exit(f"error reply: {chunk[:200]!r}")
                got += len(chunk)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far (from /proc; Linux only)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def benchmark(port: int, pipeline: int, requests: int, test: str) -> tuple[float, float]:
    """One redis-benchmark run of ``test``: requests/s, and the seconds it lasted."""
    started = time.monotonic()
    out = subprocess.run(
        [
            "redis-benchmark",
            "-p",
            str(port),
            "-t",
            test,
            "-c",
            "50",
            "-r",
            "100000",
            "-n",
            str(requests),
            "-P",
            str(pipeline),
            "--csv",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    elapsed = time.monotonic() - started
    for line in out.splitlines():
        fields = [f.strip('"') for f in line.split(",")]
        if fields and fields[0] == test.upper():
            return float(fields[1]), elapsed
    sys.exit(f"no {test.upper()} figure in redis-benchmark's output: {out!r}")


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer requests and rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--pure",
        action="store_true",
        help="also run shoal's pure-Python path (SHOAL_PURE_PYTHON=1) as shoal-pure",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="also run shoal with this many workers (1: not)"
    )
    options = parser.parse_args()
    redis_server = need("redis-server", "redis-server")
    need("redis-benchmark", "redis-tools")
    nutcracker = need("nutcracker", "nutcracker")
    requests = {1: 50_000, 16: 200_000} if options.quick else {1: 200_000, 16: 1_000_000}
    rounds = options.rounds if not options.quick else min(options.rounds, 1)

    with tempfile.TemporaryDirectory() as tmp, processes() as started:
        shard_ports = [free_port() for _ in range(3)]
        for port in shard_ports:
            started.append(
                subprocess.Popen(
                    [
                        redis_server,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        tmp,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_port(port, started[-1])
        twem_port, shoal_port = free_port(), free_port()
        config = Path(tmp) / "nutcracker.yml"
        config.write_text(
            "alpha:\n"
            f"  listen: 127.0.0.1:{twem_port}\n"
            "  hash: fnv1a_64\n  distribution: ketama\n  redis: true\n"
            "  server_connections: 1\n  servers:\n"
            + "".join(f"    - 127.0.0.1:{p}:1\n" for p in shard_ports)
        )
        started.append(
            subprocess.Popen(
                [
                    nutcracker,
                    "-c",
                    str(config),
                    "-s",
                    str(free_port()),
                    "-o",
                    str(Path(tmp) / "nut.log"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_port(twem_port, started[-1])
        pids = {"twemproxy": started[-1].pid}
        """Processes whose CPU is measured (a --workers supervisor's children are not)."""
        shoal_args = [sys.executable, "-m", "shoal", "ambassador", "redis",
                      "--listen", f"127.0.0.1:{shoal_port}"]  # fmt: skip
        for port in shard_ports:
            shoal_args += ["--server", f"127.0.0.1:{port}"]
        started.append(subprocess.Popen(shoal_args, stdout=subprocess.DEVNULL))
        wait_port(shoal_port, started[-1])
        pids["shoal"] = started[-1].pid
        targets = {"twemproxy": twem_port, "shoal": shoal_port}
        if options.pure:
            port = free_port()
            args = list(shoal_args)
            args[args.index("--listen") + 1] = f"127.0.0.1:{port}"
            pure_env = {**os.environ, "SHOAL_PURE_PYTHON": "1"}
            started.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, env=pure_env))
            wait_port(port, started[-1])
            pids["shoal-pure"] = started[-1].pid
            targets["shoal-pure"] = port
        if options.workers > 1:
            port = free_port()
            args = [*shoal_args, "--workers", str(options.workers)]
            args[args.index("--listen") + 1] = f"127.0.0.1:{port}"
            started.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
            wait_port(port, started[-1])
            time.sleep(3)  # every worker builds its table; the port answers after the first
            targets[f"shoal-{options.workers}w"] = port

        print(f"# {platform.node()} {platform.machine()}, {platform.python_version()}, "
              f"{subprocess.run(['nutcracker', '--version'], capture_output=True, text=True).stderr.strip()}")  # fmt: skip
        print("\nKey distribution (200,000 distinct keys, 3 shards):")
        for name, port in targets.items():
            for shard in shard_ports:
                command(shard, b"FLUSHALL")
            set_keys(port, 200_000)
            sizes = [int(command(shard, b"DBSIZE")[1:-2]) for shard in shard_ports]
            print(f"  {name:10} sizes {sizes}  max/mean {max(sizes) / statistics.mean(sizes):.4f}")

        print(f"\nThroughput, redis-benchmark -c 50 -r 100000, median of {rounds} round(s):")
        results: dict[tuple[str, int, str], list[float]] = {}
        cpu: dict[tuple[str, int, str], list[float]] = {}
        for _ in range(rounds):
            for pipeline in (1, 16):
                for test in ("set", "get"):
                    for name, port in targets.items():
                        pid = pids.get(name)
                        before = cpu_seconds(pid) if pid else 0.0
                        rate, _elapsed = benchmark(port, pipeline, requests[pipeline], test)
                        key = (name, pipeline, test.upper())
                        results.setdefault(key, []).append(rate)
                        if pid:
                            used = cpu_seconds(pid) - before
                            cpu.setdefault(key, []).append(used / requests[pipeline] * 1e6)
        others = [name for name in targets if name != "twemproxy"]
        header = "".join(f" {name:>12} {'ratio':>6}" for name in others)
        print(f"  {'test':10} {'twemproxy':>12}{header}")
        for pipeline in (1, 16):
            for test in ("SET", "GET"):
                twem = statistics.median(results[("twemproxy", pipeline, test)])
                row = ""
                for name in others:
                    ours = statistics.median(results[(name, pipeline, test)])
                    row += f" {ours:12,.0f} {ours / twem:6.2f}"
                label = f"{test} -P {pipeline}"
                print(f"  {label:10} {twem:12,.0f}{row}")
                rounds_shown = "  ".join(
                    f"{name} "
                    + "/".join(
                        f"{ours / theirs:.2f}"
                        for ours, theirs in zip(
                            results[(name, pipeline, test)],
                            results[("twemproxy", pipeline, test)],
                            strict=True,
                        )
                    )
                    for name in others
                )
                print(f"  {'':10} ratio by round: {rounds_shown}")
        print("\nProxy CPU per request (user+system, /proc), median of the rounds, in us:")
        measured = [name for name in targets if name in pids]
        print(f"  {'test':10}" + "".join(f" {name:>12}" for name in measured))
        for pipeline in (1, 16):
            for test in ("SET", "GET"):
                label = f"{test} -P {pipeline}"
                row = "".join(
                    f" {statistics.median(cpu[(name, pipeline, test)]):12.2f}" for name in measured
                )
                print(f"  {label:10}{row}")


if __name__ == "__main__":
    main()
