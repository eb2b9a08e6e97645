"""Probe and lifecycle actions: ``httpGet``, ``tcpSocket``, ``exec`` and ``sleep``.

Each returns ``(success, detail)``; ``detail`` says what failed, for the ``Unhealthy`` Event.
HTTP probes speak HTTP/1.1 on a fresh connection (``Connection: close``), as the kubelet does;
a status from 200 to 399 is a success. HTTPS is not verified (the kubelet does not verify
either).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from collections.abc import Mapping, Sequence

from shoal.node.processes import kill_group, spawn

__all__ = ["exec_action", "http_get", "tcp_connect"]

Outcome = tuple[bool, str]


def _insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def http_get(
    host: str,
    port: int,
    path: str = "/",
    *,
    scheme: str = "HTTP",
    headers: Sequence[tuple[str, str]] = (),
    limit: float = 1.0,
) -> Outcome:
    url = f"{scheme.lower()}://{host}:{port}{path}"
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(limit):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=_insecure_context() if scheme == "HTTPS" else None
            )
            names = {name.lower() for name, _ in headers}
            lines = [f"GET {path or '/'} HTTP/1.1"]
            if "host" not in names:
                lines.append(f"Host: {host}:{port}")
            if "user-agent" not in names:
                lines.append("User-Agent: shoal-probe/1.0")
            lines.extend(f"{name}: {value}" for name, value in headers)
            lines.append("Connection: close")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            await writer.drain()
            status_line = await reader.readline()
    except TimeoutError:
        return False, f'Get "{url}": context deadline exceeded'
    except OSError as error:
        return False, f'Get "{url}": {error.strerror or error}'
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
    parts = status_line.decode("latin-1").split()
    if len(parts) < 2 or not parts[1].isdigit():
        return False, f'Get "{url}": malformed HTTP status line {status_line[:80]!r}'
    code = int(parts[1])
    if 200 <= code < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {code}"


async def tcp_connect(host: str, port: int, *, limit: float = 1.0) -> Outcome:
    try:
        async with asyncio.timeout(limit):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return False, f"dial tcp {host}:{port}: i/o timeout"
    except OSError as error:
        return False, f"dial tcp {host}:{port}: {error.strerror or error}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, ""


async def exec_action(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: str | None, limit: float
) -> Outcome:
    """Run ``argv`` as the container would (its env and working directory) in its own process
    group; killed with the group after ``limit`` seconds."""
    try:
        process = await spawn(argv, env=env, cwd=cwd, output=asyncio.subprocess.PIPE)
    except OSError as error:
        return False, f"exec {list(argv)!r}: {error.strerror or error}"
    try:
        async with asyncio.timeout(limit):
            output, _ = await process.communicate()
    except TimeoutError:
        kill_group(process.pid, signal.SIGKILL)
        await process.wait()
        return False, f"command {list(argv)!r} timed out after {limit:g}s"
    finally:
        if process.returncode is None:  # cancelled
            kill_group(process.pid, signal.SIGKILL)
            await process.wait()
    kill_group(process.pid, signal.SIGKILL)  # anything it left behind
    if process.returncode == 0:
        return True, ""
    text = output.decode(errors="replace").strip()[-500:]
    return False, f"command {list(argv)!r} exited with {process.returncode}: {text}"
