"""
Configuration reloads under saturation, and a killed backend: shoal's proxy beside nginx and HAProxy.

Run: ``python bench/proxy_reload.py`` (about two minutes). Needs Debian's ``nginx``, ``haproxy``
and ``wrk`` (``apt-get install -y nginx haproxy wrk``).

**Reloads.** Two nginx backends (one process each, ``return 200``). In front of them, one at a
time, a proxy whose configuration is rewritten and reloaded 10 times, about once a second,
while ``wrk -t1 -c50 -d12s`` saturates it; each reload flips the backend set between {b1, b2}
and {b2} (so endpoints really leave and come back):

* ``nginx``: one worker, master process on, reload by SIGHUP (new worker, old one drains);
* ``haproxy``: master-worker (``-W``) with ``expose-fd listeners``, reload by SIGUSR2 (the
  seamless form; the new process takes the listening sockets);
* ``shoal``: ``shoal proxy --config`` (uvloop, httptools), reload by SIGHUP: ``Proxy.apply`` in
  the same process.

Reported: requests, failed requests (wrk's socket errors plus non-2xx), failures per reload.

**Killed backend** (shoal only: nginx OSS has no active checks, HAProxy's figures are its
documented ``inter``/``fall``/``rise``). A client sends sequential keep-alive requests through
the proxy to two backends; b1 is SIGKILLed, then restarted 3 s later. Reported: failed requests,
the time from the kill until ``/metrics`` shows b1 out of rotation (``shoal_proxy_endpoint_up``
0), and the time from the restart until b1 serves a request again. Checks: ``interval 0.5 s,
rise 2, fall 2`` (HAProxy's ``inter 500 rise 2 fall 2``), passive ejection defaults.

Every process started here is stopped on exit; configs live in a temporary directory; loopback
only. Ratios are meaningful, absolute numbers are this box's.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RELOADS = 10

NGINX_BACKEND = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/{name}.body;
    proxy_temp_path {tmp}/{name}.proxy;
    fastcgi_temp_path {tmp}/{name}.fastcgi;
    uwsgi_temp_path {tmp}/{name}.uwsgi;
    scgi_temp_path {tmp}/{name}.scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ default_type text/plain; return 200 "{name}"; }}
    }}
}}
"""

NGINX_PROXY = """
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/proxy.pid;
error_log {tmp}/proxy.error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/proxy.body;
    proxy_temp_path {tmp}/proxy.proxy;
    fastcgi_temp_path {tmp}/proxy.fastcgi;
    uwsgi_temp_path {tmp}/proxy.uwsgi;
    scgi_temp_path {tmp}/proxy.scgi;
    upstream backend {{ {servers} keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

HAPROXY = """
global
    nbthread 1
    maxconn 4096
    stats socket {tmp}/haproxy.sock mode 600 level admin expose-fd listeners
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    option http-keep-alive
    http-reuse always
frontend main
    bind 127.0.0.1:{port}
    default_backend be
backend be
{servers}
"""

SHOAL = """\
apiVersion: proxy.shoal.dev/v1
kind: ProxyConfig
listeners:
- name: web
  port: {port}
  routes:
  - name: web
{health}    backends:
{servers}
admin:
  port: {admin}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


@dataclass
class Procs:
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(
        self, args: list[str], port: int, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.tmp / f"{len(self.procs)}.stderr", "wb"),  # noqa: SIM115
            start_new_session=True,
            env=env,
        )
        self.procs.append(proc)
        wait_port(port, proc)
        return proc

    def backend(self, name: str, port: int | None = None) -> tuple[int, subprocess.Popen[bytes]]:
        port = port or free_port()
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.tmp / f"{name}.{sub}").mkdir(exist_ok=True)
        conf = self.tmp / f"{name}.conf"
        conf.write_text(NGINX_BACKEND.format(tmp=self.tmp, name=name, port=port))
        return port, self.start(["nginx", "-p", str(self.tmp), "-c", str(conf)], port)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def stop_all(self) -> None:
        for proc in self.procs:
            self.stop(proc)


def shoal_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "shoal.dataplane.standalone", "--config", str(config)]


def shoal_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT / "src"))


# --- reloads ------------------------------------------------------------------------------------


@dataclass
class ReloadResult:
    name: str
    requests: int
    failed: int
    rps: float


