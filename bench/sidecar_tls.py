"""
The TLS sidecar, side by side: ``shoal sidecar tls`` against nginx terminating TLS for the same app.

Run: ``python bench/sidecar_tls.py`` (about two minutes) or ``python bench/sidecar_tls.py --quick``.
Needs Debian's ``nginx`` and ``wrk`` (``apt-get install -y nginx wrk``).

The app is one nginx process on a loopback port answering every request with a small fixed body
(plain HTTP). In front of it, one at a time, each a single process:

* ``nginx-tls``: nginx with ``listen ssl``, ``proxy_pass`` to the app with upstream keep-alive,
  ``X-Forwarded-For``/``X-Forwarded-Proto``, session cache off (as the sidecar has none);
* ``shoal-tls``: ``python -m shoal sidecar tls`` (uvloop, httptools), certificate reload on.

Both use the same ECDSA P-256 certificate (generated here) and OpenSSL's default TLS 1.3 suite.
Two workloads, each ``wrk -t1 -c50 --latency`` for ``--seconds``, targets interleaved round by
round (3 rounds; medians):

* ``keep-alive``: 50 connections, each carrying many requests: the record layer and proxying;
* ``new-connection``: ``Connection: close`` on every request, so every request is a full handshake.

Printed: req/s, p50, p99, errors and the proxy process's CPU time per request (from ``/proc``),
and the ratio shoal/nginx of req/s (goal: at least 0.7). Every process started is stopped on
exit; configuration and certificates live in a temporary directory; loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import ipaddress
import os
import platform
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[1]
BODY = "hello from the app"
TARGETS = ("nginx-tls", "shoal-tls")
WORKLOADS = ("keep-alive", "new-connection")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_tls(port: int, proc: subprocess.Popen[bytes], tls: bool, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), 0.5) as sock,
        ):
            if tls:
                context.wrap_socket(sock).close()
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing answers on {port} after {timeout} s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


NGINX = """
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

APP = """
    server {
        listen 127.0.0.1:{port} backlog=4096;
        location / { default_type text/plain; return 200 "{text}"; }
    }
"""

NGINX_TLS = """
    upstream app { server 127.0.0.1:{app}; keepalive 64; }
    server {
        listen 127.0.0.1:{port} ssl backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache off;
        ssl_session_tickets off;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
    }
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

    def start(
        self, name: str, args: list[str], port: int, *, tls: bool, env: dict[str, str] | None = None
    ) -> Running:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.tmp / f"{name}.stderr", "wb"),  # noqa: SIM115
            env=env,
            start_new_session=True,
        )
        self.procs.append(proc)
        wait_tls(port, proc, tls)
        return Running(name, port, proc)

    def nginx(self, name: str, body: str, *, tls: bool) -> Running:
        port = free_port()
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.tmp / f"{name}.{sub}").mkdir(exist_ok=True)
        conf = self.tmp / f"{name}.conf"
        conf.write_text(
            NGINX.format(tmp=self.tmp, name=name, body=body.replace("{port}", str(port)))
        )
        return self.start(name, ["nginx", "-p", str(self.tmp), "-c", str(conf)], port, tls=tls)

    def shoal(self, app: int, cert: Path, key: Path) -> Running:
        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        args = [sys.executable, "-m", "shoal", "sidecar", "tls", "--listen", f"127.0.0.1:{port}"]
        args += ["--upstream", f"127.0.0.1:{app}", "--cert", str(cert), "--key", str(key)]
        return self.start("shoal-tls", args, port, tls=True, env=env)

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
    cpu_us: float
    errors: int


def wrk(port: int, seconds: int, pid: int, workload: str) -> Sample:
    args = ["wrk", "-t1", "-c50", f"-d{seconds}s", "--latency"]
    if workload == "new-connection":
        args += ["-H", "Connection: close"]
    before = cpu_seconds(pid)
    out = subprocess.run(
        [*args, f"https://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    after = cpu_seconds(pid)
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out)[1])  # type: ignore[index]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out)[1])  # type: ignore[index]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out)[1])  # type: ignore[index]
    errors = sum(int(m[2]) for m in re.finditer(r"(connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx[1])
    total = rps * seconds
    return Sample(rps, p50, p99, (after - before) / total * 1e6 if total else 0.0, errors)


def versions() -> str:
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[
        0
    ]
    return (
        f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{ssl.OPENSSL_VERSION}, {nginx.replace('nginx version: ', '')}, {wrk_version.strip()}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 5 s per workload")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    seconds, rounds = (5, 1) if options.quick else (options.seconds, options.rounds)
    print(versions())
    with tempfile.TemporaryDirectory(prefix="shoal-bench-tls-") as temporary:
        bench = Bench(Path(temporary))
        try:
            cert, key = make_certificate(bench.tmp)
            app = bench.nginx("app", APP.replace("{text}", BODY), tls=False)
            nginx = bench.nginx(
                "nginx-tls",
                NGINX_TLS.replace("{app}", str(app.port))
                .replace("{cert}", str(cert))
                .replace("{key}", str(key)),
                tls=True,
            )
            shoal = bench.shoal(app.port, cert, key)
            targets = {"nginx-tls": nginx, "shoal-tls": shoal}
            results: dict[tuple[str, str], list[Sample]] = {}
            for workload in WORKLOADS:
                for round_number in range(rounds):
                    for name in TARGETS:
                        running = targets[name]
                        sample = wrk(running.port, seconds, running.proc.pid, workload)
                        results.setdefault((workload, name), []).append(sample)
                        print(
                            f"  {workload:15} round {round_number + 1} {name:10} "
                            f"{sample.rps:9.0f} req/s  p50 {sample.p50:6.2f} ms  "
                            f"p99 {sample.p99:6.2f} ms  cpu {sample.cpu_us:6.1f} µs/req  "
                            f"errors {sample.errors}",
                            flush=True,
                        )
        finally:
            bench.stop_all()
    print()
    print(
        f"{'workload':15} {'target':10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'µs/req':>8} {'errors':>7}"
    )
    medians: dict[tuple[str, str], float] = {}
    for (workload, name), samples in results.items():
        rps = statistics.median(s.rps for s in samples)
        medians[(workload, name)] = rps
        print(
            f"{workload:15} {name:10} {rps:9.0f} {statistics.median(s.p50 for s in samples):8.2f} "
            f"{statistics.median(s.p99 for s in samples):8.2f} "
            f"{statistics.median(s.cpu_us for s in samples):8.1f} {sum(s.errors for s in samples):7d}"
        )
    print()
    for workload in WORKLOADS:
        ratio = medians[(workload, "shoal-tls")] / medians[(workload, "nginx-tls")]
        verdict = "met" if ratio >= 0.7 else "NOT met"
        print(f"{workload:15} shoal/nginx throughput {ratio:.2f}x (goal >= 0.7x: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
