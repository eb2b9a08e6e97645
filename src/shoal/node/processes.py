"""Container processes that never outlive the node: process groups, a death signal and a reaper.

Theory of operation
-------------------
Without root there are no cgroups to put a pod in, so three mechanisms overlap:

1. **Process groups.** Each container runs in its own session, so its process group id is the
   leader's pid; SIGTERM and SIGKILL go to the whole group (``killpg``), children included.
2. **Parent-death signal.** Each container is started through a tiny launcher (``python -I -S
   -c``, no imports beyond ``ctypes``) that calls ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, checks
   that its parent is still the node (the node may have died before the call), then ``exec``\\ s
   the command: if the node dies, the kernel kills every container leader at once.
3. **The reaper.** A small process started by the node holds the read end of a pipe; the node
   tells it every process group it starts (``+ PGID START``) and ends (``- PGID``). When the
   pipe closes, the node is gone (even by SIGKILL), and the reaper kills every group still
   registered, then exits: this catches what a leader left behind (a shell's children).

The node also records its groups in its state file; a restarted node kills any group recorded
there that still exists (checking the leader's start time, so a reused pid is never killed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "GroupRegistry",
    "kill_group",
    "kill_stale_groups",
    "process_start",
    "spawn",
]

log = logging.getLogger("shoal.node")

# prctl(PR_SET_PDEATHSIG=1, SIGKILL), then exec; argv: parent pid, command...
LAUNCHER = """\
import ctypes, os, sys
ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0)
if os.getppid() != int(sys.argv[1]):
    os._exit(137)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as error:
    sys.stderr.write("shoal node: cannot run %r: %s\\n" % (sys.argv[2], error.strerror))
    sys.stderr.flush()
    os._exit(127)
"""

# Reads "+ PGID START" / "- PGID" lines; at end of input kills every registered group.
REAPER = """\
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
groups = {}
def start(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
for line in sys.stdin:
    parts = line.split()
    if len(parts) == 3 and parts[0] == "+":
        groups[int(parts[1])] = parts[2]
    elif len(parts) == 2 and parts[0] == "-":
        groups.pop(int(parts[1]), None)
for pgid, started in groups.items():
    now = start(pgid)
    if now is not None and now != started:
        continue
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` (clock ticks since boot, as text), None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def kill_group(pgid: int, sig: int, start: str | None = None) -> bool:
    """Send ``sig`` to process group ``pgid``; with ``start``, only if its leader (when alive)
    is the process that started then. True if the group existed."""
    if start is not None:
        now = process_start(pgid)
        if now is not None and now != start:
            return False
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


async def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    output: int | None = asyncio.subprocess.PIPE,
) -> asyncio.subprocess.Process:
    """Start ``argv`` through the launcher in a new session (its own process group)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-S",
        "-c",
        LAUNCHER,
        str(os.getpid()),
        *argv,
        env=dict(env),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=output,
        stderr=asyncio.subprocess.STDOUT if output is not None else None,
        start_new_session=True,
    )


class GroupRegistry:
    """The process groups the node runs: told to the reaper and recorded in the state file."""

    def __init__(self, state_file: Path) -> None:
        self.state_file = state_file
        self.groups: dict[int, dict[str, Any]] = {}
        self._reaper: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Kill what a previous node left, then start the reaper."""
        kill_stale_groups(self.state_file)
        self._save()
        self._reaper = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            "-c",
            REAPER,
            stdin=asyncio.subprocess.PIPE,
            start_new_session=True,
        )

    async def add(self, pgid: int, owner: str) -> None:
        start = process_start(pgid) or "0"
        self.groups[pgid] = {"start": start, "owner": owner}
        await self._tell(f"+ {pgid} {start}\n")
        self._save()

    async def remove(self, pgid: int) -> None:
        if self.groups.pop(pgid, None) is not None:
            await self._tell(f"- {pgid}\n")
            self._save()

    async def close(self) -> None:
        """Close the pipe: the reaper kills whatever is still registered, then exits."""
        reaper, self._reaper = self._reaper, None
        if reaper is None:
            return
        if reaper.stdin is not None:
            reaper.stdin.close()
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                await reaper.stdin.wait_closed()
        try:
            async with asyncio.timeout(5.0):
                await reaper.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                reaper.kill()
            await reaper.wait()
        self.groups.clear()
        self._save()

    @property
    def reaper_pid(self) -> int | None:
        return self._reaper.pid if self._reaper is not None else None

    async def _tell(self, line: str) -> None:
        reaper = self._reaper
        if reaper is None or reaper.stdin is None:
            return
        try:
            reaper.stdin.write(line.encode())
            await reaper.stdin.drain()
        except (ConnectionError, BrokenPipeError):
            log.error("the node's reaper is gone: pod processes may outlive a crash of the node")

    def _save(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(
            json.dumps({"groups": {str(k): v for k, v in self.groups.items()}}, indent=1)
        )
        os.replace(temporary, self.state_file)


def kill_stale_groups(state_file: Path) -> int:
    """SIGKILL every group a previous node recorded that still exists; how many there were."""
    try:
        recorded = json.loads(state_file.read_text()).get("groups") or {}
    except (OSError, ValueError, AttributeError):
        return 0
    killed = 0
    for pgid, info in recorded.items():
        try:
            number = int(pgid)
        except ValueError:
            continue
        start = str(info.get("start")) if isinstance(info, dict) else None
        if kill_group(number, signal.SIGKILL, start):
            killed += 1
            log.warning("killed a process group left by a previous node: %s", info)
    return killed