def run_wrk(port: int, seconds: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["wrk", "-t1", "-c50", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wrk_result(name: str, out: str) -> ReloadResult:
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    failed = 0
    errors = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors:
        failed += sum(int(x) for x in errors.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        failed += int(non2xx.group(1))
    return ReloadResult(name, requests, failed, rps)


def reload_run(procs: Procs, name: str, b1: int, b2: int) -> ReloadResult:
    port = free_port()
    sets = [[b1, b2], [b2]]
    tmp = procs.tmp
    if name == "nginx":
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / f"proxy.{sub}").mkdir(exist_ok=True)
        conf = tmp / "proxy.conf"

        def write(backends: list[int]) -> None:
            servers = " ".join(f"server 127.0.0.1:{b};" for b in backends)
            conf.write_text(NGINX_PROXY.format(tmp=tmp, port=port, servers=servers))

        write(sets[0])
        proc = procs.start(["nginx", "-p", str(tmp), "-c", str(conf)], port)
        reload_signal = signal.SIGHUP
    elif name == "haproxy":
        conf = tmp / "haproxy.cfg"

        def write(backends: list[int]) -> None:
            servers = "\n".join(f"    server b{b} 127.0.0.1:{b} maxconn 1000" for b in backends)
            conf.write_text(HAPROXY.format(tmp=tmp, port=port, servers=servers))

        write(sets[0])
        proc = procs.start(["haproxy", "-W", "-db", "-f", str(conf)], port)
        reload_signal = signal.SIGUSR2
    else:
        conf = tmp / "shoal.yaml"
        admin = free_port()

        def write(backends: list[int]) -> None:
            servers = "\n".join(f'    - address: "127.0.0.1:{b}"' for b in backends)
            conf.write_text(SHOAL.format(port=port, admin=admin, servers=servers, health=""))

        write(sets[0])
        proc = procs.start(shoal_command(conf), port, env=shoal_env())
        reload_signal = signal.SIGHUP
    try:
        load = run_wrk(port, 12)
        time.sleep(1.0)
        for index in range(RELOADS):
            write(sets[(index + 1) % 2])
            proc.send_signal(reload_signal)
            time.sleep(0.9)
        out, _ = load.communicate(timeout=60)
    finally:
        procs.stop(proc)
    return wrk_result(name, out)


# --- a killed backend ----------------------------------------------------------------------------


def metric_up(admin: int, endpoint: str) -> float | None:
    connection = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    for line in text.splitlines():
        if line.startswith("shoal_proxy_endpoint_up{") and f'endpoint="{endpoint}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def kill_run(procs: Procs) -> dict[str, float]:
    b1_port, b1 = procs.backend("k1")
    b2_port, _ = procs.backend("k2")
    port, admin = free_port(), free_port()
    conf = procs.tmp / "kill.yaml"
    servers = f'    - address: "127.0.0.1:{b1_port}"\n    - address: "127.0.0.1:{b2_port}"'
    health = "    health: {path: /, intervalSeconds: 0.5, timeoutSeconds: 0.5, rise: 2, fall: 2}\n"
    conf.write_text(SHOAL.format(port=port, admin=admin, servers=servers, health=health))
    proxy = procs.start(shoal_command(conf), port, env=shoal_env())
    endpoint = f"127.0.0.1:{b1_port}"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    failed = sent = 0
    killed_at = restarted_at = ejected_after = readmitted_after = -1.0

    def one() -> str:
        nonlocal failed, sent, connection
        sent += 1
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            body = response.read().decode()
        except (OSError, http.client.HTTPException):
            failed += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            return ""
        if response.status != 200:
            failed += 1
        return body

    try:
        deadline = time.monotonic() + 10
        while metric_up(admin, endpoint) != 1.0 and time.monotonic() < deadline:
            time.sleep(0.01)
        for _ in range(200):
            one()
        os.killpg(b1.pid, signal.SIGKILL)
        b1.wait(5)
        killed_at = time.monotonic()
        while time.monotonic() - killed_at < 3.0:
            one()
            if ejected_after < 0 and metric_up(admin, endpoint) == 0.0:
                ejected_after = time.monotonic() - killed_at
        procs.procs.remove(b1)
        _, b1 = procs.backend("k1", b1_port)
        restarted_at = time.monotonic()
        while time.monotonic() - restarted_at < 10.0:
            if one() == "k1":
                readmitted_after = time.monotonic() - restarted_at
                break
        for _ in range(200):
            one()
    finally:
        connection.close()
        procs.stop(proxy)
    return {
        "requests": sent,
        "failed": failed,
        "ejected_after_s": ejected_after,
        "readmitted_after_s": readmitted_after,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="reload runs per proxy")
    parser.add_argument("--only", choices=("reload", "kill"), help="run one part")
    args = parser.parse_args()
    for tool in ("nginx", "haproxy", "wrk"):
        if subprocess.run(["which", tool], capture_output=True, check=False).returncode:
            print(f"{tool} is missing: apt-get install -y nginx haproxy wrk", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="shoal-reload-") as tmp:
        procs = Procs(Path(tmp))
        try:
            if args.only != "kill":
                b1, _ = procs.backend("b1")
                b2, _ = procs.backend("b2")
                print(f"{RELOADS} reloads under wrk -t1 -c50 -d12s (backend set flips each time)")
                print(f"{'proxy':<8} {'requests':>9} {'req/s':>9} {'failed':>7} {'per reload':>10}")
                for _ in range(args.rounds):
                    for name in ("nginx", "haproxy", "shoal"):
                        result = reload_run(procs, name, b1, b2)
                        print(
                            f"{result.name:<8} {result.requests:>9} {result.rps:>9.0f} "
                            f"{result.failed:>7} {result.failed / RELOADS:>10.1f}",
                            flush=True,
                        )
            if args.only != "reload":
                killed = kill_run(procs)
                print(
                    "killed backend (shoal, checks every 0.5 s, rise 2, fall 2): "
                    f"{killed['requests']:.0f} requests, {killed['failed']:.0f} failed; "
                    f"out of rotation {killed['ejected_after_s']:.2f} s after the kill; "
                    f"serving again {killed['readmitted_after_s']:.2f} s after the restart"
                )
        finally:
            procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
