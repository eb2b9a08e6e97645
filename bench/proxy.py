"""
The HTTP proxy, side by side: shoal's proxy against nginx and HAProxy as reverse proxies.

Run: ``python bench/proxy.py`` (a few minutes) or ``python bench/proxy.py --quick`` (under a minute).
Needs Debian's ``nginx``, ``haproxy`` and ``wrk`` (``apt-get install -y nginx haproxy wrk``).

One nginx (one process, ``access_log off``, keep-alive to clients) is the backend on a loopback
port, answering every request with a small fixed body. In front of it, one at a time:

* ``direct``: no proxy (the backend's own ceiling, for reference);
* ``nginx``: nginx as a reverse proxy, one process, upstream ``keepalive``, ``X-Forwarded-For``;
* ``haproxy``: HAProxy, one thread, ``http-reuse always``, ``option forwardfor``;
* ``shoal``: ``python -m shoal.dataplane.standalone`` (the code behind ``shoal proxy``), one process,
  uvloop and httptools, round robin over the one backend (X-Forwarded-For/-Proto on);
  Its hot path is the compiled (Cython) build of the engine's modules when built (``auto``).
* ``shoal-py``: the same with ``--implementation python`` (the engine's pure-Python path).
* ``shoal-pure``: the pure-Python path with the pure-Python request parser and the stock asyncio
  loop (what runs where nothing optional is installed).
* ``shoal-rr4`` and ``shoal-shard4`` (the cost of shard routing): shoal round robin over four
  backend ports of the same nginx, and shoal with ``--shard-regexp '/users/([^/]+)'`` making the
  four ports four shards (Maglev). Both get the same requests, ``/users/<n>/profile`` with ``n``
  drawn from 100,000 keys (a wrk Lua script), so the only difference is routing by regexp and hash.

Saturation: ``wrk -t1 -c50 -d10s --latency`` against each, the targets interleaved round by
round (so a burst of other work on the box hits all of them alike), 3 rounds; medians of req/s,
p50 and p99, and the proxy process's CPU time per request (user + system, from ``/proc``).

Open loop (``--open-loop``, on by default; ``--no-open-loop`` skips it; ``--no-saturation`` runs it
alone, ``--open-seconds`` sets its length, for a longer A/B of latency): this file's own generator
(``python bench/proxy.py --generator ...``, uvloop, 64 connections, no pipelining) sends 10k
req/s on a fixed schedule. It wakes every millisecond (the event loop's timer resolution) and
sends every request due by then, so arrivals come in bursts of about 10. A request's latency runs
from the tick at which it became due to the end of its response: time spent waiting for a free
connection counts (no coordinated omission), the generator's own timer granularity does not.

Ratios are to the best peer proxy (nginx or HAProxy) of the same run, on each measure apart in
the open loop (the lower p50, the lower p99, the lower CPU): throughput as ours/theirs (higher is
better), latency and CPU as ours/theirs (lower is better). Every process started here
is stopped on exit, Ctrl-C included; configs live in a temporary directory; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BODY = "hello from the backend"
PEERS = ("nginx", "haproxy")
TARGETS = (
    "direct",
    "nginx",
    "haproxy",
    "shoal",
    "shoal-py",
    "shoal-pure",
    "shoal-rr4",
    "shoal-shard4",
)
SHARD_TARGETS = ("shoal-rr4", "shoal-shard4")
"""Targets driven with the /users/<n>/profile paths (compared with each other, not the peers)."""
USERS_SCRIPT = """
math.randomseed(42)
request = function()
    return wrk.format(nil, "/users/" .. math.random(1, 100000) .. "/profile")
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields[11], fields[12] are utime, stime (fields 14 and 15 of proc(5), counted from state).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- configs ------------------------------------------------------------------------------------

NGINX_COMMON = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path {tmp}/{name}.body;
    proxy_temp_path {tmp}/{name}.proxy;
    fastcgi_temp_path {tmp}/{name}.fastcgi;
    uwsgi_temp_path {tmp}/{name}.uwsgi;
    scgi_temp_path {tmp}/{name}.scgi;
{body}
}}
"""

BACKEND = """
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        listen 127.0.0.1:{port2} backlog=4096;
        listen 127.0.0.1:{port3} backlog=4096;
        listen 127.0.0.1:{port4} backlog=4096;
        location / {{ default_type text/plain; return 200 "{text}"; }}
    }}
"""

NGINX_PROXY = """
    upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering on;
        }}
    }}
"""

HAPROXY = """
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    option http-keep-alive
    option forwardfor
    http-reuse always
frontend main
    bind 127.0.0.1:{port}
    default_backend be
backend be
    server b1 127.0.0.1:{backend} maxconn 1000
"""


@dataclass
class Running:
    name: str
    port: int
    proc: subprocess.Popen[bytes]


@dataclass
class Bench:
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, args: list[str], port: int, *, env: dict[str, str] | None = None) -> Running:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.tmp / f"{len(self.procs)}.stderr", "wb"),  # noqa: SIM115
            env=env,
            start_new_session=True,  # Ctrl-C reaches us only; we stop them
        )
        self.procs.append(proc)
        wait_port(port, proc)
        return Running(Path(args[0]).name, port, proc)

    def nginx(self, name: str, body: str) -> Running:
        port = free_port()
        conf = self.tmp / f"{name}.conf"
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.tmp / f"{name}.{sub}").mkdir(exist_ok=True)
        conf.write_text(
            NGINX_COMMON.format(tmp=self.tmp, name=name, body=body.format(port=port, **self.vars))
        )
        return self.start(["nginx", "-p", str(self.tmp), "-c", str(conf)], port)

    vars: dict[str, object] = field(default_factory=dict)

    def haproxy(self, backend: int) -> Running:
        port = free_port()
        conf = self.tmp / "haproxy.cfg"
        conf.write_text(HAPROXY.format(port=port, backend=backend))
        return self.start(["haproxy", "-db", "-f", str(conf)], port)

    def shoal(
        self,
        backends: list[int],
        *,
        loop: str = "uvloop",
        parser: str = "httptools",
        extra: tuple[str, ...] = (),
    ) -> Running:
        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        args = [sys.executable, "-m", "shoal.dataplane.standalone", "--listen", f"127.0.0.1:{port}"]
        for backend in backends:
            args += ["--backend", f"127.0.0.1:{backend}"]
        args += ["--loop", loop, "--parser", parser, *extra]
        return self.start(args, port, env=env)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# --- wrk ----------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s)", text)
    assert match, text
    return float(match[1]) * _UNITS[match[2]]


@dataclass
class Sample:
    rps: float
    p50: float
    p99: float
    cpu_us: float | None
    errors: int


def wrk(port: int, seconds: int, pid: int | None, script: str | None = None) -> Sample:
    before = cpu_seconds(pid) if pid else 0.0
    command = ["wrk", "-t1", "-c50", f"-d{seconds}s", "--latency"]
    if script is not None:
        command += ["-s", script]
    out = subprocess.run(
        [*command, f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    after = cpu_seconds(pid) if pid else 0.0
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out)[1])  # type: ignore[index]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out)[1])  # type: ignore[index]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out)[1])  # type: ignore[index]
    errors = 0
    for match in re.finditer(r"(connect|read|write|timeout) (\d+)", out):
        errors += int(match[2])
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx[1])
    total = rps * seconds
    cpu = (after - before) / total * 1e6 if pid and total else None
    return Sample(rps, p50, p99, cpu, errors)


# --- the open-loop generator --------------------------------------------------------------------


def generator(port: int, rate: float, seconds: float, connections: int) -> None:
    """Runs in a child process; prints ``sent done late p50 p99 p999`` (latencies in ms)."""
    new_loop: Callable[[], asyncio.AbstractEventLoop]
    try:
        import uvloop

        new_loop = uvloop.new_event_loop
    except ImportError:
        new_loop = asyncio.new_event_loop
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    latencies: list[int] = []
    clock = time.perf_counter_ns

    class Conn(asyncio.Protocol):
        def __init__(self) -> None:
            self.transport: asyncio.Transport | None = None
            self.buf = b""
            self.stamp = 0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def data_received(self, data: bytes) -> None:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            length = re.search(rb"(?i)content-length:\s*(\d+)", self.buf[:end])
            size = end + 4 + (int(length[1]) if length else 0)
            if len(self.buf) < size:
                return
            self.buf = self.buf[size:]
            latencies.append(clock() - self.stamp)
            if backlog:
                self.send(backlog.pop(0))
            else:
                idle.append(self)

        def send(self, stamp: int) -> None:
            self.stamp = stamp
            assert self.transport is not None
            self.transport.write(request)

    idle: list[Conn] = []
    backlog: list[int] = []

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        for _ in range(connections):
            _, conn = await loop.create_connection(Conn, "127.0.0.1", port)
            idle.append(conn)
        interval = 1e9 / rate
        start = clock()
        end = start + seconds * 1e9
        sent = 0
        while True:
            now = clock()
            if now >= end:
                break
            due = int((now - start) / interval) + 1 - sent
            for _ in range(due):
                if idle:
                    idle.pop().send(now)
                else:
                    backlog.append(now)
            sent += due
            await asyncio.sleep(0.001)
        deadline = clock() + 5e9
        while len(latencies) < sent and clock() < deadline:  # noqa: ASYNC110 - polled drain
            await asyncio.sleep(0.01)
        return sent, len(backlog)

    with asyncio.Runner(loop_factory=new_loop) as runner:
        sent, late = runner.run(main())
    done = sorted(latencies)

    def pct(q: float) -> float:
        return done[min(len(done) - 1, int(q * len(done)))] / 1e6 if done else float("nan")

    print(sent, len(done), late, pct(0.5), pct(0.99), pct(0.999))


@dataclass
class OpenSample:
    achieved: float
    p50: float
    p99: float
    p999: float
    cpu_us: float | None


def open_loop(port: int, rate: float, seconds: float, pid: int | None) -> OpenSample:
    before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(
        [sys.executable, __file__, "--generator", str(port), str(rate), str(seconds), "64"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout.split()
    after = cpu_seconds(pid) if pid else 0.0
    sent, done = int(out[0]), int(out[1])
    cpu = (after - before) / done * 1e6 if pid and done else None
    achieved = done / (rate * seconds) if sent else 0.0
    return OpenSample(achieved, float(out[3]), float(out[4]), float(out[5]), cpu)


# --- the run ------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt_ratio(ours: float, best: float) -> str:
    return f"{ours / best:.2f}×" if best else "-"


@contextlib.contextmanager
def running(tmp: Path, names: list[str]) -> Iterator[tuple[Bench, dict[str, Running]]]:
    bench = Bench(tmp)
    bench.vars["text"] = BODY
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        extra_ports = [free_port() for _ in range(3)]
        bench.vars.update(port2=extra_ports[0], port3=extra_ports[1], port4=extra_ports[2])
        backend = bench.nginx("backend", BACKEND)
        bench.vars["backend"] = backend.port
        four = [backend.port, *extra_ports]
        starters: dict[str, Callable[[], Running]] = {
            "direct": lambda: backend,
            "nginx": lambda: bench.nginx("proxy", NGINX_PROXY),
            "haproxy": lambda: bench.haproxy(backend.port),
            "shoal": lambda: bench.shoal([backend.port]),
            "shoal-py": lambda: bench.shoal([backend.port], extra=("--implementation", "python")),
            "shoal-pure": lambda: bench.shoal(
                [backend.port],
                loop="asyncio",
                parser="python",
                extra=("--implementation", "python"),
            ),
            "shoal-rr4": lambda: bench.shoal(four),
            "shoal-shard4": lambda: bench.shoal(four, extra=("--shard-regexp", "/users/([^/]+)")),
        }
        targets = {name: start() for name, start in starters.items() if name in names}
        yield bench, targets
    finally:
        bench.stop_all()
        signal.signal(signal.SIGTERM, previous)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="3 rounds of 2 s, one open-loop round (under a minute)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=None, help="wrk duration per run")
    parser.add_argument("--open-loop", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--saturation",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the wrk rounds (--no-saturation: the open loop alone, for a longer A/B of latency)",
    )
    parser.add_argument("--open-seconds", type=float, default=None, help="open-loop duration")
    parser.add_argument("--rate", type=float, default=10_000.0, help="open-loop req/s")
    parser.add_argument("--only", nargs="*", choices=TARGETS, help="a subset of targets")
    parser.add_argument("--generator", nargs=4, metavar=("PORT", "RATE", "SECONDS", "CONNS"))
    options = parser.parse_args()
    if options.generator:
        port, rate, seconds, conns = options.generator
        generator(int(port), float(rate), float(seconds), int(conns))
        return 0
    for tool in ("nginx", "haproxy", "wrk"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed: apt-get install -y nginx haproxy wrk", file=sys.stderr)
            return 2
    seconds = options.seconds or (2 if options.quick else 10)
    open_seconds = options.open_seconds or (2.0 if options.quick else 8.0)
    open_rounds = 1 if options.quick else options.rounds
    names = options.only or list(TARGETS)
    results: dict[str, list[Sample]] = {name: [] for name in names}
    opens: dict[str, list[OpenSample]] = {name: [] for name in names}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="shoal-bench-proxy-") as tmpdir:
        try:
            script = Path(tmpdir) / "users.lua"
            script.write_text(USERS_SCRIPT)

            def script_for(name: str) -> str | None:
                return str(script) if name in SHARD_TARGETS else None

            with running(Path(tmpdir), names) as (_, targets):
                for name in names:  # warm up: connections, pools, caches
                    wrk(targets[name].port, 1, None, script_for(name))
                for round_ in range(options.rounds):
                    for name in names if options.saturation else ():
                        target = targets[name]
                        pid = target.proc.pid
                        sample = wrk(target.port, seconds, pid, script_for(name))
                        results[name].append(sample)
                        print(
                            f"round {round_ + 1} {name:>10}: {sample.rps:9.0f} req/s "
                            f"p50 {sample.p50:.3f} ms p99 {sample.p99:.3f} ms "
                            f"cpu {sample.cpu_us or 0:.1f} µs/req errors {sample.errors}",
                            file=sys.stderr,
                            flush=True,
                        )
                    if options.open_loop and round_ < open_rounds:
                        for name in names:
                            if name in SHARD_TARGETS:
                                continue
                            target = targets[name]
                            o = open_loop(target.port, options.rate, open_seconds, target.proc.pid)
                            opens[name].append(o)
                            print(
                                f"round {round_ + 1} {name:>10} open loop: {o.achieved:.3f} of "
                                f"{options.rate:.0f}/s p50 {o.p50:.3f} p99 {o.p99:.3f} "
                                f"p99.9 {o.p999:.3f} ms cpu {o.cpu_us or 0:.1f} µs/req",
                                file=sys.stderr,
                                flush=True,
                            )
        except KeyboardInterrupt:
            print("interrupted; every process started here was stopped", file=sys.stderr)
            return 130
    report(options, names, results, opens, seconds, open_seconds, time.monotonic() - started)
    return 0


def report_saturation(
    names: list[str], med: dict[str, tuple[float, float, float, float, int]], peers: list[str]
) -> None:
    """The wrk rounds' tables: the proxies side by side, then shard routing against round robin."""
    peers = [p for p in peers if p in med]
    best = max(peers, key=lambda p: med[p][0]) if peers else None
    print(f"Saturation (medians); ratios to the best peer proxy ({best}):\n")
    print("| target | req/s | p50 ms | p99 ms | CPU µs/req | errors | req/s ratio | p99 ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for n in names:
        if n in SHARD_TARGETS:
            continue
        rps, p50, p99, cpu, errors = med[n]
        r_rps = fmt_ratio(rps, med[best][0]) if best and n != "direct" else ""
        r_p99 = fmt_ratio(p99, med[best][2]) if best and n != "direct" else ""
        print(
            f"| {n} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {cpu:.1f} | {errors} | {r_rps} | {r_p99} |"
        )
    if all(n in med for n in SHARD_TARGETS):
        print(
            "\nShard routing, /users/<n>/profile over 4 backend ports (medians); ratios to "
            "round robin (shoal-rr4):\n"
        )
        print(
            "| target | req/s | p50 ms | p99 ms | CPU µs/req | errors | req/s ratio | CPU ratio |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        base = med["shoal-rr4"]
        for n in SHARD_TARGETS:
            rps, p50, p99, cpu, errors = med[n]
            print(
                f"| {n} | {rps:,.0f} | {p50:.3f} | {p99:.3f} | {cpu:.1f} | {errors} | "
                f"{fmt_ratio(rps, base[0])} | {fmt_ratio(cpu, base[3])} |"
            )


def report(
    options: argparse.Namespace,
    names: list[str],
    results: dict[str, list[Sample]],
    opens: dict[str, list[OpenSample]],
    seconds: int,
    open_seconds: float,
    elapsed: float,
) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\n{now}; Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
        f"{options.rounds} rounds, "
        + (f"wrk -t1 -c50 -d{seconds}s" if options.saturation else "no wrk rounds")
        + f"; {elapsed:.0f} s in all\n"
    )
    med = {
        n: (
            median([s.rps for s in results[n]]),
            median([s.p50 for s in results[n]]),
            median([s.p99 for s in results[n]]),
            median([s.cpu_us or 0.0 for s in results[n]]),
            sum(s.errors for s in results[n]),
        )
        for n in names
        if results[n]
    }
    peers = [p for p in PEERS if p in names]
    if med:
        report_saturation(names, med, peers)
    names = [n for n in names if n not in SHARD_TARGETS]
    if not options.open_loop or not names:
        return
    omed = {
        n: (
            median([o.achieved for o in opens[n]]),
            median([o.p50 for o in opens[n]]),
            median([o.p99 for o in opens[n]]),
            median([o.p999 for o in opens[n]]),
            median([o.cpu_us or 0.0 for o in opens[n]]),
        )
        for n in names
    }
    # Each measure against the peer that did best on it (the lower p50, p99 and CPU).
    measures = {"p50": 1, "p99": 2, "CPU": 4}
    obest = {m: min(peers, key=lambda p: omed[p][i]) for m, i in measures.items()} if peers else {}
    chosen = ", ".join(f"{m}: {peer}" for m, peer in obest.items())
    print(
        f"\nOpen loop, {options.rate:,.0f} req/s for {open_seconds:.0f} s, 64 connections "
        f"(medians); each ratio to the best peer on that measure ({chosen}):\n"
    )
    print(
        "| target | achieved | p50 ms | p99 ms | p99.9 ms | CPU µs/req | p50 ratio | p99 ratio "
        "| CPU ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in names:
        ach, p50, p99, p999, cpu = omed[n]
        ratios = ["", "", ""]
        if obest and n != "direct":
            ratios = [fmt_ratio(omed[n][i], omed[obest[m]][i]) for m, i in measures.items()]
        print(
            f"| {n} | {ach:.3f} | {p50:.3f} | {p99:.3f} | {p999:.3f} | {cpu:.1f} | "
            + " | ".join(ratios)
            + " |"
        )


if __name__ == "__main__":
    sys.exit(main())
